//! Growing a trained GPT-2 into a larger one that computes the same function (Net2Net, Chen et al.
//! 2016), so a run can gain capacity without starting over.
//!
//! Deeper: blocks appended after the last one, with zero output projections (attention's and the
//! MLP's `c_proj`), add nothing to the residual stream until training moves them.
//!
//! Wider by a factor k: every residual feature is copied k times and scaled by 1/√k,
//!     x' = [x, …, x] / √k
//! Layer norm, with its ε divided by k too, does not see the scale and returns k copies of its
//! output (mean μ/√k, variance σ²/k: (x − μ)/√k / √((σ² + ε)/k) = (x − μ)/√(σ² + ε)), so a layer that
//! reads it takes its weights tiled over the k input copies and divided by k. A layer that writes
//! to the residual stream tiles its outputs and scales them by 1/√k. Heads are copied (k·n_head
//! heads of the same size: every attention pattern and every rotary angle is the old one), the
//! MLP's hidden units likewise. With the LM head tied to wte' = [E, …, E]/√k and the final norm's
//! γ, β scaled by 1/√k:
//!     h' = [h, …, h]/√k,    logits' = h'·wte'ᵀ = k · (h/√k)·(E/√k)ᵀ = h·Eᵀ,
//! and h', fed back as a continuous thought, is the thought at the new embedding scale.
//! Copies start identical and would get identical gradients: `noise` (a standard deviation added to
//! every grown weight matrix) breaks the symmetry.
//!
//! Wider heads instead of more heads ([`Heads::Wider`]): the n_head heads stay and each gets k times
//! the features. Head h's query is [√k·q_h, 0, …], its key and value [k_h, …, k_h] and [v_h, …, v_h],
//! so q'·k'/√(k·d_head) = q_h·k_h/√d_head: the same attention. With rotary positions only the first
//! d_head features are rotated (`rotary_dims`, at the old angles); the new ones match on content at
//! any distance, and start with a zero query (their key is a copy, so the query gets gradients).
//! The output projection reads the k value copies through its old rows divided by k.
//!
//! Length-scaled ([`length_scaled`]): every head's query at position p is multiplied by
//! s_h·ln(p + 1) with s_h = 1/ln(n): the same attention as before for the query that sees n keys,
//! sharper after it, flatter before it. Not the same function everywhere, the only graft here that
//! is not: it starts a plain model's training with Scalable-Softmax's learned scales.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::gpt2::{Gpt2, Gpt2Config, Position};

/// Appends `extra` blocks that start as the identity (zero output projections).
pub fn deeper(mut model: Gpt2, config: &Gpt2Config, extra: usize) -> (Gpt2, Gpt2Config) {
    if extra == 0 {
        return (model, config.clone());
    }
    let device = model.device();
    let grown = Gpt2Config { n_layer: config.n_layer + extra, ..config.clone() };
    let fresh = Gpt2Config { n_layer: extra, ..config.clone() }.init(&device);
    for mut block in fresh.h.into_iter().take(extra) {
        for proj in [&mut block.attn.c_proj, &mut block.mlp.c_proj] {
            proj.weight = leaf(proj.weight.val().zeros_like());
            proj.bias = proj.bias.take().map(|b| leaf(b.val().zeros_like()));
        }
        model.h.push(block);
    }
    (model, grown)
}

/// Gives every attention layer Scalable-Softmax's per-head scale `s_h = 1/ln(keys)`, so the model
/// attends as before at the query that sees `keys` keys (`Gpt2Config::length_scaled_attention`).
pub fn length_scaled(mut model: Gpt2, config: &Gpt2Config, keys: usize) -> (Gpt2, Gpt2Config) {
    assert!(keys >= 2, "the length-scale graft needs a reference of at least 2 keys");
    let device = model.device();
    for block in &mut model.h {
        let s = Tensor::<1>::ones([block.attn.n_head], &device) / (keys as f32).ln();
        block.attn.length_scale = Some(Param::from_tensor(s));
    }
    (model, Gpt2Config { length_scaled_attention: true, ..config.clone() })
}

/// Multiplies layer `layer`'s queries by `factor`: its attention logits scale by `factor` (softmax
/// temperature 1/`factor`), nothing else changes. A probe of how a trained layer ranks its keys:
/// sharper attention helps when the right keys already score highest.
pub fn sharpened(mut model: Gpt2, layer: usize, factor: f32) -> Gpt2 {
    let attn = &mut model.h[layer].attn;
    let d = attn.c_attn.weight.dims()[0];
    let device = attn.c_attn.weight.device();
    let scale: Vec<f32> = (0..3 * d).map(|j| if j < d { factor } else { 1.0 }).collect();
    let scale = Tensor::<1>::from_floats(scale.as_slice(), &device);
    attn.c_attn.weight = leaf(attn.c_attn.weight.val() * scale.clone().unsqueeze::<2>());
    attn.c_attn.bias = attn.c_attn.bias.take().map(|b| leaf(b.val() * scale));
    model
}

/// How attention grows with the width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heads {
    /// k·n_head heads of the old size: each head copied k times.
    More,
    /// n_head heads of k times the size: the old features first, new content features after them.
    Wider,
}

/// Widens every layer `k` times (MLP units copied; heads copied or widened), adding `noise` to the weights.
pub fn wider(model: Gpt2, config: &Gpt2Config, k: usize, heads: Heads, noise: f64) -> (Gpt2, Gpt2Config) {
    assert!(k >= 1, "the width factor must be at least 1");
    if k == 1 {
        return (model, config.clone());
    }
    let layer_norm_epsilon = config.layer_norm_epsilon / k as f64;
    let (n_head, head_dim) = (config.n_head, config.head_dim());
    let grown = match heads {
        Heads::More => Gpt2Config { n_head: k * n_head, ..config.clone() },
        Heads::Wider => Gpt2Config {
            rotary_dims: match config.position {
                Position::Rope => Some(config.rotary_dims.unwrap_or(head_dim)),
                Position::Learned => None,
            },
            ..config.clone()
        },
    };
    let grown = Gpt2Config { n_embd: k * config.n_embd, n_inner: k * config.n_inner, layer_norm_epsilon, ..grown };
    let residual = 1.0 / (k as f32).sqrt();
    let Gpt2 { wte, wpe, h, ln_f, dropout, position, nope_layers, .. } = model;
    let rotary_dims = grown.rotary_dims.unwrap_or(grown.head_dim());
    let h = h
        .into_iter()
        .map(|mut b| {
            assert!(b.attn.qkv_conv.is_none() || heads == Heads::More, "widening the heads of a model with qkv_conv is not supported");
            b.ln_1 = widen_norm(b.ln_1, k, 1.0);
            match heads {
                Heads::More => {
                    b.attn.c_attn = widen_linear(b.attn.c_attn, k, 3, 1.0, noise);
                    // The convolution over time is per feature: each copied feature keeps its taps.
                    b.attn.qkv_conv = b.attn.qkv_conv.map(|c| leaf(tile_sections(c.val(), 3, k)));
                    b.attn.c_proj = widen_linear(b.attn.c_proj, k, 1, residual, noise);
                    b.attn.n_head *= k;
                    b.attn.length_scale = b.attn.length_scale.map(|s| leaf(s.val().repeat_dim(0, k)));
                }
                Heads::Wider => {
                    b.attn.c_attn = widen_heads_qkv(b.attn.c_attn, k, n_head, noise);
                    b.attn.c_proj = widen_heads_proj(b.attn.c_proj, k, n_head, residual, noise);
                }
            }
            b.ln_2 = widen_norm(b.ln_2, k, 1.0);
            b.mlp.c_fc = widen_linear(b.mlp.c_fc, k, 1, 1.0, noise);
            b.mlp.c_proj = widen_linear(b.mlp.c_proj, k, 1, residual, noise);
            b
        })
        .collect();
    let embedding = |p: Param<Tensor<2>>| leaf(p.val().repeat_dim(1, k) * residual);
    let model = Gpt2 { wte: embedding(wte), wpe: embedding(wpe), h, ln_f: widen_norm(ln_f, k, residual), dropout, position, rotary_dims, nope_layers, layer_norm_epsilon };
    (model, grown)
}

/// A new parameter from a computed tensor (cut from the autodiff graph it was computed in).
fn leaf<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t.detach())
}

/// `t` `[rows, cols]` read as `sections` equal column blocks (q | k | v), each tiled k times.
fn tile_sections(t: Tensor<2>, sections: usize, k: usize) -> Tensor<2> {
    let width = t.dims()[1] / sections;
    Tensor::cat((0..sections).map(|s| t.clone().narrow(1, s * width, width).repeat_dim(1, k)).collect(), 1)
}

/// `w` `[d_in, d_out]`: rows tiled k times / k (the input is k copies); the output's `sections`
/// (q | k | v for `c_attn`) each tiled k times, times `scale`.
fn widen_linear(l: Linear, k: usize, sections: usize, scale: f32, noise: f64) -> Linear {
    let tile_out = |t: Tensor<2>| tile_sections(t, sections, k) * scale;
    let w = tile_out(l.weight.val().repeat_dim(0, k) / k as f32);
    let w = with_noise(w, noise);
    let bias = l.bias.map(|b| leaf(tile_out(b.val().unsqueeze::<2>()).squeeze_dim::<1>(0)));
    Linear { weight: leaf(w), bias }
}

/// `c_attn` for heads k times wider: rows tiled k times / k (the input is k copies); per head, the
/// query [√k·q_h, 0, …], the key [k_h, …, k_h], the value [v_h, …, v_h].
fn widen_heads_qkv(l: Linear, k: usize, n_head: usize, noise: f64) -> Linear {
    let tile_out = |t: Tensor<2>| {
        let [rows, cols] = t.dims();
        let (d, root_k) = (cols / 3, (k as f32).sqrt());
        let head = |s: usize| t.clone().narrow(1, s * d, d).reshape([rows, n_head, d / n_head]);
        let q = Tensor::cat(vec![head(0) * root_k, head(0).zeros_like().repeat_dim(2, k - 1)], 2);
        let grown = [q, head(1).repeat_dim(2, k), head(2).repeat_dim(2, k)];
        Tensor::cat(grown.into_iter().map(|s| s.reshape([rows, k * d])).collect(), 1)
    };
    let w = tile_out(l.weight.val().repeat_dim(0, k) / k as f32);
    let w = with_noise(w, noise);
    let bias = l.bias.map(|b| leaf(tile_out(b.val().unsqueeze::<2>()).squeeze_dim::<1>(0)));
    Linear { weight: leaf(w), bias }
}

/// Attention's `c_proj` reading heads k times wider (k copies of each head's value): each head's
/// rows tiled k times / k; the output tiled k times, times `scale`.
fn widen_heads_proj(l: Linear, k: usize, n_head: usize, scale: f32, noise: f64) -> Linear {
    let [d_in, d_out] = l.weight.dims();
    let w = l.weight.val().reshape([n_head, d_in / n_head, d_out]).repeat_dim(1, k).reshape([k * d_in, d_out]) / k as f32;
    let w = w.repeat_dim(1, k) * scale;
    let w = with_noise(w, noise);
    let bias = l.bias.map(|b| leaf(b.val().repeat_dim(0, k) * scale));
    Linear { weight: leaf(w), bias }
}

/// `w` plus normal noise of standard deviation `noise` (none at 0): breaks the copies' symmetry.
fn with_noise(w: Tensor<2>, noise: f64) -> Tensor<2> {
    if noise > 0.0 { w.clone() + w.random_like(Distribution::Normal(0.0, noise)) } else { w }
}

/// γ and β of a layer norm over k copies of the features, times `scale`.
fn widen_norm(ln: LayerNorm, k: usize, scale: f32) -> LayerNorm {
    let tile = |p: Param<Tensor<1>>| leaf(p.val().repeat_dim(0, k) * scale);
    let gamma = tile(ln.gamma);
    let mut grown = LayerNormConfig::new(gamma.dims()[0]).init(&gamma.val().device());
    grown.beta = ln.beta.map(tile);
    grown.gamma = gamma;
    grown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt2::Gpt2Input;

    fn run(model: &Gpt2, embeds: Tensor<3>) -> Tensor<3> {
        let [batch, len, _] = embeds.dims();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &embeds.device()).unsqueeze::<2>().expand([batch, len]);
        model.forward(Gpt2Input { embeds, positions, key_mask: None, cache: None }).hidden
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// A question, then two continuous thoughts (each the last hidden state fed back as the next
    /// input embedding), then the logits at every position.
    fn thoughts_then_logits(model: &Gpt2, ids: &[i64]) -> (Tensor<3>, Tensor<3>) {
        let device = model.device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
        let mut embeds = model.embed(ids);
        for _ in 0..2 {
            let hidden = run(model, embeds.clone());
            let len = hidden.dims()[1];
            embeds = Tensor::cat(vec![embeds, hidden.narrow(1, len - 1, 1)], 1);
        }
        let hidden = run(model, embeds);
        (model.lm_head(hidden.clone()), hidden)
    }

    #[test]
    fn a_grown_model_computes_what_it_grew_from() {
        let device = Device::flex();
        device.seed(5);
        let ids: Vec<i64> = (0..11).map(|i| (i * 7 % 40) as i64).collect();
        for position in [Position::Rope, Position::Learned] {
            let config = Gpt2Config { dropout: 0.0, n_positions: 64, position, ..Gpt2Config::small(40, 2, 32, 4) };
            let model = config.init(&device);
            let (logits, hidden) = thoughts_then_logits(&model, &ids);

            let (deep, deep_config) = deeper(model.clone(), &config, 2);
            assert_eq!((deep.h.len(), deep_config.n_layer), (4, 4));
            let (deep_logits, deep_hidden) = thoughts_then_logits(&deep, &ids);
            assert!(max_diff(deep_logits, logits.clone()) < 1e-5 && max_diff(deep_hidden, hidden.clone()) < 1e-5);

            let (wide, wide_config) = wider(model.clone(), &config, 2, Heads::More, 0.0);
            assert_eq!((wide.n_embd(), wide_config.n_head, wide_config.n_inner), (64, 8, 256));
            assert_eq!(wide.h[0].mlp.c_proj.weight.dims(), [256, 64]);
            let (wide_logits, wide_hidden) = thoughts_then_logits(&wide, &ids);
            // The last hidden state is the old one copied twice at 1/√2: the thought the old model
            // fed back, at the new embedding scale.
            let expected = hidden.clone().repeat_dim(2, 2) / 2f32.sqrt();
            let (dl, dh) = (max_diff(wide_logits, logits.clone()), max_diff(wide_hidden, expected.clone()));
            assert!(dl < 1e-4 && dh < 1e-4, "{position:?}: logits moved by {dl}, the last hidden state by {dh}");

            // With the convolution over time on q, k, v (random taps: the identity would test nothing).
            let conv_config = Gpt2Config { qkv_conv: 3, ..config.clone() };
            let mut conv_model = conv_config.init(&device);
            for b in &mut conv_model.h {
                b.attn.qkv_conv = b.attn.qkv_conv.take().map(|c| leaf(c.val().random_like(Distribution::Normal(0.0, 0.7))));
            }
            let (conv_logits, conv_hidden) = thoughts_then_logits(&conv_model, &ids);
            let (wide, _) = wider(conv_model, &conv_config, 2, Heads::More, 0.0);
            let (wide_logits, wide_hidden) = thoughts_then_logits(&wide, &ids);
            let (dl, dh) = (max_diff(wide_logits, conv_logits), max_diff(wide_hidden, conv_hidden.repeat_dim(2, 2) / 2f32.sqrt()));
            assert!(dl < 1e-4 && dh < 1e-4, "{position:?}, qkv_conv: logits moved by {dl}, the last hidden state by {dh}");

            // Wider heads: 4 heads of 16 features, the first 8 rotated (rotary) as before.
            let (wide, wide_config) = wider(model, &config, 2, Heads::Wider, 0.0);
            assert_eq!((wide.n_embd(), wide_config.n_head, wide_config.head_dim()), (64, 4, 16));
            let rotated = if position == Position::Rope { Some(8) } else { None };
            assert_eq!(wide_config.rotary_dims, rotated);
            wide_config.validate().unwrap();
            let (wide_logits, wide_hidden) = thoughts_then_logits(&wide, &ids);
            let (dl, dh) = (max_diff(wide_logits, logits), max_diff(wide_hidden, expected));
            assert!(dl < 1e-4 && dh < 1e-4, "{position:?}, wider heads: logits moved by {dl}, the last hidden state by {dh}");
        }
    }

    #[test]
    fn sharpening_a_layer_scales_its_queries_as_a_length_scale_does_at_one_position() {
        // Scalable-Softmax multiplies the query at position p by s·ln(p + 1); with s = f/ln(len) the
        // last query is multiplied by f, as `sharpened` does to every query: one layer, so the last
        // position's output depends on no other query.
        let device = Device::flex();
        for seed in 0..8 {
            device.seed(seed);
            let config = Gpt2Config { dropout: 0.0, n_positions: 64, position: Position::Rope, ..Gpt2Config::small(40, 1, 32, 4) };
            // Weights 3× the initial scale, so that attention is far from uniform whatever the draw
            // (tests share the seed, so the draw depends on which ran first); several draws.
            let mut model = config.init(&device);
            model.h[0].attn.c_attn.weight = leaf(model.h[0].attn.c_attn.weight.val() * 3.0);
            let ids: Vec<i64> = (0..13).map(|i| (i * 5 % 40) as i64).collect();
            let (factor, len) = (2.5f32, ids.len());
            let (scaled, _) = length_scaled(model.clone(), &config, 2);
            let mut scaled = scaled;
            scaled.h[0].attn.length_scale = Some(Param::from_tensor(Tensor::<1>::ones([4], &device) * (factor / (len as f32).ln())));
            let last = |m: &Gpt2| {
                let (logits, _) = thoughts_then_logits(m, &ids);
                let n = logits.dims()[1];
                logits.narrow(1, n - 1, 1)
            };
            let sharp = sharpened(model.clone(), 0, factor);
            let (same, moved) = (max_diff(last(&sharp), last(&scaled)), max_diff(last(&sharp), last(&model)));
            assert!(same < moved / 50.0 && moved > 1e-3, "sharpened vs length-scaled: {same}; vs the model: {moved}");
            assert!(max_diff(last(&sharpened(model.clone(), 0, 1.0)), last(&model)) < 1e-6);
        }
    }

    #[test]
    fn noise_breaks_the_symmetry_of_the_copies() {
        let device = Device::flex();
        device.seed(6);
        let config = Gpt2Config { dropout: 0.0, position: Position::Rope, ..Gpt2Config::small(40, 1, 16, 2) };
        let (wide, _) = wider(config.init(&device), &config, 2, Heads::More, 1e-3);
        let w = wide.h[0].mlp.c_fc.weight.val();
        let copies = max_diff(w.clone().narrow(1, 0, 64).unsqueeze(), w.narrow(1, 64, 64).unsqueeze());
        assert!(copies > 1e-4 && copies < 1e-2, "the two copies of the MLP's units differ by {copies}");
    }

    #[test]
    fn a_length_scaled_graft_attends_as_before_at_its_reference_length() {
        let device = Device::flex();
        device.seed(12);
        // One layer: the last position's hidden state depends on its own query only (a second layer
        // would read the earlier positions' first-layer outputs, whose queries the graft changes).
        let config = Gpt2Config { dropout: 0.0, position: Position::Rope, ..Gpt2Config::small(40, 1, 32, 4) };
        let plain = config.init(&device);
        let ids: Vec<i64> = (0..12).map(|i| (i * 7 % 40) as i64).collect();
        let last = |m: &Gpt2| {
            let (_, h) = m.forward_ids(Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), &device));
            h.narrow(1, ids.len() - 1, 1).into_data().try_to_vec::<f32>().unwrap()
        };
        let before = last(&plain);
        let (graft, grown) = length_scaled(plain.clone(), &config, ids.len());
        assert!(grown.length_scaled_attention && grown.num_params() == config.num_params() + 4);
        let diff = before.iter().zip(last(&graft)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "the query that sees 12 keys moved by {diff}");
        let (other, _) = length_scaled(plain, &config, 3);
        let diff = before.iter().zip(last(&other)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff > 1e-4, "a graft at another length changes that query ({diff})");
    }
}
