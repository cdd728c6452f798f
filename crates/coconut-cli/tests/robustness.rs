//! Nothing a user had is lost, and no input they can type makes `coconut` panic or hang: each
//! test is one way a careful user or hostile input meets the CLI.

mod common;
use std::path::{Path, PathBuf};

use common::{coconut, coconut_ok, fresh_dir, refused, root};

/// The tiny HF GPT-2 (64 positions, a word-level vocabulary of ProsQA words) as a checkpoint in `dir`.
fn tiny_checkpoint(dir: &Path) -> PathBuf {
    let ckpt = dir.join("tiny-gpt2");
    let hf = root().join("tests/fixtures/gpt2-tiny");
    coconut_ok(&["import-hf", "--hf-dir", hf.to_str().unwrap(), "--out", ckpt.to_str().unwrap()]);
    ckpt
}

/// A 2-epoch run of a tiny model on 16 generated questions (a few seconds), and its config file.
fn short_run(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        "[model]\nn_layer = 1\nn_embd = 32\nn_head = 2\ndropout = 0.0\n\n[data]\ndataset = \"prosqa\"\ntrain_size = 16\nval_size = 4\nseed = 3\n\n\
         [curriculum]\nmax_latent_stage = 1\nepochs_per_stage = 1\n\n[optim]\nlr = 1e-3\nbatch_size = 4\n\n\
         [run]\nepochs = 2\nseed = 1\nlog_every = 1\ncheckpoint_every = 2\neval_max_new_tokens = 8\n",
    )
    .unwrap();
    let run = dir.join(name);
    coconut_ok(&["--devices", "1", "train", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    (config, run)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    names
}

#[test]
fn export_and_import_never_delete_foreign_files() {
    let dir = fresh_dir("export-foreign");
    let ckpt = tiny_checkpoint(&dir);
    // A run directory with the checkpoint inside it: refused, everything still there.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::rename(&ckpt, run.join("best")).unwrap();
    std::fs::write(run.join("config.toml"), "# the run's config\n").unwrap();
    refused(&["export-web", "--checkpoint", s(&run.join("best")), "--out", s(&run)], "inside --checkpoint");
    assert_eq!(listing(&run), ["best", "config.toml"]);
    // A directory of someone else's files (a model card): the export moves in beside them, and
    // a second export replaces its own files only.
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("README.md"), "the model card").unwrap();
    coconut_ok(&["export-web", "--checkpoint", s(&run.join("best")), "--out", s(&web)]);
    coconut_ok(&["export-web", "--checkpoint", s(&run.join("best")), "--out", s(&web), "--max-thoughts", "3"]);
    assert_eq!(listing(&web), ["README.md", "config.json", "manifest.json", "model.bpk", "tokenizer.json", "web.json"]);
    assert_eq!(std::fs::read_to_string(web.join("README.md")).unwrap(), "the model card");
    let listed: serde_json::Value = serde_json::from_slice(&std::fs::read(web.join("web.json")).unwrap()).unwrap();
    assert_eq!(listed["max_thoughts"], 3);
    // A web.json naming a file outside the directory never makes the export delete it.
    std::fs::write(dir.join("precious.txt"), "keep").unwrap();
    let mut crafted = listed.clone();
    crafted["files"].as_array_mut().unwrap().push(serde_json::json!({"name": "../precious.txt", "bytes": 4, "sha256": ""}));
    std::fs::write(web.join("web.json"), crafted.to_string()).unwrap();
    coconut_ok(&["export-web", "--checkpoint", s(&run.join("best")), "--out", s(&web)]);
    assert!(dir.join("precious.txt").exists());
    // import-hf replaces a checkpoint, never a directory of other things.
    let hf = root().join("tests/fixtures/gpt2-tiny");
    refused(&["import-hf", "--hf-dir", s(&hf), "--out", s(&run)], "not a checkpoint's (best/, config.toml)");
    coconut_ok(&["import-hf", "--hf-dir", s(&hf), "--out", s(&run.join("best"))]);
    assert_eq!(listing(&run), ["best", "config.toml"]);
}

#[test]
fn export_web_loads_the_weights_before_exporting() {
    let dir = fresh_dir("export-weights");
    let ckpt = tiny_checkpoint(&dir);
    // Empty weights with a manifest that agrees (size 0, SHA-256 of nothing): they cannot make a model.
    std::fs::write(ckpt.join("model.bpk"), b"").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("manifest.json")).unwrap()).unwrap();
    manifest["weights_bytes"] = 0.into();
    manifest["weights_sha256"] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into();
    std::fs::write(ckpt.join("manifest.json"), manifest.to_string()).unwrap();
    refused(&["export-web", "--checkpoint", s(&ckpt), "--out", s(&dir.join("web"))], "model.bpk");
    assert!(!dir.join("web").exists());
}

#[test]
fn manifest_file_names_cannot_leave_the_checkpoint() {
    let dir = fresh_dir("traversal");
    let ckpt = tiny_checkpoint(&dir);
    std::fs::copy(ckpt.join("model.bpk"), dir.join("x.bpk")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("manifest.json")).unwrap()).unwrap();
    manifest["weights_file"] = "../x.bpk".into();
    std::fs::write(ckpt.join("manifest.json"), manifest.to_string()).unwrap();
    refused(&["score", "--checkpoint", s(&ckpt), "--text", "Tom is a wumpus."], "only plain file names");
    refused(&["export-web", "--checkpoint", s(&ckpt), "--out", s(&dir.join("web"))], "only plain file names");
}

#[test]
fn an_invalid_config_is_refused_before_anything_is_written() {
    let dir = fresh_dir("bad-config");
    let base = std::fs::read_to_string(root().join("configs/tiny-overfit.toml")).unwrap();
    for (from, to, expected) in [
        ("batch_size = 16", "batch_size = 0", "optim.batch_size"),
        ("n_head = 4", "n_head = 3", "multiple of model.n_head"),
        ("lr = 3e-3", "lr = -1.0", "optim.lr"),
        ("epochs = 240", "epochs = 0", "run.epochs"),
    ] {
        let config = dir.join("bad.toml");
        std::fs::write(&config, base.replace(from, to)).unwrap();
        let out = dir.join("run");
        refused(&["train", "--config", s(&config), "--out", s(&out)], expected);
        assert!(!out.exists(), "{to}: the refused run wrote {}", out.display());
    }
}

#[test]
fn overwrite_replaces_a_run_but_keeps_other_files() {
    let dir = fresh_dir("overwrite");
    let (config, run) = short_run(&dir, "run");
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    refused(&["--devices", "1", "train", "--config", s(&config), "--out", s(&run)], "--overwrite");
    coconut_ok(&["--devices", "1", "train", "--config", s(&config), "--out", s(&run), "--overwrite"]);
    assert_eq!(std::fs::read_to_string(run.join("notes.txt")).unwrap(), "mine");
    // The new run's metrics start at step 1 again, each step once.
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_run() {
    let dir = fresh_dir("lock");
    let (_, run) = short_run(&dir, "run");
    // A live process (this test) holds the lock: refused, naming its PID.
    std::fs::write(run.join("train.lock"), format!("{}\n", std::process::id())).unwrap();
    refused(&["--devices", "1", "train", "--resume", s(&run)], &format!("PID {}", std::process::id()));
    // A lock left by a process that is gone (a kill -9) is taken over, and released at the end.
    std::fs::write(run.join("train.lock"), "4000000000\n").unwrap();
    let out = coconut_ok(&["--devices", "1", "train", "--resume", s(&run)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("taking it over"), "{err}");
    // A CPU resume starts no GPU driver (Burn's default device follows --backend).
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!run.join("train.lock").exists());
}

#[test]
fn resume_refuses_a_changed_config_or_a_corrupt_optimizer_state() {
    let dir = fresh_dir("resume-integrity");
    let (_, run) = short_run(&dir, "run");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    std::fs::write(run.join("config.toml"), config.replace("lr = 0.001", "lr = 0.01")).unwrap();
    refused(&["--devices", "1", "train", "--resume", s(&run)], "optim.lr: 0.001 -> 0.01");
    coconut_ok(&["--devices", "1", "train", "--resume", s(&run), "--allow-config-change"]);
    // One flipped byte of the optimizer state (or of the trainer state) is found by its checksum.
    for file in ["optimizer.bpk", "trainer.json"] {
        let path = run.join("last").join(file);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        refused(&["--devices", "1", "train", "--resume", s(&run)], &format!("{file}: SHA-256 differs"));
        std::fs::write(&path, &good).unwrap();
    }
    // A missing file is named with its path.
    std::fs::remove_file(run.join("last/trainer.json")).unwrap();
    refused(&["--devices", "1", "train", "--resume", s(&run)], "last/trainer.json");
}

#[test]
fn a_loss_that_blows_up_before_any_checkpoint_says_so() {
    let dir = fresh_dir("nan-fresh");
    let config = dir.join("nan.toml");
    let base = std::fs::read_to_string(root().join("configs/tiny-overfit.toml")).unwrap();
    // 64 questions in batches of 16: the loss of step 2 (after one huge step) is the first bad one,
    // logged (log_every = 1) before the first epoch ends and before any checkpoint.
    let data = dir.join("q64.json");
    coconut_ok(&["data", "prosqa", "--n", "64", "--seed", "11", "--out", s(&data)]);
    std::fs::write(&config, base.replace("lr = 3e-3", "lr = 1e30").replace("runs/q16.json", s(&data)).replace("log_every = 20", "log_every = 1"))
        .unwrap();
    let err = refused(&["--devices", "1", "train", "--config", s(&config), "--out", s(&dir.join("run"))], "No checkpoint was written");
    assert!(!err.contains("last good checkpoint"), "{err}");
}

#[test]
fn weights_that_overflow_never_overwrite_the_last_good_checkpoint() {
    let dir = fresh_dir("inf-weights");
    let config = dir.join("inf.toml");
    let base = std::fs::read_to_string(root().join("configs/tiny-overfit.toml")).unwrap();
    // A learning rate beyond f32: the first update makes the weights infinite although the loss it
    // was computed from is finite. Checkpoints every step: the first one after that update is refused.
    let data = dir.join("q64.json");
    coconut_ok(&["data", "prosqa", "--n", "64", "--seed", "11", "--out", s(&data)]);
    let text = base.replace("lr = 3e-3", "lr = 1e39").replace("runs/q16.json", s(&data)).replace("log_every = 20", "log_every = 100");
    std::fs::write(&config, text.replace("checkpoint_every = 1000", "checkpoint_every = 1")).unwrap();
    let run = dir.join("run");
    let err = refused(&["--devices", "1", "train", "--config", s(&config), "--out", s(&run)], "no longer finite numbers after step 1");
    assert!(err.contains("No checkpoint was written"), "{err}");
    assert!(!run.join("last").exists(), "no checkpoint holds the overflowed weights");
}

#[test]
fn inputs_longer_than_the_model_positions_are_refused_before_compute() {
    let dir = fresh_dir("positions");
    let ckpt = tiny_checkpoint(&dir); // 64 positions
    let long = vec!["Tom is a wumpus."; 30].join(" ");
    for backend in ["flex", "wgpu"] {
        refused(&["--backend", backend, "score", "--checkpoint", s(&ckpt), "--text", &long], "this model takes at most 64");
    }
    let q = "Tom is a wumpus. Is Tom a wumpus or yumpus?";
    refused(&["generate", "--checkpoint", s(&ckpt), "--question", q, "--k", "1000"], "this model takes at most 64");
    refused(&["generate", "--checkpoint", s(&ckpt), "--question", q, "--k", "18446744073709551615"], "this model takes at most 64");
    refused(&["generate", "--checkpoint", s(&ckpt), "--question", q, "--question", &long, "--max-new-tokens", "8"], "question #1");
    let graph = "Tom is a wumpus. Every wumpus is a yumpus. Tom is a zumpus. Is Tom a yumpus or zumpus?";
    refused(&["analyze", "--checkpoint", s(&ckpt), "--question", graph, "--k", "1000"], "this model takes at most 64");
    // eval names the item of the file, checks every item before the first batch, and refuses the sweep's largest k.
    let data = dir.join("items.json");
    let item = |q: &str| serde_json::json!({"question": q, "steps": [], "answer": "Tom is a wumpus."});
    std::fs::write(&data, serde_json::json!([item(q), item(q), item(&long)]).to_string()).unwrap();
    let err =
        refused(&["eval", "--checkpoint", s(&ckpt), "--data", s(&data), "--k", "0", "--batch-size", "1", "--max-new-tokens", "8"], "question #2");
    assert!(err.contains(s(&data)), "{err}");
    std::fs::write(&data, serde_json::json!([item(q)]).to_string()).unwrap();
    refused(&["eval", "--checkpoint", s(&ckpt), "--data", s(&data), "--k-sweep", "0..100", "--max-new-tokens", "8"], "takes at most 64");
}

/// Any (number of questions, k, question length, answer budget) either runs or is refused with a
/// message; never a panic, never garbage with exit 0.
#[test]
fn any_batch_length_and_k_either_runs_or_is_refused() {
    let dir = fresh_dir("positions-property");
    let ckpt = tiny_checkpoint(&dir);
    for words in [1usize, 12, 40] {
        let q = format!("{} Is Tom a wumpus or yumpus?", vec!["Tom is a wumpus."; words / 4].join(" "));
        for k in ["0", "5", "60", "64", "4294967296"] {
            for max_new in ["1", "16"] {
                for n in [1, 3] {
                    let mut args = vec!["generate", "--checkpoint", s(&ckpt), "--k", k, "--max-new-tokens", max_new, "--json"];
                    for _ in 0..n {
                        args.extend(["--question", q.as_str()]);
                    }
                    let out = coconut(&args);
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(!err.contains("panicked"), "{args:?}: {err}");
                    match out.status.code() {
                        Some(0) => assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), n, "{args:?}"),
                        Some(1) => assert!(err.contains("this model takes at most 64"), "{args:?}: {err}"),
                        other => panic!("{args:?}: exit {other:?}: {err}"),
                    }
                }
            }
        }
    }
}

#[test]
fn impossible_generator_ranges_are_refused_quickly() {
    let dir = fresh_dir("gen-ranges");
    let out = dir.join("x.json");
    let t0 = std::time::Instant::now();
    for (nodes, hops, expected) in
        [("32-32", "29-29", "draws"), ("4-10", "7-7", "draws"), ("5-6", "4-6", "at least 7 nodes"), ("2-40", "3-6", "4-32 nodes")]
    {
        refused(&["data", "prosqa", "--n", "5", "--nodes", nodes, "--hops", hops, "--out", s(&out)], expected);
    }
    assert!(t0.elapsed().as_secs() < 60, "refusing took {:?}", t0.elapsed());
    assert!(!out.exists());
}

#[test]
fn numeric_flags_out_of_range_are_refused_by_name() {
    let dir = fresh_dir("numbers");
    let ckpt = tiny_checkpoint(&dir);
    let data = dir.join("items.json");
    std::fs::write(&data, "[]").unwrap();
    refused(&["--devices", "0", "backends"], "--devices");
    refused(&["--devices", "18446744073709551615", "backends"], "--devices");
    // More GPUs than the machine has: a clear error, not a panic (on a machine with them, it trains).
    let (config, run) = (root().join("configs/tiny-overfit.toml"), dir.join("gpu-run"));
    let out = coconut(&["--backend", "wgpu", "--devices", "64", "train", "--config", s(&config), "--out", s(&run)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && err.contains("--devices 64: GPU"), "{err}");
    refused(&["data", "prosqa", "--n", "0", "--out", s(&dir.join("x.json"))], "--n");
    refused(&["data", "prosqa", "--n", "10000000000", "--out", s(&dir.join("x.json"))], "would need about 70000 GB");
    // Without the official sets the generator says it cannot keep away from them.
    let out = coconut_ok(&["--official-data", "/nonexistent", "data", "prosqa", "--n", "2", "--out", s(&dir.join("x.json"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot exclude /nonexistent/prosqa_test.json"));
    refused(&["bench", "--train-steps", "0"], "--train-steps");
    refused(&["bench", "--questions", "0"], "--questions");
    refused(&["bench", "--batch-size", "0"], "--batch-size");
    refused(&["eval", "--checkpoint", s(&ckpt), "--data", s(&data), "--batch-size", "0"], "--batch-size");
    refused(&["eval", "--checkpoint", s(&ckpt), "--data", s(&data)], "no questions to evaluate");
    std::fs::write(&data, r#"[{"question": "Tom is a wumpus. Is Tom a wumpus or yumpus?", "steps": [], "answer": "Tom is a wumpus."}]"#).unwrap();
    refused(&["eval", "--checkpoint", s(&ckpt), "--data", s(&data), "--k-sweep", "6..0"], "first k is above the last");
    let err = refused(&["score", "--checkpoint", s(&root().join("static/models/prosqa-coconut")), "--text", "Tom is a \x1b[31mred"], "unknown words");
    assert!(!err.contains('\x1b'), "control characters are echoed raw: {err:?}");
}

#[test]
fn a_checkpoint_is_asked_the_way_it_was_trained_unless_told_otherwise() {
    let dir = fresh_dir("trained-for");
    let (_, run) = short_run(&dir, "run"); // Coconut, 2 epochs of one stage each: ends at stage 1
    let data = dir.join("q.json");
    coconut_ok(&["data", "prosqa", "--n", "4", "--seed", "5", "--out", s(&data)]);
    let report = |args: &[&str]| -> (serde_json::Value, String) {
        let out = coconut_ok(&[&["eval", "--data", s(&data), "--max-new-tokens", "8"], args].concat());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (serde_json::from_str(stdout.lines().last().unwrap()).unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (r, err) = report(&["--checkpoint", s(&run.join("last"))]);
    assert_eq!((r["method"].as_str().unwrap(), r["k"].as_u64().unwrap()), ("coconut", 1), "{r}");
    assert!(!err.contains("does not record"), "{err}");
    let (r, _) = report(&["--checkpoint", s(&run.join("best")), "--k", "0", "--method", "no-thought"]);
    assert_eq!((r["method"].as_str().unwrap(), r["k"].as_u64().unwrap()), ("no-thought", 0), "{r}");
    // The shipped CoT baseline says it is one.
    let (r, _) = report(&["--checkpoint", s(&root().join("static/models/prosqa-cot"))]);
    assert_eq!((r["method"].as_str().unwrap(), r["k"].as_u64().unwrap()), ("cot", 0), "{r}");
    // A checkpoint that does not say (an HF import): Coconut with 6 thoughts, and a note saying so.
    let tiny = tiny_checkpoint(&dir);
    let out =
        coconut_ok(&["generate", "--checkpoint", s(&tiny), "--question", "Tom is a wumpus. Is Tom a wumpus or yumpus?", "--max-new-tokens", "4"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not record what it was trained for: asked as coconut with k = 6"));
}
