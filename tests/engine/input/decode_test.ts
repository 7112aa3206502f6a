/**
 * The training-data decoders (engine/input): GIF, PNG / APNG and PNG-frames folders. Files come
 * from our own encoders (decoded exactly) and from small hand-built writers here that exercise
 * what our encoders never write: local palettes, transparency, disposal, interlacing, sub-8-bit
 * and 16-bit PNGs, Adam7, APNG regions with blend and dispose ops. tests/decode.ts, written
 * independently, is the second opinion where one is needed.
 */

import { zlibSync } from "fflate";
import { assert, assertEquals } from "../../assert.ts";
import { decodeApng as refApng, decodeGif as refGif } from "../../decode.ts";
import { movingGradient } from "../output/synthetic.ts";
import { decodeGif, probeGif } from "../../../engine/input/gif.ts";
import { decodeApng, decodePng, probePng } from "../../../engine/input/png.ts";
import { compareNatural, probeClip, readClipFrames } from "../../../engine/input/clip.ts";
import { encodeApng, encodeGif, encodePng } from "../../../engine/output/mod.ts";
import { PNG_SIGNATURE, pngChunk } from "../../../engine/output/png.ts";
import type { Frame } from "../../../engine/output/frame.ts";

// ------------------------------------------------------------ a tiny GIF writer

/** LZW data of literal codes only, with a clear code before the code size would grow. */
function lzwLiterals(indices: number[], minCode: number): Uint8Array {
  const clear = 1 << minCode, size = minCode + 1, out: number[] = [];
  let acc = 0, nbits = 0;
  const put = (code: number) => {
    acc |= code << nbits;
    nbits += size;
    while (nbits >= 8) out.push(acc & 255), acc >>>= 8, nbits -= 8;
  };
  indices.forEach((v, i) => {
    if (i % (clear - 2) === 0) put(clear);
    put(v);
  });
  put(clear + 1);
  if (nbits > 0) out.push(acc & 255);
  return new Uint8Array(out);
}

interface GifImage {
  x: number;
  y: number;
  w: number;
  h: number;
  /** Colour indices, rows top to bottom. */
  indices: number[];
  palette?: number[][];
  transparent?: number;
  disposal?: number;
  interlace?: boolean;
}

function gifFile(width: number, height: number, global: number[][] | null, images: GifImage[]) {
  const b: number[] = [..."GIF89a"].map((c) => c.charCodeAt(0));
  const u16 = (v: number) => b.push(v & 255, v >> 8);
  const table = (p: number[][]) => {
    const bits = Math.max(1, Math.ceil(Math.log2(p.length)));
    for (let i = 0; i < 1 << bits; i++) b.push(...(p[i] ?? [0, 0, 0]));
    return bits;
  };
  u16(width), u16(height);
  const gBits = global ? Math.max(1, Math.ceil(Math.log2(global.length))) : 0;
  b.push(global ? 0x80 | (gBits - 1) : 0, 0, 0);
  if (global) table(global);
  for (const im of images) {
    const t = im.transparent ?? -1;
    b.push(0x21, 0xf9, 4, ((im.disposal ?? 0) << 2) | (t >= 0 ? 1 : 0), 10, 0, Math.max(t, 0), 0);
    b.push(0x2c), u16(im.x), u16(im.y), u16(im.w), u16(im.h);
    const lBits = im.palette ? Math.max(1, Math.ceil(Math.log2(im.palette.length))) : 0;
    b.push((im.palette ? 0x80 | (lBits - 1) : 0) | (im.interlace ? 0x40 : 0));
    if (im.palette) table(im.palette);
    let rows = Array.from({ length: im.h }, (_, y) => y);
    if (im.interlace) {
      rows = [];
      for (const [s, st] of [[0, 8], [4, 8], [2, 4], [1, 2]]) {
        for (let y = s; y < im.h; y += st) rows.push(y);
      }
    }
    const ordered = rows.flatMap((y) => im.indices.slice(y * im.w, (y + 1) * im.w));
    const minCode = Math.max(2, lBits || gBits);
    const data = lzwLiterals(ordered, minCode);
    b.push(minCode);
    for (let p = 0; p < data.length; p += 255) {
      const part = data.subarray(p, p + 255);
      b.push(part.length, ...part);
    }
    b.push(0);
  }
  b.push(0x3b);
  return new Uint8Array(b);
}

// ------------------------------------------------------------ a tiny PNG writer

/** A PNG from per-pixel samples (`channels` values each, full precision for the depth). */
function pngFile(
  width: number,
  height: number,
  opts: {
    depth: number;
    colorType: number;
    samples: number[];
    interlace?: boolean;
    plte?: number[];
    trns?: number[];
  },
): Uint8Array {
  const ch = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[opts.colorType];
  const passes = opts.interlace
    ? [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [
      0,
      1,
      1,
      2,
    ]]
    : [[0, 0, 1, 1]];
  const raw: number[] = [];
  for (const [x0, y0, dx, dy] of passes) {
    for (let y = y0; y < height; y += dy) {
      const bits: number[] = [];
      for (let x = x0; x < width; x += dx) {
        for (let c = 0; c < ch; c++) bits.push(opts.samples[(y * width + x) * ch + c]);
      }
      if (bits.length === 0) continue;
      raw.push(0);
      if (opts.depth === 16) bits.forEach((v) => raw.push(v >> 8, v & 255));
      else if (opts.depth === 8) raw.push(...bits);
      else {
        const perByte = 8 / opts.depth;
        for (let i = 0; i < bits.length; i += perByte) {
          let byte = 0;
          for (let k = 0; k < perByte; k++) {
            byte |= (bits[i + k] ?? 0) << (8 - opts.depth * (k + 1));
          }
          raw.push(byte);
        }
      }
    }
  }
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  ihdr.set([opts.depth, opts.colorType, 0, 0, opts.interlace ? 1 : 0], 8);
  const parts = [PNG_SIGNATURE, pngChunk("IHDR", ihdr)];
  if (opts.plte) parts.push(pngChunk("PLTE", new Uint8Array(opts.plte)));
  if (opts.trns) parts.push(pngChunk("tRNS", new Uint8Array(opts.trns)));
  parts.push(pngChunk("IDAT", zlibSync(new Uint8Array(raw))), pngChunk("IEND", new Uint8Array()));
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

function rgba(frame: Frame, x: number, y: number): number[] {
  const o = (y * frame.width + x) * 4;
  return [...frame.data.subarray(o, o + 4)];
}

// ------------------------------------------------------------ GIF

Deno.test("decodeGif: our encoder's GIFs decode exactly (bin-centred colours) and as the reference decoder", () => {
  const colours = [[4, 12, 252], [252, 4, 132], [68, 196, 36], [132, 132, 132]];
  const frames: Frame[] = Array.from({ length: 5 }, (_, t) => {
    const data = new Uint8ClampedArray(13 * 9 * 4);
    for (let p = 0; p < 13 * 9; p++) data.set([...colours[(p + t) % 4], 255], p * 4);
    return { data, width: 13, height: 9 };
  });
  const decoded = decodeGif(encodeGif(frames, { fps: 8 }));
  assertEquals([decoded.width, decoded.height, decoded.frames.length], [13, 9, 5]);
  decoded.frames.forEach((f, i) => assertEquals([...f.data], [...frames[i].data], `frame ${i}`));

  const gradient = encodeGif(movingGradient(37, 23, 6), { fps: 12 });
  const ref = refGif(gradient);
  const ours = decodeGif(gradient);
  assertEquals(probeGif(gradient), { width: 37, height: 23, frameCount: 6 });
  ours.frames.forEach((f, i) => assertEquals([...f.data], [...ref.frames[i]], `frame ${i}`));
  assertEquals(decodeGif(gradient, { maxFrames: 2 }).frames.length, 2);
});

Deno.test("decodeGif: local palettes, transparency, disposal 1/2/3, offsets and interlace", () => {
  const red = [200, 0, 0], green = [0, 200, 0], blue = [0, 0, 200], white = [255, 255, 255];
  const bytes = gifFile(4, 10, [red, green], [
    // frame 0: whole canvas, global palette, red with a green stripe in row 1
    {
      x: 0,
      y: 0,
      w: 4,
      h: 10,
      indices: Array.from({ length: 40 }, (_, i) => i >> 2 === 1 ? 1 : 0),
    },
    // frame 1: local palette, 2x2 at (1, 1), index 0 transparent, restored to background after
    {
      x: 1,
      y: 1,
      w: 2,
      h: 2,
      indices: [0, 1, 1, 0],
      palette: [blue, white],
      transparent: 0,
      disposal: 2,
    },
    // frame 2: 1x1 blue at (3, 0), restored to previous after
    { x: 3, y: 0, w: 1, h: 1, indices: [0], palette: [blue, white], disposal: 3 },
    // frame 3: interlaced column, 10 rows of distinct colours at x = 0
    {
      x: 0,
      y: 0,
      w: 1,
      h: 10,
      indices: [0, 1, 2, 3, 4, 5, 6, 7, 0, 1],
      palette: Array.from({ length: 8 }, (_, k) => [k * 30, 0, 0]),
      interlace: true,
    },
  ]);
  const { frames } = decodeGif(bytes);
  const ref = refGif(bytes);
  assertEquals(frames.length, 4);
  frames.forEach((f, i) =>
    assertEquals([...f.data], [...ref.frames[i]], `frame ${i} vs reference`)
  );
  assertEquals(rgba(frames[0], 0, 1), [...green, 255]);
  assertEquals(rgba(frames[1], 1, 1), [...green, 255], "transparent index keeps the pixel below");
  assertEquals(rgba(frames[1], 2, 1), [...white, 255]);
  assertEquals(rgba(frames[1], 1, 2), [...white, 255]);
  assertEquals(rgba(frames[1], 2, 2), [...red, 255]);
  assertEquals(rgba(frames[2], 2, 1), [0, 0, 0, 0], "disposal 2 cleared frame 1's region");
  assertEquals(rgba(frames[2], 3, 0), [...blue, 255]);
  assertEquals(rgba(frames[3], 3, 0), [...red, 255], "disposal 3 restored frame 2's region");
  for (let y = 0; y < 10; y++) assertEquals(rgba(frames[3], 0, y), [(y % 8) * 30, 0, 0, 255]);
});

Deno.test("decodeGif: broken files throw a reason", () => {
  const good = encodeGif(movingGradient(8, 8, 2), { fps: 8 });
  let err = "";
  try {
    decodeGif(good.subarray(0, good.length - 40));
  } catch (e) {
    err = (e as Error).message;
  }
  assert(/decodeGif: (file truncated|LZW)/.test(err), err);
  try {
    decodeGif(new TextEncoder().encode("not a gif at all"));
  } catch (e) {
    err = (e as Error).message;
  }
  assert(/not a GIF/.test(err), err);
});

// ------------------------------------------------------------ PNG / APNG

Deno.test("decodePng / decodeApng: our encoders' files decode exactly", () => {
  const frames = movingGradient(31, 17, 4, { alpha: true });
  const apng = encodeApng(frames, { fps: 8 });
  assertEquals(probePng(apng), { width: 31, height: 17, frameCount: 4 });
  const decoded = decodeApng(apng);
  decoded.frames.forEach((f, i) => assertEquals([...f.data], [...frames[i].data], `frame ${i}`));
  assertEquals([...decodePng(encodePng(frames[2])).data], [...frames[2].data]);
  assertEquals(decodeApng(encodePng(frames[1])).frames.length, 1, "a still PNG is one frame");
});

Deno.test("decodePng: grey 1/2/4/8/16-bit, RGB 16-bit, palette + tRNS, grey+alpha, Adam7", () => {
  const w = 11, h = 9;
  const px = (f: (x: number, y: number) => number[]) =>
    Array.from({ length: w * h }, (_, i) => f(i % w, Math.floor(i / w))).flat();
  for (const depth of [1, 2, 4, 8, 16]) {
    const max = 2 ** depth - 1;
    const samples = px((x, y) => [(x * 3 + y * 5) % (max + 1)]);
    for (const interlace of [false, true]) {
      const img = decodePng(pngFile(w, h, { depth, colorType: 0, samples, interlace }));
      for (let i = 0; i < w * h; i++) {
        const v = depth === 16 ? samples[i] >> 8 : Math.round(samples[i] * 255 / max);
        assertEquals(
          rgba(img, i % w, Math.floor(i / w)),
          [v, v, v, 255],
          `grey ${depth} ${interlace}`,
        );
      }
    }
  }
  const rgb16 = px((x, y) => [x * 5000, y * 7000, 65535 - x * 300]);
  const img16 = decodePng(
    pngFile(w, h, { depth: 16, colorType: 2, samples: rgb16, interlace: true }),
  );
  assertEquals(rgba(img16, 3, 4), [(3 * 5000) >> 8, (4 * 7000) >> 8, (65535 - 900) >> 8, 255]);
  const plte = [10, 20, 30, 40, 50, 60, 70, 80, 90];
  for (const depth of [2, 4, 8]) {
    const idx = px((x, y) => [(x + y) % 3]);
    const img = decodePng(
      pngFile(w, h, { depth, colorType: 3, samples: idx, plte, trns: [0, 128] }),
    );
    assertEquals(rgba(img, 0, 0), [10, 20, 30, 0]);
    assertEquals(rgba(img, 1, 0), [40, 50, 60, 128]);
    assertEquals(rgba(img, 2, 0), [70, 80, 90, 255], "no tRNS entry: opaque");
  }
  const ga = px((x, y) => [x * 20, y * 25]);
  assertEquals(rgba(decodePng(pngFile(w, h, { depth: 8, colorType: 4, samples: ga })), 5, 6), [
    100,
    100,
    100,
    150,
  ]);
  const key = pngFile(w, h, {
    depth: 8,
    colorType: 2,
    samples: px((x) => [x, 1, 2]),
    trns: [0, 3, 0, 1, 0, 2],
  });
  assertEquals(rgba(decodePng(key), 3, 0), [3, 1, 2, 0], "tRNS colour key");
  assertEquals(rgba(decodePng(key), 4, 0), [4, 1, 2, 255]);
});

Deno.test("decodeApng: regions, blend OVER, dispose BACKGROUND / PREVIOUS, hidden default image", () => {
  const frame = (w: number, h: number, c: number[]): Frame => ({
    data: new Uint8ClampedArray(Array.from({ length: w * h }, () => c).flat()),
    width: w,
    height: h,
  });
  const fctl = (seq: number, f: Frame, x: number, y: number, dispose: number, blend: number) => {
    const d = new Uint8Array(26), v = new DataView(d.buffer);
    v.setUint32(0, seq), v.setUint32(4, f.width), v.setUint32(8, f.height);
    v.setUint32(12, x), v.setUint32(16, y), v.setUint16(20, 1), v.setUint16(22, 8);
    d[24] = dispose, d[25] = blend;
    return pngChunk("fcTL", d);
  };
  const idat = (f: Frame) => zlibSync(rawRows(f));
  const fdat = (seq: number, f: Frame) => {
    const z = idat(f), d = new Uint8Array(4 + z.length);
    new DataView(d.buffer).setUint32(0, seq), d.set(z, 4);
    return pngChunk("fdAT", d);
  };
  const ihdr = new Uint8Array(13);
  new DataView(ihdr.buffer).setUint32(0, 4), new DataView(ihdr.buffer).setUint32(4, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const actl = (n: number) => {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setUint32(0, n);
    return pngChunk("acTL", d);
  };
  const base = frame(4, 4, [100, 0, 0, 255]);
  const half = frame(2, 2, [0, 0, 200, 128]);
  const dot = frame(1, 1, [0, 255, 0, 255]);
  const bytes = concat([
    PNG_SIGNATURE,
    pngChunk("IHDR", ihdr),
    actl(3),
    fctl(0, base, 0, 0, 0, 0),
    pngChunk("IDAT", idat(base)),
    fctl(1, half, 1, 1, 2, 1), // OVER, then restore previous
    fdat(2, half),
    fctl(3, dot, 0, 0, 1, 0), // SOURCE, then clear to background
    fdat(4, dot),
    pngChunk("IEND", new Uint8Array()),
  ]);
  const ours = decodeApng(bytes), ref = refApng(bytes);
  ours.frames.forEach((f, i) => assertEquals([...f.data], [...ref.frames[i]], `frame ${i}`));
  assertEquals(rgba(ours.frames[1], 1, 1), [50, 0, 100, 255]);
  assertEquals(rgba(ours.frames[1], 0, 0), [100, 0, 0, 255]);
  assertEquals(rgba(ours.frames[2], 1, 1), [100, 0, 0, 255], "PREVIOUS restored frame 1's region");
  assertEquals(rgba(ours.frames[2], 0, 0), [0, 255, 0, 255]);

  // Default image not part of the animation: no fcTL before IDAT.
  const hidden = concat([
    PNG_SIGNATURE,
    pngChunk("IHDR", ihdr),
    actl(1),
    pngChunk("IDAT", idat(base)),
    fctl(0, frame(4, 4, [1, 2, 3, 255]), 0, 0, 0, 0),
    fdat(1, frame(4, 4, [1, 2, 3, 255])),
    pngChunk("IEND", new Uint8Array()),
  ]);
  const h = decodeApng(hidden);
  assertEquals(h.frames.length, 1);
  assertEquals(rgba(h.frames[0], 2, 2), [1, 2, 3, 255]);
  assertEquals(rgba(decodePng(hidden), 2, 2), [100, 0, 0, 255]);
});

function rawRows(f: Frame): Uint8Array {
  const stride = f.width * 4, out = new Uint8Array(f.height * (stride + 1));
  for (let y = 0; y < f.height; y++) {
    out.set(f.data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  return out;
}

Deno.test("decodePng: a bad CRC or a missing signature throws a reason", () => {
  const png = encodePng(movingGradient(4, 4, 1)[0]);
  const bad = png.slice();
  bad[40] ^= 0xff;
  let msg = "";
  try {
    decodePng(bad);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/CRC mismatch|does not inflate/.test(msg), msg);
  try {
    decodePng(new Uint8Array(20));
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/not a PNG/.test(msg), msg);
});

// ------------------------------------------------------------ clips on disk

Deno.test("clips: PNG-frames folders in numeric order, GIF and APNG files, MP4 refused", async () => {
  assertEquals(["f10.png", "f2.png", "f1.png", "f02.png"].sort(compareNatural), [
    "f1.png",
    "f02.png",
    "f2.png",
    "f10.png",
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const frames = movingGradient(6, 5, 12);
    await Deno.mkdir(`${dir}/walk`);
    for (let i = 0; i < 12; i++) {
      await Deno.writeFile(`${dir}/walk/frame${i}.png`, encodePng(frames[i]));
    }
    await Deno.writeTextFile(`${dir}/walk/notes.txt`, "ignored");
    const info = await probeClip(`${dir}/walk`, { verify: true });
    assertEquals([info.format, info.width, info.height, info.frameCount], ["png-frames", 6, 5, 12]);
    const got = await readClipFrames(info, [10, 2, 10]);
    assertEquals([...got[0].data], [...frames[10].data]);
    assertEquals([...got[1].data], [...frames[2].data]);
    await Deno.writeFile(`${dir}/a.png`, encodeApng(frames, { fps: 8 }));
    const apng = await probeClip(`${dir}/a.png`);
    assertEquals([apng.format, apng.frameCount], ["apng", 12]);
    assertEquals([...(await readClipFrames(apng, [7]))[0].data], [...frames[7].data]);
    await Deno.writeFile(`${dir}/v.mp4`, new Uint8Array(16));
    let msg = "";
    try {
      await probeClip(`${dir}/v.mp4`);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/\.mp4 video is not supported/.test(msg), msg);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
