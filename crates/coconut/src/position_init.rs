//! Initial values for a GPT-2 trained from scratch (the architecture stays GPT-2's; everything
//! stays trainable): a sinusoidal table for the learned positions, and first-layer heads that start
//! out attending a fixed number of tokens back, for learned and for rotary positions.

use burn::module::Param;
use burn::prelude::*;

use crate::gpt2::{Gpt2, Position};

/// A sinusoidal table `[n, d]` (Vaswani et al.: sin at even, cos at odd features, wavelengths
/// 2π·10000^(2i/d)), rescaled to standard deviation `std`: an *initial value* for GPT-2's learned
/// position embedding whose dot products already depend on the offset between two positions.
pub fn sinusoidal_positions(n: usize, d: usize, std: f64, device: &Device) -> Tensor<2> {
    let mut v = vec![0f32; n * d];
    for p in 0..n {
        for i in 0..d {
            let rate = 10000f64.powf(-((i / 2 * 2) as f64) / d as f64);
            let a = p as f64 * rate;
            v[p * d + i] = (if i % 2 == 0 { a.sin() } else { a.cos() } * std * std::f64::consts::SQRT_2) as f32;
        }
    }
    Tensor::from_data(TensorData::new(v, [n, d]), device)
}

/// Offset heads at initialisation (an experiment; the architecture stays GPT-2's). The first
/// `2·F` features of the residual stream carry a position code, `sin(ω_f p), cos(ω_f p)` with
/// wavelengths from 3 to `n_positions` (the token embedding starts at zero there), and head `h` of
/// the first layer starts as a pure position head: its query is the code rotated back by
/// `offsets[h]`, its key the code itself, so `q_i · k_j ∝ Σ_f cos(ω_f (i − offsets[h] − j))` and
/// the head attends from position `i` to `i − offsets[h]`. `sharpness` is the attention logit of
/// that peak per frequency. Everything stays trainable. What it is for: a lookup ("Every X is a ?"
/// → the fact about X in the question) needs such heads before it can form.
pub fn with_offset_heads(mut model: Gpt2, offsets: &[usize], frequencies: usize, sharpness: f32) -> Gpt2 {
    assert_eq!(model.position, Position::Learned, "offset heads are written into learned positions");
    let device = model.device();
    let [n_pos, d] = model.wpe.dims();
    let block = &model.h[0];
    let n_head = block.attn.n_head;
    let hd = d / n_head;
    assert!(offsets.len() <= n_head, "{} offset heads but {n_head} heads", offsets.len());
    assert!(2 * frequencies <= hd, "2 x {frequencies} position features do not fit a head of {hd}");
    let host = |t: Tensor<2>| -> Vec<f32> { t.into_data().try_to_vec::<f32>().expect("f32 weights") };
    let (mut wte, mut wpe, mut w) = (host(model.wte.val()), host(model.wpe.val()), host(block.attn.c_attn.weight.val()));
    let vocab = wte.len() / d;
    let omega: Vec<f64> = (0..frequencies)
        .map(|f| {
            let period = 3.0 * (n_pos as f64 / 3.0).powf(f as f64 / (frequencies.max(2) - 1) as f64);
            2.0 * std::f64::consts::PI / period
        })
        .collect();
    // The code's amplitude matches the other features' scale, so LayerNorm keeps it near 1.
    let rms = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let amplitude = (rms(&wte).powi(2) + rms(&wpe).powi(2)).sqrt();
    for p in 0..n_pos {
        for (f, om) in omega.iter().enumerate() {
            wpe[p * d + 2 * f] = ((om * p as f64).sin() * amplitude) as f32;
            wpe[p * d + 2 * f + 1] = ((om * p as f64).cos() * amplitude) as f32;
        }
    }
    for t in 0..vocab {
        wte[t * d..t * d + 2 * frequencies].fill(0.0);
    }
    // After ln_1 a code feature is ~ code / rms(x) = sin or cos; q·k / sqrt(hd) = β Σ_f cos(…).
    let beta = (sharpness as f64 * (hd as f64).sqrt()).sqrt();
    let cols = 3 * d;
    for (h, &k) in offsets.iter().enumerate() {
        let (q0, k0) = (h * hd, d + h * hd);
        for row in 0..d {
            w[row * cols + q0..row * cols + q0 + hd].fill(0.0);
            w[row * cols + k0..row * cols + k0 + hd].fill(0.0);
        }
        for (f, om) in omega.iter().enumerate() {
            let (c, s) = ((om * k as f64).cos() * beta, (om * k as f64).sin() * beta);
            let (sin_row, cos_row) = (2 * f, 2 * f + 1);
            // q = (sin ω(i−k), cos ω(i−k)) · β;  k = (sin ωj, cos ωj) · β
            w[sin_row * cols + q0 + 2 * f] = c as f32;
            w[cos_row * cols + q0 + 2 * f] = -s as f32;
            w[sin_row * cols + q0 + 2 * f + 1] = s as f32;
            w[cos_row * cols + q0 + 2 * f + 1] = c as f32;
            w[sin_row * cols + k0 + 2 * f] = beta as f32;
            w[cos_row * cols + k0 + 2 * f + 1] = beta as f32;
        }
    }
    let param = |v: Vec<f32>, shape: [usize; 2]| Param::from_tensor(Tensor::from_data(TensorData::new(v, shape), &device));
    model.wte = param(wte, [vocab, d]);
    model.wpe = param(wpe, [n_pos, d]);
    model.h[0].attn.c_attn.weight = param(w, [d, cols]);
    model
}

/// Offset heads for rotary attention (an initial value, like [`with_offset_heads`]): head `h` of
/// the first layer starts with a query and a key that do not depend on the input (zero weights,
/// constant biases), the query's feature pair `f` turned back by `offsets[h]·θ_f`, so after the
/// rotation `q_i·k_j ∝ Σ_f cos((i − j − offsets[h])·θ_f)`: the head attends `offsets[h]` tokens
/// back, at every position. `sharpness` is the attention logit of that peak per feature pair.
pub fn with_rotary_offset_heads(mut model: Gpt2, offsets: &[usize], sharpness: f32) -> Gpt2 {
    assert_eq!(model.position, Position::Rope, "rotary offset heads need model.position = rope");
    let device = model.device();
    let attn = &model.h[0].attn;
    let (n_head, d) = (attn.n_head, model.n_embd());
    let (hd, half) = (d / n_head, d / n_head / 2);
    assert_eq!(model.rotary_dims, hd, "rotary offset heads need every feature of a head rotated (rotary_dims unset)");
    assert!(offsets.len() <= n_head, "{} offset heads but {n_head} heads", offsets.len());
    let host = |t: Tensor<2>| -> Vec<f32> { t.into_data().try_to_vec::<f32>().expect("f32 weights") };
    let mut w = host(attn.c_attn.weight.val());
    let mut b: Vec<f32> = attn.c_attn.bias.as_ref().expect("GPT-2 linears have biases").val().into_data().try_to_vec::<f32>().expect("f32");
    let beta = (sharpness as f64 * (hd as f64).sqrt()).sqrt();
    let cols = 3 * d;
    for (h, &k) in offsets.iter().enumerate() {
        let (q0, k0) = (h * hd, d + h * hd);
        for row in 0..d {
            w[row * cols + q0..row * cols + q0 + hd].fill(0.0);
            w[row * cols + k0..row * cols + k0 + hd].fill(0.0);
        }
        for f in 0..half {
            let angle = k as f64 * 10000f64.powf(-2.0 * f as f64 / hd as f64);
            // q = β (cos kθ, −sin kθ), k = β (1, 0) on the pair (f, f + half).
            b[q0 + f] = (beta * angle.cos()) as f32;
            b[q0 + half + f] = (-beta * angle.sin()) as f32;
            b[k0 + f] = beta as f32;
            b[k0 + half + f] = 0.0;
        }
    }
    let attn = &mut model.h[0].attn;
    attn.c_attn.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d, cols]), &device));
    attn.c_attn.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [cols]), &device)));
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt2::{Gpt2Config, Rotary};
    use burn::tensor::module::embedding;

    #[test]
    fn sinusoidal_positions_have_the_scale_asked_for_and_depend_on_offsets_only() {
        let (n, d) = (64, 32);
        let t: Vec<f32> = sinusoidal_positions(n, d, 0.01, &Device::flex()).into_data().try_to_vec::<f32>().unwrap();
        let std = (t.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / t.len() as f64).sqrt();
        assert!((std - 0.01).abs() < 0.001, "std {std}");
        // sin(a)sin(b) + cos(a)cos(b) = cos(a - b): the dot product of positions p and p + k is a function of k.
        let dot = |p: usize, q: usize| (0..d).map(|i| t[p * d + i] as f64 * t[q * d + i] as f64).sum::<f64>();
        for k in [1, 2, 5] {
            assert!((dot(3, 3 + k) - dot(40, 40 + k)).abs() < 1e-7, "offset {k}");
        }
        assert_eq!(t[0], 0.0); // sin(0) at p = 0
    }

    #[test]
    fn offset_heads_start_out_attending_to_their_offsets() {
        let device = Device::flex();
        device.seed(1);
        let config = Gpt2Config { dropout: 0.0, n_positions: 256, ..Gpt2Config::small(40, 2, 128, 4) };
        let offsets = [1, 2, 3, 4];
        let model = with_offset_heads(config.init(&device), &offsets, 8, 3.0);
        // Layer 0's scores for random tokens at positions 0..200, computed from the weights.
        let len = 200;
        let ids: Vec<i64> = (0..len).map(|i| (i * 7 % 40) as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        let pos = Tensor::<2, Int>::from_data(TensorData::new((0..len as i64).collect::<Vec<_>>(), [1, len]), &device);
        let x = model.embed(ids) + embedding(model.wpe.val(), pos);
        let qkv: Vec<f32> = model.h[0].attn.c_attn.forward(model.h[0].ln_1.forward(x)).into_data().try_to_vec::<f32>().unwrap();
        let (d, hd) = (128, 32);
        let query = |h: usize, i: usize| &qkv[i * 3 * d + h * hd..i * 3 * d + (h + 1) * hd];
        let key = |h: usize, j: usize| &qkv[j * 3 * d + d + h * hd..j * 3 * d + d + (h + 1) * hd];
        assert_heads_attend_to_offsets(&offsets, len, query, key);
    }

    /// Head `h` of layer 0 (query/key of position `i` from `query(h, i)`, `key(h, i)`) puts > 80% of
    /// its softmax weight on `i − offsets[h]`, and it is the argmax at > 95% of positions.
    fn assert_heads_attend_to_offsets<'a>(
        offsets: &[usize],
        len: usize,
        query: impl Fn(usize, usize) -> &'a [f32],
        key: impl Fn(usize, usize) -> &'a [f32],
    ) {
        for (h, &k) in offsets.iter().enumerate() {
            let (mut weight, mut hits) = (0.0f32, 0);
            for i in 8..len {
                let q = query(h, i);
                let scale = (q.len() as f32).sqrt();
                let scores: Vec<f32> = (0..=i).map(|j| q.iter().zip(key(h, j)).map(|(a, b)| a * b).sum::<f32>() / scale).collect();
                let max = scores.iter().copied().fold(f32::MIN, f32::max);
                let z: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                weight += (scores[i - k] - max).exp() / z;
                hits += usize::from(scores[i - k] == max);
            }
            let n = (len - 8) as f32;
            eprintln!("head {h} (offset {k}): mean weight on i - {k} = {:.3}, argmax for {hits} of {n}", weight / n);
            assert!(weight / n > 0.8 && hits as f32 > 0.95 * n, "head {h} (offset {k}): weight {}, argmax {hits} of {n}", weight / n);
        }
    }

    #[test]
    fn rotary_offset_heads_start_out_attending_to_their_offsets() {
        let device = Device::flex();
        device.seed(2);
        let config = Gpt2Config { dropout: 0.0, position: Position::Rope, n_positions: 256, ..Gpt2Config::small(40, 2, 128, 8) };
        let offsets = [1, 2, 3, 4];
        let model = with_rotary_offset_heads(config.init(&device), &offsets, 10.0);
        let len = 200;
        let ids: Vec<i64> = (0..len).map(|i| (i * 7 % 40) as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
        let pos = Tensor::<2, Int>::from_data(TensorData::new((0..len as i64).collect::<Vec<_>>(), [1, len]), &device);
        let hd = 16;
        let attn = &model.h[0].attn;
        let heads = |t: Tensor<3>| t.reshape([1, len, 8, hd]).swap_dims(1, 2);
        let mut qkv = attn.c_attn.forward(model.h[0].ln_1.forward(model.embed(ids))).chunk(3, 2).into_iter();
        let rotary = Rotary::new(pos, hd);
        let q: Vec<f32> = rotary.rotate(heads(qkv.next().unwrap())).into_data().try_to_vec().unwrap();
        let k: Vec<f32> = rotary.rotate(heads(qkv.next().unwrap())).into_data().try_to_vec().unwrap();
        let at = |h: usize, i: usize| (h * len + i) * hd..(h * len + i + 1) * hd;
        assert_heads_attend_to_offsets(&offsets, len, |h, i| &q[at(h, i)], |h, j| &k[at(h, j)]);
    }
}
