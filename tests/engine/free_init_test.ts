/**
 * FreeInit against ../shared/fixtures/phase2-tiny (`freeinit.*`): the four filter settings, the
 * spectral mix against a plain direct-DFT re-implementation, and a whole two-pass guided DDIM run
 * through generate's own path; then fast sampling's step counts, the box filter against
 * FreeInit's formula, and one-line errors.
 */

import { assert, assertEquals, assertRejects, assertRelClose } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import {
  FREE_INIT_DEFAULTS,
  freeInitFilter,
  freeInitMix,
  resolveFreeInit,
} from "../../engine/free_init.ts";
import {
  assertRunMatches,
  phase2,
  phase2Pipeline,
  phase2Request,
  phase2Settings,
} from "./phase2.ts";

interface DiffusersFilter {
  method: "butterworth" | "gaussian" | "ideal";
  order: number;
  spatial_stop_frequency: number;
  temporal_stop_frequency: number;
}

const asOptions = (f: DiffusersFilter) => ({
  method: f.method,
  order: f.order,
  spatialStop: f.spatial_stop_frequency,
  temporalStop: f.temporal_stop_frequency,
});

Deno.test("FreeInit filters match diffusers' _get_free_init_freq_filter (4 settings)", async () => {
  const s = await phase2Settings("freeinit");
  const main = s.enable_free_init as Record<string, number | string>;
  const cases: [DiffusersFilter, string][] = [
    [main as unknown as DiffusersFilter, "freeinit.filter"],
    ...(s.extra_filters as DiffusersFilter[]).map((f, j) =>
      [f, `freeinit.extra_filter${j}`] as [DiffusersFilter, string]
    ),
  ];
  for (const [f, name] of cases) {
    const mask = freeInitFilter([8, 8, 8], asOptions(f));
    const gold = await phase2(name); // [1, 4, 8, 8, 8]: the same filter for every channel
    for (let c = 0; c < 4; c++) {
      assertRelClose(mask, gold.subarray(c * 512, (c + 1) * 512), 1e-6, `${name} channel ${c}`);
    }
  }
});

Deno.test("FreeInit box filter is FreeInit's centred box; stop 0 gives an all-zero filter", () => {
  const mask = freeInitFilter([4, 8, 8], {
    method: "box",
    order: 4,
    spatialStop: 0.5,
    temporalStop: 0.5,
  });
  // threshold_s = round(4 * 0.5) = 2, threshold_t = round(2 * 0.5) = 1: frames [1, 3), rows and
  // columns [2, 6).
  for (let t = 0; t < 4; t++) {
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const inside = t >= 1 && t < 3 && y >= 2 && y < 6 && x >= 2 && x < 6;
        assertEquals(mask[(t * 8 + y) * 8 + x], inside ? 1 : 0, `(${t}, ${y}, ${x})`);
      }
    }
  }
  const zero = freeInitFilter([4, 8, 8], { ...FREE_INIT_DEFAULTS, spatialStop: 0 });
  assert(zero.every((v) => v === 0));
});

Deno.test("FreeInit mix equals a direct 3-D DFT re-implementation (odd and even sizes)", () => {
  const [T, H, W] = [3, 4, 5], size = T * H * W;
  const rnd = (seed: number) =>
    Float32Array.from({ length: 2 * size }, (_, i) => Math.sin(seed * 97 + i * 1.7));
  const low = rnd(1), high = rnd(2);
  const mask = freeInitFilter([T, H, W], FREE_INIT_DEFAULTS);
  const got = freeInitMix(low, high, mask, 2, [T, H, W]);
  // fftshift then mask then ifftshift == mask rolled by floor(n/2) in the unshifted spectrum.
  const dft = (x: Float32Array, o: number) => {
    const re = new Float64Array(size), im = new Float64Array(size);
    for (let u = 0; u < T; u++) {
      for (let v = 0; v < H; v++) {
        for (let w = 0; w < W; w++) {
          let ar = 0, ai = 0;
          for (let t = 0; t < T; t++) {
            for (let y = 0; y < H; y++) {
              for (let xx = 0; xx < W; xx++) {
                const ph = -2 * Math.PI * (u * t / T + v * y / H + w * xx / W);
                const val = x[o + (t * H + y) * W + xx];
                ar += val * Math.cos(ph);
                ai += val * Math.sin(ph);
              }
            }
          }
          re[(u * H + v) * W + w] = ar;
          im[(u * H + v) * W + w] = ai;
        }
      }
    }
    return [re, im];
  };
  for (let k = 0; k < 2; k++) {
    const [lr, li] = dft(low, k * size), [hr, hi] = dft(high, k * size);
    const want = new Float32Array(size);
    for (let t = 0; t < T; t++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          let acc = 0;
          for (let u = 0; u < T; u++) {
            for (let v = 0; v < H; v++) {
              for (let w = 0; w < W; w++) {
                const i = (u * H + v) * W + w;
                const su = (u + Math.floor(T / 2)) % T, sv = (v + Math.floor(H / 2)) % H;
                const sw = (w + Math.floor(W / 2)) % W;
                const m = mask[(su * H + sv) * W + sw];
                const re = lr[i] * m + hr[i] * (1 - m), im = li[i] * m + hi[i] * (1 - m);
                const ph = 2 * Math.PI * (u * t / T + v * y / H + w * x / W);
                acc += re * Math.cos(ph) - im * Math.sin(ph);
              }
            }
          }
          want[(t * H + y) * W + x] = acc / size;
        }
      }
    }
    assertRelClose(got.subarray(k * size, (k + 1) * size), want, 1e-5, `video-channel ${k}`);
  }
});

Deno.test("FreeInit settings: defaults are diffusers'; bad values are one-line errors", () => {
  assertEquals(resolveFreeInit({}), FREE_INIT_DEFAULTS);
  assertEquals(FREE_INIT_DEFAULTS.iterations, 3);
  for (
    const [o, re] of [
      [
        { method: "median" },
        /^freeInit\.method must be one of butterworth, gaussian, ideal, box, got "median"$/,
      ],
      [{ iterations: 0 }, /^freeInit\.iterations must be an integer from 1 to 10, got 0$/],
      [{ spatialStop: 2 }, /^freeInit\.spatialStop must be a number from 0 to 1, got 2$/],
      [{ fastSampling: "yes" }, /^freeInit\.fastSampling must be true or false/],
      [{ iters: 2 }, /^freeInit\.iters: unknown field/],
      [3, /^freeInit must be an object/],
    ] as const
  ) {
    let err: Error | null = null;
    try {
      resolveFreeInit(o);
    } catch (e) {
      err = e as Error;
    }
    assert(err !== null && re.test(err.message), `${JSON.stringify(o)}: ${err}`);
  }
});

gpuTest("FreeInit: a whole two-pass guided DDIM run matches the phase-2 fixture", async () => {
  const s = await phase2Settings("freeinit");
  const fi = s.enable_free_init as Record<string, unknown>;
  const pipe = await phase2Pipeline();
  try {
    const request = {
      ...phase2Request(s),
      seed: s.generator_seed as number,
      freeInit: {
        iterations: fi.num_iters as number,
        method: fi.method as "butterworth",
        order: fi.order as number,
        spatialStop: fi.spatial_stop_frequency as number,
        temporalStop: fi.temporal_stop_frequency as number,
        fastSampling: fi.use_fast_sampling as boolean,
      },
    };
    const steps: Float32Array[] = [];
    const latents = await pipe.generateLatents(request, {
      initialLatents: await phase2("freeinit.latents_init"),
      onStepLatents: (_, l) => steps.push(l),
    });
    assertEquals(steps.length, 8, "two passes of four steps");
    await assertRunMatches(pipe, { latents, steps, frames: request.frames }, "freeinit");
    // Fast sampling: 3 passes of 6 steps take 2, 4 and 6 steps.
    const fast: number[] = [];
    await pipe.generateLatents(
      { ...request, steps: 6, freeInit: { iterations: 3, fastSampling: true, method: "box" } },
      { onStepLatents: (i) => fast.push(i) },
    );
    assertEquals(fast.length, 12);
    await assertRejects(
      () =>
        pipe.generateLatents({
          ...request,
          steps: 2,
          freeInit: { iterations: 3, fastSampling: true },
        }),
      /^freeInit\.fastSampling needs at least one step per pass: steps 2 < iterations 3$/,
    );
  } finally {
    pipe.dispose();
  }
});
