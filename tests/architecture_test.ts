/**
 * Folders are layers (../shared/DESIGN.md "Layout"): kernels (with their GPU runtime) <- weights
 * <- engine <- server <- the faces (cli.ts, mod.ts). Every import of the published source is read
 * here and none may point up the order; bench, tests, tools and examples may use anything.
 */

import { assert, assertEquals } from "./assert.ts";
import { dirname, join, relative } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;

/** Layer of a source file (lower = deeper), or null when the file is free to import anything. */
function layerOf(path: string): number | null {
  const rel = relative(ROOT, path);
  if (rel === "cli.ts" || rel === "mod.ts") return 4;
  const top = rel.split("/")[0];
  return ({ kernels: 0, weights: 1, engine: 2, server: 3 } as Record<string, number>)[top] ?? null;
}

const NAMES = ["kernels", "weights", "engine", "server", "cli.ts / mod.ts"];

/** Every relative import specifier of a TypeScript source (static, dynamic and re-exports). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;
  for (const m of source.matchAll(re)) out.push(m[1]);
  return out;
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "node_modules") {
      yield* sources(path);
    } else if (e.isFile && e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("architecture: no import points up the layer order", async () => {
  const violations: string[] = [];
  let checked = 0;
  for await (const file of sources(ROOT)) {
    const from = layerOf(file);
    if (from === null) continue;
    for (const spec of importsOf(await Deno.readTextFile(file))) {
      const to = layerOf(join(dirname(file), spec));
      checked++;
      if (to !== null && to > from) {
        violations.push(
          `${relative(ROOT, file)} (${NAMES[from]}) imports ${spec} (${NAMES[to]})`,
        );
      }
    }
  }
  assert(checked > 300, `read only ${checked} imports: is the source tree where it should be?`);
  assertEquals(violations, [], `${violations.length} imports point up:\n${violations.join("\n")}`);
});

Deno.test("architecture: the import reader sees static, dynamic and re-exports", () => {
  assertEquals(
    importsOf(`import { a } from "./a.ts";
import type { B } from "../b.ts";
export { c } from "./c.ts";
const d = await import("./d.ts");
import "./e.ts";
import { f } from "npm:f";`),
    ["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts"],
  );
});
