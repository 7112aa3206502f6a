/**
 * Motion scale and motion effect (AnimateDiff-Evolved's scale_multival / effect_multival)
 * against ../shared/fixtures/phase2-tiny (`motion.*`): one UNet forward with each, and whole
 * guided DDIM runs through generate's own path (generateLatents + decode).
 */

import { assert, assertRejects, assertRelClose } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { buildUnet } from "./models/parts.ts";
import { toChannelMajor, toFrameMajor } from "../../engine/latents.ts";
import {
  assertRunMatches,
  phase2,
  phase2Ints,
  phase2Pipeline,
  phase2Request,
  phase2Settings,
} from "./phase2.ts";

const F = 8, H = 8, W = 8;

gpuTest("motion scale and motion effect: UNet outputs match the phase-2 fixture", async (gpu) => {
  const s = await phase2Settings("motion");
  const sample = await phase2("motion.unet.sample");
  const ctx = await phase2("motion.unet.encoder_hidden_states");
  const [t] = await phase2Ints("motion.unet.timestep");
  const { unet, dispose } = await buildUnet(gpu, true);
  try {
    const x = gpu.upload(toFrameMajor(sample, F, H, W), [F, 4, H, W]);
    const c = gpu.upload(ctx, [1, 77, 32]);
    const run = async (scale: number, effect: number) => {
      const out = unet.forward(gpu, x, t, c, F, { scale, effect });
      const got = toChannelMajor(await gpu.read(out), F, H, W);
      out.release();
      return got;
    };
    const base = await run(1, 1);
    assertRelClose(base, await phase2("motion.unet.out_base"), 1e-3, "s = 1, e = 1");
    const scaled = await run(s.scale as number, 1);
    assertRelClose(scaled, await phase2("motion.unet.out_scale"), 1e-3, `s = ${s.scale}`);
    for (const e of s.effects as number[]) {
      const name = `motion.unet.out_effect_${String(e).replace(".", "p")}`;
      assertRelClose(await run(1, e), await phase2(name), 1e-3, `e = ${e}`);
    }
    // The controls change the output (the fixture would not tell apart a no-op otherwise).
    assert(scaled.some((v, i) => Math.abs(v - base[i]) > 1e-3), "scale changes the output");
    // e = 0: no motion at all, the UNet without its motion modules' contribution.
    const none = await run(1, 0);
    const plain = await buildUnet(gpu, false);
    try {
      const out = plain.unet.forward(gpu, x, t, c, F);
      assertRelClose(none, toChannelMajor(await gpu.read(out), F, H, W), 1e-4, "e = 0");
      out.release();
    } finally {
      plain.dispose();
    }
    x.release();
    c.release();
  } finally {
    dispose();
  }
});

gpuTest(
  "motion scale and motion effect: whole guided DDIM runs match the phase-2 fixture",
  async () => {
    const s = await phase2Settings("motion");
    const p = s.pipeline as Record<string, unknown>;
    const pipe = await phase2Pipeline();
    try {
      const request = phase2Request(p);
      const initialLatents = await phase2("motion.pipe.latents_init");
      // Motion scale for the whole run: every step's latents, the final latents and the frames.
      const steps: Float32Array[] = [];
      const latents = await pipe.generateLatents(
        { ...request, motionScale: s.scale as number },
        { initialLatents, onStepLatents: (_, l) => steps.push(l) },
      );
      await assertRunMatches(pipe, { latents, steps, frames: request.frames }, "motion.pipe.scale");
      // Motion effect for the whole run.
      const effect = await pipe.generateLatents(
        { ...request, motionEffect: p.effect_run as number },
        { initialLatents },
      );
      assertRelClose(effect, await phase2("motion.pipe.effect.latents"), 2e-3, "effect latents");
      // Bad values are one-line errors naming the field.
      for (
        const [bad, re] of [
          [{ motionScale: 0 }, /^motionScale must be a number above 0 and at most 10, got 0$/],
          [{ motionScale: Number.NaN }, /^motionScale must be/],
          [{ motionEffect: -0.5 }, /^motionEffect must be a number from 0 to 10, got -0.5$/],
          [{ motionEffect: 11 }, /^motionEffect must be/],
        ] as const
      ) {
        await assertRejects(() => pipe.generateLatents({ ...request, ...bad }), re);
      }
    } finally {
      pipe.dispose();
    }
  },
);
