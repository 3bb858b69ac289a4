//! Noise calibration: the smallest noise multiplier whose epsilon is at most a target, to 0.1%.
//! Epsilon falls as sigma grows, so a bracket is widened until it holds the target and then bisected
//! in log space; the upper end (which meets the target) is returned, so calibration never overshoots.

use super::{AccountingError, Delta, NoiseMultiplier, SampleRate};

/// Relative precision of the returned sigma.
pub const PRECISION: f64 = 1e-3;
/// Calibration gives up above this noise multiplier.
pub const MAX_SIGMA: f64 = 1e4;
/// Calibration searches no lower: a target epsilon already met here is not a DP target (epsilon 100
/// at q = 1, one step, delta 1e-10 needs sigma 0.07).
pub const MIN_SIGMA: f64 = 1e-3;
/// The most epsilon evaluations one calibration makes: the bracket spans [MIN_SIGMA, MAX_SIGMA] by
/// factors of 2 (24 steps), then bisection to PRECISION from a factor of 2 (10 steps). The bound is a
/// guard: the search ends well within it.
pub const MAX_EVALUATIONS: usize = 64;

/// The smallest sigma in [MIN_SIGMA, MAX_SIGMA] (within 0.1%) with `epsilon_of(sigma) <= target`.
/// `epsilon_of` computes the epsilon of the planned run (sample rate, steps, delta fixed) at a given
/// noise multiplier. At most [`MAX_EVALUATIONS`] evaluations.
pub fn noise_multiplier(
    target: f64,
    epsilon_of: impl FnMut(NoiseMultiplier) -> f64,
) -> Result<NoiseMultiplier, AccountingError> {
    noise_multiplier_from(target, 1.0, epsilon_of)
}

/// [`noise_multiplier`] with the bracket started at `start` (kept within [2 MIN_SIGMA, MAX_SIGMA]) rather
/// than at 1: a sigma known to be near the answer (another accountant's) spares the evaluations far from
/// it, and for PLD those at small sigma are the costly ones (or do not fit its grid at all).
pub fn noise_multiplier_from(
    target: f64,
    start: f64,
    mut epsilon_of: impl FnMut(NoiseMultiplier) -> f64,
) -> Result<NoiseMultiplier, AccountingError> {
    if !(target.is_finite() && target > 0.0) {
        return Err(AccountingError::Epsilon(target));
    }
    let mut evaluations = 0usize;
    let mut eps = |s: f64| {
        evaluations += 1;
        match NoiseMultiplier::new(s) {
            Ok(s) if evaluations <= MAX_EVALUATIONS => epsilon_of(s),
            // not reached: s stays in [MIN_SIGMA, MAX_SIGMA] and the loops below are bounded
            _ => f64::INFINITY,
        }
    };
    let start = if start.is_finite() { start.clamp(2.0 * MIN_SIGMA, MAX_SIGMA) } else { 1.0 };
    let (mut lo, mut hi) = (start / 2.0, start);
    while eps(hi) > target {
        lo = hi;
        hi *= 2.0;
        if hi > MAX_SIGMA {
            return Err(AccountingError::Unreachable { target, max: MAX_SIGMA, reached: eps(MAX_SIGMA) });
        }
    }
    while eps(lo) <= target {
        hi = lo;
        lo /= 2.0;
        if lo < MIN_SIGMA {
            return Err(AccountingError::TargetTooLarge { target, min: MIN_SIGMA, reached: eps(MIN_SIGMA) });
        }
    }
    while hi / lo - 1.0 > PRECISION {
        let mid = (lo * hi).sqrt();
        if eps(mid) <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    NoiseMultiplier::new(hi)
}

/// Convenience: calibrate against the RDP accountant for a single phase.
pub fn rdp_noise_multiplier(
    target: f64,
    q: SampleRate,
    steps: u64,
    delta: Delta,
) -> Result<NoiseMultiplier, AccountingError> {
    if steps == 0 {
        return Err(AccountingError::Steps);
    }
    noise_multiplier(target, |s| {
        super::rdp::epsilon(&[super::Phase { noise_multiplier: s, sample_rate: q, steps }], delta)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_met_below_the_search_floor_is_an_error_not_a_search_without_end() {
        let mut calls = 0;
        let e = noise_multiplier(1e4, |s| {
            calls += 1;
            1.0 / s.get()
        })
        .unwrap_err();
        assert!(matches!(e, AccountingError::TargetTooLarge { .. }), "{e:?}");
        assert!(calls <= MAX_EVALUATIONS, "{calls} evaluations");
    }

    #[test]
    fn an_unreachable_target_is_an_error_within_the_evaluation_bound() {
        let mut calls = 0;
        let e = noise_multiplier(1e-9, |s| {
            calls += 1;
            1.0 / s.get()
        })
        .unwrap_err();
        assert!(matches!(e, AccountingError::Unreachable { .. }), "{e:?}");
        assert!(calls <= MAX_EVALUATIONS, "{calls} evaluations");
        // and a reachable one lands within the precision, from above
        let s = noise_multiplier(0.37, |s| 1.0 / s.get()).unwrap().get();
        assert!(1.0 / s <= 0.37 && s / (1.0 / 0.37) - 1.0 < 2.0 * PRECISION, "{s}");
    }

    #[test]
    fn the_search_started_anywhere_lands_on_the_same_sigma_from_above() {
        for start in [MIN_SIGMA, 0.01, 1.0, 2.7, 100.0, MAX_SIGMA, f64::NAN] {
            let mut calls = 0;
            let s = noise_multiplier_from(0.37, start, |s| {
                calls += 1;
                1.0 / s.get()
            })
            .unwrap()
            .get();
            assert!(1.0 / s <= 0.37 && s / (1.0 / 0.37) - 1.0 < 2.0 * PRECISION, "from {start}: {s}");
            assert!(calls <= MAX_EVALUATIONS, "from {start}: {calls} evaluations");
        }
    }
}
