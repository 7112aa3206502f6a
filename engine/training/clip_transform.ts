/**
 * The pixel side of the original AnimateDiff `WebVid10M` dataset, in plain CPU code: which
 * frames a sample takes (`np.linspace` over a window of `(n - 1) * stride + 1` frames) and the
 * torchvision transforms it applies (`RandomHorizontalFlip`, `Resize(short side)` bilinear with
 * antialiasing, `CenterCrop`, `Normalize(0.5, 0.5)`), producing `[frames, 3, H, W]` in [-1, 1].
 * @module
 */

import type { Frame } from "../output/frame.ts";

/**
 * The frames a clip sample spans: `min(videoLength, (n - 1) * stride + 1)` as the original's
 * `clip_length` (a clip too short for the stride is spanned whole, at a smaller stride).
 *
 * @example
 * ```ts
 * clipSpan(100, { nFrames: 16, stride: 4 }); // 61
 * clipSpan(20, { nFrames: 16, stride: 4 }); // 20
 * ```
 */
export function clipSpan(
  videoLength: number,
  sampling: { nFrames: number; stride: number },
): number {
  return Math.min(videoLength, (sampling.nFrames - 1) * sampling.stride + 1);
}

/**
 * Frame indices of one sample starting at `start`: `np.linspace(start, start + span - 1, n,
 * dtype=int)` (steps of `(span - 1) / (n - 1)`, floored, the last exactly `start + span - 1`).
 * With a span of `(n - 1) * stride + 1` that is every `stride`-th frame.
 *
 * @example
 * ```ts
 * sampleFrameIndices(100, 3, { nFrames: 4, stride: 2 }); // [3, 5, 7, 9]
 * sampleFrameIndices(5, 0, { nFrames: 4, stride: 2 }); // [0, 1, 2, 4]
 * ```
 */
export function sampleFrameIndices(
  videoLength: number,
  start: number,
  sampling: { nFrames: number; stride: number },
): number[] {
  const n = sampling.nFrames;
  const span = clipSpan(videoLength, sampling);
  if (!Number.isInteger(start) || start < 0 || start + span > videoLength) {
    throw new RangeError(`sampleFrameIndices: start ${start} leaves no room for ${span} frames`);
  }
  if (n === 1) return [start];
  const stop = start + span - 1;
  const step = (stop - start) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n - 1; i++) out.push(Math.floor(i * step + start));
  out.push(stop);
  return out;
}

/**
 * The size a `srcWidth` x `srcHeight` frame is resized to before the centre crop to
 * `[height, width]`: the smallest that covers the crop keeping the aspect ratio. For a square
 * crop that is torchvision's `Resize(size)`: short side `size`, long side
 * `int(size * long / short)`.
 *
 * @example
 * ```ts
 * resizedSize(320, 240, [256, 256]); // { width: 341, height: 256 }
 * ```
 */
export function resizedSize(
  srcWidth: number,
  srcHeight: number,
  crop: readonly [number, number],
): { width: number; height: number } {
  const [th, tw] = crop;
  if (srcWidth * th >= tw * srcHeight) {
    return { width: Math.max(tw, Math.trunc(th * srcWidth / srcHeight)), height: th };
  }
  return { width: tw, height: Math.max(th, Math.trunc(tw * srcHeight / srcWidth)) };
}

/** Python's `round`: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision `CenterCrop` offsets: `int(round((size - crop) / 2))` with Python's rounding.
 *
 * @example
 * ```ts
 * centerCropOffset(341, 256); // 42 (42.5 rounds to even)
 * ```
 */
export function centerCropOffset(size: number, crop: number): number {
  return roundHalfEven((size - crop) / 2);
}

/** Antialiased linear resampling weights for output indices `outputs` (PIL / torch `antialias`). */
function resampleWeights(
  inSize: number,
  outSize: number,
  outputs: readonly number[],
): { start: Int32Array; count: Int32Array; weights: Float64Array; taps: number } {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outputs.length), count = new Int32Array(outputs.length);
  const weights = new Float64Array(outputs.length * taps);
  for (let k = 0; k < outputs.length; k++) {
    const center = scale * (outputs[k] + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let j = 0; j < hi - lo; j++) {
      const w = Math.max(0, 1 - Math.abs((j + lo - center + 0.5) * invScale));
      weights[k * taps + j] = w;
      total += w;
    }
    for (let j = 0; j < hi - lo; j++) weights[k * taps + j] /= total || 1;
    start[k] = lo;
    count[k] = hi - lo;
  }
  return { start, count, weights, taps };
}

/**
 * Options of {@link transformFrames}.
 *
 * @example
 * ```ts
 * const options: FrameTransform = { size: [256, 256], flip: false };
 * ```
 */
export interface FrameTransform {
  /** Crop size `[height, width]`. */
  size: readonly [number, number];
  /** Mirror left-right (before the crop, as the original's transform order). */
  flip: boolean;
}

/**
 * Flips (optionally), resizes to cover the crop ({@link resizedSize}), centre-crops and maps
 * bytes to [-1, 1] (`x / 127.5 - 1`) every frame, writing `[frames, 3, H, W]` into `out` at
 * `offset`. Only the pixels inside the crop are resampled. Alpha is dropped.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(8 * 6 * 4), width: 8, height: 6 };
 * const out = new Float32Array(2 * 3 * 4 * 4);
 * transformFrames([f, f], out, 0, { size: [4, 4], flip: true });
 * ```
 */
export function transformFrames(
  frames: readonly Frame[],
  out: Float32Array,
  offset: number,
  transform: FrameTransform,
): void {
  const [th, tw] = transform.size;
  const { width: sw, height: sh } = frames[0];
  const resized = resizedSize(sw, sh, transform.size);
  const top = centerCropOffset(resized.height, th), left = centerCropOffset(resized.width, tw);
  // Output column x is resized column left + x of the flipped image.
  const cols = Array.from(
    { length: tw },
    (_, x) => transform.flip ? resized.width - 1 - left - x : left + x,
  );
  const rows = Array.from({ length: th }, (_, y) => top + y);
  const wx = resampleWeights(sw, resized.width, cols);
  const wy = resampleWeights(sh, resized.height, rows);
  const plane = th * tw;
  const tmp = new Float64Array(sh * tw * 3); // [source row, crop column, rgb]
  if (offset + frames.length * 3 * plane > out.length) {
    throw new RangeError(`transformFrames: output of ${out.length} values is too small`);
  }
  for (let f = 0; f < frames.length; f++) {
    const { data, width, height } = frames[f];
    if (width !== sw || height !== sh) {
      throw new RangeError(
        `transformFrames: frame ${f} is ${width}x${height}, frame 0 ${sw}x${sh}`,
      );
    }
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < tw; x++) {
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < wx.count[x]; j++) {
          const w = wx.weights[x * wx.taps + j], p = (y * sw + wx.start[x] + j) * 4;
          r += w * data[p], g += w * data[p + 1], b += w * data[p + 2];
        }
        const t = (y * tw + x) * 3;
        tmp[t] = r, tmp[t + 1] = g, tmp[t + 2] = b;
      }
    }
    const base = offset + f * 3 * plane;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        let r = 0, g = 0, b = 0;
        for (let j = 0; j < wy.count[y]; j++) {
          const w = wy.weights[y * wy.taps + j], t = ((wy.start[y] + j) * tw + x) * 3;
          r += w * tmp[t], g += w * tmp[t + 1], b += w * tmp[t + 2];
        }
        const o = base + y * tw + x;
        out[o] = r / 127.5 - 1;
        out[o + plane] = g / 127.5 - 1;
        out[o + 2 * plane] = b / 127.5 - 1;
      }
    }
  }
}
