//! The Coconut page (Yew). For now: the backend badge (WebGPU, or the CPU fallback and why) and a
//! stack check that imports a small HF GPT-2 with our importer and scores a text on that backend,
//! reading results back asynchronously, as WebGPU requires.

use coconut::{hf, score};
use std::time::Duration;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use yew::prelude::*;

mod device;

/// Where the stack check's model lives (a copy of tests/fixtures/gpt2-tiny and its HF numbers).
const SMOKE_DIR: &str = "static/smoke";

#[wasm_bindgen(start)]
pub fn start() {
    yew::Renderer::<App>::new().render();
}

#[derive(Clone, PartialEq)]
enum Check {
    Running(String),
    Done { tokens: Vec<u32>, logprobs: Vec<f32>, ms: f64 },
    Failed(String),
}

#[function_component(App)]
fn app() -> Html {
    let backend = use_state(|| None::<device::Picked>);
    let check = use_state(|| Check::Running("choosing a backend".into()));
    {
        let (backend, check) = (backend.clone(), check.clone());
        use_effect_with((), move |_| {
            spawn_local(async move {
                let picked = device::pick(Duration::from_secs(8)).await;
                backend.set(Some(picked.clone()));
                check.set(Check::Running(format!("loading the check model on {}", picked.label())));
                check.set(match stack_check(&picked.device).await {
                    Ok(done) => done,
                    Err(e) => Check::Failed(e),
                });
                mark_ready();
            });
        });
    }
    let badge = match &*backend {
        None => html! { <span id="backend" data-testid="backend-badge" class="badge pending">{"backend: …"}</span> },
        Some(p) => html! {
            <span id="backend" data-testid="backend-badge" class={classes!("badge", p.kind_class())} title={p.reason.clone()}>
                {format!("backend: {}", p.label())}
            </span>
        },
    };
    let fallback_note = backend.as_ref().and_then(|p| p.reason.clone()).map(|r| {
        html! {
            <p id="fallback-reason" class="note">{format!("CPU fallback: {r}")}</p>
        }
    });
    let result = match &*check {
        Check::Running(what) => html! { <p id="smoke-status" data-status="running">{format!("Stack check: {what}…")}</p> },
        Check::Failed(e) => {
            html! { <p id="smoke-status" data-testid="error" data-status="failed" class="error">{format!("Stack check failed: {e}")}</p> }
        }
        Check::Done { tokens, logprobs, ms } => {
            let json = serde_json::json!({ "tokens": tokens, "logprobs": logprobs }).to_string();
            html! {
                <>
                  <p id="smoke-status" data-status="done">
                    {format!("Stack check passed: {} tokens scored in {:.0} ms (mean log-prob {:.3}).",
                        tokens.len(), ms, logprobs.iter().sum::<f32>() / logprobs.len().max(1) as f32)}
                  </p>
                  <pre id="smoke-result">{json}</pre>
                </>
            }
        }
    };
    html! {
        <main>
          <header>
            <h1>{"Coconut"}</h1>
            <p class="tagline">{"Chain of Continuous Thought: a GPT-2 that reasons in latent space, in your browser."}</p>
            {badge}
          </header>
          {fallback_note}
          <section>
            <h2>{"Model stack check"}</h2>
            <p>{"A small randomly initialised HuggingFace GPT-2 is imported in the page and scores a sentence on the backend above; \
                 the test suite compares these log-probabilities with HuggingFace's."}</p>
            {result}
          </section>
          <section>
            <p class="note">{"Asking ProsQA questions, watching the continuous thoughts search the concept graph and \
                 fine-tuning in the tab arrive with the next releases."}</p>
          </section>
        </main>
    }
}

async fn stack_check(device: &burn::prelude::Device) -> Result<Check, String> {
    let t0 = now_ms();
    let config_json = fetch_text(&format!("{SMOKE_DIR}/config.json")).await?;
    let weights = fetch_bytes(&format!("{SMOKE_DIR}/model.safetensors")).await?;
    let tokenizer = fetch_bytes(&format!("{SMOKE_DIR}/tokenizer.json")).await?;
    let expected: serde_json::Value = serde_json::from_str(&fetch_text(&format!("{SMOKE_DIR}/expected.json")).await?).map_err(|e| e.to_string())?;
    let text = expected["score"]["text"].as_str().ok_or("expected.json has no score.text")?;
    let config = hf::config_from_hf_json(&config_json).map_err(|e| e.to_string())?;
    let model = hf::gpt2_from_safetensors(&config, &weights, device).map_err(|e| e.to_string())?;
    let tok = coconut::CoconutTokenizer::from_json(&tokenizer).map_err(|e| e.to_string())?;
    let tokens = tok.encode(text).map_err(|e| e.to_string())?;
    let logprobs = score::token_logprobs_async(&model, &tokens, device).await?;
    Ok(Check::Done { tokens, logprobs, ms: now_ms() - t0 })
}

/// `document.body.dataset.ready = "true"` once the page has finished its start-up work.
fn mark_ready() {
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-ready", "true");
    }
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

async fn fetch(url: &str) -> Result<web_sys::Response, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| format!("fetch {url}: {e:?}"))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "not a Response")?;
    if !resp.ok() {
        return Err(format!("fetch {url}: HTTP {}", resp.status()));
    }
    Ok(resp)
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(fetch(url).await?.array_buffer().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let t = JsFuture::from(fetch(url).await?.text().map_err(|e| format!("{e:?}"))?).await.map_err(|e| format!("{e:?}"))?;
    t.as_string().ok_or_else(|| format!("{url}: not text"))
}
