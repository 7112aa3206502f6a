import { assertEquals, assertRejects } from "../../assert.ts";
import {
  ANIMATEDIFF_SCHEDULER_CONFIG,
  schedulerConfigFromDiffusers,
  validateSchedulerConfig,
} from "../../../engine/schedulers/config.ts";

Deno.test("config: the tiny model's scheduler_config.json is AnimateDiff's DDIM setup", async () => {
  const text = await Deno.readTextFile(
    new URL("../../fixtures/tiny/model/scheduler/scheduler_config.json", import.meta.url),
  );
  const cfg = schedulerConfigFromDiffusers(text);
  assertEquals(cfg, { ...ANIMATEDIFF_SCHEDULER_CONFIG });
});

Deno.test("config: Python -Infinity, DPM fields and diffusers' DDIM defaults", () => {
  const cfg = schedulerConfigFromDiffusers(
    '{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, ' +
      '"use_karras_sigmas": true, "solver_order": 2, "final_sigmas_type": "sigma_min", "beta_schedule": "scaled_linear"}',
  );
  assertEquals(cfg.lambdaMinClipped, -Infinity);
  assertEquals([cfg.useKarrasSigmas, cfg.finalSigmasType, cfg.betaSchedule], [
    true,
    "sigma_min",
    "scaled_linear",
  ]);
  // silent fields: DDIMScheduler's constructor defaults
  assertEquals(
    [
      cfg.betaStart,
      cfg.betaEnd,
      cfg.stepsOffset,
      cfg.setAlphaToOne,
      cfg.clipSample,
      cfg.timestepSpacing,
    ],
    [0.0001, 0.02, 0, true, true, "leading"],
  );
  // lambda_min_clipped: null keeps -Infinity
  assertEquals(
    schedulerConfigFromDiffusers({ lambda_min_clipped: null }).lambdaMinClipped,
    -Infinity,
  );
});

Deno.test("config: unsupported settings and bad values are errors naming the field", async () => {
  await assertRejects(
    () => schedulerConfigFromDiffusers({ thresholding: true }),
    /thresholding=true is not supported/,
  );
  await assertRejects(
    () => schedulerConfigFromDiffusers({ rescale_betas_zero_snr: true }),
    /rescale_betas_zero_snr/,
  );
  await assertRejects(
    () => schedulerConfigFromDiffusers({ timestep_spacing: "uniform" }),
    /timestepSpacing must be/,
  );
  await assertRejects(() => schedulerConfigFromDiffusers("[1, 2]"), /expected a JSON object/);
  await assertRejects(
    () => validateSchedulerConfig({ ...ANIMATEDIFF_SCHEDULER_CONFIG, trainedBetas: [0.1] }),
    /trainedBetas must be an array of 1000 numbers/,
  );
  await assertRejects(
    () => validateSchedulerConfig({ ...ANIMATEDIFF_SCHEDULER_CONFIG, solverOrder: 3 }),
    /solverOrder must be 1 or 2/,
  );
});
