import { assert, assertEquals } from "../assert.ts";
import { writeWorldClips } from "../../tools/demo/dataset.ts";
import { ClipDataset } from "../../engine/training/data.ts";
import { TorchGenerator } from "../../engine/rng.ts";
import { decodeGif } from "../../engine/input/gif.ts";
import { allPrompts } from "../../tools/demo/world.ts";
import { scoreAnimation } from "../../tools/demo/classify.ts";

Deno.test("dataset: a written folder of GIFs + CSV opens with ClipDataset and batches", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-world-" });
  try {
    const set = await writeWorldClips(dir, { count: 6, seed: 3, frames: 8, width: 32, height: 32 });
    const csv = await Deno.readTextFile(set.csvPath);
    assertEquals(csv.split("\n")[0], "videoid,name");
    assertEquals(csv.trim().split("\n").length, 7);
    const skipped: string[] = [];
    const ds = await ClipDataset.open({
      videoFolder: set.videoFolder,
      csvPath: set.csvPath,
      sampleSize: 32,
      sampleStride: 1,
      sampleNFrames: 8,
      verify: true,
      onSkip: (path, reason) => skipped.push(`${path}: ${reason}`),
    });
    assertEquals(skipped, []);
    assertEquals(ds.length, 6);
    assertEquals(ds.clips.map((c) => c.caption), set.clips.map((c) => c.caption));
    assertEquals(
      ds.clips.map((c) => [c.info.frameCount, c.info.width]),
      set.clips.map(() => [8, 32]),
    );
    const batch = await ds.batch(2, new TorchGenerator(0));
    assertEquals(batch.pixels.shape, [2, 8, 3, 32, 32]);
    let lo = Infinity, hi = -Infinity;
    for (const v of batch.pixels.data) lo = Math.min(lo, v), hi = Math.max(hi, v);
    assert(
      lo < -0.7 && hi > 0.5,
      `pixels span [${lo}, ${hi}], expected a dark background and a bright object`,
    );
    // Six clips, six different prompts (one pass over the shuffled prompts), none excluded.
    assertEquals(new Set(set.clips.map((c) => c.caption)).size, 6);
    // The written GIFs still read as their captions say.
    for (const c of set.clips) {
      const frames = decodeGif(await Deno.readFile(`${dir}/${c.videoid}.gif`)).frames;
      const s = scoreAnimation(frames, c.truth);
      assert(
        s.colour && s.motion && s.background,
        `${c.videoid}.gif does not read as "${c.caption}"`,
      );
    }
    const truth = JSON.parse(await Deno.readTextFile(`${dir}/truth.json`));
    assertEquals(truth.length, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dataset: stills are one-frame GIFs captioned by colour and shape; exclude holds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-world-" });
  try {
    const keep = allPrompts().filter((p) => p.startsWith("a red circle"));
    const exclude = allPrompts().filter((p) => !keep.includes(p));
    const set = await writeWorldClips(dir, {
      count: 8,
      stills: true,
      background: "paper",
      exclude,
      width: 32,
      height: 32,
    });
    assertEquals(new Set(set.clips.map((c) => c.caption)), new Set(["a red circle"]));
    const ds = await ClipDataset.open({
      videoFolder: set.videoFolder,
      csvPath: set.csvPath,
      sampleSize: 32,
      isImage: true,
    });
    assertEquals(ds.clips.map((c) => c.info.frameCount), new Array(8).fill(1));
    const batch = await ds.batch(3, new TorchGenerator(1));
    assertEquals(batch.pixels.shape, [3, 3, 32, 32]);
    assertEquals(batch.prompts, ["a red circle", "a red circle", "a red circle"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
