import { assert, assertEquals } from "../assert.ts";
import { COLOUR_RGB, COLOURS, DARK_RGB, renderClip } from "../../tools/demo/world.ts";
import {
  classifyAnimation,
  hueOf,
  measureFrame,
  nearestColour,
  type Score,
  scoreAnimation,
} from "../../tools/demo/classify.ts";
import { encodeGif } from "../../engine/output/gif.ts";
import { decodeGif } from "../../engine/input/gif.ts";
import type { Frame } from "../../engine/output/frame.ts";

/** The bench needs >= 95% on the world's own clips to be trusted on generated ones. */
const REQUIRED = 0.95;
const FIELDS = ["colour", "shape", "motion", "background", "oneObject"] as const;

/** Scores `count` seeded clips (prompts random from the seed) and returns the rates. */
function accuracy(
  count: number,
  o: { background: "dark" | "paper"; size: number; frames: number; via?: (f: Frame[]) => Frame[] },
): { rates: Record<string, number>; misses: string[] } {
  const right = Object.fromEntries(FIELDS.map((k) => [k, 0]));
  const misses: string[] = [];
  for (let seed = 0; seed < count; seed++) {
    const clip = renderClip(10_000 + seed, {
      background: o.background,
      frames: o.frames,
      width: o.size,
      height: o.size,
    });
    const s: Score = scoreAnimation(o.via ? o.via(clip.frames) : clip.frames, clip.truth);
    for (const k of FIELDS) if (s[k]) right[k]++;
    if (FIELDS.some((k) => !s[k])) {
      const c = s.classification;
      misses.push(
        `${clip.caption}: ${c.colour} ${c.shape} ${c.motion} ${c.background} x${c.objects}`,
      );
    }
  }
  return { rates: Object.fromEntries(FIELDS.map((k) => [k, right[k] / count])), misses };
}

function checkRates(what: string, r: { rates: Record<string, number>; misses: string[] }): void {
  for (const k of FIELDS) {
    assert(
      r.rates[k] >= REQUIRED,
      `${what}: ${k} right in ${(r.rates[k] * 100).toFixed(1)}% (< 95%); misses:\n` +
        r.misses.slice(0, 10).join("\n"),
    );
  }
}

Deno.test("classify: reads the world's own clips back (>= 95% per field, both backgrounds)", () => {
  for (const background of ["dark", "paper"] as const) {
    checkRates(`${background} 64x64`, accuracy(216, { background, size: 64, frames: 8 }));
    checkRates(`${background} 32x32`, accuracy(108, { background, size: 32, frames: 6 }));
  }
});

Deno.test("classify: reads GIF-encoded-then-decoded clips back (>= 95% per field)", () => {
  const viaGif = (frames: Frame[]) => decodeGif(encodeGif(frames, { fps: 8 })).frames;
  for (const background of ["dark", "paper"] as const) {
    checkRates(
      `${background} via GIF`,
      accuracy(72, { background, size: 64, frames: 8, via: viaGif }),
    );
  }
});

Deno.test("classify: each palette colour is its own nearest colour, by hue", () => {
  for (const c of COLOURS) assertEquals(nearestColour(COLOUR_RGB[c]), c);
  // Darker or paler versions keep their hue.
  for (const c of COLOURS) {
    assertEquals(nearestColour(COLOUR_RGB[c].map((v) => v * 0.6)), c, `dark ${c}`);
    assertEquals(nearestColour(COLOUR_RGB[c].map((v) => v * 0.7 + 60)), c, `pale ${c}`);
  }
  assertEquals([hueOf([255, 0, 0]), hueOf([0, 255, 0]), hueOf([0, 0, 255])], [0, 120, 240]);
});

Deno.test("classify: an empty frame has no object; a still object is still", () => {
  const w = 32, h = 32;
  const blank = { data: new Uint8ClampedArray(w * h * 4), width: w, height: h };
  for (let p = 0; p < w * h; p++) blank.data.set([...DARK_RGB, 255], p * 4);
  const m = measureFrame(blank);
  assertEquals([m.objects, m.area, m.centre], [0, 0, null]);
  const c = classifyAnimation([blank, blank]);
  assertEquals([c.colour, c.shape, c.motion, c.background], [null, null, null, "dark"]);
  const frame = renderClip(3, { frames: 1, colour: "yellow", shape: "square", width: w, height: h })
    .frames[0];
  const still = classifyAnimation([frame, frame, frame]);
  assertEquals([still.colour, still.shape, still.motion, still.objects], [
    "yellow",
    "square",
    "still",
    1,
  ]);
});

Deno.test("classify: two objects are counted as two", () => {
  const a = renderClip(1, { frames: 1, colour: "red", shape: "square", motion: "moving left" });
  const b = renderClip(2, { frames: 1, colour: "red", shape: "square", motion: "moving left" });
  const [fa, fb] = [a.frames[0], b.frames[0]];
  // Overlay b's object onto a: take every pixel of b that is not background.
  const data = fa.data.slice();
  for (let p = 0; p < data.length; p += 4) {
    if (fb.data[p] !== DARK_RGB[0]) data.set(fb.data.subarray(p, p + 4), p);
  }
  const [ca, cb] = [a.truth.centres[0], b.truth.centres[0]];
  const apart = Math.abs(ca[0] - cb[0]) > a.truth.sizes[0] + 2 ||
    Math.abs(ca[1] - cb[1]) > a.truth.sizes[0] + 2;
  assert(apart, "seeds 1 and 2 should draw squares apart (pick other seeds)");
  assertEquals(measureFrame({ data, width: 64, height: 64 }).objects, 2);
});
