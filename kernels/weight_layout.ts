/**
 * Weight layout transforms run once at load by inference stores on software adapters
 * (engine/weight_store.ts): a Linear weight [out, in] transposed to [in, out], and a 3x3
 * convolution weight [out, in, 3, 3] as Winograd F(2x2, 3x3) filters [16, out, in]
 * (kernels/winograd.ts). They write into a given (persistent) tensor, so loading takes no
 * pooled scratch. CPU references: `permuteCpu` (kernels/layout_cpu.ts) and `winogradWeights`.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { defineKernel, Params } from "./gpu/kernel.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { WINOGRAD_POINTS } from "./winograd.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude } from "./wgsl.ts";

const transposeKernel = defineKernel("weight_transpose", ({ dtype }) => /* wgsl */ `
// weight_transpose: 1 w [rows, cols], 2 y [cols, rows]; thread i = output element.
${prelude(dtype)}
struct Params { n: u32, rows: u32, cols: u32 }
${bindingsWgsl(["w: array<T>", "y: array<T>"])}
${MAIN_1D_WGSL}
  let c = i / p.rows;
  let r = i % p.rows;
  y[i] = w[r * p.cols + c];
}`);

const winogradKernel = defineKernel("weight_winograd", ({ dtype }) => /* wgsl */ `
// weight_winograd: 1 w [n, 9] (3x3 filters), 2 u: row p.row of U = G g G^T of each filter
// (points 4 row .. 4 row + 3, [4, n] from element p.base of u), f32 math.
${prelude(dtype)}
struct Params { n: u32, row: u32, base: u32 }
${bindingsWgsl(["w: array<T>", "u: array<T>"])}
${MAIN_1D_WGSL}
  var g: array<f32, 9>;
  for (var k = 0u; k < 9u; k++) { g[k] = f32(w[i * 9u + k]); }
  // Row p.row of G g (G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]).
  var s = vec3<f32>(g[0], g[1], g[2]);
  let mid = vec3<f32>(g[3], g[4], g[5]);
  let low = vec3<f32>(g[6], g[7], g[8]);
  if (p.row == 1u) { s = 0.5 * (s + mid + low); }
  if (p.row == 2u) { s = 0.5 * (s - mid + low); }
  if (p.row == 3u) { s = low; }
  // ... times G^T.
  let o = p.base + i;
  u[o] = T(s.x);
  u[o + p.n] = T(0.5 * (s.x + s.y + s.z));
  u[o + 2u * p.n] = T(0.5 * (s.x - s.y + s.z));
  u[o + 3u * p.n] = T(s.z);
}`);

/**
 * Records `y = w^T` for `w` [rows, cols] into `y` [cols, rows] (same dtype).
 *
 * @example
 * ```ts
 * transposeInto(gpu, w, gpu.reserve([w.shape[1], w.shape[0]], w.dtype));
 * ```
 */
export function transposeInto(gpu: Gpu, w: Tensor, y: Tensor): void {
  const [rows, cols] = w.shape;
  if (w.rank !== 2 || y.rank !== 2 || y.shape[0] !== cols || y.shape[1] !== rows) {
    throw new Error(
      `weight transpose: expected w [rows, cols] and y [cols, rows], got ${fmtShape(w.shape)}, ${
        fmtShape(y.shape)
      }`,
    );
  }
  gpu.dispatch(transposeKernel, {
    dtype: w.dtype,
    params: new Params().u32(rows * cols).u32(rows).u32(cols),
    bindings: [w, y],
    groups: launch1d(rows * cols),
  });
}

/**
 * Records the Winograd filters of `w` [out, in, 3, 3] into `u` [16, out, in] (see
 * `winogradWeights` of kernels/winograd.ts, its CPU reference).
 *
 * @example
 * ```ts
 * winogradFiltersInto(gpu, w, gpu.reserve([16, cout, cin], "f32"));
 * ```
 */
export function winogradFiltersInto(gpu: Gpu, w: Tensor, u: Tensor): void {
  const [cout, cin, kh, kw] = w.shape;
  if (
    w.rank !== 4 || kh !== 3 || kw !== 3 || u.rank !== 3 || u.shape[0] !== WINOGRAD_POINTS ||
    u.shape[1] !== cout || u.shape[2] !== cin
  ) {
    throw new Error(
      `weight winograd: expected w [out, in, 3, 3] and u [16, out, in], got ${fmtShape(w.shape)}, ${
        fmtShape(u.shape)
      }`,
    );
  }
  // A row of the 4x4 transform (4 of the 16 points) per launch: the whole of u may exceed one
  // binding (16 x 1280 x 2560 f32 is 210 MB; lavapipe binds 128 MiB).
  const n = cout * cin;
  const whole = u.byteLength <= gpu.limits.maxStorageBufferBindingSize;
  for (let row = 0; row < 4; row++) {
    gpu.dispatch(winogradKernel, {
      dtype: w.dtype,
      params: new Params().u32(n).u32(row).u32(whole ? 4 * row * n : 0),
      bindings: [w, whole ? u : u.window(WINOGRAD_POINTS, 4 * row, 4)],
      groups: launch1d(n),
    });
  }
}
