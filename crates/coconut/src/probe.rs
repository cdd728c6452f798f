//! Probes of a ProsQA model over a set of questions, each computed in one program run:
//!
//! - the **lookup probe**: teacher-forced log-probabilities of the language chain (question, steps,
//!   answer), averaged over three kinds of concept token:
//!   - copy:   X in "Every X is a Y." (the concept the previous step ended on: a local copy),
//!   - lookup: Y in "Every X is a Y." / "Tom is a Y." (the next concept: find the fact about X in the
//!     question and copy its object, what an induction head does),
//!   - answer: the concept in "### Tom is a Y." (a copy of the last step's concept);
//!
//!   next to the uniform baseline −ln(#concepts). A model that has not formed the lookup sits at or
//!   below it; the paper's search needs it.
//! - the **latent mass**: where each continuous thought puts its value (`analyze`), summed over kinds
//!   of node: the two answer options, the frontier (nodes one hop beyond the t explored ones, the
//!   paper's latent-search frontier), the other nodes reachable from the person, and the rest. A
//!   model that searches the graph puts its value on the frontier; one that guesses puts it on the
//!   options.

use burn::prelude::*;
use serde::Serialize;

use crate::analyze::analyze;
use crate::data::Item;
use crate::gpt2::Gpt2;
use crate::prosqa::Graph;
use crate::score::token_logprobs;
use crate::tokenizer::CoconutTokenizer;

/// The mean log-probability of one kind of token, and how many were averaged.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeanLogprob {
    pub mean_logprob: f64,
    pub tokens: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LookupProbe {
    pub questions: usize,
    pub copy: MeanLogprob,
    pub lookup: MeanLogprob,
    pub answer: MeanLogprob,
    /// Mean −ln(#concepts of the question's graph).
    pub uniform_logprob: f64,
}

fn mean(v: &[f64]) -> MeanLogprob {
    MeanLogprob { mean_logprob: v.iter().sum::<f64>() / v.len().max(1) as f64, tokens: v.len() }
}

/// The lookup probe over `items` (ProsQA items with their graphs; a word-level tokenizer, whose
/// tokens are the words the rules below look for).
pub fn lookup_probe(model: &Gpt2, tok: &CoconutTokenizer, items: &[Item], n_positions: usize, device: &Device) -> Result<LookupProbe, String> {
    let (mut copy, mut lookup, mut answer, mut uniform) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, it) in items.iter().enumerate() {
        let text = format!("{}\n{}\n### {}", it.question, it.steps.join("\n"), it.answer);
        let ids = tok.encode(&text).map_err(|e| format!("question #{i}: {e}"))?;
        crate::generate::check_positions(ids.len(), 0, n_positions).map_err(|e| format!("question #{i}: {e}"))?;
        let q_len = tok.encode(&format!("{}\n", it.question)).map_err(|e| e.to_string())?.len();
        let lp: Vec<f64> = token_logprobs(model, &ids, device)?.into_iter().map(f64::from).collect();
        let words: Vec<String> = ids.iter().map(|&id| tok.token(id).unwrap_or_default()).collect();
        // lp[j] = log p(words[j + 1] | words[..= j])
        let mut j = q_len;
        while j < words.len() {
            if words[j] == "Every" && j + 4 < words.len() {
                copy.push(lp[j]); // X at j + 1
                lookup.push(lp[j + 3]); // Y at j + 4
                j += 5;
            } else if words[j] == "#" && j + 5 < words.len() {
                answer.push(lp[j + 5]); // "# # # Tom is a Y": Y at j + 6
                break;
            } else if j + 3 < words.len() && words[j + 1] == "is" && words[j + 2] == "a" && words[j] != "Every" {
                lookup.push(lp[j + 2]); // "Tom is a Y": Y at j + 3
                j += 4;
            } else {
                j += 1;
            }
        }
        let concepts = it.idx_to_symbol.as_ref().ok_or_else(|| format!("question #{i} has no graph (idx_to_symbol)"))?.len();
        uniform.push(-(concepts as f64).ln());
    }
    Ok(LookupProbe {
        questions: items.len(),
        copy: mean(&copy),
        lookup: mean(&lookup),
        answer: mean(&answer),
        uniform_logprob: mean(&uniform).mean_logprob,
    })
}

/// Mean value of one thought on each kind of node.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MassRow {
    pub thought: usize,
    pub options: f64,
    pub frontier: f64,
    pub reachable: f64,
    pub other: f64,
}

/// The latent mass of thoughts `0..=k` (t = 0: the position before the first thought), averaged
/// over `items`.
pub fn latent_mass(
    model: &Gpt2,
    tok: &CoconutTokenizer,
    items: &[Item],
    k: usize,
    n_positions: usize,
    device: &Device,
) -> Result<Vec<MassRow>, String> {
    let mut rows: Vec<MassRow> = (0..=k).map(|thought| MassRow { thought, ..MassRow::default() }).collect();
    for (i, it) in items.iter().enumerate() {
        let a = analyze(model, tok, &it.question, k, n_positions, device).map_err(|e| format!("question #{i}: {e}"))?;
        let dist = Graph { n: a.names.len(), edges: a.edges.clone() }.distances(a.root);
        let reachable = |v: usize| dist[v] != usize::MAX && dist[v] > 0;
        for step in &a.steps {
            let row = &mut rows[step.t];
            for (v, &p) in step.distribution.iter().enumerate() {
                let p = f64::from(p);
                if a.options.contains(&v) {
                    row.options += p;
                } else if step.frontier.contains(&v) {
                    row.frontier += p;
                } else if reachable(v) {
                    row.reachable += p;
                } else {
                    row.other += p;
                }
            }
        }
    }
    let n = items.len().max(1) as f64;
    for r in &mut rows {
        (r.options, r.frontier, r.reachable, r.other) = (r.options / n, r.frontier / n, r.reachable / n, r.other / n);
    }
    Ok(rows)
}

/// The latent-mass table as Markdown.
pub fn latent_mass_table(rows: &[MassRow], caption: &str) -> String {
    let mut md = format!("{caption}\n\n| thought | the two options | frontier (not an option) | other reachable | rest |\n|---|---|---|---|---|\n");
    for r in rows {
        md += &format!("| {} | {:.3} | {:.3} | {:.3} | {:.3} |\n", r.thought, r.options, r.frontier, r.reachable, r.other);
    }
    md
}
