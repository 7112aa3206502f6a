import {
  conv2dWinograd,
  setWinogradChunkOverride,
  winogradFits,
  winogradWeights,
} from "../../kernels/winograd.ts";
import { conv2dCpu } from "../../kernels/conv2d_cpu.ts";
import { assert, assertClose, randomArray } from "../assert.ts";
import { countDispatches, gpuTest } from "../gpu.ts";

// Winograd F(2x2, 3x3) against the direct CPU convolution: f32, the conv2d tests' tolerance.
const TOL = { atol: 1e-4, rtol: 1e-4 };

/** [N, C, H, W, Cout], bias, residual. */
const CASES: [number[], boolean, boolean][] = [
  [[2, 8, 5, 7, 12], true, true], // odd sides: the last tiles are half outside
  [[3, 4, 8, 8, 5], false, false], // Cout not a multiple of 4, no bias
  [[8, 16, 2, 2, 8], true, false], // one tile per image (a UNet's 2 x 2 level)
  [[6, 12, 1, 1, 8], true, true], // 1 x 1 images: centre taps only
  [[1, 4, 1, 9, 4], true, false], // one row
];

gpuTest("winograd: conv2d 3x3 matches the direct CPU convolution, chunked tiles", async (gpu) => {
  for (const chunk of [null, 4, 12]) {
    setWinogradChunkOverride(chunk);
    try {
      for (const [[N, C, H, W, Cout], hasBias, hasRes] of CASES) {
        const seed = N * 1000 + C * 10 + H;
        const xs = randomArray(N * C * H * W, seed);
        const ws = randomArray(Cout * C * 9, seed + 1).map((v) => v / Math.sqrt(C * 9));
        const bs = hasBias ? randomArray(Cout, seed + 2) : undefined;
        const rs = hasRes ? randomArray(N * Cout * H * W, seed + 3) : undefined;
        const x = gpu.upload(xs, [N, C, H, W]);
        const u = gpu.upload(winogradWeights(ws, Cout, C), [16, Cout, C]);
        const bias = bs && gpu.upload(bs, [Cout]);
        const residual = rs && gpu.upload(rs, [N, Cout, H, W]);
        const ran = await countDispatches(gpu, async () => {
          const y = conv2dWinograd(gpu, x, u, { bias, residual });
          const want = conv2dCpu(xs, ws, {
            xShape: [N, C, H, W],
            wShape: [Cout, C, 3, 3],
            bias: bs,
            residual: rs,
          });
          assertClose(await gpu.read(y), want, {
            ...TOL,
            msg: `[${N}, ${C}, ${H}, ${W}] ${chunk}`,
          });
          y.release();
        });
        const kinds = [...ran.keys()].map((k) => k.split(":")[0]);
        const centre = H === 1 && W === 1 && Cout % 4 === 0;
        assert(
          centre ? kinds.includes("winograd_centre") : kinds.includes("winograd_input"),
          `${[N, C, H, W]}: ${kinds}`,
        );
        if (!centre && chunk === 4) {
          // Tiles (N * ceil(H/2) * ceil(W/2)) in chunks of 4: one input transform per chunk.
          const tiles = N * Math.ceil(H / 2) * Math.ceil(W / 2);
          assert(ran.get("winograd_input:") === Math.ceil(tiles / 4), `${[...ran]}`);
        }
        for (const t of [x, u, bias, residual]) t?.release();
      }
    } finally {
      setWinogradChunkOverride(null);
    }
  }
});

gpuTest("winograd: filters larger than one binding run in runs of points", async (gpu) => {
  // [16, 32, 32] f32 filters are 64 KiB: a 40 KiB binding limit splits the 16 GEMMs into runs,
  // and the centre taps of 1 x 1 images read a 6-point window.
  gpu.setLimits({ maxStorageBufferBindingSize: 40 * 1024, minStorageBufferOffsetAlignment: 256 });
  try {
    for (const [N, H, W] of [[2, 4, 4], [3, 1, 1]]) {
      const C = 32, Cout = 32;
      const xs = randomArray(N * C * H * W, 21 + H);
      const ws = randomArray(Cout * C * 9, 22).map((v) => v / Math.sqrt(C * 9));
      const x = gpu.upload(xs, [N, C, H, W]);
      const u = gpu.upload(winogradWeights(ws, Cout, C), [16, Cout, C]);
      const ran = await countDispatches(gpu, async () => {
        const y = conv2dWinograd(gpu, x, u);
        const want = conv2dCpu(xs, ws, { xShape: [N, C, H, W], wShape: [Cout, C, 3, 3] });
        assertClose(await gpu.read(y), want, { ...TOL, msg: `${H} x ${W}` });
        y.release();
      });
      const gemms = [...ran].filter(([k]) => k.startsWith("gemm_direct:"))
        .reduce((n, [, c]) => n + c, 0);
      assert(H === 1 ? gemms === 1 : gemms >= 2, `${H} x ${W}: ${[...ran]}`);
      x.release();
      u.release();
    }
  } finally {
    gpu.setLimits();
  }
});

gpuTest("winograd: shape and dtype errors name the op", (gpu) => {
  const x = gpu.upload(randomArray(2 * 6 * 4 * 4), [2, 6, 4, 4]);
  const u = gpu.upload(randomArray(16 * 4 * 6), [16, 4, 6]);
  let msg = "";
  try {
    conv2dWinograd(gpu, x, u);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg.startsWith("conv2d (winograd): expected f32 x [N, C, H, W]"), msg);
  x.release();
  u.release();
});

Deno.test("winograd: which convolutions fit", () => {
  assert(winogradFits({ kh: 3, kw: 3, stride: 1, padding: 1, cin: 320 }), "3x3 same");
  assert(!winogradFits({ kh: 3, kw: 3, stride: 2, padding: 1, cin: 320 }), "stride 2");
  assert(!winogradFits({ kh: 1, kw: 1, stride: 1, padding: 0, cin: 320 }), "1x1");
  assert(!winogradFits({ kh: 3, kw: 3, stride: 1, padding: 1, cin: 3 }), "C % 4");
});

Deno.test("winogradWeights: the centre tap is U5 - U6 - U9 + U10, corners are kept", () => {
  const w = randomArray(2 * 3 * 9, 5);
  const u = winogradWeights(w, 2, 3);
  const plane = 6;
  for (let f = 0; f < plane; f++) {
    const at = (xi: number) => u[xi * plane + f];
    const close = (a: number, b: number) => Math.abs(a - b) < 1e-6;
    assert(close(at(5) - at(6) - at(9) + at(10), w[f * 9 + 4]), `centre of ${f}`);
    assert(at(0) === w[f * 9] && at(3) === w[f * 9 + 2], `top corners of ${f}`);
    assert(at(12) === w[f * 9 + 6] && at(15) === w[f * 9 + 8], `bottom corners of ${f}`);
  }
});
