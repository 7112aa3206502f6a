/**
 * The training memory plan (engine/training/memory.ts) of the paper's setting: the full-size SD1.5
 * UNet with AnimateDiff v2 motion modules, one clip of 16 frames at 256 x 256, f32. Shapes only:
 * nothing is loaded and nothing dispatched (a virtual Gpu), so this runs without an adapter.
 */

import { planTraining, type TrainingPlan } from "../../../engine/training/memory.ts";
import { ARCHITECTURE } from "../../../engine/models/architecture.ts";
import { fmtBytes } from "../../../kernels/gpu/device.ts";
import { numel } from "../../../kernels/gpu/tensor.ts";
import { ANIMATEDIFF_V2_CONFIG } from "../../../weights/model_config.ts";
import { assert, assertEquals } from "../../assert.ts";

/** A 24 GB GPU (decimal, as vendors count). */
const BUDGET = 24e9;

function plan(gradientCheckpointing: boolean, precision?: "f16"): Promise<TrainingPlan> {
  return planTraining({
    train: "motion",
    precision,
    motion: ANIMATEDIFF_V2_CONFIG,
    gradientCheckpointing,
    batch: 1,
    frames: 16,
    width: 256,
    height: 256,
    budgetBytes: BUDGET,
  });
}

function describe(p: TrainingPlan): string {
  const s = Object.entries(p.stages).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(", ");
  return `peak ${fmtBytes(p.peakBytes)}, working set ${fmtBytes(p.workingSetBytes)} (${s})`;
}

Deno.test("training plan: SD1.5 + AnimateDiff v2, 16 x 256 x 256 f32 fits 24 GB with checkpointing", async () => {
  const on = await plan(true);
  const off = await plan(false);
  // The trained parameters are the motion modules' (the position tables are buffers).
  let trainable = 0;
  for (const [name, shape] of ARCHITECTURE.motion(ANIMATEDIFF_V2_CONFIG)) {
    if (!name.endsWith(".pos_embed.pe")) trainable += numel(shape);
  }
  for (const p of [on, off]) {
    assertEquals(p.trainableParameters, trainable);
    assertEquals(p.optimizerBytes, 8 * trainable);
    // Weights, AdamW's m and v and the gradients are all held at the end of the backward.
    assert(p.stages.backward >= p.weightsBytes + p.optimizerBytes + p.gradientBytes, describe(p));
    assertEquals(p.peakBytes, Math.max(...Object.values(p.stages)));
    assert(p.workingSetBytes <= p.peakBytes, describe(p));
  }
  assertEquals(on.weightsBytes, off.weightsBytes);
  assert(on.fits && on.peakBytes <= BUDGET, `with checkpointing: ${describe(on)} > 24 GB`);
  assert(
    off.stages.forward - on.stages.forward > 5e9,
    `checkpointing should keep far less for the backward: ${describe(on)} vs ${describe(off)}`,
  );
});

Deno.test("training plan: mixed precision needs far less than f32 (f16 weights and activations)", async () => {
  const f32 = await plan(true), f16 = await plan(true, "f16");
  assertEquals(f16.precision, "f16");
  // Frozen weights halve; the f32 master copy, AdamW's m and v stay f32.
  assertEquals(f16.weightsBytes * 2, f32.weightsBytes);
  assertEquals(f16.optimizerBytes, f32.optimizerBytes);
  assert(f16.peakBytes < 0.8 * f32.peakBytes, `f16 ${describe(f16)} vs f32 ${describe(f32)}`);
});
