//! The data plan of a run: the first split and validation questions, and which questions each
//! epoch trains on (fresh draws, the graph-size warm-up, the search stage's listings), never one
//! that is validated on or in the official sets.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use coconut::data::Item;
use coconut::{prontoqa, prosqa};

use super::config::DataSection;

/// Which questions a run trains and validates on.
pub struct DataPlan {
    section: DataSection,
    /// The first split: epoch 0's questions, and every epoch's that draws nothing new.
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    /// What a new draw never contains: the validation split and the official sets.
    never_train: HashSet<String>,
}

impl DataPlan {
    pub fn new(d: &DataSection, official: &Path) -> Result<Self> {
        if d.fresh_each_epoch && d.dataset == "files" {
            bail!("data.fresh_each_epoch needs a generated dataset (prosqa, prontoqa), not files");
        }
        let (train, val) = load_data(d, official)?;
        let mut plan = Self { section: d.clone(), train, val, never_train: HashSet::new() };
        if plan.draws_new() {
            plan.never_train = fresh_exclude(&plan.val, official)?;
        }
        Ok(plan)
    }

    /// Whether some epoch trains on other questions than the first split as it is.
    pub fn draws_new(&self) -> bool {
        let d = &self.section;
        d.fresh_each_epoch || d.graph_warmup.is_some() || d.recall_epochs > 0 || d.search_epochs > 0 || d.search_share > 0.0
    }

    /// Which of an epoch's `n` questions train as search listings (`data.search_share`; none during
    /// the search stage, whose questions all are). Deterministic in (`seed`, `epoch`).
    pub fn listings(&self, epoch: usize, n: usize) -> Vec<bool> {
        use rand::{Rng, SeedableRng};
        let share = self.section.search_share;
        if share <= 0.0 || epoch < self.section.pre_curriculum_epochs() {
            return vec![false; n];
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.section.seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        (0..n).map(|_| rng.random::<f64>() < share).collect()
    }

    /// The questions of `epoch` when they are not the first split as it is (`None` when they are):
    /// a new draw (fresh epochs, the graph-size warm-up), listed breadth-first in the search
    /// stage's epochs. Deterministic in (`seed`, `epoch`), so a resumed run sees the same data.
    pub fn epoch_items(&self, epoch: usize) -> Result<Option<Vec<Item>>> {
        if !self.draws_new() {
            return Ok(None);
        }
        if epoch < self.section.recall_epochs {
            let seed = self.section.seed ^ (epoch as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
            return Ok(Some(prosqa::generate_recall(self.section.train_size, seed, &self.never_train)));
        }
        let fresh = fresh_train_items(&self.section, epoch, &self.never_train)?;
        let seed = self.section.seed ^ epoch as u64;
        if self.section.is_search_epoch(epoch) {
            return Ok(Some(search_items(fresh.as_deref().unwrap_or(&self.train), seed)?));
        }
        let listings = self.listings(epoch, fresh.as_ref().map_or(self.train.len(), Vec::len));
        if !listings.contains(&true) {
            return Ok(fresh);
        }
        let items = fresh.unwrap_or_else(|| self.train.clone());
        let mixed = items.into_iter().zip(listings).enumerate().map(|(i, (item, is))| if is { search_item(&item, seed, i) } else { Ok(item) });
        Ok(Some(mixed.collect::<Result<_>>()?))
    }
}

fn load_data(d: &DataSection, official: &Path) -> Result<(Vec<Item>, Vec<Item>)> {
    let read = |p: &Option<PathBuf>, what: &str| -> Result<Vec<Item>> {
        Ok(coconut::dataset::load_items(p.as_ref().with_context(|| format!("data.{what} is required for dataset = \"files\""))?)?)
    };
    Ok(match d.dataset.as_str() {
        "files" => (read(&d.train_file, "train_file")?, read(&d.val_file, "val_file")?),
        "prosqa" | "prontoqa" => {
            // The first split keeps the generator's natural distribution: validation is never equal-named.
            let all = generate_items(&d.dataset, d.train_size + d.val_size, d.seed, &prosqa::GenConfig::default(), &official_questions(official)?)?;
            let (train, val) = all.split_at(d.train_size);
            (train.to_vec(), val.to_vec())
        }
        other => bail!("data.dataset `{other}` is not one of prosqa, prontoqa, files"),
    })
}

/// The official ProsQA validation and test questions in `dir` (`--official-data`): never trained on.
fn official_questions(dir: &Path) -> Result<HashSet<String>> {
    let mut questions = HashSet::new();
    for f in ["prosqa_valid.json", "prosqa_test.json"].map(|f| dir.join(f)) {
        if f.exists() {
            questions.extend(coconut::dataset::load_items(&f)?.into_iter().map(|i| i.question));
        }
    }
    Ok(questions)
}

/// `n` generated questions of `dataset` (ProsQA drawn with `draw`), none of them in `exclude`.
fn generate_items(dataset: &str, n: usize, seed: u64, draw: &prosqa::GenConfig, exclude: &HashSet<String>) -> Result<Vec<Item>> {
    Ok(match dataset {
        "prosqa" => prosqa::generate(n, seed, draw, exclude).map_err(anyhow::Error::msg)?,
        // The ProntoQA generator is one seeded stream: drop excluded items and keep drawing.
        "prontoqa" => prontoqa::generate(n + exclude.len(), seed).into_iter().filter(|i| !exclude.contains(&i.question)).take(n).collect(),
        other => bail!("data.dataset `{other}` is not a generated dataset (prosqa, prontoqa)"),
    })
}

/// What a fresh epoch must never draw: the validation split and the official sets.
fn fresh_exclude(val: &[Item], official: &Path) -> Result<HashSet<String>> {
    let mut exclude = official_questions(official)?;
    exclude.extend(val.iter().map(|i| i.question.clone()));
    Ok(exclude)
}

/// The training questions of `epoch` when it does not reuse the first split (`None` when it does):
/// a new draw from the generator (a graph-size warm-up epoch, or any `epoch > 0` with
/// `fresh_each_epoch`), deterministic in (`seed`, `epoch`) so a resumed run sees the same data.
fn fresh_train_items(d: &DataSection, epoch: usize, exclude: &HashSet<String>) -> Result<Option<Vec<Item>>> {
    let seed = d.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    if let Some(small) = d.graph_warmup.as_ref().and_then(|w| w.gen_config(epoch.saturating_sub(d.recall_epochs))) {
        if d.dataset != "prosqa" {
            bail!("data.graph_warmup needs data.dataset = \"prosqa\", not `{}`", d.dataset);
        }
        let small = prosqa::GenConfig { equal_option_parents: d.equal_option_parents, ..small };
        return Ok(Some(
            prosqa::generate(d.train_size, seed, &small, exclude).map_err(|e| anyhow::anyhow!("data.graph_warmup at epoch {epoch}: {e}"))?,
        ));
    }
    if !d.fresh_each_epoch || epoch == 0 {
        return Ok(None);
    }
    let cfg = prosqa::GenConfig { equal_option_parents: d.equal_option_parents, ..Default::default() };
    generate_items(&d.dataset, d.train_size, seed, &cfg, exclude).map(Some)
}

/// The search stage's items: each question's steps replaced by every fact reachable from its
/// person, breadth-first (`prosqa::breadth_first_steps`, seeded by `seed` and the item's index).
fn search_items(items: &[Item], seed: u64) -> Result<Vec<Item>> {
    items.iter().enumerate().map(|(i, item)| search_item(item, seed, i)).collect()
}

/// The search listing of `item`, the `i`-th question of its epoch.
fn search_item(item: &Item, seed: u64, i: usize) -> Result<Item> {
    let steps = prosqa::breadth_first_steps(item, seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .context("data.search_epochs needs ProsQA questions with their graphs")?;
    Ok(Item { steps, ..item.clone() })
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{GraphWarmup, TrainConfig};
    use coconut::curriculum::{Curriculum, Variant};

    /// The official sets, wherever the tests run from.
    fn official() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/prosqa")
    }

    /// Generated ProsQA, fresh questions every epoch, no stage or option set: each test changes what it measures.
    fn prosqa_section(train_size: usize, val_size: usize, seed: u64) -> DataSection {
        DataSection {
            dataset: "prosqa".into(),
            train_size,
            val_size,
            seed,
            train_file: None,
            val_file: None,
            fresh_each_epoch: true,
            graph_warmup: None,
            recall_epochs: 0,
            search_epochs: 0,
            search_share: 0.0,
            equal_option_parents: false,
            length_window: 0,
        }
    }

    #[test]
    fn fresh_epochs_draw_new_questions_and_never_validation_ones() {
        let d = prosqa_section(300, 50, 5);
        let (first, val) = load_data(&d, &official()).unwrap();
        let exclude = fresh_exclude(&val, &official()).unwrap();
        assert_eq!(fresh_train_items(&d, 0, &exclude).unwrap(), None, "epoch 0 is the first split");
        let one = fresh_train_items(&d, 1, &exclude).unwrap().unwrap();
        let two = fresh_train_items(&d, 2, &exclude).unwrap().unwrap();
        assert_eq!(one.len(), 300);
        assert_eq!(Some(&one), fresh_train_items(&d, 1, &exclude).unwrap().as_ref(), "a resumed run must see the same epoch");
        let seen: HashSet<&str> = first.iter().map(|i| i.question.as_str()).collect();
        let held: HashSet<&str> = val.iter().map(|i| i.question.as_str()).collect();
        let new = |e: &[Item]| e.iter().filter(|i| !seen.contains(i.question.as_str())).count();
        assert!(new(&one) > 290 && new(&two) > 290, "epochs 1 and 2 are new graphs");
        assert_ne!(one, two);
        assert!(one.iter().chain(&two).all(|i| !held.contains(i.question.as_str())), "no validation question is trained on");
        let files = DataSection { dataset: "files".into(), ..d };
        assert!(fresh_train_items(&files, 1, &exclude).unwrap_err().to_string().contains("generated dataset"));
    }

    #[test]
    fn graph_warmup_grows_small_graphs_to_full_size_then_stops() {
        let warmup = GraphWarmup { epochs: 4, hold_epochs: 0, min_nodes: 6, max_nodes: 9, min_hops: 1 };
        let d = DataSection { fresh_each_epoch: false, graph_warmup: Some(warmup.clone()), ..prosqa_section(200, 50, 7) };
        let (_, val) = load_data(&d, &official()).unwrap();
        let exclude = fresh_exclude(&val, &official()).unwrap();
        let nodes = |items: &[Item]| items.iter().map(|i| i.idx_to_symbol.as_ref().unwrap().len()).collect::<Vec<_>>();
        let first = fresh_train_items(&d, 0, &exclude).unwrap().expect("epoch 0 is a warm-up epoch");
        assert_eq!(first.len(), 200);
        assert!(nodes(&first).iter().all(|n| (6..=9).contains(n)), "epoch 0: 6..=9 nodes, got {:?}", nodes(&first));
        assert!(first.iter().all(|i| prosqa::validate(i).is_ok()), "small graphs are valid ProsQA items");
        assert!(first.iter().any(|i| i.steps.len() < 3), "one-hop and two-hop questions appear");
        // Half-way: 6 + (21 - 6) / 2 = 13.5 -> 14 and 9 + (26 - 9) / 2 = 17.5 -> 18 nodes, 2 hops.
        let mid = warmup.gen_config(2).unwrap();
        assert_eq!((mid.min_nodes, mid.max_nodes, mid.min_hops), (14, 18, 2));
        let mid_items = fresh_train_items(&d, 2, &exclude).unwrap().unwrap();
        assert!(nodes(&mid_items).iter().all(|n| (14..=18).contains(n)));
        assert_eq!(fresh_train_items(&d, 4, &exclude).unwrap(), None, "after the warm-up: the first split again");
        let held: HashSet<&str> = val.iter().map(|i| i.question.as_str()).collect();
        assert!(first.iter().chain(&mid_items).all(|i| !held.contains(i.question.as_str())));
        let held_small = GraphWarmup { epochs: 6, hold_epochs: 2, ..warmup.clone() };
        assert_eq!(held_small.gen_config(1), warmup.gen_config(0), "held at the small size");
        assert_eq!(held_small.gen_config(4), warmup.gen_config(2), "then grows over the remaining 4 epochs");
        let pronto = DataSection { dataset: "prontoqa".into(), ..d };
        assert!(fresh_train_items(&pronto, 0, &exclude).unwrap_err().to_string().contains("graph_warmup"));
    }

    #[test]
    fn a_search_share_lists_that_share_of_each_epochs_questions() {
        let d = DataSection { search_epochs: 1, search_share: 0.25, ..prosqa_section(400, 20, 3) };
        let plan = DataPlan::new(&d, &official()).unwrap();
        let plain = DataPlan::new(&DataSection { search_share: 0.0, ..d.clone() }, &official()).unwrap();
        assert!(!plan.listings(0, 400).contains(&true), "the search stage lists every question by itself");
        let mask = plan.listings(2, 400);
        assert_eq!(mask, plan.listings(2, 400), "deterministic in (seed, epoch)");
        assert_ne!(mask, plan.listings(3, 400), "a new draw each epoch");
        let listed = mask.iter().filter(|&&m| m).count();
        assert!((70..=130).contains(&listed), "{listed} of 400 listed at a share of 0.25");
        let (mixed, base) = (plan.epoch_items(2).unwrap().unwrap(), plain.epoch_items(2).unwrap().unwrap());
        for ((m, b), is) in mixed.iter().zip(&base).zip(&mask) {
            assert_eq!((&m.question, &m.answer), (&b.question, &b.answer), "the same questions");
            if *is {
                assert!(m.steps.len() > b.steps.len() && b.steps.iter().all(|s| m.steps.contains(s)), "a listing of every reachable fact");
            } else {
                assert_eq!(m, b, "the others as the curriculum has them");
            }
        }
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
        cfg.data.search_share = 1.5;
        assert!(cfg.validate().unwrap_err().to_string().contains("data.search_share"));
    }

    #[test]
    fn equal_option_parents_draws_fresh_epochs_only_and_keeps_validation_natural() {
        let d = DataSection { equal_option_parents: true, ..prosqa_section(200, 200, 4) };
        let plan = DataPlan::new(&d, &official()).unwrap();
        let parents = |item: &Item, v: usize| item.edges.as_ref().unwrap().iter().filter(|e| e[1] == v).count();
        let equal = |item: &Item| parents(item, item.target.unwrap()) == parents(item, item.neg_target.unwrap());
        let fresh = plan.epoch_items(1).unwrap().unwrap();
        assert!(fresh.len() == 200 && fresh.iter().all(equal), "a fresh epoch: every question's options named equally often");
        let natural = plan.val.iter().filter(|i| !equal(i)).count();
        assert!(natural > 60, "validation keeps the official distribution ({natural} of 200 differ)");
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
        cfg.data.equal_option_parents = true;
        cfg.data.fresh_each_epoch = false;
        cfg.data.graph_warmup = None;
        assert!(cfg.validate().unwrap_err().to_string().contains("data.equal_option_parents"));
    }

    #[test]
    fn search_stage_comes_before_the_curriculum_and_lists_reachable_facts() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
        cfg.curriculum = Curriculum { epochs_per_stage: 1, ..Curriculum::default() };
        cfg.data.search_epochs = 2;
        assert_eq!([0, 1, 2, 3, 4].map(|e| cfg.stage_of_epoch(e)), [0, 0, 0, 1, 2]);
        cfg.curriculum.variant = Variant::NoCot;
        assert_eq!(
            [0, 1, 2, 3].map(|e| cfg.curriculum_of_epoch(e).variant),
            [Variant::Cot, Variant::Cot, Variant::NoCot, Variant::NoCot],
            "No-CoT reads the listing too"
        );
        let items = prosqa::generate(20, 3, &prosqa::GenConfig::default(), &HashSet::new()).unwrap();
        let search = search_items(&items, 9).unwrap();
        for (item, s) in items.iter().zip(&search) {
            assert_eq!((&s.question, &s.answer), (&item.question, &item.answer));
            assert!(s.steps.len() > item.steps.len(), "every reachable fact, not one path");
            assert!(item.steps.iter().all(|step| s.steps.contains(step)), "the path's facts are among them");
            assert!(s.steps.iter().all(|step| item.question.contains(step.as_str())), "only facts the question states");
        }
        assert!(search_items(&[Item::text("q", &["s"], "a")], 0).unwrap_err().to_string().contains("search_epochs"));
    }

    #[test]
    fn recall_stage_comes_first_then_the_search_stage_then_the_curriculum() {
        let d = DataSection { fresh_each_epoch: false, recall_epochs: 2, search_epochs: 1, ..prosqa_section(60, 20, 4) };
        let plan = DataPlan::new(&d, &official()).unwrap();
        let (zero, one) = (plan.epoch_items(0).unwrap().unwrap(), plan.epoch_items(1).unwrap().unwrap());
        assert_eq!(zero, plan.epoch_items(0).unwrap().unwrap(), "a resumed run sees the same recall questions");
        assert_ne!(zero, one, "each recall epoch draws new questions");
        for item in zero.iter().chain(&one) {
            let names = item.idx_to_symbol.as_ref().unwrap();
            let starts: Vec<usize> = item.edges.as_ref().unwrap().iter().map(|e| e[0]).collect();
            assert!((0..names.len()).all(|v| starts.iter().filter(|&&s| s == v).count() <= 1), "one child per concept");
            assert!(!plan.val.iter().any(|v| v.question == item.question));
        }
        let search = plan.epoch_items(2).unwrap().unwrap();
        assert!(search.iter().zip(&plan.train).all(|(s, t)| s.question == t.question && s.steps.len() >= t.steps.len()), "epoch 2: the first split's listings");
        assert_eq!(plan.listings(1, 5), vec![false; 5]);
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny-overfit.toml")).unwrap();
        let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
        cfg.curriculum = Curriculum { epochs_per_stage: 1, ..Curriculum::default() };
        cfg.data.recall_epochs = 2;
        cfg.data.search_epochs = 1;
        assert_eq!([0, 1, 2, 3, 4].map(|e| cfg.stage_of_epoch(e)), [0, 0, 0, 0, 1]);
        assert_eq!([1, 3].map(|e| cfg.curriculum_of_epoch(e).variant), [Variant::Cot, Variant::Coconut]);
        assert_eq!(cfg.data.dataset, "files");
        assert!(cfg.validate().unwrap_err().to_string().contains("data.recall_epochs"), "recall needs ProsQA's words");
    }
}
