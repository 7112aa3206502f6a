/**
 * The memory plan of a generation: how much GPU memory a request needs on an adapter, in a
 * precision, before any of it runs. The plan is not a formula: the planner replays the request
 * on a virtual Gpu (kernels/gpu/device.ts, `Gpu.virtual`) with the adapter's limits, where
 * tensors have sizes but no memory and dispatches only check their operands. Every allocation,
 * every binding-sized split and every decision (VAE tiles) is the real run's, so the plan's peak
 * is what the buffer pool's counter reads after a real run.
 * @module
 */

import { fmtBytes, type GpuInfo } from "../kernels/gpu/device.ts";
import { EngineLimitError } from "../kernels/gpu/errors.ts";
import type { Precision, ProgressEvent } from "./pipeline_types.ts";
import { type BoundParts, type PipelineParts, virtualParts } from "./load.ts";
import type { ResolvedRequest } from "./request.ts";
import { denoise } from "./denoise.ts";
import { WeightStore } from "./weight_store.ts";
import { VaeEncoder } from "./models/vae.ts";
import { usesDirectGemm } from "../kernels/gemm_direct.ts";
import type { TensorMap } from "../weights/types.ts";
import { generate } from "./generate.ts";
import { pickDecodeTile } from "./vae_tiling.ts";

/**
 * What a request needs from the GPU, from {@link AnimationPipeline.plan} or
 * {@link planGeneration}.
 *
 * @example
 * ```ts
 * import { loadPipeline } from "@zoetrope/animatediff";
 *
 * const pipe = await loadPipeline();
 * const plan = await pipe.plan({ prompt: "rain", frames: 8, width: 64, height: 64 });
 * console.log(plan.peakBytes, plan.fits, plan.reason ?? "fits");
 * pipe.dispose();
 * ```
 */
export interface MemoryPlan {
  /** The adapter planned for. */
  adapter: string;
  /** Storage precision of weights and activations. */
  precision: Precision;
  /** Frames planned for. */
  frames: number;
  /** Width in pixels planned for. */
  width: number;
  /** Height in pixels planned for. */
  height: number;
  /** Bytes of weights on the GPU. */
  weightsBytes: number;
  /** Peak bytes of activations and workspace (the buffer pool's buffers, free ones included). */
  activationsBytes: number;
  /** Peak GPU memory of the whole request: weights + activations. */
  peakBytes: number;
  /** Peak GPU memory while encoding the prompt, denoising, and decoding. */
  stages: { encode: number; denoise: number; decode: number };
  /** The adapter's largest storage binding; larger tensors are processed in windows. */
  maxStorageBufferBindingSize: number;
  /** The adapter's largest buffer: no tensor can be larger. */
  maxBufferSize: number;
  /** VAE tiles per frame (1 = whole frames; more when a frame is too large to decode at once). */
  decodeTiles: number;
  /** The memory the plan is checked against (null: unknown, see {@link defaultMemoryBudget}). */
  budgetBytes: number | null;
  /** The request runs on this adapter within the budget. */
  fits: boolean;
  /** When it does not fit: why, and what would (one line). */
  reason?: string;
}

/**
 * The GPU memory to plan against when none is given: WebGPU does not tell how much memory an
 * adapter has, so a GPU's is unknown (null: only the adapter's buffer limits are checked); a
 * software adapter (lavapipe) uses host memory, so its budget is the host's.
 */
export function defaultMemoryBudget(info: Pick<GpuInfo, "isFallback">): number | null {
  if (!info.isFallback) return null;
  try {
    return Deno.systemMemoryInfo().total;
  } catch {
    return null;
  }
}

/** One line for a plan that does not fit: what was asked, why not, and what would fit. */
export function planFailure(
  plan: Pick<MemoryPlan, "frames" | "width" | "height" | "precision" | "peakBytes" | "budgetBytes">,
  limit: EngineLimitError | null,
  fitting: string[],
): string {
  const asked = `${plan.frames} frames at ${plan.width}x${plan.height} in ${plan.precision}`;
  const why = limit
    ? `cannot run on this adapter (${limit.message})`
    : `need ${fmtBytes(plan.peakBytes)} of GPU memory, more than the ${
      fmtBytes(plan.budgetBytes ?? 0)
    } budget`;
  const instead = fitting.length
    ? `; would fit: ${fitting.join(", or ")}`
    : "; nothing smaller fits either";
  return `${asked} ${why}${instead}`;
}

/**
 * The largest value in [lo, hi] for which `fits` holds, assuming it is monotonic (fewer frames
 * or a smaller size never needs more memory); null when even `lo` does not fit.
 */
export async function largestFitting(
  lo: number,
  hi: number,
  fits: (v: number) => Promise<boolean>,
): Promise<number | null> {
  if (!(await fits(lo))) return null;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (await fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Bytes from a size as people write it: `8GB`, `6.5GiB`, `512MB`, `4096MiB` or a byte count
 * (decimal units for GB/MB/kB, binary for GiB/MiB/KiB); null when it is not a positive size.
 *
 * @example
 * ```ts
 * parseByteSize("8GB"); // 8000000000
 * parseByteSize("6GiB"); // 6442450944
 * ```
 */
export function parseByteSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(|B|[KMGT]B|[KMGT]iB)\s*$/i.exec(text);
  if (!m) return null;
  const unit = m[2].toUpperCase();
  const k = "KMGT".indexOf(unit[0]) + 1;
  const bytes = unit.endsWith("IB") ? Number(m[1]) * 1024 ** k : Number(m[1]) * 1000 ** k;
  return Number.isFinite(bytes) && bytes >= 1 ? Math.floor(bytes) : null;
}

/** What a request's plan depends on besides its shape: batch size and whether it decodes. */
interface PlanScope {
  videos: number;
  decode: boolean;
}

/**
 * Plans requests for one pipeline: replays them on planning copies of its parts on a virtual
 * Gpu with the adapter's limits (one copy per precision, built on first use), and remembers the
 * request shapes already found to fit so that a server's repeated requests cost nothing.
 */
export class MemoryPlanner {
  readonly #parts: BoundParts;
  readonly #precision: Precision;
  /** GPU memory requests are planned against (null: unknown). */
  readonly #budget: number | null;
  readonly #copies = new Map<Precision, Promise<BoundParts>>();
  readonly #fits = new Set<string>();

  constructor(parts: BoundParts, o: { precision: Precision; budget: number | null }) {
    this.#parts = parts;
    this.#precision = o.precision;
    this.#budget = o.budget;
  }

  /** The plan of `r` in `precision`; with `suggest`, a failing plan says what would fit. */
  async plan(
    r: ResolvedRequest,
    precision: Precision,
    o: PlanScope & { suggest: boolean },
  ): Promise<MemoryPlan> {
    const parts = await this.#copy(precision);
    const gpu = parts.gpu;
    gpu.pool.trim();
    gpu.pool.resetPeak();
    // A video or image input goes through the VAE encoder, whose weights then stay bound.
    const encoder = r.init ? await virtualEncoder(parts) : null;
    const weights = gpu.persistentBytes;
    const stages = { encode: 0, denoise: 0, decode: 0 };
    let stage: keyof typeof stages | null = null;
    const mark = (next: keyof typeof stages | null) => {
      if (stage) {
        stages[stage] = Math.max(stages[stage], weights + gpu.pool.stats().peakAllocatedBytes);
      }
      gpu.pool.resetPeak();
      stage = next;
    };
    let limit: EngineLimitError | null = null;
    const prompts = o.videos > 1 ? new Array(o.videos).fill(r.prompt) : undefined;
    const onProgress = (e: ProgressEvent) => {
      if (e.stage !== stage && e.stage in stages) mark(e.stage as keyof typeof stages);
    };
    // Every step allocates alike: a few stand for all of them (a video input at strength 1, so
    // that a few steps still run; its encoder pass is the same at any strength).
    const few = {
      ...r,
      steps: Math.min(r.steps, 3),
      init: r.init && { ...r.init, strength: 1 },
    };
    const replay = encoder
      ? { ...parts, vaeEncoder: () => Promise.resolve(encoder.encoder) }
      : parts;
    try {
      if (o.decode) await generate(replay, few, { prompts }, { onProgress });
      else (await denoise(replay, few, { onProgress, prompts }, {})).release();
    } catch (e) {
      if (!(e instanceof EngineLimitError)) throw e;
      limit = e;
    }
    mark(null);
    encoder?.store.dispose();
    const peak = Math.max(stages.encode, stages.denoise, stages.decode, weights);
    const plan: MemoryPlan = {
      adapter: this.#parts.gpu.info.name,
      precision,
      frames: r.frames,
      width: r.width,
      height: r.height,
      weightsBytes: weights,
      activationsBytes: peak - weights,
      peakBytes: peak,
      stages,
      maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize,
      maxBufferSize: gpu.limits.maxBufferSize,
      decodeTiles: o.decode ? decodeTileCount(parts, r) : 0,
      budgetBytes: this.#budget,
      fits: limit === null && (this.#budget === null || peak <= this.#budget),
    };
    if (!plan.fits && o.suggest) {
      plan.reason = planFailure(plan, limit, await this.#fitting(r, precision, o));
    } else if (!plan.fits) {
      plan.reason = limit?.message ?? "over budget";
    }
    return plan;
  }

  /** Throws an EngineLimitError with what would fit when `r`'s plan does not fit. */
  async ensureFits(r: ResolvedRequest, o: PlanScope): Promise<void> {
    if (this.#parts.gpu.virtual) return;
    // What a plan depends on (not the prompt, seed or step count beyond the first few).
    const key = JSON.stringify([
      r.frames,
      r.width,
      r.height,
      r.contextLength,
      r.contextOverlap,
      r.contextLoop,
      r.scheduler,
      r.init !== null,
      r.guidance > 1,
      r.clipSkip === 1,
      Math.min(r.steps, 3),
      o,
      this.#parts.gpu.limits,
    ]);
    if (this.#fits.has(key)) return;
    const plan = await this.plan(r, this.#precision, { ...o, suggest: false });
    if (plan.fits) {
      this.#fits.add(key);
      return;
    }
    const full = await this.plan(r, this.#precision, { ...o, suggest: true });
    throw new EngineLimitError(full.reason ?? "request does not fit");
  }

  /** Releases the planning copies. */
  dispose(): void {
    for (const p of this.#copies.values()) {
      p.then((parts) => {
        for (const s of parts.stores) s.dispose();
        parts.gpu.destroy();
      }, () => {});
    }
    this.#copies.clear();
  }

  /** What would fit instead of `r`: f16, fewer frames (or a shorter context), a smaller size. */
  async #fitting(r: ResolvedRequest, precision: Precision, o: PlanScope): Promise<string[]> {
    const fits = async (q: ResolvedRequest, p = precision) =>
      (await this.plan({ ...q, steps: 1 }, p, { ...o, suggest: false })).fits;
    const out: string[] = [];
    if (precision === "f32" && this.#parts.gpu.hasF16 && await fits(r, "f16")) {
      out.push("f16 precision");
    }
    const windowed = r.contextLength < r.frames;
    const most = windowed ? r.contextLength : r.frames;
    if (most > 1) {
      const n = await largestFitting(
        1,
        most - 1,
        (k) =>
          fits(
            windowed
              ? { ...r, contextLength: k, contextOverlap: 0 }
              : { ...r, frames: k, contextLength: k },
          ),
      );
      if (n !== null) out.push(windowed ? `a context length of ${n}` : `${n} frames`);
    }
    // Sizes keep the aspect ratio, in steps of 8 pixels on the longer side.
    const long = Math.max(r.width, r.height);
    const sized = (k: number) => {
      const w = Math.max(8, Math.floor((r.width * k) / long / 8) * 8);
      const h = Math.max(8, Math.floor((r.height * k) / long / 8) * 8);
      return { ...r, width: w, height: h };
    };
    if (long > 8) {
      const k = await largestFitting(8, long - 8, (v) => fits(sized(Math.floor(v / 8) * 8)));
      if (k !== null) {
        const q = sized(Math.floor(k / 8) * 8);
        out.push(`${q.width}x${q.height}`);
      }
    }
    return out;
  }

  /** The pipeline's parts replayed for planning in `precision` (the parts themselves if virtual). */
  #copy(precision: Precision): Promise<BoundParts> {
    if (this.#parts.gpu.virtual && precision === this.#precision) {
      return Promise.resolve(this.#parts);
    }
    let p = this.#copies.get(precision);
    if (!p) {
      p = virtualParts(this.#parts, precision);
      this.#copies.set(precision, p);
    }
    return p;
  }
}

/**
 * The VAE encoder on a planning copy: declared from the VAE's config, its weights reserved on the
 * virtual Gpu (never read), so that a video input's encoder pass replays with the rest.
 */
async function virtualEncoder(
  parts: PipelineParts,
): Promise<{ store: WeightStore; encoder: VaeEncoder }> {
  const config = parts.vae.config;
  const tensors: TensorMap = new Map();
  for (const [name, shape] of WeightStore.describe((w) => new VaeEncoder(w, config))) {
    tensors.set(name, {
      shape,
      dtype: "F32",
      read: () => Promise.reject(new Error(`${name}: a planning copy has no weights`)),
    });
  }
  const store = new WeightStore(parts.gpu, tensors, {
    dtype: parts.dtype,
    part: "vae",
    transposeLinear: usesDirectGemm(parts.gpu),
    winograd: usesDirectGemm(parts.gpu),
  });
  const encoder = new VaeEncoder(store, config);
  await store.loadAll();
  return { store, encoder };
}

/** VAE tiles per frame of a request (1 when frames decode whole). */
function decodeTileCount(parts: PipelineParts, r: ResolvedRequest): number {
  const h = r.height / 8, w = r.width / 8;
  let t: number | null;
  try {
    t = pickDecodeTile(parts, h, w);
  } catch (e) {
    if (e instanceof EngineLimitError) return 0;
    throw e;
  }
  if (t === null) return 1;
  const stride = Math.floor(t * 0.75);
  return Math.ceil(h / stride) * Math.ceil(w / stride);
}
