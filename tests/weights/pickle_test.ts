import { assert, assertEquals, assertRejects } from "../assert.ts";
import {
  describePickleValue,
  InertObject,
  TensorRef,
  unpickle,
  unpickleFrom,
} from "../../weights/pickle.ts";
import { PickleWriter } from "../../weights/pickle_writer.ts";
import { openTorchFile } from "../../weights/torch_file.ts";
import { pickleTensorDict, writeCustomTorchZip } from "./torch_fixtures.ts";
import { OP } from "../../weights/pickle_writer.ts";
import { InputError } from "../../kernels/gpu/errors.ts";

const P = { path: "evil.ckpt" };

function expectError(bytes: Uint8Array, pattern: RegExp, opts = P): void {
  let err: Error | null = null;
  try {
    unpickle(bytes, opts);
  } catch (e) {
    err = e as Error;
  }
  assert(err !== null, `expected an error matching ${pattern}`);
  assert(pattern.test(err.message), `"${err.message}" does not match ${pattern}`);
  assert(!err.message.includes("\n"), "one-line error");
  assert(err instanceof InputError, `${err.name} is not an InputError: ${err.message}`);
}

Deno.test("pickle: plain values (ints, longs, floats, strings, bytes, containers, memo)", () => {
  const w = new PickleWriter().proto(2).raw(0x7d, 0x71, 0, 0x28); // EMPTY_DICT BINPUT 0 MARK
  w.str("small").int(200).str("mid").int(40000).str("neg").int(-7).str("big").int(2 ** 40);
  w.str("huge").int(2n ** 70n).str("f").float(0.1).str("none").none().str("t").bool(true);
  w.str("b").bytesValue(new Uint8Array([1, 2])).str("tup").intTuple([1, 2, 3, 4]);
  w.str("list").raw(0x5d, 0x28).int(1).str("x").raw(0x65); // EMPTY_LIST MARK ... APPENDS
  w.str("self").get(0).raw(0x75).stop();
  const d = unpickle(w.bytes(), P) as Map<string, unknown>;
  assert(d instanceof Map);
  assertEquals(d.get("small"), 200);
  assertEquals(d.get("mid"), 40000);
  assertEquals(d.get("neg"), -7);
  assertEquals(d.get("big"), 2 ** 40);
  assertEquals(d.get("huge") === 2n ** 70n, true);
  assertEquals(d.get("f"), 0.1);
  assertEquals(d.get("none"), null);
  assertEquals(d.get("t"), true);
  assertEquals([...(d.get("b") as Uint8Array)], [1, 2]);
  assertEquals(d.get("tup"), [1, 2, 3, 4]);
  assertEquals(d.get("list"), [1, "x"]);
  assert(d.get("self") === d, "memo GET returns the same object");
});

Deno.test("pickle: unpickleFrom reports where each of several back-to-back pickles ends", () => {
  const a = new PickleWriter().proto(2).int(5).stop().bytes();
  const b = new PickleWriter().proto(2).str("x").stop().bytes();
  const both = new Uint8Array([...a, ...b]);
  const first = unpickleFrom(both, 0, P);
  assertEquals([first.value, first.end], [5, a.byteLength]);
  assertEquals(unpickleFrom(both, first.end, P).value, "x");
});

/** A pickle calling module.name(arg) with GLOBAL or STACK_GLOBAL then REDUCE. */
function callPickle(module: string, name: string, arg: string, stackGlobal: boolean): Uint8Array {
  const w = new PickleWriter().proto(stackGlobal ? 4 : 2);
  if (stackGlobal) w.stackGlobal(module, name);
  else w.global(module, name);
  return w.raw(0x28).str(arg).raw(0x74, 0x52).stop().bytes();
}

Deno.test("pickle: os.system / posix.system / builtins.eval & co are refused and never run", async () => {
  const marker = `/tmp/zoetrope-pwned-${crypto.randomUUID()}`;
  const cmd = `touch ${marker}`;
  const cases: [string, string, string][] = [
    ["os", "system", cmd],
    ["posix", "system", cmd],
    ["nt", "system", cmd],
    ["subprocess", "Popen", cmd],
    ["builtins", "eval", `__import__('os').system('${cmd}')`],
    ["builtins", "exec", `__import__('os').system('${cmd}')`],
    ["__builtin__", "eval", `__import__('os').system('${cmd}')`],
    ["builtins", "getattr", "system"],
    ["builtins", "__import__", "os"],
    ["importlib", "import_module", "os"],
    ["torch.serialization", "load", marker],
    ["pickle", "loads", cmd],
  ];
  for (const [module, name, arg] of cases) {
    for (const stackGlobal of [false, true]) {
      const bytes = callPickle(module, name, arg, stackGlobal);
      const qualified = `${module}.${name}`.replace(/[.]/g, "\\.");
      expectError(
        bytes,
        new RegExp(
          `^evil\\.ckpt: refusing to load pickle global '${qualified}' \\(only tensor-rebuilding globals are allowed\\)$`,
        ),
      );
    }
  }
  // The same payload as data.pkl of a real-looking checkpoint.
  const dir = await Deno.makeTempDir({ prefix: "zoetrope-pickle-" });
  try {
    await writeCustomTorchZip(`${dir}/evil.ckpt`, callPickle("os", "system", cmd, false), {});
    await assertRejects(
      () => openTorchFile(`${dir}/evil.ckpt`),
      /evil\.ckpt \(archive\/data\.pkl\): refusing to load pickle global 'os\.system'/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  let exists = true;
  try {
    await Deno.stat(marker);
  } catch {
    exists = false;
  }
  assertEquals(exists, false, `marker ${marker} must not exist`);
});

Deno.test("pickle: dotted or dunder names are refused even in unknown modules", () => {
  expectError(
    callPickle("mypkg", "a.b", "x", true),
    /refusing to load pickle global 'mypkg\.a\.b'/,
  );
  expectError(callPickle("mypkg", "__reduce__", "x", true), /refusing to load pickle global/);
  expectError(callPickle("my pkg", "X", "x", false), /refusing to load pickle global/);
});

Deno.test("pickle: unknown classes become inert placeholders holding data; strict mode refuses", () => {
  // copyreg._reconstructor(cls, object, None) + BUILD {state}, as protocol 2 pickles objects.
  const w = new PickleWriter().proto(2).raw(0x7d, 0x28);
  w.str("callbacks").global("copy_reg", "_reconstructor").raw(0x28);
  w.global("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint");
  w.global("__builtin__", "object").none().raw(0x74, 0x52);
  w.raw(0x7d).str("monitor").str("val_loss").raw(0x73, 0x62); // EMPTY_DICT k v SETITEM BUILD
  w.str("epoch").int(3).raw(0x75).stop();
  const d = unpickle(w.bytes(), P) as Map<string, unknown>;
  const cb = d.get("callbacks");
  assert(cb instanceof InertObject);
  assertEquals([cb.type.module, cb.type.name], [
    "pytorch_lightning.callbacks.model_checkpoint",
    "ModelCheckpoint",
  ]);
  assertEquals((cb.state as Map<string, unknown>).get("monitor"), "val_loss");
  assertEquals(d.get("epoch"), 3);
  expectError(
    w.bytes(),
    /refusing to load pickle global 'pytorch_lightning\.callbacks\.model_checkpoint\.ModelCheckpoint'/,
    { ...P, strict: true } as typeof P,
  );
});

Deno.test("pickle: tensors need a real storage; inert objects cannot stand in", () => {
  const w = new PickleWriter().proto(2).global("torch._utils", "_rebuild_tensor_v2").raw(0x28);
  w.global("mypkg", "Fake").raw(0x29, 0x52).int(0).intTuple([2]).intTuple([1]).bool(false);
  w.global("collections", "OrderedDict").raw(0x29, 0x52, 0x74, 0x52).stop();
  expectError(w.bytes(), /tensor storage is not a torch storage/);
  const ok = pickleTensorDict(new PickleWriter().proto(2), {
    w: {
      storageClass: "HalfStorage",
      key: "0",
      storageNumel: 6,
      offset: 2,
      size: [2, 2],
      stride: [2, 1],
    },
  }).stop().bytes();
  const d = unpickle(ok, { path: "x", persistentLoad: (pid) => pid }) as Map<string, TensorRef>;
  const t = d.get("w")!;
  assert(t instanceof TensorRef);
  assertEquals([t.storageOffset, t.size, t.stride], [2, [2, 2], [2, 1]]);
  assertEquals((t.storage as unknown[]).slice(2), ["0", "cpu", 6]);
  expectError(ok, /persistent id without a storage loader/);
});

Deno.test("pickle: malformed input is a one-line error, never a crash", () => {
  const good = new PickleWriter().proto(2).str("hello").stop().bytes();
  expectError(good.subarray(0, 6), /^evil\.ckpt: pickle at byte \d+: truncated/);
  // Cut inside the string's bytes: still "truncated" (legacy files retry with a longer prefix).
  expectError(good.subarray(0, 9), /^evil\.ckpt: pickle at byte \d+: truncated/);
  expectError(new Uint8Array([0x80, 2, 0xff]), /unknown opcode 0xff/);
  expectError(new Uint8Array([0x80, 2, 0x30, 0x2e]), /stack underflow/);
  expectError(new Uint8Array([0x80, 2, 0x68, 9, 0x2e]), /memo key 9 is missing/);
  expectError(new Uint8Array([0x80, 2, 0x75, 0x2e]), /no MARK on the stack/);
  expectError(
    new Uint8Array([0x80, 2, 0x82, 1, 0x2e]),
    /extension-registry opcodes are not supported/,
  );
  const longBomb = new Uint8Array([0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f]);
  expectError(longBomb, /truncated/);
  // 100k nested empty lists via APPEND build fine (no recursion in the machine).
  const nest = new PickleWriter().proto(2).raw(0x5d);
  for (let i = 0; i < 100_000; i++) nest.raw(0x5d);
  for (let i = 0; i < 100_000; i++) nest.raw(0x61);
  const deep = unpickle(nest.stop().bytes(), P);
  assert(Array.isArray(deep));
});

Deno.test("pickle: a million APPENDS / SETITEMS / ADDITEMS / REDUCE arguments parse (no spread)", () => {
  const N = 1_000_000;
  // [0, 1, ..., 255, 0, ...] in one APPENDS, as a checkpoint holding a long list has.
  const list = new PickleWriter().proto(2).raw(OP.EMPTY_LIST, OP.MARK);
  for (let i = 0; i < N; i++) list.raw(OP.BININT1, i & 0xff);
  const l = unpickle(list.raw(OP.APPENDS).stop().bytes(), P) as number[];
  assertEquals([l.length, l[0], l[257], l[N - 1]], [N, 0, 1, (N - 1) & 0xff]);
  // A dict of N / 2 items in one SETITEMS.
  const dict = new PickleWriter().proto(2).raw(OP.EMPTY_DICT, OP.MARK);
  for (let i = 0; i < N / 2; i++) {
    dict.raw(OP.BININT, Uint8Array.of(i & 0xff, i >> 8, i >> 16, 0), OP.NONE);
  }
  const d = unpickle(dict.raw(OP.SETITEMS).stop().bytes(), P) as Map<number, null>;
  assertEquals([d.size, d.has(N / 2 - 1)], [N / 2, true]);
  // A set by ADDITEMS, and an unknown class called with N arguments then given N items.
  const set = new PickleWriter().proto(4).raw(0x8f, OP.MARK);
  for (let i = 0; i < N; i++) set.raw(OP.BININT1, i & 0xff);
  assertEquals((unpickle(set.raw(0x90).stop().bytes(), P) as Set<number>).size, 256);
  const obj = new PickleWriter().proto(2).global("mypkg", "Config").raw(OP.MARK);
  for (let i = 0; i < N; i++) obj.raw(OP.NONE);
  obj.raw(OP.TUPLE, OP.REDUCE, OP.MARK);
  for (let i = 0; i < N; i++) obj.raw(OP.NEWTRUE);
  const o = unpickle(obj.raw(OP.APPENDS).stop().bytes(), P);
  assert(o instanceof InertObject);
  assertEquals(o.args.length, 2 * N);
});

Deno.test("pickle: deep and cyclic values are described in errors without recursing", () => {
  // torch.device(((((...1e6 tuples...))))) and a persistent id whose tag holds itself.
  const deep = new PickleWriter().proto(2).global("torch", "device").raw(OP.NONE);
  for (let i = 0; i < 1_000_000; i++) deep.raw(OP.TUPLE1);
  deep.raw(OP.TUPLE1, OP.REDUCE).stop();
  assertEquals(unpickle(deep.bytes(), P), "a tuple of 1");
  const cyclic = new PickleWriter().proto(2).raw(OP.EMPTY_LIST).put(0).get(0).raw(OP.APPEND);
  cyclic.raw(OP.TUPLE1, 0x51 /* BINPERSID */).stop();
  const err = (() => {
    try {
      unpickle(cyclic.bytes(), {
        path: "x.ckpt",
        persistentLoad: (pid) => {
          throw new InputError(
            `x.ckpt: unsupported persistent id ${describePickleValue((pid as unknown[])[0])}`,
          );
        },
      });
    } catch (e) {
      return e as Error;
    }
  })();
  assertEquals(err?.message, "x.ckpt: unsupported persistent id a list of 1");
  // Too many values for a Map or Set is refused by count, before V8's own limit is hit.
  const many = new Uint8Array(16_000_001 + 6).fill(OP.NONE); // PROTO 4, EMPTY_SET, MARK, None...
  many.set([OP.PROTO, 4, 0x8f, OP.MARK]);
  many.set([0x90, /* ADDITEMS */ OP.STOP], many.length - 2);
  expectError(many, /holds more than 16000000 values/);
});
