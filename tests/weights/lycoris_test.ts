import { assert, assertEquals, assertRejects } from "../assert.ts";
import { applyLoras, loadLora } from "../../weights/lora.ts";
import { parseLoraKey } from "../../weights/names.ts";
import { type TensorToWrite, writeSafetensors } from "../../weights/safetensors.ts";
import { loadTinyDemoModel } from "../../weights/tiny.ts";
import type { ModelWeights } from "../../weights/types.ts";
import { ARCHITECTURE } from "../../engine/models/architecture.ts";

// LoHa / LoKr merges are checked two ways: against a plain LoRA that must give the same update
// (a LoHa whose second product is all ones, a LoKr whose first factor is 1x1), and element by
// element against the definitions (Hadamard product of two products; torch.kron).

const LINEAR = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k";
const CONV = "down_blocks.0.resnets.0.conv1";
const kohya = (module: string) => "lora_unet_" + module.replaceAll(".", "_");

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * 0.2);
}

function t(name: string, shape: number[], data: Float32Array): TensorToWrite {
  return { name, shape, dtype: "F32", data };
}

/** Writes the tensors to dir/file, loads them as a LoRA and merges it into the model. */
async function mergeFile(
  model: ModelWeights,
  path: string,
  tensors: TensorToWrite[],
  scale: number,
): Promise<ModelWeights> {
  await writeSafetensors(path, tensors);
  const lora = await loadLora(path, { model });
  return applyLoras(model, [{ lora, scale }]);
}

async function weight(m: ModelWeights, module: string): Promise<Float32Array> {
  return await m.unet.get(module + ".weight")!.read();
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

Deno.test("lycoris: LoHa and LoKr names parse as kohya modules; DoRA does not", () => {
  assertEquals(parseLoraKey("lora_unet_mid_block_attentions_0_proj_in.hada_w1_a"), {
    module: "mid_block_attentions_0_proj_in",
    role: "hada_w1_a",
    scheme: "kohya-unet",
  });
  assertEquals(
    parseLoraKey("lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w2_b")?.role,
    "lokr_w2_b",
  );
  assertEquals(parseLoraKey("lora_unet_x.dora_scale"), null);
});

Deno.test("lycoris: a LoHa merges like the equivalent LoRA and like its definition", async () => {
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    const [out, inp] = model.unet.get(LINEAR + ".weight")!.shape;
    const r = 4, k = kohya(LINEAR);
    const w1a = values(out * r, 1), w1b = values(r * inp, 2);
    // Second product all ones (rank 1): the LoHa update is w1_a @ w1_b * alpha / r.
    const ones = (n: number) => new Float32Array(n).fill(1);
    const loha = await mergeFile(model, `${dir}/loha.safetensors`, [
      t(`${k}.hada_w1_a`, [out, r], w1a),
      t(`${k}.hada_w1_b`, [r, inp], w1b),
      t(`${k}.hada_w2_a`, [out, 1], ones(out)),
      t(`${k}.hada_w2_b`, [1, inp], ones(inp)),
      t(`${k}.alpha`, [], new Float32Array([2])),
    ], 0.7);
    const lora = await mergeFile(model, `${dir}/lora.safetensors`, [
      t(`${k}.lora_up.weight`, [out, r], w1a),
      t(`${k}.lora_down.weight`, [r, inp], w1b),
      t(`${k}.alpha`, [], new Float32Array([2])),
    ], 0.7);
    const base = await weight(model, LINEAR);
    const a = await weight(loha, LINEAR), b = await weight(lora, LINEAR);
    assert(maxDiff(a, base) > 1e-3, "the LoHa changed the weight");
    assert(maxDiff(a, b) <= 1e-6, `LoHa vs LoRA: ${maxDiff(a, b)}`);
    // A general LoHa, element (o, i) from the definition.
    const w2a = values(out * r, 3), w2b = values(r * inp, 4);
    const general = await mergeFile(model, `${dir}/loha2.safetensors`, [
      t(`${k}.hada_w1_a`, [out, r], w1a),
      t(`${k}.hada_w1_b`, [r, inp], w1b),
      t(`${k}.hada_w2_a`, [out, r], w2a),
      t(`${k}.hada_w2_b`, [r, inp], w2b),
      t(`${k}.alpha`, [], new Float32Array([1])),
    ], 1);
    const g = await weight(general, LINEAR);
    for (const [o, i] of [[0, 0], [5, 7], [out - 1, inp - 1]]) {
      let p1 = 0, p2 = 0;
      for (let q = 0; q < r; q++) {
        p1 += w1a[o * r + q] * w1b[q * inp + i];
        p2 += w2a[o * r + q] * w2b[q * inp + i];
      }
      const want = base[o * inp + i] + p1 * p2 * (1 / r);
      assert(Math.abs(g[o * inp + i] - want) < 1e-6, `(${o}, ${i}): ${g[o * inp + i]} vs ${want}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    model.close();
  }
});

Deno.test("lycoris: a LoKr merges like the equivalent LoRA and like torch.kron on a conv", async () => {
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    const [out, inp] = model.unet.get(LINEAR + ".weight")!.shape;
    const r = 4, k = kohya(LINEAR);
    const w2a = values(out * r, 5), w2b = values(r * inp, 6);
    // kron([[1]], w2_a @ w2_b) * alpha / r == the LoRA (up w2_a, down w2_b, alpha).
    const lokr = await mergeFile(model, `${dir}/lokr.safetensors`, [
      t(`${k}.lokr_w1`, [1, 1], new Float32Array([1])),
      t(`${k}.lokr_w2_a`, [out, r], w2a),
      t(`${k}.lokr_w2_b`, [r, inp], w2b),
      t(`${k}.alpha`, [], new Float32Array([2])),
    ], 0.5);
    const lora = await mergeFile(model, `${dir}/lora.safetensors`, [
      t(`${k}.lora_up.weight`, [out, r], w2a),
      t(`${k}.lora_down.weight`, [r, inp], w2b),
      t(`${k}.alpha`, [], new Float32Array([2])),
    ], 0.5);
    const a = await weight(lokr, LINEAR), b = await weight(lora, LINEAR);
    assert(maxDiff(a, await weight(model, LINEAR)) > 1e-3, "the LoKr changed the weight");
    assert(maxDiff(a, b) <= 1e-6, `LoKr vs LoRA: ${maxDiff(a, b)}`);

    // Conv [32, 32, 3, 3] = kron(w1 [2, 2], w2 [16, 16, 3, 3]), whole factors (scale 1).
    const [co, ci, kh, kw] = model.unet.get(CONV + ".weight")!.shape;
    const c = co / 2, d = ci / 2, kc = kohya(CONV);
    const w1 = values(4, 7), w2 = values(c * d * kh * kw, 8);
    const conv = await mergeFile(model, `${dir}/lokr_conv.safetensors`, [
      t(`${kc}.lokr_w1`, [2, 2], w1),
      t(`${kc}.lokr_w2`, [c, d, kh, kw], w2),
      t(`${kc}.alpha`, [], new Float32Array([8])),
    ], 1);
    const base = await weight(model, CONV), merged = await weight(conv, CONV);
    // torch.kron on [2, 2, 1, 1] x [c, d, kh, kw]: [i c + p, j d + q, y, x] = w1[i, j] w2[p, q, y, x].
    for (
      const [i, j, p, q, y, x] of [[0, 0, 0, 0, 0, 0], [1, 0, 3, 5, 2, 1], [
        1,
        1,
        c - 1,
        d - 1,
        1,
        2,
      ]]
    ) {
      const at = (((i * c + p) * ci + (j * d + q)) * kh + y) * kw + x;
      const want = base[at] + w1[i * 2 + j] * w2[((p * d + q) * kh + y) * kw + x];
      assert(Math.abs(merged[at] - want) < 1e-6, `kron element: ${merged[at]} vs ${want}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    model.close();
  }
});

Deno.test("lycoris: Tucker factors, missing factors and wrong shapes are one-line errors", async () => {
  const { model } = loadTinyDemoModel(ARCHITECTURE);
  const dir = await Deno.makeTempDir();
  try {
    const [out, inp] = model.unet.get(LINEAR + ".weight")!.shape;
    const k = kohya(LINEAR);
    const loha = [
      t(`${k}.hada_w1_a`, [out, 2], values(out * 2, 1)),
      t(`${k}.hada_w1_b`, [2, inp], values(2 * inp, 2)),
      t(`${k}.hada_w2_a`, [out, 2], values(out * 2, 3)),
    ];
    const cases: [string, TensorToWrite[], RegExp][] = [
      [
        "missing",
        loha,
        /LyCORIS module .*to_k: a LoHa needs hada_w1_a, hada_w1_b, hada_w2_a and hada_w2_b/,
      ],
      [
        "tucker",
        [
          ...loha,
          t(`${k}.hada_w2_b`, [2, inp], values(2 * inp, 4)),
          t(`${k}.hada_t1`, [2, 2, 1, 1], values(4, 5)),
        ],
        /Tucker-decomposed factors .* are not supported/,
      ],
      [
        "mixed",
        [...loha, t(`${k}.lokr_w1`, [1, 1], values(1, 6))],
        /mixes LoHa and LoKr factors/,
      ],
      [
        "shape",
        [t(`${k}.lokr_w1`, [2, 2], values(4, 7)), t(`${k}.lokr_w2`, [3, 3], values(9, 8))],
        /LoRA does not match the model .*lokr update \[6,6\]/,
      ],
    ];
    for (const [name, tensors, pattern] of cases) {
      const path = `${dir}/${name}.safetensors`;
      await writeSafetensors(path, tensors);
      await assertRejects(() => loadLora(path, { model }), pattern);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    model.close();
  }
});
