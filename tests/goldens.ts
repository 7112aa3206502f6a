/**
 * Test helper: reads reference goldens (safetensors) and the fixture description
 * (goldens.json) of tests/fixtures/tiny.
 *
 * @module
 */

import { parsePythonJson } from "../engine/schedulers/python_json.ts";

/** One golden tensor: shape, safetensors dtype ("F32", "I32", "I64", "U8") and its data. */
export interface GoldenTensor {
  shape: number[];
  dtype: string;
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array;
}

const DEFAULT_SAFETENSORS = new URL("./fixtures/tiny/goldens.safetensors", import.meta.url);
const DEFAULT_JSON = new URL("./fixtures/tiny/goldens.json", import.meta.url);

const ELEMENT_BYTES: Record<string, number> = { F32: 4, I32: 4, I64: 8, U8: 1 };

const cache = new Map<string, Promise<Map<string, GoldenTensor>>>();

/**
 * Parses safetensors bytes (u64-LE header length, JSON header, raw little-endian data) into a
 * map of tensors. Each tensor's data is a fresh, aligned copy.
 *
 * @example
 * ```ts
 * const tensors = parseSafetensors(await Deno.readFile("x.safetensors"), "x.safetensors");
 * ```
 */
export function parseSafetensors(bytes: Uint8Array, name = "<bytes>"): Map<string, GoldenTensor> {
  if (bytes.byteLength < 8) {
    throw new Error(`${name}: not a safetensors file (shorter than 8 bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.byteLength) {
    throw new Error(`${name}: header length ${headerLen} exceeds file size ${bytes.byteLength}`);
  }
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, GoldenTensor>();
  for (const [key, info] of Object.entries(header)) {
    if (key === "__metadata__") continue;
    const size = ELEMENT_BYTES[info.dtype];
    if (size === undefined) {
      throw new Error(
        `${name}: tensor "${key}" has dtype ${info.dtype}; expected F32, I32, I64 or U8`,
      );
    }
    const [start, end] = info.data_offsets;
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (end - start !== count * size || base + end > bytes.byteLength) {
      throw new Error(
        `${name}: tensor "${key}" spans ${end - start} bytes, expected ${count * size} ` +
          `(shape [${info.shape}], ${info.dtype}) within the file`,
      );
    }
    // Copy into a fresh buffer so the typed array is aligned (offsets need not be).
    const raw = bytes.slice(base + start, base + end).buffer;
    const data = info.dtype === "F32"
      ? new Float32Array(raw)
      : info.dtype === "I32"
      ? new Int32Array(raw)
      : info.dtype === "I64"
      ? new BigInt64Array(raw)
      : new Uint8Array(raw);
    out.set(key, { shape: info.shape, dtype: info.dtype, data });
  }
  return out;
}

/**
 * Loads all tensors of a safetensors goldens file (default: tests/fixtures/tiny/goldens.safetensors).
 * A path string is a file-system path (relative to the working directory) or a `file:` URL string.
 * Results are cached per path: treat the returned arrays as read-only.
 *
 * @example
 * ```ts
 * const g = await loadGoldens();
 * const ids = g.get("tokenizer.input_ids")!.data as Int32Array;
 * ```
 */
export function loadGoldens(path?: string | URL): Promise<Map<string, GoldenTensor>> {
  const target = path ?? DEFAULT_SAFETENSORS;
  const key = target.toString();
  let entry = cache.get(key);
  if (!entry) {
    const file = typeof target === "string" && target.startsWith("file:")
      ? new URL(target)
      : target;
    entry = Deno.readFile(file).then((bytes) => parseSafetensors(bytes, key));
    cache.set(key, entry);
    entry.catch(() => cache.delete(key));
  }
  return entry;
}

/**
 * Returns one golden tensor by name, with an error naming the file and tensor if it is absent.
 *
 * @example
 * ```ts
 * const t = await golden("rng.seed0.16");
 * ```
 */
export async function golden(name: string, path?: string | URL): Promise<GoldenTensor> {
  const map = await loadGoldens(path);
  const t = map.get(name);
  if (!t) throw new Error(`goldens ${path ?? "tiny"}: no tensor named "${name}"`);
  return t;
}

let jsonCache: Promise<Record<string, unknown>> | undefined;

/**
 * Returns the parsed tests/fixtures/tiny/goldens.json (inputs, scheduler configs, tensor list).
 * Python's `-Infinity`/`NaN` tokens in it become JavaScript numbers.
 *
 * @example
 * ```ts
 * const prompts = (await goldensJson()).inputs.tok_prompts;
 * ```
 */
// deno-lint-ignore no-explicit-any
export function goldensJson(): Promise<any> {
  jsonCache ??= Deno.readTextFile(DEFAULT_JSON).then((s) =>
    parsePythonJson(s) as Record<string, unknown>
  );
  return jsonCache;
}
