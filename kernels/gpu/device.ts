/**
 * The GPU context: adapter and device with the adapter's real limits, feature detection,
 * error handling (validation, WGSL compilation, device loss), the buffer pool, the pipeline
 * cache and the command recorder. Launchers in kernels/ record through `Gpu.dispatch`.
 * @module
 */

import { DeviceLostError, EngineLimitError, GpuError, NoAdapterError } from "./errors.ts";
import { BufferPool, type PoolStats } from "./buffer_pool.ts";
import type { KernelDef, Params, VariantOption } from "./kernel.ts";
import { PipelineCache } from "./pipeline_cache.ts";
import { Recorder, type StorageBinding } from "./recorder.ts";
import { DispatchProfiler, type KernelTime } from "./profiler.ts";
import type { Tape } from "./tape.ts";
import { type DType, fmtShape, numel, Tensor, tensorByteSize } from "./tensor.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";
import { fillKernel, fillLaunch, NAN_PATTERN } from "./poison.ts";

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
  /** Largest buffer in bytes (a tensor may be larger than one binding, up to this). */
  maxBufferSize: number;
  /** Alignment of a storage binding's offset in bytes (windows of larger tensors). */
  minStorageBufferOffsetAlignment: number;
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

/**
 * Limits the runtime works within, at most the adapter's: tests and the memory planner lower
 * them to prove that work splits into chunks exactly as it would on a smaller adapter.
 */
export interface RuntimeLimits {
  /** Largest storage binding in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer in bytes. */
  maxBufferSize: number;
  /** Binding offset alignment in bytes. */
  minStorageBufferOffsetAlignment: number;
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

  private constructor(adapter: GPUAdapter, device: GPUDevice, virtualInfo?: GpuInfo) {
    this.adapter = adapter;
    this.device = device;
    this.virtual = virtualInfo !== undefined;
    const ai = adapter.info;
    const limits = device.limits;
    this.info = virtualInfo ? { ...virtualInfo, features: [...virtualInfo.features] } : {
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
      minStorageBufferOffsetAlignment: limits.minStorageBufferOffsetAlignment,
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
    };
    this.hasF16 = this.info.features.includes("shader-f16");
    this.hasTimestamps = !this.virtual && device.features.has("timestamp-query");
    this.#limits = {
      maxStorageBufferBindingSize: this.info.maxStorageBufferBindingSize,
      maxBufferSize: this.info.maxBufferSize,
      minStorageBufferOffsetAlignment: this.info.minStorageBufferOffsetAlignment,
    };
    // Free buffers the pool destroys may still be bound by recorded work: submit it first.
    this.pool = new BufferPool(device, this.info.maxBufferSize, {
      beforeEvict: () => this.recorder.submit(),
    });
    // lavapipe recompiles (and leaks) shaders per bind group for uniforms bounding loops.
    const paramsInStorage = this.info.isFallback;
    this.pipelines = new PipelineCache(device, { paramsInStorage });
    this.recorder = new Recorder(device, { paramsInStorage });
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
        minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
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

  /**
   * A device-less Gpu for planning: tensors have sizes but no memory, dispatches only check
   * their inputs, reads return zeros. Running a model on it replays exactly the allocations
   * (and binding chunking) of a real run on an adapter with `info`'s limits, so the buffer
   * pool's counters are the memory the real run needs.
   * @ignore
   */
  static virtual(info: GpuInfo): Gpu {
    const device = virtualDevice(info);
    const adapter = { info: { description: info.name } } as unknown as GPUAdapter;
    return new Gpu(adapter, device, info);
  }

  /** True for a planning Gpu from {@link Gpu.virtual}. */
  readonly virtual: boolean;
  #limits: RuntimeLimits;

  /**
   * The limits work is split by: the adapter's, or lower ones set by {@link setLimits}.
   * @ignore
   */
  get limits(): Readonly<RuntimeLimits> {
    return this.#limits;
  }

  /**
   * Lowers the limits the runtime splits work by (tests prove chunked == unchunked on small
   * limits); values above the adapter's are clamped to it. Omitted fields restore the adapter's.
   * @ignore
   */
  setLimits(limits: Partial<RuntimeLimits> = {}): void {
    const i = this.info;
    this.#limits = {
      maxStorageBufferBindingSize: Math.min(
        limits.maxStorageBufferBindingSize ?? Infinity,
        i.maxStorageBufferBindingSize,
      ),
      maxBufferSize: Math.min(limits.maxBufferSize ?? Infinity, i.maxBufferSize),
      minStorageBufferOffsetAlignment: Math.max(
        limits.minStorageBufferOffsetAlignment ?? 0,
        i.minStorageBufferOffsetAlignment,
      ),
    };
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
   * The autograd tape recording launched ops (engine/training/autograd.ts), or null (inference).
   * @ignore
   */
  tape: Tape | null = null;

  /**
   * Allocates an uninitialised tensor from the pool.
   * @ignore
   */
  empty(shape: readonly number[], dtype: DType, label = "tensor"): Tensor {
    return this.#alloc(shape, dtype, label, this.poison);
  }

  #alloc(shape: readonly number[], dtype: DType, label: string, poison: boolean): Tensor {
    this.#checkFits(shape, dtype, label);
    const t = new Tensor(null, shape, dtype, { owner: this, label });
    // In a scope a tensor gets its buffer when the first op using it runs; outside, now.
    if (this.#frame) this.#frame.created.add(t);
    else this.#materialize(t, poison);
    return t;
  }

  /** Gives a pending tensor a pool buffer (NaN-filled first when poisoning). */
  #materialize(t: Tensor, poison = this.poison): void {
    const buffer = this.pool.acquire(tensorByteSize(t.shape, t.dtype), t.label);
    t.materialize(buffer);
    if (poison) this.#fill(buffer, NAN_PATTERN);
  }

  /**
   * Where a released pooled tensor's buffer goes: back to the pool at once, or, inside a scope,
   * once the ops recorded before the release have run.
   * @ignore
   */
  releaseTensor(t: Tensor): void {
    if (this.#frame && !this.#flushing) this.#frame.ops.push({ release: t });
    else if (!t.pending) this.pool.releaseBuffer(t.buffer, t.buffer.size);
  }

  // ---------------------------------------------------------------- scopes

  #frame: ScopeFrame | null = null;
  #depth = 0;
  #flushing = false;

  /**
   * Runs `fn` as one scope (like `tf.tidy`): every tensor created inside is freed after the last
   * op that uses it, except those `fn` returns (a tensor, or arrays and objects of them) or
   * {@link keep}s. Ops inside are recorded and run at the end of the outermost scope (or at a
   * readback), so buffers are taken when the first op using them runs and given back after the
   * last: model code needs no frees and the memory held is what the ops in flight need. Nested
   * scopes join the outermost one. `fn` must be synchronous.
   *
   * @example
   * ```ts
   * const y = gpu.scope(() => conv2(norm2(conv1(norm1(x))), { residual: x })); // no release()
   * ```
   */
  scope<T>(fn: () => T): T {
    const outer = this.#frame === null;
    if (outer) this.#frame = { ops: [], created: new Set(), kept: new Set(), freed: new Set() };
    this.#depth++;
    let result: T;
    try {
      result = fn();
      if (result instanceof Promise) {
        throw new Error("Gpu.scope: the function must be synchronous (it returned a promise)");
      }
    } catch (e) {
      this.#depth--;
      if (outer) this.#abandon();
      throw e;
    }
    this.#depth--;
    if (outer) {
      const frame = this.#frame!;
      collectTensors(result, (t) => frame.kept.add(t.root));
      this.#flush(true);
    }
    return result;
  }

  /**
   * Keeps a tensor created in the current scope alive after it (e.g. activations an autograd
   * tape saves for the backward pass); release it yourself later. No-op outside a scope.
   * @ignore
   */
  keep<T extends Tensor>(t: T): T {
    this.#frame?.kept.add(t.root);
    return t;
  }

  /**
   * {@link keep}s `t` when the current scope created it and says so: then the caller owns it and
   * releases it. False for a tensor from before the scope or made outside any scope (its owner
   * stays who it was).
   * @ignore
   */
  adopt(t: Tensor): boolean {
    const frame = this.#frame;
    if (!frame || !frame.created.has(t.root)) return false;
    frame.kept.add(t.root);
    return true;
  }

  /**
   * Runs the ops recorded in the scope so far (in order), taking each new tensor's buffer at
   * its first use and giving it back after its last. `final`: the scope ends, so every tensor it
   * created that is not kept goes; otherwise only those released by their users go.
   */
  #flush(final: boolean): void {
    const frame = this.#frame;
    if (!frame || this.#flushing) return;
    this.#flushing = true;
    try {
      const ops = frame.ops.splice(0);
      const last = new Map<Tensor, number>();
      const tensorsOf = (op: ScopeOp): Tensor[] =>
        "dispatch" in op
          ? op.dispatch.options.bindings.filter((b): b is Tensor => b instanceof Tensor)
          : "copy" in op
          ? [op.copy.src, op.copy.dst]
          : [];
      ops.forEach((op, i) => {
        for (const t of tensorsOf(op)) last.set(t.root, i);
      });
      const dropped = new Set<Tensor>();
      const free = (root: Tensor) => {
        frame.created.delete(root);
        frame.freed.add(root);
        if (root.released) this.releaseTensor(root);
        else root.release();
      };
      ops.forEach((op, i) => {
        if ("release" in op) {
          const root = op.release;
          if (frame.freed.has(root)) return; // its last use already gave its buffer back
          if (!frame.created.has(root)) this.releaseTensor(root); // from before the scope
          else if ((last.get(root) ?? -1) < i) free(root);
          else dropped.add(root);
          return;
        }
        const roots = new Set<Tensor>();
        for (const t of tensorsOf(op)) {
          roots.add(t.root);
          if (t.pending) this.#materialize(t.root);
        }
        if ("dispatch" in op) this.#run(op.dispatch.kernel, op.dispatch.options);
        else this.#copyNow(op.copy.src, op.copy.dst);
        for (const root of roots) {
          if (last.get(root) !== i || !frame.created.has(root)) continue;
          if (dropped.has(root) || (final && !frame.kept.has(root))) free(root);
        }
      });
      if (final) {
        for (const root of [...frame.created]) {
          if (!frame.kept.has(root)) free(root);
          else if (root.pending) this.#materialize(root);
        }
        this.#frame = null;
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** A scope that threw: nothing it recorded runs; what it created is freed. */
  #abandon(): void {
    const frame = this.#frame!;
    this.#frame = null;
    for (const op of frame.ops) {
      const r = "release" in op ? op.release : null;
      if (r && !frame.created.has(r) && !frame.freed.has(r)) this.releaseTensor(r);
    }
    for (const root of frame.created) {
      if (!root.released) root.release();
      else if (!root.pending) this.pool.releaseBuffer(root.buffer, root.buffer.size);
    }
  }

  /** Writes a 32-bit pattern over a whole buffer, one binding-sized window at a time. */
  #fill(buffer: GPUBuffer, value: number): void {
    const align = this.#limits.minStorageBufferOffsetAlignment;
    const step = Math.floor(this.#limits.maxStorageBufferBindingSize / align) * align;
    for (let offset = 0; offset < buffer.size; offset += step) {
      const size = Math.min(step, buffer.size - offset);
      const { params, groups } = fillLaunch(size / 4, value);
      const binding = offset === 0 && size === buffer.size ? buffer : { buffer, offset, size };
      this.dispatch(fillKernel, { dtype: "f32", params, bindings: [binding], groups });
    }
  }

  #checkFits(shape: readonly number[], dtype: DType, label: string): void {
    const bytes = tensorByteSize(shape, dtype);
    const max = this.#limits.maxBufferSize;
    if (bytes > max) {
      throw new EngineLimitError(
        `tensor ${label} ${fmtShape(shape)} ${dtype} needs ${fmtBytes(bytes)}, more than the ` +
          `largest buffer this adapter allows (${fmtBytes(max)}); use fewer frames, a smaller ` +
          `size${dtype === "f32" ? " or --precision f16" : ""}`,
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
    const t = this.#allocNow(shape, dtype, label);
    if (!this.virtual) this.#write(t.buffer, data, dtype);
    return t;
  }

  /**
   * Uploads 32-bit words bit for bit into a new pooled tensor [n] (its dtype says f32; shaders
   * read u32 or i32).
   * @ignore
   */
  uploadWords(words: Uint32Array, label = "words"): Tensor {
    const t = this.#allocNow([words.length], "f32", label);
    if (!this.virtual) {
      this.device.queue.writeBuffer(
        t.buffer,
        0,
        words.buffer as ArrayBuffer,
        words.byteOffset,
        words.byteLength,
      );
    }
    return t;
  }

  /** A pooled tensor with its buffer now (for a queue write), inside a scope or not. */
  #allocNow(shape: readonly number[], dtype: DType, label: string): Tensor {
    // Pending work may still read a recycled buffer: submit it before queue.writeBuffer.
    this.recorder.submit();
    this.#checkFits(shape, dtype, label);
    const t = new Tensor(null, shape, dtype, { owner: this, label });
    this.#frame?.created.add(t);
    this.#materialize(t, false);
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
    return this.#persistent(shape, dtype, label, data);
  }

  /**
   * A dedicated tensor for long-lived data whose contents come later (zeros on a real device,
   * nothing on a virtual one): what a weight costs without reading it.
   * @ignore
   */
  reserve(shape: readonly number[], dtype: DType = "f32", label = "weight"): Tensor {
    return this.#persistent(shape, dtype, label, null);
  }

  #persistent(
    shape: readonly number[],
    dtype: DType,
    label: string,
    data: ArrayLike<number> | null,
  ): Tensor {
    this.#checkFits(shape, dtype, label);
    const size = tensorByteSize(shape, dtype);
    const write = data !== null && !this.virtual;
    const buffer = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: write,
      label,
    });
    if (write) {
      const mapped = buffer.getMappedRange();
      if (dtype === "f16") new Uint16Array(mapped).set(toF16(data));
      else new Float32Array(mapped).set(data);
      buffer.unmap();
    }
    this.persistentBytes += size;
    return new Tensor(buffer, shape, dtype, {
      label,
      owner: {
        releaseTensor: (t) => {
          this.persistentBytes -= t.buffer.size;
          t.buffer.destroy();
        },
      },
    });
  }

  /**
   * Bytes held by persistent tensors (weights).
   * @ignore
   */
  persistentBytes = 0;

  /**
   * Nominal floating-point operations of the products recorded so far (matmul, linear, conv2d,
   * attention forwards): what the model's math costs as written, whatever the kernels do (a
   * Winograd convolution counts as the direct one). The bench divides it by time.
   * @ignore
   */
  flops = 0;

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
  dispatch<V>(kernel: KernelDef<V>, options: DispatchOptions<V>): void {
    if (this.#lost) throw new DeviceLostError(`GPU device lost (${this.#lost})`);
    for (const b of options.bindings) if (b instanceof Tensor) b.assertLive(kernel.name);
    if (this.#frame && !this.#flushing) this.#frame.ops.push({ dispatch: { kernel, options } });
    else this.#run(kernel, options);
  }

  #run(kernel: KernelDef, options: DispatchOptions): void {
    const variant = kernel.key(options.variant);
    const buffers = options.bindings.map((b) => b instanceof Tensor ? this.#binding(kernel, b) : b);
    const key = `${kernel.name}:${variant}`;
    this.#dispatches.set(key, (this.#dispatches.get(key) ?? 0) + 1);
    if (this.virtual) return;
    const pipeline = this.pipelines.get(kernel, { dtype: options.dtype, variant: options.variant });
    this.recorder.dispatch(pipeline, options.params.bytes(), buffers, options.groups, key);
  }

  /**
   * The storage binding of a tensor: its whole buffer when that fits one binding, else exactly
   * its elements (a window of a larger buffer). Launchers split work so that this never exceeds
   * the binding limit; if one did, the error names the kernel and the tensor.
   */
  #binding(kernel: KernelDef, t: Tensor): StorageBinding {
    const limit = this.#limits.maxStorageBufferBindingSize;
    if (t.byteOffset === 0 && t.buffer.size <= limit) return t.buffer;
    const size = Math.min(
      Math.max(4, Math.ceil(t.byteLength / 4) * 4),
      t.buffer.size - t.byteOffset,
    );
    if (size > limit) {
      throw new EngineLimitError(
        `${kernel.name}: tensor ${t.label} ${fmtShape(t.shape)} ${t.dtype} needs ${
          fmtBytes(size)
        } in one binding, more than this adapter allows (${fmtBytes(limit)})`,
      );
    }
    if (t.byteOffset % this.#limits.minStorageBufferOffsetAlignment !== 0) {
      throw new Error(
        `${kernel.name}: tensor ${t.label} window at byte ${t.byteOffset} is not aligned to ` +
          `${this.#limits.minStorageBufferOffsetAlignment}`,
      );
    }
    return { buffer: t.buffer, offset: t.byteOffset, size };
  }

  /**
   * Copies all of `src` into `dst` (same byte length), in order with the ops around it.
   * @ignore
   */
  copy(src: Tensor, dst: Tensor): void {
    if (src.byteLength !== dst.byteLength) {
      throw new Error(
        `copy: ${src.label} has ${src.byteLength} bytes, ${dst.label} ${dst.byteLength}`,
      );
    }
    src.assertLive("copy");
    dst.assertLive("copy");
    if (this.#frame && !this.#flushing) this.#frame.ops.push({ copy: { src, dst } });
    else this.#copyNow(src, dst);
  }

  #copyNow(src: Tensor, dst: Tensor): void {
    if (this.virtual) return;
    this.recorder.copy(
      src.buffer,
      src.byteOffset,
      dst.buffer,
      dst.byteOffset,
      Math.ceil(src.byteLength / 4) * 4,
    );
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
    this.#flush(false);
    this.recorder.submit();
  }

  /**
   * Runs `fn` with every dispatch it records timed on the GPU (each in its own timed pass; see
   * kernels/gpu/profiler.ts) and returns its result with the kernels' GPU times, most expensive
   * first. Needs timestamp-query.
   * @ignore
   */
  async profile<T>(fn: () => Promise<T>): Promise<{ result: T; kernels: KernelTime[] }> {
    if (!this.hasTimestamps) {
      throw new EngineLimitError(`profiling needs timestamp-query, which ${this.info.name} lacks`);
    }
    if (this.recorder.profiler) throw new Error("profile: already profiling");
    this.submit();
    const profiler = new DispatchProfiler(this.device);
    this.recorder.profiler = profiler;
    try {
      const result = await fn();
      this.submit();
      this.recorder.profiler = null;
      return { result, kernels: await profiler.collect() };
    } finally {
      this.recorder.profiler = null;
      profiler.destroy();
    }
  }

  /**
   * Submits recorded work and waits until the GPU finished it; rethrows GPU errors.
   * @ignore
   */
  async sync(): Promise<void> {
    this.#flush(false);
    this.recorder.submit();
    // An empty submit also flushes buffer writes staged since the last one (uploads made with
    // mappedAtCreation or writeBuffer), which onSubmittedWorkDone alone does not wait for.
    this.device.queue.submit([]);
    await this.device.queue.onSubmittedWorkDone();
    await this.#checkErrors();
  }

  /**
   * Reads many tensors with one copy and one map (a readback costs >= 10 ms however small, so
   * many small tensors are read together), each as float32.
   *
   * @example
   * ```ts
   * const [a, b] = await gpu.readMany([gradA, gradB]);
   * ```
   * @ignore
   */
  async readMany(tensors: readonly Tensor[]): Promise<Float32Array[]> {
    for (const t of tensors) t.assertLive("read");
    this.#flush(false);
    if (this.virtual) return tensors.map((t) => new Float32Array(t.size));
    const spans = tensors.map((t) => {
      const head = t.byteOffset % 4;
      return { head, start: t.byteOffset - head, span: Math.ceil((head + t.byteLength) / 4) * 4 };
    });
    const total = spans.reduce((s, x) => s + x.span, 0);
    if (total === 0) return tensors.map(() => new Float32Array(0));
    const staging = this.device.createBuffer({
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: `readback of ${tensors.length} tensors`,
    });
    let offset = 0;
    tensors.forEach((t, i) => {
      const { start, span } = spans[i];
      const n = Math.min(span, t.buffer.size - start);
      if (n > 0) this.recorder.copy(t.buffer, start, staging, offset, n);
      offset += span;
    });
    this.recorder.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      await this.#checkErrors();
      throw e;
    }
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await this.#checkErrors();
    offset = 0;
    return tensors.map((t, i) => {
      const at = offset + spans[i].head;
      offset += spans[i].span;
      const copy = bytes.slice(at, at + t.byteLength);
      return t.dtype === "f16"
        ? f16ToF32(new Uint16Array(copy, 0, t.size))
        : new Float32Array(copy, 0, t.size);
    });
  }

  /**
   * Reads a tensor back to the CPU as float32 (f16 converted). Submits pending work.
   * @ignore
   */
  async read(t: Tensor): Promise<Float32Array> {
    return (await this.readMany([t]))[0];
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

/** Bytes as a short human figure: `151.8 MB` (decimal units, as GPU vendors count). */
export function fmtBytes(bytes: number): string {
  if (bytes < 1e3) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let v = bytes, i = -1;
  while (v >= 1e3 && i < units.length - 1) {
    v /= 1e3;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A stand-in GPUDevice for {@link Gpu.virtual}: buffers with a size and nothing else. */
function virtualDevice(info: GpuInfo): GPUDevice {
  const buffer = (d: GPUBufferDescriptor) => ({ size: d.size, label: d.label ?? "", destroy() {} });
  return {
    limits: {
      maxStorageBufferBindingSize: info.maxStorageBufferBindingSize,
      maxBufferSize: info.maxBufferSize,
      minStorageBufferOffsetAlignment: info.minStorageBufferOffsetAlignment,
    },
    features: new Set(info.features),
    lost: new Promise(() => {}),
    addEventListener() {},
    createBuffer: buffer,
    queue: { writeBuffer() {}, submit() {}, onSubmittedWorkDone: () => Promise.resolve() },
    destroy() {},
  } as unknown as GPUDevice;
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

/** What a dispatch binds and runs (`variant`: the kernel's typed variant, if it has any). */
type DispatchOptions<V = unknown> = VariantOption<V> & {
  dtype: DType;
  params: Params;
  bindings: readonly (Tensor | StorageBinding)[];
  groups: readonly [number, number, number];
};

/** The ops a scope recorded, the tensors it created and those that outlive it. */
type ScopeOp =
  | { dispatch: { kernel: KernelDef; options: DispatchOptions } }
  | { copy: { src: Tensor; dst: Tensor } }
  | { release: Tensor };

interface ScopeFrame {
  ops: ScopeOp[];
  created: Set<Tensor>;
  kept: Set<Tensor>;
  /** Tensors it created whose buffers went back already. */
  freed: Set<Tensor>;
}

/** Calls `visit` on every tensor in a scope's result (a tensor, or arrays / objects of them). */
function collectTensors(value: unknown, visit: (t: Tensor) => void, depth = 0): void {
  if (value instanceof Tensor) visit(value);
  else if (depth < 4 && Array.isArray(value)) {
    for (const v of value) collectTensors(v, visit, depth + 1);
  } else if (depth < 4 && value !== null && typeof value === "object") {
    for (const v of Object.values(value)) collectTensors(v, visit, depth + 1);
  }
}
