/**
 * Training bench: seconds per step, samples and frames per second, peak GPU memory and the loss
 * trend of `createTrainer`'s step (forward, backward, gradient norm, AdamW).
 *
 *   deno task bench:train               # tiny fixture models (tests/fixtures/tiny), 1 x 8 frames
 *                                       # 64x64: well under a minute on lavapipe
 *   deno task bench:train --full        # SD1.5 + AnimateDiff v2 sizes, random weights written by
 *                                       # tools/random_sd15.ts: 16 frames 256x256 on a GPU (2 frames
 *                                       # 64x64 on a software adapter)
 *
 * Every step trains on the same batch (latents, noise and timesteps drawn once from a seeded
 * generator), so the loss should fall: the trend checks that the updates land. `--pixels` gives
 * pixels instead, so each step includes the frozen VAE encode. The full models are written once to
 * $ZOETROPE_FULL_SIZE_DIR (else ~/.cache/zoetrope/sd15-random), the folder the full-size test reads.
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { createTrainer, type TrainBatch } from "../engine/training/trainer.ts";
import { TorchGenerator } from "../engine/rng.ts";
import { tinyTokenizer } from "../weights/tiny.ts";

/** What the bench trains (the trainer's available targets). */
export type BenchTrainTarget = "motion" | "unet";

/** Parsed `deno task bench:train` options. */
export interface TrainBenchOptions {
  train: BenchTrainTarget;
  /** Full-size random SD1.5 + v2 (written by tools/random_sd15.ts) instead of the tiny fixture. */
  full: boolean;
  /** Base model (diffusers folder or single file); default: per `full`. */
  model?: string;
  /** Motion module to continue, or "new" for a new one; default: per `full`. */
  motionModule?: string;
  /** Frames per clip and square size in pixels; default: per `full` and the adapter. */
  frames?: number;
  size?: number;
  batch: number;
  /** Timed steps and untimed warm-up steps before them. */
  steps: number;
  warmup: number;
  /** Pixels through the frozen VAE encoder instead of latents. */
  pixels: boolean;
  /** The trainer's activation checkpointing (`gradientCheckpointing`). */
  checkpointing: boolean;
  lr: number;
  seed: number;
  /** Write the result as JSON to this file. */
  json?: string;
  help: boolean;
}

/** Usage text. */
export const TRAIN_USAGE = "usage: deno task bench:train [--full] [--train motion|unet] " +
  "[--model PATH] [--motion-module PATH|new] [--frames N] [--size N] [--batch N] [--steps N] " +
  "[--warmup N] [--pixels] [--checkpointing] [--lr X] [--seed N] [--json FILE]";

const TARGETS: readonly BenchTrainTarget[] = ["motion", "unet"];
/** Pixels per latent cell (the SD VAE's downsampling). */
const VAE_FACTOR = 8;
/** Gradient clipping of AnimateDiff's training configs (`max_grad_norm`). */
const MAX_GRAD_NORM = 1;
/** The batch's prompts, in turn (demo-style captions). */
const PROMPTS = ["a red circle moving left", "a blue square growing", "a green triangle moving up"];

/**
 * Parses bench arguments (`--flag value` or `--flag=value`); throws a one-line error on bad input.
 *
 * @example
 * ```ts
 * parseTrainArgs(["--train", "unet", "--steps=5"]); // { train: "unet", steps: 5, ... }
 * ```
 */
export function parseTrainArgs(args: readonly string[]): TrainBenchOptions {
  const out: TrainBenchOptions = {
    train: "motion",
    full: false,
    batch: 1,
    steps: 5,
    warmup: 1,
    pixels: false,
    checkpointing: false,
    lr: 1e-4,
    seed: 0,
    help: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const boolean = (): true => {
      if (eq >= 0) throw new Error(`bench:train: ${flag} takes no value. ${TRAIN_USAGE}`);
      return true;
    };
    const value = () => {
      const v = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") {
        throw new Error(`bench:train: ${flag} needs a value. ${TRAIN_USAGE}`);
      }
      return v;
    };
    const int = (min: number) => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) {
        throw new Error(`bench:train: ${flag} must be an integer >= ${min}, got "${v}"`);
      }
      return n;
    };
    if (flag === "--help" || flag === "-h") out.help = boolean();
    else if (flag === "--full") out.full = boolean();
    else if (flag === "--pixels") out.pixels = boolean();
    else if (flag === "--checkpointing") out.checkpointing = boolean();
    else if (flag === "--train") {
      const t = value();
      if (!TARGETS.includes(t as BenchTrainTarget)) {
        throw new Error(`bench:train: --train must be motion or unet, got "${t}"`);
      }
      out.train = t as BenchTrainTarget;
    } else if (flag === "--model") out.model = value();
    else if (flag === "--motion-module") out.motionModule = value();
    else if (flag === "--frames") out.frames = int(1);
    else if (flag === "--size") {
      out.size = int(VAE_FACTOR);
      if (out.size % VAE_FACTOR) {
        throw new Error(`bench:train: --size must be a multiple of ${VAE_FACTOR}, got ${out.size}`);
      }
    } else if (flag === "--batch") out.batch = int(1);
    else if (flag === "--steps") out.steps = int(1);
    else if (flag === "--warmup") out.warmup = int(0);
    else if (flag === "--seed") out.seed = int(0);
    else if (flag === "--lr") {
      const v = value();
      out.lr = Number(v);
      if (!(out.lr >= 0)) throw new Error(`bench:train: --lr must be a number >= 0, got "${v}"`);
    } else if (flag === "--json") out.json = value();
    else throw new Error(`bench:train: unknown argument "${arg}". ${TRAIN_USAGE}`);
  }
  if (out.train === "unet" && out.frames !== undefined && out.frames !== 1) {
    throw new Error(`bench:train: --train unet trains on images; --frames must be 1 or absent`);
  }
  if (out.train === "unet" && out.motionModule !== undefined) {
    throw new Error(`bench:train: --motion-module is only for --train motion`);
  }
  return out;
}

/**
 * Frames and size of the run: given, else 8 frames 64x64 for the tiny models, 16 frames 256x256
 * for the full ones on a GPU and 2 frames 64x64 on a software adapter (a full-size step there
 * takes minutes). `--train unet` trains on images: 1 frame.
 *
 * @example
 * ```ts
 * benchShape(parseTrainArgs(["--full"]), { isFallback: false }); // { frames: 16, size: 256, label: ... }
 * ```
 */
export function benchShape(
  o: Pick<TrainBenchOptions, "full" | "frames" | "size" | "train">,
  adapter: { isFallback: boolean },
): { frames: number; size: number; label: string } {
  const reduced = o.full && adapter.isFallback;
  const frames = o.train === "unet" ? 1 : o.frames ?? (o.full ? (reduced ? 2 : 16) : 8);
  const size = o.size ?? (o.full && !reduced ? 256 : 64);
  const given = o.frames !== undefined || o.size !== undefined;
  const label = reduced && !given ? "reduced shape: software adapter" : "";
  return { frames, size, label };
}

/** Timing and loss summary of the timed steps (pure; see {@link summarize}'s fields). */
export interface StepSummary {
  /** Median and mean seconds per timed step. */
  medianS: number;
  meanS: number;
  /** Throughput at the median step time (robust to a noisy software adapter). */
  samplesPerS: number;
  framesPerS: number;
  /** Least-squares slope of the loss per step over all steps (warm-up included). */
  lossSlope: number;
}

/**
 * Seconds per step, throughput and the loss trend.
 *
 * @example
 * ```ts
 * summarize([1000, 3000], [1, 0.5], { batch: 2, frames: 8 }); // medianS 2, samplesPerS 1, framesPerS 8, lossSlope -0.5
 * ```
 */
export function summarize(
  stepMs: readonly number[],
  losses: readonly number[],
  shape: { batch: number; frames: number },
): StepSummary {
  const s = [...stepMs].map((ms) => ms / 1000).sort((a, b) => a - b);
  const mid = s.length >> 1;
  const medianS = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  const meanS = s.reduce((a, b) => a + b, 0) / s.length;
  const n = losses.length;
  const xm = (n - 1) / 2, ym = losses.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0;
  losses.forEach((y, x) => {
    sxy += (x - xm) * (y - ym);
    sxx += (x - xm) ** 2;
  });
  return {
    medianS,
    meanS,
    samplesPerS: shape.batch / medianS,
    framesPerS: (shape.batch * shape.frames) / medianS,
    lossSlope: sxx > 0 ? sxy / sxx : 0,
  };
}

/** One fixed batch: latents (or pixels in [-1, 1]), noise and timesteps from `seed`. */
export function benchBatch(
  o: Pick<TrainBenchOptions, "train" | "batch" | "pixels" | "seed">,
  shape: { frames: number; size: number },
): TrainBatch {
  const g = new TorchGenerator(o.seed);
  const b = o.batch, h = shape.size / VAE_FACTOR;
  const video = o.train === "motion";
  const latentShape = video ? [b, 4, shape.frames, h, h] : [b, 4, h, h];
  const prompts = Array.from({ length: b }, (_, i) => PROMPTS[i % PROMPTS.length]);
  const timesteps = Array.from({ length: b }, () => Math.floor(g.nextDoubleUniform() * 1000));
  const noise = { shape: latentShape, data: g.randn(latentShape) };
  if (!o.pixels) {
    return {
      latents: { shape: latentShape, data: g.randn(latentShape) },
      noise,
      timesteps,
      prompts,
    };
  }
  const pixelShape = video
    ? [b, shape.frames, 3, shape.size, shape.size]
    : [b, 3, shape.size, shape.size];
  const pixels = g.randn(pixelShape).map((v) => Math.max(-1, Math.min(1, v / 2)));
  const posteriorShape = [b * shape.frames, 4, h, h];
  const posteriorNoise = { shape: posteriorShape, data: g.randn(posteriorShape) };
  return { pixels: { shape: pixelShape, data: pixels }, noise, timesteps, prompts, posteriorNoise };
}

const TINY = new URL("../tests/fixtures/tiny/", import.meta.url).pathname;
const TOOL = new URL("../tools/random_sd15.ts", import.meta.url).pathname;
const FULL_MODEL = "sd15-random.safetensors";
const FULL_MOTION = "mm_sd_v15_v2-random.safetensors";

function cacheDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${cache}/zoetrope`;
}

function fullSizeDir(): string {
  return Deno.env.get("ZOETROPE_FULL_SIZE_DIR") ?? `${cacheDir()}/sd15-random`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The full-size random model files in `dir`, written by tools/random_sd15.ts (into a scratch
 * folder, then moved, so an interrupted write is never mistaken for a model) when missing.
 */
async function ensureFullModels(dir: string): Promise<{ model: string; motion: string }> {
  const model = `${dir}/${FULL_MODEL}`, motion = `${dir}/${FULL_MOTION}`;
  if (await exists(model) && await exists(motion)) return { model, motion };
  const scratch = `${dir}/.writing-${Deno.pid}`;
  await Deno.mkdir(scratch, { recursive: true });
  console.log(`writing the full-size random models to ${dir} (once; ~6 GB)`);
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TOOL, "--out", scratch, "--layout", "single"],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!run.success) throw new Error(`tools/random_sd15.ts failed (exit ${run.code})`);
  for (const f of [FULL_MODEL, FULL_MOTION]) await Deno.rename(`${scratch}/${f}`, `${dir}/${f}`);
  await Deno.remove(scratch, { recursive: true });
  return { model, motion };
}

/** A tokenizer folder for a single-file model (which has none): the tiny BPE, as bench:e2e. */
async function tokenizerFor(model: string): Promise<string | undefined> {
  if ((await Deno.stat(model)).isDirectory) return undefined;
  const tok = `${cacheDir()}/tiny-tokenizer`;
  const files = tinyTokenizer();
  await Deno.mkdir(tok, { recursive: true });
  await Deno.writeTextFile(`${tok}/vocab.json`, files.vocabJson);
  await Deno.writeTextFile(`${tok}/merges.txt`, files.mergesTxt);
  return tok;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function main(): Promise<number> {
  let o: TrainBenchOptions;
  try {
    o = parseTrainArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (o.help) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const gpu = await Gpu.create();
  try {
    const { frames, size, label } = benchShape(o, gpu.info);
    const full = o.full && (!o.model || (o.train === "motion" && !o.motionModule))
      ? await ensureFullModels(fullSizeDir())
      : null;
    const model = o.model ?? full?.model ?? `${TINY}model`;
    const motionArg = o.motionModule ?? full?.motion ?? `${TINY}motion_adapter`;
    const motionModule = o.train === "motion" && motionArg !== "new" ? motionArg : undefined;
    const modelName = o.model ??
      (o.full ? "SD1.5 + AnimateDiff v2, random weights" : "tiny fixture");
    console.log(`adapter: ${gpu.info.name}${gpu.info.isFallback ? " (software)" : ""}`);
    console.log(
      `model: ${modelName}; train ${o.train}` +
        (o.train === "motion" ? ` (${motionModule ? "continued" : "new"} module)` : "") +
        `; ${o.batch} x ${frames} frame(s) ${size}x${size} from ${
          o.pixels ? "pixels" : "latents"
        }` +
        `; ${o.warmup} warm-up + ${o.steps} timed step(s), lr ${o.lr}, max grad norm ` +
        `${MAX_GRAD_NORM}${o.checkpointing ? ", activation checkpointing" : ""}` +
        (label ? `; ${label}` : ""),
    );

    const t0 = performance.now();
    const trainer = await createTrainer({
      model,
      motionModule,
      tokenizer: await tokenizerFor(model),
      train: o.train,
      optimizer: { lr: o.lr },
      maxGradNorm: MAX_GRAD_NORM,
      gradientCheckpointing: o.checkpointing,
      seed: o.seed,
      gpu,
    });
    const loadMs = performance.now() - t0;
    const batch = benchBatch(o, { frames, size });
    try {
      await gpu.sync();
      gpu.pool.trim();
      gpu.pool.resetPeak();
      const weightBytes = gpu.memoryStats().persistentBytes;
      console.log(
        `load        ${(loadMs / 1000).toFixed(2)} s; weights ${mib(weightBytes)}; ` +
          `${trainer.trainable.length} trainable tensors`,
      );
      const warmupMs: number[] = [], stepMs: number[] = [];
      const losses: number[] = [], gradNorms: number[] = [];
      for (let i = 0; i < o.warmup + o.steps; i++) {
        const ts = performance.now();
        const { loss, gradNorm } = await trainer.step(batch);
        const ms = performance.now() - ts;
        (i < o.warmup ? warmupMs : stepMs).push(ms);
        losses.push(loss);
        gradNorms.push(gradNorm);
        const what = i < o.warmup ? `warm-up ${i + 1}` : `step ${i - o.warmup + 1}`;
        console.log(
          `${what.padEnd(11)} ${(ms / 1000).toFixed(3)} s  loss ${loss.toFixed(6)}  ` +
            `grad norm ${gradNorm.toFixed(4)}`,
        );
      }
      const stats = gpu.memoryStats();
      const sum = summarize(stepMs, losses, { batch: o.batch, frames });
      const peakBytes = weightBytes + stats.peakAllocatedBytes;
      console.log(
        `s/step      ${sum.medianS.toFixed(3)} median, ${sum.meanS.toFixed(3)} mean; ` +
          `${sum.samplesPerS.toFixed(3)} samples/s, ${sum.framesPerS.toFixed(2)} frames/s`,
      );
      console.log(
        `GPU memory  peak ${mib(peakBytes)} = weights ${mib(weightBytes)} + pool high-water ` +
          `${mib(stats.peakAllocatedBytes)} (in use at most ${mib(stats.peakInUseBytes)}; ` +
          `${stats.evictions} evictions)`,
      );
      console.log(
        `loss        ${losses[0].toFixed(6)} -> ${losses[losses.length - 1].toFixed(6)} ` +
          `(slope ${sum.lossSlope.toExponential(2)} per step, same batch every step)`,
      );
      if (o.json) {
        const result = {
          adapter: gpu.info.name,
          software: gpu.info.isFallback,
          model: modelName,
          train: o.train,
          input: o.pixels ? "pixels" : "latents",
          checkpointing: o.checkpointing,
          batch: o.batch,
          frames,
          size,
          lr: o.lr,
          seed: o.seed,
          loadMs,
          warmupMs,
          stepMs,
          ...sum,
          losses,
          gradNorms,
          weightBytes,
          poolPeakBytes: stats.peakAllocatedBytes,
          poolPeakInUseBytes: stats.peakInUseBytes,
          peakBytes,
          evictions: stats.evictions,
        };
        await Deno.writeTextFile(o.json, JSON.stringify(result, null, 2) + "\n");
        console.log(`wrote ${o.json}`);
      }
    } finally {
      trainer.dispose();
    }
  } finally {
    gpu.destroy();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
