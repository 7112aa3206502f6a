import { assert, assertClose, assertEquals } from "../assert.ts";
import { openSafetensors } from "../../weights/safetensors.ts";
import {
  diffusersClipOverrides,
  diffusersMotionOverrides,
  diffusersUNetOverrides,
  diffusersVaeOverrides,
  inferClipConfig,
  inferMotionConfig,
  inferUNetConfig,
  inferVaeConfig,
} from "../../weights/detect.ts";
import {
  loadTinyDemoModel,
  sinusoidalTable,
  tinyLora,
  tinyModelTensors,
  tinyMotionTensors,
  tinyTokenizer,
  tinyValues,
} from "../../weights/tiny.ts";
import type { ShapeMap, TensorMap } from "../../weights/types.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const CLIP_DIR = new URL("../../../shared/fixtures/clip-tokenizer/", import.meta.url).pathname;
const hasClip = (() => {
  try {
    Deno.statSync(CLIP_DIR + "vocab.json");
    return true;
  } catch {
    return false;
  }
})();

async function open(path: string): Promise<TensorMap> {
  const f = await openSafetensors(TINY + path);
  f.close();
  return f.tensors;
}
const json = async (p: string) => JSON.parse(await Deno.readTextFile(TINY + p));
const shapesOf = (t: TensorMap) => [...t].map(([k, v]) => [k, v.shape]).sort();
const sorted = (m: ShapeMap) => [...m].sort();

Deno.test("tiny: the architectures' description reproduces the diffusers fixture models exactly", async () => {
  const unet = await open("model/unet/diffusion_pytorch_model.safetensors");
  const vae = await open("model/vae/diffusion_pytorch_model.safetensors");
  const te = await open("model/text_encoder/model.safetensors");
  const model = ARCHITECTURE.model({
    unet: inferUNetConfig(unet, diffusersUNetOverrides(await json("model/unet/config.json"))),
    vae: inferVaeConfig(vae, diffusersVaeOverrides(await json("model/vae/config.json"))),
    clip: inferClipConfig(te, diffusersClipOverrides(await json("model/text_encoder/config.json"))),
  });
  assertEquals(sorted(model.unet), shapesOf(unet));
  assertEquals(sorted(model.vae), shapesOf(vae));
  assertEquals(sorted(model.textEncoder), shapesOf(te));
  const mm = await open("motion_adapter/diffusion_pytorch_model.safetensors");
  const motion = ARCHITECTURE.motion(
    inferMotionConfig(mm, diffusersMotionOverrides(await json("motion_adapter/config.json"))),
  );
  assertEquals(sorted(motion), shapesOf(mm));
});

Deno.test("tiny: values are deterministic, pinned, and scaled N(0, 1/fan_in)", async () => {
  const a = tinyModelTensors(ARCHITECTURE), b = tinyModelTensors(ARCHITECTURE);
  const wa = await a.unet.get("conv_in.weight")!.read(),
    wb = await b.unet.get("conv_in.weight")!.read();
  assertEquals([...wa], [...wb]);
  // Pinned: a change of the generator changes every file it writes.
  const pinned = tinyValues("conv_in.weight", [32, 4, 3, 3], 1);
  assert(
    Math.abs(pinned[0] - -0.13311028480529785) < 1e-7 &&
      Math.abs(pinned[2] - -0.3971738815307617) < 1e-7,
  );
  assertEquals([...pinned.slice(0, 8)], [...wa.slice(0, 8)]);
  // Scale: std of a [64, 64, 3, 3] conv ~ 1/sqrt(576) within 10%; norm weights ~ 1 +- 0.1.
  const w = await a.unet.get("down_blocks.1.resnets.0.conv2.weight")!.read();
  const std = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
  assert(Math.abs(std * Math.sqrt(576) - 1) < 0.1, `std ${std}`);
  const g = await a.unet.get("mid_block.resnets.0.norm1.weight")!.read();
  const mean = g.reduce((s, x) => s + x, 0) / g.length;
  assert(Math.abs(mean - 1) < 0.05, `norm weight mean ${mean}`);
  // Position tables equal the fixture's diffusers sinusoids.
  const file = await openSafetensors(TINY + "motion_adapter/diffusion_pytorch_model.safetensors");
  const pe = await file.tensors.get(
    "up_blocks.0.motion_modules.1.transformer_blocks.0.pos_embed.pe",
  )!.read();
  file.close();
  const ours = sinusoidalTable(32, 64);
  // Within 2e-7 (float32 sin/cos rounding) of the diffusers table.
  assertClose(ours, pe, { atol: 2e-7, rtol: 0, msg: "sinusoidal table" });
  const m1 = tinyMotionTensors(ARCHITECTURE, "v1");
  assertEquals(
    m1.tensors.get("down_blocks.0.motion_modules.0.transformer_blocks.0.pos_embed.pe")!.shape,
    [1, 24, 32],
  );
  assertEquals(m1.tensors.has("mid_block.motion_modules.0.norm.weight"), false);
});

Deno.test("tiny: byte-level tokenizer has CLIP's layout (bytes, </w> bytes, merges, start, end)", async () => {
  const tok = tinyTokenizer();
  const vocab = JSON.parse(tok.vocabJson) as Record<string, number>;
  const size = tinyModelTensors(ARCHITECTURE).clipConfig.vocabSize;
  assertEquals(Object.keys(vocab).length, size);
  assertEquals([vocab["!"], vocab["Ā"], vocab["Ġ"], vocab["a</w>"], vocab["th"]], [
    0,
    188,
    220,
    320,
    512,
  ]);
  assertEquals([vocab["<|startoftext|>"], vocab["<|endoftext|>"]], [size - 2, size - 1]);
  assertEquals(tok.mergesTxt.split("\n")[0], "#version: 0.2");
  assertEquals(tok.mergesTxt.trim().split("\n").length, 1 + size - 514);
  // The first 512 tokens are the same as the fixture tokenizer's (made the same way by the reference).
  const fixture = await json("model/tokenizer/vocab.json") as Record<string, number>;
  const first = (v: Record<string, number>) =>
    Object.entries(v).filter(([, id]) => id < 512).sort((x, y) => x[1] - y[1]);
  assertEquals(first(vocab), first(fixture));
});

Deno.test({
  name: "tiny: byte symbols match the real CLIP vocabulary's first 512 entries",
  ignore: !hasClip && Deno.env.get("CI") !== "true",
  fn: async () => {
    const real = JSON.parse(await Deno.readTextFile(CLIP_DIR + "vocab.json")) as Record<
      string,
      number
    >;
    const ours = JSON.parse(tinyTokenizer().vocabJson) as Record<string, number>;
    for (const [t, id] of Object.entries(ours)) if (id < 512) assertEquals(real[t], id, t);
  },
});

Deno.test("tiny: LoRA layouts target the 40 attention projections with rank 4", () => {
  const kohya = tinyLora(ARCHITECTURE, "kohya"), peft = tinyLora(ARCHITECTURE, "peft");
  assertEquals(kohya.tensors.size, 120);
  assertEquals(peft.tensors.size, 80);
  assertEquals(kohya.metadata, { ss_network_dim: "4", ss_network_alpha: "2" });
  assertEquals(
    kohya.tensors.get("lora_te_text_model_encoder_layers_1_self_attn_out_proj.lora_down.weight")!
      .shape,
    [4, 32],
  );
  assertEquals(
    peft.tensors.get("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight")!
      .shape,
    [64, 4],
  );
});

Deno.test("tiny: the demo model needs no file access", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const tiny = new URL("../../weights/tiny.ts", import.meta.url).href;
    const arch = new URL("../../engine/models/architecture.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadTinyDemoModel } from "${tiny}";
import { ARCHITECTURE } from "${arch}";
const { model, motion, tokenizer } = loadTinyDemoModel(ARCHITECTURE);
const w = await model.unet.get("conv_out.weight").read();
const pe = await motion.tensors.get("mid_block.motion_modules.0.transformer_blocks.0.pos_embed.pe").read();
console.log(JSON.stringify([model.source, w.length, pe.length, motion.config.version, tokenizer.vocabJson.length > 0]));`,
    );
    // No --allow-* flags: any file read would fail with a permission error.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--quiet", "--config", CONFIG, script],
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, err);
    assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), [
      "tiny-demo",
      4 * 32 * 9,
      32 * 64,
      "v2",
      true,
    ]);
  } finally {
    await Deno.remove(script);
  }
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  assertEquals(model.unetConfig.blockOutChannels, [32, 64]);
});
