import { assert, assertEquals } from "../assert.ts";
import {
  allPrompts,
  COLOUR_RGB,
  COLOURS,
  DARK_RGB,
  MARGIN,
  MOTIONS,
  parsePrompt,
  promptOf,
  renderClip,
  renderStill,
  SHAPES,
  WorldRng,
} from "../../tools/demo/world.ts";

const SIZE = { width: 32, height: 32 };

Deno.test("world: one seed gives the same pixels, another seed different ones", () => {
  for (const background of ["dark", "paper"] as const) {
    const a = renderClip(11, { background, frames: 4, ...SIZE });
    const b = renderClip(11, { background, frames: 4, ...SIZE });
    const c = renderClip(12, { background, frames: 4, ...SIZE });
    assertEquals(a.caption, b.caption);
    assertEquals(a.truth, b.truth);
    for (let t = 0; t < 4; t++) assertEquals([...a.frames[t].data], [...b.frames[t].data]);
    assert(
      a.frames[0].data.some((v, i) => v !== c.frames[0].data[i]),
      `${background}: seeds 11 and 12 drew the same frame`,
    );
  }
  assertEquals(new WorldRng(3).next(), new WorldRng(3).next());
});

Deno.test("world: every colour, shape and motion renders as its prompt says", () => {
  for (const colour of COLOURS) {
    for (const shape of SHAPES) {
      for (const motion of MOTIONS) {
        const frames = 4;
        const { frames: fs, caption, truth } = renderClip(7, {
          colour,
          shape,
          motion,
          frames,
          ...SIZE,
        });
        const what = caption;
        assertEquals(caption, `a ${colour} ${shape} ${motion}`);
        assertEquals([truth.colour, truth.shape, truth.motion, truth.background], [
          colour,
          shape,
          motion,
          "dark",
        ]);
        assertEquals([fs.length, truth.centres.length, truth.sizes.length], [
          frames,
          frames,
          frames,
        ]);
        // The flat colour appears, exactly, in every frame.
        const [r, g, b] = COLOUR_RGB[colour];
        for (const f of fs) {
          let hits = 0;
          for (let p = 0; p < f.data.length; p += 4) {
            if (f.data[p] === r && f.data[p + 1] === g && f.data[p + 2] === b) hits++;
          }
          assert(hits >= 4, `${what}: only ${hits} pixels of its colour`);
        }
        const [first, last] = [truth.centres[0], truth.centres[frames - 1]];
        const dx = last[0] - first[0], dy = last[1] - first[1];
        const grow = truth.sizes[frames - 1] / truth.sizes[0];
        const expected = {
          "moving left": dx < -8 && dy === 0 && grow === 1,
          "moving right": dx > 8 && dy === 0 && grow === 1,
          "moving up": dy < -8 && dx === 0 && grow === 1,
          "moving down": dy > 8 && dx === 0 && grow === 1,
          "growing": dx === 0 && dy === 0 && grow >= 2,
          "shrinking": dx === 0 && dy === 0 && grow <= 0.5,
        }[motion];
        assert(expected, `${what}: dx ${dx}, dy ${dy}, size x${grow}`);
      }
    }
  }
});

Deno.test("world: the object stays whole inside the frame, margin kept, in every frame", () => {
  for (let seed = 0; seed < 300; seed++) {
    const w = seed % 2 ? 32 : 48, h = seed % 3 ? 32 : 40;
    const { frames, truth, caption } = renderClip(seed, { frames: 6, width: w, height: h });
    // Analytic extent of each frame's shape from the truth...
    truth.centres.forEach(([x, y], t) => {
      const s = truth.sizes[t];
      const [up, down] = truth.shape === "triangle" ? [2 / 3, 1 / 3] : [0.5, 0.5];
      const box = [x - s / 2, x + s / 2, y - up * s, y + down * s];
      assert(
        box[0] >= MARGIN - 1e-9 && box[1] <= w - MARGIN + 1e-9 && box[2] >= MARGIN - 1e-9 &&
          box[3] <= h - MARGIN + 1e-9,
        `seed ${seed} (${caption}) frame ${t}: box ${box} outside ${w}x${h} less ${MARGIN}`,
      );
    });
    // ...and in the pixels: the outer ring keeps the plain background.
    for (const [t, f] of frames.entries()) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (x >= MARGIN && y >= MARGIN && x < w - MARGIN && y < h - MARGIN) continue;
          const p = (y * w + x) * 4;
          assertEquals(
            [f.data[p], f.data[p + 1], f.data[p + 2]],
            [...DARK_RGB],
            `seed ${seed} frame ${t}: pixel (${x}, ${y}) is not background`,
          );
        }
      }
    }
  }
});

Deno.test("world: edges are anti-aliased (values between background and colour)", () => {
  for (const shape of SHAPES) {
    const { frames } = renderClip(5, { colour: "blue", shape, frames: 1, width: 64, height: 64 });
    const [r, g, b] = COLOUR_RGB.blue;
    let between = 0, full = 0;
    for (let p = 0; p < frames[0].data.length; p += 4) {
      const px = frames[0].data;
      if (px[p] === r && px[p + 1] === g && px[p + 2] === b) full++;
      else if (px[p + 2] > DARK_RGB[2] && px[p + 2] < b) between++;
    }
    assert(full > 20, `${shape}: ${full} full pixels`);
    // A shape's edge pixels are partly covered: at least a few per side.
    assert(between >= 8, `${shape}: only ${between} edge pixels between background and colour`);
  }
});

Deno.test("world: paper is light, textured and seeded; dark is plain", () => {
  const stats = (data: Uint8ClampedArray) => {
    const ring: number[] = [];
    for (let p = 0; p < 32 * 4; p += 4) ring.push(data[p]); // the top row: always background
    const mean = ring.reduce((a, b) => a + b, 0) / ring.length;
    const sd = Math.sqrt(ring.reduce((a, b) => a + (b - mean) ** 2, 0) / ring.length);
    return { mean, sd };
  };
  const paper = renderClip(1, { background: "paper", frames: 2, ...SIZE });
  const { mean, sd } = stats(paper.frames[0].data);
  assert(mean > 200 && sd > 0.8, `paper: mean ${mean}, sd ${sd}`);
  const dark = stats(renderClip(1, { frames: 1, ...SIZE }).frames[0].data);
  assertEquals(dark, { mean: DARK_RGB[0], sd: 0 });
  // The texture is the same paper in every frame of a clip, and another sheet for another seed.
  const top = (d: Uint8ClampedArray) => [...d.subarray(0, 32 * 4)];
  assertEquals(top(paper.frames[0].data), top(paper.frames[1].data));
  const other = renderClip(2, { background: "paper", frames: 1, ...SIZE });
  assert(top(other.frames[0].data).some((v, i) => v !== top(paper.frames[0].data)[i]));
});

Deno.test("world: stills are one clip frame, captioned by colour and shape", () => {
  const still = renderStill(4, { colour: "green", shape: "triangle", ...SIZE });
  assertEquals(still.caption, "a green triangle");
  assertEquals([still.frame.width, still.frame.height], [32, 32]);
  assertEquals([still.truth.centres.length, still.truth.sizes.length], [1, 1]);
  const full = renderStill(4, {
    colour: "green",
    shape: "triangle",
    captionWithMotion: true,
    ...SIZE,
  });
  assertEquals(full.caption, promptOf(full.truth));
  assertEquals([...full.frame.data], [...still.frame.data]);
});

Deno.test("world: prompts read back; bad prompts and options throw", () => {
  assertEquals(allPrompts().length, 108);
  assertEquals(new Set(allPrompts()).size, 108);
  for (const p of allPrompts()) assertEquals(promptOf(parsePrompt(p)), p);
  for (
    const bad of ["a pink circle growing", "a red hexagon growing", "a red circle spinning", ""]
  ) {
    let threw = false;
    try {
      parsePrompt(bad);
    } catch (e) {
      threw = (e as Error).message.includes("parsePrompt");
    }
    assert(threw, `"${bad}" was accepted`);
  }
  for (const bad of [{ frames: 0 }, { width: 8 }, { colour: "pink" as "red" }]) {
    let threw = false;
    try {
      renderClip(1, bad);
    } catch (e) {
      threw = (e as Error).message.startsWith("renderClip: expected");
    }
    assert(threw, `renderClip accepted ${JSON.stringify(bad)}`);
  }
});

Deno.test("world: afterimages trail a moving object, ring a shrinking one, hide under a growing one", () => {
  const at = (f: { data: Uint8ClampedArray; width: number }, x: number, y: number) => {
    const p = (Math.round(y) * f.width + Math.round(x)) * 4;
    return [f.data[p], f.data[p + 1], f.data[p + 2]];
  };
  const dist = (a: number[], b: readonly number[]) => Math.hypot(...a.map((v, i) => v - b[i]));
  for (const motion of MOTIONS) {
    const spec = { colour: "red", shape: "circle", motion, frames: 8 } as const;
    const plain = renderClip(31, spec);
    const blurred = renderClip(31, { ...spec, afterimages: 3 });
    assertEquals(blurred.truth, plain.truth, "the object itself does not move");
    const t = 4, f = blurred.frames[t], [cx, cy] = plain.truth.centres[t];
    const size = plain.truth.sizes[t];
    // Just outside the object, on the side it comes from (or all round for shrinking).
    const behind: Record<string, [number, number]> = {
      "moving left": [cx + 0.6 * size, cy],
      "moving right": [cx - 0.6 * size, cy],
      "moving up": [cx, cy + 0.6 * size],
      "moving down": [cx, cy - 0.6 * size],
      shrinking: [cx + 0.56 * size, cy],
      growing: [cx + 0.6 * size, cy],
    };
    const [bx, by] = behind[motion];
    const ghost = at(f, bx, by), bare = at(plain.frames[t], bx, by);
    assertEquals(dist(bare, DARK_RGB) < 1, true, `${motion}: background there without blur`);
    if (motion === "growing") {
      assert(dist(ghost, DARK_RGB) < 1, `growing: nothing outside the object (${ghost})`);
    } else {
      // A faint copy: between the background and the object's colour.
      const toRed = dist(ghost, COLOUR_RGB.red), toDark = dist(ghost, DARK_RGB);
      assert(toDark > 20 && toRed > 20, `${motion}: a fading copy at (${bx}, ${by}): ${ghost}`);
    }
    // Ahead of a moving object: still background.
    if (motion.startsWith("moving")) {
      const [ax, ay] = [2 * cx - bx, 2 * cy - by];
      assert(dist(at(f, ax, ay), DARK_RGB) < 1, `${motion}: nothing ahead`);
    }
  }
  assertEquals(renderClip(3, { afterimages: 0 }).frames, renderClip(3).frames, "0 = none");
  let error: unknown = null;
  try {
    renderClip(3, { afterimages: 9 });
  } catch (e) {
    error = e;
  }
  assert(error instanceof RangeError && /afterimages/.test(error.message), String(error));
});

Deno.test("world: afterimageSpacing sets how far the trail reaches", () => {
  const spec = { colour: "red", shape: "circle", motion: "moving right", frames: 8 } as const;
  const rgbAt = (f: { data: Uint8ClampedArray; width: number }, x: number, y: number) => {
    const p = (Math.round(y) * f.width + Math.round(x)) * 4;
    return [f.data[p], f.data[p + 1], f.data[p + 2]];
  };
  const plain = renderClip(44, spec);
  const [cx, cy] = plain.truth.centres[7], size = plain.truth.sizes[7];
  // 3 copies 0.22 sizes apart reach 0.66 + 0.5 sizes behind the centre; 0.4 apart, 1.7.
  const x = cx - 1.4 * size;
  const dark = (rgb: number[]) => Math.hypot(...rgb.map((v, i) => v - DARK_RGB[i])) < 1;
  assert(dark(rgbAt(renderClip(44, { ...spec, afterimages: 3 }).frames[7], x, cy)), "default");
  const wide = renderClip(44, { ...spec, afterimages: 3, afterimageSpacing: 0.4 });
  assert(!dark(rgbAt(wide.frames[7], x, cy)), "0.4: a copy 1.4 sizes behind");
  assertEquals(wide.truth, plain.truth);
  for (const bad of [0, -1, 3, NaN]) {
    let error: unknown = null;
    try {
      renderClip(3, { afterimages: 2, afterimageSpacing: bad });
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError && /afterimageSpacing/.test(error.message), `${bad}`);
  }
});

Deno.test("world: objectScale draws larger objects that still fit and still travel", () => {
  const sizes = (scale: number, motion: (typeof MOTIONS)[number]) =>
    Array.from({ length: 40 }, (_, i) => {
      const c = renderClip(300 + i, { motion, frames: 8, objectScale: scale });
      return c.truth;
    });
  assertEquals(
    renderClip(5, { objectScale: 1 }).frames,
    renderClip(5).frames,
    "scale 1 is the default world, pixel for pixel",
  );
  for (const motion of MOTIONS) {
    const plain = sizes(1, motion), big = sizes(1.4, motion);
    const mean = (ts: typeof plain) => ts.reduce((a, t) => a + Math.max(...t.sizes), 0) / ts.length;
    const ratio = mean(big) / mean(plain);
    assert(ratio > 1.25 && ratio < 1.45, `${motion}: 1.4x objects are ${ratio.toFixed(2)}x`);
    for (const t of [...big, ...sizes(2, motion)]) {
      // Whole inside the frame in every frame (extents as the module doc gives them).
      t.centres.forEach(([x, y], f) => {
        const s = t.sizes[f];
        const [up, down] = t.shape === "triangle" ? [2 / 3, 1 / 3] : [0.5, 0.5];
        assert(
          x - s / 2 >= MARGIN - 1e-9 && x + s / 2 <= t.width - MARGIN + 1e-9 &&
            y - up * s >= MARGIN - 1e-9 && y + down * s <= t.height - MARGIN + 1e-9,
          `${motion}: frame ${f} leaves the frame`,
        );
      });
      if (motion.startsWith("moving")) {
        const [a, b] = [t.centres[0], t.centres[7]];
        assert(Math.hypot(b[0] - a[0], b[1] - a[1]) >= 0.12 * t.width, `${motion}: travels`);
      } else {
        const r = t.sizes[7] / t.sizes[0];
        assert(motion === "growing" ? r >= 1.5 : r <= 1 / 1.5, `${motion}: x${r.toFixed(2)}`);
      }
    }
  }
  for (const bad of [0.4, 2.5, NaN]) {
    let error: unknown = null;
    try {
      renderClip(3, { objectScale: bad });
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError && /objectScale/.test(error.message), `${bad}`);
  }
});
