/**
 * The LCM scheduler (AnimateLCM's settings) against ../shared/fixtures/phase2-tiny (`lcm.*`):
 * timesteps, boundary scalings, a whole step sequence on the host, the noise drawn from the
 * torch-compatible generator, and a whole guided pipeline run through generate's own path.
 */

import { assert, assertEquals, assertRejects, assertRelClose } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { TorchGenerator } from "../../engine/rng.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  createScheduler,
  lcmScalings,
  LcmScheduler,
} from "../../engine/schedulers/mod.ts";
import {
  assertRunMatches,
  phase2,
  phase2Ints,
  phase2Pipeline,
  phase2Request,
  phase2Settings,
} from "./phase2.ts";

for (const n of [4, 6]) {
  Deno.test(`lcm: ${n} steps: timesteps, scalings and the step sequence match diffusers' LCMScheduler`, async () => {
    const lcm = createScheduler("lcm", ANIMATEDIFF_SCHEDULER_CONFIG, n);
    assert(lcm instanceof LcmScheduler);
    assertEquals([...lcm.timesteps], await phase2Ints(`lcm.n${n}.timesteps`));
    const cSkip = await phase2(`lcm.n${n}.c_skip`), cOut = await phase2(`lcm.n${n}.c_out`);
    lcm.timesteps.forEach((t, i) => {
      const s = lcmScalings(t);
      assertRelClose([s.cSkip, s.cOut], [cSkip[i], cOut[i]], 1e-6, `scalings at t=${t}`);
    });
    const outputs = await phase2(`lcm.n${n}.model_outputs`);
    const noise = await phase2(`lcm.n${n}.noise`);
    const denoised = await phase2(`lcm.n${n}.denoised`);
    const prev = await phase2(`lcm.n${n}.prev_samples`);
    const size = 1 * 4 * 2 * 4 * 4;
    // The noise is torch.randn from a generator seeded 5150 + n, drawn at steps 0..n-2 only.
    const gen = new TorchGenerator(5150 + n);
    const base = cpuVectorOps(gen, size);
    let draws = 0;
    const ops = { ...base, randn: () => (draws++, base.randn()) };
    let x = await phase2(`lcm.n${n}.x_init`);
    for (let i = 0; i < n; i++) {
      const at = (a: Float32Array) => a.subarray(i * size, (i + 1) * size);
      const r = lcm.step(ops, i, at(outputs), x);
      assertRelClose(r.predOriginal!, at(denoised), 1e-5, `denoised ${i}`);
      assertRelClose(r.prevSample, at(prev), 1e-5, `prev_sample ${i}`);
      x = r.prevSample;
    }
    assertEquals(draws, n - 1, "noise at every step but the last");
    // The generator's draws are the recorded noise (so the pipeline's seeded run matches too).
    const again = new TorchGenerator(5150 + n);
    for (let i = 0; i < n - 1; i++) {
      assertRelClose(again.randn([size]), noise.subarray(i * size, (i + 1) * size), 1e-6);
    }
  });
}

Deno.test("lcm: steps above original_inference_steps are refused", () => {
  let err: Error | null = null;
  try {
    new LcmScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 101);
  } catch (e) {
    err = e as Error;
  }
  assert(err && /steps must be an integer from 1 to 100/.test(err.message), `${err}`);
});

gpuTest("lcm: a whole guided AnimateDiff run matches the phase-2 fixture", async () => {
  const s = await phase2Settings("lcm");
  const pipe = await phase2Pipeline();
  try {
    const base = phase2Request(s.pipeline as Record<string, unknown>);
    const request = { ...base, scheduler: "lcm" as const, seed: 5120 };
    const steps: Float32Array[] = [];
    const latents = await pipe.generateLatents(request, {
      initialLatents: await phase2("lcm.pipe.latents_init"),
      onStepLatents: (_, l) => steps.push(l),
    });
    assertEquals(steps.length, 4);
    await assertRunMatches(pipe, { latents, steps, frames: request.frames }, "lcm.pipe");
    await assertRejects(
      () => pipe.generateLatents({ ...request, steps: 101 }),
      /^steps: the lcm scheduler takes at most 100 steps \(AnimateLCM's original_inference_steps\), got 101$/,
    );
  } finally {
    pipe.dispose();
  }
});
