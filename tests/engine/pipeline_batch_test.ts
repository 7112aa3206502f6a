import { assert, assertEquals } from "../assert.ts";
import { gpuTest, testGpu } from "../gpu.ts";
import { loadPipeline } from "../../engine/pipeline.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { FIXTURE } from "./models/parts.ts";

const settings = { frames: 4, width: 32, height: 40, steps: 2, seed: 7 };

function maxDiff(a: Uint8ClampedArray, b: Uint8ClampedArray): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

gpuTest(
  "generateBatch: video 0 equals a single run with the same seed; prompts differ",
  async () => {
    const gpu = await testGpu();
    const pipe = await loadPipeline({
      model: FIXTURE + "model",
      motionModule: FIXTURE + "motion_adapter",
      device: gpu,
    });
    try {
      const prompts = ["a castle on a hill, pixel art", "a storm over the sea"];
      const batch = await pipe.generateBatch(prompts, { ...settings, negativePrompt: "blurry" });
      assertEquals(batch.length, 2);
      for (const a of batch) {
        assertEquals(a.frames.length, settings.frames);
        assertEquals([a.width, a.height], [32, 40]);
      }
      // torch draws the [2, 4, f, h, w] noise as one stream: video 0's noise is the same as a
      // single run's (2560 values, a multiple of torch's 16-value chunks).
      const single = await pipe.generate({
        ...settings,
        prompt: prompts[0],
        negativePrompt: "blurry",
      });
      for (let f = 0; f < settings.frames; f++) {
        const d = maxDiff(batch[0].frames[f].data, single.frames[f].data);
        assert(d <= 1, `frame ${f}: batch video 0 differs from the single run by ${d}/255`);
      }
      const between = maxDiff(batch[0].frames[0].data, batch[1].frames[0].data);
      assert(between > 8, `the two prompts' videos should differ (max diff ${between})`);
      let msg = "";
      try {
        await pipe.generateBatch(prompts, { ...settings, negativePrompts: ["x"] });
      } catch (e) {
        assert(e instanceof InputError);
        msg = (e as Error).message;
      }
      assert(/1 negative prompts for 2 prompts/.test(msg), msg);
    } finally {
      pipe.dispose();
    }
  },
);
