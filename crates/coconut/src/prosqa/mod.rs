//! ProsQA (Hao et al. 2024, Appendix A): questions over a random DAG of fictional concepts.
//!
//! The generator follows the paper's Algorithm 1: nodes are added one by one; each new node draws
//! `poisson(λ)` parents from a candidate set (with probability `p_only0` the nodes reachable from
//! start node 0 only, with `p_only1` those reachable from node 1 only, else every node), weighted by
//! `depth·1.5 + 1` and drawn without replacement; a node's label is the OR of its parents' labels
//! (bit 1 = below node 0, bit 2 = below node 1). Nodes without parents are persons. What the paper
//! leaves open comes from the official files (`../shared/prosqa/README.md`): the root is the start
//! node with the deeper exclusive leaf, the target is that leaf, `neg_target` a random exclusive
//! leaf of the other start node, `steps` a uniformly chosen shortest root→target path of ≥ 3 hops.
//! See [`GenConfig`] for the constants and why.
//!
//! One file a concern: [`generator`] (Algorithm 1 and the search stage's listing), [`graph`]
//! (the DAG and its searches), [`rng`] (the generator's random stream), [`validate`] (an item's graph
//! against its text), [`stats`] (dataset statistics and the fit to the official sets),
//! [`question`] (a question's text read back into its graph), [`recall`] (recall questions: one
//! child per concept, the lookup without ambiguity).

mod generator;
mod graph;
mod question;
mod recall;
mod rng;
mod stats;
mod validate;

pub use generator::{GenConfig, MAX_DRAWS_PER_QUESTION, breadth_first_steps, generate, make_item, pick_question};
pub use graph::Graph;
pub use question::{ParsedQuestion, parse_question};
pub use recall::{generate_recall, recall_question};
pub use rng::Xoshiro256;
pub use stats::{Comparison, DatasetStats, ItemStats, MeanSd, compare, dataset_stats, item_stats};
pub use validate::validate;

/// The 17 person names and 38 concept names of the official ProsQA sets.
pub const PERSONS: [&str; 17] =
    ["Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver", "Polly", "Rex", "Sally", "Sam", "Stella", "Tom", "Wren"];
pub const CONCEPTS: [&str; 38] = [
    "bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus", "gorpus", "grimpus", "gwompus", "hilpus", "impus", "jelpus",
    "jompus", "kerpus", "lempus", "lorpus", "numpus", "quimpus", "rempus", "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus", "terpus",
    "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus", "yumpus", "zhorpus", "zumpus",
];

/// Every word a ProsQA question, step or answer can contain (for a word-level vocabulary).
pub fn vocabulary_text() -> String {
    format!("{} {} Every is a Is or ? . ###\n", PERSONS.join(" "), CONCEPTS.join(" "))
}
