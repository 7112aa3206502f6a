/**
 * Command line of `deno task bench` and the choice of case scales for an adapter.
 * @module
 */

import type { GemmPath } from "../kernels/gemm_direct.ts";
import type { KernelCase } from "../tests/kernels/case.ts";

/** A case scale. */
export type Scale = KernelCase["scale"];

/** Parsed bench options. */
export interface BenchOptions {
  /** Write results as JSON to this file. */
  json?: string;
  /** Only this scale (default: chosen by adapter). */
  scale?: Scale;
  /** Only these ops (from `--op a,b` or repeated `--op`). */
  ops: string[];
  /** Force the GEMM path of matmul / linear / conv2d (default: chosen by adapter). */
  gemmPath?: GemmPath;
  /** Show usage and exit. */
  help: boolean;
}

/** Usage text. */
export const USAGE = "usage: deno task bench [--json FILE] [--scale test|reduced|full] " +
  "[--op NAME[,NAME]] [--gemm-path tiled|direct]";

const SCALES: readonly Scale[] = ["test", "reduced", "full"];

/**
 * Parses bench arguments (`--flag value` or `--flag=value`); throws a one-line error on bad input.
 *
 * @example
 * ```ts
 * parseBenchArgs(["--scale", "full", "--op=matmul"]); // { scale: "full", ops: ["matmul"], ... }
 * ```
 */
export function parseBenchArgs(args: readonly string[]): BenchOptions {
  const out: BenchOptions = { ops: [], help: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") throw new Error(`bench: ${flag} needs a value. ${USAGE}`);
      return v;
    };
    if (flag === "--json") out.json = value();
    else if (flag === "--op") out.ops.push(...value().split(",").filter(Boolean));
    else if (flag === "--scale") {
      const s = value();
      if (!SCALES.includes(s as Scale)) {
        throw new Error(`bench: --scale must be test, reduced or full, got "${s}"`);
      }
      out.scale = s as Scale;
    } else if (flag === "--gemm-path") {
      const p = value();
      if (p !== "tiled" && p !== "direct") {
        throw new Error(`bench: --gemm-path must be tiled or direct, got "${p}"`);
      }
      out.gemmPath = p;
    } else throw new Error(`bench: unknown argument "${arg}". ${USAGE}`);
  }
  return out;
}

/**
 * The scales to run and the header line saying why: a software (fallback) adapter gets the
 * reduced shapes (and the test ones), a real GPU the full SD1.5 shapes (and the reduced ones).
 *
 * @example
 * ```ts
 * pickScales({ isFallback: true }); // { scales: ["test", "reduced"], label: "reduced shapes: software adapter" }
 * ```
 */
export function pickScales(
  adapter: { isFallback: boolean },
  forced?: Scale,
): { scales: Scale[]; label: string } {
  if (forced) return { scales: [forced], label: `${forced} shapes: --scale ${forced}` };
  return adapter.isFallback
    ? { scales: ["test", "reduced"], label: "reduced shapes: software adapter" }
    : { scales: ["reduced", "full"], label: "full SD1.5 shapes" };
}

/** Cases of the chosen scales and ops, in table order. */
export function selectCases(
  cases: readonly KernelCase[],
  scales: readonly Scale[],
  ops: readonly string[],
): KernelCase[] {
  return cases.filter((c) => scales.includes(c.scale) && (ops.length === 0 || ops.includes(c.op)));
}
