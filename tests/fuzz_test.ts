/**
 * Seeded fuzzing of everything that reads user data: mutated copies of the tiny fixtures
 * (single-file checkpoints as .safetensors and .ckpt, a legacy torch file, the motion module,
 * the LoRAs, diffusers config.json files, the tokenizer's vocab.json / merges.txt) go through
 * the weights inspector (in process, and a few through `deno run cli.ts weights inspect`), the
 * loaders and the tokenizer; mutated request bodies and URLs go through the HTTP app (fake
 * pipeline, no GPU). Every failure must be an InputError with a one-line message (subprocess:
 * exit 0 or 2), every HTTP answer below 500 with a JSON error body on 4xx.
 *
 * Deterministic: case i of a target uses the PRNG seeded with (base seed + i). A failure names
 * the seed and the mutation; rerun one with ZOETROPE_FUZZ_SEED=<seed> ZOETROPE_FUZZ_CASES=1
 * (more cases for a longer local run: ZOETROPE_FUZZ_CASES=<n per target>).
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, AssertionError } from "./assert.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import { ClipTokenizer } from "../engine/tokenizer.ts";
import { inspectWeights } from "../weights/inspect.ts";
import { loadModel, loadMotionModule } from "../weights/load.ts";
import { applyLoras, loadLora } from "../weights/lora.ts";
import type { ModelWeights } from "../weights/types.ts";
import { openZip } from "../weights/zip.ts";
import { OP } from "../weights/pickle_writer.ts";
import type { HostTensor } from "../weights/types.ts";
import { writeTinySingleFile } from "./weights/tiny_files.ts";
import { writeCustomTorchZip, writeLegacyTorch } from "./weights/torch_fixtures.ts";
import { createApp } from "../server/app.ts";
import { fakeLoader, makeModelsDir, SMALL_REQUEST } from "./server/fake_pipeline.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TINY = join(ROOT, "tests/fixtures/tiny");
const MODEL_DIR = join(TINY, "model");
const BASE_SEED = Number(Deno.env.get("ZOETROPE_FUZZ_SEED") ?? 20240601);
const CASES = Deno.env.get("ZOETROPE_FUZZ_CASES");
const count = (n: number) => (CASES ? Number(CASES) : n);

/** Messages that betray a crash rather than a reason. */
const CRASH = new RegExp(
  "Maximum call stack|is not a function|is not iterable|undefined is not|of undefined|of null|" +
    "Cannot read prop|Cannot convert|is not defined|Invalid (typed )?array length|" +
    "^internal|not extensible|Converting circular",
);

// ---------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: small, seedable, the same numbers on every machine. */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)];
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** A random JSON value, nested at most `depth` deep. */
function randomJson(r: Rng, depth = 3): unknown {
  switch (r.int(depth > 0 ? 9 : 6)) {
    case 0:
      return null;
    case 1:
      return r.next() < 0.5;
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53, 1e308, -1e-300, 4, 77, 49407, 2 ** 31]);
    case 3:
      return r.int(100_000) - 50;
    case 4:
      return r.pick(["", "F32", "x".repeat(300), "\u{1f600}", "<|endoftext|>", "__proto__"]);
    case 5:
      return Array.from(r.bytes(r.int(12)), (b) => String.fromCharCode(b)).join("");
    case 6:
    case 7:
      return Array.from({ length: r.int(5) }, () => randomJson(r, depth - 1));
    default:
      return Object.fromEntries(
        Array.from({ length: r.int(4) }, (_, i) => [`k${i}`, randomJson(r, depth - 1)]),
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations: each returns the new bytes and appends what it did to `log`

type Mutator = (b: Uint8Array, r: Rng, log: string[]) => Uint8Array;

/** An offset biased towards the start (headers live there). */
function offset(r: Rng, n: number): number {
  return r.next() < 0.6 ? r.int(Math.min(n, 512)) : r.int(n);
}

const flip: Mutator = (b, r, log) => {
  const out = b.slice();
  for (let k = 1 + r.int(6); k > 0; k--) {
    const at = offset(r, out.length), v = r.int(256);
    log.push(`byte ${at}: ${out[at]} -> ${v}`);
    out[at] = v;
  }
  return out;
};

const truncate: Mutator = (b, r, log) => {
  const at = offset(r, b.length);
  log.push(`truncate to ${at} of ${b.length} bytes`);
  return b.slice(0, at);
};

const extend: Mutator = (b, r, log) => {
  const extra = r.bytes(1 + r.int(600));
  log.push(`append ${extra.length} random bytes`);
  return new Uint8Array([...b, ...extra]);
};

const splice: Mutator = (b, r, log) => {
  const from = offset(r, b.length), len = 1 + r.int(64), to = offset(r, b.length);
  log.push(`copy ${len} bytes from ${from} over ${to}`);
  const out = b.slice();
  out.set(b.subarray(from, from + len).subarray(0, Math.max(0, out.length - to)), to);
  return out;
};

const bytewise: Mutator[] = [flip, flip, truncate, extend, splice];

/** safetensors header as JSON: edit one entry, or replace the whole header. */
const safetensorsHeader: Mutator = (b, r, log) => {
  const len = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + len)));
  const data = b.subarray(8 + len);
  const names = Object.keys(header).filter((n) => n !== "__metadata__");
  const name = r.pick(names);
  const entry = header[name];
  const what = r.int(11);
  if (what === 0) entry.dtype = r.pick(["F64", "F16", "BOOL", "I64", "F8_E4M3", "", 3, null]);
  else if (what === 1) {
    entry.shape = r.pick([[], [0], [-1], [1.5], [2 ** 53], [1e308], "12", [[1]], [3, 0, 2]]);
  } else if (what === 2) {
    const [a, e] = entry.data_offsets;
    entry.data_offsets = r.pick([[e, a], [0, 2 ** 60], [-1, e], [a + 0.5, e], [a, e, 1], [a, a]]);
  } else if (what === 3) delete header[name];
  else if (what === 4) header[name.replace(/\.\d+\./, `.${r.int(40)}.`)] = { ...entry };
  else if (what === 5) {
    const renames: [RegExp, string][] = [
      [/^model\.diffusion_model\./, "conditioner.embedders.0."],
      [/^cond_stage_model\.transformer\./, "cond_stage_model.model."],
      [/input_blocks\.0\.0/, "label_emb.0.0"],
      [/lora_down/, "lora_up"],
      [/\.alpha$/, ".weight"],
      [/motion_modules\.\d+/, "motion_modules.x"],
      [/attn1/, "attn3"],
    ];
    const [re, to] = r.pick(renames);
    header[name.replace(re, to)] = entry;
    if (name.replace(re, to) !== name) delete header[name];
  } else if (what === 6) header[name] = randomJson(r);
  else if (what === 7) header.__metadata__ = randomJson(r);
  else if (what === 8) {
    entry.shape = entry.shape.map(() => 1 + r.int(9)); // wrong shape, same rank
    entry.data_offsets[1] = entry.data_offsets[0] +
      4 * entry.shape.reduce((x: number, y: number) => x * y, 1);
  } else if (what === 9) entry.shape = [...entry.shape].reverse();
  else {
    log.push("whole header replaced by random JSON");
    return encodeSafetensors(randomJson(r, 4), data);
  }
  log.push(`header edit ${what} on '${name}'`);
  return encodeSafetensors(header, data);
};

function encodeSafetensors(header: unknown, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header) ?? "null");
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const headerLength: Mutator = (b, r, log) => {
  const out = b.slice();
  const len = new DataView(out.buffer).getBigUint64(0, true);
  const v = r.pick([0n, 1n, 2n, len - 1n, len + 1n, BigInt(out.length), 2n ** 63n, 99_999_999n]);
  log.push(`header length ${len} -> ${v}`);
  new DataView(out.buffer).setBigUint64(0, v, true);
  return out;
};

const safetensorsMutators: Mutator[] = [
  ...bytewise,
  safetensorsHeader,
  safetensorsHeader,
  headerLength,
];

/** Opcodes worth inserting into a pickle: structure, memo and calls. */
const OPCODES = [
  OP.MARK,
  OP.STOP,
  OP.POP,
  0x31,
  0x32,
  OP.NONE,
  OP.EMPTY_DICT,
  OP.EMPTY_LIST,
  OP.EMPTY_TUPLE,
  OP.TUPLE,
  OP.TUPLE1,
  OP.TUPLE2,
  OP.TUPLE3,
  OP.SETITEM,
  OP.SETITEMS,
  OP.APPEND,
  OP.APPENDS,
  OP.REDUCE,
  OP.BUILD,
  OP.NEWOBJ,
  OP.BINPERSID,
  OP.BINGET,
  OP.LONG_BINGET,
  OP.BINPUT,
  OP.MEMOIZE,
  OP.STACK_GLOBAL,
  0x6c,
  0x64,
  0x91,
  0x90,
  0x8f,
  0x92,
];

const LONG = 250_000; // more items than a call's arguments may be (~120k on V8)
const ascii = (text: string) => [...new TextEncoder().encode(text)];
const SHORT_KEY = [OP.SHORT_BINUNICODE, 4, ...ascii("fuzz")];
/** Pickled values that once crashed readers: each pushes one value. */
const HOSTILE_VALUES: [string, number[]][] = [
  ["a list of 250k items", [OP.EMPTY_LIST, OP.MARK, ...new Array(LONG).fill(OP.NONE), OP.APPENDS]],
  ["a dict of 125k items", [
    OP.EMPTY_DICT,
    OP.MARK,
    ...new Array(LONG).fill(OP.NEWTRUE),
    OP.SETITEMS,
  ]],
  ["250k nested tuples", [OP.NONE, ...new Array(LONG).fill(OP.TUPLE1)]],
  [
    "torch.device(250k nested tuples)",
    [
      OP.GLOBAL,
      ...ascii("torch\ndevice\n"),
      OP.NONE,
      ...new Array(LONG).fill(OP.TUPLE1),
      OP.TUPLE1,
      OP.REDUCE,
    ],
  ],
  [
    "a class called with 250k arguments, then APPENDS",
    [
      OP.GLOBAL,
      ...ascii("mypkg\nCfg\n"),
      OP.MARK,
      ...new Array(LONG).fill(OP.NONE),
      OP.TUPLE,
      OP.REDUCE,
      OP.MARK,
      OP.NONE,
      OP.APPENDS,
    ],
  ],
  ["OrderedDict([1, 2])", [
    OP.GLOBAL,
    ...ascii("collections\nOrderedDict\n"),
    OP.MARK,
    OP.MARK,
    OP.NONE,
    OP.NEWTRUE,
    0x6c,
    OP.TUPLE,
    OP.REDUCE,
  ]],
  ["os.system", [OP.GLOBAL, ...ascii("os\nsystem\n")]],
  ["memo 2^32-1", [OP.LONG_BINGET, 0xff, 0xff, 0xff, 0xff]],
  ["a list holding itself", [OP.EMPTY_LIST, OP.BINPUT, 250, OP.BINGET, 250, OP.APPEND]],
  ["persistent id of a cycle", [
    OP.EMPTY_LIST,
    OP.BINPUT,
    251,
    OP.BINGET,
    251,
    OP.APPEND,
    OP.TUPLE1,
    OP.BINPERSID,
  ]],
  ["dicts nested 100 deep", [
    ...new Array(100).fill(OP.EMPTY_DICT).flatMap((d) => [d, ...SHORT_KEY]),
    OP.NONE,
    ...new Array(100).fill(OP.SETITEM),
  ]],
];

const pickleOps: Mutator = (b, r, log) => {
  let out = b.slice();
  for (let k = 1 + r.int(3); k > 0; k--) {
    const at = r.int(out.length);
    const what = r.int(7);
    if (what === 0) {
      const v = r.pick(OPCODES);
      log.push(`opcode at ${at}: ${out[at]} -> ${v}`);
      out[at] = v;
    } else if (what === 1) {
      const ins = Uint8Array.from({ length: 1 + r.int(6) }, () => r.pick(OPCODES));
      log.push(`insert [${ins}] at ${at}`);
      out = new Uint8Array([...out.subarray(0, at), ...ins, ...out.subarray(at)]);
    } else if (what === 2) {
      const len = 1 + r.int(40);
      log.push(`delete ${len} bytes at ${at}`);
      out = new Uint8Array([...out.subarray(0, at), ...out.subarray(at + len)]);
    } else if (what === 3) {
      const len = 1 + r.int(80);
      log.push(`duplicate ${len} bytes at ${at}`);
      out = new Uint8Array([
        ...out.subarray(0, at + len),
        ...out.subarray(at, at + len),
        ...out.subarray(at + len),
      ]);
    } else if (what === 4) {
      // A hostile value: a long list, deep nesting, a forbidden global, a cycle, a big memo index.
      const [name, bytes] = r.pick(HOSTILE_VALUES);
      if (r.next() < 0.6 && out.at(-1) === OP.STOP) {
        // As a new entry of the top-level dict (SETITEM before STOP): the file stays valid.
        log.push(`add entry "fuzz": ${name}`);
        out = new Uint8Array([...out.subarray(0, -1), ...SHORT_KEY, ...bytes, OP.SETITEM, OP.STOP]);
      } else {
        log.push(`insert ${name} at ${at}`);
        out = new Uint8Array([...out.subarray(0, at), ...bytes, ...out.subarray(at)]);
      }
    } else if (what === 5) {
      const v = r.int(256);
      log.push(`byte ${at}: ${out[at]} -> ${v}`);
      out[at] = v;
    } else {
      log.push(`truncate pickle to ${at}`);
      out = out.subarray(0, at);
    }
  }
  return out;
};

// ---------------------------------------------------------------------------------------------
// Checks

/** Runs `fn`; a throw must be an InputError with a one-line message that is not a crash. */
async function expectInputErrorOrOk(
  fn: () => unknown,
  where: () => string,
): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (e) {
    const err = e as Error;
    const msg = String(err?.message);
    if (!(err instanceof InputError) || msg.includes("\n") || CRASH.test(msg)) {
      throw new AssertionError(
        `${where()}: ${err?.name} escaped: ${msg.split("\n")[0]}` +
          (err instanceof InputError ? "" : `\n${(e as { stack?: string })?.stack ?? ""}`),
      );
    }
    return false;
  }
}

/** Reads up to two tensors of a loaded map: data errors must be InputErrors too. */
async function readSome(tensors: Map<string, HostTensor>, r: Rng): Promise<void> {
  const names = [...tensors.keys()];
  for (let k = 0; k < 2 && names.length; k++) await tensors.get(r.pick(names))!.read();
}

interface Target {
  name: string;
  file: string;
  cases: number;
  mutate: (r: Rng, log: string[]) => Promise<Uint8Array>;
  /** In-process loads of the mutated file (besides inspectWeights). */
  load: (path: string, r: Rng) => Promise<void>;
  inspectConfig?: string;
}

async function runTarget(t: Target, dir: string): Promise<{ ok: number; refused: number }> {
  let ok = 0, refused = 0;
  const path = join(dir, t.file);
  for (let i = 0; i < count(t.cases); i++) {
    const seed = BASE_SEED + i;
    const r = new Rng(seed);
    const log: string[] = [];
    await Deno.writeFile(path, await t.mutate(r, log));
    const where = () => `fuzz ${t.name} seed ${seed}: ${log.join("; ")}`;
    const inspected = await expectInputErrorOrOk(
      () => inspectWeights(path, { config: t.inspectConfig }),
      where,
    );
    const loaded = await expectInputErrorOrOk(() => t.load(path, r), where);
    if (inspected && loaded) ok++;
    else refused++;
  }
  if (Deno.env.get("ZOETROPE_FUZZ_STATS")) {
    console.log(`${t.name}: ${ok} loaded, ${refused} refused`);
  }
  return { ok, refused };
}

// ---------------------------------------------------------------------------------------------
// Weights targets

async function zipParts(path: string) {
  const zip = await openZip(path);
  try {
    const pkl = [...zip.entries.keys()].find((n) => n.endsWith("/data.pkl"))!;
    const root = pkl.slice(0, -"/data.pkl".length);
    const storages: Record<string, Uint8Array> = {};
    for (const name of zip.entries.keys()) {
      if (name.startsWith(`${root}/data/`)) {
        storages[name.slice(root.length + 6)] = await zip.read(name);
      }
    }
    return { pickle: await zip.read(pkl), root, storages };
  } finally {
    zip.close();
  }
}

/** Mutates a .ckpt: its pickle (re-zipped with valid CRCs so the unpickler sees it) or its bytes. */
async function ckptTarget(
  name: string,
  source: string,
  dir: string,
  cases: number,
  load: Target["load"],
  inspectConfig?: string,
): Promise<Target> {
  const original = await Deno.readFile(source);
  const parts = await zipParts(source);
  const rezipped = join(dir, `${name}.rezip`);
  return {
    name,
    file: `${name}.ckpt`,
    cases,
    load,
    inspectConfig,
    mutate: async (r, log) => {
      if (r.next() < 0.3) return r.pick(bytewise)(original, r, log);
      const storages = { ...parts.storages };
      if (r.next() < 0.15) {
        const key = r.pick(Object.keys(storages));
        storages[key] = storages[key].subarray(0, r.int(storages[key].length));
        log.push(`storage ${key} cut to ${storages[key].length} bytes`);
      }
      await writeCustomTorchZip(rezipped, pickleOps(parts.pickle, r, log), storages, {
        root: parts.root,
      });
      return await Deno.readFile(rezipped);
    },
  };
}

function fileTarget(
  name: string,
  source: Uint8Array,
  file: string,
  cases: number,
  load: Target["load"],
  inspectConfig?: string,
): Target {
  return {
    name,
    file,
    cases,
    load,
    inspectConfig,
    mutate: (r, log) => Promise.resolve(r.pick(safetensorsMutators)(source, r, log)),
  };
}

const loadSd15 = async (path: string, r: Rng) => {
  const m = await loadModel(path, { config: MODEL_DIR });
  try {
    await readSome(m.unet, r);
  } finally {
    m.close();
  }
};
const loadMotion = async (path: string, r: Rng) => {
  const m = await loadMotionModule(path);
  try {
    await readSome(m.tensors, r);
  } finally {
    m.close();
  }
};
/** Loads a LoRA against the tiny model, merges it and reads merged weights (CPU merge). */
const loraLoader = (base: ModelWeights) => async (path: string, r: Rng) => {
  const lora = await loadLora(path, { model: base });
  try {
    const merged = applyLoras(base, [{ lora, scale: 0.8 }]);
    const changed = [...merged.unet, ...merged.textEncoder].filter(([, t]) => t.lowRank);
    for (let k = 0; k < 2 && changed.length; k++) await r.pick(changed)[1].read();
  } finally {
    lora.close();
  }
};

Deno.test("fuzz: mutated weights files are InputErrors (or load), never crashes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope_fuzz_" });
  const base = await loadModel(MODEL_DIR);
  const loadLoraFile = loraLoader(base);
  try {
    await writeTinySingleFile(join(dir, "sd15_source.ckpt"), { format: "ckpt" });
    await writeLegacyTorch(join(dir, "legacy_source.pt"), {
      "lora_unet_a.lora_down.weight": {
        storageClass: "FloatStorage",
        key: "0",
        storageNumel: 8,
        offset: 0,
        size: [2, 4],
        stride: [4, 1],
      },
      "lora_unet_a.lora_up.weight": {
        storageClass: "FloatStorage",
        key: "0",
        storageNumel: 8,
        offset: 0,
        size: [4, 2],
        stride: [1, 4],
        view: ["0", 0, 8],
      },
    }, [{ key: "0", numel: 8, bytes: new Uint8Array(32) }]);
    const read = (p: string) => Deno.readFile(join(TINY, p));
    const legacy = await Deno.readFile(join(dir, "legacy_source.pt"));
    const targets: Target[] = [
      fileTarget(
        "sd15.safetensors",
        await read("single_file/sd15.safetensors"),
        "sd15.safetensors",
        36,
        loadSd15,
        MODEL_DIR,
      ),
      fileTarget(
        "sd15.fp16",
        await read("single_file/sd15.fp16.safetensors"),
        "sd15h.safetensors",
        10,
        loadSd15,
        MODEL_DIR,
      ),
      await ckptTarget("sd15.ckpt", join(dir, "sd15_source.ckpt"), dir, 24, loadSd15, MODEL_DIR),
      await ckptTarget(
        "motion_module.ckpt",
        join(TINY, "single_file/motion_module.ckpt"),
        dir,
        40,
        loadMotion,
      ),
      fileTarget(
        "motion_module.safetensors",
        await read("single_file/motion_module.safetensors"),
        "mm.safetensors",
        24,
        loadMotion,
      ),
      fileTarget(
        "lora_kohya",
        await read("lora/lora_kohya.safetensors"),
        "kohya.safetensors",
        24,
        loadLoraFile,
      ),
      fileTarget(
        "lora_peft",
        await read("lora/pytorch_lora_weights.safetensors"),
        "peft.safetensors",
        16,
        loadLoraFile,
      ),
      {
        name: "legacy.pt",
        file: "legacy.pt",
        cases: 30,
        load: loadLoraFile,
        mutate: (r, log) =>
          Promise.resolve(
            r.next() < 0.5 ? pickleOps(legacy, r, log) : r.pick(bytewise)(legacy, r, log),
          ),
      },
    ];
    for (const t of targets) {
      const { ok, refused } = await runTarget(t, dir);
      assert(ok + refused === count(t.cases), t.name);
    }
  } finally {
    base.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: mutated diffusers config.json files are InputErrors (or load)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope_fuzz_cfg_" });
  try {
    for (const sub of ["unet", "vae", "text_encoder"]) await Deno.mkdir(join(dir, sub));
    for (const f of ["unet", "vae", "text_encoder"]) {
      for await (const e of Deno.readDir(join(MODEL_DIR, f))) {
        if (e.name.endsWith(".safetensors")) {
          await Deno.symlink(join(MODEL_DIR, f, e.name), join(dir, f, e.name));
        }
      }
    }
    await Deno.writeTextFile(join(dir, "model_index.json"), "{}");
    const configs = Object.fromEntries(
      await Promise.all(
        ["unet", "vae", "text_encoder"].map(async (c) =>
          [c, await Deno.readTextFile(join(MODEL_DIR, c, "config.json"))] as const
        ),
      ),
    );
    for (let i = 0; i < count(40); i++) {
      const seed = BASE_SEED + i, r = new Rng(seed), log: string[] = [];
      for (const [c, text] of Object.entries(configs)) {
        const json = JSON.parse(text);
        if (r.next() < 0.5) {
          const key = r.pick(Object.keys(json));
          json[key] = randomJson(r, 2);
          log.push(`${c}/config.json ${key} = ${JSON.stringify(json[key])?.slice(0, 60)}`);
        }
        let out = JSON.stringify(json);
        if (r.next() < 0.1) {
          out = r.pick([out.slice(0, r.int(out.length)), "[]", "null", '"x"', "{{"]);
          log.push(`${c}/config.json text: ${out.slice(0, 40)}`);
        }
        await Deno.writeTextFile(join(dir, c, "config.json"), out);
      }
      const where = () => `fuzz configs seed ${seed}: ${log.join("; ")}`;
      await expectInputErrorOrOk(async () => (await loadModel(dir)).close(), where);
      await expectInputErrorOrOk(() => inspectWeights(dir), where);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: mutated vocab.json / merges.txt are InputErrors (or tokenize)", async () => {
  const vocab = await Deno.readTextFile(join(MODEL_DIR, "tokenizer/vocab.json"));
  const merges = await Deno.readTextFile(join(MODEL_DIR, "tokenizer/merges.txt"));
  const enc = new TextEncoder(), dec = new TextDecoder();
  for (let i = 0; i < count(300); i++) {
    const seed = BASE_SEED + i, r = new Rng(seed), log: string[] = [];
    let v = vocab, m = merges;
    const what = r.int(6);
    if (what === 0) v = dec.decode(r.pick(bytewise)(enc.encode(v), r, log));
    else if (what === 1) m = dec.decode(r.pick(bytewise)(enc.encode(m), r, log));
    else if (what === 2) {
      const json = JSON.parse(v);
      const key = r.pick(Object.keys(json));
      json[key] = randomJson(r, 2);
      if (r.next() < 0.3) delete json[r.pick(["<|startoftext|>", "<|endoftext|>"])];
      log.push(`vocab["${key}"] = ${JSON.stringify(json[key])?.slice(0, 60)}`);
      v = JSON.stringify(json);
    } else if (what === 3) {
      const lines = m.split("\n");
      const at = 1 + r.int(lines.length - 1);
      lines[at] = r.pick(["", "a", "a b c", "  ", "\t\t", "x".repeat(5000), "\u0000 \u0000"]);
      log.push(`merges line ${at + 1} = ${JSON.stringify(lines[at].slice(0, 20))}`);
      m = lines.join("\n");
    } else if (what === 4) {
      v = JSON.stringify(randomJson(r, 3));
      log.push(`vocab = ${v.slice(0, 60)}`);
    } else {
      m = r.pick(["", "\n", "#version: 0.2", "#version: 0.2\n\n\n"]) + m.slice(r.int(m.length));
      log.push(`merges cut: ${JSON.stringify(m.slice(0, 30))}`);
    }
    await expectInputErrorOrOk(() => {
      const tok = ClipTokenizer.fromFiles({ vocabJson: v, mergesTxt: m });
      tok.encode(
        r.pick(["a photo of a cat", "", "<|endoftext|> x", "ün¡cödé 😀", "a".repeat(300)]),
      );
    }, () => `fuzz tokenizer seed ${seed}: ${log.join("; ")}`);
  }
});

Deno.test("fuzz: the weights CLI exits 0 or 2 with one line on mutated files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zoetrope_fuzz_cli_" });
  try {
    const sources = [
      await Deno.readFile(join(TINY, "single_file/motion_module.safetensors")),
      await Deno.readFile(join(TINY, "lora/lora_kohya.safetensors")),
      await Deno.readFile(join(TINY, "single_file/motion_module.ckpt")),
    ];
    const cases = Array.from({ length: count(6) }, (_, i) => {
      const seed = BASE_SEED + i, r = new Rng(seed), log: string[] = [];
      const source = sources[i % sources.length];
      const bytes = (i % sources.length === 2 ? r.pick(bytewise) : r.pick(safetensorsMutators))(
        source,
        r,
        log,
      );
      return { seed, log, bytes, path: join(dir, `case${i}.weights`) };
    });
    const run = async (c: typeof cases[number]) => {
      await Deno.writeFile(c.path, c.bytes);
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", join(ROOT, "cli.ts"), "weights", "inspect", c.path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(out.stderr).trimEnd();
      const where = `fuzz weights cli seed ${c.seed}: ${c.log.join("; ")}`;
      assert(out.code === 0 || out.code === 2, `${where}: exit ${out.code}: ${err}`);
      if (out.code === 2) {
        assert(
          !err.includes("\n") && err.startsWith("error: ") && !CRASH.test(err),
          `${where}: ${err}`,
        );
      } else assert(err === "", `${where}: stderr ${err}`);
    };
    for (let i = 0; i < cases.length; i += 3) await Promise.all(cases.slice(i, i + 3).map(run));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// HTTP

const SMALL = { ...SMALL_REQUEST, steps: 2 };

function utf16(text: string, bigEndian: boolean, bom: boolean): Uint8Array {
  const out = new Uint8Array((bom ? 2 : 0) + 2 * text.length);
  const view = new DataView(out.buffer);
  if (bom) view.setUint16(0, 0xfeff, !bigEndian);
  for (let i = 0; i < text.length; i++) {
    view.setUint16((bom ? 2 : 0) + 2 * i, text.charCodeAt(i), !bigEndian);
  }
  return out;
}

/** A mutated request: body bytes, content type, and what was done. */
function mutatedRequest(r: Rng): { body: Uint8Array; type: string | null; what: string } {
  const enc = new TextEncoder();
  const base: Record<string, unknown> = { ...SMALL };
  const json = () => JSON.stringify(base);
  const type = r.next() < 0.9 ? "application/json" : r.pick([
    null,
    "text/plain",
    "application/json; charset=latin1",
    'application/json;charset="utf-8"',
  ]);
  switch (r.int(10)) {
    case 0:
      return { body: r.bytes(r.int(300)), type, what: "random bytes" };
    case 1: {
      const b = enc.encode(json());
      const at = r.int(b.length);
      const bad = r.pick([[0xff], [0xc0, 0x80], [0xe2, 0x82], [0xed, 0xa0, 0x80], [
        0xf8,
        0x88,
        0x80,
        0x80,
      ]]);
      return {
        body: new Uint8Array([...b.subarray(0, at), ...bad, ...b.subarray(at)]),
        type,
        what: `invalid UTF-8 [${bad}] at ${at}`,
      };
    }
    case 2: {
      const be = r.next() < 0.5, bom = r.next() < 0.5;
      return {
        body: utf16(json(), be, bom),
        type,
        what: `UTF-16${be ? "BE" : "LE"}${bom ? " with BOM" : ""}`,
      };
    }
    case 3: {
      const depth = 1 + r.int(20_000);
      const field = r.pick(["prompt", "loras", "frames", "model", null]);
      const deep = "[".repeat(depth) + "]".repeat(depth);
      const text = field ? json().replace(/}$/, `,"${field}x":1,"${field}":${deep}}`) : deep;
      return { body: enc.encode(text), type, what: `nesting ${depth} deep in ${field}` };
    }
    case 4: {
      const key = r.pick([
        "frames",
        "width",
        "steps",
        "guidance",
        "seed",
        "fps",
        "clipSkip",
        "contextLength",
      ]);
      const num = r.pick([
        "1e309",
        "-1e999",
        "123456789012345678901234567890",
        "1e-400",
        "-0",
        "0x10",
        "NaN",
        "Infinity",
        "9007199254740993",
        "4.0000000000000001",
      ]);
      return {
        body: enc.encode(json().replace(/}$/, `,"${key}":${num}}`)),
        type,
        what: `${key}: ${num}`,
      };
    }
    case 5: {
      const key = r.pick([
        ...Object.keys(SMALL),
        "negativePrompt",
        "loras",
        "scheduler",
        "format",
        "contextOverlap",
        "contextLoop",
      ]);
      base[key] = randomJson(r, 3);
      return {
        body: enc.encode(json()),
        type,
        what: `${key} = ${JSON.stringify(base[key])?.slice(0, 80)}`,
      };
    }
    case 6: {
      const key = r.pick(["__proto__", "constructor", "toString", "x".repeat(500), "", "prompt "]);
      return {
        body: enc.encode(
          json().replace(/}$/, `,${JSON.stringify(key)}:${JSON.stringify(randomJson(r))}}`),
        ),
        type,
        what: `extra field ${key.slice(0, 20)}`,
      };
    }
    case 7: {
      const text = json();
      const at = r.int(text.length);
      return { body: enc.encode(text.slice(0, at)), type, what: `truncated at ${at}` };
    }
    case 8: {
      base.loras = Array.from(
        { length: r.int(12) },
        () =>
          r.next() < 0.5
            ? { name: r.pick(["lora_kohya", "lora_peft", "nope", ""]), scale: randomJson(r, 1) }
            : randomJson(r, 2),
      );
      return {
        body: enc.encode(json()),
        type,
        what: `loras = ${JSON.stringify(base.loras).slice(0, 80)}`,
      };
    }
    default: {
      const b = enc.encode(json());
      const log: string[] = [];
      return { body: flip(b, r, log), type, what: log.join("; ") };
    }
  }
}

Deno.test("fuzz: mutated HTTP requests get 4xx with a JSON error body, never 5xx", async () => {
  const dir = await makeModelsDir();
  const fake = fakeLoader({ stepMs: 0 });
  const app = createApp({
    modelsDir: dir,
    loadPipeline: fake.load,
    adapterName: () => Promise.resolve("fuzz adapter"),
    queueSize: 64,
  });
  try {
    for (let i = 0; i < count(400); i++) {
      const seed = BASE_SEED + i, r = new Rng(seed);
      let res: Response, what: string;
      if (r.next() < 0.8) {
        const req = mutatedRequest(r);
        what = req.what;
        const headers: Record<string, string> = req.type ? { "Content-Type": req.type } : {};
        res = await app.request("/v1/animations", {
          method: "POST",
          headers,
          body: req.body as Uint8Array<ArrayBuffer>,
        });
      } else {
        const id = r.pick([
          "%FF%FE",
          "%",
          "..%2F..%2Fetc%2Fpasswd",
          "x".repeat(3000),
          "%E0%A4%A",
          "\u{1f600}",
          "0",
        ]);
        const path = r.pick([
          `/v1/animations/${id}`,
          `/v1/animations/${id}/result?download=%ZZ`,
          `/v1/animations/${id}/events`,
          `/v1/models?x=%`,
          `/healthz?${id}`,
        ]);
        const method =
          path.includes("/events") || path.includes("/models") || path.includes("healthz")
            ? "GET"
            : r.pick(["GET", "DELETE", "POST", "PUT"]);
        what = `${method} ${path.slice(0, 80)}`;
        res = await app.request(path, { method });
      }
      const where = `fuzz http seed ${seed}: ${what}`;
      assert(res.status < 500, `${where}: status ${res.status}: ${await res.clone().text()}`);
      const text = await res.text();
      if (res.status >= 400) {
        let body: { error?: unknown; field?: unknown } | null = null;
        try {
          body = JSON.parse(text);
        } catch { /* checked below */ }
        assert(
          body !== null && typeof body.error === "string" &&
            (body.field === undefined || typeof body.field === "string"),
          `${where}: ${res.status} without a JSON error body: ${text.slice(0, 200)}`,
        );
      }
    }
  } finally {
    await app.close();
    await Deno.remove(dir, { recursive: true });
  }
});
