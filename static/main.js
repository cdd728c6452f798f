// Starts the page's wasm module (the Yew app renders into #app); a failure is shown, not just logged.
import init from "../pkg/coconut_web.js";

init().then(() => document.getElementById("boot")?.remove()).catch((e) => {
  const boot = document.getElementById("boot");
  boot.className = "error";
  boot.setAttribute("data-testid", "error");
  boot.textContent = "The page could not start its WebAssembly module: " + e;
  document.body.dataset.ready = "true";
});
