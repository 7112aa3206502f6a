/** Test helper: builds model parts from the tiny reference fixture on a test GPU. */

import type { Gpu } from "../../../kernels/gpu/device.ts";
import type { DType } from "../../../kernels/gpu/tensor.ts";
import { WeightStore } from "../../../engine/weight_store.ts";
import { ClipTextEncoder } from "../../../engine/models/clip.ts";
import { UNet3D } from "../../../engine/models/unet.ts";
import { VaeDecoder, VaeEncoder } from "../../../engine/models/vae.ts";
import { loadModel, loadMotionModule } from "../../../weights/load.ts";
import type { ModelWeights, MotionWeights } from "../../../weights/types.ts";

export const FIXTURE = new URL("../../fixtures/tiny/", import.meta.url).pathname;

let weights: Promise<{ model: ModelWeights; motion: MotionWeights }> | null = null;

/** The tiny fixture's diffusers model + MotionAdapter (loaded once per process). */
export function fixtureWeights(): Promise<{ model: ModelWeights; motion: MotionWeights }> {
  weights ??= (async () => ({
    model: await loadModel(FIXTURE + "model"),
    motion: await loadMotionModule(FIXTURE + "motion_adapter"),
  }))();
  return weights;
}

export async function buildClip(gpu: Gpu, dtype: DType = "f32") {
  const { model } = await fixtureWeights();
  const store = new WeightStore(gpu, model.textEncoder, { dtype, part: "text encoder" });
  const clip = new ClipTextEncoder(store, model.clipConfig);
  await store.loadAll();
  return { clip, dispose: () => store.dispose() };
}

export async function buildUnet(gpu: Gpu, motion: boolean, dtype: DType = "f32") {
  const w = await fixtureWeights();
  const un = new WeightStore(gpu, w.model.unet, { dtype, part: "unet" });
  const mo = motion ? new WeightStore(gpu, w.motion.tensors, { dtype, part: "motion" }) : null;
  const unet = new UNet3D(un, mo, w.model.unetConfig, motion ? w.motion.config : null);
  await un.loadAll();
  await mo?.loadAll();
  return {
    unet,
    dispose: () => {
      un.dispose();
      mo?.dispose();
    },
  };
}

export async function buildVae(gpu: Gpu, dtype: DType = "f32") {
  const { model } = await fixtureWeights();
  const store = new WeightStore(gpu, model.vae, {
    dtype,
    part: "vae",
    ignore: (n) => n.startsWith("encoder.") || n.startsWith("quant_conv."),
  });
  const vae = new VaeDecoder(store, model.vaeConfig);
  await store.loadAll();
  return { vae, dispose: () => store.dispose() };
}

export async function buildVaeEncoder(gpu: Gpu, dtype: DType = "f32") {
  const { model } = await fixtureWeights();
  const store = new WeightStore(gpu, model.vae, {
    dtype,
    part: "vae",
    ignore: (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
  });
  const encoder = new VaeEncoder(store, model.vaeConfig);
  await store.loadAll();
  return { encoder, dispose: () => store.dispose() };
}
