/**
 * Backward passes of the elementwise kernels: the CPU backward against central finite
 * differences of the CPU forward, the GPU backward (run by a GradientTape) against the CPU
 * backward, sumTo against its reference, and tapes over chains of ops.
 */

import { GradientTape } from "../../engine/training/autograd.ts";
import { add, geglu, mul, scale, sumTo, unary, type UnaryOp } from "../../kernels/elementwise.ts";
import {
  binaryBackwardCpu,
  binaryCpu,
  gegluBackwardCpu,
  gegluCpu,
  sumToCpu,
  unaryBackwardCpu,
  unaryCpu,
} from "../../kernels/elementwise_cpu.ts";
import { assertClose, assertEquals, assertRejects } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { data, finiteDifferences, tapeRun } from "./backward.ts";

// Tolerances. Finite differences (h = 1e-2 on f32 inputs, float64 loss over f32-rounded
// forward outputs): atol 1e-3 / rtol 1e-3 (truncation ~h^2 f''' / 6 < 2e-5, output rounding
// ~1e-5). GPU vs CPU backward: f32 atol 1e-5 / rtol 1e-4 (f32 math, sums in another order; gelu's
// erf approximation < 5e-7); f16 (inputs and gy rounded to f16 for the reference) atol 1e-2 /
// rtol 1e-2: one f16 rounding of each result, plus that of the mul backward's gy * b before its
// sum over at most 6 terms.
const FD = { atol: 1e-3, rtol: 1e-3 };
const TOL = { f32: { atol: 1e-5, rtol: 1e-4 }, f16: { atol: 1e-2, rtol: 1e-2 } };

// ---------------------------------------------------------------- cases

const binaryCases: { op: "add" | "mul"; a: number[]; b: number[] }[] = [
  { op: "add", a: [3, 5], b: [3, 5] },
  { op: "add", a: [2, 3, 5], b: [3, 1] },
  { op: "mul", a: [2, 3, 5], b: [3, 5] },
  { op: "mul", a: [4, 1, 6], b: [5, 1] },
  { op: "mul", a: [1, 3, 1, 7], b: [2, 3, 5, 1] },
];
const UNARY: UnaryOp[] = ["silu", "gelu", "quick_gelu"];
const UNARY_SHAPE = [3, 7];
const GEGLU_SHAPES = [[3, 10], [2, 2, 16]]; // scalar and vec4 halves
const SCALE = -0.75;

// ---------------------------------------------------------------- CPU backward vs finite differences

Deno.test("add / mul backward (CPU) match finite differences with broadcasting", () => {
  for (const k of binaryCases) {
    const a = data(k.a, 1), b = data(k.b, 2);
    const out = binaryCpu(k.op, a, k.a, b, k.b).shape;
    const gy = data(out, 3);
    const { ga, gb } = binaryBackwardCpu(k.op, a, k.a, b, k.b, gy);
    const f = ([x, y]: Float32Array[]) => binaryCpu(k.op, x, k.a, y, k.b).data;
    const msg = `${k.op} [${k.a}] [${k.b}]`;
    assertClose(ga, finiteDifferences(f, [a, b], gy, 0), { ...FD, msg: `${msg} da` });
    assertClose(gb, finiteDifferences(f, [a, b], gy, 1), { ...FD, msg: `${msg} db` });
  }
});

Deno.test("activation / geglu backward (CPU) match finite differences", () => {
  for (const op of UNARY) {
    const x = data(UNARY_SHAPE, 4), gy = data(UNARY_SHAPE, 5);
    const fd = finiteDifferences(([v]) => unaryCpu(v, op), [x], gy, 0);
    assertClose(unaryBackwardCpu(x, gy, op), fd, { ...FD, msg: op });
  }
  for (const shape of GEGLU_SHAPES) {
    const half = shape[shape.length - 1] / 2;
    const x = data(shape, 6), gy = data([...shape.slice(0, -1), half], 7);
    const fd = finiteDifferences(([v]) => gegluCpu(v, half), [x], gy, 0);
    assertClose(gegluBackwardCpu(x, gy, half), fd, { ...FD, msg: `geglu [${shape}]` });
  }
});

// ---------------------------------------------------------------- sumTo

const sumToCases: { x: number[]; to: number[]; note: string }[] = [
  { x: [5, 7, 3], to: [3], note: "bias of [B, L, C]: thread per output" },
  { x: [2, 5, 9, 9], to: [1, 5, 1, 1], note: "channel of NCHW: workgroup per output" },
  { x: [3, 4, 5], to: [3, 1, 5], note: "middle dim" },
  { x: [2, 3, 2, 3, 2, 3], to: [3, 1, 3, 1, 3], note: "rank 6, alternating" },
  { x: [6, 11], to: [1], note: "everything to one value" },
  { x: [1, 4, 1, 6], to: [4, 1, 6], note: "no reduction: a copy" },
  { x: [700], to: [1], note: "long reduction, one workgroup" },
];

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    { name: `sumTo ${dtype} matches the CPU reference`, f16: dtype === "f16" },
    async (gpu) => {
      for (const k of sumToCases) {
        const xs = data(k.x, 8, dtype);
        const x = gpu.upload(xs, k.x, dtype);
        const y = sumTo(gpu, x, k.to);
        assertEquals(y.shape, k.to);
        // f16: one rounding of a sum of up to 700 values of |v| <= 2.
        const tol = dtype === "f16" ? { atol: 0.5, rtol: 2e-3 } : TOL.f32;
        assertClose(await gpu.read(y), sumToCpu(xs, k.x, k.to), { ...tol, msg: k.note });
        x.release();
        y.release();
      }
    },
  );
}

gpuTest("sumTo: a shape that does not broadcast is an error naming both", async (gpu) => {
  const x = gpu.upload(data([2, 3], 9), [2, 3], "f32");
  await assertRejects(
    () => sumTo(gpu, x, [2]),
    /sum_to: expected a shape that broadcasts to x \[2, 3\].*got \[2\]/,
  );
  x.release();
});

// ---------------------------------------------------------------- GPU backward vs CPU backward

for (const dtype of ["f32", "f16"] as const) {
  const f16 = dtype === "f16";
  gpuTest({ name: `add / mul backward ${dtype} on a tape match the CPU`, f16 }, async (gpu) => {
    for (const k of binaryCases) {
      const a = data(k.a, 11, dtype), b = data(k.b, 12, dtype);
      let gy: Float32Array = new Float32Array();
      const r = await tapeRun(
        gpu,
        dtype,
        [{ data: a, shape: k.a }, { data: b, shape: k.b }],
        ([ta, tb]) => (k.op === "add" ? add : mul)(gpu, ta, tb),
        (s) => gy = data(s, 13, dtype),
      );
      const want = binaryBackwardCpu(k.op, a, k.a, b, k.b, gy);
      const msg = `${k.op} [${k.a}] [${k.b}]`;
      assertClose(r.grads[0]!, want.ga, { ...TOL[dtype], msg: `${msg} da` });
      assertClose(r.grads[1]!, want.gb, { ...TOL[dtype], msg: `${msg} db` });
    }
  });

  gpuTest(
    { name: `activation / geglu / scale backward ${dtype} match the CPU`, f16 },
    async (gpu) => {
      for (const shape of [UNARY_SHAPE, [2, 8]]) { // scalar and vec4 launches
        for (const op of UNARY) {
          const x = data(shape, 14, dtype);
          let gy: Float32Array = new Float32Array();
          const r = await tapeRun(
            gpu,
            dtype,
            [{ data: x, shape }],
            ([t]) => unary(gpu, t, op),
            (s) => gy = data(s, 15, dtype),
          );
          assertClose(r.grads[0]!, unaryBackwardCpu(x, gy, op), { ...TOL[dtype], msg: op });
        }
      }
      for (const shape of GEGLU_SHAPES) {
        const x = data(shape, 16, dtype);
        let gy: Float32Array = new Float32Array();
        const r = await tapeRun(
          gpu,
          dtype,
          [{ data: x, shape }],
          ([t]) => geglu(gpu, t),
          (s) => gy = data(s, 17, dtype),
        );
        const want = gegluBackwardCpu(x, gy, shape[shape.length - 1] / 2);
        assertClose(r.grads[0]!, want, { ...TOL[dtype], msg: `geglu [${shape}]` });
      }
      const x = data([5, 3], 18, dtype);
      let gy: Float32Array = new Float32Array();
      const r = await tapeRun(
        gpu,
        dtype,
        [{ data: x, shape: [5, 3] }],
        ([t]) => scale(gpu, t, SCALE),
        (s) => gy = data(s, 19, dtype),
      );
      assertClose(r.grads[0]!, gy.map((g) => g * SCALE), { ...TOL[dtype], msg: "scale" });
    },
  );
}

// ---------------------------------------------------------------- tapes over chains

// y = (a + b) * a with a [4, 5] and b [3, 1, 5] (both broadcast to [3, 4, 5]):
// dy/da = 2a + b (summed over the 3), dy/db = a (summed over the 4).
function chainCpu(a: Float32Array, b: Float32Array, gy: Float32Array) {
  const ga = new Float64Array(20), gb = new Float64Array(15);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 4; j++) {
      for (let c = 0; c < 5; c++) {
        const g = gy[(i * 4 + j) * 5 + c], av = a[j * 5 + c], bv = b[i * 5 + c];
        ga[j * 5 + c] += g * (2 * av + bv);
        gb[i * 5 + c] += g * av;
      }
    }
  }
  return { ga, gb };
}

gpuTest(
  "tape: a used twice with broadcasting accumulates; an unwatched input gets none",
  async (gpu) => {
    const a = data([4, 5], 20), b = data([3, 1, 5], 21);
    for (const watchB of [true, false]) {
      let gy: Float32Array = new Float32Array();
      const r = await tapeRun(
        gpu,
        "f32",
        [{ data: a, shape: [4, 5] }, { data: b, shape: [3, 1, 5], watch: watchB }],
        ([ta, tb]) => mul(gpu, add(gpu, ta, tb), ta),
        (s) => gy = data(s, 22),
      );
      assertEquals(r.shape, [3, 4, 5]);
      const want = chainCpu(a, b, gy);
      assertClose(r.grads[0]!, want.ga, { ...TOL.f32, msg: "da" });
      if (watchB) assertClose(r.grads[1]!, want.gb, { ...TOL.f32, msg: "db" });
      else assertEquals(r.grads[1], null);
    }
  },
);

gpuTest("tape: a reshape of a taped output used by a later op gets its gradient", async (gpu) => {
  // y = silu(reshape(a * b, [2, 6])) with a, b [3, 4]: dy/da = silu'(a b) * b.
  const a = data([3, 4], 23), b = data([3, 4], 24);
  let gy: Float32Array = new Float32Array();
  const r = await tapeRun(
    gpu,
    "f32",
    [{ data: a, shape: [3, 4] }, { data: b, shape: [3, 4], watch: false }],
    ([ta, tb]) => unary(gpu, mul(gpu, ta, tb).reshape([2, 6]), "silu"),
    (s) => gy = data(s, 25),
  );
  assertEquals(r.shape, [2, 6]);
  const ab = a.map((v, i) => v * b[i]);
  const want = unaryBackwardCpu(ab, gy, "silu").map((g, i) => g * b[i]);
  assertClose(r.grads[0]!, want, { ...TOL.f32, msg: "da" });
});

gpuTest("tape: ops on untracked tensors record nothing and give the same bytes", async (gpu) => {
  const xs = data([4, 8], 26), ws = data([8], 27);
  const x = gpu.upload(xs, [4, 8], "f32"), w = gpu.upload(ws, [8], "f32");
  const plain = await gpu.read(gpu.scope(() => geglu(gpu, mul(gpu, add(gpu, x, w), w))));
  const tape = new GradientTape(gpu);
  const y = tape.run(() => gpu.scope(() => geglu(gpu, mul(gpu, add(gpu, x, w), w))));
  assertEquals(tape.size, 0);
  assertEquals([...new Uint8Array((await gpu.read(y)).buffer)], [...new Uint8Array(plain.buffer)]);
  for (const t of [x, w, y]) t.release();
  tape.dispose();
});
