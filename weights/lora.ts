/**
 * LoRA loading (kohya, diffusers/peft, older diffusers attention-processor layouts) and lazy
 * merging: `W' = W + scale * (alpha / rank) * (up @ down)` (no alpha = peft: factor 1). Merged
 * tensors carry their pending updates (`HostTensor.lowRank`): the engine's WeightStore merges
 * them on the GPU as it uploads; `read()` merges on the CPU for everything else. Conv LoRAs
 * (LoCon: down [r, in, kh, kw], up [out, r, 1, 1]) merge on the flattened kernel. Kohya's
 * underscore names are resolved against the target model's actual module names.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { SD15_CLIP_CONFIG, SD15_UNET_CONFIG, SD15_VAE_CONFIG } from "./model_config.ts";
import type {
  Architecture,
  HostTensor,
  LowRankMerge,
  LowRankUpdate,
  ModelWeights,
  MotionWeights,
  TensorMap,
} from "./types.ts";
import { type LycorisFactors, lycorisFactors } from "./lycoris.ts";
import { addProduct } from "./lowrank.ts";
import { numelOf } from "./dtype.ts";
import { openTensorFile } from "./open.ts";
import {
  kohyaName,
  ldmUNetModuleName,
  type LoraKey,
  type LycorisRole,
  mapMotionName,
  parseLoraKey,
} from "./names.ts";
import { detectKind, KIND_DESCRIPTIONS } from "./detect.ts";

/** Which model part a LoRA module changes. */
export type LoraPart = "unet" | "textEncoder" | "motion";

/**
 * How a module's update is factored: a LoRA's `up @ down` (merged on the GPU when weights
 * upload), or a LyCORIS LoHa / LoKr module's dense delta (weights/lycoris.ts, merged on the CPU).
 */
export type LoraFactors =
  | {
    kind: "lora";
    /** Down projection [rank, in] or [rank, in, kh, kw]. */
    down: HostTensor;
    /** Up projection [out, rank] or [out, rank, 1, 1]. */
    up: HostTensor;
  }
  | LycorisFactors;

/** One module's update. */
export interface LoraModule {
  factors: LoraFactors;
  /** Network alpha; undefined = rank (factor 1). LyCORIS deltas already include it. */
  alpha?: number;
  /** Model part the module belongs to. */
  part: LoraPart;
  /** The module path as the file spells it. */
  key: string;
}

/** One module as read from the file, before resolution against a model. */
export interface RawLoraModule {
  /** Module path as the file spells it. */
  module: string;
  /** Naming scheme of `module`. */
  scheme: LoraKey["scheme"];
  factors: LoraFactors;
  /** Network alpha; undefined = rank. */
  alpha?: number;
}

/** Rank of a module's update (undefined for a LoKr of two whole factors). */
export function loraRank(f: LoraFactors): number | undefined {
  return f.kind === "lora" ? f.down.shape[0] : f.rank;
}

/** A loaded LoRA file. */
export interface LoraWeights {
  /** The file the LoRA came from. */
  readonly source: string;
  /** File layout. */
  readonly kind: "lora-kohya" | "lora-diffusers" | "motion-lora";
  /** Modules keyed by canonical target module path (resolved against the model given to loadLora, else standard SD1.5). */
  readonly modules: Map<string, LoraModule>;
  /** Modules as read, before resolution (applyLoras resolves these against its model). */
  readonly raw: RawLoraModule[];
  /** Closes the file. */
  close(): void;
}

/** Module names of a target model that LoRA names are resolved against. */
export interface LoraTargets {
  /** Canonical module -> part and weight shape (null: standard SD1.5 names, shapes not checked). */
  modules: Map<string, { part: LoraPart; shape: readonly number[] | null }>;
  /** Kohya underscore spelling (diffusers and LDM forms) -> canonical module. */
  kohya: Map<string, string>;
}

const LIST_LIMIT = 5;

function shapeMapOf(t: TensorMap): Map<string, readonly number[]> {
  return new Map([...t].map(([k, v]) => [k, v.shape]));
}

/**
 * Standard SD1.5's tensors, for LoRAs resolved without a model (none without the architectures'
 * description: only motion-module names resolve then).
 */
function sd15Description(
  architecture: Architecture | undefined,
): { unet: Map<string, readonly number[]>; textEncoder: Map<string, readonly number[]> } {
  if (!architecture) return { unet: new Map(), textEncoder: new Map() };
  return architecture.model({
    unet: SD15_UNET_CONFIG,
    vae: SD15_VAE_CONFIG,
    clip: SD15_CLIP_CONFIG,
  });
}

/**
 * Builds the resolution tables of a model (and optionally its motion modules).
 * @example
 * ```ts
 * const targets = loraTargets(model);
 * targets.kohya.get("input_blocks_1_1_proj_in"); // "down_blocks.0.attentions.0.proj_in"
 * ```
 */
export function loraTargets(
  model?: ModelWeights,
  motion?: MotionWeights,
  architecture?: Architecture,
): LoraTargets {
  const sd15 = model ? null : sd15Description(architecture);
  const unet = model ? shapeMapOf(model.unet) : sd15!.unet;
  const te = model ? shapeMapOf(model.textEncoder) : sd15!.textEncoder;
  const cfg = model?.unetConfig ?? SD15_UNET_CONFIG;
  const modules = new Map<string, { part: LoraPart; shape: readonly number[] | null }>();
  const kohya = new Map<string, string>();
  const add = (names: Map<string, readonly number[]>, part: LoraPart) => {
    for (const [name, shape] of names) {
      if (!name.endsWith(".weight")) continue;
      const module = name.slice(0, -7);
      modules.set(module, { part, shape: model || part === "motion" ? shape : null });
      kohya.set(kohyaName(module), module);
      if (part === "unet") {
        const ldm = ldmUNetModuleName(module, cfg);
        if (ldm) kohya.set(kohyaName(ldm), module);
      }
    }
  };
  add(unet, "unet");
  add(te, "textEncoder");
  if (motion) add(shapeMapOf(motion.tensors), "motion");
  return { modules, kohya };
}

/** Canonical target of a raw module, or null. Motion-looking names resolve to motion even without motion targets. */
function resolveModule(
  raw: RawLoraModule,
  targets: LoraTargets,
): { target: string; part: LoraPart } | null {
  const known = (m: string | undefined) => {
    const t = m === undefined ? undefined : targets.modules.get(m);
    return t ? { target: m!, part: t.part } : null;
  };
  const motionish = (m: string) => {
    const mapped = mapMotionName(m + ".weight");
    if (mapped === null || mapped === "ignore") return null;
    const target = mapped.slice(0, -7);
    return known(target) ?? { target, part: "motion" as const };
  };
  switch (raw.scheme) {
    case "kohya-unet": {
      const r = known(targets.kohya.get(raw.module));
      return r ??
        (raw.module.includes("motion_modules") ? { target: raw.module, part: "motion" } : null);
    }
    case "kohya-te":
      return known(targets.kohya.get(raw.module)) ??
        known(targets.kohya.get("text_model_" + raw.module));
    case "textEncoder":
      return known(raw.module) ?? known("text_model." + raw.module);
    default:
      return known(raw.module) ?? motionish(raw.module);
  }
}

/**
 * Resolves a LoRA's raw modules against a model; throws naming the file and the first bad modules
 * when some do not exist there or their shapes do not fit (e.g. an SDXL LoRA on SD1.5).
 */
export function resolveLora(
  source: string,
  raw: RawLoraModule[],
  targets: LoraTargets,
): Map<string, LoraModule> {
  const out = new Map<string, LoraModule>();
  const missing: string[] = [], wrong: string[] = [];
  for (const r of raw) {
    const hit = resolveModule(r, targets);
    if (!hit) {
      missing.push(r.module);
      continue;
    }
    const w = targets.modules.get(hit.target)?.shape;
    const f = r.factors;
    if (w && f.kind === "lora" && !fits(w, f.down.shape, f.up.shape)) {
      wrong.push(`${hit.target} (weight [${w}], down [${f.down.shape}], up [${f.up.shape}])`);
      continue;
    }
    if (
      w && f.kind !== "lora" && (f.delta.shape[0] !== w[0] || numelOf(f.delta.shape) !== numelOf(w))
    ) {
      wrong.push(`${hit.target} (weight [${w}], ${f.kind} update [${f.delta.shape}])`);
      continue;
    }
    out.set(hit.target, { factors: f, alpha: r.alpha, part: hit.part, key: r.module });
  }
  if (missing.length || wrong.length) {
    const parts = [];
    if (missing.length) {
      parts.push(`modules not in the model: ${missing.slice(0, LIST_LIMIT).join(", ")}`);
    }
    if (wrong.length) {
      parts.push(`shapes that do not fit: ${wrong.slice(0, LIST_LIMIT).join(", ")}`);
    }
    throw new InputError(
      `${source}: LoRA does not match the model (${
        missing.length + wrong.length
      } of ${raw.length} modules; ` +
        `is it for another base model, e.g. SDXL?): ${parts.join("; ")}`,
    );
  }
  return out;
}

function fits(w: readonly number[], down: readonly number[], up: readonly number[]): boolean {
  const rank = down[0];
  if (up.length < 2 || up[1] !== rank || up[0] !== w[0] || numelOf(up) !== w[0] * rank) {
    return false;
  }
  if (numelOf(down) / rank !== numelOf(w) / w[0]) return false;
  return down.length === 2 ||
    w.length === down.length && down.slice(1).every((d, i) => d === w[i + 1]);
}

/**
 * Loads a LoRA file (kohya or diffusers/peft layout). Modules are resolved against `model` (and
 * `motion`) when given, else against standard SD1.5 module names; {@link applyLoras} re-resolves
 * against the model it merges into.
 * @example
 * ```ts
 * const lora = await loadLora("detail.safetensors");
 * const merged = applyLoras(model, [{ lora, scale: 0.8 }]);
 * ```
 */
export async function loadLora(
  path: string,
  options: { model?: ModelWeights; motion?: MotionWeights; architecture?: Architecture } = {},
): Promise<LoraWeights> {
  const file = await openTensorFile(path);
  try {
    const kind = detectKind(file.tensors);
    if (kind !== "lora-kohya" && kind !== "lora-diffusers" && kind !== "motion-lora") {
      throw new InputError(
        `${path}: this is ${KIND_DESCRIPTIONS[kind]}; expected a LoRA (kohya or diffusers/peft)`,
      );
    }
    type Group = {
      module: string;
      scheme: LoraKey["scheme"];
      alpha?: number;
      down?: HostTensor;
      up?: HostTensor;
      lycoris: Partial<Record<LycorisRole, HostTensor>>;
    };
    const groups = new Map<string, Group>();
    const unknown: string[] = [];
    for (const [name, t] of file.tensors) {
      const k = parseLoraKey(name);
      if (!k) {
        unknown.push(name);
        continue;
      }
      const id = `${k.scheme}:${k.module}`;
      const g: Group = groups.get(id) ?? { module: k.module, scheme: k.scheme, lycoris: {} };
      if (k.role === "alpha") {
        const alpha = (await t.read())[0];
        if (!Number.isFinite(alpha)) {
          throw new InputError(`${path}: ${name} is ${alpha}, expected a finite network alpha`);
        }
        g.alpha = alpha;
      } else if (k.role === "down" || k.role === "up") g[k.role] = t;
      else g.lycoris[k.role] = t;
      groups.set(id, g);
    }
    if (unknown.length) {
      throw new InputError(
        `${path}: tensors this LoRA loader does not understand (DoRA, SDXL or other names?): ` +
          unknown.slice(0, LIST_LIMIT).join(", "),
      );
    }
    const raw: RawLoraModule[] = [];
    for (const g of groups.values()) {
      const lycoris = Object.keys(g.lycoris).length > 0;
      let factors: LoraFactors;
      if (lycoris) {
        if (g.down || g.up) {
          throw new InputError(`${path}: module ${g.module} mixes LoRA and LyCORIS factors`);
        }
        try {
          factors = lycorisFactors(g.module, g.lycoris, g.alpha);
        } catch (e) {
          throw new InputError(`${path}: ${(e as Error).message}`);
        }
      } else {
        if (!g.down || !g.up) {
          throw new InputError(
            `${path}: LoRA module ${g.module} lacks its ${g.down ? "up" : "down"} weight`,
          );
        }
        factors = { kind: "lora", down: g.down, up: g.up };
      }
      raw.push({ module: g.module, scheme: g.scheme, factors, alpha: g.alpha });
    }
    const modules = resolveLora(
      path,
      raw,
      loraTargets(options.model, options.motion, options.architecture),
    );
    return { source: path, kind, modules, raw, close: () => file.close() };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** A LoRA with its strength. */
export interface ScaledLora {
  /** The loaded LoRA. */
  lora: LoraWeights;
  /** Strength (1 = as trained). */
  scale: number;
}

type Update = { module: LoraModule; scale: number };

function mergedTensor(base: HostTensor, updates: Update[]): HostTensor {
  const lowRank: LowRankMerge = { base, updates: [] };
  const dense: { delta: HostTensor; scale: number }[] = [];
  for (const { module, scale } of updates) {
    const f = module.factors;
    if (f.kind === "lora") {
      const rank = f.down.shape[0];
      const factor = scale * (module.alpha === undefined ? 1 : module.alpha / rank);
      (lowRank.updates as LowRankUpdate[]).push({ up: f.up, down: f.down, factor });
    } else dense.push({ delta: f.delta, scale });
  }
  const shape = base.shape;
  const low: HostTensor = { shape, dtype: "F32", read: () => mergeOnCpu(lowRank), lowRank };
  if (dense.length === 0) return low;
  // LyCORIS deltas are dense: the whole merge runs on the CPU (no lowRank for the GPU loader).
  return {
    shape,
    dtype: "F32",
    read: async () => {
      const w = await low.read();
      for (const { delta, scale } of dense) {
        const d = await delta.read();
        for (let i = 0; i < w.length; i++) w[i] += scale * d[i];
      }
      return w;
    },
  };
}

/** `base + sum(factor * up @ down)` on the CPU. */
export async function mergeOnCpu({ base, updates }: LowRankMerge): Promise<Float32Array> {
  const w = await base.read();
  for (const { up, down, factor } of updates) {
    addProduct(w, await up.read(), await down.read(), { rank: down.shape[0], factor });
  }
  return w;
}

function mergeInto(tensors: TensorMap, updates: Map<string, Update[]>): TensorMap {
  const out: TensorMap = new Map(tensors);
  for (const [module, list] of updates) {
    const name = `${module}.weight`;
    const base = tensors.get(name);
    if (!base) throw new Error(`LoRA merge: target tensor ${name} not found`);
    out.set(name, mergedTensor(base, list));
  }
  return out;
}

function collect(
  targets: LoraTargets,
  loras: ScaledLora[],
  parts: LoraPart[],
): Map<LoraPart, Map<string, Update[]>> {
  const byPart = new Map<LoraPart, Map<string, Update[]>>(parts.map((p) => [p, new Map()]));
  for (const { lora, scale } of loras) {
    for (const [target, module] of resolveLora(lora.source, lora.raw, targets)) {
      const m = byPart.get(module.part);
      if (!m) continue;
      m.set(target, [...(m.get(target) ?? []), { module, scale }]);
    }
  }
  return byPart;
}

/**
 * Returns a model whose LoRA-targeted UNet / text-encoder tensors merge lazily on read();
 * several LoRAs on one module are summed. Motion-module parts are left to {@link applyMotionLoras}.
 * @example
 * ```ts
 * const merged = applyLoras(model, [{ lora, scale: 0.8 }]);
 * ```
 */
export function applyLoras(model: ModelWeights, loras: ScaledLora[]): ModelWeights {
  const byPart = collect(loraTargets(model), loras, ["unet", "textEncoder"]);
  return {
    ...model,
    unet: mergeInto(model.unet, byPart.get("unet")!),
    textEncoder: mergeInto(model.textEncoder, byPart.get("textEncoder")!),
    close: () => model.close(),
  };
}

/** Applies the motion-module parts of LoRAs (AnimateDiff motion LoRAs) to motion weights. */
export function applyMotionLoras(
  motion: MotionWeights,
  loras: ScaledLora[],
  options: { model?: ModelWeights; architecture?: Architecture } = {},
): MotionWeights {
  const byPart = collect(
    loraTargets(options.model, motion, options.architecture),
    loras,
    ["motion"],
  );
  return {
    ...motion,
    tensors: mergeInto(motion.tensors, byPart.get("motion")!),
    close: () => motion.close(),
  };
}
