/**
 * Debug fill: writes a 32-bit pattern over a whole buffer. Tests turn on `Gpu.poison` so every
 * freshly allocated tensor starts as NaN and a kernel that skips an output element is caught.
 * @module
 */

import { defineKernel, grid1d, Params } from "./kernel.ts";

/** NaN in both f32 and (as two halves) f16. */
export const NAN_PATTERN = 0x7fc07fc0;

/** Fills `n` u32 words with `p.value`. Bindings: 1 = buffer (u32 words). */
export const fillKernel = defineKernel("fill_u32", () => /* wgsl */ `
struct Params { n: u32, value: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < p.n) { buf[i] = p.value; }
}`);

/** Uniform params and grid for filling `words` u32 words with `value`. */
export function fillLaunch(words: number, value: number): {
  params: Params;
  groups: [number, number, number];
} {
  return {
    params: new Params().u32(words).u32(value >>> 0),
    groups: grid1d(Math.ceil(words / 256)),
  };
}
