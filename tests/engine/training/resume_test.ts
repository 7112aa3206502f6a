/**
 * Training checkpoints resume exactly: a run stopped after 3 of 6 steps, saved, and continued by a
 * new trainer from the checkpoint ends with bit-identical weights to the uninterrupted run (noise
 * and timesteps drawn by the trainer's generator, so its state is part of the checkpoint).
 */

import { createTrainer, type TrainerOptions } from "../../../engine/training/trainer.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { TINY } from "./fixture.ts";

const SHAPE = [1, 4, 4, 4, 4];

async function options(): Promise<TrainerOptions> {
  return {
    model: TINY + "model",
    train: "motion",
    optimizer: { lr: 1e-3 },
    maxGradNorm: 1,
    lrScheduler: "cosine",
    lrWarmupSteps: 2,
    maxTrainSteps: 6,
    seed: 5,
    gpu: await testGpu(),
  };
}

function batch(i: number) {
  const g = new TorchGenerator(100 + i);
  return {
    latents: { shape: SHAPE, data: g.randn(SHAPE) },
    encoderHiddenStates: { shape: [1, 77, 32], data: g.randn([1, 77, 32]) },
  };
}

gpuTest(
  "training checkpoints: stopped and resumed ends bit-identical to an uninterrupted run",
  async () => {
    const dir = await Deno.makeTempDir();
    const whole = await createTrainer(await options());
    const first = await createTrainer(await options());
    const second = await createTrainer(await options());
    try {
      for (let i = 0; i < 6; i++) await whole.step(batch(i));
      for (let i = 0; i < 3; i++) await first.step(batch(i));
      await first.saveCheckpoint(`${dir}/ckpt.safetensors`);
      await second.loadCheckpoint(`${dir}/ckpt.safetensors`);
      assertEquals(second.steps, 3);
      const losses = [];
      for (let i = 3; i < 6; i++) losses.push((await second.step(batch(i))).loss);
      const a = whole.parameters(), b = second.parameters();
      assertEquals(a.size, b.size);
      for (const [name, v] of a) {
        const w = b.get(name)!;
        assert(v.every((x, k) => Object.is(x, w[k])), `${name} differs after resuming`);
      }
      assert(losses.every(Number.isFinite), `losses ${losses}`);
      // Another target's checkpoint is refused with one line.
      const unet = await createTrainer({ ...(await options()), train: "unet" });
      try {
        await assertRejects(
          () => unet.loadCheckpoint(`${dir}/ckpt.safetensors`),
          /a motion checkpoint, this trainer trains unet/,
        );
      } finally {
        unet.dispose();
      }
      await Deno.writeTextFile(`${dir}/junk.safetensors`, "not a checkpoint");
      await assertRejects(() => second.loadCheckpoint(`${dir}/junk.safetensors`));
    } finally {
      for (const t of [whole, first, second]) t.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
