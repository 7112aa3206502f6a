import { assert, assertEquals, assertRejects } from "../assert.ts";
import { RequestError, validateAnimationRequest } from "../../server/validate.ts";
import { builtinModels, type ModelsListing } from "../../server/models_dir.ts";
import { DEMO_DEFAULTS } from "../../engine/request.ts";
import { encodeGif } from "../../engine/output/gif.ts";
import { encodePng } from "../../engine/output/png.ts";

const entry = (name: string) => ({ name, layout: "file" as const, path: `/x/${name}`, bytes: 1 });
const listing: ModelsListing = {
  checkpoints: [entry("dreamshaper"), entry("tiny")],
  motionModules: [entry("mm_v2")],
  loras: [entry("pixel"), entry("ink")],
  embeddings: [entry("easynegative")],
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
    [{ prompt: "a", format: "webp" }, "format", /gif, apng, png-zip, mp4, webm/],
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
  const empty = { listing: { checkpoints: [], motionModules: [], loras: [], embeddings: [] } };
  const e = await assertRejects(
    () => validateAnimationRequest({ prompt: "a" }, empty),
    /no checkpoints/,
  );
  assertEquals((e as RequestError).field, "model");
});

Deno.test("validateAnimationRequest: with the built-in demo models listed, demo is the default, at the demo's size, frames and steps, with the demo's motion module", async () => {
  const builtin = await builtinModels();
  const withDemo: ModelsListing = {
    checkpoints: [...listing.checkpoints, ...builtin.checkpoints],
    motionModules: [...listing.motionModules, ...builtin.motionModules],
    loras: listing.loras,
    embeddings: listing.embeddings,
  };
  const o = { ...opts, listing: withDemo };
  const d = validateAnimationRequest({ prompt: "a red circle moving right" }, o);
  assertEquals([d.model, d.motionModule, d.frames, d.width, d.height, d.steps], [
    "demo",
    "demo",
    DEMO_DEFAULTS.frames,
    DEMO_DEFAULTS.width,
    DEMO_DEFAULTS.height,
    DEMO_DEFAULTS.steps,
  ]);
  const p = validateAnimationRequest({ prompt: "a", model: "demo:paper", frames: 4 }, o);
  assertEquals([p.model, p.motionModule, p.frames, p.width], ["demo:paper", "demo", 4, 64]);
  // A real model still gets AnimateDiff's defaults and a real motion module; a configured
  // default model wins over the demo.
  const real = validateAnimationRequest({ prompt: "a", model: "tiny" }, o);
  assertEquals([real.motionModule, real.width, real.steps], ["mm_v2", 512, 25]);
  assertEquals(
    validateAnimationRequest({ prompt: "a" }, { ...o, defaultModel: "tiny" }).model,
    "tiny",
  );
  // With no checkpoints at all the model field is at fault.
  await assertRejects(
    () =>
      Promise.resolve().then(() =>
        validateAnimationRequest({ prompt: "a" }, {
          ...opts,
          listing: { checkpoints: [], motionModules: [], loras: [], embeddings: [] },
        })
      ),
    /^model: not given and the models directory has no checkpoints\/ entries$/,
  );
});

Deno.test("validateAnimationRequest: motionScale and motionEffect pass through when given; bad values name the field", async () => {
  const v = validateAnimationRequest({ prompt: "a", motionScale: 1.3, motionEffect: 0.5 }, opts);
  assertEquals([v.motionScale, v.motionEffect], [1.3, 0.5]);
  const plain = validateAnimationRequest({ prompt: "a" }, opts);
  assertEquals(["motionScale" in plain, "motionEffect" in plain], [false, false]);
  for (
    const [body, field] of [
      [{ motionScale: 0 }, "motionScale"],
      [{ motionScale: 11 }, "motionScale"],
      [{ motionScale: "1" }, "motionScale"],
      [{ motionEffect: -1 }, "motionEffect"],
    ] as const
  ) {
    const err = await assertRejects(
      () => Promise.resolve().then(() => validateAnimationRequest({ prompt: "a", ...body }, opts)),
      new RegExp(`^${field}: `),
    );
    assertEquals((err as RequestError).field, field);
  }
});

Deno.test("validateAnimationRequest: promptMap (prompt may then be empty); bad maps are 400s on promptMap", async () => {
  const v = validateAnimationRequest(
    { prompt: "", promptMap: { 0: "dawn", "7": "night" }, frames: 8 },
    opts,
  );
  assertEquals(v.promptMap, { 0: "dawn", 7: "night" });
  assertEquals(v.prompt, "");
  await assertRejects(
    () => Promise.resolve().then(() => validateAnimationRequest({ prompt: "" }, opts)),
    /^prompt: /,
  );
  for (
    const [map, re] of [
      [{ 0: "a", 16: "b" }, /^promptMap: keyframe 16 is beyond the last frame \(15 of 16\)$/],
      [{ x: "a" }, /^promptMap: keyframe "x" is not a frame number$/],
      ["0: a", /^promptMap must be an object/],
      [{ 0: "a".repeat(2001) }, /^promptMap\.0: /],
    ] as const
  ) {
    const err = await assertRejects(
      () =>
        Promise.resolve().then(() =>
          validateAnimationRequest({ prompt: "", promptMap: map }, opts)
        ),
      re,
    );
    const field = (err as RequestError).field ?? "";
    assert(field.startsWith("promptMap"), field);
  }
});

Deno.test("validateAnimationRequest: freeInit passes through; bad settings are 400s naming the field", async () => {
  const v = validateAnimationRequest(
    { prompt: "a", freeInit: { iterations: 2, method: "box" } },
    opts,
  );
  assertEquals(v.freeInit, { iterations: 2, method: "box" });
  for (
    const [fi, field] of [
      [{ method: "median" }, "freeInit.method"],
      [{ iterations: 99 }, "freeInit.iterations"],
      ["yes", "freeInit"],
      [{ iterations: 3, fastSampling: true }, "freeInit.fastSampling"],
    ] as const
  ) {
    const err = await assertRejects(
      () =>
        Promise.resolve().then(() =>
          validateAnimationRequest({ prompt: "a", steps: 2, freeInit: fi }, opts)
        ),
      /^freeInit/,
    );
    assertEquals((err as RequestError).field, field);
  }
});

Deno.test("validateAnimationRequest: video / image inputs (base64 GIF/PNG) set the default frames and size; bad ones are 400s", async () => {
  const frame = (v: number) => ({
    data: new Uint8ClampedArray(72 * 84 * 4).fill(v),
    width: 72,
    height: 84,
  });
  const gif = encodeGif([frame(10), frame(200), frame(90)], { fps: 8 });
  const b64 = "data:image/gif;base64," + btoa(String.fromCharCode(...gif));
  const v = validateAnimationRequest({ prompt: "a", video: b64, strength: 0.5 }, opts);
  // 84 rounds to the nearest multiple of 8.
  assertEquals([v.frames, v.width, v.height, v.strength], [3, 72, 88, 0.5]);
  assertEquals(v.video, b64);
  const png = encodePng(frame(50));
  const i = validateAnimationRequest(
    { prompt: "a", image: btoa(String.fromCharCode(...png)) },
    opts,
  );
  assertEquals([i.frames, i.width, i.height], [16, 72, 88]);
  for (
    const [body, field, re] of [
      [{ video: "not base64!" }, "video", /^video: is not base64$/],
      [{ video: btoa("hello") }, "video", /^video: not a GIF or PNG\/APNG file/],
      [{ video: b64, frames: 5 }, "video", /^video: has 3 frames, but frames is 5$/],
      [{ strength: 0.5 }, "strength", /^strength: needs a video or an image$/],
      [{ video: b64, strength: 0 }, "strength", /^strength: /],
    ] as const
  ) {
    const err = await assertRejects(
      () => Promise.resolve().then(() => validateAnimationRequest({ prompt: "a", ...body }, opts)),
      re,
    );
    assertEquals((err as RequestError).field, field);
  }
});

Deno.test("validateAnimationRequest: embeddings by name from embeddings/; unknown names are 400s", async () => {
  const v = validateAnimationRequest(
    { prompt: "a easynegative", embeddings: ["easynegative"] },
    opts,
  );
  assertEquals(v.embeddings, ["easynegative"]);
  const err = await assertRejects(
    () =>
      Promise.resolve().then(() =>
        validateAnimationRequest({ prompt: "a", embeddings: ["nope"] }, opts)
      ),
    /^embeddings\[0\]: no model named "nope" in embeddings\/ /,
  );
  assertEquals((err as RequestError).field, "embeddings[0]");
});

Deno.test("validateAnimationRequest: contextWeighting and freeNoise need contextLength; bad values are 400s", async () => {
  const v = validateAnimationRequest({
    prompt: "a",
    frames: 40,
    contextLength: 16,
    contextWeighting: "pyramid",
    freeNoise: true,
  }, opts);
  assertEquals([v.contextWeighting, v.freeNoise], ["pyramid", true]);
  for (
    const [body, field] of [
      [{ freeNoise: true }, "freeNoise"],
      [{ contextLength: 16, contextWeighting: "gaussian" }, "contextWeighting"],
      [{ contextLength: 16, freeNoise: "yes" }, "freeNoise"],
    ] as const
  ) {
    const err = await assertRejects(
      () =>
        Promise.resolve().then(() =>
          validateAnimationRequest({ prompt: "a", frames: 40, ...body }, opts)
        ),
      new RegExp(`^${field}: `),
    );
    assertEquals((err as RequestError).field, field);
  }
});
