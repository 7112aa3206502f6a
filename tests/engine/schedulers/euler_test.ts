import { assert, assertEquals, assertRelClose } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  EulerScheduler,
} from "../../../engine/schedulers/mod.ts";
import { eulerSigmaSchedule } from "../../../engine/schedulers/euler.ts";
import { alphasCumprod } from "../../../engine/schedulers/schedule.ts";
import { checkGoldenChain, fixtureConfig } from "./golden_chain.ts";

for (const n of [4, 25]) {
  Deno.test(`euler: sched.euler.n${n} chain (timesteps/sigmas exact, rel <= 1e-5)`, async () => {
    const sched = new EulerScheduler(await fixtureConfig("euler"), n);
    const errors = await checkGoldenChain(`sched.euler.n${n}.`, sched);
    assert(errors.prev < 1e-5 && errors.scaled < 1e-5, JSON.stringify(errors));
  });
}

Deno.test("euler: linspace/trailing schedules and init_noise_sigma follow diffusers' formulas", () => {
  const cfg = { ...ANIMATEDIFF_SCHEDULER_CONFIG };
  const ac = alphasCumprod(cfg);
  const trainSigma = (t: number) => Math.sqrt((1 - ac[t]) / ac[t]);
  const lin = eulerSigmaSchedule({ ...cfg, timestepSpacing: "linspace" }, 4);
  assertEquals(lin.timesteps, [999, 666, 333, 0]);
  assertRelClose(
    lin.sigmas,
    [trainSigma(999), trainSigma(666), trainSigma(333), trainSigma(0), 0],
    1e-6,
  );
  // linspace/trailing: init_noise_sigma = max sigma; leading: sqrt(max^2 + 1)
  assertEquals(lin.initNoiseSigma, lin.sigmas[0]);
  const lead = eulerSigmaSchedule(cfg, 4);
  assertRelClose([lead.initNoiseSigma], [Math.sqrt(lead.sigmas[0] ** 2 + 1)], 1e-6);
  // linspace with a fractional timestep interpolates between training sigmas
  const lin7 = eulerSigmaSchedule({ ...cfg, timestepSpacing: "linspace" }, 7);
  assertEquals(lin7.timesteps[1], Math.fround(832.5));
  assertRelClose([lin7.sigmas[1]], [(trainSigma(832) + trainSigma(833)) / 2], 1e-6);
  assertEquals(eulerSigmaSchedule({ ...cfg, timestepSpacing: "trailing" }, 4).timesteps, [
    999,
    749,
    499,
    249,
  ]);
});

Deno.test("euler: one step is x + (sigma_next - sigma) * eps; v-prediction uses c_skip/c_out", () => {
  const sched = new EulerScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 4);
  const ops = cpuVectorOps();
  const x = Float32Array.from([3, -2, 0.5]);
  const eps = Float32Array.from([0.2, -0.4, 1]);
  const [s0, s1] = sched.sigmas;
  const r = sched.step(ops, 0, eps, x);
  assertRelClose(r.prevSample, Array.from(x, (v, i) => v + (s1 - s0) * eps[i]), 1e-6);
  assertRelClose(r.predOriginal!, Array.from(x, (v, i) => v - s0 * eps[i]), 1e-6);
  assertRelClose([sched.modelInputScale(0)], [1 / Math.sqrt(s0 * s0 + 1)], 1e-6);

  const vs = new EulerScheduler(
    { ...ANIMATEDIFF_SCHEDULER_CONFIG, predictionType: "v_prediction" },
    4,
  );
  const rv = vs.step(ops, 0, eps, x);
  const x0 = Array.from(x, (v, i) => eps[i] * (-s0 / Math.sqrt(s0 * s0 + 1)) + v / (s0 * s0 + 1));
  assertRelClose(rv.predOriginal!, x0, 1e-6);
  assertRelClose(rv.prevSample, Array.from(x, (v, i) => v + (v - x0[i]) / s0 * (s1 - s0)), 1e-6);
});

Deno.test("euler: Karras sigmas span the interpolated range with rho = 7", () => {
  const cfg = { ...ANIMATEDIFF_SCHEDULER_CONFIG, useKarrasSigmas: true };
  const plain = eulerSigmaSchedule(ANIMATEDIFF_SCHEDULER_CONFIG, 5);
  const k = eulerSigmaSchedule(cfg, 5);
  assertRelClose([k.sigmas[0], k.sigmas[4]], [plain.sigmas[0], plain.sigmas[4]], 1e-6);
  const mid = ((plain.sigmas[0] ** (1 / 7) + plain.sigmas[4] ** (1 / 7)) / 2) ** 7;
  assertRelClose([k.sigmas[2]], [mid], 1e-6);
  assert(k.timesteps.every((t, i) => i === 0 || t < k.timesteps[i - 1]), "descending timesteps");
});
