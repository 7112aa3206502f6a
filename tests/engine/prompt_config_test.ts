/** Unit tests of the AnimateDiff prompt-config parser (engine/prompt_config.ts); no GPU. */

import { parsePromptConfig, promptSlug } from "../../engine/prompt_config.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { assert, assertEquals, assertRejects } from "../assert.ts";

/** A seed as "bigint:N" / "number:N" / "random" (assertEquals cannot serialise bigint). */
function seedOf(seed: number | bigint | undefined): string {
  return seed === undefined ? "random" : `${typeof seed}:${seed}`;
}

// The v1 "mapping of named entries" form, as configs/prompts/1-ToonYou.yaml writes it.
const MAPPING = `
ToonYou:
  inference_config: "configs/inference/inference-v1.yaml"
  motion_module:
    - "models/Motion_Module/mm_sd_v14.ckpt"
    - "models/Motion_Module/mm_sd_v15.ckpt"
  dreambooth_path: "models/DreamBooth_LoRA/toonyou_beta3.safetensors"
  lora_model_path: ""
  seed:           [10788741199826055526, 6520604954829636163, -1]
  steps:          25
  guidance_scale: 7.5
  prompt:
    - "best quality, masterpiece, 1girl"
    - "best quality, 1boy, cherry blossoms"
    - "a third prompt"
  n_prompt:
    - "worst quality, low quality"
`;

// The v2/v3 "list of entries" form, as configs/prompts/v2/v2-2-RealisticVision-MotionLoRA.yaml.
const LIST = `
- inference_config: "configs/inference/inference-v2.yaml"
  motion_module:    "models/Motion_Module/mm_sd_v15_v2.ckpt"
  motion_module_lora_configs:
    - path:  "models/MotionLoRA/v2_lora_ZoomIn.ckpt"
      alpha: 0.6
  dreambooth_path: "models/DreamBooth_LoRA/realisticVisionV51_v51VAE.safetensors"
  lora_model_path: "models/DreamBooth_LoRA/style.safetensors"
  lora_alpha: 0.5
  seed:           45987230
  steps:          20
  guidance_scale: 8.5
  W: 384
  H: 256
  L: 24
  prompt:
    - "photo of coastline, rocks, storm weather"
    - "a lighthouse"
  n_prompt:
    - "blur, haze"
    - "cartoon"
- dreambooth_path: "models/other.safetensors"
  adapter_lora_path: "models/Motion_Module/v3_sd15_adapter.ckpt"
  motion_module: "models/Motion_Module/v3_sd15_mm.ckpt"
  prompt: "a single prompt as a string"
`;

Deno.test("parsePromptConfig: mapping form runs every motion module x every prompt", () => {
  const jobs = parsePromptConfig(MAPPING, { resolvePath: (p) => `/ad/${p}` });
  assertEquals(jobs.length, 6); // 2 motion modules x 3 prompts
  assertEquals(jobs.map((j) => j.index), [0, 1, 2, 3, 4, 5]);
  assertEquals(jobs.map((j) => j.entry), Array(6).fill("ToonYou"));
  assertEquals(jobs.map((j) => j.motionModule), [
    ...Array(3).fill("/ad/models/Motion_Module/mm_sd_v14.ckpt"),
    ...Array(3).fill("/ad/models/Motion_Module/mm_sd_v15.ckpt"),
  ]);
  assertEquals(jobs[0].model, "/ad/models/DreamBooth_LoRA/toonyou_beta3.safetensors");
  assertEquals(jobs[4].prompt, "best quality, 1boy, cherry blossoms");
  // One n_prompt serves every prompt (AnimateDiff repeats a single negative prompt).
  assert(jobs.every((j) => j.negativePrompt === "worst quality, low quality"), "n_prompt repeated");
  // 64-bit seeds arrive exactly, as bigint; -1 means random (undefined).
  assertEquals(jobs.map((j) => seedOf(j.seed)), [
    "bigint:10788741199826055526",
    "bigint:6520604954829636163",
    "random",
    "bigint:10788741199826055526",
    "bigint:6520604954829636163",
    "random",
  ]);
  assertEquals([jobs[0].steps, jobs[0].guidance], [25, 7.5]);
  // An empty lora_model_path means no LoRA; W/H/L absent means the CLI's defaults.
  assertEquals(jobs[0].lora, undefined);
  assertEquals(jobs[0].loras, []);
  assertEquals([jobs[0].width, jobs[0].height, jobs[0].frames], [undefined, undefined, undefined]);
});

Deno.test("parsePromptConfig: list form with LoRA, MotionLoRA, domain adapter and W/H/L", () => {
  const jobs = parsePromptConfig(LIST);
  assertEquals(jobs.length, 3);
  assertEquals(jobs.map((j) => j.entry), ["entry0", "entry0", "entry1"]);
  const [a, b, c] = jobs;
  assertEquals(a.model, "models/DreamBooth_LoRA/realisticVisionV51_v51VAE.safetensors");
  assertEquals(a.motionModule, "models/Motion_Module/mm_sd_v15_v2.ckpt");
  assertEquals(a.lora, { path: "models/DreamBooth_LoRA/style.safetensors", scale: 0.5 });
  assertEquals(a.loras, [
    { path: "models/DreamBooth_LoRA/style.safetensors", scale: 0.5 },
    { path: "models/MotionLoRA/v2_lora_ZoomIn.ckpt", scale: 0.6 },
  ]);
  // A scalar seed applies to every prompt; n_prompt pairs with prompt by index.
  assertEquals([seedOf(a.seed), seedOf(b.seed)], ["bigint:45987230", "bigint:45987230"]);
  assertEquals([a.negativePrompt, b.negativePrompt], ["blur, haze", "cartoon"]);
  assertEquals([a.width, a.height, a.frames, a.steps, a.guidance], [384, 256, 24, 20, 8.5]);
  assertEquals(typeof a.width, "number"); // not bigint: the CLI does arithmetic with it
  // Defaults of a bare entry: prompt as a plain string, no seed, no n_prompt, adapter scale 1.
  assertEquals(c.prompt, "a single prompt as a string");
  assertEquals([seedOf(c.seed), c.negativePrompt, c.steps, c.guidance], [
    "random",
    "",
    undefined,
    undefined,
  ]);
  assertEquals(c.loras, [{ path: "models/Motion_Module/v3_sd15_adapter.ckpt", scale: 1 }]);
});

Deno.test("parsePromptConfig: lora_alpha defaults to 0.8 as in AnimateDiff", () => {
  const [job] = parsePromptConfig("- lora_model_path: l.safetensors\n  prompt: [x]\n");
  assertEquals(job.lora, { path: "l.safetensors", scale: 0.8 });
  assertEquals(job.model, undefined);
  assertEquals(job.motionModule, undefined);
});

Deno.test("parsePromptConfig: v1 base + path records the base for the caller to decide", () => {
  const yaml = `
Ghibli:
  base: "models/CounterfeitV30_25.safetensors"
  path: "models/lora_Ghibli_n3.safetensors"
  lora_alpha: 1.0
  motion_module: ["mm.ckpt"]
  prompt: ["castle"]
`;
  const [job] = parsePromptConfig(yaml, { resolvePath: (p) => `/r/${p}` });
  assertEquals(job.model, "/r/models/lora_Ghibli_n3.safetensors");
  assertEquals(job.base, { path: "/r/models/CounterfeitV30_25.safetensors", loraScale: 1 });
  // `base: ""` (the usual v1 value) is no base at all.
  const [plain] = parsePromptConfig('A:\n  base: ""\n  path: "m.safetensors"\n  prompt: [x]\n');
  assertEquals([plain.model, plain.base], ["m.safetensors", undefined]);
});

Deno.test("parsePromptConfig: seeds up to 2^64 - 1 stay exact; small seeds too", () => {
  const [big, small, zero] = parsePromptConfig(
    "- prompt: [a, b, c]\n  seed: [18446744073709551615, 7, 0]\n",
  );
  assertEquals(seedOf(big.seed), "bigint:18446744073709551615");
  assertEquals(Number(small.seed), 7);
  assertEquals(Number(zero.seed), 0);
  assert(zero.seed !== undefined, "seed 0 is a seed, not random");
  // random_seed is accepted as an alias of seed.
  const [alias] = parsePromptConfig("- prompt: [a]\n  random_seed: 42\n");
  assertEquals(Number(alias.seed), 42);
});

Deno.test("parsePromptConfig: rejects bad configs with one-line InputErrors naming the entry", async () => {
  const cases: [string, RegExp][] = [
    ["- prompt: [x]\n  frame_rate: 8\n", /cfg\.yaml: entry entry0 has unknown fields: frame_rate$/],
    ["A:\n  prompt: [x]\n  denoise: 1\n  fps: 8\n", /entry A has unknown fields: denoise, fps/],
    ["- seed: [1]\n", /entry entry0 has no prompt/],
    [
      "- prompt: [x]\n  seed: [abc]\n",
      /entry entry0: seed 0 must be an integer \(-1 = random\), got abc/,
    ],
    ["- prompt: [x]\n  seed: 1.5\n", /seed 0 must be an integer/],
    ["- prompt: [x, 3]\n", /entry entry0: prompt 1 must be a string/],
    ["- prompt: [x]\n  n_prompt: [[a]]\n", /n_prompt 0 must be a string/],
    ["- prompt: [x]\n  steps: many\n", /entry0: steps must be a number/],
    ["- prompt: [x]\n  dreambooth_path: 5\n", /entry0: path must be a string/],
    [
      "- prompt: [x]\n  controlnet_path: cn.ckpt\n",
      /controlnet_path: SparseCtrl\/ControlNet is not supported/,
    ],
    [
      "- prompt: [x]\n  motion_module_lora_configs: [zoom.ckpt]\n",
      /motion_module_lora_configs\[0\] must be a mapping/,
    ],
    [
      "- prompt: [x]\n  motion_module_lora_configs: [{alpha: 1}]\n",
      /motion_module_lora_configs\[0\] has no path/,
    ],
    ["- 5\n", /entry entry0 must be a mapping/],
    ["just a string\n", /cfg\.yaml: expected a list or mapping of prompt entries/],
    ["[]\n", /cfg\.yaml: no entries/],
    ["A:\n  prompt: [x\n", /^cfg\.yaml: not valid YAML \(.+\)$/],
    ["A:\n  prompt: [x]\n  prompt: [y]\n", /cfg\.yaml: not valid YAML/],
    ["- prompt: [x]\n  motion_module: [mm.ckpt, 7]\n", /entry0: motion_module 1 must be a path$/],
    [
      `x: ${"[".repeat(5000)}${"]".repeat(5000)}\n`,
      /^cfg\.yaml: not valid YAML \(nested too deeply\)$/,
    ],
  ];
  for (const [yaml, pattern] of cases) {
    const err = await assertRejects(() => parsePromptConfig(yaml, { source: "cfg.yaml" }), pattern);
    assert(
      err instanceof InputError,
      `${JSON.stringify(yaml)}: expected InputError, got ${err.name}`,
    );
    assert(!err.message.includes("\n"), `${JSON.stringify(yaml)}: message has several lines`);
  }
});

Deno.test("promptSlug: lower-case words joined by dashes, capped, never empty", () => {
  assertEquals(promptSlug("A Castle, in the CLOUDS!"), "a-castle-in-the-clouds");
  assertEquals(promptSlug("  --best quality,  masterpiece--  "), "best-quality-masterpiece");
  assertEquals(promptSlug("../../etc/passwd"), "etc-passwd");
  // Cut at 40 characters, without a trailing dash.
  const long = promptSlug("word ".repeat(20));
  assertEquals(long, "word-word-word-word-word-word-word-word");
  assert(long.length <= 40, `length ${long.length}`);
  assertEquals(promptSlug("abcdef ghij", 7), "abcdef");
  assertEquals(promptSlug("日本語"), "prompt");
  assertEquals(promptSlug(""), "prompt");
});

Deno.test("parsePromptConfig: motion_scale and motion_effect per entry; non-numbers are one-line errors", () => {
  const [a, b] = parsePromptConfig(`
- prompt: "a red circle moving right"
  motion_scale: 1.2
  motion_effect: 0.6
- prompt: "plain"
`);
  assertEquals([a.motionScale, a.motionEffect], [1.2, 0.6]);
  assertEquals([b.motionScale, b.motionEffect], [undefined, undefined]);
  let err: Error | null = null;
  try {
    parsePromptConfig(`- prompt: "x"\n  motion_scale: lots\n`, { source: "c.yaml" });
  } catch (e) {
    err = e as Error;
  }
  assert(err instanceof InputError && /motion_scale/.test(err.message), `${err?.message}`);
  assert(!err!.message.includes("\n"), "one line");
});

Deno.test("parsePromptConfig: prompt_map entries (prompt optional) as animatediff-cli-prompt-travel", () => {
  const [j] = parsePromptConfig(`
- prompt_map:
    0: "a castle at dawn"
    8: "a castle at night"
  L: 16
`);
  assertEquals(j.promptMap, { 0: "a castle at dawn", 8: "a castle at night" });
  assertEquals(j.prompt, "");
  let err: Error | null = null;
  try {
    parsePromptConfig(`- prompt_map: ["a", "b"]\n`, { source: "c.yaml" });
  } catch (e) {
    err = e as Error;
  }
  assert(err instanceof InputError && /prompt_map must be a mapping/.test(err.message), `${err}`);
});

Deno.test("parsePromptConfig: free_init per entry in snake_case; unknown keys are one-line errors", () => {
  const [j] = parsePromptConfig(`
- prompt: "x"
  free_init: {iterations: 2, method: gaussian, spatial_stop: 0.3, fast_sampling: true}
`);
  assertEquals(j.freeInit, {
    iterations: 2,
    method: "gaussian",
    spatialStop: 0.3,
    fastSampling: true,
  });
  let err: Error | null = null;
  try {
    parsePromptConfig(`- prompt: "x"\n  free_init: {num_iters: 2}\n`, { source: "c.yaml" });
  } catch (e) {
    err = e as Error;
  }
  assert(
    err instanceof InputError && /free_init\.num_iters is not one of/.test(err.message),
    `${err}`,
  );
});

Deno.test("parsePromptConfig: video, image, strength, context windows, weighting and FreeNoise keys", () => {
  const [v, i] = parsePromptConfig(
    `
- prompt: "a knight walking, oil painting"
  video: clips/walk.gif
  strength: 0.6
  context_length: 8
  context_overlap: 2
  context_weighting: pyramid
  free_noise: false
- prompt: "a red circle moving right"
  image: /abs/circle.png
  free_noise: true
`,
    { source: "c.yaml", resolvePath: (p) => (p.startsWith("/") ? p : `/configs/${p}`) },
  );
  assertEquals(
    [v.video, v.image, v.strength, v.contextLength, v.contextOverlap, v.contextWeighting],
    ["/configs/clips/walk.gif", undefined, 0.6, 8, 2, "pyramid"],
  );
  assertEquals([v.freeNoise, i.freeNoise, i.image, i.video], [
    false,
    true,
    "/abs/circle.png",
    undefined,
  ]);
  const bad: [string, RegExp][] = [
    [
      `- prompt: x\n  context_weighting: steep\n`,
      /context_weighting must be flat or pyramid, got steep/,
    ],
    [`- prompt: x\n  free_noise: yes please\n`, /free_noise must be true or false/],
    [`- prompt: x\n  strength: high\n`, /strength/],
    [`- prompt: x\n  video: 5\n`, /video must be a string/],
  ];
  for (const [yaml, re] of bad) {
    let err: Error | null = null;
    try {
      parsePromptConfig(yaml, { source: "c.yaml" });
    } catch (e) {
      err = e as Error;
    }
    assert(err instanceof InputError && re.test(err.message), `${yaml}: ${err?.message}`);
    assert(!err!.message.includes("\n"), "one line");
  }
});
