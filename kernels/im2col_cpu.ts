/**
 * CPU reference of im2col (the patch matrix of a convolution), used by the kernel tests.
 * @module
 */

import { convOutSize, type Im2colOptions } from "./im2col.ts";

/** Options of {@link im2colCpu}: the launcher's options plus the host tensor's shape. */
export interface Im2colCpuOptions extends Im2colOptions {
  /** x shape [N, C, H, W]. */
  xShape: readonly number[];
}

/**
 * Reference patch matrix [C * kh * kw, cols]: entry (k = (c * kh + ky) * kw + kx, jl) is
 * x[img, c, oy * stride + ky - pad, ox * stride + kx - pad] for output pixel
 * j0 + jl = img * Ho * Wo + oy * Wo + ox, and 0 outside the image or past the last pixel.
 *
 * @example
 * ```ts
 * const col = im2colCpu(x, { xShape: [1, 2, 4, 4], kh: 3, kw: 3, padding: 1 }); // [18, 16]
 * ```
 */
export function im2colCpu(x: Float32Array, o: Im2colCpuOptions): Float32Array {
  const [N, C, H, W] = o.xShape;
  const { kh, kw, stride = 1, padding = 0, j0 = 0 } = o;
  const Ho = convOutSize(H, kh, stride, padding), Wo = convOutSize(W, kw, stride, padding);
  const P = N * Ho * Wo, K = C * kh * kw;
  const cols = o.cols ?? Math.max(4, Math.ceil((P - j0) / 4) * 4);
  const out = new Float32Array(K * cols);
  for (let jl = 0; jl < cols; jl++) {
    const j = j0 + jl;
    if (j >= P) continue;
    const img = Math.floor(j / (Ho * Wo)), q = j % (Ho * Wo);
    const oy = Math.floor(q / Wo), ox = q % Wo;
    for (let c = 0; c < C; c++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) {
          const iy = oy * stride + ky - padding, ix = ox * stride + kx - padding;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
          const k = (c * kh + ky) * kw + kx;
          out[k * cols + jl] = x[((img * C + c) * H + iy) * W + ix];
        }
      }
    }
  }
  return out;
}
