/**
 * CPU references of the resample kernels (nearest 2x upsampling, zero padding, nearest resize)
 * and of their backwards (float64 accumulation).
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

// ---------------------------------------------------------------- backward references

/**
 * Gradient of {@link upsampleNearest2xCpu} for x of `shape`: each 2x2 block of `gy` summed.
 *
 * @example
 * ```ts
 * const gx = upsampleNearest2xBackwardCpu(gy, [1, 4, 8, 8]); // gy [1, 4, 16, 16]
 * ```
 */
export function upsampleNearest2xBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
): Float32Array {
  const [n, c, h, w] = shape;
  return resizeScatter(gy, n * c, h, w, 2 * h, 2 * w, (i) => i >> 1, (j) => j >> 1);
}

/**
 * Gradient of {@link resizeNearestCpu} for x of `shape`: each output pixel's gradient added to
 * the input pixel it read (a scatter, the independent formulation of the GPU's gather).
 *
 * @example
 * ```ts
 * const gx = resizeNearestBackwardCpu(gy, [1, 4, 3, 3], 5, 6); // gy [1, 4, 5, 6]
 * ```
 */
export function resizeNearestBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  height: number,
  width: number,
): Float32Array {
  const [n, c, h, w] = shape;
  const sh = Math.fround(h / height), sw = Math.fround(w / width);
  return resizeScatter(
    gy,
    n * c,
    h,
    w,
    height,
    width,
    (i) => Math.min(Math.floor(Math.fround(i * sh)), h - 1),
    (j) => Math.min(Math.floor(Math.fround(j * sw)), w - 1),
  );
}

/** Adds gy [planes, ho, wo] into gx [planes, h, w] at (rowOf(i), colOf(j)), in float64. */
function resizeScatter(
  gy: Float32Array,
  planes: number,
  h: number,
  w: number,
  ho: number,
  wo: number,
  rowOf: (i: number) => number,
  colOf: (j: number) => number,
): Float32Array {
  const acc = new Float64Array(planes * h * w);
  for (let p = 0; p < planes; p++) {
    for (let i = 0; i < ho; i++) {
      for (let j = 0; j < wo; j++) {
        acc[(p * h + rowOf(i)) * w + colOf(j)] += gy[(p * ho + i) * wo + j];
      }
    }
  }
  return Float32Array.from(acc);
}

/**
 * Gradient of {@link pad2dCpu} for x of `shape`: the unpadded window of `gy`.
 *
 * @example
 * ```ts
 * const gx = pad2dBackwardCpu(gy, [1, 4, 8, 8], { top: 0, bottom: 1, left: 0, right: 1 });
 * ```
 */
export function pad2dBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  pad: { top: number; bottom: number; left: number; right: number },
): Float32Array {
  const [n, c, h, w] = shape;
  const ho = h + pad.top + pad.bottom, wo = w + pad.left + pad.right;
  const gx = new Float32Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        gx[(p * h + i) * w + j] = gy[(p * ho + i + pad.top) * wo + j + pad.left];
      }
    }
  }
  return gx;
}
