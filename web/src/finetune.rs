//! Fine-tuning in the tab: settings, progress, the loss chart, held-out accuracy, downloads.

use web_sys::HtmlInputElement;

use yew::prelude::*;

use crate::app::{Page, WorkerHandle};
use crate::chart::LossChart;
use crate::protocol::*;

#[derive(Clone, Default, PartialEq)]
pub(crate) struct FineTuneView {
    pub(crate) running: bool,
    pub(crate) paused: bool,
    pub(crate) total_steps: usize,
    pub(crate) step: usize,
    pub(crate) stage: usize,
    pub(crate) samples_per_s: f64,
    pub(crate) losses: Vec<(usize, f32)>,
    pub(crate) accuracy: Vec<(usize, f64)>,
    pub(crate) last_eval: Option<(usize, usize, f64)>,
    pub(crate) info: Option<String>,
    pub(crate) finished: Option<bool>,
    pub(crate) error: Option<String>,
    pub(crate) in_use: bool,
    pub(crate) downloads: Vec<(String, String)>,
}

/// Folds one fine-tune event from the worker into what the panel shows.
pub(crate) fn fine_tune_event(ft: &mut FineTuneView, ev: FineTuneEvent) {
    match ev {
        FineTuneEvent::Started { total_steps, train_questions, heldout_questions, seed } => {
            *ft = FineTuneView {
                running: true,
                total_steps,
                info: Some(format!("{train_questions} generated questions (seed {seed}), {heldout_questions} held out")),
                ..FineTuneView::default()
            };
        }
        FineTuneEvent::Step { step, stage, loss, samples_per_s } => {
            ft.step = step;
            ft.stage = stage;
            ft.samples_per_s = samples_per_s;
            ft.losses.push((step, loss));
        }
        FineTuneEvent::Eval { step, stage, k, accuracy } => {
            ft.accuracy.push((step, accuracy));
            ft.last_eval = Some((stage, k, accuracy));
        }
        FineTuneEvent::Paused { .. } => ft.paused = true,
        FineTuneEvent::Resumed { .. } => ft.paused = false,
        FineTuneEvent::Finished { cancelled, .. } => {
            ft.running = false;
            ft.paused = false;
            ft.finished = Some(cancelled);
        }
        FineTuneEvent::Failed { message } => {
            ft.running = false;
            ft.error = Some(message);
        }
        FineTuneEvent::InUse => ft.in_use = true,
    }
}

#[derive(Properties, PartialEq)]
pub struct FineTuneProps {
    pub ft_loaded: bool,
    pub worker: WorkerHandle,
    pub page: UseReducerHandle<Page>,
}

#[function_component(FineTunePanel)]
pub fn fine_tune_panel(p: &FineTuneProps) -> Html {
    let settings = use_state(FineTuneSettings::default);
    let ft = &p.page.ft;
    let num = |field: &'static str| {
        let settings = settings.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            let mut s = (*settings).clone();
            let v = input.value();
            match field {
                "stages" => s.last_stage = v.parse().unwrap_or(s.last_stage).min(6),
                "steps" => s.steps_per_stage = v.parse().unwrap_or(s.steps_per_stage).max(1),
                "batch" => s.batch_size = v.parse().unwrap_or(s.batch_size).clamp(1, 64),
                "lr" => s.lr = v.parse().unwrap_or(s.lr),
                "seed" => s.seed = v.parse().unwrap_or(s.seed),
                "heldout" => s.heldout = v.parse().unwrap_or(s.heldout).min(256),
                _ => s.from_scratch = input.checked(),
            }
            settings.set(s);
        })
    };
    let send = |msg: ToWorker| {
        let worker = p.worker.clone();
        Callback::from(move |_: MouseEvent| worker.send(&msg))
    };
    let progress = if ft.total_steps > 0 { ft.step as f64 / ft.total_steps as f64 } else { 0.0 };
    html! {
      <>
        <p class="note">{"A short Coconut curriculum on freshly generated questions, with Burn's autodiff on this tab's backend: \
            stage s replaces the first s reasoning steps by s continuous thoughts; the optimizer is reset at each stage."}</p>
        <div class="row settings">
          <label>{"last stage "}<input type="number" min="0" max="6" value={settings.last_stage.to_string()} onchange={num("stages")} /></label>
          <label>{"steps per stage "}<input type="number" min="1" value={settings.steps_per_stage.to_string()} onchange={num("steps")} /></label>
          <label>{"batch "}<input type="number" min="1" max="64" value={settings.batch_size.to_string()} onchange={num("batch")} /></label>
          <label>{"lr "}<input type="text" inputmode="decimal" size="7" value={settings.lr.to_string()} onchange={num("lr")} /></label>
          <label>{"seed "}<input type="number" min="0" value={settings.seed.to_string()} onchange={num("seed")} /></label>
          <label>{"held out "}<input type="number" min="0" max="256" value={settings.heldout.to_string()} onchange={num("heldout")} /></label>
          <label><input type="checkbox" checked={settings.from_scratch} onchange={num("scratch")} />{" from scratch (same shape, fresh weights)"}</label>
        </div>
        <div class="row">
          <button class="primary" data-testid="finetune-start" disabled={!p.ft_loaded || ft.running}
                  onclick={send(ToWorker::FineTune((*settings).clone()))}>{"Start fine-tuning"}</button>
          if ft.running && !ft.paused { <button onclick={send(ToWorker::Pause)}>{"Pause"}</button> }
          if ft.running && ft.paused { <button onclick={send(ToWorker::Resume)}>{"Resume"}</button> }
          if ft.running { <button onclick={send(ToWorker::Cancel)}>{"Cancel"}</button> }
          <button disabled={ft.losses.is_empty()} onclick={send(ToWorker::UseFineTuned)}>{"Use this model"}</button>
          <button disabled={ft.losses.is_empty()} onclick={send(ToWorker::Download)}>{"Download checkpoint"}</button>
        </div>
        <progress data-testid="finetune-progress" max="1" value={progress.to_string()} aria-label="Fine-tuning progress"></progress>
        <p class="status" data-testid="finetune-status">
          { if ft.total_steps > 0 {
              format!("step {} / {} · stage {} · {:.1} samples/s{}{}{}", ft.step, ft.total_steps, ft.stage, ft.samples_per_s,
                  ft.losses.last().map(|l| format!(" · loss {:.3}", l.1)).unwrap_or_default(),
                  ft.last_eval.map(|(s, k, a)| format!(" · held-out accuracy {:.0}% (stage {s}, k = {k})", a * 100.0)).unwrap_or_default(),
                  if ft.paused { " · paused" } else { "" })
            } else { "not started".to_string() } }
          if let Some(info) = &ft.info { {format!(" · {info}")} }
          if ft.finished == Some(true) { {" · cancelled"} }
          if ft.finished == Some(false) { {" · finished"} }
          if ft.in_use { {" · the fine-tuned weights now answer questions"} }
        </p>
        <LossChart losses={ft.losses.clone()} accuracy={ft.accuracy.clone()} total_steps={ft.total_steps} />
        if let Some(e) = &ft.error { <p class="error" data-testid="error" role="alert">{format!("Fine-tuning stopped: {e}")}</p> }
        if !ft.downloads.is_empty() {
          <p class="downloads">{"Fine-tuned checkpoint: "}
            { for ft.downloads.iter().map(|(name, url)| html! { <a href={url.clone()} download={name.clone()}>{name.clone()}</a> }) }
          </p>
        }
      </>
    }
}
