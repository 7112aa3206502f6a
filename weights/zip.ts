/**
 * A minimal, defensive zip reader (and stored-only writer) for torch.save checkpoints.
 * Reads the end-of-central-directory record (zip64 included: real .ckpt files exceed 4 GB), the
 * central directory and local headers; STORED entries are read lazily by byte range, DEFLATED
 * entries are inflated with fflate under a hard size cap. Rejects absolute or `..` entry names,
 * duplicate names, overlapping entries and offsets outside the file.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { crc32 } from "./crc32.ts";
import { Inflate } from "npm:fflate@^0.8.3";
import { openRandomAccess, type RandomAccessFile } from "./random_access.ts";

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
/** A central directory larger than this is not a checkpoint we want to parse. */
const MAX_CENTRAL_DIRECTORY_BYTES = 512 * 1024 * 1024;
/** DEFLATE cannot legitimately expand more than ~1032:1. */
const MAX_DEFLATE_RATIO = 1100;

/** One file in a zip archive (sizes and offsets from the central directory). */
export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

/** Limits that bound what a hostile archive can make us allocate. */
export interface ZipLimits {
  /** Largest uncompressed size of a DEFLATED entry we inflate (default 1 GiB). */
  maxInflatedBytes?: number;
}

/** An opened zip archive; entry data is read on demand. */
export interface ZipArchive {
  readonly path: string;
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Reads a whole entry (inflating it if needed) and checks its CRC-32. */
  read(name: string): Promise<Uint8Array>;
  /** Reads `length` bytes at `offset` of an entry's uncompressed data (lazily for STORED). */
  readRange(name: string, offset: number, length: number): Promise<Uint8Array>;
  close(): void;
}

/** CRC-32 (zip polynomial); the one implementation lives with the PNG writer. */

function u64(view: DataView, at: number, what: string, path: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InputError(`${path}: zip ${what} ${v} is too large`);
  }
  return Number(v);
}

/** Checks an entry name for path traversal; returns a reason or null. */
function badName(name: string): string | null {
  if (name.length === 0) return "is empty";
  if (name.includes("\0")) return "contains a NUL byte";
  if (/^[\\/]/.test(name) || /^[A-Za-z]:/.test(name)) return "is an absolute path";
  if (name.split(/[\\/]/).includes("..")) return "contains '..' (path traversal)";
  return null;
}

interface Eocd {
  count: number;
  cdSize: number;
  cdOffset: number;
  /** Where the (zip64) end records start: the central directory must end before this. */
  end: number;
}

async function readEocd(file: RandomAccessFile): Promise<Eocd> {
  const path = file.path;
  if (file.size < EOCD_SIZE) throw new InputError(`${path}: zip is truncated (${file.size} bytes)`);
  const tailLen = Math.min(file.size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = file.size - tailLen;
  const tail = await file.read(tailStart, tailLen);
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (
      view.getUint32(i, true) === SIG_EOCD &&
      i + EOCD_SIZE + view.getUint16(i + 20, true) <= tailLen
    ) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw new InputError(
      `${path}: zip end-of-central-directory record not found (truncated file?)`,
    );
  }
  const eocdPos = tailStart + at;
  if (view.getUint16(at + 4, true) !== 0 || view.getUint16(at + 6, true) !== 0) {
    throw new InputError(`${path}: multi-disk zip archives are not supported`);
  }
  let count = view.getUint16(at + 10, true);
  let cdSize = view.getUint32(at + 12, true);
  let cdOffset = view.getUint32(at + 16, true);
  let end = eocdPos;
  const locAt = eocdPos - 20;
  if (locAt >= 0) {
    const loc = await file.read(locAt, 20);
    const lv = new DataView(loc.buffer, loc.byteOffset, 20);
    if (lv.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      const z64 = u64(lv, 8, "zip64 end record offset", path);
      if (z64 + 56 > locAt) {
        throw new InputError(`${path}: zip64 end record offset ${z64} is outside the file`);
      }
      const rec = await file.read(z64, 56);
      const rv = new DataView(rec.buffer, rec.byteOffset, 56);
      if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) {
        throw new InputError(`${path}: zip64 end record signature missing at offset ${z64}`);
      }
      count = u64(rv, 32, "entry count", path);
      cdSize = u64(rv, 40, "central directory size", path);
      cdOffset = u64(rv, 48, "central directory offset", path);
      end = z64;
    }
  }
  if (cdOffset + cdSize > end) {
    throw new InputError(
      `${path}: zip central directory [${cdOffset}, ${
        cdOffset + cdSize
      }) lies outside the file (truncated?)`,
    );
  }
  if (cdSize > MAX_CENTRAL_DIRECTORY_BYTES) {
    throw new InputError(`${path}: zip central directory of ${cdSize} bytes is implausibly large`);
  }
  if (count * CENTRAL_HEADER_SIZE > cdSize) {
    throw new InputError(
      `${path}: zip claims ${count} entries in a ${cdSize}-byte central directory`,
    );
  }
  return { count, cdSize, cdOffset, end };
}

function parseCentralDirectory(cd: Uint8Array, eocd: Eocd, path: string): Map<string, ZipEntry> {
  const view = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const decoder = new TextDecoder();
  const entries = new Map<string, ZipEntry & { nameLen: number }>();
  let at = 0;
  for (let i = 0; i < eocd.count; i++) {
    if (at + CENTRAL_HEADER_SIZE > cd.byteLength || view.getUint32(at, true) !== SIG_CENTRAL) {
      throw new InputError(`${path}: zip central directory entry ${i} is corrupt`);
    }
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    const crc = view.getUint32(at + 16, true);
    let compressedSize = view.getUint32(at + 20, true);
    let size = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    const disk = view.getUint16(at + 34, true);
    let localHeaderOffset = view.getUint32(at + 42, true);
    const next = at + CENTRAL_HEADER_SIZE + nameLen + extraLen + commentLen;
    if (next > cd.byteLength) {
      throw new InputError(`${path}: zip central directory entry ${i} is truncated`);
    }
    const name = decoder.decode(cd.subarray(at + 46, at + 46 + nameLen));
    // zip64 extra field: the 8-byte values present are exactly those saturated above.
    let e = at + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = view.getUint16(e, true), len = view.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) break;
      if (id === 0x0001) {
        let p = e + 4;
        const take = () => {
          if (p + 8 > e + 4 + len) {
            throw new InputError(`${path}: zip64 extra field of '${name}' is short`);
          }
          const v = u64(view, p, "size", path);
          p += 8;
          return v;
        };
        if (size === U32_MAX) size = take();
        if (compressedSize === U32_MAX) compressedSize = take();
        if (localHeaderOffset === U32_MAX) localHeaderOffset = take();
      }
      e += 4 + len;
    }
    at = next;
    const where = `${path}: zip entry '${name}'`;
    const bad = badName(name);
    if (bad) throw new InputError(`${where} ${bad}`);
    if (entries.has(name)) throw new InputError(`${where} appears twice`);
    if (flags & 1) throw new InputError(`${where} is encrypted`);
    if (disk !== 0 && disk !== U16_MAX) throw new InputError(`${where} is on another disk`);
    if (method !== 0 && method !== 8) {
      throw new InputError(`${where} uses compression method ${method} (only stored and deflated)`);
    }
    if (method === 0 && compressedSize !== size) {
      throw new InputError(`${where} is stored but declares ${compressedSize} != ${size} bytes`);
    }
    if (localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + compressedSize > eocd.cdOffset) {
      throw new InputError(
        `${where}: data [${localHeaderOffset}, +${compressedSize}) lies outside the file`,
      );
    }
    entries.set(name, {
      name,
      method,
      compressedSize,
      size,
      crc32: crc,
      localHeaderOffset,
      nameLen,
    });
  }
  const sorted = [...entries.values()].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1];
    if (
      p.localHeaderOffset + LOCAL_HEADER_SIZE + p.nameLen + p.compressedSize >
        sorted[i].localHeaderOffset
    ) {
      throw new InputError(`${path}: zip entries '${p.name}' and '${sorted[i].name}' overlap`);
    }
  }
  const out = new Map<string, ZipEntry>();
  for (const [k, { nameLen: _, ...v }] of entries) out.set(k, v);
  return out;
}

function inflateBounded(compressed: Uint8Array, size: number, where: string): Uint8Array {
  const out = new Uint8Array(size);
  let done = 0;
  let overflow = false;
  let finished = false;
  const inflater = new Inflate();
  inflater.ondata = (chunk, final) => {
    if (done + chunk.byteLength > size) overflow = true;
    else out.set(chunk, done);
    done += chunk.byteLength;
    if (final) finished = true;
  };
  const STEP = 1 << 16;
  try {
    for (let i = 0; i < compressed.byteLength && !overflow; i += STEP) {
      const end = Math.min(i + STEP, compressed.byteLength);
      inflater.push(compressed.subarray(i, end), end === compressed.byteLength);
    }
  } catch (e) {
    throw new InputError(`${where}: corrupt deflate data (${(e as Error).message})`);
  }
  if (overflow) {
    throw new InputError(`${where} inflates beyond its declared ${size} bytes (zip bomb?)`);
  }
  if (!finished || done !== size) {
    throw new InputError(`${where} inflates to ${done} bytes, declared ${size}`);
  }
  return out;
}

/**
 * Opens a zip archive; only the end records and central directory are read now.
 * @example
 * ```ts
 * const zip = await openZip("model.ckpt");
 * const pkl = await zip.read("archive/data.pkl");
 * zip.close();
 * ```
 */
export async function openZip(path: string, limits: ZipLimits = {}): Promise<ZipArchive> {
  const maxInflated = limits.maxInflatedBytes ?? 1 << 30;
  const file = await openRandomAccess(path);
  let entries: Map<string, ZipEntry>;
  try {
    const eocd = await readEocd(file);
    entries = parseCentralDirectory(await file.read(eocd.cdOffset, eocd.cdSize), eocd, path);
  } catch (e) {
    file.close();
    throw e;
  }
  const dataStarts = new Map<string, number>();

  const entryOf = (name: string): ZipEntry => {
    const entry = entries.get(name);
    if (!entry) throw new InputError(`${path}: zip has no entry '${name}'`);
    return entry;
  };

  const dataStart = async (entry: ZipEntry): Promise<number> => {
    const cached = dataStarts.get(entry.name);
    if (cached !== undefined) return cached;
    const where = `${path}: zip entry '${entry.name}'`;
    const head = await file.read(entry.localHeaderOffset, LOCAL_HEADER_SIZE);
    const v = new DataView(head.buffer, head.byteOffset, LOCAL_HEADER_SIZE);
    if (v.getUint32(0, true) !== SIG_LOCAL) {
      throw new InputError(`${where}: local header signature missing`);
    }
    const nameLen = v.getUint16(26, true), extraLen = v.getUint16(28, true);
    const start = entry.localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + extraLen;
    if (start + entry.compressedSize > file.size) {
      throw new InputError(
        `${where}: data [${start}, +${entry.compressedSize}) lies beyond the file end`,
      );
    }
    const localName = new TextDecoder().decode(
      await file.read(entry.localHeaderOffset + LOCAL_HEADER_SIZE, nameLen),
    );
    if (localName !== entry.name) {
      throw new InputError(`${where}: local header names '${localName}' instead`);
    }
    dataStarts.set(entry.name, start);
    return start;
  };

  const inflateEntry = async (entry: ZipEntry): Promise<Uint8Array> => {
    const where = `${path}: zip entry '${entry.name}'`;
    if (entry.size > maxInflated) {
      throw new InputError(
        `${where} declares ${entry.size} uncompressed bytes (limit ${maxInflated})`,
      );
    }
    if (entry.size > 1 << 20 && entry.size > entry.compressedSize * MAX_DEFLATE_RATIO) {
      throw new InputError(
        `${where} declares a ${entry.size}/${entry.compressedSize} compression ratio (zip bomb?)`,
      );
    }
    const compressed = await file.read(await dataStart(entry), entry.compressedSize);
    return inflateBounded(compressed, entry.size, where);
  };

  return {
    path,
    entries,
    async read(name: string): Promise<Uint8Array> {
      const entry = entryOf(name);
      const data = entry.method === 0
        ? await file.read(await dataStart(entry), entry.size)
        : await inflateEntry(entry);
      if (crc32(data) !== entry.crc32) {
        throw new InputError(`${path}: zip entry '${name}' fails its CRC-32 check (corrupt file)`);
      }
      return data;
    },
    async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
      const entry = entryOf(name);
      if (offset < 0 || length < 0 || offset + length > entry.size) {
        throw new InputError(
          `${path}: range [${offset}, ${
            offset + length
          }) is outside zip entry '${name}' (${entry.size} bytes)`,
        );
      }
      if (entry.method === 0) return file.read((await dataStart(entry)) + offset, length);
      return (await inflateEntry(entry)).slice(offset, offset + length);
    },
    close: () => file.close(),
  };
}

/** Options of ZipWriter. */
export interface ZipWriterOptions {
  /** Align each entry's data to this many bytes with padding in the local extra field (64, as torch). */
  align?: number;
  /** Always write zip64 records (normally only when sizes or offsets need them). */
  forceZip64?: boolean;
}

/** Writes a STORED-only zip archive entry by entry (what torch.save writes). */
export class ZipWriter {
  #file: Deno.FsFile;
  #offset = 0;
  #central: Uint8Array[] = [];
  #count = 0;
  #align: number;
  #zip64: boolean;

  private constructor(file: Deno.FsFile, options: ZipWriterOptions) {
    this.#file = file;
    this.#align = options.align ?? 64;
    this.#zip64 = options.forceZip64 ?? false;
  }

  /** Creates (truncates) `path` for writing. */
  static async create(path: string, options: ZipWriterOptions = {}): Promise<ZipWriter> {
    return new ZipWriter(
      await Deno.open(path, { write: true, create: true, truncate: true }),
      options,
    );
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) done += await this.#file.write(bytes.subarray(done));
    this.#offset += bytes.byteLength;
  }

  /** Appends one stored entry. */
  async add(name: string, data: Uint8Array): Promise<void> {
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data);
    const big = this.#zip64 || data.byteLength >= U32_MAX || this.#offset >= U32_MAX;
    const z64Local = big ? 20 : 0;
    const base = this.#offset + LOCAL_HEADER_SIZE + nameBytes.byteLength + z64Local;
    const pad = this.#align > 1 ? (this.#align - ((base + 4) % this.#align)) % this.#align : 0;
    const extraLen = z64Local + 4 + pad;
    const local = new Uint8Array(LOCAL_HEADER_SIZE + nameBytes.byteLength + extraLen);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, big ? 45 : 20, true);
    lv.setUint16(6, 0x0800, true); // UTF-8 names
    lv.setUint32(14, crc, true);
    lv.setUint32(18, big ? U32_MAX : data.byteLength, true);
    lv.setUint32(22, big ? U32_MAX : data.byteLength, true);
    lv.setUint16(26, nameBytes.byteLength, true);
    lv.setUint16(28, extraLen, true);
    local.set(nameBytes, 30);
    let e = 30 + nameBytes.byteLength;
    if (big) {
      lv.setUint16(e, 1, true);
      lv.setUint16(e + 2, 16, true);
      lv.setBigUint64(e + 4, BigInt(data.byteLength), true);
      lv.setBigUint64(e + 12, BigInt(data.byteLength), true);
      e += 20;
    }
    lv.setUint16(e, 0x4246, true); // "FB" padding field, as PyTorch writes
    lv.setUint16(e + 2, pad, true);
    const headerOffset = this.#offset;
    await this.#write(local);
    await this.#write(data);

    const cz64 = big ? 28 : 0;
    const central = new Uint8Array(CENTRAL_HEADER_SIZE + nameBytes.byteLength + cz64);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, big ? 45 : 20, true);
    cv.setUint16(6, big ? 45 : 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, big ? U32_MAX : data.byteLength, true);
    cv.setUint32(24, big ? U32_MAX : data.byteLength, true);
    cv.setUint16(28, nameBytes.byteLength, true);
    cv.setUint16(30, cz64, true);
    cv.setUint32(42, big ? U32_MAX : headerOffset, true);
    central.set(nameBytes, 46);
    if (big) {
      const c = 46 + nameBytes.byteLength;
      cv.setUint16(c, 1, true);
      cv.setUint16(c + 2, 24, true);
      cv.setBigUint64(c + 4, BigInt(data.byteLength), true);
      cv.setBigUint64(c + 12, BigInt(data.byteLength), true);
      cv.setBigUint64(c + 20, BigInt(headerOffset), true);
    }
    this.#central.push(central);
    this.#count++;
  }

  /** Writes the central directory and end records, and closes the file. */
  async finish(): Promise<void> {
    try {
      const cdOffset = this.#offset;
      for (const c of this.#central) await this.#write(c);
      const cdSize = this.#offset - cdOffset;
      const big = this.#zip64 || cdOffset >= U32_MAX || this.#count >= U16_MAX;
      if (big) {
        const z64At = this.#offset;
        const rec = new Uint8Array(56 + 20);
        const rv = new DataView(rec.buffer);
        rv.setUint32(0, SIG_ZIP64_EOCD, true);
        rv.setBigUint64(4, 44n, true);
        rv.setUint16(12, 45, true);
        rv.setUint16(14, 45, true);
        rv.setBigUint64(24, BigInt(this.#count), true);
        rv.setBigUint64(32, BigInt(this.#count), true);
        rv.setBigUint64(40, BigInt(cdSize), true);
        rv.setBigUint64(48, BigInt(cdOffset), true);
        rv.setUint32(56, SIG_ZIP64_LOCATOR, true);
        rv.setBigUint64(64, BigInt(z64At), true);
        rv.setUint32(72, 1, true);
        await this.#write(rec);
      }
      const eocd = new Uint8Array(EOCD_SIZE);
      const ev = new DataView(eocd.buffer);
      ev.setUint32(0, SIG_EOCD, true);
      ev.setUint16(8, big ? U16_MAX : this.#count, true);
      ev.setUint16(10, big ? U16_MAX : this.#count, true);
      ev.setUint32(12, big ? U32_MAX : cdSize, true);
      ev.setUint32(16, big ? U32_MAX : cdOffset, true);
      await this.#write(eocd);
    } finally {
      this.#file.close();
    }
  }

  /** Closes the file without finishing (after an error). */
  abort(): void {
    try {
      this.#file.close();
    } catch { /* already closed */ }
  }
}
