import { roundToF16 } from "../../kernels/gpu/half.ts";
import { addPositionEncoding, timestepEmbedding, tokenEmbedding } from "../../kernels/embedding.ts";
import {
  addPositionEncodingCpu,
  sinusoidalPositionEncodingCpu,
  timestepEmbeddingCpu,
  tokenEmbeddingCpu,
} from "../../kernels/embedding_cpu.ts";
import { assertClose, assertEquals, assertRejects, randomArray } from "../assert.ts";
import { gpuTest } from "../gpu.ts";
import { caseIds, cases, caseTimesteps } from "./embedding_cases.ts";

// Tolerances: timestep embedding f32 atol 1e-6 (own range reduction; arguments up to ~1000 rad),
// f16 atol 1e-3 (output rounding); lookups / adds: f32 atol 1e-6 rtol 1e-6, f16 2e-3.
const host = (v: Float32Array, dtype: string) => dtype === "f16" ? roundToF16(v) : v;

for (const k of cases.filter((k) => k.scale !== "full")) {
  gpuTest({
    name: `${k.op} ${k.dtype} [${k.shape}] ${k.scale} (${k.note})`,
    f16: k.dtype === "f16",
  }, async (gpu) => {
    const f16 = k.dtype === "f16";
    if (k.op === "timestep_embedding") {
      const [b, dim] = k.shape;
      const ts = caseTimesteps(b);
      for (const flipSinToCos of [true, false]) {
        for (const freqShift of [0, 1]) {
          const y = timestepEmbedding(gpu, ts, dim, { flipSinToCos, freqShift, dtype: k.dtype });
          assertEquals(y.shape, [b, dim]);
          const want = timestepEmbeddingCpu(ts, dim, { flipSinToCos, freqShift });
          assertClose(await gpu.read(y), want, {
            atol: f16 ? 1e-3 : 1e-6,
            rtol: 0,
            msg: `flip ${flipSinToCos} shift ${freqShift}`,
          });
          y.release();
        }
      }
    } else if (k.op === "token_embedding") {
      const [b, l, v, d] = k.shape;
      const toks = host(randomArray(v * d, 131), k.dtype);
      const poss = host(randomArray(l * d, 132), k.dtype);
      const tok = gpu.upload(toks, [v, d], k.dtype), pos = gpu.upload(poss, [l, d], k.dtype);
      const ids = caseIds(b * l, v);
      ids[0] = v - 1;
      const y = tokenEmbedding(gpu, ids, b, tok, pos);
      assertEquals(y.shape, [b, l, d]);
      const want = tokenEmbeddingCpu(ids, b, toks, poss, d);
      assertClose(await gpu.read(y), want, { atol: f16 ? 2e-3 : 1e-6, rtol: f16 ? 2e-3 : 1e-6 });
      for (const t of [tok, pos, y]) t.release();
    } else {
      const [b, f, c, maxLen] = k.shape;
      const xs = host(randomArray(b * f * c, 133), k.dtype);
      const pes = host(randomArray(maxLen * c, 134), k.dtype);
      const x = gpu.upload(xs, [b, f, c], k.dtype), pe = gpu.upload(pes, [1, maxLen, c], k.dtype);
      const y = addPositionEncoding(gpu, x, pe);
      const want = addPositionEncodingCpu(xs, [b, f, c], pes);
      assertClose(await gpu.read(y), want, { atol: f16 ? 2e-3 : 1e-6, rtol: f16 ? 2e-3 : 1e-6 });
      for (const t of [x, pe, y]) t.release();
    }
  });
}

gpuTest(
  "timestep_embedding: odd dim pads a zero column; known values at t = 0 and 981",
  async (gpu) => {
    const y = timestepEmbedding(gpu, [0, 981], 5, {
      flipSinToCos: false,
      freqShift: 1,
      dtype: "f32",
    });
    const got = await gpu.read(y);
    // half = 2, freqs = [1, exp(-ln(1e4) / 1)] = [1, 1e-4]; row 0: sin 0, sin 0, cos 0, cos 0, pad.
    const a = Math.fround(981 * Math.fround(1e-4));
    assertClose(got, [0, 0, 1, 1, 0, Math.sin(981), Math.sin(a), Math.cos(981), Math.cos(a), 0], {
      atol: 1e-6,
      rtol: 0,
    });
    y.release();
  },
);

gpuTest(
  "add_position_encoding: a 2-D sinusoidal table and fewer frames than maxLen",
  async (gpu) => {
    const pes = sinusoidalPositionEncodingCpu(24, 6);
    const xs = randomArray(2 * 5 * 6, 135);
    const x = gpu.upload(xs, [2, 5, 6], "f32"), pe = gpu.upload(pes, [24, 6], "f32");
    const y = addPositionEncoding(gpu, x, pe);
    assertClose(await gpu.read(y), addPositionEncodingCpu(xs, [2, 5, 6], pes), {
      atol: 1e-6,
      rtol: 1e-6,
    });
    // p = 1, channel 0: sin(1); channel 1: cos(1).
    assertClose([pes[6], pes[7]], [Math.sin(1), Math.cos(1)], { atol: 1e-7, rtol: 0 });
    for (const t of [x, pe, y]) t.release();
  },
);

gpuTest("embedding: errors name the op and shapes", async (gpu) => {
  const tok = gpu.upload(randomArray(40), [10, 4], "f32");
  const pos = gpu.upload(randomArray(12), [3, 4], "f32");
  await assertRejects(
    () => tokenEmbedding(gpu, Int32Array.from([1, 10, 2]), 1, tok, pos),
    /token_embedding: id 10 at 1 is outside the vocabulary \[0, 10\)/,
  );
  await assertRejects(
    () => tokenEmbedding(gpu, Int32Array.from([1, -1]), 1, tok, pos),
    /token_embedding: id -1 at 1/,
  );
  await assertRejects(
    () => tokenEmbedding(gpu, new Int32Array(8), 2, tok, pos),
    /token_embedding: expected ids \[2, L\] with 1 <= L <= 3, got 8 ids/,
  );
  const x = gpu.upload(randomArray(2 * 5 * 4), [2, 5, 4], "f32");
  await assertRejects(
    () => addPositionEncoding(gpu, x, pos),
    /add_position_encoding: 5 frames exceed the position encoding's 3/,
  );
  await assertRejects(
    () => addPositionEncoding(gpu, x, tok.reshape([40])),
    /add_position_encoding: expected x \[B, F, C\] and pe \[1, maxLen, C\]/,
  );
  await assertRejects(
    () => timestepEmbedding(gpu, [], 8, { flipSinToCos: true, freqShift: 0, dtype: "f32" }),
    /timestep_embedding: expected 1\+ finite timesteps/,
  );
  for (const t of [tok, pos, x]) t.release();
});
