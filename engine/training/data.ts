/**
 * Training data: a folder of clips with captions, sampled as the original AnimateDiff
 * `WebVid10M` dataset and `train.py` sample it, with every random draw taken from a
 * {@link TorchGenerator} so that one seed gives the same batches run after run.
 *
 * - Clips: GIF, APNG / PNG files and folders of PNG frames (engine/input/clip.ts).
 * - Captions: a WebVid-style CSV (`videoid`, `name`; the clip is `<videoid>.<ext>` or a folder
 *   `<videoid>`) or, without a CSV, a sidecar `<clip stem>.txt` beside each clip.
 * - Bad data (no caption, unreadable, too few frames, no clip for a CSV row) is reported once
 *   through `onSkip(path, reason)` and skipped, at open time or when a sample first meets it.
 * - Order: an epoch visits every clip once in an order shuffled from the generator (as
 *   `DistributedSampler(shuffle=True)`); the cursor can be saved and restored for resuming.
 * - Draws per sample, in order: the start frame (`randint(0, length - span)` as
 *   `torch.randint`: `uint32 % range`), then the flip (`torch.rand(1) < 0.5`) when flips are on.
 *   After all samples of a batch, one `torch.rand(1)` per sample for caption dropout when
 *   `cfgRandomNullTextRatio > 0` (dropped when the draw is `< ratio`).
 * @module
 */

import { type ClipInfo, probeClip, readClipFrames } from "../input/clip.ts";
import { captionsFromCsv, captionsFromSidecars } from "./captions.ts";
import type { TorchGenerator } from "../rng.ts";
import { clipSpan, sampleFrameIndices, transformFrames } from "./clip_transform.ts";
import type { TrainTensor } from "./targets.ts";

/**
 * Options of {@link ClipDataset.open}; names follow the original `train_data` keys.
 *
 * @example
 * ```ts
 * const options: ClipDatasetOptions = {
 *   videoFolder: "data/clips", csvPath: "data/captions.csv",
 *   sampleSize: 256, sampleStride: 4, sampleNFrames: 16, cfgRandomNullTextRatio: 0.1,
 * };
 * ```
 */
export interface ClipDatasetOptions {
  /** The folder of clips (`video_folder`). */
  videoFolder: string;
  /** WebVid-style CSV with `videoid` and `name` columns (`csv_path`); omitted: sidecar .txt. */
  csvPath?: string;
  /** Crop size: `n` for n x n or `[height, width]` (`sample_size`, default 256). */
  sampleSize?: number | readonly [number, number];
  /** Frames between sampled frames (`sample_stride`, default 4). */
  sampleStride?: number;
  /** Frames per sample (`sample_n_frames`, default 16). */
  sampleNFrames?: number;
  /** One frame per sample, pixels `[b, 3, H, W]` (unet / vae training; default false). */
  isImage?: boolean;
  /** Random horizontal flips as the original's transforms (default true). */
  horizontalFlip?: boolean;
  /** Probability that a caption becomes "" (`cfg_random_null_text_ratio`, default 0). */
  cfgRandomNullTextRatio?: number;
  /** Clips with fewer frames are skipped (default `sampleNFrames`; 1 in image mode). */
  minFrames?: number;
  /** Decode every clip fully at open time, so that no damage is found mid-run (default false). */
  verify?: boolean;
  /** Called once per skipped clip with its path and a one-line reason. */
  onSkip?: (path: string, reason: string) => void;
}

/**
 * One usable clip.
 *
 * @example
 * ```ts
 * const clip: DatasetClip = dataset.clips[0];
 * console.log(clip.info.path, clip.caption);
 * ```
 */
export interface DatasetClip {
  /** Where and how it is stored, its size and frame count. */
  info: ClipInfo;
  /** Its caption (never empty). */
  caption: string;
}

/**
 * One drawn sample: which clip, frames and flip (for logs and tests).
 *
 * @example
 * ```ts
 * const { clip, frames, flipped }: SampleInfo = (await dataset.batch(1, g)).samples[0];
 * ```
 */
export interface SampleInfo {
  /** Index into {@link ClipDataset.clips}. */
  clip: number;
  /** The clip's frame indices used. */
  frames: number[];
  /** Whether the sample was mirrored. */
  flipped: boolean;
}

/**
 * A batch for `Trainer.step` (a `TrainBatch`): pixels and prompts, plus what was drawn.
 *
 * @example
 * ```ts
 * const { pixels, prompts } = await dataset.batch(2, generator);
 * await trainer.step({ pixels, prompts });
 * ```
 */
export interface DatasetBatch {
  /** Motion: `[b, frames, 3, H, W]`; image mode: `[b, 3, H, W]`; in [-1, 1]. */
  pixels: TrainTensor;
  /** One caption per sample, "" where dropped. */
  prompts: string[];
  /** What each sample drew. */
  samples: SampleInfo[];
}

/**
 * Where the epoch order stands: save it with a checkpoint, give it back to
 * {@link ClipDataset.restore} to resume the exact sequence.
 *
 * @example
 * ```ts
 * const saved: DatasetCursor = dataset.cursor();
 * ```
 */
export interface DatasetCursor {
  /** Completed epochs. */
  epoch: number;
  /** The current epoch's clip order. */
  order: number[];
  /** Position of the next clip in `order`. */
  next: number;
  /**
   * Clips found unreadable so far (never drawn again): a resumed run skips them too, so it
   * draws exactly as the run that stopped. Absent in cursors of older checkpoints.
   */
  unreadable?: number[];
}

const DEFAULTS = { sampleSize: 256, sampleStride: 4, sampleNFrames: 16 };

function messageOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/**
 * A folder of captioned clips sampled as the original AnimateDiff training (see the module
 * doc). Open with {@link ClipDataset.open}; draw batches with {@link ClipDataset.batch}.
 *
 * @example
 * ```ts
 * import { TorchGenerator } from "../rng.ts";
 *
 * const dataset = await ClipDataset.open({
 *   videoFolder: "data/clips",
 *   sampleSize: 256, sampleStride: 4, sampleNFrames: 16,
 *   onSkip: (path, reason) => console.warn(`skipped ${path}: ${reason}`),
 * });
 * const g = new TorchGenerator(42);
 * const { pixels, prompts } = await dataset.batch(2, g); // pixels [2, 16, 3, 256, 256]
 * ```
 */
export class ClipDataset {
  /** The usable clips, in a fixed order (CSV rows, or folder entries sorted by name). */
  readonly clips: readonly DatasetClip[];
  /** Crop size `[height, width]`. */
  readonly size: readonly [number, number];
  /** Frames per sample (1 in image mode). */
  readonly nFrames: number;
  /** Frames between sampled frames. */
  readonly stride: number;
  /** One frame per sample, pixels `[b, 3, H, W]`. */
  readonly isImage: boolean;
  #flip: boolean;
  #nullRatio: number;
  #onSkip: (path: string, reason: string) => void;
  #bad = new Set<number>();
  #cursor: DatasetCursor = { epoch: 0, order: [], next: 0 };

  private constructor(clips: DatasetClip[], options: ClipDatasetOptions) {
    this.clips = clips;
    const size = options.sampleSize ?? DEFAULTS.sampleSize;
    this.size = typeof size === "number" ? [size, size] : [size[0], size[1]];
    this.isImage = options.isImage ?? false;
    this.nFrames = this.isImage ? 1 : options.sampleNFrames ?? DEFAULTS.sampleNFrames;
    this.stride = options.sampleStride ?? DEFAULTS.sampleStride;
    this.#flip = options.horizontalFlip ?? true;
    this.#nullRatio = options.cfgRandomNullTextRatio ?? 0;
    this.#onSkip = options.onSkip ?? (() => {});
  }

  /**
   * Finds the clips and captions, probes every clip (size, frame count; `verify`: decodes it)
   * and reports each unusable one once through `onSkip`. Throws when the options are invalid,
   * the CSV lacks its columns, or no usable clip is left.
   *
   * @example
   * ```ts
   * const skipped: string[] = [];
   * const ds = await ClipDataset.open({
   *   videoFolder: "clips", csvPath: "clips.csv", sampleNFrames: 8,
   *   onSkip: (path, reason) => skipped.push(`${path}: ${reason}`),
   * });
   * ```
   */
  static async open(options: ClipDatasetOptions): Promise<ClipDataset> {
    checkOptions(options);
    const reported = new Set<string>();
    const report = options.onSkip ?? (() => {});
    const onSkip = (path: string, reason: string) => {
      if (!reported.has(path)) reported.add(path), report(path, reason);
    };
    const folder = options.videoFolder.replace(/\/+$/, "");
    const candidates = options.csvPath
      ? await captionsFromCsv(folder, options.csvPath, onSkip)
      : await captionsFromSidecars(folder, onSkip);
    const minFrames = options.minFrames ??
      (options.isImage ? 1 : options.sampleNFrames ?? DEFAULTS.sampleNFrames);
    const clips: DatasetClip[] = [];
    for (const { path, caption } of candidates) {
      try {
        const info = await probeClip(path, { verify: options.verify });
        if (info.frameCount < minFrames) {
          onSkip(path, `${info.frameCount} frames, at least ${minFrames} needed`);
        } else clips.push({ info, caption });
      } catch (e) {
        onSkip(path, `unreadable: ${messageOf(e)}`);
      }
    }
    if (clips.length === 0) {
      throw new Error(
        `ClipDataset: no usable clip in ${folder}` +
          (options.csvPath ? ` for ${options.csvPath}` : "") +
          " (clips: .gif, .png/.apng or folders of PNG frames, each with a caption)",
      );
    }
    return new ClipDataset(clips, { ...options, onSkip });
  }

  /** How many usable clips the dataset holds. */
  get length(): number {
    return this.clips.length;
  }

  /** A copy of the epoch cursor (save it with a checkpoint). */
  cursor(): DatasetCursor {
    return { ...this.#cursor, order: [...this.#cursor.order], unreadable: [...this.#bad] };
  }

  /** Continues from a saved cursor (the generator state must be restored alongside). */
  restore(cursor: DatasetCursor): void {
    const unreadable = cursor.unreadable ?? [];
    if (
      [...cursor.order, ...unreadable].some((i) =>
        !Number.isInteger(i) || i < 0 || i >= this.clips.length
      )
    ) {
      throw new RangeError(
        `ClipDataset.restore: cursor names clips outside 0..${this.clips.length - 1}`,
      );
    }
    const { epoch, order, next } = cursor;
    this.#cursor = { epoch, order: [...order], next };
    this.#bad = new Set(unreadable);
  }

  /** The next clip of the epoch order, shuffling a new epoch (randperm) when one ends. */
  #nextClip(generator: TorchGenerator): number {
    for (;;) {
      const c = this.#cursor;
      if (c.next >= c.order.length) {
        if (this.#bad.size === this.clips.length) {
          throw new Error("ClipDataset: every clip turned out unreadable");
        }
        if (c.order.length > 0) c.epoch++;
        c.order = shuffledRange(this.clips.length, generator);
        c.next = 0;
      }
      const clip = c.order[c.next++];
      if (!this.#bad.has(clip)) return clip;
    }
  }

  /**
   * Draws `b` samples (see the module doc for the order of draws) and returns them as one
   * batch. A clip that fails to decode is reported once, never drawn again, and replaced by the
   * next clip of the epoch.
   *
   * @example
   * ```ts
   * const g = new TorchGenerator(0);
   * const batch = await dataset.batch(4, g);
   * batch.pixels.shape; // [4, 16, 3, 256, 256]
   * ```
   */
  async batch(b: number, generator: TorchGenerator): Promise<DatasetBatch> {
    if (!Number.isInteger(b) || b < 1) {
      throw new RangeError(`ClipDataset.batch: expected a batch size >= 1, got ${b}`);
    }
    const [h, w] = this.size;
    const perSample = this.nFrames * 3 * h * w;
    const data = new Float32Array(b * perSample);
    const samples: SampleInfo[] = [];
    const prompts: string[] = [];
    while (samples.length < b) {
      const clip = this.#nextClip(generator);
      const { info, caption } = this.clips[clip];
      const sampling = { nFrames: this.nFrames, stride: this.stride };
      const span = this.isImage ? 1 : clipSpan(info.frameCount, sampling);
      const start = randint(generator, info.frameCount - span + 1);
      const frames = this.isImage ? [start] : sampleFrameIndices(info.frameCount, start, sampling);
      const flipped = this.#flip && generator.nextFloatUniform() < 0.5;
      try {
        const pixels = await readClipFrames(info, frames);
        transformFrames(pixels, data, samples.length * perSample, {
          size: this.size,
          flip: flipped,
        });
      } catch (e) {
        this.#bad.add(clip);
        this.#onSkip(info.path, `unreadable: ${messageOf(e)}`);
        continue;
      }
      samples.push({ clip, frames, flipped });
      prompts.push(caption);
    }
    if (this.#nullRatio > 0) {
      for (let i = 0; i < b; i++) {
        if (generator.nextFloatUniform() < this.#nullRatio) prompts[i] = "";
      }
    }
    const shape = this.isImage ? [b, 3, h, w] : [b, this.nFrames, 3, h, w];
    return { pixels: { shape, data }, prompts, samples };
  }
}

/** `torch.randint(0, range)` on CPU: one 32-bit draw modulo the range. */
function randint(generator: TorchGenerator, range: number): number {
  return generator.nextUint32() % range;
}

/** A random permutation of 0..n-1 as torch's CPU `randperm` (swap i with i + random % (n - i)). */
function shuffledRange(n: number, generator: TorchGenerator): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n - 1; i++) {
    const z = generator.nextUint32() % (n - i);
    [order[i], order[i + z]] = [order[i + z], order[i]];
  }
  return order;
}

function checkOptions(o: ClipDatasetOptions): void {
  const positive = (name: string, v: unknown) => {
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1)) {
      throw new RangeError(`ClipDataset: expected ${name} to be an integer >= 1, got ${v}`);
    }
  };
  if (typeof o?.videoFolder !== "string" || o.videoFolder === "") {
    throw new TypeError("ClipDataset: expected videoFolder to name a folder of clips");
  }
  const size = o.sampleSize;
  if (Array.isArray(size)) {
    if (size.length !== 2) throw new RangeError(`ClipDataset: sampleSize [h, w], got [${size}]`);
    size.forEach((v, i) => positive(`sampleSize[${i}]`, v));
  } else positive("sampleSize", size);
  positive("sampleStride", o.sampleStride);
  positive("sampleNFrames", o.sampleNFrames);
  positive("minFrames", o.minFrames);
  const r = o.cfgRandomNullTextRatio;
  if (r !== undefined && !(r >= 0 && r <= 1)) {
    throw new RangeError(`ClipDataset: expected cfgRandomNullTextRatio in [0, 1], got ${r}`);
  }
}
