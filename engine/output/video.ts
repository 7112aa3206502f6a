/**
 * Video outputs: MP4 (H.264, through the `h264-mp4-encoder` WebAssembly build of minih264 and
 * libmp4v2) and WebM (VP8 key frames from libwebp's lossy encoder, `@jsquash/webp`, in our own
 * Matroska muxer, webm.ts). Both encoders are loaded on first use, so GIF-only users never pay for
 * them, and both files play in every browser that plays the format.
 *
 * The MP4 encoder is an Emscripten build made for Node: it adds `uncaughtException` and
 * `unhandledRejection` handlers to `process` while it loads. Those are removed again, so loading
 * it changes nothing about how the host process treats errors.
 * @module
 */

import { checkFps, checkFrames, type Frame } from "./frame.ts";
import { muxWebm, vp8FromWebp } from "./webm.ts";

/** Video formats by name, as the CLI (`--out x.mp4`) and HTTP API (`format`) spell them. */
export type VideoFormat = "mp4" | "webm";

/**
 * Options of {@link encodeVideo}.
 *
 * @example
 * ```ts
 * import { encodeVideo, type VideoOptions } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(16 * 16 * 4), width: 16, height: 16 };
 * const options: VideoOptions = { fps: 8, quality: 0.9 };
 * const mp4: Uint8Array = await encodeVideo([f, f], "mp4", options);
 * ```
 */
export interface VideoOptions {
  /** Frames per second (finite, > 0). MP4 stores 1/fps in 1/90000 s, WebM in milliseconds. */
  fps: number;
  /**
   * 0 (smallest file) to 1 (best picture); default 0.85. MP4: quantiser 51 - 41 x quality
   * (0.85 -> 16, visually lossless on these frames). WebM: libwebp quality 100 x quality; every
   * frame is a key frame (larger than inter-coded video, exact seeking, no drift).
   */
  quality?: number;
}

/** Largest side either encoder is asked to take (H.264 level limits start to bite past it). */
export const MAX_VIDEO_SIDE = 4096;

type ProcessLike = {
  listeners(event: string): unknown[];
  removeListener(event: string, fn: (...args: unknown[]) => void): void;
};

/** Runs `load` and removes the process-level handlers it added (Emscripten's Node glue). */
async function withoutNewProcessHandlers<T>(load: () => Promise<T>): Promise<T> {
  const { default: process } = await import("node:process") as unknown as { default: ProcessLike };
  const events = ["uncaughtException", "unhandledRejection"];
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e))]));
  try {
    return await load();
  } finally {
    for (const e of events) {
      for (const fn of process.listeners(e)) {
        if (!before.get(e)!.has(fn)) {
          process.removeListener(e, fn as (...args: unknown[]) => void);
        }
      }
    }
  }
}

/** The parts of h264-mp4-encoder's encoder used here. */
interface H264Encoder {
  width: number;
  height: number;
  frameRate: number;
  quantizationParameter: number;
  speed: number;
  groupOfPictures: number;
  outputFilename: string;
  FS: { readFile(path: string): Uint8Array; unlink(path: string): void };
  initialize(): void;
  addFrameRgba(rgba: Uint8Array): void;
  finalize(): void;
  delete(): void;
}

/** @jsquash/webp's encoder: RGBA in, a WebP file out. */
type WebpEncode = (
  image: { data: Uint8ClampedArray; width: number; height: number; colorSpace: "srgb" },
  options: Record<string, number>,
) => Promise<ArrayBuffer>;

let h264Factory: Promise<() => Promise<H264Encoder>> | null = null;
let webpEncoder: Promise<WebpEncode> | null = null;

function loadH264(): Promise<() => Promise<H264Encoder>> {
  h264Factory ??= withoutNewProcessHandlers(async () => {
    const mod = await import("npm:h264-mp4-encoder@1.0.12");
    const api = (mod.default ?? mod) as { createH264MP4Encoder(): Promise<H264Encoder> };
    return () => api.createH264MP4Encoder();
  }).catch((e) => {
    h264Factory = null;
    throw new Error(`encodeVideo: cannot load the MP4 encoder (${(e as Error).message})`);
  });
  return h264Factory;
}

function loadWebp(): Promise<WebpEncode> {
  webpEncoder ??= import("npm:@jsquash/webp@1.5.0/encode.js").then(async (mod) => {
    await mod.init();
    return mod.default as unknown as WebpEncode;
  }).catch((e) => {
    webpEncoder = null;
    throw new Error(`encodeVideo: cannot load the WebM (VP8) encoder (${(e as Error).message})`);
  });
  return webpEncoder;
}

function checkVideoFrames(frames: readonly Frame[], quality: number): void {
  checkFrames(frames, "encodeVideo");
  const { width, height } = frames[0];
  if (width % 2 || height % 2) {
    throw new RangeError(
      `encodeVideo: width and height must be even for video (4:2:0 chroma), got ${width}x${height}`,
    );
  }
  if (width > MAX_VIDEO_SIDE || height > MAX_VIDEO_SIDE) {
    throw new RangeError(
      `encodeVideo: frames of ${width}x${height} exceed the ${MAX_VIDEO_SIDE}-pixel video limit`,
    );
  }
  if (!(quality >= 0 && quality <= 1)) {
    throw new RangeError(`encodeVideo: quality must be in [0, 1], got ${quality}`);
  }
}

function rgbaBytes(f: Frame): Uint8Array {
  return new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength);
}

async function encodeMp4(frames: readonly Frame[], fps: number, quality: number) {
  const create = await loadH264();
  const enc = await create();
  try {
    enc.width = frames[0].width;
    enc.height = frames[0].height;
    enc.frameRate = Math.max(1, Math.round(fps)); // an integer here; setMp4FrameRate makes it exact
    enc.quantizationParameter = Math.round(51 - 41 * quality);
    enc.speed = 0;
    enc.groupOfPictures = Math.max(1, Math.min(frames.length, 30));
    enc.initialize();
    for (const f of frames) enc.addFrameRgba(rgbaBytes(f));
    enc.finalize();
    const bytes = enc.FS.readFile(enc.outputFilename).slice();
    enc.FS.unlink(enc.outputFilename);
    return setMp4FrameRate(bytes, fps, frames.length);
  } finally {
    enc.delete();
  }
}

async function encodeWebm(frames: readonly Frame[], fps: number, quality: number) {
  const encode = await loadWebp();
  const { width, height } = frames[0];
  const keyFrames: Uint8Array[] = [];
  for (const f of frames) {
    // Opaque pixels, so the WebP is a plain VP8 key frame (no alpha plane).
    const data = new Uint8ClampedArray(f.data);
    for (let i = 3; i < data.length; i += 4) data[i] = 255;
    const webp = await encode({ data, width, height, colorSpace: "srgb" }, {
      quality: Math.round(100 * quality),
      lossless: 0,
      method: 4,
      exact: 0,
    });
    keyFrames.push(vp8FromWebp(new Uint8Array(webp)).slice());
  }
  return muxWebm(keyFrames, { width, height, fps });
}

/** Body offsets of the boxes on `path` (first match at each level), or null. */
function findBox(b: Uint8Array, start: number, end: number, path: string[]): number | null {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = start;
  while (at + 8 <= end) {
    const size = view.getUint32(at);
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    if (size < 8 || at + size > end) return null;
    if (type === path[0]) {
      return path.length === 1 ? at + 8 : findBox(b, at + 8, at + size, path.slice(1));
    }
    at += size;
  }
  return null;
}

/**
 * The encoder stores an integer frame rate (7.5 fps would play at 7): rewrite the single
 * sample-duration entry as timescale / fps and the movie, track and media durations to match,
 * and drop the wall-clock timestamps so the file depends on the frames alone.
 */
function setMp4FrameRate(b: Uint8Array, fps: number, frames: number): Uint8Array {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const trak = ["moov", "trak"];
  const mvhd = findBox(b, 0, b.length, ["moov", "mvhd"]);
  const tkhd = findBox(b, 0, b.length, [...trak, "tkhd"]);
  const mdhd = findBox(b, 0, b.length, [...trak, "mdia", "mdhd"]);
  const stts = findBox(b, 0, b.length, [...trak, "mdia", "minf", "stbl", "stts"]);
  if (mvhd === null || tkhd === null || mdhd === null || stts === null) {
    throw new Error("encodeVideo: the MP4 encoder wrote an unexpected box layout");
  }
  if (b[mvhd] !== 0 || b[tkhd] !== 0 || b[mdhd] !== 0 || view.getUint32(stts + 4) !== 1) {
    throw new Error("encodeVideo: the MP4 encoder wrote an unexpected box version");
  }
  const mediaScale = view.getUint32(mdhd + 12);
  const movieScale = view.getUint32(mvhd + 12);
  const delta = Math.max(1, Math.round(mediaScale / fps));
  const movieDuration = Math.round((frames * delta * movieScale) / mediaScale);
  view.setUint32(stts + 8, frames);
  view.setUint32(stts + 12, delta);
  view.setUint32(mdhd + 16, frames * delta);
  view.setUint32(mvhd + 16, movieDuration);
  view.setUint32(tkhd + 20, movieDuration);
  // Creation and modification times (seconds since 1904) zeroed: same frames, same file.
  for (const box of [mvhd, tkhd, mdhd]) b.fill(0, box + 4, box + 12);
  return b;
}

/**
 * Encodes frames (all the same even size) as an MP4 (H.264 High profile, yuv420p, every frame
 * shown for 1/fps s) or a WebM (VP8 key frames). The first call loads the encoder (tens of ms).
 *
 * @example
 * ```ts
 * import { encodeVideo } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(64 * 64 * 4).fill(255), width: 64, height: 64 };
 * await Deno.writeFile("white.webm", await encodeVideo([f, f, f], "webm", { fps: 8 }));
 * ```
 */
export async function encodeVideo(
  frames: readonly Frame[],
  format: VideoFormat,
  options: VideoOptions,
): Promise<Uint8Array> {
  const { fps, quality = 0.85 } = options ?? {};
  checkFps(fps, "encodeVideo");
  checkVideoFrames(frames, quality);
  if (format === "mp4") return await encodeMp4(frames, fps, quality);
  if (format === "webm") return await encodeWebm(frames, fps, quality);
  throw new RangeError(`encodeVideo: expected format to be mp4 or webm, got "${format}"`);
}
