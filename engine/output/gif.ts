/**
 * Animated GIF encoder on top of `gifenc` (LZW + NETSCAPE2.0 looping) with ONE global palette:
 * 256 colours quantized from a sample drawn evenly from all frames, so a colour maps to the same
 * palette entry in every frame and nothing flickers. No frame carries a local colour table.
 *
 * The palette comes from gifenc's pairwise-nearest-neighbour quantizer over 5-5-5 colour bins
 * (4-4-4 when the sample holds more than 4096 distinct bins, to bound its O(bins^2) cost); each
 * pixel is then mapped to the palette entry nearest its bin centre, so a pixel that does not
 * change between frames keeps exactly the same output colour.
 *
 * GIFs are opaque here: alpha is ignored (the pipeline's frames are opaque).
 * @module
 */

// @ts-types="./gifenc.d.ts"
import gifenc from "npm:gifenc@^1.0.3";
import { checkFps, checkFrames, checkLoop, type Frame } from "./frame.ts";

/**
 * Options of {@link encodeGif}.
 *
 * @example
 * ```ts
 * import { encodeGif, type GifOptions } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const options: GifOptions = { fps: 8, loop: 0 };
 * const gif = encodeGif([f, f], options);
 * ```
 */
export interface GifOptions {
  /** Frames per second (finite, > 0). See {@link gifDelaysCs} for how it becomes delays. */
  fps: number;
  /**
   * How many times the animation plays; 0 = forever (default). 1 writes no NETSCAPE block,
   * n > 1 writes NETSCAPE loop count n - 1 (the count of repeats after the first play).
   */
  loop?: number;
  /**
   * Ordered 4x4 Bayer dithering before palette mapping (default false). The pattern is fixed
   * to pixel positions, so still areas stay still from frame to frame (unlike error diffusion).
   */
  dither?: boolean;
}

/** Colours in the global palette (GIF's maximum). */
const PALETTE_SIZE = 256;
/** Pixels sampled (evenly over all frames) to build the palette. */
const PALETTE_SAMPLE_PIXELS = 1 << 18;
/**
 * gifenc's palette-mapper key and fine quantizer bins. Despite the name, gifenc 1.0.3 builds
 * this key from the top 5 bits of each of R, G and B (`(g << 2) & 0x3e0`), i.e. 5-5-5 bins.
 */
const FORMAT = "rgb565";
/**
 * gifenc's quantizer (pairwise nearest neighbour) costs O(bins^2): with more distinct 5-5-5
 * colours than this in the sample it bins at 4-4-4 bits instead (at most 4096 bins, ~0.2 s).
 */
const MAX_FINE_BINS = 4096;
/** Viewers treat delays below 2 cs as 10 cs, so 2 cs (50 fps) is the fastest rate written. */
const MIN_DELAY_CS = 2;
/** Peak-to-peak size, in 8-bit levels, of the ordered-dither offsets. */
const DITHER_AMPLITUDE = 16;
const BAYER_4X4 = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5];

/**
 * Per-frame GIF delays in centiseconds for `count` frames at `fps`. Frame i ends at
 * `round((i + 1) * 100 / fps)` cs, so when 100 / fps is not an integer the delays alternate
 * between its floor and ceiling (8 fps: 13, 12, 13, 12, ...) and the whole animation keeps
 * the exact length, never drifting by more than half a centisecond. Rates above 50 fps are
 * written as 2 cs per frame (50 fps), the shortest delay viewers honour.
 *
 * @example
 * ```ts
 * gifDelaysCs(4, 8); // [13, 12, 13, 12]
 * gifDelaysCs(3, 10); // [10, 10, 10]
 * ```
 */
export function gifDelaysCs(count: number, fps: number): number[] {
  checkFps(fps, "gifDelaysCs");
  const step = 100 / fps;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const d = Math.round((i + 1) * step) - Math.round(i * step);
    out.push(Math.min(Math.max(d, MIN_DELAY_CS), 0xffff));
  }
  return out;
}

/**
 * A copy of the frame (own buffer at offset 0: gifenc reads `.buffer` whole) with every pixel
 * moved to the centre of its 5-5-5 bin (see FORMAT). gifenc's applyPalette caches one palette index per bin,
 * found for the first pixel it meets there; centring makes that index the same for every pixel
 * in every frame, so a still pixel keeps its palette entry from frame to frame.
 */
function binCentred(data: Uint8ClampedArray | Uint8Array): Uint8Array {
  const out = new Uint8Array(data);
  for (let p = 0; p < out.length; p += 4) {
    out[p] = (out[p] & 0xf8) | 4;
    out[p + 1] = (out[p + 1] & 0xf8) | 4;
    out[p + 2] = (out[p + 2] & 0xf8) | 4;
  }
  return out;
}

/** Up to PALETTE_SAMPLE_PIXELS pixels spread evenly over every frame, as RGBA. */
function samplePixels(frames: readonly Frame[]): Uint8Array {
  const pixels = frames[0].width * frames[0].height;
  const perFrame = Math.min(pixels, Math.ceil(PALETTE_SAMPLE_PIXELS / frames.length));
  const step = pixels / perFrame;
  const out = new Uint8Array(perFrame * frames.length * 4);
  let at = 0;
  for (const { data } of frames) {
    for (let j = 0; j < perFrame; j++) {
      const p = Math.floor((j + 0.5) * step) * 4;
      out[at++] = data[p];
      out[at++] = data[p + 1];
      out[at++] = data[p + 2];
      out[at++] = 255;
    }
  }
  return out;
}

/** The quantizer binning for a sample: 5-5-5 when it has few distinct colours, else 4-4-4. */
function quantizeFormat(sample: Uint8Array): "rgb565" | "rgb444" {
  const seen = new Uint8Array(1 << 15);
  let distinct = 0;
  for (let p = 0; p < sample.length; p += 4) {
    const key = ((sample[p] >> 3) << 10) | ((sample[p + 1] >> 3) << 5) | (sample[p + 2] >> 3);
    if (!seen[key]) {
      seen[key] = 1;
      if (++distinct > MAX_FINE_BINS) return "rgb444";
    }
  }
  return "rgb565";
}

/** Adds the fixed Bayer offsets to a copy of the frame (clamped to 0..255). */
function orderedDither(frame: Frame): Uint8ClampedArray {
  const { width, height } = frame;
  const out = new Uint8ClampedArray(frame.data);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = ((BAYER_4X4[(y & 3) * 4 + (x & 3)] + 0.5) / 16 - 0.5) * DITHER_AMPLITUDE;
      const p = (y * width + x) * 4;
      out[p] += t;
      out[p + 1] += t;
      out[p + 2] += t;
    }
  }
  return out;
}

/**
 * Encodes frames as an animated GIF89a with one global 256-colour palette (see module doc),
 * per-frame delays from {@link gifDelaysCs} and the loop count in a NETSCAPE2.0 block.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(64 * 64 * 4).fill(128), width: 64, height: 64 };
 * const gif = encodeGif([f, f, f], { fps: 8 });
 * await Deno.writeFile("clip.gif", gif);
 * ```
 */
export function encodeGif(frames: readonly Frame[], options: GifOptions): Uint8Array {
  const { fps, loop = 0, dither = false } = options ?? {};
  checkFrames(frames, "encodeGif");
  checkFps(fps, "encodeGif");
  checkLoop(loop, "encodeGif");
  const { width, height } = frames[0];
  const sample = samplePixels(frames);
  const palette = gifenc.quantize(sample, PALETTE_SIZE, { format: quantizeFormat(sample) });
  const delays = gifDelaysCs(frames.length, fps);
  // gifenc: repeat -1 = no NETSCAPE block, 0 = forever, n = n repeats after the first play.
  const repeat = loop === 0 ? 0 : loop - 1 === 0 ? -1 : loop - 1;
  const gif = gifenc.GIFEncoder();
  for (let i = 0; i < frames.length; i++) {
    const rgba = binCentred(dither ? orderedDither(frames[i]) : frames[i].data);
    const index = gifenc.applyPalette(rgba, palette, FORMAT);
    gif.writeFrame(index, width, height, {
      // Only the first frame gets the palette: gifenc makes it the global colour table.
      palette: i === 0 ? palette : undefined,
      delay: delays[i] * 10, // gifenc takes ms and writes round(ms / 10) cs
      repeat,
    });
  }
  gif.finish();
  return gif.bytes();
}
