import { assert, assertEquals, assertRejects } from "../assert.ts";
import { InertObject, TensorRef, unpickle, unpickleFrom } from "../../weights/pickle.ts";
import { PickleWriter } from "../../weights/pickle_writer.ts";
import { openTorchFile } from "../../weights/torch_file.ts";
import { pickleTensorDict, writeCustomTorchZip } from "./torch_fixtures.ts";

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
