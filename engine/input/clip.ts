/**
 * Video clips on disk for training: an animated GIF, an APNG (or still PNG) file, or a folder of
 * PNG frames ordered by name with numbers compared as numbers (`f2.png` before `f10.png`).
 * {@link probeClip} reads a clip's size and frame count cheaply; {@link readClipFrames} decodes
 * the frames a sample needs. MP4 and other codecs are not decoded (no pure-JS decoder fits).
 * @module
 */

import type { Frame } from "../output/frame.ts";
import { decodeGif, probeGif } from "./gif.ts";
import { decodeApng, decodePng, probePng } from "./png.ts";

/**
 * How a clip is stored.
 *
 * @example
 * ```ts
 * const format: ClipFormat = "png-frames";
 * ```
 */
export type ClipFormat = "gif" | "apng" | "png-frames";

/**
 * A clip found on disk: where, how stored, its size and frame count.
 *
 * @example
 * ```ts
 * const info: ClipInfo = await probeClip("clips/0001.gif");
 * info.frameCount;
 * ```
 */
export interface ClipInfo {
  /** The file, or the folder of PNG frames. */
  path: string;
  /** How the clip is stored. */
  format: ClipFormat;
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** Number of frames. */
  frameCount: number;
  /** png-frames: the frame files in play order. */
  framePaths?: string[];
}

/** File extensions read as clips, by format. */
export const CLIP_EXTENSIONS: Readonly<Record<string, "gif" | "apng">> = {
  ".gif": "gif",
  ".png": "apng",
  ".apng": "apng",
};

/** Video extensions recognised but not decoded (reported instead of silently ignored). */
export const UNSUPPORTED_VIDEO_EXTENSIONS: readonly string[] = [
  ".mp4",
  ".m4v",
  ".mov",
  ".webm",
  ".mkv",
  ".avi",
];

/**
 * Compares names as people sort them: runs of digits compare as numbers, the rest by code unit
 * (`frame2.png` < `frame10.png`); equal numbers with different zero padding fall back to the
 * plain comparison so the order is total.
 *
 * @example
 * ```ts
 * ["f10.png", "f2.png", "f1.png"].sort(compareNatural); // ["f1.png", "f2.png", "f10.png"]
 * ```
 */
export function compareNatural(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [], pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    const nx = /^\d/.test(x), ny = /^\d/.test(y);
    if (nx && ny) {
      const d = BigInt(x) - BigInt(y);
      if (d !== 0n) return d < 0n ? -1 : 1;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  if (pa.length !== pb.length) return pa.length - pb.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function extensionOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot).toLowerCase() : "";
}

/** The PNG files of a folder in play order (hidden files skipped). */
async function framePathsOf(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && !e.name.startsWith(".") && extensionOf(e.name) === ".png") names.push(e.name);
  }
  return names.sort(compareNatural).map((n) => `${dir}/${n}`);
}

/**
 * Reads a clip's format, size and frame count; throws an error whose message is a one-line
 * reason (unsupported format, no frames, a broken header). `verify` also decodes every frame,
 * so that damage deep in a file is found now rather than when a sample reaches it.
 *
 * @example
 * ```ts
 * const info = await probeClip("clips/cat.gif");
 * const frames = await readClipFrames(info, [0, 4, 8]);
 * ```
 */
export async function probeClip(
  path: string,
  options: { verify?: boolean } = {},
): Promise<ClipInfo> {
  const stat = await Deno.stat(path);
  if (stat.isDirectory) {
    const framePaths = await framePathsOf(path);
    if (framePaths.length === 0) throw new Error("folder holds no PNG frames");
    const first = probePng(await Deno.readFile(framePaths[0]));
    const info: ClipInfo = {
      path,
      format: "png-frames",
      width: first.width,
      height: first.height,
      frameCount: framePaths.length,
      framePaths,
    };
    if (options.verify) await readClipFrames(info, framePaths.map((_, i) => i));
    return info;
  }
  const ext = extensionOf(path);
  if (UNSUPPORTED_VIDEO_EXTENSIONS.includes(ext)) {
    throw new Error(`${ext} video is not supported (convert it to GIF, APNG or PNG frames)`);
  }
  const format = CLIP_EXTENSIONS[ext];
  if (!format) throw new Error(`"${ext}" is not a clip format (GIF, APNG, PNG frames)`);
  const bytes = await Deno.readFile(path);
  const { width, height, frameCount } = format === "gif" ? probeGif(bytes) : probePng(bytes);
  if (options.verify) (format === "gif" ? decodeGif : decodeApng)(bytes);
  return { path, format, width, height, frameCount };
}

/**
 * Decodes the frames at `indices` (any order, repeats allowed) of a probed clip. GIF and APNG
 * frames build on the ones before, so the file is decoded up to the largest index; a PNG-frames
 * folder reads only the files asked for. Every frame must have the clip's size.
 *
 * @example
 * ```ts
 * const info = await probeClip("clips/walk"); // a folder of PNG frames
 * const [a, b] = await readClipFrames(info, [0, 3]);
 * ```
 */
export async function readClipFrames(
  info: ClipInfo,
  indices: readonly number[],
): Promise<Frame[]> {
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= info.frameCount) {
      throw new RangeError(`frame index ${i} outside 0..${info.frameCount - 1}`);
    }
  }
  let out: Frame[];
  if (info.format === "png-frames") {
    const paths = info.framePaths ?? await framePathsOf(info.path);
    const cache = new Map<number, Frame>();
    out = [];
    for (const i of indices) {
      if (!cache.has(i)) cache.set(i, decodePng(await Deno.readFile(paths[i])));
      out.push(cache.get(i)!);
    }
  } else {
    const maxFrames = Math.max(...indices) + 1;
    const bytes = await Deno.readFile(info.path);
    const all = (info.format === "gif" ? decodeGif : decodeApng)(bytes, { maxFrames }).frames;
    if (all.length < maxFrames) {
      throw new Error(`holds ${all.length} frames, expected ${maxFrames}`);
    }
    out = indices.map((i) => all[i]);
  }
  for (let k = 0; k < out.length; k++) {
    if (out[k].width !== info.width || out[k].height !== info.height) {
      throw new Error(
        `frame ${indices[k]} is ${out[k].width}x${out[k].height}, the clip is ` +
          `${info.width}x${info.height}`,
      );
    }
  }
  return out;
}
