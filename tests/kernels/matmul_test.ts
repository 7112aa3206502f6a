import { type GemmTile, setGemmTileOverride } from "../../kernels/gemm.ts";
import { linear, matmul } from "../../kernels/matmul.ts";
import { activate, erf, linearCpu, matmulCpu } from "../../kernels/matmul_cpu.ts";
import { assert, assertClose, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { checkMatmul, type MatmulSpec, matmulSpecs } from "./matmul_cases.ts";

/** Cases checked against the CPU here (bigger ones only run in the bench). */
const MAX_TEST_FLOPS = 5e8;

/**
 * Every tile of the tiled path. GPUs run pickGemmTile's choice in every case above; software
 * adapters run the direct path there (kernels/gemm_direct.ts), so the tiles are forced here.
 */
const TILES: GemmTile[] = [
  { tm: 4, tn: 4, bk: 16 },
  { tm: 8, tn: 4, bk: 16 },
  { tm: 4, tn: 8, bk: 32 },
  { tm: 4, tn: 8, bk: 16 },
  { tm: 8, tn: 8, bk: 16 },
];
for (const spec of matmulSpecs) {
  const [M, K, N] = spec.shape;
  if (spec.scale === "full" || 2 * (spec.batch ?? 1) * M * N * K > MAX_TEST_FLOPS) continue;
  for (const dtype of ["f32", "f16"] as const) {
    gpuTest(
      { name: `matmul ${spec.note} [${spec.shape}] ${dtype} vs CPU`, f16: dtype === "f16" },
      async (gpu) => {
        await checkMatmul(gpu, spec, dtype);
      },
    );
  }
}

gpuTest("matmul: every tiled-path tile on odd and vec4 sizes (f32)", async (gpu) => {
  const specs: MatmulSpec[] = [
    { shape: [131, 37, 133], scale: "test", note: "", bias: true, residual: true },
    { shape: [130, 36, 140], scale: "test", note: "", transposeB: true, activation: "gelu" },
    { shape: [67, 40, 20], scale: "test", note: "", batch: 2, alpha: 0.5 },
    { shape: [3, 33, 130], scale: "test", note: "", batch: 2, transposeB: true, bias: true },
  ];
  try {
    // Each tile runs two of the specs; every spec meets two tiles.
    for (const [i, tile] of TILES.entries()) {
      setGemmTileOverride(tile);
      for (const spec of [specs[i % 4], specs[(i + 1) % 4], ...(i === 2 ? [specs[3]] : [])]) {
        await checkMatmul(gpu, spec, "f32");
      }
    }
  } finally {
    setGemmTileOverride(null);
  }
});

gpuTest("matmul: f16 through the 8x8 tile with K not a multiple of the K step", async (gpu) => {
  try {
    setGemmTileOverride({ tm: 8, tn: 8, bk: 32 });
    await checkMatmul(gpu, {
      shape: [140, 52, 136],
      scale: "test",
      note: "",
      transposeB: true,
      bias: true,
    }, "f16");
  } finally {
    setGemmTileOverride(null);
  }
});

gpuTest(
  "linear: [2, 5, 24] @ [12, 24]^T + bias, quick_gelu, + residual; rank-1 input",
  async (gpu) => {
    const x = randomArray(2 * 5 * 24, 31), w = randomArray(12 * 24, 32, 0.2);
    const bias = randomArray(12, 33), res = randomArray(2 * 5 * 12, 34);
    const tx = gpu.upload(x, [2, 5, 24]), tw = gpu.upload(w, [12, 24]);
    const tb = gpu.upload(bias, [12]), tr = gpu.upload(res, [2, 5, 12]);
    const out = linear(gpu, tx, tw, { bias: tb, activation: "quick_gelu", residual: tr });
    assert(out.shape.join() === "2,5,12", `shape ${out.shape}`);
    const want = linearCpu(x, w, {
      xShape: [2, 5, 24],
      outFeatures: 12,
      bias,
      residual: res,
      activation: "quick_gelu",
    });
    assertClose(await gpu.read(out), want, { atol: 1e-5, rtol: 1e-5 });
    const v = gpu.upload(x.subarray(0, 24), [24]);
    const out1 = linear(gpu, v, tw);
    assert(out1.shape.join() === "12", `shape ${out1.shape}`);
    const want1 = linearCpu(x.subarray(0, 24), w, { xShape: [24], outFeatures: 12 });
    assertClose(await gpu.read(out1), want1, { atol: 1e-5, rtol: 1e-5 });
    for (const t of [tx, tw, tb, tr, out, v, out1]) t.release();
  },
);

gpuTest("matmul: shape and dtype errors name the op and shapes", async (gpu) => {
  const a = gpu.upload(randomArray(6), [2, 3]);
  const b = gpu.upload(randomArray(8), [4, 2]);
  const b3 = gpu.upload(randomArray(12), [3, 4]);
  const a3 = gpu.upload(randomArray(12), [2, 2, 3]);
  await assertRejects(
    () => matmul(gpu, a, b),
    /matmul: expected bmat \[3, N\] for a \[2, 3\], got \[4, 2\]/,
  );
  await assertRejects(() => matmul(gpu, a, b, { transposeB: true }), /expected bmat \[N, 3\]/);
  const b3b = gpu.upload(randomArray(24), [2, 3, 4]);
  const a33 = gpu.upload(randomArray(18), [3, 2, 3]);
  await assertRejects(
    () => matmul(gpu, a33, b3b),
    /expected bmat \[3, 3, N\] for a \[3, 2, 3\], got \[2, 3, 4\]/,
  );
  await assertRejects(
    () => matmul(gpu, a, b3, { bias: b }),
    /matmul: expected bias \[4\], got \[4, 2\]/,
  );
  await assertRejects(
    () => matmul(gpu, a3, b3, { residual: a }),
    /matmul: expected residual \[2, 2, 4\] \(the output shape\), got \[2, 3\]/,
  );
  await assertRejects(
    () => linear(gpu, a, b3),
    /linear: expected x \[\.\.\., K\] and weight \[N, K\]/,
  );
  await assertRejects(() => matmul(gpu, a.reshape([6]), b3), /matmul: expected a \[\.\.\., M, K\]/);
  if (gpu.hasF16) {
    const h = gpu.upload(randomArray(12), [3, 4], "f16");
    await assertRejects(() => matmul(gpu, a, h), /matmul: expected bmat to be f32 like a, got f16/);
    h.release();
  }
  await assertRejects(
    () => matmul(gpu, a, b3, { activation: "relu" as never }),
    /matmul: expected activation one of none, silu, gelu, quick_gelu, got "relu"/,
  );
  for (const t of [a, b, b3, a3, b3b, a33]) t.release();
});

Deno.test("matmul_cpu: erf and activations match known values", () => {
  // erf from tables (Abramowitz & Stegun 7.1): erf(0.5) = 0.5204998778, erf(1) = 0.8427007929.
  assertClose([erf(0), erf(0.5), erf(-1), erf(3)], [0, 0.5204998778, -0.8427007929, 0.9999779095], {
    atol: 2e-7,
    rtol: 0,
  });
  // gelu(1) = 0.8413447461 (torch), silu(1) = 0.7310585786, quick_gelu(1) = 1 / (1 + e^-1.702).
  assertClose(
    [activate(1, "gelu"), activate(1, "silu"), activate(1, "quick_gelu"), activate(-2, "none")],
    [0.8413447461, 0.7310585786, 0.8457957, -2],
    { atol: 2e-7, rtol: 0 },
  );
  const out = matmulCpu(new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8]), {
    aShape: [2, 2],
    bShape: [2, 2],
    bias: new Float32Array([1, -1]),
  });
  assertClose(out, [20, 21, 44, 49], { atol: 0, rtol: 0 });
});
