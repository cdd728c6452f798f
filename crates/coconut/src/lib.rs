//! Coconut: Chain of Continuous Thought (Hao et al. 2024, arXiv 2412.06769) on GPT-2, in Burn.
//!
//! One file a concept: [`gpt2`] (the model, with KV cache), [`hf`] (HuggingFace import),
//! [`position_init`] (initial values for a model from scratch), [`tokenizer`], [`checkpoint`], [`score`], [`data`] (the dataset format), [`dataset`] (reading checked files), [`prosqa`] (generator, validation, statistics),
//! [`train`] (one optimizer step, batches, accuracy) and [`trainer`] (the loop the CLI and the page drive),
//! [`analyze`] and [`probe`] (what a model computes, per question and over a set), [`backend`] (the only place naming backends).

pub mod analyze;
pub mod backend;
pub mod checkpoint;
pub mod coconut;
pub mod curriculum;
pub mod data;
pub mod dataset;
pub mod eval;
pub mod generate;
pub mod gpt2;
pub mod grow;
pub mod gsm8k;
pub mod hf;
pub mod position_init;
pub mod probe;
pub mod prontoqa;
pub mod prosqa;
pub mod score;
pub mod tokenizer;
pub mod train;
pub mod trainer;

pub use backend::BackendKind;
pub use checkpoint::Checkpoint;
pub use gpt2::{Gpt2, Gpt2Config, Gpt2Input, Gpt2Output, KvCache};
pub use tokenizer::CoconutTokenizer;
