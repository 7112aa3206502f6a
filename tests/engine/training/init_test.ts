import { newModel } from "../../../engine/training/init.ts";
import { createTrainer } from "../../../engine/training/trainer.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { TINY_CLIP_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG } from "../../../weights/tiny.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";

const CONFIGS = { unet: TINY_UNET_CONFIG, vae: TINY_VAE_CONFIG, clip: TINY_CLIP_CONFIG };

Deno.test("newModel: PyTorch's initialisation per kind of tensor, seeded", async () => {
  const a = newModel(CONFIGS, 1), b = newModel(CONFIGS, 1), c = newModel(CONFIGS, 2);
  const read = (m: typeof a, part: "unet" | "vae" | "textEncoder", name: string) =>
    m[part].get(name)!.read();
  assertEquals([...await read(a, "unet", "conv_norm_out.weight")].every((v) => v === 1), true);
  assertEquals(
    [...await read(a, "vae", "encoder.mid_block.attentions.0.group_norm.bias")].every((v) =>
      v === 0
    ),
    true,
  );
  const conv = await read(a, "unet", "conv_in.weight"); // [32, 4, 3, 3]: fan_in 36
  const bound = 1 / Math.sqrt(36);
  assert(
    conv.every((v) => Math.abs(v) <= bound) && Math.max(...conv.map(Math.abs)) > 0.9 * bound,
    "U(+-1/sqrt(fan_in))",
  );
  const tok = await read(a, "textEncoder", "text_model.embeddings.token_embedding.weight");
  const std = Math.sqrt(tok.reduce((s, v) => s + v * v, 0) / tok.length);
  assert(Math.abs(std - 0.02) < 0.002, `token embedding std ${std}`);
  assertEquals([...await read(b, "unet", "conv_in.weight")], [...conv]);
  assert((await read(c, "unet", "conv_in.weight")).some((v, i) => v !== conv[i]), "seeded");
});

gpuTest("newModel: a VAE trained from scratch learns to reconstruct", async () => {
  const trainer = await createTrainer({
    modelWeights: newModel(CONFIGS, 3),
    train: "vae",
    optimizer: { lr: 2e-3 },
    gpu: await testGpu(),
  });
  try {
    // Two flat-coloured 32x32 images, the same every step (the model must fit them).
    const g = new TorchGenerator(5);
    const make = () => {
      const rgb = g.randn([2, 3]).map((v) => Math.tanh(v));
      const data = new Float32Array(2 * 3 * 32 * 32);
      for (let i = 0; i < 2; i++) {
        for (let c = 0; c < 3; c++) {
          data.fill(rgb[i * 3 + c], (i * 3 + c) * 1024, (i * 3 + c + 1) * 1024);
        }
      }
      return { pixels: { shape: [2, 3, 32, 32], data } };
    };
    const eps = { shape: [2, 4, 4, 4], data: new Float32Array(2 * 4 * 16) };
    const fixed = make();
    const losses = [];
    for (let i = 0; i < 30; i++) {
      losses.push((await trainer.step({ ...fixed, posteriorNoise: eps })).loss);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert(
      mean(losses.slice(-5)) < 0.5 * mean(losses.slice(0, 5)),
      `losses ${losses.map((l) => l.toFixed(3))}`,
    );
  } finally {
    trainer.dispose();
  }
});
