//! `channels = "auto"`: the lab channels and their normalization chosen from the data, with DP.
//!
//! Both choices are Gaussian mechanisms over the TRAINING subjects, charged to the run's budget through
//! the same accountant as DP-SGD ([`crate::privacy::release`]), and recorded in the manifest.
//!
//! Channel selection. Candidates are the catalogue's labs (a public domain, so releasing which of them
//! were chosen reveals nothing beyond the noisy counts). Each training subject contributes 1 to the
//! count of each candidate it has a value of, for at most `max_codes_per_subject` = M candidates (a
//! subject with more keeps its M most frequent, ties by catalogue order: a function of its own data
//! only). Adding or removing one subject changes at most M counts by 1, so the L2 sensitivity is
//! sqrt(M); the counts get `N(0, (σ sqrt(M))^2)` each, and the K largest noisy counts are the channels.
//!
//! DP quantiles. A chosen channel without a public reference interval is normalized with its 2.5% and
//! 97.5% quantiles, read from a noisy histogram: fixed public bins over the catalogue's plausible range
//! (log-spaced when it spans two decades or more from a positive low end), one count per subject and
//! channel (the subject's median value), noise `N(0, (σ_q sqrt(C))^2)` per bin where C is the number of
//! such channels (a subject is in at most one bin of each histogram, so the L2 sensitivity of all C
//! histograms together is sqrt(C)). Quantiles come from the noisy CDF (negative cells read as 0) with
//! linear interpolation inside a bin; post-processing, so no further cost.

use super::catalog::{self, Lab};
use super::split::Split;
use super::{Dataset, EventKind, NONE};
use crate::privacy::accountant::Delta;
use crate::privacy::noise::NoiseSource;
use crate::privacy::release::{self, GaussianRelease, ReleaseError};

/// Per training subject: (catalogue row, the subject's values of that row), rows ascending.
pub type SubjectLabs = Vec<Vec<(usize, Vec<f32>)>>;

/// The lab values of each training subject by catalogue row (values in the catalogue unit or without
/// one). The dataset must be sorted.
pub fn subject_labs(data: &Dataset, splits: &[Split]) -> SubjectLabs {
    let rows: Vec<Option<usize>> = data.codes.iter().map(|c| catalog::lookup_index(&c.system, &c.code)).collect();
    let mut out = Vec::new();
    for (s, range) in data.by_subject().into_iter().enumerate() {
        if splits.get(s) != Some(&Split::Train) {
            continue;
        }
        let mut by_row: std::collections::BTreeMap<usize, Vec<f32>> = Default::default();
        for e in &data.events[range] {
            if e.kind != EventKind::Lab || e.value.is_nan() {
                continue;
            }
            let Some(row) = rows[e.code as usize] else { continue };
            if e.unit != NONE && data.units.names[e.unit as usize] != catalog::LABS[row].unit {
                continue;
            }
            by_row.entry(row).or_default().push(e.value);
        }
        out.push(by_row.into_iter().collect());
    }
    out
}

/// The DP channel selection's settings.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub channels: usize,
    pub max_codes_per_subject: usize,
    pub noise_multiplier: f64,
}

/// The candidates of the selection: every catalogue lab (not the vital signs), as catalogue rows.
pub fn candidates() -> Vec<usize> {
    (0..catalog::LABS.len()).filter(|&r| !catalog::LABS[r].vital).collect()
}

/// The number of subjects having each candidate, each subject counted for at most `m` candidates (a
/// subject with more keeps its `m` most frequent, ties by catalogue order: its own data only), so that
/// one subject changes the vector by at most sqrt(m) in L2 norm.
pub fn subject_counts(subjects: &SubjectLabs, candidates: &[usize], m: usize) -> Vec<f64> {
    let mut slot = vec![usize::MAX; catalog::LABS.len()];
    for (i, &r) in candidates.iter().enumerate() {
        slot[r] = i;
    }
    let mut counts = vec![0.0f64; candidates.len()];
    for rows in subjects {
        let mut mine: Vec<(usize, usize)> = rows
            .iter()
            .filter(|(r, _)| slot.get(*r).is_some_and(|&s| s != usize::MAX))
            .map(|(r, v)| (*r, v.len()))
            .collect();
        mine.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (r, _) in mine.into_iter().take(m) {
            counts[slot[r]] += 1.0;
        }
    }
    counts
}

/// The K most frequent catalogue labs among the subjects, chosen with the Gaussian mechanism.
pub fn select_channels(
    subjects: &SubjectLabs,
    sel: Selection,
    delta: Delta,
    source: &NoiseSource,
) -> Result<(Vec<&'static Lab>, GaussianRelease), ReleaseError> {
    let candidates = candidates();
    let m = sel.max_codes_per_subject.max(1);
    let mut counts = subject_counts(subjects, &candidates, m);
    let rel =
        release::gaussian("channel_selection", &mut counts, (m as f64).sqrt(), sel.noise_multiplier, delta, source, 0)?;
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| counts[b].total_cmp(&counts[a]).then(a.cmp(&b)));
    let chosen = order.into_iter().take(sel.channels).map(|i| &catalog::LABS[candidates[i]]).collect();
    Ok((chosen, rel))
}

/// The public bins of a lab's histogram: `bins + 1` edges over its plausible range.
pub fn bin_edges(lab: &Lab, bins: usize) -> Vec<f64> {
    let (lo, hi) = lab.plausible;
    let log = lo > 0.0 && hi / lo >= 100.0;
    (0..=bins)
        .map(|i| {
            let t = i as f64 / bins as f64;
            if log {
                (lo.ln() + t * (hi.ln() - lo.ln())).exp()
            } else {
                lo + t * (hi - lo)
            }
        })
        .collect()
}

/// The quantile `p` of a histogram over `edges`, from its (noisy) counts: negative cells count 0, and
/// the value is interpolated linearly inside the bin where the CDF reaches `p`.
pub fn quantile(edges: &[f64], counts: &[f64], p: f64) -> Option<f64> {
    let total: f64 = counts.iter().map(|c| c.max(0.0)).sum();
    if total <= 0.0 {
        return None;
    }
    let target = p * total;
    let mut acc = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        let c = c.max(0.0);
        if c > 0.0 && acc + c >= target {
            let frac = ((target - acc) / c).clamp(0.0, 1.0);
            return Some(edges[i] + frac * (edges[i + 1] - edges[i]));
        }
        acc += c;
    }
    edges.last().copied()
}

/// The DP 2.5% and 97.5% quantiles of each lab in `labs`, one Gaussian release for all of them;
/// `None` for a lab whose histogram holds more noise than subjects: the positive noise of its empty
/// bins (about `bins * sigma / sqrt(2 pi)`) outweighs the subjects it counts (its noisy total, less
/// than twice that), and quantiles read from it would be the noise's (a channel of 150 subjects with
/// values 30-120 was scaled to 2-50,000, every value near -1). The caller uses the lab's public
/// plausible range, and says so. (A function of the released histogram: no further privacy cost.)
pub fn dp_quantiles(
    subjects: &SubjectLabs,
    labs: &[&'static Lab],
    bins: usize,
    noise_multiplier: f64,
    delta: Delta,
    source: &NoiseSource,
) -> Result<(Vec<Option<(f64, f64)>>, GaussianRelease), ReleaseError> {
    let bins = bins.max(2);
    let edges: Vec<Vec<f64>> = labs.iter().map(|l| bin_edges(l, bins)).collect();
    let rows: Vec<usize> = labs.iter().map(|l| catalog::index_of(l)).collect();
    let mut hist = vec![0.0f64; labs.len() * bins];
    for subject in subjects {
        for (c, &row) in rows.iter().enumerate() {
            let Ok(i) = subject.binary_search_by_key(&row, |(r, _)| *r) else { continue };
            let mut v = subject[i].1.clone();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f32::total_cmp);
            let median = v[v.len() / 2] as f64;
            let e = &edges[c];
            let b = e.partition_point(|&x| x <= median).saturating_sub(1).min(bins - 1);
            hist[c * bins + b] += 1.0;
        }
    }
    let rel = release::gaussian(
        "channel_quantiles",
        &mut hist,
        (labs.len().max(1) as f64).sqrt(),
        noise_multiplier,
        delta,
        source,
        1,
    )?;
    let noise_floor = bins as f64 * rel.noise_std / (2.0 * std::f64::consts::PI).sqrt();
    let scales = (0..labs.len())
        .map(|c| {
            let h = &hist[c * bins..(c + 1) * bins];
            if h.iter().sum::<f64>() < 2.0 * noise_floor {
                return None;
            }
            match (quantile(&edges[c], h, 0.025), quantile(&edges[c], h, 0.975)) {
                (Some(lo), Some(hi)) if hi > lo => Some((lo, hi)),
                // too few subjects to say
                _ => None,
            }
        })
        .collect();
    Ok((scales, rel))
}
