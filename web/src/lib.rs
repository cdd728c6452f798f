//! The Coconut page. One wasm module, two roles: on the UI thread (a window) it renders the Yew app
//! (`app`); in the Web Worker started by `static/worker.js` it runs the model (`worker`). They talk
//! only through the typed messages of `protocol`.

use wasm_bindgen::prelude::*;

mod app;
mod check;
mod chart;
mod device;
mod graph;
mod loader;
pub mod protocol;
mod worker;

pub use worker::worker_main;

/// Runs when the module is instantiated: renders the app in a window, does nothing in the worker.
#[wasm_bindgen(start)]
pub fn start() {
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("app")) {
        yew::Renderer::<app::App>::with_root(root).render();
    }
}
