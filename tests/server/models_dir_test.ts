import { assert, assertEquals, assertRejects } from "../assert.ts";
import { builtinModels, findModel, publicListing, scanModelsDir } from "../../server/models_dir.ts";
import { makeModelsDir } from "./fake_pipeline.ts";
import { join } from "node:path";

Deno.test("scanModelsDir lists checkpoints, motion modules and LoRAs by name without extension", async () => {
  const root = await makeModelsDir();
  try {
    const l = await scanModelsDir(root);
    // The directory's own, then the built-in demo models (named, never a path).
    assertEquals(l.checkpoints.map((e) => [e.name, e.layout]), [
      ["sd15", "file"],
      ["tiny", "folder"],
      ["demo", "folder"],
      ["demo:paper", "folder"],
    ]);
    assertEquals(l.motionModules.map((e) => [e.name, e.layout]), [
      ["mm_v2", "file"],
      ["tiny_motion", "folder"],
      ["demo", "folder"],
    ]);
    assertEquals(findModel(l, "checkpoint", "demo:paper")?.path, "demo:paper");
    assertEquals(l.loras.map((e) => e.name), ["lora_kohya", "lora_peft"]);
    // Sidecar config folder of the single file; notes.txt and sd15.config are not models.
    assertEquals(
      findModel(l, "checkpoint", "sd15")?.configPath,
      join(root, "checkpoints", "sd15.config"),
    );
    assertEquals(findModel(l, "checkpoint", "tiny")?.configPath, undefined);
    assertEquals(findModel(l, "lora", "lora_kohya")?.bytes, 64904);
    assertEquals(findModel(l, "checkpoint", "sd15")?.bytes, 4461916);
    // Names only: a path, or a name of another kind, is not found.
    assertEquals(findModel(l, "checkpoint", join(root, "checkpoints", "tiny")), undefined);
    assertEquals(findModel(l, "checkpoint", "../checkpoints/tiny"), undefined);
    assertEquals(findModel(l, "lora", "tiny"), undefined);
    const pub = JSON.stringify(publicListing(l));
    assert(!pub.includes(root), "public listing must not contain paths");
    // The folder's size is the sum of its files (unet + vae + text encoder + small files).
    const tiny = publicListing(l).checkpoints[1];
    assertEquals(Object.keys(tiny), ["name", "layout", "bytes"]);
    assert(tiny.bytes > 3194952 + 1063180 + 196424, `folder bytes ${tiny.bytes}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("scanModelsDir: missing sub-folders are empty, duplicate stems keep .safetensors, missing root fails", async () => {
  const root = await Deno.makeTempDir();
  try {
    const builtin = await builtinModels();
    assertEquals(await scanModelsDir(root), builtin);
    assert(builtin.checkpoints.every((e) => e.bytes > 0), "the demo's sizes are known");
    // A model of the directory named like a built-in one takes its place.
    await Deno.mkdir(join(root, "checkpoints"));
    await Deno.writeFile(join(root, "checkpoints", "demo.safetensors"), new Uint8Array(7));
    const own = await scanModelsDir(root);
    assertEquals(own.checkpoints.map((e) => [e.name, e.bytes]), [["demo", 7], [
      "demo:paper",
      builtin.checkpoints[1].bytes,
    ]]);
    await Deno.mkdir(join(root, "loras"));
    await Deno.writeFile(join(root, "loras", "x.ckpt"), new Uint8Array(3));
    await Deno.writeFile(join(root, "loras", "x.safetensors"), new Uint8Array(5));
    await Deno.writeFile(join(root, "loras", ".hidden.safetensors"), new Uint8Array(5));
    await Deno.mkdir(join(root, "loras", "folder_without_weights"));
    const l = await scanModelsDir(root);
    assertEquals(l.loras.map((e) => [e.name, e.bytes]), [["x", 5]]);
    await assertRejects(
      () => scanModelsDir(join(root, "nope")),
      /models directory .* does not exist/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
