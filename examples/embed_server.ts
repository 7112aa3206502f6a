/**
 * Embeds Zoetrope's HTTP API in another Hono server: the outer app has its own routes and
 * middleware (here a request log and /api/hello) and mounts the animation service at the root
 * (web page at /, API at /v1/animations, health at /healthz). Mounting under a prefix works too
 * (`app.route("/zoetrope", zoetrope)`): the page, `Location` headers and result URLs follow it.
 *
 * ```sh
 * # models/ holds checkpoints/, motion_modules/ and loras/ (ComfyUI layout).
 * deno run -A examples/embed_server.ts --models ./models --port 8000
 * curl -X POST localhost:8000/v1/animations -H 'content-type: application/json' \
 *   -d '{"prompt": "a koi pond", "frames": 16, "format": "gif"}'
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { Hono } from "hono";
import { createApp } from "@zoetrope/animatediff";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "./models" },
    port: { type: "string", default: "8000" },
  },
});

const zoetrope = createApp({
  modelsDir: flags.models,
  queueSize: 4,
  token: Deno.env.get("ZOETROPE_TOKEN"), // optional bearer token for /v1/*
});

const app = new Hono();
app.use(async (c, next) => {
  const t0 = performance.now();
  await next();
  console.log(
    `${c.req.method} ${c.req.path} ${c.res.status} ${Math.round(performance.now() - t0)} ms`,
  );
});
app.get("/api/hello", (c) => c.json({ hello: "from the outer app" }));
app.route("/", zoetrope); // routes registered above take precedence

const server = Deno.serve({ port: Number(flags.port) }, app.fetch);
Deno.addSignalListener("SIGINT", async () => {
  await zoetrope.close(); // cancels jobs and frees GPU memory
  await server.shutdown();
});
