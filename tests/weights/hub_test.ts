import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects } from "../assert.ts";
import {
  isNeededDiffusersFile,
  parseHubReference,
  resolveHubFile,
  resolveHubFolder,
} from "../../weights/hub.ts";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const GIT_ETAG = "fedcba9876543210fedcba9876543210fedcba98"; // git blob sha1 of a small file

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface ServedFile {
  body: Uint8Array;
  /** LFS files redirect to /cdn/... and carry X-Linked-Etag (sha256) and X-Linked-Size. */
  lfs: boolean;
  /** Overrides the advertised etag (to test the sha256 check). */
  etag?: string;
}

/** A tiny stand-in for the Hub: resolve (HEAD/GET, Range), a CDN path, and the revision API. */
function startHub(files: Record<string, ServedFile>) {
  const log: { method: string; path: string; range: string | null; auth: string | null }[] = [];
  let dropNext = false;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    log.push({
      method: req.method,
      path: url.pathname,
      range: req.headers.get("range"),
      auth: req.headers.get("authorization"),
    });
    const api = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
    if (api) {
      return Response.json({
        sha: COMMIT,
        siblings: Object.keys(files).map((rfilename) => ({ rfilename })),
      });
    }
    const cdn = url.pathname.match(/^\/cdn\/(.+)$/);
    const resolve = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    const name = cdn ? decodeURIComponent(cdn[1]) : resolve ? decodeURIComponent(resolve[3]) : "";
    const file = files[name];
    if (!file) return new Response("not found", { status: 404 });
    const etag = file.etag ?? (file.lfs ? sha256(file.body) : GIT_ETAG);
    if (resolve && file.lfs) {
      return new Response(null, {
        status: 302,
        headers: {
          location: `/cdn/${encodeURIComponent(name)}`,
          "x-repo-commit": COMMIT,
          "x-linked-etag": `"${etag}"`,
          "x-linked-size": String(file.body.byteLength),
        },
      });
    }
    const headers = new Headers({
      "x-repo-commit": COMMIT,
      etag: `"${etag}"`,
      "accept-ranges": "bytes",
    });
    if (req.method === "HEAD") {
      headers.set("x-linked-size", String(file.body.byteLength)); // Deno drops HEAD content-length
      return new Response(null, { headers });
    }
    const range = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
    const start = range ? Number(range[1]) : 0;
    const body = file.body.subarray(start);
    if (range) {
      headers.set(
        "content-range",
        `bytes ${start}-${file.body.byteLength - 1}/${file.body.byteLength}`,
      );
    }
    if (dropNext) {
      dropNext = false;
      const half = body.subarray(0, body.byteLength >> 1);
      let pulls = 0;
      const stream = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (pulls++ === 0) return c.enqueue(half.slice());
          await new Promise((r) => setTimeout(r, 50)); // let the first half reach the client
          c.error(new Error("test server drops the connection"));
        },
      });
      return new Response(stream, { status: range ? 206 : 200, headers });
    }
    return new Response(body.slice(), { status: range ? 206 : 200, headers });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    log,
    dropNextDownload: () => (dropNext = true),
    close: () => server.shutdown(),
  };
}

async function withCache(fn: (cacheDir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-hub-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("hub: parseHubReference", async () => {
  assertEquals(parseHubReference("hf:guoyww/animatediff/mm_sd_v15_v2.ckpt"), {
    repo: "guoyww/animatediff",
    path: "mm_sd_v15_v2.ckpt",
    revision: "main",
  });
  assertEquals(parseHubReference("hf:a/b@v1.0"), { repo: "a/b", path: "", revision: "v1.0" });
  assertEquals(parseHubReference("hf:a/b/unet/x.safetensors@refs/pr/1").revision, "refs/pr/1");
  for (
    const bad of [
      "a/b",
      "hf:a",
      "hf:a/../x",
      "hf:a/b/../../etc/passwd",
      "hf:a/b@..",
      "hf:a/b/c@x y",
    ]
  ) {
    await assertRejects(
      () => Promise.resolve().then(() => parseHubReference(bad)),
      /hub reference|expected hf:|unsafe path|bad revision/,
    );
  }
});

Deno.test("hub: download into the standard cache layout, then reuse without network", async () => {
  const hub = startHub({
    "config.json": { body: new TextEncoder().encode('{"a":1}'), lfs: false },
  });
  try {
    await withCache(async (cacheDir) => {
      const opts = { endpoint: hub.endpoint, cacheDir, token: "secret" };
      const path = await resolveHubFile("hf:me/model/config.json", opts);
      const repoDir = `${cacheDir}/models--me--model`;
      assertEquals(path, `${repoDir}/snapshots/${COMMIT}/config.json`);
      assertEquals(await Deno.readTextFile(path), '{"a":1}');
      assertEquals((await Deno.lstat(path)).isSymlink, true);
      assertEquals(await Deno.readLink(path), `../../blobs/${GIT_ETAG}`);
      assertEquals(await Deno.readTextFile(`${repoDir}/refs/main`), COMMIT);
      assertEquals(hub.log.map((l) => l.method), ["HEAD", "GET"]);
      assertEquals(hub.log[0].auth, "Bearer secret");
      const again = await resolveHubFile("hf:me/model/config.json", opts);
      assertEquals(again, path);
      assertEquals(hub.log.length, 2, "no request for a cached file");
      await assertRejects(
        () => resolveHubFile("hf:me/model/nope.json", opts),
        /nope\.json: HTTP 404/,
      );
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: LFS redirect, dropped connection resumes with Range, sha256 verified", async () => {
  const body = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31 + 7) & 0xff);
  const hub = startHub({ "unet/w.safetensors": { body, lfs: true } });
  try {
    await withCache(async (cacheDir) => {
      const sha = sha256(body);
      const progress: number[][] = [];
      const opts = {
        endpoint: hub.endpoint,
        cacheDir,
        retries: 0,
        onProgress: (d: number, t: number) => progress.push([d, t]),
      };
      hub.dropNextDownload();
      await assertRejects(
        () => resolveHubFile("hf:me/model/unet/w.safetensors", opts),
        /hf:me\/model\/unet\/w\.safetensors@main: download interrupted .*; retry to resume/,
      );
      const part = `${cacheDir}/models--me--model/blobs/${sha}.incomplete`;
      const partial = (await Deno.stat(part)).size;
      assert(partial > 0 && partial < body.byteLength, `partial download kept (${partial} bytes)`);
      const path = await resolveHubFile("hf:me/model/unet/w.safetensors", opts);
      const ranged = hub.log.filter((l) => l.range !== null);
      assertEquals(ranged.map((l) => [l.path, l.range]), [[
        "/cdn/unet%2Fw.safetensors",
        `bytes=${partial}-`,
      ]]);
      assertEquals(sha256(await Deno.readFile(path)), sha);
      assertEquals(await Deno.readLink(path), `../../../blobs/${sha}`);
      assertEquals(progress[progress.length - 1], [body.byteLength, body.byteLength]);
      // Automatic resume within one call (default retries).
      await Deno.remove(`${cacheDir}/models--me--model`, { recursive: true });
      hub.dropNextDownload();
      const p2 = await resolveHubFile("hf:me/model/unet/w.safetensors", {
        endpoint: hub.endpoint,
        cacheDir,
      });
      assertEquals(sha256(await Deno.readFile(p2)), sha);
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: a file whose sha256 does not match its ETag is rejected and not cached", async () => {
  const body = new TextEncoder().encode("tampered weights");
  const wrong = "a".repeat(64);
  const hub = startHub({ "w.safetensors": { body, lfs: true, etag: wrong } });
  try {
    await withCache(async (cacheDir) => {
      await assertRejects(
        () => resolveHubFile("hf:me/model/w.safetensors", { endpoint: hub.endpoint, cacheDir }),
        new RegExp(
          `w\\.safetensors@main: sha256 ${sha256(body)} does not match the expected ${wrong}`,
        ),
      );
      assertEquals([...Deno.readDirSync(`${cacheDir}/models--me--model/blobs`)].length, 0);
    });
  } finally {
    await hub.close();
  }
});

Deno.test("hub: resolveHubFolder fetches what a diffusers folder needs, then works offline", async () => {
  const t = (s: string) => ({ body: new TextEncoder().encode(s), lfs: false });
  const files: Record<string, ServedFile> = {
    "model_index.json": t("{}"),
    "unet/config.json": t('{"x":1}'),
    "unet/diffusion_pytorch_model.safetensors": { body: new Uint8Array([1, 2, 3]), lfs: true },
    "unet/diffusion_pytorch_model.fp16.safetensors": { body: new Uint8Array([4]), lfs: true },
    "unet/diffusion_pytorch_model.bin": { body: new Uint8Array([5]), lfs: true },
    "tokenizer/merges.txt": t("#version: 0.2\n"),
    "README.md": t("# readme"),
  };
  const hub = startHub(files);
  try {
    await withCache(async (cacheDir) => {
      const dir = await resolveHubFolder("hf:me/sd", { endpoint: hub.endpoint, cacheDir });
      assertEquals(dir, `${cacheDir}/models--me--sd/snapshots/${COMMIT}`);
      const got: string[] = [];
      const walk = (d: string, p: string) => {
        for (const e of Deno.readDirSync(d)) {
          if (e.isDirectory) walk(`${d}/${e.name}`, `${p}${e.name}/`);
          else got.push(p + e.name);
        }
      };
      walk(dir, "");
      assertEquals(got.sort(), [
        "model_index.json",
        "tokenizer/merges.txt",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
      ]);
      assertEquals([...await Deno.readFile(`${dir}/unet/diffusion_pytorch_model.safetensors`)], [
        1,
        2,
        3,
      ]);
      await hub.close();
      const offline = await resolveHubFolder("hf:me/sd", { endpoint: hub.endpoint, cacheDir });
      assertEquals(offline, dir);
      const sub = await resolveHubFolder("hf:me/sd/unet", {
        endpoint: hub.endpoint,
        cacheDir,
        offline: true,
      });
      assertEquals(sub, `${dir}/unet`);
    });
  } finally {
    await hub.close().catch(() => {});
  }
  assertEquals(isNeededDiffusersFile("vae/x.fp16.safetensors", ["vae/x.fp16.safetensors"]), true);
  assertEquals(isNeededDiffusersFile("vae/x.bin", ["vae/x.bin", "vae/config.json"]), true);
});
