import { assert, assertEquals, assertRejects } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  cpuVectorOps,
  createScheduler,
  SCHEDULER_NAMES,
  type SchedulerName,
} from "../../../engine/schedulers/mod.ts";
import { TorchGenerator } from "../../../engine/rng.ts";

Deno.test("mod: createScheduler builds every named scheduler with AnimateDiff's config", () => {
  const first: Record<string, number> = {};
  for (const name of SCHEDULER_NAMES) {
    const s = createScheduler(name, ANIMATEDIFF_SCHEDULER_CONFIG, 25);
    assertEquals(s.name, name);
    assertEquals(s.timesteps.length, 25);
    first[name] = s.timesteps[0];
  }
  // DPM-Solver's leading spacing uses 1000 // (n + 1) = 38: 25 * 38 + 1 = 951
  assertEquals(first, {
    ddim: 961,
    euler: 961,
    "euler-a": 961,
    "dpmpp-2m": 951,
    "dpmpp-2m-karras": 999,
    lcm: 999,
  });
});

Deno.test("mod: bad step counts and step indices are errors naming the scheduler", async () => {
  await assertRejects(
    () => createScheduler("heun" as SchedulerName, ANIMATEDIFF_SCHEDULER_CONFIG, 4),
    /unknown scheduler "heun"; expected one of ddim, euler/,
  );
  await assertRejects(
    () => createScheduler("ddim", ANIMATEDIFF_SCHEDULER_CONFIG, 0),
    /numSteps must be/,
  );
  const s = createScheduler("euler", ANIMATEDIFF_SCHEDULER_CONFIG, 4);
  await assertRejects(
    () => s.modelInputScale(4),
    /euler: stepIndex must be an integer in \[0, 3\]/,
  );
});

Deno.test("mod: cpuVectorOps lincomb accumulates in float64; randn draws from the generator", async () => {
  const ops = cpuVectorOps(new TorchGenerator(3), 20);
  const big = Float32Array.from([1e8, 1]);
  const y = ops.lincomb([{ c: 1, x: big }, { c: -1, x: big }, {
    c: 0.5,
    x: Float32Array.from([1, 3]),
  }]);
  assertEquals(Array.from(y), [0.5, 1.5]);
  assertEquals(Array.from(ops.randn()), Array.from(new TorchGenerator(3).randn([20])));
  assertEquals(Array.from(ops.clamp!(Float32Array.from([-2, 0.5, 3]), -1, 1)), [-1, 0.5, 1]);
  await assertRejects(() => cpuVectorOps().randn(), /TorchGenerator and a size/);
  await assertRejects(
    () => ops.lincomb([{ c: 1, x: big }, { c: 1, x: new Float32Array(3) }]),
    /lengths differ/,
  );
  assert(ops.lincomb([{ c: 2, x: big }])[0] === 2e8, "single term");
});
