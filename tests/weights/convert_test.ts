import { assert, assertEquals, assertRejects } from "../assert.ts";
import { convertToSafetensors } from "../../weights/convert.ts";
import { hasReadRaw, openSafetensors } from "../../weights/safetensors.ts";
import { toHalfBits } from "../../kernels/gpu/half.ts";

const FIXTURE = new URL("../fixtures/tiny/single_file/", import.meta.url);

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-convert-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("convert: motion_module.ckpt -> safetensors equals the reference file tensor for tensor", async () => {
  await withTemp(async (dir) => {
    const out = `${dir}/mm.safetensors`;
    let calls = 0, last = [0, 0];
    const r = await convertToSafetensors(new URL("motion_module.ckpt", FIXTURE).pathname, out, {
      onProgress: (done, total) => (calls++, last = [done, total]),
    });
    assertEquals([r.tensors, r.format], [196, "torch-zip"]);
    assertEquals(calls, 196);
    assertEquals(last[0], last[1]);
    const a = await openSafetensors(out);
    const b = await openSafetensors(new URL("motion_module.safetensors", FIXTURE).pathname);
    assertEquals(a.metadata, { format: "pt" });
    assertEquals(a.tensors.size, b.tensors.size);
    for (const [name, t] of b.tensors) {
      const c = a.tensors.get(name)!;
      assert(hasReadRaw(c) && hasReadRaw(t));
      assertEquals([c.shape, c.dtype], [t.shape, t.dtype], name);
      assertEquals([...await c.readRaw()].join(), [...await t.readRaw()].join(), name);
    }
    a.close();
    b.close();
  });
});

Deno.test("convert: --fp16 stores floats as F16 (round to nearest even), keeps I64 tensors", async () => {
  await withTemp(async (dir) => {
    const src = new URL("sd15.safetensors", FIXTURE).pathname;
    const out = `${dir}/sd15.fp16.safetensors`;
    await convertToSafetensors(src, out, { fp16: true });
    const a = await openSafetensors(out);
    const b = await openSafetensors(src);
    let floats = 0;
    for (const [name, t] of b.tensors) {
      const c = a.tensors.get(name)!;
      assert(hasReadRaw(c));
      if (t.dtype === "I64") {
        assertEquals(c.dtype, "I64", name);
        assertEquals([...await c.read()], [...await t.read()], name);
        continue;
      }
      assertEquals(c.dtype, "F16", name);
      const bits = new Uint16Array((await c.readRaw()).slice().buffer);
      const ref = await t.read();
      for (let i = 0; i < ref.length; i++) {
        if (bits[i] !== toHalfBits(ref[i])) throw new Error(`${name}[${i}]: half bits differ`);
      }
      floats++;
    }
    assert(floats > 400, `checked ${floats} float tensors`);
    // The fixture's own fp16 file was written by torch .half(): identical bytes.
    const ref16 = await openSafetensors(new URL("sd15.fp16.safetensors", FIXTURE).pathname);
    const name = "model.diffusion_model.input_blocks.0.0.weight";
    const x = a.tensors.get(name)!, y = ref16.tensors.get(name)!;
    assert(hasReadRaw(x) && hasReadRaw(y));
    assertEquals([...await x.readRaw()].join(), [...await y.readRaw()].join(), name);
    a.close();
    b.close();
    ref16.close();
  });
});

Deno.test("convert: refuses to overwrite its input", async () => {
  await withTemp(async (dir) => {
    const src = `${dir}/in.safetensors`;
    await Deno.copyFile(new URL("motion_module.safetensors", FIXTURE).pathname, src);
    await Deno.symlink(src, `${dir}/alias.safetensors`);
    await assertRejects(
      () => convertToSafetensors(src, src),
      /in\.safetensors: refusing to overwrite the input file/,
    );
    await assertRejects(
      () => convertToSafetensors(src, `${dir}/alias.safetensors`),
      /alias\.safetensors: refusing to overwrite the input file/,
    );
    assertEquals((await Deno.stat(src)).size, 1861904);
  });
});
