//! Recall questions: ProsQA's words, format and size, but every concept has at most one fact about
//! it ("Every X is a Y": one child), so each lookup has one right answer and a chain is pointer
//! chasing. The lookup a search is built from, without the ambiguity a ProsQA chain trains it with
//! (there a step names one of X's 1–4 children, the one on the path, and pushes the others down).
//! The trainer's recall stage (`data.recall_epochs`) and `coconut data recall` use them.
//!
//! A question: 4 persons and 28–32 concepts in a random order, each concept but the last
//! [`SINKS`] pointing to a later one, each person to one concept; the ~33 facts (the official
//! questions have ~35) shuffled; asked about a person whose chain has 3–6 facts, between the sink
//! it reaches and another sink some fact names. Steps are the chain ("Tom is a X.", "Every X is a
//! Y.", …) as ProsQA's; the graph fields are ProsQA's, so `prosqa::validate`, the trainer and
//! `coconut probe lookup` read them unchanged.

use std::collections::HashSet;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::{CONCEPTS, PERSONS, Xoshiro256};
use crate::data::Item;

/// Concepts no fact starts from: the options are drawn among them.
pub const SINKS: usize = 3;
/// Persons in a question.
pub const PERSONS_PER_QUESTION: usize = 4;

/// One recall question drawn from `rng`.
pub fn recall_question(rng: &mut impl Rng) -> Item {
    loop {
        let n = rng.random_range(28..=32);
        let concepts: Vec<&str> = CONCEPTS.choose_multiple(rng, n).copied().collect();
        let persons: Vec<&str> = PERSONS.choose_multiple(rng, PERSONS_PER_QUESTION).copied().collect();
        let child: Vec<usize> = (0..n - SINKS).map(|i| rng.random_range(i + 1..n)).collect();
        let start: Vec<usize> = (0..persons.len()).map(|_| rng.random_range(0..n - SINKS)).collect();
        let asked = rng.random_range(0..persons.len());
        let mut path = vec![start[asked]];
        while let Some(&next) = child.get(*path.last().expect("non-empty")) {
            path.push(next);
        }
        if !(3..=6).contains(&path.len()) {
            continue;
        }
        let target = *path.last().expect("non-empty");
        // The wrong option is a sink some fact names, as the right one is.
        let others: Vec<usize> = (n - SINKS..n).filter(|&s| s != target && child.contains(&s)).collect();
        let Some(&neg) = others.choose(rng) else { continue };
        // Node indices as ProsQA's: persons first, then concepts.
        let node = |c: usize| persons.len() + c;
        let mut edges: Vec<[usize; 2]> = start.iter().enumerate().map(|(p, &c)| [p, node(c)]).collect();
        edges.extend(child.iter().enumerate().map(|(i, &j)| [node(i), node(j)]));
        let mut facts: Vec<String> = start.iter().enumerate().map(|(p, &c)| format!("{} is a {}.", persons[p], concepts[c])).collect();
        facts.extend(child.iter().enumerate().map(|(i, &j)| format!("Every {} is a {}.", concepts[i], concepts[j])));
        facts.shuffle(rng);
        let (a, b) = if rng.random::<bool>() { (target, neg) } else { (neg, target) };
        let who = persons[asked];
        let mut steps = vec![format!("{who} is a {}.", concepts[path[0]])];
        steps.extend(path.windows(2).map(|w| format!("Every {} is a {}.", concepts[w[0]], concepts[w[1]])));
        return Item {
            question: format!("{} Is {who} a {} or {}?", facts.join(" "), concepts[a], concepts[b]),
            answer: format!("{who} is a {}.", concepts[target]),
            steps,
            idx_to_symbol: Some(persons.iter().chain(&concepts).map(|s| s.to_string()).collect()),
            edges: Some(edges),
            root: Some(asked),
            target: Some(node(target)),
            neg_target: Some(node(neg)),
        };
    }
}

/// `n` recall questions for `seed`, none of whose text is in `exclude`.
pub fn generate_recall(n: usize, seed: u64, exclude: &HashSet<String>) -> Vec<Item> {
    let mut rng = Xoshiro256::seed_from_u64(seed);
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        let item = recall_question(&mut rng);
        if !exclude.contains(&item.question) {
            items.push(item);
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosqa::{Graph, validate};

    #[test]
    fn every_lookup_has_one_answer_and_the_chain_reaches_the_right_option() {
        let items = generate_recall(300, 7, &HashSet::new());
        assert_eq!(items, generate_recall(300, 7, &HashSet::new()), "the same seed writes the same questions");
        for item in &items {
            validate(item).unwrap_or_else(|e| panic!("{e:?}: {}", item.question));
            let names = item.idx_to_symbol.as_ref().unwrap();
            let g = Graph { n: names.len(), edges: item.edges.as_ref().unwrap().iter().map(|e| (e[0], e[1])).collect() };
            assert!(g.children().iter().all(|c| c.len() <= 1), "one child per node: {}", item.question);
            assert!((3..=6).contains(&item.steps.len()));
            assert_eq!(g.distances(item.root.unwrap())[item.target.unwrap()], item.steps.len());
            // Both options are named in the question as the end of some fact, and neither starts one.
            for o in [item.target.unwrap(), item.neg_target.unwrap()] {
                assert!(g.children()[o].is_empty() && g.has_parent()[o]);
            }
            let facts = item.question.matches('.').count();
            assert!((4 + 25..=4 + 29).contains(&facts), "{facts} facts");
        }
    }

    #[test]
    fn excluded_questions_are_never_emitted() {
        let first = generate_recall(5, 3, &HashSet::new());
        let exclude: HashSet<String> = first.iter().take(2).map(|i| i.question.clone()).collect();
        let again = generate_recall(5, 3, &exclude);
        assert!(again.iter().all(|i| !exclude.contains(&i.question)));
        assert_eq!(again[..3], first[2..], "the stream goes on past the excluded ones");
    }
}
