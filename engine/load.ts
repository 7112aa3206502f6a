/**
 * Loading: the files a request names (or the embedded demo model), LoRAs merged, the tokenizer,
 * and the model blocks built and bound to their weights on a Gpu. Errors name the option at
 * fault (`model: x.safetensors: ...`); the CLI and the service word them for their users.
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import type { DType } from "../kernels/gpu/tensor.ts";
import { DeviceLostError, EngineLimitError, GpuError, InputError } from "../kernels/gpu/errors.ts";
import { WeightStore } from "./weight_store.ts";
import { usesDirectGemm } from "../kernels/gemm_direct.ts";
import { ClipTextEncoder } from "./models/clip.ts";
import { type Fidelity, UNet3D } from "./models/unet.ts";
import { VaeDecoder, VaeEncoder } from "./models/vae.ts";
import { ARCHITECTURE } from "./models/architecture.ts";
import { ClipTokenizer } from "./tokenizer.ts";
import type { PipelineOptions, Precision } from "./pipeline_types.ts";
import type { ModelWeights, MotionWeights } from "../weights/types.ts";
import { loadModel, loadMotionModule } from "../weights/load.ts";
import { applyLoras, applyMotionLoras, loadLora } from "../weights/lora.ts";
import {
  DEMO_MODEL_FILES,
  DEMO_MOTION_MODULE_NAME,
  demoModelDir,
  isDemoModelName,
} from "../weights/demo_model.ts";
import { join } from "node:path";
import { loadEmbedding, withEmbeddings } from "../weights/embeddings.ts";
import { resolveHubFile } from "../weights/hub.ts";

/** What every job of a generation works with: the Gpu, the models on it and the tokenizer. */
export interface PipelineParts {
  readonly gpu: Gpu;
  /** Storage dtype of weights and activations. */
  readonly dtype: DType;
  readonly tokenizer: ClipTokenizer;
  readonly textEncoder: ClipTextEncoder;
  readonly unet: UNet3D;
  readonly vae: VaeDecoder;
  /**
   * The VAE encoder (video-to-video, image-to-video), bound on first use from the model's files;
   * absent where the pipeline has no files to read it from.
   */
  readonly vaeEncoder?: () => Promise<VaeEncoder>;
}

/** The parts with the weight stores they were bound through (text encoder, UNet, motion, VAE). */
export interface BoundParts extends PipelineParts {
  readonly stores: readonly WeightStore[];
}

/** Weights mapped to canonical names, not yet on a GPU. */
export interface LoadedWeights {
  model: ModelWeights;
  motion: MotionWeights;
  tokenizer: ClipTokenizer;
  /** A built-in demo model (`demo` or `demo:paper`). */
  demo: boolean;
}

/**
 * Opens what `options` names (files are read lazily), merges LoRAs and loads the tokenizer. No
 * model (or `demo`) means the built-in demo model, `demo:paper` its paper variant (the base with
 * the paper LoRA merged); either comes with the demo's motion module unless one is named.
 */
export async function loadWeights(options: PipelineOptions): Promise<LoadedWeights> {
  const demoName = options.model === undefined
    ? "demo"
    : isDemoModelName(options.model)
    ? options.model
    : null;
  const demoDir = demoName || options.motionModule === DEMO_MOTION_MODULE_NAME
    ? await inputErrors("model", demoModelDir())
    : null;
  let model: ModelWeights = await inputErrors(
    "model",
    loadModel(demoName ? demoDir! : options.model!, {
      config: demoName ? undefined : options.modelConfig,
      architecture: ARCHITECTURE,
    }),
  );
  let motion: MotionWeights;
  const motionPath = options.motionModule === DEMO_MOTION_MODULE_NAME || !options.motionModule
    ? demoDir && join(demoDir, DEMO_MODEL_FILES.motion)
    : options.motionModule;
  if (!motionPath) {
    model.close();
    throw new InputError(
      "motionModule is required with a model (an AnimateDiff motion module .ckpt/.safetensors " +
        "or MotionAdapter folder)",
    );
  }
  motion = await inputErrors(
    "motionModule",
    loadMotionModule(motionPath, {
      config: motionPath === options.motionModule
        ? options.motionModuleConfig
        : join(demoDir!, DEMO_MODEL_FILES.motionConfig),
      architecture: ARCHITECTURE,
    }),
  );
  const loras = [
    ...(demoName === "demo:paper" ? [{ path: join(demoDir!, DEMO_MODEL_FILES.paperLora) }] : []),
    ...(options.loras ?? []),
  ];
  if (loras.length) {
    const scaled = [];
    for (const spec of loras) {
      const lora = await inputErrors("loras", loadLora(spec.path, { model, motion }));
      scaled.push({ lora, scale: spec.scale ?? 1 });
    }
    model = applyLoras(model, scaled);
    motion = applyMotionLoras(motion, scaled, { model });
  }
  const tokenizer = await loadTokenizer(options, model);
  if (options.embeddings?.length) {
    const embeddings = [];
    for (const spec of options.embeddings) {
      embeddings.push(await loadEmbedding(spec, model.clipConfig.hiddenSize));
    }
    let id = model.clipConfig.vocabSize;
    for (const e of embeddings) {
      tokenizer.addEmbeddingTokens(e.token, e.count, id);
      id += e.count;
    }
    model = withEmbeddings(model, embeddings);
  }
  return { model, motion, tokenizer, demo: demoName !== null };
}

/**
 * Opens the base model `options` names (files read lazily; the demo's folder for `demo`,
 * `demo:paper` or no model), without LoRAs: what the VAE encoder is read from on first use.
 */
export async function openBaseModel(options: PipelineOptions): Promise<ModelWeights> {
  const demo = options.model === undefined || isDemoModelName(options.model);
  return await inputErrors(
    "model",
    loadModel(demo ? await demoModelDir() : options.model!, {
      config: demo ? undefined : options.modelConfig,
      architecture: ARCHITECTURE,
    }),
  );
}

/** Binds the VAE encoder of `model` on `gpu` (its decoder half ignored); closes `model`. */
export async function bindVaeEncoder(
  gpu: Gpu,
  model: ModelWeights,
  dtype: DType,
): Promise<{ encoder: VaeEncoder; store: WeightStore }> {
  try {
    const store = new WeightStore(gpu, model.vae, {
      dtype,
      part: "vae",
      ignore: (n) => n.startsWith("decoder.") || n.startsWith("post_quant_conv."),
      transposeLinear: usesDirectGemm(gpu),
      winograd: usesDirectGemm(gpu),
    });
    try {
      const encoder = new VaeEncoder(store, model.vaeConfig);
      await inputErrors("model", store.loadAll());
      return { encoder, store };
    } catch (e) {
      store.dispose();
      throw e;
    }
  } finally {
    model.close();
  }
}

/**
 * Builds the model blocks on `gpu` and binds them to the weights (strict: every tensor checked,
 * then uploaded one by one). The VAE's encoder half is not used for text-to-animation.
 */
export async function bindParts(
  gpu: Gpu,
  weights: Pick<LoadedWeights, "model" | "motion" | "tokenizer">,
  o: { precision: Precision; fidelity?: Fidelity; onStore?: () => void },
): Promise<BoundParts> {
  const { model, motion, tokenizer } = weights;
  const dtype: DType = o.precision;
  const stores: WeightStore[] = [];
  try {
    // Software adapters multiply faster by Linear weights in the [in, out] layout and by 3x3
    // conv weights as Winograd filters (f32).
    const layouts = { transposeLinear: usesDirectGemm(gpu), winograd: usesDirectGemm(gpu) };
    const te = new WeightStore(gpu, model.textEncoder, {
      dtype,
      part: "text encoder",
      ...layouts,
    });
    const un = new WeightStore(gpu, model.unet, { dtype, part: "unet", ...layouts });
    const mo = new WeightStore(gpu, motion.tensors, {
      dtype,
      part: "motion module",
      ...layouts,
    });
    const va = new WeightStore(gpu, model.vae, {
      dtype,
      part: "vae",
      ignore: (n) => n.startsWith("encoder.") || n.startsWith("quant_conv."),
      ...layouts,
    });
    stores.push(te, un, mo, va);
    const parts = {
      gpu,
      dtype,
      tokenizer,
      stores,
      textEncoder: new ClipTextEncoder(te, model.clipConfig),
      unet: new UNet3D(un, mo, model.unetConfig, motion.config),
      vae: new VaeDecoder(va, model.vaeConfig),
    };
    if (o.fidelity) parts.unet.fidelity = checkFidelity(o.fidelity);
    for (const s of stores) {
      await inputErrors(s === mo ? "motionModule" : "model", s.loadAll());
      // Uploads are staged until a submit: finish each part's here, so loading ends with the
      // weights on the GPU (and host staging holds one part at most) instead of the first
      // generation's first submit copying them all (8 s of the text encoding for SD1.5 on
      // lavapipe).
      await gpu.sync();
      o.onStore?.();
    }
    return parts;
  } catch (e) {
    for (const s of stores) s.dispose();
    throw e;
  }
}

/**
 * The same architecture on a virtual Gpu with `parts`' limits, in `precision` (weights reserved,
 * never read): what the memory plan replays requests on.
 */
export async function virtualParts(parts: BoundParts, precision: Precision): Promise<BoundParts> {
  const info = { ...parts.gpu.info };
  if (precision === "f16" && !info.features.includes("shader-f16")) {
    info.features = [...info.features, "shader-f16"];
  }
  const gpu = Gpu.virtual(info);
  gpu.setLimits(parts.gpu.limits);
  const [te, un, mo, va] = parts.stores.map((s) => s.shapeMap());
  const unet = parts.unet, vae = parts.vae;
  return await bindParts(gpu, {
    model: {
      source: "planning copy",
      textEncoder: te,
      unet: un,
      vae: va,
      unetConfig: unet.config,
      vaeConfig: vae.config,
      clipConfig: parts.textEncoder.config,
      close() {},
    },
    motion: { source: "planning copy", tensors: mo, config: unet.motionConfig!, close() {} },
    tokenizer: parts.tokenizer,
  }, { precision, fidelity: unet.fidelity });
}

/** A fidelity mode, checked (an InputError naming the option otherwise). */
export function checkFidelity(mode: string): Fidelity {
  if (mode !== "diffusers" && mode !== "original") {
    throw new InputError(`fidelity must be diffusers or original, got ${mode}`);
  }
  return mode;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new InputError(`${what}: cannot read ${path} (${(e as Error).name})`);
  }
}

async function loadTokenizer(
  options: PipelineOptions,
  model: ModelWeights,
): Promise<ClipTokenizer> {
  if (options.tokenizer) {
    const dir = options.tokenizer.replace(/\/$/, "");
    return ClipTokenizer.fromFiles({
      vocabJson: await readText(`${dir}/vocab.json`, "tokenizer"),
      mergesTxt: await readText(`${dir}/merges.txt`, "tokenizer"),
    });
  }
  if (model.tokenizer) return ClipTokenizer.fromFiles(model.tokenizer);
  // Single-file checkpoints carry no tokenizer: SD1.5 uses CLIP ViT-L/14's.
  try {
    const vocab = await resolveHubFile("hf:openai/clip-vit-large-patch14/vocab.json");
    const merges = await resolveHubFile("hf:openai/clip-vit-large-patch14/merges.txt");
    return ClipTokenizer.fromFiles({
      vocabJson: await Deno.readTextFile(vocab),
      mergesTxt: await Deno.readTextFile(merges),
    });
  } catch (e) {
    throw new InputError(
      `tokenizer: ${model.source} has none and the CLIP tokenizer could not be fetched ` +
        `(${(e as Error).message}); give a folder with vocab.json and merges.txt`,
    );
  }
}

/** Errors of loading `what` (an option name): the input's fault, unless the GPU's or a limit's. */
function inputErrors<T>(what: string, p: Promise<T>): Promise<T> {
  return p.catch((e) => {
    const engine = [InputError, EngineLimitError, GpuError, DeviceLostError];
    if (engine.some((k) => e instanceof k)) throw e;
    const err = e as Error;
    throw new InputError(err.message.startsWith(what) ? err.message : `${what}: ${err.message}`);
  });
}
