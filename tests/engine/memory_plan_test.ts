/**
 * The memory plan, and generation on adapters with small limits: on the tiny fixture model the
 * planned peak is the measured one, work split over binding-sized windows gives the same latents
 * as one launch per op, the two classifier-free guidance passes give the same latents batched or
 * one after the other, requests that cannot fit fail before running with one line saying what
 * would, and tiled VAE decoding blends tiles as diffusers' tiled_decode.
 */

import { assert, assertEquals } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { type AnimationPipeline, loadPipeline, planGeneration } from "../../engine/pipeline.ts";
import { setCfgSplitOverride } from "../../engine/noise.ts";
import type { GenerateRequest, PipelineOptions } from "../../engine/pipeline_types.ts";
import type { Gpu, RuntimeLimits } from "../../kernels/gpu/device.ts";
import { EngineLimitError } from "../../kernels/gpu/errors.ts";
import { decodeTiled } from "../../engine/vae_tiling.ts";
import type { VaeDecoder } from "../../engine/models/vae.ts";
import { resizeNearest } from "../../kernels/resample.ts";
import { FIXTURE } from "./models/parts.ts";

const MODEL: PipelineOptions = {
  model: FIXTURE + "model",
  motionModule: FIXTURE + "motion_adapter",
};
const REQUEST: GenerateRequest = {
  prompt: "a castle on a hill",
  negativePrompt: "blurry",
  frames: 8,
  width: 64,
  height: 64,
  steps: 3,
  seed: 7,
};
/** GPUs' usual binding offset alignment (lavapipe's own is 32). */
const ALIGN = 256;
/** A binding limit above the tiny model's largest weight (295 KB) that splits its activations. */
const LIMIT = 320 * 1024;

async function withLimits<T>(
  gpu: Gpu,
  limits: Partial<RuntimeLimits>,
  fn: () => Promise<T>,
): Promise<T> {
  gpu.setLimits({ minStorageBufferOffsetAlignment: ALIGN, ...limits });
  try {
    return await fn();
  } finally {
    gpu.setLimits();
  }
}

async function withPipeline<T>(
  gpu: Gpu,
  options: PipelineOptions,
  fn: (pipe: AnimationPipeline) => Promise<T>,
): Promise<T> {
  const pipe = await loadPipeline({ ...MODEL, ...options, device: gpu });
  try {
    return await fn(pipe);
  } finally {
    pipe.dispose();
  }
}

/** Runs a generation and returns the pool's measured peak (bytes held, free ones included). */
async function measuredPeak(gpu: Gpu, run: () => Promise<unknown>): Promise<number> {
  await gpu.sync();
  gpu.pool.trim();
  gpu.pool.resetPeak();
  await run();
  return gpu.pool.stats().peakAllocatedBytes;
}

function assertSameArray(a: Float32Array, b: Float32Array, what: string): void {
  assertEquals(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) throw new Error(`${what}: element ${i}: ${a[i]} vs ${b[i]}`);
  }
}

gpuTest(
  "memory plan: planned activations are the measured peak, whole and chunked",
  async (gpu) => {
    for (const limits of [{}, { maxStorageBufferBindingSize: LIMIT }]) {
      await withLimits(gpu, limits, () =>
        withPipeline(gpu, {}, async (pipe) => {
          const request = { ...REQUEST, width: 128, height: 128, frames: 4 };
          const plan = await pipe.plan(request);
          assert(plan.fits, `tiny request fits (${plan.reason})`);
          assert(plan.weightsBytes > 0 && plan.activationsBytes > 0, JSON.stringify(plan));
          assertEquals(plan.peakBytes, plan.weightsBytes + plan.activationsBytes);
          const peak = await measuredPeak(gpu, () => pipe.generate(request));
          assertEquals(
            plan.activationsBytes,
            peak,
            `planned vs measured, limits ${JSON.stringify(limits)}`,
          );
          assert(plan.stages.denoise >= plan.stages.encode, "denoising holds more than encoding");
        }));
    }
  },
);

gpuTest(
  "memory plan: a video input's VAE encoder pass and weights are planned as measured",
  async (gpu) => {
    await withLimits(gpu, {}, () =>
      withPipeline(gpu, {}, async (pipe) => {
        const size = 128;
        const frame = {
          data: new Uint8ClampedArray(size * size * 4).map((_, i) => (i * 37) % 256),
          width: size,
          height: size,
        };
        const plain = {
          ...REQUEST,
          width: size,
          height: size,
          frames: 4,
          scheduler: "ddim" as const,
        };
        const v2v = { ...plain, video: [frame, frame, frame, frame], strength: 0.7 };
        const plainPlan = await pipe.plan(plain);
        const plan = await pipe.plan(v2v);
        assert(plan.fits, `fits (${plan.reason})`);
        const before = gpu.persistentBytes;
        const peak = await measuredPeak(gpu, () => pipe.generate(v2v));
        const encoderWeights = gpu.persistentBytes - before;
        assert(encoderWeights > 0, "the run bound the encoder");
        assertEquals(plan.weightsBytes - plainPlan.weightsBytes, encoderWeights, "encoder weights");
        assertEquals(plan.activationsBytes, peak, "planned vs measured activations");
        assert(
          plan.stages.encode > plainPlan.stages.encode,
          "the encoder pass is in the encode stage",
        );
      }));
  },
);

gpuTest("memory plan: small bindings give the same latents as whole launches", async (gpu) => {
  const request = { ...REQUEST, width: 128, height: 128 };
  const run = async () => {
    const before = gpu.recorder.counters.dispatches;
    const latents = await withPipeline(gpu, {}, (p) => p.generateLatents(request));
    return { latents, dispatches: gpu.recorder.counters.dispatches - before };
  };
  const whole = await run();
  const chunked = await withLimits(gpu, { maxStorageBufferBindingSize: LIMIT }, run);
  assertSameArray(chunked.latents, whole.latents, "latents, 320 KiB bindings vs adapter's");
  assert(whole.latents.every(Number.isFinite), "finite latents");
  // The UNet's activations (16 images x 32 channels x 16 x 16 x 4 bytes = 512 KiB) were split.
  assert(
    chunked.dispatches > whole.dispatches * 1.2,
    `chunked run dispatched ${chunked.dispatches}, whole ${whole.dispatches}`,
  );
});

gpuTest(
  "memory plan: CFG passes batched or one after the other give the same latents",
  async (gpu) => {
    const run = (split: boolean) => {
      setCfgSplitOverride(split);
      return withPipeline(gpu, {}, (p) => p.generateLatents(REQUEST)).finally(() =>
        setCfgSplitOverride(null)
      );
    };
    const joint = await run(false), split = await run(true);
    assertSameArray(split, joint, "latents, split vs batched guidance");
  },
);

gpuTest("memory plan: frames too large for a binding decode in blended tiles", async (gpu) => {
  const request = { ...REQUEST, frames: 2, width: 128, height: 128, steps: 2 };
  await withLimits(
    gpu,
    { maxStorageBufferBindingSize: 512 * 1024 },
    () =>
      withPipeline(gpu, {}, async (pipe) => {
        const plan = await pipe.plan(request);
        assert(plan.fits, `fits in tiles (${plan.reason})`);
        assertEquals(plan.decodeTiles, 9, "a 16x16 latent in 8x8 tiles, stride 6");
        const peak = await measuredPeak(gpu, async () => {
          const anim = await pipe.generate(request);
          assertEquals(anim.frames.length, 2);
          assertEquals([anim.width, anim.height], [128, 128]);
        });
        assertEquals(plan.activationsBytes, peak, "planned vs measured with tiles");
      }),
  );
});

gpuTest(
  "memory plan: a request that cannot fit fails before running, saying what would",
  async (gpu) => {
    // The motion module's GroupNorm needs a whole video in one binding: 8 frames x 32 channels x
    // 32 x 32 latent pixels x 4 bytes = 1 MiB at 256x256, more than a 320 KiB binding.
    const request = { ...REQUEST, width: 256, height: 256 };
    await withLimits(
      gpu,
      { maxStorageBufferBindingSize: LIMIT },
      () =>
        withPipeline(gpu, {}, async (pipe) => {
          const plan = await pipe.plan(request);
          assert(!plan.fits, "does not fit");
          assert(plan.reason && !plan.reason.includes("\n"), `one line: ${plan.reason}`);
          assert(
            /^8 frames at 256x256 in f32 cannot run on this adapter \(.+\); would fit: /.test(
              plan.reason,
            ),
            plan.reason,
          );
          assert(/\d+ frames/.test(plan.reason) && /\d+x\d+/.test(plan.reason), plan.reason);
          const dispatches = gpu.recorder.counters.dispatches;
          let err: unknown = null;
          try {
            await pipe.generate(request);
          } catch (e) {
            err = e;
          }
          assert(err instanceof EngineLimitError, String(err));
          assertEquals(err.message, plan.reason);
          assertEquals(gpu.recorder.counters.dispatches, dispatches, "nothing ran on the GPU");
        }),
    );
  },
);

gpuTest("memory plan: a memory budget below the plan is refused with what fits", async (gpu) => {
  const plan = await withPipeline(gpu, {}, (p) => p.plan(REQUEST));
  await withPipeline(gpu, { maxMemory: plan.peakBytes - 1 }, async (pipe) => {
    const tight = await pipe.plan(REQUEST);
    assertEquals(tight.budgetBytes, plan.peakBytes - 1);
    assert(!tight.fits, "over budget");
    assert(
      /need .* of GPU memory, more than the .* budget; would fit: /.test(tight.reason!),
      tight.reason,
    );
    const fewer = await pipe.plan({ ...REQUEST, frames: 2 });
    assert(fewer.fits && fewer.peakBytes < plan.peakBytes, "2 frames fit the same budget");
    let err: unknown = null;
    try {
      await pipe.generate(REQUEST);
    } catch (e) {
      err = e;
    }
    assert(err instanceof EngineLimitError && /budget/.test(err.message), String(err));
  });
});

gpuTest(
  "memory plan: planGeneration reads no weights and matches the loaded pipeline's",
  async (gpu) => {
    const dry = await planGeneration({ ...MODEL, device: gpu }, REQUEST);
    const loaded = await withPipeline(gpu, {}, (p) => p.plan(REQUEST));
    assertEquals(dry.peakBytes, loaded.peakBytes);
    assertEquals(dry.stages, loaded.stages);
    assertEquals(dry.adapter, gpu.info.name);
  },
);

gpuTest("tiled decode: tiles blend and crop as diffusers' tiled_decode", async (gpu) => {
  // A stand-in decoder (nearest 8x upsampling, on the GPU) and the same algorithm written
  // plainly from diffusers' tiled_decode / blend_v / blend_h on the CPU.
  const [h, w, T] = [13, 10, 8];
  const z = new Float32Array(4 * h * w).map((_, i) => Math.sin(i * 0.37) + (i % 7) * 0.1);
  const stub = {
    forward: (g: Gpu, t: { shape: readonly number[] }) =>
      resizeNearest(g, t as never, 8 * t.shape[2], 8 * t.shape[3]),
  } as unknown as VaeDecoder;
  const zt = gpu.upload(z, [1, 4, h, w]);
  const got = await decodeTiled(gpu, stub, zt, T);
  zt.release();
  const want = referenceTiledDecode(z, h, w, T);
  assertSameArray(got, want, "tiled decode (the stub's first 3 channels)");
});

/** diffusers' AutoencoderKL.tiled_decode with a decoder that upsamples 8x (nearest). */
function referenceTiledDecode(z: Float32Array, h: number, w: number, T: number): Float32Array {
  const C = 3, S = 8;
  const overlap = Math.floor(T * 0.75), blend = Math.floor(T * S * 0.25), limit = T * S - blend;
  const decode = (i: number, j: number) => {
    const th = Math.min(T, h - i), tw = Math.min(T, w - j);
    const t = { h: th * S, w: tw * S, d: new Float32Array(C * th * S * tw * S) };
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < t.h; y++) {
        for (let x = 0; x < t.w; x++) {
          t.d[(c * t.h + y) * t.w + x] =
            z[(c * h + i + Math.floor(y / S)) * w + j + Math.floor(x / S)];
        }
      }
    }
    return t;
  };
  type T3 = ReturnType<typeof decode>;
  const rows: T3[][] = [];
  for (let i = 0; i < h; i += overlap) {
    const row: T3[] = [];
    for (let j = 0; j < w; j += overlap) row.push(decode(i, j));
    rows.push(row);
  }
  const blendV = (a: T3, b: T3) => {
    const e = Math.min(a.h, b.h, blend);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < e; y++) {
        for (let x = 0; x < b.w; x++) {
          b.d[(c * b.h + y) * b.w + x] = a.d[(c * a.h + a.h - e + y) * a.w + x] * (1 - y / e) +
            b.d[(c * b.h + y) * b.w + x] * (y / e);
        }
      }
    }
  };
  const blendH = (a: T3, b: T3) => {
    const e = Math.min(a.w, b.w, blend);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < b.h; y++) {
        for (let x = 0; x < e; x++) {
          b.d[(c * b.h + y) * b.w + x] = a.d[(c * a.h + y) * a.w + a.w - e + x] * (1 - x / e) +
            b.d[(c * b.h + y) * b.w + x] * (x / e);
        }
      }
    }
  };
  const H = h * S, W = w * S;
  const out = new Float32Array(C * H * W);
  let y0 = 0;
  rows.forEach((row, i) => {
    let x0 = 0, rh = 0;
    row.forEach((t, j) => {
      if (i > 0) blendV(rows[i - 1][j], t);
      if (j > 0) blendH(row[j - 1], t);
      const ch = Math.min(limit, t.h), cw = Math.min(limit, t.w);
      for (let c = 0; c < C; c++) {
        for (let y = 0; y < ch; y++) {
          for (let x = 0; x < cw; x++) {
            out[(c * H + y0 + y) * W + x0 + x] = t.d[(c * t.h + y) * t.w + x];
          }
        }
      }
      x0 += cw;
      rh = ch;
    });
    y0 += rh;
  });
  return out;
}
