/**
 * Writes the demo world to disk as a training set that engine/training/data.ts (`ClipDataset`)
 * opens: one GIF per clip, `<videoid>.gif`, a WebVid-style CSV (`videoid,name`) and, for
 * checks, `truth.json` with every clip's ground truth. Prompts are dealt evenly: every pass over
 * the world's prompts visits each once, in an order shuffled from the seed. `stills: true` writes
 * one-frame GIFs captioned `a <colour> <shape>` for the text-to-image stage (world.ts's module doc
 * says how stills are drawn and captioned).
 * @module
 */

import { join } from "node:path";
import { encodeGif } from "../../engine/output/gif.ts";
import {
  allPrompts,
  type Background,
  type ClipTruth,
  parsePrompt,
  renderClip,
  renderStill,
  WorldRng,
} from "./world.ts";

/**
 * Options of {@link writeWorldClips}.
 *
 * @example
 * ```ts
 * const options: WriteOptions = { count: 216, seed: 1, frames: 16, background: "dark" };
 * ```
 */
export interface WriteOptions {
  /** How many clips (or stills) to write. */
  count: number;
  /** Seed of the prompt order and of every clip (default 0). */
  seed?: number;
  /** Frames per clip (default 16; stills have 1). */
  frames?: number;
  /** Width in pixels (default 64). */
  width?: number;
  /** Height in pixels (default 64). */
  height?: number;
  /** Background of every clip (default `dark`). */
  background?: Background;
  /** Write stills captioned `a <colour> <shape>` instead of clips (default false). */
  stills?: boolean;
  /** Prompts never to write (e.g. combinations held out for the bench). */
  exclude?: readonly string[];
  /** GIF playback rate (default 8). */
  fps?: number;
}

/**
 * What {@link writeWorldClips} wrote.
 *
 * @example
 * ```ts
 * const { csvPath, clips }: WrittenSet = await writeWorldClips("data/demo", { count: 4 });
 * ```
 */
export interface WrittenSet {
  /** The folder of GIFs (`videoFolder` of ClipDataset). */
  videoFolder: string;
  /** The CSV (`csvPath` of ClipDataset). */
  csvPath: string;
  /** Each written clip: its id, caption and ground truth. */
  clips: { videoid: string; caption: string; truth: ClipTruth }[];
}

/** A CSV field, quoted when it holds a comma, quote or line break. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * Fills `folder` (created if needed) with `count` GIF clips of the world, `captions.csv` and
 * `truth.json`. Clip `i` is drawn from seed `seed * 1_000_003 + i`, so sets written with
 * different seeds do not share clips.
 *
 * @example
 * ```ts
 * import { ClipDataset } from "../../engine/training/data.ts";
 *
 * const set = await writeWorldClips("data/demo-clips", { count: 432, seed: 1 });
 * const dataset = await ClipDataset.open({
 *   videoFolder: set.videoFolder, csvPath: set.csvPath, sampleSize: 64, sampleStride: 1, sampleNFrames: 16,
 * });
 * ```
 */
export async function writeWorldClips(folder: string, options: WriteOptions): Promise<WrittenSet> {
  const { count, seed = 0, stills = false, fps = 8 } = options;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`writeWorldClips: expected count to be an integer >= 1, got ${count}`);
  }
  const excluded = new Set(options.exclude ?? []);
  const prompts = allPrompts().filter((p) => !excluded.has(p));
  if (prompts.length === 0) throw new RangeError("writeWorldClips: exclude leaves no prompt");
  await Deno.mkdir(folder, { recursive: true });
  const rng = new WorldRng(`order ${seed}`);
  const digits = String(count - 1).length;
  const clips: WrittenSet["clips"] = [];
  let order: string[] = [];
  for (let i = 0; i < count; i++) {
    if (order.length === 0) order = shuffled(prompts, rng);
    const prompt = order.pop()!;
    const drawn = {
      ...parsePrompt(prompt),
      background: options.background ?? "dark",
      width: options.width,
      height: options.height,
    };
    const clipSeed = seed * 1_000_003 + i;
    const videoid = String(i).padStart(digits, "0");
    let frames, caption, truth;
    if (stills) {
      const still = renderStill(clipSeed, drawn);
      [frames, caption, truth] = [[still.frame], still.caption, still.truth];
    } else {
      ({ frames, caption, truth } = renderClip(clipSeed, { ...drawn, frames: options.frames }));
    }
    await Deno.writeFile(join(folder, `${videoid}.gif`), encodeGif(frames, { fps }));
    clips.push({ videoid, caption, truth });
  }
  const csvPath = join(folder, "captions.csv");
  const rows = clips.map((c) => `${c.videoid},${csvField(c.caption)}`);
  await Deno.writeTextFile(csvPath, ["videoid,name", ...rows].join("\n") + "\n");
  await Deno.writeTextFile(join(folder, "truth.json"), JSON.stringify(clips) + "\n");
  return { videoFolder: folder, csvPath, clips };
}

/** A copy of `list` in a Fisher-Yates order drawn from `rng`. */
function shuffled<T>(list: readonly T[], rng: WorldRng): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
