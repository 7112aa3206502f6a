/**
 * The key layouts of the files users have, one table each, read in both directions: LDM/CompVis
 * single-file UNet and VAE names and original AnimateDiff motion-module names against the
 * canonical (diffusers) ones. A rule pairs a file template with a canonical template; the same
 * rule maps a file name onto its canonical name and back, so no layout is written twice.
 *
 * Templates: dot-separated segments where `{x}` stands for one segment (or part of one, as in
 * `block_{n}`), `{x:a|b}` for one of the listed values, and a final `.{rest}` for whatever
 * follows (possibly nothing: module paths map as well as tensor names). Block indices that the
 * layouts number differently (LDM's flat `input_blocks.{i}` against diffusers'
 * `down_blocks.{b}.resnets.{l}`) go through an {@link Index}, a bijection written once with both
 * of its directions side by side; segment renames (`in_layers.0` = `norm1`) are pairs.
 * @module
 */

/** Values of a template's placeholders. */
export type Vars = Record<string, string>;

/** Computed placeholders: the file's values -> the canonical ones, and back (null: no match). */
export interface Index<C> {
  toCanon(v: Vars, ctx: C): Vars | null;
  toFile(v: Vars, ctx: C): Vars | null;
}

/** One rule of a layout. */
export interface Rule<C> {
  file: string;
  canon: string;
  index?: Index<C>;
  /** Segment renames inside `{rest}`, as [file, canonical] pairs. */
  renames?: readonly (readonly [string, string])[];
  /** The rule applies only when one of the renames does (the rest must be one of them). */
  strict?: boolean;
}

interface Compiled<C> extends Rule<C> {
  re: { file: RegExp; canon: RegExp };
}

function compile(template: string): RegExp {
  let src = "";
  const parts = template.split(/(\{[a-z]+(?::[^}]*)?\})/i);
  for (const p of parts) {
    const m = /^\{([a-z]+)(?::([^}]*))?\}$/i.exec(p);
    if (!m) src += p.replace(/[.*+?^$()|[\]\\]/g, "\\$&");
    else if (m[1] === "rest") src = src.replace(/\\\.$/, "") + "(?:\\.(?<rest>.+))?";
    else src += `(?<${m[1]}>${m[2] ? m[2] : "[^.]+"})`;
  }
  return new RegExp(`^${src}$`);
}

function fill(template: string, v: Vars): string {
  return template.replace(
    /\.?\{([a-z]+)(?::([^}]*))?\}/gi,
    (whole, name: string, only?: string) => {
      const dot = whole.startsWith(".") ? "." : "";
      // A placeholder with one allowed value needs none given.
      const value = v[name] ?? (only && !only.includes("|") ? only : "");
      if (name === "rest" && value === "") return "";
      return dot + value;
    },
  );
}

/** Replaces each occurrence of a segment sequence `from[k]` by `to[k]` (first pair that fits). */
function renameSegments(
  value: string,
  pairs: readonly (readonly [string, string])[],
  dir: 0 | 1,
): { value: string; renamed: boolean } {
  const segs = value.split(".");
  const out: string[] = [];
  let renamed = false;
  for (let i = 0; i < segs.length;) {
    const hit = pairs.find((p) => {
      const from = p[dir].split(".");
      return from.every((s, k) => segs[i + k] === s);
    });
    if (hit) {
      out.push(hit[1 - dir]);
      i += hit[dir].split(".").length;
      renamed = true;
    } else out.push(segs[i++]);
  }
  return { value: out.join("."), renamed };
}

/** A layout: its rules, tried in order in either direction. */
export class Layout<C> {
  readonly #rules: Compiled<C>[];
  constructor(rules: readonly Rule<C>[]) {
    this.#rules = rules.map((r) => ({
      ...r,
      re: { file: compile(r.file), canon: compile(r.canon) },
    }));
  }

  /** The canonical name of a file name (or module path), or null when no rule fits. */
  toCanon(name: string, ctx: C): string | null {
    return this.#map(name, ctx, 0);
  }

  /** The file name of a canonical name (or module path), or null when no rule fits. */
  toFile(name: string, ctx: C): string | null {
    return this.#map(name, ctx, 1);
  }

  #map(name: string, ctx: C, dir: 0 | 1): string | null {
    for (const r of this.#rules) {
      const m = (dir === 0 ? r.re.file : r.re.canon).exec(name);
      if (!m) continue;
      let v: Vars | null = { ...m.groups };
      if (r.index) v = dir === 0 ? r.index.toCanon(v, ctx) : r.index.toFile(v, ctx);
      if (!v) continue;
      if (r.renames && v.rest) {
        const { value, renamed } = renameSegments(v.rest, r.renames, dir);
        if (r.strict && !renamed) continue;
        v = { ...v, rest: value };
      } else if (r.strict) continue;
      return fill(dir === 0 ? r.canon : r.file, v);
    }
    return null;
  }
}

const int = (s: string) => /^\d+$/.test(s) ? Number(s) : NaN;

// ---------------------------------------------------------------------------------------------
// LDM UNet (model.diffusion_model.*)

/** What the LDM UNet rules need: blocks per level, and where the upsamplers sit. */
export interface LdmUNetContext {
  /** Layers per block + 1 (LDM counts a level's resnets and its sampler together). */
  per: number;
  /** File -> canonical: output blocks whose sub-module 1 is an upsampler (no attention). */
  upsampleAtOne?: ReadonlySet<number>;
  /** Canonical -> file: up blocks with attention (their upsampler is sub-module 2). */
  upBlockAttention?: readonly boolean[];
}

const RESNET: readonly (readonly [string, string])[] = [
  ["in_layers.0", "norm1"],
  ["in_layers.2", "conv1"],
  ["out_layers.0", "norm2"],
  ["out_layers.3", "conv2"],
  ["emb_layers.1", "time_emb_proj"],
  ["skip_connection", "conv_shortcut"],
];

/** input_blocks.{i} = 1 + b * per + l. */
const DOWN: Index<LdmUNetContext> = {
  toCanon: ({ i, ...v }, c) => {
    const n = int(i) - 1;
    return n >= 0 ? { ...v, b: String(Math.floor(n / c.per)), l: String(n % c.per) } : null;
  },
  toFile: ({ b, l, ...v }, c) => ({ ...v, i: String(1 + int(b) * c.per + int(l)) }),
};
/** input_blocks.{i}.0.op = the downsampler of level b: i = (b + 1) * per. */
const DOWNSAMPLE: Index<LdmUNetContext> = {
  toCanon: ({ i, ...v }, c) =>
    int(i) > 0 && int(i) % c.per === 0 ? { ...v, b: String(int(i) / c.per - 1) } : null,
  toFile: ({ b, ...v }, c) => ({ ...v, i: String((int(b) + 1) * c.per) }),
};
/** output_blocks.{i} = b * per + l; sub-module 1 is an attention unless it is an upsampler. */
const UP: Index<LdmUNetContext> = {
  toCanon: ({ i, ...v }, c) =>
    v.k === "1" && c.upsampleAtOne?.has(int(i))
      ? null
      : { ...v, b: String(Math.floor(int(i) / c.per)), l: String(int(i) % c.per) },
  toFile: ({ b, l, ...v }, c) => ({ ...v, i: String(int(b) * c.per + int(l)) }),
};
/** The upsampler of up block b: output_blocks.{b * per + per - 1}.{1 or 2 after an attention}. */
const UPSAMPLE: Index<LdmUNetContext> = {
  toCanon: ({ i, k, ...v }, c) =>
    k === "2" || (k === "1" && c.upsampleAtOne?.has(int(i)))
      ? { ...v, b: String(Math.floor(int(i) / c.per)) }
      : null,
  toFile: ({ b, ...v }, c) => ({
    ...v,
    i: String(int(b) * c.per + c.per - 1),
    k: c.upBlockAttention?.[int(b)] ? "2" : "1",
  }),
};

/** LDM UNet names (prefix removed) against UNet2DConditionModel names. */
export const LDM_UNET_LAYOUT = new Layout<LdmUNetContext>([
  { file: "time_embed.0.{rest}", canon: "time_embedding.linear_1.{rest}" },
  { file: "time_embed.2.{rest}", canon: "time_embedding.linear_2.{rest}" },
  { file: "input_blocks.0.0.{rest}", canon: "conv_in.{rest}" },
  { file: "out.0.{rest}", canon: "conv_norm_out.{rest}" },
  { file: "out.2.{rest}", canon: "conv_out.{rest}" },
  {
    file: "input_blocks.{i}.0.op.{rest}",
    canon: "down_blocks.{b}.downsamplers.0.conv.{rest}",
    index: DOWNSAMPLE,
  },
  {
    file: "input_blocks.{i}.0.{rest}",
    canon: "down_blocks.{b}.resnets.{l}.{rest}",
    index: DOWN,
    renames: RESNET,
  },
  {
    file: "input_blocks.{i}.1.{rest}",
    canon: "down_blocks.{b}.attentions.{l}.{rest}",
    index: DOWN,
  },
  { file: "middle_block.0.{rest}", canon: "mid_block.resnets.0.{rest}", renames: RESNET },
  { file: "middle_block.1.{rest}", canon: "mid_block.attentions.0.{rest}" },
  { file: "middle_block.2.{rest}", canon: "mid_block.resnets.1.{rest}", renames: RESNET },
  {
    file: "output_blocks.{i}.{k:1|2}.conv.{rest}",
    canon: "up_blocks.{b}.upsamplers.0.conv.{rest}",
    index: UPSAMPLE,
  },
  {
    file: "output_blocks.{i}.0.{rest}",
    canon: "up_blocks.{b}.resnets.{l}.{rest}",
    index: UP,
    renames: RESNET,
  },
  {
    file: "output_blocks.{i}.{k:1}.{rest}",
    canon: "up_blocks.{b}.attentions.{l}.{rest}",
    index: UP,
  },
]);

// ---------------------------------------------------------------------------------------------
// LDM VAE (first_stage_model.*)

/** What the LDM VAE rules need: the decoder's level count (LDM numbers up blocks the other way). */
export interface LdmVaeContext {
  levels: number;
}

/** decoder.up.{u} = up_blocks.{levels - 1 - u}: its own inverse. */
const REVERSED_LEVEL: Index<LdmVaeContext> = {
  toCanon: ({ u, ...v }, c) => ({ ...v, u: String(c.levels - 1 - int(u)) }),
  toFile: ({ u, ...v }, c) => ({ ...v, u: String(c.levels - 1 - int(u)) }),
};
/** mid.block_{n} = mid_block.resnets.{n - 1}. */
const MID_RESNET: Index<LdmVaeContext> = {
  toCanon: ({ n, ...v }) => int(n) >= 1 ? { ...v, r: String(int(n) - 1) } : null,
  toFile: ({ r, ...v }) => ({ ...v, n: String(int(r) + 1) }),
};
const SHORTCUT: readonly (readonly [string, string])[] = [["nin_shortcut", "conv_shortcut"]];
const VAE_ATTENTION: readonly (readonly [string, string])[] = [
  ["norm", "group_norm"],
  ["q", "to_q"],
  ["k", "to_k"],
  ["v", "to_v"],
  ["proj_out", "to_out.0"],
];
const SIDE = "{side:encoder|decoder}";
const QUANT = "{q:quant_conv|post_quant_conv}";
const CONV = "{c:conv_in|conv_out}";

/** LDM VAE names (prefix removed) against AutoencoderKL names. */
export const LDM_VAE_LAYOUT = new Layout<LdmVaeContext>([
  { file: `${QUANT}.{rest}`, canon: `${QUANT}.{rest}` },
  { file: `${SIDE}.${CONV}.{rest}`, canon: `${SIDE}.${CONV}.{rest}` },
  { file: `${SIDE}.norm_out.{rest}`, canon: `${SIDE}.conv_norm_out.{rest}` },
  {
    file: `${SIDE}.mid.block_{n}.{rest}`,
    canon: `${SIDE}.mid_block.resnets.{r}.{rest}`,
    index: MID_RESNET,
    renames: SHORTCUT,
  },
  {
    file: `${SIDE}.mid.attn_1.{rest}`,
    canon: `${SIDE}.mid_block.attentions.0.{rest}`,
    renames: VAE_ATTENTION,
    strict: true,
  },
  {
    file: "encoder.down.{d}.block.{r}.{rest}",
    canon: "encoder.down_blocks.{d}.resnets.{r}.{rest}",
    renames: SHORTCUT,
  },
  {
    file: "encoder.down.{d}.downsample.conv.{rest}",
    canon: "encoder.down_blocks.{d}.downsamplers.0.conv.{rest}",
  },
  {
    file: "decoder.up.{u}.block.{r}.{rest}",
    canon: "decoder.up_blocks.{u}.resnets.{r}.{rest}",
    index: REVERSED_LEVEL,
    renames: SHORTCUT,
  },
  {
    file: "decoder.up.{u}.upsample.conv.{rest}",
    canon: "decoder.up_blocks.{u}.upsamplers.0.conv.{rest}",
    index: REVERSED_LEVEL,
  },
]);

// ---------------------------------------------------------------------------------------------
// Original AnimateDiff motion modules

const TEMPORAL: readonly (readonly [string, string])[] = [
  ["norms.0", "norm1"],
  ["norms.1", "norm2"],
  ["ff_norm", "norm3"],
  ["attention_blocks.0", "attn1"],
  ["attention_blocks.1", "attn2"],
];
const MODULE = "{blk:down_blocks|up_blocks}.{b}.motion_modules.{m}";

/**
 * Original AnimateDiff motion-module names against MotionAdapter names (the position tables
 * excepted: the original keeps a copy in each attention block, MotionAdapter one per transformer
 * block; weights/names.ts maps them).
 */
export const MOTION_LAYOUT = new Layout<null>([
  { file: `${MODULE}.temporal_transformer.{rest}`, canon: `${MODULE}.{rest}`, renames: TEMPORAL },
  {
    file: "mid_block.motion_modules.{m}.temporal_transformer.{rest}",
    canon: "mid_block.motion_modules.{m}.{rest}",
    renames: TEMPORAL,
  },
]);
