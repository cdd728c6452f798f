//! The Coconut curriculum and batching, with the official implementation's exact semantics.
//!
//! Training sequence of an item at stage `s` (c = thoughts per step):
//!
//! ```text
//! question "\n" | <|start-latent|> <|latent|>×(s·c) <|end-latent|> | steps[s..] (each + "\n") | "### " answer <eos>
//! labels:  ignored ---------------------------------------------- | learned ------------------------------------
//! ```
//!
//! Stage `s ≤ max_latent_stage` replaces the first `s` steps by `s·c` thoughts (even when the item has
//! fewer steps); beyond it every step is dropped and there are `max_latent_stage·c` thoughts when
//! `pad_latent_to_max`, else `min(#steps, max_latent_stage)·c`. With probability `uniform_prob` an
//! item's stage is drawn uniformly from `0..=#steps`. Batches left-pad so every item's first
//! `<|latent|>` sits in the same column (pads: position 0, attention 0), then right-pad.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::Item;
use crate::tokenizer::{CoconutTokenizer, SpecialIds, TokenizerError};

/// Label value that the loss ignores.
pub const IGNORE: i64 = -100;

/// The methods of the paper's Table 1 that our trainer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Continuous thoughts with the stage schedule.
    Coconut,
    /// Language chain of thought: stage 0 always, no markers.
    Cot,
    /// Question then answer: no steps, no markers.
    NoCot,
    /// "w/o thought": steps removed by the schedule, no thoughts, no markers.
    NoThought,
    /// "pause as thought": the schedule, but the latent slots hold a learned pause embedding
    /// (the `<|latent|>` token itself) and nothing is fed back.
    PauseAsThought,
    /// "pause token" baseline: `max_latent_stage·c` pauses between question and answer, no steps,
    /// no curriculum, no feedback.
    PauseToken,
    /// "w/o curriculum": continuous thoughts at the final stage from the first epoch.
    NoCurriculum,
}

impl Variant {
    pub const ALL: [Variant; 7] =
        [Self::Coconut, Self::Cot, Self::NoCot, Self::NoThought, Self::PauseAsThought, Self::PauseToken, Self::NoCurriculum];

    pub fn name(self) -> &'static str {
        match self {
            Self::Coconut => "coconut",
            Self::Cot => "cot",
            Self::NoCot => "no-cot",
            Self::NoThought => "no-thought",
            Self::PauseAsThought => "pause-as-thought",
            Self::PauseToken => "pause-token",
            Self::NoCurriculum => "no-curriculum",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown variant `{s}` (one of: {})", Self::ALL.map(|v| v.name()).join(", ")))
    }

    /// Whether hidden states are fed back into the latent slots.
    pub fn feeds_back(self) -> bool {
        matches!(self, Self::Coconut | Self::NoCurriculum)
    }

    /// Whether the `<|start-latent|>`/`<|end-latent|>` markers are written.
    pub fn markers(self) -> bool {
        !matches!(self, Self::Cot | Self::NoCot | Self::NoThought)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Curriculum {
    pub variant: Variant,
    /// Thoughts per replaced step (the paper's c).
    pub c_thought: usize,
    pub max_latent_stage: usize,
    pub pad_latent_to_max: bool,
    pub uniform_prob: f64,
    pub epochs_per_stage: usize,
    /// Frontier supervision (not in the paper; 0 = the paper's objective): adds this weight times
    /// the cross-entropy of each continuous thought, read through the LM head, against the uniform
    /// distribution over the breadth-first frontier it stands for (thought d: the concepts d hops
    /// from the person, `Tokenized::frontiers`): the search the paper finds emerging, asked for.
    #[serde(skip_serializing_if = "is_zero")]
    pub frontier_weight: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for Curriculum {
    fn default() -> Self {
        Self { variant: Variant::Coconut, c_thought: 1, max_latent_stage: 6, pad_latent_to_max: true, uniform_prob: 0.0, epochs_per_stage: 5, frontier_weight: 0.0 }
    }
}

/// An item's token ids: question + "\n", each step + "\n", "### " + answer + EOS.
#[derive(Clone, Debug, PartialEq)]
pub struct Tokenized {
    pub question: Vec<u32>,
    pub steps: Vec<Vec<u32>>,
    pub answer: Vec<u32>,
    /// A search listing (`data.search_share`): its steps are every fact reachable from the person,
    /// and it trains at stage 0, in language, whatever the epoch's stage.
    pub listing: bool,
    /// ProsQA: the breadth-first frontiers from the person, `frontiers[d − 1]` = the first token of
    /// each concept d hops away (what frontier supervision asks thought d to name); empty when the
    /// question is not ProsQA's.
    pub frontiers: Vec<Vec<u32>>,
}

impl Tokenized {
    pub fn new(item: &Item, tok: &CoconutTokenizer) -> Result<Self, TokenizerError> {
        let mut answer = tok.encode(&format!("### {}", item.answer))?;
        answer.push(tok.special.eos);
        Ok(Self {
            question: tok.encode(&format!("{}\n", item.question))?,
            steps: item.steps.iter().map(|s| tok.encode(&format!("{s}\n"))).collect::<Result<_, _>>()?,
            answer,
            listing: false,
            frontiers: frontiers(&item.question, tok),
        })
    }
}

/// The breadth-first frontiers of a ProsQA question from its person (see `Tokenized::frontiers`).
fn frontiers(question: &str, tok: &CoconutTokenizer) -> Vec<Vec<u32>> {
    let Ok(q) = crate::prosqa::parse_question(question) else { return Vec::new() };
    let dist = crate::prosqa::Graph { n: q.names.len(), edges: q.edges.clone() }.distances(q.subject);
    let mut out: Vec<Vec<u32>> = Vec::new();
    for (name, &d) in q.names.iter().zip(&dist) {
        if d == 0 || d == usize::MAX {
            continue;
        }
        let Some(&id) = tok.encode_name(name).ok().as_ref().and_then(|ids| ids.first()) else { continue };
        if out.len() < d {
            out.resize(d, Vec::new());
        }
        out[d - 1].push(id);
    }
    out
}

impl Tokenized {
    /// Tokens of the whole language chain: question, steps and answer.
    pub fn chain_len(&self) -> usize {
        self.question.len() + self.steps.iter().map(Vec::len).sum::<usize>() + self.answer.len()
    }

    /// A bare question (for prompts: no steps, no answer).
    pub fn question(question: &str, tok: &CoconutTokenizer) -> Result<Self, TokenizerError> {
        Ok(Self { question: tok.encode(&format!("{question}\n"))?, steps: Vec::new(), answer: Vec::new(), listing: false, frontiers: Vec::new() })
    }
}

/// One training sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    /// Next-token targets aligned with `input_ids` (`IGNORE` where no loss is taken).
    pub labels: Vec<i64>,
    /// For each continuous thought, in order: the frontier it stands for (`Tokenized::frontiers`
    /// of its step: thought j of c per step stands for step ⌊j / c⌋ + 1); empty without one.
    pub thought_frontiers: Vec<Vec<u32>>,
}

impl Curriculum {
    /// The scheduled stage of an epoch for this variant.
    pub fn stage_of_epoch(&self, epoch: usize) -> usize {
        match self.variant {
            Variant::Cot | Variant::NoCot => 0,
            Variant::PauseToken | Variant::NoCurriculum => self.max_latent_stage + 1,
            _ => epoch / self.epochs_per_stage.max(1),
        }
    }

    /// Number of thoughts and of skipped steps for an item with `n_steps` steps at `stage`.
    pub fn latents_and_skips(&self, stage: usize, n_steps: usize) -> (usize, usize) {
        let (latents, skip) = if stage > self.max_latent_stage {
            let l = if self.pad_latent_to_max { self.max_latent_stage } else { n_steps.min(self.max_latent_stage) };
            (l, usize::MAX)
        } else {
            (stage, stage)
        };
        match self.variant {
            Variant::NoCot => (0, usize::MAX),
            Variant::NoThought => (0, skip),
            _ => (latents * self.c_thought, skip),
        }
    }

    /// The training sequence of an item at the scheduled `stage` (`rng` draws the uniform-stage mix;
    /// a search listing is always at stage 0).
    pub fn example(&self, t: &Tokenized, stage: usize, ids: SpecialIds, rng: &mut impl Rng) -> Example {
        let stage = if t.listing {
            0
        } else if self.uniform_prob > 0.0 && rng.random::<f64>() < self.uniform_prob {
            rng.random_range(0..=t.steps.len())
        } else {
            stage
        };
        let (n_latent, skip) = self.latents_and_skips(stage, t.steps.len());
        let mut input_ids = t.question.clone();
        if self.variant.markers() {
            input_ids.push(ids.start_latent);
        }
        input_ids.extend(std::iter::repeat_n(ids.latent, n_latent));
        if self.variant.markers() {
            input_ids.push(ids.end_latent);
        }
        let n_ignored = input_ids.len();
        for step in t.steps.iter().skip(skip) {
            input_ids.extend(step);
        }
        input_ids.extend(&t.answer);
        let labels = input_ids.iter().enumerate().map(|(i, &id)| if i < n_ignored { IGNORE } else { id as i64 }).collect();
        let thought_frontiers = if self.variant.feeds_back() {
            (0..n_latent).map(|j| t.frontiers.get(j / self.c_thought.max(1)).cloned().unwrap_or_default()).collect()
        } else {
            Vec::new()
        };
        Example { input_ids, labels, thought_frontiers }
    }

    /// The evaluation prompt: question, markers and `k` thoughts, nothing after.
    pub fn prompt(&self, t: &Tokenized, k: usize, ids: SpecialIds) -> Vec<u32> {
        let mut p = t.question.clone();
        if self.variant.markers() {
            p.push(ids.start_latent);
            p.extend(std::iter::repeat_n(ids.latent, k));
            p.push(ids.end_latent);
        }
        p
    }

    /// Positions `prompt` takes for a question of `question_len` tokens: saturating, so an absurd
    /// `k` is refused by `generate::check_positions` before anything is allocated.
    pub fn prompt_len(&self, question_len: usize, k: usize) -> usize {
        if self.variant.markers() { question_len.saturating_add(k).saturating_add(2) } else { question_len }
    }

    /// Thoughts at inference for a trained stage (the official evaluation): `min(max, stage)·c`,
    /// with `max = max_latent_stage` when padding to max, else the item's step count.
    pub fn eval_thoughts(&self, stage: usize, n_steps: usize) -> usize {
        match self.variant {
            Variant::Cot | Variant::NoCot | Variant::NoThought => 0,
            _ => {
                let max = if self.pad_latent_to_max { self.max_latent_stage } else { self.max_latent_stage.min(n_steps) };
                stage.min(max) * self.c_thought
            }
        }
    }
}

/// A collated batch, row-major `[batch, len]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub input_ids: Vec<u32>,
    pub position_ids: Vec<i64>,
    /// 1 = real token, 0 = padding.
    pub attention_mask: Vec<u8>,
    /// Empty for prompts (no labels).
    pub labels: Vec<i64>,
    /// Columns of each row's `<|latent|>` tokens, in order.
    pub latent_positions: Vec<Vec<usize>>,
}

/// Collates sequences with the official alignment: left-pad so the first `<|latent|>` of every row
/// is in the same column, then right-pad to the longest row. `labels` may be empty (prompts).
pub fn collate(seqs: &[(Vec<u32>, Vec<i64>)], ids: SpecialIds) -> Batch {
    let first_latent = |s: &[u32]| s.iter().position(|&t| t == ids.latent);
    let align = seqs.iter().filter_map(|(s, _)| first_latent(s)).max();
    let left: Vec<usize> = seqs
        .iter()
        .map(|(s, _)| match (align, first_latent(s)) {
            (Some(a), Some(f)) => a - f,
            _ => 0,
        })
        .collect();
    let len = seqs.iter().zip(&left).map(|((s, _), l)| s.len() + l).max().unwrap_or(0);
    let with_labels = seqs.iter().any(|(_, l)| !l.is_empty());
    let mut b = Batch {
        batch: seqs.len(),
        len,
        input_ids: Vec::with_capacity(seqs.len() * len),
        position_ids: Vec::with_capacity(seqs.len() * len),
        attention_mask: Vec::with_capacity(seqs.len() * len),
        labels: Vec::new(),
        latent_positions: Vec::with_capacity(seqs.len()),
    };
    for ((s, labels), &l) in seqs.iter().zip(&left) {
        let right = len - l - s.len();
        b.input_ids.extend(std::iter::repeat_n(ids.eos, l).chain(s.iter().copied()).chain(std::iter::repeat_n(ids.eos, right)));
        b.position_ids.extend(std::iter::repeat_n(0, l).chain(0..s.len() as i64).chain(std::iter::repeat_n(0, right)));
        b.attention_mask.extend(std::iter::repeat_n(0, l).chain(std::iter::repeat_n(1, s.len())).chain(std::iter::repeat_n(0, right)));
        if with_labels {
            assert_eq!(labels.len(), s.len(), "labels must align with input ids");
            b.labels.extend(std::iter::repeat_n(IGNORE, l).chain(labels.iter().copied()).chain(std::iter::repeat_n(IGNORE, right)));
        }
        b.latent_positions.push(s.iter().enumerate().filter(|(_, t)| **t == ids.latent).map(|(i, _)| i + l).collect());
    }
    b
}

/// Epoch order of `n` items: a deterministic shuffle of `0..n` for (`seed`, `epoch`).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}
