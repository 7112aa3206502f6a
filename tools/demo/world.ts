/**
 * The synthetic world the built-in demo models are trained on and measured against
 * (../shared/DESIGN.md "The built-in demo models"): one flat-coloured shape that moves or changes
 * size on a plain dark background (`dark`, the base model) or on a light paper-like texture
 * (`paper`, the `demo:paper` variant). Prompts read `a <colour> <shape> <motion>`.
 *
 * Everything is procedural and seeded (a small PRNG, no downloads): one seed gives the same
 * pixels on every machine. Shapes are anti-aliased by 4 x 4 supersampling, and each is drawn
 * around its centroid, so a growing or shrinking shape's centroid stays put. The object stays
 * whole inside the frame, at least {@link MARGIN} pixels from every edge, in every frame.
 *
 * Coordinates are continuous: pixel `(i, j)` covers `[i, i + 1) x [j, j + 1)`, so the centre of a
 * 64 x 64 frame is `(32, 32)`. A shape's `size` is a circle's diameter, a square's side and a
 * triangle's base (= its height; it points up).
 *
 * Stills for the text-to-image stage ({@link renderStill}) are one frame drawn at a random time of
 * a random clip of that colour and shape, so that stills and clip frames share one distribution
 * of sizes and positions. They are captioned `a <colour> <shape>` (motion is not visible in one
 * frame); `captionWithMotion` gives the full prompt of the clip the frame came from instead.
 *
 * This lives in tools/ because only build-time programs use it (training-data writers, the
 * demo bench and their tests); the engine ships the trained weights and never draws this world.
 * @module
 */

import type { Frame } from "../../engine/output/frame.ts";
import { DEMO_COLOURS, DEMO_MOTIONS, DEMO_SHAPES } from "../../weights/demo.ts";

/** The colour, shape and motion words: the demo vocabulary's (weights/demo.ts), in its order. */
export const COLOURS = DEMO_COLOURS;
/** The shape words. */
export const SHAPES = DEMO_SHAPES;
/** The motion phrases. */
export const MOTIONS = DEMO_MOTIONS;
/** The two backgrounds: `dark` (the base model's world) and `paper` (`demo:paper`'s). */
export const BACKGROUNDS = ["dark", "paper"] as const;

/**
 * A colour word of the world.
 *
 * @example
 * ```ts
 * const c: Colour = "orange";
 * ```
 */
export type Colour = typeof COLOURS[number];
/**
 * A shape word of the world.
 *
 * @example
 * ```ts
 * const s: Shape = "triangle";
 * ```
 */
export type Shape = typeof SHAPES[number];
/**
 * A motion phrase of the world.
 *
 * @example
 * ```ts
 * const m: Motion = "moving up";
 * ```
 */
export type Motion = typeof MOTIONS[number];
/**
 * A background of the world.
 *
 * @example
 * ```ts
 * const b: Background = "paper";
 * ```
 */
export type Background = typeof BACKGROUNDS[number];

/**
 * The RGB of each colour: saturated, with hues about 0, 27, 55, 128, 224 and 278 degrees.
 *
 * @example
 * ```ts
 * COLOUR_RGB.blue; // [40, 90, 230]
 * ```
 */
export const COLOUR_RGB: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [230, 40, 40],
  orange: [250, 125, 20],
  yellow: [240, 220, 20],
  green: [40, 190, 60],
  blue: [40, 90, 230],
  purple: [150, 50, 210],
};

/** The dark background's flat RGB. */
export const DARK_RGB = [22, 22, 26] as const;
/** The paper background's mean RGB (texture varies around it). */
export const PAPER_RGB = [236, 230, 214] as const;
/** Pixels kept free between the object and every edge of the frame. */
export const MARGIN = 1;
/** Subsamples per pixel side for anti-aliasing (4 x 4 = 16 per pixel). */
const SUPERSAMPLE = 4;

/**
 * What a clip shows.
 *
 * @example
 * ```ts
 * const spec: ClipSpec = { colour: "red", shape: "circle", motion: "moving right", background: "dark" };
 * ```
 */
export interface ClipSpec {
  /** The object's colour. */
  colour: Colour;
  /** The object's shape. */
  shape: Shape;
  /** How it moves. */
  motion: Motion;
  /** What it is drawn on. */
  background: Background;
}

/**
 * Where the object is in every frame of a rendered clip, beside what the clip shows.
 *
 * @example
 * ```ts
 * const { truth } = renderClip(1, { frames: 4 });
 * truth.centres[0]; // [x, y] of frame 0's centroid, in pixels
 * ```
 */
export interface ClipTruth extends ClipSpec {
  /** Frame width in pixels. */
  width: number;
  /** Frame height in pixels. */
  height: number;
  /** The object's centroid per frame, `[x, y]` in pixels (continuous coordinates). */
  centres: [number, number][];
  /** The object's size per frame in pixels (diameter, side, or triangle base = height). */
  sizes: number[];
}

/**
 * A rendered clip: RGBA frames, the prompt that describes it and where the object is.
 *
 * @example
 * ```ts
 * const clip: WorldClip = renderClip(7, { colour: "blue", motion: "growing" });
 * clip.caption; // "a blue <shape> growing"
 * ```
 */
export interface WorldClip {
  /** The frames, opaque RGBA. */
  frames: Frame[];
  /** `a <colour> <shape> <motion>`. */
  caption: string;
  /** The ground truth. */
  truth: ClipTruth;
}

/**
 * A rendered still: one frame, its caption and the clip frame it was drawn as.
 *
 * @example
 * ```ts
 * const still: WorldStill = renderStill(3, { shape: "square" });
 * still.caption; // "a <colour> square"
 * ```
 */
export interface WorldStill {
  /** The image, opaque RGBA. */
  frame: Frame;
  /** `a <colour> <shape>` (or the full prompt with `captionWithMotion`). */
  caption: string;
  /** The ground truth of the one frame (`centres` and `sizes` have one entry). */
  truth: ClipTruth;
}

/**
 * Options of {@link renderClip}: what to draw (random from the seed where omitted) and how big.
 *
 * @example
 * ```ts
 * const options: RenderOptions = { colour: "green", frames: 8, width: 64, height: 64 };
 * ```
 */
export interface RenderOptions extends Partial<ClipSpec> {
  /** Frames per clip (default 16). */
  frames?: number;
  /** Width in pixels (default 64, at least 16). */
  width?: number;
  /** Height in pixels (default 64, at least 16). */
  height?: number;
  /**
   * Motion blur as a long exposure records it: this many fading copies of the object where it
   * was just before each frame (default 0, none). A moving object trails copies behind it
   * (spaced by {@link AFTERIMAGE_SPACING} of its size), a shrinking one is ringed by its larger
   * past sizes, a growing one's smaller past sizes hide under it. One frame then shows how the
   * object moves, as real video frames do; without it the motion words are invisible in a still.
   */
  afterimages?: number;
  /**
   * How far apart afterimages are, as a fraction of the object's size (or of its size step);
   * default {@link AFTERIMAGE_SPACING}. Wider trails stay visible after 8x downsampling.
   */
  afterimageSpacing?: number;
  /**
   * How big objects are drawn, as a multiple of the world's sizes (default 1; in [0.5, 2]).
   * Sizes stay capped (a moving object at half the frame side, a growing or shrinking one at
   * 0.75) so that the object fits and a moving one still travels. After the VAE's 8x
   * downsampling a 64 x 64 frame is 8 x 8 latent pixels: at scale 1 an object spans about 2 of
   * them, too few for its shape.
   */
  objectScale?: number;
}

/**
 * Options of {@link renderStill}.
 *
 * @example
 * ```ts
 * const options: StillOptions = { background: "paper", captionWithMotion: true };
 * ```
 */
export interface StillOptions extends Omit<RenderOptions, "frames"> {
  /** Caption the still with its clip's full prompt, motion included (default false). */
  captionWithMotion?: boolean;
}

/** How far apart afterimages are, as a fraction of the object's size (or of its size step). */
export const AFTERIMAGE_SPACING = 0.22;
/** Opacity of the first afterimage; each further one fades by the same step. */
const AFTERIMAGE_ALPHA = 0.42;

/** Smallest frame side drawn (the shapes are at least ~16% of it). */
const MIN_SIDE = 16;
/** Sizes of a moving object, as fractions of the shorter frame side. */
const MOVING_SIZE = [0.2, 0.34] as const;
/** Distance travelled over a clip, as a fraction of the frame side along the motion. */
const TRAVEL = [0.3, 0.55] as const;
/** The small end of a growing or shrinking object, as a fraction of the shorter side. */
const SCALING_SMALL = [0.16, 0.24] as const;
/** How many times larger the big end is than the small end. */
const SCALING_FACTOR = [2, 2.8] as const;
/** The largest size a growing object reaches, as a fraction of the shorter side. */
const SCALING_MAX = 0.7;
/** Whatever the object scale: the largest moving object, and the largest a scaling one gets. */
const SCALED_CAPS = { moving: 0.5, scaling: 0.75 } as const;

/**
 * A small seeded PRNG (mulberry32): `next()` gives uniform floats in [0, 1).
 *
 * @example
 * ```ts
 * const rng = new WorldRng(5);
 * rng.next(); // the same number for seed 5 every time
 * rng.pick(["a", "b"]);
 * ```
 */
export class WorldRng {
  #state: number;

  /** Seeds the generator from any integer (or a string, hashed). */
  constructor(seed: number | string) {
    this.#state = typeof seed === "number" ? mix32(seed >>> 0, Math.floor(seed / 2 ** 32)) : 0;
    if (typeof seed === "string") {
      for (let i = 0; i < seed.length; i++) this.#state = mix32(this.#state, seed.charCodeAt(i));
    }
  }

  /** A uniform float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element of `list`, uniformly. */
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)];
  }
}

/** Mixes two 32-bit words into one (murmur3's finaliser over a combination). */
function mix32(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b | 0, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The prompt of a clip: `a <colour> <shape> <motion>` (the background is the model's, not the
 * prompt's).
 *
 * @example
 * ```ts
 * promptOf({ colour: "red", shape: "circle", motion: "moving right" }); // "a red circle moving right"
 * ```
 */
export function promptOf(spec: Pick<ClipSpec, "colour" | "shape" | "motion">): string {
  return `a ${spec.colour} ${spec.shape} ${spec.motion}`;
}

/**
 * Reads a prompt of the world back into its parts (`an orange ...` is read too); throws on
 * anything else.
 *
 * @example
 * ```ts
 * parsePrompt("a red circle moving right"); // { colour: "red", shape: "circle", motion: "moving right" }
 * ```
 */
export function parsePrompt(prompt: string): Pick<ClipSpec, "colour" | "shape" | "motion"> {
  const m = /^an? (\w+) (\w+) (.+)$/.exec(prompt.trim());
  const [colour, shape, motion] = m ? [m[1], m[2], m[3]] : [];
  if (
    !COLOURS.includes(colour as Colour) || !SHAPES.includes(shape as Shape) ||
    !MOTIONS.includes(motion as Motion)
  ) {
    throw new RangeError(
      `parsePrompt: expected "a <colour> <shape> <motion>" with colour ${COLOURS.join("|")}, ` +
        `shape ${SHAPES.join("|")}, motion ${MOTIONS.join("|")}; got "${prompt}"`,
    );
  }
  return { colour: colour as Colour, shape: shape as Shape, motion: motion as Motion };
}

/**
 * Every prompt of the world (6 colours x 3 shapes x 6 motions = 108), colour-major.
 *
 * @example
 * ```ts
 * allPrompts().length; // 108
 * ```
 */
export function allPrompts(): string[] {
  return COLOURS.flatMap((colour) =>
    SHAPES.flatMap((shape) => MOTIONS.map((motion) => promptOf({ colour, shape, motion })))
  );
}

/** How far a shape reaches from its centroid: [left, right, up, down] as multiples of size. */
function extents(shape: Shape): [number, number, number, number] {
  return shape === "triangle" ? [0.5, 0.5, 2 / 3, 1 / 3] : [0.5, 0.5, 0.5, 0.5];
}

/** The range of centroid positions along one axis that keeps a shape of `size` inside. */
function centreRange(side: number, size: number, before: number, after: number): [number, number] {
  return [MARGIN + before * size, side - MARGIN - after * size];
}

/** Checks the sizes and fills in defaults. */
function checkedSize(options: RenderOptions, op: string): [number, number, number] {
  const frames = options.frames ?? 16, width = options.width ?? 64, height = options.height ?? 64;
  if (!Number.isInteger(frames) || frames < 1) {
    throw new RangeError(`${op}: expected frames to be an integer >= 1, got ${frames}`);
  }
  for (const [name, v] of [["width", width], ["height", height]] as const) {
    if (!Number.isInteger(v) || v < MIN_SIDE) {
      throw new RangeError(`${op}: expected ${name} to be an integer >= ${MIN_SIDE}, got ${v}`);
    }
  }
  for (
    const [name, list] of [["colour", COLOURS], ["shape", SHAPES], ["motion", MOTIONS], [
      "background",
      BACKGROUNDS,
    ]] as const
  ) {
    const v = options[name];
    if (v !== undefined && !(list as readonly string[]).includes(v)) {
      throw new RangeError(`${op}: expected ${name} to be one of ${list.join(", ")}, got "${v}"`);
    }
  }
  return [frames, width, height];
}

/**
 * Draws one clip. Everything `options` leaves out (colour, shape, motion, background: `dark`) and
 * the size, start position and speed are drawn from `seed`: the same seed and options give the
 * same pixels.
 *
 * @example
 * ```ts
 * const { frames, caption, truth } = renderClip(42, { colour: "red", shape: "circle", motion: "moving right" });
 * frames.length; // 16 frames of 64 x 64 RGBA
 * truth.centres[15][0] > truth.centres[0][0]; // true
 * ```
 */
export function renderClip(seed: number, options: RenderOptions = {}): WorldClip {
  const [n, width, height] = checkedSize(options, "renderClip");
  const rng = new WorldRng(seed);
  const spec: ClipSpec = {
    colour: options.colour ?? rng.pick(COLOURS),
    shape: options.shape ?? rng.pick(SHAPES),
    motion: options.motion ?? rng.pick(MOTIONS),
    background: options.background ?? "dark",
  };
  const scale = options.objectScale ?? 1;
  if (!(scale >= 0.5 && scale <= 2)) {
    throw new RangeError(`renderClip: expected objectScale in [0.5, 2], got ${scale}`);
  }
  const { centres, sizes } = trajectory(spec, n, width, height, rng, scale);
  const backdrop = drawBackground(spec.background, width, height, rng);
  const ghosts = options.afterimages ?? 0;
  if (!Number.isInteger(ghosts) || ghosts < 0 || ghosts > 8) {
    throw new RangeError(`renderClip: expected afterimages to be an integer 0..8, got ${ghosts}`);
  }
  const spacing = options.afterimageSpacing ?? AFTERIMAGE_SPACING;
  if (!(spacing > 0 && spacing <= 2)) {
    throw new RangeError(`renderClip: expected afterimageSpacing in (0, 2], got ${spacing}`);
  }
  const frames = centres.map((c, t) => {
    const data = backdrop.slice();
    // Oldest (faintest) first, so that newer copies and the object cover them.
    for (let k = ghosts; k >= 1; k--) {
      const { centre, size } = afterimage(spec.motion, c, sizes[t], spacing * k);
      drawShape(data, width, height, {
        shape: spec.shape,
        rgb: COLOUR_RGB[spec.colour],
        centre,
        size,
        alpha: AFTERIMAGE_ALPHA * (1 - (k - 1) / ghosts),
      });
    }
    drawShape(data, width, height, {
      shape: spec.shape,
      rgb: COLOUR_RGB[spec.colour],
      centre: c,
      size: sizes[t],
    });
    return { data, width, height };
  });
  return { frames, caption: promptOf(spec), truth: { ...spec, width, height, centres, sizes } };
}

/**
 * Draws one still for the text-to-image stage: frame `t` (random) of the clip `seed` would draw,
 * captioned `a <colour> <shape>` (see the module doc).
 *
 * @example
 * ```ts
 * const { frame, caption } = renderStill(9, { colour: "purple", shape: "triangle" });
 * caption; // "a purple triangle"
 * ```
 */
export function renderStill(seed: number, options: StillOptions = {}): WorldStill {
  const frames = 16;
  const t = new WorldRng(`still ${seed}`).int(frames);
  const clip = renderClip(seed, { ...options, frames });
  const { truth } = clip;
  return {
    frame: clip.frames[t],
    caption: options.captionWithMotion ? clip.caption : `a ${truth.colour} ${truth.shape}`,
    truth: { ...truth, centres: [truth.centres[t]], sizes: [truth.sizes[t]] },
  };
}

/** Where an afterimage `d` object sizes (or size steps) back from `centre` with `size` is drawn. */
function afterimage(
  motion: Motion,
  centre: [number, number],
  size: number,
  d: number,
): { centre: [number, number]; size: number } {
  switch (motion) {
    case "moving left":
      return { centre: [centre[0] + d * size, centre[1]], size };
    case "moving right":
      return { centre: [centre[0] - d * size, centre[1]], size };
    case "moving up":
      return { centre: [centre[0], centre[1] + d * size], size };
    case "moving down":
      return { centre: [centre[0], centre[1] - d * size], size };
    case "growing":
      return { centre, size: size / (1 + d) };
    default:
      return { centre, size: size * (1 + d) };
  }
}

/** Centroid and size of the object in each of `n` frames, moving at constant speed. */
function trajectory(
  spec: ClipSpec,
  n: number,
  width: number,
  height: number,
  rng: WorldRng,
  scale: number,
): { centres: [number, number][]; sizes: number[] } {
  const side = Math.min(width, height);
  const sized = (range: readonly [number, number]) => rng.uniform(...range) * scale;
  const [left, right, up, down] = extents(spec.shape);
  const progress = (t: number) => (n === 1 ? 0 : t / (n - 1));
  if (spec.motion === "growing" || spec.motion === "shrinking") {
    const maxBig = Math.min(SCALED_CAPS.scaling, SCALING_MAX * scale);
    const small = side * Math.min(sized(SCALING_SMALL), maxBig / SCALING_FACTOR[0]);
    const big = Math.min(side * maxBig, small * rng.uniform(...SCALING_FACTOR));
    const [x0, x1] = centreRange(width, big, left, right);
    const [y0, y1] = centreRange(height, big, up, down);
    const x = rng.uniform(x0, x1), y = rng.uniform(y0, y1);
    const [from, to] = spec.motion === "growing" ? [small, big] : [big, small];
    const sizes = Array.from({ length: n }, (_, t) => from + (to - from) * progress(t));
    return { centres: sizes.map(() => [x, y]), sizes };
  }
  const size = side * Math.min(SCALED_CAPS.moving, sized(MOVING_SIZE));
  const horizontal = spec.motion === "moving left" || spec.motion === "moving right";
  const sign = spec.motion === "moving right" || spec.motion === "moving down" ? 1 : -1;
  const [xr, yr] = [centreRange(width, size, left, right), centreRange(height, size, up, down)];
  const [along, across] = horizontal ? [xr, yr] : [yr, xr];
  const room = along[1] - along[0];
  const travel = Math.min(room, (horizontal ? width : height) * rng.uniform(...TRAVEL));
  const start = along[0] + rng.uniform(0, room - travel) + (sign < 0 ? travel : 0);
  const other = rng.uniform(across[0], across[1]);
  const centres = Array.from({ length: n }, (_, t): [number, number] => {
    const a = start + sign * travel * progress(t);
    return horizontal ? [a, other] : [other, a];
  });
  return { centres, sizes: centres.map(() => size) };
}

/** The backdrop as RGBA: flat dark, or paper (seeded value noise, grain and fibres). */
function drawBackground(
  background: Background,
  width: number,
  height: number,
  rng: WorldRng,
): Uint8ClampedArray {
  const data = new Uint8ClampedArray(width * height * 4);
  if (background === "dark") {
    for (let p = 0; p < width * height; p++) data.set([...DARK_RGB, 255], p * 4);
    return data;
  }
  const shade = new Float32Array(width * height);
  for (const [cell, amplitude] of [[9, 5], [3.5, 2.5]] as const) {
    addValueNoise(shade, width, height, { cell, amplitude }, rng);
  }
  for (let p = 0; p < shade.length; p++) shade[p] += rng.uniform(-1.5, 1.5);
  const fibres = Math.round((width * height) / 300);
  for (let f = 0; f < fibres; f++) addFibre(shade, width, height, rng);
  for (let p = 0; p < width * height; p++) {
    const s = shade[p];
    data[p * 4] = PAPER_RGB[0] + s;
    data[p * 4 + 1] = PAPER_RGB[1] + s;
    data[p * 4 + 2] = PAPER_RGB[2] + s * 1.1;
    data[p * 4 + 3] = 255;
  }
  return data;
}

/** Adds smooth value noise in [-amplitude, amplitude] on a lattice of `cell` pixels. */
function addValueNoise(
  out: Float32Array,
  width: number,
  height: number,
  o: { cell: number; amplitude: number },
  rng: WorldRng,
): void {
  const gw = Math.ceil(width / o.cell) + 2, gh = Math.ceil(height / o.cell) + 2;
  const lattice = Float32Array.from({ length: gw * gh }, () => rng.uniform(-1, 1));
  const smooth = (t: number) => t * t * (3 - 2 * t);
  for (let y = 0; y < height; y++) {
    const gy = (y + 0.5) / o.cell, j = Math.floor(gy), ty = smooth(gy - j);
    for (let x = 0; x < width; x++) {
      const gx = (x + 0.5) / o.cell, i = Math.floor(gx), tx = smooth(gx - i);
      const at = (a: number, b: number) => lattice[(j + b) * gw + i + a];
      const top = at(0, 0) + (at(1, 0) - at(0, 0)) * tx;
      const bottom = at(0, 1) + (at(1, 1) - at(0, 1)) * tx;
      out[y * width + x] += o.amplitude * (top + (bottom - top) * ty);
    }
  }
}

/** Darkens a short, slightly faint anti-aliased line segment: a paper fibre. */
function addFibre(out: Float32Array, width: number, height: number, rng: WorldRng): void {
  const x0 = rng.uniform(0, width), y0 = rng.uniform(0, height);
  const angle = rng.uniform(0, Math.PI), length = rng.uniform(3, 10);
  const dx = Math.cos(angle) * length, dy = Math.sin(angle) * length;
  const depth = rng.uniform(6, 14);
  const xa = Math.max(0, Math.floor(Math.min(x0, x0 + dx) - 1));
  const xb = Math.min(width - 1, Math.ceil(Math.max(x0, x0 + dx) + 1));
  const ya = Math.max(0, Math.floor(Math.min(y0, y0 + dy) - 1));
  const yb = Math.min(height - 1, Math.ceil(Math.max(y0, y0 + dy) + 1));
  for (let y = ya; y <= yb; y++) {
    for (let x = xa; x <= xb; x++) {
      const px = x + 0.5 - x0, py = y + 0.5 - y0;
      const t = Math.max(0, Math.min(1, (px * dx + py * dy) / (length * length)));
      const d = Math.hypot(px - t * dx, py - t * dy);
      out[y * width + x] -= depth * Math.max(0, Math.min(1, 1 - d));
    }
  }
}

/** Whether the point (px, py) lies inside the shape. */
function inside(shape: Shape, px: number, py: number, size: number): boolean {
  const h = size / 2;
  if (shape === "circle") return px * px + py * py <= h * h;
  if (shape === "square") return Math.abs(px) <= h && Math.abs(py) <= h;
  // Triangle pointing up, centroid at the origin: apex at -2/3 size, base at +1/3 size.
  const fromApex = py + (2 / 3) * size;
  return fromApex >= 0 && fromApex <= size && Math.abs(px) <= fromApex / 2;
}

/** Blends the shape over `data` with 4 x 4 supersampled coverage. */
function drawShape(
  data: Uint8ClampedArray,
  width: number,
  height: number,
  o: {
    shape: Shape;
    rgb: readonly number[];
    centre: [number, number];
    size: number;
    /** Opacity (default 1). */
    alpha?: number;
  },
): void {
  const [cx, cy] = o.centre;
  const x0 = Math.max(0, Math.floor(cx - o.size)), x1 = Math.min(width - 1, Math.ceil(cx + o.size));
  const y0 = Math.max(0, Math.floor(cy - o.size)),
    y1 = Math.min(height - 1, Math.ceil(cy + o.size));
  const samples = SUPERSAMPLE * SUPERSAMPLE;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      let hits = 0;
      for (let sy = 0; sy < SUPERSAMPLE; sy++) {
        for (let sx = 0; sx < SUPERSAMPLE; sx++) {
          const px = x + (sx + 0.5) / SUPERSAMPLE - cx, py = y + (sy + 0.5) / SUPERSAMPLE - cy;
          if (inside(o.shape, px, py, o.size)) hits++;
        }
      }
      if (hits === 0) continue;
      const a = (o.alpha ?? 1) * hits / samples, p = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) data[p + c] = Math.round(data[p + c] * (1 - a) + o.rgb[c] * a);
    }
  }
}
