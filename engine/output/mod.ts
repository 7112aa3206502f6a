/**
 * Animation outputs: GIF (one global palette), APNG and PNG (lossless), a zip of PNG frames,
 * MP4 (H.264) and WebM (VP8), plus {@link encodeAnimation} which picks one by name.
 * @module
 */

import { encodeApng } from "./apng.ts";
import { checkFps, checkLoop, type Frame } from "./frame.ts";
import { encodeFramesZip } from "./frames_zip.ts";
import { encodeGif } from "./gif.ts";
import { encodeVideo, type VideoFormat } from "./video.ts";

export { type Frame, MAX_FRAME_SIDE, MAX_LOOP } from "./frame.ts";
export { encodeGif, gifDelaysCs, type GifOptions } from "./gif.ts";
export { encodePng } from "./png.ts";
export { apngDelay, type ApngOptions, encodeApng } from "./apng.ts";
export { encodeFramesZip, frameNames, type FramesZipOptions } from "./frames_zip.ts";
export { encodeVideo, MAX_VIDEO_SIDE, type VideoFormat, type VideoOptions } from "./video.ts";

/**
 * Output formats by name, as the CLI and HTTP API spell them.
 *
 * @example
 * ```ts
 * import { type AnimationFormat, encodeAnimation, type Frame } from "@zoetrope/animatediff";
 *
 * const frames: Frame[] = [{ data: new Uint8ClampedArray(4 * 4 * 4), width: 4, height: 4 }];
 * const format: AnimationFormat = "png-zip";
 * const { bytes, extension } = encodeAnimation(frames, format, { fps: 8 });
 * ```
 */
export type AnimationFormat = ImageAnimationFormat | VideoFormat;

/**
 * The formats encoded synchronously (GIF, APNG, PNG zip); MP4 and WebM load a WebAssembly encoder.
 *
 * @example
 * ```ts
 * import { encodeAnimation, type ImageAnimationFormat } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const format: ImageAnimationFormat = "gif";
 * const bytes: Uint8Array = encodeAnimation([f], format, { fps: 8 }).bytes; // no await needed
 * ```
 */
export type ImageAnimationFormat = "gif" | "apng" | "png-zip";

/**
 * Every {@link AnimationFormat}, for validating user input.
 *
 * @example
 * ```ts
 * import { ANIMATION_FORMATS, type AnimationFormat } from "@zoetrope/animatediff";
 *
 * const input: string = "gif";
 * const format = ANIMATION_FORMATS.find((f) => f === input) as AnimationFormat | undefined;
 * ```
 */
export const ANIMATION_FORMATS: readonly AnimationFormat[] = [
  "gif",
  "apng",
  "png-zip",
  "mp4",
  "webm",
];

/**
 * Options of {@link encodeAnimation}.
 *
 * @example
 * ```ts
 * import { type AnimationOptions, encodeAnimation } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const options: AnimationOptions = { fps: 12, loop: 1 }; // play once
 * const gif = encodeAnimation([f, f], "gif", options).bytes;
 * ```
 */
export interface AnimationOptions {
  /** Frames per second (finite, > 0). Checked for every format, though png-zip stores none. */
  fps: number;
  /** How many times the animation plays; 0 = forever (default). Ignored by png-zip, mp4, webm. */
  loop?: number;
  /** mp4 and webm: 0 (smallest) to 1 (best), default 0.85 (see {@link encodeVideo}). */
  quality?: number;
}

/**
 * An encoded animation and how to serve or save it.
 *
 * @example
 * ```ts
 * import { encodeAnimation, type EncodedAnimation } from "@zoetrope/animatediff";
 *
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const out: EncodedAnimation = encodeAnimation([f], "gif", { fps: 8 });
 * await Deno.writeFile(`animation${out.extension}`, out.bytes); // out.contentType: "image/gif"
 * ```
 */
export interface EncodedAnimation {
  /** The file's bytes. */
  bytes: Uint8Array;
  /** MIME type: `image/gif`, `image/apng`, `application/zip`, `video/mp4` or `video/webm`. */
  contentType: string;
  /** File extension with its dot: `.gif`, `.png`, `.zip`, `.mp4` or `.webm`. */
  extension: string;
}

/**
 * Encodes frames in the named format: `gif` ({@link encodeGif}), `apng` ({@link encodeApng}) or
 * `png-zip` ({@link encodeFramesZip}) at once; `mp4` and `webm` ({@link encodeVideo}) as a
 * promise. `await encodeAnimation(...)` works for every format.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 * const { bytes, contentType, extension } = encodeAnimation([f, f], "apng", { fps: 8 });
 * // contentType "image/apng", extension ".png"
 * const mp4 = await encodeAnimation([f, f], "mp4", { fps: 8 }); // contentType "video/mp4"
 * ```
 */
export function encodeAnimation(
  frames: readonly Frame[],
  format: ImageAnimationFormat,
  options: AnimationOptions,
): EncodedAnimation;
/** MP4 or WebM: resolves once the WebAssembly encoder has run. */
export function encodeAnimation(
  frames: readonly Frame[],
  format: VideoFormat,
  options: AnimationOptions,
): Promise<EncodedAnimation>;
/** A format only known at run time: `await` the result. */
export function encodeAnimation(
  frames: readonly Frame[],
  format: AnimationFormat,
  options: AnimationOptions,
): EncodedAnimation | Promise<EncodedAnimation>;
export function encodeAnimation(
  frames: readonly Frame[],
  format: AnimationFormat,
  options: AnimationOptions,
): EncodedAnimation | Promise<EncodedAnimation> {
  const { fps, loop = 0, quality } = options ?? {};
  switch (format) {
    case "gif":
      return {
        bytes: encodeGif(frames, { fps, loop }),
        contentType: "image/gif",
        extension: ".gif",
      };
    case "apng":
      return {
        bytes: encodeApng(frames, { fps, loop }),
        contentType: "image/apng",
        extension: ".png",
      };
    case "png-zip":
      checkFps(fps, "encodeAnimation");
      checkLoop(loop, "encodeAnimation");
      return {
        bytes: encodeFramesZip(frames),
        contentType: "application/zip",
        extension: ".zip",
      };
    case "mp4":
    case "webm":
      checkLoop(loop, "encodeAnimation");
      return encodeVideo(frames, format, { fps, quality }).then((bytes) => ({
        bytes,
        contentType: `video/${format}`,
        extension: `.${format}`,
      }));
    default:
      throw new RangeError(
        `encodeAnimation: expected format to be one of ${ANIMATION_FORMATS.join(", ")}, ` +
          `got "${format}"`,
      );
  }
}
