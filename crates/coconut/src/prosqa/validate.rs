//! An item's graph fields checked against its text.

use super::Graph;
use crate::data::Item;

/// Checks a ProsQA item's graph fields against its text; errors name the field.
pub fn validate(item: &Item) -> Result<(), (String, String)> {
    let err = |field: &str, msg: String| Err((field.to_string(), msg));
    let (Some(names), Some(edges), Some(root), Some(target), Some(neg)) = (&item.idx_to_symbol, &item.edges, item.root, item.target, item.neg_target)
    else {
        return err("idx_to_symbol/edges/root/target/neg_target", "ProsQA items need all graph fields".into());
    };
    let n = names.len();
    for (i, e) in edges.iter().enumerate() {
        if e[0] >= n || e[1] >= n {
            return err("edges", format!("edge {i} {:?} is out of range for {n} nodes", e));
        }
    }
    for (field, v) in [("root", root), ("target", target), ("neg_target", neg)] {
        if v >= n {
            return err(field, format!("{v} is out of range for {n} nodes"));
        }
    }
    let g = Graph { n, edges: edges.iter().map(|e| (e[0], e[1])).collect() };
    let d = g.distances(root);
    if d[target] == usize::MAX {
        return err("target", format!("{} is not reachable from the root {}", names[target], names[root]));
    }
    if d[neg] != usize::MAX {
        return err("neg_target", format!("{} is reachable from the root {}", names[neg], names[root]));
    }
    let want = format!("{} is a {}.", names[root], names[target]);
    if item.answer != want {
        return err("answer", format!("`{}` contradicts the graph (expected `{want}`)", item.answer));
    }
    let hp = g.has_parent();
    let is_edge = |p: usize, c: usize| g.edges.contains(&(p, c));
    let mut at = root;
    for (i, step) in item.steps.iter().enumerate() {
        let next = (0..n).find(|&c| {
            is_edge(at, c)
                && *step == if hp[at] { format!("Every {} is a {}.", names[at], names[c]) } else { format!("{} is a {}.", names[at], names[c]) }
        });
        match next {
            Some(c) => at = c,
            None => return err("steps", format!("step {i} `{step}` is not an edge from {}", names[at])),
        }
    }
    if at != target {
        return err("steps", format!("the steps end at {}, not the target {}", names[at], names[target]));
    }
    Ok(())
}
