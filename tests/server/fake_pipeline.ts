/**
 * Test doubles for the HTTP service: a fake pipeline loader (no GPU; steps take `stepMs`, honour
 * the abort signal between steps, and produce solid-colour frames) and a temporary models
 * directory built from the tiny fixtures.
 */

import { join } from "node:path";
import type {
  GenerateOptions,
  GenerateRequest,
  PipelineOptions,
} from "../../engine/pipeline_types.ts";
import type { PipelineLoader, ServedAnimation, ServedPipeline } from "../../server/queue.ts";

/** What the fake loader saw. */
export interface FakeLog {
  loads: PipelineOptions[];
  disposed: number;
  generates: GenerateRequest[];
  /** Denoising steps actually run, per generate call. */
  stepsRun: number[];
  /** Most generate calls in flight at once (must stay 1: one GPU worker). */
  maxConcurrent: number;
}

/** Options of {@link fakeLoader}. */
export interface FakeOptions {
  stepMs?: number;
  loadMs?: number;
  /** Prompts containing this make generate() throw. */
  failOn?: string;
  /** Model paths containing this make the loader throw. */
  failLoadOn?: string;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** A fake engine: records calls in `log`. */
export function fakeLoader(options: FakeOptions = {}): { load: PipelineLoader; log: FakeLog } {
  const log: FakeLog = { loads: [], disposed: 0, generates: [], stepsRun: [], maxConcurrent: 0 };
  let inFlight = 0;
  const load: PipelineLoader = async (opts) => {
    const { onProgress: _drop, ...rest } = opts;
    log.loads.push(rest);
    opts.onProgress?.({ stage: "load", step: 0, total: 1, elapsedMs: 0 });
    await sleep(options.loadMs ?? 0);
    if (options.failLoadOn && opts.model?.includes(options.failLoadOn)) {
      throw new Error(`cannot open ${opts.model}: fake load failure`);
    }
    opts.onProgress?.({ stage: "load", step: 1, total: 1, elapsedMs: 1 });
    const pipeline: ServedPipeline = {
      info: {
        model: opts.model ?? "demo",
        motionModule: opts.motionModule ?? "demo",
        motionVersion: "v2",
        maxFrames: 32,
        precision: "f32",
        adapter: "fake adapter",
        demo: false,
      },
      async generate(req: GenerateRequest, g: GenerateOptions = {}): Promise<ServedAnimation> {
        log.generates.push(req);
        inFlight++;
        log.maxConcurrent = Math.max(log.maxConcurrent, inFlight);
        const index = log.stepsRun.push(0) - 1;
        try {
          const steps = req.steps ?? 25, t0 = performance.now();
          for (let i = 0; i < steps; i++) {
            if (g.signal?.aborted) throw new DOMException("generation cancelled", "AbortError");
            await sleep(options.stepMs ?? 1);
            log.stepsRun[index]++;
            // A preview like the engine's: frames at 1/8 size, one grey level per step.
            const pw = Math.max(1, (req.width ?? 512) / 8),
              ph = Math.max(1, (req.height ?? 512) / 8);
            g.onPreview?.({
              step: i + 1,
              total: steps,
              frames: Array.from({ length: req.frames ?? 16 }, () => ({
                data: new Uint8ClampedArray(pw * ph * 4).fill(10 * (i + 1)),
                width: pw,
                height: ph,
              })),
            });
            g.onProgress?.({
              stage: "denoise",
              step: i + 1,
              total: steps,
              elapsedMs: performance.now() - t0,
            });
            if (options.failOn && req.prompt.includes(options.failOn)) {
              throw new Error(`fake engine failure at step ${i + 1}`);
            }
          }
          const w = req.width ?? 512, h = req.height ?? 512, n = req.frames ?? 16;
          const frames = Array.from({ length: n }, (_, k) => {
            const data = new Uint8ClampedArray(w * h * 4);
            for (let p = 0; p < w * h; p++) data.set([(k * 30) & 255, 100, 200, 255], p * 4);
            return { data, width: w, height: h };
          });
          return {
            frames,
            width: w,
            height: h,
            fps: req.fps ?? 8,
            seed: req.seed ?? 0,
            timings: {},
          };
        } finally {
          inFlight--;
        }
      },
      dispose() {
        log.disposed++;
      },
    };
    return pipeline;
  };
  return { load, log };
}

const FIXTURES = new URL("../fixtures/tiny/", import.meta.url);

/**
 * A temporary models directory linking the tiny fixtures: checkpoints/tiny (diffusers folder),
 * checkpoints/sd15.safetensors + sd15.config/ (single file with a config folder),
 * motion_modules/tiny_motion (MotionAdapter folder), motion_modules/mm_v2.safetensors,
 * loras/lora_kohya.safetensors, loras/lora_peft.safetensors, plus a stray notes.txt.
 */
export async function makeModelsDir(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "zoetrope_models_" });
  const fx = (p: string) => new URL(p, FIXTURES).pathname;
  for (const d of ["checkpoints", "motion_modules", "loras"]) await Deno.mkdir(join(root, d));
  await Deno.symlink(fx("model"), join(root, "checkpoints", "tiny"));
  await Deno.symlink(
    fx("single_file/sd15.safetensors"),
    join(root, "checkpoints", "sd15.safetensors"),
  );
  await Deno.symlink(fx("model"), join(root, "checkpoints", "sd15.config"));
  await Deno.writeTextFile(join(root, "checkpoints", "notes.txt"), "not a model");
  await Deno.symlink(fx("motion_adapter"), join(root, "motion_modules", "tiny_motion"));
  await Deno.symlink(
    fx("single_file/motion_module.safetensors"),
    join(root, "motion_modules", "mm_v2.safetensors"),
  );
  await Deno.symlink(
    fx("lora/lora_kohya.safetensors"),
    join(root, "loras", "lora_kohya.safetensors"),
  );
  await Deno.symlink(
    fx("lora/pytorch_lora_weights.safetensors"),
    join(root, "loras", "lora_peft.safetensors"),
  );
  return root;
}

/** A small valid request for the models directory of {@link makeModelsDir}. */
export const SMALL_REQUEST = {
  prompt: "a corgi on the beach",
  model: "tiny",
  motionModule: "tiny_motion",
  frames: 4,
  width: 64,
  height: 64,
  steps: 3,
  seed: 7,
} as const;
