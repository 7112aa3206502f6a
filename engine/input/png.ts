/**
 * PNG and APNG decoder for training data: every colour type (grey, RGB, palette, grey + alpha,
 * RGBA), bit depths 1, 2, 4, 8 and 16 (16-bit samples keep their high byte), Adam7 interlacing,
 * tRNS transparency, CRCs checked, and APNG animation (acTL, fcTL / fdAT frames placed at their
 * offsets with blend SOURCE / OVER and dispose NONE / BACKGROUND / PREVIOUS). A PNG without acTL
 * is a one-frame animation. Output frames are full-canvas RGBA.
 * @module
 */

import { unzlibSync } from "fflate";
import { crc32 } from "../../weights/crc32.ts";
import type { Frame } from "../output/frame.ts";
import type { AnimationInfo, DecodedAnimation } from "./gif.ts";

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** Channels per colour type. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Bit depths each colour type allows. */
const DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};
/** Adam7 passes: [x start, y start, x step, y step]. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;
const DISPOSE_BACKGROUND = 1;
const DISPOSE_PREVIOUS = 2;
const BLEND_OVER = 1;

function fail(msg: string): never {
  throw new Error(`decodePng: ${msg}`);
}

interface Chunk {
  type: string;
  data: Uint8Array;
}

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlace: number;
}

/** What decoding one image needs besides its data. */
interface ImageContext {
  header: Header;
  palette: Uint8Array | null;
  trns: Uint8Array | null;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function readChunks(bytes: Uint8Array): Chunk[] {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) fail("not a PNG (signature)");
  const v = view(bytes);
  const chunks: Chunk[] = [];
  for (let p = 8; p < bytes.length;) {
    if (p + 12 > bytes.length) fail(`chunk header truncated at byte ${p}`);
    const length = v.getUint32(p);
    if (p + 12 + length > bytes.length) fail(`chunk at byte ${p} runs past the end of the file`);
    const type = String.fromCharCode(...bytes.subarray(p + 4, p + 8));
    if (crc32(bytes.subarray(p + 4, p + 8 + length)) !== v.getUint32(p + 8 + length)) {
      fail(`CRC mismatch in the ${type} chunk at byte ${p}`);
    }
    chunks.push({ type, data: bytes.subarray(p + 8, p + 8 + length) });
    p += 12 + length;
    if (type === "IEND") break;
  }
  if (chunks[0]?.type !== "IHDR" || chunks[0].data.length !== 13) fail("first chunk is not IHDR");
  return chunks;
}

function readHeader(ihdr: Uint8Array): Header {
  const v = view(ihdr);
  const [depth, colorType, compression, filter, interlace] = ihdr.subarray(8, 13);
  const width = v.getUint32(0), height = v.getUint32(4);
  if (!width || !height) fail(`image is ${width}x${height}`);
  if (!DEPTHS[colorType]?.includes(depth)) {
    fail(`unsupported colour type ${colorType} with bit depth ${depth}`);
  }
  if (compression !== 0 || filter !== 0 || interlace > 1) {
    fail(`unknown compression ${compression}, filter ${filter} or interlace ${interlace} method`);
  }
  return { width, height, depth, colorType, interlace };
}

/** Reverses the five row filters in place; `raw` holds (filter byte + rowBytes) per row. */
function unfilter(raw: Uint8Array, rows: number, rowBytes: number, bpp: number): Uint8Array {
  const out = new Uint8Array(rows * rowBytes);
  for (let y = 0; y < rows; y++) {
    const f = raw[y * (rowBytes + 1)];
    const src = y * (rowBytes + 1) + 1, o = y * rowBytes, up = o - rowBytes;
    for (let i = 0; i < rowBytes; i++) {
      const a = i >= bpp ? out[o + i - bpp] : 0;
      const b = y > 0 ? out[up + i] : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const c = i >= bpp && y > 0 ? out[up + i - bpp] : 0;
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (f !== 0) fail(`row ${y}: unknown filter type ${f}`);
      out[o + i] = (raw[src + i] + pred) & 0xff;
    }
  }
  return out;
}

/** Writes the unfiltered pixels of one (sub)image into `out` (RGBA) at the given positions. */
function expand(
  px: Uint8Array,
  size: { w: number; h: number; rowBytes: number },
  place: {
    out: Uint8ClampedArray;
    outWidth: number;
    x0: number;
    y0: number;
    dx: number;
    dy: number;
  },
  ctx: ImageContext,
): void {
  const { depth, colorType } = ctx.header;
  const channels = CHANNELS[colorType];
  const { palette, trns } = ctx;
  const maxSample = (1 << Math.min(depth, 8)) - 1;
  // The sample at (row, sample index), full precision (16-bit read whole).
  const sample = (row: number, s: number): number => {
    if (depth === 16) {
      return (px[row * size.rowBytes + 2 * s] << 8) | px[row * size.rowBytes + 2 * s + 1];
    }
    if (depth === 8) return px[row * size.rowBytes + s];
    const bit = s * depth;
    return (px[row * size.rowBytes + (bit >> 3)] >> (8 - depth - (bit & 7))) & maxSample;
  };
  const to8 = (v: number) =>
    depth === 16 ? v >> 8 : depth === 8 ? v : Math.round(v * 255 / maxSample);
  const key = trns && (colorType === 0 || colorType === 2) ? view(trns) : null;
  for (let y = 0; y < size.h; y++) {
    for (let x = 0; x < size.w; x++) {
      const o = ((place.y0 + y * place.dy) * place.outWidth + place.x0 + x * place.dx) * 4;
      const s = x * channels;
      let r: number, g: number, b: number, a = 255;
      if (colorType === 3) {
        const idx = sample(y, s);
        if (!palette || idx * 3 >= palette.length) fail(`palette index ${idx} out of range`);
        r = palette[idx * 3], g = palette[idx * 3 + 1], b = palette[idx * 3 + 2];
        if (trns && idx < trns.length) a = trns[idx];
      } else if (colorType === 0 || colorType === 4) {
        const v = sample(y, s);
        r = g = b = to8(v);
        if (colorType === 4) a = to8(sample(y, s + 1));
        else if (key && key.byteLength >= 2 && v === key.getUint16(0)) a = 0;
      } else {
        const rv = sample(y, s), gv = sample(y, s + 1), bv = sample(y, s + 2);
        r = to8(rv), g = to8(gv), b = to8(bv);
        if (colorType === 6) a = to8(sample(y, s + 3));
        else if (
          key && key.byteLength >= 6 && rv === key.getUint16(0) && gv === key.getUint16(2) &&
          bv === key.getUint16(4)
        ) a = 0;
      }
      place.out[o] = r, place.out[o + 1] = g, place.out[o + 2] = b, place.out[o + 3] = a;
    }
  }
}

/** Inflates and decodes one image of `width` x `height` (any interlace) into RGBA. */
function decodeImage(zdata: Uint8Array, width: number, height: number, ctx: ImageContext): Frame {
  const bitsPerPixel = CHANNELS[ctx.header.colorType] * ctx.header.depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  let raw: Uint8Array;
  try {
    raw = unzlibSync(zdata);
  } catch (e) {
    fail(`image data does not inflate (${(e as Error).message})`);
  }
  const out = new Uint8ClampedArray(width * height * 4);
  const passes = ctx.header.interlace ? ADAM7 : [[0, 0, 1, 1] as const];
  let at = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil((width - x0) / dx), h = Math.ceil((height - y0) / dy);
    if (w <= 0 || h <= 0) continue;
    const rowBytes = Math.ceil((w * bitsPerPixel) / 8);
    const n = h * (rowBytes + 1);
    if (at + n > raw.length) fail(`image data holds ${raw.length} bytes, expected more`);
    const px = unfilter(raw.subarray(at, at + n), h, rowBytes, bpp);
    expand(px, { w, h, rowBytes }, { out, outWidth: width, x0, y0, dx, dy }, ctx);
    at += n;
  }
  return { data: out, width, height };
}

function joinData(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** One APNG frame control (fcTL) and the image data that follows it. */
interface FrameControl {
  width: number;
  height: number;
  x: number;
  y: number;
  dispose: number;
  blend: number;
  parts: Uint8Array[];
}

interface Parsed {
  header: Header;
  ctx: ImageContext;
  /** acTL frame count, or null for a still PNG. */
  numFrames: number | null;
  /** The animation frames (a still PNG: the one IDAT image). */
  controls: FrameControl[];
}

function parse(bytes: Uint8Array): Parsed {
  const chunks = readChunks(bytes);
  const header = readHeader(chunks[0].data);
  const ctx: ImageContext = {
    header,
    palette: chunks.find((c) => c.type === "PLTE")?.data ?? null,
    trns: chunks.find((c) => c.type === "tRNS")?.data ?? null,
  };
  const actl = chunks.find((c) => c.type === "acTL");
  const numFrames = actl && actl.data.length >= 8 ? view(actl.data).getUint32(0) : null;
  const whole = (): FrameControl => ({
    width: header.width,
    height: header.height,
    x: 0,
    y: 0,
    dispose: 0,
    blend: 0,
    parts: [],
  });
  const still = whole();
  const controls: FrameControl[] = [];
  let current: FrameControl | null = null;
  for (const { type, data } of chunks) {
    if (type === "IDAT") {
      still.parts.push(data);
      if (current && controls.length === 1) current.parts.push(data);
    } else if (numFrames !== null && type === "fcTL") {
      if (data.length !== 26) fail(`fcTL of ${data.length} bytes, expected 26`);
      const v = view(data);
      current = {
        width: v.getUint32(4),
        height: v.getUint32(8),
        x: v.getUint32(12),
        y: v.getUint32(16),
        dispose: data[24],
        blend: data[25],
        parts: [],
      };
      if (
        !current.width || !current.height || current.x + current.width > header.width ||
        current.y + current.height > header.height
      ) {
        fail(
          `APNG frame ${controls.length} lies outside the ${header.width}x${header.height} canvas`,
        );
      }
      controls.push(current);
    } else if (numFrames !== null && type === "fdAT" && current) {
      current.parts.push(data.subarray(4));
    }
  }
  if (still.parts.length === 0) fail("no IDAT chunk");
  if (numFrames === null || controls.length === 0) {
    return { header, ctx, numFrames: null, controls: [still] };
  }
  return { header, ctx, numFrames, controls: controls.filter((c) => c.parts.length > 0) };
}

/**
 * Reads a PNG or APNG's size and frame count (1 for a still PNG) without decoding pixels.
 *
 * @example
 * ```ts
 * const { width, height, frameCount } = probePng(await Deno.readFile("clip.png"));
 * ```
 */
export function probePng(bytes: Uint8Array): AnimationInfo {
  const { header, controls } = parse(bytes);
  return { width: header.width, height: header.height, frameCount: controls.length };
}

/**
 * Decodes a still PNG (for an APNG: its default IDAT image) into RGBA.
 *
 * @example
 * ```ts
 * const { width, height, data } = decodePng(await Deno.readFile("frame_0001.png"));
 * ```
 */
export function decodePng(bytes: Uint8Array): Frame {
  const chunks = readChunks(bytes);
  const header = readHeader(chunks[0].data);
  const ctx: ImageContext = {
    header,
    palette: chunks.find((c) => c.type === "PLTE")?.data ?? null,
    trns: chunks.find((c) => c.type === "tRNS")?.data ?? null,
  };
  const idat = chunks.filter((c) => c.type === "IDAT").map((c) => c.data);
  if (idat.length === 0) fail("no IDAT chunk");
  return decodeImage(joinData(idat), header.width, header.height, ctx);
}

/**
 * Decodes an APNG into full-canvas RGBA frames (a still PNG gives one frame). Frame regions are
 * composited with their blend op (SOURCE replaces, OVER alpha-composites) and disposed with
 * their dispose op (BACKGROUND clears the region to transparent black, PREVIOUS restores it; on
 * the first frame PREVIOUS acts as BACKGROUND). `maxFrames` stops early.
 *
 * @example
 * ```ts
 * const { frames } = decodeApng(await Deno.readFile("clip.png"));
 * ```
 */
export function decodeApng(
  bytes: Uint8Array,
  options: { maxFrames?: number } = {},
): DecodedAnimation {
  const { header, ctx, controls } = parse(bytes);
  const { width, height } = header;
  const canvas = new Uint8ClampedArray(width * height * 4);
  const frames: Frame[] = [];
  const count = Math.min(controls.length, options.maxFrames ?? Infinity);
  for (let k = 0; k < count; k++) {
    const c = controls[k];
    const img = decodeImage(joinData(c.parts), c.width, c.height, ctx).data;
    const dispose = k === 0 && c.dispose === DISPOSE_PREVIOUS ? DISPOSE_BACKGROUND : c.dispose;
    const saved = dispose === DISPOSE_PREVIOUS ? canvas.slice() : null;
    for (let y = 0; y < c.height; y++) {
      for (let x = 0; x < c.width; x++) {
        const s = (y * c.width + x) * 4, d = ((c.y + y) * width + c.x + x) * 4;
        const sa = img[s + 3];
        if (c.blend !== BLEND_OVER || sa === 255) {
          canvas[d] = img[s], canvas[d + 1] = img[s + 1];
          canvas[d + 2] = img[s + 2], canvas[d + 3] = sa;
        } else if (sa > 0) {
          // Straight-alpha "over" (APNG spec): out = (src*sa + dst*da*(1-sa)) / outAlpha.
          const da = canvas[d + 3] * (255 - sa) / 255, oa = sa + da;
          for (let ch = 0; ch < 3; ch++) {
            canvas[d + ch] = Math.round((img[s + ch] * sa + canvas[d + ch] * da) / oa);
          }
          canvas[d + 3] = Math.round(oa);
        }
      }
    }
    frames.push({ data: canvas.slice(), width, height });
    if (dispose === DISPOSE_BACKGROUND) {
      for (let y = c.y; y < c.y + c.height; y++) {
        canvas.fill(0, (y * width + c.x) * 4, (y * width + c.x + c.width) * 4);
      }
    } else if (saved) canvas.set(saved);
  }
  return { width, height, frames };
}
