/**
 * Reverse-mode autodiff over the engine's ops. A {@link GradientTape} is switched on for the
 * forward pass (`tape.run(() => model.forward(...))`); launchers record what they ran through
 * kernels/gpu/tape.ts when one of their inputs is tracked (a watched parameter, or anything
 * computed from one), and the tape keeps the tensors each backward reads. `gradients(y, gy)` then
 * walks the ops in reverse, runs each op's backward kernels and sums the gradients that reach
 * each tensor. Frozen weights are never watched: their ops pass gradients through to the
 * activations but compute no weight gradient.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import type { Tape, TapeOp } from "./gpu/tape.ts";
import { add } from "./elementwise.ts";

/**
 * A tape that records ops while it runs and computes gradients of one result with respect to the
 * watched tensors.
 *
 * @example
 * ```ts
 * const tape = new GradientTape(gpu);
 * tape.watch(w);
 * const y = tape.run(() => gpu.scope(() => linear(gpu, x, w)));
 * const grads = tape.gradients(y, ones); // Map: w -> dL/dw
 * tape.dispose();
 * ```
 */
export class GradientTape implements Tape {
  readonly #gpu: Gpu;
  readonly #ops: TapeOp[] = [];
  /** Roots gradients must reach: watched leaves and outputs of recorded ops. */
  readonly #tracked = new Set<Tensor>();
  readonly #leaves = new Set<Tensor>();
  /** Saved tensors the tape took ownership of (created in the recording scope). */
  readonly #owned = new Set<Tensor>();
  #disposed = false;

  constructor(gpu: Gpu) {
    this.#gpu = gpu;
  }

  /** Marks a leaf (a trainable parameter) whose gradient {@link gradients} returns. */
  watch(t: Tensor): void {
    this.#leaves.add(t.root);
    this.#tracked.add(t.root);
  }

  /** True when gradients must reach `t`. */
  tracks(t: Tensor): boolean {
    return this.#tracked.has(t.root);
  }

  /** Number of ops recorded so far. */
  get size(): number {
    return this.#ops.length;
  }

  /** @internal Called by launchers through `taped`. */
  record(op: TapeOp): void {
    if (this.#disposed) throw new Error("GradientTape: recording on a disposed tape");
    this.#ops.push(op);
    this.#tracked.add(op.output.root);
    for (const t of [...op.saved, op.output]) {
      if (!this.#owned.has(t.root) && this.#gpu.adopt(t)) this.#owned.add(t.root);
    }
  }

  /** Runs `fn` with this tape recording on the gpu (tapes do not nest). */
  run<T>(fn: () => T): T {
    if (this.#gpu.tape) throw new Error("GradientTape: another tape is already recording");
    this.#gpu.tape = this;
    try {
      return fn();
    } finally {
      this.#gpu.tape = null;
    }
  }

  /**
   * Gradients of `y` (weighted by `gy`, same shape as y: the gradient of the loss with respect to
   * y) for every watched leaf that y depends on, keyed by the leaf's root tensor. The caller
   * releases the returned tensors. Recorded ops and saved tensors stay until {@link dispose}, so
   * gradients can be asked again (e.g. of another output).
   */
  gradients(y: Tensor, gy: Tensor): Map<Tensor, Tensor> {
    if (y.size !== gy.size) {
      throw new Error(
        `GradientTape: gradient ${fmtShape(gy.shape)} does not match result ${fmtShape(y.shape)}`,
      );
    }
    const gpu = this.#gpu;
    const grads = new Map<Tensor, Tensor>();
    const accumulate = (root: Tensor, g: Tensor) => {
      const gr = g.reshape(root.shape);
      const prev = grads.get(root);
      if (!prev) {
        grads.set(root, gr);
        return;
      }
      grads.set(root, gpu.scope(() => add(gpu, prev, gr)));
      prev.release();
      gr.release();
    };
    // The seed is the caller's: accumulate a copy so that releasing grads never frees it.
    const seed = gpu.empty(y.root.shape, gy.dtype, "gradient seed");
    gpu.copy(gy, seed);
    grads.set(y.root, seed);
    for (let i = this.#ops.length - 1; i >= 0; i--) {
      const op = this.#ops[i];
      const root = op.output.root;
      const g = grads.get(root);
      if (!g) continue;
      const needs = op.inputs.map((t) => this.#tracked.has(t.root));
      const results = gpu.scope(() => op.backward(g.reshape(op.output.shape), needs));
      if (results.length !== op.inputs.length) {
        throw new Error(
          `${op.name} backward: ${results.length} gradients for ${op.inputs.length} inputs`,
        );
      }
      if (!this.#leaves.has(root)) {
        grads.delete(root);
        g.release();
      }
      results.forEach((r, k) => {
        if (!r) return;
        const input = op.inputs[k];
        if (!needs[k]) {
          r.release();
          return;
        }
        if (r.size !== input.size) {
          throw new Error(
            `${op.name} backward: gradient ${fmtShape(r.shape)} for input ${fmtShape(input.shape)}`,
          );
        }
        accumulate(input.root, r);
      });
    }
    const out = new Map<Tensor, Tensor>();
    for (const [root, g] of grads) {
      if (this.#leaves.has(root)) out.set(root, g);
      else g.release();
    }
    return out;
  }

  /** Frees what the tape saved and forgets its ops. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of this.#owned) if (!t.released) t.release();
    this.#owned.clear();
    this.#ops.length = 0;
  }
}

/** A zero tensor of `t`'s shape and dtype. */
export function zerosLike(gpu: Gpu, t: Tensor): Tensor {
  return gpu.upload(new Float32Array(t.size), t.shape, t.dtype, "zeros");
}
