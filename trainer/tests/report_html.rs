//! `report.html` (train/report.rs): every string escaped, no script and no URL in the page, "no data" for
//! empty series, non-finite values skipped; then the page is opened in headless Chromium, which must log no
//! console message, keep the five plots and the tables in its DOM, and paint the plots (the screenshot is
//! decoded and the loss curve looked for).
//!
//! Chromium comes from scripts/ensure-chromium.sh (scripts/test.sh runs it). Without a browser the
//! browser half prints a notice and passes, unless `MEDTRAIN_REQUIRE_BROWSER=1` (what scripts/test.sh sets
//! when Chromium is there): then it fails. `MEDTRAIN_REPORT_OUT=DIR` keeps the page and screenshot in DIR.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medtrain::train::report::{render, ReportData};

const SCRIPT_IN_CONFIG: &str = "<script>alert(1)</script>";

/// A run as the training loop would report it: 350 logged losses over 1400 steps, two tuning metrics every
/// 100 steps, a binary head's ROC, ten reliability bins with the top one suppressed, three sites.
fn realistic() -> ReportData {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let loss = (1..=350u64)
        .map(|i| {
            let step = i * 4;
            (step, 0.36 + 0.33 * (-(step as f64) / 350.0).exp() + 0.06 * noise())
        })
        .collect();
    let mut eval = Vec::new();
    for step in (100..=1400u64).step_by(100) {
        let t = step as f64 / 1400.0;
        eval.push((step, "auroc".to_string(), 0.62 + 0.22 * t.sqrt() + 0.01 * noise()));
        eval.push((step, "auprc".to_string(), 0.21 + 0.17 * t.sqrt() + 0.01 * noise()));
    }
    let epsilon = (0..=28u64).map(|i| (i * 50, 2.97 * (i as f64 / 28.0).sqrt())).collect();
    let roc = (0..=60).map(|i| i as f64 / 60.0).map(|fpr| (fpr, 1.0 - (1.0 - fpr).powf(3.1))).collect();
    let mut reliability: Vec<_> = (0..9)
        .map(|b| {
            let (lo, hi) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
            let predicted = lo + 0.05;
            let count = [412, 388, 301, 240, 177, 121, 84, 51, 23][b];
            (lo, hi, Some(predicted), Some(0.9 * predicted + 0.02), count.to_string())
        })
        .collect();
    reliability.push((0.9, 1.0, None, None, "<10".to_string()));
    let pairs = |rows: &[(&str, &str)]| rows.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ReportData {
        title: "medtrain run 2026-11-29T15:30:00Z".into(),
        run_dir: "/srv/medtrain/runs/2026-11-29T15-30-00Z".into(),
        model_summary: "lab transformer (mean) + pretrained BERT (cls), binary head, 1.2M trainable of 23M weights"
            .into(),
        head: "binary".into(),
        loss,
        eval,
        epsilon,
        roc,
        reliability,
        metrics: pairs(&[
            ("AUROC", "0.842"),
            ("AUPRC", "0.391"),
            ("Brier score", "0.071"),
            ("calibration slope", "0.93"),
            ("n", "1,807"),
            ("positives", "<10"),
        ]),
        site_header: ["site", "n", "positives", "AUROC", "O", "E", "O/E", "95% CI"].map(String::from).to_vec(),
        sites: vec![
            ["Site A & B <north>", "1,204", "187", "0.851", "187", "172.4", "1.08", "0.94–1.25"]
                .map(String::from)
                .to_vec(),
            ["site-c", "873", "96", "0.829", "96", "101.9", "0.94", "0.77–1.15"].map(String::from).to_vec(),
            ["site-d", "<10", "<10", "suppressed", "<10", "—", "—", "—"].map(String::from).to_vec(),
        ],
        privacy: pairs(&[
            ("epsilon", "2.97"),
            ("delta", "1e-5"),
            ("accountant", "PLD"),
            ("noise multiplier", "1.1"),
            ("sample rate", "0.0043"),
            ("steps", "1400"),
            ("clip norm", "1.0"),
            ("privacy unit", "subject (patient)"),
        ]),
        notes: vec![
            "Held-out metrics are not covered by the DP guarantee.".into(),
            "Counts below 10 are shown as <10.".into(),
        ],
        config_toml: format!(
            "[data]\nprepared = \"/srv/medtrain/prepared\"\nlabel = \"readmission_30d\"\n\n[privacy]\nepsilon = 3.0\n\
             delta = 1e-5\nclip_norm = 1.0\nunit = \"subject\"\n\n[model]\nlabs = \"transformer\"\ntext = \"bert\"\n\
             # a comment that says {SCRIPT_IN_CONFIG}\n"
        ),
        fingerprint: "sha256:5f0c9a8e4b7d2c1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e".into(),
    }
}

/// The tags of the page: every raw `<` opens one (escaped text has none), up to the next `>`.
fn tags(html: &str) -> Vec<&str> {
    html.split('<').skip(1).map(|rest| &rest[..rest.find('>').unwrap_or(rest.len())]).collect()
}

/// The attributes of one tag as (lowercased name, value), quoted values read to their closing quote.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut chars = tag.chars().skip_while(|c| !c.is_whitespace()).peekable();
    let mut found = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == '/').is_some() {}
        let name: String = chars.by_ref().take_while(|c| *c != '=' && !c.is_whitespace()).collect();
        if name.is_empty() {
            return found;
        }
        let value: String = match chars.peek() {
            Some(&q) if q == '"' || q == '\'' => {
                chars.next();
                chars.by_ref().take_while(|c| *c != q).collect()
            }
            _ => chars.by_ref().take_while(|c| !c.is_whitespace()).collect(),
        };
        found.push((name.to_ascii_lowercase(), value));
    }
}

/// Values of the attributes that make a browser fetch or navigate.
fn link_attributes(html: &str) -> Vec<String> {
    let links = ["src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background"];
    tags(html).into_iter().flat_map(attributes).filter(|(n, _)| links.contains(&n.as_str())).map(|(_, v)| v).collect()
}

#[test]
fn report_has_no_script_and_no_url_and_escapes_the_config() {
    let html = render(&realistic());
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a <script> tag in the page");
    assert!(tags(&html).iter().all(|t| !t.to_ascii_lowercase().starts_with("script")));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the config's script is not shown escaped");
    assert!(!lower.contains("http://") && !lower.contains("https://"), "a URL in the page");
    let links = link_attributes(&html);
    assert!(links.iter().all(|v| !v.contains("//")), "URL references: {links:?}");
    assert!(!lower.contains("url(") && !lower.contains("@import"), "a CSS reference in the page");
    let handlers: Vec<&str> =
        tags(&html).into_iter().filter(|t| attributes(t).iter().any(|(n, _)| n.starts_with("on"))).collect();
    assert!(handlers.is_empty(), "event handlers: {handlers:?}");
    // the contents: five plots, the tables, the notes and the figures' labels
    assert_eq!(html.matches("<svg").count(), 5);
    for label in ["Held-out metrics", "Privacy guarantee", "Per-site benchmarking", "Fingerprint"] {
        assert!(
            html.contains(&format!("<table class=\"pairs\" aria-label=\"{label}\""))
                || html.contains(&format!("<table class=\"sites\" aria-label=\"{label}\"")),
            "no {label} table"
        );
    }
    assert!(html.contains("<li>Counts below 10 are shown as &lt;10.</li>"));
    assert!(html.contains("<li>Held-out metrics are not covered by the DP guarantee.</li>"));
    assert!(html.contains("Site A &amp; B &lt;north&gt;"));
    assert!(html.contains(">suppressed</text>"), "the suppressed reliability bin is not labelled");
    assert!(html.contains(">auroc</li>") && html.contains(">auprc</li>"), "one legend entry per tuning metric");
    assert!(!html.contains("no data"), "a plot of the full run says no data");
}

#[test]
fn every_string_field_is_escaped() {
    let evil = "<img src=//evil.example/x onerror=alert(1)>\"'&";
    let escaped = "&lt;img src=//evil.example/x onerror=alert(1)&gt;&quot;&#39;&amp;";
    let s = || evil.to_string();
    let d = ReportData {
        title: s(),
        run_dir: s(),
        model_summary: s(),
        head: s(),
        eval: vec![(1, s(), 0.5), (2, s(), 0.6)],
        reliability: vec![(0.0, 0.5, Some(0.3), Some(0.2), s()), (0.5, 1.0, None, None, s())],
        metrics: vec![(s(), s())],
        sites: vec![vec![s(), s()]],
        site_header: vec![s(), s()],
        privacy: vec![(s(), s())],
        notes: vec![s()],
        config_toml: s(),
        fingerprint: s(),
        ..Default::default()
    };
    let html = render(&d);
    assert!(!html.contains(evil) && !html.contains("<img"), "an unescaped string");
    // title (twice), run_dir, model_summary, head (in the ROC's "no data" reason), eval name (legend),
    // two bin counts, metric name and value, two site cells, two header cells, privacy name and value,
    // note, config, fingerprint
    assert!(html.matches(escaped).count() >= 19, "{} escaped copies", html.matches(escaped).count());
    assert!(link_attributes(&html).is_empty());
    // the checks above can fail: the same string unescaped is a tag with a link and a handler
    let raw = format!("<p>{evil}</p>");
    assert_eq!(link_attributes(&raw), ["//evil.example/x"]);
    assert!(tags(&raw).into_iter().flat_map(attributes).any(|(n, _)| n == "onerror"));
}

#[test]
fn empty_series_say_no_data_in_every_plot() {
    let html = render(&ReportData { title: "empty run".into(), head: "binary".into(), ..Default::default() });
    assert_eq!(html.matches("<svg").count(), 5, "a plot went missing");
    assert_eq!(html.matches(">no data</text>").count(), 5);
    assert!(!html.contains("<polyline"));
}

#[test]
fn non_finite_values_are_skipped() {
    let mut d = realistic();
    d.loss.push((1404, f64::NAN));
    d.loss.insert(10, (41, f64::INFINITY));
    d.eval.push((1500, "auroc".into(), f64::NEG_INFINITY));
    d.epsilon.push((1450, f64::NAN));
    d.roc.push((f64::NAN, 0.5));
    d.reliability[0].3 = Some(f64::NAN);
    d.reliability.push((f64::NAN, 1.0, Some(0.5), Some(0.5), "12".into()));
    let html = render(&d);
    for bad in ["NaN", "inf", "-inf"] {
        assert!(!html.split(['"', ',', ' ', '>', '<']).any(|token| token == bad), "{bad} in the page");
    }
    // the axes still come from the finite values only: the loss's x axis ends at its last finite step
    assert!(html.contains(">1400</text>") && !html.contains(">1600</text>"));

    // values at the ends of f64 still give an axis, not NaN coordinates
    let extreme = ReportData { loss: vec![(0, -f64::MAX), (1, f64::MAX), (2, 0.0)], ..Default::default() };
    let html = render(&extreme);
    assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    assert_eq!(html.matches(">no data</text>").count(), 4);

    // a series with nothing finite is empty
    let nothing = ReportData {
        loss: vec![(1, f64::NAN), (2, f64::INFINITY)],
        eval: vec![(1, "auroc".into(), f64::NAN)],
        epsilon: vec![(1, f64::NAN)],
        roc: vec![(f64::NAN, f64::NAN)],
        reliability: vec![(f64::NAN, f64::NAN, None, None, "<10".into())],
        ..Default::default()
    };
    assert_eq!(render(&nothing).matches(">no data</text>").count(), 5);
}

// ---- in the browser ---------------------------------------------------------------------------------

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs `cmd` with a deadline (a hung browser fails the test instead of hanging it): (status ok, stdout, stderr).
fn run_with_deadline(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ran past {limit:?}: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

fn chromium(browser: &Path, work: &Path, mode: &str, page: &Path) -> (String, String) {
    let (ok, stdout, stderr) = run_with_deadline(
        Command::new(browser)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            .args(["--window-size=1280,3000", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check"])
            .arg(format!("--user-data-dir={}", work.join("profile").display()))
            .arg(mode)
            .arg(format!("file://{}", page.display()))
            .current_dir(work),
        Duration::from_secs(120),
    );
    assert!(ok, "chromium {mode} failed: {stderr}");
    (stdout, stderr)
}

/// Lines where Chromium reports what the page did: console messages, uncaught errors, CSP refusals.
fn page_complaints(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Refused to")).collect()
}

struct Screenshot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode_png(path: &Path) -> Screenshot {
    let mut decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "screenshot is {:?}", info.color_type);
    let rgb = buf[..info.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect();
    Screenshot { width: info.width as usize, height: info.height as usize, rgb }
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = find_chromium() else {
        if std::env::var("MEDTRAIN_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("no chromium on PATH and MEDTRAIN_REQUIRE_BROWSER=1: run scripts/ensure-chromium.sh");
        }
        eprintln!("report_renders_in_headless_chromium: no chromium on PATH, browser check skipped");
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("MEDTRAIN_REPORT_OUT").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&out).unwrap();
    let out = out.canonicalize().unwrap();
    let page = out.join("report.html");
    std::fs::write(&page, render(&realistic())).unwrap();

    // The console check must be able to fail: a page that logs an error shows up in stderr.
    let control = temp.path().join("control.html");
    std::fs::write(&control, "<!DOCTYPE html><title>c</title><script>console.error('control-message')</script>")
        .unwrap();
    let (_, stderr) = chromium(&browser, temp.path(), "--dump-dom", &control);
    assert!(
        page_complaints(&stderr).iter().any(|l| l.contains("control-message")),
        "chromium did not log the control page's console error, so the check below would see nothing: {stderr}"
    );

    let (dom, stderr) = chromium(&browser, temp.path(), "--dump-dom", &page);
    assert!(page_complaints(&stderr).is_empty(), "the page made chromium complain: {:?}", page_complaints(&stderr));
    assert_eq!(dom.matches("<svg").count(), 5, "the DOM has not five plots");
    assert_eq!(dom.matches("<polyline").count(), 7, "loss (2), tuning metrics (2), epsilon, ROC, reliability");
    assert_eq!(dom.matches("<table").count(), 4, "metrics, privacy, sites and fingerprint tables");
    assert_eq!(dom.matches("<tr>").count(), (6 + 1) + (8 + 1) + (3 + 1) + 1, "table rows with the header rows");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !dom.contains("<script"));

    let shot = out.join("report.png");
    let (_, stderr) = chromium(&browser, temp.path(), &format!("--screenshot={}", shot.display()), &page);
    assert!(page_complaints(&stderr).is_empty(), "the page made chromium complain: {:?}", page_complaints(&stderr));
    let bytes = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(bytes > 20_000, "screenshot {} is {bytes} bytes", shot.display());
    let image = decode_png(&shot);
    assert_eq!((image.width, image.height), (1280, 3000));

    // The loss plot is found by its mean line (LOSS_MEAN, #1f5fa8, drawn nowhere else): it must run across
    // most of the plot, and the plot around it must be painted (axes, grid, labels, the raw loss).
    let near = |p: [u8; 3], q: [u8; 3]| p.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 12);
    let (mut x0, mut x1, mut y0, mut y1, mut count) = (usize::MAX, 0, usize::MAX, 0, 0);
    for (i, &p) in image.rgb.iter().enumerate() {
        if near(p, [0x1f, 0x5f, 0xa8]) {
            let (x, y) = (i % image.width, i / image.width);
            (x0, x1, y0, y1, count) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y), count + 1);
        }
    }
    assert!(count > 400, "{count} pixels of the loss curve");
    assert!(x1 - x0 > 300 && y1 - y0 > 60, "the loss curve spans {}x{} px", x1 - x0, y1 - y0);
    let mut colours = std::collections::HashSet::new();
    let mut painted = 0;
    let (rx0, rx1, ry0, ry1) =
        (x0.saturating_sub(60), (x1 + 10).min(image.width), y0.saturating_sub(10), (y1 + 50).min(image.height));
    for y in ry0..ry1 {
        for x in rx0..rx1 {
            let p = image.rgb[y * image.width + x];
            colours.insert(p);
            painted += usize::from(p != [255, 255, 255]);
        }
    }
    let area = (rx1 - rx0) * (ry1 - ry0);
    assert!(colours.len() > 50, "{} colours in the loss plot", colours.len());
    assert!(painted * 20 > area, "{painted} of {area} pixels painted in the loss plot");
    eprintln!("report_renders_in_headless_chromium: screenshot {} ({bytes} bytes)", shot.display());
}
