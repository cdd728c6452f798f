//! `coconut generate` and `coconut eval` (answer accuracy, path categories, k-sweeps).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use burn::prelude::*;
use coconut::curriculum::{Curriculum, Tokenized, Variant};
use coconut::data::Item;
use coconut::eval::{PathCategory, answer_correct, path_category};
use coconut::generate::{check_positions, generate, generate_reference};
use coconut::{Checkpoint, CoconutTokenizer, Gpt2};
use serde_json::{Value, json};

pub struct Model {
    pub ckpt: Checkpoint,
    pub model: Gpt2,
    pub curriculum: Curriculum,
    pub device: Device,
    /// Decode like the official code (batch 1, the whole sequence re-run for every token) instead
    /// of batched with a KV cache: for checking and timing against it.
    pub reference_decoding: bool,
    /// The thoughts to ask with (`--k`, else the checkpoint's trained k).
    pub k: usize,
}

impl Model {
    /// `method`/`k` override what the checkpoint's manifest says it was trained for.
    pub fn load(dir: &Path, method: Option<&str>, k: Option<usize>, device: Device) -> Result<Self> {
        let ckpt = Checkpoint::load(dir)?;
        let model = ckpt.model(&device)?;
        let (method, k, defaulted) = ckpt.asked_as(method, k);
        if defaulted && ckpt.manifest.trained_for.is_none() {
            eprintln!("note: {} does not record what it was trained for: asked as {method} with k = {k} (--method, --k)", dir.display());
        }
        let variant = Variant::parse(&method).map_err(anyhow::Error::msg)?;
        Ok(Self { ckpt, model, curriculum: Curriculum { variant, ..Curriculum::default() }, device, reference_decoding: false, k })
    }

    /// Every question's prompt with `k` thoughts, each tokenized and checked against the model's
    /// positions (with `max_new_tokens` to generate) before any compute; errors name the question
    /// by its index.
    pub fn prompts(&self, questions: &[&str], k: usize, max_new_tokens: usize) -> Result<Vec<Vec<u32>>> {
        let n_positions = self.ckpt.config.n_positions;
        questions
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let t = Tokenized::question(q, self.tok()).with_context(|| format!("question #{i}"))?;
                check_positions(self.curriculum.prompt_len(t.question.len(), k), max_new_tokens, n_positions)
                    .map_err(|e| anyhow::anyhow!("question #{i}: {e}"))?;
                Ok(self.curriculum.prompt(&t, k, self.tok().special))
            })
            .collect()
    }

    fn tok(&self) -> &CoconutTokenizer {
        &self.ckpt.tokenizer
    }

    /// Decoded outputs of `questions` after `k` thoughts, batched. Every question is tokenized
    /// and checked against the model's positions before any compute; errors name it by its index.
    pub fn answer(&self, questions: &[&str], k: usize, max_new_tokens: usize, batch_size: usize) -> Result<Vec<(String, Vec<u32>)>> {
        let prompts = self.prompts(questions, k, max_new_tokens)?;
        let mut outs = Vec::with_capacity(questions.len());
        for prompts in prompts.chunks(batch_size.max(1)) {
            let tokens: Vec<Vec<u32>> = if self.reference_decoding {
                anyhow::ensure!(self.curriculum.variant.feeds_back(), "reference decoding is for methods that feed thoughts back");
                prompts.iter().map(|p| generate_reference(&self.model, p, self.tok().special, max_new_tokens, &self.device)).collect()
            } else {
                let gens = generate(&self.model, prompts, self.tok().special, max_new_tokens, self.curriculum.variant.feeds_back(), &self.device);
                gens.into_iter().map(|g| g.tokens).collect()
            };
            outs.extend(tokens.into_iter().map(|t| (self.tok().decode(&t), t)));
        }
        Ok(outs)
    }
}

/// One evaluation report, the interface other checks read.
pub fn evaluate(m: &Model, items: &[Item], k: usize, max_new_tokens: usize, batch_size: usize) -> Result<Value> {
    anyhow::ensure!(!items.is_empty(), "no questions to evaluate (the data file is an empty list)");
    let questions: Vec<&str> = items.iter().map(|i| i.question.as_str()).collect();
    let t0 = std::time::Instant::now();
    let outs = m.answer(&questions, k, max_new_tokens, batch_size)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut categories: BTreeMap<&str, usize> = PathCategory::ALL.iter().map(|c| (c.key(), 0)).collect();
    let mut correct = 0;
    // Accuracy by the length of the question's reasoning chain (its steps, i.e. hops from the
    // person to the answer): how far the search reaches.
    let mut by_hops: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (item, (text, _)) in items.iter().zip(&outs) {
        let ok = answer_correct(text, item) as usize;
        correct += ok;
        *categories.get_mut(path_category(text, item, k).key()).unwrap() += 1;
        let hops = by_hops.entry(item.steps.len()).or_default();
        *hops = (hops.0 + ok, hops.1 + 1);
    }
    let by_hops: serde_json::Map<String, Value> =
        by_hops.into_iter().map(|(h, (c, n))| (h.to_string(), json!({ "n": n, "correct": c, "accuracy": c as f64 / n as f64 }))).collect();
    Ok(json!({
        "accuracy": correct as f64 / items.len().max(1) as f64,
        "n": items.len(),
        "k": k,
        "method": m.curriculum.variant.name(),
        "categories": categories,
        "by_hops": by_hops,
        "checkpoint": m.ckpt.manifest.weights_sha256,
        "decoding": if m.reference_decoding { "reference" } else { "cached" },
        "seconds": seconds,
    }))
}

/// `--k-sweep A..B`: one report per k, a Markdown table and an SVG of stacked category bars.
pub fn sweep(
    m: &Model,
    items: &[Item],
    ks: std::ops::RangeInclusive<usize>,
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<(Vec<Value>, String, String)> {
    anyhow::ensure!(!ks.is_empty(), "--k-sweep {}..{}: the first k is above the last", ks.start(), ks.end());
    // The largest k must fit every question before the first k is computed.
    m.prompts(&items.iter().map(|i| i.question.as_str()).collect::<Vec<_>>(), *ks.end(), max_new_tokens)?;
    let reports = ks.map(|k| evaluate(m, items, k, max_new_tokens, batch_size)).collect::<Result<Vec<_>>>()?;
    let mut table = String::from(
        "| k | accuracy | correct path | longer path | hallucination | wrong target | correct label | incorrect label |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in &reports {
        let c = &r["categories"];
        table += &format!(
            "| {} | {:.1}% | {} | {} | {} | {} | {} | {} |\n",
            r["k"],
            100.0 * r["accuracy"].as_f64().unwrap(),
            c["correct_path"],
            c["longer_path"],
            c["hallucination"],
            c["wrong_target"],
            c["correct_label"],
            c["incorrect_label"]
        );
    }
    Ok((reports.clone(), table, stacked_bars_svg(&reports)))
}

/// The paper's analysis figure: per k, a bar stacked by path category (share of questions).
fn stacked_bars_svg(reports: &[Value]) -> String {
    let colours = ["#2e7d32", "#9ccc65", "#e53935", "#fb8c00", "#1e88e5", "#90a4ae"];
    let (w, h, bar, gap, top, left) = (120 + 60 * reports.len(), 320, 40.0, 20.0, 20.0, 50.0);
    let plot_h = 240.0;
    let mut svg = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="11">"#, w + 160);
    svg += &format!(r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#, top + plot_h);
    for (i, r) in reports.iter().enumerate() {
        let n = r["n"].as_f64().unwrap_or(1.0).max(1.0);
        let x = left + gap + i as f64 * (bar + gap);
        let mut y = top + plot_h;
        for (c, colour) in PathCategory::ALL.iter().zip(colours) {
            let v = r["categories"][c.key()].as_f64().unwrap_or(0.0) / n * plot_h;
            y -= v;
            svg += &format!(r#"<rect x="{x}" y="{y:.1}" width="{bar}" height="{v:.1}" fill="{colour}"/>"#);
        }
        svg += &format!(r#"<text x="{}" y="{}" text-anchor="middle">k={}</text>"#, x + bar / 2.0, top + plot_h + 15.0, r["k"]);
    }
    for (j, (c, colour)) in PathCategory::ALL.iter().zip(colours).enumerate() {
        let y = top + 16.0 * j as f64;
        svg += &format!(
            r#"<rect x="{}" y="{y}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            w as f64 + 10.0,
            w as f64 + 25.0,
            y + 9.0,
            c.key().replace('_', " ")
        );
    }
    svg + "</svg>\n"
}
