//! The continuous-thought forward (Coconut's latent loop).
//!
//! A collated batch has its first `<|latent|>` in the same column `a` for every row, and row `r` has
//! `n_r` latents in columns `a .. a + n_r`. With `n = max n_r`:
//!
//! ```text
//! pass 0:      positions [0, a)              → h[a-1]
//! pass i≥1:    position a+i-1 (one column)   input = h[a+i-2] where row has a thought there, else its token
//! last pass:   positions [a+n-1, T)          the rest of the sequence, first column as above
//! ```
//!
//! Every pass extends the KV cache of the ones before (n + 1 passes, each over new positions only, as
//! in the official code), the thought is picked per row with `mask_where` on one column (no in-place
//! write, no rebuild of the embedding tensor), and gradients flow through every thought.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::curriculum::Batch;
use crate::gpt2::{Gpt2, Gpt2Input, KvCache};

/// A collated batch on the device. `latent_counts` and `first_latent` stay on the host: the loop's
/// shape is known before anything runs, so it never reads the device.
pub struct DeviceBatch {
    pub input_ids: Tensor<2, Int>,
    pub position_ids: Tensor<2, Int>,
    pub key_mask: Tensor<2, Bool>,
    /// `IGNORE` (-100) where no loss is taken; absent for prompts.
    pub labels: Option<Tensor<2, Int>>,
    pub latent_counts: Vec<usize>,
    pub first_latent: Option<usize>,
    /// Frontier supervision's targets `[thoughts, batch, vocab]`: row (i, b) is the uniform
    /// distribution over the frontier thought i of row b stands for, all zeros without one
    /// ([`DeviceBatch::with_thought_frontiers`]); `None`: no frontier loss.
    pub thought_frontiers: Option<Tensor<3>>,
}

impl DeviceBatch {
    pub fn new(b: &Batch, device: &Device) -> Self {
        let shape = [b.batch, b.len];
        let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
        let first_latent = b.latent_positions.iter().filter_map(|p| p.first().copied()).min();
        for p in &b.latent_positions {
            if let (Some(&f), Some(a)) = (p.first(), first_latent) {
                assert!(f == a && p.windows(2).all(|w| w[1] == w[0] + 1), "latents must be contiguous and aligned (use curriculum::collate)");
            }
        }
        Self {
            input_ids: ints(b.input_ids.iter().map(|&i| i as i64).collect()),
            position_ids: ints(b.position_ids.clone()),
            key_mask: ints(b.attention_mask.iter().map(|&m| m as i64).collect()).equal_elem(1),
            labels: (!b.labels.is_empty()).then(|| ints(b.labels.clone())),
            latent_counts: b.latent_positions.iter().map(Vec::len).collect(),
            first_latent,
            thought_frontiers: None,
        }
    }

    /// Adds frontier supervision's targets: `frontiers[b][i]` = the token ids of the frontier row
    /// b's thought i stands for (`Example::thought_frontiers`).
    pub fn with_thought_frontiers(mut self, frontiers: &[Vec<Vec<u32>>], vocab: usize) -> Self {
        let (n, batch) = (self.max_latents(), frontiers.len());
        let mut w = vec![0f32; n * batch * vocab];
        for (b, row) in frontiers.iter().enumerate() {
            for (i, ids) in row.iter().enumerate().take(n) {
                for &id in ids {
                    w[(i * batch + b) * vocab + id as usize] += 1.0 / ids.len() as f32;
                }
            }
        }
        let device = self.input_ids.device();
        self.thought_frontiers = (n > 0).then(|| Tensor::from_data(TensorData::new(w, [n, batch, vocab]), &device));
        self
    }

    pub fn len(&self) -> usize {
        self.input_ids.dims()[1]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn max_latents(&self) -> usize {
        self.latent_counts.iter().copied().max().unwrap_or(0)
    }
}

pub struct ThoughtOutput {
    /// Last hidden state of every position `[batch, len, d]`.
    pub hidden: Tensor<3>,
    /// The continuous thoughts, one `[batch, d]` per thought index (rows without that thought hold
    /// the hidden state of their own token there).
    pub thoughts: Vec<Tensor<2>>,
    pub cache: KvCache,
}

fn run(model: &Gpt2, b: &DeviceBatch, embeds: Tensor<3>, start: usize, end: usize, cache: Option<KvCache>) -> (Tensor<3>, KvCache) {
    let batch = embeds.dims()[0];
    let out = model.forward(Gpt2Input {
        embeds,
        positions: b.position_ids.clone().slice([0..batch, start..end]),
        key_mask: Some(b.key_mask.clone().slice([0..batch, 0..end])),
        cache,
    });
    (out.hidden, out.cache)
}

/// The multi-pass forward. With `feed_back = false` the latent tokens are ordinary (pause) tokens
/// and one pass is made.
pub fn forward(model: &Gpt2, b: &DeviceBatch, feed_back: bool) -> ThoughtOutput {
    let tokens = model.embed(b.input_ids.clone());
    let [batch, len, _] = tokens.dims();
    let n = b.max_latents();
    let (Some(a), true, true) = (b.first_latent, feed_back, n > 0) else {
        let (hidden, cache) = run(model, b, tokens, 0, len, None);
        return ThoughtOutput { hidden, thoughts: Vec::new(), cache };
    };
    let device = tokens.device();
    let (h0, mut cache) = run(model, b, tokens.clone().slice([0..batch, 0..a]), 0, a, None);
    let mut last = h0.clone().slice([0..batch, a - 1..a]);
    let mut parts = vec![h0];
    let mut thoughts = Vec::with_capacity(n);
    for i in 0..n {
        let col = a + i;
        // Rows with an i-th thought take the previous hidden state, the others keep their token.
        let has = b.latent_counts.iter().map(|&c| c > i).collect::<Vec<_>>();
        let has = Tensor::<1, Bool>::from_data(TensorData::new(has, [batch]), &device).reshape([batch, 1, 1]);
        let column = tokens.clone().slice([0..batch, col..col + 1]).mask_where(has.expand([batch, 1, last.dims()[2]]), last.clone());
        thoughts.push(last.clone().reshape([batch, last.dims()[2]]));
        let end = if i + 1 < n { col + 1 } else { len };
        let embeds = if end > col + 1 { Tensor::cat(vec![column, tokens.clone().slice([0..batch, col + 1..end])], 1) } else { column };
        let (h, c) = run(model, b, embeds, col, end, Some(cache));
        last = h.clone().slice([0..batch, 0..1]);
        parts.push(h);
        cache = c;
    }
    ThoughtOutput { hidden: Tensor::cat(parts, 1), thoughts, cache }
}

/// Shifted next-token cross-entropy over the positions whose label is not ignored (mean).
pub fn lm_loss(model: &Gpt2, hidden: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, len, _] = hidden.dims();
    let logits = model.lm_head(hidden.slice([0..batch, 0..len - 1]));
    let targets = labels.slice([0..batch, 1..len]);
    let valid = targets.clone().greater_equal_elem(0).float();
    let logp = log_softmax(logits, 2).gather(2, targets.clamp_min(0).unsqueeze_dim(2)).squeeze_dim::<2>(2);
    let total = valid.clone().sum().clamp_min(1.0);
    (logp * valid).sum().neg() / total
}

/// Frontier supervision: the mean over (thought, row) pairs that have a frontier of the
/// cross-entropy −Σ_v target(v)·log p(v | thought) of the thought read through the LM head against
/// its target (`DeviceBatch::thought_frontiers`). Zero when no row has one.
pub fn frontier_loss(model: &Gpt2, thoughts: &[Tensor<2>], targets: Tensor<3>) -> Tensor<1> {
    let [n, batch, vocab] = targets.dims();
    let d = thoughts[0].dims()[1];
    let hidden = Tensor::stack::<3>(thoughts[..n].to_vec(), 0).reshape([1, n * batch, d]);
    let logp = log_softmax(model.lm_head(hidden).reshape([n * batch, vocab]), 1);
    let targets = targets.reshape([n * batch, vocab]);
    let rows = targets.clone().sum_dim(1).greater_elem(0.0).float().sum().clamp_min(1.0);
    (logp * targets).sum().neg() / rows
}

/// The slow reference: for each thought, re-run the whole prefix without a cache; the embedding
/// tensor is rebuilt from per-position pieces (what the official code does). Tests compare against it.
pub fn forward_reference(model: &Gpt2, b: &DeviceBatch) -> Tensor<3> {
    let tokens = model.embed(b.input_ids.clone());
    let [batch, len, d] = tokens.dims();
    let mut columns: Vec<Tensor<3>> = (0..len).map(|c| tokens.clone().slice([0..batch, c..c + 1])).collect();
    if let Some(a) = b.first_latent {
        let device = tokens.device();
        for i in 0..b.max_latents() {
            let col = a + i;
            let (h, _) = run(model, b, Tensor::cat(columns[..col].to_vec(), 1), 0, col, None);
            let prev = h.slice([0..batch, col - 1..col]);
            let has = b.latent_counts.iter().map(|&c| c > i).collect::<Vec<_>>();
            let has = Tensor::<1, Bool>::from_data(TensorData::new(has, [batch]), &device).reshape([batch, 1, 1]).expand([batch, 1, d]);
            columns[col] = columns[col].clone().mask_where(has, prev);
        }
    }
    run(model, b, Tensor::cat(columns, 1), 0, len, None).0
}
