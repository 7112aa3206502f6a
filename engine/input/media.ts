/**
 * Video and image inputs from bytes or files: GIF, PNG / APNG (by their signatures), or a
 * folder of PNG frames; every frame RGBA at the clip's size. Errors are one-line reasons.
 * @module
 */

import type { Frame } from "../output/frame.ts";
import { decodeGif } from "./gif.ts";
import { decodeApng } from "./png.ts";
import { probeClip, readClipFrames } from "./clip.ts";

const GIF = [0x47, 0x49, 0x46, 0x38]; // "GIF8"
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Most frames an input video may have. */
export const MAX_INPUT_FRAMES = 512;

/**
 * The frames of a GIF, APNG or PNG file's bytes (a still PNG is one frame).
 *
 * @example
 * ```ts
 * const frames = decodeMedia(await Deno.readFile("walk.gif"));
 * ```
 */
export function decodeMedia(bytes: Uint8Array): Frame[] {
  const starts = (sig: number[]) => sig.every((b, i) => bytes[i] === b);
  const options = { maxFrames: MAX_INPUT_FRAMES + 1 };
  let frames: Frame[];
  if (starts(GIF)) frames = decodeGif(bytes, options).frames;
  else if (starts(PNG)) frames = decodeApng(bytes, options).frames;
  else {throw new Error(
      "not a GIF or PNG/APNG file (MP4 and other videos: convert to GIF or PNG frames)",
    );}
  if (frames.length === 0) throw new Error("holds no frames");
  if (frames.length > MAX_INPUT_FRAMES) {
    throw new Error(`holds more than ${MAX_INPUT_FRAMES} frames`);
  }
  return frames;
}

/**
 * Every frame of a GIF, APNG or PNG file or a folder of PNG frames, in order.
 *
 * @example
 * ```ts
 * const frames = await readMedia("clips/walk"); // frame_0000.png, frame_0001.png, ...
 * ```
 */
export async function readMedia(path: string): Promise<Frame[]> {
  const info = await Deno.stat(path).catch(() => null);
  if (!info) throw new Error(`${path} does not exist`);
  if (!info.isDirectory) return decodeMedia(await Deno.readFile(path));
  const clip = await probeClip(path);
  if (clip.frameCount > MAX_INPUT_FRAMES) {
    throw new Error(`holds more than ${MAX_INPUT_FRAMES} frames`);
  }
  return await readClipFrames(clip, Array.from({ length: clip.frameCount }, (_, i) => i));
}
