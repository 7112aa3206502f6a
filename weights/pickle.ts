/**
 * A restricted unpickler for torch checkpoints, and a small pickle writer. Nothing in a pickle is
 * ever executed: GLOBAL / STACK_GLOBAL resolve only through an allow-list of tensor-rebuilding
 * names that map to plain TypeScript data builders; dangerous names (os.system, builtins.eval,
 * subprocess.*, ...) are refused; other classes (config objects pickled by PyTorch Lightning and
 * the like) become inert placeholders that hold their arguments as data.
 * @module
 */

import { InputError } from "../kernels/gpu/errors.ts";

/** A tensor described by a pickle: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`. */
export class TensorRef {
  constructor(
    /** What the persistent-load callback returned for the storage. */
    readonly storage: unknown,
    readonly storageOffset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

/** A torch storage class named in a pickle, e.g. torch.HalfStorage -> "F16". */
export class StorageType {
  constructor(readonly name: string, readonly dtype: string) {}
}

/** An unknown class or function named by a pickle; never resolved or called. */
export class InertGlobal {
  constructor(readonly module: string, readonly name: string) {}
}

/** An "instance" of an InertGlobal: its constructor arguments and state kept as plain data. */
export class InertObject {
  state: unknown = undefined;
  constructor(readonly type: InertGlobal, readonly args: unknown[]) {}
}

/** torch storage class -> safetensors dtype name. */
export const STORAGE_DTYPES: Readonly<Record<string, string>> = {
  DoubleStorage: "F64",
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

type Builder = (args: unknown[], where: string) => unknown;

class AllowedGlobal {
  constructor(readonly qualified: string, readonly build: Builder) {}
}

function tensorFrom(args: unknown[], where: string): TensorRef {
  const [storage, offset, size, stride] = args;
  const ints = (v: unknown) =>
    Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && x >= 0);
  if (!Number.isSafeInteger(offset) || !ints(size) || !ints(stride)) {
    throw new InputError(`${where}: malformed _rebuild_tensor arguments`);
  }
  if (storage instanceof InertObject || storage instanceof InertGlobal) {
    throw new InputError(`${where}: tensor storage is not a torch storage`);
  }
  return new TensorRef(storage, offset as number, [...size as number[]], [...stride as number[]]);
}

function firstTensor(args: unknown[], where: string): unknown {
  if (!(args[0] instanceof TensorRef)) {
    throw new InputError(`${where}: parameter data is not a tensor`);
  }
  return args[0];
}

const ALLOWED = new Map<string, Builder>([
  ["collections.OrderedDict", (args, where) => {
    const map = new Map();
    for (const item of Array.isArray(args[0]) ? args[0] : []) {
      if (!Array.isArray(item) || item.length !== 2) {
        throw new InputError(`${where}: OrderedDict item is not a (key, value) pair`);
      }
      map.set(item[0], item[1]);
    }
    return map;
  }],
  ["torch._utils._rebuild_tensor_v2", tensorFrom],
  ["torch._utils._rebuild_tensor", tensorFrom],
  ["torch._utils._rebuild_parameter", firstTensor],
  ["torch._utils._rebuild_parameter_with_state", firstTensor],
  ["torch._tensor._rebuild_from_type_v2", (args, where) => {
    const [fn, , inner] = args;
    if (
      !(fn instanceof AllowedGlobal) || !Array.isArray(inner) ||
      fn.qualified === "torch._tensor._rebuild_from_type_v2"
    ) {
      throw new InputError(`${where}: _rebuild_from_type_v2 wraps a function that is not allowed`);
    }
    return fn.build(inner, where);
  }],
  ["torch.Size", (args) => (Array.isArray(args[0]) ? [...args[0]] : [])],
  ["torch.device", (args) => {
    const [type, index] = args;
    const part = (v: unknown) => (typeof v === "string" ? v : describePickleValue(v));
    return part(type) + (index !== undefined ? `:${part(index)}` : "");
  }],
  ["_codecs.encode", (args, where) => {
    const [s, enc] = args;
    if (typeof s !== "string") throw new InputError(`${where}: _codecs.encode of a non-string`);
    if (enc === "latin1" || enc === "latin-1" || enc === undefined) {
      return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
    }
    return new TextEncoder().encode(s);
  }],
  ["builtins.set", (args) => new Set(Array.isArray(args[0]) ? args[0] : [])],
  ["builtins.frozenset", (args) => new Set(Array.isArray(args[0]) ? args[0] : [])],
  ["builtins.bytearray", (args) => (args[0] instanceof Uint8Array ? args[0] : new Uint8Array())],
  ["copyreg._reconstructor", (args, where) => {
    const cls = args[0];
    if (!(cls instanceof InertGlobal)) {
      throw new InputError(`${where}: _reconstructor of a non-class`);
    }
    return new InertObject(cls, []);
  }],
]);

/** Builtins that only build plain data; everything else in builtins is refused. */
const SAFE_BUILTINS = new Set([
  "set",
  "frozenset",
  "bytearray",
  "object",
  "slice",
  "complex",
  "range",
  "int",
  "float",
  "str",
  "bool",
  "list",
  "tuple",
  "dict",
  "bytes",
  "NoneType",
]);
const DENIED_MODULES = new RegExp(
  "^(os|posix|nt|subprocess|_posixsubprocess|sys|shutil|socket|importlib|runpy|pty|ctypes|code|" +
    "codeop|pickle|_pickle|cPickle|marshal|dill|joblib|multiprocessing|io|_io|operator|functools|" +
    "types|inspect|pdb|bdb|timeit|webbrowser|platform|signal|threading|_thread|asyncio|tempfile|" +
    "pathlib|glob|commands|popen2|pip|setuptools|distutils|yaml|shelve|ftplib|http|urllib|" +
    "torch\\.(hub|serialization|jit|ops|_ops|classes|package|utils\\.cpp_extension))(\\.|$)",
);
const DENIED_NAMES = new RegExp(
  "^(eval|exec|execfile|compile|open|system|popen\\d?|spawn\\w*|exec[lv]\\w*|getattr|setattr|" +
    "delattr|__import__|import_module|apply|call|check_call|check_output|run|Popen|load|loads|" +
    "input|breakpoint|globals|locals|vars|attrgetter|itemgetter|methodcaller|partial)$",
);

/** Options of unpickle. */
export interface UnpickleOptions {
  /** Named in every error. */
  path: string;
  /** Resolves BINPERSID / PERSID ids (torch storages); without it they are an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Refuse every global outside the allow-list instead of making inert placeholders. */
  strict?: boolean;
}

function resolveGlobal(module: string, name: string, opts: UnpickleOptions): unknown {
  const mod = module === "__builtin__" ? "builtins" : module === "copy_reg" ? "copyreg" : module;
  const qualified = `${mod}.${name}`;
  const refuse = () =>
    new InputError(
      `${opts.path}: refusing to load pickle global '${module}.${name}' (only tensor-rebuilding globals are allowed)`,
    );
  const allowed = ALLOWED.get(qualified);
  if (allowed) return new AllowedGlobal(qualified, allowed);
  if (mod === "torch" && Object.hasOwn(STORAGE_DTYPES, name)) {
    return new StorageType(name, STORAGE_DTYPES[name]);
  }
  const plainName = /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !name.startsWith("__");
  const plainModule = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(mod);
  if (
    opts.strict || !plainName || !plainModule || DENIED_MODULES.test(mod) ||
    DENIED_NAMES.test(name) || (mod === "builtins" && !SAFE_BUILTINS.has(name))
  ) {
    throw refuse();
  }
  return new InertGlobal(mod, name);
}

function callGlobal(fn: unknown, args: unknown, where: string): unknown {
  const list = Array.isArray(args) ? args : [];
  if (fn instanceof AllowedGlobal) return fn.build(list, `${where} (${fn.qualified})`);
  // A copy: the arguments may be a (frozen) tuple, and APPEND/SETITEM may add to them later.
  if (fn instanceof InertGlobal) return new InertObject(fn, list.slice());
  if (fn instanceof InertObject) return new InertObject(fn.type, list.slice());
  throw new InputError(`${where}: REDUCE/NEWOBJ on something that is not a class or function`);
}

/**
 * Appends `items` to `list` one by one: `list.push(...items)` passes every item as a call
 * argument and overflows the stack for the long lists (APPENDS of a million items) that real
 * checkpoints may hold.
 */
function pushAll(list: unknown[], items: readonly unknown[]): void {
  for (let i = 0; i < items.length; i++) list.push(items[i]);
}

/**
 * A short description of an unpickled value for error messages: never `String(v)` or
 * `JSON.stringify(v)`, which recurse (a million nested tuples overflow the stack) or throw on
 * cycles (a list that holds itself through the memo).
 */
export function describePickleValue(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (typeof v === "string") {
    return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  }
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") {
    const s = String(v);
    return s.length > 40 ? `${s.slice(0, 40)}... (${s.length} digits)` : s;
  }
  if (Array.isArray(v)) return `${Object.isFrozen(v) ? "a tuple" : "a list"} of ${v.length}`;
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof Set) return `a set of ${v.size}`;
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
  if (v instanceof InertObject) return `a pickled ${v.type.module}.${v.type.name} object`;
  if (v instanceof InertGlobal) return `the class ${v.module}.${v.name}`;
  if (v instanceof TensorRef) return "a tensor";
  if (v instanceof StorageType) return `the storage type torch.${v.name}`;
  return `a ${typeof v}`;
}

const MAX_LONG_BYTES = 4096;
/** Longest string a pickle may hold (V8's strings end near 512 MiB). */
const MAX_STRING_BYTES = 256 * 1024 * 1024;
/**
 * Most values a pickle may push (and memo entries it may make): below V8's 2^24-entry limit of
 * a Map or Set, far above what checkpoints hold (a few hundred thousand).
 */
const MAX_VALUES = 16_000_000;

/** Thrown when the pickle ends before STOP (callers that read a file prefix retry with more). */
export class PickleTruncatedError extends InputError {
  override name = "PickleTruncatedError";
}

/**
 * Unpickles `bytes` (protocols 0-5) without executing anything.
 * @example
 * ```ts
 * const value = unpickle(bytes, { path: "model.ckpt", persistentLoad: (pid) => pid });
 * ```
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): unknown {
  return unpickleFrom(bytes, 0, opts).value;
}

/**
 * Unpickles one pickle that starts at byte `start` of `bytes`; also returns where it ended, for
 * files that hold several pickles back to back (legacy torch.save).
 * @example
 * ```ts
 * const { value, end } = unpickleFrom(bytes, 0, { path: "old.pt" });
 * ```
 */
export function unpickleFrom(
  bytes: Uint8Array,
  start: number,
  opts: UnpickleOptions,
): { value: unknown; end: number } {
  const path = opts.path;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let pos = start;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();
  const where = () => `${path}: pickle at byte ${pos}`;
  const fail = (msg: string): never => {
    throw new InputError(`${where()}: ${msg}`);
  };
  const need = (n: number) => {
    if (n < 0) fail(`negative length ${n}`);
    if (pos + n > bytes.byteLength) {
      throw new PickleTruncatedError(`${where()}: truncated (needs ${n} more bytes)`);
    }
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = () => take(1)[0];
  const u16 = () => (need(2), pos += 2, view.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, view.getUint32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > 1n << 40n) fail(`implausible length ${v}`);
    return Number(v);
  };
  const textOf = (b: Uint8Array, decoder: TextDecoder): string => {
    if (b.byteLength > MAX_STRING_BYTES) fail(`a ${b.byteLength}-byte string is too long`);
    try {
      return decoder.decode(b);
    } catch {
      return fail("invalid UTF-8 in string");
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleTruncatedError(`${where()}: unterminated text line`);
    const s = textOf(bytes.subarray(pos, end), latin1);
    pos = end + 1;
    return s;
  };
  const str = (n: number): string => textOf(take(n), utf8);
  let pushed = 0;
  const push = (v: unknown): void => {
    if (++pushed > MAX_VALUES) fail(`holds more than ${MAX_VALUES} values`);
    stack.push(v); // `stack` is read after the argument is evaluated (popMark swaps it)
  };
  const pop = (): unknown => (stack.length === 0 ? fail("stack underflow") : stack.pop());
  const top =
    (): unknown => (stack.length === 0 ? fail("stack underflow") : stack[stack.length - 1]);
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) return fail("no MARK on the stack");
    stack = prev;
    return items;
  };
  const setMemo = (i: number, v: unknown) => {
    if (memo.size >= MAX_VALUES && !memo.has(i)) fail("memo is too large");
    memo.set(i, v);
  };
  const getMemo = (i: number) => (memo.has(i) ? memo.get(i) : fail(`memo key ${i} is missing`));
  const long = (b: Uint8Array): number | bigint => {
    if (b.byteLength === 0) return 0;
    if (b.byteLength > MAX_LONG_BYTES) fail("integer is too long");
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.byteLength - 1] & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  };
  const textInt = (s: string): number | bigint | boolean => {
    const t = s.endsWith("L") ? s.slice(0, -1) : s;
    if (t === "01") return true;
    if (t === "00") return false;
    if (!/^[+-]?\d+$/.test(t) || t.length > MAX_LONG_BYTES) fail(`bad integer literal '${s}'`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (items.length % 2) fail("odd number of items for SETITEMS");
    if (d instanceof Map) {
      for (let i = 0; i < items.length; i += 2) {
        d.set(items[i], items[i + 1]);
      }
    } else if (d instanceof InertObject) pushAll(d.args, items);
    else fail("SETITEM(S) on something that is not a dict");
  };
  const appendItems = (l: unknown, items: unknown[]) => {
    if (Array.isArray(l) && !Object.isFrozen(l)) pushAll(l, items);
    else if (l instanceof Set) items.forEach((x) => l.add(x));
    else if (l instanceof InertObject) pushAll(l.args, items);
    else fail("APPEND(S) on something that is not a list");
  };
  const tuple = (items: unknown[]) => Object.freeze(items);
  const persistent = (pid: unknown) => {
    if (!opts.persistentLoad) return fail("persistent id without a storage loader");
    return opts.persistentLoad(pid);
  };

  while (true) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("unsupported pickle protocol");
        break;
      case 0x95: // FRAME
        take(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail("stack is not a single value at STOP");
        return { value: stack[0], end: pos };
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4a: // BININT
        need(4);
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x8a: // LONG1
        push(long(take(u8())));
        break;
      case 0x8b: { // LONG4
        need(4);
        const n = view.getInt32(pos, true);
        pos += 4;
        push(long(take(n)));
        break;
      }
      case 0x49: // INT
      case 0x4c: // LONG
        push(textInt(line()));
        break;
      case 0x47: // BINFLOAT
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: { // FLOAT
        const s = line();
        const v = Number(s);
        if (Number.isNaN(v) && s.trim().toLowerCase() !== "nan") fail(`bad float literal '${s}'`);
        push(v);
        break;
      }
      case 0x58: // BINUNICODE
        push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        push(str(u64()));
        break;
      case 0x56: // UNICODE (raw-unicode-escape; \uXXXX escapes)
        push(
          line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16))),
        );
        break;
      case 0x54: { // BINSTRING (python 2 str)
        need(4);
        const n = view.getInt32(pos, true);
        pos += 4;
        push(textOf(take(n), latin1));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(latin1.decode(take(u8())));
        break;
      case 0x53: { // STRING: quoted repr
        const s = line();
        if (s.length < 2 || s[0] !== s[s.length - 1] || !`'"`.includes(s[0])) {
          fail("bad STRING literal");
        }
        push(
          s.slice(1, -1).replace(
            /\\(x[0-9a-fA-F]{2}|.)/g,
            (_, e: string) =>
              e[0] === "x"
                ? String.fromCharCode(parseInt(e.slice(1), 16))
                : ({ n: "\n", t: "\t", r: "\r" } as Record<string, string>)[e] ?? e,
          ),
        );
        break;
      }
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(take(u64()).slice());
        break;
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        push(tuple([]));
        break;
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop(), a = pop();
        push(tuple([a, b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop(), b = pop(), a = pop();
        push(tuple([a, b, c]));
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x73: { // SETITEM
        const v = pop(), k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: { // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        setMemo(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        setMemo(u32(), top());
        break;
      case 0x70: // PUT
        setMemo(Number(textInt(line())), top());
        break;
      case 0x94: // MEMOIZE
        setMemo(memo.size, top());
        break;
      case 0x68: // BINGET
        push(getMemo(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(getMemo(u32()));
        break;
      case 0x67: // GET
        push(getMemo(Number(textInt(line()))));
        break;
      case 0x63: { // GLOBAL
        const module = line(), name = line();
        push(resolveGlobal(module, name, opts));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail("STACK_GLOBAL of non-strings");
        }
        push(resolveGlobal(module as string, name as string, opts));
        break;
      }
      case 0x69: { // INST
        const module = line(), name = line();
        const cls = resolveGlobal(module, name, opts);
        push(callGlobal(cls, popMark(), where()));
        break;
      }
      case 0x6f: { // OBJ
        const [cls, ...args] = popMark();
        push(callGlobal(cls, args, where()));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop(), fn = pop();
        push(callGlobal(fn, args, where()));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop(), cls = pop();
        push(callGlobal(cls, args, where()));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        pop();
        const args = pop(), cls = pop();
        push(callGlobal(cls, args, where()));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof InertObject) obj.state = state;
        else if (!(obj instanceof Map || obj instanceof TensorRef || Array.isArray(obj))) {
          fail("BUILD on an object that takes no state");
        }
        break;
      }
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;
      case 0x50: // PERSID
        push(persistent(line()));
        break;
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        return fail("extension-registry opcodes are not supported");
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        return fail("out-of-band buffers are not supported");
      default:
        return fail(`unknown opcode 0x${op.toString(16)}`);
    }
    if (marks.length > 100_000) fail("too many nested MARKs");
  }
}
