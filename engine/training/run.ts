/**
 * A training run as `deno task train --config FILE.yaml` runs it: the original AnimateDiff
 * training YAML ({@link parseTrainConfig}) and the loop ({@link runTraining}): batches from a
 * {@link ClipDataset}, `Trainer.step`, checkpoints that resume exactly, validation GIFs through the
 * inference pipeline, and a loss curve. Progress goes through `onEvent`; nothing is printed.
 *
 * What a run writes under `output_dir`:
 * - `checkpoints/step-000100/`: `trainer.safetensors` (weights, AdamW moments, counters, the
 *   trainer's generator), `data.json` (the data generator's state and the epoch cursor) and the
 *   trained weights as the final file (below), written to a `.partial` folder and renamed.
 * - `samples/step-000100/0-<prompt>.gif`: one validation GIF per prompt.
 * - `loss.csv` (`step,loss,grad_norm,lr,seconds`, seconds = training time so far) and `loss.png`.
 * - the final weights: `motion_module.safetensors` (original AnimateDiff keys), `motion_lora.safetensors`
 *   (original MotionLoRA keys), `unet.safetensors` or `vae.safetensors`.
 * @module
 */

import { join } from "node:path";
import { Gpu } from "../../kernels/gpu/device.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { TorchGenerator } from "../rng.ts";
import { loadPipeline } from "../pipeline.ts";
import { promptSlug } from "../prompt_config.ts";
import { encodeGif } from "../output/gif.ts";
import { createTrainer, type Trainer, type TrainTarget } from "./trainer.ts";
import { lrFactor } from "./parameters.ts";
import { ClipDataset, type DatasetCursor } from "./data.ts";

export type { TrainTarget } from "./trainer.ts";
export { parseTrainConfig, type TrainConfig } from "./train_config.ts";
export { encodeLossPlot, type LossRow, smoothed } from "./loss_log.ts";
import type { TrainConfig } from "./train_config.ts";
import {
  csvRow,
  encodeLossPlot,
  LOSS_HEADER,
  type LossRow,
  readLossCsv,
  smoothed,
  SMOOTHING,
} from "./loss_log.ts";

/**
 * What a run reports through `onEvent`.
 *
 * @example
 * ```ts
 * const onEvent = (e: TrainEvent) => {
 *   if (e.type === "step") console.log(`${e.step}/${e.total} loss ${e.smoothedLoss.toFixed(4)}`);
 * };
 * ```
 */
export type TrainEvent =
  | { type: "note"; message: string }
  | { type: "bad-data"; path: string; reason: string }
  | {
    type: "step";
    step: number;
    total: number;
    loss: number;
    smoothedLoss: number;
    gradNorm: number;
    lr: number;
    /** Seconds of this step. */
    seconds: number;
    itPerSec: number;
    etaMs: number;
    skipped: boolean;
  }
  | { type: "checkpoint"; step: number; dir: string; reason: "interval" | "interrupt" }
  | { type: "validation-start"; step: number; prompts: number }
  | { type: "validation"; step: number; files: string[] };

/**
 * Options of {@link runTraining}.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const options: RunOptions = { onEvent: (e) => {}, signal: stop.signal };
 * ```
 */
export interface RunOptions {
  /** Progress, checkpoints, validation samples, skipped data, notes. */
  onEvent?: (e: TrainEvent) => void;
  /** Aborting stops after the current step and writes a checkpoint. */
  signal?: AbortSignal;
  /** Run on this Gpu (default: a new one). */
  gpu?: Gpu;
}

/**
 * What a run did.
 *
 * @example
 * ```ts
 * const result: TrainResult = await runTraining(config);
 * console.log(result.weights, result.seconds);
 * ```
 */
export interface TrainResult {
  /** The last step taken. */
  steps: number;
  /** The final weights file (null when interrupted: the checkpoint holds them). */
  weights: string | null;
  /** Stopped by the signal (a checkpoint was written). */
  interrupted: boolean;
  /** The folders of the checkpoints written. */
  checkpoints: string[];
  /** Validation GIFs written. */
  samples: string[];
  /** The step a resumed run started from (0: a new run). */
  resumedFrom: number;
  /** Training time in seconds, this run (validation and checkpoints included). */
  seconds: number;
  /** The last step's loss. */
  loss: number;
  /** The last smoothed loss. */
  smoothedLoss: number;
  /** The loss.csv file. */
  lossCsv: string;
  /** The loss.png file. */
  lossPlot: string;
}

/** The trained weights' file name per target. */
const WEIGHTS_FILE: Record<TrainTarget, string> = {
  motion: "motion_module.safetensors",
  "motion-lora": "motion_lora.safetensors",
  unet: "unet.safetensors",
  vae: "vae.safetensors",
};
const DATA_STATE_FORMAT = "zoetrope-training-data/1";
/** Validation steps on a software adapter (lavapipe) when the config gives none. */
const SOFTWARE_VALIDATION_STEPS = 4;
const VALIDATION_STEPS = 25;

/**
 * A checkpoint folder's name: `step-` and the step in six digits.
 *
 * @example
 * ```ts
 * checkpointName(100); // "step-000100"
 * ```
 */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

/**
 * The newest complete checkpoint folder under `outputDir/checkpoints` (`.partial` folders, left
 * by a write that was cut short, are not complete), or null.
 *
 * @example
 * ```ts
 * const dir = await latestCheckpoint("outputs/run1"); // "outputs/run1/checkpoints/step-000300"
 * ```
 */
export async function latestCheckpoint(outputDir: string): Promise<string | null> {
  let best: [number, string] | null = null;
  try {
    for await (const e of Deno.readDir(join(outputDir, "checkpoints"))) {
      const m = /^step-(\d+)$/.exec(e.name);
      if (e.isDirectory && m && (!best || Number(m[1]) > best[0])) best = [Number(m[1]), e.name];
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return best ? join(outputDir, "checkpoints", best[1]) : null;
}

/** Engine option names in errors, as the YAML spells them. */
const YAML_NAMES: [string, string][] = [
  ["motionModuleConfig", "motion_module_config"],
  ["motionModule", "motion_module"],
  ["modelConfig", "model_config"],
  ["model", "pretrained_model_path"],
];

function yamlError(e: unknown): unknown {
  if (!(e instanceof InputError)) return e;
  const hit = YAML_NAMES.find(([o]) => new RegExp(`^${o}[: ]`).test(e.message));
  return hit ? new InputError(hit[1] + e.message.slice(hit[0].length)) : e;
}

/**
 * Runs a training config: opens the data, builds the trainer (resuming when asked), steps to
 * `maxTrainSteps` with checkpoints and validation samples, and writes the final weights. An
 * aborted `signal` stops after the current step with a checkpoint.
 *
 * @example
 * ```ts
 * const { config } = parseTrainConfig(await Deno.readTextFile("train.yaml"));
 * const result = await runTraining(config, { onEvent: (e) => e.type === "note" && console.log(e.message) });
 * ```
 */
export async function runTraining(
  config: TrainConfig,
  options: RunOptions = {},
): Promise<TrainResult> {
  const emit = options.onEvent ?? (() => {});
  const out = config.outputDir;
  const started = performance.now();
  const resumeDir = config.resumeFromCheckpoint === "latest"
    ? await latestCheckpoint(out)
    : config.resumeFromCheckpoint ?? null;
  if (config.resumeFromCheckpoint === "latest" && !resumeDir) {
    emit({
      type: "note",
      message: `resume_from_checkpoint: no checkpoint in ${out}/checkpoints; starting a new run`,
    });
  }
  const image = config.train === "unet" || config.train === "vae";
  const dataset = await ClipDataset.open({
    ...config.data,
    isImage: image,
    cfgRandomNullTextRatio: config.train === "vae" ? 0 : config.nullTextRatio,
    onSkip: (path, reason) => emit({ type: "bad-data", path, reason }),
  }).catch((e) => {
    throw new InputError(`train_data: ${(e as Error).message.replace(/^ClipDataset: /, "")}`);
  });
  const gpu = options.gpu ?? await Gpu.create();
  let trainer: Trainer | null = null;
  try {
    let precision = config.precision;
    if (precision === "f16" && config.mixedFromOriginal && !gpu.hasF16) {
      precision = "f32";
      emit({
        type: "note",
        message: `mixed_precision_training: ${gpu.info.name} lacks shader-f16; training in f32`,
      });
    }
    const schedule = {
      kind: config.lrScheduler === "cosine" ? "cosine" as const : "constant" as const,
      warmupSteps: config.lrScheduler === "constant" ? 0 : config.lrWarmupSteps,
      totalSteps: config.maxTrainSteps,
    };
    trainer = await createTrainer({
      model: config.model,
      modelConfig: config.modelConfig,
      tokenizer: config.tokenizer,
      motionModule: config.motionModule,
      motionModuleConfig: config.motionModuleConfig,
      train: config.train,
      lora: config.lora,
      optimizer: config.optimizer,
      maxGradNorm: config.maxGradNorm,
      noiseSchedule: config.noiseSchedule,
      precision,
      lrScheduler: schedule.kind,
      lrWarmupSteps: schedule.warmupSteps,
      maxTrainSteps: config.maxTrainSteps,
      seed: config.seed,
      gradientCheckpointing: config.gradientCheckpointing,
      gpu,
    }).catch((e) => {
      throw yamlError(e);
    });
    // The data's own stream (clip order, start frames, flips, caption dropout), apart from the
    // trainer's (noise, timesteps), as train.py's sampler and its torch draws are apart.
    const generator = new TorchGenerator(config.seed + 1);
    const rows: LossRow[] = [];
    const lossCsv = join(out, "loss.csv"), lossPlot = join(out, "loss.png");
    let start = 0, priorSeconds = 0;
    await Deno.mkdir(out, { recursive: true });
    if (resumeDir) {
      const state = await readDataState(resumeDir);
      await trainer.loadCheckpoint(join(resumeDir, "trainer.safetensors")).catch((e) => {
        throw new InputError(`resume_from_checkpoint: ${(e as Error).message}`);
      });
      if (trainer.steps !== state.step) {
        throw new InputError(
          `resume_from_checkpoint: ${resumeDir}: trainer and data states disagree`,
        );
      }
      generator.setState(state.generator);
      dataset.restore(state.cursor);
      start = state.step;
      priorSeconds = state.seconds;
      rows.push(...(await readLossCsv(lossCsv)).filter((r) => r.step <= start));
      emit({ type: "note", message: `resumed from ${resumeDir} (step ${start})` });
    }
    await Deno.writeTextFile(lossCsv, LOSS_HEADER + rows.map(csvRow).join(""));
    const weightsName = WEIGHTS_FILE[config.train];
    const checkpoints: string[] = [], samples: string[] = [];
    const runSeconds = () => (performance.now() - started) / 1000;
    const t = trainer;

    const writeLossFiles = async () => {
      await Deno.writeTextFile(lossCsv, LOSS_HEADER + rows.map(csvRow).join(""));
      await Deno.writeFile(lossPlot, encodeLossPlot(rows));
    };
    const checkpoint = async (step: number, reason: "interval" | "interrupt") => {
      const dir = join(out, "checkpoints", checkpointName(step));
      const partial = `${dir}.partial`;
      await Deno.remove(partial, { recursive: true }).catch(() => {});
      await Deno.mkdir(partial, { recursive: true });
      await t.saveCheckpoint(join(partial, "trainer.safetensors"));
      await t.save(join(partial, weightsName));
      const state: DataState = {
        format: DATA_STATE_FORMAT,
        step,
        seconds: priorSeconds + runSeconds(),
        generator: generator.getState(),
        cursor: dataset.cursor(),
      };
      await Deno.writeTextFile(join(partial, "data.json"), JSON.stringify(state));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.rename(partial, dir);
      await writeLossFiles();
      checkpoints.push(dir);
      emit({ type: "checkpoint", step, dir, reason });
      return dir;
    };
    const canValidate = config.validation.prompts.length > 0 &&
      (config.train === "motion" || config.train === "motion-lora");
    if (config.validation.prompts.length > 0 && !canValidate) {
      emit({
        type: "note",
        message: `validation_data: samples need a motion module; none for train: ${config.train}`,
      });
    }
    const validate = async (step: number, checkpointDir: string | null) => {
      const dir = join(out, "samples", checkpointName(step));
      await Deno.mkdir(dir, { recursive: true });
      let weights = checkpointDir ? join(checkpointDir, weightsName) : null;
      const temporary = !weights;
      weights ??= join(dir, `.${weightsName}`);
      if (temporary) await t.save(weights);
      emit({ type: "validation-start", step, prompts: config.validation.prompts.length });
      const files: string[] = [];
      try {
        const lora = config.train === "motion-lora";
        const pipe = await loadPipeline({
          model: config.model,
          modelConfig: config.modelConfig,
          tokenizer: config.tokenizer,
          motionModule: lora ? config.motionModule : weights,
          motionModuleConfig: config.motionModuleConfig ?? await adapterConfig(config.motionModule),
          loras: lora ? [{ path: weights, scale: 1 }] : [],
          precision,
          device: gpu,
        });
        try {
          const v = config.validation;
          const [h, w] = typeof config.data.sampleSize === "number"
            ? [config.data.sampleSize, config.data.sampleSize]
            : config.data.sampleSize;
          for (const [i, prompt] of v.prompts.entries()) {
            if (options.signal?.aborted) break;
            const anim = await pipe.generate({
              prompt,
              negativePrompt: v.negativePrompt,
              frames: v.frames ?? config.data.sampleNFrames,
              width: v.width ?? w,
              height: v.height ?? h,
              steps: v.steps ??
                (gpu.info.isFallback ? SOFTWARE_VALIDATION_STEPS : VALIDATION_STEPS),
              guidance: v.guidance,
              seed: config.seed,
            });
            const file = join(dir, `${i}-${promptSlug(prompt)}.gif`);
            await Deno.writeFile(file, encodeGif(anim.frames, { fps: anim.fps }));
            files.push(file);
          }
        } finally {
          pipe.dispose();
        }
      } catch (e) {
        throw new InputError(`validation_data: ${(e as Error).message.split("\n")[0]}`);
      } finally {
        if (temporary) await Deno.remove(weights).catch(() => {});
      }
      samples.push(...files);
      emit({ type: "validation", step, files });
    };

    const total = config.maxTrainSteps;
    let step = start, interrupted = false, stepEma = 0, lastLoss = NaN;
    for (; step < total;) {
      if (options.signal?.aborted) {
        interrupted = true;
        break;
      }
      const t0 = performance.now();
      const batch = await dataset.batch(config.batchSize, generator);
      const result = await t.step({ pixels: batch.pixels, prompts: batch.prompts });
      step++;
      const seconds = (performance.now() - t0) / 1000;
      const n = step - start;
      stepEma = SMOOTHING * stepEma + (1 - SMOOTHING) * seconds;
      const stepTime = stepEma / (1 - SMOOTHING ** n);
      const lr = config.optimizer.lr * lrFactor(schedule, step - 1);
      const row: LossRow = {
        step,
        loss: result.loss,
        gradNorm: result.gradNorm,
        lr,
        seconds: priorSeconds + runSeconds(),
      };
      rows.push(row);
      lastLoss = result.loss;
      await Deno.writeTextFile(lossCsv, csvRow(row), { append: true });
      emit({
        type: "step",
        step,
        total,
        loss: result.loss,
        smoothedLoss: smoothed(rows, SMOOTHING).at(-1)!,
        gradNorm: result.gradNorm,
        lr,
        seconds,
        itPerSec: 1 / stepTime,
        etaMs: (total - step) * stepTime * 1000,
        skipped: result.skipped,
      });
      let ckpt: string | null = null;
      if (config.checkpointingSteps > 0 && step % config.checkpointingSteps === 0) {
        ckpt = await checkpoint(step, "interval");
      }
      const due = (config.validationSteps > 0 && step % config.validationSteps === 0) ||
        config.validationStepsTuple.includes(step);
      if (canValidate && due) await validate(step, ckpt);
      if (options.signal?.aborted) {
        interrupted = true;
        if (!ckpt) await checkpoint(step, "interrupt");
        break;
      }
    }
    let weights: string | null = null;
    if (!interrupted) {
      weights = join(out, weightsName);
      await t.save(weights);
    }
    await writeLossFiles();
    const smooth = smoothed(rows, SMOOTHING);
    return {
      steps: step,
      weights,
      interrupted,
      checkpoints,
      samples,
      resumedFrom: start,
      seconds: runSeconds(),
      loss: lastLoss,
      smoothedLoss: smooth.at(-1) ?? NaN,
      lossCsv,
      lossPlot,
    };
  } finally {
    trainer?.dispose();
    if (!options.gpu) gpu.destroy();
  }
}

/**
 * A MotionAdapter folder's config.json: the saved module (original keys) needs it to load with
 * the heads and groups it was trained with.
 */
async function adapterConfig(motionModule: string | undefined): Promise<string | undefined> {
  if (!motionModule || motionModule.startsWith("hf:")) return undefined;
  const st = await Deno.stat(motionModule).catch(() => null);
  return st?.isDirectory ? motionModule : undefined;
}

/** What `data.json` of a checkpoint holds. */
interface DataState {
  format: string;
  step: number;
  seconds: number;
  generator: ReturnType<TorchGenerator["getState"]>;
  cursor: DatasetCursor;
}

async function readDataState(dir: string): Promise<DataState> {
  const path = join(dir, "data.json");
  let state: DataState;
  try {
    state = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new InputError(`resume_from_checkpoint: cannot read ${path} (${(e as Error).name})`);
  }
  if (state?.format !== DATA_STATE_FORMAT || !Number.isInteger(state.step)) {
    throw new InputError(`resume_from_checkpoint: ${path} is not a Zoetrope data state`);
  }
  return state;
}
