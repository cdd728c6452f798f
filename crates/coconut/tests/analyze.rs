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
    let a = analyze(&model, &tok, q, 2, 256, &device).unwrap();
    assert_eq!(a.names, ["Tom", "wumpus", "yumpus", "zumpus"]);
    assert_eq!(a.root, 0);
    // Shortest distance to a leaf: yumpus, zumpus 0; wumpus 1; Tom 1 (via zumpus).
    assert_eq!(a.heights, [1, 1, 0, 0]);
    assert_eq!(a.steps.len(), 3);
    // The concepts the next language step names: "Tom is a …" (t = 0) and "Every …" after one
    // thought both name Tom's children; after two thoughts, the node two hops away.
    assert_eq!(a.steps[0].frontier, [1, 3]);
    assert_eq!(a.steps[1].frontier, [1, 3]);
    assert_eq!(a.steps[2].frontier, [2]);
    assert!(a.steps[0].top_tokens.is_empty() && a.steps[1].top_tokens.len() == 5);
    for s in &a.steps {
        assert_eq!(s.values.len(), 4);
        assert!(s.values.iter().all(|v| (0.0..=1.0).contains(v)));
        // One-token names are outcomes of one next-token distribution.
        assert!(s.values.iter().sum::<f32>() <= 1.0 + 1e-4);
        assert!((s.distribution.iter().sum::<f32>() - 1.0).abs() <= 1e-4);
    }
    assert!(analyze(&model, &tok, "Tom is a florp. Is Tom a florp or wumpus?", 1, 256, &device).is_err());
    // More thoughts than the model has positions: refused by name before any compute.
    let err = analyze(&model, &tok, q, 300, 256, &device).unwrap_err();
    assert!(err.contains("this model takes at most 256"), "{err}");
    assert!(analyze(&model, &tok, q, usize::MAX, 256, &device).is_err());
}

/// Multi-token names (GPT-2 BPE): the cached per-name continuation equals scoring each full
/// sequence (prompt, t thoughts, lead, name) from scratch.
#[test]
fn multi_token_node_values_equal_scoring_each_full_sequence() {
    use burn::tensor::activation::log_softmax;
    use coconut::coconut::{DeviceBatch, forward};
    use coconut::curriculum::{Curriculum, Tokenized};
    use coconut::generate::collate_prompts;

    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/gpt2-bpe");
    assert!(dir.join("vocab.json").exists(), "GPT-2 BPE files missing: run scripts/fetch-gpt2-bpe.sh");
    let tok = CoconutTokenizer::gpt2_bpe(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap();
    let device = Device::flex();
    device.seed(5);
    let model = Gpt2Config { dropout: 0.0, n_positions: 128, ..Gpt2Config::small(tok.vocab_size(), 1, 16, 2) }.init(&device);
    let q = "Tom is a wumpus. Every wumpus is a yumpus. Tom is a zumpus. Is Tom a yumpus or zumpus?";
    let a = analyze(&model, &tok, q, 1, 128, &device).unwrap();
    let t_item = Tokenized::question(q, &tok).unwrap();
    for (t, lead) in [(0, "Tom is a"), (1, "Every")] {
        let mut prompt = Curriculum::default().prompt(&t_item, t, tok.special);
        prompt.extend(tok.encode(lead).unwrap());
        for (node, name) in a.names.iter().enumerate() {
            let ids = tok.encode(&format!(" {name}")).unwrap();
            let seq: Vec<u32> = prompt.iter().chain(&ids).copied().collect();
            let b = DeviceBatch::new(&collate_prompts(std::slice::from_ref(&seq), tok.special), &device);
            let lp = log_softmax(model.lm_head(forward(&model, &b, true).hidden), 2);
            let lp: Vec<f32> = lp.into_data().try_into_vec_as::<f32>().unwrap();
            let vocab = model.vocab_size();
            let want: f32 = ids.iter().enumerate().map(|(j, &id)| lp[(prompt.len() - 1 + j) * vocab + id as usize]).sum();
            let got = a.steps[t].values[node].ln();
            assert!((got - want).abs() <= 1e-3, "t={t} {name}: {got} vs {want}");
        }
    }
}
