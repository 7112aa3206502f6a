/**
 * The WGSL every kernel shares, written once: storage-dtype aliases, the linear thread and
 * workgroup ids, the activation functions and the workgroup reductions. A shader starts with
 * `${prelude(dtype, { vec, wg, ... })}`; {@link launch1d} is the TypeScript side of
 * `thread_id`.
 *
 * Names the prelude declares (never redeclare them in a shader):
 * - `T`, `T4`: the storage scalar and vec4 (f16 or f32); math is f32.
 * - `V`, `VF`: the unit a kernel loads and stores, `T4` / `vec4<f32>` when `vec`, else `T` / `f32`.
 * - `WG`: threads per workgroup; `thread_id(gid, nwg)`: the global index of a
 *   {@link launch1d} thread; `group_id(wid, nwg)`: the linear index of a `grid1d` workgroup.
 * - with `activations`: `erf`, `silu`, `gelu` (exact, erf form) and `quick_gelu` over `VF`.
 * - with `reductions`: `hsum` / `hmax` (the lanes of a `VF`), `wg_sum` / `wg_max` (over the
 *   workgroup's `WG` threads, every thread gets the result) and their scratch array `red`.
 * @module
 */

import { grid1d, wgslDType } from "./gpu/kernel.ts";
import type { DType } from "./gpu/tensor.ts";

/** Threads per workgroup of 1-D launches unless a kernel says otherwise. */
export const WG_1D = 256;

/** What {@link prelude} declares besides the dtype aliases and ids. */
export interface PreludeOptions {
  /** `V` / `VF` are vec4 (else scalars). Default false. */
  vec?: boolean;
  /** Threads per workgroup (`WG`); a power of two when `reductions`. Default {@link WG_1D}. */
  wg?: number;
  /** Declare `erf`, `silu`, `gelu` and `quick_gelu`. */
  activations?: boolean;
  /** Declare `hsum`, `hmax`, `wg_sum` and `wg_max`. */
  reductions?: boolean;
}

/** The variant of a kernel whose only compile-time choice is vec4 or scalar units. */
export interface VecVariant {
  vec: boolean;
}

/** Cache key of a {@link VecVariant}: "v4" or "s". */
export function vecKey(v: VecVariant): string {
  return v.vec ? "v4" : "s";
}

/**
 * The shared WGSL declarations for a storage dtype (see the module doc).
 *
 * @example
 * ```ts
 * const src = `${prelude("f16", { vec: true, activations: true })}
 * @compute @workgroup_size(WG)
 * fn main(...) { let i = thread_id(gid, nwg); y[i] = V(silu(VF(x[i]))); }`;
 * ```
 */
export function prelude(dtype: DType, options: PreludeOptions = {}): string {
  const { vec = false, wg = WG_1D } = options;
  const parts = [
    `${wgslDType(dtype)}alias V = ${vec ? "T4" : "T"};
alias VF = ${vec ? "vec4<f32>" : "f32"};
const WG = ${wg}u;
fn thread_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }
fn group_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }`,
  ];
  if (options.activations) parts.push(ACTIVATIONS_WGSL);
  if (options.reductions) parts.push(reductionsWgsl(vec));
  return parts.join("\n");
}

/**
 * Activations over `VF`. erf: odd rational minimax approximation on [-4, 4] (|error| < 5e-7 in
 * f32; erf(4) = 1 in f32).
 */
const ACTIVATIONS_WGSL = `fn erf(v: VF) -> VF {
  let x = clamp(v, VF(-4.0), VF(4.0));
  let x2 = x * x;
  var n = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
  n = x2 * n - 2.10102402082508e-06;
  n = x2 * n - 5.69250639462346e-05;
  n = x2 * n - 7.34990630326855e-04;
  n = x2 * n - 2.95459980854025e-03;
  n = x2 * n - 1.60960333262415e-02;
  var d = x2 * -1.45660718464996e-05 - 2.13374055278905e-04;
  d = x2 * d - 1.68282697438203e-03;
  d = x2 * d - 7.37332916720468e-03;
  d = x2 * d - 1.42647390514189e-02;
  return x * n / d;
}
fn silu(v: VF) -> VF { return v / (VF(1.0) + exp(-v)); }
fn gelu(v: VF) -> VF { return 0.5 * v * (VF(1.0) + erf(v * 0.7071067811865476)); }
fn quick_gelu(v: VF) -> VF { return v / (VF(1.0) + exp(-1.702 * v)); }`;

/** A tree reduction over the workgroup through `red`, combining two partials with `combine`. */
function workgroupReduction(name: string, combine: string): string {
  return `fn ${name}(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = ${combine}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

function reductionsWgsl(vec: boolean): string {
  return `fn hsum(v: VF) -> f32 { return ${vec ? "v.x + v.y + v.z + v.w" : "v"}; }
fn hmax(v: VF) -> f32 { return ${vec ? "max(max(v.x, v.y), max(v.z, v.w))" : "v"}; }
var<workgroup> red: array<f32, WG>;
${workgroupReduction("wg_sum", "red[lid] + red[lid + s]")}
${workgroupReduction("wg_max", "max(red[lid], red[lid + s])")}`;
}

/**
 * The bindings of a kernel in the convention of kernels/gpu/kernel.ts: the uniform `p: Params` at
 * 0, then one storage buffer per entry of `storage` (e.g. `"x: array<V>"`) from binding 1, all
 * read-only but the last (the output).
 *
 * @example
 * ```ts
 * bindingsWgsl(["x: array<V>", "y: array<V>"]); // p at 0, x (read) at 1, y (read_write) at 2
 * ```
 */
export function bindingsWgsl(storage: readonly string[]): string {
  const last = storage.length - 1;
  return [
    "@group(0) @binding(0) var<uniform> p: Params;",
    ...storage.map((decl, i) =>
      `@group(0) @binding(${i + 1}) var<storage, ${i === last ? "read_write" : "read"}> ${decl};`
    ),
  ].join("\n");
}

/**
 * The head of a {@link launch1d} entry point (close it with `}`): the thread's index `i`;
 * threads with `i >= p.n` return.
 */
export const MAIN_1D_WGSL = `@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = thread_id(gid, nwg);
  if (i >= p.n) { return; }`;

/**
 * The head of an entry point with one workgroup per item of a `grid1d` grid (close it with `}`):
 * the item's index is named `id` and the thread's `lid`; workgroups with `id >= count` return.
 */
export function mainPerGroupWgsl(id: string, count: string): string {
  return `@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let ${id} = group_id(wid, nwg);
  if (${id} >= ${count}) { return; }`;
}

/**
 * Grid of a 1-D launch of `units` threads in workgroups of `wg` (spread over x and y by
 * `grid1d`); the shader's `thread_id(gid, nwg)` recovers each thread's index, and must ignore
 * those >= `units`.
 *
 * @example
 * ```ts
 * gpu.dispatch(kernel, { dtype, params, bindings, groups: launch1d(n) });
 * ```
 */
export function launch1d(units: number, wg: number = WG_1D): [number, number, number] {
  return grid1d(Math.ceil(units / wg));
}
