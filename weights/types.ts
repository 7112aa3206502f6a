/**
 * Types shared by every weights reader and by the models that consume weights.
 * Tensors are described lazily: nothing is read from disk until `read()` is called, so a 4 GB
 * checkpoint is never held whole in memory.
 * @module
 */

import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "./model_config.ts";

/** Element types found in safetensors / torch files (safetensors spelling). */
export type StorageDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

/** Canonical (diffusers) tensor name -> stored shape. */
export type ShapeMap = Map<string, number[]>;

/** The configs of an SD1.5-family base model. */
export interface ModelConfigs {
  unet: UNetConfig;
  vae: VaeConfig;
  clip: ClipConfig;
}

/**
 * What each architecture declares, tensor by tensor: the one description of the models, which
 * the engine's blocks give (engine/models/architecture.ts) and weights/ receives as data for
 * checking files, generating tiny models and resolving LoRA names.
 */
export interface Architecture {
  /** The base model's parts: UNet, VAE (encoder and decoder), text encoder. */
  model(configs: ModelConfigs): { unet: ShapeMap; vae: ShapeMap; textEncoder: ShapeMap };
  /** The motion modules (diffusers MotionAdapter naming). */
  motion(config: MotionConfig): ShapeMap;
}

/** A tensor stored somewhere (a file region, memory, a LoRA-merged view). */
export interface HostTensor {
  readonly shape: readonly number[];
  readonly dtype: StorageDType;
  /** Reads the tensor and converts it to float32 (integers are converted by value). */
  read(): Promise<Float32Array>;
  /**
   * Set on LoRA-merged tensors: the unmerged tensor and its pending updates, so a GPU loader can
   * merge on the device; `read()` merges on the CPU.
   */
  readonly lowRank?: LowRankMerge;
}

/** A pending update `W += factor * up @ down` on the 2-D view [rows, numel / rows] of W. */
export interface LowRankUpdate {
  /** [rows, rank] (or [rows, rank, 1, 1]). */
  up: HostTensor;
  /** [rank, numel(W) / rows] (or [rank, in, kh, kw]). */
  down: HostTensor;
  /** Strength times alpha / rank. */
  factor: number;
}

/** A tensor and the low-rank updates merged into it (several LoRAs on one module add up). */
export interface LowRankMerge {
  base: HostTensor;
  updates: readonly LowRankUpdate[];
}

/** Canonical (diffusers-named) tensors of one model part, name -> tensor. */
export type TensorMap = Map<string, HostTensor>;

/** An opened tensor file: lazily readable tensors under their names in the file. */
export interface TensorFile {
  readonly path: string;
  readonly format: "safetensors" | "torch-zip" | "torch-legacy";
  readonly tensors: TensorMap;
  /** safetensors `__metadata__` (empty for torch files). */
  readonly metadata: Record<string, string>;
  /** Closes the underlying file handle; reads after close fail. */
  close(): void;
}

/** A base text-to-image model mapped onto diffusers names, with inferred configs. */
export interface ModelWeights {
  /** Where the weights came from (file or folder path, or "tiny-demo"). */
  readonly source: string;
  readonly unet: TensorMap;
  readonly vae: TensorMap;
  readonly textEncoder: TensorMap;
  readonly unetConfig: UNetConfig;
  readonly vaeConfig: VaeConfig;
  readonly clipConfig: ClipConfig;
  /**
   * Tokenizer files if the model ships them (diffusers folder `tokenizer/`): their contents and,
   * for errors that name them, their paths.
   */
  readonly tokenizer?: {
    vocabJson: string;
    mergesTxt: string;
    vocabPath?: string;
    mergesPath?: string;
  };
  close(): void;
}

/** AnimateDiff motion modules mapped onto diffusers MotionAdapter names. */
export interface MotionWeights {
  readonly source: string;
  readonly tensors: TensorMap;
  readonly config: MotionConfig;
  close(): void;
}
