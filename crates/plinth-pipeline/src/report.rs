//! What a run leaves for people: the summary as a text table, and `report.html`
//! (stages, result distributions as inline SVG histograms, the first results).

use std::collections::BTreeMap;

use crate::records::{plain, Record};
use crate::run::{Summary, REJECTS};
use crate::Pipeline;

/// The summary as a text table.
pub fn summary_table(s: &Summary) -> String {
    let mut t = format!("{:<18} {:<22} {:>8} {:>8} {:>8} {:>9}\n", "stage", "op", "in", "out", "rejected", "seconds");
    for st in &s.stages {
        t.push_str(&format!(
            "{:<18} {:<22} {:>8} {:>8} {:>8} {:>9.2}\n",
            st.name, st.op, st.records_in, st.records_out, st.rejected, st.seconds
        ));
    }
    t.push_str(&format!("{} results, {} rejected, {:.1} s\n", s.results, s.rejected, s.seconds));
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A histogram of one numeric field as inline SVG.
fn histogram_svg(field: &str, values: &[f64]) -> String {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let bins = 20usize;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[(((v - lo) / span) * bins as f64).floor().clamp(0.0, (bins - 1) as f64) as usize] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let (w, h) = (400.0, 120.0);
    let bars: String = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let bh = c as f64 / max as f64 * (h - 20.0);
            format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1f77b4\"/>",
                i as f64 * w / bins as f64,
                h - 20.0 - bh,
                w / bins as f64 - 1.0,
                bh
            )
        })
        .collect();
    format!(
        "<figure><svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">{bars}<text x=\"0\" y=\"{h}\" font-size=\"11\">{lo:.3}</text><text x=\"{}\" y=\"{h}\" font-size=\"11\" text-anchor=\"end\">{hi:.3}</text></svg><figcaption>{} (n = {})</figcaption></figure>",
        w,
        esc(field),
        values.len()
    )
}

pub fn report_html(p: &Pipeline, s: &Summary, results: &[Record]) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:1em}}</style></head><body><h1>{0}</h1><p>{1}</p>",
        esc(&p.name),
        esc(&p.description)
    );
    html.push_str("<h2>Stages</h2><table><tr><th>stage</th><th>op</th><th>in</th><th>out</th><th>rejected</th><th>seconds</th></tr>");
    for st in &s.stages {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&st.name),
            esc(&st.op),
            st.records_in,
            st.records_out,
            st.rejected,
            st.seconds
        ));
    }
    html.push_str(&format!(
        "</table><p>{} results, {} rejected (see {REJECTS}), {:.1} s.</p>",
        s.results, s.rejected, s.seconds
    ));
    let mut numeric: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in results {
        for (k, v) in r {
            if let Some(x) = v.as_f64() {
                numeric.entry(k.clone()).or_default().push(x);
            }
        }
    }
    if !numeric.is_empty() {
        html.push_str("<h2>Result distributions</h2>");
        for (k, v) in numeric.iter().take(6) {
            html.push_str(&histogram_svg(k, v));
        }
    }
    if let Some(first) = results.first() {
        let cols: Vec<&String> = first.keys().collect();
        html.push_str("<h2>Results</h2><table><tr>");
        for c in &cols {
            html.push_str(&format!("<th>{}</th>", esc(c)));
        }
        html.push_str("</tr>");
        for r in results.iter().take(50) {
            html.push_str("<tr>");
            for c in &cols {
                html.push_str(&format!("<td>{}</td>", esc(&r.get(*c).map(plain).unwrap_or_default())));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}
