/**
 * Opens any supported weight file by its content (magic bytes), never by its extension:
 * safetensors, torch.save zip checkpoints and legacy (pre-1.6) torch checkpoints.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { openSafetensors } from "./safetensors.ts";
import { openTorchFile } from "./torch_file.ts";
import type { TensorFile, TensorMap } from "./types.ts";

/** Detected container kind of a weight file. */
export type TensorFileKind = "safetensors" | "torch-zip" | "torch-legacy";

/** First bytes of a legacy torch.save file: PROTO 2, LONG1 of the magic number 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [
  0x80,
  0x02,
  0x8a,
  0x0a,
  0x6c,
  0xfc,
  0x9c,
  0x46,
  0xf9,
  0x20,
  0x6a,
  0xa8,
  0x50,
  0x19,
];

function describeStart(b: Uint8Array): string {
  if (b.byteLength === 0) return "an empty file";
  const hex = [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, "0")).join(" ");
  const text = [...b.subarray(0, 8)].map((
    x,
  ) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".")).join("");
  return `starts with ${hex} "${text}"`;
}

/**
 * Detects the kind of a weight file from its first bytes, or throws a one-line error.
 * @example
 * ```ts
 * detectTensorFileKind(new Uint8Array([0x50, 0x4b, 3, 4]), "x.ckpt"); // "torch-zip"
 * ```
 */
export function detectTensorFileKind(head: Uint8Array, path: string): TensorFileKind {
  if (head.byteLength >= 4 && head[0] === 0x50 && head[1] === 0x4b) {
    const t = head[2] * 256 + head[3];
    if (t === 0x0304 || t === 0x0506 || t === 0x0708) return "torch-zip";
  }
  if (head.byteLength >= LEGACY_MAGIC.length && LEGACY_MAGIC.every((v, i) => head[i] === v)) {
    return "torch-legacy";
  }
  if (head.byteLength >= 9) {
    const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
    if (n >= 2n && n <= 100_000_000n && head[8] === 0x7b /* { */) return "safetensors";
  }
  throw new InputError(
    `${path}: not a safetensors or PyTorch checkpoint file (${describeStart(head)})`,
  );
}

async function readHead(path: string, n: number): Promise<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const r = await file.read(buf.subarray(done));
      if (r === null || r === 0) break;
      done += r;
    }
    return buf.subarray(0, done);
  } finally {
    file.close();
  }
}

/**
 * Opens a safetensors or PyTorch checkpoint file lazily, detecting the format by content.
 * @example
 * ```ts
 * const f = await openTensorFile("mm_sd_v15_v2.ckpt");
 * console.log(f.format, f.tensors.size);
 * f.close();
 * ```
 */
export async function openTensorFile(path: string): Promise<TensorFile> {
  const stat = await Deno.stat(path);
  if (!stat.isFile) throw new InputError(`${path}: not a file`);
  const kind = detectTensorFileKind(await readHead(path, 16), path);
  return kind === "safetensors" ? openSafetensors(path) : openTorchFile(path);
}

/**
 * Strips a DataParallel/DDP `module.` prefix when every tensor name carries it; otherwise
 * returns the map unchanged. Names are otherwise left as stored.
 * @example
 * ```ts
 * const tensors = unwrapStateDict(file.tensors); // "module.conv.weight" -> "conv.weight"
 * ```
 */
export function unwrapStateDict(tensors: TensorMap, prefix = "module."): TensorMap {
  if (tensors.size === 0) return tensors;
  for (const name of tensors.keys()) if (!name.startsWith(prefix)) return tensors;
  const out: TensorMap = new Map();
  for (const [name, t] of tensors) out.set(name.slice(prefix.length), t);
  return out;
}
