/**
 * WebGPU access for tests. Under CI=true a missing adapter FAILS the test (never a silent skip);
 * elsewhere GPU tests are marked ignored so the skip is visible in Deno's report.
 */

import { Gpu } from "../kernels/gpu/device.ts";

export const isCI = Deno.env.get("CI") === "true";

async function probe(): Promise<GPUAdapter | null> {
  try {
    return (await navigator.gpu?.requestAdapter()) ?? null;
  } catch {
    return null;
  }
}

const adapter = await probe();

/** True when a WebGPU adapter exists. */
export const hasAdapter: boolean = adapter !== null;

/** True when the adapter has `shader-f16` (f16 kernel tests are ignored, never passed, without). */
export const hasF16: boolean = adapter?.features.has("shader-f16") ?? false;

let gpuPromise: Promise<Gpu> | null = null;

/** The test process's shared Gpu, with poisoned allocations (NaN) turned on. */
export function testGpu(): Promise<Gpu> {
  gpuPromise ??= Gpu.create().then((g) => {
    g.poison = true;
    return g;
  });
  return gpuPromise;
}

/** A GPU test's name, and whether it needs `shader-f16` (then it shows as ignored without). */
export interface GpuTestSpec {
  name: string;
  f16?: boolean;
}

/**
 * Declares a test that needs WebGPU: ignored without an adapter outside CI, failing in CI. A test
 * declared with `f16: true` is ignored (visibly, in Deno's report) when the adapter lacks
 * `shader-f16`.
 */
export function gpuTest(spec: string | GpuTestSpec, fn: (gpu: Gpu) => Promise<void> | void): void {
  const { name, f16 = false } = typeof spec === "string" ? { name: spec } : spec;
  Deno.test({
    name,
    ignore: (!hasAdapter && !isCI) || (hasAdapter && f16 && !hasF16),
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      if (!hasAdapter) throw new Error(`${name}: no WebGPU adapter found under CI=true`);
      const gpu = await testGpu();
      await fn(gpu);
      await gpu.sync();
    },
  });
}

/**
 * Runs `fn` and returns how many dispatches it recorded per `kernel:variant` (only those that
 * ran), so a test can check which kernel path was taken.
 */
export async function countDispatches(
  gpu: Gpu,
  fn: () => Promise<void> | void,
): Promise<Map<string, number>> {
  const before = gpu.dispatchCounts();
  await fn();
  const ran = new Map<string, number>();
  for (const [key, n] of gpu.dispatchCounts()) {
    const d = n - (before.get(key) ?? 0);
    if (d > 0) ran.set(key, d);
  }
  return ran;
}
