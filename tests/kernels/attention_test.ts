import {
  attention,
  attentionTile,
  attentionWithLayout,
  type DenseLayout,
  denseLayout,
} from "../../kernels/attention.ts";
import { attentionCpu } from "../../kernels/attention_cpu.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType } from "../../kernels/gpu/tensor.ts";
import { assert, assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { type AttentionCase, caseInputs, cases } from "./attention_cases.ts";

/** f32: exp2 and f32 accumulation vs float64 (brief: ~1e-5 abs / 1e-4 rel). */
const F32_TOL = { atol: 1e-5, rtol: 1e-4 };
/** f16: same f16-rounded inputs; the f16 output rounding (2^-11 relative) dominates. */
const F16_TOL = { atol: 1e-3, rtol: 1e-2 };
/** Reduced cases checked here (the rest only run in the bench). */
const MAX_TEST_FLOPS = 1.5e9;

function maybeF16(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? roundToF16(x) : x;
}

async function checkCase(gpu: Gpu, c: AttentionCase): Promise<void> {
  const [bh, lq, lk, d] = c.shape;
  const { q, k, v, qShape, kvShape } = caseInputs(c);
  const tq = gpu.upload(q, qShape, c.dtype, "q");
  const tk = gpu.upload(k, kvShape, c.dtype, "k");
  const tv = gpu.upload(v, kvShape, c.dtype, "v");
  const out = attention(gpu, tq, tk, tv, {
    heads: c.heads,
    causal: c.causal,
    kvBroadcast: c.kvBroadcast,
  });
  assertEquals(out.shape, qShape);
  assertEquals(out.dtype, c.dtype);
  const got = await gpu.read(out);
  const want = attentionCpu(maybeF16(q, c.dtype), maybeF16(k, c.dtype), maybeF16(v, c.dtype), {
    batch: bh / c.heads,
    seqQ: lq,
    seqK: lk,
    heads: c.heads,
    headDim: d,
    causal: c.causal,
    kvBroadcast: c.kvBroadcast,
  });
  assertClose(got, want, {
    ...(c.dtype === "f16" ? F16_TOL : F32_TOL),
    msg: `attention ${c.dtype} [${c.shape}] ${c.note}`,
  });
  for (const t of [tq, tk, tv, out]) t.release();
}

const checked = cases.filter((c) =>
  c.scale === "test" || (c.scale === "reduced" && (c.flops ?? 0) <= MAX_TEST_FLOPS)
);
for (const c of checked) {
  gpuTest(
    { name: `attention ${c.dtype} [${c.shape}] ${c.note} (vs CPU)`, f16: c.dtype === "f16" },
    (gpu) => checkCase(gpu, c),
  );
}

Deno.test("attention cases: the comparison and full SD shapes are in the table", () => {
  const has = (shape: number[], dtype: DType, scale: string) =>
    cases.some((c) => c.shape.join() === shape.join() && c.dtype === dtype && c.scale === scale);
  for (const dtype of ["f32", "f16"] as const) {
    assert(has([8, 256, 256, 40], dtype, "reduced"), `comparison seq 256 ${dtype}`);
    assert(has([8, 1024, 1024, 40], dtype, "reduced"), `comparison seq 1024 ${dtype}`);
  }
  assert(has([16, 4096, 4096, 40], "f16", "full"), "spatial 64x64");
  assert(has([16, 4096, 77, 40], "f16", "full"), "cross 64x64");
  assert(has([2 * 64 * 64 * 8, 16, 16, 40], "f32", "full"), "temporal 64x64");
  for (const c of cases) {
    const [bh, lq, lk, d] = c.shape;
    assertEquals(c.flops, 4 * bh * lq * lk * d, `flops of [${c.shape}]`);
  }
});

Deno.test("attention tiles: SD head dims map to their buckets", () => {
  assertEquals([40, 80, 160, 64, 512, 4].map((d) => attentionTile(d).dp), [
    40,
    80,
    160,
    64,
    512,
    8,
  ]);
  assertEquals(attentionTile(160).td, 4);
});

gpuTest("attention: scores far beyond exp's range (online max) stay exact", async (gpu) => {
  // |scores| reach ~1e3 (exp(88) already overflows f32): a naive softmax gives Inf/NaN.
  const [batch, lq, lk, heads, d] = [2, 21, 50, 2, 16];
  const q = randomArray(batch * lq * heads * d, 5, 30);
  const k = randomArray(batch * lk * heads * d, 6, 30);
  const v = randomArray(batch * lk * heads * d, 7, 1);
  const tq = gpu.upload(q, [batch, lq, heads * d], "f32", "q");
  const tk = gpu.upload(k, [batch, lk, heads * d], "f32", "k");
  const tv = gpu.upload(v, [batch, lk, heads * d], "f32", "v");
  const out = attention(gpu, tq, tk, tv, { heads, scale: 1 });
  const got = await gpu.read(out);
  const want = attentionCpu(q, k, v, { batch, seqQ: lq, seqK: lk, heads, headDim: d, scale: 1 });
  // Scores of ~1e3 carry f32 rounding of ~1e-4 absolute, hence the looser tolerance.
  const stats = assertClose(got, want, { atol: 1e-4, rtol: 1e-3, msg: "large scores" });
  assert(stats.refMaxAbs > 0.5, "outputs are near one-hot picks of v");
  for (const t of [tq, tk, tv, out]) t.release();
});

gpuTest("attention: default scale is 1/sqrt(d), an explicit one is used as given", async (gpu) => {
  const [batch, l, d] = [1, 12, 8];
  const q = randomArray(l * d, 8, 2), k = randomArray(l * d, 9, 2), v = randomArray(l * d, 10);
  const tq = gpu.upload(q, [batch, l, d]), tk = gpu.upload(k, [batch, l, d]);
  const tv = gpu.upload(v, [batch, l, d]);
  const shape = { batch, seqQ: l, seqK: l, heads: 1, headDim: d };
  const o1 = attention(gpu, tq, tk, tv, { heads: 1 });
  const o2 = attention(gpu, tq, tk, tv, { heads: 1, scale: 0.05 });
  const byDefault = await gpu.read(o1), explicit = await gpu.read(o2);
  assertClose(byDefault, attentionCpu(q, k, v, { ...shape, scale: 1 / Math.sqrt(d) }), F32_TOL);
  assertClose(explicit, attentionCpu(q, k, v, { ...shape, scale: 0.05 }), F32_TOL);
  assert(Math.abs(explicit[0] - byDefault[0]) > 1e-3, "the two scales give different outputs");
  for (const t of [tq, tk, tv, o1, o2]) t.release();
});

gpuTest("attention: bad shapes and options name the op and the shapes", async (gpu) => {
  const t = (shape: number[], dtype: DType = "f32") => gpu.empty(shape, dtype, "x");
  const q = t([2, 5, 16]), k = t([2, 7, 16]), v = t([2, 7, 16]);
  await assertRejects(() => attention(gpu, q, k, v, { heads: 3 }), /attention: .*heads \(3\)/);
  await assertRejects(
    () => attention(gpu, q, t([2, 7, 8]), v, { heads: 2 }),
    /attention: expected k and v \[2, 7, 16\].*k \[2, 7, 8\]/,
  );
  await assertRejects(
    () => attention(gpu, q, k, v, { heads: 2, kvBroadcast: 2 }),
    /attention: expected k and v \[1, 7, 16\]/,
  );
  await assertRejects(
    () => attention(gpu, q, k, v, { heads: 2, kvBroadcast: 3 }),
    /kvBroadcast \(3\) to divide B/,
  );
  await assertRejects(
    () => attention(gpu, q, k, v, { heads: 2, causal: true }),
    /causal needs Lq == Lk.*q \[2, 5, 16\]/,
  );
  await assertRejects(
    () => attention(gpu, t([2, 5, 16, 1]), k, v, { heads: 2 }),
    /expected q \[B, Lq, H\*d\]/,
  );
  const big = t([1, 2, 600]);
  await assertRejects(() => attention(gpu, big, big, big, { heads: 1 }), /head dim in \[1, 512\]/);
  if (gpu.hasF16) {
    await assertRejects(
      () => attention(gpu, q, t([2, 7, 16], "f16"), v, { heads: 2 }),
      /one dtype.*f32\/f16\/f32/,
    );
  }
});

Deno.test("attention dense layouts: hardware 64 x 1 x 16, software 16 threads, rows * dp <= 160", () => {
  assertEquals(denseLayout({ isFallback: false }, 40), { threads: 64, rows: 1, keys: 16 });
  assertEquals(denseLayout({ isFallback: true }, 40), { threads: 16, rows: 4, keys: 8 });
  assertEquals(denseLayout({ isFallback: true }, 8), { threads: 16, rows: 8, keys: 8 });
  assertEquals(denseLayout({ isFallback: true }, 32), { threads: 16, rows: 4, keys: 8 });
  assertEquals(denseLayout({ isFallback: true }, 64), { threads: 16, rows: 2, keys: 8 });
});

/**
 * Dense-variant edge cases with layouts forced (so the hardware layout runs here too): Lk not a
 * multiple of the key tile, Lq not a multiple of the workgroup's threads * rows, scalar loads
 * (d % 4 != 0), kvBroadcast, f16, a short Lq the general kernel would pack. Layouts are few and
 * small because every one is a separate, slowly compiled pipeline on llvmpipe.
 */
const DENSE_CASES: {
  shape: [number, number, number, number];
  heads: number;
  kvBroadcast?: number;
  dtype: DType;
  layout: DenseLayout;
  note: string;
}[] = [
  {
    shape: [2, 70, 37, 8],
    heads: 2,
    dtype: "f32",
    layout: { threads: 64, rows: 1, keys: 16 },
    note: "hardware layout, Lq 70 = 64 + 6, Lk 37 = 2 * 16 + 5",
  },
  {
    shape: [2, 50, 33, 6],
    heads: 2,
    dtype: "f32",
    layout: { threads: 3, rows: 5, keys: 4 },
    note: "d 6 scalar loads, Lq 50 = 3 * 15 + 5, Lk 33 = 8 * 4 + 1",
  },
  {
    shape: [4, 35, 17, 6],
    heads: 2,
    dtype: "f16",
    layout: { threads: 4, rows: 2, keys: 8 },
    note: "f16 scalar loads, Lk 17 = 2 * 8 + 1",
  },
  {
    shape: [8, 40, 21, 16],
    heads: 2,
    kvBroadcast: 2,
    dtype: "f32",
    layout: { threads: 16, rows: 2, keys: 8 },
    note: "kvBroadcast 2, d 16",
  },
  {
    shape: [6, 5, 9, 8],
    heads: 3,
    dtype: "f32",
    layout: { threads: 4, rows: 2, keys: 8 },
    note: "Lq 5 (the general kernel would pack pairs)",
  },
  {
    shape: [2, 45, 20, 64],
    heads: 1,
    dtype: "f32",
    layout: { threads: 8, rows: 1, keys: 4 },
    note: "d 64, largest dense bucket",
  },
];
for (const c of DENSE_CASES) {
  const name = `attention dense ${c.dtype} [${c.shape}] ${JSON.stringify(c.layout)}: ${c.note}`;
  gpuTest({ name, f16: c.dtype === "f16" }, async (gpu) => {
    const [bh, lq, lk, d] = c.shape;
    const { heads, kvBroadcast = 1, layout } = c;
    const batch = bh / heads, width = heads * d, kvBatch = batch / kvBroadcast;
    const q = maybeF16(randomArray(batch * lq * width, 3 + d, 2), c.dtype);
    const k = maybeF16(randomArray(kvBatch * lk * width, 4 + lk, 2), c.dtype);
    const v = maybeF16(randomArray(kvBatch * lk * width, 5 + lq), c.dtype);
    const tq = gpu.upload(q, [batch, lq, width], c.dtype, "q");
    const tk = gpu.upload(k, [kvBatch, lk, width], c.dtype, "k");
    const tv = gpu.upload(v, [kvBatch, lk, width], c.dtype, "v");
    const out = attentionWithLayout(gpu, tq, tk, tv, { heads, kvBroadcast, layout });
    const want = attentionCpu(q, k, v, {
      batch,
      seqQ: lq,
      seqK: lk,
      heads,
      headDim: d,
      kvBroadcast,
    });
    assertClose(await gpu.read(out), want, {
      ...(c.dtype === "f16" ? F16_TOL : F32_TOL),
      msg: name,
    });
    for (const t of [tq, tk, tv, out]) t.release();
  });
}

gpuTest("attention dense: layouts it cannot run are refused with the reason", async (gpu) => {
  const t = (shape: number[]) => gpu.empty(shape, "f32", "x");
  const x = t([1, 40, 80]);
  await assertRejects(
    () =>
      attentionWithLayout(gpu, x, x, x, { heads: 1, layout: { threads: 64, rows: 1, keys: 16 } }),
    /attention: the dense variant needs d <= 64 and no causal mask.*q \[1, 40, 80\]/,
  );
  const y = t([1, 40, 40]);
  await assertRejects(
    () =>
      attentionWithLayout(gpu, y, y, y, {
        heads: 1,
        causal: true,
        layout: { threads: 8, rows: 2, keys: 8 },
      }),
    /dense variant needs d <= 64 and no causal mask/,
  );
  await assertRejects(
    () => attentionWithLayout(gpu, y, y, y, { heads: 1, layout: { threads: 0, rows: 2, keys: 8 } }),
    /attention: expected a dense layout of 1\.\.\d+ threads, >= 1 rows and >= 1 keys/,
  );
  for (const z of [x, y]) z.release();
});
