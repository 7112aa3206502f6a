/**
 * Every kernel case table (`tests/kernels/*_cases.ts`), statically imported so the bench type-checks
 * and bundles them. Add a line here when a new `_cases.ts` file appears.
 * @module
 */

import type { KernelCase } from "../tests/kernels/case.ts";
import { cases as attention } from "../tests/kernels/attention_cases.ts";
import { cases as backward } from "../tests/kernels/backward_cases.ts";
import { cases as conv2d } from "../tests/kernels/conv2d_cases.ts";
import { cases as elementwise } from "../tests/kernels/elementwise_cases.ts";
import { cases as embedding } from "../tests/kernels/embedding_cases.ts";
import { cases as groupNorm } from "../tests/kernels/group_norm_cases.ts";
import { cases as im2col } from "../tests/kernels/im2col_cases.ts";
import { cases as layerNorm } from "../tests/kernels/layer_norm_cases.ts";
import { cases as layout } from "../tests/kernels/layout_cases.ts";
import { cases as matmul } from "../tests/kernels/matmul_cases.ts";
import { cases as resample } from "../tests/kernels/resample_cases.ts";
import { cases as softmax } from "../tests/kernels/softmax_cases.ts";

/** Case tables by file stem, in bench order (compute-bound first). */
export const caseTables: Readonly<Record<string, readonly KernelCase[]>> = {
  matmul,
  conv2d,
  im2col,
  attention,
  group_norm: groupNorm,
  layer_norm: layerNorm,
  softmax,
  elementwise,
  layout,
  resample,
  embedding,
  backward,
};

/** Every case of every table. */
export function allCases(): KernelCase[] {
  return Object.values(caseTables).flat();
}
