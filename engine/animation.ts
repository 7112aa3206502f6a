/**
 * The result of a generation: RGBA frames with their playback rate, seed and timings, and the
 * encoders that write them.
 * @module
 */

import { encodeAnimation } from "./output/mod.ts";
import type { Frame } from "./output/frame.ts";

/**
 * A generated animation.
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const request = { prompt: "waves", frames: 4, width: 32, height: 32, steps: 2 };
 * const anim = await pipe.generate(request);
 * console.log(anim.frames.length, anim.width, anim.height, anim.fps, anim.seed);
 * await Deno.writeFile("waves.gif", anim.toGif());
 * pipe.dispose();
 * ```
 */
export class Animation {
  /** RGBA frames. */
  readonly frames: Frame[];
  /** Frame width in pixels. */
  readonly width: number;
  /** Frame height in pixels. */
  readonly height: number;
  /** Playback rate in frames per second. */
  readonly fps: number;
  /** The seed used (bigint for seeds above 2^53). */
  readonly seed: number | bigint;
  /** Milliseconds per stage ("encode", "denoise", "decode", "total"). */
  readonly timings: Record<string, number>;

  /** Wraps decoded frames; the pipeline builds these, users rarely need to. */
  constructor(
    init: { frames: Frame[]; fps: number; seed: number | bigint; timings: Record<string, number> },
  ) {
    this.frames = init.frames;
    this.width = init.frames[0]?.width ?? 0;
    this.height = init.frames[0]?.height ?? 0;
    this.fps = init.fps;
    this.seed = init.seed;
    this.timings = init.timings;
  }

  /** Animated GIF with one palette for all frames; `loop` 0 = forever. */
  toGif(options: { loop?: number } = {}): Uint8Array {
    return encodeAnimation(this.frames, "gif", { fps: this.fps, loop: options.loop ?? 0 }).bytes;
  }

  /** Lossless animated PNG. */
  toApng(options: { loop?: number } = {}): Uint8Array {
    return encodeAnimation(this.frames, "apng", { fps: this.fps, loop: options.loop ?? 0 }).bytes;
  }

  /** H.264 MP4 (`quality` 0-1, default 0.85), for players and sites that take video. */
  async toMp4(options: { quality?: number } = {}): Promise<Uint8Array> {
    return (await encodeAnimation(this.frames, "mp4", { fps: this.fps, ...options })).bytes;
  }

  /** VP8 WebM (`quality` 0-1, default 0.85). */
  async toWebm(options: { quality?: number } = {}): Promise<Uint8Array> {
    return (await encodeAnimation(this.frames, "webm", { fps: this.fps, ...options })).bytes;
  }

  /** A zip of `frame_0000.png`, ... */
  toPngZip(): Uint8Array {
    return encodeAnimation(this.frames, "png-zip", { fps: this.fps, loop: 0 }).bytes;
  }
}
