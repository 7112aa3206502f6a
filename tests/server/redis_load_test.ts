/**
 * The scale-out load test (bounded, loopback only): a real redis-server, 2 API nodes and 2 GPU
 * workers as subprocesses holding only the permissions the launcher computes (`deno task serve
 * --redis`, `deno task worker`), 30 requests on the tiny models in bursts — valid ones mixed
 * with invalid ones — and one worker SIGKILLed mid-job, then restarted. Every accepted job must
 * end succeeded or failed with a reason (none lost, none stuck), no answer may be a 5xx, and
 * every result must be fetchable from the API node that did not accept the job. Prints the
 * figures (jobs, retries, p50/p95 queue wait).
 */

import { Redis } from "ioredis";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../assert.ts";
import { hasAdapter, isCI } from "../gpu.ts";
import { makeModelsDir, SMALL_REQUEST } from "./fake_pipeline.ts";
import { redisAvailable, redisUrl, testPrefix } from "./redis_server.ts";
import type { JobView } from "../../server/queue.ts";
import { servePermissions, workerPermissions } from "../../server/launch.ts";

const MAIN = fileURLToPath(new URL("../../server/main.ts", import.meta.url));
const WORKER = fileURLToPath(new URL("../../server/worker_main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const JOBS = 30;
const LEASE_S = 3;

interface Proc {
  name: string;
  child: Deno.ChildProcess;
  log: string[];
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts an API node or (args[0] === "worker") a worker with exactly the permissions the
 * launcher computes — directly, not through the launcher, so that SIGKILL reaches the worker.
 */
async function start(name: string, args: string[]): Promise<Proc> {
  const worker = args[0] === "worker";
  const rest = worker ? args.slice(1) : args;
  const flags = worker ? await workerPermissions(rest) : await servePermissions(rest);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", CONFIG, ...flags, worker ? WORKER : MAIN, ...rest],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" },
  }).spawn();
  const log: string[] = [];
  for (const s of [child.stdout, child.stderr]) {
    s.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (t) => void log.push(t) }),
    ).catch(() => {});
  }
  return { name, child, log };
}

function stop(p: Proc, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
  try {
    p.child.kill(signal);
  } catch {
    // already gone
  }
  return p.child.status;
}

async function until<T>(what: string, f: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f().catch(() => null);
    if (v !== null) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

/** The bursts: valid jobs on both models, and requests each node must refuse with a 4xx. */
function request(i: number): { body: string; valid: boolean } {
  const valid = (b: unknown) => ({ body: JSON.stringify(b), valid: true });
  const invalid = (b: unknown) => ({
    body: typeof b === "string" ? b : JSON.stringify(b),
    valid: false,
  });
  switch (i % 6) {
    case 2:
      return [
        invalid({ ...SMALL_REQUEST, width: 60 }),
        invalid({ ...SMALL_REQUEST, model: "no-such-model" }),
        invalid("{not json"),
        invalid({ ...SMALL_REQUEST, frames: 500 }),
        invalid({ ...SMALL_REQUEST, steps: -1 }),
      ][Math.floor(i / 6) % 5];
    case 4:
      return valid({ ...SMALL_REQUEST, prompt: `a lighthouse ${i}`, seed: i, format: "apng" });
    case 5:
      return valid({ ...SMALL_REQUEST, model: "sd15", seed: i, steps: 2 });
    default:
      return valid({ ...SMALL_REQUEST, prompt: `a corgi ${i}`, seed: i, steps: 2 });
  }
}

Deno.test({
  name: "redis load: 2 API nodes + 2 workers, 30 jobs in bursts, one worker SIGKILLed mid-job",
  ignore: (!redisAvailable || !hasAdapter) && !isCI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!redisAvailable) throw new Error("no Redis under CI=true");
    if (!hasAdapter) throw new Error("no WebGPU adapter found under CI=true");
    const url = await redisUrl();
    const prefix = testPrefix();
    const models = await makeModelsDir();
    const ports = [freePort(), freePort()];
    const common = ["--redis", url, "--redis-prefix", prefix, "--models", models];
    const procs: Proc[] = [];
    const worker = (id: string) =>
      start(id, ["worker", ...common, "--lease", String(LEASE_S), "--id", id]);
    try {
      for (const port of ports) {
        procs.push(
          await start(`api:${port}`, [...common, "--port", String(port), "--queue-size", "40"]),
        );
      }
      const w1 = await worker("w1");
      const w2 = await worker("w2");
      procs.push(w1, w2);
      const bases = ports.map((p) => `http://127.0.0.1:${p}`);
      for (const base of bases) {
        await until(`${base} with 2 workers`, async () => {
          const h = await (await fetch(`${base}/healthz`)).json();
          return h.workers?.filter((w: { alive: boolean }) => w.alive).length === 2 ? h : null;
        }, 120_000);
      }
      const statuses: number[] = [];
      const accepted: { id: string; node: number }[] = [];
      let invalid = 0;
      let killed = false;
      for (let burst = 0; burst < JOBS / 10; burst++) {
        const answers = await Promise.all(Array.from({ length: 10 }, async (_, k) => {
          const i = burst * 10 + k;
          const { body, valid } = request(i);
          const node = i % 2;
          const r = await fetch(`${bases[node]}/v1/animations`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body,
          });
          const json = await r.json();
          return { status: r.status, valid, node, json };
        }));
        for (const a of answers) {
          statuses.push(a.status);
          if (a.status === 202) accepted.push({ id: a.json.id, node: a.node });
          else {
            invalid++;
            assert(!a.valid, `a valid request was refused: ${a.status} ${JSON.stringify(a.json)}`);
            assertEquals(a.status, 400, JSON.stringify(a.json));
            assert(typeof a.json.error === "string" && !a.json.error.includes("\n"));
          }
        }
        if (!killed) {
          // SIGKILL w1 while it runs a job, then start it again (a new process, new id).
          const running = await until("w1 running a job", async () => {
            const h = await (await fetch(`${bases[0]}/healthz`)).json();
            return h.workers.find((w: { id: string; runningJob: string | null }) =>
              w.id === "w1" && w.runningJob
            )?.runningJob ?? null;
          }, 60_000);
          await stop(w1, "SIGKILL");
          killed = true;
          procs.push(await worker("w1-restarted"));
          console.log(`killed w1 while it ran ${running}`);
        }
      }
      // Every accepted job ends; none is stuck.
      const views = new Map<string, JobView>();
      for (const { id, node } of accepted) {
        const v = await until(`job ${id} to end`, async () => {
          const r = await fetch(`${bases[node]}/v1/animations/${id}`);
          statuses.push(r.status);
          const j = await r.json() as JobView;
          return ["succeeded", "failed", "canceled"].includes(j.status) ? j : null;
        }, 240_000);
        views.set(id, v);
      }
      // Results from the node that did not accept the job.
      for (const { id, node } of accepted) {
        const v = views.get(id)!;
        if (v.status === "failed") {
          assert(
            typeof v.error === "string" && v.error.length > 0,
            `job ${id} failed without a reason`,
          );
          continue;
        }
        assertEquals(v.status, "succeeded");
        const r = await fetch(`${bases[1 - node]}/v1/animations/${id}/result`);
        statuses.push(r.status);
        assertEquals(r.status, 200);
        assertEquals((await r.arrayBuffer()).byteLength, v.result!.bytes);
      }
      const health = await (await fetch(`${bases[1]}/healthz`)).json();
      assert(statuses.every((s) => s < 500), `no 5xx: ${statuses.filter((s) => s >= 500)}`);
      assert(health.queue.retried >= 1, "the killed worker's job was retried");
      assertEquals(health.queue.depth, 0);
      assertEquals(health.queue.runningIds, []);
      const waits = [...views.values()].map((v) =>
        Date.parse(v.startedAt!) - Date.parse(v.createdAt)
      );
      const succeeded = [...views.values()].filter((v) => v.status === "succeeded").length;
      const failed = [...views.values()].filter((v) => v.status === "failed");
      console.log(
        `load: ${JOBS} requests, ${accepted.length} accepted, ${invalid} refused (400), ` +
          `${succeeded} succeeded, ${failed.length} failed, ${health.queue.retried} retried; ` +
          `queue wait p50 ${percentile(waits, 0.5)} ms, p95 ${percentile(waits, 0.95)} ms; ` +
          `workers ${
            health.workers.map((w: { id: string; jobsDone: number; alive: boolean }) =>
              `${w.id}:${w.jobsDone}${w.alive ? "" : "(dead)"}`
            ).join(" ")
          }`,
      );
      for (const f of failed) console.log(`failed ${f.id}: ${f.error}`);
      assertEquals(failed.length, 0, "the tiny jobs all succeed (the killed one on its retry)");
      // SIGTERM drains a worker: it exits cleanly and leaves /healthz.
      const code = (await stop(w2)).code;
      assertEquals(code, 0, `w2 exit code: ${w2.log.join("").slice(-500)}`);
      assert(/draining/.test(w2.log.join("")), "w2 said it drained");
      const after = await (await fetch(`${bases[0]}/healthz`)).json();
      assert(!after.workers.some((w: { id: string }) => w.id === "w2"), "w2 left /healthz");
    } catch (e) {
      for (const p of procs) console.log(`--- ${p.name}\n${p.log.join("").slice(-3000)}`);
      throw e;
    } finally {
      await Promise.all(procs.map((p) => stop(p)));
      const r = new Redis(url);
      const left = await r.keys(`${prefix}*`);
      if (left.length) await r.del(...left);
      r.disconnect();
      await Deno.remove(models, { recursive: true });
    }
  },
});
