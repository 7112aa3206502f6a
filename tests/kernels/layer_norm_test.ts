import { roundToF16 } from "../../kernels/gpu/half.ts";
import { layerNorm } from "../../kernels/layer_norm.ts";
import { layerNormCpu } from "../../kernels/layer_norm_cpu.ts";
import { assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases } from "./layer_norm_cases.ts";

// Tolerances: f32 atol 1e-5 / rtol 1e-4; f16 (reference on f16-rounded inputs) atol/rtol 4e-3.
const TOL = { f32: { atol: 1e-5, rtol: 1e-4 }, f16: { atol: 4e-3, rtol: 4e-3 } };

for (const k of cases.filter((k) => k.scale !== "full")) {
  gpuTest({
    name: `layer_norm ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    const [rows, d] = k.shape;
    const host = (v: Float32Array) => k.dtype === "f16" ? roundToF16(v) : v;
    const xs = host(randomArray(rows * d, 41, 2).map((v) => v - 2));
    const ws = host(randomArray(d, 42)), bs = host(randomArray(d, 43));
    const x = gpu.upload(xs, [rows, d], k.dtype);
    const w = gpu.upload(ws, [d], k.dtype);
    const b = gpu.upload(bs, [d], k.dtype);
    const y = layerNorm(gpu, x, w, b, { eps: 1e-5 });
    assertClose(await gpu.read(y), layerNormCpu(xs, d, ws, bs, { eps: 1e-5 }), TOL[k.dtype]);
    for (const t of [x, w, b, y]) t.release();
  });
}

gpuTest("layer_norm: 3-D input normalises the last dim only", async (gpu) => {
  const xs = randomArray(2 * 3 * 8, 44);
  const x = gpu.upload(xs, [2, 3, 8], "f32");
  const ones = gpu.upload(new Float32Array(8).fill(1), [8], "f32");
  const zeros = gpu.upload(new Float32Array(8), [8], "f32");
  const y = layerNorm(gpu, x, ones, zeros, { eps: 1e-6 });
  const got = await gpu.read(y);
  for (let r = 0; r < 6; r++) {
    const row = got.subarray(r * 8, r * 8 + 8);
    const mean = row.reduce((a, v) => a + v, 0) / 8;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / 8;
    assertClose([mean, variance], [0, 1], { atol: 1e-4, rtol: 0, msg: `row ${r}` });
  }
  for (const t of [x, ones, zeros, y]) t.release();
});

gpuTest("layer_norm: shape errors name the op and shapes", async (gpu) => {
  const x = gpu.upload(randomArray(12), [3, 4], "f32");
  const w = gpu.upload(randomArray(3), [3], "f32");
  await assertRejects(
    () => layerNorm(gpu, x, w, w, { eps: 1e-5 }),
    /layer_norm: expected weight \[4\] for x \[3, 4\], got \[3\]/,
  );
  x.release();
  w.release();
});
