import { encodePng, filterRows } from "../../../engine/output/png.ts";
import { crc32 } from "../../../weights/crc32.ts";
import { decodePng } from "../../decode.ts";
import { assert, assertEquals, assertRejects, randomArray } from "../../assert.ts";
import { movingGradient, sameBytes } from "./synthetic.ts";

/** Made by a separate Python writer (zlib + hand filtering): 4x10 RGBA, row y uses filter y % 5. */
const PNG_RGBA_ALL_FILTERS =
  "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAKCAYAAACT+/8OAAAAeUlEQVR4nGNgYGb4r8HM8DqAmeF6BTPDYUZ2U6AAg9wb" +
  "GGZiN2JgYDeSA2IbII5iYOZLY2iQkLT5JiHpDcRR31jAKhiAKhiAKhiiGBiU/zL89/477XXxX53rs/8eOsyopQ8ydMsb" +
  "GMY0VCEZZGg70EAxIFZFNpQPjAFY8ynMBLgQlwAAAABJRU5ErkJggg==";
/** Same writer: 3x5 RGB (colour type 2), row y uses filter 4 - y % 5. */
const PNG_RGB =
  "iVBORw0KGgoAAAANSUhEUgAAAAMAAAAFCAIAAAAPE8H1AAAANUlEQVR4nGNhYGbQYAAhZnYTBglJOQlJXSZ2IwZ2Izl2" +
  "IxtG0ZlAqSggYpA5zeByuiLn9AcAdCkIkpstsUQAAAAASUVORK5CYII=";
/** The pixel formula both Python images were drawn with. */
const pythonPixel = (x: number, y: number) => [
  (x * 40 + y * 7) & 255,
  (y * 50 + 3) & 255,
  (x * y * 30) & 255,
  255 - x * 20,
];

function base64Bytes(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function noiseFrame(width: number, height: number, seed: number) {
  const r = randomArray(width * height * 4, seed);
  return { data: Uint8ClampedArray.from(r, (v) => (v + 1) * 128), width, height };
}

Deno.test("crc32 matches the standard check value and zlib's crc of 'IEND'", () => {
  assertEquals(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assertEquals(crc32(new TextEncoder().encode("IEND")), 0xae426082);
  const whole = crc32(new TextEncoder().encode("hello world"));
  const split = crc32(new TextEncoder().encode(" world"), crc32(new TextEncoder().encode("hello")));
  assertEquals(split, whole, "crc32 continued over two buffers");
});

Deno.test("decodePng reads an independently written PNG using all five filter types", () => {
  const rgba = decodePng(base64Bytes(PNG_RGBA_ALL_FILTERS));
  assertEquals([rgba.width, rgba.height], [4, 10]);
  const rgb = decodePng(base64Bytes(PNG_RGB));
  assertEquals([rgb.width, rgb.height], [3, 5]);
  for (const img of [rgba, rgb]) {
    for (let y = 0; y < img.height; y++) {
      for (let x = 0; x < img.width; x++) {
        const want = pythonPixel(x, y);
        if (img === rgb) want[3] = 255;
        const o = (y * img.width + x) * 4;
        assertEquals(Array.from(img.data.subarray(o, o + 4)), want, `pixel ${x},${y}`);
      }
    }
  }
});

Deno.test("decodePng rejects a corrupted CRC", async () => {
  const bytes = base64Bytes(PNG_RGB);
  bytes[30] ^= 1; // inside IHDR data
  await assertRejects(() => decodePng(bytes), /CRC mismatch in IHDR/);
});

Deno.test("encodePng round-trips bit-exactly (33x17 gradient with alpha, 1x1, 64x48 noise)", () => {
  const cases = [
    movingGradient(33, 17, 1, { alpha: true })[0],
    { data: new Uint8ClampedArray([12, 34, 56, 78]), width: 1, height: 1 },
    noiseFrame(64, 48, 7),
  ];
  for (const f of cases) {
    const png = encodePng(f);
    const back = decodePng(png);
    assertEquals([back.width, back.height], [f.width, f.height]);
    assert(sameBytes(back.data, f.data), `${f.width}x${f.height} pixels differ after decode`);
  }
});

Deno.test("encodePng writes signature, IHDR (8-bit RGBA, no interlace), IDAT, IEND", () => {
  const png = encodePng(movingGradient(33, 17, 1)[0]);
  assertEquals(Array.from(png.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]);
  const text = new TextDecoder("latin1").decode(png);
  assertEquals(text.substring(12, 16), "IHDR");
  const v = new DataView(png.buffer, png.byteOffset);
  assertEquals([v.getUint32(16), v.getUint32(20), png[24], png[25], png[28]], [33, 17, 8, 6, 0]);
  assertEquals(text.substring(37, 41), "IDAT");
  assertEquals(text.slice(-8, -4), "IEND");
});

Deno.test("filterRows picks the minimum sum-of-absolute-differences filter per row", () => {
  const width = 8, height = 4;
  const data = new Uint8ClampedArray(width * height * 4);
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const o = (y * width + x) * 4;
      // row 0 constant-ish ramp in x (Sub wins); rows 1..3 repeat row 0 (Up gives all zeros)
      data.set([x * 20, x * 20, x * 20, 255], o);
    }
  }
  const raw = filterRows({ data, width, height });
  const stride = width * 4 + 1;
  const types = Array.from({ length: height }, (_, y) => raw[y * stride]);
  assertEquals(types, [1, 2, 2, 2]);
  assert(raw.subarray(stride + 1, 2 * stride).every((b) => b === 0), "Up row must be all zeros");
  // A flat image: every filter sums to 0 on every row; ties go to the lowest type, None.
  const flat = filterRows({ data: new Uint8ClampedArray(4 * 4 * 4), width: 4, height: 4 });
  assertEquals(Array.from({ length: 4 }, (_, y) => flat[y * 17]), [0, 0, 0, 0]);
});

/** Sums of |signed filtered byte| of row y for filter types 0..4, computed from the spec. */
function filterSums(px: Uint8ClampedArray, width: number, y: number): number[] {
  const stride = width * 4;
  const at = (xx: number, yy: number) => (xx < 0 || yy < 0 ? 0 : px[yy * stride + xx]);
  const sums = [0, 0, 0, 0, 0];
  for (let i = 0; i < stride; i++) {
    const x = px[y * stride + i], a = at(i - 4, y), b = at(i, y - 1), c = at(i - 4, y - 1);
    const p = a + b - c;
    const pred = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c)
      ? a
      : Math.abs(p - b) <= Math.abs(p - c)
      ? b
      : c;
    [0, a, b, Math.floor((a + b) / 2), pred].forEach((pr, f) => {
      const d = (x - pr + 256) % 256;
      sums[f] += d < 128 ? d : 256 - d;
    });
  }
  return sums;
}

Deno.test("filterRows: the chosen filter's sum is the row minimum (noise and gradient)", () => {
  const frames = [noiseFrame(32, 24, 3), movingGradient(33, 17, 1)[0]];
  const counts = [0, 0, 0, 0, 0];
  for (const f of frames) {
    const raw = filterRows(f);
    for (let y = 0; y < f.height; y++) {
      const chosen = raw[y * (f.width * 4 + 1)];
      const sums = filterSums(f.data, f.width, y);
      assertEquals(chosen, sums.indexOf(Math.min(...sums)), `row ${y} sums ${sums}`);
      counts[chosen]++;
    }
  }
  assert(counts.filter((c) => c > 0).length >= 2, `filter usage ${counts}: expected variety`);
});

Deno.test("encodePng rejects bad frames with named errors", async () => {
  await assertRejects(
    () => encodePng({ data: new Uint8ClampedArray(10), width: 2, height: 2 }),
    /encodePng: frame: data length 10 != width\*height\*4 = 2\*2\*4 = 16/,
  );
  await assertRejects(
    () => encodePng({ data: new Uint8ClampedArray(0), width: 0, height: 2 }),
    /encodePng: frame: expected width to be an integer in 1\.\.65535, got 0/,
  );
  await assertRejects(
    () => encodePng({ data: new Uint8ClampedArray(8), width: 1.5, height: 1 }),
    /expected width to be an integer/,
  );
});
