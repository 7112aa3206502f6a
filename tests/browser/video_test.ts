/**
 * The MP4 and WebM outputs play in headless Chromium: a clip of solid colours is served with a
 * page, loaded into a <video>, and every frame is seeked to, drawn on a canvas and read back.
 * Outside CI a missing chromium skips visibly (ignored); under CI=true it fails.
 */

import { assert, assertEquals } from "../assert.ts";
import { isCI } from "../gpu.ts";
import { encodeVideo, type VideoFormat } from "../../engine/output/video.ts";
import type { Frame } from "../../engine/output/frame.ts";
import { CHROMIUM, hasChromium, openBrowser } from "./chromium.ts";

const COLOURS: [number, number, number][] = [
  [220, 30, 30],
  [30, 200, 40],
  [40, 60, 220],
  [240, 240, 240],
  [20, 20, 20],
  [230, 210, 40],
];

function clip(width: number, height: number): Frame[] {
  return COLOURS.map(([r, g, b]) => {
    const data = new Uint8ClampedArray(width * height * 4);
    for (let p = 0; p < width * height; p++) data.set([r, g, b, 255], p * 4);
    return { data, width, height };
  });
}

const PAGE = `<!doctype html><canvas id="c"></canvas><script>
async function probe(src) {
  const v = document.createElement("video");
  v.muted = true;
  v.preload = "auto";
  // The first frame counts once it is presented, not merely decoded (it can still be blank then).
  const first = new Promise((ok) => v.requestVideoFrameCallback((_, meta) => ok(meta.mediaTime)));
  v.src = src;
  await new Promise((ok, fail) => { v.onloadeddata = ok; v.onerror = () => fail(new Error("video error " + (v.error && v.error.code))); });
  const t0 = await Promise.race([first, new Promise((ok) => setTimeout(() => ok(v.currentTime), 3000))]);
  const c = document.getElementById("c");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d", { willReadFrequently: true });
  // Play it (muted, at half speed) and read every frame the compositor presents.
  const read = () => { g.drawImage(v, 0, 0); return [...g.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)]; };
  const seen = [{ t: t0, rgb: read() }];
  await new Promise((ok, fail) => {
    const grab = (_, meta) => {
      seen.push({ t: meta.mediaTime, rgb: read() });
      if (!v.ended) v.requestVideoFrameCallback(grab);
    };
    v.requestVideoFrameCallback(grab);
    v.onended = ok;
    v.playbackRate = 0.5;
    v.play().catch(fail);
  });
  return { width: v.videoWidth, height: v.videoHeight, duration: v.duration, seen };
}
</script>`;

Deno.test({
  name: "video: MP4 (H.264) and WebM (VP8) play in headless Chromium, every frame in place",
  ignore: !isCI && !hasChromium,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!hasChromium) throw new Error(`chromium not found at ${CHROMIUM} under CI=true`);
    const fps = 4;
    const [width, height] = [64, 48];
    const files: Record<string, Uint8Array> = {};
    for (const format of ["mp4", "webm"] as VideoFormat[]) {
      files[`/clip.${format}`] = await encodeVideo(clip(width, height), format, { fps });
    }
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
      const body = files[path];
      if (!body) return new Response("not found", { status: 404 });
      const type = path.endsWith(".mp4") ? "video/mp4" : "video/webm";
      return new Response(body.slice(), { headers: { "content-type": type } });
    });
    const browser = await openBrowser();
    try {
      const { cdp } = browser;
      const url = `http://127.0.0.1:${server.addr.port}/`;
      await cdp.send("Page.navigate", { url });
      for (let i = 0; i < 200; i++) {
        const ready = await cdp.eval<boolean>(`typeof probe === "function"`).catch(() => false);
        if (ready) break;
        await new Promise((ok) => setTimeout(ok, 50));
      }
      for (const format of ["webm", "mp4"]) {
        const got = await cdp.eval<{
          width: number;
          height: number;
          duration: number;
          seen: { t: number; rgb: number[] }[];
        }>(`probe("/clip.${format}")`);
        assertEquals([got.width, got.height], [width, height], `${format}: size`);
        assert(
          Math.abs(got.duration - COLOURS.length / fps) < 0.06,
          `${format}: duration ${got.duration} s, expected ${COLOURS.length / fps} s`,
        );
        // Each presented frame shows the colour of the frame its timestamp names, and every
        // frame is presented once its time comes (the frame rate is right).
        const shown = new Set<number>();
        for (const { t, rgb } of got.seen) {
          const i = Math.floor(t * fps + 1e-3);
          assert(i >= 0 && i < COLOURS.length, `${format}: a frame at ${t} s is past the end`);
          const err = Math.max(...rgb.map((v, k) => Math.abs(v - COLOURS[i][k])));
          assert(err <= 24, `${format} frame ${i} (t ${t} s) shows ${rgb}, expected ${COLOURS[i]}`);
          shown.add(i);
        }
        assertEquals(shown.size, COLOURS.length, `${format}: frames shown ${[...shown]}`);
      }
      assertEquals(cdp.exceptions, [], "no script errors on the page");
    } finally {
      await browser.close();
      await server.shutdown();
    }
  },
});
