//! Batched KV-cached generation gives the same tokens as the official-style batch-1 decoding that
//! re-runs the whole sequence for every token.

use burn::prelude::*;
use coconut::generate::{generate, generate_reference};
use coconut::tokenizer::SpecialIds;
use coconut::{Gpt2, Gpt2Config};

const IDS: SpecialIds = SpecialIds { eos: 0, start_latent: 1, end_latent: 2, latent: 3 };

fn model(device: &Device, seed: u64) -> Gpt2 {
    device.seed(seed);
    Gpt2Config { dropout: 0.0, initializer_range: 0.3, ..Gpt2Config::small(40, 2, 32, 4) }.init(device)
}

#[test]
fn batched_cached_generation_equals_batch1_recompute() {
    let device = Device::flex();
    let m = model(&device, 7);
    let k = 3;
    let prompts: Vec<Vec<u32>> = [vec![10, 11, 12], vec![13, 14, 15, 16, 17, 18], vec![19]]
        .into_iter()
        .map(|mut q| {
            q.push(IDS.start_latent);
            q.extend([IDS.latent; 3]);
            q.push(IDS.end_latent);
            q
        })
        .collect();
    let got = generate(&m, &prompts, IDS, 12, true, &device);
    for (p, g) in prompts.iter().zip(&got) {
        assert_eq!(g.thoughts.len(), k);
        assert_eq!(g.tokens, generate_reference(&m, p, IDS, 12, &device), "prompt {p:?}");
    }
    assert!(got.iter().any(|g| !g.tokens.is_empty()));
    // Without thoughts (k = 0) and for prompts without markers (CoT) the same holds.
    let plain: Vec<Vec<u32>> = vec![vec![10, 11, 12, 13], vec![14, 15]];
    for (p, g) in plain.iter().zip(generate(&m, &plain, IDS, 8, true, &device)) {
        assert_eq!(g.tokens, generate_reference(&m, p, IDS, 8, &device));
    }
}
