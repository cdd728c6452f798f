//! The answer and its latent search: the question's graph filling in thought by thought, the
//! timeline (play / pause / step / speed), the language path and the timings.

use coconut::prosqa::ParsedQuestion;

use std::rc::Rc;

use web_sys::HtmlSelectElement;

use yew::prelude::*;

use crate::graph::Graph;
use crate::protocol::*;

#[derive(Properties, PartialEq)]
pub struct WatchProps {
    pub report: Option<Rc<AnswerReport>>,
    pub question: Option<ParsedQuestion>,
    pub asking: bool,
    pub error: Option<String>,
    /// The right answer, when the question asked was an official example or a generated one.
    pub expected: Option<String>,
    /// The CoT baseline's answer to the same question, shown beside this one.
    pub compared: Option<Rc<ComparedAnswer>>,
}

/// "✓ right" or "✗ wrong: …" when the answer is known.
fn verdict(answer: &str, expected: Option<&String>) -> Html {
    match expected {
        Some(e) if answer.trim() == e.trim() => html! { <span class="verdict right" data-testid="verdict">{"✓ right"}</span> },
        Some(e) => html! { <span class="verdict wrong" data-testid="verdict">{format!("✗ wrong: the answer is “{}”", e.trim())}</span> },
        None => html! {},
    }
}

/// The graph, the thought timeline with play/pause/step/speed, the answer and the timings.
#[function_component(Watch)]
pub fn watch(p: &WatchProps) -> Html {
    let frame = use_state(|| 0usize);
    let playing = use_state(|| false);
    let speed_ms = use_state(|| 900u32);
    let frames = p.report.as_ref().map(|r| r.analysis.steps.len()).unwrap_or(0);
    let total = p.report.as_ref().map(|r| r.k + 1).unwrap_or(0);
    {
        // A new answer: start the animation from the first frame.
        let (frame, playing) = (frame.clone(), playing.clone());
        let id = p.report.as_ref().map(|r| r.id);
        use_effect_with(id, move |_| {
            frame.set(0);
            playing.set(true);
        });
    }
    {
        let (frame, playing) = (frame.clone(), playing.clone());
        // Frames still arriving: the animation waits at the newest one instead of stopping.
        use_effect_with((*frame, *playing, *speed_ms, frames, total), move |&(f, play, ms, n, total)| {
            let timeout = (play && n > 0 && (f + 1 < n || n == total)).then(|| {
                gloo_timers::callback::Timeout::new(ms, move || {
                    if f + 1 < n {
                        frame.set(f + 1);
                    } else {
                        playing.set(false);
                    }
                })
            });
            move || drop(timeout)
        });
    }
    let Some(r) = &p.report else {
        return html! {
          <>
            if let Some(q) = &p.question { <Graph question={q.clone()} /> }
            <p class="note">{ if p.asking { "Thinking…" } else { "Ask to see what each continuous thought favours on this graph." } }</p>
            if let Some(e) = &p.error { <p class="error" data-testid="error" role="alert">{e.clone()}</p> }
          </>
        };
    };
    let a = &r.analysis;
    let q = ParsedQuestion { names: a.names.clone(), is_person: a.is_person.clone(), edges: a.edges.clone(), subject: a.root, options: a.options };
    let cur = (*frame).min(frames.saturating_sub(1));
    let step = a.steps.get(cur);
    let done = frames == total && cur + 1 == frames;
    let answer_node = r.answer.split_whitespace().last().map(|w| w.trim_end_matches('.')).and_then(|w| a.names.iter().position(|n| n == w));
    let path = if done { q.path_edges(&r.text) } else { Vec::new() };
    let timeline = a.steps.iter().enumerate().map(|(i, s)| {
        let frame = frame.clone();
        let playing = playing.clone();
        let best = s.distribution.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map(|(v, d)| format!("{} {:.0}%", a.names[v], d * 100.0));
        let dist_json = serde_json::to_string(&s.distribution).unwrap_or_default();
        html! {
          <button class={classes!("frame", (i == cur).then_some("current"))} data-testid="thought-frame" data-t={s.t.to_string()}
                  data-distribution={dist_json} aria-pressed={(i == cur).to_string()}
                  onclick={Callback::from(move |_: MouseEvent| { playing.set(false); frame.set(i); })}>
            <span class="t">{ if s.t == 0 { "question".to_string() } else { format!("thought {}", s.t) } }</span>
            <span class="best">{best.unwrap_or_default()}</span>
            <span class="ms">{format!("{:.0} ms", r.frame_ms.get(i).copied().unwrap_or(0.0))}</span>
          </button>
        }
    });
    let controls = {
        let (frame, playing, speed_ms) = (frame.clone(), playing.clone(), speed_ms.clone());
        let toggle = {
            let (frame, playing) = (frame.clone(), playing.clone());
            Callback::from(move |_: MouseEvent| {
                if !*playing && cur + 1 == frames {
                    frame.set(0);
                }
                playing.set(!*playing);
            })
        };
        let back = {
            let (frame, playing) = (frame.clone(), playing.clone());
            Callback::from(move |_: MouseEvent| {
                playing.set(false);
                frame.set(cur.saturating_sub(1));
            })
        };
        let fwd = {
            let (frame, playing) = (frame.clone(), playing.clone());
            Callback::from(move |_: MouseEvent| {
                playing.set(false);
                frame.set((cur + 1).min(frames.saturating_sub(1)));
            })
        };
        let on_speed = Callback::from(move |e: Event| {
            let sel: HtmlSelectElement = e.target_unchecked_into();
            speed_ms.set(sel.value().parse().unwrap_or(900));
        });
        html! {
          <div class="row controls">
            <button onclick={back} aria-label="Previous thought">{"◀ step"}</button>
            <button onclick={toggle}>{ if *playing { "Pause" } else { "Play" } }</button>
            <button onclick={fwd} aria-label="Next thought">{"step ▶"}</button>
            <label>{"Speed "}
              <select onchange={on_speed}>
                <option value="1600">{"slow"}</option>
                <option value="900" selected=true>{"normal"}</option>
                <option value="350">{"fast"}</option>
              </select>
            </label>
          </div>
        }
    };
    let top = match step {
        None => "computing the thought frames…".to_string(),
        Some(st) if st.top_tokens.is_empty() => "the question alone: values are the model's next concept after “… is a”".to_string(),
        Some(st) => st.top_tokens.iter().map(|(t, p)| format!("{} {:.0}%", t.trim(), p * 100.0)).collect::<Vec<_>>().join(" · "),
    };
    let heading = match step {
        Some(st) if st.t > 0 => format!("Thought {} through the LM head: ", st.t),
        Some(_) => "Frame 0: ".to_string(),
        None => String::new(),
    };
    html! {
      <>
        <Graph question={q.clone()} distribution={step.map(|st| st.distribution.clone())} frontier={step.map(|st| st.frontier.clone()).unwrap_or_default()}
               path={path} answer={done.then_some(answer_node).flatten()} />
        <p class="legend">{"Colour and size: the node's value (probability that it is the next concept named after switching to language), \
            normalised over the graph. Dashed ring: the frontier (after t thoughts, the concepts t hops from the person: what the next step names if the search is right). A/B: the two candidate answers."}</p>
        <div class="timeline" role="group" aria-label="Thoughts" aria-busy={(frames < total).to_string()}>{ for timeline }</div>
        {controls}
        <p class="top-tokens"><strong>{heading}</strong>{top}</p>
        <div class="answer-box">
          <p><strong>{"Answer: "}</strong><span data-testid="answer" data-id={r.id.to_string()}>{r.answer.clone()}</span></p>
          <p>{ verdict(&r.answer, p.expected.as_ref()) }</p>
          if r.text.trim() != format!("### {}", r.answer) {
            <pre class="language">{r.text.clone()}</pre>
          }
          <p class="timing">{format!("{} · k = {} · answer {:.0} ms (all thoughts + decoding){}",
              r.backend, r.k, r.generate_ms,
              r.ms_per_thought().map(|ms| format!(" · {ms:.1} ms per thought")).unwrap_or_default())}</p>
        </div>
        if let Some(c) = &p.compared {
          <table class="compare" data-testid="compare">
            <tr><th></th><th>{format!("this model ({}, k = {})", if r.k > 0 { "continuous thoughts" } else { "language" }, r.k)}</th><th>{format!("CoT baseline ({})", c.method)}</th></tr>
            <tr><th>{"answer"}</th><td>{r.answer.clone()}{" "}{ verdict(&r.answer, p.expected.as_ref()) }</td>
                <td><span data-testid="compare-answer">{c.answer.clone()}</span>{" "}{ verdict(&c.answer, p.expected.as_ref()) }</td></tr>
            <tr><th>{"reasoning"}</th><td>{format!("{} thoughts, not words", r.k)}</td><td><pre class="language">{c.text.clone()}</pre></td></tr>
            <tr><th>{"time"}</th><td>{format!("{:.0} ms", r.generate_ms)}</td><td>{format!("{:.0} ms", c.generate_ms)}</td></tr>
          </table>
        }
        if let Some(e) = &p.error { <p class="error" data-testid="error" role="alert">{e.clone()}</p> }
      </>
    }
}
