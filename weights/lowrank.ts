/**
 * Host-side low-rank products for LoRA-style merges: `out += factor * a @ b`, row by row with
 * float64 accumulation and a contiguous inner loop (no [rows, cols] temporary beyond one row).
 * @module
 */

/**
 * Adds `factor * a @ b` to `out` in place: a [rows, rank], b [rank, cols], out [rows, cols].
 *
 * @example
 * ```ts
 * const w = new Float32Array(4); // [2, 2]
 * addProduct(w, new Float32Array([1, 2]), new Float32Array([3, 4]), { rank: 1, factor: 0.5 });
 * // w = [1.5, 2, 3, 4]
 * ```
 */
export function addProduct(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  { rank, factor = 1 }: { rank: number; factor?: number },
): Float32Array {
  const rows = a.length / rank, cols = b.length / rank;
  const row = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    row.fill(0);
    for (let k = 0; k < rank; k++) {
      const x = a[i * rank + k], b0 = k * cols;
      if (x !== 0) { for (let j = 0; j < cols; j++) row[j] += x * b[b0 + j]; }
    }
    const o0 = i * cols;
    for (let j = 0; j < cols; j++) out[o0 + j] += factor * row[j];
  }
  return out;
}
