/**
 * Tiled VAE decoding for frames too large to decode at once on an adapter (a 512x512 frame in
 * f32 holds [256, 512, 512] activations, 268 MB, in one tensor; a conv needs all of an image's
 * channels in one binding). The latent is cut into overlapping tiles, each decoded alone, and
 * neighbouring tiles are blended linearly across their overlap, as diffusers'
 * `AutoencoderKL.tiled_decode` (overlap factor 0.25): tile T latent pixels, stride 3T/4, blend
 * 2T output pixels, each tile keeping its first 6T pixels. diffusers tiles by the VAE's
 * sample_size (T = 64, 512 pixels); here T is the largest multiple of 4 whose decode fits. Frames that fit decode whole
 * (exactly); tiles are only used when they do not.
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { EngineLimitError } from "../kernels/gpu/errors.ts";
import type { DType, Tensor } from "../kernels/gpu/tensor.ts";
import type { VaeDecoder } from "./models/vae.ts";
import { slice } from "../kernels/layout.ts";

/** Overlap of neighbouring tiles, as a fraction of the tile (diffusers' tile_overlap_factor). */
const OVERLAP = 0.25;
/** Latent pixels per output pixel side. */
const SCALE = 8;

/**
 * The latent tile size (a multiple of 4) for decoding an `h x w` latent, or null when a whole
 * frame decodes at once: tried on a fresh virtual Gpu with the pipeline's limits (nothing runs,
 * nothing is allocated). Throws an EngineLimitError when not even an 8 x 8 tile fits.
 */
export function pickDecodeTile(
  pipeline: { gpu: Gpu; vae: VaeDecoder; dtype: DType },
  h: number,
  w: number,
): number | null {
  const { vae, dtype } = pipeline;
  const gpu = Gpu.virtual(pipeline.gpu.info);
  gpu.setLimits(pipeline.gpu.limits);
  const fits = (th: number, tw: number) => {
    const z = gpu.empty([1, vae.config.latentChannels, th, tw], dtype, "latent tile");
    try {
      vae.forward(gpu, z).release();
      return true;
    } catch (e) {
      if (e instanceof EngineLimitError) return false;
      throw e;
    } finally {
      z.release();
    }
  };
  if (fits(h, w)) return null;
  // Tiles are multiples of 4 latent pixels (whole strides and blends).
  for (let t = Math.floor((Math.max(h, w) - 1) / 4) * 4; t >= 4; t -= 4) {
    if (fits(Math.min(t, h), Math.min(t, w))) return t;
  }
  throw new EngineLimitError(
    `vae decode: not even a 4x4 latent tile fits this adapter's storage bindings`,
  );
}

interface Tile {
  data: Float32Array;
  h: number;
  w: number;
}

/**
 * Decodes one latent `z [1, C, h, w]` (already divided by the scaling factor) in tiles of
 * `tile` latent pixels; returns the image `[3, 8h, 8w]` on the host, as one decode would.
 */
export async function decodeTiled(
  gpu: Gpu,
  vae: VaeDecoder,
  z: Tensor,
  tile: number,
): Promise<Float32Array> {
  const [, , h, w] = z.shape;
  const stride = Math.floor(tile * (1 - OVERLAP));
  const blend = Math.floor(tile * SCALE * OVERLAP);
  const keep = tile * SCALE - blend;
  const rows: Tile[][] = [];
  for (let i = 0; i < h; i += stride) {
    const row: Tile[] = [];
    for (let j = 0; j < w; j += stride) {
      const th = Math.min(tile, h - i), tw = Math.min(tile, w - j);
      const r = slice(gpu, z, 2, i, i + th);
      const t = slice(gpu, r, 3, j, j + tw);
      r.release();
      const img = vae.forward(gpu, t);
      t.release();
      row.push({ data: await gpu.read(img), h: th * SCALE, w: tw * SCALE });
      img.release();
    }
    rows.push(row);
  }
  const H = h * SCALE, W = w * SCALE;
  const out = new Float32Array(3 * H * W);
  rows.forEach((row, ri) => {
    row.forEach((t, ci) => {
      // In place, in diffusers' order: a tile blends with its (already blended) upper and
      // left neighbours, then keeps its first `keep` rows and columns.
      if (ri > 0) blendRows(rows[ri - 1][ci], t, blend);
      if (ci > 0) blendCols(row[ci - 1], t, blend);
      const y0 = ri * stride * SCALE, x0 = ci * stride * SCALE;
      const hh = Math.min(keep, t.h), ww = Math.min(keep, t.w);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < hh && y0 + y < H; y++) {
          for (let x = 0; x < ww && x0 + x < W; x++) {
            out[(c * H + y0 + y) * W + x0 + x] = t.data[(c * t.h + y) * t.w + x];
          }
        }
      }
    });
  });
  return out;
}

/** b's first rows fade in from a's last rows (diffusers' blend_v). */
function blendRows(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.h, b.h, extent);
  const w = Math.min(a.w, b.w);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < e; y++) {
      const k = y / e;
      for (let x = 0; x < w; x++) {
        const ia = (c * a.h + a.h - e + y) * a.w + x, ib = (c * b.h + y) * b.w + x;
        b.data[ib] = a.data[ia] * (1 - k) + b.data[ib] * k;
      }
    }
  }
}

/** b's first columns fade in from a's last columns (diffusers' blend_h). */
function blendCols(a: Tile, b: Tile, extent: number): void {
  const e = Math.min(a.w, b.w, extent);
  const h = Math.min(a.h, b.h);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < e; x++) {
        const k = x / e;
        const ia = (c * a.h + y) * a.w + a.w - e + x, ib = (c * b.h + y) * b.w + x;
        b.data[ib] = a.data[ia] * (1 - k) + b.data[ib] * k;
      }
    }
  }
}
