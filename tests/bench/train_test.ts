import { benchBatch, benchShape, parseTrainArgs, summarize } from "../../bench/train.ts";
import { assert, assertClose, assertEquals, assertRejects } from "../assert.ts";

Deno.test("bench:train options: defaults, flags, = form and errors", async () => {
  assertEquals(parseTrainArgs([]), {
    train: "motion",
    full: false,
    batch: 1,
    steps: 5,
    warmup: 1,
    pixels: false,
    checkpointing: false,
    lr: 1e-4,
    seed: 0,
    help: false,
  });
  const o = parseTrainArgs([
    "--full",
    "--train=motion",
    "--model",
    "m.safetensors",
    "--motion-module=new",
    "--frames",
    "16",
    "--size=256",
    "--batch",
    "2",
    "--steps",
    "10",
    "--warmup=0",
    "--pixels",
    "--checkpointing",
    "--lr",
    "3e-5",
    "--seed",
    "7",
    "--json",
    "out.json",
  ]);
  // (assertEquals compares JSON: keys in the order the parser sets them)
  assertEquals(o, {
    train: "motion",
    full: true,
    batch: 2,
    steps: 10,
    warmup: 0,
    pixels: true,
    checkpointing: true,
    lr: 3e-5,
    seed: 7,
    help: false,
    model: "m.safetensors",
    motionModule: "new",
    frames: 16,
    size: 256,
    json: "out.json",
  });
  assertEquals(parseTrainArgs(["--train", "unet"]).train, "unet");
  assertEquals(parseTrainArgs(["-h"]).help, true);
  const bad: [string[], RegExp][] = [
    [["--train", "vae"], /--train must be motion or unet, got "vae"/],
    [["--steps", "0"], /--steps must be an integer >= 1, got "0"/],
    [["--warmup", "-1"], /--warmup must be an integer >= 0/],
    [["--batch=1.5"], /--batch must be an integer >= 1, got "1.5"/],
    [["--size", "100"], /--size must be a multiple of 8, got 100/],
    [["--lr", "fast"], /--lr must be a number >= 0/],
    [["--json"], /--json needs a value/],
    [["--full=yes"], /--full takes no value/],
    [["--checkpointing=1"], /--checkpointing takes no value/],
    [["--fast"], /unknown argument "--fast"/],
    [["--train", "unet", "--frames", "4"], /--frames must be 1 or absent/],
    [["--train", "unet", "--motion-module", "x"], /only for --train motion/],
  ];
  for (const [args, re] of bad) await assertRejects(() => parseTrainArgs(args), re);
});

Deno.test("bench:train shape: tiny 8x64, full 16x256 on a GPU, 2x64 on a software adapter", () => {
  const gpu = { isFallback: false }, sw = { isFallback: true };
  const shape = (args: string[], a: { isFallback: boolean }) => {
    const { frames, size } = benchShape(parseTrainArgs(args), a);
    return [frames, size];
  };
  assertEquals(shape([], sw), [8, 64]);
  assertEquals(shape([], gpu), [8, 64]);
  assertEquals(shape(["--full"], gpu), [16, 256]);
  assertEquals(shape(["--full"], sw), [2, 64]);
  assertEquals(benchShape(parseTrainArgs(["--full"]), sw).label, "reduced shape: software adapter");
  assertEquals(benchShape(parseTrainArgs(["--full", "--size", "128"]), sw).label, "");
  assertEquals(shape(["--full", "--frames", "4", "--size", "128"], sw), [4, 128]);
  assertEquals(shape(["--train", "unet", "--full"], gpu), [1, 256]);
});

Deno.test("bench:train summary: median, throughput at the median, loss slope", () => {
  const s = summarize([1000, 3000], [1, 0.5], { batch: 2, frames: 8 });
  assertClose([s.medianS, s.meanS, s.samplesPerS, s.framesPerS, s.lossSlope], [2, 2, 1, 8, -0.5], {
    atol: 1e-12,
    rtol: 0,
  });
  const t = summarize([4000, 1000, 2000], [3, 2, 2, 1], { batch: 1, frames: 16 });
  assertClose([t.medianS, t.meanS, t.framesPerS, t.lossSlope], [2, 7 / 3, 8, -0.6], {
    atol: 1e-12,
    rtol: 0,
  });
  assertEquals(summarize([500], [1], { batch: 1, frames: 1 }).lossSlope, 0);
});

Deno.test("bench:train batch: seeded latents or pixels in the trainer's layouts", () => {
  const motion = parseTrainArgs(["--batch", "2", "--seed", "3"]);
  const a = benchBatch(motion, { frames: 4, size: 64 });
  assertEquals(a.latents!.shape, [2, 4, 4, 8, 8]);
  assertEquals(a.noise!.shape, [2, 4, 4, 8, 8]);
  assertEquals(a.prompts!.length, 2);
  assertEquals(a.timesteps!.length, 2);
  assert(a.timesteps!.every((t) => Number.isInteger(t) && t >= 0 && t < 1000), `${a.timesteps}`);
  assertEquals(benchBatch(motion, { frames: 4, size: 64 }), a, "same seed, same batch");
  const other = benchBatch({ ...motion, seed: 4 }, { frames: 4, size: 64 });
  assert(other.noise!.data[0] !== a.noise!.data[0], "another seed, other noise");
  const img = benchBatch(parseTrainArgs(["--train", "unet", "--pixels"]), { frames: 1, size: 32 });
  assertEquals(img.latents, undefined);
  assertEquals(img.pixels!.shape, [1, 3, 32, 32]);
  assertEquals(img.noise!.shape, [1, 4, 4, 4]);
  assertEquals(img.posteriorNoise!.shape, [1, 4, 4, 4]);
  assert(img.pixels!.data.every((v) => v >= -1 && v <= 1), "pixels in [-1, 1]");
  const clip = benchBatch(parseTrainArgs(["--pixels"]), { frames: 3, size: 16 });
  assertEquals(clip.pixels!.shape, [1, 3, 3, 16, 16]);
  assertEquals(clip.posteriorNoise!.shape, [3, 4, 2, 2]);
});
