/**
 * VAE training (diffusers' AutoencoderKL): images -> encoder moments (mean, logvar clamped to
 * [-30, 20]) -> z = mean + std * eps -> decoder -> loss = mse(decoded, images) + klWeight * KL,
 * KL = 0.5 * sum(mean^2 + var - 1 - logvar) over channels and pixels, averaged over the batch.
 * The decoder's backward gives dL/dz; the reparameterisation and the KL are differentiated on
 * the host (a few numbers per latent pixel) and seed the encoder's backward.
 * @module
 */

import type { Gpu } from "../../kernels/gpu/device.ts";
import type { DType, Tensor } from "../../kernels/gpu/tensor.ts";
import { InputError } from "../../kernels/gpu/errors.ts";
import { GradientTape } from "./autograd.ts";
import type { VaeDecoder, VaeEncoder } from "../models/vae.ts";
import { mseLoss } from "./diffusion.ts";
import type { TrainableParameters } from "./parameters.ts";
import type { TrainBatch, TrainStepResult } from "./trainer.ts";
import { TrainerBase, type TrainerResources } from "./base.ts";

/** logvar clamp of diffusers' DiagonalGaussianDistribution. */
const LOGVAR_MIN = -30, LOGVAR_MAX = 20;

const f = Math.fround;

/** What a {@link VaeTrainer} works with. */
export interface VaeParts extends TrainerResources {
  /** Storage dtype of the model and its activations (f16: mixed precision). */
  dtype: DType;
  encoder: VaeEncoder;
  decoder: VaeDecoder;
  /** The encoder is frozen: no encoder backward. */
  decoderOnly?: boolean;
  params: TrainableParameters;
  /** Weight of the KL term. */
  klWeight: number;
  /** The parameters' shapes as stored in files (what save() writes). */
  shapes: Map<string, readonly number[]>;
  seed: number;
  /** Frees everything the trainer holds but the Gpu. */
  release(): void;
  ownsGpu: boolean;
}

/** The VAE trainer (see the module doc). */
export class VaeTrainer extends TrainerBase {
  readonly #p: VaeParts;

  constructor(gpu: Gpu, parts: VaeParts) {
    super(gpu, parts);
    this.#p = parts;
  }

  async step(batch: TrainBatch): Promise<TrainStepResult> {
    const gpu = this.gpu, p = this.#p, params = this.params;
    const px = images(batch);
    params.dropGradients();
    const encTape = new GradientTape(gpu), decTape = new GradientTape(gpu);
    const held: (Tensor | null)[] = [];
    try {
      const x = gpu.upload(px.data, px.shape, p.dtype, "images");
      held.push(x);
      params.watch(encTape);
      const moments = encTape.run(() => p.encoder.moments(gpu, x));
      held.push(moments);
      const [n, c2, h, w] = moments.shape;
      const lat = c2 / 2, per = lat * h * w;
      const m = await gpu.read(moments);
      const eps = this.#eps(batch, [n, lat, h, w]);
      const { z, std, kl } = posterior(m, eps, n, per);
      const zt = gpu.upload(z, [n, lat, h, w], p.dtype, "z");
      held.push(zt);
      params.watch(decTape);
      decTape.watch(zt);
      const decoded = decTape.run(() => p.decoder.forward(gpu, zt));
      held.push(decoded);
      const { loss: mse, grad } = mseLoss(await gpu.read(decoded), px.data);
      const scale = params.lossScale;
      if (scale !== 1) { for (let i = 0; i < grad.length; i++) grad[i] *= scale; }
      const gy = gpu.upload(grad, decoded.shape, p.dtype, "loss gradient");
      held.push(gy);
      const grads = decTape.gradients(decoded, gy);
      const dzt = grads.get(zt.root)!;
      grads.delete(zt.root);
      // dL/dz, unscaled.
      const dz = (await gpu.read(dzt)).map((v) => v / scale);
      dzt.release();
      // dL/dmean = dz + kw * mean / n; dL/dlogvar = dz * eps * std / 2 + kw * (var - 1) / (2 n),
      // zero where the clamp held logvar.
      const kw = p.klWeight;
      const seed = new Float32Array(m.length);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < per; j++) {
          const k = i * per + j, mean = m[i * 2 * per + j], raw = m[i * 2 * per + per + j];
          const logvar = Math.min(LOGVAR_MAX, Math.max(LOGVAR_MIN, raw));
          seed[i * 2 * per + j] = dz[k] + (kw * mean) / n;
          seed[i * 2 * per + per + j] = raw < LOGVAR_MIN || raw > LOGVAR_MAX
            ? 0
            : 0.5 * dz[k] * eps[k] * std[k] + (kw * 0.5 * (Math.exp(logvar) - 1)) / n;
        }
      }
      if (scale !== 1) { for (let i = 0; i < seed.length; i++) seed[i] *= scale; }
      if (!p.decoderOnly) {
        const seedT = gpu.upload(seed, moments.shape, p.dtype, "moments gradient");
        held.push(seedT);
        for (const [root, g] of encTape.gradients(moments, seedT)) grads.set(root, g);
      }
      const { norm, skipped } = await params.update(grads);
      return { loss: mse + kw * kl, gradNorm: norm, skipped, lossScale: scale };
    } finally {
      encTape.dispose();
      decTape.dispose();
      for (const t of held) t?.release();
    }
  }

  async loss(batch: TrainBatch): Promise<number> {
    this.live();
    const gpu = this.gpu, p = this.#p;
    const px = images(batch);
    const held: Tensor[] = [];
    try {
      const x = gpu.upload(px.data, px.shape, p.dtype, "images");
      held.push(x);
      const moments = p.encoder.moments(gpu, x);
      held.push(moments);
      const [n, c2, h, w] = moments.shape;
      const per = (c2 / 2) * h * w;
      const eps = this.#eps(batch, [n, c2 / 2, h, w]);
      const { z, kl } = posterior(await gpu.read(moments), eps, n, per);
      const zt = gpu.upload(z, [n, c2 / 2, h, w], p.dtype, "z");
      held.push(zt);
      const decoded = p.decoder.forward(gpu, zt);
      held.push(decoded);
      return mseLoss(await gpu.read(decoded), px.data).loss + p.klWeight * kl;
    } finally {
      for (const t of held) t.release();
    }
  }

  /** The posterior sample's eps [n, latent, h, w]: given, or drawn. */
  #eps(batch: TrainBatch, shape: number[]): Float32Array {
    const eps = batch.posteriorNoise?.data ?? this.generator.randn(shape);
    if (eps.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new InputError(
        `posteriorNoise: expected [${shape}], got [${batch.posteriorNoise!.shape}]`,
      );
    }
    return eps;
  }

  /** Writes the whole VAE (encoder, decoder, quant convs) under diffusers names. */
  protected async write(path: string): Promise<void> {
    const values = await this.params.readValues();
    const tensors = [...values].map(([name, data]) => ({
      name,
      shape: this.#p.shapes.get(name)!,
      dtype: "F32" as const,
      data,
    }));
    await this.writeWeights(path, tensors);
  }
}

/** The images of a VAE batch, checked. */
function images(batch: TrainBatch): { shape: number[]; data: Float32Array } {
  const px = batch.pixels;
  if (!px || px.shape.length !== 4 || px.shape[1] !== 3) {
    throw new InputError(`pixels: a VAE batch is images [b, 3, H, W], got [${px?.shape ?? ""}]`);
  }
  if (px.shape[2] % 8 || px.shape[3] % 8) {
    throw new InputError(`pixels: H and W must be multiples of 8, got [${px.shape}]`);
  }
  return px;
}

/**
 * From moments [n, 2 * per] (mean then logvar per sample): z = mean + std * eps (float32 as
 * torch), std, and KL = 0.5 * sum(mean^2 + var - 1 - logvar) per sample, averaged.
 */
function posterior(
  m: Float32Array,
  eps: Float32Array,
  n: number,
  per: number,
): { z: Float32Array; std: Float32Array; kl: number } {
  const z = new Float32Array(n * per), std = new Float32Array(n * per);
  let kl = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < per; j++) {
      const mean = m[i * 2 * per + j];
      const logvar = Math.min(LOGVAR_MAX, Math.max(LOGVAR_MIN, m[i * 2 * per + per + j]));
      const s = f(Math.exp(f(0.5 * logvar))), v = f(Math.exp(logvar));
      std[i * per + j] = s;
      z[i * per + j] = f(mean + f(s * eps[i * per + j]));
      kl += 0.5 * (mean * mean + v - 1 - logvar);
    }
  }
  return { z, std, kl: kl / n };
}
