import { roundToF16 } from "../../kernels/gpu/half.ts";
import { WeightStore } from "../../engine/weight_store.ts";
import { Conv2d, Linear } from "../../engine/models/layers.ts";
import { conv2dCpu } from "../../kernels/conv2d_cpu.ts";
import { linearCpu } from "../../kernels/matmul_cpu.ts";
import { mergeOnCpu } from "../../weights/lora.ts";
import type { HostTensor, LowRankMerge, TensorMap } from "../../weights/types.ts";
import { assert, assertClose, assertEquals, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

function host(shape: number[], data: Float32Array): HostTensor {
  return { shape, dtype: "F32", read: () => Promise.resolve(data.slice()) };
}

function merged(base: HostTensor, updates: LowRankMerge["updates"]): HostTensor {
  const lowRank = { base, updates };
  return { shape: base.shape, dtype: "F32", read: () => mergeOnCpu(lowRank), lowRank };
}

/**
 * A Linear weight with two LoRAs (ranks 4 and 3: the GEMM's vec4 and scalar paths), a 3x3 conv
 * with a LoCon (3x3 down, 1x1 up) and an untouched tensor.
 */
function tensors(): TensorMap {
  const lin = host([12, 20], randomArray(240, 1));
  const conv = host([8, 4, 3, 3], randomArray(288, 2));
  return new Map([
    [
      "lin.weight",
      merged(lin, [
        {
          up: host([12, 4], randomArray(48, 3)),
          down: host([4, 20], randomArray(80, 4)),
          factor: 0.8,
        },
        {
          up: host([12, 3], randomArray(36, 5)),
          down: host([3, 20], randomArray(60, 6)),
          factor: -0.25,
        },
      ]),
    ],
    [
      "conv.weight",
      merged(conv, [{
        up: host([8, 2, 1, 1], randomArray(16, 7)),
        down: host([2, 4, 3, 3], randomArray(72, 8)),
        factor: 1.5,
      }]),
    ],
    ["bias", host([12], randomArray(12, 9))],
  ]);
}

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    {
      name: `WeightStore merges LoRA updates on the GPU like the CPU merge (${dtype})`,
      f16: dtype === "f16",
    },
    async (gpu) => {
      const map = tensors();
      const store = new WeightStore(gpu, map, { dtype, part: "test" });
      const params = [
        store.param("lin.weight", [12, 20]),
        store.param("conv.weight", [8, 4, 3, 3]),
        store.param("bias", [12]),
      ];
      const ran = await countDispatches(gpu, () => store.loadAll());
      const gemms = [...ran].filter(([k]) => /^(matmul|gemm_direct):/.test(k))
        .reduce((n, [, c]) => n + c, 0);
      assert(gemms === 3, `one GEMM per update: ${JSON.stringify([...ran])}`);
      for (const p of params) {
        const want = await map.get(p.name)!.read();
        // f32: same math in another order; f16: inputs and the sum are rounded to f16.
        const tol = dtype === "f32" ? { atol: 1e-5, rtol: 1e-5 } : { atol: 4e-3, rtol: 4e-3 };
        const ref = dtype === "f16" ? roundToF16(want) : want;
        assertClose(await gpu.read(p.t), ref, { ...tol, msg: p.name });
      }
      // The merge really changed the weights (the updates are not negligible).
      const base = await map.get("lin.weight")!.lowRank!.base.read();
      const got = await gpu.read(params[0].t);
      assert(got.some((v, i) => Math.abs(v - base[i]) > 0.05), "the LoRA changed the weight");
      store.dispose();
    },
  );
}

gpuTest(
  "WeightStore transposeLinear: Linear weights kept [in, out], same Linear output",
  async (gpu) => {
    // A plain Linear weight (transposed on the host) and a LoRA-merged one (transposed on the GPU
    // after the merge), each through a Linear forward against the CPU reference; other
    // parameters keep their layout.
    const map = tensors();
    map.set("plain.weight", host([8, 12], randomArray(96, 10)));
    const store = new WeightStore(gpu, map, { dtype: "f32", part: "test", transposeLinear: true });
    const lin = new Linear(store, "lin", { in: 20, out: 12, bias: false });
    const plain = new Linear(store, "plain", { in: 12, out: 8, bias: false });
    const conv = store.param("conv.weight", [8, 4, 3, 3]);
    store.param("bias", [12]);
    await store.loadAll();
    assert(
      lin.weight.layout === "in-out" && plain.weight.layout === "in-out" &&
        conv.layout === "stored",
      "layouts",
    );
    assertEquals([...lin.weight.t.shape], [20, 12]);
    assertEquals([...conv.t.shape], [8, 4, 3, 3]);
    for (const [layer, name, K, N] of [[lin, "lin", 20, 12], [plain, "plain", 12, 8]] as const) {
      const w = await map.get(`${name}.weight`)!.read();
      const xs = randomArray(5 * K, 11);
      const x = gpu.upload(xs, [5, K]);
      const y = layer.forward(gpu, x);
      assertClose(await gpu.read(y), linearCpu(xs, w, { xShape: [5, K], outFeatures: N }), {
        atol: 1e-5,
        rtol: 1e-5,
        msg: name,
      });
      x.release();
      y.release();
    }
    store.dispose();
  },
);

gpuTest(
  "WeightStore winograd: 3x3 conv weights as Winograd filters, same Conv2d output",
  async (gpu) => {
    // A LoCon-merged 3x3 conv (merged on the GPU, then transformed) and a plain one, through
    // Conv2d.forward against the CPU convolution; a stride-2 conv keeps its stored layout.
    const map = tensors();
    map.set("plain.weight", host([4, 8, 3, 3], randomArray(288, 12)));
    map.set("plain.bias", host([4], randomArray(4, 13)));
    map.set("down.weight", host([4, 4, 3, 3], randomArray(144, 14)));
    map.set("down.bias", host([4], randomArray(4, 15)));
    map.set("conv.bias", host([8], randomArray(8, 16)));
    const store = new WeightStore(gpu, map, { dtype: "f32", part: "test", winograd: true });
    store.param("lin.weight", [12, 20]);
    store.param("bias", [12]);
    const merged = new Conv2d(store, "conv", { cin: 4, cout: 8, k: 3 });
    const plain = new Conv2d(store, "plain", { cin: 8, cout: 4, k: 3 });
    const down = new Conv2d(store, "down", { cin: 4, cout: 4, k: 3, stride: 2, padding: 1 });
    await store.loadAll();
    assert(
      merged.weight.layout === "winograd" && plain.weight.layout === "winograd" &&
        down.weight.layout === "stored",
      "layouts",
    );
    assertEquals([...plain.weight.t.shape], [16, 4, 8]);
    for (
      const [layer, name, cin, cout] of [[merged, "conv", 4, 8], [plain, "plain", 8, 4]] as const
    ) {
      const w = await map.get(`${name}.weight`)!.read();
      const b = await map.get(`${name}.bias`)!.read();
      const xs = randomArray(2 * cin * 5 * 6, 17);
      const x = gpu.upload(xs, [2, cin, 5, 6]);
      const y = layer.forward(gpu, x);
      const want = conv2dCpu(xs, w, { xShape: [2, cin, 5, 6], wShape: [cout, cin, 3, 3], bias: b });
      assertClose(await gpu.read(y), want, { atol: 1e-4, rtol: 1e-4, msg: name });
      x.release();
      y.release();
    }
    store.dispose();
  },
);
