/**
 * Sliding context windows for animations longer than the motion module's position encoding
 * (AnimateDiff's "context batch" in A1111 / ComfyUI tools): the UNet denoises overlapping windows
 * of `length` frames, each with positions 0..length-1, and every frame's noise prediction is the
 * average over the windows that contain it. Windows step by `length - overlap`; the last one is
 * aligned to the end, so every frame is covered. With `loop` (A1111's "closed loop") windows
 * keep stepping past the end and wrap around to frame 0, so the last frames are denoised
 * together with the first and the animation loops seamlessly; window w then holds frames
 * `(start + p) % frames` for p in 0..length-1.
 * @module
 */

import type { Gpu } from "../kernels/gpu/device.ts";
import type { Tensor } from "../kernels/gpu/tensor.ts";
import { linearCombination } from "../kernels/elementwise.ts";
import { concat, slice } from "../kernels/layout.ts";
import type { PipelineParts } from "./load.ts";
import { predictNoise } from "./noise.ts";

/** Most frames one request may ask for with context windows. */
export const MAX_WINDOWED_FRAMES = 512;

/**
 * First frames of the windows covering `frames` frames.
 *
 * @example
 * ```ts
 * contextWindowStarts(24, 16, 4); // [0, 8]
 * contextWindowStarts(40, 16, 4); // [0, 12, 24]
 * contextWindowStarts(12, 16, 4); // [0] (one window holds every frame)
 * ```
 */
export function contextWindowStarts(
  frames: number,
  length: number,
  overlap: number,
  loop = false,
): number[] {
  if (!(length >= 1 && overlap >= 0 && overlap < length)) {
    throw new Error(`context windows: expected 0 <= overlap < length, got ${overlap}, ${length}`);
  }
  if (frames <= length) return [0];
  const starts: number[] = [];
  const step = length - overlap;
  if (loop) {
    // Until a window wraps past the end and overlaps frame 0 again.
    for (
      let s = 0;
      s < frames && (starts.length === 0 || s - step + length < frames + overlap);
      s += step
    ) {
      starts.push(s);
    }
    return starts;
  }
  for (let s = 0; s + length < frames; s += step) starts.push(s);
  starts.push(frames - length);
  return starts;
}

/** How overlapping windows' predictions are combined per frame. */
export type ContextWeighting = "flat" | "pyramid";
/** The weightings. */
export const CONTEXT_WEIGHTINGS: readonly ContextWeighting[] = ["flat", "pyramid"];

/**
 * Weight of each position of a window of `length` frames: all 1 (`flat`), or rising 1..m and
 * falling back to 1 (`pyramid`, AnimateDiff-Evolved's default), so that a frame leans on the
 * windows where it sits near the middle.
 *
 * @example
 * ```ts
 * contextWeights(8, "pyramid"); // [1, 2, 3, 4, 4, 3, 2, 1]
 * contextWeights(5, "pyramid"); // [1, 2, 3, 2, 1]
 * ```
 */
export function contextWeights(length: number, weighting: ContextWeighting): number[] {
  if (weighting === "flat") return new Array(length).fill(1);
  const half = Math.floor(length / 2);
  return Array.from(
    { length },
    (_, p) => Math.min(p + 1, length - p, length % 2 ? half + 1 : half),
  );
}

/** A run of frames covered by the same windows. */
export interface FrameSpan {
  /** First frame and one past the last. */
  start: number;
  end: number;
  /** Indices (into the starts list) of the windows that contain these frames. */
  windows: number[];
}

/**
 * Splits `0..frames` into runs covered by the same windows, in order (used to average the
 * windows' predictions with one linear combination per run).
 *
 * @example
 * ```ts
 * frameSpans(24, [0, 8], 16);
 * // [{start: 0, end: 8, windows: [0]}, {start: 8, end: 16, windows: [0, 1]}, {start: 16, end: 24, windows: [1]}]
 * ```
 */
export function frameSpans(frames: number, starts: readonly number[], length: number): FrameSpan[] {
  const spans: FrameSpan[] = [];
  for (let j = 0; j < frames; j++) {
    // Position of frame j in the window starting at s (windows may wrap past the end).
    const windows = starts.flatMap((s, w) => ((j - s + frames) % frames < length ? [w] : []));
    const last = spans[spans.length - 1];
    if (last && last.windows.join() === windows.join()) last.end = j + 1;
    else spans.push({ start: j, end: j + 1, windows });
  }
  return spans;
}

/**
 * {@link predictNoise} over sliding context windows when the frames do not fit one window: each
 * window's frames of every video run through the UNet on their own, and each frame's prediction
 * is the mean over the windows containing it. latents: [videos * frames, 4, h, w], video-major.
 */
export function predictNoiseWindowed(
  p: PipelineParts,
  latents: Tensor,
  t: number,
  inputScale: number,
  context: Tensor,
  r: {
    frames: number;
    guidance: number;
    contextLength: number;
    contextOverlap: number;
    contextLoop?: boolean;
    /** How overlapping windows combine (default flat: the mean). */
    contextWeighting?: ContextWeighting;
    videos: number;
    /** Prompt travel: the context holds one row per frame (else one per video). */
    keyframes?: unknown;
  },
): Tensor {
  const gpu = p.gpu;
  const f = r.frames, L = r.contextLength;
  if (L >= f) return predictNoise(p, latents, t, inputScale, context, r);
  const starts = contextWindowStarts(f, L, r.contextOverlap, r.contextLoop);
  // Frames s..s+L (mod f: closed-loop windows wrap) of every video: [videos * L, 4, h, w].
  const framesOf = (x: Tensor, perVideo: number, v: number, start: number, count: number) =>
    slice(gpu, x, 0, v * perVideo + start, v * perVideo + start + count);
  const joined = (parts: Tensor[]) => parts.length === 1 ? parts[0] : concat(gpu, parts, 0);
  const videos = Array.from({ length: r.videos }, (_, v) => v);
  return gpu.scope(() => {
    const eps = starts.map((s) => {
      const runs: [number, number][] = s + L <= f ? [[s, L]] : [[s, f - s], [0, s + L - f]];
      const x = joined(videos.flatMap((v) => runs.map(([a, n]) => framesOf(latents, f, v, a, n))));
      // Prompt travel: the window takes its own frames' embeddings, in each guidance half.
      const halves = Array.from({ length: context.shape[0] / (r.videos * f) }, (_, h) => h);
      const ctx = r.keyframes
        ? joined(
          halves.flatMap((h) =>
            videos.flatMap((v) =>
              runs.map(([a, n]) => framesOf(context, f, h * r.videos + v, a, n))
            )
          ),
        )
        : context;
      return predictNoise(p, x, t, inputScale, ctx, { ...r, frames: L });
    });
    const weights = contextWeights(L, r.contextWeighting ?? "flat");
    const pyramid = r.contextWeighting === "pyramid";
    // Pyramid weights vary along a span: its frames are combined one by one.
    const spans = frameSpans(f, starts, L).flatMap((s) =>
      pyramid && s.windows.length > 1
        ? Array.from({ length: s.end - s.start }, (_, k) => ({
          ...s,
          start: s.start + k,
          end: s.start + k + 1,
        }))
        : [s]
    );
    return joined(videos.flatMap((v) =>
      spans.map((span) => {
        const n = span.end - span.start;
        const terms = span.windows.map((w) => {
          const pos = (span.start - starts[w] + f) % f;
          return { x: framesOf(eps[w], L, v, pos, n), c: weights[pos] };
        });
        return terms.length === 1 ? terms[0].x : weightedMean(gpu, terms);
      })
    ));
  });
}

/** sum c_i x_i / sum c_i of same-shape tensors, 4 terms per linear combination. */
function weightedMean(gpu: Gpu, terms: readonly { c: number; x: Tensor }[]): Tensor {
  const total = terms.reduce((s, t) => s + t.c, 0);
  const scaled = terms.map((t) => ({ c: t.c / total, x: t.x }));
  let acc = linearCombination(gpu, scaled.slice(0, 4));
  for (let i = 4; i < scaled.length; i += 3) {
    acc = linearCombination(gpu, [{ c: 1, x: acc }, ...scaled.slice(i, i + 3)]);
  }
  return acc;
}

/**
 * FreeNoise's noise re-use (Qiu et al. 2023, as diffusers' `_prepare_latents_free_noise` and
 * AnimateDiff-Evolved): the first window keeps its noise; every later stretch of
 * `length - overlap` frames takes a shuffled copy of the frames `length` before it, so all
 * windows start from permutations of the same noise and long clips stay coherent. `noise` is
 * [videos, channels, frames, h, w] (diffusers' layout); the permutations come from `seed`
 * (a small seeded generator of ours, not torch's randperm). Returns a new array.
 *
 * @example
 * ```ts
 * const reused = freeNoise(noise, { videos: 1, channels: 4, frames: 32, plane: 64 * 64 }, 16, 4, 42);
 * ```
 */
export function freeNoise(
  noise: Float32Array,
  shape: { videos: number; channels: number; frames: number; plane: number },
  length: number,
  overlap: number,
  seed: number | bigint,
): Float32Array {
  const { videos, channels, frames: f, plane } = shape;
  const out = noise.slice();
  const delta = length - overlap;
  if (f <= length || delta < 1) return out;
  let state = Number(BigInt.asUintN(32, BigInt(seed))) ^ 0x9e3779b9;
  const next = () => {
    // mulberry32
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const copy = (from: number, to: number) => {
    for (let v = 0; v < videos; v++) {
      for (let c = 0; c < channels; c++) {
        const base = (v * channels + c) * f * plane;
        out.copyWithin(base + to * plane, base + from * plane, base + (from + 1) * plane);
      }
    }
  };
  for (let start = 0; start < f - length; start += delta) {
    const place = start + length;
    if (place >= f) break;
    const n = Math.min(delta, f - place);
    const idx = Array.from({ length: n }, (_, i) => start + i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    idx.forEach((from, i) => copy(from, place + i));
  }
  return out;
}
