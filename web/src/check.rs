//! `check.html`: the stack check. Imports a small randomly initialised HuggingFace GPT-2 (the test
//! fixture, `static/smoke/`) with our importer on the page's backend and scores a text with
//! asynchronous read-back; the e2e tests compare the log-probabilities with HuggingFace's.

use std::time::Duration;

use coconut::{hf, score};
use wasm_bindgen::prelude::*;

use crate::device::{self, now_ms};
use crate::loader::fetch_bytes;

const SMOKE_DIR: &str = "static/smoke";

/// Runs the check and writes the result into `#smoke-status` / `#smoke-result`.
#[wasm_bindgen]
pub async fn run_check() {
    let picked = device::pick(Duration::from_secs(8)).await;
    let info = picked.info();
    set("backend", &format!("backend: {}", info.label()), None);
    if let Some(r) = &info.reason {
        set("fallback-reason", &format!("CPU fallback: {r}"), None);
    }
    match check(&picked.device).await {
        Ok((tokens, logprobs, ms)) => {
            set("smoke-status", &format!("Stack check passed: {} tokens scored in {ms:.0} ms.", tokens.len()), Some("done"));
            set("smoke-result", &serde_json::json!({ "tokens": tokens, "logprobs": logprobs }).to_string(), None);
        }
        Err(e) => set("smoke-status", &format!("Stack check failed: {e}"), Some("failed")),
    }
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-ready", "true");
    }
}

fn set(id: &str, text: &str, status: Option<&str>) {
    if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id(id)) {
        el.set_text_content(Some(text));
        if let Some(s) = status {
            let _ = el.set_attribute("data-status", s);
        }
    }
}

async fn check(device: &burn::prelude::Device) -> Result<(Vec<u32>, Vec<f32>, f64), String> {
    let t0 = now_ms();
    let config_json = String::from_utf8(fetch_bytes(&format!("{SMOKE_DIR}/config.json")).await?).map_err(|e| e.to_string())?;
    let weights = fetch_bytes(&format!("{SMOKE_DIR}/model.safetensors")).await?;
    let tokenizer = fetch_bytes(&format!("{SMOKE_DIR}/tokenizer.json")).await?;
    let expected: serde_json::Value =
        serde_json::from_slice(&fetch_bytes(&format!("{SMOKE_DIR}/expected.json")).await?).map_err(|e| e.to_string())?;
    let text = expected["score"]["text"].as_str().ok_or("expected.json has no score.text")?;
    let config = hf::config_from_hf_json(&config_json).map_err(|e| e.to_string())?;
    let model = hf::gpt2_from_safetensors(&config, &weights, device).map_err(|e| e.to_string())?;
    let tok = coconut::CoconutTokenizer::from_json(&tokenizer).map_err(|e| e.to_string())?;
    let tokens = tok.encode(text).map_err(|e| e.to_string())?;
    let logprobs = score::token_logprobs_async(&model, &tokens, device).await?;
    Ok((tokens, logprobs, now_ms() - t0))
}
