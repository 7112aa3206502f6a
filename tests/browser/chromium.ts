/**
 * Headless Chromium for browser tests (Debian's /usr/bin/chromium, or $CHROMIUM_PATH), driven over
 * the Chrome DevTools Protocol through Deno's WebSocket.
 */

/** Path of the browser. */
export const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
/** Whether the browser exists. */
export const hasChromium = await Deno.stat(CHROMIUM).then((s) => s.isFile, () => false);

/** A minimal CDP client on one target's WebSocket. */
export class Cdp {
  #ws: WebSocket;
  #next = 1;
  #pending = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void }>();
  readonly exceptions: string[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data as string);
      if (msg.id !== undefined) {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.error) p?.fail(new Error(`CDP: ${msg.error.message}`));
        else p?.ok(msg.result);
      } else if (msg.method === "Runtime.exceptionThrown") {
        const d = msg.params.exceptionDetails;
        this.exceptions.push(d.exception?.description ?? d.text);
      }
    };
  }

  static open(url: string): Promise<Cdp> {
    return new Promise((ok, fail) => {
      const ws = new WebSocket(url);
      ws.onopen = () => ok(new Cdp(ws));
      ws.onerror = () => fail(new Error(`CDP: cannot connect to ${url}`));
    });
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((ok, fail) => this.#pending.set(id, { ok, fail }));
  }

  /** Evaluates an expression in the page (awaiting promises) and returns its JSON value. */
  async eval<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }) as { result: { value: T }; exceptionDetails?: { text: string } };
    if (r.exceptionDetails) throw new Error(`page: ${r.exceptionDetails.text} in ${expression}`);
    return r.result.value;
  }

  close(): Promise<void> {
    return new Promise((ok) => {
      if (this.#ws.readyState === WebSocket.CLOSED) return ok();
      this.#ws.onclose = () => ok();
      this.#ws.close();
    });
  }
}

/** Starts headless Chromium; resolves with the process and its DevTools HTTP base URL. */
export async function launchChromium(userDataDir: string) {
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--no-default-browser-check",
      `--user-data-dir=${userDataDir}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    log += value;
    const m = /DevTools listening on (ws:\/\/[^\s]+)/.exec(log);
    if (m) {
      // Keep draining stderr so chromium never blocks on a full pipe.
      (async () => {
        try {
          while (!(await reader.read()).done) { /* drain */ }
        } catch { /* closed */ }
      })();
      const ws = new URL(m[1]);
      return { child, http: `http://${ws.host}` };
    }
  }
  child.kill("SIGKILL");
  throw new Error(`chromium did not start its DevTools endpoint:\n${log.slice(-2000)}`);
}

/** A running browser with one page open over CDP. */
export interface Browser {
  cdp: Cdp;
  close(): Promise<void>;
}

/** Launches Chromium with a throwaway profile and attaches to its page. */
export async function openBrowser(): Promise<Browser> {
  const profile = await Deno.makeTempDir({ prefix: "zoetrope_chromium_" });
  let browser: Awaited<ReturnType<typeof launchChromium>> | null = null;
  let cdp: Cdp | null = null;
  const close = async () => {
    if (cdp) await cdp.send("Browser.close").catch(() => {});
    await cdp?.close();
    if (browser) {
      try {
        browser.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await browser.child.status;
    }
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  try {
    browser = await launchChromium(profile);
    const targets = await (await fetch(`${browser.http}/json/list`)).json() as {
      type: string;
      webSocketDebuggerUrl: string;
    }[];
    const page = targets.find((t) => t.type === "page");
    if (!page) throw new Error("chromium has no page target");
    cdp = await Cdp.open(page.webSocketDebuggerUrl);
    await cdp.send("Runtime.enable");
    await cdp.send("Page.enable");
    return { cdp, close };
  } catch (e) {
    await close();
    throw e;
  }
}
