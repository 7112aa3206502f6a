/**
 * Prompt encoding: CLIP BPE ids for the prompt(s) and negative prompt(s), through the text
 * encoder, as the UNet's context.
 * @module
 */

import type { Tensor } from "../kernels/gpu/tensor.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import { concat, slice } from "../kernels/layout.ts";
import { linearCombination } from "../kernels/elementwise.ts";
import { frameBlends, type Keyframes } from "./prompt_travel.ts";
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
  const tok = (texts: readonly string[], what: string) => tokenize(p, texts, what, onProgress);
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

/** CLIP ids [texts, maxLength] of `texts`; truncation is reported through `onProgress`. */
function tokenize(
  p: PipelineParts,
  texts: readonly string[],
  what: string,
  onProgress?: (e: ProgressEvent) => void,
): Int32Array {
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
}

/**
 * Prompt travel's per-frame text embeddings, [2F, 77, D] = [negative x F, frame embeddings]
 * (or [F, 77, D] without CFG): every keyframe prompt encoded once (with clip skip), each frame
 * the blend of its two keyframes' embeddings ({@link frameBlends}); the negative prompt is one
 * embedding for every frame (last hidden state, as diffusers encodes negatives).
 */
export function encodePromptTravel(
  p: PipelineParts,
  r: Pick<ResolvedRequest, "negativePrompt" | "clipSkip" | "frames"> & { keyframes: Keyframes },
  cfg: boolean,
  onProgress?: (e: ProgressEvent) => void,
): Tensor {
  const gpu = p.gpu;
  const k = r.keyframes;
  return gpu.scope(() => {
    const keys = p.textEncoder.forward(
      gpu,
      tokenize(p, k.prompts, "a promptMap prompt", onProgress),
      k.prompts.length,
      r.clipSkip,
    );
    const row = (i: number) => slice(gpu, keys, 0, i, i + 1);
    const frames = frameBlends(k.frames, r.frames).map((m) =>
      m.wb === 0
        ? row(m.a)
        : linearCombination(gpu, [{ c: m.wa, x: row(m.a) }, { c: m.wb, x: row(m.b) }])
    );
    if (!cfg) return concat(gpu, frames, 0);
    const neg = p.textEncoder.forward(
      gpu,
      tokenize(p, [r.negativePrompt], "negative prompt", onProgress),
      1,
      1,
    );
    return concat(gpu, [...new Array(r.frames).fill(neg), ...frames], 0);
  });
}
