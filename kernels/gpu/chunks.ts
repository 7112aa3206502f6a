/**
 * Splitting a launch over binding-sized windows. A storage binding is limited (128 MiB by
 * default in WebGPU, on lavapipe and in browsers) while a tensor may be as large as a buffer, so
 * a launcher whose operands do not fit one binding runs its kernel once per run of independent
 * items (rows, images, videos), binding only that run's window of each operand
 * ({@link Tensor.window}). Every item is computed by the same kernel with the same arithmetic
 * as in one launch, so chunked results equal unchunked ones.
 * @module
 */

import { fmtBytes, type Gpu } from "./device.ts";
import { EngineLimitError } from "./errors.ts";
import { fmtShape, type Tensor } from "./tensor.ts";

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Runs `[start, count]` over `units` items such that each listed tensor's window of `count`
 * items fits one storage binding and starts on the binding alignment. A tensor is seen as
 * `units` equal items along its leading dims (its size must divide by `units`). One run when
 * everything fits. Throws {@link EngineLimitError} naming the op when one item is too large.
 *
 * @example
 * ```ts
 * // A Linear over rows: a [rows, K] and out [rows, N] split, the weight stays whole.
 * for (const [s, n] of bindingRuns(gpu, "linear", rows, [a, out], "row")) {
 *   launch(a.window(rows, s, n), out.window(rows, s, n));
 * }
 * ```
 */
export function bindingRuns(
  gpu: Gpu,
  op: string,
  units: number,
  tensors: readonly (Tensor | undefined | null)[],
  item = "item",
  options: { unaligned?: boolean } = {},
): [number, number][] {
  if (units <= 0) return [[0, units]];
  const { minStorageBufferOffsetAlignment: align } = gpu.limits;
  // Unaligned runs (kernels taking an element offset) bind from the aligned byte below.
  const limit = gpu.limits.maxStorageBufferBindingSize - (options.unaligned ? align : 0);
  let quantum = 1, maxCount = units;
  let worst: { t: Tensor; per: number } | null = null;
  for (const t of tensors) {
    if (!t) continue;
    const per = t.byteLength / units;
    if (!Number.isInteger(per)) {
      throw new Error(`${op}: ${t.label} ${fmtShape(t.shape)} does not split into ${units} items`);
    }
    if (per === 0) continue;
    const q = options.unaligned ? 1 : align / gcd(align, per);
    quantum = (quantum * q) / gcd(quantum, q);
    maxCount = Math.min(maxCount, Math.floor(limit / per));
    if (!worst || per > worst.per) worst = { t, per };
  }
  if (maxCount >= units) return [[0, units]];
  const count = Math.floor(maxCount / quantum) * quantum;
  if (count < 1 || !worst) {
    const t = worst!.t;
    throw new EngineLimitError(
      maxCount < 1
        ? `${op}: one ${item} of ${t.label} ${fmtShape(t.shape)} ${t.dtype} needs ${
          fmtBytes(worst!.per)
        }, more than one storage binding of this adapter holds (${fmtBytes(limit)})`
        : `${op}: ${t.label} ${fmtShape(t.shape)} ${t.dtype} cannot be split into ${
          fmtBytes(limit)
        } windows aligned to ${align} bytes`,
    );
  }
  const runs: [number, number][] = [];
  for (let s = 0; s < units; s += count) runs.push([s, Math.min(count, units - s)]);
  return runs;
}

/**
 * A window of `count` elements of `t` from element `start` that starts on the binding alignment:
 * the window begins up to one alignment unit earlier and `offset` says where `start` is in it
 * (for kernels with an element-offset parameter).
 */
export function alignedWindow(
  gpu: Gpu,
  t: Tensor,
  start: number,
  count: number,
): { window: Tensor; offset: number } {
  const bytes = t.byteLength / t.size;
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const abs = t.byteOffset + start * bytes;
  const offset = (abs % align) / bytes;
  if (!Number.isInteger(offset)) {
    throw new Error(`window of ${t.label}: element ${start} is not on an element boundary`);
  }
  const from = start - offset;
  if (from < 0) throw new Error(`window of ${t.label}: tensor does not start aligned`);
  return { window: t.window(t.size, from, offset + count), offset };
}

/**
 * Runs of `units` items such that an item costing `perItemBytes` (each operand's bytes per
 * item, largest counts) stays within `maxBytes` per run, starting on the binding alignment for
 * every operand: for splitting work to bound memory (e.g. a feed-forward's hidden layer) rather
 * than bindings. At least one alignment quantum per run.
 */
export function memoryRuns(
  gpu: Gpu,
  units: number,
  perItemBytes: readonly number[],
  maxBytes: number,
): [number, number][] {
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  let quantum = 1;
  for (const per of perItemBytes) {
    const q = align / gcd(align, per);
    quantum = (quantum * q) / gcd(quantum, q);
  }
  const largest = Math.max(...perItemBytes);
  const count = Math.max(quantum, Math.floor(maxBytes / largest / quantum) * quantum);
  const runs: [number, number][] = [];
  for (let s = 0; s < units; s += count) runs.push([s, Math.min(count, units - s)]);
  return runs;
}

/** True when every tensor fits one binding (launchers take their one-launch path). */
export function fitsOneBinding(gpu: Gpu, tensors: readonly (Tensor | undefined | null)[]): boolean {
  const limit = gpu.limits.maxStorageBufferBindingSize;
  return tensors.every((t) => !t || t.byteLength <= limit);
}
