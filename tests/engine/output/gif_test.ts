import { encodeGif, gifDelaysCs } from "../../../engine/output/gif.ts";
import type { Frame } from "../../../engine/output/frame.ts";
import { decodeGif } from "../../decode.ts";
import { assert, assertEquals, assertRejects, randomArray } from "../../assert.ts";
import { movingGradient, paletteFrames, rgbError, sameBytes } from "./synthetic.ts";

/** The classic 1x1 transparent GIF (43 bytes): 2-colour table, GCE transparent index 0. */
const GIF_1X1_TRANSPARENT = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";
/**
 * Made by a separate Python writer: 6x9 canvas, 4-colour global table, NETSCAPE loop 5.
 * Image 0: full canvas, interlaced, index (x + y) % 4, delay 7, disposal 1.
 * Image 1: 3x4 at (2, 3), local 8-colour table (10i, 20i, 30i), transparent index 0,
 *          index (2x + y) % 8, delay 25, disposal 2 (restore to background).
 * Image 2: 1x1 at (0, 0), index 3, no graphic control extension.
 */
const GIF_INTERLACED_LOCAL =
  "R0lGODlhBgAJAIEAAAAAAP8AAAD/AAAA/yH/C05FVFNDQVBFMi4wAwEFAAAh+QQEBwAAACwAAAAABgAJAEACDUQ0ZqiX" +
  "vgZzsM77WAEAIfkECRkAAAAsAgADAAMABACCAAAAChQeFCg8HjxaKFB4MmSWPHi0RozSAwcIQjG1xp0EACwAAAAAAQAB" +
  "AAACAlwBADs=";

function base64Bytes(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

/** The 216 "web-safe" colours: every channel in {0, 51, ..., 255}. */
const CUBE_216 = Array.from(
  { length: 216 },
  (_, i) => [i % 6 * 51, Math.floor(i / 6) % 6 * 51, Math.floor(i / 36) * 51] as const,
);

/** Mean and max RGB error over all frames. */
function animationError(decoded: Uint8Array[], frames: Frame[]): { mean: number; max: number } {
  let mean = 0, max = 0;
  frames.forEach((f, i) => {
    const e = rgbError(decoded[i], f.data);
    mean += e.mean / frames.length;
    max = Math.max(max, e.max);
  });
  return { mean, max };
}

Deno.test("decodeGif reads the classic 1x1 transparent GIF", () => {
  const g = decodeGif(base64Bytes(GIF_1X1_TRANSPARENT));
  assertEquals([g.width, g.height, g.frames.length, g.loop], [1, 1, 1, null]);
  assertEquals(Array.from(g.frames[0]), [0, 0, 0, 0]);
  assertEquals([g.globalPalette, g.globalPaletteSize, g.localPaletteCount], [true, 2, 0]);
});

Deno.test("decodeGif: interlacing, local table, transparency, disposal (Python-made GIF)", () => {
  const g = decodeGif(base64Bytes(GIF_INTERLACED_LOCAL));
  assertEquals([g.width, g.height, g.frames.length], [6, 9, 3]);
  assertEquals(g.delaysCs, [7, 25, 0]);
  assertEquals([g.loop, g.globalPaletteSize, g.localPaletteCount], [5, 4, 1]);
  const global = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]];
  const expected = [new Uint8Array(6 * 9 * 4)];
  for (let y = 0; y < 9; y++) {
    for (let x = 0; x < 6; x++) expected[0].set([...global[(x + y) % 4], 255], (y * 6 + x) * 4);
  }
  expected.push(expected[0].slice());
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 3; x++) {
      const i = (2 * x + y) % 8;
      if (i !== 0) expected[1].set([10 * i, 20 * i, 30 * i, 255], ((3 + y) * 6 + 2 + x) * 4);
    }
  }
  expected.push(expected[1].slice());
  for (let y = 3; y < 7; y++) expected[2].fill(0, (y * 6 + 2) * 4, (y * 6 + 5) * 4);
  expected[2].set([0, 0, 255, 255], 0);
  for (let i = 0; i < 3; i++) {
    assert(sameBytes(g.frames[i], expected[i]), `frame ${i} differs from the expected canvas`);
  }
});

Deno.test("encodeGif: 24 moving 33x17 frames, one global palette, bounded colour error", () => {
  const frames = movingGradient(33, 17, 24);
  const g = decodeGif(encodeGif(frames, { fps: 8 }));
  assertEquals([g.width, g.height, g.frames.length], [33, 17, 24]);
  assertEquals([g.globalPalette, g.globalPaletteSize, g.localPaletteCount], [true, 256, 0]);
  // Measured: mean 6.1, max 32 levels per channel; bounds leave a little room.
  const err = animationError(g.frames, frames);
  assert(err.mean <= 7, `mean abs error ${err.mean.toFixed(3)} > 7`);
  assert(err.max <= 40, `max abs error ${err.max} > 40`);
  assert(g.frames.every((f) => f.every((v, i) => i % 4 !== 3 || v === 255)), "GIF must be opaque");
});

Deno.test("encodeGif: single frame and 64x64x16 stay within measured error bounds", () => {
  const one = movingGradient(33, 17, 1);
  const e1 = animationError(decodeGif(encodeGif(one, { fps: 8 })).frames, one);
  assert(e1.mean <= 3.5, `1 frame: mean abs error ${e1.mean.toFixed(3)} > 3.5 (measured 2.5)`);
  const many = movingGradient(64, 64, 16);
  const e2 = animationError(decodeGif(encodeGif(many, { fps: 8 })).frames, many);
  assert(e2.mean <= 8, `64x64x16: mean abs error ${e2.mean.toFixed(3)} > 8 (measured 7.0)`);
});

Deno.test("encodeGif is exact for <= 256 well-separated colours (random pixels, LZW resets)", () => {
  const frames = paletteFrames(40, 24, 3, CUBE_216);
  // Random pixels from the cube make long LZW streams that fill and reset the code table.
  const noise = randomArray(96 * 80, 11);
  const data = new Uint8ClampedArray(96 * 80 * 4);
  noise.forEach((v, i) => data.set([...CUBE_216[Math.floor((v + 1) * 108)], 255], i * 4));
  for (const anim of [frames, [{ data, width: 96, height: 80 }]]) {
    const g = decodeGif(encodeGif(anim, { fps: 12 }));
    anim.forEach((f, i) => assert(sameBytes(g.frames[i], f.data), `frame ${i} not exact`));
  }
});

Deno.test("encodeGif samples the palette from every frame (24 solid colours, sampled)", () => {
  // 24 * 108 * 108 = 279,936 pixels: more than the 2^18 sampled, so the sample is thinned.
  const frames = Array.from({ length: 24 }, (_, t) => {
    const c = CUBE_216[t * 9];
    const data = new Uint8ClampedArray(108 * 108 * 4);
    for (let p = 0; p < data.length; p += 4) data.set([c[0], c[1], c[2], 255], p);
    return { data, width: 108, height: 108 };
  });
  const g = decodeGif(encodeGif(frames, { fps: 8 }));
  frames.forEach((f, i) => assert(sameBytes(g.frames[i], f.data), `frame ${i} colour lost`));
});

Deno.test("encodeGif: a still region keeps identical pixels in every frame", () => {
  const moving = movingGradient(48, 32, 12);
  const still = movingGradient(48, 32, 1)[0];
  for (const f of moving) { // left half copied from one fixed frame
    for (let y = 0; y < 32; y++) f.data.set(still.data.subarray(y * 192, y * 192 + 96), y * 192);
  }
  for (const dither of [false, true]) {
    const g = decodeGif(encodeGif(moving, { fps: 8, dither }));
    for (let i = 1; i < g.frames.length; i++) {
      for (let y = 0; y < 32; y++) {
        const a = g.frames[0].subarray(y * 192, y * 192 + 96);
        const b = g.frames[i].subarray(y * 192, y * 192 + 96);
        assert(sameBytes(a, b), `dither=${dither}: still region changed in frame ${i}, row ${y}`);
      }
    }
  }
});

Deno.test("encodeGif dither: ordered dithering reduces banding on a smooth ramp", () => {
  const w = 256, h = 64;
  const data = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) data.set([x, y * 4, 128, 255], (y * w + x) * 4);
  }
  const frames = [{ data, width: w, height: h }];
  /** Mean error of 4x4 block averages: what the eye sees of banding. */
  const blockError = (out: Uint8Array) => {
    let sum = 0, n = 0;
    for (let by = 0; by < h; by += 4) {
      for (let bx = 0; bx < w; bx += 4) {
        for (let c = 0; c < 3; c++) {
          let d = 0;
          for (let y = by; y < by + 4; y++) {
            for (let x = bx; x < bx + 4; x++) {
              d += out[(y * w + x) * 4 + c] - data[(y * w + x) * 4 + c];
            }
          }
          sum += Math.abs(d) / 16;
          n++;
        }
      }
    }
    return sum / n;
  };
  const plain = blockError(decodeGif(encodeGif(frames, { fps: 8 })).frames[0]);
  const dithered = blockError(decodeGif(encodeGif(frames, { fps: 8, dither: true })).frames[0]);
  // Measured: 1.50 without, 0.84 with dithering (ratio 0.56).
  assert(dithered < 0.7 * plain, `dithered block error ${dithered} vs plain ${plain}`);
});

Deno.test("gifDelaysCs: rounding keeps the total exact; > 50 fps clamps to 2 cs", () => {
  assertEquals(gifDelaysCs(4, 8), [13, 12, 13, 12]);
  assertEquals(gifDelaysCs(3, 10), [10, 10, 10]);
  assertEquals(gifDelaysCs(3, 3), [33, 34, 33]);
  assertEquals(gifDelaysCs(3, 60), [2, 2, 2]);
  assertEquals(gifDelaysCs(2, 0.01), [10000, 10000]);
  const d = gifDelaysCs(24, 7);
  assertEquals(d.reduce((a, b) => a + b, 0), Math.round(2400 / 7));
});

Deno.test("encodeGif writes the requested delays and NETSCAPE loop count", () => {
  const frames = movingGradient(9, 5, 4);
  const at8 = decodeGif(encodeGif(frames, { fps: 8 }));
  assertEquals(at8.delaysCs, [13, 12, 13, 12]);
  assertEquals(at8.loop, 0, "loop 0 (default) = NETSCAPE 0 = forever");
  assertEquals(decodeGif(encodeGif(frames, { fps: 25, loop: 1 })).loop, null, "play once");
  const three = decodeGif(encodeGif(frames, { fps: 25, loop: 3 }));
  assertEquals([three.loop, three.delaysCs[0]], [2, 4], "3 plays = first + 2 repeats");
});

Deno.test("encodeGif rejects bad input with named errors", async () => {
  const [a] = movingGradient(4, 4, 1);
  const [b] = movingGradient(4, 5, 1);
  await assertRejects(() => encodeGif([], { fps: 8 }), /encodeGif: expected at least one frame/);
  await assertRejects(
    () => encodeGif([a, b], { fps: 8 }),
    /encodeGif: frame 1 is 4x5 but frame 0 is 4x4; all frames must have one size/,
  );
  await assertRejects(
    () => encodeGif([a, { data: new Uint8ClampedArray(60), width: 4, height: 4 }], { fps: 8 }),
    /encodeGif: frame 1: data length 60 != width\*height\*4 = 4\*4\*4 = 64/,
  );
  for (const fps of [0, -8, NaN, Infinity]) {
    await assertRejects(() => encodeGif([a], { fps }), /encodeGif: expected fps to be a finite/);
  }
  await assertRejects(
    () => encodeGif([a], { fps: 8, loop: 70000 }),
    /expected loop to be an integer in 0\.\.65535/,
  );
});
