import { encodeVideo, MAX_VIDEO_SIDE, type VideoFormat } from "../../../engine/output/video.ts";
import type { Frame } from "../../../engine/output/frame.ts";
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { movingGradient } from "./synthetic.ts";
import { probeMp4, probeWebm } from "./video_probe.ts";

const FORMATS: VideoFormat[] = ["mp4", "webm"];
const probe = (format: VideoFormat, bytes: Uint8Array) =>
  format === "mp4" ? probeMp4(bytes) : probeWebm(bytes);

Deno.test("encodeVideo: MP4 and WebM decode back with their frame count, size and fps", async () => {
  for (const format of FORMATS) {
    for (
      const [w, h, n, fps] of [[64, 64, 8, 8], [72, 40, 5, 7.5], [16, 24, 1, 24], [
        48,
        32,
        16,
        12.5,
      ]]
    ) {
      const bytes = await encodeVideo(movingGradient(w, h, n), format, { fps });
      const p = probe(format, bytes);
      const what = `${format} ${w}x${h} x${n} @${fps}`;
      assertEquals(p.codec, format === "mp4" ? "avc1" : "V_VP8", what);
      assertEquals([p.width, p.height, p.frameCount], [w, h, n], what);
      assert(p.uniform, `${what}: every frame lasts as long`);
      if (n > 1) {
        // MP4 stores 1/fps exactly in its 90 kHz timescale; WebM stamps frames to the millisecond.
        const tol = format === "mp4" ? 1e-6 : fps * fps * 0.0006;
        assert(Math.abs(p.fps - fps) <= tol, `${what}: fps ${p.fps}`);
      }
    }
  }
});

Deno.test("encodeVideo: quality trades size for fidelity; an MP4 depends on its frames alone", async () => {
  const frames = movingGradient(256, 192, 6);
  for (const format of FORMATS) {
    const small = await encodeVideo(frames, format, { fps: 8, quality: 0.1 });
    const big = await encodeVideo(frames, format, { fps: 8, quality: 1 });
    assert(small.length < big.length, `${format}: ${small.length} < ${big.length} bytes`);
  }
  // No wall-clock times in the file: the same frames give the same bytes a second later.
  const first = await encodeVideo(frames, "mp4", { fps: 8 });
  await new Promise((ok) => setTimeout(ok, 1100));
  const again = await encodeVideo(frames, "mp4", { fps: 8 });
  assert(
    first.length === again.length && first.every((x, i) => x === again[i]),
    "same frames, same MP4 bytes",
  );
});

Deno.test("encodeVideo: bad frames, fps, quality and formats are one-line errors", async () => {
  const odd: Frame[] = movingGradient(15, 8, 2);
  const ok = movingGradient(8, 8, 2);
  for (const format of FORMATS) {
    await assertRejects(() => encodeVideo(odd, format, { fps: 8 }), /must be even .* got 15x8/);
    await assertRejects(() => encodeVideo([], format, { fps: 8 }), /expected at least one frame/);
    await assertRejects(() => encodeVideo(ok, format, { fps: 0 }), /fps to be a finite number > 0/);
    await assertRejects(
      () => encodeVideo(ok, format, { fps: 8, quality: 1.5 }),
      /quality must be in \[0, 1\], got 1.5/,
    );
    await assertRejects(
      () => encodeVideo([ok[0], movingGradient(10, 8, 1)[0]], format, { fps: 8 }),
      /encodeVideo: .*10x8/,
    );
    const w = MAX_VIDEO_SIDE + 2;
    const huge = { data: new Uint8ClampedArray(w * 2 * 4), width: w, height: 2 };
    await assertRejects(
      () => encodeVideo([huge], format, { fps: 8 }),
      /frames of 4098x2 exceed the 4096-pixel video limit/,
    );
  }
  await assertRejects(
    () => encodeVideo(ok, "avi" as VideoFormat, { fps: 8 }),
    /expected format to be mp4 or webm, got "avi"/,
  );
});

Deno.test("encodeVideo: loading the encoders leaves the process's error handlers as they were", async () => {
  // A fresh process, so the encoders load for the first time here.
  const video = new URL("../../../engine/output/video.ts", import.meta.url).href;
  const code = `
        import { encodeVideo } from "${video}";
    const count = () => ["uncaughtException", "unhandledRejection"].map((e) => process.listeners(e).length);
    const f = { data: new Uint8ClampedArray(256), width: 8, height: 8 };
    const before = count();
    for (const format of ["mp4", "webm"]) await encodeVideo([f], format, { fps: 8 });
    console.log(JSON.stringify({ before, after: count() }));`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "piped" })
    .output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert(out.success, `the script failed: ${stderr.slice(-500)}`);
  const { before, after } = JSON.parse(new TextDecoder().decode(out.stdout));
  assertEquals(after, before);
});
