/**
 * The built-in demo world's vocabulary and its tokenizer: `a <colour> <shape> <motion>` prompts
 * (../shared/DESIGN.md, "The built-in demo models") in CLIP's byte-level BPE format, with merges
 * that make every word of the vocabulary one token, so that a small text encoder sees words, not
 * letters.
 * @module
 */

import { byteSymbols } from "./tiny.ts";

/** Colours of the demo world. */
export const DEMO_COLOURS = ["red", "orange", "yellow", "green", "blue", "purple"] as const;
/** Shapes of the demo world. */
export const DEMO_SHAPES = ["circle", "square", "triangle"] as const;
/** Motions of the demo world (two words each but for growing / shrinking). */
export const DEMO_MOTIONS = [
  "moving left",
  "moving right",
  "moving up",
  "moving down",
  "growing",
  "shrinking",
] as const;

/** Every word a demo prompt uses. */
export const DEMO_WORDS: readonly string[] = [
  ...new Set(["a", ...DEMO_COLOURS, ...DEMO_SHAPES, ...DEMO_MOTIONS.flatMap((m) => m.split(" "))]),
];

/**
 * The demo tokenizer's files (vocab.json, merges.txt): 256 byte symbols, their `</w>` variants,
 * one token per merge, then `<|startoftext|>` and `<|endoftext|>` (the last id). Any text still
 * tokenizes (byte fallback); the demo's words are single tokens.
 *
 * @example
 * ```ts
 * const tok = ClipTokenizer.fromFiles(demoTokenizer());
 * tok.encode("a red circle moving left").ids.slice(0, 7); // start, 5 word tokens, end
 * ```
 */
export function demoTokenizer(): { vocabJson: string; mergesTxt: string } {
  const merges = demoMerges(DEMO_WORDS);
  const symbols = byteSymbols();
  const tokens = [
    ...symbols,
    ...symbols.map((s) => s + "</w>"),
    ...merges.map(([a, b]) => a + b),
    "<|startoftext|>",
    "<|endoftext|>",
  ];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => (vocab[t] = i));
  return {
    vocabJson: JSON.stringify(vocab),
    mergesTxt: ["#version: 0.2", ...merges.map((m) => m.join(" "))].join("\n") + "\n",
  };
}

/** Size of the demo tokenizer's vocabulary (the text encoder's embedding rows). */
export function demoVocabSize(): number {
  return 2 * 256 + demoMerges(DEMO_WORDS).length + 2;
}

/**
 * BPE merges under which every word is one symbol: words are taken in turn, and while the
 * merges so far (applied as CLIP's BPE applies them: lowest rank first) leave a word in pieces,
 * its first two pieces are merged. New merges rank last, so a finished word stays whole.
 */
function demoMerges(words: readonly string[]): [string, string][] {
  const merges: [string, string][] = [];
  const rank = new Map<string, number>();
  for (const word of words) {
    for (;;) {
      const pieces = bpe(word, rank);
      if (pieces.length === 1) break;
      const m: [string, string] = [pieces[0], pieces[1]];
      rank.set(m.join(" "), merges.length);
      merges.push(m);
    }
  }
  return merges;
}

/** CLIP's BPE of one (ASCII) word: characters, the last with `</w>`, merged lowest rank first. */
function bpe(word: string, rank: Map<string, number>): string[] {
  const w = [...word].map((c, i, a) => (i === a.length - 1 ? c + "</w>" : c));
  for (;;) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < w.length; i++) {
      const r = rank.get(`${w[i]} ${w[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
    }
    if (best < 0) return w;
    w.splice(best, 2, w[best] + w[best + 1]);
  }
}
