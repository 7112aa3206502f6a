/**
 * safetensors files: strict header validation, lazy per-tensor reads, and a streaming writer.
 * Format: u64-LE header length N, N bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets},
 * "__metadata__": {string: string}}`, then the data region (offsets are relative to it).
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { decodeToFloat32, encodeFromFloat32, isStorageDType, ITEM_SIZE, numelOf } from "./dtype.ts";
import { openRandomAccess, type RandomAccessFile } from "./random_access.ts";
import type { HostTensor, StorageDType, TensorFile } from "./types.ts";

/** Largest header we accept (the reference implementation uses the same 100 MB bound). */
export const MAX_HEADER_BYTES = 100_000_000;

/** A HostTensor that can also hand out its stored bytes unconverted (little-endian, C order). */
export interface RawHostTensor extends HostTensor {
  /** Size of the stored bytes: numel * itemsize of `dtype`. */
  readonly byteLength: number;
  /** Reads the stored bytes without conversion. */
  readRaw(): Promise<Uint8Array>;
}

/** Whether a tensor offers `readRaw()` (tensors from our file readers do). */
export function hasReadRaw(t: HostTensor): t is RawHostTensor {
  return typeof (t as Partial<RawHostTensor>).readRaw === "function";
}

/** One tensor's entry in a safetensors header; `begin`/`end` are relative to the data region. */
export interface SafetensorsEntryInfo {
  name: string;
  dtype: StorageDType;
  shape: number[];
  begin: number;
  end: number;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** Byte offset of the data region in the file (8 + header length). */
  dataStart: number;
  entries: SafetensorsEntryInfo[];
  metadata: Record<string, string>;
}

/**
 * Values of a tensor to write. A Uint8Array is taken as the raw little-endian bytes of `dtype`;
 * a BigInt64Array is raw for I64; any other typed array is converted by value to `dtype`.
 */
export type TensorValues =
  | Uint8Array
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | BigInt64Array;

/** A tensor to write; `data` may be a thunk so that a writer pulls one tensor at a time. */
export interface TensorToWrite {
  name: string;
  shape: readonly number[];
  dtype: StorageDType;
  data: TensorValues | (() => Promise<TensorValues>);
}

/** Options of writeSafetensors / encodeSafetensors. */
export interface WriteSafetensorsOptions {
  /** Written as `__metadata__` (string values only). */
  metadata?: Record<string, string>;
  /** Called after each tensor is written with bytes done / total data bytes. */
  onProgress?: (done: number, total: number, name: string) => void;
}

function readHeaderLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new InputError(`${path}: too small to be a safetensors file (${fileSize} bytes)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new InputError(
      `${path}: safetensors header length ${n} is implausible (max ${MAX_HEADER_BYTES} bytes)`,
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new InputError(
      `${path}: safetensors header length ${len} exceeds the file size ${fileSize} (truncated file?)`,
    );
  }
  if (len < 2) throw new InputError(`${path}: safetensors header length ${len} is too small`);
  return len;
}

/** A header value as an error shows it: short, and never a deep JSON dump. */
function headerValue(v: unknown): string {
  if (v === undefined) return "(missing)";
  if (Array.isArray(v)) {
    const plain = v.length <= 8 && v.every((x) => typeof x === "number" || typeof x === "string");
    return plain ? JSON.stringify(v) : `(a list of ${v.length})`;
  }
  if (v !== null && typeof v === "object") return "(an object)";
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 60)}...` : s;
}

function isIntegerList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && x >= 0);
}

/**
 * Validates a safetensors header. `bytes` is the start of the file (at least 8 + header length
 * bytes); `fileSize` the whole file's size. Throws one-line errors naming `path` and the tensor.
 * @example
 * ```ts
 * const h = parseSafetensorsHeader(fileBytes, fileBytes.byteLength, "x.safetensors");
 * h.entries[0].name;
 * ```
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileSize: number,
  path: string,
): SafetensorsHeader {
  const len = readHeaderLength(bytes, fileSize, path);
  if (bytes.byteLength < 8 + len) {
    throw new InputError(
      `${path}: safetensors header is truncated (${bytes.byteLength - 8} of ${len})`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + len));
  } catch {
    throw new InputError(`${path}: safetensors header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InputError(`${path}: safetensors header is not a JSON object`);
  }
  const dataStart = 8 + len;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntryInfo[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw new InputError(`${path}: safetensors __metadata__ is not an object of strings`);
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new InputError(`${path}: safetensors __metadata__ value of '${k}' is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    const where = `${path}: tensor '${name}'`;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new InputError(`${where}: header entry is not an object`);
    }
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (!isStorageDType(dtype)) {
      throw new InputError(
        `${where}: unknown dtype ${headerValue(dtype)} (expected one of ${
          Object.keys(ITEM_SIZE).join(" ")
        })`,
      );
    }
    if (!isIntegerList(shape)) {
      throw new InputError(`${where}: shape ${headerValue(shape)} is not a list of integers >= 0`);
    }
    if (!isIntegerList(offsets) || offsets.length !== 2 || offsets[0] > offsets[1]) {
      throw new InputError(`${where}: data_offsets ${headerValue(offsets)} are not [begin, end]`);
    }
    const [begin, end] = offsets;
    if (end > dataSize) {
      throw new InputError(
        `${where}: data_offsets [${begin}, ${end}] lie beyond the data region (${dataSize} bytes; truncated file?)`,
      );
    }
    const expected = numelOf(shape) * ITEM_SIZE[dtype];
    if (end - begin !== expected) {
      throw new InputError(
        `${where}: data_offsets span ${
          end - begin
        } bytes but shape [${shape}] ${dtype} needs ${expected}`,
      );
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1], cur = sorted[i];
    if (cur.begin < prev.end) {
      throw new InputError(
        `${path}: tensor '${cur.name}' data [${cur.begin}, ${cur.end}] overlaps tensor '${prev.name}' [${prev.begin}, ${prev.end}]`,
      );
    }
  }
  return { dataStart, entries, metadata };
}

function fileTensor(
  file: RandomAccessFile,
  name: string,
  dtype: StorageDType,
  shape: number[],
  offset: number,
  byteLength: number,
): RawHostTensor {
  const readRaw = () =>
    file.read(offset, byteLength).catch((e: Error) => {
      const Err = e instanceof InputError ? InputError : Error;
      throw new Err(`${e.message} (tensor '${name}')`);
    });
  return {
    shape,
    dtype,
    byteLength,
    readRaw,
    read: async () => decodeToFloat32(await readRaw(), dtype),
  };
}

/**
 * Opens a safetensors file lazily: only the header is read now; each tensor's `read()` reads
 * just its bytes and converts them to float32.
 * @example
 * ```ts
 * const f = await openSafetensors("unet.safetensors");
 * const w = await f.tensors.get("conv_in.weight")!.read();
 * f.close();
 * ```
 */
export async function openSafetensors(path: string): Promise<TensorFile> {
  const file = await openRandomAccess(path);
  try {
    const len = readHeaderLength(await file.read(0, Math.min(8, file.size)), file.size, path);
    const header = parseSafetensorsHeader(await file.read(0, 8 + len), file.size, path);
    const tensors = new Map<string, HostTensor>();
    for (const e of header.entries) {
      tensors.set(
        e.name,
        fileTensor(file, e.name, e.dtype, e.shape, header.dataStart + e.begin, e.end - e.begin),
      );
    }
    return {
      path,
      format: "safetensors",
      tensors,
      metadata: header.metadata,
      close: () => file.close(),
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Converts tensor values to the raw bytes of `dtype`, checking the element count. */
export function tensorBytes(
  name: string,
  shape: readonly number[],
  dtype: StorageDType,
  data: TensorValues,
): Uint8Array {
  const size = ITEM_SIZE[dtype];
  const numel = numelOf(shape);
  let bytes: Uint8Array;
  if (data instanceof Uint8Array) bytes = data;
  else if (data instanceof BigInt64Array) {
    bytes = dtype === "I64"
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : encodeFromFloat32(Array.from(data, Number), dtype);
  } else bytes = encodeFromFloat32(data, dtype);
  if (bytes.byteLength !== numel * size) {
    throw new Error(
      `tensor '${name}': ${bytes.byteLength} bytes given but shape [${shape}] ${dtype} needs ${
        numel * size
      }`,
    );
  }
  return bytes;
}

function validateToWrite(list: TensorToWrite[]): void {
  const seen = new Set<string>();
  for (const t of list) {
    if (t.name === "__metadata__" || t.name === "") {
      throw new Error(`tensor name '${t.name}' is reserved`);
    }
    if (seen.has(t.name)) throw new Error(`tensor '${t.name}' is given twice`);
    seen.add(t.name);
    if (!isStorageDType(t.dtype)) throw new Error(`tensor '${t.name}': unknown dtype ${t.dtype}`);
    if (!isIntegerList(t.shape)) throw new Error(`tensor '${t.name}': bad shape [${t.shape}]`);
  }
}

function headerBytes(list: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of list) {
    const n = numelOf(t.shape) * ITEM_SIZE[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8; // data region 8-byte aligned, as upstream
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

function dataSize(list: TensorToWrite[]): number {
  return list.reduce((s, t) => s + numelOf(t.shape) * ITEM_SIZE[t.dtype], 0);
}

/**
 * Encodes tensors as a safetensors file in memory (for small files and tests).
 * @example
 * ```ts
 * const bytes = await encodeSafetensors([{ name: "w", shape: [2], dtype: "F32", data: new Float32Array([1, 2]) }]);
 * ```
 */
export async function encodeSafetensors(
  tensors: TensorToWrite[],
  options: WriteSafetensorsOptions = {},
): Promise<Uint8Array> {
  validateToWrite(tensors);
  const head = headerBytes(tensors, options.metadata);
  const out = new Uint8Array(head.byteLength + dataSize(tensors));
  out.set(head);
  let at = head.byteLength;
  for (const t of tensors) {
    const data = typeof t.data === "function" ? await t.data() : t.data;
    const bytes = tensorBytes(t.name, t.shape, t.dtype, data);
    out.set(bytes, at);
    at += bytes.byteLength;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}

/**
 * Writes a safetensors file tensor by tensor: the header is computed from names, shapes and
 * dtypes first, then each tensor's `data` (thunks are called one at a time) is converted and
 * appended, so only one tensor is in memory at once. Writes `<path>.partial` and renames it.
 * @example
 * ```ts
 * await writeSafetensors("out.safetensors", [
 *   { name: "w", shape: [2, 2], dtype: "F16", data: new Float32Array([1, 2, 3, 4]) },
 * ], { metadata: { format: "pt" } });
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: Iterable<TensorToWrite> | AsyncIterable<TensorToWrite>,
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  const list: TensorToWrite[] = [];
  for await (const t of tensors) list.push(t);
  validateToWrite(list);
  const total = dataSize(list);
  const partial = `${path}.partial`;
  const file = await Deno.open(partial, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, headerBytes(list, options.metadata));
    let done = 0;
    for (const t of list) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      const bytes = tensorBytes(t.name, t.shape, t.dtype, data);
      await writeAll(file, bytes);
      done += bytes.byteLength;
      options.onProgress?.(done, total, t.name);
    }
  } catch (e) {
    file.close();
    await Deno.remove(partial).catch(() => {});
    throw new (e instanceof InputError ? InputError : Error)(`${path}: ${(e as Error).message}`);
  }
  file.close();
  await Deno.rename(partial, path);
}
