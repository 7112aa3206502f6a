/**
 * Helpers of the backward tests: central finite differences of a CPU forward, seeded test data,
 * and a run of GPU ops on a gradient tape.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import { GradientTape } from "../../engine/training/autograd.ts";
import { randomArray } from "../assert.ts";

/** Elements of a shape. */
export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * dL/d(xs[k]) by central differences of L = sum(f(xs) * gy) in float64, each step the actual
 * f32 difference of the perturbed input.
 */
export function finiteDifferences(
  f: (xs: Float32Array[]) => Float32Array,
  xs: Float32Array[],
  gy: Float32Array,
  k: number,
  h = 1e-2,
): Float64Array {
  const loss = (ys: Float32Array) => ys.reduce((s, y, i) => s + y * gy[i], 0);
  const g = new Float64Array(xs[k].length);
  for (let i = 0; i < g.length; i++) {
    const v = xs[k][i];
    const p = xs.map((x) => x.slice()), m = xs.map((x) => x.slice());
    p[k][i] = v + h;
    m[k][i] = v - h;
    g[i] = (loss(f(p)) - loss(f(m))) / (p[k][i] - m[k][i]);
  }
  return g;
}

/** Seeded values in [-2, 2) of a shape, rounded to f16 for f16 tests. */
export function data(shape: readonly number[], seed: number, dtype: DType = "f32"): Float32Array {
  const v = randomArray(numel(shape), seed, 2);
  return dtype === "f16" ? roundToF16(v) : v;
}

/** One tape input: its values and shape, and whether the tape watches it (default yes). */
export interface TapeInput {
  data: Float32Array;
  shape: number[];
  watch?: boolean;
}

/**
 * Runs `fn` on a tape over uploaded `inputs`, then the backward of `gyOf(y.shape)`; returns y,
 * its shape, the gy used and each input's gradient (null where the tape gave none).
 */
export async function tapeRun(
  gpu: Gpu,
  dtype: DType,
  inputs: readonly TapeInput[],
  fn: (ts: Tensor[]) => Tensor,
  gyOf: (shape: readonly number[]) => Float32Array,
): Promise<
  { y: Float32Array; shape: readonly number[]; gy: Float32Array; grads: (Float32Array | null)[] }
> {
  const ts = inputs.map((i) => gpu.upload(i.data, i.shape, dtype));
  const tape = new GradientTape(gpu);
  ts.forEach((t, i) => inputs[i].watch !== false && tape.watch(t));
  const y = tape.run(() => gpu.scope(() => fn(ts)));
  const gyData = gyOf(y.shape);
  const gy = gpu.upload(gyData, y.shape, dtype);
  const grads = tape.gradients(y, gy);
  const out = [];
  for (const t of ts) {
    const g = grads.get(t);
    out.push(g ? await gpu.read(g) : null);
  }
  const result = { y: await gpu.read(y), shape: y.shape, gy: gyData, grads: out };
  for (const g of grads.values()) g.release();
  for (const t of [...ts, y, gy]) t.release();
  tape.dispose();
  return result;
}
