/**
 * The built-in demo models (../shared/DESIGN.md "The built-in demo models"): `demo`, a small
 * text-to-image model with its motion module, trained by Zoetrope itself on the synthetic world of
 * tools/demo (its recipe: tools/demo/recipe.ts, `deno task demo:train`), and `demo:paper`, the
 * same base personalised on a light paper background by a LoRA, animated by the same motion
 * module. Their f16 files ship beside this module in `demo_model/`, a diffusers folder plus the
 * motion module (original AnimateDiff layout, with its MotionAdapter config) and the paper LoRA
 * (kohya layout): they load through the same loaders as real checkpoints.
 *
 * Run from a checkout the files are read in place; imported from a registry (an `https:` module
 * URL) they are downloaded once into a cache folder.
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "../kernels/gpu/errors.ts";
import { pathExists } from "./fs.ts";

/** Names of the built-in demo models: the base and its personalised variant. */
export const DEMO_MODEL_NAMES = ["demo", "demo:paper"] as const;
/** A built-in demo model's name. */
export type DemoModelName = typeof DEMO_MODEL_NAMES[number];
/** Name of the demo's motion module (for `--motion-module` and the service's listing). */
export const DEMO_MOTION_MODULE_NAME = "demo";

/**
 * True for `demo` and `demo:paper` (a local folder of that name is reached as `./demo`).
 *
 * @example
 * ```ts
 * isDemoModelName("demo:paper"); // true
 * ```
 */
export function isDemoModelName(name: string): name is DemoModelName {
  return (DEMO_MODEL_NAMES as readonly string[]).includes(name);
}

/** The demo folder's files (relative paths). */
export const DEMO_MODEL_FILES = {
  motion: "motion_module.safetensors",
  motionConfig: "motion_module.config.json",
  paperLora: "paper_lora.safetensors",
  recipe: "recipe.json",
} as const;

/** Every file of the demo folder, for downloads. */
export const DEMO_MODEL_FILE_LIST: readonly string[] = [
  "model_index.json",
  "unet/config.json",
  "unet/diffusion_pytorch_model.safetensors",
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "tokenizer/vocab.json",
  "tokenizer/merges.txt",
  ...Object.values(DEMO_MODEL_FILES),
];

/** Where the demo's files are: this module's `demo_model/` folder. */
const DEMO_MODEL_URL = new URL("./demo_model/", import.meta.url);

/**
 * The demo folder when this module runs from disk (a checkout or a local copy), else null.
 *
 * @example
 * ```ts
 * localDemoModelDir(); // "/home/me/zoetrope/weights/demo_model" from a checkout
 * ```
 */
export function localDemoModelDir(): string | null {
  return DEMO_MODEL_URL.protocol === "file:" ? fileURLToPath(DEMO_MODEL_URL) : null;
}

/** Options of {@link demoModelDir}. */
export interface DemoModelDirOptions {
  /** Base URL of the demo folder (default: beside this module). */
  url?: URL;
  /** Cache folder for downloads (default: $ZOETROPE_CACHE, $XDG_CACHE_HOME/zoetrope or ~/.cache/zoetrope). */
  cacheDir?: string;
  signal?: AbortSignal;
}

/**
 * A local folder holding the demo's files: the module's own folder when it is on disk, else a
 * cache folder the files are downloaded into once (each file checked to be complete).
 *
 * @example
 * ```ts
 * const dir = await demoModelDir();
 * await loadModel(dir, { architecture: ARCHITECTURE });
 * ```
 */
export async function demoModelDir(options: DemoModelDirOptions = {}): Promise<string> {
  const url = options.url ?? DEMO_MODEL_URL;
  if (url.protocol === "file:") {
    const dir = fileURLToPath(url);
    if (!await pathExists(join(dir, DEMO_MODEL_FILES.motion))) {
      throw new InputError(`the built-in demo model's files are missing from ${dir}`);
    }
    return dir;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new InputError(`the built-in demo model: cannot read from ${url.protocol} URLs`);
  }
  const tag = url.href.replace(/[^A-Za-z0-9.-]+/g, "_").slice(-120);
  const dir = join(options.cacheDir ?? defaultCacheDir(), "demo_model", tag);
  for (const file of DEMO_MODEL_FILE_LIST) {
    const path = join(dir, file);
    if (await pathExists(path)) continue;
    const res = await fetch(new URL(file, url), { signal: options.signal }).catch((e) => {
      throw new InputError(`the built-in demo model: ${file}: ${(e as Error).message}`);
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new InputError(`the built-in demo model: ${file}: HTTP ${res.status}`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    const declared = res.headers.get("content-length");
    if (declared !== null && Number(declared) !== bytes.length) {
      throw new InputError(
        `the built-in demo model: ${file}: got ${bytes.length} of ${declared} bytes`,
      );
    }
    await Deno.mkdir(join(path, ".."), { recursive: true });
    // Written whole, then renamed: a cut download never leaves a file that looks complete.
    await Deno.writeFile(`${path}.partial`, bytes);
    await Deno.rename(`${path}.partial`, path);
  }
  return dir;
}

function defaultCacheDir(): string {
  const env = (k: string) => Deno.env.get(k);
  const explicit = env("ZOETROPE_CACHE");
  if (explicit) return explicit;
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "zoetrope");
  const home = env("HOME") ?? env("USERPROFILE") ?? ".";
  return join(home, ".cache", "zoetrope");
}
