//! The `coconut` binary as a user runs it: import an HF directory, score text, see clear errors.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn coconut(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coconut")).args(args).output().expect("run coconut")
}

/// `import-hf` then `score` on `backend`; the printed log-probs must be HF's to 1e-4.
fn import_and_score(backend: &str) -> PathBuf {
    let out_dir = std::env::temp_dir().join(format!("coconut-cli-import-{backend}-{}", std::process::id()));
    let hf_dir = root().join("tests/fixtures/gpt2-tiny");
    let out = coconut(&["--backend", backend, "import-hf", "--hf-dir", hf_dir.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "import-hf failed: {}", String::from_utf8_lossy(&out.stderr));

    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/gpt2-tiny-expected.json")).unwrap()).unwrap();
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
fn no_arguments_describes_the_default_run_and_help_lists_subcommands() {
    let out = coconut(&[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("configs/prosqa-small-coconut.toml"));
    let help = String::from_utf8_lossy(&coconut(&["--help"]).stdout).to_string();
    for sub in ["import-hf", "score", "tokenize", "train", "generate", "eval", "data", "bench", "export-web"] {
        assert!(help.contains(sub), "--help lacks {sub}");
    }
}

#[test]
fn data_commands_generate_check_and_describe() {
    let dir = std::env::temp_dir().join(format!("coconut-cli-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prosqa.json");
    let out = coconut(&["data", "prosqa", "--n", "50", "--seed", "3", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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

    let pronto = dir.join("prontoqa.json");
    assert!(coconut(&["data", "prontoqa", "--n", "20", "--out", pronto.to_str().unwrap()]).status.success());
    assert!(coconut(&["data", "check", pronto.to_str().unwrap()]).status.success());
    let txt = dir.join("gsm.txt");
    std::fs::write(&txt, "Q1?||<<1+1=2>> #### 2\n").unwrap();
    let gsm = dir.join("gsm.json");
    assert!(coconut(&["data", "gsm8k", "--input", txt.to_str().unwrap(), "--out", gsm.to_str().unwrap()]).status.success());
    assert!(coconut(&["data", "check", gsm.to_str().unwrap()]).status.success());
}
