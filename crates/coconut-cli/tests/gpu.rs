//! The GPU paths, exercised on this CPU machine: training on wgpu (lavapipe: the same kernels a
//! Vulkan GPU runs) and the lent-GPU script's dry run on the CPU backend.

mod common;
use std::path::Path;
use std::process::Command;

use common::{coconut_ok, fresh_dir, root};

const SHORT: &str = "[model]\nn_layer = 1\nn_embd = 32\nn_head = 2\ndropout = 0.0\n\n\
    [data]\ndataset = \"prosqa\"\ntrain_size = 16\nval_size = 4\nseed = 3\n\n\
    [curriculum]\nmax_latent_stage = 2\nepochs_per_stage = 2\n\n[optim]\nlr = 3e-3\nbatch_size = 4\n\n\
    [run]\nepochs = EPOCHS\nseed = 1\nlog_every = 1\ncheckpoint_every = 1000\neval_max_new_tokens = 8\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
        .collect()
}

fn step(run: &Path) -> u64 {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("last/trainer.json")).unwrap()).unwrap();
    state["global_step"].as_u64().unwrap()
}

#[test]
fn training_on_wgpu_lowers_the_loss_stops_on_its_time_budget_and_resumes() {
    let dir = fresh_dir("wgpu-train");
    let config = dir.join("short.toml");
    std::fs::write(&config, SHORT.replace("EPOCHS", "6")).unwrap();
    let run = dir.join("run");
    // Stopped by its time budget part way (6 epochs x 4 steps take longer than 2 s on lavapipe) ...
    let out = coconut_ok(&["--backend", "wgpu", "train", "--config", s(&config), "--out", s(&run), "--time-budget", "2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("time budget of 2 s reached"), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = step(&run);
    assert!(stopped < 24, "the budget did not stop the run (step {stopped})");
    // ... and resumed to the end.
    coconut_ok(&["--backend", "wgpu", "train", "--resume", s(&run)]);
    assert_eq!(step(&run), 24);
    let l = losses(&run);
    assert_eq!(l.len(), 24, "each step logged once");
    assert!(l.iter().all(|x| x.is_finite()), "{l:?}");
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(mean(&l[20..]) < mean(&l[..4]), "the loss did not fall on wgpu: {l:?}");
}

#[test]
fn the_gpu_script_dry_run_benches_and_resumes_the_run_on_the_cpu() {
    let dir = fresh_dir("gpu-run");
    let config = dir.join("short.toml");
    std::fs::write(&config, SHORT.replace("EPOCHS", "1000000")).unwrap();
    let run = dir.join("run");
    coconut_ok(&["--devices", "1", "train", "--config", s(&config), "--out", s(&run), "--time-budget", "1"]);
    let packed = step(&run);
    let script = root().join("scripts/gpu-run");
    let (bundle, out) = (dir.join("bundle"), dir.join("out"));
    let sh = |args: &[&str]| {
        let o = Command::new(&script)
            .args(args)
            .env("GPU_BUNDLE", &bundle)
            .env("COCONUT_BIN", env!("CARGO_BIN_EXE_coconut"))
            .env("XZ_LEVEL", "0")
            .env("GPU_RUN_NO_DEBS", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "gpu-run {args:?}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    };
    // Two arms: the run, resumed for the window, and a config started there whose length is
    // fitted to what the window holds after a probe.
    let fitted = format!("fitted={}:fit", s(&config));
    sh(&["pack", s(&run), &fitted]);
    assert!(bundle.join("coconut.xz").exists() && bundle.join("arms/run/last/trainer.json").exists());
    let t0 = std::time::Instant::now();
    sh(&["go", "--backend", "flex", "--budget", "30", "--probe", "8", "--bench-steps", "1", "--out", s(&out)]);
    let report = std::fs::read_to_string(out.join("gpu-run.txt")).unwrap();
    assert!(report.starts_with("backend: flex") && report.contains("time budget of "), "{report}");
    assert!(out.join("bench-page-flex.json").exists(), "{report}");
    assert!(step(&out.join("run")) > packed, "the run did not advance");
    // The fitted arm ends at the length the probe chose, its last half decayed, and finishes.
    let config_of = std::fs::read_to_string(out.join("fitted/config.toml")).unwrap();
    let epochs: u64 = config_of.lines().find_map(|l| l.strip_prefix("epochs = ")).unwrap().parse().unwrap();
    assert!(epochs < 1000000 && report.contains("fit fitted:"), "{report}");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("fitted/last/trainer.json")).unwrap()).unwrap();
    assert_eq!(state["epoch"].as_u64(), Some(epochs), "{report}");
    assert!(out.join("arms.tar.xz").exists(), "{report}");
    assert!(t0.elapsed().as_secs() < 300, "the dry run took {:?}", t0.elapsed());
}
