/**
 * The package used from elsewhere (issue 7): a program in a temporary directory (its own cwd and
 * deno.json, as a consumer has) imports mod.ts by file URL, loads the demo model (no arguments)
 * and generates frames in a subprocess. Its frames must match the same request run in this
 * process. Fails under CI=true without a WebGPU adapter; elsewhere it is a visible skip.
 */

import { loadPipeline } from "../mod.ts";
import { assert, assertEquals } from "./assert.ts";
import { hasAdapter, isCI } from "./gpu.ts";

const ROOT = new URL("../", import.meta.url);
const REQUEST = {
  prompt: "a red ball bouncing",
  frames: 2,
  width: 32,
  height: 32,
  steps: 2,
  seed: 1234,
};

/** The consumer program: prints a JSON summary and the frames as base64. */
const CONSUMER = `
import { loadPipeline } from "@zoetrope/animatediff";

const pipe = await loadPipeline();
try {
  const anim = await pipe.generate(${JSON.stringify(REQUEST)});
  const gif = anim.toGif();
  const bytes = new Uint8Array(anim.frames.reduce((n, f) => n + f.data.length, 0));
  let o = 0;
  for (const f of anim.frames) {
    bytes.set(f.data, o);
    o += f.data.length;
  }
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  console.log(JSON.stringify({
    demo: pipe.info.demo,
    frames: anim.frames.length,
    width: anim.width,
    height: anim.height,
    seed: anim.seed,
    gifHeader: String.fromCharCode(...gif.subarray(0, 6)),
    cwd: Deno.cwd(),
    pixels: btoa(bin),
  }));
} finally {
  pipe.dispose();
}
`;

Deno.test({
  name: "mod.ts imported by file URL from another directory generates the demo's frames",
  ignore: !hasAdapter && !isCI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!hasAdapter) throw new Error("import_test: no WebGPU adapter found under CI=true");
    const dir = await Deno.makeTempDir({ prefix: "zoetrope_import_" });
    try {
      // A consumer's own config: the package by URL plus the npm packages it maps (a JSR install
      // resolves these itself; a URL import needs them in the importer's map).
      const ours = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
      const imports = { ...ours.imports, "@zoetrope/animatediff": new URL("mod.ts", ROOT).href };
      await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ imports }));
      await Deno.writeTextFile(`${dir}/main.ts`, CONSUMER);
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-env", "--allow-write", "main.ts"],
        cwd: dir,
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(stderr);
      assertEquals(code, 0, `consumer program failed:\n${err}`);
      const got = JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").at(-1)!);
      assertEquals(got.cwd, await Deno.realPath(dir), "the consumer ran in the temp directory");
      assertEquals(got.demo, true, "no arguments = the demo model");
      assertEquals([got.frames, got.width, got.height, got.seed], [2, 32, 32, REQUEST.seed]);
      assertEquals(got.gifHeader, "GIF89a");
      const pixels = Uint8Array.from(atob(got.pixels), (c) => c.charCodeAt(0));
      assertEquals(pixels.length, 2 * 32 * 32 * 4, "RGBA bytes of 2 frames of 32x32");

      // The same request in this process: same code, same adapter -> the same bytes
      // (tolerance: 1 per byte, for rounding at exactly .5 should an adapter differ).
      const pipe = await loadPipeline();
      let ref: Uint8Array;
      try {
        const anim = await pipe.generate(REQUEST);
        ref = new Uint8Array(pixels.length);
        anim.frames.forEach((f, i) => ref.set(f.data, i * f.data.length));
      } finally {
        pipe.dispose();
      }
      let maxDiff = 0, opaque = 0;
      for (let i = 0; i < ref.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(ref[i] - pixels[i]));
        if (i % 4 === 3 && pixels[i] === 255) opaque++;
      }
      assert(maxDiff <= 1, `subprocess frames differ from in-process frames by ${maxDiff} (> 1)`);
      assertEquals(opaque, 2 * 32 * 32, "every pixel opaque");
      const distinct = new Set(pixels.filter((_, i) => i % 4 !== 3)).size;
      assert(distinct > 16, `frames look constant: ${distinct} distinct channel values`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
