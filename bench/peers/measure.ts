/**
 * The one timing method every contender of the peer bench goes through: warm up, then samples
 * of `reps` back-to-back runs closed by one sync (a small readback), wall clock around the
 * whole sample, nothing subtracted; the median of the per-run times.
 * @module
 */

/** What a contender must provide to be timed. */
export interface Timed {
  /** Records/submits one run (may be async, e.g. `InferenceSession.run`). */
  run(): void | Promise<void>;
  /** Waits until every submitted run finished (reads back a few bytes of the last output). */
  sync(): Promise<void>;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  /** Target wall time of one sample in ms (picks `reps`; default 150). */
  sampleMs?: number;
  /** Most runs per sample (default 20). */
  maxReps?: number;
  /** Samples (default 5; 3 when one run takes over 300 ms). */
  samples?: number;
}

/** Result of {@link measure}. */
export interface Measurement {
  /** Median milliseconds per run. */
  medianMs: number;
  /** Per-run milliseconds of each sample. */
  samplesMs: number[];
  /** Runs per sample. */
  reps: number;
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Times `t`: two warm-up runs (compilation, uploads, cache fill), an estimate from the second,
 * then samples of back-to-back runs each closed by `sync()`.
 *
 * @example
 * ```ts
 * const m = await measure({ run: () => launch(), sync: () => gpu.sync() });
 * console.log(m.medianMs.toFixed(2), "ms per run");
 * ```
 */
export async function measure(t: Timed, options: MeasureOptions = {}): Promise<Measurement> {
  const { sampleMs = 150, maxReps = 20 } = options;
  await t.run();
  await t.sync();
  const t0 = performance.now();
  await t.run();
  await t.sync();
  const estimate = performance.now() - t0;
  const reps = Math.max(1, Math.min(maxReps, Math.round(sampleMs / Math.max(estimate, 0.05))));
  const samples = options.samples ?? (estimate > 300 ? 3 : 5);
  const samplesMs: number[] = [];
  for (let s = 0; s < samples; s++) {
    const start = performance.now();
    for (let r = 0; r < reps; r++) await t.run();
    await t.sync();
    samplesMs.push((performance.now() - start) / reps);
  }
  return { medianMs: median(samplesMs), samplesMs, reps };
}

/**
 * Reads back the first `bytes` of `buffer` on `device` (copy to a mappable buffer, map): a
 * small readback that also waits for all work submitted before it on that queue.
 */
export async function readFew(device: GPUDevice, buffer: GPUBuffer, bytes = 16): Promise<void> {
  const staging = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: "peer bench sync",
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  staging.unmap();
  staging.destroy();
}
