//! Data-parallel training on two CPU devices (Burn's flex and ndarray backends) through Burn's
//! multi-device gradients gives the loss curve of one device with the same global batch.

use burn::prelude::*;
use coconut::curriculum::{Curriculum, Tokenized, Variant};
use coconut::tokenizer::CoconutTokenizer;
use coconut::train::{OptimConfig, optimizer_step, optimizer_step_multi, training_batch};
use coconut::{Gpt2Config, prosqa};

#[test]
fn two_devices_follow_the_single_device_loss_curve() {
    let items = prosqa::generate(8, 2, &prosqa::GenConfig::default(), &Default::default()).unwrap();
    let tok = CoconutTokenizer::word_level([prosqa::vocabulary_text()]).unwrap();
    let data: Vec<Tokenized> = items.iter().map(|i| Tokenized::new(i, &tok).unwrap()).collect();
    let curriculum = Curriculum { variant: Variant::Coconut, max_latent_stage: 2, ..Curriculum::default() };
    let config = Gpt2Config { dropout: 0.0, n_positions: 768, ..Gpt2Config::small(tok.vocab_size(), 1, 32, 2) };
    let optim_cfg = OptimConfig { lr: 1e-3, ..OptimConfig::default() };

    let main = Device::flex().autodiff();
    #[allow(deprecated)]
    let devices = [Device::flex().autodiff(), Device::ndarray().autodiff()];
    main.seed(0);
    let initial = config.init(&main);

    let shards_on = |step: usize, devs: &[Device]| -> Vec<_> {
        let halves = [&[0usize, 1, 2, 3][..], &[4, 5, 6, 7][..]];
        halves
            .iter()
            .zip(devs)
            .enumerate()
            .map(|(j, (ix, d))| training_batch(&data, ix, &curriculum, 1 + step % 2, &tok, 0, step * 2 + j, d))
            .collect()
    };
    let (mut single, mut multi) = (initial.clone(), initial);
    let (mut opt_single, mut opt_multi) = (optim_cfg.optimizer(), optim_cfg.optimizer());
    for step in 0..4 {
        let (s, loss_s) = optimizer_step(single, &mut opt_single, &shards_on(step, &[main.clone(), main.clone()]), &curriculum, 1e-3);
        let (m, loss_m) = optimizer_step_multi(multi, &mut opt_multi, &shards_on(step, &devices), &devices, &curriculum, 1e-3);
        let (ls, lm) = (loss_s.into_scalar::<f32>(), loss_m.into_scalar::<f32>());
        assert!((ls - lm).abs() <= 1e-4, "step {step}: single-device loss {ls}, two devices {lm}");
        (single, multi) = (s, m);
    }
}
