/**
 * Loading base models and motion modules in any supported layout onto canonical (diffusers)
 * names, with configs inferred from shapes. Strict: after mapping, every tensor must be one the
 * inferred config expects, with the expected shape, and none may be missing.
 * @module
 */

import type {
  Architecture,
  HostTensor,
  ModelWeights,
  MotionWeights,
  ShapeMap,
  TensorFile,
  TensorMap,
} from "./types.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import type { ClipConfig, MotionConfig, UNetConfig, VaeConfig } from "./model_config.ts";
import { openTensorFile } from "./open.ts";
import { type HubOptions, parseHubReference, resolveHubFile, resolveHubFolder } from "./hub.ts";
import { mapCheckpointNames, mapMotionNames } from "./names.ts";
import {
  detectKind,
  diffusersClipOverrides,
  diffusersMotionOverrides,
  diffusersUNetOverrides,
  diffusersVaeOverrides,
  inferClipConfig,
  inferMotionConfig,
  inferUNetConfig,
  inferVaeConfig,
  KIND_DESCRIPTIONS,
  motionVersion,
  type WeightsKind,
} from "./detect.ts";
import { checkpointFamily, diffusersFamily, FAMILY_NAMES, type FamilyVerdict } from "./family.ts";
import { memoryTensor, sinusoidalTable } from "./tiny.ts";

/** Progress of a load: which component, and how many of them are done. */
export interface LoadProgress {
  /** Component being opened ("unet", "vae", "text_encoder", "checkpoint", "done"). */
  stage: string;
  /** Components done so far. */
  done: number;
  /** Components in all. */
  total: number;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** A diffusers folder whose unet/vae/text_encoder config.json give what shapes cannot tell. */
  config?: string;
  /** Called before each component is opened. */
  onProgress?: (p: LoadProgress) => void;
  /** Options for `hf:` references (cache folder, token, offline, download progress). */
  hub?: HubOptions;
  /**
   * The architectures' description (the engine's `ARCHITECTURE`): every tensor is then checked
   * against what the model declares for the inferred config (missing, unexpected, wrong shape).
   */
  architecture?: Architecture;
}

const COMPONENT_FILES = {
  unet: ["diffusion_pytorch_model"],
  vae: ["diffusion_pytorch_model"],
  text_encoder: ["model", "pytorch_model", "diffusion_pytorch_model"],
};
const VARIANTS = [".safetensors", ".fp16.safetensors", ".bin", ".fp16.bin"];
const LIST_LIMIT = 8;
/** Largest config.json / index.json / tokenizer file we read (real ones are a few MB at most). */
const MAX_TEXT_FILE_BYTES = 64 * 1024 * 1024;

async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Reads a small text file of a model folder (config, index, tokenizer), refusing huge ones. */
async function readSmallText(path: string): Promise<string> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new InputError(`${path}: not a file`);
  if (info.size > MAX_TEXT_FILE_BYTES) {
    throw new InputError(
      `${path}: ${info.size} bytes is too large for this file (at most ${MAX_TEXT_FILE_BYTES})`,
    );
  }
  return await Deno.readTextFile(path);
}

/** A JSON object file, or null when it does not exist. */
async function readJson(path: string): Promise<Record<string, unknown> | null> {
  if (!(await exists(path))) return null;
  const text = await readSmallText(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message.split("\n")[0]})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InputError(`${path}: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}

/** readJson for family detection: a missing or unreadable file tells nothing (loading reports it). */
function readJsonQuietly(path: string): Promise<Record<string, unknown> | null> {
  return readJson(path).catch(() => null);
}

function list(names: string[]): string {
  const head = names.slice(0, LIST_LIMIT).join(", ");
  return names.length > LIST_LIMIT ? `${head}, ... (${names.length} in all)` : head;
}

/**
 * What a file or folder holds: folders with model_index.json or unet/ are diffusers models, a
 * folder with config.json + diffusion_pytorch_model.* of motion tensors is a MotionAdapter; files
 * are classified by their tensor names.
 * @example
 * ```ts
 * await detectPathKind("tests/fixtures/tiny/motion_adapter"); // "motion-adapter"
 * ```
 */
export async function detectPathKind(path: string): Promise<WeightsKind> {
  const info = await exists(path);
  if (!info) throw new InputError(`${path}: no such file or folder`);
  if (info.isDirectory) {
    if ((await exists(`${path}/model_index.json`)) || (await exists(`${path}/unet`))) {
      const other = await folderFamily(path);
      return other ? `${other.family}-diffusers-model` : "diffusers-model";
    }
    const file = await findWeightsFile(path, ["diffusion_pytorch_model", "pytorch_lora_weights"]);
    if (!file) return "unknown";
    const kind = await fileKind(file);
    return kind === "motion-module" ? "motion-adapter" : kind;
  }
  return await fileKind(path);
}

/**
 * The tensor files of a file or folder: the file itself, a diffusers folder's component files
 * (sharded sets included), or a MotionAdapter / LoRA folder's weights file.
 */
export async function weightsFilesOf(path: string): Promise<string[]> {
  const info = await exists(path);
  if (!info) throw new InputError(`${path}: no such file or folder`);
  if (!info.isDirectory) return [path];
  const out: string[] = [];
  for (const [c, stems] of Object.entries(COMPONENT_FILES)) {
    if (!(await exists(`${path}/${c}`))) continue;
    const single = await findWeightsFile(`${path}/${c}`, stems);
    if (single) out.push(single);
    else {
      for await (const e of Deno.readDir(`${path}/${c}`)) {
        if (/-of-\d+\.(safetensors|bin)$/.test(e.name)) out.push(`${path}/${c}/${e.name}`);
      }
    }
  }
  const own = await findWeightsFile(path, ["diffusion_pytorch_model", "pytorch_lora_weights"]);
  if (own) out.push(own);
  if (out.length === 0) throw new InputError(`${path}: no weights files found in the folder`);
  return out.sort();
}

async function fileKind(path: string): Promise<WeightsKind> {
  const f = await openTensorFile(path);
  try {
    return detectKind(f.tensors);
  } finally {
    f.close();
  }
}

/**
 * The family of a diffusers folder that is not text-to-image SD1.5 (from unet/config.json,
 * model_index.json and the UNet's tensor shapes), or null.
 */
async function folderFamily(dir: string): Promise<FamilyVerdict | null> {
  const unetConfig = await readJsonQuietly(`${dir}/unet/config.json`);
  const modelIndex = await readJsonQuietly(`${dir}/model_index.json`);
  let unet: TensorMap | null = null;
  try {
    const file = await findWeightsFile(`${dir}/unet`, COMPONENT_FILES.unet);
    if (file) {
      const f = await openTensorFile(file);
      f.close(); // names and shapes only
      unet = f.tensors;
    }
  } catch {
    // An unreadable UNet file tells nothing here; loading it reports the problem.
  }
  const verdict = diffusersFamily(unet, { unetConfig, modelIndex });
  if (verdict || !(await exists(`${dir}/text_encoder_2`))) return verdict;
  return { family: "sdxl", evidence: "a second text encoder in text_encoder_2/" };
}

async function findWeightsFile(dir: string, stems: string[]): Promise<string | null> {
  for (const stem of stems) {
    for (const v of VARIANTS) if (await exists(`${dir}/${stem}${v}`)) return `${dir}/${stem}${v}`;
  }
  return null;
}

/** Opens one diffusers component: a single weights file or a sharded `*.index.json` set. */
async function openComponent(
  dir: string,
  stems: string[],
): Promise<{ tensors: TensorMap; files: TensorFile[] }> {
  const single = await findWeightsFile(dir, stems);
  if (single) {
    const f = await openTensorFile(single);
    return { tensors: f.tensors, files: [f] };
  }
  for (const stem of stems) {
    for (const v of [".safetensors", ".fp16.safetensors", ".bin"]) {
      const index = await readJson(`${dir}/${stem}${v}.index.json`);
      if (!index) continue;
      const weightMap = index.weight_map;
      const shards =
        weightMap !== null && typeof weightMap === "object" && !Array.isArray(weightMap)
          ? Object.values(weightMap)
          : [];
      const badShard = shards.find((f) => typeof f !== "string" || !/^[\w.-]+$/.test(f));
      if (shards.length === 0 || badShard !== undefined) {
        throw new InputError(
          `${dir}/${stem}${v}.index.json: expected "weight_map": {tensor: shard file name}` +
            (badShard !== undefined ? `, got a shard named ${JSON.stringify(badShard)}` : ""),
        );
      }
      const files: TensorFile[] = [];
      const tensors: TensorMap = new Map();
      for (const shard of new Set(shards as string[])) {
        const f = await openTensorFile(`${dir}/${shard}`);
        files.push(f);
        for (const [k, t] of f.tensors) tensors.set(k, t);
      }
      return { tensors, files };
    }
  }
  throw new InputError(
    `${dir}: expected ${stems[0]}.safetensors (or .bin, .fp16 variants, sharded index)`,
  );
}

/** Checks a loaded model's tensors against what the architecture declares for its configs. */
function checkModel(model: ModelWeights, architecture: Architecture): void {
  const expected = architecture.model({
    unet: model.unetConfig,
    vae: model.vaeConfig,
    clip: model.clipConfig,
  });
  checkTensors(`${model.source}: UNet`, model.unet, expected.unet);
  checkTensors(`${model.source}: VAE`, model.vae, expected.vae);
  checkTensors(`${model.source}: text encoder`, model.textEncoder, expected.textEncoder);
}

/** Throws when `actual` differs from what `expected` (shapes for the inferred config) lists. */
export function checkTensors(what: string, actual: TensorMap, expected: ShapeMap): void {
  const missing: string[] = [], unexpected: string[] = [], wrong: string[] = [];
  for (const [name, shape] of expected) {
    const t = actual.get(name);
    if (!t) missing.push(name);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      wrong.push(`${name} [${t.shape}] (expected [${shape}])`);
    }
  }
  for (const name of actual.keys()) if (!expected.has(name)) unexpected.push(name);
  const parts: string[] = [];
  if (unexpected.length) parts.push(`unexpected tensors: ${list(unexpected)}`);
  if (missing.length) parts.push(`missing tensors: ${list(missing)}`);
  if (wrong.length) parts.push(`wrong shapes: ${list(wrong)}`);
  if (parts.length) throw new InputError(`${what}: ${parts.join("; ")}`);
}

function reshaped(t: HostTensor, shape: number[]): HostTensor {
  return { shape, dtype: t.dtype, read: () => t.read() };
}

function wrongKind(path: string, kind: WeightsKind, expected: string): InputError {
  return new InputError(`${path}: this is ${KIND_DESCRIPTIONS[kind]}; expected ${expected}`);
}

/** What AnimateDiff animates, for the errors that refuse other base models. */
const NEEDED_BASE = "AnimateDiff needs a text-to-image SD1.5 checkpoint";

function otherFamilyError(path: string, verdict: FamilyVerdict, layout: string): InputError {
  return new InputError(
    `${path} is ${FAMILY_NAMES[verdict.family]} ${layout} (${verdict.evidence}); ${NEEDED_BASE}`,
  );
}

interface Overrides {
  unet: Partial<UNetConfig>;
  vae: Partial<VaeConfig>;
  clip: Partial<ClipConfig>;
}

/** Reads one config.json with `read`; a bad value is an error naming the file. */
async function configOverrides<T>(file: string, read: (json: Record<string, unknown>) => T) {
  const json = await readJson(file);
  if (!json) return null;
  try {
    return read(json);
  } catch (e) {
    throw new InputError(`${file}: ${(e as Error).message}`);
  }
}

async function folderOverrides(dir: string): Promise<Overrides> {
  return {
    unet: await configOverrides(`${dir}/unet/config.json`, diffusersUNetOverrides) ?? {},
    vae: await configOverrides(`${dir}/vae/config.json`, diffusersVaeOverrides) ?? {},
    clip: await configOverrides(`${dir}/text_encoder/config.json`, diffusersClipOverrides) ?? {},
  };
}

/** A text-to-image model's parts must fit together (what other families break). */
function checkComposition(unet: UNetConfig, vae: VaeConfig, clip: ClipConfig): void {
  if (unet.inChannels !== vae.latentChannels || unet.outChannels !== vae.latentChannels) {
    throw new InputError(
      `the UNet takes ${unet.inChannels} and gives ${unet.outChannels} channels but the VAE's ` +
        `latents have ${vae.latentChannels}; ${NEEDED_BASE}`,
    );
  }
  if (unet.crossAttentionDim !== clip.hiddenSize) {
    throw new InputError(
      `the UNet attends to ${unet.crossAttentionDim}-wide text features but the text encoder ` +
        `gives ${clip.hiddenSize}; ${NEEDED_BASE}`,
    );
  }
}

function finishModel(
  source: string,
  parts: { unet: TensorMap; vae: TensorMap; textEncoder: TensorMap },
  o: Overrides,
  extra: { files: TensorFile[]; tokenizer?: ModelWeights["tokenizer"] },
): ModelWeights {
  try {
    const unetConfig = inferUNetConfig(parts.unet, o.unet);
    const vaeConfig = inferVaeConfig(parts.vae, o.vae);
    const clipConfig = inferClipConfig(parts.textEncoder, o.clip);
    checkComposition(unetConfig, vaeConfig, clipConfig);
    return {
      source,
      ...parts,
      unetConfig,
      vaeConfig,
      clipConfig,
      tokenizer: extra.tokenizer,
      close: () => extra.files.forEach((f) => f.close()),
    };
  } catch (e) {
    extra.files.forEach((f) => f.close());
    throw prefixed(e, source);
  }
}

/** The error again, its message starting with `source`; an InputError stays one. */
function prefixed(e: unknown, source: string): Error {
  const msg = (e as Error)?.message ?? String(e);
  if (msg.startsWith(source)) return e as Error;
  return new (e instanceof InputError ? InputError : Error)(`${source}: ${msg}`);
}

/**
 * Loads a base SD1.5-family model: a diffusers folder (unet/, vae/, text_encoder/, tokenizer/),
 * an LDM single-file `.safetensors`/`.ckpt`, or an `hf:owner/repo[/file][@rev]` reference.
 * Tensors stay on disk until read.
 * @example
 * ```ts
 * const model = await loadModel("sd15.safetensors", { config: "model/" });
 * model.unetConfig.blockOutChannels;
 * model.close();
 * ```
 */
export async function loadModel(
  path: string,
  options: LoadModelOptions = {},
): Promise<ModelWeights> {
  const model = await openModel(path, options);
  if (!options.architecture) return model;
  try {
    checkModel(model, options.architecture);
  } catch (e) {
    model.close();
    throw e;
  }
  return model;
}

async function openModel(path: string, options: LoadModelOptions): Promise<ModelWeights> {
  if (path.startsWith("hf:")) path = await resolveHubReference(path, options.hub);
  const info = await exists(path);
  if (!info) {
    throw new InputError(
      `${path}: no such file or folder (expected a diffusers folder or a .safetensors/.ckpt file)`,
    );
  }
  const progress = options.onProgress ?? (() => {});
  const overrides = options.config ? await folderOverrides(options.config) : null;
  if (info.isDirectory) {
    const kind = await detectPathKind(path);
    const other = kind.endsWith("-diffusers-model") ? await folderFamily(path) : null;
    if (other) throw otherFamilyError(path, other, "diffusers model");
    if (kind !== "diffusers-model") {
      throw wrongKind(path, kind, "an SD1.5 checkpoint or a diffusers model folder");
    }
    const files: TensorFile[] = [];
    const parts: Record<string, TensorMap> = {};
    const components = ["unet", "vae", "text_encoder"] as const;
    try {
      for (const [i, c] of components.entries()) {
        progress({ stage: c, done: i, total: components.length });
        const opened = await openComponent(`${path}/${c}`, COMPONENT_FILES[c]);
        for (const f of opened.files) files.push(f);
        parts[c] = opened.tensors;
      }
    } catch (e) {
      files.forEach((f) => f.close());
      throw e;
    }
    progress({ stage: "done", done: components.length, total: components.length });
    const textEncoder: TensorMap = new Map(
      [...parts.text_encoder].filter(([k]) => !k.endsWith("position_ids")),
    );
    let tokenizer: ModelWeights["tokenizer"];
    try {
      tokenizer = await readTokenizerFiles(`${path}/tokenizer`);
    } catch (e) {
      files.forEach((f) => f.close());
      throw e;
    }
    return finishModel(
      path,
      { unet: parts.unet, vae: parts.vae, textEncoder },
      overrides ?? await folderOverrides(path),
      { files, tokenizer },
    );
  }
  progress({ stage: "checkpoint", done: 0, total: 1 });
  const file = await openTensorFile(path);
  const kind = detectKind(file.tensors);
  if (kind !== "sd15-checkpoint") {
    file.close();
    const other = checkpointFamily(file.tensors);
    if (other) throw otherFamilyError(path, other, "checkpoint");
    throw wrongKind(path, kind, "an SD1.5 checkpoint or a diffusers model folder");
  }
  let names;
  try {
    names = mapCheckpointNames(file.tensors.keys());
  } catch (e) {
    file.close();
    throw prefixed(e, path);
  }
  const { mapped, unknown } = names;
  if (unknown.length) {
    file.close();
    throw new InputError(`${path}: unexpected tensors in the SD1.5 checkpoint: ${list(unknown)}`);
  }
  const parts = { unet: new Map(), vae: new Map(), textEncoder: new Map() } as Record<
    string,
    TensorMap
  >;
  for (const m of mapped) {
    const t = file.tensors.get(m.source)!;
    const squeeze = m.squeezeConv && t.shape.length === 4 && t.shape[2] === 1 && t.shape[3] === 1;
    parts[m.part].set(m.target, squeeze ? reshaped(t, t.shape.slice(0, 2)) : t);
  }
  progress({ stage: "done", done: 1, total: 1 });
  return finishModel(
    path,
    { unet: parts.unet, vae: parts.vae, textEncoder: parts.textEncoder },
    overrides ?? { unet: {}, vae: {}, clip: {} },
    { files: [file] },
  );
}

/**
 * A diffusers folder's tokenizer files (vocab.json + merges.txt), or undefined when it has no
 * vocab.json. Paths come along so that the tokenizer names the file in its errors.
 */
async function readTokenizerFiles(dir: string): Promise<ModelWeights["tokenizer"]> {
  const vocabPath = `${dir}/vocab.json`, mergesPath = `${dir}/merges.txt`;
  if (!(await exists(vocabPath))) return undefined;
  if (!(await exists(mergesPath))) {
    throw new InputError(
      `${mergesPath}: missing (a tokenizer folder needs vocab.json and merges.txt)`,
    );
  }
  return {
    vocabJson: await readSmallText(vocabPath),
    mergesTxt: await readSmallText(mergesPath),
    vocabPath,
    mergesPath,
  };
}

/** Options of {@link loadMotionModule}. */
export interface LoadMotionOptions {
  /** A MotionAdapter config.json, or a folder holding one (heads, groups: what shapes cannot tell). */
  config?: string;
  /** Options for `hf:` references (cache folder, token, offline, download progress). */
  hub?: HubOptions;
  /** The architectures' description: every tensor is checked against the motion modules'. */
  architecture?: Architecture;
}

/** The MotionAdapter config.json (or its folder) at `config` as config overrides. */
export async function motionOverrides(config: string): Promise<Partial<MotionConfig>> {
  const info = await exists(config);
  if (!info) {
    throw new InputError(
      `${config}: no such motion-module config (expected config.json or its folder)`,
    );
  }
  const file = info.isDirectory ? `${config}/config.json` : config;
  const overrides = await configOverrides(file, diffusersMotionOverrides);
  if (!overrides) throw new InputError(`${config}: expected a config.json in the folder`);
  return overrides;
}

/**
 * Loads AnimateDiff motion modules: an original v1/v2/v3 `.ckpt`/`.safetensors` or a diffusers
 * MotionAdapter folder, onto MotionAdapter names (one `pos_embed.pe` per transformer block).
 * @example
 * ```ts
 * const motion = await loadMotionModule("mm_sd_v15_v2.ckpt");
 * motion.config.version; // "v2"
 * ```
 */
export async function loadMotionModule(
  path: string,
  options: LoadMotionOptions = {},
): Promise<MotionWeights> {
  const motion = await openMotionModule(path, options);
  if (!options.architecture) return motion;
  try {
    checkTensors(
      `${motion.source}: motion module`,
      motion.tensors,
      options.architecture.motion(motion.config),
    );
  } catch (e) {
    motion.close();
    throw e;
  }
  return motion;
}

async function openMotionModule(path: string, options: LoadMotionOptions): Promise<MotionWeights> {
  const { source, tensors, overrides, close } = await readMotionTensors(path, options);
  try {
    return { source, tensors, config: inferMotionConfig(tensors, overrides), close };
  } catch (e) {
    close();
    throw prefixed(e, source);
  }
}

/**
 * The version of the motion module at `path` from its tensors alone (see {@link motionVersion}):
 * `weights inspect` reports it even when the module's config needs `--motion-module-config`.
 */
export async function motionModuleVersion(
  path: string,
  options: LoadMotionOptions = {},
): Promise<MotionConfig["version"]> {
  const { tensors, overrides, close } = await readMotionTensors(path, options);
  try {
    return motionVersion(tensors, overrides).version;
  } finally {
    close();
  }
}

/** A motion module's tensors under MotionAdapter names, and the config overrides beside it. */
async function readMotionTensors(
  path: string,
  options: LoadMotionOptions,
): Promise<
  { source: string; tensors: TensorMap; overrides: Partial<MotionConfig>; close: () => void }
> {
  if (path.startsWith("hf:")) path = await resolveHubReference(path, options.hub);
  const info = await exists(path);
  if (!info) {
    throw new InputError(
      `${path}: no such file or folder (expected a motion module .ckpt/.safetensors or MotionAdapter folder)`,
    );
  }
  let file = path;
  let overrides: Partial<MotionConfig> = options.config
    ? await motionOverrides(options.config)
    : {};
  if (info.isDirectory) {
    const found = await findWeightsFile(path, ["diffusion_pytorch_model"]);
    if (!found) {
      const kind = await detectPathKind(path);
      throw wrongKind(path, kind, "an AnimateDiff motion module or a MotionAdapter folder");
    }
    file = found;
    if (!options.config && (await exists(`${path}/config.json`))) {
      overrides = await motionOverrides(path);
    }
  }
  const f = await openTensorFile(file);
  try {
    const kind = detectKind(f.tensors);
    if (kind !== "motion-module" && kind !== "motion-adapter") {
      throw wrongKind(path, kind, "an AnimateDiff motion module or a MotionAdapter folder");
    }
    const { mapped, unknown } = mapMotionNames(f.tensors.keys());
    if (unknown.length) {
      throw new InputError(`${path}: unexpected tensors in the motion module: ${list(unknown)}`);
    }
    const tensors: TensorMap = new Map();
    for (const m of mapped) tensors.set(m.target, f.tensors.get(m.source)!);
    addMissingPositionTables(tensors, overrides);
    return { source: path, tensors, overrides, close: () => f.close() };
  } catch (e) {
    f.close();
    throw prefixed(e, path);
  }
}

/** Files without `pos_encoder.pe` buffers get diffusers' sinusoidal table (length from config, else 32/24). */
function addMissingPositionTables(tensors: TensorMap, overrides: Partial<MotionConfig>): void {
  const hasMid = [...tensors.keys()].some((k) => k.startsWith("mid_block."));
  const length = overrides.maxSeqLength ?? (hasMid ? 32 : 24);
  for (const k of [...tensors.keys()]) {
    const m = /^(.+\.transformer_blocks\.\d+)\.norm1\.weight$/.exec(k);
    if (!m || tensors.has(`${m[1]}.pos_embed.pe`)) continue;
    const c = tensors.get(k)!.shape[0];
    tensors.set(`${m[1]}.pos_embed.pe`, memoryTensor([1, length, c], sinusoidalTable(length, c)));
  }
}

/**
 * Resolves `hf:owner/repo[/path][@rev]` to a local path in the hub cache: a path naming a weights
 * file (.safetensors/.ckpt/.bin/.pt/.pth) downloads that file, anything else a diffusers folder.
 */
export async function resolveHubReference(ref: string, options: HubOptions = {}): Promise<string> {
  const h = parseHubReference(ref);
  return /\.(safetensors|ckpt|bin|pt|pth)$/.test(h.path)
    ? await resolveHubFile(h, options)
    : await resolveHubFolder(h, options);
}
