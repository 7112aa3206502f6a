/**
 * The Zoetrope HTTP service as a Hono app: {@link createApp} wires the /v1 API (routes.ts),
 * the job queue (queue.ts), bearer-token auth, CORS, the request size limit, /healthz and the
 * web page at /. `server/main.ts` serves it with Deno.serve; tests call `app.request()`.
 * @module
 */

import { Hono } from "npm:hono@^4.13.19";
import type { MiddlewareHandler } from "npm:hono@^4.13.19";
import { loadPipeline, planGeneration } from "../engine/pipeline.ts";
import type { GenerateRequest, PipelineOptions, Precision } from "../engine/pipeline_types.ts";
import type { Gpu } from "../kernels/gpu/device.ts";
import { defaultMemoryBudget, type MemoryPlan } from "../engine/memory_plan.ts";
import { JobQueue, type PipelineLoader } from "./queue.ts";
import { type JobStore, memoryJobs } from "./jobs.ts";
import { errorResponse, type MemoryLimits, v1Routes } from "./routes.ts";
import { DEFAULT_LIMITS, type RequestLimits } from "./validate.ts";
import { renderPage } from "./page.ts";
import { scanModelsDir } from "./models_dir.ts";

/**
 * Options of {@link createApp}.
 *
 * @example
 * ```ts
 * import { type AppOptions, createApp } from "@zoetrope/animatediff";
 *
 * const options: AppOptions = {
 *   modelsDir: "./models",
 *   queueSize: 4,
 *   cors: ["https://example.com"],
 *   limits: { maxFrames: 24, maxSide: 768 },
 *   defaultModel: "toonyou_beta6",
 * };
 * Deno.serve({ port: 8787 }, createApp(options).fetch);
 * ```
 */
export interface AppOptions {
  /**
   * The models directory (checkpoints/, motion_modules/, loras/). Only scale-out API nodes may
   * leave it out (their `jobs` store then lists the models the workers offer).
   */
  modelsDir?: string;
  /** Loads pipelines (default: the engine's `loadPipeline`). Tests inject fakes. */
  loadPipeline?: PipelineLoader;
  /** Jobs that may wait behind the running one before POST answers 429 (default 8). */
  queueSize?: number;
  /** How long finished results are kept, in ms (default 1 hour). */
  resultTtlMs?: number;
  /** How many finished results are kept (default 50). */
  maxResults?: number;
  /** Loaded pipelines kept in memory (default 1). */
  maxPipelines?: number;
  /** When set, every /v1 route needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Origins allowed by CORS on /v1 and /healthz: a list, `"*"`, or none (default: no CORS). */
  cors?: string | string[];
  /** Largest request body in bytes (default 64 KiB). */
  maxBodyBytes?: number;
  /** Request ranges (defaults: {@link DEFAULT_LIMITS}). */
  limits?: Partial<RequestLimits>;
  /** Model used when a request names none (default: the built-in `demo`). */
  defaultModel?: string;
  /**
   * Motion module used when a request names none (default: the first by name; the demo models
   * always get the demo's).
   */
  defaultMotionModule?: string;
  /** Storage precision passed to the engine (default: the engine's). */
  precision?: Precision;
  /** Tokenizer folder for checkpoints that carry none (single files). */
  tokenizer?: string;
  /**
   * A GPU context every pipeline load uses (compiled shaders are then reused across model
   * switches; the app never destroys it). Default: each pipeline creates and owns its own.
   */
  device?: Gpu;
  /** Names the GPU adapter for /healthz before any model is loaded (default: WebGPU probe). */
  adapterName?: () => Promise<string | null>;
  /**
   * GPU memory a job may use, in bytes (weights included): jobs whose memory plan needs more
   * fail before running, saying what would fit. Default: unknown for GPUs, host memory for
   * software adapters.
   */
  maxMemory?: number;
  /**
   * Plans a request for `dryRun` (default: the engine's `planGeneration` on `device` or this
   * machine's adapter). Tests inject fakes.
   */
  planGeneration?: (options: PipelineOptions, request: GenerateRequest) => Promise<MemoryPlan>;
  /** SSE keep-alive interval in ms (default 15 s). */
  keepAliveMs?: number;
  /**
   * Where jobs live (default: a queue in this process with one GPU worker). Scale-out API nodes
   * pass the Redis store (server/redis/store.ts); this process then runs no job itself.
   */
  jobs?: JobStore;
}

/**
 * The Hono app plus its job queue and a close() for shutdown. Mount it in another Hono app with
 * `outer.route("/zoetrope", app)` or serve `app.fetch` directly.
 *
 * (`@internal` below only silences `deno doc --lint`'s false private-type-ref on the npm `Hono`
 * type, denoland/deno#27364; the type is public.)
 *
 * @example
 * ```ts
 * const app: ZoetropeApp = createApp({ modelsDir: "./models" });
 * const res = await app.request("/healthz");
 * await app.close();
 * ```
 * @internal
 */
export type ZoetropeApp = Hono & {
  /** The jobs: this process's queue (one worker), or the Redis store of an API node. */
  readonly jobs: JobStore;
  /** Cancels all jobs and releases loaded pipelines. */
  close(): Promise<void>;
};

/** Defaults of {@link AppOptions}. */
export const APP_DEFAULTS = {
  queueSize: 8,
  resultTtlMs: 60 * 60 * 1000,
  maxResults: 50,
  maxBodyBytes: 64 * 1024,
} as const;

async function probeMemoryLimits(maxMemory?: number): Promise<MemoryLimits | null> {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    const i = adapter.info;
    const fallback = Boolean(
      (i as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter,
    );
    return {
      adapter: i.description || `${i.vendor} ${i.architecture}`.trim() || "unknown adapter",
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      budgetBytes: maxMemory ?? (fallback ? defaultMemoryBudget({ isFallback: true }) : null),
    };
  } catch {
    return null;
  }
}

async function probeAdapter(): Promise<string | null> {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    const i = adapter.info;
    return i.description || `${i.vendor} ${i.architecture}`.trim() || "unknown adapter";
  } catch {
    return null;
  }
}

/** Constant-time comparison of two strings' UTF-8 bytes. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ (y[i % Math.max(1, y.length)] ?? 0);
  return diff === 0;
}

/**
 * CORS for the API: answers preflights (204) and adds Access-Control-* headers for allowed
 * origins (`"*"` allows any and sends `*`, as no cookies are used).
 */
function corsMiddleware(allowed: string | string[]): MiddlewareHandler {
  const list = typeof allowed === "string" ? [allowed] : allowed;
  const any = list.includes("*");
  return async (c, next) => {
    const origin = c.req.header("origin");
    const ok = origin !== undefined && (any || list.includes(origin));
    const set = (h: Headers) => {
      if (!ok) return;
      h.set("Access-Control-Allow-Origin", any ? "*" : origin!);
      if (!any) h.append("Vary", "Origin");
    };
    if (c.req.method === "OPTIONS" && c.req.header("access-control-request-method")) {
      const headers = new Headers();
      set(headers);
      if (ok) {
        headers.set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        headers.set("Access-Control-Allow-Headers", "Authorization, Content-Type");
        headers.set("Access-Control-Max-Age", "600");
      }
      return new Response(null, { status: 204, headers });
    }
    await next();
    set(c.res.headers);
    if (ok) {
      c.res.headers.set(
        "Access-Control-Expose-Headers",
        "Retry-After, Content-Disposition, Location",
      );
    }
  };
}

function bearerAuth(token: string): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === "OPTIONS") return next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m || !sameSecret(m[1], token)) {
      c.header(
        "WWW-Authenticate",
        m ? 'Bearer realm="zoetrope", error="invalid_token"' : 'Bearer realm="zoetrope"',
      );
      return errorResponse(
        c,
        401,
        m ? "authorization: invalid bearer token" : "authorization: expected a Bearer token",
      );
    }
    await next();
  };
}

/**
 * Builds the service. The models directory must exist (checked on first use of each route).
 *
 * @example
 * ```ts
 * const app = createApp({ modelsDir: "./models", queueSize: 4, token: Deno.env.get("ZOETROPE_TOKEN") });
 * Deno.serve({ port: 8787 }, app.fetch);
 * ```
 */
export function createApp(options: AppOptions): ZoetropeApp {
  const queueSize = options.queueSize ?? APP_DEFAULTS.queueSize;
  const maxBodyBytes = options.maxBodyBytes ?? APP_DEFAULTS.maxBodyBytes;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new RangeError(
      `createApp: expected maxBodyBytes to be a positive integer, got ${maxBodyBytes}`,
    );
  }
  if (options.token !== undefined && options.token.trim() === "") {
    throw new RangeError("createApp: token is empty (leave it unset to turn auth off)");
  }
  const limits: RequestLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const modelsDir = options.modelsDir;
  if (modelsDir === undefined && !options.jobs?.catalog) {
    throw new RangeError("createApp: modelsDir is required (unless jobs come from workers)");
  }
  // Clients never see where the models directory is.
  const hide = (msg: string) => modelsDir ? msg.split(modelsDir).join("<models>") : msg;
  const listModels = modelsDir !== undefined
    ? () => scanModelsDir(modelsDir)
    : () => options.jobs!.catalog!();
  const loader = options.loadPipeline ?? loadPipeline;
  const device = options.device;
  const queue: JobStore = options.jobs ?? memoryJobs(
    new JobQueue({
      loadPipeline: device ? (o) => loader({ ...o, device }) : loader,
      queueSize,
      resultTtlMs: options.resultTtlMs ?? APP_DEFAULTS.resultTtlMs,
      maxResults: options.maxResults ?? APP_DEFAULTS.maxResults,
      maxPipelines: options.maxPipelines,
      // Clients see errors with the models directory's location hidden.
      describeError: (e) => hide(e instanceof Error ? e.message || e.name : String(e)),
    }),
  );
  const adapterName = options.adapterName ??
    (device ? () => Promise.resolve(device.info.name) : probeAdapter);
  const plan = options.planGeneration ??
    ((o: PipelineOptions, r: GenerateRequest) => planGeneration({ ...o, device }, r));
  let memory: Promise<MemoryLimits | null> | null = null;
  const memoryLimits = () =>
    memory ??= device
      ? Promise.resolve({
        adapter: device.info.name,
        maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
        maxBufferSize: device.limits.maxBufferSize,
        budgetBytes: options.maxMemory ?? defaultMemoryBudget(device.info),
      })
      : probeMemoryLimits(options.maxMemory);
  let adapter: Promise<string | null> | null = null;
  const started = Date.now();

  const app = new Hono();
  if (options.cors !== undefined) {
    const mw = corsMiddleware(options.cors);
    app.use("/v1/*", mw);
    app.use("/healthz", mw);
  }
  if (options.token !== undefined) app.use("/v1/*", bearerAuth(options.token));

  app.get("/", (c) => {
    c.header("Cache-Control", "no-cache");
    c.header(
      "Content-Security-Policy",
      "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; " +
        "style-src 'unsafe-inline'; " +
        "script-src 'unsafe-inline'; connect-src 'self' blob:",
    );
    return c.html(renderPage());
  });

  app.get("/healthz", async (c) => {
    const jobs = await queue.health();
    const loaded = jobs.loadedModels;
    adapter ??= adapterName();
    let models: { checkpoints: number; motionModules: number; loras: number } | null = null;
    let modelsError: string | undefined;
    try {
      const l = await listModels();
      models = {
        checkpoints: l.checkpoints.length,
        motionModules: l.motionModules.length,
        loras: l.loras.length,
      };
    } catch (e) {
      modelsError = hide((e as Error).message);
    }
    const workerAdapter = jobs.workers?.find((w) => w.alive && w.adapter)?.adapter;
    return c.json({
      status: modelsError ? "degraded" : "ok",
      // Scale-out API nodes run no GPU work: the adapter is a live worker's.
      adapter: loaded[0]?.info.adapter ??
        (jobs.workers ? workerAdapter ?? null : await adapter),
      backend: jobs.backend,
      queue: { ...jobs.queue, capacity: queueSize },
      loadedModels: loaded,
      ...(jobs.workers ? { workers: jobs.workers } : {}),
      models,
      ...(modelsError ? { modelsError } : {}),
      uptimeS: Math.round((Date.now() - started) / 1000),
    }, modelsError ? 503 : 200);
  });

  app.route(
    "/v1",
    v1Routes({
      modelsDir,
      listModels,
      jobs: queue,
      maxBodyBytes,
      limits,
      defaultModel: options.defaultModel,
      defaultMotionModule: options.defaultMotionModule,
      precision: options.precision,
      tokenizer: options.tokenizer,
      keepAliveMs: options.keepAliveMs,
      maxMemory: options.maxMemory,
      plan,
      memoryLimits,
    }),
  );

  app.notFound((c) => errorResponse(c, 404, `no route ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    const msg = hide(err.message || err.name);
    // Scale-out mode with Redis away: the service is unavailable, not broken.
    if (/MaxRetriesPerRequest|Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(msg)) {
      c.header("Retry-After", "5");
      return errorResponse(c, 503, `job store unavailable: ${msg}`);
    }
    return errorResponse(c, 500, `internal error: ${msg}`);
  });

  return Object.assign(app, {
    jobs: queue,
    close: () => queue.close(),
  });
}
