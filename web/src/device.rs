//! Backend choice in the browser: WebGPU when the browser gives an adapter and a device in time,
//! else Burn's CPU backend (flex) in wasm, with the reason shown to the user.

use std::time::Duration;

use burn::prelude::Device;
use futures::future::{Either, select};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

#[derive(Clone)]
pub struct Picked {
    pub device: Device,
    pub webgpu: bool,
    /// Why WebGPU was not used (None when it is).
    pub reason: Option<String>,
}

impl PartialEq for Picked {
    fn eq(&self, other: &Self) -> bool {
        self.webgpu == other.webgpu && self.reason == other.reason
    }
}

impl Picked {
    pub fn label(&self) -> &'static str {
        if self.webgpu { "WebGPU" } else { "CPU (wasm)" }
    }

    pub fn kind_class(&self) -> &'static str {
        if self.webgpu { "gpu" } else { "cpu" }
    }
}

fn cpu(reason: String) -> Picked {
    Picked { device: Device::flex(), webgpu: false, reason: Some(reason) }
}

/// Tries WebGPU with a time limit (some browsers never answer `requestAdapter`).
pub async fn pick(limit: Duration) -> Picked {
    let Some(window) = web_sys::window() else { return cpu("no window".into()) };
    let gpu = js_sys::Reflect::get(&window.navigator(), &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return cpu("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let init = Box::pin(Device::wgpu_options().init_async());
    match select(init, Box::pin(sleep(limit))).await {
        Either::Left((Ok(device), _)) => Picked { device, webgpu: true, reason: None },
        Either::Left((Err(e), _)) => cpu(format!("WebGPU adapter or device unavailable: {e}")),
        Either::Right(_) => cpu(format!("WebGPU did not answer within {} s", limit.as_secs())),
    }
}

pub async fn sleep(d: Duration) {
    let ms = d.as_millis() as i32;
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(promise).await;
}
