/**
 * Synthetic animations for the output encoder tests: smooth gradients that move from frame to
 * frame, and animations with a known small set of colours.
 * @module
 */

import type { Frame } from "../../../engine/output/frame.ts";

/**
 * `count` frames of `width` x `height`: a diagonal colour gradient shifted by `shift` pixels per
 * frame (R follows x, G follows y, B follows x + y), alpha 255 unless `alpha` is set, in which
 * case alpha varies too (for lossless formats).
 */
export function movingGradient(
  width: number,
  height: number,
  count: number,
  { shift = 3, alpha = false }: { shift?: number; alpha?: boolean } = {},
): Frame[] {
  return Array.from({ length: count }, (_, t) => {
    const data = new Uint8ClampedArray(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 4, xs = x + t * shift;
        data[o] = Math.round(127.5 + 127.5 * Math.sin(xs / 9));
        data[o + 1] = Math.round((255 * y) / Math.max(height - 1, 1));
        data[o + 2] = (xs + y) * 4 % 256;
        data[o + 3] = alpha ? (x * 13 + y * 7 + t * 31) % 256 : 255;
      }
    }
    return { data, width, height };
  });
}

/**
 * Frames that use only the given colours: pixel (x, y) of frame t takes colour
 * `(x + 2 * y + t) % colours.length`.
 */
export function paletteFrames(
  width: number,
  height: number,
  count: number,
  colours: readonly (readonly [number, number, number])[],
): Frame[] {
  return Array.from({ length: count }, (_, t) => {
    const data = new Uint8ClampedArray(width * height * 4);
    for (let i = 0; i < width * height; i++) {
      const c = colours[(i % width + 2 * Math.floor(i / width) + t) % colours.length];
      data.set([c[0], c[1], c[2], 255], i * 4);
    }
    return { data, width, height };
  });
}

/** True when `a` and `b` hold the same bytes. */
export function sameBytes(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Mean and max absolute difference over the R, G, B channels (alpha skipped). */
export function rgbError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): { mean: number; max: number } {
  let sum = 0, max = 0, n = 0;
  for (let i = 0; i < expected.length; i++) {
    if (i % 4 === 3) continue;
    const d = Math.abs(actual[i] - expected[i]);
    sum += d;
    n++;
    if (d > max) max = d;
  }
  return { mean: sum / n, max };
}
