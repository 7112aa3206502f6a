/** Small assertion helpers for Deno.test (no std library: JSR is unreachable here). */

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new AssertionError(`${msg ? msg + ": " : ""}expected ${e}, got ${a}`);
}

/** Asserts that `fn` throws (or rejects) with a message matching `pattern`. */
export async function assertRejects(
  fn: () => unknown,
  pattern?: RegExp,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e as Error;
    if (pattern && !pattern.test(err.message)) {
      throw new AssertionError(`error "${err.message}" does not match ${pattern}`);
    }
    return err;
  }
  throw new AssertionError(`expected an error${pattern ? " matching " + pattern : ""}`);
}

export interface CloseStats {
  maxAbs: number;
  maxRel: number;
  refMaxAbs: number;
}

/**
 * Compares arrays elementwise: fails on length mismatch, any NaN/Inf in `actual`, or when
 * `|a - e| > atol + rtol * |e|` anywhere. Returns error stats for reporting.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-4, msg = "" }: { atol?: number; rtol?: number; msg?: string } = {},
): CloseStats {
  const p = msg ? msg + ": " : "";
  if (actual.length !== expected.length) {
    throw new AssertionError(`${p}length ${actual.length} != expected ${expected.length}`);
  }
  let maxAbs = 0, maxRel = 0, refMaxAbs = 0, worst = -1;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!Number.isFinite(a)) throw new AssertionError(`${p}non-finite value ${a} at ${i}`);
    const d = Math.abs(a - e);
    refMaxAbs = Math.max(refMaxAbs, Math.abs(e));
    if (d > maxAbs) maxAbs = d;
    const r = d / Math.max(Math.abs(e), 1e-30);
    if (r > maxRel) maxRel = r;
    if (d > atol + rtol * Math.abs(e) && worst < 0) worst = i;
  }
  if (worst >= 0) {
    throw new AssertionError(
      `${p}mismatch at ${worst}: got ${actual[worst]}, expected ${expected[worst]} ` +
        `(max abs err ${maxAbs.toExponential(3)}, atol ${atol}, rtol ${rtol})`,
    );
  }
  return { maxAbs, maxRel, refMaxAbs };
}

/**
 * Relative error as the fixtures state it: max |a - e| / max |e|. Fails on NaN and when the
 * relative error exceeds `tol`.
 */
export function assertRelClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  msg = "",
): number {
  const p = msg ? msg + ": " : "";
  if (actual.length !== expected.length) {
    throw new AssertionError(`${p}length ${actual.length} != expected ${expected.length}`);
  }
  let maxAbs = 0, refMax = 0;
  for (let i = 0; i < actual.length; i++) {
    if (!Number.isFinite(actual[i])) {
      throw new AssertionError(`${p}non-finite value ${actual[i]} at ${i}`);
    }
    maxAbs = Math.max(maxAbs, Math.abs(actual[i] - expected[i]));
    refMax = Math.max(refMax, Math.abs(expected[i]));
  }
  const rel = maxAbs / Math.max(refMax, 1e-30);
  if (rel > tol) {
    throw new AssertionError(`${p}relative error ${rel.toExponential(3)} > ${tol}`);
  }
  return rel;
}

/** Deterministic pseudo-random numbers in [-1, 1) for test data (mulberry32). */
export function randomArray(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = (u * 2 - 1) * scale;
  }
  return out;
}
