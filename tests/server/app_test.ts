import { DEMO_DEFAULTS } from "../../engine/request.ts";
/**
 * HTTP behaviour of createApp through app.request(), with a fake pipeline (no GPU): every route,
 * every 4xx, queueing, caching, cancellation, SSE and retention. The real engine runs in
 * main_test.ts.
 */

import { assert, assertEquals } from "../assert.ts";
import { type AppOptions, createApp, type ZoetropeApp } from "../../server/app.ts";
import type { JobView } from "../../server/queue.ts";
import { fakeLoader, type FakeOptions, makeModelsDir, SMALL_REQUEST } from "./fake_pipeline.ts";
import { join } from "node:path";
import { decodeGif } from "../decode.ts";
import { probeWebm } from "../engine/output/video_probe.ts";
import { FRAMES_KEPT } from "../../server/queue.ts";
import { Hono } from "npm:hono@^4.13.19";
import { writeTinyMotionModule } from "../weights/tiny_files.ts";

const SMALL = SMALL_REQUEST;

async function setup(options: Partial<AppOptions> & FakeOptions = {}) {
  const dir = await makeModelsDir();
  const fake = fakeLoader(options);
  const app = createApp({
    modelsDir: dir,
    loadPipeline: fake.load,
    adapterName: () => Promise.resolve("test adapter"),
    ...options,
  });
  return {
    app,
    dir,
    log: fake.log,
    async done() {
      await app.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function post(app: ZoetropeApp, body: unknown, headers: Record<string, string> = {}) {
  return app.request("/v1/animations", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function submit(app: ZoetropeApp, body: unknown = SMALL): Promise<string> {
  const r = await post(app, body);
  assertEquals(r.status, 202, await r.clone().text());
  return (await r.json()).id;
}

async function waitFor(app: ZoetropeApp, id: string, done = ["succeeded", "failed", "canceled"]) {
  const t0 = Date.now();
  for (;;) {
    const r = await app.request(`/v1/animations/${id}`);
    const job = await r.json() as JobView;
    if (done.includes(job.status)) return job;
    if (Date.now() - t0 > 5000) throw new Error(`job ${id} still ${job.status} after 5 s`);
    await new Promise((ok) => setTimeout(ok, 5));
  }
}

Deno.test("GET / serves the web page with its form", async () => {
  const t = await setup();
  try {
    const r = await t.app.request("/");
    assertEquals(r.status, 200);
    assert(r.headers.get("content-type")!.startsWith("text/html"));
    const html = await r.text();
    for (
      const id of [
        "prompt",
        "negativePrompt",
        "model",
        "motionModule",
        "loras",
        "steps",
        "progress",
        "result",
        "download",
      ]
    ) {
      assert(html.includes(`id="${id}"`), `page lacks #${id}`);
    }
    assert(html.includes("/v1/models") && html.includes("/events"), "page talks to the API");
  } finally {
    await t.done();
  }
});

Deno.test("GET /v1/models lists names, defaults, schedulers and limits, never paths", async () => {
  const t = await setup();
  try {
    const r = await t.app.request("/v1/models");
    assertEquals(r.status, 200);
    const text = await r.text();
    assert(!text.includes(t.dir), "listing leaks the models path");
    const m = JSON.parse(text);
    // The directory's models, then the built-in demo models.
    assertEquals(m.checkpoints.map((e: { name: string }) => e.name), [
      "sd15",
      "tiny",
      "demo",
      "demo:paper",
    ]);
    assertEquals(m.motionModules.map((e: { name: string }) => e.name), [
      "mm_v2",
      "tiny_motion",
      "demo",
    ]);
    assertEquals(m.loras.map((e: { name: string }) => e.name), ["lora_kohya", "lora_peft"]);
    // With no --default-model the demo is the default, at its own size, frames and steps.
    const d = m.defaults;
    assertEquals([d.model, d.motionModule, d.steps, d.frames, d.width, d.height], [
      "demo",
      "demo",
      DEMO_DEFAULTS.steps,
      DEMO_DEFAULTS.frames,
      DEMO_DEFAULTS.width,
      DEMO_DEFAULTS.height,
    ]);
    assertEquals(m.formats, ["gif", "apng", "png-zip", "mp4", "webm"]);
    assertEquals(m.limits.maxFrames, 128);
  } finally {
    await t.done();
  }
});

Deno.test("POST -> 202, job runs, GET shows progress and result, /result returns each format", async () => {
  const t = await setup();
  try {
    const magic: Record<string, [string, number[]]> = {
      gif: ["image/gif", [0x47, 0x49, 0x46, 0x38, 0x39, 0x61]],
      apng: ["image/apng", [0x89, 0x50, 0x4e, 0x47]],
      "png-zip": ["application/zip", [0x50, 0x4b, 0x03, 0x04]],
      mp4: ["video/mp4", [0x00, 0x00, 0x00, 0x18, 0x66, 0x74, 0x79, 0x70]], // size 24, "ftyp"
      webm: ["video/webm", [0x1a, 0x45, 0xdf, 0xa3]], // EBML
    };
    for (const [format, [type, head]] of Object.entries(magic)) {
      const r = await post(t.app, { ...SMALL, format });
      assertEquals(r.status, 202);
      const body = await r.json();
      assertEquals(Object.keys(body), ["id", "status"]);
      assertEquals(body.status, "queued");
      assertEquals(r.headers.get("location"), `/v1/animations/${body.id}`);
      const job = await waitFor(t.app, body.id);
      assertEquals(job.status, "succeeded", job.error ?? "");
      assertEquals([job.progress?.stage, job.progress?.step, job.progress?.total], [
        "output",
        1,
        1,
      ]);
      assertEquals(job.request.seed, 7);
      assertEquals(
        [
          job.result?.width,
          job.result?.height,
          job.result?.frames,
          job.result?.seed,
          job.result?.contentType,
        ],
        [64, 64, 4, 7, type],
      );
      const res = await t.app.request(job.result!.url);
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), type);
      const bytes = new Uint8Array(await res.arrayBuffer());
      assertEquals([...bytes.subarray(0, head.length)], head);
      assertEquals(Number(res.headers.get("content-length")), bytes.length);
      assertEquals(job.result!.bytes, bytes.length);
      assert(res.headers.get("content-disposition")!.startsWith('inline; filename="zoetrope-'));
      const dl = await t.app.request(`${job.result!.url}?download`);
      assert(dl.headers.get("content-disposition")!.startsWith("attachment;"));
      await dl.body?.cancel();
    }
    // The engine got exactly what was asked (names resolved to the linked fixture paths).
    assertEquals(t.log.generates[0], {
      prompt: SMALL.prompt,
      negativePrompt: "",
      frames: 4,
      width: 64,
      height: 64,
      steps: 3,
      guidance: 7.5,
      scheduler: "ddim",
      seed: 7,
      clipSkip: 1,
      fps: 8,
    });
    assertEquals(t.log.loads.length, 1, "one load for five jobs with the same models");
    assertEquals(t.log.loads[0].model, join(t.dir, "checkpoints", "tiny"));
    assertEquals(t.log.loads[0].motionModule, join(t.dir, "motion_modules", "tiny_motion"));
  } finally {
    await t.done();
  }
});

Deno.test("POST answers 400 naming the field for every kind of bad body", async () => {
  const t = await setup();
  try {
    const cases: [unknown, string][] = [
      ["{not json", "body"],
      ["[1]", "body"],
      [{}, "prompt"],
      [{ ...SMALL, prompt: "x".repeat(2001) }, "prompt"],
      [{ ...SMALL, bogus: true }, "bogus"],
      [{ ...SMALL, frames: 64 }, "frames"],
      [{ ...SMALL, width: 60 }, "width"],
      [{ ...SMALL, height: 4096 }, "height"],
      [{ ...SMALL, steps: 0 }, "steps"],
      [{ ...SMALL, guidance: "high" }, "guidance"],
      [{ ...SMALL, scheduler: "lms" }, "scheduler"],
      [{ ...SMALL, seed: 1.5 }, "seed"],
      [{ ...SMALL, clipSkip: 99 }, "clipSkip"],
      [{ ...SMALL, fps: -1 }, "fps"],
      [{ ...SMALL, format: "avi" }, "format"],
      [{ ...SMALL, model: "missing" }, "model"],
      [{ ...SMALL, model: "/etc/passwd" }, "model"],
      [{ ...SMALL, motionModule: "../loras/lora_kohya" }, "motionModule"],
      [{ ...SMALL, loras: [{ name: "nope", scale: 1 }] }, "loras[0].name"],
      [{ ...SMALL, loras: [{ name: "lora_kohya", scale: 99 }] }, "loras[0].scale"],
    ];
    for (const [body, field] of cases) {
      const r = await post(t.app, body);
      const j = await r.json();
      assertEquals(
        [r.status, j.field],
        [400, field],
        `${JSON.stringify(body).slice(0, 50)}: ${j.error}`,
      );
      assert(typeof j.error === "string" && j.error.startsWith(field), j.error);
    }
    assertEquals(t.log.loads.length, 0, "no bad request reaches the engine");
  } finally {
    await t.done();
  }
});

Deno.test("POST: bodies that are not UTF-8 JSON get 4xx naming the body, never a 500", async () => {
  const t = await setup();
  const utf8 = new Uint8Array(new TextEncoder().encode(JSON.stringify(SMALL)));
  const utf16 = (bigEndian: boolean, bom: boolean) => {
    const text = JSON.stringify(SMALL);
    const out = new Uint8Array((bom ? 2 : 0) + 2 * text.length);
    const view = new DataView(out.buffer);
    if (bom) view.setUint16(0, 0xfeff, !bigEndian);
    for (let i = 0; i < text.length; i++) {
      view.setUint16((bom ? 2 : 0) + 2 * i, text.charCodeAt(i), !bigEndian);
    }
    return out;
  };
  const withByte = (at: number, b: number) => {
    const out = utf8.slice();
    out[at] = b;
    return out;
  };
  try {
    const cases: [string, Uint8Array<ArrayBuffer>, string, number, RegExp][] = [
      [
        "lone 0xff",
        withByte(12, 0xff),
        "application/json",
        400,
        /^body: not valid UTF-8 \(first bad byte at offset 12\)$/,
      ],
      [
        "cut sequence",
        new Uint8Array([...utf8.subarray(0, 12), 0xe2, 0x82]),
        "application/json",
        400,
        /not valid UTF-8/,
      ],
      ["overlong", withByte(12, 0xc0), "application/json", 400, /not valid UTF-8/],
      [
        "UTF-16LE BOM",
        utf16(false, true),
        "application/json",
        400,
        /^body: looks like UTF-16LE \(with a BOM\) text; send JSON as UTF-8$/,
      ],
      ["UTF-16BE BOM", utf16(true, true), "application/json", 400, /UTF-16BE \(with a BOM\)/],
      ["UTF-16LE", utf16(false, false), "application/json", 400, /^body: looks like UTF-16LE text/],
      ["UTF-16BE", utf16(true, false), "application/json", 400, /^body: looks like UTF-16BE text/],
      [
        "charset",
        utf8,
        "application/json; charset=utf-16",
        415,
        /^body: charset "utf-16" is not supported/,
      ],
      [
        "latin1",
        withByte(12, 0xe9),
        "application/json; charset=ISO-8859-1",
        415,
        /charset "iso-8859-1"/,
      ],
    ];
    for (const [what, body, type, status, pattern] of cases) {
      const r = await t.app.request("/v1/animations", {
        method: "POST",
        headers: { "Content-Type": type },
        body,
      });
      const j = await r.json();
      assertEquals([r.status, j.field], [status, "body"], `${what}: ${j.error}`);
      assert(pattern.test(j.error), `${what}: ${j.error}`);
    }
    // A UTF-8 BOM and an explicit utf-8 charset are fine.
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8]);
    for (
      const [body, type] of [[bom, "application/json"], [
        utf8,
        "application/json; charset=UTF-8",
      ]] as const
    ) {
      const ok = await t.app.request("/v1/animations", {
        method: "POST",
        headers: { "Content-Type": type },
        body,
      });
      assertEquals(ok.status, 202, await ok.clone().text());
      await waitFor(t.app, (await ok.json()).id);
    }
  } finally {
    await t.done();
  }
});

Deno.test("POST: 415 without JSON content type, 413 over the size limit (declared or streamed)", async () => {
  const t = await setup({ maxBodyBytes: 1000 });
  try {
    const r1 = await t.app.request("/v1/animations", {
      method: "POST",
      body: JSON.stringify(SMALL),
    });
    assertEquals([r1.status, (await r1.json()).field], [415, "body"]);
    const r2 = await t.app.request("/v1/animations", {
      method: "POST",
      headers: { "Content-Type": "text/plain" },
      body: "{}",
    });
    assertEquals(r2.status, 415);
    await r2.body?.cancel();
    const big = JSON.stringify({ ...SMALL, prompt: "x".repeat(1200) });
    const r3 = await post(t.app, big, { "Content-Length": String(big.length) });
    assertEquals(r3.status, 413);
    assert((await r3.json()).error.includes("1000 bytes"));
    const chunks = [
      new TextEncoder().encode(big.slice(0, 600)),
      new TextEncoder().encode(big.slice(600)),
    ];
    const stream = new ReadableStream({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const r4 = await t.app.request("/v1/animations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: stream,
      duplex: "half",
    } as RequestInit);
    assertEquals(r4.status, 413);
    await r4.body?.cancel();
    // Just under the limit is fine.
    const ok = await post(t.app, { ...SMALL, prompt: "x".repeat(800) });
    assertEquals(ok.status, 202);
    await waitFor(t.app, (await ok.json()).id);
  } finally {
    await t.done();
  }
});

Deno.test("404 for unknown jobs on every job route and for unknown routes", async () => {
  const t = await setup();
  try {
    const id = "00000000-0000-0000-0000-000000000000";
    for (
      const [method, path] of [
        ["GET", `/v1/animations/${id}`],
        ["GET", `/v1/animations/${id}/events`],
        ["GET", `/v1/animations/${id}/result`],
        ["DELETE", `/v1/animations/${id}`],
        ["GET", "/v1/nothing"],
        ["PUT", "/v1/animations"],
      ]
    ) {
      const r = await t.app.request(path, { method });
      assertEquals(r.status, 404, `${method} ${path}`);
      assert(typeof (await r.json()).error === "string");
    }
  } finally {
    await t.done();
  }
});

Deno.test("409 for the result of an unfinished or failed job and for DELETE of a finished job", async () => {
  const t = await setup({ stepMs: 20, failOn: "explode" });
  try {
    const id = await submit(t.app, { ...SMALL, steps: 10 });
    const early = await t.app.request(`/v1/animations/${id}/result`);
    assertEquals(early.status, 409);
    assert(/it is (queued|running)$/.test((await early.json()).error));
    await waitFor(t.app, id);
    const del = await t.app.request(`/v1/animations/${id}`, { method: "DELETE" });
    assertEquals(del.status, 409);
    assert((await del.json()).error.includes("already succeeded"));
    const bad = await submit(t.app, { ...SMALL, prompt: "explode" });
    const job = await waitFor(t.app, bad);
    assertEquals([job.status, job.error], ["failed", "fake engine failure at step 1"]);
    const res = await t.app.request(`/v1/animations/${bad}/result`);
    assertEquals(res.status, 409);
    assert((await res.json()).error.includes("fake engine failure"));
  } finally {
    await t.done();
  }
});

Deno.test("429 with Retry-After when the queue is full; accepted again once it drains", async () => {
  const t = await setup({ queueSize: 2, stepMs: 10 });
  try {
    const a = await submit(t.app, { ...SMALL, steps: 5 });
    await new Promise((ok) => setTimeout(ok, 5)); // a leaves the queue for the worker
    const b = await submit(t.app), c = await submit(t.app);
    const full = await post(t.app, SMALL);
    assertEquals(full.status, 429);
    assert(Number(full.headers.get("retry-after")) >= 1, "Retry-After in seconds");
    assert((await full.json()).error.includes("queue full"));
    const viewC = await (await t.app.request(`/v1/animations/${c}`)).json();
    assertEquals([viewC.status, viewC.queuePosition], ["queued", 1]);
    for (const id of [a, b, c]) assertEquals((await waitFor(t.app, id)).status, "succeeded");
    assertEquals(t.log.maxConcurrent, 1, "one job at a time");
    assertEquals(t.log.generates.map((g) => g.steps), [5, 3, 3], "FIFO order");
    const again = await post(t.app, SMALL);
    assertEquals(again.status, 202);
    await waitFor(t.app, (await again.json()).id);
  } finally {
    await t.done();
  }
});

Deno.test("DELETE cancels a queued job at once and a running job between steps", async () => {
  const t = await setup({ stepMs: 25 });
  try {
    const running = await submit(t.app, { ...SMALL, steps: 40 });
    const queued = await submit(t.app);
    await waitFor(t.app, running, ["running"]);
    const q = await t.app.request(`/v1/animations/${queued}`, { method: "DELETE" });
    assertEquals(q.status, 200);
    assertEquals((await q.json()).status, "canceled");
    // Let a few steps run, then cancel.
    while (
      ((await (await t.app.request(`/v1/animations/${running}`)).json()).progress?.step ?? 0) < 3
    ) {
      await new Promise((ok) => setTimeout(ok, 5));
    }
    const t0 = performance.now();
    const r = await t.app.request(`/v1/animations/${running}`, { method: "DELETE" });
    assertEquals(r.status, 202);
    const mid = await r.json();
    assertEquals([mid.status, mid.cancelRequested], ["running", true]);
    const job = await waitFor(t.app, running);
    const ms = performance.now() - t0;
    assertEquals(job.status, "canceled");
    assert(ms < 500, `cancel took ${ms.toFixed(0)} ms (step = 25 ms)`);
    assert(t.log.stepsRun[0] < 10, `ran ${t.log.stepsRun[0]} of 40 steps`);
    assertEquals(t.log.generates.length, 1, "the canceled queued job never ran");
    // The worker goes on.
    assertEquals((await waitFor(t.app, await submit(t.app))).status, "succeeded");
  } finally {
    await t.done();
  }
});

Deno.test("/events streams status and progress as server-sent events and ends with the final status", async () => {
  const t = await setup({ stepMs: 5 });
  try {
    const id = await submit(t.app, { ...SMALL, steps: 6 });
    const r = await t.app.request(`/v1/animations/${id}/events`);
    assertEquals(r.status, 200);
    assert(r.headers.get("content-type")!.startsWith("text/event-stream"));
    const text = await r.text(); // ends when the job is final
    const events = text.trim().split("\n\n").map((chunk) => {
      const lines = chunk.split("\n");
      return {
        event: lines.find((l) => l.startsWith("event: "))!.slice(7),
        job: JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6)) as JobView,
      };
    });
    assertEquals(events[0].event, "status");
    const last = events.at(-1)!;
    assertEquals([last.event, last.job.status], ["status", "succeeded"]);
    const denoise = events.filter((e) =>
      e.event === "progress" && e.job.progress?.stage === "denoise"
    );
    assertEquals(denoise.map((e) => e.job.progress!.step), [1, 2, 3, 4, 5, 6]);
    assert(denoise.every((e) => e.job.progress!.total === 6));
    assertEquals(denoise.at(-1)!.job.progress!.etaMs, null, "no ETA after the last step");
    assert(denoise[0].job.progress!.etaMs! > 0, "ETA while steps remain");
    // A finished job's stream is its final status, once.
    const again = await (await t.app.request(`/v1/animations/${id}/events`)).text();
    assertEquals(again.split("\n\n").filter(Boolean).length, 1);
    assert(again.includes('"status":"succeeded"'));
  } finally {
    await t.done();
  }
});

Deno.test("a failing load or generation fails that job only; pipelines are cached per model set", async () => {
  const t = await setup({ failLoadOn: "sd15" });
  try {
    const bad = await waitFor(t.app, await submit(t.app, { ...SMALL, model: "sd15" }));
    assertEquals(bad.status, "failed");
    assert(bad.error!.includes("<models>/checkpoints/sd15.safetensors"), bad.error!);
    assert(!bad.error!.includes(t.dir), "error hides the models path");
    assertEquals((await waitFor(t.app, await submit(t.app))).status, "succeeded");
    assertEquals((await waitFor(t.app, await submit(t.app))).status, "succeeded");
    assertEquals(t.log.loads.length, 2, "sd15 attempt + tiny once");
    const withLora = await submit(t.app, { ...SMALL, loras: [{ name: "lora_kohya", scale: 0.8 }] });
    assertEquals((await waitFor(t.app, withLora)).status, "succeeded");
    assertEquals(t.log.loads.length, 3);
    assertEquals(t.log.loads[2].loras, [{
      path: join(t.dir, "loras", "lora_kohya.safetensors"),
      scale: 0.8,
    }]);
    assertEquals(t.log.disposed, 1, "the previous pipeline is released before loading another");
    const h = await (await t.app.request("/healthz")).json();
    assertEquals(h.loadedModels.map((m: { model: string; loras: unknown }) => [m.model, m.loras]), [
      ["tiny", [{ name: "lora_kohya", scale: 0.8 }]],
    ]);
  } finally {
    await t.done();
  }
});

Deno.test("single-file checkpoints load with their sidecar config and tokenizer", async () => {
  const t = await setup();
  try {
    const id = await submit(t.app, { ...SMALL, model: "sd15", motionModule: "mm_v2" });
    await waitFor(t.app, id);
    assertEquals(t.log.loads[0], {
      model: join(t.dir, "checkpoints", "sd15.safetensors"),
      motionModule: join(t.dir, "motion_modules", "mm_v2.safetensors"),
      modelConfig: join(t.dir, "checkpoints", "sd15.config"),
      tokenizer: join(t.dir, "checkpoints", "sd15.config", "tokenizer"),
    });
  } finally {
    await t.done();
  }
});

Deno.test("/healthz reports adapter, queue depth and loaded models", async () => {
  const t = await setup({ queueSize: 3 });
  try {
    const r = await t.app.request("/healthz");
    assertEquals(r.status, 200);
    const h = await r.json();
    assertEquals([h.status, h.adapter, h.queue.depth, h.queue.capacity, h.loadedModels], [
      "ok",
      "test adapter",
      0,
      3,
      [],
    ]);
    assertEquals(h.models, { checkpoints: 4, motionModules: 3, loras: 2 }, "with the demo's");
    await waitFor(t.app, await submit(t.app));
    const h2 = await (await t.app.request("/healthz")).json();
    assertEquals([h2.adapter, h2.queue.succeeded, h2.loadedModels[0].model], [
      "fake adapter",
      1,
      "tiny",
    ]);
    assertEquals(h2.loadedModels[0].info.maxFrames, 32);
  } finally {
    await t.done();
  }
});

Deno.test("bearer token guards every /v1 route but not / and /healthz", async () => {
  const t = await setup({ token: "s3cret" });
  try {
    const id = "00000000-0000-0000-0000-000000000000";
    for (
      const [method, path] of [
        ["GET", "/v1/models"],
        ["POST", "/v1/animations"],
        ["GET", `/v1/animations/${id}`],
        ["GET", `/v1/animations/${id}/events`],
        ["GET", `/v1/animations/${id}/result`],
        ["DELETE", `/v1/animations/${id}`],
      ]
    ) {
      for (const auth of [undefined, "Bearer wrong", "Basic s3cret", "Bearer s3cret2"]) {
        const r = await t.app.request(path, {
          method,
          headers: auth ? { Authorization: auth } : {},
        });
        assertEquals(r.status, 401, `${method} ${path} with ${auth}`);
        assert(r.headers.get("www-authenticate")!.startsWith("Bearer"));
        await r.body?.cancel();
      }
    }
    const ok = await t.app.request("/v1/models", { headers: { Authorization: "Bearer s3cret" } });
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
    const r = await post(t.app, SMALL, { Authorization: "Bearer s3cret" });
    assertEquals(r.status, 202);
    await r.body?.cancel();
    for (const path of ["/", "/healthz"]) {
      const open = await t.app.request(path);
      assertEquals(open.status, 200, path);
      await open.body?.cancel();
    }
  } finally {
    await t.done();
  }
});

Deno.test("CORS: preflight and headers for allowed origins only", async () => {
  const t = await setup({ cors: ["https://studio.example"], token: "t" });
  try {
    const pre = await t.app.request("/v1/animations", {
      method: "OPTIONS",
      headers: { Origin: "https://studio.example", "Access-Control-Request-Method": "POST" },
    });
    assertEquals(pre.status, 204, "preflight passes without a token");
    assertEquals(pre.headers.get("access-control-allow-origin"), "https://studio.example");
    assert(pre.headers.get("access-control-allow-headers")!.includes("Authorization"));
    const get = await t.app.request("/v1/models", {
      headers: { Origin: "https://studio.example", Authorization: "Bearer t" },
    });
    assertEquals(get.headers.get("access-control-allow-origin"), "https://studio.example");
    await get.body?.cancel();
    const other = await t.app.request("/v1/models", {
      headers: { Origin: "https://evil.example", Authorization: "Bearer t" },
    });
    assertEquals(other.headers.get("access-control-allow-origin"), null);
    await other.body?.cancel();
  } finally {
    await t.done();
  }
  const open = await setup({ cors: "*" });
  try {
    const r = await open.app.request("/healthz", { headers: { Origin: "https://a.example" } });
    assertEquals(r.headers.get("access-control-allow-origin"), "*");
    await r.body?.cancel();
  } finally {
    await open.done();
  }
});

Deno.test("finished results are kept for maxResults jobs and resultTtlMs", async () => {
  const t = await setup({ maxResults: 2 });
  try {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await submit(t.app));
    for (const id of ids) await waitFor(t.app, id);
    const first = await t.app.request(`/v1/animations/${ids[0]}/result`);
    assertEquals(first.status, 404, "oldest result dropped");
    await first.body?.cancel();
    for (const id of ids.slice(1)) {
      const r = await t.app.request(`/v1/animations/${id}/result`);
      assertEquals(r.status, 200);
      await r.body?.cancel();
    }
  } finally {
    await t.done();
  }
  const short = await setup({ resultTtlMs: 50 });
  try {
    const id = await submit(short.app);
    const job = await waitFor(short.app, id);
    assertEquals(Date.parse(job.result!.expiresAt) - Date.parse(job.finishedAt!), 50);
    await new Promise((ok) => setTimeout(ok, 80));
    const r = await short.app.request(`/v1/animations/${id}`);
    assertEquals(r.status, 404, "expired");
    await r.body?.cancel();
  } finally {
    await short.done();
  }
});

Deno.test("frames above the chosen motion module's limit get 400 naming frames (v1 = 24)", async () => {
  const t = await setup();
  try {
    await writeTinyMotionModule(join(t.dir, "motion_modules", "mm_v1.safetensors"), {
      version: "v1",
      format: "safetensors",
    });
    const body = { ...SMALL, motionModule: "mm_v1", frames: 25, model: "tiny" };
    const r = await post(t.app, body);
    assertEquals(r.status, 400);
    const err = await r.json();
    assertEquals(err.field, "frames");
    assert(/mm_v1.*24/.test(err.error), err.error);
    assert(/set contextLength/.test(err.error), err.error);
    // The v2 module of the same request allows it.
    const ok = await post(t.app, { ...body, motionModule: "mm_v2" });
    assertEquals(ok.status, 202, await ok.clone().text());
    await waitFor(t.app, (await ok.json()).id);
    // Longer with context windows; a window longer than the module is refused.
    const long = await post(t.app, { ...body, frames: 40, contextLength: 16, contextOverlap: 4 });
    assertEquals(long.status, 202, await long.clone().text());
    const job = await waitFor(t.app, (await long.json()).id);
    assertEquals(job.status, "succeeded", job.error ?? "");
    assertEquals([job.request.contextLength, job.request.contextOverlap], [16, 4]);
    const wide = await post(t.app, { ...body, frames: 40, contextLength: 25 });
    assertEquals(wide.status, 400);
    const wideErr = await wide.json();
    assertEquals(wideErr.field, "contextLength");
    assert(/mm_v1.*\(24\)/.test(wideErr.error), wideErr.error);
  } finally {
    await t.done();
  }
});

Deno.test("mounted under a prefix: Location, result URLs and events carry it; the page works there", async () => {
  const t = await setup();
  try {
    const outer = new Hono().route("/zoetrope", t.app);
    const r = await outer.request("/zoetrope/v1/animations", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(SMALL),
    });
    assertEquals(r.status, 202, await r.clone().text());
    const { id } = await r.json();
    assertEquals(r.headers.get("location"), `/zoetrope/v1/animations/${id}`);
    let job: JobView;
    for (const t0 = Date.now();;) {
      job = await (await outer.request(`/zoetrope/v1/animations/${id}`)).json();
      if (job.status === "succeeded" || job.status === "failed") break;
      assert(Date.now() - t0 < 5000, `job still ${job.status}`);
      await new Promise((ok) => setTimeout(ok, 5));
    }
    assertEquals(job.status, "succeeded", job.error ?? "");
    assertEquals(job.result?.url, `/zoetrope/v1/animations/${id}/result`);
    const bytes = new Uint8Array(await (await outer.request(job.result!.url)).arrayBuffer());
    assertEquals(String.fromCharCode(...bytes.subarray(0, 6)), "GIF89a");
    const events = await (await outer.request(`/zoetrope/v1/animations/${id}/events`)).text();
    assert(events.includes(`"url":"/zoetrope/v1/animations/${id}/result"`), events.slice(0, 300));
    // At the root nothing changes.
    const root = await (await t.app.request(`/v1/animations/${id}`)).json() as JobView;
    assertEquals(root.result?.url, `/v1/animations/${id}/result`);
    const page = await (await outer.request("/zoetrope")).text();
    assert(page.includes('id="prompt"'), "the page is served at the prefix");
  } finally {
    await t.done();
  }
});

Deno.test("a running job shows a live preview (GIF at 1/8 size) after each step; none once finished", async () => {
  const t = await setup({ stepMs: 30 });
  try {
    const id = await submit(t.app, { ...SMALL, steps: 30 });
    let job = await waitFor(t.app, id, ["running"]);
    const before = await t.app.request(`/v1/animations/${id}/preview`);
    if (before.status === 404) {
      assertEquals((await before.json()).error.includes("has no preview"), true);
    } else await before.body?.cancel();
    while (!job.preview || job.preview.step < 2) {
      await new Promise((ok) => setTimeout(ok, 10));
      job = await (await t.app.request(`/v1/animations/${id}`)).json();
    }
    assertEquals(job.preview.total, 30);
    assert(job.preview.url.startsWith(`/v1/animations/${id}/preview?step=`), job.preview.url);
    const r = await t.app.request(job.preview.url);
    assertEquals([r.status, r.headers.get("content-type"), r.headers.get("cache-control")], [
      200,
      "image/gif",
      "no-store",
    ]);
    const step = Number(r.headers.get("x-preview-step"));
    assert(step >= 2, `preview step ${step}`);
    const gif = decodeGif(new Uint8Array(await r.arrayBuffer()));
    assertEquals([gif.width, gif.height, gif.frames.length], [8, 8, 4], "64x64 / 8, 4 frames");
    // The preview is the step's own: the fake engine draws step k in grey 10k.
    assertEquals(gif.frames[0][0], 10 * step);
    const done = await waitFor(t.app, id);
    assertEquals([done.status, done.preview], ["succeeded", null]);
    assertEquals((await t.app.request(`/v1/animations/${id}/preview`)).status, 404);
    assertEquals((await t.app.request(`/v1/animations/nope/preview`)).status, 404);
  } finally {
    await t.done();
  }
});

Deno.test("GET /v1/animations lists the server's jobs newest first, by status, limited", async () => {
  const t = await setup({ queueSize: 8, failOn: "explode" });
  try {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await submit(t.app, { ...SMALL, prompt: `clip ${i}` }));
      await waitFor(t.app, ids[i]);
    }
    const failing = await submit(t.app, { ...SMALL, prompt: "explode" });
    await waitFor(t.app, failing);
    const all = await (await t.app.request("/v1/animations")).json();
    assertEquals(all.jobs.map((j: JobView) => j.id), [failing, ids[2], ids[1], ids[0]]);
    assertEquals(all.jobs[0].status, "failed");
    assertEquals(all.jobs[0].id, failing, "newest first");
    const ok = await (await t.app.request("/v1/animations?status=succeeded&limit=2")).json();
    assertEquals(ok.jobs.map((j: JobView) => j.request.prompt), ["clip 2", "clip 1"]);
    assert(ok.jobs.every((j: JobView) => j.result?.url), "finished jobs carry their result");
    for (
      const [q, field] of [["status=done", "status"], ["limit=0", "limit"], ["limit=x", "limit"]]
    ) {
      const r = await t.app.request(`/v1/animations?${q}`);
      assertEquals([r.status, (await r.json()).field], [400, field], q);
    }
  } finally {
    await t.done();
  }
});

Deno.test("/result?format= re-encodes a result in another format while its frames are kept", async () => {
  const t = await setup({ queueSize: 16, failOn: "explode" });
  try {
    const first = await submit(t.app, { ...SMALL, format: "gif" });
    await waitFor(t.app, first);
    const own = new Uint8Array(
      await (await t.app.request(`/v1/animations/${first}/result`)).arrayBuffer(),
    );
    const same = await t.app.request(`/v1/animations/${first}/result?format=gif`);
    assertEquals(new Uint8Array(await same.arrayBuffer()), own, "its own format: the same bytes");
    const webm = await t.app.request(`/v1/animations/${first}/result?format=webm&download`);
    assertEquals([webm.status, webm.headers.get("content-type")], [200, "video/webm"]);
    assert(webm.headers.get("content-disposition")!.endsWith('.webm"'));
    assertEquals(probeWebm(new Uint8Array(await webm.arrayBuffer())).frameCount, 4);
    const bad = await t.app.request(`/v1/animations/${first}/result?format=bmp`);
    assertEquals([bad.status, (await bad.json()).field], [400, "format"]);
    // FRAMES_KEPT newer results: the first one's frames are gone, its own bytes stay.
    for (let i = 0; i < FRAMES_KEPT; i++) await waitFor(t.app, await submit(t.app));
    const gone = await t.app.request(`/v1/animations/${first}/result?format=mp4`);
    assertEquals(gone.status, 409);
    assert(/frames are kept for the newest 8 results/.test((await gone.json()).error));
    const still = await t.app.request(`/v1/animations/${first}/result?format=webm`);
    assertEquals(still.status, 200, "an encoding already made is kept");
    await still.body?.cancel();
    const plain = await t.app.request(`/v1/animations/${first}/result`);
    assertEquals(plain.status, 200);
    await plain.body?.cancel();
  } finally {
    await t.done();
  }
});
