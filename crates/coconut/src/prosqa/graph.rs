//! A ProsQA concept graph and its searches (children, distances, shortest paths).

use std::collections::VecDeque;

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
