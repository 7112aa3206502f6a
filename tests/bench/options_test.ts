import type { KernelCase } from "../kernels/case.ts";
import { parseBenchArgs, pickScales, selectCases } from "../../bench/options.ts";
import { formatRow, rates } from "../../bench/report.ts";
import { assert, assertClose, assertEquals, assertRejects } from "../assert.ts";

Deno.test("bench options: flags, = form, op lists and errors", async () => {
  assertEquals(parseBenchArgs(["--json", "out.json", "--scale=full", "--op", "matmul,softmax"]), {
    ops: ["matmul", "softmax"],
    help: false,
    json: "out.json",
    scale: "full",
  });
  assertEquals(parseBenchArgs(["--op=a", "--op", "b"]).ops, ["a", "b"]);
  await assertRejects(
    () => parseBenchArgs(["--scale", "huge"]),
    /--scale must be test, reduced or full/,
  );
  await assertRejects(() => parseBenchArgs(["--json"]), /--json needs a value/);
  await assertRejects(() => parseBenchArgs(["--fast"]), /unknown argument "--fast"/);
  assertEquals(parseBenchArgs(["--gemm-path=tiled"]).gemmPath, "tiled");
  await assertRejects(
    () => parseBenchArgs(["--gemm-path", "fast"]),
    /--gemm-path must be tiled or direct, got "fast"/,
  );
});

Deno.test("bench scales: software adapter -> test + reduced, GPU -> reduced + full", () => {
  assertEquals(pickScales({ isFallback: true }).scales, ["test", "reduced"]);
  assertEquals(pickScales({ isFallback: false }).label, "full SD1.5 shapes");
  assertEquals(pickScales({ isFallback: false }, "test").scales, ["test"]);
  const mk = (op: string, scale: KernelCase["scale"]) =>
    ({
      op,
      scale,
      shape: [1],
      dtype: "f32",
      setup: () => ({ run() {}, dispose() {} }),
    }) as KernelCase;
  const all = [mk("a", "test"), mk("b", "full"), mk("a", "full"), mk("a", "reduced")];
  assertEquals(selectCases(all, ["full"], ["a"]).map((c) => c.op + c.scale), ["afull"]);
  assertEquals(selectCases(all, ["test", "reduced"], []).length, 2);
});

Deno.test("bench report: rates and rows", () => {
  const r = rates(2, { flops: 4e9, bytes: 1e6 });
  assertClose([r.gflops!, r.gbps!], [2000, 0.5], { atol: 1e-9, rtol: 0 });
  assertEquals(rates(1, {}), { gflops: null, gbps: null });
  const row = formatRow({
    op: "softmax",
    shape: [37, 19],
    dtype: "f32",
    ms: 0.5,
    gflops: null,
    gbps: 1.25,
    adapter: "x",
  }, "note");
  assert(/^softmax\s+\[37, 19\]\s+f32\s+0\.500\s+-\s+1\.3 {2}note$/.test(row), row);
});
