//! The Coconut page. One wasm module, two roles: on the UI thread (a window) it renders the Yew app
//! (`app`); in the Web Worker started by `static/worker.js` it runs the model (`worker`). They talk
//! only through the typed messages of `protocol`.

use wasm_bindgen::prelude::*;

mod app;
mod ask;
mod chart;
mod check;
mod device;
mod finetune;
mod graph;
mod load;
mod loader;
pub mod protocol;
mod watch;
mod worker;

pub use worker::worker_main;

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// The linker's static constructors (Burn/CubeCL register kernels and IR dialects through
    /// `inventory`). If no export calls them, wasm-ld treats the module as a "command" and runs them
    /// again at the start of *every* export, i.e. on every call from JavaScript into wasm: hundreds
    /// of ms per worker message or promise callback (seen in a Chromium profile). Calling them once
    /// here, from the start function, makes wasm-ld leave the exports alone.
    fn __wasm_call_ctors();
}

/// Runs when the module is instantiated: renders the app in a window, does nothing in the worker.
#[wasm_bindgen(start)]
pub fn start() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: runs once, first thing after instantiation, before any other Rust code.
    unsafe {
        __wasm_call_ctors();
    }
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("app")) {
        yew::Renderer::<app::App>::with_root(root).render();
    }
}
