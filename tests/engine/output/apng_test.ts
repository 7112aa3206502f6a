import { apngDelay, encodeApng } from "../../../engine/output/apng.ts";
import { encodePng } from "../../../engine/output/png.ts";
import { crc32 } from "../../../weights/crc32.ts";
import { decodeApng, decodePng } from "../../decode.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { movingGradient, sameBytes } from "./synthetic.ts";

/** Chunk types in file order. */
function chunkTypes(bytes: Uint8Array): string[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const types: string[] = [];
  for (let p = 8; p < bytes.length; p += 12 + v.getUint32(p)) {
    types.push(String.fromCharCode(...bytes.subarray(p + 4, p + 8)));
  }
  return types;
}

Deno.test("encodeApng round-trips 24 moving 33x17 frames with alpha bit-exactly", () => {
  const frames = movingGradient(33, 17, 24, { alpha: true });
  const bytes = encodeApng(frames, { fps: 8, loop: 0 });
  const back = decodeApng(bytes);
  assertEquals([back.width, back.height, back.frames.length], [33, 17, 24]);
  for (let i = 0; i < 24; i++) {
    assert(sameBytes(back.frames[i], frames[i].data), `frame ${i} differs after decode`);
  }
  assertEquals(back.numPlays, 0);
  assert(back.delays.every((d) => d === 0.125), `delays ${back.delays}`);
  assert(back.idatIsFirstFrame, "frame 0 must be the IDAT image");
  // The default image (what a non-APNG viewer shows) is frame 0.
  assert(sameBytes(decodePng(bytes).data, frames[0].data), "IDAT image != frame 0");
});

Deno.test("encodeApng chunk layout: IHDR acTL (fcTL IDAT) (fcTL fdAT)... IEND", () => {
  const frames = movingGradient(5, 3, 3);
  const types = chunkTypes(encodeApng(frames, { fps: 10, loop: 2 }));
  assertEquals(types, ["IHDR", "acTL", "fcTL", "IDAT", "fcTL", "fdAT", "fcTL", "fdAT", "IEND"]);
  const back = decodeApng(encodeApng(frames, { fps: 10, loop: 2 }));
  assertEquals(back.numPlays, 2);
  assertEquals(back.delayFractions, [{ num: 1, den: 10 }, { num: 1, den: 10 }, {
    num: 1,
    den: 10,
  }]);
});

Deno.test("encodeApng with one frame is still an APNG (acTL 1 frame)", () => {
  const [f] = movingGradient(1, 1, 1);
  const back = decodeApng(encodeApng([f], { fps: 8 }));
  assertEquals(back.frames.length, 1);
  assertEquals(Array.from(back.frames[0]), Array.from(f.data));
});

Deno.test("apngDelay gives exact 16-bit fractions of 1/fps", () => {
  assertEquals(apngDelay(8), { num: 1, den: 8 });
  assertEquals(apngDelay(24), { num: 1, den: 24 });
  assertEquals(apngDelay(7.5), { num: 2, den: 15 });
  assertEquals(apngDelay(0.5), { num: 2, den: 1 });
  assertEquals(apngDelay(23.976), { num: 125, den: 2997 });
  assertEquals(apngDelay(30000 / 1001), { num: 1001, den: 30000 });
  assertEquals(apngDelay(65535), { num: 1, den: 65535 });
  // Irrational rate: closest convergent within 16 bits, relative error measured 5.1e-8 (65298/20785); bound 6e-8 (355/113 alone: 8.5e-8).
  const pi = apngDelay(Math.PI);
  assert(pi.num <= 65535 && pi.den <= 65535, `pi fraction ${pi.num}/${pi.den}`);
  assert(Math.abs(pi.num / pi.den - 1 / Math.PI) * Math.PI < 6e-8, `pi ${pi.num}/${pi.den}`);
  assertEquals(apngDelay(1e6), { num: 1, den: 65535 });
  assertEquals(apngDelay(1e-6), { num: 65535, den: 1 });
});

Deno.test("decodeApng reports the seconds per frame for fractional fps", () => {
  const back = decodeApng(encodeApng(movingGradient(4, 4, 2), { fps: 7.5 }));
  assertEquals(back.delayFractions[1], { num: 2, den: 15 });
  assert(Math.abs(back.delays[1] - 2 / 15) < 1e-12, `delay ${back.delays[1]}`);
});

Deno.test("encodeApng rejects bad input with named errors", async () => {
  const [a] = movingGradient(4, 4, 1);
  const [b] = movingGradient(5, 4, 1);
  await assertRejects(() => encodeApng([], { fps: 8 }), /encodeApng: expected at least one frame/);
  await assertRejects(
    () => encodeApng([a, a, b], { fps: 8 }),
    /encodeApng: frame 2 is 5x4 but frame 0 is 4x4/,
  );
  for (const fps of [0, -1, NaN, Infinity]) {
    await assertRejects(
      () => encodeApng([a], { fps }),
      /encodeApng: expected fps to be a finite number > 0/,
    );
  }
  await assertRejects(
    () => encodeApng([a], { fps: 8, loop: -1 }),
    /expected loop to be an integer/,
  );
  await assertRejects(
    () => encodeApng([a], { fps: 8, loop: 1.5 }),
    /expected loop to be an integer/,
  );
});

Deno.test("decodeApng rejects a plain PNG, broken sequence numbers and bad CRCs", async () => {
  const frames = movingGradient(4, 4, 2);
  await assertRejects(() => decodeApng(encodePng(frames[0])), /no acTL chunk/);
  const bytes = encodeApng(frames, { fps: 8 });
  // Locate the fdAT chunk, set its sequence number to 7 and re-sign it with a valid CRC.
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8;
  while (String.fromCharCode(...bytes.subarray(p + 4, p + 8)) !== "fdAT") p += 12 + v.getUint32(p);
  const len = v.getUint32(p);
  const reseq = bytes.slice();
  const rv = new DataView(reseq.buffer);
  rv.setUint32(p + 8, 7);
  rv.setUint32(p + 8 + len, crc32(reseq.subarray(p + 4, p + 8 + len)));
  await assertRejects(() => decodeApng(reseq), /fdAT sequence number 7, expected 2/);
  const broken = bytes.slice();
  broken[p + 12] ^= 0xff; // first byte of the fdAT's zlib data
  await assertRejects(() => decodeApng(broken), /CRC mismatch in fdAT/);
});
