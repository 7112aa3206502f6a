/**
 * One benchmark/test case of a kernel. The case tables live here in tests/ and the bench reads
 * them (never the other way round): the test checks each `scale: "test"` case (and small
 * real-shape cases) against the CPU reference; the bench times every case that fits the adapter.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";

/** A kernel case. */
export interface KernelCase {
  /** Kernel name as printed and in `--json` output (e.g. "matmul", "conv2d", "attention"). */
  op: string;
  /** Shape as documented per op (matmul [M, K, N]; conv2d [N, C, H, W, Cout, kernel]; ...). */
  shape: number[];
  dtype: DType;
  /** "test": odd small sizes; "reduced": SD shapes shrunk for software adapters; "full": real SD1.5 shapes. */
  scale: "test" | "reduced" | "full";
  /** Short human description, e.g. "spatial self-attn 64x64". */
  note?: string;
  /** Floating-point operations of one run (GFLOP/s), or undefined. */
  flops?: number;
  /** Bytes moved by one run (GB/s) when flops are not meaningful, or undefined. */
  bytes?: number;
  /** Allocates inputs on `gpu`; returns a function recording one run and a cleanup. */
  setup(gpu: Gpu): { run(): void; dispose(): void };
}
