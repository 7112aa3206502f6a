/**
 * Textual inversion against ../shared/fixtures/phase2-tiny (`ti.*`): an A1111 safetensors
 * embedding (two vectors) and a diffusers pickle (one), the tokenizer's expanded ids, the text
 * encoder's extended table, and a whole guided DDIM run with both in the prompt and the
 * negative prompt; then the one-line errors of bad embeddings.
 */

import { assert, assertEquals, assertRejects, assertRelClose } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { FIXTURE } from "./models/parts.ts";
import { encodePrompt } from "../../engine/prompt.ts";
import { loadWeights } from "../../engine/load.ts";
import { writeSafetensors } from "../../weights/safetensors.ts";
import {
  assertRunMatches,
  PHASE2,
  phase2,
  phase2Goldens,
  phase2Pipeline,
  phase2Request,
  phase2Settings,
} from "./phase2.ts";

const TI = new URL("textual_inversion/", PHASE2).pathname;
const EMBEDDINGS = [
  { path: TI + "zt-style_a1111.safetensors", token: "<zt-style>" },
  { path: TI + "zt-obj_learned_embeds.bin", token: "<zt-obj>" },
];
const folder = { model: FIXTURE + "model", motionModule: FIXTURE + "motion_adapter" };

Deno.test("embeddings: tokens get ids after the vocabulary; multi-vector tokens expand; ids match", async () => {
  const s = await phase2Settings("ti");
  const w = await loadWeights({ ...folder, embeddings: EMBEDDINGS });
  try {
    assertEquals(w.model.clipConfig.vocabSize, 1003);
    const ids = (await phase2Goldens()).get("ti.input_ids")!.data as Int32Array;
    (s.tok_prompts as string[]).forEach((p, i) => {
      assertEquals([...w.tokenizer.encode(p).ids], [...ids.subarray(i * 77, (i + 1) * 77)], p);
    });
    // The table's new rows are the files' vectors.
    const table = await w.model.textEncoder.get("text_model.embeddings.token_embedding.weight")!
      .read();
    assertRelClose(table.subarray(1000 * 32, 1002 * 32), await phase2("ti.emb_a1111"), 0);
    assertRelClose(table.subarray(1002 * 32), await phase2("ti.emb_bin"), 0);
  } finally {
    w.model.close();
    w.motion.close();
  }
});

gpuTest("embeddings: prompt embeddings and a whole guided DDIM run match diffusers", async () => {
  const s = await phase2Settings("ti");
  const p = s.pipeline as Record<string, unknown>;
  const pipe = await phase2Pipeline({ embeddings: EMBEDDINGS });
  const gpu = pipe.gpu;
  try {
    const prompts = s.tok_prompts as string[];
    const ctx = encodePrompt(pipe, { prompt: "", negativePrompt: "", clipSkip: 1, prompts }, false);
    assertRelClose(await gpu.read(ctx), await phase2("ti.prompt_embeds"), 1e-4);
    ctx.release();
    const request = phase2Request(p);
    const latents = await pipe.generateLatents(request, {
      initialLatents: await phase2("ti.pipe.latents_init"),
    });
    await assertRunMatches(pipe, { latents, frames: request.frames }, "ti.pipe");
  } finally {
    pipe.dispose();
  }
});

Deno.test("embeddings: wrong width, no embedding, a taken token, a missing file: one line each", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const wide = `${dir}/wide.safetensors`;
    await writeSafetensors(wide, [{
      name: "emb_params",
      shape: [1, 768],
      dtype: "F32",
      data: () => Promise.resolve(new Float32Array(768)),
    }]);
    const two = `${dir}/two.safetensors`;
    const vec = () => Promise.resolve(new Float32Array(32));
    await writeSafetensors(two, [
      { name: "a", shape: [32], dtype: "F32", data: vec },
      { name: "b", shape: [32], dtype: "F32", data: vec },
    ]);
    const cases: [{ path: string; token?: string }[], RegExp][] = [
      [
        [{ path: wide }],
        /wide\.safetensors: vectors of width 768 \(shape \[1,768\]\) do not match the text encoder's 32/,
      ],
      [[{ path: two }], /two\.safetensors: not a textual inversion embedding/],
      [
        [{ path: EMBEDDINGS[1].path, token: "castle</w>".replace("</w>", "") }],
        /token "castle" is already in the vocabulary/,
      ],
      [[EMBEDDINGS[0], EMBEDDINGS[0]], /token "<zt-style>" is already in the vocabulary/],
      [[{ path: `${dir}/none.pt` }], /^embeddings: .*none\.pt: /],
    ];
    for (const [embeddings, re] of cases) {
      const err = await assertRejects(() => loadWeights({ ...folder, embeddings }), re);
      assert(!err.message.includes("\n"), err.message);
    }
    // The default token is the file name (A1111's convention), expanded to both vectors.
    const named = `${dir}/mystyle.safetensors`;
    await Deno.copyFile(EMBEDDINGS[0].path, named);
    const w = await loadWeights({ ...folder, embeddings: [{ path: named }] });
    assertEquals([...w.tokenizer.encode("a mystyle").ids.slice(1, 5)], [
      w.tokenizer.encode("a").ids[1],
      1000,
      1001,
      w.tokenizer.eosId,
    ]);
    w.model.close();
    w.motion.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
