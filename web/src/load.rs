//! The model panel: download progress, the shipped-model choice, a checkpoint of your own, and
//! the backend badge (WebGPU or the CPU fallback, with the reason).

use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::app::{Action, CHOSEN, Page, SHIPPED, WorkerHandle, absolute, chosen_model_dir};
use crate::protocol::*;

pub fn backend_badge(page: &Page) -> Html {
    match &page.backend {
        None => html! { <span id="backend" data-testid="backend-badge" class="badge pending">{"backend: starting…"}</span> },
        Some(b) => html! {
            <div class="backend">
              <span id="backend" data-testid="backend-badge" class={classes!("badge", if b.webgpu { "gpu" } else { "cpu" })}
                    title={b.reason.clone()}>{format!("backend: {}", b.label())}</span>
              if let Some(r) = &b.reason {
                <p id="fallback-reason" class="note">{format!("CPU fallback: {r}")}</p>
              }
            </div>
        },
    }
}

pub fn load_panel(page: &UseReducerHandle<Page>, worker: &WorkerHandle) -> Html {
    let (loaded, total) = page.progress.as_ref().map(|p| (p.1, p.2)).unwrap_or((0, 0));
    let status = match (&page.model, &page.load_error) {
        (_, Some(e)) => html! { <span class="error" data-testid="error" role="alert">{format!("Model not loaded: {e}")}</span> },
        (Some(m), None) => html! {
            <span>{format!("{} — {} ({} layers × {}, {:.2} M parameters, trained as {}){}",
                m.source, "loaded", m.layers, m.width, m.parameters as f64 / 1e6, m.method,
                if m.from_cache { ", from the browser cache" } else { "" })}</span>
        },
        (None, None) if total > 0 => {
            html! { <span>{format!("Downloading the model: {:.1} / {:.1} MB", loaded as f64 / 1e6, total as f64 / 1e6)}</span> }
        }
        (None, None) => html! { <span>{"Starting the model worker…"}</span> },
    };
    let retry = {
        let (worker, dispatch) = (worker.clone(), page.dispatcher());
        Callback::from(move |_: MouseEvent| {
            dispatch.dispatch(Action::Loading);
            worker.send(&ToWorker::Load { base: absolute(chosen_model_dir()) });
        })
    };
    let on_shipped = {
        let (worker, dispatch) = (worker.clone(), page.dispatcher());
        Callback::from(move |e: Event| {
            let sel: HtmlSelectElement = e.target_unchecked_into();
            if let Some(i) = sel.value().parse::<usize>().ok().filter(|&i| i < SHIPPED.len()) {
                CHOSEN.with(|c| c.set(i));
                dispatch.dispatch(Action::Loading);
                worker.send(&ToWorker::Load { base: absolute(SHIPPED[i].0) });
            }
        })
    };
    let chosen = CHOSEN.with(std::cell::Cell::get);
    let on_files = {
        let (worker, dispatch) = (worker.clone(), page.dispatcher());
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let Some(files) = input.files() else { return };
            let (worker, dispatch) = (worker.clone(), dispatch.clone());
            spawn_local(async move {
                match read_checkpoint_files(&files).await {
                    Ok(msg) => {
                        dispatch.dispatch(Action::Loading);
                        worker.send(&msg);
                    }
                    Err(e) => dispatch.dispatch(Action::LoadError(e)),
                }
            });
        })
    };
    html! {
      <section class="load" aria-label="Model">
        <progress data-testid="load-progress" max={total.max(1).to_string()} value={if page.model.is_some() { total.max(1) } else { loaded }.to_string()}
                  aria-label="Model download progress"></progress>
        <p class="status">{status}</p>
        <label>{"Shipped model "}
          <select data-testid="model-select" onchange={on_shipped} aria-label="Shipped model">
            { for SHIPPED.iter().enumerate().map(|(i, (_, name))| html! { <option value={i.to_string()} selected={i == chosen}>{*name}</option> }) }
          </select>
        </label>
        if page.load_error.is_some() {
          <button onclick={retry}>{"Retry download"}</button>
        }
        <label class="file">{"Load your own checkpoint (its manifest.json, config.json, tokenizer.json and model.bpk): "}
          <input type="file" multiple=true onchange={on_files} />
        </label>
      </section>
    }
}

async fn read_checkpoint_files(files: &web_sys::FileList) -> Result<ToWorker, String> {
    let mut parts: Vec<(String, web_sys::File)> = Vec::new();
    for i in 0..files.length() {
        if let Some(f) = files.get(i) {
            parts.push((f.name(), f));
        }
    }
    let find = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, f)| f.clone()).ok_or(format!("pick the checkpoint's {name} too"));
    let text =
        |f: web_sys::File| async move { JsFuture::from(f.text()).await.map(|t| t.as_string().unwrap_or_default()).map_err(|e| format!("{e:?}")) };
    let weights = JsFuture::from(find("model.bpk")?.array_buffer()).await.map_err(|e| format!("{e:?}"))?;
    Ok(ToWorker::LoadFiles {
        manifest: text(find("manifest.json")?).await?,
        config: text(find("config.json")?).await?,
        tokenizer: text(find("tokenizer.json")?).await?,
        weights: js_sys::Uint8Array::new(&weights).to_vec(),
    })
}

