/**
 * Reads an animation of the demo world back into words: is the background light or dark, what
 * colour and shape is the object, how does it move, how many objects are there. It is the
 * measuring instrument of `deno task bench:demo`, and it is checked on the world's own clips
 * (tests/demo/classify_test.ts), so that its rates can be trusted for generated ones.
 *
 * Per frame:
 * 1. Background: the per-channel median of the frame's outer ring of pixels (the world keeps the
 *    object off the edges). Light when its luma is above {@link LIGHT_LUMA}.
 * 2. Coverage: each pixel's RGB distance `d` from the background. The object's distance is the
 *    median of the distances above half the largest; the noise floor (paper texture, grain) is
 *    the 95th percentile of the ring's distances, at most twice their upper quartile. Coverage `w = (d - floor) / (object - floor)`,
 *    clamped to [0, 1]: for a flat shape blended over its background this is its anti-aliasing
 *    alpha. No pixel farther than {@link MIN_OBJECT_DISTANCE} (or 3x the floor): no object.
 * 3. Objects: 4-connected components of `w >= 0.5` holding at least a tenth of the largest one's
 *    pixels (and {@link MIN_COMPONENT_PIXELS}). Everything below is measured inside the largest
 *    component's bounding box grown by 2 pixels, so texture elsewhere does not count.
 * 4. Area = sum of `w`; centroid = `w`-weighted mean of pixel centres; colour = mean RGB of the
 *    core pixels (`w >= 0.9`, else `w >= 0.5`); extents = sum over columns (rows) of the
 *    column's (row's) largest `w`, which measures anti-aliased edges to a fraction of a pixel.
 *
 * Over the clip:
 * - colour: the palette colour nearest in hue to the median core colour's hue;
 * - shape: the median fill ratio area / (width x height): a circle fills pi/4 ~ 0.785 of its
 *   box, a square 1, the world's triangle 0.5; the cuts are {@link SHAPE_CUTS};
 * - motion: least-squares slopes over the frames of the centroid (as a fraction of the frame
 *   side) and of log(area). The translation score is |displacement| / {@link MIN_TRAVEL}, the
 *   scale score |log(last area / first area)| / {@link MIN_LOG_AREA_CHANGE}; the larger wins when
 *   it reaches 1 (direction from the dominant axis, or the sign of the area change), otherwise
 *   the motion is `"still"`.
 * @module
 */

import type { Frame } from "../../engine/output/frame.ts";
import { type Colour, COLOUR_RGB, COLOURS, type Motion, type Shape } from "./world.ts";

/** Luma (0..255) above which a background counts as light. */
export const LIGHT_LUMA = 128;
/** Smallest RGB distance from the background at which a pixel can be an object's. */
export const MIN_OBJECT_DISTANCE = 40;
/** Smallest component (pixels with coverage >= 0.5) counted as an object. */
export const MIN_COMPONENT_PIXELS = 3;
/** Fill-ratio cuts: below the first a triangle, below the second a circle, else a square. */
export const SHAPE_CUTS = [0.67, 0.9] as const;
/** Centroid travel over the clip, as a fraction of the frame side, that counts as moving. */
export const MIN_TRAVEL = 0.12;
/** |log(area ratio)| over the clip that counts as growing or shrinking (x1.5 in area). */
export const MIN_LOG_AREA_CHANGE: number = Math.log(1.5);
/** Width of the outer ring whose median is taken as the background colour. */
const RING = 2;

/**
 * What {@link measureFrame} finds in one frame.
 *
 * @example
 * ```ts
 * const m: FrameMeasure = measureFrame(frame);
 * if (m.area > 0) console.log(m.centre, m.fill);
 * ```
 */
export interface FrameMeasure {
  /** Background RGB (median of the outer ring). */
  background: [number, number, number];
  /** Objects found (components of coverage >= 0.5). */
  objects: number;
  /** Soft area of the largest object in pixels (0 when none). */
  area: number;
  /** Its coverage-weighted centroid `[x, y]` in pixels (continuous coordinates), or null. */
  centre: [number, number] | null;
  /** Mean RGB of its core pixels, or null. */
  rgb: [number, number, number] | null;
  /** Area / (soft width x soft height), or null. */
  fill: number | null;
}

/**
 * What an animation shows, as {@link classifyAnimation} reads it.
 *
 * @example
 * ```ts
 * const c: Classification = classifyAnimation(frames);
 * c.motion; // e.g. "moving right", or "still"
 * ```
 */
export interface Classification {
  /** `light` or `dark` background (median luma of the per-frame backgrounds). */
  background: "light" | "dark";
  /** Nearest palette colour, or null when no frame shows an object. */
  colour: Colour | null;
  /** Shape from the fill ratio, or null when no frame shows an object. */
  shape: Shape | null;
  /** Motion, `"still"` when too small a change, null when fewer than 2 frames show an object. */
  motion: Motion | "still" | null;
  /** Median object count over the frames. */
  objects: number;
  /** The numbers behind the words. */
  measures: {
    /** Median hue of the object's core colour in degrees, or null. */
    hue: number | null;
    /** Median fill ratio, or null. */
    fill: number | null;
    /** Centroid travel `[dx, dy]` over the clip as fractions of width and height, or null. */
    travel: [number, number] | null;
    /** log(last area / first area) from the fitted slope, or null. */
    logAreaChange: number | null;
    /** Frames in which an object was found. */
    framesWithObject: number;
  };
}

/**
 * One animation scored against what was asked: each field true when the classifier agrees.
 *
 * @example
 * ```ts
 * const s: Score = scoreAnimation(frames, { colour: "red", shape: "circle", motion: "growing", background: "dark" });
 * ```
 */
export interface Score {
  /** Colour right. */
  colour: boolean;
  /** Shape right. */
  shape: boolean;
  /** Motion right. */
  motion: boolean;
  /** Background right (`dark` expects dark, `paper` light). */
  background: boolean;
  /** Exactly one object. */
  oneObject: boolean;
  /** What the classifier read. */
  classification: Classification;
}

const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const quantile = (sorted: Float32Array | number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

const luma = (rgb: readonly number[]): number => 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];

/**
 * The hue of an RGB colour in degrees [0, 360) (0 for greys).
 *
 * @example
 * ```ts
 * hueOf([0, 0, 255]); // 240
 * ```
 */
export function hueOf(rgb: readonly number[]): number {
  const [r, g, b] = rgb;
  const max = Math.max(r, g, b), min = Math.min(r, g, b), c = max - min;
  if (c === 0) return 0;
  const h = max === r ? ((g - b) / c) % 6 : max === g ? (b - r) / c + 2 : (r - g) / c + 4;
  return (h * 60 + 360) % 360;
}

/** The palette's hues, computed once. */
const PALETTE_HUES = COLOURS.map((c) => hueOf(COLOUR_RGB[c]));

/**
 * The palette colour whose hue is nearest (on the circle) to `rgb`'s.
 *
 * @example
 * ```ts
 * nearestColour([200, 60, 50]); // "red"
 * ```
 */
export function nearestColour(rgb: readonly number[]): Colour {
  const h = hueOf(rgb);
  let best = 0, bestD = Infinity;
  PALETTE_HUES.forEach((p, i) => {
    const d = Math.min(Math.abs(h - p), 360 - Math.abs(h - p));
    if (d < bestD) bestD = d, best = i;
  });
  return COLOURS[best];
}

/**
 * Measures one frame (steps 1-4 of the module doc).
 *
 * @example
 * ```ts
 * import { renderClip } from "./world.ts";
 *
 * const m = measureFrame(renderClip(1, { frames: 1 }).frames[0]);
 * m.objects; // 1
 * ```
 */
export function measureFrame(frame: Frame): FrameMeasure {
  const { data, width: w, height: h } = frame;
  const ring: number[][] = [[], [], []];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (x >= RING && x < w - RING && y >= RING && y < h - RING) continue;
      for (let c = 0; c < 3; c++) ring[c].push(data[(y * w + x) * 4 + c]);
    }
  }
  const bg = ring.map(median) as [number, number, number];
  const dist = new Float32Array(w * h);
  for (let p = 0; p < w * h; p++) {
    dist[p] = Math.hypot(data[p * 4] - bg[0], data[p * 4 + 1] - bg[1], data[p * 4 + 2] - bg[2]);
  }
  const ringDist = ring[0].map((_, i) =>
    Math.hypot(ring[0][i] - bg[0], ring[1][i] - bg[1], ring[2][i] - bg[2])
  )
    .sort((a, b) => a - b);
  // Robust to an object reaching into the ring: at most twice the upper quartile.
  const floor = Math.min(quantile(ringDist, 0.95), 2 * quantile(ringDist, 0.75));
  let maxD = 0;
  for (const d of dist) maxD = Math.max(maxD, d);
  const none: FrameMeasure = {
    background: bg,
    objects: 0,
    area: 0,
    centre: null,
    rgb: null,
    fill: null,
  };
  if (maxD < Math.max(MIN_OBJECT_DISTANCE, 3 * floor)) return none;
  const objectD = median([...dist].filter((d) => d > maxD / 2));
  const cover = dist.map((d) => Math.max(0, Math.min(1, (d - floor) / (objectD - floor))));
  const components = componentsOf(cover, w, h);
  if (components.length === 0) return none;
  const largest = components.reduce((a, b) => (b.pixels > a.pixels ? b : a));
  const objects =
    components.filter((c) => c.pixels >= Math.max(MIN_COMPONENT_PIXELS, largest.pixels / 10))
      .length;
  const x0 = Math.max(0, largest.box[0] - 2), x1 = Math.min(w - 1, largest.box[1] + 2);
  const y0 = Math.max(0, largest.box[2] - 2), y1 = Math.min(h - 1, largest.box[3] + 2);
  let area = 0, sx = 0, sy = 0;
  const core = [0, 0, 0, 0], half = [0, 0, 0, 0];
  const colMax = new Float32Array(x1 - x0 + 1), rowMax = new Float32Array(y1 - y0 + 1);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const p = y * w + x, c = cover[p];
      area += c, sx += c * (x + 0.5), sy += c * (y + 0.5);
      colMax[x - x0] = Math.max(colMax[x - x0], c), rowMax[y - y0] = Math.max(rowMax[y - y0], c);
      const sum = c >= 0.9 ? core : c >= 0.5 ? half : null;
      if (!sum) continue;
      for (let k = 0; k < 3; k++) sum[k] += data[p * 4 + k];
      sum[3]++;
    }
  }
  const pick = core[3] > 0 ? core : half;
  const rgb = [0, 1, 2].map((k) => pick[k] / pick[3]) as [number, number, number];
  const extentX = colMax.reduce((a, b) => a + b, 0), extentY = rowMax.reduce((a, b) => a + b, 0);
  return {
    background: bg,
    objects,
    area,
    centre: [sx / area, sy / area],
    rgb,
    fill: area / (extentX * extentY),
  };
}

/** 4-connected components of coverage >= 0.5: pixel counts and boxes [x0, x1, y0, y1]. */
function componentsOf(
  cover: Float32Array,
  w: number,
  h: number,
): { pixels: number; box: [number, number, number, number] }[] {
  const seen = new Uint8Array(w * h);
  const out: { pixels: number; box: [number, number, number, number] }[] = [];
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (seen[start] || cover[start] < 0.5) continue;
    seen[start] = 1;
    stack.push(start);
    const box: [number, number, number, number] = [w, -1, h, -1];
    let pixels = 0;
    while (stack.length) {
      const p = stack.pop()!, x = p % w, y = (p - x) / w;
      pixels++;
      box[0] = Math.min(box[0], x), box[1] = Math.max(box[1], x);
      box[2] = Math.min(box[2], y), box[3] = Math.max(box[3], y);
      for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]]) {
        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
        const q = ny * w + nx;
        if (!seen[q] && cover[q] >= 0.5) seen[q] = 1, stack.push(q);
      }
    }
    out.push({ pixels, box });
  }
  return out;
}

/** Least-squares slope of `values` against their frame indices `ts`. */
function slope(ts: number[], values: number[]): number {
  const mt = ts.reduce((a, b) => a + b, 0) / ts.length;
  const mv = values.reduce((a, b) => a + b, 0) / values.length;
  let num = 0, den = 0;
  ts.forEach((t, i) => (num += (t - mt) * (values[i] - mv), den += (t - mt) ** 2));
  return den === 0 ? 0 : num / den;
}

/**
 * Reads an animation's background, the object's colour, shape and motion, and the object count
 * (see the module doc). Pure: frames in, words and numbers out.
 *
 * @example
 * ```ts
 * import { renderClip } from "./world.ts";
 *
 * const clip = renderClip(3, { colour: "green", shape: "square", motion: "moving up" });
 * const c = classifyAnimation(clip.frames);
 * [c.colour, c.shape, c.motion, c.background]; // ["green", "square", "moving up", "dark"]
 * ```
 */
export function classifyAnimation(frames: readonly Frame[]): Classification {
  if (frames.length === 0) throw new RangeError("classifyAnimation: expected at least one frame");
  const measures = frames.map(measureFrame);
  const background = median(measures.map((m) => luma(m.background))) > LIGHT_LUMA
    ? "light"
    : "dark";
  const objects = median(measures.map((m) => m.objects));
  const seen = measures.map((m, t) => ({ m, t })).filter(({ m }) => m.centre !== null);
  const empty: Classification = {
    background,
    colour: null,
    shape: null,
    motion: null,
    objects,
    measures: { hue: null, fill: null, travel: null, logAreaChange: null, framesWithObject: 0 },
  };
  if (seen.length === 0) return empty;
  const rgb = [0, 1, 2].map((k) => median(seen.map(({ m }) => m.rgb![k])));
  const fill = median(seen.map(({ m }) => m.fill!));
  const shape: Shape = fill < SHAPE_CUTS[0]
    ? "triangle"
    : fill < SHAPE_CUTS[1]
    ? "circle"
    : "square";
  const { width, height } = frames[0];
  let motion: Motion | "still" | null = null;
  let travel: [number, number] | null = null, logAreaChange: number | null = null;
  if (seen.length >= 2) {
    const ts = seen.map(({ t }) => t), span = frames.length - 1;
    travel = [
      slope(ts, seen.map(({ m }) => m.centre![0] / width)) * span,
      slope(ts, seen.map(({ m }) => m.centre![1] / height)) * span,
    ];
    logAreaChange = slope(ts, seen.map(({ m }) => Math.log(m.area))) * span;
    const move = Math.hypot(...travel) / MIN_TRAVEL;
    const scale = Math.abs(logAreaChange) / MIN_LOG_AREA_CHANGE;
    if (Math.max(move, scale) < 1) motion = "still";
    else if (scale > move) motion = logAreaChange > 0 ? "growing" : "shrinking";
    else if (Math.abs(travel[0]) >= Math.abs(travel[1])) {
      motion = travel[0] > 0 ? "moving right" : "moving left";
    } else motion = travel[1] > 0 ? "moving down" : "moving up";
  }
  return {
    ...empty,
    colour: nearestColour(rgb),
    shape,
    motion,
    measures: { hue: hueOf(rgb), fill, travel, logAreaChange, framesWithObject: seen.length },
  };
}

/**
 * Scores an animation against the prompt and background it was made for.
 *
 * @example
 * ```ts
 * import { renderClip } from "./world.ts";
 *
 * const clip = renderClip(5, { background: "paper" });
 * const s = scoreAnimation(clip.frames, clip.truth);
 * s.colour && s.motion && s.background; // true
 * ```
 */
export function scoreAnimation(
  frames: readonly Frame[],
  expected: { colour: Colour; shape: Shape; motion: Motion; background: "dark" | "paper" },
): Score {
  const c = classifyAnimation(frames);
  return {
    colour: c.colour === expected.colour,
    shape: c.shape === expected.shape,
    motion: c.motion === expected.motion,
    background: c.background === (expected.background === "paper" ? "light" : "dark"),
    oneObject: c.objects === 1,
    classification: c,
  };
}
