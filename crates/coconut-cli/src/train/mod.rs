//! `coconut train`: the Coconut curriculum from a TOML config, with resumable checkpoints.
//!
//! Output directory: `config.toml` (the run's config), `metrics.jsonl`, `last/` (model checkpoint +
//! `optimizer.bpk` + `trainer.json`, written atomically every `checkpoint_every` steps and at every
//! epoch end), `best/` (the best validation accuracy), `epochs/epoch-N/` (the model after N epochs,
//! with `run.keep_epochs`). `--resume DIR` continues exactly: the data,
//! batch order, uniform-stage draws and dropout masks are functions of (seed, epoch, step), and the
//! optimizer state is restored, so a killed and resumed run ends with the weights of one that was not.
//!
//! The loop itself is the core's [`Trainer`] (the page's fine-tune drives the same one); this
//! module does the files, the progress bar and the metrics.

mod config;
mod data;
mod init;
mod run_dir;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use coconut::checkpoint::Checkpoint;
use coconut::curriculum::Tokenized;
use coconut::train::{accuracy_at_stage, tokenize_items};
use coconut::trainer::{Trainer, TrainerState};
use coconut::{CoconutTokenizer, Gpt2Config};
use indicatif::{ProgressBar, ProgressStyle};

pub use config::TrainConfig;
use data::DataPlan;
use run_dir::{RunLock, load_last, remove_run, save_last, truncate_metrics};

/// What `coconut train` was asked to do.
pub struct RunArgs {
    pub config: PathBuf,
    pub out: PathBuf,
    pub resume: Option<PathBuf>,
    /// Replace the run `out` holds (its own files only).
    pub overwrite: bool,
    /// Resume with a config.toml that differs from the checkpoint's.
    pub allow_config_change: bool,
    /// The official ProsQA sets (never trained on).
    pub official_data: PathBuf,
    /// Stop (with a resumable checkpoint) after this many seconds of this invocation.
    pub time_budget: Option<f64>,
}

/// A run being trained: its config, files and clocks.
struct Run {
    cfg: TrainConfig,
    out: PathBuf,
    config: Gpt2Config,
    tok: CoconutTokenizer,
    metrics: File,
    bar: ProgressBar,
    /// Training time since the last `add_elapsed`.
    clock: Instant,
    started: Instant,
    time_budget: Option<f64>,
    _lock: RunLock,
}

/// How an epoch's step loop ended.
enum EpochEnd {
    Done,
    OutOfTime,
}

/// Trains on `devices[0]`, or data-parallel over all of `devices` (each batch split into one shard
/// per device, gradients summed by Burn's multi-device optimizer step).
pub fn train(args: &RunArgs, devices: Vec<Device>) -> Result<()> {
    let devices: Vec<Device> = devices.into_iter().map(|d| d.autodiff()).collect();
    let (out, lock, cfg) = open_run(args)?;
    let plan = DataPlan::new(&cfg.data, &args.official_data)?;
    let (config, tok, mut trainer) = start_or_resume(args, &cfg, &devices)?;
    let first = tokenize_items(&plan.train, &tok).map_err(anyhow::Error::msg)?;
    let val = tokenize_items(&plan.val, &tok).map_err(anyhow::Error::msg)?;
    check_fits(&cfg, &config, &first, &val)?;
    let lock = match lock {
        Some(lock) => lock,
        None => create_run_dir(args, &out, &cfg)?,
    };
    let mut run = Run::new(cfg, out, (config, tok), &trainer, &plan, args, lock)?;
    let mut drawn: Option<Vec<Tokenized>> = None;
    while trainer.state.epoch < run.cfg.run.epochs {
        let epoch = trainer.state.epoch;
        trainer.begin_epoch(run.cfg.stage_of_epoch(epoch));
        if plan.draws_new() {
            drawn = plan.epoch_items(epoch)?.map(|items| tokenize_items(&items, &run.tok).map_err(anyhow::Error::msg)).transpose()?;
            if let Some(data) = &mut drawn {
                let listings = plan.listings(epoch, data.len());
                for (t, listing) in data.iter_mut().zip(listings) {
                    t.listing = listing;
                }
                check_fits(&run.cfg, &run.config, data, &val)?;
            }
        }
        if let EpochEnd::OutOfTime = run.train_epoch(&mut trainer, drawn.as_deref().unwrap_or(&first))? {
            return Ok(());
        }
        run.end_epoch(&mut trainer, &plan, &val)?;
    }
    run.bar.finish();
    eprintln!(
        "done: {} in {:.0} s (best validation accuracy at the final stage {:.1}%)",
        run.out.display(),
        trainer.state.elapsed_s,
        100.0 * trainer.state.best_val_accuracy.unwrap_or(0.0)
    );
    Ok(())
}

/// The run directory and its config: a resumed run is locked before its state is read; a new one
/// is only checked (nothing is written until its inputs are valid).
fn open_run(args: &RunArgs) -> Result<(PathBuf, Option<RunLock>, TrainConfig)> {
    let resume = args.resume.as_deref();
    let out = resume.unwrap_or(&args.out).to_path_buf();
    let lock = match resume {
        Some(dir) if dir.join("last").is_dir() => Some(RunLock::acquire(dir)?),
        Some(dir) => bail!("--resume {}: no training run there (no last/ checkpoint)", dir.display()),
        None => None,
    };
    let config_path = resume.map_or(args.config.clone(), |d| d.join("config.toml"));
    let cfg = TrainConfig::load(&config_path).context(if resume.is_some() { "resuming: the run's config.toml" } else { "the training config" })?;
    cfg.validate().with_context(|| format!("{} is not a valid training config", config_path.display()))?;
    if resume.is_none() && !args.overwrite && (out.join("metrics.jsonl").exists() || out.join("last").exists()) {
        bail!(
            "{} already holds a training run: continue it with `--resume {0}`, replace it with `--overwrite`, or choose another --out (nothing was changed)",
            out.display()
        );
    }
    if !args.official_data.join("prosqa_test.json").exists() && cfg.data.dataset == "prosqa" {
        eprintln!(
            "warning: {} has no official ProsQA sets: generated training questions are not checked against them (--official-data)",
            args.official_data.display()
        );
    }
    Ok((out, lock, cfg))
}

/// The model, tokenizer and trainer at the run's start, or where `last/` left it.
fn start_or_resume(args: &RunArgs, cfg: &TrainConfig, devices: &[Device]) -> Result<(Gpt2Config, CoconutTokenizer, Trainer)> {
    let new = |model, state| Trainer::new(model, cfg.optim.clone(), cfg.run.seed, state, devices.to_vec(), cfg.curriculum.max_latent_stage).with_epochs(cfg.run.epochs);
    match args.resume.as_deref() {
        None => {
            let (config, model, tok) = init::initial_model(cfg, &devices[0])?;
            if cfg.run.start_epoch >= cfg.run.epochs {
                bail!("run.start_epoch = {} leaves no epoch to train (run.epochs = {})", cfg.run.start_epoch, cfg.run.epochs);
            }
            let stage = cfg.stage_of_epoch(cfg.run.start_epoch);
            let state = TrainerState { epoch: cfg.run.start_epoch, stage, ..TrainerState::default() };
            Ok((config, tok, new(model, state)))
        }
        Some(dir) => {
            let (ckpt, optimizer, state) = load_last(dir, cfg, args.allow_config_change)?;
            let model = ckpt.model(&devices[0])?.train();
            let optim = cfg
                .optim
                .optimizer()
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(optimizer))
                .map_err(|e| anyhow::anyhow!("resuming: {}: {e}", dir.join("last").join(run_dir::OPTIMIZER_FILE).display()))?;
            eprintln!("resuming at epoch {}, batch {} (step {})", state.epoch, state.batch_in_epoch, state.global_step);
            truncate_metrics(&dir.join("metrics.jsonl"), state.global_step)?;
            Ok((ckpt.config, ckpt.tokenizer, new(model, state).with_optimizer(optim)))
        }
    }
}

/// Every training sequence with its thoughts, and every validation question with its thoughts and
/// the validation's generation budget, fits the model's positions. (The budget is no training
/// sequence's concern: a search listing may be longer than any generated answer.)
fn check_fits(cfg: &TrainConfig, config: &Gpt2Config, data: &[Tokenized], val: &[Tokenized]) -> Result<()> {
    let c = &cfg.curriculum;
    let with_thoughts = |t: &Tokenized| t.chain_len() + 2 + c.max_latent_stage * c.c_thought;
    let fits = |items: &[Tokenized], extra: usize, what: &str| -> Result<()> {
        let longest = items.iter().map(|t| with_thoughts(t) + extra).max().unwrap_or(0);
        if longest > config.n_positions {
            bail!("{what} reach {longest} positions, more than the model's n_positions = {}", config.n_positions);
        }
        Ok(())
    };
    fits(data, 0, "training sequences (with their thoughts)")?;
    fits(val, cfg.run.eval_max_new_tokens, "validation questions (with their thoughts and eval_max_new_tokens)")
}

/// A new run's directory, written only now that its inputs are valid: locked, emptied of an old
/// run's files with `--overwrite`, with the config it trains.
fn create_run_dir(args: &RunArgs, out: &std::path::Path, cfg: &TrainConfig) -> Result<RunLock> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let lock = RunLock::acquire(out)?;
    if args.overwrite {
        remove_run(out)?;
    }
    let config_toml = out.join("config.toml");
    std::fs::write(&config_toml, toml::to_string(cfg)?).with_context(|| format!("cannot write {}", config_toml.display()))?;
    Ok(lock)
}

impl Run {
    /// Announces the run and opens its metrics log and progress bar.
    fn new(cfg: TrainConfig, out: PathBuf, model: (Gpt2Config, CoconutTokenizer), trainer: &Trainer, plan: &DataPlan, args: &RunArgs, lock: RunLock) -> Result<Self> {
        let (config, tok) = model;
        let (workers, questions) = (trainer.devices(), plan.train.len());
        if workers > 1 && config.dropout > 0.0 {
            eprintln!(
                "note: dropout {} with {workers} workers: their dropout masks depend on thread timing, so this run is not bit-reproducible (--devices 1 is)",
                config.dropout
            );
        }
        let steps_per_epoch = questions.div_ceil(cfg.optim.batch_size.max(1));
        eprintln!(
            "training {} on {workers} device(s) ({} layers, d={}, {:.2}M parameters, vocab {}) on {questions} {} questions, {} epochs x {steps_per_epoch} steps, variant {}",
            out.display(),
            config.n_layer,
            config.n_embd,
            config.num_params() as f64 / 1e6,
            config.vocab_size,
            cfg.data.dataset,
            cfg.run.epochs,
            cfg.curriculum.variant.name()
        );
        let metrics_path = out.join("metrics.jsonl");
        let metrics =
            std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path).with_context(|| metrics_path.display().to_string())?;
        let total = cfg.run.epochs.saturating_sub(cfg.run.start_epoch) * steps_per_epoch;
        let bar = ProgressBar::new(total as u64).with_position(trainer.state.global_step as u64);
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, ETA {eta} | {msg}").expect("template"));
        let now = Instant::now();
        Ok(Self { cfg, out, config, tok, metrics, bar, clock: now, started: now, time_budget: args.time_budget, _lock: lock })
    }

    /// Moves the time since the last call into the run's elapsed time.
    fn add_elapsed(&mut self, state: &mut TrainerState) {
        state.elapsed_s += self.clock.elapsed().as_secs_f64();
        self.clock = Instant::now();
    }

    /// The rest of the current epoch's steps; checkpoints every `checkpoint_every` steps and when
    /// the time budget runs out.
    fn train_epoch(&mut self, trainer: &mut Trainer, data: &[Tokenized]) -> Result<EpochEnd> {
        let curriculum = self.cfg.curriculum_of_epoch(trainer.state.epoch);
        let batches = trainer.batches(data, self.cfg.data.length_window);
        let mut window = (Instant::now(), 0usize);
        while trainer.state.batch_in_epoch < batches.len() {
            let indices = &batches[trainer.state.batch_in_epoch];
            let lr = trainer.lr();
            let loss = trainer.step(data, indices, &curriculum, &self.tok);
            window.1 += indices.len();
            self.bar.inc(1);
            let (step, epoch_done) = (trainer.state.global_step, trainer.state.batch_in_epoch == batches.len());
            if step % self.cfg.run.log_every.max(1) == 0 || epoch_done {
                let loss: f32 = loss.into_scalar();
                self.check_finite(loss, &trainer.state)?;
                let sps = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                window = (Instant::now(), 0);
                let (epoch, stage) = (trainer.state.epoch, trainer.state.stage);
                let phase = self.cfg.data.pre_curriculum_stage(epoch).map_or_else(|| format!("stage {stage}"), str::to_string);
                self.bar.set_message(format!("epoch {epoch} {phase} loss {loss:.4} {sps:.1} samples/s"));
                let time_s = trainer.state.elapsed_s + self.clock.elapsed().as_secs_f64();
                let row = serde_json::json!({"step": step, "epoch": epoch, "stage": stage, "loss": loss, "lr": lr, "samples_per_s": sps, "time_s": time_s});
                writeln!(self.metrics, "{row}")?;
            }
            if epoch_done {
                break;
            }
            if step % self.cfg.run.checkpoint_every.max(1) == 0 {
                self.save_last(trainer)?;
            }
            if self.time_budget.is_some_and(|b| self.started.elapsed().as_secs_f64() >= b) {
                self.save_last(trainer)?;
                self.bar.finish_and_clear();
                let s = &trainer.state;
                eprintln!(
                    "time budget of {:.0} s reached at step {} (epoch {}, batch {}): saved {}; continue with `--resume {}`",
                    self.time_budget.unwrap_or(0.0),
                    s.global_step,
                    s.epoch,
                    s.batch_in_epoch,
                    self.out.join("last").display(),
                    self.out.display()
                );
                return Ok(EpochEnd::OutOfTime);
            }
        }
        Ok(EpochEnd::Done)
    }

    /// A non-finite loss stops the run, naming the checkpoint that is kept.
    fn check_finite(&self, loss: f32, state: &TrainerState) -> Result<()> {
        if loss.is_finite() {
            return Ok(());
        }
        bail!("loss is {loss} at step {} (epoch {}); stopping. {}", state.global_step, state.epoch, self.what_is_kept())
    }

    /// Epoch end: validation accuracy with the stage's thoughts, `best/` and `last/`.
    fn end_epoch(&mut self, trainer: &mut Trainer, plan: &DataPlan, val: &[Tokenized]) -> Result<()> {
        let (epoch, stage) = (trainer.state.epoch, trainer.state.stage);
        let eval_model = trainer.model.valid();
        let device = eval_model.device();
        let run = &self.cfg.run;
        let (acc, k) =
            accuracy_at_stage(&eval_model, &plan.val, val, &self.cfg.curriculum, stage, &self.tok, run.eval_batch_size, run.eval_max_new_tokens, &device);
        self.add_elapsed(&mut trainer.state);
        let row = serde_json::json!({"step": trainer.state.global_step, "epoch": epoch, "stage": stage, "val_accuracy": acc, "k": k, "time_s": trainer.state.elapsed_s});
        writeln!(self.metrics, "{row}")?;
        self.bar.println(format!("epoch {epoch} (stage {stage}, k={k}): validation accuracy {:.1}%", 100.0 * acc));
        self.check_weights(trainer)?;
        let (is_best, keep) = (trainer.end_epoch(acc), self.cfg.run.keep_epochs);
        if is_best || keep {
            let checkpoint = Checkpoint::from_model(eval_model, &self.config, self.tok.clone(), "coconut train")?
                .trained_for(self.cfg.trained_for(stage, &self.tok));
            if is_best {
                checkpoint.save(&self.out.join("best"))?;
            }
            if keep {
                checkpoint.save(&self.out.join("epochs").join(format!("epoch-{}", trainer.state.epoch)))?;
            }
        }
        self.save_last(trainer)
    }

    /// Weights that overflowed stop the run before they overwrite a checkpoint.
    fn check_weights(&self, trainer: &Trainer) -> Result<()> {
        if trainer.weights_finite() {
            return Ok(());
        }
        bail!(
            "the weights are no longer finite numbers after step {} (epoch {}); stopping. {}",
            trainer.state.global_step,
            trainer.state.epoch,
            self.what_is_kept()
        )
    }

    /// After a run stops on non-finite numbers: which checkpoint is the last good one.
    fn what_is_kept(&self) -> String {
        let last = self.out.join("last");
        if last.join(run_dir::STATE_FILE).exists() {
            format!("The last good checkpoint is {} (lower optim.lr or set optim.grad_clip)", last.display())
        } else {
            "No checkpoint was written before it (lower optim.lr or set optim.grad_clip)".to_string()
        }
    }

    fn save_last(&mut self, trainer: &mut Trainer) -> Result<()> {
        self.check_weights(trainer)?;
        self.add_elapsed(&mut trainer.state);
        save_last(&self.out, &self.config, &trainer.model, &self.tok, &trainer.optim, &trainer.state, &self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::TrainConfig;

    fn tokens(question: usize, steps: usize) -> Tokenized {
        Tokenized { question: vec![1; question], steps: vec![vec![2; steps]], answer: vec![3; 4], listing: true, frontiers: vec![] }
    }

    #[test]
    fn a_long_training_listing_fits_without_the_validation_budget() {
        // tiny-overfit: 6 thoughts, eval_max_new_tokens = 24. A 100-position model takes a training
        // sequence of 80 + 2 markers + 6 thoughts = 88 positions, and a validation question only as
        // long as its 24 generated tokens still fit.
        let cfg = TrainConfig::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        assert_eq!((cfg.curriculum.max_latent_stage * cfg.curriculum.c_thought, cfg.run.eval_max_new_tokens), (6, 24));
        let config = Gpt2Config { n_positions: 100, ..Gpt2Config::small(10, 1, 8, 2) };
        let (long, short) = (tokens(36, 40), tokens(36, 20));
        check_fits(&cfg, &config, &[long.clone()], &[short.clone()]).unwrap();
        let err = check_fits(&cfg, &config, &[short.clone()], &[long]).unwrap_err().to_string();
        assert_eq!(err, "validation questions (with their thoughts and eval_max_new_tokens) reach 112 positions, more than the model's n_positions = 100");
        let err = check_fits(&cfg, &config, &[tokens(36, 60)], &[short]).unwrap_err().to_string();
        assert!(err.starts_with("training sequences (with their thoughts) reach 108 positions"), "{err}");
    }
}
