/**
 * Kernel definitions and their uniform parameters. A kernel is a named WGSL source generator;
 * only dtype, variant and workgroup size are compile-time, sizes go in the uniform `Params`.
 *
 * Binding convention for every kernel: `@group(0) @binding(0) var<uniform> p: Params;` then the
 * storage buffers from binding 1 in the order the launcher passes them. Every declared binding
 * must be used by the shader (pipelines use the automatic layout). On software adapters the
 * params are read from a read-only storage buffer instead (see {@link paramsAsStorage}).
 * @module
 */

import type { DType } from "./tensor.ts";

/** Compile-time options of a kernel: the storage dtype and the kernel's typed variant. */
export interface KernelOptions<V = unknown> {
  dtype: DType;
  /** The kernel's own compile-time choices (e.g. `{ vec: true, transB: false }`). */
  variant: V;
}

/**
 * A named WGSL kernel family whose compile-time variants are values of type `V` (`undefined`
 * for a kernel with none).
 */
export interface KernelDef<V = unknown> {
  readonly name: string;
  /**
   * The variant's part of the pipeline cache key (`kernel:dtype:key`) and of the
   * `Gpu.dispatchCounts()` keys (`kernel:key`): equal keys must mean equal sources.
   */
  key(variant: V): string;
  /** WGSL source for the given compile-time options. */
  source(options: KernelOptions<V>): string;
}

/** How {@link defineKernel} names and builds the variants of a kernel family. */
export interface KernelVariants<V> {
  /** The cache-key part of a variant (see {@link KernelDef.key}). */
  key: (variant: V) => string;
  /** WGSL source of one dtype and variant. */
  source: (options: KernelOptions<V>) => string;
}

/**
 * The `variant` field of a dispatch of a `KernelDef<V>`: required unless the kernel has no
 * variants.
 */
export type VariantOption<V> = undefined extends V ? { variant?: V } : { variant: V };

/**
 * Declares a kernel: with only a source, a kernel without variants; with `{ key, source }`, a
 * family whose variants are typed objects, cached by `key(variant)`.
 *
 * @example
 * ```ts
 * const copy = defineKernel<{ vec: boolean }>("copy", {
 *   key: (v) => (v.vec ? "v4" : "s"),
 *   source: ({ dtype, variant }) => `${wgslDType(dtype)} ...`,
 * });
 * ```
 */
export function defineKernel(
  name: string,
  source: (options: KernelOptions<undefined>) => string,
): KernelDef<undefined>;
export function defineKernel<V>(name: string, variants: KernelVariants<V>): KernelDef<V>;
export function defineKernel<V>(
  name: string,
  spec: KernelVariants<V> | ((options: KernelOptions<V>) => string),
): KernelDef<V> {
  const { key, source } = typeof spec === "function" ? { key: () => "", source: spec } : spec;
  return { name, key, source };
}

/**
 * WGSL prelude for a storage dtype: `T` is the storage scalar, `T4` its vec4; math is f32.
 * f16 needs the `shader-f16` feature.
 */
export function wgslDType(dtype: DType): string {
  return dtype === "f16"
    ? "enable f16;\nalias T = f16;\nalias T4 = vec4<f16>;\n"
    : "alias T = f32;\nalias T4 = vec4<f32>;\n";
}

/** Builder of a uniform params block of 4-byte scalars (u32 / i32 / f32), in WGSL struct order. */
export class Params {
  readonly #view = new DataView(new ArrayBuffer(256));
  #n = 0;

  #slot(): number {
    const o = this.#n * 4;
    if (o >= 256) throw new Error("Params: at most 64 scalars");
    this.#n++;
    return o;
  }

  /** Appends an unsigned 32-bit integer. */
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new Error(`Params: u32 out of range: ${v}`);
    }
    this.#view.setUint32(this.#slot(), v, true);
    return this;
  }

  /** Appends a signed 32-bit integer. */
  i32(v: number): this {
    this.#view.setInt32(this.#slot(), v, true);
    return this;
  }

  /** Appends a 32-bit float. */
  f32(v: number): this {
    this.#view.setFloat32(this.#slot(), v, true);
    return this;
  }

  /** The bytes, padded to a multiple of 16 (uniform struct size rule). */
  bytes(): Uint8Array {
    const len = Math.max(16, Math.ceil((this.#n * 4) / 16) * 16);
    return new Uint8Array(this.#view.buffer, 0, len);
  }
}

/** The params declaration every kernel uses (binding 0). */
const UNIFORM_PARAMS = /var<uniform>\s+p\s*:\s*Params\s*;/g;

/**
 * `code` with its params block (`var<uniform> p: Params;`) declared as a read-only storage
 * buffer. Used on software adapters: Mesa's lavapipe (22.x) specialises a shader on the values
 * of uniforms that bound its loops each time a new bind group is bound, compiling a fresh copy
 * per dispatch (~1 ms to ~0.3 s) and never freeing it (~0.3 MB per dispatch of a GEMM); it does
 * not do this for storage buffers. Params hold only 4-byte scalars, so both layouts agree.
 *
 * @example
 * ```ts
 * paramsAsStorage("@group(0) @binding(0) var<uniform> p: Params;");
 * // "@group(0) @binding(0) var<storage, read> p: Params;"
 * ```
 */
export function paramsAsStorage(code: string): string {
  return code.replace(UNIFORM_PARAMS, "var<storage, read> p: Params;");
}

/** Largest workgroup count per grid dimension WebGPU guarantees. */
export const MAX_GROUPS_PER_DIM = 65535;

/**
 * Spreads `groups` workgroups over x and y so neither exceeds 65535. Shaders recover the linear
 * id as `wid.x + wid.y * nwg.x` and must ignore ids >= the real count.
 */
export function grid1d(groups: number): [number, number, number] {
  if (groups <= MAX_GROUPS_PER_DIM) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIM);
  const x = Math.ceil(groups / y);
  return [x, y, 1];
}

/** Integer ceiling division. */
export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}
