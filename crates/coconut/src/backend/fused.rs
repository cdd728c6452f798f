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
//! - softmax: y = exp(x − max)/Σ exp(x − max); dx = y·(g − Σ g·y).
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
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
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

/// softmax(q·kᵀ·scale, masked)·v; `mask` true = may not attend. Training on Flex takes the fused
/// softmax; elsewhere Burn's attention (fused forward kernels on Flex inference and on GPUs).
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4, Bool>) -> Tensor<4> {
    let device = q.device();
    if fused_on(&device) && device.is_autodiff() {
        let scale = 1.0 / (q.dims()[3] as f64).sqrt();
        let scores = q.mul_scalar(scale).matmul(k.swap_dims(2, 3)).mask_fill(mask, f32::NEG_INFINITY);
        let p = Tensor::<4>::from_dispatch(<Dispatch as FusedOps>::fused_softmax(scores.into_dispatch()));
        return p.matmul(v);
    }
    burn::tensor::module::attention(q, k, v, Some(mask), None, Default::default())
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

    pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        burn::tensor::activation::softmax(x, D - 1)
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The kernels: plain loops over contiguous f32 rows.
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
            let out = f32_data(&x)
                .iter()
                .map(|&x| {
                    let u2 = 2.0 * GELU_C * (x + GELU_A * x * x * x);
                    x / (1.0 + (-u2).exp())
                })
                .collect();
            tensor(out, &x)
        }

        fn fused_gelu_tanh_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let (xs, gs) = (f32_data(&x), f32_data(&grad));
            let out = xs
                .iter()
                .zip(gs.iter())
                .map(|(&x, &g)| {
                    let x2 = x * x;
                    let s = 1.0 / (1.0 + (-2.0 * GELU_C * (x + GELU_A * x2 * x)).exp());
                    g * (s + x * s * (1.0 - s) * 2.0 * GELU_C * (1.0 + 3.0 * GELU_A * x2))
                })
                .collect();
            tensor(out, &x)
        }

        fn fused_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> FlexTensor {
            let (xs, gamma_s, beta_s) = (f32_data(&x), f32_data(&gamma), f32_data(&beta));
            let d = row_len(&x);
            let mut out = vec![0f32; xs.len()];
            for (row, y) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                let (mean, rstd) = moments(row, epsilon);
                for i in 0..d {
                    y[i] = (row[i] - mean) * rstd * gamma_s[i] + beta_s[i];
                }
            }
            tensor(out, &x)
        }

        fn fused_layer_norm_backward(x: FlexTensor, gamma: FlexTensor, grad: FlexTensor, epsilon: f64) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (xs, gamma_s, gs) = (f32_data(&x), f32_data(&gamma), f32_data(&grad));
            let d = row_len(&x);
            let mut dx = vec![0f32; xs.len()];
            let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
            let mut xhat = vec![0f32; d];
            for ((row, g), dx) in xs.chunks_exact(d).zip(gs.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
                let (mean, rstd) = moments(row, epsilon);
                let (mut sum_gg, mut sum_ggx) = (0f32, 0f32);
                for i in 0..d {
                    xhat[i] = (row[i] - mean) * rstd;
                    let gg = g[i] * gamma_s[i];
                    sum_gg += gg;
                    sum_ggx += gg * xhat[i];
                    dgamma[i] += g[i] * xhat[i];
                    dbeta[i] += g[i];
                }
                let (mean_gg, mean_ggx) = (sum_gg / d as f32, sum_ggx / d as f32);
                for i in 0..d {
                    dx[i] = rstd * (g[i] * gamma_s[i] - mean_gg - xhat[i] * mean_ggx);
                }
            }
            (tensor(dx, &x), tensor(dgamma, &gamma), tensor(dbeta, &gamma))
        }

        fn fused_softmax(x: FlexTensor) -> FlexTensor {
            let xs = f32_data(&x);
            let d = row_len(&x);
            let mut out = vec![0f32; xs.len()];
            for (row, y) in xs.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if max == f32::NEG_INFINITY {
                    continue; // every key masked: zeros, as Burn's attention gives
                }
                let mut sum = 0f32;
                for (y, &x) in y.iter_mut().zip(row) {
                    *y = (x - max).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                y.iter_mut().for_each(|y| *y *= inv);
            }
            tensor(out, &x)
        }

        fn fused_softmax_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
            let (ys, gs) = (f32_data(&y), f32_data(&grad));
            let d = row_len(&y);
            let mut dx = vec![0f32; ys.len()];
            for ((y, g), dx) in ys.chunks_exact(d).zip(gs.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for i in 0..d {
                    dx[i] = y[i] * (g[i] - dot);
                }
            }
            tensor(dx, &y)
        }
    }

    /// Mean and 1/√(biased variance + ε) of one row (two passes, as Burn's layer norm).
    fn moments(row: &[f32], epsilon: f64) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
        (mean, 1.0 / (var + epsilon as f32).sqrt())
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

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxBackward;
        impl<B: FusedOps> Backward<B, 1> for SoftmaxBackward {
            type State = FloatTensor<B>;
            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(parent)] = ops.parents {
                    grads.register::<B>(parent.id, B::fused_softmax_backward(ops.state, grad));
                }
            }
        }
        let (x, node) = x.into_parts();
        match SoftmaxBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::fused_softmax(x);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_softmax(x)),
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

    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::fused_softmax_backward(y.into_primitive(), grad.into_primitive()))
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
        let mask = Tensor::<1, Bool>::from_data(TensorData::new(mask, [b * l * l]), &device()).reshape([b, 1, l, l]).expand([b, h, l, l]);
        let run = |fused: bool| {
            let mask = mask.clone();
            move |[q, k, v]: [Tensor<4>; 3]| {
                if fused {
                    attention(q, k, v, mask.clone())
                } else {
                    burn::tensor::module::attention(q, k, v, Some(mask.clone()), None, Default::default())
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
    fn softmax_matches_the_composition_in_values_and_gradients() {
        let (x, w) = (random([5, 7, 33], 4.0), random([5, 7, 33], 1.0));
        let soft = |[x]: [Tensor<3>; 1]| Tensor::<3>::from_dispatch(<Dispatch as FusedOps>::fused_softmax(x.into_dispatch()));
        let (yf, gf) = value_and_grads(soft, &[x.clone()], &w);
        let (yc, gc) = value_and_grads(|[x]| composed::softmax(x), &[x], &w);
        assert_close("softmax", yf, yc);
        assert_close("softmax dx", gf[0].clone(), gc[0].clone());
    }
}
