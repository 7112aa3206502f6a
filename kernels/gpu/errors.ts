/**
 * The errors every layer throws. `InputError` means "the user asked for something wrong" (bad
 * flag, bad file, bad size): the CLI exits with code 2 and the HTTP service answers 400.
 * `EngineLimitError` means a valid request is more than the adapter or the memory budget allows;
 * `NoAdapterError`, `DeviceLostError` and `GpuError` are failures of the GPU (CLI exit code 1).
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

/**
 * No WebGPU adapter could be found.
 *
 * @example
 * ```ts
 * import { Gpu, NoAdapterError } from "@zoetrope/animatediff";
 *
 * try {
 *   const gpu = await Gpu.create();
 *   gpu.destroy();
 * } catch (e) {
 *   if (e instanceof NoAdapterError) console.error(e.message); // says what driver to install
 * }
 * ```
 */
export class NoAdapterError extends Error {
  /** Always "NoAdapterError". */
  override name = "NoAdapterError";
}

/** The device was lost (driver reset, out of memory, destroyed). */
export class DeviceLostError extends Error {
  override name = "DeviceLostError";
}

/** A GPU validation or out-of-memory error raised by recorded work. */
export class GpuError extends Error {
  override name = "GpuError";
}

/**
 * The request is valid but more than this adapter (or the memory budget) can hold, even with the
 * work split into binding-sized chunks; the message says what would fit. The CLI exits with 1.
 *
 * @example
 * ```ts
 * import { EngineLimitError, loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * try {
 *   await pipe.generate({ prompt: "x", frames: 8, width: 2048, height: 2048 });
 * } catch (e) {
 *   if (e instanceof EngineLimitError) console.error(e.message); // what would fit instead
 * }
 * pipe.dispose();
 * ```
 */
export class EngineLimitError extends Error {
  /** Always "EngineLimitError". */
  override name = "EngineLimitError";
}
