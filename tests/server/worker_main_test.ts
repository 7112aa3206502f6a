/**
 * `deno task worker`'s command line: flags parsed, bad ones refused with one line (exit 2), an
 * unreachable Redis or a missing models directory one line too (exit 1).
 */

import { assert, assertEquals } from "../assert.ts";
import { parseWorkerArgs } from "../../server/worker_main.ts";
import { fileURLToPath } from "node:url";

const WORKER = fileURLToPath(new URL("../../server/worker_main.ts", import.meta.url));

Deno.test("parseWorkerArgs: flags and their defaults", () => {
  const o = parseWorkerArgs([
    "--redis",
    "redis://10.0.0.5:6379",
    "--models",
    "/srv/models",
    "--lease",
    "12",
    "--affinity-wait",
    "0",
    "--max-redis-result",
    "4MiB",
    "--id",
    "gpu-a.1",
  ]);
  assertEquals(
    [o.url, o.modelsDir, o.leaseMs, o.affinityWaitMs, o.maxRedisBytes, o.id],
    ["redis://10.0.0.5:6379", "/srv/models", 12_000, 0, 4 * 1024 * 1024, "gpu-a.1"],
  );
  const d = parseWorkerArgs(["--redis", "redis://r", "--models", "m"]);
  assertEquals([d.leaseMs, d.affinityWaitMs, d.prefix, d.resultsDir], [
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  for (
    const [args, re] of [
      [["--models", "m"], /--redis: required/],
      [["--redis", "redis://r"], /--models: required/],
      [["--redis", "redis://r", "--models", "m", "--lease", "0"], /--lease: expected seconds/],
      [["--redis", "redis://r", "--models", "m", "--id", "a b"], /--id: expected/],
      [["--redis", "redis://r", "--models", "m", "--precision", "f8"], /--precision/],
      [["--redis", "redis://r", "--models", "m", "--max-redis-result", "lots"], /16MB/],
      [["--redis", "redis://r", "--models", "m", "--frobnicate"], /frobnicate/],
    ] as const
  ) {
    let msg = "";
    try {
      parseWorkerArgs([...args]);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(re.test(msg), `${args.join(" ")}: ${msg}`);
  }
});

async function runWorker(args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", WORKER, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
  }).output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr).trim() };
}

Deno.test("deno task worker: one-line errors and exit codes", async () => {
  const models = await Deno.makeTempDir();
  try {
    const bad = await runWorker(["--redis", "redis://127.0.0.1:1", "--models", models, "--x"]);
    assertEquals(bad.code, 2);
    assertEquals(bad.stderr.split("\n").length, 1, bad.stderr);
    const noModels = await runWorker([
      "--redis",
      "redis://127.0.0.1:1",
      "--models",
      "/nonexistent",
    ]);
    assertEquals(noModels.code, 1);
    assertEquals(noModels.stderr, `zoetrope worker: --models: "/nonexistent" is not a directory`);
    const noRedis = await runWorker(["--redis", "redis://127.0.0.1:1", "--models", models]);
    assertEquals(noRedis.code, 1);
    assertEquals(noRedis.stderr.split("\n").length, 1, noRedis.stderr);
    assert(
      noRedis.stderr.startsWith("zoetrope worker: cannot reach Redis at redis://127.0.0.1:1"),
      noRedis.stderr,
    );
  } finally {
    await Deno.remove(models, { recursive: true });
  }
});
