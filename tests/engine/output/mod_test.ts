import { ANIMATION_FORMATS, encodeAnimation } from "../../../engine/output/mod.ts";
import type { AnimationFormat } from "../../../engine/output/mod.ts";
import { decodeApng, decodeGif, unzipFrames } from "../../decode.ts";
import { assertEquals, assertRejects } from "../../assert.ts";
import { movingGradient } from "./synthetic.ts";
import { probeMp4, probeWebm } from "./video_probe.ts";

Deno.test("encodeAnimation: content type, extension and decodable bytes per format", async () => {
  const frames = movingGradient(17, 9, 3);
  const gif = encodeAnimation(frames, "gif", { fps: 10, loop: 2 });
  assertEquals([gif.contentType, gif.extension], ["image/gif", ".gif"]);
  const g = decodeGif(gif.bytes);
  assertEquals([g.frames.length, g.loop, g.delaysCs[0]], [3, 1, 10]);
  const apng = encodeAnimation(frames, "apng", { fps: 10, loop: 2 });
  assertEquals([apng.contentType, apng.extension], ["image/apng", ".png"]);
  const a = decodeApng(apng.bytes);
  assertEquals([a.frames.length, a.numPlays, a.delays[0]], [3, 2, 0.1]);
  const zip = encodeAnimation(frames, "png-zip", { fps: 10 });
  assertEquals([zip.contentType, zip.extension], ["application/zip", ".zip"]);
  assertEquals(unzipFrames(zip.bytes).map((e) => e.name), [
    "frame_0000.png",
    "frame_0001.png",
    "frame_0002.png",
  ]);
  const mp4 = await encodeAnimation(movingGradient(18, 10, 3), "mp4", { fps: 10 });
  assertEquals([mp4.contentType, mp4.extension], ["video/mp4", ".mp4"]);
  assertEquals(probeMp4(mp4.bytes).frameCount, 3);
  const webm = await encodeAnimation(movingGradient(18, 10, 3), "webm", { fps: 10 });
  assertEquals([webm.contentType, webm.extension], ["video/webm", ".webm"]);
  assertEquals(probeWebm(webm.bytes).frameCount, 3);
  assertEquals(ANIMATION_FORMATS, ["gif", "apng", "png-zip", "mp4", "webm"]);
});

Deno.test("encodeAnimation rejects unknown formats and bad fps for every format", async () => {
  const frames = movingGradient(4, 4, 1);
  await assertRejects(
    () => encodeAnimation(frames, "webp" as AnimationFormat, { fps: 8 }),
    /encodeAnimation: expected format to be one of gif, apng, png-zip, mp4, webm, got "webp"/,
  );
  for (const format of ANIMATION_FORMATS) {
    await assertRejects(
      () => encodeAnimation(frames, format, { fps: 0 }),
      /expected fps to be a finite number > 0, got 0/,
    );
    await assertRejects(
      () => encodeAnimation([], format, { fps: 8 }),
      /expected at least one frame/,
    );
  }
});
