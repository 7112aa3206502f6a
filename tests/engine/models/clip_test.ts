import { assertRelClose } from "../../assert.ts";
import { gpuTest } from "../../gpu.ts";
import { loadGoldens } from "../../goldens.ts";
import { buildClip } from "./parts.ts";

// Fixture tolerance from the issue: text encoder hidden states within 1e-4 relative
// (max |a - e| / max |e|); f16 storage: 2e-2.
for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f32" ? 1e-4 : 2e-2;
  gpuTest(
    `clip text encoder matches transformers (last layer, clip skip 2 and 3) ${dtype}`,
    async (gpu) => {
      const g = await loadGoldens();
      const ids = Int32Array.from(g.get("tokenizer.input_ids")!.data as Int32Array);
      const { clip, dispose } = await buildClip(gpu, dtype);
      try {
        const cases = [
          [1, "text_encoder.last_hidden_state"],
          [2, "text_encoder.penultimate_ln"],
          [3, "text_encoder.clip_skip2_ln"],
        ] as const;
        for (const [skip, name] of cases) {
          const out = clip.forward(gpu, ids, 7, skip);
          const got = await gpu.read(out);
          out.release();
          assertRelClose(
            got,
            g.get(name)!.data as Float32Array,
            tol,
            `clipSkip ${skip} vs ${name}`,
          );
        }
      } finally {
        dispose();
      }
    },
  );
}
