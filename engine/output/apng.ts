/**
 * Animated PNG (APNG) encoder: lossless RGBA 8-bit frames, every frame a full-size image
 * (dispose APNG_DISPOSE_OP_NONE, blend APNG_BLEND_OP_SOURCE), frame 0 in IDAT so viewers without
 * APNG support show the first frame.
 * @module
 */

import { checkFps, checkFrames, checkLoop, type Frame } from "./frame.ts";
import { compressFrame, concatBytes, ihdrData, PNG_SIGNATURE, pngChunk } from "./png.ts";

/**
 * Options of {@link encodeApng}.
 *
 * @example
 * ```ts
 * import { type ApngOptions, encodeApng } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const options: ApngOptions = { fps: 8, loop: 0 };
 * const png = encodeApng([f, f], options);
 * ```
 */
export interface ApngOptions {
  /** Frames per second (finite, > 0); every frame lasts `1 / fps` seconds. */
  fps: number;
  /** How many times the animation plays (APNG `num_plays`); 0 = forever (default). */
  loop?: number;
}

/** APNG stores delays as a 16-bit numerator over a 16-bit denominator. */
const MAX_U16 = 65535;
const DISPOSE_OP_NONE = 0;
const BLEND_OP_SOURCE = 0;

/**
 * The frame delay `1 / fps` seconds as an APNG `delay_num / delay_den` pair of 16-bit integers:
 * the closest continued-fraction (semi)convergent of `fps` whose terms fit 16 bits, inverted. Exact for
 * integer rates up to 65535 (`1/fps`) and for rates such as 7.5 (`2/15`) or 2997/125 = 23.976
 * (`125/2997`); otherwise the closest convergent. Rates below 1/65535 clamp to 65535 s.
 *
 * @example
 * ```ts
 * apngDelay(8); // { num: 1, den: 8 }
 * apngDelay(7.5); // { num: 2, den: 15 }
 * ```
 */
export function apngDelay(fps: number): { num: number; den: number } {
  checkFps(fps, "apngDelay");
  // Convergents h/k of fps; the delay is k/h.
  let h1 = 1, h2 = 0, k1 = 0, k2 = 1;
  let best: { h: number; k: number } | null = null;
  let x = fps;
  for (let iter = 0; iter < 64; iter++) {
    const a = Math.floor(x);
    const h = a * h1 + h2, k = a * k1 + k2;
    if (h > MAX_U16 || k > MAX_U16) {
      // Largest semiconvergent that still fits; keep it when it is closer than `best`.
      const m = Math.min(
        h1 ? Math.floor((MAX_U16 - h2) / h1) : Infinity,
        k1 ? Math.floor((MAX_U16 - k2) / k1) : Infinity,
      );
      const hs = m * h1 + h2, ks = m * k1 + k2;
      if (best && m >= 1 && Math.abs(fps - hs / ks) < Math.abs(fps - best.h / best.k)) {
        best = { h: hs, k: ks };
      }
      break;
    }
    best = { h, k };
    if (Math.abs(fps - h / k) <= 1e-9 * fps) break;
    const frac = x - a;
    if (frac < 1e-12) break;
    x = 1 / frac;
    h2 = h1, h1 = h, k2 = k1, k1 = k;
  }
  if (best === null) return { num: 1, den: MAX_U16 }; // fps > 65535: shortest nonzero delay
  if (best.h === 0) return { num: MAX_U16, den: 1 }; // fps < 1/65535: longest delay
  return { num: best.k, den: best.h };
}

function acTL(numFrames: number, numPlays: number): Uint8Array {
  const data = new Uint8Array(8);
  const view = new DataView(data.buffer);
  view.setUint32(0, numFrames);
  view.setUint32(4, numPlays);
  return pngChunk("acTL", data);
}

function fcTL(
  seq: number,
  size: { width: number; height: number },
  delay: { num: number; den: number },
): Uint8Array {
  const data = new Uint8Array(26);
  const view = new DataView(data.buffer);
  view.setUint32(0, seq);
  view.setUint32(4, size.width);
  view.setUint32(8, size.height);
  view.setUint32(12, 0); // x_offset
  view.setUint32(16, 0); // y_offset
  view.setUint16(20, delay.num);
  view.setUint16(22, delay.den);
  data[24] = DISPOSE_OP_NONE;
  data[25] = BLEND_OP_SOURCE;
  return pngChunk("fcTL", data);
}

function fdAT(seq: number, zdata: Uint8Array): Uint8Array {
  const data = new Uint8Array(4 + zdata.length);
  new DataView(data.buffer).setUint32(0, seq);
  data.set(zdata, 4);
  return pngChunk("fdAT", data);
}

/**
 * Encodes frames as an animated PNG: lossless, RGBA 8-bit, each frame shown `1 / fps` s (see
 * {@link apngDelay}), played `loop` times (0 = forever). Chunks: IHDR, acTL, then per frame an
 * fcTL followed by IDAT (frame 0) or fdAT (later frames); fcTL and fdAT share one sequence
 * counter starting at 0.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const bytes = encodeApng([f, f], { fps: 8 });
 * ```
 */
export function encodeApng(frames: readonly Frame[], options: ApngOptions): Uint8Array {
  const { fps, loop = 0 } = options ?? {};
  checkFrames(frames, "encodeApng");
  checkFps(fps, "encodeApng");
  checkLoop(loop, "encodeApng");
  const { width, height } = frames[0];
  const delay = apngDelay(fps);
  const parts: Uint8Array[] = [
    PNG_SIGNATURE,
    pngChunk("IHDR", ihdrData(width, height)),
    acTL(frames.length, loop),
  ];
  let seq = 0;
  for (let i = 0; i < frames.length; i++) {
    parts.push(fcTL(seq++, { width, height }, delay));
    const z = compressFrame(frames[i]);
    parts.push(i === 0 ? pngChunk("IDAT", z) : fdAT(seq++, z));
  }
  parts.push(pngChunk("IEND", new Uint8Array(0)));
  return concatBytes(parts);
}
