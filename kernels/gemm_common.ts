/**
 * Pieces shared by the GEMM family (kernels/matmul.ts, kernels/gemm_direct.ts, kernels/conv2d.ts):
 * epilogue activations, epilogue binding declarations, the workgroup grid and dtype checks.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { ceilDiv, MAX_GROUPS_PER_DIM } from "./gpu/kernel.ts";
import type { DType, Tensor } from "./gpu/tensor.ts";

/** Epilogue activation: gelu = erf GELU; quick_gelu = x * sigmoid(1.702 x) (CLIP). */
export type Activation = "none" | "silu" | "gelu" | "quick_gelu";

/** Every {@link Activation}. */
export const ACTIVATIONS: readonly Activation[] = ["none", "silu", "gelu", "quick_gelu"];

/** WGSL `actV(x: vec4<f32>)` and `act1(x: f32)` for an epilogue activation. */
export function activationWgsl(activation: Activation): string {
  const body: Record<Activation, string> = {
    none: "return x;",
    silu: "return x / (1.0 + exp(-x));",
    quick_gelu: "return x / (1.0 + exp(-1.702 * x));",
    // erf GELU; erf from the Numerical Recipes erfc fit (fractional error < 1.2e-7).
    gelu: `let s = x * 0.7071067811865476;
  let z = abs(s);
  let t = 1.0 / (1.0 + 0.5 * z);
  let c = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return 0.5 * x * (1.0 + sign(s) * (1.0 - c));`,
  };
  return ["vec4<f32>", "f32"].map((ty) =>
    `fn ${ty === "f32" ? "act1" : "actV"}(x: ${ty}) -> ${ty} {\n  ${body[activation]}\n}`
  ).join("\n");
}

/**
 * The storage declarations after the operands: optional bias and residual, then the output,
 * from binding 3 on (bindings 1 and 2 are the GEMM operands), with element type `elem`.
 */
export function epilogueBindingsWgsl(
  v: { bias: boolean; residual: boolean },
  elem: string,
  biasElem = elem,
): string {
  let binding = 3;
  const decls: string[] = [];
  if (v.bias) {
    decls.push(`@group(0) @binding(${binding++}) var<storage, read> biasv: array<${biasElem}>;`);
  }
  if (v.residual) {
    decls.push(`@group(0) @binding(${binding++}) var<storage, read> res: array<${elem}>;`);
  }
  decls.push(`@group(0) @binding(${binding}) var<storage, read_write> dst: array<${elem}>;`);
  return decls.join("\n");
}

/**
 * Grid for `colTiles` x `rest` workgroups, folding `rest` over y and z so no dimension exceeds
 * 65535. Shaders recover the linear id as `wid.y + wid.z * nwg.y` and skip ids >= rest.
 */
export function gemmGrid(op: string, colTiles: number, rest: number): [number, number, number] {
  if (colTiles > MAX_GROUPS_PER_DIM) {
    throw new Error(`${op}: expected at most ${MAX_GROUPS_PER_DIM} column tiles, got ${colTiles}`);
  }
  const z = ceilDiv(rest, MAX_GROUPS_PER_DIM);
  return [colTiles, ceilDiv(rest, z), z];
}

/** Checks that every tensor has `dtype` and that f16 is supported; names the op. */
export function checkDTypes(
  gpu: Gpu,
  op: string,
  tensors: Record<string, Tensor | undefined>,
): DType {
  const entries = Object.entries(tensors).filter((e): e is [string, Tensor] => e[1] !== undefined);
  const dtype = entries[0][1].dtype;
  for (const [name, t] of entries) {
    if (t.dtype !== dtype) {
      throw new Error(
        `${op}: expected ${name} to be ${dtype} like ${entries[0][0]}, got ${t.dtype}`,
      );
    }
  }
  if (dtype === "f16" && !gpu.hasF16) {
    throw new Error(`${op}: f16 tensors need the shader-f16 feature, which this adapter lacks`);
  }
  return dtype;
}

/** True when two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
