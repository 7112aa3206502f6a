/**
 * `deno task train` (train.ts) run as a subprocess: --help, the one-line errors and exit codes
 * (no --config, a missing file, bad YAML, a wrong type, an unknown flag, no usable clips), the
 * unknown-key warning, a short run with --json on the tiny fixture model over synthetic GIF
 * clips, and Ctrl-C (SIGINT) writing a checkpoint and exiting 130.
 *
 * Runs that reach the GPU need an adapter: ignored without one outside CI, failing under CI=true.
 */

import { type CliResult, runScript } from "./subprocess.ts";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { gpuTest } from "./gpu.ts";
import { encodeGif } from "../engine/output/gif.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TRAIN = join(ROOT, "train.ts");
const TINY = join(ROOT, "tests/fixtures/tiny");

/** Runs `deno run -A train.ts ...args` in `cwd`; killed after 180 s. */
function runTrain(args: string[], cwd: string): Promise<CliResult> {
  return runScript(TRAIN, args, cwd);
}

function describe(r: CliResult): string {
  return `exit ${r.code}\n--- stderr:\n${r.stderr}\n--- stdout:\n${r.stdout.slice(0, 2000)}`;
}

/** Exit `code`, stderr exactly `error: ...` matching `pattern` (after any `before` lines). */
function assertOneLineError(r: CliResult, code: number, pattern: RegExp, before = 0): void {
  const lines = r.stderr.trimEnd().split("\n");
  assert(r.code === code, `expected exit ${code}, got ${describe(r)}`);
  assertEquals(lines.length, before + 1, `stderr lines:\n${r.stderr}`);
  const line = lines[before];
  assert(line.startsWith("error: ") && pattern.test(line), `"${line}" does not match ${pattern}`);
  assert(!/^\s+at /m.test(r.stderr), `stack trace on stderr:\n${r.stderr}`);
  assertEquals(r.stdout, "");
}

/** Three captioned 40x36 GIF clips of 8 frames: a square moving right. */
async function writeClips(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [c, rgb] of [[255, 40, 40], [40, 120, 255], [60, 220, 60]].entries()) {
    const frames = Array.from({ length: 8 }, (_, f) => {
      const w = 40, h = 36, data = new Uint8ClampedArray(w * h * 4);
      for (let i = 0; i < w * h; i++) {
        const x = i % w, y = Math.floor(i / w);
        const inside = x >= 4 + f * 3 && x < 14 + f * 3 && y >= 12 && y < 22;
        data.set(inside ? [...rgb, 255] : [20, 20, 30, 255], i * 4);
      }
      return { data, width: w, height: h };
    });
    await Deno.writeFile(join(dir, `clip${c}.gif`), encodeGif(frames, { fps: 8 }));
    await Deno.writeTextFile(join(dir, `clip${c}.txt`), `a square moving right ${c}`);
  }
}

/** A tiny run's YAML, paths relative to the config's folder. */
function tinyYaml(steps: number, extra = ""): string {
  return `pretrained_model_path: ${TINY}/model
motion_module: ${TINY}/motion_adapter
output_dir: out
train_data: {video_folder: clips, sample_size: 32, sample_stride: 1, sample_n_frames: 4}
max_train_steps: ${steps}
validation_steps: -1
seed: 1
${extra}`;
}

Deno.test("train CLI: --help, and one-line errors with exit 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const help = await runTrain(["--help"], dir);
    assertEquals(help.code, 0);
    assert(help.stdout.includes("--config FILE.yaml"), help.stdout);
    assertOneLineError(await runTrain([], dir), 2, /--config FILE\.yaml is required/);
    assertOneLineError(await runTrain(["--config"], dir), 2, /--config/);
    assertOneLineError(await runTrain(["--bogus"], dir), 2, /Unknown option '--bogus'/);
    assertOneLineError(
      await runTrain(["--config", "missing.yaml"], dir),
      2,
      /^error: --config: cannot read missing\.yaml \(NotFound\)$/,
    );
    await Deno.writeTextFile(join(dir, "bad.yaml"), "output_dir: [unclosed\n");
    assertOneLineError(
      await runTrain(["--config", "bad.yaml"], dir),
      2,
      /^error: bad\.yaml: not valid YAML \(/,
    );
    await Deno.writeTextFile(join(dir, "type.yaml"), tinyYaml(2, "learning_rate: fast"));
    assertOneLineError(
      await runTrain(["--config", "type.yaml"], dir),
      2,
      /^error: type\.yaml: learning_rate: expected a number > 0, got "fast"$/,
    );
    // An unknown key warns (one line) and the run goes on, here to its data error.
    await Deno.writeTextFile(join(dir, "typo.yaml"), tinyYaml(2, "learing_rate: 1"));
    const typo = await runTrain(["--config", "typo.yaml"], dir);
    assertOneLineError(typo, 2, /^error: typo\.yaml: train_data: /, 1);
    assertEquals(
      typo.stderr.split("\n")[0],
      'warning: typo.yaml: unknown key "learing_rate" ignored; did you mean "learning_rate"?',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("train CLI: a short run with --json writes the weights and its summary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeClips(join(dir, "clips"));
    await Deno.writeTextFile(join(dir, "train.yaml"), tinyYaml(3, "checkpointing_steps: 2"));
    const r = await runTrain(["--config", "train.yaml", "--json"], dir);
    assert(r.code === 0, describe(r));
    const s = JSON.parse(r.stdout);
    assertEquals(s.train, "motion");
    assertEquals(s.steps, 3);
    assertEquals(s.weights, "out/motion_module.safetensors");
    assertEquals(s.checkpoints, ["out/checkpoints/step-000002"]);
    assert(s.seconds > 0 && Number.isFinite(s.loss), r.stdout);
    assert((await Deno.stat(join(dir, s.weights))).size > 0, "weights written");
    assertEquals(
      (await Deno.readTextFile(join(dir, "out/loss.csv"))).trim().split("\n").length,
      4,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "train CLI: Ctrl-C writes a checkpoint and exits 130; --resume latest continues",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await writeClips(join(dir, "clips"));
      await Deno.writeTextFile(join(dir, "train.yaml"), tinyYaml(10));
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", TRAIN, "--config", "train.yaml"],
        cwd: dir,
        env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let stderr = "";
      let sent = false;
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        stderr += dec.decode(chunk);
        // Logs without a terminal: one line per step here (10 steps).
        if (!sent && /^step 1\/10/m.test(stderr)) {
          child.kill("SIGINT");
          sent = true;
        }
      }
      const { code } = await child.status;
      assertEquals(code, 130, stderr);
      const m = /^interrupted at step (\d+); checkpoint (\S+); continue with --resume latest/m
        .exec(stderr);
      assert(m, stderr);
      assert(await Deno.stat(join(dir, m[2], "trainer.safetensors")), "checkpoint written");
      // Continue to 10 from the checkpoint.
      const r = await runTrain(["--config", "train.yaml", "--resume", "latest", "--json"], dir);
      assert(r.code === 0, describe(r));
      const s = JSON.parse(r.stdout);
      assertEquals([s.resumedFrom, s.steps], [Number(m[1]), 10]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
