/**
 * Merges one or more LoRAs (kohya/A1111 or diffusers/peft layout) into the base model and
 * compares the result with the plain model at the same seed.
 *
 * ```sh
 * # Tiny test model and LoRA from this repository (random weights, offline):
 * deno run -A examples/lora.ts
 * # Real files; --lora PATH[:SCALE] is repeatable:
 * deno run -A examples/lora.ts --model models/checkpoints/realisticVision.safetensors \
 *   --motion-module models/motion_modules/mm_sd_v15_v2.ckpt --tokenizer models/clip-tokenizer \
 *   --lora models/loras/pixel_art.safetensors:0.8 --size 512 --steps 25 --prompt "pixel art cat"
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { type GenerateRequest, loadPipeline, type LoraSpec } from "@zoetrope/animatediff";

const tiny = (p: string) => new URL(`../tests/fixtures/tiny/${p}`, import.meta.url).pathname;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    prompt: { type: "string", default: "a cat playing with yarn" },
    model: { type: "string" },
    "motion-module": { type: "string" },
    tokenizer: { type: "string" },
    lora: { type: "string", multiple: true },
    size: { type: "string", default: "64" },
    steps: { type: "string", default: "4" },
    out: { type: "string", default: "lora.gif" },
  },
});

/** `path[:scale]` -> LoraSpec (a Windows drive letter is not a scale). */
function parseLora(arg: string): LoraSpec {
  const m = /^(.*):(-?[0-9.]+)$/.exec(arg);
  return m ? { path: m[1], scale: Number(m[2]) } : { path: arg, scale: 1 };
}

const model = flags.model ?? tiny("model");
const motionModule = flags["motion-module"] ?? tiny("motion_adapter");
const loras = (flags.lora ?? [`${tiny("lora/lora_kohya.safetensors")}:0.8`]).map(parseLora);
const size = Number(flags.size);
const request: GenerateRequest = {
  prompt: flags.prompt,
  frames: 8,
  width: size,
  height: size,
  steps: Number(flags.steps),
  seed: 7,
};

for (const [name, withLoras] of [["plain", []], ["lora", loras]] as const) {
  const pipe = await loadPipeline({
    model,
    motionModule,
    tokenizer: flags.tokenizer,
    loras: [...withLoras],
  });
  try {
    const anim = await pipe.generate(request);
    const out = name === "plain" ? flags.out.replace(/(\.gif)?$/, ".plain.gif") : flags.out;
    await Deno.writeFile(out, anim.toGif());
    const mean = anim.frames[0].data.reduce((s, v) => s + v, 0) / anim.frames[0].data.length;
    console.log(`${name}: ${out} (first frame mean byte ${mean.toFixed(2)})`);
  } finally {
    pipe.dispose();
  }
}
