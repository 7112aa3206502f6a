/**
 * The frame type shared by every output encoder, and the input checks they all apply.
 * @module
 */

/**
 * One RGBA image of an animation: `data` holds `width * height * 4` bytes, rows top to bottom,
 * pixels left to right, channels R, G, B, A (straight, not premultiplied, alpha).
 *
 * @example
 * ```ts
 * const frame: Frame = { data: new Uint8ClampedArray(2 * 2 * 4).fill(255), width: 2, height: 2 };
 * ```
 */
export interface Frame {
  /** RGBA bytes, `width * height * 4` of them. */
  data: Uint8ClampedArray;
  /** Width in pixels (a positive integer). */
  width: number;
  /** Height in pixels (a positive integer). */
  height: number;
}

/** The largest width or height any of our formats stores (GIF sizes are 16-bit). */
export const MAX_FRAME_SIDE = 65535;

/**
 * Checks one frame: positive integer size no larger than {@link MAX_FRAME_SIDE} and
 * `data.length === width * height * 4`. `what` names the caller and frame in the error.
 *
 * @example
 * ```ts
 * checkFrame({ data: new Uint8ClampedArray(4), width: 1, height: 1 }, "encodePng: frame");
 * ```
 */
export function checkFrame(frame: Frame, what: string): void {
  const { width, height, data } = frame;
  for (const [name, v] of [["width", width], ["height", height]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_FRAME_SIDE) {
      throw new RangeError(
        `${what}: expected ${name} to be an integer in 1..${MAX_FRAME_SIDE}, got ${v}`,
      );
    }
  }
  if (!(data instanceof Uint8ClampedArray) && !(data as unknown instanceof Uint8Array)) {
    throw new TypeError(`${what}: expected data to be a Uint8ClampedArray of RGBA bytes`);
  }
  if (data.length !== width * height * 4) {
    throw new RangeError(
      `${what}: data length ${data.length} != width*height*4 = ${width}*${height}*4 = ` +
        `${width * height * 4}`,
    );
  }
}

/**
 * Checks a whole animation: at least one frame, every frame valid, and all frames the size of
 * frame 0 (the error names the first frame that differs). `op` is the encoder's name.
 *
 * @example
 * ```ts
 * const f = { data: new Uint8ClampedArray(4), width: 1, height: 1 };
 * checkFrames([f, f], "encodeGif");
 * ```
 */
export function checkFrames(frames: readonly Frame[], op: string): void {
  if (!Array.isArray(frames) || frames.length === 0) {
    throw new RangeError(`${op}: expected at least one frame, got an empty frame list`);
  }
  checkFrame(frames[0], `${op}: frame 0`);
  const { width, height } = frames[0];
  for (let i = 1; i < frames.length; i++) {
    const f = frames[i];
    if (f.width !== width || f.height !== height) {
      throw new RangeError(
        `${op}: frame ${i} is ${f.width}x${f.height} but frame 0 is ${width}x${height}; ` +
          `all frames must have one size`,
      );
    }
    checkFrame(f, `${op}: frame ${i}`);
  }
}

/**
 * Checks a frame rate: a finite number > 0 (frames per second).
 *
 * @example
 * ```ts
 * checkFps(8, "encodeGif");
 * ```
 */
export function checkFps(fps: number, op: string): void {
  if (typeof fps !== "number" || !Number.isFinite(fps) || fps <= 0) {
    throw new RangeError(`${op}: expected fps to be a finite number > 0, got ${fps}`);
  }
}

/** The largest `loop` value accepted (GIF stores `loop - 1` in 16 bits). */
export const MAX_LOOP = 65535;

/**
 * Checks a play count: an integer in `0..MAX_LOOP`, where 0 means "forever".
 *
 * @example
 * ```ts
 * checkLoop(0, "encodeApng");
 * ```
 */
export function checkLoop(loop: number, op: string): void {
  if (!Number.isInteger(loop) || loop < 0 || loop > MAX_LOOP) {
    throw new RangeError(
      `${op}: expected loop to be an integer in 0..${MAX_LOOP} (0 = forever), got ${loop}`,
    );
  }
}

/**
 * `frame` at `width` x `height` (bilinear, pixel centres aligned; the frame itself when it
 * already has that size).
 *
 * @example
 * ```ts
 * resizeFrame(frame, 64, 64).data.length; // 64 * 64 * 4
 * ```
 */
export function resizeFrame(frame: Frame, width: number, height: number): Frame {
  if (frame.width === width && frame.height === height) return frame;
  const data = new Uint8ClampedArray(width * height * 4);
  const sx = frame.width / width, sy = frame.height / height;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), frame.height - 1);
    const y0 = Math.floor(fy), y1 = Math.min(y0 + 1, frame.height - 1), wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), frame.width - 1);
      const x0 = Math.floor(fx), x1 = Math.min(x0 + 1, frame.width - 1), wx = fx - x0;
      for (let c = 0; c < 4; c++) {
        const at = (xx: number, yy: number) => frame.data[(yy * frame.width + xx) * 4 + c];
        const top = at(x0, y0) * (1 - wx) + at(x1, y0) * wx;
        const bottom = at(x0, y1) * (1 - wx) + at(x1, y1) * wx;
        data[(y * width + x) * 4 + c] = Math.round(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return { data, width, height };
}
