import { assertEquals } from "../../assert.ts";
import { parsePythonJson } from "../../../engine/schedulers/python_json.ts";

Deno.test("python_json: NaN/Infinity tokens outside strings become numbers; strings untouched", () => {
  const v = parsePythonJson(
    '{"a": -Infinity, "b": [Infinity, NaN, 1], "s": "NaN -Infinity \\" Infinity"}',
  ) as {
    a: number;
    b: number[];
    s: string;
  };
  assertEquals(
    v.a === -Infinity && v.b[0] === Infinity && Number.isNaN(v.b[1]) && v.b[2] === 1,
    true,
  );
  assertEquals(v.s, 'NaN -Infinity " Infinity');
  assertEquals(parsePythonJson('{"x": 1.5}'), { x: 1.5 });
});
