import type { Gpu } from "../../kernels/gpu/device.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { groupNorm } from "../../kernels/group_norm.ts";
import { groupNormCpu } from "../../kernels/group_norm_cpu.ts";
import { assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases, GROUP_NORM_EPS } from "./group_norm_cases.ts";

// Tolerances: f32 atol 2e-5 / rtol 1e-4 (f32 sums over up to 2^17 elements); f16: reference on
// f16-rounded inputs, atol 4e-3 / rtol 4e-3 (output rounding is 2^-11 relative).
const TOL = { f32: { atol: 2e-5, rtol: 1e-4 }, f16: { atol: 4e-3, rtol: 4e-3 } };

async function check(
  gpu: Gpu,
  shape: readonly number[],
  dtype: DType,
  options: { groups: number; silu?: boolean; frames?: number; split?: boolean; eps?: number },
): Promise<void> {
  const [n, c] = shape;
  const size = shape.reduce((a, b) => a * b, 1);
  const host = (v: Float32Array) => dtype === "f16" ? roundToF16(v) : v;
  // An offset mean exercises the two-pass variance (no E[x^2] - mean^2 cancellation).
  const xs = host(randomArray(size, 21, 2).map((v) => v + 3));
  const ws = host(randomArray(c, 22)), bs = host(randomArray(c, 23));
  const x = gpu.upload(xs, shape, dtype, "x");
  const w = gpu.upload(ws, [c], dtype, "w");
  const b = gpu.upload(bs, [c], dtype, "b");
  const eps = options.eps ?? GROUP_NORM_EPS;
  const y = groupNorm(gpu, x, w, b, { ...options, eps });
  const got = await gpu.read(y);
  const want = groupNormCpu(xs, shape, ws, bs, { ...options, eps });
  const msg = `group_norm ${dtype} [${shape}] ${JSON.stringify(options)} (N=${n})`;
  assertClose(got, want, { ...TOL[dtype], msg });
  for (const t of [x, w, b, y]) t.release();
}

for (const k of cases.filter((k) => k.scale !== "full")) {
  const [n, c, h, w, groups, frames = 1] = k.shape;
  const silu = k.note?.includes("silu") ?? false;
  gpuTest({
    name: `group_norm ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    await check(gpu, [n, c, h, w], k.dtype, { groups, frames, silu });
  });
}

gpuTest(
  "group_norm: split reduction matches the fused path on odd and multi-chunk groups",
  async (gpu) => {
    // scalar path, 1 chunk per item; vec4 path with 3 chunks per item (lu = 4*2*1600/4 = 3200 units).
    await check(gpu, [4, 12, 5, 7], "f32", { groups: 3, frames: 2, split: true, silu: true });
    await check(gpu, [2, 8, 40, 40], "f32", { groups: 2, frames: 2, split: true });
    await check(gpu, [3, 6, 11, 13], "f32", { groups: 2, split: true, eps: 1e-6 });
    if (gpu.hasF16) await check(gpu, [2, 8, 40, 40], "f16", { groups: 4, split: true, silu: true });
  },
);

gpuTest("group_norm: constant groups give bias (variance 0 + eps)", async (gpu) => {
  const x = gpu.upload(new Float32Array(2 * 4 * 9).fill(5), [2, 4, 9], "f32");
  const w = gpu.upload([1, 2, 3, 4], [4], "f32");
  const b = gpu.upload([0.5, -1, 2, 0], [4], "f32");
  const y = groupNorm(gpu, x, w, b, { groups: 2, eps: 1e-5 });
  const got = await gpu.read(y);
  const want = Float32Array.from({ length: 72 }, (_, i) => [0.5, -1, 2, 0][Math.floor(i / 9) % 4]);
  assertClose(got, want, { atol: 1e-6, rtol: 0 });
  for (const t of [x, w, b, y]) t.release();
});

gpuTest("group_norm: shape errors name the op and shapes", async (gpu) => {
  const x = gpu.upload(randomArray(2 * 6 * 4), [2, 6, 4], "f32");
  const w = gpu.upload(randomArray(6), [6], "f32");
  const w5 = gpu.upload(randomArray(5), [5], "f32");
  await assertRejects(
    () => groupNorm(gpu, x, w, w, { groups: 4, eps: 1e-5 }),
    /group_norm: groups 4 must divide C = 6/,
  );
  await assertRejects(
    () => groupNorm(gpu, x, w5, w, { groups: 3, eps: 1e-5 }),
    /group_norm: expected weight \[6\], got \[5\]/,
  );
  await assertRejects(
    () => groupNorm(gpu, x, w, w, { groups: 3, eps: 1e-5, frames: 3 }),
    /frames 3 must divide N = 2/,
  );
  for (const t of [x, w, w5]) t.release();
});
