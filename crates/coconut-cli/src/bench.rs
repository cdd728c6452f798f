//! `coconut bench`: training and generation speed for a named model shape, and with `--reference`
//! the same work in PyTorch + HF transformers (scripts/bench_reference.py) in the same run.
//!
//! Training: samples/s of full optimizer steps (multi-pass forward, loss, backward, the config's
//! optimizer) on batches of generated ProsQA at stage 0 (CoT), 3 and 6 (6 thoughts), with the training
//! config's curriculum: its frontier supervision included, where the config has it. Generation: official test questions,
//! k = 6 thoughts, greedy decoding of the answer's length; batch-1 latency and batched throughput.
//! Weights are freshly initialised on both sides (speed does not depend on them).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use coconut::curriculum::{Curriculum, Tokenized, Variant, collate};
use coconut::generate::generate;
use coconut::train::{OptimConfig, OptimizerKind, optimizer_step, optimizer_step_multi};
use coconut::gpt2::Position;
use coconut::{CoconutTokenizer, Gpt2Config, coconut::DeviceBatch, prosqa};
use serde_json::{Value, json};

use coconut::dataset::load_items;

const STAGES: [usize; 3] = [0, 3, 6];
const K: usize = coconut::checkpoint::DEFAULT_THOUGHTS;

pub struct BenchArgs {
    pub config: String,
    pub json: PathBuf,
    pub reference: bool,
    pub reference_device: String,
    pub batch_size: Option<usize>,
    pub train_steps: usize,
    pub rounds: usize,
    pub questions: usize,
    pub test_file: PathBuf,
}

/// What a named bench trains: the model, batch size, optimizer and curriculum (thought layout and
/// frontier supervision; the variant is always Coconut).
struct Shape {
    config: Gpt2Config,
    batch_size: usize,
    optimizer: OptimizerKind,
    curriculum: Curriculum,
}

fn shape(name: &str, vocab: usize) -> Result<Shape> {
    let named = |config, batch_size| Shape { config, batch_size, optimizer: OptimizerKind::Adamw, curriculum: Curriculum::default() };
    Ok(match name {
        // What `cargo run --release` trains: the flagship config's model, batch size, optimizer and curriculum.
        "flagship" => from_config(&repository().join(crate::DEFAULT_CONFIG), vocab)?,
        // Any training config's, the same way (a recipe before it is the default).
        path if path.ends_with(".toml") => from_config(Path::new(path), vocab)?,
        // configs/prosqa-small-coconut.toml's model: 4 layers, 256 wide.
        "small" => named(Gpt2Config { n_positions: 768, ..Gpt2Config::small(vocab, 4, 256, 4) }, 32),
        // What the page fine-tunes: its shipped Coconut model's shape, at the page's default
        // fine-tuning settings (batch 8, AdamW, no frontier term: web/src/protocol.rs, web/src/worker.rs).
        "page" => {
            let path = repository().join("static/models/prosqa-coconut/config.json");
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let config: Gpt2Config = serde_json::from_slice(&bytes).with_context(|| format!("{} is malformed", path.display()))?;
            named(config, 8)
        }
        // GPT-2 124M shapes (the paper's model); token ids stay word-level, the head is the full 50,257.
        "gpt2" => named(Gpt2Config::gpt2_124m(), 8),
        other => bail!("--config `{other}`: one of flagship, small, page, gpt2, or a training config (.toml)"),
    })
}

fn from_config(path: &Path, vocab: usize) -> Result<Shape> {
    let cfg = crate::train::TrainConfig::load(path)?;
    let m = cfg.model.as_ref().with_context(|| format!("{} has no [model] (a from-scratch config is needed)", path.display()))?;
    let curriculum = Curriculum { variant: Variant::Coconut, ..cfg.curriculum.clone() };
    Ok(Shape { config: m.gpt2_config(vocab), batch_size: cfg.optim.batch_size, optimizer: cfg.optim.optimizer, curriculum })
}

/// Training FLOPs per token of a GPT-2 (forward + backward = 3 × forward): 2 × weights in the
/// matmuls (attention, MLP, LM head) plus attention scores and values over `len` keys.
fn train_flops_per_token(c: &Gpt2Config, len: usize) -> f64 {
    let (d, l) = (c.n_embd as f64, c.n_layer as f64);
    let weights = l * (4.0 * d * d + 2.0 * d * c.n_inner as f64) + d * c.vocab_size as f64;
    3.0 * (2.0 * weights + l * 2.0 * d * len as f64)
}

/// This backend's f32 matmul rate on a large square product (the "GEMM peak" training is measured against).
fn gemm_peak_gflops(device: &Device) -> f64 {
    let n: usize = 1024;
    let a = Tensor::<2>::random([n, n], burn::tensor::Distribution::Default, device);
    let b = Tensor::<2>::random([n, n], burn::tensor::Distribution::Default, device);
    a.clone().matmul(b.clone()).into_data(); // warm-up
    let reps: usize = 5;
    let t0 = Instant::now();
    for _ in 0..reps {
        a.clone().matmul(b.clone()).into_data();
    }
    2.0 * (n * n * n * reps) as f64 / t0.elapsed().as_secs_f64() / 1e9
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn stats(ms: &mut [f64]) -> Value {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    json!({ "mean": ms.iter().sum::<f64>() / ms.len() as f64, "p50": q(0.5), "p95": q(0.95) })
}

/// A batch for the reference; `thought_frontiers[row][thought]` = the token ids frontier supervision
/// trains that thought toward (empty without it).
fn batch_json(b: &coconut::curriculum::Batch, thought_frontiers: &[Vec<Vec<u32>>]) -> Value {
    let rows = |v: &[i64]| v.chunks(b.len).map(<[i64]>::to_vec).collect::<Vec<_>>();
    json!({
        "input_ids": rows(&b.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>()),
        "labels": rows(&b.labels),
        "attention_mask": rows(&b.attention_mask.iter().map(|&x| x as i64).collect::<Vec<_>>()),
        "position_ids": rows(&b.position_ids),
        "latent_positions": b.latent_positions,
        "thought_frontiers": thought_frontiers,
    })
}

pub fn bench(args: BenchArgs, device: Device, workers: Vec<Device>) -> Result<()> {
    let tok = CoconutTokenizer::word_level([prosqa::vocabulary_text().as_str()])?;
    let Shape { config, batch_size: default_batch, optimizer, curriculum } = shape(&args.config, tok.vocab_size())?;
    let batch_size = args.batch_size.unwrap_or(default_batch);
    device.seed(0);
    let threads = threads();
    eprintln!(
        "bench: {} ({} layers, d={}, vocab {}), batch {batch_size}, {threads} thread(s), frontier weight {}, backend device {:?}",
        args.config, config.n_layer, config.n_embd, config.vocab_size, curriculum.frontier_weight, device
    );
    let gemm = gemm_peak_gflops(&device);
    eprintln!("  f32 GEMM peak (1024³ matmul on this backend): {gemm:.1} GFLOP/s");
    let test = load_items(&args.test_file).with_context(|| "generation questions (--test-file)")?;
    let test_tok = coconut::train::tokenize_items(&test, &tok).map_err(anyhow::Error::msg)?;
    let generation = bench_generation(&config, &tok, &test_tok, args.questions.min(test.len()), &device);
    // The same steps on one worker at the other thread count (1 if this run has several, else every
    // core), in a rayon pool of that size: how a second core helps one worker.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let other_threads = if threads == 1 { cores } else { 1 };
    let other_pool = if other_threads != threads { Some(rayon::ThreadPoolBuilder::new().num_threads(other_threads).build()?) } else { None };
    let train = |devices: &[Device]| bench_training(&config, optimizer, &curriculum, &tok, batch_size, args.train_steps, devices);
    // What PyTorch is given: the same model, optimizer, curriculum and batches; its generation is
    // timed in the first round only (`"gen": null` in the others).
    let spec = |batches: &serde_json::Map<String, Value>, threads: usize, with_generation: bool| {
        let n = generation.n;
        let (prompts, new_tokens) = (&generation.prompts, &generation.new_tokens);
        json!({
            "config": { "vocab_size": config.vocab_size, "n_positions": config.n_positions, "n_embd": config.n_embd,
                        "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": config.n_inner,
                        "rope": config.position == Position::Rope,
                        "rotary_dims": config.rotary_dims.unwrap_or(config.n_embd / config.n_head), "qkv_conv": config.qkv_conv },
            "threads": threads,
            "optimizer": optimizer,
            "frontier_weight": curriculum.frontier_weight,
            "device": args.reference_device,
            "latent_id": tok.special.latent, "eos_id": tok.special.eos,
            "train_steps": args.train_steps,
            "train": batches,
            "gen": if with_generation {
                json!({ "prompts": &prompts[..n], "new_tokens": &new_tokens[..n], "recompute_questions": n,
                        "batch_sizes": [32, 128], "batched_prompts": &prompts[..128.min(prompts.len())] })
            } else { Value::Null },
        })
    };
    // Each round: ours, then PyTorch at the same thread count, back to back; then the other thread
    // count likewise; then our workers (PyTorch's figure at as many threads is the one before).
    let mut rounds: Vec<Value> = Vec::with_capacity(args.rounds);
    let mut reference_first: Option<Value> = None;
    for round in 0..args.rounds {
        if args.rounds > 1 {
            eprintln!("round {} of {}", round + 1, args.rounds);
        }
        let training = train(std::slice::from_ref(&device))?;
        let reference = if args.reference { Some(run_reference(&spec(&training.batches, threads, round == 0))?) } else { None };
        let at_other = other_pool.as_ref().map(|pool| pool.install(|| train(std::slice::from_ref(&device)))).transpose()?;
        // PyTorch's plain and multi-pass training at the other thread count.
        let reference_other = match (&at_other, args.reference) {
            (Some(_), true) => Some(run_reference(&spec(&training.batches, other_threads, false))?),
            _ => None,
        };
        let parallel = if workers.len() > 1 { Some(train(&workers)?) } else { None };
        if round == 0 {
            reference_first = reference.clone();
        }
        let pick = |r: &Option<Value>, key: &str| r.as_ref().map(|r| r[key].clone()).unwrap_or(Value::Null);
        rounds.push(json!({
            "train_samples_per_s": training.samples_per_s,
            "train_gflops": training.gflops,
            "train_samples_per_s_other_threads": at_other.map(|t| json!(t.samples_per_s)),
            "train_samples_per_s_workers": parallel.map(|p| json!(p.samples_per_s)),
            "reference": { "train_samples_per_s": pick(&reference, "train_samples_per_s"), "train_plain_samples_per_s": pick(&reference, "train_plain_samples_per_s") },
            "reference_other_threads": { "train_samples_per_s": pick(&reference_other, "train_samples_per_s"),
                                         "train_plain_samples_per_s": pick(&reference_other, "train_plain_samples_per_s") },
        }));
    }
    let median_of = |path: &[&str]| per_stage_median(&rounds, |r| at(r, path).clone());
    let mut report = json!({
        "config": args.config,
        "model": { "n_layer": config.n_layer, "n_embd": config.n_embd, "n_head": config.n_head, "vocab_size": config.vocab_size, "parameters": config.num_params(),
                   "position": format!("{:?}", config.position).to_lowercase(), "qkv_conv": config.qkv_conv },
        "batch_size": batch_size,
        "optimizer": optimizer,
        "frontier_weight": curriculum.frontier_weight,
        "threads": threads,
        "rounds": args.rounds,
        "train_samples_per_s": median_of(&["train_samples_per_s"]),
        "workers": 1,
        "train_samples_per_s_workers": median_of(&["train_samples_per_s_workers"]),
        "train_workers": workers.len(),
        "train_samples_per_s_other_threads": median_of(&["train_samples_per_s_other_threads"]),
        "other_threads": other_threads,
        "train_gflops": median_of(&["train_gflops"]),
        "gemm_peak_gflops": gemm,
        "gen_latency_ms_b1": generation.latency,
        "thought_ms_b1": generation.thought_ms,
        "gen_questions_per_s": generation.questions_per_s,
        "peak_rss_mb": peak_rss_mb(),
    });
    if let Some(mut reference) = reference_first {
        // Its training figures: the medians over rounds (its generation: the first round's).
        reference["train_samples_per_s"] = median_of(&["reference", "train_samples_per_s"]);
        reference["train_plain_samples_per_s"] = median_of(&["reference", "train_plain_samples_per_s"]);
        report["reference"] = reference;
        if report["train_samples_per_s_other_threads"].is_object() {
            report["reference_other_threads"] = json!({
                "threads": other_threads,
                "train_samples_per_s": median_of(&["reference_other_threads", "train_samples_per_s"]),
                "train_plain_samples_per_s": median_of(&["reference_other_threads", "train_plain_samples_per_s"]),
            });
        }
    }
    report["ratios"] = ratios(&report, &rounds);
    report["train_rounds"] = json!(rounds);
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    let md = args.json.with_extension("md");
    std::fs::write(&md, markdown(&report))?;
    println!("{}", markdown(&report));
    eprintln!("wrote {} and {}", args.json.display(), md.display());
    Ok(())
}

/// The value at `path` (object keys) in `v`; null where it is missing.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    (n > 0).then(|| if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 })
}

/// `{stage0, stage3, stage6}` medians of the per-stage figures `of(round)` over `rounds`; null
/// where no round has the figure.
fn per_stage_median(rounds: &[Value], of: impl Fn(&Value) -> Value) -> Value {
    let figures: Vec<Value> = rounds.iter().map(&of).collect();
    if figures.iter().all(Value::is_null) {
        return Value::Null;
    }
    let mut m = serde_json::Map::new();
    for s in STAGES {
        let key = format!("stage{s}");
        m.insert(key.clone(), json!(median(figures.iter().filter_map(|f| f[&key].as_f64()).collect())));
    }
    Value::Object(m)
}

/// Training figures per stage, and the batches trained on (the reference trains on the same).
struct Training {
    samples_per_s: serde_json::Map<String, Value>,
    gflops: serde_json::Map<String, Value>,
    batches: serde_json::Map<String, Value>,
}

/// Samples/s of `steps` optimizer steps on one batch of generated questions at each of `STAGES`.
/// With several `devices`, each step is data-parallel (one shard a device, Burn's multi-device step).
fn bench_training(
    config: &Gpt2Config,
    optimizer: OptimizerKind,
    curriculum: &Curriculum,
    tok: &CoconutTokenizer,
    batch_size: usize,
    steps: usize,
    devices: &[Device],
) -> Result<Training> {
    let devices: Vec<Device> = devices.iter().map(|d| d.clone().autodiff()).collect();
    let ad = devices[0].clone();
    let mut t = Training { samples_per_s: Default::default(), gflops: Default::default(), batches: Default::default() };
    // Generated questions (never the official sets), one batch per stage.
    let items = prosqa::generate(batch_size, 7, &prosqa::GenConfig::default(), &Default::default()).map_err(anyhow::Error::msg)?;
    let data: Vec<Tokenized> = coconut::train::tokenize_items(&items, tok).map_err(anyhow::Error::msg)?;
    for stage in STAGES {
        // One collated batch: ours trains on it, and the reference gets exactly these sequences.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let (seqs, frontiers): (Vec<_>, Vec<_>) = data
            .iter()
            .map(|t| {
                let e = curriculum.example(t, stage, tok.special, &mut rng);
                ((e.input_ids, e.labels), e.thought_frontiers)
            })
            .unzip();
        // Frontier supervision's targets, as the trainer attaches them (coconut::train::make_batch).
        let frontiers: Vec<Vec<Vec<u32>>> = if curriculum.frontier_weight > 0.0 { frontiers } else { vec![Vec::new(); seqs.len()] };
        let on_device = |seqs: &[(Vec<u32>, Vec<i64>)], frontiers: &[Vec<Vec<u32>>], d: &Device| {
            let b = DeviceBatch::new(&collate(seqs, tok.special), d);
            if curriculum.frontier_weight > 0.0 { b.with_thought_frontiers(frontiers, tok.vocab_size()) } else { b }
        };
        let host_batch = collate(&seqs, tok.special);
        let batch = on_device(&seqs, &frontiers, &ad);
        // One shard a device (only data-parallel steps use them).
        let shards: Vec<DeviceBatch> = match devices.len() {
            1 => Vec::new(),
            n => {
                let per = seqs.len().div_ceil(n);
                seqs.chunks(per).zip(frontiers.chunks(per)).zip(&devices).map(|((part, f), d)| on_device(part, f, d)).collect()
            }
        };
        let mut model = config.init(&ad);
        let mut optim = OptimConfig { optimizer, ..OptimConfig::default() }.optimizer();
        let step = |model, optim: &mut _| match devices.len() {
            1 => optimizer_step(model, optim, std::slice::from_ref(&batch), curriculum, 1e-4),
            _ => optimizer_step_multi(model, optim, &shards, &devices, curriculum, 1e-4),
        };
        let (m, loss) = step(model, &mut optim); // warm-up
        loss.into_data();
        model = m;
        let t0 = Instant::now();
        let mut last = None;
        for _ in 0..steps {
            let (m, loss) = step(model, &mut optim);
            model = m;
            last = Some(loss);
        }
        last.expect("steps").into_data(); // one read-back at the end: the work is done
        let secs = t0.elapsed().as_secs_f64();
        let rate = (batch_size * steps) as f64 / secs;
        eprintln!("  train stage {stage}, {} worker(s): {rate:.2} samples/s (sequence length {})", devices.len(), batch.len());
        t.samples_per_s.insert(format!("stage{stage}"), json!(rate));
        let flops = train_flops_per_token(config, batch.len()) * (batch.len() * batch_size * steps) as f64;
        t.gflops.insert(format!("stage{stage}"), json!(flops / secs / 1e9));
        t.batches.insert(format!("stage{stage}"), batch_json(&host_batch, &frontiers));
    }
    Ok(t)
}

/// Generation figures and the prompts they were measured on.
struct Generation {
    n: usize,
    prompts: Vec<Vec<u32>>,
    new_tokens: Vec<usize>,
    latency: Value,
    thought_ms: Value,
    questions_per_s: serde_json::Map<String, Value>,
}

/// Batch-1 latency (k = 6, the answer's length in new tokens) on the first `n` test questions, the
/// cost of one thought, and batched throughput.
fn bench_generation(config: &Gpt2Config, tok: &CoconutTokenizer, test_tok: &[Tokenized], n: usize, device: &Device) -> Generation {
    let curriculum = Curriculum { variant: Variant::Coconut, ..Curriculum::default() };
    let prompts: Vec<Vec<u32>> = test_tok.iter().map(|t| curriculum.prompt(t, K, tok.special)).collect();
    let new_tokens: Vec<usize> = test_tok.iter().map(|t| t.answer.len()).collect();
    let model = config.init(device);
    generate(&model, &prompts[..1], tok.special, 2, true, device); // warm-up
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        generate(&model, &prompts[i..=i], tok.special, new_tokens[i], true, device);
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let latency = stats(&mut ms);
    // Cost of one continuous thought at batch 1: the prompt's multi-pass forward with k = 6 thoughts
    // against the same prompt with none, per thought.
    let mut thought_ms = Vec::with_capacity(n);
    for t in test_tok.iter().take(n) {
        let time = |k: usize| {
            let b = DeviceBatch::new(&coconut::generate::collate_prompts(&[curriculum.prompt(t, k, tok.special)], tok.special), device);
            let t0 = Instant::now();
            let out = coconut::coconut::forward(&model, &b, true);
            out.hidden.slice([0..1, b.len() - 1..b.len()]).into_data();
            t0.elapsed().as_secs_f64() * 1e3
        };
        let (with, without) = (time(K), time(0));
        thought_ms.push((with - without) / K as f64);
    }
    let thought_ms = stats(&mut thought_ms);
    eprintln!("  generation batch 1, k = {K}: {:.1} ms mean per question ({n} questions)", latency["mean"].as_f64().unwrap_or(0.0));
    let longest = *new_tokens.iter().max().unwrap_or(&1);
    let mut questions_per_s = serde_json::Map::new();
    for b in [32, 128] {
        let b = b.min(prompts.len());
        let t0 = Instant::now();
        generate(&model, &prompts[..b], tok.special, longest, true, device);
        let rate = b as f64 / t0.elapsed().as_secs_f64();
        eprintln!("  generation batch {b}: {rate:.1} questions/s");
        questions_per_s.insert(format!("b{b}"), json!(rate));
    }
    Generation { n, prompts, new_tokens, latency, thought_ms, questions_per_s }
}

/// Runs scripts/bench_reference.py in the repository's Python venv (created by scripts/bench-reference-env).
/// The repository holding the scripts and configs: the current directory (a binary carried to
/// another machine runs from its checkout), else the one this binary was built from.
fn repository() -> PathBuf {
    if Path::new("scripts/bench_reference.py").exists() { PathBuf::from(".") } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../..") }
}

fn run_reference(spec: &Value) -> Result<Value> {
    let root = repository();
    let setup = root.join("scripts/bench-reference-env");
    let out = std::process::Command::new(&setup).output().with_context(|| format!("running {}", setup.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", setup.display(), String::from_utf8_lossy(&out.stderr));
    }
    let python = String::from_utf8(out.stdout)?.trim().to_string();
    let dir = std::env::temp_dir().join(format!("coconut-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (dir.join("in.json"), dir.join("out.json"));
    std::fs::write(&input, serde_json::to_vec(spec)?)?;
    eprintln!("reference: PyTorch + transformers ({python})…");
    let status = std::process::Command::new(&python).arg(root.join("scripts/bench_reference.py")).arg(&input).arg(&output).status()?;
    if !status.success() {
        bail!("the PyTorch reference failed ({status})");
    }
    let v: Value = serde_json::from_slice(&std::fs::read(&output)?)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(v)
}

/// Ours over PyTorch. Training: the median over rounds of each round's ratio (both measured back to
/// back); also our workers over our one worker. Generation: one measurement each.
fn ratios(report: &Value, rounds: &[Value]) -> Value {
    let mut r = serde_json::Map::new();
    for s in STAGES {
        let key = format!("stage{s}");
        let ratio = |ours: &[&str], theirs: &[&str]| {
            let figure = |round: &Value, path: &[&str]| at(round, path)[&key].as_f64().unwrap_or(f64::NAN);
            json!(median(rounds.iter().map(|round| figure(round, ours) / figure(round, theirs)).collect()))
        };
        r.insert(format!("train_{key}_vs_multipass"), ratio(&["train_samples_per_s"], &["reference", "train_samples_per_s"]));
        r.insert(format!("train_{key}_vs_plain"), ratio(&["train_samples_per_s"], &["reference", "train_plain_samples_per_s"]));
        r.insert(format!("train_{key}_other_threads_vs_plain"), ratio(&["train_samples_per_s_other_threads"], &["reference_other_threads", "train_plain_samples_per_s"]));
        r.insert(format!("train_{key}_workers_vs_one"), ratio(&["train_samples_per_s_workers"], &["train_samples_per_s"]));
        if report["train_workers"] == report["other_threads"] {
            r.insert(format!("train_{key}_workers_vs_plain"), ratio(&["train_samples_per_s_workers"], &["reference_other_threads", "train_plain_samples_per_s"]));
        }
    }
    let theirs = &report["reference"];
    let ours_ms = report["gen_latency_ms_b1"]["mean"].as_f64().unwrap_or(f64::NAN);
    r.insert("gen_b1_vs_recompute".into(), json!(theirs["gen_latency_ms_b1_recompute"]["mean"].as_f64().unwrap_or(f64::NAN) / ours_ms));
    r.insert("gen_b1_vs_kvcache".into(), json!(theirs["gen_latency_ms_b1_kvcache"]["mean"].as_f64().unwrap_or(f64::NAN) / ours_ms));
    for b in ["b32", "b128"] {
        let o = report["gen_questions_per_s"][b].as_f64().unwrap_or(f64::NAN);
        r.insert(format!("gen_{b}"), json!(o / theirs["gen_questions_per_s"][b].as_f64().unwrap_or(f64::NAN)));
    }
    Value::Object(r)
}

fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().map(|x| if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.2}") }).unwrap_or_else(|| "–".into());
    let has_ref = !r["reference"].is_null();
    let mut s = format!(
        "bench `{}`: {} layers × {}, {} parameters, batch {}, {} thread(s){}\n\n| measure | ours (Burn) |{}\n|---|---|{}\n",
        r["config"].as_str().unwrap_or(""),
        r["model"]["n_layer"],
        r["model"]["n_embd"],
        r["model"]["parameters"],
        r["batch_size"],
        r["threads"],
        match r["rounds"].as_u64() {
            Some(n) if n > 1 => format!("; training: medians of {n} rounds, ratios the medians of the rounds' ratios"),
            _ => String::new(),
        },
        if has_ref { " PyTorch | ours / PyTorch |" } else { "" },
        if has_ref { "---|---|" } else { "" }
    );
    for Row { name, ours, theirs, ratio } in rows(r) {
        s += &format!("| {name} | {} |", f(&ours));
        if has_ref {
            s += &format!(" {} | {} |", theirs.as_ref().map(f).unwrap_or_else(|| "–".into()), ratio.as_ref().map(f).unwrap_or_else(|| "–".into()));
        }
        s += "\n";
    }
    s
}

/// One line of the bench table: our figure, PyTorch's, and their ratio.
struct Row {
    name: String,
    ours: Value,
    theirs: Option<Value>,
    ratio: Option<Value>,
}

/// The lines of the bench table, from a report (with its reference figures when it has them).
fn rows(r: &Value) -> Vec<Row> {
    let refv = &r["reference"];
    let row = |name: String, ours: &Value, theirs: Option<&Value>, ratio: Option<&Value>| Row { name, ours: ours.clone(), theirs: theirs.cloned(), ratio: ratio.cloned() };
    let mut rows = Vec::new();
    for st in STAGES {
        let k = format!("stage{st}");
        let ours = &r["train_samples_per_s"][&k];
        rows.push(row(format!("train samples/s, stage {st} (vs PyTorch Coconut multi-pass)"), ours, Some(&refv["train_samples_per_s"][&k]), Some(&r["ratios"][format!("train_{k}_vs_multipass")])));
        if !refv.is_null() {
            rows.push(row(format!("train samples/s, stage {st} (vs PyTorch plain forward+backward)"), ours, Some(&refv["train_plain_samples_per_s"][&k]), Some(&r["ratios"][format!("train_{k}_vs_plain")])));
        }
    }
    // Both of these against PyTorch's plain step at the other thread count, when measured.
    let other_ref = &r["reference_other_threads"]["train_plain_samples_per_s"];
    let vs_other = |k: &str, ratio: String| -> (Option<Value>, Option<Value>) {
        let theirs = &other_ref[k];
        if theirs.is_null() { (None, None) } else { (Some(theirs.clone()), Some(r["ratios"][ratio].clone())) }
    };
    if let Some(other) = r["train_samples_per_s_other_threads"].as_object() {
        for st in STAGES {
            let k = format!("stage{st}");
            let (theirs, ratio) = vs_other(&k, format!("train_{k}_other_threads_vs_plain"));
            let name = format!("train samples/s, stage {st}, 1 worker × {} thread(s) (vs PyTorch plain at {0} threads)", r["other_threads"]);
            rows.push(Row { name, ours: other[&k].clone(), theirs, ratio });
        }
    }
    if let Some(parallel) = r["train_samples_per_s_workers"].as_object() {
        for st in STAGES {
            let k = format!("stage{st}");
            let ours = &parallel[&k];
            let speedup = r["ratios"][format!("train_{k}_workers_vs_one")].as_f64().unwrap_or(f64::NAN);
            let (theirs, ratio) = if r["train_workers"] == r["other_threads"] { vs_other(&k, format!("train_{k}_workers_vs_plain")) } else { (None, None) };
            let name = format!("train samples/s, stage {st}, {} workers ({speedup:.2}× one worker; vs PyTorch plain at as many threads)", r["train_workers"]);
            rows.push(Row { name, ours: ours.clone(), theirs, ratio });
        }
    }
    let latency = &r["gen_latency_ms_b1"];
    rows.push(row("generation ms/question, batch 1, k = 6 (vs official-style re-computation)".into(), &latency["mean"], Some(&refv["gen_latency_ms_b1_recompute"]["mean"]), Some(&r["ratios"]["gen_b1_vs_recompute"])));
    rows.push(row("generation ms/question, batch 1, k = 6 (vs HF with KV cache)".into(), &latency["mean"], Some(&refv["gen_latency_ms_b1_kvcache"]["mean"]), Some(&r["ratios"]["gen_b1_vs_kvcache"])));
    for p in ["p50", "p95"] {
        rows.push(row(format!("generation {p} ms, batch 1 (vs HF with KV cache)"), &latency[p], Some(&refv["gen_latency_ms_b1_kvcache"][p]), None));
    }
    rows.push(row("ms per continuous thought, batch 1 (prompt forward k = 6 minus k = 0, / 6)".into(), &r["thought_ms_b1"]["mean"], None, None));
    for b in ["b32", "b128"] {
        rows.push(row(format!("generation questions/s, batch {}", &b[1..]), &r["gen_questions_per_s"][b], Some(&refv["gen_questions_per_s"][b]), Some(&r["ratios"][format!("gen_{b}")])));
    }
    for st in STAGES {
        let gflops = &r["train_gflops"][format!("stage{st}")];
        let share = 100.0 * gflops.as_f64().unwrap_or(0.0) / r["gemm_peak_gflops"].as_f64().unwrap_or(f64::NAN);
        rows.push(row(format!("training GFLOP/s, stage {st} (fraction of GEMM peak: {share:.0}%)"), gflops, None, None));
    }
    rows.push(row("f32 GEMM peak, GFLOP/s (1024³ matmul)".into(), &r["gemm_peak_gflops"], Some(&refv["gemm_peak_gflops"]), None));
    rows.push(row("peak RSS, MB".into(), &r["peak_rss_mb"], Some(&refv["peak_rss_mb"]), None));
    rows
}
