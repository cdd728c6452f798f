//! Dataset statistics (`coconut data stats`) and how close a generated set is to the official ones.

use serde::Serialize;

use super::{Graph, validate};
use crate::data::{DataError, Item};

/// Graph statistics of one item (for `coconut data stats`).
#[derive(Clone, Debug, Serialize)]
pub struct ItemStats {
    pub nodes: usize,
    pub edges: usize,
    pub persons: usize,
    pub hops: usize,
    pub shortest_paths: u64,
    pub question_words: usize,
    pub target_first: bool,
}

pub fn item_stats(item: &Item) -> Result<ItemStats, DataError> {
    validate(item).map_err(|(field, msg)| DataError::Item { index: 0, field, msg })?;
    let names = item.idx_to_symbol.as_ref().unwrap();
    let g = Graph { n: names.len(), edges: item.edges.as_ref().unwrap().iter().map(|e| (e[0], e[1])).collect() };
    let (root, target) = (item.root.unwrap(), item.target.unwrap());
    let hp = g.has_parent();
    let tail = item.question.rsplit_once(" Is ").map(|(_, t)| t).unwrap_or("");
    let target_first = tail.split_once(" a ").map(|(_, rest)| rest.starts_with(&format!("{} or", names[target]))).unwrap_or(false);
    Ok(ItemStats {
        nodes: g.n,
        edges: g.edges.len(),
        persons: hp.iter().filter(|&&h| !h).count(),
        hops: g.distances(root)[target],
        shortest_paths: g.count_shortest_paths(root, target),
        question_words: item.question.split_whitespace().count(),
        target_first,
    })
}

/// Mean and standard deviation.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
}

impl MeanSd {
    fn of(xs: impl Iterator<Item = f64> + Clone) -> Self {
        let n = xs.clone().count().max(1) as f64;
        let mean = xs.clone().sum::<f64>() / n;
        let var = xs.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Self { mean, sd: var.sqrt() }
    }

    /// Standard error of the mean over `n` items.
    pub fn se(&self, n: usize) -> f64 {
        self.sd / (n.max(1) as f64).sqrt()
    }
}

/// `coconut data stats`: the statistics the issue and the official README compare.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetStats {
    pub items: usize,
    pub nodes: MeanSd,
    pub edges: MeanSd,
    pub persons: MeanSd,
    pub hops: MeanSd,
    pub shortest_paths: MeanSd,
    pub question_words: MeanSd,
    /// Share of items with a shortest path of 3, 4, 5, 6 hops (and more, last).
    pub hop_share: [f64; 5],
    pub target_first: f64,
    pub root_is_node1: f64,
}

pub fn dataset_stats(items: &[Item]) -> Result<DatasetStats, DataError> {
    let stats = items
        .iter()
        .enumerate()
        .map(|(index, it)| {
            item_stats(it).map_err(|e| match e {
                DataError::Item { field, msg, .. } => DataError::Item { index, field, msg },
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = stats.len().max(1) as f64;
    let of = |f: fn(&ItemStats) -> f64| MeanSd::of(stats.iter().map(f));
    let mut hop_share = [0.0; 5];
    for s in &stats {
        hop_share[s.hops.clamp(3, 7) - 3] += 1.0 / n;
    }
    Ok(DatasetStats {
        items: stats.len(),
        nodes: of(|s| s.nodes as f64),
        edges: of(|s| s.edges as f64),
        persons: of(|s| s.persons as f64),
        hops: of(|s| s.hops as f64),
        shortest_paths: of(|s| s.shortest_paths as f64),
        question_words: of(|s| s.question_words as f64),
        hop_share,
        target_first: stats.iter().filter(|s| s.target_first).count() as f64 / n,
        root_is_node1: items.iter().filter(|it| it.root == Some(1)).count() as f64 / n,
    })
}

/// One compared quantity: ours vs the reference, and whether it is within the goal
/// (3% of the reference mean or three of its standard errors, whichever is larger).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub name: &'static str,
    pub ours: f64,
    pub reference: f64,
    pub tolerance: f64,
    pub ok: bool,
}

pub fn compare(ours: &DatasetStats, reference: &DatasetStats) -> Vec<Comparison> {
    let n = reference.items;
    let mut rows = Vec::new();
    let mut mean = |name, o: MeanSd, r: MeanSd| {
        let tolerance = (0.03 * r.mean).max(3.0 * r.se(n));
        rows.push(Comparison { name, ours: o.mean, reference: r.mean, tolerance, ok: (o.mean - r.mean).abs() <= tolerance });
    };
    mean("nodes", ours.nodes, reference.nodes);
    mean("edges", ours.edges, reference.edges);
    mean("persons", ours.persons, reference.persons);
    mean("shortest path (hops)", ours.hops, reference.hops);
    mean("shortest paths (count)", ours.shortest_paths, reference.shortest_paths);
    mean("question words", ours.question_words, reference.question_words);
    for (i, name) in ["3 hops (share)", "4 hops (share)", "5 hops (share)", "6 hops (share)"].into_iter().enumerate() {
        let (o, r) = (ours.hop_share[i], reference.hop_share[i]);
        // A share is a mean of 0/1 indicators: sd = sqrt(p(1-p)).
        let tolerance = (0.03 * r).max(3.0 * (r * (1.0 - r) / n.max(1) as f64).sqrt());
        rows.push(Comparison { name, ours: o, reference: r, tolerance, ok: (o - r).abs() <= tolerance });
    }
    rows
}
