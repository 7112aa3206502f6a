import { encodeFramesZip, frameNames } from "../../../engine/output/frames_zip.ts";
import { decodePng, unzipFrames } from "../../decode.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { movingGradient, sameBytes } from "./synthetic.ts";

Deno.test("encodeFramesZip: 24 stored PNGs named frame_0000.png.. in order, each exact", () => {
  const frames = movingGradient(33, 17, 24, { alpha: true });
  const entries = unzipFrames(encodeFramesZip(frames));
  assertEquals(entries.map((e) => e.name), frameNames(24));
  assertEquals(entries[0].name, "frame_0000.png");
  assertEquals(entries[23].name, "frame_0023.png");
  assert(entries.every((e) => e.method === 0), "entries must be stored, not deflated");
  entries.forEach((e, i) => {
    const png = decodePng(e.png);
    assertEquals([png.width, png.height], [33, 17]);
    assert(sameBytes(png.data, frames[i].data), `${e.name} differs from frame ${i}`);
  });
});

Deno.test("encodeFramesZip: one frame, custom prefix, reproducible bytes", () => {
  const frames = movingGradient(1, 1, 1);
  const a = encodeFramesZip(frames, { prefix: "clip/f_" });
  assertEquals(unzipFrames(a).map((e) => e.name), ["clip/f_0000.png"]);
  assert(
    sameBytes(a, encodeFramesZip(frames, { prefix: "clip/f_" })),
    "zip bytes not reproducible",
  );
});

Deno.test("frameNames pads to 4 digits, more when needed", () => {
  assertEquals(frameNames(2), ["frame_0000.png", "frame_0001.png"]);
  assertEquals(frameNames(10001).slice(-2), ["frame_09999.png", "frame_10000.png"]);
  assertEquals(frameNames(1, "x"), ["x0000.png"]);
});

Deno.test("encodeFramesZip rejects bad input with named errors", async () => {
  const [a] = movingGradient(3, 3, 1);
  const [b] = movingGradient(3, 4, 1);
  await assertRejects(() => encodeFramesZip([]), /encodeFramesZip: expected at least one frame/);
  await assertRejects(
    () => encodeFramesZip([a, b]),
    /encodeFramesZip: frame 1 is 3x4 but frame 0 is 3x3/,
  );
  for (const prefix of ["../x", "/abs", "a\\b", "a\nb"]) {
    await assertRejects(() => encodeFramesZip([a], { prefix }), /encodeFramesZip: prefix/);
  }
});

Deno.test("unzipFrames rejects a corrupted entry", async () => {
  const zip = encodeFramesZip(movingGradient(4, 4, 1));
  const broken = zip.slice();
  broken[30 + "frame_0000.png".length + 20] ^= 0xff; // inside the stored PNG
  await assertRejects(() => unzipFrames(broken), /frame_0000\.png: CRC mismatch/);
});
