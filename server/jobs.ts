/**
 * Where the HTTP routes keep animation jobs: {@link JobStore}, one asynchronous interface with two
 * implementations — the single-process {@link JobQueue} (memory, one GPU worker in the same
 * process: the default) through {@link memoryJobs}, and the Redis-backed store of
 * `server/redis/store.ts` (API nodes only; GPU workers are separate processes).
 * @module
 */

import type { AnimationFormat } from "../engine/output/mod.ts";
import type { PipelineOptions } from "../engine/pipeline_types.ts";
import type { AnimationRequest } from "./validate.ts";
import type { ModelsListing } from "./models_dir.ts";
import type {
  CancelOutcome,
  JobEvent,
  JobQueue,
  JobStatus,
  JobView,
  LoadedPipelineInfo,
} from "./queue.ts";

/** Result bytes as the routes serve them. */
export interface JobBytes {
  /** The encoded animation. */
  bytes: Uint8Array;
  /** Its MIME type. */
  contentType: string;
  /** Its file extension, with the dot. */
  extension: string;
}

/** A GPU worker as /healthz reports it (scale-out mode). */
export interface WorkerHealth {
  /** The worker's id (`--id`, or host-pid-random). */
  id: string;
  /** The worker's WebGPU adapter (null until it has probed one). */
  adapter: string | null;
  /** The job it runs now, or null when idle. */
  runningJob: string | null;
  /** The model set it holds loaded (names), or null. */
  loadedModel: { model: string; motionModule: string; loras: string[] } | null;
  /** Jobs it finished since it started. */
  jobsDone: number;
  /** It finishes its job and takes no new one (SIGTERM received). */
  draining: boolean;
  /** Its last heartbeat (ISO 8601). */
  lastHeartbeat: string;
  /** Its lease is current; false once heartbeats stopped (killed or hung). */
  alive: boolean;
}

/** What /healthz reports of the jobs. */
export interface JobsHealth {
  /** Queue counts. */
  queue: {
    /** Jobs waiting. */
    depth: number;
    /** A running job's id (the first, in scale-out mode), or null. */
    running: string | null;
    /** Every running job (scale-out mode runs one per worker). */
    runningIds: string[];
    /** Jobs that succeeded (since start; in scale-out mode, ever, on this Redis). */
    succeeded: number;
    /** Jobs that failed. */
    failed: number;
    /** Jobs put back in the queue after their worker stopped (scale-out mode). */
    retried: number;
    /** Jobs held (finished ones until their results expire). */
    kept: number;
  };
  /** Pipelines held loaded (by this process, or by the live workers). */
  loadedModels: LoadedPipelineInfo[];
  /** Scale-out mode: the GPU workers; absent in single-process mode. */
  workers?: WorkerHealth[];
  /** Where jobs live: this process, or Redis. */
  backend: "memory" | "redis";
}

/**
 * The jobs of the service, as the /v1 routes use them. Every method answers for any job the
 * backend holds (in scale-out mode: jobs submitted through any API node).
 *
 * @example
 * ```ts ignore
 * const view = await store.submit(request, options); // throws QueueFullError when full
 * const off = await store.subscribe(view.id, (e) => console.log(e.type, e.job.status));
 * ```
 */
export interface JobStore {
  /** Queues a job; throws QueueFullError when the queue is full. */
  submit(request: AnimationRequest, pipelineOptions: PipelineOptions): Promise<JobView>;
  /** The job's view, or undefined when unknown or expired. */
  get(id: string): Promise<JobView | undefined>;
  /** Jobs held, newest first. */
  list(o?: { status?: JobStatus; limit?: number }): Promise<JobView[]>;
  /** The latest live preview (an animated GIF) of a running job. */
  preview(id: string): Promise<{ step: number; bytes: Uint8Array } | undefined>;
  /** A succeeded job's result in its own format. */
  result(id: string): Promise<JobBytes | undefined>;
  /** A succeeded job's result in `format`: null when its frames are gone. */
  resultAs(id: string, format: AnimationFormat): Promise<JobBytes | null | undefined>;
  /** Cancels a job (see {@link JobQueue.cancel}). */
  cancel(id: string): Promise<CancelOutcome | undefined>;
  /** Calls `listener` on each status change and progress report until the job is final. */
  subscribe(id: string, listener: (e: JobEvent) => void): Promise<(() => void) | undefined>;
  /** Counts, loaded models and workers for /healthz. */
  health(): Promise<JobsHealth>;
  /** Seconds a refused client should wait. */
  retryAfterSeconds(): Promise<number>;
  /** Stops: the memory queue cancels its jobs; the Redis store only disconnects. */
  close(): Promise<void>;
  /**
   * The models the workers offer (scale-out API nodes started without `--models`): the union of
   * the registered workers' models directories.
   */
  catalog?(): Promise<ModelsListing>;
}

/**
 * The single-process queue as a {@link JobStore}.
 *
 * @example
 * ```ts ignore
 * const store = memoryJobs(new JobQueue({ loadPipeline, queueSize: 8, resultTtlMs: 3.6e6, maxResults: 50 }));
 * ```
 */
export function memoryJobs(queue: JobQueue): JobStore {
  return {
    submit: (r, o) => Promise.resolve().then(() => queue.submit(r, o)),
    get: (id) => Promise.resolve(queue.get(id)),
    list: (o) => Promise.resolve(queue.list(o)),
    preview: (id) => Promise.resolve(queue.preview(id)),
    result: (id) => Promise.resolve(queue.result(id)),
    resultAs: (id, f) => queue.resultAs(id, f),
    cancel: (id) => Promise.resolve(queue.cancel(id)),
    subscribe: (id, l) => Promise.resolve(queue.subscribe(id, l)),
    health: () => {
      const s = queue.stats();
      const running = queue.runningId;
      return Promise.resolve({
        queue: {
          depth: s.queued,
          running,
          runningIds: running ? [running] : [],
          succeeded: s.succeeded,
          failed: s.failed,
          retried: 0,
          kept: s.kept,
        },
        loadedModels: queue.loadedPipelines(),
        backend: "memory" as const,
      });
    },
    retryAfterSeconds: () => Promise.resolve(queue.retryAfterSeconds()),
    close: () => queue.close(),
  };
}
