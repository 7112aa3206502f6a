/**
 * GIF decoder (GIF87a / GIF89a) for training data: LZW, global and local colour tables,
 * transparency, the three disposal methods and interlaced images. Every frame is the whole
 * canvas after that image is drawn, as RGBA; the canvas starts transparent black and disposal
 * "restore to background" clears to transparent black, as browsers do.
 *
 * Lenient where viewers are (a missing trailer, an index outside its colour table drawn black);
 * strict where the picture would be wrong (a truncated header or LZW stream throws).
 * @module
 */

import type { Frame } from "../output/frame.ts";

/**
 * A decoded animation: its canvas size and every frame as full-canvas RGBA.
 *
 * @example
 * ```ts
 * const clip: DecodedAnimation = decodeGif(await Deno.readFile("clip.gif"));
 * clip.frames.length;
 * ```
 */
export interface DecodedAnimation {
  /** Canvas width in pixels. */
  width: number;
  /** Canvas height in pixels. */
  height: number;
  /** Every frame composited on the canvas (or the first `maxFrames` of them). */
  frames: Frame[];
}

/**
 * Size and frame count of an animation, read without decoding its pixels.
 *
 * @example
 * ```ts
 * const { width, height, frameCount }: AnimationInfo = probeGif(bytes);
 * ```
 */
export interface AnimationInfo {
  /** Canvas width in pixels. */
  width: number;
  /** Canvas height in pixels. */
  height: number;
  /** How many frames the file holds. */
  frameCount: number;
}

/** The largest LZW code (12-bit codes). */
const MAX_CODES = 4096;
/** Interlaced row passes: [first row, step]. */
const INTERLACE_PASSES = [[0, 8], [4, 8], [2, 4], [1, 2]] as const;
const BLOCK_EXTENSION = 0x21;
const BLOCK_IMAGE = 0x2c;
const BLOCK_TRAILER = 0x3b;
const LABEL_GRAPHIC_CONTROL = 0xf9;

function fail(msg: string): never {
  throw new Error(`decodeGif: ${msg}`);
}

/**
 * Decodes GIF LZW data (codes packed LSB first) into `count` colour indices. A stream that ends
 * early throws; codes after the last pixel are ignored.
 */
function lzwDecode(minCodeSize: number, data: Uint8Array, count: number): Uint8Array {
  if (minCodeSize < 1 || minCodeSize > 11) fail(`LZW minimum code size ${minCodeSize}`);
  const clear = 1 << minCodeSize, eoi = clear + 1;
  const prefix = new Uint16Array(MAX_CODES), suffix = new Uint8Array(MAX_CODES);
  const length = new Uint16Array(MAX_CODES), first = new Uint8Array(MAX_CODES);
  for (let i = 0; i < clear; i++) {
    suffix[i] = first[i] = i;
    length[i] = 1;
  }
  const out = new Uint8Array(count);
  let op = 0, bits = 0, nbits = 0, pos = 0;
  let codeSize = minCodeSize + 1, next = eoi + 1, prev = -1;
  while (op < count) {
    while (nbits < codeSize) {
      if (pos >= data.length) fail(`LZW data ended after ${op} of ${count} pixels`);
      bits |= data[pos++] << nbits;
      nbits += 8;
    }
    const code = bits & ((1 << codeSize) - 1);
    bits >>>= codeSize;
    nbits -= codeSize;
    if (code === clear) {
      codeSize = minCodeSize + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code === eoi) break;
    if (code > next || (prev === -1 && code >= clear)) fail(`LZW code ${code} is not defined`);
    // A new entry (prev + first byte of code) unless the table is full (deferred clear).
    if (prev !== -1 && next < MAX_CODES) {
      prefix[next] = prev;
      suffix[next] = first[code === next ? prev : code];
      first[next] = first[prev];
      length[next] = length[prev] + 1;
      next++;
      if (next === 1 << codeSize && codeSize < 12) codeSize++;
    } else if (code === next) fail(`LZW code ${code} is not defined`);
    // Write the string of `code` backwards from its end.
    const len = length[code];
    let c = code;
    for (let k = len - 1; k >= 0; k--) {
      if (op + k < count) out[op + k] = suffix[c];
      c = prefix[c];
    }
    op += len;
    prev = code;
  }
  if (op < count) fail(`LZW stream ended after ${op} of ${count} pixels`);
  return out;
}

/** A byte reader over the file that throws on truncation. */
class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}
  get done(): boolean {
    return this.pos >= this.bytes.length;
  }
  need(n: number): void {
    if (this.pos + n > this.bytes.length) fail(`file truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.bytes[this.pos++];
  }
  u16(): number {
    this.need(2);
    this.pos += 2;
    return this.bytes[this.pos - 2] | (this.bytes[this.pos - 1] << 8);
  }
  take(n: number): Uint8Array {
    this.need(n);
    this.pos += n;
    return this.bytes.subarray(this.pos - n, this.pos);
  }
  /** Concatenated data sub-blocks up to the 0 terminator (`keep` false: skipped). */
  subBlocks(keep: boolean): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let n = this.u8(); n !== 0; n = this.u8()) {
      const part = this.take(n);
      if (keep) parts.push(part), total += n;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) out.set(p, at), at += p.length;
    return out;
  }
}

interface Screen {
  width: number;
  height: number;
  global: Uint8Array | null;
}

function readScreen(r: Reader): Screen {
  r.need(13);
  const sig = String.fromCharCode(...r.take(6));
  if (sig !== "GIF89a" && sig !== "GIF87a") fail(`not a GIF (signature "${sig}")`);
  const width = r.u16(), height = r.u16(), packed = r.u8();
  r.u8(); // background colour index: the canvas starts transparent, as in browsers
  r.u8(); // pixel aspect ratio
  if (width === 0 || height === 0) fail(`canvas is ${width}x${height}`);
  const global = packed & 0x80 ? r.take(3 * (2 << (packed & 7))) : null;
  return { width, height, global };
}

/**
 * Reads a GIF's canvas size and counts its images without decoding any pixels.
 *
 * @example
 * ```ts
 * const { width, height, frameCount } = probeGif(await Deno.readFile("clip.gif"));
 * ```
 */
export function probeGif(bytes: Uint8Array): AnimationInfo {
  const r = new Reader(bytes);
  const { width, height } = readScreen(r);
  let frameCount = 0;
  while (!r.done) {
    const block = r.u8();
    if (block === BLOCK_TRAILER) break;
    if (block === BLOCK_EXTENSION) {
      r.u8();
      r.subBlocks(false);
    } else if (block === BLOCK_IMAGE) {
      r.take(8);
      const flags = r.u8();
      if (flags & 0x80) r.take(3 * (2 << (flags & 7)));
      r.u8();
      r.subBlocks(false);
      frameCount++;
    } else fail(`unknown block 0x${block.toString(16)} at byte ${r.pos - 1}`);
  }
  if (frameCount === 0) fail("no image in the file");
  return { width, height, frameCount };
}

/**
 * Decodes a GIF into full-canvas RGBA frames (see the module doc). `maxFrames` stops after that
 * many frames (later frames depend on earlier ones, so frame k costs decoding 0..k).
 *
 * @example
 * ```ts
 * const { width, height, frames } = decodeGif(await Deno.readFile("clip.gif"));
 * const firstTwo = decodeGif(await Deno.readFile("clip.gif"), { maxFrames: 2 }).frames;
 * ```
 */
export function decodeGif(
  bytes: Uint8Array,
  options: { maxFrames?: number } = {},
): DecodedAnimation {
  const maxFrames = options.maxFrames ?? Infinity;
  const r = new Reader(bytes);
  const { width, height, global } = readScreen(r);
  const canvas = new Uint8ClampedArray(width * height * 4);
  const frames: Frame[] = [];
  let disposal = 0, transparent = -1;
  while (!r.done && frames.length < maxFrames) {
    const block = r.u8();
    if (block === BLOCK_TRAILER) break;
    if (block === BLOCK_EXTENSION) {
      const label = r.u8();
      const data = r.subBlocks(label === LABEL_GRAPHIC_CONTROL);
      if (label === LABEL_GRAPHIC_CONTROL && data.length >= 4) {
        disposal = (data[0] >> 2) & 7;
        transparent = data[0] & 1 ? data[3] : -1;
      }
      continue;
    }
    if (block !== BLOCK_IMAGE) fail(`unknown block 0x${block.toString(16)} at byte ${r.pos - 1}`);
    const left = r.u16(), top = r.u16(), w = r.u16(), h = r.u16(), flags = r.u8();
    const palette = flags & 0x80 ? r.take(3 * (2 << (flags & 7))) : global;
    if (!palette) fail(`image ${frames.length} has no colour table`);
    const minCodeSize = r.u8();
    const indices = lzwDecode(minCodeSize, r.subBlocks(true), w * h);
    const rows: number[] = [];
    if (flags & 0x40) {
      for (const [start, step] of INTERLACE_PASSES) {
        for (let y = start; y < h; y += step) rows.push(y);
      }
    } else for (let y = 0; y < h; y++) rows.push(y);
    const saved = disposal === 3 ? canvas.slice() : null;
    const colours = palette.length / 3;
    for (let row = 0; row < h; row++) {
      const y = top + rows[row];
      if (y >= height) continue;
      for (let x = 0; x < w && left + x < width; x++) {
        const idx = indices[row * w + x];
        if (idx === transparent) continue;
        const o = (y * width + left + x) * 4;
        if (idx < colours) {
          canvas[o] = palette[idx * 3];
          canvas[o + 1] = palette[idx * 3 + 1];
          canvas[o + 2] = palette[idx * 3 + 2];
        } else canvas[o] = canvas[o + 1] = canvas[o + 2] = 0;
        canvas[o + 3] = 255;
      }
    }
    frames.push({ data: canvas.slice(), width, height });
    if (disposal === 2) {
      const x1 = Math.min(left + w, width);
      for (let y = top; y < Math.min(top + h, height); y++) {
        if (left < x1) canvas.fill(0, (y * width + left) * 4, (y * width + x1) * 4);
      }
    } else if (saved) canvas.set(saved);
    disposal = 0;
    transparent = -1;
  }
  if (frames.length === 0) fail("no image in the file");
  return { width, height, frames };
}
