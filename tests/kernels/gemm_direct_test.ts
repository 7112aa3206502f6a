import {
  type DirectLayout,
  gemmPath,
  pickDirectLayout,
  setDirectLayoutOverride,
  setGemmPathOverride,
} from "../../kernels/gemm_direct.ts";
import { setGemmTileOverride } from "../../kernels/gemm.ts";
import { assert, assertEquals } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";
import { checkMatmul, type MatmulSpec } from "./matmul_cases.ts";

// The direct path (software adapters) against the CPU reference, with matmul's tolerances
// (tests/kernels/matmul_cases.ts): forced here so GPUs test it too.

/** Kernel names dispatched by `fn`, with counts. */
async function kernelsRun(
  gpu: Parameters<typeof checkMatmul>[0],
  fn: () => Promise<void>,
): Promise<Map<string, number>> {
  const byKernel = new Map<string, number>();
  for (const [key, n] of await countDispatches(gpu, fn)) {
    const kernel = key.split(":")[0];
    byKernel.set(kernel, (byKernel.get(kernel) ?? 0) + n);
  }
  return byKernel;
}

const SPECS: MatmulSpec[] = [
  // Odd M (row clamping), N not a multiple of a block (column clamping), every epilogue.
  { shape: [37, 20, 44], scale: "test", note: "bias + gelu", bias: true, activation: "gelu" },
  {
    shape: [70, 36, 12],
    scale: "test",
    note: "silu + residual",
    bias: true,
    activation: "silu",
    residual: true,
  },
  { shape: [5, 16, 24], scale: "test", note: "per-batch B, alpha", batch: 3, alpha: 0.125 },
  {
    shape: [33, 28, 52],
    scale: "test",
    note: "Linear weight, quick_gelu + residual",
    transposeB: true,
    bias: true,
    activation: "quick_gelu",
    residual: true,
  },
  { shape: [9, 8, 16], scale: "test", note: "per-batch B^T", batch: 4, transposeB: true },
  { shape: [2, 64, 132], scale: "test", note: "M = 2 (time embedding)", transposeB: true },
];

for (const dtype of ["f32", "f16"] as const) {
  gpuTest({
    name: `gemm_direct: matmul / linear on odd sizes, picked blocks, ${dtype}`,
    f16: dtype === "f16",
  }, async (gpu) => {
    try {
      setGemmPathOverride("direct");
      for (const spec of SPECS) {
        const ran = await kernelsRun(gpu, () => checkMatmul(gpu, spec, dtype));
        assert(ran.get("gemm_direct") === 1 && !ran.has("matmul"), `${spec.note}: ${[...ran]}`);
      }
    } finally {
      setGemmPathOverride(null);
    }
  });
}

gpuTest(
  "gemm_direct: every row block, column count and thread rows, bn and bt forms (f32)",
  async (gpu) => {
    // Each tm, cv and thread-row count at least once per form (a block compiles in up to ~2 s on
    // lavapipe); stacked thread rows with M not a multiple of the workgroup's rows.
    const bnBlocks = [[4, 5, 1], [8, 1, 1], [16, 2, 1], [32, 3, 1], [16, 4, 1], [4, 1, 16], [
      8,
      2,
      4,
    ]] as const;
    const btBlocks = [[4, 3, 1], [8, 1, 1], [16, 2, 1], [4, 1, 8], [8, 2, 2]] as const;
    const layout = (
      [tm, cv, wr]: readonly [DirectLayout["tm"], number, DirectLayout["wr"]],
    ): DirectLayout => ({ tm, cv, wg: 16, wr });
    const bn: MatmulSpec = { shape: [41, 12, 92], scale: "test", note: "", bias: true };
    const bt: MatmulSpec = { shape: [19, 8, 36], scale: "test", note: "", transposeB: true };
    try {
      setGemmPathOverride("direct");
      for (const block of bnBlocks) {
        setDirectLayoutOverride(layout(block));
        await checkMatmul(gpu, bn, "f32");
      }
      for (const block of btBlocks) {
        setDirectLayoutOverride(layout(block));
        await checkMatmul(gpu, bt, "f32");
      }
    } finally {
      setDirectLayoutOverride(null);
      setGemmPathOverride(null);
    }
  },
);

gpuTest("gemm_direct: K or N not divisible by 4 falls back to the tiled kernel", async (gpu) => {
  try {
    setGemmPathOverride("direct");
    for (const shape of [[12, 19, 16], [12, 16, 18]] as [number, number, number][]) {
      const spec: MatmulSpec = { shape, scale: "test", note: "", bias: true };
      const ran = await kernelsRun(gpu, () => checkMatmul(gpu, spec, "f32"));
      assert(ran.get("matmul") === 1 && !ran.has("gemm_direct"), `${shape}: ${[...ran]}`);
    }
    // A forced tile always means the tiled path.
    setGemmTileOverride({ tm: 4, tn: 4, bk: 16 });
    const spec: MatmulSpec = { shape: [12, 16, 16], scale: "test", note: "" };
    const ran = await kernelsRun(gpu, () => checkMatmul(gpu, spec, "f32"));
    assert(ran.get("matmul") === 1 && !ran.has("gemm_direct"), `forced tile: ${[...ran]}`);
  } finally {
    setGemmTileOverride(null);
    setGemmPathOverride(null);
  }
});

Deno.test("gemm_direct: path per adapter and override", () => {
  assertEquals(gemmPath({ isFallback: true }), "direct");
  assertEquals(gemmPath({ isFallback: false }), "tiled");
  try {
    setGemmPathOverride("tiled");
    assertEquals(gemmPath({ isFallback: true }), "tiled");
  } finally {
    setGemmPathOverride(null);
  }
});

Deno.test("gemm_direct: block choice fits columns, caps small products, limits bt", () => {
  // 320 columns = 80 vec4 = 16 threads x 5: no padding with the largest row block.
  assertEquals(pickDirectLayout({ M: 1024, N: 320, K: 320 }, "bn"), {
    tm: 32,
    cv: 5,
    wg: 16,
    wr: 1,
  });
  assertEquals(pickDirectLayout({ M: 64, N: 2048, K: 576 }, "bn"), {
    tm: 32,
    cv: 4,
    wg: 16,
    wr: 1,
  });
  // 8 columns = 2 vec4: all 16 threads stacked along M instead of 14 on padding columns.
  assertEquals(pickDirectLayout({ M: 1280, N: 8, K: 11520 }, "bn").wr, 16);
  // One thread row when asked (the "tn" form).
  assertEquals(pickDirectLayout({ M: 1280, N: 8, K: 11520 }, "bn", 1).wr, 1);
  // Small products use at most 16 accumulators (fast to compile); M = 2 takes 4-row blocks.
  const small = pickDirectLayout({ M: 2, N: 1280, K: 320 }, "bn");
  assert(small.tm === 4 && small.tm * small.cv <= 16, JSON.stringify(small));
  const tiny = pickDirectLayout({ M: 77, N: 64, K: 32 }, "bt");
  assert(tiny.tm * tiny.cv * 4 <= 16, JSON.stringify(tiny));
  // bt keeps 4 partial sums per output: at most 160 / 4 vec4 accumulators, cv <= 3.
  const bt = pickDirectLayout({ M: 4096, N: 1280, K: 320 }, "bt");
  assert(bt.tm * bt.cv * 4 <= 160 && bt.cv <= 3 && bt.tm === 16, JSON.stringify(bt));
  try {
    setDirectLayoutOverride({ tm: 8, cv: 2, wg: 16 });
    assertEquals(pickDirectLayout({ M: 1024, N: 320, K: 320 }, "bn"), { tm: 8, cv: 2, wg: 16 });
  } finally {
    setDirectLayoutOverride(null);
  }
});
