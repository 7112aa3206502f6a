import { assertRelClose } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";
import { loadGoldens } from "../../goldens.ts";
import { buildVae } from "./parts.ts";

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
