/** Runs the project's entry points as a user would, in a subprocess (CLI tests). */

/** What a finished subprocess printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run -A <script> ...args` in `cwd` without colours; killed after `timeoutMs`
 * (default 180 s). Options of the spawn may add a signal or environment.
 */
export async function runScript(
  script: string,
  args: string[],
  cwd: string,
  timeoutMs = 180_000,
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd,
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
