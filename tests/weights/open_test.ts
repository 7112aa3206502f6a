import { assert, assertEquals, assertRejects } from "../assert.ts";
import { detectTensorFileKind, openTensorFile, unwrapStateDict } from "../../weights/open.ts";
import { encodeSafetensors } from "../../weights/safetensors.ts";
import { writeTorchZip } from "../../weights/torch_save.ts";
import type { HostTensor } from "../../weights/types.ts";
import { f32Bytes, writeLegacyTorch } from "./torch_fixtures.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-open-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const W = [{ name: "w", shape: [2], dtype: "F32" as const, data: new Float32Array([7, 8]) }];

Deno.test("open: format is detected by content, not by extension", async () => {
  await withTemp(async (dir) => {
    await Deno.writeFile(`${dir}/really_safetensors.ckpt`, await encodeSafetensors(W));
    await writeTorchZip(`${dir}/really_torch.safetensors`, W);
    await writeLegacyTorch(`${dir}/legacy.bin`, {
      w: {
        storageClass: "FloatStorage",
        key: "0",
        storageNumel: 2,
        offset: 0,
        size: [2],
        stride: [1],
      },
    }, [{ key: "0", numel: 2, bytes: f32Bytes([7, 8]) }]);
    const expected: [string, string][] = [
      ["really_safetensors.ckpt", "safetensors"],
      ["really_torch.safetensors", "torch-zip"],
      ["legacy.bin", "torch-legacy"],
    ];
    for (const [name, format] of expected) {
      const f = await openTensorFile(`${dir}/${name}`);
      assertEquals(f.format, format, name);
      assertEquals([...await f.tensors.get("w")!.read()], [7, 8], name);
      f.close();
    }
  });
});

Deno.test("open: anything else is a one-line error showing the first bytes", async () => {
  await withTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/page.safetensors`, "<!DOCTYPE html><html>");
    const err = await assertRejects(
      () => openTensorFile(`${dir}/page.safetensors`),
      /page\.safetensors: not a safetensors or PyTorch checkpoint file \(starts with 3c 21 44 4f 43 54 59 50 "<!DOCTYP"\)/,
    );
    assert(!err.message.includes("\n"));
    await Deno.writeFile(`${dir}/empty.ckpt`, new Uint8Array());
    await assertRejects(
      () => openTensorFile(`${dir}/empty.ckpt`),
      /empty\.ckpt: .*\(an empty file\)/,
    );
    await assertRejects(() => openTensorFile(dir), /not a file/);
    // A git-lfs pointer, which users often download by mistake.
    await Deno.writeTextFile(`${dir}/lfs.ckpt`, "version https://git-lfs.github.com/spec/v1\n");
    await assertRejects(() => openTensorFile(`${dir}/lfs.ckpt`), /lfs\.ckpt: not a safetensors/);
  });
  assertEquals(detectTensorFileKind(new Uint8Array([0x50, 0x4b, 3, 4]), "x"), "torch-zip");
});

Deno.test("open: unwrapStateDict strips a module. prefix only when every name has it", () => {
  const t: HostTensor = {
    shape: [1],
    dtype: "F32",
    read: () => Promise.resolve(new Float32Array(1)),
  };
  const all = new Map([["module.a", t], ["module.b.c", t]]);
  assertEquals([...unwrapStateDict(all).keys()], ["a", "b.c"]);
  const mixed = new Map([["module.a", t], ["b", t]]);
  assertEquals([...unwrapStateDict(mixed).keys()], ["module.a", "b"]);
});
