//! `coconut probe` computes the analysis quantities RESULTS.md reports; its figures equal those of
//! the Python scripts it replaces (their outputs on the same inputs are the fixtures).

mod common;
use common::{coconut_ok, fresh_dir, root};

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root().join("tests/fixtures").join(name)).unwrap()).unwrap()
}

fn close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((a - b).abs() <= 1e-5, "{what}: ours {a}, the script's {b}");
}

#[test]
fn the_lookup_probe_matches_the_scripts_figures() {
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let ckpt = root().join("tests/fixtures/prosqa-cot-earlier");
    let out = coconut_ok(&["probe", "lookup", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "10"]);
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let script = fixture("lookup-probe-prosqa-cot-valid10.json");
    for kind in ["copy", "lookup", "answer"] {
        close(&ours[kind]["mean_logprob"], &script[kind]["mean_logprob"], kind);
        assert_eq!(ours[kind]["tokens"], script[kind]["tokens"], "{kind} tokens");
    }
    close(&ours["uniform_logprob"], &script["uniform_logprob"], "uniform");
}

#[test]
fn a_coconut_checkpoint_reads_the_chain_after_its_latent_markers() {
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let probe = |ckpt: &str| -> serde_json::Value {
        let ckpt = root().join(ckpt);
        serde_json::from_slice(&coconut_ok(&["probe", "lookup", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "5"]).stdout).unwrap()
    };
    let (coconut, cot) = (probe("tests/fixtures/prosqa-coconut-earlier"), probe("tests/fixtures/prosqa-cot-earlier"));
    assert_eq!((coconut["markers"].as_bool(), cot["markers"].as_bool()), (Some(true), Some(false)));
    // The markers move no concept: the same copy, lookup and answer tokens are scored.
    for kind in ["copy", "lookup", "answer"] {
        assert_eq!(coconut[kind]["tokens"], cot[kind]["tokens"], "{kind} tokens");
    }
    assert_eq!(coconut["first_lookup"]["questions"], cot["first_lookup"]["questions"]);
}

#[test]
fn the_first_lookup_distribution_matches_the_scripts_figures() {
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let ckpt = root().join("tests/fixtures/prosqa-cot-earlier");
    let out = coconut_ok(&["probe", "lookup", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "5"]);
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ours, script) = (&ours["first_lookup"], fixture("lookupdist-prosqa-cot-valid5.json"));
    assert_eq!(ours["questions"], script["questions"]);
    for kind in ["child", "option", "self", "parent", "other"] {
        for what in ["mass", "uniform"] {
            // The script rounds to 3 decimals.
            let (a, b) = (ours[what][kind].as_f64().unwrap(), script[what][kind].as_f64().unwrap());
            assert!((a - b).abs() <= 5e-4 + 1e-6, "{what} {kind}: ours {a}, the script's {b}");
        }
    }
}

#[test]
fn the_latent_mass_matches_the_scripts_table() {
    let dir = fresh_dir("latent-mass");
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let ckpt = root().join("tests/fixtures/prosqa-coconut-earlier");
    let prefix = dir.join("mass");
    let args = ["probe", "latent-mass", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "5", "--k", "3"];
    coconut_ok(&[&args[..], &["--out", prefix.to_str().unwrap()]].concat());
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("mass.json")).unwrap()).unwrap();
    let script = fixture("latent-mass-prosqa-coconut-valid5-k3.json");
    assert_eq!(ours["rows"].as_array().unwrap().len(), 4);
    for (o, s) in ours["rows"].as_array().unwrap().iter().zip(script["rows"].as_array().unwrap()) {
        for kind in ["options", "frontier", "reachable", "other"] {
            close(&o[kind], &s[kind], &format!("thought {} {kind}", o["thought"]));
        }
    }
    assert!(std::fs::read_to_string(dir.join("mass.md")).unwrap().contains("| thought | the two options |"));
}

#[test]
fn the_latent_search_matches_the_scripts_figure() {
    let dir = fresh_dir("latent-search");
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let ckpt = root().join("tests/fixtures/prosqa-coconut-earlier");
    let prefix = dir.join("search");
    let args = ["probe", "latent-search", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "5", "--k", "3"];
    coconut_ok(&[&args[..], &["--out", prefix.to_str().unwrap()]].concat());
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("search.json")).unwrap()).unwrap();
    let script = fixture("latent-search-prosqa-coconut-valid5-k3.json");
    let (ours, script) = (ours["rows"].as_array().unwrap(), script["rows"].as_array().unwrap());
    assert_eq!(ours.len(), script.len());
    for (o, s) in ours.iter().zip(script) {
        assert_eq!((&o["thought"], &o["height"], &o["nodes"]), (&s["thought"], &s["height"], &s["nodes"]));
        close(&o["mean_value"], &s["mean_value"], &format!("thought {} height {}", o["thought"], o["height"]));
    }
    let svg = std::fs::read_to_string(dir.join("search.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3, "one line per thought");
}

#[test]
fn the_listing_probe_scores_every_fact_reachable_from_the_person() {
    let valid = root().join("../shared/prosqa/prosqa_valid.json");
    let ckpt = root().join("tests/fixtures/prosqa-cot-earlier");
    let args = ["probe", "lookup", "--listing", "--checkpoint", ckpt.to_str().unwrap(), "--data", valid.to_str().unwrap(), "--n", "4"];
    let out = coconut_ok(&args);
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours["listing"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("(search listing)"));
    // Counted from the graphs: every edge out of a concept reachable from the person is one fact of
    // the listing, one lookup each; the facts about a concept (not the person) also copy its name.
    let items: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&valid).unwrap()).unwrap();
    let (mut lookups, mut copies) = (0, 0);
    for it in &items[..4] {
        let edges: Vec<(u64, u64)> = it["edges"].as_array().unwrap().iter().map(|e| (e[0].as_u64().unwrap(), e[1].as_u64().unwrap())).collect();
        let root = it["root"].as_u64().unwrap();
        let mut reached = vec![root];
        let mut i = 0;
        while i < reached.len() {
            for &(p, c) in &edges {
                if p == reached[i] && !reached.contains(&c) {
                    reached.push(c);
                }
            }
            i += 1;
        }
        let listed: Vec<_> = edges.iter().filter(|(p, _)| reached.contains(p)).collect();
        lookups += listed.len();
        copies += listed.iter().filter(|(p, _)| *p != root).count();
    }
    assert_eq!((ours["lookup"]["tokens"].as_u64(), ours["copy"]["tokens"].as_u64()), (Some(lookups as u64), Some(copies as u64)));
    assert_eq!(ours["answer"]["tokens"], 4);
}
