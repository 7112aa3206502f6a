import { assertEquals, assertRejects } from "../assert.ts";
import { openSafetensors } from "../../weights/safetensors.ts";
import {
  detectKind,
  diffusersClipOverrides,
  diffusersMotionOverrides,
  diffusersUNetOverrides,
  diffusersVaeOverrides,
  inferClipConfig,
  inferMotionConfig,
  inferUNetConfig,
  inferVaeConfig,
  unetConfigJson,
} from "../../weights/detect.ts";
import type { TensorMap } from "../../weights/types.ts";
import { TINY_UNET_CONFIG, tinyModelTensors, tinyMotionTensors } from "../../weights/tiny.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;

async function tensors(path: string): Promise<TensorMap> {
  const f = await openSafetensors(TINY + path);
  f.close(); // shapes only
  return f.tensors;
}
const json = async (path: string) => JSON.parse(await Deno.readTextFile(TINY + path));

Deno.test("detect: detectKind classifies every fixture file by its names", async () => {
  const cases: [string, string][] = [
    ["single_file/sd15.safetensors", "sd15-checkpoint"],
    ["single_file/sd15.fp16.safetensors", "sd15-checkpoint"],
    ["single_file/motion_module.safetensors", "motion-module"],
    ["motion_adapter/diffusion_pytorch_model.safetensors", "motion-adapter"],
    ["model/unet/diffusion_pytorch_model.safetensors", "diffusers-model"],
    ["model/text_encoder/model.safetensors", "diffusers-model"],
    ["lora/lora_kohya.safetensors", "lora-kohya"],
    ["lora/pytorch_lora_weights.safetensors", "lora-diffusers"],
  ];
  for (const [path, kind] of cases) {
    assertEquals(detectKind((await tensors(path)).keys()), kind, path);
  }
  assertEquals(detectKind(["foo.bar", "baz"]), "unknown");
  assertEquals(detectKind([]), "unknown");
  assertEquals(detectKind(["state_dict.model.diffusion_model.out.2.weight"]), "sd15-checkpoint");
});

Deno.test("detect: configs inferred from fixture shapes + config.json equal the diffusers configs", async () => {
  const unet = inferUNetConfig(
    await tensors("model/unet/diffusion_pytorch_model.safetensors"),
    diffusersUNetOverrides(await json("model/unet/config.json")),
  );
  assertEquals(unet, {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [32, 64],
    layersPerBlock: 1,
    downBlockAttention: [true, false],
    upBlockAttention: [false, true],
    midBlockAttention: true,
    crossAttentionDim: 32,
    attentionHeads: [8, 8], // legacy attention_head_dim = number of heads
    transformerLayersPerBlock: 1,
    normGroups: 8,
    normEps: 1e-5,
    useLinearProjection: false,
    flipSinToCos: true,
    freqShift: 0,
    timeEmbeddingDim: 128,
  });
  const vae = inferVaeConfig(
    await tensors("model/vae/diffusion_pytorch_model.safetensors"),
    diffusersVaeOverrides(await json("model/vae/config.json")),
  );
  assertEquals(vae, {
    inChannels: 3,
    latentChannels: 4,
    blockOutChannels: [16, 16, 32, 32],
    layersPerBlock: 1,
    normGroups: 8,
    normEps: 1e-6,
    scalingFactor: 0.18215,
    hasQuantConv: true,
  });
  const clip = inferClipConfig(
    await tensors("model/text_encoder/model.safetensors"),
    diffusersClipOverrides(await json("model/text_encoder/config.json")),
  );
  assertEquals(clip, {
    vocabSize: 1000,
    hiddenSize: 32,
    intermediateSize: 37,
    layers: 2,
    heads: 4,
    maxPositions: 77,
    layerNormEps: 1e-5,
    hiddenAct: "quick_gelu",
    eosTokenId: 999,
  });
  const motion = inferMotionConfig(
    await tensors("motion_adapter/diffusion_pytorch_model.safetensors"),
    diffusersMotionOverrides(await json("motion_adapter/config.json")),
  );
  assertEquals(motion, {
    version: "v2",
    blockOutChannels: [32, 64],
    layersPerBlock: 1,
    hasMidBlock: true,
    heads: 2,
    normGroups: 8,
    maxSeqLength: 32,
    transformerLayers: 1,
  });
});

Deno.test("detect: defaults without config.json (32 groups, 8 heads, CLIP hidden/64) and their checks", async () => {
  const tiny = tinyModelTensors(ARCHITECTURE);
  // Tiny UNet channels 32/64 and concatenated 96/128 are multiples of 32: defaults apply.
  const unet = inferUNetConfig(tiny.unet);
  assertEquals([unet.normGroups, unet.attentionHeads, unet.normEps], [32, [8, 8], 1e-5]);
  // Tiny VAE has 16-channel levels: 32 groups cannot work -> error that says how to fix it.
  await assertRejects(
    () => inferVaeConfig(tiny.vae),
    /GroupNorm with 32 groups does not divide 16 channels.*config/,
  );
  const clip = inferClipConfig(tiny.textEncoder);
  assertEquals([clip.heads, clip.eosTokenId], [1, tiny.clipConfig.vocabSize - 1]);
  // transformers' legacy eos_token_id 2 (SD1.5 text_encoder/config.json) means "last id".
  assertEquals(diffusersClipOverrides({ eos_token_id: 2, num_attention_heads: 12 }), { heads: 12 });
  await assertRejects(
    () => inferUNetConfig(tiny.unet, { attentionHeads: [5] }),
    /5 attention heads do not divide 32/,
  );
  await assertRejects(() => inferUNetConfig(new Map()), /expected down_blocks/);
});

Deno.test("detect: motion versions from PE length and mid block (v1 24/no mid, v2 32/mid, v3 32/no mid)", () => {
  for (const v of ["v1", "v2", "v3"] as const) {
    const { tensors, config } = tinyMotionTensors(ARCHITECTURE, v);
    const inferred = inferMotionConfig(tensors, {
      heads: config.heads,
      normGroups: config.normGroups,
    });
    assertEquals(inferred, config, v);
  }
});

Deno.test("detect: config.json writers are read back by the override readers", () => {
  const json = unetConfigJson(TINY_UNET_CONFIG);
  assertEquals(diffusersUNetOverrides(json), {
    attentionHeads: [4, 4],
    normGroups: 8,
    normEps: 1e-5,
    flipSinToCos: true,
    freqShift: 0,
  });
  // A scalar legacy attention_head_dim applies to every level.
  assertEquals(
    diffusersUNetOverrides({ attention_head_dim: 8, block_out_channels: [1, 2, 3, 4] })
      .attentionHeads,
    [8, 8, 8, 8],
  );
});

Deno.test("detect: given shapes, detectKind tells SD checkpoint families apart", () => {
  const ldm = (extra: [string, number[]][]) =>
    new Map<string, number[]>([
      ["model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3]],
      ["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", [320, 768]],
      ["first_stage_model.decoder.conv_in.weight", [512, 4, 3, 3]],
      ["cond_stage_model.transformer.text_model.final_layer_norm.weight", [768]],
      ...extra,
    ]);
  assertEquals(detectKind(ldm([])), "sd15-checkpoint");
  assertEquals(
    detectKind(ldm([["model.diffusion_model.input_blocks.0.0.weight", [320, 9, 3, 3]]])),
    "sd15-inpainting-checkpoint",
  );
  assertEquals(
    detectKind(ldm([["model.diffusion_model.input_blocks.0.0.weight", [320, 8, 3, 3]]])),
    "instruct-pix2pix-checkpoint",
  );
  assertEquals(
    detectKind(ldm([["cond_stage_model.model.ln_final.weight", [1024]]])),
    "sd2-checkpoint",
  );
  assertEquals(
    detectKind(ldm([[
      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
      [320, 1024],
    ]])),
    "sd2-checkpoint",
  );
  assertEquals(
    detectKind(ldm([["model.diffusion_model.label_emb.0.0.weight", [1280, 2816]]])),
    "sdxl-checkpoint",
  );
  assertEquals(
    detectKind(new Map([["conditioner.embedders.1.model.ln_final.weight", [1280]]])),
    "sdxl-checkpoint",
  );
  // Wrapped names (state_dict.) and the diffusers layout too.
  assertEquals(
    detectKind(
      new Map([["state_dict.model.diffusion_model.input_blocks.0.0.weight", [8, 9, 3, 3]]]),
    ),
    "sd15-inpainting-checkpoint",
  );
  assertEquals(
    detectKind(new Map([["conv_in.weight", [320, 9, 3, 3]]])),
    "sd15-inpainting-diffusers-model",
  );
  assertEquals(
    detectKind(
      new Map([["add_embedding.linear_1.weight", [1280, 2816]], ["conv_in.weight", [
        320,
        4,
        3,
        3,
      ]]]),
    ),
    "sdxl-diffusers-model",
  );
  // Names alone (no shapes) keep the layout answer.
  assertEquals(detectKind(["model.diffusion_model.input_blocks.0.0.weight"]), "sd15-checkpoint");
});

Deno.test("detect: a LoRA on motion modules only is a MotionLoRA, in every spelling", () => {
  const m = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0";
  assertEquals(
    detectKind([
      `${m}.attention_blocks.0.processor.to_q_lora.down.weight`,
      `${m}.attention_blocks.0.processor.to_q_lora.up.weight`,
    ]),
    "motion-lora",
  );
  assertEquals(
    detectKind([
      "lora_unet_down_blocks_0_motion_modules_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
      "lora_unet_down_blocks_0_motion_modules_0_transformer_blocks_0_attn1_to_q.lora_up.weight",
    ]),
    "motion-lora",
  );
  // One spatial module makes it an ordinary LoRA.
  assertEquals(
    detectKind([
      `${m}.attention_blocks.0.processor.to_q_lora.down.weight`,
      "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
    ]),
    "lora-diffusers",
  );
});
