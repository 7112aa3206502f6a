/**
 * Independent demuxers for the video tests: read an MP4's boxes or a WebM's EBML elements back
 * and report codec, size, frame count and frame rate, without any of the encoders' code.
 */

/** What a video file says about itself. */
export interface VideoProbe {
  codec: string;
  width: number;
  height: number;
  frameCount: number;
  /** Frames per second from the frames' timestamps (mean spacing). */
  fps: number;
  /** Whether every frame has the same duration. */
  uniform: boolean;
}

function u32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(at);
}
function u16(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset).getUint16(at);
}

interface Box {
  type: string;
  body: Uint8Array;
}

function boxes(b: Uint8Array): Box[] {
  const out: Box[] = [];
  let at = 0;
  while (at + 8 <= b.length) {
    let size = u32(b, at);
    const type = String.fromCharCode(...b.subarray(at + 4, at + 8));
    let head = 8;
    if (size === 1) {
      size = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(at + 8));
      head = 16;
    } else if (size === 0) size = b.length - at;
    if (size < head || at + size > b.length) throw new Error(`mp4: bad box ${type} at ${at}`);
    out.push({ type, body: b.subarray(at + head, at + size) });
    at += size;
  }
  return out;
}

function child(b: Uint8Array, path: string[]): Uint8Array {
  let cur = b;
  for (const t of path) {
    const found = boxes(cur).find((x) => x.type === t);
    if (!found) throw new Error(`mp4: no ${path.join("/")} (missing ${t})`);
    cur = found.body;
  }
  return cur;
}

/** Reads an MP4's first video track. */
export function probeMp4(file: Uint8Array): VideoProbe {
  const top = boxes(file).map((x) => x.type);
  if (top[0] !== "ftyp") throw new Error(`mp4: first box is ${top[0]}, not ftyp`);
  if (!top.includes("mdat")) throw new Error("mp4: no mdat");
  const moov = child(file, ["moov"]);
  const trak = boxes(moov).find((t) =>
    t.type === "trak" &&
    String.fromCharCode(...child(t.body, ["mdia", "hdlr"]).subarray(8, 12)) === "vide"
  );
  if (!trak) throw new Error("mp4: no video track");
  const mdhd = child(trak.body, ["mdia", "mdhd"]);
  const timescale = mdhd[0] === 1 ? u32(mdhd, 20) : u32(mdhd, 12);
  const stbl = child(trak.body, ["mdia", "minf", "stbl"]);
  const stsd = child(stbl, ["stsd"]);
  const entry = boxes(stsd.subarray(8))[0];
  const width = u16(entry.body, 24);
  const height = u16(entry.body, 26);
  const stsz = child(stbl, ["stsz"]);
  const frameCount = u32(stsz, 8);
  const stts = child(stbl, ["stts"]);
  const entries = u32(stts, 4);
  let total = 0;
  let n = 0;
  const deltas = new Set<number>();
  for (let i = 0; i < entries; i++) {
    const count = u32(stts, 8 + 8 * i);
    const delta = u32(stts, 12 + 8 * i);
    total += count * delta;
    n += count;
    deltas.add(delta);
  }
  if (n !== frameCount) throw new Error(`mp4: stts covers ${n} samples, stsz ${frameCount}`);
  return {
    codec: entry.type,
    width,
    height,
    frameCount,
    fps: frameCount / (total / timescale),
    uniform: deltas.size === 1,
  };
}

function vint(b: Uint8Array, at: number, keepMarker: boolean): { value: number; len: number } {
  const first = b[at];
  let len = 1;
  while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
  if (len > 8) throw new Error(`webm: bad vint at ${at}`);
  let value = keepMarker ? first : first & (0xff >> len);
  let unknown = value === (0xff >> len);
  for (let i = 1; i < len; i++) {
    value = value * 256 + b[at + i];
    if (b[at + i] !== 0xff) unknown = false;
  }
  return { value: !keepMarker && unknown ? -1 : value, len };
}

interface Element {
  id: number;
  body: Uint8Array;
}

function elements(b: Uint8Array): Element[] {
  const out: Element[] = [];
  let at = 0;
  while (at < b.length) {
    const id = vint(b, at, true);
    const size = vint(b, at + id.len, false);
    const start = at + id.len + size.len;
    const end = size.value < 0 ? b.length : start + size.value;
    if (end > b.length) throw new Error(`webm: element 0x${id.value.toString(16)} overruns`);
    out.push({ id: id.value, body: b.subarray(start, end) });
    at = end;
  }
  return out;
}

function uint(b: Uint8Array): number {
  let v = 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

const SEGMENT = 0x18538067, INFO = 0x1549a966, TIMESCALE = 0x2ad7b1, TRACKS = 0x1654ae6b;
const TRACK_ENTRY = 0xae, CODEC_ID = 0x86, VIDEO = 0xe0, PIXEL_W = 0xb0, PIXEL_H = 0xba;
const CLUSTER = 0x1f43b675, TIMECODE = 0xe7, SIMPLE_BLOCK = 0xa3, BLOCK_GROUP = 0xa0, BLOCK = 0xa1;

/** Reads a WebM's video track and its blocks' timestamps. */
export function probeWebm(file: Uint8Array): VideoProbe {
  const top = elements(file);
  if (top[0]?.id !== 0x1a45dfa3) throw new Error("webm: no EBML header");
  const segment = top.find((e) => e.id === SEGMENT);
  if (!segment) throw new Error("webm: no Segment");
  const seg = elements(segment.body);
  const info = seg.find((e) => e.id === INFO);
  const ts = info && elements(info.body).find((e) => e.id === TIMESCALE);
  const timescaleNs = ts ? uint(ts.body) : 1_000_000;
  const tracks = seg.find((e) => e.id === TRACKS);
  if (!tracks) throw new Error("webm: no Tracks");
  const entry = elements(tracks.body).find((e) => e.id === TRACK_ENTRY)!;
  const fields = elements(entry.body);
  const codec = new TextDecoder().decode(fields.find((e) => e.id === CODEC_ID)!.body);
  const video = elements(fields.find((e) => e.id === VIDEO)!.body);
  const width = uint(video.find((e) => e.id === PIXEL_W)!.body);
  const height = uint(video.find((e) => e.id === PIXEL_H)!.body);
  const times: number[] = [];
  for (const cluster of seg.filter((e) => e.id === CLUSTER)) {
    const parts = elements(cluster.body);
    const base = uint(parts.find((e) => e.id === TIMECODE)!.body);
    for (const p of parts) {
      const block = p.id === SIMPLE_BLOCK
        ? p.body
        : p.id === BLOCK_GROUP
        ? elements(p.body).find((e) => e.id === BLOCK)?.body
        : undefined;
      if (!block) continue;
      const track = vint(block, 0, false);
      const rel = new DataView(block.buffer, block.byteOffset).getInt16(track.len);
      times.push(base + rel);
    }
  }
  if (times.length === 0) throw new Error("webm: no frames");
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  const mean = gaps.length ? gaps.reduce((a, b) => a + b, 0) / gaps.length : NaN;
  return {
    codec,
    width,
    height,
    frameCount: times.length,
    fps: 1e9 / (mean * timescaleNs),
    uniform: gaps.every((g) => Math.abs(g - gaps[0]) <= 1),
  };
}
