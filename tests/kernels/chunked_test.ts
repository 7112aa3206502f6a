/**
 * Every launcher splits work over binding-sized windows when an operand is larger than one
 * storage binding: with the runtime's limits lowered (a 256-byte offset alignment, as on most
 * GPUs, and a binding limit a fraction of the largest operand) each op must give bit-identical
 * results to the one-launch path, and must have launched more than once.
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import { EngineLimitError } from "../../kernels/gpu/errors.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { linear, matmul } from "../../kernels/matmul.ts";
import { setGemmTileOverride } from "../../kernels/gemm.ts";
import { setGemmPathOverride } from "../../kernels/gemm_direct.ts";
import { conv2d } from "../../kernels/conv2d.ts";
import { groupNorm } from "../../kernels/group_norm.ts";
import { layerNorm } from "../../kernels/layer_norm.ts";
import { softmax } from "../../kernels/softmax.ts";
import { attention } from "../../kernels/attention.ts";
import {
  add,
  cfgCombine,
  geglu,
  linearCombination,
  mul,
  scale,
  unary,
} from "../../kernels/elementwise.ts";
import { concat, permute, repeatInterleave, slice } from "../../kernels/layout.ts";
import { pad2d, resizeNearest, upsampleNearest2x } from "../../kernels/resample.ts";
import { addPositionEncoding, tokenEmbedding } from "../../kernels/embedding.ts";
import { assert, assertEquals, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

/** GPUs' usual binding offset alignment (lavapipe's own is 32). */
const ALIGN = 256;

let seed = 100;

/** A fresh random tensor (its own seed per call). */
function rand(gpu: Gpu, shape: number[], dtype: DType = "f32", k = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return gpu.upload(randomArray(n, seed++, k), shape, dtype, "input");
}

/**
 * Runs `op` on the same inputs with the adapter's limits and with a binding limit of
 * `limitBytes`; both outputs must be bitwise equal and the limited run must dispatch more.
 */
async function sameWhenChunked(
  gpu: Gpu,
  name: string,
  limitBytes: number,
  make: () => Tensor[],
  op: (inputs: Tensor[]) => Tensor,
): Promise<void> {
  const inputs = make();
  let whole: Tensor | null = null;
  const wholeCounts = await countDispatches(gpu, () => {
    whole = op(inputs);
  });
  gpu.setLimits({
    maxStorageBufferBindingSize: limitBytes,
    minStorageBufferOffsetAlignment: ALIGN,
  });
  let chunked: Tensor | null = null;
  let chunkedCounts: Map<string, number>;
  try {
    chunkedCounts = await countDispatches(gpu, () => {
      chunked = op(inputs);
    });
  } finally {
    gpu.setLimits();
  }
  const a = await gpu.read(whole!), b = await gpu.read(chunked!);
  assertEquals(b.length, a.length, `${name}: sizes`);
  for (let i = 0; i < a.length; i++) {
    if (!(Object.is(a[i], b[i]))) {
      throw new Error(`${name}: element ${i} differs: ${a[i]} whole vs ${b[i]} chunked`);
    }
  }
  assert(a.every(Number.isFinite), `${name}: output has non-finite values`);
  const total = (m: Map<string, number>) =>
    [...m].filter(([k]) => !k.startsWith("fill_u32")).reduce((s, [, n]) => s + n, 0);
  assert(
    total(chunkedCounts) > total(wholeCounts),
    `${name}: expected more launches with a ${limitBytes}-byte binding limit, got ${
      total(chunkedCounts)
    } vs ${total(wholeCounts)}`,
  );
  for (const t of [...inputs, whole!, chunked!]) t.release();
}

const KB = 1024;

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `chunked ${dtype}: linear rows (bias, residual, activation), both GEMM paths`,
    async (gpu) => {
      if (dtype === "f16" && !gpu.hasF16) throw new Error("f16 chunk test needs shader-f16");
      for (const path of ["direct", "tiled"] as const) {
        setGemmPathOverride(path);
        if (path === "tiled") setGemmTileOverride({ tm: 4, tn: 4, bk: 16 });
        try {
          await sameWhenChunked(
            gpu,
            `linear ${path}`,
            8 * KB,
            () => [
              rand(gpu, [2, 37, 64], dtype),
              rand(gpu, [32, 64], dtype),
              rand(gpu, [32], dtype),
              rand(gpu, [2, 37, 32], dtype),
            ],
            ([x, w, b, r]) => linear(gpu, x, w, { bias: b, residual: r, activation: "silu" }),
          );
          await sameWhenChunked(
            gpu,
            `batched matmul ${path}`,
            2 * KB,
            () => [rand(gpu, [6, 20, 16], dtype), rand(gpu, [6, 16, 16], dtype)],
            ([a, b]) => matmul(gpu, a, b, { alpha: 0.5 }),
          );
        } finally {
          setGemmPathOverride(null);
          setGemmTileOverride(null);
        }
      }
    },
  );
}

gpuTest(
  "chunked: conv2d over images (3x3, 1x1, stride 2, residual), both GEMM paths",
  async (gpu) => {
    for (const path of ["direct", "tiled"] as const) {
      setGemmPathOverride(path);
      try {
        await sameWhenChunked(
          gpu,
          `conv2d 3x3 ${path}`,
          16 * KB,
          () => [
            rand(gpu, [5, 16, 9, 8]),
            rand(gpu, [16, 16, 3, 3]),
            rand(gpu, [16]),
            rand(gpu, [5, 16, 9, 8]),
          ],
          ([x, w, b, r]) => conv2d(gpu, x, w, { bias: b, residual: r }),
        );
        await sameWhenChunked(
          gpu,
          `conv2d 1x1 ${path}`,
          4 * KB,
          () => [rand(gpu, [6, 8, 8, 8]), rand(gpu, [4, 8, 1, 1]), rand(gpu, [4])],
          ([x, w, b]) => conv2d(gpu, x, w, { bias: b }),
        );
        await sameWhenChunked(
          gpu,
          `conv2d stride 2 ${path}`,
          20 * KB,
          () => [rand(gpu, [6, 16, 16, 16]), rand(gpu, [16, 16, 3, 3]), rand(gpu, [16])],
          ([x, w, b]) => conv2d(gpu, x, w, { bias: b, stride: 2, padding: 1 }),
        );
      } finally {
        setGemmPathOverride(null);
      }
    }
  },
);

gpuTest("chunked: group norm per image and per video (fused and split reductions)", async (gpu) => {
  for (const split of [false, true]) {
    await sameWhenChunked(
      gpu,
      `group_norm frames 1 split ${split}`,
      4 * KB,
      () => [rand(gpu, [8, 16, 6, 6]), rand(gpu, [16]), rand(gpu, [16])],
      ([x, w, b]) => groupNorm(gpu, x, w, b, { groups: 4, eps: 1e-5, silu: true, split }),
    );
    await sameWhenChunked(
      gpu,
      `group_norm frames 3 split ${split}`,
      24 * KB,
      () => [rand(gpu, [9, 16, 8, 8]), rand(gpu, [16]), rand(gpu, [16])],
      ([x, w, b]) => groupNorm(gpu, x, w, b, { groups: 4, eps: 1e-6, frames: 3, split }),
    );
  }
});

gpuTest("chunked: layer norm, softmax, geglu, unary over rows and elements", async (gpu) => {
  await sameWhenChunked(
    gpu,
    "layer_norm",
    2 * KB,
    () => [rand(gpu, [3, 50, 24]), rand(gpu, [24]), rand(gpu, [24])],
    ([x, w, b]) => layerNorm(gpu, x, w, b, { eps: 1e-5 }),
  );
  await sameWhenChunked(
    gpu,
    "softmax",
    2 * KB,
    () => [rand(gpu, [70, 32])],
    ([x]) => softmax(gpu, x),
  );
  await sameWhenChunked(gpu, "geglu", 2 * KB, () => [rand(gpu, [90, 24])], ([x]) => geglu(gpu, x));
  await sameWhenChunked(
    gpu,
    "gelu",
    2 * KB,
    () => [rand(gpu, [1001])],
    ([x]) => unary(gpu, x, "gelu"),
  );
});

gpuTest("chunked: add / mul (same shape and broadcast), combinations, scale, CFG", async (gpu) => {
  await sameWhenChunked(
    gpu,
    "add same",
    2 * KB,
    () => [rand(gpu, [1003]), rand(gpu, [1003])],
    ([a, b]) => add(gpu, a, b),
  );
  // The ResNet time-embedding add: [b, f, C, HW] + [b, 1, C, 1]; one video exceeds a binding,
  // so the split goes down to frames.
  await sameWhenChunked(
    gpu,
    "add broadcast",
    2 * KB,
    () => [rand(gpu, [2, 6, 8, 16]), rand(gpu, [2, 1, 8, 1])],
    ([a, b]) => add(gpu, a, b),
  );
  await sameWhenChunked(
    gpu,
    "mul broadcast left",
    KB,
    () => [rand(gpu, [1, 8, 1]), rand(gpu, [5, 8, 12])],
    ([a, b]) => mul(gpu, a, b),
  );
  await sameWhenChunked(
    gpu,
    "linear combination",
    2 * KB,
    () => [rand(gpu, [2000]), rand(gpu, [2000]), rand(gpu, [2000])],
    ([a, b, c]) => linearCombination(gpu, [{ c: 0.3, x: a }, { c: -1.5, x: b }, { c: 2, x: c }]),
  );
  await sameWhenChunked(gpu, "scale", 2 * KB, () => [rand(gpu, [999])], ([x]) => scale(gpu, x, 3));
  await sameWhenChunked(
    gpu,
    "cfg",
    2 * KB,
    () => [rand(gpu, [2 * 4, 4, 8, 8])],
    ([p]) => cfgCombine(gpu, p, 7.5),
  );
});

gpuTest("chunked: attention over batch items, kv groups and items inside a group", async (gpu) => {
  await sameWhenChunked(
    gpu,
    "self-attention",
    4 * KB,
    () => [rand(gpu, [6, 20, 16]), rand(gpu, [6, 20, 16]), rand(gpu, [6, 20, 16])],
    ([q, k, v]) => attention(gpu, q, k, v, { heads: 2 }),
  );
  // Cross-attention with 4 frames per video: groups of 4 q items fit (8 KB) / do not (2 KB).
  for (const limit of [8 * KB, 2 * KB]) {
    await sameWhenChunked(
      gpu,
      `cross-attention kvBroadcast 4, ${limit} B`,
      limit,
      () => [rand(gpu, [8, 24, 16]), rand(gpu, [2, 8, 16]), rand(gpu, [2, 8, 16])],
      ([q, k, v]) => attention(gpu, q, k, v, { heads: 4, kvBroadcast: 4 }),
    );
  }
});

gpuTest("chunked: permute, concat, slice, repeat_interleave", async (gpu) => {
  await sameWhenChunked(
    gpu,
    "permute transpose",
    2 * KB,
    () => [rand(gpu, [6, 12, 32])],
    ([x]) => permute(gpu, x, [0, 2, 1]),
  );
  await sameWhenChunked(
    gpu,
    "permute motion fold",
    2 * KB,
    () => [rand(gpu, [4, 3, 8, 16])],
    ([x]) => permute(gpu, x, [0, 3, 1, 2]),
  );
  await sameWhenChunked(
    gpu,
    "concat channels",
    2 * KB,
    () => [rand(gpu, [6, 8, 4, 4]), rand(gpu, [6, 16, 4, 4])],
    ([a, b]) => concat(gpu, [a, b], 1),
  );
  await sameWhenChunked(
    gpu,
    "concat batch",
    KB,
    () => [rand(gpu, [3, 4, 32]), rand(gpu, [5, 4, 32])],
    ([a, b]) => concat(gpu, [a, b], 0),
  );
  await sameWhenChunked(
    gpu,
    "slice frames",
    KB,
    () => [rand(gpu, [10, 3, 5, 5])],
    ([x]) => slice(gpu, x, 0, 3, 9),
  );
  await sameWhenChunked(
    gpu,
    "slice channels",
    KB,
    () => [rand(gpu, [8, 16, 4, 4])],
    ([x]) => slice(gpu, x, 1, 1, 5),
  );
  await sameWhenChunked(
    gpu,
    "repeat_interleave",
    2 * KB,
    () => [rand(gpu, [4, 8, 16])],
    ([x]) => repeatInterleave(gpu, x, 3),
  );
});

gpuTest("chunked: upsample, resize, pad over planes; embeddings in table windows", async (gpu) => {
  await sameWhenChunked(
    gpu,
    "upsample",
    KB,
    () => [rand(gpu, [2, 5, 8, 8])],
    ([x]) => upsampleNearest2x(gpu, x),
  );
  await sameWhenChunked(
    gpu,
    "resize",
    8 * KB,
    () => [rand(gpu, [4, 16, 4, 4])],
    ([x]) => resizeNearest(gpu, x, 6, 6),
  );
  await sameWhenChunked(
    gpu,
    "pad",
    4 * KB,
    () => [rand(gpu, [8, 8, 8, 8])],
    ([x]) => pad2d(gpu, x, { top: 0, bottom: 8, left: 0, right: 8 }),
  );
  const ids = Int32Array.from({ length: 2 * 7 }, (_, i) => (i * 37) % 200);
  await sameWhenChunked(
    gpu,
    "token embedding",
    2 * KB,
    () => [rand(gpu, [200, 16]), rand(gpu, [7, 16])],
    ([table, pos]) => tokenEmbedding(gpu, ids, 2, table, pos),
  );
  await sameWhenChunked(
    gpu,
    "position encoding",
    KB,
    () => [rand(gpu, [12, 4, 16]), rand(gpu, [1, 6, 16])],
    ([x, pe]) => addPositionEncoding(gpu, x, pe),
  );
});

gpuTest(
  "chunked: an item larger than one binding is an engine-limit error naming the op",
  (gpu) => {
    const x = rand(gpu, [2, 8, 16, 16]), w = rand(gpu, [8, 8, 3, 3]);
    gpu.setLimits({ maxStorageBufferBindingSize: 4 * KB, minStorageBufferOffsetAlignment: ALIGN });
    let err: unknown = null;
    try {
      conv2d(gpu, x, w).release();
    } catch (e) {
      err = e;
    } finally {
      gpu.setLimits();
    }
    assert(err instanceof EngineLimitError, String(err));
    assert(
      /^conv2d: one image of .* needs 8\.19 kB, more than one storage binding/.test(err.message),
      err.message,
    );
    x.release();
    w.release();
  },
);
