import { addProduct } from "../../weights/lowrank.ts";
import { assertClose, randomArray } from "../assert.ts";

Deno.test("addProduct: out += factor * a @ b equals the plain triple loop", () => {
  const rows = 7, rank = 3, cols = 11, factor = -0.75;
  const a = randomArray(rows * rank, 1), b = randomArray(rank * cols, 2);
  const base = randomArray(rows * cols, 3);
  const want = base.slice();
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let k = 0; k < rank; k++) acc += a[i * rank + k] * b[k * cols + j];
      want[i * cols + j] += factor * acc;
    }
  }
  assertClose(addProduct(base.slice(), a, b, { rank, factor }), want, { atol: 1e-6, rtol: 1e-6 });
});
