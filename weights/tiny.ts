/**
 * Deterministic tiny models: seeded random values (weights ~ N(0, 1/fan_in), so a pipeline stays
 * numerically tame) for every tensor the architectures' description lists, a byte-level CLIP
 * tokenizer made in code, and the embedded demo model (no file access). The tests write them in
 * every file layout (tests/weights/tiny_files.ts).
 * @module
 */

import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "./model_config.ts";
import type {
  Architecture,
  HostTensor,
  ModelWeights,
  MotionWeights,
  ShapeMap,
  TensorMap,
} from "./types.ts";
import { numelOf } from "./dtype.ts";
import { kohyaName } from "./names.ts";

// ---------------------------------------------------------------------------------------------
// Values

/** A float32 tensor held in memory. */
export function memoryTensor(shape: readonly number[], data: Float32Array): HostTensor {
  if (numelOf(shape) !== data.length) {
    throw new Error(
      `memoryTensor: shape [${shape}] needs ${numelOf(shape)} values, got ${data.length}`,
    );
  }
  return { shape: [...shape], dtype: "F32", read: () => Promise.resolve(data.slice()) };
}

/** Small seeded PRNG (mulberry32) with Box-Muller normals: same seed, same numbers everywhere. */
export class TinyRandom {
  #state: number;
  /** Seeds the generator (same seed, same stream). */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Standard normal. */
  normal(): number {
    const u = Math.max(this.uniform(), 1e-12), v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

function hashName(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Sinusoidal position table [1, length, c] exactly as diffusers' SinusoidalPositionalEmbedding. */
export function sinusoidalTable(length: number, c: number): Float32Array {
  // float32 steps as torch computes them: exp(arange * f32(-ln(10000)/c)), then position * div.
  const f = Math.fround, out = new Float32Array(length * c);
  const scale = f(-Math.log(10000) / c);
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < c; i += 2) {
      const arg = f(p * f(Math.exp(f(i * scale))));
      out[p * c + i] = Math.sin(arg);
      if (i + 1 < c) out[p * c + i + 1] = Math.cos(arg);
    }
  }
  return out;
}

/**
 * Seeded values for one canonical tensor: norm weights ~ 1 + 0.1 N, biases ~ 0.02 N, position
 * tables sinusoidal, everything else ~ N(0, 1/fan_in). Each tensor's stream is seeded by its name.
 */
export function tinyValues(name: string, shape: readonly number[], seed = 0): Float32Array {
  const n = numelOf(shape);
  if (name.endsWith("pos_embed.pe")) return sinusoidalTable(shape[1], shape[2]);
  const rng = new TinyRandom(hashName(name) ^ seed);
  const out = new Float32Array(n);
  const isNorm = shape.length === 1 && /norm[^.]*\.weight$/.test(name);
  const fanIn = shape.length > 1 ? n / shape[0] : 1;
  const std = shape.length === 1
    ? (isNorm ? 0.1 : 0.02)
    : name.includes("embedding.weight")
    ? 0.5
    : 1 / Math.sqrt(fanIn);
  for (let i = 0; i < n; i++) out[i] = (isNorm ? 1 : 0) + std * rng.normal();
  return out;
}

function fill(shapes: ShapeMap, seed: number): TensorMap {
  const m: TensorMap = new Map();
  for (const [name, shape] of shapes) {
    m.set(name, memoryTensor(shape, tinyValues(name, shape, seed)));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Tiny configs, tokenizer and in-memory models

/** Merges of the tiny byte-level BPE (a few common English pairs). */
const TINY_MERGES = [
  "t h",
  "h e</w>",
  "i n",
  "e r",
  "a n",
  "o n",
  "r e",
  "e s",
  "t e",
  "s t",
  "o r",
  "a t",
];
const BYTE_SYMBOLS = 256;
const TINY_VOCAB_SIZE = 2 * BYTE_SYMBOLS + TINY_MERGES.length + 2;
const TINY_LORA_RANK = 4;
const TINY_LORA_ALPHA = 2;
const SEEDS = { unet: 1, vae: 2, textEncoder: 3, motion: 4, lora: 5 };

/** The tiny UNet: block channels [32, 64], one layer per block, 8 GroupNorm groups. */
export const TINY_UNET_CONFIG: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [32, 64],
  layersPerBlock: 1,
  downBlockAttention: [true, false],
  upBlockAttention: [false, true],
  midBlockAttention: true,
  crossAttentionDim: 32,
  attentionHeads: [4, 4],
  transformerLayersPerBlock: 1,
  normGroups: 8,
  normEps: 1e-5,
  useLinearProjection: false,
  flipSinToCos: true,
  freqShift: 0,
  timeEmbeddingDim: 128,
};

/** The tiny VAE: 4 levels (factor 8), channels [16, 16, 32, 32]. */
export const TINY_VAE_CONFIG: VaeConfig = {
  inChannels: 3,
  latentChannels: 4,
  blockOutChannels: [16, 16, 32, 32],
  layersPerBlock: 1,
  normGroups: 8,
  normEps: 1e-6,
  scalingFactor: 0.18215,
  hasQuantConv: true,
};

/** The tiny CLIP text encoder: hidden 32, 2 layers, 4 heads, the tiny tokenizer's vocabulary. */
export const TINY_CLIP_CONFIG: ClipConfig = {
  vocabSize: TINY_VOCAB_SIZE,
  hiddenSize: 32,
  intermediateSize: 64,
  layers: 2,
  heads: 4,
  maxPositions: 77,
  layerNormEps: 1e-5,
  hiddenAct: "quick_gelu",
  eosTokenId: TINY_VOCAB_SIZE - 1,
};

const TINY_CONFIGS = { unet: TINY_UNET_CONFIG, vae: TINY_VAE_CONFIG, clip: TINY_CLIP_CONFIG };

/** Tiny motion-module config of an AnimateDiff version (v1: PE 24, no mid; v2: mid; v3: PE 32, no mid). */
export function tinyMotionConfig(version: "v1" | "v2" | "v3" = "v2"): MotionConfig {
  return {
    version,
    blockOutChannels: [32, 64],
    layersPerBlock: 1,
    hasMidBlock: version === "v2",
    heads: 4,
    normGroups: 8,
    maxSeqLength: version === "v1" ? 24 : 32,
    transformerLayers: 1,
  };
}

/** GPT-2/CLIP bytes_to_unicode, in CLIP's vocabulary order. */
export function byteSymbols(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < BYTE_SYMBOLS; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(BYTE_SYMBOLS + n++);
    }
  }
  return cs.map((c) => String.fromCharCode(c));
}

/**
 * The tiny CLIP-format byte-level BPE tokenizer: 256 byte symbols, their `</w>` variants, one
 * token per merge, then `<|startoftext|>` and `<|endoftext|>` (the last id).
 */
export function tinyTokenizer(): { vocabJson: string; mergesTxt: string } {
  const symbols = byteSymbols();
  const tokens = [
    ...symbols,
    ...symbols.map((s) => s + "</w>"),
    ...TINY_MERGES.map((m) => m.replace(" ", "")),
  ];
  tokens.push("<|startoftext|>", "<|endoftext|>");
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return {
    vocabJson: JSON.stringify(vocab),
    mergesTxt: ["#version: 0.2", ...TINY_MERGES].join("\n") + "\n",
  };
}

/** Canonical tiny model tensors (UNet, VAE, text encoder), configs and tokenizer, in memory. */
export interface TinyModelTensors {
  /** Canonical UNet tensors. */
  unet: TensorMap;
  /** Canonical VAE tensors. */
  vae: TensorMap;
  /** Canonical text-encoder tensors. */
  textEncoder: TensorMap;
  /** UNet config. */
  unetConfig: UNetConfig;
  /** VAE config. */
  vaeConfig: VaeConfig;
  /** Text-encoder config. */
  clipConfig: ClipConfig;
  /** Tiny tokenizer files (vocab.json, merges.txt contents). */
  tokenizer: { vocabJson: string; mergesTxt: string };
}

/**
 * Deterministic canonical tensors of the tiny model.
 * @example
 * ```ts
 * const tiny = tinyModelTensors();
 * tiny.unet.get("conv_in.weight")!.shape; // [32, 4, 3, 3]
 * ```
 */
export function tinyModelTensors(
  architecture: Architecture,
  options: { seed?: number } = {},
): TinyModelTensors {
  const s = options.seed ?? 0;
  const shapes = architecture.model(TINY_CONFIGS);
  return {
    unet: fill(shapes.unet, SEEDS.unet + s),
    vae: fill(shapes.vae, SEEDS.vae + s),
    textEncoder: fill(shapes.textEncoder, SEEDS.textEncoder + s),
    unetConfig: TINY_UNET_CONFIG,
    vaeConfig: TINY_VAE_CONFIG,
    clipConfig: TINY_CLIP_CONFIG,
    tokenizer: tinyTokenizer(),
  };
}

/** Deterministic canonical (MotionAdapter-named) tiny motion tensors of a version. */
export function tinyMotionTensors(
  architecture: Architecture,
  version: "v1" | "v2" | "v3" = "v2",
): { tensors: TensorMap; config: MotionConfig } {
  const config = tinyMotionConfig(version);
  return { tensors: fill(architecture.motion(config), SEEDS.motion), config };
}

/**
 * Tensors of a tiny rank-4 LoRA (alpha 2) on every spatial attention projection of the tiny UNet
 * and every self-attention projection of the tiny text encoder (like the fixture LoRA).
 * kohya: `lora_unet_X.lora_down/lora_up.weight` + `.alpha`; peft: `unet.X.lora_A/lora_B.weight`
 * with B pre-multiplied by alpha/rank.
 */
export function tinyLora(
  architecture: Architecture,
  layout: "kohya" | "peft",
): { tensors: TensorMap; metadata: Record<string, string> } {
  const tensors: TensorMap = new Map();
  const targets: [string, "unet" | "te", number, number][] = [];
  const shapes = architecture.model(TINY_CONFIGS);
  for (const [name, shape] of shapes.unet) {
    if (
      /attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$/
        .test(name)
    ) {
      targets.push([name.slice(0, -7), "unet", shape[0], shape[1]]);
    }
  }
  for (const [name, shape] of shapes.textEncoder) {
    if (/self_attn\.(q|k|v|out)_proj\.weight$/.test(name)) {
      targets.push([name.slice(0, -7), "te", shape[0], shape[1]]);
    }
  }
  const r = TINY_LORA_RANK, factor = TINY_LORA_ALPHA / TINY_LORA_RANK;
  for (const [module, part, out, inp] of targets) {
    const down = tinyValues(`lora.${module}.down`, [r, inp], SEEDS.lora);
    const up = tinyValues(`lora.${module}.up`, [out, r], SEEDS.lora);
    if (layout === "kohya") {
      const k = `lora_${part}_${kohyaName(module)}`;
      tensors.set(`${k}.lora_down.weight`, memoryTensor([r, inp], down));
      tensors.set(`${k}.lora_up.weight`, memoryTensor([out, r], up));
      tensors.set(`${k}.alpha`, memoryTensor([], new Float32Array([TINY_LORA_ALPHA])));
    } else {
      const k = `${part === "unet" ? "unet" : "text_encoder"}.${module}`;
      tensors.set(`${k}.lora_A.weight`, memoryTensor([r, inp], down));
      tensors.set(`${k}.lora_B.weight`, memoryTensor([out, r], up.map((v) => v * factor)));
    }
  }
  const metadata: Record<string, string> = layout === "kohya"
    ? { ss_network_dim: String(r), ss_network_alpha: String(TINY_LORA_ALPHA) }
    : {};
  return { tensors, metadata };
}

/**
 * The CLI's embedded demo model: tiny model + v2 motion module + tokenizer, with NO file access.
 * @example
 * ```ts
 * const { model, motion } = loadTinyDemoModel();
 * model.unetConfig.blockOutChannels; // [32, 64]
 * ```
 */
export function loadTinyDemoModel(architecture: Architecture): {
  model: ModelWeights;
  motion: MotionWeights;
  tokenizer: { vocabJson: string; mergesTxt: string };
} {
  const t = tinyModelTensors(architecture);
  const m = tinyMotionTensors(architecture, "v2");
  const model: ModelWeights = { source: "tiny-demo", ...t, close() {} };
  const motion: MotionWeights = {
    source: "tiny-demo",
    tensors: m.tensors,
    config: m.config,
    close() {},
  };
  return { model, motion, tokenizer: t.tokenizer };
}
