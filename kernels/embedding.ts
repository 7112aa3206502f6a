/**
 * Embedding kernels: diffusers' sinusoidal timestep embedding, CLIP token + position embedding
 * lookup, and the AnimateDiff sinusoidal position-encoding add over frames.
 *
 * Training: the token / position tables and the position encoding get gradients on an autograd
 * tape when one is recording (kernels/gpu/tape.ts); the timestep embedding needs none (its input
 * is a list of numbers).
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { bindingRuns } from "./gpu/chunks.ts";
import { defineKernel, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import { sumTo } from "./elementwise.ts";
import { padAxis } from "./layout.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const MAX_PERIOD = 10000;

// ---------------------------------------------------------------- timestep embedding

const timestepKernel = defineKernel("timestep_embedding", ({ dtype }) => /* wgsl */ `
// timestep_embedding: 1 table [B + half] f32 (B timesteps, then half frequencies), 2 y [B, dim].
// y[b, j] = sin(t_b * f_j) for j < half, cos(t_b * f_(j - half)) for half <= j < 2 half (the two
// halves swapped when flip = 1), 0 for an odd dim's last column.
${prelude(dtype)}
struct Params { n: u32, dim: u32, half: u32, batch: u32, flip: u32 }
${bindingsWgsl(["table: array<f32>", "y: array<T>"])}

// (sin x, cos x) to ~1e-7 absolute for |x| up to ~1e4: Cody-Waite reduction by pi/2 in three
// parts (the first two with short mantissas, so k * part is exact for k < 2^9), then Taylor
// series on |r| <= pi/4 (truncation < 1e-11). Independent of the driver's sin / cos accuracy.
fn sin_cos(x: f32) -> vec2<f32> {
  let k = round(x * 0.6366197723675814);
  var r = x - k * 1.5703125;
  r = r - k * 4.837512969970703125e-4;
  r = r - k * 7.549789954891886e-8;
  let z = r * r;
  let s = r + r * z * (-1.0 / 6.0 + z * (1.0 / 120.0 + z * (-1.0 / 5040.0 + z * (1.0 / 362880.0 +
    z * (-1.0 / 39916800.0)))));
  let c = 1.0 + z * (-0.5 + z * (1.0 / 24.0 + z * (-1.0 / 720.0 + z * (1.0 / 40320.0 +
    z * (-1.0 / 3628800.0 + z * (1.0 / 479001600.0))))));
  switch (i32(k) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

${MAIN_1D_WGSL}
  let b = i / p.dim;
  let j = i - b * p.dim;
  if (j >= 2u * p.half) { y[i] = T(0.0); return; }
  let second = j >= p.half;
  let k = select(j, j - p.half, second);
  let sc = sin_cos(table[b] * table[p.batch + k]);
  y[i] = T(select(sc.x, sc.y, second != (p.flip == 1u)));
}`);

/** Options of {@link timestepEmbedding}. */
export interface TimestepEmbeddingOptions {
  /** cat(cos, sin) instead of cat(sin, cos) (SD1.5 UNet: true). */
  flipSinToCos: boolean;
  /** diffusers' downscale_freq_shift (SD1.5 UNet: 0). */
  freqShift: number;
  /** Output dtype. */
  dtype: DType;
}

/**
 * The frequencies `exp(-ln(max_period) * j / (half - shift))`, j < half, rounded to float32 after
 * every step exactly as diffusers' float32 tensor ops do.
 */
export function timestepFrequencies(dim: number, freqShift: number): Float32Array {
  const half = Math.floor(dim / 2);
  const f = Math.fround;
  const logPeriod = f(-Math.log(MAX_PERIOD));
  const denom = f(half - freqShift);
  return Float32Array.from({ length: half }, (_, j) => f(Math.exp(f(f(logPeriod * j) / denom))));
}

/**
 * diffusers `get_timestep_embedding(timesteps, dim, flip_sin_to_cos, downscale_freq_shift)`
 * (scale 1, max_period 10000) -> `[B, dim]`. The argument `t * f_j` and its sine / cosine are
 * computed on the GPU in f32 (with a range reduction accurate for t up to 1000); the frequency
 * table f_j is computed on the host with float32 rounding after each op, because WGSL allows
 * `exp` and `/` several ulp of error, which at t ~ 1000 would move the argument by ~1e-3 rad.
 *
 * @example
 * ```ts
 * const e = timestepEmbedding(gpu, [981, 981], 320, { flipSinToCos: true, freqShift: 0, dtype: "f32" });
 * ```
 */
export function timestepEmbedding(
  gpu: Gpu,
  timesteps: readonly number[],
  dim: number,
  options: TimestepEmbeddingOptions,
): Tensor {
  if (timesteps.length < 1 || !timesteps.every(Number.isFinite)) {
    throw new Error(`timestep_embedding: expected 1+ finite timesteps, got [${timesteps}]`);
  }
  if (!Number.isInteger(dim) || dim < 1) {
    throw new Error(`timestep_embedding: expected dim >= 1, got ${dim}`);
  }
  const half = Math.floor(dim / 2);
  if (half > 0 && half - options.freqShift === 0) {
    throw new Error(`timestep_embedding: freqShift ${options.freqShift} makes half - shift zero`);
  }
  const b = timesteps.length;
  const table = new Float32Array(b + half);
  table.set(timesteps);
  table.set(timestepFrequencies(dim, options.freqShift), b);
  const t = gpu.upload(table, [b + half], "f32", "timestep_embedding.table");
  const y = gpu.empty([b, dim], options.dtype, "timestep_embedding");
  gpu.dispatch(timestepKernel, {
    dtype: options.dtype,
    params: new Params().u32(b * dim).u32(dim).u32(half).u32(b).u32(options.flipSinToCos ? 1 : 0),
    bindings: [t, y],
    groups: launch1d(b * dim),
  });
  t.release();
  return y;
}

// ---------------------------------------------------------------- token embedding

const tokenKernel = defineKernel<VecVariant>("token_embedding", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// token_embedding: 1 ids [B * L] u32, 2 token table rows [r0, r1) of [V, D], 3 position table
// [P, D], 4 y [B, L, D] (D as du V-units): y[t, k] = token[ids[t], k] + position[t % L, k] for
// the tokens whose id is in [r0, r1) (a table larger than one binding is bound in windows).
${prelude(dtype, variant)}
struct Params { n: u32, du: u32, len: u32, r0: u32, r1: u32 }
${bindingsWgsl(["ids: array<u32>", "token: array<V>", "position: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let t = i / p.du;
  let k = i - t * p.du;
  let id = ids[t];
  if (id < p.r0 || id >= p.r1) { return; }
  y[i] = V(VF(token[(id - p.r0) * p.du + k]) + VF(position[(t % p.len) * p.du + k]));
}`,
});

/**
 * CLIP input embeddings: `tokenTable[ids] + positionTable[0..L)` -> `[B, L, D]`. `ids` holds
 * `batch * L` token ids (row-major `[B, L]`), uploaded as u32; an id outside `[0, V)` or `L`
 * beyond the position table is an error.
 *
 * @example
 * ```ts
 * const h = tokenEmbedding(gpu, ids, 2, tokenTable, positionTable); // [2, 77, 768]
 * ```
 */
export function tokenEmbedding(
  gpu: Gpu,
  ids: Int32Array,
  batch: number,
  tokenTable: Tensor,
  positionTable: Tensor,
): Tensor {
  if (tokenTable.rank !== 2 || positionTable.rank !== 2) {
    throw new Error(
      `token_embedding: expected tokenTable [V, D] and positionTable [P, D], got ` +
        `${fmtShape(tokenTable.shape)} and ${fmtShape(positionTable.shape)}`,
    );
  }
  const [v, d] = tokenTable.shape;
  const [pMax, dp] = positionTable.shape;
  if (dp !== d || tokenTable.dtype !== positionTable.dtype) {
    throw new Error(
      `token_embedding: tables differ: tokenTable ${fmtShape(tokenTable.shape)} ` +
        `${tokenTable.dtype}, positionTable ${
          fmtShape(positionTable.shape)
        } ${positionTable.dtype}`,
    );
  }
  const len = ids.length / batch;
  if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(len) || len < 1 || len > pMax) {
    throw new Error(
      `token_embedding: expected ids [${batch}, L] with 1 <= L <= ${pMax}, got ${ids.length} ids`,
    );
  }
  const bad = ids.findIndex((id) => id < 0 || id >= v);
  if (bad >= 0) {
    throw new Error(
      `token_embedding: id ${ids[bad]} at ${bad} is outside the vocabulary [0, ${v})`,
    );
  }
  const y = gpu.empty([batch, len, d], tokenTable.dtype, "token_embedding");
  if (d === 0) return y;
  const idTensor = uploadU32(gpu, ids);
  const v4 = d % 4 === 0;
  const du = v4 ? d / 4 : d;
  // A table larger than one binding (CLIP ViT-L/14's in f32: 49408 x 768 = 152 MB) is bound in
  // windows of rows; each launch writes the tokens whose ids fall in its window.
  for (const [r0, rows] of bindingRuns(gpu, "token_embedding", v, [tokenTable], "row")) {
    if (!ids.some((id) => id >= r0 && id < r0 + rows)) continue;
    gpu.dispatch(tokenKernel, {
      dtype: tokenTable.dtype,
      variant: { vec: v4 },
      params: new Params().u32(batch * len * du).u32(du).u32(len).u32(r0).u32(r0 + rows),
      bindings: [idTensor, tokenTable.window(v, r0, rows), positionTable, y],
      groups: launch1d(batch * len * du),
    });
  }
  idTensor.release();
  return taped(gpu, {
    name: "token_embedding",
    inputs: [tokenTable, positionTable],
    output: y,
    saved: [],
    backward: (gy, needs) => {
      const g2 = gy.reshape([batch * len, d]);
      const positions = Int32Array.from({ length: ids.length }, (_, t) => t % len);
      return [
        needs[0] ? embeddingBackward(gpu, g2, ids, tokenTable) : null,
        needs[1] ? embeddingBackward(gpu, g2, positions, positionTable) : null,
      ];
    },
  });
}

const embeddingBackwardKernel = defineKernel<VecVariant>("embedding_backward", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// embedding_backward: 1 lists [rows + 1 + T] u32, 2 gy [T, D], 3 g = rows [r0, r0 + n / du) of
// [rows, D] (D as du V-units). lists holds CSR offsets then token indices: the tokens that read
// table row v are lists[rows + 1 + j] for lists[v] <= j < lists[v + 1], in increasing order.
// g[v, k] = sum of gy[t, k] over those tokens, in f32 (0 for a row no token read).
${prelude(dtype, variant)}
struct Params { n: u32, du: u32, rows: u32, r0: u32 }
${bindingsWgsl(["lists: array<u32>", "gy: array<V>", "g: array<V>"])}

${MAIN_1D_WGSL}
  let lr = i / p.du;
  let k = i - lr * p.du;
  let v = p.r0 + lr;
  var s = VF(0.0);
  for (var j = lists[v]; j < lists[v + 1u]; j++) { s += VF(gy[lists[p.rows + 1u + j] * p.du + k]); }
  g[i] = V(s);
}`,
});

/**
 * dL/dtable of a row lookup `y[t] = table[rows[t]]` given dL/dy `gy [T, D]`: each table row sums
 * the gradients of the tokens that read it, in token order (deterministic, no atomics). The host
 * groups the tokens by row (CSR, O(V + T) work and a (V + T + 1) x 4-byte upload); the kernel runs
 * one thread per (table row, channel), so it costs V * D writes (the dense gradient) plus T * D
 * reads: for CLIP (V = 49408, D = 768) ~38M threads, nearly all writing a zero.
 */
function embeddingBackward(gpu: Gpu, gy: Tensor, rows: Int32Array, table: Tensor): Tensor {
  const [v, d] = table.shape;
  const words = new Uint32Array(v + 1 + rows.length);
  for (const r of rows) words[r + 1]++;
  for (let r = 0; r < v; r++) words[r + 1] += words[r];
  const fill = words.slice(0, v);
  rows.forEach((r, t) => words[v + 1 + fill[r]++] = t);
  const lists = gpu.uploadWords(words, "embedding_backward.lists");
  const g = gpu.empty(table.shape, gy.dtype, "embedding_backward");
  const v4 = d % 4 === 0;
  const du = v4 ? d / 4 : d;
  for (const [r0, count] of bindingRuns(gpu, "embedding_backward", v, [g], "row")) {
    if (count * d === 0) continue;
    gpu.dispatch(embeddingBackwardKernel, {
      dtype: gy.dtype,
      variant: { vec: v4 },
      params: new Params().u32(count * du).u32(du).u32(v).u32(r0),
      bindings: [lists, gy, g.window(v, r0, count)],
      groups: launch1d(count * du),
    });
  }
  lists.release();
  return g;
}

/** Uploads 32-bit integers bit-for-bit (the tensor's dtype says f32; shaders read u32). */
function uploadU32(gpu: Gpu, values: Int32Array): Tensor {
  return gpu.uploadWords(Uint32Array.from(values), "token_embedding.ids");
}

// ---------------------------------------------------------------- position encoding

const positionKernel = defineKernel<VecVariant>("add_position_encoding", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// add_position_encoding: 1 x [B, F, C], 2 pe [maxLen, C], 3 y [B, F, C] (as V units):
// y[b, f, c] = x[b, f, c] + pe[f, c]; fc = F * C units.
${prelude(dtype, variant)}
struct Params { n: u32, fc: u32 }
${bindingsWgsl(["x: array<V>", "pe: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  y[i] = V(VF(x[i]) + VF(pe[i % p.fc]));
}`,
});

/**
 * `x [B, F, C] + pe[0..F)` with `pe [1, maxLen, C]` or `[maxLen, C]` (AnimateDiff's sinusoidal
 * position encoding over frames); `F > maxLen` is an error.
 *
 * @example
 * ```ts
 * const h = addPositionEncoding(gpu, x, pe); // x [b*h*w, 16, 320], pe [1, 32, 320]
 * ```
 */
export function addPositionEncoding(gpu: Gpu, x: Tensor, pe: Tensor): Tensor {
  const peOk = (pe.rank === 3 && pe.shape[0] === 1) || pe.rank === 2;
  const [maxLen, pc] = pe.shape.slice(-2);
  if (x.rank !== 3 || !peOk || pc !== x.shape[2] || pe.dtype !== x.dtype) {
    throw new Error(
      `add_position_encoding: expected x [B, F, C] and pe [1, maxLen, C] of one dtype, got ` +
        `${fmtShape(x.shape)} ${x.dtype} and ${fmtShape(pe.shape)} ${pe.dtype}`,
    );
  }
  const [, f, c] = x.shape;
  if (f > maxLen) {
    throw new Error(
      `add_position_encoding: ${f} frames exceed the position encoding's ${maxLen} ` +
        `(x ${fmtShape(x.shape)}, pe ${fmtShape(pe.shape)})`,
    );
  }
  const y = gpu.empty(x.shape, x.dtype, "add_position_encoding");
  if (x.size === 0) return y;
  const v4 = c % 4 === 0;
  const u = v4 ? 4 : 1;
  const b = x.shape[0];
  for (const [s, n] of bindingRuns(gpu, "add_position_encoding", b, [x, y], "item")) {
    gpu.dispatch(positionKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n * f * c / u).u32(f * c / u),
      bindings: [x.window(b, s, n), pe, y.window(b, s, n)],
      groups: launch1d(n * f * c / u),
    });
  }
  return taped(gpu, {
    name: "add_position_encoding",
    inputs: [x, pe],
    output: y,
    saved: [],
    backward: (gy, needs) => {
      let gx: Tensor | null = null, gpe: Tensor | null = null;
      if (needs[0]) {
        gx = gpu.empty(x.shape, x.dtype, "add_position_encoding_backward");
        gpu.copy(gy, gx);
      }
      if (needs[1]) {
        // Rows [0, F) get gy summed over the batch; rows [F, maxLen) were not read.
        const rows = sumTo(gpu, gy, [f, c]);
        gpe = (f < maxLen ? padAxis(gpu, rows, 0, 0, maxLen - f) : rows).reshape(pe.shape);
      }
      return [gx, gpe];
    },
  });
}
