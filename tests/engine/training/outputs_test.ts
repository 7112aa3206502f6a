/**
 * What training writes, used: a motion module trained from zero-init saves in the original
 * AnimateDiff layout (no `module.` prefix, both `pos_encoder.pe` copies), reloads bit-exactly, and
 * animates differently from the untrained module — which, with `proj_out` zero, is exactly the
 * module-less text-to-image model.
 */

import { createTrainer } from "../../../engine/training/trainer.ts";
import { loadPipeline } from "../../../engine/pipeline.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { loadMotionModule } from "../../../weights/load.ts";
import { openTensorFile } from "../../../weights/open.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { TINY } from "./fixture.ts";

const SHAPE = [1, 4, 8, 4, 4];

gpuTest(
  "train motion: the saved module reloads bit-exactly and changes the animation",
  async () => {
    const dir = await Deno.makeTempDir();
    const gpu = await testGpu();
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "motion",
      optimizer: { lr: 1e-2 },
      seed: 3,
      gpu,
    });
    try {
      await trainer.save(`${dir}/untrained.safetensors`);
      const g = new TorchGenerator(9);
      const context = { shape: [1, 77, 32], data: g.randn([1, 77, 32]) };
      for (let i = 0; i < 12; i++) {
        await trainer.step({
          latents: { shape: SHAPE, data: g.randn(SHAPE) },
          encoderHiddenStates: context,
        });
      }
      const path = `${dir}/trained.safetensors`;
      await trainer.save(path);
      // The original layout: temporal_transformer / attention_blocks names, pe tables, no prefix.
      const file = await openTensorFile(path);
      const keys = [...file.tensors.keys()];
      file.close();
      assert(
        keys.every((k) => !k.startsWith("module.") && k.includes(".temporal_transformer.")),
        keys[0],
      );
      assert(keys.some((k) => k.endsWith(".attention_blocks.1.pos_encoder.pe")), "pe tables");
      // Reloads bit-exactly (every trained tensor; the pe tables are the sinusoidal ones).
      const motion = await loadMotionModule(path);
      const trained = trainer.parameters();
      for (const [name, values] of trained) {
        const back = await motion.tensors.get(name)!.read();
        assert(back.every((v, i) => Object.is(v, values[i])), `${name} changed through the file`);
      }
      const proj = [...trained.keys()].find((n) => n.endsWith("proj_out.weight"))!;
      assert(trained.get(proj)!.some((v) => v !== 0), "training moved proj_out off zero");
      motion.close();
      // The animation differs from the untrained (identity, module-less) one.
      const frames = async (motionModule: string) => {
        const pipe = await loadPipeline({ model: TINY + "model", motionModule, device: gpu });
        try {
          const a = await pipe.generate({
            prompt: "a dot",
            frames: 8,
            width: 32,
            height: 32,
            steps: 2,
            seed: 1,
          });
          return a.frames.map((f) => f.data);
        } finally {
          pipe.dispose();
        }
      };
      const [before, after] = [await frames(`${dir}/untrained.safetensors`), await frames(path)];
      assertEquals(before.length, after.length);
      assert(before.some((f, i) => f.some((v, k) => v !== after[i][k])), "frames unchanged");
    } finally {
      trainer.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
