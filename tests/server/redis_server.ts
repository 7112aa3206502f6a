/**
 * A real Redis for the scale-out tests: the one CI starts (`ZOETROPE_TEST_REDIS`, see .ci/run),
 * else a `redis-server` this helper starts on a free loopback port. Under CI=true a missing Redis
 * fails the tests; elsewhere they are ignored when no redis-server is installed.
 */

import { Redis } from "ioredis";

export const isCI = Deno.env.get("CI") === "true";
const fromEnv = Deno.env.get("ZOETROPE_TEST_REDIS");

function hasRedisServer(): boolean {
  try {
    const out = new Deno.Command("redis-server", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
    return out.success;
  } catch {
    return false;
  }
}

/** Whether the tests can get a Redis. */
export const redisAvailable = fromEnv !== undefined || hasRedisServer();

let started: Promise<string> | null = null;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The Redis URL (starting a private redis-server once per test process when needed). */
export function redisUrl(): Promise<string> {
  if (fromEnv) return Promise.resolve(fromEnv);
  return started ??= (async () => {
    const port = freePort();
    const child = new Deno.Command("redis-server", {
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    globalThis.addEventListener("unload", () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
    });
    const url = `redis://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      const r = new Redis(url, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      r.on("error", () => {});
      try {
        await r.connect();
        await r.ping();
        r.disconnect();
        return url;
      } catch {
        r.disconnect();
        await new Promise((ok) => setTimeout(ok, 50));
      }
    }
    throw new Error(`redis-server did not answer on port ${port}`);
  })();
}

/** A fresh key prefix: tests sharing one Redis never see each other's jobs. */
export function testPrefix(): string {
  return `zt-test-${crypto.randomUUID().slice(0, 8)}:`;
}

/** Deno.test that needs Redis: fails under CI=true without one, ignored elsewhere. */
export function redisTest(name: string, fn: (url: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !redisAvailable && !isCI,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      if (!redisAvailable) {
        throw new Error(
          `${name}: no Redis under CI=true (set ZOETROPE_TEST_REDIS or install redis-server)`,
        );
      }
      await fn(await redisUrl());
    },
  });
}
