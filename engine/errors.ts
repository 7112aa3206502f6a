/**
 * Errors that mean "the user asked for something wrong" (bad flag, bad file, bad size), as
 * opposed to failures of the program or the GPU. The CLI exits with code 2 on these and the
 * HTTP service answers 400.
 * @module
 */

/** Bad input: the message says what to change. */
export class InputError extends Error {
  override name = "InputError";
}

/** The operation was cancelled through an AbortSignal. */
export class AbortError extends Error {
  override name = "AbortError";
  constructor(message = "generation cancelled") {
    super(message);
  }
}
