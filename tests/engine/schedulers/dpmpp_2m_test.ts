import { assert, assertEquals, assertRejects, assertRelClose } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  createScheduler,
  DpmSolverMultistepScheduler,
  type VectorOps,
} from "../../../engine/schedulers/mod.ts";
import { alphasCumprod } from "../../../engine/schedulers/schedule.ts";
import { randomArray } from "../../assert.ts";
import { checkGoldenChain, fixtureConfig } from "./golden_chain.ts";

for (const n of [4, 25]) {
  Deno.test(`dpmpp-2m-karras: sched.dpmpp_2m_karras.n${n} chain (timesteps/sigmas exact, rel <= 1e-5)`, async () => {
    const sched = new DpmSolverMultistepScheduler(await fixtureConfig("dpmpp_2m_karras"), n);
    assertEquals(sched.name, "dpmpp-2m-karras");
    const errors = await checkGoldenChain(`sched.dpmpp_2m_karras.n${n}.`, sched);
    assert(errors.prev < 1e-5, JSON.stringify(errors));
  });
}

// DPM++ 2M without Karras sigmas has no reference fixture: the checks below are internal
// consistency against diffusers' formulas, computed independently here.

Deno.test("dpmpp-2m: timesteps and sigmas follow diffusers' spacing formulas (no fixture)", () => {
  const cfg = { ...ANIMATEDIFF_SCHEDULER_CONFIG };
  const ac = alphasCumprod(cfg);
  const sig = (t: number) => Math.sqrt((1 - ac[t]) / ac[t]);
  const lead = createScheduler("dpmpp-2m", cfg, 4);
  // leading: arange(n + 1) * (1000 // (n + 1)), reversed, last dropped, + steps_offset
  assertEquals(lead.timesteps, [801, 601, 401, 201]);
  assertRelClose(lead.sigmas!, [sig(801), sig(601), sig(401), sig(201), 0], 1e-6);
  assertEquals(lead.initNoiseSigma, 1);
  assertEquals(lead.modelInputScale(2), 1);
  const lin = (n: number) =>
    createScheduler("dpmpp-2m", { ...cfg, timestepSpacing: "linspace" }, n);
  // round(linspace(0, 999, n + 1)) half to even (499.5 -> 500), reversed, last dropped
  assertEquals(lin(4).timesteps, [999, 749, 500, 250]);
  const trail = createScheduler("dpmpp-2m", { ...cfg, timestepSpacing: "trailing" }, 4);
  assertEquals(trail.timesteps, [999, 749, 499, 249]);
  const sigmaMin = createScheduler("dpmpp-2m", { ...cfg, finalSigmasType: "sigma_min" }, 4);
  assertRelClose([sigmaMin.sigmas![4]], [sig(0)], 1e-6);
});

Deno.test("dpmpp-2m: lambda_min_clipped shortens the schedule for the cosine betas", () => {
  const cfg = { ...ANIMATEDIFF_SCHEDULER_CONFIG, betaSchedule: "squaredcos_cap_v2" as const };
  const unclipped = createScheduler("dpmpp-2m", { ...cfg, timestepSpacing: "linspace" }, 4);
  assertEquals(unclipped.timesteps[0], 999);
  const clipped = createScheduler("dpmpp-2m", {
    ...cfg,
    timestepSpacing: "linspace",
    lambdaMinClipped: -5.1,
  }, 4);
  // independent count of t with lambda(t) = log(sqrt(a) / sqrt(1 - a)) < -5.1
  const ac = alphasCumprod(cfg);
  let cut = 0;
  for (let t = 999; t >= 0 && 0.5 * Math.log(ac[t] / (1 - ac[t])) < -5.1; t--) cut++;
  assert(cut > 0, "the cosine schedule has lambda below -5.1 at the end");
  assertEquals(clipped.timesteps[0], Math.round(1000 - cut - 1));
});

/**
 * With a constant epsilon the probability-flow ODE keeps x / alpha - sigma * eps constant
 * (alpha = 1 / sqrt(sigma^2 + 1)); DPM-Solver++ is exact there (D1 = 0 after a first-order
 * step), so every step preserves it and the last step lands on that constant.
 */
Deno.test("dpmpp-2m: constant epsilon is integrated exactly (invariant within 1e-6)", () => {
  for (const name of ["dpmpp-2m", "dpmpp-2m-karras"] as const) {
    const sched = createScheduler(name, ANIMATEDIFF_SCHEDULER_CONFIG, 10);
    const ops = cpuVectorOps();
    const eps = randomArray(64, 3);
    let x = randomArray(64, 4, 10);
    const sigmas = sched.sigmas!;
    const invariant = (v: Float32Array, s: number) =>
      Array.from(v, (xi, i) => xi * Math.sqrt(s * s + 1) - s * eps[i]);
    const c = invariant(x, sigmas[0]);
    for (let i = 0; i < sched.timesteps.length; i++) {
      x = sched.step(ops, i, eps, x).prevSample;
      assertRelClose(invariant(x, sigmas[i + 1]), c, 1e-6, `${name} step ${i}`);
    }
    assertRelClose(x, c, 1e-6, `${name} final sample = x0`);
  }
});

Deno.test("dpmpp-2m: second-order update matches the midpoint formula; history is released", async () => {
  const sched = createScheduler("dpmpp-2m", ANIMATEDIFF_SCHEDULER_CONFIG, 20);
  const live = new Set<Float32Array>();
  const base = cpuVectorOps();
  const ops: VectorOps<Float32Array> = {
    ...base,
    lincomb: (t) => {
      const v = base.lincomb(t);
      live.add(v);
      return v;
    },
    release: (v) => void live.delete(v),
  };
  const x0 = randomArray(8, 1), e0 = randomArray(8, 2), e1 = randomArray(8, 3);
  const x1 = sched.step(ops, 0, e0, x0).prevSample;
  const x2 = sched.step(ops, 1, e1, x1).prevSample;
  const [s0, s1, s2] = sched.sigmas!;
  const a = (s: number) => 1 / Math.sqrt(s * s + 1);
  const lam = (s: number) => Math.log(a(s) / (s * a(s)));
  const m0 = Array.from(x0, (v, i) => (v - s0 * a(s0) * e0[i]) / a(s0));
  const m1 = Array.from(x1, (v, i) => (v - s1 * a(s1) * e1[i]) / a(s1));
  const h = lam(s2) - lam(s1), r0 = (lam(s1) - lam(s0)) / h;
  const expected = Array.from(x1, (v, i) => {
    const d1 = (m1[i] - m0[i]) / r0;
    const k = a(s2) * (Math.exp(-h) - 1);
    return (s2 * a(s2)) / (s1 * a(s1)) * v - k * m1[i] - 0.5 * k * d1;
  });
  assertRelClose(x2, expected, 1e-6, "2M midpoint step");
  // live: 2 history x0s + x1 + x2
  assertEquals(live.size, 4);
  sched.reset(ops);
  assertEquals(live.size, 2);
  await assertRejects(() => sched.step(ops, 5, e0, x0), /expected stepIndex 0, got 5/);
});
