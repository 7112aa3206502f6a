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
import { InputError } from "../kernels/gpu/errors.ts";

/** A declared parameter; `t` is available after {@link WeightStore.loadAll}. */
export class Param {
  readonly name: string;
  readonly shape: readonly number[];
  /** The GPU shape (e.g. a 1x1 conv weight [C, C, 1, 1] used as a Linear [C, C]). */
  readonly gpuShape: readonly number[];
  #tensor: Tensor | null = null;

  constructor(name: string, shape: readonly number[], gpuShape?: readonly number[]) {
    this.name = name;
    this.shape = shape;
    this.gpuShape = gpuShape ?? shape;
  }

  /** The uploaded tensor. */
  get t(): Tensor {
    if (!this.#tensor) throw new Error(`weight ${this.name} used before it was loaded`);
    return this.#tensor;
  }

  /** @internal */
  set(t: Tensor | null): void {
    this.#tensor = t;
  }
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

  constructor(
    gpu: Gpu | null,
    tensors: TensorMap,
    options: { dtype: DType; part: string; ignore?: (name: string) => boolean },
  ) {
    this.#gpu = gpu;
    this.#tensors = tensors;
    this.#dtype = options.dtype;
    this.#part = options.part;
    this.#ignored = options.ignore ?? (() => false);
  }

  /** The storage dtype of this part's tensors on the GPU. */
  get dtype(): DType {
    return this.#dtype;
  }

  /** Declares a parameter `prefix + name` of `shape` (optionally viewed as `gpuShape`). */
  param(name: string, shape: readonly number[], gpuShape?: readonly number[]): Param {
    if (this.#params.has(name)) return this.#params.get(name)!;
    const p = new Param(name, shape, gpuShape);
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
      if (gpu.virtual) {
        // Planning: what the weight costs, without reading it.
        p.set(gpu.reserve(p.gpuShape, this.#dtype, label));
      } else if (h.lowRank) {
        p.set(await this.#mergeOnGpu(gpu, h.lowRank, p.gpuShape, label));
        merged++;
      } else {
        p.set(gpu.createPersistent(await h.read(), p.gpuShape, this.#dtype, label));
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
