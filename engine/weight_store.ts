/**
 * Strict, two-phase weight binding for model blocks, and the one description of each
 * architecture. Blocks declare each parameter with its canonical (diffusers) name and stored
 * shape while they are built; `loadAll()` then checks that every declared tensor exists with that
 * shape and that the file has no tensor nobody declared, reporting all problems in one error, and
 * streams the tensors to the GPU one by one. LoRA-merged tensors merge on the GPU as they arrive
 * (one fused GEMM per update). {@link WeightStore.describe} builds a model on a store with no
 * tensors and returns what it declared: the shape map that loading checks, the tiny-model
 * generator fills and LoRA names resolve against (engine/models/architecture.ts).
 * @module
 */

import type { Gpu } from "../kernels/gpu/device.ts";
import { type DType, fmtShape, numel, type Tensor } from "../kernels/gpu/tensor.ts";
import type { LowRankMerge, ShapeMap, TensorMap } from "../weights/types.ts";
import { matmul } from "../kernels/matmul.ts";
import { WINOGRAD_POINTS } from "../kernels/winograd.ts";
import { transposeInto, winogradFiltersInto } from "../kernels/weight_layout.ts";
import { InputError } from "../kernels/gpu/errors.ts";

/** A declared parameter; `t` is available after {@link WeightStore.loadAll}. */
export class Param {
  readonly name: string;
  readonly shape: readonly number[];
  /** The GPU shape (e.g. a 1x1 conv weight [C, C, 1, 1] used as a Linear [C, C]). */
  readonly gpuShape: readonly number[];
  /** What the weight is, for the layouts a store may keep it in (see {@link layout}). */
  readonly kind: ParamKind;
  #tensor: Tensor | null = null;
  #layout: ParamLayout = "stored";

  constructor(
    name: string,
    shape: readonly number[],
    gpuShape?: readonly number[],
    options: { kind?: ParamKind } = {},
  ) {
    this.name = name;
    this.shape = shape;
    this.gpuShape = gpuShape ?? shape;
    this.kind = options.kind ?? "other";
  }

  /** The uploaded tensor, in {@link layout}. */
  get t(): Tensor {
    if (!this.#tensor) throw new Error(`weight ${this.name} used before it was loaded`);
    return this.#tensor;
  }

  /**
   * How {@link t} holds the weight: as stored (gpuShape), a Linear weight transposed to
   * [in, out], or a 3x3 conv weight as Winograd-transformed filters [16, out, in]
   * (inference stores on software adapters; see {@link WeightStoreOptions}).
   */
  get layout(): ParamLayout {
    return this.#layout;
  }

  /** @internal */
  set(t: Tensor | null, layout: ParamLayout = "stored"): void {
    this.#tensor = t;
    this.#layout = t === null ? "stored" : layout;
  }
}

/**
 * What a parameter is: a Linear's weight [out, in], the weight of a 3x3 / stride 1 / padding 1
 * convolution [out, in, 3, 3], or anything else.
 */
export type ParamKind = "linear" | "conv3x3" | "other";
/** The layout of a loaded parameter (see {@link Param.layout}). */
export type ParamLayout = "stored" | "in-out" | "winograd";

/** Options of a {@link WeightStore}. */
export interface WeightStoreOptions {
  dtype: DType;
  /** Names the errors use ("unet", "vae", ...). */
  part: string;
  /** Names present in the map that may stay unused (e.g. buffers). */
  ignore?: (name: string) => boolean;
  /**
   * Keep Linear weights as [in, out] (transposed once, at load): the direct GEMM of software
   * adapters multiplies by a [K, N] operand 1.6x faster than by an [N, K] one (bench/NOTES.md).
   * Inference stores only: the training backward needs the [out, in] layout.
   */
  transposeLinear?: boolean;
  /**
   * Keep 3x3 / stride 1 convolution weights as Winograd-transformed filters (f32 stores only;
   * kernels/winograd.ts): 2.25x fewer multiply-adds on software adapters. Inference only.
   */
  winograd?: boolean;
}

/** Options of {@link WeightStore.loadAll}. */
export interface LoadProgress {
  onProgress?: (done: number, total: number) => void;
}

/** Parameters of one model part bound to one TensorMap. */
export class WeightStore {
  readonly #gpu: Gpu | null;
  readonly #tensors: TensorMap;
  readonly #dtype: DType;
  readonly #part: string;
  readonly #params = new Map<string, Param>();
  /** Names present in the map that are allowed to stay unused (e.g. buffers). */
  readonly #ignored: (name: string) => boolean;
  readonly #transposeLinear: boolean;
  readonly #winograd: boolean;

  constructor(gpu: Gpu | null, tensors: TensorMap, options: WeightStoreOptions) {
    this.#gpu = gpu;
    this.#tensors = tensors;
    this.#dtype = options.dtype;
    this.#part = options.part;
    this.#ignored = options.ignore ?? (() => false);
    this.#transposeLinear = options.transposeLinear ?? false;
    this.#winograd = (options.winograd ?? false) && options.dtype === "f32";
  }

  /** The storage dtype of this part's tensors on the GPU. */
  get dtype(): DType {
    return this.#dtype;
  }

  /**
   * Declares a parameter `prefix + name` of `shape` (optionally viewed as `gpuShape`); `kind`
   * says what it is, for the layouts the store may keep it in.
   */
  param(
    name: string,
    shape: readonly number[],
    gpuShape?: readonly number[],
    options: { kind?: ParamKind } = {},
  ): Param {
    if (this.#params.has(name)) return this.#params.get(name)!;
    const p = new Param(name, shape, gpuShape, options);
    this.#params.set(name, p);
    return p;
  }

  /**
   * What a model declares, by name, with stored shapes, in declaration order: runs `build`
   * (which constructs model blocks on the store it is given) on a store with no tensors.
   *
   * @example
   * ```ts
   * const shapes = WeightStore.describe((w) => new VaeDecoder(w, config));
   * shapes.get("decoder.conv_in.weight"); // [512, 4, 3, 3]
   * ```
   */
  static describe(build: (w: WeightStore) => void): ShapeMap {
    const w = new WeightStore(null, new Map(), { dtype: "f32", part: "description" });
    build(w);
    return new Map([...w.#params.values()].map((p) => [p.name, [...p.shape]]));
  }

  /** Validates names and shapes, then uploads every declared tensor. */
  async loadAll({ onProgress }: LoadProgress = {}): Promise<void> {
    const missing: string[] = [];
    const wrong: string[] = [];
    for (const p of this.#params.values()) {
      const h = this.#tensors.get(p.name);
      if (!h) missing.push(p.name);
      else if (numel(h.shape) !== numel(p.shape) || !sameShape(h.shape, p.shape)) {
        wrong.push(`${p.name} ${fmtShape(h.shape)} (expected ${fmtShape(p.shape)})`);
      }
    }
    const unused = [...this.#tensors.keys()].filter((n) =>
      !this.#params.has(n) && !this.#ignored(n)
    );
    const problems: string[] = [];
    const list = (xs: string[]) =>
      xs.slice(0, 8).join(", ") + (xs.length > 8 ? `, ... (${xs.length} in all)` : "");
    if (missing.length) problems.push(`missing ${missing.length} tensors: ${list(missing)}`);
    if (wrong.length) problems.push(`wrong shape: ${list(wrong)}`);
    if (unused.length) problems.push(`unexpected ${unused.length} tensors: ${list(unused)}`);
    if (problems.length) throw new InputError(`${this.#part} weights: ${problems.join("; ")}`);
    const gpu = this.#gpu;
    if (!gpu) throw new Error(`${this.#part}: a description has no GPU to load onto`);
    let done = 0, merged = 0;
    const total = this.#params.size;
    for (const p of this.#params.values()) {
      const h = this.#tensors.get(p.name)!;
      const label = `${this.#part}.${p.name}`;
      const layout: ParamLayout = this.#transposeLinear && p.kind === "linear"
        ? "in-out"
        : this.#winograd && p.kind === "conv3x3" && p.gpuShape[1] % 4 === 0
        ? "winograd"
        : "stored";
      const [rows, cols] = p.gpuShape;
      const shape = layout === "in-out"
        ? [cols, rows]
        : layout === "winograd"
        ? [WINOGRAD_POINTS, rows, cols]
        : p.gpuShape;
      if (gpu.virtual) {
        // Planning: what the weight costs, without reading it.
        p.set(gpu.reserve(shape, this.#dtype, label), layout);
      } else {
        let t: Tensor;
        if (h.lowRank) {
          t = await this.#mergeOnGpu(gpu, h.lowRank, p.gpuShape, label);
          merged++;
        } else t = gpu.createPersistent(await h.read(), p.gpuShape, this.#dtype, label);
        p.set(layout === "stored" ? t : relaid(gpu, t, layout, shape, label), layout);
      }
      onProgress?.(++done, total);
    }
    if (merged > 0) {
      // The merges' scratch buffers (up to 3x the largest merged weight) go back to the driver.
      await gpu.sync();
      gpu.pool.trim();
    }
  }

  /**
   * Uploads `base` and adds each `factor * up @ down` on the GPU as one GEMM with the weight as
   * the fused residual, in this part's dtype (f32 accumulation; f16 parts round the sum once).
   */
  async #mergeOnGpu(
    gpu: Gpu,
    m: LowRankMerge,
    shape: readonly number[],
    label: string,
  ): Promise<Tensor> {
    const w = gpu.createPersistent(await m.base.read(), shape, this.#dtype, label);
    const rows = m.base.shape[0], cols = numel(m.base.shape) / rows;
    for (const u of m.updates) {
      const [upData, downData] = [await u.up.read(), await u.down.read()];
      const rank = u.down.shape[0];
      gpu.scope(() => {
        const up = gpu.upload(upData, [rows, rank], this.#dtype, `${label} lora up`);
        const down = gpu.upload(downData, [rank, cols], this.#dtype, `${label} lora down`);
        const sum = matmul(gpu, up, down, { alpha: u.factor, residual: w.reshape([rows, cols]) });
        gpu.copy(sum, w);
      });
    }
    return w;
  }

  /**
   * The declared parameters as a tensor map of shapes only (reading one is an error): builds the
   * same model again on a virtual Gpu for planning, without the weights.
   */
  shapeMap(): TensorMap {
    const map: TensorMap = new Map();
    for (const p of this.#params.values()) {
      map.set(p.name, {
        shape: [...p.shape],
        dtype: "F32",
        read: () => Promise.reject(new Error(`${p.name}: a planning copy has no weights`)),
      });
    }
    return map;
  }

  /** The declared parameters, in declaration order. */
  get params(): readonly Param[] {
    return [...this.#params.values()];
  }

  /** Number of declared parameters' elements. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.#params.values()) n += numel(p.shape);
    return n;
  }

  /** Releases every uploaded tensor. */
  dispose(): void {
    for (const p of this.#params.values()) {
      try {
        p.t.release();
      } catch { /* never loaded */ }
      p.set(null);
    }
  }
}

/**
 * `w` (as stored) in `layout`, transformed on the GPU into a new persistent tensor of `shape`
 * (kernels/weight_layout.ts); releases `w` once the transform is submitted.
 */
function relaid(
  gpu: Gpu,
  w: Tensor,
  layout: Exclude<ParamLayout, "stored">,
  shape: readonly number[],
  label: string,
): Tensor {
  const out = gpu.reserve(shape, w.dtype, label);
  if (layout === "in-out") transposeInto(gpu, w, out);
  else winogradFiltersInto(gpu, w, out);
  gpu.submit();
  w.release();
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  // Linear weights stored as 1x1 convs ([C, C, 1, 1]) and vice versa are the same data.
  const strip = (s: readonly number[]) => {
    const out = [...s];
    while (out.length > 2 && out[out.length - 1] === 1) out.pop();
    return out;
  };
  const x = strip(a), y = strip(b);
  return x.length === y.length && x.every((d, i) => d === y[i]);
}
