//! Latent-search analysis (paper, Sec. 5): what each continuous thought "favours" on the question's
//! concept graph.
//!
//! For t = 0..=k thoughts: (a) the thought's top tokens through the LM head; (b) the *value* of every
//! concept node: force the switch to language after t thoughts (`<|end-latent|>`), then the start of
//! the next step ("ROOT is a" when t = 0, "Every" after), and take the model's probability of the
//! node's name being the concept it names next (product over the name's tokens); (c) the frontier,
//! the nodes one hop beyond the t explored ones (shortest distance t + 1 from the root); node heights
//! (shortest distance to a leaf), as in the paper's value-vs-height analysis.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use serde::Serialize;

use crate::coconut::{self, DeviceBatch};
use crate::curriculum::{Curriculum, Tokenized, Variant};
use crate::generate::collate_prompts;
use crate::gpt2::Gpt2;
use crate::prosqa::{Graph, ParsedQuestion, parse_question};
use crate::tokenizer::CoconutTokenizer;

#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, Serialize)]
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

pub fn analyze(model: &Gpt2, tok: &CoconutTokenizer, question: &str, k: usize, device: &Device) -> Result<Analysis, String> {
    let q: ParsedQuestion = parse_question(question)?;
    let g = Graph { n: q.names.len(), edges: q.edges.clone() };
    let t_item = Tokenized::question(question, tok).map_err(|e| e.to_string())?;
    let curriculum = Curriculum { variant: Variant::Coconut, ..Curriculum::default() };
    let dist = g.distances(q.subject);
    let name_ids: Vec<Vec<u32>> =
        q.names.iter().map(|n| tok.encode(&format!(" {n}")).or_else(|_| tok.encode(n))).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let mut steps = Vec::with_capacity(k + 1);
    for t in 0..=k {
        let mut prompt = curriculum.prompt(&t_item, t, tok.special);
        let lead = if t == 0 { format!("{} is a", q.names[q.subject]) } else { "Every".to_string() };
        prompt.extend(tok.encode(&lead).map_err(|e| e.to_string())?);
        // One batch: the prompt followed by each node's name; value = Π p(name tokens).
        let seqs: Vec<Vec<u32>> = name_ids.iter().map(|ids| prompt.iter().chain(ids).copied().collect()).collect();
        let batch = collate_prompts(&seqs, tok.special);
        let b = DeviceBatch::new(&batch, device);
        let out = coconut::forward(model, &b, true);
        let logp = log_softmax(model.lm_head(out.hidden), 2);
        let len = batch.len;
        let logp: Vec<f32> = logp.into_data().try_into_vec_as::<f32>().map_err(|e| format!("{e:?}"))?;
        let vocab = model.vocab_size();
        let values: Vec<f32> = name_ids
            .iter()
            .enumerate()
            .map(|(r, ids)| {
                // Row r ends with the name (left padding): its tokens are the last ids.len() columns.
                let lp: f32 = ids.iter().enumerate().map(|(j, &id)| logp[(r * len + len - ids.len() - 1 + j) * vocab + id as usize]).sum();
                lp.exp()
            })
            .collect();
        let top_tokens = match out.thoughts.last() {
            Some(thought) if t > 0 => {
                let p = softmax(model.lm_head(thought.clone().slice([0..1, 0..thought.dims()[1]])), 1);
                let p: Vec<f32> = p.into_data().try_into_vec_as::<f32>().map_err(|e| format!("{e:?}"))?;
                let mut idx: Vec<usize> = (0..p.len()).collect();
                idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                idx.into_iter().take(5).map(|i| (tok.token(i as u32).unwrap_or_default(), p[i])).collect()
            }
            _ => Vec::new(),
        };
        let total: f32 = values.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let distribution = values.iter().map(|v| v / total).collect();
        steps.push(ThoughtStep { t, top_tokens, values, distribution, frontier: (0..g.n).filter(|&v| dist[v] == t + 1).collect() });
    }
    Ok(Analysis { names: q.names, is_person: q.is_person, edges: q.edges, root: q.subject, options: q.options, heights: heights(&g), steps })
}
