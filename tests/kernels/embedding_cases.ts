/**
 * Embedding cases. Shapes:
 * - timestep_embedding: `[B, dim]`.
 * - token_embedding: `[B, L, V, D]` (ids [B, L], tables [V, D] and [L, D]).
 * - add_position_encoding: `[B, F, C, maxLen]`.
 * Bytes = read + write (tables: only the rows read).
 * @module
 */

import type { KernelCase } from "./case.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { addPositionEncoding, timestepEmbedding, tokenEmbedding } from "../../kernels/embedding.ts";
import { randomArray } from "../assert.ts";

const bytesOf = (dtype: DType) => dtype === "f16" ? 2 : 4;

/** Timesteps used by the timestep cases: spread over [0, 999] including the ends. */
export function caseTimesteps(b: number): number[] {
  return Array.from({ length: b }, (_, i) => b === 1 ? 981 : Math.round((999 * i) / (b - 1)));
}

/** Deterministic token ids in [0, v). */
export function caseIds(n: number, v: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + 13) % v);
}

function timestepCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, dim] = shape;
  const c: KernelCase = {
    op: "timestep_embedding",
    shape,
    dtype,
    scale,
    note,
    bytes: b * dim * bytesOf(dtype),
    setup(gpu) {
      const ts = caseTimesteps(b);
      return {
        run: () =>
          timestepEmbedding(gpu, ts, dim, { flipSinToCos: true, freqShift: 0, dtype }).release(),
        dispose() {},
      };
    },
  };
  return c;
}

function tokenCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, l, v, d] = shape;
  const c: KernelCase = {
    op: "token_embedding",
    shape,
    dtype,
    scale,
    note,
    bytes: 3 * b * l * d * bytesOf(dtype),
    setup(gpu) {
      const tok = gpu.upload(randomArray(v * d, 121), [v, d], dtype);
      const pos = gpu.upload(randomArray(l * d, 122), [l, d], dtype);
      const ids = caseIds(b * l, v);
      return {
        run: () => tokenEmbedding(gpu, ids, b, tok, pos).release(),
        dispose() {
          tok.release();
          pos.release();
        },
      };
    },
  };
  return c;
}

function peCase(shape: number[], dtype: DType, scale: KernelCase["scale"], note: string) {
  const [b, f, ch, maxLen] = shape;
  const c: KernelCase = {
    op: "add_position_encoding",
    shape,
    dtype,
    scale,
    note,
    bytes: 2 * b * f * ch * bytesOf(dtype),
    setup(gpu) {
      const x = gpu.upload(randomArray(b * f * ch, 123), [b, f, ch], dtype);
      const pe = gpu.upload(randomArray(maxLen * ch, 124), [1, maxLen, ch], dtype);
      return {
        run: () => addPositionEncoding(gpu, x, pe).release(),
        dispose() {
          x.release();
          pe.release();
        },
      };
    },
  };
  return c;
}

/** Every embedding case. */
export const cases: KernelCase[] = [
  timestepCase([5, 33], "f32", "test", "odd dim, t over [0, 999]"),
  timestepCase([3, 320], "f16", "test", "SD1.5 dim f16"),
  timestepCase([2, 320], "f32", "reduced", "SD1.5 UNet"),
  timestepCase([2, 320], "f32", "full", "SD1.5 UNet"),
  tokenCase([2, 7, 50, 19], "f32", "test", "odd D"),
  tokenCase([3, 5, 40, 8], "f16", "test", "vec4 f16"),
  tokenCase([2, 77, 8192, 768], "f32", "reduced", "CLIP width, vocabulary cut to 8192"),
  tokenCase([2, 77, 49408, 768], "f16", "full", "CLIP ViT-L/14"),
  peCase([3, 5, 7, 24], "f32", "test", "odd C"),
  peCase([4, 16, 8, 32], "f16", "test", "vec4 f16"),
  peCase([512, 8, 320, 32], "f32", "reduced", "motion module 16x16, 8 frames"),
  peCase([8192, 16, 320, 32], "f16", "full", "motion module 64x64, 16 frames x CFG"),
];
