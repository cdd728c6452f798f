//! Dataset loading, the ProsQA generator against the official statistics, ProntoQA, GSM8k, and the
//! question parser, as the CLI and the page use them.

use std::collections::HashSet;
use std::path::PathBuf;

use coconut::data::DataError;
use coconut::dataset::parse_items;
use coconut::prosqa::{self, GenConfig, compare, dataset_stats, parse_question};
use coconut::{gsm8k, prontoqa};

fn official(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/prosqa").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("official ProsQA file {} is required: {e}", p.display()))
}

const GOOD: &str = r#"[{"question": "Tom is a wumpus. Every wumpus is a yumpus. Sam is a zumpus. Is Tom a yumpus or zumpus?",
  "answer": "Tom is a yumpus.", "steps": ["Tom is a wumpus.", "Every wumpus is a yumpus."],
  "idx_to_symbol": ["Tom", "Sam", "wumpus", "yumpus", "zumpus"], "edges": [[0, 2], [2, 3], [1, 4]],
  "root": 0, "target": 3, "neg_target": 4}]"#;

fn err_of(json: &str) -> String {
    parse_items(json.as_bytes()).unwrap_err().to_string()
}

#[test]
fn official_sets_load_and_validate() {
    assert_eq!(parse_items(&official("prosqa_valid.json")).unwrap().len(), 300);
    assert_eq!(parse_items(&official("prosqa_test.json")).unwrap().len(), 500);
}

#[test]
fn malformed_files_name_the_item_and_field() {
    assert_eq!(parse_items(GOOD.as_bytes()).unwrap().len(), 1);
    assert!(err_of("[{").starts_with("malformed JSON"));
    assert_eq!(err_of("{}"), "the file must be a JSON array of items, found an object");
    assert_eq!(err_of(r#"[{"answer": "x", "steps": []}]"#), "item 0, field `question`: is missing");
    assert_eq!(err_of(r#"[{"question": "q", "answer": 3, "steps": []}]"#), "item 0, field `answer`: must be a string, found a number");
    assert_eq!(err_of(r#"[{"question": "q", "answer": "a", "steps": ["s", 1]}]"#), "item 0, field `steps`: step 1 must be a string, found a number");
    let bad_edge = GOOD.replace("[1, 4]]", "[1, 9]]");
    assert_eq!(err_of(&bad_edge), "item 0, field `edges`: edge 2 [1, 9] is out of range for 5 nodes");
    let wrong_answer = GOOD.replace("\"answer\": \"Tom is a yumpus.\"", "\"answer\": \"Tom is a zumpus.\"");
    assert!(err_of(&wrong_answer).starts_with("item 0, field `answer`: `Tom is a zumpus.` contradicts the graph"));
    let reachable_neg = GOOD.replace("\"neg_target\": 4", "\"neg_target\": 2");
    assert!(err_of(&reachable_neg).starts_with("item 0, field `neg_target`"));
    let bad_step = GOOD.replace("Every wumpus is a yumpus.\"]", "Every wumpus is a zumpus.\"]");
    assert!(err_of(&bad_step).starts_with("item 0, field `steps`: step 1"));
    let two = format!("[{}, {{\"question\": 1}}]", &GOOD[1..GOOD.len() - 1]);
    assert!(err_of(&two).starts_with("item 1, field `question`"));
}

#[test]
fn generator_is_deterministic_valid_and_disjoint_from_official_sets() {
    let exclude: HashSet<String> = parse_items(&official("prosqa_test.json")).unwrap().into_iter().map(|i| i.question).collect();
    let a = prosqa::generate(300, 5, &GenConfig::default(), &exclude).unwrap();
    assert_eq!(a, prosqa::generate(300, 5, &GenConfig::default(), &exclude).unwrap());
    assert_ne!(a, prosqa::generate(300, 6, &GenConfig::default(), &exclude).unwrap());
    // Every item survives the strict loader and never repeats an official question.
    let reloaded = parse_items(coconut::data::to_json(&a).as_bytes()).unwrap();
    assert_eq!(reloaded, a);
    assert!(a.iter().all(|i| !exclude.contains(&i.question)));
    // An excluded question is never emitted: exclude the first one and regenerate.
    let first: HashSet<String> = [a[0].question.clone()].into();
    assert!(prosqa::generate(300, 5, &GenConfig::default(), &first).unwrap().iter().all(|i| i.question != a[0].question));
}

#[test]
fn equal_option_parents_leaves_the_mention_count_nothing_to_tell() {
    // Counted here from the question text: how many facts name each option ("... is a OPTION.").
    let named = |q: &str, option: &str| q.matches(&format!(" is a {option}.")).count();
    let options = |q: &str| {
        let tail = q.rsplit_once("? ").map_or(q, |(_, t)| t);
        let ask = tail.rsplit_once(" a ").unwrap().1.trim_end_matches('?').to_string();
        let (a, b) = ask.split_once(" or ").unwrap();
        (a.to_string(), b.to_string())
    };
    let natural = prosqa::generate(400, 8, &GenConfig::default(), &HashSet::new()).unwrap();
    let differ = natural.iter().filter(|i| {
        let (a, b) = options(&i.question);
        named(&i.question, &a) != named(&i.question, &b)
    });
    assert!(differ.count() > 150, "in the official distribution the counts usually differ");
    let cfg = GenConfig { equal_option_parents: true, ..GenConfig::default() };
    let equal = prosqa::generate(400, 8, &cfg, &HashSet::new()).unwrap();
    assert_eq!(equal, prosqa::generate(400, 8, &cfg, &HashSet::new()).unwrap(), "deterministic in the seed");
    for item in &equal {
        let (a, b) = options(&item.question);
        assert!(named(&item.question, &a) >= 1 && named(&item.question, &a) == named(&item.question, &b), "{}", item.question);
        prosqa::validate(item).unwrap();
    }
}

#[test]
fn generated_statistics_meet_the_goal_against_the_official_sets() {
    let mut official_items = parse_items(&official("prosqa_valid.json")).unwrap();
    official_items.extend(parse_items(&official("prosqa_test.json")).unwrap());
    let reference = dataset_stats(&official_items).unwrap();
    // Paper/README figures of the official files.
    assert!((reference.nodes.mean - 22.8).abs() < 0.05 && (reference.edges.mean - 36.0).abs() < 0.05);
    let ours = dataset_stats(&prosqa::generate(20_000, 1, &GenConfig::default(), &HashSet::new()).unwrap()).unwrap();
    for c in compare(&ours, &reference) {
        assert!(c.ok, "{}: ours {:.3}, official {:.3}, allowed ±{:.3}", c.name, c.ours, c.reference, c.tolerance);
    }
    assert!((ours.target_first - 0.5).abs() < 0.02, "options are in random order");
}

#[test]
fn question_parser_reads_the_graph_and_names_the_bad_sentence() {
    let items = parse_items(&official("prosqa_valid.json")).unwrap();
    for item in &items[..20] {
        let q = parse_question(&item.question).unwrap();
        assert_eq!(q.edges.len(), item.edges.as_ref().unwrap().len());
        let names = item.idx_to_symbol.as_ref().unwrap();
        assert_eq!(q.names[q.subject], names[item.root.unwrap()]);
        let target = &names[item.target.unwrap()];
        assert!(q.options.iter().any(|&o| &q.names[o] == target));
    }
    let q = parse_question("Tom is a wumpus. Every wumpus is a yumpus. Is Tom a yumpus or wumpus?").unwrap();
    assert_eq!(q.names, ["Tom", "wumpus", "yumpus"]);
    assert_eq!(q.is_person, [true, false, false]);
    assert_eq!(q.edges, [(0, 1), (1, 2)]);
    let e = parse_question("Tom is a wumpus. Every wumpus are yumpus. Is Tom a yumpus or wumpus?").unwrap_err();
    assert!(e.starts_with("sentence 2 `Every wumpus are yumpus.`"), "{e}");
    let e = parse_question("Tom is a wumpus. Is Tom a yumpus?").unwrap_err();
    assert!(e.starts_with("sentence 2"), "{e}");
    assert!(parse_question("Tom is a wumpus.").is_err());
    let e = parse_question("Tom is a wumpus. Is Tom a wumpus or florp?").unwrap_err();
    assert!(e.contains("florp"), "{e}");
}

#[test]
fn a_decoded_language_chain_maps_to_the_graph_edges_it_walks() {
    let items = parse_items(&official("prosqa_valid.json")).unwrap();
    // Validation item 0: Tom → terpus → brimpus → lempus; "### Tom is a lempus." is no edge.
    let q = parse_question(&items[0].question).unwrap();
    let text = items[0].steps.join("\n") + "\n### " + &items[0].answer;
    let named: Vec<(&str, &str)> = q.path_edges(&text).iter().map(|&(p, c)| (q.names[p].as_str(), q.names[c].as_str())).collect();
    assert_eq!(named, [("Tom", "terpus"), ("terpus", "brimpus"), ("brimpus", "lempus")]);
    // Every official reasoning chain is a connected walk from the subject.
    for item in &items[..50] {
        let q = parse_question(&item.question).unwrap();
        let path = q.path_edges(&item.steps.join("\n"));
        assert_eq!(path.len(), item.steps.len(), "{:?}", item.steps);
        assert_eq!(path[0].0, q.subject);
        assert!(path.windows(2).all(|w| w[0].1 == w[1].0), "{:?}", item.steps);
    }
    // Sentences that are not edges of this graph are skipped.
    assert!(q.path_edges("Every lempus is a terpus.\nBob is a cat.").is_empty());
}

#[test]
fn prontoqa_items_have_five_hop_proofs_and_consistent_answers() {
    let items = prontoqa::generate(200, 3);
    assert_eq!(items, prontoqa::generate(200, 3));
    let mut answers = HashSet::new();
    for item in &items {
        assert!(item.question.contains(" True or false: "));
        assert_eq!(item.steps.len(), prontoqa::HOPS + 2);
        answers.insert(item.answer.clone());
        // The last step concludes the queried property; the answer says whether it matches the query.
        let query = item.question.rsplit_once("True or false: ").unwrap().1;
        let concluded = item.steps.last().unwrap().rsplit_once(". ").unwrap().1;
        assert_eq!(item.answer == "True", query == concluded, "{query} vs {concluded}: {}", item.answer);
    }
    assert_eq!(answers, HashSet::from(["True".to_string(), "False".to_string()]));
    assert_eq!(parse_items(coconut::data::to_json(&items).as_bytes()).unwrap().len(), 200);
}

#[test]
fn gsm8k_icot_lines_become_items_and_bad_lines_are_named() {
    let text = "Tom has 3 apples and buys 2 more. How many?||<<3+2=5>> #### 5\n\nA costs 4. B costs twice A. Total?||<<4*2=8>> <<4+8=12>> #### 12\n";
    let items = gsm8k::parse_icot(text).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].steps, ["<<4*2=8>>", "<<4+8=12>>"]);
    assert_eq!(items[1].answer, "12");
    let e = gsm8k::parse_icot("ok||<<1+1=2>> #### 2\nno separator here #### 3").unwrap_err();
    assert_eq!(e, DataError::Item { index: 1, field: "question".into(), msg: "line 2: no `||` between question and steps".into() });
}

#[test]
fn search_stage_lists_every_reachable_fact_breadth_first() {
    // Tom → wumpus → {yumpus, lempus}, yumpus → lempus; Sam → zumpus is not reachable from Tom.
    let json = r#"[{"question": "Tom is a wumpus. Every wumpus is a yumpus. Every wumpus is a lempus. Every yumpus is a lempus. Sam is a zumpus. Is Tom a lempus or zumpus?",
      "answer": "Tom is a lempus.", "steps": ["Tom is a wumpus.", "Every wumpus is a lempus."],
      "idx_to_symbol": ["Tom", "Sam", "wumpus", "yumpus", "zumpus", "lempus"], "edges": [[0, 2], [2, 3], [2, 5], [3, 5], [1, 4]],
      "root": 0, "target": 5, "neg_target": 4}]"#;
    let item = &parse_items(json.as_bytes()).unwrap()[0];
    let mut orders = HashSet::new();
    for seed in 0..32 {
        let steps = prosqa::breadth_first_steps(item, seed).unwrap();
        assert_eq!(steps[0], "Tom is a wumpus.");
        let mut middle = steps[1..3].to_vec();
        orders.insert(middle.clone());
        middle.sort();
        assert_eq!(middle, ["Every wumpus is a lempus.", "Every wumpus is a yumpus."]);
        assert_eq!(steps[3..], ["Every yumpus is a lempus."]);
    }
    assert_eq!(orders.len(), 2, "a node's facts come in both orders over seeds");
    assert_eq!(prosqa::breadth_first_steps(&coconut::data::Item::text("q", &[], "a"), 0), None);
}
