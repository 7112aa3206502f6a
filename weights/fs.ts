/**
 * File-system questions every layer asks (does this path exist, what is it), answered once.
 * @module
 */

/**
 * The path's file info, or null when nothing is there (or it cannot be looked at).
 *
 * @example
 * ```ts
 * const info = await statOrNull("model.safetensors");
 * if (info?.isFile) console.log(info.size);
 * ```
 */
export async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch {
    return null;
  }
}

/** True when something exists at `path` (see {@link statOrNull}). */
export async function pathExists(path: string): Promise<boolean> {
  return (await statOrNull(path)) !== null;
}
