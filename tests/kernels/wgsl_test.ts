import { defineKernel, Params } from "../../kernels/gpu/kernel.ts";
import { bindingsWgsl, launch1d, mainPerGroupWgsl, prelude, vecKey } from "../../kernels/wgsl.ts";
import { assert, assertEquals } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

// The shared prelude (kernels/wgsl.ts) and typed kernel variants (kernels/gpu/kernel.ts). Every
// kernel's own test exercises them too; here they are checked directly, with exact values.

const WG = 64;

/** Per row of x [rows, WG * units]: out[row] = (sum, max) through the workgroup reductions. */
const reduceKernel = defineKernel<{ vec: boolean }>("test_reduce", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// test_reduce: 1 x [rows, WG] (as V units), 2 out [rows, 2] f32.
${prelude(dtype, { ...variant, wg: WG, reductions: true })}
struct Params { rows: u32 }
${bindingsWgsl(["x: array<V>", "out: array<f32>"])}

${mainPerGroupWgsl("row", "p.rows")}
  let v = VF(x[row * WG + lid]);
  let s = wg_sum(hsum(v), lid);
  let m = wg_max(hmax(v), lid);
  if (lid == 0u) {
    out[row * 2u] = s;
    out[row * 2u + 1u] = m;
  }
}`,
});

gpuTest("prelude: wg_sum / wg_max over a workgroup, scalar and vec4 units", async (gpu) => {
  const rows = 3;
  for (const vec of [false, true]) {
    const n = WG * (vec ? 4 : 1);
    // Small integers: every partial sum is exact, so the order of the tree does not matter.
    const xs = Float32Array.from({ length: rows * n }, (_, i) => ((i * 37) % 101) - 50);
    const x = gpu.upload(xs, [rows, n], "f32");
    const out = gpu.empty([rows, 2], "f32");
    const ran = await countDispatches(gpu, () => {
      gpu.dispatch(reduceKernel, {
        dtype: "f32",
        variant: { vec },
        params: new Params().u32(rows),
        bindings: [x, out],
        groups: [rows, 1, 1],
      });
    });
    // The variant's key names the dispatch and the pipeline.
    assertEquals([...ran], [[`test_reduce:${vec ? "v4" : "s"}`, 1]]);
    assert(gpu.pipelines.keys.includes(`test_reduce:f32:${vec ? "v4" : "s"}`));
    const got = await gpu.read(out);
    for (let r = 0; r < rows; r++) {
      const row = xs.subarray(r * n, (r + 1) * n);
      assertEquals(got[2 * r], row.reduce((a, b) => a + b, 0), `sum of row ${r}`);
      assertEquals(got[2 * r + 1], Math.max(...row), `max of row ${r}`);
    }
    x.release();
    out.release();
  }
});

Deno.test("launch1d: threads in workgroups of 256 (or wg), spread over y past 65535", () => {
  assertEquals(launch1d(1), [1, 1, 1]);
  assertEquals(launch1d(257), [2, 1, 1]);
  assertEquals(launch1d(100, 64), [2, 1, 1]);
  const [x, y, z] = launch1d(256 * 70000);
  assert(x <= 65535 && z === 1 && x * y >= 70000, `grid ${x} x ${y}`);
});

Deno.test("bindingsWgsl: params at 0, inputs read-only, the last binding writable", () => {
  assertEquals(
    bindingsWgsl(["x: array<V>", "y: array<T>"]),
    [
      "@group(0) @binding(0) var<uniform> p: Params;",
      "@group(0) @binding(1) var<storage, read> x: array<V>;",
      "@group(0) @binding(2) var<storage, read_write> y: array<T>;",
    ].join("\n"),
  );
});
