/**
 * Backward passes of the data-movement kernels (layout, resample, embedding): the CPU backward
 * against central finite differences of the CPU forward, and the GPU backward (run by a
 * GradientTape) against the CPU backward, f32 and f16.
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import { concat, padAxis, permute, repeatInterleave, slice } from "../../kernels/layout.ts";
import {
  concatBackwardCpu,
  concatCpu,
  padAxisCpu,
  permuteBackwardCpu,
  permuteCpu,
  repeatInterleaveBackwardCpu,
  repeatInterleaveCpu,
  sliceBackwardCpu,
  sliceCpu,
} from "../../kernels/layout_cpu.ts";
import { pad2d, resizeNearest, upsampleNearest2x } from "../../kernels/resample.ts";
import {
  pad2dBackwardCpu,
  pad2dCpu,
  resizeNearestBackwardCpu,
  resizeNearestCpu,
  upsampleNearest2xBackwardCpu,
  upsampleNearest2xCpu,
} from "../../kernels/resample_cpu.ts";
import { addPositionEncoding, tokenEmbedding } from "../../kernels/embedding.ts";
import {
  addPositionEncodingBackwardCpu,
  addPositionEncodingCpu,
  tokenEmbeddingBackwardCpu,
  tokenEmbeddingCpu,
} from "../../kernels/embedding_cpu.ts";
import { assertClose, assertEquals } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { data, finiteDifferences, numel, tapeRun } from "./backward.ts";

// Tolerances. These ops are linear, so finite differences (h = 1e-2, float64 loss over the f32
// forward) are exact up to f32 rounding of the outputs: atol 1e-4 / rtol 1e-4. GPU vs CPU
// backward: copies are exact; sums (repeats, resize blocks, batch / token sums) differ by f32
// summation order: f32 atol 1e-5 / rtol 1e-5; f16 (inputs and gy rounded to f16 for the
// reference) atol 1e-2 / rtol 5e-3: one f16 rounding of a sum of at most 8 values of |v| <= 2.
const FD = { atol: 1e-4, rtol: 1e-4 };
const TOL = { f32: { atol: 1e-5, rtol: 1e-5 }, f16: { atol: 1e-2, rtol: 5e-3 } };

/** One op's case: inputs, the GPU op, its CPU forward and CPU backward (given gy). */
interface Case {
  name: string;
  inputs: { shape: number[] }[];
  gpu: (gpu: Gpu, ts: Tensor[]) => Tensor;
  forward: (xs: Float32Array[]) => Float32Array;
  backward: (xs: Float32Array[], gy: Float32Array) => Float32Array[];
}

const PAD = { top: 1, bottom: 2, left: 0, right: 1 };
const IDS = Int32Array.from([3, 0, 3, 6, 1, 3, 6, 2]); // [2, 4]: repeated ids, rows 4 and 5 unused

const cases: Case[] = [
  {
    name: "permute [2, 3, 5] -> [2, 0, 1]",
    inputs: [{ shape: [2, 3, 5] }],
    gpu: (g, [x]) => permute(g, x, [2, 0, 1]),
    forward: ([x]) => permuteCpu(x, [2, 3, 5], [2, 0, 1]),
    backward: (_, gy) => [permuteBackwardCpu(gy, [2, 3, 5], [2, 0, 1])],
  },
  {
    name: "permute [3, 4, 5, 2] -> [0, 2, 1, 3] (vec4 gather back)",
    inputs: [{ shape: [3, 4, 5, 2] }],
    gpu: (g, [x]) => permute(g, x, [0, 3, 1, 2]),
    forward: ([x]) => permuteCpu(x, [3, 4, 5, 2], [0, 3, 1, 2]),
    backward: (_, gy) => [permuteBackwardCpu(gy, [3, 4, 5, 2], [0, 3, 1, 2])],
  },
  {
    name: "concat of [2, 3, 5], [2, 1, 5], [2, 2, 5] on axis 1",
    inputs: [{ shape: [2, 3, 5] }, { shape: [2, 1, 5] }, { shape: [2, 2, 5] }],
    gpu: (g, ts) => concat(g, ts, 1),
    forward: (xs) => concatCpu(xs.map((d, i) => ({ data: d, shape: cases[2].inputs[i].shape })), 1),
    backward: (_, gy) => concatBackwardCpu(gy, [[2, 3, 5], [2, 1, 5], [2, 2, 5]], 1),
  },
  {
    name: "concat of [1, 3], [2, 3] on axis 0",
    inputs: [{ shape: [1, 3] }, { shape: [2, 3] }],
    gpu: (g, ts) => concat(g, ts, 0),
    forward: ([a, b]) => concatCpu([{ data: a, shape: [1, 3] }, { data: b, shape: [2, 3] }], 0),
    backward: (_, gy) => concatBackwardCpu(gy, [[1, 3], [2, 3]], 0),
  },
  {
    name: "slice [3, 7, 4] axis 1, 2..5 (vec4 pad)",
    inputs: [{ shape: [3, 7, 4] }],
    gpu: (g, [x]) => slice(g, x, 1, 2, 5),
    forward: ([x]) => sliceCpu(x, [3, 7, 4], 1, 2, 5),
    backward: (_, gy) => [sliceBackwardCpu(gy, [3, 7, 4], 1, 2, 5)],
  },
  {
    name: "slice [5, 3] axis 0, 1..4",
    inputs: [{ shape: [5, 3] }],
    gpu: (g, [x]) => slice(g, x, 0, 1, 4),
    forward: ([x]) => sliceCpu(x, [5, 3], 0, 1, 4),
    backward: (_, gy) => [sliceBackwardCpu(gy, [5, 3], 0, 1, 4)],
  },
  {
    name: "repeat_interleave [2, 3, 5] x3 on axis 1",
    inputs: [{ shape: [2, 3, 5] }],
    gpu: (g, [x]) => repeatInterleave(g, x, 3, 1),
    forward: ([x]) => repeatInterleaveCpu(x, [2, 3, 5], 3, 1),
    backward: (_, gy) => [repeatInterleaveBackwardCpu(gy, [2, 3, 5], 3, 1)],
  },
  {
    name: "repeat_interleave [3, 8] x2 on axis 0 (vec4)",
    inputs: [{ shape: [3, 8] }],
    gpu: (g, [x]) => repeatInterleave(g, x, 2),
    forward: ([x]) => repeatInterleaveCpu(x, [3, 8], 2, 0),
    backward: (_, gy) => [repeatInterleaveBackwardCpu(gy, [3, 8], 2, 0)],
  },
  {
    name: "upsample_nearest2x [1, 3, 3, 5]",
    inputs: [{ shape: [1, 3, 3, 5] }],
    gpu: (g, [x]) => upsampleNearest2x(g, x),
    forward: ([x]) => upsampleNearest2xCpu(x, [1, 3, 3, 5]),
    backward: (_, gy) => [upsampleNearest2xBackwardCpu(gy, [1, 3, 3, 5])],
  },
  {
    name: "resize_nearest [2, 2, 3, 4] -> 7x5 (up and uneven)",
    inputs: [{ shape: [2, 2, 3, 4] }],
    gpu: (g, [x]) => resizeNearest(g, x, 7, 5),
    forward: ([x]) => resizeNearestCpu(x, [2, 2, 3, 4], 7, 5),
    backward: (_, gy) => [resizeNearestBackwardCpu(gy, [2, 2, 3, 4], 7, 5)],
  },
  {
    name: "resize_nearest [1, 2, 7, 6] -> 3x4 (down: some pixels unread)",
    inputs: [{ shape: [1, 2, 7, 6] }],
    gpu: (g, [x]) => resizeNearest(g, x, 3, 4),
    forward: ([x]) => resizeNearestCpu(x, [1, 2, 7, 6], 3, 4),
    backward: (_, gy) => [resizeNearestBackwardCpu(gy, [1, 2, 7, 6], 3, 4)],
  },
  {
    name: "pad2d [2, 3, 3, 4] (1, 2, 0, 1)",
    inputs: [{ shape: [2, 3, 3, 4] }],
    gpu: (g, [x]) => pad2d(g, x, PAD),
    forward: ([x]) => pad2dCpu(x, [2, 3, 3, 4], PAD),
    backward: (_, gy) => [pad2dBackwardCpu(gy, [2, 3, 3, 4], PAD)],
  },
  {
    name: "add_position_encoding x [3, 5, 6] + pe [1, 7, 6]",
    inputs: [{ shape: [3, 5, 6] }, { shape: [1, 7, 6] }],
    gpu: (g, [x, pe]) => addPositionEncoding(g, x, pe),
    forward: ([x, pe]) => addPositionEncodingCpu(x, [3, 5, 6], pe),
    backward: (_, gy) => {
      const g = addPositionEncodingBackwardCpu(gy, [3, 5, 6], 7);
      return [g.x, g.pe];
    },
  },
  {
    name: "add_position_encoding x [2, 4, 8] + pe [4, 8] (all rows read, vec4)",
    inputs: [{ shape: [2, 4, 8] }, { shape: [4, 8] }],
    gpu: (g, [x, pe]) => addPositionEncoding(g, x, pe),
    forward: ([x, pe]) => addPositionEncodingCpu(x, [2, 4, 8], pe),
    backward: (_, gy) => {
      const g = addPositionEncodingBackwardCpu(gy, [2, 4, 8], 4);
      return [g.x, g.pe];
    },
  },
  ...[3, 8].map((d): Case => ({
    name: `token_embedding ids [2, 4] over token [7, ${d}] and position [5, ${d}]`,
    inputs: [{ shape: [7, d] }, { shape: [5, d] }],
    gpu: (g, [tok, pos]) => tokenEmbedding(g, IDS, 2, tok, pos),
    forward: ([tok, pos]) => tokenEmbeddingCpu(IDS, 2, tok, pos, d),
    backward: (_, gy) => {
      const g = tokenEmbeddingBackwardCpu(IDS, 2, gy, { vocab: 7, positions: 5, d });
      return [g.token, g.position];
    },
  })),
];

Deno.test("layout / resample / embedding backward (CPU) match finite differences", () => {
  for (const k of cases) {
    const xs = k.inputs.map((i, j) => data(i.shape, 10 + j));
    const gy = data([k.forward(xs).length], 20);
    const grads = k.backward(xs, gy);
    xs.forEach((_, j) => {
      const fd = finiteDifferences(k.forward, xs, gy, j);
      assertClose(grads[j], fd, { ...FD, msg: `${k.name} input ${j}` });
    });
  }
});

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    {
      name: `layout / resample / embedding backward ${dtype} on a tape match the CPU`,
      f16: dtype === "f16",
    },
    async (gpu) => {
      for (const k of cases) {
        const xs = k.inputs.map((i, j) => data(i.shape, 30 + j, dtype));
        const r = await tapeRun(
          gpu,
          dtype,
          xs.map((d, j) => ({ data: d, shape: k.inputs[j].shape })),
          (ts) => k.gpu(gpu, ts),
          (shape) => data(shape, 99, dtype),
        );
        assertEquals(numel(r.shape), k.forward(xs).length);
        const want = k.backward(xs, r.gy);
        r.grads.forEach((g, j) =>
          assertClose(g!, want[j], { ...TOL[dtype], msg: `${k.name} input ${j}` })
        );
      }
    },
  );
}

gpuTest("padAxis matches the CPU reference (both sides, middle axis, f32)", async (gpu) => {
  const xs = data([2, 3, 5], 40);
  const x = gpu.upload(xs, [2, 3, 5], "f32");
  const y = padAxis(gpu, x, 1, 2, 1);
  assertEquals(y.shape, [2, 6, 5]);
  assertClose(await gpu.read(y), padAxisCpu(xs, [2, 3, 5], 1, 2, 1), { atol: 0, rtol: 0 });
  x.release();
  y.release();
});
