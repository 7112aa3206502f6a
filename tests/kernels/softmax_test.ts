import { roundToF16 } from "../../kernels/gpu/half.ts";
import { softmax } from "../../kernels/softmax.ts";
import { softmaxCpu } from "../../kernels/softmax_cpu.ts";
import { assertClose, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { cases } from "./softmax_cases.ts";

// Tolerances: f32 atol 1e-6 / rtol 1e-5 (probabilities <= 1); f16 atol 1e-3 / rtol 4e-3.
const TOL = { f32: { atol: 1e-6, rtol: 1e-5 }, f16: { atol: 1e-3, rtol: 4e-3 } };

for (const k of cases.filter((k) => k.scale !== "full")) {
  gpuTest({
    name: `softmax ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    const [rows, d] = k.shape;
    const xs = randomArray(rows * d, 52, 8);
    const ref = k.dtype === "f16" ? roundToF16(xs) : xs;
    const x = gpu.upload(xs, [rows, d], k.dtype);
    const y = softmax(gpu, x);
    assertClose(await gpu.read(y), softmaxCpu(ref, d), TOL[k.dtype]);
    x.release();
    y.release();
  });
}

gpuTest("softmax: large logits stay finite and rows sum to 1", async (gpu) => {
  const xs = Float32Array.from([1000, 999, 998, -1000, 80, 80, 80, 80]);
  const x = gpu.upload(xs, [2, 4], "f32");
  const y = softmax(gpu, x);
  const got = await gpu.read(y);
  const e = [1, Math.exp(-1), Math.exp(-2)];
  const s = e[0] + e[1] + e[2];
  assertClose(got, [e[0] / s, e[1] / s, e[2] / s, 0, 0.25, 0.25, 0.25, 0.25], {
    atol: 1e-6,
    rtol: 1e-5,
  });
  x.release();
  y.release();
});
