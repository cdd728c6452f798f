//! Import of an unmodified HuggingFace GPT-2 directory (`config.json`, `model.safetensors`,
//! `tokenizer.json` or `vocab.json` + `merges.txt`), as published for openai-community/gpt2.
//!
//! HF's GPT-2 uses `Conv1D` layers whose weight is `[d_in, d_out]`: the layout of Burn's `Linear`,
//! so the weights are copied as they are. Tensor names may carry the `transformer.` prefix
//! (`GPT2LMHeadModel.save_pretrained`) or not (the hub's `gpt2` files); `lm_head.weight` is tied to
//! `wte` and the causal-mask buffers (`attn.bias`, `attn.masked_bias`) are ignored.

use std::collections::HashMap;
use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::gpt2::{Gpt2, Gpt2Config};
use crate::tokenizer::CoconutTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("config.json: {0}")]
    Config(String),
    #[error("model.safetensors: tensor `{0}` is missing")]
    Missing(String),
    #[error("model.safetensors: tensor `{name}` has shape {found:?}, config.json implies {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("model.safetensors: tensor `{0}` has unsupported dtype {1:?} (F32, F16 and BF16 are read)")]
    Dtype(String, Dtype),
    #[error("model.safetensors: unexpected tensor `{0}` (not part of GPT-2)")]
    Unexpected(String),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> ImportError {
    ImportError::File { path: path.display().to_string(), msg: e.to_string() }
}

/// Reads HF's `GPT2Config` JSON into our config, refusing variants this model does not implement.
pub fn config_from_hf_json(json: &str) -> Result<Gpt2Config, ImportError> {
    let v: Value = serde_json::from_str(json).map_err(|e| ImportError::Config(e.to_string()))?;
    let num = |key: &str| -> Result<usize, ImportError> {
        v.get(key).and_then(Value::as_u64).map(|n| n as usize).ok_or_else(|| ImportError::Config(format!("missing or non-integer `{key}`")))
    };
    if let Some(mt) = v.get("model_type").and_then(Value::as_str)
        && mt != "gpt2"
    {
        return Err(ImportError::Config(format!("model_type is `{mt}`, expected `gpt2`")));
    }
    let act = v.get("activation_function").and_then(Value::as_str).unwrap_or("gelu_new");
    if act != "gelu_new" && act != "gelu_pytorch_tanh" {
        return Err(ImportError::Config(format!("activation_function `{act}` is not supported (gelu_new)")));
    }
    for (key, want) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false)] {
        if let Some(b) = v.get(key).and_then(Value::as_bool)
            && b != want
        {
            return Err(ImportError::Config(format!("`{key}: {b}` is not supported")));
        }
    }
    let n_embd = num("n_embd")?;
    let n_inner = match v.get("n_inner") {
        None | Some(Value::Null) => 4 * n_embd,
        Some(_) => num("n_inner")?,
    };
    let mut config = Gpt2Config::new(num("vocab_size")?, num("n_positions")?, n_embd, num("n_layer")?, num("n_head")?, n_inner);
    if let Some(eps) = v.get("layer_norm_epsilon").and_then(Value::as_f64) {
        config.layer_norm_epsilon = eps;
    }
    if let Some(r) = v.get("initializer_range").and_then(Value::as_f64) {
        config.initializer_range = r;
    }
    if let Some(p) = v.get("resid_pdrop").and_then(Value::as_f64) {
        config.dropout = p;
    }
    config.validate().map_err(ImportError::Config)?;
    Ok(config)
}

/// Tensors of a safetensors file as f32, names without the `transformer.` prefix.
struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    fn parse(bytes: &[u8]) -> Result<Self, ImportError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ImportError::File { path: "model.safetensors".into(), msg: e.to_string() })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::BF16 => data.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect(),
                Dtype::F16 => data.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
                other => return Err(ImportError::Dtype(name, other)),
            };
            let short = name.strip_prefix("transformer.").unwrap_or(&name).to_string();
            tensors.insert(short, (view.shape().to_vec(), values));
        }
        Ok(Self { tensors })
    }

    fn take<const D: usize>(&mut self, name: &str, expected: [usize; D], device: &Device) -> Result<Param<Tensor<D>>, ImportError> {
        let (shape, values) = self.tensors.remove(name).ok_or_else(|| ImportError::Missing(name.to_string()))?;
        if shape != expected {
            return Err(ImportError::Shape { name: name.to_string(), expected: expected.to_vec(), found: shape });
        }
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(values, expected), device)))
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // subnormal: normalise
            let mut e = -14i32;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (((e + 127) as u32) << 23) | ((f & 0x3ff) << 13)
        }
        31 => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | (((exp - 15 + 127) as u32) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Builds the model from HF's safetensors bytes for `config`; every tensor is checked by name and shape.
pub fn gpt2_from_safetensors(config: &Gpt2Config, bytes: &[u8], device: &Device) -> Result<Gpt2, ImportError> {
    let mut w = Weights::parse(bytes)?;
    let (d, f, v) = (config.n_embd, config.n_inner, config.vocab_size);
    let mut model = config.init(device);
    model.wte = w.take("wte.weight", [v, d], device)?;
    model.wpe = w.take("wpe.weight", [config.n_positions, d], device)?;
    for (i, block) in model.h.iter_mut().enumerate() {
        let p = |s: &str| format!("h.{i}.{s}");
        block.ln_1.gamma = w.take(&p("ln_1.weight"), [d], device)?;
        block.ln_1.beta = Some(w.take(&p("ln_1.bias"), [d], device)?);
        block.attn.c_attn.weight = w.take(&p("attn.c_attn.weight"), [d, 3 * d], device)?;
        block.attn.c_attn.bias = Some(w.take(&p("attn.c_attn.bias"), [3 * d], device)?);
        block.attn.c_proj.weight = w.take(&p("attn.c_proj.weight"), [d, d], device)?;
        block.attn.c_proj.bias = Some(w.take(&p("attn.c_proj.bias"), [d], device)?);
        block.ln_2.gamma = w.take(&p("ln_2.weight"), [d], device)?;
        block.ln_2.beta = Some(w.take(&p("ln_2.bias"), [d], device)?);
        block.mlp.c_fc.weight = w.take(&p("mlp.c_fc.weight"), [d, f], device)?;
        block.mlp.c_fc.bias = Some(w.take(&p("mlp.c_fc.bias"), [f], device)?);
        block.mlp.c_proj.weight = w.take(&p("mlp.c_proj.weight"), [f, d], device)?;
        block.mlp.c_proj.bias = Some(w.take(&p("mlp.c_proj.bias"), [d], device)?);
    }
    model.ln_f.gamma = w.take("ln_f.weight", [d], device)?;
    model.ln_f.beta = Some(w.take("ln_f.bias", [d], device)?);
    // Tied head: if present it must equal wte's shape; buffers are not weights.
    if let Some((shape, _)) = w.tensors.remove("lm_head.weight")
        && shape != [v, d]
    {
        return Err(ImportError::Shape { name: "lm_head.weight".into(), expected: vec![v, d], found: shape });
    }
    w.tensors.retain(|name, _| !(name.ends_with("attn.bias") || name.ends_with("attn.masked_bias")));
    if let Some(name) = w.tensors.keys().min() {
        return Err(ImportError::Unexpected(name.clone()));
    }
    Ok(model)
}

/// Loads the tokenizer of an HF directory: `tokenizer.json`, else `vocab.json` + `merges.txt`.
pub fn tokenizer_from_hf_dir(dir: &Path) -> Result<CoconutTokenizer, ImportError> {
    let json = dir.join("tokenizer.json");
    let tok = if json.exists() {
        CoconutTokenizer::from_file(&json)
    } else {
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if !vocab.exists() || !merges.exists() {
            return Err(file_err(dir, "no tokenizer.json, nor vocab.json + merges.txt"));
        }
        CoconutTokenizer::gpt2_bpe(&vocab, &merges)
    };
    tok.map_err(|e| file_err(dir, e))
}

/// Reads a whole HF GPT-2 directory.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<(Gpt2Config, Gpt2, CoconutTokenizer), ImportError> {
    let cfg_path = dir.join("config.json");
    let json = std::fs::read_to_string(&cfg_path).map_err(|e| file_err(&cfg_path, e))?;
    let config = config_from_hf_json(&json)?;
    let st_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| file_err(&st_path, e))?;
    let model = gpt2_from_safetensors(&config, &bytes, device)?;
    let tokenizer = tokenizer_from_hf_dir(dir)?;
    Ok((config, model, tokenizer))
}
