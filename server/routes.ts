/**
 * The /v1 routes of the HTTP API (DESIGN.md "HTTP"): submit, inspect, stream, fetch and cancel
 * animation jobs, and list the models directory. Mounted by {@link createApp} under `/v1`.
 * @module
 */

import { Hono } from "npm:hono@^4.13.19";
import type { Context } from "npm:hono@^4.13.19";
import type { GenerateRequest, PipelineOptions, Precision } from "../engine/pipeline_types.ts";
import type { MemoryPlan } from "../engine/memory_plan.ts";
import { type ModelsListing, publicListing } from "./models_dir.ts";
import { inspectWeights } from "../engine/inspect.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import {
  FRAMES_KEPT,
  generateRequestOf,
  type JobEvent,
  type JobStatus,
  type JobView,
  QueueFullError,
} from "./queue.ts";
import type { JobStore } from "./jobs.ts";
import { pipelineOptionsFor } from "./resolve.ts";
import {
  type AnimationRequest,
  defaultModelName,
  defaultMotionModule,
  parseJsonBody,
  REQUEST_DEFAULTS,
  RequestError,
  type RequestLimits,
  SCHEDULER_NAMES,
  validateAnimationRequest,
} from "./validate.ts";
import { ANIMATION_FORMATS, type AnimationFormat } from "../engine/output/mod.ts";
import { isDemoModelName } from "../weights/demo_model.ts";
import { DEMO_DEFAULTS } from "../engine/request.ts";

/** What the /v1 routes need from the app. */
export interface RoutesContext {
  /** This node's models directory; absent on scale-out API nodes that list the workers' models. */
  modelsDir?: string;
  /** The models clients may name (this node's directory, or the workers' catalog). */
  listModels: () => Promise<ModelsListing>;
  /** The jobs: this process's queue, or Redis (scale-out mode). */
  jobs: JobStore;
  maxBodyBytes: number;
  limits: RequestLimits;
  defaultModel?: string;
  defaultMotionModule?: string;
  precision?: Precision;
  tokenizer?: string;
  /** Interval of SSE keep-alive comments in ms (default 15 s). */
  keepAliveMs?: number;
  /** GPU memory a job may use (bytes), passed to every pipeline and plan. */
  maxMemory?: number;
  /** The memory plan of a request (`dryRun`), without loading weights onto the GPU. */
  plan: (options: PipelineOptions, request: GenerateRequest) => Promise<MemoryPlan>;
  /** The adapter's memory limits for GET /v1/models (null: no adapter). */
  memoryLimits: () => Promise<MemoryLimits | null>;
}

/** What GET /v1/models reports of the GPU under `limits.memory`. */
export interface MemoryLimits {
  /** The adapter's name. */
  adapter: string;
  /** Largest storage binding; larger tensors are processed in windows. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer: no tensor can be larger. */
  maxBufferSize: number;
  /** GPU memory a job may use (null: unknown to WebGPU and not set). */
  budgetBytes: number | null;
}

/** JSON error body of every 4xx/5xx answer. */
export interface ErrorBody {
  error: string;
  /** The request field at fault (400 answers). */
  field?: string;
}

const FINAL: readonly JobStatus[] = ["succeeded", "failed", "canceled"];

/** The 404 of a job id this server does not hold (never held, or its result expired). */
function unknownJob(c: Context, id: string): Response {
  return errorResponse(c, 404, `no animation job "${id.slice(0, 80)}" (unknown or expired)`);
}

/** A JSON error answer. */
export function errorResponse(
  c: Context,
  status: 400 | 401 | 404 | 409 | 413 | 415 | 429 | 500 | 503,
  error: string,
  field?: string,
): Response {
  const body: ErrorBody = field === undefined ? { error } : { error, field };
  return c.json(body, status);
}

/**
 * Reads a request body's bytes, giving up (null) as soon as it exceeds `max` bytes: a
 * Content-Length above the limit is refused before reading, a streamed body while reading.
 * Decoding them is validation's job ({@link parseJsonBody}).
 */
export async function readLimited(req: Request, max: number): Promise<Uint8Array | null> {
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > max) {
    await req.body?.cancel().catch(() => {});
    return null;
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** The path the app is mounted under ("" at the root), from a /v1 request's path. */
function mountPrefix(c: Context): string {
  const at = c.req.path.indexOf("/v1/");
  return at > 0 ? c.req.path.slice(0, at) : "";
}

/**
 * The job as this request's client sees it: when the app is mounted under a prefix
 * (`outer.route("/zoetrope", app)`), the result and preview URLs carry that prefix.
 */
function forClient(c: Context, job: JobView): JobView {
  const prefix = mountPrefix(c);
  if (!prefix || (!job.result && !job.preview)) return job;
  return {
    ...job,
    result: job.result && { ...job.result, url: prefix + job.result.url },
    preview: job.preview && { ...job.preview, url: prefix + job.preview.url },
  };
}

function sseChunk(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Builds the /v1 sub-app.
 *
 * @example
 * ```ts
 * app.route("/v1", v1Routes({ modelsDir, listModels, jobs, maxBodyBytes: 65536, limits, plan, memoryLimits }));
 * ```
 */
export function v1Routes(ctx: RoutesContext): Hono {
  const v1 = new Hono();
  const encoder = new TextEncoder();

  v1.get("/models", async (c) => {
    const listing = await ctx.listModels();
    const defaultModel = defaultModelName(listing, ctx.defaultModel);
    return c.json({
      ...publicListing(listing),
      defaults: {
        model: defaultModel,
        motionModule: defaultModel &&
          defaultMotionModule(listing, defaultModel, ctx.defaultMotionModule),
        ...REQUEST_DEFAULTS,
        ...(defaultModel && isDemoModelName(defaultModel) ? DEMO_DEFAULTS : {}),
      },
      schedulers: SCHEDULER_NAMES,
      formats: ANIMATION_FORMATS,
      limits: { ...ctx.limits, memory: await ctx.memoryLimits() },
    });
  });

  v1.post("/animations", async (c) => {
    const type = c.req.header("content-type") ?? "";
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      return errorResponse(
        c,
        415,
        `body: expected Content-Type application/json, got ${type ? `"${type}"` : "none"}`,
        "body",
      );
    }
    const bytes = await readLimited(c.req.raw, ctx.maxBodyBytes);
    if (bytes === null) {
      return errorResponse(
        c,
        413,
        `body: larger than the limit of ${ctx.maxBodyBytes} bytes`,
        "body",
      );
    }
    let body: unknown;
    try {
      body = parseJsonBody(bytes, type);
    } catch (e) {
      if (e instanceof RequestError) {
        return errorResponse(c, e.status === 415 ? 415 : 400, e.message, e.field);
      }
      throw e;
    }
    const listing = await ctx.listModels();
    if (ctx.modelsDir === undefined && listing.checkpoints.length === 0) {
      c.header("Retry-After", "10");
      return errorResponse(
        c,
        503,
        "no GPU worker has registered its models yet (start one: deno task worker --redis URL --models DIR)",
      );
    }
    let req: AnimationRequest;
    try {
      req = validateAnimationRequest(body, {
        listing,
        limits: ctx.limits,
        defaultModel: ctx.defaultModel,
        defaultMotionModule: ctx.defaultMotionModule,
      });
    } catch (e) {
      if (e instanceof RequestError) return errorResponse(c, 400, e.message, e.field);
      throw e;
    }
    const options = await pipelineOptionsFor(req, listing, ctx);
    // Without a models directory here the paths are the workers': their engine checks frames.
    const maxFrames = ctx.modelsDir === undefined
      ? null
      : await motionFrameLimit(options.motionModule, options.motionModuleConfig);
    if (maxFrames !== null && req.contextLength !== undefined && req.contextLength > maxFrames) {
      return errorResponse(
        c,
        400,
        `contextLength: ${req.contextLength} is more than motion module "${req.motionModule}" ` +
          `allows (${maxFrames})`,
        "contextLength",
      );
    }
    if (maxFrames !== null && req.contextLength === undefined && req.frames > maxFrames) {
      return errorResponse(
        c,
        400,
        `frames: ${req.frames} is more than motion module "${req.motionModule}" allows ` +
          `(${maxFrames}); set contextLength (at most ${maxFrames}) for longer animations`,
        "frames",
      );
    }
    if (req.dryRun) {
      // The memory plan instead of a job: what the request needs and whether it fits.
      if (ctx.modelsDir === undefined) {
        return errorResponse(
          c,
          400,
          "dryRun: this API node has no models directory to plan from (start it with --models)",
          "dryRun",
        );
      }
      try {
        const plan = await ctx.plan(options, generateRequestOf(req));
        return c.json({ dryRun: true, plan });
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        return errorResponse(c, 400, e.message.split(ctx.modelsDir).join("<models>"));
      }
    }
    try {
      const job = await ctx.jobs.submit(req, options);
      c.header("Location", `${mountPrefix(c)}/v1/animations/${job.id}`);
      return c.json({ id: job.id, status: job.status }, 202);
    } catch (e) {
      if (e instanceof QueueFullError) {
        c.header("Retry-After", String(e.retryAfterSeconds));
        return errorResponse(c, 429, e.message);
      }
      throw e;
    }
  });

  v1.get("/animations", async (c) => {
    const status = c.req.query("status");
    const statuses = ["queued", "running", "succeeded", "failed", "canceled"];
    if (status !== undefined && !statuses.includes(status)) {
      return errorResponse(c, 400, `status must be one of ${statuses.join(", ")}`, "status");
    }
    const limitText = c.req.query("limit");
    const limit = limitText === undefined ? 50 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return errorResponse(c, 400, "limit must be an integer from 1 to 1000", "limit");
    }
    const jobs = await ctx.jobs.list({ status: status as JobView["status"] | undefined, limit });
    return c.json({ jobs: jobs.map((j) => forClient(c, j)) });
  });

  v1.get("/animations/:id", async (c) => {
    const id = c.req.param("id");
    const job = await ctx.jobs.get(id);
    if (!job) {
      return unknownJob(c, id);
    }
    return c.json(forClient(c, job));
  });

  v1.get("/animations/:id/events", async (c) => {
    const id = c.req.param("id");
    const first = await ctx.jobs.get(id);
    if (!first) {
      return unknownJob(c, id);
    }
    let cleanup = () => {};
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        let open = true;
        const send = (event: string, data: unknown) => {
          if (open) controller.enqueue(encoder.encode(sseChunk(event, data)));
        };
        const finish = () => {
          if (!open) return;
          cleanup();
          open = false;
          controller.close();
        };
        // Subscribe first, then read the snapshot: nothing that happens in between is missed
        // (events older than the snapshot are dropped; it already shows them).
        let ready = false;
        const unsubscribe = await ctx.jobs.subscribe(id, (e: JobEvent) => {
          if (!ready) return;
          send(e.type, forClient(c, e.job));
          if (e.type === "status" && FINAL.includes(e.job.status)) finish();
        });
        const timer = setInterval(() => {
          try {
            controller.enqueue(encoder.encode(": keep-alive\n\n"));
          } catch {
            cleanup();
          }
        }, ctx.keepAliveMs ?? 15_000);
        cleanup = () => {
          clearInterval(timer);
          unsubscribe?.();
          cleanup = () => {};
        };
        const now = (await ctx.jobs.get(id)) ?? first;
        ready = true;
        send("status", forClient(c, now));
        if (!unsubscribe || FINAL.includes(now.status)) finish();
      },
      cancel() {
        cleanup();
      },
    });
    return new Response(stream, {
      headers: {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
      },
    });
  });

  v1.get("/animations/:id/result", async (c) => {
    const id = c.req.param("id");
    const job = await ctx.jobs.get(id);
    if (!job) {
      return unknownJob(c, id);
    }
    const format = c.req.query("format");
    if (format !== undefined && !ANIMATION_FORMATS.includes(format as AnimationFormat)) {
      return errorResponse(
        c,
        400,
        `format must be one of ${ANIMATION_FORMATS.join(", ")}, got "${format.slice(0, 20)}"`,
        "format",
      );
    }
    if (job.status !== "succeeded") {
      const why = job.status === "failed" ? `: ${job.error}` : "";
      return errorResponse(c, 409, `animation job ${id} has no result: it is ${job.status}${why}`);
    }
    const result = format === undefined
      ? await ctx.jobs.result(id)
      : await ctx.jobs.resultAs(id, format as AnimationFormat);
    if (result === null) {
      return errorResponse(
        c,
        409,
        `animation job ${id} can no longer be re-encoded as ${format}: frames are kept for the ` +
          `newest ${FRAMES_KEPT} results only (its own format, ${job.request.format}, still is)`,
      );
    }
    if (!result) {
      return unknownJob(c, id);
    }
    const disposition = c.req.query("download") !== undefined ? "attachment" : "inline";
    return c.body(result.bytes as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": result.contentType,
      "Content-Length": String(result.bytes.length),
      "Content-Disposition": `${disposition}; filename="zoetrope-${
        id.slice(0, 8)
      }${result.extension}"`,
      "Cache-Control": "private, max-age=60",
    });
  });

  v1.get("/animations/:id/preview", async (c) => {
    const id = c.req.param("id");
    const job = await ctx.jobs.get(id);
    if (!job) {
      return unknownJob(c, id);
    }
    const preview = await ctx.jobs.preview(id);
    if (!preview) {
      return errorResponse(c, 404, `animation job ${id} has no preview: it is ${job.status}`);
    }
    return c.body(preview.bytes as Uint8Array<ArrayBuffer>, 200, {
      "Content-Type": "image/gif",
      "Content-Length": String(preview.bytes.length),
      "Cache-Control": "no-store",
      "X-Preview-Step": String(preview.step),
    });
  });

  v1.delete("/animations/:id", async (c) => {
    const id = c.req.param("id");
    const outcome = await ctx.jobs.cancel(id);
    if (!outcome) {
      return unknownJob(c, id);
    }
    const job = await ctx.jobs.get(id);
    if (outcome === "finished") {
      return errorResponse(c, 409, `animation job ${id} is already ${job?.status ?? "finished"}`);
    }
    // canceled: done now; canceling: the worker stops it at the next step.
    const status = outcome === "canceled" ? 200 : 202;
    return c.json(job ? forClient(c, job) : { id, status: "canceled" }, status);
  });

  return v1;
}

const frameLimits = new Map<string, Promise<number | null>>();

/**
 * The motion module's position-encoding length (most frames it can animate), read once per
 * file version from its weights header; null when it cannot be told (the job then reports the
 * engine's error).
 */
function motionFrameLimit(path?: string, config?: string): Promise<number | null> {
  if (!path) return Promise.resolve(null);
  return (async () => {
    let stamp = "";
    try {
      const st = await Deno.stat(path);
      stamp = `${st.mtime?.getTime()}:${st.size}`;
    } catch {
      return null;
    }
    const key = `${path}\0${config ?? ""}\0${stamp}`;
    let p = frameLimits.get(key);
    if (!p) {
      p = inspectWeights(path, { config }).then(
        (s) => (s.config as { maxSeqLength?: number } | null)?.maxSeqLength ?? null,
        () => null,
      );
      frameLimits.set(key, p);
    }
    return await p;
  })();
}
