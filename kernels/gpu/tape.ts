/**
 * What a launcher tells an autograd tape: the op, the inputs gradients may flow to, the tensors
 * its backward reads, and the backward itself. Launchers call {@link taped} with their output;
 * when no tape is on (inference) or no input is tracked (frozen weights, plain data) it records
 * nothing and costs nothing. The tape itself (keeping saved tensors alive, running the backward
 * in reverse, accumulating gradients) is engine/training/autograd.ts.
 * @module
 */

import type { Tensor } from "./tensor.ts";

/** One recorded op. */
export interface TapeOp {
  /** The op's name, for errors. */
  name: string;
  /**
   * Inputs gradients may flow to (tensors or reshapes of them); `backward` returns one gradient
   * per entry, in this order.
   */
  inputs: readonly Tensor[];
  /** The op's result (what `backward` gets the gradient of). */
  output: Tensor;
  /**
   * Tensors `backward` reads (inputs, the output, or intermediates the launcher made): the tape
   * keeps those created in the current scope alive until the backward has run.
   */
  saved: readonly Tensor[];
  /**
   * dL/d(output) `gy` (output's shape) -> dL/d(inputs[i]) in inputs[i]'s shape, or null where
   * `needs[i]` is false. Returns new tensors (the tape releases them); never releases `gy` or
   * a saved tensor. Runs inside a scope: its own intermediates need no frees.
   */
  backward(gy: Tensor, needs: readonly boolean[]): (Tensor | null)[];
}

/** Where launchers record ops (see engine/training/autograd.ts for the implementation). */
export interface Tape {
  /** True when gradients must reach `t` (a watched leaf, or the output of a recorded op). */
  tracks(t: Tensor): boolean;
  /** Records an op (called by {@link taped}, only when one of its inputs is tracked). */
  record(op: TapeOp): void;
}

/** The part of the Gpu that holds the tape currently recording (null: inference). */
export interface TapeHolder {
  tape: Tape | null;
}

/**
 * True when `gpu` is recording and one of `inputs` is tracked: launchers then take their plain,
 * unfused path (a fused epilogue is recorded as separate ops) so that each op has one backward.
 */
export function recording(
  gpu: TapeHolder,
  inputs: readonly (Tensor | null | undefined)[],
): boolean {
  const tape = gpu.tape;
  return tape !== null && inputs.some((t) => t && tape.tracks(t));
}

/**
 * Records `op` on the gpu's tape when one is on and one of its inputs is tracked; returns the
 * op's output either way.
 *
 * @example
 * ```ts
 * return taped(gpu, {
 *   name: "mul", inputs: [a, b], output: y, saved: [a, b],
 *   backward: (gy, needs) => [needs[0] ? mul(gpu, gy, b) : null, needs[1] ? mul(gpu, gy, a) : null],
 * });
 * ```
 */
export function taped(gpu: TapeHolder, op: TapeOp): Tensor {
  const tape = gpu.tape;
  if (tape && op.inputs.some((t) => tape.tracks(t))) tape.record(op);
  return op.output;
}
