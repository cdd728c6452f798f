//! The paper's six path categories on hand-made outputs for one small graph.
//!
//! Graph: Tom → wumpus → yumpus → rempus (target), Tom → zumpus → gorpus → rempus (a second shortest path),
//! Tom → wumpus → lorpus → jompus → rempus is longer; Sam → bompus (neg_target).

use coconut::data::Item;
use coconut::eval::{PathCategory::*, answer_correct, extract_answer, path_category};

fn item() -> Item {
    let names = ["Tom", "Sam", "wumpus", "yumpus", "rempus", "zumpus", "bompus", "lorpus", "jompus", "gorpus"];
    Item {
        question: String::new(),
        answer: "Tom is a rempus.".into(),
        steps: vec![],
        idx_to_symbol: Some(names.iter().map(|s| s.to_string()).collect()),
        edges: Some(vec![[0, 2], [2, 3], [3, 4], [0, 5], [5, 9], [9, 4], [1, 6], [2, 7], [7, 8], [8, 4]]),
        root: Some(0),
        target: Some(4),
        neg_target: Some(6),
    }
}

#[test]
fn answers_are_matched_after_the_last_hash() {
    assert_eq!(extract_answer("Tom is a wumpus.\n### Tom is a rempus."), "Tom is a rempus.");
    assert!(answer_correct("## # Tom is a rempus.", &item()));
    assert!(!answer_correct("### Tom is a bompus.", &item()));
}

#[test]
fn each_category_on_a_hand_made_case() {
    let it = item();
    let cases = [
        ("Tom is a wumpus.\nEvery wumpus is a yumpus.\nEvery yumpus is a rempus.\n### Tom is a rempus.", 0, CorrectPath),
        ("Tom is a zumpus.\nEvery zumpus is a gorpus.\nEvery gorpus is a rempus.\n### Tom is a rempus.", 0, CorrectPath),
        ("Tom is a wumpus.\nEvery wumpus is a lorpus.\nEvery lorpus is a jompus.\nEvery jompus is a rempus.\n### Tom is a rempus.", 0, LongerPath),
        ("Tom is a wumpus.\nEvery wumpus is a rempus.\n### Tom is a rempus.", 0, Hallucination),
        ("Tom is a wumpus.\nEvery yumpus is a rempus.\n### Tom is a rempus.", 0, Hallucination),
        ("Tom is a florp.\n### Tom is a rempus.", 0, Hallucination),
        ("Tom is a wumpus.\nEvery wumpus is a lorpus.\n### Tom is a lorpus.", 0, WrongTarget),
        ("### Tom is a rempus.", 0, CorrectLabel),
        ("### Tom is a bompus.", 0, IncorrectLabel),
        // After k = 2 thoughts the language path starts mid-way; it is completed from the root.
        ("Every yumpus is a rempus.\n### Tom is a rempus.", 2, CorrectPath),
        ("Every jompus is a rempus.\n### Tom is a rempus.", 1, LongerPath),
        // A chain starting where the root cannot reach is a hallucination; so is a mid-way start with k = 0.
        ("Every bompus is a rempus.\n### Tom is a rempus.", 1, Hallucination),
        ("Every yumpus is a rempus.\n### Tom is a rempus.", 0, Hallucination),
    ];
    for (output, k, want) in cases {
        assert_eq!(path_category(output, &it, k), want, "{output:?} with k={k}");
    }
}
