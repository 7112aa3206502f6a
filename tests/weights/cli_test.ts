import { assert, assertEquals } from "../assert.ts";
import { main } from "../../weights/cli.ts";
import { loadMotionModule } from "../../weights/load.ts";
import { openSafetensors } from "../../weights/safetensors.ts";
import { withBigList } from "./torch_fixtures.ts";
import { FAMILIES, writeFamilyCheckpoint, writeFamilyDiffusersFolder } from "./family_fixtures.ts";

const TINY = new URL("../fixtures/tiny/", import.meta.url).pathname;
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

Deno.test("cli: inspect --json prints one JSON object per kind", async () => {
  const cases: [string, string, string | null][] = [
    ["single_file/sd15.safetensors", "sd15-checkpoint", null],
    ["model", "diffusers-model", null],
    ["single_file/motion_module.ckpt", "motion-module", "v2"],
    ["motion_adapter", "motion-adapter", "v2"],
    ["lora/lora_kohya.safetensors", "lora-kohya", null],
    ["lora/pytorch_lora_weights.safetensors", "lora-diffusers", null],
  ];
  for (const [path, kind, version] of cases) {
    const r = await run(["inspect", TINY + path, "--json"]);
    assertEquals([r.code, r.out.length, r.err], [0, 1, []], path);
    const s = JSON.parse(r.out[0]);
    assertEquals([s.kind, s.version], [kind, version], path);
    assert(s.tensors > 0 && s.parameters > 0, path);
  }
  const withConfig = await run([
    "inspect",
    TINY + "single_file/sd15.safetensors",
    "--json",
    "--config",
    TINY + "model",
  ]);
  assertEquals(JSON.parse(withConfig.out[0]).config.vae.normGroups, 8);
  const text = await run(["inspect", TINY + "motion_adapter"]);
  assert(text.out[0].includes("motion-adapter (v2)"), text.out[0]);
});

Deno.test("cli: bad input exits 2 with one 'error:' line", async () => {
  for (
    const [args, pattern] of [
      [["inspect", TINY + "missing.ckpt"], /^error: .*missing\.ckpt: no such file or folder$/],
      [["inspect", TINY + "goldens.json"], /^error: .*goldens\.json/],
      [["inspect"], /^error: inspect takes one FILE or DIR$/],
      [["frobnicate"], /^error: unknown command frobnicate$/],
      [["inspect", TINY + "model", "--bogus"], /^error: unknown option --bogus$/],
      [
        ["convert", TINY + "model/model_index.json", "/tmp/x.bin"],
        /^error: output \/tmp\/x\.bin must end in \.safetensors$/,
      ],
    ] as [string[], RegExp][]
  ) {
    const r = await run(args);
    assertEquals([r.code, r.out.length, r.err.length], [2, 0, 1], args.join(" "));
    assert(pattern.test(r.err[0]), r.err[0]);
  }
});

Deno.test("cli: convert .ckpt -> .safetensors (and --fp16) keeps the motion module", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await run([
      "convert",
      TINY + "single_file/motion_module.ckpt",
      `${dir}/mm.safetensors`,
    ]);
    assertEquals([r.code, r.out], [0, [`wrote ${dir}/mm.safetensors`]]);
    const a = await loadMotionModule(`${dir}/mm.safetensors`),
      b = await loadMotionModule(TINY + "single_file/motion_module.ckpt");
    const name = "up_blocks.1.motion_modules.1.transformer_blocks.0.attn2.to_out.0.weight";
    assertEquals([...await a.tensors.get(name)!.read()], [...await b.tensors.get(name)!.read()]);
    a.close();
    b.close();
    assertEquals(
      (await run([
        "convert",
        TINY + "single_file/motion_module.ckpt",
        `${dir}/h.safetensors`,
        "--fp16",
      ])).code,
      0,
    );
    const h = await openSafetensors(`${dir}/h.safetensors`);
    assertEquals(new Set([...h.tensors.values()].map((t) => t.dtype)), new Set(["F16"]));
    h.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: the real process prints no stack trace and exits 2 on bad input", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, "weights", "inspect", TINY + "nope"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim();
  assertEquals(out.code, 2);
  assertEquals(err.split("\n").length, 1, err);
  assert(err.startsWith("error: ") && !err.includes("    at "), err);
});

Deno.test("cli: a .ckpt whose pickle holds a list of 1,000,000 items inspects and loads", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/big_list.ckpt`;
    await withBigList(TINY + "single_file/motion_module.ckpt", path, { items: 1_000_000 });
    const r = await run(["inspect", path, "--json"]);
    assertEquals([r.code, r.err], [0, []]);
    assertEquals([JSON.parse(r.out[0]).kind, JSON.parse(r.out[0]).version], [
      "motion-module",
      "v2",
    ]);
    const motion = await loadMotionModule(path); // what --motion-module loads
    assertEquals(motion.config.version, "v2");
    motion.close();
    // The real process too: exit 0, no "Maximum call stack size exceeded".
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", CLI, "weights", "inspect", path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals([out.code, new TextDecoder().decode(out.stderr)], [0, ""]);
    assert(new TextDecoder().decode(out.stdout).includes("kind:       motion-module (v2)"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: inspect names base models of other families in kind, and why they cannot load", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const family of FAMILIES) {
      await writeFamilyCheckpoint(`${dir}/${family}.safetensors`, family);
      await writeFamilyDiffusersFolder(`${dir}/${family}`, family);
      for (
        const [path, kind] of [
          [`${dir}/${family}.safetensors`, `${family}-checkpoint`],
          [`${dir}/${family}`, `${family}-diffusers-model`],
        ]
      ) {
        const r = await run(["inspect", path, "--json"]);
        assertEquals([r.code, r.err], [0, []], path);
        const s = JSON.parse(r.out[0]);
        assertEquals([s.kind, s.config], [kind, null], path);
        assert(/AnimateDiff needs a text-to-image SD1\.5 checkpoint$/.test(s.problem), s.problem);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
