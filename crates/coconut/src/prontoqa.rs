//! ProntoQA (Saparov & He 2022), 5 hops over a fictional ontology, in the format the Coconut paper
//! used: question = facts + "True or false: X is (not) P.", steps = the proof chain, answer
//! "True"/"False".
//!
//! An item: a chain `c0 → c1 → … → c5` of fictional concepts ("Every c_k is a c_{k+1}."), a property
//! P held (or not) by the last concept, distractor facts (a second chain from c1 and properties of
//! other concepts, as the original generator's distractors), "X is a c0.", and a query about P or
//! its negation. Steps: "X is a c0.", then per hop "Every c_k is a c_{k+1}. X is a c_{k+1}.", and the
//! property step.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Item;
use crate::prosqa::{CONCEPTS, PERSONS};

pub const PROPERTIES: [&str; 16] = [
    "bright",
    "cold",
    "dull",
    "hot",
    "large",
    "small",
    "sour",
    "sweet",
    "wooden",
    "metallic",
    "opaque",
    "transparent",
    "happy",
    "sad",
    "fast",
    "slow",
];

pub const HOPS: usize = 5;

pub fn generate_item(rng: &mut impl Rng) -> Item {
    let mut concepts: Vec<&str> = CONCEPTS.to_vec();
    concepts.shuffle(rng);
    let chain = &concepts[..=HOPS];
    let distract = &concepts[HOPS + 1..HOPS + 4];
    let person = *PERSONS.choose(rng).unwrap();
    let pi = rng.random_range(0..PROPERTIES.len() / 2) * 2;
    let (prop, opposite) = (PROPERTIES[pi], PROPERTIES[pi + 1]);
    let holds = rng.random::<bool>();
    let has = |c: &str, p: &str, yes: bool| if yes { format!("Every {c} is {p}.") } else { format!("Every {c} is not {p}.") };

    let mut facts: Vec<String> = chain.windows(2).map(|w| format!("Every {} is a {}.", w[0], w[1])).collect();
    facts.push(has(chain[HOPS], prop, holds));
    // Distractors: a branch off c1 whose end has the opposite truth value for P.
    facts.push(format!("Every {} is a {}.", chain[1], distract[0]));
    facts.push(format!("Every {} is a {}.", distract[0], distract[1]));
    facts.push(has(distract[1], prop, !holds));
    facts.push(has(distract[2], opposite, rng.random::<bool>()));
    facts.push(format!("{person} is a {}.", chain[0]));
    facts.shuffle(rng);

    let ask_negation = rng.random::<bool>();
    let query = if ask_negation { format!("{person} is not {prop}.") } else { format!("{person} is {prop}.") };
    let mut steps = vec![format!("{person} is a {}.", chain[0])];
    for w in chain.windows(2) {
        steps.push(format!("Every {} is a {}. {person} is a {}.", w[0], w[1], w[1]));
    }
    let last = if holds { format!("{person} is {prop}.") } else { format!("{person} is not {prop}.") };
    steps.push(format!("{} {last}", has(chain[HOPS], prop, holds)));
    let answer = if holds != ask_negation { "True" } else { "False" };
    Item::text(&format!("{} True or false: {query}", facts.join(" ")), &steps.iter().map(String::as_str).collect::<Vec<_>>(), answer)
}

pub fn generate(n: usize, seed: u64) -> Vec<Item> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| generate_item(&mut rng)).collect()
}
