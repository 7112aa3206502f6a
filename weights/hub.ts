/**
 * Hugging Face Hub downloads into the standard hub cache (shared with huggingface_hub):
 * `<cache>/models--owner--repo/{blobs/<etag>, snapshots/<commit>/<path>, refs/<rev>}`.
 * A file already in the cache is reused without any network; downloads resume from
 * `<blob>.incomplete` with a Range request and are checked against the size and, when the ETag
 * is a sha256, the content hash. No console output: progress goes through a callback.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";
import { createHash } from "node:crypto";
import { pathExists } from "./fs.ts";

/** A parsed `hf:owner/repo[/path/in/repo][@rev]` reference. */
export interface HubReference {
  repo: string;
  /** File (or folder) inside the repo; "" for the repo root. */
  path: string;
  revision: string;
}

/** Options of resolveHubFile / resolveHubFolder. */
export interface HubOptions {
  /** Default: $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default: $HF_HUB_CACHE, $HF_HOME/hub, or ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default: $HF_TOKEN. Sent only to the endpoint's origin. */
  token?: string;
  /** Bytes done / total (total 0 when unknown) for the file being downloaded. */
  onProgress?: (done: number, total: number, file: string) => void;
  signal?: AbortSignal;
  /** Automatic resumes after a dropped connection (default 2). */
  retries?: number;
  /** Never touch the network (default: $HF_HUB_OFFLINE is "1"). */
  offline?: boolean;
}

const COMMIT_RE = /^[0-9a-f]{40}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const REPO_RE = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

function safeRelPath(p: string, what: string): string {
  if (
    p.startsWith("/") || p.includes("\\") || p.includes("\0") ||
    p.split("/").some((s) => s === ".." || s === ".")
  ) {
    throw new InputError(`${what}: unsafe path '${p}'`);
  }
  return p.replace(/\/+$/, "");
}

/**
 * Parses `hf:owner/repo[/path/in/repo][@rev]` (revision defaults to "main").
 * @example
 * ```ts
 * parseHubReference("hf:guoyww/animatediff/mm_sd_v15_v2.ckpt@main");
 * // { repo: "guoyww/animatediff", path: "mm_sd_v15_v2.ckpt", revision: "main" }
 * ```
 */
export function parseHubReference(ref: string): HubReference {
  if (!ref.startsWith("hf:")) throw new InputError(`'${ref}': a hub reference starts with 'hf:'`);
  let rest = ref.slice(3);
  let revision = "main";
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    revision = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[\w.\-/]+$/.test(revision) || revision.includes("..")) {
      throw new InputError(`'${ref}': bad revision '${revision}'`);
    }
  }
  const parts = rest.split("/");
  const repo = parts.slice(0, 2).join("/");
  if (!REPO_RE.test(repo) || repo.includes("..")) {
    throw new InputError(`'${ref}': expected hf:owner/repo[/path][@revision]`);
  }
  return { repo, path: safeRelPath(parts.slice(2).join("/"), ref), revision };
}

function defaultCacheDir(): string {
  const env = (k: string) => Deno.env.get(k);
  if (env("HF_HUB_CACHE")) return env("HF_HUB_CACHE")!;
  if (env("HF_HOME")) return `${env("HF_HOME")}/hub`;
  return `${env("HOME") ?? env("USERPROFILE") ?? "."}/.cache/huggingface/hub`;
}

interface Resolved {
  endpoint: string;
  cacheDir: string;
  token?: string;
  offline: boolean;
  retries: number;
}

function resolveOptions(o: HubOptions): Resolved {
  return {
    endpoint: (o.endpoint ?? Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co").replace(
      /\/+$/,
      "",
    ),
    cacheDir: o.cacheDir ?? defaultCacheDir(),
    token: o.token ?? Deno.env.get("HF_TOKEN"),
    offline: o.offline ?? Deno.env.get("HF_HUB_OFFLINE") === "1",
    retries: o.retries ?? 2,
  };
}

function repoDir(cacheDir: string, repo: string): string {
  return `${cacheDir}/models--${repo.replace("/", "--")}`;
}

async function readText(path: string): Promise<string | null> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return null;
  }
}

/** The cached snapshot commit for a revision, without network. */
async function cachedCommit(dir: string, revision: string): Promise<string | null> {
  if (COMMIT_RE.test(revision)) return revision;
  const c = await readText(`${dir}/refs/${revision}`);
  return c && COMMIT_RE.test(c) ? c : null;
}

function headersFor(url: string, r: Resolved): Headers {
  const h = new Headers({ "user-agent": "zoetrope" });
  if (r.token && new URL(url).origin === new URL(r.endpoint).origin) {
    h.set("authorization", `Bearer ${r.token}`);
  }
  return h;
}

function stripEtag(e: string | null): string | null {
  if (!e) return null;
  return e.replace(/^W\//, "").replace(/^"|"$/g, "");
}

interface FileMeta {
  commit: string;
  etag: string;
  size: number | null;
  downloadUrl: string;
}

/** HEAD without following redirects to other hosts: the hub's own headers carry the metadata. */
async function fetchMeta(url: string, r: Resolved, signal?: AbortSignal): Promise<FileMeta> {
  let current = url;
  for (let hop = 0; hop < 5; hop++) {
    const res = await fetch(current, {
      method: "HEAD",
      redirect: "manual",
      headers: headersFor(current, r),
      signal,
    });
    await res.body?.cancel();
    const location = res.headers.get("location");
    const isRedirect = res.status >= 300 && res.status < 400 && location;
    if (
      isRedirect && new URL(location, current).origin === new URL(current).origin &&
      !res.headers.get("x-repo-commit")
    ) {
      current = new URL(location, current).href; // renamed repo: follow on the hub itself
      continue;
    }
    if (!isRedirect && !res.ok) {
      // 4xx: the reference names nothing (or needs a token); 5xx: the hub's trouble.
      throw new (res.status < 500 ? InputError : Error)(
        `${url}: HTTP ${res.status}${
          res.status === 401 || res.status === 403 ? " (set HF_TOKEN?)" : ""
        }`,
      );
    }
    const commit = res.headers.get("x-repo-commit");
    const etag = stripEtag(res.headers.get("x-linked-etag") ?? res.headers.get("etag"));
    const sizeText = res.headers.get("x-linked-size") ??
      (isRedirect ? null : res.headers.get("content-length"));
    if (!commit || !COMMIT_RE.test(commit)) {
      throw new Error(`${url}: the server sent no X-Repo-Commit`);
    }
    if (!etag || !/^[\w.-]+$/.test(etag)) throw new Error(`${url}: the server sent no usable ETag`);
    return {
      commit,
      etag,
      size: sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : null,
      downloadUrl: isRedirect ? new URL(location!, current).href : current,
    };
  }
  throw new Error(`${url}: too many redirects`);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(1 << 20);
    while (true) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/** One download attempt into `<blob>.incomplete`, resuming from its current size. */
async function downloadOnce(
  meta: FileMeta,
  part: string,
  r: Resolved,
  o: HubOptions,
  name: string,
): Promise<void> {
  let have = 0;
  try {
    have = (await Deno.stat(part)).size;
  } catch { /* fresh download */ }
  const headers = headersFor(meta.downloadUrl, r);
  if (have > 0) headers.set("range", `bytes=${have}-`);
  const res = await fetch(meta.downloadUrl, { headers, signal: o.signal });
  if (res.status === 416 && meta.size !== null && have === meta.size) {
    await res.body?.cancel();
    return;
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new Error(`${meta.downloadUrl}: HTTP ${res.status}`);
  }
  const append = res.status === 206 && have > 0;
  if (!append) have = 0;
  const total = meta.size ?? (Number(res.headers.get("content-length") ?? 0) + have);
  const file = await Deno.open(part, { write: true, create: true, append, truncate: !append });
  try {
    for await (const chunk of res.body) {
      let off = 0;
      while (off < chunk.byteLength) off += await file.write(chunk.subarray(off));
      have += chunk.byteLength;
      o.onProgress?.(have, total, name);
    }
  } finally {
    file.close();
  }
}

async function linkSnapshot(
  dir: string,
  commit: string,
  path: string,
  blob: string,
): Promise<string> {
  const target = `${dir}/snapshots/${commit}/${path}`;
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  await Deno.remove(target).catch(() => {});
  const depth = path.split("/").length + 1; // snapshots/<commit>/<path...>
  try {
    await Deno.symlink(`${"../".repeat(depth)}blobs/${blob}`, target);
  } catch {
    await Deno.copyFile(`${dir}/blobs/${blob}`, target);
  }
  return target;
}

async function writeRef(dir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const ref = `${dir}/refs/${revision}`;
  await Deno.mkdir(ref.slice(0, ref.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(ref, commit);
}

async function fetchFile(
  repo: string,
  path: string,
  revision: string,
  r: Resolved,
  o: HubOptions,
): Promise<string> {
  const dir = repoDir(r.cacheDir, repo);
  const commit = await cachedCommit(dir, revision);
  if (commit && await pathExists(`${dir}/snapshots/${commit}/${path}`)) {
    return `${dir}/snapshots/${commit}/${path}`;
  }
  const label = `hf:${repo}/${path}@${revision}`;
  if (r.offline) {
    throw new Error(`${label}: not in the hub cache ${r.cacheDir} and offline mode is on`);
  }
  const url = `${r.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${
    path.split("/").map(encodeURIComponent).join("/")
  }`;
  const meta = await fetchMeta(url, r, o.signal);
  const blob = `${dir}/blobs/${meta.etag}`;
  if (!await pathExists(blob)) {
    await Deno.mkdir(`${dir}/blobs`, { recursive: true });
    const part = `${blob}.incomplete`;
    for (let attempt = 0;; attempt++) {
      try {
        await downloadOnce(meta, part, r, o, path);
        break;
      } catch (e) {
        if (o.signal?.aborted || attempt >= r.retries) {
          throw new Error(
            `${label}: download interrupted (${(e as Error).message}); retry to resume`,
          );
        }
      }
    }
    const size = (await Deno.stat(part)).size;
    if (meta.size !== null && size !== meta.size) {
      await Deno.remove(part);
      throw new Error(`${label}: downloaded ${size} bytes, expected ${meta.size}`);
    }
    if (SHA256_RE.test(meta.etag)) {
      const sha = await sha256File(part);
      if (sha !== meta.etag) {
        await Deno.remove(part);
        throw new Error(`${label}: sha256 ${sha} does not match the expected ${meta.etag}`);
      }
    }
    await Deno.rename(part, blob);
  }
  const target = await linkSnapshot(dir, meta.commit, path, meta.etag);
  await writeRef(dir, revision, meta.commit);
  return target;
}

/**
 * Returns a local path for a hub file, downloading it into the hub cache if needed.
 * @example
 * ```ts
 * const path = await resolveHubFile("hf:guoyww/animatediff/mm_sd_v15_v2.ckpt");
 * ```
 */
export async function resolveHubFile(
  ref: string | HubReference,
  options: HubOptions = {},
): Promise<string> {
  const h = typeof ref === "string" ? parseHubReference(ref) : ref;
  if (!h.path) {
    throw new InputError(`hf:${h.repo}: name a file inside the repo (hf:owner/repo/file)`);
  }
  return await fetchFile(
    h.repo,
    safeRelPath(h.path, h.repo),
    h.revision,
    resolveOptions(options),
    options,
  );
}

/**
 * Whether a repo file is needed for a diffusers folder: JSON configs, tokenizer files and
 * safetensors weights; fp16/bf16 variants and .bin/.ckpt weights only where a folder has no
 * plain safetensors.
 * @example
 * ```ts
 * isNeededDiffusersFile("unet/config.json", ["unet/config.json"]); // true
 * ```
 */
export function isNeededDiffusersFile(name: string, all: readonly string[]): boolean {
  const dir = name.slice(0, name.lastIndexOf("/") + 1);
  const base = name.slice(dir.length);
  const variant = /\.(fp16|bf16)\.safetensors$/;
  const plainSafetensorsHere = () =>
    all.some((n) =>
      n.startsWith(dir) && !n.slice(dir.length).includes("/") && n.endsWith(".safetensors") &&
      !variant.test(n)
    );
  if (base.endsWith(".json") || base === "merges.txt" || base === "vocab.txt") return true;
  if (variant.test(base)) return !plainSafetensorsHere();
  if (base.endsWith(".safetensors")) return true;
  if (/\.(bin|ckpt|pt)$/.test(base)) {
    return !all.some((n) =>
      n.startsWith(dir) && !n.slice(dir.length).includes("/") && n.endsWith(".safetensors")
    );
  }
  return false;
}

/**
 * Downloads what a diffusers folder needs (configs, tokenizer files, safetensors weights) from a
 * repo (or its subfolder `path`) and returns the local snapshot folder. Listing goes through
 * `{endpoint}/api/models/{repo}/revision/{rev}`; without network a complete cached snapshot is used.
 * @example
 * ```ts
 * const dir = await resolveHubFolder("hf:guoyww/animatediff-motion-adapter-v1-5-2");
 * ```
 */
export async function resolveHubFolder(
  ref: string | HubReference,
  options: HubOptions = {},
): Promise<string> {
  const h = typeof ref === "string" ? parseHubReference(ref) : ref;
  const r = resolveOptions(options);
  const dir = repoDir(r.cacheDir, h.repo);
  const sub = h.path ? `/${h.path}` : "";
  const cached = await cachedCommit(dir, h.revision);
  let listing: { sha: string; siblings: { rfilename: string }[] };
  try {
    if (r.offline) throw new Error("offline mode is on");
    const url = `${r.endpoint}/api/models/${h.repo}/revision/${encodeURIComponent(h.revision)}`;
    const res = await fetch(url, { headers: headersFor(url, r), signal: options.signal });
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`${url}: HTTP ${res.status}`);
    }
    listing = await res.json();
  } catch (e) {
    if (cached && await pathExists(`${dir}/snapshots/${cached}${sub}`)) {
      return `${dir}/snapshots/${cached}${sub}`;
    }
    throw new Error(`hf:${h.repo}@${h.revision}: cannot list the repo (${(e as Error).message})`);
  }
  if (!listing || !COMMIT_RE.test(listing.sha ?? "") || !Array.isArray(listing.siblings)) {
    throw new Error(`hf:${h.repo}@${h.revision}: malformed repo listing`);
  }
  const prefix = h.path ? `${h.path}/` : "";
  const names = listing.siblings.map((s) => safeRelPath(String(s.rfilename), `hf:${h.repo}`))
    .filter((n) => n.startsWith(prefix));
  const needed = names.filter((n) => isNeededDiffusersFile(n, names));
  if (needed.length === 0) {
    throw new InputError(`hf:${h.repo}${sub}@${h.revision}: no diffusers files found`);
  }
  for (const name of needed) await fetchFile(h.repo, name, listing.sha, r, options);
  await writeRef(dir, h.revision, listing.sha);
  return `${dir}/snapshots/${listing.sha}${sub}`;
}
