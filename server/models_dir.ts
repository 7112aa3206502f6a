/**
 * The models directory the service draws from, laid out as ComfyUI users know it:
 * `checkpoints/` (single files or diffusers folders), `motion_modules/` (original AnimateDiff
 * files or diffusers MotionAdapter folders) and `loras/`. Clients name models by their file or
 * folder name without extension; only names found by {@link scanModelsDir} are ever resolved to
 * paths, so a path sent by a client is never opened.
 * @module
 */

import { join } from "node:path";
import { pathExists } from "../weights/fs.ts";
import {
  DEMO_MODEL_FILES,
  DEMO_MODEL_NAMES,
  DEMO_MOTION_MODULE_NAME,
  localDemoModelDir,
} from "../weights/demo_model.ts";

/** The kinds of model the directory holds. */
export type ModelKind = "checkpoint" | "motionModule" | "lora" | "embedding";

/** Sub-folder of the models directory for each {@link ModelKind}. */
export const MODEL_SUBDIRS: Readonly<Record<ModelKind, string>> = {
  checkpoint: "checkpoints",
  motionModule: "motion_modules",
  lora: "loras",
  embedding: "embeddings",
};

/** File extensions of single-file weights, lower case, with their dot. */
export const WEIGHT_EXTENSIONS: readonly string[] = [
  ".safetensors",
  ".ckpt",
  ".pt",
  ".pth",
  ".bin",
];

/** One model found in the directory. */
export interface ModelEntry {
  /** The name clients use: file or folder name without extension. */
  name: string;
  /** `file` (one weights file) or `folder` (diffusers layout). */
  layout: "file" | "folder";
  /** Absolute or models-dir-relative path on this machine (never sent to clients). */
  path: string;
  /** Size in bytes of the weights file, or of all files of the folder. */
  bytes: number;
  /**
   * Optional configuration next to a single file: `checkpoints/<name>.config/` (a diffusers
   * folder giving group and head counts) or `motion_modules/<name>.json` (MotionAdapter config).
   */
  configPath?: string;
}

/** Everything in a models directory, each list sorted by name. */
export interface ModelsListing {
  /** Base models (`checkpoints/`). */
  checkpoints: ModelEntry[];
  /** Motion modules (`motion_modules/`). */
  motionModules: ModelEntry[];
  /** LoRAs (`loras/`). */
  loras: ModelEntry[];
  /** Textual-inversion embeddings (`embeddings/`; a request names them). */
  embeddings: ModelEntry[];
}

/** The client-facing view of a {@link ModelEntry}: no paths. */
export interface PublicModelEntry {
  name: string;
  layout: "file" | "folder";
  bytes: number;
}

function extensionOf(fileName: string): string | null {
  const lower = fileName.toLowerCase();
  return WEIGHT_EXTENSIONS.find((ext) => lower.endsWith(ext)) ?? null;
}

async function folderBytes(dir: string, depth = 0): Promise<number> {
  if (depth > 3) return 0;
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isFile) total += (await Deno.stat(p)).size;
    else if (e.isDirectory) total += await folderBytes(p, depth + 1);
  }
  return total;
}

/** True when `dir` looks like a diffusers model folder of the given kind. */
async function isModelFolder(dir: string, kind: ModelKind): Promise<boolean> {
  if (kind === "checkpoint") {
    return await pathExists(join(dir, "model_index.json")) || await pathExists(join(dir, "unet"));
  }
  if (kind === "motionModule") return await pathExists(join(dir, "config.json"));
  return false;
}

async function scanKind(root: string, kind: ModelKind): Promise<ModelEntry[]> {
  const dir = join(root, MODEL_SUBDIRS[kind]);
  const entries: ModelEntry[] = [];
  let listing: Deno.DirEntry[];
  try {
    listing = await Array.fromAsync(Deno.readDir(dir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const names = new Set(listing.map((e) => e.name));
  for (const e of listing) {
    if (e.name.startsWith(".")) continue;
    const path = join(dir, e.name);
    let isDir = e.isDirectory, isFile = e.isFile;
    if (e.isSymlink) {
      try {
        const st = await Deno.stat(path);
        isDir = st.isDirectory;
        isFile = st.isFile;
      } catch {
        continue; // dangling link
      }
    }
    if (isFile) {
      const ext = extensionOf(e.name);
      if (!ext) continue;
      const name = e.name.slice(0, -ext.length);
      const entry: ModelEntry = {
        name,
        layout: "file",
        path,
        bytes: (await Deno.stat(path)).size,
      };
      const sidecar = kind === "checkpoint"
        ? `${name}.config`
        : kind === "motionModule"
        ? `${name}.json`
        : null;
      if (sidecar && names.has(sidecar)) entry.configPath = join(dir, sidecar);
      entries.push(entry);
    } else if (isDir && !e.name.endsWith(".config") && await isModelFolder(path, kind)) {
      entries.push({ name: e.name, layout: "folder", path, bytes: await folderBytes(path) });
    }
  }
  entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  // Two files with one stem (x.safetensors and x.ckpt) would make a name ambiguous: keep the
  // first in WEIGHT_EXTENSIONS order (safetensors before pickles).
  const seen = new Map<string, ModelEntry>();
  for (const entry of entries) {
    const prev = seen.get(entry.name);
    if (!prev || rank(entry) < rank(prev)) seen.set(entry.name, entry);
  }
  return [...seen.values()];
}

function rank(e: ModelEntry): number {
  if (e.layout === "folder") return -1;
  return WEIGHT_EXTENSIONS.indexOf(extensionOf(e.path) ?? "");
}

/**
 * Lists the models in `root` (missing sub-folders count as empty). Only files with a weights
 * extension and folders with a diffusers layout are listed; hidden entries are skipped.
 *
 * @example
 * ```ts
 * const models = await scanModelsDir("/srv/models");
 * models.checkpoints.map((m) => m.name); // ["dreamshaper_8", "realisticVision"]
 * ```
 */
export async function scanModelsDir(root: string): Promise<ModelsListing> {
  try {
    const st = await Deno.stat(root);
    if (!st.isDirectory) throw new Error(`models directory "${root}" is not a directory`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`models directory "${root}" does not exist`);
    }
    throw e;
  }
  const [checkpoints, motionModules, loras, embeddings] = await Promise.all([
    scanKind(root, "checkpoint"),
    scanKind(root, "motionModule"),
    scanKind(root, "lora"),
    scanKind(root, "embedding"),
  ]);
  const builtin = await builtinModels();
  const add = (own: ModelEntry[], extra: ModelEntry[]) => [
    ...own,
    ...extra.filter((e) => !own.some((o) => o.name === e.name)),
  ];
  return {
    checkpoints: add(checkpoints, builtin.checkpoints),
    motionModules: add(motionModules, builtin.motionModules),
    loras,
    embeddings,
  };
}

/**
 * The built-in demo models every listing ends with (an entry of the directory with the same
 * name wins): checkpoints `demo` and `demo:paper`, motion module `demo`. Their paths are the
 * names, which the engine resolves to the shipped files.
 *
 * @example
 * ```ts
 * (await builtinModels()).checkpoints.map((m) => m.name); // ["demo", "demo:paper"]
 * ```
 */
export async function builtinModels(): Promise<ModelsListing> {
  const sizes = new Map<string, number>();
  try {
    const dir = localDemoModelDir();
    if (!dir) throw new Error("not on disk");
    const size = async (f: string) => (await Deno.stat(join(dir, f))).size;
    const motion = await size(DEMO_MODEL_FILES.motion);
    const base = await folderBytes(dir) - motion - await size(DEMO_MODEL_FILES.paperLora);
    sizes.set("demo", base).set("demo:paper", base + await size(DEMO_MODEL_FILES.paperLora));
    sizes.set("motion", motion);
  } catch {
    // Not on disk (a registry import): sizes are unknown until the files are fetched.
  }
  const entry = (name: string, size = 0): ModelEntry => ({
    name,
    layout: "folder",
    path: name,
    bytes: size,
  });
  return {
    checkpoints: DEMO_MODEL_NAMES.map((n) => entry(n, sizes.get(n))),
    motionModules: [entry(DEMO_MOTION_MODULE_NAME, sizes.get("motion"))],
    loras: [],
    embeddings: [],
  };
}

/** The entries of `listing` for one kind. */
export function entriesOf(listing: ModelsListing, kind: ModelKind): ModelEntry[] {
  return kind === "checkpoint"
    ? listing.checkpoints
    : kind === "motionModule"
    ? listing.motionModules
    : kind === "lora"
    ? listing.loras
    : listing.embeddings;
}

/**
 * Finds a model by exact name (no path lookup ever happens: the name must be one the scan
 * found). Returns undefined for unknown names.
 *
 * @example
 * ```ts
 * findModel(listing, "checkpoint", "dreamshaper_8")?.path;
 * ```
 */
export function findModel(
  listing: ModelsListing,
  kind: ModelKind,
  name: string,
): ModelEntry | undefined {
  return entriesOf(listing, kind).find((e) => e.name === name);
}

/**
 * The listing without paths, as GET /v1/models returns it.
 *
 * @example
 * ```ts
 * publicListing(listing).checkpoints[0]; // { name: "tiny", layout: "folder", bytes: 4461916 }
 * ```
 */
export function publicListing(
  listing: ModelsListing,
): Record<"checkpoints" | "motionModules" | "loras" | "embeddings", PublicModelEntry[]> {
  const strip = (es: ModelEntry[]) =>
    es.map(({ name, layout, bytes }) => ({ name, layout, bytes }));
  return {
    checkpoints: strip(listing.checkpoints),
    motionModules: strip(listing.motionModules),
    loras: strip(listing.loras),
    embeddings: strip(listing.embeddings),
  };
}
