/**
 * `deno task serve` runs the server with least privilege (server/launch.ts): the flags it
 * computes, a process holding exactly those flags that serves requests yet cannot read outside
 * its folders, write, run programs or reach other hosts, and the launcher starting the server.
 */

import { assert, assertEquals } from "../assert.ts";
import { servePermissions, workerPermissions } from "../../server/launch.ts";
import { redisTest } from "./redis_server.ts";
import { makeModelsDir } from "./fake_pipeline.ts";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../server/main.ts", import.meta.url));
const LAUNCH = fileURLToPath(new URL("../../server/launch.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../../deno.json", import.meta.url));
const ENV_VIEW = fileURLToPath(new URL("../../server/env_view.ts", import.meta.url));
const SCHEMA = fileURLToPath(new URL("../../server/redis/schema.ts", import.meta.url));

Deno.test("servePermissions: read the models folder and where its links lead, net to its own host only", async () => {
  const dir = await makeModelsDir();
  try {
    const flags = await servePermissions(["--models", dir, "--port", "8123", "--host", "0.0.0.0"]);
    const read = flags.find((f) => f.startsWith("--allow-read="))!.slice(13).split(",");
    assertEquals(read[0], resolve(dir));
    // makeModelsDir links the tiny fixture's folders in: their real places are readable too.
    const fixture = await Deno.realPath(join(dir, "checkpoints", "tiny"));
    assert(read.includes(fixture), `${fixture} in ${read}`);
    assert(flags.includes("--allow-net=0.0.0.0:8123"), flags.join(" "));
    assert(flags.includes("--allow-sys=systemMemoryInfo"));
    for (const f of flags) {
      assert(!/^--allow-(write|run|ffi|all)|^-A$/.test(f), `no ${f}`);
    }
    const env = flags.find((f) => f.startsWith("--allow-env="))!;
    assert(env.includes("ZOETROPE_TOKEN"), env);
    const custom = await servePermissions(["--models", dir, "--token-env", "MY_TOKEN"]);
    assert(
      custom.some((f) => f.startsWith("--allow-env=") && f.includes("MY_TOKEN")),
      custom.join(" "),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "a server holding only those permissions serves, but cannot read outside, write, run or reach out",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await makeModelsDir();
    const outside = await Deno.makeTempFile({ prefix: "zoetrope_secret_" });
    await Deno.writeTextFile(outside, "secret");
    const script = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(
        script,
        `
import { serve } from ${JSON.stringify(MAIN)};
const s = await serve({ modelsDir: ${JSON.stringify(dir)} }, { port: 0, quiet: true });
const models = await (await fetch(s.url + "/v1/models")).json();
const tryIt = async (f) => {
  try { await f(); return "allowed"; } catch (e) { return e.name + ": " + e.message.split("\\n")[0]; }
};
const out = {
  checkpoints: models.checkpoints.map((m) => m.name),
  readOutside: await tryIt(() => Deno.readTextFile(${JSON.stringify(outside)})),
  readModels: await tryIt(() => Deno.readDir(${
          JSON.stringify(dir)
        })[Symbol.asyncIterator]().next()),
  write: await tryIt(() => Deno.writeTextFile(${JSON.stringify(join(dir, "x.txt"))}, "x")),
  run: await tryIt(() => new Deno.Command("true").output()),
  otherHost: await tryIt(() => fetch("http://198.51.100.7:8080/")),
  env: await tryIt(() => Deno.env.get("PATH")),
};
await s.shutdown();
console.log(JSON.stringify(out));
`,
      );
      const flags = await servePermissions(["--models", dir, "--port", "0"]);
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--config", CONFIG, ...flags, script],
        stdout: "piped",
        stderr: "piped",
        env: { XDG_RUNTIME_DIR: "/tmp" },
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert(r.success, `the restricted server script failed: ${stderr.slice(-800)}`);
      const out = JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!);
      assert(out.checkpoints.includes("tiny"), `it serves its models: ${out.checkpoints}`);
      assertEquals(out.readModels, "allowed");
      for (const what of ["readOutside", "write", "run", "otherHost", "env"]) {
        // Refused by a permission check (fetch wraps it in a TypeError), not by the network.
        assert(/NotCapable|Requires \w+ access/.test(out[what]), `${what}: ${out[what]}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(outside);
      await Deno.remove(script);
    }
  },
});

Deno.test({
  name:
    "deno task serve's launcher starts the restricted server, which answers and stops on SIGTERM",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await makeModelsDir();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", LAUNCH, "--models", dir, "--port", "0"],
      stdout: "piped",
      stderr: "piped",
      env: { XDG_RUNTIME_DIR: "/tmp" },
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      const deadline = Date.now() + 30_000;
      let url: string | null = null;
      while (!url && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
        url = /serving (http:\/\/[\d.:]+)/.exec(text)?.[1] ?? null;
      }
      assert(url, `the server printed no address: ${text}`);
      const health = await (await fetch(`${url}/healthz`)).json();
      assertEquals(health.status, "ok");
      assert(health.models.checkpoints >= 3, `checkpoints ${health.models.checkpoints}`);
      child.kill("SIGTERM");
      const status = await child.status;
      assert(
        status.code === 0 || status.signal === "SIGTERM" || status.code === 143,
        `exit ${status.code}`,
      );
      reader.cancel().catch(() => {});
    } finally {
      // SIGTERM first: the launcher forwards it to the server (a SIGKILL would orphan it).
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await Promise.race([child.status, new Promise((ok) => setTimeout(ok, 5000))]);
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("workerPermissions: read the models, write only the results folder, net to Redis only", async () => {
  const dir = await makeModelsDir();
  const results = await Deno.makeTempDir({ prefix: "zoetrope_results_" });
  try {
    const flags = await workerPermissions([
      "--redis",
      "redis://10.1.2.3:6380",
      "--models",
      dir,
      "--results",
      results,
    ]);
    const read = flags.find((f) => f.startsWith("--allow-read="))!.slice(13).split(",");
    assertEquals(read[0], resolve(dir));
    assert(read.includes(resolve(results)), "reads its results folder");
    assert(flags.includes(`--allow-write=${resolve(results)}`), flags.join(" "));
    assert(flags.includes("--allow-net=10.1.2.3:6380"), flags.join(" "));
    assert(flags.includes("--allow-sys=systemMemoryInfo,hostname"), flags.join(" "));
    for (const f of flags) assert(!/^--allow-(run|ffi|all)|^-A$/.test(f), `no ${f}`);
    const plain = await workerPermissions(["--redis", "redis://cache", "--models", dir]);
    assert(plain.includes("--allow-net=cache:6379"), "default Redis port");
    assert(!plain.some((f) => f.startsWith("--allow-write")), "no write without --results");
    const api = await servePermissions([
      "--models",
      dir,
      "--port",
      "8123",
      "--redis",
      "redis://10.1.2.3:6380",
    ]);
    assert(api.includes("--allow-net=127.0.0.1:8123,10.1.2.3:6380"), api.join(" "));
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(results, { recursive: true });
  }
});

redisTest(
  "a worker holding only those permissions reaches Redis and its folders, nothing else",
  async (url) => {
    const dir = await makeModelsDir();
    const results = await Deno.makeTempDir({ prefix: "zoetrope_results_" });
    const outside = await Deno.makeTempFile({ prefix: "zoetrope_secret_" });
    const script = await Deno.makeTempFile({ suffix: ".ts" });
    try {
      await Deno.writeTextFile(
        script,
        `
import ${JSON.stringify(ENV_VIEW)};
import { connectRedis } from ${JSON.stringify(SCHEMA)};
const tryIt = async (f) => {
  try { await f(); return "allowed"; } catch (e) { return e.name + ": " + e.message.split("\\n")[0]; }
};
const out = {
  redis: await tryIt(async () => { const r = await connectRedis(${
          JSON.stringify(url)
        }); await r.ping(); r.disconnect(); }),
  readModels: await tryIt(() => Deno.readDir(${
          JSON.stringify(dir)
        })[Symbol.asyncIterator]().next()),
  writeResults: await tryIt(() => Deno.writeTextFile(${
          JSON.stringify(join(results, "r.gif"))
        }, "x")),
  readOutside: await tryIt(() => Deno.readTextFile(${JSON.stringify(outside)})),
  writeModels: await tryIt(() => Deno.writeTextFile(${JSON.stringify(join(dir, "x.txt"))}, "x")),
  run: await tryIt(() => new Deno.Command("true").output()),
  otherHost: await tryIt(() => fetch("http://198.51.100.7:8080/")),
};
console.log(JSON.stringify(out));
`,
      );
      const flags = await workerPermissions([
        "--redis",
        url,
        "--models",
        dir,
        "--results",
        results,
      ]);
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--config", CONFIG, ...flags, script],
        stdout: "piped",
        stderr: "piped",
        env: { XDG_RUNTIME_DIR: "/tmp" },
      }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert(r.success, `the restricted worker script failed: ${stderr.slice(-800)}`);
      const out = JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!);
      for (const what of ["redis", "readModels", "writeResults"]) {
        assertEquals(
          out[what],
          "allowed",
        );
      }
      for (const what of ["readOutside", "writeModels", "run", "otherHost"]) {
        assert(/NotCapable|Requires \w+ access/.test(out[what]), `${what}: ${out[what]}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(results, { recursive: true });
      await Deno.remove(outside);
      await Deno.remove(script);
    }
  },
);
