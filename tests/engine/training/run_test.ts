/**
 * The training run (engine/training/run.ts): the YAML (the original AnimateDiff keys, ours, bad
 * types, unknown keys), a short run on the tiny fixture model over synthetic GIF clips written
 * here (checkpoints, loss.csv, the loss plot, a validation GIF, the final weights, bad clips
 * reported once), and a run stopped by its signal and resumed that ends bit-identical to an
 * uninterrupted one. Sizes: 32x32 clips, 4 frames, a handful of steps.
 */

import { join } from "node:path";
import {
  checkpointName,
  encodeLossPlot,
  latestCheckpoint,
  parseTrainConfig,
  runTraining,
  type TrainConfig,
  type TrainEvent,
} from "../../../engine/training/run.ts";
import { encodeGif } from "../../../engine/output/gif.ts";
import { openSafetensors } from "../../../weights/safetensors.ts";
import { loadMotionModule } from "../../../weights/load.ts";
import { InputError } from "../../../kernels/gpu/errors.ts";
import { decodeGif, decodePng } from "../../decode.ts";
import { assert, assertEquals } from "../../assert.ts";
import { gpuTest, testGpu } from "../../gpu.ts";
import { TINY } from "./fixture.ts";

/** The original configs/training/v1/training.yaml (its paths shortened). */
const ORIGINAL = `
image_finetune: false
output_dir: "outputs"
pretrained_model_path: "models/StableDiffusion/stable-diffusion-v1-5"
unet_additional_kwargs:
  use_motion_module: true
  motion_module_resolution: [ 1,2,4,8 ]
  motion_module_type: Vanilla
noise_scheduler_kwargs:
  num_train_timesteps: 1000
  beta_start:          0.00085
  beta_end:            0.012
  beta_schedule:       "linear"
  steps_offset:        1
  clip_sample:         false
train_data:
  csv_path:        "webvid/results_2M_val.csv"
  video_folder:    "webvid/2M_val"
  sample_size:     256
  sample_stride:   4
  sample_n_frames: 16
validation_data:
  prompts:
    - "Snow rocky mountains peaks canyon."
    - "A drone view of celebration with Christma tree and fireworks."
  num_inference_steps: 25
  guidance_scale: 8.
trainable_modules:
  - "motion_modules."
unet_checkpoint_path: ""
learning_rate:    1.e-4
train_batch_size: 4
max_train_epoch:      -1
max_train_steps:      100
checkpointing_epochs: -1
checkpointing_steps:  60
validation_steps:       5000
validation_steps_tuple: [2, 50]
global_seed: 42
mixed_precision_training: true
enable_xformers_memory_efficient_attention: True
is_debug: False
`;

function throwsInput(text: string, pattern: RegExp): void {
  try {
    parseTrainConfig(text);
  } catch (e) {
    assert(e instanceof InputError, `expected an InputError, got ${e}`);
    assert(!e.message.includes("\n"), `one line: ${e.message}`);
    assert(pattern.test(e.message), `"${e.message}" does not match ${pattern}`);
    return;
  }
  throw new Error(`no error for ${pattern}`);
}

Deno.test("train config: the original AnimateDiff training YAML", () => {
  const { config, warnings } = parseTrainConfig(ORIGINAL, { resolvePath: (p) => `/base/${p}` });
  assertEquals(warnings, []);
  assertEquals(config.model, "/base/models/StableDiffusion/stable-diffusion-v1-5");
  assertEquals(config.outputDir, "outputs");
  assertEquals(config.train, "motion");
  assertEquals(config.data, {
    videoFolder: "/base/webvid/2M_val",
    csvPath: "/base/webvid/results_2M_val.csv",
    sampleSize: 256,
    sampleStride: 4,
    sampleNFrames: 16,
    horizontalFlip: true,
  });
  assertEquals(config.validation.prompts.length, 2);
  assertEquals(config.validation.steps, 25);
  assertEquals(config.validation.guidance, 8);
  assertEquals(config.optimizer, { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 });
  assertEquals(config.batchSize, 4);
  assertEquals(config.maxTrainSteps, 100);
  assertEquals(config.checkpointingSteps, 60);
  assertEquals(config.validationSteps, 5000);
  assertEquals(config.validationStepsTuple, [2, 50]);
  assertEquals(config.seed, 42);
  assertEquals(config.precision, "f16");
  assert(config.mixedFromOriginal, "f16 from mixed_precision_training");
  assertEquals(config.noiseSchedule, {
    betaStart: 0.00085,
    betaEnd: 0.012,
    betaSchedule: "linear",
  });
  assertEquals(config.nullTextRatio, 0.1); // train.py's default
  assertEquals(config.maxGradNorm, 1);
  assertEquals(config.lrScheduler, "constant");
});

Deno.test("train config: our keys, aliases and defaults", () => {
  const { config, warnings } = parseTrainConfig(`
output_dir: out
train: motion-lora
motion_module: mm.safetensors
lora: {rank: 8, alpha: 4}
precision: f32
mixed_precision_training: true
seed: 7
resume_from_checkpoint: latest
lr_scheduler: cosine
lr_warmup_steps: 5
cfg_random_null_text: false
train_data: {video_folder: clips, sample_size: [32, 48], horizontal_flip: false}
validation_data: {prompts: [a], video_length: 4, width: 64, height: 32}
`);
  assertEquals(warnings, []);
  assertEquals(config.train, "motion-lora");
  assertEquals(config.motionModule, "mm.safetensors");
  assertEquals(config.lora, { rank: 8, alpha: 4 });
  assertEquals(config.precision, "f32"); // precision wins over mixed_precision_training
  assertEquals(config.seed, 7);
  assertEquals(config.resumeFromCheckpoint, "latest");
  assertEquals(config.lrScheduler, "cosine");
  assertEquals(config.lrWarmupSteps, 5);
  assertEquals(config.nullTextRatio, 0);
  assertEquals(config.data.sampleSize, [32, 48]);
  assertEquals(config.data.horizontalFlip, false);
  assertEquals(config.validation.frames, 4);
  assertEquals(config.optimizer.lr, 3e-5); // train.py's default
  const unet = parseTrainConfig(
    "output_dir: o\nimage_finetune: true\ntrain_data: {video_folder: c}",
  );
  assertEquals(unet.config.train, "unet");
});

Deno.test("train config: wrong types name the key, in one line", () => {
  const base = "output_dir: o\ntrain_data: {video_folder: c}\n";
  throwsInput(base + "learning_rate: fast", /^learning_rate: expected a number > 0, got "fast"$/);
  throwsInput(base + "max_train_steps: 2.5", /^max_train_steps: expected an integer >= 1/);
  throwsInput(base + "train_batch_size: 0", /^train_batch_size: expected an integer >= 1/);
  throwsInput(
    base + "gradient_checkpointing: yes please",
    /^gradient_checkpointing: expected true/,
  );
  throwsInput(base + "train: everything", /^train: expected one of motion, motion-lora, unet, vae/);
  throwsInput(base + "lr_scheduler: polynomial", /^lr_scheduler: expected one of constant/);
  throwsInput(base + "precision: f64", /^precision: expected one of f32, f16/);
  throwsInput(base + "lora: {rank: -1}", /^lora\.rank: expected an integer >= 1/);
  throwsInput(base + "validation_data: {prompts: a}", /^validation_data\.prompts: expected a list/);
  throwsInput(base + "noise_scheduler_kwargs: {beta_schedule: cosine}", /beta_schedule/);
  throwsInput(base + "cfg_random_null_text_ratio: 2", /^cfg_random_null_text_ratio: .* 0 to 1/);
  throwsInput(base + "seed: 1\nglobal_seed: 2", /^seed: 1 contradicts global_seed: 2/);
  throwsInput(base + "gradient_accumulation_steps: 4", /only 1 is supported/);
  throwsInput("output_dir: o\ntrain_data: [1]", /^train_data: expected a mapping/);
  throwsInput("train_data: {video_folder: c}", /^output_dir: required/);
  throwsInput("output_dir: o", /^train_data\.video_folder: required/);
  throwsInput("output_dir: [unclosed", /^not valid YAML/);
  throwsInput(
    "output_dir: o\noutput_dir: p",
    /^not valid YAML \(Map keys must be unique at line 2/,
  );
  throwsInput("- a list", /^the config: expected a mapping/);
});

Deno.test("train config: unknown keys warn once each, with the nearest known key", () => {
  const { config, warnings } = parseTrainConfig(`
output_dir: o
learing_rate: 3
train_data: {video_folder: c, sample_frames: 8}
validation_data: {promts: [a]}
flux_capacitor: 1
`);
  assertEquals(warnings, [
    'unknown key "learing_rate" ignored; did you mean "learning_rate"?',
    'unknown key "flux_capacitor" ignored',
    'unknown key "train_data.sample_frames" ignored; did you mean "sample_n_frames"?',
    'unknown key "validation_data.promts" ignored; did you mean "prompts"?',
  ]);
  assertEquals(config.optimizer.lr, 3e-5);
});

Deno.test("loss plot: a 320x160 PNG with both lines drawn", () => {
  const rows = Array.from({ length: 30 }, (_, i) => ({
    step: i + 1,
    loss: 1 / (i + 1) + (i % 3) * 0.05,
    gradNorm: 1,
    lr: 1e-4,
    seconds: i,
  }));
  const png = decodePng(encodeLossPlot(rows));
  assertEquals([png.width, png.height], [320, 160]);
  const count = (rgb: number[]) => {
    let n = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      if (png.data[i] === rgb[0] && png.data[i + 1] === rgb[1] && png.data[i + 2] === rgb[2]) n++;
    }
    return n;
  };
  assert(count([70, 110, 160]) > 200, "raw loss line");
  assert(count([255, 190, 60]) > 200, "smoothed loss line");
  assertEquals(decodePng(encodeLossPlot([])).width, 320); // no rows: axes only
});

/** Three 40x36 clips of 8 frames (a square moving right) with captions, plus two bad ones. */
async function writeClips(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const colours = [[255, 40, 40], [40, 120, 255], [60, 220, 60]];
  for (const [c, rgb] of colours.entries()) {
    const frames = [];
    for (let f = 0; f < 8; f++) {
      const w = 40, h = 36, data = new Uint8ClampedArray(w * h * 4);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const inside = x >= 4 + f * 3 && x < 14 + f * 3 && y >= 12 && y < 22;
          data.set(inside ? [...rgb, 255] : [20, 20, 30, 255], (y * w + x) * 4);
        }
      }
      frames.push({ data, width: w, height: h });
    }
    await Deno.writeFile(join(dir, `clip${c}.gif`), encodeGif(frames, { fps: 8 }));
    await Deno.writeTextFile(
      join(dir, `clip${c}.txt`),
      `a ${["red", "blue", "green"][c]} square moving right`,
    );
  }
  await Deno.writeFile(join(dir, "uncaptioned.gif"), await Deno.readFile(join(dir, "clip0.gif")));
  await Deno.writeTextFile(join(dir, "broken.gif"), "GIF89a but not really");
  await Deno.writeTextFile(join(dir, "broken.txt"), "a broken clip");
}

/** A tiny run's config (motion from the tiny MotionAdapter, 32x32, 4 frames, f32). */
function tinyConfig(clips: string, out: string, extra = "", steps = 6): TrainConfig {
  return parseTrainConfig(`
pretrained_model_path: ${TINY}model
motion_module: ${TINY}motion_adapter
output_dir: ${out}
train_data: {video_folder: ${clips}, sample_size: 32, sample_stride: 1, sample_n_frames: 4}
learning_rate: 1.e-3
lr_scheduler: cosine
lr_warmup_steps: 2
cfg_random_null_text_ratio: 0.3
max_train_steps: ${steps}
seed: 3
${extra}`).config;
}

async function tensorsOf(path: string): Promise<Map<string, Float32Array>> {
  const f = await openSafetensors(path);
  try {
    const out = new Map<string, Float32Array>();
    for (const [name, t] of f.tensors) out.set(name, (await t.read()) as Float32Array);
    return out;
  } finally {
    f.close();
  }
}

gpuTest("train run: checkpoints, loss.csv, plot, validation GIF, final weights", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeClips(join(dir, "clips"));
    const config = tinyConfig(
      join(dir, "clips"),
      join(dir, "out"),
      "checkpointing_steps: 2\nvalidation_steps: 4\n" +
        "validation_data: {prompts: [a red square moving right], num_inference_steps: 2, video_length: 3}",
      4,
    );
    const events: TrainEvent[] = [];
    const r = await runTraining(config, { onEvent: (e) => events.push(e), gpu: await testGpu() });
    const out = join(dir, "out");
    // Bad data: each bad clip reported once, with its path.
    const bad = events.filter((e) => e.type === "bad-data").map((e) => e.path).sort();
    assertEquals(bad, [join(dir, "clips/broken.gif"), join(dir, "clips/uncaptioned.gif")]);
    const steps = events.filter((e) => e.type === "step");
    assertEquals(steps.map((e) => e.step), [1, 2, 3, 4]);
    for (const e of steps) {
      assert(Number.isFinite(e.loss) && e.loss > 0 && e.itPerSec > 0, JSON.stringify(e));
    }
    assertEquals(steps.at(-1)!.type === "step" && steps.at(-1)!.etaMs, 0);
    assertEquals(r.steps, 4);
    assert(!r.interrupted, "not interrupted");
    assertEquals(r.checkpoints, [2, 4].map((s) => join(out, "checkpoints", checkpointName(s))));
    for (const c of r.checkpoints) {
      for (const f of ["trainer.safetensors", "motion_module.safetensors", "data.json"]) {
        assert(await Deno.stat(join(c, f)).catch(() => null), `${c}/${f}`);
      }
    }
    assertEquals(await latestCheckpoint(out), r.checkpoints[1]);
    // loss.csv: a header and one row per step; lr follows the warm-up then the cosine.
    const csv = (await Deno.readTextFile(join(out, "loss.csv"))).trim().split("\n");
    assertEquals(csv[0], "step,loss,grad_norm,lr,seconds");
    const rows = csv.slice(1).map((l) => l.split(",").map(Number));
    assertEquals(rows.map((x) => x[0]), [1, 2, 3, 4]);
    assert(rows.every((x) => x.every(Number.isFinite)), csv.join("\n"));
    assertEquals(rows.map((x) => x[3]), [0, 5e-4, 1e-3, 5e-4]);
    assertEquals(rows.map((x) => x[1]), steps.map((e) => e.type === "step" ? e.loss : 0));
    assertEquals(decodePng(await Deno.readFile(join(out, "loss.png"))).width, 320);
    // The validation GIF: video_length frames at sample_size.
    assertEquals(r.samples, [join(out, "samples/step-000004/0-a-red-square-moving-right.gif")]);
    const gif = decodeGif(await Deno.readFile(r.samples[0]));
    assertEquals([gif.frames.length, gif.width, gif.height], [3, 32, 32]);
    // The final weights: a motion module in the original layout that loads, as at step 4.
    assertEquals(r.weights, join(out, "motion_module.safetensors"));
    const motion = await loadMotionModule(r.weights!, { config: `${TINY}motion_adapter` });
    motion.close();
    const final = await tensorsOf(r.weights!);
    const atFour = await tensorsOf(join(r.checkpoints[1], "motion_module.safetensors"));
    assert(final.size > 0 && [...final.keys()].every((k) => !k.startsWith("module.")), "keys");
    assert([...final.keys()].some((k) => k.endsWith("pos_encoder.pe")), "pe tables saved");
    for (const [k, v] of final) assert(v.every((x, i) => Object.is(x, atFour.get(k)![i])), k);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("train run: stopped by its signal and resumed ends bit-identical", async () => {
  const dir = await Deno.makeTempDir();
  const gpu = await testGpu();
  try {
    await writeClips(join(dir, "clips"));
    const clips = join(dir, "clips");
    const whole = await runTraining(tinyConfig(clips, join(dir, "whole")), { gpu });
    // Stopped after step 3 (Ctrl-C's path): a checkpoint, no final weights.
    const stop = new AbortController();
    const first = await runTraining(tinyConfig(clips, join(dir, "split")), {
      gpu,
      signal: stop.signal,
      onEvent: (e) => e.type === "step" && e.step === 3 && stop.abort(),
    });
    assert(first.interrupted && first.weights === null, JSON.stringify(first));
    assertEquals(first.steps, 3);
    assertEquals(first.checkpoints, [join(dir, "split/checkpoints/step-000003")]);
    const events: TrainEvent[] = [];
    const second = await runTraining(
      tinyConfig(clips, join(dir, "split"), "resume_from_checkpoint: latest"),
      { gpu, onEvent: (e) => events.push(e) },
    );
    assertEquals(second.resumedFrom, 3);
    assertEquals(events.filter((e) => e.type === "step").map((e) => e.step), [4, 5, 6]);
    const a = await tensorsOf(whole.weights!), b = await tensorsOf(second.weights!);
    assertEquals([...a.keys()], [...b.keys()]);
    for (const [k, v] of a) {
      const w = b.get(k)!;
      assert(v.every((x, i) => Object.is(x, w[i])), `${k} differs after resuming`);
    }
    const losses = async (d: string) =>
      (await Deno.readTextFile(join(dir, d, "loss.csv"))).trim().split("\n")
        .map((l) => l.split(",").slice(0, 4).join(","));
    assertEquals(await losses("split"), await losses("whole"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
