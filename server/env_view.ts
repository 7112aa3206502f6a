/**
 * Imported first by the service's entry points: when the process may read only some environment
 * variables (`deno task serve` / `deno task worker` grant a list, not all), Node's `process.env`
 * becomes a plain object holding just those. The Redis client's `debug` dependency enumerates
 * `process.env` on import, which Deno refuses without access to every variable; with this view
 * it sees the granted ones and the process keeps its narrow permission.
 * @module
 */

import process from "node:process";

if (Deno.permissions.querySync({ name: "env" }).state !== "granted") {
  const view: Record<string, string> = {};
  for (const name of ["DEBUG", "DEBUG_DEPTH", "DEBUG_COLORS", "NODE_DEBUG", "HOME"]) {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
    const v = Deno.env.get(name);
    if (v !== undefined) view[name] = v;
  }
  (process as { env: Record<string, string> }).env = view;
}
