/**
 * One AnimateDiff training step through createTrainer against ../shared/fixtures/train-tiny
 * (PyTorch 1.13 + diffusers 0.27.2, float32 on the CPU; copied to tests/fixtures/train-tiny).
 * Tolerances (the issue's): loss 1e-4 relative, every gradient 2e-3 relative L2, gradient norm
 * 1e-3, parameters after 1 and 3 AdamW steps 1e-5 / 1e-4 relative L2.
 */

import { createTrainer, type Trainer } from "../../../engine/training/trainer.ts";
import { type GoldenTensor, loadGoldens } from "../../goldens.ts";
import { assert, assertRejects } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";

const TINY = new URL("../../fixtures/tiny/", import.meta.url).pathname;
const TRAIN = new URL("../../fixtures/train-tiny/", import.meta.url);
const json = JSON.parse(await Deno.readTextFile(new URL("goldens.json", TRAIN)));

function goldens(file: string): Promise<Map<string, GoldenTensor>> {
  return loadGoldens(new URL(file, TRAIN));
}

function tensor(g: GoldenTensor): { shape: number[]; data: Float32Array } {
  return { shape: g.shape, data: g.data as Float32Array };
}

/** ||a - b|| / ||b||. */
function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d) / Math.sqrt(n);
}

function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** Every named tensor of `want` (prefix stripped) within `tol` relative L2 of `got`. */
function checkAll(
  what: string,
  got: Map<string, Float32Array>,
  want: Map<string, GoldenTensor>,
  prefix: string,
  tol: number,
): void {
  let n = 0, worst = 0, worstName = "";
  for (const [key, g] of want) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    const ours = got.get(name);
    assert(ours, `${what}: no ${name} among ${got.size} trained tensors`);
    const e = relL2(ours, g.data as Float32Array);
    if (!(e <= worst)) [worst, worstName] = [e, name];
    n++;
  }
  assert(n > 0 && n === got.size, `${what}: compared ${n} tensors, trainer has ${got.size}`);
  assert(
    worst <= tol,
    `${what}: worst relative L2 ${worst.toExponential(2)} (${worstName}) > ${tol}`,
  );
}

async function motionTrainer(): Promise<Trainer> {
  const s = json.noise_scheduler, a = json.adamw;
  return await createTrainer({
    model: TINY + "model",
    motionModule: TINY + "motion_adapter",
    train: "motion",
    optimizer: { lr: a.lr, betas: a.betas, eps: a.eps, weightDecay: a.weight_decay },
    maxGradNorm: json.max_grad_norm,
    noiseSchedule: { betaStart: s.beta_start, betaEnd: s.beta_end, betaSchedule: s.beta_schedule },
    gpu: await testGpu(),
  });
}

gpuTest(
  "train motion: loss, every gradient, grad norm and 3 AdamW steps match PyTorch",
  async () => {
    const g = await goldens("goldens.safetensors");
    const mg = await goldens("motion_grads.safetensors");
    const trainer = await motionTrainer();
    try {
      const batch = {
        pixels: tensor(g.get("video.pixels")!),
        posteriorNoise: tensor(g.get("video.posterior_noise")!),
        noise: tensor(g.get("video.noise")!),
        timesteps: [...(g.get("video.timesteps")!.data as BigInt64Array)].map(Number),
        prompts: json.prompts,
      };
      const losses = g.get("motion.adamw.losses")!.data as Float32Array;
      const norms = g.get("motion.adamw.grad_norms")!.data as Float32Array;
      const first = await trainer.step(batch);
      const loss = (g.get("motion.loss")!.data as Float32Array)[0];
      const norm = (g.get("motion.grad_norm")!.data as Float32Array)[0];
      assert(rel(first.loss, loss) <= 1e-4, `loss ${first.loss} vs ${loss}`);
      assert(rel(first.gradNorm, norm) <= 1e-3, `grad norm ${first.gradNorm} vs ${norm}`);
      checkAll("gradients", await trainer.gradients(), mg, "grad.", 2e-3);
      checkAll("parameters after 1 step", await trainer.parameters(), mg, "step1.", 1e-5);
      for (let i = 1; i < 3; i++) {
        const r = await trainer.step(batch);
        assert(rel(r.loss, losses[i]) <= 1e-4, `step ${i + 1} loss ${r.loss} vs ${losses[i]}`);
        assert(
          rel(r.gradNorm, norms[i]) <= 1e-3,
          `step ${i + 1} norm ${r.gradNorm} vs ${norms[i]}`,
        );
      }
      checkAll("parameters after 3 steps", await trainer.parameters(), mg, "step3.", 1e-4);
    } finally {
      trainer.dispose();
    }
  },
);

gpuTest(
  "train unet: text-to-image step, every UNet gradient and the grad norm match PyTorch",
  async () => {
    const g = await goldens("goldens.safetensors");
    const ug = await goldens("unet_grads.safetensors");
    const s = json.noise_scheduler;
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "unet",
      noiseSchedule: {
        betaStart: s.beta_start,
        betaEnd: s.beta_end,
        betaSchedule: s.beta_schedule,
      },
      gpu: await testGpu(),
    });
    try {
      const r = await trainer.step({
        latents: tensor(g.get("unet.latents")!),
        noise: tensor(g.get("unet.noise")!),
        timesteps: [...(g.get("unet.timesteps")!.data as BigInt64Array)].map(Number),
        encoderHiddenStates: tensor(g.get("unet.encoder_hidden_states")!),
      });
      const loss = (g.get("unet.loss")!.data as Float32Array)[0];
      const norm = (g.get("unet.grad_norm")!.data as Float32Array)[0];
      assert(rel(r.loss, loss) <= 1e-4, `loss ${r.loss} vs ${loss}`);
      assert(rel(r.gradNorm, norm) <= 1e-3, `grad norm ${r.gradNorm} vs ${norm}`);
      checkAll("gradients", await trainer.gradients(), ug, "grad.", 2e-3);
    } finally {
      trainer.dispose();
    }
  },
);

gpuTest("train: targets not available yet are refused with one line", async () => {
  for (const train of ["motion-lora", "vae"] as const) {
    await assertRejects(() => createTrainer({ train }), /not available yet/);
  }
});
