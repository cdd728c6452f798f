//! The typed messages between the UI thread and the model worker (serde + serde-wasm-bindgen).
//! The UI never touches the model; the worker never touches the DOM.

use coconut::analyze::{Analysis, ThoughtStep};
use serde::{Deserialize, Serialize};

/// UI → worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ToWorker {
    /// Fetch (or take from the browser cache), verify and load the exported model at `base`
    /// (a directory with `web.json`, as `coconut export-web` writes it).
    Load {
        base: String,
    },
    /// A checkpoint the user picked from disk (the four checkpoint files).
    LoadFiles {
        manifest: String,
        config: String,
        tokenizer: String,
        #[serde(with = "serde_bytes")]
        weights: Vec<u8>,
    },
    Ask(AskRequest),
    FineTune(FineTuneSettings),
    Pause,
    Resume,
    Cancel,
    /// Answer questions with the fine-tuned weights from now on.
    UseFineTuned,
    /// Pack the fine-tuned weights as a checkpoint and hand back download links.
    Download,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// k continuous thoughts, then language.
    Coconut,
    /// No thoughts (k = 0): the model reasons in language.
    Cot,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AskRequest {
    pub id: u32,
    pub question: String,
    pub k: usize,
    pub mode: Mode,
    /// Also answer with the exported model at this base (the CoT baseline), the way it was trained,
    /// right after the main answer: the two side by side.
    #[serde(default)]
    pub compare_with: Option<String>,
}

/// The comparison model's answer to the same question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparedAnswer {
    pub id: u32,
    /// The method it was trained with (`cot` for the baseline) and the thoughts it was asked with.
    pub method: String,
    pub k: usize,
    /// Its decoded continuation (the language chain and "### answer") and the answer sentence.
    pub text: String,
    pub answer: String,
    pub generate_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FineTuneSettings {
    /// Curriculum stages 0..=last_stage (stage s: s thoughts replace the first s steps).
    pub last_stage: usize,
    pub steps_per_stage: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Held-out accuracy every this many steps (0 = only at stage ends).
    pub eval_every: usize,
    /// Generated questions held out for the accuracy checks (0 = no checks).
    pub heldout: usize,
    /// Seed of the generated questions (shown, so a run can be repeated).
    pub seed: u64,
    /// Start from freshly initialised weights of the same shape instead of the loaded model.
    pub from_scratch: bool,
}

impl Default for FineTuneSettings {
    fn default() -> Self {
        Self { last_stage: 2, steps_per_stage: 100, batch_size: 8, lr: 1e-3, eval_every: 50, heldout: 32, seed: 1, from_scratch: false }
    }
}

/// Worker → UI.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FromWorker {
    /// The worker's wasm module is running and takes messages.
    Started,
    Backend(BackendInfo),
    Progress {
        file: String,
        loaded: u64,
        total: u64,
    },
    Loaded(ModelInfo),
    /// Loading failed; nothing half-loaded is kept (a model loaded before stays in use).
    LoadFailed {
        message: String,
    },
    /// The answer, with the graph; its frames follow one `Frame` each.
    Answer(Box<AnswerReport>),
    /// One latent-analysis frame (t thoughts) of the answer `id`, and its wall time.
    Frame {
        id: u32,
        step: ThoughtStep,
        ms: f64,
    },
    AskFailed {
        id: u32,
        message: String,
    },
    /// The comparison model's answer to question `id` (after `Answer`, before the frames).
    Compared(ComparedAnswer),
    FineTune(FineTuneEvent),
    /// Download links (object URLs) for the fine-tuned checkpoint's files.
    DownloadReady {
        files: Vec<(String, String)>,
    },
    Error {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    pub webgpu: bool,
    /// Why the CPU is used (None on WebGPU).
    pub reason: Option<String>,
}

impl BackendInfo {
    pub fn label(&self) -> &'static str {
        if self.webgpu { "WebGPU" } else { "CPU (wasm)" }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Where it came from: the shipped model's name, or the user's file.
    pub source: String,
    pub version: String,
    pub method: String,
    pub max_thoughts: usize,
    pub parameters: usize,
    pub layers: usize,
    pub width: usize,
    pub from_cache: bool,
    /// The tokenizer (JSON), so the UI can flag unknown words as the user types.
    pub tokenizer_json: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerReport {
    pub id: u32,
    pub k: usize,
    pub mode: Mode,
    /// The graph and, per thought t = 0..=k as the frames arrive, node values, frontier and top tokens.
    pub analysis: Analysis,
    /// The decoded continuation after the thoughts (language steps, if any, and "### answer").
    pub text: String,
    /// The answer sentence (after "###").
    pub answer: String,
    /// Wall time of each analysis frame t (prompt with t thoughts + node values), ms.
    pub frame_ms: Vec<f64>,
    /// Wall time of the answer: one multi-pass forward over k thoughts + cached greedy decoding.
    pub generate_ms: f64,
    pub backend: String,
}

impl AnswerReport {
    /// Extra cost of one continuous thought, (frame k − frame 1) / (k − 1) ms, once all frames are in.
    /// Frame 0 (and on WebGPU frame 1, the first latent pass) also pays one-off kernel compilation.
    /// A thought is one single-position pass over the KV cache: on a CPU its cost is within the
    /// frames' noise, so the figure exists only when it is measurable (positive).
    pub fn ms_per_thought(&self) -> Option<f64> {
        let (k, ms) = (self.k, &self.frame_ms);
        (k >= 2 && ms.len() == k + 1).then(|| (ms[k] - ms[1]) / (k - 1) as f64).filter(|v| *v > 0.0)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum FineTuneEvent {
    Started {
        total_steps: usize,
        train_questions: usize,
        heldout_questions: usize,
        seed: u64,
    },
    Step {
        step: usize,
        stage: usize,
        loss: f32,
        samples_per_s: f64,
    },
    Eval {
        step: usize,
        stage: usize,
        k: usize,
        accuracy: f64,
    },
    Paused {
        step: usize,
    },
    Resumed {
        step: usize,
    },
    Finished {
        step: usize,
        cancelled: bool,
    },
    Failed {
        message: String,
    },
    /// The fine-tuned weights now answer questions.
    InUse,
}
