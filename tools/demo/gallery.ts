/**
 * `deno task demo:gallery`: the README's gallery. For each prompt of {@link GALLERY_PROMPTS} it
 * generates the built-in `demo` and `demo:paper` with the same seed, at the demo's defaults, and
 * writes one GIF with the two side by side (base left, paper right; the README shows them at
 * twice the size) to `--out` (default docs/gallery). Both models share one motion module: the paper
 * variant's motion comes from a module that never saw paper.
 *
 *   deno task demo:gallery [--out DIR] [--seed N]
 * @module
 */

import { join } from "node:path";
import { loadPipeline } from "../../engine/pipeline.ts";
import { encodeGif } from "../../engine/output/gif.ts";
import type { Frame } from "../../engine/output/frame.ts";
import { Gpu } from "../../kernels/gpu/device.ts";

/** The gallery's prompts: every motion, every shape, six colours. */
export const GALLERY_PROMPTS: readonly string[] = [
  "a red circle moving right",
  "a blue square moving up",
  "a green triangle growing",
  "a purple circle shrinking",
  "a yellow square moving left",
  "a orange triangle moving down",
];

/** Pixels between the two halves of a gallery frame. */
const GAP = 4;

/**
 * `a` and `b` side by side, each scaled up `scale` times (nearest neighbour), on white.
 *
 * @example
 * ```ts
 * sideBySide(base, paper, 2).width; // 2 * (base.width + paper.width) + 4
 * ```
 */
export function sideBySide(a: Frame, b: Frame, scale: number): Frame {
  const height = Math.max(a.height, b.height) * scale;
  const width = (a.width + b.width) * scale + GAP;
  const data = new Uint8ClampedArray(width * height * 4).fill(255);
  const put = (f: Frame, x0: number) => {
    for (let y = 0; y < f.height * scale; y++) {
      for (let x = 0; x < f.width * scale; x++) {
        const s = (Math.floor(y / scale) * f.width + Math.floor(x / scale)) * 4;
        data.set(f.data.subarray(s, s + 4), (y * width + x0 + x) * 4);
      }
    }
  };
  put(a, 0);
  put(b, a.width * scale + GAP);
  return { data, width, height };
}

/** A file name for a prompt: its words joined by dashes. */
export function galleryFileName(prompt: string): string {
  return prompt.replace(/^a /, "").replace(/\s+/g, "-") + ".gif";
}

/**
 * `--out DIR` and `--seed N` of the demo picture tasks (`task` names the task in the usage
 * line); null after printing the one-line usage error.
 */
export function parsePictureArgs(
  args: string[],
  task: string,
  defaultOut: string,
): { out: string; seed: number } | null {
  let out = defaultOut, seed = 7;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out" && args[i + 1]) out = args[++i];
    else if (args[i] === "--seed" && Number.isInteger(Number(args[i + 1]))) {
      seed = Number(args[++i]);
    } else {
      console.error(
        `${task}: unknown argument "${args[i]}". usage: deno task ${task} [--out DIR] [--seed N]`,
      );
      return null;
    }
  }
  return { out, seed };
}

async function main(args: string[]): Promise<number> {
  const parsed = parsePictureArgs(args, "demo:gallery", "docs/gallery");
  if (!parsed) return 2;
  const { out, seed } = parsed;
  await Deno.mkdir(out, { recursive: true });
  const t0 = performance.now();
  const device = await Gpu.create();
  const frames = new Map<string, Frame[][]>();
  for (const model of ["demo", "demo:paper"]) {
    const pipe = await loadPipeline({ model, device });
    try {
      for (const prompt of GALLERY_PROMPTS) {
        const anim = await pipe.generate({ prompt, seed });
        frames.set(prompt, [...(frames.get(prompt) ?? []), anim.frames]);
      }
    } finally {
      pipe.dispose();
    }
  }
  let bytes = 0;
  for (const [prompt, [base, paper]] of frames) {
    const gif = encodeGif(base.map((f, i) => sideBySide(f, paper[i], 1)), { fps: 8 });
    await Deno.writeFile(join(out, galleryFileName(prompt)), gif);
    bytes += gif.length;
  }
  device.destroy();
  console.error(
    `demo:gallery: ${frames.size} GIFs (${
      (bytes / 1024).toFixed(0)
    } KB) in ${out}, seed ${seed}, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
