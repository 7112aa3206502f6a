import { assert, assertEquals } from "../assert.ts";
import { openSafetensors } from "../../weights/safetensors.ts";
import {
  kohyaName,
  ldmUNetModuleName,
  ldmUNetName,
  ldmUNetStructure,
  ldmVaeName,
  mapCheckpointNames,
  mapLdmUNetNames,
  mapMotionNames,
  originalMotionNames,
  parseLoraKey,
  stripWrapperPrefix,
} from "../../weights/names.ts";
import {
  TINY_CLIP_CONFIG as TINY_CLIP,
  TINY_UNET_CONFIG,
  TINY_VAE_CONFIG as TINY_VAE,
  tinyModelTensors,
} from "../../weights/tiny.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";
import { SD15_CLIP_CONFIG, SD15_VAE_CONFIG, type UNetConfig } from "../../weights/model_config.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;

async function names(path: string): Promise<Map<string, readonly number[]>> {
  const f = await openSafetensors(TINY + path);
  const out = new Map([...f.tensors].map(([k, t]) => [k, t.shape]));
  f.close();
  return out;
}

const SD15: UNetConfig = {
  ...TINY_UNET_CONFIG,
  blockOutChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  downBlockAttention: [true, true, true, false],
  upBlockAttention: [false, true, true, true],
  crossAttentionDim: 768,
  attentionHeads: [8, 8, 8, 8],
  timeEmbeddingDim: 1280,
};

Deno.test("names: fixture single file maps onto exactly the diffusers folder names", async () => {
  const single = await names("single_file/sd15.safetensors");
  const { mapped, ignored, unknown } = mapCheckpointNames(single.keys());
  assertEquals(unknown, []);
  assertEquals(ignored, ["cond_stage_model.transformer.text_model.embeddings.position_ids"]);
  const expected = {
    unet: await names("model/unet/diffusion_pytorch_model.safetensors"),
    vae: await names("model/vae/diffusion_pytorch_model.safetensors"),
    textEncoder: await names("model/text_encoder/model.safetensors"),
  };
  for (const part of ["unet", "vae", "textEncoder"] as const) {
    const got = mapped.filter((m) => m.part === part).map((m) => m.target).sort();
    assertEquals(got, [...expected[part].keys()].sort(), part);
  }
  // VAE attention q/k/v/proj_out are the only 1x1-conv -> Linear reshapes: 4 weights x 2 sides.
  const squeezed = mapped.filter((m) => m.squeezeConv).map((m) => m.target);
  assertEquals(squeezed.length, 8);
  assert(squeezed.includes("decoder.mid_block.attentions.0.to_out.0.weight"));
  assertEquals(single.get("first_stage_model.decoder.mid.attn_1.q.weight"), [32, 32, 1, 1]);
});

Deno.test("names: LDM UNet structure is derived from the names (tiny: 2 levels x 1, SD1.5: 4 x 2)", () => {
  const c = TINY_UNET_CONFIG;
  const tiny = [...ARCHITECTURE.model({ unet: c, vae: TINY_VAE, clip: TINY_CLIP }).unet.keys()].map(
    (n) => ldmUNetName(n, c).slice(22),
  );
  assertEquals(ldmUNetStructure(tiny), { levels: 2, layersPerBlock: 1 });
  const sd = [
    ...ARCHITECTURE.model({ unet: SD15, vae: SD15_VAE_CONFIG, clip: SD15_CLIP_CONFIG }).unet.keys(),
  ].map((n) => ldmUNetName(n, SD15).slice(22));
  assertEquals(ldmUNetStructure(sd), { levels: 4, layersPerBlock: 2 });
  // Round trip canonical -> LDM -> canonical for every SD1.5 tensor (686 tensors).
  const canonical = [
    ...ARCHITECTURE.model({ unet: SD15, vae: SD15_VAE_CONFIG, clip: SD15_CLIP_CONFIG }).unet.keys(),
  ];
  const back = mapLdmUNetNames(sd);
  canonical.forEach((n, i) => assertEquals(back.get(sd[i]), n, sd[i]));
  assertEquals(canonical.length, 686);
  assertEquals(
    ldmUNetName("up_blocks.0.upsamplers.0.conv.weight", SD15),
    "model.diffusion_model.output_blocks.2.1.conv.weight",
  );
  assertEquals(
    ldmUNetName("up_blocks.1.upsamplers.0.conv.weight", SD15),
    "model.diffusion_model.output_blocks.5.2.conv.weight",
  );
  assertEquals(
    ldmUNetName("down_blocks.2.downsamplers.0.conv.bias", SD15),
    "model.diffusion_model.input_blocks.9.0.op.bias",
  );
});

Deno.test("names: VAE inverse map round-trips the tiny VAE through the LDM layout", () => {
  const tiny = tinyModelTensors(ARCHITECTURE);
  const ldm = [...tiny.vae.keys()].map((n) => ldmVaeName(n, 4));
  const { mapped, unknown } = mapCheckpointNames(ldm);
  assertEquals(unknown, []);
  assertEquals(mapped.map((m) => m.target), [...tiny.vae.keys()]);
  assertEquals(
    ldmVaeName("decoder.up_blocks.0.resnets.2.conv1.weight", 4),
    "first_stage_model.decoder.up.3.block.2.conv1.weight",
  );
  assertEquals(
    ldmVaeName("encoder.down_blocks.1.resnets.0.conv_shortcut.bias", 4),
    "first_stage_model.encoder.down.1.block.0.nin_shortcut.bias",
  );
});

Deno.test("names: original motion names map onto the MotionAdapter names (one pe per block kept)", async () => {
  const original = await names("single_file/motion_module.safetensors");
  const adapter = await names("motion_adapter/diffusion_pytorch_model.safetensors");
  const { mapped, ignored, unknown } = mapMotionNames(original.keys());
  assertEquals(unknown, []);
  assertEquals(ignored.length, 7); // the second pos_encoder.pe copy of each of 7 modules
  assert(ignored.every((n) => n.endsWith("attention_blocks.1.pos_encoder.pe")));
  assertEquals(mapped.map((m) => m.target).sort(), [...adapter.keys()].sort());
  // Inverse gives back the original names (pe twice).
  const inverse = [...adapter.keys()].flatMap(originalMotionNames).sort();
  assertEquals(inverse, [...original.keys()].sort());
  // Wrappers are removed.
  const wrapped = mapMotionNames([
    "module.mid_block.motion_modules.0.temporal_transformer.norm.weight",
  ]);
  assertEquals(wrapped.mapped[0].target, "mid_block.motion_modules.0.norm.weight");
  assertEquals(stripWrapperPrefix("state_dict.module.x"), "x");
});

Deno.test("names: LoRA key spellings parse to module, role and scheme", () => {
  assertEquals(parseLoraKey("lora_unet_input_blocks_1_1_proj_in.lora_down.weight"), {
    module: "input_blocks_1_1_proj_in",
    role: "down",
    scheme: "kohya-unet",
  });
  assertEquals(
    parseLoraKey("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha")?.role,
    "alpha",
  );
  assertEquals(parseLoraKey("unet.mid_block.attentions.0.proj_in.lora_B.weight"), {
    module: "mid_block.attentions.0.proj_in",
    role: "up",
    scheme: "unet",
  });
  assertEquals(
    parseLoraKey("text_encoder.text_model.encoder.layers.1.self_attn.k_proj.lora.down.weight")
      ?.scheme,
    "textEncoder",
  );
  assertEquals(
    parseLoraKey(
      "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_out_lora.up.weight",
    ),
    {
      module:
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_out.0",
      role: "up",
      scheme: "bare",
    },
  );
  assertEquals(parseLoraKey("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"), null);
  assertEquals(parseLoraKey("conv_in.weight"), null);
  assertEquals(
    kohyaName("down_blocks.0.attentions.0.proj_in"),
    "down_blocks_0_attentions_0_proj_in",
  );
  assertEquals(
    ldmUNetModuleName("down_blocks.0.resnets.1.time_emb_proj", SD15),
    "input_blocks.2.0.emb_layers.1",
  );
});
