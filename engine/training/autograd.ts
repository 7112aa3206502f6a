/**
 * Reverse-mode autodiff over the engine's ops. A {@link GradientTape} is switched on for the
 * forward pass (`tape.run(() => model.forward(...))`); launchers record what they ran through
 * kernels/gpu/tape.ts when one of their inputs is tracked (a watched parameter, or anything
 * computed from one), and the tape keeps the tensors each backward reads. `gradients(y, gy)` then
 * walks the ops in reverse, runs each op's backward kernels and sums the gradients that reach
 * each tensor. Frozen weights are never watched: their ops pass gradients through to the
 * activations but compute no weight gradient. {@link GradientTape.checkpoint} trades compute for
 * memory (activation checkpointing): a block runs without saving anything and is recorded as one
 * op whose backward runs the block again on a nested tape.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import { fmtShape, type Tensor } from "../../kernels/gpu/tensor.ts";
import type { Tape, TapeOp } from "../../kernels/gpu/tape.ts";
import { add } from "../../kernels/elementwise.ts";

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

  /**
   * Activation checkpointing: runs `fn(...inputs)` saving nothing (its intermediates are freed
   * as soon as its forward has used them) and records it as ONE op. That op's backward runs `fn`
   * again on a nested tape watching the inputs and this tape's leaves that `fn` used, takes the
   * gradients of fn's result, returns the inputs' gradients and hands the leaves' gradients to
   * this tape's accumulation; the recomputed intermediates are freed after that backward. The
   * launchers take the same (taped, unfused) paths in both runs, so results and gradients are
   * those of recording `fn` directly. `fn` must read tracked tensors only through `inputs` (a
   * captured activation is an error; frozen weights and leaves may be captured) and must give the
   * same ops for the same inputs. Call it while this tape records (inside {@link run}).
   *
   * @example
   * ```ts
   * const tape = new GradientTape(gpu);
   * tape.watch(w);
   * const y = tape.run(() =>
   *   gpu.scope(() => tape.checkpoint((x, t) => block.forward(gpu, x, t), [x, temb]))
   * );
   * const grads = tape.gradients(y, ones); // as without the checkpoint, with less memory held
   * ```
   */
  checkpoint(fn: (...inputs: Tensor[]) => Tensor, inputs: readonly Tensor[]): Tensor {
    const gpu = this.#gpu;
    if (gpu.tape !== this) {
      throw new Error("GradientTape.checkpoint: this tape is not recording (call it inside run)");
    }
    const probe = new CheckpointProbe(this, inputs);
    gpu.tape = probe;
    let y: Tensor;
    try {
      y = fn(...inputs);
    } finally {
      gpu.tape = this;
    }
    // Nothing tracked went in, or the result does not depend on it: nothing to record.
    if (!probe.produced(y)) return y;
    const roots = probe.used();
    // Only the tracked inputs' roots: the nested tape watches exactly what this one tracks, so
    // every launcher takes the same path again.
    const watched = [
      ...new Set(inputs.map((t) => t.root).filter((r) => this.#tracked.has(r))),
      ...roots.filter((r) => this.#leaves.has(r)),
    ];
    this.record({
      name: "checkpoint",
      inputs: roots,
      output: y,
      saved: inputs,
      backward: (gy, needs) => this.#recompute(fn, inputs, { watched, roots, needs }, gy),
    });
    return y;
  }

  /** The checkpoint op's backward: `fn` again on a nested tape, then its gradients. */
  #recompute(
    fn: (...inputs: Tensor[]) => Tensor,
    inputs: readonly Tensor[],
    o: { watched: readonly Tensor[]; roots: readonly Tensor[]; needs: readonly boolean[] },
    gy: Tensor,
  ): (Tensor | null)[] {
    const gpu = this.#gpu;
    const inner = new GradientTape(gpu);
    try {
      for (const t of o.watched) inner.watch(t);
      const outer = gpu.tape;
      gpu.tape = inner;
      let y: Tensor;
      try {
        y = fn(...inputs);
      } finally {
        gpu.tape = outer;
      }
      const grads = inner.gradients(y, gy);
      const out = o.roots.map((r, k) => {
        const g = grads.get(r) ?? null;
        grads.delete(r);
        if (o.needs[k]) return g;
        g?.release();
        return null;
      });
      for (const g of grads.values()) g.release();
      return out;
    } finally {
      // The recomputed intermediates go once the ops recorded so far have run.
      inner.dispose();
    }
  }

  /** True when `t` is a watched leaf (a trainable parameter). */
  isLeaf(t: Tensor): boolean {
    return this.#leaves.has(t.root);
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

/**
 * What the gpu records through while a checkpointed block runs its forward: it tracks what the
 * tape tracks plus the results of the block's own ops (so launchers take the taped paths), keeps
 * nothing, and notes which tracked inputs and leaves the block's ops read.
 */
class CheckpointProbe implements Tape {
  readonly #tape: GradientTape;
  readonly #inputs: Set<Tensor>;
  /** Results of the block's recorded ops. */
  readonly #outputs = new Set<Tensor>();
  /** Tracked input roots and leaves the block read, in first-use order. */
  readonly #used = new Set<Tensor>();

  constructor(tape: GradientTape, inputs: readonly Tensor[]) {
    this.#tape = tape;
    this.#inputs = new Set(inputs.map((t) => t.root));
  }

  tracks(t: Tensor): boolean {
    return this.#outputs.has(t.root) || this.#tape.tracks(t);
  }

  record(op: TapeOp): void {
    for (const t of op.inputs) {
      const r = t.root;
      if (this.#outputs.has(r) || !this.#tape.tracks(r)) continue;
      if (!this.#inputs.has(r) && !this.#tape.isLeaf(r)) {
        throw new Error(
          `GradientTape.checkpoint: ${op.name} reads ${r.label} ${fmtShape(r.shape)}, which ` +
            `needs a gradient but is not among the checkpoint's inputs; pass it as an input`,
        );
      }
      this.#used.add(r);
    }
    this.#outputs.add(op.output.root);
  }

  /** True when `y` is the result of one of the block's recorded ops. */
  produced(y: Tensor): boolean {
    return this.#outputs.has(y.root);
  }

  /** The tracked inputs' roots and the leaves the block read. */
  used(): Tensor[] {
    return [...this.#used];
  }
}

/** A zero tensor of `t`'s shape and dtype. */
export function zerosLike(gpu: Gpu, t: Tensor): Tensor {
  return gpu.upload(new Float32Array(t.size), t.shape, t.dtype, "zeros");
}
