/**
 * Backward passes of group norm (frames, fused SiLU, split path), layer norm and softmax: the CPU
 * references against central finite differences of the float64 CPU forwards, the GPU kernels
 * against the CPU references (f32 and f16), and the ops recorded on a GradientTape.
 */

import { GradientTape } from "../../engine/training/autograd.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { groupNorm, groupNormBackward } from "../../kernels/group_norm.ts";
import {
  groupNormBackwardCpu,
  groupNormCpu64,
  type GroupNormCpuOptions,
} from "../../kernels/group_norm_cpu.ts";
import { layerNorm, layerNormBackward } from "../../kernels/layer_norm.ts";
import { layerNormBackwardCpu, layerNormCpu64 } from "../../kernels/layer_norm_cpu.ts";
import { softmax, softmaxBackward } from "../../kernels/softmax.ts";
import { softmaxBackwardCpu, softmaxCpu64 } from "../../kernels/softmax_cpu.ts";
import { assert, assertClose, assertEquals, assertRelClose, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

// Tolerances. Finite differences: float64 central differences with h = 1e-5 (truncation ~h^2,
// rounding ~1e-16 / h), atol 1e-7 + rtol 1e-6. GPU vs CPU, as max |a - e| / max |e| per
// gradient: f32 5e-5 (f32 sums over up to ~33k terms, cancellation in dx); f16 5e-3 (inputs
// rounded to f16 before the CPU reference, math in f32, outputs stored in f16: 2^-11 relative).
const FD = { atol: 1e-7, rtol: 1e-6 };
const TOL = { f32: 5e-5, f16: 5e-3 };
const H = 1e-5;

/** d(sum gy * f(v)) / dv[i] by central differences, for every i. */
function numericGrad(
  v: Float64Array,
  gy: ArrayLike<number>,
  f: () => ArrayLike<number>,
): Float64Array {
  const loss = () => {
    const y = f();
    let s = 0;
    for (let i = 0; i < y.length; i++) s += gy[i] * y[i];
    return s;
  };
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const v0 = v[i];
    v[i] = v0 + H;
    const up = loss();
    v[i] = v0 - H;
    const down = loss();
    v[i] = v0;
    g[i] = (up - down) / (2 * H);
  }
  return g;
}

const f64 = (n: number, seed: number, scale = 1, offset = 0) =>
  Float64Array.from(randomArray(n, seed, scale), (v) => v + offset);

for (
  const [shape, opts] of [
    [[3, 6, 2, 3], { groups: 3, eps: 1e-5 }],
    [[4, 4, 3, 1], { groups: 2, eps: 1e-5, frames: 2 }],
    [[6, 4, 5], { groups: 2, eps: 1e-6, frames: 3, silu: true }],
  ] as [number[], GroupNormCpuOptions][]
) {
  Deno.test(`group_norm backward cpu matches finite differences [${shape}] ${JSON.stringify(opts)}`, () => {
    const size = shape.reduce((a, b) => a * b, 1), c = shape[1];
    const x = f64(size, 1, 2, 1), w = f64(c, 2), b = f64(c, 3), gy = f64(size, 4);
    const fwd = () => groupNormCpu64(x, shape, w, b, opts);
    const got = groupNormBackwardCpu(gy, { ...opts, x, shape, weight: w, bias: b });
    assertClose(got.dx, numericGrad(x, gy, fwd), { ...FD, msg: "dx" });
    assertClose(got.dweight, numericGrad(w, gy, fwd), { ...FD, msg: "dweight" });
    assertClose(got.dbias, numericGrad(b, gy, fwd), { ...FD, msg: "dbias" });
  });
}

Deno.test("layer_norm backward cpu matches finite differences", () => {
  const d = 7, x = f64(3 * d, 5, 2, 1), w = f64(d, 6), b = f64(d, 7), gy = f64(3 * d, 8);
  const fwd = () => layerNormCpu64(x, d, w, b, { eps: 1e-5 });
  const got = layerNormBackwardCpu(gy, { x, d, weight: w, bias: b, eps: 1e-5 });
  assertClose(got.dx, numericGrad(x, gy, fwd), { ...FD, msg: "dx" });
  assertClose(got.dweight, numericGrad(w, gy, fwd), { ...FD, msg: "dweight" });
  assertClose(got.dbias, numericGrad(b, gy, fwd), { ...FD, msg: "dbias" });
});

Deno.test("softmax backward cpu matches finite differences", () => {
  const d = 5, x = f64(4 * d, 9, 3), gy = f64(4 * d, 10);
  const got = softmaxBackwardCpu(gy, { y: softmaxCpu64(x, d), d });
  assertClose(got, numericGrad(x, gy, () => softmaxCpu64(x, d)), { ...FD, msg: "dx" });
});

/** Host data for a GPU check, rounded to f16 when the tensors are f16. */
function data(dtype: DType, n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const v = randomArray(n, seed, scale).map((e) => e + offset);
  return dtype === "f16" ? roundToF16(v) : v;
}

interface GnCase {
  shape: number[];
  groups: number;
  frames?: number;
  silu?: boolean;
  split?: boolean;
}

async function checkGroupNorm(gpu: Gpu, dtype: DType, k: GnCase): Promise<Map<string, number>> {
  const { shape } = k, c = shape[1];
  const size = shape.reduce((a, b) => a * b, 1);
  const opts = { groups: k.groups, frames: k.frames, silu: k.silu, eps: 1e-5 };
  // An offset mean exercises the recomputed two-pass variance.
  const xs = data(dtype, size, 31, 2, 3), ws = data(dtype, c, 32), bs = data(dtype, c, 33);
  const gys = data(dtype, size, 34);
  const x = gpu.upload(xs, shape, dtype, "x");
  const w = gpu.upload(ws, [c], dtype, "w");
  const b = gpu.upload(bs, [c], dtype, "b");
  const gy = gpu.upload(gys, shape, dtype, "gy");
  let g!: ReturnType<typeof groupNormBackward>;
  const ran = await countDispatches(gpu, () => {
    g = groupNormBackward(gpu, gy, { ...opts, split: k.split, x, weight: w, bias: b });
  });
  const want = groupNormBackwardCpu(gys, { ...opts, x: xs, shape, weight: ws, bias: bs });
  const msg = `group_norm backward ${dtype} ${JSON.stringify(k)}`;
  assertRelClose(await gpu.read(g.dx!), want.dx, TOL[dtype], `${msg} dx`);
  assertRelClose(await gpu.read(g.dweight!), want.dweight, TOL[dtype], `${msg} dweight`);
  assertRelClose(await gpu.read(g.dbias!), want.dbias, TOL[dtype], `${msg} dbias`);
  for (const t of [x, w, b, gy, g.dx!, g.dweight!, g.dbias!]) t.release();
  return ran;
}

const GN_CASES: GnCase[] = [
  { shape: [3, 6, 5, 7], groups: 3 }, // scalar path
  { shape: [4, 8, 3, 3], groups: 4, frames: 2, silu: true }, // frames 2, scalar
  { shape: [2, 8, 4, 4], groups: 2, silu: true }, // vec4 path
  { shape: [6, 4, 4, 2], groups: 2, frames: 3 }, // frames 3, vec4
  // Channel sums by thread segments in batches of the workgroup's threads (32 for the first
  // case's 120 units, 128 for the second's 600): 40 channels a group (a batch of 32, then 8 of 4
  // threads each), and 300 (batches of 128, 128 and 44).
  { shape: [2, 80, 3, 1], groups: 2, silu: true },
  { shape: [2, 600, 2, 2], groups: 2, frames: 2 },
];

gpuTest("group_norm backward f32 matches the CPU reference", async (gpu) => {
  for (const k of GN_CASES) {
    const ran = await checkGroupNorm(gpu, "f32", k);
    // The fused kernel ran (with the workgroup size picked for the group: "_w<threads>").
    const key = `group_norm_bwd:${k.shape[2] * k.shape[3] % 4 ? "s" : "v4"}${
      k.silu ? "_silu" : ""
    }`;
    assert([...ran.keys()].some((r) => r === key || r.startsWith(`${key}_w`)), `${[...ran]}`);
  }
});

gpuTest({ name: "group_norm backward f16 matches the CPU reference", f16: true }, async (gpu) => {
  for (const k of GN_CASES) await checkGroupNorm(gpu, "f16", k);
});

gpuTest("group_norm backward split path matches the CPU reference", async (gpu) => {
  // Scalar, frames 2 with SiLU; one channel of 91 x 91 = 8281 units takes 5 chunks.
  for (
    const k of [
      { shape: [4, 6, 5, 7], groups: 3, frames: 2, silu: true, split: true },
      { shape: [1, 2, 91, 91], groups: 1, split: true },
    ]
  ) {
    const ran = await checkGroupNorm(gpu, "f32", k);
    assert([...ran.keys()].some((key) => key.startsWith("group_norm_bwd_dx:")), "split path ran");
  }
  // The default picks the split path for a big group (count 2 x 4 x 128 x 136 > 2^17), on any
  // adapter.
  const ran = await checkGroupNorm(gpu, "f32", { shape: [2, 4, 128, 136], groups: 1, frames: 2 });
  const fused = [...ran.keys()].some((key) => key.startsWith("group_norm_bwd:"));
  assert(ran.has("group_norm_bwd_partial:v4") && !fused, "split by default");
});

gpuTest({ name: "group_norm backward f16 split path", f16: true }, async (gpu) => {
  await checkGroupNorm(gpu, "f16", { shape: [2, 4, 40, 40], groups: 2, silu: true, split: true });
});

async function checkLayerNorm(gpu: Gpu, dtype: DType, shape: number[]): Promise<void> {
  const d = shape[shape.length - 1], size = shape.reduce((a, b) => a * b, 1);
  const xs = data(dtype, size, 41, 2, 1), ws = data(dtype, d, 42), bs = data(dtype, d, 43);
  const gys = data(dtype, size, 44);
  const x = gpu.upload(xs, shape, dtype, "x");
  const w = gpu.upload(ws, [d], dtype, "w");
  const b = gpu.upload(bs, [d], dtype, "b");
  const gy = gpu.upload(gys, shape, dtype, "gy");
  const g = layerNormBackward(gpu, gy, { x, weight: w, bias: b, eps: 1e-5 });
  const want = layerNormBackwardCpu(gys, { x: xs, d, weight: ws, bias: bs, eps: 1e-5 });
  const msg = `layer_norm backward ${dtype} [${shape}]`;
  assertRelClose(await gpu.read(g.dx!), want.dx, TOL[dtype], `${msg} dx`);
  assertRelClose(await gpu.read(g.dweight!), want.dweight, TOL[dtype], `${msg} dweight`);
  assertRelClose(await gpu.read(g.dbias!), want.dbias, TOL[dtype], `${msg} dbias`);
  for (const t of [x, w, b, gy, g.dx!, g.dweight!, g.dbias!]) t.release();
}

// [130, 9]: three row blocks of the dweight / dbias reduction.
const LN_SHAPES = [[5, 7], [3, 4, 12], [130, 9]];

gpuTest("layer_norm backward f32 matches the CPU reference", async (gpu) => {
  for (const shape of LN_SHAPES) await checkLayerNorm(gpu, "f32", shape);
});

gpuTest({ name: "layer_norm backward f16 matches the CPU reference", f16: true }, async (gpu) => {
  for (const shape of LN_SHAPES) await checkLayerNorm(gpu, "f16", shape);
});

async function checkSoftmax(gpu: Gpu, dtype: DType, shape: number[]): Promise<void> {
  const d = shape[shape.length - 1], size = shape.reduce((a, b) => a * b, 1);
  const x = gpu.upload(data(dtype, size, 51, 3), shape, dtype, "x");
  const y = softmax(gpu, x);
  const ys = await gpu.read(y); // the saved output, as stored
  const gys = data(dtype, size, 52);
  const gy = gpu.upload(gys, shape, dtype, "gy");
  const dx = softmaxBackward(gpu, gy, { y });
  assertRelClose(
    await gpu.read(dx),
    softmaxBackwardCpu(gys, { y: ys, d }),
    TOL[dtype],
    `softmax backward ${dtype} [${shape}]`,
  );
  for (const t of [x, y, gy, dx]) t.release();
}

gpuTest("softmax backward f32 matches the CPU reference", async (gpu) => {
  for (const shape of [[5, 7], [3, 2, 12]]) await checkSoftmax(gpu, "f32", shape);
});

gpuTest({ name: "softmax backward f16 matches the CPU reference", f16: true }, async (gpu) => {
  for (const shape of [[5, 7], [4, 16]]) await checkSoftmax(gpu, "f16", shape);
});

gpuTest(
  "group_norm on a tape: gradients of watched x and weight, none for a frozen bias",
  async (gpu) => {
    const shape = [4, 6, 3, 3], c = 6, size = 4 * 6 * 9;
    const opts = { groups: 3, eps: 1e-5, frames: 2, silu: true };
    const xs = randomArray(size, 61, 2), ws = randomArray(c, 62), bs = randomArray(c, 63);
    const gys = randomArray(size, 64);
    const x = gpu.upload(xs, shape, "f32", "x");
    const g = gpu.upload(ws, [c], "f32", "g");
    const b = gpu.upload(bs, [c], "f32", "b");
    const gy = gpu.upload(gys, shape, "f32", "gy");
    const tape = new GradientTape(gpu);
    tape.watch(x);
    tape.watch(g);
    const y = tape.run(() => gpu.scope(() => groupNorm(gpu, x, g, b, opts)));
    assertEquals(tape.size, 1);
    const grads = tape.gradients(y, gy);
    const want = groupNormBackwardCpu(gys, { ...opts, x: xs, shape, weight: ws, bias: bs });
    assertEquals(grads.size, 2);
    assert(!grads.has(b), "a frozen bias gets no gradient");
    assertRelClose(await gpu.read(grads.get(x)!), want.dx, TOL.f32, "tape dx");
    assertRelClose(await gpu.read(grads.get(g)!), want.dweight, TOL.f32, "tape dweight");
    for (const t of [...grads.values(), x, g, b, gy, y]) t.release();
    tape.dispose();
  },
);

gpuTest("softmax(layer_norm(x)) on a tape chains the two backwards", async (gpu) => {
  const shape = [3, 8], d = 8;
  const xs = randomArray(24, 71, 2), ws = randomArray(d, 72), bs = randomArray(d, 73);
  const gys = randomArray(24, 74);
  const x = gpu.upload(xs, shape, "f32", "x");
  const w = gpu.upload(ws, [d], "f32", "w");
  const b = gpu.upload(bs, [d], "f32", "b");
  const gy = gpu.upload(gys, shape, "f32", "gy");
  const tape = new GradientTape(gpu);
  tape.watch(b);
  const y = tape.run(() => gpu.scope(() => softmax(gpu, layerNorm(gpu, x, w, b, { eps: 1e-5 }))));
  assertEquals(tape.size, 2);
  const grads = tape.gradients(y, gy);
  const h = layerNormCpu64(xs, d, ws, bs, { eps: 1e-5 });
  const dh = softmaxBackwardCpu(gys, { y: softmaxCpu64(h, d), d });
  const want = layerNormBackwardCpu(dh, { x: xs, d, weight: ws, bias: bs, eps: 1e-5 });
  assertEquals([...grads.keys()], [b]);
  assertRelClose(await gpu.read(grads.get(b)!), want.dbias, TOL.f32, "tape dbias");
  for (const t of [...grads.values(), x, w, b, gy, y]) t.release();
  tape.dispose();
});

gpuTest("norms record nothing when no input is tracked", (gpu) => {
  const x = gpu.upload(randomArray(2 * 4 * 3), [2, 4, 3], "f32", "x");
  const w = gpu.upload(randomArray(4), [4], "f32", "w");
  const tape = new GradientTape(gpu);
  const ys = tape.run(() => [groupNorm(gpu, x, w, w, { groups: 2, eps: 1e-5 }), softmax(gpu, x)]);
  assertEquals(tape.size, 0);
  for (const t of [...ys, x, w]) t.release();
  tape.dispose();
});
