import { assert, assertEquals } from "../assert.ts";
import { formatSummary } from "../../weights/inspect.ts";
import { inspectWeights } from "../../engine/inspect.ts";
import { loadModel } from "../../weights/load.ts";
import { writeTinyMotionModule } from "./tiny_files.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;

async function parameters(path: string): Promise<number> {
  const m = await loadModel(path);
  let n = 0;
  for (const part of [m.unet, m.vae, m.textEncoder]) {
    for (const t of part.values()) n += t.shape.reduce((a, b) => a * b, 1);
  }
  m.close();
  return n;
}

Deno.test("inspect: SD1.5 single file (counts, dtypes; config needs --config for 8 groups)", async () => {
  const folderParams = await parameters(TINY + "model");
  const s = await inspectWeights(TINY + "single_file/sd15.safetensors");
  assertEquals([s.kind, s.version, s.tensors], ["sd15-checkpoint", null, 425]);
  assertEquals(s.dtypes, { I64: 1, F32: 424 });
  assertEquals(s.parameters, folderParams + 77); // + the position_ids buffer
  assertEquals(s.config, null);
  assert(/GroupNorm with 32 groups/.test(s.problem ?? ""), s.problem);
  const c = await inspectWeights(TINY + "single_file/sd15.fp16.safetensors", {
    config: TINY + "model",
  });
  assertEquals(c.dtypes, { I64: 1, F16: 424 });
  const config = c.config as { unet: { normGroups: number; blockOutChannels: number[] } };
  assertEquals([config.unet.normGroups, config.unet.blockOutChannels], [8, [32, 64]]);
  assertEquals(c.problem, undefined);
});

Deno.test("inspect: diffusers folder, motion modules, MotionAdapter and LoRAs", async () => {
  const folder = await inspectWeights(TINY + "model");
  assertEquals([folder.kind, folder.tensors, folder.parameters], [
    "diffusers-model",
    424,
    await parameters(TINY + "model"),
  ]);
  assert(folder.config !== null && "vae" in folder.config);
  for (const p of ["single_file/motion_module.ckpt", "single_file/motion_module.safetensors"]) {
    const s = await inspectWeights(TINY + p);
    assertEquals([s.kind, s.version, s.tensors], ["motion-module", "v2", 196]);
  }
  const adapter = await inspectWeights(TINY + "motion_adapter");
  assertEquals([adapter.kind, adapter.version, adapter.tensors], ["motion-adapter", "v2", 189]);
  assertEquals((adapter.config as { heads: number }).heads, 2);
  const kohya = await inspectWeights(TINY + "lora/lora_kohya.safetensors");
  assertEquals([kohya.kind, kohya.tensors], ["lora-kohya", 120]);
  assertEquals(kohya.config, {
    modules: 40,
    parts: { textEncoder: 8, unet: 32 },
    ranks: [4],
    alphas: [2],
    types: ["lora"],
  });
  const peft = await inspectWeights(TINY + "lora/pytorch_lora_weights.safetensors");
  assertEquals(peft.config, {
    modules: 40,
    parts: { textEncoder: 8, unet: 32 },
    ranks: [4],
    alphas: [],
    types: ["lora"],
  });
  const text = formatSummary(adapter);
  assert(
    text.includes("kind:       motion-adapter (v2)") && text.includes("tensors:    189"),
    text,
  );
});

Deno.test("inspect: a non-standard motion module reports its version beside the problem", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // 24 and 48 channels: 32 GroupNorm groups (the default without a config) divide neither.
    for (const version of ["v1", "v2", "v3"] as const) {
      const path = `${dir}/mm_${version}.safetensors`;
      await writeTinyMotionModule(path, { version, format: "safetensors", channels: [24, 48] });
      const s = await inspectWeights(path);
      assertEquals([s.kind, s.version, s.config], ["motion-module", version, null]);
      assert(/32 groups/.test(s.problem ?? ""), s.problem);
      assert(formatSummary(s).includes(`kind:       motion-module (${version})`), formatSummary(s));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
