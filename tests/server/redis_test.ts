/**
 * Scale-out mode against a real Redis, in one process with fake pipelines (no GPU): API nodes
 * (RedisJobs behind createApp) and workers (RedisWorker) sharing a key prefix. The subprocess
 * load test (redis_load_test.ts) covers SIGKILL and real models.
 */

import { Redis } from "ioredis";
import { assert, assertEquals } from "../assert.ts";
import { createApp, type ZoetropeApp } from "../../server/app.ts";
import { RedisJobs } from "../../server/redis/store.ts";
import { RedisWorker, type RedisWorkerOptions } from "../../server/redis/worker.ts";
import { keys, script } from "../../server/redis/schema.ts";
import { connectRedis } from "../../server/redis/schema.ts";
import type { JobView } from "../../server/queue.ts";
import { modelSetKey } from "../../server/resolve.ts";
import type { AnimationRequest } from "../../server/validate.ts";
import { fakeLoader, type FakeOptions, makeModelsDir, SMALL_REQUEST } from "./fake_pipeline.ts";
import { redisTest, testPrefix } from "./redis_server.ts";

interface Cluster {
  dir: string;
  prefix: string;
  nodes: ZoetropeApp[];
  stores: RedisJobs[];
  workers: RedisWorker[];
  startWorker(o?: Partial<RedisWorkerOptions> & FakeOptions): Promise<RedisWorker>;
  close(): Promise<void>;
}

async function cluster(
  url: string,
  o: { nodes?: number; queueSize?: number; resultTtlMs?: number; leaseMs?: number } = {},
): Promise<Cluster> {
  const dir = await makeModelsDir();
  const prefix = testPrefix();
  const stores: RedisJobs[] = [];
  const nodes: ZoetropeApp[] = [];
  for (let i = 0; i < (o.nodes ?? 2); i++) {
    const jobs = await RedisJobs.connect({
      url,
      prefix,
      queueSize: o.queueSize ?? 8,
      resultTtlMs: o.resultTtlMs ?? 60_000,
      maxResults: 50,
      reapEveryMs: 100,
      blockMs: 100,
      leaseMs: o.leaseMs ?? 1000,
    });
    stores.push(jobs);
    nodes.push(createApp({ modelsDir: dir, jobs, queueSize: o.queueSize ?? 8 }));
  }
  const workers: RedisWorker[] = [];
  return {
    dir,
    prefix,
    nodes,
    stores,
    workers,
    async startWorker(w = {}) {
      const { load } = fakeLoader({ stepMs: w.stepMs ?? 5, failOn: w.failOn });
      const worker = await RedisWorker.start({
        url,
        prefix,
        modelsDir: w.modelsDir ?? dir,
        loadPipeline: load,
        adapterName: () => Promise.resolve("fake adapter"),
        leaseMs: o.leaseMs ?? 1000,
        pollMs: 20,
        ...w,
      });
      workers.push(worker);
      return worker;
    },
    async close() {
      await Promise.all(workers.map((w) => w.drain()));
      for (const n of nodes) await n.close();
      const r = new Redis(url);
      const left = await r.keys(`${prefix}*`);
      if (left.length) await r.del(...left);
      r.disconnect();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function post(app: ZoetropeApp, body: unknown): Promise<Response> {
  return await app.request("/v1/animations", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function submit(app: ZoetropeApp, body: unknown = SMALL_REQUEST): Promise<string> {
  const r = await post(app, body);
  assertEquals(r.status, 202, await r.clone().text());
  return (await r.json()).id;
}

async function view(app: ZoetropeApp, id: string): Promise<JobView> {
  const r = await app.request(`/v1/animations/${id}`);
  assertEquals(r.status, 200);
  return await r.json();
}

async function waitFor(
  app: ZoetropeApp,
  id: string,
  done: string[] = ["succeeded", "failed", "canceled"],
  timeoutMs = 20_000,
): Promise<JobView> {
  const t0 = Date.now();
  for (;;) {
    const v = await view(app, id);
    if (done.includes(v.status)) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id} still ${v.status}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

redisTest(
  "redis: a job submitted on one API node runs on a worker; the other node serves it all",
  async (url) => {
    const c = await cluster(url);
    try {
      const [a, b] = c.nodes;
      const id = await submit(a);
      const queued = await view(b, id);
      assertEquals([queued.status, queued.queuePosition], ["queued", 0]);
      // Server-sent events from node B while node A accepted the job and a worker runs it.
      const events = await b.request(`/v1/animations/${id}/events`);
      assertEquals(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
      await c.startWorker();
      const text = await events.text(); // ends when the job is final
      const kinds = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      assertEquals(kinds[0], "status");
      assert(kinds.includes("progress"), kinds.join(","));
      const last = JSON.parse(text.trim().split("\n").at(-1)!.slice(6)) as JobView;
      assertEquals(last.status, "succeeded");
      const done = await waitFor(a, id);
      assertEquals(done.result?.frames, SMALL_REQUEST.frames);
      const ra = await a.request(`/v1/animations/${id}/result`);
      const rb = await b.request(`/v1/animations/${id}/result`);
      assertEquals([ra.status, rb.status], [200, 200]);
      const [ba, bb] = [
        new Uint8Array(await ra.arrayBuffer()),
        new Uint8Array(await rb.arrayBuffer()),
      ];
      assertEquals(ba.length, done.result!.bytes);
      assertEquals(ba, bb);
      assertEquals(ra.headers.get("content-type"), "image/gif");
      // Another format, re-encoded by node B from the frames the worker left in Redis.
      const png = await b.request(`/v1/animations/${id}/result?format=apng`);
      assertEquals(png.status, 200);
      assertEquals(png.headers.get("content-type"), "image/apng");
      const list = await (await b.request("/v1/animations?status=succeeded")).json();
      assertEquals(list.jobs.map((j: JobView) => j.id), [id]);
      const health = await (await a.request("/healthz")).json();
      assertEquals(health.backend, "redis");
      assertEquals(health.queue.succeeded, 1);
      assertEquals(health.workers.length, 1);
      assertEquals(
        [health.workers[0].adapter, health.workers[0].alive, health.workers[0].runningJob],
        ["fake adapter", true, null],
      );
      assertEquals(health.workers[0].loadedModel.model, "tiny");
      assertEquals(health.adapter, "fake adapter");
    } finally {
      await c.close();
    }
  },
);

redisTest(
  "redis: the queue limit holds across API nodes (429 + Retry-After); cancel from either",
  async (url) => {
    const c = await cluster(url, { queueSize: 2 });
    try {
      const [a, b] = c.nodes;
      const first = await submit(a);
      const second = await submit(b);
      const full = await post(b, SMALL_REQUEST);
      assertEquals(full.status, 429);
      assert(Number(full.headers.get("retry-after")) >= 1, "Retry-After");
      assert(/queue full: 2 job\(s\) waiting \(limit 2\)/.test((await full.json()).error));
      assertEquals((await view(a, second)).queuePosition, 1);
      // A queued job canceled on the other node is gone from the queue at once.
      const del = await b.request(`/v1/animations/${first}`, { method: "DELETE" });
      assertEquals(del.status, 200);
      assertEquals((await view(a, first)).status, "canceled");
      assertEquals((await view(a, second)).queuePosition, 0);
      assertEquals((await post(a, SMALL_REQUEST)).status, 202, "room again");
      const again = await a.request(`/v1/animations/${first}`, { method: "DELETE" });
      assertEquals(again.status, 409);
      // A running job: canceled between steps by the worker.
      await c.startWorker({ stepMs: 100 });
      await waitFor(a, second, ["running"]);
      const stop = await b.request(`/v1/animations/${second}`, { method: "DELETE" });
      assertEquals(stop.status, 202);
      assertEquals((await waitFor(a, second)).status, "canceled");
    } finally {
      await c.close();
    }
  },
);

redisTest(
  "redis: a worker prefers jobs for the models it holds, but not past the wait bound",
  async (url) => {
    const c = await cluster(url);
    try {
      const [a] = c.nodes;
      const lora = { ...SMALL_REQUEST, loras: [{ name: "lora_kohya", scale: 0.5 }] };
      // The worker is busy on the default set while a LoRA job and two default jobs queue up.
      await c.startWorker({ stepMs: 60, affinityWaitMs: 60_000 });
      const busy = await submit(a, { ...SMALL_REQUEST, steps: 25 });
      await waitFor(a, busy, ["running"]);
      const other = await submit(a, lora);
      const d1 = await submit(a);
      const d2 = await submit(a);
      const [vo, v1, v2] = [await waitFor(a, other), await waitFor(a, d1), await waitFor(a, d2)];
      assertEquals([vo.status, v1.status, v2.status], ["succeeded", "succeeded", "succeeded"]);
      assert(v1.startedAt! < vo.startedAt! && v2.startedAt! < vo.startedAt!, "loaded set first");
      // The claim itself: the head, unless a job for the held set is among the first few and
      // the head has not waited past the bound.
      await c.workers[0].drain();
      const ids = [await submit(a, lora), await submit(a), await submit(a, lora)];
      const r = await connectRedis(url);
      const held = modelSetKey({ ...SMALL_REQUEST, loras: [] } as unknown as AnimationRequest);
      const claim = async (key: string, waitMs: number) =>
        ((await script(r, "claim", c.prefix, "w", key, 16, waitMs, Date.now())) as [string])[0];
      assertEquals(await claim(held, 0), ids[0], "bound reached: the head");
      assertEquals(await claim(held, 60_000), ids[1], "the held set");
      assertEquals(await claim("", 60_000), ids[2], "nothing held: the head");
      r.disconnect();
    } finally {
      await c.close();
    }
  },
);

redisTest(
  "redis: a dead worker's job is retried once, then failed with the reason",
  async (url) => {
    const c = await cluster(url, { leaseMs: 600 });
    try {
      const [a] = c.nodes;
      const id = await submit(a);
      // A worker that claims the job and dies at once (no lease renewal).
      const r = await connectRedis(url);
      const k = keys(c.prefix);
      const claim = () =>
        script(r, "claim", c.prefix, "ghost", "", 16, 30_000, Date.now()) as Promise<
          [string, number] | null
        >;
      assertEquals((await claim())![0], id);
      assertEquals((await view(a, id)).status, "running");
      // The API nodes reap: back in the queue, first in line.
      const back = await waitFor(a, id, ["queued"], 5000);
      assertEquals(back.queuePosition, 0);
      assertEquals(await r.hget(k.job(id), "attempts"), "1");
      assertEquals((await claim())![1], 2);
      const failed = await waitFor(a, id, ["failed", "succeeded"], 5000);
      assertEquals(failed.status, "failed");
      assert(
        /stopped sending heartbeats .* on attempt 2 of 2; not retried again/.test(failed.error!),
        failed.error!,
      );
      const h = await (await a.request("/healthz")).json();
      assertEquals([h.queue.retried, h.queue.failed], [1, 1]);
      r.disconnect();
    } finally {
      await c.close();
    }
  },
);

redisTest("redis: a draining worker finishes its job and takes no new one", async (url) => {
  const c = await cluster(url);
  try {
    const [a] = c.nodes;
    const w = await c.startWorker({ stepMs: 40 });
    // 25 steps of 40 ms: the job outlasts the draining heartbeat by far.
    const id = await submit(a, { ...SMALL_REQUEST, steps: 25 });
    await waitFor(a, id, ["running"]);
    const next = await submit(a);
    const drained = w.drain();
    // drain() publishes its heartbeat without waiting for it: /healthz shows it shortly after.
    const t0 = Date.now();
    for (;;) {
      const h1 = await (await a.request("/healthz")).json();
      if (h1.workers.some((x: { draining: boolean }) => x.draining)) break;
      assert(Date.now() - t0 < 2000, "draining shown within 2 s");
      await new Promise((ok) => setTimeout(ok, 10));
    }
    assertEquals((await view(a, id)).status, "running", "still running while draining");
    await drained;
    assertEquals((await view(a, id)).status, "succeeded");
    assertEquals((await view(a, next)).status, "queued");
    const h2 = await (await a.request("/healthz")).json();
    assertEquals(h2.workers, [], "a drained worker leaves /healthz");
    await c.startWorker();
    assertEquals((await waitFor(a, next)).status, "succeeded");
  } finally {
    await c.close();
  }
});

redisTest(
  "redis: failures are one line with the reason; a worker without the model says so",
  async (url) => {
    const c = await cluster(url);
    try {
      const [a] = c.nodes;
      const emptyModels = await Deno.makeTempDir();
      await Deno.mkdir(`${emptyModels}/checkpoints`);
      await Deno.mkdir(`${emptyModels}/motion_modules`);
      await c.startWorker({ modelsDir: emptyModels });
      const id = await submit(a);
      const v = await waitFor(a, id);
      assertEquals(v.status, "failed");
      assertEquals(v.error, `model "tiny" is not in this worker's models directory`);
      const res = await a.request(`/v1/animations/${id}/result`);
      assertEquals(res.status, 409);
      await c.workers[0].drain();
      await c.startWorker({ failOn: "boom" });
      const bad = await submit(a, { ...SMALL_REQUEST, prompt: "boom" });
      const vb = await waitFor(a, bad);
      assertEquals([vb.status, vb.error], ["failed", "fake engine failure at step 1"]);
      const ok = await submit(a);
      assertEquals((await waitFor(a, ok)).status, "succeeded", "the next job runs");
      await Deno.remove(emptyModels, { recursive: true });
    } finally {
      await c.close();
    }
  },
);

redisTest(
  "redis: results expire by TTL on every node; bad Redis URLs are one-line errors",
  async (url) => {
    const c = await cluster(url, { resultTtlMs: 400 });
    try {
      const [a, b] = c.nodes;
      await c.startWorker();
      const id = await submit(a);
      assertEquals((await waitFor(a, id)).status, "succeeded");
      await new Promise((ok) => setTimeout(ok, 900));
      assertEquals((await b.request(`/v1/animations/${id}`)).status, 404);
      assertEquals((await a.request(`/v1/animations/${id}/result`)).status, 404);
      const r = new Redis(url);
      const left = (await r.keys(`${c.prefix}*`)).filter((k) =>
        k.includes(id) || k.endsWith("finished")
      );
      r.disconnect();
      assertEquals(left, [], "the job's keys are gone");
    } finally {
      await c.close();
    }
    for (
      const [bad, re] of [
        ["http://127.0.0.1:1", /expected a redis:\/\/ or rediss:\/\/ URL/],
        ["not a url", /expected a URL such as redis:\/\/127\.0\.0\.1:6379/],
        ["redis://:secret@127.0.0.1:1", /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/],
      ] as const
    ) {
      const e = await RedisJobs.connect({ url: bad, queueSize: 1, resultTtlMs: 1, maxResults: 1 })
        .then(() => null, (e) => e as Error);
      assert(e && re.test(e.message) && !e.message.includes("\n"), `${bad}: ${e?.message}`);
      assert(!e.message.includes("secret"), "password hidden");
    }
  },
);

redisTest(
  "redis: an API node without --models lists and validates against the workers' models",
  async (url) => {
    const c = await cluster(url, { nodes: 1 });
    const jobs = await RedisJobs.connect({
      url,
      prefix: c.prefix,
      queueSize: 8,
      resultTtlMs: 60_000,
      maxResults: 50,
    });
    const bare = createApp({ jobs });
    try {
      const early = await post(bare, SMALL_REQUEST);
      assertEquals(early.status, 503);
      assert(/no GPU worker has registered its models yet/.test((await early.json()).error));
      await c.startWorker();
      let models: { checkpoints: { name: string }[] } = { checkpoints: [] };
      for (let i = 0; i < 100 && models.checkpoints.length === 0; i++) {
        await new Promise((ok) => setTimeout(ok, 20));
        models = await (await bare.request("/v1/models")).json();
      }
      assert(models.checkpoints.some((m) => m.name === "tiny"), "the worker's models");
      assert(!JSON.stringify(models).includes(c.dir), "no paths");
      const unknown = await post(bare, { ...SMALL_REQUEST, model: "nope" });
      assertEquals(unknown.status, 400);
      const dry = await post(bare, { ...SMALL_REQUEST, dryRun: true });
      assertEquals(dry.status, 400);
      assert(/start it with --models/.test((await dry.json()).error));
      const id = await submit(bare);
      assertEquals((await waitFor(bare, id)).status, "succeeded");
      const health = await (await bare.request("/healthz")).json();
      assert(health.models.checkpoints >= 1, JSON.stringify(health.models));
    } finally {
      await bare.close();
      await c.close();
    }
  },
);

redisTest("redis: an API node restart loses no queued job", async (url) => {
  const c = await cluster(url, { nodes: 1 });
  try {
    const ids = [await submit(c.nodes[0]), await submit(c.nodes[0])];
    await c.nodes[0].close(); // the only API node goes away with two jobs queued
    const jobs = await RedisJobs.connect({
      url,
      prefix: c.prefix,
      queueSize: 8,
      resultTtlMs: 60_000,
      maxResults: 50,
    });
    const again = createApp({ modelsDir: c.dir, jobs });
    c.nodes[0] = again;
    assertEquals((await view(again, ids[1])).queuePosition, 1);
    await c.startWorker();
    for (const id of ids) assertEquals((await waitFor(again, id)).status, "succeeded");
  } finally {
    await c.close();
  }
});

redisTest(
  "redis: results over the size cap go to the shared results directory, or fail saying so",
  async (url) => {
    const c = await cluster(url, { resultTtlMs: 1500 });
    const shared = await Deno.makeTempDir({ prefix: "zoetrope_results_" });
    try {
      const [a] = c.nodes;
      await c.startWorker({ maxRedisBytes: 100 });
      const id = await submit(a);
      const failed = await waitFor(a, id);
      assertEquals(failed.status, "failed");
      assert(
        /over the 0\.0 MB kept in Redis; give the workers and API nodes a shared --results DIR/
          .test(failed.error!),
        failed.error!,
      );
      await c.workers[0].drain();
      // Workers and this API node share a results directory.
      const jobs = await RedisJobs.connect({
        url,
        prefix: c.prefix,
        queueSize: 8,
        resultTtlMs: 1500,
        maxResults: 50,
        resultsDir: shared,
        reapEveryMs: 100,
      });
      const withDir = createApp({ modelsDir: c.dir, jobs });
      c.nodes.push(withDir);
      await c.startWorker({ maxRedisBytes: 100, resultsDir: shared });
      const big = await submit(withDir);
      const done = await waitFor(withDir, big);
      assertEquals(done.status, "succeeded");
      const files = [...Deno.readDirSync(shared)].map((e) => e.name);
      assertEquals(files, [`${big}.gif`]);
      const r = await withDir.request(`/v1/animations/${big}/result`);
      assertEquals(r.status, 200);
      assertEquals(
        new Uint8Array(await r.arrayBuffer()),
        await Deno.readFile(`${shared}/${big}.gif`),
      );
      // A node without the directory says where the bytes are.
      const elsewhere = await a.request(`/v1/animations/${big}/result`);
      assertEquals(elsewhere.status, 500);
      assert(/start API nodes with --results DIR/.test((await elsewhere.json()).error));
      // Expired with its job: the file goes too (removed by the node that has the directory,
      // even when a node without it dropped the job first).
      for (let i = 0; i < 50 && [...Deno.readDirSync(shared)].length > 0; i++) {
        await new Promise((ok) => setTimeout(ok, 100));
      }
      assertEquals((await a.request(`/v1/animations/${big}`)).status, 404, "expired");
      assertEquals([...Deno.readDirSync(shared)], [], "the expired result's file is removed");
    } finally {
      await c.close();
      await Deno.remove(shared, { recursive: true });
    }
  },
);
