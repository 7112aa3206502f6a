import { assert, assertEquals, assertRelClose } from "../../assert.ts";
import { ANIMATEDIFF_SCHEDULER_CONFIG } from "../../../engine/schedulers/config.ts";
import {
  alphasCumprod,
  numpyArange,
  roundHalfEven,
  sigmaToT,
  torchLinspaceF32,
  trainBetas,
  trainSigmas,
} from "../../../engine/schedulers/schedule.ts";

const SD = { ...ANIMATEDIFF_SCHEDULER_CONFIG, betaSchedule: "scaled_linear" as const };

Deno.test("schedule: linear and scaled_linear betas from diffusers' formulas (rel 1e-6)", () => {
  const lin = trainBetas(ANIMATEDIFF_SCHEDULER_CONFIG);
  const byHand = Array.from({ length: 1000 }, (_, i) => 0.00085 + (0.012 - 0.00085) * i / 999);
  assertRelClose(lin, byHand, 1e-6, "linear");
  const scaled = trainBetas(SD);
  const a = Math.sqrt(0.00085), b = Math.sqrt(0.012);
  assertRelClose(scaled, byHand.map((_, i) => (a + (b - a) * i / 999) ** 2), 1e-6, "scaled_linear");
  assert(lin.every((v) => v === Math.fround(v)), "betas are float32 values");
});

Deno.test("schedule: SD1.5's scaled_linear sigmas span k-diffusion's 0.0292..14.6146", () => {
  const sigmas = trainSigmas(alphasCumprod(SD));
  assertRelClose([sigmas[0], sigmas[999]], [0.0291675, 14.6146], 1e-5);
});

Deno.test("schedule: squaredcos_cap_v2 betas = 1 - abar(t+1)/abar(t), capped at 0.999", () => {
  const betas = trainBetas({ ...ANIMATEDIFF_SCHEDULER_CONFIG, betaSchedule: "squaredcos_cap_v2" });
  const abar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
  const byHand = Array.from(
    { length: 1000 },
    (_, i) => Math.min(1 - abar((i + 1) / 1000) / abar(i / 1000), 0.999),
  );
  assertRelClose(betas, byHand, 1e-6);
  assertEquals(betas[999], Math.fround(0.999));
});

Deno.test("schedule: trained betas override the schedule", () => {
  const trainedBetas = Array.from({ length: 1000 }, () => 0.01);
  const ac = alphasCumprod({ ...ANIMATEDIFF_SCHEDULER_CONFIG, trainedBetas });
  assertRelClose([ac[0], ac[9]], [0.99, 0.99 ** 10], 1e-6);
});

Deno.test("schedule: torch linspace keeps exact endpoints; numpy helpers round half to even", () => {
  const l = torchLinspaceF32(0.00085, 0.012, 1000);
  assertEquals([l[0], l[999]], [Math.fround(0.00085), Math.fround(0.012)]);
  assertEquals([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, 2, 3]);
  assertEquals(numpyArange(1000, 0, -250), [1000, 750, 500, 250]);
  assertEquals(numpyArange(1000, 0, -1000 / 3).length, 3);
});

Deno.test("schedule: sigmaToT inverts the training sigmas (integer and midway points)", () => {
  const sigmas = trainSigmas(alphasCumprod(ANIMATEDIFF_SCHEDULER_CONFIG));
  const logs = sigmas.map((s) => Math.fround(Math.log(s)));
  assertRelClose([sigmaToT(sigmas[500], logs)], [500], 1e-7);
  const mid = Math.exp((logs[200] + logs[201]) / 2);
  assertRelClose([sigmaToT(mid, logs)], [200.5], 1e-6);
  assertEquals(sigmaToT(1e-9, logs), 0);
  assertEquals(sigmaToT(1e9, logs), 999);
});
