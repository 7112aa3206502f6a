/**
 * Minimal types for the parts of the `gifenc` npm package (1.0.x, untyped CommonJS) that
 * engine/output/gif.ts uses. Shapes follow the package's README and src/index.js.
 * @module
 */

/** A palette: up to 256 `[r, g, b]` (or `[r, g, b, a]`) byte triples. */
export type GifencPalette = number[][];

/** Pixel formats the quantizer and palette mapper understand. */
export type GifencFormat = "rgb565" | "rgb444" | "rgba4444";

/** Per-frame options of `GIFEncoder().writeFrame`. */
export interface GifencFrameOptions {
  /** Colour table; on the first frame it becomes the global table, later a local one. */
  palette?: GifencPalette;
  /** Delay in milliseconds; gifenc writes `Math.round(delay / 10)` centiseconds. */
  delay?: number;
  /** -1 = no NETSCAPE block (play once), 0 = forever, n = NETSCAPE loop count n. */
  repeat?: number;
  transparent?: boolean;
  transparentIndex?: number;
  /** Disposal method override, -1 = default. */
  dispose?: number;
  colorDepth?: number;
  first?: boolean;
}

/** The streaming encoder object returned by `GIFEncoder()`. */
export interface GifencEncoder {
  writeFrame(
    index: Uint8Array,
    width: number,
    height: number,
    opts?: GifencFrameOptions,
  ): void;
  finish(): void;
  bytes(): Uint8Array;
  bytesView(): Uint8Array;
  reset(): void;
}

/** The CommonJS `module.exports` of gifenc. */
export interface Gifenc {
  GIFEncoder(opts?: { auto?: boolean; initialCapacity?: number }): GifencEncoder;
  /** Quantizes RGBA pixels to at most `maxColors`; reads `rgba.buffer` from offset 0. */
  quantize(
    rgba: Uint8Array | Uint8ClampedArray,
    maxColors: number,
    opts?: { format?: GifencFormat },
  ): GifencPalette;
  /** Nearest-colour index per pixel; reads `rgba.buffer` from offset 0. */
  applyPalette(
    rgba: Uint8Array | Uint8ClampedArray,
    palette: GifencPalette,
    format?: GifencFormat,
  ): Uint8Array;
}

declare const gifenc: Gifenc;
export default gifenc;
