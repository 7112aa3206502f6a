/**
 * The training data pipeline (engine/training/data.ts): clips and captions found on disk, bad
 * data reported once and skipped, sampling as the original WebVid10M dataset, transforms and
 * seeded determinism. Clips are small synthetic files written into a temp dir; their pixels
 * encode frame index (R), column (G) and row (B) so every sampled value can be checked.
 */

import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { ClipDataset, type ClipDatasetOptions } from "../../../engine/training/data.ts";
import { parseCsv } from "../../../engine/training/captions.ts";
import {
  centerCropOffset,
  resizedSize,
  sampleFrameIndices,
  transformFrames,
} from "../../../engine/training/clip_transform.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { encodeApng, encodeGif, encodePng } from "../../../engine/output/mod.ts";
import type { Frame } from "../../../engine/output/frame.ts";

const R_STEP = 8, G_STEP = 20, B_STEP = 30;

/** `count` frames of w x h: R = 8 * frame, G = 20 * x, B = 30 * y. */
function codedFrames(w: number, h: number, count: number): Frame[] {
  return Array.from({ length: count }, (_, t) => {
    const data = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        data.set([t * R_STEP, x * G_STEP, y * B_STEP, 255], (y * w + x) * 4);
      }
    }
    return { data, width: w, height: h };
  });
}

const norm = (v: number) => Math.fround(v / 127.5 - 1);

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Opens a dataset and collects what it reports. */
async function open(options: ClipDatasetOptions) {
  const skipped: [string, string][] = [];
  const dataset = await ClipDataset.open({ ...options, onSkip: (p, r) => skipped.push([p, r]) });
  return { dataset, skipped };
}

Deno.test("clip_transform: linspace frame indices, resize size, centre crop rounding", () => {
  assertEquals(sampleFrameIndices(100, 3, { nFrames: 4, stride: 2 }), [3, 5, 7, 9]);
  assertEquals(sampleFrameIndices(10, 0, { nFrames: 4, stride: 4 }), [0, 3, 6, 9]);
  assertEquals(sampleFrameIndices(5, 0, { nFrames: 4, stride: 2 }), [0, 1, 2, 4]);
  assertEquals(sampleFrameIndices(3, 0, { nFrames: 5, stride: 1 }), [0, 0, 1, 1, 2]);
  assertEquals(resizedSize(320, 240, [256, 256]), { width: 341, height: 256 });
  assertEquals(resizedSize(240, 320, [256, 256]), { width: 256, height: 341 });
  assertEquals(resizedSize(100, 100, [32, 64]), { width: 64, height: 64 });
  assertEquals(centerCropOffset(341, 256), 42); // round(42.5) = 42 in Python
  assertEquals(centerCropOffset(343, 256), 44); // round(43.5) = 44
});

Deno.test("clip_transform: antialiased 2x downscale of a ramp matches the triangle filter", () => {
  const w = 16, h = 8;
  const data = new Uint8ClampedArray(w * h * 4);
  for (let p = 0; p < w * h; p++) data.set([(p % w) * 10, 50, 60, 255], p * 4);
  const out = new Float32Array(3 * 4 * 8);
  transformFrames([{ data, width: w, height: h }], out, 0, { size: [4, 8], flip: false });
  // Interior: weights 1/8, 3/8, 3/8, 1/8 over columns 2c-1..2c+2 -> 10 * (2c + 0.5).
  for (let c = 1; c < 7; c++) assertEquals(out[c], norm(10 * (2 * c + 0.5)), `column ${c}`);
  assertEquals(out[0], norm(10 * 5 / 7), "left edge: weights 3, 3, 1 renormalised");
  assertEquals(out[32], norm(50));
  assertEquals(out[64 + 31], norm(60));
});

Deno.test("ClipDataset: frames, stride, crop and flip sampled as the original (pixel-coded clips)", async () => {
  await withDir(async (dir) => {
    // 12x8 clips: short side 8 = sample size, so no resampling; crop columns 2..9.
    await Deno.writeFile(`${dir}/long.png`, encodeApng(codedFrames(12, 8, 30), { fps: 8 }));
    await Deno.writeTextFile(`${dir}/long.txt`, "a long clip\n");
    await Deno.mkdir(`${dir}/short`);
    const short = codedFrames(12, 8, 6);
    for (let i = 0; i < 6; i++) await Deno.writeFile(`${dir}/short/${i}.png`, encodePng(short[i]));
    await Deno.writeTextFile(`${dir}/short.txt`, "a short clip");
    const { dataset, skipped } = await open({
      videoFolder: dir,
      sampleSize: 8,
      sampleStride: 3,
      sampleNFrames: 4,
    });
    assertEquals(skipped, []);
    assertEquals(dataset.clips.map((c) => c.caption), ["a long clip", "a short clip"]);
    const g = new TorchGenerator(7);
    const seen = { flips: 0, starts: new Set<number>() };
    for (let k = 0; k < 20; k++) {
      const { pixels, prompts, samples } = await dataset.batch(2, g);
      assertEquals(pixels.shape, [2, 4, 3, 8, 8]);
      for (let b = 0; b < 2; b++) {
        const { clip, frames, flipped } = samples[b];
        const length = dataset.clips[clip].info.frameCount;
        assertEquals(prompts[b], dataset.clips[clip].caption);
        if (length === 30) {
          assert(frames[0] >= 0 && frames[0] <= 30 - 10, `start ${frames[0]}`);
          assertEquals(frames, [0, 1, 2, 3].map((i) => frames[0] + 3 * i));
          seen.starts.add(frames[0]);
        } else assertEquals(frames, [0, 1, 3, 5], "6 frames: linspace(0, 5, 4)");
        seen.flips += flipped ? 1 : 0;
        for (let f = 0; f < 4; f++) {
          for (let y = 0; y < 8; y++) {
            for (let x = 0; x < 8; x++) {
              const col = flipped ? 12 - 1 - 2 - x : 2 + x;
              const base = (((b * 4 + f) * 3) * 8 + y) * 8 + x;
              assertEquals(
                [pixels.data[base], pixels.data[base + 64], pixels.data[base + 128]],
                [norm(frames[f] * R_STEP), norm(col * G_STEP), norm(y * B_STEP)],
                `sample ${b} frame ${f} (${x}, ${y})`,
              );
            }
          }
        }
      }
    }
    assert(seen.flips > 5 && seen.flips < 35, `${seen.flips} flips of 40`);
    assert(seen.starts.size > 8, `only ${seen.starts.size} distinct starts`);
  });
});

Deno.test("ClipDataset: image mode, one frame per sample, [b, 3, H, W]", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/c.png`, encodeApng(codedFrames(8, 10, 5), { fps: 8 }));
    await Deno.writeTextFile(`${dir}/c.txt`, "stills");
    const { dataset } = await open({
      videoFolder: dir,
      sampleSize: 8,
      isImage: true,
      horizontalFlip: false,
    });
    const { pixels, samples } = await dataset.batch(3, new TorchGenerator(1));
    assertEquals(pixels.shape, [3, 3, 8, 8]);
    for (let b = 0; b < 3; b++) {
      assertEquals(samples[b].frames.length, 1);
      assertEquals(pixels.data[b * 192], norm(samples[b].frames[0] * R_STEP));
      assertEquals(pixels.data[b * 192 + 128], norm(1 * B_STEP), "row 0 of the crop is row 1");
    }
  });
});

Deno.test("ClipDataset: captions from a WebVid CSV (files and folders), rows without clips reported", async () => {
  assertEquals(parseCsv('videoid,name,page_dir\r\n1,"a cat, ""running""",x\r\n2,dog,y'), [
    { videoid: "1", name: 'a cat, "running"', page_dir: "x" },
    { videoid: "2", name: "dog", page_dir: "y" },
  ]);
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/videos`);
    const v = `${dir}/videos`;
    await Deno.writeFile(`${v}/1001.gif`, encodeGif(codedFrames(8, 8, 4), { fps: 8 }));
    await Deno.mkdir(`${v}/1002`);
    for (let i = 0; i < 4; i++) {
      await Deno.writeFile(`${v}/1002/${i}.png`, encodePng(codedFrames(8, 8, 4)[i]));
    }
    await Deno.writeFile(`${v}/9999.gif`, encodeGif(codedFrames(8, 8, 4), { fps: 8 })); // not in CSV
    await Deno.writeTextFile(
      `${dir}/results.csv`,
      'videoid,contentUrl,duration,page_dir,name\n1001,u,PT1S,d,"waves, at night"\n1002,u,PT1S,d,clouds\n1003,u,PT1S,d,missing\n',
    );
    const { dataset, skipped } = await open({
      videoFolder: v,
      csvPath: `${dir}/results.csv`,
      sampleSize: 8,
      sampleNFrames: 4,
      sampleStride: 1,
    });
    assertEquals(dataset.clips.map((c) => [c.info.format, c.caption]), [
      ["gif", "waves, at night"],
      ["png-frames", "clouds"],
    ]);
    assertEquals(skipped.length, 1);
    assert(
      skipped[0][0].endsWith("/1003") && /no clip named 1003/.test(skipped[0][1]),
      skipped[0].join(": "),
    );
    await Deno.writeTextFile(`${dir}/bad.csv`, "id,caption\n1001,x\n");
    await assertRejects(
      () => ClipDataset.open({ videoFolder: v, csvPath: `${dir}/bad.csv` }),
      /"videoid" and "name"/,
    );
  });
});

Deno.test("ClipDataset: bad clips reported once and skipped; an empty dataset is an error", async () => {
  await withDir(async (dir) => {
    const gif = encodeGif(codedFrames(8, 8, 6), { fps: 8 });
    await Deno.writeFile(`${dir}/good.gif`, gif);
    await Deno.writeTextFile(`${dir}/good.txt`, "good");
    await Deno.writeFile(`${dir}/nocaption.gif`, gif);
    await Deno.writeFile(`${dir}/garbage.gif`, new TextEncoder().encode("GIF89a but not really"));
    await Deno.writeTextFile(`${dir}/garbage.txt`, "garbage");
    await Deno.writeFile(`${dir}/short.png`, encodeApng(codedFrames(8, 8, 2), { fps: 8 }));
    await Deno.writeTextFile(`${dir}/short.txt`, "short");
    await Deno.writeFile(`${dir}/movie.mp4`, new Uint8Array(64));
    await Deno.writeTextFile(`${dir}/movie.txt`, "movie");
    await Deno.writeTextFile(`${dir}/empty.txt`, "  \n");
    await Deno.writeFile(`${dir}/empty.gif`, gif);
    // A PNG-frames folder whose last frame is damaged: probing reads only the first frame, so
    // the damage is found when a sample decodes it.
    await Deno.mkdir(`${dir}/late`);
    const frames = codedFrames(8, 8, 4);
    for (let i = 0; i < 4; i++) await Deno.writeFile(`${dir}/late/${i}.png`, encodePng(frames[i]));
    const damaged = encodePng(frames[3]);
    damaged[50] ^= 0xff;
    await Deno.writeFile(`${dir}/late/3.png`, damaged);
    await Deno.writeTextFile(`${dir}/late.txt`, "late");
    const options = { videoFolder: dir, sampleSize: 8, sampleNFrames: 4, sampleStride: 1 };
    const { dataset, skipped } = await open(options);
    const reasons = Object.fromEntries(skipped.map(([p, r]) => [p.slice(dir.length + 1), r]));
    assertEquals(Object.keys(reasons).sort(), [
      "empty.gif",
      "garbage.gif",
      "movie.mp4",
      "nocaption.gif",
      "short.png",
    ]);
    assert(
      /no caption \(expected .*nocaption\.txt\)/.test(reasons["nocaption.gif"]),
      reasons["nocaption.gif"],
    );
    assert(/empty caption/.test(reasons["empty.gif"]), reasons["empty.gif"]);
    assert(/^unreadable: decodeGif/.test(reasons["garbage.gif"]), reasons["garbage.gif"]);
    assert(/2 frames, at least 4 needed/.test(reasons["short.png"]), reasons["short.png"]);
    assert(/\.mp4 video is not supported/.test(reasons["movie.mp4"]), reasons["movie.mp4"]);
    assertEquals(dataset.length, 2);
    const g = new TorchGenerator(3);
    for (let i = 0; i < 4; i++) {
      const { prompts } = await dataset.batch(3, g);
      assertEquals(prompts, ["good", "good", "good"]);
    }
    const late = skipped.filter(([p]) => p.endsWith("/late"));
    assertEquals(late.length, 1, "reported once");
    assert(/^unreadable: decodePng: CRC mismatch/.test(late[0][1]), late[0][1]);
    // The cursor carries the clip found unreadable: a restored dataset skips it without a
    // decode (and without the draws of a retry), so it continues exactly.
    const cursor = dataset.cursor();
    assertEquals(cursor.unreadable!.length, 1);
    const again = await open(options);
    again.dataset.restore(cursor);
    const [ga, gb] = [new TorchGenerator(11), new TorchGenerator(11)];
    for (let i = 0; i < 3; i++) {
      assertEquals(
        (await again.dataset.batch(2, ga)).samples,
        (await dataset.batch(2, gb)).samples,
      );
    }
    assertEquals(again.skipped.filter(([p]) => p.endsWith("/late")).length, 0, "no retry");
    // verify: the damage is found at open time instead.
    const verified = await open({ ...options, verify: true });
    assertEquals(verified.dataset.length, 1);
    assert(verified.skipped.some(([p]) => p.endsWith("/late")));

    await Deno.mkdir(`${dir}/none`);
    await Deno.writeFile(`${dir}/none/x.gif`, gif);
    await assertRejects(
      () => ClipDataset.open({ videoFolder: `${dir}/none` }),
      /no usable clip in .*none/,
    );
    await assertRejects(
      () => ClipDataset.open({ videoFolder: dir, sampleStride: 0 }),
      /sampleStride/,
    );
  });
});

Deno.test("ClipDataset: same seed, same batches; another seed, other batches; epochs and resume", async () => {
  await withDir(async (dir) => {
    for (const [i, n] of [[0, 9], [1, 14], [2, 11]]) {
      await Deno.writeFile(`${dir}/c${i}.png`, encodeApng(codedFrames(12, 10, n), { fps: 8 }));
      await Deno.writeTextFile(`${dir}/c${i}.txt`, `clip ${i}`);
    }
    const options = {
      videoFolder: dir,
      sampleSize: 6,
      sampleNFrames: 3,
      sampleStride: 2,
      cfgRandomNullTextRatio: 0.3,
    };
    const run = async (seed: number) => {
      const { dataset } = await open(options);
      const g = new TorchGenerator(seed);
      const out = [];
      for (let i = 0; i < 4; i++) out.push(await dataset.batch(3, g));
      return out;
    };
    const a = await run(11), b = await run(11), c = await run(12);
    for (let i = 0; i < 4; i++) {
      assertEquals(a[i].samples, b[i].samples);
      assertEquals(a[i].prompts, b[i].prompts);
      assertEquals([...a[i].pixels.data], [...b[i].pixels.data]);
      // One epoch per batch of 3: every clip once.
      assertEquals(a[i].samples.map((s) => s.clip).sort(), [0, 1, 2]);
    }
    assertEquals(
      JSON.stringify(a.map((x) => x.samples)) === JSON.stringify(c.map((x) => x.samples)),
      false,
    );

    // Resume: a fresh dataset restored from the cursor, with the generator where it was.
    const { dataset: first } = await open(options);
    const g = new TorchGenerator(11);
    await first.batch(2, g);
    const { dataset: resumed } = await open(options);
    resumed.restore(first.cursor());
    assertEquals(
      await resumed.batch(3, g).then((x) => x.samples),
      await (async () => {
        const { dataset } = await open(options);
        const g2 = new TorchGenerator(11);
        await dataset.batch(2, g2);
        return (await dataset.batch(3, g2)).samples;
      })(),
    );
  });
});

Deno.test("ClipDataset: null-text dropout at ratio 0 never drops, at 1 always drops", async () => {
  await withDir(async (dir) => {
    await Deno.writeFile(`${dir}/c.gif`, encodeGif(codedFrames(8, 8, 4), { fps: 8 }));
    await Deno.writeTextFile(`${dir}/c.txt`, "caption");
    const base = { videoFolder: dir, sampleSize: 4, sampleNFrames: 2, sampleStride: 1 };
    for (const [ratio, expected] of [[0, "caption"], [1, ""]] as const) {
      const { dataset } = await open({ ...base, cfgRandomNullTextRatio: ratio });
      const g = new TorchGenerator(5);
      for (let i = 0; i < 10; i++) {
        assertEquals(
          (await dataset.batch(4, g)).prompts,
          Array(4).fill(expected),
          `ratio ${ratio}`,
        );
      }
    }
    const { dataset } = await open({ ...base, cfgRandomNullTextRatio: 0.5 });
    const g = new TorchGenerator(5);
    let dropped = 0;
    for (let i = 0; i < 25; i++) {
      dropped += (await dataset.batch(4, g)).prompts.filter((p) => p === "").length;
    }
    assert(dropped > 30 && dropped < 70, `${dropped} of 100 dropped at ratio 0.5`);
  });
});
