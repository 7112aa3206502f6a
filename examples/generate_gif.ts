/**
 * Generates a GIF from a Stable Diffusion 1.5 checkpoint and an AnimateDiff motion module.
 *
 * ```sh
 * # The built-in demo model (trained by Zoetrope on a synthetic world; offline, seconds):
 * deno run -A examples/generate_gif.ts --prompt "a red circle moving right" --out circle.gif
 * # A real checkpoint (single file or diffusers folder) and motion module:
 * deno run -A examples/generate_gif.ts --model models/checkpoints/toonyou_beta6.safetensors \
 *   --motion-module models/motion_modules/mm_sd_v15_v2.ckpt --tokenizer models/clip-tokenizer \
 *   --prompt "a girl walking in cherry blossoms" --frames 16 --size 512 --steps 25 --out walk.gif
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { loadPipeline } from "@zoetrope/animatediff";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    prompt: { type: "string" },
    "negative-prompt": { type: "string" },
    model: { type: "string" },
    "motion-module": { type: "string" },
    tokenizer: { type: "string" },
    frames: { type: "string", default: "8" },
    size: { type: "string" },
    steps: { type: "string" },
    seed: { type: "string", default: "42" },
    out: { type: "string", default: "animation.gif" },
  },
});

// Without --model the demo model runs: it draws "a <colour> <shape> <motion>" at 64 x 64.
const demo = flags.model === undefined || flags.model.startsWith("demo");
const size = Number(flags.size ?? (demo ? 64 : 512));
const pipe = await loadPipeline({
  model: flags.model,
  motionModule: flags["motion-module"],
  tokenizer: flags.tokenizer,
});
try {
  const anim = await pipe.generate({
    prompt: flags.prompt ??
      (demo ? "a red circle moving right" : "a lighthouse in a storm, waves crashing"),
    negativePrompt: flags["negative-prompt"] ?? (demo ? "" : "blurry, low quality"),
    frames: Number(flags.frames),
    width: size,
    height: size,
    // The demo models have their own defaults (size, frames, steps, guidance).
    steps: flags.steps ? Number(flags.steps) : demo ? undefined : 25,
    seed: Number(flags.seed),
  });
  await Deno.writeFile(flags.out, anim.toGif());
  console.log(
    `${flags.out}: ${anim.frames.length} frames, ${anim.width}x${anim.height}, ` +
      `seed ${anim.seed}, ${Math.round(anim.timings.total)} ms on ${pipe.info.adapter}`,
  );
} finally {
  pipe.dispose();
}
