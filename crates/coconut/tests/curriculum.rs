//! Curriculum sequences, labels and batches against sequences written out by hand
//! (the official implementation's semantics; ids: eos 0, start 1, end 2, latent 3).

use coconut::curriculum::{Curriculum, IGNORE, Tokenized, Variant, collate, epoch_order};
use coconut::data::Item;
use coconut::tokenizer::{CoconutTokenizer, SpecialIds};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const IDS: SpecialIds = SpecialIds { eos: 0, start_latent: 1, end_latent: 2, latent: 3 };
const X: i64 = IGNORE;

/// question [10, 11]; steps [20], [21, 22], [23]; answer [30, eos].
fn item() -> Tokenized {
    Tokenized { question: vec![10, 11], steps: vec![vec![20], vec![21, 22], vec![23]], answer: vec![30, 0], listing: false, frontiers: vec![] }
}

fn cur(variant: Variant, c: usize, pad: bool) -> Curriculum {
    Curriculum { variant, c_thought: c, max_latent_stage: 6, pad_latent_to_max: pad, uniform_prob: 0.0, epochs_per_stage: 5, frontier_weight: 0.0 }
}

fn ex(c: &Curriculum, stage: usize) -> (Vec<u32>, Vec<i64>) {
    let e = c.example(&item(), stage, IDS, &mut ChaCha8Rng::seed_from_u64(0));
    (e.input_ids, e.labels)
}

#[test]
fn coconut_stages_replace_steps_by_thoughts() {
    let c1 = cur(Variant::Coconut, 1, true);
    assert_eq!(ex(&c1, 0), (vec![10, 11, 1, 2, 20, 21, 22, 23, 30, 0], vec![X, X, X, X, 20, 21, 22, 23, 30, 0]));
    assert_eq!(ex(&c1, 1), (vec![10, 11, 1, 3, 2, 21, 22, 23, 30, 0], vec![X, X, X, X, X, 21, 22, 23, 30, 0]));
    // Stage 4 on a 3-step item: still 4 thoughts, no steps left.
    assert_eq!(ex(&c1, 4), (vec![10, 11, 1, 3, 3, 3, 3, 2, 30, 0], vec![X, X, X, X, X, X, X, X, 30, 0]));
    // Beyond max_latent_stage: max thoughts when padding to max ...
    assert_eq!(ex(&c1, 7).0, vec![10, 11, 1, 3, 3, 3, 3, 3, 3, 2, 30, 0]);
    // ... else one per step the item has.
    assert_eq!(ex(&cur(Variant::Coconut, 1, false), 7).0, vec![10, 11, 1, 3, 3, 3, 2, 30, 0]);
}

#[test]
fn a_search_listing_trains_in_language_at_every_stage() {
    let listing = Tokenized { listing: true, ..item() };
    let mut c1 = cur(Variant::Coconut, 1, true);
    c1.uniform_prob = 1.0;
    for stage in [0, 3, 7] {
        let e = c1.example(&listing, stage, IDS, &mut ChaCha8Rng::seed_from_u64(stage as u64));
        assert_eq!((e.input_ids, e.labels), (vec![10, 11, 1, 2, 20, 21, 22, 23, 30, 0], vec![X, X, X, X, 20, 21, 22, 23, 30, 0]), "stage {stage}");
    }
}

#[test]
fn c_thoughts_per_step() {
    let c2 = cur(Variant::Coconut, 2, true);
    assert_eq!(ex(&c2, 2), (vec![10, 11, 1, 3, 3, 3, 3, 2, 23, 30, 0], vec![X, X, X, X, X, X, X, X, 23, 30, 0]));
    assert_eq!(ex(&cur(Variant::Coconut, 3, false), 9).0, vec![10, 11, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 30, 0]);
}

#[test]
fn baselines_and_ablations() {
    let cot = cur(Variant::Cot, 1, true);
    assert_eq!(cot.stage_of_epoch(40), 0);
    assert_eq!(ex(&cot, 0), (vec![10, 11, 20, 21, 22, 23, 30, 0], vec![X, X, 20, 21, 22, 23, 30, 0]));
    assert_eq!(ex(&cur(Variant::NoCot, 1, true), 0), (vec![10, 11, 30, 0], vec![X, X, 30, 0]));
    let no_thought = cur(Variant::NoThought, 1, true);
    assert_eq!(ex(&no_thought, 2), (vec![10, 11, 23, 30, 0], vec![X, X, 23, 30, 0]));
    let pause_as_thought = cur(Variant::PauseAsThought, 1, true);
    assert!(!pause_as_thought.variant.feeds_back());
    assert_eq!(ex(&pause_as_thought, 2).0, vec![10, 11, 1, 3, 3, 2, 23, 30, 0]);
    let pause = cur(Variant::PauseToken, 1, true);
    assert_eq!(ex(&pause, pause.stage_of_epoch(0)).0, vec![10, 11, 1, 3, 3, 3, 3, 3, 3, 2, 30, 0]);
    let no_curriculum = cur(Variant::NoCurriculum, 1, true);
    assert!(no_curriculum.variant.feeds_back());
    assert_eq!(ex(&no_curriculum, no_curriculum.stage_of_epoch(0)).0, vec![10, 11, 1, 3, 3, 3, 3, 3, 3, 2, 30, 0]);
    // Stage schedule: epoch / epochs_per_stage.
    let c = cur(Variant::Coconut, 1, true);
    assert_eq!([0, 4, 5, 14, 15].map(|e| c.stage_of_epoch(e)), [0, 0, 1, 2, 3]);
}

#[test]
fn uniform_prob_draws_stages_from_zero_to_step_count() {
    let c = Curriculum { uniform_prob: 1.0, ..cur(Variant::Coconut, 1, true) };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let e = c.example(&item(), 6, IDS, &mut rng);
        seen.insert(e.input_ids.iter().filter(|&&t| t == 3).count());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

#[test]
fn prompts_end_after_the_thoughts() {
    let c = cur(Variant::Coconut, 1, true);
    assert_eq!(c.prompt(&item(), 2, IDS), vec![10, 11, 1, 3, 3, 2]);
    assert_eq!(c.prompt(&item(), 0, IDS), vec![10, 11, 1, 2]);
    assert_eq!(cur(Variant::Cot, 1, true).prompt(&item(), 0, IDS), vec![10, 11]);
    assert_eq!(c.eval_thoughts(9, 3), 6);
    assert_eq!(cur(Variant::Coconut, 2, false).eval_thoughts(9, 3), 6);
    assert_eq!(cur(Variant::Coconut, 1, false).eval_thoughts(2, 3), 2);
}

#[test]
fn collate_aligns_first_latent_then_right_pads() {
    let a = (vec![10, 11, 1, 3, 2, 30, 0], vec![X, X, X, X, X, 30, 0]);
    let b = (vec![10, 11, 12, 13, 1, 3, 3, 2, 30, 0], vec![X, X, X, X, X, X, X, X, 30, 0]);
    let batch = collate(&[a, b], IDS);
    assert_eq!((batch.batch, batch.len), (2, 10));
    #[rustfmt::skip]
    assert_eq!(batch.input_ids, vec![
        0, 0, 10, 11, 1, 3, 2, 30, 0, 0,
        10, 11, 12, 13, 1, 3, 3, 2, 30, 0]);
    #[rustfmt::skip]
    assert_eq!(batch.position_ids, vec![
        0, 0, 0, 1, 2, 3, 4, 5, 6, 0,
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(batch.attention_mask, vec![0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    #[rustfmt::skip]
    assert_eq!(batch.labels, vec![
        X, X, X, X, X, X, X, 30, 0, X,
        X, X, X, X, X, X, X, X, 30, 0]);
    assert_eq!(batch.latent_positions, vec![vec![5], vec![5, 6]]);
}

#[test]
fn collate_without_latents_only_right_pads_and_prompts_have_no_labels() {
    let batch = collate(&[(vec![10, 11, 12], vec![]), (vec![10], vec![])], IDS);
    assert_eq!(batch.input_ids, vec![10, 11, 12, 10, 0, 0]);
    assert_eq!(batch.position_ids, vec![0, 1, 2, 0, 0, 0]);
    assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 0]);
    assert!(batch.labels.is_empty());
    // One row with thoughts, one without: the row without is not shifted.
    let batch = collate(&[(vec![10, 1, 3, 2], vec![]), (vec![10, 11, 12], vec![])], IDS);
    assert_eq!(batch.input_ids, vec![10, 1, 3, 2, 10, 11, 12, 0]);
    assert_eq!(batch.latent_positions, vec![vec![2], vec![]]);
}

#[test]
fn epoch_order_is_a_deterministic_permutation_per_seed_and_epoch() {
    let a = epoch_order(50, 7, 3);
    assert_eq!(a, epoch_order(50, 7, 3));
    assert_ne!(a, epoch_order(50, 7, 4));
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
}

#[test]
fn tokenized_items_add_newlines_answer_marker_and_eos() {
    let item = Item::text("Tom is a wumpus. Is Tom a wumpus or yumpus?", &["Tom is a wumpus."], "Tom is a wumpus.");
    let tok = CoconutTokenizer::word_level([item.question.as_str(), "###"]).unwrap();
    let t = Tokenized::new(&item, &tok).unwrap();
    let words = |ids: &[u32]| ids.iter().map(|&i| tok.token(i).unwrap()).collect::<Vec<_>>().join(" ");
    assert_eq!(words(&t.question), "Tom is a wumpus . Is Tom a wumpus or yumpus ? \n");
    assert_eq!(words(&t.steps[0]), "Tom is a wumpus . \n");
    assert_eq!(words(&t.answer), "# # # Tom is a wumpus . <|endoftext|>");
}

#[test]
fn validation_asks_each_item_with_its_own_number_of_thoughts() {
    // Items with 2 and 5 steps at stage 3: the official evaluation gives min(stage, steps) thoughts
    // without padding to max (GSM8k), the stage's thoughts with it (ProsQA).
    let with_steps = |n: usize| Tokenized { question: vec![10], steps: vec![vec![20]; n], answer: vec![30], listing: false, frontiers: vec![] };
    let data = [with_steps(2), with_steps(5), with_steps(2)];
    let groups = coconut::train::thought_groups(&cur(Variant::Coconut, 1, false), 3, &data);
    assert_eq!(groups.into_iter().collect::<Vec<_>>(), vec![(2, vec![0, 2]), (3, vec![1])]);
    let padded = coconut::train::thought_groups(&cur(Variant::Coconut, 1, true), 3, &data);
    assert_eq!(padded.into_iter().collect::<Vec<_>>(), vec![(3, vec![0, 1, 2])]);
    let cot = coconut::train::thought_groups(&cur(Variant::Cot, 1, false), 3, &data);
    assert_eq!(cot.into_iter().collect::<Vec<_>>(), vec![(0, vec![0, 1, 2])]);
}

#[test]
fn frontiers_are_the_concepts_each_hop_away_from_the_person() {
    // Tom → wumpus → {yumpus, zumpus}; yumpus → gorpus; rempus → gorpus (not reachable from Tom).
    let q = "Tom is a wumpus. Every wumpus is a yumpus. Every wumpus is a zumpus. Every yumpus is a gorpus. \
             Every rempus is a gorpus. Is Tom a gorpus or rempus?";
    let item = Item::text(q, &["Tom is a wumpus.", "Every wumpus is a yumpus.", "Every yumpus is a gorpus."], "Tom is a gorpus.");
    let tok = CoconutTokenizer::word_level([q, "###"]).unwrap();
    let t = Tokenized::new(&item, &tok).unwrap();
    let words = |ids: &[u32]| ids.iter().map(|&i| tok.token(i).unwrap()).collect::<Vec<_>>();
    let frontiers: Vec<Vec<String>> = t.frontiers.iter().map(|f| words(f)).collect();
    assert_eq!(frontiers, vec![vec!["wumpus"], vec!["yumpus", "zumpus"], vec!["gorpus"]]);
    // Stage 2 replaces two steps: thought 1 stands for hop 1, thought 2 for hop 2.
    let c1 = cur(Variant::Coconut, 1, true);
    let e = c1.example(&t, 2, tok.special, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(e.thought_frontiers, t.frontiers[..2].to_vec());
    // Past the last stage the six padded thoughts: hops 1–3, then nothing to name.
    let e = c1.example(&t, 7, tok.special, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(e.thought_frontiers.len(), 6);
    assert_eq!(&e.thought_frontiers[..3], &t.frontiers[..]);
    assert!(e.thought_frontiers[3..].iter().all(Vec::is_empty));
    // Two thoughts a step: thoughts 1–2 stand for hop 1, 3–4 for hop 2.
    let e = cur(Variant::Coconut, 2, true).example(&t, 2, tok.special, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(e.thought_frontiers, vec![t.frontiers[0].clone(), t.frontiers[0].clone(), t.frontiers[1].clone(), t.frontiers[1].clone()]);
    // Nothing fed back, nothing to supervise.
    assert!(cur(Variant::PauseAsThought, 1, true).example(&t, 2, tok.special, &mut ChaCha8Rng::seed_from_u64(0)).thought_frontiers.is_empty());
}
