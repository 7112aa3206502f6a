/**
 * Browser test of the web page: headless Chromium (Debian's /usr/bin/chromium, or
 * $CHROMIUM_PATH), driven over the Chrome DevTools Protocol through Deno's WebSocket, fills and
 * submits the form served by the real server (real engine, tiny fixture model) and waits for
 * the finished animation to be shown and offered for download.
 * Outside CI a missing chromium or WebGPU adapter skips visibly (ignored); under CI=true it fails.
 */

import { assert, assertEquals } from "../assert.ts";
import { hasAdapter, isCI } from "../gpu.ts";
import { Hono } from "npm:hono@^4.13.19";
import { createApp } from "../../server/app.ts";
import { serve } from "../../server/main.ts";
import { fakeLoader, makeModelsDir, SMALL_REQUEST } from "../server/fake_pipeline.ts";
import { type Browser, type Cdp, CHROMIUM, hasChromium, openBrowser } from "./chromium.ts";

/**
 * Loads the page at `pageUrl`, fills and submits the form as a user would, and checks the
 * finished animation and its download.
 */
async function submitAndCheck(cdp: Cdp, pageUrl: string): Promise<void> {
  await cdp.send("Page.navigate", { url: pageUrl });
  const waitUntil = async <T>(expr: string, what: string, ms: number): Promise<T> => {
    const t0 = Date.now();
    for (;;) {
      const v = await cdp.eval<T>(expr).catch(() => null);
      if (v) return v;
      if (Date.now() - t0 > ms) {
        const state = await cdp.eval<string>(
          `document.getElementById("status")?.textContent + " | " + document.getElementById("error")?.textContent`,
        ).catch((e) => String(e));
        throw new Error(`timed out waiting for ${what} (page: ${state})`);
      }
      await new Promise((ok) => setTimeout(ok, 50));
    }
  };
  await waitUntil<boolean>(
    `location.href === ${JSON.stringify(pageUrl)} && document.readyState === "complete"`,
    `the page at ${pageUrl}`,
    10_000,
  );
  // The pickers fill from GET /v1/models.
  const options = await waitUntil<string[]>(
    `(() => { const o = [...(document.getElementById("model")?.options ?? [])].map((x) => x.value);
              return o.length ? o : null; })()`,
    "the model picker",
    10_000,
  );
  // The directory's models, then the built-in demo models.
  assertEquals(options, ["sd15", "tiny", "demo", "demo:paper"]);
  assertEquals(
    await cdp.eval<string[]>(
      `[...document.getElementById("motionModule").options].map((x) => x.value)`,
    ),
    ["mm_v2", "tiny_motion", "demo"],
  );
  // Fill the form as a user would: type the prompt, pick models, set numbers.
  await cdp.eval(
    `(() => { const p = document.getElementById("prompt"); p.value = ""; p.focus(); })()`,
  );
  await cdp.send("Input.insertText", { text: "a lighthouse in a storm, pixel art" });
  await cdp.eval(`(() => {
    const set = (id, v) => { const el = document.getElementById(id); el.value = v;
      el.dispatchEvent(new Event("change", { bubbles: true })); };
    set("model", "tiny"); set("motionModule", "tiny_motion");
    set("frames", "4"); set("width", "64"); set("height", "64"); set("steps", "2");
    set("seed", "5"); set("format", "gif");
    return true;
  })()`);
  await cdp.eval(`document.getElementById("submit").click()`);
  const done = await waitUntil<
    { status: string; w: number; h: number; href: string; name: string; text: string }
  >(
    `(() => {
      const img = document.getElementById("result"), st = document.getElementById("status");
      if (st.dataset.status === "failed") return { status: "failed", text: document.getElementById("error").textContent };
      if (!(img.complete && img.naturalWidth > 0 && st.dataset.status === "succeeded")) return null;
      const a = document.getElementById("download");
      return { status: st.dataset.status, w: img.naturalWidth, h: img.naturalHeight, href: a.href,
               name: a.download, text: st.textContent, progress: document.getElementById("progress").value };
    })()`,
    "the finished animation",
    40_000,
  );
  assertEquals(done.status, "succeeded", done.text);
  assertEquals([done.w, done.h], [64, 64]);
  assert(done.href.startsWith("blob:"), `download link ${done.href}`);
  assert(/^zoetrope-[0-9a-f]{8}\.gif$/.test(done.name), `download name ${done.name}`);
  assert(/seed 5 · 64x64 · 4 frames/.test(done.text), done.text);
  assertEquals(await cdp.eval<number>(`document.getElementById("progress").value`), 1);
  // The offered file is a GIF.
  const head = await cdp.eval<number[]>(
    `fetch(document.getElementById("download").href).then((r) => r.arrayBuffer())
       .then((b) => [...new Uint8Array(b).slice(0, 6)])`,
  );
  assertEquals(String.fromCharCode(...head), "GIF89a");
}

/**
 * Submits again with the generation controls set (prompt travel, FreeInit, motion scale and
 * effect, a context window with pyramid weights and FreeNoise) and WebM output: the job the
 * server holds carries each control, and the page plays the result in its <video>.
 */
async function submitControls(cdp: Cdp, pageUrl: string): Promise<void> {
  await cdp.eval(`(() => {
    const set = (id, v) => { const el = document.getElementById(id); el.value = v;
      el.dispatchEvent(new Event("change", { bubbles: true })); };
    set("promptMap", "0: a red circle\\n5: a blue circle");
    set("frames", "6"); set("steps", "2"); set("seed", "8");
    set("freeInit", "2"); set("freeInitMethod", "gaussian");
    set("motionScale", "1.2"); set("motionEffect", "0.5");
    set("contextLength", "4"); set("contextOverlap", "2"); set("contextWeighting", "pyramid");
    document.getElementById("freeNoise").checked = true;
    set("format", "webm");
    return true;
  })()`);
  await cdp.eval(`document.getElementById("submit").click()`);
  const t0 = Date.now();
  let state: { status: string; text: string; id: string; w: number; ready: number } | null = null;
  while (Date.now() - t0 < 60_000) {
    state = await cdp.eval(`(() => {
      const v = document.getElementById("resultVideo"), st = document.getElementById("status");
      return { status: st.dataset.status, text: st.textContent + " " +
        document.getElementById("error").textContent, id: document.getElementById("jobId").textContent,
        w: v.videoWidth, ready: v.readyState, hidden: v.classList.contains("hidden") };
    })()`);
    if (state?.status === "failed") break;
    if (state?.status === "succeeded" && state.ready >= 2) break;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  assertEquals(state?.status, "succeeded", `${pageUrl}: ${state?.text}`);
  assertEquals(state!.w, 64, `the WebM plays in the page's <video>: ${JSON.stringify(state)}`);
  assertEquals(
    await cdp.eval<boolean>(`document.getElementById("result").classList.contains("hidden")`),
    true,
  );
  const job = await cdp.eval<{ request: Record<string, unknown>; result: { contentType: string } }>(
    `fetch("v1/animations/${state!.id}").then((r) => r.json())`,
  );
  assertEquals(job.result.contentType, "video/webm");
  const r = job.request;
  assertEquals(r.promptMap, { 0: "a red circle", 5: "a blue circle" });
  assertEquals((r.freeInit as { iterations: number; method: string }).iterations, 2);
  assertEquals((r.freeInit as { iterations: number; method: string }).method, "gaussian");
  assertEquals([r.motionScale, r.motionEffect], [1.2, 0.5]);
  assertEquals([r.contextLength, r.contextOverlap, r.contextWeighting, r.freeNoise], [
    4,
    2,
    "pyramid",
    true,
  ]);
  // The other formats are offered, and the server converts on request.
  const others = await cdp.eval<string[]>(
    `[...document.querySelectorAll("#otherFormats button")].map((b) => b.dataset.format)`,
  );
  assertEquals(others, ["gif", "apng", "png-zip", "mp4"]);
  const mp4Type = await cdp.eval<string>(
    `fetch(${JSON.stringify(`v1/animations/${state!.id}/result?format=mp4`)})
       .then((r) => r.headers.get("content-type"))`,
  );
  assertEquals(mp4Type, "video/mp4");
  // History: this server's finished animations, newest first; "reuse" refills the form.
  let history: string[] = [];
  for (let i = 0; i < 100 && history.length < 2; i++) {
    history = await cdp.eval<string[]>(
      `[...document.querySelectorAll("#historyList li")].map((li) => li.dataset.id)`,
    );
    await new Promise((ok) => setTimeout(ok, 50));
  }
  assertEquals(history.length, 2, `history: ${history}`);
  assertEquals(history[0], state!.id, "newest first");
  const restored = await cdp.eval<Record<string, string>>(`(() => {
    document.querySelectorAll("#historyList li")[1].querySelector(".reuse").click();
    const v = (id) => document.getElementById(id).value;
    return { format: v("format"), frames: v("frames"), seed: v("seed"), steps: v("steps"),
             promptMap: v("promptMap"), freeInit: v("freeInit"),
             prompt: v("prompt"), freeNoise: String(document.getElementById("freeNoise").checked) };
  })()`);
  assertEquals(restored, {
    format: "gif",
    frames: "4",
    seed: "5",
    steps: "2",
    promptMap: "",
    freeInit: "",
    prompt: "a lighthouse in a storm, pixel art",
    freeNoise: "false",
  });
}

Deno.test({
  name: "web page: submit the form in headless Chromium (at / and mounted under a prefix)",
  ignore: !isCI && (!hasChromium || !hasAdapter),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!hasChromium) throw new Error(`chromium not found at ${CHROMIUM} under CI=true`);
    if (!hasAdapter) throw new Error("no WebGPU adapter found under CI=true");
    const dir = await makeModelsDir();
    const server = await serve({ modelsDir: dir }, { port: 0, quiet: true });
    const inner = createApp({ modelsDir: dir });
    const outer = new Hono().route("/zoetrope", inner);
    const mountedServer = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen: () => {} },
      outer.fetch,
    );
    const mounted = { url: `http://127.0.0.1:${mountedServer.addr.port}` };
    let browser: Browser | null = null;
    try {
      browser = await openBrowser();
      const { cdp } = browser;
      await submitAndCheck(cdp, `${server.url}/`);
      await submitControls(cdp, `${server.url}/`);
      // Mounted under a prefix by an embedding app: every request stays under it.
      await submitAndCheck(cdp, `${mounted.url}/zoetrope`);
      assertEquals(cdp.exceptions, [], "no script errors on the page");
    } finally {
      await browser?.close();
      await server.shutdown();
      await inner.close();
      await mountedServer.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "web page: a waiting job shows its place in the queue as it moves up",
  ignore: !isCI && !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!hasChromium) throw new Error(`chromium not found at ${CHROMIUM} under CI=true`);
    const dir = await makeModelsDir();
    const { load } = fakeLoader({ stepMs: 150 });
    const app = createApp({ modelsDir: dir, loadPipeline: load });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
    const base = `http://127.0.0.1:${server.addr.port}`;
    let browser: Browser | null = null;
    try {
      browser = await openBrowser();
      const { cdp } = browser;
      await cdp.send("Page.navigate", { url: `${base}/` });
      for (const t0 = Date.now();; await new Promise((ok) => setTimeout(ok, 50))) {
        const n = await cdp.eval<number>(`document.getElementById("model")?.options.length ?? 0`)
          .catch(() => 0);
        if (n > 0) break;
        if (Date.now() - t0 > 10_000) throw new Error("the model picker never filled");
      }
      // Two jobs ahead: one running (15 steps of 150 ms), one waiting.
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`${base}/v1/animations`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ ...SMALL_REQUEST, steps: 15 }),
        });
        assertEquals(r.status, 202);
        await r.body?.cancel();
      }
      await cdp.eval(`(() => {
        const set = (id, v) => { const el = document.getElementById(id); el.value = v;
          el.dispatchEvent(new Event("change", { bubbles: true })); };
        set("model", "tiny"); set("motionModule", "tiny_motion");
        set("frames", "4"); set("width", "64"); set("height", "64"); set("steps", "2");
        document.getElementById("prompt").value = "a queued corgi";
        document.getElementById("submit").click();
        return true;
      })()`);
      const seen: string[] = [];
      for (const t0 = Date.now(); Date.now() - t0 < 20_000;) {
        const text = await cdp.eval<string>(`document.getElementById("status").textContent`);
        if (seen.at(-1) !== text) seen.push(text);
        if (/succeeded/.test(text)) break;
        await new Promise((ok) => setTimeout(ok, 100));
      }
      const places = seen.map((s) => /queued \((\d+) ahead\)/.exec(s)?.[1]).filter((x) => x)
        .map(Number);
      assertEquals(places[0], 1, `first seen: ${seen.join(" | ")}`);
      assert(places.includes(0), `moved up to the head while waiting: ${seen.join(" | ")}`);
      assert(seen.some((s) => /succeeded/.test(s)), seen.join(" | "));
      assertEquals(cdp.exceptions, [], "no script errors on the page");
    } finally {
      await browser?.close();
      await app.close();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
