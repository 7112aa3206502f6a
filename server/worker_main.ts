/**
 * `deno task worker --redis URL --models DIR [...]`: one scale-out GPU worker
 * ({@link RedisWorker}) per process. SIGTERM or SIGINT drains it (the running job finishes, no
 * new one is taken); a second signal stops it at once (its job is retried elsewhere once its
 * lease runs out). Exit code 2 on bad flags, 1 when Redis or the models directory is missing.
 * @module
 */

// First: narrows process.env to the granted variables before the Redis client loads.
import "./env_view.ts";
import { parseArgs } from "node:util";
import type { Precision } from "../engine/pipeline_types.ts";
import { parseByteSize } from "../engine/memory_plan.ts";
import { RedisWorker, type RedisWorkerOptions } from "./redis/worker.ts";
import { UsageError } from "./main.ts";

/** Usage text of `deno task worker`. */
export const WORKER_USAGE = `usage: deno task worker --redis URL --models DIR [options]
  --redis URL               the Redis the API nodes use (redis://HOST:PORT) (required)
  --models DIR              this machine's models directory, same names as the API nodes' (required)
  --redis-prefix P          key prefix shared with the API nodes (default "zoetrope:")
  --results DIR             shared directory for results larger than --max-redis-result
  --max-redis-result SIZE   largest result kept in Redis itself (default 16MiB)
  --lease SECONDS           silent this long, the worker is taken for dead and its job retried
                            once elsewhere (default 30)
  --affinity-wait SECONDS   a queued job waits at most this long behind jobs for the models this
                            worker holds (default 30)
  --precision f32|f16       engine storage precision
  --max-memory SIZE         GPU memory a job may use, e.g. 8GB
  --tokenizer DIR           tokenizer for single-file checkpoints without one
  --id NAME                 worker id in /healthz (default host-pid-random)`;

function seconds(v: string | undefined, flag: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > 86_400) {
    throw new UsageError(`--${flag}: expected seconds in ${min}..86400, got "${v}"`);
  }
  return Math.round(n * 1000);
}

function size(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = parseByteSize(v);
  if (n === null) throw new UsageError(`--${flag}: expected a size such as 16MB, got "${v}"`);
  return n;
}

/**
 * Parses `deno task worker` flags.
 *
 * @example
 * ```ts
 * const o = parseWorkerArgs(["--redis", "redis://127.0.0.1:6379", "--models", "models"]);
 * o.modelsDir; // "models"
 * ```
 */
export function parseWorkerArgs(args: string[]): RedisWorkerOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        redis: { type: "string" },
        models: { type: "string" },
        "redis-prefix": { type: "string" },
        results: { type: "string" },
        "max-redis-result": { type: "string" },
        lease: { type: "string" },
        "affinity-wait": { type: "string" },
        precision: { type: "string" },
        "max-memory": { type: "string" },
        tokenizer: { type: "string" },
        id: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) throw new UsageError(WORKER_USAGE);
  if (!values.redis) throw new UsageError("--redis: required (the API nodes' Redis URL)");
  if (!values.models) throw new UsageError("--models: required (the models directory)");
  const precision = values.precision;
  if (precision !== undefined && precision !== "f32" && precision !== "f16") {
    throw new UsageError(`--precision: expected f32 or f16, got "${precision}"`);
  }
  if (values.id !== undefined && !/^[\w.:-]{1,64}$/.test(values.id)) {
    throw new UsageError(`--id: expected 1-64 letters, digits, . : _ or -, got "${values.id}"`);
  }
  return {
    url: values.redis,
    modelsDir: values.models,
    prefix: values["redis-prefix"],
    resultsDir: values.results,
    maxRedisBytes: size(values["max-redis-result"], "max-redis-result"),
    leaseMs: seconds(values.lease, "lease", 1),
    affinityWaitMs: seconds(values["affinity-wait"], "affinity-wait", 0),
    precision: precision as Precision | undefined,
    maxMemory: size(values["max-memory"], "max-memory"),
    tokenizer: values.tokenizer,
    id: values.id,
  };
}

if (import.meta.main) {
  let options: RedisWorkerOptions;
  try {
    options = parseWorkerArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
  globalThis.addEventListener("unhandledrejection", (e) => {
    console.error("zoetrope worker: unhandled rejection:", e.reason);
    e.preventDefault();
  });
  let worker: RedisWorker;
  try {
    worker = await RedisWorker.start({
      ...options,
      log: (line) => console.log(`zoetrope: ${line}`),
    });
  } catch (e) {
    console.error(`zoetrope worker: ${(e as Error).message}`);
    Deno.exit(1);
  }
  let signals = 0;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      if (++signals > 1) {
        console.log(`zoetrope: ${sig} again, stopping now`);
        Deno.exit(1);
      }
      console.log(`zoetrope: ${sig}, draining (finishing the running job)`);
      worker.drain();
    });
  }
  await worker.done;
  Deno.exit(0);
}
