/**
 * A CPU random generator that reproduces `torch.Generator("cpu")` bit for bit:
 * `torch.Generator().manual_seed(seed); torch.randn(shape, generator=g)` in float32.
 *
 * torch draws from an mt19937 engine and turns uniforms into normals in one of two ways:
 * - tensors with >= 16 elements (contiguous float32): all uniforms are drawn first (24-bit
 *   floats), then every 16-element chunk becomes 16 normals by Box-Muller (elements j and
 *   j + 8 pair up). A size that is not a multiple of 16 redraws 16 fresh uniforms for the
 *   last 16 elements and recomputes them. x86-64 builds with AVX2 compute the chunk with the
 *   float32 Cephes polynomials of `avx_mathfun.h` (`log256_ps`, `sincos256_ps`), emulated
 *   here operation by operation with `Math.fround`, including the fused multiply-adds that
 *   GCC contracts `a * b + c` into under `-mfma` (checked bitwise against torch's output).
 * - smaller tensors: one double-precision Box-Muller per pair of values from two 53-bit
 *   uniforms; the second value (sine) is cached in the generator and returned by the next draw.
 *
 * @module
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** Size from which torch switches to the chunked (vectorised) normal sampler. */
const VECTOR_MIN_SIZE = 16;

/** Which float32 Box-Muller implementation torch was built with for tensors of >= 16 elements. */
export type NormalChunkPath = "avx2" | "scalar";

/** Options of {@link TorchGenerator}. */
export interface TorchGeneratorOptions {
  /**
   * `"avx2"` (default): the AVX2 kernel that x86-64 torch wheels use. `"scalar"`: the generic
   * `normal_fill_16` (libm `logf`/`cosf`/`sinf`, as on builds without AVX2, e.g. ARM).
   */
  chunkPath?: NormalChunkPath;
}

/**
 * torch-compatible CPU generator (mt19937 + torch's normal samplers).
 *
 * @example
 * ```ts
 * const g = new TorchGenerator(42);
 * const latents = g.randn([1, 4, 16, 64, 64]); // == torch.randn(..., generator=Generator().manual_seed(42))
 * ```
 */
/** A {@link TorchGenerator}'s state as plain JSON (see `getState`). */
export interface GeneratorState {
  /** The 624 mt19937 words. */
  words: number[];
  /** Position in the words. */
  index: number;
  /** The cached second value of the last normal pair, or null. */
  nextDoubleNormal: number | null;
}

export class TorchGenerator {
  /** The seed as torch stores it (unsigned 64-bit). */
  readonly seed: bigint;
  /** Box-Muller implementation used for tensors of >= 16 elements. */
  readonly chunkPath: NormalChunkPath;
  #state = new Uint32Array(N);
  #index = N;
  #nextDoubleNormal: number | undefined;

  /** Seeds like `torch.Generator().manual_seed(seed)` (the engine uses the low 32 bits). */
  constructor(seed: number | bigint, options: TorchGeneratorOptions = {}) {
    if (typeof seed === "number" && !Number.isSafeInteger(seed)) {
      throw new Error(`TorchGenerator: seed must be an integer, got ${seed}`);
    }
    this.seed = BigInt.asUintN(64, BigInt(seed));
    this.chunkPath = options.chunkPath ?? "avx2";
    const s = this.#state;
    s[0] = Number(this.seed & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1] ^ (s[j - 1] >>> 30);
      s[j] = (Math.imul(1812433253, prev) + j) >>> 0;
    }
    this.#index = N;
  }

  /**
   * The generator's whole state (mt19937 words, position, cached normal), for checkpoints that
   * resume a run exactly; {@link setState} restores it.
   *
   * @example
   * ```ts
   * const saved = g.getState();
   * const a = g.randn([4]);
   * g.setState(saved);
   * const b = g.randn([4]); // equal to a
   * ```
   */
  getState(): GeneratorState {
    return {
      words: [...this.#state],
      index: this.#index,
      nextDoubleNormal: this.#nextDoubleNormal ?? null,
    };
  }

  /** Restores a state from {@link getState} (checked). */
  setState(state: GeneratorState): void {
    const ok = Array.isArray(state?.words) && state.words.length === N &&
      state.words.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) &&
      Number.isInteger(state.index) && state.index >= 0 && state.index <= N &&
      (state.nextDoubleNormal === null || Number.isFinite(state.nextDoubleNormal));
    if (!ok) throw new Error("TorchGenerator.setState: not a generator state");
    this.#state.set(state.words);
    this.#index = state.index;
    this.#nextDoubleNormal = state.nextDoubleNormal ?? undefined;
  }

  /** Next raw 32-bit output of the mt19937 engine (`generator->random()`). */
  nextUint32(): number {
    if (this.#index >= N) this.#twist();
    let y = this.#state[this.#index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Uniform float32 in [0, 1) as torch's `uniform_real_distribution<float>` (24 random bits). */
  nextFloatUniform(): number {
    return (this.nextUint32() & 0xffffff) / 16777216;
  }

  /** Uniform double in [0, 1) as `uniform_real_distribution<double>` (53 bits of `random64()`). */
  nextDoubleUniform(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
  }

  /**
   * One standard normal from torch's `normal_distribution<double>` (used for tensors with
   * fewer than 16 elements), including its cached second value.
   */
  nextDoubleNormal(): number {
    if (this.#nextDoubleNormal !== undefined) {
      const cached = this.#nextDoubleNormal;
      this.#nextDoubleNormal = undefined;
      return cached;
    }
    const u1 = this.nextDoubleUniform();
    const u2 = this.nextDoubleUniform();
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.#nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * `torch.randn(shape, generator=this)` as float32, continuing this generator's stream.
   *
   * @example
   * ```ts
   * const g = new TorchGenerator(1004);
   * const a = g.randn([1, 4, 2, 4, 4]), b = g.randn([1, 4, 2, 4, 4]); // two consecutive draws
   * ```
   */
  randn(shape: readonly number[]): Float32Array {
    let size = 1;
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new Error(
          `TorchGenerator.randn: shape must hold non-negative integers, got [${shape}]`,
        );
      }
      size *= d;
    }
    const out = new Float32Array(size);
    if (size < VECTOR_MIN_SIZE) {
      for (let i = 0; i < size; i++) out[i] = this.nextDoubleNormal();
      return out;
    }
    for (let i = 0; i < size; i++) out[i] = this.nextFloatUniform();
    const chunk = this.chunkPath === "avx2" ? boxMuller16Avx2 : boxMuller16Scalar;
    for (let i = 0; i + VECTOR_MIN_SIZE <= size; i += VECTOR_MIN_SIZE) chunk(out, i);
    if (size % VECTOR_MIN_SIZE !== 0) {
      // torch recomputes the last 16 values from 16 fresh uniforms.
      const start = size - VECTOR_MIN_SIZE;
      for (let i = 0; i < VECTOR_MIN_SIZE; i++) out[start + i] = this.nextFloatUniform();
      chunk(out, start);
    }
    return out;
  }

  #twist(): void {
    const s = this.#state;
    for (let k = 0; k < N; k++) {
      const y = (s[k] & UPPER_MASK) | (s[(k + 1) % N] & LOWER_MASK);
      s[k] = s[(k + M) % N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    this.#index = 0;
  }
}

const f = Math.fround;

/**
 * Exactly rounded float32 fused multiply-add `a * b + c` of float32 inputs. The product is
 * exact in float64; the float64 sum is corrected for double rounding with its exact error.
 */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bp = s - c;
  const err = (p - bp) + (c - (s - bp)); // TwoSum: p + c == s + err exactly
  const r = f(s);
  if (err === 0 || r === s) return r;
  // Double rounding can only go wrong when s sits exactly halfway between r and a neighbour.
  const d = s - r;
  const other = r + 2 * d;
  if (other !== r && f(other) === other) return (err > 0) === (d > 0) ? other : r;
  return r;
}
const TWO_PI_F32 = f(2 * Math.PI);

/** torch's generic `normal_fill_16` in float32 (libm logf/cosf/sinf, approximated correctly rounded). */
function boxMuller16Scalar(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[offset + j]);
    const u2 = data[offset + j + 8];
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(2 * Math.PI * u2);
    data[offset + j] = f(radius * f(Math.cos(theta)));
    data[offset + j + 8] = f(radius * f(Math.sin(theta)));
  }
}

/** torch's `normal_fill_16_AVX2`: Box-Muller with the Cephes float32 log/sincos of avx_mathfun.h. */
function boxMuller16Avx2(data: Float32Array, offset: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[offset + j]);
    const u2 = data[offset + j + 8];
    const radius = f(Math.sqrt(f(-2 * logF32(u1))));
    const theta = f(TWO_PI_F32 * u2);
    const [sin, cos] = sinCosF32(theta);
    data[offset + j] = f(radius * cos);
    data[offset + j + 8] = f(radius * sin);
  }
}

const scratch = new DataView(new ArrayBuffer(4));
function floatBits(x: number): number {
  scratch.setFloat32(0, x, true);
  return scratch.getUint32(0, true);
}
function bitsFloat(bits: number): number {
  scratch.setUint32(0, bits >>> 0, true);
  return scratch.getFloat32(0, true);
}

const SQRTHF = f(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2,
  -1.1514610310e-1,
  1.1676998740e-1,
  -1.2420140846e-1,
  1.4249322787e-1,
  -1.6668057665e-1,
  2.0000714765e-1,
  -2.4999993993e-1,
  3.3333331174e-1,
].map(f);
const LOG_Q1 = f(-2.12194440e-4);
const LOG_Q2 = f(0.693359375);
const MIN_NORM_POS = bitsFloat(0x00800000);

/**
 * `log256_ps` of avx_mathfun.h for one lane (x > 0), every operation rounded to float32; the
 * Horner steps and the `e * q2` term are fused multiply-adds as GCC compiles them.
 */
function logF32(xIn: number): number {
  if (xIn <= 0) return NaN;
  const bits = floatBits(Math.max(xIn, MIN_NORM_POS));
  let e = f(((bits >>> 23) - 0x7f) + 1);
  let x = bitsFloat((bits & ~0x7f800000) | floatBits(0.5));
  const below = x < SQRTHF;
  const tmp = below ? x : 0;
  x = f(x - 1);
  if (below) e = f(e - 1);
  x = f(x + tmp);
  const z = f(x * x);
  let y = LOG_P[0];
  for (let k = 1; k < LOG_P.length; k++) y = fmaF32(y, x, LOG_P[k]);
  y = f(y * x);
  y = fmaF32(y, z, f(e * LOG_Q1));
  y = f(y - f(z * 0.5));
  x = f(x + y);
  return fmaF32(e, LOG_Q2, x);
}

const FOPI = f(1.27323954473516);
const DP1 = f(-0.78515625);
const DP2 = f(-2.4187564849853515625e-4);
const DP3 = f(-3.77489497744594108e-8);
const SIN_P = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f);
const COS_P = [2.443315711809948e-005, -1.388731625493765e-003, 4.166664568298827e-002].map(f);

/** `sincos256_ps` of avx_mathfun.h for one lane in float32, with GCC's fused multiply-adds. */
function sinCosF32(xIn: number): [number, number] {
  let signSin = xIn < 0 || Object.is(xIn, -0);
  let x = Math.abs(xIn);
  let j = Math.trunc(f(x * FOPI)) | 0;
  j = (j + 1) & ~1;
  const y = f(j);
  if (j & 4) signSin = !signSin;
  const useSinPoly = (j & 2) === 0;
  const signCos = ((~(j - 2)) & 4) !== 0;
  x = fmaF32(y, DP1, x);
  x = fmaF32(y, DP2, x);
  x = fmaF32(y, DP3, x);
  const z = f(x * x);
  let c = COS_P[0];
  c = fmaF32(c, z, COS_P[1]);
  c = fmaF32(c, z, COS_P[2]);
  c = f(c * z);
  c = fmaF32(c, z, -f(z * 0.5));
  c = f(c + 1);
  let s = SIN_P[0];
  s = fmaF32(s, z, SIN_P[1]);
  s = fmaF32(s, z, SIN_P[2]);
  s = f(s * z);
  s = fmaF32(s, x, x);
  const sinV = useSinPoly ? s : c;
  const cosV = useSinPoly ? c : s;
  return [signSin ? -sinV : sinV, signCos ? -cosV : cosV];
}
