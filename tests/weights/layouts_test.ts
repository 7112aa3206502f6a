/**
 * The two-way layout tables (weights/layouts.ts): every canonical tensor of SD1.5 and the tiny
 * models maps to its file name and back to itself, module paths included, and names that are no
 * tensor of the layout map to nothing.
 */

import { assertEquals } from "../assert.ts";
import { LDM_UNET_LAYOUT, LDM_VAE_LAYOUT, MOTION_LAYOUT } from "../../weights/layouts.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";
import {
  ANIMATEDIFF_V2_CONFIG,
  SD15_CLIP_CONFIG,
  SD15_UNET_CONFIG,
  SD15_VAE_CONFIG,
} from "../../weights/model_config.ts";
import {
  TINY_CLIP_CONFIG,
  TINY_UNET_CONFIG,
  TINY_VAE_CONFIG,
  tinyMotionConfig,
} from "../../weights/tiny.ts";

const MODELS = [
  ["sd15", { unet: SD15_UNET_CONFIG, vae: SD15_VAE_CONFIG, clip: SD15_CLIP_CONFIG }],
  ["tiny", { unet: TINY_UNET_CONFIG, vae: TINY_VAE_CONFIG, clip: TINY_CLIP_CONFIG }],
] as const;

Deno.test("layouts: LDM UNet and VAE names round-trip for every tensor and module", () => {
  for (const [name, c] of MODELS) {
    const d = ARCHITECTURE.model(c);
    const per = c.unet.layersPerBlock + 1;
    const files = [...d.unet.keys()].map((n) =>
      LDM_UNET_LAYOUT.toFile(n, { per, upBlockAttention: c.unet.upBlockAttention })
    );
    assertEquals(files.filter((f) => f === null).length, 0, `${name}: unmapped UNet tensors`);
    assertEquals(new Set(files).size, d.unet.size, `${name}: UNet file names are distinct`);
    // Output blocks whose sub-module 1 is an upsampler, as the forward map reads it from names.
    const upsampleAtOne = new Set(
      c.unet.upBlockAttention.flatMap((att, b) => att ? [] : [b * per + per - 1]),
    );
    const back = files.map((f) => LDM_UNET_LAYOUT.toCanon(f!, { per, upsampleAtOne }));
    assertEquals(back, [...d.unet.keys()], `${name}: UNet round trip`);
    assertEquals(
      LDM_UNET_LAYOUT.toFile("down_blocks.0.resnets.0", { per }),
      "input_blocks.1.0",
      "a module path maps too",
    );
    const levels = c.vae.blockOutChannels.length;
    const vae = [...d.vae.keys()];
    const vf = vae.map((n) => LDM_VAE_LAYOUT.toFile(n, { levels }));
    assertEquals(vf.filter((f) => f === null).length, 0, `${name}: unmapped VAE tensors`);
    assertEquals(vf.map((f) => LDM_VAE_LAYOUT.toCanon(f!, { levels })), vae, `${name}: VAE`);
  }
  assertEquals(LDM_UNET_LAYOUT.toCanon("input_blocks.1.7.weight", { per: 3 }), null);
  assertEquals(LDM_VAE_LAYOUT.toCanon("decoder.mid.attn_1.foo.weight", { levels: 4 }), null);
  assertEquals(
    LDM_VAE_LAYOUT.toCanon("decoder.up.0.block.0.nin_shortcut.weight", { levels: 4 }),
    "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
  );
});

Deno.test("layouts: original AnimateDiff motion names round-trip", () => {
  for (const config of [ANIMATEDIFF_V2_CONFIG, tinyMotionConfig("v1"), tinyMotionConfig("v3")]) {
    const names = [...ARCHITECTURE.motion(config).keys()].filter((n) => !n.endsWith(".pe"));
    const files = names.map((n) => MOTION_LAYOUT.toFile(n, null));
    assertEquals(files.filter((f) => !f?.includes(".temporal_transformer.")).length, 0);
    assertEquals(files.map((f) => MOTION_LAYOUT.toCanon(f!, null)), names);
  }
  assertEquals(
    MOTION_LAYOUT.toFile(
      "up_blocks.1.motion_modules.2.transformer_blocks.0.attn2.to_q.weight",
      null,
    ),
    "up_blocks.1.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight",
  );
});
