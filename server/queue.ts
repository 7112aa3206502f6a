/**
 * The job queue of the HTTP service: a bounded FIFO served by ONE worker (one GPU), a cache of
 * loaded pipelines reused by jobs with the same models, cancellation between denoising steps,
 * progress fan-out to listeners (server-sent events), and retention of finished results by age
 * and count. A failing job fails alone: the worker catches everything and goes on.
 * @module
 */

import type {
  GenerateOptions,
  GenerateRequest,
  PipelineInfo,
  PipelineOptions,
  ProgressEvent,
  Stage,
} from "../engine/pipeline_types.ts";
import {
  type AnimationFormat,
  encodeAnimation,
  type EncodedAnimation,
  encodeGif,
  type Frame,
} from "../engine/output/mod.ts";

/** Results whose frames are kept for re-encoding in other formats (the newest ones). */
export const FRAMES_KEPT = 8;
import { type AnimationRequest, fromBase64 } from "./validate.ts";
import { decodeMedia } from "../engine/input/media.ts";

/**
 * What the queue needs of a generated animation (the engine's `Animation` has more).
 *
 * @example
 * ```ts
 * import { createApp, type ServedAnimation, type ServedPipeline } from "@zoetrope/animatediff";
 *
 * // A fake pipeline for testing a client against the real HTTP API without a GPU.
 * const fake: ServedPipeline = {
 *   info: {
 *     model: "fake",
 *     motionModule: "fake",
 *     motionVersion: "v2",
 *     maxFrames: 32,
 *     precision: "f32",
 *     adapter: "none",
 *     demo: true,
 *   },
 *   generate: (req): Promise<ServedAnimation> => {
 *     const frame = { data: new Uint8ClampedArray(8 * 8 * 4), width: 8, height: 8 };
 *     return Promise.resolve({ frames: [frame], width: 8, height: 8, fps: 8, seed: 0 });
 *   },
 *   dispose() {},
 * };
 * const app = createApp({ modelsDir: "./models", loadPipeline: () => Promise.resolve(fake) });
 * ```
 */
export interface ServedAnimation {
  /** RGBA frames. */
  frames: readonly Frame[];
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** Playback rate. */
  fps: number;
  /** The seed used. */
  seed: number | bigint;
  /** Milliseconds per stage. */
  timings?: Record<string, number>;
}

/**
 * What the queue needs of a loaded pipeline (the engine's `AnimationPipeline` fits).
 *
 * @example
 * ```ts
 * import { type ServedPipeline, loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe: ServedPipeline = await loadPipeline(); // an AnimationPipeline fits
 * ```
 */
export interface ServedPipeline {
  /** What was loaded (reported by /healthz). */
  readonly info: PipelineInfo;
  /** Generates one animation; honours `options.signal`. */
  generate(request: GenerateRequest, options?: GenerateOptions): Promise<ServedAnimation>;
  /** Releases GPU memory when the queue drops the pipeline. */
  dispose(): void;
}

/**
 * Loads a pipeline: the engine's `loadPipeline`, or a fake in tests.
 *
 * @example
 * ```ts
 * import { createApp, loadPipeline, type PipelineLoader } from "@zoetrope/animatediff";
 *
 * // Log every model load, then load as usual.
 * const loader: PipelineLoader = (options) => {
 *   console.log("loading", options.model);
 *   return loadPipeline(options);
 * };
 * const app = createApp({ modelsDir: "./models", loadPipeline: loader });
 * ```
 */
export type PipelineLoader = (options: PipelineOptions) => Promise<ServedPipeline>;

/** Job states. `queued` and `running` are live; the others are final. */
export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "canceled";

/** Progress as clients see it. */
export interface JobProgress {
  /** The stage running (load, encode, denoise, decode, output). */
  stage: Stage;
  /** Steps of the stage done. */
  step: number;
  /** Steps of the stage in all. */
  total: number;
  /** Milliseconds since the stage started. */
  elapsedMs: number;
  /** Estimated milliseconds left in this stage (null when unknown). */
  etaMs: number | null;
  /** What the stage does now, when the engine says. */
  message?: string;
}

/** A finished job's output, as clients see it. */
export interface JobResultInfo {
  /** Where GET returns the bytes. */
  url: string;
  /** MIME type of the bytes. */
  contentType: string;
  /** File extension, with its dot. */
  extension: string;
  /** Size in bytes. */
  bytes: number;
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** Frame count. */
  frames: number;
  /** Playback rate. */
  fps: number;
  /** The seed used. */
  seed: number;
  /** Milliseconds per stage. */
  timings: Record<string, number>;
  /** When the result will be dropped (ISO 8601). */
  expiresAt: string;
}

/** GET /v1/animations/:id's body. */
export interface JobView {
  /** The job's id (a UUID). */
  id: string;
  /** Where the job stands. */
  status: JobStatus;
  /** 0 = next to run; only while queued. */
  queuePosition: number | null;
  /** When it was accepted (ISO 8601). */
  createdAt: string;
  /** When it started running (ISO 8601), or null. */
  startedAt: string | null;
  /** When it ended (ISO 8601), or null. */
  finishedAt: string | null;
  /** The latest progress report, or null. */
  progress: JobProgress | null;
  /** Why it failed (one line), or null. */
  error: string | null;
  /** DELETE was received while the job ran; it stops at the next step. */
  cancelRequested: boolean;
  /** The validated request (input files shown by their size). */
  request: AnimationRequest;
  /** The result, once succeeded. */
  result: JobResultInfo | null;
  /**
   * While denoising: the latest live preview (the latents projected to RGB after `step` of
   * `total` steps), an animated GIF at `url`; null before the first step and once finished.
   */
  preview: { step: number; total: number; url: string } | null;
}

/** What listeners of a job receive: a status change or a progress report. */
export interface JobEvent {
  /** A status change or a progress report. */
  type: "status" | "progress";
  /** The job as it is now. */
  job: JobView;
}

interface Job {
  id: string;
  request: AnimationRequest;
  pipelineOptions: PipelineOptions;
  status: JobStatus;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  progress: JobProgress | null;
  error: string | null;
  controller: AbortController;
  result: {
    bytes: Uint8Array;
    info: Omit<JobResultInfo, "expiresAt">;
    /** The RGBA frames, kept for the newest results to re-encode in other formats. */
    frames: readonly Frame[] | null;
    /** Other formats already encoded from them. */
    others: Map<AnimationFormat, Promise<EncodedAnimation>>;
  } | null;
  preview: { step: number; total: number; bytes: Uint8Array } | null;
  listeners: Set<(e: JobEvent) => void>;
}

interface CachedPipeline {
  key: string;
  pipeline: ServedPipeline;
  /** The names the pipeline was loaded from (clients never see paths). */
  names: Pick<AnimationRequest, "model" | "motionModule" | "loras">;
  lastUsed: number;
}

/** A loaded pipeline as /healthz reports it. */
export interface LoadedPipelineInfo {
  /** The model's name (as clients name it). */
  model: string;
  /** The motion module's name. */
  motionModule: string;
  /** The LoRAs merged in, with their scales. */
  loras: { name: string; scale: number }[];
  /** What the engine loaded. */
  info: PipelineInfo;
}

/** Options of {@link JobQueue}. */
export interface JobQueueOptions {
  loadPipeline: PipelineLoader;
  /** Jobs that may wait (the running one not counted). */
  queueSize: number;
  /** How long finished jobs (and their bytes) are kept. */
  resultTtlMs: number;
  /** How many finished jobs are kept at most (oldest dropped first). */
  maxResults: number;
  /** Loaded pipelines kept at once (default 1: GPU memory is the limit). */
  maxPipelines?: number;
  /** Turns a job's error into the message clients see (default: `error.message`). */
  describeError?: (error: unknown) => string;
  /** Clock (tests). */
  now?: () => number;
}

/** Thrown by {@link JobQueue.submit} when the queue is full. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
  /** Suggested wait before retrying, in seconds. */
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Outcome of {@link JobQueue.cancel}. */
export type CancelOutcome = "canceled" | "canceling" | "finished";

const FINAL: readonly JobStatus[] = ["succeeded", "failed", "canceled"];
const DEFAULT_RETRY_AFTER_S = 10;

function iso(t: number | null): string | null {
  return t === null ? null : new Date(t).toISOString();
}

function defaultDescribe(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

/**
 * A bounded FIFO of animation jobs run one at a time, with pipeline caching, cancellation,
 * progress listeners and result retention.
 *
 * @example
 * ```ts
 * const queue = new JobQueue({ loadPipeline, queueSize: 8, resultTtlMs: 3_600_000, maxResults: 50 });
 * const view = queue.submit(request, { model: "/models/checkpoints/tiny" });
 * queue.subscribe(view.id, (e) => console.log(e.type, e.job.progress));
 * ```
 */
export class JobQueue {
  readonly #opts: Required<Omit<JobQueueOptions, "describeError" | "now">>;
  readonly #describe: (e: unknown) => string;
  readonly #now: () => number;
  readonly #jobs = new Map<string, Job>();
  readonly #waiting: Job[] = [];
  readonly #pipelines: CachedPipeline[] = [];
  readonly #durations: number[] = [];
  #running: Job | null = null;
  #worker: Promise<void> | null = null;
  #closed = false;
  #completed = 0;
  #failed = 0;

  constructor(options: JobQueueOptions) {
    for (const k of ["queueSize", "resultTtlMs", "maxResults"] as const) {
      const v = options[k];
      if (!Number.isFinite(v) || v < 0) {
        throw new RangeError(`JobQueue: expected ${k} to be a number >= 0, got ${v}`);
      }
    }
    this.#opts = {
      loadPipeline: options.loadPipeline,
      queueSize: options.queueSize,
      resultTtlMs: options.resultTtlMs,
      maxResults: options.maxResults,
      maxPipelines: Math.max(1, options.maxPipelines ?? 1),
    };
    this.#describe = options.describeError ?? defaultDescribe;
    this.#now = options.now ?? Date.now;
  }

  /** Jobs waiting (not counting the running one). */
  get depth(): number {
    return this.#waiting.length;
  }

  /** The running job's id, if any. */
  get runningId(): string | null {
    return this.#running?.id ?? null;
  }

  /** Counts for /healthz. */
  stats(): { queued: number; running: number; succeeded: number; failed: number; kept: number } {
    this.prune();
    return {
      queued: this.#waiting.length,
      running: this.#running ? 1 : 0,
      succeeded: this.#completed,
      failed: this.#failed,
      kept: this.#jobs.size,
    };
  }

  /** The pipelines held in memory now. */
  loadedPipelines(): LoadedPipelineInfo[] {
    return this.#pipelines.map((p) => ({
      model: p.names.model,
      motionModule: p.names.motionModule,
      loras: p.names.loras.map((l) => ({ ...l })),
      info: p.pipeline.info,
    }));
  }

  /** Seconds a client should wait before retrying a refused submit. */
  retryAfterSeconds(): number {
    if (this.#durations.length === 0) return DEFAULT_RETRY_AFTER_S;
    const mean = this.#durations.reduce((a, b) => a + b, 0) / this.#durations.length;
    return Math.max(1, Math.ceil(mean / 1000));
  }

  /**
   * Queues a job. Throws {@link QueueFullError} when `queueSize` jobs already wait, and an
   * Error after {@link close}. `pipelineOptions` says which files to load (resolved from names
   * by the caller); jobs with equal options share a loaded pipeline.
   */
  submit(request: AnimationRequest, pipelineOptions: PipelineOptions): JobView {
    if (this.#closed) throw new Error("JobQueue.submit: the queue is closed");
    this.prune();
    if (this.#waiting.length >= this.#opts.queueSize) {
      throw new QueueFullError(
        `queue full: ${this.#waiting.length} job(s) waiting (limit ${this.#opts.queueSize})`,
        this.retryAfterSeconds(),
      );
    }
    const job: Job = {
      id: crypto.randomUUID(),
      request,
      pipelineOptions,
      status: "queued",
      createdAt: this.#now(),
      startedAt: null,
      finishedAt: null,
      progress: null,
      error: null,
      controller: new AbortController(),
      result: null,
      preview: null,
      listeners: new Set(),
    };
    this.#jobs.set(job.id, job);
    this.#waiting.push(job);
    // Start the worker on a later microtask so that submit() returns the job as queued.
    this.#worker ??= Promise.resolve().then(() => this.#work());
    return this.#view(job);
  }

  /** The job's current view, or undefined when unknown or dropped. */
  get(id: string): JobView | undefined {
    this.prune();
    const job = this.#jobs.get(id);
    return job && this.#view(job);
  }

  /**
   * The jobs this server still holds (finished ones until their results expire), newest first,
   * optionally only those with `status`, at most `limit`.
   */
  list(o: { status?: JobStatus; limit?: number } = {}): JobView[] {
    this.prune();
    return [...this.#jobs.values()]
      .filter((j) => o.status === undefined || j.status === o.status)
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, o.limit ?? Infinity)
      .map((j) => this.#view(j));
  }

  /** The latest live preview of a running job (an animated GIF), or undefined. */
  preview(id: string): { step: number; bytes: Uint8Array } | undefined {
    const p = this.#jobs.get(id)?.preview;
    return p ? { step: p.step, bytes: p.bytes } : undefined;
  }

  /**
   * A succeeded job's result in another format, encoded from its frames (kept for the newest
   * {@link FRAMES_KEPT} results); null when they are gone, undefined for unknown jobs.
   */
  async resultAs(
    id: string,
    format: AnimationFormat,
  ): Promise<{ bytes: Uint8Array; contentType: string; extension: string } | null | undefined> {
    this.prune();
    const job = this.#jobs.get(id);
    const r = job?.result;
    if (!job || !r) return undefined;
    if (format === job.request.format) return this.result(id);
    let other = r.others.get(format);
    if (!other) {
      if (!r.frames) return null;
      other = Promise.resolve(encodeAnimation(r.frames, format, { fps: r.info.fps }));
      r.others.set(format, other);
      other.catch(() => r.others.delete(format));
    }
    const e = await other;
    return { bytes: e.bytes, contentType: e.contentType, extension: e.extension };
  }

  /** The result bytes of a succeeded job. */
  result(id: string): { bytes: Uint8Array; contentType: string; extension: string } | undefined {
    this.prune();
    const r = this.#jobs.get(id)?.result;
    if (!r) return undefined;
    return { bytes: r.bytes, contentType: r.info.contentType, extension: r.info.extension };
  }

  /**
   * Cancels a job: a queued job is dropped at once ("canceled"); a running one is aborted and
   * stops at its next denoising step ("canceling"); a finished one is left alone ("finished").
   * Undefined for unknown ids.
   */
  cancel(id: string): CancelOutcome | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    if (job.status === "queued") {
      const i = this.#waiting.indexOf(job);
      if (i >= 0) this.#waiting.splice(i, 1);
      job.controller.abort();
      this.#finish(job, "canceled", null);
      return "canceled";
    }
    if (job.status === "running") {
      if (!job.controller.signal.aborted) {
        job.controller.abort();
        this.#emit(job, "status");
      }
      return "canceling";
    }
    return "finished";
  }

  /**
   * Calls `listener` on every status change and progress report of the job until it is
   * final. Returns the unsubscribe function, or undefined for unknown ids.
   */
  subscribe(id: string, listener: (e: JobEvent) => void): (() => void) | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    job.listeners.add(listener);
    return () => job.listeners.delete(listener);
  }

  /** Drops finished jobs older than `resultTtlMs` and beyond `maxResults` (oldest first). */
  prune(): void {
    const now = this.#now();
    const finished = [...this.#jobs.values()]
      .filter((j) => j.finishedAt !== null)
      .sort((a, b) => a.finishedAt! - b.finishedAt!);
    let excess = finished.length - this.#opts.maxResults;
    for (const job of finished) {
      if (excess > 0 || now - job.finishedAt! >= this.#opts.resultTtlMs) {
        this.#jobs.delete(job.id);
        job.listeners.clear();
        excess--;
      }
    }
  }

  /** Cancels every job, waits for the worker to stop, and disposes the loaded pipelines. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of [...this.#waiting]) this.cancel(job.id);
    if (this.#running) this.cancel(this.#running.id);
    await this.#worker;
    for (const p of this.#pipelines.splice(0)) this.#dispose(p);
  }

  async #work(): Promise<void> {
    try {
      for (let job = this.#waiting.shift(); job; job = this.#waiting.shift()) {
        this.#running = job;
        try {
          await this.#run(job);
        } catch (e) {
          // #run catches everything itself; this is the last line of defence for the worker.
          if (!FINAL.includes(job.status)) this.#finish(job, "failed", this.#describe(e));
        }
        this.#running = null;
      }
    } finally {
      this.#running = null;
      this.#worker = null;
    }
  }

  async #run(job: Job): Promise<void> {
    job.status = "running";
    job.startedAt = this.#now();
    this.#emit(job, "status");
    const signal = job.controller.signal;
    const onProgress = (e: ProgressEvent) => this.#progress(job, e);
    try {
      const pipeline = await this.#pipeline(job, onProgress);
      signal.throwIfAborted();
      const { animation, encoded, encodeMs } = await runAnimation(pipeline, job.request, {
        signal,
        onProgress,
        onPreview: (p) => job.preview = p,
        now: this.#now,
      });
      job.result = {
        frames: animation.frames,
        others: new Map(),
        bytes: encoded.bytes,
        info: resultInfoOf(job.id, animation, encoded, encodeMs),
      };
      this.#durations.push(this.#now() - job.startedAt);
      if (this.#durations.length > 20) this.#durations.shift();
      this.#completed++;
      // Frames stay only with the newest results (a 16-frame 512 x 512 clip is 16 MB).
      const kept = [...this.#jobs.values()].filter((j) => j !== job && j.result?.frames)
        .sort((a, b) => b.finishedAt! - a.finishedAt!);
      for (const j of kept.slice(FRAMES_KEPT - 1)) j.result!.frames = null;
      this.#finish(job, "succeeded", null);
    } catch (e) {
      if (signal.aborted) {
        this.#finish(job, "canceled", null);
      } else {
        this.#failed++;
        const name = e instanceof Error ? e.name : "";
        if (name === "DeviceLostError" || name === "GpuError") this.#dropPipeline(job);
        this.#finish(job, "failed", this.#describe(e));
      }
    }
  }

  #progress(job: Job, e: ProgressEvent): void {
    job.progress = jobProgressOf(e);
    this.#emit(job, "progress");
  }

  async #pipeline(job: Job, onProgress: (e: ProgressEvent) => void): Promise<ServedPipeline> {
    const options = job.pipelineOptions;
    const key = JSON.stringify(options);
    const cached = this.#pipelines.find((p) => p.key === key);
    if (cached) {
      cached.lastUsed = this.#now();
      return cached.pipeline;
    }
    // Free GPU memory before loading: keep at most maxPipelines - 1 others.
    this.#pipelines.sort((a, b) => b.lastUsed - a.lastUsed);
    while (this.#pipelines.length >= this.#opts.maxPipelines) {
      this.#dispose(this.#pipelines.pop()!);
    }
    const pipeline = await this.#opts.loadPipeline({ ...options, onProgress });
    const { model, motionModule, loras } = job.request;
    this.#pipelines.push({
      key,
      pipeline,
      names: { model, motionModule, loras },
      lastUsed: this.#now(),
    });
    return pipeline;
  }

  #dropPipeline(job: Job): void {
    const key = JSON.stringify(job.pipelineOptions);
    const i = this.#pipelines.findIndex((p) => p.key === key);
    if (i >= 0) this.#dispose(this.#pipelines.splice(i, 1)[0]);
  }

  #dispose(p: CachedPipeline): void {
    try {
      p.pipeline.dispose();
    } catch {
      // A pipeline that fails to dispose is dropped anyway.
    }
  }

  #finish(job: Job, status: JobStatus, error: string | null): void {
    job.preview = null;
    job.status = status;
    job.error = error;
    job.finishedAt = this.#now();
    this.#emit(job, "status");
    job.listeners.clear();
    this.prune();
  }

  #emit(job: Job, type: JobEvent["type"]): void {
    if (job.listeners.size === 0) return;
    const view = this.#view(job);
    for (const listener of [...job.listeners]) {
      try {
        listener({ type, job: view });
      } catch {
        job.listeners.delete(listener); // a broken listener must not stop the worker
      }
    }
  }

  #view(job: Job): JobView {
    const pos = job.status === "queued" ? this.#waiting.indexOf(job) : -1;
    return {
      id: job.id,
      status: job.status,
      queuePosition: pos >= 0 ? pos : null,
      createdAt: iso(job.createdAt)!,
      startedAt: iso(job.startedAt),
      finishedAt: iso(job.finishedAt),
      progress: job.progress,
      error: job.error,
      cancelRequested: job.controller.signal.aborted,
      request: publicRequest(job.request),
      result: job.result && job.finishedAt !== null
        ? {
          ...job.result.info,
          expiresAt: iso(job.finishedAt + this.#opts.resultTtlMs)!,
        }
        : null,
      preview: job.preview
        ? {
          step: job.preview.step,
          total: job.preview.total,
          url: `/v1/animations/${job.id}/preview?step=${job.preview.step}`,
        }
        : null,
    };
  }
}

/** The engine's request for a validated HTTP request. */
export function generateRequestOf(r: AnimationRequest): GenerateRequest {
  return {
    prompt: r.prompt,
    negativePrompt: r.negativePrompt,
    frames: r.frames,
    width: r.width,
    height: r.height,
    steps: r.steps,
    guidance: r.guidance,
    scheduler: r.scheduler,
    seed: r.seed,
    clipSkip: r.clipSkip,
    fps: r.fps,
    contextLength: r.contextLength,
    contextOverlap: r.contextOverlap,
    contextLoop: r.contextLoop,
    contextWeighting: r.contextWeighting,
    freeNoise: r.freeNoise,
    promptMap: r.promptMap,
    freeInit: r.freeInit,
    video: r.video === undefined ? undefined : decodeMedia(fromBase64(r.video)),
    image: r.image === undefined ? undefined : decodeMedia(fromBase64(r.image))[0],
    strength: r.strength,
    motionScale: r.motionScale,
    motionEffect: r.motionEffect,
  };
}

/** A request as job views show it: input files are not echoed back, their size stands for them. */
export function publicRequest(r: AnimationRequest): AnimationRequest {
  return {
    ...r,
    ...(r.video ? { video: `<${r.video.length} base64 characters>` } : {}),
    ...(r.image ? { image: `<${r.image.length} base64 characters>` } : {}),
  };
}

/** An engine progress report as clients see it (ETA estimated from the pace when missing). */
export function jobProgressOf(e: ProgressEvent): JobProgress {
  let eta = e.etaMs ?? null;
  if (eta === null && e.step > 0 && e.total > e.step) {
    eta = Math.round(e.elapsedMs / e.step * (e.total - e.step));
  }
  return {
    stage: e.stage,
    step: e.step,
    total: e.total,
    elapsedMs: Math.round(e.elapsedMs),
    etaMs: eta === null ? null : Math.max(0, Math.round(eta)),
    ...(e.message ? { message: e.message } : {}),
  };
}

/**
 * Runs one validated request on a loaded pipeline and encodes it in the requested format: what
 * the single-process queue and every scale-out worker do with a job. Throws on abort.
 */
export async function runAnimation(
  pipeline: ServedPipeline,
  r: AnimationRequest,
  o: {
    signal: AbortSignal;
    onProgress: (e: ProgressEvent) => void;
    /** Each denoising step's preview, as an animated GIF. */
    onPreview: (p: { step: number; total: number; bytes: Uint8Array }) => void;
    now?: () => number;
  },
): Promise<{ animation: ServedAnimation; encoded: EncodedAnimation; encodeMs: number }> {
  const now = o.now ?? Date.now;
  const animation = await pipeline.generate(generateRequestOf(r), {
    onProgress: o.onProgress,
    signal: o.signal,
    onPreview: (p: { step: number; total: number; frames: Frame[] }) =>
      o.onPreview({ step: p.step, total: p.total, bytes: encodeGif(p.frames, { fps: r.fps }) }),
  });
  o.signal.throwIfAborted();
  const t0 = now();
  o.onProgress({ stage: "output", step: 0, total: 1, elapsedMs: 0 });
  const encoded = await encodeAnimation(animation.frames, r.format, {
    fps: animation.fps ?? r.fps,
  });
  const encodeMs = now() - t0;
  o.onProgress({ stage: "output", step: 1, total: 1, elapsedMs: encodeMs });
  return { animation, encoded, encodeMs };
}

/** A finished job's result as clients see it (without its expiry). */
export function resultInfoOf(
  id: string,
  animation: ServedAnimation,
  encoded: EncodedAnimation,
  encodeMs: number,
): Omit<JobResultInfo, "expiresAt"> {
  return {
    url: `/v1/animations/${id}/result`,
    contentType: encoded.contentType,
    extension: encoded.extension,
    bytes: encoded.bytes.length,
    width: animation.width,
    height: animation.height,
    frames: animation.frames.length,
    fps: animation.fps,
    seed: Number(animation.seed),
    timings: { ...animation.timings, encodeMs },
  };
}
