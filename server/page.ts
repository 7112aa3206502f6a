/**
 * The web page served at the app's root (`/`, or the prefix it is mounted under): one HTML
 * document with inline CSS and JavaScript (no build step); API paths are relative to it.
 * It fills its model, motion module and LoRA pickers from GET /v1/models, submits the form to
 * POST /v1/animations, follows /events (server-sent events read through fetch, so a bearer
 * token can be sent) with a live progress bar, and shows and offers the result for download.
 * Element ids (`prompt`, `model`, `submit`, `progress`, `status`, `result`, `download`, ...)
 * are stable: the browser test drives them.
 * @module
 */

import { DEMO_DEFAULTS, REQUEST_DEFAULTS } from "../engine/request.ts";

const STYLE = `
  :root { font-family: system-ui, sans-serif; color-scheme: light dark; }
  body { max-width: 980px; margin: 1.5rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin: 0 0 1rem; }
  form { display: grid; gap: .6rem; }
  label { display: grid; gap: .2rem; font-size: .85rem; }
  textarea { min-height: 3.5rem; font: inherit; }
  input, select, textarea { min-width: 0; width: 100%; box-sizing: border-box; }
  .row { display: grid; grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); gap: .6rem; }
  .lora { display: flex; gap: .4rem; align-items: center; }
  .buttons { display: flex; gap: .6rem; }
  progress { width: 100%; height: 1.1rem; }
  #error { color: #c0392b; white-space: pre-wrap; }
  #result, #resultVideo { max-width: 100%; image-rendering: pixelated; min-width: 256px; }
  #preview { width: 128px; image-rendering: pixelated; vertical-align: middle; }
  #historyList { list-style: none; padding: 0; }
  #historyList li { display: flex; gap: 0.5em; align-items: center; margin: 0.3em 0; }
  .thumb { width: 64px; height: 64px; object-fit: contain; image-rendering: pixelated; }
  .hidden { display: none; }
  .bad { outline: 2px solid #c0392b; }
`;

/** The size, frames and steps the page switches to with a demo model, and back. */
const DEMO_SIZES = JSON.stringify({
  demo: {
    frames: DEMO_DEFAULTS.frames,
    width: DEMO_DEFAULTS.width,
    height: DEMO_DEFAULTS.height,
    steps: DEMO_DEFAULTS.steps,
  },
  other: {
    frames: REQUEST_DEFAULTS.frames,
    width: REQUEST_DEFAULTS.width,
    height: REQUEST_DEFAULTS.height,
    steps: REQUEST_DEFAULTS.steps,
  },
});

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const FINAL = ["succeeded", "failed", "canceled"];
const STAGES = { load: [0, 0.1], encode: [0.1, 0.12], denoise: [0.12, 0.92], decode: [0.92, 0.98], output: [0.98, 1] };
let models = null;
let currentJob = null;
let resultUrl = null;
// The app may be mounted under a prefix (app.route("/zoetrope", createApp(...))): the page is
// its root, so API paths are relative to the page's own path (result URLs come with the prefix).
const BASE = location.pathname.replace(/[/]+$/, "");
const api = (path) => BASE + path;

$("token").value = localStorage.getItem("zoetrope.token") || "";
$("token").addEventListener("change", () => {
  localStorage.setItem("zoetrope.token", $("token").value.trim());
  loadModels();
});

function headers(json) {
  const h = {};
  const t = $("token").value.trim();
  if (t) h.Authorization = "Bearer " + t;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function showError(text) {
  $("error").textContent = text || "";
}

async function errorText(r) {
  try {
    const j = await r.json();
    return { message: r.status + ": " + (j.error || r.statusText), field: j.field };
  } catch {
    return { message: r.status + ": " + r.statusText };
  }
}

function fillSelect(select, entries, chosen) {
  select.replaceChildren();
  for (const e of entries) {
    const o = document.createElement("option");
    o.value = e.name;
    o.textContent = e.name;
    select.append(o);
  }
  if (chosen) select.value = chosen;
}

async function loadModels() {
  const r = await fetch(api("/v1/models"), { headers: headers(false) });
  if (!r.ok) {
    showError("Could not list models: " + (await errorText(r)).message);
    return;
  }
  models = await r.json();
  const d = models.defaults;
  fillSelect($("model"), models.checkpoints, d.model);
  wasDemo = isDemo($("model").value);
  fillSelect($("motionModule"), models.motionModules, d.motionModule);
  fillSelect($("scheduler"), models.schedulers.map((name) => ({ name })), d.scheduler);
  fillSelect($("format"), models.formats.map((name) => ({ name })), d.format);
  for (const k of ["frames", "width", "height", "steps", "guidance", "clipSkip", "fps"]) {
    if ($(k).value === "") $(k).value = d[k];
  }
  const L = models.limits;
  $("frames").min = L.minFrames; $("frames").max = L.maxFrames;
  for (const k of ["width", "height"]) { $(k).min = L.minSide; $(k).max = L.maxSide; }
  $("steps").max = L.maxSteps;
  $("guidance").max = L.maxGuidance;
  $("addLora").disabled = models.loras.length === 0;
  $("submit").disabled = models.checkpoints.length === 0 || models.motionModules.length === 0;
  showError(models.checkpoints.length ? "" : "The models directory has no checkpoints.");
}

// The built-in demo models (demo, demo:paper) draw 64 x 64 with their own motion module:
// switching between them and other models switches those fields too.
const SIZES = ${DEMO_SIZES};
const isDemo = (name) => name === "demo" || name === "demo:paper";
let wasDemo = null;
$("model").addEventListener("change", () => {
  const demo = isDemo($("model").value);
  if (wasDemo !== null && demo !== wasDemo) {
    const s = demo ? SIZES.demo : SIZES.other;
    for (const k of ["frames", "width", "height", "steps"]) $(k).value = s[k];
    const mm = [...$("motionModule").options].map((o) => o.value);
    const pick = demo ? "demo" : mm.find((n) => n !== "demo");
    if (pick !== undefined && mm.includes(pick)) $("motionModule").value = pick;
  }
  wasDemo = demo;
});

function addLora() {
  const row = document.createElement("div");
  row.className = "lora";
  const sel = document.createElement("select");
  sel.className = "lora-name";
  fillSelect(sel, models ? models.loras : []);
  const scale = document.createElement("input");
  scale.type = "number"; scale.step = "0.05"; scale.value = "1"; scale.className = "lora-scale";
  const rm = document.createElement("button");
  rm.type = "button"; rm.textContent = "remove";
  rm.addEventListener("click", () => row.remove());
  row.append(sel, scale, rm);
  $("loras").append(row);
}
$("addLora").addEventListener("click", addLora);

// A file input's file as a data: URL (base64), or null when none is chosen.
function fileData(id) {
  const file = $(id).files && $(id).files[0];
  if (!file) return Promise.resolve(null);
  return new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result);
    reader.onerror = () => fail(new Error("cannot read " + file.name));
    reader.readAsDataURL(file);
  });
}

async function requestBody() {
  const body = {
    prompt: $("prompt").value,
    negativePrompt: $("negativePrompt").value,
    model: $("model").value,
    motionModule: $("motionModule").value,
    scheduler: $("scheduler").value,
    format: $("format").value,
  };
  for (const k of ["frames", "width", "height", "steps", "clipSkip"]) body[k] = parseInt($(k).value, 10);
  for (const k of ["guidance", "fps"]) body[k] = parseFloat($(k).value);
  if ($("seed").value.trim() !== "") body.seed = parseInt($("seed").value, 10);
  // Context windows (longer than the motion module allows): only when asked for.
  if ($("contextLength").value.trim() !== "") {
    body.contextLength = parseInt($("contextLength").value, 10);
    if ($("contextOverlap").value.trim() !== "") {
      body.contextOverlap = parseInt($("contextOverlap").value, 10);
    }
    if ($("contextLoop").checked) body.contextLoop = true;
    if ($("contextWeighting").value !== "flat") body.contextWeighting = $("contextWeighting").value;
    if ($("freeNoise").checked) body.freeNoise = true;
  }
  // Prompt travel: one "frame: prompt" per line.
  const travel = $("promptMap").value.split("\\n").map((l) => l.trim()).filter((l) => l !== "");
  if (travel.length) {
    body.promptMap = {};
    for (const line of travel) {
      const m = /^(\\d+)\\s*:(.*)$/.exec(line);
      if (!m) throw new Error("Prompt travel: each line is 'frame: prompt', got '" + line + "'");
      body.promptMap[m[1]] = m[2].trim();
    }
  }
  const passes = $("freeInit").value.trim();
  if (passes !== "" && parseInt(passes, 10) > 1) {
    body.freeInit = { iterations: parseInt(passes, 10), method: $("freeInitMethod").value };
  }
  const embeddings = $("embeddings").value.split(",").map((n) => n.trim()).filter((n) => n !== "");
  if (embeddings.length) body.embeddings = embeddings;
  // Video / image to video: the chosen file, base64; its length and size become the defaults.
  for (const k of ["video", "image"]) {
    const data = await fileData(k);
    if (data !== null) {
      body[k] = data;
      if (k === "video") delete body.frames;
      delete body.width;
      delete body.height;
    }
  }
  if ((body.video || body.image) && $("strength").value.trim() !== "") {
    body.strength = parseFloat($("strength").value);
  }
  for (const k of ["motionScale", "motionEffect"]) {
    if ($(k).value.trim() !== "") body[k] = parseFloat($(k).value);
  }
  const loras = [...document.querySelectorAll("#loras .lora")].map((row) => ({
    name: row.querySelector(".lora-name").value,
    scale: parseFloat(row.querySelector(".lora-scale").value),
  }));
  if (loras.length) body.loras = loras;
  return body;
}

// Live preview: the latest step's latents as RGB, fetched (with the token) as the job denoises.
let previewUrl = null, previewStep = 0, previewLoading = false;
async function showPreview(job) {
  if (!job.preview || job.status !== "running") {
    if (FINAL.includes(job.status)) $("previewBox").classList.add("hidden");
    return;
  }
  if (previewLoading || job.preview.step === previewStep) return;
  previewLoading = true;
  try {
    const r = await fetch(job.preview.url, { headers: headers(false) });
    if (!r.ok || currentJob !== job.id) return;
    const blob = await r.blob();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    previewStep = job.preview.step;
    $("preview").src = previewUrl;
    $("previewStep").textContent = "step " + job.preview.step + " of " + job.preview.total;
    $("previewBox").classList.remove("hidden");
  } catch { /* the next step brings another */ } finally {
    previewLoading = false;
  }
}

function setProgress(job) {
  showPreview(job);
  const p = job.progress;
  let text = job.status;
  let fraction = job.status === "succeeded" ? 1 : 0;
  if (job.status === "queued" && job.queuePosition !== null) {
    text = "queued (" + job.queuePosition + " ahead)";
  }
  if (p && job.status === "running") {
    const [a, b] = STAGES[p.stage] || [0, 1];
    fraction = a + (b - a) * (p.total > 0 ? p.step / p.total : 0);
    text = p.stage + " " + p.step + "/" + p.total;
    if (p.etaMs !== null) text += " · ETA " + Math.ceil(p.etaMs / 1000) + " s";
    if (job.cancelRequested) text += " · canceling";
  }
  $("progress").value = fraction;
  $("status").textContent = text;
  $("status").dataset.status = job.status;
}

// A result in another format, fetched with the token and saved through a temporary link.
async function downloadAs(job, format) {
  const r = await fetch(job.result.url + "?format=" + format, { headers: headers(false) });
  if (!r.ok) {
    showError("Could not convert the result: " + (await errorText(r)).message);
    return;
  }
  const url = URL.createObjectURL(await r.blob());
  const ext = { gif: ".gif", apng: ".png", "png-zip": ".zip", mp4: ".mp4", webm: ".webm" }[format];
  const a = document.createElement("a");
  a.href = url;
  a.download = "zoetrope-" + job.id.slice(0, 8) + ext;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// This server's finished animations, newest first, each with its settings and a way to reuse them.
let historyUrls = [];
async function loadHistory() {
  const r = await fetch(api("/v1/animations?status=succeeded&limit=12"), { headers: headers(false) });
  if (!r.ok) return;
  const { jobs } = await r.json();
  for (const u of historyUrls) URL.revokeObjectURL(u);
  historyUrls = [];
  const items = await Promise.all(jobs.map(async (job) => {
    const li = document.createElement("li");
    li.dataset.id = job.id;
    const q = job.request;
    const res = await fetch(job.result.url, { headers: headers(false) }).catch(() => null);
    if (res && res.ok) {
      const url = URL.createObjectURL(await res.blob());
      historyUrls.push(url);
      const media = job.result.contentType.startsWith("video/")
        ? Object.assign(document.createElement("video"), { muted: true, autoplay: true, loop: true })
        : job.result.contentType.startsWith("image/") ? document.createElement("img") : null;
      if (media) {
        media.src = url;
        media.className = "thumb";
        li.append(media);
      }
    }
    const text = document.createElement("span");
    text.textContent = (q.prompt || Object.values(q.promptMap || {}).join(" → ")) + " · " + q.model +
      " · " + q.width + "x" + q.height + " · " + q.frames + " frames · " + q.steps + " steps · seed " +
      job.result.seed;
    const reuse = document.createElement("button");
    reuse.type = "button";
    reuse.textContent = "reuse";
    reuse.className = "reuse";
    reuse.addEventListener("click", () => reuseSettings(q, job.result.seed));
    li.append(text, reuse);
    return li;
  }));
  $("historyList").replaceChildren(...items);
  $("history").classList.toggle("hidden", items.length === 0);
}

// Fills the form with a finished job's settings (input files cannot be refilled).
function reuseSettings(q, seed) {
  const set = (id, v) => {
    if (v === undefined || v === null) return;
    $(id).value = String(v);
    $(id).dispatchEvent(new Event("change", { bubbles: true }));
  };
  set("model", q.model);
  set("motionModule", q.motionModule);
  for (const k of ["prompt", "negativePrompt", "scheduler", "format", "frames", "width", "height",
    "steps", "guidance", "clipSkip", "fps", "motionScale", "motionEffect", "contextLength",
    "contextOverlap", "contextWeighting"]) set(k, q[k]);
  set("seed", seed);
  $("contextLoop").checked = !!q.contextLoop;
  $("freeNoise").checked = !!q.freeNoise;
  $("promptMap").value = q.promptMap
    ? Object.entries(q.promptMap).map(([f, p]) => f + ": " + p).join("\\n")
    : "";
  $("freeInit").value = q.freeInit ? q.freeInit.iterations : "";
  if (q.freeInit && q.freeInit.method) $("freeInitMethod").value = q.freeInit.method;
  $("loras").replaceChildren();
  for (const l of q.loras || []) {
    addLora();
    const row = $("loras").lastElementChild;
    row.querySelector(".lora-name").value = l.name;
    row.querySelector(".lora-scale").value = l.scale;
  }
  window.scrollTo(0, 0);
}

async function showResult(job) {
  const r = await fetch(job.result.url, { headers: headers(false) });
  if (!r.ok) {
    showError("Could not fetch the result: " + (await errorText(r)).message);
    return;
  }
  const blob = await r.blob();
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(blob);
  const name = "zoetrope-" + job.id.slice(0, 8) + job.result.extension;
  $("download").href = resultUrl;
  $("download").download = name;
  $("download").textContent = "Download " + name + " (" + Math.round(blob.size / 1024) + " KiB)";
  $("resultBox").classList.remove("hidden");
  const isImage = job.result.contentType.startsWith("image/");
  const isVideo = job.result.contentType.startsWith("video/");
  $("result").classList.toggle("hidden", !isImage);
  $("resultVideo").classList.toggle("hidden", !isVideo);
  if (isImage) $("result").src = resultUrl;
  else $("result").removeAttribute("src");
  if (isVideo) $("resultVideo").src = resultUrl;
  else $("resultVideo").removeAttribute("src");
  // The other formats, encoded by the server from the kept frames on demand.
  $("otherFormats").replaceChildren(...models.formats.filter((f) => f !== job.request.format)
    .map((f) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = f;
      b.dataset.format = f;
      b.addEventListener("click", () => downloadAs(job, f));
      return b;
    }));
  loadHistory();
  const secs = (Date.parse(job.finishedAt) - Date.parse(job.startedAt)) / 1000;
  $("status").textContent = "succeeded in " + secs.toFixed(1) + " s · seed " + job.result.seed +
    " · " + job.result.width + "x" + job.result.height + " · " + job.result.frames + " frames";
}

async function finish(job) {
  $("cancel").disabled = true;
  $("submit").disabled = false;
  setProgress(job);
  if (job.status === "succeeded") await showResult(job);
  else if (job.status === "failed") showError("Job failed: " + job.error);
}

async function follow(id) {
  let last = null;
  // Nothing is streamed while a job waits: its place in the queue is polled until it starts.
  const waiting = setInterval(async () => {
    if (currentJob !== id || (last && last.status !== "queued")) return clearInterval(waiting);
    try {
      const r = await fetch(api("/v1/animations/" + id), { headers: headers(false) });
      const j = r.ok ? await r.json() : null;
      if (j && j.status === "queued" && currentJob === id && (!last || last.status === "queued")) {
        last = j;
        setProgress(j);
      }
    } catch (_) { /* the stream or the poll below reports errors */ }
  }, 1500);
  try {
    const r = await fetch(api("/v1/animations/" + id + "/events"), { headers: headers(false) });
    if (!r.ok) throw new Error((await errorText(r)).message);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = chunk.split("\\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\\n");
        if (!data) continue;
        last = JSON.parse(data);
        if (currentJob !== id) return;
        setProgress(last);
        if (FINAL.includes(last.status)) return finish(last);
      }
    }
  } catch (e) {
    showError("Lost the progress stream (" + e.message + "); polling instead.");
  }
  // The stream ended early: poll until the job is final.
  while (currentJob === id) {
    const r = await fetch(api("/v1/animations/" + id), { headers: headers(false) });
    if (!r.ok) { showError((await errorText(r)).message); return; }
    last = await r.json();
    setProgress(last);
    if (FINAL.includes(last.status)) return finish(last);
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("");
  document.querySelectorAll(".bad").forEach((el) => el.classList.remove("bad"));
  $("resultBox").classList.add("hidden");
  let body;
  try {
    body = await requestBody();
  } catch (e) {
    showError(e.message);
    return;
  }
  const r = await fetch(api("/v1/animations"), {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify(body),
  });
  if (r.status !== 202) {
    const e = await errorText(r);
    const retry = r.headers.get("Retry-After");
    showError(e.message + (retry ? " (retry in " + retry + " s)" : ""));
    const field = e.field && $(e.field.replace(/\\[.*$/, ""));
    if (field) field.classList.add("bad");
    return;
  }
  const { id, status } = await r.json();
  currentJob = id;
  previewStep = 0;
  $("previewBox").classList.add("hidden");
  $("jobId").textContent = id;
  $("submit").disabled = true;
  $("cancel").disabled = false;
  setProgress({ id, status, progress: null, queuePosition: null });
  follow(id);
});

$("cancel").addEventListener("click", async () => {
  if (!currentJob) return;
  const r = await fetch(api("/v1/animations/" + currentJob), { method: "DELETE", headers: headers(false) });
  if (!r.ok && r.status !== 409) showError((await errorText(r)).message);
});

loadModels().then(loadHistory).catch((e) => showError("Could not list models: " + e.message));
`;

/**
 * The page's HTML (inline CSS and script; the script only talks to this origin's /v1 API).
 *
 * @example
 * ```ts
 * app.get("/", (c) => c.html(renderPage()));
 * ```
 */
export function renderPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Zoetrope — AnimateDiff</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Zoetrope — text to animation</h1>
<form id="form">
  <label>Prompt <textarea id="prompt" maxlength="2000">a red circle moving right</textarea></label>
  <label>Negative prompt <textarea id="negativePrompt" maxlength="2000"></textarea></label>
  <label title="Keyframe prompts: each frame's text interpolates its two keyframes'; the prompt above, if any, goes in front of each">Prompt travel (one "frame: prompt" per line; optional) <textarea id="promptMap" placeholder="0: a red circle moving right&#10;7: a blue circle moving right"></textarea></label>
  <div class="row">
    <label>Model <select id="model"></select></label>
    <label>Motion module <select id="motionModule"></select></label>
    <label>Scheduler <select id="scheduler"></select></label>
    <label>Format <select id="format"></select></label>
  </div>
  <div class="row">
    <label>Frames <input id="frames" type="number" step="1"></label>
    <label>Width <input id="width" type="number" step="8"></label>
    <label>Height <input id="height" type="number" step="8"></label>
    <label>Steps <input id="steps" type="number" min="1" step="1"></label>
    <label>Guidance <input id="guidance" type="number" min="0" step="0.5"></label>
    <label>Seed <input id="seed" type="number" min="0" step="1" placeholder="random"></label>
    <label>CLIP skip <input id="clipSkip" type="number" min="1" step="1"></label>
    <label>FPS <input id="fps" type="number" min="1" step="1"></label>
    <label title="Frames per motion-module window, for animations longer than the module allows">Context <input id="contextLength" type="number" min="1" step="1" placeholder="all"></label>
    <label title="Frames shared by neighbouring windows (default: context / 4)">Overlap <input id="contextOverlap" type="number" min="0" step="1" placeholder="auto"></label>
    <label title="Closed loop: the windows wrap from the last frame to the first">Loop <input id="contextLoop" type="checkbox"></label>
    <label title="How overlapping windows combine: flat = the mean, pyramid = more weight near each window's middle">Window weights <select id="contextWeighting"><option>flat</option><option>pyramid</option></select></label>
    <label title="FreeNoise: later windows start from shuffled noise of earlier ones (coherent long clips)">FreeNoise <input id="freeNoise" type="checkbox"></label>
    <label title="Video to video: a GIF or APNG whose frames start the clip (its length and size are used)">Video in <input id="video" type="file" accept="image/gif,image/png,image/apng"></label>
    <label title="Image to video: a PNG or GIF that starts every frame">Image in <input id="image" type="file" accept="image/png,image/gif"></label>
    <label title="How much of the input video or image is replaced (0 to 1)">Strength <input id="strength" type="number" min="0.05" max="1" step="0.05" placeholder="0.8"></label>
    <label title="FreeInit: denoising passes (each later one re-noises the last result, keeping its low frequencies); 1 = off">FreeInit passes <input id="freeInit" type="number" min="1" max="10" step="1" placeholder="off"></label>
    <label title="FreeInit's low-pass filter">FreeInit filter <select id="freeInitMethod"><option>butterworth</option><option>gaussian</option><option>ideal</option><option>box</option></select></label>
    <label title="Multiplies the motion modules' attention keys: above 1 sharper, below 1 softer motion">Motion scale <input id="motionScale" type="number" min="0" step="0.05" placeholder="1"></label>
    <label title="How much of the motion modules' change is kept: 0 no motion, 1 as trained">Motion effect <input id="motionEffect" type="number" min="0" step="0.05" placeholder="1"></label>
  </div>
  <label title="Textual-inversion embeddings from the models directory's embeddings/ folder; use their names in the prompts">Embeddings (comma-separated names) <input id="embeddings" type="text" placeholder="e.g. easynegative"></label>
  <div><span>LoRAs</span> <button type="button" id="addLora">add LoRA</button><div id="loras"></div></div>
  <label>API token (when the server asks for one) <input id="token" type="password" autocomplete="off"></label>
  <div class="buttons">
    <button id="submit" type="submit">Generate</button>
    <button id="cancel" type="button" disabled>Cancel</button>
  </div>
</form>
<p>Job <code id="jobId">-</code>: <span id="status" data-status="">idle</span></p>
<progress id="progress" max="1" value="0"></progress>
<div id="previewBox" class="hidden" title="Live preview: the latents after each denoising step, projected to colour (1/8 size)">
  <img id="preview" alt="live preview"> <span id="previewStep"></span>
</div>
<p id="error" role="alert"></p>
<div id="resultBox" class="hidden">
  <img id="result" alt="generated animation">
  <video id="resultVideo" class="hidden" autoplay loop muted playsinline controls></video>
  <p><a id="download" href="#">Download</a> · also as <span id="otherFormats"></span></p>
</div>
<section id="history" class="hidden">
  <h2>Recent animations on this server</h2>
  <ul id="historyList"></ul>
</section>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
