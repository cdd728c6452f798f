//! ProsQA (Hao et al. 2024, Appendix A): questions over a random DAG of fictional concepts.
//!
//! The generator follows the paper's Algorithm 1: nodes are added one by one; each new node draws
//! `poisson(λ)` parents from a candidate set (with probability `p_only0` the nodes reachable from
//! start node 0 only, with `p_only1` those reachable from node 1 only, else every node), weighted by
//! `depth·1.5 + 1` and drawn without replacement; a node's label is the OR of its parents' labels
//! (bit 1 = below node 0, bit 2 = below node 1). Nodes without parents are persons. What the paper
//! leaves open comes from the official files (`../shared/prosqa/README.md`): the root is the start
//! node with the deeper exclusive leaf, the target is that leaf, `neg_target` a random exclusive
//! leaf of the other start node, `steps` a uniformly chosen shortest root→target path of ≥ 3 hops.
//! See [`GenConfig`] for the constants and why.

use std::collections::{HashSet, VecDeque};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{DataError, Item};

/// The 17 person names and 38 concept names of the official ProsQA sets.
pub const PERSONS: [&str; 17] =
    ["Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver", "Polly", "Rex", "Sally", "Sam", "Stella", "Tom", "Wren"];
pub const CONCEPTS: [&str; 38] = [
    "bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus", "gorpus", "grimpus", "gwompus", "hilpus", "impus", "jelpus",
    "jompus", "kerpus", "lempus", "lorpus", "numpus", "quimpus", "rempus", "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus", "terpus",
    "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus", "yumpus", "zhorpus", "zumpus",
];

/// Every word a ProsQA question, step or answer can contain (for a word-level vocabulary).
pub fn vocabulary_text() -> String {
    format!("{} {} Every is a Is or ? . ###\n", PERSONS.join(" "), CONCEPTS.join(" "))
}

/// The generator's constants.
///
/// - `lambda = 1.4` (paper: 1.5): with 1.5 the generated graphs have 1.74 shortest paths per
///   question against the official 1.59 (and 37 edges against 36.0); 1.4 matches both.
/// - `p_only0 = 0.35`, `p_only1 = 0.45` (split 0.35 / 0.80; paper: 0.35 / 0.70): the literal split
///   gives ~4.6 persons per graph against the official 2.56; the restricted branches offer only nodes
///   reachable from exactly that start node (never nodes reachable from neither), as the files imply.
/// - `nodes = 21..=26` uniform; graphs with isolated nodes or a shortest path outside 3..=6 hops are
///   redrawn: fits the official 22.8 nodes and the 3/4/5/6-hop histogram.
///
/// `coconut data stats GENERATED --compare OFFICIAL...` checks the fit (RESULTS.md has the table).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenConfig {
    pub lambda: f64,
    pub p_only0: f64,
    pub p_only1: f64,
    pub min_nodes: usize,
    pub max_nodes: usize,
    pub min_hops: usize,
    pub max_hops: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self { lambda: 1.4, p_only0: 0.35, p_only1: 0.45, min_nodes: 21, max_nodes: 26, min_hops: 3, max_hops: 6 }
    }
}

/// Graph draws allowed for one question before the generator gives up on a configuration (about
/// a second's work; an ordinary question takes a few hundred).
pub const MAX_DRAWS_PER_QUESTION: usize = 2_000_000;

impl GenConfig {
    /// Refuses node and hop ranges no graph can have: 4-32 nodes (two persons, a root-to-target
    /// path and a negative target), and a shortest path with room in the largest graph.
    pub fn validate(&self) -> Result<(), String> {
        let (n, h) = ((self.min_nodes, self.max_nodes), (self.min_hops, self.max_hops));
        if n.0 < 4 || n.1 > 32 || n.0 > n.1 {
            return Err(format!("nodes {}-{}: graphs have 4-32 nodes (MIN <= MAX)", n.0, n.1));
        }
        if h.0 == 0 || h.0 > h.1 {
            return Err(format!("hops {}-{}: a question's shortest path has at least 1 hop (MIN <= MAX)", h.0, h.1));
        }
        if h.0 + 3 > n.1 {
            return Err(format!(
                "hops {}-{} with nodes {}-{}: a {}-hop path, the other person and the wrong option need at least {} nodes",
                h.0,
                h.1,
                n.0,
                n.1,
                h.0,
                h.0 + 3
            ));
        }
        Ok(())
    }
}

/// A concept graph: `edges[i] = (parent, child)`, node ids in creation order.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub n: usize,
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    pub fn children(&self) -> Vec<Vec<usize>> {
        let mut ch = vec![Vec::new(); self.n];
        for &(p, c) in &self.edges {
            ch[p].push(c);
        }
        ch
    }

    pub fn has_parent(&self) -> Vec<bool> {
        let mut hp = vec![false; self.n];
        for &(_, c) in &self.edges {
            hp[c] = true;
        }
        hp
    }

    /// Breadth-first distances from `s` (`usize::MAX` = unreachable).
    pub fn distances(&self, s: usize) -> Vec<usize> {
        let ch = self.children();
        let mut d = vec![usize::MAX; self.n];
        d[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &v in &ch[u] {
                if d[v] == usize::MAX {
                    d[v] = d[u] + 1;
                    q.push_back(v);
                }
            }
        }
        d
    }

    /// All shortest paths from `s` to `t`, each a node list (only nodes on some shortest path are
    /// visited: `d(s, v) + d(v, t) = d(s, t)`).
    pub fn shortest_paths(&self, s: usize, t: usize) -> Vec<Vec<usize>> {
        let d = self.distances(s);
        if d[t] == usize::MAX {
            return Vec::new();
        }
        let reversed = Graph { n: self.n, edges: self.edges.iter().map(|&(p, c)| (c, p)).collect() };
        let to_t = reversed.distances(t);
        let on_path = |v: usize| d[v] != usize::MAX && to_t[v] != usize::MAX && d[v] + to_t[v] == d[t];
        let ch = self.children();
        let mut paths = Vec::new();
        let mut stack = vec![vec![s]];
        while let Some(path) = stack.pop() {
            let u = *path.last().unwrap();
            if u == t {
                paths.push(path);
                continue;
            }
            for &v in &ch[u] {
                if d[v] == d[u] + 1 && on_path(v) {
                    let mut p = path.clone();
                    p.push(v);
                    stack.push(p);
                }
            }
        }
        paths.sort();
        paths
    }

    /// Number of shortest paths from `s` to `t` (counted, not listed).
    pub fn count_shortest_paths(&self, s: usize, t: usize) -> u64 {
        let d = self.distances(s);
        let ch = self.children();
        let mut order: Vec<usize> = (0..self.n).filter(|&v| d[v] != usize::MAX).collect();
        order.sort_by_key(|&v| d[v]);
        let mut count = vec![0u64; self.n];
        count[s] = 1;
        for u in order {
            for &v in &ch[u] {
                if d[v] == d[u] + 1 {
                    count[v] += count[u];
                }
            }
        }
        count[t]
    }
}

/// Poisson(λ) by inverse CDF: `cdf[k] = P(X ≤ k)`, tabulated once per graph.
fn poisson_cdf(lambda: f64) -> [f64; 32] {
    let (mut cdf, mut pmf, mut acc) = ([1.0; 32], (-lambda).exp(), 0.0);
    for (k, c) in cdf.iter_mut().enumerate().take(31) {
        acc += pmf;
        *c = acc;
        pmf *= lambda / (k + 1) as f64;
    }
    cdf
}

fn poisson(rng: &mut impl Rng, cdf: &[f64; 32]) -> usize {
    let u = rng.random::<f64>();
    cdf.partition_point(|&c| c < u)
}

/// Nodes a new node may take as parents, with cumulative weights `depth·1.5 + 1` (doubled to stay
/// integral). Labels never change, so the three candidate sets only grow.
struct Candidates {
    nodes: [u8; 64],
    cumulative: [u32; 64],
    len: usize,
}

impl Candidates {
    const EMPTY: Self = Self { nodes: [0; 64], cumulative: [0; 64], len: 0 };

    fn push(&mut self, node: usize, depth: usize) {
        let before = if self.len == 0 { 0 } else { self.cumulative[self.len - 1] };
        self.nodes[self.len] = node as u8;
        self.cumulative[self.len] = before + 3 * depth as u32 + 2;
        self.len += 1;
    }

    /// One node drawn in proportion to its weight.
    fn draw(&self, rng: &mut impl Rng) -> usize {
        let x = rng.random_range(0..self.cumulative[self.len - 1]);
        self.nodes[self.cumulative[..self.len].partition_point(|&c| c <= x)] as usize
    }
}

/// One random graph by Algorithm 1 (nodes 0 and 1 are the two start persons), written into a
/// reused edge buffer; returns the node count, or `None` when the graph has an isolated node (a
/// person nobody descends from), which is redrawn. About 99% of draws are redrawn, so this allocates
/// nothing. Drawing `k` parents without replacement is done by redrawing repeats, which gives the
/// same distribution as removing each chosen node and renormalising.
fn random_edges(rng: &mut impl Rng, cfg: &GenConfig, edges: &mut Vec<(usize, usize)>) -> Option<usize> {
    const MAX: usize = 64;
    edges.clear();
    assert!(cfg.max_nodes <= MAX, "at most {MAX} nodes");
    let n = rng.random_range(cfg.min_nodes..=cfg.max_nodes);
    let cdf = poisson_cdf(cfg.lambda);
    let (mut depth, mut label) = ([0usize; MAX], [0u8; MAX]);
    let (mut n_parents, mut has_child) = ([0u8; MAX], [false; MAX]);
    // Candidate sets: reachable from node 0 only, from node 1 only, every node.
    let mut sets = [Candidates::EMPTY, Candidates::EMPTY, Candidates::EMPTY];
    (label[0], label[1]) = (1, 2);
    sets[0].push(0, 0);
    sets[1].push(1, 0);
    sets[2].push(0, 0);
    sets[2].push(1, 0);
    for node in 2..n {
        let k = poisson(rng, &cdf);
        let r = rng.random::<f64>();
        let set = &sets[if r < cfg.p_only0 {
            0
        } else if r < cfg.p_only0 + cfg.p_only1 {
            1
        } else {
            2
        }];
        let mut chosen = [0u8; MAX];
        let k = k.min(set.len);
        for i in 0..k {
            chosen[i] = if k == set.len {
                set.nodes[i] // every candidate is taken
            } else {
                loop {
                    let p = set.draw(rng) as u8;
                    if !chosen[..i].contains(&p) {
                        break p;
                    }
                }
            };
        }
        for &parent in &chosen[..k] {
            let parent = parent as usize;
            label[node] |= label[parent];
            depth[node] = depth[node].max(depth[parent] + 1);
            has_child[parent] = true;
            edges.push((parent, node));
        }
        n_parents[node] = k as u8;
        if label[node] == 1 || label[node] == 2 {
            sets[label[node] as usize - 1].push(node, depth[node]);
        }
        sets[2].push(node, depth[node]);
    }
    if (0..n).any(|v| n_parents[v] == 0 && !has_child[v]) {
        return None;
    }
    Some(n)
}

/// Root, target and negative target of a graph, or `None` when it cannot make a question.
pub fn pick_question(rng: &mut impl Rng, g: &Graph, cfg: &GenConfig) -> Option<(usize, usize, usize)> {
    let ch = g.children();
    let (d0, d1) = (g.distances(0), g.distances(1));
    let reach = |d: &Vec<usize>, v: usize| d[v] != usize::MAX;
    let leaves: Vec<usize> = (0..g.n).filter(|&v| ch[v].is_empty()).collect();
    let excl0: Vec<usize> = leaves.iter().copied().filter(|&v| reach(&d0, v) && !reach(&d1, v)).collect();
    let excl1: Vec<usize> = leaves.iter().copied().filter(|&v| reach(&d1, v) && !reach(&d0, v)).collect();
    let deepest = |ex: &[usize], d: &[usize]| ex.iter().copied().max_by_key(|&v| (d[v], usize::MAX - v));
    let (b0, b1) = (deepest(&excl0, &d0)?, deepest(&excl1, &d1)?);
    let root_is_0 = d0[b0] > d1[b1] || (d0[b0] == d1[b1] && rng.random::<bool>());
    let (root, target, others, hops) = if root_is_0 { (0, b0, excl1, d0[b0]) } else { (1, b1, excl0, d1[b1]) };
    if hops < cfg.min_hops || hops > cfg.max_hops {
        return None;
    }
    let neg = others[rng.random_range(0..others.len())];
    Some((root, target, neg))
}

/// Builds the official item from a graph and its question nodes.
pub fn make_item(rng: &mut impl Rng, g: &Graph, root: usize, target: usize, neg: usize) -> Item {
    let hp = g.has_parent();
    let mut persons: Vec<&str> = PERSONS.to_vec();
    let mut concepts: Vec<&str> = CONCEPTS.to_vec();
    persons.shuffle(rng);
    concepts.shuffle(rng);
    let (mut pi, mut ci) = (persons.into_iter(), concepts.into_iter());
    let names: Vec<String> = (0..g.n).map(|v| if hp[v] { ci.next() } else { pi.next() }.expect("enough names").to_string()).collect();
    let sentence = |(p, c): (usize, usize)| {
        if hp[p] { format!("Every {} is a {}.", names[p], names[c]) } else { format!("{} is a {}.", names[p], names[c]) }
    };
    let mut facts: Vec<String> = g.edges.iter().copied().map(sentence).collect();
    facts.shuffle(rng);
    let (a, b) = if rng.random::<bool>() { (target, neg) } else { (neg, target) };
    let question = format!("{} Is {} a {} or {}?", facts.join(" "), names[root], names[a], names[b]);
    let paths = g.shortest_paths(root, target);
    let path = &paths[rng.random_range(0..paths.len())];
    let steps = path.windows(2).map(|w| sentence((w[0], w[1]))).collect();
    Item {
        question,
        answer: format!("{} is a {}.", names[root], names[target]),
        steps,
        idx_to_symbol: Some(names),
        edges: Some(g.edges.iter().map(|&(p, c)| [p, c]).collect()),
        root: Some(root),
        target: Some(target),
        neg_target: Some(neg),
    }
}

/// xoshiro256++ (Blackman & Vigna): the generator's random stream, the same on every platform
/// (wasm32 included) and several times faster than ChaCha, which matters at ~99% rejections.
pub struct Xoshiro256([u64; 4]);

impl RngCore for Xoshiro256 {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

impl SeedableRng for Xoshiro256 {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            *w = u64::from_le_bytes(seed[i * 8..i * 8 + 8].try_into().unwrap());
        }
        if s == [0; 4] {
            s[0] = 1; // the all-zero state is a fixed point
        }
        Self(s)
    }

    /// SplitMix64 expansion of a 64-bit seed.
    fn seed_from_u64(mut state: u64) -> Self {
        let mut s = [0u64; 4];
        for w in &mut s {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *w = z ^ (z >> 31);
        }
        Self(s)
    }
}

/// Questions are drawn in chunks of this many, chunk `i` from its own stream of the seed: the
/// output depends on `(n, seed)` only, not on how many threads made it.
const CHUNK: usize = 512;

/// `n` questions for `seed`, none of whose question text is in `exclude` (the official sets).
/// About 99% of drawn graphs are redrawn (isolated nodes), so chunks run on all cores natively.
/// `Err` for a configuration `GenConfig::validate` refuses, or when `MAX_DRAWS_PER_QUESTION`
/// draws in a row give no question (ranges that are possible but that the generator's graphs
/// practically never have, e.g. a 29-hop path in 32 nodes).
pub fn generate(n: usize, seed: u64, cfg: &GenConfig, exclude: &HashSet<String>) -> Result<Vec<Item>, String> {
    cfg.validate()?;
    let chunks = n.div_ceil(CHUNK);
    let chunk = |i: usize| -> Result<Vec<Item>, String> {
        let mut rng = Xoshiro256::seed_from_u64(seed ^ (i as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let want = CHUNK.min(n - i * CHUNK);
        let mut items = Vec::with_capacity(want);
        let mut edges = Vec::with_capacity(128);
        let mut draws = 0;
        while items.len() < want {
            draws += 1;
            if draws > MAX_DRAWS_PER_QUESTION {
                return Err(format!(
                    "no question with a {}-{}-hop shortest path in {MAX_DRAWS_PER_QUESTION} draws of {}-{}-node graphs: this generator's graphs (practically) never have one; widen the nodes or lower the hops",
                    cfg.min_hops, cfg.max_hops, cfg.min_nodes, cfg.max_nodes
                ));
            }
            let Some(n) = random_edges(&mut rng, cfg, &mut edges) else { continue };
            let g = Graph { n, edges: edges.clone() };
            let Some((root, target, neg)) = pick_question(&mut rng, &g, cfg) else { continue };
            let item = make_item(&mut rng, &g, root, target, neg);
            if !exclude.contains(&item.question) {
                items.push(item);
                draws = 0;
            }
        }
        Ok(items)
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1).min(chunks.max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut parts: Vec<(usize, Result<Vec<Item>, String>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= chunks {
                                return done;
                            }
                            let part = chunk(i);
                            let failed = part.is_err();
                            done.push((i, part));
                            if failed {
                                next.store(chunks, std::sync::atomic::Ordering::Relaxed); // stop the others too
                                return done;
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().expect("generator thread")).collect()
        });
        parts.sort_by_key(|(i, _)| *i);
        let mut all = Vec::with_capacity(n);
        for (_, part) in parts {
            all.extend(part?);
        }
        Ok(all)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut all = Vec::with_capacity(n);
        for i in 0..chunks {
            all.extend(chunk(i)?);
        }
        Ok(all)
    }
}

/// The search stage's chain for a ProsQA item: every fact reachable from the person, breadth-first.
/// Node `u` is expanded in the order it was reached; its facts come in a random order (`seed`), so
/// at "Every X is a ?" the best guess is any child of X not yet named: the lookup the latent
/// search is built from, asked ~20 times per question instead of the 3–6 times of one path.
/// `None` when the item has no graph.
pub fn breadth_first_steps(item: &Item, seed: u64) -> Option<Vec<String>> {
    let (names, edges, root) = (item.idx_to_symbol.as_ref()?, item.edges.as_ref()?, item.root?);
    let g = Graph { n: names.len(), edges: edges.iter().map(|&[p, c]| (p, c)).collect() };
    let (ch, hp) = (g.children(), g.has_parent());
    let mut rng = Xoshiro256::seed_from_u64(seed);
    let mut seen = vec![false; g.n];
    seen[root] = true;
    let mut queue = VecDeque::from([root]);
    let mut steps = Vec::new();
    while let Some(u) = queue.pop_front() {
        let mut children = ch[u].clone();
        children.shuffle(&mut rng);
        for v in children {
            steps.push(if hp[u] { format!("Every {} is a {}.", names[u], names[v]) } else { format!("{} is a {}.", names[u], names[v]) });
            if !seen[v] {
                seen[v] = true;
                queue.push_back(v);
            }
        }
    }
    Some(steps)
}

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

/// A ProsQA question read back from its text: the facts and the query (for the page's graph).
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedQuestion {
    /// Node names in order of first mention.
    pub names: Vec<String>,
    /// Whether each node is a person (named without "Every").
    pub is_person: Vec<bool>,
    pub edges: Vec<(usize, usize)>,
    pub subject: usize,
    pub options: [usize; 2],
}

impl ParsedQuestion {
    /// The graph edges a decoded language chain walks ("Tom is a X.", "Every X is a Y.", and the
    /// final "### Tom is a Y." when it is an edge), in order; sentences that are no edge are skipped.
    pub fn path_edges(&self, text: &str) -> Vec<(usize, usize)> {
        let idx = |n: &str| self.names.iter().position(|x| x == n);
        text.split(['.', '\n', '#'])
            .filter_map(|s| {
                let w: Vec<&str> = s.split_whitespace().collect();
                let (p, c) = match w.as_slice() {
                    ["Every", p, "is", "a", c] | [p, "is", "a", c] => (idx(p)?, idx(c)?),
                    _ => return None,
                };
                self.edges.contains(&(p, c)).then_some((p, c))
            })
            .collect()
    }
}

/// Parses "F1. F2. ... Is X a A or B?" where each fact is "X is a Y." or "Every Y is a Z.".
/// The error names the sentence (1-based) that does not parse.
pub fn parse_question(text: &str) -> Result<ParsedQuestion, String> {
    let text = text.trim();
    let body = text.strip_suffix('?').ok_or("the question must end with `Is X a A or B?`")?;
    let (facts, query) = match body.rfind(". ") {
        Some(i) => (&body[..=i], body[i + 2..].trim()),
        None => ("", body.trim()),
    };
    let mut q = ParsedQuestion { names: Vec::new(), is_person: Vec::new(), edges: Vec::new(), subject: 0, options: [0, 0] };
    fn node(q: &mut ParsedQuestion, name: &str, person: bool) -> usize {
        match q.names.iter().position(|n| n == name) {
            Some(i) => {
                q.is_person[i] &= person;
                i
            }
            None => {
                q.names.push(name.to_string());
                q.is_person.push(person);
                q.names.len() - 1
            }
        }
    }
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric());
    let sentences: Vec<&str> = facts.split_terminator('.').map(str::trim).collect();
    for (i, s) in sentences.iter().enumerate() {
        let w: Vec<&str> = s.split_whitespace().collect();
        let bad = || format!("sentence {} `{s}.` is not a ProsQA fact (`Name is a concept.` or `Every concept is a concept.`)", i + 1);
        let (parent, child, person) = match w.as_slice() {
            ["Every", p, "is", "a", c] if word(p) && word(c) => (*p, *c, false),
            [p, "is", "a", c] if word(p) && word(c) => (*p, *c, true),
            _ => return Err(bad()),
        };
        let p = node(&mut q, parent, person);
        let c = node(&mut q, child, false);
        q.is_person[c] = false;
        q.edges.push((p, c));
    }
    let w: Vec<&str> = query.split_whitespace().collect();
    let ["Is", subject, "a", a, "or", b] = w.as_slice() else {
        return Err(format!("sentence {} `{query}?` is not the query `Is X a A or B?`", sentences.len() + 1));
    };
    let find = |n: &str| q.names.iter().position(|x| x == n).ok_or_else(|| format!("the query names `{n}`, which no fact mentions"));
    q.subject = find(subject)?;
    q.options = [find(a)?, find(b)?];
    Ok(q)
}
