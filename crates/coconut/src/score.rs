//! Per-token log-probabilities of a text: `logprobs[i] = log p(tokens[i+1] | tokens[..=i])`.
//! One forward pass and one read-back; the async reader is the one browsers (WebGPU) can use.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::gpt2::Gpt2;

/// The log-probabilities as a device tensor `[len - 1]` (no read-back).
pub fn logprobs_tensor(model: &Gpt2, ids: &[u32], device: &Device) -> Result<Tensor<1>, String> {
    let vocab = model.vocab_size();
    if ids.len() < 2 {
        return Err("need at least two tokens to score".into());
    }
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(format!("token id {bad} is outside the model's vocabulary ({vocab} tokens)"));
    }
    let n = ids.len();
    let as_i64 = |s: &[u32]| s.iter().map(|&i| i as i64).collect::<Vec<_>>();
    let input = Tensor::<2, Int>::from_data(TensorData::new(as_i64(&ids[..n - 1]), [1, n - 1]), device);
    let target = Tensor::<3, Int>::from_data(TensorData::new(as_i64(&ids[1..]), [1, n - 1, 1]), device);
    let (logits, _) = model.forward_ids(input);
    Ok(log_softmax(logits, 2).gather(2, target).reshape([n - 1]))
}

/// Native (synchronous read-back).
pub fn token_logprobs(model: &Gpt2, ids: &[u32], device: &Device) -> Result<Vec<f32>, String> {
    let t = logprobs_tensor(model, ids, device)?;
    t.try_into_data().map_err(|e| format!("{e:?}"))?.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))
}

/// Browser-safe (asynchronous read-back).
pub async fn token_logprobs_async(model: &Gpt2, ids: &[u32], device: &Device) -> Result<Vec<f32>, String> {
    let t = logprobs_tensor(model, ids, device)?;
    t.into_data_async().await.map_err(|e| format!("{e:?}"))?.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))
}
