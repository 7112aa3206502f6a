/**
 * GPU timing of recorded work with timestamp queries (falls back to wall-clock time around a
 * submit + onSubmittedWorkDone when the adapter lacks timestamp-query). Used by the bench.
 * @module
 */

import type { Gpu } from "./device.ts";

/** Result of {@link timeGpu}: milliseconds per repetition. */
export interface GpuTiming {
  samplesMs: number[];
  medianMs: number;
  /** "timestamp-query" or "wall-clock". */
  method: string;
}

/**
 * Runs `record` (which records dispatches) `reps` times per sample, for `samples` samples, and
 * returns the GPU time per repetition. One warm-up sample is discarded.
 */
export async function timeGpu(
  gpu: Gpu,
  record: () => void,
  { reps = 5, samples = 5 }: { reps?: number; samples?: number } = {},
): Promise<GpuTiming> {
  record();
  await gpu.sync();
  const out: number[] = [];
  if (gpu.hasTimestamps) {
    const querySet = gpu.device.createQuerySet({ type: "timestamp", count: 2 });
    const resolve = gpu.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = gpu.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      for (let s = 0; s < samples; s++) {
        gpu.recorder.submit();
        gpu.recorder.beginTimedPass(querySet, 0, 1);
        for (let r = 0; r < reps; r++) record();
        gpu.recorder.resolveQueries(querySet, 2, resolve);
        gpu.recorder.copy(resolve, 0, read, 0, 16);
        gpu.recorder.submit();
        await read.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(read.getMappedRange().slice(0));
        read.unmap();
        out.push(Number(t[1] - t[0]) / 1e6 / reps);
      }
    } finally {
      querySet.destroy();
      resolve.destroy();
      read.destroy();
    }
    gpu.checkHealth();
  } else {
    for (let s = 0; s < samples; s++) {
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) record();
      await gpu.sync();
      out.push((performance.now() - t0) / reps);
    }
  }
  const sorted = [...out].sort((a, b) => a - b);
  return {
    samplesMs: out,
    medianMs: sorted[Math.floor(sorted.length / 2)],
    method: gpu.hasTimestamps ? "timestamp-query" : "wall-clock",
  };
}
