//! `medtrain demo`: the main job end to end on the embedded synthetic cohort, through the same code
//! path as `medtrain train`.
//!
//! 1. Write the demo cohort (2000 subjects by default) as a FHIR R4 bulk export into `OUT/export`.
//! 2. Write `OUT/demo.toml`: configs/demo.toml (embedded in the binary) reading that export: emergency
//!    visits labelled "admitted within 24 h", lab series and the visit's note fused, DP-SGD by patient
//!    to epsilon 3.
//! 3. Issue itself a permit for the cohort (node state in `$MEDTRAIN_HOME` or `~/.medtrain`) when none
//!    covers it.
//! 4. Train it into `OUT/run` ([`super::run::train`]): QA check, labels, splits, features, tokenizer,
//!    noise calibration, steps, held-out and per-site evaluation, report.html.

use super::run::{self, RunOptions, RunSummary, TrainError};
use crate::privacy::permit;
use std::path::Path;

/// The demo's training config (configs/demo.toml), with `input` pointing at the written export.
pub const CONFIG: &str = include_str!("../../../configs/demo.toml");

/// Writes the cohort and the config into `out`, then trains.
pub fn run(
    out: &Path,
    subjects: usize,
    seed: u64,
    threads: Option<usize>,
    quiet: bool,
) -> Result<RunSummary, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| run::io(out, e))?;
    let export = out.join("export");
    let found = export.join("Patient.ndjson").exists();
    if !found {
        crate::data::demo::write(&export, subjects, seed).map_err(|e| run::io(&export, e))?;
    }
    let config = CONFIG.replace("input = \"../demo-export\"", "input = \"export\"");
    if config == CONFIG {
        return Err(TrainError::Invalid(
            "configs/demo.toml: its data.input line changed; the demo cannot point it at the export".into(),
        ));
    }
    // the demo issues itself a permit for the cohort it wrote (an operator does this on a real node),
    // and for no other data: an export found in its place (a run before) must be the cohort these
    // arguments write, byte for byte (any `OUT/export` holding a Patient.ndjson was given a permit)
    let fp = crate::data::fingerprint::fingerprint(&export)?;
    if found {
        let check = out.join(format!(".demo-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&check);
        let expected = crate::data::demo::write(&check, subjects, seed)
            .map_err(|e| run::io(&check, e))
            .and_then(|_| Ok(crate::data::fingerprint::fingerprint(&check)?));
        // removed whatever happened (a failed write left it behind)
        let _ = std::fs::remove_dir_all(&check);
        if expected? != fp {
            return Err(TrainError::Invalid(format!(
                "{}: not the demo cohort of --subjects {subjects} --seed {seed} (the demo trains only on the cohort it \
                 writes); remove it, or give another --out",
                export.display()
            )));
        }
    }
    if permit::covering(&fp).is_err() {
        let issued = run::utc_stamp();
        let year: u32 = issued[..4].parse().unwrap_or(2026);
        let p = permit::Permit {
            id: format!("demo-{issued}"),
            project: "demo".into(),
            purpose: "medtrain demo on its synthetic cohort".into(),
            datasets: vec![fp],
            expires: format!("{}{}", year + 1, &issued[4..10]),
            epsilon: 30.0,
            delta: 1e-5,
            max_attack_auc: 0.6,
            issued,
        };
        permit::issue(&p, false).map_err(TrainError::Invalid)?;
    }
    let path = out.join("demo.toml");
    std::fs::write(&path, config).map_err(|e| run::io(&path, e))?;
    // a run before is kept (it was removed, finished and exportable): the next free `run-K`
    let run_dir = (1..)
        .map(|k| out.join(if k == 1 { "run".to_owned() } else { format!("run-{k}") }))
        .find(|d| !d.exists())
        .expect("a free name");
    let opts = RunOptions { run_dir: Some(run_dir), threads, quiet, ..Default::default() };
    run::train(&path, &opts)
}
