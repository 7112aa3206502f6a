/**
 * A zip of one PNG per frame (`frame_0000.png`, `frame_0001.png`, ...), entries stored rather
 * than deflated since PNG data is already compressed.
 * @module
 */

import { type Zippable, zipSync } from "npm:fflate@^0.8.3";
import { checkFrames, type Frame } from "./frame.ts";
import { encodePng } from "./png.ts";

/**
 * Options of {@link encodeFramesZip}.
 *
 * @example
 * ```ts
 * import { encodeFramesZip } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const zip = encodeFramesZip([f, f]); // frame_0000.png, frame_0001.png
 * ```
 */
export interface FramesZipOptions {
  /** Start of every entry name (default `"frame_"`); may hold a folder such as `"clip/f_"`. */
  prefix?: string;
  /**
   * Modification time written for every entry. Defaults to 1980-01-01 00:00 (the earliest
   * time zip can store), which keeps the archive byte-for-byte reproducible.
   */
  mtime?: Date;
}

/** Digits in frame numbers; more are used when there are more than 10,000 frames. */
const MIN_DIGITS = 4;

/**
 * The entry names {@link encodeFramesZip} writes for `count` frames: `prefix` + zero-padded
 * frame number (at least 4 digits) + `.png`.
 *
 * @example
 * ```ts
 * frameNames(2); // ["frame_0000.png", "frame_0001.png"]
 * ```
 */
export function frameNames(count: number, prefix = "frame_"): string[] {
  const digits = Math.max(MIN_DIGITS, String(Math.max(count - 1, 0)).length);
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(digits, "0")}.png`);
}

function checkPrefix(prefix: string): void {
  if (typeof prefix !== "string") {
    throw new TypeError(`encodeFramesZip: expected prefix to be a string, got ${typeof prefix}`);
  }
  const bad = prefix.startsWith("/") || prefix.includes("\\") ||
    prefix.split("/").some((part) => part === "..") ||
    [...prefix].some((ch) => ch.charCodeAt(0) < 0x20);
  if (bad) {
    throw new RangeError(
      `encodeFramesZip: prefix "${prefix}" must be a relative name without "..", "\\" or ` +
        `control characters`,
    );
  }
}

/**
 * Encodes every frame as a PNG ({@link encodePng}) and stores them, in frame order, in a zip.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(16 * 16 * 4), width: 16, height: 16 };
 * const zip = encodeFramesZip([f, f]); // frame_0000.png, frame_0001.png
 * ```
 */
export function encodeFramesZip(
  frames: readonly Frame[],
  options: FramesZipOptions = {},
): Uint8Array {
  const { prefix = "frame_", mtime = new Date(1980, 0, 1) } = options;
  checkFrames(frames, "encodeFramesZip");
  checkPrefix(prefix);
  const names = frameNames(frames.length, prefix);
  const entries: Zippable = {};
  for (let i = 0; i < frames.length; i++) {
    entries[names[i]] = [encodePng(frames[i]), { level: 0, mtime }];
  }
  return zipSync(entries, { level: 0, mtime });
}
