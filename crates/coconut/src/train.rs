//! One training step of the curriculum, and validation accuracy: the parts the native trainer and
//! the page's fine-tune share. Run orchestration (epochs, checkpoints, metrics) is the caller's.

use burn::module::ParamGroup;
use burn::optim::{AdamWConfig, AdjustLrFn, GradientsParams, ModuleOptimizer, MuonConfig};
use burn::prelude::*;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::coconut::{self, DeviceBatch};
use crate::curriculum::{Curriculum, Tokenized, collate, epoch_order};
use crate::data::Item;
use crate::eval::answer_correct;
use crate::generate::generate_async;
use crate::gpt2::Gpt2;
use crate::tokenizer::CoconutTokenizer;

/// Which update rule trains the hidden-layer matrices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW for every parameter (the official code).
    #[default]
    Adamw,
    /// Muon (momentum, then Newton–Schulz orthogonalisation of the update) for the 2-D weights of
    /// the blocks (`c_attn`, `c_proj`, `c_fc`), AdamW for embeddings, biases and layer norms. The
    /// update's RMS is matched to AdamW's (Moonshot's 0.2·√max(A, B)), so `lr` means the same.
    Muon,
}

/// The block matrices Muon trains: every parameter path ending in one of these.
pub const MUON_MATRICES: [&str; 3] = ["c_attn.weight", "c_proj.weight", "c_fc.weight"];

/// Optimisation settings (defaults: the official runs: PyTorch's AdamW, lr 1e-4, weight decay 0.01,
/// eps 1e-8, no schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// `adamw` (default) or `muon` (Muon for the blocks' matrices, AdamW for the rest).
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f32,
    /// AdamW's epsilon, added to sqrt(v). PyTorch's default (1e-8, what the official code runs),
    /// not Burn's (1e-5): at 1e-5 every parameter whose gradient is below ~1e-5 (attention
    /// queries and keys of a model from scratch, early on) takes a step up to 10x too small.
    pub epsilon: f32,
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    pub grad_accum: usize,
    /// Linear warmup steps (0 = off).
    pub warmup_steps: usize,
    /// The run's last `decay_epochs` epochs step the learning rate down linearly, one step an
    /// epoch, to `min_lr` in the final epoch (warmup-stable-decay; 0 = constant after warmup).
    pub decay_epochs: usize,
    /// The learning rate of the final epoch when `decay_epochs` > 0.
    pub min_lr: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f32,
    /// Fresh optimizer state at every stage switch (the official `reset_optimizer`).
    pub reset_optimizer: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self { optimizer: OptimizerKind::Adamw, lr: 1e-4, weight_decay: 0.01, epsilon: 1e-8, batch_size: 32, grad_accum: 1, warmup_steps: 0, decay_epochs: 0, min_lr: 0.0, grad_clip: 0.0, reset_optimizer: true }
    }
}

impl OptimConfig {
    pub fn optimizer(&self) -> ModuleOptimizer {
        let clip = (self.grad_clip > 0.0).then(|| burn::grad_clipping::GradientClippingConfig::Norm(self.grad_clip));
        let adamw = AdamWConfig::new().with_weight_decay(self.weight_decay).with_epsilon(self.epsilon).with_grad_clipping(clip.clone()).init();
        match self.optimizer {
            OptimizerKind::Adamw => adamw,
            OptimizerKind::Muon => {
                let muon = MuonConfig::new()
                    .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(self.weight_decay)))
                    .with_adjust_lr_fn(AdjustLrFn::MatchRmsAdamW)
                    .build();
                let group = ParamGroup::from_any_predicates(MUON_MATRICES.to_vec());
                adamw.with_group(group, muon, clip.map(|c| c.init()))
            }
        }
    }

    /// Learning rate at optimizer step `step` (0-based) of epoch `epoch` (0-based) of a run of
    /// `epochs` epochs: linear warmup over `warmup_steps`, then `lr`, then over the last
    /// `decay_epochs` epochs a linear descent to `min_lr` (epoch `epochs - decay_epochs + i` trains
    /// at `lr + (min_lr - lr) * (i + 1) / decay_epochs`).
    pub fn lr_at(&self, step: usize, epoch: usize, epochs: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = self.decay_epochs.min(epochs);
        let start = epochs - decay;
        if decay == 0 || epoch < start {
            return self.lr;
        }
        let done = (epoch - start + 1).min(decay) as f64 / decay as f64;
        self.lr + (self.min_lr - self.lr) * done
    }
}

/// Tokenizes a dataset (errors name the item).
pub fn tokenize_items(items: &[Item], tok: &CoconutTokenizer) -> Result<Vec<Tokenized>, String> {
    items.iter().enumerate().map(|(i, it)| Tokenized::new(it, tok).map_err(|e| format!("item {i}: {e}"))).collect()
}

/// The batches of one epoch, as item indices, in the deterministic order of (`seed`, `epoch`).
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    epoch_order(n, seed, epoch).chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// The batches of one epoch with items of similar length together, so a batch pads less: the
/// epoch's order (as in [`epoch_batches`]) is cut into windows of `window` batches, each window is
/// sorted by `lengths` and cut into batches, and the batches are shuffled (seeded by `seed`,
/// `epoch`). Every item is in exactly one batch. `window` 1 keeps [`epoch_batches`]' batches, each
/// sorted (a batch split over devices then gives each device items of similar length); 0 is
/// [`epoch_batches`] itself.
pub fn epoch_batches_by_length(lengths: &[usize], batch_size: usize, seed: u64, epoch: usize, window: usize) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let batch_size = batch_size.max(1);
    if window == 0 {
        return epoch_batches(lengths.len(), batch_size, seed, epoch);
    }
    let mut batches: Vec<Vec<usize>> = epoch_order(lengths.len(), seed, epoch)
        .chunks(batch_size * window)
        .flat_map(|w| {
            let mut w = w.to_vec();
            w.sort_by_key(|&i| lengths[i]);
            w.chunks(batch_size).map(<[usize]>::to_vec).collect::<Vec<_>>()
        })
        .collect();
    if window > 1 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_B47C ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        batches.shuffle(&mut rng);
    }
    batches
}

/// The collated training batch of `indices` at `stage`; the uniform-stage draw is seeded by
/// (`seed`, `step`) so a resumed run builds the same batch.
#[allow(clippy::too_many_arguments)]
pub fn training_batch(
    data: &[Tokenized],
    indices: &[usize],
    curriculum: &Curriculum,
    stage: usize,
    tok: &CoconutTokenizer,
    seed: u64,
    step: usize,
    device: &Device,
) -> DeviceBatch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let (seqs, frontiers): (Vec<_>, Vec<_>) = indices
        .iter()
        .map(|&i| {
            let e = curriculum.example(&data[i], stage, tok.special, &mut rng);
            ((e.input_ids, e.labels), e.thought_frontiers)
        })
        .unzip();
    let batch = DeviceBatch::new(&collate(&seqs, tok.special), device);
    if curriculum.frontier_weight > 0.0 { batch.with_thought_frontiers(&frontiers, tok.vocab_size()) } else { batch }
}

/// Forward + loss of one batch (on an autodiff device the result can be `backward()`ed).
pub fn batch_loss(model: &Gpt2, batch: &DeviceBatch, curriculum: &Curriculum) -> Tensor<1> {
    let out = coconut::forward(model, batch, curriculum.variant.feeds_back());
    let loss = coconut::lm_loss(model, out.hidden, batch.labels.clone().expect("training batches have labels"));
    match (&batch.thought_frontiers, out.thoughts.is_empty()) {
        (Some(targets), false) if curriculum.frontier_weight > 0.0 => {
            loss + coconut::frontier_loss(model, &out.thoughts, targets.clone()).mul_scalar(curriculum.frontier_weight)
        }
        _ => loss,
    }
}

/// One optimizer step over `micro` micro-batches (gradient accumulation). Returns the updated
/// model and the mean loss as a device tensor (read it back only when logging).
pub fn optimizer_step(model: Gpt2, optim: &mut ModuleOptimizer, micro: &[DeviceBatch], curriculum: &Curriculum, lr: f64) -> (Gpt2, Tensor<1>) {
    let mut acc = burn::optim::GradientsAccumulator::new();
    let mut total: Option<Tensor<1>> = None;
    let scale = 1.0 / micro.len() as f64;
    for b in micro {
        let loss = batch_loss(&model, b, curriculum).mul_scalar(scale);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        acc.accumulate(&model, grads);
        let detached = loss.detach();
        total = Some(match total {
            Some(t) => t + detached,
            None => detached,
        });
    }
    let model = optim.step(lr, model, acc.grads());
    (model, total.expect("at least one micro-batch"))
}

/// Answer accuracy of greedy decoding after the stage's thoughts, batched.
#[allow(clippy::too_many_arguments)]
pub fn accuracy(
    model: &Gpt2,
    items: &[Item],
    data: &[Tokenized],
    curriculum: &Curriculum,
    k: usize,
    tok: &CoconutTokenizer,
    batch_size: usize,
    max_new_tokens: usize,
    device: &Device,
) -> f64 {
    burn::tensor::read_sync(accuracy_async(model, items, data, curriculum, k, tok, batch_size, max_new_tokens, device)).expect("tensor read-back")
}

/// The validation items of a curriculum stage grouped by the thoughts the official evaluation gives
/// each (`Curriculum::eval_thoughts`; they differ between items when `pad_latent_to_max = false`):
/// `k -> item indices`.
pub fn thought_groups(curriculum: &Curriculum, stage: usize, data: &[Tokenized]) -> std::collections::BTreeMap<usize, Vec<usize>> {
    let mut groups = std::collections::BTreeMap::<usize, Vec<usize>>::new();
    for (i, t) in data.iter().enumerate() {
        groups.entry(curriculum.eval_thoughts(stage, t.steps.len())).or_default().push(i);
    }
    groups
}

/// Answer accuracy at a curriculum stage, each item asked with its own number of thoughts
/// (`thought_groups`). Returns the accuracy and the largest k used.
#[allow(clippy::too_many_arguments)]
pub fn accuracy_at_stage(
    model: &Gpt2,
    items: &[Item],
    data: &[Tokenized],
    curriculum: &Curriculum,
    stage: usize,
    tok: &CoconutTokenizer,
    batch_size: usize,
    max_new_tokens: usize,
    device: &Device,
) -> (f64, usize) {
    let groups = thought_groups(curriculum, stage, data);
    let mut correct = 0.0;
    for (&k, indices) in &groups {
        let group_items: Vec<Item> = indices.iter().map(|&i| items[i].clone()).collect();
        let group_data: Vec<Tokenized> = indices.iter().map(|&i| data[i].clone()).collect();
        correct += indices.len() as f64 * accuracy(model, &group_items, &group_data, curriculum, k, tok, batch_size, max_new_tokens, device);
    }
    (correct / items.len().max(1) as f64, groups.keys().max().copied().unwrap_or(0))
}

/// `accuracy` with asynchronous read-back (the page's fine-tune).
#[allow(clippy::too_many_arguments)]
pub async fn accuracy_async(
    model: &Gpt2,
    items: &[Item],
    data: &[Tokenized],
    curriculum: &Curriculum,
    k: usize,
    tok: &CoconutTokenizer,
    batch_size: usize,
    max_new_tokens: usize,
    device: &Device,
) -> Result<f64, String> {
    let mut correct = 0;
    for (chunk_items, chunk) in items.chunks(batch_size.max(1)).zip(data.chunks(batch_size.max(1))) {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|t| curriculum.prompt(t, k, tok.special)).collect();
        let outs = generate_async(model, &prompts, tok.special, max_new_tokens, curriculum.variant.feeds_back(), device).await?;
        correct += chunk_items.iter().zip(outs).filter(|(it, g)| answer_correct(&tok.decode(&g.tokens), it)).count();
    }
    Ok(correct as f64 / items.len().max(1) as f64)
}

/// Data-parallel optimizer step through Burn's multi-device support: the model is forked onto each
/// device, each computes the gradients of its shard (`shards[i]` lives on `devices[i]`), and
/// `ModuleOptimizer::step_multi` sums them (Burn's `MultiGradientsParams`) and updates the model.
/// Equals `optimizer_step` over the same shards as micro-batches on one device.
pub fn optimizer_step_multi(
    model: Gpt2,
    optim: &mut ModuleOptimizer,
    shards: &[DeviceBatch],
    devices: &[Device],
    curriculum: &Curriculum,
    lr: f64,
) -> (Gpt2, Tensor<1>) {
    assert_eq!(shards.len(), devices.len(), "one shard per device");
    let scale = 1.0 / shards.len() as f64;
    let results: Vec<(GradientsParams, Tensor<1>)> = std::thread::scope(|s| {
        let workers: Vec<_> = shards
            .iter()
            .zip(devices)
            .enumerate()
            .map(|(j, (shard, device))| {
                let replica = replica(model.clone(), device);
                s.spawn(move || {
                    in_worker_pool(j, || {
                        let loss = batch_loss(&replica, shard, curriculum).mul_scalar(scale);
                        let grads = GradientsParams::from_grads(loss.backward(), &replica);
                        (grads, loss.detach())
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("device worker")).collect()
    });
    let mut multi = burn::optim::MultiGradientsParams::default();
    let mut total: Option<Tensor<1>> = None;
    for ((grads, loss), device) in results.into_iter().zip(devices) {
        multi.grads.push((grads, device.clone()));
        let loss = loss.to_device(&model.device());
        total = Some(match total {
            Some(t) => t + loss,
            None => loss,
        });
    }
    // The update runs between the workers' passes, with every core idle but one: give it them all.
    let model = in_step_pool(|| optim.step_multi(lr, model, multi));
    (model, total.expect("at least one device"))
}

/// `model` on `device` with every parameter a new autodiff leaf, for one worker's step: Burn's
/// `Module::fork` without the graph node fork leaves behind. `fork` moves a parameter and then
/// detaches it, which records the move in the parameter's autodiff graph; a parameter that never gets
/// a gradient (the rotary model's unused `wpe`) is never replaced by the optimizer, so its graph grows
/// by one node a worker a step, and every backward's orphan sweep walks it (a 2-worker run slowed
/// from ~300 to ~50 samples/s over a day). An untracked copy (`set_require_grad(false)`; `detach`
/// would keep the tensor tracked) moves without a record.
fn replica(model: Gpt2, device: &Device) -> Gpt2 {
    struct Replica<'a>(&'a Device);
    impl burn::module::ModuleMapper for Replica<'_> {
        fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
            param.map(|t| {
                let tracked = t.is_require_grad();
                let t = t.set_require_grad(false).to_device(self.0);
                if tracked { t.require_grad() } else { t }
            })
        }
    }
    model.map(&mut Replica(device))
}

/// Runs the data-parallel optimizer update in a thread pool of every core: it runs while the
/// workers wait, and its matmuls (Muon's Newton–Schulz iterations) then use the idle cores.
#[cfg(not(target_arch = "wasm32"))]
fn in_step_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        rayon::ThreadPoolBuilder::new().num_threads(cores).build().expect("the update's thread pool")
    });
    pool.install(f)
}

#[cfg(target_arch = "wasm32")]
fn in_step_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    f()
}

/// Runs worker `j`'s step in a thread pool of its own. The CPU backend parallelises its kernels
/// (batched matmuls, GEMM) on rayon's pool; workers sharing the global pool of a 1-thread-per-worker
/// run would queue behind each other there. Each pool has the global pool's thread count.
#[cfg(not(target_arch = "wasm32"))]
fn in_worker_pool<R: Send>(j: usize, f: impl FnOnce() -> R + Send) -> R {
    static POOLS: std::sync::Mutex<Vec<std::sync::Arc<rayon::ThreadPool>>> = std::sync::Mutex::new(Vec::new());
    let pool = {
        let mut pools = POOLS.lock().expect("worker pools");
        while pools.len() <= j {
            let threads = rayon::current_num_threads();
            pools.push(std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a worker thread pool")));
        }
        pools[j].clone()
    };
    pool.install(f)
}

#[cfg(target_arch = "wasm32")]
fn in_worker_pool<R: Send>(_: usize, f: impl FnOnce() -> R + Send) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_has_the_weights_as_new_leaves_and_keeps_frozen_ones_frozen() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let config = crate::Gpt2Config { dropout: 0.0, ..crate::Gpt2Config::small(11, 1, 16, 2) };
        let mut model = config.init(&device);
        model.wpe = model.wpe.set_require_grad(false);
        let copy = replica(model.clone(), &device);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values(copy.wte.val()), values(model.wte.val()));
        assert_eq!(values(copy.h[0].mlp.c_fc.weight.val()), values(model.h[0].mlp.c_fc.weight.val()));
        assert!(copy.wte.val().is_require_grad() && !copy.wpe.val().is_require_grad());
        // Gradients reach the replica's leaves, not the model it was made from.
        let grads = (copy.wte.val() * 2.0).sum().backward();
        let grad = copy.wte.val().grad(&grads).expect("the replica's weight is a leaf");
        assert!(values(grad).iter().all(|&g| g == 2.0));
        assert!(model.wte.val().grad(&grads).is_none());
    }

    /// Padded tokens (batch size × longest item) summed over the batches.
    fn padded(batches: &[Vec<usize>], lengths: &[usize]) -> usize {
        batches.iter().map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0)).sum()
    }

    #[test]
    fn length_grouped_batches_hold_every_item_once_and_pad_less() {
        // Question lengths spread like ProsQA's (60-400 tokens), in a fixed pseudo-random order.
        let lengths: Vec<usize> = (0..1000).map(|i| 60 + (i * 7919 % 341)).collect();
        let random = epoch_batches(lengths.len(), 16, 3, 5);
        for window in [0, 1, 8, 64] {
            let grouped = epoch_batches_by_length(&lengths, 16, 3, 5, window);
            let mut seen: Vec<usize> = grouped.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "window {window}: every item exactly once");
            assert!(grouped.iter().all(|b| b.len() <= 16) && grouped.iter().filter(|b| b.len() < 16).count() <= 1);
            assert_eq!(grouped, epoch_batches_by_length(&lengths, 16, 3, 5, window), "deterministic in (seed, epoch)");
            assert_ne!(grouped, epoch_batches_by_length(&lengths, 16, 3, 6, window), "a new order each epoch");
        }
        // Window 0 is the random batches; window 1 keeps their contents.
        assert_eq!(epoch_batches_by_length(&lengths, 16, 3, 5, 0), random);
        let same: Vec<Vec<usize>> = epoch_batches_by_length(&lengths, 16, 3, 5, 1)
            .into_iter()
            .map(|mut b| {
                b.sort_unstable();
                b
            })
            .collect();
        let mut plain = random.clone();
        plain.iter_mut().for_each(|b| b.sort_unstable());
        assert_eq!(same, plain);
        // Windows of 64 batches leave at most a fifth of the random batches' padding.
        let real: usize = lengths.iter().sum();
        let (before, after) = (padded(&random, &lengths), padded(&epoch_batches_by_length(&lengths, 16, 3, 5, 64), &lengths));
        assert!(after < real + (before - real) / 5, "padding {} -> {} tokens over {real} real", before - real, after - real);
    }
}
