/**
 * Prompt encoding: CLIP BPE ids for the prompt(s) and negative prompt(s), through the text
 * encoder, as the UNet's context.
 * @module
 */

import type { Tensor } from "../kernels/gpu/tensor.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import { concat } from "../kernels/layout.ts";
import type { PipelineParts } from "./load.ts";
import type { ResolvedRequest } from "./request.ts";
import type { ProgressEvent } from "./pipeline_types.ts";

/**
 * Text embeddings [2, 77, D] = [negative, positive] (or [1, 77, D] = positive without CFG).
 */
export function encodePrompt(
  p: PipelineParts,
  r: Pick<ResolvedRequest, "prompt" | "negativePrompt" | "clipSkip"> & {
    prompts?: readonly string[];
    negativePrompts?: readonly string[];
  },
  cfg: boolean,
  onProgress?: (e: ProgressEvent) => void,
): Tensor {
  const tok = (texts: readonly string[], what: string) => {
    const ids = new Int32Array(texts.length * p.tokenizer.maxLength);
    texts.forEach((text, i) => {
      const t = p.tokenizer.encode(text);
      if (t.truncated) {
        onProgress?.({
          stage: "encode",
          step: 0,
          total: 1,
          elapsedMs: 0,
          message: `${what} is ${t.untruncatedLength} tokens; truncated to ${t.ids.length}`,
        });
      }
      for (const id of t.ids) {
        if (id >= p.textEncoder.config.vocabSize) {
          throw new InputError(
            `tokenizer id ${id} is outside the text encoder's vocabulary (${p.textEncoder.config.vocabSize}): wrong tokenizer for this model`,
          );
        }
      }
      ids.set(t.ids, i * p.tokenizer.maxLength);
    });
    return ids;
  };
  const gpu = p.gpu;
  const prompts = r.prompts ?? [r.prompt];
  const b = prompts.length;
  const pos = tok(prompts, "prompt");
  if (!cfg) return p.textEncoder.forward(gpu, pos, b, r.clipSkip);
  const negatives = r.negativePrompts ?? new Array(b).fill(r.negativePrompt);
  const neg = tok(negatives, "negative prompt");
  if (r.clipSkip === 1) {
    // [negative x b, positive x b]: the UNet batch is (uncond videos, cond videos).
    const ids = new Int32Array(pos.length * 2);
    ids.set(neg, 0);
    ids.set(pos, pos.length);
    return p.textEncoder.forward(gpu, ids, 2 * b, 1);
  }
  // diffusers applies clip_skip to the prompt only; the negative prompt uses the last layer.
  return gpu.scope(() =>
    concat(gpu, [
      p.textEncoder.forward(gpu, neg, b, 1),
      p.textEncoder.forward(gpu, pos, b, r.clipSkip),
    ], 0)
  );
}
