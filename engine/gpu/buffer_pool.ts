/**
 * Size-bucketed free lists of storage buffers, with in-use and peak byte counters.
 * Buckets grow by 2^(1/4) so a buffer is at most ~19% larger than asked for.
 * @module
 */

import type { BufferOwner } from "./tensor.ts";

const MIN_BUCKET = 256;

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
}

/** A pool of STORAGE | COPY_SRC | COPY_DST buffers. */
export class BufferPool implements BufferOwner {
  readonly #device: GPUDevice;
  readonly #free = new Map<number, GPUBuffer[]>();
  #inUse = 0;
  #peakInUse = 0;
  #freeBytes = 0;
  #allocated = 0;
  #peakAllocated = 0;
  /** Largest single buffer allowed (the adapter's maxBufferSize). */
  readonly maxBufferSize: number;

  constructor(device: GPUDevice, maxBufferSize: number) {
    this.#device = device;
    this.maxBufferSize = maxBufferSize;
  }

  /** Takes a buffer of at least `bytes` from the free list, or creates one. */
  acquire(bytes: number, label = "pool"): GPUBuffer {
    let size = bucketSize(bytes);
    if (size > this.maxBufferSize) size = Math.ceil(bytes / 4) * 4;
    if (size > this.maxBufferSize) {
      throw new Error(
        `${label}: needs a ${bytes}-byte buffer, adapter maxBufferSize is ${this.maxBufferSize}`,
      );
    }
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.#freeBytes -= size;
    } else {
      buf = this.#device.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        label,
      });
      this.#allocated += size;
      this.#peakAllocated = Math.max(this.#peakAllocated, this.#allocated);
    }
    this.#inUse += size;
    this.#peakInUse = Math.max(this.#peakInUse, this.#inUse);
    return buf;
  }

  /** Returns a buffer to its free list. */
  releaseBuffer(buffer: GPUBuffer, size: number): void {
    this.#inUse -= size;
    this.#freeBytes += size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buffer);
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
  }

  /** Resets the peak counters to the current values. */
  resetPeak(): void {
    this.#peakInUse = this.#inUse;
    this.#peakAllocated = this.#allocated;
  }

  /** Current counters. */
  stats(): PoolStats {
    return {
      inUseBytes: this.#inUse,
      peakInUseBytes: this.#peakInUse,
      freeBytes: this.#freeBytes,
      allocatedBytes: this.#allocated,
      peakAllocatedBytes: this.#peakAllocated,
    };
  }
}
