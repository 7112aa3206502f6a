import { EngineLimitError } from "../../../kernels/gpu/errors.ts";
import {
  defineKernel,
  grid1d,
  Params,
  paramsAsStorage,
  wgslDType,
} from "../../../kernels/gpu/kernel.ts";
import { bucketSize } from "../../../kernels/gpu/buffer_pool.ts";
import { Tensor } from "../../../kernels/gpu/tensor.ts";
import { fromHalfBits, roundToF16, toHalfBits } from "../../../kernels/gpu/half.ts";
import { timeGpu } from "../../../kernels/gpu/timing.ts";
import { assert, assertClose, assertEquals, assertRejects, randomArray } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";

const axpy = defineKernel("test_axpy", ({ dtype }) =>
  `${wgslDType(dtype)}
struct Params { n: u32, a: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read_write> y: array<T>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * nwg.x * 64u;
  if (i < p.n) { y[i] = T(p.a * f32(x[i]) + 1.0); }
}`);

Deno.test("half: round trip and rounding to nearest even", () => {
  assertEquals(toHalfBits(1), 0x3c00);
  assertEquals(toHalfBits(-2), 0xc000);
  assertEquals(toHalfBits(65504), 0x7bff);
  assertEquals(toHalfBits(1e6), 0x7c00);
  assertEquals(toHalfBits(2 ** -24), 0x0001);
  assertEquals(fromHalfBits(0x3555), 0.333251953125);
  // 1 + 2^-11 is exactly between 1 and 1+2^-10: ties to even -> 1.
  assertEquals(toHalfBits(1 + 2 ** -11), 0x3c00);
  assertEquals(toHalfBits(1 + 3 * 2 ** -11), 0x3c02);
  const r = roundToF16([0.1, 1000.3]);
  assertClose(r, [0.0999755859375, 1000.5], { atol: 0, rtol: 0 });
});

Deno.test("buffer pool buckets round up by at most 2^(1/4)", () => {
  for (const n of [1, 255, 256, 257, 1000, 4097, 123457, 1 << 26]) {
    const b = bucketSize(n);
    assert(b >= n && b <= Math.max(256, n * 1.19 + 256), `bucket ${b} for ${n}`);
    assertEquals(b % 256, 0);
  }
});

Deno.test("tensor reshape checks the element count", () => {
  const fake = { size: 64 } as GPUBuffer;
  const t = new Tensor(fake, [2, 8], "f32");
  assertEquals(t.reshape([4, -1]).shape, [4, 4]);
  let msg = "";
  try {
    t.reshape([3, 5]);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/cannot view \[2, 8\] as \[3, 5\]/.test(msg), msg);
});

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(`runtime: dispatch, upload, readback, pool reuse (${dtype})`, async (gpu) => {
    const n = 70001; // > 65535 workgroups of 1? no: exercises grid1d folding with small groups
    const x = gpu.upload(randomArray(n, 3), [n], dtype, "x");
    const y = gpu.empty([n], dtype, "y");
    gpu.dispatch(axpy, {
      dtype,
      params: new Params().u32(n).f32(2),
      bindings: [x, y],
      groups: grid1d(Math.ceil(n / 64)),
    });
    const got = await gpu.read(y);
    const xs = dtype === "f16" ? roundToF16(randomArray(n, 3)) : randomArray(n, 3);
    const want = Float32Array.from(xs, (v) => 2 * v + 1);
    assertClose(got, dtype === "f16" ? roundToF16(want) : want, { atol: 1e-6, rtol: 1e-6 });
    const before = gpu.pool.stats();
    y.release();
    const y2 = gpu.empty([n], dtype, "y2");
    assertEquals(y2.buffer, y.buffer, "released buffer is reused");
    assert(gpu.pool.stats().allocatedBytes === before.allocatedBytes, "no new allocation");
    y2.release();
    x.release();
  });
}

Deno.test("params as storage: only the params declaration changes", () => {
  const src = `struct Params { n: u32 }
@group(0) @binding(0) var<uniform>  p :Params ;
@group(0) @binding(1) var<uniform> q: Other;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;`;
  assertEquals(
    paramsAsStorage(src),
    `struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> p: Params;
@group(0) @binding(1) var<uniform> q: Other;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;`,
  );
});

// Each output sums p.k inputs: a loop bounded by a param, which lavapipe would specialise.
const prefixSum = defineKernel("test_prefix_sum", () =>
  `struct Params { k: u32, n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= p.n) { return; }
  var s = 0.0;
  for (var i = 0u; i < p.k; i++) { s += x[(g.x + i) % p.n]; }
  y[g.x] = s;
}`);

gpuTest("runtime: loop-bounding params change per dispatch within one submit", async (gpu) => {
  // Software adapters read params from storage (lavapipe recompiles shaders per uniform set).
  assertEquals(gpu.pipelines.paramsInStorage, gpu.info.isFallback);
  const n = 100, xs = randomArray(n, 5);
  const x = gpu.upload(xs, [n], "f32");
  const ks = [1, 7, 3, 64];
  const ys = ks.map((k) => {
    const y = gpu.empty([n], "f32");
    gpu.dispatch(prefixSum, {
      dtype: "f32",
      params: new Params().u32(k).u32(n),
      bindings: [x, y],
      groups: [Math.ceil(n / 64), 1, 1],
    });
    return y;
  });
  for (const [j, k] of ks.entries()) {
    const want = Float32Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let t = 0; t < k; t++) s += xs[(i + t) % n];
      return s;
    });
    assertClose(await gpu.read(ys[j]), want, { atol: 1e-5, rtol: 1e-5 });
    ys[j].release();
  }
  x.release();
});

gpuTest("runtime: poisoned allocations read back as NaN", async (gpu) => {
  const t = gpu.empty([5], "f32", "poisoned");
  const v = await gpu.read(t);
  assert(v.every(Number.isNaN), `expected NaN, got ${v}`);
  t.release();
});

gpuTest("runtime: WGSL errors name the kernel", async (gpu) => {
  const bad = defineKernel(
    "test_broken",
    () => `@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }`,
  );
  const t = gpu.empty([1], "f32");
  await assertRejects(async () => {
    gpu.dispatch(bad, { dtype: "f32", params: new Params(), bindings: [], groups: [1, 1, 1] });
    await gpu.sync();
  }, /test_broken/);
  t.release();
});

gpuTest("runtime: tensors larger than a buffer get an engine-limit error", (gpu) => {
  let err: unknown = null;
  try {
    gpu.empty([gpu.info.maxBufferSize], "f32", "huge");
  } catch (e) {
    err = e;
  }
  assert(err instanceof EngineLimitError, String(err));
  assert(/^tensor huge .* more than the largest buffer this adapter allows/.test(err.message));
  assert(!err.message.includes("\n"), err.message);
});

gpuTest("runtime: timestamp timing returns positive times", async (gpu) => {
  const n = 4096;
  const x = gpu.upload(randomArray(n), [n], "f32");
  const y = gpu.empty([n], "f32");
  const t = await timeGpu(gpu, () =>
    gpu.dispatch(axpy, {
      dtype: "f32",
      params: new Params().u32(n).f32(1),
      bindings: [x, y],
      groups: [n / 64, 1, 1],
    }), { reps: 3, samples: 3 });
  assert(t.medianMs > 0 && Number.isFinite(t.medianMs), `median ${t.medianMs}`);
  x.release();
  y.release();
});

gpuTest("runtime: a lost device gives a clear DeviceLostError on the next dispatch", async () => {
  const { Gpu } = await import("../../../kernels/gpu/device.ts");
  const { DeviceLostError } = await import("../../../kernels/gpu/errors.ts");
  const gpu = await Gpu.create();
  const x = gpu.upload([1, 2, 3, 4], [4], "f32");
  const y = gpu.empty([4], "f32");
  // Simulate a loss the program did not ask for (driver reset): destroy the raw device.
  gpu.device.destroy();
  await gpu.device.lost;
  await new Promise((r) => setTimeout(r, 0));
  let err: unknown = null;
  try {
    gpu.dispatch(axpy, {
      dtype: "f32",
      params: new Params().u32(4).f32(1),
      bindings: [x, y],
      groups: [1, 1, 1],
    });
  } catch (e) {
    err = e;
  }
  assert(err instanceof DeviceLostError, `expected DeviceLostError, got ${err}`);
  assert(/GPU device lost/.test((err as Error).message), (err as Error).message);
});

gpuTest("readMany: f32, f16 and windows read back together equal one read each", async (gpu) => {
  const a = gpu.upload(Float32Array.from({ length: 7 }, (_, i) => i - 3.5), [7]);
  const big = gpu.upload(Float32Array.from({ length: 12 }, (_, i) => i / 4), [3, 4]);
  const tensors = [a, big.window(3, 1, 1), big];
  if (gpu.hasF16) tensors.push(gpu.upload(Float32Array.of(0.5, -2, 3), [3], "f16"));
  const many = await gpu.readMany(tensors);
  for (let i = 0; i < tensors.length; i++) {
    assertEquals([...many[i]], [...await gpu.read(tensors[i])]);
  }
  assertEquals([...many[1]], [1, 1.25, 1.5, 1.75]);
  for (const t of tensors) t.release();
});
