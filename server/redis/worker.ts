/**
 * A scale-out GPU worker: takes jobs from Redis one at a time and runs them on this process's
 * GPU (`deno task worker --redis URL --models DIR`; any number, on any machines). It resolves
 * each request's model names against its own models directory, keeps the last model set loaded
 * and prefers queued jobs for it, reports progress and previews through Redis, renews a lease
 * while alive (a worker killed mid-job has its job retried once elsewhere, see schema.ts), and
 * on {@link RedisWorker.drain} finishes its job and takes no new one.
 * @module
 */

import { Buffer } from "node:buffer";
import { join } from "node:path";
import { hostname } from "node:os";
import type { Redis } from "ioredis";
import { loadPipeline } from "../../engine/pipeline.ts";
import type { ProgressEvent } from "../../engine/pipeline_types.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import {
  FRAMES_KEPT,
  jobProgressOf,
  type LoadedPipelineInfo,
  type PipelineLoader,
  resultInfoOf,
  runAnimation,
  type ServedPipeline,
} from "../queue.ts";
import { modelSetKey, pipelineOptionsFor, type ResolveSettings } from "../resolve.ts";
import { scanModelsDir } from "../models_dir.ts";
import {
  connectRedis,
  DEFAULT_LEASE_MS,
  DEFAULT_PREFIX,
  definedOnly,
  eventCommands,
  keys,
  MAX_ATTEMPTS,
  requestOf,
  script,
  type WorkerRecord,
} from "./schema.ts";

/** Options of {@link RedisWorker.start}. */
export interface RedisWorkerOptions extends ResolveSettings {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Key prefix shared with the API nodes (default `zoetrope:`). */
  prefix?: string;
  /** This worker's models directory (names resolve here). */
  modelsDir: string;
  /** Loads pipelines (default: the engine's). Tests inject fakes. */
  loadPipeline?: PipelineLoader;
  /** A GPU context every load uses (default: each pipeline creates its own). */
  device?: Gpu;
  /** Names the adapter for /healthz before a model is loaded (default: WebGPU probe). */
  adapterName?: () => Promise<string | null>;
  /** Results (or frames) larger than this go to `resultsDir` (default 16 MiB). */
  maxRedisBytes?: number;
  /** Shared directory for results over `maxRedisBytes` (API nodes read it). */
  resultsDir?: string;
  /** Lease: silent this long, the worker is taken for dead (default 30 s). */
  leaseMs?: number;
  /** Idle polling interval (default 250 ms). */
  pollMs?: number;
  /** A queued job waits at most this long behind jobs for the loaded models (default 30 s). */
  affinityWaitMs?: number;
  /** Worker id (default host-pid-random). */
  id?: string;
  /** Log lines (default: none). */
  log?: (line: string) => void;
}

/** Queued jobs a worker looks through for one matching its loaded models. */
const AFFINITY_SCAN = 16;
const DEFAULT_MAX_REDIS_BYTES = 16 * 1024 * 1024;

async function probeAdapter(): Promise<string | null> {
  try {
    const a = await navigator.gpu?.requestAdapter();
    if (!a) return null;
    return a.info.description || `${a.info.vendor} ${a.info.architecture}`.trim() || "unknown";
  } catch {
    return null;
  }
}

interface Loaded {
  key: string;
  pipeline: ServedPipeline;
  info: LoadedPipelineInfo;
}

/**
 * One GPU worker.
 *
 * @example
 * ```ts ignore
 * const w = await RedisWorker.start({ url: "redis://127.0.0.1:6379", modelsDir: "./models" });
 * Deno.addSignalListener("SIGTERM", () => w.drain());
 * await w.done;
 * ```
 */
export class RedisWorker {
  readonly id: string;
  /** Resolves once the worker stopped (drained or stopped). */
  readonly done: Promise<void>;
  readonly #r: Redis;
  readonly #o: RedisWorkerOptions & {
    prefix: string;
    leaseMs: number;
    pollMs: number;
    affinityWaitMs: number;
    maxRedisBytes: number;
  };
  readonly #k: ReturnType<typeof keys>;
  readonly #load: PipelineLoader;
  #loaded: Loaded | null = null;
  #adapter: string | null = null;
  #running: string | null = null;
  #jobsDone = 0;
  #draining = false;
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  #wake: (() => void) | null = null;

  private constructor(r: Redis, o: RedisWorkerOptions) {
    this.#r = r;
    this.#o = {
      prefix: DEFAULT_PREFIX,
      leaseMs: DEFAULT_LEASE_MS,
      pollMs: 250,
      affinityWaitMs: 30_000,
      maxRedisBytes: DEFAULT_MAX_REDIS_BYTES,
      ...definedOnly(o),
      url: o.url,
      modelsDir: o.modelsDir,
    };
    this.#k = keys(this.#o.prefix);
    this.id = o.id ?? `${hostname()}-${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
    const load = o.loadPipeline ?? loadPipeline;
    this.#load = o.device ? (p) => load({ ...p, device: o.device }) : load;
    this.done = this.#loop();
  }

  /** Connects, registers and starts taking jobs. */
  static async start(o: RedisWorkerOptions): Promise<RedisWorker> {
    const st = await Deno.stat(o.modelsDir).catch(() => null);
    if (!st?.isDirectory) throw new Error(`--models: "${o.modelsDir}" is not a directory`);
    if (o.leaseMs !== undefined && (!Number.isFinite(o.leaseMs) || o.leaseMs < 500)) {
      throw new RangeError(`RedisWorker: expected leaseMs >= 500, got ${o.leaseMs}`);
    }
    const r = await connectRedis(o.url);
    const w = new RedisWorker(r, o);
    return w;
  }

  /** Finishes the running job (if any), takes no new one, then stops. */
  drain(): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      this.#o.log?.(`worker ${this.id}: draining${this.#running ? ` (job ${this.#running})` : ""}`);
      this.#wake?.();
      this.#beat().catch(() => {});
    }
    return this.done;
  }

  async #loop(): Promise<void> {
    // Start after the constructor returned (start() hands the worker out first).
    await Promise.resolve();
    this.#adapter = await (this.#o.adapterName ??
      (this.#o.device ? () => Promise.resolve(this.#o.device!.info.name) : probeAdapter))();
    await this.#beat();
    await this.#publishCatalog();
    let beats = 0;
    this.#heartbeat = setInterval(() => {
      // The models listing follows the directory (re-read every 10 heartbeats).
      if (++beats % 10 === 0) this.#publishCatalog().catch(() => {});
      this.#beat().catch(() => {}); // Redis away: the lease runs out, as it should
    }, Math.max(100, Math.floor(this.#o.leaseMs / 3)));
    this.#o.log?.(
      `worker ${this.id}: ready (adapter ${this.#adapter ?? "none"}, models ${this.#o.modelsDir})`,
    );
    let lastReap = 0;
    let lastError = "";
    try {
      while (!this.#draining) {
        try {
          if (Date.now() - lastReap > this.#o.leaseMs / 2) {
            lastReap = Date.now();
            await this.#reap();
          }
          const claimed = await script(
            this.#r,
            "claim",
            this.#o.prefix,
            this.id,
            this.#loaded?.key ?? "",
            AFFINITY_SCAN,
            this.#o.affinityWaitMs,
            Date.now(),
          ) as [string, number] | null;
          if (claimed) {
            await this.#run(claimed[0], claimed[1]);
            continue;
          }
        } catch (e) {
          // Redis away or a broken job record: say so once per distinct message, keep polling.
          const msg = (e as Error).message;
          if (msg !== lastError) this.#o.log?.(`worker ${this.id}: ${msg}`);
          lastError = msg;
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.#o.pollMs);
          this.#wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.#wake = null;
      }
    } finally {
      if (this.#heartbeat !== null) clearInterval(this.#heartbeat);
      try {
        this.#loaded?.pipeline.dispose();
      } catch {
        // dropped anyway
      }
      this.#loaded = null;
      if (this.#draining) {
        await this.#r.multi().del(this.#k.alive(this.id)).hdel(this.#k.workers, this.id)
          .hdel(this.#k.catalog, this.id).exec().catch(() => {});
      }
      await this.#r.quit().catch(() => this.#r.disconnect());
      this.#o.log?.(`worker ${this.id}: stopped after ${this.#jobsDone} job(s)`);
    }
  }

  /** Publishes this worker's models directory listing (API nodes without --models use it). */
  async #publishCatalog(): Promise<void> {
    const listing = await scanModelsDir(this.#o.modelsDir);
    await this.#r.hset(this.#k.catalog, this.id, JSON.stringify(listing));
  }

  /** Renews the lease and the /healthz record. */
  async #beat(): Promise<void> {
    const rec: WorkerRecord = {
      id: this.id,
      host: hostname(),
      pid: Deno.pid,
      adapter: this.#adapter,
      runningJob: this.#running,
      loaded: this.#loaded?.info ?? null,
      jobsDone: this.#jobsDone,
      draining: this.#draining,
      heartbeat: Date.now(),
      leaseMs: this.#o.leaseMs,
    };
    await this.#r.multi()
      .set(this.#k.alive(this.id), "1", "PX", this.#o.leaseMs)
      .hset(this.#k.workers, this.id, JSON.stringify(rec))
      .exec();
  }

  async #reap(): Promise<void> {
    const out = await script(
      this.#r,
      "reap",
      this.#o.prefix,
      Date.now(),
      MAX_ATTEMPTS,
      this.#o.leaseMs,
    ) as string[];
    for (let i = 0; i < out.length; i += 2) await this.#emit(out[i], "status", this.#o.leaseMs);
    // Workers silent for 10 leases leave /healthz.
    const all = await this.#r.hgetall(this.#k.workers);
    const stale = Object.values(all).map((v) => JSON.parse(v) as WorkerRecord)
      .filter((w) => Date.now() - w.heartbeat > 10 * w.leaseMs).map((w) => w.id);
    if (stale.length) {
      await this.#r.multi().hdel(this.#k.workers, ...stale).hdel(this.#k.catalog, ...stale).exec();
    }
  }

  async #emit(id: string, type: "status" | "progress", ttlMs: number): Promise<void> {
    await this.#r.multi(eventCommands(this.#o.prefix, id, type, ttlMs)).exec();
  }

  async #run(id: string, attempt: number): Promise<void> {
    const jk = this.#k.job(id);
    const h = await this.#r.hgetall(jk);
    const ttl = Number(h.resultTtlMs) || 3_600_000;
    const request = requestOf(h);
    const controller = new AbortController();
    this.#running = id;
    this.#beat().catch(() => {});
    await this.#emit(id, "status", ttl);
    const started = Date.now();
    // DELETE on any API node sets the job's cancel flag: checked twice a second.
    const watch = setInterval(async () => {
      try {
        if (await this.#r.hget(jk, "cancel") === "1") controller.abort();
      } catch {
        // Redis away: keep going; the lease decides
      }
    }, 500);
    let progressWrite = Promise.resolve();
    const onProgress = (e: ProgressEvent) => {
      const p = jobProgressOf(e);
      progressWrite = progressWrite.then(async () => {
        const res = await this.#r.multi().hset(jk, "progress", JSON.stringify(p)).hget(jk, "cancel")
          .exec();
        if (res?.[1]?.[1] === "1") controller.abort();
        await this.#emit(id, "progress", ttl);
      }).catch(() => {});
    };
    const finish = async (status: string, error: string, result: string) => {
      await progressWrite;
      const ok = await script(
        this.#r,
        "finish",
        this.#o.prefix,
        id,
        this.id,
        attempt,
        status,
        error,
        Date.now(),
        result,
      );
      if (ok !== 1) {
        this.#o.log?.(`worker ${this.id}: job ${id} was taken over while it ran; result dropped`);
        return;
      }
      await this.#emit(id, "status", ttl);
    };
    try {
      if (h.cancel === "1") controller.abort();
      controller.signal.throwIfAborted();
      const pipeline = await this.#pipeline(request, onProgress);
      controller.signal.throwIfAborted();
      const { animation, encoded, encodeMs } = await runAnimation(pipeline, request, {
        signal: controller.signal,
        onProgress,
        onPreview: (p) => {
          progressWrite = progressWrite.then(() =>
            this.#r.multi()
              .set(this.#k.preview(id), Buffer.from(p.bytes), "PX", ttl)
              .hset(jk, "preview", JSON.stringify({ step: p.step, total: p.total }))
              .exec().then(() => {})
          ).catch(() => {});
        },
      });
      const info = resultInfoOf(id, animation, encoded, encodeMs);
      const w = this.#o.maxRedisBytes;
      const m = this.#r.multi();
      if (encoded.bytes.length <= w) {
        m.set(this.#k.result(id), Buffer.from(encoded.bytes), "PX", ttl);
      } else if (this.#o.resultsDir) {
        const name = `${id}${encoded.extension}`;
        await Deno.writeFile(join(this.#o.resultsDir, name), encoded.bytes);
        m.hset(jk, "resultPath", name).hset(this.#k.files, id, name);
      } else {
        throw new Error(
          `the result is ${(encoded.bytes.length / 1048576).toFixed(1)} MB, over the ` +
            `${(w / 1048576).toFixed(1)} MB kept in Redis; give the workers and API nodes a ` +
            `shared --results DIR`,
        );
      }
      // Raw frames let any API node re-encode the newest results in other formats.
      const frameBytes = animation.frames.reduce((n, f) => n + f.data.length, 0);
      if (frameBytes <= w) {
        const raw = Buffer.alloc(frameBytes);
        let o = 0;
        for (const f of animation.frames) {
          raw.set(f.data, o);
          o += f.data.length;
        }
        m.set(this.#k.frames(id), raw, "PX", ttl);
      }
      m.lpush(this.#k.durations, String(Date.now() - started)).ltrim(this.#k.durations, 0, 19);
      await m.exec();
      if (frameBytes <= w) await script(this.#r, "keepFrames", this.#o.prefix, id, FRAMES_KEPT);
      this.#jobsDone++;
      await finish("succeeded", "", JSON.stringify(info));
      this.#o.log?.(`worker ${this.id}: job ${id} succeeded in ${Date.now() - started} ms`);
    } catch (e) {
      if (controller.signal.aborted) {
        await finish("canceled", "", "");
      } else {
        const name = e instanceof Error ? e.name : "";
        if (name === "DeviceLostError" || name === "GpuError") this.#drop();
        const msg = (e instanceof Error ? e.message || e.name : String(e))
          .split(this.#o.modelsDir).join("<models>");
        this.#jobsDone++;
        await finish("failed", msg, "");
        this.#o.log?.(`worker ${this.id}: job ${id} failed: ${msg}`);
      }
    } finally {
      clearInterval(watch);
      this.#running = null;
      this.#beat().catch(() => {});
    }
  }

  async #pipeline(
    request: ReturnType<typeof requestOf>,
    onProgress: (e: ProgressEvent) => void,
  ): Promise<ServedPipeline> {
    const key = modelSetKey(request);
    if (this.#loaded?.key === key) return this.#loaded.pipeline;
    const listing = await scanModelsDir(this.#o.modelsDir);
    const options = await pipelineOptionsFor(request, listing, this.#o);
    // One model set at a time: GPU memory is the limit.
    this.#drop();
    const pipeline = await this.#load({ ...options, onProgress });
    this.#loaded = {
      key,
      pipeline,
      info: {
        model: request.model,
        motionModule: request.motionModule,
        loras: request.loras.map((l) => ({ ...l })),
        info: pipeline.info,
      },
    };
    this.#beat().catch(() => {});
    return pipeline;
  }

  #drop(): void {
    const l = this.#loaded;
    this.#loaded = null;
    try {
      l?.pipeline.dispose();
    } catch {
      // dropped anyway
    }
  }
}
