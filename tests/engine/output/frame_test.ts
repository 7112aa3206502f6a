import { checkFps, checkFrame, checkFrames, checkLoop } from "../../../engine/output/frame.ts";
import { assertRejects } from "../../assert.ts";

const ok = (w: number, h: number) => ({
  data: new Uint8ClampedArray(w * h * 4),
  width: w,
  height: h,
});

Deno.test("checkFrames accepts equal-size frames and names the first bad one", async () => {
  checkFrames([ok(3, 2), ok(3, 2)], "op"); // must not throw
  await assertRejects(
    () => checkFrames([], "op"),
    /^op: expected at least one frame, got an empty/,
  );
  await assertRejects(
    () => checkFrames([ok(3, 2), ok(3, 2), ok(2, 3)], "op"),
    /^op: frame 2 is 2x3 but frame 0 is 3x2; all frames must have one size$/,
  );
  const short = { data: new Uint8ClampedArray(23), width: 3, height: 2 };
  await assertRejects(
    () => checkFrames([ok(3, 2), short], "op"),
    /^op: frame 1: data length 23 != width\*height\*4 = 3\*2\*4 = 24$/,
  );
});

Deno.test("checkFrame rejects non-integer, zero and oversized sides and wrong data types", async () => {
  await assertRejects(
    () => checkFrame(ok(0, 1), "f"),
    /^f: expected width to be an integer in 1\.\.65535, got 0$/,
  );
  await assertRejects(
    () => checkFrame({ data: new Uint8ClampedArray(4), width: 1, height: 65536 }, "f"),
    /expected height to be an integer in 1\.\.65535, got 65536/,
  );
  await assertRejects(
    () =>
      checkFrame(
        { data: new Float32Array(4) as unknown as Uint8ClampedArray, width: 1, height: 1 },
        "f",
      ),
    /^f: expected data to be a Uint8ClampedArray of RGBA bytes$/,
  );
});

Deno.test("checkFps and checkLoop accept valid values and reject the rest", async () => {
  checkFps(0.5, "op");
  checkFps(60, "op");
  checkLoop(0, "op");
  checkLoop(65535, "op");
  for (const fps of [0, -1, NaN, Infinity, -Infinity]) {
    await assertRejects(() => checkFps(fps, "op"), /^op: expected fps to be a finite number > 0/);
  }
  for (const loop of [-1, 0.5, 65536, NaN]) {
    await assertRejects(
      () => checkLoop(loop, "op"),
      /^op: expected loop to be an integer in 0\.\.65535/,
    );
  }
});
