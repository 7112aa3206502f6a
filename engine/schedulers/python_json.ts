/**
 * JSON as Python's `json.dumps` writes it: standard JSON plus the bare tokens `NaN`,
 * `Infinity` and `-Infinity` (diffusers saves `lambda_min_clipped: -inf` that way).
 *
 * @module
 */

/**
 * Parses JSON text that may contain Python's non-finite tokens `NaN`, `Infinity`, `-Infinity`
 * outside strings; they become the corresponding JavaScript numbers.
 *
 * @example
 * ```ts
 * parsePythonJson('{"lambda_min_clipped": -Infinity}'); // { lambda_min_clipped: -Infinity }
 * ```
 */
export function parsePythonJson(text: string): unknown {
  const marks: Record<string, number> = {};
  let out = "";
  let inString = false;
  let i = 0;
  let n = 0;
  while (i < text.length) {
    const ch = text[i];
    if (inString) {
      out += ch;
      if (ch === "\\") {
        out += text[i + 1] ?? "";
        i += 2;
        continue;
      }
      if (ch === '"') inString = false;
      i++;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
      i++;
      continue;
    }
    const token = ["-Infinity", "Infinity", "NaN"].find((t) => text.startsWith(t, i));
    if (token) {
      const mark = `\u0000nonfinite${n++}`;
      marks[mark] = token === "NaN" ? NaN : token === "Infinity" ? Infinity : -Infinity;
      out += JSON.stringify(mark);
      i += token.length;
      continue;
    }
    out += ch;
    i++;
  }
  if (n === 0) return JSON.parse(text);
  return JSON.parse(out, (_k, v) => typeof v === "string" && v in marks ? marks[v] : v);
}
