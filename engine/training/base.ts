/**
 * What every trainer shares: its trainable parameters (steps, names, host copies, reads, sets),
 * `.safetensors` saving checks and disposal. Each trainer adds its step, its loss and what its
 * file holds.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { TrainableParameters } from "./parameters.ts";
import type { TrainBatch, Trainer, TrainStepResult } from "./trainer.ts";

/** The resources a trainer frees on dispose(). */
export interface TrainerResources {
  params: TrainableParameters;
  /** Frees everything the trainer holds but the Gpu. */
  release(): void;
  /** Destroys the Gpu too (the trainer created it). */
  ownsGpu: boolean;
}

/** A trainer's shared half (see the module doc). */
export abstract class TrainerBase implements Trainer {
  protected readonly gpu: Gpu;
  readonly #r: TrainerResources;
  #disposed = false;

  constructor(gpu: Gpu, resources: TrainerResources) {
    this.gpu = gpu;
    this.#r = resources;
  }

  abstract step(batch: TrainBatch): Promise<TrainStepResult>;
  abstract loss(batch: TrainBatch): Promise<number>;
  /** Writes the checked `.safetensors` path (see {@link save}). */
  protected abstract write(path: string): Promise<void>;

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
    if (!path.endsWith(".safetensors")) {
      throw new InputError(`save: ${path}: expected a .safetensors path`);
    }
    await this.write(path);
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
