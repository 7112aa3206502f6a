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
    videos: number;
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
      return predictNoise(p, x, t, inputScale, context, { ...r, frames: L });
    });
    const spans = frameSpans(f, starts, L);
    return joined(videos.flatMap((v) =>
      spans.map((span) => {
        const n = span.end - span.start;
        const terms = span.windows.map((w) =>
          framesOf(eps[w], L, v, (span.start - starts[w] + f) % f, n)
        );
        return terms.length === 1 ? terms[0] : mean(gpu, terms);
      })
    ));
  });
}

/** Mean of same-shape tensors, 4 terms per linear combination. */
function mean(gpu: Gpu, xs: readonly Tensor[]): Tensor {
  const c = 1 / xs.length;
  let acc = linearCombination(gpu, xs.slice(0, 4).map((x) => ({ c, x })));
  for (let i = 4; i < xs.length; i += 3) {
    acc = linearCombination(gpu, [{ c: 1, x: acc }, ...xs.slice(i, i + 3).map((x) => ({ c, x }))]);
  }
  return acc;
}
