/**
 * Per-dispatch GPU timing: while a {@link DispatchProfiler} is attached to the recorder, every
 * dispatch runs in its own compute pass with timestamp writes at its start and end, so each
 * kernel's GPU time can be summed by kernel and shape. Passes per dispatch serialise the work
 * and add a little overhead per dispatch, so a profiled run's wall time is not the real one;
 * the shares between kernels are what it is for (`deno task bench:e2e --profile`).
 * @module
 */

/** Timestamp queries per query set (WebGPU allows up to 4096). */
const QUERIES_PER_SET = 4096;

/** One kernel (name, variant and workgroup grid) summed over its dispatches. */
export interface KernelTime {
  /** The phase it ran in ({@link DispatchProfiler.phase} when it was recorded). */
  phase: string;
  /** `name:variant` of the kernel. */
  kernel: string;
  /** Workgroups dispatched, `x x y x z` (tells the shapes of one kernel apart). */
  groups: string;
  /** Dispatches of this kernel and grid. */
  count: number;
  /** GPU milliseconds of all of them. */
  ms: number;
}

interface PendingSet {
  labels: string[];
  querySet: GPUQuerySet;
  read: GPUBuffer;
}

/** Collects per-dispatch timestamps; see the module doc. */
export class DispatchProfiler {
  readonly #device: GPUDevice;
  #set: GPUQuerySet | null = null;
  #labels: string[] = [];
  readonly #done: PendingSet[] = [];
  /** Tags the dispatches recorded from now on (e.g. a pipeline stage). */
  phase = "";

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Timestamp writes for the next dispatch's own pass; `label` names its kernel and grid. */
  next(label: string): GPUComputePassTimestampWrites {
    this.#set ??= this.#device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET });
    const i = this.#labels.length;
    this.#labels.push(`${this.phase} | ${label}`);
    return {
      querySet: this.#set,
      beginningOfPassWriteIndex: 2 * i,
      endOfPassWriteIndex: 2 * i + 1,
    };
  }

  /** The current query set is full (resolve it before the next dispatch). */
  get full(): boolean {
    return this.#labels.length * 2 >= QUERIES_PER_SET;
  }

  /** Records resolving the current query set into a readable buffer (outside any pass). */
  resolve(encoder: GPUCommandEncoder): void {
    if (!this.#set || this.#labels.length === 0) return;
    const n = this.#labels.length * 2;
    const resolve = this.#device.createBuffer({
      size: n * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.#device.createBuffer({
      size: n * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    encoder.resolveQuerySet(this.#set, 0, n, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, read, 0, n * 8);
    this.#done.push({ labels: this.#labels, querySet: this.#set, read });
    this.#set = null;
    this.#labels = [];
  }

  /**
   * The kernels' times, most expensive first (call after the recorded work was submitted);
   * frees the query sets.
   */
  async collect(): Promise<KernelTime[]> {
    const byKey = new Map<string, KernelTime>();
    for (const { labels, querySet, read } of this.#done.splice(0)) {
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      read.destroy();
      querySet.destroy();
      labels.forEach((label, i) => {
        const ms = Number(t[2 * i + 1] - t[2 * i]) / 1e6;
        const k = byKey.get(label);
        if (k) {
          k.count++;
          k.ms += ms;
        } else {
          const [phase, rest] = label.split(" | ");
          const [kernel, groups] = rest.split(" @ ");
          byKey.set(label, { phase, kernel, groups, count: 1, ms });
        }
      });
    }
    return [...byKey.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Frees what was not collected. */
  destroy(): void {
    for (const { querySet, read } of this.#done.splice(0)) {
      querySet.destroy();
      read.destroy();
    }
    this.#set?.destroy();
    this.#set = null;
  }
}
