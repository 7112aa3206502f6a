/** The training recipes in the README are valid configs: each parses with no warning. */

import { parseTrainConfig } from "../../../engine/training/train_config.ts";
import { assert, assertEquals } from "../../assert.ts";

const README = new URL("../../../README.md", import.meta.url);

Deno.test("README training recipes parse without warnings", async () => {
  const text = await Deno.readTextFile(README);
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  const recipes = blocks.filter((b) => /^train: /m.test(b));
  assertEquals(recipes.length, 3, "the three recipes (motion, motion-lora, unet)");
  const targets = recipes.map((b) => {
    const { config, warnings } = parseTrainConfig(b);
    assertEquals(warnings, [], b.split("\n")[0]);
    return config.train;
  });
  assertEquals(targets, ["motion", "motion-lora", "unet"]);
  const motion = parseTrainConfig(recipes[0]).config;
  assert(
    motion.gradientCheckpointing && motion.precision === "f16",
    "recipe 1: checkpointing, f16",
  );
});
