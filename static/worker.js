// The model worker: loads the same wasm module as the page and hands control to `worker_main`,
// which picks WebGPU (or the CPU when `?backend=cpu` or WebGPU is unavailable) and answers messages.
import init, { worker_main } from "../pkg/coconut_web.js";

const forceCpu = new URL(self.location.href).searchParams.get("backend") === "cpu";
await init();
worker_main(forceCpu);
