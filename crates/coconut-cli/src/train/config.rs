//! The training config (`configs/*.toml`): model, data plan, curriculum, optimizer and run
//! sections; `base = "other.toml"` overrides another config key by key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use coconut::CoconutTokenizer;
use coconut::curriculum::{Curriculum, Variant};
use coconut::prosqa;
use coconut::train::OptimConfig;
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
    /// Offsets of first-layer heads that start out as position heads (`coconut::position_init::with_offset_heads`,
    /// `with_rotary_offset_heads` with rotary positions):
    /// `[1, 2, 3, 4]` makes heads 0..3 attend 1, 2, 3 and 4 tokens back at step 0. Empty = GPT-2's init.
    #[serde(default)]
    pub offset_heads: Vec<usize>,
    /// How positions enter attention: `learned` (GPT-2's position embedding) or `rope` (rotary: each
    /// head's queries and keys rotated by their position, so what is learned about "3 tokens back"
    /// holds at every position and on longer questions). HF imports keep learned positions.
    #[serde(default)]
    pub position: PositionKind,
    /// Rotary positions only: how many of each head's features are rotated (GPT-NeoX's partial
    /// rotary); the rest match on content at any distance. Unset: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary_dims: Option<usize>,
    /// Scalable-Softmax: each head's query at position p scaled by a learned s_h·ln(p + 1), so
    /// attention stays as sharp over a long question as over a short one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub length_scaled_attention: bool,
    /// Rotary positions only: layers (0-based) without rotation (NoPE), whose attention matches on
    /// content at any distance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nope_layers: Vec<usize>,
    /// Width of a causal convolution over time on each layer's queries, keys and values (Primer's
    /// multi-dconv-head attention), identity at the start: a key can carry the token a few
    /// positions back without a previous-token head below it. 0 = GPT-2's attention.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub qkv_conv: usize,
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
    /// The model's position encoding.
    pub fn position(&self) -> coconut::gpt2::Position {
        match self.position {
            PositionKind::Learned => coconut::gpt2::Position::Learned,
            PositionKind::Rope => coconut::gpt2::Position::Rope,
        }
    }

    /// The GPT-2 this section describes, over a vocabulary of `vocab_size` words.
    pub fn gpt2_config(&self, vocab_size: usize) -> coconut::Gpt2Config {
        coconut::Gpt2Config {
            n_positions: self.n_positions,
            dropout: self.dropout,
            position: self.position(),
            rotary_dims: self.rotary_dims,
            length_scaled_attention: self.length_scaled_attention,
            nope_layers: self.nope_layers.clone(),
            qkv_conv: self.qkv_conv,
            ..coconut::Gpt2Config::small(vocab_size, self.n_layer, self.n_embd, self.n_head)
        }
    }

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
        rotary_dims: None,
        length_scaled_attention: false,
        nope_layers: Vec::new(),
        qkv_conv: 0,
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
    /// The recall stage, first of all (it stands in for the language pre-training the paper starts
    /// from): the first `recall_epochs` epochs train, in language, on `train_size` newly drawn recall
    /// questions each (`prosqa::generate_recall`: one child per concept, so every "Every X is a ?"
    /// has one right answer), then the search stage, then the curriculum's epoch 0. With
    /// `model.qkv_conv` it forms the official-size lookup (RESULTS.md, "The lookup, formed").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recall_epochs: usize,
    /// The search stage, before the curriculum (it stands in for the language pre-training the
    /// paper starts from): the first `search_epochs` epochs train on each ProsQA question followed
    /// by every fact reachable from its person, breadth-first (`prosqa::breadth_first_steps`), and
    /// the answer. The curriculum's epoch 0 is the epoch after them.
    #[serde(default)]
    pub search_epochs: usize,
    /// After the search stage, this share of each epoch's questions (drawn by `seed` and the epoch)
    /// trains as its search listing instead (question, every fact reachable from the person
    /// breadth-first, answer) at stage 0, in language, while the others follow the curriculum: the
    /// lookup stays supervised, ~10–30 lookups a question, on the graphs the later epochs draw.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub search_share: f64,
    /// Generated ProsQA, fresh draws only (the warm-up's epochs and, with `fresh_each_epoch`, every
    /// epoch after the first; never the validation split): questions whose two options are named in
    /// equally many facts, so counting how often an option is named cannot answer them
    /// (`prosqa::GenConfig::equal_option_parents`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub equal_option_parents: bool,
    /// Batches of similar length (`coconut::train::epoch_batches_by_length`): each epoch's random
    /// order is cut into windows of this many batches, sorted by length within a window, and the
    /// batches shuffled, so a batch pads less and a step computes fewer padded positions.
    /// 0 = random batches; 1 = random batches, each sorted (a batch split over devices gives each
    /// device items of similar length).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length_window: usize,
}

impl DataSection {
    /// The epochs before the curriculum's epoch 0: the recall stage, then the search stage.
    pub fn pre_curriculum_epochs(&self) -> usize {
        self.recall_epochs + self.search_epochs
    }

    /// Whether `epoch` is one of the search stage's.
    pub fn is_search_epoch(&self, epoch: usize) -> bool {
        (self.recall_epochs..self.pre_curriculum_epochs()).contains(&epoch)
    }

    /// The stage before the curriculum that `epoch` belongs to, if any.
    pub fn pre_curriculum_stage(&self, epoch: usize) -> Option<&'static str> {
        if epoch < self.recall_epochs {
            Some("recall stage")
        } else if self.is_search_epoch(epoch) {
            Some("search stage")
        } else {
            None
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

/// A graph-size curriculum for generated ProsQA. Epoch `e < epochs` (counted after the recall stage) trains on `train_size` new
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
    /// Keep each epoch's model in `epochs/epoch-N/` (N = epochs done; a model checkpoint without
    /// optimizer state), so a run's learning curve can be measured afterwards on any question set.
    #[serde(default)]
    pub keep_epochs: bool,
    /// `hf:DIR` (HuggingFace GPT-2) or a checkpoint directory; absent = from scratch.
    pub init: Option<String>,
    /// The epoch a new run starts at (the official config's `resume`): with `init` = a CoT-trained
    /// checkpoint and `epochs_per_stage = e`, `start_epoch = e` skips stage 0 and begins at stage 1.
    #[serde(default)]
    pub start_epoch: usize,
    /// With `init`: blocks appended to the init's model, starting as the identity
    /// (`coconut::grow::deeper`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grow_layers: usize,
    /// With `init`: the init's model made this many times wider, MLP units copied, so it starts out
    /// computing what the init computes (`coconut::grow::wider`; 1 = unchanged).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub grow_width: usize,
    /// With `grow_width`: `more` (each head copied: k·n_head heads of the old size) or `wider`
    /// (n_head heads of k times the size: the old features, rotated as before, then new content
    /// features that match at any distance).
    #[serde(default, skip_serializing_if = "GrowHeads::is_more")]
    pub grow_heads: GrowHeads,
    /// With `init`: length-scaled attention grafted onto the init's model (`coconut::grow::length_scaled`),
    /// equal to its plain attention for the query that sees this many keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graft_length_scale: Option<usize>,
    #[serde(default = "default_max_new_tokens")]
    pub eval_max_new_tokens: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

/// How attention grows with `run.grow_width` (`coconut::grow::Heads`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum GrowHeads {
    #[default]
    More,
    Wider,
}

impl GrowHeads {
    fn is_more(&self) -> bool {
        *self == GrowHeads::More
    }

    pub fn heads(self) -> coconut::grow::Heads {
        match self {
            GrowHeads::More => coconut::grow::Heads::More,
            GrowHeads::Wider => coconut::grow::Heads::Wider,
        }
    }
}

fn one() -> usize {
    1
}
fn is_one(n: &usize) -> bool {
    *n == 1
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

impl TrainConfig {
    /// Reads a config. `base = "other.toml"` (relative to this file) starts from that config, and
    /// this file's tables and keys override it, key by key. A file that sets `run.init` takes its
    /// model from there, so its base's `[model]` is dropped (unless the file has its own).
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
        let own_init = table.get("run").and_then(|r| r.get("init")).is_some();
        if own_init && !table.contains_key("model") {
            merged.remove("model");
        }
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
        let checks: [(bool, &str); 15] = [
            (
                r.grow_width >= 1 && (r.init.is_some() || (r.grow_layers == 0 && r.grow_width == 1)),
                "run.grow_layers and run.grow_width grow the model of run.init (and run.grow_width must be at least 1)",
            ),
            (
                r.graft_length_scale.is_none_or(|n| n >= 2 && r.init.is_some()),
                "run.graft_length_scale grafts length-scaled attention onto the model of run.init, at 2 keys or more",
            ),
            (o.batch_size >= 1, "optim.batch_size must be at least 1"),
            (o.grad_accum >= 1, "optim.grad_accum must be at least 1"),
            (o.lr.is_finite() && o.lr > 0.0, "optim.lr must be a positive number"),
            (o.weight_decay.is_finite() && o.weight_decay >= 0.0, "optim.weight_decay must be 0 or more"),
            (o.epsilon.is_finite() && o.epsilon > 0.0, "optim.epsilon must be positive"),
            (o.grad_clip.is_finite() && o.grad_clip >= 0.0, "optim.grad_clip must be 0 (off) or more"),
            (
                o.decay_epochs <= r.epochs && o.min_lr.is_finite() && (0.0..=o.lr).contains(&o.min_lr),
                "optim.decay_epochs must be at most run.epochs, and optim.min_lr between 0 and optim.lr",
            ),
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
        if self.run.init.is_none() {
            m.gpt2_config(1).validate().map_err(|e| anyhow::anyhow!("[model]: {e}"))?;
        }
        if self.data.equal_option_parents && (self.data.dataset != "prosqa" || !(self.data.fresh_each_epoch || self.data.graph_warmup.is_some())) {
            bail!("data.equal_option_parents shapes fresh draws of generated ProsQA: it needs dataset = \"prosqa\" and fresh_each_epoch or a graph warm-up");
        }
        if self.curriculum.frontier_weight != 0.0 {
            if !(self.curriculum.frontier_weight.is_finite() && self.curriculum.frontier_weight > 0.0) {
                bail!("curriculum.frontier_weight must be a positive number (0 = off)");
            }
            if self.data.dataset != "prosqa" || !self.curriculum.variant.feeds_back() {
                bail!("curriculum.frontier_weight supervises continuous thoughts on ProsQA's graphs: it needs dataset = \"prosqa\" and a variant that feeds thoughts back (coconut, no-curriculum)");
            }
        }
        if self.data.search_share != 0.0 {
            if !(0.0..=1.0).contains(&self.data.search_share) {
                bail!("data.search_share must be between 0 and 1");
            }
            if self.data.dataset != "prosqa" {
                bail!("data.search_share needs generated ProsQA questions (dataset = \"prosqa\"): a listing is read off the question's graph");
            }
            if matches!(self.curriculum.variant, Variant::NoCot) {
                bail!("data.search_share trains listings at stage 0, where variant no-cot has no steps");
            }
        }
        if self.data.recall_epochs > 0 && self.data.dataset != "prosqa" {
            bail!("data.recall_epochs trains on recall questions in ProsQA's words: it needs dataset = \"prosqa\", not `{}`", self.data.dataset);
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

    /// The curriculum stage of a run's epoch: the recall and search stages' epochs train at stage 0
    /// and come before the curriculum's epoch 0.
    pub fn stage_of_epoch(&self, epoch: usize) -> usize {
        self.curriculum.stage_of_epoch(epoch.saturating_sub(self.data.pre_curriculum_epochs()))
    }

    /// How an epoch's sequences are built: the recall and search stages train every variant in
    /// language (as CoT: no markers, no thoughts), later epochs on the configured variant.
    pub fn curriculum_of_epoch(&self, epoch: usize) -> Curriculum {
        let variant = if epoch < self.data.pre_curriculum_epochs() { Variant::Cot } else { self.curriculum.variant };
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


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_parses_and_is_a_valid_run() {
        let mut n = 0;
        for path in config_files() {
            let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            // Valid as a run: values in range, [model] xor run.init, no init in runs/.
            cfg.validate().unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
        assert!(n >= 6, "configs/ has the small and the paper configs");
    }

    /// configs/*.toml and configs/experiments/*.toml.
    fn config_files() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut files = Vec::new();
        for d in [dir.clone(), dir.join("experiments")] {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
        files
    }

    #[test]
    fn every_config_is_described_in_the_readme() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for path in config_files() {
            let name = path.strip_prefix(root.join("configs")).unwrap_or(&path).display().to_string();
            let stem = name.trim_end_matches(".toml");
            // A recipe's Table-1 siblings are listed once, by their suffix.
            let sibling = stem.strip_prefix("prosqa-page-coconut-muon-").or_else(|| stem.strip_prefix("prosqa-recall-")).map(|v| format!("`-{v}.toml`"));
            assert!(
                readme.contains(&format!("configs/{name}")) || sibling.is_some_and(|s| readme.contains(&s)),
                "configs/{name} is not described in README.md's config table"
            );
        }
    }

    #[test]
    fn frontier_supervision_needs_thoughts_fed_back_on_prosqa() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/experiments/prosqa-recall-conv-frontier.toml");
        let mut cfg = TrainConfig::load(&path).unwrap();
        assert_eq!(cfg.curriculum.frontier_weight, 1.0);
        cfg.validate().unwrap();
        cfg.curriculum.variant = Variant::Cot;
        assert!(cfg.validate().unwrap_err().to_string().contains("feeds thoughts back"));
        cfg.curriculum.variant = Variant::Coconut;
        cfg.curriculum.frontier_weight = -1.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("positive"));
    }

    #[test]
    fn growing_needs_a_model_to_grow() {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml");
        let mut cfg = TrainConfig::load(&tiny).unwrap();
        cfg.run.grow_width = 2;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("run.grow_width grow the model of run.init"), "{err}");
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
        // A child that starts from a checkpoint takes its model from there, not from the base's [model].
        std::fs::write(dir.join("grown.toml"), "base = \"base.toml\"\n[run]\ninit = \"checkpoints/x\"\nepochs = 1\ngrow_width = 2\n").unwrap();
        let g = TrainConfig::load(&dir.join("grown.toml")).unwrap();
        assert_eq!((&g.model, g.run.init.as_deref(), g.run.grow_width), (&None, Some("checkpoints/x"), 2));
        g.validate().unwrap();
        std::fs::write(dir.join("loop.toml"), "base = \"loop.toml\"\n").unwrap();
        assert!(TrainConfig::load(&dir.join("loop.toml")).unwrap_err().to_string().contains("cycle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
