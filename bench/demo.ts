/**
 * Demo bench: does the built-in demo model draw what it is asked? It generates a grid of the
 * demo world's prompts x seeds (tools/demo/world.ts) through `loadPipeline`, reads every
 * animation back with the world's classifier (tools/demo/classify.ts) and prints the rates:
 * colour, shape, motion and background right, and exactly one object.
 *
 *   deno task bench:demo                        # the built-in demo, then demo:paper
 *   deno task bench:demo --model m.safetensors --motion-module mm.safetensors [--background paper]
 *   deno task bench:demo --model DIR            # a `deno task demo:train` folder: its own motion
 *                                               # module and config, at the demo's defaults
 *   flags: --count N (>= 1, default 48) --seed N --frames N --size N --steps N --guidance X
 *          --gifs DIR (write every animation) --json FILE
 *
 * The cases are a seeded choice: `--count` prompts dealt evenly from the world's 108 and one
 * generation seed each from {@link BENCH_SEED_BASE} up, a range training never uses (keep its
 * validation seeds below it). The base expects a dark background, `demo:paper` a light one.
 * @module
 */

import { join } from "node:path";
import { loadPipeline } from "../engine/pipeline.ts";
import { DEMO_DEFAULTS, REQUEST_DEFAULTS } from "../engine/request.ts";
import { encodeGif } from "../engine/output/gif.ts";
import type { Frame } from "../engine/output/frame.ts";
import { allPrompts, type Background, parsePrompt, WorldRng } from "../tools/demo/world.ts";
import { type Score, scoreAnimation } from "../tools/demo/classify.ts";
import { OUTPUT_FILES } from "../tools/demo/recipe.ts";

/** Generation seeds of the bench start here; training and its validation stay below. */
export const BENCH_SEED_BASE = 900_000;
/** Cases by default (the issue asks for at least 40). */
export const DEFAULT_COUNT = 48;

/** Usage text. */
export const DEMO_USAGE: string =
  "usage: deno task bench:demo [--model PATH] [--motion-module PATH] [--motion-module-config P] " +
  "[--background dark|paper] [--count N] [--seed N] [--frames N] [--size N] [--steps N] " +
  "[--guidance X] [--gifs DIR] [--json FILE]";

/**
 * Parsed `deno task bench:demo` options.
 *
 * @example
 * ```ts
 * const o: DemoBenchOptions = parseDemoArgs(["--count", "40"]);
 * ```
 */
export interface DemoBenchOptions {
  /** Model to measure (default: the built-in demo, then `demo:paper`). */
  model?: string;
  /** Its motion module. */
  motionModule?: string;
  /** The motion module's MotionAdapter config.json (or folder), for a single file with non-default heads or groups. */
  motionModuleConfig?: string;
  /** Background the model should draw (default: `paper` for models named `*paper*`, else dark). */
  background?: Background;
  /** Prompt/seed pairs per model. */
  count: number;
  /** Seed of the case choice. */
  seed: number;
  /** Frames per animation (default: the demo's, else the request's). */
  frames?: number;
  /** Width = height in pixels (default: the demo's, else the request's). */
  size?: number;
  /** Denoising steps (default: the demo's, else the request's). */
  steps?: number;
  /** Guidance scale (default: the request's). */
  guidance?: number;
  /** Write every animation as `<variant>/<index>.gif` here. */
  gifs?: string;
  /** Write the results as JSON here. */
  json?: string;
  /** Show usage and exit. */
  help: boolean;
}

/**
 * Parses bench arguments (`--flag value` or `--flag=value`); throws a one-line error on bad input.
 *
 * @example
 * ```ts
 * parseDemoArgs(["--model", "demo:paper", "--count=40"]); // { model: "demo:paper", count: 40, ... }
 * ```
 */
export function parseDemoArgs(args: readonly string[]): DemoBenchOptions {
  const out: DemoBenchOptions = { count: DEFAULT_COUNT, seed: 0, help: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") {
        throw new Error(`bench:demo: ${flag} needs a value. ${DEMO_USAGE}`);
      }
      return v;
    };
    const int = (min: number) => {
      const v = value(), n = Number(v);
      if (!Number.isInteger(n) || n < min) {
        throw new Error(`bench:demo: ${flag} must be an integer >= ${min}, got "${v}"`);
      }
      return n;
    };
    if (flag === "--help" || flag === "-h") out.help = true;
    else if (flag === "--model") out.model = value();
    else if (flag === "--motion-module") out.motionModule = value();
    else if (flag === "--motion-module-config") out.motionModuleConfig = value();
    else if (flag === "--background") {
      const b = value();
      if (b !== "dark" && b !== "paper") {
        throw new Error(`bench:demo: --background must be dark or paper, got "${b}"`);
      }
      out.background = b;
    } else if (flag === "--count") out.count = int(1);
    else if (flag === "--seed") out.seed = int(0);
    else if (flag === "--frames") out.frames = int(2);
    else if (flag === "--size") {
      out.size = int(8);
      if (out.size % 8) {
        throw new Error(`bench:demo: --size must be a multiple of 8, got ${out.size}`);
      }
    } else if (flag === "--steps") out.steps = int(1);
    else if (flag === "--guidance") {
      const v = value();
      out.guidance = Number(v);
      if (!Number.isFinite(out.guidance)) {
        throw new Error(`bench:demo: --guidance must be a number, got "${v}"`);
      }
    } else if (flag === "--gifs") out.gifs = value();
    else if (flag === "--json") out.json = value();
    else throw new Error(`bench:demo: unknown argument "${arg}". ${DEMO_USAGE}`);
  }
  if (out.motionModule !== undefined && out.model === undefined) {
    throw new Error("bench:demo: --motion-module needs --model (the demo brings its own)");
  }
  return out;
}

/**
 * One bench case: a prompt of the world and the generation seed.
 *
 * @example
 * ```ts
 * const c: BenchCase = { prompt: "a red circle moving right", seed: 900000 };
 * ```
 */
export interface BenchCase {
  /** `a <colour> <shape> <motion>`. */
  prompt: string;
  /** Generation seed (>= {@link BENCH_SEED_BASE}). */
  seed: number;
}

/**
 * The bench's cases: `count` prompts dealt from the world's prompts in an order shuffled from
 * `seed` (every prompt once before any twice), with seeds `BENCH_SEED_BASE + i`.
 *
 * @example
 * ```ts
 * benchCases(48, 0).length; // 48, all prompts different
 * ```
 */
export function benchCases(count: number, seed: number): BenchCase[] {
  const rng = new WorldRng(`bench ${seed}`);
  const out: BenchCase[] = [];
  let deck: string[] = [];
  for (let i = 0; i < count; i++) {
    if (deck.length === 0) {
      deck = allPrompts();
      for (let k = deck.length - 1; k > 0; k--) {
        const j = rng.int(k + 1);
        [deck[k], deck[j]] = [deck[j], deck[k]];
      }
    }
    out.push({ prompt: deck.pop()!, seed: BENCH_SEED_BASE + i });
  }
  return out;
}

/**
 * Rates over scored animations (fractions in [0, 1]).
 *
 * @example
 * ```ts
 * const r: Rates = rates([]);
 * r.n; // 0
 * ```
 */
export interface Rates {
  /** Animations scored. */
  n: number;
  /** Colour right. */
  colour: number;
  /** Shape right. */
  shape: number;
  /** Motion right. */
  motion: number;
  /** Background right. */
  background: number;
  /** Exactly one object. */
  oneObject: number;
}

/**
 * The fraction of scores right in each field (0 for an empty list).
 *
 * @example
 * ```ts
 * import { renderClip } from "../tools/demo/world.ts";
 * import { scoreAnimation } from "../tools/demo/classify.ts";
 *
 * const clip = renderClip(1, { frames: 4 });
 * rates([scoreAnimation(clip.frames, clip.truth)]).colour; // 1
 * ```
 */
export function rates(scores: readonly Omit<Score, "classification">[]): Rates {
  const n = scores.length;
  const rate = (k: "colour" | "shape" | "motion" | "background" | "oneObject") =>
    n === 0 ? 0 : scores.filter((s) => s[k]).length / n;
  return {
    n,
    colour: rate("colour"),
    shape: rate("shape"),
    motion: rate("motion"),
    background: rate("background"),
    oneObject: rate("oneObject"),
  };
}

/**
 * One line of the printed table.
 *
 * @example
 * ```ts
 * formatRates("demo", { n: 2, colour: 1, shape: 0.5, motion: 0, background: 1, oneObject: 1 });
 * ```
 */
export function formatRates(name: string, r: Rates): string {
  const pct = (v: number) => `${(v * 100).toFixed(0)}%`.padStart(6);
  return `${name.padEnd(12)} ${String(r.n).padStart(4)} ${pct(r.colour)} ${pct(r.shape)} ` +
    `${pct(r.motion)} ${pct(r.background)} ${pct(r.oneObject)}`;
}

/**
 * A model to measure and the background it should draw.
 *
 * @example
 * ```ts
 * const [v] = await variantsOf(parseDemoArgs(["--model", "demo-weights"]));
 * v.demoSettings; // true for a `deno task demo:train` folder
 * ```
 */
export interface Variant {
  name: string;
  model?: string;
  motionModule?: string;
  motionModuleConfig?: string;
  background: Background;
  /** Reported as unavailable instead of failing when it does not load. */
  optional: boolean;
  /** Generate at the demo's defaults (a `deno task demo:train` folder), not a request's. */
  demoSettings?: boolean;
}

/** Whether `path` exists. */
async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/**
 * The models to measure: the one named, else the built-in demo and then `demo:paper`. A
 * `deno task demo:train` folder (it holds recipe.json) is measured at the demo's defaults with its
 * own motion module; a motion-module file with a `<name>.config.json` beside it (as demo:train
 * writes) loads with that config unless `--motion-module-config` names one: its heads and groups
 * are not in the weights, and the defaults would load it silently wrong.
 *
 * @example
 * ```ts
 * const variants = await variantsOf(parseDemoArgs([])); // demo, demo:paper
 * ```
 */
export async function variantsOf(o: DemoBenchOptions): Promise<Variant[]> {
  if (o.model) {
    const background = o.background ?? (/paper/i.test(o.model) ? "paper" : "dark");
    const trained = await exists(join(o.model, OUTPUT_FILES.summary));
    let motionModule = o.motionModule;
    if (!motionModule && trained && await exists(join(o.model, OUTPUT_FILES.motion))) {
      motionModule = join(o.model, OUTPUT_FILES.motion);
    }
    let motionModuleConfig = o.motionModuleConfig;
    const beside = motionModule?.replace(/\.(safetensors|ckpt|pt|pth)$/i, ".config.json");
    if (!motionModuleConfig && beside && beside !== motionModule && await exists(beside)) {
      motionModuleConfig = beside;
    }
    return [{
      name: o.model,
      model: o.model,
      motionModule,
      motionModuleConfig,
      background,
      optional: false,
      demoSettings: trained,
    }];
  }
  return [
    { name: "demo", background: o.background ?? "dark", optional: false },
    { name: "demo:paper", model: "demo:paper", background: "paper", optional: false },
  ];
}

async function main(): Promise<number> {
  let o: DemoBenchOptions;
  try {
    o = parseDemoArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (o.help) {
    console.log(DEMO_USAGE);
    return 0;
  }
  const cases = benchCases(o.count, o.seed);
  const report: Record<string, unknown>[] = [];
  console.log(`${cases.length} prompt/seed pairs (case seed ${o.seed})`);
  console.log(`${"model".padEnd(12)}    n colour  shape motion     bg    one`);
  for (const v of await variantsOf(o)) {
    let pipe;
    try {
      pipe = await loadPipeline({
        model: v.model,
        motionModule: v.motionModule,
        motionModuleConfig: v.motionModuleConfig,
      });
    } catch (e) {
      if (!v.optional) throw e;
      const reason = (e as Error).message.split("\n")[0];
      console.log(`${v.name.padEnd(12)} not available (${reason})`);
      report.push({ name: v.name, available: false, reason });
      continue;
    }
    try {
      const d = pipe.info.demo || v.demoSettings
        ? { ...REQUEST_DEFAULTS, ...DEMO_DEFAULTS }
        : REQUEST_DEFAULTS;
      const size = o.size ?? d.width;
      const settings = {
        frames: o.frames ?? d.frames,
        width: size,
        height: size,
        steps: o.steps ?? d.steps,
        guidance: o.guidance ?? d.guidance,
      };
      const t0 = performance.now();
      const results = [];
      for (const [i, c] of cases.entries()) {
        const anim = await pipe.generate({ prompt: c.prompt, seed: c.seed, ...settings });
        const score = scoreAnimation(anim.frames, {
          ...parsePrompt(c.prompt),
          background: v.background,
        });
        if (o.gifs) await saveGif(join(o.gifs, v.name.replace(/[^\w.-]+/g, "_")), i, anim.frames);
        results.push({ ...c, ...score });
      }
      const seconds = (performance.now() - t0) / 1000;
      const r = rates(results);
      console.log(`${formatRates(v.name, r)}   (${(seconds / cases.length).toFixed(2)} s each)`);
      report.push({
        name: v.name,
        available: true,
        model: pipe.info.model,
        motionModule: pipe.info.motionModule,
        adapter: pipe.info.adapter,
        background: v.background,
        settings,
        seconds,
        rates: r,
        results,
      });
    } finally {
      pipe.dispose();
    }
  }
  if (o.json) {
    await Deno.writeTextFile(o.json, JSON.stringify({ seed: o.seed, variants: report }, null, 2));
    console.log(`wrote ${o.json}`);
  }
  return 0;
}

async function saveGif(dir: string, index: number, frames: Frame[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(
    join(dir, `${String(index).padStart(3, "0")}.gif`),
    encodeGif(frames, { fps: 8 }),
  );
}

if (import.meta.main) Deno.exit(await main());
