//! Held-out metrics (train::metrics) against hand-computed values, sklearn's published numbers, Garwood's
//! exact Poisson limits, and plain O(n^2) twins on seeded random inputs with ties.

use medtrain::train::metrics::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn assert_close(got: Option<f64>, want: f64, tol: f64) {
    let got = got.unwrap_or_else(|| panic!("expected Some({want}), got None"));
    assert!(close(got, want, tol), "got {got}, want {want} (tol {tol})");
}

/// Seeded xorshift64*, so the random cases are the same on every run.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The definition: P(score_pos > score_neg) + P(tie) / 2 over all pairs.
fn auroc_pairs(probs: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &pi) in probs.iter().enumerate() {
        for (j, &pj) in probs.iter().enumerate() {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                wins += if pi > pj {
                    1.0
                } else if pi == pj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

/// sklearn's definition, thresholds taken one distinct score at a time by scanning everything.
fn average_precision_naive(probs: &[f64], labels: &[bool]) -> f64 {
    let mut thresholds: Vec<f64> = probs.to_vec();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let total_pos = labels.iter().filter(|&&y| y).count() as f64;
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    for t in thresholds {
        let tp = probs.iter().zip(labels).filter(|(&p, &y)| p >= t && y).count() as f64;
        let selected = probs.iter().filter(|&&p| p >= t).count() as f64;
        let recall = tp / total_pos;
        ap += (recall - prev_recall) * tp / selected;
        prev_recall = recall;
    }
    ap
}

fn labels(bits: &[u8]) -> Vec<bool> {
    bits.iter().map(|&b| b == 1).collect()
}

#[test]
fn count_suppresses_below_ten_including_zero() {
    assert_eq!(count(10), Count::Exact(10));
    assert_eq!(count(12345), Count::Exact(12345));
    assert_eq!(count(9), Count::Suppressed("<10"));
    assert_eq!(count(1), Count::Suppressed("<10"));
    assert_eq!(count(0), Count::Suppressed("<10"));
    assert_eq!(MIN_COUNT, 10);
}

#[test]
fn count_serializes_as_number_or_string() {
    assert_eq!(serde_json::to_string(&count(10)).unwrap(), "10");
    assert_eq!(serde_json::to_string(&count(9)).unwrap(), "\"<10\"");
    assert_eq!(serde_json::to_string(&count(0)).unwrap(), "\"<10\"");
}

#[test]
fn auroc_with_ties_and_hand_cases() {
    // 0.35 (pos) beats 0.1 but not 0.4; 0.8 beats both: 3 of 4 pairs
    let b = binary(&[0.1, 0.4, 0.35, 0.8], &labels(&[0, 0, 1, 1]));
    assert_close(b.auroc, 0.75, 1e-12);
    // a tie between a positive and a negative counts one half
    let b = binary(&[0.2, 0.5, 0.5, 0.9], &labels(&[0, 0, 1, 1]));
    assert_close(b.auroc, (1.0 + 0.5 + 1.0 + 1.0) / 4.0, 1e-12);
    // everything tied: 0.5
    let b = binary(&[0.3; 6], &labels(&[0, 1, 0, 1, 1, 0]));
    assert_close(b.auroc, 0.5, 1e-12);
}

#[test]
fn auroc_perfect_inverted_random() {
    let y = labels(&[0, 0, 0, 1, 1, 1]);
    assert_close(binary(&[0.1, 0.2, 0.3, 0.7, 0.8, 0.9], &y).auroc, 1.0, 1e-12);
    assert_close(binary(&[0.9, 0.8, 0.7, 0.3, 0.2, 0.1], &y).auroc, 0.0, 1e-12);

    let mut rng = Rng(0x5eed);
    let n = 20_000;
    let probs: Vec<f64> = (0..n).map(|_| rng.next_f64()).collect();
    let y: Vec<bool> = (0..n).map(|_| rng.next_f64() < 0.3).collect();
    // independent of the labels: sd of the AUROC is about 0.0045 here
    assert_close(binary(&probs, &y).auroc, 0.5, 0.02);
}

#[test]
fn auroc_and_auprc_match_plain_twins_on_random_ties() {
    let mut rng = Rng(42);
    for case in 0..20 {
        let n = 30 + case * 7;
        // scores on a coarse grid, so many ties, and labels that depend on them
        let probs: Vec<f64> = (0..n).map(|_| (rng.next_f64() * 8.0).floor() / 8.0).collect();
        let y: Vec<bool> = probs.iter().map(|&p| rng.next_f64() < 0.2 + 0.6 * p).collect();
        if y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
            continue;
        }
        let b = binary(&probs, &y);
        assert_close(b.auroc, auroc_pairs(&probs, &y), 1e-12);
        assert_close(b.auprc, average_precision_naive(&probs, &y), 1e-12);
    }
}

#[test]
fn auprc_matches_sklearn() {
    // sklearn.metrics.average_precision_score docstring example: 0.83...
    let b = binary(&[0.1, 0.4, 0.35, 0.8], &labels(&[0, 0, 1, 1]));
    assert_close(b.auprc, 0.833_333_333_333_333_4, 1e-12);
    // tied scores form one threshold: all four at 0.5 -> precision 0.5 at recall 1
    let b = binary(&[0.5; 4], &labels(&[0, 1, 0, 1]));
    assert_close(b.auprc, 0.5, 1e-12);
}

#[test]
fn one_class_only_has_no_auroc_or_auprc() {
    for y in [labels(&[1, 1, 1]), labels(&[0, 0, 0])] {
        let b = binary(&[0.2, 0.5, 0.9], &y);
        assert_eq!(b.auroc, None);
        assert_eq!(b.auprc, None);
        assert!(b.roc.is_empty());
        assert!(b.brier.is_some());
    }
}

#[test]
fn brier_is_mean_squared_error_of_probabilities() {
    // (0.1)^2 + (0.4)^2 + (0.65)^2 + (0.2)^2 over 4
    let b = binary(&[0.1, 0.4, 0.35, 0.8], &labels(&[0, 0, 1, 1]));
    assert_close(b.brier, (0.01 + 0.16 + 0.4225 + 0.04) / 4.0, 1e-12);
    assert_close(binary(&[0.0, 1.0], &labels(&[0, 1])).brier, 0.0, 0.0);
}

/// 20 at p=0.05 with 2 positives (|0.05-0.1|), 20 at p=0.85 with 18 positives (|0.85-0.9|),
/// 5 at p=0.55 all positive (|0.55-1|): a bin too small to show, but it counts in the ECE.
fn calibration_case() -> (Vec<f64>, Vec<bool>) {
    let mut probs = Vec::new();
    let mut y = Vec::new();
    for i in 0..20 {
        probs.push(0.05);
        y.push(i < 2);
    }
    for i in 0..20 {
        probs.push(0.85);
        y.push(i < 18);
    }
    for _ in 0..5 {
        probs.push(0.55);
        y.push(true);
    }
    (probs, y)
}

#[test]
fn ece_counts_every_bin_including_suppressed_ones() {
    let (probs, y) = calibration_case();
    let b = binary(&probs, &y);
    assert_close(b.ece, (20.0 * 0.05 + 20.0 * 0.05 + 5.0 * 0.45) / 45.0, 1e-12);
    // perfectly calibrated: 10 at 0.5 with 5 positives
    let b = binary(&[0.5; 10], &labels(&[0, 1, 0, 1, 0, 1, 0, 1, 0, 1]));
    assert_close(b.ece, 0.0, 1e-15);
}

#[test]
fn reliability_bins_below_ten_are_suppressed() {
    let (probs, y) = calibration_case();
    let bins = binary(&probs, &y).reliability;
    assert_eq!(bins.len(), 10);
    for (i, bin) in bins.iter().enumerate() {
        assert_close(Some(bin.lo), i as f64 / 10.0, 1e-15);
        assert_close(Some(bin.hi), (i + 1) as f64 / 10.0, 1e-15);
    }
    assert_eq!(bins[0].count, Count::Exact(20));
    assert_close(bins[0].mean_predicted, 0.05, 1e-12);
    assert_close(bins[0].observed, 0.1, 1e-12);
    assert_eq!(bins[8].count, Count::Exact(20));
    assert_close(bins[8].observed, 0.9, 1e-12);
    // 5 examples: count and numbers hidden
    assert_eq!(bins[5].count, Count::Suppressed("<10"));
    assert_eq!(bins[5].mean_predicted, None);
    assert_eq!(bins[5].observed, None);
    // empty bins too
    assert_eq!(bins[3].count, Count::Suppressed("<10"));
    assert_eq!(bins[3].observed, None);
    // p = 1.0 falls in the last bin
    let b = binary(&[1.0; 10], &[true; 10]);
    assert_eq!(b.reliability[9].count, Count::Exact(10));
}

#[test]
fn roc_runs_from_origin_to_one_and_keeps_the_area() {
    let mut rng = Rng(7);
    let probs: Vec<f64> = (0..60).map(|_| (rng.next_f64() * 20.0).floor() / 20.0).collect();
    let y: Vec<bool> = probs.iter().map(|&p| rng.next_f64() < p).collect();
    let b = binary(&probs, &y);
    let roc = &b.roc;
    assert_eq!(roc.first(), Some(&(0.0, 0.0)));
    assert_eq!(roc.last(), Some(&(1.0, 1.0)));
    assert!(roc.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
    // few enough points that none were thinned by index: the trapezoids give the AUROC exactly
    let area: f64 = roc.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
    assert_close(b.auroc, area, 1e-12);
}

#[test]
fn roc_is_thinned_to_201_points() {
    let mut rng = Rng(99);
    let probs: Vec<f64> = (0..5000).map(|_| rng.next_f64()).collect();
    let y: Vec<bool> = probs.iter().map(|&p| rng.next_f64() < p).collect();
    let roc = binary(&probs, &y).roc;
    assert!(roc.len() <= 201 && roc.len() > 100, "{} points", roc.len());
    assert_eq!(roc.first(), Some(&(0.0, 0.0)));
    assert_eq!(roc.last(), Some(&(1.0, 1.0)));
}

#[test]
fn roc_is_empty_when_a_class_has_fewer_than_ten() {
    // 9 positives: tpr steps of 1/9 would publish the count
    let probs: Vec<f64> = (0..40).map(|i| i as f64 / 40.0).collect();
    let y: Vec<bool> = (0..40).map(|i| i >= 31).collect();
    let b = binary(&probs, &y);
    assert!(b.roc.is_empty());
    assert_eq!(b.positives, Count::Suppressed("<10"));
    assert_close(b.auroc, 1.0, 1e-12);
}

#[test]
fn multiclass_accuracy_and_macro_f1_by_hand() {
    // labels [0,0,1,1,2,2], argmax [0,1,1,1,2,0]
    let logits = [
        2.0, 0.0, 0.0, //
        0.0, 1.0, 0.5, //
        0.1, 3.0, 0.0, //
        0.0, 0.2, 0.1, //
        0.0, 0.0, 5.0, //
        1.0, 0.0, 0.9,
    ];
    let m = multiclass(&logits, 3, &[0, 0, 1, 1, 2, 2]);
    assert_eq!(m.n, Count::Suppressed("<10"));
    assert_close(m.accuracy, 4.0 / 6.0, 1e-12);
    // class 0: tp 1 fp 1 fn 1 -> 1/2; class 1: tp 2 fp 1 -> 4/5; class 2: tp 1 fn 1 -> 2/3
    assert_close(m.macro_f1, (0.5 + 0.8 + 2.0 / 3.0) / 3.0, 1e-12);
}

#[test]
fn multiclass_counts_predicted_only_classes_and_skips_absent_ones() {
    // k = 5; label classes {0, 1}, predictions {0, 3}; class 2 and 4 appear nowhere
    let logits = [
        9.0, 0.0, 0.0, 0.0, 0.0, //
        0.0, 0.0, 0.0, 9.0, 0.0,
    ];
    let m = multiclass(&logits, 5, &[0, 1]);
    // class 0: f1 1; class 1: fn 1 -> 0; class 3: fp 1 -> 0
    assert_close(m.macro_f1, 1.0 / 3.0, 1e-12);
    assert_close(m.accuracy, 0.5, 1e-12);
}

#[test]
fn multiclass_ties_go_to_the_first_index() {
    let m = multiclass(&[1.0, 1.0, 1.0, 1.0], 2, &[0, 1]);
    assert_close(m.accuracy, 0.5, 1e-12);
}

#[test]
fn regression_mae_and_rmse() {
    let r = regression(&[1.0, 2.0, 3.0], &[1.0, 3.0, 5.0]);
    assert_close(r.mae, 1.0, 1e-12);
    assert_close(r.rmse, (5.0f64 / 3.0).sqrt(), 1e-12);
    assert_eq!(r.n, Count::Suppressed("<10"));
    let r = regression(&[0.5; 12], &[0.0; 12]);
    assert_eq!(r.n, Count::Exact(12));
    assert_close(r.rmse, 0.5, 1e-12);
}

/// P(X >= o) and P(X <= o) for X ~ Poisson(mean), summed in log space.
fn poisson_tails(o: u64, mean: f64) -> (f64, f64) {
    let mut log_term = -mean; // k = 0
    let mut below = 0.0; // P(X < o)
    let mut at = 0.0;
    for k in 0..=o {
        if k > 0 {
            log_term += mean.ln() - (k as f64).ln();
        }
        if k < o {
            below += log_term.exp();
        } else {
            at = log_term.exp();
        }
    }
    (1.0 - below, below + at)
}

#[test]
fn poisson_limits_match_garwood() {
    let (low, high) = poisson_limits(10);
    assert!(close(low, 4.7954, 5e-5), "{low}");
    assert!(close(high, 18.3904, 5e-5), "{high}");
    let (low, high) = poisson_limits(0);
    assert_eq!(low, 0.0);
    assert!(close(high, 3.6889, 5e-5), "{high}");
    // closed forms: upper(0) = -ln 0.025, lower(1) = -ln 0.975
    assert!(close(high, -(0.025f64.ln()), 1e-12 * high));
    let (low, _) = poisson_limits(1);
    assert!(close(low, -(0.975f64.ln()), 1e-12 * low), "{low}");
}

#[test]
fn poisson_limits_put_two_and_a_half_percent_in_each_tail() {
    for o in [1u64, 2, 3, 5, 10, 20, 50, 100, 500, 1000, 5000] {
        let (low, high) = poisson_limits(o);
        assert!(low < o as f64 && (o as f64) < high, "o {o}: {low} {high}");
        let (upper_tail_at_low, _) = poisson_tails(o, low);
        let (_, lower_tail_at_high) = poisson_tails(o, high);
        assert!(close(upper_tail_at_low, 0.025, 1e-9), "o {o}: P(X>=o | {low}) = {upper_tail_at_low}");
        assert!(close(lower_tail_at_high, 0.025, 1e-9), "o {o}: P(X<=o | {high}) = {lower_tail_at_high}");
    }
}

#[test]
fn per_site_suppresses_small_sites_and_benchmarks_large_ones() {
    let names: Vec<String> = ["small", "large", "few events", "empty"].iter().map(|s| s.to_string()).collect();
    let (mut probs, mut y, mut sites) = (Vec::new(), Vec::new(), Vec::new());
    // site 0: 9 examples
    for i in 0..9 {
        probs.push(0.5);
        y.push(i % 2 == 0);
        sites.push(Some(0));
    }
    // site 1: 10 positives at 0.3, 40 negatives at 0.2: O = 10, E = 11
    for i in 0..50 {
        probs.push(if i < 10 { 0.3 } else { 0.2 });
        y.push(i < 10);
        sites.push(Some(1));
    }
    // site 2: 30 examples, 5 events
    for i in 0..30 {
        probs.push(0.1);
        y.push(i < 5);
        sites.push(Some(2));
    }
    // unknown site: left out
    probs.push(0.9);
    y.push(true);
    sites.push(None);
    // a site index beyond names
    for _ in 0..3 {
        probs.push(0.4);
        y.push(false);
        sites.push(Some(7));
    }

    let out = per_site(&probs, &y, &sites, &names);
    let got: Vec<&str> = out.iter().map(|s| s.site.as_str()).collect();
    assert_eq!(got, ["small", "large", "few events", "empty", "site 7"]);

    for small in [&out[0], &out[3], &out[4]] {
        assert_eq!(small.n, Count::Suppressed("<10"));
        assert_eq!(small.positives, Count::Suppressed("<10"));
        assert_eq!(small.observed, Count::Suppressed("<10"));
        assert_eq!(small.auroc, None);
        assert_eq!(small.expected, None);
        assert_eq!(small.oe_ratio, None);
        assert_eq!(small.oe_low, None);
        assert_eq!(small.oe_high, None);
    }

    let large = &out[1];
    assert_eq!(large.n, Count::Exact(50));
    assert_eq!(large.positives, Count::Exact(10));
    assert_eq!(large.observed, Count::Exact(10));
    assert_close(large.auroc, 1.0, 1e-12);
    assert_close(large.expected, 11.0, 1e-12);
    assert_close(large.oe_ratio, 10.0 / 11.0, 1e-12);
    assert_close(large.oe_low, 4.7954 / 11.0, 5e-5 / 11.0);
    assert_close(large.oe_high, 18.3904 / 11.0, 5e-5 / 11.0);

    // O = 5 with E shown: the ratio would give 5 back, so it is hidden
    let few = &out[2];
    assert_eq!(few.n, Count::Exact(30));
    assert_eq!(few.observed, Count::Suppressed("<10"));
    assert_eq!(few.auroc, None);
    assert_close(few.expected, 3.0, 1e-12);
    assert_eq!(few.oe_ratio, None);
    assert_eq!(few.oe_low, None);
    assert_eq!(few.oe_high, None);
}

#[test]
fn nan_and_out_of_range_probabilities_are_left_out() {
    let mut probs = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.1, 1.5];
    let mut y = labels(&[1, 0, 1, 0, 1]);
    for i in 0..12 {
        probs.push(if i < 6 { 0.2 } else { 0.7 });
        y.push(i >= 6);
    }
    let b = binary(&probs, &y);
    assert_eq!(b.n, Count::Exact(12));
    assert_close(b.auroc, 1.0, 1e-12);
    assert_close(b.brier, (6.0 * 0.04 + 6.0 * 0.09) / 12.0, 1e-12);

    // nothing scorable at all
    let b = binary(&[f64::NAN; 20], &[true; 20]);
    assert_eq!(b.n, Count::Suppressed("<10"));
    assert_eq!((b.auroc, b.auprc, b.brier, b.ece), (None, None, None, None));
    assert!(b.roc.is_empty());
    assert_eq!(b.reliability.len(), 10);
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["n"], "<10");
    assert_eq!(json["auroc"], serde_json::Value::Null);

    let out = per_site(&[f64::NAN; 12], &[true; 12], &[Some(0); 12], &["a".to_string()]);
    assert_eq!(out[0].n, Count::Suppressed("<10"));
}

#[test]
fn empty_and_mismatched_inputs_do_not_panic() {
    let b = binary(&[], &[]);
    assert_eq!((b.auroc, b.brier, b.ece), (None, None, None));
    // extra labels are ignored
    let b = binary(&[0.1, 0.9], &labels(&[0, 1, 1, 1, 1]));
    assert_close(b.auroc, 1.0, 0.0);

    let m = multiclass(&[], 3, &[]);
    assert_eq!((m.accuracy, m.macro_f1), (None, None));
    let m = multiclass(&[1.0, 2.0], 0, &[0]);
    assert_eq!(m.accuracy, None);
    // NaN row, class out of range, short last row: all left out
    let m = multiclass(&[f64::NAN, 1.0, 0.0, 1.0, 2.0, 0.0, 5.0], 2, &[0, 9, 0, 1]);
    assert_close(m.accuracy, 1.0, 0.0);
    assert_eq!(m.n, Count::Suppressed("<10"));

    let r = regression(&[f64::NAN, 1.0, f64::INFINITY], &[0.0, 3.0, 0.0]);
    assert_close(r.mae, 2.0, 0.0);
    let r = regression(&[], &[1.0]);
    assert_eq!((r.mae, r.rmse), (None, None));

    assert!(per_site(&[], &[], &[], &[]).is_empty());
}

#[test]
fn membership_attack_auc_has_a_hanley_mcneil_interval() {
    use medtrain::train::attack::auc_with_interval;
    // perfectly separated scores: AUC 1, interval inside [0, 1]
    let a = auc_with_interval(&[3.0, 4.0, 5.0], &[0.0, 1.0, 2.0]);
    assert_eq!(a.auc, Some(1.0));
    assert!(a.low.unwrap() <= 1.0 && a.high.unwrap() == 1.0);
    // identical distributions: AUC 0.5 with an interval around it that narrows with n
    let m: Vec<f64> = (0..400).map(|i| (i % 20) as f64).collect();
    let small = auc_with_interval(&m[..40], &m[..40]);
    let large = auc_with_interval(&m, &m);
    assert!((large.auc.unwrap() - 0.5).abs() < 1e-9);
    assert!(large.high.unwrap() - large.low.unwrap() < small.high.unwrap() - small.low.unwrap());
    // Hanley-McNeil at A = 0.5, n1 = n2 = 400: SE = sqrt((0.25 + 399 (1/3 - 1/4) * 2) / 160000) = 0.020425
    assert!((large.high.unwrap() - 0.5 - 1.96 * 0.020425).abs() < 1e-4, "{:?}", large);
    // no members or one-sided: no AUC
    assert_eq!(auc_with_interval(&[], &[1.0]).auc, None);
}

/// Examples of one site: `n` of them, the first `positives` positive, probabilities spread over (0, 1).
fn site_examples(site: u32, n: usize, positives: usize, out: &mut (Vec<f64>, Vec<bool>, Vec<Option<u32>>)) {
    for i in 0..n {
        out.0.push((i as f64 + 0.5) / n as f64);
        out.1.push(i < positives);
        out.2.push(Some(site));
    }
}

#[test]
fn disclose_hides_auroc_and_class_counts_a_small_class_would_show() {
    // 22 examples, 8 positives: AUROC and AUPRC are ratios over 8 x 14 pairs, which fixes the 8
    let (mut probs, mut y) = (Vec::new(), Vec::new());
    for i in 0..22 {
        probs.push(i as f64 / 22.0);
        y.push(i % 3 == 0);
    }
    let mut b = binary(&probs, &y);
    assert!(b.auroc.is_some() && b.auprc.is_some());
    disclose(&mut b, &mut []);
    assert_eq!((b.auroc, b.auprc), (None, None));
    assert_eq!(b.n, Count::Exact(22));
    assert_eq!(b.positives, Count::Suppressed("<10"));
    // 25 examples, 20 positives: n minus the positives would show 5 negatives
    let y: Vec<bool> = (0..25).map(|i| i >= 5).collect();
    let probs: Vec<f64> = (0..25).map(|i| i as f64 / 25.0).collect();
    let mut b = binary(&probs, &y);
    disclose(&mut b, &mut []);
    assert_eq!(b.positives, Count::Suppressed("suppressed"));
    assert_eq!((b.auroc, b.auprc), (None, None));
    let json = serde_json::to_value(&b).unwrap();
    assert!(json.get("raw").is_none(), "{json}");
    // ten of each: everything shown
    let y: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    let probs: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
    let mut b = binary(&probs, &y);
    let auroc = b.auroc;
    disclose(&mut b, &mut []);
    assert_eq!((b.auroc, b.positives), (auroc, Count::Exact(10)));
}

#[test]
fn disclose_withholds_sites_whose_counts_the_totals_would_give_back() {
    // two small sites (9 and 9 examples) beside two large ones: overall n minus the large sites' n
    // would be 18, so each small one 9; the smallest large site is withheld with them
    let mut ex = (Vec::new(), Vec::new(), Vec::new());
    site_examples(0, 9, 4, &mut ex);
    site_examples(1, 40, 20, &mut ex);
    site_examples(2, 9, 4, &mut ex);
    site_examples(3, 12, 0, &mut ex);
    site_examples(4, 60, 25, &mut ex);
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let mut b = binary(&ex.0, &ex.1);
    let mut sites = per_site(&ex.0, &ex.1, &ex.2, &names);
    disclose(&mut b, &mut sites);
    let ns: Vec<Count> = sites.iter().map(|s| s.n).collect();
    use Count::{Exact, Suppressed};
    // 9 + 9 + 12 = 30 >= 10 + 9 with one withheld site: enough
    assert_eq!(ns, [Suppressed("<10"), Exact(40), Suppressed("<10"), Suppressed("suppressed"), Exact(60)]);
    // positives: a site with a small class (sites 0 and 2: 4 positives, site 3: none) would be worked
    // out from the others and the total, so no site's class count is shown; the sites under ten keep
    // "<10" (their n says as much)
    let pos: Vec<Count> = sites.iter().map(|s| s.positives).collect();
    assert_eq!(
        pos,
        [
            Suppressed("<10"),
            Suppressed("suppressed"),
            Suppressed("<10"),
            Suppressed("suppressed"),
            Suppressed("suppressed")
        ]
    );
    for s in &sites {
        assert_eq!(s.observed, s.positives);
        if !matches!((s.n, s.positives), (Exact(_), Exact(_))) {
            assert_eq!((s.auroc, s.oe_ratio, s.oe_low, s.oe_high), (None, None, None, None), "{}", s.site);
        }
    }
    assert!(sites[4].auroc.is_none() && sites[4].oe_ratio.is_none() && sites[4].expected.is_some());
    // a site held back for few negatives (the reviewer's case: 30 with 21 positives beside 40 with 10;
    // the total 31 gave 21 and 9 back when only its count was withheld): no site's positives shown
    let mut ex = (Vec::new(), Vec::new(), Vec::new());
    site_examples(0, 30, 21, &mut ex);
    site_examples(1, 40, 10, &mut ex);
    let names: Vec<String> = (0..2).map(|i| format!("s{i}")).collect();
    let mut b = binary(&ex.0, &ex.1);
    let mut sites = per_site(&ex.0, &ex.1, &ex.2, &names);
    disclose(&mut b, &mut sites);
    assert!(sites.iter().all(|s| s.positives == Suppressed("suppressed") && s.oe_ratio.is_none()));
    assert_eq!((sites[0].n, sites[1].n, b.positives), (Exact(30), Exact(40), Exact(31)));
    // whatever is withheld, every shown site count and the totals never pin a small cell: the hidden
    // cells' total leaves each small one anywhere in 0..10
    let shown: u64 = ns.iter().filter_map(|c| if let Exact(v) = c { Some(*v) } else { None }).sum();
    let withheld = ns.iter().filter(|c| **c == Suppressed("suppressed")).count() as u64;
    assert!(130 - shown >= 10 * withheld + 9);
}

#[test]
fn disclose_withholds_bins_and_observed_rates_that_would_show_small_counts() {
    // 100 examples: 45 in bin 0 (none positive), 5 in bin 4, 50 in bin 9 (all positive)
    let mut probs = vec![0.05; 45];
    probs.extend([0.45; 5]);
    probs.extend([0.95; 50]);
    let y: Vec<bool> = (0..100).map(|i| i >= 50).collect();
    let mut b = binary(&probs, &y);
    disclose(&mut b, &mut []);
    let counts: Vec<Count> = b.reliability.iter().map(|bin| bin.count).collect();
    // the empty bins and bin 4 are small (sum 5); bin 0 (45) is withheld beside them
    assert_eq!(counts[0], Count::Suppressed("suppressed"));
    assert_eq!(counts[4], Count::Suppressed("<10"));
    assert_eq!(counts[9], Count::Exact(50));
    // bin 9 has no negatives: its observed rate (1.0) times its count would show 0 negatives, and
    // a rate shown beside it would give it back from the total: no bin's rate, and no ECE
    assert!(b.reliability.iter().all(|bin| bin.observed.is_none()) && b.ece.is_none());
    assert!(b.reliability[9].mean_predicted.is_some());
    assert_eq!(b.reliability[0].mean_predicted, None);
    // ten of each class in every bin that has examples: the rates and the ECE are shown
    let mut probs = vec![0.05; 40];
    probs.extend([0.95; 40]);
    let y: Vec<bool> = (0..80).map(|i| if i < 40 { i < 10 } else { i < 70 }).collect();
    let mut b = binary(&probs, &y);
    disclose(&mut b, &mut []);
    assert!(b.ece.is_some() && b.reliability[0].observed == Some(0.25) && b.reliability[9].observed == Some(0.75));
    // one bin around 0.35 holding 22 examples with 8 positives: the ECE (and Brier) would fix the 8
    let probs = vec![0.35; 22];
    let y: Vec<bool> = (0..22).map(|i| i < 8).collect();
    let mut b = binary(&probs, &y);
    disclose(&mut b, &mut []);
    assert_eq!((b.ece, b.brier), (None, None));
}
