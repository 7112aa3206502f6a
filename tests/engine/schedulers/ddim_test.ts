import { assert, assertEquals, assertRelClose } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  DdimScheduler,
} from "../../../engine/schedulers/mod.ts";
import { alphasCumprod } from "../../../engine/schedulers/schedule.ts";
import { checkGoldenChain, fixtureConfig } from "./golden_chain.ts";

for (const n of [4, 25]) {
  Deno.test(`ddim: sched.ddim.n${n} chain (timesteps exact, prev/pred_original rel <= 1e-5)`, async () => {
    const sched = new DdimScheduler(await fixtureConfig("ddim"), n);
    const errors = await checkGoldenChain(`sched.ddim.n${n}.`, sched);
    assert(errors.prev < 1e-5 && errors.predOriginal < 1e-5, JSON.stringify(errors));
  });
}

Deno.test("ddim: spacings give diffusers' timesteps (hand-derived)", () => {
  const make = (timestepSpacing: "leading" | "linspace" | "trailing", n: number, stepsOffset = 1) =>
    new DdimScheduler({ ...ANIMATEDIFF_SCHEDULER_CONFIG, timestepSpacing, stepsOffset }, n)
      .timesteps;
  // leading: arange(n) * (1000 // n) reversed + offset
  assertEquals(make("leading", 3), [667, 334, 1]);
  assertEquals(make("leading", 3, 0), [666, 333, 0]);
  // linspace: round(linspace(0, 999, n)) with numpy's half-to-even (499.5 -> 500)
  assertEquals(make("linspace", 4), [999, 666, 333, 0]);
  assertEquals(make("linspace", 3), [999, 500, 0]);
  // trailing: round(arange(1000, 0, -1000 / n)) - 1 (937.5 -> 938, 812.5 -> 812)
  assertEquals(make("trailing", 4), [999, 749, 499, 249]);
  assertEquals(make("trailing", 3), [999, 666, 332]);
  assertEquals(make("trailing", 16), [
    999,
    937,
    874,
    811,
    749,
    687,
    624,
    561,
    499,
    437,
    374,
    311,
    249,
    187,
    124,
    61,
  ]);
});

Deno.test("ddim: one step equals eq. 12 computed by hand; v-prediction and clipping", () => {
  const cfg = { ...ANIMATEDIFF_SCHEDULER_CONFIG };
  const ac = alphasCumprod(cfg);
  const sched = new DdimScheduler(cfg, 4); // 751, 501, 251, 1
  const ops = cpuVectorOps();
  const x = Float32Array.from([0.5, -1.25, 2]);
  const eps = Float32Array.from([0.1, 0.3, -0.7]);
  const [a, ap] = [ac[751], ac[501]];
  const x0 = Array.from(x, (v, i) => (v - Math.sqrt(1 - a) * eps[i]) / Math.sqrt(a));
  const prev = x0.map((v, i) => Math.sqrt(ap) * v + Math.sqrt(1 - ap) * eps[i]);
  const r = sched.step(ops, 0, eps, x);
  assertRelClose(r.predOriginal!, x0, 1e-6, "x0");
  assertRelClose(r.prevSample, prev, 1e-6, "prev");
  // last step goes to alphas_cumprod[0] (set_alpha_to_one = false)
  const last = sched.step(ops, 3, eps, x);
  const x0l = Array.from(x, (v, i) => (v - Math.sqrt(1 - ac[1]) * eps[i]) / Math.sqrt(ac[1]));
  assertRelClose(
    last.prevSample,
    x0l.map((v, i) => Math.sqrt(ac[0]) * v + Math.sqrt(1 - ac[0]) * eps[i]),
    1e-6,
  );

  const v = new DdimScheduler({ ...cfg, predictionType: "v_prediction" }, 4).step(ops, 0, eps, x);
  assertRelClose(
    v.predOriginal!,
    Array.from(x, (s, i) => Math.sqrt(a) * s - Math.sqrt(1 - a) * eps[i]),
    1e-6,
  );

  const clipped = new DdimScheduler({ ...cfg, clipSample: true, clipSampleRange: 1 }, 4)
    .step(ops, 0, eps, x);
  assert(clipped.predOriginal!.every((e) => Math.abs(e) <= 1), "x0 clipped to [-1, 1]");
  // diffusers keeps the unclipped epsilon (use_clipped_model_output = false)
  const expected = Array.from(
    clipped.predOriginal!,
    (c, i) => Math.sqrt(ap) * c + Math.sqrt(1 - ap) * eps[i],
  );
  assertRelClose(clipped.prevSample, expected, 1e-6, "prev from clipped x0");
});
