/**
 * `deno task animate` — text to animation from the command line.
 *
 * ```sh
 * deno task animate --prompt "a castle in the clouds" --model ./realisticVision.safetensors \
 *   --motion-module ./mm_sd_v15_v2.ckpt --out castle.gif
 * ```
 *
 * Exit codes: 0 success, 2 bad input (one line on stderr saying what to change), 1 other failures
 * (no adapter, a request larger than the adapter or the memory budget allows, GPU errors).
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import {
  type Animation,
  type AnimationPipeline,
  loadPipeline,
  planGeneration,
  SCHEDULERS,
} from "./engine/pipeline.ts";
import type {
  GenerateRequest,
  LoraSpec,
  ProgressEvent,
  SchedulerName,
} from "./engine/pipeline_types.ts";
import { type MemoryPlan, parseByteSize } from "./engine/memory_plan.ts";
import { DEMO_DEFAULTS, REQUEST_DEFAULTS } from "./engine/request.ts";
import { AbortError, InputError } from "./kernels/gpu/errors.ts";
import { parsePromptConfig, type PromptJob, promptSlug } from "./engine/prompt_config.ts";
import { encodePng } from "./engine/output/png.ts";
import { fmtBytes } from "./kernels/gpu/device.ts";
import { EngineLimitError, NoAdapterError } from "./kernels/gpu/errors.ts";
import { openTensorFile } from "./weights/open.ts";
import { detectKind } from "./weights/detect.ts";
import { main as weightsMain } from "./weights/cli.ts";
import { ARCHITECTURE } from "./engine/models/architecture.ts";
import { statOrNull } from "./weights/fs.ts";
import { DEMO_MOTION_MODULE_NAME, isDemoModelName } from "./weights/demo_model.ts";
import type { FreeInitOptions } from "./engine/free_init.ts";
import { readMedia } from "./engine/input/media.ts";
import type { Frame } from "./engine/output/frame.ts";
import { DEMO_COLOURS, DEMO_MOTIONS, DEMO_SHAPES } from "./weights/demo.ts";

/** The engine's request defaults, and the CLI's own. */
const DEFAULTS = { ...REQUEST_DEFAULTS, precision: "f32", out: "animation.gif" } as const;

const HELP = `Usage: deno task animate [flags]

Text to animation with Stable Diffusion 1.5 + AnimateDiff motion modules, on WebGPU.
Without --model it runs the built-in demo model, trained by Zoetrope on a synthetic world: prompts
"a <colour> <shape> <motion>" (offline, seconds on a CPU; --model demo:paper draws them on paper).

  --prompt TEXT              what to animate (required unless --config)
  --prompt-map "F: TEXT"      prompt travel: the prompt at keyframe F (repeatable); every frame's text
                             embedding interpolates its two keyframes' (--prompt, when given, goes in
                             front of each)
  --negative-prompt TEXT     what to avoid (default: empty)
  --model PATH               diffusers folder, single-file .safetensors/.ckpt, hf:owner/repo[/file][@rev],
                             or demo / demo:paper (the built-in demo models; the default is demo)
  --motion-module PATH       AnimateDiff motion module .ckpt/.safetensors (v1/v2/v3) or MotionAdapter folder
  --lora PATH[:SCALE]        kohya or diffusers LoRA; repeatable (default scale 1.0)
  --embedding PATH[=TOKEN]   textual inversion embedding (A1111 .pt/.safetensors, diffusers learned_embeds)
                             bound to TOKEN (default: the file name); repeatable
  --tokenizer DIR            folder with vocab.json + merges.txt (default: the model's tokenizer/)
  --model-config DIR         diffusers folder giving GroupNorm groups / heads for a single-file model
  --motion-module-config P   MotionAdapter config.json (or folder) for a single-file motion module
  --frames N                 frames (default ${DEFAULTS.frames}; at most the motion module's limit: v1 24, v2/v3 32,
                             or up to 512 with --context-length)
  --context-length N         frames per motion-module window for longer animations: overlapping windows,
                             predictions averaged where they overlap (default: all frames in one window)
  --context-overlap N        frames shared by neighbouring windows (default: context length / 4)
  --context-loop             closed loop: windows wrap from the last frame to the first (seamless loops)
  --context-weighting W      flat (the mean, default) or pyramid (1..m..1 across a window, as AnimateDiff-Evolved)
  --free-noise               FreeNoise: later windows start from shuffled noise of earlier ones (coherent long clips)
  --width N, --height N      size in pixels, multiples of 8 (default ${DEFAULTS.width}x${DEFAULTS.height})
  --steps N                  denoising steps (default ${DEFAULTS.steps})
  --guidance G               classifier-free guidance scale (default ${DEFAULTS.guidance})
  --scheduler NAME           ${SCHEDULERS.join("|")} (default ${DEFAULTS.scheduler})
  --clip-skip N              1 = last CLIP layer, 2 = penultimate (A1111 numbering; default 1)
  --motion-scale S           multiplies the motion modules' attention keys (logits = S q.k / sqrt(d)):
                             above 1 sharper, below 1 softer motion (default 1; (0, 10])
  --video PATH               video to video: GIF, APNG or a folder of PNG frames, encoded and noised to
                             --strength; its frame count and size are the defaults (DDIM or LCM)
  --image PATH               image to video: a PNG or GIF that starts every frame
  --strength S               how much of the input is replaced, (0, 1] (default 0.8)
  --free-init N              FreeInit: N denoising passes (N x the time), each later one from the last
                             result's low frequencies + fresh noise's high ones (diffusers' enable_free_init)
  --free-init-method M       butterworth|gaussian|ideal|box (default butterworth); --free-init-order N (4),
                             --free-init-spatial F / --free-init-temporal F (stop frequencies, 0.25),
                             --free-init-fast (pass k of N takes steps * (k + 1) / N steps)
  --motion-effect E          motion modules' output x + E (module(x) - x): 0 = no motion, below 1 less,
                             above 1 more (default 1; [0, 10])
  --seed N                   random seed (default: random; same seed = same noise as torch)
  --fps N                    playback frames per second (default ${DEFAULTS.fps})
  --loop N                   GIF/APNG loop count, 0 = forever (default 0)
  --precision f32|f16        f32 = reference parity, f16 = faster storage (default ${DEFAULTS.precision})
  --fidelity diffusers|original
                             where the references differ, follow diffusers (default) or the original
                             AnimateDiff (per-frame motion GroupNorm; v1: ResNet norms across frames)
  --config FILE.yaml         AnimateDiff prompt config: runs every entry and prompt
  --out PATH                 .gif, .png (animated PNG), .mp4 (H.264), .webm (VP8) or a directory of
                             frame_0000.png... (default ${DEFAULTS.out};
                             with --config: a directory, default samples/)
  --dry-run                  print the memory plan (GPU memory per stage, whether it fits) and exit
                             without loading weights onto the GPU or generating
  --max-memory SIZE          GPU memory a run may use, e.g. 8GB or 6.5GiB (default: unknown for GPUs,
                             host memory for software adapters); runs that need more fail at once
  --json                     print a machine-readable summary on stdout
  --progress / --quiet       force the progress bar on / off (default: on when stderr is a terminal)
  --help                     this text
`;

const OPTIONS = {
  prompt: { type: "string" },
  "negative-prompt": { type: "string" },
  model: { type: "string" },
  "motion-module": { type: "string" },
  lora: { type: "string", multiple: true },
  "prompt-map": { type: "string", multiple: true },
  embedding: { type: "string", multiple: true },
  tokenizer: { type: "string" },
  "model-config": { type: "string" },
  "motion-module-config": { type: "string" },
  frames: { type: "string" },
  width: { type: "string" },
  height: { type: "string" },
  steps: { type: "string" },
  guidance: { type: "string" },
  scheduler: { type: "string" },
  "clip-skip": { type: "string" },
  "motion-scale": { type: "string" },
  "free-init": { type: "string" },
  video: { type: "string" },
  image: { type: "string" },
  strength: { type: "string" },
  "free-init-method": { type: "string" },
  "free-init-order": { type: "string" },
  "free-init-spatial": { type: "string" },
  "free-init-temporal": { type: "string" },
  "free-init-fast": { type: "boolean" },
  "motion-effect": { type: "string" },
  "context-length": { type: "string" },
  "context-overlap": { type: "string" },
  "context-loop": { type: "boolean" },
  "context-weighting": { type: "string" },
  "free-noise": { type: "boolean" },
  seed: { type: "string" },
  fps: { type: "string" },
  loop: { type: "string" },
  precision: { type: "string" },
  fidelity: { type: "string" },
  config: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  "dry-run": { type: "boolean" },
  "max-memory": { type: "string" },
  progress: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Flags = ReturnType<typeof parse>;

const DEMO_NOTE = "note: this used the built-in demo model, a small model trained by Zoetrope on " +
  `a synthetic world: it draws "a <colour> <shape> <motion>" with colours ${
    DEMO_COLOURS.join(", ")
  }; shapes ${DEMO_SHAPES.join(", ")}; motions ${DEMO_MOTIONS.join(", ")} ` +
  "(--model demo:paper: on paper). For real animations pass --model <SD1.5 checkpoint> " +
  "--motion-module <AnimateDiff motion module>; see README.";

/**
 * v1 prompt configs name a `base` checkpoint and a `path` that AnimateDiff merges into it as a
 * LoRA when the file holds LoRA weights (otherwise `path` is the checkpoint): decide by the keys.
 */
async function resolveV1Base(job: PromptJob): Promise<void> {
  if (!job.base || !job.model || job.model.startsWith("hf:")) return;
  const st = await statOrNull(job.model);
  if (!st?.isFile) return;
  let kind: string;
  try {
    const file = await openTensorFile(job.model);
    kind = detectKind(file.tensors.keys());
    file.close();
  } catch {
    return; // loading job.model reports the problem
  }
  if (kind !== "lora-kohya" && kind !== "lora-diffusers") return;
  job.loras = [{ path: job.model, scale: job.base.loraScale }, ...job.loras];
  job.model = job.base.path;
  job.base = undefined;
}

function parse(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, allowPositionals: false, strict: true }).values;
  } catch (e) {
    const first = (e as Error).message.split("\n")[0];
    // node:util says "argument is ambiguous" when a value starts with "-" (e.g. --seed -5).
    const dashed = /^Option '(--[\w-]+)'.* argument is ambiguous/.exec(first);
    if (dashed) {
      throw new InputError(
        `${dashed[1]} needs a value; write a value that starts with "-" as ${
          dashed[1]
        }=VALUE (see --help)`,
      );
    }
    throw new InputError(`${first} (see --help)`);
  }
}

function intFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim())) throw new InputError(`--${name} must be an integer, got "${v}"`);
  return Number(v);
}

/**
 * `--prompt-map "F: TEXT"` flags as a prompt map (undefined when none); a flag without a frame
 * number is a one-line error. Range checks happen with the request (they need the frame count).
 */
export function parsePromptMapFlags(
  values: readonly string[] | undefined,
): Record<number, string> | undefined {
  if (!values?.length) return undefined;
  const map: Record<number, string> = {};
  for (const v of values) {
    const m = /^\s*(\d+)\s*:(.*)$/s.exec(v);
    if (!m) {
      throw new InputError(
        `--prompt-map must be "FRAME: PROMPT" (e.g. "8: a girl crying"), got "${v.slice(0, 60)}"`,
      );
    }
    const frame = Number(m[1]);
    if (frame in map) throw new InputError(`--prompt-map: keyframe ${frame} is given twice`);
    map[frame] = m[2].trim();
  }
  return map;
}

/** The frames of a `--video` / `--image` file (one-line InputError when unreadable). */
async function mediaFlag(path: string, flag: string): Promise<Frame[]> {
  try {
    return await readMedia(path);
  } catch (e) {
    throw new InputError(`--${flag}: ${path}: ${(e as Error).message}`);
  }
}

/** The `--free-init*` flags as FreeInit options (undefined without `--free-init`). */
function freeInitFlags(flags: Flags): FreeInitOptions | undefined {
  const iterations = intFlag(flags["free-init"], "free-init");
  const others = ["free-init-method", "free-init-order", "free-init-spatial", "free-init-temporal"]
    .filter((k) => flags[k as keyof Flags] !== undefined);
  if (iterations === undefined) {
    if (others.length || flags["free-init-fast"]) {
      throw new InputError(`--${others[0] ?? "free-init-fast"} needs --free-init N`);
    }
    return undefined;
  }
  return {
    iterations,
    method: flags["free-init-method"] as FreeInitOptions["method"],
    order: intFlag(flags["free-init-order"], "free-init-order"),
    spatialStop: numFlag(flags["free-init-spatial"], "free-init-spatial"),
    temporalStop: numFlag(flags["free-init-temporal"], "free-init-temporal"),
    fastSampling: flags["free-init-fast"] ? true : undefined,
  };
}

function numFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    throw new InputError(`--${name} must be a number, got "${v}"`);
  }
  return n;
}

function seedFlag(v: string | undefined): number | bigint | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) {
    throw new InputError(`--seed must be a non-negative integer, got "${v}"`);
  }
  const b = BigInt(v.trim());
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

const SCALE = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
/** What a scale attempt starts like: a digit, a sign, a dot; or nan / inf spelt out. */
const SCALE_ATTEMPT = /^$|^[+-]?\.?\d|^[+-]?(nan|inf(inity)?)\b/i;

/**
 * `path[:scale]`, where the scale is the part after the last colon when it is a number. A tail
 * that starts like a number but is not a finite one ("nan", "inf", "1e999", "0.5x") is an error,
 * unless the whole text names an existing file (paths with colons work as they are).
 */
export function parseLoraFlag(v: string): LoraSpec {
  const i = v.lastIndexOf(":");
  if (i > 0) {
    const tail = v.slice(i + 1);
    const scale = Number(tail);
    if (SCALE.test(tail) && Number.isFinite(scale)) return { path: v.slice(0, i), scale };
    if (SCALE_ATTEMPT.test(tail) && !existsSync(v)) {
      throw new InputError(
        `--lora: scale "${tail}" is not a finite number (write PATH:SCALE, e.g. ` +
          `${v.slice(0, i)}:0.8)`,
      );
    }
  }
  return { path: v, scale: 1 };
}

/**
 * `--embedding PATH[=TOKEN]`: the file and the token it binds (default: the file name).
 *
 * @example
 * ```ts
 * parseEmbeddingFlag("emb/easynegative.pt=bad-hands"); // { path: "emb/easynegative.pt", token: "bad-hands" }
 * ```
 */
export function parseEmbeddingFlag(v: string): { path: string; token?: string } {
  const i = v.lastIndexOf("=");
  if (i <= 0) return { path: v };
  const token = v.slice(i + 1).trim();
  if (!token || /\s/.test(token)) {
    throw new InputError(`--embedding: token "${token}" must be one word (PATH=TOKEN)`);
  }
  return { path: v.slice(0, i), token };
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Engine options named at the start of load errors, and the flags that set them. */
const OPTION_FLAGS: [option: string, flag: string][] = [
  ["motionModule", "--motion-module"],
  ["model", "--model"],
  ["loras", "--lora"],
  ["tokenizer", "--tokenizer"],
  ["precision", "--precision"],
];

/**
 * The engine names options and files in its errors, the CLI its flags: an InputError that starts
 * with an option's name (`model: x.safetensors: ...`) gets the option's flag instead, one that
 * starts with the path of a flag's file gets that flag in front (`--tokenizer: vocab.json: ...`).
 */
function withFlag(e: unknown, files: [flag: string, path: string | undefined][]): unknown {
  if (!(e instanceof InputError) || e.message.startsWith("--")) return e;
  const option = OPTION_FLAGS.find(([o]) => new RegExp(`^${o}[: ]`).test(e.message));
  if (option) return new InputError(option[1] + e.message.slice(option[0].length));
  const hit = files.filter(([, path]) => path).sort((a, b) => b[1]!.length - a[1]!.length)
    .find(([, path]) =>
      e.message.startsWith(path!) && /^($|[:/ (])/.test(e.message.slice(path!.length))
    );
  return hit ? new InputError(`${hit[0]}: ${e.message}`) : e;
}

async function checkPath(path: string | undefined, flag: string): Promise<void> {
  if (!path || path.startsWith("hf:")) return;
  if (flag === "model" ? isDemoModelName(path) : path === DEMO_MOTION_MODULE_NAME) return;
  if (!(await statOrNull(path))) throw new InputError(`--${flag}: ${path} does not exist`);
}

type OutKind = "gif" | "apng" | "mp4" | "webm" | "dir";

async function outKind(out: string): Promise<OutKind> {
  const lower = out.toLowerCase();
  if (lower.endsWith(".gif")) return "gif";
  if (lower.endsWith(".png") || lower.endsWith(".apng")) return "apng";
  if (lower.endsWith(".mp4")) return "mp4";
  if (lower.endsWith(".webm")) return "webm";
  const st = await statOrNull(out);
  if (out.endsWith("/") || st?.isDirectory || !/\.[a-z0-9]+$/i.test(out)) return "dir";
  throw new InputError(
    `--out must end in .gif, .png, .mp4 or .webm, or be a directory; got ${out}`,
  );
}

async function writeOutput(anim: Animation, out: string, loop: number): Promise<string[]> {
  const kind = await outKind(out);
  if (kind !== "dir") await Deno.mkdir(dirname(resolve(out)), { recursive: true });
  if (kind === "gif") {
    await Deno.writeFile(out, anim.toGif({ loop }));
    return [out];
  }
  if (kind === "apng") {
    await Deno.writeFile(out, anim.toApng({ loop }));
    return [out];
  }
  if (kind === "mp4" || kind === "webm") {
    await Deno.writeFile(out, await (kind === "mp4" ? anim.toMp4() : anim.toWebm()));
    return [out];
  }
  await Deno.mkdir(out, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < anim.frames.length; i++) {
    const f = join(out, `frame_${String(i).padStart(4, "0")}.png`);
    await Deno.writeFile(f, encodePng(anim.frames[i]));
    files.push(f);
  }
  return files;
}

/** Renders progress events as a one-line bar on stderr. */
class ProgressBar {
  #enabled: boolean;
  #last = "";
  #enc = new TextEncoder();
  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }
  update = (e: ProgressEvent) => {
    if (!this.#enabled) return;
    if (e.message) this.note(`${e.stage}: ${e.message}`);
    const width = 24;
    const frac = e.total ? e.step / e.total : 0;
    const filled = Math.round(frac * width);
    let line = `${e.stage.padEnd(7)} [${"#".repeat(filled)}${
      "-".repeat(width - filled)
    }] ${e.step}/${e.total}`;
    if (e.stage === "denoise" && e.step > 0) {
      line += `  ${(e.elapsedMs / e.step / 1000).toFixed(2)} s/step`;
    }
    if (e.etaMs !== undefined && e.step < e.total) line += `  ETA ${fmtSeconds(e.etaMs)}`;
    if (line === this.#last) return;
    this.#last = line;
    Deno.stderr.writeSync(this.#enc.encode(`\r\x1b[2K${line}`));
  };
  note(text: string) {
    if (!this.#enabled) return;
    Deno.stderr.writeSync(this.#enc.encode(`\r\x1b[2K${text}\n`));
    this.#last = "";
  }
  done() {
    if (this.#enabled && this.#last) Deno.stderr.writeSync(this.#enc.encode("\n"));
    this.#last = "";
  }
}

function fmtSeconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

interface RunSummary {
  files: string[];
  seed: string;
  prompt: string;
  timings: Record<string, number>;
}

async function runJobs(flags: Flags, jobs: PromptJob[], outDir: string | null): Promise<void> {
  const bar = new ProgressBar(
    flags.quiet ? false : flags.progress ? true : Deno.stderr.isTerminal(),
  );
  const extraLoras = (flags.lora ?? []).map(parseLoraFlag);
  const flagEmbeddings = (flags.embedding ?? []).map(parseEmbeddingFlag);
  const precision = (flags.precision ?? DEFAULTS.precision) as "f32" | "f16";
  if (precision !== "f32" && precision !== "f16") {
    throw new InputError(`--precision must be f32 or f16, got ${flags.precision}`);
  }
  const fidelity = flags.fidelity ?? "diffusers";
  if (fidelity !== "diffusers" && fidelity !== "original") {
    throw new InputError(`--fidelity must be diffusers or original, got ${fidelity}`);
  }
  const scheduler = (flags.scheduler ?? DEFAULTS.scheduler) as SchedulerName;
  if (!SCHEDULERS.includes(scheduler)) {
    throw new InputError(
      `unknown --scheduler "${flags.scheduler}"; use one of ${SCHEDULERS.join(", ")}`,
    );
  }
  const loop = intFlag(flags.loop, "loop") ?? 0;
  if (loop < 0 || loop > 65535) throw new InputError(`--loop must be from 0 to 65535, got ${loop}`);
  const common = {
    frames: intFlag(flags.frames, "frames"),
    width: intFlag(flags.width, "width"),
    height: intFlag(flags.height, "height"),
    steps: intFlag(flags.steps, "steps"),
    guidance: numFlag(flags.guidance, "guidance"),
    clipSkip: intFlag(flags["clip-skip"], "clip-skip"),
    contextLength: intFlag(flags["context-length"], "context-length"),
    contextOverlap: intFlag(flags["context-overlap"], "context-overlap"),
    fps: numFlag(flags.fps, "fps"),
    seed: seedFlag(flags.seed),
    motionScale: numFlag(flags["motion-scale"], "motion-scale"),
    motionEffect: numFlag(flags["motion-effect"], "motion-effect"),
    freeInit: freeInitFlags(flags),
    strength: numFlag(flags.strength, "strength"),
    video: flags.video === undefined ? undefined : await mediaFlag(flags.video, "video"),
    image: flags.image === undefined ? undefined : (await mediaFlag(flags.image, "image"))[0],
  };
  // Videos and images named by config entries, read once each before any generation.
  const media = new Map<string, Frame[]>();
  for (const job of jobs) {
    for (const [path, flag] of [[job.video, "video"], [job.image, "image"]] as const) {
      if (path && !media.has(path)) media.set(path, await mediaFlag(path, `config ${flag}`));
    }
  }
  const mediaOf = (path: string | undefined) => (path ? media.get(path) : undefined);
  const jobRequest = (job: PromptJob, c: typeof common, demo: boolean): GenerateRequest => {
    const d = demo ? { ...DEFAULTS, ...DEMO_DEFAULTS } : DEFAULTS;
    return {
      prompt: job.prompt,
      negativePrompt: job.negativePrompt,
      frames: c.frames ?? job.frames ?? d.frames,
      width: c.width ?? job.width ?? d.width,
      height: c.height ?? job.height ?? d.height,
      steps: c.steps ?? job.steps ?? d.steps,
      guidance: c.guidance ?? job.guidance ?? d.guidance,
      promptMap: job.promptMap,
      motionScale: c.motionScale ?? job.motionScale,
      motionEffect: c.motionEffect ?? job.motionEffect,
      freeInit: c.freeInit ?? job.freeInit,
      video: c.video ?? mediaOf(job.video),
      image: c.image ?? mediaOf(job.image)?.[0],
      strength: c.strength ?? job.strength,
      scheduler,
      seed: c.seed ?? job.seed,
      clipSkip: c.clipSkip ?? DEFAULTS.clipSkip,
      fps: c.fps ?? DEFAULTS.fps,
      contextLength: c.contextLength ?? job.contextLength,
      contextOverlap: c.contextOverlap ?? job.contextOverlap,
      contextLoop: flags["context-loop"] ? true : undefined,
      contextWeighting: (flags["context-weighting"] as GenerateRequest["contextWeighting"]) ??
        job.contextWeighting,
      freeNoise: flags["free-noise"] ? true : job.freeNoise,
    };
  };
  const maxMemory = flags["max-memory"] === undefined
    ? undefined
    : parseByteSizeFlag(flags["max-memory"], "--max-memory");
  const summaries: RunSummary[] = [];
  const plans: MemoryPlan[] = [];
  let pipeline: AnimationPipeline | null = null;
  let pipelineKey = "";
  let adapter = "";
  let demoNoted = false;
  try {
    for (const job of jobs) {
      await resolveV1Base(job);
      const loras: LoraSpec[] = [...job.loras, ...extraLoras];
      const embeddings = [...(job.embeddings ?? []), ...flagEmbeddings];
      const key = JSON.stringify([job.model, job.motionModule, loras, embeddings]);
      await checkPath(job.model, "model");
      for (const e of embeddings) await checkPath(e.path, "embedding");
      await checkPath(job.motionModule, "motion-module");
      for (const l of loras) await checkPath(l.path, "lora");
      const flagOf = (e: unknown) =>
        withFlag(e, [
          ["--model-config", flags["model-config"]],
          ["--motion-module-config", flags["motion-module-config"]],
          ["--tokenizer", flags.tokenizer],
          // The engine reads --tokenizer's files without naming the folder.
          ["--tokenizer", flags.tokenizer && "vocab.json"],
          ["--tokenizer", flags.tokenizer && "merges.txt"],
          ["--model", job.model],
          ["--motion-module", job.motionModule],
          ...loras.map((l): [string, string] => ["--lora", l.path]),
        ]);
      const loadOptions = {
        model: job.model,
        motionModule: job.motionModule,
        loras,
        embeddings,
        tokenizer: flags.tokenizer,
        modelConfig: flags["model-config"],
        motionModuleConfig: flags["motion-module-config"],
        precision,
        maxMemory,
      };
      if (flags["dry-run"]) {
        // The plan, without loading weights onto the GPU or generating anything.
        const plan = await planGeneration(
          loadOptions,
          jobRequest(job, common, !job.model || isDemoModelName(job.model)),
        ).catch(
          (e) => {
            throw flagOf(e);
          },
        );
        plans.push(plan);
        if (!flags.json) console.log(formatPlan(plan, job));
        continue;
      }
      if (!pipeline || key !== pipelineKey) {
        pipeline?.dispose();
        pipeline = null;
        pipeline = await loadPipeline({ ...loadOptions, onProgress: bar.update }).catch((e) => {
          throw flagOf(e);
        });
        pipeline.fidelity = fidelity;
        pipelineKey = key;
        adapter = pipeline.info.adapter;
        bar.done();
      }
      const demo = pipeline.info.demo;
      const request = jobRequest(job, common, demo);
      const anim = await pipeline.generate(request, { onProgress: bar.update });
      bar.done();
      const out = outDir === null
        ? (flags.out ?? DEFAULTS.out)
        : join(outDir, `${job.index}-${promptSlug(job.prompt)}.gif`);
      const files = await writeOutput(anim, out, loop);
      // After the output, so that a failing run prints its error as the one line on stderr.
      if (demo && !demoNoted) {
        demoNoted = true;
        console.error(DEMO_NOTE);
      }
      summaries.push({
        files,
        seed: String(anim.seed),
        prompt: job.prompt,
        timings: anim.timings,
      });
      if (!flags.json) {
        console.error(
          `wrote ${files.length === 1 ? files[0] : `${files.length} frames to ${out}`} ` +
            `(${anim.frames.length} frames ${anim.width}x${anim.height}, seed ${anim.seed}, ` +
            `${(anim.timings.total / 1000).toFixed(1)} s)`,
        );
      }
    }
  } finally {
    pipeline?.dispose();
  }
  if (flags["dry-run"]) {
    if (flags.json) console.log(JSON.stringify({ plans }));
    const failed = plans.find((p) => !p.fits);
    if (failed) throw new EngineLimitError(failed.reason ?? "the request does not fit");
    return;
  }
  if (flags.json) {
    console.log(JSON.stringify({
      outputs: summaries.map((s) => ({ ...s, files: s.files })),
      files: summaries.flatMap((s) => s.files),
      seed: summaries[0]?.seed,
      timings: summaries[0]?.timings,
      adapter,
    }));
  }
}

/** `--max-memory`'s bytes. */
function parseByteSizeFlag(v: string, flag: string): number {
  const bytes = parseByteSize(v);
  if (bytes === null) {
    throw new InputError(`${flag} must be a positive size such as 8GB or 6.5GiB, got "${v}"`);
  }
  return bytes;
}

/** The memory plan as `--dry-run` prints it. */
function formatPlan(p: MemoryPlan, job: PromptJob): string {
  const gb = fmtBytes;
  const what = job.model && !isDemoModelName(job.model)
    ? `${job.model} + ${job.motionModule}`
    : `the built-in demo model (${job.model ?? "demo"})`;
  const budget = p.budgetBytes === null
    ? "unknown (WebGPU does not report GPU memory; --max-memory sets one)"
    : gb(p.budgetBytes);
  return [
    `memory plan: ${p.frames} frames ${p.width}x${p.height} in ${p.precision}, ${what}, on ${p.adapter}`,
    `  weights      ${gb(p.weightsBytes)}`,
    `  activations  ${gb(p.activationsBytes)} at most (buffers of the pool, free ones included)`,
    `  peak         ${gb(p.peakBytes)} (encode ${gb(p.stages.encode)}, denoise ${
      gb(p.stages.denoise)
    }, decode ${gb(p.stages.decode)})`,
    `  limits       ${(p.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB per binding, ${
      (p.maxBufferSize / 2 ** 20).toFixed(0)
    } MiB per buffer; VAE ${
      p.decodeTiles <= 1 ? "decodes whole frames" : `decodes in ${p.decodeTiles} tiles per frame`
    }`,
    `  budget       ${budget}`,
    `  fits         ${p.fits ? "yes" : `no: ${p.reason}`}`,
  ].join("\n");
}

/**
 * Runs the CLI with `args`; returns the exit code. `weights ...` runs the weights tool
 * (`deno task weights inspect|convert`, weights/cli.ts) with the architectures' description.
 */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "weights") {
    return await weightsMain(args.slice(1), undefined, { architecture: ARCHITECTURE });
  }
  let flags: Flags;
  try {
    flags = parse(args);
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    let jobs: PromptJob[];
    let outDir: string | null = null;
    if (flags.config) {
      const text = await Deno.readTextFile(flags.config).catch((e) => {
        throw new InputError(`--config: cannot read ${flags.config} (${(e as Error).name})`);
      });
      const base = dirname(resolve(flags.config));
      jobs = parsePromptConfig(text, {
        source: flags.config,
        resolvePath: (p) => {
          if (p.startsWith("hf:") || p.startsWith("/")) return p;
          try {
            Deno.statSync(p);
            return p;
          } catch {
            return join(base, p);
          }
        },
      });
      if (flags.prompt) {
        throw new InputError("--prompt and --config are exclusive: prompts come from the config");
      }
      for (const j of jobs) {
        j.model ??= flags.model;
        j.motionModule ??= flags["motion-module"];
        if (flags["negative-prompt"] !== undefined && !j.negativePrompt) {
          j.negativePrompt = flags["negative-prompt"];
        }
      }
      outDir = flags.out ?? "samples";
      const outInfo = await statOrNull(outDir);
      if (outInfo && !outInfo.isDirectory) {
        throw new InputError(`--out must be a directory with --config; ${outDir} is a file`);
      }
    } else {
      const promptMap = parsePromptMapFlags(flags["prompt-map"]);
      if (flags.prompt === undefined && !promptMap) {
        throw new InputError(
          "--prompt is required (or --prompt-map, or --config FILE.yaml); see --help",
        );
      }
      jobs = [{
        entry: "cli",
        index: 0,
        model: flags.model,
        motionModule: flags["motion-module"],
        prompt: flags.prompt ?? "",
        promptMap,
        negativePrompt: flags["negative-prompt"] ?? "",
        loras: [],
      }];
      await outKind(flags.out ?? DEFAULTS.out);
    }
    await runJobs(flags, jobs, outDir);
    return 0;
  } catch (e) {
    const err = e as Error;
    if (err instanceof InputError) {
      console.error(`error: ${err.message}`);
      return 2;
    }
    if (err instanceof NoAdapterError || err instanceof AbortError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    if (/out of memory|OutOfMemory|Not enough memory/i.test(err.message)) {
      console.error(
        `error: GPU out of memory (${
          err.message.split("\n")[0]
        }); use fewer frames, a smaller size or --precision f16`,
      );
      return 1;
    }
    console.error(`error: ${err.message.split("\n")[0]}`);
    if (Deno.env.get("ZOETROPE_DEBUG")) console.error(err.stack);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
