/**
 * CLIP text encoder (transformers CLIPTextModel naming under `text_model.`): token + position
 * embeddings, pre-LN transformer layers with causal self-attention and quick_gelu MLP, final
 * layer norm. `clipSkip` in A1111 numbering: 1 = last layer, 2 = penultimate (diffusers'
 * clip_skip = clipSkip - 1): the hidden state after layer L - (clipSkip - 1), then the final
 * layer norm, as diffusers does.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { Tensor } from "../../kernels/gpu/tensor.ts";
import type { ClipConfig } from "../../weights/model_config.ts";
import type { Param, WeightStore } from "../weight_store.ts";
import { LayerNorm, Linear } from "./layers.ts";
import { attention } from "../../kernels/attention.ts";
import { tokenEmbedding } from "../../kernels/embedding.ts";

class ClipLayer {
  readonly ln1: LayerNorm;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  readonly ln2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(w: WeightStore, p: string, readonly c: ClipConfig) {
    const d = c.hiddenSize;
    this.ln1 = new LayerNorm(w, `${p}.layer_norm1`, d, c.layerNormEps);
    this.q = new Linear(w, `${p}.self_attn.q_proj`, { in: d, out: d });
    this.k = new Linear(w, `${p}.self_attn.k_proj`, { in: d, out: d });
    this.v = new Linear(w, `${p}.self_attn.v_proj`, { in: d, out: d });
    this.out = new Linear(w, `${p}.self_attn.out_proj`, { in: d, out: d });
    this.ln2 = new LayerNorm(w, `${p}.layer_norm2`, d, c.layerNormEps);
    this.fc1 = new Linear(w, `${p}.mlp.fc1`, { in: d, out: c.intermediateSize });
    this.fc2 = new Linear(w, `${p}.mlp.fc2`, { in: c.intermediateSize, out: d });
  }

  /** x [B, L, D] -> [B, L, D]. */
  forward(gpu: Gpu, x: Tensor): Tensor {
    const n1 = this.ln1.forward(gpu, x);
    const a = attention(
      gpu,
      this.q.forward(gpu, n1),
      this.k.forward(gpu, n1),
      this.v.forward(gpu, n1),
      { heads: this.c.heads, causal: true },
    );
    const h = this.out.forward(gpu, a, { residual: x });
    const activation = this.c.hiddenAct === "quick_gelu" ? "quick_gelu" : "gelu";
    const f = this.fc1.forward(gpu, this.ln2.forward(gpu, h), { activation });
    return this.fc2.forward(gpu, f, { residual: h });
  }
}

/** The CLIP text transformer. */
export class ClipTextEncoder {
  readonly config: ClipConfig;
  readonly tokenTable: Param;
  readonly positionTable: Param;
  readonly layers: ClipLayer[] = [];
  readonly finalNorm: LayerNorm;

  constructor(w: WeightStore, config: ClipConfig) {
    this.config = config;
    const d = config.hiddenSize;
    this.tokenTable = w.param("text_model.embeddings.token_embedding.weight", [
      config.vocabSize,
      d,
    ]);
    this.positionTable = w.param("text_model.embeddings.position_embedding.weight", [
      config.maxPositions,
      d,
    ]);
    for (let i = 0; i < config.layers; i++) {
      this.layers.push(new ClipLayer(w, `text_model.encoder.layers.${i}`, config));
    }
    this.finalNorm = new LayerNorm(w, "text_model.final_layer_norm", d, config.layerNormEps);
  }

  /** ids [batch * L] (row-major) -> hidden states [batch, L, D]. */
  forward(gpu: Gpu, ids: Int32Array, batch: number, clipSkip = 1): Tensor {
    const L = this.config.layers;
    if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > L + 1) {
      throw new Error(`clipSkip must be an integer from 1 to ${L + 1}, got ${clipSkip}`);
    }
    return gpu.scope(() => {
      let h = tokenEmbedding(gpu, ids, batch, this.tokenTable.t, this.positionTable.t);
      for (const layer of this.layers.slice(0, L - (clipSkip - 1))) h = layer.forward(gpu, h);
      return this.finalNorm.forward(gpu, h);
    });
  }
}
