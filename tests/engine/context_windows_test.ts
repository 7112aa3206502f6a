/**
 * Context windows for animations longer than the motion module allows: the window schedule,
 * the windowed noise prediction against windows run one by one and averaged on the host, and
 * the request limits.
 */

import { assert, assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest, testGpu } from "../gpu.ts";
import { AnimationPipeline } from "../../engine/pipeline.ts";
import {
  contextWeights,
  contextWindowStarts,
  frameSpans,
  freeNoise,
  predictNoiseWindowed,
} from "../../engine/context_windows.ts";
import { predictNoise } from "../../engine/noise.ts";
import { encodePrompt } from "../../engine/prompt.ts";
import { ClipTokenizer } from "../../engine/tokenizer.ts";
import { randomModel } from "../../weights/sd15.ts";
import {
  TINY_CLIP_CONFIG,
  TINY_UNET_CONFIG,
  TINY_VAE_CONFIG,
  tinyMotionConfig,
  tinyTokenizer,
} from "../../weights/tiny.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

Deno.test("context windows: starts step by length - overlap, the last aligned to the end", () => {
  assertEquals(contextWindowStarts(24, 16, 4), [0, 8]);
  assertEquals(contextWindowStarts(40, 16, 4), [0, 12, 24]);
  assertEquals(contextWindowStarts(16, 16, 4), [0]);
  assertEquals(contextWindowStarts(10, 4, 0), [0, 4, 6]);
  for (const [frames, length, overlap] of [[33, 16, 4], [100, 16, 15], [17, 8, 0], [64, 24, 6]]) {
    const starts = contextWindowStarts(frames, length, overlap);
    const spans = frameSpans(frames, starts, length);
    // Every frame is in some window; windows lie inside the animation; spans tile it in order.
    assert(spans.every((s) => s.windows.length > 0), `${frames}/${length}/${overlap}`);
    assert(starts.every((s) => s >= 0 && s + length <= frames), `${starts}`);
    assertEquals(spans[0].start, 0);
    assertEquals(spans[spans.length - 1].end, frames);
    spans.slice(1).forEach((s, i) => assertEquals(s.start, spans[i].end));
  }
  // Closed loop: windows keep stepping and wrap to frame 0.
  assertEquals(contextWindowStarts(24, 16, 4, true), [0, 12]);
  assertEquals(contextWindowStarts(40, 16, 4, true), [0, 12, 24, 36]);
  assertEquals(contextWindowStarts(16, 16, 4, true), [0]);
  for (const [frames, length, overlap] of [[33, 16, 4], [20, 8, 2], [17, 16, 0]]) {
    const starts = contextWindowStarts(frames, length, overlap, true);
    const spans = frameSpans(frames, starts, length);
    assert(spans.every((s) => s.windows.length > 0), `loop ${frames}/${length}/${overlap}`);
    // The last window wraps into the first frames.
    assert(starts[starts.length - 1] + length > frames, `loop ${starts}`);
  }
  assertEquals(frameSpans(24, [0, 12], 16).map((s) => [s.start, s.end, s.windows]), [
    [0, 4, [0, 1]],
    [4, 12, [0]],
    [12, 16, [0, 1]],
    [16, 24, [1]],
  ]);
  assertEquals(frameSpans(24, [0, 8], 16).map((s) => [s.start, s.end, s.windows]), [
    [0, 8, [0]],
    [8, 16, [0, 1]],
    [16, 24, [1]],
  ]);
  let threw = false;
  try {
    contextWindowStarts(10, 4, 4);
  } catch (e) {
    threw = /0 <= overlap < length/.test((e as Error).message);
  }
  assert(threw, "overlap >= length is refused");
});

/** The tiny test model with a motion module of only 8 positions. */
async function build(): Promise<AnimationPipeline> {
  const w = randomModel(ARCHITECTURE, {
    unet: TINY_UNET_CONFIG,
    vae: TINY_VAE_CONFIG,
    clip: TINY_CLIP_CONFIG,
    motion: { ...tinyMotionConfig("v3"), maxSeqLength: 8 },
    source: "context windows",
  });
  return await AnimationPipeline.fromWeights({
    ...w,
    tokenizer: ClipTokenizer.fromFiles(tinyTokenizer()),
    device: await testGpu(),
  });
}

for (
  const [loop, weighting] of [[false, "flat"], [true, "flat"], [false, "pyramid"], [
    true,
    "pyramid",
  ]] as const
) {
  const what = (loop ? " (closed loop)" : "") + (weighting === "pyramid" ? ", pyramid" : "");
  gpuTest(
    `context windows${what}: the windowed prediction is the weighted mean of the windows run alone`,
    async (gpu) => {
      const pipe = await build();
      try {
        const f = 12, L = 8, overlap = 2, h = 4, w = 4, plane = 4 * h * w;
        const starts = contextWindowStarts(f, L, overlap, loop);
        assertEquals(starts, loop ? [0, 6] : [0, 4]);
        const host = randomArray(f * plane, 3);
        const latents = gpu.upload(host, [f, 4, h, w], pipe.dtype);
        const context = encodePrompt(
          pipe,
          { prompt: "a kite", negativePrompt: "", clipSkip: 1 },
          true,
        );
        const r = {
          frames: f,
          guidance: 6,
          contextLength: L,
          contextOverlap: overlap,
          contextLoop: loop,
          contextWeighting: weighting,
          videos: 1,
        };
        const windowed = await gpu.read(predictNoiseWindowed(pipe, latents, 500, 1, context, r));
        // Each window on its own (frame (s + p) % f at position p), then the per-frame mean.
        const frameAt = (s: number, p: number) => (s + p) % f;
        const alone: Float32Array[] = [];
        for (const s of starts) {
          const data = new Float32Array(L * plane);
          for (let p = 0; p < L; p++) {
            const j = frameAt(s, p);
            data.set(host.subarray(j * plane, (j + 1) * plane), p * plane);
          }
          const x = gpu.upload(data, [L, 4, h, w], pipe.dtype);
          alone.push(
            await gpu.read(predictNoise(pipe, x, 500, 1, context, { frames: L, guidance: 6 })),
          );
          x.release();
        }
        // Evolved's pyramid: 1..L/2, L/2..1 (even L); flat: all 1.
        const weight = (p: number) => weighting === "flat" ? 1 : p < L / 2 ? p + 1 : L - p;
        const count = new Array(f).fill(0);
        for (const s of starts) for (let p = 0; p < L; p++) count[frameAt(s, p)] += weight(p);
        const want = new Float32Array(f * plane);
        starts.forEach((s, i) => {
          for (let p = 0; p < L; p++) {
            const j = frameAt(s, p);
            for (let e = 0; e < plane; e++) {
              want[j * plane + e] += alone[i][p * plane + e] * weight(p) / count[j];
            }
          }
        });
        assertClose(windowed, want, { atol: 1e-5, rtol: 1e-5, msg: "windowed vs windows alone" });
        // A shared frame really mixes two different predictions: frame 4 (window 1 position 0),
        // or with the loop frame 0 (window 1 position 6).
        const [j, p1] = loop ? [0, 6] : [4, 0];
        let differ = 0;
        for (let e = 0; e < plane; e++) {
          differ = Math.max(differ, Math.abs(alone[0][j * plane + e] - alone[1][p1 * plane + e]));
        }
        assert(differ > 1e-3, `windows disagree on shared frames (${differ})`);
        latents.release();
        context.release();
      } finally {
        pipe.dispose();
      }
    },
  );
}

gpuTest("context windows: long animations run; limits are one-line InputErrors", async () => {
  const pipe = await build();
  try {
    const req = { prompt: "a kite", width: 32, height: 32, steps: 2, seed: 5 };
    // 20 frames with an 8-position module: 4 windows of 8 (overlap 2), two videos at once.
    const [a, b] = await pipe.generateBatch(["a kite", "a boat"], {
      ...req,
      frames: 20,
      contextLength: 8,
    });
    assertEquals([a.frames.length, b.frames.length], [20, 20]);
    assert(a.frames.every((fr) => fr.width === 32 && fr.height === 32), "frame size");
    // One window holding every frame is the plain run.
    const plain = await pipe.generateLatents({ ...req, frames: 6 });
    const single = await pipe.generateLatents({ ...req, frames: 6, contextLength: 8 });
    assertClose(single, plain, { atol: 0, rtol: 0 });
    await assertRejects(
      () => pipe.generate({ ...req, frames: 9 }),
      /frames must be an integer from 1 to 8, got 9 \(.*set contextLength \(CLI: --context-length\) to at most 8\)/,
    );
    await assertRejects(
      () => pipe.generate({ ...req, frames: 20, contextLength: 9 }),
      /contextLength must be an integer from 1 to 8, got 9/,
    );
    await assertRejects(
      () => pipe.generate({ ...req, frames: 20, contextLength: 8, contextOverlap: 8 }),
      /contextOverlap must be an integer from 0 to 7, got 8/,
    );
    await assertRejects(
      () => pipe.generate({ ...req, frames: 6, contextOverlap: 2 }),
      /contextOverlap needs contextLength/,
    );
    await assertRejects(
      () => pipe.generate({ ...req, frames: 6, contextLoop: true }),
      /contextLoop needs contextLength/,
    );
    // FreeNoise and pyramid weighting run, change the clip, and need context windows.
    const long = { ...req, frames: 20, contextLength: 8 };
    const base = await pipe.generateLatents(long);
    const fancy = await pipe.generateLatents({
      ...long,
      freeNoise: true,
      contextWeighting: "pyramid",
    });
    assert(fancy.every(Number.isFinite) && fancy.some((v, i) => Math.abs(v - base[i]) > 1e-4));
    await assertRejects(
      () => pipe.generate({ ...req, frames: 6, freeNoise: true }),
      /^freeNoise needs contextLength$/,
    );
    await assertRejects(
      // deno-lint-ignore no-explicit-any
      () => pipe.generate({ ...long, contextWeighting: "gaussian" as any }),
      /^contextWeighting must be flat or pyramid, got gaussian$/,
    );
    await assertRejects(
      () => pipe.generate({ ...req, frames: 513, contextLength: 8 }),
      /frames must be an integer from 1 to 512, got 513/,
    );
  } finally {
    pipe.dispose();
  }
});

Deno.test("context weights: flat is all ones, pyramid is AnimateDiff-Evolved's 1..m..1", () => {
  assertEquals(contextWeights(4, "flat"), [1, 1, 1, 1]);
  assertEquals(contextWeights(8, "pyramid"), [1, 2, 3, 4, 4, 3, 2, 1]);
  assertEquals(contextWeights(5, "pyramid"), [1, 2, 3, 2, 1]);
  assertEquals(contextWeights(1, "pyramid"), [1]);
});

Deno.test("FreeNoise: the first window keeps its noise; each later stretch is a shuffle of the frames a window earlier", () => {
  const shape = { videos: 2, channels: 3, frames: 30, plane: 5 };
  const size = 2 * 3 * 30 * 5;
  const noise = Float32Array.from({ length: size }, (_, i) => i);
  const L = 8, overlap = 2, delta = L - overlap;
  const out = freeNoise(noise, shape, L, overlap, 7);
  // A plain re-implementation of diffusers' loop, the permutation read back from `out`.
  const frame = (
    a: Float32Array,
    v: number,
    c: number,
    t: number,
  ) => [...a.subarray(((v * 3 + c) * 30 + t) * 5, ((v * 3 + c) * 30 + t + 1) * 5)];
  const want = noise.slice();
  for (let t = 0; t < L; t++) assertEquals(frame(out, 0, 0, t), frame(noise, 0, 0, t));
  for (let start = 0; start < 30 - L; start += delta) {
    const place = start + L;
    if (place >= 30) break;
    const n = Math.min(delta, 30 - place);
    // Which source frame landed at each placed frame (the same for every video and channel).
    const srcOf = (k: number) => {
      for (let j = start; j < start + n; j++) {
        if (frame(want, 0, 0, j).join() === frame(out, 0, 0, place + k).join()) return j;
      }
      return -1;
    };
    const sources = Array.from({ length: n }, (_, k) => srcOf(k));
    assertEquals(
      [...sources].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => start + i),
    );
    sources.forEach((j, k) => {
      for (let v = 0; v < 2; v++) {
        for (let c = 0; c < 3; c++) {
          const from = ((v * 3 + c) * 30 + j) * 5, to = ((v * 3 + c) * 30 + place + k) * 5;
          want.set(want.slice(from, from + 5), to);
        }
      }
    });
  }
  assertEquals([...out], [...want]);
  assertEquals([...freeNoise(noise, shape, L, overlap, 7)], [...out], "seeded");
  assert(freeNoise(noise, shape, L, overlap, 8).some((x, i) => x !== out[i]), "another seed");
  assertEquals([...freeNoise(noise, { ...shape, frames: 30 }, 32, 4, 7)], [...noise], "one window");
});
