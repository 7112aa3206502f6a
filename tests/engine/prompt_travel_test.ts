/**
 * Prompt travel against ../shared/fixtures/phase2-tiny (`travel.*`): the per-frame weights, the
 * UNet's per-frame encoder hidden states, and a whole guided DDIM run; then context windows with
 * travel, and the one-line errors of bad prompt maps.
 */

import { assert, assertEquals, assertRejects, assertRelClose } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { encodePromptTravel } from "../../engine/prompt.ts";
import { checkPromptMap, frameBlends } from "../../engine/prompt_travel.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { assertRunMatches, phase2, phase2Pipeline, phase2Settings } from "./phase2.ts";

Deno.test("prompt travel: keyframes and per-frame weights match the fixture's", async () => {
  const s = await phase2Settings("travel");
  const frames = s.num_frames as number;
  const k = checkPromptMap(s.keyframes, frames);
  assertEquals(k.frames, [0, 4, 7]);
  const weights = await phase2("travel.frame_weights"); // [F, K]
  const got = new Float32Array(frames * k.frames.length);
  frameBlends(k.frames, frames).forEach((m, i) => {
    got[i * k.frames.length + m.a] += m.wa;
    got[i * k.frames.length + m.b] += m.wb;
  });
  assertRelClose(got, weights, 1e-7);
  // Before the first key the first prompt holds; a head prompt goes in front of each.
  assertEquals(frameBlends([2, 4], 6).map((m) => [m.a, m.b, m.wa, m.wb]), [
    [0, 0, 1, 0],
    [0, 0, 1, 0],
    [0, 0, 1, 0],
    [0, 1, 0.5, 0.5],
    [1, 1, 1, 0],
    [1, 1, 1, 0],
  ]);
  assertEquals(checkPromptMap({ 3: "b", "0": "a" }, 4, "castle").prompts, [
    "castle, a",
    "castle, b",
  ]);
});

Deno.test("prompt travel: bad prompt maps are one-line errors naming promptMap", () => {
  for (
    const [map, frames, re] of [
      [{ 0: "a", 8: "b" }, 8, /^promptMap: keyframe 8 is beyond the last frame \(7 of 8\)$/],
      [{ "-1": "a" }, 8, /^promptMap: keyframe "-1" is not a frame number$/],
      [{ "1.5": "a" }, 8, /^promptMap: keyframe "1.5" is not a frame number$/],
      [{ 0: 3 }, 8, /^promptMap: the prompt of keyframe 0 must be a string$/],
      [{}, 8, /^promptMap needs at least one keyframe$/],
      [["a"], 8, /^promptMap must be an object \{frame: prompt\}, got an array$/],
      [{ "0": "a", "00": "b" }, 8, /^promptMap: keyframe 0 is given twice$/],
    ] as const
  ) {
    let err: Error | null = null;
    try {
      checkPromptMap(map, frames);
    } catch (e) {
      err = e as Error;
    }
    assert(err instanceof InputError && re.test(err.message), `${JSON.stringify(map)}: ${err}`);
  }
});

gpuTest(
  "prompt travel: per-frame embeddings and a whole guided DDIM run match the fixture",
  async () => {
    const s = await phase2Settings("travel");
    const pipe = await phase2Pipeline();
    const gpu = pipe.gpu;
    try {
      const frames = s.num_frames as number;
      const negativePrompt = s.negative_prompt as string;
      const promptMap = s.keyframes as Record<string, string>;
      // The UNet's encoder hidden states: [negative x F, frame embeddings].
      const ctx = encodePromptTravel(
        pipe,
        { negativePrompt, clipSkip: 1, frames, keyframes: checkPromptMap(promptMap, frames) },
        true,
      );
      assertRelClose(await gpu.read(ctx), await phase2("travel.encoder_hidden_states"), 1e-4);
      ctx.release();
      const request = {
        prompt: "",
        promptMap,
        negativePrompt,
        frames,
        width: 64,
        height: 64,
        steps: s.num_inference_steps as number,
        guidance: s.guidance_scale as number,
        scheduler: "ddim" as const,
        seed: 0,
      };
      const steps: Float32Array[] = [];
      const latents = await pipe.generateLatents(request, {
        initialLatents: await phase2("travel.latents_init"),
        onStepLatents: (_, l) => steps.push(l),
      });
      await assertRunMatches(pipe, { latents, steps, frames }, "travel");

      // With context windows each window takes its frames' embeddings: a 12-frame travel in
      // windows of 8 runs, and its first frames differ from the same seed without travel.
      const long = { ...request, frames: 12, contextLength: 8, steps: 2, seed: 3 };
      const travelled = await pipe.generateLatents({
        ...long,
        promptMap: { 0: "a castle at dawn", 11: "a castle at night" },
      });
      const plain = await pipe.generateLatents({ ...long, prompt: "a castle at dawn" });
      assert(travelled.every(Number.isFinite), "finite");
      assert(travelled.some((v, i) => Math.abs(v - plain[i]) > 1e-3), "travel changes the clip");
      // Errors on the entry points: beyond the last frame, and generateBatch.
      await assertRejects(
        () => pipe.generateLatents({ ...request, promptMap: { 0: "a", 9: "b" } }),
        /^promptMap: keyframe 9 is beyond the last frame \(7 of 8\)$/,
      );
      await assertRejects(
        () => pipe.generateBatch(["a", "b"], { ...request, promptMap: { 0: "a" } }),
        /^promptMap: prompt travel is for generate\(\), not generateBatch\(\)$/,
      );
    } finally {
      pipe.dispose();
    }
  },
);
