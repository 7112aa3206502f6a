/**
 * CLIP byte-level BPE tokenizer, matching transformers' slow `CLIPTokenizer` as Stable
 * Diffusion pipelines call it: `tok(text, padding="max_length", max_length=77, truncation=True)`.
 *
 * Steps: split out literal special tokens, clean the text ("basic" = transformers'
 * `BasicTokenizer` fallback used when ftfy is absent; "ftfy" = the ftfy fixes that matter for
 * prompts, then whitespace collapse and lowercase), split words with CLIP's regex, map UTF-8
 * bytes to printable characters (`bytes_to_unicode`), append `</w>` to the last symbol and merge
 * pairs by rank. BOS + at most `maxLength - 2` tokens + EOS, padded with the pad token.
 *
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

/** Result of encoding one prompt. */
export interface TokenizedPrompt {
  /** Token ids, length `maxLength`: BOS, text tokens, EOS, then padding. */
  ids: Int32Array;
  /** 1 for BOS, text tokens and EOS; 0 for padding. */
  attentionMask: Int32Array;
  /** Number of ids including BOS/EOS before truncation. */
  untruncatedLength: number;
  /** Whether text tokens were dropped to fit `maxLength`. */
  truncated: boolean;
}

/** Text cleanup before splitting: transformers' no-ftfy fallback, or ftfy's fixes. */
export type TextCleanup = "basic" | "ftfy";

/**
 * The contents of a tokenizer's two files, and optionally their paths (named in errors).
 *
 * @example
 * ```ts
 * const files: TokenizerFiles = { vocabJson: "{...}", mergesTxt: "#version: 0.2\n..." };
 * ```
 */
export interface TokenizerFiles {
  /** vocab.json: an object mapping each token to its integer id. */
  vocabJson: string;
  /** merges.txt: a `#version` header line, then one merge "a b" per line. */
  mergesTxt: string;
  /** Where vocab.json came from (default "vocab.json"). */
  vocabPath?: string;
  /** Where merges.txt came from (default "merges.txt"). */
  mergesPath?: string;
}

/** Options of {@link ClipTokenizer.fromFiles}. */
export interface ClipTokenizerOptions {
  /** Sequence length after padding/truncation (default 77). */
  maxLength?: number;
  /** Text cleanup (default "basic", what diffusers runs when ftfy is not installed). */
  cleanup?: TextCleanup;
  /** Padding token (default `<|endoftext|>`; SD 2.x tokenizers use `!`). */
  padToken?: string;
}

const BOS_TOKEN = "<|startoftext|>";
const EOS_TOKEN = "<|endoftext|>";
/** transformers reads merges.txt lines [1, 49152 - 256 - 2 + 1): header skipped, 48894 at most. */
const MAX_MERGES = 49152 - 256 - 2;
const BPE_CACHE_LIMIT = 20000;
/** Largest vocab.json / merges.txt accepted: CLIP's are 0.9 MB and 0.5 MB. */
const MAX_TOKENIZER_FILE_CHARS = 64 * 1024 * 1024;
/** Token ids index an Int32Array and the text encoder's embedding table. */
const MAX_TOKEN_ID = 2 ** 31 - 1;

/** Unicode White_Space (what Python's `regex` \s matches in CLIP's word pattern). */
const WS = "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/** CLIP's word pattern: `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (ignore case). */
const WORD_RE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS}\\p{L}\\p{N}]+`,
  "giu",
);
const SPECIAL_SPLIT_RE = /(<\|startoftext\|>|<\|endoftext\|>)/;

/** GPT-2 `bytes_to_unicode`: printable stand-ins for the 256 byte values. */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  }
  return table;
}
const BYTE_ENCODER = bytesToUnicode();

/** A string quoted for an error message, cut to a readable length. */
function shortQuote(s: string): string {
  return JSON.stringify(s.length > 40 ? s.slice(0, 40) + "..." : s);
}

/** A parsed JSON value as an error message shows it. */
function describeJson(v: unknown): string {
  if (typeof v === "string") return shortQuote(v);
  if (Array.isArray(v)) return "a list";
  if (v !== null && typeof v === "object") return "an object";
  return String(v);
}
const UTF8 = new TextEncoder();

/**
 * CLIP tokenizer (vocab.json + merges.txt), compatible with transformers' `CLIPTokenizer`.
 *
 * @example
 * ```ts
 * const tok = await ClipTokenizer.fromDirectory("models/sd15/tokenizer");
 * const { ids } = tok.encode("a photo of a cat"); // [49406, 320, 1125, 539, 320, 2368, 49407, 49407, ...]
 * ```
 */
export class ClipTokenizer {
  /** Id of `<|startoftext|>`. */
  readonly bosId: number;
  /** Id of `<|endoftext|>` (also the unknown-token id). */
  readonly eosId: number;
  /** Id used for padding (`<|endoftext|>` for SD 1.x). */
  readonly padId: number;
  /** Sequence length of every encoding (77 for CLIP). */
  readonly maxLength: number;
  /** Text cleanup in use. */
  readonly cleanup: TextCleanup;
  /** Number of entries in vocab.json. */
  readonly vocabSize: number;
  #vocab: Map<string, number>;
  #ranks: Map<string, number>;
  #cache = new Map<string, string[]>();
  /** Tokens added by textual-inversion embeddings, with their ids. */
  #added = new Map<string, number>();
  /** Multi-vector embeddings: T -> "T T_1 ... T_{n-1}". */
  #expand = new Map<string, string>();
  #addedRe: RegExp | null = null;

  private constructor(
    vocab: Map<string, number>,
    ranks: Map<string, number>,
    options: ClipTokenizerOptions & { vocabPath?: string },
  ) {
    this.#vocab = vocab;
    this.#ranks = ranks;
    this.vocabSize = vocab.size;
    this.maxLength = options.maxLength ?? 77;
    this.cleanup = options.cleanup ?? "basic";
    if (!Number.isInteger(this.maxLength) || this.maxLength < 2) {
      throw new InputError(
        `ClipTokenizer: maxLength must be an integer >= 2, got ${this.maxLength}`,
      );
    }
    const id = (token: string) => {
      const v = vocab.get(token);
      if (v === undefined) {
        throw new InputError(`${options.vocabPath ?? "vocab.json"}: has no "${token}" token`);
      }
      return v;
    };
    this.bosId = id(BOS_TOKEN);
    this.eosId = id(EOS_TOKEN);
    this.padId = id(options.padToken ?? EOS_TOKEN);
  }

  /**
   * Builds a tokenizer from the contents of vocab.json and merges.txt (first line is the
   * `#version` header and is always skipped, as transformers does).
   *
   * @example
   * ```ts
   * const tok = ClipTokenizer.fromFiles({ vocabJson, mergesTxt }, { cleanup: "ftfy" });
   * ```
   */
  static fromFiles(files: TokenizerFiles, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const vocabPath = files.vocabPath ?? "vocab.json";
    const mergesPath = files.mergesPath ?? "merges.txt";
    const { vocabJson, mergesTxt } = files;
    for (const [path, text] of [[vocabPath, vocabJson], [mergesPath, mergesTxt]] as const) {
      if (typeof text !== "string") throw new InputError(`${path}: no text given`);
      if (text.length > MAX_TOKENIZER_FILE_CHARS) {
        throw new InputError(
          `${path}: ${text.length} characters is too large for a tokenizer file ` +
            `(at most ${MAX_TOKENIZER_FILE_CHARS})`,
        );
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(vocabJson);
    } catch (e) {
      throw new InputError(
        `${vocabPath}: not valid JSON (${(e as Error).message.split("\n")[0]})`,
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new InputError(`${vocabPath}: expected a JSON object mapping each token to its id`);
    }
    const vocab = new Map<string, number>();
    for (const [token, id] of Object.entries(parsed)) {
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) {
        throw new InputError(
          `${vocabPath}: id of ${shortQuote(token)} is ${describeJson(id)}, ` +
            `expected an integer from 0 to ${MAX_TOKEN_ID}`,
        );
      }
      vocab.set(token, id as number);
    }
    const lines = mergesTxt.trim().split("\n").slice(1, 1 + MAX_MERGES);
    const ranks = new Map<string, number>();
    for (const [rank, line] of lines.entries()) {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2 || parts[0] === "") {
        throw new InputError(
          `${mergesPath}: line ${rank + 2} is ${shortQuote(line)}, expected two symbols "a b"`,
        );
      }
      const key = parts[0] + " " + parts[1];
      if (!ranks.has(key)) ranks.set(key, rank);
    }
    return new ClipTokenizer(vocab, ranks, { ...options, vocabPath });
  }

  /**
   * Reads vocab.json and merges.txt from a tokenizer folder; `model_max_length` and `pad_token`
   * from tokenizer_config.json apply unless given in `options`.
   *
   * @example
   * ```ts
   * const tok = await ClipTokenizer.fromDirectory(new URL("./tokenizer/", import.meta.url));
   * ```
   */
  static async fromDirectory(
    dir: string | URL,
    options: ClipTokenizerOptions = {},
  ): Promise<ClipTokenizer> {
    const base = typeof dir === "string"
      ? (dir.endsWith("/") ? dir : dir + "/")
      : new URL(dir.href.endsWith("/") ? dir.href : dir.href + "/");
    const file = (name: string) => typeof base === "string" ? base + name : new URL(name, base);
    const read = async (name: string) => {
      try {
        return await Deno.readTextFile(file(name));
      } catch (e) {
        throw new InputError(`cannot read ${file(name)} (${(e as Error).name})`);
      }
    };
    // One after the other, so that a missing folder is reported by its first file.
    const vocabJson = await read("vocab.json");
    const mergesTxt = await read("merges.txt");
    const vocabPath = String(file("vocab.json")), mergesPath = String(file("merges.txt"));
    const resolved = { ...options };
    try {
      const config = JSON.parse(await Deno.readTextFile(file("tokenizer_config.json")));
      const max = config.model_max_length;
      if (resolved.maxLength === undefined && Number.isInteger(max) && max <= 4096) {
        resolved.maxLength = max;
      }
      const pad = typeof config.pad_token === "string"
        ? config.pad_token
        : config.pad_token?.content;
      if (resolved.padToken === undefined && typeof pad === "string") resolved.padToken = pad;
    } catch {
      // tokenizer_config.json is optional; CLIP defaults apply.
    }
    return ClipTokenizer.fromFiles({ vocabJson, mergesTxt, vocabPath, mergesPath }, resolved);
  }

  /**
   * BPE token strings of `text` (no BOS/EOS, no truncation), as `CLIPTokenizer.tokenize`.
   *
   * @example
   * ```ts
   * tok.tokenize("a photo"); // ["a</w>", "photo</w>"]
   * ```
   */
  tokenize(text: string): string[] {
    if (this.#added.size === 0) return this.#tokenizeText(text);
    // Embedding tokens: expanded (T -> T T_1 ...), then split out of the text, longest first.
    for (const [t, full] of this.#expand) text = text.split(t).join(full);
    const out: string[] = [];
    let last = 0;
    for (const m of text.matchAll(this.#addedRe!)) {
      out.push(...this.#tokenizeText(text.slice(last, m.index)), m[0]);
      last = m.index! + m[0].length;
    }
    out.push(...this.#tokenizeText(text.slice(last)));
    return out;
  }

  /**
   * Adds a textual-inversion embedding's tokens: `token` and, for `count` > 1 vectors,
   * `token_1` ... `token_{count-1}`, with ids from `firstId` on (the rows appended to the text
   * encoder's table); a prompt's `token` then stands for all of them, as diffusers' and A1111's
   * embeddings do. Returns the ids.
   *
   * @example
   * ```ts
   * tok.addEmbeddingTokens("easynegative", 8, 49408); // [49408, ..., 49415]
   * ```
   */
  addEmbeddingTokens(token: string, count: number, firstId: number): number[] {
    const names = Array.from({ length: count }, (_, i) => (i === 0 ? token : `${token}_${i}`));
    for (const n of names) {
      if (this.#vocab.has(n) || this.#vocab.has(`${n}</w>`) || this.#added.has(n)) {
        throw new InputError(`embeddings: token "${n}" is already in the vocabulary`);
      }
    }
    const ids = names.map((n, i) => {
      this.#added.set(n, firstId + i);
      return firstId + i;
    });
    if (count > 1) this.#expand.set(token, names.join(" "));
    const escaped = [...this.#added.keys()].sort((a, b) => b.length - a.length)
      .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    this.#addedRe = new RegExp(escaped.join("|"), "g");
    return ids;
  }

  #tokenizeText(text: string): string[] {
    const out: string[] = [];
    for (const part of text.split(SPECIAL_SPLIT_RE)) {
      if (part === BOS_TOKEN || part === EOS_TOKEN) {
        out.push(part);
        continue;
      }
      if (!part) continue;
      const clean = this.cleanup === "ftfy" ? ftfyClean(part) : basicClean(part);
      for (const match of clean.matchAll(WORD_RE)) {
        const word = match[0];
        if (word.toLowerCase() === BOS_TOKEN || word.toLowerCase() === EOS_TOKEN) {
          out.push(word.toLowerCase());
          continue;
        }
        let mapped = "";
        for (const b of UTF8.encode(word)) mapped += BYTE_ENCODER[b];
        for (const token of this.#bpe(mapped)) out.push(token); // no push(...): words can be long
      }
    }
    return out;
  }

  /**
   * Encodes one prompt to `maxLength` ids with attention mask (pad, truncate as transformers).
   *
   * @example
   * ```ts
   * const { ids, attentionMask, truncated } = tok.encode("a photo of a cat");
   * ```
   */
  encode(text: string): TokenizedPrompt {
    const tokens = this.tokenize(text);
    const unk = this.eosId;
    const body = tokens.map((t) => this.#vocab.get(t) ?? this.#added.get(t) ?? unk);
    const room = this.maxLength - 2;
    const kept = body.length > room ? body.slice(0, room) : body;
    const ids = new Int32Array(this.maxLength).fill(this.padId);
    const attentionMask = new Int32Array(this.maxLength);
    ids[0] = this.bosId;
    ids.set(kept, 1);
    ids[kept.length + 1] = this.eosId;
    attentionMask.fill(1, 0, kept.length + 2);
    return {
      ids,
      attentionMask,
      untruncatedLength: body.length + 2,
      truncated: body.length > room,
    };
  }

  /**
   * Encodes several prompts (one {@link TokenizedPrompt} each).
   *
   * @example
   * ```ts
   * const [neg, pos] = tok.encodeBatch(["", "a cat"]);
   * ```
   */
  encodeBatch(texts: readonly string[]): TokenizedPrompt[] {
    return texts.map((t) => this.encode(t));
  }

  /** Byte-pair merges of one pre-token (already byte-mapped), by lowest merge rank first. */
  #bpe(token: string): string[] {
    const cached = this.#cache.get(token);
    if (cached) return cached;
    const chars = Array.from(token);
    let word = [...chars.slice(0, -1), chars[chars.length - 1] + "</w>"];
    while (word.length > 1) {
      let best = Infinity;
      let first = "", second = "";
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.#ranks.get(word[i] + " " + word[i + 1]);
        if (rank !== undefined && rank < best) {
          best = rank;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i++]);
        }
      }
      word = merged;
    }
    if (this.#cache.size >= BPE_CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(token, word);
    return word;
  }
}

// ---------------------------------------------------------------------------------------------
// "basic" cleanup: transformers BasicTokenizer(do_lower_case=True, strip_accents=False,
// do_split_on_punc=False, tokenize_chinese_chars=True), words joined by single spaces.

const CONTROL_RE = /[\t\n\r]|[\0\ufffd\p{C}]/gu;
const ZS_RE = /\p{Zs}/u;

function isCjk(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) || (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Python `str.split()` whitespace (isspace). */
// deno-lint-ignore no-control-regex
const PY_SPACE_RE = /[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

function basicClean(text: string): string {
  // _clean_text: drop NUL, U+FFFD and category C (except \t\n\r); whitespace -> " ".
  let cleaned = text.replace(
    CONTROL_RE,
    (c) => (c === "\t" || c === "\n" || c === "\r" ? " " : ""),
  );
  cleaned = Array.from(cleaned, (c) => {
    if (ZS_RE.test(c)) return " ";
    const cp = c.codePointAt(0)!;
    return isCjk(cp) ? ` ${c} ` : c;
  }).join("");
  const words = cleaned.normalize("NFC").split(PY_SPACE_RE).filter((w) => w.length > 0);
  return words.map((w) => w.toLowerCase()).join(" ");
}

// ---------------------------------------------------------------------------------------------
// "ftfy" cleanup: ftfy.fix_text's default fixes that matter for prompts, then CLIP's
// whitespace_clean and lower().

const HTML_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: "\u00a0",
  copy: "\u00a9",
  reg: "\u00ae",
  trade: "\u2122",
  hellip: "\u2026",
  mdash: "\u2014",
  ndash: "\u2013",
  lsquo: "\u2018",
  rsquo: "\u2019",
  ldquo: "\u201c",
  rdquo: "\u201d",
  laquo: "\u00ab",
  raquo: "\u00bb",
  deg: "\u00b0",
  times: "\u00d7",
  divide: "\u00f7",
  euro: "\u20ac",
  pound: "\u00a3",
  yen: "\u00a5",
  cent: "\u00a2",
  sect: "\u00a7",
  para: "\u00b6",
  middot: "\u00b7",
  bull: "\u2022",
  plusmn: "\u00b1",
  micro: "\u00b5",
  frac12: "\u00bd",
  frac14: "\u00bc",
  frac34: "\u00be",
  sup2: "\u00b2",
  sup3: "\u00b3",
  iexcl: "\u00a1",
  iquest: "\u00bf",
  larr: "\u2190",
  rarr: "\u2192",
  uarr: "\u2191",
  darr: "\u2193",
  hearts: "\u2665",
  star: "\u2606",
  eacute: "\u00e9",
  egrave: "\u00e8",
  aacute: "\u00e1",
  agrave: "\u00e0",
  iacute: "\u00ed",
  oacute: "\u00f3",
  uacute: "\u00fa",
  ntilde: "\u00f1",
  ccedil: "\u00e7",
  uuml: "\u00fc",
  ouml: "\u00f6",
  auml: "\u00e4",
  szlig: "\u00df",
};
const HTML_ENTITY_RE = /&(#?)([0-9A-Za-z]{1,24});/g;

function unescapeHtml(text: string): string {
  return text.replace(HTML_ENTITY_RE, (all, hash: string, name: string) => {
    if (hash) {
      const cp = /^[xX][0-9a-fA-F]+$/.test(name)
        ? parseInt(name.slice(1), 16)
        : /^\d+$/.test(name)
        ? parseInt(name, 10)
        : NaN;
      if (!Number.isFinite(cp) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return all;
      return cp >= 0x80 && cp <= 0x9f ? decodeCp1252Byte(cp) : String.fromCodePoint(cp);
    }
    const lower = HTML_ENTITIES[name];
    if (lower !== undefined) return lower;
    // ftfy also decodes fully uppercased names ("&AMP;") to the uppercased character.
    const fromUpper = name === name.toUpperCase() ? HTML_ENTITIES[name.toLowerCase()] : undefined;
    return fromUpper !== undefined ? fromUpper.toUpperCase() : all;
  });
}

/** Windows-1252 characters for bytes 0x80-0x9F (undefined bytes map to the C1 control). */
const CP1252_HIGH = "\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039" +
  "\u0152\x8d\u017d\x8f\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161" +
  "\u203a\u0153\x9d\u017e\u0178";
function decodeCp1252Byte(b: number): string {
  return CP1252_HIGH[b - 0x80];
}
const CP1252_ENCODE = new Map<string, number>();
for (let b = 0x80; b < 0x100; b++) {
  CP1252_ENCODE.set(b < 0xa0 ? decodeCp1252Byte(b) : String.fromCharCode(b), b);
}

/** A run of characters that are each one byte in Windows-1252/Latin-1, at least one non-ASCII. */
const MOJIBAKE_RUN_RE = new RegExp(`[\\x80-\\xff${CP1252_HIGH}]{2,}`, "g");
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });

/** Repairs UTF-8 text that was decoded as Windows-1252 (`cafÃ©` -> `café`), sequence by sequence. */
function fixMojibake(text: string): string {
  return text.replace(MOJIBAKE_RUN_RE, (run) => {
    const bytes = Uint8Array.from(Array.from(run, (c) => CP1252_ENCODE.get(c)!));
    let out = "";
    for (let i = 0; i < bytes.length;) {
      const b = bytes[i];
      const len = b >= 0xc2 && b <= 0xdf
        ? 2
        : b >= 0xe0 && b <= 0xef
        ? 3
        : b >= 0xf0 && b <= 0xf4
        ? 4
        : 0;
      if (len && i + len <= bytes.length) {
        try {
          out += UTF8_STRICT.decode(bytes.subarray(i, i + len));
          i += len;
          continue;
        } catch {
          // not a valid sequence: keep the character as it was
        }
      }
      out += Array.from(run)[i];
      i++;
    }
    return out;
  });
}

const LIGATURES: Record<string, string> = {
  "\u0132": "IJ",
  "\u0133": "ij",
  "\u0149": "\u02bcn",
  "\u01f1": "DZ",
  "\u01f2": "Dz",
  "\u01f3": "dz",
  "\u01c4": "D\u017d",
  "\u01c5": "D\u017e",
  "\u01c6": "d\u017e",
  "\u01c7": "LJ",
  "\u01c8": "Lj",
  "\u01c9": "lj",
  "\u01ca": "NJ",
  "\u01cb": "Nj",
  "\u01cc": "nj",
  "\ufb00": "ff",
  "\ufb01": "fi",
  "\ufb02": "fl",
  "\ufb03": "ffi",
  "\ufb04": "ffl",
  "\ufb05": "\u017ft",
  "\ufb06": "st",
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join("")}]`, "g");
/** Fullwidth/halfwidth forms and the ideographic space, folded by NFKC as ftfy does. */
const WIDTH_RE = /[\u3000\uff01-\uffee]/g;
// deno-lint-ignore no-control-regex
const TERMINAL_ESCAPE_RE = /\x1b\[[\d;]*[a-zA-Z]/g;
const LINE_BREAK_RE = /\r\n|[\r\u2028\u2029\x85]/g;
/** ftfy's remove_control_chars set (C0 except \t\n\f\r, DEL, deprecated format chars, BOM, ...). */
const FTFY_CONTROL_RE = new RegExp(
  "[\\0-\\x08\\x0b\\x0e-\\x1f\\x7f\\u206a-\\u206f\\ufeff\\ufff9-\\ufffc" +
    "\\u{1d173}-\\u{1d17a}\\u{e0000}-\\u{e007f}]",
  "gu",
);
const C1_RE = /[\x80-\x9f]/g;
const PY_SPACE_GLOBAL_RE = new RegExp(PY_SPACE_RE.source, "g");

function ftfyClean(text: string): string {
  let t = text;
  if (!t.includes("<")) t = unescapeHtml(t); // ftfy's unescape_html="auto"
  t = t.replace(TERMINAL_ESCAPE_RE, "");
  t = fixMojibake(t);
  t = t.replace(C1_RE, (c) => decodeCp1252Byte(c.charCodeAt(0)));
  t = t.replace(LIGATURE_RE, (c) => LIGATURES[c]);
  t = t.replace(WIDTH_RE, (c) => c.normalize("NFKC"));
  t = t.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
  t = t.replace(LINE_BREAK_RE, "\n");
  t = t.replace(FTFY_CONTROL_RE, "");
  t = t.normalize("NFC");
  return t.replace(PY_SPACE_GLOBAL_RE, " ").trim().toLowerCase();
}
