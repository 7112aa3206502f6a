import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { GradientTape } from "../../engine/training/autograd.ts";
import { type GemmPath, setGemmPathOverride } from "../../kernels/gemm_direct.ts";
import { linear, linearBackward, matmul, matmulBackward } from "../../kernels/matmul.ts";
import {
  linearBackwardCpu,
  linearCpu,
  matmulBackwardCpu,
  matmulCpu,
} from "../../kernels/matmul_cpu.ts";
import { assert, assertClose, assertRejects, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

// Tolerances. Finite differences: central, eps = 1e-2 on float32 inputs, float64 loss; the
// forward is exactly bilinear so only float32 rounding of the outputs remains: |err| <= 1e-3.
// GPU vs CPU backward (reductions of <= 24 terms of |x| <= 1): f32 |err| <= 1e-4 + 1e-4 |ref|;
// f16 (inputs rounded to f16 for the reference, f16 outputs): |err| <= 2e-2 + 1e-2 |ref|.
const TOL = { f32: { atol: 1e-4, rtol: 1e-4 }, f16: { atol: 2e-2, rtol: 1e-2 } };
const FD_TOL = { atol: 1e-3, rtol: 1e-3 };

const numel = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

/** Central differences of `sum(gy * f(...inputs))` with respect to every element of each input. */
function finiteDifferences(
  f: (inputs: Float32Array[]) => Float32Array,
  inputs: Float32Array[],
  gy: Float32Array,
): Float64Array[] {
  const loss = (ins: Float32Array[]) => {
    const y = f(ins);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += gy[i] * y[i];
    return s;
  };
  const eps = 1e-2;
  return inputs.map((t, k) => {
    const g = new Float64Array(t.length);
    for (let i = 0; i < t.length; i++) {
      const v = t[i];
      const ins = inputs.map((u) => u.slice());
      ins[k][i] = v + eps;
      const up = loss(ins), hi = ins[k][i];
      ins[k][i] = v - eps;
      g[i] = (up - loss(ins)) / (hi - ins[k][i]);
    }
    return g;
  });
}

Deno.test("matmul_cpu backward: matches finite differences (shared / batched B, alpha, bias)", () => {
  const cases = [
    { aShape: [2, 3, 4], bShape: [4, 5], transposeB: false, alpha: 0.5 },
    { aShape: [2, 3, 4], bShape: [2, 5, 4], transposeB: true, alpha: 1 },
    { aShape: [3, 2], bShape: [3, 2], transposeB: true, alpha: -2 },
  ];
  for (const [i, c] of cases.entries()) {
    const a = randomArray(numel(c.aShape), 10 + i), b = randomArray(numel(c.bShape), 20 + i);
    const N = c.transposeB ? c.bShape[c.bShape.length - 2] : c.bShape[c.bShape.length - 1];
    const bias = randomArray(N, 30 + i);
    const gy = randomArray(numel(c.aShape) / c.aShape[c.aShape.length - 1] * N, 40 + i);
    const f = ([a, b, bias]: Float32Array[]) => matmulCpu(a, b, { ...c, bias });
    const [da, db, dbias] = finiteDifferences(f, [a, b, bias], gy);
    const g = matmulBackwardCpu(a, b, gy, { ...c, bias: true });
    assertClose(g.da, da, { ...FD_TOL, msg: `case ${i} da` });
    assertClose(g.db, db, { ...FD_TOL, msg: `case ${i} db` });
    assertClose(g.dbias!, dbias, { ...FD_TOL, msg: `case ${i} dbias` });
  }
});

Deno.test("matmul_cpu backward: linear matches finite differences", () => {
  const x = randomArray(2 * 3 * 5, 1), w = randomArray(4 * 5, 2), bias = randomArray(4, 3);
  const gy = randomArray(2 * 3 * 4, 4);
  const f = ([x, w, bias]: Float32Array[]) =>
    linearCpu(x, w, { xShape: [2, 3, 5], outFeatures: 4, bias });
  const [dx, dw, db] = finiteDifferences(f, [x, w, bias], gy);
  const g = linearBackwardCpu(x, w, gy, { xShape: [2, 3, 5], outFeatures: 4, bias: true });
  assertClose(g.dx, dx, FD_TOL);
  assertClose(g.dw, dw, FD_TOL);
  assertClose(g.db!, db, FD_TOL);
});

/** One GPU-vs-CPU backward case: matmul(a, b) or, with `linear`, linear(x = a, weight = b). */
interface BackwardCase {
  note: string;
  aShape: number[];
  bShape: number[];
  transposeB?: boolean;
  alpha?: number;
  bias?: boolean;
  linear?: boolean;
}

const CASES: BackwardCase[] = [
  // Shared B, K and N multiples of 4: every GEMM on the direct path when forced.
  { note: "shared B, alpha, bias", aShape: [2, 5, 12], bShape: [12, 8], alpha: 0.5, bias: true },
  // Odd sizes: the tiled fallback on either path.
  { note: "batched B^T, odd", aShape: [3, 7, 9], bShape: [3, 5, 9], transposeB: true },
  { note: "batched B^T, vec4", aShape: [2, 6, 8], bShape: [2, 4, 8], transposeB: true },
  { note: "linear + bias", aShape: [2, 3, 8], bShape: [12, 8], linear: true, bias: true },
  { note: "linear odd", aShape: [5, 7], bShape: [3, 7], linear: true },
];

const r = (x: Float32Array, dtype: DType) => (dtype === "f16" ? roundToF16(x) : x);

async function checkBackward(gpu: Gpu, c: BackwardCase, dtype: DType): Promise<void> {
  const transposeB = c.linear || (c.transposeB ?? false);
  const N = transposeB ? c.bShape[c.bShape.length - 2] : c.bShape[c.bShape.length - 1];
  const outShape = [...c.aShape.slice(0, -1), N];
  const a = r(randomArray(numel(c.aShape), 5), dtype),
    b = r(randomArray(numel(c.bShape), 6), dtype);
  const gy = r(randomArray(numel(outShape), 7), dtype);
  const ta = gpu.upload(a, c.aShape, dtype), tb = gpu.upload(b, c.bShape, dtype);
  const tg = gpu.upload(gy, outShape, dtype);
  let got: (Tensor | null)[], want: (Float32Array | undefined)[];
  if (c.linear) {
    const g = linearBackward(gpu, tg, { x: ta, weight: tb, needs: { bias: c.bias } });
    got = [g.dx, g.dw, g.db];
    const w = linearBackwardCpu(a, b, gy, { xShape: c.aShape, outFeatures: N, bias: c.bias });
    want = [w.dx, w.dw, w.db];
  } else {
    const opts = { transposeB, alpha: c.alpha };
    const g = matmulBackward(gpu, tg, { a: ta, bmat: tb, ...opts, needs: { bias: c.bias } });
    got = [g.da, g.db, g.dbias];
    const w = matmulBackwardCpu(a, b, gy, {
      aShape: c.aShape,
      bShape: c.bShape,
      ...opts,
      bias: c.bias,
    });
    want = [w.da, w.db, w.dbias];
  }
  assert(got[0]!.shape.join() === c.aShape.join(), `da shape ${got[0]!.shape}`);
  assert(got[1]!.shape.join() === c.bShape.join(), `db shape ${got[1]!.shape}`);
  assert((got[2] === null) === !c.bias, "bias gradient only when asked for");
  for (const [i, name] of ["da", "db", "dbias"].entries()) {
    if (!want[i]) continue;
    assertClose(await gpu.read(got[i]!), want[i]!, { ...TOL[dtype], msg: `${c.note} ${name}` });
  }
  for (const t of [ta, tb, tg, ...got]) t?.release();
}

for (const path of ["direct", "tiled"] as GemmPath[]) {
  for (const dtype of ["f32", "f16"] as const) {
    gpuTest(
      { name: `matmul / linear backward (${path} path) ${dtype} vs CPU`, f16: dtype === "f16" },
      async (gpu) => {
        try {
          setGemmPathOverride(path);
          const counts = await countDispatches(gpu, async () => {
            for (const c of CASES) await checkBackward(gpu, c, dtype);
          });
          // The weight gradients took the transposed-A GEMM of the forced path.
          const keys = [...counts.keys()];
          const tn = path === "direct"
            ? keys.some((k) => k.startsWith("gemm_direct:tn-"))
            : keys.some((k) => k.startsWith("matmul:") && k.endsWith("-at"));
          assert(tn, `no transposed-A GEMM among ${keys.join(", ")}`);
          assert(keys.some((k) => k.startsWith("channel_sum:rows")), "bias gradient kernel");
        } finally {
          setGemmPathOverride(null);
        }
      },
    );
  }
}

gpuTest("linear on a GradientTape: gradients of x, weight and bias; frozen weight", async (gpu) => {
  const xs = [2, 3, 8], N = 12;
  const x = randomArray(numel(xs), 51), w = randomArray(N * 8, 52), b = randomArray(N, 53);
  const gy = randomArray(6 * N, 54);
  const tx = gpu.upload(x, xs), tw = gpu.upload(w, [N, 8]), tb = gpu.upload(b, [N]);
  const tgy = gpu.upload(gy, [2, 3, N]);
  const want = linearBackwardCpu(x, w, gy, { xShape: xs, outFeatures: N, bias: true });

  // Everything watched: one entry per leaf, equal to the CPU backward.
  const tape = new GradientTape(gpu);
  for (const t of [tx, tw, tb]) tape.watch(t);
  const y = tape.run(() => gpu.scope(() => linear(gpu, tx, tw, { bias: tb })));
  assert(tape.size === 1, `recorded ${tape.size} ops`);
  assertClose(
    await gpu.read(y),
    linearCpu(x, w, { xShape: xs, outFeatures: N, bias: b }),
    TOL.f32,
  );
  const g = tape.gradients(y, tgy);
  assertClose(await gpu.read(g.get(tw.root)!), want.dw, { ...TOL.f32, msg: "dw" });
  assertClose(await gpu.read(g.get(tb.root)!), want.db!, { ...TOL.f32, msg: "db" });
  assertClose(await gpu.read(g.get(tx.root)!), want.dx, { ...TOL.f32, msg: "dx" });
  for (const t of g.values()) t.release();
  y.release();
  tape.dispose();

  // Frozen weight and bias (not watched): no entry for them, x still gets its gradient.
  const tape2 = new GradientTape(gpu);
  tape2.watch(tx);
  const y2 = tape2.run(() => gpu.scope(() => linear(gpu, tx, tw, { bias: tb })));
  const g2 = tape2.gradients(y2, tgy);
  assert(!g2.has(tw.root) && !g2.has(tb.root), "a frozen weight gets no gradient");
  assert(g2.size === 1, `gradients for ${g2.size} tensors`);
  assertClose(await gpu.read(g2.get(tx.root)!), want.dx, { ...TOL.f32, msg: "dx (frozen w)" });
  for (const t of g2.values()) t.release();
  y2.release();
  tape2.dispose();

  // Writing into a window is an inference-only feature.
  const tape3 = new GradientTape(gpu);
  tape3.watch(tw);
  const out = gpu.empty([2, 3, N], "f32");
  await assertRejects(
    () => tape3.run(() => linear(gpu, tx, tw, { out })),
    /linear: out .* not supported while a gradient tape records/,
  );
  tape3.dispose();
  for (const t of [tx, tw, tb, tgy, out]) t.release();
});

gpuTest(
  "matmul on a GradientTape: batched B^T with alpha, gradients of both operands",
  async (gpu) => {
    const aShape = [2, 5, 8], bShape = [2, 3, 8];
    const a = randomArray(numel(aShape), 61), b = randomArray(numel(bShape), 62);
    const gy = randomArray(2 * 5 * 3, 63);
    const ta = gpu.upload(a, aShape), tb = gpu.upload(b, bShape), tgy = gpu.upload(gy, [2, 5, 3]);
    const tape = new GradientTape(gpu);
    tape.watch(ta);
    tape.watch(tb);
    const y = tape.run(() =>
      gpu.scope(() => matmul(gpu, ta, tb, { transposeB: true, alpha: 0.25 }))
    );
    const g = tape.gradients(y, tgy);
    const want = matmulBackwardCpu(a, b, gy, { aShape, bShape, transposeB: true, alpha: 0.25 });
    assertClose(await gpu.read(g.get(ta.root)!), want.da, { ...TOL.f32, msg: "da" });
    assertClose(await gpu.read(g.get(tb.root)!), want.db, { ...TOL.f32, msg: "db" });
    for (const t of [...g.values(), y, ta, tb, tgy]) t.release();
    tape.dispose();
  },
);
