//! `coconut`: the native program. `cargo run --release` at the repository root runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
mod bench;
mod commands;
mod datasets;
mod export;
mod infer;
mod probe;
mod train;

/// glibc serves every allocation above 128 KiB with a fresh mmap and unmaps it on free, so each
/// step's tensors faulted their pages in again (page faults + zeroing were ~10% of a CPU training
/// step in the profile). Keeping blocks up to 32 MiB (glibc's maximum) in the heap and not trimming
/// it makes the page model's training step ~1.4× faster (BENCHMARKS.md).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called once at start, before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

use coconut::BackendKind;

pub(crate) const DEFAULT_CONFIG: &str = "configs/prosqa-recall-frontier-coconut.toml";
/// The official ProsQA sets: `../shared/prosqa` from the repository root, found from the
/// source location so that it does not depend on the current directory.
const OFFICIAL_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/prosqa");
/// Where the default run's resumable checkpoint is committed (model, optimizer and trainer state).
const COMMITTED_RUNS: &str = "checkpoints";

#[derive(Parser)]
#[command(
    name = "coconut",
    version,
    about = "Chain of Continuous Thought (Coconut) on GPT-2, in Rust with Burn.",
    long_about = "Chain of Continuous Thought (Coconut, Hao et al. 2024) on GPT-2, in Rust with Burn.\n\n\
        With no subcommand, trains the default run (configs/prosqa-recall-frontier-coconut.toml) into\n\
        runs/prosqa-recall-frontier-coconut/, resuming it (or the committed checkpoints/ copy) when it exists."
)]
struct Cli {
    /// Compute backend: flex (CPU, default), ndarray (CPU), wgpu (Vulkan/Metal), cuda (feature `cuda`).
    #[arg(long, global = true, default_value = "flex", value_parser = known_backend)]
    backend: String,
    /// Devices for data-parallel training (`train`, and `bench`'s workers figure): CUDA 0..N, wgpu GPUs 0..N; on a CPU
    /// backend N workers share the CPU. Default: one worker per core on a CPU backend (each with one
    /// thread unless RAYON_NUM_THREADS says otherwise), one device on a GPU backend. With dropout,
    /// only `--devices 1` is bit-reproducible.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    devices: Option<u16>,
    /// Where the official ProsQA sets are (prosqa_valid.json, prosqa_test.json): generated
    /// questions (`train`, `data prosqa`) are never one of theirs. Missing: a warning. Default:
    /// `shared/prosqa` beside the checkout this binary was built from, wherever it runs.
    #[arg(long, global = true, default_value = OFFICIAL_DATA)]
    official_data: PathBuf,
    /// On the CPU backend, train with GELU, layer norm, attention and the q/k/v convolution
    /// (`model.qkv_conv`) as chains of Burn ops instead of the fused ops with hand-written gradients
    /// (same numbers within 1e-5; for before/after measurements).
    #[arg(long, global = true)]
    unfused: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Import an unmodified HuggingFace GPT-2 directory (config.json, model.safetensors,
    /// tokenizer.json or vocab.json + merges.txt) into a checkpoint directory.
    ImportHf {
        /// The HF directory (e.g. a download of openai-community/gpt2).
        #[arg(long)]
        hf_dir: PathBuf,
        /// Checkpoint directory to write: new, empty, or a checkpoint (replaced atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print per-token log-probabilities of a text as JSON: {"tokens":[ids],"logprobs":[...]},
    /// where logprobs[i] = log p(tokens[i+1] | tokens[..=i]).
    Score {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        text: String,
    },
    /// Print the token ids of a text as JSON, with a checkpoint's tokenizer or a tokenizer.json;
    /// or build a word-level tokenizer.json from text files (--build-word-level).
    Tokenize {
        /// Checkpoint directory or tokenizer.json whose tokenizer to use.
        #[arg(long, conflicts_with = "build_word_level")]
        tokenizer: Option<PathBuf>,
        #[arg(long, requires = "tokenizer")]
        text: Option<String>,
        /// Build a word-level tokenizer from these files (ProsQA/ProntoQA JSON or plain text) ...
        #[arg(long, num_args = 1..)]
        build_word_level: Vec<PathBuf>,
        /// ... and write it here.
        #[arg(long, requires = "build_word_level")]
        out: Option<PathBuf>,
    },
    /// List the compute backends compiled into this build.
    Backends,
    /// Train the Coconut curriculum from a TOML config (see configs/): checkpoints, metrics.jsonl,
    /// validation accuracy per epoch; `--resume DIR` continues a killed run exactly.
    Train {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Output directory (default: runs/<config name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in DIR from its last checkpoint (its own config.toml is used, and
        /// refused when it differs from the one the checkpoint was trained with).
        #[arg(long, conflicts_with_all = ["out", "overwrite"])]
        resume: Option<PathBuf>,
        /// Replace the training run `--out` already holds (its config.toml, metrics.jsonl, last/
        /// and best/; nothing else in it), once the new run's inputs are validated.
        #[arg(long)]
        overwrite: bool,
        /// With `--resume`: accept a config.toml that differs from the checkpoint's (the changed
        /// keys are listed; the batch size may change only at an epoch end).
        #[arg(long, requires = "resume")]
        allow_config_change: bool,
        /// Stop after SECONDS of training in this invocation, with a resumable checkpoint in last/
        /// (a lent GPU for a fixed window; `--resume` continues exactly).
        #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
        time_budget: Option<f64>,
    },
    /// Batched greedy decoding after k continuous thoughts (KV-cached).
    Generate {
        #[arg(long)]
        checkpoint: PathBuf,
        /// A question (repeat the flag for a batch).
        #[arg(long, required = true)]
        question: Vec<String>,
        /// Continuous thoughts before switching to language (any k up to the model's positions;
        /// default: the k the checkpoint was trained for, else 6).
        #[arg(long)]
        k: Option<usize>,
        /// coconut | cot | no-cot | no-thought | pause-as-thought | pause-token | no-curriculum
        /// (default: the method the checkpoint was trained with, else coconut).
        #[arg(long, value_parser = known_method)]
        method: Option<String>,
        #[arg(long, default_value_t = 64, value_parser = positive)]
        max_new_tokens: usize,
        /// Print JSON ({"answer", "text"} per question) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Answer accuracy and the paper's six path categories on a dataset; `--k-sweep 0..6` for many k.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// Thoughts (default: the k the checkpoint was trained for, else 6).
        #[arg(long)]
        k: Option<usize>,
        /// The method to ask with (default: the one the checkpoint was trained with, else coconut).
        #[arg(long, value_parser = known_method)]
        method: Option<String>,
        /// Write the JSON report here (the sweep's: FILE, FILE.md table, FILE.svg chart).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Evaluate k = A..B (inclusive) instead of one k.
        #[arg(long)]
        k_sweep: Option<String>,
        #[arg(long, default_value_t = 64, value_parser = positive)]
        batch_size: usize,
        #[arg(long, default_value_t = 64, value_parser = positive)]
        max_new_tokens: usize,
        /// `cached` (batched, KV cache) or `reference` (the official style: batch 1, the whole
        /// sequence re-run per token), to check and time one against the other.
        #[arg(long, value_enum, default_value_t = Decoding::Cached)]
        decoding: Decoding,
    },
    /// Latent-search analysis of one question: per thought, its top tokens and every node's value
    /// (the data the page animates), as JSON.
    Analyze {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        question: String,
        /// Thoughts (default: the k the checkpoint was trained for, else 6).
        #[arg(long)]
        k: Option<usize>,
        /// Write the JSON here (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// What a model has learned over a set of questions: the lookup probe, the latent mass.
    Probe {
        #[command(subcommand)]
        command: probe::ProbeCommand,
    },
    /// Generate, check and describe datasets (ProsQA in the official JSON format).
    Data {
        #[command(subcommand)]
        command: datasets::DataCommand,
    },
    /// Training samples/s (stages 0, 3, 6) on one worker at this run's thread count and at the other
    /// (1, or every core), and over the training workers; generation latency (batch 1, k = 6) and
    /// throughput (batch 32/128), peak memory; `--reference` runs the same work in PyTorch + HF
    /// transformers (at both thread counts) in the same run and reports ratios (`--rounds`: medians
    /// over rounds that alternate the two).
    Bench {
        /// What to train: flagship (what `cargo run --release` trains: its config's model, batch size,
        /// optimizer and curriculum, frontier supervision included), page (the page's shipped model at the
        /// page's fine-tuning settings: batch 8, AdamW), small (4×256), gpt2 (GPT-2 124M), or a training
        /// config's path (`.toml`, as flagship).
        #[arg(long, default_value = "flagship")]
        config: String,
        /// Write the results here (JSON); a Markdown table goes next to it (.md).
        #[arg(long, default_value = "bench.json")]
        json: PathBuf,
        /// Also measure PyTorch (scripts/bench_reference.py in .venv, which scripts/bench-reference-env makes when missing).
        #[arg(long)]
        reference: bool,
        /// Where PyTorch runs for `--reference`: cpu, or cuda (a GPU machine, next to `--backend cuda`).
        #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
        reference_device: String,
        /// Training batch size (default: the config's; 8 for page and gpt2, 32 for small).
        #[arg(long, value_parser = positive)]
        batch_size: Option<usize>,
        /// Timed optimizer steps per stage (after one warm-up step).
        #[arg(long, default_value_t = 3, value_parser = positive)]
        train_steps: usize,
        /// Rounds of the training figures: each round measures ours and then (with `--reference`)
        /// PyTorch at the same thread count, back to back; every figure is the median over rounds and
        /// every ratio the median of the rounds' ratios, so a machine that slows for a minute moves
        /// one round, not the comparison.
        #[arg(long, default_value_t = 1, value_parser = positive)]
        rounds: usize,
        /// Official test questions timed at batch 1.
        #[arg(long, default_value_t = 50, value_parser = positive)]
        questions: usize,
        #[arg(long, default_value = "../shared/prosqa/prosqa_test.json")]
        test_file: PathBuf,
    },
    /// Export a checkpoint for the page: its four files plus `web.json` (version, method, thoughts,
    /// every file's size and SHA-256, for the page's progress bar, cache and verification).
    ExportWeb {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The method the page asks with (default: the one the checkpoint was trained with, else coconut).
        #[arg(long, value_parser = known_method)]
        method: Option<String>,
        /// Most thoughts the page offers (default: the k the checkpoint was trained for, else 6).
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=64))]
        max_thoughts: Option<u16>,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    coconut::backend::fused::set_unfused(cli.unfused);
    if let Ok(kind) = BackendKind::parse(&cli.backend) {
        kind.make_default();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The devices a training run uses: `--devices N`, else one worker per core on a CPU backend
/// (two 1-thread workers train ~1.25x faster than one 2-thread worker here: docs/experiments.md),
/// else one device.
fn training_devices(cli_backend: &str, devices: Option<u16>) -> Result<Vec<burn::prelude::Device>> {
    let kind = BackendKind::parse(cli_backend).map_err(anyhow::Error::msg)?;
    let cpu = matches!(kind, BackendKind::Flex | BackendKind::Ndarray);
    let n = devices.map(usize::from).unwrap_or_else(|| if cpu { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { 1 });
    if cpu && n > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: no other thread exists yet (the workers and the rayon pool start in `train`).
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    kind.devices(n).map_err(anyhow::Error::msg)
}

/// `cargo run --release`: trains the default config into runs/<name>/, resuming that run when it
/// has a checkpoint, else the committed copy in checkpoints/<name>/ (copied into runs/ first),
/// else from scratch.
fn default_run(cli_backend: &str, devices: Option<u16>, official_data: &std::path::Path) -> Result<()> {
    let config = PathBuf::from(DEFAULT_CONFIG);
    let out = default_out(&config);
    let committed = PathBuf::from(COMMITTED_RUNS).join(config.file_stem().unwrap_or_default());
    let resumable = |dir: &std::path::Path| dir.join("last").join("trainer.json").exists();
    if !resumable(&out) && resumable(&committed) {
        eprintln!("resuming the committed run {} in {}", committed.display(), out.display());
        copy_dir(&committed, &out)?;
    }
    let resume = resumable(&out).then(|| out.clone());
    let run = train::RunArgs {
        config,
        out,
        resume,
        overwrite: false,
        allow_config_change: false,
        official_data: official_data.to_path_buf(),
        time_budget: None,
    };
    train::train(&run, training_devices(cli_backend, devices)?)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| to.display().to_string())?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| target.display().to_string())?;
        }
    }
    Ok(())
}

fn device(cli_backend: &str) -> Result<burn::prelude::Device> {
    let kind = BackendKind::parse(cli_backend).map_err(anyhow::Error::msg)?;
    kind.device().map_err(anyhow::Error::msg)
}

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        print_default_plan();
        return default_run(&cli.backend, cli.devices, &cli.official_data);
    };
    match command {
        Command::ImportHf { hf_dir, out } => commands::import_hf(&hf_dir, &out, &device(&cli.backend)?)?,
        Command::Score { checkpoint, text } => commands::score(&checkpoint, &text, &device(&cli.backend)?)?,
        Command::Tokenize { tokenizer, text, build_word_level, out } => commands::tokenize(tokenizer, text, &build_word_level, out)?,
        Command::Backends => {
            for b in BackendKind::available() {
                println!("{}", b.name());
            }
        }
        Command::Data { command } => datasets::data_command(command, &cli.official_data)?,
        Command::Probe { command } => probe::probe(command, device(&cli.backend)?)?,
        Command::Analyze { checkpoint, question, k, out } => commands::analyze(&checkpoint, &question, k, out, &device(&cli.backend)?)?,
        Command::Train { config, out, resume, overwrite, allow_config_change, time_budget } => {
            let out = out.unwrap_or_else(|| default_out(&config));
            let run = train::RunArgs { config, out, resume, overwrite, allow_config_change, official_data: cli.official_data, time_budget };
            train::train(&run, training_devices(&cli.backend, cli.devices)?)?;
        }
        Command::Generate { checkpoint, question, k, method, max_new_tokens, json } => {
            let m = infer::Model::load(&checkpoint, method.as_deref(), k, device(&cli.backend)?)?;
            commands::generate(&m, &question, max_new_tokens, json)?
        }
        Command::Eval { checkpoint, data, k, method, out, k_sweep, batch_size, max_new_tokens, decoding } => {
            let mut m = infer::Model::load(&checkpoint, method.as_deref(), k, device(&cli.backend)?)?;
            m.reference_decoding = decoding == Decoding::Reference;
            commands::eval(&m, &data, out, k_sweep, batch_size, max_new_tokens)?
        }
        Command::ExportWeb { checkpoint, out, method, max_thoughts } => {
            export::export_web(&checkpoint, &out, method.as_deref(), max_thoughts.map(usize::from), &device(&cli.backend)?)?
        }
        Command::Bench { config, json, reference, reference_device, batch_size, train_steps, rounds, questions, test_file } => bench::bench(
            bench::BenchArgs { config, json, reference, reference_device, batch_size, train_steps, rounds, questions, test_file },
            device(&cli.backend)?,
            training_devices(&cli.backend, cli.devices)?,
        )?,
    }
    Ok(())
}

/// Writes a file via a temporary sibling and a rename (a killed writer leaves no half file).
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
    Ok(())
}

fn default_out(config: &std::path::Path) -> PathBuf {
    PathBuf::from("runs").join(config.file_stem().unwrap_or_default())
}

fn print_default_plan() {
    println!(
        "coconut: the default run trains {DEFAULT_CONFIG}:\n\
         \x20 a 2-layer, 128-wide GPT-2 from scratch (word-level tokenizer) with rotary positions and a causal\n\
         \x20 convolution of width 4 over time on each layer's queries, keys and values, on freshly generated ProsQA:\n\
         \x20 the recall stage (3 epochs of 15,000 recall questions in language: it forms the lookup), then\n\
         \x20 the Coconut curriculum at the official size: stage 0 = full language chain of thought, then each stage\n\
         \x20 replaces one more reasoning step by c=1 continuous thought, up to 6 thoughts (2 epochs a stage),\n\
         \x20 then the final stage to epoch 53, the learning rate decayed over the last 10; Muon for the blocks'\n\
         \x20 matrices and AdamW for the rest; from the first latent stage on, each continuous thought is also\n\
         \x20 trained, through the LM head, toward the concepts as many hops from the person as its index\n\
         \x20 (frontier supervision, weight 0.2); validation accuracy every epoch; one worker per CPU core.\n\
         \x20 About 3.5 hours on 2 cores; it answers ~73% of generated official-size questions by epoch 21 of 53,\n\
         \x20 ~90% by epoch 37 and 96% after the decay (epoch 53: 93.6% of the official test; the page's model,\n\
         \x20 13 epochs more with the paper's stage mix via scripts/extend-run, then grown to 2 x 256 for 16 more:\n\
         \x20 98.0%; the recipe without the frontier term: at most 69%; RESULTS.md).\n\
         Output: runs/prosqa-recall-frontier-coconut/ (metrics.jsonl, last/, best/, epochs/). Run it again to resume\n\
         (from checkpoints/prosqa-recall-frontier-coconut/ when runs/ has none). `coconut --help` lists every subcommand.\n\
         Compiled backends: {}",
        BackendKind::available().iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    );
}

/// How `eval` decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Decoding {
    /// Batched, with a KV cache.
    Cached,
    /// The official style: batch 1, the whole sequence re-run per token.
    Reference,
}

/// A curriculum variant's name (checked when the command line is read).
fn known_method(s: &str) -> Result<String, String> {
    coconut::curriculum::Variant::parse(s).map(|v| v.name().to_string())
}

/// A backend this build has (checked when the command line is read).
fn known_backend(s: &str) -> Result<String, String> {
    BackendKind::parse(s).map(|_| s.to_string())
}

/// A positive, finite number of seconds.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// A count that must be at least 1.
pub(crate) fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not a whole number ({e})")),
    }
}
