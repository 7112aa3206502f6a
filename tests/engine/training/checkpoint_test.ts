/**
 * Activation checkpointing (GradientTape.checkpoint, UNet3D.checkpointing, createTrainer's
 * gradientCheckpointing): the same ops run in the same order, so a training step gives the same
 * loss and gradients as without (1e-6 relative), while the buffer pool's working set is smaller.
 */

import {
  createTrainer,
  type Trainer,
  type TrainerOptions,
} from "../../../engine/training/trainer.ts";
import { GradientTape } from "../../../engine/training/autograd.ts";
import { linear } from "../../../kernels/matmul.ts";
import { assert } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { goldens, relL2, tensor, TINY, trainJson } from "./fixture.ts";

const json = trainJson;
/** Same ops, same order: only the order of summing a parameter's gradient over blocks differs. */
const TOL = 1e-6;

async function trainer(train: "motion" | "unet", checkpointing: boolean): Promise<Trainer> {
  const options: TrainerOptions = {
    model: TINY + "model",
    train,
    gradientCheckpointing: checkpointing,
    maxGradNorm: json.max_grad_norm,
    gpu: await testGpu(),
  };
  if (train === "motion") options.motionModule = TINY + "motion_adapter";
  return await createTrainer(options);
}

/** Loss, gradients and the working-set peak of one step with and without checkpointing. */
async function compare(
  train: "motion" | "unet",
  batch: Parameters<Trainer["step"]>[0],
): Promise<{ peak: { on: number; off: number } }> {
  const gpu = await testGpu();
  const runs = [];
  for (const checkpointing of [false, true]) {
    const t = await trainer(train, checkpointing);
    try {
      await gpu.sync();
      gpu.pool.resetPeak();
      const base = gpu.pool.stats().inUseBytes;
      const r = await t.step(batch);
      const peak = gpu.pool.stats().peakInUseBytes - base;
      runs.push({ ...r, peak, grads: await t.gradients() });
    } finally {
      t.dispose();
    }
  }
  const [off, on] = runs;
  assert(
    Math.abs(on.loss - off.loss) <= TOL * Math.abs(off.loss),
    `${train} loss ${on.loss} (checkpointing) vs ${off.loss}`,
  );
  assert(on.grads.size === off.grads.size && off.grads.size > 0, "same trainable parameters");
  let worst = 0, worstName = "";
  for (const [name, g] of off.grads) {
    const e = relL2(on.grads.get(name)!, g);
    if (!(e <= worst)) [worst, worstName] = [e, name];
  }
  assert(worst <= TOL, `${train} gradients: worst relative L2 ${worst} (${worstName}) > ${TOL}`);
  assert(
    Math.abs(on.gradNorm - off.gradNorm) <= TOL * off.gradNorm,
    `${train} grad norm ${on.gradNorm} vs ${off.gradNorm}`,
  );
  return { peak: { on: on.peak, off: off.peak } };
}

gpuTest("checkpointing: motion step on train-tiny, same loss and gradients", async () => {
  const g = await goldens("goldens.safetensors");
  await compare("motion", {
    pixels: tensor(g.get("video.pixels")!),
    posteriorNoise: tensor(g.get("video.posterior_noise")!),
    noise: tensor(g.get("video.noise")!),
    timesteps: [...(g.get("video.timesteps")!.data as BigInt64Array)].map(Number),
    prompts: json.prompts,
  });
});

gpuTest(
  "checkpointing: unet step on train-tiny (every weight a leaf), same loss and gradients",
  async () => {
    const g = await goldens("goldens.safetensors");
    await compare("unet", {
      latents: tensor(g.get("unet.latents")!),
      noise: tensor(g.get("unet.noise")!),
      timesteps: [...(g.get("unet.timesteps")!.data as BigInt64Array)].map(Number),
      encoderHiddenStates: tensor(g.get("unet.encoder_hidden_states")!),
    });
  },
);

gpuTest("checkpointing: an 8-frame 16x16-latent motion step holds less memory", async () => {
  // [b, 4, frames, h, w] latents: activations dominate the tiny model's memory here.
  const shape = [1, 4, 8, 16, 16];
  const n = shape.reduce((a, b) => a * b);
  const wave = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k));
  const { peak } = await compare("motion", {
    latents: { shape, data: wave(0.37) },
    noise: { shape, data: wave(0.11) },
    timesteps: [500],
    prompts: ["a red circle moving left"],
  });
  assert(
    peak.on < 0.7 * peak.off,
    `peak working set ${peak.on} B with checkpointing, ${peak.off} B without: expected < 70%`,
  );
});

gpuTest(
  "checkpoint: a tracked tensor captured instead of passed as an input is refused",
  async () => {
    const gpu = await testGpu();
    const w = gpu.upload(new Float32Array([1, 2, 3, 4]), [2, 2], "f32", "w");
    const x = gpu.upload(new Float32Array([1, 1]), [1, 2], "f32", "x");
    const tape = new GradientTape(gpu);
    try {
      tape.watch(w);
      let error: Error | null = null;
      try {
        tape.run(() =>
          gpu.scope(() => {
            const h = linear(gpu, x, w); // tracked (w is watched), captured below
            return tape.checkpoint((a) => linear(gpu, h, w, { residual: a }), [x]);
          })
        );
      } catch (e) {
        error = e as Error;
      }
      assert(/not among the checkpoint's inputs/.test(error?.message ?? ""), `${error?.message}`);
    } finally {
      tape.dispose();
      w.release();
      x.release();
    }
  },
);
