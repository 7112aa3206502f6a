/**
 * Test-only decoders for the files engine/output writes: GIF (full GIF89a reader with its own
 * LZW decoder, local palettes, interlacing, transparency, disposal), PNG and APNG (8-bit, all
 * five filter types, CRCs checked) and zip archives of PNG frames. Written independently of the
 * encoders: they share no code with engine/output. Strict: malformed input throws.
 * @module
 */

import { inflateSync, unzlibSync } from "fflate";

// ---------------------------------------------------------------- shared

/** CRC-32 computed bit by bit (deliberately not the encoder's table-driven version). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    c ^= bytes[i];
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}

function fail(format: string, msg: string): never {
  throw new Error(`decode${format}: ${msg}`);
}

// ---------------------------------------------------------------- GIF

/** A decoded GIF: every frame composited onto the full canvas, as RGBA. */
export interface DecodedGif {
  width: number;
  height: number;
  /** RGBA canvas after each image (transparent black where nothing was drawn yet). */
  frames: Uint8Array[];
  /** Delay of each frame from its Graphic Control Extension (0 when it has none). */
  delaysCs: number[];
  /** NETSCAPE2.0 loop count, or null when the file has no NETSCAPE block. */
  loop: number | null;
  /** Whether the file has a global colour table. */
  globalPalette: boolean;
  /** Number of global colour table entries (0 when absent). */
  globalPaletteSize: number;
  /** How many images carry a local colour table. */
  localPaletteCount: number;
}

/** Decodes GIF LZW data (codes LSB-first) into `count` colour indices. */
function lzwDecode(minCodeSize: number, data: Uint8Array, count: number): Uint8Array {
  if (minCodeSize < 2 || minCodeSize > 8) fail("Gif", `LZW minimum code size ${minCodeSize}`);
  const clear = 1 << minCodeSize, eoi = clear + 1;
  const prefix = new Int16Array(4096), suffix = new Uint8Array(4096);
  const first = new Uint8Array(4096), len = new Uint16Array(4096);
  for (let i = 0; i < clear; i++) {
    suffix[i] = first[i] = i;
    len[i] = 1;
  }
  const out = new Uint8Array(count);
  let op = 0, bitPos = 0, codeSize = minCodeSize + 1, next = eoi + 1, prev = -1;
  const totalBits = data.length * 8;
  while (op < count) {
    if (bitPos + codeSize > totalBits) fail("Gif", `LZW data ended after ${op} of ${count} pixels`);
    let code = 0;
    for (let k = 0; k < codeSize; k++, bitPos++) {
      code |= ((data[bitPos >> 3] >> (bitPos & 7)) & 1) << k;
    }
    if (code === clear) {
      codeSize = minCodeSize + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code === eoi) break;
    if (prev === -1) {
      if (code > clear) fail("Gif", `LZW code ${code} right after a clear code`);
      out[op++] = code;
      prev = code;
      continue;
    }
    if (code > next || (code === next && next >= 4096)) {
      fail("Gif", `LZW code ${code} not yet defined (next ${next})`);
    }
    if (next < 4096) {
      prefix[next] = prev;
      suffix[next] = code < next ? first[code] : first[prev];
      first[next] = first[prev];
      len[next] = len[prev] + 1;
      next++;
      if (next === 1 << codeSize && codeSize < 12) codeSize++;
    }
    const l = len[code];
    let c = code;
    for (let k = l - 1; k >= 0; k--) {
      if (op + k < count) out[op + k] = suffix[c];
      c = prefix[c];
    }
    op += l;
    prev = code;
  }
  if (op < count) fail("Gif", `LZW stream ended (EOI) after ${op} of ${count} pixels`);
  return out;
}

/** Row order of an interlaced GIF image: passes start 0/4/2/1 with steps 8/8/4/2. */
function interlacedRows(height: number): number[] {
  const rows: number[] = [];
  for (const [start, step] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
    for (let y = start; y < height; y += step) rows.push(y);
  }
  return rows;
}

/**
 * Decodes a GIF87a/GIF89a file into full-canvas RGBA frames with their delays and loop count.
 *
 * @example
 * ```ts
 * const { width, frames, delaysCs, loop } = decodeGif(await Deno.readFile("clip.gif"));
 * ```
 */
export function decodeGif(bytes: Uint8Array): DecodedGif {
  let p = 0;
  const need = (n: number) => {
    if (p + n > bytes.length) fail("Gif", `file truncated at byte ${p} (needed ${n} more)`);
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), p += 2, bytes[p - 2] | (bytes[p - 1] << 8));
  const subBlocks = (): Uint8Array => {
    const parts: number[] = [];
    for (let n = u8(); n !== 0; n = u8()) {
      need(n);
      for (let i = 0; i < n; i++) parts.push(bytes[p++]);
    }
    return new Uint8Array(parts);
  };
  const readPalette = (size: number): Uint8Array => {
    need(size * 3);
    p += size * 3;
    return bytes.slice(p - size * 3, p);
  };
  need(13);
  const sig = new TextDecoder().decode(bytes.subarray(0, 6));
  if (sig !== "GIF89a" && sig !== "GIF87a") fail("Gif", `bad signature "${sig}"`);
  p = 6;
  const width = u16(), height = u16(), packed = u8();
  u8(); // background colour index (we start from transparent black, as browsers do)
  u8(); // pixel aspect ratio
  const globalPaletteSize = packed & 0x80 ? 2 << (packed & 7) : 0;
  const global = globalPaletteSize ? readPalette(globalPaletteSize) : null;

  const canvas = new Uint8Array(width * height * 4);
  const frames: Uint8Array[] = [], delaysCs: number[] = [];
  let loop: number | null = null, localPaletteCount = 0;
  let gce: { delay: number; disposal: number; transparent: number } | null = null;
  for (;;) {
    const block = u8();
    if (block === 0x3b) break;
    if (block === 0x21) {
      const label = u8();
      const data = subBlocks();
      if (label === 0xf9) {
        if (data.length !== 4) fail("Gif", `graphic control extension of ${data.length} bytes`);
        gce = {
          delay: data[1] | (data[2] << 8),
          disposal: (data[0] >> 2) & 7,
          transparent: data[0] & 1 ? data[3] : -1,
        };
      } else if (label === 0xff && data.length >= 14) {
        const id = new TextDecoder().decode(data.subarray(0, 11));
        if ((id === "NETSCAPE2.0" || id === "ANIMEXTS1.0") && data[11] === 1) {
          // subBlocks() joined the 11-byte id and the sub-block [1, lo, hi].
          loop = data[12] | (data[13] << 8);
        }
      }
      continue;
    }
    if (block !== 0x2c) fail("Gif", `unknown block 0x${block.toString(16)} at byte ${p - 1}`);
    const left = u16(), top = u16(), w = u16(), h = u16(), flags = u8();
    let palette = global;
    if (flags & 0x80) {
      palette = readPalette(2 << (flags & 7));
      localPaletteCount++;
    }
    if (!palette) fail("Gif", `image ${frames.length} has no colour table`);
    const minCode = u8();
    const indices = lzwDecode(minCode, subBlocks(), w * h);
    const rows = flags & 0x40 ? interlacedRows(h) : null;
    const disposal = gce?.disposal ?? 0, transparent = gce?.transparent ?? -1;
    const saved = disposal === 3 ? canvas.slice() : null;
    for (let r = 0; r < h; r++) {
      const y = top + (rows ? rows[r] : r);
      for (let x = 0; x < w; x++) {
        const idx = indices[r * w + x];
        if (idx === transparent || y >= height || left + x >= width) continue;
        if (idx * 3 >= palette.length) {
          fail(
            "Gif",
            `image ${frames.length}: index ${idx} outside a ${palette.length / 3}-colour table`,
          );
        }
        const o = (y * width + left + x) * 4;
        canvas[o] = palette[idx * 3];
        canvas[o + 1] = palette[idx * 3 + 1];
        canvas[o + 2] = palette[idx * 3 + 2];
        canvas[o + 3] = 255;
      }
    }
    frames.push(canvas.slice());
    delaysCs.push(gce?.delay ?? 0);
    if (disposal === 2) {
      for (let y = top; y < Math.min(top + h, height); y++) {
        canvas.fill(0, (y * width + left) * 4, (y * width + Math.min(left + w, width)) * 4);
      }
    } else if (saved) {
      canvas.set(saved);
    }
    gce = null;
  }
  if (frames.length === 0) fail("Gif", "no image in file");
  return {
    width,
    height,
    frames,
    delaysCs,
    loop,
    globalPalette: global !== null,
    globalPaletteSize,
    localPaletteCount,
  };
}

// ---------------------------------------------------------------- PNG / APNG

interface Chunk {
  type: string;
  data: Uint8Array;
}

function readChunks(bytes: Uint8Array, format: string): Chunk[] {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || signature.some((b, i) => bytes[i] !== b)) {
    fail(format, "missing PNG signature");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: Chunk[] = [];
  let p = 8;
  while (p < bytes.length) {
    if (p + 12 > bytes.length) fail(format, `chunk header truncated at byte ${p}`);
    const length = view.getUint32(p);
    if (p + 12 + length > bytes.length) fail(format, `chunk at byte ${p} runs past the end`);
    const type = new TextDecoder().decode(bytes.subarray(p + 4, p + 8));
    const crc = crc32(bytes.subarray(p + 4, p + 8 + length));
    if (crc !== view.getUint32(p + 8 + length)) fail(format, `CRC mismatch in ${type} chunk`);
    chunks.push({ type, data: bytes.subarray(p + 8, p + 8 + length) });
    p += 12 + length;
    if (type === "IEND") break;
  }
  if (p !== bytes.length) fail(format, `${bytes.length - p} bytes after IEND`);
  if (chunks[0]?.type !== "IHDR") fail(format, "first chunk is not IHDR");
  if (chunks[chunks.length - 1].type !== "IEND") fail(format, "no IEND chunk");
  return chunks;
}

interface Header {
  width: number;
  height: number;
  colorType: number;
  channels: number;
}

function readHeader(ihdr: Uint8Array, format: string): Header {
  const v = new DataView(ihdr.buffer, ihdr.byteOffset, ihdr.byteLength);
  const [depth, colorType, comp, filter, interlace] = ihdr.subarray(8, 13);
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (ihdr.length !== 13 || !channels) fail(format, `unsupported colour type ${colorType}`);
  if (depth !== 8) fail(format, `only bit depth 8 is supported, got ${depth}`);
  if (comp !== 0 || filter !== 0) fail(format, "unknown compression or filter method");
  if (interlace !== 0) fail(format, "interlaced PNGs are not supported");
  return { width: v.getUint32(0), height: v.getUint32(4), colorType, channels };
}

/** Inflates and unfilters one image (any of the 5 filter types) into RGBA. */
function decodeImage(
  zdata: Uint8Array,
  size: { width: number; height: number },
  ctx: { header: Header; palette: Uint8Array | null; trns: Uint8Array | null; format: string },
): Uint8Array {
  const { width, height } = size;
  const bpp = ctx.header.channels, stride = width * bpp;
  const raw = unzlibSync(zdata);
  if (raw.length !== height * (stride + 1)) {
    fail(ctx.format, `inflated ${raw.length} bytes, expected ${height * (stride + 1)}`);
  }
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const o = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[o + i - bpp] : 0;
      const b = y > 0 ? px[o - stride + i] : 0;
      const c = i >= bpp && y > 0 ? px[o - stride + i - bpp] : 0;
      let pred: number;
      if (f === 0) pred = 0;
      else if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = Math.floor((a + b) / 2);
      else if (f === 4) {
        const pa = Math.abs(b - c), pb = Math.abs(a - c), pc = Math.abs(a + b - 2 * c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else fail(ctx.format, `row ${y}: unknown filter type ${f}`);
      px[o + i] = (src[i] + pred) & 0xff;
    }
  }
  const out = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = px.subarray(i * bpp, (i + 1) * bpp);
    let rgba: number[];
    switch (ctx.header.colorType) {
      case 0:
        rgba = [s[0], s[0], s[0], 255];
        break;
      case 2:
        rgba = [s[0], s[1], s[2], 255];
        break;
      case 3: {
        const pal = ctx.palette ?? fail(ctx.format, "colour type 3 without PLTE");
        if (s[0] * 3 >= pal.length) fail(ctx.format, `palette index ${s[0]} out of range`);
        const alpha = ctx.trns && s[0] < ctx.trns.length ? ctx.trns[s[0]] : 255;
        rgba = [pal[s[0] * 3], pal[s[0] * 3 + 1], pal[s[0] * 3 + 2], alpha];
        break;
      }
      case 4:
        rgba = [s[0], s[0], s[0], s[1]];
        break;
      default:
        rgba = [s[0], s[1], s[2], s[3]];
    }
    out.set(rgba, i * 4);
  }
  return out;
}

/** A decoded still PNG, as RGBA. */
export interface DecodedPng {
  width: number;
  height: number;
  /** RGBA bytes, width * height * 4. */
  data: Uint8Array;
}

/**
 * Decodes an 8-bit, non-interlaced PNG (grey, RGB, palette, grey+alpha or RGBA) to RGBA. For an
 * APNG this is the default image (the IDAT data).
 *
 * @example
 * ```ts
 * const { width, height, data } = decodePng(await Deno.readFile("frame_0000.png"));
 * ```
 */
export function decodePng(bytes: Uint8Array): DecodedPng {
  const chunks = readChunks(bytes, "Png");
  const header = readHeader(chunks[0].data, "Png");
  const firstIdat = chunks.findIndex((c) => c.type === "IDAT");
  if (firstIdat < 0) fail("Png", "no IDAT chunk");
  let last = firstIdat;
  while (chunks[last + 1]?.type === "IDAT") last++;
  if (chunks.slice(last + 1).some((c) => c.type === "IDAT")) {
    fail("Png", "IDAT chunks not consecutive");
  }
  const zdata = joinChunks(chunks.slice(firstIdat, last + 1).map((c) => c.data));
  const palette = chunks.find((c) => c.type === "PLTE")?.data ?? null;
  const trns = chunks.find((c) => c.type === "tRNS")?.data ?? null;
  const data = decodeImage(zdata, header, { header, palette, trns, format: "Png" });
  return { width: header.width, height: header.height, data };
}

function joinChunks(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

/** A decoded APNG: every frame composited onto the full canvas, as RGBA. */
export interface DecodedApng {
  width: number;
  height: number;
  /** RGBA canvas after each frame is drawn. */
  frames: Uint8Array[];
  /** Frame delays in seconds (delay_num / delay_den; a den of 0 means 100). */
  delays: number[];
  /** The raw delay fractions as stored in each fcTL. */
  delayFractions: { num: number; den: number }[];
  /** acTL num_plays (0 = forever). */
  numPlays: number;
  /** Whether the IDAT image is frame 0 of the animation (an fcTL precedes it). */
  idatIsFirstFrame: boolean;
}

/**
 * Decodes an APNG: checks acTL, contiguous fcTL/fdAT sequence numbers and frame regions, and
 * applies blend (SOURCE, OVER) and dispose (NONE, BACKGROUND, PREVIOUS) operations.
 *
 * @example
 * ```ts
 * const { frames, delays, numPlays } = decodeApng(await Deno.readFile("clip.png"));
 * ```
 */
export function decodeApng(bytes: Uint8Array): DecodedApng {
  const F = "Apng";
  const chunks = readChunks(bytes, F);
  const header = readHeader(chunks[0].data, F);
  const { width, height } = header;
  const actlAt = chunks.findIndex((c) => c.type === "acTL");
  const idatAt = chunks.findIndex((c) => c.type === "IDAT");
  if (actlAt < 0) fail(F, "no acTL chunk: not an animated PNG");
  if (idatAt < 0 || actlAt > idatAt) fail(F, "acTL must come before IDAT");
  const actl = new DataView(chunks[actlAt].data.buffer, chunks[actlAt].data.byteOffset, 8);
  const numFrames = actl.getUint32(0), numPlays = actl.getUint32(4);
  const palette = chunks.find((c) => c.type === "PLTE")?.data ?? null;
  const trns = chunks.find((c) => c.type === "tRNS")?.data ?? null;
  const ctx = { header, palette, trns, format: F };

  interface Control {
    w: number;
    h: number;
    x: number;
    y: number;
    num: number;
    den: number;
    dispose: number;
    blend: number;
    parts: Uint8Array[];
  }
  const controls: Control[] = [];
  let seq = 0, idatIsFirstFrame = false, current: Control | null = null;
  for (let i = 0; i < chunks.length; i++) {
    const { type, data } = chunks[i];
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (type === "fcTL" || type === "fdAT") {
      if (v.getUint32(0) !== seq) {
        fail(F, `${type} sequence number ${v.getUint32(0)}, expected ${seq}`);
      }
      seq++;
    }
    if (type === "fcTL") {
      if (data.length !== 26) fail(F, `fcTL of ${data.length} bytes`);
      current = {
        w: v.getUint32(4),
        h: v.getUint32(8),
        x: v.getUint32(12),
        y: v.getUint32(16),
        num: v.getUint16(20),
        den: v.getUint16(22),
        dispose: data[24],
        blend: data[25],
        parts: [],
      };
      if (
        current.x + current.w > width || current.y + current.h > height || !current.w || !current.h
      ) {
        fail(F, `frame ${controls.length} region outside the ${width}x${height} canvas`);
      }
      if (current.dispose > 2 || current.blend > 1) fail(F, "unknown dispose or blend op");
      controls.push(current);
    } else if (type === "IDAT" && current) {
      if (i === idatAt) idatIsFirstFrame = true;
      if (current.w !== width || current.h !== height || current.x || current.y) {
        fail(F, "the IDAT frame must cover the whole canvas");
      }
      current.parts.push(data);
    } else if (type === "fdAT") {
      if (!current || (idatIsFirstFrame && controls.length === 1)) fail(F, "fdAT before its fcTL");
      current.parts.push(data.subarray(4));
    }
  }
  if (controls.length !== numFrames) {
    fail(F, `acTL says ${numFrames} frames, found ${controls.length}`);
  }

  const canvas = new Uint8Array(width * height * 4);
  const frames: Uint8Array[] = [];
  for (let k = 0; k < controls.length; k++) {
    const c = controls[k];
    if (c.parts.length === 0) fail(F, `frame ${k} has no image data`);
    const img = decodeImage(joinChunks(c.parts), { width: c.w, height: c.h }, ctx);
    const dispose = k === 0 && c.dispose === 2 ? 1 : c.dispose;
    const saved = dispose === 2 ? canvas.slice() : null;
    for (let y = 0; y < c.h; y++) {
      for (let x = 0; x < c.w; x++) {
        const s = (y * c.w + x) * 4, d = ((c.y + y) * width + c.x + x) * 4;
        const sa = img[s + 3];
        if (c.blend === 0 || sa === 255) {
          canvas.set(img.subarray(s, s + 4), d);
        } else if (sa > 0) {
          const da = canvas[d + 3] * (255 - sa) / 255, oa = sa + da;
          for (let ch = 0; ch < 3; ch++) {
            canvas[d + ch] = Math.round((img[s + ch] * sa + canvas[d + ch] * da) / oa);
          }
          canvas[d + 3] = Math.round(oa);
        }
      }
    }
    frames.push(canvas.slice());
    if (dispose === 1) {
      for (let y = c.y; y < c.y + c.h; y++) {
        canvas.fill(0, (y * width + c.x) * 4, (y * width + c.x + c.w) * 4);
      }
    } else if (saved) canvas.set(saved);
  }
  return {
    width,
    height,
    frames,
    delays: controls.map((c) => c.num / (c.den || 100)),
    delayFractions: controls.map((c) => ({ num: c.num, den: c.den })),
    numPlays,
    idatIsFirstFrame,
  };
}

// ---------------------------------------------------------------- zip

/** One zip entry: its name and bytes, in central-directory order. */
export interface ZipEntry {
  name: string;
  png: Uint8Array;
  /** Compression method: 0 = stored, 8 = deflate. */
  method: number;
}

/**
 * Reads every entry of a zip archive (stored or deflated, no zip64), in central-directory
 * order, checking each entry's CRC-32 and size.
 *
 * @example
 * ```ts
 * for (const { name, png } of unzipFrames(zipBytes)) decodePng(png);
 * ```
 */
export function unzipFrames(bytes: Uint8Array): ZipEntry[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 22 - 65535); p--) {
    if (v.getUint32(p, true) === 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) fail("Zip", "no end-of-central-directory record");
  const count = v.getUint16(eocd + 10, true);
  let p = v.getUint32(eocd + 16, true);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (v.getUint32(p, true) !== 0x02014b50) fail("Zip", `bad central directory entry ${i}`);
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    const compSize = v.getUint32(p + 20, true), size = v.getUint32(p + 24, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true), commentLen = v.getUint16(p + 32, true);
    const local = v.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    p += 46 + nameLen + extraLen + commentLen;
    if (v.getUint32(local, true) !== 0x04034b50) fail("Zip", `bad local header for ${name}`);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    const raw = bytes.subarray(start, start + compSize);
    let data: Uint8Array;
    if (method === 0) data = raw.slice();
    else if (method === 8) data = inflateSync(raw);
    else fail("Zip", `${name}: unsupported compression method ${method}`);
    if (data.length !== size) fail("Zip", `${name}: ${data.length} bytes, header says ${size}`);
    if (crc32(data) !== crc) fail("Zip", `${name}: CRC mismatch`);
    entries.push({ name, png: data, method });
  }
  return entries;
}
