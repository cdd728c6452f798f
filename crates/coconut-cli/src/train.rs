//! `coconut train`: the Coconut curriculum from a TOML config, with resumable checkpoints.
//!
//! Output directory: `config.toml` (the run's config), `metrics.jsonl`, `last/` (model checkpoint +
//! `optimizer.bpk` + `trainer.json`, written atomically every `checkpoint_every` steps and at every
//! epoch end), `best/` (the best validation accuracy). `--resume DIR` continues exactly: the data,
//! batch order, uniform-stage draws and dropout masks are functions of (seed, epoch, step), and the
//! optimizer state is restored, so a killed and resumed run ends with the weights of one that was not.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use coconut::checkpoint::{Checkpoint, replace_dir, temp_dir_for};
use coconut::curriculum::{Curriculum, Variant};
use coconut::data::Item;
use coconut::train::{OptimConfig, accuracy_at_stage, epoch_batches_by_length, optimizer_step, optimizer_step_multi, tokenize_items, training_batch};
use coconut::{CoconutTokenizer, Gpt2Config, hf, prontoqa, prosqa};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Required without `run.init` (a model from scratch); with it, the model is the init's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSection>,
    pub data: DataSection,
    #[serde(default)]
    pub curriculum: Curriculum,
    #[serde(default)]
    pub optim: OptimConfig,
    pub run: RunSection,
}

/// A small GPT-2 from scratch (word-level vocabulary); not allowed with `run.init`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    #[serde(default = "default_positions")]
    pub n_positions: usize,
    #[serde(default)]
    pub dropout: f64,
    /// Initial value of the learned position embedding: `normal` (GPT-2's, std 0.01) or
    /// `sinusoidal` (a sine/cosine table at the same scale, so attention by relative offset, e.g.
    /// "the token two back", exists from the first step). The architecture is GPT-2's either way.
    #[serde(default)]
    pub position_init: PositionInit,
    /// Offsets of first-layer heads that start out as position heads (`coconut::gpt2::with_offset_heads`,
    /// `with_rotary_offset_heads` with rotary positions):
    /// `[1, 2, 3, 4]` makes heads 0..3 attend 1, 2, 3 and 4 tokens back at step 0. Empty = GPT-2's init.
    #[serde(default)]
    pub offset_heads: Vec<usize>,
    /// How positions enter attention: `learned` (GPT-2's position embedding) or `rope` (rotary: each
    /// head's queries and keys rotated by their position, so what is learned about "3 tokens back"
    /// holds at every position and on longer questions). HF imports keep learned positions.
    #[serde(default)]
    pub position: PositionKind,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum PositionKind {
    #[default]
    Learned,
    Rope,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum PositionInit {
    #[default]
    Normal,
    Sinusoidal,
}

fn default_positions() -> usize {
    768
}

impl ModelSection {
    /// Stands in for the section when the model comes from `run.init` (only the checks use it).
    const FROM_INIT: Self = Self {
        n_layer: 1,
        n_embd: 1,
        n_head: 1,
        n_positions: 1,
        dropout: 0.0,
        position_init: PositionInit::Normal,
        offset_heads: Vec::new(),
        position: PositionKind::Learned,
    };
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `prosqa` or `prontoqa` (generated), or `files` (`train_file` / `val_file`).
    pub dataset: String,
    #[serde(default)]
    pub train_size: usize,
    #[serde(default)]
    pub val_size: usize,
    #[serde(default)]
    pub seed: u64,
    pub train_file: Option<PathBuf>,
    pub val_file: Option<PathBuf>,
    /// Generated datasets only: every epoch after the first trains on `train_size` newly generated
    /// questions (seeded by `seed` and the epoch; never a validation or official question), so a
    /// long run does not re-read the same graphs. Epoch 0 uses the first split.
    #[serde(default)]
    pub fresh_each_epoch: bool,
    /// Generated ProsQA only: start on small graphs and grow them to the full size.
    pub graph_warmup: Option<GraphWarmup>,
    /// The search stage, before the curriculum (it stands in for the language pre-training the
    /// paper starts from): the first `search_epochs` epochs train on each ProsQA question followed
    /// by every fact reachable from its person, breadth-first (`prosqa::breadth_first_steps`), and
    /// the answer. The curriculum's epoch 0 is the epoch after them.
    #[serde(default)]
    pub search_epochs: usize,
    /// Batches of similar length (`coconut::train::epoch_batches_by_length`): each epoch's random
    /// order is cut into windows of this many batches, sorted by length within a window, and the
    /// batches shuffled, so a batch pads less and a step computes fewer padded positions.
    /// 0 = random batches; 1 = random batches, each sorted (a batch split over devices gives each
    /// device items of similar length).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length_window: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A graph-size curriculum for generated ProsQA. Epoch `e < epochs` trains on `train_size` new
/// questions whose graphs have `min_nodes..=max_nodes` nodes and a shortest path of at least
/// `min_hops`; after the first `hold_epochs` each bound moves linearly towards the full size
/// (21..=26 nodes, 3 hops) as `e` grows; later epochs are full size. With few facts in the question the lookup the reasoning is
/// built from ("Every X is a ?" answered by the fact about X in the question) has few places to
/// look, so its gradient is not spread over ~40 facts. Validation is always full size.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GraphWarmup {
    pub epochs: usize,
    #[serde(default)]
    pub hold_epochs: usize,
    pub min_nodes: usize,
    pub max_nodes: usize,
    pub min_hops: usize,
}

impl GraphWarmup {
    /// The generator's settings at `epoch`, or `None` once the warm-up is over.
    pub fn gen_config(&self, epoch: usize) -> Option<prosqa::GenConfig> {
        if epoch >= self.epochs {
            return None;
        }
        let full = prosqa::GenConfig::default();
        let f = epoch.saturating_sub(self.hold_epochs) as f64 / self.epochs.saturating_sub(self.hold_epochs).max(1) as f64;
        let lerp = |a: usize, b: usize| (a as f64 + f * (b as f64 - a as f64)).round() as usize;
        Some(prosqa::GenConfig {
            min_nodes: lerp(self.min_nodes, full.min_nodes),
            max_nodes: lerp(self.max_nodes, full.max_nodes),
            min_hops: lerp(self.min_hops, full.min_hops),
            ..full
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub epochs: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Optimizer steps between checkpoints (besides every epoch end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// `hf:DIR` (HuggingFace GPT-2) or a checkpoint directory; absent = from scratch.
    pub init: Option<String>,
    /// The epoch a new run starts at (the official config's `resume`): with `init` = a CoT-trained
    /// checkpoint and `epochs_per_stage = e`, `start_epoch = e` skips stage 0 and begins at stage 1.
    #[serde(default)]
    pub start_epoch: usize,
    #[serde(default = "default_max_new_tokens")]
    pub eval_max_new_tokens: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

fn default_log_every() -> usize {
    10
}
fn default_checkpoint_every() -> usize {
    200
}
fn default_max_new_tokens() -> usize {
    64
}
fn default_eval_batch() -> usize {
    64
}

/// Where the run is: the next optimizer step to take.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch_in_epoch: usize,
    pub global_step: usize,
    pub stage: usize,
    /// Best validation accuracy at the current stage (`best/` holds that model): a new stage
    /// starts a new best, so at the end `best/` is the best model of the final stage, the one
    /// evaluated with the method's number of thoughts.
    pub best_val_accuracy: Option<f64>,
    /// Seconds spent in this run so far (training and validation, across resumes).
    #[serde(default)]
    pub elapsed_s: f64,
}

impl TrainConfig {
    /// Reads a config. `base = "other.toml"` (relative to this file) starts from that config, and
    /// this file's tables and keys override it, key by key.
    pub fn load(path: &Path) -> Result<Self> {
        let table = Self::load_table(path, 0)?;
        table.try_into().with_context(|| format!("{} is not a valid training config", path.display()))
    }

    fn load_table(path: &Path, depth: usize) -> Result<toml::Table> {
        if depth > 8 {
            bail!("{}: `base` chains more than 8 configs deep (a cycle?)", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not a valid TOML file", path.display()))?;
        let Some(base) = table.remove("base") else { return Ok(table) };
        let base = base.as_str().with_context(|| format!("{}: `base` must be a file name", path.display()))?;
        let mut merged = Self::load_table(&path.parent().unwrap_or(Path::new(".")).join(base), depth + 1)?;
        merge(&mut merged, table);
        Ok(merged)
    }

    /// Refuses values no run can train with, naming the key, before anything is written.
    pub fn validate(&self) -> Result<()> {
        let (o, r) = (&self.optim, &self.run);
        let m = match (&self.model, &self.run.init) {
            (Some(m), None) => m,
            (None, Some(_)) => &ModelSection::FROM_INIT,
            (None, None) => bail!("[model] is required for a model trained from scratch (no run.init)"),
            (Some(_), Some(init)) => bail!("[model] and run.init = \"{init}\" both say what the model is: keep one"),
        };
        if let Some(init) = &self.run.init
            && !init.starts_with("hf:")
            && Path::new(init).components().any(|c| c.as_os_str() == "runs")
        {
            bail!(
                "run.init = \"{init}\" points into runs/, which is not kept with the repository: use a committed checkpoint (checkpoints/) or hf:DIR"
            );
        }
        let checks: [(bool, &str); 12] = [
            (o.batch_size >= 1, "optim.batch_size must be at least 1"),
            (o.grad_accum >= 1, "optim.grad_accum must be at least 1"),
            (o.lr.is_finite() && o.lr > 0.0, "optim.lr must be a positive number"),
            (o.weight_decay.is_finite() && o.weight_decay >= 0.0, "optim.weight_decay must be 0 or more"),
            (o.epsilon.is_finite() && o.epsilon > 0.0, "optim.epsilon must be positive"),
            (o.grad_clip.is_finite() && o.grad_clip >= 0.0, "optim.grad_clip must be 0 (off) or more"),
            (r.epochs >= 1, "run.epochs must be at least 1"),
            (
                r.log_every >= 1 && r.checkpoint_every >= 1 && r.eval_batch_size >= 1,
                "run.log_every, run.checkpoint_every and run.eval_batch_size must be at least 1",
            ),
            (self.run.init.is_some() || (m.n_layer >= 1 && m.n_positions >= 1), "model.n_layer and model.n_positions must be at least 1"),
            (
                self.run.init.is_some() || (m.n_head >= 1 && m.n_embd.is_multiple_of(m.n_head.max(1)) && m.n_embd >= 1),
                "model.n_embd must be a positive multiple of model.n_head",
            ),
            ((0.0..1.0).contains(&m.dropout), "model.dropout must be in [0, 1)"),
            (
                self.curriculum.c_thought >= 1 && self.curriculum.epochs_per_stage >= 1,
                "curriculum.c_thought and curriculum.epochs_per_stage must be at least 1",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(ok, _)| !ok) {
            bail!("{msg}");
        }
        if self.data.dataset != "files" && self.data.train_size == 0 {
            bail!("data.train_size must be at least 1 for a generated dataset");
        }
        if let Some(w) = &self.data.graph_warmup {
            for epoch in 0..w.epochs {
                if let Some(g) = w.gen_config(epoch) {
                    g.validate().map_err(|e| anyhow::anyhow!("data.graph_warmup at epoch {epoch}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// What a checkpoint of this run at `stage` was trained for (recorded in its manifest).
    pub fn trained_for(&self, stage: usize, tok: &CoconutTokenizer) -> coconut::checkpoint::TrainedFor {
        let c = &self.curriculum;
        coconut::checkpoint::TrainedFor {
            method: c.variant.name().into(),
            c_thought: c.c_thought,
            max_latent_stage: c.max_latent_stage,
            stage,
            k: c.eval_thoughts(stage, usize::MAX),
            tokenizer: tok.kind(),
        }
    }

    /// The keys whose values differ between two configs (`optim.lr`, `data.graph_warmup.epochs`).
    pub fn changed_keys(&self, other: &Self) -> Vec<String> {
        fn flat(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
            match v {
                toml::Value::Table(t) => {
                    t.iter().for_each(|(k, v)| flat(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out))
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let (mut a, mut b) = (Default::default(), Default::default());
        flat("", &toml::Value::try_from(self).expect("config serialises"), &mut a);
        flat("", &toml::Value::try_from(other).expect("config serialises"), &mut b);
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{k}: {} -> {}", a.get(k).map_or("unset", |v| v.as_str()), b.get(k).map_or("unset", |v| v.as_str())))
            .collect()
    }

    /// The curriculum stage of a run's epoch: the search stage's epochs train at stage 0 and come
    /// before the curriculum's epoch 0.
    pub fn stage_of_epoch(&self, epoch: usize) -> usize {
        self.curriculum.stage_of_epoch(epoch.saturating_sub(self.data.search_epochs))
    }

    /// How an epoch's sequences are built: the search stage trains every variant on the language
    /// listing (as CoT: no markers, no thoughts), later epochs on the configured variant.
    pub fn curriculum_of_epoch(&self, epoch: usize) -> Curriculum {
        let variant = if epoch < self.data.search_epochs { Variant::Cot } else { self.curriculum.variant };
        Curriculum { variant, ..self.curriculum.clone() }
    }
}

/// Overrides `base` with `over`: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn load_data(d: &DataSection, official: &Path) -> Result<(Vec<Item>, Vec<Item>)> {
    let read = |p: &Option<PathBuf>, what: &str| -> Result<Vec<Item>> {
        crate::infer::load_items(p.as_ref().with_context(|| format!("data.{what} is required for dataset = \"files\""))?)
    };
    Ok(match d.dataset.as_str() {
        "files" => (read(&d.train_file, "train_file")?, read(&d.val_file, "val_file")?),
        "prosqa" | "prontoqa" => {
            let all = generate_items(&d.dataset, d.train_size + d.val_size, d.seed, &official_questions(official)?)?;
            let (train, val) = all.split_at(d.train_size);
            (train.to_vec(), val.to_vec())
        }
        other => bail!("data.dataset `{other}` is not one of prosqa, prontoqa, files"),
    })
}

/// The official ProsQA validation and test questions in `dir` (`--official-data`): never trained on.
fn official_questions(dir: &Path) -> Result<HashSet<String>> {
    let mut questions = HashSet::new();
    for f in ["prosqa_valid.json", "prosqa_test.json"].map(|f| dir.join(f)) {
        if f.exists() {
            questions.extend(crate::infer::load_items(&f)?.into_iter().map(|i| i.question));
        }
    }
    Ok(questions)
}

/// `n` generated questions of `dataset`, none of them in `exclude`.
fn generate_items(dataset: &str, n: usize, seed: u64, exclude: &HashSet<String>) -> Result<Vec<Item>> {
    Ok(match dataset {
        "prosqa" => prosqa::generate(n, seed, &prosqa::GenConfig::default(), exclude).map_err(anyhow::Error::msg)?,
        // The ProntoQA generator is one seeded stream: drop excluded items and keep drawing.
        "prontoqa" => prontoqa::generate(n + exclude.len(), seed).into_iter().filter(|i| !exclude.contains(&i.question)).take(n).collect(),
        other => bail!("data.dataset `{other}` is not a generated dataset (prosqa, prontoqa)"),
    })
}

/// What a fresh epoch must never draw: the validation split and the official sets.
fn fresh_exclude(val: &[Item], official: &Path) -> Result<HashSet<String>> {
    let mut exclude = official_questions(official)?;
    exclude.extend(val.iter().map(|i| i.question.clone()));
    Ok(exclude)
}

/// The training questions of `epoch` when it does not reuse the first split (`None` when it does):
/// a new draw from the generator (a graph-size warm-up epoch, or any `epoch > 0` with
/// `fresh_each_epoch`), deterministic in (`seed`, `epoch`) so a resumed run sees the same data.
fn fresh_train_items(d: &DataSection, epoch: usize, exclude: &HashSet<String>) -> Result<Option<Vec<Item>>> {
    let seed = d.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    if let Some(small) = d.graph_warmup.as_ref().and_then(|w| w.gen_config(epoch)) {
        if d.dataset != "prosqa" {
            bail!("data.graph_warmup needs data.dataset = \"prosqa\", not `{}`", d.dataset);
        }
        return Ok(Some(
            prosqa::generate(d.train_size, seed, &small, exclude).map_err(|e| anyhow::anyhow!("data.graph_warmup at epoch {epoch}: {e}"))?,
        ));
    }
    if !d.fresh_each_epoch || epoch == 0 {
        return Ok(None);
    }
    generate_items(&d.dataset, d.train_size, seed, exclude).map(Some)
}

/// The search stage's items: each question's steps replaced by every fact reachable from its
/// person, breadth-first (`prosqa::breadth_first_steps`, seeded by `seed` and the item's index).
fn search_items(items: &[Item], seed: u64) -> Result<Vec<Item>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let steps = prosqa::breadth_first_steps(item, seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .context("data.search_epochs needs ProsQA questions with their graphs")?;
            Ok(Item { steps, ..item.clone() })
        })
        .collect()
}

/// Drops the metrics logged after the checkpoint a run resumes from (steps above `step`), so each
/// step appears once in metrics.jsonl after a kill and a resume.
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|line| {
            let logged = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_u64());
            logged.is_none_or(|s| s as usize <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() < text.len() {
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// Moves the time since `clock` into the run's elapsed time.
fn add_elapsed(state: &mut TrainerState, clock: &mut Instant) {
    state.elapsed_s += clock.elapsed().as_secs_f64();
    *clock = Instant::now();
}

/// Model and tokenizer at the start of a run.
fn initial_model(cfg: &TrainConfig, device: &Device) -> Result<(Gpt2Config, coconut::Gpt2, CoconutTokenizer)> {
    match cfg.run.init.as_deref() {
        None => {
            let vocab_text = prosqa::vocabulary_text() + &prontoqa_vocabulary();
            let tok = CoconutTokenizer::word_level([vocab_text.as_str()])?;
            let m = cfg.model.as_ref().context("[model] is required without run.init")?;
            let position = match m.position {
                PositionKind::Learned => coconut::gpt2::Position::Learned,
                PositionKind::Rope => coconut::gpt2::Position::Rope,
            };
            if position == coconut::gpt2::Position::Rope && m.position_init != PositionInit::Normal {
                bail!("model.position_init sets learned positions; it does not apply to model.position = \"rope\"");
            }
            let config = Gpt2Config {
                n_positions: m.n_positions,
                dropout: m.dropout,
                position,
                ..Gpt2Config::small(tok.vocab_size(), m.n_layer, m.n_embd, m.n_head)
            };
            device.seed(cfg.run.seed);
            let mut model = config.init(device);
            if m.position_init == PositionInit::Sinusoidal {
                model.wpe = burn::module::Param::from_tensor(coconut::gpt2::sinusoidal_positions(config.n_positions, config.n_embd, 0.01, device));
            }
            if !m.offset_heads.is_empty() {
                let head_dim = m.n_embd / m.n_head;
                if m.offset_heads.len() > m.n_head || head_dim < 16 {
                    bail!(
                        "model.offset_heads: {} offset heads need as many heads (n_head = {}) of at least 16 features (have {head_dim})",
                        m.offset_heads.len(),
                        m.n_head
                    );
                }
                model = match position {
                    coconut::gpt2::Position::Learned => coconut::gpt2::with_offset_heads(model, &m.offset_heads, 8, 3.0),
                    coconut::gpt2::Position::Rope => coconut::gpt2::with_rotary_offset_heads(model, &m.offset_heads, 10.0),
                };
            }
            Ok((config, model, tok))
        }
        Some(init) => {
            let (config, model, tok) = if let Some(dir) = init.strip_prefix("hf:") {
                hf::load_hf_dir(Path::new(dir), device)?
            } else {
                let ckpt = Checkpoint::load(Path::new(init))?;
                let model = ckpt.model(device)?;
                (ckpt.config, model, ckpt.tokenizer)
            };
            // Make room for the Coconut tokens; new rows start from "<<" as in the official code.
            let vocab = tok.vocab_size().max(config.vocab_size);
            let from = tok.encode("<<").ok().and_then(|ids| ids.first().copied()).unwrap_or(tok.special.eos) as usize;
            let model = model.resize_vocab(vocab, from);
            Ok((Gpt2Config { vocab_size: vocab, ..config }, model, tok))
        }
    }
}

fn prontoqa_vocabulary() -> String {
    format!(" {} True False true false or not : ", prontoqa::PROPERTIES.join(" "))
}

fn save_last(
    out: &Path,
    config: &Gpt2Config,
    model: &coconut::Gpt2,
    tok: &CoconutTokenizer,
    optim: &burn::optim::ModuleOptimizer,
    state: &TrainerState,
    cfg: &TrainConfig,
) -> Result<()> {
    let dir = out.join("last");
    let tmp = temp_dir_for(&dir)?;
    // Every file of the resumable state is in the manifest's checksums (checked on resume).
    let files = vec![
        (OPTIMIZER_FILE.to_string(), optim.into_bytes().map_err(|e| anyhow::anyhow!("{e}"))?.to_vec()),
        (STATE_FILE.to_string(), serde_json::to_string_pretty(state)?.into_bytes()),
        (CONFIG_FILE.to_string(), toml::to_string(cfg)?.into_bytes()),
    ];
    Checkpoint::from_model(model.valid(), config, tok.clone(), "coconut train")?
        .with_files(files)
        .trained_for(cfg.trained_for(state.stage, tok))
        .write_files(&tmp)?;
    replace_dir(&tmp, &dir)?;
    Ok(())
}

const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "trainer.json";
/// The training config the checkpoint was trained with (a resume with another one is refused).
const CONFIG_FILE: &str = "train_config.toml";

/// What `coconut train` was asked to do.
pub struct RunArgs {
    pub config: PathBuf,
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    /// Replace the run `out` holds (its own files only).
    pub overwrite: bool,
    /// Resume with a config.toml that differs from the checkpoint's.
    pub allow_config_change: bool,
    /// The official ProsQA sets (never trained on).
    pub official_data: PathBuf,
    /// Stop (with a resumable checkpoint) after this many seconds of this invocation.
    pub time_budget: Option<f64>,
}

/// One writer per run directory: `train.lock` holds the writer's PID; a lock whose process is gone
/// (a killed run) is taken over. Removed when the run ends.
struct RunLock(PathBuf);

impl RunLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("train.lock");
        for _ in 0..3 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| path.display().to_string())?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if process_alive(pid) => bail!(
                            "{} is being written by another `coconut train` (PID {pid}, {}): wait for it or stop it (nothing was changed)",
                            dir.display(),
                            path.display()
                        ),
                        _ => {
                            eprintln!("note: {} was left by a run that is gone; taking it over", path.display());
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        bail!("{}: could not take the run's lock", path.display())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a process with this PID exists (Linux: /proc; elsewhere every lock counts as held).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

/// Removes the files of a training run from `out` (for `--overwrite`), nothing else.
fn remove_run(out: &Path) -> Result<()> {
    for name in ["config.toml", "metrics.jsonl", "metrics.jsonl.tmp"] {
        let p = out.join(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    for name in ["last", "best", ".last.tmp", ".best.tmp", ".last.old", ".best.old"] {
        let p = out.join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// The resumable state in `last/`: model checkpoint, optimizer and trainer state, all verified
/// against the manifest; the config it was trained with must be `cfg`, unless `allow_change`
/// (then the batch size may change only at an epoch end).
fn load_last(dir: &Path, cfg: &TrainConfig, allow_change: bool) -> Result<(Checkpoint, Vec<u8>, TrainerState)> {
    let last = dir.join("last");
    let ckpt = Checkpoint::load(&last).with_context(|| format!("resuming: {} is not a complete checkpoint", last.display()))?;
    let file = |name: &str| -> Result<Vec<u8>> {
        match ckpt.file(name) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => std::fs::read(last.join(name)).with_context(|| format!("resuming: {}", last.join(name).display())),
        }
    };
    let state: TrainerState = serde_json::from_slice(&file(STATE_FILE)?)
        .with_context(|| format!("resuming: {} is not a trainer state", last.join(STATE_FILE).display()))?;
    match ckpt.file(CONFIG_FILE) {
        Some(bytes) => {
            let trained: TrainConfig =
                toml::from_str(std::str::from_utf8(bytes)?).with_context(|| format!("resuming: {}", last.join(CONFIG_FILE).display()))?;
            let changed = trained.changed_keys(cfg);
            if !changed.is_empty() && !allow_change {
                bail!(
                    "{} differs from the config last/ was trained with ({}): restore it, or pass --allow-config-change to train on with the new values",
                    dir.join("config.toml").display(),
                    changed.join("; ")
                );
            }
            if !changed.is_empty() {
                if (trained.optim.batch_size != cfg.optim.batch_size || trained.data.length_window != cfg.data.length_window) && state.batch_in_epoch > 0 {
                    bail!(
                        "optim.batch_size or data.length_window changed in the middle of epoch {} (batch {}): resume from an epoch-end checkpoint to change it",
                        state.epoch,
                        state.batch_in_epoch
                    );
                }
                eprintln!("note: training on with a changed config: {}", changed.join("; "));
            }
        }
        None => eprintln!("note: {} does not record its training config; {} is used as it is", last.display(), dir.join("config.toml").display()),
    }
    let optimizer = file(OPTIMIZER_FILE)?;
    Ok((ckpt, optimizer, state))
}

/// Trains on `devices[0]`, or data-parallel over all of `devices` (each batch split into one shard
/// per device, gradients summed by Burn's multi-device optimizer step).
pub fn train(run: &RunArgs, devices: Vec<Device>) -> Result<()> {
    let device = devices[0].clone();
    let replicas: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let resume = run.resume.as_deref();
    let out = resume.unwrap_or(&run.out).to_path_buf();
    // A resumed run is locked before its state is read; a new one once its inputs are valid.
    let mut lock = match resume {
        Some(dir) if dir.join("last").is_dir() => Some(RunLock::acquire(dir)?),
        Some(dir) => bail!("--resume {}: no training run there (no last/ checkpoint)", dir.display()),
        None => None,
    };
    let cfg = match resume {
        Some(dir) => TrainConfig::load(&dir.join("config.toml")).context("resuming: the run's config.toml")?,
        None => TrainConfig::load(&run.config)?,
    };
    cfg.validate()
        .with_context(|| format!("{} is not a valid training config", resume.map_or(run.config.clone(), |d| d.join("config.toml")).display()))?;
    if resume.is_none() && !run.overwrite && (out.join("metrics.jsonl").exists() || out.join("last").exists()) {
        bail!(
            "{} already holds a training run: continue it with `--resume {0}`, replace it with `--overwrite`, or choose another --out (nothing was changed)",
            out.display()
        );
    }
    if !run.official_data.join("prosqa_test.json").exists() && cfg.data.dataset == "prosqa" {
        eprintln!(
            "warning: {} has no official ProsQA sets: generated training questions are not checked against them (--official-data)",
            run.official_data.display()
        );
    }
    let train_device = device.clone().autodiff();
    let (train_items, val_items) = load_data(&cfg.data, &run.official_data)?;
    let (config, mut model, tok, mut optim, mut state) = match resume {
        None => {
            let (config, model, tok) = initial_model(&cfg, &train_device)?;
            if cfg.run.start_epoch >= cfg.run.epochs {
                bail!("run.start_epoch = {} leaves no epoch to train (run.epochs = {})", cfg.run.start_epoch, cfg.run.epochs);
            }
            let state = TrainerState {
                epoch: cfg.run.start_epoch,
                batch_in_epoch: 0,
                global_step: 0,
                stage: cfg.stage_of_epoch(cfg.run.start_epoch),
                best_val_accuracy: None,
                elapsed_s: 0.0,
            };
            (config, model, tok, cfg.optim.optimizer(), state)
        }
        Some(dir) => {
            let (ckpt, optimizer, state) = load_last(dir, &cfg, run.allow_config_change)?;
            let model = ckpt.model(&train_device)?.train();
            let optim = cfg
                .optim
                .optimizer()
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(optimizer))
                .map_err(|e| anyhow::anyhow!("resuming: {}: {e}", dir.join("last").join(OPTIMIZER_FILE).display()))?;
            eprintln!("resuming at epoch {}, batch {} (step {})", state.epoch, state.batch_in_epoch, state.global_step);
            truncate_metrics(&dir.join("metrics.jsonl"), state.global_step)?;
            (ckpt.config, model, ckpt.tokenizer, optim, state)
        }
    };
    if cfg.data.fresh_each_epoch && cfg.data.dataset == "files" {
        bail!("data.fresh_each_epoch needs a generated dataset (prosqa, prontoqa), not files");
    }
    let draws_new = cfg.data.fresh_each_epoch || cfg.data.graph_warmup.is_some() || cfg.data.search_epochs > 0;
    let never_train = if draws_new { fresh_exclude(&val_items, &run.official_data)? } else { HashSet::new() };
    // The first split, and an epoch's own draw when it has one (warm-up or fresh epochs).
    let first_data = tokenize_items(&train_items, &tok).map_err(anyhow::Error::msg)?;
    let mut drawn: Option<Vec<coconut::curriculum::Tokenized>> = None;
    let val_data = tokenize_items(&val_items, &tok).map_err(anyhow::Error::msg)?;
    let c = &cfg.curriculum;
    let fits = |data: &[coconut::curriculum::Tokenized]| -> Result<()> {
        let longest = data
            .iter()
            .chain(&val_data)
            .map(|t| {
                t.question.len()
                    + 2
                    + c.max_latent_stage * c.c_thought
                    + t.steps.iter().map(Vec::len).sum::<usize>()
                    + t.answer.len()
                    + cfg.run.eval_max_new_tokens
            })
            .max()
            .unwrap_or(0);
        if longest > config.n_positions {
            bail!(
                "sequences reach {longest} positions (with thoughts and eval_max_new_tokens), more than the model's n_positions = {}",
                config.n_positions
            );
        }
        Ok(())
    };
    fits(&first_data)?;
    if lock.is_none() {
        // The inputs are valid: only now is the run directory written.
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        lock = Some(RunLock::acquire(&out)?);
        if run.overwrite {
            remove_run(&out)?;
        }
        let config_toml = out.join("config.toml");
        std::fs::write(&config_toml, toml::to_string(&cfg)?).with_context(|| format!("cannot write {}", config_toml.display()))?;
    }
    if replicas.len() > 1 && config.dropout > 0.0 {
        eprintln!(
            "note: dropout {} with {} workers: their dropout masks depend on thread timing, so this run is not bit-reproducible (--devices 1 is)",
            config.dropout,
            replicas.len()
        );
    }
    let steps_per_epoch = train_items.len().div_ceil(cfg.optim.batch_size.max(1));
    eprintln!(
        "training {} on {} device(s) ({} layers, d={}, {:.2}M parameters, vocab {}) on {} {} questions, {} epochs x {} steps, variant {}",
        out.display(),
        replicas.len(),
        config.n_layer,
        config.n_embd,
        config.num_params() as f64 / 1e6,
        config.vocab_size,
        train_items.len(),
        cfg.data.dataset,
        cfg.run.epochs,
        steps_per_epoch,
        cfg.curriculum.variant.name()
    );
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics =
        std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path).with_context(|| metrics_path.display().to_string())?;
    let bar = ProgressBar::new((cfg.run.epochs.saturating_sub(cfg.run.start_epoch) * steps_per_epoch) as u64).with_position(state.global_step as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, ETA {eta} | {msg}").expect("template"));
    let mut window = (Instant::now(), 0usize);

    let mut clock = Instant::now();
    let started = Instant::now();
    // Stages past the last are one phase (every step is a thought); a new phase starts a new best.
    let phase = |s: usize| s.min(cfg.curriculum.max_latent_stage + 1);
    while state.epoch < cfg.run.epochs {
        let stage = cfg.stage_of_epoch(state.epoch);
        if phase(stage) != phase(state.stage) {
            state.best_val_accuracy = None;
        }
        if state.batch_in_epoch == 0 && state.epoch > 0 && stage != cfg.stage_of_epoch(state.epoch - 1) && cfg.optim.reset_optimizer {
            optim = cfg.optim.optimizer();
        }
        state.stage = stage;
        if draws_new {
            let fresh = fresh_train_items(&cfg.data, state.epoch, &never_train)?;
            let fresh = match (state.epoch < cfg.data.search_epochs, fresh) {
                (true, items) => Some(search_items(items.as_deref().unwrap_or(&train_items), cfg.data.seed ^ state.epoch as u64)?),
                (false, items) => items,
            };
            drawn = match fresh {
                Some(items) => {
                    let data = tokenize_items(&items, &tok).map_err(anyhow::Error::msg)?;
                    fits(&data)?;
                    Some(data)
                }
                None => None,
            };
        }
        let train_data = drawn.as_deref().unwrap_or(&first_data);
        let curriculum = cfg.curriculum_of_epoch(state.epoch);
        let lengths: Vec<usize> = train_data.iter().map(coconut::curriculum::Tokenized::chain_len).collect();
        let batches = epoch_batches_by_length(&lengths, cfg.optim.batch_size, cfg.run.seed, state.epoch, cfg.data.length_window);
        while state.batch_in_epoch < batches.len() {
            let indices = &batches[state.batch_in_epoch];
            // Data-parallel when every device gets at least one item of this batch.
            let multi = replicas.len() > 1 && indices.len() >= replicas.len();
            let parts = if multi { replicas.len() } else { cfg.optim.grad_accum.max(1) };
            let micro_batches: Vec<_> = indices
                .chunks(indices.len().div_ceil(parts).max(1))
                .enumerate()
                .map(|(j, ix)| {
                    let d = if multi { &replicas[j] } else { &train_device };
                    training_batch(train_data, ix, &curriculum, stage, &tok, cfg.run.seed, state.global_step * 1024 + j, d)
                })
                .collect();
            train_device.seed(cfg.run.seed ^ (state.global_step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)); // dropout masks
            let lr = cfg.optim.lr_at(state.global_step);
            let (next, loss) = if multi && micro_batches.len() == replicas.len() {
                optimizer_step_multi(model, &mut optim, &micro_batches, &replicas, &curriculum, lr)
            } else {
                optimizer_step(model, &mut optim, &micro_batches, &curriculum, lr)
            };
            model = next;
            state.batch_in_epoch += 1;
            state.global_step += 1;
            window.1 += indices.len();
            bar.inc(1);
            if state.global_step % cfg.run.log_every.max(1) == 0 || state.batch_in_epoch == batches.len() {
                let loss: f32 = loss.into_scalar();
                if !loss.is_finite() {
                    let last = out.join("last");
                    let kept = if last.join(STATE_FILE).exists() {
                        format!("The last good checkpoint is {}", last.display())
                    } else {
                        "No checkpoint was written before it (lower optim.lr or set optim.grad_clip)".to_string()
                    };
                    bail!("loss is {loss} at step {} (epoch {}); stopping. {kept}", state.global_step, state.epoch);
                }
                let sps = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                window = (Instant::now(), 0);
                bar.set_message(format!("epoch {} stage {stage} loss {loss:.4} {sps:.1} samples/s", state.epoch));
                writeln!(
                    metrics,
                    "{}",
                    serde_json::json!({"step": state.global_step, "epoch": state.epoch, "stage": stage, "loss": loss, "lr": lr, "samples_per_s": sps, "time_s": state.elapsed_s + clock.elapsed().as_secs_f64()})
                )?;
            }
            if state.global_step % cfg.run.checkpoint_every.max(1) == 0 && state.batch_in_epoch < batches.len() {
                add_elapsed(&mut state, &mut clock);
                save_last(&out, &config, &model, &tok, &optim, &state, &cfg)?;
            }
            if run.time_budget.is_some_and(|b| started.elapsed().as_secs_f64() >= b) && state.batch_in_epoch < batches.len() {
                add_elapsed(&mut state, &mut clock);
                save_last(&out, &config, &model, &tok, &optim, &state, &cfg)?;
                bar.finish_and_clear();
                eprintln!(
                    "time budget of {:.0} s reached at step {} (epoch {}, batch {}): saved {}; continue with `--resume {}`",
                    run.time_budget.unwrap_or(0.0),
                    state.global_step,
                    state.epoch,
                    state.batch_in_epoch,
                    out.join("last").display(),
                    out.display()
                );
                drop(lock);
                return Ok(());
            }
        }
        // Epoch end: validation accuracy with the stage's thoughts, checkpoints.
        let eval_model = model.valid();
        let eval_device = eval_model.device();
        let (acc, k) = accuracy_at_stage(
            &eval_model,
            &val_items,
            &val_data,
            &cfg.curriculum,
            stage,
            &tok,
            cfg.run.eval_batch_size,
            cfg.run.eval_max_new_tokens,
            &eval_device,
        );
        add_elapsed(&mut state, &mut clock);
        writeln!(
            metrics,
            "{}",
            serde_json::json!({"step": state.global_step, "epoch": state.epoch, "stage": stage, "val_accuracy": acc, "k": k, "time_s": state.elapsed_s})
        )?;
        bar.println(format!("epoch {} (stage {stage}, k={k}): validation accuracy {:.1}%", state.epoch, 100.0 * acc));
        state.epoch += 1;
        state.batch_in_epoch = 0;
        if state.best_val_accuracy.is_none_or(|b| acc > b) {
            state.best_val_accuracy = Some(acc);
            Checkpoint::from_model(model.valid(), &config, tok.clone(), "coconut train (best)")?
                .trained_for(cfg.trained_for(stage, &tok))
                .save(&out.join("best"))?;
        }
        save_last(&out, &config, &model, &tok, &optim, &state, &cfg)?;
    }
    bar.finish();
    eprintln!(
        "done: {} in {:.0} s (best validation accuracy at the final stage {:.1}%)",
        out.display(),
        state.elapsed_s,
        100.0 * state.best_val_accuracy.unwrap_or(0.0)
    );
    drop(lock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official sets, wherever the tests run from.
    fn official() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/prosqa")
    }

    #[test]
    fn every_shipped_config_parses_and_is_a_valid_run() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                // Valid as a run: values in range, [model] xor run.init, no init in runs/.
                cfg.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 6, "configs/ has the small and the paper configs");
    }

    #[test]
    fn every_config_is_described_in_the_readme() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for entry in std::fs::read_dir(root.join("configs")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let stem = name.trim_end_matches(".toml");
            let sibling = stem.rsplit_once("-search-").map(|(_, v)| format!("`-{v}.toml`"));
            assert!(
                readme.contains(&format!("configs/{name}")) || sibling.is_some_and(|s| readme.contains(&s)),
                "configs/{name} is not described in README.md's config table"
            );
        }
    }

    #[test]
    fn fresh_epochs_draw_new_questions_and_never_validation_ones() {
        let d = DataSection {
            dataset: "prosqa".into(),
            train_size: 300,
            val_size: 50,
            seed: 5,
            train_file: None,
            val_file: None,
            fresh_each_epoch: true,
            graph_warmup: None,
            search_epochs: 0,
        };
        let (first, val) = load_data(&d, &official()).unwrap();
        let exclude = fresh_exclude(&val, &official()).unwrap();
        assert_eq!(fresh_train_items(&d, 0, &exclude).unwrap(), None, "epoch 0 is the first split");
        let one = fresh_train_items(&d, 1, &exclude).unwrap().unwrap();
        let two = fresh_train_items(&d, 2, &exclude).unwrap().unwrap();
        assert_eq!(one.len(), 300);
        assert_eq!(Some(&one), fresh_train_items(&d, 1, &exclude).unwrap().as_ref(), "a resumed run must see the same epoch");
        let seen: HashSet<&str> = first.iter().map(|i| i.question.as_str()).collect();
        let held: HashSet<&str> = val.iter().map(|i| i.question.as_str()).collect();
        let new = |e: &[Item]| e.iter().filter(|i| !seen.contains(i.question.as_str())).count();
        assert!(new(&one) > 290 && new(&two) > 290, "epochs 1 and 2 are new graphs");
        assert_ne!(one, two);
        assert!(one.iter().chain(&two).all(|i| !held.contains(i.question.as_str())), "no validation question is trained on");
        let files = DataSection { dataset: "files".into(), ..d };
        assert!(fresh_train_items(&files, 1, &exclude).unwrap_err().to_string().contains("generated dataset"));
    }

    #[test]
    fn graph_warmup_grows_small_graphs_to_full_size_then_stops() {
        let warmup = GraphWarmup { epochs: 4, hold_epochs: 0, min_nodes: 6, max_nodes: 9, min_hops: 1 };
        let d = DataSection {
            dataset: "prosqa".into(),
            train_size: 200,
            val_size: 50,
            seed: 7,
            train_file: None,
            val_file: None,
            fresh_each_epoch: false,
            graph_warmup: Some(warmup.clone()),
            search_epochs: 0,
        };
        let (_, val) = load_data(&d, &official()).unwrap();
        let exclude = fresh_exclude(&val, &official()).unwrap();
        let nodes = |items: &[Item]| items.iter().map(|i| i.idx_to_symbol.as_ref().unwrap().len()).collect::<Vec<_>>();
        let first = fresh_train_items(&d, 0, &exclude).unwrap().expect("epoch 0 is a warm-up epoch");
        assert_eq!(first.len(), 200);
        assert!(nodes(&first).iter().all(|n| (6..=9).contains(n)), "epoch 0: 6..=9 nodes, got {:?}", nodes(&first));
        assert!(first.iter().all(|i| prosqa::validate(i).is_ok()), "small graphs are valid ProsQA items");
        assert!(first.iter().any(|i| i.steps.len() < 3), "one-hop and two-hop questions appear");
        // Half-way: 6 + (21 - 6) / 2 = 13.5 -> 14 and 9 + (26 - 9) / 2 = 17.5 -> 18 nodes, 2 hops.
        let mid = warmup.gen_config(2).unwrap();
        assert_eq!((mid.min_nodes, mid.max_nodes, mid.min_hops), (14, 18, 2));
        let mid_items = fresh_train_items(&d, 2, &exclude).unwrap().unwrap();
        assert!(nodes(&mid_items).iter().all(|n| (14..=18).contains(n)));
        assert_eq!(fresh_train_items(&d, 4, &exclude).unwrap(), None, "after the warm-up: the first split again");
        let held: HashSet<&str> = val.iter().map(|i| i.question.as_str()).collect();
        assert!(first.iter().chain(&mid_items).all(|i| !held.contains(i.question.as_str())));
        let held_small = GraphWarmup { epochs: 6, hold_epochs: 2, ..warmup.clone() };
        assert_eq!(held_small.gen_config(1), warmup.gen_config(0), "held at the small size");
        assert_eq!(held_small.gen_config(4), warmup.gen_config(2), "then grows over the remaining 4 epochs");
        let pronto = DataSection { dataset: "prontoqa".into(), ..d };
        assert!(fresh_train_items(&pronto, 0, &exclude).unwrap_err().to_string().contains("graph_warmup"));
    }

    #[test]
    fn search_stage_comes_before_the_curriculum_and_lists_reachable_facts() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
        cfg.curriculum = Curriculum { epochs_per_stage: 1, ..Curriculum::default() };
        cfg.data.search_epochs = 2;
        assert_eq!([0, 1, 2, 3, 4].map(|e| cfg.stage_of_epoch(e)), [0, 0, 0, 1, 2]);
        cfg.curriculum.variant = Variant::NoCot;
        assert_eq!(
            [0, 1, 2, 3].map(|e| cfg.curriculum_of_epoch(e).variant),
            [Variant::Cot, Variant::Cot, Variant::NoCot, Variant::NoCot],
            "No-CoT reads the listing too"
        );
        let items = prosqa::generate(20, 3, &prosqa::GenConfig::default(), &HashSet::new()).unwrap();
        let search = search_items(&items, 9).unwrap();
        for (item, s) in items.iter().zip(&search) {
            assert_eq!((&s.question, &s.answer), (&item.question, &item.answer));
            assert!(s.steps.len() > item.steps.len(), "every reachable fact, not one path");
            assert!(item.steps.iter().all(|step| s.steps.contains(step)), "the path's facts are among them");
            assert!(s.steps.iter().all(|step| item.question.contains(step.as_str())), "only facts the question states");
        }
        assert!(search_items(&[Item::text("q", &["s"], "a")], 0).unwrap_err().to_string().contains("search_epochs"));
    }

    #[test]
    fn a_config_overrides_its_base_key_by_key() {
        let dir = std::env::temp_dir().join(format!("coconut-base-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        std::fs::write(dir.join("base.toml"), base).unwrap();
        std::fs::write(dir.join("child.toml"), "base = \"base.toml\"\n[optim]\nlr = 0.5\n[data]\nsearch_epochs = 2\n").unwrap();
        let (b, c) = (TrainConfig::load(&dir.join("base.toml")).unwrap(), TrainConfig::load(&dir.join("child.toml")).unwrap());
        assert_eq!(c.optim.lr, 0.5);
        assert_eq!(c.optim.batch_size, b.optim.batch_size, "keys the child does not name come from the base");
        assert_eq!((c.data.search_epochs, &c.data.train_file), (2, &b.data.train_file));
        assert_eq!(c.model, b.model);
        std::fs::write(dir.join("loop.toml"), "base = \"loop.toml\"\n").unwrap();
        assert!(TrainConfig::load(&dir.join("loop.toml")).unwrap_err().to_string().contains("cycle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
