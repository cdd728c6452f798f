//! `coconut probe`: what a model has learned, over a set of questions, in one run (one model load).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;
use clap::Subcommand;
use coconut::Checkpoint;
use coconut::probe::{latent_mass, latent_mass_table, latent_search, latent_search_svg, latent_search_table, lookup_probe};

#[derive(Subcommand)]
pub enum ProbeCommand {
    /// Teacher-forced log-probabilities of the language chain (after the latent markers when the checkpoint was trained with them, as its stage 0 reads it): copy (X in "Every X is a Y"), lookup
    /// (Y: the fact about X found in the question), answer; next to the uniform baseline; and where
    /// the first lookup's probability goes (X's children, the options, X, its parents, the rest).
    Lookup {
        #[arg(long)]
        checkpoint: PathBuf,
        /// ProsQA questions with their graphs (generated or official).
        #[arg(long)]
        data: PathBuf,
        /// The first N questions.
        #[arg(long, default_value_t = 30)]
        n: usize,
        /// Also write the JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Teacher-force each question's search listing (every fact reachable from its person,
        /// breadth-first: what `data.search_epochs` trains) instead of its chain.
        #[arg(long)]
        listing: bool,
        /// LAYER:FACTOR: multiply that layer's queries by FACTOR first (its attention logits times
        /// FACTOR): does sharper attention find the facts, or does it rank the wrong ones first?
        #[arg(long, value_parser = parse_sharpen)]
        sharpen: Option<(usize, f32)>,
    },
    /// Where each continuous thought puts its value: the two options, the frontier, the other
    /// reachable nodes, the rest (mean over N questions); writes OUT.json and OUT.md.
    LatentMass(OverThoughts),
    /// The paper's latent-search analysis: after each thought, the frontier nodes' mean value by
    /// height (shortest distance to a leaf), over N questions; writes OUT.json, OUT.md and OUT.svg.
    LatentSearch(OverThoughts),
}

/// A probe of the continuous thoughts over a set of questions.
#[derive(clap::Args)]
pub struct OverThoughts {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// Output prefix: OUT.json, OUT.md (and OUT.svg for the latent search).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Thoughts (default: the k the checkpoint was trained for, else 6).
    #[arg(long)]
    k: Option<usize>,
}

pub fn probe(command: ProbeCommand, device: Device) -> Result<()> {
    match command {
        ProbeCommand::Lookup { checkpoint, data, n, json, listing, sharpen } => lookup(&checkpoint, &data, n, json, listing, sharpen, &device),
        ProbeCommand::LatentMass(a) => mass(&a, &device),
        ProbeCommand::LatentSearch(a) => search(&a, &device),
    }
}

/// The checkpoint, its model and the first `n` questions of `data`.
fn load(checkpoint: &Path, data: &Path, n: usize, device: &Device) -> Result<(Checkpoint, coconut::Gpt2, Vec<coconut::data::Item>)> {
    let ckpt = Checkpoint::load(checkpoint)?;
    let model = ckpt.model(device)?;
    let mut items = coconut::dataset::load_items(data)?;
    items.truncate(n);
    anyhow::ensure!(!items.is_empty(), "{}: no questions to probe", data.display());
    Ok((ckpt, model, items))
}

/// Writes `OUT.ext` for each (ext, text).
fn write_outputs(out: &Path, files: &[(&str, String)]) -> Result<()> {
    for (ext, text) in files {
        let path = PathBuf::from(format!("{}.{ext}", out.display()));
        std::fs::write(&path, text).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

fn parse_sharpen(s: &str) -> Result<(usize, f32), String> {
    let (layer, factor) = s.split_once(':').ok_or("expected LAYER:FACTOR, e.g. 1:1.5")?;
    let layer = layer.parse().map_err(|_| format!("`{layer}` is not a layer index"))?;
    let factor: f32 = factor.parse().map_err(|_| format!("`{factor}` is not a number"))?;
    if !factor.is_finite() || factor < 0.0 {
        return Err(format!("the factor must be a finite number ≥ 0, not {factor}"));
    }
    Ok((layer, factor))
}

fn lookup(checkpoint: &Path, data: &Path, n: usize, json: Option<PathBuf>, listing: bool, sharpen: Option<(usize, f32)>, device: &Device) -> Result<()> {
    let (ckpt, mut model, mut items) = load(checkpoint, data, n, device)?;
    if let Some((layer, factor)) = sharpen {
        anyhow::ensure!(layer < model.h.len(), "--sharpen {layer}:{factor}: the model has layers 0..{}", model.h.len());
        model = coconut::grow::sharpened(model, layer, factor);
    }
    if listing {
        for (i, item) in items.iter_mut().enumerate() {
            item.steps = coconut::prosqa::breadth_first_steps(item, i as u64)
                .with_context(|| format!("{}: question #{i} has no graph to list", data.display()))?;
        }
    }
    // The chain as the model was trained to read it: after the latent markers for a Coconut-style
    // method (its stage 0), right after the question for CoT and the other marker-free methods.
    let (method, _, _) = ckpt.asked_as(None, None);
    let markers = coconut::curriculum::Variant::parse(&method).map_err(anyhow::Error::msg)?.markers();
    let p = lookup_probe(&model, &ckpt.tokenizer, &items, ckpt.config.n_positions, markers, device)
        .map_err(anyhow::Error::msg)
        .with_context(|| data.display().to_string())?;
    eprintln!(
        "{}{}{}: mean log-prob (nats) copy {:.2}, lookup {:.2}, answer {:.2}; uniform over the graph's concepts {:.2} ({} questions); first lookup: {:.1}% of the probability on X's children (uniform {:.1}%)",
        checkpoint.display(),
        if markers { " (chain after the latent markers)" } else { "" },
        if listing { " (search listing)" } else { "" },
        p.copy.mean_logprob,
        p.lookup.mean_logprob,
        p.answer.mean_logprob,
        p.uniform_logprob,
        p.questions,
        100.0 * p.first_lookup.mass["child"],
        100.0 * p.first_lookup.uniform["child"]
    );
    let mut v = serde_json::to_value(&p)?;
    v["checkpoint"] = checkpoint.display().to_string().into();
    v["listing"] = listing.into();
    v["sharpen"] = sharpen.map(|(l, f)| serde_json::json!({"layer": l, "factor": f})).unwrap_or_default();
    println!("{v}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&v)?).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

fn mass(a: &OverThoughts, device: &Device) -> Result<()> {
    let (checkpoint, data, out) = (&a.checkpoint, &a.data, &a.out);
    let (ckpt, model, items) = load(checkpoint, data, a.n, device)?;
    let (_, k, _) = ckpt.asked_as(None, a.k);
    let rows = latent_mass(&model, &ckpt.tokenizer, &items, k, ckpt.config.n_positions, device)
        .map_err(anyhow::Error::msg)
        .with_context(|| data.display().to_string())?;
    let name = data.file_name().unwrap_or_default().to_string_lossy();
    let caption = format!("Mean value per thought by kind of node, {} questions of {name}, checkpoint {}", items.len(), checkpoint.display());
    let md = latent_mass_table(&rows, &caption);
    let v = serde_json::json!({ "checkpoint": checkpoint, "data": data, "questions": items.len(), "rows": rows });
    write_outputs(out, &[("json", serde_json::to_string_pretty(&v)?), ("md", md.clone())])?;
    println!("{md}");
    Ok(())
}

fn search(a: &OverThoughts, device: &Device) -> Result<()> {
    let (checkpoint, data, out) = (&a.checkpoint, &a.data, &a.out);
    let (ckpt, model, items) = load(checkpoint, data, a.n, device)?;
    let (_, k, _) = ckpt.asked_as(None, a.k);
    let rows = latent_search(&model, &ckpt.tokenizer, &items, k, ckpt.config.n_positions, device)
        .map_err(anyhow::Error::msg)
        .with_context(|| data.display().to_string())?;
    let name = data.file_name().unwrap_or_default().to_string_lossy();
    let caption = format!("Frontier nodes' mean value by height, {} questions of {name}, checkpoint {}", items.len(), checkpoint.display());
    let md = latent_search_table(&rows, &caption);
    let v = serde_json::json!({ "checkpoint": checkpoint, "data": data, "questions": items.len(), "k": k, "rows": rows });
    write_outputs(out, &[("json", serde_json::to_string_pretty(&v)?), ("md", md.clone()), ("svg", latent_search_svg(&rows))])?;
    println!("{md}");
    Ok(())
}
