import { assert, assertEquals, assertRejects } from "../assert.ts";
import { JobQueue, QueueFullError } from "../../server/queue.ts";
import { validateAnimationRequest } from "../../server/validate.ts";
import { fakeLoader } from "./fake_pipeline.ts";

const entry = (name: string) => ({ name, layout: "file" as const, path: `/m/${name}`, bytes: 1 });
const listing = {
  checkpoints: [entry("tiny")],
  motionModules: [entry("mm")],
  loras: [],
  embeddings: [],
};
const request = (steps = 2) =>
  validateAnimationRequest({ prompt: "a", frames: 2, width: 64, height: 64, steps, seed: 1 }, {
    listing,
  });
const OPTS = { model: "/m/tiny", motionModule: "/m/mm" };

Deno.test("JobQueue: retention by age uses the clock; by count drops the oldest", async () => {
  let now = 1_000_000;
  const { load } = fakeLoader();
  const q = new JobQueue({
    loadPipeline: load,
    queueSize: 4,
    resultTtlMs: 1000,
    maxResults: 10,
    now: () => now,
  });
  const a = q.submit(request(), OPTS);
  const done = new Promise<void>((ok) =>
    q.subscribe(a.id, (e) => e.job.status === "succeeded" && ok())
  );
  await done;
  assertEquals(q.get(a.id)!.result!.expiresAt, new Date(now + 1000).toISOString());
  now += 999;
  assertEquals(q.get(a.id)?.status, "succeeded");
  now += 1;
  assertEquals(q.get(a.id), undefined, "dropped at the TTL");
  assertEquals(q.result(a.id), undefined);
  await q.close();
});

Deno.test("JobQueue: a throwing listener does not stop the worker; close() cancels everything", async () => {
  const { load, log } = fakeLoader({ stepMs: 20 });
  const q = new JobQueue({ loadPipeline: load, queueSize: 4, resultTtlMs: 60_000, maxResults: 10 });
  const a = q.submit(request(), OPTS);
  q.subscribe(a.id, () => {
    throw new Error("broken client");
  });
  const b = q.submit(request(50), OPTS);
  const c = q.submit(request(), OPTS);
  while (q.get(b.id)!.status !== "running") await new Promise((ok) => setTimeout(ok, 5));
  assertEquals(q.get(a.id)!.status, "succeeded");
  await q.close();
  assertEquals([q.get(b.id)!.status, q.get(c.id)!.status], ["canceled", "canceled"]);
  assert(log.stepsRun[1] < 50, `b ran ${log.stepsRun[1]} steps`);
  assertEquals(log.disposed, 1, "close() releases the pipeline");
  await assertRejects(() => q.submit(request(), OPTS), /queue is closed/);
});

Deno.test("JobQueue: a full queue refuses with QueueFullError; options are checked", async () => {
  const { load } = fakeLoader({ stepMs: 10 });
  const q = new JobQueue({ loadPipeline: load, queueSize: 1, resultTtlMs: 1, maxResults: 1 });
  q.submit(request(5), OPTS);
  await new Promise((ok) => setTimeout(ok, 5));
  q.submit(request(), OPTS);
  const err = await assertRejects(
    () => q.submit(request(), OPTS),
    /queue full: 1 job\(s\) waiting \(limit 1\)/,
  );
  assert(err instanceof QueueFullError && err.retryAfterSeconds === 10, "default Retry-After 10 s");
  await q.close();
  await assertRejects(
    () => new JobQueue({ loadPipeline: load, queueSize: -1, resultTtlMs: 1, maxResults: 1 }),
    /queueSize to be a number >= 0/,
  );
});
