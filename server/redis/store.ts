/**
 * The jobs of a scale-out API node: a {@link JobStore} on Redis. Any API node answers for any
 * job (status, SSE events, result bytes, DELETE); GPU workers (server/redis/worker.ts) run them.
 * API nodes hold no job state of their own, so one can restart without losing a queued job.
 * Each node also reaps: it puts back (or fails) the running jobs of workers whose heartbeats
 * stopped, and drops results past their TTL or beyond `maxResults`.
 * @module
 */

import { Buffer } from "node:buffer";
import { join } from "node:path";
import type { Redis } from "ioredis";
import type { PipelineOptions } from "../../engine/pipeline_types.ts";
import {
  ANIMATION_FORMATS,
  type AnimationFormat,
  encodeAnimation,
  type Frame,
} from "../../engine/output/mod.ts";
import type { JobBytes, JobsHealth, JobStore, WorkerHealth } from "../jobs.ts";
import {
  type CancelOutcome,
  type JobEvent,
  type JobResultInfo,
  type JobStatus,
  type JobView,
  QueueFullError,
} from "../queue.ts";
import type { AnimationRequest } from "../validate.ts";
import type { ModelsListing } from "../models_dir.ts";
import { modelSetKey } from "../resolve.ts";
import {
  connectRedis,
  DEFAULT_LEASE_MS,
  DEFAULT_PREFIX,
  definedOnly,
  eventCommands,
  keys,
  MAX_ATTEMPTS,
  script,
  viewOf,
  type WorkerRecord,
} from "./schema.ts";

/** Options of {@link RedisJobs.connect}. */
export interface RedisJobsOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Key prefix (default `zoetrope:`); API nodes and workers of one service share it. */
  prefix?: string;
  /** Jobs that may wait, across all API nodes, before POST answers 429. */
  queueSize: number;
  /** How long finished jobs and their bytes are kept (ms). */
  resultTtlMs: number;
  /** How many finished jobs are kept at most. */
  maxResults: number;
  /** Shared directory where workers put results over the Redis size cap (read here). */
  resultsDir?: string;
  /** Workers' lease (ms): only used to word the reason of a job failed by the reaper. */
  leaseMs?: number;
  /** How often this node reaps (ms; default 1 s). */
  reapEveryMs?: number;
  /** Server-sent events latency bound: how long one XREAD blocks (ms; default 500). */
  blockMs?: number;
}

const DEFAULT_RETRY_AFTER_S = 10;

type Listener = (e: JobEvent) => void;

/**
 * The Redis-backed {@link JobStore} of an API node.
 *
 * @example
 * ```ts ignore
 * const jobs = await RedisJobs.connect({ url: "redis://127.0.0.1:6379", queueSize: 32,
 *   resultTtlMs: 3_600_000, maxResults: 200 });
 * const app = createApp({ modelsDir: "./models", jobs });
 * ```
 */
export class RedisJobs implements JobStore {
  readonly #r: Redis;
  readonly #events: Redis;
  readonly #o: Required<Omit<RedisJobsOptions, "resultsDir">> & { resultsDir?: string };
  readonly #k: ReturnType<typeof keys>;
  readonly #listeners = new Map<string, { last: string; set: Set<Listener> }>();
  #pump: Promise<void> | null = null;
  #reaper: ReturnType<typeof setInterval>;
  #closed = false;

  private constructor(r: Redis, events: Redis, o: RedisJobsOptions) {
    this.#r = r;
    this.#events = events;
    this.#o = {
      prefix: DEFAULT_PREFIX,
      leaseMs: DEFAULT_LEASE_MS,
      reapEveryMs: 1000,
      blockMs: 500,
      ...definedOnly(o),
      url: o.url,
      queueSize: o.queueSize,
      resultTtlMs: o.resultTtlMs,
      maxResults: o.maxResults,
    };
    this.#k = keys(this.#o.prefix);
    this.#reaper = setInterval(() => {
      this.reap().catch(() => {}); // Redis away: the next round tries again
    }, this.#o.reapEveryMs);
  }

  /** Connects (one-line error when Redis cannot be reached). */
  static async connect(o: RedisJobsOptions): Promise<RedisJobs> {
    for (const k of ["queueSize", "resultTtlMs", "maxResults"] as const) {
      if (!Number.isFinite(o[k]) || o[k] < 0) {
        throw new RangeError(`RedisJobs: expected ${k} to be a number >= 0, got ${o[k]}`);
      }
    }
    const r = await connectRedis(o.url);
    // XREAD BLOCK holds its connection: server-sent events get their own.
    const events = r.duplicate();
    events.on("error", () => {});
    return new RedisJobs(r, events, o);
  }

  async submit(request: AnimationRequest, _options: PipelineOptions): Promise<JobView> {
    if (this.#closed) throw new Error("RedisJobs.submit: the store is closed");
    const id = crypto.randomUUID();
    const now = Date.now();
    // Workers resolve the names against their own models directories: no paths are stored.
    const [ok, n] = await script(
      this.#r,
      "submit",
      this.#o.prefix,
      id,
      this.#o.queueSize,
      now,
      JSON.stringify(request),
      modelSetKey(request),
      this.#o.resultTtlMs,
    ) as [number, number];
    if (ok !== 1) {
      throw new QueueFullError(
        `queue full: ${n} job(s) waiting (limit ${this.#o.queueSize})`,
        await this.retryAfterSeconds(),
      );
    }
    await this.#emit(id, "status");
    return (await this.get(id))!;
  }

  async get(id: string): Promise<JobView | undefined> {
    const [[, h], [, rank]] = await this.#r.multi()
      .hgetall(this.#k.job(id))
      .zrank(this.#k.queued, id)
      .exec() as [[unknown, Record<string, string>], [unknown, number | null]];
    if (!h || !h.id) return undefined;
    return viewOf(h, rank ?? null);
  }

  async list(o: { status?: JobStatus; limit?: number } = {}): Promise<JobView[]> {
    const limit = o.limit ?? 50;
    const out: JobView[] = [];
    const gone: string[] = [];
    // Newest first, in pages (a status filter may skip many).
    for (let start = 0; out.length < limit; start += 200) {
      const ids = await this.#r.zrevrange(this.#k.jobs, start, start + 199);
      if (ids.length === 0) break;
      const p = this.#r.pipeline();
      for (const id of ids) p.hgetall(this.#k.job(id)).zrank(this.#k.queued, id);
      const res = (await p.exec())!;
      for (let i = 0; i < ids.length && out.length < limit; i++) {
        const h = res[2 * i][1] as Record<string, string>;
        if (!h || !h.id) {
          gone.push(ids[i]);
          continue;
        }
        const v = viewOf(h, res[2 * i + 1][1] as number | null);
        if (o.status === undefined || v.status === o.status) out.push(v);
      }
    }
    if (gone.length) await this.#r.zrem(this.#k.jobs, ...gone);
    return out;
  }

  async preview(id: string): Promise<{ step: number; bytes: Uint8Array } | undefined> {
    const [[, h], [, bytes]] = await this.#r.multi()
      .hget(this.#k.job(id), "preview")
      .getBuffer(this.#k.preview(id))
      .exec() as [[unknown, string | null], [unknown, Buffer | null]];
    if (!h || !bytes) return undefined;
    return { step: (JSON.parse(h) as { step: number }).step, bytes: new Uint8Array(bytes) };
  }

  async result(id: string): Promise<JobBytes | undefined> {
    const h = await this.#r.hgetall(this.#k.job(id));
    if (h.status !== "succeeded" || !h.result) return undefined;
    const info = JSON.parse(h.result) as Omit<JobResultInfo, "expiresAt">;
    let bytes: Uint8Array | null = null;
    if (h.resultPath) {
      if (!this.#o.resultsDir) {
        throw new Error(
          "this result lies in the workers' shared results directory; start API nodes with --results DIR",
        );
      }
      bytes = await Deno.readFile(join(this.#o.resultsDir, h.resultPath)).catch(() => null);
    } else {
      const b = await this.#r.getBuffer(this.#k.result(id));
      bytes = b && new Uint8Array(b);
    }
    if (!bytes) return undefined;
    return { bytes, contentType: info.contentType, extension: info.extension };
  }

  async resultAs(id: string, format: AnimationFormat): Promise<JobBytes | null | undefined> {
    const h = await this.#r.hgetall(this.#k.job(id));
    if (h.status !== "succeeded" || !h.result) return undefined;
    if ((JSON.parse(h.request) as AnimationRequest).format === format) return this.result(id);
    const info = JSON.parse(h.result) as Omit<JobResultInfo, "expiresAt">;
    const cached = await this.#r.getBuffer(this.#k.resultAs(id, format));
    const cachedType = await this.#r.hget(this.#k.job(id), `as:${format}`);
    if (cached && cachedType) {
      const [contentType, extension] = JSON.parse(cachedType) as [string, string];
      return { bytes: new Uint8Array(cached), contentType, extension };
    }
    const raw = await this.#r.getBuffer(this.#k.frames(id));
    if (!raw) return null;
    const size = info.width * info.height * 4;
    const frames: Frame[] = [];
    for (let i = 0; i < info.frames; i++) {
      const data = new Uint8ClampedArray(size);
      data.set(raw.subarray(i * size, (i + 1) * size));
      frames.push({ data, width: info.width, height: info.height });
    }
    const e = await encodeAnimation(frames, format, { fps: info.fps });
    const ttl = await this.#r.pttl(this.#k.job(id));
    if (ttl > 0) {
      await this.#r.multi()
        .set(this.#k.resultAs(id, format), Buffer.from(e.bytes), "PX", ttl)
        .hset(this.#k.job(id), `as:${format}`, JSON.stringify([e.contentType, e.extension]))
        .exec();
    }
    return { bytes: e.bytes, contentType: e.contentType, extension: e.extension };
  }

  async cancel(id: string): Promise<CancelOutcome | undefined> {
    const out = await script(this.#r, "cancel", this.#o.prefix, id, Date.now()) as
      | CancelOutcome
      | null;
    if (!out) return undefined;
    if (out !== "finished") await this.#emit(id, "status");
    return out;
  }

  async subscribe(id: string, listener: Listener): Promise<(() => void) | undefined> {
    // Events from now on: the stream's last entry is where this listener starts.
    const [[, last], [, status]] = await this.#r.multi()
      .xrevrange(this.#k.events(id), "+", "-", "COUNT", 1)
      .hget(this.#k.job(id), "status")
      .exec() as [[unknown, [string, string[]][]], [unknown, string | null]];
    if (!status) return undefined;
    let entry = this.#listeners.get(id);
    if (!entry) {
      entry = { last: last[0]?.[0] ?? "0-0", set: new Set() };
      this.#listeners.set(id, entry);
    }
    entry.set.add(listener);
    this.#pump ??= this.#pumpEvents();
    return () => {
      entry.set.delete(listener);
      if (entry.set.size === 0 && this.#listeners.get(id) === entry) this.#listeners.delete(id);
    };
  }

  /** One loop per node reads every subscribed job's stream and calls its listeners. */
  async #pumpEvents(): Promise<void> {
    try {
      while (!this.#closed && this.#listeners.size > 0) {
        const ids = [...this.#listeners.keys()];
        let res: [string, [string, string[]][]][] | null;
        try {
          res = await this.#events.xread(
            "BLOCK",
            this.#o.blockMs,
            "STREAMS",
            ...ids.map((id) => this.#k.events(id)),
            ...ids.map((id) => this.#listeners.get(id)!.last),
          ) as [string, [string, string[]][]][] | null;
        } catch {
          if (this.#closed) return;
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        for (const [key, entries] of res ?? []) {
          const id = key.slice(this.#k.events("").length);
          const entry = this.#listeners.get(id);
          if (!entry || entries.length === 0) continue;
          entry.last = entries[entries.length - 1][0];
          const view = await this.get(id);
          if (!view) continue;
          // Several reports may have piled up: the latest view says it all, once per type.
          const types = new Set(entries.map(([, f]) => f[1] as JobEvent["type"]));
          for (const type of ["progress", "status"] as const) {
            if (!types.has(type)) continue;
            for (const l of [...entry.set]) {
              try {
                l({ type, job: view });
              } catch {
                entry.set.delete(l);
              }
            }
          }
        }
      }
    } finally {
      this.#pump = null;
      if (!this.#closed && this.#listeners.size > 0) this.#pump = this.#pumpEvents();
    }
  }

  /**
   * Puts back or fails the running jobs of workers whose leases expired, and drops results past
   * their TTL or beyond `maxResults` (with their files in the shared results directory).
   */
  async reap(): Promise<void> {
    const out = await script(
      this.#r,
      "reap",
      this.#o.prefix,
      Date.now(),
      MAX_ATTEMPTS,
      this.#o.leaseMs,
    ) as string[];
    for (let i = 0; i < out.length; i += 2) await this.#emit(out[i], "status");
    const now = Date.now();
    const expired = await this.#r.zrangebyscore(
      this.#k.finished,
      "-inf",
      now - this.#o.resultTtlMs,
    );
    const excess = (await this.#r.zcard(this.#k.finished)) - expired.length - this.#o.maxResults;
    const oldest = excess > 0
      ? await this.#r.zrange(this.#k.finished, expired.length, String(expired.length + excess - 1))
      : [];
    const drop = [...expired, ...oldest];
    if (drop.length) {
      const p = this.#r.multi();
      for (const id of drop) {
        p.del(
          this.#k.job(id),
          this.#k.result(id),
          this.#k.frames(id),
          this.#k.events(id),
          this.#k.preview(id),
        );
        for (const f of ANIMATION_FORMATS) p.del(this.#k.resultAs(id, f));
        p.zrem(this.#k.finished, id).zrem(this.#k.jobs, id);
      }
      await p.exec();
    }
    // Files in the shared results directory outlive their jobs until a node that has the
    // directory removes them (nodes without it leave the `files` entries alone).
    if (this.#o.resultsDir) {
      const files = await this.#r.hgetall(this.#k.files);
      const ids = Object.keys(files);
      if (ids.length === 0) return;
      const live = await this.#r.pipeline(ids.map((id) => ["exists", this.#k.job(id)])).exec();
      for (let i = 0; i < ids.length; i++) {
        if (live?.[i]?.[1] === 1) continue;
        await Deno.remove(join(this.#o.resultsDir, files[ids[i]])).catch(() => {});
        await this.#r.hdel(this.#k.files, ids[i]);
      }
    }
  }

  async health(): Promise<JobsHealth> {
    const [[, depth], [, running], [, stats], [, kept], [, workers]] = await this.#r.multi()
      .zcard(this.#k.queued)
      .hkeys(this.#k.running)
      .hgetall(this.#k.stats)
      .zcard(this.#k.jobs)
      .hgetall(this.#k.workers)
      .exec() as [
        [unknown, number],
        [unknown, string[]],
        [unknown, Record<string, string>],
        [unknown, number],
        [unknown, Record<string, string>],
      ];
    const records = Object.values(workers).map((w) => JSON.parse(w) as WorkerRecord)
      .sort((a, b) => a.id.localeCompare(b.id));
    const aliveEach = await Promise.all(
      records.map((w) => this.#r.exists(this.#k.alive(w.id))),
    );
    const list: WorkerHealth[] = records.map((w, i) => ({
      id: w.id,
      adapter: w.adapter,
      runningJob: w.runningJob,
      loadedModel: w.loaded
        ? {
          model: w.loaded.model,
          motionModule: w.loaded.motionModule,
          loras: w.loaded.loras.map((l) => l.name),
        }
        : null,
      jobsDone: w.jobsDone,
      draining: w.draining,
      lastHeartbeat: new Date(w.heartbeat).toISOString(),
      alive: aliveEach[i] === 1,
    }));
    return {
      queue: {
        depth,
        running: running[0] ?? null,
        runningIds: running,
        succeeded: Number(stats.succeeded ?? 0),
        failed: Number(stats.failed ?? 0),
        retried: Number(stats.retried ?? 0),
        kept,
      },
      loadedModels: records.filter((w, i) => w.loaded && aliveEach[i] === 1).map((w) => w.loaded!),
      workers: list,
      backend: "redis",
    };
  }

  /**
   * The models the registered workers offer (their directories' listings, published with their
   * heartbeats), merged by kind and name: what an API node without `--models` validates against.
   */
  async catalog(): Promise<ModelsListing> {
    const all = await this.#r.hgetall(this.#k.catalog);
    const out: ModelsListing = { checkpoints: [], motionModules: [], loras: [], embeddings: [] };
    for (const text of Object.values(all)) {
      const l = JSON.parse(text) as ModelsListing;
      for (const kind of ["checkpoints", "motionModules", "loras", "embeddings"] as const) {
        for (const e of l[kind] ?? []) {
          if (!out[kind].some((x) => x.name === e.name)) out[kind].push(e);
        }
      }
    }
    for (const kind of ["checkpoints", "motionModules", "loras", "embeddings"] as const) {
      out[kind].sort((a, b) => a.name.localeCompare(b.name));
    }
    return out;
  }

  async retryAfterSeconds(): Promise<number> {
    const [durations, workers] = await Promise.all([
      this.#r.lrange(this.#k.durations, 0, -1),
      this.#r.hlen(this.#k.workers),
    ]);
    if (durations.length === 0) return DEFAULT_RETRY_AFTER_S;
    const mean = durations.map(Number).reduce((a, b) => a + b, 0) / durations.length;
    return Math.max(1, Math.ceil(mean / 1000 / Math.max(1, workers)));
  }

  async #emit(id: string, type: "status" | "progress"): Promise<void> {
    const ttl = Number(await this.#r.hget(this.#k.job(id), "resultTtlMs")) || this.#o.resultTtlMs;
    await this.#r.multi(eventCommands(this.#o.prefix, id, type, ttl)).exec();
  }

  /** Disconnects (jobs stay in Redis for the other nodes and the workers). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#reaper);
    this.#listeners.clear();
    this.#events.disconnect();
    await this.#pump?.catch(() => {});
    await this.#r.quit().catch(() => this.#r.disconnect());
  }
}
