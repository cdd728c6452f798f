//! The fine-tune's live loss curve (and held-out accuracy points) as SVG.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct LossProps {
    /// (step, loss)
    pub losses: Vec<(usize, f32)>,
    /// (step, accuracy in 0..1)
    pub accuracy: Vec<(usize, f64)>,
    pub total_steps: usize,
}

const W: f64 = 560.0;
const H: f64 = 200.0;
const PAD: f64 = 34.0;

#[function_component(LossChart)]
pub fn loss_chart(p: &LossProps) -> Html {
    let max_step = p.total_steps.max(p.losses.last().map(|l| l.0).unwrap_or(1)).max(1) as f64;
    let max_loss = p.losses.iter().map(|l| l.1 as f64).fold(0.0, f64::max).max(1e-3);
    let x = |s: usize| PAD + (W - 2.0 * PAD) * s as f64 / max_step;
    let y = |v: f64, top: f64| H - PAD - (H - 2.0 * PAD) * (v / top).clamp(0.0, 1.0);
    let points: String = p.losses.iter().map(|&(s, l)| format!("{:.1},{:.1} ", x(s), y(l as f64, max_loss))).collect();
    let acc = p.accuracy.iter().map(|&(s, a)| {
        html! { <circle class="acc" cx={format!("{:.1}", x(s))} cy={format!("{:.1}", y(a, 1.0))} r="3.5"><title>{format!("step {s}: held-out accuracy {:.0}%", a * 100.0)}</title></circle> }
    });
    let last = p.losses.last().map(|l| format!("{:.4}", l.1));
    html! {
        <svg class="loss-chart" data-testid="finetune-loss" data-points={p.losses.len().to_string()} data-last-loss={last}
             data-losses={p.losses.iter().map(|l| format!("{:.5}", l.1)).collect::<Vec<_>>().join(",")}
             role="img" aria-label="Training loss per step" viewBox={format!("0 0 {W} {H}")}>
          <line class="axis" x1={PAD.to_string()} y1={(H - PAD).to_string()} x2={(W - PAD).to_string()} y2={(H - PAD).to_string()} />
          <line class="axis" x1={PAD.to_string()} y1={PAD.to_string()} x2={PAD.to_string()} y2={(H - PAD).to_string()} />
          <text class="tick" x="4" y={(PAD + 4.0).to_string()}>{format!("{max_loss:.2}")}</text>
          <text class="tick" x="4" y={(H - PAD).to_string()}>{"0"}</text>
          <text class="tick" x={(W - PAD).to_string()} y={(H - 8.0).to_string()} text-anchor="end">{format!("step {max_step:.0}")}</text>
          <text class="tick acc-label" x={(W - PAD).to_string()} y={(PAD - 10.0).to_string()} text-anchor="end">{"● held-out accuracy (0–100%)"}</text>
          <polyline class="loss" points={points} />
          { for acc }
        </svg>
    }
}
