/**
 * Elementwise kernels: broadcasting add / mul, activations (SiLU, exact-erf GELU, quick GELU),
 * GEGLU, linear combinations of same-shape tensors (scheduler updates), classifier-free guidance
 * and scaling. vec4 loads and stores wherever the innermost sizes allow; broadcasting is done
 * with per-dimension strides in the uniform params, so no shape ever enters a pipeline key.
 *
 * Training: add, mul, the activations, GEGLU and linear combinations (so scale) record their
 * backward on an autograd tape when one is recording (kernels/gpu/tape.ts); {@link sumTo} is the
 * reduction that gives a broadcast operand its gradient.
 * @module
 */

import type { Gpu } from "./gpu/device.ts";
import { EngineLimitError } from "./gpu/errors.ts";
import { alignedWindow, bindingRuns, fitsOneBinding } from "./gpu/chunks.ts";
import { defineKernel, grid1d, Params } from "./gpu/kernel.ts";
import { taped } from "./gpu/tape.ts";
import { type DType, dtypeBytes, fmtShape, numel, type Tensor } from "./gpu/tensor.ts";
import {
  bindingsWgsl,
  launch1d,
  MAIN_1D_WGSL,
  mainPerGroupWgsl,
  prelude,
  vecKey,
  type VecVariant,
} from "./wgsl.ts";

const MAX_RANK = 6;

/** Activation functions of {@link unary}. */
export type UnaryOp = "silu" | "gelu" | "quick_gelu";

const UNARY_OPS: readonly UnaryOp[] = ["silu", "gelu", "quick_gelu"];

function unitsOf(n: number, v4: boolean): number {
  return v4 ? n / 4 : n;
}

// ---------------------------------------------------------------- add / mul with broadcasting

const DIMS = [...Array(MAX_RANK).keys()];

/** Compile-time options of the binary kernel. */
interface BinaryVariant extends VecVariant {
  op: "add" | "mul";
  /** Identical shapes, no offsets: y[i] = a[i] op b[i]. */
  same: boolean;
  /** Broadcast vec4 only: the input's innermost stride is 0, one scalar load splatted to vec4. */
  splatA: boolean;
  splatB: boolean;
}

// Key "<op>:same:<v4|s>", "<op>:bcast:s" or "<op>:bcast:v4:<a><b>" with <a>/<b> "s" (splat) or
// "v" (vec4 loads).
const binaryKey = (v: BinaryVariant) =>
  v.same
    ? `${v.op}:same:${vecKey(v)}`
    : v.vec
    ? `${v.op}:bcast:v4:${v.splatA ? "s" : "v"}${v.splatB ? "s" : "v"}`
    : `${v.op}:bcast:s`;

function binarySource(dtype: DType, variant: BinaryVariant): string {
  const { op, splatA, splatB } = variant;
  const mode = variant.same ? "same" : "bcast";
  const sym = op === "add" ? "+" : "*";
  const load = (name: string, idx: string, splat: boolean) =>
    splat ? `VF(f32(${name}[${idx}]))` : `VF(${name}[${idx}])`;
  const index = variant.same ? "  let ia = i;\n  let ib = i;" : `  var r = i;
  var ia = p.oa;
  var ib = p.ob;
${
    DIMS.map((j) => {
      const k = MAX_RANK - 1 - j;
      return `  if (p.rank > ${j}u) { let c = r % p.d${k}; r = r / p.d${k}; ia += c * p.sa${k}; ` +
        `ib += c * p.sb${k}; }`;
    }).join("\n")
  }`;
  const operands = [`a: array<${splatA ? "T" : "V"}>`, `b: array<${splatB ? "T" : "V"}>`];
  return /* wgsl */ `
// binary (${op}, ${mode}): 1 a, 2 b, 3 y [d0..d5] (as V units; the last "rank" dims are used).
// Broadcast inputs have stride 0 along broadcast dims; "same" = identical shapes. A splatted
// input (innermost stride 0) is read as scalars with element strides. oa / ob / oy: where the
// operands start in their bindings (windows of larger tensors), in units of their loads.
${prelude(dtype, variant)}
struct Params { n: u32, rank: u32, ${DIMS.map((k) => `d${k}: u32`).join(", ")},
  ${DIMS.map((k) => `sa${k}: u32`).join(", ")}, ${DIMS.map((k) => `sb${k}: u32`).join(", ")},
  oa: u32, ob: u32, oy: u32 }
${bindingsWgsl([...operands, "y: array<V>"])}

${MAIN_1D_WGSL}
${index}
  y[i + p.oy] = V(${load("a", "ia", splatA)} ${sym} ${load("b", "ib", splatB)});
}`;
}

const binaryKernel = defineKernel<BinaryVariant>("binary", {
  key: binaryKey,
  source: ({ dtype, variant }) => binarySource(dtype, variant),
});

/**
 * Simplifies a broadcast: drops size-1 dims and merges neighbours that are contiguous in both
 * inputs (or broadcast in both). Returns at least one dim.
 */
export function mergeBroadcastDims(
  shape: readonly number[],
  sa: readonly number[],
  sb: readonly number[],
): { dims: number[]; sa: number[]; sb: number[] } {
  const dims: number[] = [], ma: number[] = [], mb: number[] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const k = dims.length - 1;
    if (k >= 0 && ma[k] === sa[i] * d && mb[k] === sb[i] * d) {
      dims[k] *= d;
      ma[k] = sa[i];
      mb[k] = sb[i];
    } else {
      dims.push(d);
      ma.push(sa[i]);
      mb.push(sb[i]);
    }
  });
  if (dims.length === 0) return { dims: [1], sa: [0], sb: [0] };
  return { dims, sa: ma, sb: mb };
}

/** Numpy broadcasting of two shapes; throws naming `op` when they do not broadcast. */
export function broadcastShapes(
  op: string,
  a: readonly number[],
  b: readonly number[],
): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1, db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Element strides of `shape` aligned to `out` (right-aligned), 0 along broadcast dims. */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): number[] {
  const strides = new Array(out.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const j = out.length - shape.length + i;
    strides[j] = shape[i] === 1 ? 0 : s;
    s *= shape[i];
  }
  return strides;
}

function binary(gpu: Gpu, op: "add" | "mul", a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) throw new Error(`${op}: dtypes differ (${a.dtype} and ${b.dtype})`);
  const shape = broadcastShapes(op, a.shape, b.shape);
  if (shape.length > MAX_RANK) {
    throw new Error(`${op}: at most ${MAX_RANK} dims, got ${fmtShape(shape)}`);
  }
  const y = gpu.empty(shape, a.dtype, op);
  if (y.size === 0) return y;
  const whole = (t: Tensor) => ({ t, shape: t.shape, off: 0 });
  if (fitsOneBinding(gpu, [a, b, y])) {
    binaryOnce(gpu, op, whole(a), whole(b), whole(y));
  } else if (fmtShape(a.shape) === fmtShape(b.shape)) {
    for (const [s, n] of bindingRuns(gpu, op, y.size, [a, b, y], "element")) {
      const w = (t: Tensor) => whole(t.window(y.size, s, n));
      binaryOnce(gpu, op, w(a), w(b), w(y));
    }
  } else {
    binaryChunked(gpu, op, a, b, y);
  }
  return y;
}

/** A binary operand: tensor `t` bound whole, holding the logical `shape` from element `off`. */
interface Operand {
  t: Tensor;
  shape: readonly number[];
  off: number;
}

/**
 * A broadcast add / mul whose operands exceed one binding: split along the first output dim `d`
 * whose items (with each operand's matching slab) fit, one launch per run of items within each
 * index of the dims before `d`. Windows start on the binding alignment; the kernel's offsets
 * say where the run starts in them. An operand broadcast along `d` binds its one slab.
 */
function binaryChunked(gpu: Gpu, op: "add" | "mul", a: Tensor, b: Tensor, y: Tensor): void {
  const shape = y.shape, rank = shape.length;
  const aligned = (t: Tensor) => [...Array(rank - t.rank).fill(1), ...t.shape];
  const [as, bs] = [aligned(a), aligned(b)];
  const limit = gpu.limits.maxStorageBufferBindingSize - gpu.limits.minStorageBufferOffsetAlignment;
  const bytes = dtypeBytes(y.dtype);
  let d = 0;
  while (d < rank && [shape, as, bs].some((s) => numel(s.slice(d + 1)) * bytes > limit)) d++;
  if (d === rank) {
    throw new EngineLimitError(`${op}: one element row of ${fmtShape(shape)} exceeds a binding`);
  }
  const prefix = shape.slice(0, d), outer = numel(prefix);
  const digits = new Array<number>(d);
  for (let p = 0; p < outer; p++) {
    for (let j = d - 1, r = p; j >= 0; j--) {
      digits[j] = r % prefix[j];
      r = Math.floor(r / prefix[j]);
    }
    // Element offset of this prefix's slab in a tensor of (aligned) shape s.
    const base = (s: readonly number[]) => {
      let idx = 0;
      for (let j = 0; j < d; j++) idx = idx * s[j] + (s[j] === 1 ? 0 : digits[j]);
      return idx * numel(s.slice(d));
    };
    const operands = [[y, shape], [a, as], [b, bs]] as const;
    const sizing = operands
      .filter(([, s]) => s[d] === shape[d])
      .map(([t, s]) => t.window(t.size, base(s), numel(s.slice(d))));
    for (const [s, n] of bindingRuns(gpu, op, shape[d], sizing, "item", { unaligned: true })) {
      const [yo, ao, bo] = operands.map(([t, sh]): Operand => {
        const inner = numel(sh.slice(d + 1));
        const along = sh[d] === shape[d];
        const start = base(sh) + (along ? s * inner : 0), count = along ? n * inner : inner;
        const logical = [along ? n : 1, ...sh.slice(d + 1)];
        if (fitsOneBinding(gpu, [t])) return { t, shape: logical, off: start };
        const w = alignedWindow(gpu, t, start, count);
        return { t: w.window, shape: logical, off: w.offset };
      });
      binaryOnce(gpu, op, ao, bo, yo);
    }
  }
}

/** One binary launch (every operand fits one binding). */
function binaryOnce(gpu: Gpu, op: "add" | "mul", a: Operand, b: Operand, y: Operand): void {
  const size = numel(y.shape);
  if (size === 0) return;
  const offsets = (
    u: number,
    sa: boolean,
    sb: boolean,
  ) => [a.off / (sa ? 1 : u), b.off / (sb ? 1 : u), y.off / u];
  if (fmtShape(a.shape) === fmtShape(b.shape) && a.off === 0 && b.off === 0 && y.off === 0) {
    const v4 = size % 4 === 0;
    const n = unitsOf(size, v4);
    const params = new Params().u32(n).u32(0);
    for (let k = 0; k < 3 * MAX_RANK + 3; k++) params.u32(k < MAX_RANK ? 1 : 0); // unused
    gpu.dispatch(binaryKernel, {
      dtype: y.t.dtype,
      variant: { op, same: true, vec: v4, splatA: false, splatB: false },
      params,
      bindings: [a.t, b.t, y.t],
      groups: launch1d(n),
    });
    return;
  }
  const m = mergeBroadcastDims(
    y.shape,
    broadcastStrides(a.shape, y.shape),
    broadcastStrides(b.shape, y.shape),
  );
  const rank = m.dims.length, last = rank - 1;
  const splat = (st: number[]) => st[last] === 0;
  // vec4: 4 consecutive outputs read 4 consecutive elements of an input, or 1 splatted element;
  // every offset counted in its operand's load units must be whole.
  const v4 = m.dims[last] % 4 === 0 &&
    offsets(4, splat(m.sa), splat(m.sb)).every(Number.isInteger);
  if (v4) {
    m.dims[last] /= 4;
    for (const st of [m.sa, m.sb]) {
      if (!splat(st)) { for (let k = 0; k < last; k++) st[k] /= 4; }
    }
  }
  const pad = MAX_RANK - rank;
  const n = unitsOf(size, v4);
  const params = new Params().u32(n).u32(rank);
  for (const v of [...Array(pad).fill(1), ...m.dims]) params.u32(v);
  for (const st of [m.sa, m.sb]) for (const v of [...Array(pad).fill(0), ...st]) params.u32(v);
  for (const o of offsets(v4 ? 4 : 1, v4 && splat(m.sa), v4 && splat(m.sb))) params.u32(o);
  gpu.dispatch(binaryKernel, {
    dtype: y.t.dtype,
    variant: { op, same: false, vec: v4, splatA: v4 && splat(m.sa), splatB: v4 && splat(m.sb) },
    params,
    bindings: [a.t, b.t, y.t],
    groups: launch1d(n),
  });
}

/**
 * `a + b` with numpy broadcasting (either side, up to 6 dims).
 *
 * @example
 * ```ts
 * const h = add(gpu, x, residual);      // same shape
 * const t = add(gpu, h, embProj);       // [N, C, H, W] + [N, C, 1, 1]
 * ```
 */
export function add(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  return taped(gpu, {
    name: "add",
    inputs: [a, b],
    output: binary(gpu, "add", a, b),
    saved: [],
    // d(a + b) = gy, summed over the dims each operand was broadcast along.
    backward: (gy, needs) => [a, b].map((t, i) => needs[i] ? sumTo(gpu, gy, t.shape) : null),
  });
}

/**
 * `a * b` with numpy broadcasting (either side, up to 6 dims).
 *
 * @example
 * ```ts
 * const y = mul(gpu, x, gate); // [B, L, C] * [B, L, C]
 * ```
 */
export function mul(gpu: Gpu, a: Tensor, b: Tensor): Tensor {
  return taped(gpu, {
    name: "mul",
    inputs: [a, b],
    output: binary(gpu, "mul", a, b),
    saved: [a, b],
    // d(a * b) / da = gy * b (broadcast shape), summed to a's shape; likewise for b.
    backward: (gy, needs) => [
      needs[0] ? reduceTo(gpu, binary(gpu, "mul", gy, b), a.shape) : null,
      needs[1] ? reduceTo(gpu, binary(gpu, "mul", gy, a), b.shape) : null,
    ],
  });
}

/** `t` itself when it already has `shape`'s element count (a fresh tensor), else its sumTo. */
function reduceTo(gpu: Gpu, t: Tensor, shape: readonly number[]): Tensor {
  return numel(shape) === t.size ? t : sumTo(gpu, t, shape);
}

// ---------------------------------------------------------------- sum_to (broadcast gradients)

/** Compile-time options of the sum_to kernel. */
interface SumToVariant {
  /**
   * One workgroup per output, its threads splitting the reduced elements (wg_sum); else one
   * thread per output looping over them.
   */
  group: boolean;
}

function sumToSource(dtype: DType, variant: SumToVariant): string {
  const decompose = (fn: string, d: string, st: string) =>
    `fn ${fn}(idx: u32) -> u32 {
  var r = idx;
  var off = 0u;
${
      DIMS.slice().reverse().map((k) =>
        `  { let c = r % p.${d}${k}; r = r / p.${d}${k}; off += c * p.${st}${k}; }`
      ).join("\n")
    }
  return off;
}`;
  const body = variant.group
    ? `${mainPerGroupWgsl("o", "p.n")}
  let base = kept_offset(o);
  var s = 0.0;
  for (var r = lid; r < p.r; r += WG) { s += f32(x[base + reduced_offset(r)]); }
  let total = wg_sum(s, lid);
  if (lid == 0u) { y[o] = T(total); }
}`
    : `${MAIN_1D_WGSL}
  let base = kept_offset(i);
  var s = 0.0;
  for (var r = 0u; r < p.r; r++) { s += f32(x[base + reduced_offset(r)]); }
  y[i] = T(s);
}`;
  return /* wgsl */ `
// sum_to (${variant.group ? "group" : "thread"}): 1 x (T), 2 y [n] (T). Output o is an index
// over the kept dims (sizes kd*, x strides ks*), and y[o] = sum over the p.r indices of the
// reduced dims (sizes rd*, x strides rs*) of x[kept_offset(o) + reduced_offset(r)], in f32.
${prelude(dtype, { reductions: variant.group })}
struct Params { n: u32, r: u32, ${DIMS.map((k) => `kd${k}: u32`).join(", ")},
  ${DIMS.map((k) => `ks${k}: u32`).join(", ")}, ${DIMS.map((k) => `rd${k}: u32`).join(", ")},
  ${DIMS.map((k) => `rs${k}: u32`).join(", ")} }
${bindingsWgsl(["x: array<T>", "y: array<T>"])}
${decompose("kept_offset", "kd", "ks")}
${decompose("reduced_offset", "rd", "rs")}

${body}`;
}

const sumToKernel = defineKernel<SumToVariant>("sum_to", {
  key: (v) => v.group ? "group" : "thread",
  source: ({ dtype, variant }) => sumToSource(dtype, variant),
});

/** Reductions at most this long run one thread per output whatever the layout. */
const SUM_TO_SERIAL_MAX = 32;

/**
 * Sums `x` over the dims along which `shape` was broadcast to x's shape (numpy rules: `shape`
 * right-aligned, each of its dims 1 or equal to x's): the gradient of a broadcast operand. The
 * result has `shape`. Accumulates in f32; deterministic (no atomics). When x's innermost dim is
 * kept (e.g. a bias `[C]` of `[B, L, C]`) one thread per output loops over the reduced elements
 * (neighbouring threads read neighbouring memory); when it is reduced (e.g. `[1, C, 1, 1]` of
 * `[N, C, H, W]`) one workgroup per output splits them and combines with `wg_sum`. x must fit
 * one storage binding.
 *
 * @example
 * ```ts
 * const gBias = sumTo(gpu, gy, [1, 320, 1, 1]); // [2, 320, 16, 16] -> [1, 320, 1, 1]
 * ```
 */
export function sumTo(gpu: Gpu, x: Tensor, shape: readonly number[]): Tensor {
  const off = x.rank - shape.length;
  if (
    x.rank > MAX_RANK || off < 0 || shape.some((d, i) => d !== 1 && d !== x.shape[off + i])
  ) {
    throw new Error(
      `sum_to: expected a shape that broadcasts to x ${fmtShape(x.shape)} (at most ${MAX_RANK} ` +
        `dims), got ${fmtShape(shape)}`,
    );
  }
  const y = gpu.empty(shape, x.dtype, "sum_to");
  if (y.size === 0) return y;
  if (y.size === x.size) {
    gpu.copy(x, y); // nothing to reduce (only size-1 dims differ)
    return y;
  }
  // Classify x's dims (size-1 dims dropped) as kept or reduced; merge neighbours of one class.
  const kd: number[] = [], ks: number[] = [], rd: number[] = [], rs: number[] = [];
  let stride = 1, last: "k" | "r" | null = null, innermost: "k" | "r" | null = null;
  for (let i = x.rank - 1; i >= 0; i--) {
    const d = x.shape[i];
    if (d === 1) continue;
    const cls = i >= off && shape[i - off] === d ? "k" : "r";
    const [ds, ss] = cls === "k" ? [kd, ks] : [rd, rs];
    innermost ??= cls;
    if (last === cls) ds[ds.length - 1] *= d;
    else {
      ds.push(d);
      ss.push(stride);
    }
    last = cls;
    stride *= d;
  }
  const reduced = rd.reduce((u, v) => u * v, 1);
  const group = innermost === "r" && reduced > SUM_TO_SERIAL_MAX;
  const padded = (v: number[], fill: number) => [...Array(MAX_RANK - v.length).fill(fill), ...v];
  const params = new Params().u32(y.size).u32(reduced);
  // Listed innermost first above: reverse into outer-to-inner order, padded in front.
  for (const [v, fill] of [[kd, 1], [ks, 0], [rd, 1], [rs, 0]] as const) {
    for (const u of padded([...v].reverse(), fill)) params.u32(u);
  }
  gpu.dispatch(sumToKernel, {
    dtype: x.dtype,
    variant: { group },
    params,
    bindings: [x, y],
    groups: group ? grid1d(y.size) : launch1d(y.size),
  });
  return y;
}

// ---------------------------------------------------------------- activations and GEGLU

const unaryKernel = defineKernel<VecVariant & { op: UnaryOp }>("unary", {
  key: (v) => `${v.op}:${vecKey(v)}`,
  source: ({ dtype, variant }) => /* wgsl */ `
// unary (${variant.op}): 1 x [n], 2 y [n] (as V units).
${prelude(dtype, { ...variant, activations: true })}
struct Params { n: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  y[i] = V(${variant.op}(VF(x[i])));
}`,
});

/**
 * An activation over every element: `silu`, `gelu` (exact erf form) or `quick_gelu`
 * (`x * sigmoid(1.702 x)`, CLIP).
 *
 * @example
 * ```ts
 * const h = unary(gpu, x, "silu");
 * ```
 */
export function unary(gpu: Gpu, x: Tensor, op: UnaryOp): Tensor {
  if (!UNARY_OPS.includes(op)) {
    throw new Error(`unary: expected op ${UNARY_OPS.join(" | ")}, got ${JSON.stringify(op)}`);
  }
  const y = gpu.empty(x.shape, x.dtype, op);
  for (const [s, count] of bindingRuns(gpu, op, x.size, [x, y], "element")) {
    if (count === 0) continue;
    const v4 = count % 4 === 0;
    const n = unitsOf(count, v4);
    gpu.dispatch(unaryKernel, {
      dtype: x.dtype,
      variant: { op, vec: v4 },
      params: new Params().u32(n),
      bindings: [x.window(x.size, s, count), y.window(y.size, s, count)],
      groups: launch1d(n),
    });
  }
  return taped(gpu, {
    name: op,
    inputs: [x],
    output: y,
    saved: [x],
    backward: (gy, needs) => [needs[0] ? unaryBackward(gpu, x, gy, op) : null],
  });
}

/**
 * Derivatives of the activations over `VF` (with the prelude's `erf`): sigmoid's argument is
 * clamped so that `exp` never overflows (the result is 0 or 1 there anyway).
 */
const DERIVATIVES_WGSL =
  `fn sigmoid(v: VF) -> VF { return VF(1.0) / (VF(1.0) + exp(-clamp(v, VF(-80.0), VF(80.0)))); }
// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x).
fn d_silu(v: VF) -> VF { let s = sigmoid(v); return s * (VF(1.0) + v * (VF(1.0) - s)); }
// gelu'(x) = Phi(x) + x phi(x): the normal CDF and density.
fn d_gelu(v: VF) -> VF {
  let z = clamp(v, VF(-10.0), VF(10.0));
  return 0.5 * (VF(1.0) + erf(v * 0.7071067811865476)) + v * 0.3989422804014327 * exp(-0.5 * z * z);
}
// quick_gelu'(x) = s (1 + 1.702 x (1 - s)), s = sigmoid(1.702 x).
fn d_quick_gelu(v: VF) -> VF {
  let s = sigmoid(1.702 * v);
  return s * (VF(1.0) + 1.702 * v * (VF(1.0) - s));
}`;

const unaryBackwardKernel = defineKernel<VecVariant & { op: UnaryOp }>("unary_backward", {
  key: (v) => `${v.op}:${vecKey(v)}`,
  source: ({ dtype, variant }) => /* wgsl */ `
// unary_backward (${variant.op}): 1 x [n], 2 gy [n], 3 gx [n] (as V units): gx = gy * ${variant.op}'(x).
${prelude(dtype, { ...variant, activations: true })}
${DERIVATIVES_WGSL}
struct Params { n: u32 }
${bindingsWgsl(["x: array<V>", "gy: array<V>", "gx: array<V>"])}

${MAIN_1D_WGSL}
  gx[i] = V(VF(gy[i]) * d_${variant.op}(VF(x[i])));
}`,
});

/** dL/dx of `unary(x, op)` given dL/dy. */
function unaryBackward(gpu: Gpu, x: Tensor, gy: Tensor, op: UnaryOp): Tensor {
  const gx = gpu.empty(x.shape, x.dtype, `${op}_backward`);
  for (const [s, count] of bindingRuns(gpu, `${op}_backward`, x.size, [x, gy, gx], "element")) {
    if (count === 0) continue;
    const v4 = count % 4 === 0;
    const n = unitsOf(count, v4);
    gpu.dispatch(unaryBackwardKernel, {
      dtype: x.dtype,
      variant: { op, vec: v4 },
      params: new Params().u32(n),
      bindings: [x, gy, gx].map((t) => t.window(x.size, s, count)),
      groups: launch1d(n),
    });
  }
  return gx;
}

const gegluKernel = defineKernel<VecVariant>("geglu", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// geglu: 1 x [rows, 2 * nu] (as V units), 2 y [rows, nu]: y = x[:, :nu] * gelu(x[:, nu:]).
${prelude(dtype, { ...variant, activations: true })}
struct Params { n: u32, nu: u32 }
${bindingsWgsl(["x: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let row = i / p.nu;
  let o = i + row * p.nu; // = row * 2nu + (i - row * nu)
  y[i] = V(VF(x[o]) * gelu(VF(x[o + p.nu])));
}`,
});

/**
 * GEGLU of `x [..., 2N]` -> `[..., N]`: `hidden * gelu(gate)` with `hidden, gate = chunk(x, 2)`
 * (diffusers' GEGLU, exact GELU).
 *
 * @example
 * ```ts
 * const h = geglu(gpu, proj); // [B, L, 2 * 1280] -> [B, L, 1280]
 * ```
 */
export function geglu(gpu: Gpu, x: Tensor): Tensor {
  const last = x.shape[x.rank - 1];
  if (x.rank < 1 || last % 2 !== 0) {
    throw new Error(`geglu: expected x [..., 2N] with an even last dim, got ${fmtShape(x.shape)}`);
  }
  const half = last / 2;
  const shape = [...x.shape.slice(0, -1), half];
  const y = gpu.empty(shape, x.dtype, "geglu");
  if (y.size === 0) return y;
  const v4 = half % 4 === 0;
  const rows = y.size / half;
  for (const [s, count] of bindingRuns(gpu, "geglu", rows, [x, y], "row")) {
    const n = unitsOf(count * half, v4);
    gpu.dispatch(gegluKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(unitsOf(half, v4)),
      bindings: [x.window(rows, s, count), y.window(rows, s, count)],
      groups: launch1d(n),
    });
  }
  return taped(gpu, {
    name: "geglu",
    inputs: [x],
    output: y,
    saved: [x],
    backward: (gy, needs) => [needs[0] ? gegluBackward(gpu, x, gy) : null],
  });
}

const gegluBackwardKernel = defineKernel<VecVariant>("geglu_backward", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// geglu_backward: 1 x [rows, 2 * nu], 2 gy [rows, nu], 3 gx [rows, 2 * nu] (as V units). With
// a = x[:, :nu], b = x[:, nu:]: gx[:, :nu] = gy * gelu(b), gx[:, nu:] = gy * a * gelu'(b).
${prelude(dtype, { ...variant, activations: true })}
${DERIVATIVES_WGSL}
struct Params { n: u32, nu: u32 }
${bindingsWgsl(["x: array<V>", "gy: array<V>", "gx: array<V>"])}

${MAIN_1D_WGSL}
  let row = i / p.nu;
  let o = i + row * p.nu;
  let a = VF(x[o]);
  let b = VF(x[o + p.nu]);
  let g = VF(gy[i]);
  gx[o] = V(g * gelu(b));
  gx[o + p.nu] = V(g * a * d_gelu(b));
}`,
});

/** dL/dx of `geglu(x)` given dL/dy. */
function gegluBackward(gpu: Gpu, x: Tensor, gy: Tensor): Tensor {
  const half = x.shape[x.rank - 1] / 2;
  const gx = gpu.empty(x.shape, x.dtype, "geglu_backward");
  if (gx.size === 0) return gx;
  const v4 = half % 4 === 0;
  const rows = gy.size / half;
  for (const [s, count] of bindingRuns(gpu, "geglu_backward", rows, [x, gy, gx], "row")) {
    const n = unitsOf(count * half, v4);
    gpu.dispatch(gegluBackwardKernel, {
      dtype: x.dtype,
      variant: { vec: v4 },
      params: new Params().u32(n).u32(unitsOf(half, v4)),
      bindings: [x, gy, gx].map((t) => t.window(rows, s, count)),
      groups: launch1d(n),
    });
  }
  return gx;
}

// ---------------------------------------------------------------- combinations

const combineKernel = defineKernel<VecVariant & { terms: number }>("linear_combination", {
  key: (v) => `${v.terms}:${vecKey(v)}`,
  source: ({ dtype, variant }) => {
    const k = variant.terms;
    const xs = [...Array(k).keys()];
    return /* wgsl */ `
// linear_combination of ${k} terms: ${xs.map((i) => `${i + 1} x${i} [n]`).join(", ")}, ${
      k + 1
    } y [n] (as V units).
// y = sum_i c_i * x_i, accumulated in f32.
${prelude(dtype, variant)}
struct Params { n: u32, c0: f32, c1: f32, c2: f32, c3: f32 }
${bindingsWgsl([...xs.map((i) => `x${i}: array<V>`), "y: array<V>"])}

${MAIN_1D_WGSL}
  y[i] = V(${xs.map((j) => `p.c${j} * VF(x${j}[i])`).join(" + ")});
}`;
  },
});

/** One term of {@link linearCombination}. */
export interface LinearTerm {
  /** Coefficient. */
  c: number;
  /** Tensor (all terms share shape and dtype). */
  x: Tensor;
}

/**
 * `sum_i terms[i].c * terms[i].x` over 1..4 same-shape terms (scheduler updates); coefficients
 * go into the uniform params, so any values reuse one pipeline. On a tape the gradient of term i
 * is `c_i * gy`.
 *
 * @example
 * ```ts
 * // DDIM: x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps
 * const prev = linearCombination(gpu, [{ c: ca, x: x0 }, { c: ce, x: eps }]);
 * ```
 */
export function linearCombination(gpu: Gpu, terms: readonly LinearTerm[]): Tensor {
  if (terms.length < 1 || terms.length > 4) {
    throw new Error(`linear_combination: expected 1 to 4 terms, got ${terms.length}`);
  }
  const first = terms[0].x;
  for (const t of terms) {
    if (fmtShape(t.x.shape) !== fmtShape(first.shape) || t.x.dtype !== first.dtype) {
      throw new Error(
        `linear_combination: expected every term ${fmtShape(first.shape)} ${first.dtype}, ` +
          `got ${fmtShape(t.x.shape)} ${t.x.dtype}`,
      );
    }
  }
  const y = gpu.empty(first.shape, first.dtype, "linear_combination");
  if (y.size === 0) return y;
  const all = [...terms.map((t) => t.x), y];
  for (const [s, count] of bindingRuns(gpu, "linear_combination", y.size, all, "element")) {
    const v4 = count % 4 === 0;
    const n = unitsOf(count, v4);
    const params = new Params().u32(n);
    for (let i = 0; i < 4; i++) params.f32(terms[i]?.c ?? 0);
    gpu.dispatch(combineKernel, {
      dtype: first.dtype,
      variant: { terms: terms.length, vec: v4 },
      params,
      bindings: all.map((t) => t.window(y.size, s, count)),
      groups: launch1d(n),
    });
  }
  return taped(gpu, {
    name: "linear_combination",
    inputs: terms.map((t) => t.x),
    output: y,
    saved: [],
    // d(sum_i c_i x_i) / dx_i = c_i.
    backward: (gy, needs) =>
      terms.map((t, i) => needs[i] ? linearCombination(gpu, [{ c: t.c, x: gy }]) : null),
  });
}

/**
 * `x * s` (latents / scaling_factor, scale_model_input). On a tape its gradient is `gy * s`
 * (recorded by {@link linearCombination}).
 *
 * @example
 * ```ts
 * const z = scale(gpu, latents, 1 / 0.18215);
 * ```
 */
export function scale(gpu: Gpu, x: Tensor, s: number): Tensor {
  return linearCombination(gpu, [{ c: s, x }]);
}

const cfgKernel = defineKernel<VecVariant>("cfg_combine", {
  key: vecKey,
  source: ({ dtype, variant }) => /* wgsl */ `
// cfg_combine: 1 uncond, 2 cond (the prediction [2, n] bound twice, or one window of each
// half), 3 y [n] (as V units): y = u + g * (c - u) with u = uncond[i], c = cond[i + coff].
${prelude(dtype, variant)}
struct Params { n: u32, g: f32, coff: u32 }
${bindingsWgsl(["uncond: array<V>", "cond: array<V>", "y: array<V>"])}

${MAIN_1D_WGSL}
  let u = VF(uncond[i]);
  y[i] = V(u + p.g * (VF(cond[i + p.coff]) - u));
}`,
});

/**
 * Classifier-free guidance: `pred [2B, ...] = cat([uncond, cond])` -> `[B, ...]` with
 * `u + guidance * (c - u)` (diffusers' order of operations).
 *
 * @example
 * ```ts
 * const eps = cfgCombine(gpu, unetOut, 7.5); // [2 * 16, 4, 64, 64] -> [16, 4, 64, 64]
 * ```
 */
export function cfgCombine(gpu: Gpu, pred: Tensor, guidance: number): Tensor {
  if (pred.rank < 1 || pred.shape[0] % 2 !== 0) {
    throw new Error(`cfg_combine: expected pred [2B, ...], got ${fmtShape(pred.shape)}`);
  }
  const shape = [pred.shape[0] / 2, ...pred.shape.slice(1)];
  const y = gpu.empty(shape, pred.dtype, "cfg_combine");
  if (y.size === 0) return y;
  if (pred.byteLength <= gpu.limits.maxStorageBufferBindingSize) {
    // One binding of the prediction read twice: the cond half starts n units in.
    cfgLaunch(gpu, pred, pred, y, guidance, y.size);
    return y;
  }
  guideInto(gpu, pred.window(2, 0, 1), pred.window(2, 1, 1), y, guidance);
  return y;
}

/**
 * Classifier-free guidance of two separate predictions (the unconditional and conditional UNet
 * passes run one after the other): `u + guidance * (c - u)`, same shape as either.
 *
 * @example
 * ```ts
 * const eps = cfgGuide(gpu, uncond, cond, 7.5); // [16, 4, 64, 64] each
 * ```
 */
export function cfgGuide(gpu: Gpu, uncond: Tensor, cond: Tensor, guidance: number): Tensor {
  if (fmtShape(uncond.shape) !== fmtShape(cond.shape) || uncond.dtype !== cond.dtype) {
    throw new Error(
      `cfg_combine: expected uncond and cond of one shape and dtype, got ${
        fmtShape(uncond.shape)
      } ${uncond.dtype} and ${fmtShape(cond.shape)} ${cond.dtype}`,
    );
  }
  const y = gpu.empty(uncond.shape, uncond.dtype, "cfg_combine");
  if (y.size > 0) guideInto(gpu, uncond, cond, y, guidance);
  return y;
}

function guideInto(gpu: Gpu, u: Tensor, c: Tensor, y: Tensor, guidance: number): void {
  for (const [s, count] of bindingRuns(gpu, "cfg_combine", y.size, [u, c, y], "element")) {
    const w = (t: Tensor) => t.window(y.size, s, count);
    cfgLaunch(gpu, w(u), w(c), w(y), guidance, 0);
  }
}

/** One guidance launch over y's elements; cond is read from element `condOffset` on. */
function cfgLaunch(
  gpu: Gpu,
  u: Tensor,
  c: Tensor,
  y: Tensor,
  guidance: number,
  condOffset: number,
): void {
  const v4 = y.size % 4 === 0;
  const n = unitsOf(y.size, v4);
  gpu.dispatch(cfgKernel, {
    dtype: y.dtype,
    variant: { vec: v4 },
    params: new Params().u32(n).f32(guidance).u32(unitsOf(condOffset, v4)),
    bindings: [u, c, y],
    groups: launch1d(n),
  });
}
