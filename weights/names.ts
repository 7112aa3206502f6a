/**
 * The ONE weight-name map. Canonical names are diffusers module names (UNet2DConditionModel,
 * AutoencoderKL, transformers CLIPTextModel, MotionAdapter). This file maps every other layout
 * onto them: LDM/CompVis single-file checkpoints, original AnimateDiff motion modules, and the
 * LoRA key spellings (kohya, diffusers/peft, older diffusers attention processors).
 *
 * Block structure is always derived from the names present (levels, layers per block), never
 * hard-coded to SD1.5, following diffusers' `convert_ldm_unet_checkpoint` /
 * `convert_ldm_vae_checkpoint` and `convert_animatediff_motion_module_to_diffusers.py`.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

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

const RESNET_RENAMES: [string, string][] = [
  ["in_layers.0", "norm1"],
  ["in_layers.2", "conv1"],
  ["out_layers.0", "norm2"],
  ["out_layers.3", "conv2"],
  ["emb_layers.1", "time_emb_proj"],
  ["skip_connection", "conv_shortcut"],
];

function renameResnet(rest: string, from: 0 | 1): string {
  for (const pair of RESNET_RENAMES) {
    const a = pair[from], b = pair[1 - from];
    if (rest === a || rest.startsWith(a + ".")) return b + rest.slice(a.length);
  }
  return rest;
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
  for (const n of names) out.set(n, mapOneLdmUNet(n, per, upsampleAtOne));
  return out;
}

function mapOneLdmUNet(n: string, per: number, upsampleAtOne: Set<number>): string | null {
  const fixed: [string, string][] = [
    ["time_embed.0.", "time_embedding.linear_1."],
    ["time_embed.2.", "time_embedding.linear_2."],
    ["input_blocks.0.0.", "conv_in."],
    ["out.0.", "conv_norm_out."],
    ["out.2.", "conv_out."],
  ];
  for (const [a, b] of fixed) if (n.startsWith(a)) return b + n.slice(a.length);
  let m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(n);
  if (m) {
    const i = Number(m[1]), sub = Number(m[2]), rest = m[3];
    const block = Math.floor((i - 1) / per), layer = (i - 1) % per;
    if (sub === 0 && rest.startsWith("op.")) {
      return `down_blocks.${block}.downsamplers.0.conv.${rest.slice(3)}`;
    }
    if (sub === 0) return `down_blocks.${block}.resnets.${layer}.${renameResnet(rest, 0)}`;
    if (sub === 1) return `down_blocks.${block}.attentions.${layer}.${rest}`;
    return null;
  }
  m = /^middle_block\.(\d)\.(.+)$/.exec(n);
  if (m) {
    const rest = m[2];
    if (m[1] === "0") return `mid_block.resnets.0.${renameResnet(rest, 0)}`;
    if (m[1] === "1") return `mid_block.attentions.0.${rest}`;
    if (m[1] === "2") return `mid_block.resnets.1.${renameResnet(rest, 0)}`;
    return null;
  }
  m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(n);
  if (m) {
    const i = Number(m[1]), sub = Number(m[2]), rest = m[3];
    const block = Math.floor(i / per), layer = i % per;
    if (sub === 0) return `up_blocks.${block}.resnets.${layer}.${renameResnet(rest, 0)}`;
    if ((sub === 1 && upsampleAtOne.has(i)) || sub === 2) {
      return rest.startsWith("conv.") ? `up_blocks.${block}.upsamplers.0.${rest}` : null;
    }
    if (sub === 1) return `up_blocks.${block}.attentions.${layer}.${rest}`;
  }
  return null;
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
  const per = opts.layersPerBlock + 1;
  const fixed: [string, string][] = [
    ["time_embedding.linear_1", "time_embed.0"],
    ["time_embedding.linear_2", "time_embed.2"],
    ["conv_in", "input_blocks.0.0"],
    ["conv_norm_out", "out.0"],
    ["conv_out", "out.2"],
  ];
  for (const [a, b] of fixed) if (module === a) return b;
  let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(\..+)?$/.exec(module);
  if (m) {
    const i = 1 + Number(m[1]) * per + Number(m[3]);
    const rest = (m[4] ?? "").slice(1);
    return m[2] === "resnets"
      ? joinPath(`input_blocks.${i}.0`, renameResnet(rest, 1))
      : joinPath(`input_blocks.${i}.1`, rest);
  }
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module);
  if (m) return `input_blocks.${(Number(m[1]) + 1) * per}.0.op`;
  m = /^mid_block\.(resnets|attentions)\.(\d)(\..+)?$/.exec(module);
  if (m) {
    const rest = (m[3] ?? "").slice(1);
    if (m[1] === "attentions") return joinPath("middle_block.1", rest);
    return joinPath(`middle_block.${m[2] === "0" ? 0 : 2}`, renameResnet(rest, 1));
  }
  m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(\..+)?$/.exec(module);
  if (m) {
    const i = Number(m[1]) * per + Number(m[3]);
    const rest = (m[4] ?? "").slice(1);
    return m[2] === "resnets"
      ? joinPath(`output_blocks.${i}.0`, renameResnet(rest, 1))
      : joinPath(`output_blocks.${i}.1`, rest);
  }
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module);
  if (m) {
    const b = Number(m[1]);
    return `output_blocks.${b * per + per - 1}.${opts.upBlockAttention[b] ? 2 : 1}.conv`;
  }
  return null;
}

function joinPath(a: string, b: string): string {
  return b ? `${a}.${b}` : a;
}

// ---------------------------------------------------------------------------------------------
// LDM VAE

const VAE_ATTENTION_RENAMES: Record<string, string> = {
  norm: "group_norm",
  q: "to_q",
  k: "to_k",
  v: "to_v",
  proj_out: "to_out.0",
};

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
    const target = mapOneLdmVae(n, maxUp + 1);
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

function mapOneLdmVae(n: string, upLevels: number): string | null {
  if (/^(post_)?quant_conv\.(weight|bias)$/.test(n)) return n;
  const m0 = /^(encoder|decoder)\.(.+)$/.exec(n);
  if (!m0) return null;
  const side = m0[1], rest = m0[2];
  if (/^conv_(in|out)\.(weight|bias)$/.test(rest)) return n;
  if (/^norm_out\.(weight|bias)$/.test(rest)) return `${side}.conv_norm_out.${rest.slice(9)}`;
  let m = /^mid\.block_(1|2)\.(.+)$/.exec(rest);
  if (m) return `${side}.mid_block.resnets.${Number(m[1]) - 1}.${vaeResnet(m[2])}`;
  m = /^mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(rest);
  if (m) return `${side}.mid_block.attentions.0.${VAE_ATTENTION_RENAMES[m[1]]}.${m[2]}`;
  if (side === "encoder") {
    m = /^down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(rest);
    if (m) return `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${vaeResnet(m[3])}`;
    m = /^down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(rest);
    if (m) return `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
    return null;
  }
  m = /^up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(rest);
  if (m) {
    return `decoder.up_blocks.${upLevels - 1 - Number(m[1])}.resnets.${m[2]}.${vaeResnet(m[3])}`;
  }
  m = /^up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(rest);
  if (m) return `decoder.up_blocks.${upLevels - 1 - Number(m[1])}.upsamplers.0.conv.${m[2]}`;
  return null;
}

function vaeResnet(rest: string): string {
  return rest.startsWith("nin_shortcut.") ? "conv_shortcut." + rest.slice(13) : rest;
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
  return name
    .replace(".temporal_transformer.", ".")
    .replace(".norms.0.", ".norm1.")
    .replace(".norms.1.", ".norm2.")
    .replace(".ff_norm.", ".norm3.")
    .replace(".attention_blocks.0.", ".attn1.")
    .replace(".attention_blocks.1.", ".attn2.");
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
// Inverse maps (canonical -> file layouts), used to write files in every layout

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
  const inverse: Record<string, string> = {
    group_norm: "norm",
    to_q: "q",
    to_k: "k",
    to_v: "v",
    "to_out.0": "proj_out",
  };
  let m =
    /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/
      .exec(name);
  let out: string | null = null;
  if (m) out = `${m[1]}.mid.attn_1.${inverse[m[2]]}.${m[3]}`;
  else if ((m = /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$/.exec(name))) {
    out = `${m[1]}.mid.block_${Number(m[2]) + 1}.${m[3]}`;
  } else if ((m = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(name))) {
    out = `${m[1]}.norm_out.${m[2]}`;
  } else if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name))) {
    out = `encoder.down.${m[1]}.block.${m[2]}.${m[3]}`;
  } else if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(name))) {
    out = `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
  } else if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name))) {
    out = `decoder.up.${levels - 1 - Number(m[1])}.block.${m[2]}.${m[3]}`;
  } else if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(name))) {
    out = `decoder.up.${levels - 1 - Number(m[1])}.upsample.conv.${m[2]}`;
  } else if (/^((encoder|decoder)\.conv_(in|out)|(post_)?quant_conv)\./.test(name)) out = name;
  if (out === null) throw new Error(`names: VAE tensor ${name} has no LDM equivalent`);
  return LDM_VAE + out.replace(".conv_shortcut.", ".nin_shortcut.");
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
  const m = /^(.+?\.motion_modules\.\d+)\.(.+)$/.exec(name);
  if (!m) throw new Error(`names: ${name} is not a motion-module tensor`);
  const head = `${m[1]}.temporal_transformer.`;
  const pe = /^(transformer_blocks\.\d+)\.pos_embed\.pe$/.exec(m[2]);
  if (pe) return [0, 1].map((i) => `${head}${pe[1]}.attention_blocks.${i}.pos_encoder.pe`);
  const rest = m[2]
    .replace(/\.norm1\./, ".norms.0.")
    .replace(/\.norm2\./, ".norms.1.")
    .replace(/\.norm3\./, ".ff_norm.")
    .replace(/\.attn1\./, ".attention_blocks.0.")
    .replace(/\.attn2\./, ".attention_blocks.1.");
  return [head + rest];
}
