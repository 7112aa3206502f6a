import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { GradientTape } from "../../engine/training/autograd.ts";
import { conv2d, conv2dBackward, convOutSize } from "../../kernels/conv2d.ts";
import { conv2dBackwardCpu, conv2dCpu } from "../../kernels/conv2d_cpu.ts";
import { type GemmPath, setGemmPathOverride } from "../../kernels/gemm_direct.ts";
import { assert, assertClose, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

// Tolerances. Finite differences: central, eps = 1e-2 on float32 inputs, float64 loss; the
// forward is bilinear, so only float32 rounding of its outputs remains: |err| <= 1e-3.
// GPU vs CPU backward (reductions of <= 72 terms of |x| <= 1): f32 |err| <= 1e-4 + 1e-4 |ref|;
// f16 (inputs rounded to f16 for the reference, f16 outputs): |err| <= 3e-2 + 1e-2 |ref|.
const TOL = { f32: { atol: 1e-4, rtol: 1e-4 }, f16: { atol: 3e-2, rtol: 1e-2 } };
const FD_TOL = { atol: 1e-3, rtol: 1e-3 };

const numel = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

interface ConvCase {
  note: string;
  xShape: number[];
  wShape: number[];
  stride: number;
  padding: number;
  bias?: boolean;
}

function outShape(c: ConvCase): number[] {
  const [N, , H, W] = c.xShape, [Cout, , kh, kw] = c.wShape;
  return [
    N,
    Cout,
    convOutSize(H, kh, c.stride, c.padding),
    convOutSize(W, kw, c.stride, c.padding),
  ];
}

Deno.test("conv2d_cpu backward: matches finite differences (stride 1 and 2, padding, bias)", () => {
  const cases: ConvCase[] = [
    { note: "3x3 pad 1", xShape: [2, 2, 4, 3], wShape: [3, 2, 3, 3], stride: 1, padding: 1 },
    { note: "3x3 s2 pad 1", xShape: [1, 2, 5, 4], wShape: [2, 2, 3, 3], stride: 2, padding: 1 },
    { note: "2x2 s2 pad 0", xShape: [1, 3, 4, 4], wShape: [2, 3, 2, 2], stride: 2, padding: 0 },
  ];
  for (const [i, c] of cases.entries()) {
    const x = randomArray(numel(c.xShape), 10 + i), w = randomArray(numel(c.wShape), 20 + i);
    const bias = randomArray(c.wShape[0], 30 + i), gy = randomArray(numel(outShape(c)), 40 + i);
    const opts = { xShape: c.xShape, wShape: c.wShape, stride: c.stride, padding: c.padding };
    const loss = (x: Float32Array, w: Float32Array, bias: Float32Array) => {
      const y = conv2dCpu(x, w, { ...opts, bias });
      let s = 0;
      for (let j = 0; j < y.length; j++) s += gy[j] * y[j];
      return s;
    };
    const fd = (k: number) => {
      const ins = [x, w, bias];
      const g = new Float64Array(ins[k].length);
      for (let j = 0; j < g.length; j++) {
        const up = ins.map((t) => t.slice()), down = ins.map((t) => t.slice());
        up[k][j] += 1e-2;
        down[k][j] -= 1e-2;
        g[j] = (loss(up[0], up[1], up[2]) - loss(down[0], down[1], down[2])) /
          (up[k][j] - down[k][j]);
      }
      return g;
    };
    const g = conv2dBackwardCpu(x, w, gy, { ...opts, bias: true });
    assertClose(g.dx, fd(0), { ...FD_TOL, msg: `${c.note} dx` });
    assertClose(g.dw, fd(1), { ...FD_TOL, msg: `${c.note} dw` });
    assertClose(g.db!, fd(2), { ...FD_TOL, msg: `${c.note} db` });
  }
});

const CASES: ConvCase[] = [
  // C * 9 and Ho * Wo multiples of 4: the direct path when forced (dcol + col2im, im2col GEMM).
  {
    note: "3x3 pad 1, 2 images",
    xShape: [2, 4, 6, 6],
    wShape: [5, 4, 3, 3],
    stride: 1,
    padding: 1,
    bias: true,
  },
  { note: "3x3 stride 2", xShape: [1, 4, 8, 8], wShape: [3, 4, 3, 3], stride: 2, padding: 1 },
  // Odd sizes: the tiled gradient kernels on either path.
  {
    note: "odd 3x3",
    xShape: [2, 3, 5, 7],
    wShape: [4, 3, 3, 3],
    stride: 1,
    padding: 1,
    bias: true,
  },
  { note: "1x1 odd pixels", xShape: [1, 8, 3, 5], wShape: [6, 8, 1, 1], stride: 1, padding: 0 },
  { note: "3x3 s2 no pad", xShape: [1, 2, 7, 7], wShape: [3, 2, 3, 3], stride: 2, padding: 0 },
];

const r = (x: Float32Array, dtype: DType) => (dtype === "f16" ? roundToF16(x) : x);

async function checkBackward(gpu: Gpu, c: ConvCase, dtype: DType): Promise<void> {
  const os = outShape(c);
  const x = r(randomArray(numel(c.xShape), 5), dtype),
    w = r(randomArray(numel(c.wShape), 6), dtype);
  const gy = r(randomArray(numel(os), 7), dtype);
  const tx = gpu.upload(x, c.xShape, dtype), tw = gpu.upload(w, c.wShape, dtype);
  const tg = gpu.upload(gy, os, dtype);
  const geo = { stride: c.stride, padding: c.padding };
  const g = conv2dBackward(gpu, tg, { x: tx, weight: tw, ...geo, needs: { bias: c.bias } });
  const want = conv2dBackwardCpu(x, w, gy, {
    xShape: c.xShape,
    wShape: c.wShape,
    ...geo,
    bias: c.bias,
  });
  assert(g.dx!.shape.join() === c.xShape.join() && g.dw!.shape.join() === c.wShape.join());
  assert((g.db === null) === !c.bias, "bias gradient only when asked for");
  assertClose(await gpu.read(g.dx!), want.dx, { ...TOL[dtype], msg: `${c.note} dx` });
  assertClose(await gpu.read(g.dw!), want.dw, { ...TOL[dtype], msg: `${c.note} dw` });
  if (c.bias) assertClose(await gpu.read(g.db!), want.db!, { ...TOL[dtype], msg: `${c.note} db` });
  for (const t of [tx, tw, tg, g.dx, g.dw, g.db]) t?.release();
}

for (const path of ["direct", "tiled"] as GemmPath[]) {
  for (const dtype of ["f32", "f16"] as const) {
    gpuTest(
      { name: `conv2d backward (${path} path) ${dtype} vs CPU`, f16: dtype === "f16" },
      async (gpu) => {
        try {
          setGemmPathOverride(path);
          const counts = await countDispatches(gpu, async () => {
            for (const c of CASES) await checkBackward(gpu, c, dtype);
          });
          const kernels = new Set([...counts.keys()].map((k) => k.split(":")[0]));
          // Direct: the vec4 cases multiply on gemm_direct (col2im, im2col), the odd ones fall
          // back to the tiled gradient kernel; tiled: never the direct GEMM.
          const want = path === "direct"
            ? ["gemm_direct", "col2im", "im2col", "conv2d_grad", "channel_sum"]
            : ["conv2d_grad", "channel_sum"];
          for (const k of want) assert(kernels.has(k), `${k} not among ${[...kernels]}`);
          if (path === "tiled") assert(!kernels.has("gemm_direct"), `ran ${[...kernels]}`);
        } finally {
          setGemmPathOverride(null);
        }
      },
    );
  }
}

gpuTest("conv2d on a GradientTape: x, weight and bias gradients; frozen weight", async (gpu) => {
  const c: ConvCase = {
    note: "",
    xShape: [2, 3, 5, 6],
    wShape: [4, 3, 3, 3],
    stride: 2,
    padding: 1,
  };
  const os = outShape(c);
  const x = randomArray(numel(c.xShape), 71), w = randomArray(numel(c.wShape), 72);
  const b = randomArray(4, 73), gy = randomArray(numel(os), 74), res = randomArray(numel(os), 75);
  const tx = gpu.upload(x, c.xShape), tw = gpu.upload(w, c.wShape), tb = gpu.upload(b, [4]);
  const tgy = gpu.upload(gy, os), tres = gpu.upload(res, os);
  const geo = { stride: c.stride, padding: c.padding };
  const want = conv2dBackwardCpu(x, w, gy, {
    xShape: c.xShape,
    wShape: c.wShape,
    ...geo,
    bias: true,
  });

  const tape = new GradientTape(gpu);
  for (const t of [tx, tw, tb]) tape.watch(t);
  const y = tape.run(() => gpu.scope(() => conv2d(gpu, tx, tw, { bias: tb, ...geo })));
  assert(tape.size === 1, `recorded ${tape.size} ops`);
  const g = tape.gradients(y, tgy);
  assertClose(await gpu.read(g.get(tx.root)!), want.dx, { ...TOL.f32, msg: "dx" });
  assertClose(await gpu.read(g.get(tw.root)!), want.dw, { ...TOL.f32, msg: "dw" });
  assertClose(await gpu.read(g.get(tb.root)!), want.db!, { ...TOL.f32, msg: "db" });
  for (const t of [...g.values(), y]) t.release();
  tape.dispose();

  // Frozen weight and bias; the residual is added as its own op (same forward values).
  const tape2 = new GradientTape(gpu);
  tape2.watch(tx);
  const y2 = tape2.run(() =>
    gpu.scope(() => conv2d(gpu, tx, tw, { bias: tb, residual: tres, ...geo }))
  );
  const wantY = conv2dCpu(x, w, {
    xShape: c.xShape,
    wShape: c.wShape,
    ...geo,
    bias: b,
    residual: res,
  });
  assertClose(await gpu.read(y2), wantY, { ...TOL.f32, msg: "forward with residual" });
  const z = tape2.run(() => gpu.scope(() => conv2d(gpu, tx, tw, { bias: tb, ...geo })));
  const g2 = tape2.gradients(z, tgy);
  assert(!g2.has(tw.root) && !g2.has(tb.root) && g2.size === 1, "a frozen weight gets no gradient");
  assertClose(await gpu.read(g2.get(tx.root)!), want.dx, { ...TOL.f32, msg: "dx (frozen w)" });
  for (const t of [...g2.values(), y2, z, tx, tw, tb, tgy, tres]) t.release();
  tape2.dispose();
});
