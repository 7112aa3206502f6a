/**
 * Live previews while denoising: each step's latents projected to RGB with a linear map, as
 * ComfyUI's and A1111's "latent to RGB" previews do, at the latents' size (1/8 of the frame). The
 * map is not a constant for SD1.5 but fitted to the model's own VAE on first use (probe images of
 * flat colour blocks through its encoder, least squares), so it fits any VAE. It is a preview: a
 * VAE whose latent space is far from linear (the tiny demo's) gives a rough one. Costs one latent
 * readback per step, no decoder pass.
 * @module
 */

import type { Frame } from "./output/frame.ts";
import type { VaeDecoder, VaeEncoder } from "./models/vae.ts";
import type { PipelineParts } from "./load.ts";
import { TorchGenerator } from "./rng.ts";

/** RGB in [-1, 1] = bias + sum_c latent_c * columns[c]. */
export interface LatentRgbMap {
  /** [4][3]: each latent channel's contribution to R, G, B. */
  columns: number[][];
  /** [3]: the colour of an all-zero latent. */
  bias: number[];
}

const cache = new WeakMap<VaeDecoder, Promise<LatentRgbMap>>();

/** Probe images: frames of 64 x 64 pixels in 8 x 8 blocks of random flat colours (seeded). */
const PROBE_FRAMES = 4, PROBE = 8;

/**
 * The latent-to-RGB map of a pipeline's VAE, fitted once per decoder: probe images of random
 * flat colours in 8 x 8 pixel blocks (aligned with the latent grid) go through the VAE encoder,
 * and the map is the least-squares fit (bias and 4 x 3 weights, 256 samples) from each latent
 * pixel (the posterior mean, scaled) to its block's colour. Without an encoder (a pipeline built
 * from weights in memory), random latents are decoded instead and fitted the same way.
 */
export function latentRgbMap(p: PipelineParts): Promise<LatentRgbMap> {
  let m = cache.get(p.vae);
  if (!m) {
    m = p.vaeEncoder ? fitWithEncoder(p, p.vaeEncoder) : fitWithDecoder(p);
    cache.set(p.vae, m);
    m.catch(() => cache.delete(p.vae));
  }
  return m;
}

type Sample = { z: number[]; rgb: number[] };

async function fitWithEncoder(
  p: PipelineParts,
  bind: () => Promise<VaeEncoder>,
): Promise<LatentRgbMap> {
  const encoder = await bind();
  const n = PROBE_FRAMES, side = PROBE * 8, plane = PROBE * PROBE;
  const gen = new TorchGenerator(20240607);
  // Colours spread over the cube [-1, 1]^3 (normal draws squashed by tanh).
  const colours = gen.randn([n, PROBE, PROBE, 3]).map((v) => Math.tanh(v));
  const px = new Float32Array(n * 3 * side * side);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const block = ((i * PROBE + (y >> 3)) * PROBE + (x >> 3)) * 3;
        for (let ch = 0; ch < 3; ch++) {
          px[((i * 3 + ch) * side + y) * side + x] = colours[block + ch];
        }
      }
    }
  }
  const gpu = p.gpu;
  const input = gpu.upload(px, [n, 3, side, side], p.dtype, "preview probe");
  const out = encoder.forward(gpu, input);
  const mean = await gpu.read(out.mean);
  for (const t of [input, out.mean, out.logvar]) t.release();
  const sf = p.vae.config.scalingFactor;
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) {
    for (let q = 0; q < plane; q++) {
      samples.push({
        z: [0, 1, 2, 3].map((c) => sf * mean[(i * 4 + c) * plane + q]),
        rgb: [0, 1, 2].map((ch) => colours[(i * plane + q) * 3 + ch]),
      });
    }
  }
  return fit(samples);
}

async function fitWithDecoder(p: PipelineParts): Promise<LatentRgbMap> {
  const gpu = p.gpu, n = PROBE_FRAMES, plane = PROBE * PROBE;
  const z = new TorchGenerator(20240607).randn([n, 4, PROBE, PROBE]);
  const sf = p.vae.config.scalingFactor;
  const input = gpu.upload(z.map((v) => v / sf), [n, 4, PROBE, PROBE], p.dtype, "preview probe");
  const out = p.vae.forward(gpu, input);
  const px = await gpu.read(out);
  input.release();
  out.release();
  const side = Math.round(Math.sqrt(px.length / (n * 3))), k = side / PROBE;
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < PROBE; y++) {
      for (let x = 0; x < PROBE; x++) {
        samples.push({
          z: [0, 1, 2, 3].map((c) => z[(i * 4 + c) * plane + y * PROBE + x]),
          rgb: [0, 1, 2].map((ch) => {
            let s = 0;
            for (let dy = 0; dy < k; dy++) {
              for (let dx = 0; dx < k; dx++) {
                s += px[((i * 3 + ch) * side + y * k + dy) * side + x * k + dx];
              }
            }
            return s / (k * k);
          }),
        });
      }
    }
  }
  return fit(samples);
}

/** Least squares of rgb = bias + sum_c z_c columns[c] (normal equations). */
function fit(samples: Sample[]): LatentRgbMap {
  const ata = Array.from({ length: 5 }, () => new Array(5).fill(0));
  const atb = Array.from({ length: 5 }, () => [0, 0, 0]);
  for (const { z, rgb } of samples) {
    const row = [1, ...z];
    for (let a = 0; a < 5; a++) {
      for (let b = 0; b < 5; b++) ata[a][b] += row[a] * row[b];
      for (let ch = 0; ch < 3; ch++) atb[a][ch] += row[a] * rgb[ch];
    }
  }
  const w = solve(ata, atb);
  return { bias: w[0], columns: w.slice(1) };
}

/** Solves A X = B (A 5 x 5 symmetric positive definite, B 5 x 3) by Gaussian elimination. */
function solve(a: number[][], b: number[][]): number[][] {
  const n = a.length;
  const m = a.map((row, i) => [...row, ...b[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    const d = m[col][col] || 1e-12;
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r][col] / d;
      for (let c = col; c < m[r].length; c++) m[r][c] -= f * m[col][c];
    }
  }
  return m.map((row, i) => row.slice(n).map((v) => v / (m[i][i] || 1e-12)));
}

/**
 * Latents [videos, 4, frames, h, w] (diffusers' layout) as RGBA preview frames of the first
 * video, `h` x `w` each, scaled up by a whole factor to at least `minSide` pixels.
 */
export function previewFrames(
  latents: Float32Array,
  shape: { frames: number; h: number; w: number },
  map: LatentRgbMap,
  minSide = 64,
): Frame[] {
  const { frames, h, w } = shape;
  const k = Math.max(1, Math.ceil(minSide / Math.max(h, w)));
  const plane = h * w;
  const out: Frame[] = [];
  for (let f = 0; f < frames; f++) {
    const data = new Uint8ClampedArray(h * k * w * k * 4);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const rgb = [...map.bias];
        for (let c = 0; c < 4; c++) {
          const v = latents[(c * frames + f) * plane + y * w + x];
          for (let ch = 0; ch < 3; ch++) rgb[ch] += v * map.columns[c][ch];
        }
        for (let dy = 0; dy < k; dy++) {
          for (let dx = 0; dx < k; dx++) {
            const o = ((y * k + dy) * w * k + x * k + dx) * 4;
            for (let ch = 0; ch < 3; ch++) data[o + ch] = (rgb[ch] + 1) * 127.5;
            data[o + 3] = 255;
          }
        }
      }
    }
    out.push({ data, width: w * k, height: h * k });
  }
  return out;
}
