//! Fuzzing (proptest, 100k+ cases in all): arbitrary bytes and mutated official-format JSON into the
//! dataset loader, arbitrary and mutated question text into the question parser and the tokenizer.
//! Each must return a value or an error, never panic.

use coconut::dataset::parse_items;
use coconut::prosqa::parse_question;
use proptest::prelude::*;

const ITEM: &str = r#"[{"question": "Tom is a wumpus. Every wumpus is a yumpus. Sam is a zumpus. Is Tom a yumpus or zumpus?", "answer": "Tom is a yumpus.", "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus."], "idx_to_symbol": ["Tom", "Sam", "wumpus", "yumpus", "zumpus"], "edges": [[0, 2], [2, 3], [1, 4]], "root": 0, "target": 3, "neg_target": 4}]"#;
const QUESTION: &str = "Tom is a wumpus. Every wumpus is a yumpus. Sam is a zumpus. Is Tom a yumpus or zumpus?";

/// Replaces a random span of `base` by `insert`.
fn mutate(base: &str, at: usize, len: usize, insert: &str) -> String {
    let bytes = base.as_bytes();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 30_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_items(&bytes);
    }

    #[test]
    fn loader_never_panics_on_mutated_items(at in 0usize..400, len in 0usize..8,
            insert in prop::sample::select(vec!["", "1", "-1", "99999999999999999999", "null", "[]", "{}", "\"x\"", "[0, 1]", ",", "]", "\"edges\": [[0]]", "true"])) {
        let _ = parse_items(mutate(ITEM, at, len, insert).as_bytes());
    }

    #[test]
    fn question_parser_never_panics(text in "\\PC{0,200}", at in 0usize..100, len in 0usize..10, insert in "[ .?a-zA-Z]{0,6}") {
        let _ = parse_question(&text);
        let _ = parse_question(&mutate(QUESTION, at, len, &insert));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tokenizer_never_panics_on_user_text(text in "\\PC{0,120}") {
        thread_local!(static TOK: coconut::CoconutTokenizer = coconut::CoconutTokenizer::word_level([QUESTION]).unwrap());
        TOK.with(|t| { let _ = t.encode(&text); });
    }
}
