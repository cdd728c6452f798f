//! A run directory on disk: `last/` (model + optimizer + trainer state + the config, all in the
//! manifest's checksums), the metrics log, and the `train.lock` that keeps one writer per run.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use coconut::checkpoint::{Checkpoint, replace_dir, temp_dir_for};
use coconut::trainer::TrainerState;
use coconut::{CoconutTokenizer, Gpt2Config};

use super::config::TrainConfig;

/// Drops the metrics logged after the checkpoint a run resumes from (steps above `step`), so each
/// step appears once in metrics.jsonl after a kill and a resume.
pub fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|line| {
            let logged = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_u64());
            logged.is_none_or(|s| s as usize <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() < text.len() {
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

pub fn save_last(
    out: &Path,
    config: &Gpt2Config,
    model: &coconut::Gpt2,
    tok: &CoconutTokenizer,
    optim: &burn::optim::ModuleOptimizer,
    state: &TrainerState,
    cfg: &TrainConfig,
) -> Result<()> {
    let dir = out.join("last");
    let tmp = temp_dir_for(&dir)?;
    // Every file of the resumable state is in the manifest's checksums (checked on resume).
    let files = vec![
        (OPTIMIZER_FILE.to_string(), optim.into_bytes().map_err(|e| anyhow::anyhow!("{e}"))?.to_vec()),
        (STATE_FILE.to_string(), serde_json::to_string_pretty(state)?.into_bytes()),
        (CONFIG_FILE.to_string(), toml::to_string(cfg)?.into_bytes()),
    ];
    Checkpoint::from_model(model.valid(), config, tok.clone(), "coconut train")?
        .with_files(files)
        .trained_for(cfg.trained_for(state.stage, tok))
        .write_files(&tmp)?;
    replace_dir(&tmp, &dir)?;
    Ok(())
}

pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const STATE_FILE: &str = "trainer.json";
/// The training config the checkpoint was trained with (a resume with another one is refused).
const CONFIG_FILE: &str = "train_config.toml";

/// One writer per run directory: `train.lock` holds the writer's PID; a lock whose process is gone
/// (a killed run) is taken over. Removed when the run ends.
pub struct RunLock(PathBuf);

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("train.lock");
        for _ in 0..3 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).with_context(|| path.display().to_string())?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u32>().ok());
                    match pid {
                        Some(pid) if process_alive(pid) => bail!(
                            "{} is being written by another `coconut train` (PID {pid}, {}): wait for it or stop it (nothing was changed)",
                            dir.display(),
                            path.display()
                        ),
                        _ => {
                            eprintln!("note: {} was left by a run that is gone; taking it over", path.display());
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        bail!("{}: could not take the run's lock", path.display())
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a process with this PID exists (Linux: /proc; elsewhere every lock counts as held).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

/// Removes the files of a training run from `out` (for `--overwrite`), nothing else.
pub fn remove_run(out: &Path) -> Result<()> {
    for name in ["config.toml", "metrics.jsonl", "metrics.jsonl.tmp"] {
        let p = out.join(name);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    for name in ["last", "best", ".last.tmp", ".best.tmp", ".last.old", ".best.old"] {
        let p = out.join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// The resumable state in `last/`: model checkpoint, optimizer and trainer state, all verified
/// against the manifest; the config it was trained with must be `cfg`, unless `allow_change`
/// (then the batch size may change only at an epoch end).
pub fn load_last(dir: &Path, cfg: &TrainConfig, allow_change: bool) -> Result<(Checkpoint, Vec<u8>, TrainerState)> {
    let last = dir.join("last");
    let ckpt = Checkpoint::load(&last).with_context(|| format!("resuming: {} is not a complete checkpoint", last.display()))?;
    let file = |name: &str| -> Result<Vec<u8>> {
        match ckpt.file(name) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => std::fs::read(last.join(name)).with_context(|| format!("resuming: {}", last.join(name).display())),
        }
    };
    let state: TrainerState = serde_json::from_slice(&file(STATE_FILE)?)
        .with_context(|| format!("resuming: {} is not a trainer state", last.join(STATE_FILE).display()))?;
    match ckpt.file(CONFIG_FILE) {
        Some(bytes) => {
            let trained: TrainConfig =
                toml::from_str(std::str::from_utf8(bytes)?).with_context(|| format!("resuming: {}", last.join(CONFIG_FILE).display()))?;
            let changed = trained.changed_keys(cfg);
            if !changed.is_empty() && !allow_change {
                bail!(
                    "{} differs from the config last/ was trained with ({}): restore it, or pass --allow-config-change to train on with the new values",
                    dir.join("config.toml").display(),
                    changed.join("; ")
                );
            }
            if !changed.is_empty() {
                if (trained.optim.batch_size != cfg.optim.batch_size || trained.data.length_window != cfg.data.length_window) && state.batch_in_epoch > 0 {
                    bail!(
                        "optim.batch_size or data.length_window changed in the middle of epoch {} (batch {}): resume from an epoch-end checkpoint to change it",
                        state.epoch,
                        state.batch_in_epoch
                    );
                }
                eprintln!("note: training on with a changed config: {}", changed.join("; "));
            }
        }
        None => eprintln!("note: {} does not record its training config; {} is used as it is", last.display(), dir.join("config.toml").display()),
    }
    let optimizer = file(OPTIMIZER_FILE)?;
    Ok((ckpt, optimizer, state))
}
