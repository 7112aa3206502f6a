/**
 * The published surface (issue 7): what mod.ts exports, that `deno doc --lint mod.ts` and
 * `deno publish --dry-run` pass, what the package ships, and that the examples type-check.
 * The deno subcommands run as subprocesses from the repository root.
 */

import * as mod from "../mod.ts";
import { assert, assertEquals } from "./assert.ts";

const ROOT = new URL("../", import.meta.url);
const rootPath = decodeURIComponent(ROOT.pathname);

/** Runs `deno <args>` in the repository root; returns exit code and combined output. */
async function deno(args: string[]): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: rootPath,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, output: text.decode(stdout) + text.decode(stderr) };
}

/** Last lines of a subprocess's output, for failure messages. */
function tail(output: string, lines = 40): string {
  return output.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Every run-time (value) export of mod.ts (types vanish at run time; doc lint checks them). */
const VALUE_EXPORTS = [
  "ANIMATEDIFF_SCHEDULER_CONFIG",
  "ANIMATION_FORMATS",
  "AbortError",
  "Animation",
  "AnimationPipeline",
  "DEFAULT_LIMITS",
  "DISCRETE_GPU",
  "EngineLimitError",
  "Gpu",
  "InputError",
  "MAX_SIDE",
  "MAX_STEPS",
  "MAX_VIDEO_SIDE",
  "NoAdapterError",
  "SCHEDULERS",
  "convertToSafetensors",
  "createApp",
  "createTrainer",
  "defaultMemoryBudget",
  "encodeAnimation",
  "encodeApng",
  "encodeFramesZip",
  "encodeGif",
  "encodePng",
  "encodeVideo",
  "inspectWeights",
  "loadPipeline",
  "parsePromptConfig",
  "planGeneration",
  "planTraining",
  "schedulerConfigFromDiffusers",
];

Deno.test("mod.ts exports exactly the public API values and no internals", () => {
  assertEquals(Object.keys(mod).sort(), [...VALUE_EXPORTS].sort(), "mod.ts value exports");
  for (const internal of ["toFrameMajor", "toRgba", "ClipTokenizer", "UNet3D", "JobQueue"]) {
    assert(!(internal in mod), `mod.ts must not export the internal ${internal}`);
  }
  assertEquals(typeof mod.loadPipeline, "function", "loadPipeline");
  assertEquals(typeof mod.AnimationPipeline.load, "function", "AnimationPipeline.load");
  assertEquals(typeof mod.createApp, "function", "createApp");
  assertEquals(typeof mod.createTrainer, "function", "createTrainer");
  assertEquals(typeof mod.planTraining, "function", "planTraining");
  assertEquals([...mod.SCHEDULERS], [
    "ddim",
    "euler",
    "euler-a",
    "dpmpp-2m",
    "dpmpp-2m-karras",
    "lcm",
  ]);
  assertEquals([...mod.ANIMATION_FORMATS], ["gif", "apng", "png-zip", "mp4", "webm"]);
  assertEquals(mod.ANIMATEDIFF_SCHEDULER_CONFIG.betaStart, 0.00085, "AnimateDiff beta_start");
  assertEquals(mod.ANIMATEDIFF_SCHEDULER_CONFIG.betaEnd, 0.012, "AnimateDiff beta_end");
  assertEquals(new mod.InputError("x").name, "InputError");
  assertEquals(new mod.AbortError().name, "AbortError");
  assertEquals(new mod.EngineLimitError("x").name, "EngineLimitError");
});

Deno.test("mod.ts encoders write GIF, APNG and zip signatures", () => {
  const frame = (v: number) => ({
    data: new Uint8ClampedArray(8 * 6 * 4).fill(v),
    width: 8,
    height: 6,
  });
  const frames = [frame(10), frame(200)];
  const ascii = (b: Uint8Array, from: number, to: number) =>
    String.fromCharCode(...b.subarray(from, to));
  const gif = mod.encodeGif(frames, { fps: 8 });
  assertEquals(ascii(gif, 0, 6), "GIF89a", "GIF header");
  assertEquals(gif[6] | (gif[7] << 8), 8, "GIF logical screen width");
  assertEquals(gif[8] | (gif[9] << 8), 6, "GIF logical screen height");
  const apng = mod.encodeAnimation(frames, "apng", { fps: 8 });
  assertEquals([...apng.bytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], "PNG signature");
  assert(ascii(apng.bytes, 0, 200).includes("acTL"), "APNG has an acTL chunk");
  assertEquals(apng.contentType, "image/apng");
  const zip = mod.encodeFramesZip(frames);
  assertEquals(ascii(zip, 0, 4), "PK\x03\x04", "zip local header");
  assertEquals(ascii(zip, 30, 44), "frame_0000.png", "first zip entry name");
});

Deno.test("mod.ts inspectWeights and createApp work on the tiny fixtures", async () => {
  const mm = new URL("tests/fixtures/tiny/single_file/motion_module.safetensors", ROOT);
  const s = await mod.inspectWeights(decodeURIComponent(mm.pathname));
  assertEquals(s.kind, "motion-module");
  assertEquals(s.version, "v2");
  assert(s.tensors > 0 && s.parameters > s.tensors, `tensor counts: ${s.tensors}, ${s.parameters}`);

  const modelsDir = await Deno.makeTempDir({ prefix: "zoetrope_mod_" });
  try {
    for (const d of ["checkpoints", "motion_modules", "loras"]) {
      await Deno.mkdir(`${modelsDir}/${d}`);
    }
    const app = mod.createApp({ modelsDir, adapterName: () => Promise.resolve("test adapter") });
    const res = await app.request("/healthz");
    assertEquals(res.status, 200, "/healthz status");
    const body = await res.json();
    assertEquals(body.status, "ok");
    assertEquals(body.adapter, "test adapter");
    // An empty models directory still serves the built-in demo models.
    assertEquals(body.models, { checkpoints: 2, motionModules: 1, loras: 0 });
    await app.close();
  } finally {
    await Deno.remove(modelsDir, { recursive: true });
  }
});

Deno.test("deno doc --lint mod.ts exits 0", async () => {
  const { code, output } = await deno(["doc", "--lint", "mod.ts"]);
  assertEquals(code, 0, `deno doc --lint mod.ts failed:\n${tail(output)}`);
});

Deno.test("deno publish --dry-run passes; no tests, fixtures, bench or examples shipped", async () => {
  // --allow-dirty: the check runs on working trees; offline, no JSR access is needed.
  const { code, output } = await deno(["publish", "--dry-run", "--allow-dirty"]);
  assertEquals(code, 0, `deno publish --dry-run failed:\n${tail(output)}`);
  const prefix = ROOT.href;
  const shipped = output.split("\n")
    .map((l) => l.trim().split(" ")[0])
    .filter((f) => f.startsWith(prefix))
    .map((f) => decodeURIComponent(f.slice(prefix.length)));
  for (const f of ["mod.ts", "deno.json", "cli.ts", "engine/pipeline.ts", "server/app.ts"]) {
    assert(shipped.includes(f), `publish must ship ${f}; shipped:\n${shipped.join("\n")}`);
  }
  assert(shipped.some((f) => f.startsWith("kernels/")), "publish must ship kernels/");
  const unwanted = shipped.filter((f) =>
    /^(tests|bench|examples|\.ci|\.device)\//.test(f) || f.endsWith(".wgsl")
  );
  assertEquals(unwanted, [], "files that must not be published");
  // The demo model's weights ship with the package.
  for (const f of ["unet/diffusion_pytorch_model.safetensors", "motion_module.safetensors"]) {
    assert(shipped.includes(`weights/demo_model/${f}`), `publish must ship the demo's ${f}`);
  }
  // No run-time reads of the package's own files: shipped code never locates itself on disk,
  // but for the one module that finds the demo's weights, which reads them from disk in a
  // checkout and downloads them over https from a registry (tests/engine/demo_model_test.ts).
  const selfLocating: string[] = [];
  for (const f of shipped.filter((f) => f.endsWith(".ts") && f !== "weights/demo_model.ts")) {
    const code = (await Deno.readTextFile(new URL(f, ROOT))).split("\n")
      .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l));
    if (code.some((l) => /import\.meta\.(url|dirname|filename|resolve)/.test(l))) {
      selfLocating.push(f);
    }
  }
  assertEquals(selfLocating, [], "shipped files that use import.meta to find files");
});

Deno.test("deno check examples/*.ts exits 0", async () => {
  const examples = [];
  for await (const e of Deno.readDir(new URL("examples/", ROOT))) {
    if (e.isFile && e.name.endsWith(".ts")) examples.push(`examples/${e.name}`);
  }
  examples.sort();
  assertEquals(
    examples,
    [
      "examples/embed_server.ts",
      "examples/generate_gif.ts",
      "examples/lora.ts",
      "examples/stream_progress.ts",
    ],
    "example programs",
  );
  const { code, output } = await deno(["check", ...examples]);
  assertEquals(code, 0, `deno check examples failed:\n${tail(output)}`);
});
