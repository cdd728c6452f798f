//! Fused training ops for the CPU backend (Burn's Flex): GPT-2's GELU, layer norm and the
//! attention softmax, each one pass over memory forward and one backward, with hand-written
//! gradients. Unfused, Burn's autodiff records each of them as a chain of element-wise ops (layer
//! norm ~9, softmax ~7, GELU ~6), every one allocating its output and keeping it for the backward.
//!
//! The math (rows = the last dimension):
//! - GELU (GPT-2's `gelu_new`): y = x·s, s = σ(2u), u = √(2/π)·(x + 0.044715·x³);
//!   dy/dx = s + x·s·(1 − s)·2√(2/π)·(1 + 3·0.044715·x²).
//! - layer norm: x̂ = (x − μ)·r, r = 1/√(var + ε), y = γ·x̂ + β;
//!   dx = r·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂)), dγ = Σ g·x̂, dβ = Σ g (sums over rows).
//! - attention softmax: y = softmax(scale·x + mask), mask 0 or −∞ per (query, key);
//!   dx = scale·y·(g − Σ g·y).
//! - causal depthwise convolution over time (`model.qkv_conv`), at the last `len` of `total`
//!   positions: y[t] = Σ_j c[j] ⊙ x[t − j] (x before position 0 is 0);
//!   dx[s] = Σ_j c[j] ⊙ g[s + j], dc[j] = Σ_t g[t] ⊙ x[t − j] (sums over the batch too).
//!
//! Burn's backend extension routes the ops to Flex (and to `Autodiff<Flex>`, whose backward calls
//! the Flex gradients). Every other backend (WebGPU, wgpu, CUDA, ndarray) takes the unfused
//! composition, which [`tests`] also use as the reference.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor};
use burn::prelude::*;
use burn::tensor::Bool;

const GELU_C: f32 = 0.797_884_6; // √(2/π)
const GELU_A: f32 = 0.044715;

/// The fused ops a backend provides; see the module docs for the math.
#[backend_extension(Autodiff, Flex: cfg(feature = "flex"))]
pub trait FusedOps: Backend {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
    fn fused_gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    fn fused_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self>;
    /// `(dx, dγ, dβ)`.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// softmax(scale·x + bias) over the last dimension; `x` is `[b, h, q, k]`, `bias` (a constant:
    /// 0 or −∞, the attention mask) is `[b, 1, q, k]`, shared by the heads.
    fn fused_attention_softmax(x: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;
    /// dx = scale·y·(g − Σ g·y).
    fn fused_attention_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;
    /// The causal convolution of `x` `[b, total, f]` by `c` `[w, f]` at the last `len` positions: `[b, len, f]`.
    fn fused_causal_conv(x: FloatTensor<Self>, c: FloatTensor<Self>, len: usize) -> FloatTensor<Self>;
    /// `(dx, dc)`.
    fn fused_causal_conv_backward(x: FloatTensor<Self>, c: FloatTensor<Self>, grad: FloatTensor<Self>, len: usize) -> (FloatTensor<Self>, FloatTensor<Self>);
}

static UNFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every op take the unfused composition (`coconut --unfused`: before/after comparisons).
pub fn set_unfused(unfused: bool) {
    UNFUSED.store(unfused, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `device` runs the fused ops (Flex, with or without autodiff, unless [`set_unfused`]).
pub fn fused_on(device: &Device) -> bool {
    if UNFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "flex")]
        burn::backend::DispatchDevice::Flex(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// GPT-2's GELU (`gelu_new`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_on(&x.device()) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu_tanh(x.into_dispatch()));
    }
    composed::gelu_tanh(x)
}

/// Layer norm over the last dimension.
pub fn layer_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> Tensor<D> {
    if fused_on(&x.device()) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), epsilon));
    }
    composed::layer_norm(x, gamma, beta, epsilon)
}

/// softmax(q·kᵀ/√d_head, masked)·v; `mask` `[batch, 1, queries, keys]`, true = may not attend.
/// Training on Flex takes the fused softmax (scale and mask folded in, so the scores are read and
/// written once); elsewhere Burn's attention (fused forward kernels on Flex inference and GPUs).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>) -> Tensor<4> {
    let device = q.device();
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    if fused_on(&device) && device.is_autodiff() {
        let bias = Tensor::<4>::zeros(mask.dims(), &device).mask_fill(mask, f32::NEG_INFINITY);
        let scores = q.matmul(k.swap_dims(2, 3));
        let p = <Dispatch as FusedOps>::fused_attention_softmax(scores.into_dispatch(), bias.into_dispatch(), scale);
        return Tensor::<4>::from_dispatch(p).matmul(v);
    }
    let [batch, heads, queries, keys] = [q.dims()[0], q.dims()[1], q.dims()[2], k.dims()[2]];
    let mask = mask.expand([batch, heads, queries, keys]);
    burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())
}

/// The causal convolution over time at the last `len` of `x`'s positions: y[t] = Σ_j c[j] ⊙
/// x[t − j], with x before its first position 0. `x` `[batch, total, f]`, `c` `[w, f]`.
pub fn causal_conv(x: Tensor<3>, c: Tensor<2>, len: usize) -> Tensor<3> {
    if fused_on(&x.device()) {
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_causal_conv(x.into_dispatch(), c.into_dispatch(), len));
    }
    composed::causal_conv(x, c, len)
}

/// The unfused compositions of Burn ops: the other backends' path and the tests' reference.
pub mod composed {
    use super::*;

    /// x·σ(2u): the same function as 0.5·x·(1 + tanh(u)), one exp instead of tanh.
    pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        let cube = x.clone() * x.clone() * x.clone();
        let u2 = (x.clone() + cube.mul_scalar(GELU_A)).mul_scalar(2.0 * GELU_C);
        x * burn::tensor::activation::sigmoid(u2)
    }

    pub fn layer_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> Tensor<D> {
        burn::tensor::module::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// softmax(scale·x + bias) with `bias` `[b, 1, q, k]` broadcast over the heads.
    pub fn attention_softmax(x: Tensor<4>, bias: Tensor<4>, scale: f64) -> Tensor<4> {
        burn::tensor::activation::softmax(x.mul_scalar(scale) + bias, 3)
    }

    /// The causal convolution as `w` shifted views of `x`, each scaled by its tap, summed.
    pub fn causal_conv(x: Tensor<3>, c: Tensor<2>, len: usize) -> Tensor<3> {
        let [batch, total, f] = x.dims();
        let w = c.dims()[0];
        let back = (w - 1).min(total - len);
        let window = x.narrow(1, total - len - back, len + back);
        let padded = if back < w - 1 { Tensor::cat(vec![Tensor::zeros([batch, w - 1 - back, f], &window.device()), window], 1) } else { window };
        // padded[i] is position total − len − (w − 1) + i; y[t] reads it at i = t − j + w − 1 (t counted from total − len).
        (0..w).map(|j| padded.clone().narrow(1, w - 1 - j, len) * c.clone().narrow(0, j, 1).unsqueeze::<3>()).reduce(|a, b| a + b).expect("w >= 1")
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels: plain loops over contiguous f32 rows, each compiled twice, for the baseline
    //! CPU and for AVX2 + FMA, picked when it runs (`kernel!`).
    use super::*;
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{DType, TensorData};

    fn f32_data(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
        assert_eq!(t.dtype(), DType::F32, "the fused CPU ops run in f32");
        match t.as_slice::<f32>() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
        }
    }

    fn tensor(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(data, like.layout().shape().clone()))
    }

    fn row_len(t: &FlexTensor) -> usize {
        *t.layout().shape().as_slice().last().expect("a tensor with dimensions")
    }

    impl FusedOps for Flex {
        fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
            let xs = f32_data(&x);
            let mut y = vec![0f32; xs.len()];
            gelu(&xs, &mut y);
            tensor(y, &x)
        }

        fn fused_gelu_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let xs = f32_data(&x);
            let mut dx = writable(grad);
            gelu_backward(&xs, dx.storage_mut::<f32>());
            dx
        }

        fn fused_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> FlexTensor {
            let (xs, gamma_s, beta_s) = (f32_data(&x), f32_data(&gamma), f32_data(&beta));
            let mut y = vec![0f32; xs.len()];
            layer_norm(&xs, &gamma_s, &beta_s, epsilon as f32, &mut y);
            tensor(y, &x)
        }

        fn fused_layer_norm_backward(x: FlexTensor, gamma: FlexTensor, grad: FlexTensor, epsilon: f64) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (xs, gamma_s, gs) = (f32_data(&x), f32_data(&gamma), f32_data(&grad));
            let d = row_len(&x);
            let mut dx = vec![0f32; xs.len()];
            let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
            layer_norm_backward(&xs, &gamma_s, &gs, epsilon as f32, &mut dx, &mut dgamma, &mut dbeta);
            (tensor(dx, &x), tensor(dgamma, &gamma), tensor(dbeta, &gamma))
        }

        fn fused_attention_softmax(x: FlexTensor, bias: FlexTensor, scale: f64) -> FlexTensor {
            let dims = x.layout().shape().as_slice().to_vec();
            let bias_s = f32_data(&bias);
            let mut y = writable(x);
            attention_softmax(y.storage_mut::<f32>(), &bias_s, [dims[1], dims[2], dims[3]], scale as f32);
            y
        }

        fn fused_attention_softmax_backward(y: FlexTensor, grad: FlexTensor, scale: f64) -> FlexTensor {
            let ys = f32_data(&y);
            let d = row_len(&y);
            let mut dx = writable(grad);
            attention_softmax_backward(&ys, dx.storage_mut::<f32>(), d, scale as f32);
            dx
        }

        fn fused_causal_conv(x: FlexTensor, c: FlexTensor, len: usize) -> FlexTensor {
            let dims = conv_dims(&x, len);
            let (xs, cs) = (f32_data(&x), f32_data(&c));
            let mut y = vec![0f32; dims[0] * len * dims[3]];
            causal_conv(&xs, &cs, dims, &mut y);
            FlexTensor::from_data(TensorData::new(y, [dims[0], len, dims[3]]))
        }

        fn fused_causal_conv_backward(x: FlexTensor, c: FlexTensor, grad: FlexTensor, len: usize) -> (FlexTensor, FlexTensor) {
            let dims = conv_dims(&x, len);
            let (xs, cs, gs) = (f32_data(&x), f32_data(&c), f32_data(&grad));
            let (mut dx, mut dc) = (vec![0f32; xs.len()], vec![0f32; cs.len()]);
            causal_conv_backward(&xs, &cs, &gs, dims, &mut dx, &mut dc);
            (tensor(dx, &x), tensor(dc, &c))
        }
    }

    /// `[batch, total, len, features]` of a convolution's input `[batch, total, features]`.
    fn conv_dims(x: &FlexTensor, len: usize) -> [usize; 4] {
        let shape = x.layout().shape().as_slice();
        assert!(shape.len() == 3 && len <= shape[1], "the causal convolution reads [batch, total ≥ len, features]");
        [shape[0], shape[1], len, shape[2]]
    }

    /// Defines kernel `$name`, which runs its body compiled for AVX2 + FMA when the CPU has them
    /// (8 lanes instead of the baseline's 4), and `$baseline`, the same body for any x86-64 CPU.
    /// The body is an `#[inline(always)]` function called straight from the function with those
    /// target features, so its loops are compiled with them.
    macro_rules! kernel {
        ($(#[$doc:meta])* fn $name:ident / $baseline:ident ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
            $(#[$doc])*
            pub(super) fn $name($($arg: $ty),*) {
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    fn avx2($($arg: $ty),*) {
                        $baseline($($arg),*)
                    }
                    // SAFETY: the CPU has the features `avx2` is compiled for (checked above).
                    return unsafe { avx2($($arg),*) };
                }
                $baseline($($arg),*)
            }

            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn $baseline($($arg: $ty),*) $body
        };
    }

    kernel! {
        fn gelu / gelu_baseline(xs: &[f32], y: &mut [f32]) {
            for (y, &x) in y.iter_mut().zip(xs) {
                let u2 = 2.0 * GELU_C * (x + GELU_A * x * x * x);
                *y = x / (1.0 + exp(-u2));
            }
        }
    }

    kernel! {
        /// In place: `g` (the output's gradient) becomes the input's.
        fn gelu_backward / gelu_backward_baseline(xs: &[f32], g: &mut [f32]) {
            for (g, &x) in g.iter_mut().zip(xs) {
                let x2 = x * x;
                let s = 1.0 / (1.0 + exp(-2.0 * GELU_C * (x + GELU_A * x2 * x)));
                *g *= s + x * s * (1.0 - s) * 2.0 * GELU_C * (1.0 + 3.0 * GELU_A * x2);
            }
        }
    }

    kernel! {
        fn layer_norm / layer_norm_baseline(xs: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32, out: &mut [f32]) {
            let d = gamma.len();
            for (row, y) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                let (mean, rstd) = moments(row, epsilon);
                for (((y, &x), &g), &b) in y.iter_mut().zip(row).zip(gamma).zip(beta) {
                    *y = (x - mean) * rstd * g + b;
                }
            }
        }
    }

    kernel! {
        fn layer_norm_backward / layer_norm_backward_baseline(xs: &[f32], gamma: &[f32], gs: &[f32], epsilon: f32, dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) {
            let d = gamma.len();
            let (mut xhat, mut gg) = (vec![0f32; d], vec![0f32; d]);
            for ((row, g), dx) in xs.chunks_exact(d).zip(gs.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
                let (mean, rstd) = moments(row, epsilon);
                for i in 0..d {
                    xhat[i] = (row[i] - mean) * rstd;
                    gg[i] = g[i] * gamma[i];
                    dgamma[i] += g[i] * xhat[i];
                    dbeta[i] += g[i];
                }
                let mean_gg = lanes(&gg, 0.0, |acc, x| acc + x) / d as f32;
                let mean_ggx = lanes_dot(&gg, &xhat) / d as f32;
                for i in 0..d {
                    dx[i] = rstd * (gg[i] - mean_gg - xhat[i] * mean_ggx);
                }
            }
        }
    }

    kernel! {
        /// In place over `y` (scores `[batch, heads, queries, keys]`, `dims` = [heads, queries, keys]);
        /// `bias` is `[batch, 1, queries, keys]`.
        fn attention_softmax / attention_softmax_baseline(y: &mut [f32], bias: &[f32], dims: [usize; 3], scale: f32) {
            let [heads, queries, k] = dims;
            let row_block = queries * k;
            // Keys past the last one a query may attend (the causal future, right padding) get
            // probability 0 without being computed: per (batch, query) row, once for all heads.
            let attended: Vec<usize> = bias.chunks_exact(k).map(|b| b.iter().rposition(|&b| b != f32::NEG_INFINITY).map_or(0, |j| j + 1)).collect();
            for (i, block) in y.chunks_exact_mut(row_block).enumerate() {
                let bias = &bias[(i / heads) * row_block..][..row_block];
                let attended = &attended[(i / heads) * queries..];
                for ((row, bias), &n) in block.chunks_exact_mut(k).zip(bias.chunks_exact(k)).zip(attended) {
                    let (row, future) = row.split_at_mut(n);
                    future.fill(0.0);
                    // Separate passes, lane-wise reductions: each loop vectorizes.
                    row.iter_mut().zip(bias).for_each(|(x, b)| *x = *x * scale + b);
                    let max = lanes(row, f32::NEG_INFINITY, |acc, x| if x > acc { x } else { acc });
                    if max == f32::NEG_INFINITY {
                        row.fill(0.0); // every key masked: zeros, as Burn's attention gives
                        continue;
                    }
                    row.iter_mut().for_each(|x| *x = exp(*x - max));
                    let inv = 1.0 / lanes(row, 0.0, |acc, x| acc + x);
                    row.iter_mut().for_each(|y| *y *= inv);
                }
            }
        }
    }

    kernel! {
        /// In place: `g` (the probabilities' gradient, rows of `d`) becomes the scores'.
        fn attention_softmax_backward / attention_softmax_backward_baseline(ys: &[f32], g: &mut [f32], d: usize, scale: f32) {
            for (y, g) in ys.chunks_exact(d).zip(g.chunks_exact_mut(d)) {
                let dot = lanes_dot(y, g);
                for (g, y) in g.iter_mut().zip(y) {
                    *g = scale * y * (*g - dot);
                }
            }
        }
    }

    kernel! {
        /// `y` `[batch, len, f]` (zeros on entry) += Σ_j c[j] ⊙ x[p − j], p = total − len + t.
        fn causal_conv / causal_conv_baseline(xs: &[f32], c: &[f32], dims: [usize; 4], y: &mut [f32]) {
            let [batch, total, len, f] = dims;
            let w = c.len() / f;
            for b in 0..batch {
                for t in 0..len {
                    let p = total - len + t;
                    let y = &mut y[(b * len + t) * f..][..f];
                    for j in 0..w.min(p + 1) {
                        let (x, c) = (&xs[(b * total + p - j) * f..][..f], &c[j * f..][..f]);
                        y.iter_mut().zip(x).zip(c).for_each(|((y, x), c)| *y += c * x);
                    }
                }
            }
        }
    }

    kernel! {
        /// `dx` `[batch, total, f]` and `dc` `[w, f]` (zeros on entry) accumulate the gradients of
        /// `causal_conv` for the output gradient `g` `[batch, len, f]`.
        fn causal_conv_backward / causal_conv_backward_baseline(xs: &[f32], c: &[f32], g: &[f32], dims: [usize; 4], dx: &mut [f32], dc: &mut [f32]) {
            let [batch, total, len, f] = dims;
            let w = c.len() / f;
            for b in 0..batch {
                for t in 0..len {
                    let p = total - len + t;
                    let g = &g[(b * len + t) * f..][..f];
                    for j in 0..w.min(p + 1) {
                        let row = (b * total + p - j) * f;
                        let (x, dx, c, dc) = (&xs[row..][..f], &mut dx[row..][..f], &c[j * f..][..f], &mut dc[j * f..][..f]);
                        for i in 0..f {
                            dx[i] += c[i] * g[i];
                            dc[i] += g[i] * x[i];
                        }
                    }
                }
            }
        }
    }

    /// Σ a·b in 8 independent lanes (vectorizes; f32 sums are not reassociated otherwise).
    #[inline(always)]
    fn lanes_dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
            (0..8).for_each(|i| acc[i] += a[i] * b[i]);
        }
        let tail = a.len() - a.len() % 8;
        acc.iter().sum::<f32>() + a[tail..].iter().zip(&b[tail..]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// A reduction of `xs` in 8 independent lanes, so that it vectorizes (f32 sums are not
    /// reassociated otherwise); `op` is applied lane-wise, then across the lanes and the tail.
    #[inline(always)]
    fn lanes(xs: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
        let mut acc = [init; 8];
        let chunks = xs.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            (0..8).for_each(|i| acc[i] = op(acc[i], c[i]));
        }
        acc.into_iter().chain(tail.iter().copied()).fold(init, op)
    }

    /// `t` as a contiguous f32 buffer this op may overwrite: its own storage when nothing else
    /// holds it (no new allocation, no page faults for the large attention matrices), else a copy.
    fn writable(t: FlexTensor) -> FlexTensor {
        assert_eq!(t.dtype(), DType::F32, "the fused CPU ops run in f32");
        let own = t.is_unique() && t.layout().contiguous_offsets() == Some((0, t.layout().num_elements()));
        if own && t.bytes().len() == 4 * t.layout().num_elements() { t } else { tensor(f32_data(&t).into_owned(), &t) }
    }

    /// eˣ in f32 without a libm call, so the loops vectorize: x = n·ln2 + r, |r| ≤ ln2/2, eʳ by
    /// its degree-6 Taylor polynomial (relative error < 3e-7), 2ⁿ from the exponent bits. 0 below −87.
    /// Only bit operations turn n into 2ⁿ: adding 1.5·2²³ leaves n in the low mantissa bits (a
    /// float-to-int cast saturates in Rust, which keeps the loop scalar).
    #[inline(always)]
    pub(super) fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
        let xc = x.clamp(-87.5, 88.0); // n ∈ [−126, 127]: 2ⁿ is a normal f32
        let t = xc * LOG2E + ROUND;
        let n = t - ROUND;
        let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4; // ln2 in two parts, as Cephes
        let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        let two_n = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
        if x < -87.0 { 0.0 } else { p * two_n }
    }

    /// Mean and 1/√(biased variance + ε) of one row (two passes, as Burn's layer norm), each
    /// summed in 8 lanes.
    #[inline(always)]
    fn moments(row: &[f32], epsilon: f32) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = lanes(row, 0.0, |acc, x| acc + x) / n;
        let mut acc = [0f32; 8];
        let chunks = row.chunks_exact(8);
        let tail = chunks.remainder().iter().map(|x| (x - mean) * (x - mean)).sum::<f32>();
        for c in chunks {
            (0..8).for_each(|i| acc[i] += (c[i] - mean) * (c[i] - mean));
        }
        let var = (acc.iter().sum::<f32>() + tail) / n;
        (mean, 1.0 / (var + epsilon).sqrt())
    }
}

/// Autodiff: each op is one node whose backward is the inner backend's fused gradient.
impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;
        impl<B: FusedOps> Backward<B, 1> for GeluBackward {
            type State = FloatTensor<B>;
            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::fused_gelu_tanh_backward(ops.state, grad));
                }
            }
        }
        let (x, node) = x.into_parts();
        match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_gelu_tanh(x.clone());
                prep.finish(x, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu_tanh(x)),
        }
    }

    fn fused_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;
        impl<B: FusedOps> Backward<B, 3> for LayerNormBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, f64);
            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, epsilon) = ops.state;
                let (dx, dgamma, dbeta) = B::fused_layer_norm_backward(x, gamma, grad, epsilon);
                let [px, pgamma, pbeta] = ops.parents;
                for (parent, g) in [(px, dx), (pgamma, dgamma), (pbeta, dbeta)] {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }
        let ((x, nx), (gamma, ng), (beta, nb)) = (x.into_parts(), gamma.into_parts(), beta.into_parts());
        match LayerNormBackward.prepare::<C>([nx, ng, nb]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish((x, gamma, epsilon), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(x, gamma, beta, epsilon)),
        }
    }

    fn fused_attention_softmax(x: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;
        impl<B: FusedOps> Backward<B, 1> for SoftmaxBackward {
            type State = (FloatTensor<B>, f64);
            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (y, scale) = ops.state;
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::fused_attention_softmax_backward(y, grad, scale));
                }
            }
        }
        // The mask bias is a constant: it takes no part in the graph.
        let bias = bias.into_primitive();
        let (x, node) = x.into_parts();
        match SoftmaxBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_attention_softmax(x, bias, scale);
                prep.finish((y.clone(), scale), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention_softmax(x, bias, scale)),
        }
    }

    fn fused_causal_conv(x: FloatTensor<Self>, c: FloatTensor<Self>, len: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CausalConvBackward;
        impl<B: FusedOps> Backward<B, 2> for CausalConvBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, usize);
            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, c, len) = ops.state;
                let (dx, dc) = B::fused_causal_conv_backward(x, c, grad, len);
                let [px, pc] = ops.parents;
                for (parent, g) in [(px, dx), (pc, dc)] {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }
        let ((x, nx), (c, nc)) = (x.into_parts(), c.into_parts());
        match CausalConvBackward.prepare::<C>([nx, nc]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_causal_conv(x.clone(), c.clone(), len);
                prep.finish((x, c, len), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_causal_conv(x, c, len)),
        }
    }

    // The gradients themselves are not differentiated again (no second-order training here):
    // they run on the inner backend and come back as constants.
    fn fused_gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::fused_gelu_tanh_backward(x.into_primitive(), grad.into_primitive()))
    }

    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dgamma, dbeta) = B::fused_layer_norm_backward(x.into_primitive(), gamma.into_primitive(), grad.into_primitive(), epsilon);
        (FloatTensor::<Self>::new(dx), FloatTensor::<Self>::new(dgamma), FloatTensor::<Self>::new(dbeta))
    }

    fn fused_attention_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::fused_attention_softmax_backward(y.into_primitive(), grad.into_primitive(), scale))
    }

    fn fused_causal_conv_backward(x: FloatTensor<Self>, c: FloatTensor<Self>, grad: FloatTensor<Self>, len: usize) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dc) = B::fused_causal_conv_backward(x.into_primitive(), c.into_primitive(), grad.into_primitive(), len);
        (FloatTensor::<Self>::new(dx), FloatTensor::<Self>::new(dc))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    //! Each fused op against Burn's unfused composition on the same autodiff device: values and
    //! gradients within 1e-5.
    use super::*;
    use burn::tensor::Distribution;

    fn device() -> Device {
        let device = Device::flex().autodiff();
        assert!(fused_on(&device), "the fused path is under test");
        device
    }

    fn random<const D: usize>(shape: [usize; D], scale: f64) -> Tensor<D> {
        Tensor::<D>::random(shape, Distribution::Normal(0.0, scale), &device()).require_grad()
    }

    fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>) {
        let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{what}: fused and unfused differ by {worst:e}");
    }

    /// Value of `f(x)` and the gradient of Σ f(x)·w (w fixed random weights) for each input.
    fn value_and_grads<const D: usize, const N: usize>(f: impl Fn([Tensor<D>; N]) -> Tensor<D>, inputs: &[Tensor<D>; N], w: &Tensor<D>) -> (Tensor<D>, Vec<Tensor<D>>) {
        let xs = inputs.clone().map(|x| x.detach().require_grad());
        let y = f(xs.clone());
        let grads = (y.clone() * w.clone()).sum().backward();
        let g = xs.iter().map(|x| Tensor::from_inner(x.grad(&grads).expect("a gradient"))).collect();
        (y.detach(), g)
    }

    #[test]
    fn gelu_matches_the_composition_in_values_and_gradients() {
        let x = random([3, 17, 64], 2.0);
        let w = random([3, 17, 64], 1.0);
        let (yf, gf) = value_and_grads(|[x]| gelu_tanh(x), &[x.clone()], &w);
        let (yc, gc) = value_and_grads(|[x]| composed::gelu_tanh(x), &[x], &w);
        assert_close("gelu", yf, yc);
        assert_close("gelu dx", gf[0].clone(), gc[0].clone());
    }

    #[test]
    fn gelu_is_gpt2_gelu_new_at_hand_computed_points() {
        // 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), computed in f64.
        let xs = [-6.0f64, -1.5, -0.3, 0.0, 0.7, 2.0, 5.0];
        let want: Vec<f32> =
            xs.iter().map(|&x| (0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())) as f32).collect();
        let x = Tensor::<1>::from_floats(xs.map(|x| x as f32), &device());
        assert_close("gelu_new", gelu_tanh(x), Tensor::from_floats(want.as_slice(), &device()));
    }

    #[test]
    fn layer_norm_matches_the_composition_in_values_and_gradients() {
        let (x, w) = (random([2, 9, 128], 3.0), random([2, 9, 128], 1.0));
        let gamma = random([128], 1.0).reshape([1, 1, 128]);
        let beta = random([128], 1.0).reshape([1, 1, 128]);
        let ln = |fused: bool| {
            move |[x, gamma, beta]: [Tensor<3>; 3]| {
                let (gamma, beta) = (gamma.reshape([128]), beta.reshape([128]));
                if fused { layer_norm(x, gamma, beta, 1e-5) } else { composed::layer_norm(x, gamma, beta, 1e-5) }
            }
        };
        let (yf, gf) = value_and_grads(ln(true), &[x.clone(), gamma.clone(), beta.clone()], &w);
        let (yc, gc) = value_and_grads(ln(false), &[x, gamma, beta], &w);
        assert_close("layer norm", yf, yc);
        for (i, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(name, gf[i].clone(), gc[i].clone());
        }
    }

    #[test]
    fn attention_with_the_fused_softmax_matches_burns_attention() {
        let [b, h, l, d] = [2, 4, 11, 16];
        let (q, k, v) = (random([b, h, l, d], 1.0), random([b, h, l, d], 1.0), random([b, h, l, d], 1.0));
        let w = random([b, h, l, d], 1.0);
        // Causal mask plus two padded keys in the second item (every query still sees itself).
        let mut mask = vec![false; b * l * l];
        for (i, m) in mask.iter_mut().enumerate() {
            let (item, query, key) = (i / (l * l), i / l % l, i % l);
            *m = key > query || (item == 1 && key < 2 && key != query);
        }
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(mask, [b * l * l]), &device()).reshape([b, 1, l, l]);
        let run = |fused: bool| {
            let mask = mask.clone();
            move |[q, k, v]: [Tensor<4>; 3]| {
                if fused {
                    attention(q, k, v, mask.clone())
                } else {
                    burn::tensor::module::attention(q, k, v, Some(mask.clone().expand([b, h, l, l])), None, Default::default())
                }
            }
        };
        let (yf, gf) = value_and_grads(run(true), &[q.clone(), k.clone(), v.clone()], &w);
        let (yc, gc) = value_and_grads(run(false), &[q, k, v], &w);
        assert_close("attention", yf, yc);
        for (i, name) in ["dq", "dk", "dv"].iter().enumerate() {
            assert_close(name, gf[i].clone(), gc[i].clone());
        }
    }

    #[test]
    fn attention_softmax_matches_the_composition_in_values_and_gradients() {
        let (x, w) = (random([2, 3, 7, 9], 4.0), random([2, 3, 7, 9], 1.0));
        // A causal bias for the first item, none for the second.
        let bias: Vec<f32> = (0..2 * 7 * 9).map(|i| if i < 63 && i % 9 > i / 9 % 7 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let bias = Tensor::<1>::from_floats(bias.as_slice(), &device()).reshape([2, 1, 7, 9]);
        let fused = |[x]: [Tensor<4>; 1]| {
            let y = <Dispatch as FusedOps>::fused_attention_softmax(x.into_dispatch(), bias.clone().into_dispatch(), 0.25);
            Tensor::<4>::from_dispatch(y)
        };
        let (yf, gf) = value_and_grads(fused, &[x.clone()], &w);
        let (yc, gc) = value_and_grads(|[x]| composed::attention_softmax(x, bias.clone(), 0.25), &[x], &w);
        assert_close("softmax", yf, yc);
        assert_close("softmax dx", gf[0].clone(), gc[0].clone());
    }

    #[test]
    fn causal_conv_matches_the_composition_in_values_and_gradients() {
        // The whole sequence, and its last 5 positions after 2 (fewer than w − 1) and 9 cached ones.
        for (total, len) in [(7, 7), (7, 5), (14, 5)] {
            let (x, w) = (random([2, total, 24], 1.0), random([2, len, 24], 1.0));
            let c = random([4, 24], 1.0).unsqueeze::<3>();
            let conv = |fused: bool| {
                move |[x, c]: [Tensor<3>; 2]| {
                    let c = c.squeeze_dim::<2>(0);
                    if fused { causal_conv(x, c, len) } else { composed::causal_conv(x, c, len) }
                }
            };
            let pad = |t: Tensor<3>| Tensor::cat(vec![t, Tensor::zeros([2, total - len, 24], &device())], 1);
            let (yf, gf) = value_and_grads(|xs| pad(conv(true)(xs)), &[x.clone(), c.clone()], &pad(w.clone()));
            let (yc, gc) = value_and_grads(|xs| pad(conv(false)(xs)), &[x, c], &pad(w));
            assert_close("conv", yf, yc);
            assert_close("conv dx", gf[0].clone(), gc[0].clone());
            assert_close("conv dc", gf[1].clone(), gc[1].clone());
        }
    }

    /// The kernels run compiled for AVX2 + FMA where the CPU has them; the baseline build of the
    /// same loops (what a CPU without them runs) gives the same numbers.
    #[test]
    fn the_avx2_and_baseline_kernels_agree() {
        let xs: Vec<f32> = (0..1001).map(|i| -9.0 + 18.0 * i as f32 / 1000.0).collect();
        let (mut fast, mut base) = (vec![0f32; xs.len()], vec![0f32; xs.len()]);
        flex::gelu(&xs, &mut fast);
        flex::gelu_baseline(&xs, &mut base);
        let (mut gfast, mut gbase) = (vec![0.5f32; xs.len()], vec![0.5f32; xs.len()]);
        flex::gelu_backward(&xs, &mut gfast);
        flex::gelu_backward_baseline(&xs, &mut gbase);
        for i in 0..xs.len() {
            assert!((fast[i] - base[i]).abs() <= 1e-6 * (1.0 + base[i].abs()), "gelu({}) {} vs {}", xs[i], fast[i], base[i]);
            assert!((gfast[i] - gbase[i]).abs() <= 1e-6, "gelu'({}) {} vs {}", xs[i], gfast[i], gbase[i]);
        }
    }

    #[test]
    fn fast_exp_is_within_4e_7_of_libm() {
        for i in 0..=20_000 {
            let x = -87.0 + 175.0 * i as f32 / 20_000.0;
            let (fast, libm) = (flex::exp(x), x.exp());
            assert!((fast - libm).abs() <= 4e-7 * libm, "exp({x}) = {fast}, libm {libm}");
        }
        assert_eq!(flex::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(flex::exp(-100.0), 0.0);
    }
}
