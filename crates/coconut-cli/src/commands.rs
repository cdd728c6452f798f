//! The one-shot commands on a checkpoint: `import-hf`, `score`, `tokenize`, `analyze`, `generate`, `eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use coconut::{Checkpoint, CoconutTokenizer, hf, score};

use crate::{export, infer, write_atomic};

/// `import-hf`: a HuggingFace GPT-2 directory as a checkpoint (never over another directory's files).
pub fn import_hf(hf_dir: &Path, out: &Path, device: &Device) -> Result<()> {
    let (config, model, tokenizer) = hf::load_hf_dir(hf_dir, device).with_context(|| format!("importing {}", hf_dir.display()))?;
    let foreign = export::foreign_files(out, &export::checkpoint_files(out))?;
    if !foreign.is_empty() {
        bail!(
            "--out {} holds files that are not a checkpoint's ({}): choose a new or empty directory (nothing was changed)",
            out.display(),
            foreign.join(", ")
        );
    }
    let ckpt = Checkpoint::from_model(model, &config, tokenizer, &format!("coconut import-hf --hf-dir {}", hf_dir.display()))?;
    ckpt.save(out)?;
    eprintln!(
        "imported GPT-2 ({} layers, d={}, vocab {}, {:.1}M parameters) -> {}",
        config.n_layer,
        config.n_embd,
        config.vocab_size,
        config.num_params() as f64 / 1e6,
        out.display()
    );
    Ok(())
}

/// `score`: every token's log-probability given the ones before it.
pub fn score(checkpoint: &Path, text: &str, device: &Device) -> Result<()> {
    let ckpt = Checkpoint::load(checkpoint)?;
    let model = ckpt.model(device)?;
    let tokens = ckpt.tokenizer.encode(text)?;
    coconut::generate::check_positions(tokens.len(), 0, ckpt.config.n_positions).map_err(|e| anyhow::anyhow!("--text: {e}"))?;
    let logprobs = score::token_logprobs(&model, &tokens, device).map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::json!({ "tokens": tokens, "logprobs": logprobs }));
    Ok(())
}

/// `tokenize`: a text's ids, or a word-level tokenizer built from files.
pub fn tokenize(tokenizer: Option<PathBuf>, text: Option<String>, build_word_level: &[PathBuf], out: Option<PathBuf>) -> Result<()> {
    if !build_word_level.is_empty() {
        let out = out.context("--out is required with --build-word-level")?;
        let mut texts = Vec::new();
        for p in build_word_level {
            texts.push(std::fs::read_to_string(p).with_context(|| p.display().to_string())?);
        }
        let tok = CoconutTokenizer::word_level(texts.iter().flat_map(|t| json_strings_or_text(t)))?;
        tok.save(&out)?;
        eprintln!("word-level tokenizer: {} tokens -> {}", tok.vocab_size(), out.display());
    } else {
        let path = tokenizer.context("--tokenizer is required")?;
        let tok = if path.is_dir() { Checkpoint::load(&path)?.tokenizer } else { CoconutTokenizer::from_file(&path)? };
        let ids = tok.encode(&text.unwrap_or_default())?;
        println!("{}", serde_json::json!({ "tokens": ids }));
    }
    Ok(())
}

/// `analyze`: a question's concept graph and the node values after each continuous thought.
pub fn analyze(checkpoint: &Path, question: &str, k: Option<usize>, out: Option<PathBuf>, device: &Device) -> Result<()> {
    let ckpt = Checkpoint::load(checkpoint)?;
    let model = ckpt.model(device)?;
    let (_, k, _) = ckpt.asked_as(None, k);
    let a = coconut::analyze::analyze(&model, &ckpt.tokenizer, question, k, ckpt.config.n_positions, device).map_err(anyhow::Error::msg)?;
    let json = serde_json::to_string(&a)?;
    match out {
        Some(p) => write_atomic(&p, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(())
}

/// `generate`: each question answered after the model's thoughts.
pub fn generate(m: &infer::Model, questions: &[String], max_new_tokens: usize, json: bool) -> Result<()> {
    let questions: Vec<&str> = questions.iter().map(String::as_str).collect();
    for (text, tokens) in m.answer(&questions, m.k, max_new_tokens, 64)? {
        if json {
            println!("{}", serde_json::json!({ "answer": coconut::eval::extract_answer(&text), "text": text, "tokens": tokens }));
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

/// `eval`: accuracy and the six path categories on a dataset, at the model's k or over a k-sweep.
pub fn eval(m: &infer::Model, data: &Path, out: Option<PathBuf>, k_sweep: Option<String>, batch_size: usize, max_new_tokens: usize) -> Result<()> {
    let items = coconut::dataset::load_items(data)?;
    let in_data = || data.display().to_string();
    let report = match k_sweep {
        None => infer::evaluate(m, &items, m.k, max_new_tokens, batch_size).with_context(in_data)?,
        Some(range) => {
            let (a, b) = range
                .split_once("..")
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .context("--k-sweep takes A..B, e.g. 0..6")?;
            let (reports, table, svg) = infer::sweep(m, &items, a..=b, max_new_tokens, batch_size).with_context(in_data)?;
            println!("{table}");
            if let Some(out) = &out {
                std::fs::write(out.with_extension("md"), &table)?;
                std::fs::write(out.with_extension("svg"), svg)?;
            }
            serde_json::json!({ "sweep": reports })
        }
    };
    println!("{report}");
    if let Some(out) = out {
        write_atomic(&out, report.to_string().as_bytes())?;
    }
    Ok(())
}

/// The strings of a JSON document (e.g. a ProsQA file's questions, steps and answers), or the text itself.
fn json_strings_or_text(text: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            let mut out = Vec::new();
            walk(&v, &mut out);
            out
        }
        Err(_) => vec![text.to_string()],
    }
}
