//! The training loop both faces drive: `coconut train` (native, data-parallel over devices) and the
//! page's fine-tune (one WebGPU or CPU device, asynchronous read-back). A [`Trainer`] owns the model,
//! the optimizer and where the run is ([`TrainerState`]); the caller owns the data, validation,
//! logging and files.
//!
//! One policy for both:
//! - a stage switch at the start of an epoch gives a fresh optimizer (the official `reset_optimizer`)
//!   and, when it enters a new phase (stages past the last are one phase), a new best;
//! - a step's randomness (the uniform-stage draw of each shard, dropout masks) is seeded by
//!   (`seed`, step), so a resumed run takes the same steps;
//! - a batch is split into one shard per device when every device gets an item, else into
//!   `optim.grad_accum` micro-batches on the first device.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::curriculum::{Curriculum, Tokenized};
use crate::gpt2::Gpt2;
use crate::tokenizer::CoconutTokenizer;
use crate::train::{OptimConfig, epoch_batches_by_length, optimizer_step, optimizer_step_multi, training_batch};

/// Where a run is: the next optimizer step to take (a checkpoint's `trainer.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch_in_epoch: usize,
    pub global_step: usize,
    pub stage: usize,
    /// Best validation accuracy in the current phase (`best/` holds that model): a new phase starts
    /// a new best, so at the end `best/` is the best model of the final stage, the one evaluated
    /// with the method's number of thoughts.
    pub best_val_accuracy: Option<f64>,
    /// Seconds spent in this run so far (training and validation, across resumes).
    #[serde(default)]
    pub elapsed_s: f64,
}

pub struct Trainer {
    /// The model being trained, on the first device's autodiff backend.
    pub model: Gpt2,
    pub optim: ModuleOptimizer,
    pub state: TrainerState,
    optim_cfg: OptimConfig,
    seed: u64,
    /// The devices of a step (autodiff); more than one: data-parallel.
    devices: Vec<Device>,
    /// Stages past this one are one phase (every step is a thought).
    max_latent_stage: usize,
    /// Epochs in the run (the learning-rate decay counts back from the last; 0: no decay).
    epochs: usize,
}

impl Trainer {
    /// A trainer at `state` with a fresh optimizer; `devices[0]` is the model's.
    pub fn new(model: Gpt2, optim_cfg: OptimConfig, seed: u64, state: TrainerState, devices: Vec<Device>, max_latent_stage: usize) -> Self {
        assert!(!devices.is_empty(), "a trainer needs a device");
        Self { model, optim: optim_cfg.optimizer(), state, optim_cfg, seed, devices, max_latent_stage, epochs: 0 }
    }

    /// A run of `epochs` epochs, so that `optim.decay_epochs` can count back from its end.
    pub fn with_epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Continues with a saved optimizer state (a resumed run).
    pub fn with_optimizer(mut self, optim: ModuleOptimizer) -> Self {
        self.optim = optim;
        self
    }

    /// Enters `stage` for the current epoch: at the start of an epoch a stage switch resets the
    /// optimizer (when `optim.reset_optimizer`), and a new phase forgets the best accuracy.
    pub fn begin_epoch(&mut self, stage: usize) {
        let phase = |s: usize| s.min(self.max_latent_stage + 1);
        if phase(stage) != phase(self.state.stage) {
            self.state.best_val_accuracy = None;
        }
        if self.state.batch_in_epoch == 0 && self.state.global_step > 0 && stage != self.state.stage && self.optim_cfg.reset_optimizer {
            self.optim = self.optim_cfg.optimizer();
        }
        self.state.stage = stage;
    }

    /// The current epoch's batches of `data` (items of similar length together when `length_window` > 0).
    pub fn batches(&self, data: &[Tokenized], length_window: usize) -> Vec<Vec<usize>> {
        let lengths: Vec<usize> = data.iter().map(Tokenized::chain_len).collect();
        epoch_batches_by_length(&lengths, self.optim_cfg.batch_size, self.seed, self.state.epoch, length_window)
    }

    /// One optimizer step on the items `indices` of `data`, at the current stage. Returns the mean
    /// loss as a device tensor (read it back only when it is logged).
    pub fn step(&mut self, data: &[Tokenized], indices: &[usize], curriculum: &Curriculum, tok: &CoconutTokenizer) -> Tensor<1> {
        let (stage, step) = (self.state.stage, self.state.global_step);
        let multi = self.devices.len() > 1 && indices.len() >= self.devices.len();
        let parts = if multi { self.devices.len() } else { self.optim_cfg.grad_accum.max(1) };
        let shards: Vec<_> = indices
            .chunks(indices.len().div_ceil(parts).max(1))
            .enumerate()
            .map(|(j, ix)| {
                let device = if multi { &self.devices[j] } else { &self.devices[0] };
                training_batch(data, ix, curriculum, stage, tok, self.seed, step * 1024 + j, device)
            })
            .collect();
        self.devices[0].seed(self.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)); // dropout masks
        let lr = self.lr();
        let model = self.model.clone();
        let (model, loss) = if multi && shards.len() == self.devices.len() {
            optimizer_step_multi(model, &mut self.optim, &shards, &self.devices, curriculum, lr)
        } else {
            optimizer_step(model, &mut self.optim, &shards, curriculum, lr)
        };
        self.model = model;
        self.state.batch_in_epoch += 1;
        self.state.global_step += 1;
        loss
    }

    /// Closes the epoch with its validation accuracy; true when it is the phase's best so far.
    pub fn end_epoch(&mut self, val_accuracy: f64) -> bool {
        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        let best = self.state.best_val_accuracy.is_none_or(|b| val_accuracy > b);
        if best {
            self.state.best_val_accuracy = Some(val_accuracy);
        }
        best
    }

    /// Whether every weight is a finite number (one read-back per parameter: for checkpoints, not
    /// for every step). A step whose loss was finite can still make the weights overflow.
    pub fn weights_finite(&self) -> bool {
        struct Finite(Vec<Tensor<1, Bool>>);
        impl burn::module::ModuleVisitor for Finite {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                self.0.push(param.val().is_finite().all());
            }
        }
        let mut finite = Finite(Vec::new());
        self.model.visit(&mut finite);
        finite.0.into_iter().all(|t| t.into_scalar())
    }

    /// Devices a step is split over.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.optim_cfg.lr_at(self.state.global_step, self.state.epoch, self.epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curriculum::Variant;

    fn tiny() -> (Gpt2, CoconutTokenizer, Vec<Tokenized>, Device) {
        let device = Device::flex();
        device.seed(7);
        let tok = CoconutTokenizer::word_level(["Every wumpus is a yumpus Tom Is or ### ? ."]).unwrap();
        let config = crate::Gpt2Config { dropout: 0.0, n_positions: 64, ..crate::Gpt2Config::small(tok.vocab_size(), 1, 32, 2) };
        let item = crate::data::Item::text(
            "Every wumpus is a yumpus . Tom is a wumpus . Is Tom a yumpus or wumpus ?",
            &["Tom is a wumpus .", "Tom is a yumpus ."],
            "Tom is a yumpus .",
        );
        let data = vec![Tokenized::new(&item, &tok).unwrap(); 8];
        (config.init(&device.clone().autodiff()), tok, data, device.autodiff())
    }

    #[test]
    fn a_stage_switch_resets_the_optimizer_and_a_new_phase_the_best() {
        let (model, tok, data, device) = tiny();
        let optim = OptimConfig { lr: 1e-2, batch_size: 4, ..OptimConfig::default() };
        let mut t = Trainer::new(model, optim, 3, TrainerState::default(), vec![device], 2);
        let curriculum = Curriculum { variant: Variant::Coconut, max_latent_stage: 2, ..Curriculum::default() };
        for (epoch, stage) in [0, 0, 1, 3, 4].into_iter().enumerate() {
            t.begin_epoch(stage);
            let fresh = t.optim.into_bytes().unwrap().len() == OptimConfig::default().optimizer().into_bytes().unwrap().len();
            // The optimizer is fresh exactly at a stage switch (and before the first step).
            assert_eq!(fresh, epoch == 0 || [2, 3, 4].contains(&epoch), "epoch {epoch}");
            let batches = t.batches(&data, 0);
            assert_eq!(batches.len(), 2);
            for b in &batches {
                let loss: f32 = t.step(&data, b, &curriculum, &tok).into_scalar();
                assert!(loss.is_finite());
            }
            let best_before = t.state.best_val_accuracy;
            // Stages 3 and 4 are past the last (2): one phase, so the best carries from 3 to 4.
            let new_best = t.end_epoch(0.5 - 0.1 * epoch as f64);
            assert_eq!(new_best, best_before.is_none(), "epoch {epoch}: only a new phase's first epoch is a best here");
        }
        assert_eq!((t.state.epoch, t.state.global_step, t.state.batch_in_epoch), (5, 10, 0));
    }

    #[test]
    fn the_learning_rate_warms_up_holds_and_decays_over_the_last_epochs() {
        let optim = OptimConfig { lr: 1e-3, warmup_steps: 4, decay_epochs: 4, min_lr: 1e-4, ..OptimConfig::default() };
        // 10 epochs of 10 steps: warmup over steps 0-3, 1e-3 through epoch 5, then 4 epochs down to 1e-4.
        let lrs: Vec<f64> = (0..100).map(|s| optim.lr_at(s, s / 10, 10)).collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(lrs[0], 2.5e-4) && close(lrs[3], 1e-3) && close(lrs[59], 1e-3), "{lrs:?}");
        for (epoch, want) in [(6, 7.75e-4), (7, 5.5e-4), (8, 3.25e-4), (9, 1e-4)] {
            assert!((epoch * 10..epoch * 10 + 10).all(|s| close(lrs[s], want)), "epoch {epoch}: {}", lrs[epoch * 10]);
        }
        // No decay without it, or without knowing the run's length.
        assert!(close(OptimConfig { decay_epochs: 0, ..optim.clone() }.lr_at(99, 9, 10), 1e-3));
        assert!(close(optim.lr_at(99, 9, 0), 1e-3));
        // The trainer's next step uses the schedule at its own epoch.
        let (model, _, _, device) = tiny();
        let state = TrainerState { epoch: 8, global_step: 80, ..TrainerState::default() };
        assert!(close(Trainer::new(model, optim, 3, state, vec![device], 2).with_epochs(10).lr(), 3.25e-4));
    }

    #[test]
    fn muon_orthogonalises_the_block_matrices_and_adamw_trains_the_rest() {
        use crate::train::OptimizerKind;
        let (model, tok, data, device) = tiny();
        let optim = OptimConfig { optimizer: OptimizerKind::Muon, lr: 1e-2, weight_decay: 0.0, batch_size: 8, ..OptimConfig::default() };
        let before = model.clone();
        let mut t = Trainer::new(model, optim, 3, TrainerState::default(), vec![device], 2);
        let curriculum = Curriculum { variant: Variant::Coconut, max_latent_stage: 2, ..Curriculum::default() };
        t.begin_epoch(0);
        let b = t.batches(&data, 0).remove(0);
        t.step(&data, &b, &curriculum, &tok);
        let delta = |a: &Tensor<2>, b: &Tensor<2>| (b.clone() - a.clone()).into_data().try_to_vec::<f32>().unwrap();
        let (old, new) = (&before.h[0], &t.model.h[0]);
        // AdamW's first step moves each parameter with a gradient g by lr·|g| / (|g| + ε) (m / √v =
        // ±1 up to ε): the layer norms' gains, the biases. That is lr unless |g| is within a few
        // hundred ε of 0, which an element of a random model's gradient now and then is.
        let gain = delta(&old.ln_1.gamma.val().unsqueeze(), &new.ln_1.gamma.val().unsqueeze());
        assert!(gain.iter().all(|d| d.abs() / 1e-2 < 1.0 + 1e-4), "{gain:?}");
        let at_lr = gain.iter().filter(|d| (d.abs() / 1e-2 - 1.0).abs() < 0.05).count();
        assert!(at_lr * 10 >= gain.len() * 9, "{gain:?}");
        // Muon moves each block matrix by lr · 0.2·√max(A, B) · O, O the orthogonalised momentum:
        // Newton–Schulz puts O's nonzero singular values near 1 (none blown up), so the update's
        // largest singular value is ≈ lr · 0.2·√max(A, B) and its RMS ≤ 0.2·lr. (AdamW's ±lr step
        // would have RMS lr and a largest singular value of ~lr·√(A·B) for a low-rank gradient.)
        for (name, a, b) in [("c_attn", &old.attn.c_attn.weight, &new.attn.c_attn.weight), ("c_proj", &old.attn.c_proj.weight, &new.attn.c_proj.weight), ("c_fc", &old.mlp.c_fc.weight, &new.mlp.c_fc.weight), ("mlp.c_proj", &old.mlp.c_proj.weight, &new.mlp.c_proj.weight)] {
            let [rows, cols] = a.dims();
            let d = delta(&a.val(), &b.val());
            let rms = (d.iter().map(|x| x * x).sum::<f32>() / d.len() as f32).sqrt() / 1e-2;
            assert!((0.02..0.3).contains(&rms), "{name}: update RMS {rms} lr");
            // Largest singular value by power iteration on dᵀd.
            let mut v = vec![1.0f32; cols];
            let mut sigma = 0.0;
            for _ in 0..100 {
                let dv: Vec<f32> = (0..rows).map(|r| (0..cols).map(|c| d[r * cols + c] * v[c]).sum()).collect();
                let w: Vec<f32> = (0..cols).map(|c| (0..rows).map(|r| d[r * cols + c] * dv[r]).sum()).collect();
                let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
                sigma = (w.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() / v.iter().map(|x| x * x).sum::<f32>()).sqrt();
                v = w.iter().map(|x| x / norm).collect();
            }
            let unit = 1e-2 * 0.2 * (rows.max(cols) as f32).sqrt();
            assert!((0.6..1.3).contains(&(sigma / unit)), "{name}: largest singular value {} of lr·0.2·√max(A, B)", sigma / unit);
        }
    }
}
