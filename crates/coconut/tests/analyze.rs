//! Latent analysis on a hand-made question: graph, heights, frontiers, values as probabilities.

use burn::prelude::*;
use coconut::analyze::analyze;
use coconut::{CoconutTokenizer, Gpt2Config, prosqa};

#[test]
fn analysis_reports_graph_heights_frontiers_and_node_values() {
    let device = Device::flex();
    let tok = CoconutTokenizer::word_level([prosqa::vocabulary_text()]).unwrap();
    device.seed(3);
    let model = Gpt2Config { dropout: 0.0, n_positions: 256, ..Gpt2Config::small(tok.vocab_size(), 1, 32, 2) }.init(&device);
    let q = "Tom is a wumpus. Every wumpus is a yumpus. Tom is a zumpus. Is Tom a yumpus or zumpus?";
    let a = analyze(&model, &tok, q, 2, &device).unwrap();
    assert_eq!(a.names, ["Tom", "wumpus", "yumpus", "zumpus"]);
    assert_eq!(a.root, 0);
    // Shortest distance to a leaf: yumpus, zumpus 0; wumpus 1; Tom 1 (via zumpus).
    assert_eq!(a.heights, [1, 1, 0, 0]);
    assert_eq!(a.steps.len(), 3);
    assert_eq!(a.steps[0].frontier, [1, 3]); // one hop from Tom
    assert_eq!(a.steps[1].frontier, [2]);
    assert!(a.steps[0].top_tokens.is_empty() && a.steps[1].top_tokens.len() == 5);
    for s in &a.steps {
        assert_eq!(s.values.len(), 4);
        assert!(s.values.iter().all(|v| (0.0..=1.0).contains(v)));
        // One-token names are outcomes of one next-token distribution.
        assert!(s.values.iter().sum::<f32>() <= 1.0 + 1e-4);
        assert!((s.distribution.iter().sum::<f32>() - 1.0).abs() <= 1e-4);
    }
    assert!(analyze(&model, &tok, "Tom is a florp. Is Tom a florp or wumpus?", 1, &device).is_err());
}
