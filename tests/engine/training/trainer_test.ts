/**
 * One AnimateDiff training step through createTrainer against ../shared/fixtures/train-tiny
 * (PyTorch 1.13 + diffusers 0.27.2, float32 on the CPU; copied to tests/fixtures/train-tiny).
 * Tolerances (the issue's): loss 1e-4 relative, every gradient 2e-3 relative L2, gradient norm
 * 1e-3, parameters after 1 and 3 AdamW steps 1e-5 / 1e-4 relative L2.
 */

import { createTrainer, type Trainer } from "../../../engine/training/trainer.ts";
import { loadMotionModule } from "../../../weights/load.ts";
import { applyMotionLoras, loadLora } from "../../../weights/lora.ts";
import { inspectWeights } from "../../../engine/inspect.ts";
import { openTensorFile } from "../../../weights/open.ts";
import { originalMotionNames } from "../../../weights/names.ts";
import type { GoldenTensor } from "../../goldens.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { goldens, rel, relL2, tensor, TINY, trainJson } from "./fixture.ts";

const json = trainJson;

/** Every named tensor of `want` (prefix stripped) within `tol` relative L2 of `got`. */
function checkAll(
  what: string,
  got: Map<string, Float32Array>,
  want: Map<string, GoldenTensor>,
  prefix: string,
  tol: number,
): void {
  let n = 0, worst = 0, worstName = "", global = 0;
  const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));
  for (const [key, g] of want) {
    if (key.startsWith(prefix)) global += norm(g.data as Float32Array) ** 2;
  }
  global = Math.sqrt(global);
  for (const [key, g] of want) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    const ours = got.get(name);
    assert(ours, `${what}: no ${name} among ${got.size} trained tensors`);
    n++;
    // A key bias cannot change a softmax row (it adds q.b to every score of the row): its
    // gradient is zero but for rounding, on both sides; such tensors must stay that small.
    if (norm(g.data as Float32Array) < 1e-6 * global) {
      assert(norm(ours) < 1e-6 * global, `${what}: ${name} should have a ~0 gradient`);
      continue;
    }
    const e = relL2(ours, g.data as Float32Array);
    if (!(e <= worst)) [worst, worstName] = [e, name];
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
      // As DESIGN.md writes it: plain Maps (host copies), equal to a fresh read of the GPU.
      const grads = trainer.gradients();
      checkAll("gradients", grads, mg, "grad.", 2e-3);
      checkAll("parameters after 1 step", trainer.parameters(), mg, "step1.", 1e-5);
      const read = await trainer.readGradients();
      for (const [name, v] of grads) assert(relL2(read.get(name)!, v) === 0, `${name} read back`);
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

gpuTest(
  "train vae: reconstruction + KL loss, every VAE gradient and the grad norm match PyTorch",
  async () => {
    const g = await goldens("goldens.safetensors");
    const vg = await goldens("vae_grads.safetensors");
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "vae",
      klWeight: json.kl_weight,
      gpu: await testGpu(),
    });
    try {
      const r = await trainer.step({
        pixels: tensor(g.get("vae.images")!),
        posteriorNoise: tensor(g.get("vae.posterior_noise")!),
      });
      const loss = (g.get("vae.loss")!.data as Float32Array)[0];
      const norm = (g.get("vae.grad_norm")!.data as Float32Array)[0];
      assert(rel(r.loss, loss) <= 1e-4, `loss ${r.loss} vs ${loss}`);
      assert(rel(r.gradNorm, norm) <= 1e-3, `grad norm ${r.gradNorm} vs ${norm}`);
      checkAll("gradients", await trainer.gradients(), vg, "grad.", 2e-3);
    } finally {
      trainer.dispose();
    }
  },
);

gpuTest("train: bad options are refused with one line", async () => {
  await assertRejects(
    () => createTrainer({ train: "dreambooth" as never }),
    /train: expected one of/,
  );
  await assertRejects(
    () => createTrainer({ train: "motion-lora" }),
    /motionModule: a MotionLoRA trains on a given motion module/,
  );
  const gpu = await testGpu();
  const model = TINY + "model";
  await assertRejects(
    () => createTrainer({ model, train: "motion", lrScheduler: "cosine", gpu }),
    /maxTrainSteps: the cosine schedule needs the number of steps/,
  );
  await assertRejects(
    () => createTrainer({ model, train: "motion", trainTextEncoder: true, gpu }),
    /trainTextEncoder: only with train "unet"/,
  );
  await assertRejects(
    () => createTrainer({ model, train: "unet", lora: { rank: 0, alpha: 1 }, gpu }),
    /lora: expected an integer rank >= 1 and alpha > 0, got 0, 1/,
  );
  // Bad batches and paths: one line each, and the trainer stays usable.
  const trainer = await createTrainer({ model, train: "unet", gpu });
  try {
    const latents = { shape: [1, 4, 4, 4], data: new Float32Array(64) };
    const context = { shape: [1, 77, 32], data: new Float32Array(77 * 32) };
    const bad: [Parameters<typeof trainer.step>[0], RegExp][] = [
      [{ encoderHiddenStates: context }, /a training batch needs pixels or latents/],
      [
        { latents: { shape: [4, 4, 4], data: new Float32Array(64) } },
        /latents: expected \[b, 4, h, w\]/,
      ],
      [
        { latents, encoderHiddenStates: context, timesteps: [1000] },
        /timesteps: expected 1 integers in \[0, 1000\)/,
      ],
      [{ latents }, /prompts: expected 1 prompts/],
      [{
        latents,
        encoderHiddenStates: { shape: [2, 77, 32], data: new Float32Array(2 * 77 * 32) },
      }, /encoderHiddenStates: expected \[1, 77, dim\]/],
      [{
        pixels: { shape: [1, 3, 60, 64], data: new Float32Array(3 * 60 * 64) },
        encoderHiddenStates: context,
      }, /pixels: H and W must be multiples of 8/],
    ];
    for (const [batch, pattern] of bad) await assertRejects(() => trainer.step(batch), pattern);
    await assertRejects(
      () => trainer.save("/tmp/x.bin"),
      /expected a \.safetensors or \.ckpt path/,
    );
    const r = await trainer.step({ latents, encoderHiddenStates: context });
    assert(Number.isFinite(r.loss) && trainer.steps === 1, `usable after the errors: ${r.loss}`);
  } finally {
    trainer.dispose();
  }
});

gpuTest(
  "train motion-lora: loss, every LoRA gradient and the grad norm match PyTorch; the saved MotionLoRA loads",
  async () => {
    const g = await goldens("goldens.safetensors");
    const lg = await goldens("lora_grads.safetensors");
    const s = json.noise_scheduler;
    const trainer = await createTrainer({
      model: TINY + "model",
      motionModule: TINY + "motion_adapter",
      train: "motion-lora",
      lora: { rank: json.lora.rank, alpha: json.lora.alpha },
      noiseSchedule: {
        betaStart: s.beta_start,
        betaEnd: s.beta_end,
        betaSchedule: s.beta_schedule,
      },
      gpu: await testGpu(),
    });
    const dir = await Deno.makeTempDir();
    try {
      // The fixture's LoRA (B non-zero, so that every gradient is non-zero).
      const init = new Map<string, Float32Array>();
      for (const [k, t] of lg) {
        if (k.startsWith("init.")) init.set(k.slice(5), t.data as Float32Array);
      }
      assert(
        init.size === 2 * json.lora_targets.length,
        `${init.size} LoRA tensors in the fixture`,
      );
      trainer.setParameters(init);
      const r = await trainer.step({
        pixels: tensor(g.get("video.pixels")!),
        posteriorNoise: tensor(g.get("video.posterior_noise")!),
        noise: tensor(g.get("video.noise")!),
        timesteps: [...(g.get("video.timesteps")!.data as BigInt64Array)].map(Number),
        prompts: json.prompts,
      });
      const loss = (g.get("lora.loss")!.data as Float32Array)[0];
      const norm = (g.get("lora.grad_norm")!.data as Float32Array)[0];
      assert(rel(r.loss, loss) <= 1e-4, `loss ${r.loss} vs ${loss}`);
      assert(rel(r.gradNorm, norm) <= 1e-3, `grad norm ${r.gradNorm} vs ${norm}`);
      checkAll("gradients", await trainer.gradients(), lg, "grad.", 2e-3);
      // Saved in the original MotionLoRA layout; our loader merges it as W + B A.
      const path = `${dir}/motion_lora.safetensors`;
      await trainer.save(path);
      const params = await trainer.parameters();
      assertEquals((await inspectWeights(path)).kind, "motion-lora");
      // The original layout, key for key: <original module>.processor.<proj>_lora.<down|up>.weight,
      // which AnimateDiff's load_diffusers_lora maps back to <original module>.<proj>.weight.
      const file = await openTensorFile(path);
      const keys = [...file.tensors.keys()].sort();
      file.close();
      const wantKeys = (json.lora_targets as string[]).flatMap((t) => {
        const proj = t.endsWith(".to_out.0") ? "to_out" : t.slice(t.lastIndexOf(".") + 1);
        const module = originalMotionNames(`${t}.weight`)[0].replace(
          /\.(to_[a-z]+)(\.0)?\.weight$/,
          "",
        );
        return ["down", "up"].map((r) => `${module}.processor.${proj}_lora.${r}.weight`);
      }).sort();
      assertEquals(keys, wantKeys);
      assert(
        keys[0].includes(".temporal_transformer.") && keys[0].includes(".attention_blocks."),
        keys[0],
      );
      const lora = await loadLora(path);
      assert(lora.modules.size === json.lora_targets.length, `${lora.modules.size} modules loaded`);
      const motion = await loadMotionModule(TINY + "motion_adapter");
      const merged = applyMotionLoras(motion, [{ lora, scale: 1 }]);
      const target = json.lora_targets[0] as string;
      const [a, b] = [
        params.get(`${target}.lora_A.weight`)!,
        params.get(`${target}.lora_B.weight`)!,
      ];
      const w = await motion.tensors.get(`${target}.weight`)!.read();
      const got = await merged.tensors.get(`${target}.weight`)!.read();
      const rank = json.lora.rank,
        scale = json.lora.alpha / rank,
        cols = w.length / (b.length / rank);
      const want = w.map((v, i) => {
        const row = Math.floor(i / cols), col = i % cols;
        let d = 0;
        for (let k = 0; k < rank; k++) d += b[row * rank + k] * a[k * cols + col];
        return v + scale * d;
      });
      assert(relL2(got, want) < 1e-6, `merged ${target}: relative L2 ${relL2(got, want)}`);
      lora.close();
      merged.close();
    } finally {
      trainer.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
