/**
 * Mixed-precision training (f16 weights and activations, f32 master weights, dynamic loss
 * scaling) against the f32 PyTorch step of ../shared/fixtures/train-tiny. f16 storage rounds
 * every activation to 11 bits, so the bounds are those of f16, not of the f32 parity tests
 * (measured on lavapipe: loss 1.3e-4 relative, grad norm 1.1e-4, gradients 1.2e-3 relative L2,
 * parameters after one step 3.3e-4).
 */

import { createTrainer } from "../../../engine/training/trainer.ts";
import { assert } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { goldens, relL2, tensor, TINY, trainJson } from "./fixture.ts";

const json = trainJson;

async function batch() {
  const g = await goldens("goldens.safetensors");
  return {
    g,
    batch: {
      pixels: tensor(g.get("video.pixels")!),
      posteriorNoise: tensor(g.get("video.posterior_noise")!),
      noise: tensor(g.get("video.noise")!),
      timesteps: [...(g.get("video.timesteps")!.data as BigInt64Array)].map(Number),
      prompts: json.prompts,
    },
  };
}

function trainer(lossScale?: number) {
  const s = json.noise_scheduler, a = json.adamw;
  return testGpu().then((gpu) =>
    createTrainer({
      model: TINY + "model",
      motionModule: TINY + "motion_adapter",
      train: "motion",
      precision: "f16",
      lossScale,
      optimizer: { lr: a.lr, betas: a.betas, eps: a.eps, weightDecay: a.weight_decay },
      maxGradNorm: json.max_grad_norm,
      noiseSchedule: {
        betaStart: s.beta_start,
        betaEnd: s.beta_end,
        betaSchedule: s.beta_schedule,
      },
      gpu,
    })
  );
}

gpuTest({
  name: "train motion f16: loss, gradients and update close to PyTorch's f32 step",
  f16: true,
}, async () => {
  const { g, batch: b } = await batch();
  const mg = await goldens("motion_grads.safetensors");
  const t = await trainer();
  try {
    const r = await t.step(b);
    const loss = (g.get("motion.loss")!.data as Float32Array)[0];
    const norm = (g.get("motion.grad_norm")!.data as Float32Array)[0];
    assert(!r.skipped && r.lossScale === 2 ** 16, `skipped ${r.skipped}, scale ${r.lossScale}`);
    assert(Math.abs(r.loss - loss) <= 1e-3 * loss, `loss ${r.loss} vs ${loss}`);
    assert(Math.abs(r.gradNorm - norm) <= 3e-3 * norm, `grad norm ${r.gradNorm} vs ${norm}`);
    // Gradients over all motion parameters at once (small tensors carry f16 noise alone).
    const grads = await t.gradients(), params = await t.parameters();
    const cat = (m: Map<string, Float32Array>, names: string[]) =>
      Float32Array.from(names.flatMap((n) => [...m.get(n)!]));
    const names = [...grads.keys()];
    const ref = (prefix: string) =>
      Float32Array.from(names.flatMap((n) => [...(mg.get(prefix + n)!.data as Float32Array)]));
    const ge = relL2(cat(grads, names), ref("grad."));
    assert(ge <= 1e-2, `gradients: relative L2 ${ge}`);
    const pe = relL2(cat(params, names), ref("step1."));
    assert(pe <= 2e-3, `parameters after one step: relative L2 ${pe}`);
  } finally {
    t.dispose();
  }
});

gpuTest(
  { name: "train f16: an overflowing loss scale skips the update and halves", f16: true },
  async () => {
    const { batch: b } = await batch();
    const t = await trainer(2 ** 40);
    try {
      const before = await t.parameters();
      const r = await t.step(b);
      assert(r.skipped && !Number.isFinite(r.gradNorm), `skipped ${r.skipped}, norm ${r.gradNorm}`);
      const after = await t.parameters();
      for (const [name, v] of before) {
        assert(relL2(after.get(name)!, v) === 0, `${name} changed on a skipped step`);
      }
      assert(t.steps === 0, `steps ${t.steps}`);
      const next = await t.step(b);
      assert(next.lossScale === 2 ** 39, `scale after an overflow: ${next.lossScale}`);
    } finally {
      t.dispose();
    }
  },
);
