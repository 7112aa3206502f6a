/**
 * The service's memory answers: `dryRun` requests get the engine's memory plan (planned on the
 * tiny fixture models, nothing queued), GET /v1/models reports the adapter's memory limits and
 * the budget, and a budget below the plan says so with what would fit.
 */

import { assert, assertEquals } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { createApp } from "../../server/app.ts";
import type { MemoryPlan } from "../../engine/memory_plan.ts";
import { fakeLoader, makeModelsDir, SMALL_REQUEST } from "./fake_pipeline.ts";

const SMALL = SMALL_REQUEST;

async function withApp(
  maxMemory: number | undefined,
  fn: (app: ReturnType<typeof createApp>, loads: () => number) => Promise<void>,
): Promise<void> {
  const dir = await makeModelsDir();
  const fake = fakeLoader();
  const app = createApp({ modelsDir: dir, loadPipeline: fake.load, maxMemory });
  try {
    await fn(app, () => fake.log.loads.length);
  } finally {
    await app.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function post(app: ReturnType<typeof createApp>, body: unknown) {
  return app.request("/v1/animations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

gpuTest("http: dryRun answers with the memory plan and queues nothing", async () => {
  await withApp(undefined, async (app, loads) => {
    const r = await post(app, { ...SMALL, dryRun: true });
    assertEquals(r.status, 200, await r.clone().text());
    const { dryRun, plan } = await r.json() as { dryRun: boolean; plan: MemoryPlan };
    assertEquals(dryRun, true);
    assert(plan.fits, `fits: ${plan.reason}`);
    assertEquals([plan.frames, plan.width, plan.height], [4, 64, 64]);
    assert(plan.weightsBytes > 0 && plan.peakBytes > plan.weightsBytes, JSON.stringify(plan));
    assertEquals(loads(), 0, "no pipeline loaded");
    assertEquals((await app.jobs.health()).queue.depth, 0, "no job queued");
  });
});

gpuTest(
  "http: a budget below the plan: dryRun says what would fit; /v1/models reports it",
  async () => {
    await withApp(9_000_000, async (app) => {
      const models = await (await app.request("/v1/models")).json();
      const memory = models.limits.memory;
      assertEquals(memory.budgetBytes, 9_000_000);
      assert(
        memory.maxStorageBufferBindingSize > 0 && memory.maxBufferSize > 0,
        JSON.stringify(memory),
      );
      assert(typeof memory.adapter === "string" && memory.adapter.length > 0);
      const r = await post(app, { ...SMALL, dryRun: true });
      assertEquals(r.status, 200);
      const { plan } = await r.json() as { plan: MemoryPlan };
      assertEquals(plan.fits, false);
      assertEquals(plan.budgetBytes, 9_000_000);
      assert(/more than the 9\.00 MB budget; would fit: /.test(plan.reason!), plan.reason);
    });
  },
);

Deno.test("http: dryRun must be a boolean", async () => {
  await withApp(undefined, async (app) => {
    const r = await post(app, { ...SMALL, dryRun: "yes" });
    assertEquals(r.status, 400);
    const body = await r.json();
    assertEquals(body.field, "dryRun");
  });
});
