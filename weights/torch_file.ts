/**
 * PyTorch checkpoints (torch.save): the zip format (`<root>/data.pkl` + `<root>/data/<key>`
 * storages, torch >= 1.6) and the legacy format (magic number, protocol and sys_info pickles,
 * the main pickle, the storage key list, then raw storages each prefixed by its 8-byte numel).
 * The pickle is read with the restricted unpickler; tensors are read lazily from their storages
 * (non-contiguous strides are gathered). Top-level dict keys name the tensors; a `state_dict`
 * wrapper (PyTorch Lightning) is unwrapped, nested dicts are flattened with ".", and anything
 * that is not a tensor is dropped.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { decodeToFloat32, ITEM_SIZE, numelOf } from "./dtype.ts";
import {
  describePickleValue,
  InertGlobal,
  InertObject,
  PickleTruncatedError,
  StorageType,
  TensorRef,
  unpickleFrom,
} from "./pickle.ts";
import { openRandomAccess, type RandomAccessFile } from "./random_access.ts";
import type { RawHostTensor } from "./safetensors.ts";
import type { HostTensor, StorageDType, TensorFile } from "./types.ts";
import { openZip, type ZipArchive } from "./zip.ts";

/** Options of openTorchFile. */
export interface OpenTorchOptions {
  /** Refuse every pickle global outside the tensor allow-list (no inert placeholders). */
  strict?: boolean;
}

/** A storage named by a persistent id. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: StorageDType,
    readonly numel: number,
    /** Legacy storage views: element offset into the root storage. */
    readonly elementOffset = 0,
  ) {}
}

/** Reads bytes of one storage (by key), relative to the storage start. */
type StorageReader = (key: string, byteOffset: number, byteLength: number) => Promise<Uint8Array>;

const MAX_DEPTH = 32;
const MAX_NODES = 10_000_000;
const MAX_PICKLE_BYTES = 1 << 30;

function parsePersistentId(pid: unknown, path: string, legacy: boolean): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== "storage") {
    throw new InputError(
      `${path}: unsupported persistent id ${
        describePickleValue(Array.isArray(pid) ? pid[0] : pid)
      } (expected a 'storage' tuple; whole pickled modules are not supported)`,
    );
  }
  const [, type, key, , numel, view] = pid;
  if (!(type instanceof StorageType)) throw new InputError(`${path}: storage of an unknown type`);
  if (typeof key !== "string" || !/^[A-Za-z0-9_.]+$/.test(key) || key.includes("..")) {
    throw new InputError(`${path}: bad storage key ${describePickleValue(key)}`);
  }
  if (!Number.isSafeInteger(numel) || (numel as number) < 0) {
    throw new InputError(`${path}: storage '${key}' has a bad size ${describePickleValue(numel)}`);
  }
  let offset = 0;
  if (legacy && Array.isArray(view)) {
    const [, viewOffset] = view;
    if (!Number.isSafeInteger(viewOffset) || viewOffset < 0) {
      throw new InputError(`${path}: storage view of '${key}' has a bad offset`);
    }
    offset = viewOffset;
  }
  return new StorageRef(key, type.dtype as StorageDType, numel as number, offset);
}

/** Picks the dict that holds the tensors and flattens it to name -> TensorRef. */
function collectTensors(root: unknown, path: string): Map<string, TensorRef> {
  if (root instanceof TensorRef) {
    throw new InputError(`${path}: holds a single tensor, not a dict of tensors`);
  }
  if (!(root instanceof Map)) {
    const what = root instanceof InertObject
      ? `a pickled ${root.type.module}.${root.type.name} object`
      : typeof root;
    throw new InputError(`${path}: does not hold a dict of tensors (found ${what})`);
  }
  let dict: Map<unknown, unknown> = root;
  const hasDirectTensor = [...root.values()].some((v) => v instanceof TensorRef);
  const wrapped = root.get("state_dict");
  if (!hasDirectTensor && wrapped instanceof Map) dict = wrapped;
  const out = new Map<string, TensorRef>();
  const seen = new Set<unknown>();
  let nodes = 0;
  const walk = (d: Map<unknown, unknown>, prefix: string, depth: number) => {
    if (depth > MAX_DEPTH) throw new InputError(`${path}: dicts nested deeper than ${MAX_DEPTH}`);
    if (seen.has(d)) return; // shared or cyclic references are walked once
    seen.add(d);
    for (const [k, v] of d) {
      if (++nodes > MAX_NODES) {
        throw new InputError(`${path}: pickle holds more than ${MAX_NODES} entries`);
      }
      if (typeof k !== "string" && typeof k !== "number") continue;
      const name = prefix + String(k);
      if (v instanceof TensorRef) {
        if (out.has(name)) throw new InputError(`${path}: tensor name '${name}' occurs twice`);
        out.set(name, v);
      } else if (v instanceof Map) walk(v, name + ".", depth + 1);
    }
  };
  walk(dict, "", 0);
  return out;
}

function isContiguous(size: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== expected) return false;
    expected *= size[i];
  }
  return true;
}

function swapBytes(bytes: Uint8Array, itemSize: number): Uint8Array {
  if (itemSize === 1) return bytes;
  const out = new Uint8Array(bytes.byteLength);
  for (let i = 0; i < bytes.byteLength; i += itemSize) {
    for (let j = 0; j < itemSize; j++) out[i + j] = bytes[i + itemSize - 1 - j];
  }
  return out;
}

function makeTensor(
  name: string,
  ref: TensorRef,
  readStorage: StorageReader,
  options: { path: string; bigEndian: boolean },
): RawHostTensor {
  const where = `${options.path}: tensor '${name}'`;
  const storage = ref.storage;
  if (!(storage instanceof StorageRef)) throw new InputError(`${where} has no storage`);
  const { size, stride } = ref;
  if (size.length !== stride.length) throw new InputError(`${where}: size and stride ranks differ`);
  const dtype = storage.dtype;
  const item = ITEM_SIZE[dtype];
  const numel = numelOf(size);
  const first = storage.elementOffset + ref.storageOffset;
  let last = first; // largest element index touched
  for (let i = 0; i < size.length; i++) if (size[i] > 0) last += (size[i] - 1) * stride[i];
  if (numel > 0 && last >= storage.numel) {
    throw new InputError(
      `${where}: shape [${size}] at offset ${ref.storageOffset} reaches element ${last} of a ${storage.numel}-element storage`,
    );
  }
  const contiguous = isContiguous(size, stride);
  const readRaw = async (): Promise<Uint8Array> => {
    if (numel === 0) return new Uint8Array(0);
    let bytes: Uint8Array;
    if (contiguous) {
      bytes = await readStorage(storage.key, first * item, numel * item);
    } else {
      const span = await readStorage(storage.key, first * item, (last - first + 1) * item);
      bytes = new Uint8Array(numel * item);
      const index = new Array<number>(size.length).fill(0);
      for (let n = 0; n < numel; n++) {
        let src = 0;
        for (let d = 0; d < size.length; d++) src += index[d] * stride[d];
        bytes.set(span.subarray(src * item, src * item + item), n * item);
        for (let d = size.length - 1; d >= 0; d--) {
          if (++index[d] < size[d]) break;
          index[d] = 0;
        }
      }
    }
    return options.bigEndian ? swapBytes(bytes, item) : bytes;
  };
  return {
    shape: [...size],
    dtype,
    byteLength: numel * item,
    readRaw: () =>
      readRaw().catch((e: Error) => {
        const Err = e instanceof InputError ? InputError : Error;
        throw new Err(`${e.message} (tensor '${name}')`);
      }),
    read: async () => decodeToFloat32(await readRaw(), dtype),
  };
}

function buildTensorFile(
  path: string,
  format: TensorFile["format"],
  root: unknown,
  readStorage: StorageReader,
  bigEndian: boolean,
  close: () => void,
): TensorFile {
  const tensors = new Map<string, HostTensor>();
  for (const [name, ref] of collectTensors(root, path)) {
    tensors.set(name, makeTensor(name, ref, readStorage, { path, bigEndian }));
  }
  return { path, format, tensors, metadata: {}, close };
}

async function openZipCheckpoint(path: string, options: OpenTorchOptions): Promise<TensorFile> {
  const zip: ZipArchive = await openZip(path);
  try {
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      throw new InputError(
        `${path}: zip is not a torch.save checkpoint (expected one '<root>/data.pkl', found ${pkls.length})`,
      );
    }
    const rootDir = pkls[0].slice(0, -"data.pkl".length);
    const order = zip.entries.has(rootDir + "byteorder")
      ? new TextDecoder().decode(await zip.read(rootDir + "byteorder")).trim()
      : "little";
    if (order !== "little" && order !== "big") {
      throw new InputError(`${path}: unknown byteorder '${order}'`);
    }
    const value = unpickleFrom(await zip.read(pkls[0]), 0, {
      path: `${path} (${pkls[0]})`,
      strict: options.strict,
      persistentLoad: (pid) => {
        const ref = parsePersistentId(pid, path, false);
        const entry = zip.entries.get(`${rootDir}data/${ref.key}`);
        if (!entry) throw new InputError(`${path}: storage '${ref.key}' is missing from the zip`);
        if (entry.size < ref.numel * ITEM_SIZE[ref.dtype]) {
          throw new InputError(
            `${path}: storage '${ref.key}' holds ${entry.size} bytes, needs ${
              ref.numel * ITEM_SIZE[ref.dtype]
            }`,
          );
        }
        return ref;
      },
    }).value;
    const readStorage: StorageReader = (key, offset, length) =>
      zip.readRange(`${rootDir}data/${key}`, offset, length);
    return buildTensorFile(
      path,
      "torch-zip",
      value,
      readStorage,
      order === "big",
      () => zip.close(),
    );
  } catch (e) {
    zip.close();
    throw e;
  }
}

/** Reads the pickles at the start of a legacy file, growing the prefix until they parse. */
async function readLegacyPickles(
  file: RandomAccessFile,
  options: OpenTorchOptions,
  refs: Map<string, StorageRef>,
): Promise<{ main: unknown; keys: unknown; end: number; littleEndian: boolean }> {
  const path = file.path;
  for (let size = Math.min(file.size, 1 << 20);; size = Math.min(file.size, size * 4)) {
    const bytes = await file.read(0, size);
    try {
      const opts = { path, strict: options.strict };
      const magic = unpickleFrom(bytes, 0, opts);
      if (magic.value !== 0x1950a86a20f9469cfc6cn) {
        throw new InputError(`${path}: bad legacy torch magic number`);
      }
      const proto = unpickleFrom(bytes, magic.end, opts);
      if (proto.value !== 1001) {
        throw new InputError(
          `${path}: unsupported legacy protocol ${describePickleValue(proto.value)}`,
        );
      }
      const info = unpickleFrom(bytes, proto.end, opts);
      const littleEndian =
        !(info.value instanceof Map && info.value.get("little_endian") === false);
      refs.clear();
      const main = unpickleFrom(bytes, info.end, {
        ...opts,
        persistentLoad: (pid) => {
          const ref = parsePersistentId(pid, path, true);
          const known = refs.get(ref.key);
          if (known && known.dtype !== ref.dtype) {
            throw new InputError(`${path}: storage '${ref.key}' is used with two dtypes`);
          }
          if (!known || known.numel < ref.numel) refs.set(ref.key, ref);
          return ref;
        },
      });
      const keys = unpickleFrom(bytes, main.end, opts);
      return { main: main.value, keys: keys.value, end: keys.end, littleEndian };
    } catch (e) {
      if (!(e instanceof PickleTruncatedError)) throw e;
      if (size >= file.size) {
        throw new InputError(`${path}: legacy checkpoint is truncated (${e.message})`);
      }
      if (size >= MAX_PICKLE_BYTES) {
        throw new InputError(`${path}: legacy pickle is larger than 1 GiB`);
      }
    }
  }
}

async function openLegacyCheckpoint(path: string, options: OpenTorchOptions): Promise<TensorFile> {
  const file = await openRandomAccess(path);
  try {
    const refs = new Map<string, StorageRef>();
    const { main, keys, end, littleEndian } = await readLegacyPickles(file, options, refs);
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw new InputError(`${path}: legacy storage key list is malformed`);
    }
    // Storages follow back to back: 8-byte element count, then the raw elements.
    const starts = new Map<string, { start: number; bytes: number }>();
    let at = end;
    for (const key of keys as string[]) {
      const ref = refs.get(key);
      if (!ref) throw new InputError(`${path}: storage '${key}' is listed but never used`);
      if (starts.has(key)) throw new InputError(`${path}: storage '${key}' is listed twice`);
      const head = await file.read(at, 8);
      const numel = new DataView(head.buffer, head.byteOffset, 8).getBigInt64(0, littleEndian);
      const bytes = Number(numel) * ITEM_SIZE[ref.dtype];
      if (numel < 0n || at + 8 + bytes > file.size) {
        throw new InputError(
          `${path}: storage '${key}' (${numel} elements) runs past the end of the file`,
        );
      }
      if (Number(numel) < ref.numel) {
        throw new InputError(
          `${path}: storage '${key}' holds ${numel} elements, needs ${ref.numel}`,
        );
      }
      starts.set(key, { start: at + 8, bytes });
      at += 8 + bytes;
    }
    const readStorage: StorageReader = (key, offset, length) => {
      const s = starts.get(key);
      if (!s) return Promise.reject(new InputError(`${path}: storage '${key}' is missing`));
      if (offset + length > s.bytes) {
        return Promise.reject(new InputError(`${path}: read past the end of storage '${key}'`));
      }
      return file.read(s.start + offset, length);
    };
    return buildTensorFile(
      path,
      "torch-legacy",
      main,
      readStorage,
      !littleEndian,
      () => file.close(),
    );
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Opens a torch.save checkpoint (zip or legacy format) lazily. Nothing in the pickle is executed.
 * @example
 * ```ts
 * const f = await openTorchFile("mm_sd_v15_v2.ckpt");
 * const pe = await f.tensors.get("down_blocks.0.motion_modules.0.temporal_transformer.norm.weight")!.read();
 * f.close();
 * ```
 */
export async function openTorchFile(
  path: string,
  options: OpenTorchOptions = {},
): Promise<TensorFile> {
  const file = await Deno.open(path, { read: true });
  const head = new Uint8Array(4);
  let n: number | null;
  try {
    n = await file.read(head);
  } finally {
    file.close();
  }
  if (n === 4 && head[0] === 0x50 && head[1] === 0x4b) return openZipCheckpoint(path, options);
  if (n !== null && n >= 2 && head[0] === 0x80) return openLegacyCheckpoint(path, options);
  throw new InputError(`${path}: not a PyTorch checkpoint (neither a zip nor a legacy pickle)`);
}

export { InertGlobal, InertObject };
