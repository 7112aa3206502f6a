/**
 * LyCORIS modules in kohya-style files: LoHa (Hadamard product of two low-rank products) and
 * LoKr (Kronecker product), turned into the dense update they add to a weight, computed lazily
 * on the CPU. With `W` viewed as [out, in * kh * kw]:
 *
 * - LoHa: `dW = (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / rank`, rank = rows of `hada_w1_b`
 *   (factor 1 without alpha).
 * - LoKr: `dW = kron(w1, w2) * scale`, each factor given whole (`lokr_w1`, `lokr_w2`, the latter
 *   [c, d] or [c, d, kh, kw]) or as a product (`lokr_w*_a @ lokr_w*_b`); scale = alpha / rank
 *   when a factor is a product and the file has alpha, else 1.
 *
 * Tucker-decomposed conv factors (`hada_t1`, `hada_t2`, `lokr_t2`) are refused with a clear
 * error.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { addProduct } from "./lowrank.ts";
import type { LycorisRole } from "./names.ts";
import type { HostTensor } from "./types.ts";

/** A LyCORIS module's update: the dense delta (already scaled by alpha) and its rank. */
export interface LycorisFactors {
  kind: "loha" | "lokr";
  /** [out, in * kh * kw]; read() computes it. */
  delta: HostTensor;
  /** Rank of the low-rank factors (undefined for a LoKr of two whole factors). */
  rank?: number;
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** `a [m, r] @ b [r, n]` as a new tensor. */
async function product(a: HostTensor, b: HostTensor): Promise<Float32Array> {
  const rank = b.shape[0], out = new Float32Array(a.shape[0] * (numel(b.shape) / rank));
  return addProduct(out, await a.read(), await b.read(), { rank });
}

/** A factor given whole or as `a @ b`: its [rows, cols] view and its reader. */
function factor(
  whole: HostTensor | undefined,
  a: HostTensor | undefined,
  b: HostTensor | undefined,
): { rows: number; cols: number; read: () => Promise<Float32Array>; rank?: number } | null {
  if (whole) {
    const rows = whole.shape[0];
    return { rows, cols: numel(whole.shape) / rows, read: () => whole.read() };
  }
  if (!a || !b) return null;
  const rows = a.shape[0], rank = b.shape[0];
  return { rows, cols: numel(b.shape) / rank, read: () => product(a, b), rank };
}

/**
 * Builds a LoHa or LoKr module's update from its named factors; throws naming the module when a
 * factor is missing, shapes disagree or Tucker factors are present.
 *
 * @example
 * ```ts
 * const f = lycorisFactors("down_blocks_0_attentions_0_proj_in", parts, 4);
 * const delta = await f.delta.read(); // [out, in]
 * ```
 */
export function lycorisFactors(
  module: string,
  parts: Partial<Record<LycorisRole, HostTensor>>,
  alpha: number | undefined,
): LycorisFactors {
  const bad = (why: string) => new InputError(`LyCORIS module ${module}: ${why}`);
  const roles = Object.keys(parts) as LycorisRole[];
  const loha = roles.some((r) => r.startsWith("hada_"));
  if (loha && roles.some((r) => r.startsWith("lokr_"))) throw bad("mixes LoHa and LoKr factors");
  if (parts.hada_t1 || parts.hada_t2 || parts.lokr_t2) {
    throw bad("Tucker-decomposed factors (hada_t1/hada_t2/lokr_t2) are not supported");
  }
  if (loha) {
    const { hada_w1_a: w1a, hada_w1_b: w1b, hada_w2_a: w2a, hada_w2_b: w2b } = parts;
    if (!w1a || !w1b || !w2a || !w2b) {
      throw bad("a LoHa needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b");
    }
    const m1 = factor(undefined, w1a, w1b)!, m2 = factor(undefined, w2a, w2b)!;
    const okRank = w1a.shape[1] === w1b.shape[0] && w2a.shape[1] === w2b.shape[0];
    if (!okRank || m1.rows !== m2.rows || m1.cols !== m2.cols) {
      throw bad(
        `LoHa factor shapes do not agree (w1_a [${w1a.shape}], w1_b [${w1b.shape}], ` +
          `w2_a [${w2a.shape}], w2_b [${w2b.shape}])`,
      );
    }
    const scale = alpha === undefined ? 1 : alpha / m1.rank!;
    const delta: HostTensor = {
      shape: [m1.rows, m1.cols],
      dtype: "F32",
      read: async () => {
        const a = await m1.read(), b = await m2.read();
        for (let i = 0; i < a.length; i++) a[i] = a[i] * b[i] * scale;
        return a;
      },
    };
    return { kind: "loha", delta, rank: m1.rank };
  }
  const w1 = factor(parts.lokr_w1, parts.lokr_w1_a, parts.lokr_w1_b);
  const w2 = factor(parts.lokr_w2, parts.lokr_w2_a, parts.lokr_w2_b);
  if (!w1 || !w2) {
    throw bad(
      "a LoKr needs lokr_w1 (or lokr_w1_a + lokr_w1_b) and lokr_w2 (or lokr_w2_a + lokr_w2_b)",
    );
  }
  for (const [a, b] of [[parts.lokr_w1_a, parts.lokr_w1_b], [parts.lokr_w2_a, parts.lokr_w2_b]]) {
    if (a && b && a.shape[1] !== b.shape[0]) {
      throw bad(`LoKr factor shapes do not agree ([${a.shape}] @ [${b.shape}])`);
    }
  }
  const rank = w2.rank ?? w1.rank;
  const scale = rank !== undefined && alpha !== undefined ? alpha / rank : 1;
  // kron(w1 [a, b], w2 [c, e]) = [a c, b e]; with e = d * kh * kw this is the flattened kernel.
  const rows = w1.rows * w2.rows, cols = w1.cols * w2.cols;
  const delta: HostTensor = {
    shape: [rows, cols],
    dtype: "F32",
    read: async () => {
      const a = await w1.read(), b = await w2.read();
      const out = new Float32Array(rows * cols);
      for (let i = 0; i < w1.rows; i++) {
        for (let j = 0; j < w1.cols; j++) {
          const x = a[i * w1.cols + j] * scale;
          for (let k = 0; k < w2.rows; k++) {
            const o = (i * w2.rows + k) * cols + j * w2.cols, b0 = k * w2.cols;
            for (let l = 0; l < w2.cols; l++) out[o + l] = x * b[b0 + l];
          }
        }
      }
      return out;
    },
  };
  return { kind: "lokr", delta, rank };
}
