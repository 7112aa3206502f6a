/**
 * What training writes, used: a motion module trained from zero-init saves in the original
 * AnimateDiff layout (no `module.` prefix, both `pos_encoder.pe` copies), reloads bit-exactly, and
 * animates differently from the untrained module — which, with `proj_out` zero, is exactly the
 * module-less text-to-image model.
 */

import { createTrainer } from "../../../engine/training/trainer.ts";
import { loadPipeline } from "../../../engine/pipeline.ts";
import { TorchGenerator } from "../../../engine/rng.ts";
import { loadModel, loadMotionModule } from "../../../weights/load.ts";
import { applyLoras, loadLora } from "../../../weights/lora.ts";
import { detectKind } from "../../../weights/detect.ts";
import { ClipTokenizer } from "../../../engine/tokenizer.ts";
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
      // As a .ckpt (torch.save's zip, what the original scripts' torch.load reads): the same.
      await trainer.save(`${dir}/trained.ckpt`);
      const ckpt = await loadMotionModule(`${dir}/trained.ckpt`);
      for (const [name, values] of trained) {
        const back = await ckpt.tensors.get(name)!.read();
        assert(back.every((v, i) => Object.is(v, values[i])), `${name} changed through the .ckpt`);
      }
      ckpt.close();
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

/** A text-to-image batch of the tiny model: 2 latents images with random context. */
function imageBatch(seed: number) {
  const g = new TorchGenerator(seed);
  return {
    latents: { shape: [2, 4, 4, 4], data: g.randn([2, 4, 4, 4]) },
    encoderHiddenStates: { shape: [2, 77, 32], data: g.randn([2, 77, 32]) },
  };
}

gpuTest(
  "train unet: the fine-tune saves as an SD1.5 single file that loads back exactly",
  async () => {
    const dir = await Deno.makeTempDir();
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "unet",
      optimizer: { lr: 1e-3 },
      gpu: await testGpu(),
    });
    try {
      await trainer.step(imageBatch(1));
      const path = `${dir}/finetune.safetensors`;
      await trainer.save(path);
      assertEquals(detectKind((await openTensorFile(path)).tensors.keys()), "sd15-checkpoint");
      const back = await loadModel(path, { config: TINY + "model" });
      const base = await loadModel(TINY + "model");
      for (const [name, values] of trainer.parameters()) {
        const v = await back.unet.get(name)!.read();
        assert(v.every((x, i) => Object.is(x, values[i])), `unet ${name} changed through the file`);
      }
      for (const part of ["vae", "textEncoder"] as const) {
        for (const [name, t] of base[part]) {
          const [a, b] = [await t.read(), await back[part].get(name)!.read()];
          assert(a.every((x, i) => Object.is(x, b[i])), `${part} ${name} changed`);
        }
      }
      back.close();
      base.close();
    } finally {
      trainer.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "train unet with lora: a kohya LoRA on the spatial attentions that merges as W + s B A",
  async () => {
    const dir = await Deno.makeTempDir();
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "unet",
      lora: { rank: 2, alpha: 1 },
      optimizer: { lr: 1e-2 },
      gpu: await testGpu(),
    });
    try {
      await trainer.step(imageBatch(2));
      const names = [...trainer.trainable];
      assert(
        names.length > 0 &&
          names.every((n) =>
            /attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.to_(q|k|v|out\.0)\.lora_[AB]\.weight$/
              .test(n)
          ),
        names[0],
      );
      const path = `${dir}/unet_lora.safetensors`;
      await trainer.save(path);
      const file = await openTensorFile(path);
      assertEquals(detectKind(file.tensors.keys()), "lora-kohya");
      assertEquals(file.tensors.size, (names.length / 2) * 3); // down, up, alpha per module
      file.close();
      const params = trainer.parameters();
      const model = await loadModel(TINY + "model");
      const merged = applyLoras(model, [{ lora: await loadLora(path, { model }), scale: 1 }]);
      const target = names[0].replace(/\.lora_[AB]\.weight$/, "");
      const [a, b] = [
        params.get(`${target}.lora_A.weight`)!,
        params.get(`${target}.lora_B.weight`)!,
      ];
      const w = await model.unet.get(`${target}.weight`)!.read();
      const got = await merged.unet.get(`${target}.weight`)!.read();
      const rank = 2, cols = a.length / rank;
      const want = w.map((v, i) => {
        const row = Math.floor(i / cols), col = i % cols;
        let d = 0;
        for (let k = 0; k < rank; k++) d += b[row * rank + k] * a[k * cols + col];
        return v + 0.5 * d;
      });
      assert(b.some((v) => v !== 0), "B moved off zero");
      let err = 0, norm = 0;
      for (let i = 0; i < w.length; i++) {
        [err, norm] = [
          err + (got[i] - want[i]) ** 2,
          norm + want[i] ** 2,
        ];
      }
      assert(Math.sqrt(err / norm) < 1e-6, `merged ${target}: ${Math.sqrt(err / norm)}`);
      merged.close();
    } finally {
      trainer.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

gpuTest(
  "train unet with the text encoder: CLIP learns too (only the prompts' token rows)",
  async () => {
    const dir = await Deno.makeTempDir();
    const trainer = await createTrainer({
      model: TINY + "model",
      train: "unet",
      trainTextEncoder: true,
      optimizer: { lr: 1e-3 },
      gpu: await testGpu(),
    });
    try {
      const prompts = ["a red circle", "a blue square"];
      const g = new TorchGenerator(4);
      await trainer.step({
        latents: { shape: [2, 4, 4, 4], data: g.randn([2, 4, 4, 4]) },
        prompts,
      });
      const grads = trainer.gradients();
      const table = "text_model.embeddings.token_embedding.weight";
      assert(grads.has(table) && grads.has("conv_in.weight"), "UNet and CLIP are both trained");
      // Only rows of tokens in the prompts (and the padding / start / end tokens) get gradient.
      const tok = ClipTokenizer.fromFiles({
        vocabJson: await Deno.readTextFile(TINY + "model/tokenizer/vocab.json"),
        mergesTxt: await Deno.readTextFile(TINY + "model/tokenizer/merges.txt"),
      });
      const used = new Set(prompts.flatMap((p) => [...tok.encode(p).ids]));
      const d = 32, gt = grads.get(table)!;
      for (let row = 0; row < gt.length / d; row++) {
        const nonzero = gt.subarray(row * d, (row + 1) * d).some((v) => v !== 0);
        assertEquals(nonzero, used.has(row), `token row ${row}`);
      }
      // The single file carries the trained text encoder.
      const path = `${dir}/model.safetensors`;
      await trainer.save(path);
      const back = await loadModel(path, { config: TINY + "model" });
      const want = trainer.parameters().get(table)!;
      const got = await back.textEncoder.get(table)!.read();
      assert(got.every((v, i) => Object.is(v, want[i])), "trained token table written");
      back.close();
    } finally {
      trainer.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
