import { assert, assertEquals, assertRejects } from "../assert.ts";
import { goldensJson, loadGoldens } from "../goldens.ts";
import { ClipTokenizer } from "../../engine/tokenizer.ts";
import { InputError } from "../../kernels/gpu/errors.ts";

const TINY_DIR = new URL("../fixtures/tiny/model/tokenizer/", import.meta.url);
// Third-party CLIP vocabulary, read from ../shared beside the repo (never committed).
const CLIP_DIR = new URL("../../../shared/fixtures/clip-tokenizer/", import.meta.url);
const clipPresent = (() => {
  try {
    Deno.statSync(new URL("vocab.json", CLIP_DIR));
    return true;
  } catch {
    return false;
  }
})();
const clipIgnore = !clipPresent && Deno.env.get("CI") !== "true";

function row(data: Int32Array, r: number, width = 77): number[] {
  return Array.from(data.subarray(r * width, (r + 1) * width));
}

interface ClipRow {
  prompt: string;
  tokens: string[];
  untruncated_length: number;
  truncated: boolean;
}

async function clipFixture(): Promise<{
  json: { prompts: ClipRow[]; rows_where_no_ftfy_differs: number[] };
  ids: Int32Array;
  noFtfy: Int32Array;
  mask: Int32Array;
}> {
  if (!clipPresent) {
    throw new Error(`CLIP tokenizer fixture missing at ${CLIP_DIR} (required under CI)`);
  }
  const g = await loadGoldens(new URL("goldens.safetensors", CLIP_DIR));
  const json = JSON.parse(await Deno.readTextFile(new URL("goldens.json", CLIP_DIR)));
  return {
    json,
    ids: g.get("input_ids")!.data as Int32Array,
    noFtfy: g.get("input_ids_no_ftfy")!.data as Int32Array,
    mask: g.get("attention_mask")!.data as Int32Array,
  };
}

Deno.test("tokenizer: tiny vocab reproduces tokenizer.input_ids / attention_mask exactly (7 prompts)", async () => {
  const tok = await ClipTokenizer.fromDirectory(TINY_DIR);
  assertEquals([tok.bosId, tok.eosId, tok.padId, tok.maxLength], [998, 999, 999, 77]);
  const g = await loadGoldens();
  const ids = g.get("tokenizer.input_ids")!.data as Int32Array;
  const mask = g.get("tokenizer.attention_mask")!.data as Int32Array;
  const { inputs } = await goldensJson();
  const prompts: string[] = inputs.tok_prompts;
  assertEquals(prompts.length, 7);
  const encoded = tok.encodeBatch(prompts);
  encoded.forEach((e, r) => {
    assertEquals(Array.from(e.ids), row(ids, r), `row ${r} ids`);
    assertEquals(Array.from(e.attentionMask), row(mask, r), `row ${r} mask`);
    const strings = ["<|startoftext|>", ...tok.tokenize(prompts[r]).slice(0, 75), "<|endoftext|>"];
    assertEquals(strings, inputs.tok_tokens[r], `row ${r} token strings`);
  });
  // row 4 is the long prompt: truncated to BOS + 75 + EOS
  assert(encoded[4].truncated && encoded[4].untruncatedLength > 77, "long prompt is truncated");
  assertEquals(encoded[4].ids[76], 999);
});

Deno.test({
  name:
    "tokenizer: real CLIP vocab, basic cleanup matches every input_ids_no_ftfy row (61 prompts)",
  ignore: clipIgnore,
  fn: async () => {
    const { json, noFtfy, ids } = await clipFixture();
    const tok = await ClipTokenizer.fromDirectory(CLIP_DIR);
    assertEquals([tok.bosId, tok.eosId, tok.padId, tok.vocabSize], [49406, 49407, 49407, 49408]);
    assertEquals(Array.from(tok.encode("a photo of a cat").ids.subarray(0, 8)), [
      49406,
      320,
      1125,
      539,
      320,
      2368,
      49407,
      49407,
    ]);
    const rows = json.prompts.length;
    assertEquals(rows, 61);
    for (let r = 0; r < rows; r++) {
      const e = tok.encode(json.prompts[r].prompt);
      assertEquals(
        Array.from(e.ids),
        row(noFtfy, r),
        `row ${r} (${JSON.stringify(json.prompts[r].prompt)})`,
      );
      const nonPad = e.attentionMask.reduce((a, b) => a + b, 0);
      assertEquals(nonPad, Math.min(e.untruncatedLength, 77), `row ${r} mask length`);
    }
    // the fixture's statement: basic and ftfy differ exactly on these rows
    const differing = [];
    for (let r = 0; r < rows; r++) {
      if (row(noFtfy, r).join() !== row(ids, r).join()) differing.push(r);
    }
    assertEquals(differing, json.rows_where_no_ftfy_differs);
  },
});

Deno.test({
  name:
    "tokenizer: real CLIP vocab, ftfy cleanup matches every input_ids row incl. truncation info",
  ignore: clipIgnore,
  fn: async () => {
    const { json, ids, mask } = await clipFixture();
    const tok = await ClipTokenizer.fromDirectory(CLIP_DIR, { cleanup: "ftfy" });
    for (let r = 0; r < json.prompts.length; r++) {
      const p = json.prompts[r];
      const e = tok.encode(p.prompt);
      assertEquals(Array.from(e.ids), row(ids, r), `row ${r} (${JSON.stringify(p.prompt)})`);
      assertEquals(Array.from(e.attentionMask), row(mask, r), `row ${r} mask`);
      assertEquals(
        [e.untruncatedLength, e.truncated],
        [p.untruncated_length, p.truncated],
        `row ${r}`,
      );
      const strings = ["<|startoftext|>", ...tok.tokenize(p.prompt).slice(0, 75), "<|endoftext|>"];
      assertEquals(strings, p.tokens, `row ${r} token strings`);
    }
  },
});

Deno.test("tokenizer: special tokens in text, truncation and padding follow transformers", async () => {
  const tok = await ClipTokenizer.fromDirectory(TINY_DIR, { maxLength: 8 });
  const e = tok.encode("<|startoftext|>a<|endoftext|>");
  assertEquals(tok.tokenize("a"), ["a</w>"]);
  assertEquals(Array.from(e.ids.subarray(0, 5)), [998, 998, tok.encode("a").ids[1], 999, 999]);
  assertEquals(e.untruncatedLength, 5);
  assertEquals(tok.tokenize("x<|endoftext|>!!"), [
    ...tok.tokenize("x"),
    "<|endoftext|>",
    ...tok.tokenize("!!"),
  ]);
  const long = tok.encode("a a a a a a a a a a");
  assertEquals([long.truncated, long.untruncatedLength, long.ids.length], [true, 12, 8]);
  assertEquals(long.ids[7], 999);
  const empty = tok.encode("");
  assertEquals(Array.from(empty.ids), [998, 999, 999, 999, 999, 999, 999, 999]);
  assertEquals(Array.from(empty.attentionMask), [1, 1, 0, 0, 0, 0, 0, 0]);
});

Deno.test("tokenizer: basic cleanup drops control/format chars and isolates CJK ideographs", async () => {
  const tok = await ClipTokenizer.fromDirectory(TINY_DIR);
  assertEquals(tok.tokenize("a\u200bb"), tok.tokenize("ab"));
  assertEquals(tok.tokenize("A\tB\u3000c"), tok.tokenize("a b c"));
  assertEquals(tok.tokenize("猫猫"), tok.tokenize("猫 猫"));
  // decomposed accents are NFC-normalised
  assertEquals(tok.tokenize("cafe\u0301"), tok.tokenize("caf\u00e9"));
});

Deno.test("tokenizer: ftfy cleanup fixes entities, quotes, widths, ligatures and mojibake", async () => {
  const tok = await ClipTokenizer.fromDirectory(TINY_DIR, { cleanup: "ftfy" });
  const same = (a: string, b: string) => assertEquals(tok.tokenize(a), tok.tokenize(b), a);
  same("Tom &amp; Jerry &#39;&#x41;&QUOT;", "tom & jerry 'a\"");
  same("<b>&amp;</b>", "<b>&amp;</b>"); // a literal "<" disables unescaping, as ftfy's "auto"
  same("\u201cquote\u201d \u2018x\u2019", "\"quote\" 'x'");
  same("\uff21\uff22\uff23\u3000\uff11", "abc 1");
  same("\ufb01ne \ufb02ower", "fine flower");
  same("caf\u00c3\u00a9 \u00e2\u20ac\u2122", "caf\u00e9 \u2019");
  same("na\u00efve \u00e6\u00f8\u00e5", "na\u00efve \u00e6\u00f8\u00e5"); // valid Latin-1 text stays
  same("  a \n\n b\t", "a b");
});

Deno.test("tokenizer: invalid vocab/merges are InputErrors naming the file, on one line", async () => {
  const VOCAB = '{"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3}';
  const MERGES = "#version: 0.2\na b\n";
  const cases: [string, { vocabJson: string; mergesTxt: string }, RegExp][] = [
    [
      "no BOS",
      { vocabJson: '{"a": 0}', mergesTxt: MERGES },
      /^vocab\.json: has no "<\|startoftext\|>"/,
    ],
    ["not JSON", { vocabJson: "{oops", mergesTxt: MERGES }, /^vocab\.json: not valid JSON \(/],
    [
      "truncated",
      { vocabJson: VOCAB.slice(0, 20), mergesTxt: MERGES },
      /^vocab\.json: not valid JSON/,
    ],
    ["a list", { vocabJson: "[1]", mergesTxt: "" }, /^vocab\.json: expected a JSON object/],
    ["null", { vocabJson: "null", mergesTxt: "" }, /^vocab\.json: expected a JSON object/],
    [
      "string id",
      { vocabJson: '{"<|startoftext|>": "0", "<|endoftext|>": 1}', mergesTxt: MERGES },
      /^vocab\.json: id of "<\|startoftext\|>" is "0", expected an integer/,
    ],
    [
      "fractional id",
      { vocabJson: '{"<|startoftext|>": 0.5, "<|endoftext|>": 1}', mergesTxt: MERGES },
      /^vocab\.json: id of "<\|startoftext\|>" is 0\.5, expected an integer/,
    ],
    [
      "negative id",
      { vocabJson: '{"<|startoftext|>": -1, "<|endoftext|>": 1}', mergesTxt: MERGES },
      /is -1, expected an integer from 0/,
    ],
    [
      "huge id",
      { vocabJson: '{"<|startoftext|>": 1e300, "<|endoftext|>": 1}', mergesTxt: MERGES },
      /is 1e\+300, expected an integer from 0/,
    ],
    [
      "nested id",
      { vocabJson: '{"<|startoftext|>": {"x": 1}, "<|endoftext|>": 1}', mergesTxt: MERGES },
      /is an object, expected an integer/,
    ],
    [
      "three parts",
      { vocabJson: VOCAB, mergesTxt: "#version: 0.2\na b c\n" },
      /^merges\.txt: line 2 is "a b c", expected two symbols "a b"$/,
    ],
    [
      "one part",
      { vocabJson: VOCAB, mergesTxt: "#version: 0.2\na b\nab\n" },
      /^merges\.txt: line 3 is "ab"/,
    ],
    [
      "blank line inside",
      { vocabJson: VOCAB, mergesTxt: "#version: 0.2\na b\n\na b\n" },
      /^merges\.txt: line 3 is ""/,
    ],
    [
      "huge vocab.json",
      { vocabJson: " ".repeat(64 * 1024 * 1024 + 1), mergesTxt: MERGES },
      /^vocab\.json: 67108865 characters is too large for a tokenizer file/,
    ],
  ];
  for (const [what, files, pattern] of cases) {
    const err = await assertRejects(() => ClipTokenizer.fromFiles(files), pattern);
    assert(err instanceof InputError, `${what}: ${err.name} is not an InputError`);
    assert(!err.message.includes("\n"), `${what}: message spans lines`);
  }
  // Paths given with the files are named instead of the bare file names.
  await assertRejects(
    () =>
      ClipTokenizer.fromFiles({
        vocabJson: "{",
        mergesTxt: MERGES,
        vocabPath: "m/tokenizer/vocab.json",
      }),
    /^m\/tokenizer\/vocab\.json: not valid JSON/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/vocab.json`, VOCAB);
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\nonly-one\n");
    const err = await assertRejects(
      () => ClipTokenizer.fromDirectory(dir),
      new RegExp(`^${dir}/merges\\.txt: line 2 is "only-one"`),
    );
    assert(err instanceof InputError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const missing = await assertRejects(
    () => ClipTokenizer.fromDirectory("/nonexistent/dir"),
    /^cannot read \/nonexistent\/dir\/vocab\.json \(NotFound\)$/,
  );
  assert(missing instanceof InputError);
});

Deno.test("tokenizer: a prompt of one very long word tokenizes (no spread of its tokens)", () => {
  const tok = ClipTokenizer.fromFiles({
    vocabJson: '{"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "a</w>": 3}',
    mergesTxt: "#version: 0.2\n",
  });
  const tokens = tok.tokenize("a".repeat(200_000));
  assertEquals(tokens.length, 200_000);
  assertEquals([tokens[0], tokens.at(-1)], ["a", "a</w>"]);
});
