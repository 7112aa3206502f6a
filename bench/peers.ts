/**
 * Peer bench (issue 2): Zoetrope's kernels side by side with tfjs-webgpu and onnxruntime-web's
 * WebGPU EP on the same adapter in the same Deno process, on the comparison shapes of the kernel
 * case tables (f32).
 *
 * `XDG_RUNTIME_DIR=/tmp deno run -A bench/peers.ts [--json FILE] [--rounds N] [--only TEXT]
 * [--peers tfjs,ort]`
 *
 * Every contender is timed the same way (./peers/measure.ts): warm-up, then samples of back-to-
 * back runs closed by a small readback, wall clock, median ms per run. Ours is also timed with
 * timestamp queries (kernels/gpu/timing.ts). Each peer output is checked against ours before it
 * is timed. The speedup is the faster peer's time over ours (target: at least 1.5).
 * @module
 */

import { Gpu } from "../kernels/gpu/device.ts";
import { timeGpu } from "../kernels/gpu/timing.ts";
import {
  type Comparison,
  comparisons,
  hostInputs,
  maxRelError,
  oursOutput,
} from "./peers/comparison.ts";
import { measure, median } from "./peers/measure.ts";
import type { Peer } from "./peers/peer.ts";

/** Speedup over the faster peer that issue 2 asks for. */
export const TARGET_SPEEDUP = 1.5;
/** Largest max-relative difference between a peer's output and ours that counts as agreeing. */
export const CHECK_TOLERANCE = 1e-4;

const USAGE = `usage: deno run -A bench/peers.ts [--json FILE] [--rounds N] [--only TEXT] \
[--peers tfjs,ort]
  --json FILE    also write the results as JSON
  --rounds N     repeat the whole table N times and report medians (default 1)
  --only TEXT    only comparisons whose label contains TEXT (e.g. "attention")
  --peers LIST   peers to load (default tfjs,ort)`;

/** Parsed command line. */
export interface PeerBenchOptions {
  json?: string;
  rounds: number;
  only?: string;
  peers: string[];
  help: boolean;
}

/** Parses the command line; throws with a one-line reason on bad input. */
export function parsePeerArgs(args: readonly string[]): PeerBenchOptions {
  const o: PeerBenchOptions = { rounds: 1, peers: ["tfjs", "ort"], help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`bench/peers: ${a} needs a value`);
      return v;
    };
    if (a === "--help" || a === "-h") o.help = true;
    else if (a === "--json") o.json = value();
    else if (a === "--only") o.only = value();
    else if (a === "--peers") o.peers = value().split(",").filter(Boolean);
    else if (a === "--rounds") {
      o.rounds = Number(value());
      if (!Number.isInteger(o.rounds) || o.rounds < 1) {
        throw new Error(`bench/peers: --rounds expects a positive integer`);
      }
    } else throw new Error(`bench/peers: unknown argument ${a}\n${USAGE}`);
  }
  for (const p of o.peers) {
    if (p !== "tfjs" && p !== "ort") throw new Error(`bench/peers: unknown peer ${p}`);
  }
  return o;
}

/** One peer variant's figures on one comparison. */
export interface VariantResult {
  variant: string;
  /** Median ms per run (null when the variant failed or disagreed with ours). */
  ms: number | null;
  /** Max relative difference from our output. */
  maxRelError: number | null;
  error?: string;
}

/** One comparison row (medians over rounds). */
export interface PeerBenchRow {
  label: string;
  op: string;
  shape: number[];
  flops?: number;
  /** Ours, wall clock around back-to-back runs + `gpu.sync()` (the same method as the peers). */
  oursMs: number;
  /** Ours, GPU time from timestamp queries (null without timestamp-query). */
  oursGpuMs: number | null;
  /** Best variant per peer. */
  peers: Record<string, VariantResult & { variants: VariantResult[] }>;
  /** The faster peer's ms (null if no peer ran). */
  bestPeerMs: number | null;
  bestPeer: string | null;
  /** bestPeerMs / oursMs. */
  speedup: number | null;
}

async function loadPeers(names: string[], print: (s: string) => void): Promise<Peer[]> {
  const peers: Peer[] = [];
  for (const name of names) {
    try {
      const mod = name === "tfjs"
        ? await import("./peers/tfjs.ts").then((m) => m.createTfjsPeer())
        : await import("./peers/ort.ts").then((m) => m.createOrtPeer());
      print(`${name}: ${mod.version} on ${mod.adapter}`);
      peers.push(mod);
    } catch (e) {
      print(`${name}: unavailable (${(e as Error).message.split("\n")[0]})`);
    }
  }
  return peers;
}

async function timeVariant(
  peer: Peer,
  c: Comparison,
  variant: string,
  ref: Float32Array,
): Promise<VariantResult> {
  const inputs = hostInputs(c);
  let run;
  try {
    run = await peer.prepare(c, inputs, variant);
  } catch (e) {
    return { variant, ms: null, maxRelError: null, error: (e as Error).message.split("\n")[0] };
  }
  try {
    const err = maxRelError(await run.output(), ref);
    if (!(err <= CHECK_TOLERANCE)) {
      return { variant, ms: null, maxRelError: err, error: `output differs from ours (${err})` };
    }
    const m = await measure(run);
    return { variant, ms: m.medianMs, maxRelError: err };
  } catch (e) {
    return { variant, ms: null, maxRelError: null, error: (e as Error).message.split("\n")[0] };
  } finally {
    await run.dispose();
  }
}

async function benchOne(gpu: Gpu, c: Comparison, peers: Peer[]): Promise<PeerBenchRow> {
  const ref = await oursOutput(gpu, c, hostInputs(c));
  const { run, dispose } = c.ours.setup(gpu);
  let oursMs: number, oursGpuMs: number | null = null;
  try {
    const wall = await measure({ run, sync: () => gpu.sync() });
    oursMs = wall.medianMs;
    if (gpu.hasTimestamps) {
      oursGpuMs = (await timeGpu(gpu, run, { reps: wall.reps, samples: 5 })).medianMs;
    }
  } finally {
    dispose();
    await gpu.sync();
  }
  const row: PeerBenchRow = {
    label: c.label,
    op: c.geometry.op,
    shape: c.ours.shape,
    flops: c.flops,
    oursMs,
    oursGpuMs,
    peers: {},
    bestPeerMs: null,
    bestPeer: null,
    speedup: null,
  };
  for (const peer of peers) {
    const variants: VariantResult[] = [];
    for (const v of peer.variants(c)) variants.push(await timeVariant(peer, c, v, ref));
    const ok = variants.filter((v) => v.ms !== null).sort((a, b) => a.ms! - b.ms!);
    row.peers[peer.name] = { ...(ok[0] ?? variants[0]), variants };
  }
  return withBest(row);
}

function withBest(row: PeerBenchRow): PeerBenchRow {
  let best: [string, number] | null = null;
  for (const [name, r] of Object.entries(row.peers)) {
    if (r.ms !== null && (!best || r.ms < best[1])) best = [name, r.ms];
  }
  row.bestPeer = best?.[0] ?? null;
  row.bestPeerMs = best?.[1] ?? null;
  row.speedup = best ? best[1] / row.oursMs : null;
  return row;
}

/** Per-field medians of the same comparison over several rounds. */
export function mergeRounds(rounds: PeerBenchRow[]): PeerBenchRow {
  const med = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length ? median(v) : null;
  };
  const first = rounds[0];
  const peers: PeerBenchRow["peers"] = {};
  for (const name of Object.keys(first.peers)) {
    const variants = first.peers[name].variants.map((v, i) => ({
      ...v,
      ms: med(rounds.map((r) => r.peers[name].variants[i].ms)),
    }));
    const ok = variants.filter((v) => v.ms !== null).sort((a, b) => a.ms! - b.ms!);
    peers[name] = { ...(ok[0] ?? variants[0]), variants };
  }
  return withBest({
    ...first,
    oursMs: med(rounds.map((r) => r.oursMs))!,
    oursGpuMs: med(rounds.map((r) => r.oursGpuMs)),
    peers,
  });
}

const fmt = (ms: number | null | undefined) => (ms == null ? "-" : ms.toFixed(2));

/** The printed table: one line per comparison. */
export function formatTable(rows: PeerBenchRow[], peerNames: string[]): string[] {
  const head = ["shape".padEnd(36), "ours ms".padStart(9), "ours gpu".padStart(9)];
  for (const p of peerNames) head.push(`${p} ms`.padStart(9));
  head.push("vs best".padStart(8), "  verdict / peer variant");
  const lines = [head.join(" ")];
  for (const r of rows) {
    const cells = [r.label.padEnd(36), fmt(r.oursMs).padStart(9), fmt(r.oursGpuMs).padStart(9)];
    for (const p of peerNames) cells.push(fmt(r.peers[p]?.ms).padStart(9));
    const x = r.speedup === null ? "-" : `${r.speedup.toFixed(2)}x`;
    cells.push(x.padStart(8));
    const verdict = r.speedup === null
      ? "no peer"
      : r.speedup >= TARGET_SPEEDUP
      ? "ok"
      : r.speedup >= 1
      ? "below 1.5x"
      : "LOSES";
    const best = r.bestPeer ? `${r.bestPeer}: ${r.peers[r.bestPeer].variant}` : "";
    const failed = Object.entries(r.peers).flatMap(([p, v]) =>
      v.variants.filter((x) => x.error).map((x) => `${p} ${x.variant} failed: ${x.error}`)
    );
    lines.push(`${cells.join(" ")}  ${verdict}${best ? ` (${best})` : ""}`);
    for (const f of failed) lines.push(`    ${f.slice(0, 160)}`);
  }
  return lines;
}

async function main(): Promise<number> {
  let options: PeerBenchOptions;
  try {
    options = parsePeerArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  const gpu = await Gpu.create();
  const print = (s: string) => console.log(s);
  print(
    `ours: ${gpu.info.name}${gpu.info.isFallback ? " (software)" : ""}; Deno ${Deno.version.deno}`,
  );
  const peers = await loadPeers(options.peers, print);
  const selected = comparisons().filter((c) => !options.only || c.label.includes(options.only));
  const rounds: PeerBenchRow[][] = selected.map(() => []);
  const t0 = performance.now();
  try {
    for (let r = 0; r < options.rounds; r++) {
      for (const [i, c] of selected.entries()) {
        rounds[i].push(await benchOne(gpu, c, peers));
        const last = rounds[i].at(-1)!;
        const p = Object.entries(last.peers).map(([n, v]) => `${n} ${fmt(v.ms)}`).join(", ");
        print(`  round ${r + 1}: ${c.label}: ours ${fmt(last.oursMs)}, ${p}`);
      }
    }
  } finally {
    for (const p of peers) await p.destroy();
  }
  const rows = rounds.map(mergeRounds);
  print("");
  print(
    `medians of ${options.rounds} round(s), ms per op, f32; vs best = faster peer / ours ` +
      `(target >= ${TARGET_SPEEDUP}x); ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  for (const line of formatTable(rows, peers.map((p) => p.name))) print(line);
  if (options.json) {
    const doc = {
      adapter: gpu.info.name,
      deno: Deno.version.deno,
      rounds: options.rounds,
      peers: peers.map((p) => ({ name: p.name, version: p.version, adapter: p.adapter })),
      rows,
    };
    await Deno.writeTextFile(options.json, JSON.stringify(doc, null, 2) + "\n");
    print(`wrote ${rows.length} rows to ${options.json}`);
  }
  gpu.destroy();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
