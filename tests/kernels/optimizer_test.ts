import { adamw, gradNorm } from "../../kernels/optimizer.ts";
import { adamwCpu, gradNormCpu } from "../../kernels/optimizer_cpu.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import { assertClose, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";

const ADAMW = { lr: 1e-3, betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 0.01 };

// The norm sums squares in f32 per thread and workgroup: relative 1e-6 of the norm.
for (const dtype of ["f32", "f16"] as const) {
  gpuTest({
    name: `grad_norm ${dtype}: many tensors, odd sizes, clip factor`,
    f16: dtype === "f16",
  }, async (gpu) => {
    const sizes = [1, 7, 4096, 4097, 70001];
    const data = sizes.map((n, i) => {
      const x = randomArray(n, 10 + i, 0.5);
      return dtype === "f16" ? roundToF16(x) : x;
    });
    const grads = data.map((d, i) => gpu.upload(d, [sizes[i]], dtype));
    for (const maxNorm of [0, 1, 1e6]) {
      const stats = gradNorm(gpu, grads, { maxNorm });
      const ref = gradNormCpu(data, maxNorm);
      assertClose(await gpu.read(stats), [ref.norm, ref.coef], { atol: 0, rtol: 2e-6 });
      stats.release();
    }
    const scaled = gradNorm(gpu, grads, { maxNorm: 1, lossScale: 1024 });
    const ref = gradNormCpu(data.map((d) => d.map((v) => v / 1024)), 1);
    assertClose(await gpu.read(scaled), [ref.norm, ref.coef / 1024], { atol: 0, rtol: 2e-6 });
    for (const t of [...grads, scaled]) t.release();
  });
}

// f32 update math on both sides: within a few ulps of the float64 reference over 3 steps.
gpuTest(
  "adamw: three steps match torch.optim.AdamW semantics (CPU reference), clipped",
  async (gpu) => {
    const n = 1031;
    const p0 = randomArray(n, 1, 1), g = randomArray(n, 2, 3);
    const cpu = { param: p0.slice(), grad: g, m: new Float32Array(n), v: new Float32Array(n) };
    const param = gpu.upload(p0, [n]), grad = gpu.upload(g, [n]);
    const m = gpu.upload(new Float32Array(n), [n]), v = gpu.upload(new Float32Array(n), [n]);
    const stats = gradNorm(gpu, [grad], { maxNorm: 1 });
    const { coef } = gradNormCpu([g], 1);
    for (let step = 1; step <= 3; step++) {
      adamw(gpu, { param, grad, m, v, stats }, { ...ADAMW, step });
      adamwCpu(cpu, coef, { ...ADAMW, step });
    }
    assertClose(await gpu.read(param), cpu.param, { atol: 1e-7, rtol: 1e-6 });
    assertClose(await gpu.read(m), cpu.m, { atol: 1e-9, rtol: 1e-5 });
    assertClose(await gpu.read(v), cpu.v, { atol: 1e-12, rtol: 1e-5 });
    for (const t of [param, grad, m, v, stats]) t.release();
  },
);

Deno.test("adamw_cpu: first step moves each weight by lr against the gradient's sign", () => {
  // Step 1: m/bc1 = g, sqrt(v/bc2) = |g|, so p -= lr * (sign(g) + wd * p) (eps negligible).
  const param = Float32Array.of(1, -2, 0.5), grad = Float32Array.of(0.3, -4, 2);
  const t = { param: param.slice(), grad, m: new Float32Array(3), v: new Float32Array(3) };
  adamwCpu(t, 1, { ...ADAMW, step: 1 });
  const want = [...param].map((p, i) => p * (1 - 1e-5) - 1e-3 * Math.sign(grad[i]));
  assertClose(t.param, want, { atol: 1e-9, rtol: 1e-6 });
});

Deno.test("grad_norm_cpu: clip factor as clip_grad_norm_", () => {
  const r = gradNormCpu([Float32Array.of(3), Float32Array.of(4)], 1);
  assertClose([r.norm, r.coef], [5, 1 / (5 + 1e-6)], { atol: 0, rtol: 1e-12 });
  assertClose([gradNormCpu([Float32Array.of(0.1)], 1).coef], [1], { atol: 0, rtol: 0 });
});
