/**
 * `deno task serve --models DIR [--port N] [--host H] [...]`: serves {@link createApp} with
 * Deno.serve. The bearer token comes from the environment (ZOETROPE_TOKEN, or the variable named
 * by --token-env), never from the command line. Exit code 2 on bad flags.
 * @module
 */

// First: narrows process.env to the granted variables before the Redis client loads.
import "./env_view.ts";
import { parseArgs } from "node:util";
import { APP_DEFAULTS, type AppOptions, createApp, type ZoetropeApp } from "./app.ts";
import { RedisJobs } from "./redis/store.ts";
import type { Precision } from "../engine/pipeline_types.ts";
import { parseByteSize } from "../engine/memory_plan.ts";

/** Usage text of `deno task serve`. */
export const USAGE = `usage: deno task serve --models DIR [options]
  --models DIR              models directory: checkpoints/, motion_modules/, loras/ (required,
                            except with --redis: the API node then lists the workers' models)
  --port N                  TCP port (default 8787; 0 = any free port)
  --host H                  address to listen on (default 127.0.0.1)
  --queue-size N            jobs that may wait before POST answers 429 (default 8)
  --result-ttl SECONDS      how long finished results are kept (default 3600)
  --max-results N           how many finished results are kept (default 50)
  --max-body-bytes N        request size limit (default 65536)
  --cors ORIGIN             allow a browser origin ("*" = any); repeatable; env ZOETROPE_CORS
  --token-env NAME          environment variable holding the bearer token (default ZOETROPE_TOKEN)
  --precision f32|f16       engine storage precision
  --max-memory SIZE         GPU memory a job may use, e.g. 8GB (default: unknown for GPUs, host
                            memory for software adapters); larger jobs fail before running
  --tokenizer DIR           tokenizer for single-file checkpoints without one
  --default-model NAME      model used when a request names none
  --default-motion-module NAME
scale-out (API node only; GPU workers run as \`deno task worker\`, see README "Deployment"):
  --redis URL               keep jobs in Redis (redis://HOST:PORT); this process runs no job
  --redis-prefix P          key prefix shared with the workers (default "zoetrope:")
  --results DIR             shared directory where workers put results too large for Redis`;

/** Parsed command line of `deno task serve`. */
export interface ServeConfig {
  port: number;
  hostname: string;
  app: AppOptions;
  /** Scale-out mode: jobs in Redis, run by separate workers. */
  redis?: ScaleOut;
}

/** Where a scale-out API node keeps its jobs. */
export interface ScaleOut {
  url: string;
  prefix?: string;
  resultsDir?: string;
}

/** A bad command line; main prints the message and exits with code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

function intFlag(
  v: string | undefined,
  flag: string,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag}: expected an integer in ${min}..${max}, got "${v}"`);
  }
  return n;
}

/**
 * Parses `deno task serve` flags; `env` gives ZOETROPE_TOKEN / ZOETROPE_CORS.
 *
 * @example
 * ```ts
 * const cfg = parseServeArgs(["--models", "models", "--port", "0"], (k) => Deno.env.get(k));
 * cfg.port; // 0
 * ```
 */
export function parseServeArgs(
  args: string[],
  env: (name: string) => string | undefined,
): ServeConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        models: { type: "string" },
        port: { type: "string" },
        host: { type: "string" },
        "queue-size": { type: "string" },
        "result-ttl": { type: "string" },
        "max-results": { type: "string" },
        "max-body-bytes": { type: "string" },
        cors: { type: "string", multiple: true },
        "token-env": { type: "string" },
        precision: { type: "string" },
        "max-memory": { type: "string" },
        tokenizer: { type: "string" },
        "default-model": { type: "string" },
        "default-motion-module": { type: "string" },
        redis: { type: "string" },
        "redis-prefix": { type: "string" },
        results: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) throw new UsageError(USAGE);
  if (!values.models && !values.redis) {
    throw new UsageError("--models: required (the models directory)");
  }
  const precision = values.precision;
  if (precision !== undefined && precision !== "f32" && precision !== "f16") {
    throw new UsageError(`--precision: expected f32 or f16, got "${precision}"`);
  }
  const maxMemory = values["max-memory"] === undefined
    ? undefined
    : parseByteSize(values["max-memory"]);
  if (maxMemory === null) {
    throw new UsageError(
      `--max-memory: expected a size such as 8GB, got "${values["max-memory"]}"`,
    );
  }
  const tokenVar = values["token-env"] ?? "ZOETROPE_TOKEN";
  const token = env(tokenVar) || undefined;
  const corsList = values.cors ??
    (env("ZOETROPE_CORS") ? env("ZOETROPE_CORS")!.split(",").map((s) => s.trim()) : undefined);
  const cors = corsList?.includes("*") ? "*" : corsList;
  const ttl = intFlag(values["result-ttl"], "result-ttl", 1, 30 * 24 * 3600);
  const app: AppOptions = {
    modelsDir: values.models,
    queueSize: intFlag(values["queue-size"], "queue-size", 0, 10_000),
    resultTtlMs: ttl === undefined ? undefined : ttl * 1000,
    maxResults: intFlag(values["max-results"], "max-results", 0, 100_000),
    maxBodyBytes: intFlag(values["max-body-bytes"], "max-body-bytes", 1, 1 << 30),
    token,
    cors,
    precision: precision as Precision | undefined,
    maxMemory,
    tokenizer: values.tokenizer,
    defaultModel: values["default-model"],
    defaultMotionModule: values["default-motion-module"],
  };
  if (!values.redis && (values["redis-prefix"] !== undefined || values.results !== undefined)) {
    throw new UsageError("--redis-prefix and --results need --redis (scale-out mode)");
  }
  return {
    port: intFlag(values.port, "port", 0, 65535) ?? 8787,
    hostname: values.host ?? "127.0.0.1",
    app,
    ...(values.redis
      ? {
        redis: {
          url: values.redis,
          prefix: values["redis-prefix"],
          resultsDir: values.results,
        },
      }
      : {}),
  };
}

/** A running server. */
export interface RunningServer {
  app: ZoetropeApp;
  server: Deno.HttpServer<Deno.NetAddr>;
  /** Base URL, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** Stops accepting requests, cancels jobs, releases pipelines. */
  shutdown(): Promise<void>;
}

/**
 * Starts the service on `hostname:port` (port 0 picks a free one).
 *
 * @example
 * ```ts
 * const s = await serve({ modelsDir: "models" }, { port: 0 });
 * console.log(s.url);
 * await s.shutdown();
 * ```
 */
export async function serve(
  appOptions: AppOptions,
  listen: { port: number; hostname?: string; quiet?: boolean; redis?: ScaleOut },
): Promise<RunningServer> {
  if (appOptions.modelsDir !== undefined || !listen.redis) {
    const st = await Deno.stat(appOptions.modelsDir ?? "").catch(() => null);
    if (!st?.isDirectory) {
      throw new UsageError(`--models: "${appOptions.modelsDir}" is not a directory`);
    }
  }
  const jobs = listen.redis
    ? await RedisJobs.connect({
      url: listen.redis.url,
      prefix: listen.redis.prefix,
      resultsDir: listen.redis.resultsDir,
      queueSize: appOptions.queueSize ?? APP_DEFAULTS.queueSize,
      resultTtlMs: appOptions.resultTtlMs ?? APP_DEFAULTS.resultTtlMs,
      maxResults: appOptions.maxResults ?? APP_DEFAULTS.maxResults,
    })
    : undefined;
  const app = createApp(jobs ? { ...appOptions, jobs } : appOptions);
  const hostname = listen.hostname ?? "127.0.0.1";
  const server = Deno.serve({
    port: listen.port,
    hostname,
    onListen: () => {},
    onError: (e) => {
      if (!listen.quiet) console.error("zoetrope serve: request failed:", e);
      return new Response(JSON.stringify({ error: "internal error" }), {
        status: 500,
        headers: { "Content-Type": "application/json" },
      });
    },
  }, app.fetch);
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | null = null;
  return {
    app,
    server,
    url: `http://${host}:${addr.port}`,
    shutdown: () =>
      closing ??= (async () => {
        await app.close();
        await server.shutdown();
      })(),
  };
}

if (import.meta.main) {
  let cfg: ServeConfig;
  try {
    cfg = parseServeArgs(Deno.args, (k) => Deno.env.get(k));
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(2);
  }
  // A failing job must never take the process down.
  globalThis.addEventListener("unhandledrejection", (e) => {
    console.error("zoetrope serve: unhandled rejection:", e.reason);
    e.preventDefault();
  });
  let running: RunningServer;
  try {
    running = await serve(cfg.app, { port: cfg.port, hostname: cfg.hostname, redis: cfg.redis });
  } catch (e) {
    console.error(`zoetrope serve: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
  console.log(
    `zoetrope: serving ${running.url} (models ${cfg.app.modelsDir ?? "of the workers"}` +
      `${cfg.app.token ? ", bearer token required" : ""}` +
      `${cfg.redis ? ", jobs in Redis: API node only" : ""})`,
  );
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      console.log(`zoetrope: ${sig}, shutting down`);
      running.shutdown().finally(() => Deno.exit(0));
    });
  }
}
