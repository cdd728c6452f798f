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
//!   of node: the two answer options, the frontier (after t thoughts the nodes t hops from the
//!   person, the concepts the next step names: the paper's latent-search frontier), the other nodes
//!   reachable from the person, and the rest. A model that searches the graph puts its value on the frontier; one that guesses puts it on the
//!   options.
//! - the **first-lookup distribution**: at the chain's first "Every X is a ?", the probability of
//!   every concept of the graph summed by its relation to X (a child: a correct lookup; one of the two
//!   options; X itself; a parent; another concept), next to the shares uniform guessing gives.
//! - the **latent search** (the paper's value-vs-height analysis): after thought t, the frontier
//!   nodes' mean value by their height (shortest distance to a leaf); a breadth-first search that
//!   prefers promising branches gives the higher nodes, with more below them, more value.

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
    pub first_lookup: LookupDistribution,
    /// The chain followed the latent markers (`<|start-latent|><|end-latent|>` after the question:
    /// stage 0 of a variant that has them), as the model was trained to read it.
    pub markers: bool,
}

/// Token ids of `question` + "\n", the two latent markers when `markers`, then `rest`.
fn chain_ids(tok: &CoconutTokenizer, question: &str, rest: &str, markers: bool) -> Result<(Vec<u32>, usize), String> {
    if !markers {
        let q_len = tok.encode(&format!("{question}\n")).map_err(|e| e.to_string())?.len();
        return Ok((tok.encode(&format!("{question}\n{rest}")).map_err(|e| e.to_string())?, q_len));
    }
    let mut ids = tok.encode(&format!("{question}\n")).map_err(|e| e.to_string())?;
    ids.extend([tok.special.start_latent, tok.special.end_latent]);
    let q_len = ids.len();
    ids.extend(tok.encode(rest).map_err(|e| e.to_string())?);
    Ok((ids, q_len))
}

/// The kinds of concept at a lookup "Every X is a ?", by relation to X.
pub const LOOKUP_KINDS: [&str; 5] = ["child", "option", "self", "parent", "other"];

/// Mean probability per kind of concept (`LOOKUP_KINDS`) at the first lookup of each question's
/// chain, and the share uniform guessing over the graph's concepts gives each kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LookupDistribution {
    /// Questions whose chain has an "Every X is a Y." step.
    pub questions: usize,
    pub mass: std::collections::BTreeMap<String, f64>,
    pub uniform: std::collections::BTreeMap<String, f64>,
}

fn mean(v: &[f64]) -> MeanLogprob {
    MeanLogprob { mean_logprob: v.iter().sum::<f64>() / v.len().max(1) as f64, tokens: v.len() }
}

/// The lookup probe over `items` (ProsQA items with their graphs; a word-level tokenizer, whose
/// tokens are the words the rules below look for).
pub fn lookup_probe(
    model: &Gpt2,
    tok: &CoconutTokenizer,
    items: &[Item],
    n_positions: usize,
    markers: bool,
    device: &Device,
) -> Result<LookupProbe, String> {
    let (mut copy, mut lookup, mut answer, mut uniform) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, it) in items.iter().enumerate() {
        let rest = format!("{}\n### {}", it.steps.join("\n"), it.answer);
        let (ids, q_len) = chain_ids(tok, &it.question, &rest, markers).map_err(|e| format!("question #{i}: {e}"))?;
        crate::generate::check_positions(ids.len(), 0, n_positions).map_err(|e| format!("question #{i}: {e}"))?;
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
        first_lookup: first_lookup(model, tok, items, markers, device)?,
        markers,
    })
}

/// The first-lookup distribution over `items` (one forward pass a question: every concept is one
/// word of the word-level vocabulary, scored as the next token after "Every X is a").
fn first_lookup(model: &Gpt2, tok: &CoconutTokenizer, items: &[Item], markers: bool, device: &Device) -> Result<LookupDistribution, String> {
    let mut d = LookupDistribution::default();
    for kind in LOOKUP_KINDS {
        d.mass.insert(kind.into(), 0.0);
        d.uniform.insert(kind.into(), 0.0);
    }
    for (i, it) in items.iter().enumerate() {
        let (Some(names), Some(edges)) = (&it.idx_to_symbol, &it.edges) else { return Err(format!("question #{i} has no graph")) };
        let Some(first) = it.steps.iter().position(|s| s.starts_with("Every ")) else { continue };
        let index = |name: &str| names.iter().position(|n| n == name);
        let x = it.steps[first].split(' ').nth(1).and_then(index).ok_or_else(|| format!("question #{i}: step {first} names no concept"))?;
        let options: Vec<usize> = it.question.trim_end_matches('?').rsplit(" a ").next().unwrap_or("").split(" or ").filter_map(index).collect();
        let kind = |j: usize| match () {
            _ if edges.contains(&[x, j]) => "child",
            _ if options.contains(&j) => "option",
            _ if j == x => "self",
            _ if edges.contains(&[j, x]) => "parent",
            _ => "other",
        };
        let prefix: String = it.steps[..first].iter().fold(String::new(), |p, s| p + s + "\n") + &format!("Every {} is a ", names[x]);
        let (prefix_ids, _) = chain_ids(tok, &it.question, &prefix, markers).map_err(|e| format!("question #{i}: {e}"))?;
        let (logits, _) = model.forward_ids(Tensor::<1, Int>::from_data(TensorData::new(prefix_ids.iter().map(|&t| t as i64).collect(), [prefix_ids.len()]), device).unsqueeze());
        let vocab = logits.dims()[2];
        let next: Vec<f32> = burn::tensor::activation::log_softmax(logits.narrow(1, prefix_ids.len() - 1, 1).reshape([vocab]), 0)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        let concepts: Vec<usize> = (0..names.len()).filter(|&j| !names[j].starts_with(char::is_uppercase)).collect();
        for &j in &concepts {
            let (ids, _) = chain_ids(tok, &it.question, &(prefix.clone() + &names[j]), markers).map_err(|e| format!("question #{i}: {e}"))?;
            let lp = match ids.strip_prefix(prefix_ids.as_slice()) {
                Some([id]) => next[*id as usize],
                _ => *token_logprobs(model, &ids, device)?.last().unwrap_or(&f32::NEG_INFINITY),
            };
            *d.mass.get_mut(kind(j)).expect("a kind") += f64::from(lp).exp();
            *d.uniform.get_mut(kind(j)).expect("a kind") += 1.0 / concepts.len() as f64;
        }
        d.questions += 1;
    }
    let n = d.questions.max(1) as f64;
    d.mass.values_mut().chain(d.uniform.values_mut()).for_each(|v| *v /= n);
    Ok(d)
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

/// Frontier nodes of one height after one thought: their mean value and how many were averaged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchRow {
    pub thought: usize,
    pub height: usize,
    pub mean_value: f64,
    pub nodes: usize,
}

/// The latent search over `items` with `k` thoughts: for t = 1..=k, the frontier nodes grouped by
/// height, sorted by (thought, height).
pub fn latent_search(
    model: &Gpt2,
    tok: &CoconutTokenizer,
    items: &[Item],
    k: usize,
    n_positions: usize,
    device: &Device,
) -> Result<Vec<SearchRow>, String> {
    let mut sums: std::collections::BTreeMap<(usize, usize), (f64, usize)> = Default::default();
    for (i, it) in items.iter().enumerate() {
        let a = analyze(model, tok, &it.question, k, n_positions, device).map_err(|e| format!("question #{i}: {e}"))?;
        for step in a.steps.iter().filter(|s| s.t > 0) {
            for &v in &step.frontier {
                let e = sums.entry((step.t, a.heights[v])).or_default();
                e.0 += f64::from(step.distribution[v]);
                e.1 += 1;
            }
        }
    }
    Ok(sums.into_iter().map(|((thought, height), (sum, nodes))| SearchRow { thought, height, mean_value: sum / nodes as f64, nodes }).collect())
}

/// The latent search as Markdown.
pub fn latent_search_table(rows: &[SearchRow], caption: &str) -> String {
    let mut md = format!("{caption}\n\n| thought | height | mean value | frontier nodes |\n|---|---|---|---|\n");
    for r in rows {
        md += &format!("| {} | {} | {:.4} | {} |\n", r.thought, r.height, r.mean_value, r.nodes);
    }
    md
}

/// The latent search as an SVG line chart: mean frontier value against height, one line per thought.
pub fn latent_search_svg(rows: &[SearchRow]) -> String {
    let (w, h, p) = (520.0, 300.0, 44.0);
    let mut heights: Vec<usize> = rows.iter().map(|r| r.height).collect();
    heights.sort_unstable();
    heights.dedup();
    let top = rows.iter().map(|r| r.mean_value).fold(0.0, f64::max) * 1.1;
    let top = if top > 0.0 { top } else { 1.0 };
    let x = |height: usize| p + (w - 2.0 * p) * heights.iter().position(|&v| v == height).unwrap_or(0) as f64 / (heights.len().max(2) - 1) as f64;
    let y = |m: f64| h - p - (h - 2.0 * p) * m / top;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <line x1=\"{p}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{p}\" y1=\"{p}\" x2=\"{p}\" y2=\"{0}\" stroke=\"black\"/>\n\
         <text x=\"{2}\" y=\"{3}\" text-anchor=\"middle\">node height (shortest distance to a leaf)</text>\n\
         <text x=\"8\" y=\"{4}\">mean value of frontier nodes (max {top:.3})</text>\n",
        h - p,
        w - p,
        w / 2.0,
        h - 8.0,
        p - 12.0
    );
    for &height in &heights {
        svg += &format!("<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{height}</text>\n", x(height), h - p + 14.0);
    }
    let colours = ["#c4620f", "#2b6cb0", "#1f7a3a", "#7a3da8", "#a30000", "#555"];
    let mut thoughts: Vec<usize> = rows.iter().map(|r| r.thought).collect();
    thoughts.dedup();
    for (i, t) in thoughts.into_iter().enumerate() {
        let points: Vec<String> = rows.iter().filter(|r| r.thought == t).map(|r| format!("{:.1},{:.1}", x(r.height), y(r.mean_value))).collect();
        let c = colours[i % colours.len()];
        svg += &format!("<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>\n", points.join(" "));
        svg += &format!("<text x=\"{}\" y=\"{}\" fill=\"{c}\">thought {t}</text>\n", w - p - 70.0, p + 14.0 * i as f64);
    }
    svg + "</svg>\n"
}
