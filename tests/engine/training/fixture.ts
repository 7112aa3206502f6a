/**
 * The training tests' fixtures: the tiny models (tests/fixtures/tiny), the train-tiny goldens
 * (PyTorch 1.13 + diffusers 0.27.2, see ../shared/fixtures/train-tiny) and how they compare.
 * @module
 */

import { type GoldenTensor, loadGoldens } from "../../goldens.ts";

/** The tiny models' folder (model/, motion_adapter/). */
export const TINY: string = new URL("../../fixtures/tiny/", import.meta.url).pathname;

const TRAIN = new URL("../../fixtures/train-tiny/", import.meta.url);

/** goldens.json of train-tiny: prompts, schedules, optimiser settings, LoRA targets. */
// deno-lint-ignore no-explicit-any
export const trainJson: any = JSON.parse(await Deno.readTextFile(new URL("goldens.json", TRAIN)));

/** The tensors of one train-tiny file (e.g. "motion_grads.safetensors"). */
export function goldens(file: string): Promise<Map<string, GoldenTensor>> {
  return loadGoldens(new URL(file, TRAIN));
}

/** A golden as a training batch tensor. */
export function tensor(g: GoldenTensor): { shape: number[]; data: Float32Array } {
  return { shape: g.shape, data: g.data as Float32Array };
}

/** ||a - b|| / ||b||. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d) / Math.sqrt(n);
}

/** |a - b| / |b|. */
export function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}
