/**
 * `deno task train` — trains a motion module, a MotionLoRA, the UNet or the VAE from a folder of
 * clips with an AnimateDiff training YAML (engine/training/run.ts does the work).
 *
 * ```sh
 * deno task train --config configs/motion_lora.yaml
 * ```
 *
 * Exit codes: 0 success, 2 bad input (one line on stderr saying what to change), 130 stopped by
 * Ctrl-C (after writing a checkpoint), 1 other failures (no adapter, GPU errors).
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { InputError, NoAdapterError } from "./kernels/gpu/errors.ts";
import {
  parseTrainConfig,
  runTraining,
  type TrainConfig,
  type TrainEvent,
  type TrainResult,
} from "./engine/training/run.ts";

const HELP = `Usage: deno task train --config FILE.yaml [flags]

Trains a motion module (train: motion), a MotionLoRA (motion-lora), the UNet (unet) or the VAE
(vae) on a folder of clips, with the original AnimateDiff training YAML keys plus ours (README).

  --config FILE.yaml     the training config (required)
  --resume PATH|latest   continue from a checkpoint folder (overrides resume_from_checkpoint)
  --json                 print a machine-readable summary on stdout
  --progress / --quiet   force the progress line on / off (default: on when stderr is a terminal)
  --help                 this text

Ctrl-C stops after the current step and writes a checkpoint; a second Ctrl-C quits at once.
`;

const OPTIONS = {
  config: { type: "string" },
  resume: { type: "string" },
  json: { type: "boolean" },
  progress: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it. */
const EXIT_INTERRUPTED = 130;

function parse(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, allowPositionals: false, strict: true }).values;
  } catch (e) {
    throw new InputError(`${(e as Error).message.split("\n")[0]} (see --help)`);
  }
}

function fmtSeconds(s: number): string {
  s = Math.round(s);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** Renders training events on stderr: a one-line bar on a terminal, plain lines otherwise. */
class TrainProgress {
  #enc = new TextEncoder();
  #bar: boolean;
  #quiet: boolean;
  #open = false;
  #lastLogged = 0;

  constructor(bar: boolean, quiet: boolean) {
    this.#bar = bar && !quiet;
    this.#quiet = quiet;
  }

  #write(text: string) {
    Deno.stderr.writeSync(this.#enc.encode(text));
  }

  /** A full line, above the bar. */
  line(text: string, always = false) {
    if (this.#quiet && !always) return;
    this.#write(this.#open ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.#open = false;
  }

  event = (e: TrainEvent) => {
    switch (e.type) {
      case "note":
        return this.line(`note: ${e.message}`);
      case "bad-data":
        return this.line(`warning: skipped ${e.path}: ${e.reason}`, true);
      case "checkpoint":
        return this.line(`checkpoint: step ${e.step} -> ${e.dir}`);
      case "validation-start":
        if (this.#bar) {
          this.#write(`\r\x1b[2Kvalidation: step ${e.step}, ${e.prompts} prompt(s)...`);
        }
        this.#open = this.#bar;
        return;
      case "validation":
        return this.line(`validation: step ${e.step} -> ${e.files.join(", ")}`);
      case "step": {
        const rate = e.itPerSec >= 1
          ? `${e.itPerSec.toFixed(2)} it/s`
          : `${(1 / e.itPerSec).toFixed(2)} s/it`;
        const eta = e.step < e.total ? `  ETA ${fmtSeconds(e.etaMs / 1000)}` : "";
        const stats = `loss ${e.smoothedLoss.toFixed(4)}  ${rate}${eta}${
          e.skipped ? "  (f16 overflow: step skipped)" : ""
        }`;
        if (this.#bar) {
          const width = 24, filled = Math.round((e.step / e.total) * width);
          this.#write(
            `\r\x1b[2Ktrain [${"#".repeat(filled)}${"-".repeat(width - filled)}] ` +
              `${e.step}/${e.total}  ${stats}`,
          );
          this.#open = true;
        } else if (!this.#quiet) {
          // Logs (no terminal): one line per ~5% of the run, and the last step.
          const every = Math.max(1, Math.round(e.total / 20));
          if (e.step === e.total || e.step - this.#lastLogged >= every) {
            this.#lastLogged = e.step;
            this.line(`step ${e.step}/${e.total}  ${stats}`);
          }
        }
        return;
      }
    }
  };

  done() {
    if (this.#open) this.#write("\n");
    this.#open = false;
  }
}

/** Paths in the config: as given when they exist from here, else beside the config file. */
function resolverFor(configPath: string): (p: string) => string {
  const base = dirname(resolve(configPath));
  return (p) => {
    if (p.startsWith("hf:") || p.startsWith("/")) return p;
    try {
      Deno.statSync(p);
      return p;
    } catch {
      return join(base, p);
    }
  };
}

function summary(config: TrainConfig, r: TrainResult) {
  return {
    train: config.train,
    weights: r.weights,
    interrupted: r.interrupted,
    steps: r.steps,
    resumedFrom: r.resumedFrom,
    seconds: r.seconds,
    loss: r.loss,
    smoothedLoss: r.smoothedLoss,
    checkpoints: r.checkpoints,
    samples: r.samples,
    lossCsv: r.lossCsv,
    lossPlot: r.lossPlot,
  };
}

/**
 * Runs `deno task train` with `args`; returns the exit code.
 *
 * @example
 * ```ts
 * import { main } from "./train.ts";
 *
 * Deno.exit(await main(["--config", "configs/motion_lora.yaml", "--quiet"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let source = "";
  let progress: TrainProgress | null = null;
  const stop = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) Deno.exit(EXIT_INTERRUPTED);
    stop.abort();
    progress?.line("stopping after this step to write a checkpoint (Ctrl-C again quits now)", true);
  };
  let listening = false;
  try {
    const flags = parse(args);
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    if (!flags.config) throw new InputError("--config FILE.yaml is required; see --help");
    const text = await Deno.readTextFile(flags.config).catch((e) => {
      throw new InputError(`--config: cannot read ${flags.config} (${(e as Error).name})`);
    });
    source = `${flags.config}: `;
    const resolvePath = resolverFor(flags.config);
    const { config, warnings } = parseTrainConfig(text, { resolvePath });
    for (const w of warnings) console.error(`warning: ${source}${w}`);
    if (flags.resume) {
      config.resumeFromCheckpoint = flags.resume === "latest"
        ? "latest"
        : resolvePath(flags.resume);
    }
    progress = new TrainProgress(
      flags.progress ? true : Deno.stderr.isTerminal(),
      flags.quiet ?? false,
    );
    Deno.addSignalListener("SIGINT", onSigint);
    listening = true;
    const result = await runTraining(config, { onEvent: progress.event, signal: stop.signal });
    progress.done();
    if (flags.json) console.log(JSON.stringify(summary(config, result)));
    if (result.interrupted) {
      const last = result.checkpoints.at(-1);
      console.error(
        `interrupted at step ${result.steps}` +
          (last ? `; checkpoint ${last}; continue with --resume latest` : "") +
          ` (${fmtSeconds(result.seconds)})`,
      );
      return EXIT_INTERRUPTED;
    }
    if (!flags.json) {
      console.error(
        `wrote ${result.weights} (${result.steps} steps, loss ${result.smoothedLoss.toFixed(4)}, ` +
          `${fmtSeconds(result.seconds)}; loss curve ${result.lossPlot})`,
      );
    }
    return 0;
  } catch (e) {
    progress?.done();
    const err = e as Error;
    if (err instanceof InputError) {
      console.error(`error: ${source}${err.message}`);
      return 2;
    }
    if (err instanceof NoAdapterError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    if (/out of memory|OutOfMemory|Not enough memory/i.test(err.message)) {
      console.error(
        `error: GPU out of memory (${err.message.split("\n")[0]}); use a smaller ` +
          "train_batch_size, sample_size or sample_n_frames, gradient_checkpointing: true or precision: f16",
      );
      return 1;
    }
    console.error(`error: ${err.message.split("\n")[0]}`);
    if (Deno.env.get("ZOETROPE_DEBUG")) console.error(err.stack);
    return 1;
  } finally {
    if (listening) Deno.removeSignalListener("SIGINT", onSigint);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
