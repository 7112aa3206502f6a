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
  /**
   * Creates the error. Its message is one line whatever it quotes: line breaks and other control
   * characters (a tensor or zip entry name from a hostile file, say) are shown as escapes.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(oneLine(message), options);
  }
}

/** Line breaks and the other control characters (tab excepted). */
// deno-lint-ignore no-control-regex -- control characters are what it finds
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]/g;

/** `text` with line breaks and control characters written as escapes (`\n`, `\x1b`, ...). */
function oneLine(text: string): string {
  return String(text).replace(
    CONTROL,
    (c) =>
      c === "\n"
        ? "\\n"
        : c === "\r"
        ? "\\r"
        : c.charCodeAt(0) < 0x100
        ? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`
        : `\\u${c.charCodeAt(0).toString(16)}`,
  );
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
