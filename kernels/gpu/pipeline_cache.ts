/**
 * Compute pipelines cached by (kernel, dtype, variant) — never by shape. Creation is synchronous
 * so launchers can record without awaiting; WGSL compilation and validation errors are collected
 * asynchronously and rethrown (naming the kernel) at the next flush or readback.
 * @module
 */

import { type KernelDef, type KernelOptions, paramsAsStorage } from "./kernel.ts";

/** WGSL compilation or pipeline validation failure. */
export class KernelCompileError extends Error {
  override name = "KernelCompileError";
}

/** Pipeline cache of one device. */
export class PipelineCache {
  readonly #device: GPUDevice;
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly #checks: Promise<void>[] = [];
  #error: KernelCompileError | null = null;
  /** Params read from a storage buffer (software adapters, see `paramsAsStorage`). */
  readonly paramsInStorage: boolean;

  constructor(device: GPUDevice, options: { paramsInStorage?: boolean } = {}) {
    this.#device = device;
    this.paramsInStorage = options.paramsInStorage ?? false;
  }

  /** Number of compiled pipelines. */
  get size(): number {
    return this.#pipelines.size;
  }

  /** Keys (`kernel:dtype:variant key`) of the compiled pipelines, oldest first. */
  get keys(): string[] {
    return [...this.#pipelines.keys()];
  }

  /** The cache key of a kernel variant (its variant part from `kernel.key`). */
  static key<V>(kernel: KernelDef<V>, o: KernelOptions<V>): string {
    return `${kernel.name}:${o.dtype}:${kernel.key(o.variant)}`;
  }

  /** Returns the pipeline, creating it on first use. */
  get<V>(kernel: KernelDef<V>, o: KernelOptions<V>): GPUComputePipeline {
    const key = PipelineCache.key(kernel, o);
    const ready = this.#pipelines.get(key);
    if (ready) return ready;
    const device = this.#device;
    const source = kernel.source(o);
    const code = this.paramsInStorage ? paramsAsStorage(source) : source;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code, label: key });
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: key,
    });
    const scope = device.popErrorScope();
    this.#checks.push(
      (async () => {
        const info = await module.getCompilationInfo();
        const errors = info.messages.filter((m) => m.type === "error");
        const err = await scope;
        if (errors.length || err) {
          const detail = errors.length
            ? errors.map((m) => `line ${m.lineNum}:${m.linePos} ${m.message}`).join("; ")
            : err!.message;
          this.#error ??= new KernelCompileError(`kernel ${key}: ${detail}`);
          this.#pipelines.delete(key);
        }
      })(),
    );
    this.#pipelines.set(key, pipeline);
    return pipeline;
  }

  /** Waits for pending compilation checks; returns (and clears) the first failure. */
  async takeError(): Promise<KernelCompileError | null> {
    if (this.#checks.length) await Promise.all(this.#checks.splice(0));
    const e = this.#error;
    this.#error = null;
    return e;
  }
}
