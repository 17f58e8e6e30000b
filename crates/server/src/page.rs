//! The trace page of a stored episode: one self-contained HTML document
//! (inline CSS and SVG, no script, nothing fetched) that shows the decision
//! and its posteriors, the strategy options with their Beta intervals, the
//! replies with their votes and weights, the escalation rounds, every step
//! with its reward, the findings and revisions, and time and tokens per
//! phase.

use std::fmt::Write as _;

use metareason_reasoner::EpisodeReport;
use serde_json::Value;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222;line-height:1.4}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
.decision{display:inline-block;padding:.2em .6em;border-radius:.3em;color:#fff;font-weight:bold}
.answer{background:#2a7d3b} .abstain{background:#b07a12} .refuse{background:#a33}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;border-radius:.3em}
.step{font-family:ui-monospace,monospace;font-size:.9em}
.muted{color:#777} svg text{font-size:11px;font-family:system-ui,sans-serif}
tr.weakest td{background:#fdecea} .step-summary{font-size:.9em;color:#555}
";

/// Marks the weakest step of each attempt and says which it is (the page
/// works without it).
const SCRIPT: &str = "
for (const t of document.querySelectorAll('table.steps')) {
  const rows = [...t.querySelectorAll('tr.step-row')];
  if (!rows.length) continue;
  let worst = 0, min = Infinity;
  rows.forEach((r, i) => { const q = parseFloat(r.dataset.reward); if (q < min) { min = q; worst = i; } });
  rows[worst].classList.add('weakest');
  const p = document.createElement('p');
  p.className = 'step-summary';
  p.textContent = rows.length + ' steps; the weakest is step ' + (worst + 1) + ' (Q = ' + min.toFixed(3) + ')';
  t.after(p);
}
";

/// A horizontal bar of `value` in [0, max] (SVG, `width` pixels long).
fn bar(value: f64, max: f64, width: f64, color: &str) -> String {
    let w = if max > 0.0 {
        (value / max).clamp(0.0, 1.0) * width
    } else {
        0.0
    };
    format!(
        "<svg class=\"bar\" width=\"{width:.0}\" height=\"12\" role=\"img\"><rect width=\"{width:.0}\" height=\"12\" fill=\"#eee\"/><rect width=\"{w:.1}\" height=\"12\" fill=\"{color}\"/></svg>"
    )
}

/// A probability interval on [0, 1]: the interval as a band, the mean as a
/// tick.
fn interval(lo: f64, mean: f64, hi: f64) -> String {
    let x = |p: f64| 4.0 + p.clamp(0.0, 1.0) * 192.0;
    format!(
        "<svg class=\"interval\" width=\"200\" height=\"14\" role=\"img\"><line x1=\"4\" x2=\"196\" y1=\"7\" y2=\"7\" stroke=\"#ccc\"/><rect x=\"{:.1}\" y=\"3\" width=\"{:.1}\" height=\"8\" fill=\"#8fb3d9\"/><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"1\" y2=\"13\" stroke=\"#1f4e79\" stroke-width=\"2\"/></svg>",
        x(lo),
        (x(hi) - x(lo)).max(1.0),
        x(mean),
        x(mean)
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.3}"))
}

/// The tree a beam or MCTS search built, drawn left to right: a node per
/// partial reply, coloured by its step's reward, sized by its visits,
/// faded when beam search pruned it, and the path to the chosen candidate
/// drawn bold. Each node's title holds its step, reward, visits and value.
fn tree_svg(search: &str, nodes: &[metareason_monitor::TreeNode], chosen: usize) -> String {
    const DX: f64 = 110.0;
    const DY: f64 = 22.0;
    const MAX_NODES: usize = 2000;
    let nodes = &nodes[..nodes.len().min(MAX_NODES)];
    if nodes.is_empty() {
        return String::new();
    }
    let mut children = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        // A node's parent always comes before it; anything else is ignored.
        if let Some(p) = n.parent.filter(|&p| p < i) {
            children[p].push(i);
        }
    }
    // Leaves take rows in depth-first order; a parent sits between its
    // first and last child.
    let mut y = vec![0.0; nodes.len()];
    let mut depth = vec![0usize; nodes.len()];
    let mut row: f64 = 0.0;
    let mut stack = vec![(0usize, false)];
    while let Some((i, done)) = stack.pop() {
        if done || children[i].is_empty() {
            if children[i].is_empty() {
                y[i] = row;
                row += 1.0;
            } else {
                let (a, b) = (children[i][0], children[i][children[i].len() - 1]);
                y[i] = (y[a] + y[b]) / 2.0;
            }
            continue;
        }
        stack.push((i, true));
        for &c in children[i].iter().rev() {
            depth[c] = depth[i] + 1;
            stack.push((c, false));
        }
    }
    let mut on_path = vec![false; nodes.len()];
    if let Some(mut i) = nodes.iter().position(|n| n.candidates.contains(&chosen)) {
        loop {
            on_path[i] = true;
            match nodes[i].parent {
                Some(p) if p < i => i = p,
                _ => break,
            }
        }
    }
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    let (width, height) = ((max_depth + 1) as f64 * DX + 40.0, row.max(1.0) * DY + 20.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<h4>Search tree ({}, {} nodes)</h4><svg class=\"tree\" data-search=\"{}\" width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\">",
        escape(search),
        nodes.len(),
        escape(search)
    );
    let at = |i: usize| (20.0 + depth[i] as f64 * DX, 10.0 + y[i] * DY);
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = n.parent.filter(|&p| p < i) {
            let ((x1, y1), (x2, y2)) = (at(p), at(i));
            let bold = on_path[i];
            let _ = write!(
                svg,
                "<line class=\"tree-edge\" x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\" stroke-width=\"{}\"/>",
                if bold { "#1f4e79" } else { "#bbb" },
                if bold { 2.5 } else { 1.0 }
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, cy) = at(i);
        let r = 4.0 + f64::from(n.visits.min(30)) / 3.0;
        let fill = if i == 0 {
            "#555"
        } else if n.reward < 0.5 {
            "#c0504d"
        } else {
            "#2a7d3b"
        };
        let label: String = n.step.trim().chars().take(14).collect();
        let _ = write!(
            svg,
            "<g class=\"tree-node{}{}\" data-visits=\"{}\" data-reward=\"{:.4}\"><title>{}\nreward {:.3} · visits {} · value {:.3}{}</title>\
             <circle cx=\"{x:.1}\" cy=\"{cy:.1}\" r=\"{r:.1}\" fill=\"{fill}\" opacity=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            if n.kept { "" } else { " pruned" },
            if on_path[i] { " chosen" } else { "" },
            n.visits,
            n.reward,
            escape(if i == 0 { "(start)" } else { n.step.trim() }),
            n.reward,
            n.visits,
            n.value,
            if n.candidates.is_empty() {
                String::new()
            } else {
                format!(" · candidate {:?}", n.candidates.iter().map(|c| c + 1).collect::<Vec<_>>())
            },
            if n.kept { 1.0 } else { 0.35 },
            x + r + 2.0,
            cy + 4.0,
            escape(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The page of a stored episode (the JSON of `GET /v1/episodes/{id}`).
pub fn render(episode: &Value) -> String {
    let id = episode.get("id").and_then(Value::as_i64).unwrap_or(0);
    let created = episode
        .get("created_at")
        .and_then(Value::as_str)
        .unwrap_or("");
    let outcome = episode.get("outcome").and_then(Value::as_bool);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>metareason episode {id}</title><style>{STYLE}</style></head><body>"
    );
    let report = episode
        .get("trace")
        .cloned()
        .and_then(|t| serde_json::from_value::<EpisodeReport>(t).ok());
    let Some(r) = report else {
        let _ = write!(
            h,
            "<h1>Episode {id}</h1><p>This episode's trace is missing or was written by another \
             version; its stored record:</p><pre id=\"raw\">{}</pre></body></html>",
            escape(&serde_json::to_string_pretty(episode).unwrap_or_default())
        );
        return h;
    };
    let decision = r.decision.name();
    let _ = write!(
        h,
        "<h1>Episode {id}</h1><p class=\"muted\">{} · {} · {:.1} s · {} tokens generated</p>\
         <p id=\"task\"><b>Task.</b> {}</p>\
         <p><span id=\"decision\" class=\"decision {decision}\">{decision}</span> \
         <span id=\"reply\">{}</span></p>\
         <table><tr><th>calibrated P(correct)</th><td id=\"confidence\">{}</td><td>{}</td></tr>\
         <tr><th>answer found</th><td id=\"candidate\">{}</td><td></td></tr>\
         <tr><th>answer kind</th><td>{}</td><td class=\"muted\">{}</td></tr>\
         <tr><th>outcome (feedback)</th><td id=\"outcome\">{}</td><td></td></tr></table>\
         <p id=\"reason\"><b>Why.</b> {}</p>",
        escape(created),
        escape(&r.embedder.clone().unwrap_or_else(|| "no embedder".into())),
        r.seconds,
        r.usage.generated_tokens,
        escape(&r.task),
        escape(&r.reply),
        opt(r.confidence),
        r.confidence
            .map(|c| bar(c, 1.0, 160.0, "#2a7d3b"))
            .unwrap_or_default(),
        escape(r.candidate_answer.as_deref().unwrap_or("(none)")),
        escape(&r.answer_kind.kind.to_string()),
        escape(&r.answer_kind.how),
        match outcome {
            Some(true) => "right",
            Some(false) => "wrong",
            None => "not known",
        },
        escape(&r.reason),
    );

    // Self-awareness: policy, answerability, the options and posteriors.
    let a = &r.assessment;
    let _ = write!(h, "<h2>Before the task</h2><table>");
    if let Some((rule, action, _)) = &a.policy.fired {
        let _ = write!(
            h,
            "<tr><th>policy rule fired</th><td id=\"rule\">{} ({:?})</td></tr>",
            escape(rule),
            action
        );
    }
    if let Some(v) = &a.answerability {
        let _ = write!(
            h,
            "<tr><th>P(answerable)</th><td>{:.3} (decline below {:.3}){}</td></tr>",
            v.p_answerable,
            v.threshold,
            bar(v.p_answerable, 1.0, 120.0, "#1f4e79")
        );
    }
    let _ = write!(
        h,
        "<tr><th>P(True) probe</th><td>{}</td></tr><tr><th>out of distribution</th><td>{:.3} ({} neighbours in memory)</td></tr></table>",
        opt(a.probes.p_true),
        a.ood,
        a.neighbours
    );
    let _ = write!(
        h,
        "<table id=\"options\"><tr><th>strategy</th><th>posterior (95% interval)</th><th>mean</th><th>P(success)</th><th>expected tokens</th><th>utility</th></tr>"
    );
    for o in &a.options {
        let belief = a.beliefs.iter().find(|b| b.strategy == o.strategy);
        let (band, mean) = match belief {
            Some(b) => {
                let (lo, hi) = b.posterior.interval(0.95);
                (
                    interval(lo, b.posterior.mean(), hi),
                    format!("{:.3} [{lo:.2}, {hi:.2}]", b.posterior.mean()),
                )
            }
            None => (String::new(), "–".into()),
        };
        let chosen = a.strategy == Some(o.strategy);
        let _ = write!(
            h,
            "<tr class=\"option\"><td>{}{}</td><td>{band}</td><td>{mean}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td></tr>",
            escape(o.strategy.name()),
            if chosen { " <b>(chosen)</b>" } else { "" },
            o.p_success,
            o.expected_tokens,
            o.utility
        );
    }
    h.push_str("</table>");

    // The solve: attempts, their replies and votes, steps, findings.
    if let Some(t) = &r.solve {
        let _ = write!(h, "<h2>Solving</h2>");
        for (i, at) in t.attempts.iter().enumerate() {
            let out = &at.outcome;
            let _ = write!(
                h,
                "<h3 class=\"attempt\">Attempt {} · {} · {}{}</h3>",
                i + 1,
                escape(at.strategy.name()),
                escape(out.policy.name()),
                if i == t.final_attempt {
                    " · answers"
                } else {
                    ""
                }
            );
            if out.candidates.len() > 1 {
                let _ = write!(
                    h,
                    "<table class=\"replies\"><tr><th>reply</th><th>answer</th><th>tokens</th><th>mean step reward</th><th>token confidence (lowest group)</th></tr>"
                );
                for (j, c) in out.candidates.iter().enumerate() {
                    let _ = write!(
                        h,
                        "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{:.3} {}</td><td>{:.2}</td></tr>",
                        j + 1,
                        if j == out.chosen { " ✓" } else { "" },
                        escape(c.answer.as_ref().map_or("(none)", |a| a.normalized.as_str())),
                        c.tokens,
                        c.score,
                        bar(c.score, 1.0, 80.0, "#6a8fbf"),
                        c.confidence.lowest_group
                    );
                }
                h.push_str("</table>");
                if !out.votes.is_empty() {
                    let max = out.votes.values().copied().max().unwrap_or(1) as f64;
                    h.push_str("<table class=\"votes\"><tr><th>answer</th><th>votes</th></tr>");
                    for (ans, n) in &out.votes {
                        let _ = write!(
                            h,
                            "<tr><td>{}</td><td>{n} {}</td></tr>",
                            escape(ans),
                            bar(*n as f64, max, 100.0, "#1f4e79")
                        );
                    }
                    h.push_str("</table>");
                }
            }
            let best = out.best();
            h.push_str("<table class=\"steps\"><tr><th>#</th><th>step</th><th>reward Q<sub>t</sub></th></tr>");
            for (k, s) in best.steps.iter().enumerate() {
                let _ = write!(
                    h,
                    "<tr class=\"step-row\" data-reward=\"{:.6}\"><td>{}</td><td class=\"step\">{}</td><td>{:.3} {}</td></tr>",
                    s.reward,
                    k + 1,
                    escape(&s.text),
                    s.reward,
                    bar(s.reward, 1.0, 80.0, if s.reward < 0.5 { "#c0504d" } else { "#2a7d3b" })
                );
            }
            h.push_str("</table>");
            if let Some((program, run)) = &at.program {
                let _ = write!(
                    h,
                    "<details><summary>program and its run</summary><pre>{}</pre><pre>{}</pre></details>",
                    escape(program),
                    escape(&serde_json::to_string_pretty(run).unwrap_or_default())
                );
            }
            if !at.findings.is_empty() {
                h.push_str("<table class=\"findings\"><tr><th>verifier</th><th>verdict</th><th>step</th><th>finding</th></tr>");
                for f in &at.findings {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(f.verifier.name()),
                        escape(f.verdict.name()),
                        f.step.map(|s| (s + 1).to_string()).unwrap_or_default(),
                        escape(&f.message)
                    );
                }
                h.push_str("</table>");
            }
            for e in &out.events {
                if let metareason_monitor::Event::Tree { search, nodes } = e {
                    h.push_str(&tree_svg(search, nodes, out.chosen));
                }
            }
            if !out.events.is_empty() {
                let _ = write!(
                    h,
                    "<details><summary>search events ({})</summary><pre>{}</pre></details>",
                    out.events.len(),
                    escape(&serde_json::to_string_pretty(&out.events).unwrap_or_default())
                );
            }
        }
        if !t.revisions.is_empty() {
            h.push_str("<h3>Revisions</h3><table id=\"revisions\"><tr><th>round</th><th>from step</th><th>confidence before → after</th><th>accepted</th></tr>");
            for rv in &t.revisions {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{:.3} → {:.3}</td><td>{}</td></tr>",
                    rv.round + 1,
                    rv.from_step + 1,
                    rv.confidence_before,
                    rv.confidence_after,
                    if rv.accepted { "yes" } else { "no" }
                );
            }
            h.push_str("</table>");
        }
        for s in &t.switches {
            let _ = write!(
                h,
                "<p class=\"switch\">switched from {} to {}: {}</p>",
                escape(s.from.name()),
                escape(s.to.name()),
                escape(&s.reason)
            );
        }
    }
    if let Some(c) = &r.cross_check {
        let _ = write!(
            h,
            "<h2>Cross-check</h2><p id=\"cross-check\">{} answered {} ({})</p>",
            escape(c.strategy.name()),
            escape(c.answer.as_deref().unwrap_or("(none)")),
            match c.agrees {
                Some(true) => "agrees",
                Some(false) => "disagrees",
                None => "no answer to compare",
            }
        );
    }
    if let Some(e) = &r.escalation {
        let _ = write!(
            h,
            "<h2>Escalation</h2><p>First answer {} at P(correct) {:.3}; {} more repl{} drawn; final {} at {:.3}.</p>\
             <table id=\"escalation\"><tr><th>round</th><th>P(correct) before</th><th>expected gain</th><th>worth vs cost</th><th>P(leader is majority)</th><th>decision</th><th>replies drawn</th><th>leader after</th></tr>",
            escape(e.first_answer.as_deref().unwrap_or("(none)")),
            e.first_confidence,
            e.drawn,
            if e.drawn == 1 { "y" } else { "ies" },
            escape(e.answer.as_deref().unwrap_or("(none)")),
            e.confidence
        );
        for (i, round) in e.rounds.iter().enumerate() {
            let replies: Vec<String> = round
                .replies
                .iter()
                .map(|p| {
                    format!(
                        "{}: {} (w {:.2}, {} tok)",
                        p.strategy.name(),
                        p.answer.as_deref().unwrap_or("none"),
                        p.weight,
                        p.tokens
                    )
                })
                .collect();
            let _ = write!(
                h,
                "<tr class=\"round\"><td>{}</td><td>{:.3}</td><td>{:+.3}</td><td>{:.3} vs {:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i + 1,
                round.value.p_correct,
                round.value.expected_gain,
                round.value.worth,
                round.value.cost,
                round.majority_posterior,
                escape(&round.decision),
                escape(&replies.join("; ")),
                escape(round.leader.as_deref().unwrap_or("(none)"))
            );
        }
        h.push_str("</table>");
    }

    // Where the time and tokens went.
    if !r.phases.is_empty() {
        let max_s = r.phases.iter().map(|p| p.seconds).fold(0.0, f64::max);
        let max_t = r
            .phases
            .iter()
            .map(|p| p.usage.generated_tokens)
            .max()
            .unwrap_or(0) as f64;
        h.push_str("<h2>Time and tokens</h2><table id=\"phases\"><tr><th>phase</th><th>seconds</th><th></th><th>tokens generated</th><th></th><th>prompt tokens (cached)</th></tr>");
        for p in &r.phases {
            let _ = write!(
                h,
                "<tr class=\"phase\"><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td></tr>",
                escape(&p.name),
                p.seconds,
                bar(p.seconds, max_s, 120.0, "#8064a2"),
                p.usage.generated_tokens,
                bar(p.usage.generated_tokens as f64, max_t, 120.0, "#4bacc6"),
                p.usage.prompt_tokens,
                p.usage.cached_prompt_tokens
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<details><summary>the whole episode (JSON)</summary><pre>{}</pre></details><script>{SCRIPT}</script></body></html>",
        escape(&serde_json::to_string_pretty(episode).unwrap_or_default())
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn an_unreadable_trace_still_renders_the_record() {
        let page = render(&serde_json::json!({"id": 3, "trace": {"schema": "other"}}));
        assert!(page.contains("Episode 3"));
        assert!(page.contains("id=\"raw\""));
    }

    #[test]
    fn a_search_tree_marks_pruned_nodes_and_the_path_to_the_chosen_answer() {
        use metareason_monitor::TreeNode;
        let node =
            |parent: Option<usize>, step: &str, kept: bool, candidates: Vec<usize>| TreeNode {
                parent,
                step: step.into(),
                reward: 0.8,
                visits: 0,
                value: 0.5,
                kept,
                candidates,
            };
        let nodes = vec![
            node(None, "", true, vec![]),
            node(Some(0), "First <a>", true, vec![]),
            node(Some(0), "Pruned", false, vec![]),
            node(Some(1), "The answer is 3.", true, vec![0]),
            node(Some(1), "The answer is 4.", true, vec![1]),
        ];
        let svg = tree_svg("beam", &nodes, 1);
        assert_eq!(svg.matches("<g class=\"tree-node").count(), 5);
        assert_eq!(svg.matches("tree-edge").count(), 4);
        assert_eq!(svg.matches(" pruned").count(), 1);
        // The chosen candidate (index 1) ends at node 4: it, node 1 and the
        // root are on the path.
        assert_eq!(svg.matches("tree-node chosen").count(), 3, "{svg}");
        assert!(svg.contains("First &lt;a&gt;"));
        assert!(!svg.contains("<a>"));
        // A parent that does not come before its child is not followed.
        let looped = vec![
            node(None, "", true, vec![]),
            node(Some(1), "self", true, vec![0]),
        ];
        assert_eq!(tree_svg("mcts", &looped, 0).matches("tree-edge").count(), 0);
        assert_eq!(tree_svg("mcts", &[], 0), "");
    }
}
