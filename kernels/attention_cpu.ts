/**
 * CPU reference of {@link attention}: multi-head scaled dot-product attention over token-major
 * `[B, L, H*d]` arrays, with float64 scores, softmax and accumulation.
 * @module
 */

/** Options of {@link attentionCpu}: the shapes plus the GPU launcher's options. */
export interface AttentionCpuOptions {
  /** Query batch B (q and out are `[B, seqQ, heads*headDim]`). */
  batch: number;
  seqQ: number;
  /** Keys/values are `[B / kvBroadcast, seqK, heads*headDim]`. */
  seqK: number;
  heads: number;
  headDim: number;
  /** Score scale; default `1 / sqrt(headDim)`. */
  scale?: number;
  /** Mask key j > query i (requires seqQ == seqK). */
  causal?: boolean;
  /** Query batch b reads key/value batch `floor(b / kvBroadcast)`; default 1. */
  kvBroadcast?: number;
}

/**
 * Reference attention: `out[b, i, h] = softmax_j(scale * q[b,i,h] . k[kb,j,h]) v[kb,j,h]`.
 *
 * @example
 * ```ts
 * const out = attentionCpu(q, k, v, { batch: 2, seqQ: 16, seqK: 77, heads: 8, headDim: 40 });
 * ```
 */
export function attentionCpu(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  options: AttentionCpuOptions,
): Float32Array {
  const { batch, seqQ, seqK, heads, headDim: d, causal = false, kvBroadcast = 1 } = options;
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const width = heads * d;
  const kvBatch = batch / kvBroadcast;
  if (q.length !== batch * seqQ * width) {
    throw new Error(`attentionCpu: q has ${q.length} values, expected ${batch * seqQ * width}`);
  }
  if (k.length !== kvBatch * seqK * width || v.length !== k.length) {
    throw new Error(
      `attentionCpu: k/v have ${k.length}/${v.length} values, expected ${kvBatch * seqK * width}`,
    );
  }
  const out = new Float32Array(q.length);
  const scores = new Float64Array(seqK);
  const acc = new Float64Array(d);
  for (let b = 0; b < batch; b++) {
    const kb = Math.floor(b / kvBroadcast);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seqQ; i++) {
        const qo = (b * seqQ + i) * width + h * d;
        const keys = causal ? Math.min(seqK, i + 1) : seqK;
        let max = -Infinity;
        for (let j = 0; j < keys; j++) {
          const ko = (kb * seqK + j) * width + h * d;
          let s = 0;
          for (let c = 0; c < d; c++) s += q[qo + c] * k[ko + c];
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        acc.fill(0);
        let sum = 0;
        for (let j = 0; j < keys; j++) {
          const p = Math.exp(scores[j] - max);
          sum += p;
          const vo = (kb * seqK + j) * width + h * d;
          for (let c = 0; c < d; c++) acc[c] += p * v[vo + c];
        }
        for (let c = 0; c < d; c++) out[qo + c] = acc[c] / sum;
      }
    }
  }
  return out;
}
