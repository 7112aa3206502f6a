/**
 * Kernel bench: `deno task bench [--json FILE] [--scale test|reduced|full] [--op NAME]`.
 * Times every case of the kernel case tables (the same tables the tests check) that fits the
 * adapter: reduced SD1.5 shapes on a software adapter, full ones on a real GPU.
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { timeGpu } from "../kernels/gpu/timing.ts";
import type { KernelCase } from "../tests/kernels/case.ts";
import { gemmPath, setGemmPathOverride } from "../kernels/gemm_direct.ts";
import { type BenchOptions, parseBenchArgs, pickScales, selectCases, USAGE } from "./options.ts";
import { allCases } from "./registry.ts";
import { type BenchResult, formatRow, headerRow, rates } from "./report.ts";

/** Target GPU time of one timed sample, used to pick repetitions per sample. */
const SAMPLE_TARGET_MS = 25;

async function timeCase(gpu: Gpu, c: KernelCase): Promise<{ ms: number; method: string }> {
  const { run, dispose } = c.setup(gpu);
  try {
    // One untimed run compiles the pipelines and estimates the cost.
    await gpu.sync();
    const t0 = performance.now();
    const submitsInRun = countSubmits(gpu, run);
    await gpu.sync();
    const est = performance.now() - t0;
    const reps = Math.max(1, Math.min(10, Math.floor(SAMPLE_TARGET_MS / Math.max(est, 0.01))));
    const samples = est > 250 ? 3 : 5;
    // A launcher that uploads (timestep / token ids) submits mid-run, which would split a
    // timestamp pass: time those by the wall clock around submit + completion.
    if (submitsInRun > 0) return await wallClock(gpu, run, reps, samples);
    const t = await timeGpu(gpu, run, { reps, samples });
    return { ms: t.medianMs, method: t.method };
  } finally {
    dispose();
    await gpu.sync();
  }
}

/** Runs `fn`, counting the submits it makes (uploads submit pending work first). */
function countSubmits(gpu: Gpu, fn: () => void): number {
  const recorder = gpu.recorder;
  const submit = recorder.submit;
  let count = 0;
  recorder.submit = () => {
    count++;
    submit.call(recorder);
  };
  try {
    fn();
  } finally {
    recorder.submit = submit;
  }
  return count;
}

async function wallClock(
  gpu: Gpu,
  run: () => void,
  reps: number,
  samples: number,
): Promise<{ ms: number; method: string }> {
  const out: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) run();
    await gpu.sync();
    out.push((performance.now() - t0) / reps);
  }
  out.sort((a, b) => a - b);
  return { ms: out[Math.floor(out.length / 2)], method: "wall-clock" };
}

/** Runs the selected cases on `gpu`, printing a row per case; returns the results. */
export async function runBench(
  gpu: Gpu,
  cases: readonly KernelCase[],
  options: BenchOptions,
  print: (line: string) => void = console.log,
): Promise<BenchResult[]> {
  const { scales, label } = pickScales(gpu.info, options.scale);
  const selected = selectCases(cases, scales, options.ops);
  const adapter = gpu.info.name;
  print(`adapter: ${adapter}${gpu.info.isFallback ? " (software)" : ""}; ${label}`);
  setGemmPathOverride(options.gemmPath ?? null);
  try {
    const path = gemmPath(gpu.info);
    print(
      `f16: ${gpu.hasF16 ? "yes" : "no"}; timing: ${
        gpu.hasTimestamps ? "timestamp-query" : "wall-clock"
      }; GEMM path: ${path}${options.gemmPath ? " (--gemm-path)" : ""}; ${selected.length} cases`,
    );
    print(headerRow());
    const results: BenchResult[] = [];
    for (const c of selected) {
      const base = { op: c.op, shape: c.shape, dtype: c.dtype, adapter };
      if (c.dtype === "f16" && !gpu.hasF16) {
        print(formatRow({ ...base, ms: null, gflops: null, gbps: null }, "skipped: no shader-f16"));
        continue;
      }
      try {
        const { ms, method } = await timeCase(gpu, c);
        const r: BenchResult = { ...base, ms, ...rates(ms, c) };
        results.push(r);
        const note = [c.note, method === "wall-clock" && gpu.hasTimestamps ? "(wall clock)" : ""];
        print(formatRow(r, note.filter(Boolean).join(" ")));
      } catch (e) {
        const msg = (e as Error).message.split("\n")[0];
        print(formatRow({ ...base, ms: null, gflops: null, gbps: null }, `skipped: ${msg}`));
        gpu.pool.trim();
      }
    }
    return results;
  } finally {
    setGemmPathOverride(null);
  }
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const gpu = await Gpu.create();
  try {
    const results = await runBench(gpu, allCases(), options);
    if (options.json) {
      await Deno.writeTextFile(options.json, JSON.stringify(results, null, 2) + "\n");
      console.log(`wrote ${results.length} results to ${options.json}`);
    }
  } finally {
    gpu.destroy();
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
