import { assert, assertEquals, assertRelClose } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  EulerAncestralScheduler,
  type VectorOps,
} from "../../../engine/schedulers/mod.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { checkGoldenChain, fixtureConfig } from "./golden_chain.ts";

for (const n of [4, 25]) {
  Deno.test(`euler-a: sched.euler_a.n${n} chain with TorchGenerator(1004) noise (rel <= 1e-5)`, async () => {
    const sched = new EulerAncestralScheduler(await fixtureConfig("euler_a"), n);
    const errors = await checkGoldenChain(`sched.euler_a.n${n}.`, sched);
    assert(errors.prev < 1e-5, JSON.stringify(errors));
  });
}

Deno.test("euler-a: one step = x + eps (sigma_down - sigma) + sigma_up z, one randn per step", () => {
  const sched = new EulerAncestralScheduler(ANIMATEDIFF_SCHEDULER_CONFIG, 4);
  const x = Float32Array.from({ length: 16 }, (_, i) => i / 4 - 2);
  const eps = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i));
  const base = cpuVectorOps(new TorchGenerator(5), 16);
  let draws = 0;
  const ops: VectorOps<Float32Array> = { ...base, randn: () => (draws++, base.randn()) };
  const z = new TorchGenerator(5).randn([16]);
  const [s, t] = sched.sigmas;
  const up = Math.sqrt(t * t * (s * s - t * t) / (s * s));
  const down = Math.sqrt(t * t - up * up);
  const r = sched.step(ops, 0, eps, x);
  assertRelClose(r.prevSample, Array.from(x, (v, i) => v + eps[i] * (down - s) + up * z[i]), 1e-6);
  // the last step has sigma_up = 0 but still consumes one draw, as diffusers does
  sched.step(ops, 3, eps, x);
  assertEquals(draws, 2);
});
