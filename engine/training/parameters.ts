/**
 * The trainable parameters of a trainer and their optimiser state: f32 tensors updated in place
 * on the GPU, AdamW moments beside each, the last step's gradients, the global gradient norm with
 * torch's clipping, and host access by name (gradients, parameters, resume).
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { GradientTape } from "../../kernels/autograd.ts";
import { adamw, type AdamWOptions, gradNorm } from "../../kernels/optimizer.ts";

/** AdamW settings of a trainer (torch.optim.AdamW names; the step is counted here). */
export type AdamWSettings = Omit<AdamWOptions, "step">;

/** The torch.optim.AdamW defaults, but lr 1e-4 (AnimateDiff's training configs). */
export const DEFAULT_ADAMW: AdamWSettings = {
  lr: 1e-4,
  betas: [0.9, 0.999],
  eps: 1e-8,
  weightDecay: 1e-2,
};

interface Entry {
  name: string;
  tensor: Tensor;
  m: Tensor;
  v: Tensor;
}

/**
 * Named f32 parameters being trained (see the module doc).
 *
 * @example
 * ```ts
 * const params = new TrainableParameters(gpu, [{ name: "w", tensor: w }], DEFAULT_ADAMW, 1);
 * params.watch(tape);
 * const norm = await params.update(tape.gradients(y, gy)); // one AdamW step
 * ```
 */
export class TrainableParameters {
  readonly #gpu: Gpu;
  readonly #entries: Entry[];
  readonly #adam: AdamWSettings;
  readonly #maxGradNorm: number;
  #grads = new Map<string, Tensor>();
  #steps = 0;

  constructor(
    gpu: Gpu,
    list: readonly { name: string; tensor: Tensor }[],
    adam: AdamWSettings,
    maxGradNorm = 0,
  ) {
    this.#gpu = gpu;
    this.#adam = adam;
    this.#maxGradNorm = maxGradNorm;
    this.#entries = list.map(({ name, tensor }) => {
      if (tensor.dtype !== "f32") throw new Error(`training: ${name} must be f32 (master weights)`);
      return {
        name,
        tensor,
        m: gpu.upload(new Float32Array(tensor.size), tensor.shape, "f32", "adam m"),
        v: gpu.upload(new Float32Array(tensor.size), tensor.shape, "f32", "adam v"),
      };
    });
  }

  /** Parameter names, in order. */
  get names(): string[] {
    return this.#entries.map((e) => e.name);
  }

  /** Updates taken so far. */
  get steps(): number {
    return this.#steps;
  }

  /** Marks every parameter as a leaf of `tape`. */
  watch(tape: GradientTape): void {
    for (const e of this.#entries) tape.watch(e.tensor);
  }

  /**
   * Takes this step's gradients (by tensor root, as GradientTape.gradients returns them; the
   * ones of other tensors are released), clips them by their global norm and applies AdamW.
   * Returns the norm before clipping.
   */
  async update(grads: Map<Tensor, Tensor>): Promise<number> {
    this.#releaseGrads();
    for (const e of this.#entries) {
      const g = grads.get(e.tensor.root);
      if (!g) throw new Error(`training: ${e.name} got no gradient (an unused parameter?)`);
      this.#grads.set(e.name, g);
      grads.delete(e.tensor.root);
    }
    for (const g of grads.values()) g.release();
    const gpu = this.#gpu;
    const stats = gradNorm(gpu, [...this.#grads.values()], { maxNorm: this.#maxGradNorm });
    const step = this.#steps + 1;
    for (const e of this.#entries) {
      const grad = this.#grads.get(e.name)!;
      adamw(gpu, { param: e.tensor, grad, m: e.m, v: e.v, stats }, { ...this.#adam, step });
    }
    try {
      const [norm] = await gpu.read(stats);
      this.#steps = step;
      return norm;
    } finally {
      stats.release();
    }
  }

  /** The last step's gradients (before clipping) by name. */
  async gradients(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, g] of this.#grads) out.set(name, await this.#gpu.read(g));
    return out;
  }

  /** The current values by name. */
  async values(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const e of this.#entries) out.set(e.name, await this.#gpu.read(e.tensor));
    return out;
  }

  /** Sets some parameters by name (all names checked first, so nothing changes on an error). */
  set(values: Map<string, Float32Array>): void {
    const byName = new Map(this.#entries.map((e) => [e.name, e]));
    for (const [name, data] of values) {
      const e = byName.get(name);
      if (!e) throw new InputError(`setParameters: ${name} is not a trainable parameter`);
      if (data.length !== e.tensor.size) {
        throw new InputError(
          `setParameters: ${name} has ${e.tensor.size} values, got ${data.length}`,
        );
      }
    }
    for (const [name, data] of values) {
      const e = byName.get(name)!;
      const tmp = this.#gpu.upload(data, e.tensor.shape, "f32", name);
      this.#gpu.copy(tmp, e.tensor);
      tmp.release();
    }
  }

  /** Frees the optimiser state and gradients (not the parameters: their owners free them). */
  dispose(): void {
    this.#releaseGrads();
    for (const e of this.#entries) {
      e.m.release();
      e.v.release();
    }
  }

  #releaseGrads(): void {
    for (const g of this.#grads.values()) g.release();
    this.#grads.clear();
  }
}
