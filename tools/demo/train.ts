/**
 * `deno task demo:train`: trains the built-in demo models from scratch with the recipe in
 * tools/demo/recipe.ts (VAE, text-to-image UNet + text encoder, motion module, the demo:paper
 * LoRA), seeded, and prints how long it took. Progress goes to stderr; `--json` prints the
 * summary (recipe.json) on stdout.
 *
 *   deno task demo:train [--out DIR] [--steps-scale X] [--seed N] [--stage vae|unet|motion|paper]
 *                        [--json]
 *
 * `--steps-scale 0.01` takes a hundredth of every stage's steps (at least one): a quick trial
 * whose summary still gives each stage's seconds per step and the full recipe's time at that
 * rate. `--stage` runs one stage from the earlier stages' outputs in `--out`.
 * @module
 */

import { DEMO_RECIPE, runRecipe, type Stage, STAGES } from "./recipe.ts";

/** Usage text. */
export const TRAIN_USAGE: string =
  "usage: deno task demo:train [--out DIR] [--steps-scale X] [--seed N] " +
  `[--stage ${STAGES.join("|")}] [--json]`;

/**
 * Parsed `demo:train` options.
 *
 * @example
 * ```ts
 * const o: DemoTrainOptions = parseTrainArgs(["--steps-scale", "0.01"]);
 * ```
 */
export interface DemoTrainOptions {
  /** Output folder (default `demo-weights`). */
  out: string;
  /** Multiplies every stage's steps. */
  stepsScale: number;
  /** The recipe seed. */
  seed: number;
  /** Run only this stage. */
  stage?: Stage;
  /** Print the summary as JSON on stdout. */
  json: boolean;
  /** Show usage and exit. */
  help: boolean;
}

/**
 * Parses the arguments (`--flag value` or `--flag=value`); throws a one-line error on bad input.
 *
 * @example
 * ```ts
 * parseTrainArgs(["--out=w", "--stage", "motion"]); // { out: "w", stage: "motion", ... }
 * ```
 */
export function parseTrainArgs(args: readonly string[]): DemoTrainOptions {
  const out: DemoTrainOptions = {
    out: "demo-weights",
    stepsScale: 1,
    seed: DEMO_RECIPE.seed,
    json: false,
    help: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i], eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") throw new Error(`demo:train: ${flag} needs a value`);
      return v;
    };
    if (flag === "--help" || flag === "-h") out.help = true;
    else if (flag === "--json") out.json = true;
    else if (flag === "--out") out.out = value();
    else if (flag === "--steps-scale") {
      const v = value();
      out.stepsScale = Number(v);
      if (!(out.stepsScale > 0)) {
        throw new Error(`demo:train: --steps-scale must be a number > 0, got "${v}"`);
      }
    } else if (flag === "--seed") {
      const v = value();
      out.seed = Number(v);
      if (!Number.isInteger(out.seed) || out.seed < 0) {
        throw new Error(`demo:train: --seed must be an integer >= 0, got "${v}"`);
      }
    } else if (flag === "--stage") {
      const v = value();
      if (!(STAGES as readonly string[]).includes(v)) {
        throw new Error(`demo:train: --stage must be one of ${STAGES.join(", ")}, got "${v}"`);
      }
      out.stage = v as Stage;
    } else throw new Error(`demo:train: unknown argument "${arg}". ${TRAIN_USAGE}`);
  }
  return out;
}

/** "1h 02m 03s" / "4m 05s" / "6.7s". */
function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
  return h ? `${h}h ${mm}m ${ss}s` : `${m}m ${ss}s`;
}

async function main(args: string[]): Promise<number> {
  let o: DemoTrainOptions;
  try {
    o = parseTrainArgs(args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (o.help) {
    console.log(TRAIN_USAGE);
    return 0;
  }
  const log = (line: string) => console.error(line);
  log(
    `demo:train: ${o.stage ?? "all stages"} -> ${o.out} (seed ${o.seed}, steps x${o.stepsScale})`,
  );
  const every = new Map<Stage, number>();
  const summary = await runRecipe({ ...DEMO_RECIPE, seed: o.seed }, {
    out: o.out,
    stepsScale: o.stepsScale,
    stage: o.stage,
    onProgress: (p) => {
      const n = every.get(p.stage) ?? Math.max(1, Math.round(p.steps / 50));
      every.set(p.stage, n);
      if (p.step % n && p.step !== p.steps && p.step !== 1) return;
      log(
        `  ${p.stage} step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  ` +
          `${p.secondsPerStep.toFixed(2)} s/step  ETA ${duration(p.etaSeconds)}`,
      );
    },
    onPool: (stage, size, seconds) =>
      log(`  ${stage}: ${size} samples encoded by the frozen VAE in ${duration(seconds)}`),
    onStage: (stage, r) =>
      log(
        `${stage}: ${r.steps} steps in ${duration(r.seconds)} (${r.secondsPerStep.toFixed(2)} ` +
          `s/step; full recipe's ${r.fullSteps ?? 0} steps: ` +
          `${duration(r.fullSeconds)}), loss ${r.firstLoss.toFixed(4)} -> ${r.lastLoss.toFixed(4)}`,
      ),
  });
  const full = Object.values(summary.stages).reduce((s, r) => s + r.fullSeconds, 0);
  log(
    `demo:train: took ${duration(summary.seconds)}; weights ` +
      `${(summary.totalWeightBytes / 1e6).toFixed(2)} MB (f16) in ${o.out}` +
      (o.stepsScale !== 1 ? `; the full recipe at these rates: ${duration(full)}` : ""),
  );
  if (o.json) console.log(JSON.stringify(summary, null, 2));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
