/**
 * The memory plan of a generation: how much GPU memory a request needs on an adapter, in a
 * precision, before any of it runs. The plan is not a formula: the pipeline replays the request
 * on a virtual Gpu (kernels/gpu/device.ts, `Gpu.virtual`) with the adapter's limits, where
 * tensors have sizes but no memory and dispatches only check their operands. Every allocation,
 * every binding-sized split and every decision (VAE tiles) is the real run's, so the plan's peak
 * is what the buffer pool's counter reads after a real run.
 * @module
 */

import { fmtBytes, type GpuInfo } from "../kernels/gpu/device.ts";
import type { EngineLimitError } from "../kernels/gpu/errors.ts";
import type { Precision } from "./pipeline_types.ts";

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
