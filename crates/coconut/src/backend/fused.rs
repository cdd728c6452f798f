//! Fused training ops for the CPU backend (Burn's Flex): GPT-2's GELU, layer norm and attention,
//! each one pass over memory forward and one backward, with hand-written gradients. Unfused,
//! Burn's autodiff records each of them as a chain of ops (layer norm ~9, GELU ~6; attention two
//! batched matmuls around a softmax), every one allocating its output and keeping it for the backward.
//!
//! The math (rows = the last dimension):
//! - GELU (GPT-2's `gelu_new`): y = x·s, s = σ(2u), u = √(2/π)·(x + 0.044715·x³);
//!   dy/dx = s + x·s·(1 − s)·2√(2/π)·(1 + 3·0.044715·x²).
//! - layer norm: x̂ = (x − μ)·r, r = 1/√(var + ε), y = γ·x̂ + β;
//!   dx = r·(g·γ − mean(g·γ) − x̂·mean(g·γ·x̂)), dγ = Σ g·x̂, dβ = Σ g (sums over rows).
//! - attention, per (batch, head): s = scale·q·kᵀ + mask (0 or −∞ per query and key), p = softmax(s),
//!   o = p·v; only `lse` = log Σ exp(s) per query is kept, and the backward recomputes p = exp(s − lse)
//!   one query row at a time (as FlashAttention does), so the `[queries, keys]` scores of every head
//!   never exist in memory: with D = Σ g⊙o per query and ds = p⊙(g·vᵀ − D),
//!   dv = pᵀ·g, dq = scale·ds·k, dk = scale·dsᵀ·q.
//! - rotary positions (Su et al. 2021), per head row at angles a_f (f < half): the pair
//!   (x_f, x_{f+half}) → (x_f·cos a_f − x_{f+half}·sin a_f, x_{f+half}·cos a_f + x_f·sin a_f), features
//!   from 2·half on unchanged; a rotation, so its gradient is the rotation by −a_f of the output's gradient.
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
    /// Attention per (batch, head): `q` `[b, h, queries, d]`, `k`, `v` `[b, h, keys, d]`, `bias` (a
    /// constant: 0 or −∞, the attention mask) `[b, 1, queries, keys]`, shared by the heads. Returns
    /// `(softmax(scale·q·kᵀ + bias)·v, lse)`, `lse` `[b, h, queries]` each row's log Σ exp (+∞ for a
    /// row with every key masked, whose output is 0).
    fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f64) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `(dq, dk, dv)` for the output gradient `grad`, from the forward's inputs, output `o` and `lse`.
    #[allow(clippy::too_many_arguments)]
    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// The rotary rotation of `x` `[b, h, t, d]` at angles whose cosines and sines are `cos`, `sin`
    /// `[b, 1, t, half]` (constants); `inverse`: by the negated angles, which is also its gradient.
    fn fused_rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self>;
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
/// On Flex the fused op, in training and inference alike (no scores or per-head mask in memory;
/// the backward recomputes the scores); elsewhere Burn's attention (its GPU kernels).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>) -> Tensor<4> {
    let device = q.device();
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    if fused_on(&device) {
        let bias = Tensor::<4>::zeros(mask.dims(), &device).mask_fill(mask, f32::NEG_INFINITY);
        let (o, _lse) = <Dispatch as FusedOps>::fused_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), bias.into_dispatch(), scale);
        return Tensor::<4>::from_dispatch(o);
    }
    composed::attention(q, k, v, mask)
}

/// Rotary positions: each head row's feature pairs `(f, f + half)`, `f < half`, rotated by the
/// angles whose cosines and sines are `cos`, `sin` `[batch, 1, len, half]`; `x` `[batch, heads, len, d]`.
pub fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    if fused_on(&x.device()) {
        let [cos, sin] = [cos, sin].map(|t| t.detach().into_dispatch());
        return Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rotary(x.into_dispatch(), cos, sin, false));
    }
    composed::rotary(x, cos, sin)
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

    /// Burn's attention, the mask expanded over the heads.
    pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>) -> Tensor<4> {
        let [batch, heads, queries, keys] = [q.dims()[0], q.dims()[1], q.dims()[2], k.dims()[2]];
        let mask = mask.expand([batch, heads, queries, keys]);
        burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())
    }

    /// The rotation on the two halves of the first `2·half` features, the rest passed through.
    pub fn rotary(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
        let (head_dim, half) = (x.dims()[3], cos.dims()[3]);
        let (x1, x2) = (x.clone().narrow(3, 0, half), x.clone().narrow(3, half, half));
        let mut parts = vec![x1.clone() * cos.clone() - x2.clone() * sin.clone(), x2 * cos + x1 * sin];
        if 2 * half < head_dim {
            parts.push(x.narrow(3, 2 * half, head_dim - 2 * half));
        }
        Tensor::cat(parts, 3)
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
    //! The kernels: plain loops over contiguous f32 rows, each compiled three times, for the
    //! baseline CPU, for AVX2 + FMA and for AVX-512, picked when it runs (`kernel!`).
    use super::*;
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{DType, TensorData};
    use std::mem::MaybeUninit;

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

    /// `n` floats written by `fill`, which must write every one of them (each kernel passed here
    /// writes its whole output): no zero-fill first.
    pub(super) fn filled(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
        let mut v = Vec::with_capacity(n);
        fill(&mut v.spare_capacity_mut()[..n]);
        // SAFETY: `fill` wrote all `n` values (the contract above).
        unsafe { v.set_len(n) };
        v
    }

    fn row_len(t: &FlexTensor) -> usize {
        *t.layout().shape().as_slice().last().expect("a tensor with dimensions")
    }

    impl FusedOps for Flex {
        fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
            let xs = f32_data(&x);
            tensor(filled(xs.len(), |y| gelu(&xs, y)), &x)
        }

        fn fused_gelu_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let xs = f32_data(&x);
            let mut dx = writable(grad);
            gelu_backward(&xs, dx.storage_mut::<f32>());
            dx
        }

        fn fused_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> FlexTensor {
            let (xs, gamma_s, beta_s) = (f32_data(&x), f32_data(&gamma), f32_data(&beta));
            tensor(filled(xs.len(), |y| layer_norm(&xs, &gamma_s, &beta_s, epsilon as f32, y)), &x)
        }

        fn fused_layer_norm_backward(x: FlexTensor, gamma: FlexTensor, grad: FlexTensor, epsilon: f64) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (xs, gamma_s, gs) = (f32_data(&x), f32_data(&gamma), f32_data(&grad));
            let d = row_len(&x);
            let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
            let dx = filled(xs.len(), |dx| layer_norm_backward(&xs, &gamma_s, &gs, epsilon as f32, dx, &mut dgamma, &mut dbeta));
            (tensor(dx, &x), tensor(dgamma, &gamma), tensor(dbeta, &gamma))
        }

        fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor, scale: f64) -> (FlexTensor, FlexTensor) {
            let (q, k, v) = (Heads::new(&q), Heads::new(&k), Heads::new(&v));
            let [batch, heads, queries, d] = q.dims;
            let (keys, bias) = (k.dims[2], f32_data(&bias));
            let attended = attended_keys(&bias, keys);
            let per_head = each_head(batch * heads, |bh| {
                let (b, h) = (bh / heads, bh % heads);
                if queries < FEW_QUERIES {
                    let (mut o, mut lse, mut s) = (vec![0f32; queries * d], vec![0f32; queries], vec![0f32; keys]);
                    let (bias, attended) = (&bias[b * queries * keys..][..queries * keys], &attended[b * queries..][..queries]);
                    attention_few(&[&q, &k, &v], [b, h], bias, attended, scale as f32, &mut o, &mut lse, &mut s);
                    return (o, lse);
                }
                let (qs, kt) = (q.gather(b, h), k.gather_transposed(b, h));
                let (mut o, mut lse, mut s) = (vec![0f32; queries * d], vec![0f32; queries], vec![0f32; ROWS * padded(keys)]);
                let bias = &bias[b * queries * keys..][..queries * keys];
                let (k, v) = (k.rows(b, h), v.rows(b, h));
                let head = AttentionHead { q: &qs, kt: &kt, k, v, vt: &[], bias, attended: &attended[b * queries..][..queries], scale: scale as f32 };
                attention_head(head, &mut o, &mut lse, &mut s);
                (o, lse)
            });
            // The output is stored `[batch, queries, heads, d]` and returned as its `[batch, heads, queries,
            // d]` view: the model's next step (heads back side by side, `[batch, queries, heads·d]`) is
            // then a view, not a copy.
            let mut o = Vec::with_capacity(q.len());
            for b in 0..batch {
                for t in 0..queries {
                    for (o_head, _) in &per_head[b * heads..][..heads] {
                        o.extend_from_slice(&o_head[t * d..][..d]);
                    }
                }
            }
            let lse: Vec<f32> = per_head.iter().flat_map(|(_, lse)| lse.iter().copied()).collect();
            let o = FlexTensor::from_data(TensorData::new(o, [batch, queries, heads, d])).transpose(1, 2);
            (o, FlexTensor::from_data(TensorData::new(lse, [batch, heads, queries])))
        }

        fn fused_attention_backward(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            o: FlexTensor,
            lse: FlexTensor,
            bias: FlexTensor,
            grad: FlexTensor,
            scale: f64,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (q, k, v, o, g) = (Heads::new(&q), Heads::new(&k), Heads::new(&v), Heads::new(&o), Heads::new(&grad));
            let [batch, heads, queries, d] = q.dims;
            let (keys, bias, lse) = (k.dims[2], f32_data(&bias), f32_data(&lse));
            let attended = attended_keys(&bias, keys);
            let gradients = |dq: Vec<f32>, dk: Vec<f32>, dv: Vec<f32>| {
                let kv_shape = [batch, heads, keys, d];
                (
                    FlexTensor::from_data(TensorData::new(dq, [batch, heads, queries, d])),
                    FlexTensor::from_data(TensorData::new(dk, kv_shape)),
                    FlexTensor::from_data(TensorData::new(dv, kv_shape)),
                )
            };
            if queries == 1 {
                // A thought pass: each head writes its gradients once, where they go in the outputs (dk and
                // dv span the whole cache: no zero-fill first, no per-head buffers to join).
                let (mut dq, mut dk, mut dv) = (vec![0f32; q.len()], Vec::with_capacity(k.len()), Vec::with_capacity(v.len()));
                let (dk_rows, dv_rows) = (&mut dk.spare_capacity_mut()[..k.len()], &mut dv.spare_capacity_mut()[..v.len()]);
                let per_head = dq.chunks_exact_mut(d).zip(dk_rows.chunks_exact_mut(keys * d)).zip(dv_rows.chunks_exact_mut(keys * d));
                for_each_head(per_head, |bh, ((dq, dk), dv)| {
                    let (b, h) = (bh / heads, bh % heads);
                    let (bias, attended) = (&bias[b * keys..][..keys], attended[b]);
                    attention_one_backward(&[&q, &k, &v, &o, &g], [b, h], bias, attended, lse[bh], scale as f32, dq, dk, dv);
                });
                // SAFETY: every head wrote all of its `keys × d` values of dk and dv (the kernel's contract).
                unsafe {
                    dk.set_len(k.len());
                    dv.set_len(v.len());
                }
                return gradients(dq, dk, dv);
            }
            if queries < FEW_QUERIES {
                // Each head writes its gradients where they go in the outputs (dk and dv span the whole
                // cache; no per-head buffers to join).
                let (mut dq, mut dk, mut dv) = (vec![0f32; q.len()], vec![0f32; k.len()], vec![0f32; v.len()]);
                let per_head = dq.chunks_exact_mut(queries * d).zip(dk.chunks_exact_mut(keys * d)).zip(dv.chunks_exact_mut(keys * d));
                for_each_head(per_head, |bh, ((dq, dk), dv)| {
                    let (b, h) = (bh / heads, bh % heads);
                    let (bias, attended, lse) = (&bias[b * queries * keys..][..queries * keys], &attended[b * queries..][..queries], &lse[bh * queries..][..queries]);
                    attention_few_backward(&[&q, &k, &v, &o, &g], [b, h], bias, attended, lse, scale as f32, dq, dk, dv);
                });
                return gradients(dq, dk, dv);
            }
            let per_head = each_head(batch * heads, |bh| {
                let (b, h) = (bh / heads, bh % heads);
                let lse = &lse[bh * queries..][..queries];
                let (qs, kt, vt) = (q.gather(b, h), k.gather_transposed(b, h), v.gather_transposed(b, h));
                let (os, gs) = (o.gather(b, h), g.gather(b, h));
                let (mut dq, kp) = (vec![0f32; queries * d], padded(keys));
                let (mut dk, mut dv, mut scratch) = (vec![0f32; keys * d], vec![0f32; keys * d], vec![0f32; 2 * ROWS * kp]);
                let bias = &bias[b * queries * keys..][..queries * keys];
                let (k, v) = (k.rows(b, h), v.rows(b, h));
                let head = AttentionHead { q: &qs, kt: &kt, k, v, vt: &vt, bias, attended: &attended[b * queries..][..queries], scale: scale as f32 };
                attention_head_backward(head, &os, &gs, lse, &mut dq, &mut dk, &mut dv, &mut scratch);
                (dq, dk, dv)
            });
            let (mut dq, mut dk, mut dv) = (Vec::with_capacity(q.len()), Vec::with_capacity(k.len()), Vec::with_capacity(v.len()));
            for (q, k, v) in per_head {
                dq.extend_from_slice(&q);
                dk.extend_from_slice(&k);
                dv.extend_from_slice(&v);
            }
            gradients(dq, dk, dv)
        }

        fn fused_rotary(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
            let x = Heads::new(&x);
            let [batch, heads, len, d] = x.dims;
            let half = row_len(&cos);
            let (cos, sin) = (f32_data(&cos), f32_data(&sin));
            assert!(cos.len() == batch * len * half && sin.len() == cos.len() && 2 * half <= d, "rotary angles are [batch, 1, len, half ≤ d/2]");
            let mut y = vec![0f32; x.len()];
            for (bh, y) in y.chunks_exact_mut(len * d).enumerate() {
                let (b, h) = (bh / heads, bh % heads);
                let angles = b * len * half..(b + 1) * len * half;
                rotate(x.rows(b, h), &cos[angles.clone()], &sin[angles], if inverse { -1.0 } else { 1.0 }, y);
            }
            FlexTensor::from_data(TensorData::new(y, [batch, heads, len, d]))
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

    /// Defines kernel `$name`, which runs its body compiled for AVX-512 when the CPU has it (16
    /// lanes: a 16-feature head row is one register), else for AVX2 + FMA (8 lanes) when it has
    /// those, instead of the baseline's 4, and `$baseline`, the same body for any x86-64 CPU.
    /// The body is an `#[inline(always)]` function called straight from the function with those
    /// target features, so its loops are compiled with them. A body generic over `const WIDE: bool`
    /// gets `true` in the AVX-512 build only: its 32 registers hold register blocks twice as large
    /// as AVX2's 16 do without spilling.
    macro_rules! kernel {
        ($(#[$doc:meta])* fn $name:ident / $baseline:ident ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
            $(#[$doc])*
            pub(super) fn $name($($arg: $ty),*) {
                kernel!(@build "avx512f,avx2,fma", ["avx512f", "avx2", "fma"], $baseline, ($($arg: $ty),*));
                kernel!(@build "avx2,fma", ["avx2", "fma"], $baseline, ($($arg: $ty),*));
                $baseline($($arg),*)
            }

            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn $baseline($($arg: $ty),*) $body
        };
        ($(#[$doc:meta])* fn $name:ident / $baseline:ident <const $wide:ident: bool> ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
            $(#[$doc])*
            pub(super) fn $name($($arg: $ty),*) {
                kernel!(@build "avx512f,avx2,fma", ["avx512f", "avx2", "fma"], $baseline::<true>, ($($arg: $ty),*));
                kernel!(@build "avx2,fma", ["avx2", "fma"], $baseline::<false>, ($($arg: $ty),*));
                $baseline::<false>($($arg),*)
            }

            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn $baseline<const $wide: bool>($($arg: $ty),*) $body
        };
        // Returns from the kernel with `$baseline` compiled for `$features` when the CPU has `$detect`.
        (@build $features:tt, [$($detect:tt),*], $baseline:path, ($($arg:ident: $ty:ty),*)) => {
            #[cfg(target_arch = "x86_64")]
            if $(std::is_x86_feature_detected!($detect))&&* {
                #[target_feature(enable = $features)]
                fn build($($arg: $ty),*) {
                    $baseline($($arg),*)
                }
                // SAFETY: the CPU has the features `build` is compiled for (checked above).
                return unsafe { build($($arg),*) };
            }
        };
    }

    kernel! {
        /// Writes every value of `y` (as long as `xs`).
        fn gelu / gelu_baseline(xs: &[f32], y: &mut [MaybeUninit<f32>]) {
            for (y, &x) in y.iter_mut().zip(xs) {
                let u2 = 2.0 * GELU_C * (x + GELU_A * x * x * x);
                y.write(x / (1.0 + exp(-u2)));
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
        /// Writes every value of `out` (as long as `xs`).
        fn layer_norm / layer_norm_baseline(xs: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32, out: &mut [MaybeUninit<f32>]) {
            let d = gamma.len();
            for (row, y) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                let (mean, rstd) = moments(row, epsilon);
                for (((y, &x), &g), &b) in y.iter_mut().zip(row).zip(gamma).zip(beta) {
                    y.write((x - mean) * rstd * g + b);
                }
            }
        }
    }

    kernel! {
        /// Writes every value of `dx` (as long as `xs`); adds to `dgamma` and `dbeta`.
        fn layer_norm_backward / layer_norm_backward_baseline(xs: &[f32], gamma: &[f32], gs: &[f32], epsilon: f32, dx: &mut [MaybeUninit<f32>], dgamma: &mut [f32], dbeta: &mut [f32]) {
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
                    dx[i].write(rstd * (gg[i] - mean_gg - xhat[i] * mean_ggx));
                }
            }
        }
    }

    kernel! {
        /// One head: `x` its rows, `cos`, `sin` `[t, half]`, `sign` −1 to rotate by the negated angles; `y` `[t, d]`.
        fn rotate / rotate_baseline(x: Rows, cos: &[f32], sin: &[f32], sign: f32, y: &mut [f32]) {
            let (d, half) = (x.d, cos.len() / (y.len() / x.d).max(1));
            for (t, y) in y.chunks_exact_mut(d).enumerate() {
                let (row, c, s) = (x.row(t), &cos[t * half..][..half], &sin[t * half..][..half]);
                let (y1, rest) = y.split_at_mut(half);
                let (y2, pass) = rest.split_at_mut(half);
                let (x1, x2) = (&row[..half], &row[half..2 * half]);
                for f in 0..half {
                    let (c, s) = (c[f], sign * s[f]);
                    y1[f] = x1[f] * c - x2[f] * s;
                    y2[f] = x2[f] * c + x1[f] * s;
                }
                pass.copy_from_slice(&row[2 * half..]);
            }
        }
    }

    /// A `[b, h, t, d]` f32 tensor read where it lies: row (b, h, t) is `d` contiguous floats at
    /// `b·sb + h·sh + t·st` (the heads of a projection are such a view; a copy only when rows are not contiguous).
    pub(super) struct Heads<'a> {
        data: std::borrow::Cow<'a, [f32]>,
        dims: [usize; 4],
        strides: [usize; 3],
    }

    impl<'a> Heads<'a> {
        fn new(t: &'a FlexTensor) -> Self {
            assert_eq!(t.dtype(), DType::F32, "the fused CPU ops run in f32");
            let layout = t.layout();
            let dims: [usize; 4] = layout.shape().as_slice().try_into().expect("attention reads [batch, heads, time, head features]");
            let st = layout.strides();
            if (st[3] == 1 || dims[3] == 1) && st[..3].iter().all(|&s| s >= 0) {
                let storage = t.storage::<f32>();
                let data = std::borrow::Cow::Borrowed(&storage[layout.start_offset()..]);
                return Self { data, dims, strides: [st[0] as usize, st[1] as usize, st[2] as usize] };
            }
            let [_, h, n, d] = dims;
            Self { data: std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()), dims, strides: [h * n * d, n * d, d] }
        }

        fn len(&self) -> usize {
            self.dims.iter().product()
        }

        fn row(&self, b: usize, h: usize, t: usize) -> &[f32] {
            &self.data[b * self.strides[0] + h * self.strides[1] + t * self.strides[2]..][..self.dims[3]]
        }

        /// Head (b, h)'s rows where they lie.
        fn rows(&self, b: usize, h: usize) -> Rows<'_> {
            Rows { data: &self.data[b * self.strides[0] + h * self.strides[1]..], stride: self.strides[2], d: self.dims[3] }
        }

        /// Head (b, h) as contiguous `[t, d]`.
        fn gather(&self, b: usize, h: usize) -> Vec<f32> {
            let (n, d) = (self.dims[2], self.dims[3]);
            let mut out = vec![0f32; n * d];
            for (t, out) in out.chunks_exact_mut(d).enumerate() {
                out.copy_from_slice(self.row(b, h, t));
            }
            out
        }

        /// Head (b, h) transposed, `[d, padded(t)]` (zeros after `t`): a feature's values over time in one run.
        fn gather_transposed(&self, b: usize, h: usize) -> Vec<f32> {
            let (n, d) = (self.dims[2], self.dims[3]);
            let np = padded(n);
            let mut out = vec![0f32; d * np];
            for t in 0..n {
                for (c, &x) in self.row(b, h, t).iter().enumerate() {
                    out[c * np + t] = x;
                }
            }
            out
        }
    }

    /// Per (batch, query) row of the mask bias `[batch, 1, queries, keys]`: how many keys to compute,
    /// up to the last one it may attend (the causal future and right padding get probability 0
    /// without being computed); once for all heads.
    fn attended_keys(bias: &[f32], keys: usize) -> Vec<usize> {
        bias.chunks_exact(keys).map(|b| b.iter().rposition(|&b| b != f32::NEG_INFINITY).map_or(0, |j| j + 1)).collect()
    }

    /// `f(i)` for each of `n` heads, on the worker's rayon pool natively.
    fn each_head<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            (0..n).into_par_iter().map(f).collect()
        }
        #[cfg(target_arch = "wasm32")]
        (0..n).map(f).collect()
    }

    /// `f(i, item)` for each head's item (its slices of the outputs), on the worker's rayon pool natively.
    fn for_each_head<T: Send>(items: impl Iterator<Item = T> + Send, f: impl Fn(usize, T) + Sync + Send) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            items.enumerate().par_bridge().for_each(|(i, item)| f(i, item));
        }
        #[cfg(target_arch = "wasm32")]
        items.enumerate().for_each(|(i, item)| f(i, item));
    }

    /// The micro-kernels work on `ROWS` queries at once, over 16 (then 8) keys or features at a
    /// time (two AVX2 registers, then one; one AVX-512 register): each key's or feature's values are
    /// loaded once for all the queries, and the `ROWS × 16` sums (12 AVX2 registers, 6 AVX-512) stay in registers. Keys are stored padded
    /// to whole `LANES` in the transposed layouts.
    const LANES: usize = 8;
    pub(super) const ROWS: usize = 6;

    fn padded(keys: usize) -> usize {
        keys.div_ceil(LANES) * LANES
    }

    /// Rows of `d` contiguous floats, `stride` apart: a head's keys or values where they lie.
    #[derive(Clone, Copy)]
    pub(super) struct Rows<'a> {
        pub data: &'a [f32],
        pub stride: usize,
        pub d: usize,
    }

    impl Rows<'_> {
        #[inline(always)]
        fn row(&self, j: usize) -> &[f32] {
            &self.data[j * self.stride..][..self.d]
        }
    }

    /// One head's inputs: `q` `[queries, d]`; the keys as `kt` `[d, padded(keys)]` (for q·kᵀ) and
    /// as rows `k` (for ds·k); the values as rows `v` (for p·v) and, in the backward, as `vt`
    /// `[d, padded(keys)]` (for g·vᵀ); the item's mask bias `[queries, keys]` and its attended keys
    /// per query.
    #[derive(Clone, Copy)]
    pub(super) struct AttentionHead<'a> {
        pub q: &'a [f32],
        pub kt: &'a [f32],
        pub k: Rows<'a>,
        pub v: Rows<'a>,
        pub vt: &'a [f32],
        pub bias: &'a [f32],
        pub attended: &'a [usize],
        pub scale: f32,
    }

    impl AttentionHead<'_> {
        /// `(queries, keys, padded keys, d)`.
        fn dims(&self) -> (usize, usize, usize, usize) {
            let queries = self.attended.len();
            let d = self.q.len() / queries;
            (queries, self.bias.len() / queries, self.kt.len() / d, d)
        }
    }

    /// a·b + c. On x86-64 fused (`mul_add`): one instruction in the AVX2 + FMA build of a kernel,
    /// libm's exact `fmaf` in the baseline build that only CPUs without FMA run (slower, the same
    /// numbers); on wasm32, whose baseline has no fused multiply-add, a product and a sum.
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        return a.mul_add(b, c);
        #[cfg(not(target_arch = "x86_64"))]
        return a * b + c;
    }

    /// `out[r][j] = Σ_c a[r][c]·bt[c][j]` for `R` rows of `a` (`[R, d]`) and the first `chunks`
    /// lanes of `bt` (`[d, kp]`); `out` is `[R, kp]`. Two lanes of keys at a time; `WIDE`, four
    /// first (two AVX-512 registers a row: each broadcast of `a` serves two multiply-adds).
    #[inline(always)]
    fn rows_times<const R: usize, const WIDE: bool>(a: &[f32], bt: &[f32], kp: usize, chunks: usize, out: &mut [f32]) {
        let d = a.len() / R;
        let mut jc = 0;
        while WIDE && jc + 4 <= chunks {
            product_tile::<R, { 4 * LANES }, WIDE>(a, d, &bt[jc * LANES..], kp, d, &mut out[jc * LANES..], kp);
            jc += 4;
        }
        while jc + 2 <= chunks {
            product_tile::<R, { 2 * LANES }, WIDE>(a, d, &bt[jc * LANES..], kp, d, &mut out[jc * LANES..], kp);
            jc += 2;
        }
        if jc < chunks {
            product_tile::<R, LANES, WIDE>(a, d, &bt[jc * LANES..], kp, d, &mut out[jc * LANES..], kp);
        }
    }

    /// `out[r][:] = Σ_{j < n} p[r][j]·m[j][:]`: `p` `[R, kp]`, the rows `m`, `out` `[R, d]`. Columns
    /// 16 (then 8) at a time; columns past the last whole 8 (odd head widths) one at a time.
    #[inline(always)]
    fn rows_by_rows<const R: usize, const WIDE: bool>(p: &[f32], kp: usize, m: Rows, n: usize, out: &mut [f32]) {
        let d = m.d;
        let mut c0 = 0;
        while c0 + 2 * LANES <= d {
            product_tile::<R, { 2 * LANES }, WIDE>(p, kp, &m.data[c0..], m.stride, n, &mut out[c0..], d);
            c0 += 2 * LANES;
        }
        if c0 + LANES <= d {
            product_tile::<R, LANES, WIDE>(p, kp, &m.data[c0..], m.stride, n, &mut out[c0..], d);
            c0 += LANES;
        }
        for c in c0..d {
            for r in 0..R {
                let mut total = 0.0;
                for j in 0..n {
                    total = fma(p[r * kp + j], m.row(j)[c], total);
                }
                out[r * d + c] = total;
            }
        }
    }

    /// The micro-kernel of both: `out[r][..W] = Σ_{j < n} x[r][j]·m[j][..W]` for `R` rows, with
    /// rows of `x`, `m` and `out` `x_row`, `m_row` and `out_row` apart. The `R × W` sums stay in
    /// registers; each `j` costs `W / 8` loads and `R` broadcasts for `R·W / 8` multiply-adds.
    /// `WIDE` takes two `j` at a time into two sets of sums: twice the independent multiply-adds in
    /// flight (one set of `R` one-register sums waits on the multiply-add's latency every step).
    #[inline(always)]
    fn product_tile<const R: usize, const W: usize, const WIDE: bool>(x: &[f32], x_row: usize, m: &[f32], m_row: usize, n: usize, out: &mut [f32], out_row: usize) {
        let (mut acc, mut acc2) = ([[0f32; W]; R], [[0f32; W]; R]);
        if n > 0 {
            let xs: [&[f32]; R] = std::array::from_fn(|r| &x[r * x_row..][..n]);
            assert!(m.len() >= (n - 1) * m_row + W, "a tile of m past its end");
            // SAFETY: for j < n, j·m_row + W ≤ (n − 1)·m_row + W ≤ m.len() (asserted above).
            let row = |j: usize| -> &[f32; W] { unsafe { &*m.as_ptr().add(j * m_row).cast::<[f32; W]>() } };
            let mut j = 0;
            while WIDE && j + 2 <= n {
                let (row, row2) = (*row(j), *row(j + 1));
                for r in 0..R {
                    let (x, x2) = (xs[r][j], xs[r][j + 1]);
                    for l in 0..W {
                        acc[r][l] = fma(x, row[l], acc[r][l]);
                        acc2[r][l] = fma(x2, row2[l], acc2[r][l]);
                    }
                }
                j += 2;
            }
            for j in j..n {
                let row = row(j);
                for r in 0..R {
                    let x = xs[r][j];
                    for l in 0..W {
                        acc[r][l] = fma(x, row[l], acc[r][l]);
                    }
                }
            }
        }
        for r in 0..R {
            let out = &mut out[r * out_row..][..W];
            for l in 0..W {
                out[l] = if WIDE { acc[r][l] + acc2[r][l] } else { acc[r][l] };
            }
        }
    }

    /// `acc[j][:] += Σ_r p[r][j]·a[r][:]` for `j < n`: `p` `[R, kp]`, `a` `[R, d]`, `acc` `[keys, d]`.
    /// Columns 16 (then 8) at a time with the `R` rows of `a` held in registers: a key costs its
    /// accumulator's load and store and `R` broadcasts.
    #[inline(always)]
    fn add_rows_outer<const R: usize>(p: &[f32], kp: usize, a: &[f32], n: usize, acc: &mut [f32]) {
        let d = a.len() / R;
        let mut c0 = 0;
        while c0 + 2 * LANES <= d {
            add_rows_outer_tile::<R, { 2 * LANES }>(p, kp, a, n, c0, acc);
            c0 += 2 * LANES;
        }
        if c0 + LANES <= d {
            add_rows_outer_tile::<R, LANES>(p, kp, a, n, c0, acc);
            c0 += LANES;
        }
        for c in c0..d {
            for j in 0..n {
                let mut sum = acc[j * d + c];
                for r in 0..R {
                    sum = fma(p[r * kp + j], a[r * d + c], sum);
                }
                acc[j * d + c] = sum;
            }
        }
    }

    #[inline(always)]
    fn add_rows_outer_tile<const R: usize, const W: usize>(p: &[f32], kp: usize, a: &[f32], n: usize, c0: usize, acc: &mut [f32]) {
        let d = a.len() / R;
        if n == 0 {
            return;
        }
        let mut rows = [[0f32; W]; R];
        for (r, row) in rows.iter_mut().enumerate() {
            row.copy_from_slice(&a[r * d + c0..][..W]);
        }
        let ps: [&[f32]; R] = std::array::from_fn(|r| &p[r * kp..][..n]);
        let acc = &mut acc[c0..];
        assert!(acc.len() >= (n - 1) * d + W, "a tile of the accumulator past its end");
        for j in 0..n {
            // SAFETY: j·d + W ≤ (n − 1)·d + W ≤ acc.len() (asserted above).
            let out = unsafe { &mut *acc.as_mut_ptr().add(j * d).cast::<[f32; W]>() };
            let mut sum = *out;
            for r in 0..R {
                let x = ps[r][j];
                for l in 0..W {
                    sum[l] = fma(x, rows[r][l], sum[l]);
                }
            }
            *out = sum;
        }
    }

    /// Rows `i..i + R` of one head: the keys they attend (the most of any of them) in whole lanes,
    /// and their scores `s` (`[R, kp]`) = scale·q·kᵀ + bias up to that key, −∞ after.
    #[inline(always)]
    fn block_scores<const R: usize, const WIDE: bool>(head: &AttentionHead, i: usize, s: &mut [f32]) -> (usize, usize) {
        let (_, keys, kp, d) = head.dims();
        let n = head.attended[i..i + R].iter().copied().max().unwrap_or(0);
        let chunks = n.div_ceil(LANES);
        rows_times::<R, WIDE>(&head.q[i * d..][..R * d], head.kt, kp, chunks, s);
        for r in 0..R {
            let (row, bias) = (&mut s[r * kp..][..chunks * LANES], &head.bias[(i + r) * keys..][..n]);
            for (x, b) in row.iter_mut().zip(bias) {
                *x = *x * head.scale + b;
            }
            row[n..].fill(f32::NEG_INFINITY);
        }
        (n, chunks)
    }

    /// Rows `i..i + R` of one head's forward. The probabilities stay unnormalized through p·v; each
    /// output row is divided by its sum afterwards (`d` products instead of one per key).
    #[inline(always)]
    fn forward_rows<const R: usize, const WIDE: bool>(head: &AttentionHead, i: usize, o: &mut [f32], lse: &mut [f32], s: &mut [f32]) {
        let (_, _, kp, d) = head.dims();
        let (n, chunks) = block_scores::<R, WIDE>(head, i, s);
        let mut inv = [0f32; R];
        for r in 0..R {
            let row = &mut s[r * kp..][..chunks * LANES];
            let max = lanes(&row[..n], f32::NEG_INFINITY, |acc, x| if x > acc { x } else { acc });
            if max == f32::NEG_INFINITY {
                row.fill(0.0); // every key masked: zeros, as Burn's attention gives
                lse[i + r] = f32::INFINITY;
                continue;
            }
            for x in row.iter_mut() {
                *x = exp(*x - max);
            }
            let sum = lanes(row, 0.0, |acc, x| acc + x);
            inv[r] = 1.0 / sum;
            lse[i + r] = max + sum.ln();
        }
        let o = &mut o[i * d..][..R * d];
        rows_by_rows::<R, WIDE>(s, kp, head.v, n, o);
        for (o, inv) in o.chunks_exact_mut(d).zip(inv) {
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_rows<const R: usize, const WIDE: bool>(head: &AttentionHead, i: usize, o: &[f32], g: &[f32], lse: &[f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], scratch: &mut [f32]) {
        let (_, _, kp, d) = head.dims();
        let (p, ds) = scratch.split_at_mut(ROWS * kp);
        let (n, chunks) = block_scores::<R, WIDE>(head, i, p);
        for r in 0..R {
            let l = lse[i + r];
            for x in p[r * kp..][..chunks * LANES].iter_mut() {
                *x = if l == f32::INFINITY { 0.0 } else { exp(*x - l) };
            }
        }
        let (g, o) = (&g[i * d..][..R * d], &o[i * d..][..R * d]);
        rows_times::<R, WIDE>(g, head.vt, kp, chunks, ds); // dp = g·vᵀ
        for r in 0..R {
            let mut delta = 0.0;
            for (g, o) in g[r * d..][..d].iter().zip(&o[r * d..][..d]) {
                delta += g * o;
            }
            let (ds, p) = (&mut ds[r * kp..][..chunks * LANES], &p[r * kp..][..chunks * LANES]);
            for (ds, p) in ds.iter_mut().zip(p) {
                *ds = p * (*ds - delta);
            }
        }
        add_rows_outer::<R>(p, kp, g, n, dv);
        rows_by_rows::<R, WIDE>(ds, kp, head.k, n, &mut dq[i * d..][..R * d]);
        add_rows_outer::<R>(ds, kp, &head.q[i * d..][..R * d], n, dk);
    }

    kernel! {
        /// One head's forward: `o` `[queries, d]` and `lse` `[queries]`; `s` is scratch of `ROWS·kp`.
        fn attention_head / attention_head_baseline<const WIDE: bool>(head: AttentionHead, o: &mut [f32], lse: &mut [f32], s: &mut [f32]) {
            // ROWS queries at a time, the last few one by one (loops, not closures: a closure would
            // be compiled without this function's target features).
            let (queries, mut i) = (head.dims().0, 0);
            while i + ROWS <= queries {
                forward_rows::<ROWS, WIDE>(&head, i, o, lse, s);
                i += ROWS;
            }
            for i in i..queries {
                forward_rows::<1, WIDE>(&head, i, o, lse, s);
            }
        }
    }

    kernel! {
        /// One head's backward for the output gradient `g` `[queries, d]`: `dq` `[queries, d]`, `dk`,
        /// `dv` `[keys, d]` (zeros on entry); `scratch` holds `2·ROWS·kp`.
        fn attention_head_backward / attention_head_backward_baseline<const WIDE: bool>(head: AttentionHead, o: &[f32], g: &[f32], lse: &[f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], scratch: &mut [f32]) {
            let (queries, mut i) = (head.dims().0, 0);
            while i + ROWS <= queries {
                backward_rows::<ROWS, WIDE>(&head, i, o, g, lse, dq, dk, dv, scratch);
                i += ROWS;
            }
            for i in i..queries {
                backward_rows::<1, WIDE>(&head, i, o, g, lse, dq, dk, dv, scratch);
            }
            let scale = head.scale;
            for x in dq.iter_mut().chain(dk.iter_mut()) {
                *x *= scale;
            }
        }
    }

    /// Below this many queries (a thought pass: one per item) a head reads its keys and values where
    /// they lie, key by key, instead of transposing them first (which costs as much as the products
    /// for one query).
    const FEW_QUERIES: usize = 4;

    kernel! {
        /// One head's forward for a few queries: `heads` = q, k, v, `bh` = (batch, head); `o`
        /// `[queries, d]`, `lse` `[queries]`; `s` is scratch of `keys`.
        fn attention_few / attention_few_baseline(heads: &[&Heads; 3], bh: [usize; 2], bias: &[f32], attended: &[usize], scale: f32, o: &mut [f32], lse: &mut [f32], s: &mut [f32]) {
            let ([q, k, v], [b, h]) = (heads, bh);
            let (keys, d) = (k.dims[2], q.dims[3]);
            for i in 0..attended.len() {
                let (n, qi, o) = (attended[i], q.row(b, h, i), &mut o[i * d..][..d]);
                let s = &mut s[..n];
                for (j, s) in s.iter_mut().enumerate() {
                    *s = scale * lanes_dot(qi, k.row(b, h, j)) + bias[i * keys + j];
                }
                let max = lanes(s, f32::NEG_INFINITY, |acc, x| if x > acc { x } else { acc });
                o.fill(0.0);
                if max == f32::NEG_INFINITY {
                    lse[i] = f32::INFINITY; // every key masked: zeros, as Burn's attention gives
                    continue;
                }
                for x in s.iter_mut() {
                    *x = exp(*x - max);
                }
                let sum = lanes(s, 0.0, |acc, x| acc + x);
                for (j, &p) in s.iter().enumerate() {
                    let p = p / sum;
                    for (o, &v) in o.iter_mut().zip(v.row(b, h, j)) {
                        *o = fma(p, v, *o);
                    }
                }
                lse[i] = max + sum.ln();
            }
        }
    }

    kernel! {
        /// One head's backward for a few queries: `heads` = q, k, v, o and the output gradient g;
        /// `dq` `[queries, d]`, `dk`, `dv` `[keys, d]` (zeros on entry).
        fn attention_few_backward / attention_few_backward_baseline(heads: &[&Heads; 5], bh: [usize; 2], bias: &[f32], attended: &[usize], lse: &[f32], scale: f32, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
            let ([q, k, v, o, g], [b, h]) = (heads, bh);
            let (keys, d) = (k.dims[2], q.dims[3]);
            for i in 0..attended.len() {
                if lse[i] == f32::INFINITY {
                    continue; // every key masked: no gradient
                }
                let (qi, gi, dqi) = (q.row(b, h, i), g.row(b, h, i), &mut dq[i * d..][..d]);
                let delta = lanes_dot(gi, o.row(b, h, i));
                for j in 0..attended[i] {
                    let p = exp(scale * lanes_dot(qi, k.row(b, h, j)) + bias[i * keys + j] - lse[i]);
                    let ds = p * (lanes_dot(gi, v.row(b, h, j)) - delta);
                    for (dv, &g) in dv[j * d..][..d].iter_mut().zip(gi) {
                        *dv = fma(p, g, *dv);
                    }
                    for (dq, &k) in dqi.iter_mut().zip(k.row(b, h, j)) {
                        *dq = fma(ds, k, *dq);
                    }
                    for (dk, &q) in dk[j * d..][..d].iter_mut().zip(qi) {
                        *dk = fma(ds, q, *dk);
                    }
                }
            }
            for x in dq.iter_mut().chain(dk.iter_mut()) {
                *x *= scale;
            }
        }
    }

    kernel! {
        /// One head's backward for one query: `heads` = q, k, v, o and the output gradient g;
        /// `dq` `[d]` (zeros on entry); writes every value of `dk`, `dv` `[keys, d]` (the keys from
        /// `attended` on, which the query does not see, get 0).
        fn attention_one_backward / attention_one_backward_baseline(heads: &[&Heads; 5], bh: [usize; 2], bias: &[f32], attended: usize, lse: f32, scale: f32, dq: &mut [f32], dk: &mut [MaybeUninit<f32>], dv: &mut [MaybeUninit<f32>]) {
            let ([q, k, v, o, g], [b, h]) = (heads, bh);
            let d = q.dims[3];
            let seen = if lse == f32::INFINITY { 0 } else { attended }; // every key masked: no gradient
            let (qi, gi) = (q.row(b, h, 0), g.row(b, h, 0));
            let delta = lanes_dot(gi, o.row(b, h, 0));
            for j in 0..seen {
                let p = exp(scale * lanes_dot(qi, k.row(b, h, j)) + bias[j] - lse);
                let ds = p * (lanes_dot(gi, v.row(b, h, j)) - delta);
                for (dv, &g) in dv[j * d..][..d].iter_mut().zip(gi) {
                    dv.write(p * g);
                }
                for (dq, &k) in dq.iter_mut().zip(k.row(b, h, j)) {
                    *dq = fma(ds, k, *dq);
                }
                let ds = scale * ds;
                for (dk, &q) in dk[j * d..][..d].iter_mut().zip(qi) {
                    dk.write(ds * q);
                }
            }
            for x in dk[seen * d..].iter_mut().chain(dv[seen * d..].iter_mut()) {
                x.write(0.0);
            }
            for x in dq.iter_mut() {
                *x *= scale;
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

    fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        type Saved<B> = [FloatTensor<B>; 6]; // q, k, v, o, lse, bias
        #[derive(Debug)]
        struct AttentionBackward;
        impl<B: FusedOps> Backward<B, 3> for AttentionBackward {
            type State = (Saved<B>, f64);
            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let ([q, k, v, o, lse, bias], scale) = ops.state;
                let (dq, dk, dv) = B::fused_attention_backward(q, k, v, o, lse, bias, grad, scale);
                for (parent, g) in ops.parents.into_iter().zip([dq, dk, dv]) {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, g);
                    }
                }
            }
        }
        // The mask bias is a constant and `lse` a by-product: neither takes part in the graph.
        let bias = bias.into_primitive();
        let ((q, nq), (k, nk), (v, nv)) = (q.into_parts(), k.into_parts(), v.into_parts());
        match AttentionBackward.prepare::<C>([nq, nk, nv]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (o, lse) = B::fused_attention(q.clone(), k.clone(), v.clone(), bias.clone(), scale);
                (prep.finish(([q, k, v, o.clone(), lse.clone(), bias], scale), o), FloatTensor::<Self>::new(lse))
            }
            OpsKind::UnTracked(prep) => {
                let (o, lse) = B::fused_attention(q, k, v, bias, scale);
                (prep.finish(o), FloatTensor::<Self>::new(lse))
            }
        }
    }

    fn fused_rotary(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RotaryBackward;
        impl<B: FusedOps> Backward<B, 1> for RotaryBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, bool);
            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (cos, sin, inverse) = ops.state;
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::fused_rotary(grad, cos, sin, !inverse));
                }
            }
        }
        // The angles come from the positions: constants, outside the graph.
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        let (x, node) = x.into_parts();
        match RotaryBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_rotary(x, cos.clone(), sin.clone(), inverse);
                prep.finish((cos, sin, inverse), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_rotary(x, cos, sin, inverse)),
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

    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        o: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [q, k, v, o, lse, bias, grad] = [q, k, v, o, lse, bias, grad].map(|t| t.into_primitive());
        let (dq, dk, dv) = B::fused_attention_backward(q, k, v, o, lse, bias, grad, scale);
        (FloatTensor::<Self>::new(dq), FloatTensor::<Self>::new(dk), FloatTensor::<Self>::new(dv))
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
    fn rotary_matches_the_composition_in_values_and_gradients() {
        // Heads split from a projection (rows strided in place), every item at its own positions;
        // every feature rotated (head width 16), and the first 4 of 6 (partial rotary).
        for (d, half) in [(16, 8), (6, 2)] {
            let [b, h, t] = [2, 3, 5];
            let projected = random([b, t, 3 * h * d], 1.0);
            let w = random([b, h, t, d], 1.0);
            let angle: Vec<f32> = (0..b * t * half).map(|i| (i / half) as f32 * 0.7 + 10000f32.powf(-((i % half) as f32) / half as f32)).collect();
            let angle = Tensor::<1>::from_data(TensorData::new(angle, [b * t * half]), &device()).reshape([b, 1, t, half]);
            let (cos, sin) = (angle.clone().cos(), angle.sin());
            let run = |fused: bool| {
                let (cos, sin) = (cos.clone(), sin.clone());
                move |[p]: [Tensor<3>; 1]| {
                    let k = p.narrow(2, h * d, h * d).reshape([b, t, h, d]).swap_dims(1, 2);
                    let y = if fused { rotary(k, cos.clone(), sin.clone()) } else { composed::rotary(k, cos.clone(), sin.clone()) };
                    y.swap_dims(1, 2).reshape([b, t, h * d])
                }
            };
            let w = w.swap_dims(1, 2).reshape([b, t, h * d]).detach();
            let (yf, gf) = value_and_grads(run(true), &[projected.clone()], &w);
            let (yc, gc) = value_and_grads(run(false), &[projected], &w);
            assert_close("rotary", yf, yc);
            assert_close("rotary dx", gf[0].clone(), gc[0].clone());
        }
    }

    /// Causal mask over `keys` (the last `queries` of them are the new positions), plus `padded`
    /// left-padding keys in the second item (every query still sees itself).
    fn causal_mask(b: usize, queries: usize, keys: usize, padded: usize) -> Tensor<4, Bool> {
        let past = keys - queries;
        let mut mask = vec![false; b * queries * keys];
        for (i, m) in mask.iter_mut().enumerate() {
            let (item, query, key) = (i / (queries * keys), i / keys % queries, i % keys);
            *m = key > past + query || (item == 1 && key < padded && key != past + query);
        }
        Tensor::<1, Bool>::from_data(TensorData::new(mask, [b * queries * keys]), &device()).reshape([b, 1, queries, keys])
    }

    #[test]
    fn fused_attention_matches_burns_attention_in_values_and_gradients() {
        // The whole sequence; 3 new queries after 8 cached keys and 1 after 10 (thought passes), also with the
        // last 4 keys hidden from the second item's query (their gradients must be 0); a model's head width (16,
        // 2 × 8 lanes), an odd one, one of 16 + 8 columns and one of 8.
        for (queries, keys, d, hidden) in [(11, 11, 16, 0), (3, 11, 16, 0), (1, 11, 16, 0), (1, 11, 16, 4), (13, 13, 7, 0), (37, 37, 16, 0), (19, 19, 24, 0), (9, 9, 8, 0)] {
            let [b, h] = [2, 3];
            let (q, w) = (random([b, h, queries, d], 1.5), random([b, h, queries, d], 1.0));
            let (k, v) = (random([b, h, keys, d], 1.5), random([b, h, keys, d], 1.0));
            let hide = Tensor::<1, Bool>::from_data(TensorData::new((0..b * keys).map(|i| i / keys == 1 && i % keys >= keys - hidden).collect(), [b * keys]), &device());
            let mask = if hidden > 0 { causal_mask(b, queries, keys, 2).bool_or(hide.reshape([b, 1, 1, keys])) } else { causal_mask(b, queries, keys, 2) };
            let run = |fused: bool| {
                let mask = mask.clone();
                move |[q, k, v]: [Tensor<4>; 3]| if fused { attention(q, k, v, mask.clone()) } else { composed::attention(q, k, v, mask.clone()) }
            };
            let (yf, gf) = value_and_grads(run(true), &[q.clone(), k.clone(), v.clone()], &w);
            let (yc, gc) = value_and_grads(run(false), &[q, k, v], &w);
            assert_close("attention", yf, yc);
            for (i, name) in ["dq", "dk", "dv"].iter().enumerate() {
                assert_close(name, gf[i].clone(), gc[i].clone());
            }
        }
    }

    #[test]
    fn fused_attention_reads_heads_split_from_a_projection_in_place() {
        // q, k, v as the model makes them: `[b, t, 3·h·d]` split, each `[b, t, h, d]` swapped to
        // `[b, h, t, d]` (rows of d contiguous floats, strided), against the same tensors made contiguous.
        let [b, t, h, d] = [2, 9, 4, 16];
        let (x, w) = (random([b, t, 3 * h * d], 1.0), random([b, h, t, d], 1.0));
        let mask = causal_mask(b, t, t, 3);
        let run = |contiguous: bool| {
            let mask = mask.clone();
            move |[x]: [Tensor<3>; 1]| {
                let mut qkv = x.chunk(3, 2).into_iter().map(|p| {
                    let p = p.reshape([b, t, h, d]).swap_dims(1, 2);
                    if contiguous { Tensor::<4>::from_data(p.to_data(), &p.device()).require_grad() } else { p }
                });
                let (q, k, v) = (qkv.next().unwrap(), qkv.next().unwrap(), qkv.next().unwrap());
                attention(q, k, v, mask.clone()).reshape([b, t, h * d])
            }
        };
        let wf = w.swap_dims(1, 2).reshape([b, t, h * d]).detach();
        let contiguous = run(true)([x.clone().detach()]).detach();
        let (strided, gf) = value_and_grads(run(false), &[x.clone()], &wf);
        assert_close("strided heads", strided, contiguous);
        let unfused = |[x]: [Tensor<3>; 1]| {
            let mut qkv = x.chunk(3, 2).into_iter().map(|p| p.reshape([b, t, h, d]).swap_dims(1, 2));
            let (q, k, v) = (qkv.next().unwrap(), qkv.next().unwrap(), qkv.next().unwrap());
            composed::attention(q, k, v, mask.clone()).reshape([b, t, h * d])
        };
        let (_, gc) = value_and_grads(unfused, &[x], &wf);
        assert_close("d projection", gf[0].clone(), gc[0].clone());
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

    /// The kernels run compiled for AVX-512 or AVX2 + FMA where the CPU has them; the baseline build of the
    /// same loops (what a CPU without them runs) gives the same numbers.
    #[test]
    fn the_simd_and_baseline_kernels_agree() {
        let xs: Vec<f32> = (0..1001).map(|i| -9.0 + 18.0 * i as f32 / 1000.0).collect();
        let fast = flex::filled(xs.len(), |y| flex::gelu(&xs, y));
        let base = flex::filled(xs.len(), |y| flex::gelu_baseline(&xs, y));
        let (mut gfast, mut gbase) = (vec![0.5f32; xs.len()], vec![0.5f32; xs.len()]);
        flex::gelu_backward(&xs, &mut gfast);
        flex::gelu_backward_baseline(&xs, &mut gbase);
        for i in 0..xs.len() {
            assert!((fast[i] - base[i]).abs() <= 1e-6 * (1.0 + base[i].abs()), "gelu({}) {} vs {}", xs[i], fast[i], base[i]);
            assert!((gfast[i] - gbase[i]).abs() <= 1e-6, "gelu'({}) {} vs {}", xs[i], gfast[i], gbase[i]);
        }
        // The rotary rotation of 7 rows of 20 features (16 rotated: a whole 16-lane pair, then the rest), strided 24 apart.
        let (t, d, half) = (7, 20, 8);
        let rows: Vec<f32> = (0..t * 24).map(|i| (i as f32 * 0.31).sin()).collect();
        let angle: Vec<f32> = (0..t * half).map(|i| (i / half) as f32 * 0.9 + (i % half) as f32 * 0.05).collect();
        let (cos, sin): (Vec<f32>, Vec<f32>) = angle.iter().map(|a| (a.cos(), a.sin())).unzip();
        let x = flex::Rows { data: &rows, stride: 24, d };
        let (mut fast, mut base) = (vec![0f32; t * d], vec![0f32; t * d]);
        flex::rotate(x, &cos, &sin, -1.0, &mut fast);
        flex::rotate_baseline(x, &cos, &sin, -1.0, &mut base);
        for (a, b) in fast.iter().zip(&base) {
            assert!((a - b).abs() <= 1e-6, "rotary {a} (SIMD build) vs {b} (baseline)");
        }
    }

    /// The same for one attention head, forward and backward, over whole register blocks and the
    /// rows after them (a CPU without AVX2 + FMA runs the baseline build; with AVX-512, its build,
    /// whose wide blocks the second size fills: 32-key tiles, then 16 and 8, and an odd key count).
    #[test]
    fn the_simd_and_baseline_attention_kernels_agree() {
        for (queries, keys) in [(7, 11), (19, 45)] {
            simd_and_baseline_attention_agree(queries, keys, 16);
        }
    }

    fn simd_and_baseline_attention_agree(queries: usize, keys: usize, d: usize) {
        let kp = keys.div_ceil(8) * 8;
        let wave = |n: usize, f: f32| (0..n).map(|i| (i as f32 * f).sin() * 1.5).collect::<Vec<f32>>();
        let (q, g) = (wave(queries * d, 0.37), wave(queries * d, 0.53));
        let (mut kt, mut vt, mut k, mut v) = (vec![0f32; d * kp], vec![0f32; d * kp], vec![0f32; keys * d], vec![0f32; keys * d]);
        for c in 0..d {
            for j in 0..keys {
                (k[j * d + c], v[j * d + c]) = (((c * keys + j) as f32 * 0.71).cos(), ((c * keys + j) as f32 * 0.29).sin());
                (kt[c * kp + j], vt[c * kp + j]) = (k[j * d + c], v[j * d + c]);
            }
        }
        let (k, v) = (flex::Rows { data: &k, stride: d, d }, flex::Rows { data: &v, stride: d, d });
        let past = keys - queries;
        let bias: Vec<f32> = (0..queries * keys).map(|i| if i % keys > past + i / keys { f32::NEG_INFINITY } else { 0.0 }).collect();
        let attended: Vec<usize> = (0..queries).map(|i| past + i + 1).collect();
        let head = flex::AttentionHead { q: &q, kt: &kt, k, v, vt: &vt, bias: &bias, attended: &attended, scale: 0.25 };
        let run = |fast: bool| {
            let (mut o, mut lse, mut s) = (vec![0f32; queries * d], vec![0f32; queries], vec![0f32; flex::ROWS * kp]);
            if fast { flex::attention_head(head, &mut o, &mut lse, &mut s) } else { flex::attention_head_baseline::<false>(head, &mut o, &mut lse, &mut s) }
            let (mut dq, mut dk, mut dv, mut scratch) = (vec![0f32; queries * d], vec![0f32; keys * d], vec![0f32; keys * d], vec![0f32; 2 * flex::ROWS * kp]);
            if fast {
                flex::attention_head_backward(head, &o, &g, &lse, &mut dq, &mut dk, &mut dv, &mut scratch)
            } else {
                flex::attention_head_backward_baseline::<false>(head, &o, &g, &lse, &mut dq, &mut dk, &mut dv, &mut scratch)
            }
            [o, lse, dq, dk, dv]
        };
        for (name, (fast, base)) in ["o", "lse", "dq", "dk", "dv"].iter().zip(run(true).iter().zip(run(false).iter())) {
            for (a, b) in fast.iter().zip(base) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name}: {a} (SIMD build) vs {b} (baseline)");
            }
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
