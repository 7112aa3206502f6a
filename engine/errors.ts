/**
 * Errors that mean "the user asked for something wrong" (bad flag, bad file, bad size), as
 * opposed to failures of the program or the GPU. The CLI exits with code 2 on these and the
 * HTTP service answers 400.
 * @module
 */

/**
 * Bad input: the message says what to change.
 *
 * @example
 * ```ts
 * import { InputError, loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * try {
 *   await pipe.generate({ prompt: "x", width: 30 });
 * } catch (e) {
 *   if (e instanceof InputError) console.log(e.message); // width must be a multiple of 8, got 30
 * }
 * ```
 */
export class InputError extends Error {
  /** Always "InputError". */
  override name = "InputError";
}

/**
 * The operation was cancelled through an AbortSignal.
 *
 * @example
 * ```ts
 * import { AbortError } from "@zoetrope/animatediff";
 *
 * const err = new AbortError();
 * console.log(err.name, err.message); // AbortError generation cancelled
 * ```
 */
export class AbortError extends Error {
  /** Always "AbortError". */
  override name = "AbortError";
  /** Creates the error (default message: "generation cancelled"). */
  constructor(message = "generation cancelled") {
    super(message);
  }
}
