/**
 * Layout kernels: permute (torch `permute(...).contiguous()`), concat, repeat_interleave and
 * slice. Permutes are simplified on the host first (size-1 dims dropped, dims that stay adjacent
 * merged); one whose innermost output dim is not the input's innermost dim runs as a tiled
 * transpose through workgroup memory (coalesced reads and writes), the rest as a gather (vec4
 * when the inner size allows). Concat and slice are strided row copies.
 *
 * Training: each op records its backward on an autograd tape when one is recording
 * (kernels/gpu/tape.ts): permute's is the inverse permute, concat's slices, slice's a zero pad
 * ({@link padAxis}), repeat_interleave's a sum over the repeats.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { alignedWindow, bindingRuns, fitsOneBinding } from "./gpu/chunks.ts";
import { defineKernel, MAX_GROUPS_PER_DIM, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { fmtShape, type Tensor } from "./gpu/tensor.ts";
import { bindingsWgsl, launch1d, MAIN_1D_WGSL, prelude, vecKey, type VecVariant } from "./wgsl.ts";

const MAX_RANK = 6;
const TILE = 32;
const TILE_ROWS = 8;
const BATCH_DIMS = 4;

function normAxis(op: string, axis: number, rank: number, shape: readonly number[]): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new Error(`${op}: axis ${axis} out of range for shape ${fmtShape(shape)}`);
  }
  return a;
}

// ---------------------------------------------------------------- permute

const DIMS = [...Array(MAX_RANK).keys()];
const BDIMS = [...Array(BATCH_DIMS).keys()];

const gatherKernel = defineKernel<VecVariant>("permute_gather", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// permute_gather: 1 x (input, V units), 2 y [d0..d5] (V units); output element (c0..c5) reads
// x[sum c_k * s_k] (s_k = input stride of output dim k).
${prelude(dtype, variant)}
struct Params { n: u32, ${DIMS.map((k) => `d${k}: u32`).join(", ")}, ${
    DIMS.map((k) => `s${k}: u32`).join(", ")
  } }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  var r = i;
  var src = 0u;
${
    DIMS.slice().reverse().map((k) =>
      `  { let c = r % p.d${k}; r = r / p.d${k}; src += c * p.s${k}; }`
    )
      .join("\n")
  }
  y[i] = x[src];
}`,
});

const transposeKernel = defineKernel("permute_tiled", ({ dtype }) => /* wgsl */ `
// permute_tiled: 1 x (input), 2 y (output). A ${TILE}x${TILE} tile of the (A, B) plane goes
// through workgroup memory: A = the input's innermost dim (input stride 1, output stride soa),
// B = the output's innermost dim (output stride 1, input stride sib). Up to ${BATCH_DIMS} more
// dims (sizes bd*, input strides bi*, output strides bo*) enumerate planes.
// Grid: x = tiles along B; y + z * nwg.y = tile along A + ta * plane.
${prelude(dtype, { wg: TILE * TILE_ROWS })}
struct Params { a: u32, b: u32, ta: u32, nplanes: u32, sib: u32, soa: u32,
  ${BDIMS.map((k) => `bd${k}: u32`).join(", ")}, ${BDIMS.map((k) => `bi${k}: u32`).join(", ")},
  ${BDIMS.map((k) => `bo${k}: u32`).join(", ")} }
${bindingsWgsl(["x: array<T>", "y: array<T>"])}
var<workgroup> tile: array<array<T, ${TILE + 1}>, ${TILE}>;

@compute @workgroup_size(${TILE}, ${TILE_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let lin = wid.y + wid.z * nwg.y;
  if (lin >= p.ta * p.nplanes) { return; }
  let a0 = (lin % p.ta) * ${TILE}u;
  let b0 = wid.x * ${TILE}u;
  var r = lin / p.ta;
  var ib = 0u;
  var ob = 0u;
${
  BDIMS.slice().reverse().map((k) =>
    `  { let c = r % p.bd${k}; r = r / p.bd${k}; ib += c * p.bi${k}; ob += c * p.bo${k}; }`
  ).join("\n")
}
  for (var j = 0u; j < ${TILE}u; j += ${TILE_ROWS}u) {
    let a = a0 + lid.x;
    let b = b0 + lid.y + j;
    if (a < p.a && b < p.b) { tile[lid.y + j][lid.x] = x[ib + a + b * p.sib]; }
  }
  workgroupBarrier();
  for (var j = 0u; j < ${TILE}u; j += ${TILE_ROWS}u) {
    let a = a0 + lid.y + j;
    let b = b0 + lid.x;
    if (a < p.a && b < p.b) { y[ob + a * p.soa + b] = tile[lid.x][lid.y + j]; }
  }
}`);

/** A permute reduced to its essential dims: output sizes and their input strides. */
export interface PermutePlan {
  sizes: number[];
  inStrides: number[];
}

/** Output dims of a permute without size-1 dims, adjacent dims merged when they stay adjacent. */
export function planPermute(shape: readonly number[], perm: readonly number[]): PermutePlan {
  const st: number[] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  const sizes: number[] = [], inStrides: number[] = [];
  for (const d of perm) {
    if (shape[d] === 1) continue;
    const k = sizes.length - 1;
    if (k >= 0 && inStrides[k] === st[d] * shape[d]) {
      sizes[k] *= shape[d];
      inStrides[k] = st[d];
    } else {
      sizes.push(shape[d]);
      inStrides.push(st[d]);
    }
  }
  return { sizes, inStrides };
}

/**
 * `x.permute(perm).contiguous()` for up to 6 dims.
 *
 * @example
 * ```ts
 * // motion module fold: (b, f, c, h*w) -> (b, h*w, f, c)
 * const t = permute(gpu, x.reshape([b, f, c, hw]), [0, 3, 1, 2]);
 * ```
 */
export function permute(gpu: Gpu, x: Tensor, perm: readonly number[]): Tensor {
  const r = x.rank;
  const sorted = [...perm].sort((a, b) => a - b);
  if (r > MAX_RANK || perm.length !== r || sorted.some((d, i) => d !== i)) {
    throw new Error(
      `permute: expected a permutation of ${r} dims (at most ${MAX_RANK}) for x ${
        fmtShape(x.shape)
      }, got [${perm.join(", ")}]`,
    );
  }
  const inverse: number[] = [];
  perm.forEach((d, k) => inverse[d] = k);
  return taped(gpu, {
    name: "permute",
    inputs: [x],
    output: permuteForward(gpu, x, perm),
    saved: [],
    backward: (gy, needs) => [needs[0] ? permuteForward(gpu, gy, inverse) : null],
  });
}

function permuteForward(gpu: Gpu, x: Tensor, perm: readonly number[]): Tensor {
  const shape = perm.map((d) => x.shape[d]);
  const y = gpu.empty(shape, x.dtype, "permute");
  if (y.size === 0) return y;
  if (perm[0] !== 0 || fitsOneBinding(gpu, [x, y])) {
    permuteInto(gpu, x, y, perm);
    return y;
  }
  // The leading dim stays in place: permute each run of its items on its own.
  const n0 = x.shape[0];
  for (const [s, n] of bindingRuns(gpu, "permute", n0, [x, y], "item")) {
    permuteInto(gpu, x.window(n0, s, n), y.window(n0, s, n), perm);
  }
  return y;
}

/** One permute launch: `y = x.permute(perm)` (every operand fits one binding). */
function permuteInto(gpu: Gpu, x: Tensor, y: Tensor, perm: readonly number[]): void {
  const { sizes, inStrides } = planPermute(x.shape, perm);
  const rank = sizes.length;
  const innerStride = rank ? inStrides[rank - 1] : 1;
  if (innerStride === 1 || rank <= 1) {
    // Gather: the innermost output dim is contiguous in the input too (or nothing to transpose).
    const v4 = rank > 0 && sizes[rank - 1] % 4 === 0;
    const d = [...Array(MAX_RANK - rank).fill(1), ...sizes];
    const s = [...Array(MAX_RANK - rank).fill(0), ...inStrides];
    if (v4) {
      d[MAX_RANK - 1] /= 4;
      for (let k = 0; k < MAX_RANK - 1; k++) s[k] /= 4;
    }
    const n = v4 ? y.size / 4 : y.size;
    const params = new Params().u32(n);
    for (const v of [...d, ...s]) params.u32(v);
    gpu.dispatch(gatherKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params,
      bindings: [x, y],
      groups: launch1d(n),
    });
    return;
  }
  const pa = inStrides.indexOf(1);
  const outStrides: number[] = [];
  let os = 1;
  for (let k = rank - 1; k >= 0; k--) {
    outStrides[k] = os;
    os *= sizes[k];
  }
  const batch = [...sizes.keys()].filter((k) => k !== pa && k !== rank - 1);
  const pad = BATCH_DIMS - batch.length;
  const bd = [...Array(pad).fill(1), ...batch.map((k) => sizes[k])];
  const bi = [...Array(pad).fill(0), ...batch.map((k) => inStrides[k])];
  const bo = [...Array(pad).fill(0), ...batch.map((k) => outStrides[k])];
  const a = sizes[pa], b = sizes[rank - 1];
  const ta = Math.ceil(a / TILE), nplanes = bd.reduce((u, v) => u * v, 1);
  const params = new Params().u32(a).u32(b).u32(ta).u32(nplanes).u32(inStrides[rank - 1])
    .u32(outStrides[pa]);
  for (const v of [...bd, ...bi, ...bo]) params.u32(v);
  const lin = ta * nplanes;
  const gy = Math.min(lin, MAX_GROUPS_PER_DIM);
  gpu.dispatch(transposeKernel, {
    dtype: x.dtype,
    params,
    bindings: [x, y],
    groups: [Math.ceil(b / TILE), gy, Math.ceil(lin / gy)],
  });
}

// ---------------------------------------------------------------- row copies (concat, slice)

const copyRowsKernel = defineKernel<VecVariant>("copy_rows", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// copy_rows: 1 x, 2 y (V units). For row o < n / chunk and j < chunk:
// y[o * dst_stride + dst_off + j] = x[o * src_stride + src_off + j].
${prelude(dtype, variant)}
struct Params { n: u32, chunk: u32, src_stride: u32, src_off: u32, dst_stride: u32, dst_off: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let o = i / p.chunk;
  let j = i - o * p.chunk;
  y[o * p.dst_stride + p.dst_off + j] = x[o * p.src_stride + p.src_off + j];
}`,
});

function copyRows(
  gpu: Gpu,
  x: Tensor,
  y: Tensor,
  r: {
    rows: number;
    chunk: number;
    srcStride: number;
    srcOff: number;
    dstStride: number;
    dstOff: number;
  },
): void {
  if (r.rows * r.chunk === 0) return;
  const v4 = [r.chunk, r.srcStride, r.srcOff, r.dstStride, r.dstOff].every((v) => v % 4 === 0);
  const u = v4 ? 4 : 1;
  const n = r.rows * r.chunk / u;
  gpu.dispatch(copyRowsKernel, {
    dtype: x.dtype,
    variant: { vec: v4 },
    params: new Params().u32(n).u32(r.chunk / u).u32(r.srcStride / u).u32(r.srcOff / u)
      .u32(r.dstStride / u).u32(r.dstOff / u),
    bindings: [x, y],
    groups: launch1d(n),
  });
}

function outerInner(shape: readonly number[], axis: number): [number, number] {
  return [
    shape.slice(0, axis).reduce((a, b) => a * b, 1),
    shape.slice(axis + 1).reduce((a, b) => a * b, 1),
  ];
}

/**
 * Concatenates 2+ tensors along `axis` (other dims equal): the UNet's skip concat on channels.
 *
 * @example
 * ```ts
 * const h = concat(gpu, [up, skip], 1); // [N, C1, H, W] + [N, C2, H, W] -> [N, C1 + C2, H, W]
 * ```
 */
export function concat(gpu: Gpu, tensors: readonly Tensor[], axis: number): Tensor {
  if (tensors.length < 2) {
    throw new Error(`concat: expected 2 or more tensors, got ${tensors.length}`);
  }
  const first = tensors[0];
  const ax = normAxis("concat", axis, first.rank, first.shape);
  for (const t of tensors) {
    const ok = t.rank === first.rank && t.dtype === first.dtype &&
      t.shape.every((d, i) => i === ax || d === first.shape[i]);
    if (!ok) {
      throw new Error(
        `concat: expected tensors like ${fmtShape(first.shape)} ${first.dtype} except on axis ` +
          `${ax}, got ${tensors.map((u) => `${fmtShape(u.shape)} ${u.dtype}`).join(", ")}`,
      );
    }
  }
  // Input i's gradient is its slice of gy along the axis.
  const starts = tensors.map((_, i) => tensors.slice(0, i).reduce((a, t) => a + t.shape[ax], 0));
  return taped(gpu, {
    name: "concat",
    inputs: tensors,
    output: concatForward(gpu, tensors, ax),
    saved: [],
    backward: (gy, needs) =>
      tensors.map((t, i) =>
        needs[i] ? sliceForward(gpu, gy, ax, starts[i], starts[i] + t.shape[ax]) : null
      ),
  });
}

function concatForward(gpu: Gpu, tensors: readonly Tensor[], ax: number): Tensor {
  const first = tensors[0];
  const total = tensors.reduce((a, t) => a + t.shape[ax], 0);
  const shape = first.shape.map((d, i) => i === ax ? total : d);
  const y = gpu.empty(shape, first.dtype, "concat");
  if (y.size === 0) return y;
  const [, inner] = outerInner(shape, ax);
  let off = 0;
  if (ax === 0) {
    // Each input is one contiguous block of y.
    for (const t of tensors) {
      copyRange(gpu, "concat", t, 0, y, off * inner, t.size);
      off += t.shape[0];
    }
    return y;
  }
  const n0 = shape[0];
  for (const [s, n] of bindingRuns(gpu, "concat", n0, [...tensors, y], "item")) {
    const yw = y.window(n0, s, n);
    const [outer] = outerInner(yw.shape, ax);
    off = 0;
    for (const t of tensors) {
      const chunk = t.shape[ax] * inner;
      copyRows(gpu, t.window(n0, s, n), yw, {
        rows: outer,
        chunk,
        srcStride: chunk,
        srcOff: 0,
        dstStride: total * inner,
        dstOff: off * inner,
      });
      off += t.shape[ax];
    }
  }
  return y;
}

/**
 * Copies `count` elements of x from `src` to y from `dst`: one launch when both fit a binding,
 * else runs of aligned windows.
 */
function copyRange(
  gpu: Gpu,
  op: string,
  x: Tensor,
  src: number,
  y: Tensor,
  dst: number,
  count: number,
): void {
  if (count === 0) return;
  const one = { rows: 1, chunk: count, srcStride: 0, dstStride: 0 };
  if (fitsOneBinding(gpu, [x, y])) {
    copyRows(gpu, x, y, { ...one, srcOff: src, dstOff: dst });
    return;
  }
  const span = x.window(x.size, src, count);
  for (const [s, n] of bindingRuns(gpu, op, count, [span], "element", { unaligned: true })) {
    const a = alignedWindow(gpu, x, src + s, n), b = alignedWindow(gpu, y, dst + s, n);
    copyRows(gpu, a.window, b.window, { ...one, chunk: n, srcOff: a.offset, dstOff: b.offset });
  }
}

/**
 * A contiguous copy of `x[..., start:end, ...]` along `axis`.
 *
 * @example
 * ```ts
 * const cond = slice(gpu, text, 0, 1, 2); // [2, 77, 768] -> [1, 77, 768]
 * ```
 */
export function slice(gpu: Gpu, x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis("slice", axis, x.rank, x.shape);
  const size = x.shape[ax];
  if (
    !Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > size
  ) {
    throw new Error(
      `slice: expected 0 <= start <= end <= ${size} on axis ${ax} of x ${fmtShape(x.shape)}, ` +
        `got ${start}..${end}`,
    );
  }
  return taped(gpu, {
    name: "slice",
    inputs: [x],
    output: sliceForward(gpu, x, ax, start, end),
    saved: [],
    // The slice's gradient lands in its place; the rest of x gets zeros.
    backward: (gy, needs) => [needs[0] ? padAxis(gpu, gy, ax, start, size - end) : null],
  });
}

function sliceForward(gpu: Gpu, x: Tensor, ax: number, start: number, end: number): Tensor {
  const size = x.shape[ax];
  const shape = x.shape.map((d, i) => i === ax ? end - start : d);
  const y = gpu.empty(shape, x.dtype, "slice");
  if (y.size === 0) return y;
  const [, inner] = outerInner(x.shape, ax);
  if (ax === 0) {
    copyRange(gpu, "slice", x, start * inner, y, 0, y.size); // one contiguous block of x
    return y;
  }
  const chunk = (end - start) * inner;
  const n0 = x.shape[0];
  for (const [s, n] of bindingRuns(gpu, "slice", n0, [x, y], "item")) {
    const xw = x.window(n0, s, n);
    copyRows(gpu, xw, y.window(n0, s, n), {
      rows: outerInner(xw.shape, ax)[0],
      chunk,
      srcStride: size * inner,
      srcOff: start * inner,
      dstStride: chunk,
      dstOff: 0,
    });
  }
  return y;
}

const padAxisKernel = defineKernel<VecVariant>("pad_axis", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// pad_axis: 1 x [outer, d, inner], 2 y [outer, dy, inner] (inner in V units), dy >= before + d:
// y[o, j, k] = x[o, j - before, k] for before <= j < before + d, else 0.
${prelude(dtype, variant)}
struct Params { n: u32, inner: u32, d: u32, dy: u32, before: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let t = i / p.inner;
  let k = i - t * p.inner;
  let o = t / p.dy;
  let j = t - o * p.dy;
  var v = V();
  if (j >= p.before && j - p.before < p.d) { v = x[(o * p.d + j - p.before) * p.inner + k]; }
  y[i] = v;
}`,
});

/**
 * Zero-pads `x` along `axis` with `before` and `after` zeros (torch `F.pad` on one dim): the
 * gradient of {@link slice}, and of a position table of which only the first rows were read.
 *
 * @example
 * ```ts
 * const g = padAxis(gpu, gy, 1, 2, 3); // [4, 5, 8] -> [4, 10, 8]
 * ```
 */
export function padAxis(gpu: Gpu, x: Tensor, axis: number, before: number, after: number): Tensor {
  const ax = normAxis("pad_axis", axis, x.rank, x.shape);
  for (const [k, v] of Object.entries({ before, after })) {
    if (!Number.isInteger(v) || v < 0) {
      throw new Error(`pad_axis: ${k} must be a non-negative integer, got ${v}`);
    }
  }
  const d = x.shape[ax], dy = before + d + after;
  const shape = x.shape.map((v, i) => i === ax ? dy : v);
  const y = gpu.empty(shape, x.dtype, "pad_axis");
  if (y.size === 0) return y;
  const [, inner] = outerInner(x.shape, ax);
  const v4 = inner % 4 === 0;
  const launch = (xw: Tensor, yw: Tensor) => {
    const n = v4 ? yw.size / 4 : yw.size;
    gpu.dispatch(padAxisKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? inner / 4 : inner).u32(d).u32(dy).u32(before),
      bindings: [xw, yw],
      groups: launch1d(n),
    });
  };
  if (ax === 0) {
    launch(x, y); // one launch: must fit one binding
    return y;
  }
  const n0 = x.shape[0];
  for (const [s, n] of bindingRuns(gpu, "pad_axis", n0, [x, y], "item")) {
    launch(x.window(n0, s, n), y.window(n0, s, n));
  }
  return y;
}

// ---------------------------------------------------------------- repeat_interleave

const repeatKernel = defineKernel<VecVariant>("repeat_interleave", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// repeat_interleave: 1 x [outer, d, inner], 2 y [outer, d * r, inner] (inner in V units):
// y[o, k * r + q, i] = x[o, k, i].
${prelude(dtype, variant)}
struct Params { n: u32, inner: u32, d: u32, r: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let t = i / p.inner;
  let k = i - t * p.inner;
  let dr = p.d * p.r;
  let o = t / dr;
  let rep = t - o * dr;
  y[i] = x[(o * p.d + rep / p.r) * p.inner + k];
}`,
});

/**
 * `torch.repeat_interleave(x, repeats, dim=axis)` (default axis 0).
 *
 * @example
 * ```ts
 * const ctx = repeatInterleave(gpu, text, 16); // [2, 77, 768] -> [32, 77, 768], one per frame
 * ```
 */
export function repeatInterleave(gpu: Gpu, x: Tensor, repeats: number, axis = 0): Tensor {
  const ax = normAxis("repeat_interleave", axis, x.rank, x.shape);
  if (!Number.isInteger(repeats) || repeats < 1) {
    throw new Error(`repeat_interleave: expected repeats >= 1, got ${repeats}`);
  }
  const shape = x.shape.map((d, i) => i === ax ? d * repeats : d);
  const y = gpu.empty(shape, x.dtype, "repeat_interleave");
  if (y.size === 0) return y;
  const [, inner] = outerInner(x.shape, ax);
  const v4 = inner % 4 === 0;
  // Items of the leading dim are independent (axis 0: item k of x makes `repeats` items of y).
  const n0 = x.shape[0];
  for (const [s, count] of bindingRuns(gpu, "repeat_interleave", n0, [x, y], "item")) {
    const xw = x.window(n0, s, count), yw = y.window(n0, s, count);
    const n = v4 ? yw.size / 4 : yw.size;
    gpu.dispatch(repeatKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? inner / 4 : inner).u32(xw.shape[ax]).u32(repeats),
      bindings: [xw, yw],
      groups: launch1d(n),
    });
  }
  return taped(gpu, {
    name: "repeat_interleave",
    inputs: [x],
    output: y,
    saved: [],
    backward: (gy, needs) => [needs[0] ? repeatInterleaveBackward(gpu, gy, x, repeats, ax) : null],
  });
}

const repeatBackwardKernel = defineKernel<VecVariant>("repeat_interleave_backward", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// repeat_interleave_backward: 1 gy [outer, d * r, inner], 2 gx [outer, d, inner] (inner in V
// units): gx[o, k, i] = sum_q gy[o, k * r + q, i], in f32 (t = o * d + k, so gy's row is t * r + q).
${prelude(dtype, variant)}
struct Params { n: u32, inner: u32, r: u32 }
${bindingsWgsl(["gy: array<V>", "gx: array<V>"])}

${MAIN_1D_WGSL}
  let t = i / p.inner;
  let k = i - t * p.inner;
  let base = t * p.r * p.inner + k;
  var s = VF(0.0);
  for (var q = 0u; q < p.r; q++) { s += VF(gy[base + q * p.inner]); }
  gx[i] = V(s);
}`,
});

/** dL/dx of `repeatInterleave(x, repeats, ax)` given dL/dy: the sum over each item's repeats. */
function repeatInterleaveBackward(
  gpu: Gpu,
  gy: Tensor,
  x: Tensor,
  repeats: number,
  ax: number,
): Tensor {
  const gx = gpu.empty(x.shape, gy.dtype, "repeat_interleave_backward");
  const [, inner] = outerInner(x.shape, ax);
  const v4 = inner % 4 === 0;
  const n0 = x.shape[0];
  for (const [s, count] of bindingRuns(gpu, "repeat_interleave_backward", n0, [gy, gx], "item")) {
    const gw = gx.window(n0, s, count);
    const n = v4 ? gw.size / 4 : gw.size;
    gpu.dispatch(repeatBackwardKernel, {
      dtype: gy.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(v4 ? inner / 4 : inner).u32(repeats),
      bindings: [gy.window(n0, s, count), gw],
      groups: launch1d(n),
    });
  }
  return gx;
}
