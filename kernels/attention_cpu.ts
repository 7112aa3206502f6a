/**
 * CPU reference of {@link attention} and of its backward: multi-head scaled dot-product
 * attention over token-major `[B, L, H*d]` arrays, with float64 scores, softmax and
 * accumulation.
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

/** Checks the array lengths against the options; returns the derived sizes. */
function dims(
  op: string,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  options: AttentionCpuOptions,
) {
  const { batch, seqQ, seqK, heads, headDim: d, causal = false, kvBroadcast = 1 } = options;
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const width = heads * d;
  const kvBatch = batch / kvBroadcast;
  if (q.length !== batch * seqQ * width) {
    throw new Error(`${op}: q has ${q.length} values, expected ${batch * seqQ * width}`);
  }
  if (k.length !== kvBatch * seqK * width || v.length !== k.length) {
    throw new Error(
      `${op}: k/v have ${k.length}/${v.length} values, expected ${kvBatch * seqK * width}`,
    );
  }
  return { batch, seqQ, seqK, heads, d, causal, kvBroadcast, scale, width };
}

/**
 * Reference attention in float64: `out[b, i, h] = softmax_j(scale * q[b,i,h] . k[kb,j,h])
 * v[kb,j,h]` and the natural-log `lse[b, h, i] = log sum_j exp(scale * q . k_j)` (the
 * per-row statistic the backward recomputes probabilities from). Inputs may be float64 (finite
 * differences).
 *
 * @example
 * ```ts
 * const { out, lse } = attentionForwardCpu(q, k, v, { batch: 1, seqQ: 5, seqK: 7, heads: 2, headDim: 3 });
 * ```
 */
export function attentionForwardCpu(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  options: AttentionCpuOptions,
): { out: Float64Array; lse: Float64Array } {
  const { batch, seqQ, seqK, heads, d, causal, kvBroadcast, scale, width } = dims(
    "attentionCpu",
    q,
    k,
    v,
    options,
  );
  const out = new Float64Array(q.length);
  const lse = new Float64Array(batch * heads * seqQ);
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
        lse[(b * heads + h) * seqQ + i] = max + Math.log(sum);
      }
    }
  }
  return { out, lse };
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
  return Float32Array.from(attentionForwardCpu(q, k, v, options).out);
}

/** Gradients of attention's inputs (float64, shaped as q, k, v). */
export interface AttentionGradsCpu {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/**
 * Reference attention backward in float64: given `gout = dL/d(out)`, with `P = softmax(S)`,
 * `S = scale * q k^T`, `D_i = sum_c gout[i,c] out[i,c]` and `dS = P * (gout v^T - D)`:
 * `dq = scale * dS k`, `dk = scale * dS^T q`, `dv = P^T gout`. With kvBroadcast, dk and dv sum
 * over the query batches that share a key/value batch. The forward is recomputed here.
 *
 * @example
 * ```ts
 * const opts = { batch: 2, seqQ: 5, seqK: 7, heads: 2, headDim: 3, kvBroadcast: 2 };
 * const { dq, dk, dv } = attentionBackwardCpu(q, k, v, gout, opts); // dk, dv: [1, 7, 6]
 * ```
 */
export function attentionBackwardCpu(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  gout: ArrayLike<number>,
  options: AttentionCpuOptions,
): AttentionGradsCpu {
  const { batch, seqQ, seqK, heads, d, causal, kvBroadcast, scale, width } = dims(
    "attentionBackwardCpu",
    q,
    k,
    v,
    options,
  );
  if (gout.length !== q.length) {
    throw new Error(`attentionBackwardCpu: gout has ${gout.length} values, expected ${q.length}`);
  }
  const { out, lse } = attentionForwardCpu(q, k, v, options);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let b = 0; b < batch; b++) {
    const kb = Math.floor(b / kvBroadcast);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seqQ; i++) {
        const qo = (b * seqQ + i) * width + h * d;
        const rowLse = lse[(b * heads + h) * seqQ + i];
        let dd = 0;
        for (let c = 0; c < d; c++) dd += gout[qo + c] * out[qo + c];
        const keys = causal ? Math.min(seqK, i + 1) : seqK;
        for (let j = 0; j < keys; j++) {
          const ko = (kb * seqK + j) * width + h * d;
          let s = 0, dp = 0;
          for (let c = 0; c < d; c++) {
            s += q[qo + c] * k[ko + c];
            dp += gout[qo + c] * v[ko + c];
          }
          const p = Math.exp(scale * s - rowLse);
          const ds = p * (dp - dd);
          for (let c = 0; c < d; c++) {
            dq[qo + c] += scale * ds * k[ko + c];
            dk[ko + c] += scale * ds * q[qo + c];
            dv[ko + c] += p * gout[qo + c];
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}
