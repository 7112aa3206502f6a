import { assert, assertEquals, assertRejects } from "../assert.ts";
import { loadModel } from "../../weights/load.ts";
import { applyLoras, applyMotionLoras, loadLora, loraTargets } from "../../weights/lora.ts";
import { type TensorToWrite, writeSafetensors } from "../../weights/safetensors.ts";
import { loadTinyDemoModel, tinyLora } from "../../weights/tiny.ts";
import { writeTinyLora } from "./tiny_files.ts";
import { ldmUNetModuleName } from "../../weights/names.ts";
import type { ModelWeights, TensorMap } from "../../weights/types.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;

/** Names of tensors whose values differ, and the largest difference between two merged models. */
async function compareModels(
  a: ModelWeights,
  b: ModelWeights,
): Promise<{ changed: string[]; maxDiff: number }> {
  const changed: string[] = [];
  let maxDiff = 0;
  for (const part of ["unet", "textEncoder", "vae"] as const) {
    for (const [name, ta] of a[part]) {
      const va = await ta.read(), vb = await b[part].get(name)!.read();
      let d = 0;
      for (let i = 0; i < va.length; i++) d = Math.max(d, Math.abs(va[i] - vb[i]));
      if (d > 0) changed.push(name);
      maxDiff = Math.max(maxDiff, d);
    }
  }
  return { changed, maxDiff };
}

async function writeList(path: string, tensors: TensorMap, rename: (n: string) => string) {
  const list: TensorToWrite[] = [];
  for (const [n, t] of tensors) {
    list.push({ name: rename(n), shape: t.shape, dtype: "F32", data: await t.read() });
  }
  await writeSafetensors(path, list);
}

Deno.test("lora: fixture kohya and peft files merge (scale 0.8) to the same 40 changed modules", async () => {
  const model = await loadModel(TINY + "model");
  const kohya = await loadLora(TINY + "lora/lora_kohya.safetensors", { model });
  const peft = await loadLora(TINY + "lora/pytorch_lora_weights.safetensors", {
    architecture: ARCHITECTURE,
  });
  assertEquals([kohya.kind, peft.kind], ["lora-kohya", "lora-diffusers"]);
  assertEquals([kohya.modules.size, peft.modules.size], [40, 40]);
  assertEquals([...kohya.modules.keys()].sort(), [...peft.modules.keys()].sort());
  assertEquals(kohya.modules.get("text_model.encoder.layers.1.self_attn.q_proj")?.alpha, 2);
  const a = applyLoras(model, [{ lora: kohya, scale: 0.8 }]);
  const b = applyLoras(model, [{ lora: peft, scale: 0.8 }]);
  const same = await compareModels(a, b);
  assert(same.maxDiff <= 1e-6, `kohya vs peft max diff ${same.maxDiff} (tolerance 1e-6)`);
  const effect = await compareModels(a, model);
  assertEquals(effect.changed.length, 40);
  assert(
    effect.changed.every((n) =>
      /(attn[12]\.(to_q|to_k|to_v|to_out\.0)|self_attn\.(q|k|v|out)_proj)\.weight$/.test(n)
    ),
  );
  assert(effect.maxDiff > 1e-3, `LoRA effect ${effect.maxDiff}`);
  // Manual check of one element: W' = W + 0.8 * (2/4) * (up @ down).
  const name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k";
  const m = kohya.modules.get(name)!.factors;
  assert(m.kind === "lora", m.kind);
  const [w, wm, up, down] = await Promise.all([
    model.unet.get(name + ".weight")!.read(),
    a.unet.get(name + ".weight")!.read(),
    m.up.read(),
    m.down.read(),
  ]);
  const cols = 32, o = 5, i = 7;
  let acc = 0;
  for (let r = 0; r < 4; r++) acc += up[o * 4 + r] * down[r * cols + i];
  assert(Math.abs(wm[o * cols + i] - (w[o * cols + i] + 0.8 * 0.5 * acc)) < 1e-6, "manual merge");
  // Two LoRAs sum: kohya 0.5 + peft 0.3 == kohya 0.8.
  const sum = applyLoras(model, [{ lora: kohya, scale: 0.5 }, { lora: peft, scale: 0.3 }]);
  assert((await compareModels(sum, a)).maxDiff <= 1e-6, "sum of LoRAs");
  model.close();
});

Deno.test("lora: LDM-style kohya names resolve against the model's structure", async () => {
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    const { tensors } = tinyLora(ARCHITECTURE, "kohya");
    await writeList(`${dir}/diffusers_style.safetensors`, tensors, (n) => n);
    const toLdm = (n: string) => {
      const m = /^lora_unet_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$/.exec(n);
      if (!m) return n;
      const module = [...loraTargets(model).modules.keys()].find((k) =>
        k.replaceAll(".", "_") === m[1]
      )!;
      return `lora_unet_${ldmUNetModuleName(module, model.unetConfig)!.replaceAll(".", "_")}.${
        m[2]
      }`;
    };
    await writeList(`${dir}/ldm_style.safetensors`, tensors, toLdm);
    const ldm = await loadLora(`${dir}/ldm_style.safetensors`, { model });
    assert(ldm.raw.some((r) => r.module.startsWith("input_blocks_1_1_")), "file uses LDM names");
    const diffusers = await loadLora(`${dir}/diffusers_style.safetensors`, {
      architecture: ARCHITECTURE,
    });
    assertEquals([...ldm.modules.keys()].sort(), [...diffusers.modules.keys()].sort());
    const a = applyLoras(model, [{ lora: ldm, scale: 1 }]);
    const b = applyLoras(model, [{ lora: diffusers, scale: 1 }]);
    assertEquals((await compareModels(a, b)).maxDiff, 0);
    assertEquals((await compareModels(a, model)).changed.length, 40);
    // peft layout written by the generator gives the same merge.
    await writeTinyLora(`${dir}/peft.safetensors`, { layout: "peft" });
    const peft = await loadLora(`${dir}/peft.safetensors`, { architecture: ARCHITECTURE });
    assert((await compareModels(applyLoras(model, [{ lora: peft, scale: 1 }]), a)).maxDiff <= 1e-6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lora: conv LoCon (3x3 down, 1x1 up) merges on the flattened kernel", async () => {
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    const r = 2, out = 32, inp = 32;
    const down = Float32Array.from({ length: r * inp * 9 }, (_, i) => Math.sin(i) * 0.1);
    const up = Float32Array.from({ length: out * r }, (_, i) => Math.cos(i) * 0.1);
    const k = "lora_unet_down_blocks_0_resnets_0_conv1";
    await writeSafetensors(`${dir}/locon.safetensors`, [
      { name: `${k}.lora_down.weight`, shape: [r, inp, 3, 3], dtype: "F32", data: down },
      { name: `${k}.lora_up.weight`, shape: [out, r, 1, 1], dtype: "F32", data: up },
      { name: `${k}.alpha`, shape: [], dtype: "F32", data: new Float32Array([1]) },
    ]);
    const lora = await loadLora(`${dir}/locon.safetensors`, { model });
    const merged = applyLoras(model, [{ lora, scale: 2 }]);
    const name = "down_blocks.0.resnets.0.conv1.weight";
    const w = await model.unet.get(name)!.read(), wm = await merged.unet.get(name)!.read();
    const o = 3, flat = 100; // element (o, c=11, kh=0, kw=1)
    const expected = w[o * 288 + flat] +
      2 * (1 / r) * (up[o * r] * down[flat] + up[o * r + 1] * down[288 + flat]);
    assert(Math.abs(wm[o * 288 + flat] - expected) < 1e-6, `${wm[o * 288 + flat]} vs ${expected}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lora: LoRAs for other models are errors naming the file and the bad modules", async () => {
  const { model, motion } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    // SDXL-like: a module the tiny model does not have, and a shape that does not fit.
    await writeSafetensors(`${dir}/xl.safetensors`, [
      {
        name: "lora_unet_down_blocks_2_attentions_0_proj_in.lora_down.weight",
        shape: [4, 1280],
        dtype: "F32",
        data: new Float32Array(5120),
      },
      {
        name: "lora_unet_down_blocks_2_attentions_0_proj_in.lora_up.weight",
        shape: [1280, 4],
        dtype: "F32",
        data: new Float32Array(5120),
      },
      {
        name: "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight",
        shape: [4, 1280],
        dtype: "F32",
        data: new Float32Array(5120),
      },
      {
        name: "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight",
        shape: [1280, 4],
        dtype: "F32",
        data: new Float32Array(5120),
      },
    ]);
    const err = await assertRejects(
      () => loadLora(`${dir}/xl.safetensors`, { model }),
      /xl\.safetensors: LoRA does not match the model \(2 of 2 modules.*modules not in the model: down_blocks_2_attentions_0_proj_in; shapes that do not fit: mid_block\.attentions\.0\.proj_in/,
    );
    assert(!err.message.includes("\n"));
    // Loaded against standard SD1.5 names it resolves, but applying to the tiny model fails.
    const lora = await loadLora(`${dir}/xl.safetensors`, { architecture: ARCHITECTURE });
    await assertRejects(
      () => applyLoras(model, [{ lora, scale: 1 }]),
      /LoRA does not match the model/,
    );
    await writeSafetensors(`${dir}/te2.safetensors`, [
      {
        name: "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
        shape: [4, 32],
        dtype: "F32",
        data: new Float32Array(128),
      },
    ]);
    await assertRejects(
      () => loadLora(`${dir}/te2.safetensors`, { architecture: ARCHITECTURE }),
      /te2\.safetensors: tensors this LoRA loader does not understand.*lora_te2_/,
    );
    await assertRejects(
      () =>
        loadLora(TINY + "single_file/motion_module.safetensors", { architecture: ARCHITECTURE }),
      /this is an AnimateDiff motion module; expected a LoRA/,
    );
    // An AnimateDiff motion LoRA (original processor names) applies to motion weights only.
    const name = "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q";
    const base =
      "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora";
    await writeSafetensors(`${dir}/motion_lora.safetensors`, [
      {
        name: `${base}.down.weight`,
        shape: [1, 32],
        dtype: "F32",
        data: new Float32Array(32).fill(1),
      },
      {
        name: `${base}.up.weight`,
        shape: [32, 1],
        dtype: "F32",
        data: new Float32Array(32).fill(0.5),
      },
    ]);
    const ml = await loadLora(`${dir}/motion_lora.safetensors`, { model, motion });
    assertEquals([...ml.modules.values()].map((m) => m.part), ["motion"]);
    const merged = applyMotionLoras(motion, [{ lora: ml, scale: 1 }], { model });
    const w = await motion.tensors.get(name + ".weight")!.read(),
      wm = await merged.tensors.get(name + ".weight")!.read();
    assert(Math.abs(wm[0] - (w[0] + 0.5)) < 1e-6 && Math.abs(wm[1023] - (w[1023] + 0.5)) < 1e-6);
    const unchanged = applyLoras(model, [{ lora: ml, scale: 1 }]);
    assertEquals((await compareModels(unchanged, model)).changed, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
