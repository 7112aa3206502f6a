/**
 * Random-access reads of byte ranges from one open file. Weight readers keep one handle per file
 * and read each tensor's bytes on demand, so a multi-GB checkpoint is never loaded whole.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

/** An open file that serves byte ranges; reads are serialised (one seek + read loop at a time). */
export interface RandomAccessFile {
  readonly path: string;
  /** File size in bytes at open time. */
  readonly size: number;
  /** Reads exactly `length` bytes at `offset`; fails naming the file when the range is past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Closes the handle; later reads fail. Safe to call twice. */
  close(): void;
}

/**
 * Opens `path` for range reads.
 * @example
 * ```ts
 * const f = await openRandomAccess("model.safetensors");
 * const prefix = await f.read(0, 8);
 * f.close();
 * ```
 */
export async function openRandomAccess(path: string): Promise<RandomAccessFile> {
  const file = await Deno.open(path, { read: true });
  let size: number;
  try {
    size = (await file.stat()).size;
  } catch (e) {
    file.close();
    throw e;
  }
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  const readNow = async (offset: number, length: number): Promise<Uint8Array> => {
    if (closed) throw new Error(`${path}: read after close`);
    const out = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < length) {
      const n = await file.read(out.subarray(done));
      if (n === null || n === 0) {
        throw new InputError(
          `${path}: file is truncated (wanted ${length} bytes at offset ${offset}, got ${done})`,
        );
      }
      done += n;
    }
    return out;
  };

  return {
    path,
    size,
    read(offset: number, length: number): Promise<Uint8Array> {
      if (
        !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
        length < 0 || offset + length > size
      ) {
        return Promise.reject(
          new InputError(
            `${path}: byte range ${offset}..${offset + length} is outside the file (${size} bytes)`,
          ),
        );
      }
      const p = queue.then(() => readNow(offset, length));
      queue = p.catch(() => {});
      return p;
    },
    close() {
      if (closed) return;
      closed = true;
      file.close();
    },
  };
}
