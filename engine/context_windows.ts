/**
 * Sliding context windows for animations longer than the motion module's position encoding
 * (AnimateDiff's "context batch" in A1111 / ComfyUI tools): the UNet denoises overlapping windows
 * of `length` frames, each with positions 0..length-1, and every frame's noise prediction is the
 * average over the windows that contain it. Windows step by `length - overlap`; the last one is
 * aligned to the end (no wrap-around), so every frame is covered.
 * @module
 */

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
export function contextWindowStarts(frames: number, length: number, overlap: number): number[] {
  if (!(length >= 1 && overlap >= 0 && overlap < length)) {
    throw new Error(`context windows: expected 0 <= overlap < length, got ${overlap}, ${length}`);
  }
  if (frames <= length) return [0];
  const starts: number[] = [];
  for (let s = 0; s + length < frames; s += length - overlap) starts.push(s);
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
    const windows = starts.flatMap((s, w) => (s <= j && j < s + length ? [w] : []));
    const last = spans[spans.length - 1];
    if (last && last.windows.join() === windows.join()) last.end = j + 1;
    else spans.push({ start: j, end: j + 1, windows });
  }
  return spans;
}
