/**
 * The text encoder's backward against ../shared/fixtures/train-tiny: every CLIP parameter's
 * gradient of loss = mean(last_hidden_state * R), within 2e-3 relative L2 (the bound for
 * gradients through a whole network).
 */

import { ARCHITECTURE } from "../../../engine/models/architecture.ts";
import { ClipTextEncoder } from "../../../engine/models/clip.ts";
import { WeightStore } from "../../../engine/weight_store.ts";
import { GradientTape } from "../../../engine/training/autograd.ts";
import { loadModel } from "../../../weights/load.ts";
import { loadGoldens } from "../../goldens.ts";
import { assert } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";

const TINY = new URL("../../fixtures/tiny/", import.meta.url).pathname;
const TRAIN = new URL("../../fixtures/train-tiny/", import.meta.url);

gpuTest("clip backward: every text-encoder gradient matches PyTorch", async (gpu) => {
  const g = await loadGoldens(new URL("goldens.safetensors", TRAIN));
  const tg = await loadGoldens(new URL("text_grads.safetensors", TRAIN));
  const model = await loadModel(TINY + "model", { architecture: ARCHITECTURE });
  const store = new WeightStore(gpu, model.textEncoder, { dtype: "f32", part: "text encoder" });
  const clip = new ClipTextEncoder(store, model.clipConfig);
  await store.loadAll();
  const ids = g.get("video.input_ids")!;
  const r = g.get("text.R")!.data as Float32Array;
  const tape = new GradientTape(gpu);
  for (const p of store.params) tape.watch(p.t);
  const h = tape.run(() =>
    clip.forward(gpu, Int32Array.from(ids.data as Int32Array), ids.shape[0])
  );
  // loss = mean(h * R): dL/dh = R / N.
  const loss = (await gpu.read(h)).reduce((s, v, i) => s + v * r[i], 0) / r.length;
  const want = (g.get("text.loss")!.data as Float32Array)[0];
  assert(Math.abs(loss - want) <= 1e-4 * Math.abs(want), `loss ${loss} vs ${want}`);
  const gy = gpu.upload(r.map((v) => v / r.length), h.shape);
  const grads = tape.gradients(h, gy);
  let global = 0;
  for (const p of store.params) {
    for (const v of tg.get(`grad.${p.name}`)?.data as Float32Array ?? []) global += v * v;
  }
  global = Math.sqrt(global);
  let worst = 0, worstName = "", zeros = 0;
  for (const p of store.params) {
    const ref = tg.get(`grad.${p.name}`);
    assert(ref, `no reference gradient for ${p.name}`);
    const ours = grads.get(p.t.root);
    assert(ours, `${p.name}: no gradient`);
    const a = await gpu.read(ours), b = ref.data as Float32Array;
    let d = 0, n = 0;
    for (let i = 0; i < b.length; i++) [d, n] = [d + (a[i] - b[i]) ** 2, n + b[i] ** 2];
    // The key bias cannot change a softmax row (it adds q.b to every score of the row): its
    // gradient is zero but for rounding, on both sides. Such tensors must stay that small.
    if (Math.sqrt(n) < 1e-6 * global) {
      const ours = Math.sqrt(a.reduce((s, v) => s + v * v, 0));
      assert(ours < 1e-6 * global, `${p.name}: gradient norm ${ours} should be ~0`);
      zeros++;
      continue;
    }
    const e = Math.sqrt(d / n);
    if (!(e <= worst)) [worst, worstName] = [e, p.name];
  }
  assert(worst <= 2e-3, `worst relative L2 ${worst.toExponential(2)} (${worstName})`);
  assert(zeros === model.clipConfig.layers, `${zeros} zero gradients (the layers' key biases)`);
  for (const t of [...grads.values(), gy, h]) t.release();
  tape.dispose();
  store.dispose();
  model.close();
});
