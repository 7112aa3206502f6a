/**
 * Streams progress while loading and generating: one line per event on stderr (stage, step,
 * elapsed time, ETA, notes such as prompt truncation), and Ctrl-C cancels between denoising
 * steps through an AbortSignal.
 *
 * ```sh
 * deno run -A examples/stream_progress.ts --prompt "fireworks over a city" --steps 8
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { AbortError, loadPipeline, type ProgressEvent } from "@zoetrope/animatediff";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    prompt: { type: "string", default: "fireworks over a city at night" },
    model: { type: "string" },
    "motion-module": { type: "string" },
    steps: { type: "string", default: "8" },
    size: { type: "string", default: "64" },
    out: { type: "string", default: "progress.png" },
  },
});

const encoder = new TextEncoder();
function report(e: ProgressEvent): void {
  const eta = e.etaMs === undefined ? "" : `, ${(e.etaMs / 1000).toFixed(1)} s left`;
  const note = e.message ? ` (${e.message})` : "";
  const line = `${e.stage.padEnd(7)} ${e.step}/${e.total}  ${
    Math.round(e.elapsedMs)
  } ms${eta}${note}`;
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

const controller = new AbortController();
const onSigint = () => controller.abort();
Deno.addSignalListener("SIGINT", onSigint);

const pipe = await loadPipeline({
  model: flags.model,
  motionModule: flags["motion-module"],
  onProgress: report,
});
try {
  const size = Number(flags.size);
  const anim = await pipe.generate(
    { prompt: flags.prompt, frames: 8, width: size, height: size, steps: Number(flags.steps) },
    { onProgress: report, signal: controller.signal },
  );
  await Deno.writeFile(flags.out, anim.toApng());
  console.log(`${flags.out}: APNG, ${anim.frames.length} frames, seed ${anim.seed}`);
} catch (e) {
  if (!(e instanceof AbortError)) throw e;
  console.log("cancelled");
} finally {
  Deno.removeSignalListener("SIGINT", onSigint);
  pipe.dispose();
}
