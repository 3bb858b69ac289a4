//! `medtrain demo`: the main job end to end on the embedded synthetic cohort.
//!
//! 1. Write the demo cohort as a FHIR R4 bulk export (`data::demo`).
//! 2. Read it and run the QA check (identifier guard included).
//! 3. Label every emergency visit with "admitted within 24 h", one hour into the visit.
//! 4. Split subjects with a keyed hash.
//! 5. Build lab-series features (catalogue labs and vital signs, 24 buckets over 7 days, normalized with
//!    public reference intervals).
//! 6. Calibrate the noise for the target epsilon with the PLD accountant.
//! 7. Train an MLP with DP-SGD (Poisson sampling of subjects; the patient is the privacy unit, so each
//!    subject's examples are clipped together; secure noise from OS entropy) and a non-private twin.
//! 8. Report the held-out AUC of both and the guarantee.

use crate::data::{self, features, labels, split, DataError, ReadOptions};
use crate::model::{HostBatch, HostInputs, HostTargets, Mlp, MlpConfig, Model};
use crate::privacy::accountant::{self, AccountantKind, AccountingError, Delta, SampleRate};
use crate::privacy::noise::{EntropyError, NoiseSource};
use crate::privacy::sampler::PoissonSampler;
use crate::train::{DpSgd, Privacy, Trainer};
use kernels::{Backend, GroupRows, KernelError, OptimizerKind};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub subjects: usize,
    pub epsilon: f64,
    pub epochs: f64,
    /// expected subjects per step (q * N_train)
    pub batch_subjects: f64,
    pub clip_norm: f32,
    pub learning_rate: f32,
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            subjects: 2000,
            epsilon: 3.0,
            epochs: 30.0,
            batch_subjects: 64.0,
            clip_norm: 1.0,
            learning_rate: 2e-3,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    pub subjects: usize,
    pub events: u64,
    pub blocking_findings: bool,
    pub examples_train: usize,
    pub examples_held_out: usize,
    pub subjects_train: usize,
    pub positives_held_out: usize,
    pub features: usize,
    pub parameters: usize,
    pub epsilon: f64,
    pub delta: f64,
    pub accountant: &'static str,
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub steps: u64,
    pub clip_norm: f32,
    pub auc_dp: f64,
    pub auc_non_private: f64,
    pub seconds: f64,
}

/// Area under the ROC curve (ties count half).
pub fn auc(scores: &[f32], labels: &[f32]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| labels[k] > 0.5).count() as f64 * avg;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&y| y > 0.5).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Examples as a dense batch [n, T, 3K] (values, mask, time since last per bucket), targets, subjects.
fn host_batch(f: &features::LabSeries, labels: &[labels::Label]) -> HostBatch {
    let (t, k) = (f.buckets, f.channels);
    let n = labels.len();
    let mut x = Vec::with_capacity(n * t * 3 * k);
    for i in 0..n {
        for b in 0..t {
            let at = (i * t + b) * k;
            x.extend_from_slice(&f.values[at..at + k]);
            x.extend_from_slice(&f.mask[at..at + k]);
            x.extend_from_slice(&f.since_last[at..at + k]);
        }
    }
    let y = labels.iter().map(|l| (l.value == labels::LabelValue::Bool(true)) as u8 as f32).collect();
    HostBatch {
        examples: n,
        steps: t,
        inputs: HostInputs::Dense { x, features: 3 * k },
        mask: vec![1.0; n * t],
        targets: HostTargets::Binary(y),
    }
}

fn scores<B: Backend, M: Model<B>>(be: &B, tr: &mut Trainer<B, M>, batch: &HostBatch) -> Result<Vec<f32>, DemoError> {
    Ok(tr.predict(be, &batch.upload(be)?)?)
}

/// Runs the demo in `dir` (the export is written to `dir/export`).
pub fn run<B: Backend>(
    be: &B,
    dir: &Path,
    opts: &DemoOptions,
    mut progress: impl FnMut(&str),
) -> Result<DemoReport, DemoError> {
    let started = std::time::Instant::now();
    if opts.subjects < 50 {
        return Err(DemoError::Invalid(format!("--subjects must be at least 50 (got {})", opts.subjects)));
    }
    if !(opts.epsilon > 0.0 && opts.epsilon.is_finite()) || !(opts.epochs > 0.0 && opts.epochs.is_finite()) {
        return Err(DemoError::Invalid("--epsilon and --epochs must be positive".into()));
    }
    let export = dir.join("export");
    let st = data::demo::write(&export, opts.subjects, opts.seed).map_err(|e| DataError::io(&export, e))?;
    progress(&format!(
        "cohort: {} subjects, {} observations, {} notes -> {}",
        st.subjects,
        st.observations,
        st.notes,
        export.display()
    ));
    let (mut d, report) = data::read(&export, &ReadOptions { vitals: true, ..Default::default() })?;
    let events: u64 = report.events.values().sum();
    progress(&format!(
        "data check: {events} events, {} findings, blocking: {}",
        report.findings.len(),
        report.blocking
    ));
    if report.blocking {
        return Err(DemoError::Invalid("the demo export has blocking findings".into()));
    }
    d.sort();
    let mut all = labels::derive(&d, &labels::Task::EdAdmission { window_hours: 24.0 })?;
    for l in &mut all {
        l.prediction_time += 3600;
    }
    let splits = split::assign(&d, b"medtrain demo", 0.1, 0.2).map_err(DemoError::Invalid)?;
    let channels: Vec<String> = data::demo::CHANNELS.iter().map(|&c| c.to_owned()).collect();
    let spec = features::LabSeriesSpec::new(&channels, 24, 168.0).map_err(DemoError::Invalid)?;
    // train examples ordered by subject, so that each subject's rows are contiguous
    let mut train: Vec<labels::Label> =
        all.iter().filter(|l| splits[l.subject as usize] == split::Split::Train).cloned().collect();
    train.sort_by_key(|l| (l.subject, l.prediction_time));
    let held: Vec<labels::Label> =
        all.iter().filter(|l| splits[l.subject as usize] == split::Split::HeldOut).cloned().collect();
    let train_batch = host_batch(&features::lab_series(&d, &spec, &train), &train);
    let held_batch = host_batch(&features::lab_series(&d, &spec, &held), &held);
    let held_y = match &held_batch.targets {
        HostTargets::Binary(y) => y.clone(),
        HostTargets::Classes(_) | HostTargets::Real(_) => unreachable!("binary task"),
    };
    // rows of each training subject
    let mut subject_rows: Vec<std::ops::Range<usize>> = Vec::new();
    let mut i = 0;
    while i < train.len() {
        let j = train[i..].iter().position(|l| l.subject != train[i].subject).map_or(train.len(), |p| i + p);
        subject_rows.push(i..j);
        i = j;
    }
    let n_subjects = subject_rows.len();
    let q = (opts.batch_subjects / n_subjects as f64).min(1.0);
    let steps = ((opts.epochs / q).ceil() as u64).max(1);
    let delta = 1e-5f64.min(0.1 / n_subjects as f64);
    let (sigma, eps) =
        accountant::calibrate(AccountantKind::Pld, opts.epsilon, SampleRate::new(q)?, steps, Delta::new(delta)?)?;
    progress(&format!(
        "DP-SGD: {} training subjects, q = {q:.4}, {steps} steps, clip {}, noise multiplier {:.4} for epsilon {:.3} at delta {delta:.1e}",
        n_subjects, opts.clip_norm, sigma.get(), eps.epsilon
    ));
    let features = held_batch.steps
        * match &held_batch.inputs {
            HostInputs::Dense { features, .. } => *features,
            HostInputs::Tokens(_) | HostInputs::Both { .. } => unreachable!("dense features"),
        };
    let cfg = MlpConfig { inputs: features, hidden: 64, outputs: 1 };
    let mut aucs = [0.0; 2];
    let mut parameters = 0;
    for (slot, dp) in [(0, true), (1, false)] {
        let privacy = if dp {
            Privacy::Dp {
                params: DpSgd {
                    clip_norm: opts.clip_norm,
                    noise_multiplier: sigma.get() as f32,
                    expected_batch: (q * n_subjects as f64) as f32,
                },
                noise: NoiseSource::from_os_entropy()?,
            }
        } else {
            Privacy::NonPrivate
        };
        let model = Mlp::new(be, cfg.clone(), opts.seed)?;
        parameters = model.num_params();
        let mut tr = Trainer::new(be, model, OptimizerKind::adamw(opts.learning_rate), privacy)?;
        let mut sampler = PoissonSampler::from_os_entropy(n_subjects, SampleRate::new(q)?)?;
        let mut picked = Vec::new();
        let mut rows = Vec::new();
        let mut offsets = Vec::new();
        for _ in 0..steps {
            sampler.next_batch(&mut picked);
            rows.clear();
            offsets.clear();
            offsets.push(0);
            for &s in &picked {
                rows.extend(subject_rows[s].clone());
                offsets.push(rows.len());
            }
            if !dp && rows.is_empty() {
                continue;
            }
            let batch = train_batch.select(&rows).upload(be)?;
            tr.step(be, &batch, &GroupRows { offsets: offsets.clone() })?;
        }
        aucs[slot] = auc(&scores(be, &mut tr, &held_batch)?, &held_y);
        progress(&format!("{}: held-out AUC {:.3}", if dp { "DP-SGD" } else { "non-private" }, aucs[slot]));
    }
    Ok(DemoReport {
        subjects: d.subjects.len(),
        events,
        blocking_findings: report.blocking,
        examples_train: train.len(),
        examples_held_out: held.len(),
        subjects_train: n_subjects,
        positives_held_out: held_y.iter().filter(|&&y| y > 0.5).count(),
        features,
        parameters,
        epsilon: eps.epsilon,
        delta,
        accountant: eps.accountant.name(),
        noise_multiplier: sigma.get(),
        sample_rate: q,
        steps,
        clip_norm: opts.clip_norm,
        auc_dp: aucs[0],
        auc_non_private: aucs[1],
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::auc;

    #[test]
    fn auc_counts_pairs_and_ties() {
        assert_eq!(auc(&[0.1, 0.9, 0.5, 0.3], &[0.0, 1.0, 1.0, 0.0]), 1.0);
        assert_eq!(auc(&[0.9, 0.1], &[0.0, 1.0]), 0.0);
        assert_eq!(auc(&[0.5, 0.5], &[0.0, 1.0]), 0.5);
        // 2 positives x 2 negatives: pairs (p=0.8 > 0.6, 0.2), (p=0.4 > 0.2, < 0.6) -> 3 of 4
        assert_eq!(auc(&[0.8, 0.4, 0.6, 0.2], &[1.0, 1.0, 0.0, 0.0]), 0.75);
    }
}
