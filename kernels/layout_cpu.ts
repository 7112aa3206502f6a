/**
 * CPU references of the layout kernels (permute, concat, slice, repeat_interleave).
 * @module
 */

function stridesOf(shape: readonly number[]): number[] {
  const st: number[] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * `x.permute(perm).contiguous()`.
 *
 * @example
 * ```ts
 * const y = permuteCpu(x, [2, 3, 4], [2, 0, 1]); // -> [4, 2, 3]
 * ```
 */
export function permuteCpu(
  x: Float32Array,
  shape: readonly number[],
  perm: readonly number[],
): Float32Array {
  const out = perm.map((d) => shape[d]);
  const st = stridesOf(shape);
  const y = new Float32Array(x.length);
  for (let i = 0; i < y.length; i++) {
    let r = i, src = 0;
    for (let k = out.length - 1; k >= 0; k--) {
      src += (r % out[k]) * st[perm[k]];
      r = Math.floor(r / out[k]);
    }
    y[i] = x[src];
  }
  return y;
}

/**
 * Concatenation along `axis`.
 *
 * @example
 * ```ts
 * const y = concatCpu([{ data: a, shape: [2, 3] }, { data: b, shape: [2, 5] }], 1);
 * ```
 */
export function concatCpu(
  parts: readonly { data: Float32Array; shape: readonly number[] }[],
  axis: number,
): Float32Array {
  const shape = parts[0].shape;
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const y = new Float32Array(parts.reduce((a, p) => a + p.data.length, 0));
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const chunk = p.shape[axis] * inner;
      y.set(p.data.subarray(o * chunk, (o + 1) * chunk), k);
      k += chunk;
    }
  }
  return y;
}

/**
 * `x[..., start:end, ...]` along `axis`.
 *
 * @example
 * ```ts
 * const y = sliceCpu(x, [4, 6], 1, 2, 5); // -> [4, 3]
 * ```
 */
export function sliceCpu(
  x: Float32Array,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): Float32Array {
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const d = shape[axis];
  const y = new Float32Array(outer * (end - start) * inner);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    y.set(x.subarray((o * d + start) * inner, (o * d + end) * inner), k);
    k += (end - start) * inner;
  }
  return y;
}

/**
 * `torch.repeat_interleave(x, repeats, dim=axis)`.
 *
 * @example
 * ```ts
 * const y = repeatInterleaveCpu(x, [2, 3], 2, 0); // -> [4, 3]
 * ```
 */
export function repeatInterleaveCpu(
  x: Float32Array,
  shape: readonly number[],
  repeats: number,
  axis = 0,
): Float32Array {
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const d = shape[axis];
  const y = new Float32Array(x.length * repeats);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < d; j++) {
      const row = x.subarray((o * d + j) * inner, (o * d + j + 1) * inner);
      for (let r = 0; r < repeats; r++, k += inner) y.set(row, k);
    }
  }
  return y;
}

// ---------------------------------------------------------------- backward references

/**
 * Gradient of {@link permuteCpu}: `gy` (the permuted shape) permuted back to `shape`.
 *
 * @example
 * ```ts
 * const gx = permuteBackwardCpu(gy, [2, 3, 4], [2, 0, 1]); // gy [4, 2, 3] -> [2, 3, 4]
 * ```
 */
export function permuteBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  perm: readonly number[],
): Float32Array {
  const inverse: number[] = [];
  perm.forEach((d, k) => inverse[d] = k);
  return permuteCpu(gy, perm.map((d) => shape[d]), inverse);
}

/**
 * Gradients of {@link concatCpu}: the slices of `gy` along `axis`, one per input shape.
 *
 * @example
 * ```ts
 * const [ga, gb] = concatBackwardCpu(gy, [[2, 3], [2, 5]], 1);
 * ```
 */
export function concatBackwardCpu(
  gy: Float32Array,
  shapes: readonly (readonly number[])[],
  axis: number,
): Float32Array[] {
  const total = shapes.reduce((a, s) => a + s[axis], 0);
  const shape = shapes[0].map((d, i) => i === axis ? total : d);
  let start = 0;
  return shapes.map((s) => {
    start += s[axis];
    return sliceCpu(gy, shape, axis, start - s[axis], start);
  });
}

/**
 * Zero padding of `x` along `axis` with `before` / `after` zeros.
 *
 * @example
 * ```ts
 * const y = padAxisCpu(x, [4, 5], 1, 2, 3); // -> [4, 10]
 * ```
 */
export function padAxisCpu(
  x: Float32Array,
  shape: readonly number[],
  axis: number,
  before: number,
  after: number,
): Float32Array {
  const outer = numel(shape.slice(0, axis)), inner = numel(shape.slice(axis + 1));
  const d = shape[axis], dy = before + d + after;
  const y = new Float32Array(outer * dy * inner);
  for (let o = 0; o < outer; o++) {
    y.set(x.subarray(o * d * inner, (o + 1) * d * inner), (o * dy + before) * inner);
  }
  return y;
}

/**
 * Gradient of {@link sliceCpu} for x of `shape`: `gy` in place, zeros elsewhere.
 *
 * @example
 * ```ts
 * const gx = sliceBackwardCpu(gy, [4, 6], 1, 2, 5); // gy [4, 3] -> [4, 6]
 * ```
 */
export function sliceBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): Float32Array {
  const sliced = shape.map((d, i) => i === axis ? end - start : d);
  return padAxisCpu(gy, sliced, axis, start, shape[axis] - end);
}

/**
 * Gradient of {@link repeatInterleaveCpu} for x of `shape`: each item's repeats summed (float64).
 *
 * @example
 * ```ts
 * const gx = repeatInterleaveBackwardCpu(gy, [2, 3], 2, 0); // gy [4, 3] -> [2, 3]
 * ```
 */
export function repeatInterleaveBackwardCpu(
  gy: Float32Array,
  shape: readonly number[],
  repeats: number,
  axis = 0,
): Float32Array {
  const inner = numel(shape.slice(axis + 1));
  const rows = numel(shape.slice(0, axis + 1)); // (outer, d) items, in order
  const gx = new Float32Array(rows * inner);
  for (let t = 0; t < rows; t++) {
    for (let k = 0; k < inner; k++) {
      let s = 0;
      for (let q = 0; q < repeats; q++) s += gy[(t * repeats + q) * inner + k];
      gx[t * inner + k] = s;
    }
  }
  return gx;
}
