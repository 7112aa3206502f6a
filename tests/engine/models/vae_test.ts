import { assertRelClose } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";
import { loadGoldens } from "../../goldens.ts";
import { buildVae, buildVaeEncoder } from "./parts.ts";

// Issue tolerance: VAE decode within 1e-3 relative.
for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f32" ? 1e-3 : 3e-2;
  gpuTest(`vae decoder matches diffusers AutoencoderKL.decode ${dtype}`, async (gpu) => {
    const g = await loadGoldens();
    const { vae, dispose } = await buildVae(gpu, dtype);
    try {
      const z = gpu.upload(g.get("vae.latents")!.data as Float32Array, [2, 4, 8, 8], dtype);
      const out = vae.forward(gpu, z);
      assertRelClose(await gpu.read(out), g.get("vae.decoded")!.data as Float32Array, tol);
      out.release();
      z.release();
    } finally {
      dispose();
    }
  });
}

gpuTest(
  "vae encoder matches diffusers AutoencoderKL.encode posterior mean and std",
  async (gpu) => {
    const g = await loadGoldens();
    const { encoder, dispose } = await buildVaeEncoder(gpu);
    try {
      const x = gpu.upload(g.get("vae.image")!.data as Float32Array, [1, 3, 64, 64]);
      const { mean, logvar } = encoder.forward(gpu, x);
      assertRelClose(await gpu.read(mean), g.get("vae.posterior_mean")!.data as Float32Array, 1e-3);
      const std = Float32Array.from(
        await gpu.read(logvar),
        (v) => Math.exp(0.5 * Math.min(20, Math.max(-30, v))),
      );
      assertRelClose(std, g.get("vae.posterior_std")!.data as Float32Array, 1e-3, "std");
      for (const t of [x, mean, logvar]) t.release();
    } finally {
      dispose();
    }
  },
);
