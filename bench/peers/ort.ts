/**
 * onnxruntime-web's WebGPU execution provider as a peer. Each comparison is a tiny ONNX graph
 * built in memory (./onnx.ts); weights are initializers, activations are graph inputs bound to
 * GPU buffers on ORT's own device, and the output is pre-bound to a GPU buffer, so a run does no
 * host transfers. CPU fallback is disabled: a node the WebGPU EP cannot take makes that variant
 * fail instead of silently running on the CPU.
 * @module
 */

import * as ort from "npm:onnxruntime-web@1.30.0/webgpu";
import type { Comparison, HostInputs } from "./comparison.ts";
import { readFew } from "./measure.ts";
import { encodeModel, type Initializer, type OnnxGraph, type ValueInfo } from "./onnx.ts";
import { mergeHeads, type Peer, type PeerRun, scaled, splitHeads } from "./peer.ts";

const VERSION = "1.30.0";

/** A graph plus the host data of its graph inputs and a converter of its output. */
interface Built {
  graph: OnnxGraph;
  feeds: Record<string, Float32Array>;
  toOurs: (y: Float32Array) => Float32Array;
}

const f32 = (name: string, dims: number[], data: Float32Array): Initializer => ({
  name,
  dims,
  data,
});
const i64 = (name: string, values: number[]): Initializer => ({
  name,
  dims: [values.length],
  data: BigInt64Array.from(values.map(BigInt)),
});
const io = (name: string, dims: number[]): ValueInfo => ({ name, dims });

function build(c: Comparison, h: HostInputs, variant: string): Built {
  const g = c.geometry;
  const same = (y: Float32Array) => y;
  switch (g.op) {
    case "matmul":
      return {
        graph: {
          nodes: [{ op: "MatMul", inputs: ["a", "b"], outputs: ["y"] }],
          inputs: [io("a", [g.m, g.k])],
          outputs: [io("y", [g.m, g.n])],
          initializers: [f32("b", [g.k, g.n], h.b)],
        },
        feeds: { a: h.a },
        toOurs: same,
      };
    case "conv2d": {
      const { n, c: ch, h: H, w: W, cout, kernel: k, padding: p } = g;
      const convOut = g.residual ? "conv" : "y";
      const inits = [f32("w", [cout, ch, k, k], h.w)];
      if (g.bias) inits.push(f32("bias", [cout], h.bias));
      const nodes: OnnxGraph["nodes"][number][] = [{
        op: "Conv",
        inputs: g.bias ? ["x", "w", "bias"] : ["x", "w"],
        outputs: [convOut],
        attrs: { kernel_shape: { ints: [k, k] }, pads: { ints: [p, p, p, p] } },
      }];
      const inputs = [io("x", [n, ch, H, W])];
      const feeds: Record<string, Float32Array> = { x: h.x };
      if (g.residual) {
        nodes.push({ op: "Add", inputs: [convOut, "res"], outputs: ["y"] });
        inputs.push(io("res", [n, cout, H, W]));
        feeds.res = h.residual;
      }
      return {
        graph: { nodes, inputs, outputs: [io("y", [n, cout, H, W])], initializers: inits },
        feeds,
        toOurs: same,
      };
    }
    case "attention": {
      const batch = g.bh / g.heads, width = g.heads * g.d;
      if (variant === "MultiHeadAttention") {
        return {
          graph: {
            nodes: [{
              op: "MultiHeadAttention",
              domain: "com.microsoft",
              inputs: ["q", "k", "v"],
              outputs: ["y"],
              attrs: { num_heads: g.heads },
            }],
            inputs: [
              io("q", [batch, g.lq, width]),
              io("k", [batch, g.lk, width]),
              io("v", [
                batch,
                g.lk,
                width,
              ]),
            ],
            outputs: [io("y", [batch, g.lq, width])],
          },
          feeds: { q: h.q, k: h.k, v: h.v },
          toOurs: same,
        };
      }
      // MatMul-Softmax-MatMul on head-major inputs, q pre-scaled, k pre-transposed (host side).
      const split = (x: Float32Array, len: number) => splitHeads(x, batch, len, g.heads, g.d);
      const kT = new Float32Array(h.k.length);
      const ks = split(h.k, g.lk);
      for (let b = 0; b < g.bh; b++) {
        for (let l = 0; l < g.lk; l++) {
          for (let e = 0; e < g.d; e++) kT[(b * g.d + e) * g.lk + l] = ks[(b * g.lk + l) * g.d + e];
        }
      }
      return {
        graph: {
          nodes: [
            { op: "MatMul", inputs: ["q", "kT"], outputs: ["s"] },
            { op: "Softmax", inputs: ["s"], outputs: ["p"], attrs: { axis: -1 } },
            { op: "MatMul", inputs: ["p", "v"], outputs: ["y"] },
          ],
          inputs: [
            io("q", [g.bh, g.lq, g.d]),
            io("kT", [g.bh, g.d, g.lk]),
            io("v", [
              g.bh,
              g.lk,
              g.d,
            ]),
          ],
          outputs: [io("y", [g.bh, g.lq, g.d])],
        },
        feeds: { q: split(scaled(h.q, 1 / Math.sqrt(g.d)), g.lq), kT, v: split(h.v, g.lk) },
        toOurs: (y) => mergeHeads(y, batch, g.lq, g.heads, g.d),
      };
    }
    case "group_norm": {
      const { n, c: ch, h: H, w: W, groups, eps } = g;
      const xShape = [n, ch, H, W];
      if (variant === "GroupNormalization-21") {
        return {
          graph: {
            opset: 21,
            nodes: [{
              op: "GroupNormalization",
              inputs: ["x", "gamma", "beta"],
              outputs: ["y"],
              attrs: { num_groups: groups, epsilon: { float: eps } },
            }],
            inputs: [io("x", xShape)],
            outputs: [io("y", xShape)],
            initializers: [f32("gamma", [ch], h.gamma), f32("beta", [ch], h.beta)],
          },
          feeds: { x: h.x },
          toOurs: same,
        };
      }
      // What torch.onnx exports for nn.GroupNorm: Reshape, InstanceNormalization, Reshape, affine.
      return {
        graph: {
          nodes: [
            { op: "Reshape", inputs: ["x", "grouped"], outputs: ["xg"] },
            {
              op: "InstanceNormalization",
              inputs: ["xg", "ones", "zeros"],
              outputs: ["ng"],
              attrs: { epsilon: { float: eps } },
            },
            { op: "Reshape", inputs: ["ng", "shape"], outputs: ["nx"] },
            { op: "Mul", inputs: ["nx", "gamma"], outputs: ["sx"] },
            { op: "Add", inputs: ["sx", "beta"], outputs: ["y"] },
          ],
          inputs: [io("x", xShape)],
          outputs: [io("y", xShape)],
          initializers: [
            i64("grouped", [n, groups, -1]),
            i64("shape", xShape),
            f32("ones", [groups], new Float32Array(groups).fill(1)),
            f32("zeros", [groups], new Float32Array(groups)),
            f32("gamma", [ch, 1, 1], h.gamma),
            f32("beta", [ch, 1, 1], h.beta),
          ],
        },
        feeds: { x: h.x },
        toOurs: same,
      };
    }
  }
}

const BUFFER_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function gpuBuffer(device: GPUDevice, data: Float32Array | number, label: string): GPUBuffer {
  const bytes = typeof data === "number" ? data * 4 : data.byteLength;
  const size = Math.max(16, Math.ceil(bytes / 16) * 16);
  const buffer = device.createBuffer({ size, usage: BUFFER_USAGE, label, mappedAtCreation: true });
  if (typeof data !== "number") new Float32Array(buffer.getMappedRange(0, bytes)).set(data);
  buffer.unmap();
  return buffer;
}

async function readAll(device: GPUDevice, buffer: GPUBuffer, count: number): Promise<Float32Array> {
  const staging = device.createBuffer({
    size: buffer.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0, count * 4));
  staging.unmap();
  staging.destroy();
  return out;
}

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  executionProviders: ["webgpu"],
  graphOptimizationLevel: "all",
  preferredOutputLocation: "gpu-buffer",
  // Fatal only: a variant the EP cannot place is reported in the table, not on stderr.
  logSeverityLevel: 4,
  extra: { session: { disable_cpu_ep_fallback: "1" } },
};

/** Initialises onnxruntime-web (its WebGPU EP creates its own device on the default adapter). */
export async function createOrtPeer(): Promise<Peer> {
  ort.env.logLevel = "error";
  // The wasm binary sits beside the bundle in Deno's npm cache; the bundle finds it by its own
  // import.meta.url, so wasmPaths stays unset. One thread: the threaded build needs workers that
  // load the bundle again, and the WebGPU EP does not use them for GPU work.
  ort.env.wasm.numThreads = 1;
  // A first session brings up the backend, so that env.webgpu.device exists.
  const warm = await ort.InferenceSession.create(
    encodeModel(
      build(
        {
          label: "init",
          geometry: { op: "matmul", m: 1, k: 4, n: 4 },
          ours: null as never,
        },
        { a: new Float32Array(4), b: new Float32Array(16) },
        "",
      ).graph,
    ),
    SESSION_OPTIONS,
  );
  // Keep it open: the EP destroys its device when its last session is released.
  const device = await ort.env.webgpu.device as GPUDevice;
  const ai = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return {
    name: "ort",
    version: `onnxruntime-web ${VERSION} (webgpu EP)`,
    adapter: ai?.description || ai?.vendor || "default adapter",
    variants(c) {
      switch (c.geometry.op) {
        case "attention":
          return ["MultiHeadAttention", "MatMul-Softmax-MatMul"];
        case "group_norm":
          return ["GroupNormalization-21", "InstanceNormalization"];
        default:
          return [c.geometry.op === "matmul" ? "MatMul" : "Conv"];
      }
    },
    async prepare(c: Comparison, inputs: HostInputs, variant: string): Promise<PeerRun> {
      const built = build(c, inputs, variant);
      const session = await ort.InferenceSession.create(encodeModel(built.graph), SESSION_OPTIONS);
      const buffers: GPUBuffer[] = [];
      const feeds: Record<string, ort.Tensor> = {};
      for (const v of built.graph.inputs) {
        const b = gpuBuffer(device, built.feeds[v.name], `ort ${v.name}`);
        buffers.push(b);
        feeds[v.name] = ort.Tensor.fromGpuBuffer(b, { dataType: "float32", dims: v.dims });
      }
      const outInfo = built.graph.outputs[0];
      const count = outInfo.dims.reduce((a, b) => a * b, 1);
      const outBuffer = gpuBuffer(device, count, "ort y");
      buffers.push(outBuffer);
      const fetches = {
        [outInfo.name]: ort.Tensor.fromGpuBuffer(outBuffer, {
          dataType: "float32",
          dims: outInfo.dims,
        }),
      };
      return {
        async run() {
          await session.run(feeds, fetches);
        },
        sync: () => readFew(device, outBuffer),
        async output() {
          await session.run(feeds, fetches);
          return built.toOurs(await readAll(device, outBuffer, count));
        },
        async dispose() {
          await session.release();
          for (const b of buffers) b.destroy();
        },
      };
    },
    async destroy() {
      await warm.release();
    },
  };
}
