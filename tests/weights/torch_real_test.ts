// torch.save files written by real PyTorch (tests/fixtures/torch/make.py): the zip and the
// legacy (pre-1.6) formats with views that share, offset and stride a storage, every dtype
// checkpoints use, and a PyTorch Lightning wrapper. Expected values are torch's own reads.
import { assert, assertEquals } from "../assert.ts";
import { openTorchFile } from "../../weights/torch_file.ts";
import type { StorageDType } from "../../weights/types.ts";

const DIR = new URL("../fixtures/torch/", import.meta.url);

interface Expected {
  dtype: string;
  shape: number[];
  values: number[];
}

const DTYPES: Record<string, StorageDType> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  float64: "F64",
  int64: "I64",
  int32: "I32",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

const expected: Record<string, Record<string, Expected>> = JSON.parse(
  await Deno.readTextFile(new URL("expected.json", DIR)),
);

for (const [file, tensors] of Object.entries(expected)) {
  if (file.startsWith("_")) continue;
  Deno.test(`torch_real: ${file} (torch ${expected._torch}) reads as torch.load does`, async () => {
    // strict: only tensor-rebuilding globals; these files hold nothing else.
    const f = await openTorchFile(new URL(file, DIR).pathname, { strict: true });
    try {
      assertEquals(f.format, file.endsWith(".pt") ? "torch-legacy" : "torch-zip");
      assertEquals([...f.tensors.keys()].sort(), Object.keys(tensors).sort());
      for (const [name, want] of Object.entries(tensors)) {
        const t = f.tensors.get(name)!;
        assertEquals(t.dtype, DTYPES[want.dtype], `${file}: ${name} dtype`);
        assertEquals([...t.shape], want.shape, `${file}: ${name} shape`);
        const got = await t.read();
        assertEquals(got.length, want.values.length, `${file}: ${name} length`);
        for (let i = 0; i < got.length; i++) {
          assert(
            got[i] === Math.fround(want.values[i]),
            `${file}: ${name}[${i}] = ${got[i]}, torch reads ${want.values[i]}`,
          );
        }
      }
    } finally {
      f.close();
    }
  });
}
