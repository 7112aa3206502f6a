/**
 * How scale-out mode keeps jobs in Redis: the key layout, the Lua scripts that move a job from
 * state to state atomically, and the job view read back from a job's hash. Shared by API nodes
 * (server/redis/store.ts) and GPU workers (server/redis/worker.ts).
 *
 * Keys, under a prefix (default `zoetrope:`; one Redis, not a Cluster: the scripts build keys):
 * - `job:<id>` hash: the request (JSON), status, times, progress, attempts, worker, result info,
 *   error. Final jobs expire after their result TTL.
 * - `queued` sorted set (score = submission order): waiting jobs; its rank is the queue position
 *   and its size the limit checked on submit (429 across all API nodes).
 * - `running` hash: job id -> worker id.
 * - `alive:<worker>`: a key the worker renews every lease/3 with a TTL of one lease. A running
 *   job whose worker's key expired is put back in the queue (first in line, attempts + 1) or,
 *   after `maxAttempts`, failed with the reason — by any API node or worker (`reap`).
 * - `workers` hash: worker id -> what /healthz shows (adapter, job, loaded models, heartbeat);
 *   `catalog` hash: worker id -> its models directory's listing (API nodes without `--models`
 *   validate names against the union).
 * - `result:<id>`, `frames:<id>` (raw RGBA, the newest FRAMES_KEPT results), `preview:<id>`:
 *   bytes with TTLs. Results over the size cap go to a shared directory instead (`resultPath`;
 *   the `files` hash keeps id -> file name past the job's expiry, for the reaper to delete it).
 * - `ev:<id>` stream: one entry per status change or progress report; API nodes read it
 *   (XREAD BLOCK) to push server-sent events for any job, whichever node accepted it.
 * - `jobs` / `finished` sorted sets (by time): history and retention; `stats` hash; `durations`
 *   list (recent job times, for Retry-After).
 * @module
 */

import { Redis } from "ioredis";
import type { AnimationRequest } from "../validate.ts";
import type {
  JobProgress,
  JobResultInfo,
  JobStatus,
  JobView,
  LoadedPipelineInfo,
} from "../queue.ts";
import { publicRequest } from "../queue.ts";

/** Default key prefix. */
export const DEFAULT_PREFIX = "zoetrope:";
/** Default lease: a worker silent this long is taken for dead. */
export const DEFAULT_LEASE_MS = 30_000;
/** A job is started at most this many times (one retry after its worker died). */
export const MAX_ATTEMPTS = 2;
/** Entries kept per job event stream. */
export const EVENTS_KEPT = 64;

/** The key names under one prefix. */
export function keys(prefix: string) {
  return {
    job: (id: string) => `${prefix}job:${id}`,
    result: (id: string) => `${prefix}result:${id}`,
    resultAs: (id: string, format: string) => `${prefix}result:${id}:${format}`,
    frames: (id: string) => `${prefix}frames:${id}`,
    preview: (id: string) => `${prefix}preview:${id}`,
    events: (id: string) => `${prefix}ev:${id}`,
    alive: (worker: string) => `${prefix}alive:${worker}`,
    queued: `${prefix}queued`,
    running: `${prefix}running`,
    workers: `${prefix}workers`,
    catalog: `${prefix}catalog`,
    files: `${prefix}files`,
    jobs: `${prefix}jobs`,
    finished: `${prefix}finished`,
    stats: `${prefix}stats`,
    durations: `${prefix}durations`,
    framesKept: `${prefix}framesKept`,
  };
}

/**
 * Lua scripts (ARGV[1] is always the prefix). Each runs atomically in Redis, so two API nodes
 * or two workers never see a job half-moved.
 */
export const SCRIPTS = {
  /** ARGV: prefix, id, queueSize, now, request JSON, affinity, resultTtlMs -> {1, seq} | {0, depth} */
  submit: `
local P = ARGV[1]
local q = P .. 'queued'
local n = redis.call('ZCARD', q)
if n >= tonumber(ARGV[3]) then return {0, n} end
local seq = redis.call('INCR', P .. 'seq')
local jk = P .. 'job:' .. ARGV[2]
redis.call('HSET', jk, 'id', ARGV[2], 'seq', seq, 'request', ARGV[5], 'affinity', ARGV[6],
  'status', 'queued', 'createdAt', ARGV[4], 'attempts', 0, 'resultTtlMs', ARGV[7])
redis.call('ZADD', q, seq, ARGV[2])
redis.call('ZADD', P .. 'jobs', ARGV[4], ARGV[2])
return {1, seq}`,

  /**
   * ARGV: prefix, worker, affinity, scan, affinityWaitMs, now -> {id, attempt} | false.
   * Takes the first queued job, or among the first `scan` the first whose model set equals the
   * worker's loaded one — unless the head has waited `affinityWaitMs` (no starvation).
   */
  claim: `
local P = ARGV[1]
local q = P .. 'queued'
local head = redis.call('ZRANGE', q, 0, tonumber(ARGV[4]) - 1)
if #head == 0 then return false end
local pick = head[1]
if ARGV[3] ~= '' then
  local created = tonumber(redis.call('HGET', P .. 'job:' .. head[1], 'createdAt') or ARGV[6])
  if tonumber(ARGV[6]) - created < tonumber(ARGV[5]) then
    for _, id in ipairs(head) do
      if redis.call('HGET', P .. 'job:' .. id, 'affinity') == ARGV[3] then pick = id; break end
    end
  end
end
redis.call('ZREM', q, pick)
local jk = P .. 'job:' .. pick
if redis.call('EXISTS', jk) == 0 then return false end
local attempt = redis.call('HINCRBY', jk, 'attempts', 1)
redis.call('HSET', jk, 'status', 'running', 'worker', ARGV[2], 'startedAt', ARGV[6])
redis.call('HDEL', jk, 'progress', 'preview')
redis.call('HSET', P .. 'running', pick, ARGV[2])
return {pick, attempt}`,

  /**
   * ARGV: prefix, id, worker, attempt, status, error, now, result JSON -> 1, or 0 when the job
   * is no longer this worker's attempt (it was taken for dead and retried elsewhere).
   */
  finish: `
local P = ARGV[1]
local jk = P .. 'job:' .. ARGV[2]
if redis.call('HGET', jk, 'worker') ~= ARGV[3] or redis.call('HGET', jk, 'attempts') ~= ARGV[4]
  or redis.call('HGET', jk, 'status') ~= 'running' then return 0 end
redis.call('HSET', jk, 'status', ARGV[5], 'finishedAt', ARGV[7])
if ARGV[6] ~= '' then redis.call('HSET', jk, 'error', ARGV[6]) end
if ARGV[8] ~= '' then redis.call('HSET', jk, 'result', ARGV[8]) end
redis.call('HDEL', jk, 'preview')
redis.call('HDEL', P .. 'running', ARGV[2])
redis.call('PEXPIRE', jk, redis.call('HGET', jk, 'resultTtlMs'))
redis.call('ZADD', P .. 'finished', ARGV[7], ARGV[2])
if ARGV[5] ~= 'canceled' then redis.call('HINCRBY', P .. 'stats', ARGV[5], 1) end
return 1`,

  /** ARGV: prefix, id, now -> 'canceled' | 'canceling' | 'finished' | false */
  cancel: `
local P = ARGV[1]
local jk = P .. 'job:' .. ARGV[2]
local st = redis.call('HGET', jk, 'status')
if not st then return false end
if st == 'queued' then
  redis.call('ZREM', P .. 'queued', ARGV[2])
  redis.call('HSET', jk, 'status', 'canceled', 'finishedAt', ARGV[3])
  redis.call('PEXPIRE', jk, redis.call('HGET', jk, 'resultTtlMs'))
  redis.call('ZADD', P .. 'finished', ARGV[3], ARGV[2])
  return 'canceled'
elseif st == 'running' then
  redis.call('HSET', jk, 'cancel', '1')
  return 'canceling'
end
return 'finished'`,

  /**
   * ARGV: prefix, now, maxAttempts, leaseMs -> {id, outcome, ...}. Jobs whose worker's lease
   * expired: canceled if a cancel was pending, else queued again first in line, or failed once
   * they have been started maxAttempts times.
   */
  reap: `
local P = ARGV[1]
local out = {}
local running = redis.call('HGETALL', P .. 'running')
for i = 1, #running, 2 do
  local id, w = running[i], running[i + 1]
  if redis.call('EXISTS', P .. 'alive:' .. w) == 0 then
    redis.call('HDEL', P .. 'running', id)
    local jk = P .. 'job:' .. id
    if redis.call('HGET', jk, 'status') == 'running' and redis.call('HGET', jk, 'worker') == w then
      local attempts = tonumber(redis.call('HGET', jk, 'attempts') or '0')
      local final = nil
      if redis.call('HGET', jk, 'cancel') == '1' then
        final = 'canceled'
      elseif attempts < tonumber(ARGV[3]) then
        redis.call('HSET', jk, 'status', 'queued')
        redis.call('HDEL', jk, 'worker', 'startedAt', 'progress', 'preview')
        redis.call('ZADD', P .. 'queued', redis.call('HGET', jk, 'seq'), id)
        redis.call('HINCRBY', P .. 'stats', 'retried', 1)
        out[#out + 1] = id
        out[#out + 1] = 'retried'
      else
        final = 'failed'
        redis.call('HSET', jk, 'error', 'the GPU worker running it (' .. w ..
          ') stopped sending heartbeats for ' .. math.floor(tonumber(ARGV[4]) / 1000) ..
          ' s, on attempt ' .. attempts .. ' of ' .. ARGV[3] .. '; not retried again')
        redis.call('HINCRBY', P .. 'stats', 'failed', 1)
      end
      if final then
        redis.call('HSET', jk, 'status', final, 'finishedAt', ARGV[2])
        redis.call('HDEL', jk, 'preview')
        redis.call('PEXPIRE', jk, redis.call('HGET', jk, 'resultTtlMs'))
        redis.call('ZADD', P .. 'finished', ARGV[2], id)
        out[#out + 1] = id
        out[#out + 1] = final
      end
    end
  end
end
return out`,

  /** ARGV: prefix, id, kept -> the ids whose frames were dropped (only the newest are kept). */
  keepFrames: `
local P = ARGV[1]
local l = P .. 'framesKept'
redis.call('LREM', l, 0, ARGV[2])
redis.call('LPUSH', l, ARGV[2])
local old = redis.call('LRANGE', l, tonumber(ARGV[3]), -1)
for _, id in ipairs(old) do redis.call('DEL', P .. 'frames:' .. id) end
redis.call('LTRIM', l, 0, tonumber(ARGV[3]) - 1)
return old`,
} as const;

/** A worker's entry in the `workers` hash. */
export interface WorkerRecord {
  id: string;
  host: string;
  pid: number;
  adapter: string | null;
  runningJob: string | null;
  loaded: LoadedPipelineInfo | null;
  jobsDone: number;
  draining: boolean;
  /** ms since the epoch. */
  heartbeat: number;
  leaseMs: number;
}

function num(v: string | undefined): number | null {
  return v === undefined || v === "" ? null : Number(v);
}

function iso(t: number | null): string | null {
  return t === null ? null : new Date(t).toISOString();
}

/** The request a job hash holds. */
export function requestOf(h: Record<string, string>): AnimationRequest {
  return JSON.parse(h.request) as AnimationRequest;
}

/**
 * A job's view from its hash (`position`: its rank in the queue, or null), as the single-process
 * queue shows it, so clients cannot tell the modes apart.
 */
export function viewOf(h: Record<string, string>, position: number | null): JobView {
  const status = h.status as JobStatus;
  const finishedAt = num(h.finishedAt);
  const result = h.result ? JSON.parse(h.result) as Omit<JobResultInfo, "expiresAt"> : null;
  const preview = h.preview ? JSON.parse(h.preview) as { step: number; total: number } : null;
  return {
    id: h.id,
    status,
    queuePosition: status === "queued" ? position : null,
    createdAt: iso(num(h.createdAt))!,
    startedAt: iso(num(h.startedAt)),
    finishedAt: iso(finishedAt),
    progress: h.progress ? JSON.parse(h.progress) as JobProgress : null,
    error: h.error || null,
    cancelRequested: h.cancel === "1",
    request: publicRequest(requestOf(h)),
    result: result && finishedAt !== null
      ? { ...result, expiresAt: iso(finishedAt + Number(h.resultTtlMs))! }
      : null,
    preview: preview && status === "running"
      ? { ...preview, url: `/v1/animations/${h.id}/preview?step=${preview.step}` }
      : null,
  };
}

/**
 * Appends a job event (a status change or a progress report) to the job's stream, which lives
 * as long as the job.
 */
export function eventCommands(
  prefix: string,
  id: string,
  type: "status" | "progress",
  ttlMs: number,
): (string | number)[][] {
  const k = keys(prefix).events(id);
  return [
    ["xadd", k, "MAXLEN", "~", EVENTS_KEPT, "*", "type", type],
    ["pexpire", k, ttlMs],
  ];
}

/** The scripts' names. */
export type ScriptName = keyof typeof SCRIPTS;

/** A Redis URL with its password hidden (for messages). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString().replace(/\/$/, "");
  } catch {
    return "<invalid URL>";
  }
}

/**
 * Connects to Redis (fails fast with one line when it cannot be reached) and defines the
 * scripts as commands (sent once, then run by their SHA).
 */
export async function connectRedis(url: string): Promise<Redis> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--redis: expected a URL such as redis://127.0.0.1:6379, got "${url}"`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new Error(`--redis: expected a redis:// or rediss:// URL, got "${redactUrl(url)}"`);
  }
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 3,
    connectTimeout: 5000,
    retryStrategy: (n: number) => Math.min(100 * n, 2000),
  });
  // Connection errors surface on the commands that fail; without a listener ioredis would
  // print every reconnect attempt.
  r.on("error", () => {});
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    r.defineCommand(name, { numberOfKeys: 0, lua });
  }
  try {
    await r.connect();
    await r.ping();
  } catch (e) {
    r.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(e as Error).message}`);
  }
  return r;
}

/** Runs one of {@link SCRIPTS} (defined on the connection by {@link connectRedis}). */
export function script(
  r: Redis,
  name: ScriptName,
  ...args: (string | number)[]
): Promise<unknown> {
  const f = (r as unknown as Record<string, (...a: (string | number)[]) => Promise<unknown>>)[name];
  return f.call(r, ...args);
}

/** `o` without its undefined entries (so that spreading it keeps the defaults). */
export function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
