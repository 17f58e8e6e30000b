//! A self-contained HTML report with hand-written SVG plots: reliability
//! diagrams, risk-coverage curves, and accuracy against tokens for every
//! configuration; and a side-by-side comparison table.

use std::fmt::Write;

use crate::run::Summary;

/// Distinct colours for up to twelve configurations (then they repeat;
/// lines also change dash pattern every twelve).
const COLOURS: [&str; 12] = [
    "#1b6ac9", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#495057",
    "#74b816", "#5c7cfa", "#f08c00", "#a61e4d",
];

/// Dash patterns of the lines of runs 1-12, 13-24, ...
const DASHES: [&str; 3] = ["none", "6 3", "2 3"];

/// Width of the legend column to the right of a plot.
const LEGEND_W: f64 = 190.0;

/// A round tick step (1, 2 or 5 times a power of ten) giving about four
/// steps up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn f(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.3}"))
}

/// A square plot area: maps data coordinates to SVG pixels.
struct Frame {
    w: f64,
    h: f64,
    pad: f64,
    x_max: f64,
    y_max: f64,
    /// Extra width on the right for a legend.
    legend: f64,
}

impl Frame {
    /// A frame whose axes end on round ticks at or above the maxima.
    fn rounded(w: f64, h: f64, pad: f64, x_max: f64, y_max: f64, legend: f64) -> Self {
        let round = |m: f64| {
            let st = nice_step(m);
            (m / st).ceil().max(1.0) * st
        };
        Self {
            w,
            h,
            pad,
            x_max: round(x_max),
            y_max: round(y_max),
            legend,
        }
    }
    fn x(&self, v: f64) -> f64 {
        self.pad + v / self.x_max.max(1e-12) * (self.w - 2.0 * self.pad)
    }
    fn y(&self, v: f64) -> f64 {
        self.h - self.pad - v / self.y_max.max(1e-12) * (self.h - 2.0 * self.pad)
    }
    fn axes(&self, x_label: &str, y_label: &str, out: &mut String) {
        let (x0, y0, x1, y1) = (
            self.x(0.0),
            self.y(0.0),
            self.x(self.x_max),
            self.y(self.y_max),
        );
        let _ = write!(
            out,
            r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" stroke="#333"/><line x1="{x0:.1}" y1="{y0:.1}" x2="{x0:.1}" y2="{y1:.1}" stroke="#333"/>"##
        );
        let (sx, sy) = (nice_step(self.x_max), nice_step(self.y_max));
        let mut fx = 0.0;
        while fx <= self.x_max * (1.0 + 1e-9) {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                self.x(fx),
                y0 + 14.0,
                tick(fx, sx),
            );
            fx += sx;
        }
        let mut fy = 0.0;
        while fy <= self.y_max * (1.0 + 1e-9) {
            let _ = write!(
                out,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                self.y(fy) + 3.0,
                tick(fy, sy),
                y = self.y(fy),
            );
            fy += sy;
        }
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {:.1})">{}</text>"##,
            (x0 + x1) / 2.0,
            self.h - 4.0,
            esc(x_label),
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            esc(y_label)
        );
    }
}

/// A tick label with as many decimals as its step needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn svg_open(w: f64, h: f64) -> String {
    let w = w.ceil();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    )
}

/// Reliability diagram of one configuration: bars of accuracy per
/// confidence bin against the diagonal, bar width ∝ count.
pub fn reliability_svg(name: &str, s: &Summary, colour: &str) -> String {
    let fr = Frame::rounded(300.0, 300.0, 36.0, 1.0, 1.0, 0.0);
    let mut out = svg_open(fr.w, fr.h);
    let _ = write!(
        out,
        r##"<text x="150" y="14" font-size="12" text-anchor="middle">{}</text>"##,
        esc(name)
    );
    fr.axes("confidence", "accuracy", &mut out);
    let _ = write!(
        out,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
        fr.x(0.0),
        fr.y(0.0),
        fr.x(1.0),
        fr.y(1.0)
    );
    let total: usize = s.reliability.iter().map(|b| b.count).sum();
    for b in s.reliability.iter().filter(|b| b.count > 0) {
        let share = b.count as f64 / total.max(1) as f64;
        let x0 = fr.x(b.low);
        let x1 = fr.x(b.high);
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" fill-opacity="{:.2}" stroke="{colour}"><title>{:.2}-{:.2}: {} items, confidence {:.3}, accuracy {:.3}</title></rect>"##,
            x0 + 1.0,
            fr.y(b.accuracy),
            (x1 - x0 - 2.0).max(1.0),
            fr.y(0.0) - fr.y(b.accuracy),
            0.25 + 0.75 * share.sqrt(),
            b.low,
            b.high,
            b.count,
            b.confidence,
            b.accuracy
        );
    }
    out.push_str("</svg>");
    out
}

/// Risk-coverage curves of every configuration.
pub fn risk_coverage_svg(runs: &[(String, Summary)]) -> String {
    let fr = Frame::rounded(
        460.0,
        320.0,
        40.0,
        1.0,
        runs.iter()
            .flat_map(|(_, s)| s.risk_coverage.iter().map(|p| p.risk))
            .fold(0.1, f64::max),
        LEGEND_W,
    );
    let mut out = svg_open(fr.w + fr.legend, height_with_legend(fr.h, runs.len()));
    fr.axes("coverage", "risk (error rate)", &mut out);
    for (i, (name, s)) in runs.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = s
            .risk_coverage
            .iter()
            .map(|p| format!("{:.1},{:.1}", fr.x(p.coverage), fr.y(p.risk)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2" stroke-dasharray="{}"><title>{}</title></polyline>"##,
            pts.join(" "),
            DASHES[(i / COLOURS.len()) % DASHES.len()],
            esc(name)
        );
    }
    let names: Vec<(usize, &str)> = runs.iter().map(|(n, _)| n.as_str()).enumerate().collect();
    legend(&names, fr.w, 20.0, &mut out);
    out.push_str("</svg>");
    out
}

/// Accuracy against tokens generated per item, one point per configuration
/// with its 95% interval. Runs named `RUN+BASELINE` (a confidence baseline
/// over RUN's answers) have RUN's point and are left out.
pub fn accuracy_tokens_svg(runs: &[(String, Summary)]) -> String {
    let shown: Vec<(usize, &(String, Summary))> = runs
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| !n.contains('+'))
        .collect();
    let fr = Frame::rounded(
        460.0,
        320.0,
        44.0,
        shown
            .iter()
            .map(|(_, (_, s))| s.generated_tokens)
            .fold(1.0, f64::max)
            * 1.05,
        1.0,
        LEGEND_W,
    );
    let mut out = svg_open(fr.w + fr.legend, height_with_legend(fr.h, shown.len()));
    fr.axes("tokens generated per item", "accuracy", &mut out);
    for &(i, (name, s)) in &shown {
        let c = COLOURS[i % COLOURS.len()];
        let acc = s.accuracy.value.unwrap_or(0.0);
        let (x, y) = (fr.x(s.generated_tokens), fr.y(acc));
        if let Some((lo, hi)) = s.accuracy.ci95 {
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{c}"/>"##,
                fr.y(lo),
                fr.y(hi)
            );
        }
        let _ = write!(
            out,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{c}"><title>{}: accuracy {acc:.3}, {:.0} tokens</title></circle>"##,
            esc(name),
            s.generated_tokens
        );
        // A run that withholds answers: hollow, the accuracy it would have
        // had answering everything.
        if let Some(all) = s.candidate_accuracy.filter(|a| (a - acc).abs() > 1e-9) {
            let _ = write!(
                out,
                r##"<circle cx="{x:.1}" cy="{:.1}" r="5" fill="none" stroke="{c}" stroke-width="2"><title>{}: accuracy answering all {all:.3}</title></circle>"##,
                fr.y(all),
                esc(name)
            );
        }
    }
    let names: Vec<(usize, &str)> = shown.iter().map(|(i, (n, _))| (*i, n.as_str())).collect();
    legend(&names, fr.w, 20.0, &mut out);
    out.push_str("</svg>");
    out
}

/// A legend column of (run index, name) at (x, y): a short line in the
/// run's colour and dash pattern (runs past the palette are dashed).
fn legend(names: &[(usize, &str)], x: f64, y: f64, out: &mut String) {
    for (row, (i, name)) in names.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let dash = DASHES[(i / COLOURS.len()) % DASHES.len()];
        let yy = y + 14.0 * row as f64;
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="3" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"##,
            yy - 4.0,
            x + 18.0,
            yy - 4.0,
            x + 22.0,
            yy,
            esc(name)
        );
    }
}

/// Height of a plot whose legend lists `entries` runs: the legend may be
/// taller than the plot.
fn height_with_legend(plot_h: f64, entries: usize) -> f64 {
    plot_h.max(20.0 + 14.0 * entries as f64 + 10.0)
}

/// How one cell of the comparison is read from a summary.
type Cell = dyn Fn(&Summary) -> String;

/// The side-by-side table (markdown) of several runs.
pub fn comparison_markdown(runs: &[(String, Summary)]) -> String {
    let mut out = "| metric |".to_string()
        + &runs
            .iter()
            .map(|(n, _)| format!(" {n} |"))
            .collect::<String>()
        + "\n|---|"
        + &"---|".repeat(runs.len())
        + "\n";
    let rows: Vec<(&str, Box<Cell>)> = vec![
        ("items", Box::new(|s| s.n.to_string())),
        ("accuracy", Box::new(|s| f(s.accuracy.value))),
        ("answered accuracy", Box::new(|s| f(s.answered_accuracy))),
        (
            "accuracy answering all",
            Box::new(|s| f(s.candidate_accuracy)),
        ),
        ("coverage", Box::new(|s| f(s.coverage))),
        ("ECE (10 equal-width)", Box::new(|s| f(s.ece.value))),
        ("ECE (10 equal-mass)", Box::new(|s| f(s.ece_equal_mass))),
        ("Brier", Box::new(|s| f(s.brier))),
        ("NLL", Box::new(|s| f(s.nll))),
        ("AUROC", Box::new(|s| f(s.auroc.value))),
        ("AUPRC", Box::new(|s| f(s.auprc))),
        ("AURC", Box::new(|s| f(s.aurc))),
        (
            "selective accuracy @50%",
            Box::new(|s| f(s.selective_accuracy[0])),
        ),
        (
            "selective accuracy @80%",
            Box::new(|s| f(s.selective_accuracy[1])),
        ),
        (
            "selective accuracy @90%",
            Box::new(|s| f(s.selective_accuracy[2])),
        ),
        ("decline precision", Box::new(|s| f(s.decline.precision))),
        ("decline recall", Box::new(|s| f(s.decline.recall))),
        ("decline F1", Box::new(|s| f(s.decline.f1))),
        (
            "over-declining",
            Box::new(|s| f(s.decline.false_positive_rate)),
        ),
        (
            "declared unanswerable: F1",
            Box::new(|s| f(s.unanswerable.and_then(|u| u.f1))),
        ),
        (
            "declared unanswerable: of the answerable",
            Box::new(|s| f(s.unanswerable.and_then(|u| u.false_positive_rate))),
        ),
        (
            "AUROC of 1 − confidence for declining",
            Box::new(|s| f(s.decline_auroc)),
        ),
        (
            "tokens generated / item",
            Box::new(|s| format!("{:.0}", s.generated_tokens)),
        ),
        (
            "prompt tokens / item",
            Box::new(|s| format!("{:.0}", s.prompt_tokens)),
        ),
        ("seconds / item", Box::new(|s| format!("{:.1}", s.seconds))),
    ];
    for (name, get) in rows {
        let _ = writeln!(
            out,
            "| {name} |{}",
            runs.iter()
                .map(|(_, s)| format!(" {} |", get(s)))
                .collect::<String>()
        );
    }
    out
}

/// The whole page.
pub fn html(title: &str, runs: &[(String, Summary)]) -> String {
    // Many runs make a wide table: it scrolls sideways with its metric
    // names held in place.
    let mut table = String::from(r#"<div class="wide"><table><tr><th>metric</th>"#);
    for (n, _) in runs {
        let _ = write!(table, "<th>{}</th>", esc(n));
    }
    table.push_str("</tr>");
    for line in comparison_markdown(runs).lines().skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        table.push_str("<tr>");
        for (i, c) in cells.iter().enumerate() {
            if i == 0 {
                let _ = write!(table, "<th>{}</th>", esc(c));
            } else {
                let _ = write!(table, "<td>{}</td>", esc(c));
            }
        }
        table.push_str("</tr>");
    }
    table.push_str("</table></div>");
    let reliability: String = runs
        .iter()
        .enumerate()
        .map(|(i, (n, s))| reliability_svg(n, s, COLOURS[i % COLOURS.len()]))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
.wide {{ overflow-x: auto; max-width: 100%; }}
.wide tr > th:first-child {{ position: sticky; left: 0; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
h2 {{ margin-top: 1.6em; }}
</style></head><body>
<h1>{t}</h1>
<h2>Summary</h2>
{table}
<h2>Accuracy against tokens</h2>
<p>Filled: accuracy (a withheld answer counts as not right), with its 95% interval; hollow: the accuracy of answering everything, for runs that withhold answers.</p>
<div class="plots">{acc}</div>
<h2>Risk-coverage (answer the most confident first)</h2>
<div class="plots">{rc}</div>
<h2>Reliability diagrams</h2>
<div class="plots">{reliability}</div>
</body></html>
"#,
        t = esc(title),
        acc = accuracy_tokens_svg(runs),
        rc = risk_coverage_svg(runs),
    )
}
