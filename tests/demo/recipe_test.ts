/**
 * The demo training recipe at micro scale (32 x 32, 4-frame clips, two steps a stage): every
 * stage runs, the outputs are f16 and load through the same loaders as real checkpoints
 * (loadModel, loadMotionModule, loadLora), and loadPipeline generates with them, base and paper.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../assert.ts";
import { gpuTest, testGpu } from "../gpu.ts";
import {
  checkRecipe,
  DEMO_RECIPE,
  microRecipe,
  OUTPUT_FILES,
  type RecipeConfig,
  type RecipeSummary,
  runRecipe,
  TimestepDraw,
} from "../../tools/demo/recipe.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";
import { loadPipeline } from "../../engine/pipeline.ts";
import { loadModel, loadMotionModule } from "../../weights/load.ts";
import { loadLora } from "../../weights/lora.ts";
import { openSafetensors } from "../../weights/safetensors.ts";
import { detectKind } from "../../weights/detect.ts";

gpuTest(
  "demo recipe: every stage at micro scale writes f16 weights that load and generate",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "zoetrope-recipe-" });
    const gpu = await testGpu();
    try {
      const config = microRecipe(7);
      const seen: string[] = [];
      const summary = await runRecipe(config, {
        out,
        gpu,
        onProgress: (p) => seen.push(`${p.stage} ${p.step}/${p.steps}`),
      });
      assertEquals(seen, [
        "vae 1/2",
        "vae 2/2",
        "unet 1/2",
        "unet 2/2",
        "motion 1/2",
        "motion 2/2",
        "paper 1/2",
        "paper 2/2",
        "decoder 1/2",
        "decoder 2/2",
      ]);
      assertEquals(config.vae.scalingFactor, 1, "the caller's config is left alone");
      const sf = summary.config.vae.scalingFactor;
      assert(Number.isFinite(sf) && sf > 0 && sf !== 1, `measured scaling factor ${sf}`);
      for (const [stage, r] of Object.entries(summary.stages)) {
        if (stage === "calibrate") continue; // closed form: no steps
        assert(r.secondsPerStep > 0 && Number.isFinite(r.firstLoss), `${stage}: ${r}`);
      }
      const written: RecipeSummary = JSON.parse(
        await Deno.readTextFile(join(out, OUTPUT_FILES.summary)),
      );
      assertEquals(Object.keys(written.stages), [
        "vae",
        "unet",
        "motion",
        "paper",
        "decoder",
        "calibrate",
      ]);
      assertEquals(written.config.vae.scalingFactor, sf);

      // Every weights file is f16; the motion module keeps the original AnimateDiff layout.
      for (
        const file of [
          OUTPUT_FILES.unet,
          OUTPUT_FILES.vae,
          OUTPUT_FILES.textEncoder,
          OUTPUT_FILES.motion,
          OUTPUT_FILES.paperLora,
        ]
      ) {
        const f = await openSafetensors(join(out, file));
        const dtypes = new Set([...f.tensors.values()].map((t) => t.dtype));
        if (file === OUTPUT_FILES.motion) {
          assertEquals(detectKind(f.tensors), "motion-module");
          assert([...f.tensors.keys()].every((k) => k.includes(".temporal_transformer.")), file);
        }
        if (file === OUTPUT_FILES.paperLora) assertEquals(detectKind(f.tensors), "lora-kohya");
        f.close();
        assertEquals([...dtypes], ["F16"], file);
        assert(written.weightBytes[file] > 0, `${file} in the summary`);
      }

      // The loaders read them strictly (every tensor checked against the inferred configs).
      const model = await loadModel(out, { architecture: ARCHITECTURE });
      assertEquals(model.unetConfig.blockOutChannels, config.unet.blockOutChannels);
      assertEquals(model.vaeConfig.scalingFactor, sf);
      assertEquals(model.clipConfig.vocabSize, config.clip.vocabSize);
      const motionModule = join(out, OUTPUT_FILES.motion);
      const motionModuleConfig = join(out, OUTPUT_FILES.motionConfig);
      const motion = await loadMotionModule(motionModule, {
        config: motionModuleConfig,
        architecture: ARCHITECTURE,
      });
      assertEquals(motion.config.heads, config.motion.heads);
      const proj = [...motion.tensors.keys()].find((n) => n.endsWith("proj_out.weight"))!;
      assert((await motion.tensors.get(proj)!.read()).some((v) => v !== 0), "proj_out trained");
      const lora = await loadLora(join(out, OUTPUT_FILES.paperLora), { model });
      assert(lora.modules.size > 0, "the paper LoRA targets the UNet");
      lora.close();
      motion.close();
      model.close();

      // The decoder stage (rerun alone) trains the decoder only: the encoder, hence the latent
      // space the UNet learned, stays as it was.
      const vaeOf = async () => {
        const f = await openSafetensors(join(out, OUTPUT_FILES.vae));
        const m = new Map<string, Float32Array>();
        for (const [n, t] of f.tensors) m.set(n, await t.read());
        f.close();
        return m;
      };
      const before = await vaeOf();
      await runRecipe(config, { out, gpu, stage: "decoder" });
      const after = await vaeOf();
      let encoderSame = true, decoderChanged = false;
      for (const [n, v] of before) {
        const same = v.every((x, i) => x === after.get(n)![i]);
        if (n.startsWith("encoder.") || n.startsWith("quant_conv.")) encoderSame &&= same;
        if (n.startsWith("decoder.") && !same) decoderChanged = true;
      }
      assert(encoderSame && decoderChanged, "the decoder stage trains the decoder alone");

      // A generation with them, base and paper, through the same pipeline as real checkpoints.
      for (const loras of [[], [{ path: join(out, OUTPUT_FILES.paperLora) }]]) {
        const pipe = await loadPipeline({
          model: out,
          motionModule,
          motionModuleConfig,
          loras,
          device: gpu,
        });
        try {
          const r = await pipe.generate({
            prompt: "a red circle moving right",
            frames: 4,
            width: 32,
            height: 32,
            steps: 2,
            seed: 1,
          });
          assertEquals(r.frames.length, 4);
          assertEquals([r.frames[0].width, r.frames[0].height], [32, 32]);
        } finally {
          pipe.dispose();
        }
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);

Deno.test("demo recipe: a stage's timesteps lean to high noise as configured", () => {
  const withHigh = (highNoise?: { from: number; share: number }): RecipeConfig => {
    const c = microRecipe(3);
    return { ...c, stages: { ...c.stages, unet: { ...c.stages.unet, highNoise } } };
  };
  const draws = (c: RecipeConfig, n = 4000) => {
    const d = new TimestepDraw(c, "unet");
    return Array.from({ length: n }, () => d.next());
  };
  assertEquals(new TimestepDraw(withHigh(), "unet").leaning, false);
  const uniform = draws(withHigh());
  const leaning = draws(withHigh({ from: 500, share: 0.7 }));
  for (const ts of [uniform, leaning]) {
    assert(ts.every((t) => Number.isInteger(t) && t >= 0 && t < 1000), "in [0, 1000)");
  }
  const high = (ts: number[]) => ts.filter((t) => t >= 500).length / ts.length;
  // Uniform: half at t >= 500; 70% from [500, 1000) plus half of the rest: 85%.
  assert(Math.abs(high(uniform) - 0.5) < 0.03, `uniform: ${high(uniform)}`);
  assert(Math.abs(high(leaning) - 0.85) < 0.03, `leaning: ${high(leaning)}`);
  assertEquals(draws(withHigh({ from: 500, share: 0.7 }), 50), leaning.slice(0, 50));
  const bad: [RecipeConfig, RegExp][] = [
    ...[{ from: 1000, share: 0.5 }, { from: 200, share: 1.5 }, { from: 2.5, share: 0 }].map((
      h,
    ): [RecipeConfig, RegExp] => [withHigh(h), /stages\.unet\.highNoise/]),
    [{
      ...microRecipe(3),
      stages: {
        ...microRecipe(3).stages,
        vae: { ...microRecipe(3).stages.vae, highNoise: { from: 500, share: 1 } },
      },
    }, /stages\.vae\.highNoise: only the diffusion stages/],
  ];
  for (const [config, message] of bad) {
    let error: unknown = null;
    try {
      new TimestepDraw(config, "unet");
      checkRecipe(config);
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError && message.test(error.message), String(error));
  }
});

Deno.test("demo recipe: bad world options are refused before any training", () => {
  const bad: [Partial<RecipeConfig>, RegExp][] = [
    [{ objectScale: 3 }, /objectScale in \[0\.5, 2\]/],
    [{ afterimages: 1.5 }, /afterimages to be an integer/],
    [{ afterimages: 2, afterimageSpacing: 0 }, /afterimageSpacing in \(0, 2\]/],
  ];
  for (const [patch, message] of bad) {
    let error: unknown = null;
    try {
      checkRecipe({ ...microRecipe(1), ...patch });
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError && message.test(error.message), String(error));
  }
  checkRecipe({ ...microRecipe(1), objectScale: 1.4, afterimages: 3, afterimageSpacing: 0.3 });
});

Deno.test("demo recipe: the shipped weights' recipe.json is DEMO_RECIPE (demo:train rebuilds them)", async () => {
  const shipped = JSON.parse(
    await Deno.readTextFile(new URL("../../weights/demo_model/recipe.json", import.meta.url)),
  );
  const config = structuredClone(shipped.config) as RecipeConfig;
  // The only value measured while training: the VAE's latent scaling factor (1 before).
  assert(config.vae.scalingFactor > 0 && config.vae.scalingFactor !== 1);
  config.vae.scalingFactor = DEMO_RECIPE.vae.scalingFactor;
  assertEquals(sortedKeys(config), sortedKeys(DEMO_RECIPE));
});

/** `x` with every object's keys in sorted order (JSON comparison regardless of key order). */
function sortedKeys(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(sortedKeys);
  if (x === null || typeof x !== "object") return x;
  return Object.fromEntries(
    Object.keys(x).sort().map((k) => [k, sortedKeys((x as Record<string, unknown>)[k])]),
  );
}
