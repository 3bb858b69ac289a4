//! The run report: `report.html` of a `medtrain train` run, one self-contained page for researchers and
//! the data-release reviewer. The training loop fills a [`ReportData`]; [`render`] turns it into HTML with
//! inline CSS and inline SVG plots: no script, no font, no URL of any kind, so the page opens offline and
//! can be attached to a release request as it is. A Content-Security-Policy that forbids every fetch and
//! every script backs this up should a future edit slip.
//!
//! Every string that comes from `ReportData` is HTML-escaped: the config, site names and metric names are
//! free text. Non-finite numbers are skipped, and an empty series draws "no data" instead of an axis
//! without a line, so a short or failed run still gives a readable page.

use std::fmt::Write;

/// One bin of the reliability diagram: (lo, hi, mean predicted, observed, count text e.g. "57" or "<10");
/// the two means are `None` where the bin is suppressed.
pub type ReliabilityBin = (f64, f64, Option<f64>, Option<f64>, String);

/// What the report shows, filled by the training loop. Counts and per-site rows arrive already formatted
/// and suppressed (the report does not see the raw counts, so it cannot leak them).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReportData {
    /// e.g. "medtrain run 2026-11-29T15:30:00Z"
    pub title: String,
    pub run_dir: String,
    /// e.g. "lab transformer (mean) + pretrained BERT (cls), binary head, 1.2M trainable of 23M weights"
    pub model_summary: String,
    /// "binary" | "multiclass" | "regression"
    pub head: String,
    /// (step, training loss)
    pub loss: Vec<(u64, f64)>,
    /// (step, metric name on the tuning split e.g. "auroc", value)
    pub eval: Vec<(u64, String, f64)>,
    /// (step, epsilon spent)
    pub epsilon: Vec<(u64, f64)>,
    /// held-out ROC as (fpr, tpr); empty if the head is not binary
    pub roc: Vec<(f64, f64)>,
    /// held-out calibration bins; see [`ReliabilityBin`]
    pub reliability: Vec<ReliabilityBin>,
    /// held-out metrics as display rows: ("AUROC", "0.842"), ("n", "<10") ...
    pub metrics: Vec<(String, String)>,
    /// per-site rows, already formatted and suppressed, in the order of `site_header`
    pub sites: Vec<Vec<String>>,
    pub site_header: Vec<String>,
    /// ("epsilon", "2.97"), ("delta", "1e-5"), ("accountant", "PLD") ...
    pub privacy: Vec<(String, String)>,
    /// statements shown first, e.g. "Held-out metrics are not covered by the DP guarantee."
    pub notes: Vec<String>,
    /// the config as resolved
    pub config_toml: String,
    pub fingerprint: String,
}

/// The whole page. Pure: the caller writes it to `report.html`.
pub fn render(d: &ReportData) -> String {
    let mut page = String::with_capacity(64 * 1024 + d.config_toml.len());
    let title = if d.title.is_empty() { "medtrain run" } else { &d.title };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(title)
    );

    let _ = write!(page, "<header>\n<h1>{}</h1>\n", esc(title));
    if !d.model_summary.is_empty() {
        let _ = writeln!(page, "<p class=\"summary\">{}</p>", esc(&d.model_summary));
    }
    let _ = write!(
        page,
        "<dl class=\"run\"><dt>Run directory</dt><dd><code>{}</code></dd><dt>Head</dt><dd>{}</dd></dl>\n</header>\n",
        esc(&d.run_dir),
        esc(&d.head)
    );

    page.push_str("<section class=\"notes\" aria-label=\"Notes\">\n<h2>Read this first</h2>\n");
    if d.notes.is_empty() {
        page.push_str("<p>No notes were recorded for this run.</p>\n");
    } else {
        page.push_str("<ul>\n");
        for note in &d.notes {
            let _ = writeln!(page, "<li>{}</li>", esc(note));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</section>\n");

    page.push_str("<section>\n<div class=\"cols\">\n<div>\n<h2>Held-out metrics</h2>\n");
    page.push_str(&pairs_table("Held-out metrics", ("Metric", "Value"), &d.metrics));
    page.push_str("</div>\n<div>\n<h2>Privacy guarantee</h2>\n");
    page.push_str(&pairs_table("Privacy guarantee", ("Quantity", "Value"), &d.privacy));
    page.push_str("</div>\n</div>\n</section>\n");

    page.push_str("<section>\n<h2>Training</h2>\n<div class=\"cols\">\n");
    page.push_str(&loss_figure(&d.loss));
    page.push_str(&eval_figure(&d.eval));
    page.push_str(&epsilon_figure(&d.epsilon));
    page.push_str("</div>\n</section>\n");

    page.push_str("<section>\n<h2>Held-out evaluation</h2>\n<div class=\"cols\">\n");
    page.push_str(&roc_figure(&d.roc, &d.head));
    page.push_str(&reliability_figure(&d.reliability));
    page.push_str("</div>\n</section>\n");

    page.push_str("<section>\n<h2>Per-site benchmarking</h2>\n");
    page.push_str(&sites_table(&d.site_header, &d.sites));
    page.push_str("</section>\n");

    let _ = write!(
        page,
        "<section>\n<h2>Configuration (as resolved)</h2>\n<pre class=\"config\">\n{}</pre>\n</section>\n",
        esc(&d.config_toml)
    );
    let _ = write!(
        page,
        "<section>\n<h2>Fingerprint</h2>\n<table class=\"pairs\" aria-label=\"Fingerprint\"><tbody>\
         <tr><th scope=\"row\">Fingerprint</th><td class=\"fingerprint\"><code>{}</code></td></tr></tbody></table>\n</section>\n",
        esc(&d.fingerprint)
    );
    page.push_str(
        "<footer>Written by medtrain. This page is self-contained: no scripts, no external resources.</footer>\n\
         </main>\n</body>\n</html>\n",
    );
    page
}

/// Escapes text for element content and for quoted attribute values alike.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = "
:root{color-scheme:light;--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--bg:#f5f6f8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 20px 40px}
h1{font-size:1.6rem;margin:0 0 4px;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:0 0 10px}
header .summary{margin:0 0 8px;color:var(--muted)}
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dl.run dt{color:var(--muted)}dl.run dd{margin:0;overflow-wrap:anywhere}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:16px 0}
section.notes{background:#fff7e0;border:1px solid #e6b84d;border-left:6px solid #c77700}
section.notes ul{margin:0;padding-left:1.2em}section.notes li{margin:2px 0;font-weight:500}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:20px 28px}
figure{margin:0}
figcaption{font-weight:600;margin-bottom:4px}
figcaption span{font-weight:400;color:var(--muted)}
svg{display:block;width:100%;height:auto}
svg text{font-family:inherit;font-size:12px;fill:var(--muted)}
svg .grid{stroke:#eceef2;stroke-width:1}
svg .frame{fill:none;stroke:#9aa1ad;stroke-width:1}
svg .tick{stroke:#9aa1ad}
svg .diag{stroke:#9aa1ad;stroke-width:1.2;stroke-dasharray:5 4}
svg text.label{fill:var(--fg);font-size:13px}
svg text.nodata{font-size:16px}
svg text.small{font-size:10.5px}
svg text.suppressed{font-size:11px;fill:#6b5a2e}
ul.legend{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px;
font-size:13px;color:var(--muted)}
ul.legend li{display:flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:18px;height:4px;border-radius:2px}
.swatch.dot{width:9px;height:9px;border-radius:50%}
.swatch.box{width:12px;height:12px;border-radius:2px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #b9bfca;font-weight:600}
tbody th{font-weight:500}
table.sites td,table.sites th{text-align:right;white-space:nowrap}
table.sites td:first-child,table.sites th:first-child{text-align:left;white-space:normal}
p.nodata{color:var(--muted);margin:0}
pre.config{margin:0;padding:12px 14px;background:#f3f4f7;border-radius:6px;overflow:auto;white-space:pre-wrap;
overflow-wrap:anywhere;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace;font-size:.92em}
td.fingerprint{overflow-wrap:anywhere;word-break:break-all}
footer{color:var(--muted);font-size:13px;text-align:center}
@media print{body{background:#fff}main{max-width:none}section{break-inside:avoid}}
";

// ---- tables -----------------------------------------------------------------------------------------

fn pairs_table(label: &str, header: (&str, &str), rows: &[(String, String)]) -> String {
    if rows.is_empty() {
        return "<p class=\"nodata\">no data</p>\n".to_string();
    }
    let mut t = format!(
        "<table class=\"pairs\" aria-label=\"{}\"><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>\n",
        esc(label),
        header.0,
        header.1
    );
    for (name, value) in rows {
        let _ = writeln!(t, "<tr><th scope=\"row\">{}</th><td>{}</td></tr>", esc(name), esc(value));
    }
    t.push_str("</tbody></table>\n");
    t
}

fn sites_table(header: &[String], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=\"nodata\">no data</p>\n".to_string();
    }
    // Rows shorter than the header are padded so the columns stay aligned; longer rows keep their cells.
    let width = rows.iter().map(Vec::len).chain([header.len()]).max().unwrap_or(0);
    let mut t = String::from("<div class=\"table-wrap\"><table class=\"sites\" aria-label=\"Per-site benchmarking\">");
    if !header.is_empty() {
        t.push_str("<thead><tr>");
        for i in 0..width {
            let _ = write!(t, "<th scope=\"col\">{}</th>", esc(header.get(i).map_or("", String::as_str)));
        }
        t.push_str("</tr></thead>");
    }
    t.push_str("<tbody>\n");
    for row in rows {
        t.push_str("<tr>");
        for i in 0..width {
            let _ = write!(t, "<td>{}</td>", esc(row.get(i).map_or("", String::as_str)));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody></table></div>\n");
    t
}

// ---- figures ----------------------------------------------------------------------------------------

const LOSS_RAW: &str = "#a9c6e8";
const LOSS_MEAN: &str = "#1f5fa8";
const EPSILON: &str = "#6a3d9a";
const ROC: &str = "#b2182b";
const RELIABILITY_BAR: &str = "#cfe8df";
const RELIABILITY_POINT: &str = "#1b7a5a";
const SUPPRESSED_FILL: &str = "#f4ecd6";
/// The stroke of `svg .diag` in the CSS.
const DIAGONAL: &str = "#9aa1ad";
/// One colour per tuning metric, in order of first appearance (Okabe-Ito, blue left out for the loss).
const METRIC_COLOURS: [&str; 8] =
    ["#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#6a3d9a", "#8c564b", "#333333"];

/// A captioned plot; `legend` is (swatch HTML, plain-text name), the name escaped here.
fn figure(caption: &str, svg: &str, legend: &[(String, String)]) -> String {
    let mut f = format!("<figure>\n<figcaption>{caption}</figcaption>\n{svg}");
    if !legend.is_empty() {
        f.push_str("<ul class=\"legend\">");
        for (swatch, name) in legend {
            let _ = write!(f, "<li>{swatch}{}</li>", esc(name));
        }
        f.push_str("</ul>\n");
    }
    f.push_str("</figure>\n");
    f
}

fn line_swatch(colour: &str) -> String {
    format!("<span class=\"swatch\" style=\"background:{colour}\"></span>")
}

fn finite_steps(series: &[(u64, f64)]) -> Vec<(f64, f64)> {
    series.iter().map(|&(s, v)| (s as f64, v)).filter(|&(_, v)| v.is_finite()).collect()
}

fn loss_figure(loss: &[(u64, f64)]) -> String {
    let points = finite_steps(loss);
    let caption = "Training loss";
    if points.is_empty() {
        return figure(caption, &no_data_svg(caption, "no data"), &[]);
    }
    // DP training loss is noisy: a trailing mean over ~1/25 of the run is drawn over the raw points.
    let window = (points.len() / 25).max(1);
    let smooth = points.len() >= 50;
    let mut series = vec![Line { colour: LOSS_RAW, width: if smooth { 1.2 } else { 2.0 }, points: points.clone() }];
    let mut legend = vec![(line_swatch(LOSS_RAW), "loss per logged step".to_string())];
    if smooth {
        series.push(Line { colour: LOSS_MEAN, width: 2.4, points: trailing_mean(&points, window) });
        legend.push((line_swatch(LOSS_MEAN), format!("mean of the last {window} logged values")));
    }
    let frame = Frame::fit(&series, false, "step", "training loss");
    let svg = line_svg(caption, &frame, &series);
    figure(caption, &svg, &legend)
}

fn trailing_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(points.len());
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= window {
            sum -= points[i - window].1;
        }
        out.push((x, sum / (i + 1).min(window) as f64));
    }
    out
}

fn eval_figure(eval: &[(u64, String, f64)]) -> String {
    let caption = "Tuning-set metrics";
    let mut names: Vec<&str> = Vec::new();
    let mut series: Vec<Line> = Vec::new();
    for (step, name, value) in eval {
        if !value.is_finite() {
            continue;
        }
        let i = match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                names.push(name);
                let colour = METRIC_COLOURS[(names.len() - 1) % METRIC_COLOURS.len()];
                series.push(Line { colour, width: 2.0, points: Vec::new() });
                names.len() - 1
            }
        };
        series[i].points.push((*step as f64, *value));
    }
    if series.is_empty() {
        return figure(caption, &no_data_svg(caption, "no data"), &[]);
    }
    for line in &mut series {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let frame = Frame::fit(&series, false, "step", "metric on the tuning split");
    let svg = line_svg(caption, &frame, &series);
    let swatches: Vec<String> = series.iter().map(|l| line_swatch(l.colour)).collect();
    let legend: Vec<(String, String)> = swatches.into_iter().zip(&names).map(|(s, n)| (s, n.to_string())).collect();
    figure(caption, &svg, &legend)
}

fn epsilon_figure(epsilon: &[(u64, f64)]) -> String {
    let caption = "Privacy budget spent";
    let points = finite_steps(epsilon);
    if points.is_empty() {
        return figure(caption, &no_data_svg(caption, "no data"), &[]);
    }
    let series = [Line { colour: EPSILON, width: 2.2, points }];
    let frame = Frame::fit(&series, true, "step", "epsilon spent");
    figure(caption, &line_svg(caption, &frame, &series), &[])
}

fn roc_figure(roc: &[(f64, f64)], head: &str) -> String {
    let caption = "ROC curve <span>(held-out)</span>";
    let points: Vec<(f64, f64)> = roc.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if points.is_empty() {
        let why = if head.is_empty() || head == "binary" {
            "no data".to_string()
        } else {
            format!("no data (ROC is drawn for binary heads; this head is {head})")
        };
        return figure(caption, &no_data_svg("ROC curve", &why), &[]);
    }
    let frame = Frame::unit(UNIT_W, UNIT_H, "false positive rate", "true positive rate");
    let mut svg = frame.open("ROC curve");
    svg.push_str(&frame.diagonal());
    svg.push_str(&polyline(&frame, &points, ROC, 2.4));
    svg.push_str("</svg>\n");
    let legend = [(line_swatch(ROC), "model".to_string()), (line_swatch(DIAGONAL), "chance".to_string())];
    figure(caption, &svg, &legend)
}

fn reliability_figure(bins: &[ReliabilityBin]) -> String {
    let caption = "Reliability diagram <span>(held-out)</span>";
    let bins: Vec<_> = bins.iter().filter(|b| b.0.is_finite() && b.1.is_finite() && b.1 > b.0).collect();
    if bins.is_empty() {
        return figure(caption, &no_data_svg("Reliability diagram", "no data"), &[]);
    }
    let frame = Frame::unit(UNIT_W, UNIT_H, "mean predicted probability", "observed frequency");
    let mut svg = frame.open("Reliability diagram");
    let mut centres = Vec::new();
    let mut any_suppressed = false;
    for (lo, hi, predicted, observed, count) in &bins {
        let (x0, x1) = (frame.px(lo.clamp(0.0, 1.0)), frame.px(hi.clamp(0.0, 1.0)));
        let (xm, w) = ((x0 + x1) / 2.0, (x1 - x0 - 2.0).max(0.5));
        match observed {
            Some(obs) if obs.is_finite() => {
                let y = frame.py(obs.clamp(0.0, 1.0));
                let _ = writeln!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{RELIABILITY_BAR}\" stroke=\"#9cc9b8\"/>",
                    x0 + 1.0,
                    frame.py(0.0) - y
                );
                if let Some(p) = predicted.filter(|p| p.is_finite()) {
                    centres.push((p.clamp(0.0, 1.0), obs.clamp(0.0, 1.0)));
                }
            }
            Some(_) => {}
            None => {
                any_suppressed = true;
                let (top, bottom) = (frame.py(1.0), frame.py(0.0));
                let _ = writeln!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{SUPPRESSED_FILL}\" stroke=\"#d9c58f\" stroke-dasharray=\"3 3\"/>\
                     <text class=\"suppressed\" transform=\"translate({xm:.1},{:.1}) rotate(-90)\" text-anchor=\"middle\" dominant-baseline=\"middle\">suppressed</text>",
                    x0 + 1.0,
                    bottom - top,
                    (top + bottom) / 2.0
                );
            }
        }
        let _ = writeln!(
            svg,
            "<text class=\"small\" x=\"{xm:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            frame.py(1.0) - 5.0,
            esc(count)
        );
    }
    svg.push_str(&frame.diagonal());
    centres.sort_by(|a, b| a.0.total_cmp(&b.0));
    if centres.len() > 1 {
        svg.push_str(&polyline(&frame, &centres, RELIABILITY_POINT, 1.6));
    }
    for (x, y) in &centres {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{RELIABILITY_POINT}\" stroke=\"#fff\" stroke-width=\"1.2\"/>",
            frame.px(*x),
            frame.py(*y)
        );
    }
    svg.push_str("</svg>\n");
    let mut legend = vec![
        (
            format!("<span class=\"swatch box\" style=\"background:{RELIABILITY_BAR}\"></span>"),
            "observed frequency per bin",
        ),
        (
            format!("<span class=\"swatch dot\" style=\"background:{RELIABILITY_POINT}\"></span>"),
            "observed vs mean predicted",
        ),
        (line_swatch(DIAGONAL), "perfect calibration"),
    ];
    if any_suppressed {
        legend.push((
            format!("<span class=\"swatch box\" style=\"background:{SUPPRESSED_FILL}\"></span>"),
            "suppressed bin (count too small to show)",
        ));
    }
    let legend: Vec<(String, String)> = legend.into_iter().map(|(s, n)| (s, n.to_string())).collect();
    let mut fig = figure(caption, &svg, &legend);
    let note = "<p class=\"nodata\"><small>Numbers above the bins are the counts per bin.</small></p>\n";
    fig.insert_str(fig.len() - "</figure>\n".len(), note);
    fig
}

// ---- plotting ---------------------------------------------------------------------------------------

const PLOT_W: f64 = 520.0;
const PLOT_H: f64 = 300.0;
const UNIT_W: f64 = 520.0;
const UNIT_H: f64 = 380.0;
const MARGIN_LEFT: f64 = 62.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 20.0;
const MARGIN_BOTTOM: f64 = 46.0;

struct Line {
    colour: &'static str,
    width: f64,
    points: Vec<(f64, f64)>,
}

/// One axis: its domain after rounding out to whole ticks, and the ticks.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
    label: &'static str,
}

impl Axis {
    /// Ticks at 1, 2 or 5 times a power of ten, about five of them, covering `[lo, hi]`.
    fn nice(mut lo: f64, mut hi: f64, label: &'static str) -> Axis {
        if hi <= lo {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            lo -= pad;
            hi += pad;
        }
        let raw = hi / 5.0 - lo / 5.0; // not (hi - lo) / 5, which overflows for values near f64::MAX
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = magnitude
            * match raw / magnitude {
                r if r < 1.5 => 1.0,
                r if r < 3.0 => 2.0,
                r if r < 7.0 => 5.0,
                _ => 10.0,
            };
        let first = (lo / step).floor();
        let count = ((hi / step).ceil() - first).round().max(1.0) as usize;
        let ticks: Vec<f64> = (0..=count).map(|i| (first + i as f64) * step + 0.0).collect();
        if !(step > 0.0 && ticks.iter().all(|t| t.is_finite())) {
            // values so far apart (or so close) that no tick grid fits: just the ends
            return Axis { lo, hi, ticks: vec![lo, hi], decimals: 3, label };
        }
        let decimals = if step >= 1.0 { 0 } else { (-step.log10() - 1e-9).ceil().clamp(0.0, 12.0) as usize };
        Axis { lo: ticks[0], hi: ticks[count], ticks, decimals, label }
    }

    fn unit(label: &'static str) -> Axis {
        Axis { lo: 0.0, hi: 1.0, ticks: (0..=5).map(|i| i as f64 / 5.0).collect(), decimals: 1, label }
    }

    fn format(&self, v: f64) -> String {
        let v = v + 0.0; // no "-0"
        if v.abs() >= 1e9 {
            return format!("{v:.2e}");
        }
        if self.decimals == 0 && v.abs() >= 10_000.0 && (v / 1000.0).fract() == 0.0 {
            return format!("{}k", v / 1000.0);
        }
        format!("{v:.*}", self.decimals)
    }
}

struct Frame {
    width: f64,
    height: f64,
    x: Axis,
    y: Axis,
}

impl Frame {
    fn fit(series: &[Line], y_from_zero: bool, x_label: &'static str, y_label: &'static str) -> Frame {
        let all = series.iter().flat_map(|l| l.points.iter());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in all {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if y_from_zero {
            y_lo = y_lo.min(0.0);
        }
        Frame { width: PLOT_W, height: PLOT_H, x: Axis::nice(x_lo, x_hi, x_label), y: Axis::nice(y_lo, y_hi, y_label) }
    }

    fn unit(width: f64, height: f64, x_label: &'static str, y_label: &'static str) -> Frame {
        Frame { width, height, x: Axis::unit(x_label), y: Axis::unit(y_label) }
    }

    fn px(&self, x: f64) -> f64 {
        let span = self.width - MARGIN_LEFT - MARGIN_RIGHT;
        MARGIN_LEFT + fraction(x, self.x.lo, self.x.hi) * span
    }

    fn py(&self, y: f64) -> f64 {
        let span = self.height - MARGIN_TOP - MARGIN_BOTTOM;
        self.height - MARGIN_BOTTOM - fraction(y, self.y.lo, self.y.hi) * span
    }

    /// The opening tag, grid, ticks, tick labels and axis labels.
    fn open(&self, name: &str) -> String {
        let (left, right, top, bottom) =
            (self.px(self.x.lo), self.px(self.x.hi), self.py(self.y.hi), self.py(self.y.lo));
        let mut s = format!(
            "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{name}\"><title>{name}</title>\n",
            w = self.width,
            h = self.height,
            name = esc(name)
        );
        for &t in &self.x.ticks {
            let x = self.px(t);
            let _ = writeln!(
                s,
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>\
                 <line class=\"tick\" x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom + 5.0,
                bottom + 18.0,
                self.x.format(t)
            );
        }
        for &t in &self.y.ticks {
            let y = self.py(t);
            let _ = writeln!(
                s,
                "<line class=\"grid\" x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\"/>\
                 <line class=\"tick\" x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{left:.1}\" y2=\"{y:.1}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left - 5.0,
                left - 8.0,
                y + 4.0,
                self.y.format(t)
            );
        }
        let _ = writeln!(
            s,
            "<rect class=\"frame\" x=\"{left:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>\
             <text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text class=\"label\" transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            right - left,
            bottom - top,
            (left + right) / 2.0,
            self.height - 8.0,
            self.x.label,
            (top + bottom) / 2.0,
            self.y.label
        );
        s
    }

    fn diagonal(&self) -> String {
        format!(
            "<line class=\"diag\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\n",
            self.px(0.0),
            self.py(0.0),
            self.px(1.0),
            self.py(1.0)
        )
    }
}

/// Where `v` lies between `lo` and `hi`, halved first so that spans near f64::MAX do not overflow.
fn fraction(v: f64, lo: f64, hi: f64) -> f64 {
    (v * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)
}

fn polyline(frame: &Frame, points: &[(f64, f64)], colour: &str, width: f64) -> String {
    let mut s = format!(
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\""
    );
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{:.1},{:.1}", frame.px(x), frame.py(y));
    }
    s.push_str("\"/>\n");
    s
}

fn line_svg(name: &str, frame: &Frame, series: &[Line]) -> String {
    let mut s = frame.open(name);
    for line in series {
        s.push_str(&polyline(frame, &line.points, line.colour, line.width));
        // Sparse series (a few evaluations) get markers so single points are visible.
        if line.points.len() <= 40 {
            for &(x, y) in &line.points {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.2\" fill=\"{}\"/>",
                    frame.px(x),
                    frame.py(y),
                    line.colour
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

fn no_data_svg(name: &str, message: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {PLOT_W} 160\" role=\"img\" aria-label=\"{name}: {msg}\"><title>{name}</title>\
         <rect x=\"1\" y=\"1\" width=\"{}\" height=\"158\" rx=\"6\" fill=\"#fafbfc\" stroke=\"#d9dde5\" stroke-dasharray=\"4 4\"/>\
         <text class=\"nodata\" x=\"{}\" y=\"85\" text-anchor=\"middle\">{msg}</text></svg>\n",
        PLOT_W - 2.0,
        PLOT_W / 2.0,
        name = esc(name),
        msg = esc(message)
    )
}
