import { assert, assertEquals, assertRejects } from "../assert.ts";
import {
  encodeSafetensors,
  hasReadRaw,
  openSafetensors,
  parseSafetensorsHeader,
  type TensorToWrite,
  writeSafetensors,
} from "../../weights/safetensors.ts";

const FIXTURE = new URL("../fixtures/tiny/single_file/", import.meta.url);

/** Builds a file from a raw header object and a data region. */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-st-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SAMPLE: TensorToWrite[] = [
  { name: "f32", shape: [2, 3], dtype: "F32", data: new Float32Array([1, -2, 3.5, 0, 1e-8, -7]) },
  { name: "f16", shape: [3], dtype: "F16", data: new Float32Array([1, -0.5, 65504]) },
  { name: "bf16", shape: [2], dtype: "BF16", data: new Float32Array([1.5, -256]) },
  { name: "i64", shape: [1, 4], dtype: "I64", data: new BigInt64Array([0n, 1n, -5n, 76n]) },
  { name: "i32", shape: [2], dtype: "I32", data: new Int32Array([-3, 7]) },
  { name: "u8", shape: [2], dtype: "U8", data: new Uint8Array([0, 255]) },
  { name: "bool", shape: [3], dtype: "BOOL", data: new Uint8Array([1, 0, 1]) },
  { name: "f64", shape: [], dtype: "F64", data: new Float64Array([0.25]) },
  { name: "empty", shape: [0, 4], dtype: "F32", data: new Float32Array(0) },
];
const EXPECTED: Record<string, number[]> = {
  f32: [1, -2, 3.5, 0, Math.fround(1e-8), -7],
  f16: [1, -0.5, 65504],
  bf16: [1.5, -256],
  i64: [0, 1, -5, 76],
  i32: [-3, 7],
  u8: [0, 255],
  bool: [1, 0, 1],
  f64: [0.25],
  empty: [],
};

Deno.test("safetensors: writeSafetensors -> openSafetensors round trip of every dtype", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/a.safetensors`;
    const progress: number[] = [];
    await writeSafetensors(path, SAMPLE, {
      metadata: { format: "pt" },
      onProgress: (done) => progress.push(done),
    });
    const bytes = await Deno.readFile(path);
    assertEquals(
      [...bytes],
      [...await encodeSafetensors(SAMPLE, { metadata: { format: "pt" } })],
      "streamed file equals the in-memory encoding",
    );
    // Header is padded so the data region starts 8-byte aligned.
    assertEquals(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8, 0);
    const f = await openSafetensors(path);
    assertEquals(f.format, "safetensors");
    assertEquals(f.metadata, { format: "pt" });
    assertEquals([...f.tensors.keys()], SAMPLE.map((t) => t.name));
    for (const t of SAMPLE) {
      const h = f.tensors.get(t.name)!;
      assertEquals(h.shape, t.shape, t.name);
      assertEquals(h.dtype, t.dtype, t.name);
      assertEquals([...await h.read()], EXPECTED[t.name], t.name);
    }
    const raw = f.tensors.get("f16")!;
    assert(hasReadRaw(raw));
    assertEquals([...await raw.readRaw()], [0x00, 0x3c, 0x00, 0xb8, 0xff, 0x7b]);
    assertEquals(progress.length, SAMPLE.length);
    f.close();
    await assertRejects(() => f.tensors.get("f32")!.read(), /read after close/);
  });
});

Deno.test("safetensors: async iterable of lazy tensors is written in order", async () => {
  await withTemp(async (dir) => {
    const pulled: string[] = [];
    async function* gen() {
      for (const name of ["a", "b"]) {
        yield {
          name,
          shape: [2],
          dtype: "F32" as const,
          data:
            () => (pulled.push(name), Promise.resolve(new Float32Array([1, name === "a" ? 2 : 3]))),
        };
      }
    }
    await writeSafetensors(`${dir}/g.safetensors`, gen());
    assertEquals(pulled, ["a", "b"]);
    const f = await openSafetensors(`${dir}/g.safetensors`);
    assertEquals([...await f.tensors.get("b")!.read()], [1, 3]);
    f.close();
  });
});

Deno.test("safetensors: writer rejects wrong byte counts and duplicate names, leaves no file", async () => {
  await withTemp(async (dir) => {
    const path = `${dir}/bad.safetensors`;
    await assertRejects(
      () =>
        writeSafetensors(path, [{
          name: "w",
          shape: [3],
          dtype: "F32",
          data: new Float32Array(2),
        }]),
      /bad\.safetensors: tensor 'w': 8 bytes given but shape \[3\] F32 needs 12/,
    );
    await assertRejects(
      () =>
        writeSafetensors(path, [
          { name: "w", shape: [1], dtype: "F32", data: new Float32Array(1) },
          { name: "w", shape: [1], dtype: "F32", data: new Float32Array(1) },
        ]),
      /tensor 'w' is given twice/,
    );
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  });
});

Deno.test("safetensors: reads the fixture sd15.fp16 file lazily (F16 and I64 by value)", async () => {
  const f = await openSafetensors(new URL("sd15.fp16.safetensors", FIXTURE).pathname);
  const pos = f.tensors.get("cond_stage_model.transformer.text_model.embeddings.position_ids")!;
  assertEquals(pos.dtype, "I64");
  assertEquals([...await pos.read()], Array.from({ length: 77 }, (_, i) => i));
  const full = await openSafetensors(new URL("sd15.safetensors", FIXTURE).pathname);
  let checked = 0;
  for (const [name, t] of f.tensors) {
    if (t.dtype !== "F16") continue;
    const a = await t.read(), b = await full.tensors.get(name)!.read();
    // F16 copy of the F32 weights: relative rounding error <= 2^-11 (plus subnormal slack).
    for (let i = 0; i < a.length; i++) {
      assert(Math.abs(a[i] - b[i]) <= Math.abs(b[i]) * 2 ** -11 + 2 ** -24, `${name}[${i}]`);
    }
    if (++checked === 20) break;
  }
  assertEquals(checked, 20);
  f.close();
  full.close();
});

// ---- Bad input: each a one-line error naming the file and the reason.

function expectHeaderError(bytes: Uint8Array, pattern: RegExp, size = bytes.byteLength): void {
  let err: Error | null = null;
  try {
    parseSafetensorsHeader(bytes, size, "bad.safetensors");
  } catch (e) {
    err = e as Error;
  }
  assert(err !== null, `expected an error matching ${pattern}`);
  assert(pattern.test(err.message), `"${err.message}" does not match ${pattern}`);
  assert(err.message.startsWith("bad.safetensors: "), "error names the file");
  assert(!err.message.includes("\n"), "one-line error");
}

Deno.test("safetensors: header validation errors", async () => {
  const ok = { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const data = new Uint8Array(8);
  expectHeaderError(
    rawFile({ w: { dtype: "F32", shape: [2], data_offsets: [0, 16] } }, data),
    /tensor 'w': data_offsets \[0, 16\] lie beyond the data region \(8 bytes/,
  );
  expectHeaderError(
    rawFile({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)),
    /tensor 'b' data \[4, 12\] overlaps tensor 'a'/,
  );
  expectHeaderError(
    rawFile({ w: { dtype: "F8_E4M3", shape: [2], data_offsets: [0, 2] } }, data),
    /tensor 'w': unknown dtype "F8_E4M3"/,
  );
  expectHeaderError(
    rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, data),
    /tensor 'w': data_offsets span 8 bytes but shape \[3\] F32 needs 12/,
  );
  expectHeaderError(
    rawFile({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, data),
    /tensor 'w': shape \[-2\] is not a list of integers/,
  );
  expectHeaderError(rawFile(null, data, "{not json"), /header is not valid JSON/);
  expectHeaderError(rawFile(null, data, "[1,2]"), /header is not a JSON object/);
  const badUtf8 = rawFile(null, data, '{"w":1}');
  badUtf8[10] = 0xff;
  expectHeaderError(badUtf8, /header is not valid UTF-8/);
  const huge = rawFile(ok, data);
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  expectHeaderError(huge, /header length 1099511627776 is implausible/);
  const full = rawFile(ok, data);
  expectHeaderError(full.subarray(0, 20), /header length \d+ exceeds the file size 20 \(truncated/);
  expectHeaderError(full.subarray(0, full.byteLength - 3), /lie beyond the data region \(5 bytes/);
  expectHeaderError(full.subarray(0, 5), /too small to be a safetensors file \(5 bytes\)/);

  // Through the file API: truncated mid-data and mid-header, naming the file path.
  await withTemp(async (dir) => {
    const path = `${dir}/cut.safetensors`;
    await Deno.writeFile(path, full.subarray(0, full.byteLength - 3));
    await assertRejects(() => openSafetensors(path), /cut\.safetensors: tensor 'w': data_offsets/);
    await Deno.writeFile(path, full.subarray(0, 12));
    await assertRejects(() => openSafetensors(path), /cut\.safetensors: safetensors header length/);
  });
});
