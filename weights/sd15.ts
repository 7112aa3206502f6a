/**
 * The real SD1.5 / AnimateDiff v2 architectures with lazily generated random weights: for
 * benchmarking and memory checks at full size without downloading anything. Tensors are
 * produced on `read()` (deterministic, ~N(0, 1/fan_in)), so nothing is held in host memory.
 * @module
 */

import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "./model_config.ts";
import {
  ANIMATEDIFF_V2_CONFIG,
  SD15_CLIP_CONFIG,
  SD15_UNET_CONFIG,
  SD15_VAE_CONFIG,
} from "./model_config.ts";
import type { Architecture, HostTensor, ModelWeights, MotionWeights, TensorMap } from "./types.ts";

function randomTensor(name: string, shape: readonly number[], seed: number): HostTensor {
  return {
    shape: [...shape],
    dtype: "F32",
    read() {
      const n = shape.reduce((a, b) => a * b, 1);
      const out = new Float32Array(n);
      const isNormWeight = shape.length === 1 &&
        /norm.*\.weight$|ln.*\.weight$|layer_norm\d?\.weight$/.test(name);
      if (isNormWeight) return Promise.resolve(out.fill(1));
      if (shape.length === 1) return Promise.resolve(out); // biases
      const fanIn = n / shape[0];
      const s = Math.sqrt(3 / fanIn); // uniform with variance 1/fan_in
      let x = (seed * 2654435761) >>> 0 || 1;
      for (let i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        out[i] = ((x >>> 0) / 4294967296 * 2 - 1) * s;
      }
      return Promise.resolve(out);
    },
  };
}

function randomMap(shapes: Map<string, number[]>): TensorMap {
  const m: TensorMap = new Map();
  let i = 1;
  for (const [name, shape] of shapes) m.set(name, randomTensor(name, shape, i++));
  return m;
}

/**
 * Any architecture of the SD1.5 family with random weights (no files, no downloads): every tensor
 * the architectures' description lists for the configs.
 */
export function randomModel(
  architecture: Architecture,
  configs: {
    unet: UNetConfig;
    vae: VaeConfig;
    clip: ClipConfig;
    motion: MotionConfig;
    source?: string;
  },
): { model: ModelWeights; motion: MotionWeights } {
  const source = configs.source ?? "random";
  const shapes = architecture.model(configs);
  return {
    model: {
      source,
      unet: randomMap(shapes.unet),
      vae: randomMap(shapes.vae),
      textEncoder: randomMap(shapes.textEncoder),
      unetConfig: configs.unet,
      vaeConfig: configs.vae,
      clipConfig: configs.clip,
      close() {},
    },
    motion: {
      source: `${source}-motion-${configs.motion.version}`,
      tensors: randomMap(architecture.motion(configs.motion)),
      config: configs.motion,
      close() {},
    },
  };
}

/** SD1.5 + AnimateDiff v2 architectures with random weights (no files, no downloads). */
export function randomSd15(
  architecture: Architecture,
): { model: ModelWeights; motion: MotionWeights } {
  return randomModel(architecture, {
    unet: SD15_UNET_CONFIG,
    vae: SD15_VAE_CONFIG,
    clip: SD15_CLIP_CONFIG,
    motion: ANIMATEDIFF_V2_CONFIG,
    source: "random-sd15",
  });
}
