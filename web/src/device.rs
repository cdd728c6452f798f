//! Backend choice in the model worker: WebGPU when the browser gives an adapter and a device in
//! time, else Burn's CPU backend (flex) in wasm, with the reason shown to the user. Works in a
//! window or a worker (both have `navigator` and `setTimeout` on their global object).

use std::time::Duration;

use burn::prelude::Device;
use futures::future::{Either, select};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[derive(Clone)]
pub struct Picked {
    pub device: Device,
    pub webgpu: bool,
    /// Why WebGPU was not used (None when it is).
    pub reason: Option<String>,
}

impl Picked {
    pub fn info(&self) -> crate::protocol::BackendInfo {
        crate::protocol::BackendInfo { webgpu: self.webgpu, reason: self.reason.clone() }
    }
}

pub fn cpu(reason: String) -> Picked {
    Picked { device: Device::flex(), webgpu: false, reason: Some(reason) }
}

/// Tries WebGPU with a time limit (some browsers never answer `requestAdapter`).
pub async fn pick(limit: Duration) -> Picked {
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &JsValue::from_str("navigator")).unwrap_or(JsValue::UNDEFINED);
    let gpu = js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
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
        let global = js_sys::global();
        if let Ok(f) = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout")) {
            let _ = f.unchecked_into::<js_sys::Function>().call2(&global, &resolve, &JsValue::from(ms));
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Milliseconds from `performance.now()` (window or worker).
pub fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or(0.0)
}
