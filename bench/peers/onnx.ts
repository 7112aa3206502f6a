/**
 * A minimal ONNX protobuf encoder: just enough of `ModelProto` to build small single-purpose
 * graphs (MatMul, Conv, Softmax, InstanceNormalization, com.microsoft contrib ops) in memory for
 * onnxruntime-web. Field numbers follow onnx/onnx.proto3.
 * @module
 */

/** ONNX `TensorProto.DataType` values used here. */
export const ONNX_FLOAT = 1;
/** ONNX int64 element type (Reshape shapes). */
export const ONNX_INT64 = 7;

/** A graph input/output: name, element type and static dims. */
export interface ValueInfo {
  name: string;
  dims: readonly number[];
  /** Element type (default {@link ONNX_FLOAT}). */
  type?: number;
}

/** A constant tensor stored in the graph. */
export interface Initializer {
  name: string;
  dims: readonly number[];
  /** float32 data, or int64 data as a BigInt64Array. */
  data: Float32Array | BigInt64Array;
}

/** An attribute value: int, float, string, int list or float list. */
export type AttrValue = number | string | { ints: readonly number[] } | {
  floats: readonly number[];
} | {
  float: number;
};

/** One graph node. */
export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Operator domain ("" = ai.onnx, "com.microsoft" for contrib ops). */
  domain?: string;
  /** Attributes; a plain integer number is an INT, use `{ float }` for FLOAT. */
  attrs?: Record<string, AttrValue>;
}

/** A whole model. */
export interface OnnxGraph {
  nodes: readonly OnnxNode[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  initializers?: readonly Initializer[];
  /** ai.onnx opset (default 17). */
  opset?: number;
}

/** Growable protobuf writer. */
class Writer {
  #bytes: number[] = [];

  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.#bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.#bytes.push(Number(x));
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    return this.tag(field, 0).varint(v);
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2).varint(data.length);
    for (const b of data) this.#bytes.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    for (const x of b) this.#bytes.push(x);
    return this;
  }

  finish(): Uint8Array {
    return new Uint8Array(this.#bytes);
  }
}

function valueInfo(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.dims) shape.message(1, new Writer().int(1, d)); // Dimension.dim_value
  const tensorType = new Writer().int(1, v.type ?? ONNX_FLOAT).message(2, shape);
  const type = new Writer().message(1, tensorType); // TypeProto.tensor_type
  return new Writer().string(1, v.name).message(2, type);
}

function initializer(t: Initializer): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.data instanceof BigInt64Array ? ONNX_INT64 : ONNX_FLOAT);
  w.string(8, t.name);
  // raw_data (field 9): little-endian bytes, which both typed arrays are on every host we run.
  return w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

function attribute(name: string, v: AttrValue): Writer {
  const w = new Writer().string(1, name);
  if (typeof v === "number") return w.int(3, v).int(20, 2); // INT
  if (typeof v === "string") return w.string(4, v).int(20, 3); // STRING
  if ("float" in v) return w.float(2, v.float).int(20, 1); // FLOAT
  if ("ints" in v) {
    for (const i of v.ints) w.int(8, i);
    return w.int(20, 7); // INTS
  }
  for (const f of v.floats) w.float(7, f);
  return w.int(20, 6); // FLOATS
}

function node(n: OnnxNode, index: number): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.op}_${index}`).string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

/**
 * Encodes a graph as an ONNX `ModelProto` (IR version 8, ai.onnx opset `graph.opset` plus
 * com.microsoft opset 1).
 *
 * @example
 * ```ts
 * const bytes = encodeModel({
 *   nodes: [{ op: "MatMul", inputs: ["a", "b"], outputs: ["c"] }],
 *   inputs: [{ name: "a", dims: [2, 3] }, { name: "b", dims: [3, 4] }],
 *   outputs: [{ name: "c", dims: [2, 4] }],
 * });
 * ```
 */
export function encodeModel(graph: OnnxGraph): Uint8Array {
  const g = new Writer();
  graph.nodes.forEach((n, i) => g.message(1, node(n, i)));
  g.string(2, "zoetrope_peer");
  for (const t of graph.initializers ?? []) g.message(5, initializer(t));
  for (const v of graph.inputs) g.message(11, valueInfo(v));
  for (const v of graph.outputs) g.message(12, valueInfo(v));
  const m = new Writer().int(1, 8).string(2, "zoetrope-bench");
  m.message(7, g);
  m.message(8, new Writer().string(1, "").int(2, graph.opset ?? 17));
  m.message(8, new Writer().string(1, "com.microsoft").int(2, 1));
  return m.finish();
}
