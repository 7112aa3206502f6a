/**
 * tfjs-webgpu as a peer: `@tensorflow/tfjs-core` with `@tensorflow/tfjs-backend-webgpu` on
 * Deno's built-in `navigator.gpu`. Each comparison uses the layout tfjs is built for (NHWC
 * convolution) and the ops a tfjs model would run: `matMul`, `fused.conv2d` (+ `add` for the
 * residual), matMul-softmax-matMul attention on head-major inputs, and a GroupNorm composed from
 * `moments` / `batchNorm`. Host-side layout changes and the attention scale are done before
 * upload and not timed.
 * @module
 */

import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
import type { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
import type { Comparison, HostInputs } from "./comparison.ts";
import { readFew } from "./measure.ts";
import { mergeHeads, type Peer, type PeerRun, scaled, splitHeads, transpose3 } from "./peer.ts";

const VERSION = "4.22.0";

/** NCHW -> NHWC. */
const toNhwc = (x: Float32Array, n: number, c: number, hw: number) => transpose3(x, n, c, hw);

/** OIHW -> HWIO (tfjs filter layout). */
function toHwio(w: Float32Array, cout: number, c: number, k: number): Float32Array {
  const khkwOI = transpose3(w, 1, cout * c, k * k); // [k*k, Cout, C]
  return transpose3(khkwOI, k * k, cout, c); // [k*k, C, Cout]
}

/** Builds the op sequence of a comparison; returns the forward function over uploaded inputs. */
function build(
  c: Comparison,
  h: HostInputs,
): { inputs: tf.Tensor[]; forward: () => tf.Tensor; toOurs: (y: Float32Array) => Float32Array } {
  const g = c.geometry;
  switch (g.op) {
    case "matmul": {
      const a = tf.tensor2d(h.a, [g.m, g.k]), b = tf.tensor2d(h.b, [g.k, g.n]);
      return { inputs: [a, b], forward: () => tf.matMul(a, b), toOurs: (y) => y };
    }
    case "conv2d": {
      const { n, c: ch, h: H, w: W, cout, kernel: k } = g;
      const x = tf.tensor4d(toNhwc(h.x, n, ch, H * W), [n, H, W, ch]);
      const filter = tf.tensor4d(toHwio(h.w, cout, ch, k), [k, k, ch, cout]);
      const bias = g.bias ? tf.tensor1d(h.bias) : undefined;
      const res = g.residual
        ? tf.tensor4d(toNhwc(h.residual, n, cout, H * W), [n, H, W, cout])
        : undefined;
      const pad = g.padding === (k - 1) / 2 ? "same" : g.padding;
      return {
        inputs: [x, filter, ...(bias ? [bias] : []), ...(res ? [res] : [])],
        forward: () =>
          tf.tidy(() => {
            const y = tf.fused.conv2d({ x, filter, bias, strides: 1, pad });
            return res ? tf.add(y, res) : y;
          }),
        toOurs: (y) => transpose3(y, n, H * W, cout),
      };
    }
    case "attention": {
      const batch = g.bh / g.heads;
      const split = (x: Float32Array, len: number) => splitHeads(x, batch, len, g.heads, g.d);
      const q = tf.tensor3d(split(scaled(h.q, 1 / Math.sqrt(g.d)), g.lq), [g.bh, g.lq, g.d]);
      const k = tf.tensor3d(split(h.k, g.lk), [g.bh, g.lk, g.d]);
      const v = tf.tensor3d(split(h.v, g.lk), [g.bh, g.lk, g.d]);
      return {
        inputs: [q, k, v],
        forward: () => tf.tidy(() => tf.matMul(tf.softmax(tf.matMul(q, k, false, true)), v)),
        toOurs: (y) => mergeHeads(y, batch, g.lq, g.heads, g.d),
      };
    }
    case "group_norm": {
      const { n, c: ch, groups } = g, hw = g.h * g.w;
      const x = tf.tensor3d(h.x, [n, groups, (ch / groups) * hw]);
      const gamma = tf.tensor3d(h.gamma, [1, ch, 1]), beta = tf.tensor3d(h.beta, [1, ch, 1]);
      return {
        inputs: [x, gamma, beta],
        forward: () =>
          tf.tidy(() => {
            const { mean, variance } = tf.moments(x, 2, true);
            const y = tf.batchNorm(x, mean, variance, undefined, undefined, g.eps);
            return tf.add(tf.mul(tf.reshape(y, [n, ch, hw]), gamma), beta);
          }),
        toOurs: (y) => y,
      };
    }
  }
}

/** Initialises tfjs on its WebGPU backend (its own device on the default adapter). */
export async function createTfjsPeer(): Promise<Peer> {
  await import("npm:@tensorflow/tfjs-backend-webgpu@4.22.0");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs: the webgpu backend did not start");
  await tf.ready();
  const backend = tf.backend() as unknown as WebGPUBackend;
  const device = backend.device;
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const bufferOf = (t: tf.Tensor): GPUBuffer => {
    const data = backend.tensorMap.get(t.dataId);
    const r = data?.resource;
    if (!r || !("mapAsync" in r)) throw new Error("tfjs: output is not in a GPU buffer");
    return r as GPUBuffer;
  };
  return {
    name: "tfjs",
    version: `@tensorflow/tfjs-backend-webgpu ${VERSION}`,
    adapter: info?.description || info?.vendor || "default adapter",
    variants: () => ["ops"],
    // deno-lint-ignore require-await
    async prepare(c: Comparison, inputs: HostInputs): Promise<PeerRun> {
      const { inputs: held, forward, toOurs } = build(c, inputs);
      let last: tf.Tensor | null = null;
      return {
        run() {
          const y = forward();
          last?.dispose();
          last = y;
        },
        async sync() {
          if (!last) throw new Error("tfjs: sync before run");
          // tfjs keeps a compute pass open between ops: close it before submitting, as its
          // own readback path does (finishing an encoder with an open pass invalidates it).
          backend.ensureCommandEncoderReady();
          backend.endComputePassEncoder();
          backend.submitQueue();
          await readFew(device as GPUDevice, bufferOf(last));
        },
        async output() {
          const y = forward();
          const data = (await y.data()) as Float32Array;
          y.dispose();
          return toOurs(data);
        },
        // deno-lint-ignore require-await
        async dispose() {
          last?.dispose();
          for (const t of held) t.dispose();
        },
      };
    },
    // deno-lint-ignore require-await
    async destroy() {
      tf.disposeVariables();
      tf.engine().reset();
    },
  };
}
