/**
 * Training learns: a motion module trained from zero-init through createTrainer on clips of a dot
 * moving one way lowers the loss clearly (held-out noise and timesteps, the same before and
 * after) within a few hundred steps on lavapipe (measured: 1.58 -> 0.83 after 60 steps; 80 run
 * here, about 1 s each). The base is the tiny fixture model, frozen.
 */

import { createTrainer } from "../../../engine/training/trainer.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { assert } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";

const TINY = new URL("../../fixtures/tiny/", import.meta.url).pathname;
const FRAMES = 8, SIDE = 4, CHANNELS = 4;
const STEPS = 80;

/** Latent clips [1, 4, frames, side, side]: a bright dot on a dark field moving right by one latent pixel a frame. */
function dotClip(start: number, row: number): { shape: number[]; data: Float32Array } {
  const data = new Float32Array(CHANNELS * FRAMES * SIDE * SIDE).fill(-0.8);
  for (let c = 0; c < CHANNELS; c++) {
    for (let f = 0; f < FRAMES; f++) {
      const col = (start + f) % SIDE;
      data[((c * FRAMES + f) * SIDE + row) * SIDE + col] = c % 2 ? 1.5 : 1.2;
    }
  }
  return { shape: [1, CHANNELS, FRAMES, SIDE, SIDE], data };
}

gpuTest("training learns: a new motion module lowers the loss on moving-dot clips", async () => {
  const trainer = await createTrainer({
    model: TINY + "model",
    train: "motion",
    optimizer: { lr: 2e-3 },
    maxGradNorm: 1,
    seed: 7,
    gpu: await testGpu(),
  });
  try {
    const context = { shape: [1, 77, 32], data: new TorchGenerator(3).randn([1, 77, 32]) };
    // Held-out evaluation: fixed clips, noise and timesteps.
    const g = new TorchGenerator(11);
    const evalSet = [0, 1, 2, 3].map((i) => ({
      latents: dotClip(i, i % SIDE),
      noise: {
        shape: [1, CHANNELS, FRAMES, SIDE, SIDE],
        data: g.randn([1, CHANNELS, FRAMES, SIDE, SIDE]),
      },
      timesteps: [100 + 200 * i],
      encoderHiddenStates: context,
    }));
    const evaluate = async () => {
      let s = 0;
      for (const b of evalSet) s += await trainer.loss(b);
      return s / evalSet.length;
    };
    const before = await evaluate();
    for (let i = 0; i < STEPS; i++) {
      await trainer.step({
        latents: dotClip(i % SIDE, (i >> 2) % SIDE),
        encoderHiddenStates: context,
      });
    }
    const after = await evaluate();
    assert(after < 0.7 * before, `loss ${before.toFixed(4)} -> ${after.toFixed(4)} (want < 70%)`);
  } finally {
    trainer.dispose();
  }
});
