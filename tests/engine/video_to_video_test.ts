/**
 * Video to video against ../shared/fixtures/phase2-tiny (`v2v.*`, diffusers'
 * AnimateDiffVideoToVideoPipeline): the input video encoded by the VAE, sampled and noised with
 * the request generator's draws in diffusers' order, then the DDIM steps kept by `strength`;
 * image to video, resizing, and the one-line errors of bad inputs.
 */

import { assert, assertEquals, assertRejects } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { type Frame, resizeFrame } from "../../engine/output/frame.ts";
import {
  assertRunMatches,
  phase2Goldens,
  phase2Pipeline,
  phase2Request,
  phase2Settings,
} from "./phase2.ts";

/** [1, F, H, W, 3] uint8 as RGBA frames. */
async function fixtureVideo(): Promise<Frame[]> {
  const t = (await phase2Goldens()).get("v2v.video_u8")!;
  const [, F, H, W] = t.shape, u8 = t.data as Uint8Array;
  return Array.from({ length: F }, (_, f) => {
    const data = new Uint8ClampedArray(H * W * 4);
    for (let i = 0; i < H * W; i++) {
      for (let c = 0; c < 3; c++) data[i * 4 + c] = u8[(f * H * W + i) * 3 + c];
      data[i * 4 + 3] = 255;
    }
    return { data, width: W, height: H };
  });
}

Deno.test("resizeFrame: same size is the frame itself; a flat frame stays flat; sizes are exact", () => {
  const flat: Frame = { data: new Uint8ClampedArray(6 * 4 * 4).fill(90), width: 6, height: 4 };
  assert(resizeFrame(flat, 6, 4) === flat);
  const big = resizeFrame(flat, 16, 8);
  assertEquals([big.width, big.height, big.data.length], [16, 8, 16 * 8 * 4]);
  assert(big.data.every((v) => v === 90));
});

gpuTest("video to video: a guided DDIM run at strength 0.6 matches diffusers", async () => {
  const s = await phase2Settings("v2v");
  const pipe = await phase2Pipeline();
  try {
    const video = await fixtureVideo();
    const { frames: _, width: _w, height: _h, ...base } = phase2Request(s);
    const request = {
      ...base,
      seed: s.generator_seed as number,
      video,
      strength: s.strength as number,
    };
    // Frames, width and height default to the video's.
    const r = pipe.resolve(request);
    assertEquals([r.frames, r.width, r.height], [8, 64, 64]);
    const steps: Float32Array[] = [];
    const latents = await pipe.generateLatents(request, {
      onStepLatents: (_, l) => steps.push(l),
    });
    assertEquals(steps.length, 3, "strength 0.6 of 5 steps keeps 3");
    await assertRunMatches(pipe, { latents, steps, frames: r.frames }, "v2v");

    // Image to video: one image starts every frame; a larger video is resized to the request.
    const i2v = await pipe.generate({ ...request, video: undefined, image: video[3], frames: 4 });
    assertEquals(i2v.frames.length, 4);
    const big = video.map((f) => resizeFrame(f, 96, 80));
    const down = await pipe.generate({ ...request, video: big, width: 64, height: 64, steps: 2 });
    assertEquals([down.frames.length, down.width, down.height], [8, 64, 64]);

    // Bad inputs: one line each, naming the field.
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ strength: 0 }, /^strength must be a number above 0 and at most 1, got 0$/],
      [{ strength: 1.5 }, /^strength must be a number above 0 and at most 1, got 1.5$/],
      [{ frames: 6 }, /^video has 8 frames, but frames is 6$/],
      [
        { scheduler: "euler" },
        /^video and image inputs take the ddim or lcm scheduler, got euler$/,
      ],
      [{ image: video[0] }, /^video and image are exclusive: give one$/],
      [{ video: [] }, /^video has no frames$/],
      [
        { video: [{ data: new Uint8ClampedArray(5), width: 4, height: 4 }] },
        /^video frame 0: data length 5 != width\*height\*4/,
      ],
      [{ strength: 0.1, steps: 5 }, /^strength 0.1 x steps 5 leaves no denoising step/],
      [{ freeInit: { iterations: 2 } }, /^video and image inputs .*: freeInit does not apply/],
      [
        { contextLength: 4, freeNoise: true },
        /^video and image inputs .*: freeNoise does not apply/,
      ],
    ];
    for (const [change, re] of bad) {
      await assertRejects(() => pipe.generateLatents({ ...request, ...change }), re);
    }
    await assertRejects(
      () => pipe.generateLatents({ prompt: "x", strength: 0.5 }),
      /^strength needs a video or an image$/,
    );
  } finally {
    pipe.dispose();
  }
});

gpuTest("video to video combines with context windows and prompt travel", async () => {
  const s = await phase2Settings("v2v");
  const pipe = await phase2Pipeline();
  try {
    const video = await fixtureVideo();
    const { frames: _, width: _w, height: _h, ...base } = phase2Request(s);
    const request = { ...base, seed: 5, video, strength: 0.8, steps: 3 };
    const plain = await pipe.generateLatents(request);
    // Windows of 4 frames (overlap 2) over the 8: every frame denoised, a different result.
    const windowed = await pipe.generateLatents({
      ...request,
      contextLength: 4,
      contextOverlap: 2,
    });
    assertEquals(windowed.length, plain.length);
    assert(windowed.every(Number.isFinite), "windowed latents are finite");
    const diff = windowed.reduce((m, v, i) => Math.max(m, Math.abs(v - plain[i])), 0);
    assert(diff > 1e-3, `windows change the result (max diff ${diff})`);
    // Prompt travel: one keyframe holding the request's prompt is the plain run; two differ.
    const same = await pipe.generateLatents({
      ...request,
      prompt: "",
      promptMap: { 0: request.prompt },
    });
    const drift = same.reduce((m, v, i) => Math.max(m, Math.abs(v - plain[i])), 0);
    assert(drift < 1e-4, `a one-keyframe map is the plain prompt (max diff ${drift})`);
    const travel = await pipe.generateLatents({
      ...request,
      prompt: "",
      promptMap: { 0: request.prompt, 7: "a completely different scene" },
    });
    const moved = travel.reduce((m, v, i) => Math.max(m, Math.abs(v - plain[i])), 0);
    assert(moved > 1e-3, `travelling to another prompt changes the clip (max diff ${moved})`);
  } finally {
    pipe.dispose();
  }
});

gpuTest("generateBatch takes videos, one per prompt; a batch of one is generate()", async () => {
  const s = await phase2Settings("v2v");
  const pipe = await phase2Pipeline();
  try {
    const video = await fixtureVideo();
    const { frames: _, width: _w, height: _h, prompt, ...base } = phase2Request(s);
    const request = { ...base, seed: 9, strength: 0.7, steps: 3 };
    const single = await pipe.generate({ ...request, prompt, video });
    const [one] = await pipe.generateBatch([prompt], { ...request, videos: [video] });
    assertEquals(one.frames.length, single.frames.length);
    one.frames.forEach((fr, i) => assertEquals(fr.data, single.frames[i].data, `frame ${i}`));
    // Two videos (the second mirrored): two clips, each following its own video.
    const mirrored = video.map((fr) => {
      const data = new Uint8ClampedArray(fr.data.length);
      for (let y = 0; y < fr.height; y++) {
        for (let x = 0; x < fr.width; x++) {
          const from = (y * fr.width + (fr.width - 1 - x)) * 4;
          data.set(fr.data.subarray(from, from + 4), (y * fr.width + x) * 4);
        }
      }
      return { ...fr, data };
    });
    const pair = await pipe.generateBatch([prompt, prompt], {
      ...request,
      strength: 0.4,
      videos: [video, mirrored],
    });
    assertEquals(pair.length, 2);
    const meanAbs = (a: Uint8ClampedArray, b: Uint8ClampedArray) =>
      a.reduce((m, v, i) => m + Math.abs(v - b[i]), 0) / a.length;
    const own = meanAbs(pair[1].frames[0].data, mirrored[0].data);
    const other = meanAbs(pair[1].frames[0].data, video[0].data);
    assert(own < other, `the second clip follows the mirrored video (${own} vs ${other})`);
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ videos: [video] }, /^videos: give one video per prompt \(2\), got 1$/],
      [{ videos: [video, video], video }, /^generateBatch takes videos .*not video or image$/],
      [{ videos: [video, video.slice(2)] }, /^videos\[1\] has 6 frames, but frames is 8$/],
      [{ videos: [video, 5] }, /^videos\[1\] must be an array of frames$/],
    ];
    for (const [change, re] of bad) {
      await assertRejects(
        () => pipe.generateBatch([prompt, prompt], { ...request, ...change }),
        re,
      );
    }
  } finally {
    pipe.dispose();
  }
});
