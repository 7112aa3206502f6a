/**
 * Scopes (`Gpu.scope`): ops inside run at the end of the outermost scope, each new tensor takes
 * a buffer at its first use and gives it back after its last, returned and kept tensors survive,
 * results equal the eager ones, and misuse is an error.
 */

import { assert, assertEquals, assertRejects, randomArray } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";
import { add, scale, unary } from "../../../kernels/elementwise.ts";
import type { Gpu } from "../../../kernels/gpu/device.ts";
import type { Tensor } from "../../../kernels/gpu/tensor.ts";

const N = 1 << 14; // 64 KiB per f32 tensor

/** A chain of 6 ops on x: each intermediate is used once, by the next op. */
function chain(gpu: Gpu, x: Tensor): Tensor {
  let h = x;
  for (let i = 0; i < 3; i++) h = add(gpu, unary(gpu, h, "silu"), scale(gpu, x, 0.5 + i));
  return h;
}

async function settled(gpu: Gpu): Promise<void> {
  await gpu.sync();
  gpu.pool.trim();
  gpu.pool.resetPeak();
}

gpuTest("scope: same values as eager ops; only the result outlives it", async (gpu) => {
  const x = gpu.upload(randomArray(N, 3), [N]);
  await settled(gpu);
  const inUse = gpu.pool.stats().inUseBytes;
  const scoped = gpu.scope(() => chain(gpu, x));
  assertEquals(gpu.pool.stats().inUseBytes - inUse, scoped.buffer.size, "only the result held");
  const eager = chain(gpu, x); // outside a scope: every intermediate stays until released
  const [a, b] = [await gpu.read(scoped), await gpu.read(eager)];
  assertEquals([...a], [...b]);
  for (const t of [x, scoped, eager]) t.release();
});

gpuTest("scope: buffers are reused after their last use (peak of a chain)", async (gpu) => {
  const x = gpu.upload(randomArray(N, 4), [N]);
  await settled(gpu);
  const base = gpu.pool.stats().inUseBytes;
  const y = gpu.scope(() => chain(gpu, x));
  const peak = gpu.pool.stats().peakInUseBytes - base;
  // At most three tensors in flight (an op's two inputs and its output), not all nine.
  assert(peak <= 3 * y.buffer.size, `peak ${peak} > 3 x ${y.buffer.size}`);
  x.release();
  y.release();
});

gpuTest(
  "scope: returned objects, kept and nested tensors survive; the rest is released",
  async (gpu) => {
    const x = gpu.upload(randomArray(N, 5), [N]);
    let inner: Tensor | null = null, dropped: Tensor | null = null, kept: Tensor | null = null;
    const out = gpu.scope(() => {
      dropped = unary(gpu, x, "gelu");
      kept = gpu.keep(scale(gpu, dropped, 2));
      inner = gpu.scope(() => add(gpu, x, x)); // joins the outer scope
      return { sum: add(gpu, inner, kept), list: [scale(gpu, x, 3)] };
    });
    assert(dropped!.released, "an intermediate is released at the end");
    assert(inner!.released, "a nested scope's result is an intermediate of the outer one");
    assert(!kept!.released && !out.sum.released && !out.list[0].released, "kept / returned");
    const sum = await gpu.read(out.sum);
    const xs = await gpu.read(x);
    assert(
      Number.isFinite(sum[0]) && Math.abs(sum[7] - (2 * xs[7] + (await gpu.read(kept!))[7])) < 1e-6,
    );
    assertRejects(() => gpu.read(dropped!), /used after release/);
    for (const t of [x, kept!, out.sum, out.list[0]]) t.release();
  },
);

gpuTest(
  "scope: a readback inside runs what was recorded; a throw frees everything",
  async (gpu) => {
    const x = gpu.upload(randomArray(16, 6), [16]);
    const before = gpu.pool.stats().inUseBytes;
    await assertRejects(async () => {
      const y = gpu.scope(() => scale(gpu, x, 2));
      assertEquals((await gpu.read(y))[3], 2 * (await gpu.read(x))[3]);
      y.release();
      gpu.scope(() => {
        unary(gpu, x, "silu");
        throw new Error("boom");
      });
    }, /boom/);
    assertEquals(gpu.pool.stats().inUseBytes, before, "nothing leaked");
    let err: unknown = null;
    try {
      gpu.scope(() => Promise.resolve(1));
    } catch (e) {
      err = e;
    }
    assert(err instanceof Error && /synchronous/.test(err.message), String(err));
    x.release();
  },
);
