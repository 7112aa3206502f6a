/**
 * The interface a peer library (tfjs-webgpu, onnxruntime-web) implements for the peer bench.
 * @module
 */

import type { Comparison, HostInputs } from "./comparison.ts";
import type { Timed } from "./measure.ts";

/** One prepared graph of a peer on one comparison shape. */
export interface PeerRun extends Timed {
  /** The peer's output, converted to Zoetrope's layout (for the check column). */
  output(): Promise<Float32Array>;
  /** Frees the peer's tensors / session. */
  dispose(): Promise<void>;
}

/** A peer library, initialised on its own WebGPU device of the same adapter. */
export interface Peer {
  /** Short name used as the table column and JSON key ("tfjs", "ort"). */
  name: string;
  /** Package and version, e.g. "@tensorflow/tfjs-backend-webgpu 4.22.0". */
  version: string;
  /** Adapter description as the peer's device reports it. */
  adapter: string;
  /** Ways this peer can express `c` (e.g. a fused contrib op and a decomposed graph). */
  variants(c: Comparison): string[];
  /** Builds `variant` of `c` with `inputs` uploaded to the peer's device. */
  prepare(c: Comparison, inputs: HostInputs, variant: string): Promise<PeerRun>;
  /** Releases the peer's device resources. */
  destroy(): Promise<void>;
}

/** Transposes a row-major `[rows, cols]` block batch: `[b, rows, cols] -> [b, cols, rows]`. */
export function transpose3(x: Float32Array, b: number, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < b; i++) {
    const o = i * rows * cols;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) out[o + c * rows + r] = x[o + r * cols + c];
    }
  }
  return out;
}

/** `[B, L, H*d] -> [B*H, L, d]` (head-major, what a matmul-based attention wants). */
export function splitHeads(x: Float32Array, batch: number, len: number, heads: number, d: number) {
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++) {
    for (let l = 0; l < len; l++) {
      for (let h = 0; h < heads; h++) {
        const src = ((b * len + l) * heads + h) * d;
        out.set(x.subarray(src, src + d), (((b * heads + h) * len) + l) * d);
      }
    }
  }
  return out;
}

/** Inverse of {@link splitHeads}: `[B*H, L, d] -> [B, L, H*d]`. */
export function mergeHeads(x: Float32Array, batch: number, len: number, heads: number, d: number) {
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let l = 0; l < len; l++) {
        const src = (((b * heads + h) * len) + l) * d;
        out.set(x.subarray(src, src + d), ((b * len + l) * heads + h) * d);
      }
    }
  }
  return out;
}

/** Scales a copy of `x` by `s`. */
export function scaled(x: Float32Array, s: number): Float32Array {
  return x.map((v) => v * s);
}
