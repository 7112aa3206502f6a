import { assert, assertEquals } from "../assert.ts";
import {
  BENCH_SEED_BASE,
  benchCases,
  DEFAULT_COUNT,
  formatRates,
  parseDemoArgs,
  rates,
  variantsOf,
} from "../../bench/demo.ts";
import { allPrompts, parsePrompt, renderClip } from "../../tools/demo/world.ts";
import { scoreAnimation } from "../../tools/demo/classify.ts";

Deno.test("bench:demo options: defaults, flags, = form and errors", () => {
  assertEquals(parseDemoArgs([]), { count: DEFAULT_COUNT, seed: 0, help: false });
  assertEquals(
    parseDemoArgs([
      "--model=m.safetensors",
      "--motion-module",
      "mm.safetensors",
      "--motion-module-config",
      "mm_config.json",
      "--background",
      "paper",
      "--count=40",
      "--seed",
      "2",
      "--frames",
      "8",
      "--size=64",
      "--steps",
      "4",
      "--guidance",
      "5.5",
      "--json",
      "out.json",
    ]),
    {
      count: 40,
      seed: 2,
      help: false,
      model: "m.safetensors",
      motionModule: "mm.safetensors",
      motionModuleConfig: "mm_config.json",
      background: "paper",
      frames: 8,
      size: 64,
      steps: 4,
      guidance: 5.5,
      json: "out.json",
    },
  );
  for (
    const [args, message] of [
      [["--count", "0"], "--count must be an integer >= 1"],
      [["--size", "60"], "--size must be a multiple of 8"],
      [["--background", "white"], "--background must be dark or paper"],
      [["--motion-module", "mm.ckpt"], "--motion-module needs --model"],
      [["--bogus"], 'unknown argument "--bogus"'],
      [["--model"], "--model needs a value"],
    ] as const
  ) {
    let got = "";
    try {
      parseDemoArgs(args);
    } catch (e) {
      got = (e as Error).message;
    }
    assert(got.includes(message), `${args.join(" ")}: expected "${message}", got "${got}"`);
  }
});

Deno.test("bench:demo cases: >= 40 distinct world prompts, bench seeds, fixed by the seed", () => {
  const cases = benchCases(DEFAULT_COUNT, 0);
  assert(cases.length >= 40);
  assertEquals(new Set(cases.map((c) => c.prompt)).size, cases.length);
  for (const c of cases) parsePrompt(c.prompt);
  assertEquals(cases.map((c) => c.seed), cases.map((_, i) => BENCH_SEED_BASE + i));
  assertEquals(benchCases(DEFAULT_COUNT, 0), cases);
  assert(JSON.stringify(benchCases(DEFAULT_COUNT, 1)) !== JSON.stringify(cases));
  // Past 108 cases every prompt has come once before any comes twice.
  const many = benchCases(130, 5).map((c) => c.prompt);
  assertEquals(new Set(many.slice(0, 108)), new Set(allPrompts()));
});

Deno.test("bench:demo rates: fractions per field over scored animations", () => {
  const right = renderClip(1, { frames: 4, width: 32, height: 32 });
  const wrongBackground = scoreAnimation(right.frames, { ...right.truth, background: "paper" });
  const r = rates([scoreAnimation(right.frames, right.truth), wrongBackground]);
  assertEquals(r, { n: 2, colour: 1, shape: 1, motion: 1, background: 0.5, oneObject: 1 });
  assertEquals(rates([]).n, 0);
  assertEquals(formatRates("demo", r), "demo            2   100%   100%   100%    50%   100%");
});

Deno.test("bench:demo variants: a demo:train folder brings its motion module, config and settings", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const plain = await variantsOf(parseDemoArgs(["--model", dir]));
    assertEquals(
      [plain[0].motionModule, plain[0].motionModuleConfig, plain[0].demoSettings],
      [undefined, undefined, false],
      "not a demo:train folder: as given, at a request's defaults",
    );
    await Deno.writeTextFile(`${dir}/recipe.json`, "{}");
    await Deno.writeFile(`${dir}/motion_module.safetensors`, new Uint8Array(8));
    const noConfig = await variantsOf(parseDemoArgs(["--model", dir]));
    assertEquals(noConfig[0].motionModule, `${dir}/motion_module.safetensors`);
    assertEquals([noConfig[0].motionModuleConfig, noConfig[0].demoSettings], [undefined, true]);
    await Deno.writeTextFile(`${dir}/motion_module.config.json`, "{}");
    const [v] = await variantsOf(parseDemoArgs(["--model", dir, "--background", "paper"]));
    assertEquals(
      [v.motionModule, v.motionModuleConfig, v.demoSettings, v.background],
      [`${dir}/motion_module.safetensors`, `${dir}/motion_module.config.json`, true, "paper"],
    );
    // A lone module file finds the config beside it; flags given win.
    const [lone] = await variantsOf(
      parseDemoArgs(["--model", "x", "--motion-module", `${dir}/motion_module.safetensors`]),
    );
    assertEquals(lone.motionModuleConfig, `${dir}/motion_module.config.json`);
    const [given] = await variantsOf(
      parseDemoArgs(["--model", dir, "--motion-module-config", "mine.json"]),
    );
    assertEquals(given.motionModuleConfig, "mine.json");
    assertEquals((await variantsOf(parseDemoArgs([]))).map((x) => x.name), ["demo", "demo:paper"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
