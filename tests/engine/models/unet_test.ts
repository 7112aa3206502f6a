import { assertRelClose } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";
import { loadGoldens } from "../../goldens.ts";
import { buildUnet } from "./parts.ts";
import { toChannelMajor, toFrameMajor } from "../../../engine/latents.ts";

// Issue tolerance: UNet + motion noise prediction within 1e-3 relative (max abs / max |ref|).
const F = 8, H = 8, W = 8;

for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f32" ? 1e-3 : 3e-2;
  gpuTest(
    `unet3d (motion v2) matches diffusers UNetMotionModel at t=981 and t=1 ${dtype}`,
    async (gpu) => {
      const g = await loadGoldens();
      const sample = g.get("unet.sample")!.data as Float32Array; // [1, 4, f, h, w]
      const ctx = g.get("unet.encoder_hidden_states")!.data as Float32Array; // [1, 77, 32]
      const { unet, dispose } = await buildUnet(gpu, true, dtype);
      try {
        const x = gpu.upload(toFrameMajor(sample, F, H, W), [F, 4, H, W], dtype);
        const c = gpu.upload(ctx, [1, 77, 32], dtype);
        for (const t of [981, 1]) {
          const out = unet.forward(gpu, x, t, c, F);
          const got = toChannelMajor(await gpu.read(out), F, H, W);
          out.release();
          assertRelClose(got, g.get(`unet_motion.out_t${t}`)!.data as Float32Array, tol, `t=${t}`);
        }
        x.release();
        c.release();
      } finally {
        dispose();
      }
    },
  );
}

gpuTest(
  "unet without motion modules matches diffusers UNet2DConditionModel per frame",
  async (gpu) => {
    const g = await loadGoldens();
    const sample = g.get("unet.sample")!.data as Float32Array;
    const ctx = g.get("unet.encoder_hidden_states")!.data as Float32Array;
    const { unet, dispose } = await buildUnet(gpu, false);
    try {
      const x = gpu.upload(toFrameMajor(sample, F, H, W), [F, 4, H, W]);
      const c = gpu.upload(ctx, [1, 77, 32]);
      const out = unet.forward(gpu, x, 981, c, F);
      assertRelClose(await gpu.read(out), g.get("unet2d.out_t981")!.data as Float32Array, 1e-3);
      out.release();
      x.release();
      c.release();
    } finally {
      dispose();
    }
  },
);
