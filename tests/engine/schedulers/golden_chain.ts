/** Test helper: runs a scheduler over a recorded step sequence of tests/fixtures/tiny. */

import { assertEquals, assertRelClose } from "../../assert.ts";
import { goldensJson, loadGoldens } from "../../goldens.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import {
  cpuVectorOps,
  type Scheduler,
  type SchedulerConfig,
  schedulerConfigFromDiffusers,
} from "../../../engine/schedulers/mod.ts";

/** Relative tolerance of the brief: max abs error / max abs reference. */
export const REL_TOL = 1e-5;

/** Parsed config of `goldens.json["schedulers"][key]`. */
export async function fixtureConfig(key: string): Promise<SchedulerConfig> {
  const json = await goldensJson();
  return schedulerConfigFromDiffusers(json.schedulers[key]);
}

/** Float view of a golden tensor (int64 timesteps become numbers). */
export async function goldenNumbers(name: string): Promise<number[]> {
  const t = (await loadGoldens()).get(name);
  if (!t) throw new Error(`golden ${name} missing`);
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Worst relative errors over the chain, for the test report. */
export interface ChainErrors {
  scaled: number;
  prev: number;
  predOriginal: number;
}

/**
 * Checks timesteps (exact), sigmas (exact float32), init_noise_sigma (exact), then runs the
 * chain from x_init with the recorded model outputs (euler-a draws from TorchGenerator(1004))
 * and compares scaled inputs, prev samples and pred_original per step within REL_TOL.
 */
export async function checkGoldenChain(prefix: string, sched: Scheduler): Promise<ChainErrors> {
  const g = await loadGoldens();
  const get = (k: string) => g.get(prefix + k);
  const timesteps = await goldenNumbers(prefix + "timesteps");
  assertEquals(sched.timesteps, timesteps, `${prefix}timesteps`);
  const sigmas = get("sigmas");
  if (sigmas) {
    assertEquals(sched.sigmas, Array.from(sigmas.data as Float32Array), `${prefix}sigmas`);
  }
  assertEquals(
    sched.initNoiseSigma,
    (get("init_noise_sigma")!.data as Float32Array)[0],
    "init sigma",
  );
  const x = get("x_init")!.data as Float32Array;
  const size = x.length;
  const slice = (k: string, i: number) =>
    (get(k)!.data as Float32Array).subarray(i * size, (i + 1) * size);
  const ops = cpuVectorOps(new TorchGenerator(1004), size);
  const errors: ChainErrors = { scaled: 0, prev: 0, predOriginal: 0 };
  let sample = x;
  for (let i = 0; i < timesteps.length; i++) {
    const scale = sched.modelInputScale(i);
    const scaled = sample.map((v) => v * scale);
    const at = `${prefix} step ${i}`;
    errors.scaled = Math.max(
      errors.scaled,
      assertRelClose(scaled, slice("scaled_inputs", i), REL_TOL, at),
    );
    const { prevSample, predOriginal } = sched.step(ops, i, slice("model_outputs", i), sample);
    errors.prev = Math.max(
      errors.prev,
      assertRelClose(prevSample, slice("prev_samples", i), REL_TOL, at),
    );
    if (get("pred_original")) {
      if (!predOriginal) throw new Error(`${at}: scheduler returned no predOriginal`);
      const e = assertRelClose(
        predOriginal,
        slice("pred_original", i),
        REL_TOL,
        at + " pred_original",
      );
      errors.predOriginal = Math.max(errors.predOriginal, e);
    }
    // continue from our own result, so errors accumulate as in a real run
    sample = prevSample;
  }
  sched.reset(ops);
  return errors;
}
