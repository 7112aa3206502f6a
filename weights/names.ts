/**
 * The ONE weight-name map. Canonical names are diffusers module names (UNet2DConditionModel,
 * AutoencoderKL, transformers CLIPTextModel, MotionAdapter). This file maps every other layout
 * onto them (and back, to write files): LDM/CompVis single-file checkpoints and original
 * AnimateDiff motion modules through the two-way tables of weights/layouts.ts, and the LoRA key
 * spellings (kohya, diffusers/peft, older diffusers attention processors).
 *
 * Block structure is always derived from the names present (levels, layers per block), never
 * hard-coded to SD1.5, following diffusers' `convert_ldm_unet_checkpoint` /
 * `convert_ldm_vae_checkpoint` and `convert_animatediff_motion_module_to_diffusers.py`.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { LDM_UNET_LAYOUT, LDM_VAE_LAYOUT, MOTION_LAYOUT } from "./layouts.ts";

/** A part of a base model. */
export type ModelPart = "unet" | "vae" | "textEncoder";

/** One tensor renamed from a file layout onto its canonical name. */
export interface KeyMapping {
  /** Name in the file. */
  source: string;
  /** Canonical (diffusers) name. */
  target: string;
  /** Model part the tensor belongs to. */
  part: ModelPart;
  /** The file stores a 1x1 conv weight [C, C, 1, 1] that diffusers keeps as Linear [C, C]. */
  squeezeConv?: boolean;
}

/** Result of mapping a whole file's names. */
export interface MappedKeys<M> {
  /** Renamed tensors. */
  mapped: M[];
  /** Known-ignorable names (EMA copies, position_ids buffers, LDM noise-schedule buffers). */
  ignored: string[];
  /** Names that belong to no known layout: loading must fail on these. */
  unknown: string[];
}

const LDM_UNET = "model.diffusion_model.";
const LDM_VAE = "first_stage_model.";
const LDM_CLIP_PREFIXES = [
  "cond_stage_model.transformer.text_model.",
  "cond_stage_model.transformer.",
];

/** LDM DDPM buffers stored at the top level of SD1.x checkpoints (never needed for inference). */
const LDM_SCHEDULE_BUFFERS = new Set([
  "betas",
  "alphas_cumprod",
  "alphas_cumprod_prev",
  "sqrt_alphas_cumprod",
  "sqrt_one_minus_alphas_cumprod",
  "log_one_minus_alphas_cumprod",
  "sqrt_recip_alphas_cumprod",
  "sqrt_recipm1_alphas_cumprod",
  "posterior_variance",
  "posterior_log_variance_clipped",
  "posterior_mean_coef1",
  "posterior_mean_coef2",
  "logvar",
]);

/** Wrappers some files add around their real names (`state_dict.` from torch wrappers, `module.` from DDP). */
const WRAPPER_PREFIXES = ["state_dict.", "module."];

/** Removes `state_dict.` / `module.` wrapper prefixes (repeatedly). */
export function stripWrapperPrefix(name: string): string {
  let changed = true;
  while (changed) {
    changed = false;
    for (const p of WRAPPER_PREFIXES) {
      if (name.startsWith(p)) {
        name = name.slice(p.length);
        changed = true;
      }
    }
  }
  return name;
}

/** Whether a single-file checkpoint name is known to be unused (EMA, buffers). */
export function isIgnorableCheckpointName(name: string): boolean {
  return name.startsWith("model_ema.") || name.endsWith(".position_ids") ||
    LDM_SCHEDULE_BUFFERS.has(name) || name === "model_ema" ||
    name.startsWith("first_stage_model.loss.") || name.startsWith("cond_stage_model.logit_scale");
}

// ---------------------------------------------------------------------------------------------
// LDM UNet

/** Structure of an LDM UNet as the names reveal it. */
export interface LdmUNetStructure {
  /** Resolution levels (down blocks). */
  levels: number;
  /** ResNets per down block. */
  layersPerBlock: number;
}

/**
 * Derives levels and layers per block from LDM UNet names (without the `model.diffusion_model.`
 * prefix): input_blocks 1..N hold `levels * (layersPerBlock + 1) - 1` entries, one `op`
 * downsampler per level but the last.
 */
export function ldmUNetStructure(names: Iterable<string>): LdmUNetStructure {
  let maxInput = 0;
  const ops = new Set<number>();
  for (const n of names) {
    const m = /^input_blocks\.(\d+)\.0\.op\./.exec(n);
    if (m) ops.add(Number(m[1]));
    const i = /^input_blocks\.(\d+)\./.exec(n);
    if (i) maxInput = Math.max(maxInput, Number(i[1]));
  }
  const levels = ops.size + 1;
  const perLevel = (maxInput + 1) / levels;
  if (!Number.isInteger(perLevel) || perLevel < 2) {
    throw new InputError(
      `LDM UNet: cannot derive the block structure: input_blocks 1..${maxInput} with ${ops.size} ` +
        `downsamplers is not levels * (layers_per_block + 1) - 1`,
    );
  }
  return { levels, layersPerBlock: perLevel - 1 };
}

/**
 * Maps LDM UNet names (prefix `model.diffusion_model.` already removed) onto diffusers
 * UNet2DConditionModel names. Returns null for names outside the layout.
 */
export function mapLdmUNetNames(names: string[]): Map<string, string | null> {
  const s = ldmUNetStructure(names);
  const per = s.layersPerBlock + 1;
  // Output blocks whose sub-module 1 is an upsampler (only `conv.*` inside) rather than an attention.
  const upsampleAtOne = new Set<number>();
  const subKeys = new Map<number, Set<string>>();
  for (const n of names) {
    const m = /^output_blocks\.(\d+)\.1\.(.+)$/.exec(n);
    if (m) {
      const set = subKeys.get(Number(m[1])) ?? new Set();
      set.add(m[2]);
      subKeys.set(Number(m[1]), set);
    }
  }
  for (const [i, set] of subKeys) {
    if ([...set].every((k) => k === "conv.weight" || k === "conv.bias")) upsampleAtOne.add(i);
  }
  const out = new Map<string, string | null>();
  for (const n of names) out.set(n, LDM_UNET_LAYOUT.toCanon(n, { per, upsampleAtOne }));
  return out;
}

/**
 * Inverse of {@link mapLdmUNetNames} for module paths (no `.weight` suffix): the LDM module path
 * of a diffusers UNet module, e.g. `down_blocks.0.attentions.0.proj_in` -> `input_blocks.1.1.proj_in`.
 * Used to resolve LDM-style kohya LoRA names. Returns null when there is no LDM equivalent.
 */
export function ldmUNetModuleName(
  module: string,
  opts: { layersPerBlock: number; upBlockAttention: boolean[] },
): string | null {
  return LDM_UNET_LAYOUT.toFile(module, {
    per: opts.layersPerBlock + 1,
    upBlockAttention: opts.upBlockAttention,
  });
}

// ---------------------------------------------------------------------------------------------
// LDM VAE

/**
 * Maps LDM VAE names (prefix `first_stage_model.` removed) onto AutoencoderKL names. The decoder's
 * `up.N` counts from the lowest resolution in diffusers: `up_blocks.(levels - 1 - N)`.
 */
export function mapLdmVaeNames(
  names: string[],
): Map<string, { target: string; squeezeConv: boolean } | null> {
  let maxUp = -1;
  for (const n of names) {
    const m = /^decoder\.up\.(\d+)\./.exec(n);
    if (m) maxUp = Math.max(maxUp, Number(m[1]));
  }
  const out = new Map<string, { target: string; squeezeConv: boolean } | null>();
  for (const n of names) {
    const target = LDM_VAE_LAYOUT.toCanon(n, { levels: maxUp + 1 });
    if (target === null) {
      out.set(n, null);
      continue;
    }
    out.set(n, {
      target,
      squeezeConv: /mid_block\.attentions\.0\.to_(q|k|v|out\.0)\.weight$/.test(target),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Whole single-file checkpoints

/**
 * Maps every name of an LDM/CompVis SD1.x single-file checkpoint onto canonical names.
 * `state_dict.` wrappers are removed; EMA copies, position_ids and schedule buffers are ignored.
 * @example
 * ```ts
 * const { mapped, unknown } = mapCheckpointNames(["model.diffusion_model.time_embed.0.weight"]);
 * // mapped[0].target === "time_embedding.linear_1.weight"
 * ```
 */
export function mapCheckpointNames(names: Iterable<string>): MappedKeys<KeyMapping> {
  const ignored: string[] = [], unknown: string[] = [];
  const unet: [string, string][] = [], vae: [string, string][] = [];
  const mapped: KeyMapping[] = [];
  for (const source of names) {
    const n = stripWrapperPrefix(source);
    if (isIgnorableCheckpointName(n)) ignored.push(source);
    else if (n.startsWith(LDM_UNET)) unet.push([source, n.slice(LDM_UNET.length)]);
    else if (n.startsWith(LDM_VAE)) vae.push([source, n.slice(LDM_VAE.length)]);
    else {
      const prefix = LDM_CLIP_PREFIXES.find((p) => n.startsWith(p));
      if (prefix) {
        mapped.push({
          source,
          target: "text_model." + n.slice(prefix.length),
          part: "textEncoder",
        });
      } else unknown.push(source);
    }
  }
  if (unet.length > 0) {
    const map = mapLdmUNetNames(unet.map((u) => u[1]));
    for (const [source, n] of unet) {
      const target = map.get(n);
      if (target) mapped.push({ source, target, part: "unet" });
      else unknown.push(source);
    }
  }
  if (vae.length > 0) {
    const map = mapLdmVaeNames(vae.map((v) => v[1]));
    for (const [source, n] of vae) {
      const t = map.get(n);
      if (t) {
        mapped.push({
          source,
          target: t.target,
          part: "vae",
          squeezeConv: t.squeezeConv || undefined,
        });
      } else unknown.push(source);
    }
  }
  return { mapped, ignored, unknown };
}

// ---------------------------------------------------------------------------------------------
// Motion modules

/** One motion tensor renamed onto MotionAdapter naming. */
export interface MotionKeyMapping {
  /** Name in the file. */
  source: string;
  /** MotionAdapter name. */
  target: string;
}

const MOTION_PREFIX = /^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.motion_modules\.\d+\./;

/**
 * Maps one original-AnimateDiff motion-module name (after wrapper removal) onto MotionAdapter
 * naming; names already in MotionAdapter naming map to themselves. `pos_encoder.pe` of the first
 * attention block becomes `transformer_blocks.K.pos_embed.pe` (diffusers keeps one per transformer
 * block); the other attention blocks' identical copies map to "ignore". Null: not a motion name.
 */
export function mapMotionName(name: string): string | "ignore" | null {
  if (!MOTION_PREFIX.test(name)) return null;
  const pe = /^(.*)\.attention_blocks\.(\d+)\.pos_encoder\.pe$/.exec(name);
  if (pe) {
    if (pe[2] !== "0") return "ignore";
    return pe[1].replace(".temporal_transformer", "") + ".pos_embed.pe";
  }
  return MOTION_LAYOUT.toCanon(name, null) ?? name;
}

/**
 * Maps every name of a motion-module file (original v1/v2/v3 layout, or MotionAdapter layout,
 * optionally wrapped in `state_dict.` / `module.`) onto MotionAdapter names.
 * @example
 * ```ts
 * mapMotionNames(["mid_block.motion_modules.0.temporal_transformer.norm.weight"]).mapped[0].target;
 * // "mid_block.motion_modules.0.norm.weight"
 * ```
 */
export function mapMotionNames(names: Iterable<string>): MappedKeys<MotionKeyMapping> {
  const mapped: MotionKeyMapping[] = [], ignored: string[] = [], unknown: string[] = [];
  for (const source of names) {
    const target = mapMotionName(stripWrapperPrefix(source));
    if (target === "ignore") ignored.push(source);
    else if (target === null) unknown.push(source);
    else mapped.push({ source, target });
  }
  return { mapped, ignored, unknown };
}

// ---------------------------------------------------------------------------------------------
// LoRA keys

/** What one LoRA tensor is. */
/** LyCORIS factor names (kohya-style files): LoHa `hada_*`, LoKr `lokr_*`. */
export const LYCORIS_ROLES = [
  "hada_w1_a",
  "hada_w1_b",
  "hada_w2_a",
  "hada_w2_b",
  "hada_t1",
  "hada_t2",
  "lokr_w1",
  "lokr_w1_a",
  "lokr_w1_b",
  "lokr_w2",
  "lokr_w2_a",
  "lokr_w2_b",
  "lokr_t2",
] as const;

/** One LyCORIS factor name. */
export type LycorisRole = typeof LYCORIS_ROLES[number];

export interface LoraKey {
  /** Module path as spelled in the file (kohya: underscore form without `lora_unet_`/`lora_te_`). */
  module: string;
  /** Which LoRA factor the tensor is (LyCORIS factors keep their own names). */
  role: "down" | "up" | "alpha" | LycorisRole;
  /** Which naming the module path uses. */
  scheme: "kohya-unet" | "kohya-te" | "unet" | "textEncoder" | "bare";
}

const PROCESSOR_TARGETS: Record<string, string> = {
  to_q: "to_q",
  to_k: "to_k",
  to_v: "to_v",
  to_out: "to_out.0",
};

/**
 * Parses one LoRA tensor name: kohya (`lora_unet_X.lora_down.weight`, `.alpha`, LyCORIS
 * `.hada_w1_a` / `.lokr_w1` ...), peft
 * (`unet.X.lora_A.weight`), older diffusers (`unet.X.lora.down.weight`,
 * `X.processor.to_q_lora.down.weight`, `X.lora_linear_layer.up.weight`). Null: not a LoRA name
 * this loader understands.
 */
export function parseLoraKey(name: string): LoraKey | null {
  const n = stripWrapperPrefix(name);
  const kohya = /^lora_(unet|te)_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha|[a-z0-9_]+)$/
    .exec(n);
  if (kohya) {
    const suffix = kohya[3];
    const lycoris = (LYCORIS_ROLES as readonly string[]).includes(suffix);
    if (!lycoris && !/^(lora_down\.weight|lora_up\.weight|alpha)$/.test(suffix)) return null;
    const role: LoraKey["role"] = lycoris
      ? suffix as LycorisRole
      : suffix === "alpha"
      ? "alpha"
      : suffix.startsWith("lora_down")
      ? "down"
      : "up";
    return {
      module: kohya[2],
      role,
      scheme: kohya[1] === "unet" ? "kohya-unet" : "kohya-te",
    };
  }
  let body: string, role: LoraKey["role"];
  let m =
    /^(.+)\.(lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer\.down|lora_linear_layer\.up)\.weight$/
      .exec(n);
  if (m) {
    body = m[1];
    role = /lora_A|down/.test(m[2]) ? "down" : "up";
  } else if ((m = /^(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(n))) {
    body = `${m[1]}.${PROCESSOR_TARGETS[m[2]]}`;
    role = m[3] === "down" ? "down" : "up";
  } else if ((m = /^(.+)\.alpha$/.exec(n))) {
    body = m[1];
    role = "alpha";
  } else return null;
  if (body.startsWith("unet.")) return { module: body.slice(5), role, scheme: "unet" };
  if (body.startsWith("text_encoder.")) {
    return { module: body.slice(13), role, scheme: "textEncoder" };
  }
  return { module: body, role, scheme: "bare" };
}

/** Kohya's spelling of a module path: every `.` becomes `_`. */
export function kohyaName(module: string): string {
  return module.replaceAll(".", "_");
}

// ---------------------------------------------------------------------------------------------
// Canonical -> file layouts (the same tables, read the other way), to write files in every layout

function splitParam(name: string): [string, string] {
  const i = name.lastIndexOf(".");
  return [name.slice(0, i), name.slice(i + 1)];
}

/**
 * LDM single-file name of a canonical UNet tensor (`model.diffusion_model.` included).
 * @example
 * ```ts
 * ldmUNetName("conv_in.weight", { layersPerBlock: 2, upBlockAttention: [false, true, true, true] });
 * // "model.diffusion_model.input_blocks.0.0.weight"
 * ```
 */
export function ldmUNetName(
  name: string,
  opts: { layersPerBlock: number; upBlockAttention: boolean[] },
): string {
  const [module, param] = splitParam(name);
  const ldm = ldmUNetModuleName(module, opts);
  if (ldm === null) throw new Error(`names: UNet tensor ${name} has no LDM equivalent`);
  return `${LDM_UNET}${ldm}.${param}`;
}

/** LDM single-file name of a canonical AutoencoderKL tensor (`first_stage_model.` included). */
export function ldmVaeName(name: string, levels: number): string {
  const out = LDM_VAE_LAYOUT.toFile(name, { levels });
  if (out === null) throw new Error(`names: VAE tensor ${name} has no LDM equivalent`);
  return LDM_VAE + out;
}

/** LDM single-file name of a canonical text-encoder tensor. */
export function ldmClipName(name: string): string {
  return LDM_CLIP_PREFIXES[0] + name.replace(/^text_model\./, "");
}

/**
 * Original AnimateDiff names of a canonical MotionAdapter tensor: one name, or two for
 * `pos_embed.pe` (the original keeps a copy in each attention block).
 */
export function originalMotionNames(name: string): string[] {
  const pe = /^(.+?\.motion_modules\.\d+)\.(transformer_blocks\.\d+)\.pos_embed\.pe$/.exec(name);
  if (pe) {
    return [0, 1].map((i) =>
      `${pe[1]}.temporal_transformer.${pe[2]}.attention_blocks.${i}.pos_encoder.pe`
    );
  }
  const out = MOTION_LAYOUT.toFile(name, null);
  if (out === null) throw new Error(`names: ${name} is not a motion-module tensor`);
  return [out];
}
