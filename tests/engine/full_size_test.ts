/**
 * Full-size SD1.5 + AnimateDiff v2 (random weights) against diffusers: the frames and latents of
 * tests/fixtures/sd15-random (its README gives the recipe). Opt-in: set ZOETROPE_FULL_SIZE_DIR to
 * the folder written by `deno run -A tools/random_sd15.ts --out DIR --layout single`; the
 * CLIP ViT-L/14 tokenizer comes from ../shared/fixtures/clip-tokenizer. About three minutes per
 * precision on lavapipe, so not part of CI; it runs whenever the variable is set.
 */

import { assert, assertEquals } from "../assert.ts";
import { gpuTest, testGpu } from "../gpu.ts";
import { loadPipeline } from "../../engine/pipeline.ts";
import { parseSafetensors } from "../goldens.ts";

const DIR = Deno.env.get("ZOETROPE_FULL_SIZE_DIR");
const FIXTURE = new URL("../fixtures/sd15-random/goldens.safetensors", import.meta.url).pathname;
const TOKENIZER = new URL("../../../shared/fixtures/clip-tokenizer", import.meta.url).pathname;
const REQUEST = {
  prompt: "a red fox walking through a snowy pine forest",
  negativePrompt: "",
  frames: 4,
  width: 64,
  height: 64,
  steps: 2,
  guidance: 7.5,
  seed: 31337,
};
/** The pipeline tests' frame tolerances (/255): f32 parity, f16 storage. */
const FRAME_TOL = { f32: 2, f16: 12 };

for (const precision of ["f32", "f16"] as const) {
  if (!DIR) {
    Deno.test({
      name: `full size ${precision}: set ZOETROPE_FULL_SIZE_DIR`,
      ignore: true,
      fn() {},
    });
    continue;
  }
  gpuTest(
    `full size ${precision}: SD1.5 + v2 frames match diffusers, plan == measured`,
    async () => {
      const gpu = await testGpu();
      const golden = parseSafetensors(await Deno.readFile(FIXTURE), FIXTURE);
      const pipe = await loadPipeline({
        model: `${DIR}/sd15-random.safetensors`,
        motionModule: `${DIR}/mm_sd_v15_v2-random.safetensors`,
        tokenizer: TOKENIZER,
        precision,
        device: gpu,
      });
      try {
        const plan = await pipe.plan(REQUEST);
        assert(plan.fits, plan.reason ?? "");
        await gpu.sync();
        gpu.pool.trim();
        gpu.pool.resetPeak();
        const anim = await pipe.generate(REQUEST);
        assertEquals(
          gpu.pool.stats().peakAllocatedBytes,
          plan.activationsBytes,
          "plan vs measured",
        );
        const want = golden.get("frames_u8")!.data as Uint8Array; // [1, 4, 64, 64, 3]
        let worst = 0, sum = 0;
        anim.frames.forEach((f, i) => {
          for (let p = 0; p < 64 * 64; p++) {
            for (let c = 0; c < 3; c++) {
              const d = Math.abs(f.data[p * 4 + c] - want[(i * 64 * 64 + p) * 3 + c]);
              worst = Math.max(worst, d);
              sum += d;
            }
          }
        });
        const mean = sum / want.length;
        console.log(`full size ${precision}: frames mean ${mean.toFixed(4)}/255, max ${worst}/255`);
        assert(worst <= FRAME_TOL[precision], `max ${worst}/255 > ${FRAME_TOL[precision]}`);
      } finally {
        pipe.dispose();
      }
    },
  );
}
