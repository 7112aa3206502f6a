/**
 * `deno task serve`: starts server/main.ts in a Deno process with the permissions the service
 * needs and no more — read the models directory (and where its symbolic links lead, the
 * tokenizer folder, the built-in demo
 * model, Deno's npm cache for the video encoders' WebAssembly), listen on its own host, read the
 * environment variables it uses and the system's memory size — instead of `-A`. Nothing may be
 * written, no subprocess run, no other host reached, no file outside those folders read, even if
 * a bug tried to.
 *
 * `deno task worker` (launch.ts worker ...) does the same for a scale-out GPU worker: read its
 * models directory, net to its Redis only, write only its shared results directory.
 *
 *   deno task serve --models DIR [server flags...]
 *   deno task worker --redis URL --models DIR [worker flags...]
 *   deno run -A server/launch.ts --print-permissions --models DIR   # show the flags, exit
 * @module
 */

import { resolve } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { parseServeArgs, UsageError } from "./main.ts";
import { parseWorkerArgs } from "./worker_main.ts";

/** Environment variables the service reads (token, CORS, demo-model cache). */
const ENV_VARS = [
  "ZOETROPE_TOKEN",
  "ZOETROPE_CORS",
  "ZOETROPE_CACHE",
  "XDG_CACHE_HOME",
  "XDG_RUNTIME_DIR",
  "HOME",
  "USERPROFILE",
  // Read by the Redis client's logging (DEBUG=ioredis:* turns it on).
  "DEBUG",
  "DEBUG_DEPTH",
  "DEBUG_COLORS",
  "NODE_DEBUG",
];

/** Where Deno keeps npm packages (the encoders read their .wasm files from there). */
async function npmCacheDir(): Promise<string | null> {
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const info = JSON.parse(new TextDecoder().decode(out.stdout));
    return typeof info.npmCache === "string" ? info.npmCache : null;
  } catch {
    return null;
  }
}

/**
 * Where the symbolic links inside the models directory lead (three levels deep: kind folders,
 * their entries, a diffusers folder's parts): models linked in from elsewhere stay readable, and
 * nothing else outside the directory is. Links added later need a restart.
 */
async function linkTargets(root: string, depth = 3): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, left: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(dir));
    } catch {
      return;
    }
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      if (e.isSymlink) {
        const target = await Deno.realPath(path).catch(() => null);
        if (target) out.push(target);
      } else if (e.isDirectory && left > 1) await walk(path, left - 1);
    }
  };
  await walk(root, depth);
  return [...new Set(out)];
}

/**
 * The `deno run` permission flags for a server started with `args` (server/main.ts's flags):
 * read access to exactly the folders it serves from, net to its own host.
 *
 * @example
 * ```ts ignore
 * const flags = await servePermissions(["--models", "models", "--port", "8787"]);
 * // ["--allow-read=/abs/models,...", "--allow-net=127.0.0.1:8787", "--allow-env=...", ...]
 * ```
 */
export async function servePermissions(
  args: string[],
  env: (name: string) => string | undefined = (k) => Deno.env.get(k),
): Promise<string[]> {
  const cfg = parseServeArgs(args, env);
  const tokenVar = args.find((_, i) => args[i - 1] === "--token-env") ??
    args.find((a) => a.startsWith("--token-env="))?.slice("--token-env=".length);
  const read = await modelReads(cfg.app.modelsDir, cfg.app.tokenizer, env);
  const host = cfg.hostname.includes(":") ? `[${cfg.hostname}]` : cfg.hostname;
  const net = [cfg.port === 0 ? host : `${host}:${cfg.port}`];
  if (cfg.redis) {
    net.push(redisHost(cfg.redis.url));
    if (cfg.redis.resultsDir) read.push(resolve(cfg.redis.resultsDir));
  }
  return [
    `--allow-read=${read.join(",")}`,
    `--allow-net=${net.join(",")}`,
    `--allow-env=${[...ENV_VARS, ...(tokenVar ? [tokenVar] : [])].join(",")}`,
    "--allow-sys=systemMemoryInfo",
  ];
}

/** `host:port` of a Redis URL, for --allow-net (port 6379 when the URL names none). */
function redisHost(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`--redis: expected a URL such as redis://127.0.0.1:6379, got "${url}"`);
  }
  return `${u.hostname}:${u.port || "6379"}`;
}

/** Read access a process loading models from `modelsDir` needs (links, tokenizer, demo, cache). */
async function modelReads(
  modelsDir: string | undefined,
  tokenizer: string | undefined,
  env: (name: string) => string | undefined,
): Promise<string[]> {
  const read = modelsDir === undefined
    ? []
    : [resolve(modelsDir), ...await linkTargets(resolve(modelsDir))];
  if (tokenizer) read.push(resolve(tokenizer));
  read.push(fromFileUrl(new URL("../weights/demo_model", import.meta.url)));
  const cache = env("ZOETROPE_CACHE") ??
    (env("XDG_CACHE_HOME") ? `${env("XDG_CACHE_HOME")}/zoetrope` : undefined) ??
    `${env("HOME") ?? "."}/.cache/zoetrope`;
  read.push(resolve(cache));
  const npm = await npmCacheDir();
  if (npm) read.push(npm);
  return read;
}

/**
 * The `deno run` permission flags for a scale-out worker started with `args`
 * (server/worker_main.ts's flags): read its models, write only the shared results directory, net
 * to its Redis only.
 *
 * @example
 * ```ts ignore
 * const flags = await workerPermissions(["--redis", "redis://10.0.0.5:6379", "--models", "models"]);
 * ```
 */
export async function workerPermissions(
  args: string[],
  env: (name: string) => string | undefined = (k) => Deno.env.get(k),
): Promise<string[]> {
  const o = parseWorkerArgs(args);
  const read = await modelReads(o.modelsDir, o.tokenizer, env);
  const flags = [];
  if (o.resultsDir) {
    read.push(resolve(o.resultsDir));
    flags.push(`--allow-write=${resolve(o.resultsDir)}`);
  }
  return [
    `--allow-read=${read.join(",")}`,
    ...flags,
    `--allow-net=${redisHost(o.url)}`,
    `--allow-env=${ENV_VARS.join(",")}`,
    "--allow-sys=systemMemoryInfo,hostname",
  ];
}

async function main(argv: string[]): Promise<number> {
  const worker = argv[0] === "worker";
  const args = worker ? argv.slice(1) : argv;
  const print = args.includes("--print-permissions");
  const serverArgs = args.filter((a) => a !== "--print-permissions");
  let flags: string[];
  try {
    flags = worker ? await workerPermissions(serverArgs) : await servePermissions(serverArgs);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      return 2;
    }
    throw e;
  }
  if (print) {
    console.log(flags.join("\n"));
    return 0;
  }
  const main = fromFileUrl(new URL(worker ? "./worker_main.ts" : "./main.ts", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, main, ...serverArgs],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => child.kill(sig));
  }
  return (await child.status).code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
