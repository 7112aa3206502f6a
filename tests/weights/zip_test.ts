import { zipSync } from "fflate";
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { openZip, ZipWriter } from "../../weights/zip.ts";
import { crc32 } from "../../weights/crc32.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-zip-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Offset of the first central directory header. */
function centralAt(bytes: Uint8Array): number {
  for (let i = 0; i + 4 <= bytes.byteLength; i++) {
    if (bytes[i] === 0x50 && bytes[i + 1] === 0x4b && bytes[i + 2] === 1 && bytes[i + 3] === 2) {
      return i;
    }
  }
  throw new Error("no central directory header");
}

Deno.test("zip: crc32 matches the standard check value", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("zip: ZipWriter -> openZip round trip, plain and zip64, with lazy ranges", async () => {
  await withTemp(async (dir) => {
    for (const forceZip64 of [false, true]) {
      const path = `${dir}/t${forceZip64}.zip`;
      const big = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff);
      const w = await ZipWriter.create(path, { forceZip64 });
      await w.add("root/data.pkl", new Uint8Array([1, 2, 3]));
      await w.add("root/data/0", big);
      await w.finish();
      const z = await openZip(path);
      assertEquals([...z.entries.keys()], ["root/data.pkl", "root/data/0"]);
      assertEquals([...await z.read("root/data.pkl")], [1, 2, 3]);
      assertEquals([...await z.readRange("root/data/0", 4000, 5)], [...big.subarray(4000, 4005)]);
      await assertRejects(
        () => z.readRange("root/data/0", 4999, 2),
        /outside zip entry 'root\/data\/0'/,
      );
      await assertRejects(() => z.read("nope"), /zip has no entry 'nope'/);
      z.close();
    }
  });
});

Deno.test("zip: deflated entries are inflated and CRC-checked", async () => {
  await withTemp(async (dir) => {
    const text = new TextEncoder().encode("hello ".repeat(1000));
    await Deno.writeFile(`${dir}/d.zip`, zipSync({ "a/x.txt": [text, { level: 9 }] }));
    const z = await openZip(`${dir}/d.zip`);
    assertEquals(z.entries.get("a/x.txt")!.method, 8);
    assertEquals(new TextDecoder().decode(await z.read("a/x.txt")), "hello ".repeat(1000));
    assertEquals(new TextDecoder().decode(await z.readRange("a/x.txt", 6, 5)), "hello");
    z.close();
    // Corrupt the stored CRC in the central directory: the read must fail.
    const bytes = await Deno.readFile(`${dir}/d.zip`);
    const cd = centralAt(bytes);
    bytes[cd + 16] ^= 0xff;
    await Deno.writeFile(`${dir}/crc.zip`, bytes);
    const z2 = await openZip(`${dir}/crc.zip`);
    await assertRejects(
      () => z2.read("a/x.txt"),
      /crc\.zip: zip entry 'a\/x\.txt' fails its CRC-32 check/,
    );
    z2.close();
  });
});

Deno.test("zip: rejects path traversal, absolute and duplicate names", async () => {
  await withTemp(async (dir) => {
    await Deno.writeFile(
      `${dir}/evil.zip`,
      zipSync({ "../evil": new Uint8Array([1]) }, { level: 0 }),
    );
    await assertRejects(
      () => openZip(`${dir}/evil.zip`),
      /evil\.zip: zip entry '\.\.\/evil' contains '\.\.' \(path traversal\)/,
    );
    await Deno.writeFile(
      `${dir}/abs.zip`,
      zipSync({ "/etc/passwd": new Uint8Array([1]) }, { level: 0 }),
    );
    await assertRejects(
      () => openZip(`${dir}/abs.zip`),
      /zip entry '\/etc\/passwd' is an absolute path/,
    );
    await Deno.writeFile(
      `${dir}/drive.zip`,
      zipSync({ "C:/x": new Uint8Array([1]) }, { level: 0 }),
    );
    await assertRejects(() => openZip(`${dir}/drive.zip`), /zip entry 'C:\/x' is an absolute path/);
    const w = await ZipWriter.create(`${dir}/dup.zip`);
    await w.add("a/b", new Uint8Array([1]));
    await w.add("a/b", new Uint8Array([2]));
    await w.finish();
    await assertRejects(
      () => openZip(`${dir}/dup.zip`),
      /dup\.zip: zip entry 'a\/b' appears twice/,
    );
  });
});

Deno.test("zip: zip bombs are refused (declared size over the cap, and lying sizes)", async () => {
  await withTemp(async (dir) => {
    const zeros = new Uint8Array(32 << 20); // 32 MiB -> ~32 KiB deflated
    const bomb = zipSync({ "bomb": [zeros, { level: 9 }] });
    assert(bomb.byteLength < 100_000, `bomb is small (${bomb.byteLength} bytes)`);
    await Deno.writeFile(`${dir}/bomb.zip`, bomb);
    const z = await openZip(`${dir}/bomb.zip`, { maxInflatedBytes: 1 << 20 });
    await assertRejects(
      () => z.read("bomb"),
      /bomb\.zip: zip entry 'bomb' declares 33554432 uncompressed bytes \(limit 1048576\)/,
    );
    z.close();
    // The same data declaring only 1000 bytes: inflation stops once it exceeds the declaration.
    const cd = centralAt(bomb);
    new DataView(bomb.buffer).setUint32(cd + 24, 1000, true);
    await Deno.writeFile(`${dir}/liar.zip`, bomb);
    const z2 = await openZip(`${dir}/liar.zip`);
    await assertRejects(
      () => z2.read("bomb"),
      /liar\.zip: zip entry 'bomb' inflates beyond its declared 1000 bytes \(zip bomb\?\)/,
    );
    z2.close();
    // A ratio no DEFLATE stream can reach is refused before inflating.
    new DataView(bomb.buffer).setUint32(cd + 24, 1 << 29, true);
    await Deno.writeFile(`${dir}/ratio.zip`, bomb);
    const z3 = await openZip(`${dir}/ratio.zip`);
    await assertRejects(() => z3.read("bomb"), /compression ratio \(zip bomb\?\)/);
    z3.close();
  });
});

Deno.test("zip: truncated archives and offsets outside the file give one-line errors", async () => {
  await withTemp(async (dir) => {
    const w = await ZipWriter.create(`${dir}/ok.zip`);
    await w.add("a/data.pkl", new Uint8Array(300).fill(9));
    await w.finish();
    const bytes = await Deno.readFile(`${dir}/ok.zip`);
    await Deno.writeFile(`${dir}/cut.zip`, bytes.subarray(0, 200));
    await assertRejects(
      () => openZip(`${dir}/cut.zip`),
      /cut\.zip: zip end-of-central-directory record not found \(truncated file\?\)/,
    );
    await Deno.writeFile(`${dir}/head.zip`, bytes.subarray(150));
    await assertRejects(
      () => openZip(`${dir}/head.zip`),
      /head\.zip: zip central directory \[\d+, \d+\) lies outside the file/,
    );
    const moved = bytes.slice();
    new DataView(moved.buffer).setUint32(centralAt(moved) + 42, 1_000_000, true);
    await Deno.writeFile(`${dir}/far.zip`, moved);
    await assertRejects(
      () => openZip(`${dir}/far.zip`),
      /far\.zip: zip entry 'a\/data\.pkl': data \[1000000, \+300\) lies outside the file/,
    );
    await Deno.writeFile(`${dir}/tiny.zip`, new Uint8Array([0x50, 0x4b, 3, 4]));
    await assertRejects(
      () => openZip(`${dir}/tiny.zip`),
      /tiny\.zip: zip is truncated \(4 bytes\)/,
    );
  });
});
