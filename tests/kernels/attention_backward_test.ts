import { attention, attentionForTraining, attentionWithLayout } from "../../kernels/attention.ts";
import { attentionBackward } from "../../kernels/attention_backward.ts";
import {
  attentionBackwardCpu,
  type AttentionCpuOptions,
  attentionForwardCpu,
} from "../../kernels/attention_cpu.ts";
import { GradientTape } from "../../engine/training/autograd.ts";
import { roundToF16 } from "../../kernels/gpu/half.ts";
import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { assert, assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

/**
 * f32 gradients vs the float64 reference: f32 scores, exp2 and sums over up to ~40 keys/queries
 * of O(1) terms. Worst seen on lavapipe: 1e-6 abs (|grad| up to ~3).
 */
const F32_TOL = { atol: 5e-6, rtol: 1e-4 };
/**
 * f16: same f16-rounded inputs on both sides; out is stored in f16 before D = rowsum(gout * out)
 * and the gradients are rounded to f16 (2^-11 relative, ~1.5e-3 at |grad| = 3), which
 * dominates. Worst seen: 9.4e-4 abs at |grad| 3.2, 3.5e-4 at |grad| < 1.
 */
const F16_TOL = { atol: 1e-3, rtol: 4e-3 };
/** lse (log2 domain) vs the reference: f32 exp2/log2 of O(10) scores. */
const LSE_TOL = { atol: 1e-4, rtol: 1e-5 };

/** A shape: q [batch, seqQ, heads*headDim], k/v [batch / kvBroadcast, seqK, heads*headDim]. */
type Shape = Required<Omit<AttentionCpuOptions, "scale">> & { scale?: number };

function inputs(s: Shape, seed: number, dtype: DType = "f32") {
  const width = s.heads * s.headDim;
  const nq = s.batch * s.seqQ * width, nk = (s.batch / s.kvBroadcast) * s.seqK * width;
  const r = (x: Float32Array) => (dtype === "f16" ? roundToF16(x) : x);
  // q and k scaled so the softmax is not flat (scores of a few units).
  return {
    q: r(randomArray(nq, seed, 2)),
    k: r(randomArray(nk, seed + 1, 2)),
    v: r(randomArray(nk, seed + 2)),
    go: r(randomArray(nq, seed + 3)),
  };
}

// ---------------------------------------------------------------- CPU reference

Deno.test("attentionBackwardCpu matches central finite differences of the forward", () => {
  const shapes: Shape[] = [
    { batch: 2, seqQ: 3, seqK: 4, heads: 2, headDim: 3, causal: false, kvBroadcast: 2 },
    { batch: 1, seqQ: 4, seqK: 4, heads: 2, headDim: 2, causal: true, kvBroadcast: 1, scale: 0.7 },
  ];
  for (const s of shapes) {
    const x = inputs(s, 11);
    const [q, k, v] = [x.q, x.k, x.v].map((a) => Float64Array.from(a));
    const loss = () => {
      const { out } = attentionForwardCpu(q, k, v, s);
      return out.reduce((acc, o, i) => acc + o * x.go[i], 0);
    };
    const grads = attentionBackwardCpu(q, k, v, x.go, s);
    // Central differences in float64: O(h^2) ~ 1e-10 truncation, ~1e-11 rounding.
    const h = 1e-5;
    for (
      const [name, t, g] of [["q", q, grads.dq], ["k", k, grads.dk], ["v", v, grads.dv]] as const
    ) {
      const fd = new Float64Array(t.length);
      for (let i = 0; i < t.length; i++) {
        const t0 = t[i];
        t[i] = t0 + h;
        const up = loss();
        t[i] = t0 - h;
        const down = loss();
        t[i] = t0;
        fd[i] = (up - down) / (2 * h);
      }
      const stats = assertClose(g, fd, {
        atol: 1e-8,
        rtol: 1e-6,
        msg: `d${name} ${JSON.stringify(s)}`,
      });
      assert(stats.refMaxAbs > 1e-2, `d${name} is not trivially zero`);
    }
  }
});

// ---------------------------------------------------------------- GPU vs CPU

interface BackwardCase extends Shape {
  dtype: DType;
  note: string;
}

/** Odd sizes: Lq/Lk not multiples of the tiles, d not a multiple of 4, every TD (1, 2, 4). */
const CASES: BackwardCase[] = [
  {
    batch: 2,
    seqQ: 13,
    seqK: 19,
    heads: 3,
    headDim: 6,
    causal: false,
    kvBroadcast: 1,
    dtype: "f32",
    note: "d 6 scalar loads",
  },
  {
    batch: 4,
    seqQ: 21,
    seqK: 21,
    heads: 2,
    headDim: 40,
    causal: true,
    kvBroadcast: 2,
    dtype: "f32",
    note: "causal, kvBroadcast 2, d 40",
  },
  {
    batch: 6,
    seqQ: 11,
    seqK: 7,
    heads: 2,
    headDim: 80,
    causal: false,
    kvBroadcast: 3,
    dtype: "f32",
    note: "kvBroadcast 3, d 80 (2 threads per row)",
  },
  {
    batch: 1,
    seqQ: 18,
    seqK: 18,
    heads: 1,
    headDim: 130,
    causal: true,
    kvBroadcast: 1,
    dtype: "f32",
    note: "causal, d 130 scalar (4 threads per row, bucket 160)",
  },
  {
    batch: 2,
    seqQ: 9,
    seqK: 17,
    heads: 1,
    headDim: 160,
    causal: false,
    kvBroadcast: 2,
    dtype: "f32",
    note: "d 160, kvBroadcast 2",
  },
  {
    batch: 4,
    seqQ: 10,
    seqK: 10,
    heads: 2,
    headDim: 20,
    causal: true,
    kvBroadcast: 2,
    dtype: "f16",
    note: "f16 causal, kvBroadcast 2",
  },
  {
    batch: 2,
    seqQ: 7,
    seqK: 12,
    heads: 2,
    headDim: 61,
    causal: false,
    kvBroadcast: 1,
    dtype: "f16",
    note: "f16 d 61 scalar (2 threads per row)",
  },
];

function upload(gpu: Gpu, c: BackwardCase, seed: number) {
  const x = inputs(c, seed, c.dtype);
  const width = c.heads * c.headDim;
  const qShape = [c.batch, c.seqQ, width], kvShape = [c.batch / c.kvBroadcast, c.seqK, width];
  return {
    x,
    q: gpu.upload(x.q, qShape, c.dtype, "q"),
    k: gpu.upload(x.k, kvShape, c.dtype, "k"),
    v: gpu.upload(x.v, kvShape, c.dtype, "v"),
    go: gpu.upload(x.go, qShape, c.dtype, "gout"),
  };
}

for (const c of CASES) {
  const name = `attention backward ${c.dtype} B${c.batch} Lq${c.seqQ} Lk${c.seqK} H${c.heads} ` +
    `d${c.headDim}: ${c.note} (vs CPU)`;
  gpuTest({ name, f16: c.dtype === "f16" }, async (gpu) => {
    const { x, q, k, v, go } = upload(gpu, c, 7 + c.headDim);
    const opts = { heads: c.heads, causal: c.causal, kvBroadcast: c.kvBroadcast };
    const { out, lse } = attentionForTraining(gpu, q, k, v, opts);
    const { dq, dk, dv } = attentionBackward(gpu, go, { q, k, v, out, lse, ...opts });
    assert(dq && dk && dv, "all three gradients by default");
    assertEquals([dq.shape, dk.shape, dv.shape], [q.shape, k.shape, v.shape]);
    const want = attentionBackwardCpu(x.q, x.k, x.v, x.go, c);
    const tol = c.dtype === "f16" ? F16_TOL : F32_TOL;
    assertClose(await gpu.read(dq), want.dq, { ...tol, msg: `${name} dq` });
    assertClose(await gpu.read(dk), want.dk, { ...tol, msg: `${name} dk` });
    assertClose(await gpu.read(dv), want.dv, { ...tol, msg: `${name} dv` });
    const ref = attentionForwardCpu(x.q, x.k, x.v, c);
    assertClose(await gpu.read(lse), ref.lse.map((l) => l * Math.LOG2E), {
      ...LSE_TOL,
      msg: `${name} lse`,
    });
    for (const t of [q, k, v, go, out, lse, dq, dk, dv]) t.release();
  });
}

gpuTest("attention backward: needs skips the kernels of gradients not asked for", async (gpu) => {
  const c = CASES[0];
  const { q, k, v, go } = upload(gpu, c, 3);
  const opts = { heads: c.heads };
  const { out, lse } = attentionForTraining(gpu, q, k, v, opts);
  let grads: Tensor[] = [];
  const ran = await countDispatches(gpu, () => {
    const g = attentionBackward(gpu, go, {
      q,
      k,
      v,
      out,
      lse,
      ...opts,
      needs: [true, false, false],
    });
    assertEquals([g.dk, g.dv], [null, null]);
    grads = [g.dq!];
  });
  // (fill_u32 is the tests' NaN poisoning of new tensors.)
  const kernels = [...ran.keys()].map((key) => key.split(":")[0])
    .filter((name) => name.startsWith("attention")).sort();
  assertEquals(kernels, ["attention_bwd_dot", "attention_bwd_dq"]);
  for (const t of [q, k, v, go, out, lse, ...grads]) t.release();
});

gpuTest(
  "attention forward for training: same output bytes as inference, lse only then",
  async (gpu) => {
    const c = CASES[1];
    const { q, k, v } = upload(gpu, c, 5);
    const opts = { heads: c.heads, causal: c.causal, kvBroadcast: c.kvBroadcast };
    let plain: Tensor | null = null;
    const ran = await countDispatches(gpu, () => {
      plain = attentionWithLayout(gpu, q, k, v, { ...opts, layout: "general" });
    });
    assert([...ran.keys()].every((key) => !key.endsWith("_lse")), "inference writes no lse");
    const { out, lse } = attentionForTraining(gpu, q, k, v, opts);
    assertEquals(Array.from(await gpu.read(out)), Array.from(await gpu.read(plain!)));
    for (const t of [q, k, v, out, lse, plain!]) t.release();
  },
);

gpuTest("attention backward: mismatched operands are refused naming the shapes", async (gpu) => {
  const t = (shape: number[]) => gpu.empty(shape, "f32", "x");
  const q = t([2, 5, 8]), kv = t([2, 7, 8]), lse = t([2, 2, 5]), bad = t([2, 2, 6]);
  const o = { q, k: kv, v: kv, out: q, heads: 2 };
  await assertRejects(
    () => attentionBackward(gpu, q, { ...o, lse: bad }),
    /attention backward: expected .*lse \[2, 2, 5\], got .*lse \[2, 2, 6\]/,
  );
  await assertRejects(
    () => attentionBackward(gpu, q, { ...o, lse, kvBroadcast: 2 }),
    /attention backward: expected .*k, v \[1, Lk >= 1, 8\]/,
  );
  await assertRejects(
    () => attentionBackward(gpu, q, { ...o, lse, causal: true }),
    /causal needs Lq == Lk/,
  );
  for (const x of [q, kv, lse, bad]) x.release();
});

// ---------------------------------------------------------------- autograd tape

gpuTest(
  "attention on a GradientTape: gradients of the watched inputs match the CPU",
  async (gpu) => {
    const c: BackwardCase = { ...CASES[2], causal: false };
    const { x, q, k, v, go } = upload(gpu, c, 9);
    const opts = { heads: c.heads, kvBroadcast: c.kvBroadcast };
    const want = attentionBackwardCpu(x.q, x.k, x.v, x.go, c);

    const tape = new GradientTape(gpu);
    tape.watch(q);
    tape.watch(k);
    tape.watch(v);
    const o = tape.run(() => gpu.scope(() => attention(gpu, q, k, v, opts)));
    assertEquals(tape.size, 1);
    const g = tape.gradients(o, go);
    assertEquals(g.size, 3);
    assertClose(await gpu.read(g.get(q)!), want.dq, { ...F32_TOL, msg: "tape dq" });
    assertClose(await gpu.read(g.get(k)!), want.dk, { ...F32_TOL, msg: "tape dk" });
    assertClose(await gpu.read(g.get(v)!), want.dv, { ...F32_TOL, msg: "tape dv" });
    for (const t of g.values()) t.release();
    tape.dispose();
    o.release();

    // k unwatched (a frozen projection's output): no entry for it.
    const tape2 = new GradientTape(gpu);
    tape2.watch(q);
    tape2.watch(v);
    const o2 = tape2.run(() => gpu.scope(() => attention(gpu, q, k, v, opts)));
    const g2 = tape2.gradients(o2, go);
    assertEquals([g2.has(q), g2.has(k), g2.has(v)], [true, false, true]);
    assertClose(await gpu.read(g2.get(v)!), want.dv, { ...F32_TOL, msg: "tape dv (k unwatched)" });
    for (const t of g2.values()) t.release();
    tape2.dispose();
    o2.release();

    // Nothing watched: the op is not recorded.
    const tape3 = new GradientTape(gpu);
    const o3 = tape3.run(() => gpu.scope(() => attention(gpu, q, k, v, opts)));
    assertEquals(tape3.size, 0);
    tape3.dispose();
    for (const t of [q, k, v, go, o3]) t.release();
  },
);

gpuTest(
  "attention backward over binding-sized runs of kv batches equals one launch",
  async (gpu) => {
    // q per kv batch item: 2 frames * 32 rows * 8 channels * 4 B = 2 KiB; lse per item 256 B.
    const c: BackwardCase = {
      batch: 4,
      seqQ: 32,
      seqK: 8,
      heads: 2,
      headDim: 4,
      causal: false,
      kvBroadcast: 2,
      dtype: "f32",
      note: "",
    };
    const { q, k, v, go } = upload(gpu, c, 13);
    const opts = { heads: c.heads, kvBroadcast: c.kvBroadcast };
    const run = async () => {
      const { out, lse } = attentionForTraining(gpu, q, k, v, opts);
      const g = attentionBackward(gpu, go, { q, k, v, out, lse, ...opts });
      const tensors = [out, lse, g.dq!, g.dk!, g.dv!];
      const values = [];
      for (const t of tensors) values.push(Array.from(await gpu.read(t)));
      for (const t of tensors) t.release();
      return values;
    };
    const whole = await run();
    gpu.setLimits({ maxStorageBufferBindingSize: 2048 });
    try {
      let runs: number[][] = [];
      const ran = await countDispatches(gpu, async () => {
        runs = await run();
      });
      const launches = (name: string) =>
        [...ran].filter(([key]) => key.startsWith(name + ":")).reduce((n, [, m]) => n + m, 0);
      assertEquals([launches("attention"), launches("attention_bwd_dq")], [2, 2], "runs");
      assertEquals(runs, whole, "out, lse, dq, dk, dv");
    } finally {
      gpu.setLimits();
    }
    for (const t of [q, k, v, go]) t.release();
  },
);
