/**
 * CPU reference of {@link upsampleNearest2x}.
 * @module
 */

/**
 * Nearest 2x upsampling of `[N, C, H, W]`.
 *
 * @example
 * ```ts
 * const y = upsampleNearest2xCpu(x, [1, 4, 8, 8]); // -> [1, 4, 16, 16]
 * ```
 */
export function upsampleNearest2xCpu(x: Float32Array, shape: readonly number[]): Float32Array {
  const [n, c, h, w] = shape;
  const y = new Float32Array(x.length * 4);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < 2 * h; i++) {
      for (let j = 0; j < 2 * w; j++) {
        y[(p * 2 * h + i) * 2 * w + j] = x[(p * h + (i >> 1)) * w + (j >> 1)];
      }
    }
  }
  return y;
}

/**
 * Zero padding of the spatial dims of `[N, C, H, W]`.
 *
 * @example
 * ```ts
 * const y = pad2dCpu(x, [1, 4, 8, 8], { top: 0, bottom: 1, left: 0, right: 1 }); // -> [1, 4, 9, 9]
 * ```
 */
export function pad2dCpu(
  x: Float32Array,
  shape: readonly number[],
  pad: { top: number; bottom: number; left: number; right: number },
): Float32Array {
  const [n, c, h, w] = shape;
  const ho = h + pad.top + pad.bottom, wo = w + pad.left + pad.right;
  const y = new Float32Array(n * c * ho * wo);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        y[(p * ho + i + pad.top) * wo + j + pad.left] = x[(p * h + i) * w + j];
      }
    }
  }
  return y;
}

/**
 * torch "nearest" resize of `[N, C, H, W]` to `[N, C, height, width]` (f32 scale).
 *
 * @example
 * ```ts
 * const y = resizeNearestCpu(x, [1, 4, 3, 3], 5, 6); // -> [1, 4, 5, 6]
 * ```
 */
export function resizeNearestCpu(
  x: Float32Array,
  shape: readonly number[],
  height: number,
  width: number,
): Float32Array {
  const [n, c, h, w] = shape;
  const sh = Math.fround(h / height), sw = Math.fround(w / width);
  const y = new Float32Array(n * c * height * width);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < height; i++) {
      const si = Math.min(Math.floor(Math.fround(i * sh)), h - 1);
      for (let j = 0; j < width; j++) {
        const sj = Math.min(Math.floor(Math.fround(j * sw)), w - 1);
        y[(p * height + i) * width + j] = x[(p * h + si) * w + sj];
      }
    }
  }
  return y;
}
