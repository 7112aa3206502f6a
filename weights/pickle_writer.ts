/**
 * A small pickle writer: explicit opcodes, no object graph walking. Used to write torch.save
 * compatible checkpoints and, in tests, to build hostile pickles opcode by opcode.
 * @module
 */

/** Pickle opcodes we emit (names as in CPython's pickle.py). */
export const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  NONE: 0x4e,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  BINFLOAT: 0x47,
  BINUNICODE: 0x58,
  SHORT_BINUNICODE: 0x8c,
  SHORT_BINBYTES: 0x43,
  BINBYTES: 0x42,
  EMPTY_DICT: 0x7d,
  EMPTY_LIST: 0x5d,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  SETITEM: 0x73,
  SETITEMS: 0x75,
  APPEND: 0x61,
  APPENDS: 0x65,
  GLOBAL: 0x63,
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52,
  BUILD: 0x62,
  NEWOBJ: 0x81,
  INST: 0x69,
  OBJ: 0x6f,
  BINPERSID: 0x51,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  MEMOIZE: 0x94,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  PROTO: 0x80,
} as const;

/**
 * Appends pickle opcodes to a growing buffer; every method returns `this` for chaining.
 * @example
 * ```ts
 * const bytes = new PickleWriter().proto(2).str("hi").stop().bytes();
 * ```
 */
export class PickleWriter {
  #buf = new Uint8Array(1024);
  #len = 0;

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.byteLength) return;
    const next = new Uint8Array(Math.max(this.#buf.byteLength * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  /** Appends raw bytes (an opcode, or deliberately malformed data in tests). */
  raw(...bytes: (number | Uint8Array)[]): this {
    for (const b of bytes) {
      if (typeof b === "number") {
        this.#reserve(1);
        this.#buf[this.#len++] = b;
      } else {
        this.#reserve(b.byteLength);
        this.#buf.set(b, this.#len);
        this.#len += b.byteLength;
      }
    }
    return this;
  }

  #u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.raw(b);
  }

  /** PROTO n. */
  proto(version = 2): this {
    return this.raw(OP.PROTO, version);
  }

  /** An int: BININT1 / BININT2 / BININT or LONG1 for larger values. */
  int(v: number | bigint): this {
    if (typeof v === "number" && Number.isInteger(v)) {
      if (v >= 0 && v < 256) return this.raw(OP.BININT1, v);
      if (v >= 0 && v < 65536) return this.raw(OP.BININT2, v & 0xff, v >> 8);
      if (v >= -(2 ** 31) && v < 2 ** 31) {
        const b = new Uint8Array(4);
        new DataView(b.buffer).setInt32(0, v, true);
        return this.raw(OP.BININT, b);
      }
    }
    let x = BigInt(v);
    const out: number[] = [];
    while (true) {
      out.push(Number(x & 0xffn));
      x >>= 8n;
      const sign = out[out.length - 1] & 0x80;
      if ((x === 0n && !sign) || (x === -1n && sign)) break;
    }
    return this.raw(OP.LONG1, out.length, Uint8Array.from(out));
  }

  /** BINFLOAT (big-endian float64). */
  float(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return this.raw(OP.BINFLOAT, b);
  }

  /** A str: SHORT_BINUNICODE (protocol 4) when `short`, else BINUNICODE. */
  str(s: string, short = false): this {
    const b = new TextEncoder().encode(s);
    if (short && b.byteLength < 256) return this.raw(OP.SHORT_BINUNICODE, b.byteLength, b);
    return this.raw(OP.BINUNICODE).#u32(b.byteLength).raw(b);
  }

  /** A bytes object (protocol 3+). */
  bytesValue(b: Uint8Array): this {
    if (b.byteLength < 256) return this.raw(OP.SHORT_BINBYTES, b.byteLength, b);
    return this.raw(OP.BINBYTES).#u32(b.byteLength).raw(b);
  }

  /** None. */
  none(): this {
    return this.raw(OP.NONE);
  }

  /** True / False. */
  bool(v: boolean): this {
    return this.raw(v ? OP.NEWTRUE : OP.NEWFALSE);
  }

  /** GLOBAL `module\nname\n` (protocol 0-3 style). */
  global(module: string, name: string): this {
    return this.raw(OP.GLOBAL, new TextEncoder().encode(`${module}\n${name}\n`));
  }

  /** STACK_GLOBAL with the two names pushed as strings (protocol 4 style). */
  stackGlobal(module: string, name: string): this {
    return this.str(module, true).str(name, true).raw(OP.STACK_GLOBAL);
  }

  /** A tuple of ints, as torch writes sizes and strides. */
  intTuple(values: readonly number[]): this {
    if (values.length === 0) return this.raw(OP.EMPTY_TUPLE);
    if (values.length > 3) this.raw(OP.MARK);
    for (const v of values) this.int(v);
    return this.raw([OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][values.length - 1] ?? OP.TUPLE);
  }

  /** BINPUT / LONG_BINPUT of the top of the stack. */
  put(index: number): this {
    return index < 256 ? this.raw(OP.BINPUT, index) : this.raw(OP.LONG_BINPUT).#u32(index);
  }

  /** BINGET / LONG_BINGET. */
  get(index: number): this {
    return index < 256 ? this.raw(OP.BINGET, index) : this.raw(OP.LONG_BINGET).#u32(index);
  }

  /** STOP. */
  stop(): this {
    return this.raw(OP.STOP);
  }

  /** The bytes written so far. */
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}
