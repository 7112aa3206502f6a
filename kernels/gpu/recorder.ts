/**
 * Records many dispatches into one command encoder (one compute pass) and submits once per
 * logical step. Uniform params of all dispatches go into one ring buffer written right before
 * the submit, so recording never waits on the GPU.
 * @module
 */

import type { DispatchProfiler } from "./profiler.ts";

const UNIFORM_ALIGN = 256;
const RING_BYTES = 1 << 20; // 4096 dispatches per submit at most
const MAX_DISPATCHES_PER_SUBMIT = 4000;

/** A recorded dispatch's storage binding: a whole buffer, or a range of one. */
export type StorageBinding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

/** Command recorder of one device. */
export class Recorder {
  readonly #device: GPUDevice;
  readonly #ring: GPUBuffer;
  readonly #ringCpu = new Uint8Array(RING_BYTES);
  #ringUsed = 0;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #dispatches = 0;
  #submits = 0;
  #totalDispatches = 0;
  /** While set, every dispatch runs in its own timed pass (see profiler.ts). */
  profiler: DispatchProfiler | null = null;

  /** `paramsInStorage`: kernels read their params as a storage buffer (see `paramsAsStorage`). */
  constructor(device: GPUDevice, options: { paramsInStorage?: boolean } = {}) {
    this.#device = device;
    const storage = options.paramsInStorage ? GPUBufferUsage.STORAGE : 0;
    this.#ring = device.createBuffer({
      size: RING_BYTES,
      usage: GPUBufferUsage.UNIFORM | storage | GPUBufferUsage.COPY_DST,
      label: "uniform-ring",
    });
  }

  /** Dispatches recorded since the last submit. */
  get pending(): number {
    return this.#dispatches;
  }

  /** Counters for diagnostics and benches. */
  get counters(): { submits: number; dispatches: number } {
    return { submits: this.#submits, dispatches: this.#totalDispatches };
  }

  #encoderOpen(): GPUCommandEncoder {
    return this.#encoder ??= this.#device.createCommandEncoder({ label: "zoetrope" });
  }

  #passOpen(): GPUComputePassEncoder {
    return this.#pass ??= this.#encoderOpen().beginComputePass();
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  /** Records one dispatch. `params` are the uniform bytes (binding 0). */
  dispatch(
    pipeline: GPUComputePipeline,
    params: Uint8Array,
    storage: readonly StorageBinding[],
    groups: readonly [number, number, number],
    label: string,
  ): void {
    if (
      this.#ringUsed + params.byteLength > RING_BYTES ||
      this.#dispatches >= MAX_DISPATCHES_PER_SUBMIT
    ) {
      this.submit();
    }
    const offset = this.#ringUsed;
    this.#ringCpu.set(params, offset);
    this.#ringUsed = Math.ceil((offset + params.byteLength) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.#ring, offset, size: params.byteLength } },
    ];
    storage.forEach((b, i) =>
      entries.push({ binding: i + 1, resource: "offset" in b ? b : { buffer: b } })
    );
    const bindGroup = this.#device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries,
      label,
    });
    const profiler = this.profiler;
    if (profiler) {
      this.#endPass();
      if (profiler.full) profiler.resolve(this.#encoderOpen());
      this.#pass = this.#encoderOpen().beginComputePass({
        timestampWrites: profiler.next(`${label} @ ${groups.join("x")}`),
      });
    }
    const pass = this.#passOpen();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    if (profiler) this.#endPass();
    this.#dispatches++;
    this.#totalDispatches++;
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.#endPass();
    this.#encoderOpen().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Starts a compute pass that writes timestamps at its beginning and end. */
  beginTimedPass(querySet: GPUQuerySet, beginIndex: number, endIndex: number): void {
    this.#endPass();
    this.#pass = this.#encoderOpen().beginComputePass({
      timestampWrites: {
        querySet,
        beginningOfPassWriteIndex: beginIndex,
        endOfPassWriteIndex: endIndex,
      },
    });
  }

  /** Ends the current (timed) pass. */
  endPass(): void {
    this.#endPass();
  }

  /** Records resolving timestamp queries into a buffer. */
  resolveQueries(querySet: GPUQuerySet, count: number, dst: GPUBuffer): void {
    this.#endPass();
    this.#encoderOpen().resolveQuerySet(querySet, 0, count, dst, 0);
  }

  /** Submits everything recorded so far (no-op when nothing is pending). */
  submit(): void {
    this.#endPass();
    if (!this.#encoder) return;
    this.profiler?.resolve(this.#encoder);
    if (this.#ringUsed > 0) {
      this.#device.queue.writeBuffer(this.#ring, 0, this.#ringCpu, 0, this.#ringUsed);
    }
    this.#device.queue.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#ringUsed = 0;
    this.#dispatches = 0;
    this.#submits++;
  }

  /** Frees the ring buffer. */
  destroy(): void {
    this.#pass = null;
    this.#encoder = null;
    this.#ring.destroy();
  }
}
