/**
 * WebGPU access for tests. Under CI=true a missing adapter FAILS the test (never a silent skip);
 * elsewhere GPU tests are marked ignored so the skip is visible in Deno's report.
 */

import { Gpu } from "../kernels/gpu/device.ts";

export const isCI = Deno.env.get("CI") === "true";

async function probe(): Promise<boolean> {
  try {
    return Boolean(await navigator.gpu?.requestAdapter());
  } catch {
    return false;
  }
}

/** True when a WebGPU adapter exists. */
export const hasAdapter: boolean = await probe();

let gpuPromise: Promise<Gpu> | null = null;

/** The test process's shared Gpu, with poisoned allocations (NaN) turned on. */
export function testGpu(): Promise<Gpu> {
  gpuPromise ??= Gpu.create().then((g) => {
    g.poison = true;
    return g;
  });
  return gpuPromise;
}

/** Declares a test that needs WebGPU: ignored without an adapter outside CI, failing in CI. */
export function gpuTest(name: string, fn: (gpu: Gpu) => Promise<void> | void): void {
  Deno.test({
    name,
    ignore: !hasAdapter && !isCI,
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
