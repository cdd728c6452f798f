//! The question's concept graph as SVG: a layered DAG layout (longest path from the sources, so the
//! person sits on top and every edge points down; within a layer, nodes ordered by the mean position
//! of their parents), node colour and size from a thought's value distribution, the frontier ringed,
//! the two candidate answers marked, the decoded path drawn.

use coconut::prosqa::ParsedQuestion;
use yew::prelude::*;

/// Node positions in SVG units.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub pos: Vec<(f64, f64)>,
    pub width: f64,
    pub height: f64,
}

const DX: f64 = 92.0;
const DY: f64 = 74.0;
const MARGIN: f64 = 46.0;

pub fn layout(n: usize, edges: &[(usize, usize)]) -> Layout {
    let mut parents = vec![Vec::new(); n];
    for &(p, c) in edges {
        parents[c].push(p);
    }
    // Longest-path layering (ProsQA graphs are DAGs; a cycle in a hand-edited question stops after n rounds).
    let mut layer = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for &(p, c) in edges {
            if layer[c] < layer[p] + 1 && layer[p] + 1 < n {
                layer[c] = layer[p] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = layer.iter().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    (0..n).for_each(|v| rows[layer[v]].push(v));
    let mut x = vec![0.0f64; n];
    for row in &rows {
        row.iter().enumerate().for_each(|(i, &v)| x[v] = i as f64);
    }
    // Two barycentre sweeps reduce crossings.
    for _ in 0..2 {
        for row in rows.iter_mut().skip(1) {
            let key = |v: usize| {
                let ps = &parents[v];
                if ps.is_empty() { x[v] } else { ps.iter().map(|&p| x[p]).sum::<f64>() / ps.len() as f64 }
            };
            row.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
            row.iter().enumerate().for_each(|(i, &v)| x[v] = i as f64);
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let width = 2.0 * MARGIN + (widest - 1) as f64 * DX;
    let mut pos = vec![(0.0, 0.0); n];
    for (d, row) in rows.iter().enumerate() {
        let offset = (width - (row.len().max(1) - 1) as f64 * DX) / 2.0;
        for (i, &v) in row.iter().enumerate() {
            pos[v] = (offset + i as f64 * DX, MARGIN + d as f64 * DY);
        }
    }
    Layout { pos, width, height: 2.0 * MARGIN + (depth - 1) as f64 * DY }
}

#[derive(Properties, PartialEq)]
pub struct GraphProps {
    pub question: ParsedQuestion,
    /// Per node, the current thought's distribution (None before asking).
    #[prop_or_default]
    pub distribution: Option<Vec<f32>>,
    #[prop_or_default]
    pub frontier: Vec<usize>,
    /// Edges of the decoded language path.
    #[prop_or_default]
    pub path: Vec<(usize, usize)>,
    /// The node the decoded answer names.
    #[prop_or_default]
    pub answer: Option<usize>,
}

/// White → coconut orange by value.
fn heat(v: f32) -> String {
    let v = v.clamp(0.0, 1.0).sqrt();
    let mix = |a: f32, b: f32| (a + (b - a) * v).round() as u8;
    format!("rgb({},{},{})", mix(250.0, 214.0), mix(248.0, 98.0), mix(240.0, 20.0))
}

#[function_component(Graph)]
pub fn graph(p: &GraphProps) -> Html {
    let q = &p.question;
    let l = layout(q.names.len(), &q.edges);
    let edges = q.edges.iter().map(|&(a, b)| {
        let ((x1, y1), (x2, y2)) = (l.pos[a], l.pos[b]);
        let on_path = p.path.contains(&(a, b));
        // Stop the line at the child's circle.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-6);
        let (ex, ey) = (x2 - dx / len * 24.0, y2 - dy / len * 24.0);
        html! {
            <line x1={x1.to_string()} y1={y1.to_string()} x2={ex.to_string()} y2={ey.to_string()}
                  class={classes!("edge", on_path.then_some("on-path"))} marker-end="url(#arrow)" />
        }
    });
    let nodes = (0..q.names.len()).map(|v| {
        let (x, y) = l.pos[v];
        let value = p.distribution.as_ref().and_then(|d| d.get(v).copied());
        let r = 13.0 + 11.0 * value.unwrap_or(0.0).sqrt() as f64;
        let fill = value.map(heat).unwrap_or_else(|| "#fbfaf5".into());
        let option = q.options.iter().position(|&o| o == v);
        let class = classes!(
            "node",
            (v == q.subject).then_some("root"),
            option.map(|_| "option"),
            p.frontier.contains(&v).then_some("frontier"),
            (p.answer == Some(v)).then_some("answer"),
        );
        let label = match option {
            Some(i) => format!("{} ({})", q.names[v], ["A", "B"][i]),
            None => q.names[v].clone(),
        };
        let title = match value {
            Some(val) => format!("{}: value {:.3}", q.names[v], val),
            None => q.names[v].clone(),
        };
        html! {
            <g class={class} data-node={q.names[v].clone()} data-value={value.map(|v| format!("{v:.6}"))}>
              <title>{title}</title>
              <circle cx={x.to_string()} cy={y.to_string()} r={format!("{r:.1}")} fill={fill} />
              <text x={x.to_string()} y={(y + r + 12.0).to_string()} text-anchor="middle">{label}</text>
              if let Some(val) = value {
                  <text class="value" x={x.to_string()} y={(y + 4.0).to_string()} text-anchor="middle">{format!("{:.0}", val * 100.0)}</text>
              }
            </g>
        }
    });
    html! {
        <svg class="graph" role="img" aria-label="The question's concept graph" viewBox={format!("0 0 {:.0} {:.0}", l.width, l.height + 16.0)}
             width={format!("{:.0}", l.width)} preserveAspectRatio="xMidYMin meet">
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
            </marker>
          </defs>
          { for edges }
          { for nodes }
        </svg>
    }
}
