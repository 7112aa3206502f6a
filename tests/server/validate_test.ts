import { assertEquals, assertRejects } from "../assert.ts";
import { RequestError, validateAnimationRequest } from "../../server/validate.ts";
import type { ModelsListing } from "../../server/models_dir.ts";

const entry = (name: string) => ({ name, layout: "file" as const, path: `/x/${name}`, bytes: 1 });
const listing: ModelsListing = {
  checkpoints: [entry("dreamshaper"), entry("tiny")],
  motionModules: [entry("mm_v2")],
  loras: [entry("pixel"), entry("ink")],
};
const opts = { listing, randomSeed: () => 1234 };

Deno.test("validateAnimationRequest fills AnimateDiff defaults and picks the first model and a seed", () => {
  assertEquals(validateAnimationRequest({ prompt: "a cat" }, opts), {
    prompt: "a cat",
    negativePrompt: "",
    model: "dreamshaper",
    motionModule: "mm_v2",
    loras: [],
    frames: 16,
    width: 512,
    height: 512,
    steps: 25,
    guidance: 7.5,
    scheduler: "ddim",
    seed: 1234,
    clipSkip: 1,
    fps: 8,
    format: "gif",
  });
  const full = {
    prompt: "p",
    negativePrompt: "n",
    model: "tiny",
    motionModule: "mm_v2",
    loras: [{ name: "ink", scale: -0.5 }, { name: "pixel" }],
    frames: 32,
    width: 64,
    height: 1024,
    steps: 150,
    guidance: 0,
    scheduler: "dpmpp-2m-karras" as const,
    seed: 0,
    clipSkip: 2,
    fps: 12.5,
    format: "png-zip" as const,
    contextLength: 16,
    contextOverlap: 4,
    contextLoop: true,
  };
  const v = validateAnimationRequest(full, { ...opts, defaultModel: "dreamshaper" });
  assertEquals(v, { ...full, loras: [{ name: "ink", scale: -0.5 }, { name: "pixel", scale: 1 }] });
});

Deno.test("validateAnimationRequest rejects each bad field with a 400 naming it", async () => {
  const cases: [unknown, string, RegExp][] = [
    [[1, 2], "body", /expected a JSON object, got an array/],
    [null, "body", /got null/],
    [{}, "prompt", /required/],
    [{ prompt: 5 }, "prompt", /expected a string, got 5/],
    [{ prompt: "   " }, "prompt", /blank/],
    [{ prompt: "x".repeat(2001) }, "prompt", /at most|2001/],
    [{ prompt: "a", negativePrompt: "x".repeat(2001) }, "negativePrompt", /2001/],
    [{ prompt: "a", extra: 1 }, "extra", /unknown field/],
    [{ prompt: "a", frames: 0 }, "frames", /integer in 1\.\.128/],
    [{ prompt: "a", frames: 129 }, "frames", /got 129/],
    [{ prompt: "a", contextLength: 0 }, "contextLength", /integer in 1\.\.128/],
    [{ prompt: "a", contextLength: 8, contextOverlap: 8 }, "contextOverlap", /integer in 0\.\.7/],
    [{ prompt: "a", contextOverlap: 2 }, "contextOverlap", /needs contextLength/],
    [{ prompt: "a", contextLoop: true }, "contextLoop", /needs contextLength/],
    [{ prompt: "a", contextLength: 8, contextLoop: "yes" }, "contextLoop", /true or false/],
    [{ prompt: "a", frames: 8.5 }, "frames", /got 8\.5/],
    [{ prompt: "a", frames: "8" }, "frames", /got a string/],
    [{ prompt: "a", width: 100 }, "width", /multiple of 8/],
    [{ prompt: "a", height: 2048 }, "height", /64\.\.1024/],
    [{ prompt: "a", height: 56 }, "height", /64\.\.1024/],
    [{ prompt: "a", steps: 0 }, "steps", /1\.\.150/],
    [{ prompt: "a", steps: 151 }, "steps", /1\.\.150/],
    [{ prompt: "a", guidance: -1 }, "guidance", /0\.\.30/],
    [{ prompt: "a", guidance: 31 }, "guidance", /0\.\.30/],
    [{ prompt: "a", scheduler: "plms" }, "scheduler", /one of ddim, euler/],
    [{ prompt: "a", seed: -1 }, "seed", /integer/],
    [{ prompt: "a", seed: 2 ** 60 }, "seed", /integer/],
    [{ prompt: "a", clipSkip: 0 }, "clipSkip", /1\.\.12/],
    [{ prompt: "a", fps: 0 }, "fps", /1\.\.60/],
    [{ prompt: "a", format: "webp" }, "format", /gif, apng, png-zip/],
    [{ prompt: "a", model: "nope" }, "model", /no model named "nope" in checkpoints\//],
    [{ prompt: "a", model: "/x/tiny" }, "model", /no model named/],
    [{ prompt: "a", model: "../tiny" }, "model", /no model named/],
    [{ prompt: "a", model: "pixel" }, "model", /no model named "pixel"/],
    [{ prompt: "a", model: "" }, "model", /model name/],
    [{ prompt: "a", motionModule: "tiny" }, "motionModule", /motion_modules\//],
    [{ prompt: "a", loras: "pixel" }, "loras", /an array/],
    [{ prompt: "a", loras: [{ name: "x" }] }, "loras[0].name", /in loras\//],
    [{ prompt: "a", loras: [{ name: "pixel", scale: 5 }] }, "loras[0].scale", /-4\.\.4/],
    [{ prompt: "a", loras: [{ name: "pixel", weight: 1 }] }, "loras[0].weight", /unknown field/],
    [{ prompt: "a", loras: ["pixel"] }, "loras[0]", /an object/],
    [{ prompt: "a", loras: [{ name: "ink" }, { name: "ink" }] }, "loras[1].name", /twice/],
    [{ prompt: "a", loras: Array(9).fill({ name: "ink" }) }, "loras", /at most 8/],
  ];
  for (const [body, field, pattern] of cases) {
    const err = await assertRejects(() => validateAnimationRequest(body, opts), pattern);
    if (!(err instanceof RequestError)) {
      throw new Error(`${JSON.stringify(body)}: not a RequestError`);
    }
    assertEquals([err.field, err.status], [field, 400], JSON.stringify(body).slice(0, 60));
    if (!err.message.startsWith(field)) {
      throw new Error(`message "${err.message}" should start with ${field}`);
    }
  }
});

Deno.test("validateAnimationRequest: limits are configurable and an empty models dir is a 400 on model", async () => {
  const v = validateAnimationRequest({ prompt: "a" }, { ...opts, limits: { maxFrames: 8 } });
  assertEquals(v.frames, 8); // default 16 clipped to the configured maximum
  await assertRejects(
    () =>
      validateAnimationRequest({ prompt: "a", frames: 9 }, { ...opts, limits: { maxFrames: 8 } }),
    /frames: expected an integer in 1\.\.8/,
  );
  const empty = { listing: { checkpoints: [], motionModules: [], loras: [] } };
  const e = await assertRejects(
    () => validateAnimationRequest({ prompt: "a" }, empty),
    /no checkpoints/,
  );
  assertEquals((e as RequestError).field, "model");
});
