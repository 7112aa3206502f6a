/**
 * A minimal torch.save-compatible writer: a STORED zip holding `<root>/data.pkl` (protocol 2:
 * an OrderedDict of `torch._utils._rebuild_tensor_v2` calls whose storages are persistent ids),
 * `<root>/data/<key>` raw little-endian storages, `<root>/byteorder` and `<root>/version`.
 * `torch.load` reads these files; so does openTorchFile.
 * @module
 */

import { numelOf } from "./dtype.ts";
import { PickleWriter } from "./pickle_writer.ts";
import { tensorBytes, type TensorToWrite } from "./safetensors.ts";
import type { StorageDType } from "./types.ts";
import { ZipWriter } from "./zip.ts";

const STORAGE_CLASS: Record<StorageDType, string> = {
  F64: "DoubleStorage",
  F32: "FloatStorage",
  F16: "HalfStorage",
  BF16: "BFloat16Storage",
  I64: "LongStorage",
  I32: "IntStorage",
  I16: "ShortStorage",
  I8: "CharStorage",
  U8: "ByteStorage",
  BOOL: "BoolStorage",
};

/** Options of writeTorchZip. */
export interface WriteTorchZipOptions {
  /** Top folder inside the zip (torch uses the file stem); default "archive". */
  root?: string;
  /** Nest the tensors under this key, e.g. "state_dict" as PyTorch Lightning does. */
  stateDictKey?: string;
  /** Extra non-tensor top-level entries (ints, floats, strings), e.g. `{ global_step: 10 }`. */
  extras?: Record<string, number | string>;
  /** Write zip64 records even when not needed (tests of the reader). */
  forceZip64?: boolean;
}

function contiguousStrides(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
  return stride;
}

/** Builds data.pkl for tensors stored as storages "0", "1", ... in list order. */
function dataPickle(list: TensorToWrite[], options: WriteTorchZipOptions): Uint8Array {
  const w = new PickleWriter().proto(2);
  const orderedDict = () =>
    w.global("collections", "OrderedDict").raw(0x29, /* EMPTY_TUPLE */ 0x52 /* REDUCE */);
  const wrapped = options.stateDictKey !== undefined || options.extras !== undefined;
  if (wrapped) {
    w.raw(0x7d, /* EMPTY_DICT */ 0x28 /* MARK */);
    for (const [k, v] of Object.entries(options.extras ?? {})) {
      w.str(k);
      if (typeof v === "string") w.str(v);
      else if (Number.isInteger(v)) w.int(v);
      else w.float(v);
    }
    w.str(options.stateDictKey ?? "state_dict");
  }
  orderedDict();
  w.raw(0x28 /* MARK */);
  list.forEach((t, key) => {
    w.str(t.name);
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.raw(0x28, /* MARK */ 0x28 /* MARK */);
    w.str("storage").global("torch", STORAGE_CLASS[t.dtype]).str(String(key)).str("cpu");
    w.int(numelOf(t.shape)).raw(0x74, /* TUPLE */ 0x51 /* BINPERSID */);
    w.int(0).intTuple(t.shape).intTuple(contiguousStrides(t.shape)).bool(false);
    orderedDict();
    w.raw(0x74, /* TUPLE */ 0x52 /* REDUCE */);
  });
  w.raw(0x75 /* SETITEMS */);
  if (wrapped) w.raw(0x75 /* SETITEMS */);
  return w.stop().bytes();
}

/**
 * Writes tensors as a torch.save zip checkpoint, one storage per tensor, streaming tensor data
 * (thunks are called one at a time).
 * @example
 * ```ts
 * await writeTorchZip("tiny.ckpt", [
 *   { name: "w", shape: [2], dtype: "F32", data: new Float32Array([1, 2]) },
 * ], { stateDictKey: "state_dict" });
 * ```
 */
export async function writeTorchZip(
  path: string,
  tensors: Iterable<TensorToWrite> | AsyncIterable<TensorToWrite>,
  options: WriteTorchZipOptions = {},
): Promise<void> {
  const list: TensorToWrite[] = [];
  for await (const t of tensors) list.push(t);
  const names = new Set<string>();
  for (const t of list) {
    if (names.has(t.name)) throw new Error(`${path}: tensor '${t.name}' is given twice`);
    names.add(t.name);
    if (!Object.hasOwn(STORAGE_CLASS, t.dtype)) {
      throw new Error(`${path}: tensor '${t.name}': unknown dtype ${t.dtype}`);
    }
  }
  const root = options.root ?? "archive";
  if (!/^[A-Za-z0-9_.-]+$/.test(root) || root === "..") {
    throw new Error(`${path}: bad zip root '${root}'`);
  }
  const zip = await ZipWriter.create(path, { forceZip64: options.forceZip64 });
  try {
    await zip.add(`${root}/data.pkl`, dataPickle(list, options));
    await zip.add(`${root}/byteorder`, new TextEncoder().encode("little"));
    for (let key = 0; key < list.length; key++) {
      const t = list[key];
      const data = typeof t.data === "function" ? await t.data() : t.data;
      await zip.add(`${root}/data/${key}`, tensorBytes(t.name, t.shape, t.dtype, data));
    }
    await zip.add(`${root}/version`, new TextEncoder().encode("3\n"));
    await zip.finish();
  } catch (e) {
    zip.abort();
    await Deno.remove(path).catch(() => {});
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}
