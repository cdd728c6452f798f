// check.html: the stack check (HF GPT-2 import + scoring in wasm on this browser's backend).
import init, { run_check } from "../pkg/coconut_web.js";

await init();
await run_check();
