//! The page (UI thread): the model lives in a Web Worker (`static/worker.js` → `worker_main`); this
//! side only renders, validates input and exchanges typed messages with it.

use std::cell::RefCell;
use std::rc::Rc;

use coconut::CoconutTokenizer;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlSelectElement, MessageEvent, Worker, WorkerOptions, WorkerType};
use yew::prelude::*;

use crate::finetune::{FineTunePanel, FineTuneView, fine_tune_event};
use crate::protocol::*;
use crate::ask::{AskPanel, fetch_examples, validate};
use crate::load::{backend_badge, load_panel};
use crate::watch::Watch;

/// The shipped models, relative to the page: the Coconut model (the default) and the same-size CoT
/// baseline, for the comparison mode.
pub(crate) const SHIPPED: [(&str, &str); 2] =
    [("static/models/prosqa-coconut", "Coconut model (default)"), ("static/models/prosqa-cot", "CoT baseline (same size, language steps)")];

thread_local! {
    /// Which shipped model the worker loads (also after it restarts on the CPU).
    pub(crate) static CHOSEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(crate) fn chosen_model_dir() -> &'static str {
    SHIPPED[CHOSEN.with(std::cell::Cell::get)].0
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Example {
    pub question: String,
    /// The official answer ("Tom is a yumpus.").
    pub answer: String,
}

#[derive(Clone, Default, PartialEq)]
pub(crate) struct Page {
    pub(crate) started: bool,
    pub(crate) backend: Option<BackendInfo>,
    pub(crate) progress: Option<(String, u64, u64)>,
    pub(crate) model: Option<ModelInfo>,
    pub(crate) tokenizer: Option<Rc<TokenizerHandle>>,
    pub(crate) load_error: Option<String>,
    pub(crate) asking: Option<u32>,
    pub(crate) report: Option<Rc<AnswerReport>>,
    pub(crate) ask_error: Option<String>,
    pub(crate) ft: FineTuneView,
    /// The CoT baseline's answer to the question last answered, side by side.
    pub(crate) compared: Option<Rc<ComparedAnswer>>,
    pub(crate) error: Option<String>,
}

impl Page {
    /// The loaded model was trained as CoT: it always answers in language (no thoughts).
    fn cot_model(&self) -> bool {
        self.model.as_ref().is_some_and(|m| m.method == "cot")
    }

    /// The mode a question is asked in: the chosen one, or CoT for a CoT-trained model.
    fn effective_mode(&self, chosen: &Mode) -> Mode {
        if self.cot_model() { Mode::Cot } else { chosen.clone() }
    }
}

/// A tokenizer compared by identity (it has no PartialEq).
pub(crate) struct TokenizerHandle(pub CoconutTokenizer);

impl PartialEq for TokenizerHandle {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

pub(crate) enum Action {
    Worker(FromWorker),
    WorkerDied(String),
    Asking(u32),
    LoadError(String),
    Loading,
}

impl Reducible for Page {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut p = Rc::try_unwrap(self).unwrap_or_else(|rc| (*rc).clone());
        match action {
            Action::Asking(id) => {
                p.asking = Some(id);
                p.ask_error = None;
            }
            Action::Loading => {
                p.load_error = None;
                p.progress = None;
            }
            Action::LoadError(e) => p.load_error = Some(e),
            Action::WorkerDied(reason) => {
                p.started = false;
                p.asking = None;
                p.ft.running = false;
                p.error = Some(reason);
            }
            Action::Worker(msg) => match msg {
                FromWorker::Started => p.started = true,
                FromWorker::Backend(b) => p.backend = Some(b),
                FromWorker::Progress { file, loaded, total } => p.progress = Some((file, loaded, total)),
                FromWorker::Loaded(info) => {
                    p.tokenizer = CoconutTokenizer::from_json(info.tokenizer_json.as_bytes()).ok().map(|t| Rc::new(TokenizerHandle(t)));
                    p.model = Some(info);
                    p.load_error = None;
                }
                FromWorker::LoadFailed { message } => p.load_error = Some(message),
                FromWorker::Answer(r) => {
                    if p.asking == Some(r.id) {
                        p.asking = None;
                    }
                    p.compared = p.compared.take().filter(|c| c.id == r.id);
                    p.report = Some(Rc::new(*r));
                }
                FromWorker::Frame { id, step, ms } => {
                    if let Some(r) = p.report.as_mut().filter(|r| r.id == id) {
                        let r = Rc::make_mut(r);
                        r.analysis.steps.push(step);
                        r.frame_ms.push(ms);
                    }
                }
                FromWorker::AskFailed { id, message } => {
                    if p.asking == Some(id) {
                        p.asking = None;
                    }
                    p.ask_error = Some(message);
                }
                FromWorker::Compared(c) => p.compared = Some(Rc::new(c)),
                FromWorker::FineTune(ev) => fine_tune_event(&mut p.ft, ev),
                FromWorker::DownloadReady { files } => p.ft.downloads = files,
                FromWorker::Error { message } => p.error = Some(message),
            },
        }
        Rc::new(p)
    }
}

/// The worker and a way to restart it on the CPU.
#[derive(Clone)]
pub(crate) struct WorkerHandle(Rc<RefCell<Option<Worker>>>);

impl PartialEq for WorkerHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl WorkerHandle {
    pub(crate) fn send(&self, msg: &ToWorker) {
        if let (Some(w), Ok(v)) = (self.0.borrow().as_ref(), serde_wasm_bindgen::to_value(msg)) {
            let _ = w.post_message(&v);
        }
    }
}

pub(crate) fn absolute(url: &str) -> String {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.base_uri().ok().flatten())
        .and_then(|base| web_sys::Url::new_with_base(url, &base).ok())
        .map(|u| u.href())
        .unwrap_or_else(|| url.to_string())
}

fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
}

/// Starts the model worker; if it dies (a WebGPU device lost takes the wasm instance with it), a
/// new one starts on the CPU and loads the model again.
/// `backend`: `auto` (WebGPU if possible), `cpu` (asked for), `cpu-recovery` (after a worker died).
fn spawn_worker(handle: WorkerHandle, dispatch: UseReducerDispatcher<Page>, backend: &'static str) {
    let opts = WorkerOptions::new();
    opts.set_type(WorkerType::Module);
    let mut url = format!("static/worker.js?backend={backend}");
    if query_param("simulate").as_deref() == Some("gpu-loss") {
        url.push_str("&simulate=gpu-loss");
    }
    let worker = match Worker::new_with_options(&url, &opts) {
        Ok(w) => w,
        Err(e) => {
            dispatch.dispatch(Action::LoadError(format!("this browser cannot start the model worker: {e:?}")));
            mark_ready();
            return;
        }
    };
    let (h, d) = (handle.clone(), dispatch.clone());
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| match serde_wasm_bindgen::from_value::<FromWorker>(ev.data()) {
        Ok(msg) => {
            match &msg {
                FromWorker::Started => h.send(&ToWorker::Load { base: absolute(chosen_model_dir()) }),
                FromWorker::Loaded(_) | FromWorker::LoadFailed { .. } => mark_ready(),
                _ => {}
            }
            d.dispatch(Action::Worker(msg));
        }
        Err(e) => d.dispatch(Action::Worker(FromWorker::Error { message: format!("malformed message from the worker: {e}") })),
    });
    worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    let (h, d) = (handle.clone(), dispatch.clone());
    let onerror = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
        let why = ev.message();
        if let Some(w) = h.0.borrow_mut().take() {
            w.terminate();
        }
        if backend != "auto" {
            d.dispatch(Action::WorkerDied(format!("The model worker stopped: {why}. Reload the page to try again.")));
            mark_ready();
        } else {
            d.dispatch(Action::WorkerDied(format!("The WebGPU worker stopped ({why}); continuing on the CPU.")));
            spawn_worker(h.clone(), d.clone(), "cpu-recovery");
        }
    });
    worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    onerror.forget();
    *handle.0.borrow_mut() = Some(worker);
}

/// `document.body.dataset.ready = "true"` once the model is loaded (or failed to load, with the error shown).
fn mark_ready() {
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-ready", "true");
    }
}

/// What the question box currently says about the text.
#[function_component(App)]
pub fn app() -> Html {
    let page = use_reducer(Page::default);
    let worker = use_memo((), |_| WorkerHandle(Rc::new(RefCell::new(None))));
    let examples = use_state(Vec::<Example>::new);
    let question = use_state(String::new);
    let seed_note = use_state(|| None::<String>);
    // A generated question and its answer (examples carry theirs), and the answer expected for the
    // question last asked: the page then says whether the model's answer is right.
    let generated = use_state(|| None::<(String, String)>);
    let expected = use_state(|| None::<(u32, String)>);
    // Side by side: the same question also answered by the CoT baseline (when the Coconut model answers).
    let compare = use_state(|| false);
    let k = use_state(|| coconut::checkpoint::DEFAULT_THOUGHTS);
    let mode = use_state(|| Mode::Coconut);
    let next_id = use_mut_ref(|| 0u32);
    {
        let (worker, dispatch, examples, question) = ((*worker).clone(), page.dispatcher(), examples.clone(), question.clone());
        use_effect_with((), move |_| {
            spawn_worker(worker, dispatch, if query_param("backend").as_deref() == Some("cpu") { "cpu" } else { "auto" });
            spawn_local(async move {
                if let Ok(ex) = fetch_examples().await {
                    if let Some(first) = ex.first() {
                        question.set(first.question.clone());
                    }
                    examples.set(ex);
                }
            });
        });
    }
    let valid = validate(&question, page.tokenizer.as_deref());
    let max_k = page.model.as_ref().map(|m| m.max_thoughts).unwrap_or(coconut::checkpoint::DEFAULT_THOUGHTS);
    let can_ask = page.model.is_some() && page.asking.is_none() && valid.unknown.is_empty() && valid.parse.is_ok();
    let mode_now = page.effective_mode(&mode);
    // The mode box shows the mode a question will use (a CoT-trained model always answers in CoT);
    // a select's shown value is a DOM property, so it is set after each render that changes it.
    let mode_select = use_node_ref();
    {
        let r = mode_select.clone();
        use_effect_with(mode_now.clone(), move |m| {
            if let Some(sel) = r.cast::<HtmlSelectElement>() {
                sel.set_value(if *m == Mode::Cot { "cot" } else { "coconut" });
            }
        });
    }
    // The example box names the example the question box holds, or none (an edited or generated
    // question); set after each render, so a browser's restored form state cannot disagree with it.
    let example_select = use_node_ref();
    {
        let shown = examples.iter().position(|e| e.question == *question).map(|i| i.to_string()).unwrap_or_default();
        let r = example_select.clone();
        use_effect_with(shown, move |v| {
            if let Some(sel) = r.cast::<HtmlSelectElement>() {
                sel.set_value(v);
            }
        });
    }

    let known_answer = examples
        .iter()
        .find(|e| e.question == *question)
        .map(|e| e.answer.clone())
        .or_else(|| generated.as_ref().filter(|(q, _)| *q == *question).map(|(_, a)| a.clone()));
    let compare_with = (*compare && !page.cot_model()).then(|| absolute(SHIPPED[1].0));
    let on_ask = {
        let (worker, dispatch, question, k, mode, next_id) =
            ((*worker).clone(), page.dispatcher(), question.clone(), k.clone(), mode_now.clone(), next_id.clone());
        let compare_with = compare_with.clone();
        let (expected, known_answer) = (expected.clone(), known_answer.clone());
        Callback::from(move |_: ()| {
            let id = {
                let mut n = next_id.borrow_mut();
                *n += 1;
                *n
            };
            expected.set(known_answer.clone().map(|a| (id, a)));
            dispatch.dispatch(Action::Asking(id));
            worker.send(&ToWorker::Ask(AskRequest {
                id,
                question: (*question).clone(),
                k: *k,
                mode: mode.clone(),
                compare_with: compare_with.clone(),
            }));
        })
    };

    html! {
      <main>
        <header class="top">
          <div>
            <h1>{"Coconut"}</h1>
            <p class="tagline">{"Chain of Continuous Thought: a GPT-2 that reasons in latent space, running in this tab."}</p>
          </div>
          { backend_badge(&page) }
        </header>
        if let Some(e) = &page.error {
          <p class="error" data-testid="error" role="alert">{e.clone()}</p>
        }
        { load_panel(&page, &worker) }
        <div class="columns">
          <section class="ask" aria-labelledby="ask-h">
            <h2 id="ask-h">{"Ask a ProsQA question"}</h2>
            <AskPanel examples={examples.clone()} question={question.clone()} seed_note={seed_note.clone()} generated={generated.clone()} compare={compare.clone()} k={k.clone()} mode={mode.clone()}
                      mode_now={mode_now.clone()} cot_model={page.cot_model()} asking={page.asking.is_some()}
                      mode_select={mode_select.clone()} example_select={example_select.clone()} max_k={max_k}
                      valid={valid.clone()} can_ask={can_ask} on_ask={on_ask} />
          </section>
          <section class="watch" aria-labelledby="watch-h">
            <h2 id="watch-h">{"Watch the continuous thoughts"}</h2>
            <Watch report={page.report.clone()} question={valid.parse.clone().ok()} asking={page.asking.is_some()} error={page.ask_error.clone()}
                   expected={expected.as_ref().filter(|(id, _)| page.report.as_ref().is_some_and(|r| r.id == *id)).map(|(_, a)| a.clone())}
                   compared={page.compared.clone().filter(|c| page.report.as_ref().is_some_and(|r| r.id == c.id))} />
          </section>
        </div>
        <section class="finetune" aria-labelledby="ft-h">
          <h2 id="ft-h">{"Fine-tune in this tab"}</h2>
          <FineTunePanel ft_loaded={page.model.is_some()} worker={(*worker).clone()} page={page.clone()} />
        </section>
        <footer>
          <p>{"Everything runs locally: the model, its tokenizer and this page come from this server; nothing is sent anywhere. "}
             {"Example questions: the official ProsQA validation set (facebookresearch/coconut, MIT). "}
             {"Paper: Hao et al., Training Large Language Models to Reason in a Continuous Latent Space (2024)."}</p>
        </footer>
      </main>
    }
}
