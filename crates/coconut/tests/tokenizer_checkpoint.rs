//! Word-level tokenizer behaviour and checkpoint validation, as a user meets them.

use std::path::PathBuf;

#[path = "common/scratch.rs"]
mod scratch;

use burn::prelude::*;
use coconut::checkpoint::{Checkpoint, Manifest};
use coconut::tokenizer::{CoconutTokenizer, TokenizerError};
use coconut::{Gpt2Config, hf};
use scratch::ScratchDir;

const PROSQA: &str = "Tom is a wumpus. Every wumpus is a yumpus. Every yumpus is a rempus.\nIs Tom a rempus or bompus?";

fn word_level() -> CoconutTokenizer {
    CoconutTokenizer::word_level([PROSQA, "### Tom is a rempus."]).unwrap()
}

#[test]
fn word_level_splits_words_punctuation_and_newlines() {
    let tok = word_level();
    let ids = tok.encode("Tom is a wumpus.\nIs Tom a yumpus?").unwrap();
    let tokens: Vec<String> = ids.iter().map(|&i| tok.token(i).unwrap()).collect();
    assert_eq!(tokens, ["Tom", "is", "a", "wumpus", ".", "\n", "Is", "Tom", "a", "yumpus", "?"]);
    assert_eq!(tok.decode(&ids), "Tom is a wumpus.\nIs Tom a yumpus?");
    // Special tokens: Coconut's three plus EOS, recognised inside text.
    let s = tok.special;
    let ids = tok.encode("<|start-latent|><|latent|><|latent|><|end-latent|>### Tom is a rempus.<|endoftext|>").unwrap();
    assert_eq!(&ids[..4], &[s.start_latent, s.latent, s.latent, s.end_latent]);
    assert_eq!(*ids.last().unwrap(), s.eos);
    // 5 specials (EOS, 3 latent tokens, unk) + 14 tokens: Tom is a wumpus . Every yumpus rempus \n Is or bompus ? #
    assert_eq!(tok.vocab_size(), 5 + 14);
}

#[test]
fn unknown_words_are_an_error_that_lists_them_once() {
    let err = word_level().encode("Tom is a gorpus. Every gorpus is a florp.").unwrap_err();
    match &err {
        TokenizerError::UnknownWords(w) => assert_eq!(w, &["gorpus", "florp"]),
        other => panic!("expected UnknownWords, got {other}"),
    }
    assert!(err.to_string().contains("gorpus, florp"));
}

#[test]
fn word_level_tokenizer_json_round_trips_and_loads_in_hf_form() {
    let tok = word_level();
    let json = tok.to_json().unwrap();
    let again = CoconutTokenizer::from_json(json.as_bytes()).unwrap();
    assert_eq!(again.encode(PROSQA).unwrap(), tok.encode(PROSQA).unwrap());
    assert_eq!(again.special, tok.special);
    assert!(CoconutTokenizer::from_json(b"{not json").is_err());
}

fn fixture_checkpoint(tag: &str) -> (ScratchDir, Checkpoint) {
    let dir = ScratchDir::new(&format!("ckpt-{tag}"));
    let hf_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tiny");
    let (config, model, tok) = hf::load_hf_dir(&hf_dir, &Device::flex()).unwrap();
    let ckpt = Checkpoint::from_model(model, &config, tok, "test").unwrap();
    ckpt.save(&dir).unwrap();
    (dir, ckpt)
}

#[test]
fn corrupt_or_truncated_weights_are_refused() {
    let (dir, _) = fixture_checkpoint("corrupt");
    let weights = dir.join("model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, &bytes).unwrap();
    let err = Checkpoint::load(&dir).err().expect("corrupt weights must not load").to_string();
    assert!(err.contains("SHA-256") && err.contains("corrupt"), "{err}");
    std::fs::write(&weights, &bytes[..mid]).unwrap();
    let err = Checkpoint::load(&dir).err().unwrap().to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn mismatched_config_or_version_is_refused() {
    let (dir, ckpt) = fixture_checkpoint("mismatch");
    // A config.json from another model.
    let other = Gpt2Config { n_layer: 3, ..ckpt.config.clone() };
    std::fs::write(dir.join("config.json"), serde_json::to_string(&other).unwrap()).unwrap();
    let err = Checkpoint::load(&dir).err().unwrap().to_string();
    assert!(err.contains("does not match manifest"), "{err}");
    // Config and manifest agree but the weights are of another shape: load fails naming the file.
    let mut m: Manifest = ckpt.manifest.clone();
    m.config_hash = coconut::checkpoint::config_hash(&other);
    std::fs::write(dir.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
    let reloaded = Checkpoint::load(&dir).unwrap();
    let err = reloaded.model(&Device::flex()).expect_err("weights of 2 layers cannot fill 3").to_string();
    assert!(err.contains("model.bpk does not fit config.json"), "{err}");
    // Another format version.
    m.format_version = 99;
    std::fs::write(dir.join("manifest.json"), serde_json::to_string(&m).unwrap()).unwrap();
    let err = Checkpoint::load(&dir).err().unwrap().to_string();
    assert!(err.contains("format version 99"), "{err}");
    // Malformed JSON and a missing directory.
    std::fs::write(dir.join("manifest.json"), "{").unwrap();
    assert!(Checkpoint::load(&dir).err().unwrap().to_string().contains("manifest.json is malformed"));
    assert!(Checkpoint::load(&dir.join("nope")).is_err());
}

#[test]
fn saving_over_a_checkpoint_replaces_it_whole() {
    let (dir, ckpt) = fixture_checkpoint("replace");
    ckpt.save(&dir).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(&format!("coconut-ckpt-replace-{}", std::process::id())))
        .collect();
    assert_eq!(names.len(), 1, "no temporary or old directory is left behind: {names:?}");
    assert!(Checkpoint::load(&dir).is_ok());
}

#[test]
fn checkpoints_record_their_positions_and_gpt2_ones_load_without_naming_them() {
    // A checkpoint whose config.json names no `position` (the earlier CoT model) loads as GPT-2 (learned).
    let unnamed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/prosqa-cot-earlier");
    assert!(!std::fs::read_to_string(unnamed.join("config.json")).unwrap().contains("position\""));
    let ckpt = Checkpoint::load(&unnamed).unwrap();
    assert_eq!(ckpt.config.position, coconut::gpt2::Position::Learned);
    ckpt.model(&Device::flex()).unwrap();
    // A rotary model round-trips with its positions and its outputs.
    let device = Device::flex();
    device.seed(5);
    let config = Gpt2Config { dropout: 0.0, position: coconut::gpt2::Position::Rope, ..Gpt2Config::small(word_level().vocab_size(), 1, 32, 2) };
    let model = config.init(&device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 5, 7, 9], [1, 4]), &device);
    let before: Vec<f32> = model.forward_ids(ids.clone()).0.into_data().try_to_vec().unwrap();
    let dir = ScratchDir::new("ckpt-rope");
    Checkpoint::from_model(model, &config, word_level(), "test").unwrap().save(&dir).unwrap();
    let loaded = Checkpoint::load(&dir).unwrap();
    assert_eq!(loaded.config.position, coconut::gpt2::Position::Rope);
    let after: Vec<f32> = loaded.model(&device).unwrap().forward_ids(ids).0.into_data().try_to_vec().unwrap();
    assert_eq!(before, after);
    std::fs::remove_dir_all(&dir).unwrap();
}
