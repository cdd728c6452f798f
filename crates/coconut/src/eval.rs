//! Evaluation as in the paper: answer accuracy (exact match of the text after the last "#", commas
//! dropped, as the official code) and, for ProsQA, the six path categories of the decoded output.
//!
//! Path categories (paper, Sec. 5): the language steps after k thoughts form a (partial) path.
//! - Correct Path: a valid chain that, completed from the root, is a shortest path to the target.
//! - Longer Path: a valid chain to the target, longer than the shortest.
//! - Hallucination: a step names an edge the graph lacks, the chain breaks, or its first node cannot
//!   be reached from the root (for k = 0 it must start at the root).
//! - Wrong Target: a valid chain ending at another node.
//! - Correct Label / Incorrect Label: no path at all, only the answer, right or wrong.

use serde::Serialize;

use crate::data::Item;
use crate::prosqa::Graph;

/// The answer after the last `#`, without commas, trimmed (the official `split("#")[-1]`).
pub fn extract_answer(text: &str) -> String {
    text.rsplit('#').next().unwrap_or("").replace(',', "").trim().to_string()
}

pub fn answer_correct(output: &str, item: &Item) -> bool {
    extract_answer(output) == item.answer.replace(',', "").trim()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum PathCategory {
    CorrectPath,
    LongerPath,
    Hallucination,
    WrongTarget,
    CorrectLabel,
    IncorrectLabel,
}

impl PathCategory {
    pub const ALL: [PathCategory; 6] =
        [Self::CorrectPath, Self::LongerPath, Self::Hallucination, Self::WrongTarget, Self::CorrectLabel, Self::IncorrectLabel];

    pub fn key(self) -> &'static str {
        match self {
            Self::CorrectPath => "correct_path",
            Self::LongerPath => "longer_path",
            Self::Hallucination => "hallucination",
            Self::WrongTarget => "wrong_target",
            Self::CorrectLabel => "correct_label",
            Self::IncorrectLabel => "incorrect_label",
        }
    }
}

/// Reads "X is a Y." / "Every X is a Y." into (X, Y).
fn parse_step(sentence: &str) -> Option<(&str, &str)> {
    let w: Vec<&str> = sentence.trim().trim_end_matches('.').split_whitespace().collect();
    match w.as_slice() {
        ["Every", x, "is", "a", y] | [x, "is", "a", y] => Some((x, y)),
        _ => None,
    }
}

/// The category of a ProsQA output (`output` = the decoded text after the prompt of `k` thoughts).
pub fn path_category(output: &str, item: &Item, k: usize) -> PathCategory {
    let correct = answer_correct(output, item);
    let path_text = output.split('#').next().unwrap_or("");
    let sentences: Vec<&str> = path_text.split(['.', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect();
    if sentences.is_empty() {
        return if correct { PathCategory::CorrectLabel } else { PathCategory::IncorrectLabel };
    }
    let (Some(names), Some(edges), Some(root), Some(target)) = (&item.idx_to_symbol, &item.edges, item.root, item.target) else {
        return if correct { PathCategory::CorrectLabel } else { PathCategory::IncorrectLabel };
    };
    let g = Graph { n: names.len(), edges: edges.iter().map(|e| (e[0], e[1])).collect() };
    let id = |name: &str| names.iter().position(|n| n == name);
    let mut chain = Vec::new();
    for s in &sentences {
        let Some((x, y)) = parse_step(s) else { return PathCategory::Hallucination };
        let (Some(x), Some(y)) = (id(x), id(y)) else { return PathCategory::Hallucination };
        if !g.edges.contains(&(x, y)) || chain.last().is_some_and(|&(_, prev)| prev != x) {
            return PathCategory::Hallucination;
        }
        chain.push((x, y));
    }
    let d = g.distances(root);
    let (start, end) = (chain[0].0, chain.last().unwrap().1);
    if d[start] == usize::MAX || (k == 0 && start != root) {
        return PathCategory::Hallucination;
    }
    if end != target {
        return PathCategory::WrongTarget;
    }
    if d[start] + chain.len() == d[target] { PathCategory::CorrectPath } else { PathCategory::LongerPath }
}
