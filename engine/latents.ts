/**
 * Host layouts of latents and images: diffusers' `[b, 4, f, h, w]` against the engine's frames
 * folded into the batch `[b*f, 4, h, w]`, and decoded images to RGBA bytes.
 * @module
 */

import type { Frame } from "./output/frame.ts";

/**
 * Swaps the channel (4) and frame axes of every video: [b, 4, f, h, w] <-> [b, f, 4, h, w],
 * scaling by `k`. The number of videos b is inferred from the length.
 */
function swapChannelsAndFrames(
  x: Float32Array,
  f: number,
  hw: number,
  toFrames: boolean,
  k: number,
): Float32Array {
  const videos = x.length / (4 * f * hw);
  const out = new Float32Array(x.length);
  for (let v = 0; v < videos; v++) {
    const base = v * 4 * f * hw;
    for (let c = 0; c < 4; c++) {
      for (let fi = 0; fi < f; fi++) {
        const cm = base + (c * f + fi) * hw, fm = base + (fi * 4 + c) * hw;
        const [src, dst] = toFrames ? [cm, fm] : [fm, cm];
        for (let i = 0; i < hw; i++) out[dst + i] = x[src + i] * k;
      }
    }
  }
  return out;
}

/**
 * [b, 4, f, h, w] (diffusers) * k -> [b*f, 4, h, w] (frames folded into the batch); b is
 * inferred from the length.
 */
export function toFrameMajor(
  x: Float32Array,
  f: number,
  h: number,
  w: number,
  k = 1,
): Float32Array {
  return swapChannelsAndFrames(x, f, h * w, true, k);
}

/** [b*f, 4, h, w] -> [b, 4, f, h, w]. */
export function toChannelMajor(x: Float32Array, f: number, h: number, w: number): Float32Array {
  return swapChannelsAndFrames(x, f, h * w, false, 1);
}

/** Decoded image [1, 3, H, W] in [-1, 1] -> RGBA bytes: round(clamp(x/2 + 0.5, 0, 1) * 255). */
export function toRgba(img: Float32Array, width: number, height: number): Frame {
  const n = width * height;
  const data = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, img[c * n + i] / 2 + 0.5));
      data[i * 4 + c] = Math.round(v * 255);
    }
    data[i * 4 + 3] = 255;
  }
  return { data, width, height };
}
