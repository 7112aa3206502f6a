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
