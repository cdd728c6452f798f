//! Batched, KV-cached greedy decoding after k continuous thoughts.
//!
//! Prompts (question, `<|start-latent|>`, k × `<|latent|>`, `<|end-latent|>`) are left-padded to end
//! in the same column, so with the same k their thoughts are aligned too. One multi-pass forward
//! (`coconut::forward`) fills the thoughts and the KV cache; then each new token is one cached pass
//! over one column for the whole batch. The only read-back per step is the batch's next token ids
//! (to stop each row at EOS). `generate_async` is the one implementation (browsers must read back
//! asynchronously); `generate` blocks on it natively.

use burn::prelude::*;

use crate::coconut::{self, DeviceBatch};
use crate::curriculum::Batch;
use crate::gpt2::{Gpt2, Gpt2Input};
use crate::tokenizer::SpecialIds;

/// What one prompt produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Generated ids, up to and excluding EOS.
    pub tokens: Vec<u32>,
    /// Last hidden state fed back as each continuous thought (`k × d`).
    pub thoughts: Vec<Vec<f32>>,
}

/// The one length check of every entry point (CLI and page), made before any compute: a prompt
/// of `prompt_len` positions (question, markers, thoughts) plus `new_tokens` to generate must fit
/// the model's `n_positions`. Past it, learned positions have no embedding and the backends
/// either panic or compute garbage.
pub fn check_positions(prompt_len: usize, new_tokens: usize, n_positions: usize) -> Result<(), String> {
    let needed = prompt_len.saturating_add(new_tokens);
    match (needed > n_positions, new_tokens) {
        (false, _) => Ok(()),
        (true, 0) => Err(format!("{needed} positions: this model takes at most {n_positions}")),
        (true, _) => Err(format!(
            "{needed} positions ({prompt_len} for the input and its thoughts + {new_tokens} to generate): this model takes at most {n_positions}"
        )),
    }
}

/// Left-pads prompts so that they all end in the same column.
pub fn collate_prompts(prompts: &[Vec<u32>], ids: SpecialIds) -> Batch {
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut b = Batch {
        batch: prompts.len(),
        len,
        input_ids: Vec::new(),
        position_ids: Vec::new(),
        attention_mask: Vec::new(),
        labels: Vec::new(),
        latent_positions: Vec::new(),
    };
    for p in prompts {
        let pad = len - p.len();
        b.input_ids.extend(std::iter::repeat_n(ids.eos, pad).chain(p.iter().copied()));
        b.position_ids.extend(std::iter::repeat_n(0, pad).chain(0..p.len() as i64));
        b.attention_mask.extend(std::iter::repeat_n(0, pad).chain(std::iter::repeat_n(1, p.len())));
        b.latent_positions.push(p.iter().enumerate().filter(|(_, t)| **t == ids.latent).map(|(i, _)| i + pad).collect());
    }
    b
}

/// Greedy decoding of every prompt, batched; `feed_back = false` treats latent tokens as pauses.
pub fn generate(model: &Gpt2, prompts: &[Vec<u32>], ids: SpecialIds, max_new_tokens: usize, feed_back: bool, device: &Device) -> Vec<Generation> {
    burn::tensor::read_sync(generate_async(model, prompts, ids, max_new_tokens, feed_back, device)).expect("tensor read-back")
}

/// `generate` with asynchronous read-back (WebGPU in a browser).
pub async fn generate_async(
    model: &Gpt2,
    prompts: &[Vec<u32>],
    ids: SpecialIds,
    max_new_tokens: usize,
    feed_back: bool,
    device: &Device,
) -> Result<Vec<Generation>, String> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let batch = collate_prompts(prompts, ids);
    let b = DeviceBatch::new(&batch, device);
    let (rows, len) = (batch.batch, batch.len);
    let out = coconut::forward(model, &b, feed_back);
    let thoughts: Vec<Vec<Vec<f32>>> = read_thoughts(&out.thoughts, rows).await?;
    let mut cache = out.cache;
    let mut hidden = out.hidden.slice([0..rows, len - 1..len]);
    let mut positions: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();
    let mut key_mask = b.key_mask;
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut done = vec![false; rows];
    for _ in 0..max_new_tokens {
        let next = model.lm_head(hidden).argmax(2).reshape([rows, 1]); // [rows, 1]
        let next_ids: Vec<i64> = read(next.clone()).await?;
        for (r, &id) in next_ids.iter().enumerate() {
            if !done[r] {
                if id as u32 == ids.eos {
                    done[r] = true;
                } else {
                    tokens[r].push(id as u32);
                }
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        let pos = Tensor::<2, Int>::from_data(TensorData::new(positions.clone(), [rows, 1]), device);
        key_mask = Tensor::cat(vec![key_mask, Tensor::<2, Bool>::from_data(TensorData::new(vec![true; rows], [rows, 1]), device)], 1);
        let step = model.forward(Gpt2Input { embeds: model.embed(next), positions: pos, key_mask: Some(key_mask.clone()), cache: Some(cache) });
        hidden = step.hidden;
        cache = step.cache;
        positions.iter_mut().for_each(|p| *p += 1);
    }
    Ok(tokens.into_iter().zip(thoughts).map(|(tokens, thoughts)| Generation { tokens, thoughts }).collect())
}

/// A tensor's values on the host, read asynchronously (the only way WebGPU allows).
pub async fn read<const D: usize, K: burn::tensor::kind::Basic, T: burn::tensor::Element>(t: Tensor<D, K>) -> Result<Vec<T>, String> {
    t.into_data_async().await.map_err(|e| format!("{e:?}"))?.try_into_vec_as::<T>().map_err(|e| format!("{e:?}"))
}

async fn read_thoughts(thoughts: &[Tensor<2>], rows: usize) -> Result<Vec<Vec<Vec<f32>>>, String> {
    let mut per_row = vec![Vec::with_capacity(thoughts.len()); rows];
    for t in thoughts {
        let d = t.dims()[1];
        let v: Vec<f32> = read(t.clone()).await?;
        for (r, row) in per_row.iter_mut().enumerate() {
            row.push(v[r * d..(r + 1) * d].to_vec());
        }
    }
    Ok(per_row)
}

/// The official decoding, batch 1: re-run the whole sequence (thoughts re-derived each time) for
/// every new token. Tests compare `generate` against it.
pub fn generate_reference(model: &Gpt2, prompt: &[u32], ids: SpecialIds, max_new_tokens: usize, device: &Device) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..max_new_tokens {
        let batch = collate_prompts(std::slice::from_ref(&seq), ids);
        let b = DeviceBatch::new(&batch, device);
        let hidden = coconut::forward_reference(model, &b);
        let last = hidden.slice([0..1, seq.len() - 1..seq.len()]);
        let id = model.lm_head(last).argmax(2).into_data().try_into_vec_as::<i64>().expect("id")[0] as u32;
        if id == ids.eos {
            break;
        }
        out.push(id);
        seq.push(id);
    }
    out
}
