/**
 * Prompt travel: keyframe prompts (`{0: "a girl smiling", 8: "a girl crying"}`) whose text
 * embeddings are interpolated per frame, as animatediff-cli-prompt-travel and diffusers' later
 * FreeNoise prompt interpolation do. This module holds the host side: checking a prompt map and
 * each frame's two keyframes and weights.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

/** Keyframe prompts by frame index (as numbers or decimal strings, as JSON and YAML give them). */
export type PromptMap = Readonly<Record<number | string, string>>;

/** A checked prompt map: keyframes sorted by frame. */
export interface Keyframes {
  /** Frame indices, ascending. */
  frames: number[];
  /** The prompt of each keyframe (with the request's prompt in front when it has one). */
  prompts: string[];
}

/** One frame's embedding: `wa * E[a] + wb * E[b]` over keyframe indices a and b. */
export interface FrameBlend {
  a: number;
  b: number;
  wa: number;
  wb: number;
}

/**
 * Checks a prompt map against the clip's length and returns its keyframes. Keys are integer
 * frames in [0, frames - 1]; prompts are strings. A non-empty `head` (the request's `prompt`)
 * goes in front of every keyframe prompt, as animatediff-cli-prompt-travel's `head_prompt`.
 * Throws an InputError naming `promptMap`.
 *
 * @example
 * ```ts
 * checkPromptMap({ 0: "dawn", 7: "night" }, 8, "a castle").prompts; // ["a castle, dawn", ...]
 * ```
 */
export function checkPromptMap(map: unknown, frames: number, head = ""): Keyframes {
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new InputError(`promptMap must be an object {frame: prompt}, got ${describe(map)}`);
  }
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length === 0) throw new InputError("promptMap needs at least one keyframe");
  const keys = entries.map(([k, v]) => {
    const frame = /^\d+$/.test(k.trim()) ? Number(k.trim()) : Number.NaN;
    if (!Number.isSafeInteger(frame)) {
      throw new InputError(`promptMap: keyframe "${k.slice(0, 40)}" is not a frame number`);
    }
    if (frame > frames - 1) {
      throw new InputError(
        `promptMap: keyframe ${frame} is beyond the last frame (${frames - 1} of ${frames})`,
      );
    }
    if (typeof v !== "string") {
      throw new InputError(`promptMap: the prompt of keyframe ${frame} must be a string`);
    }
    return { frame, prompt: head.trim() ? `${head.trim()}, ${v}` : v };
  }).sort((x, y) => x.frame - y.frame);
  for (let i = 1; i < keys.length; i++) {
    if (keys[i].frame === keys[i - 1].frame) {
      throw new InputError(`promptMap: keyframe ${keys[i].frame} is given twice`);
    }
  }
  return { frames: keys.map((k) => k.frame), prompts: keys.map((k) => k.prompt) };
}

/**
 * Each frame's blend of two keyframes: between consecutive keys k_a < k_b frame i gets
 * (1 - w) E_a + w E_b with w = (i - k_a) / (k_b - k_a); frames after the last key hold the last
 * prompt, frames before the first hold the first.
 *
 * @example
 * ```ts
 * frameBlends([0, 4], 6)[2]; // { a: 0, b: 1, wa: 0.5, wb: 0.5 }
 * ```
 */
export function frameBlends(keyframes: readonly number[], frames: number): FrameBlend[] {
  const k = keyframes, last = k.length - 1;
  return Array.from({ length: frames }, (_, i) => {
    if (i <= k[0]) return { a: 0, b: 0, wa: 1, wb: 0 };
    if (i >= k[last]) return { a: last, b: last, wa: 1, wb: 0 };
    let j = 0;
    while (k[j + 1] < i) j++;
    const w = (i - k[j]) / (k[j + 1] - k[j]);
    return { a: j, b: j + 1, wa: 1 - w, wb: w };
  });
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `"${v.slice(0, 40)}"` : typeof v;
}
