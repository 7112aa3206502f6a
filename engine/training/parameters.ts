/**
 * The trainable parameters of a trainer and their optimiser state: f32 tensors updated in place
 * on the GPU, AdamW moments beside each, the last step's gradients, the global gradient norm with
 * torch's clipping, the learning-rate schedule, and host access by name (gradients, parameters,
 * resume). Mixed precision: the model computes with f16 working copies of f32 master weights;
 * the loss is scaled dynamically as torch's GradScaler does (start 2^16, halve and skip the
 * update when a gradient overflows, double after 2000 good steps).
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import type { GradientTape } from "./autograd.ts";
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
  /** What the model computes with (and the tape watches): the f32 master, or its f16 copy. */
  tensor: Tensor;
  /** The f32 master weights (the same tensor in f32 training). */
  master: Tensor;
  m: Tensor;
  v: Tensor;
}

/** A learning-rate schedule as diffusers' get_scheduler: linear warm-up, then constant or cosine. */
export interface LrSchedule {
  kind: "constant" | "cosine";
  /** Steps of linear warm-up from 0 (default 0). */
  warmupSteps?: number;
  /** cosine: the step at which the rate reaches 0. */
  totalSteps?: number;
}

/**
 * Trainable sets up to this many values keep host copies of their gradients and weights after
 * every step (one batched readback), so that `gradients()` and `parameters()` answer at once;
 * larger ones are read on request (`readGradients()`, `readParameters()`).
 */
export const HOST_MIRROR_MAX_VALUES = 2 ** 26;

/** torch.cuda.amp.GradScaler's defaults. */
const LOSS_SCALE_START = 2 ** 16, LOSS_SCALE_GROWTH_INTERVAL = 2000;

/**
 * The learning-rate factor of (0-based) update `k`, as diffusers' schedules with warm-up:
 * k / warmup during warm-up, then 1 (constant) or 0.5 (1 + cos(pi * progress)) (cosine).
 *
 * @example
 * ```ts
 * lrFactor({ kind: "cosine", warmupSteps: 10, totalSteps: 110 }, 60); // 0.5
 * ```
 */
export function lrFactor(s: LrSchedule, k: number): number {
  const warmup = s.warmupSteps ?? 0;
  if (k < warmup) return k / Math.max(1, warmup);
  if (s.kind === "constant") return 1;
  const total = s.totalSteps ?? 0;
  const progress = (k - warmup) / Math.max(1, total - warmup);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}

/** The optimiser state of a trainer (see TrainableParameters.exportState). */
export interface ParameterState {
  steps: number;
  lossScale: number;
  goodSteps: number;
  tensors: { name: string; shape: number[]; data: Float32Array }[];
}

/** What one update did. */
export interface UpdateResult {
  /** Global gradient norm before clipping (of the unscaled gradients). */
  norm: number;
  /** Mixed precision: a gradient overflowed, so the update was skipped and the scale halved. */
  skipped: boolean;
}

/**
 * Named f32 parameters being trained (see the module doc).
 *
 * @example
 * ```ts
 * const params = new TrainableParameters(gpu, [{ name: "w", tensor: w }], DEFAULT_ADAMW);
 * params.watch(tape);
 * const { norm } = await params.update(tape.gradients(y, gy)); // one AdamW step
 * ```
 */
export class TrainableParameters {
  readonly #gpu: Gpu;
  readonly #entries: Entry[];
  readonly #adam: AdamWSettings;
  readonly #maxGradNorm: number;
  readonly #schedule: LrSchedule;
  #grads = new Map<string, Tensor>();
  #steps = 0;
  /** Mixed precision: the current loss scale (1 in f32) and good updates since it last grew. */
  #scale: number;
  #goodSteps = 0;
  /** Host copies (small sets only, see HOST_MIRROR_MAX_VALUES): last gradients and weights. */
  readonly #mirrored: boolean;
  #hostGrads = new Map<string, Float32Array>();
  #hostValues = new Map<string, Float32Array>();

  /**
   * `list`: each parameter's tensor as the model uses it; an f16 one needs `initial`, the f32
   * values its master copy starts from.
   */
  constructor(
    gpu: Gpu,
    list: readonly { name: string; tensor: Tensor; initial?: Float32Array }[],
    adam: AdamWSettings,
    options: { maxGradNorm?: number; schedule?: LrSchedule; lossScale?: number } = {},
  ) {
    this.#gpu = gpu;
    this.#adam = adam;
    this.#maxGradNorm = options.maxGradNorm ?? 0;
    this.#schedule = options.schedule ?? { kind: "constant" };
    const mixed = list.some((e) => e.tensor.dtype !== "f32");
    this.#scale = mixed ? options.lossScale ?? LOSS_SCALE_START : 1;
    this.#mirrored = list.reduce((n, e) => n + e.tensor.size, 0) <= HOST_MIRROR_MAX_VALUES;
    this.#entries = list.map(({ name, tensor, initial }) => {
      let master = tensor;
      if (tensor.dtype !== "f32") {
        if (!initial) {
          throw new Error(`training: ${name} is ${tensor.dtype}; its f32 values are needed`);
        }
        master = gpu.upload(initial, tensor.shape, "f32", `${name} (master)`);
      }
      return {
        name,
        tensor,
        master,
        m: gpu.upload(new Float32Array(tensor.size), tensor.shape, "f32", "adam m"),
        v: gpu.upload(new Float32Array(tensor.size), tensor.shape, "f32", "adam v"),
      };
    });
  }

  /** The factor the loss is multiplied by before the backward (1 in f32 training). */
  get lossScale(): number {
    return this.#scale;
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
   * Takes this step's gradients (by tensor root, as GradientTape.gradients returns them, scaled
   * by {@link lossScale}; the ones of other tensors are released), clips them by their global
   * norm and applies AdamW at the scheduled rate.
   */
  async update(grads: Map<Tensor, Tensor>): Promise<UpdateResult> {
    this.#releaseGrads();
    for (const e of this.#entries) {
      const g = grads.get(e.tensor.root);
      if (!g) throw new Error(`training: ${e.name} got no gradient (an unused parameter?)`);
      this.#grads.set(e.name, g);
      grads.delete(e.tensor.root);
    }
    for (const g of grads.values()) g.release();
    const gpu = this.#gpu;
    const stats = gradNorm(gpu, [...this.#grads.values()], {
      maxNorm: this.#maxGradNorm,
      lossScale: this.#scale,
    });
    try {
      const mixed = this.#scale !== 1 || this.#entries.some((e) => e.master !== e.tensor);
      if (mixed) {
        // GradScaler: an overflow skips the update and halves the scale.
        const [norm] = await gpu.read(stats);
        if (!Number.isFinite(norm)) {
          await this.#mirror();
          this.#scale /= 2;
          this.#goodSteps = 0;
          return { norm, skipped: true };
        }
      }
      const step = this.#steps + 1;
      const lr = this.#adam.lr * lrFactor(this.#schedule, this.#steps);
      for (const e of this.#entries) {
        const grad = this.#grads.get(e.name)!;
        const working = e.master === e.tensor ? undefined : e.tensor;
        adamw(gpu, { param: e.master, grad, m: e.m, v: e.v, stats, working }, {
          ...this.#adam,
          lr,
          step,
        });
      }
      const [norm] = await gpu.read(stats);
      this.#steps = step;
      await this.#mirror();
      if (mixed && ++this.#goodSteps === LOSS_SCALE_GROWTH_INTERVAL) {
        this.#scale *= 2;
        this.#goodSteps = 0;
      }
      return { norm, skipped: false };
    } finally {
      stats.release();
    }
  }

  /** Whether host copies are kept (see HOST_MIRROR_MAX_VALUES). */
  get mirrored(): boolean {
    return this.#mirrored;
  }

  /** Refreshes the host copies of the gradients (unscaled) and the weights in one readback. */
  async #mirror(): Promise<void> {
    if (!this.#mirrored) return;
    const names = [...this.#grads.keys()];
    const all = await this.#gpu.readMany([
      ...names.map((n) => this.#grads.get(n)!),
      ...this.#entries.map((e) => e.master),
    ]);
    this.#hostGrads = new Map(names.map((n, i) => [n, this.#unscale(all[i])]));
    this.#hostValues = new Map(this.#entries.map((e, i) => [e.name, all[names.length + i]]));
  }

  /** Reads the weights into the host copies (after construction). */
  async init(): Promise<void> {
    await this.#mirror();
  }

  #unscale(v: Float32Array): Float32Array {
    return this.#scale === 1 ? v : v.map((x) => x / this.#scale);
  }

  /** The last step's gradients (before clipping) by name, from the host copies. */
  gradients(): Map<string, Float32Array> {
    this.#needMirror("gradients", "readGradients");
    return new Map(this.#hostGrads);
  }

  /** The current weights by name, from the host copies. */
  values(): Map<string, Float32Array> {
    this.#needMirror("parameters", "readParameters");
    return new Map(this.#hostValues);
  }

  /** The last step's gradients (before clipping) by name, read from the GPU. */
  async readGradients(): Promise<Map<string, Float32Array>> {
    const names = [...this.#grads.keys()];
    const all = await this.#gpu.readMany(names.map((n) => this.#grads.get(n)!));
    return new Map(names.map((n, i) => [n, this.#unscale(all[i])]));
  }

  /** The current weights by name, read from the GPU. */
  async readValues(): Promise<Map<string, Float32Array>> {
    const all = await this.#gpu.readMany(this.#entries.map((e) => e.master));
    return new Map(this.#entries.map((e, i) => [e.name, all[i]]));
  }

  #needMirror(what: string, instead: string): void {
    if (this.#mirrored) return;
    const n = this.#entries.reduce((s, e) => s + e.tensor.size, 0);
    throw new Error(
      `trainer.${what}(): ${n} trainable values are too many to copy to the host every step; ` +
        `use await trainer.${instead}()`,
    );
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
      for (const t of e.master === e.tensor ? [e.tensor] : [e.master, e.tensor]) {
        const tmp = this.#gpu.upload(data, t.shape, t.dtype, name);
        this.#gpu.copy(tmp, t);
        tmp.release();
      }
      if (this.#mirrored) this.#hostValues.set(name, Float32Array.from(data));
    }
  }

  /**
   * Everything an exact resume needs, by tensor name: the f32 master weights (`param.<name>`),
   * AdamW's moments (`adam_m.<name>`, `adam_v.<name>`), and the counters (updates, loss scale).
   */
  async exportState(): Promise<ParameterState> {
    const tensors = this.#entries.flatMap((e) => [
      { name: `param.${e.name}`, t: e.master },
      { name: `adam_m.${e.name}`, t: e.m },
      { name: `adam_v.${e.name}`, t: e.v },
    ]);
    const values = await this.#gpu.readMany(tensors.map((x) => x.t));
    return {
      steps: this.#steps,
      lossScale: this.#scale,
      goodSteps: this.#goodSteps,
      tensors: tensors.map((x, i) => ({ name: x.name, shape: [...x.t.shape], data: values[i] })),
    };
  }

  /** Restores {@link exportState}'s state (every tensor checked before anything changes). */
  async importState(state: ParameterState): Promise<void> {
    const byName = new Map(state.tensors.map((t) => [t.name, t]));
    const targets: { t: Tensor; data: Float32Array; working?: Tensor }[] = [];
    for (const e of this.#entries) {
      for (const [prefix, t] of [["param", e.master], ["adam_m", e.m], ["adam_v", e.v]] as const) {
        const x = byName.get(`${prefix}.${e.name}`);
        if (!x || x.data.length !== t.size) {
          throw new InputError(
            `checkpoint: ${prefix}.${e.name} is ${
              x ? `${x.data.length} values, not ${t.size}` : "missing"
            }`,
          );
        }
        targets.push({
          t,
          data: x.data,
          working: prefix === "param" && e.master !== e.tensor ? e.tensor : undefined,
        });
      }
    }
    if (byName.size !== targets.length) {
      throw new InputError(
        `checkpoint: ${
          byName.size - targets.length
        } tensors that this trainer does not have (another train target or model?)`,
      );
    }
    for (const { t, data, working } of targets) {
      for (const dst of working ? [t, working] : [t]) {
        const tmp = this.#gpu.upload(data, dst.shape, dst.dtype, "checkpoint");
        this.#gpu.copy(tmp, dst);
        tmp.release();
      }
    }
    this.#steps = state.steps;
    this.#scale = state.lossScale;
    this.#goodSteps = state.goodSteps;
    this.#releaseGrads();
    this.#hostGrads = new Map();
    await this.#mirror();
  }

  /** Frees the optimiser state and gradients (not the parameters: their owners free them). */
  dispose(): void {
    this.#releaseGrads();
    for (const e of this.#entries) {
      e.m.release();
      e.v.release();
      if (e.master !== e.tensor) e.master.release();
    }
  }

  /**
   * Frees the last step's gradients on the GPU (their host copies stay): a step calls it before
   * its backward, so two steps' gradients are never held at once.
   */
  dropGradients(): void {
    this.#releaseGrads();
  }

  #releaseGrads(): void {
    for (const g of this.#grads.values()) g.release();
    this.#grads.clear();
  }
}
