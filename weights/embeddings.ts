/**
 * Textual-inversion embeddings (A1111 `.pt` / `.safetensors` with `string_to_param` or
 * `emb_params`, diffusers `learned_embeds.bin` / `.safetensors` with one `{token: vector}`):
 * read with the restricted pickle reader, checked against the text encoder's width, and bound
 * to a token — by default the file name, as A1111. A multi-vector embedding T takes the tokens
 * T, T_1, ..., T_{n-1} (diffusers' convention), each a new row of the token-embedding table.
 * @module
 */

import { basename, extname } from "node:path";
import { InputError } from "../kernels/gpu/errors.ts";
import { openTensorFile } from "./open.ts";
import type { HostTensor, ModelWeights } from "./types.ts";

/** An embedding to load: its file and the token it binds (default: the file name). */
export interface EmbeddingSpec {
  path: string;
  token?: string;
}

/** A loaded embedding: its token and vectors [n, width]. */
export interface Embedding {
  token: string;
  vectors: Float32Array;
  /** Vectors (n): the tokens are token, token_1, ..., token_{n-1}. */
  count: number;
}

/** The token-embedding table of the CLIP text encoder (canonical name). */
export const TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight";

/**
 * Reads one embedding file; `width` is the text encoder's hidden size. One-line InputErrors
 * name the file (unreadable, no embedding in it, a width that does not match).
 *
 * @example
 * ```ts
 * const e = await loadEmbedding({ path: "embeddings/easynegative.safetensors" }, 768);
 * e.token; // "easynegative"
 * ```
 */
export async function loadEmbedding(spec: EmbeddingSpec, width: number): Promise<Embedding> {
  const file = await openTensorFile(spec.path).catch((e) => {
    throw new InputError(`embeddings: ${spec.path}: ${(e as Error).message}`);
  });
  try {
    const t = pickTensor(file.tensors, spec.path);
    const n = t.shape.length === 1 ? 1 : t.shape[0];
    const w = t.shape[t.shape.length - 1];
    if (t.shape.length > 2 || w !== width) {
      throw new InputError(
        `embeddings: ${spec.path}: vectors of width ${w} (shape [${t.shape}]) do not match the ` +
          `text encoder's ${width} (an embedding for another model family?)`,
      );
    }
    const token = spec.token ?? basename(spec.path, extname(spec.path));
    if (!token || /\s/.test(token)) {
      throw new InputError(`embeddings: ${spec.path}: token "${token}" must be one word`);
    }
    return { token, vectors: await t.read(), count: n };
  } finally {
    file.close();
  }
}

function pickTensor(tensors: Map<string, HostTensor>, path: string): HostTensor {
  const a1111 = tensors.get("emb_params") ??
    [...tensors].find(([k]) => k.startsWith("string_to_param."))?.[1];
  if (a1111) return a1111;
  if (tensors.size === 1) return [...tensors.values()][0];
  throw new InputError(
    `embeddings: ${path}: not a textual inversion embedding (expected emb_params, ` +
      `string_to_param or one {token: vector} tensor; found ${tensors.size} tensors)`,
  );
}

/**
 * The model with the embeddings' vectors appended to its token-embedding table (rows
 * vocabSize, vocabSize + 1, ... in order) and its text encoder's vocabulary grown to match.
 *
 * @example
 * ```ts
 * const extended = withEmbeddings(model, [embedding]);
 * ```
 */
export function withEmbeddings(
  model: ModelWeights,
  embeddings: readonly Embedding[],
): ModelWeights {
  if (embeddings.length === 0) return model;
  const table = model.textEncoder.get(TOKEN_EMBEDDING);
  if (!table) {
    throw new InputError(`embeddings: the model's text encoder has no ${TOKEN_EMBEDDING}`);
  }
  const [rows, width] = table.shape;
  const added = embeddings.reduce((n, e) => n + e.count, 0);
  const extended: HostTensor = {
    shape: [rows + added, width],
    dtype: "F32",
    read: async () => {
      const out = new Float32Array((rows + added) * width);
      out.set(await table.read(), 0);
      let at = rows * width;
      for (const e of embeddings) {
        out.set(e.vectors, at);
        at += e.vectors.length;
      }
      return out;
    },
  };
  const textEncoder = new Map(model.textEncoder);
  textEncoder.set(TOKEN_EMBEDDING, extended);
  return {
    ...model,
    textEncoder,
    clipConfig: { ...model.clipConfig, vocabSize: model.clipConfig.vocabSize + added },
  };
}
