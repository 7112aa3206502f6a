import { assert, assertEquals, assertRejects } from "../assert.ts";
import { PickleWriter } from "../../weights/pickle_writer.ts";
import { hasReadRaw, openSafetensors, type TensorToWrite } from "../../weights/safetensors.ts";
import { openTorchFile } from "../../weights/torch_file.ts";
import { writeTorchZip } from "../../weights/torch_save.ts";
import {
  f32Bytes,
  type PickledTensor,
  pickleTensor,
  pickleTensorDict,
  writeCustomTorchZip,
  writeLegacyTorch,
} from "./torch_fixtures.ts";

const FIXTURE = new URL("../fixtures/tiny/single_file/", import.meta.url);

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-torch-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const iota = (n: number) => Array.from({ length: n }, (_, i) => i);

Deno.test("torch_file: fixture motion_module.ckpt equals motion_module.safetensors bit-exactly", async () => {
  const ckpt = await openTorchFile(new URL("motion_module.ckpt", FIXTURE).pathname);
  const st = await openSafetensors(new URL("motion_module.safetensors", FIXTURE).pathname);
  assertEquals(ckpt.format, "torch-zip");
  assertEquals([...ckpt.tensors.keys()].sort(), [...st.tensors.keys()].sort());
  assertEquals(ckpt.tensors.size, 196);
  for (const [name, s] of st.tensors) {
    const c = ckpt.tensors.get(name)!;
    assertEquals([c.shape, c.dtype], [s.shape, s.dtype], name);
    assert(hasReadRaw(c) && hasReadRaw(s));
    const a = await c.readRaw(), b = await s.readRaw();
    assertEquals(a.byteLength, b.byteLength, name);
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) throw new Error(`${name}: byte ${i} differs`);
    }
    const f = await c.read();
    assertEquals(f.byteLength, a.byteLength, name);
  }
  ckpt.close();
  st.close();
});

const SAMPLE: TensorToWrite[] = [
  { name: "w", shape: [2, 3], dtype: "F32", data: new Float32Array([1, 2, 3, -4, 5.5, 6]) },
  { name: "h", shape: [2], dtype: "F16", data: new Float32Array([0.5, -2]) },
  { name: "b", shape: [1], dtype: "BF16", data: new Float32Array([3]) },
  { name: "ids", shape: [1, 3], dtype: "I64", data: new BigInt64Array([0n, 1n, 2n]) },
  { name: "mask", shape: [2], dtype: "BOOL", data: new Uint8Array([0, 1]) },
  { name: "scalar", shape: [], dtype: "F32", data: new Float32Array([2.5]) },
  { name: "empty", shape: [0], dtype: "F32", data: new Float32Array(0) },
];
const VALUES: Record<string, number[]> = {
  w: [1, 2, 3, -4, 5.5, 6],
  h: [0.5, -2],
  b: [3],
  ids: [0, 1, 2],
  mask: [0, 1],
  scalar: [2.5],
  empty: [],
};

Deno.test("torch_file: writeTorchZip -> openTorchFile round trip (flat, wrapped, zip64)", async () => {
  await withTemp(async (dir) => {
    const variants = [
      {},
      { stateDictKey: "state_dict", extras: { global_step: 1234, epoch: 2, lr: 1e-4, name: "x" } },
      { forceZip64: true, root: "mm_sd_v15" },
    ];
    for (const [i, options] of variants.entries()) {
      const path = `${dir}/rt${i}.ckpt`;
      await writeTorchZip(path, SAMPLE, options);
      const f = await openTorchFile(path);
      assertEquals([...f.tensors.keys()], SAMPLE.map((t) => t.name), `variant ${i}`);
      for (const t of SAMPLE) {
        const h = f.tensors.get(t.name)!;
        assertEquals([h.shape, h.dtype], [t.shape, t.dtype], t.name);
        assertEquals([...await h.read()], VALUES[t.name], t.name);
      }
      f.close();
    }
  });
});

Deno.test("torch_file: strides, storage offsets, shared storages and expanded dims are gathered", async () => {
  await withTemp(async (dir) => {
    const base = { storageClass: "FloatStorage", key: "0", storageNumel: 12 };
    const tensors: Record<string, PickledTensor> = {
      full: { ...base, offset: 0, size: [2, 6], stride: [6, 1] },
      transposed: { ...base, offset: 0, size: [3, 2], stride: [1, 3] }, // of a [2,3] view
      tail: { ...base, offset: 6, size: [2, 3], stride: [3, 1] },
      expanded: { ...base, offset: 4, size: [2, 3], stride: [0, 1] },
      column: { ...base, offset: 1, size: [3, 1], stride: [4, 1] },
    };
    const pkl = pickleTensorDict(new PickleWriter().proto(2), tensors).stop().bytes();
    await writeCustomTorchZip(`${dir}/views.ckpt`, pkl, { "0": f32Bytes(iota(12)) });
    const f = await openTorchFile(`${dir}/views.ckpt`);
    const read = async (n: string) => [...await f.tensors.get(n)!.read()];
    assertEquals(await read("full"), iota(12));
    assertEquals(await read("transposed"), [0, 3, 1, 4, 2, 5]);
    assertEquals(await read("tail"), [6, 7, 8, 9, 10, 11]);
    assertEquals(await read("expanded"), [4, 5, 6, 4, 5, 6]);
    assertEquals(await read("column"), [1, 5, 9]);
    f.close();
  });
});

Deno.test("torch_file: big-endian byteorder storages are byte-swapped", async () => {
  await withTemp(async (dir) => {
    const be = new Uint8Array(8);
    new DataView(be.buffer).setFloat32(0, 1.5, false);
    new DataView(be.buffer).setFloat32(4, -3, false);
    const pkl = pickleTensorDict(new PickleWriter().proto(2), {
      w: {
        storageClass: "FloatStorage",
        key: "0",
        storageNumel: 2,
        offset: 0,
        size: [2],
        stride: [1],
      },
    }).stop().bytes();
    await writeCustomTorchZip(`${dir}/be.ckpt`, pkl, { "0": be }, { byteorder: "big" });
    const f = await openTorchFile(`${dir}/be.ckpt`);
    assertEquals([...await f.tensors.get("w")!.read()], [1.5, -3]);
    f.close();
  });
});

Deno.test("torch_file: Lightning-style checkpoint: state_dict unwrapped, config objects dropped", async () => {
  await withTemp(async (dir) => {
    const t = (key: string): PickledTensor => ({
      storageClass: "FloatStorage",
      key,
      storageNumel: 2,
      offset: 0,
      size: [2],
      stride: [1],
    });
    const w = new PickleWriter().proto(2).raw(0x7d, 0x28);
    w.str("epoch").int(7).str("global_step").int(7000);
    w.str("callbacks").global("copy_reg", "_reconstructor").raw(0x28);
    w.global("pytorch_lightning.callbacks.early_stopping", "EarlyStopping");
    w.global("__builtin__", "object").none().raw(0x74, 0x52).raw(0x7d).str("patience").int(3);
    w.raw(0x73, 0x62);
    w.str("animatediff_config").raw(0x7d).str("motion_module_type").str("Vanilla").raw(0x73);
    w.str("optimizer_states").raw(0x5d);
    pickleTensor(w, t("1")).raw(0x61);
    w.str("state_dict");
    pickleTensorDict(w, { "module.a.weight": t("0"), "module.b.weight": t("2") });
    w.raw(0x75).stop();
    await writeCustomTorchZip(`${dir}/pl.ckpt`, w.bytes(), {
      "0": f32Bytes([1, 2]),
      "1": f32Bytes([3, 4]),
      "2": f32Bytes([5, 6]),
    });
    const f = await openTorchFile(`${dir}/pl.ckpt`);
    assertEquals([...f.tensors.keys()], ["module.a.weight", "module.b.weight"]);
    assertEquals([...await f.tensors.get("module.b.weight")!.read()], [5, 6]);
    f.close();
    await assertRejects(
      () => openTorchFile(`${dir}/pl.ckpt`, { strict: true }),
      /refusing to load pickle global 'pytorch_lightning\.callbacks\.early_stopping\.EarlyStopping'/,
    );
  });
});

Deno.test("torch_file: nested dicts flatten with '.', malicious nesting is bounded", async () => {
  await withTemp(async (dir) => {
    const t: PickledTensor = {
      storageClass: "HalfStorage",
      key: "0",
      storageNumel: 1,
      offset: 0,
      size: [],
      stride: [],
    };
    const w = new PickleWriter().proto(2).raw(0x7d, 0x28).str("ema").raw(0x7d, 0x28).str("x");
    pickleTensor(w, t).raw(0x75).str("y");
    pickleTensor(w, t).raw(0x75).stop();
    await writeCustomTorchZip(`${dir}/nest.ckpt`, w.bytes(), { "0": new Uint8Array([0, 0x3c]) });
    const f = await openTorchFile(`${dir}/nest.ckpt`);
    assertEquals([...f.tensors.keys()], ["ema.x", "y"]);
    assertEquals([...await f.tensors.get("ema.x")!.read()], [1]);
    f.close();
    const deep = new PickleWriter().proto(2);
    for (let i = 0; i < 100; i++) deep.raw(0x7d).str("k");
    deep.raw(0x7d);
    for (let i = 0; i < 100; i++) deep.raw(0x73);
    await writeCustomTorchZip(`${dir}/deep.ckpt`, deep.stop().bytes(), {});
    await assertRejects(
      () => openTorchFile(`${dir}/deep.ckpt`),
      /deep\.ckpt: dicts nested deeper than 32/,
    );
  });
});

Deno.test("torch_file: missing or short storages and non-dict pickles are one-line errors", async () => {
  await withTemp(async (dir) => {
    const tensors = {
      w: {
        storageClass: "FloatStorage",
        key: "0",
        storageNumel: 4,
        offset: 2,
        size: [4],
        stride: [1],
      },
    };
    const pkl = pickleTensorDict(new PickleWriter().proto(2), tensors).stop().bytes();
    await writeCustomTorchZip(`${dir}/missing.ckpt`, pkl, {});
    await assertRejects(
      () => openTorchFile(`${dir}/missing.ckpt`),
      /missing\.ckpt: storage '0' is missing from the zip/,
    );
    await writeCustomTorchZip(`${dir}/short.ckpt`, pkl, { "0": f32Bytes([1, 2]) });
    await assertRejects(
      () => openTorchFile(`${dir}/short.ckpt`),
      /short\.ckpt: storage '0' holds 8 bytes, needs 16/,
    );
    await writeCustomTorchZip(`${dir}/over.ckpt`, pkl, { "0": f32Bytes([1, 2, 3, 4]) });
    await assertRejects(
      () => openTorchFile(`${dir}/over.ckpt`),
      /over\.ckpt: tensor 'w': shape \[4\] at offset 2 reaches element 5 of a 4-element storage/,
    );
    await writeCustomTorchZip(
      `${dir}/list.ckpt`,
      new PickleWriter().proto(2).raw(0x5d).stop().bytes(),
      {},
    );
    await assertRejects(
      () => openTorchFile(`${dir}/list.ckpt`),
      /list\.ckpt: does not hold a dict of tensors/,
    );
  });
});

Deno.test("torch_file: legacy (pre-1.6) torch.save format, with a storage view", async () => {
  await withTemp(async (dir) => {
    const tensors: Record<string, PickledTensor> = {
      a: {
        storageClass: "FloatStorage",
        key: "11",
        storageNumel: 6,
        offset: 0,
        size: [2, 3],
        stride: [3, 1],
      },
      b: {
        storageClass: "LongStorage",
        key: "22",
        storageNumel: 3,
        offset: 1,
        size: [2],
        stride: [1],
      },
      v: {
        storageClass: "FloatStorage",
        key: "11",
        storageNumel: 6,
        offset: 0,
        size: [2],
        stride: [1],
        view: ["11v", 4, 2],
      },
    };
    const longs = new Uint8Array(new BigInt64Array([10n, 20n, 30n]).buffer);
    const path = `${dir}/old.pt`;
    await writeLegacyTorch(path, tensors, [
      { key: "11", numel: 6, bytes: f32Bytes([0.5, 1, 2, 3, 4, 5]) },
      { key: "22", numel: 3, bytes: longs },
    ]);
    const f = await openTorchFile(path);
    assertEquals(f.format, "torch-legacy");
    assertEquals([...await f.tensors.get("a")!.read()], [0.5, 1, 2, 3, 4, 5]);
    assertEquals(f.tensors.get("b")!.dtype, "I64");
    assertEquals([...await f.tensors.get("b")!.read()], [20, 30]);
    assertEquals([...await f.tensors.get("v")!.read()], [4, 5]);
    f.close();
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(`${dir}/cut.pt`, bytes.subarray(0, bytes.byteLength - 10));
    await assertRejects(
      () => openTorchFile(`${dir}/cut.pt`),
      /cut\.pt: storage '22' \(3 elements\) runs past the end of the file/,
    );
    await Deno.writeFile(`${dir}/cut2.pt`, bytes.subarray(0, 120));
    await assertRejects(
      () => openTorchFile(`${dir}/cut2.pt`),
      /cut2\.pt: legacy checkpoint is truncated/,
    );
  });
});
