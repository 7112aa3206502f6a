import { ClipTokenizer } from "../../engine/tokenizer.ts";
import {
  DEMO_COLOURS,
  DEMO_MOTIONS,
  DEMO_SHAPES,
  DEMO_WORDS,
  demoTokenizer,
  demoVocabSize,
} from "../../weights/demo.ts";
import { assert, assertEquals } from "../assert.ts";

Deno.test("demo tokenizer: CLIP's BPE format, every demo word one token, any text still encodes", () => {
  const files = demoTokenizer();
  const vocab = JSON.parse(files.vocabJson) as Record<string, number>;
  assertEquals(Object.keys(vocab).length, demoVocabSize());
  const tok = ClipTokenizer.fromFiles(files);
  assertEquals([tok.bosId, tok.eosId], [demoVocabSize() - 2, demoVocabSize() - 1]);
  for (const word of DEMO_WORDS) {
    const ids = tok.encode(word).ids;
    // <start> word <end> then padding
    assertEquals(ids[0], tok.bosId);
    assertEquals(ids[1], vocab[word + "</w>"], word);
    assertEquals(ids[2], tok.eosId, `${word} is one token`);
  }
  let n = 0;
  for (const c of DEMO_COLOURS) {
    for (const s of DEMO_SHAPES) {
      for (const m of DEMO_MOTIONS) {
        const prompt = `a ${c} ${s} ${m}`;
        const words = prompt.split(" ").length;
        assertEquals(tok.encode(prompt).ids[words + 1], tok.eosId, prompt);
        n++;
      }
    }
  }
  assertEquals(n, 108);
  const other = tok.encode("a lighthouse in a storm").ids;
  assert(other.slice(1).findIndex((i) => i === tok.eosId) > 5, "byte fallback");
});
