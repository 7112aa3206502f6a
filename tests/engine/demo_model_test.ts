/**
 * The shipped demo models (weights/demo_model/, trained by tools/demo/recipe.ts): they load
 * through the same loaders as real checkpoints, `demo` is the default, `demo:paper` merges the
 * paper LoRA into the same base and keeps the same motion module, and one short generation of
 * each draws what the model was trained for (a dark background for the base, a light one for
 * the paper variant). The download path (a registry import) is tested against a local server.
 */

import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../assert.ts";
import { gpuTest, testGpu } from "../gpu.ts";
import { loadPipeline } from "../../engine/pipeline.ts";
import { loadWeights } from "../../engine/load.ts";
import {
  DEMO_MODEL_FILE_LIST,
  DEMO_MODEL_FILES,
  demoModelDir,
  isDemoModelName,
} from "../../weights/demo_model.ts";
import { DEMO_WORDS, demoVocabSize } from "../../weights/demo.ts";
import { DEMO_DEFAULTS } from "../../engine/request.ts";
import { InputError } from "../../kernels/gpu/errors.ts";

Deno.test("demo model names: demo and demo:paper only", () => {
  assert(isDemoModelName("demo") && isDemoModelName("demo:paper"));
  for (const n of ["Demo", "demo:", "./demo", "demo:other", "demo.safetensors"]) {
    assert(!isDemoModelName(n), n);
  }
});

Deno.test("demo model files: every listed file ships, all weights in f16, 20 MB at most", async () => {
  const dir = await demoModelDir();
  let bytes = 0;
  for (const f of DEMO_MODEL_FILE_LIST) bytes += (await Deno.stat(join(dir, f))).size;
  assert(bytes <= 20e6, `${bytes} bytes`);
  const recipe = JSON.parse(await Deno.readTextFile(join(dir, DEMO_MODEL_FILES.recipe)));
  for (const stage of ["vae", "unet", "motion", "paper"]) {
    assert(recipe.stages[stage]?.steps > 0, `recipe.json records the ${stage} stage`);
  }
  for (const f of DEMO_MODEL_FILE_LIST.filter((f) => f.endsWith(".safetensors"))) {
    const file = await Deno.open(join(dir, f));
    const head = new Uint8Array(8);
    await file.read(head);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    const json = new Uint8Array(n);
    let got = 0;
    while (got < n) got += (await file.read(json.subarray(got)))!;
    file.close();
    const header = JSON.parse(new TextDecoder().decode(json));
    const dtypes = new Set(
      Object.entries(header).filter(([k]) => k !== "__metadata__").map(([, v]) =>
        (v as { dtype: string }).dtype
      ),
    );
    assertEquals([...dtypes], ["F16"], f);
  }
});

Deno.test("demo weights: the default is demo; demo:paper is the same base with the paper LoRA merged", async () => {
  const base = await loadWeights({});
  const named = await loadWeights({ model: "demo" });
  const paper = await loadWeights({ model: "demo:paper" });
  try {
    assert(base.demo && named.demo && paper.demo);
    assertEquals(base.model.source, named.model.source);
    // Every demo word is one token of the demo tokenizer.
    const eos = demoVocabSize() - 1;
    for (const w of DEMO_WORDS) {
      const ids = base.tokenizer.encode(w).ids;
      assert(ids[1] !== eos && ids[2] === eos, `${w}: ${ids.slice(0, 4)}`);
    }
    // The same motion module for both.
    const mBase = [...base.motion.tensors.keys()], mPaper = [...paper.motion.tensors.keys()];
    assertEquals(mPaper, mBase);
    const probe = mBase.find((n) => n.endsWith("proj_out.weight"))!;
    assertEquals(
      await paper.motion.tensors.get(probe)!.read(),
      await base.motion.tensors.get(probe)!.read(),
    );
    // The LoRA changes the UNet's spatial attention, nothing else of the base.
    const q = [...base.model.unet.keys()].find((n) => n.endsWith("attn1.to_q.weight"))!;
    const qb = await base.model.unet.get(q)!.read(), qp = await paper.model.unet.get(q)!.read();
    assert(qb.some((v, i) => v !== qp[i]), "demo:paper differs in attention");
    const conv = [...base.model.unet.keys()].find((n) => n.endsWith("conv_in.weight"))!;
    assertEquals(await paper.model.unet.get(conv)!.read(), await base.model.unet.get(conv)!.read());
  } finally {
    for (const w of [base, named, paper]) {
      w.model.close();
      w.motion.close();
    }
  }
});

Deno.test("demo weights: the demo's motion module by name, and a clear error for a demo motion module with a real model", async () => {
  const w = await loadWeights({ model: "demo", motionModule: "demo" });
  assert(w.motion.tensors.size > 0);
  w.model.close();
  w.motion.close();
  const err = await assertRejects(
    () => loadWeights({ model: "/nonexistent/model.safetensors", motionModule: "demo" }),
    /^\/nonexistent\/model\.safetensors: no such file/,
  );
  assert(err instanceof InputError);
});

gpuTest(
  "demo pipelines: base draws on dark, demo:paper on light, at the demo's defaults",
  async () => {
    const device = await testGpu();
    const luma: number[] = [];
    for (const model of [undefined, "demo:paper"]) {
      const pipe = await loadPipeline({ model, device });
      try {
        assert(pipe.info.demo);
        const r = pipe.resolve({ prompt: "a blue square moving left" });
        assertEquals([r.frames, r.width, r.height, r.steps], [
          DEMO_DEFAULTS.frames,
          DEMO_DEFAULTS.width,
          DEMO_DEFAULTS.height,
          DEMO_DEFAULTS.steps,
        ]);
        const anim = await pipe.generate({ prompt: "a blue square moving left", seed: 3 });
        assertEquals(anim.frames.length, DEMO_DEFAULTS.frames);
        assertEquals([anim.width, anim.height], [DEMO_DEFAULTS.width, DEMO_DEFAULTS.height]);
        // The mean brightness of the frames' border (background, whatever the object does).
        let sum = 0, n = 0;
        for (const f of anim.frames) {
          for (let y = 0; y < f.height; y++) {
            for (let x = 0; x < f.width; x++) {
              if (x > 2 && y > 2 && x < f.width - 3 && y < f.height - 3) continue;
              const p = (y * f.width + x) * 4;
              sum += 0.299 * f.data[p] + 0.587 * f.data[p + 1] + 0.114 * f.data[p + 2];
              n++;
            }
          }
        }
        luma.push(sum / n);
      } finally {
        pipe.dispose();
      }
    }
    // Dark for the base, clearly lighter for the paper variant (its LoRA is short-trained: its
    // paper is greyish on some seeds; see the README's rates).
    assert(luma[0] < 80, `base background is dark: ${luma[0]}`);
    assert(luma[1] > 120 && luma[1] > luma[0] + 60, `demo:paper background is light: ${luma[1]}`);
  },
);

Deno.test("demo model download: fetched once into the cache, then read offline; HTTP errors are one line", async () => {
  const dir = await demoModelDir();
  const requests: string[] = [];
  let fail = false;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname).replace(/^\/m\//, "");
    requests.push(path);
    if (fail || !DEMO_MODEL_FILE_LIST.includes(path)) return new Response("no", { status: 404 });
    return new Response(await Deno.readFile(join(dir, path)));
  });
  const cacheDir = await Deno.makeTempDir({ prefix: "zoetrope-demo-cache-" });
  try {
    const url = new URL(`http://127.0.0.1:${server.addr.port}/m/`);
    const got = await demoModelDir({ url, cacheDir });
    assert(got.startsWith(cacheDir), got);
    assertEquals(requests.length, DEMO_MODEL_FILE_LIST.length);
    for (const f of DEMO_MODEL_FILE_LIST) {
      assertEquals(await Deno.readFile(join(got, f)), await Deno.readFile(join(dir, f)), f);
    }
    assertEquals(await demoModelDir({ url, cacheDir }), got);
    assertEquals(requests.length, DEMO_MODEL_FILE_LIST.length, "the second call is offline");
    // A missing file: a one-line error naming it, and nothing half-written left behind.
    await Deno.remove(join(got, DEMO_MODEL_FILES.paperLora));
    fail = true;
    const err = await assertRejects(
      () => demoModelDir({ url, cacheDir }),
      /paper_lora\.safetensors: HTTP 404$/,
    );
    assert(err instanceof InputError && !err.message.includes("\n"));
    const left = [...Deno.readDirSync(got)].map((e) => e.name);
    assert(!left.some((n) => n.endsWith(".partial")), `${left}`);
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});
