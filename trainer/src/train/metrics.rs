//! Held-out evaluation of `medtrain train`: binary (AUROC, AUPRC, Brier, calibration, ROC), multiclass
//! (accuracy, macro-F1), regression (MAE, RMSE) and per-site benchmarking (observed/expected ratios).
//!
//! Everything here leaves the secure environment in the run report, so small cells are suppressed: a
//! count below [`MIN_COUNT`] is shown as `"<10"`, and a number from which such a count could be read back
//! is `None` (a reliability bin's mean and observed rate, a site's AUROC and O/E ratio, a ROC curve whose
//! steps would show a class count below ten). [`disclose`] then makes the published figures safe
//! together: no AUROC or AUPRC with a class under ten (their value fixes the count), no class count
//! whose complement is small, and complementary suppression (shown as `"suppressed"`) where a total
//! would give the hidden cells back (the sites' counts against the overall ones, the bins' against n).
//!
//! No input panics. Examples that cannot be scored are left out before anything is counted:
//! a probability that is not finite or lies outside [0, 1], a row of logits with a non-finite value or a
//! class index >= k, a regression pair with a non-finite value. When the slices differ in length the
//! extra entries of the longer one are ignored. A metric that is undefined on what is left (no examples,
//! one class only) is `None`.

use serde::Serialize;
use std::collections::BTreeMap;

/// Counts below this are suppressed in every output (shown as "<10").
pub const MIN_COUNT: u64 = 10;

/// What a suppressed count is shown as.
const SUPPRESSED: &str = "<10";

/// What a count of at least [`MIN_COUNT`] is shown as when it is withheld so that a small count cannot
/// be worked out from it (a total minus the cells shown, a count minus a small complement).
const WITHHELD: &str = "suppressed";

/// Reliability diagram / ECE bins: equal-width over [0, 1].
const BINS: usize = 10;

/// The most points a ROC curve keeps for the report.
const ROC_MAX_POINTS: usize = 201;

/// A count as it may be published: exact when at least [`MIN_COUNT`], otherwise `"<10"`.
/// Serializes as a JSON number or the string `"<10"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Count {
    Exact(u64),
    Suppressed(&'static str),
}

/// `Exact(n)` when `n >= MIN_COUNT`, else `Suppressed("<10")` (zero included: an empty cell is a small cell).
pub fn count(n: u64) -> Count {
    if n >= MIN_COUNT {
        Count::Exact(n)
    } else {
        Count::Suppressed(SUPPRESSED)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Binary {
    pub n: Count,
    pub positives: Count,
    /// None with one class only
    pub auroc: Option<f64>,
    /// average precision; None with one class only
    pub auprc: Option<f64>,
    pub brier: Option<f64>,
    /// expected calibration error over the 10 bins, small bins included
    pub ece: Option<f64>,
    /// always 10 equal-width bins of predicted probability
    pub reliability: Vec<Bin>,
    /// (fpr, tpr) from (0,0) to (1,1), at most 201 points; empty when either class has fewer than
    /// MIN_COUNT examples (the curve's step sizes would show the count)
    pub roc: Vec<(f64, f64)>,
    /// (examples, positives) as counted, for [`disclose`]; never published
    #[serde(skip)]
    raw: (u64, u64),
}

/// One reliability bin, [lo, hi) (the last one [0.9, 1.0]). `mean_predicted` and `observed` are None
/// when the bin holds fewer than MIN_COUNT examples.
#[derive(Clone, Debug, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: Count,
    pub mean_predicted: Option<f64>,
    pub observed: Option<f64>,
    /// (examples, positives) as counted, for [`disclose`]; never published
    #[serde(skip)]
    raw: (u64, u64),
}

#[derive(Clone, Debug, Serialize)]
pub struct Multiclass {
    pub n: Count,
    pub accuracy: Option<f64>,
    /// unweighted mean F1 over the classes present in the labels or the predictions (argmax)
    pub macro_f1: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Regression {
    pub n: Count,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
}

/// One site's binary benchmark. With n < MIN_COUNT every number is suppressed or None.
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    pub site: String,
    pub n: Count,
    pub positives: Count,
    /// None also when n < 10 or a class count < 10 (suppressed)
    pub auroc: Option<f64>,
    /// observed events (the positives)
    pub observed: Count,
    /// sum of predicted probabilities (risk adjustment by the model); None when n < 10
    pub expected: Option<f64>,
    /// observed / expected, with its exact Poisson (Garwood) 95% interval. None when n < 10, when
    /// observed < 10 (ratio times `expected` would give the suppressed count back) or expected is 0.
    pub oe_ratio: Option<f64>,
    pub oe_low: Option<f64>,
    pub oe_high: Option<f64>,
    /// (examples, positives) as counted, for [`disclose`]; never published
    #[serde(skip)]
    raw: (u64, u64),
}

/// probs: predicted probabilities in [0,1] (already sigmoid-ed), labels 0/1.
/// Probabilities that are not finite or lie outside [0, 1] are left out (see the module doc).
pub fn binary(probs: &[f64], labels: &[bool]) -> Binary {
    let scored = scorable(probs.iter().copied().zip(labels.iter().copied()));
    let n = scored.len() as u64;
    let positives = scored.iter().filter(|(_, y)| *y).count() as u64;
    let negatives = n - positives;
    let groups = tie_groups(&scored);
    let two_classes = positives > 0 && negatives > 0;
    let roc = if positives >= MIN_COUNT && negatives >= MIN_COUNT {
        roc_curve(&groups, positives, negatives)
    } else {
        Vec::new()
    };
    let (reliability, ece) = calibration(&scored);
    Binary {
        n: count(n),
        positives: count(positives),
        auroc: two_classes.then(|| auroc_midrank(&groups, positives, negatives)),
        auprc: two_classes.then(|| average_precision(&groups, positives)),
        brier: mean(scored.iter().map(|&(p, y)| (p - f64::from(u8::from(y))).powi(2)), n),
        ece,
        reliability,
        roc,
        raw: (n, positives),
    }
}

/// logits: [n, k] row-major, classes: [n]. Rows with a non-finite logit or a class >= k are left out;
/// the prediction is the first index of the largest logit. k = 0 gives n = 0 and no metrics.
pub fn multiclass(logits: &[f64], k: usize, classes: &[u32]) -> Multiclass {
    // confusion[(label, predicted)] = count; BTreeMap so k may be large without a k*k table
    let mut confusion: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut n = 0u64;
    if k > 0 {
        for (row, &class) in logits.chunks_exact(k).zip(classes) {
            let label = class as usize;
            if label >= k || row.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let predicted = row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            *confusion.entry((label, predicted)).or_default() += 1;
            n += 1;
        }
    }
    if n == 0 {
        return Multiclass { n: count(0), accuracy: None, macro_f1: None };
    }
    let correct: u64 = confusion.iter().filter(|((l, p), _)| l == p).map(|(_, c)| c).sum();
    // per class: (true positives, false positives, false negatives)
    let mut per_class: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
    for (&(label, predicted), &c) in &confusion {
        if label == predicted {
            per_class.entry(label).or_default().0 += c;
        } else {
            per_class.entry(predicted).or_default().1 += c;
            per_class.entry(label).or_default().2 += c;
        }
    }
    // every class in the map has tp + fp + fn > 0, so no division by zero
    let f1_sum: f64 = per_class.values().map(|&(tp, fp, fn_)| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64).sum();
    Multiclass {
        n: count(n),
        accuracy: Some(correct as f64 / n as f64),
        macro_f1: Some(f1_sum / per_class.len() as f64),
    }
}

/// Mean absolute and root mean squared error; pairs with a non-finite value are left out.
pub fn regression(pred: &[f64], target: &[f64]) -> Regression {
    let errors: Vec<f64> =
        pred.iter().zip(target).filter(|(p, t)| p.is_finite() && t.is_finite()).map(|(p, t)| p - t).collect();
    let n = errors.len() as u64;
    Regression {
        n: count(n),
        mae: mean(errors.iter().map(|e| e.abs()), n),
        rmse: mean(errors.iter().map(|e| e * e), n).map(f64::sqrt),
    }
}

/// per-site binary benchmarking; sites[i] is the site index of example i (None: unknown site, left out),
/// names[site index] its name. Sites with n < 10 are still listed but with every number suppressed/None.
///
/// Every site in `names` is listed, in index order, even with no examples. A site index beyond `names`
/// is listed after them as `"site <index>"` rather than dropped, so a short `names` shows in the report.
pub fn per_site(probs: &[f64], labels: &[bool], sites: &[Option<u32>], names: &[String]) -> Vec<Site> {
    let mut by_site: BTreeMap<usize, Vec<(f64, bool)>> = (0..names.len()).map(|i| (i, Vec::new())).collect();
    for ((&p, &y), site) in probs.iter().zip(labels).zip(sites) {
        if let Some(site) = site {
            by_site.entry(*site as usize).or_default().push((p, y));
        }
    }
    by_site
        .into_iter()
        .map(|(index, examples)| {
            let name = names.get(index).cloned().unwrap_or_else(|| format!("site {index}"));
            site_benchmark(name, scorable(examples))
        })
        .collect()
}

/// Complementary suppression over cells whose total is published: where some cells are `hidden`
/// (values under [`MIN_COUNT`], or counts whose complement is), the smallest shown cells are withheld
/// too until the sum of every hidden and withheld cell, which the total gives back, leaves each hidden
/// cell free over 0..MIN_COUNT: with m withheld cells (each at least MIN_COUNT) the sum must reach
/// m MIN_COUNT + MIN_COUNT - 1. Returns the cells to withhold (every shown cell when that is not enough).
fn complement(values: &[u64], hidden: &[bool]) -> Vec<usize> {
    let mut withheld = Vec::new();
    if !hidden.contains(&true) {
        return withheld;
    }
    let mut sum: u64 = values.iter().zip(hidden).filter(|(_, &h)| h).map(|(&v, _)| v).sum();
    // (an empty cell withheld hides nothing: it is no candidate)
    let mut shown: Vec<usize> = (0..values.len()).filter(|&i| !hidden[i] && values[i] > 0).collect();
    shown.sort_by_key(|&i| (values[i], i));
    for i in shown {
        let m = withheld.len() as u64;
        if m >= 1 && sum >= m * MIN_COUNT + MIN_COUNT - 1 {
            break;
        }
        withheld.push(i);
        sum = sum.saturating_add(values[i]);
    }
    withheld
}

/// A class count as it may be published beside its total: `"<10"` when small, withheld when the
/// other class is small (total minus it would show that one).
fn class_count(positives: u64, negatives: u64) -> Count {
    match (positives < MIN_COUNT, negatives < MIN_COUNT) {
        (true, _) => count(positives),
        (false, true) => Count::Suppressed(WITHHELD),
        (false, false) => Count::Exact(positives),
    }
}

/// Makes the held-out binary metrics and the per-site rows safe to publish together (see the module
/// doc): AUROC, AUPRC, Brier and ECE only with ten of each class (their value fixes the class count on
/// a small cohort), a class count only where both classes have ten, the bins' and sites' sizes
/// withheld as the totals require, the bins' observed rates (and the ECE) only where every bin has ten
/// of each class, the sites' class counts only where every site has. A site's AUROC and O/E ratio go
/// with its withheld counts.
pub fn disclose(b: &mut Binary, sites: &mut [Site]) {
    let (n, positives) = b.raw;
    let negatives = n - positives;
    if positives < MIN_COUNT || negatives < MIN_COUNT {
        // AUROC and AUPRC are ratios over the class counts, Brier and ECE fix them where the predictions
        // are alike (one bin): none is published beside a small class
        b.auroc = None;
        b.auprc = None;
        b.brier = None;
        b.ece = None;
    }
    b.positives = class_count(positives, negatives);
    // the bins' counts add up to n (an empty bin holds nobody: nothing to protect in it)
    let counts: Vec<u64> = b.reliability.iter().map(|bin| bin.raw.0).collect();
    let small: Vec<bool> = counts.iter().map(|&c| (1..MIN_COUNT).contains(&c)).collect();
    for i in complement(&counts, &small) {
        b.reliability[i].count = Count::Suppressed(WITHHELD);
    }
    // a bin's observed rate times its count is its positives, and the bins' positives add up to the
    // published total (one hidden rate was the total less the others), and the ECE over the shown
    // bins gives a hidden one back: rates (and the ECE) only where every bin has ten of each class
    let rates_safe = b.reliability.iter().all(|bin| {
        let (c, pos) = bin.raw;
        c == 0 || (pos >= MIN_COUNT && c - pos >= MIN_COUNT)
    });
    if !rates_safe {
        b.ece = None;
    }
    for bin in &mut b.reliability {
        if !rates_safe || !matches!(bin.count, Count::Exact(_)) {
            bin.observed = None;
        }
        if !matches!(bin.count, Count::Exact(_)) {
            bin.mean_predicted = None;
        }
    }
    // the sites' counts add up to (at most) the overall ones
    let ns: Vec<u64> = sites.iter().map(|s| s.raw.0).collect();
    let small: Vec<bool> = ns.iter().map(|&v| (1..MIN_COUNT).contains(&v)).collect();
    for i in complement(&ns, &small) {
        sites[i].n = Count::Suppressed(WITHHELD);
    }
    // the sites' class counts: a site's positives with its n give its negatives, and the sites' add
    // up to the overall ones, so one small class anywhere could be worked out from the others (a
    // site held back for few negatives has its positives within 9 of its n): every site's class
    // counts are shown only where every site has ten of each class
    let classes_safe = sites.iter().all(|s| s.raw.0 == 0 || (s.raw.1 >= MIN_COUNT && s.raw.0 - s.raw.1 >= MIN_COUNT));
    for s in sites.iter_mut() {
        if !classes_safe {
            s.positives = match s.raw.1 < MIN_COUNT && s.raw.0 < MIN_COUNT {
                // a site under ten has under ten of each: its own n says so already
                true => count(s.raw.1),
                false => Count::Suppressed(WITHHELD),
            };
        }
        s.observed = s.positives;
        if !matches!(s.n, Count::Exact(_)) {
            s.expected = None;
        }
        if !matches!((s.n, s.positives), (Count::Exact(_), Count::Exact(_))) {
            s.auroc = None;
            s.oe_ratio = None;
            s.oe_low = None;
            s.oe_high = None;
        }
    }
}

/// Exact (Garwood) two-sided 95% limits for the mean of a Poisson count `observed`:
/// lower = chi2inv(0.025, 2 O) / 2 (0 when O = 0), upper = chi2inv(0.975, 2 O + 2) / 2.
/// chi2inv(p, 2a) / 2 is the quantile of Gamma(a, 1), found by Newton's method on the regularized
/// incomplete gamma function from a Wilson–Hilferty start (relative accuracy ~1e-12 for O up to ~1e5,
/// degrading slowly beyond as lgamma's absolute error grows).
pub fn poisson_limits(observed: u64) -> (f64, f64) {
    let o = observed as f64;
    let lower = if observed == 0 { 0.0 } else { gamma_quantile(0.025, o) };
    (lower, gamma_quantile(0.975, o + 1.0))
}

fn site_benchmark(site: String, scored: Vec<(f64, bool)>) -> Site {
    let n = scored.len() as u64;
    let positives = scored.iter().filter(|(_, y)| *y).count() as u64;
    let negatives = n - positives;
    let mut out = Site {
        site,
        n: count(n),
        positives: count(positives),
        auroc: None,
        observed: count(positives),
        expected: None,
        oe_ratio: None,
        oe_low: None,
        oe_high: None,
        raw: (n, positives),
    };
    if n < MIN_COUNT {
        return out;
    }
    if positives >= MIN_COUNT && negatives >= MIN_COUNT {
        out.auroc = Some(auroc_midrank(&tie_groups(&scored), positives, negatives));
    }
    let expected: f64 = scored.iter().map(|(p, _)| p).sum();
    out.expected = Some(expected);
    if positives >= MIN_COUNT && expected > 0.0 {
        let (low, high) = poisson_limits(positives);
        out.oe_ratio = Some(positives as f64 / expected);
        out.oe_low = Some(low / expected);
        out.oe_high = Some(high / expected);
    }
    out
}

/// The examples that can be scored: finite probabilities in [0, 1].
fn scorable(examples: impl IntoIterator<Item = (f64, bool)>) -> Vec<(f64, bool)> {
    examples.into_iter().filter(|(p, _)| (0.0..=1.0).contains(p)).collect()
}

fn mean(values: impl Iterator<Item = f64>, n: u64) -> Option<f64> {
    (n > 0).then(|| values.sum::<f64>() / n as f64)
}

/// Examples grouped by equal probability, ascending: (probability, positives, negatives).
fn tie_groups(scored: &[(f64, bool)]) -> Vec<(f64, u64, u64)> {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(f64, u64, u64)> = Vec::new();
    for (p, y) in sorted {
        let (pos, neg) = (u64::from(y), u64::from(!y));
        match groups.last_mut() {
            // -0.0 and 0.0 are one tie: compare with ==, not total_cmp
            Some(last) if last.0 == p => {
                last.1 += pos;
                last.2 += neg;
            }
            _ => groups.push((p, pos, neg)),
        }
    }
    groups
}

/// Mann–Whitney U / (n_pos n_neg) with tied examples given their mean rank.
fn auroc_midrank(groups: &[(f64, u64, u64)], positives: u64, negatives: u64) -> f64 {
    let mut rank_sum_pos = 0.0;
    let mut below = 0u64; // examples with a smaller probability
    for &(_, pos, neg) in groups {
        let size = pos + neg;
        // ranks below+1 ..= below+size, mean (2 below + size + 1) / 2
        let midrank = below as f64 + (size as f64 + 1.0) / 2.0;
        rank_sum_pos += pos as f64 * midrank;
        below += size;
    }
    let p = positives as f64;
    (rank_sum_pos - p * (p + 1.0) / 2.0) / (p * negatives as f64)
}

/// sklearn's average_precision_score: sum over thresholds, descending, of (R_n - R_{n-1}) P_n, where a
/// threshold takes all examples tied at it.
fn average_precision(groups: &[(f64, u64, u64)], positives: u64) -> f64 {
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut ap = 0.0;
    for &(_, pos, neg) in groups.iter().rev() {
        tp += pos;
        fp += neg;
        ap += (pos as f64 / positives as f64) * (tp as f64 / (tp + fp) as f64);
    }
    ap
}

/// ROC points at every threshold, collinear middle points dropped (exact, on integer counts: the area
/// is unchanged), then evenly thinned by index to ROC_MAX_POINTS keeping both ends.
fn roc_curve(groups: &[(f64, u64, u64)], positives: u64, negatives: u64) -> Vec<(f64, f64)> {
    // (false positives, true positives) at each threshold, descending
    let mut counts: Vec<(u64, u64)> = Vec::with_capacity(groups.len() + 1);
    let (mut fp, mut tp) = (0u64, 0u64);
    counts.push((fp, tp));
    for &(_, pos, neg) in groups.iter().rev() {
        fp += neg;
        tp += pos;
        counts.push((fp, tp));
    }
    let mut kept: Vec<(u64, u64)> = Vec::with_capacity(counts.len());
    for (i, &point) in counts.iter().enumerate() {
        if let (Some(&prev), Some(&next)) = (kept.last(), counts.get(i + 1)) {
            let cross = |a: (u64, u64), b: (u64, u64), c: (u64, u64)| {
                let (dx1, dy1) = (b.0 as i128 - a.0 as i128, b.1 as i128 - a.1 as i128);
                let (dx2, dy2) = (c.0 as i128 - b.0 as i128, c.1 as i128 - b.1 as i128);
                dx1 * dy2 - dy1 * dx2
            };
            if cross(prev, point, next) == 0 {
                continue;
            }
        }
        kept.push(point);
    }
    let thinned: Vec<(u64, u64)> = if kept.len() > ROC_MAX_POINTS {
        let last = kept.len() - 1;
        // strictly increasing indices since last >= ROC_MAX_POINTS > ROC_MAX_POINTS - 1
        (0..ROC_MAX_POINTS).map(|i| kept[(i * last + (ROC_MAX_POINTS - 1) / 2) / (ROC_MAX_POINTS - 1)]).collect()
    } else {
        kept
    };
    thinned.into_iter().map(|(fp, tp)| (fp as f64 / negatives as f64, tp as f64 / positives as f64)).collect()
}

/// The reliability bins (small ones suppressed) and the ECE over all bins.
fn calibration(scored: &[(f64, bool)]) -> (Vec<Bin>, Option<f64>) {
    // per bin: (count, sum of predictions, positives)
    let mut sums = [(0u64, 0.0f64, 0u64); BINS];
    for &(p, y) in scored {
        let bin = ((p * BINS as f64) as usize).min(BINS - 1);
        sums[bin].0 += 1;
        sums[bin].1 += p;
        sums[bin].2 += u64::from(y);
    }
    let n = scored.len() as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(i, &(c, sum_p, pos))| {
            let (mean_predicted, observed) = if c > 0 { (sum_p / c as f64, pos as f64 / c as f64) } else { (0.0, 0.0) };
            if c > 0 {
                ece += c as f64 / n * (mean_predicted - observed).abs();
            }
            let shown = c >= MIN_COUNT;
            Bin {
                lo: i as f64 / BINS as f64,
                hi: (i + 1) as f64 / BINS as f64,
                count: count(c),
                mean_predicted: shown.then_some(mean_predicted),
                observed: shown.then_some(observed),
                raw: (c, pos),
            }
        })
        .collect();
    (bins, (!scored.is_empty()).then_some(ece))
}

/// Regularized lower incomplete gamma P(a, x), a > 0 (series below a + 1, Lentz continued fraction for
/// Q above, as in Numerical Recipes' gammp).
fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let log_prefactor = a * x.ln() - x - libm::lgamma(a);
    // both expansions need O(sqrt(a)) terms near x = a
    let max_terms = 200 + (50.0 * a.sqrt()) as usize;
    if x < a + 1.0 {
        let (mut term, mut sum) = (1.0 / a, 1.0 / a);
        for k in 1..max_terms {
            term *= x / (a + k as f64);
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        (sum * log_prefactor.exp()).min(1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..max_terms {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-17 {
                break;
            }
        }
        (1.0 - log_prefactor.exp() * h).max(0.0)
    }
}

/// Quantile of Gamma(a, 1) at p, 0 < p < 1, a > 0: Newton on P(a, x) - p from the Wilson–Hilferty
/// start, kept inside a bracket (bisection when a step leaves it).
fn gamma_quantile(p: f64, a: f64) -> f64 {
    let c = 1.0 / (9.0 * a);
    let t = 1.0 - c + normal_quantile(p) * c.sqrt();
    let mut x = if t > 0.0 {
        a * t.powi(3)
    } else {
        // lower tail: P(a, x) ~ x^a / Gamma(a + 1)
        ((p.ln() + libm::lgamma(a + 1.0)) / a).exp()
    };
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    for _ in 0..200 {
        let f = gamma_p(a, x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let density = ((a - 1.0) * x.ln() - x - libm::lgamma(a)).exp();
        let mut next = x - f / density;
        if !(next.is_finite() && next > lo && next < hi) {
            next = if hi.is_finite() { 0.5 * (lo + hi) } else { 2.0 * x };
        }
        if (next - x).abs() <= 1e-14 * x {
            return next;
        }
        x = next;
    }
    x
}

/// Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9); only the
/// starting point of the gamma Newton iteration depends on it.
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}
