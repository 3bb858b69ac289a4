//! The membership-inference check of a finished run (issue 12, item 4): how well an attacker holding
//! the released model tells training examples (members) from held-out ones (non-members).
//!
//! - Loss threshold (Yeom et al. 2018): the score of an example is minus its loss under the trained
//!   model; the attack AUC is the AUROC of that score for members against non-members.
//! - Calibrated (difficulty calibration, Watson et al. 2022): the score is the loss under a reference
//!   model minus the loss under the trained one, so that examples that are easy for any model do not
//!   look like members. The reference is the model at its initialization (the same seed): it saw no
//!   data, so it costs nothing and leaks nothing.
//!
//! AUCs come with a 95% interval (Hanley and McNeil's standard error). Under correct DP at small epsilon
//! both AUCs are close to 0.5; an interval above 0.5 is a warning, and the export gate refuses an AUC
//! above the threshold it is given. The held-out examples are private data: the check's numbers are
//! reported like the held-out metrics (counts under 10 suppressed, not covered by the guarantee).

use super::evaluate::predict_split;
use super::metrics;
use super::run::{Picker, TrainError};
use super::{Privacy, Trainer};
use crate::data::prepared::SplitData;
use crate::model::{Head, Model};
use kernels::{Backend, OptimizerKind};
use serde::Serialize;

/// At most this many members and as many non-members are scored.
pub const MAX_EXAMPLES: usize = 2000;

#[derive(Clone, Debug, Serialize)]
pub struct Auc {
    pub auc: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MembershipInference {
    pub members: metrics::Count,
    pub non_members: metrics::Count,
    pub loss_threshold: Auc,
    pub calibrated: Auc,
    /// the interval of either AUC lies above 0.5
    pub significant: bool,
    pub note: &'static str,
}

/// The AUC of scores (members first) with Hanley and McNeil's 95% interval.
pub fn auc_with_interval(members: &[f64], non_members: &[f64]) -> Auc {
    let scores: Vec<f64> = members.iter().chain(non_members).copied().collect();
    // metrics::binary takes probabilities in [0, 1]: ranks of the scores keep the order
    let mut order: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].is_finite()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n = order.len().max(1) as f64;
    let mut probs = vec![f64::NAN; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            probs[k] = (i + j) as f64 / 2.0 / n;
        }
        i = j + 1;
    }
    let labels: Vec<bool> = (0..scores.len()).map(|i| i < members.len()).collect();
    let auc = metrics::binary(&probs, &labels).auroc;
    let (n1, n2) = (members.len() as f64, non_members.len() as f64);
    let interval = auc.map(|a| {
        let (q1, q2) = (a / (2.0 - a), 2.0 * a * a / (1.0 + a));
        let var = (a * (1.0 - a) + (n1 - 1.0) * (q1 - a * a) + (n2 - 1.0) * (q2 - a * a)) / (n1 * n2);
        let se = var.max(0.0).sqrt();
        ((a - 1.96 * se).max(0.0), (a + 1.96 * se).min(1.0))
    });
    Auc { auc, low: interval.map(|i| i.0), high: interval.map(|i| i.1) }
}

/// Per-example losses of a model's outputs (the training loss of each head).
fn losses(out: &[f32], labels: &[f32], head: Head) -> Vec<f64> {
    match head {
        Head::Binary => out
            .iter()
            .zip(labels)
            .map(|(&z, &y)| {
                let z = z as f64;
                z.max(0.0) - z * y as f64 + (-z.abs()).exp().ln_1p()
            })
            .collect(),
        Head::Multiclass(k) => out
            .chunks(k.max(1))
            .zip(labels)
            .map(|(z, &y)| {
                let m = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
                let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                lse - z.get(y as usize).copied().unwrap_or(0.0) as f64
            })
            .collect(),
        Head::Regression { huber } => out
            .iter()
            .zip(labels)
            .map(|(&p, &y)| {
                let r = p as f64 - y as f64;
                match huber {
                    None => r * r,
                    Some(d) if r.abs() <= d as f64 => 0.5 * r * r,
                    Some(d) => d as f64 * (r.abs() - 0.5 * d as f64),
                }
            })
            .collect(),
    }
}

/// The examples scored: at most [`MAX_EXAMPLES`], evenly spread over the split.
fn spread(n: usize) -> Vec<usize> {
    if n <= MAX_EXAMPLES {
        return (0..n).collect();
    }
    (0..MAX_EXAMPLES).map(|i| i * n / MAX_EXAMPLES).collect()
}

fn split_losses<B: Backend>(
    be: &B,
    tr: &mut Trainer<B, Box<dyn Model<B>>>,
    data: &SplitData,
    idx: &[usize],
    pick: &Picker,
    head: Head,
    batch: usize,
) -> Result<Vec<f64>, TrainError> {
    let out = predict_split(be, tr, data, idx, pick, batch)?;
    let labels: Vec<f32> = idx.iter().map(|&i| data.label(i)).collect();
    Ok(losses(&out, &labels, head))
}

/// Runs both attacks: `trained` is the run's model, `reference` the same architecture at its
/// initialization.
#[allow(clippy::too_many_arguments)]
pub fn membership<B: Backend>(
    be: &B,
    trained: &mut Trainer<B, Box<dyn Model<B>>>,
    reference: Box<dyn Model<B>>,
    train: &SplitData,
    held: &SplitData,
    pick: &Picker,
    head: Head,
    batch: usize,
) -> Result<MembershipInference, TrainError> {
    let (mi, ni) = (spread(train.len()), spread(held.len()));
    let lm = split_losses(be, trained, train, &mi, pick, head, batch)?;
    let ln = split_losses(be, trained, held, &ni, pick, head, batch)?;
    let mut reference = Trainer::new(be, reference, OptimizerKind::sgd(0.0), Privacy::NonPrivate)?;
    let rm = split_losses(be, &mut reference, train, &mi, pick, head, batch)?;
    let rn = split_losses(be, &mut reference, held, &ni, pick, head, batch)?;
    let neg = |v: &[f64]| v.iter().map(|l| -l).collect::<Vec<_>>();
    let diff = |r: &[f64], l: &[f64]| r.iter().zip(l).map(|(r, l)| r - l).collect::<Vec<_>>();
    let loss_threshold = auc_with_interval(&neg(&lm), &neg(&ln));
    let calibrated = auc_with_interval(&diff(&rm, &lm), &diff(&rn, &ln));
    let significant = [&loss_threshold, &calibrated].iter().any(|a| a.low.is_some_and(|l| l > 0.5));
    Ok(MembershipInference {
        members: metrics::count(mi.len() as u64),
        non_members: metrics::count(ni.len() as u64),
        loss_threshold,
        calibrated,
        significant,
        note: "membership inference on train members against held-out non-members; computed on private data, \
               not covered by the DP guarantee",
    })
}
