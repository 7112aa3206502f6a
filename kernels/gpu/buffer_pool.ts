/**
 * Size-bucketed free lists of storage buffers, with in-use and peak byte counters.
 * Buckets grow by 2^(1/4) so a buffer is at most ~19% larger than asked for.
 *
 * Free lists hold memory: a UNet step frees and reuses hundreds of buffers of a few dozen sizes,
 * and buffers freed at one resolution cannot serve another. Without a bound the pool held three
 * times the step's working set (the SD1.5 UNet at 16 x 512 x 512: 3 GB of free buffers for
 * 0.9 GB in use). So a request that misses its free list takes a free buffer up to
 * {@link REUSE_SLACK} times larger, and a new buffer that would lift the pool above
 * {@link CAP_SLACK} times the largest working set seen so far first destroys free buffers
 * (least recently freed first). In a steady state (every denoising step alike) nothing is
 * created or destroyed.
 * @module
 */

const MIN_BUCKET = 256;
/** A free buffer up to this many times larger than a request may serve it. */
const REUSE_SLACK = 2;
/** The pool keeps at most this multiple of its peak working set (in-use bytes). */
const CAP_SLACK = 1.5;

/** Rounds a byte size up to its bucket size. */
export function bucketSize(bytes: number): number {
  if (bytes <= MIN_BUCKET) return MIN_BUCKET;
  const p = Math.floor(Math.log2(bytes));
  const base = 2 ** p;
  for (let i = 0; i <= 4; i++) {
    const s = Math.ceil((base * 2 ** (i / 4)) / 256) * 256;
    if (s >= bytes) return s;
  }
  return base * 2;
}

/** Statistics of the pool, in bytes. */
export interface PoolStats {
  inUseBytes: number;
  peakInUseBytes: number;
  freeBytes: number;
  allocatedBytes: number;
  peakAllocatedBytes: number;
  /** Buffers created and destroyed to stay within the bound (since the last reset). */
  evictions: number;
}

/** Options of a {@link BufferPool}. */
export interface BufferPoolOptions {
  /**
   * Called before free buffers are destroyed to make room: recorded work that still binds them
   * must be submitted first.
   */
  beforeEvict?: () => void;
}

/** A pool of STORAGE | COPY_SRC | COPY_DST buffers. */
export class BufferPool {
  readonly #device: GPUDevice;
  /** Free buffers by size; Map order = least recently freed size first. */
  readonly #free = new Map<number, GPUBuffer[]>();
  readonly #beforeEvict: () => void;
  #inUse = 0;
  #peakInUse = 0;
  /** Largest working set since the last trim: sets the bound on free memory. */
  #workingSet = 0;
  #freeBytes = 0;
  #allocated = 0;
  #peakAllocated = 0;
  #evictions = 0;
  /** Largest single buffer allowed (the adapter's maxBufferSize). */
  readonly maxBufferSize: number;

  constructor(device: GPUDevice, maxBufferSize: number, options: BufferPoolOptions = {}) {
    this.#device = device;
    this.maxBufferSize = maxBufferSize;
    this.#beforeEvict = options.beforeEvict ?? (() => {});
  }

  /** Takes a buffer of at least `bytes` from the free lists, or creates one. */
  acquire(bytes: number, label = "pool"): GPUBuffer {
    let size = bucketSize(bytes);
    if (size > this.maxBufferSize) size = Math.ceil(bytes / 4) * 4;
    if (size > this.maxBufferSize) {
      throw new Error(
        `${label}: needs a ${bytes}-byte buffer, adapter maxBufferSize is ${this.maxBufferSize}`,
      );
    }
    let buf = this.#take(size) ?? this.#takeLarger(size);
    if (!buf) {
      this.#workingSet = Math.max(this.#workingSet, this.#inUse + size);
      this.#makeRoom(size);
      buf = this.#device.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        label,
      });
      this.#allocated += size;
      this.#peakAllocated = Math.max(this.#peakAllocated, this.#allocated);
    }
    this.#inUse += buf.size;
    this.#peakInUse = Math.max(this.#peakInUse, this.#inUse);
    this.#workingSet = Math.max(this.#workingSet, this.#inUse);
    return buf;
  }

  #take(size: number): GPUBuffer | undefined {
    const list = this.#free.get(size);
    const buf = list?.pop();
    if (!buf) return undefined;
    if (list!.length === 0) this.#free.delete(size);
    this.#freeBytes -= size;
    return buf;
  }

  /** The smallest free buffer larger than `size` and at most {@link REUSE_SLACK} times it. */
  #takeLarger(size: number): GPUBuffer | undefined {
    let best = Infinity;
    for (const s of this.#free.keys()) {
      if (s > size && s <= size * REUSE_SLACK && s < best) best = s;
    }
    return best < Infinity ? this.#take(best) : undefined;
  }

  /** Destroys free buffers, least recently freed sizes first, until `size` more fits the bound. */
  #makeRoom(size: number): void {
    const cap = this.#workingSet * CAP_SLACK;
    if (this.#allocated + size <= cap || this.#freeBytes === 0) return;
    this.#beforeEvict();
    for (const [s, list] of this.#free) {
      while (list.length && this.#allocated + size > cap) {
        list.pop()!.destroy();
        this.#allocated -= s;
        this.#freeBytes -= s;
        this.#evictions++;
      }
      if (list.length === 0) this.#free.delete(s);
      if (this.#allocated + size <= cap) break;
    }
  }

  /** Returns a buffer to its free list (its size becomes the most recently freed). */
  releaseBuffer(buffer: GPUBuffer, size: number): void {
    this.#inUse -= size;
    this.#freeBytes += size;
    const list = this.#free.get(size) ?? [];
    this.#free.delete(size);
    list.push(buffer);
    this.#free.set(size, list);
  }

  /** Destroys every free buffer (memory goes back to the driver). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.#allocated -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
    this.#freeBytes = 0;
    this.#workingSet = this.#inUse;
  }

  /** Resets the peak counters to the current values. */
  resetPeak(): void {
    this.#peakInUse = this.#inUse;
    this.#peakAllocated = this.#allocated;
    this.#evictions = 0;
  }

  /** Current counters. */
  stats(): PoolStats {
    return {
      inUseBytes: this.#inUse,
      peakInUseBytes: this.#peakInUse,
      freeBytes: this.#freeBytes,
      allocatedBytes: this.#allocated,
      peakAllocatedBytes: this.#peakAllocated,
      evictions: this.#evictions,
    };
  }
}
