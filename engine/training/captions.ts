/**
 * Where a training set's clips and captions come from: a WebVid-style CSV (`videoid`, `name`,
 * as the original AnimateDiff `train.py` reads it) whose rows name clips `<videoid>.<ext>` or
 * folders `<videoid>` in the video folder, or, without a CSV, a sidecar `<clip stem>.txt` beside
 * each clip. Rows and clips without a usable caption are reported through `onSkip`.
 * @module
 */

import { compareNatural } from "../input/clip.ts";

/** Non-clip files a video folder may hold without being reported. */
const QUIET_EXTENSIONS = [".txt", ".csv", ".json", ".yaml", ".yml", ".md"];

/**
 * Parses CSV text (RFC 4180: quoted fields, doubled quotes, commas and newlines in quotes) into
 * rows of objects keyed by the header row.
 *
 * @example
 * ```ts
 * parseCsv('videoid,name\n1,"a cat, running"\n'); // [{ videoid: "1", name: "a cat, running" }]
 * ```
 */
export function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [], field = "", quoted = false;
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  for (let i = 0; i < src.length; i++) {
    const ch = src[i];
    if (quoted) {
      if (ch === '"' && src[i + 1] === '"') field += '"', i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") row.push(field), field = "";
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && src[i + 1] === "\n") i++;
      row.push(field), rows.push(row), row = [], field = "";
    } else field += ch;
  }
  if (field !== "" || row.length > 0) row.push(field), rows.push(row);
  const nonEmpty = rows.filter((r) => r.length > 1 || r[0] !== "");
  const [header = [], ...body] = nonEmpty;
  return body.map((r) => Object.fromEntries(header.map((h, i) => [h.trim(), r[i] ?? ""])));
}

function stemOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

function extOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot).toLowerCase() : "";
}

/**
 * A clip path and its caption, before the clip is probed.
 *
 * @example
 * ```ts
 * const c: ClipCandidate = { path: "clips/0001.gif", caption: "a cat running" };
 * ```
 */
export interface ClipCandidate {
  /** The clip file or PNG-frames folder. */
  path: string;
  /** Its caption. */
  caption: string;
}

/** Folder entries (hidden ones skipped) sorted by name, numbers compared as numbers. */
async function entriesOf(folder: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(folder)) if (!e.name.startsWith(".")) out.push(e);
  return out.sort((a, b) => compareNatural(a.name, b.name));
}

/**
 * Clips named by CSV rows: `<videoid>.<ext>` (the first in name order) or a folder `<videoid>`;
 * a row without a clip or with an empty `name` is reported. Throws when the CSV lacks the
 * `videoid` and `name` columns.
 *
 * @example
 * ```ts
 * const clips = await captionsFromCsv("clips", "clips.csv", (p, why) => console.warn(p, why));
 * ```
 */
export async function captionsFromCsv(
  folder: string,
  csvPath: string,
  onSkip: (path: string, reason: string) => void,
): Promise<ClipCandidate[]> {
  const rows = parseCsv(await Deno.readTextFile(csvPath));
  if (rows.length > 0 && !("videoid" in rows[0] && "name" in rows[0])) {
    throw new Error(
      `ClipDataset: ${csvPath} needs the columns "videoid" and "name" (WebVid layout), ` +
        `found ${Object.keys(rows[0]).join(", ")}`,
    );
  }
  const byStem = new Map<string, string>();
  for (const e of await entriesOf(folder)) {
    const key = e.isDirectory ? e.name : stemOf(e.name);
    if (!e.isDirectory && QUIET_EXTENSIONS.includes(extOf(e.name))) continue;
    if (!byStem.has(key)) byStem.set(key, `${folder}/${e.name}`);
  }
  const out: ClipCandidate[] = [];
  for (const { videoid, name } of rows) {
    const path = byStem.get(videoid);
    if (!path) {
      onSkip(`${folder}/${videoid}`, `no clip named ${videoid}.* or ${videoid}/ for CSV row`);
    } else if (name.trim() === "") onSkip(path, `empty caption in ${csvPath}`);
    else out.push({ path, caption: name });
  }
  return out;
}

/**
 * Every clip of the folder (files other than captions and configs, and sub-folders) with the
 * trimmed text of its sidecar `<stem>.txt`; a clip without one, or with an empty one, is
 * reported.
 *
 * @example
 * ```ts
 * const clips = await captionsFromSidecars("clips", (p, why) => console.warn(p, why));
 * ```
 */
export async function captionsFromSidecars(
  folder: string,
  onSkip: (path: string, reason: string) => void,
): Promise<ClipCandidate[]> {
  const entries = await entriesOf(folder);
  const texts = new Set(
    entries.filter((e) => e.isFile && extOf(e.name) === ".txt").map((e) => e.name),
  );
  const out: ClipCandidate[] = [];
  for (const e of entries) {
    if (e.isFile && QUIET_EXTENSIONS.includes(extOf(e.name))) continue;
    const path = `${folder}/${e.name}`;
    const sidecar = `${e.isDirectory ? e.name : stemOf(e.name)}.txt`;
    if (!texts.has(sidecar)) {
      onSkip(path, `no caption (expected ${folder}/${sidecar})`);
      continue;
    }
    const caption = (await Deno.readTextFile(`${folder}/${sidecar}`)).trim();
    if (caption === "") onSkip(path, `empty caption in ${folder}/${sidecar}`);
    else out.push({ path, caption });
  }
  return out;
}
