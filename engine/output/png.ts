/**
 * PNG still-image encoder (RGBA, 8 bits per channel, non-interlaced) and the pieces the APNG
 * encoder shares with it: CRC-32, chunk framing, per-row filtering and zlib compression.
 *
 * Filtering follows the PNG specification's recommended heuristic (section 12.8): each row is
 * filtered with all five filter types and the one whose output bytes, read as signed values, have
 * the smallest sum of absolute values is kept. Compression is zlib (fflate `zlibSync`).
 * @module
 */

import { zlibSync } from "npm:fflate@^0.8.3";
import { checkFrame, type Frame } from "./frame.ts";
import { crc32 } from "../../weights/crc32.ts";

/** The 8-byte signature every PNG (and APNG) file starts with. */
export const PNG_SIGNATURE: Uint8Array = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

/** Bytes per pixel of the RGBA 8-bit format we write. */
const BPP = 4;
/** zlib level used for image data: fflate's default, a good size/speed balance. */
const ZLIB_LEVEL = 6;

/**
 * Frames one PNG chunk: 4-byte big-endian length, 4-letter type, data, CRC-32 of type + data.
 *
 * @example
 * ```ts
 * const iend = pngChunk("IEND", new Uint8Array(0)); // 12 bytes
 * ```
 */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  if (!/^[A-Za-z]{4}$/.test(type)) {
    throw new RangeError(`pngChunk: expected a 4-letter chunk type, got "${type}"`);
  }
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * The IHDR payload for an RGBA 8-bit, non-interlaced image of the given size.
 *
 * @example
 * ```ts
 * const chunk = pngChunk("IHDR", ihdrData(33, 17));
 * ```
 */
export function ihdrData(width: number, height: number): Uint8Array {
  const data = new Uint8Array(13);
  const view = new DataView(data.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  data[8] = 8; // bit depth
  data[9] = 6; // colour type: RGBA
  data[10] = 0; // compression: deflate
  data[11] = 0; // filter method: adaptive, five types
  data[12] = 0; // interlace: none
  return data;
}

/** Sum of the filtered bytes read as signed values, |b| for b < 128 else 256 - b. */
function signedSum(row: Uint8Array, limit: number): number {
  let s = 0;
  for (let i = 0; i < row.length; i++) {
    const b = row[i];
    s += b < 128 ? b : 256 - b;
    if (s >= limit) return s; // cannot beat the best so far
  }
  return s;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * Filters every row of `frame` (type byte + filtered bytes per row, the layout zlib compresses),
 * choosing per row the filter with the minimum sum of absolute (signed) differences; ties go
 * to the lower filter type.
 *
 * @example
 * ```ts
 * const raw = filterRows({ data: new Uint8ClampedArray(8), width: 2, height: 1 });
 * raw.length; // 1 + 2 * 4
 * ```
 */
export function filterRows(frame: Frame): Uint8Array {
  const { width, height } = frame;
  const px = frame.data;
  const stride = width * BPP;
  const out = new Uint8Array(height * (stride + 1));
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(stride));
  const zeroRow = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const cur = px.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? px.subarray((y - 1) * stride, y * stride) : zeroRow;
    const [none, sub, upF, avg, pth] = candidates;
    for (let i = 0; i < stride; i++) {
      const x = cur[i];
      const a = i >= BPP ? cur[i - BPP] : 0;
      const b = up[i];
      const c = i >= BPP ? up[i - BPP] : 0;
      none[i] = x;
      sub[i] = x - a;
      upF[i] = x - b;
      avg[i] = x - ((a + b) >> 1);
      pth[i] = x - paeth(a, b, c);
    }
    let best = 0, bestSum = Infinity;
    for (let f = 0; f < 5; f++) {
      const s = signedSum(candidates[f], bestSum);
      if (s < bestSum) {
        bestSum = s;
        best = f;
      }
    }
    const at = y * (stride + 1);
    out[at] = best;
    out.set(candidates[best], at + 1);
  }
  return out;
}

/**
 * Filters and zlib-compresses one frame into the byte stream that IDAT (or fdAT) chunks carry.
 *
 * @example
 * ```ts
 * const z = compressFrame({ data: new Uint8ClampedArray(4), width: 1, height: 1 });
 * ```
 */
export function compressFrame(frame: Frame): Uint8Array {
  return zlibSync(filterRows(frame), { level: ZLIB_LEVEL });
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Encodes one RGBA frame as a PNG file (8-bit RGBA, lossless, non-interlaced).
 *
 * @example
 * ```ts
 * const png = encodePng({ data: new Uint8ClampedArray(33 * 17 * 4), width: 33, height: 17 });
 * await Deno.writeFile("frame.png", png);
 * ```
 */
export function encodePng(frame: Frame): Uint8Array {
  checkFrame(frame, "encodePng: frame");
  return concatBytes([
    PNG_SIGNATURE,
    pngChunk("IHDR", ihdrData(frame.width, frame.height)),
    pngChunk("IDAT", compressFrame(frame)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}
