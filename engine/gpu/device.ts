/**
 * The GPU context: adapter and device with the adapter's real limits, feature detection,
 * error handling (validation, WGSL compilation, device loss), the buffer pool, the pipeline
 * cache and the command recorder. Launchers in kernels/ record through `Gpu.dispatch`.
 * @module
 */

import { BufferPool, type PoolStats } from "./buffer_pool.ts";
import type { KernelDef, Params } from "./kernel.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { Recorder } from "./recorder.ts";
import { type DType, fmtShape, numel, Tensor, tensorByteSize } from "./tensor.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";
import { fillKernel, fillLaunch, NAN_PATTERN } from "./poison.ts";

/**
 * No WebGPU adapter could be found.
 *
 * @example
 * ```ts
 * import { Gpu, NoAdapterError } from "@zoetrope/animatediff";
 *
 * try {
 *   const gpu = await Gpu.create();
 *   gpu.destroy();
 * } catch (e) {
 *   if (e instanceof NoAdapterError) console.error(e.message); // says what driver to install
 * }
 * ```
 */
export class NoAdapterError extends Error {
  /** Always "NoAdapterError". */
  override name = "NoAdapterError";
}

/** The device was lost (driver reset, out of memory, destroyed). */
export class DeviceLostError extends Error {
  override name = "DeviceLostError";
}

/** A GPU validation or out-of-memory error raised by recorded work. */
export class GpuError extends Error {
  override name = "GpuError";
}

/**
 * What the adapter is and what it allows.
 *
 * @example
 * ```ts
 * import { Gpu, type GpuInfo } from "@zoetrope/animatediff";
 *
 * const gpu = await Gpu.create();
 * const info: GpuInfo = gpu.info;
 * console.log(info.name, info.isFallback, info.maxStorageBufferBindingSize);
 * gpu.destroy();
 * ```
 */
export interface GpuInfo {
  /** Human-readable adapter name (description, or vendor/device). */
  name: string;
  /** Adapter vendor (may be empty). */
  vendor: string;
  /** Adapter architecture (may be empty). */
  architecture: string;
  /** Software / fallback adapter (e.g. lavapipe). */
  isFallback: boolean;
  /** Enabled device features (e.g. `shader-f16`). */
  features: string[];
  /** Largest storage-buffer binding in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer in bytes. */
  maxBufferSize: number;
  /** Workgroup shared memory in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Most invocations per workgroup. */
  maxComputeInvocationsPerWorkgroup: number;
  /** Largest workgroup size along x. */
  maxComputeWorkgroupSizeX: number;
}

/**
 * Options for {@link Gpu.create}.
 *
 * @example
 * ```ts
 * import { Gpu, type GpuOptions } from "@zoetrope/animatediff";
 *
 * const options: GpuOptions = { powerPreference: "high-performance", f16: true };
 * const gpu = await Gpu.create(options);
 * ```
 */
export interface GpuOptions {
  /** Adapter power preference (default: none). */
  powerPreference?: GPUPowerPreference;
  /** Request shader-f16 when present (default true). */
  f16?: boolean;
  /** Request timestamp-query when present (default true). */
  timestamps?: boolean;
}

/** Message shown when no adapter exists, saying what to install. */
export const NO_ADAPTER_HINT =
  "no WebGPU adapter found: install a Vulkan driver (on Debian/Ubuntu without a GPU: " +
  "apt-get install mesa-vulkan-drivers) and set XDG_RUNTIME_DIR";

/**
 * A WebGPU device with Zoetrope's runtime around it.
 *
 * @example
 * ```ts
 * import { Gpu, loadPipeline } from "@zoetrope/animatediff";
 *
 * // One device shared by two pipelines (compiled shaders are reused).
 * const gpu = await Gpu.create();
 * const a = await loadPipeline({ device: gpu });
 * const b = await loadPipeline({ device: gpu, precision: gpu.hasF16 ? "f16" : "f32" });
 * a.dispose();
 * b.dispose();
 * gpu.destroy();
 * ```
 */
export class Gpu {
  /** The WebGPU adapter. */
  readonly adapter: GPUAdapter;
  /** The WebGPU device, created with the adapter's real limits. */
  readonly device: GPUDevice;
  /** Adapter name, features and limits. */
  readonly info: GpuInfo;
  /** The device has `shader-f16` (needed by precision "f16"). */
  readonly hasF16: boolean;
  /** The device has `timestamp-query`. */
  readonly hasTimestamps: boolean;
  /**
   * Size-bucketed buffer pool (internal).
   * @ignore
   */
  readonly pool: BufferPool;
  /**
   * Compiled pipelines by (op, dtype, variant) (internal).
   * @ignore
   */
  readonly pipelines: PipelineCache;
  /**
   * Batches dispatches into command buffers (internal).
   * @ignore
   */
  readonly recorder: Recorder;
  #lost: string | null = null;
  readonly #dispatches = new Map<string, number>();
  #errors: string[] = [];
  #destroyed = false;

  private constructor(adapter: GPUAdapter, device: GPUDevice) {
    this.adapter = adapter;
    this.device = device;
    const ai = adapter.info;
    const limits = device.limits;
    this.info = {
      name: ai.description || `${ai.vendor} ${ai.device}`.trim() || "unknown adapter",
      vendor: ai.vendor,
      architecture: ai.architecture,
      isFallback: Boolean(
        (ai as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
          (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter,
      ),
      features: [...device.features],
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
    };
    this.hasF16 = device.features.has("shader-f16");
    this.hasTimestamps = device.features.has("timestamp-query");
    this.pool = new BufferPool(
      device,
      Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize),
    );
    this.pipelines = new PipelineCache(device);
    this.recorder = new Recorder(device);
    device.lost.then((info) => {
      if (!this.#destroyed) this.#lost = `${info.reason}: ${info.message}`;
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      if (this.#errors.length < 8) this.#errors.push(e.message);
    });
  }

  /** Requests an adapter and a device with the adapter's real limits. */
  static async create(options: GpuOptions = {}): Promise<Gpu> {
    if (!("gpu" in navigator) || !navigator.gpu) throw new NoAdapterError(NO_ADAPTER_HINT);
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: options.powerPreference ?? "high-performance",
    });
    if (!adapter) throw new NoAdapterError(NO_ADAPTER_HINT);
    const features: GPUFeatureName[] = [];
    if ((options.f16 ?? true) && adapter.features.has("shader-f16")) features.push("shader-f16");
    if ((options.timestamps ?? true) && adapter.features.has("timestamp-query")) {
      features.push("timestamp-query");
    }
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      },
    });
    return new Gpu(adapter, device);
  }

  /** Throws if the device is lost or recorded work raised validation errors. */
  checkHealth(): void {
    if (this.#lost) throw new DeviceLostError(`GPU device lost (${this.#lost})`);
    if (this.#errors.length) {
      const msg = this.#errors.splice(0).join("; ");
      throw new GpuError(`GPU error: ${msg}`);
    }
  }

  /** Rethrows a kernel compilation failure (its follow-on validation errors are dropped). */
  async #checkErrors(): Promise<void> {
    const compile = await this.pipelines.takeError();
    if (compile) {
      await this.device.queue.onSubmittedWorkDone();
      this.#errors.length = 0;
      throw compile;
    }
    this.checkHealth();
  }

  /**
   * When true (tests), every tensor from `empty()` is filled with NaN first, so a kernel that
   * leaves an output element unwritten fails its comparison.
   * @ignore
   */
  poison = false;

  /**
   * Allocates an uninitialised tensor from the pool.
   * @ignore
   */
  empty(shape: readonly number[], dtype: DType, label = "tensor"): Tensor {
    return this.#alloc(shape, dtype, label, this.poison);
  }

  #alloc(shape: readonly number[], dtype: DType, label: string, poison: boolean): Tensor {
    this.#checkFits(shape, dtype, label);
    const size = tensorByteSize(shape, dtype);
    const buffer = this.pool.acquire(size, label);
    const t = new Tensor(buffer, shape, dtype, { owner: this.pool, label });
    if (poison) {
      const { params, groups } = fillLaunch(buffer.size / 4, NAN_PATTERN);
      this.dispatch(fillKernel, { dtype: "f32", params, bindings: [buffer], groups });
    }
    return t;
  }

  #checkFits(shape: readonly number[], dtype: DType, label: string): void {
    const bytes = tensorByteSize(shape, dtype);
    if (bytes > this.info.maxStorageBufferBindingSize) {
      throw new GpuError(
        `tensor ${label} ${fmtShape(shape)} ${dtype} needs ${bytes} bytes, more than this ` +
          `adapter's maxStorageBufferBindingSize (${this.info.maxStorageBufferBindingSize}); ` +
          `use fewer frames or a smaller size`,
      );
    }
  }

  /**
   * Uploads host data (converted to `dtype`) into a new pooled tensor.
   * @ignore
   */
  upload(
    data: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = "f32",
    label = "upload",
  ): Tensor {
    if (data.length !== numel(shape)) {
      throw new Error(`upload ${label}: ${data.length} values for shape ${fmtShape(shape)}`);
    }
    // Pending work may still read a recycled buffer: submit it before queue.writeBuffer.
    this.recorder.submit();
    const t = this.#alloc(shape, dtype, label, false);
    this.#write(t.buffer, data, dtype);
    return t;
  }

  /**
   * Creates a dedicated (unpooled) tensor for long-lived data such as weights. The buffer is
   * destroyed by `release()`.
   * @ignore
   */
  createPersistent(
    data: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = "f32",
    label = "weight",
  ): Tensor {
    if (data.length !== numel(shape)) {
      throw new Error(`weight ${label}: ${data.length} values for shape ${fmtShape(shape)}`);
    }
    this.#checkFits(shape, dtype, label);
    const size = tensorByteSize(shape, dtype);
    const buffer = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
      label,
    });
    const mapped = buffer.getMappedRange();
    if (dtype === "f16") new Uint16Array(mapped).set(toF16(data));
    else new Float32Array(mapped).set(data);
    buffer.unmap();
    this.persistentBytes += size;
    return new Tensor(buffer, shape, dtype, {
      label,
      owner: {
        releaseBuffer: (b) => {
          this.persistentBytes -= b.size;
          b.destroy();
        },
      },
    });
  }

  /**
   * Bytes held by persistent tensors (weights).
   * @ignore
   */
  persistentBytes = 0;

  #write(buffer: GPUBuffer, data: ArrayLike<number>, dtype: DType): void {
    if (dtype === "f16") {
      const h = toF16(data);
      this.device.queue.writeBuffer(buffer, 0, h.buffer as ArrayBuffer, h.byteOffset, h.byteLength);
    } else {
      const f = data instanceof Float32Array ? data : Float32Array.from(data);
      this.device.queue.writeBuffer(buffer, 0, f.buffer as ArrayBuffer, f.byteOffset, f.byteLength);
    }
  }

  /**
   * Records a dispatch of `kernel` (pipeline from the cache).
   * @ignore
   */
  dispatch(
    kernel: KernelDef,
    options: {
      dtype: DType;
      variant?: string;
      params: Params;
      bindings: readonly (Tensor | GPUBuffer)[];
      groups: readonly [number, number, number];
    },
  ): void {
    if (this.#lost) throw new DeviceLostError(`GPU device lost (${this.#lost})`);
    const variant = options.variant ?? "";
    const pipeline = this.pipelines.get(kernel, { dtype: options.dtype, variant });
    const buffers = options.bindings.map((b) => {
      if (b instanceof Tensor) {
        b.assertLive(kernel.name);
        return b.buffer;
      }
      return b;
    });
    this.recorder.dispatch(pipeline, options.params.bytes(), buffers, options.groups, kernel.name);
    const key = `${kernel.name}:${variant}`;
    this.#dispatches.set(key, (this.#dispatches.get(key) ?? 0) + 1);
  }

  /**
   * Dispatches recorded so far per `kernel:variant` (tests check which kernel path ran).
   * @ignore
   */
  dispatchCounts(): Map<string, number> {
    return new Map(this.#dispatches);
  }

  /**
   * Submits recorded work (does not wait).
   * @ignore
   */
  submit(): void {
    this.recorder.submit();
  }

  /**
   * Submits recorded work and waits until the GPU finished it; rethrows GPU errors.
   * @ignore
   */
  async sync(): Promise<void> {
    this.recorder.submit();
    await this.device.queue.onSubmittedWorkDone();
    await this.#checkErrors();
  }

  /**
   * Reads a tensor back to the CPU as float32 (f16 converted). Submits pending work.
   * @ignore
   */
  async read(t: Tensor): Promise<Float32Array> {
    t.assertLive("read");
    const bytes = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, bytes),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `readback ${t.label}`,
    });
    this.recorder.copy(t.buffer, 0, staging, 0, Math.max(4, bytes));
    this.recorder.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await this.#checkErrors();
      throw e;
    }
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await this.#checkErrors();
    if (t.dtype === "f16") return f16ToF32(new Uint16Array(copy, 0, t.size));
    return new Float32Array(copy, 0, t.size);
  }

  /**
   * Buffer pool counters plus persistent (weight) bytes.
   * @ignore
   */
  memoryStats(): PoolStats & { persistentBytes: number } {
    return { ...this.pool.stats(), persistentBytes: this.persistentBytes };
  }

  /** Destroys the device; the Gpu is unusable afterwards. */
  destroy(): void {
    this.#destroyed = true;
    this.recorder.destroy();
    this.pool.trim();
    this.device.destroy();
  }
}

function toF16(data: ArrayLike<number>): Uint16Array {
  const h = f32ToF16(data);
  if (h.length % 2 === 0) return h;
  const padded = new Uint16Array(h.length + 1);
  padded.set(h);
  return padded;
}

let shared: Promise<Gpu> | null = null;

/** A process-wide shared Gpu (created on first use). */
export function sharedGpu(options?: GpuOptions): Promise<Gpu> {
  shared ??= Gpu.create(options).catch((e) => {
    shared = null;
    throw e;
  });
  return shared;
}
