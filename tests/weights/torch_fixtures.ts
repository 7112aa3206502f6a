/**
 * Test-data generators for torch checkpoints: hand-built zip checkpoints (custom pickles, byte
 * orders, strides) and the legacy (pre-1.6) torch.save format. Used by tests only.
 */

import { OP, PickleWriter } from "../../weights/pickle_writer.ts";
import { openZip, ZipWriter } from "../../weights/zip.ts";

/** A tensor as a pickle `_rebuild_tensor_v2` call, for hand-built pickles. */
export interface PickledTensor {
  storageClass: string;
  key: string;
  storageNumel: number;
  offset: number;
  size: number[];
  stride: number[];
  /** Legacy storage view (key, element offset, size), written as the 6th pid element. */
  view?: [string, number, number];
}

/** Writes `_rebuild_tensor_v2(...)` for `t` (protocol 2, persistent id for the storage). */
export function pickleTensor(w: PickleWriter, t: PickledTensor, legacy = false): PickleWriter {
  w.global("torch._utils", "_rebuild_tensor_v2").raw(0x28, 0x28);
  w.str("storage").global("torch", t.storageClass).str(t.key).str("cpu").int(t.storageNumel);
  if (legacy) {
    if (t.view) w.raw(0x28).str(t.view[0]).int(t.view[1]).int(t.view[2]).raw(0x74);
    else w.none();
  }
  w.raw(0x74, 0x51).int(t.offset).intTuple(t.size).intTuple(t.stride).bool(false);
  w.global("collections", "OrderedDict").raw(0x29, 0x52);
  return w.raw(0x74, 0x52);
}

/** Writes a dict `{name: tensor}` body (EMPTY_DICT, MARK, items, SETITEMS). */
export function pickleTensorDict(
  w: PickleWriter,
  tensors: Record<string, PickledTensor>,
  legacy = false,
): PickleWriter {
  w.raw(0x7d, 0x28);
  for (const [name, t] of Object.entries(tensors)) pickleTensor(w.str(name), t, legacy);
  return w.raw(0x75);
}

/** Writes a torch zip from a ready pickle and raw storages. */
export async function writeCustomTorchZip(
  path: string,
  pickle: Uint8Array,
  storages: Record<string, Uint8Array>,
  { byteorder = "little", root = "archive" }: { byteorder?: string; root?: string } = {},
): Promise<void> {
  const zip = await ZipWriter.create(path);
  await zip.add(`${root}/data.pkl`, pickle);
  await zip.add(`${root}/byteorder`, new TextEncoder().encode(byteorder));
  for (const [key, bytes] of Object.entries(storages)) await zip.add(`${root}/data/${key}`, bytes);
  await zip.finish();
}

/**
 * Writes the legacy torch.save format: magic, protocol 1001, sys_info, the main pickle, the
 * storage key list, then each storage as an 8-byte little-endian numel plus raw bytes.
 */
export async function writeLegacyTorch(
  path: string,
  tensors: Record<string, PickledTensor>,
  storages: { key: string; numel: number; bytes: Uint8Array }[],
): Promise<void> {
  const parts: Uint8Array[] = [];
  parts.push(new PickleWriter().proto(2).int(0x1950a86a20f9469cfc6cn).stop().bytes());
  parts.push(new PickleWriter().proto(2).int(1001).stop().bytes());
  const info = new PickleWriter().proto(2).raw(0x7d, 0x28);
  info.str("protocol_version").int(1001).str("little_endian").bool(true);
  info.str("type_sizes").raw(0x7d, 0x28).str("short").int(2).str("int").int(4).str("long").int(4);
  parts.push(info.raw(0x75, 0x75).stop().bytes());
  parts.push(pickleTensorDict(new PickleWriter().proto(2), tensors, true).stop().bytes());
  const keys = new PickleWriter().proto(2).raw(0x5d, 0x28);
  for (const s of storages) keys.str(s.key);
  parts.push(keys.raw(0x65).stop().bytes());
  for (const s of storages) {
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigInt64(0, BigInt(s.numel), true);
    parts.push(n, s.bytes);
  }
  const total = parts.reduce((a, p) => a + p.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  await Deno.writeFile(path, out);
}

/** Float32 values as raw little-endian bytes. */
export function f32Bytes(values: number[] | Float32Array): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/**
 * Copies a torch zip checkpoint (e.g. the fixture motion_module.ckpt) adding one top-level
 * entry `key`: a list of `items` small ints built with a single APPENDS (as a checkpoint that
 * stores a long list of step counts or token ids does). The tensors are untouched.
 */
export async function withBigList(
  source: string,
  target: string,
  { items, key = "big_list" }: { items: number; key?: string },
): Promise<void> {
  const zip = await openZip(source);
  try {
    const pkl = [...zip.entries.keys()].find((n) => n.endsWith("/data.pkl"))!;
    const root = pkl.slice(0, -"/data.pkl".length);
    const original = await zip.read(pkl);
    // The pickle ends with SETITEMS STOP on the top-level dict: add `key: [...]` by SETITEM.
    if (original.at(-1) !== OP.STOP) throw new Error(`${source}: data.pkl does not end in STOP`);
    const w = new PickleWriter().raw(original.subarray(0, -1));
    w.str(key).raw(OP.EMPTY_LIST, OP.MARK);
    for (let i = 0; i < items; i++) w.raw(OP.BININT1, i & 0xff);
    w.raw(OP.APPENDS, OP.SETITEM).stop();
    const storages: Record<string, Uint8Array> = {};
    for (const name of zip.entries.keys()) {
      if (name.startsWith(`${root}/data/`)) {
        storages[name.slice(root.length + 6)] = await zip.read(name);
      }
    }
    await writeCustomTorchZip(target, w.bytes(), storages, { root });
  } finally {
    zip.close();
  }
}
