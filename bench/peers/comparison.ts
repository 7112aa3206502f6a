/**
 * The comparison shapes of the peer bench (issue 2): every f32 case of the kernel case tables
 * whose note starts with "comparison", with the geometry the peers need, deterministic host
 * inputs in Zoetrope's layouts, and Zoetrope's own output on them (the peers are checked
 * against it).
 * @module
 */

import type { KernelCase } from "../case.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import { attention } from "../../kernels/attention.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { groupNorm } from "../../kernels/group_norm.ts";
import { matmul } from "../../kernels/matmul.ts";
import {
  type AttentionCase,
  caseInputs,
  cases as attentionCases,
} from "../../tests/kernels/attention_cases.ts";
import {
  cases as conv2dCases,
  conv2dGeometry,
  conv2dInputs,
  conv2dSpecs,
} from "../../tests/kernels/conv2d_cases.ts";
import { cases as groupNormCases, GROUP_NORM_EPS } from "../../tests/kernels/group_norm_cases.ts";
import {
  cases as matmulCases,
  matmulInputs,
  matmulSpecs,
} from "../../tests/kernels/matmul_cases.ts";
import { randomArray } from "../../tests/assert.ts";

/** MatMul `[M, K] x [K, N]` (B is a constant weight for the peers). */
export interface MatmulComparison {
  op: "matmul";
  m: number;
  k: number;
  n: number;
}

/** Conv2d NCHW, square kernel, stride 1, with bias and optional residual add. */
export interface Conv2dComparison {
  op: "conv2d";
  n: number;
  c: number;
  h: number;
  w: number;
  cout: number;
  kernel: number;
  padding: number;
  bias: boolean;
  residual: boolean;
}

/** Self/cross attention of `bh = batch * heads` pairs, scale 1/sqrt(d), no mask. */
export interface AttentionComparison {
  op: "attention";
  bh: number;
  heads: number;
  lq: number;
  lk: number;
  d: number;
}

/** GroupNorm NCHW with per-channel affine. */
export interface GroupNormComparison {
  op: "group_norm";
  n: number;
  c: number;
  h: number;
  w: number;
  groups: number;
  eps: number;
}

/** One comparison shape. */
export type Geometry =
  | MatmulComparison
  | Conv2dComparison
  | AttentionComparison
  | GroupNormComparison;

/** A comparison: its geometry and the Zoetrope case timed for it. */
export interface Comparison {
  /** Printed shape, e.g. "matmul 256x256x256". */
  label: string;
  geometry: Geometry;
  /** The f32 case of the kernel case table (the same `setup` the kernel bench times). */
  ours: KernelCase;
  /** Floating-point operations of one run (as the case table counts them), if any. */
  flops?: number;
}

/**
 * Host inputs in Zoetrope's layouts: matmul `a [M,K]`, `b [K,N]`; conv2d `x [N,C,H,W]`,
 * `w [Cout,C,k,k]`, `bias [Cout]`, `residual [N,Cout,H,W]`; attention `q`, `k`, `v`
 * `[B, L, H*d]`; group_norm `x [N,C,H,W]`, `gamma`, `beta [C]`.
 */
export type HostInputs = Record<string, Float32Array>;

function isComparison(c: KernelCase): boolean {
  return c.dtype === "f32" && (c.note ?? "").startsWith("comparison");
}

const same = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, i) => v === b[i]);

function matmulComparison(c: KernelCase): Comparison {
  const spec = matmulSpecs.find((s) => same(s.shape, c.shape));
  if (!spec || spec.batch || spec.transposeB || spec.bias || spec.residual || spec.activation) {
    throw new Error(`peers: matmul comparison ${c.shape} must be a plain A x B case`);
  }
  const [m, k, n] = c.shape;
  return { label: `matmul ${m}x${k}x${n}`, geometry: { op: "matmul", m, k, n }, ours: c };
}

function conv2dComparison(c: KernelCase): Comparison {
  const spec = conv2dSpecs.find((s) => same(s.shape, c.shape));
  const [n, ch, h, w, cout, kernel, stride = 1] = c.shape;
  if (!spec || stride !== 1) throw new Error(`peers: conv2d comparison ${c.shape} needs stride 1`);
  const g = conv2dGeometry(spec);
  return {
    label: `conv2d ${kernel}x${kernel} N${n} C${ch} ${h}x${w}->${cout}${
      spec.residual ? " +res" : ""
    }`,
    geometry: {
      op: "conv2d",
      n,
      c: ch,
      h,
      w,
      cout,
      kernel,
      padding: g.padding,
      bias: spec.bias ?? false,
      residual: spec.residual ?? false,
    },
    ours: c,
  };
}

function attentionComparison(c: AttentionCase): Comparison {
  const [bh, lq, lk, d] = c.shape;
  if (c.causal || c.kvBroadcast !== 1) {
    throw new Error(`peers: attention comparison ${c.shape} must be unmasked, kvBroadcast 1`);
  }
  return {
    label: `attention bh${bh} ${lq}x${lk} d${d}`,
    geometry: { op: "attention", bh, heads: c.heads, lq, lk, d },
    ours: c,
  };
}

function groupNormComparison(c: KernelCase): Comparison {
  const [n, ch, h, w, groups, frames = 1] = c.shape;
  if (frames !== 1 || (c.note ?? "").includes("silu")) {
    throw new Error(`peers: group_norm comparison ${c.shape} must be plain (no frames, no silu)`);
  }
  return {
    label: `group_norm N${n} C${ch} ${h}x${w} g${groups}`,
    geometry: { op: "group_norm", n, c: ch, h, w, groups, eps: GROUP_NORM_EPS },
    ours: c,
  };
}

/**
 * The comparison shapes, in case-table order (matmul, conv2d, attention, group_norm).
 *
 * @example
 * ```ts
 * for (const c of comparisons()) console.log(c.label);
 * ```
 */
export function comparisons(): Comparison[] {
  const withFlops = (c: Comparison) => ({ ...c, flops: c.ours.flops });
  return [
    ...matmulCases.filter(isComparison).map(matmulComparison),
    ...conv2dCases.filter(isComparison).map(conv2dComparison),
    ...(attentionCases.filter(isComparison) as AttentionCase[]).map(attentionComparison),
    ...groupNormCases.filter(isComparison).map(groupNormComparison),
  ].map(withFlops);
}

/** Deterministic host inputs of a comparison (the same data the case table uses). */
export function hostInputs(c: Comparison): HostInputs {
  const g = c.geometry;
  switch (g.op) {
    case "matmul": {
      const spec = matmulSpecs.find((s) => same(s.shape, c.ours.shape))!;
      const h = matmulInputs(spec);
      return { a: h.a, b: h.b };
    }
    case "conv2d": {
      const spec = conv2dSpecs.find((s) => same(s.shape, c.ours.shape))!;
      const h = conv2dInputs(spec);
      const out: HostInputs = { x: h.x, w: h.w };
      if (h.bias) out.bias = h.bias;
      if (h.residual) out.residual = h.residual;
      return out;
    }
    case "attention": {
      const h = caseInputs(c.ours as AttentionCase);
      return { q: h.q, k: h.k, v: h.v };
    }
    case "group_norm": {
      const size = g.n * g.c * g.h * g.w;
      return {
        x: randomArray(size, 11, 2),
        gamma: randomArray(g.c, 12, 1),
        beta: randomArray(g.c, 13, 1),
      };
    }
  }
}

/** Zoetrope's output on `inputs` (f32), in its own layout; the peers are compared with it. */
export async function oursOutput(
  gpu: Gpu,
  c: Comparison,
  inputs: HostInputs,
): Promise<Float32Array> {
  const g = c.geometry;
  const up = (name: string, shape: number[]) => gpu.upload(inputs[name], shape, "f32", name);
  const held = [];
  try {
    let out;
    switch (g.op) {
      case "matmul": {
        const a = up("a", [g.m, g.k]), b = up("b", [g.k, g.n]);
        held.push(a, b);
        out = matmul(gpu, a, b);
        break;
      }
      case "conv2d": {
        const x = up("x", [g.n, g.c, g.h, g.w]);
        const w = up("w", [g.cout, g.c, g.kernel, g.kernel]);
        const bias = g.bias ? up("bias", [g.cout]) : undefined;
        const residual = g.residual ? up("residual", [g.n, g.cout, g.h, g.w]) : undefined;
        held.push(x, w, ...(bias ? [bias] : []), ...(residual ? [residual] : []));
        out = conv2d(gpu, x, w, { bias, residual, padding: g.padding });
        break;
      }
      case "attention": {
        const batch = g.bh / g.heads, width = g.heads * g.d;
        const q = up("q", [batch, g.lq, width]);
        const k = up("k", [batch, g.lk, width]), v = up("v", [batch, g.lk, width]);
        held.push(q, k, v);
        out = attention(gpu, q, k, v, { heads: g.heads });
        break;
      }
      case "group_norm": {
        const x = up("x", [g.n, g.c, g.h, g.w]);
        const gamma = up("gamma", [g.c]), beta = up("beta", [g.c]);
        held.push(x, gamma, beta);
        out = groupNorm(gpu, x, gamma, beta, { groups: g.groups, eps: g.eps });
        break;
      }
    }
    held.push(out);
    return await gpu.read(out);
  } finally {
    for (const t of held) t.release();
  }
}

/** Largest |a - b| over max(1, max |b|) — the check figure printed beside each peer. */
export function maxRelError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let err = 0, mag = 1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}
