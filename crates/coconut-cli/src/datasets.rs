//! `coconut data`: generate, convert, check and describe datasets.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use coconut::{data, prosqa};

use crate::{positive, write_atomic};

/// How many questions, from which seed, into which file.
#[derive(clap::Args)]
pub struct GenArgs {
    /// Number of questions (held in memory: about 7 KB each).
    #[arg(long, value_parser = positive)]
    n: usize,
    /// Random seed: the same (n, seed) always writes the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (official JSON format), written atomically.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Generate ProsQA questions (the paper's Algorithm 1, fitted to the official statistics).
    Prosqa {
        #[command(flatten)]
        gen_args: GenArgs,
        /// Files whose questions are never emitted (default: the official sets in --official-data;
        /// missing files: a warning).
        #[arg(long, num_args = 1..)]
        exclude: Vec<PathBuf>,
        /// Nodes per graph, MIN-MAX (the official size is 21-26; smaller graphs are what the
        /// trainer's `data.graph_warmup` starts from).
        #[arg(long, default_value = "21-26", value_parser = parse_range)]
        nodes: (usize, usize),
        /// Shortest-path hops of the question, MIN-MAX.
        #[arg(long, default_value = "3-6", value_parser = parse_range)]
        hops: (usize, usize),
    },
    /// Generate recall questions: ProsQA's words, format and size, one child per concept, so each
    /// "Every X is a ?" has one right answer (what the trainer's `data.recall_epochs` draws).
    Recall {
        #[command(flatten)]
        gen_args: GenArgs,
    },
    /// Generate 5-hop ProntoQA questions (fictional concepts, "True or false" queries).
    Prontoqa {
        #[command(flatten)]
        gen_args: GenArgs,
    },
    /// Convert GSM8k in the iCoT text format (`question||steps #### answer`, one a line) to JSON items.
    Gsm8k {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Statistics of a ProsQA file: nodes, edges, persons, hops, shortest paths, words, target-first rate.
    Stats {
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Compare with a reference file (e.g. the official sets) against the generator's goal.
        #[arg(long, num_args = 1..)]
        compare: Vec<PathBuf>,
    },
    /// Validate a dataset file; exits non-zero on the first bad item, naming it and the field.
    Check { file: PathBuf },
}

fn load_items(paths: &[PathBuf]) -> Result<Vec<data::Item>> {
    let mut all = Vec::new();
    for p in paths {
        all.extend(coconut::dataset::load_items(p)?);
    }
    Ok(all)
}

/// The official sets in `dir` (validation and test).
fn official_files(dir: &std::path::Path) -> Vec<PathBuf> {
    ["prosqa_valid.json", "prosqa_test.json"].iter().map(|f| dir.join(f)).collect()
}

/// Memory a generated set of `n` questions takes while it is made (~7 KB a question, measured at
/// 50,000: 333 MB peak): above 1 GB the generator says so before it starts, and it refuses a set
/// that would not fit in this machine's memory.
fn check_memory(n: usize) -> Result<()> {
    let gb = n as f64 * 7e3 / 1e9;
    let total_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb * 1024.0 / 1e9);
    if let Some(total) = total_gb.filter(|&t| gb > t) {
        bail!(
            "--n {n}: the questions are made in memory and would need about {gb:.0} GB; this machine has {total:.0} GB (make several files with different --seed)"
        );
    }
    if gb > 1.0 {
        eprintln!("warning: {n} questions are generated in memory: about {gb:.1} GB");
    }
    Ok(())
}

pub fn data_command(command: DataCommand, official_data: &std::path::Path) -> Result<()> {
    match command {
        DataCommand::Prosqa { gen_args: GenArgs { n, seed, out }, exclude, nodes, hops } => {
            let exclude = if exclude.is_empty() { official_files(official_data) } else { exclude };
            let mut seen = std::collections::HashSet::new();
            for p in &exclude {
                match load_items(std::slice::from_ref(p)) {
                    Ok(items) => seen.extend(items.into_iter().map(|it| it.question)),
                    Err(e) if !p.exists() => eprintln!("warning: cannot exclude {}: {e:#}", p.display()),
                    Err(e) => return Err(e),
                }
            }
            let t0 = std::time::Instant::now();
            let gen_config = prosqa::GenConfig { min_nodes: nodes.0, max_nodes: nodes.1, min_hops: hops.0, max_hops: hops.1, ..Default::default() };
            let ranges = format!("--nodes {}-{} --hops {}-{}", nodes.0, nodes.1, hops.0, hops.1);
            gen_config.validate().map_err(|e| anyhow::anyhow!("{ranges}: {e}"))?;
            check_memory(n)?;
            let items = prosqa::generate(n, seed, &gen_config, &seen).map_err(|e| anyhow::anyhow!("{ranges}: {e}"))?;
            let secs = t0.elapsed().as_secs_f64();
            write_atomic(&out, data::to_json(&items).as_bytes())?;
            eprintln!("{n} ProsQA questions (seed {seed}) -> {} in {secs:.2} s ({:.0}/s)", out.display(), n as f64 / secs.max(1e-9));
        }
        DataCommand::Recall { gen_args: GenArgs { n, seed, out } } => {
            check_memory(n)?;
            let items = prosqa::generate_recall(n, seed, &Default::default());
            write_atomic(&out, data::to_json(&items).as_bytes())?;
            let steps = items.iter().map(|i| i.steps.len()).sum::<usize>() as f64 / n as f64;
            eprintln!("{n} recall questions (seed {seed}, {steps:.1} steps each) -> {}", out.display());
        }
        DataCommand::Prontoqa { gen_args: GenArgs { n, seed, out } } => {
            check_memory(n)?;
            write_atomic(&out, data::to_json(&coconut::prontoqa::generate(n, seed)).as_bytes())?;
            eprintln!("{n} ProntoQA questions (seed {seed}) -> {}", out.display());
        }
        DataCommand::Gsm8k { input, out } => {
            let text = std::fs::read_to_string(&input).with_context(|| input.display().to_string())?;
            let items = coconut::gsm8k::parse_icot(&text).with_context(|| input.display().to_string())?;
            write_atomic(&out, data::to_json(&items).as_bytes())?;
            eprintln!("{} GSM8k items -> {}", items.len(), out.display());
        }
        DataCommand::Stats { file, json, compare } => {
            let stats = prosqa::dataset_stats(&load_items(std::slice::from_ref(&file))?)?;
            let reference = if compare.is_empty() { None } else { Some(prosqa::dataset_stats(&load_items(&compare)?)?) };
            if json {
                let cmp = reference.as_ref().map(|r| prosqa::compare(&stats, r));
                println!("{}", serde_json::json!({ "stats": stats, "reference": reference, "comparison": cmp }));
            } else {
                print_stats(&stats, reference.as_ref());
            }
        }
        DataCommand::Check { file } => {
            let items = load_items(std::slice::from_ref(&file))?;
            println!("{}: {} items, all valid", file.display(), items.len());
        }
    }
    Ok(())
}

fn print_stats(s: &prosqa::DatasetStats, reference: Option<&prosqa::DatasetStats>) {
    let row = |name: &str, m: prosqa::MeanSd| format!("| {name} | {:.2} ± {:.2} |", m.mean, m.sd);
    println!("| {} items | mean ± sd |\n|---|---|", s.items);
    for (name, m) in [
        ("nodes", s.nodes),
        ("edges", s.edges),
        ("persons", s.persons),
        ("shortest path (hops)", s.hops),
        ("shortest paths (count)", s.shortest_paths),
        ("question words", s.question_words),
    ] {
        println!("{}", row(name, m));
    }
    let h = s.hop_share;
    println!(
        "| hops 3/4/5/6/more (%) | {:.1} / {:.1} / {:.1} / {:.1} / {:.1} |",
        100.0 * h[0],
        100.0 * h[1],
        100.0 * h[2],
        100.0 * h[3],
        100.0 * h[4]
    );
    println!("| target named first (%) | {:.1} |", 100.0 * s.target_first);
    println!("| root is node 1 (%) | {:.1} |", 100.0 * s.root_is_node1);
    if let Some(r) = reference {
        println!("\n| quantity | this file | reference ({} items) | goal: within | ok |\n|---|---|---|---|---|", r.items);
        for c in prosqa::compare(s, r) {
            println!("| {} | {:.3} | {:.3} | ±{:.3} | {} |", c.name, c.ours, c.reference, c.tolerance, if c.ok { "yes" } else { "NO" });
        }
    }
}

/// `MIN-MAX` (or one number) as an inclusive range.
fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let num = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("`{s}` is not MIN-MAX (e.g. 6-9)"));
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if lo > hi {
        return Err(format!("`{s}`: MIN is above MAX"));
    }
    Ok((lo, hi))
}
