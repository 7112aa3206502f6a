/**
 * CPU reference of conv2d (NCHW, zero padding, float64 accumulation), used by the kernel tests.
 * @module
 */

import { convOutSize } from "./conv2d.ts";

/** Options of {@link conv2dCpu}. */
export interface Conv2dCpuOptions {
  /** x shape [N, C, H, W]. */
  xShape: readonly number[];
  /** weight shape [Cout, C, kh, kw]. */
  wShape: readonly number[];
  bias?: Float32Array;
  stride?: number;
  /** Default (k - 1) / 2. */
  padding?: number;
  /** [N, Cout, Ho, Wo]. */
  residual?: Float32Array;
}

/**
 * Reference convolution; returns out [N, Cout, Ho, Wo] as float32.
 *
 * @example
 * ```ts
 * const y = conv2dCpu(x, w, { xShape: [1, 4, 8, 8], wShape: [8, 4, 3, 3] }); // [1, 8, 8, 8]
 * ```
 */
export function conv2dCpu(
  x: Float32Array,
  weight: Float32Array,
  options: Conv2dCpuOptions,
): Float32Array {
  const [N, C, H, W] = options.xShape;
  const [Cout, Cw, kh, kw] = options.wShape;
  if (Cw !== C) {
    throw new Error(`conv2dCpu: expected weight [Cout, ${C}, kh, kw], got [${options.wShape}]`);
  }
  const stride = options.stride ?? 1;
  const pad = options.padding ?? Math.floor((Math.max(kh, kw) - 1) / 2);
  const Ho = convOutSize(H, kh, stride, pad), Wo = convOutSize(W, kw, stride, pad);
  const out = new Float32Array(N * Cout * Ho * Wo);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = options.bias ? options.bias[co] : 0;
          for (let c = 0; c < C; c++) {
            const xc = (n * C + c) * H, wc = (co * C + c) * kh;
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= W) continue;
                s += x[(xc + iy) * W + ix] * weight[(wc + ky) * kw + kx];
              }
            }
          }
          const o = ((n * Cout + co) * Ho + oy) * Wo + ox;
          out[o] = s + (options.residual ? options.residual[o] : 0);
        }
      }
    }
  }
  return out;
}

/** Gradients of a conv2d. */
export interface Conv2dGrads {
  /** dL/dx [N, C, H, W]. */
  dx: Float32Array;
  /** dL/dweight [Cout, C, kh, kw]. */
  dw: Float32Array;
  /** dL/dbias [Cout], when asked for. */
  db?: Float32Array;
}

/**
 * Reference backward of conv2d (without residual) for the gradient `gy` [N, Cout, Ho, Wo],
 * float64 accumulation: every product `x[n, c, iy, ix] * w[co, c, ky, kx]` of the forward sends
 * `gy[n, co, oy, ox]` times the other factor to each side; `db` sums gy over images and pixels.
 *
 * @example
 * ```ts
 * const { dx, dw, db } = conv2dBackwardCpu(x, w, gy, {
 *   xShape: [1, 2, 5, 5], wShape: [3, 2, 3, 3], bias: true,
 * });
 * ```
 */
export function conv2dBackwardCpu(
  x: Float32Array,
  weight: Float32Array,
  gy: Float32Array,
  options: Omit<Conv2dCpuOptions, "bias" | "residual"> & { bias?: boolean },
): Conv2dGrads {
  const [N, C, H, W] = options.xShape;
  const [Cout, Cw, kh, kw] = options.wShape;
  if (Cw !== C) {
    throw new Error(
      `conv2dBackwardCpu: expected weight [Cout, ${C}, kh, kw], got [${options.wShape}]`,
    );
  }
  const stride = options.stride ?? 1;
  const pad = options.padding ?? Math.floor((Math.max(kh, kw) - 1) / 2);
  const Ho = convOutSize(H, kh, stride, pad), Wo = convOutSize(W, kw, stride, pad);
  const dx = new Float64Array(x.length), dw = new Float64Array(weight.length);
  const db = new Float64Array(Cout);
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          const g = gy[((n * Cout + co) * Ho + oy) * Wo + ox];
          db[co] += g;
          for (let c = 0; c < C; c++) {
            const xc = (n * C + c) * H, wc = (co * C + c) * kh;
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= W) continue;
                const xi = (xc + iy) * W + ix, wi = (wc + ky) * kw + kx;
                dx[xi] += g * weight[wi];
                dw[wi] += g * x[xi];
              }
            }
          }
        }
      }
    }
  }
  const out: Conv2dGrads = { dx: Float32Array.from(dx), dw: Float32Array.from(dw) };
  if (options.bias) out.db = Float32Array.from(db);
  return out;
}
