//! Evaluation of a run (the tuning metric over steps, the held-out metrics and per-site table) and
//! the data of its report.

use super::checkpoint;
use super::config::{TrainConfig, Unit};
use super::metrics;
use super::report::ReportData;
use super::run::{Picker, RunSummary, TrainError};
use super::Trainer;
use crate::data::prepared::SplitData;
use crate::model::{Head, Model};
use kernels::Backend;
use std::path::Path;

/// Predictions for examples `idx` of a split, in batches: per example, the model's outputs.
pub(crate) fn predict_split<B: Backend>(
    be: &B,
    tr: &mut Trainer<B, Box<dyn Model<B>>>,
    data: &SplitData,
    idx: &[usize],
    pick: &Picker,
    batch: usize,
) -> Result<Vec<f32>, TrainError> {
    let mut out = Vec::new();
    for chunk in idx.chunks(batch.max(1)) {
        let b = data.batch(chunk, pick.lab, pick.text, pick.targets)?.upload(be)?;
        out.extend(tr.predict(be, &b)?);
    }
    Ok(out)
}

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-(z as f64)).exp())
}

/// The tuning-split metric tracked over steps: AUROC, accuracy or RMSE.
pub(crate) fn tuning_metric<B: Backend>(
    be: &B,
    tr: &mut Trainer<B, Box<dyn Model<B>>>,
    data: &SplitData,
    pick: &Picker,
    head: Head,
    batch: usize,
) -> Result<Option<(&'static str, f64)>, TrainError> {
    if data.is_empty() {
        return Ok(None);
    }
    let all: Vec<usize> = (0..data.len()).collect();
    let out = predict_split(be, tr, data, &all, pick, batch)?;
    let labels: Vec<f32> = (0..data.len()).map(|i| data.label(i)).collect();
    Ok(match head {
        Head::Binary => {
            let p: Vec<f64> = out.iter().map(|&z| sigmoid(z)).collect();
            let y: Vec<bool> = labels.iter().map(|&v| v > 0.5).collect();
            metrics::binary(&p, &y).auroc.map(|v| ("auroc", v))
        }
        Head::Multiclass(k) => {
            let z: Vec<f64> = out.iter().map(|&v| v as f64).collect();
            let c: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
            metrics::multiclass(&z, k, &c).accuracy.map(|v| ("accuracy", v))
        }
        Head::Regression { .. } => {
            let z: Vec<f64> = out.iter().map(|&v| v as f64).collect();
            let y: Vec<f64> = labels.iter().map(|&v| v as f64).collect();
            metrics::regression(&z, &y).rmse.map(|v| ("rmse", v))
        }
    })
}

pub struct Evaluation {
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    pub json: serde_json::Value,
    pub sites: Vec<metrics::Site>,
    pub binary: Option<metrics::Binary>,
}

pub(crate) fn evaluate<B: Backend>(
    be: &B,
    tr: &mut Trainer<B, Box<dyn Model<B>>>,
    data: &SplitData,
    pick: &Picker,
    head: Head,
    batch: usize,
    site_names: &[String],
) -> Result<Evaluation, TrainError> {
    let all: Vec<usize> = (0..data.len()).collect();
    let out = predict_split(be, tr, data, &all, pick, batch)?;
    let labels: Vec<f32> = (0..data.len()).map(|i| data.label(i)).collect();
    Ok(match head {
        Head::Binary => {
            let p: Vec<f64> = out.iter().map(|&z| sigmoid(z)).collect();
            let y: Vec<bool> = labels.iter().map(|&v| v > 0.5).collect();
            let mut b = metrics::binary(&p, &y);
            let mut sites = if site_names.is_empty() {
                vec![]
            } else {
                let s: Vec<Option<u32>> = (0..data.len()).map(|i| data.site(i)).collect();
                metrics::per_site(&p, &y, &s, site_names)
            };
            // what leaves the node (metrics.json, the report, the release) safe together
            metrics::disclose(&mut b, &mut sites);
            Evaluation {
                auroc: b.auroc,
                auprc: b.auprc,
                json: serde_json::to_value(&b).unwrap_or_default(),
                sites,
                binary: Some(b),
            }
        }
        Head::Multiclass(k) => {
            let z: Vec<f64> = out.iter().map(|&v| v as f64).collect();
            let c: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
            let r = metrics::multiclass(&z, k, &c);
            Evaluation {
                auroc: None,
                auprc: None,
                json: serde_json::to_value(&r).unwrap_or_default(),
                sites: vec![],
                binary: None,
            }
        }
        Head::Regression { .. } => {
            let z: Vec<f64> = out.iter().map(|&v| v as f64).collect();
            let y: Vec<f64> = labels.iter().map(|&v| v as f64).collect();
            let r = metrics::regression(&z, &y);
            Evaluation {
                auroc: None,
                auprc: None,
                json: serde_json::to_value(&r).unwrap_or_default(),
                sites: vec![],
                binary: None,
            }
        }
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

fn count_text(c: &metrics::Count) -> String {
    match c {
        metrics::Count::Exact(n) => n.to_string(),
        metrics::Count::Suppressed(s) => s.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn report_data(
    cfg: &TrainConfig,
    run_dir: &Path,
    s: &RunSummary,
    record: &checkpoint::Record,
    ev: &Evaluation,
    fingerprint: &str,
    given: &str,
    trainable: usize,
    total: usize,
) -> ReportData {
    let mut metrics_rows = vec![];
    if let Some(b) = &ev.binary {
        metrics_rows.push(("examples".into(), count_text(&b.n)));
        metrics_rows.push(("positives".into(), count_text(&b.positives)));
        metrics_rows.push(("AUROC".into(), opt(b.auroc, 3)));
        metrics_rows.push(("AUPRC".into(), opt(b.auprc, 3)));
        metrics_rows.push(("Brier score".into(), opt(b.brier, 4)));
        metrics_rows.push(("ECE".into(), opt(b.ece, 4)));
    } else if let Some(obj) = ev.json.as_object() {
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::Number(x) => x.as_f64().map_or(v.to_string(), |f| {
                    if f.fract() == 0.0 && k == "n" {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.4}")
                    }
                }),
                serde_json::Value::Null => "n/a".into(),
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            metrics_rows.push((k.clone(), text));
        }
    }
    let sites = ev
        .sites
        .iter()
        .map(|x| {
            let ci = match (x.oe_low, x.oe_high) {
                (Some(l), Some(h)) => format!("{l:.2}–{h:.2}"),
                _ => "n/a".into(),
            };
            vec![
                x.site.clone(),
                count_text(&x.n),
                count_text(&x.positives),
                opt(x.auroc, 3),
                count_text(&x.observed),
                opt(x.expected, 1),
                opt(x.oe_ratio, 2),
                ci,
            ]
        })
        .collect();
    let mut notes = vec![
        "Held-out metrics are computed on private data and are not covered by the DP guarantee.".to_string(),
        "Counts below 10 are shown as <10; counts withheld so that a small one cannot be worked out from a total as \"suppressed\".".to_string(),
    ];
    if cfg.privacy.unit == Unit::Example && cfg.privacy.assume_one_example_per_subject {
        notes.push(
            "The privacy unit is one example, on the stated assumption that each subject has one example \
             (assume_one_example_per_subject)."
                .into(),
        );
    }
    if !s.dp {
        notes.push("NON-PRIVATE BASELINE (--no-dp): trained without clipping or noise; not releasable.".into());
    }
    if cfg.privacy.noise_seed.is_some() {
        notes.push(
            "This run's noise came from a stated seed (privacy.noise_seed): for tests only, not releasable.".into(),
        );
    }
    ReportData {
        title: format!(
            "medtrain run {}",
            run_dir.file_name().map_or(String::new(), |n| crate::data::guard::shown_user_path(&n.to_string_lossy()))
        ),
        run_dir: crate::data::guard::shown_user_path(&run_dir.display().to_string()),
        model_summary: format!("{}, {} head, {trainable} trainable of {total} weights", describe(cfg), s.head),
        head: s.head.into(),
        loss: record.loss.clone(),
        eval: record.eval.clone(),
        epsilon: record.epsilon.clone(),
        roc: ev.binary.as_ref().map_or(vec![], |b| b.roc.clone()),
        reliability: ev.binary.as_ref().map_or(vec![], |b| {
            b.reliability.iter().map(|x| (x.lo, x.hi, x.mean_predicted, x.observed, count_text(&x.count))).collect()
        }),
        metrics: metrics_rows,
        site_header: ["site", "n", "positives", "AUROC", "observed", "expected", "O/E", "95% CI"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        sites,
        privacy: vec![
            ("epsilon".into(), format!("{:.3}", s.epsilon)),
            ("delta".into(), format!("{:.1e}", s.delta)),
            ("accountant".into(), s.accountant.to_uppercase()),
            ("noise multiplier".into(), format!("{:.4}", s.noise_multiplier)),
            ("sample rate".into(), format!("{:.5}", s.sample_rate)),
            ("steps".into(), s.steps.to_string()),
            ("clip norm".into(), format!("{}", s.clip_norm)),
            ("privacy unit".into(), if s.unit == "subject" { "subject (patient)".into() } else { "example".into() }),
            ("max examples per subject and step".into(), cfg.privacy.max_examples_per_subject.to_string()),
        ],
        notes,
        // (a path may name a patient, `/data/7654321_export`: shown as the guard shows a user's paths;
        // found by a tester)
        config_toml: super::export::config_paths_shown(given, &crate::data::guard::shown_user_path, false)
            .unwrap_or_else(|_| "(the config is not shown: it does not read as TOML)\n".into()),
        fingerprint: fingerprint.to_string(),
    }
}

fn describe(cfg: &TrainConfig) -> String {
    use crate::model::config::{LabEncoder, TextEncoder};
    let lab = cfg.model.lab.as_ref().map(|l| match l {
        LabEncoder::Transformer { .. } => "lab transformer",
        LabEncoder::Gru { .. } => "lab GRU",
        LabEncoder::Mlp { .. } => "lab MLP",
    });
    let text = cfg.model.text.as_ref().map(|t| match t {
        TextEncoder::Transformer { .. } => "text transformer",
        TextEncoder::Pretrained { .. } => "pretrained text encoder",
    });
    [lab, text].into_iter().flatten().collect::<Vec<_>>().join(" + ")
}

#[cfg(test)]
mod tests {
    /// Found by a tester: report.html printed the config as given, a patient number in its input's
    /// directory (`7654321_export`) with it. Paths are shown as the guard shows a user's; the rest of the
    /// config as it is.
    #[test]
    fn the_reports_config_shows_paths_as_the_guard_does() {
        let given = "# a comment naming anyone\n[data]\ninput = \"/data/7654321_export\"\n\
                     [data.labels]\nfile = \"/home/tanaka/labels.csv\"\n[data.split]\nkey = \"k\"\n\
                     [train]\nbatch = 64\n";
        let shown =
            super::super::export::config_paths_shown(given, &crate::data::guard::shown_user_path, false).unwrap();
        assert!(!shown.contains("7654321") && !shown.contains("comment"), "{shown}");
        assert!(shown.contains("/data/(a name that is not printed)"), "{shown}");
        assert!(shown.contains("/home/tanaka/labels.csv") && shown.contains("batch = 64"), "{shown}");
        assert!(shown.contains("key = \"k\""), "{shown}");
    }
}
