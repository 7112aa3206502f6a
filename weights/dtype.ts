/**
 * Storage dtypes of weight files: item sizes, raw bytes -> float32 decoding (by value for
 * integers) and float32 -> F32/F16/BF16 encoding. Half-precision bit twiddling lives in
 * kernels/gpu/half.ts and is shared with the GPU uploads.
 * @module
 */

import { bf16ToF32, f16ToF32, toHalfBits } from "../kernels/gpu/half.ts";
import type { StorageDType } from "./types.ts";

/** Bytes per element of each storage dtype. */
export const ITEM_SIZE: Readonly<Record<StorageDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Whether `s` names a known storage dtype (safetensors spelling). */
export function isStorageDType(s: unknown): s is StorageDType {
  return typeof s === "string" && Object.hasOwn(ITEM_SIZE, s);
}

/** Whether the dtype holds floating-point values. */
export function isFloatDType(d: StorageDType): boolean {
  return d === "F64" || d === "F32" || d === "F16" || d === "BF16";
}

/** Number of elements of a shape (1 for a 0-d scalar). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Returns a view of `bytes` whose byteOffset is a multiple of `align` (copies when it is not). */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

/**
 * Decodes little-endian raw bytes of `dtype` into float32 values (integers by value, BOOL as 0/1).
 * @example
 * ```ts
 * const f = decodeToFloat32(new Uint8Array([0, 0x3c]), "F16"); // Float32Array [1]
 * ```
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: StorageDType): Float32Array {
  const size = ITEM_SIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new Error(
      `decodeToFloat32: ${bytes.byteLength} bytes is not a multiple of ${dtype} size`,
    );
  }
  const n = bytes.byteLength / size;
  const b = aligned(bytes, size);
  switch (dtype) {
    case "F32": {
      const src = new Float32Array(b.buffer, b.byteOffset, n);
      return new Float32Array(src);
    }
    case "F16":
      return f16ToF32(new Uint16Array(b.buffer, b.byteOffset, n));
    case "BF16":
      return bf16ToF32(new Uint16Array(b.buffer, b.byteOffset, n));
    case "F64":
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, n));
    case "I64": {
      const src = new BigInt64Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      return out;
    }
    case "I32":
      return Float32Array.from(new Int32Array(b.buffer, b.byteOffset, n));
    case "I16":
      return Float32Array.from(new Int16Array(b.buffer, b.byteOffset, n));
    case "I8":
      return Float32Array.from(new Int8Array(b.buffer, b.byteOffset, n));
    case "U8":
      return Float32Array.from(b);
    case "BOOL": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = b[i] ? 1 : 0;
      return out;
    }
  }
}

/**
 * Encodes float32 values as little-endian raw bytes of `dtype` (F16/BF16 round to nearest even;
 * integer dtypes round toward zero, BOOL is value != 0).
 * @example
 * ```ts
 * const bytes = encodeFromFloat32(new Float32Array([1]), "F16"); // Uint8Array [0, 0x3c]
 * ```
 */
export function encodeFromFloat32(values: ArrayLike<number>, dtype: StorageDType): Uint8Array {
  const n = values.length;
  switch (dtype) {
    case "F32":
      return new Uint8Array(Float32Array.from(values).buffer);
    case "F64":
      return new Uint8Array(Float64Array.from(values).buffer);
    case "F16": {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = toHalfBits(values[i]);
      return new Uint8Array(out.buffer);
    }
    case "BF16": {
      const out = new Uint16Array(n);
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      for (let i = 0; i < n; i++) {
        f[0] = values[i];
        const bits = u[0];
        out[i] = Number.isNaN(f[0])
          ? ((bits >>> 16) | 0x40) & 0xffff
          : ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
      }
      return new Uint8Array(out.buffer);
    }
    case "I64": {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = Number.isFinite(values[i]) ? BigInt(Math.trunc(values[i])) : 0n;
      }
      return new Uint8Array(out.buffer);
    }
    case "I32":
      return new Uint8Array(Int32Array.from(values, Math.trunc).buffer);
    case "I16":
      return new Uint8Array(Int16Array.from(values, Math.trunc).buffer);
    case "I8":
      return new Uint8Array(Int8Array.from(values, Math.trunc).buffer);
    case "U8":
      return Uint8Array.from(values, Math.trunc);
    case "BOOL":
      return Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
  }
}
