import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import {
  add,
  cfgCombine,
  geglu,
  linearCombination,
  mergeBroadcastDims,
  mul,
  scale,
  unary,
  type UnaryOp,
} from "../../kernels/elementwise.ts";
import {
  binaryCpu,
  cfgCombineCpu,
  erfCpu,
  gegluCpu,
  linearCombinationCpu,
  unaryCpu,
} from "../../kernels/elementwise_cpu.ts";
import { assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import {
  binaryCases,
  cases,
  CFG_GUIDANCE,
  LINEAR_COEFFS,
  SCALE_FACTOR,
} from "./elementwise_cases.ts";

// Tolerances: f32 atol 1e-6 / rtol 1e-5 (gelu: atol 2e-6, erf approximation < 5e-7 plus f32
// rounding); f16: reference on f16-rounded inputs, atol 2e-3 / rtol 2e-3 (one f16 rounding of the
// output, plus the f32 -> f16 rounding of the coefficients' products for cfg / combinations).
const TOL = { f32: { atol: 2e-6, rtol: 1e-5 }, f16: { atol: 2e-3, rtol: 2e-3 } };
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function inputs(shape: readonly number[], seed: number, dtype: DType): Float32Array {
  const v = randomArray(numel(shape), seed, 3);
  return dtype === "f16" ? roundToF16(v) : v;
}

for (const k of binaryCases.filter((k) => k.scale !== "full")) {
  gpuTest(
    { name: `${k.op} ${k.dtype} ${k.scale} (${k.note})`, f16: k.dtype === "f16" },
    async (gpu) => {
      const as = inputs(k.aShape, 71, k.dtype), bs = inputs(k.bShape, 72, k.dtype);
      const a = gpu.upload(as, k.aShape, k.dtype), b = gpu.upload(bs, k.bShape, k.dtype);
      const y = (k.op === "add" ? add : mul)(gpu, a, b);
      const want = binaryCpu(k.op as "add" | "mul", as, k.aShape, bs, k.bShape);
      assertEquals(y.shape, want.shape);
      assertClose(await gpu.read(y), want.data, TOL[k.dtype]);
      for (const t of [a, b, y]) t.release();
    },
  );
}

async function checkOne(
  gpu: Gpu,
  k: { op: string; shape: number[]; dtype: DType },
): Promise<void> {
  const { op, shape, dtype } = k;
  const tol = TOL[dtype];
  if (op === "linear_combination") {
    const [n, terms] = shape;
    const xs = Array.from({ length: terms }, (_, i) => inputs([n], 80 + i, dtype));
    const ts = xs.map((x) => gpu.upload(x, [n], dtype));
    const y = linearCombination(gpu, ts.map((x, i) => ({ c: LINEAR_COEFFS[i], x })));
    const want = linearCombinationCpu(xs.map((x, i) => ({ c: LINEAR_COEFFS[i], x })));
    assertClose(await gpu.read(y), want, tol);
    for (const t of [...ts, y]) t.release();
    return;
  }
  const xs = inputs(shape, 90, dtype);
  const x = gpu.upload(xs, shape, dtype);
  let y, want: Float32Array;
  if (op === "geglu") {
    y = geglu(gpu, x);
    want = gegluCpu(xs, shape[shape.length - 1] / 2);
  } else if (op === "cfg_combine") {
    y = cfgCombine(gpu, x, CFG_GUIDANCE);
    want = cfgCombineCpu(xs, CFG_GUIDANCE);
  } else if (op === "scale") {
    y = scale(gpu, x, SCALE_FACTOR);
    want = Float32Array.from(xs, (v) => v * SCALE_FACTOR);
  } else {
    y = unary(gpu, x, op as UnaryOp);
    want = unaryCpu(xs, op as UnaryOp);
  }
  // cfg amplifies input rounding by the guidance scale: scale the f16 tolerance with it.
  const f = op === "cfg_combine" && dtype === "f16" ? CFG_GUIDANCE : 1;
  assertClose(await gpu.read(y), want, { atol: tol.atol * f, rtol: tol.rtol * f });
  x.release();
  y.release();
}

for (const k of cases.filter((k) => k.scale !== "full" && k.op !== "add" && k.op !== "mul")) {
  gpuTest({
    name: `${k.op} ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    await checkOne(gpu, k);
  });
}

Deno.test("mergeBroadcastDims drops 1s and merges dims contiguous in both inputs", () => {
  // [16, 320, 16, 16] + [16, 320, 1, 1] -> [5120, 256] with b splatted along the last dim.
  assertEquals(mergeBroadcastDims([16, 320, 16, 16], [81920, 256, 16, 1], [320, 1, 0, 0]), {
    dims: [5120, 256],
    sa: [256, 1],
    sb: [1, 0],
  });
  assertEquals(mergeBroadcastDims([1, 1], [0, 0], [0, 0]), { dims: [1], sa: [0], sb: [0] });
});

Deno.test("erfCpu matches known values", () => {
  assertClose(
    [erfCpu(0), erfCpu(0.5), erfCpu(1), erfCpu(-2), erfCpu(3.5)],
    [0, 0.5204998778130465, 0.8427007929497149, -0.9953222650189527, 0.9999992569016276],
    { atol: 1e-15, rtol: 1e-14 },
  );
});

gpuTest("gelu: |error| < 2e-6 over [-8, 8] and exact limits", async (gpu) => {
  const n = 16001;
  const xs = Float32Array.from({ length: n }, (_, i) => -8 + i * 0.001);
  const x = gpu.upload(xs, [n], "f32");
  const y = unary(gpu, x, "gelu");
  assertClose(await gpu.read(y), unaryCpu(xs, "gelu"), { atol: 2e-6, rtol: 0 });
  x.release();
  y.release();
  const big = gpu.upload([-30, 30, 0], [3], "f32");
  const yb = unary(gpu, big, "gelu");
  assertClose(await gpu.read(yb), [0, 30, 0], { atol: 0, rtol: 0 });
  big.release();
  yb.release();
});

gpuTest("elementwise: errors name the op and shapes", async (gpu) => {
  const a = gpu.upload(randomArray(6), [2, 3], "f32");
  const b = gpu.upload(randomArray(4), [4], "f32");
  const c = gpu.upload(randomArray(3), [3], "f32");
  await assertRejects(() => add(gpu, a, b), /add: shapes \[2, 3\] and \[4\] do not broadcast/);
  await assertRejects(() => mul(gpu, b, a), /mul: shapes \[4\] and \[2, 3\] do not broadcast/);
  await assertRejects(() => geglu(gpu, c), /geglu: expected x \[\.\.\., 2N\].*got \[3\]/);
  await assertRejects(
    () => cfgCombine(gpu, c, 7.5),
    /cfg_combine: expected pred \[2B, \.\.\.\], got \[3\]/,
  );
  await assertRejects(
    () => linearCombination(gpu, [{ c: 1, x: a }, { c: 2, x: b }]),
    /linear_combination: expected every term \[2, 3\] f32, got \[4\] f32/,
  );
  await assertRejects(() => linearCombination(gpu, []), /expected 1 to 4 terms, got 0/);
  await assertRejects(() => unary(gpu, a, "relu" as UnaryOp), /unary: expected op/);
  for (const t of [a, b, c]) t.release();
});
