//! The model a run starts from: a small GPT-2 from `[model]`, or `run.init` (a checkpoint or a
//! HuggingFace GPT-2) with room for Coconut's tokens.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use coconut::checkpoint::Checkpoint;
use coconut::{CoconutTokenizer, Gpt2Config, grow, hf, prontoqa, prosqa};

use super::config::{PositionInit, TrainConfig};

/// Standard deviation of the noise that breaks the symmetry of a widened model's copied units:
/// about one optimizer step at lr 1e-3, small against the weights (~0.02–0.1).
const GROW_NOISE: f64 = 1e-3;

/// Model and tokenizer at the start of a run.
pub fn initial_model(cfg: &TrainConfig, device: &Device) -> Result<(Gpt2Config, coconut::Gpt2, CoconutTokenizer)> {
    match cfg.run.init.as_deref() {
        None => {
            let vocab_text = prosqa::vocabulary_text() + &prontoqa_vocabulary();
            let tok = CoconutTokenizer::word_level([vocab_text.as_str()])?;
            let m = cfg.model.as_ref().context("[model] is required without run.init")?;
            let position = m.position();
            if position == coconut::gpt2::Position::Rope && m.position_init != PositionInit::Normal {
                bail!("model.position_init sets learned positions; it does not apply to model.position = \"rope\"");
            }
            let config = m.gpt2_config(tok.vocab_size());
            device.seed(cfg.run.seed);
            let mut model = config.init(device);
            if m.position_init == PositionInit::Sinusoidal {
                model.wpe = burn::module::Param::from_tensor(coconut::position_init::sinusoidal_positions(config.n_positions, config.n_embd, 0.01, device));
            }
            if !m.offset_heads.is_empty() {
                let head_dim = m.n_embd / m.n_head;
                if m.offset_heads.len() > m.n_head || head_dim < 16 {
                    bail!(
                        "model.offset_heads: {} offset heads need as many heads (n_head = {}) of at least 16 features (have {head_dim})",
                        m.offset_heads.len(),
                        m.n_head
                    );
                }
                model = match position {
                    coconut::gpt2::Position::Learned => coconut::position_init::with_offset_heads(model, &m.offset_heads, 8, 3.0),
                    coconut::gpt2::Position::Rope => coconut::position_init::with_rotary_offset_heads(model, &m.offset_heads, 10.0),
                };
            }
            Ok((config, model, tok))
        }
        Some(init) => {
            let (config, model, tok) = if let Some(dir) = init.strip_prefix("hf:") {
                hf::load_hf_dir(Path::new(dir), device)?
            } else {
                let ckpt = Checkpoint::load(Path::new(init))?;
                let model = ckpt.model(device)?;
                (ckpt.config, model, ckpt.tokenizer)
            };
            // Make room for the Coconut tokens; new rows start from "<<" as in the official code.
            let vocab = tok.vocab_size().max(config.vocab_size);
            let from = tok.encode("<<").ok().and_then(|ids| ids.first().copied()).unwrap_or(tok.special.eos) as usize;
            let model = model.resize_vocab(vocab, from);
            let config = Gpt2Config { vocab_size: vocab, ..config };
            device.seed(cfg.run.seed);
            if cfg.run.grow_width > 1 && config.qkv_conv > 0 && cfg.run.grow_heads.heads() == grow::Heads::Wider {
                bail!("run.grow_heads = \"wider\": widening the heads of a model with qkv_conv is not supported (grow_heads = \"more\" copies them)");
            }
            let (model, config) = grow::wider(model, &config, cfg.run.grow_width, cfg.run.grow_heads.heads(), GROW_NOISE);
            let (model, config) = grow::deeper(model, &config, cfg.run.grow_layers);
            let (model, config) = match cfg.run.graft_length_scale {
                Some(_) if config.length_scaled_attention => bail!("run.graft_length_scale: the model of run.init already has length-scaled attention"),
                Some(keys) => grow::length_scaled(model, &config, keys),
                None => (model, config),
            };
            Ok((config, model, tok))
        }
    }
}

fn prontoqa_vocabulary() -> String {
    format!(" {} True False true false or not : ", prontoqa::PROPERTIES.join(" "))
}

