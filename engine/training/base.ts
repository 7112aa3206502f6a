/**
 * What every trainer shares: its trainable parameters (steps, names, host copies, reads, sets),
 * its seeded generator, checkpoints that resume exactly, `.safetensors` saving checks and
 * disposal. Each trainer adds its step, its loss and what its file holds.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../../weights/safetensors.ts";
import { writeTorchZip } from "../../weights/torch_save.ts";
import { TorchGenerator } from "../rng.ts";
import type { ParameterState, TrainableParameters } from "./parameters.ts";
import type { TrainBatch, Trainer, TrainStepResult } from "./trainer.ts";

/** The resources a trainer frees on dispose(). */
export interface TrainerResources {
  params: TrainableParameters;
  /** What is trained (written into checkpoints, checked on resume). */
  train: string;
  /** Seeds the trainer's draws (noise, timesteps, posterior samples). */
  seed: number;
  /** Frees everything the trainer holds but the Gpu. */
  release(): void;
  /** Destroys the Gpu too (the trainer created it). */
  ownsGpu: boolean;
}

/** A trainer's shared half (see the module doc). */
export abstract class TrainerBase implements Trainer {
  protected readonly gpu: Gpu;
  /** Every random draw of the trainer's steps (what omitted batch fields get). */
  protected readonly generator: TorchGenerator;
  readonly #r: TrainerResources;
  #disposed = false;

  constructor(gpu: Gpu, resources: TrainerResources) {
    this.gpu = gpu;
    this.#r = resources;
    this.generator = new TorchGenerator(resources.seed);
  }

  abstract step(batch: TrainBatch): Promise<TrainStepResult>;
  abstract loss(batch: TrainBatch): Promise<number>;
  /** Writes the checked `.safetensors` or `.ckpt` path (see {@link save}, {@link writeWeights}). */
  protected abstract write(path: string): Promise<void>;

  /**
   * Writes tensors as the path's format: `.safetensors`, or `.ckpt` as torch.save writes it (what
   * `torch.load` in the original AnimateDiff scripts reads).
   */
  protected async writeWeights(
    path: string,
    tensors: TensorToWrite[],
    metadata: Record<string, string> = { format: "pt" },
  ): Promise<void> {
    if (path.endsWith(".ckpt")) await writeTorchZip(path, tensors);
    else await writeSafetensors(path, tensors, { metadata });
  }

  /** The trainable parameters (for subclasses' steps). */
  protected get params(): TrainableParameters {
    this.live();
    return this.#r.params;
  }

  get steps(): number {
    return this.#r.params.steps;
  }

  get trainable(): readonly string[] {
    return this.#r.params.names;
  }

  gradients(): Map<string, Float32Array> {
    return this.params.gradients();
  }

  parameters(): Map<string, Float32Array> {
    return this.params.values();
  }

  readGradients(): Promise<Map<string, Float32Array>> {
    return this.params.readGradients();
  }

  readParameters(): Promise<Map<string, Float32Array>> {
    return this.params.readValues();
  }

  setParameters(values: Map<string, Float32Array>): void {
    this.params.set(values);
  }

  async save(path: string): Promise<void> {
    this.live();
    if (!/\.(safetensors|ckpt)$/.test(path)) {
      throw new InputError(`save: ${path}: expected a .safetensors or .ckpt path`);
    }
    await this.write(path);
  }

  /**
   * Writes what resuming needs (weights, AdamW moments, step and loss-scale counters, the
   * generator) as one .safetensors file; {@link loadCheckpoint} continues bit-identically.
   */
  async saveCheckpoint(path: string): Promise<void> {
    const state = await this.params.exportState();
    const meta: CheckpointMeta = {
      format: CHECKPOINT_FORMAT,
      train: this.#r.train,
      steps: state.steps,
      lossScale: state.lossScale,
      goodSteps: state.goodSteps,
      generator: this.generator.getState(),
    };
    const tensors = state.tensors.map((t) => ({ ...t, dtype: "F32" as const }));
    await writeSafetensors(path, tensors, { metadata: { zoetrope: JSON.stringify(meta) } });
  }

  /** Restores a {@link saveCheckpoint} file (same train target and model, checked). */
  async loadCheckpoint(path: string): Promise<void> {
    const params = this.params;
    const f = await openSafetensors(path);
    try {
      let meta: CheckpointMeta;
      try {
        meta = JSON.parse(f.metadata.zoetrope ?? "null");
      } catch {
        meta = null as unknown as CheckpointMeta;
      }
      if (!meta || meta.format !== CHECKPOINT_FORMAT) {
        throw new InputError(`${path}: not a Zoetrope training checkpoint`);
      }
      if (meta.train !== this.#r.train) {
        throw new InputError(
          `${path}: a ${meta.train} checkpoint, this trainer trains ${this.#r.train}`,
        );
      }
      const tensors = [];
      for (const [name, t] of f.tensors) {
        tensors.push({ name, shape: [...t.shape], data: await t.read() });
      }
      const state: ParameterState = {
        steps: meta.steps,
        lossScale: meta.lossScale,
        goodSteps: meta.goodSteps,
        tensors,
      };
      await params.importState(state);
      this.generator.setState(meta.generator);
    } finally {
      f.close();
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.disposeParts();
    this.#r.params.dispose();
    this.#r.release();
    if (this.#r.ownsGpu) this.gpu.destroy();
  }

  /** Undoes what the trainer did to shared model parts (e.g. detaches LoRAs). */
  protected disposeParts(): void {}

  /** Throws if the trainer was disposed. */
  protected live(): void {
    if (this.#disposed) throw new Error("trainer: used after dispose()");
  }
}

/** The checkpoint files' format tag. */
const CHECKPOINT_FORMAT = "zoetrope-training-checkpoint/1";

interface CheckpointMeta {
  format: string;
  train: string;
  steps: number;
  lossScale: number;
  goodSteps: number;
  generator: ReturnType<TorchGenerator["getState"]>;
}
