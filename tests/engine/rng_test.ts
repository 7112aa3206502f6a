import { assert, assertClose, assertEquals } from "../assert.ts";
import { loadGoldens } from "../goldens.ts";
import { TorchGenerator } from "../../engine/rng.ts";

/** Index of the first element whose bits differ, or -1 (bitwise float32 comparison). */
function firstBitMismatch(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function assertBitwise(actual: Float32Array, expected: Float32Array, msg: string) {
  const i = firstBitMismatch(actual, expected);
  assert(i < 0, `${msg}: element ${i} is ${actual[i]}, expected ${expected[i]} (bitwise)`);
}

Deno.test("rng: mt19937 stream equals the C++ std::mt19937 reference (seed 5489, 10000th = 4123659995)", () => {
  const g = new TorchGenerator(5489);
  let v = 0;
  for (let i = 0; i < 10000; i++) v = g.nextUint32();
  assertEquals(v, 4123659995);
});

Deno.test("rng: every rng.* golden (torch.manual_seed(S); torch.randn(shape)) matches bitwise", async () => {
  const goldens = await loadGoldens();
  let checked = 0;
  for (const [name, t] of goldens) {
    if (!name.startsWith("rng.")) continue;
    const seed = Number(name.split(".")[1].replace("seed", ""));
    assertBitwise(new TorchGenerator(seed).randn(t.shape), t.data as Float32Array, name);
    checked++;
  }
  assertEquals(checked, 12, "number of rng goldens");
});

Deno.test("rng: pipe.latents_init = randn((1,4,8,8,8), Generator().manual_seed(42)) bitwise", async () => {
  const t = (await loadGoldens()).get("pipe.latents_init")!;
  assertBitwise(new TorchGenerator(42).randn(t.shape), t.data as Float32Array, "pipe.latents_init");
});

Deno.test("rng: consecutive randn calls continue the stream (euler-a noise, seed 1004, n4 and n25)", async () => {
  const goldens = await loadGoldens();
  for (const n of [4, 25]) {
    const t = goldens.get(`sched.euler_a.n${n}.noise`)!;
    const shape = t.shape.slice(1);
    const size = shape.reduce((a, b) => a * b, 1);
    const g = new TorchGenerator(1004);
    for (let i = 0; i < n; i++) {
      const ref = (t.data as Float32Array).subarray(i * size, (i + 1) * size);
      assertBitwise(g.randn(shape), ref, `sched.euler_a.n${n}.noise step ${i}`);
    }
  }
});

Deno.test("rng: small tensors use the double path with torch's cached second normal", async () => {
  const ref = (await loadGoldens()).get("rng.seed0.3")!.data as Float32Array;
  // randn(3) in one call equals three randn(1) calls: the sine half of each Box-Muller pair is
  // cached in the generator and returned by the next draw.
  const g = new TorchGenerator(0);
  const one = Float32Array.from([0, 1, 2], () => g.randn([1])[0]);
  assertBitwise(one, ref, "three randn([1]) vs randn([3])");
  assertEquals(Array.from(new TorchGenerator(0).randn([3])), Array.from(ref));
});

Deno.test("rng: size % 16 != 0 recomputes the last 16 values from 16 fresh uniforms", () => {
  const a = new TorchGenerator(7).randn([20]);
  // elements 0..3 keep the first chunk's values (uniforms 0..15)
  const first = new TorchGenerator(7).randn([16]);
  assertEquals(Array.from(a.subarray(0, 4)), Array.from(first.subarray(0, 4)));
  // elements 4..19 are one chunk built from uniforms 20..35
  const skip = new TorchGenerator(7);
  for (let i = 0; i < 20; i++) skip.nextUint32();
  assertBitwise(a.subarray(4), skip.randn([16]), "tail chunk");
});

Deno.test("rng: scalar (non-AVX2) chunk path agrees with the AVX2 path to 1e-5", async () => {
  const t = (await loadGoldens()).get("rng.seed42.1x4x8x8x8")!;
  const out = new TorchGenerator(42, { chunkPath: "scalar" }).randn(t.shape);
  const stats = assertClose(out, t.data as Float32Array, { atol: 1e-5, rtol: 0 });
  assert(stats.maxAbs > 0, "the two paths are expected to differ in the last bits");
});

Deno.test("rng: seeds wrap like torch (low 32 bits seed the engine) and bad input is rejected", () => {
  const a = new TorchGenerator(2n ** 32n + 5n).randn([16]);
  assertEquals(Array.from(a), Array.from(new TorchGenerator(5).randn([16])));
  assert(new TorchGenerator(-1).seed === 2n ** 64n - 1n, "seed -1 wraps to 2^64 - 1");
  let msg = "";
  try {
    new TorchGenerator(0).randn([2, -1]);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/TorchGenerator.randn: shape/.test(msg), `unexpected error "${msg}"`);
  assertEquals(new TorchGenerator(0).randn([0]).length, 0);
});
