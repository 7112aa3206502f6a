/**
 * Bench results: one row per case, printed as an aligned table and written as JSON.
 * @module
 */

import type { DType } from "../kernels/gpu/tensor.ts";

/** One timed case (the `--json` record). */
export interface BenchResult {
  op: string;
  shape: number[];
  dtype: DType;
  /** Median milliseconds per run (null when the case was skipped). */
  ms: number | null;
  /** GFLOP/s, or null when FLOPs are not meaningful for the op. */
  gflops: number | null;
  /** GB/s, or null when the case has no byte count. */
  gbps: number | null;
  adapter: string;
}

/** Throughput of a run from the case's FLOP / byte counts. */
export function rates(
  ms: number,
  counts: { flops?: number; bytes?: number },
): { gflops: number | null; gbps: number | null } {
  const s = ms / 1e3;
  return {
    gflops: counts.flops !== undefined && s > 0 ? counts.flops / s / 1e9 : null,
    gbps: counts.bytes !== undefined && s > 0 ? counts.bytes / s / 1e9 : null,
  };
}

const COLUMNS = [
  ["op", 20],
  ["shape", 26],
  ["dtype", 5],
  ["ms", 10],
  ["GFLOP/s", 9],
  ["GB/s", 8],
] as const;

function cell(v: string, width: number, right: boolean): string {
  return right ? v.padStart(width) : v.padEnd(width);
}

function num(v: number | null, digits: number): string {
  return v === null ? "-" : v.toFixed(digits);
}

/** The table header line. */
export function headerRow(): string {
  return COLUMNS.map(([name, w], i) => cell(name, w, i >= 3)).join("  ");
}

/**
 * One table row; `note` (the case's description or a skip reason) goes at the end.
 *
 * @example
 * ```ts
 * formatRow({ op: "matmul", shape: [64, 64, 64], dtype: "f32", ms: 0.5, gflops: 1.05, gbps: null, adapter: "x" });
 * ```
 */
export function formatRow(r: BenchResult, note = ""): string {
  const values = [
    r.op,
    `[${r.shape.join(", ")}]`,
    r.dtype,
    num(r.ms, 3),
    num(r.gflops, 1),
    num(r.gbps, 1),
  ];
  const line = values.map((v, i) => cell(v, COLUMNS[i][1], i >= 3)).join("  ");
  return note ? `${line}  ${note}` : line;
}
