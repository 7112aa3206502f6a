/**
 * The loss curve of a training run: `loss.csv` (`step,loss,grad_norm,lr,seconds`) and a small PNG
 * plot of the raw and smoothed loss drawn here (a tiny built-in font for the labels).
 * @module
 */

import { encodePng } from "../output/png.ts";

/** Weight of the exponential smoothing of the loss (progress line and plot). */
export const SMOOTHING = 0.9;

/** The header of loss.csv. */
export const LOSS_HEADER = "step,loss,grad_norm,lr,seconds\n";

/** One loss.csv row. */
export function csvRow(r: LossRow): string {
  return `${r.step},${r.loss},${r.gradNorm},${r.lr},${r.seconds.toFixed(3)}\n`;
}

/** Reads loss.csv's rows (a resumed run keeps those up to its checkpoint). */
export async function readLossCsv(path: string): Promise<LossRow[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return [];
  }
  return text.split("\n").slice(1).filter((l) => l.trim()).map((l) => {
    const [step, loss, gradNorm, lr, seconds] = l.split(",").map(Number);
    return { step, loss, gradNorm, lr, seconds };
  });
}

/**
 * One row of loss.csv.
 *
 * @example
 * ```ts
 * const row: LossRow = { step: 1, loss: 0.12, gradNorm: 0.8, lr: 1e-4, seconds: 2.5 };
 * ```
 */
export interface LossRow {
  /** The step (1-based). */
  step: number;
  /** Its loss. */
  loss: number;
  /** The global gradient norm before clipping. */
  gradNorm: number;
  /** The learning rate of its update. */
  lr: number;
  /** Training time so far. */
  seconds: number;
}

/**
 * The losses smoothed by a debiased exponential moving average (TensorBoard's smoothing).
 *
 * @example
 * ```ts
 * smoothed([{ step: 1, loss: 1, gradNorm: 0, lr: 0, seconds: 0 }], 0.9); // [1]
 * ```
 */
export function smoothed(rows: readonly LossRow[], beta: number): number[] {
  let ema = 0;
  return rows.map((r, i) => {
    ema = beta * ema + (1 - beta) * r.loss;
    return ema / (1 - beta ** (i + 1));
  });
}

const PLOT = { width: 320, height: 160, left: 4, right: 4, top: 12, bottom: 12 };
const COLOURS = {
  background: [24, 24, 28],
  axis: [90, 90, 100],
  raw: [70, 110, 160],
  smooth: [255, 190, 60],
  text: [200, 200, 210],
} as const;
/** A 3x5 pixel font for the labels: each glyph is 5 rows of 3 bits. */
const GLYPHS: Record<string, number[]> = {
  "0": [7, 5, 5, 5, 7],
  "1": [2, 6, 2, 2, 7],
  "2": [7, 1, 7, 4, 7],
  "3": [7, 1, 7, 1, 7],
  "4": [5, 5, 7, 1, 1],
  "5": [7, 4, 7, 1, 7],
  "6": [7, 4, 7, 5, 7],
  "7": [7, 1, 1, 1, 1],
  "8": [7, 5, 7, 5, 7],
  "9": [7, 5, 7, 1, 7],
  ".": [0, 0, 0, 0, 2],
  "-": [0, 0, 7, 0, 0],
  "e": [0, 7, 7, 4, 7],
  " ": [0, 0, 0, 0, 0],
};

/**
 * A small PNG of the loss curve: raw losses (blue) and their smoothed line (amber) over the
 * steps, the largest and smallest loss written at the left, the last step at the bottom right.
 *
 * @example
 * ```ts
 * await Deno.writeFile("loss.png", encodeLossPlot(rows));
 * ```
 */
export function encodeLossPlot(rows: readonly LossRow[]): Uint8Array {
  const { width, height } = PLOT;
  const data = new Uint8ClampedArray(width * height * 4);
  const put = (x: number, y: number, c: readonly number[]) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = (Math.round(y) * width + Math.round(x)) * 4;
    data.set([c[0], c[1], c[2], 255], i);
  };
  for (let i = 0; i < width * height; i++) data.set([...COLOURS.background, 255], i * 4);
  const x0 = PLOT.left, x1 = width - PLOT.right, y0 = PLOT.top, y1 = height - PLOT.bottom;
  for (let x = x0; x <= x1; x++) put(x, y1, COLOURS.axis);
  for (let y = y0; y <= y1; y++) put(x0, y, COLOURS.axis);
  const text = (s: string, x: number, y: number) => {
    for (const ch of s) {
      (GLYPHS[ch] ?? GLYPHS[" "]).forEach((bits, r) => {
        for (let c = 0; c < 3; c++) if (bits & (4 >> c)) put(x + c, y + r, COLOURS.text);
      });
      x += 4;
    }
  };
  const finite = rows.filter((r) => Number.isFinite(r.loss));
  if (finite.length > 0) {
    const lo = Math.min(...finite.map((r) => r.loss)), hi = Math.max(...finite.map((r) => r.loss));
    const first = rows[0].step, last = rows.at(-1)!.step;
    const px = (step: number) =>
      x0 + 1 + (x1 - x0 - 1) * (last > first ? (step - first) / (last - first) : 0.5);
    const py = (v: number) => y1 - 1 - (y1 - y0 - 1) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
    const line = (values: number[], colour: readonly number[]) => {
      let prev: [number, number] | null = null;
      rows.forEach((r, i) => {
        if (!Number.isFinite(values[i])) return (prev = null), undefined;
        const p: [number, number] = [px(r.step), py(values[i])];
        const from = prev ?? p;
        const n = Math.max(
          1,
          Math.ceil(Math.max(Math.abs(p[0] - from[0]), Math.abs(p[1] - from[1]))),
        );
        for (let k = 0; k <= n; k++) {
          put(from[0] + (p[0] - from[0]) * k / n, from[1] + (p[1] - from[1]) * k / n, colour);
        }
        prev = p;
      });
    };
    line(rows.map((r) => r.loss), COLOURS.raw);
    line(smoothed(rows, SMOOTHING), COLOURS.smooth);
    text(hi.toPrecision(3), x0 + 2, 2);
    text(lo.toPrecision(3), x0 + 2, height - 7);
    const steps = String(last);
    text(steps, x1 - 4 * steps.length, height - 7);
  }
  return encodePng({ data, width, height });
}
