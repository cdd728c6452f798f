//! Latent-search analysis (paper, Sec. 5): what each continuous thought "favours" on the question's
//! concept graph.
//!
//! For t = 0..=k thoughts: (a) the thought's top tokens through the LM head; (b) the *value* of every
//! concept node: force the switch to language after t thoughts (`<|end-latent|>`), then the start of
//! the next step ("ROOT is a" when t = 0, "Every" after), and take the model's probability of the
//! node's name being the concept it names next (product over the name's tokens); (c) the frontier,
//! the concepts that next step names when the search is right: the nodes t hops from the root (the
//! paper's Figure of the latent search: after one thought, "Every …" values the root's children),
//! one hop when t = 0 ("ROOT is a …"); node heights (shortest distance to a leaf), as in the paper's
//! value-vs-height analysis.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use serde::{Deserialize, Serialize};

use crate::coconut::{self, DeviceBatch};
use crate::curriculum::{Curriculum, Tokenized, Variant};
use crate::generate::{collate_prompts, read};
use crate::gpt2::Gpt2;
use crate::prosqa::{Graph, ParsedQuestion, parse_question};
use crate::tokenizer::CoconutTokenizer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThoughtStep {
    /// Thoughts so far.
    pub t: usize,
    /// Top tokens of the last thought through the LM head (`t ≥ 1`), with probabilities.
    pub top_tokens: Vec<(String, f32)>,
    /// Value of every node (index into `names`): the model's probability of that name.
    pub values: Vec<f32>,
    /// The values renormalised over the graph's nodes (a distribution, as the page colours it).
    pub distribution: Vec<f32>,
    pub frontier: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub names: Vec<String>,
    pub is_person: Vec<bool>,
    pub edges: Vec<(usize, usize)>,
    pub root: usize,
    pub options: [usize; 2],
    pub heights: Vec<usize>,
    pub steps: Vec<ThoughtStep>,
}

/// Shortest distance from every node to a leaf.
pub fn heights(g: &Graph) -> Vec<usize> {
    let ch = g.children();
    let mut h = vec![usize::MAX; g.n];
    let mut queue: std::collections::VecDeque<usize> = (0..g.n).filter(|&v| ch[v].is_empty()).collect();
    queue.iter().for_each(|&v| h[v] = 0);
    let mut parents = vec![Vec::new(); g.n];
    for &(p, c) in &g.edges {
        parents[c].push(p);
    }
    while let Some(v) = queue.pop_front() {
        for &p in &parents[v] {
            if h[p] == usize::MAX {
                h[p] = h[v] + 1;
                queue.push_back(p);
            }
        }
    }
    h
}

/// Adds `log p(name[j] | prompt, name[..j])` for `j ≥ 1` to each name's first-token log-prob: all
/// names in one batch over the prompt's KV cache (repeated per name), names right-padded.
#[allow(clippy::too_many_arguments)]
async fn continue_names(
    model: &Gpt2,
    cache: &crate::gpt2::KvCache,
    names: &[Vec<u32>],
    prompt_len: usize,
    longest: usize,
    mut logp: Vec<f32>,
    pad: u32,
    device: &Device,
) -> Result<Vec<f32>, String> {
    let rows = names.len();
    let steps = longest - 1; // inputs: name[0..L-1], predicting name[1..L]
    let ids: Vec<i64> = names.iter().flat_map(|n| (0..steps).map(move |j| *n.get(j).unwrap_or(&pad) as i64)).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, steps]), device);
    let positions = Tensor::<1, Int>::arange(prompt_len as i64..(prompt_len + steps) as i64, device).unsqueeze::<2>().expand([rows, steps]);
    let valid: Vec<bool> = names.iter().flat_map(|n| std::iter::repeat_n(true, prompt_len).chain((0..steps).map(move |j| j < n.len()))).collect();
    let key_mask = Tensor::<2, Bool>::from_data(TensorData::new(valid, [rows, prompt_len + steps]), device);
    let cache = cache.repeat(rows);
    let out = model.forward(crate::gpt2::Gpt2Input { embeds: model.embed(ids), positions, key_mask: Some(key_mask), cache: Some(cache) });
    let lp = log_softmax(model.lm_head(out.hidden), 2);
    let vocab = model.vocab_size();
    let lp: Vec<f32> = read(lp).await?;
    for (r, name) in names.iter().enumerate() {
        for (j, &id) in name.iter().enumerate().skip(1) {
            logp[r] += lp[(r * steps + j - 1) * vocab + id as usize];
        }
    }
    Ok(logp)
}

pub fn analyze(model: &Gpt2, tok: &CoconutTokenizer, question: &str, k: usize, n_positions: usize, device: &Device) -> Result<Analysis, String> {
    burn::tensor::read_sync(analyze_async(model, tok, question, k, n_positions, device))
}

/// `analyze` with asynchronous read-back (WebGPU in a browser).
/// `n_positions`: the model's (`Gpt2Config::n_positions`); a question that does not fit with `k`
/// thoughts is refused before any compute.
pub async fn analyze_async(
    model: &Gpt2,
    tok: &CoconutTokenizer,
    question: &str,
    k: usize,
    n_positions: usize,
    device: &Device,
) -> Result<Analysis, String> {
    let q = Question::new(tok, question, Variant::Coconut)?;
    crate::generate::check_positions(q.positions_needed(k, tok), 0, n_positions)?;
    let mut steps = Vec::with_capacity(k + 1);
    for t in 0..=k {
        steps.push(q.step_async(model, tok, t, device).await?);
    }
    Ok(q.analysis(steps))
}

/// A question prepared for analysis: its graph, tokens and node names. The page computes its
/// frames one at a time (`step_async`) to time and stream them.
pub struct Question {
    q: ParsedQuestion,
    g: Graph,
    tokens: Tokenized,
    curriculum: Curriculum,
    name_ids: Vec<Vec<u32>>,
    dist: Vec<usize>,
}

impl Question {
    /// `variant` decides the prompt (latent markers or not).
    pub fn new(tok: &CoconutTokenizer, question: &str, variant: Variant) -> Result<Self, String> {
        let q: ParsedQuestion = parse_question(question)?;
        let g = Graph { n: q.names.len(), edges: q.edges.clone() };
        let tokens = Tokenized::question(question, tok).map_err(|e| e.to_string())?;
        let name_ids: Vec<Vec<u32>> =
            q.names.iter().map(|n| tok.encode_name(n)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let dist = g.distances(q.subject);
        Ok(Self { q, g, tokens, curriculum: Curriculum { variant, ..Curriculum::default() }, name_ids, dist })
    }

    /// Positions the frames up to `k` thoughts take (the prompt, the lead words, the longest name):
    /// for `generate::check_positions` before any compute.
    pub fn positions_needed(&self, k: usize, tok: &CoconutTokenizer) -> usize {
        let lead = [format!("{} is a", self.q.names[self.q.subject]), "Every".to_string()]
            .iter()
            .map(|l| tok.encode(l).map(|ids| ids.len()).unwrap_or(0))
            .max()
            .unwrap_or(0);
        let longest = self.name_ids.iter().map(Vec::len).max().unwrap_or(0);
        self.curriculum.prompt_len(self.tokens.question.len(), k).saturating_add(lead).saturating_add(longest)
    }

    /// The frame after `t` thoughts: node values, their distribution, the frontier, top tokens.
    pub async fn step_async(&self, model: &Gpt2, tok: &CoconutTokenizer, t: usize, device: &Device) -> Result<ThoughtStep, String> {
        let q = &self.q;
        let mut prompt = self.curriculum.prompt(&self.tokens, t, tok.special);
        let lead = if t == 0 { format!("{} is a", q.names[q.subject]) } else { "Every".to_string() };
        prompt.extend(tok.encode(&lead).map_err(|e| e.to_string())?);
        // The prompt (with its t thoughts) runs once; value(node) = Π p(name tokens) after it.
        let b = DeviceBatch::new(&collate_prompts(std::slice::from_ref(&prompt), tok.special), device);
        let out = coconut::forward(model, &b, self.curriculum.variant.feeds_back());
        let len = prompt.len();
        let first: Vec<f32> = read(log_softmax(model.lm_head(out.hidden.clone().slice([0..1, len - 1..len])), 2)).await?;
        let mut logp: Vec<f32> = self.name_ids.iter().map(|ids| first[ids[0] as usize]).collect();
        let longest = self.name_ids.iter().map(Vec::len).max().unwrap_or(1);
        if longest > 1 {
            // Multi-token names: one cached pass over every name's tokens after its first.
            logp = continue_names(model, &out.cache, &self.name_ids, len, longest, logp, tok.special.eos, device).await?;
        }
        let values: Vec<f32> = logp.iter().map(|lp| lp.exp()).collect();
        let top_tokens = match out.thoughts.last() {
            Some(thought) if t > 0 => {
                let p: Vec<f32> = read(softmax(model.lm_head(thought.clone().slice([0..1, 0..thought.dims()[1]])), 1)).await?;
                let mut idx: Vec<usize> = (0..p.len()).collect();
                idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                idx.into_iter().take(5).map(|i| (tok.token(i as u32).unwrap_or_default(), p[i])).collect()
            }
            _ => Vec::new(),
        };
        let total: f32 = values.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let distribution = values.iter().map(|v| v / total).collect();
        Ok(ThoughtStep { t, top_tokens, values, distribution, frontier: (0..self.g.n).filter(|&v| self.dist[v] == t.max(1)).collect() })
    }

    /// The graph with `steps` (the page sends the graph first and the frames as they come).
    pub fn analysis(&self, steps: Vec<ThoughtStep>) -> Analysis {
        let q = &self.q;
        Analysis {
            names: q.names.clone(),
            is_person: q.is_person.clone(),
            edges: q.edges.clone(),
            root: q.subject,
            options: q.options,
            heights: heights(&self.g),
            steps,
        }
    }
}
