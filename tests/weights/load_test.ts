import { assert, assertEquals, assertRejects } from "../assert.ts";
import type { TensorMap } from "../../weights/types.ts";
import { detectPathKind, loadModel, loadMotionModule, weightsFilesOf } from "../../weights/load.ts";
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../../weights/safetensors.ts";
import { writeTorchZip } from "../../weights/torch_save.ts";
import { decodeToFloat32, encodeFromFloat32 } from "../../weights/dtype.ts";
import { tinyModelTensors, tinyMotionTensors } from "../../weights/tiny.ts";
import {
  writeTinyDiffusersFolder,
  writeTinyMotionAdapter,
  writeTinyMotionModule,
  writeTinySingleFile,
} from "./tiny_files.ts";
import { originalMotionNames } from "../../weights/names.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { FAMILIES, writeFamilyCheckpoint, writeFamilyDiffusersFolder } from "./family_fixtures.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;

/** Same names, shapes and bit-identical values (or values after an f16 round trip). */
export async function assertSameTensors(
  a: TensorMap,
  b: TensorMap,
  what: string,
  f16 = false,
): Promise<number> {
  assertEquals([...a.keys()].sort(), [...b.keys()].sort(), `${what}: names`);
  let n = 0;
  for (const [name, ta] of a) {
    const tb = b.get(name)!;
    assertEquals(ta.shape, tb.shape, `${what}: shape of ${name}`);
    const va = await ta.read();
    let vb = await tb.read();
    if (f16) vb = decodeToFloat32(encodeFromFloat32(vb, "F16"), "F16");
    const ua = new Uint32Array(va.buffer, va.byteOffset, va.length);
    const ub = new Uint32Array(vb.buffer, vb.byteOffset, vb.length);
    for (let i = 0; i < ua.length; i++) {
      if (ua[i] !== ub[i]) throw new Error(`${what}: ${name}[${i}] ${va[i]} != ${vb[i]}`);
    }
    n += va.length;
  }
  return n;
}

Deno.test("load: fixture single file (config from model/) is bit-identical to the diffusers folder", async () => {
  const folder = await loadModel(TINY + "model");
  const single = await loadModel(TINY + "single_file/sd15.safetensors", {
    config: TINY + "model",
    architecture: ARCHITECTURE,
  });
  assertEquals(single.unetConfig, folder.unetConfig);
  assertEquals(single.vaeConfig, folder.vaeConfig);
  assertEquals(single.clipConfig, folder.clipConfig);
  assertEquals([folder.unet.size, folder.vae.size, folder.textEncoder.size], [208, 180, 36]);
  const values = await assertSameTensors(single.unet, folder.unet, "unet") +
    await assertSameTensors(single.vae, folder.vae, "vae") +
    await assertSameTensors(single.textEncoder, folder.textEncoder, "text encoder");
  assert(values > 1_000_000, `compared ${values} values`);
  assert(folder.tokenizer !== undefined && folder.tokenizer.vocabJson.includes("<|endoftext|>"));
  assertEquals(single.tokenizer, undefined);
  folder.close();
  single.close();
});

Deno.test("load: fixture fp16 single file equals the folder rounded to f16", async () => {
  const folder = await loadModel(TINY + "model");
  const half = await loadModel(TINY + "single_file/sd15.fp16.safetensors", {
    config: TINY + "model",
  });
  assertEquals(half.unet.get("conv_in.weight")!.dtype, "F16");
  await assertSameTensors(half.unet, folder.unet, "unet", true);
  await assertSameTensors(half.vae, folder.vae, "vae", true);
  await assertSameTensors(half.textEncoder, folder.textEncoder, "text encoder", true);
  folder.close();
  half.close();
});

Deno.test("load: single file without --config fails on GroupNorm groups with a hint", async () => {
  await assertRejects(
    () => loadModel(TINY + "single_file/sd15.safetensors"),
    /sd15\.safetensors: VAE config: GroupNorm with 32 groups does not divide 16 channels.*config/,
  );
});

Deno.test("load: motion module .ckpt vs .safetensors vs MotionAdapter folder, pe included", async () => {
  const adapter = await loadMotionModule(TINY + "motion_adapter");
  const st = await loadMotionModule(TINY + "single_file/motion_module.safetensors", {
    config: TINY + "motion_adapter",
  });
  const ckpt = await loadMotionModule(TINY + "single_file/motion_module.ckpt", {
    config: TINY + "motion_adapter/config.json",
  });
  assertEquals(adapter.config, { ...st.config });
  assertEquals(ckpt.config, adapter.config);
  assertEquals(adapter.config.heads, 2);
  assertEquals(adapter.tensors.size, 189);
  assert(adapter.tensors.has("mid_block.motion_modules.0.transformer_blocks.0.pos_embed.pe"));
  await assertSameTensors(st.tensors, adapter.tensors, "safetensors vs adapter");
  await assertSameTensors(ckpt.tensors, adapter.tensors, "ckpt vs adapter");
  // Without a config: defaults (8 heads, 32 groups) and still v2 from the shapes.
  const plain = await loadMotionModule(TINY + "single_file/motion_module.ckpt");
  assertEquals([plain.config.version, plain.config.heads, plain.config.normGroups], ["v2", 8, 32]);
  for (const m of [adapter, st, ckpt, plain]) m.close();
});

Deno.test("load: wrong kinds give one-line errors naming what the file is", async () => {
  const oneLine = (e: Error) => assert(!e.message.includes("\n"), e.message);
  oneLine(
    await assertRejects(
      () => loadModel(TINY + "lora/lora_kohya.safetensors"),
      /this is a kohya LoRA; expected an SD1\.5 checkpoint/,
    ),
  );
  oneLine(
    await assertRejects(
      () => loadModel(TINY + "single_file/motion_module.ckpt"),
      /this is an AnimateDiff motion module; expected an SD1\.5/,
    ),
  );
  oneLine(
    await assertRejects(
      () => loadModel(TINY + "motion_adapter"),
      /this is a diffusers MotionAdapter; expected an SD1\.5/,
    ),
  );
  oneLine(
    await assertRejects(
      () => loadMotionModule(TINY + "single_file/sd15.safetensors"),
      /this is an SD1\.5 single-file checkpoint; expected an AnimateDiff motion module/,
    ),
  );
  oneLine(
    await assertRejects(
      () => loadMotionModule(TINY + "model"),
      /this is a diffusers model .*expected an AnimateDiff motion module/,
    ),
  );
  await assertRejects(
    () => loadModel(TINY + "nope.safetensors"),
    /nope\.safetensors: no such file or folder/,
  );
});

async function rewrite(
  src: string,
  dst: string,
  edit: (t: TensorToWrite[]) => TensorToWrite[],
): Promise<void> {
  const f = await openSafetensors(src);
  const list: TensorToWrite[] = [];
  for (const [name, t] of f.tensors) {
    list.push({
      name,
      shape: t.shape,
      dtype: t.dtype === "I64" ? "I64" : "F32",
      data: await t.read(),
    });
  }
  f.close();
  await writeSafetensors(dst, edit(list));
}

Deno.test("load: unknown, missing and wrong-shaped tensors are errors listing them; EMA is ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const src = TINY + "single_file/sd15.safetensors";
    const extra = (name: string): TensorToWrite => ({
      name,
      shape: [2],
      dtype: "F32",
      data: new Float32Array(2),
    });
    await rewrite(
      src,
      `${dir}/extra.safetensors`,
      (l) => [...l, extra("model.diffusion_model.foo.weight"), extra("bar")],
    );
    await assertRejects(
      () =>
        loadModel(`${dir}/extra.safetensors`, {
          config: TINY + "model",
          architecture: ARCHITECTURE,
        }),
      /unexpected tensors in the SD1\.5 checkpoint: (bar, model\.diffusion_model\.foo\.weight|model\.diffusion_model\.foo\.weight, bar)/,
    );
    await rewrite(
      src,
      `${dir}/ema.safetensors`,
      (
        l,
      ) => [
        ...l,
        extra("model_ema.decay"),
        extra("model_ema.diffusion_modelout2weight"),
        extra("betas"),
      ],
    );
    const ema = await loadModel(`${dir}/ema.safetensors`, {
      config: TINY + "model",
      architecture: ARCHITECTURE,
    });
    assertEquals(ema.unet.size, 208);
    ema.close();
    await rewrite(
      src,
      `${dir}/missing.safetensors`,
      (l) => l.filter((t) => !t.name.endsWith("middle_block.1.proj_out.bias")),
    );
    await assertRejects(
      () =>
        loadModel(`${dir}/missing.safetensors`, {
          config: TINY + "model",
          architecture: ARCHITECTURE,
        }),
      /UNet: missing tensors: mid_block\.attentions\.0\.proj_out\.bias/,
    );
    await rewrite(
      src,
      `${dir}/shape.safetensors`,
      (l) => l.map((t) => t.name.endsWith("out.2.bias") ? { ...t, shape: [2, 2] } : t),
    );
    await assertRejects(
      () =>
        loadModel(`${dir}/shape.safetensors`, {
          config: TINY + "model",
          architecture: ARCHITECTURE,
        }),
      /wrong shapes: conv_out\.bias \[2,2\] \(expected \[4\]\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: tiny generator files round-trip through every loader route to identical tensors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tiny = tinyModelTensors(ARCHITECTURE);
    await writeTinyDiffusersFolder(`${dir}/model`);
    await writeTinySingleFile(`${dir}/tiny.safetensors`);
    await writeTinySingleFile(`${dir}/tiny.ckpt`, { format: "ckpt" });
    await writeTinySingleFile(`${dir}/tiny.fp16.safetensors`, { fp16: true });
    const folder = await loadModel(`${dir}/model`);
    assertEquals(folder.unetConfig, tiny.unetConfig);
    assertEquals(folder.vaeConfig, tiny.vaeConfig);
    assertEquals(folder.clipConfig, tiny.clipConfig);
    assertEquals(folder.tokenizer, {
      ...tiny.tokenizer,
      vocabPath: `${dir}/model/tokenizer/vocab.json`,
      mergesPath: `${dir}/model/tokenizer/merges.txt`,
    });
    for (const path of ["model", "tiny.safetensors", "tiny.ckpt", "tiny.fp16.safetensors"]) {
      const m = path === "model"
        ? folder
        : await loadModel(`${dir}/${path}`, { config: `${dir}/model` });
      const f16 = path.includes("fp16");
      await assertSameTensors(m.unet, tiny.unet, `${path} unet`, f16);
      await assertSameTensors(m.vae, tiny.vae, `${path} vae`, f16);
      await assertSameTensors(m.textEncoder, tiny.textEncoder, `${path} text encoder`, f16);
      m.close();
    }
    for (const version of ["v1", "v2", "v3"] as const) {
      const ref = tinyMotionTensors(ARCHITECTURE, version);
      await writeTinyMotionModule(`${dir}/mm_${version}.ckpt`, { version });
      await writeTinyMotionModule(`${dir}/mm_${version}.safetensors`, {
        version,
        format: "safetensors",
      });
      await writeTinyMotionAdapter(`${dir}/adapter_${version}`, { version });
      for (const p of [`mm_${version}.ckpt`, `mm_${version}.safetensors`, `adapter_${version}`]) {
        const m = await loadMotionModule(`${dir}/${p}`, { config: `${dir}/adapter_${version}` });
        assertEquals(m.config, ref.config, p);
        await assertSameTensors(m.tensors, ref.tensors, p);
        m.close();
      }
    }
    // Wrapped original files: torch `state_dict` wrapper + DDP `module.` prefix.
    const ref = tinyMotionTensors(ARCHITECTURE, "v2");
    const wrapped: TensorToWrite[] = [];
    for (const [name, t] of ref.tensors) {
      for (const n of originalMotionNames(name)) {
        wrapped.push({ name: "module." + n, shape: t.shape, dtype: "F32", data: await t.read() });
      }
    }
    await writeTorchZip(`${dir}/wrapped.ckpt`, wrapped, { stateDictKey: "state_dict" });
    const w = await loadMotionModule(`${dir}/wrapped.ckpt`, { config: `${dir}/adapter_v2` });
    await assertSameTensors(w.tensors, ref.tensors, "wrapped");
    w.close();
    assertEquals(await detectPathKind(`${dir}/adapter_v2`), "motion-adapter");
    assertEquals(await detectPathKind(`${dir}/model`), "diffusers-model");
    assertEquals((await weightsFilesOf(`${dir}/model`)).length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: hf: references resolve through the hub cache (offline, no network)", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    const repo = `${cache}/models--guoyww--tiny`;
    await Deno.mkdir(`${repo}/snapshots/${commit}/adapter`, { recursive: true });
    await Deno.mkdir(`${repo}/refs`, { recursive: true });
    await Deno.writeTextFile(`${repo}/refs/main`, commit);
    await Deno.copyFile(
      TINY + "single_file/motion_module.ckpt",
      `${repo}/snapshots/${commit}/mm.ckpt`,
    );
    const hub = { cacheDir: cache, offline: true };
    const m = await loadMotionModule("hf:guoyww/tiny/mm.ckpt", { hub });
    assertEquals([m.config.version, m.tensors.size], ["v2", 189]);
    assert(m.source.endsWith(`snapshots/${commit}/mm.ckpt`), m.source);
    m.close();
    await assertRejects(
      () => loadModel("hf:guoyww/tiny/other.safetensors", { hub }),
      /not in the hub cache .*offline/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("load: inpainting, InstructPix2Pix, SD 2.x and SDXL models are refused naming the family", async () => {
  const dir = await Deno.makeTempDir();
  const evidence: Record<string, RegExp> = {
    "sd15-inpainting":
      /is an SD1\.5 inpainting (checkpoint|diffusers model) \(conv_in takes 9 channels, not 4\)/,
    "instruct-pix2pix":
      /is an InstructPix2Pix (checkpoint|diffusers model) \(conv_in takes 8 channels, not 4\)/,
    "sd2":
      /is an SD 2\.x (checkpoint \(an OpenCLIP text encoder under cond_stage_model\.model\.\*\)|diffusers model \(cross-attention dim 1024)/,
    "sdxl":
      /is an SDXL (checkpoint \(two text encoders under conditioner\.embedders\.\*\)|diffusers model \(size conditioning)/,
  };
  try {
    for (const family of FAMILIES) {
      await writeFamilyCheckpoint(`${dir}/${family}.safetensors`, family);
      await writeFamilyDiffusersFolder(`${dir}/${family}`, family);
      for (const path of [`${dir}/${family}.safetensors`, `${dir}/${family}`]) {
        const err = await assertRejects(() => loadModel(path), evidence[family]);
        assert(err instanceof InputError, `${path}: ${err.name}`);
        assert(err.message.startsWith(`${path} is `), err.message);
        assert(
          err.message.endsWith("; AnimateDiff needs a text-to-image SD1.5 checkpoint"),
          err.message,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: a UNet whose channels do not fit the VAE or text encoder is refused at load", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyDiffusersFolder(`${dir}/m`);
    // conv_in with 5 channels (no known family): the VAE's latents have 4.
    const unetFile = `${dir}/m/unet/diffusion_pytorch_model.safetensors`;
    const f = await openSafetensors(unetFile);
    const out: TensorToWrite[] = [];
    for (const [name, t] of f.tensors) {
      const shape = name === "conv_in.weight" ? [t.shape[0], 5, 3, 3] : [...t.shape];
      out.push({
        name,
        shape,
        dtype: "F32",
        data: new Float32Array(shape.reduce((a, b) => a * b)),
      });
    }
    f.close();
    await writeSafetensors(unetFile, out);
    const err = await assertRejects(
      () => loadModel(`${dir}/m`),
      /: the UNet takes 5 and gives 4 channels but the VAE's latents have 4; AnimateDiff needs a text-to-image SD1\.5 checkpoint$/,
    );
    assert(err instanceof InputError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load: malformed config.json, index.json and tokenizer files are InputErrors naming them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyDiffusersFolder(`${dir}/m`);
    const config = `${dir}/m/unet/config.json`;
    const good = await Deno.readTextFile(config);
    const cases: [string, string, RegExp][] = [
      [config, "{not json", /unet\/config\.json: not valid JSON \(/],
      [config, "[1, 2]", /unet\/config\.json: expected a JSON object$/],
      [
        config,
        '{"norm_num_groups": -8}',
        /unet\/config\.json: norm_num_groups must be an integer from 1 to 4096, got -8$/,
      ],
      [
        config,
        '{"norm_num_groups": "32"}',
        /norm_num_groups must be an integer from 1 to 4096, got "32"$/,
      ],
      [
        config,
        '{"attention_head_dim": [8, 0]}',
        /attention_head_dim must be an integer from 1 to 4096 or a list of them, got a list$/,
      ],
      [config, '{"norm_eps": 0}', /norm_eps must be a positive number, got 0$/],
    ];
    for (const [file, text, pattern] of cases) {
      await Deno.writeTextFile(file, text);
      const err = await assertRejects(() => loadModel(`${dir}/m`), pattern);
      assert(err instanceof InputError && !err.message.includes("\n"), err.message);
    }
    await Deno.writeTextFile(config, good);
    await Deno.writeTextFile(`${dir}/m/tokenizer/merges.txt`, "#version: 0.2\n");
    await Deno.remove(`${dir}/m/tokenizer/merges.txt`);
    const noMerges = await assertRejects(
      () => loadModel(`${dir}/m`),
      /tokenizer\/merges\.txt: missing \(a tokenizer folder needs vocab\.json and merges\.txt\)$/,
    );
    assert(noMerges instanceof InputError);
    // A sharded UNet whose index names a shard outside the folder.
    await writeTinyDiffusersFolder(`${dir}/s`);
    await Deno.rename(
      `${dir}/s/unet/diffusion_pytorch_model.safetensors`,
      `${dir}/s/unet/diffusion_pytorch_model-00001-of-00001.safetensors`,
    );
    const index = `${dir}/s/unet/diffusion_pytorch_model.safetensors.index.json`;
    for (
      const [text, pattern] of [
        [
          '{"weight_map": {"conv_in.weight": "../../../etc/passwd"}}',
          /got a shard named "\.\.\/\.\.\/\.\.\/etc\/passwd"$/,
        ],
        ['{"weight_map": null}', /expected "weight_map": \{tensor: shard file name\}$/],
        ['{"weight_map": {"a": 7}}', /got a shard named 7$/],
      ] as [string, RegExp][]
    ) {
      await Deno.writeTextFile(index, text);
      const err = await assertRejects(() => loadModel(`${dir}/s`), pattern);
      assert(err instanceof InputError, err.message);
    }
    // A motion-module config asking for an absurd position table is refused before allocating it.
    await Deno.writeTextFile(`${dir}/mm.json`, '{"motion_max_seq_length": 1000000000}');
    const huge = await assertRejects(
      () => loadMotionModule(TINY + "single_file/motion_module.ckpt", { config: `${dir}/mm.json` }),
      /mm\.json: motion_max_seq_length must be an integer from 1 to 1024, got 1000000000$/,
    );
    assert(huge instanceof InputError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
