/**
 * `deno task weights ...`: inspect and convert weights files.
 *
 *   deno task weights inspect FILE|DIR [--json] [--config DIR]
 *   deno task weights convert IN OUT.safetensors [--fp16]
 *
 * Exit codes: 0 success, 2 bad input (one line `error: ...`, no stack trace), 1 otherwise.
 * @module
 */

import { formatSummary, inspectWeights } from "./inspect.ts";
import { convertToSafetensors } from "./convert.ts";
import { InputError } from "../kernels/gpu/errors.ts";
import type { Architecture } from "./types.ts";

const USAGE = `usage:
  deno task weights inspect FILE|DIR [--json] [--config DIR]
  deno task weights convert IN OUT.safetensors [--fp16]`;

/** Where the CLI writes; tests pass collectors. */
export interface CliIo {
  /** Writes one stdout line. */
  out: (line: string) => void;
  /** Writes one stderr line. */
  err: (line: string) => void;
}

class UsageError extends InputError {}

/** Files the user named that cannot be opened are bad input too. */
const FILE_ERRORS = [
  Deno.errors.NotFound,
  Deno.errors.PermissionDenied,
  Deno.errors.IsADirectory,
  Deno.errors.NotADirectory,
];

function parse(
  args: string[],
  flags: string[],
  valued: string[],
): { positional: string[]; flags: Map<string, string | true> } {
  const positional: string[] = [];
  const found = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      positional.push(a);
      continue;
    }
    const [name, inline] = a.slice(2).split("=", 2);
    if (valued.includes(name)) {
      const v = inline ?? args[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      found.set(name, v);
    } else if (flags.includes(name)) found.set(name, true);
    else throw new UsageError(`unknown option --${name}`);
  }
  return { positional, flags: found };
}

/**
 * Runs the weights CLI on `args`; returns the exit code.
 * @example
 * ```ts
 * const code = await main(["inspect", "model.safetensors", "--json"]);
 * ```
 */
export async function main(
  args: string[],
  io: CliIo = { out: console.log, err: console.error },
  options: { architecture?: Architecture } = {},
): Promise<number> {
  try {
    const [command, ...rest] = args;
    if (command === "inspect") {
      const p = parse(rest, ["json"], ["config"]);
      if (p.positional.length !== 1) throw new UsageError("inspect takes one FILE or DIR");
      const config = p.flags.get("config");
      const summary = await inspectWeights(p.positional[0], {
        config: typeof config === "string" ? config : undefined,
        architecture: options.architecture,
      });
      if (summary.kind === "unknown") {
        throw new InputError(`${p.positional[0]}: not a recognised weights file or folder`);
      }
      io.out(p.flags.has("json") ? JSON.stringify(summary) : formatSummary(summary));
      return 0;
    }
    if (command === "convert") {
      const p = parse(rest, ["fp16"], []);
      if (p.positional.length !== 2) throw new UsageError("convert takes IN and OUT.safetensors");
      const [input, output] = p.positional;
      if (!output.endsWith(".safetensors")) {
        throw new UsageError(`output ${output} must end in .safetensors`);
      }
      await convertToSafetensors(input, output, { fp16: p.flags.has("fp16") });
      io.out(`wrote ${output}`);
      return 0;
    }
    if (command === undefined || command === "help" || command === "--help") {
      io.out(USAGE);
      return command === undefined ? 2 : 0;
    }
    throw new UsageError(`unknown command ${command}`);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: ${e.message}\n${USAGE}`.split("\n")[0]);
      return 2;
    }
    if (e instanceof InputError || FILE_ERRORS.some((c) => e instanceof c)) {
      io.err(`error: ${(e as Error).message.split("\n")[0]}`);
      return 2;
    }
    io.err(`error: internal: ${String((e as Error)?.message ?? e).split("\n")[0]}`);
    return 1;
  }
}
