//! Checkpoints are directories:
//!
//! - `model.bpk`       Burn's module record (burnpack),
//! - `config.json`     the `Gpt2Config`,
//! - `tokenizer.json`  a standard HF tokenizer file,
//! - `manifest.json`   format version, a hash of the config, size and SHA-256 of the weights, and
//!   size and SHA-256 of every other file the checkpoint carries (a training run's
//!   `optimizer.bpk`, `trainer.json` and `train_config.toml`), and what the
//!   model was trained for (`TrainedFor`: how it is meant to be asked).
//!
//! Loading checks all of it: another format version, a config that does not match the manifest or
//! the weights, a truncated or corrupt file each give an error that says which. Directories
//! are written to a temporary sibling and renamed into place, so a killed writer leaves the previous
//! checkpoint whole.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gpt2::{Gpt2, Gpt2Config};
use crate::tokenizer::CoconutTokenizer;

pub const FORMAT: &str = "coconut-checkpoint";
pub const FORMAT_VERSION: u32 = 1;
pub const WEIGHTS_FILE: &str = "model.bpk";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io { path: path.display().to_string(), msg: e.to_string() }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// SHA-256 of `config.json`'s canonical form.
    pub config_hash: String,
    pub weights_file: String,
    pub weights_bytes: u64,
    pub weights_sha256: String,
    pub tokenizer_vocab: usize,
    /// Free-form provenance: what made this checkpoint.
    #[serde(default)]
    pub created_by: String,
    /// The other files of the directory (a training run's resumable state), each checked on load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDigest>,
    /// How the model was trained and is meant to be asked (absent: an imported or older
    /// checkpoint, asked as Coconut with `DEFAULT_THOUGHTS` unless told otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_for: Option<TrainedFor>,
}

/// The number of thoughts a checkpoint that does not say otherwise is asked with (the paper's
/// ProsQA setting: 6 stages of c = 1).
pub const DEFAULT_THOUGHTS: usize = 6;

/// What a checkpoint was trained for, so that `eval`, `generate`, `analyze`, `export-web` and the
/// page ask it the way it was trained without being told.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainedFor {
    /// The curriculum variant (`coconut`, `cot`, `no-cot`, `no-thought`, `pause-as-thought`, ...).
    pub method: String,
    /// Thoughts per replaced reasoning step (the paper's c).
    pub c_thought: usize,
    /// The curriculum's last latent stage.
    pub max_latent_stage: usize,
    /// The stage the weights were trained at.
    pub stage: usize,
    /// Thoughts to ask it with: `min(stage, max_latent_stage) × c` for latent variants, 0 for
    /// the language ones.
    pub k: usize,
    /// The tokenizer's model (`WordLevel` for models trained here, `BPE` for GPT-2).
    pub tokenizer: String,
}

/// Size and SHA-256 of one file of a checkpoint directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileDigest {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    pub fn of(name: &str, bytes: &[u8]) -> Self {
        Self { name: name.into(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) }
    }

    /// `Err` naming the file when `bytes` are not the ones recorded.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), CheckpointError> {
        if bytes.len() as u64 != self.bytes {
            return Err(CheckpointError::Invalid(format!(
                "{}: {} bytes, manifest.json says {} (truncated or wrong file)",
                self.name,
                bytes.len(),
                self.bytes
            )));
        }
        if sha256_hex(bytes) != self.sha256 {
            return Err(CheckpointError::Invalid(format!("{}: SHA-256 differs from manifest.json (corrupt or edited file)", self.name)));
        }
        Ok(())
    }
}

/// A file name inside the checkpoint directory: no directories, no `..`, nothing hidden.
pub fn plain_file_name(name: &str) -> Result<&str, CheckpointError> {
    let ok = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', ':', '\0']) && name.len() <= 128;
    if ok {
        Ok(name)
    } else {
        Err(CheckpointError::Invalid(format!("manifest.json names the file `{}`: only plain file names are allowed", name.escape_debug())))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical JSON of a config (serde field order) and its hash.
/// Reads config.json; an option it does not name takes its GPT-2 default (`position = Learned`).
fn parse_config(bytes: &[u8]) -> Result<Gpt2Config, CheckpointError> {
    let malformed = |e: serde_json::Error| CheckpointError::Invalid(format!("config.json is malformed: {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    if let Some(fields) = value.as_object_mut() {
        fields.entry("position").or_insert_with(|| serde_json::to_value(crate::gpt2::Position::Learned).expect("serialises"));
        fields.entry("rotary_dims").or_insert(serde_json::Value::Null);
        fields.entry("length_scaled_attention").or_insert(serde_json::Value::Bool(false));
        fields.entry("nope_layers").or_insert(serde_json::Value::Array(Vec::new()));
        fields.entry("qkv_conv").or_insert(serde_json::Value::from(0));
    }
    serde_json::from_value(value).map_err(malformed)
}

/// Options at their default (`position = Learned`, `rotary_dims = None`, `length_scaled_attention =
/// false`, `nope_layers = []`, `qkv_conv = 0`) are left out, so a
/// checkpoint's hash is the same whether or not its config.json names them.
pub fn config_hash(config: &Gpt2Config) -> String {
    let json = serde_json::to_string(config).expect("config serialises");
    let json = match config.rotary_dims {
        None => json.replacen(r#","rotary_dims":null"#, "", 1),
        Some(_) => json,
    };
    let json = json.replacen(r#","length_scaled_attention":false"#, "", 1).replacen(r#","nope_layers":[]"#, "", 1).replacen(r#","qkv_conv":0"#, "", 1);
    let json = match config.position {
        crate::gpt2::Position::Learned => json.replacen(r#","position":"Learned""#, "", 1),
        _ => json,
    };
    sha256_hex(json.as_bytes())
}

/// A checkpoint in memory: what the page fetches and what the CLI reads from disk.
pub struct Checkpoint {
    pub manifest: Manifest,
    pub config: Gpt2Config,
    pub tokenizer: CoconutTokenizer,
    pub weights: Vec<u8>,
    /// The files listed in `manifest.files`, with their bytes.
    pub extra: Vec<(String, Vec<u8>)>,
}

impl Checkpoint {
    /// Packs a model (its weights are read back to the host here).
    pub fn from_model(model: Gpt2, config: &Gpt2Config, tokenizer: CoconutTokenizer, created_by: &str) -> Result<Self, CheckpointError> {
        let record = model.into_record();
        let weights = record.into_bytes().map_err(|e| CheckpointError::Invalid(e.to_string()))?.to_vec();
        Ok(Self::from_weights(weights, config, tokenizer, created_by))
    }

    pub fn from_weights(weights: Vec<u8>, config: &Gpt2Config, tokenizer: CoconutTokenizer, created_by: &str) -> Self {
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            config_hash: config_hash(config),
            weights_file: WEIGHTS_FILE.into(),
            weights_bytes: weights.len() as u64,
            weights_sha256: sha256_hex(&weights),
            tokenizer_vocab: tokenizer.vocab_size(),
            created_by: created_by.into(),
            files: Vec::new(),
            trained_for: None,
        };
        Self { manifest, config: config.clone(), tokenizer, weights, extra: Vec::new() }
    }

    /// Adds files to the directory (a training run's resumable state), recorded in the manifest.
    pub fn with_files(mut self, files: Vec<(String, Vec<u8>)>) -> Self {
        self.manifest.files = files.iter().map(|(name, bytes)| FileDigest::of(name, bytes)).collect();
        self.extra = files;
        self
    }

    /// Records what the model was trained for (see `TrainedFor`).
    pub fn trained_for(mut self, trained_for: TrainedFor) -> Self {
        self.manifest.trained_for = Some(trained_for);
        self
    }

    /// The method and number of thoughts to ask with: `method`/`k` when given, else what the
    /// manifest records, else Coconut with `DEFAULT_THOUGHTS`; the flag is `true` when that last
    /// default was taken.
    pub fn asked_as(&self, method: Option<&str>, k: Option<usize>) -> (String, usize, bool) {
        let t = self.manifest.trained_for.as_ref();
        let method = method.map(String::from).or_else(|| t.map(|t| t.method.clone()));
        let k = k.or_else(|| t.map(|t| t.k));
        let defaulted = method.is_none() || k.is_none();
        (method.unwrap_or_else(|| "coconut".into()), k.unwrap_or(DEFAULT_THOUGHTS), defaulted)
    }

    /// The model alone (the four files), without a training run's other files.
    pub fn without_files(mut self) -> Self {
        self.manifest.files.clear();
        self.extra.clear();
        self
    }

    /// The bytes of a file listed in the manifest (verified on load), if the checkpoint has it.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.extra.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice())
    }

    /// Validates the four parts against each other.
    pub fn from_parts(manifest: &[u8], config: &[u8], tokenizer: &[u8], weights: Vec<u8>) -> Result<Self, CheckpointError> {
        let manifest: Manifest =
            serde_json::from_slice(manifest).map_err(|e| CheckpointError::Invalid(format!("manifest.json is malformed: {e}")))?;
        if manifest.format != FORMAT {
            return Err(CheckpointError::Invalid(format!("manifest.json: format is `{}`, expected `{FORMAT}`", manifest.format)));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(CheckpointError::Invalid(format!(
                "checkpoint format version {} is not supported by this build (version {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        plain_file_name(&manifest.weights_file)?;
        for f in &manifest.files {
            plain_file_name(&f.name)?;
        }
        let config = parse_config(config)?;
        config.validate().map_err(|e| CheckpointError::Invalid(format!("config.json: {e}")))?;
        if config_hash(&config) != manifest.config_hash {
            return Err(CheckpointError::Invalid(
                "config.json does not match manifest.json (config hash differs): the checkpoint was mixed from different models".into(),
            ));
        }
        FileDigest { name: manifest.weights_file.clone(), bytes: manifest.weights_bytes, sha256: manifest.weights_sha256.clone() }
            .verify(&weights)?;
        let tokenizer = CoconutTokenizer::from_json(tokenizer).map_err(|e| CheckpointError::Invalid(format!("tokenizer.json: {e}")))?;
        Ok(Self { manifest, config, tokenizer, weights, extra: Vec::new() })
    }

    /// Builds the model on `device`; weight shapes must match the config.
    pub fn model(&self, device: &Device) -> Result<Gpt2, CheckpointError> {
        let bytes = burn::tensor::Bytes::from_bytes_vec(self.weights.clone());
        let record = burn::store::ModuleRecord::from_bytes(bytes).map_err(|e| CheckpointError::Invalid(format!("{WEIGHTS_FILE}: {e}")))?;
        self.config
            .init(device)
            .try_load_record(record)
            .map_err(|e| CheckpointError::Invalid(format!("{WEIGHTS_FILE} does not fit config.json: {e}")))
    }

    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| io_err(&p, e))
        };
        if !dir.is_dir() {
            return Err(io_err(dir, "not a checkpoint directory"));
        }
        let manifest = read("manifest.json")?;
        let weights_file = serde_json::from_slice::<Manifest>(&manifest).map(|m| m.weights_file).unwrap_or_else(|_| WEIGHTS_FILE.into());
        let weights_file = plain_file_name(&weights_file).map_err(|e| io_err(dir, e))?.to_string();
        let mut ckpt =
            Self::from_parts(&manifest, &read("config.json")?, &read("tokenizer.json")?, read(&weights_file)?).map_err(|e| io_err(dir, e))?;
        for f in ckpt.manifest.files.clone() {
            let bytes = read(&f.name)?;
            f.verify(&bytes).map_err(|e| io_err(dir, e))?;
            ckpt.extra.push((f.name, bytes));
        }
        Ok(ckpt)
    }

    /// Writes the directory atomically: into `DIR.tmp`, then renamed over `DIR`.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let tmp = temp_dir_for(dir)?;
        self.write_files(&tmp)?;
        replace_dir(&tmp, dir)
    }

    /// Writes the four files into an existing directory (not atomic: see `save`).
    pub fn write_files(&self, tmp: &Path) -> Result<(), CheckpointError> {
        let write = |name: &str, bytes: &[u8]| {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(|e| io_err(&p, e))
        };
        write(&self.manifest.weights_file, &self.weights)?;
        for (name, bytes) in &self.extra {
            write(name, bytes)?;
        }
        write("config.json", serde_json::to_string_pretty(&self.config).expect("config").as_bytes())?;
        write("tokenizer.json", self.tokenizer.to_json().map_err(|e| CheckpointError::Invalid(e.to_string()))?.as_bytes())?;
        write("manifest.json", serde_json::to_string_pretty(&self.manifest).expect("manifest").as_bytes())
    }
}

/// A fresh, empty temporary sibling of `dir` to write into before `replace_dir`.
pub fn temp_dir_for(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let tmp = sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    Ok(tmp)
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!(".{name}.{suffix}"))
}

/// Moves `from` to `to`, replacing `to` if it exists (the old one is renamed away first, then removed).
pub fn replace_dir(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let old = sibling(to, "old");
    if to.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(to, &old).map_err(|e| io_err(to, e))?;
    }
    std::fs::rename(from, to).map_err(|e| io_err(to, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
