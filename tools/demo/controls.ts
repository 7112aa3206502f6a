/**
 * `deno task demo:controls`: the README's pictures of the generation controls, made with the
 * built-in demo models. Each GIF shows two clips side by side with the same prompt and seed:
 * left without the control, right with it (for video to video: left the input clip, right the
 * result). The demo models are tiny, so these show what each control does, not how well.
 *
 *   deno task demo:controls [--out DIR] [--seed N]
 * @module
 */

import { join } from "node:path";
import { loadPipeline } from "../../engine/pipeline.ts";
import { encodeGif } from "../../engine/output/gif.ts";
import type { Frame } from "../../engine/output/frame.ts";
import type { GenerateRequest } from "../../engine/pipeline_types.ts";
import { Gpu } from "../../kernels/gpu/device.ts";
import { parsePictureArgs, sideBySide } from "./gallery.ts";
import { renderClip } from "./world.ts";
import { OUTPUT_FILES, type RecipeSummary, worldOptions } from "./recipe.ts";

/** One README picture: a request without and with a control. */
export interface ControlExample {
  /** File name in the output folder. */
  file: string;
  /** The model of both clips. */
  model: "demo" | "demo:paper";
  /** The clip on the left (none with `inputClip`: the input video is shown there). */
  before?: GenerateRequest;
  /** The clip on the right. */
  after: GenerateRequest;
  /** Video to video: the left half is this world clip, which `after` takes as its video. */
  inputClip?: { seed: number; colour: "green"; shape: "square"; motion: "moving left" };
}

const PROMPT = "a red circle moving right";

/** The examples, one per control that a picture explains. */
export const CONTROL_EXAMPLES: readonly ControlExample[] = [
  {
    file: "motion-effect.gif",
    model: "demo",
    before: { prompt: PROMPT },
    after: { prompt: PROMPT, motionEffect: 0 },
  },
  {
    file: "motion-scale.gif",
    model: "demo",
    before: { prompt: PROMPT },
    after: { prompt: PROMPT, motionScale: 1.5 },
  },
  {
    file: "prompt-travel.gif",
    model: "demo",
    before: { prompt: PROMPT },
    after: { prompt: "", promptMap: { 0: PROMPT, 7: "a blue circle moving right" } },
  },
  {
    file: "free-init.gif",
    model: "demo",
    before: { prompt: PROMPT },
    after: { prompt: PROMPT, freeInit: { iterations: 3, method: "gaussian" } },
  },
  {
    file: "long-clip.gif",
    model: "demo",
    before: { prompt: PROMPT, frames: 24, contextLength: 8, contextOverlap: 4 },
    after: {
      prompt: PROMPT,
      frames: 24,
      contextLength: 8,
      contextOverlap: 4,
      contextWeighting: "pyramid",
      freeNoise: true,
    },
  },
  {
    file: "video-to-video.gif",
    model: "demo:paper",
    inputClip: { seed: 3, colour: "green", shape: "square", motion: "moving left" },
    after: { prompt: "a green square moving left", strength: 0.7, scheduler: "ddim" },
  },
];

async function main(args: string[]): Promise<number> {
  const parsed = parsePictureArgs(args, "demo:controls", "docs/controls");
  if (!parsed) return 2;
  const { out, seed } = parsed;
  await Deno.mkdir(out, { recursive: true });
  const t0 = performance.now();
  const device = await Gpu.create();
  // The input clip is drawn as the shipped model's world (object scale, motion blur).
  const recipe = JSON.parse(
    await Deno.readTextFile(
      new URL(`../../weights/demo_model/${OUTPUT_FILES.summary}`, import.meta.url),
    ),
  ) as RecipeSummary;
  const world = worldOptions(recipe.config, true);
  let bytes = 0;
  try {
    for (const model of ["demo", "demo:paper"] as const) {
      const pipe = await loadPipeline({ model, device });
      try {
        for (const ex of CONTROL_EXAMPLES.filter((e) => e.model === model)) {
          let left: Frame[], right: Frame[];
          if (ex.inputClip) {
            const { seed: clipSeed, ...spec } = ex.inputClip;
            left = renderClip(clipSeed, { ...spec, frames: 8, width: 64, height: 64, ...world })
              .frames;
            right = (await pipe.generate({ ...ex.after, seed, video: left })).frames;
          } else {
            left = (await pipe.generate({ ...ex.before!, seed })).frames;
            right = (await pipe.generate({ ...ex.after, seed })).frames;
          }
          const gif = encodeGif(left.map((f, i) => sideBySide(f, right[i], 1)), { fps: 8 });
          await Deno.writeFile(join(out, ex.file), gif);
          bytes += gif.length;
          console.error(`demo:controls: ${ex.file} (${(gif.length / 1024).toFixed(0)} KB)`);
        }
      } finally {
        pipe.dispose();
      }
    }
  } finally {
    device.destroy();
  }
  console.error(
    `demo:controls: ${CONTROL_EXAMPLES.length} GIFs (${(bytes / 1024).toFixed(0)} KB) in ${out}, ` +
      `seed ${seed}, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
