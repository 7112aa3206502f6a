/**
 * Set-up step of `deno task test|animate|serve|bench`: makes sure a WebGPU adapter exists.
 * Without one it installs Mesa's lavapipe (software Vulkan) when it can (root + apt-get), and
 * otherwise stops with one line saying what to install. Prints nothing when an adapter exists.
 */

async function hasAdapter(): Promise<boolean> {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return false;
    // Mesa's OpenGL llvmpipe (libgl1-mesa-dri, present on many images) gives wgpu a GL adapter
    // without shader-f16 and 3x slower than Vulkan's lavapipe: a software adapter on a Linux
    // without any Vulkan driver counts as none, so that lavapipe gets installed.
    const software = adapter.info.description.startsWith("llvmpipe") ||
      adapter.info.description.startsWith("softpipe");
    if (software && Deno.build.os === "linux" && !(await hasVulkanDriver())) {
      console.error("zoetrope: only an OpenGL software adapter found (no Vulkan driver)");
      return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** Whether a Vulkan ICD (driver manifest) is installed in the loader's standard folders. */
async function hasVulkanDriver(): Promise<boolean> {
  for (
    const dir of ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
  ) {
    try {
      for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".json")) return true;
    } catch { /* no such folder */ }
  }
  return false;
}

async function run(cmd: string[]): Promise<boolean> {
  try {
    const p = new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "piped" });
    const out = await p.output();
    if (!out.success) console.error(new TextDecoder().decode(out.stderr).trim().split("\n").at(-1));
    return out.success;
  } catch {
    return false;
  }
}

if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");

if (!(await hasAdapter())) {
  const isRoot = Deno.uid?.() === 0;
  let hasApt = false;
  try {
    hasApt = (await Deno.stat("/usr/bin/apt-get")).isFile;
  } catch { /* no apt */ }
  if (isRoot && hasApt) {
    console.error("zoetrope: no WebGPU adapter; installing Mesa lavapipe (mesa-vulkan-drivers)...");
    const ok = await run(["apt-get", "update", "-qq"]) &&
      await run(["apt-get", "install", "-y", "-qq", "mesa-vulkan-drivers"]);
    if (!ok) {
      console.error("zoetrope: installing mesa-vulkan-drivers failed; install a Vulkan driver");
      Deno.exit(1);
    }
    // The adapter list is read once per process: check in a fresh one.
    const check = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "const a = await navigator.gpu?.requestAdapter(); Deno.exit(a ? 0 : 1);"],
      env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    }).output();
    if (!check.success) {
      console.error("zoetrope: still no WebGPU adapter after installing lavapipe");
      Deno.exit(1);
    }
  } else {
    console.error(
      "zoetrope: no WebGPU adapter found; install a Vulkan driver " +
        "(Debian/Ubuntu without a GPU: sudo apt-get install mesa-vulkan-drivers)",
    );
    Deno.exit(1);
  }
}
