/**
 * The CLI (cli.ts) run as a subprocess on the tiny fixture model: GIF, APNG and PNG-folder
 * outputs decoded back, --json, determinism, AnimateDiff prompt configs (both forms), the demo
 * model, and every bad-input case of issue 5 (exit code and the one line on stderr).
 *
 * Runs that reach the GPU need an adapter: ignored without one outside CI, failing under CI=true.
 * Sizes are tiny (<= 64x64, <= 5 frames, <= 2 steps) to keep the file under ~90 s on 2 cores.
 */

import { probeMp4, probeWebm } from "./engine/output/video_probe.ts";
import { type CliResult, runScript } from "./subprocess.ts";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { decodeApng, decodeGif, decodePng } from "./decode.ts";
import { hasAdapter, isCI } from "./gpu.ts";
import { parseLoraFlag, parsePromptMapFlags } from "../cli.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import { writeFamilyCheckpoint } from "./weights/family_fixtures.ts";
import { withBigList } from "./weights/torch_fixtures.ts";
import { writeSafetensors } from "../weights/safetensors.ts";
import { encodePng } from "../engine/output/png.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CLI = join(ROOT, "cli.ts");
const TINY = join(ROOT, "tests/fixtures/tiny");
const MODEL_DIR = join(TINY, "model");
const SD15_FILE = join(TINY, "single_file/sd15.safetensors");
const MM_CKPT = join(TINY, "single_file/motion_module.ckpt");
const MM_SAFETENSORS = join(TINY, "single_file/motion_module.safetensors");
const MM_CONFIG = join(TINY, "motion_adapter/config.json");
const LORA = join(TINY, "lora/lora_kohya.safetensors");

/** The tiny diffusers folder + the original-layout motion module with its MotionAdapter config. */
const TINY_MODEL = [
  "--model",
  MODEL_DIR,
  "--motion-module",
  MM_CKPT,
  "--motion-module-config",
  MM_CONFIG,
];
const SMALL = ["--frames", "4", "--width", "64", "--height", "64", "--steps", "2"];

/** Runs `deno run -A cli.ts ...args` in `cwd`; killed after 180 s. */
function runCli(args: string[], cwd: string): Promise<CliResult> {
  return runScript(CLI, args, cwd);
}

function describe(r: CliResult): string {
  return `exit ${r.code}\n--- stderr:\n${r.stderr}\n--- stdout:\n${r.stdout.slice(0, 2000)}`;
}

function assertOk(r: CliResult): void {
  assert(r.code === 0, `expected exit 0, got ${describe(r)}`);
  assert(!/^error:/m.test(r.stderr), `error on stderr: ${r.stderr}`);
}

/** Exit `code` with exactly one stderr line `error: ...` matching `pattern`, no stack trace. */
function assertOneLineError(r: CliResult, code: number, pattern: RegExp, what: string): void {
  const lines = r.stderr.trimEnd().split("\n");
  assert(r.code === code, `${what}: expected exit ${code}, got ${describe(r)}`);
  assert(
    lines.length === 1,
    `${what}: expected one stderr line, got ${lines.length}:\n${r.stderr}`,
  );
  assert(!/^\s+at /m.test(r.stderr), `${what}: stack trace on stderr:\n${r.stderr}`);
  assert(
    lines[0].startsWith("error: "),
    `${what}: line does not start with "error: ": ${lines[0]}`,
  );
  assert(pattern.test(lines[0]), `${what}: "${lines[0]}" does not match ${pattern}`);
  assertEquals(r.stdout, "", `${what}: stdout`);
}

/** Mean absolute difference (0..255) between two RGBA images of equal size. */
function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assertEquals(a.length, b.length, "image sizes");
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

/**
 * Checks decoded frames: `count` frames of `width` x `height`, opaque, not flat, and every
 * consecutive pair differs (mean |diff| > 2 of 255 levels; the tiny random-weights models give
 * 30-45, identical frames 0) and every frame spans > 64 levels of red (tiny models: > 200).
 */
function assertAnimation(
  frames: Uint8Array[],
  { count, width, height, what }: { count: number; width: number; height: number; what: string },
): void {
  assertEquals(frames.length, count, `${what}: frame count`);
  for (const [i, f] of frames.entries()) {
    assertEquals(f.length, width * height * 4, `${what}: frame ${i} size`);
    let min = 255, max = 0;
    for (let p = 0; p < f.length; p += 4) {
      assert(f[p + 3] === 255, `${what}: frame ${i} pixel ${p / 4} not opaque`);
      min = Math.min(min, f[p]);
      max = Math.max(max, f[p]);
    }
    assert(max - min > 64, `${what}: frame ${i} is flat (red ${min}..${max})`);
  }
  for (let i = 1; i < frames.length; i++) {
    const d = meanAbsDiff(frames[i - 1], frames[i]);
    assert(d > 2, `${what}: frames ${i - 1} and ${i} differ by only ${d.toFixed(3)}/255`);
  }
}

/** Declares a test that runs the CLI on the GPU: ignored without an adapter outside CI. */
function cliGpuTest(name: string, fn: (dir: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !hasAdapter && !isCI,
    async fn() {
      if (!hasAdapter) throw new Error(`${name}: no WebGPU adapter found under CI=true`);
      const dir = await Deno.makeTempDir({ prefix: "zoetrope_cli_" });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Runs `tasks` with at most `n` at a time (CLI start-up is mostly waiting on the loader). */
async function pool<T>(tasks: (() => Promise<T>)[], n: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, worker));
  return results;
}

cliGpuTest(
  "cli: GIF with --json on the tiny model; the same --seed gives identical bytes",
  async (dir) => {
    const args = [
      "--prompt",
      "a red fox running",
      ...TINY_MODEL,
      ...SMALL,
      "--seed",
      "7",
      "--json",
    ];
    const [a, b] = await Promise.all([
      runCli([...args, "--out", "a.gif"], dir),
      runCli([...args, "--out", "sub/b.gif"], dir),
    ]);
    assertOk(a);
    assertOk(b);
    const summary = JSON.parse(a.stdout);
    assertEquals(summary.files, ["a.gif"]);
    assertEquals(summary.seed, "7");
    assertEquals(summary.outputs.length, 1);
    assertEquals(summary.outputs[0].prompt, "a red fox running");
    for (const k of ["encode", "denoise", "decode", "total"]) {
      assert(typeof summary.timings[k] === "number" && summary.timings[k] > 0, `timings.${k}`);
    }
    assert(typeof summary.adapter === "string" && summary.adapter.length > 0, "adapter named");
    // --json keeps stderr free of the "wrote ..." line (no TTY: no progress bar either).
    assertEquals(a.stderr, "");
    const bytes = await Deno.readFile(join(dir, "a.gif"));
    const gif = decodeGif(bytes);
    assertEquals([gif.width, gif.height, gif.loop], [64, 64, 0]);
    // --fps 8 (default) = 125 ms, stored in centiseconds.
    assert(gif.delaysCs.every((d) => d === 12 || d === 13), `delays ${gif.delaysCs}`);
    assertAnimation(gif.frames, { count: 4, width: 64, height: 64, what: "gif" });
    const again = await Deno.readFile(join(dir, "sub/b.gif"));
    assertEquals(again.length, bytes.length, "same seed: GIF length");
    assert(again.every((v, i) => v === bytes[i]), "same seed: GIF bytes differ");
  },
);

cliGpuTest(
  "cli: --context-length animates more frames than the motion module holds",
  async (dir) => {
    // The fixture's module has 32 positions; 40 frames in closed-loop windows of 16 (overlap 4:
    // starts 0, 12, 24, 36, the last wrapping to frames 0..11). The random-weight fixture model
    // makes every frame busy, which the check below relies on.
    const r = await runCli([
      ...TINY_MODEL,
      "--prompt",
      "a long drive",
      "--frames",
      "40",
      "--context-length",
      "16",
      "--context-overlap",
      "4",
      "--context-loop",
      "--steps",
      "1",
      "--width",
      "32",
      "--height",
      "32",
      "--seed",
      "3",
      "--out",
      "long.gif",
    ], dir);
    assertOk(r);
    const gif = decodeGif(await Deno.readFile(join(dir, "long.gif")));
    assertAnimation(gif.frames, { count: 40, width: 32, height: 32, what: "windowed gif" });
    const bad = await runCli(["--prompt", "x", "--frames", "40", "--context-length", "33"], dir);
    assertEquals(bad.code, 2, describe(bad));
    assert(
      /^error: contextLength must be an integer from 1 to 32, got 33/.test(bad.stderr),
      bad.stderr,
    );
  },
);

cliGpuTest(
  "cli: APNG from the single-file checkpoint + --lora PATH:0.8, non-square",
  async (dir) => {
    const r = await runCli([
      "--prompt",
      "a lighthouse in a storm",
      "--model",
      SD15_FILE,
      "--model-config",
      MODEL_DIR,
      "--tokenizer",
      join(MODEL_DIR, "tokenizer"),
      "--motion-module",
      MM_SAFETENSORS,
      "--motion-module-config",
      MM_CONFIG,
      "--lora",
      `${LORA}:0.8`,
      ...["--frames", "5", "--width", "48", "--height", "40", "--steps", "2"],
      ...["--seed", "11", "--fps", "10", "--loop", "2", "--scheduler", "euler-a"],
      "--out",
      "clip.png",
    ], dir);
    assertOk(r);
    assert(
      /^wrote clip\.png \(5 frames 48x40, seed 11, [\d.]+ s\)$/m.test(r.stderr),
      `summary line: ${r.stderr}`,
    );
    const apng = decodeApng(await Deno.readFile(join(dir, "clip.png")));
    assertEquals([apng.width, apng.height, apng.numPlays], [48, 40, 2]);
    assert(apng.delays.every((d) => Math.abs(d - 0.1) < 1e-9), `delays ${apng.delays}`);
    assertAnimation(apng.frames, { count: 5, width: 48, height: 40, what: "apng" });
  },
);

cliGpuTest(
  "cli: demo model (no --model) writes a PNG folder and says what the demo draws",
  async (dir) => {
    const r = await runCli(
      [
        "--prompt",
        "a green triangle growing",
        "--frames",
        "3",
        "--steps",
        "1",
        "--seed",
        "5",
        "--json",
        "--out",
        "frames",
      ],
      dir,
    );
    assertOk(r);
    const notes = r.stderr.match(/used the built-in demo model/g) ?? [];
    assertEquals(notes.length, 1, `demo note count in: ${r.stderr}`);
    assert(/"a <colour> <shape> <motion>"/.test(r.stderr), `note says what it draws: ${r.stderr}`);
    assert(/demo:paper/.test(r.stderr), `note names the paper variant: ${r.stderr}`);
    assert(/pass --model .* --motion-module/.test(r.stderr), `note says what to pass: ${r.stderr}`);
    const summary = JSON.parse(r.stdout); // the note went to stderr, stdout is pure JSON
    const names = ["frame_0000.png", "frame_0001.png", "frame_0002.png"];
    assertEquals(summary.files, names.map((n) => join("frames", n)));
    assertEquals(summary.seed, "5");
    assertEquals([...Deno.readDirSync(join(dir, "frames"))].map((e) => e.name).sort(), names);
    const frames = [];
    for (const n of names) {
      const png = decodePng(await Deno.readFile(join(dir, "frames", n)));
      assertEquals([png.width, png.height], [64, 64], `${n}: the demo's default size`);
      frames.push(png.data);
    }
    assertAnimation(frames, { count: 3, width: 64, height: 64, what: "png folder" });
  },
);

cliGpuTest("cli: --out clip.mp4 and clip.webm write videos that decode back", async (dir) => {
  for (
    const [out, probe, codec] of [
      ["clip.mp4", probeMp4, "avc1"],
      ["clip.webm", probeWebm, "V_VP8"],
    ] as const
  ) {
    const args = ["--prompt", "a red circle moving right", "--frames", "3", "--steps", "1"];
    const r = await runCli([...args, "--fps", "6", "--width", "48", "--out", out], dir);
    assertOk(r);
    assert(
      new RegExp(`^wrote ${out.replace(".", "\\.")} \\(3 frames 48x64`, "m").test(r.stderr),
      r.stderr,
    );
    const p = probe(await Deno.readFile(join(dir, out)));
    assertEquals([p.codec, p.width, p.height, p.frameCount], [codec, 48, 64, 3], out);
    assert(Math.abs(p.fps - 6) < 0.05, `${out}: fps ${p.fps}`);
  }
});

cliGpuTest("cli: --config runs every prompt of both AnimateDiff config forms", async (dir) => {
  // Relative paths resolve against the config's folder (cwd is `dir`, the config in dir/cfg).
  await Deno.mkdir(join(dir, "cfg"));
  await Deno.copyFile(MM_CKPT, join(dir, "cfg/mm.ckpt"));
  const common = `
  steps: 2
  guidance_scale: 7.5
  W: 32
  H: 32
  L: 3
  n_prompt: ["blurry"]`;
  // v1 form: a mapping of named entries; two motion modules (the same weights as .ckpt and
  // .safetensors) x two prompts; per-prompt seeds, one of them 64-bit. Then a base + LoRA entry.
  await Deno.writeTextFile(
    join(dir, "cfg/mapping.yaml"),
    `Tiny:
  inference_config: "configs/inference/inference-v2.yaml"
  dreambooth_path: "${MODEL_DIR}"
  motion_module:
    - "mm.ckpt"
    - "${MM_SAFETENSORS}"
  lora_model_path: ""
  seed: [11, 10788741199826055526]
  prompt:
    - "a red fox"
    - "A Blue Bird!"${common}
# The oldest v1 form: \`path\` is a LoRA merged into \`base\` with lora_alpha.
TinyV1:
  base: "${MODEL_DIR}"
  path: "${LORA}"
  lora_alpha: 0.8
  motion_module: ["mm.ckpt"]
  seed: [11]
  prompt: ["a red fox"]${common}
`,
  );
  // v2/v3 form: a list of entries; the first prompt of the mapping again, plus a LoRA.
  await Deno.writeTextFile(
    join(dir, "cfg/list.yaml"),
    `- dreambooth_path: "${MODEL_DIR}"
  motion_module: "mm.ckpt"
  lora_model_path: "${LORA}"
  lora_alpha: 0.8
  seed: 11
  prompt: ["a red fox"]${common}
`,
  );
  const flags = ["--motion-module-config", MM_CONFIG, "--json"];
  const [m, l] = await Promise.all([
    runCli(["--config", "cfg/mapping.yaml", ...flags], dir), // default --out: samples/
    runCli(["--config", "cfg/list.yaml", ...flags, "--out", "list_out"], dir),
  ]);
  assertOk(m);
  assertOk(l);
  const ms = JSON.parse(m.stdout), ls = JSON.parse(l.stdout);
  const expected = [
    "0-a-red-fox.gif",
    "1-a-blue-bird.gif",
    "2-a-red-fox.gif",
    "3-a-blue-bird.gif",
    "4-a-red-fox.gif",
  ];
  assertEquals(ms.files, expected.map((f) => join("samples", f)));
  assertEquals(ms.outputs.map((o: { seed: string }) => o.seed), [
    "11",
    "10788741199826055526",
    "11",
    "10788741199826055526",
    "11",
  ]);
  assertEquals(ms.outputs.map((o: { prompt: string }) => o.prompt), [
    "a red fox",
    "A Blue Bird!",
    "a red fox",
    "A Blue Bird!",
    "a red fox",
  ]);
  assertEquals(ls.files, [join("list_out", "0-a-red-fox.gif")]);
  const read = (f: string) => Deno.readFile(join(dir, f));
  const gifs = await Promise.all([...ms.files, ...ls.files].map(read));
  const decoded = gifs.map((g) => decodeGif(g));
  for (const [i, g] of decoded.entries()) {
    assertAnimation(g.frames, { count: 3, width: 32, height: 32, what: `config output ${i}` });
  }
  const same = (i: number, j: number) =>
    gifs[i].length === gifs[j].length && gifs[i].every((v, k) => v === gifs[j][k]);
  // Same weights in .ckpt and .safetensors, same prompt and seed: identical files.
  assert(same(0, 2), "ckpt vs safetensors motion module: outputs differ");
  // v1 base + LoRA path = dreambooth_path + lora_model_path with the same alpha.
  assert(same(4, 5), "v1 base/path LoRA entry differs from the list entry with lora_model_path");
  // Different prompt and seed: a different animation.
  assert(meanAbsDiff(decoded[0].frames[0], decoded[1].frames[0]) > 1, "prompts 0 and 1 look alike");
  // The list entry is the mapping's job 0 plus the LoRA: the LoRA must change the output
  // (mean |diff| ~10 of 255 levels measured; > 2 required).
  const loraDiff = meanAbsDiff(decoded[0].frames[1], decoded[5].frames[1]);
  assert(loraDiff > 2, `lora_model_path changed frame 1 by only ${loraDiff.toFixed(3)}/255`);
});

Deno.test("cli: --help lists every contract flag and exits 0", async () => {
  const r = await runCli(["--help"], ROOT);
  assertEquals(r.code, 0, describe(r));
  const flags = [
    "--prompt",
    "--negative-prompt",
    "--model",
    "--motion-module",
    "--lora",
    "--tokenizer",
    "--frames",
    "--width",
    "--height",
    "--steps",
    "--guidance",
    "--scheduler",
    "--clip-skip",
    "--context-length",
    "--context-overlap",
    "--context-loop",
    "--seed",
    "--fps",
    "--precision",
    "--config",
    "--model-config",
    "--motion-module-config",
    "--out",
    "--json",
  ];
  for (const f of flags) {
    assert(new RegExp(`^ +(--[\\w-]+ \\S+, )?${f}[ ,]`, "m").test(r.stdout), `--help lacks ${f}`);
  }
  assert(r.stdout.includes("ddim|euler|euler-a|dpmpp-2m|dpmpp-2m-karras"), "scheduler list");
});

Deno.test("cli: bad input that fails before any GPU work exits 2 with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope_cli_bad_" });
  try {
    await Deno.writeTextFile(join(dir, "junk.safetensors"), "hello, not weights\n");
    const sd = await Deno.readFile(SD15_FILE);
    await Deno.writeFile(join(dir, "cut.safetensors"), sd.subarray(0, 1000));
    await Deno.writeTextFile(join(dir, "bad.yaml"), "A:\n  prompt: [unclosed\n");
    await Deno.writeTextFile(join(dir, "ok.yaml"), "- prompt: [x]\n");
    await Deno.writeTextFile(join(dir, "novideo.yaml"), "- prompt: x\n  video: gone.gif\n");
    await Deno.writeTextFile(join(dir, "notgif.gif"), "GIF? no\n");
    const red = new Uint8ClampedArray(16 * 16 * 4).map((_, i) => (i % 4 === 1 ? 0 : 255));
    await Deno.writeFile(join(dir, "red.png"), encodePng({ data: red, width: 16, height: 16 }));
    await writeSafetensors(join(dir, "wide.safetensors"), [
      { name: "emb_params", dtype: "F32", shape: [1, 32], data: new Float32Array(32) },
    ]);
    await writeFamilyCheckpoint(join(dir, "inpaint.safetensors"), "sd15-inpainting");
    await withBigList(MM_CKPT, join(dir, "big_list.ckpt"), { items: 1_000_000 });
    await Deno.mkdir(join(dir, "badtok"));
    await Deno.writeTextFile(join(dir, "badtok/vocab.json"), '{"<|startoftext|>": "zero"}');
    await Deno.writeTextFile(join(dir, "badtok/merges.txt"), "#version: 0.2\n");
    const p = ["--prompt", "x", "--out", "x.gif"];
    const cases: [string, string[], RegExp][] = [
      [
        "missing --model",
        [...p, "--model", "no/such.safetensors"],
        /^error: --model: no\/such\.safetensors does not exist$/,
      ],
      [
        "config video that does not exist",
        ["--config", "novideo.yaml"],
        /^error: --config video: .*gone\.gif: /,
      ],
      [
        "--strength outside (0, 1]",
        [...p, "--image", "red.png", "--strength", "1.5"],
        /^error: strength must be a number above 0 and at most 1, got 1\.5$/,
      ],
      [
        "--embedding of another width",
        [...p, "--embedding", "wide.safetensors=tok"],
        /^error: embeddings: wide\.safetensors: vectors of width 32 .* do not match the text encoder's 64/,
      ],
      [
        "unreadable --video",
        [...p, "--video", "notgif.gif"],
        /^error: --video: notgif\.gif: /,
      ],
      [
        "unreadable --model",
        [...p, "--model", "junk.safetensors"],
        /--model: junk\.safetensors: not a safetensors or PyTorch checkpoint file/,
      ],
      [
        "truncated --model",
        [...p, "--model", "cut.safetensors"],
        /--model: cut\.safetensors: .*truncated file\?/,
      ],
      [
        "LoRA as --model",
        [...p, "--model", LORA, "--motion-module", MM_CKPT],
        /--model: .*lora_kohya\.safetensors: this is a kohya LoRA; expected an SD1\.5 checkpoint or a diffusers model folder/,
      ],
      [
        "motion module as --model",
        [...p, "--model", MM_CKPT, "--motion-module", MM_CKPT],
        /--model: .*motion_module\.ckpt: this is an AnimateDiff motion module; expected an SD1\.5 checkpoint/,
      ],
      [
        "SD checkpoint as --motion-module",
        [...p, "--model", MODEL_DIR, "--motion-module", SD15_FILE],
        /--motion-module: .*sd15\.safetensors: this is an SD1\.5 single-file checkpoint; expected an AnimateDiff motion module/,
      ],
      [
        "missing --lora",
        [...p, "--lora", "gone.safetensors:0.5"],
        /^error: --lora: gone\.safetensors does not exist$/,
      ],
      [
        "motion module as --lora",
        [...p, "--lora", MM_SAFETENSORS],
        /--lora: .*: this is an AnimateDiff motion module; expected a LoRA/,
      ],
      ...["nan", "inf", "1e999", "0.5x", "-Infinity"].map((scale): [string, string[], RegExp] => [
        `--lora scale ${scale}`,
        [...p, "--lora", `${LORA}:${scale}`],
        new RegExp(`^error: --lora: scale "${scale}" is not a finite number \\(write PATH:SCALE`),
      ]),
      [
        "SD1.5 inpainting checkpoint as --model",
        [...p, "--model", "inpaint.safetensors", "--motion-module", MM_CKPT],
        /^error: --model: inpaint\.safetensors is an SD1\.5 inpainting checkpoint \(conv_in takes 9 channels, not 4\); AnimateDiff needs a text-to-image SD1\.5 checkpoint$/,
      ],
      [
        // The motion module with a million-item list loads; the run stops at the tokenizer.
        "malformed --tokenizer (after a --motion-module holding a 1e6-item list)",
        [...p, "--model", MODEL_DIR, "--motion-module", "big_list.ckpt", "--tokenizer", "badtok"],
        /^error: --tokenizer: vocab\.json: id of "<\|startoftext\|>" is "zero", expected an integer/,
      ],
      [
        "missing --tokenizer",
        [...p, "--tokenizer", "nowhere"],
        /--tokenizer: cannot read nowhere\/vocab\.json/,
      ],
      [
        "unknown scheduler",
        [...p, "--scheduler", "plms"],
        /unknown --scheduler "plms"; use one of ddim, euler, euler-a, dpmpp-2m, dpmpp-2m-karras/,
      ],
      ["unknown flag", [...p, "--denoise", "3"], /Unknown option '--denoise' \(see --help\)/],
      [
        "non-numeric --steps",
        [...p, "--steps", "ten"],
        /^error: --steps must be an integer, got "ten"$/,
      ],
      [
        "non-numeric --guidance",
        [...p, "--guidance", "high"],
        /--guidance must be a number, got "high"/,
      ],
      [
        "--free-init-method without --free-init",
        [...p, "--free-init-method", "box"],
        /^error: --free-init-method needs --free-init N$/,
      ],
      [
        "non-numeric --motion-scale",
        [...p, "--motion-scale", "fast"],
        /^error: --motion-scale must be a number, got "fast"$/,
      ],
      ["negative --seed", [...p, "--seed", "-5"], /--seed needs a value; .*--seed=VALUE/],
      ["bad --seed", [...p, "--seed=-5"], /--seed must be a non-negative integer, got "-5"/],
      ["bad --precision", [...p, "--precision", "f8"], /--precision must be f32 or f16, got f8/],
      [
        "bad --fidelity",
        [...p, "--fidelity", "v9"],
        /--fidelity must be diffusers or original, got v9/,
      ],
      [
        "bad --out",
        ["--prompt", "x", "--out", "x.avi"],
        /--out must end in \.gif, \.png, \.mp4 or \.webm, or be a directory; got x\.avi/,
      ],
      [
        "no --prompt",
        ["--out", "x.gif"],
        /--prompt is required \(or --prompt-map, or --config FILE\.yaml\)/,
      ],
      [
        "missing --config",
        ["--config", "nope.yaml"],
        /--config: cannot read nope\.yaml \(NotFound\)/,
      ],
      ["bad YAML --config", ["--config", "bad.yaml"], /bad\.yaml: not valid YAML/],
      [
        "--prompt with --config",
        ["--config", "ok.yaml", "--prompt", "y"],
        /--prompt and --config are exclusive/,
      ],
    ];
    const results = await pool(cases.map(([, args]) => () => runCli(args, dir)), 4);
    cases.forEach(([what, , pattern], i) => assertOneLineError(results[i], 2, pattern, what));
    // Nothing was written by any failing run.
    assertEquals(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      [
        "bad.yaml",
        "badtok",
        "big_list.ckpt",
        "cut.safetensors",
        "inpaint.safetensors",
        "junk.safetensors",
        "notgif.gif",
        "novideo.yaml",
        "ok.yaml",
        "red.png",
        "wide.safetensors",
      ],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Whether this adapter's storage-binding limit is below the largest tensor of the OOM case
// ([2 * 32 frames, 32 ch, 256, 256] f32 = 512 MiB on the demo at 2048x2048); lavapipe: 128 MiB.
const bindingLimit = hasAdapter
  ? (await navigator.gpu.requestAdapter())?.limits.maxStorageBufferBindingSize ?? 0
  : 0;

cliGpuTest(
  "cli: bad sizes, frames above the motion module's limit and GPU OOM: one line",
  async (dir) => {
    const cases: [string, string[], number, RegExp][] = [
      [
        "width not /8",
        [...TINY_MODEL, "--width", "60", "--height", "64"],
        2,
        /^error: width must be a multiple of 8, got 60$/,
      ],
      [
        "height not /8",
        [...TINY_MODEL, "--width", "64", "--height", "36"],
        2,
        /^error: height must be a multiple of 8, got 36$/,
      ],
      [
        "frames > fixture adapter's 32",
        [...TINY_MODEL, "--frames", "33"],
        2,
        /frames must be an integer from 1 to 32, got 33 \(the v2 motion module's position encoding has 32 positions; for longer animations set contextLength \(CLI: --context-length\) to at most 32\)/,
      ],
      [
        "frames > demo v2's 32",
        ["--frames", "33"],
        2,
        /frames must be an integer from 1 to 32, got 33/,
      ],
      [
        "motion scale 0",
        ["--motion-scale", "0"],
        2,
        /^error: motionScale must be a number above 0 and at most 10, got 0$/,
      ],
      [
        "keyframe beyond the last frame",
        ["--prompt-map", "0: a red circle", "--prompt-map", "8: a blue circle"],
        2,
        /^error: promptMap: keyframe 8 is beyond the last frame \(7 of 8\)$/,
      ],
      [
        "unknown FreeInit filter",
        ["--free-init", "2", "--free-init-method", "median"],
        2,
        /^error: freeInit\.method must be one of butterworth, gaussian, ideal, box, got "median"$/,
      ],
      [
        "motion effect below 0",
        ["--motion-effect=-1"],
        2,
        /^error: motionEffect must be a number from 0 to 10, got -1$/,
      ],
    ];
    cases.push([
      "a memory budget below the plan",
      ["--max-memory", "1MB"],
      1,
      /^error: 8 frames at 64x64 in f32 need [\d.]+ MB of GPU memory, more than the 1\.00 MB budget; .+$/,
    ]);
    if (bindingLimit < 512 * 1024 * 1024) {
      cases.push([
        "larger than the adapter allows",
        ["--width", "2048", "--height", "2048", "--frames", "32"],
        1,
        /^error: 32 frames at 2048x2048 in f32 cannot run on this adapter \(.+\); would fit: .+$/,
      ]);
    } else {
      console.warn(`cli OOM case skipped: maxStorageBufferBindingSize ${bindingLimit} >= 512 MiB`);
    }
    const results = await pool(
      cases.map(([, args]) => () => runCli(["--prompt", "x", "--out", "x.gif", ...args], dir)),
      2,
    );
    cases.forEach(([what, , code, pattern], i) =>
      assertOneLineError(results[i], code, pattern, what)
    );
    assertEquals([...Deno.readDirSync(dir)].length, 0, "no output written");
  },
);

cliGpuTest("cli: --dry-run prints the memory plan and exits without generating", async (dir) => {
  const [plain, json, over, badSize] = await pool([
    () => runCli(["--prompt", "x", "--dry-run"], dir),
    () => runCli(["--prompt", "x", "--dry-run", "--json", "--frames", "4"], dir),
    // Above the demo's f32 weights (9.1 MB), below its peak: a smaller size fits even on an
    // adapter without shader-f16.
    () => runCli(["--prompt", "x", "--dry-run", "--max-memory", "15MB"], dir),
    () => runCli(["--prompt", "x", "--dry-run", "--max-memory", "10XB"], dir),
  ], 2);
  assertOk(plain);
  assert(
    /^memory plan: 8 frames 64x64 in f32, the built-in demo model \(demo\), on .+\n/.test(
      plain.stdout,
    ),
    plain.stdout,
  );
  for (const row of ["weights", "activations", "peak", "limits", "budget"]) {
    assert(new RegExp(`^  ${row} +\\S`, "m").test(plain.stdout), `${row} row: ${plain.stdout}`);
  }
  assert(/^ {2}fits +yes$/m.test(plain.stdout), plain.stdout);
  assertOk(json);
  const { plans } = JSON.parse(json.stdout);
  assertEquals(plans.length, 1);
  assertEquals([plans[0].frames, plans[0].fits], [4, true]);
  assert(plans[0].peakBytes > plans[0].weightsBytes, json.stdout);
  // Over budget: the plan on stdout, one error line on stderr, exit 1 (an engine limit).
  assertEquals(over.code, 1, describe(over));
  assert(/^ {2}fits +no: 8 frames at 64x64 in f32 need/m.test(over.stdout), over.stdout);
  assertEquals(over.stderr.trimEnd().split("\n").length, 1, over.stderr);
  assert(/^error: 8 frames .* budget; would fit: /.test(over.stderr), over.stderr);
  assertOneLineError(
    badSize,
    2,
    /--max-memory must be a positive size such as 8GB or 6\.5GiB, got "10XB"/,
    "bad --max-memory",
  );
  assertEquals([...Deno.readDirSync(dir)].length, 0, "nothing written");
});

Deno.test("cli: parseLoraFlag splits PATH:SCALE, keeps paths with colons, refuses non-finite scales", async () => {
  assertEquals(parseLoraFlag("a.safetensors"), { path: "a.safetensors", scale: 1 });
  assertEquals(parseLoraFlag("a.safetensors:0.8"), { path: "a.safetensors", scale: 0.8 });
  assertEquals(parseLoraFlag("a.safetensors:-.5"), { path: "a.safetensors", scale: -0.5 });
  assertEquals(parseLoraFlag("a.safetensors:+2"), { path: "a.safetensors", scale: 2 });
  assertEquals(parseLoraFlag("a.safetensors:1e-1"), { path: "a.safetensors", scale: 0.1 });
  assertEquals(parseLoraFlag("C:\\loras\\a.safetensors"), {
    path: "C:\\loras\\a.safetensors",
    scale: 1,
  });
  assertEquals(parseLoraFlag("C:\\loras\\a.safetensors:0.5"), {
    path: "C:\\loras\\a.safetensors",
    scale: 0.5,
  });
  assertEquals(parseLoraFlag("D:/loras/1.safetensors"), {
    path: "D:/loras/1.safetensors",
    scale: 1,
  });
  assertEquals(parseLoraFlag("hf:owner/repo/lora.safetensors"), {
    path: "hf:owner/repo/lora.safetensors",
    scale: 1,
  });
  for (const scale of ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "0.5x", "1..2", ""]) {
    let err: unknown;
    try {
      parseLoraFlag(`a.safetensors:${scale}`);
    } catch (e) {
      err = e;
    }
    assert(err instanceof InputError, `scale "${scale}" was accepted`);
    assertEquals(
      err.message,
      `--lora: scale "${scale}" is not a finite number (write PATH:SCALE, e.g. a.safetensors:0.8)`,
    );
  }
  // An existing file whose name has a colon and a number-like tail is a path.
  const dir = await Deno.makeTempDir();
  try {
    const odd = join(dir, "lora:2.5x");
    await Deno.writeTextFile(odd, "");
    assertEquals(parseLoraFlag(odd), { path: odd, scale: 1 });
    assertEquals(parseLoraFlag(`${odd}:0.3`), { path: odd, scale: 0.3 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --prompt-map flags become a prompt map; malformed ones are one-line errors", () => {
  assertEquals(parsePromptMapFlags(undefined), undefined);
  assertEquals(parsePromptMapFlags(["0: a red circle", " 7 :a blue circle: at night"]), {
    0: "a red circle",
    7: "a blue circle: at night",
  });
  for (
    const [flags, re] of [
      [["a red circle"], /^--prompt-map must be "FRAME: PROMPT"/],
      [["-1: x"], /^--prompt-map must be "FRAME: PROMPT"/],
      [["2: a", "2: b"], /^--prompt-map: keyframe 2 is given twice$/],
    ] as const
  ) {
    let err: Error | null = null;
    try {
      parsePromptMapFlags(flags);
    } catch (e) {
      err = e as Error;
    }
    assert(err !== null && re.test(err.message) && !err.message.includes("\n"), `${err}`);
  }
});
