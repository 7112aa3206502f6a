/**
 * Does a demo model's motion module follow the motion words? Its denoising loss on fresh world
 * clips (seeds from 900,000: never trained on) with each clip's own prompt, with the opposite
 * motion word (left <-> right, up <-> down, growing <-> shrinking) and with no prompt, and with
 * its own prompt but no motion module (`identity`; also with the opposite motion word and another
 * colour word: does the frozen image model read them at all?), at t = 100..999, through the trainer's
 * forward. A module that helps beats the identity, most of all at high noise, where the layout
 * of each frame is decided. A module that reads the motion word does worse with
 * the opposite one; equal losses mean the prompt's motion never reaches it (the motion module
 * reads text only through the frozen UNet's features).
 *
 *   deno run -A tools/demo/probe.ts [DIR] [--clips N] [--afterimages K]
 *
 * DIR defaults to the shipped demo model; `--afterimages` defaults to the model's recipe.json (its
 * object scale too). A DIR with no motion_module.safetensors yet (after the UNet stage) gets the
 * identity rows only.
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTrainer } from "../../engine/training/trainer.ts";
import { TorchGenerator } from "../../engine/rng.ts";
import { COLOURS, renderClip } from "./world.ts";
import { worldOptions } from "./recipe.ts";

const OPPOSITE: Record<string, string> = {
  "moving left": "moving right",
  "moving right": "moving left",
  "moving up": "moving down",
  "moving down": "moving up",
  growing: "shrinking",
  shrinking: "growing",
};
const TIMESTEPS = [100, 300, 500, 700, 850, 950, 999];

/** The probe's rows: a prompt variant with the trained module, or with none (identity). */
export type ProbeRow =
  | "own"
  | "opposite"
  | "empty"
  | "identity"
  | "identity, opposite"
  | "identity, other colour";

/** The loss per timestep for each prompt variant. */
export async function probeMotionWords(
  dir: string,
  o: { clips?: number; afterimages?: number } = {},
): Promise<Partial<Record<ProbeRow, number[]>>> {
  const recipe = JSON.parse(await Deno.readTextFile(join(dir, "recipe.json")));
  const { size: S, frames: F } = recipe.config as { size: number; frames: number };
  const world = {
    ...worldOptions(recipe.config, true),
    afterimages: o.afterimages ?? recipe.config.afterimages ?? 0,
  };
  const B = o.clips ?? 8, side = S / 8;
  const clips = Array.from(
    { length: B },
    (_, i) => renderClip(900_000 + i, { frames: F, width: S, height: S, ...world }),
  );
  const pixels = new Float32Array(B * F * 3 * S * S);
  clips.forEach((c, b) =>
    c.frames.forEach((fr, f) => {
      for (let q = 0; q < S * S; q++) {
        for (let ch = 0; ch < 3; ch++) {
          pixels[((b * F + f) * 3 + ch) * S * S + q] = fr.data[q * 4 + ch] / 127.5 - 1;
        }
      }
    })
  );
  const own = clips.map((c) => c.caption);
  const opposite = own.map((p) => p.replace(/moving \w+|growing|shrinking/, (m) => OPPOSITE[m]));
  const otherColour = own.map((p) =>
    p.replace(/^an? (\w+)/, (_, c) => `a ${COLOURS[(COLOURS.indexOf(c) + 3) % COLOURS.length]}`)
  );
  const gen = new TorchGenerator(123);
  const noise = gen.randn([B, 4, F, side, side]);
  const posterior = gen.randn([B * F, 4, side, side]);
  const out: Partial<Record<ProbeRow, number[]>> = {};
  // The identity rows run no motion module (a zero-initialised one, whose output projection is
  // zero): what the trained module gains over the frozen image model, and whether that image
  // model reads the motion and colour words at all (the module sees text only through it).
  const file = join(dir, "motion_module.safetensors");
  const trained = await Deno.stat(file).then(() => true, () => false);
  const runs: [ProbeRow, string[], string | undefined][] = [];
  if (trained) {
    runs.push(["own", own, file], ["opposite", opposite, file], ["empty", own.map(() => ""), file]);
  }
  runs.push(
    ["identity", own, undefined],
    ["identity, opposite", opposite, undefined],
    ["identity, other colour", otherColour, undefined],
  );
  for (const [name, prompts, motionModule] of runs) {
    const trainer = await createTrainer({ train: "motion", model: dir, motionModule, seed: 1 });
    try {
      const row: number[] = out[name] = [];
      for (const t of TIMESTEPS) {
        row.push(
          await trainer.loss({
            pixels: { shape: [B, F, 3, S, S], data: pixels },
            prompts,
            noise: { shape: [B, 4, F, side, side], data: noise },
            timesteps: new Array(B).fill(t),
            posteriorNoise: { shape: [B * F, 4, side, side], data: posterior },
          }),
        );
      }
    } finally {
      trainer.dispose();
    }
  }
  return out;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = Number(args.splice(i, 2)[1]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected an integer >= 0`);
    return v;
  };
  const clips = flag("--clips"), afterimages = flag("--afterimages");
  const dir = args[0] ?? fileURLToPath(new URL("../../weights/demo_model", import.meta.url));
  const r = await probeMotionWords(dir, { clips, afterimages });
  console.log(`${"t".padEnd(24)} ${TIMESTEPS.map((t) => String(t).padStart(7)).join("")}`);
  for (const [name, losses] of Object.entries(r)) {
    console.log(`${name.padEnd(24)} ${losses!.map((x) => x.toFixed(4).padStart(7)).join("")}`);
  }
}
