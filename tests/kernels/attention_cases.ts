/**
 * Attention cases. Shape: `[batchHeads, seqQ, seqK, headDim]` (B*H query (batch, head) pairs);
 * each case also names its head count (B = batchHeads / heads), causal and kvBroadcast.
 * Flops = 4 * BH * Lq * Lk * d (two matmuls, multiply + add).
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { attention } from "../../kernels/attention.ts";
import { randomArray } from "../assert.ts";

/** A kernel case with the attention options it runs with. */
export interface AttentionCase extends KernelCase {
  heads: number;
  causal: boolean;
  kvBroadcast: number;
}

/** Query/key inputs are scaled by this so the softmax is not flat (scores of a few units). */
export const INPUT_SCALE = 2;

/** Deterministic inputs of a case: q [B, Lq, H*d], k and v [B / kvBroadcast, Lk, H*d]. */
export function caseInputs(c: AttentionCase): {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  qShape: number[];
  kvShape: number[];
} {
  const [bh, lq, lk, d] = c.shape;
  const batch = bh / c.heads, width = c.heads * d;
  const qShape = [batch, lq, width], kvShape = [batch / c.kvBroadcast, lk, width];
  const kvSize = kvShape[0] * lk * width;
  return {
    q: randomArray(batch * lq * width, 31 + d, INPUT_SCALE),
    k: randomArray(kvSize, 37 + lk, INPUT_SCALE),
    v: randomArray(kvSize, 41 + lq, 1),
    qShape,
    kvShape,
  };
}

function attnCase(
  shape: [number, number, number, number],
  dtype: DType,
  scale: KernelCase["scale"],
  note: string,
  opts: { heads?: number; causal?: boolean; kvBroadcast?: number } = {},
): AttentionCase {
  const [bh, lq, lk, d] = shape;
  const { heads = 8, causal = false, kvBroadcast = 1 } = opts;
  const c: AttentionCase = {
    op: "attention",
    shape,
    dtype,
    scale,
    note,
    heads,
    causal,
    kvBroadcast,
    flops: 4 * bh * lq * lk * d,
    setup(gpu) {
      const { q, k, v, qShape, kvShape } = caseInputs(c);
      const tq = gpu.upload(q, qShape, dtype, "q");
      const tk = gpu.upload(k, kvShape, dtype, "k");
      const tv = gpu.upload(v, kvShape, dtype, "v");
      return {
        run: () => attention(gpu, tq, tk, tv, { heads, causal, kvBroadcast }).release(),
        dispose() {
          tq.release();
          tk.release();
          tv.release();
        },
      };
    },
  };
  return c;
}

/** Attention cases: odd test sizes, reduced SD shapes, full SD1.5 / AnimateDiff shapes. */
export const cases: AttentionCase[] = [
  // Odd sizes and every head-dim bucket (d -> padded bucket, threads per row).
  attnCase([6, 37, 19, 40], "f32", "test", "odd lengths, d 40", { heads: 3 }),
  attnCase([6, 37, 19, 40], "f16", "test", "odd lengths, d 40", { heads: 3 }),
  attnCase([2, 70, 45, 4], "f32", "test", "d 4 (tiny fixture)", { heads: 2 }),
  attnCase([4, 67, 33, 16], "f32", "test", "d 16, 2 query blocks", { heads: 2 }),
  attnCase([2, 40, 77, 32], "f32", "test", "d 32 (tiny VAE), Lk 77", { heads: 1 }),
  attnCase([6, 9, 11, 6], "f32", "test", "d 6: scalar loads", { heads: 3 }),
  attnCase([6, 9, 11, 6], "f16", "test", "d 6: scalar loads", { heads: 3 }),
  attnCase([4, 33, 21, 80], "f32", "test", "d 80, 2 threads per row", { heads: 2 }),
  attnCase([4, 33, 21, 80], "f16", "test", "d 80, 2 threads per row", { heads: 2 }),
  attnCase([2, 29, 35, 160], "f32", "test", "d 160, 4 threads per row", { heads: 2 }),
  attnCase([2, 19, 23, 100], "f32", "test", "d 100 in the 128 bucket", { heads: 1 }),
  attnCase([2, 13, 10, 200], "f32", "test", "d 200 in the 256 bucket", { heads: 2 }),
  attnCase([1, 9, 13, 512], "f32", "test", "d 512 (VAE mid-block), small L", { heads: 1 }),
  attnCase([1, 9, 13, 512], "f16", "test", "d 512 (VAE mid-block), small L", { heads: 1 }),
  attnCase([14, 5, 5, 8], "f32", "test", "packed: 12 pairs of Lq 5 per workgroup", { heads: 2 }),
  attnCase([6, 20, 7, 8], "f32", "test", "kvBroadcast 3", { heads: 2, kvBroadcast: 3 }),
  attnCase([8, 3, 7, 40], "f32", "test", "packed + kvBroadcast 2", { heads: 2, kvBroadcast: 2 }),
  attnCase([4, 37, 37, 16], "f32", "test", "causal", { heads: 2, causal: true }),
  attnCase([10, 6, 6, 40], "f32", "test", "causal, packed", { heads: 5, causal: true }),
  attnCase([8, 70, 70, 8], "f16", "test", "causal f16", { heads: 2, causal: true }),
  // Comparison shapes and SD1.5 / AnimateDiff shapes shrunk for software adapters.
  attnCase([8, 256, 256, 40], "f32", "reduced", "comparison: self-attn, seq 256"),
  attnCase([8, 256, 256, 40], "f16", "reduced", "comparison: self-attn, seq 256"),
  attnCase([8, 1024, 1024, 40], "f32", "reduced", "comparison: self-attn, seq 1024"),
  attnCase([8, 1024, 1024, 40], "f16", "reduced", "comparison: self-attn, seq 1024"),
  attnCase([32, 64, 77, 40], "f32", "reduced", "cross-attn 8x8, 2 frames share text", {
    kvBroadcast: 2,
  }),
  attnCase([512, 16, 16, 40], "f32", "reduced", "temporal: 16 frames, 8x8 positions"),
  attnCase([512, 16, 16, 40], "f16", "reduced", "temporal: 16 frames, 8x8 positions"),
  attnCase([16, 64, 64, 160], "f16", "reduced", "mid-block self-attn 8x8, d 160"),
  attnCase([12, 77, 77, 64], "f32", "reduced", "CLIP text encoder, causal", {
    heads: 12,
    causal: true,
  }),
  attnCase([1, 256, 256, 512], "f32", "reduced", "VAE mid-block 16x16", { heads: 1 }),
  // Full SD1.5 at 512x512 (bench only).
  attnCase([16, 4096, 4096, 40], "f32", "full", "spatial self-attn 64x64, 2 images x 8 heads"),
  attnCase([16, 4096, 4096, 40], "f16", "full", "spatial self-attn 64x64, 2 images x 8 heads"),
  attnCase([16, 4096, 77, 40], "f32", "full", "cross-attn 64x64, text 77"),
  attnCase([16, 4096, 77, 40], "f16", "full", "cross-attn 64x64, text 77"),
  attnCase([16, 1024, 1024, 80], "f16", "full", "spatial self-attn 32x32, d 80"),
  attnCase([16, 256, 256, 160], "f16", "full", "spatial self-attn 16x16, d 160"),
  attnCase([65536, 16, 16, 40], "f32", "full", "temporal 64x64: B = 2*64*64, 16 frames"),
  attnCase([65536, 16, 16, 40], "f16", "full", "temporal 64x64: B = 2*64*64, 16 frames"),
  attnCase([24, 77, 77, 64], "f16", "full", "CLIP, 2 prompts, causal", {
    heads: 12,
    causal: true,
  }),
  attnCase([1, 4096, 4096, 512], "f16", "full", "VAE mid-block 64x64, one frame", { heads: 1 }),
];
