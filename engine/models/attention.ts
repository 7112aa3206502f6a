/**
 * Transformer pieces in diffusers naming: Attention (to_q/to_k/to_v/to_out.0), GEGLU
 * FeedForward, the transformer block (spatial: self + cross attention; temporal: two
 * self-attentions over frames with a position encoding) and the spatial Transformer2DModel.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { Param, WeightStore } from "../weight_store.ts";
import { GroupNorm, LayerNorm, Linear } from "./layers.ts";
import { attention } from "../../kernels/attention.ts";
import { add, geglu } from "../../kernels/elementwise.ts";
import { addPositionEncoding } from "../../kernels/embedding.ts";
import { memoryRuns } from "../../kernels/gpu/chunks.ts";
import { recording } from "../../kernels/gpu/tape.ts";
import { permute } from "../../kernels/layout.ts";

/** diffusers Attention: q from x, k/v from `context` (or x), multi-head, output projection. */
export class Attention {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  readonly heads: number;
  /** Channels per head. */
  readonly headDim: number;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { dim: number; contextDim?: number; heads: number; qkvBias?: boolean },
  ) {
    if (o.dim % o.heads !== 0) {
      throw new Error(`${prefix}: ${o.dim} channels do not split into ${o.heads} heads`);
    }
    const cd = o.contextDim ?? o.dim;
    const bias = o.qkvBias ?? false;
    this.toQ = new Linear(w, `${prefix}.to_q`, { in: o.dim, out: o.dim, bias });
    this.toK = new Linear(w, `${prefix}.to_k`, { in: cd, out: o.dim, bias });
    this.toV = new Linear(w, `${prefix}.to_v`, { in: cd, out: o.dim, bias });
    this.toOut = new Linear(w, `${prefix}.to_out.0`, { in: o.dim, out: o.dim });
    this.heads = o.heads;
    this.headDim = o.dim / o.heads;
  }

  /**
   * x [B, L, C]; context [B / kvBroadcast, Lk, Cc] (default: x). Returns to_out(attn) + residual
   * when a residual is given. `keyScale` multiplies the keys (logits = s * q.k / sqrt(d)).
   */
  forward(
    gpu: Gpu,
    x: Tensor,
    options: { context?: Tensor; kvBroadcast?: number; residual?: Tensor; keyScale?: number } = {},
  ): Tensor {
    const ctx = options.context ?? x;
    const s = options.keyScale ?? 1;
    const a = attention(
      gpu,
      this.toQ.forward(gpu, x),
      this.toK.forward(gpu, ctx),
      this.toV.forward(gpu, ctx),
      {
        heads: this.heads,
        kvBroadcast: options.kvBroadcast ?? 1,
        ...(s === 1 ? {} : { scale: s / Math.sqrt(this.headDim) }),
      },
    );
    return this.toOut.forward(gpu, a, { residual: options.residual });
  }
}

/**
 * Smallest hidden-layer run of the feed-forward chunking; below it the feed-forward runs whole.
 */
const FF_CHUNK_MIN_BYTES = 32 * 2 ** 20;

/** GEGLU feed-forward: net.0.proj (dim -> 2*inner), GEGLU, net.2 (inner -> dim). */
export class FeedForward {
  readonly proj: Linear;
  readonly out: Linear;
  readonly dim: number;
  readonly inner: number;
  constructor(w: WeightStore, prefix: string, dim: number, inner = 4 * dim) {
    this.proj = new Linear(w, `${prefix}.net.0.proj`, { in: dim, out: 2 * inner });
    this.out = new Linear(w, `${prefix}.net.2`, { in: inner, out: dim });
    this.dim = dim;
    this.inner = inner;
  }

  /**
   * x [..., dim] -> [..., dim] (+ residual). The hidden layer is 8x wider than x (GEGLU's two
   * halves), so it runs over row chunks whose hidden state is at most the size of x (diffusers'
   * feed-forward chunking): rows are independent, the result is the same.
   */
  forward(gpu: Gpu, x: Tensor, residual?: Tensor): Tensor {
    const rows = x.size / this.dim, bytes = x.byteLength / x.size;
    // Training records whole ops (a window is not differentiable): no chunks then.
    if (recording(gpu, [x, residual])) {
      return this.out.forward(gpu, geglu(gpu, this.proj.forward(gpu, x)), { residual });
    }
    const runs = memoryRuns(
      gpu,
      rows,
      [this.dim * bytes, 2 * this.inner * bytes],
      Math.max(x.byteLength, FF_CHUNK_MIN_BYTES),
    );
    const ff = (xs: Tensor, res?: Tensor, out?: Tensor) =>
      this.out.forward(gpu, geglu(gpu, this.proj.forward(gpu, xs)), { residual: res, out });
    if (runs.length === 1) return ff(x, residual);
    const out = gpu.empty(x.shape, x.dtype, "feed_forward");
    for (const [s, n] of runs) {
      ff(x.window(rows, s, n), residual?.window(rows, s, n), out.window(rows, s, n));
    }
    return out;
  }
}

/**
 * The transformer block: norm1 -> self-attention -> norm2 -> attention -> norm3 -> GEGLU
 * feed-forward, each with its residual. Spatial (SD's BasicTransformerBlock): attn2 attends to
 * the text `context`. Temporal (AnimateDiff's motion module): attn2 is a second self-attention
 * over frames, and a sinusoidal position encoding (`pos_embed.pe`) is added to the normed input
 * of both attentions.
 */
export class TransformerBlock {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  /** Temporal blocks: the position encoding [1, maxLen, dim]. */
  readonly pe: Param | null;
  constructor(
    w: WeightStore,
    prefix: string,
    o: { dim: number; heads: number; contextDim?: number; positions?: number },
  ) {
    this.norm1 = new LayerNorm(w, `${prefix}.norm1`, o.dim);
    this.attn1 = new Attention(w, `${prefix}.attn1`, { dim: o.dim, heads: o.heads });
    this.norm2 = new LayerNorm(w, `${prefix}.norm2`, o.dim);
    this.attn2 = new Attention(w, `${prefix}.attn2`, {
      dim: o.dim,
      heads: o.heads,
      contextDim: o.contextDim,
    });
    this.norm3 = new LayerNorm(w, `${prefix}.norm3`, o.dim);
    this.ff = new FeedForward(w, `${prefix}.ff`, o.dim);
    this.pe = o.positions ? w.param(`${prefix}.pos_embed.pe`, [1, o.positions, o.dim]) : null;
  }

  /**
   * x [B, L, C] -> same. Spatial: x [b*f, HW, C] and `context` [b, 77, D] shared by the
   * `kvBroadcast` frames of each video. Temporal: x [b*h*w, f, C], no context; `keyScale`
   * multiplies both attentions' keys (the motion scale).
   */
  forward(
    gpu: Gpu,
    x: Tensor,
    o: { context?: Tensor; kvBroadcast?: number; keyScale?: number } = {},
  ): Tensor {
    const pe = (h: Tensor) => this.pe ? addPositionEncoding(gpu, h, this.pe.t) : h;
    const h1 = this.attn1.forward(gpu, pe(this.norm1.forward(gpu, x)), {
      residual: x,
      keyScale: o.keyScale,
    });
    const h2 = this.attn2.forward(gpu, pe(this.norm2.forward(gpu, h1)), { ...o, residual: h1 });
    return this.ff.forward(gpu, this.norm3.forward(gpu, h2), h2);
  }
}

/**
 * Transformer2DModel (SD1.5): GroupNorm (eps 1e-6) -> proj_in -> blocks over the H*W tokens ->
 * proj_out -> + residual. proj_in/out are 1x1 convs or Linears: both are a Linear on channels.
 */
export class Transformer2D {
  readonly norm: GroupNorm;
  readonly projIn: Linear;
  readonly blocks: TransformerBlock[] = [];
  readonly projOut: Linear;
  constructor(
    w: WeightStore,
    prefix: string,
    o: {
      channels: number;
      heads: number;
      contextDim: number;
      groups: number;
      layers: number;
      /** proj_in / proj_out stored as Linears (else as 1x1 convs, as SD1.5). */
      linearProjection: boolean;
    },
  ) {
    const proj = { in: o.channels, out: o.channels, conv1x1: !o.linearProjection };
    this.norm = new GroupNorm(w, `${prefix}.norm`, o.channels, o.groups, 1e-6);
    this.projIn = new Linear(w, `${prefix}.proj_in`, proj);
    for (let i = 0; i < o.layers; i++) {
      this.blocks.push(
        new TransformerBlock(w, `${prefix}.transformer_blocks.${i}`, {
          dim: o.channels,
          heads: o.heads,
          contextDim: o.contextDim,
        }),
      );
    }
    this.projOut = new Linear(w, `${prefix}.proj_out`, proj);
  }

  /**
   * x [b*f, C, H, W] -> same shape; `context` [b, 77, D] is shared by a video's frames, or
   * [b*f, 77, D] gives every frame its own (prompt travel).
   */
  forward(gpu: Gpu, x: Tensor, context: Tensor, _frames: number): Tensor {
    const [n, c, h, w] = x.shape;
    const kvBroadcast = n / context.shape[0];
    // [n, C, H*W] -> [n, H*W, C]
    const tokens = permute(gpu, this.norm.forward(gpu, x).reshape([n, c, h * w]), [0, 2, 1]);
    let hs = this.projIn.forward(gpu, tokens);
    for (const block of this.blocks) hs = block.forward(gpu, hs, { context, kvBroadcast });
    // [n, H*W, C] -> [n, C, H*W], then + residual
    const back = permute(gpu, this.projOut.forward(gpu, hs), [0, 2, 1]);
    return add(gpu, back.reshape([n, c, h, w]), x);
  }
}
