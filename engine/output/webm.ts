/**
 * A WebM (Matroska) muxer for one VP8 video track of key frames: EBML header, Segment with Info
 * (duration), Tracks (V_VP8, size, frame duration), Clusters of SimpleBlocks (a new Cluster every
 * 30 s, as block times are 16-bit milliseconds) and Cues pointing at each Cluster for seeking.
 * Element sizes are written in full, never "unknown", so players know the file's extent.
 * @module
 */

const ID = {
  EBML: 0x1a45dfa3,
  EBMLVersion: 0x4286,
  EBMLReadVersion: 0x42f7,
  EBMLMaxIDLength: 0x42f2,
  EBMLMaxSizeLength: 0x42f3,
  DocType: 0x4282,
  DocTypeVersion: 0x4287,
  DocTypeReadVersion: 0x4285,
  Segment: 0x18538067,
  Info: 0x1549a966,
  TimestampScale: 0x2ad7b1,
  Duration: 0x4489,
  MuxingApp: 0x4d80,
  WritingApp: 0x5741,
  Tracks: 0x1654ae6b,
  TrackEntry: 0xae,
  TrackNumber: 0xd7,
  TrackUID: 0x73c5,
  TrackType: 0x83,
  FlagLacing: 0x9c,
  CodecID: 0x86,
  DefaultDuration: 0x23e383,
  Video: 0xe0,
  PixelWidth: 0xb0,
  PixelHeight: 0xba,
  Cluster: 0x1f43b675,
  Timestamp: 0xe7,
  SimpleBlock: 0xa3,
  Cues: 0x1c53bb6b,
  CuePoint: 0xbb,
  CueTime: 0xb3,
  CueTrackPositions: 0xb7,
  CueTrack: 0xf7,
  CueClusterPosition: 0xf1,
} as const;

/** Bytes of an element ID (IDs carry their own length marker). */
function idBytes(id: number): number[] {
  const out: number[] = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return out;
}

/** An element size as an EBML variable-size integer (8 bytes when asked, else the shortest). */
function sizeBytes(size: number, width?: number): number[] {
  let len = width ?? 1;
  while (width === undefined && size >= 2 ** (7 * len) - 1) len++;
  if (len > 8) throw new RangeError(`webm: element of ${size} bytes is too large`);
  const out = new Array<number>(len).fill(0);
  let v = size;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  out[0] |= 0x80 >> (len - 1);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function element(id: number, body: Uint8Array | Uint8Array[]): Uint8Array {
  const data = Array.isArray(body) ? concat(body) : body;
  return concat([new Uint8Array([...idBytes(id), ...sizeBytes(data.length)]), data]);
}

function uint(id: number, value: number): Uint8Array {
  const bytes: number[] = [];
  for (let v = value; v > 0 || bytes.length === 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return element(id, new Uint8Array(bytes));
}

function float64(id: number, value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, value);
  return element(id, b);
}

function text(id: number, value: string): Uint8Array {
  return element(id, new TextEncoder().encode(value));
}

/** Options of {@link muxWebm}. */
export interface WebmTrack {
  width: number;
  height: number;
  fps: number;
}

/** Longest span of one Cluster in ms (SimpleBlock times are signed 16-bit offsets). */
const CLUSTER_MS = 30_000;

/**
 * Wraps VP8 key frames (raw VP8 bitstreams, as in a WebP's `VP8 ` chunk) into a WebM file, frame
 * i at round(1000 i / fps) ms.
 *
 * @example
 * ```ts ignore
 * const webm = muxWebm([vp8Frame0, vp8Frame1], { width: 64, height: 64, fps: 8 });
 * ```
 */
export function muxWebm(frames: readonly Uint8Array[], track: WebmTrack): Uint8Array {
  const { width, height, fps } = track;
  const times = frames.map((_, i) => Math.round((1000 * i) / fps));
  const header = element(ID.EBML, [
    uint(ID.EBMLVersion, 1),
    uint(ID.EBMLReadVersion, 1),
    uint(ID.EBMLMaxIDLength, 4),
    uint(ID.EBMLMaxSizeLength, 8),
    text(ID.DocType, "webm"),
    uint(ID.DocTypeVersion, 2),
    uint(ID.DocTypeReadVersion, 2),
  ]);
  const info = element(ID.Info, [
    uint(ID.TimestampScale, 1_000_000),
    float64(ID.Duration, (1000 * frames.length) / fps),
    text(ID.MuxingApp, "Zoetrope"),
    text(ID.WritingApp, "Zoetrope"),
  ]);
  const tracks = element(ID.Tracks, [
    element(ID.TrackEntry, [
      uint(ID.TrackNumber, 1),
      uint(ID.TrackUID, 1),
      uint(ID.TrackType, 1),
      uint(ID.FlagLacing, 0),
      text(ID.CodecID, "V_VP8"),
      uint(ID.DefaultDuration, Math.round(1e9 / fps)),
      element(ID.Video, [uint(ID.PixelWidth, width), uint(ID.PixelHeight, height)]),
    ]),
  ]);
  const clusters: Uint8Array[] = [];
  const cuePoints: { time: number; offset: number }[] = [];
  let offset = info.length + tracks.length; // Cluster positions count from the Segment's data.
  for (let start = 0; start < frames.length;) {
    const base = times[start];
    const blocks: Uint8Array[] = [uint(ID.Timestamp, base)];
    let i = start;
    for (; i < frames.length && times[i] - base < CLUSTER_MS; i++) {
      const head = new Uint8Array(4);
      head[0] = 0x81; // track 1 as a 1-byte vint
      new DataView(head.buffer).setInt16(1, times[i] - base);
      head[3] = 0x80; // key frame
      blocks.push(element(ID.SimpleBlock, [head, frames[i]]));
    }
    const cluster = element(ID.Cluster, blocks);
    cuePoints.push({ time: base, offset });
    clusters.push(cluster);
    offset += cluster.length;
    start = i;
  }
  const cues = element(
    ID.Cues,
    cuePoints.map((c) =>
      element(ID.CuePoint, [
        uint(ID.CueTime, c.time),
        element(ID.CueTrackPositions, [
          uint(ID.CueTrack, 1),
          uint(ID.CueClusterPosition, c.offset),
        ]),
      ])
    ),
  );
  const segment = element(ID.Segment, [info, tracks, ...clusters, cues]);
  return concat([header, segment]);
}

/**
 * The VP8 bitstream inside a lossy WebP (`RIFF....WEBP` then a `VP8 ` chunk, directly or after
 * `VP8X`/`ALPH`); a lossless (`VP8L`) WebP has none and is an error.
 */
export function vp8FromWebp(webp: Uint8Array): Uint8Array {
  const tag = (at: number) => String.fromCharCode(...webp.subarray(at, at + 4));
  if (webp.length < 20 || tag(0) !== "RIFF" || tag(8) !== "WEBP") {
    throw new Error("webm: the frame encoder did not return a WebP");
  }
  const view = new DataView(webp.buffer, webp.byteOffset, webp.byteLength);
  for (let at = 12; at + 8 <= webp.length;) {
    const size = view.getUint32(at + 4, true);
    if (tag(at) === "VP8 ") {
      if (at + 8 + size > webp.length) throw new Error("webm: truncated VP8 chunk in the WebP");
      return webp.subarray(at + 8, at + 8 + size);
    }
    at += 8 + size + (size & 1);
  }
  throw new Error("webm: the WebP holds no lossy VP8 frame");
}
