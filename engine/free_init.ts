/**
 * FreeInit (Wu et al. 2023, arXiv:2312.07537) as diffusers' `enable_free_init`: after a full
 * denoising pass, the result is re-noised to t = 999 with the pass's initial noise, its low
 * spatio-temporal frequencies kept and its high ones replaced by fresh noise's, and the video is
 * denoised again. This module holds the host side: the frequency filters and the 3-D spectral mix
 * (separable DFTs in float64; latents are small).
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

/** A FreeInit low-pass filter. */
export type FreeInitMethod = "butterworth" | "gaussian" | "ideal" | "box";
/** FreeInit's low-pass filters. */
export const FREE_INIT_METHODS: readonly FreeInitMethod[] = [
  "butterworth",
  "gaussian",
  "ideal",
  "box",
];

/** FreeInit settings (diffusers' `enable_free_init` arguments, camelCase). */
export interface FreeInitOptions {
  /** Denoising passes, the first one included (diffusers' num_iters; default 3). */
  iterations?: number;
  /** Low-pass filter (default "butterworth"). */
  method?: FreeInitMethod;
  /** Butterworth order (default 4). */
  order?: number;
  /** Normalised spatial stop frequency in [0, 1] (default 0.25). */
  spatialStop?: number;
  /** Normalised temporal stop frequency in [0, 1] (default 0.25). */
  temporalStop?: number;
  /** Pass k of n takes floor(steps / n * (k + 1)) steps (default false: every pass all steps). */
  fastSampling?: boolean;
}

/** {@link FreeInitOptions} with every default applied. */
export type ResolvedFreeInit = Required<FreeInitOptions>;

/** diffusers' defaults. */
export const FREE_INIT_DEFAULTS: ResolvedFreeInit = {
  iterations: 3,
  method: "butterworth",
  order: 4,
  spatialStop: 0.25,
  temporalStop: 0.25,
  fastSampling: false,
};

/** Most FreeInit passes a request may ask for. */
export const MAX_FREE_INIT_ITERATIONS = 10;

/**
 * Checks FreeInit settings and fills in the defaults; throws an InputError naming the field.
 *
 * @example
 * ```ts
 * resolveFreeInit({ iterations: 2 }).method; // "butterworth"
 * ```
 */
export function resolveFreeInit(o: unknown): ResolvedFreeInit {
  if (o === null || typeof o !== "object" || Array.isArray(o)) {
    throw new InputError("freeInit must be an object {iterations, method, order, ...}");
  }
  const known = Object.keys(FREE_INIT_DEFAULTS);
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      throw new InputError(
        `freeInit.${k.slice(0, 40)}: unknown field (expected ${known.join(", ")})`,
      );
    }
  }
  const r: ResolvedFreeInit = { ...FREE_INIT_DEFAULTS };
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (r as Record<string, unknown>)[k] = v;
  }
  if (
    !Number.isInteger(r.iterations) || r.iterations < 1 || r.iterations > MAX_FREE_INIT_ITERATIONS
  ) {
    throw new InputError(
      `freeInit.iterations must be an integer from 1 to ${MAX_FREE_INIT_ITERATIONS}, got ${r.iterations}`,
    );
  }
  if (!(FREE_INIT_METHODS as readonly string[]).includes(r.method)) {
    throw new InputError(
      `freeInit.method must be one of ${FREE_INIT_METHODS.join(", ")}, got ${
        JSON.stringify(r.method)
      }`,
    );
  }
  if (!Number.isInteger(r.order) || r.order < 1 || r.order > 16) {
    throw new InputError(`freeInit.order must be an integer from 1 to 16, got ${r.order}`);
  }
  for (const k of ["spatialStop", "temporalStop"] as const) {
    if (typeof r[k] !== "number" || !(r[k] >= 0 && r[k] <= 1)) {
      throw new InputError(`freeInit.${k} must be a number from 0 to 1, got ${r[k]}`);
    }
  }
  if (typeof r.fastSampling !== "boolean") {
    throw new InputError(`freeInit.fastSampling must be true or false, got ${r.fastSampling}`);
  }
  return r;
}

/**
 * The low-pass filter over [frames, h, w] (centred: frequency 0 in the middle, as after
 * fftshift), values in [0, 1]. Butterworth, gaussian and ideal follow diffusers 0.27.2's
 * `_get_free_init_freq_filter` (with its d^2 / d_s^2 and d^2 <= 2 d_s quirks); box follows the
 * original FreeInit repository's `get_box_low_pass_filter`.
 *
 * @example
 * ```ts
 * const mask = freeInitFilter([16, 64, 64], FREE_INIT_DEFAULTS);
 * ```
 */
export function freeInitFilter(
  shape: readonly [number, number, number],
  o: Pick<ResolvedFreeInit, "method" | "order" | "spatialStop" | "temporalStop">,
): Float32Array {
  const [T, H, W] = shape;
  const mask = new Float32Array(T * H * W);
  const ds = o.spatialStop, dt = o.temporalStop;
  if (ds === 0 || dt === 0) return mask;
  if (o.method === "box") {
    const ts = Math.round(Math.floor(H / 2) * ds), tt = Math.round(Math.floor(T / 2) * dt);
    const cf = Math.floor(T / 2), cr = Math.floor(H / 2), cc = Math.floor(W / 2);
    // Python slices clamp at 0 from below (a negative start would wrap; FreeInit's thresholds
    // never exceed the centre).
    for (let t = Math.max(0, cf - tt); t < Math.min(T, cf + tt); t++) {
      for (let y = Math.max(0, cr - ts); y < Math.min(H, cr + ts); y++) {
        for (let x = Math.max(0, cc - ts); x < Math.min(W, cc + ts); x++) {
          mask[(t * H + y) * W + x] = 1;
        }
      }
    }
    return mask;
  }
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const d2 = ((ds / dt) * (2 * t / T - 1)) ** 2 + (2 * y / H - 1) ** 2 + (2 * x / W - 1) ** 2;
        mask[(t * H + y) * W + x] = o.method === "butterworth"
          ? 1 / (1 + (d2 / (ds * ds)) ** o.order)
          : o.method === "gaussian"
          ? Math.exp(-1 / (2 * ds * ds) * d2)
          : d2 <= ds * 2
          ? 1
          : 0;
      }
    }
  }
  return mask;
}

/**
 * FreeInit's spectral mix of `low` and `high`, both [n, T, H, W] (n = videos x channels):
 * real(ifftn(ifftshift(fftshift(fftn(low)) * mask + fftshift(fftn(high)) * (1 - mask)))), the
 * DFTs over the last three dims, `mask` centred as {@link freeInitFilter} makes it.
 *
 * @example
 * ```ts
 * const z = freeInitMix(zt, zRand, mask, 4, [16, 64, 64]);
 * ```
 */
export function freeInitMix(
  low: Float32Array,
  high: Float32Array,
  mask: Float32Array,
  n: number,
  shape: readonly [number, number, number],
): Float32Array {
  const [T, H, W] = shape, size = T * H * W;
  if (low.length !== n * size || high.length !== n * size || mask.length !== size) {
    throw new Error(`freeInitMix: expected ${n} x [${shape}] values and a [${shape}] mask`);
  }
  // The mask in unshifted frequency order: index i of a dim of length m sits at (i + m/2) % m.
  const sh = (i: number, m: number) => (i + Math.floor(m / 2)) % m;
  const weight = new Float64Array(size);
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        weight[(t * H + y) * W + x] = mask[(sh(t, T) * H + sh(y, H)) * W + sh(x, W)];
      }
    }
  }
  const out = new Float32Array(n * size);
  const re = new Float64Array(size), im = new Float64Array(size);
  const re2 = new Float64Array(size), im2 = new Float64Array(size);
  for (let k = 0; k < n; k++) {
    load(low, k * size, re, im);
    dft3(re, im, shape, -1);
    load(high, k * size, re2, im2);
    dft3(re2, im2, shape, -1);
    for (let i = 0; i < size; i++) {
      const m = weight[i];
      re[i] = re[i] * m + re2[i] * (1 - m);
      im[i] = im[i] * m + im2[i] * (1 - m);
    }
    dft3(re, im, shape, 1);
    for (let i = 0; i < size; i++) out[k * size + i] = re[i] / size;
  }
  return out;
}

function load(src: Float32Array, offset: number, re: Float64Array, im: Float64Array): void {
  for (let i = 0; i < re.length; i++) {
    re[i] = src[offset + i];
    im[i] = 0;
  }
}

/** In-place unnormalised DFT over the three dims of [T, H, W] (sign -1 forward, +1 inverse). */
function dft3(re: Float64Array, im: Float64Array, [T, H, W]: readonly number[], sign: number) {
  const dims = [
    { len: T, stride: H * W, lines: H * W, start: (l: number) => l },
    { len: H, stride: W, lines: T * W, start: (l: number) => Math.floor(l / W) * H * W + l % W },
    { len: W, stride: 1, lines: T * H, start: (l: number) => l * W },
  ];
  for (const d of dims) {
    if (d.len === 1) continue;
    const cos = new Float64Array(d.len), sin = new Float64Array(d.len);
    for (let j = 0; j < d.len; j++) {
      cos[j] = Math.cos(2 * Math.PI * j / d.len);
      sin[j] = sign * Math.sin(2 * Math.PI * j / d.len);
    }
    const lr = new Float64Array(d.len), li = new Float64Array(d.len);
    for (let l = 0; l < d.lines; l++) {
      const s = d.start(l);
      for (let j = 0; j < d.len; j++) {
        lr[j] = re[s + j * d.stride];
        li[j] = im[s + j * d.stride];
      }
      for (let u = 0; u < d.len; u++) {
        let ar = 0, ai = 0;
        for (let j = 0; j < d.len; j++) {
          const e = (u * j) % d.len, c = cos[e], sn = sin[e];
          ar += lr[j] * c - li[j] * sn;
          ai += lr[j] * sn + li[j] * c;
        }
        re[s + u * d.stride] = ar;
        im[s + u * d.stride] = ai;
      }
    }
  }
}
