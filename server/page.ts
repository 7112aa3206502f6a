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
  #result { max-width: 100%; image-rendering: pixelated; min-width: 256px; }
  .hidden { display: none; }
  .bad { outline: 2px solid #c0392b; }
`;

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

function requestBody() {
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
  }
  const loras = [...document.querySelectorAll("#loras .lora")].map((row) => ({
    name: row.querySelector(".lora-name").value,
    scale: parseFloat(row.querySelector(".lora-scale").value),
  }));
  if (loras.length) body.loras = loras;
  return body;
}

function setProgress(job) {
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
  if (job.result.contentType.startsWith("image/")) {
    $("result").classList.remove("hidden");
    $("result").src = resultUrl;
  } else {
    $("result").classList.add("hidden");
    $("result").removeAttribute("src");
  }
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
  const r = await fetch(api("/v1/animations"), {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify(requestBody()),
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

loadModels().catch((e) => showError("Could not list models: " + e.message));
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
  <label>Prompt <textarea id="prompt" required maxlength="2000">a corgi running on the beach, best quality</textarea></label>
  <label>Negative prompt <textarea id="negativePrompt" maxlength="2000">bad quality, worse quality</textarea></label>
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
  </div>
  <div><span>LoRAs</span> <button type="button" id="addLora">add LoRA</button><div id="loras"></div></div>
  <label>API token (when the server asks for one) <input id="token" type="password" autocomplete="off"></label>
  <div class="buttons">
    <button id="submit" type="submit">Generate</button>
    <button id="cancel" type="button" disabled>Cancel</button>
  </div>
</form>
<p>Job <code id="jobId">-</code>: <span id="status" data-status="">idle</span></p>
<progress id="progress" max="1" value="0"></progress>
<p id="error" role="alert"></p>
<div id="resultBox" class="hidden">
  <img id="result" alt="generated animation">
  <p><a id="download" href="#">Download</a></p>
</div>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
