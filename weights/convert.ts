/**
 * Converts any readable weight file (safetensors, torch .ckpt/.pt/.bin) into safetensors,
 * streaming tensor by tensor; optionally stores float tensors as F16.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { isFloatDType } from "./dtype.ts";
import { openTensorFile } from "./open.ts";
import { hasReadRaw, writeSafetensors } from "./safetensors.ts";
import type { StorageDType } from "./types.ts";

/**
 * Options of convertToSafetensors.
 *
 * @example
 * ```ts
 * import { type ConvertOptions, convertToSafetensors } from "@zoetrope/animatediff";
 *
 * const options: ConvertOptions = {
 *   fp16: true,
 *   onProgress: (done, total) => console.log(`${Math.round((100 * done) / total)}%`),
 * };
 * await convertToSafetensors("model.ckpt", "model.safetensors", options);
 * ```
 */
export interface ConvertOptions {
  /** Store every floating-point tensor as F16 (integer tensors keep their dtype). */
  fp16?: boolean;
  /** Progress after each tensor: bytes written / total bytes, and the tensor's name. */
  onProgress?: (done: number, total: number, name: string) => void;
}

/**
 * What convertToSafetensors wrote.
 *
 * @example
 * ```ts
 * import { type ConvertResult, convertToSafetensors } from "@zoetrope/animatediff";
 *
 * const r: ConvertResult = await convertToSafetensors("mm_v2.ckpt", "mm_v2.safetensors");
 * console.log(r.tensors, r.bytes, r.format);
 * ```
 */
export interface ConvertResult {
  /** Tensors written. */
  tensors: number;
  /** Bytes of tensor data written. */
  bytes: number;
  /** Format of the input file as detected (e.g. "safetensors"). */
  format: string;
}

async function realPathOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.realPath(path);
  } catch {
    return null;
  }
}

/**
 * Streams the tensors of `input` into a new safetensors file `output` (metadata
 * `{"format": "pt"}`); refuses to overwrite the input.
 * @example
 * ```ts
 * await convertToSafetensors("mm_sd_v15_v2.ckpt", "mm_sd_v15_v2.safetensors", { fp16: true });
 * ```
 */
export async function convertToSafetensors(
  input: string,
  output: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const inReal = await realPathOrNull(input);
  const outReal = await realPathOrNull(output);
  if (inReal !== null && inReal === outReal) {
    throw new InputError(`${output}: refusing to overwrite the input file ${input}`);
  }
  const file = await openTensorFile(input);
  try {
    let bytes = 0;
    for (const name of file.tensors.keys()) {
      if (name === "" || name === "__metadata__") {
        throw new InputError(`${input}: tensor name "${name}" cannot be written to safetensors`);
      }
    }
    const entries = [...file.tensors].map(([name, t]) => {
      const dtype: StorageDType = options.fp16 && isFloatDType(t.dtype) ? "F16" : t.dtype;
      const data = dtype === t.dtype && hasReadRaw(t) ? () => t.readRaw() : () => t.read();
      return { name, shape: t.shape, dtype, data };
    });
    await writeSafetensors(output, entries, {
      metadata: { format: "pt" },
      onProgress: (done, total, name) => {
        bytes = done;
        options.onProgress?.(done, total, name);
      },
    });
    return { tensors: entries.length, bytes, format: file.format };
  } finally {
    file.close();
  }
}
