import { lrFactor } from "../../../engine/training/parameters.ts";
import { assertClose } from "../../assert.ts";

// diffusers' get_scheduler("constant_with_warmup" / "cosine", num_warmup_steps=4,
// num_training_steps=12): the LambdaLR factors of optimizer steps 0..12.
Deno.test("lrFactor: warm-up then constant or cosine, as diffusers' schedules", () => {
  const steps = Array.from({ length: 13 }, (_, k) => k);
  assertClose(
    steps.map((k) => lrFactor({ kind: "constant", warmupSteps: 4 }, k)),
    [0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    { atol: 0, rtol: 0 },
  );
  const cosine = steps.map((k) => lrFactor({ kind: "cosine", warmupSteps: 4, totalSteps: 12 }, k));
  const want = steps.map((k) =>
    k < 4 ? k / 4 : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((k - 4) / 8))))
  );
  assertClose(cosine, want, { atol: 1e-15, rtol: 0 });
  assertClose([cosine[8], cosine[12]], [0.5, 0], { atol: 1e-15, rtol: 0 });
  assertClose([lrFactor({ kind: "constant" }, 0)], [1], { atol: 0, rtol: 0 });
});
