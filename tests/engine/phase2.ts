/**
 * Test helpers for the phase-2 fixtures (tests/fixtures/phase2-tiny, copied from
 * ../shared/fixtures/phase2-tiny): its goldens, its settings, and the frame criterion.
 */

import { assert, assertRelClose } from "../assert.ts";
import { type GoldenTensor, loadGoldens } from "../goldens.ts";
import { testGpu } from "../gpu.ts";
import { FIXTURE } from "./models/parts.ts";
import type { Frame } from "../../engine/output/frame.ts";
import { type AnimationPipeline, loadPipeline } from "../../engine/pipeline.ts";
import type { GenerateRequest, PipelineOptions } from "../../engine/pipeline_types.ts";
import { decode } from "../../engine/generate.ts";
import { toFrameMajor } from "../../engine/latents.ts";

/** The phase-2 fixture folder. */
export const PHASE2 = new URL("../fixtures/phase2-tiny/", import.meta.url);

/** Every phase-2 golden tensor. */
export function phase2Goldens(): Promise<Map<string, GoldenTensor>> {
  return loadGoldens(new URL("goldens.safetensors", PHASE2));
}

async function tensor(name: string, dtype: string): Promise<GoldenTensor["data"]> {
  const t = (await phase2Goldens()).get(name);
  if (!t) throw new Error(`phase2-tiny goldens: no tensor named "${name}"`);
  if (t.dtype !== dtype) {
    throw new Error(`phase2-tiny goldens: ${name} is ${t.dtype}, not ${dtype}`);
  }
  return t.data;
}

/** One phase-2 float golden's data (an error naming it when absent). */
export async function phase2(name: string): Promise<Float32Array> {
  return await tensor(name, "F32") as Float32Array;
}

/** One phase-2 int64 golden (timesteps) as numbers. */
export async function phase2Ints(name: string): Promise<number[]> {
  return [...await tensor(name, "I64") as BigInt64Array].map(Number);
}

let settings: Promise<Record<string, Record<string, unknown>>> | null = null;

/** `goldens.json`'s settings of one feature (`lcm`, `v2v`, `motion`, ...). */
export async function phase2Settings(feature: string): Promise<Record<string, unknown>> {
  settings ??= Deno.readTextFile(new URL("goldens.json", PHASE2)).then((t) =>
    JSON.parse(t).settings
  );
  return (await settings)[feature];
}

/**
 * The frame criterion: 99% of the channel values within 2/255 of the golden frames
 * ([1, F, H, W, 3] floats in [0, 1]) and the mean difference within 0.5/255.
 */
export function assertFramesMatch(frames: readonly Frame[], golden: Float32Array, what: string) {
  let n = 0, within = 0, sum = 0;
  frames.forEach((f, t) => {
    const hw = f.width * f.height;
    for (let i = 0; i < hw; i++) {
      for (let c = 0; c < 3; c++) {
        const want = Math.round(Math.min(1, Math.max(0, golden[(t * hw + i) * 3 + c])) * 255);
        const d = Math.abs(f.data[i * 4 + c] - want);
        if (d <= 2) within++;
        sum += d;
        n++;
      }
    }
  });
  assert(n === golden.length, `${what}: ${n} channel values, golden has ${golden.length}`);
  const share = within / n, mean = sum / n;
  assert(share >= 0.99, `${what}: ${(share * 100).toFixed(2)}% of values within 2/255 (< 99%)`);
  assert(mean <= 0.5, `${what}: mean difference ${mean.toFixed(3)}/255 (> 0.5)`);
}

/** The tiny fixture's pipeline (diffusers folders) on the test GPU, with `extra` options. */
export async function phase2Pipeline(extra: PipelineOptions = {}): Promise<AnimationPipeline> {
  return await loadPipeline({
    model: FIXTURE + "model",
    motionModule: FIXTURE + "motion_adapter",
    device: await testGpu(),
    ...extra,
  });
}

/** A request from a fixture's diffusers pipeline settings (prompt lists hold one prompt). */
export function phase2Request(s: Record<string, unknown>): GenerateRequest & { frames: number } {
  const first = (v: unknown) => (Array.isArray(v) ? v[0] : v) as string;
  return {
    prompt: first(s.prompt),
    negativePrompt: first(s.negative_prompt),
    frames: (s.num_frames as number | undefined) ?? 8,
    width: (s.width as number | undefined) ?? 64,
    height: (s.height as number | undefined) ?? 64,
    steps: s.num_inference_steps as number,
    guidance: s.guidance_scale as number,
    scheduler: "ddim",
    seed: 0,
  };
}

/**
 * A run's latents after each step (when given), its final latents (both within 2e-3 relative:
 * the fixtures' final latents are large) and its decoded frames (the issue's criterion) against
 * `<prefix>.step_latents`, `<prefix>.latents` and `<prefix>.frames`.
 */
export async function assertRunMatches(
  pipe: AnimationPipeline,
  run: { latents: Float32Array; steps?: Float32Array[]; frames: number },
  prefix: string,
): Promise<void> {
  if (run.steps) {
    const gold = await phase2(`${prefix}.step_latents`);
    const n = run.latents.length;
    assert(gold.length === run.steps.length * n, `${prefix}: ${run.steps.length} steps`);
    run.steps.forEach((l, i) =>
      assertRelClose(l, gold.subarray(i * n, (i + 1) * n), 2e-3, `${prefix} step ${i}`)
    );
  }
  assertRelClose(run.latents, await phase2(`${prefix}.latents`), 2e-3, `${prefix} latents`);
  const f = run.frames, hw = run.latents.length / (4 * f), side = Math.sqrt(hw);
  const t = pipe.gpu.upload(
    toFrameMajor(run.latents, f, side, side),
    [f, 4, side, side],
    pipe.dtype,
  );
  try {
    const frames = await decode(pipe, t, { frames: f, width: side * 8, height: side * 8 });
    assertFramesMatch(frames, await phase2(`${prefix}.frames`), `${prefix} frames`);
  } finally {
    t.release();
  }
}
