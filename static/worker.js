// The model worker: loads the same wasm module as the page and hands control to `worker_main`,
// which picks WebGPU (or the CPU when `?backend=cpu` or WebGPU is unavailable) and answers messages.
// `simulate=gpu-loss` is the tests' stand-in for a lost GPU device (see worker.rs).
import init, { worker_main } from "../pkg/coconut_web.js";

const params = new URL(self.location.href).searchParams;
await init();
worker_main(params.get("backend") || "auto", params.get("simulate") === "gpu-loss");
