//! The KV-cached multi-pass continuous-thought forward equals the slow reference that re-runs the
//! whole prefix for every thought, on a ragged batch (0, 1 and 3 thoughts), in values and gradients.

use burn::prelude::*;
use coconut::coconut::{DeviceBatch, forward, forward_reference, lm_loss};
use coconut::curriculum::{Curriculum, Tokenized, Variant, collate};
use coconut::tokenizer::SpecialIds;
use coconut::{Gpt2, Gpt2Config};
use rand::SeedableRng;

const IDS: SpecialIds = SpecialIds { eos: 0, start_latent: 1, end_latent: 2, latent: 3 };

fn model(device: &Device) -> Gpt2 {
    let config = Gpt2Config { dropout: 0.0, ..Gpt2Config::small(40, 2, 32, 4) };
    config.init(device)
}

/// Three items of different lengths at stages 0, 1 and 3 (0, 1, 3 thoughts).
fn batch(device: &Device) -> DeviceBatch {
    let items = [
        Tokenized { question: vec![10, 11, 12], steps: vec![vec![20], vec![21], vec![22]], answer: vec![30, 0], listing: false, frontiers: vec![] },
        Tokenized { question: vec![13, 14, 15, 16, 17], steps: vec![vec![23, 24], vec![25]], answer: vec![31, 0], listing: false, frontiers: vec![] },
        Tokenized { question: vec![18, 19], steps: vec![vec![26], vec![27], vec![28], vec![29]], answer: vec![32, 33, 0], listing: false, frontiers: vec![] },
    ];
    let c = Curriculum { variant: Variant::Coconut, ..Curriculum::default() };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let seqs: Vec<_> = items
        .iter()
        .zip([0, 1, 3])
        .map(|(t, stage)| {
            let e = c.example(t, stage, IDS, &mut rng);
            (e.input_ids, e.labels)
        })
        .collect();
    let b = collate(&seqs, IDS);
    assert_eq!(b.latent_positions.iter().map(Vec::len).collect::<Vec<_>>(), [0, 1, 3]);
    DeviceBatch::new(&b, device)
}

fn max_abs(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn cached_multi_pass_equals_reference_on_a_ragged_batch() {
    let device = Device::flex();
    let (m, b) = (model(&device), batch(&device));
    let out = forward(&m, &b, true);
    assert_eq!(out.thoughts.len(), 3);
    assert_eq!(out.cache.len(), b.len());
    let d = max_abs(out.hidden.clone(), forward_reference(&m, &b));
    assert!(d <= 1e-5, "cached vs reference hidden states differ by {d}");
    // The thoughts change the result: without feedback the hidden states differ.
    let plain = forward(&m, &b, false).hidden;
    assert!(max_abs(out.hidden, plain) > 1e-3, "feeding thoughts back must matter");
}

#[test]
fn gradients_flow_through_thoughts_as_in_the_reference() {
    let device = Device::flex().autodiff();
    let (m, b) = (model(&device), batch(&device));
    let labels = b.labels.clone().unwrap();
    let cached = lm_loss(&m, forward(&m, &b, true).hidden, labels.clone());
    let reference = lm_loss(&m, forward_reference(&m, &b), labels);
    let (lc, lr) = (cached.clone().into_scalar::<f32>(), reference.clone().into_scalar::<f32>());
    assert!((lc - lr).abs() <= 1e-5, "loss {lc} vs {lr}");
    let (gc, gr) = (cached.backward(), reference.backward());
    let wte_c = m.wte.val().grad(&gc).expect("wte gradient");
    let wte_r = m.wte.val().grad(&gr).expect("wte gradient");
    let d = (wte_c.clone() - wte_r).abs().max().into_scalar::<f32>();
    assert!(d <= 1e-5, "gradients differ by {d}");
    // The question tokens of the row with 3 thoughts get gradient through the thoughts and the answer.
    let q_rows = wte_c.slice([18..20, 0..32]).abs().sum().into_scalar::<f32>();
    assert!(q_rows > 0.0);
}

#[test]
fn frontier_loss_is_the_cross_entropy_of_each_thought_against_its_frontier() {
    // Rows with 0, 1 and 3 thoughts; row 1's thought names {5}, row 2's thoughts {6, 7}, nothing, {8}.
    let device = Device::flex();
    let (m, b) = (model(&device), batch(&device));
    let frontiers = vec![vec![], vec![vec![5]], vec![vec![6, 7], vec![], vec![8]]];
    let b = b.with_thought_frontiers(&frontiers, 40);
    let out = forward(&m, &b, true);
    let loss = coconut::coconut::frontier_loss(&m, &out.thoughts, b.thought_frontiers.clone().unwrap()).into_scalar::<f32>();
    // By hand: log-softmax of each thought's logits, read back, averaged over the three
    // (thought, row) pairs that have a frontier.
    let logp = |i: usize, row: usize| -> Vec<f32> {
        let logits: Vec<f32> = m.lm_head(out.thoughts[i].clone().reshape([1, 3, 32])).into_data().try_to_vec::<f32>().unwrap();
        let z = &logits[row * 40..(row + 1) * 40];
        let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + z.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        z.iter().map(|x| x - lse).collect()
    };
    let want = -(logp(0, 1)[5] + (logp(0, 2)[6] + logp(0, 2)[7]) / 2.0 + logp(2, 2)[8]) / 3.0;
    assert!((loss - want).abs() <= 1e-5, "frontier loss {loss}, by hand {want}");
}
