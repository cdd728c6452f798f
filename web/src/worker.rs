//! The model worker: owns the device, the checkpoint and the models; answers the UI's typed
//! messages. Every tensor read-back here is asynchronous (WebGPU forbids blocking ones), and long
//! loops yield to the event loop so that pause/cancel messages get through.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use coconut::analyze::Question;
use coconut::checkpoint::Checkpoint;
use coconut::curriculum::{Curriculum, Variant};
use coconut::eval::extract_answer;
use coconut::generate::{generate_async, read};
use coconut::train::{OptimConfig, accuracy_async, epoch_batches, tokenize_items};
use coconut::trainer::{Trainer, TrainerState};
use coconut::{Gpt2, prosqa};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::device::{self, Picked, now_ms};
use crate::loader;
use crate::protocol::*;

/// The model answering questions, with what it came from.
#[derive(Clone)]
struct Loaded {
    ckpt: Rc<Checkpoint>,
    variant: Variant,
    model: Gpt2,
}

#[derive(Clone, Copy, PartialEq)]
enum Control {
    Run,
    Pause,
    Cancel,
}

struct State {
    scope: DedicatedWorkerGlobalScope,
    backend: RefCell<Picked>,
    loaded: RefCell<Option<Loaded>>,
    /// The comparison model (the CoT baseline), loaded on the first side-by-side question.
    comparison: RefCell<Option<(String, Loaded)>>,
    /// The latest fine-tuned weights (inference form), kept after the run ends.
    tuned: RefCell<Option<Gpt2>>,
    control: Cell<Control>,
    tuning: Cell<bool>,
    /// Test hook (`?simulate=gpu-loss`): the first question on WebGPU aborts the worker the way a
    /// lost device does (the wasm instance traps), so the page's recovery can be tested.
    simulate_gpu_loss: bool,
}

impl State {
    fn post(&self, msg: &FromWorker) {
        match serde_wasm_bindgen::to_value(msg) {
            Ok(v) => {
                let _ = self.scope.post_message(&v);
            }
            Err(e) => web_sys::console::error_1(&format!("worker: cannot serialise a message: {e}").into()),
        }
    }

    fn device(&self) -> Device {
        self.backend.borrow().device.clone()
    }
}

/// Entry point of `static/worker.js`.
#[wasm_bindgen]
pub fn worker_main(backend: String, simulate_gpu_loss: bool) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    spawn_local(async move {
        let picked = match backend.as_str() {
            "cpu" => device::cpu("CPU requested (?backend=cpu)".into()),
            "cpu-recovery" => device::cpu("the WebGPU worker stopped (a lost GPU device?): restarted on the CPU".into()),
            _ => device::pick(Duration::from_secs(8)).await,
        };
        let state = Rc::new(State {
            scope: scope.clone(),
            backend: RefCell::new(picked),
            loaded: RefCell::new(None),
            comparison: RefCell::new(None),
            tuned: RefCell::new(None),
            control: Cell::new(Control::Run),
            tuning: Cell::new(false),
            simulate_gpu_loss,
        });
        let handler_state = state.clone();
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let state = handler_state.clone();
            match serde_wasm_bindgen::from_value::<ToWorker>(ev.data()) {
                Ok(msg) => handle(state, msg),
                Err(e) => state.post(&FromWorker::Error { message: format!("worker got a malformed message: {e}") }),
            }
        });
        scope.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        onmessage.forget();
        state.post(&FromWorker::Backend(state.backend.borrow().info()));
        state.post(&FromWorker::Started);
    });
}

fn handle(state: Rc<State>, msg: ToWorker) {
    match msg {
        ToWorker::Pause => {
            state.control.set(Control::Pause);
        }
        ToWorker::Resume => state.control.set(Control::Run),
        ToWorker::Cancel => state.control.set(Control::Cancel),
        msg => spawn_local(async move {
            let s = state.clone();
            match msg {
                ToWorker::Load { base } => {
                    let result = load_shipped(&s, &base).await;
                    if let Err(message) = result {
                        s.post(&FromWorker::LoadFailed { message });
                    }
                }
                ToWorker::LoadFiles { manifest, config, tokenizer, weights } => {
                    let result = Checkpoint::from_parts(manifest.as_bytes(), config.as_bytes(), tokenizer.as_bytes(), weights)
                        .map_err(|e| format!("this checkpoint cannot be used: {e}"))
                        .and_then(|ckpt| {
                            // Asked the way it was trained, when its manifest says (else Coconut, 6 thoughts).
                            let (method, k, _) = ckpt.asked_as(None, None);
                            install(&s, ckpt, &method, k, "your checkpoint", false)
                        });
                    if let Err(message) = result {
                        s.post(&FromWorker::LoadFailed { message });
                    }
                }
                ToWorker::Ask(req) => {
                    if s.simulate_gpu_loss && s.backend.borrow().webgpu {
                        panic!("simulated WebGPU device loss");
                    }
                    let id = req.id;
                    if let Err(message) = ask(&s, req).await {
                        s.post(&FromWorker::AskFailed { id, message });
                    }
                }
                ToWorker::FineTune(settings) => {
                    if s.tuning.replace(true) {
                        s.post(&FromWorker::FineTune(FineTuneEvent::Failed { message: "a fine-tune is already running".into() }));
                        return;
                    }
                    s.control.set(Control::Run);
                    if let Err(message) = fine_tune(&s, settings).await {
                        s.post(&FromWorker::FineTune(FineTuneEvent::Failed { message }));
                    }
                    s.tuning.set(false);
                }
                ToWorker::UseFineTuned => {
                    let tuned = s.tuned.borrow().clone();
                    let mut loaded = s.loaded.borrow_mut();
                    match (tuned, loaded.as_mut()) {
                        (Some(t), Some(l)) => {
                            l.model = t;
                            drop(loaded);
                            s.post(&FromWorker::FineTune(FineTuneEvent::InUse));
                        }
                        _ => {
                            drop(loaded);
                            s.post(&FromWorker::Error { message: "no fine-tuned model yet".into() })
                        }
                    }
                }
                ToWorker::Download => {
                    if let Err(message) = download(&s).await {
                        s.post(&FromWorker::Error { message: format!("download failed: {message}") });
                    }
                }
                ToWorker::Pause | ToWorker::Resume | ToWorker::Cancel => {}
            }
        }),
    }
}

/// The checkpoint an export holds (its four files, validated against each other).
fn checkpoint_of(fetched: &loader::Fetched) -> Result<Checkpoint, String> {
    Checkpoint::from_parts(
        fetched.file("manifest.json")?,
        fetched.file("config.json")?,
        fetched.file("tokenizer.json")?,
        fetched.file("model.bpk")?.to_vec(),
    )
    .map_err(|e| e.to_string())
}

async fn load_shipped(s: &State, base: &str) -> Result<(), String> {
    let fetched = loader::fetch_model(base, |file, loaded, total| s.post(&FromWorker::Progress { file: file.into(), loaded, total })).await?;
    let ckpt = checkpoint_of(&fetched).map_err(|e| format!("the downloaded checkpoint is not usable: {e}"))?;
    let name = base.trim_end_matches('/').rsplit('/').next().unwrap_or(base).to_string();
    let mut info_source = name;
    info_source.push_str(&format!(" ({})", fetched.manifest.version));
    install(s, ckpt, &fetched.manifest.method, fetched.manifest.max_thoughts, &info_source, fetched.from_cache)
}

/// Builds the model on the worker's device and makes it the one that answers.
fn install(s: &State, ckpt: Checkpoint, method: &str, max_thoughts: usize, source: &str, from_cache: bool) -> Result<(), String> {
    let variant = Variant::parse(method)?;
    let model = ckpt.model(&s.device()).map_err(|e| e.to_string())?;
    let info = ModelInfo {
        source: source.into(),
        version: ckpt.manifest.weights_sha256[..16].to_string(),
        method: variant.name().into(),
        max_thoughts,
        parameters: model.num_params(),
        layers: ckpt.config.n_layer,
        width: ckpt.config.n_embd,
        from_cache,
        tokenizer_json: ckpt.tokenizer.to_json().map_err(|e| e.to_string())?,
    };
    *s.loaded.borrow_mut() = Some(Loaded { ckpt: Rc::new(ckpt), variant, model });
    *s.tuned.borrow_mut() = None;
    s.post(&FromWorker::Loaded(info));
    Ok(())
}

/// The answer first (one multi-pass forward over the k thoughts + cached greedy decoding), then the
/// latent-analysis frames t = 0..=k one message each, so the page shows the answer at once and
/// animates the frames as they arrive.
async fn ask(s: &State, req: AskRequest) -> Result<(), String> {
    let loaded = s.loaded.borrow().clone().ok_or("no model is loaded yet")?;
    let device = s.device();
    let tok = &loaded.ckpt.tokenizer;
    // CoT mode: no thoughts, the model reasons in language (a Coconut checkpoint after its curriculum
    // still writes steps at k = 0; a CoT checkpoint never uses thoughts).
    let variant = loaded.variant;
    let k = if req.mode == Mode::Cot || !variant.markers() { 0 } else { req.k };
    let question = req.question.trim();
    let q = Question::new(tok, question, variant)?;
    let t0 = now_ms();
    let curriculum = Curriculum { variant, ..Curriculum::default() };
    let prompt = curriculum.prompt(&coconut::curriculum::Tokenized::question(question, tok).map_err(|e| e.to_string())?, k, tok.special);
    // Learned position embeddings: prompt + the analysis lead-in + the answer must fit n_positions.
    let limit = loaded.ckpt.config.n_positions;
    if prompt.len() + 16 > limit {
        return Err(format!(
            "the question is too long for this model: {} tokens with k = {k} thoughts, it reads at most {} (n_positions {limit}); shorten it",
            prompt.len(),
            limit - 16
        ));
    }
    let max_new = 96.min(limit - prompt.len());
    let gens = generate_async(&loaded.model, &[prompt], tok.special, max_new, variant.feeds_back(), &device).await?;
    let generate_ms = now_ms() - t0;
    let text = tok.decode(&gens[0].tokens);
    let compare_with = req.compare_with.clone();
    s.post(&FromWorker::Answer(Box::new(AnswerReport {
        id: req.id,
        k,
        mode: req.mode,
        answer: extract_answer(&text),
        text,
        analysis: q.analysis(Vec::new()),
        frame_ms: Vec::new(),
        generate_ms,
        backend: s.backend.borrow().info().label().into(),
    })));
    if let Some(base) = compare_with {
        s.post(&FromWorker::Compared(compare(s, &base, req.id, question).await?));
    }
    for t in 0..=k {
        let t0 = now_ms();
        let step = q.step_async(&loaded.model, tok, t, &device).await?;
        s.post(&FromWorker::Frame { id: req.id, step, ms: now_ms() - t0 });
    }
    Ok(())
}

/// The comparison model's answer (loaded from `base` once and kept), asked the way it was
/// trained (its manifest's method and k), timed like the main answer.
async fn compare(s: &State, base: &str, id: u32, question: &str) -> Result<ComparedAnswer, String> {
    let cached = s.comparison.borrow().as_ref().filter(|(b, _)| b == base).map(|(_, l)| l.clone());
    let other = match cached {
        Some(l) => l,
        None => {
            let fetched = loader::fetch_model(base, |_, _, _| {}).await?;
            let ckpt = checkpoint_of(&fetched).map_err(|e| format!("the comparison model is not usable: {e}"))?;
            let variant = Variant::parse(&fetched.manifest.method)?;
            let model = ckpt.model(&s.device()).map_err(|e| e.to_string())?;
            let l = Loaded { ckpt: Rc::new(ckpt), variant, model };
            *s.comparison.borrow_mut() = Some((base.to_string(), l.clone()));
            l
        }
    };
    let tok = &other.ckpt.tokenizer;
    let (_, k, _) = other.ckpt.asked_as(None, None);
    let k = if other.variant.markers() { k } else { 0 };
    let curriculum = Curriculum { variant: other.variant, ..Curriculum::default() };
    let prompt = curriculum.prompt(&coconut::curriculum::Tokenized::question(question, tok).map_err(|e| e.to_string())?, k, tok.special);
    let limit = other.ckpt.config.n_positions;
    coconut::generate::check_positions(prompt.len(), 16, limit).map_err(|e| format!("the comparison model: {e}"))?;
    let t0 = now_ms();
    let gens =
        generate_async(&other.model, &[prompt.clone()], tok.special, 96.min(limit - prompt.len()), other.variant.feeds_back(), &s.device()).await?;
    let generate_ms = now_ms() - t0;
    let text = tok.decode(&gens[0].tokens);
    Ok(ComparedAnswer { id, method: other.variant.name().into(), k, answer: extract_answer(&text), text, generate_ms })
}

/// Waits while paused; false when cancelled. Always yields once, so messages get through.
async fn checkpoint_control(s: &State, step: usize) -> bool {
    device::sleep(Duration::from_millis(0)).await;
    if s.control.get() == Control::Pause {
        s.post(&FromWorker::FineTune(FineTuneEvent::Paused { step }));
        while s.control.get() == Control::Pause {
            device::sleep(Duration::from_millis(100)).await;
        }
        if s.control.get() == Control::Run {
            s.post(&FromWorker::FineTune(FineTuneEvent::Resumed { step }));
        }
    }
    s.control.get() != Control::Cancel
}

/// A short curriculum on freshly generated questions with Burn's autodiff on the worker's device.
async fn fine_tune(s: &State, st: FineTuneSettings) -> Result<(), String> {
    let loaded = s.loaded.borrow().clone().ok_or("load a model first")?;
    if st.batch_size == 0 || st.steps_per_stage == 0 {
        return Err("batch size and steps per stage must be at least 1".into());
    }
    let device = s.device().autodiff();
    let tok = &loaded.ckpt.tokenizer;
    let heldout_n = st.heldout;
    let train_n = (st.steps_per_stage * st.batch_size).clamp(st.batch_size, 4000);
    let all = prosqa::generate(train_n + heldout_n, st.seed, &prosqa::GenConfig::default(), &Default::default())?;
    let (train_items, heldout) = all.split_at(train_n);
    let train = tokenize_items(train_items, tok).map_err(|e| format!("generated questions do not fit this model's vocabulary: {e}"))?;
    let heldout_tok = tokenize_items(heldout, tok)?;
    let curriculum = Curriculum { variant: loaded.variant, ..Curriculum::default() };
    let optim_cfg = OptimConfig { lr: st.lr, batch_size: st.batch_size, ..OptimConfig::default() };
    let model = if st.from_scratch { loaded.ckpt.config.init(&device) } else { loaded.ckpt.model(&device).map_err(|e| e.to_string())? };
    // The loop `coconut train` drives: fresh optimizer at every stage switch, steps seeded by (seed, step).
    let mut trainer = Trainer::new(model, optim_cfg, st.seed, TrainerState::default(), vec![device.clone()], curriculum.max_latent_stage);
    let total_steps = (st.last_stage + 1) * st.steps_per_stage;
    s.post(&FromWorker::FineTune(FineTuneEvent::Started { total_steps, train_questions: train_n, heldout_questions: heldout_n, seed: st.seed }));
    let mut step = 0;
    let mut cancelled = false;
    'stages: for stage in 0..=st.last_stage {
        trainer.begin_epoch(stage);
        let mut batches = Vec::new();
        let mut pass = 0;
        while batches.len() < st.steps_per_stage {
            batches.extend(epoch_batches(train.len(), st.batch_size, st.seed, stage * 1000 + pass));
            pass += 1;
        }
        let mut accuracy = 0.0;
        for (i, indices) in batches.into_iter().take(st.steps_per_stage).enumerate() {
            let t0 = now_ms();
            let loss = read::<1, Float, f32>(trainer.step(&train, &indices, &curriculum, tok)).await?[0];
            if !loss.is_finite() {
                return Err(format!("the loss became {loss} at step {step}: lower the learning rate"));
            }
            step = trainer.state.global_step;
            let secs = (now_ms() - t0) / 1000.0;
            s.post(&FromWorker::FineTune(FineTuneEvent::Step { step, stage, loss, samples_per_s: indices.len() as f64 / secs.max(1e-9) }));
            let stage_end = i + 1 == st.steps_per_stage;
            if heldout_n > 0 && (stage_end || (st.eval_every > 0 && step % st.eval_every == 0)) {
                let k = curriculum.eval_thoughts(stage, 6);
                let inference = trainer.model.valid();
                accuracy = accuracy_async(&inference, heldout, &heldout_tok, &curriculum, k, tok, 16, 64, &inference.device()).await?;
                s.post(&FromWorker::FineTune(FineTuneEvent::Eval { step, stage, k, accuracy }));
            }
            *s.tuned.borrow_mut() = Some(trainer.model.valid());
            if !checkpoint_control(s, step).await {
                cancelled = true;
                break 'stages;
            }
        }
        trainer.end_epoch(accuracy);
    }
    s.post(&FromWorker::FineTune(FineTuneEvent::Finished { step, cancelled }));
    Ok(())
}

/// Every float parameter of a module, in visiting order (shapes and values read back async).
struct Collect(Vec<Tensor<1>>, Vec<Vec<usize>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        self.1.push(t.dims().to_vec());
        self.0.push(t.reshape([-1]));
    }
}

/// Puts the collected values into a module of the same structure on another device.
struct Fill(std::vec::IntoIter<TensorData>, Device);

impl ModuleMapper for Fill {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let data = self.0.next().expect("same module structure");
        let device = self.1.clone();
        param.map(move |_| Tensor::from_data(data, &device))
    }
}

/// The fine-tuned weights as checkpoint files (object URLs): read back asynchronously into a CPU
/// copy of the model, which Burn's record writer can then serialise synchronously.
async fn download(s: &State) -> Result<(), String> {
    let tuned = s.tuned.borrow().clone().ok_or("no fine-tuned model yet")?;
    let loaded = s.loaded.borrow().clone().ok_or("no model loaded")?;
    let mut collect = Collect(Vec::new(), Vec::new());
    tuned.visit(&mut collect);
    let mut datas = Vec::new();
    for (t, shape) in collect.0.into_iter().zip(collect.1) {
        datas.push(TensorData::new(read::<1, Float, f32>(t).await?, shape));
    }
    let cpu = Device::flex();
    let host_model = loaded.ckpt.config.init(&cpu).map(&mut Fill(datas.into_iter(), cpu));
    let tok = loaded.ckpt.tokenizer.clone();
    let ckpt = Checkpoint::from_model(host_model, &loaded.ckpt.config, tok, "fine-tuned in the Coconut page").map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for (name, bytes, mime) in [
        ("manifest.json", serde_json::to_vec_pretty(&ckpt.manifest).map_err(|e| e.to_string())?, "application/json"),
        ("config.json", serde_json::to_vec_pretty(&ckpt.config).map_err(|e| e.to_string())?, "application/json"),
        ("tokenizer.json", ckpt.tokenizer.to_json().map_err(|e| e.to_string())?.into_bytes(), "application/json"),
        ("model.bpk", ckpt.weights.clone(), "application/octet-stream"),
    ] {
        files.push((name.to_string(), object_url(&bytes, mime)?));
    }
    s.post(&FromWorker::DownloadReady { files });
    Ok(())
}

fn object_url(bytes: &[u8], mime: &str) -> Result<String, String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).map_err(|e| format!("{e:?}"))?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))
}
