//! GPT-2 (Radford et al. 2019) in Burn, written to be read top to bottom.
//!
//! x  = wte[ids] + wpe[positions]                       (or caller-given input embeddings + wpe)
//!                                                      (rotary positions: x = wte[ids], and each
//!                                                      head's q, k are rotated by their position,
//!                                                      except in `nope_layers`)
//! for each block:
//!     x = x + attn(ln_1(x))                            causal self-attention, KV cache
//!                                                      (length-scaled: each query times s_h·ln(p+1))
//!                                                      (qkv_conv = w: q, k, v at t are Σ_j c_j ⊙
//!                                                      proj[t-j], j < w, before the rotation)
//!     x = x + mlp(ln_2(x))                             c_fc -> gelu(tanh) -> c_proj
//! h  = ln_f(x)                                         the "last hidden state"
//! logits = h · wteᵀ                                    LM head tied to the token embedding
//!
//! The forward takes *input embeddings*, explicit position ids and a key mask, and returns the last
//! hidden state; that is what the continuous-thought loop needs (`h[t-1]` becomes the input embedding
//! at `t`). Linear weights are stored `[d_in, d_out]`, the layout of HF GPT-2's `Conv1D`.
//! Model code is backend-free: the backend lives in the tensors' `Device` (Burn 0.22).

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::embedding;

use crate::backend::fused;

/// GPT-2 hyper-parameters. Field names follow HF's `GPT2Config`.
#[derive(Config, Debug, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    /// Longest sequence (learned position embeddings).
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; GPT-2 uses 4·n_embd.
    pub n_inner: usize,
    #[config(default = 1e-5)]
    pub layer_norm_epsilon: f64,
    /// Std of the normal init of weights (GPT-2: 0.02; residual projections get 0.02/√(2·n_layer)).
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Residual and embedding dropout while training (GPT-2: 0.1). Attention-prob dropout is not
    /// applied: Burn's fused attention has none.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// How token positions enter the model (GPT-2: learned).
    #[config(default = "Position::Learned")]
    pub position: Position,
    /// Rotary positions only: how many of each head's features are rotated (GPT-NeoX's partial
    /// rotary, its `rotary_pct`), the first `rotary_dims`; the others are left as they are, so a
    /// query and a key can match on content at any distance. `None`: all of them (Su et al.).
    pub rotary_dims: Option<usize>,
    /// Scalable-Softmax (Nakanishi 2025): each head's query at position `p` is multiplied by
    /// `s_h·ln(p + 1)`, `s_h` learned, so the attention logits grow with the log of the number of
    /// keys `p + 1` a query sees. Plain softmax flattens as keys are added; this keeps a peak that is
    /// sharp over 60 keys sharp over 250 (what a lookup learned on small questions needs on long ones).
    #[config(default = false)]
    pub length_scaled_attention: bool,
    /// Rotary positions only: the layers (0-based) whose attention is not rotated (NoPE, Kazemnejad
    /// et al. 2023): queries and keys match on content alone at any distance, position known only
    /// through the causal mask and the rotary layers below. A lookup by content in such a layer reads
    /// the same on a 60-token question as on a 250-token one.
    #[config(default = "Vec::new()")]
    pub nope_layers: Vec<usize>,
    /// Width `w` of a causal depthwise convolution over time on the queries, keys and values
    /// (Primer's multi-dconv-head attention, So et al. 2021): each of their features at position `t`
    /// is `Σ_{j<w} c_j·proj[t−j]`, with learned `c` per feature, initialised to the identity
    /// (`c_0 = 1`). A key can then carry the token a few positions back (in "Every X is a Y", the key
    /// at Y can be X) without a previous-token head in a layer below. 0 = GPT-2's attention.
    #[config(default = 0)]
    pub qkv_conv: usize,
}

/// `s_h` at initialisation: `s·ln(p + 1) = 1` at `p + 1 = 64` keys, plain attention there.
pub const LENGTH_SCALE_INIT: f64 = 0.240_449_173_5; // 1 / ln 64

/// How token positions enter the model.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Position {
    /// GPT-2: a learned embedding per position (`wpe`), added to the input.
    Learned,
    /// Rotary (Su et al. 2021): feature pair `(x_f, x_{f+d/2})` of each head's query and key at
    /// position `p` is rotated by the angle `p·θ_f`, `θ_f = 10000^(−2f/d)`, so a score `q_i·k_j`
    /// depends on `i − j`, not on where the pair sits: "the token 3 back" is one pattern at every
    /// position. `wpe` is then a `[1, n_embd]` zero placeholder that the forward does not use.
    Rope,
}

impl Gpt2Config {
    /// The real GPT-2 "small" (124M parameters).
    pub fn gpt2_124m() -> Self {
        Self::new(50257, 1024, 768, 12, 12, 3072)
    }

    /// A small GPT-2 for a word-level vocabulary, trained from scratch.
    pub fn small(vocab_size: usize, n_layer: usize, n_embd: usize, n_head: usize) -> Self {
        Self::new(vocab_size, 1024, n_embd, n_layer, n_head, 4 * n_embd)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!("n_embd ({}) must be a multiple of n_head ({})", self.n_embd, self.n_head));
        }
        if self.vocab_size == 0 || self.n_positions == 0 || self.n_layer == 0 || self.n_inner == 0 {
            return Err("vocab_size, n_positions, n_layer and n_inner must be positive".into());
        }
        if let Some(&l) = self.nope_layers.iter().find(|&&l| l >= self.n_layer) {
            return Err(format!("nope_layers names layer {l}, but the model has {} (0-based)", self.n_layer));
        }
        if !self.nope_layers.is_empty() && self.position != Position::Rope {
            return Err("nope_layers needs rotary positions (position = Rope)".into());
        }
        if let Some(r) = self.rotary_dims {
            if self.position != Position::Rope {
                return Err("rotary_dims needs rotary positions (position = Rope)".into());
            }
            if r == 0 || !r.is_multiple_of(2) || r > self.head_dim() {
                return Err(format!("rotary_dims ({r}) must be even, positive and at most the head size ({})", self.head_dim()));
            }
        }
        Ok(())
    }

    pub fn num_params(&self) -> usize {
        let (d, f) = (self.n_embd, self.n_inner);
        let block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        let positions = if self.position == Position::Learned { self.n_positions * d } else { 0 };
        let length_scale = if self.length_scaled_attention { self.n_head } else { 0 };
        let conv = self.qkv_conv * 3 * d;
        self.vocab_size * d + positions + self.n_layer * (block + length_scale + conv) + 2 * d
    }

    /// Builds a randomly initialised model with GPT-2's initialisation.
    pub fn init(&self, device: &Device) -> Gpt2 {
        self.validate().expect("invalid GPT-2 config");
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        let std = self.initializer_range;
        let proj_std = std / (2.0 * self.n_layer as f64).sqrt();
        let linear = |d_in: usize, d_out: usize, std: f64| {
            let mut l = LinearConfig::new(d_in, d_out).with_initializer(normal(std)).init(device);
            l.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
            l
        };
        let ln = || LayerNormConfig::new(self.n_embd).with_epsilon(self.layer_norm_epsilon).init(device);
        let blocks = (0..self.n_layer)
            .map(|_| Block {
                ln_1: ln(),
                attn: Attention {
                    c_attn: linear(self.n_embd, 3 * self.n_embd, std),
                    c_proj: linear(self.n_embd, self.n_embd, proj_std),
                    length_scale: self
                        .length_scaled_attention
                        .then(|| Initializer::Constant { value: LENGTH_SCALE_INIT }.init([self.n_head], device)),
                    qkv_conv: (self.qkv_conv > 0).then(|| {
                        let identity: Vec<f32> = (0..self.qkv_conv * 3 * self.n_embd).map(|i| if i < 3 * self.n_embd { 1.0 } else { 0.0 }).collect();
                        Param::from_tensor(Tensor::from_data(TensorData::new(identity, [self.qkv_conv, 3 * self.n_embd]), device))
                    }),
                    n_head: self.n_head,
                },
                ln_2: ln(),
                mlp: Mlp { c_fc: linear(self.n_embd, self.n_inner, std), c_proj: linear(self.n_inner, self.n_embd, proj_std) },
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        Gpt2 {
            wte: normal(std).init([self.vocab_size, self.n_embd], device),
            wpe: match self.position {
                Position::Learned => normal(0.01).init([self.n_positions, self.n_embd], device),
                Position::Rope => Initializer::Zeros.init([1, self.n_embd], device),
            },
            h: blocks,
            ln_f: ln(),
            dropout: DropoutConfig::new(self.dropout).init(),
            position: self.position,
            rotary_dims: self.rotary_dims.unwrap_or(self.head_dim()),
            nope_layers: self.nope_layers.clone(),
            layer_norm_epsilon: self.layer_norm_epsilon,
        }
    }
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embedding `[vocab, d]`, also the LM head.
    pub wte: Param<Tensor<2>>,
    /// Learned position embedding `[n_positions, d]`.
    pub wpe: Param<Tensor<2>>,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    pub dropout: Dropout,
    #[module(skip)]
    pub position: Position,
    /// Rotary positions: the features of each head that are rotated (the first ones).
    #[module(skip)]
    pub rotary_dims: usize,
    /// Rotary positions: the layers whose attention is not rotated (`Gpt2Config::nope_layers`).
    #[module(skip)]
    pub nope_layers: Vec<usize>,
    /// ε of every layer norm (GPT-2: 1e-5).
    #[module(skip)]
    pub layer_norm_epsilon: f64,
}

#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Attention {
    /// Fused q, k, v projection `[d, 3d]`.
    pub c_attn: Linear,
    pub c_proj: Linear,
    /// Scalable-Softmax's `s_h` per head `[n_head]` (`Gpt2Config::length_scaled_attention`).
    pub length_scale: Option<Param<Tensor<1>>>,
    /// The convolution over time of q, k, v `[w, 3d]`: row `j` weighs the projection `j` positions
    /// back (`Gpt2Config::qkv_conv`).
    pub qkv_conv: Option<Param<Tensor<2>>>,
    pub n_head: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

/// Keys and values of every layer for the positions seen so far: `[batch, heads, len, head_dim]`.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub layers: Vec<(Tensor<4>, Tensor<4>)>,
    /// With `qkv_conv` (width w), per layer: the q, k, v projections before the convolution of the
    /// last w − 1 cached positions, or of all when fewer, `[batch, ≤ w − 1, 3d]` (what the
    /// convolution reads at the positions that follow); `None` without it.
    pub projections: Vec<Option<Tensor<3>>>,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map(|(k, _)| k.dims()[2]).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `len` positions (drop what came after a prefix). A convolution model's cache
    /// holds only the last projections, so it can be truncated only where it still has all of them.
    pub fn truncate(self, len: usize) -> Self {
        let total = self.len();
        assert!(len <= total, "cannot truncate a cache of {total} to {len}");
        let layers = self.layers.into_iter().map(|(k, v)| (k.narrow(2, 0, len), v.narrow(2, 0, len))).collect();
        let projections = self
            .projections
            .into_iter()
            .map(|p| {
                p.map(|p| {
                    let held = p.dims()[1];
                    assert!(len == total || held == total, "this cache keeps only its last positions' convolution inputs: truncate it before more positions are added");
                    p.narrow(1, 0, len.min(held))
                })
            })
            .collect();
        Self { layers, projections }
    }

    /// Each row repeated `rows` times (a prefix shared by `rows` continuations).
    pub fn repeat(&self, rows: usize) -> Self {
        Self {
            layers: self.layers.iter().map(|(k, v)| (k.clone().repeat_dim(0, rows), v.clone().repeat_dim(0, rows))).collect(),
            projections: self.projections.iter().map(|p| p.as_ref().map(|p| p.clone().repeat_dim(0, rows))).collect(),
        }
    }
}

/// One forward call's input.
pub struct Gpt2Input {
    /// Input embeddings without positions `[batch, len, d]` (token embeddings, or thoughts).
    pub embeds: Tensor<3>,
    /// Position ids `[batch, len]`.
    pub positions: Tensor<2, Int>,
    /// Which keys may be attended to, over cache + new positions `[batch, cached + len]`
    /// (HF's `attention_mask`; `None` = all). Causality is added on top.
    pub key_mask: Option<Tensor<2, Bool>>,
    pub cache: Option<KvCache>,
}

pub struct Gpt2Output {
    /// The last hidden state after `ln_f` `[batch, len, d]`.
    pub hidden: Tensor<3>,
    /// Cache extended with this call's positions.
    pub cache: KvCache,
}

impl Gpt2 {
    pub fn vocab_size(&self) -> usize {
        self.wte.dims()[0]
    }

    pub fn n_embd(&self) -> usize {
        self.wte.dims()[1]
    }

    pub fn device(&self) -> Device {
        self.wte.val().device()
    }

    /// Token embeddings `[batch, len, d]` (positions are added inside `forward`).
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.wte.val(), ids)
    }

    /// LM head, tied to the token embedding: `logits = h · wteᵀ`.
    pub fn lm_head<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        let w = self.wte.val().transpose().unsqueeze::<D>();
        hidden.matmul(w)
    }

    /// The transformer trunk: returns the last hidden state and the extended KV cache.
    pub fn forward(&self, input: Gpt2Input) -> Gpt2Output {
        let Gpt2Input { embeds, positions, key_mask, cache } = input;
        let [batch, len, _] = embeds.dims();
        let past = cache.as_ref().map(KvCache::len).unwrap_or(0);
        // 1 at the new positions that are tokens, 0 at padding `[batch, len, 1]` (for `qkv_conv`).
        let convolved = self.h.iter().any(|b| b.attn.qkv_conv.is_some());
        let real = key_mask.as_ref().filter(|_| convolved).map(|m| m.clone().narrow(1, past, len).float().unsqueeze_dim::<3>(2));
        let mask = attention_mask(key_mask, batch, past, len, &embeds.device());

        // ln(p + 1) per query `[batch, 1, len, 1]`, for length-scaled attention.
        let log_keys = self.h.iter().any(|b| b.attn.length_scale.is_some()).then(|| (positions.clone().float() + 1.0).log().reshape([batch, 1, len, 1]));
        let (x, rotary) = match self.position {
            Position::Learned => (embeds + embedding(self.wpe.val(), positions), None),
            Position::Rope => (embeds, Some(Rotary::new(positions, self.rotary_dims))),
        };
        let mut x = self.dropout.forward(x);
        let (mut layers, mut projections) = (Vec::with_capacity(self.h.len()), Vec::with_capacity(self.h.len()));
        let mut past_layers = cache.map(|c| c.layers.into_iter().zip(c.projections));
        for (i, block) in self.h.iter().enumerate() {
            let (past_kv, past_projections) = past_layers.as_mut().and_then(|it| it.next()).map_or((None, None), |(kv, p)| (Some(kv), p));
            let rotary = rotary.as_ref().filter(|_| !self.nope_layers.contains(&i));
            let attend = Attend { mask: mask.clone(), rotary, log_keys: log_keys.as_ref(), real: real.as_ref() };
            let (y, kv, seen) = block.forward(x, past_kv, past_projections, attend, self.layer_norm_epsilon);
            x = y;
            layers.push(kv);
            projections.push(seen);
        }
        Gpt2Output { hidden: norm(&self.ln_f, x, self.layer_norm_epsilon), cache: KvCache { layers, projections } }
    }

    /// Token ids in, `(logits, last hidden state)` out; positions 0..len, no padding.
    pub fn forward_ids(&self, ids: Tensor<2, Int>) -> (Tensor<3>, Tensor<3>) {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).unsqueeze::<2>().expand([batch, len]);
        let out = self.forward(Gpt2Input { embeds: self.embed(ids), positions, key_mask: None, cache: None });
        (self.lm_head(out.hidden.clone()), out.hidden)
    }

    /// Grows the vocabulary (e.g. by Coconut's latent tokens); new rows copy the embedding of
    /// `init_from` (the official code initialises them from the token "<<").
    pub fn resize_vocab(mut self, vocab_size: usize, init_from: usize) -> Self {
        let old = self.vocab_size();
        if vocab_size <= old {
            return self;
        }
        let w = self.wte.val();
        let row = w.clone().narrow(0, init_from, 1);
        let extra = row.repeat_dim(0, vocab_size - old);
        self.wte = Param::from_tensor(Tensor::cat(vec![w, extra], 0));
        self
    }
}

/// What one forward call's attention needs besides its input, the same for every layer.
struct Attend<'a> {
    /// `true` = may not attend (`attention_mask`).
    mask: Tensor<4, Bool>,
    rotary: Option<&'a Rotary>,
    /// ln(p + 1) per query, for length-scaled attention.
    log_keys: Option<&'a Tensor<4>>,
    /// 1 at tokens, 0 at padding `[batch, len, 1]`; `None`: no padding.
    real: Option<&'a Tensor<3>>,
}

type Kv = (Tensor<4>, Tensor<4>);

impl Block {
    fn forward(&self, x: Tensor<3>, past: Option<Kv>, past_projections: Option<Tensor<3>>, attend: Attend, eps: f64) -> (Tensor<3>, Kv, Option<Tensor<3>>) {
        let (a, kv, seen) = self.attn.forward(norm(&self.ln_1, x.clone(), eps), past, past_projections, attend);
        let x = x + self.dropout.forward(a);
        let m = self.mlp.forward(norm(&self.ln_2, x.clone(), eps));
        (x + self.dropout.forward(m), kv, seen)
    }
}

impl Attention {
    /// softmax(q·kᵀ/√d_head + mask)·v per head, over cached + new keys; length-scaled, the
    /// query at position p is first multiplied by s_h·ln(p + 1) (`log_keys`: ln(p + 1)). With
    /// `qkv_conv`, q, k and v are first convolved over time; returns the projections seen so far.
    fn forward(&self, x: Tensor<3>, past: Option<Kv>, past_projections: Option<Tensor<3>>, attend: Attend) -> (Tensor<3>, Kv, Option<Tensor<3>>) {
        let Attend { mask, rotary, log_keys, real } = attend;
        let [batch, len, d] = x.dims();
        let projected = per_position(&self.c_attn, x);
        let (projected, seen) = match &self.qkv_conv {
            None => (projected, None),
            Some(c) => {
                // Padding is zero, as before the first token: a left-padded row reads as unpadded.
                let projected = match real {
                    Some(r) => projected * r.clone(),
                    None => projected,
                };
                // Only the last w − 1 positions before these reach the convolution: the cache keeps
                // those, not the whole history (a thought pass would otherwise copy all of it).
                let keep = c.val().dims()[0] - 1;
                let seen = match past_projections {
                    Some(p) if keep > 0 => {
                        let have = p.dims()[1];
                        let p = if have > keep { p.narrow(1, have - keep, keep) } else { p };
                        Tensor::cat(vec![p, projected], 1)
                    }
                    _ => projected,
                };
                (fused::causal_conv(seen.clone(), c.val(), len), Some(seen))
            }
        };
        // `[batch, len, 3·heads, d_head]` → `[batch, 3·heads, len, d_head]`, split into q, k and v: views
        // of the projection (splitting first and then each part's features would copy all three).
        let per_head = projected.reshape([batch, len, 3 * self.n_head, d / self.n_head]).swap_dims(1, 2);
        let mut qkv = per_head.chunk(3, 1).into_iter();
        let (q, k, v) = (qkv.next().unwrap(), qkv.next().unwrap(), qkv.next().unwrap());
        let q = match (&self.length_scale, log_keys) {
            (Some(s), Some(log_keys)) => q * (s.val().reshape([1, self.n_head, 1, 1]) * log_keys.clone()),
            _ => q,
        };
        // Keys are cached rotated: a key's angle depends on its own position only.
        let (q, k) = match rotary {
            Some(r) => (r.rotate(q), r.rotate(k)),
            None => (q, k),
        };
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        let y = fused::attention(q, k.clone(), v.clone(), mask);
        let y = y.swap_dims(1, 2).reshape([batch, len, d]);
        (per_position(&self.c_proj, y), (k, v), seen)
    }
}

/// The rotary angles of one forward call's positions: `cos(p·θ_f)`, `sin(p·θ_f)` as
/// `[batch, 1, len, dims/2]` (broadcast over heads), for the first `dims` features of a head.
pub(crate) struct Rotary {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rotary {
    pub(crate) fn new(positions: Tensor<2, Int>, dims: usize) -> Self {
        let [batch, len] = positions.dims();
        let half = dims / 2;
        let device = positions.device();
        let theta: Vec<f32> = (0..half).map(|f| 10000f64.powf(-2.0 * f as f64 / dims as f64) as f32).collect();
        let theta = Tensor::<1>::from_data(TensorData::new(theta, [half]), &device).reshape([1, 1, 1, half]);
        let angle = positions.float().reshape([batch, 1, len, 1]) * theta;
        Self { cos: angle.clone().cos(), sin: angle.sin() }
    }

    /// `(x₁, x₂) → (x₁·cos − x₂·sin, x₂·cos + x₁·sin)` on the two halves of the first `dims`
    /// features of the last dimension; the features after them pass unchanged.
    pub(crate) fn rotate(&self, x: Tensor<4>) -> Tensor<4> {
        fused::rotary(x, self.cos.clone(), self.sin.clone())
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        per_position(&self.c_proj, fused::gelu_tanh(per_position(&self.c_fc, x)))
    }
}

/// `linear` at every position: `[b, t, d_in]` as one `[b·t, d_in] × [d_in, d_out]` product, the
/// weight read (packed) once per call rather than once per batch item, as Burn's batched product
/// does for shapes like 8 × 321 rows.
fn per_position(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, len, d] = x.dims();
    let y = linear.forward(x.reshape([batch * len, d]));
    let d_out = y.dims()[1];
    y.reshape([batch, len, d_out])
}

/// Layer norm with `ln`'s γ and β (one fused op on the CPU backend: `backend::fused`).
fn norm(ln: &LayerNorm, x: Tensor<3>, eps: f64) -> Tensor<3> {
    let beta = ln.beta.as_ref().map(|b| b.val()).unwrap_or_else(|| ln.gamma.val().zeros_like());
    fused::layer_norm(x, ln.gamma.val(), beta, eps)
}

/// Boolean mask `[batch, 1→heads, len, past+len]`, `true` = may NOT attend: key after the query
/// (causal, by index) or key masked out by `key_mask`. A query always sees itself, so no row is
/// fully masked (padding rows stay finite).
fn attention_mask(key_mask: Option<Tensor<2, Bool>>, batch: usize, past: usize, len: usize, device: &Device) -> Tensor<4, Bool> {
    let total = past + len;
    let q = Tensor::<1, Int>::arange(past as i64..total as i64, device).reshape([len, 1]).expand([len, total]);
    let k = Tensor::<1, Int>::arange(0..total as i64, device).reshape([1, total]).expand([len, total]);
    let future = k.clone().greater(q.clone());
    let blocked = match key_mask {
        None => future.unsqueeze::<3>().expand([batch, len, total]),
        Some(m) => {
            assert_eq!(m.dims(), [batch, total], "key_mask must be [batch, cached + len]");
            let padded = m.bool_not().unsqueeze_dim::<3>(1).expand([batch, len, total]);
            let not_self = k.not_equal(q).unsqueeze::<3>().expand([batch, len, total]);
            future.unsqueeze::<3>().expand([batch, len, total]).bool_or(padded.bool_and(not_self))
        }
    };
    blocked.unsqueeze_dim::<4>(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn hidden(model: &Gpt2, ids: &[i64], first_position: i64, device: &Device) -> Vec<f32> {
        let len = ids.len();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, len]), device);
        let positions = Tensor::<1, Int>::arange(first_position..first_position + len as i64, device).unsqueeze::<2>();
        let out = model.forward(Gpt2Input { embeds: model.embed(ids), positions, key_mask: None, cache: None });
        out.hidden.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn rotary_positions_make_the_model_depend_on_offsets_only() {
        let device = Device::flex();
        device.seed(3);
        let ids: Vec<i64> = (0..12).map(|i| (i * 5 % 40) as i64).collect();
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let rope = Gpt2Config { dropout: 0.0, position: Position::Rope, ..Gpt2Config::small(40, 2, 32, 4) }.init(&device);
        let shifted = max_diff(&hidden(&rope, &ids, 0, &device), &hidden(&rope, &ids, 300, &device));
        assert!(shifted < 1e-4, "rotary: shifting every position by 300 moved the hidden state by {shifted}");
        let learned = Gpt2Config { dropout: 0.0, ..Gpt2Config::small(40, 2, 32, 4) }.init(&device);
        let shifted = max_diff(&hidden(&learned, &ids, 0, &device), &hidden(&learned, &ids, 300, &device));
        assert!(shifted > 1e-3, "learned positions do depend on where the sequence sits ({shifted})");
        assert_eq!(rope.wpe.dims(), [1, 32], "no position table with rotary positions");
        assert_eq!(Gpt2Config { position: Position::Rope, ..Gpt2Config::small(40, 2, 32, 4) }.num_params(), rope.num_params() - 32);
    }

    #[test]
    fn rotary_rotation_matches_hand_computed_values() {
        // head_dim 4: θ = (1, 10000^(-1/2) = 0.01); feature pairs (0, 2) and (1, 3).
        let device = Device::flex();
        let r = Rotary::new(Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 2], [1, 2]), &device), 4);
        let x = Tensor::<4>::from_data(TensorData::new(vec![1f32, 2., 3., 4., 1., 2., 3., 4.], [1, 1, 2, 4]), &device);
        let y: Vec<f32> = r.rotate(x).into_data().try_to_vec::<f32>().unwrap();
        let (c0, s0, c1, s1) = (2f32.cos(), 2f32.sin(), 0.02f32.cos(), 0.02f32.sin());
        let want = [1., 2., 3., 4., 1. * c0 - 3. * s0, 2. * c1 - 4. * s1, 3. * c0 + 1. * s0, 4. * c1 + 2. * s1];
        for (got, want) in y.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn partial_rotary_rotates_the_first_features_only() {
        // head_dim 6, rotary_dims 4: θ = (1, 0.01) on pairs (0, 2) and (1, 3); features 4, 5 unchanged.
        let device = Device::flex();
        let r = Rotary::new(Tensor::<2, Int>::from_data(TensorData::new(vec![2i64], [1, 1]), &device), 4);
        let x = Tensor::<4>::from_data(TensorData::new(vec![1f32, 2., 3., 4., 5., 6.], [1, 1, 1, 6]), &device);
        let y: Vec<f32> = r.rotate(x).into_data().try_to_vec::<f32>().unwrap();
        let (c0, s0, c1, s1) = (2f32.cos(), 2f32.sin(), 0.02f32.cos(), 0.02f32.sin());
        let want = [1. * c0 - 3. * s0, 2. * c1 - 4. * s1, 3. * c0 + 1. * s0, 4. * c1 + 2. * s1, 5., 6.];
        for (got, want) in y.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        let partial = Gpt2Config { dropout: 0.0, position: Position::Rope, rotary_dims: Some(4), ..Gpt2Config::small(40, 2, 32, 4) };
        assert!(Gpt2Config { rotary_dims: Some(10), ..partial.clone() }.validate().is_err(), "more rotated features than a head has");
        assert!(Gpt2Config { position: Position::Learned, ..partial.clone() }.validate().is_err(), "rotary_dims without rotary positions");
        let model = partial.init(&device);
        let ids = [3i64, 7, 1, 9, 4];
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let shifted = max_diff(&hidden(&model, &ids, 0, &device), &hidden(&model, &ids, 300, &device));
        assert!(shifted < 1e-4, "partial rotary: shifting every position by 300 moved the hidden state by {shifted}");
    }

    #[test]
    fn length_scaled_attention_matches_a_hand_computed_softmax() {
        // One attention layer, 2 heads of 2 features, s = (0.5, 1.5): the query at position p is
        // multiplied by s_h·ln(p + 1) before softmax(q·kᵀ/√2)·v, computed here with plain loops.
        let device = Device::flex();
        device.seed(9);
        let config = Gpt2Config { dropout: 0.0, length_scaled_attention: true, ..Gpt2Config::small(10, 1, 4, 2) };
        assert_eq!(config.num_params(), Gpt2Config { length_scaled_attention: false, ..config.clone() }.num_params() + 2);
        let mut model = config.init(&device);
        let mut attn = model.h.remove(0).attn;
        let init: Vec<f32> = attn.length_scale.as_ref().unwrap().val().into_data().try_to_vec().unwrap();
        assert!(init.iter().all(|&s| (s as f64 - LENGTH_SCALE_INIT).abs() < 1e-6 && (s as f64 * 64f64.ln() - 1.0).abs() < 1e-6), "{init:?}");
        attn.length_scale = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.5f32, 1.5], [2]), &device)));
        let (len, d) = (5, 4);
        let xs: Vec<f32> = (0..len * d).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [1, len, d]), &device);
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).unsqueeze::<2>();
        let log_keys = (positions.float() + 1.0).log().reshape([1, 1, len, 1]);
        let mask = attention_mask(None, 1, 0, len, &device);
        let (y, _, _) = attn.forward(x, None, None, Attend { mask, rotary: None, log_keys: Some(&log_keys), real: None });
        let got: Vec<f32> = y.into_data().try_to_vec().unwrap();

        let weights = |l: &Linear| -> (Vec<f32>, Vec<f32>) {
            (l.weight.val().into_data().try_to_vec().unwrap(), l.bias.as_ref().unwrap().val().into_data().try_to_vec().unwrap())
        };
        let linear = |(w, b): &(Vec<f32>, Vec<f32>), x: &[f32], d_out: usize| -> Vec<f32> {
            (0..d_out).map(|o| b[o] + x.iter().enumerate().map(|(i, xi)| xi * w[i * d_out + o]).sum::<f32>()).collect()
        };
        let (c_attn, c_proj) = (weights(&attn.c_attn), weights(&attn.c_proj));
        let qkv: Vec<Vec<f32>> = (0..len).map(|t| linear(&c_attn, &xs[t * d..(t + 1) * d], 3 * d)).collect();
        let s = [0.5f32, 1.5];
        let mut want = Vec::new();
        for t in 0..len {
            let mut heads = vec![0f32; d];
            for h in 0..2 {
                let q: Vec<f32> = (0..2).map(|f| qkv[t][h * 2 + f] * s[h] * ((t + 1) as f32).ln()).collect();
                let scores: Vec<f32> = (0..=t).map(|j| (0..2).map(|f| q[f] * qkv[j][d + h * 2 + f]).sum::<f32>() / 2f32.sqrt()).collect();
                let max = scores.iter().cloned().fold(f32::MIN, f32::max);
                let z: f32 = scores.iter().map(|v| (v - max).exp()).sum();
                for (j, sc) in scores.iter().enumerate() {
                    for f in 0..2 {
                        heads[h * 2 + f] += (sc - max).exp() / z * qkv[j][2 * d + h * 2 + f];
                    }
                }
            }
            want.extend(linear(&c_proj, &heads, d));
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn a_nope_layer_reads_the_earlier_tokens_as_a_set() {
        // One layer without rotation: the last position's hidden state is a softmax-weighted sum over
        // the earlier tokens, so swapping two of them changes nothing; a rotary layer sees the swap.
        let device = Device::flex();
        device.seed(5);
        let rope = Gpt2Config { dropout: 0.0, position: Position::Rope, ..Gpt2Config::small(40, 1, 32, 4) };
        let nope = Gpt2Config { nope_layers: vec![0], ..rope.clone() };
        assert!(Gpt2Config { nope_layers: vec![1], ..rope.clone() }.validate().is_err(), "layer 1 of a 1-layer model");
        assert!(Gpt2Config { position: Position::Learned, ..nope.clone() }.validate().is_err(), "nope_layers without rotary positions");
        let (a, b) = ([3i64, 7, 1, 9, 4], [1i64, 7, 3, 9, 4]);
        let last = |m: &Gpt2, ids: &[i64]| hidden(m, ids, 0, &device)[4 * 32..].to_vec();
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        device.seed(5);
        let nope_model = nope.init(&device);
        let swapped = max_diff(&last(&nope_model, &a), &last(&nope_model, &b));
        assert!(swapped < 1e-5, "NoPE: swapping two earlier tokens moved the last hidden state by {swapped}");
        let mut rope_model = nope_model.clone();
        rope_model.nope_layers.clear();
        let swapped = max_diff(&last(&rope_model, &a), &last(&rope_model, &b));
        assert!(swapped > 1e-4, "rotary: the same weights see the swap ({swapped})");
    }

    #[test]
    fn rotary_kv_cache_gives_the_full_pass_values() {
        for length_scaled_attention in [false, true] {
            kv_cache_gives_the_full_pass_values(Gpt2Config { dropout: 0.0, position: Position::Rope, length_scaled_attention, ..Gpt2Config::small(40, 2, 32, 4) });
        }
        kv_cache_gives_the_full_pass_values(Gpt2Config { dropout: 0.0, position: Position::Rope, nope_layers: vec![1], ..Gpt2Config::small(40, 2, 32, 4) });
        // A convolution narrower and one wider than the 6-token prefix the cache starts from.
        for qkv_conv in [4, 8] {
            kv_cache_gives_the_full_pass_values(Gpt2Config { dropout: 0.0, position: Position::Rope, qkv_conv, ..Gpt2Config::small(40, 2, 32, 4) });
        }
    }

    /// Random convolution weights in every layer (the identity it starts as would test nothing).
    fn with_random_conv(mut model: Gpt2, device: &Device) -> Gpt2 {
        for b in model.h.iter_mut() {
            if let Some(c) = &b.attn.qkv_conv {
                b.attn.qkv_conv = Some(Param::from_tensor(Tensor::random(c.dims(), Distribution::Normal(0.0, 0.7), device)));
            }
        }
        model
    }

    #[test]
    fn qkv_conv_attention_matches_a_hand_computed_layer() {
        // One head of 4 features, no rotation, a convolution of width 3 with random weights: the
        // attention output at every position, computed with loops over plain numbers.
        let device = Device::flex();
        device.seed(9);
        let config = Gpt2Config { dropout: 0.0, qkv_conv: 3, ..Gpt2Config::small(10, 1, 4, 1) };
        let mut model = with_random_conv(config.init(&device), &device);
        let attn = &mut model.h[0].attn;
        attn.c_attn.bias = Some(Param::from_tensor(Tensor::random([12], Distribution::Normal(0.0, 0.5), &device)));
        let (t, d) = (5, 4);
        let x = Tensor::<3>::random([1, t, d], Distribution::Normal(0.0, 1.0), &device);
        let mask = attention_mask(None, 1, 0, t, &device);
        let (y, _, _) = attn.forward(x.clone(), None, None, Attend { mask, rotary: None, log_keys: None, real: None });
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let (xs, y) = (x.into_data().try_to_vec::<f32>().unwrap(), y.into_data().try_to_vec::<f32>().unwrap());
        let (w, c, wo) = (vec(attn.c_attn.weight.val()), vec(attn.qkv_conv.as_ref().unwrap().val()), vec(attn.c_proj.weight.val()));
        let b = attn.c_attn.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap();
        let bo = attn.c_proj.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap();
        // proj[s][f] = Σ_i x[s][i]·w[i][f] + b[f]; conv[s][f] = Σ_{j ≤ s} c[j][f]·proj[s − j][f].
        let proj: Vec<Vec<f32>> = (0..t).map(|s| (0..3 * d).map(|f| (0..d).map(|i| xs[s * d + i] * w[i * 3 * d + f]).sum::<f32>() + b[f]).collect()).collect();
        let conv: Vec<Vec<f32>> = (0..t).map(|s| (0..3 * d).map(|f| (0..3.min(s + 1)).map(|j| c[j * 3 * d + f] * proj[s - j][f]).sum()).collect()).collect();
        for s in 0..t {
            let scores: Vec<f32> = (0..=s).map(|u| (0..d).map(|i| conv[s][i] * conv[u][d + i]).sum::<f32>() / 2.0).collect();
            let top = scores.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = scores.iter().map(|a| (a - top).exp()).sum();
            let mixed: Vec<f32> = (0..d).map(|i| (0..=s).map(|u| (scores[u] - top).exp() / z * conv[u][2 * d + i]).sum()).collect();
            for o in 0..d {
                let want = (0..d).map(|i| mixed[i] * wo[i * d + o]).sum::<f32>() + bo[o];
                assert!((y[s * d + o] - want).abs() < 1e-4, "position {s}, feature {o}: {} vs {want}", y[s * d + o]);
            }
        }
    }

    #[test]
    fn qkv_conv_starts_as_gpt2_attention_and_reads_a_left_padded_row_as_unpadded() {
        let device = Device::flex();
        device.seed(10);
        let config = Gpt2Config { dropout: 0.0, position: Position::Rope, qkv_conv: 4, ..Gpt2Config::small(40, 2, 32, 4) };
        let model = config.init(&device);
        assert_eq!(model.num_params(), config.num_params() + 32, "the config's count, and the rotary placeholder wpe");
        assert_eq!(config.num_params(), Gpt2Config { qkv_conv: 0, ..config.clone() }.num_params() + 2 * 4 * 96);
        let ids = [3i64, 17, 5, 29, 11];
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let mut plain = model.clone();
        plain.h.iter_mut().for_each(|b| b.attn.qkv_conv = None);
        let at_init = max_diff(&hidden(&model, &ids, 0, &device), &hidden(&plain, &ids, 0, &device));
        assert!(at_init < 1e-6, "the identity convolution changed the hidden state by {at_init}");

        let model = with_random_conv(model, &device);
        let unpadded = hidden(&model, &ids, 0, &device);
        let padded_ids = Tensor::<2, Int>::from_data(TensorData::new([0i64, 0].iter().chain(&ids).copied().collect::<Vec<_>>(), [1, 7]), &device);
        let positions = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 0, 0, 1, 2, 3, 4], [1, 7]), &device);
        let key_mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false, false, true, true, true, true, true], [1, 7]), &device);
        let out = model.forward(Gpt2Input { embeds: model.embed(padded_ids), positions, key_mask: Some(key_mask), cache: None });
        let padded: Vec<f32> = out.hidden.into_data().try_to_vec::<f32>().unwrap();
        let diff = max_diff(&padded[2 * 32..], &unpadded);
        assert!(diff < 1e-4, "two pad tokens in front moved the hidden state by {diff}");
    }

    fn kv_cache_gives_the_full_pass_values(config: Gpt2Config) {
        let device = Device::flex();
        device.seed(4);
        let model = with_random_conv(config.init(&device), &device);
        let ids: Vec<i64> = (0..10).map(|i| (i * 7 % 40) as i64).collect();
        let full = hidden(&model, &ids, 0, &device);
        let tensor = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [1, v.len()]), &device);
        let mut out = model.forward(Gpt2Input {
            embeds: model.embed(tensor(ids[..6].to_vec())),
            positions: tensor((0..6).collect()),
            key_mask: None,
            cache: None,
        });
        for (i, &id) in ids.iter().enumerate().skip(6) {
            out = model.forward(Gpt2Input {
                embeds: model.embed(tensor(vec![id])),
                positions: tensor(vec![i as i64]),
                key_mask: None,
                cache: Some(out.cache),
            });
            let step: Vec<f32> = out.hidden.clone().into_data().try_to_vec::<f32>().unwrap();
            let diff = step.iter().zip(&full[i * 32..(i + 1) * 32]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "position {i}: cached {diff} off the full pass");
        }
    }


}
