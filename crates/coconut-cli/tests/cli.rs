//! The `coconut` binary as a user runs it: import an HF directory, score text, see clear errors.

use std::process::Command;

mod common;
use common::{ScratchDir, coconut, coconut_ok, fresh_dir, root};

/// `import-hf` then `score` on `backend`; the printed log-probs must be HF's to 1e-4.
fn import_and_score(backend: &str) -> ScratchDir {
    let out_dir = ScratchDir::new(&format!("cli-import-{backend}"));
    let hf_dir = root().join("tests/fixtures/gpt2-tiny");
    let out = coconut(&["--backend", backend, "import-hf", "--hf-dir", hf_dir.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "import-hf failed: {}", String::from_utf8_lossy(&out.stderr));

    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/gpt2-tiny-expected.json")).unwrap()).unwrap();
    let score = &expected["score"];
    let out = coconut(&["--backend", backend, "score", "--checkpoint", out_dir.to_str().unwrap(), "--text", score["text"].as_str().unwrap()]);
    assert!(out.status.success(), "score failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    assert_eq!(got["tokens"], score["tokens"]);
    let (got, want) = (got["logprobs"].as_array().unwrap(), score["logprobs"].as_array().unwrap());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-4, "{backend}: logprob {i}: ours {g}, HF {w}");
    }
    out_dir
}

#[test]
fn import_hf_then_score_prints_hf_logprobs() {
    let out_dir = import_and_score("flex");

    // Unknown words: a clear error naming them, nothing printed on stdout.
    let out = coconut(&["score", "--checkpoint", out_dir.to_str().unwrap(), "--text", "Tom is a florp."]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown words (not in the model's vocabulary): florp"));
}

#[test]
fn other_cpu_backend_and_wgpu_on_vulkan_print_the_same_logprobs() {
    import_and_score("ndarray");
    // lavapipe on a machine without a GPU: the same WGSL kernels as the browser.
    import_and_score("wgpu");
}

#[test]
fn missing_hf_files_and_unknown_backends_are_clear_errors() {
    let out = coconut(&["import-hf", "--hf-dir", "/nonexistent", "--out", "/tmp/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.json"));
    let out = coconut(&["--backend", "tpu", "import-hf", "--hf-dir", "x", "--out", "y"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend `tpu`"));
}

#[test]
fn help_describes_the_default_run_and_lists_subcommands() {
    let help = String::from_utf8_lossy(&coconut(&["train", "--help"]).stdout).to_string();
    assert!(help.contains("configs/prosqa-recall-frontier-coconut.toml"), "{help}");
    let help = String::from_utf8_lossy(&coconut(&["--help"]).stdout).to_string();
    for sub in ["import-hf", "score", "tokenize", "train", "generate", "eval", "data", "bench", "export-web"] {
        assert!(help.contains(sub), "--help lacks {sub}");
    }
}

#[test]
fn data_commands_generate_check_and_describe() {
    let dir = fresh_dir("cli-data");
    let file = dir.join("prosqa.json");
    coconut_ok(&["data", "prosqa", "--n", "50", "--seed", "3", "--out", file.to_str().unwrap()]);
    let out = coconut(&["data", "check", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("50 items, all valid"));
    let out = coconut(&["data", "stats", file.to_str().unwrap(), "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(stats["stats"]["items"], 50);
    assert!(stats["stats"]["nodes"]["mean"].as_f64().unwrap() > 15.0);

    // A bad item: non-zero exit, the item index and field named.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut items: serde_json::Value = serde_json::from_str(&text).unwrap();
    items[7]["root"] = 999.into();
    std::fs::write(&file, items.to_string()).unwrap();
    let out = coconut(&["data", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("item 7, field `root`"), "{}", String::from_utf8_lossy(&out.stderr));

    // Smaller graphs on request (what the trainer's graph warm-up starts from); impossible sizes are refused.
    let small = dir.join("small.json");
    coconut_ok(&["data", "prosqa", "--n", "30", "--nodes", "6-9", "--hops", "1-6", "--out", small.to_str().unwrap()]);
    assert!(coconut(&["data", "check", small.to_str().unwrap()]).status.success());
    let out = coconut(&["data", "stats", small.to_str().unwrap(), "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((6.0..=9.0).contains(&stats["stats"]["nodes"]["mean"].as_f64().unwrap()), "{stats}");
    let out = coconut(&["data", "prosqa", "--n", "3", "--nodes", "5-6", "--hops", "4-6", "--out", small.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("need at least 7 nodes"), "{}", String::from_utf8_lossy(&out.stderr));

    let pronto = dir.join("prontoqa.json");
    assert!(coconut(&["data", "prontoqa", "--n", "20", "--out", pronto.to_str().unwrap()]).status.success());
    assert!(coconut(&["data", "check", pronto.to_str().unwrap()]).status.success());
    let txt = dir.join("gsm.txt");
    std::fs::write(&txt, "Q1?||<<1+1=2>> #### 2\n").unwrap();
    let gsm = dir.join("gsm.json");
    assert!(coconut(&["data", "gsm8k", "--input", txt.to_str().unwrap(), "--out", gsm.to_str().unwrap()]).status.success());
    assert!(coconut(&["data", "check", gsm.to_str().unwrap()]).status.success());
}

const TINY: &str = r#"
[model]
n_layer = 1
n_embd = 32
n_head = 2
n_positions = 768
dropout = 0.1

[data]
dataset = "prosqa"
train_size = 64
val_size = 8
seed = 3

[curriculum]
variant = "coconut"
max_latent_stage = 2
epochs_per_stage = 1

[optim]
lr = 1e-3
batch_size = 4

[run]
epochs = 40
seed = 1
log_every = 1
checkpoint_every = 3
eval_max_new_tokens = 8
"#;

fn score_text(ckpt: &std::path::Path) -> String {
    let out = coconut_ok(&["score", "--checkpoint", ckpt.to_str().unwrap(), "--text", "Tom is a wumpus. Every wumpus is a yumpus."]);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn killed_and_resumed_training_ends_with_the_weights_of_an_uninterrupted_run() {
    let dir = fresh_dir("resume");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY.replace("[run]\n", "[run]\nkeep_epochs = true\n")).unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    // One worker: TINY has dropout, whose masks N CPU workers draw from one generator in thread order.
    coconut_ok(&["--devices", "1", "train", "--config", config.to_str().unwrap(), "--out", whole.to_str().unwrap()]);
    let metrics = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().any(|l| l.contains("val_accuracy")) && metrics.lines().any(|l| l.contains("\"loss\"")));
    // best/ is the best of the final stage (stage ≥ 3 here: every step a thought), not of a CoT stage.
    let final_best = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["stage"].as_u64().unwrap() >= 3)
        .filter_map(|v| v["val_accuracy"].as_f64())
        .fold(f64::MIN, f64::max);
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(whole.join("last/trainer.json")).unwrap()).unwrap();
    assert_eq!(state["best_val_accuracy"].as_f64().unwrap(), final_best);
    assert!(state["elapsed_s"].as_f64().unwrap() > 0.0);

    // SIGKILL once a mid-run checkpoint exists, then resume.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coconut"))
        .args(["--devices", "1", "train", "--config", config.to_str().unwrap(), "--out", killed.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("last/trainer.json");
    let step = loop {
        if let Ok(s) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
            && v["global_step"].as_u64().unwrap_or(0) >= 30
        {
            break v["global_step"].as_u64().unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(step < 320, "killed mid-run (step {step} of 320)");
    let out = coconut_ok(&["--devices", "1", "train", "--resume", killed.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming at epoch"));
    assert_eq!(score_text(&whole.join("last")), score_text(&killed.join("last")), "resumed weights differ from the uninterrupted run");
    // metrics.jsonl logs each step once, as the uninterrupted run's does.
    let logged = |run: &std::path::Path| -> Vec<(u64, bool)> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["step"].as_u64().unwrap(), v.get("val_accuracy").is_some()))
            .collect()
    };
    assert_eq!(logged(&whole), logged(&killed), "the resumed run's metrics.jsonl repeats or misses steps");
    // run.keep_epochs: the model after each of the 40 epochs, the last one being last/'s.
    let kept = |run: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(run.join("epochs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort_by_key(|n| n.trim_start_matches("epoch-").parse::<usize>().unwrap_or(usize::MAX));
        names
    };
    assert_eq!(kept(&whole), (1..=40).map(|n| format!("epoch-{n}")).collect::<Vec<_>>());
    assert_eq!(kept(&killed), kept(&whole));
    assert_eq!(score_text(&killed.join("epochs/epoch-40")), score_text(&whole.join("last")));
}

#[test]
fn nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = fresh_dir("nan");
    let config = dir.join("nan.toml");
    std::fs::write(&config, TINY.replace("lr = 1e-3", "lr = 1e30").replace("checkpoint_every = 3", "checkpoint_every = 1")).unwrap();
    let out = coconut(&["train", "--config", config.to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at step") && err.contains("last good checkpoint"), "{err}");
    assert!(err.contains("NaN") || err.contains("inf"), "{err}");
    // Step 1 is finite and checkpointed (checkpoint_every = 1); that last good checkpoint still loads.
    score_text(&dir.join("run/last"));
}

#[test]
fn a_malformed_config_is_a_clear_error() {
    let dir = fresh_dir("badcfg");
    let config = dir.join("bad.toml");
    std::fs::write(&config, TINY.replace("n_head = 2", "n_heads = 2")).unwrap();
    let out = coconut(&["train", "--config", config.to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid training config") && err.contains("n_heads"), "{err}");
}

/// Learning through thoughts: a tiny GPT-2 trained with the full curriculum (stages 0..6, c = 1)
/// answers all of 16 ProsQA questions after 6 continuous thoughts and no language steps (~1.5 min).
#[test]
fn a_tiny_model_overfits_16_questions_through_six_thoughts() {
    let dir = fresh_dir("overfit");
    let data = dir.join("q16.json");
    assert!(coconut(&["data", "prosqa", "--n", "16", "--seed", "11", "--out", data.to_str().unwrap()]).status.success());
    let config = dir.join("overfit.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[model]
n_layer = 2
n_embd = 64
n_head = 4
n_positions = 768

[data]
dataset = "files"
train_file = "{0}"
val_file = "{0}"

[curriculum]
variant = "coconut"
max_latent_stage = 6
epochs_per_stage = 30

[optim]
lr = 3e-3
batch_size = 16

[run]
epochs = 240
seed = 1
log_every = 20
checkpoint_every = 1000
eval_max_new_tokens = 24
"#,
            data.display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    coconut_ok(&["train", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    let report = dir.join("report.json");
    let (ckpt, data_path) = (run.join("last"), data.to_str().unwrap().to_string());
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", ckpt.to_str().unwrap(), "--data", &data_path, "--k", "6", "--max-new-tokens", "24"];
        args.extend_from_slice(extra);
        coconut_ok(&args)
    };
    eval(&["--out", report.to_str().unwrap()]);
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["n"], 16);
    assert_eq!(r["k"], 6);
    let total: u64 = r["categories"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 16, "categories sum to n");
    assert_eq!(r["accuracy"].as_f64().unwrap(), 1.0, "{r}");
    // Accuracy by reasoning-chain length: one entry per length in the data, counts summing to n.
    let items: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    let mut lengths: Vec<String> = items.iter().map(|i| i["steps"].as_array().unwrap().len().to_string()).collect();
    lengths.sort();
    lengths.dedup();
    let by_hops = r["by_hops"].as_object().unwrap();
    assert_eq!(by_hops.keys().cloned().collect::<std::collections::BTreeSet<_>>(), lengths.into_iter().collect(), "{r}");
    assert_eq!(by_hops.values().map(|h| h["n"].as_u64().unwrap()).sum::<u64>(), 16, "{r}");
    assert!(by_hops.values().all(|h| h["accuracy"] == 1.0 && h["correct"] == h["n"]), "{r}");
    // Six thoughts replace all language steps: the outputs are answer-only.
    assert_eq!(r["categories"]["correct_label"], 16, "{r}");
    // The official decoding style (batch 1, full re-run per token) gives the same report.
    let out = eval(&["--decoding", "reference"]);
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&reference["accuracy"], &reference["categories"]), (&r["accuracy"], &r["categories"]));
    assert_eq!(reference["decoding"], "reference");
}

#[test]
fn training_can_start_from_huggingface_gpt2_weights() {
    let dir = fresh_dir("init-hf");
    // Items in the fixture tokenizer's small vocabulary.
    let items = r#"[{"question": "Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or bompus?",
        "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus."], "answer": "Tom is a yumpus."}]"#;
    let data = dir.join("items.json");
    std::fs::write(&data, items).unwrap();
    let config = dir.join("hf.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[data]
dataset = "files"
train_file = "{0}"
val_file = "{0}"

[curriculum]
max_latent_stage = 2
epochs_per_stage = 1

[optim]
batch_size = 1

[run]
epochs = 2
init = "hf:{1}"
eval_max_new_tokens = 8
"#,
            data.display(),
            root().join("tests/fixtures/gpt2-tiny").display()
        ),
    )
    .unwrap();
    let out = coconut_ok(&["train", "--config", config.to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 layers, d=64"), "the HF model (2 layers, 64 wide) is trained, not the [model] section: {err}");
    score_text(&dir.join("run/last"));

    // Continue from that checkpoint at stage 1 (the official `resume`: a CoT-trained model starts
    // the latent stages without re-running stage 0).
    let text = std::fs::read_to_string(&config).unwrap();
    let stage1 = dir.join("stage1.toml");
    let init = format!("init = \"{}\"\nstart_epoch = 1\nepochs = 3", dir.join("run/last").display());
    std::fs::write(&stage1, text.replace(&format!("epochs = 2\ninit = \"hf:{}\"", root().join("tests/fixtures/gpt2-tiny").display()), &init))
        .unwrap();
    coconut_ok(&["train", "--config", stage1.to_str().unwrap(), "--out", dir.join("run1").to_str().unwrap()]);
    let metrics = std::fs::read_to_string(dir.join("run1/metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.iter().all(|r| r["epoch"] != 0), "epoch 0 is skipped: {metrics}");
    assert_eq!(records[0]["stage"], 1, "the run starts at stage 1: {metrics}");
    assert!(records.iter().any(|r| r["stage"] == 2), "and goes on to stage 2: {metrics}");
    // Grown on the way (twice as wide, one more block): the run trains the larger model.
    let grown = dir.join("grown.toml");
    std::fs::write(&grown, std::fs::read_to_string(&stage1).unwrap().replace("start_epoch = 1", "start_epoch = 2\ngrow_width = 2\ngrow_layers = 1"))
        .unwrap();
    let out = coconut_ok(&["train", "--config", grown.to_str().unwrap(), "--out", dir.join("run-grown").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 layers, d=128"), "the grown model (3 layers, 128 wide) is trained: {err}");
    score_text(&dir.join("run-grown/last"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&stage1).unwrap().replace("start_epoch = 1", "start_epoch = 3")).unwrap();
    let out = coconut(&["train", "--config", bad.to_str().unwrap(), "--out", dir.join("run2").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaves no epoch to train"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn data_parallel_training_on_two_workers_follows_the_single_device_losses() {
    let dir = fresh_dir("ddp");
    let config = dir.join("c.toml");
    // One device with 2 micro-batches per step vs two devices with one shard each: same global batch.
    std::fs::write(
        &config,
        TINY.replace("dropout = 0.1", "dropout = 0.0")
            .replace("epochs = 40", "epochs = 2")
            .replace("batch_size = 4", "batch_size = 4\ngrad_accum = 2"),
    )
    .unwrap();
    let losses = |devices: &str, name: &str| -> Vec<f64> {
        let run = dir.join(name);
        coconut_ok(&["--devices", devices, "train", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()]);
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
            .collect()
    };
    let (one, two) = (losses("1", "one"), losses("2", "two"));
    assert_eq!(one.len(), 32);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!((a - b).abs() <= 1e-4, "step {}: one device {a}, two {b}", i + 1);
    }
}

#[test]
fn export_web_writes_the_checkpoint_and_a_verifiable_web_manifest() {
    let dir = ScratchDir::new("export");
    let ckpt = import_and_score("flex");
    let out = dir.join("web");
    let res = coconut(&["export-web", "--checkpoint", ckpt.to_str().unwrap(), "--out", out.to_str().unwrap(), "--max-thoughts", "3"]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let web: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("web.json")).unwrap()).unwrap();
    assert_eq!(web["max_thoughts"], 3);
    let mut total = 0;
    for f in web["files"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(f["name"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, f["bytes"].as_u64().unwrap());
        total += bytes.len() as u64;
    }
    assert_eq!(web["total_bytes"].as_u64().unwrap(), total);
    // The export is itself a checkpoint; a corrupt source is refused before anything is written.
    score_text(&out);
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let res = coconut(&["export-web", "--checkpoint", bad.to_str().unwrap(), "--out", dir.join("web2").to_str().unwrap()]);
    assert!(!res.status.success() && !dir.join("web2").exists());
}

#[test]
fn bench_writes_the_interface_keys_and_a_markdown_table() {
    let dir = fresh_dir("bench");
    let json = dir.join("b.json");
    let test = root().join("../shared/prosqa/prosqa_test.json");
    coconut_ok(&[
        "bench",
        "--config",
        "flagship",
        "--json",
        json.to_str().unwrap(),
        "--questions",
        "3",
        "--train-steps",
        "1",
        "--rounds",
        "2",
        "--test-file",
        test.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in ["stage0", "stage3", "stage6"] {
        assert!(v["train_samples_per_s"][key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    // Two rounds, each kept; a figure is their median (of two: their mean), a speed-up the median of the rounds' own.
    let rounds = v["train_rounds"].as_array().unwrap();
    assert_eq!((v["rounds"].as_u64(), rounds.len()), (Some(2), 2), "{v}");
    let per_round = |r: &serde_json::Value, series: &str| r[series]["stage3"].as_f64().unwrap();
    let mean = |series: &str| (per_round(&rounds[0], series) + per_round(&rounds[1], series)) / 2.0;
    assert!((v["train_samples_per_s"]["stage3"].as_f64().unwrap() - mean("train_samples_per_s")).abs() < 1e-9, "{v}");
    for key in ["mean", "p50", "p95"] {
        assert!(v["gen_latency_ms_b1"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    for key in ["b32", "b128"] {
        assert!(v["gen_questions_per_s"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 10.0);
    assert!(v["gemm_peak_gflops"].as_f64().unwrap() > 0.1);
    let md = std::fs::read_to_string(dir.join("b.md")).unwrap();
    assert!(md.contains("| train samples/s, stage 6"), "{md}");
    // The flagship's model (rotary, 8 heads, its batch size), also data-parallel over the workers a run uses.
    assert_eq!((v["model"]["n_head"].as_u64(), v["batch_size"].as_u64()), (Some(8), Some(16)), "{v}");
    // ... and its optimizer (Muon for the blocks' matrices) and curriculum (frontier supervision at 0.2).
    assert_eq!(v["optimizer"], "muon", "{v}");
    assert_eq!(v["frontier_weight"].as_f64(), Some(0.2), "{v}");
    if v["train_workers"].as_u64().unwrap() > 1 {
        assert!(v["train_samples_per_s_workers"]["stage3"].as_f64().unwrap() > 0.0, "{v}");
        let speedups: Vec<f64> = rounds.iter().map(|r| per_round(r, "train_samples_per_s_workers") / per_round(r, "train_samples_per_s")).collect();
        assert!((v["ratios"]["train_stage3_workers_vs_one"].as_f64().unwrap() - (speedups[0] + speedups[1]) / 2.0).abs() < 1e-9, "{v}");
        assert!(md.contains("workers ("), "{md}");
    }
    // One worker at the other thread count too (1 thread if this run had several, else every core).
    if v["other_threads"] != v["threads"] {
        assert!(v["train_samples_per_s_other_threads"]["stage6"].as_f64().unwrap() > 0.0, "{v}");
        assert!(md.contains(&format!("1 worker × {} thread(s)", v["other_threads"])), "{md}");
    }
    // `page`: the page's shipped model (rotary, the convolution) at the page's fine-tuning batch, AdamW, no frontier term.
    let page = dir.join("page.json");
    coconut_ok(&["bench", "--config", "page", "--json", page.to_str().unwrap(), "--questions", "1", "--train-steps", "1", "--test-file", test.to_str().unwrap()]);
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&page).unwrap()).unwrap();
    assert_eq!((p["model"]["position"].as_str(), p["model"]["qkv_conv"].as_u64(), p["batch_size"].as_u64()), (Some("rope"), Some(4), Some(8)), "{p}");
    assert_eq!((p["optimizer"].as_str(), p["frontier_weight"].as_f64()), (Some("adamw"), Some(0.0)), "{p}");
    // An unknown shape is refused by name.
    let out = coconut(&["bench", "--config", "huge", "--json", json.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("one of flagship, small, page, gpt2"));
}

#[test]
fn training_into_an_existing_run_is_refused_and_changes_nothing() {
    let dir = fresh_dir("existing-run");
    std::fs::write(dir.join("metrics.jsonl"), "{\"step\": 160}\n").unwrap();
    std::fs::write(dir.join("config.toml"), "# the run's own config\n").unwrap();
    let config = root().join("configs/tiny-overfit.toml");
    let out = coconut(&["train", "--config", config.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a training run") && err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap(), "{\"step\": 160}\n");
    assert_eq!(std::fs::read_to_string(dir.join("config.toml")).unwrap(), "# the run's own config\n");
}
