/**
 * GPU tensors: a shape, an element type and a storage buffer (owned, from the pool, or a view
 * that shares another tensor's buffer).
 * @module
 */

/** Element types of GPU tensors. f16 tensors hold IEEE half values; math accumulates in f32. */
export type DType = "f32" | "f16";

/** Bytes per element of a GPU dtype. */
export function dtypeBytes(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Formats a shape for error messages: `[2, 320, 64, 64]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Byte size of a tensor's buffer: storage bindings need a multiple of 4 bytes. */
export function tensorByteSize(shape: readonly number[], dtype: DType): number {
  const bytes = numel(shape) * dtypeBytes(dtype);
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

/**
 * The shape of `count` of a shape's `units` equal items: the leading dims up to the first whose
 * product is a multiple of `units` become one dim, the trailing dims stay.
 */
function windowShape(shape: readonly number[], units: number, count: number): number[] {
  let p = 1;
  for (let i = 0; i < shape.length; i++) {
    p *= shape[i];
    if (p % units === 0) return [count * (p / units), ...shape.slice(i + 1)];
  }
  return [count * (p / units)];
}

/**
 * Who gives a tensor's memory back when it is released: the Gpu for pooled tensors (at once, or
 * after the last use recorded in a scope), or the weight store for persistent ones.
 */
export interface TensorOwner {
  /** Called once with the released tensor (never a view). */
  releaseTensor(t: Tensor): void;
}

/**
 * A tensor on the GPU: a shape, an element type and (a range of) a storage buffer. A tensor may be
 * a reshape or a window (`byteOffset`) of another one's buffer; kernels bind just that range,
 * which is how launchers split work on tensors larger than one storage binding. Inside a
 * {@link Gpu.scope} a new tensor gets its buffer when the first op that uses it runs, and gives
 * it back after the last one.
 */
export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Where the elements start in the buffer (0 unless this is a window of a larger tensor). */
  readonly byteOffset: number;
  /** A debugging label (kernel or weight name). */
  readonly label: string;
  #buffer: GPUBuffer | null;
  #owner: TensorOwner | null;
  #base: Tensor | null;
  #released = false;
  /** A reshape of a whole tensor: releasing it releases the base. */
  #alias = false;
  /** A window (part) of another tensor: releasing it does nothing. */
  #window = false;

  /**
   * A tensor over `buffer` (null: allocated later, by its owner) or, with `base`, a view of
   * another tensor's buffer.
   */
  constructor(
    buffer: GPUBuffer | null,
    shape: readonly number[],
    dtype: DType,
    options: { owner?: TensorOwner | null; label?: string; base?: Tensor; byteOffset?: number } =
      {},
  ) {
    this.#buffer = options.base ? null : buffer;
    this.byteOffset = options.byteOffset ?? 0;
    this.shape = [...shape];
    this.dtype = dtype;
    this.label = options.label ?? "tensor";
    this.#owner = options.owner ?? null;
    this.#base = options.base ?? null;
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new Error(`tensor ${this.label}: invalid shape ${fmtShape(shape)}`);
      }
    }
    if (buffer) this.#checkFits(buffer);
  }

  #checkFits(buffer: GPUBuffer): void {
    const need = numel(this.shape) * dtypeBytes(this.dtype);
    if (this.byteOffset + need > buffer.size) {
      throw new Error(
        `tensor ${this.label}: shape ${fmtShape(this.shape)} ${this.dtype} at byte ` +
          `${this.byteOffset} needs ${need} bytes, buffer has ${buffer.size}`,
      );
    }
  }

  /** The tensor whose buffer this one views (itself when it is not a view). */
  get root(): Tensor {
    return this.#base ?? this;
  }

  /** The storage buffer (throws while a scope has not yet given the tensor one). */
  get buffer(): GPUBuffer {
    const b = this.root.#buffer;
    if (!b) throw new Error(`tensor ${this.label} has no buffer yet (its scope has not run it)`);
    return b;
  }

  /** True while the tensor waits for its buffer (created in a scope, not yet run). */
  get pending(): boolean {
    return this.root.#buffer === null;
  }

  /**
   * Gives a pending tensor its buffer (the runtime does, when the first op using it runs).
   * @ignore
   */
  materialize(buffer: GPUBuffer): void {
    if (this.#base || this.#buffer) throw new Error(`tensor ${this.label} already has a buffer`);
    this.#checkFits(buffer);
    this.#buffer = buffer;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Bytes used by the elements (not the buffer's rounded size). */
  get byteLength(): number {
    return this.size * dtypeBytes(this.dtype);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** True once released (its buffer may already hold other data). */
  get released(): boolean {
    return this.#released || (this.#base?.released ?? false);
  }

  /**
   * A view of the same buffer with another shape of the same element count: the same tensor,
   * so releasing either releases both.
   */
  reshape(shape: readonly number[]): Tensor {
    let inferred = -1, known = 1;
    const s = [...shape];
    s.forEach((d, i) => {
      if (d === -1) inferred = i;
      else known *= d;
    });
    if (inferred >= 0) s[inferred] = this.size / known;
    if (numel(s) !== this.size || !s.every(Number.isInteger)) {
      throw new Error(
        `reshape ${this.label}: cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}`,
      );
    }
    const view = new Tensor(null, s, this.dtype, {
      label: this.label,
      base: this.root,
      byteOffset: this.byteOffset,
    });
    view.#alias = this.#alias || !this.#window;
    view.#window = this.#window;
    return view;
  }

  /**
   * A window of `count` items starting at item `start`, where the tensor is seen as `units`
   * equal items along its leading dims (e.g. the rows of a [B, L, C] tensor with units = B * L).
   * The window keeps the trailing dims: `[B, L, C]` with units B gives `[count, L, C]`, with
   * units B * L `[count, C]`, with units B / 2 `[2 * count, L, C]`. Shares the buffer (no copy);
   * launchers pick `start` so that `byteOffset` suits the binding alignment
   * (kernels/gpu/chunks.ts).
   */
  window(units: number, start: number, count: number): Tensor {
    if (start === 0 && count === units) return this;
    const per = this.size / units;
    if (
      !Number.isInteger(per) || !Number.isInteger(start) || !Number.isInteger(count) ||
      start < 0 || count < 0 || start + count > units
    ) {
      throw new Error(
        `window ${this.label}: items ${start}..${start + count} of ${units} in ${
          fmtShape(this.shape)
        }`,
      );
    }
    const shape = windowShape(this.shape, units, count);
    const view = new Tensor(null, shape, this.dtype, {
      label: this.label,
      base: this.root,
      byteOffset: this.byteOffset + start * per * dtypeBytes(this.dtype),
    });
    view.#window = true;
    return view;
  }

  /**
   * Gives the memory back. A reshape releases the tensor it views (it is that tensor); a window
   * of a larger tensor and an unowned tensor release nothing. Using a tensor after its release
   * is an error.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#base) {
      if (this.#alias && !this.#window) this.#base.release();
      return;
    }
    this.#owner?.releaseTensor(this);
  }

  /** Throws if this tensor (or its base) was released. */
  assertLive(op: string): void {
    if (this.released) throw new Error(`${op}: tensor ${this.label} was used after release`);
  }
}
