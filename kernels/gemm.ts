/**
 * The GEMM framework that the GEMM kernels share (kernels/matmul.ts, kernels/conv2d.ts: the
 * workgroup-tiled kernel; kernels/gemm_direct.ts: the software-adapter kernel): the tile and its
 * choice per adapter, the tiled K loop with register prefetch and its k-major operand loader,
 * the epilogue's activation and bindings, the workgroup grid and the operand checks. Each kernel
 * file keeps its own operand loaders, epilogue stores and launcher.
 *
 * Every GEMM shader starts with `prelude(dtype, { vec, wg })` (kernels/wgsl.ts): `V` / `VF` are
 * the output's unit, `WG` the threads per workgroup.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { ceilDiv, defineKernel, grid1d, MAX_GROUPS_PER_DIM, Params } from "./gpu/kernel.ts";
import { type DType, fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, mainPerGroupWgsl, prelude } from "./wgsl.ts";

// ---------------------------------------------------------------- tiles

/** Threads per workgroup of the tiled GEMM (16 x 16). */
export const GEMM_THREADS = 256;

/** A tiled-GEMM tile: BM = 16 * tm output rows, BN = 16 * tn columns, K steps of bk. */
export interface GemmTile {
  /** Output rows per thread: 4 or 8. */
  tm: 4 | 8;
  /** Output columns per thread: 4 or 8 (as vec4s 64 columns apart). */
  tn: 4 | 8;
  /** K depth staged per step: 16 or 32. */
  bk: 16 | 32;
}

let tileOverride: GemmTile | null = null;

/**
 * Forces the tiled GEMM path with one tile for every matmul / linear / conv2d launch (tests cover
 * every tile and the bench compares them); `null` restores the per-adapter choice of
 * {@link pickGemmTile} (and of the path, see kernels/gemm_direct.ts).
 */
export function setGemmTileOverride(tile: GemmTile | null): void {
  tileOverride = tile;
}

/** The tile forced by {@link setGemmTileOverride}, or null. */
export function forcedGemmTile(): GemmTile | null {
  return tileOverride;
}

/**
 * Picks the tile for a `rows x cols` GEMM output. Real GPUs take the 128 x 128 tile (8 x 8 per
 * thread) or 128 x 64 only when there are enough tiles to fill an H100-class GPU (~2 per SM),
 * else 64 x 64. Software adapters, which use the direct path where K and N are divisible by 4,
 * take 128 x 128 for the rest (fewest workgroup-memory reads per FMA there).
 *
 * @example
 * ```ts
 * pickGemmTile(gpu, 4096, 1280); // { tm: 8, tn: 8, bk: 16 } on an H100
 * ```
 */
export function pickGemmTile(gpu: Gpu, rows: number, cols: number): GemmTile {
  if (tileOverride) return tileOverride;
  // Software adapters: the biggest register block wins, except that rows <= 64 (e.g. a conv
  // with 64 output channels) would leave half of a 128-row tile as padding.
  if (gpu.info.isFallback) return rows <= 64 ? { tm: 4, tn: 8, bk: 16 } : { tm: 8, tn: 8, bk: 16 };
  if (ceilDiv(rows, 128) * ceilDiv(cols, 128) >= 264) return { tm: 8, tn: 8, bk: 16 };
  if (ceilDiv(rows, 128) * ceilDiv(cols, 64) >= 264) return { tm: 8, tn: 4, bk: 16 };
  return { tm: 4, tn: 4, bk: 16 };
}

/** The tile part (`m8n8k16`) of a tiled kernel's cache key. */
export function gemmTileKey(tile: GemmTile): string {
  return `m${tile.tm}n${tile.tn}k${tile.bk}`;
}

// ---------------------------------------------------------------- the tiled K loop

/** A tiled kernel's own parts that {@link tiledGemmWgsl} builds the K loop around. */
export interface TiledGemmSpec {
  tile: GemmTile;
  /** A / B tiles are loaded as vec4s (else scalars); sets the register slots per thread. */
  vecA: boolean;
  vecB: boolean;
  /** WGSL expression loading B slot `i` of the K tile at `k0` (default `loadB(k0, e)`). */
  loadB?: (i: number, k0: string) => string;
  /** WGSL statements run after each load of B slot `i` (e.g. stepping incremental indices). */
  afterLoadB?: (i: number) => string;
  /** Statements of `main` before the loop: the tile origin `m0`, `n0` and the kernel's own. */
  setup: string;
}

/** Register slots per thread for loading a rows x bk tile (vec4 or scalar). */
export function gemmSlots(rows: number, bk: number, vec: boolean): number {
  return (rows * bk) / (GEMM_THREADS * (vec ? 4 : 1));
}

/**
 * The workgroup-tiled GEMM around a kernel's loaders and epilogue. `decls`: the operand tiles
 * `As` (k-major, BM/4 vec4 per k) and `Bs` (BN/4 vec4 per k) in f32 and the output tile's
 * origin `m0`, `n0`. `main`: the entry point ({@link GEMM_MAIN_WGSL}, then `spec.setup`), the
 * thread's tile coordinates `tx`, `ty`, accumulators `acc{r}_{j}` (vec4<f32>, tile row
 * `ty * tm + r`, tile columns `64 * j + tx * 4 .. + 3`), the K loop over `p.K` with register
 * prefetch, and `emit(m, n, acc)` of every accumulator (output row `m`, first of its 4 columns
 * `n`). The kernel defines `loadA(k0, e)`, `storeA(e, v)`, `loadB(k0, e)` (or spec.loadB),
 * `storeB(e, v)` and `emit`.
 */
export function tiledGemmWgsl(spec: TiledGemmSpec): { decls: string; main: string } {
  const { tm, tn, bk } = spec.tile;
  const bm4 = (16 * tm) / 4, bn4 = (16 * tn) / 4;
  const aSlots = gemmSlots(16 * tm, bk, spec.vecA), bSlots = gemmSlots(16 * tn, bk, spec.vecB);
  const e = (i: number) => `lid + ${i * GEMM_THREADS}u`;
  const loadB = spec.loadB ?? ((i: number, k0: string) => `loadB(${k0}, ${e(i)})`);
  const after = (i: number) => (spec.afterLoadB ? " " + spec.afterLoadB(i) : "");
  const lines: string[] = ["let tx = lid % 16u;", "let ty = lid / 16u;"];
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) lines.push(`var acc${r}_${j} = vec4<f32>(0.0);`);
  }
  for (let i = 0; i < aSlots; i++) lines.push(`var ra${i} = loadA(0u, ${e(i)});`);
  for (let i = 0; i < bSlots; i++) lines.push(`var rb${i} = ${loadB(i, "0u")};${after(i)}`);
  lines.push(`for (var k0 = 0u; k0 < p.K; k0 += ${bk}u) {`);
  for (let i = 0; i < aSlots; i++) lines.push(`  storeA(${e(i)}, ra${i});`);
  for (let i = 0; i < bSlots; i++) lines.push(`  storeB(${e(i)}, rb${i});`);
  lines.push(`  workgroupBarrier();`);
  lines.push(`  let kn = k0 + ${bk}u;`);
  lines.push(`  if (kn < p.K) {`);
  for (let i = 0; i < aSlots; i++) lines.push(`    ra${i} = loadA(kn, ${e(i)});`);
  for (let i = 0; i < bSlots; i++) lines.push(`    rb${i} = ${loadB(i, "kn")};${after(i)}`);
  lines.push(`  }`);
  lines.push(`  for (var k = 0u; k < ${bk}u; k++) {`);
  for (let j = 0; j < tn / 4; j++) lines.push(`    let b${j} = Bs[k * ${bn4}u + tx + ${16 * j}u];`);
  for (let q = 0; q < tm / 4; q++) {
    lines.push(`    let a${q} = As[k * ${bm4}u + ty * ${tm / 4}u + ${q}u];`);
  }
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) {
      const av = `vec4<f32>(a${r >> 2}.${"xyzw"[r & 3]})`;
      lines.push(`    acc${r}_${j} = fma(${av}, b${j}, acc${r}_${j});`);
    }
  }
  lines.push(`  }`);
  lines.push(`  workgroupBarrier();`);
  lines.push(`}`);
  for (let r = 0; r < tm; r++) {
    for (let j = 0; j < tn / 4; j++) {
      lines.push(`emit(m0 + ty * ${tm}u + ${r}u, n0 + tx * 4u + ${64 * j}u, acc${r}_${j});`);
    }
  }
  const decls = `var<workgroup> As: array<vec4<f32>, ${bk * bm4}>;
var<workgroup> Bs: array<vec4<f32>, ${bk * bn4}>;
var<private> m0: u32;
var<private> n0: u32;`;
  const body = lines.map((l) => "  " + l).join("\n");
  return { decls, main: `${GEMM_MAIN_WGSL}\n${spec.setup}\n${body}\n}` };
}

/** What {@link kMajorLoaderWgsl} generates. */
export interface KMajorLoader {
  /** Operand letter: defines `load${name}(k0, e)` and `store${name}(e, v)`. */
  name: string;
  /** Storage buffer (array<T4> when vec, else array<T>). */
  buf: string;
  /** Workgroup array (vec4<f32>, k-major: rows/4 vec4 per k). */
  tile: string;
  /** Tile rows and K depth. */
  rows: number;
  bk: number;
  vec: boolean;
  /** WGSL expressions: first row of the tile, row count, element offset of the matrix. */
  r0: string;
  rowCount: string;
  base: string;
}

/**
 * WGSL loader for a row-major [rows, K] operand (matmul A, Linear weight, conv weight): slot `e`
 * reads (vec4 of) consecutive K elements of one row (coalesced along K) and stores them
 * transposed (k-major) into the workgroup tile. Out-of-range elements read as 0.
 */
export function kMajorLoaderWgsl(o: KMajorLoader): string {
  const r4 = o.rows / 4, bk4 = o.bk / 4;
  const { name, buf, tile } = o;
  return o.vec
    ? `fn load${name}(k0: u32, e: u32) -> vec4<f32> {
  let r = ${o.r0} + e / ${bk4}u; let k = k0 + (e % ${bk4}u) * 4u;
  if (r < ${o.rowCount} && k < p.K) { return vec4<f32>(${buf}[(${o.base} + r * p.K + k) / 4u]); }
  return vec4<f32>(0.0);
}
fn store${name}(e: u32, v: vec4<f32>) {
  let row = e / ${bk4}u; let i = (e % ${bk4}u) * ${4 * r4}u + row / 4u; let c = row % 4u;
  ${tile}[i][c] = v.x; ${tile}[i + ${r4}u][c] = v.y;
  ${tile}[i + ${2 * r4}u][c] = v.z; ${tile}[i + ${3 * r4}u][c] = v.w;
}`
    : `fn load${name}(k0: u32, e: u32) -> f32 {
  let r = ${o.r0} + e / ${o.bk}u; let k = k0 + e % ${o.bk}u;
  if (r < ${o.rowCount} && k < p.K) { return f32(${buf}[${o.base} + r * p.K + k]); }
  return 0.0;
}
fn store${name}(e: u32, v: f32) {
  let row = e / ${o.bk}u;
  ${tile}[(e % ${o.bk}u) * ${r4}u + row / 4u][row % 4u] = v;
}`;
}

// ---------------------------------------------------------------- epilogue

/** Epilogue activation: gelu = erf GELU; quick_gelu = x * sigmoid(1.702 x) (CLIP). */
export type Activation = "none" | "silu" | "gelu" | "quick_gelu";

/** Every {@link Activation}. */
export const ACTIVATIONS: readonly Activation[] = ["none", "silu", "gelu", "quick_gelu"];

/**
 * WGSL `act(x: VF) -> VF` of an epilogue activation; every one but `none` needs the prelude's
 * `activations` (one erf for the whole engine).
 */
export function activationWgsl(activation: Activation): string {
  const call: Record<Activation, string> = {
    none: "x",
    silu: "silu(x)",
    quick_gelu: "quick_gelu(x)",
    gelu: "gelu(x)",
  };
  return `fn act(x: VF) -> VF { return ${call[activation]}; }`;
}

/** The epilogue inputs every GEMM kernel variant chooses: a bias and a residual, or not. */
export interface GemmEpilogue {
  bias: boolean;
  residual: boolean;
}

/** The epilogue part (`bias-nores`) of a GEMM kernel's cache key. */
export function epilogueKey(e: GemmEpilogue): string {
  return `${e.bias ? "bias" : "nobias"}-${e.residual ? "res" : "nores"}`;
}

/**
 * The bindings of a GEMM kernel: the uniform `p: Params`, the operands (`"a: array<V>"`) at 1
 * and 2, then the optional bias (element `biasElem`, default `V`) and residual (`V`), then
 * `dst` (`V`).
 */
export function gemmBindingsWgsl(
  operands: readonly [string, string],
  epilogue: GemmEpilogue & { biasElem?: string },
): string {
  const storage = [...operands];
  if (epilogue.bias) storage.push(`biasv: array<${epilogue.biasElem ?? "V"}>`);
  if (epilogue.residual) storage.push("res: array<V>");
  return bindingsWgsl([...storage, "dst: array<V>"]);
}

// ---------------------------------------------------------------- grid and checks

/**
 * Grid for `colTiles` x `rest` workgroups, folding `rest` over y and z so no dimension exceeds
 * 65535. Shaders start with {@link GEMM_MAIN_WGSL}, which recovers `g` < rest.
 */
export function gemmGrid(op: string, colTiles: number, rest: number): [number, number, number] {
  if (colTiles > MAX_GROUPS_PER_DIM) {
    throw new Error(`${op}: expected at most ${MAX_GROUPS_PER_DIM} column tiles, got ${colTiles}`);
  }
  const z = ceilDiv(rest, MAX_GROUPS_PER_DIM);
  return [colTiles, ceilDiv(rest, z), z];
}

/**
 * The entry point's head of every GEMM kernel: column block `wid.x`, `g` = the linear index of
 * the rest of a {@link gemmGrid} (workgroups past the real count return), `lid` the thread.
 */
export const GEMM_MAIN_WGSL = `@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let g = wid.y + wid.z * nwg.y;
  if (g >= p.groups) { return; }`;

/** Checks that every tensor has `dtype` and that f16 is supported; names the op. */
export function checkDTypes(
  gpu: Gpu,
  op: string,
  tensors: Record<string, Tensor | undefined>,
): DType {
  const entries = Object.entries(tensors).filter((e): e is [string, Tensor] => e[1] !== undefined);
  const dtype = entries[0][1].dtype;
  for (const [name, t] of entries) {
    if (t.dtype !== dtype) {
      throw new Error(
        `${op}: expected ${name} to be ${dtype} like ${entries[0][0]}, got ${t.dtype}`,
      );
    }
  }
  if (dtype === "f16" && !gpu.hasF16) {
    throw new Error(`${op}: f16 tensors need the shader-f16 feature, which this adapter lacks`);
  }
  return dtype;
}

/** True when two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ---------------------------------------------------------------- bias gradient

/** Columns per workgroup of the "rows" channel sum (x 4 row lanes = 256 threads). */
const SUM_COLS = 64;

/** "rows": inner == 1 (a matrix's column sums, coalesced along columns); "planes": inner > 1. */
interface ChannelSumVariant {
  rows: boolean;
}

function channelSumSource(dtype: DType, v: ChannelSumVariant): string {
  const head = `${prelude(dtype, { wg: 256, reductions: true })}
// channel_sum ${v.rows ? "rows" : "planes"}: out[c] = sum over o < outer, q < inner of
// g[(o * C + c) * inner + q] (f32 accumulation). Binding 1: g [outer, C, inner]; 2: out [C].
struct Params { outer: u32, C: u32, inner: u32 }
${bindingsWgsl(["g: array<T>", "out: array<T>"])}`;
  if (v.rows) {
    // Workgroup: SUM_COLS columns x 4 row lanes; the lanes combine through `red`.
    return `${head}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * ${SUM_COLS}u + lid % ${SUM_COLS}u;
  var s = 0.0;
  if (c < p.C) {
    for (var r = lid / ${SUM_COLS}u; r < p.outer; r += ${
      256 / SUM_COLS
    }u) { s += f32(g[r * p.C + c]); }
  }
  red[lid] = s;
  workgroupBarrier();
  if (lid < ${SUM_COLS}u && c < p.C) {
    out[c] = T(red[lid] + red[lid + ${SUM_COLS}u] + red[lid + ${2 * SUM_COLS}u] + red[lid + ${
      3 * SUM_COLS
    }u]);
  }
}
`;
  }
  return `${head}
${mainPerGroupWgsl("c", "p.C")}
  var s = 0.0;
  for (var o = 0u; o < p.outer; o++) {
    let base = (o * p.C + c) * p.inner;
    for (var q = lid; q < p.inner; q += WG) { s += f32(g[base + q]); }
  }
  let total = wg_sum(s, lid);
  if (lid == 0u) { out[c] = T(total); }
}
`;
}

const channelSumKernel = defineKernel<ChannelSumVariant>("channel_sum", {
  key: (v) => (v.rows ? "rows" : "planes"),
  source: ({ dtype, variant }) => channelSumSource(dtype, variant),
});

/**
 * Sums `g`, seen as [outer, channels, inner], over outer and inner: a new tensor [channels]
 * (f32 accumulation). The bias gradient of a GEMM: [rows, N] (inner = 1) for matmul / linear,
 * [images, Cout, Ho * Wo] for conv2d; also sums per-image partial weight gradients.
 *
 * @example
 * ```ts
 * const db = channelSums(gpu, gy, { channels: N }); // gy [..., N] -> [N]
 * const dbConv = channelSums(gpu, gy, { channels: Cout, inner: Ho * Wo }); // NCHW gy
 * ```
 */
export function channelSums(
  gpu: Gpu,
  g: Tensor,
  options: { channels: number; inner?: number },
): Tensor {
  const { channels, inner = 1 } = options;
  const outer = g.size / (channels * inner);
  if (!Number.isInteger(outer) || channels < 1 || inner < 1) {
    throw new Error(
      `channelSums: expected g [outer, ${channels}, ${inner}], got ${fmtShape(g.shape)}`,
    );
  }
  const out = gpu.empty([channels], g.dtype, "channel sums");
  const rows = inner === 1;
  gpu.dispatch(channelSumKernel, {
    dtype: g.dtype,
    variant: { rows },
    params: new Params().u32(outer).u32(channels).u32(inner),
    bindings: [g, out],
    groups: rows ? gemmGrid("channelSums", ceilDiv(channels, SUM_COLS), 1) : grid1d(channels),
  });
  return out;
}
