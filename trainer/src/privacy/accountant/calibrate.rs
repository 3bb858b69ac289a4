//! Noise calibration: the smallest noise multiplier whose epsilon is at most a target, to 0.1%.
//! Epsilon falls as sigma grows, so a bracket is widened until it holds the target and then bisected
//! in log space; the upper end (which meets the target) is returned, so calibration never overshoots.

use super::{AccountingError, Delta, NoiseMultiplier, SampleRate};

/// Relative precision of the returned sigma.
pub const PRECISION: f64 = 1e-3;
/// Calibration gives up above this noise multiplier.
pub const MAX_SIGMA: f64 = 1e4;

/// The smallest sigma (within 0.1%) with `epsilon_of(sigma) <= target`. `epsilon_of` computes the
/// epsilon of the planned run (sample rate, steps, delta fixed) at a given noise multiplier.
pub fn noise_multiplier(
    target: f64,
    mut epsilon_of: impl FnMut(NoiseMultiplier) -> f64,
) -> Result<NoiseMultiplier, AccountingError> {
    if !(target.is_finite() && target > 0.0) {
        return Err(AccountingError::Epsilon(target));
    }
    let mut eps = |s: f64| epsilon_of(NoiseMultiplier::new(s).expect("positive finite sigma"));
    let (mut lo, mut hi) = (0.1f64, 1.0f64);
    while eps(hi) > target {
        lo = hi;
        hi *= 2.0;
        if hi > MAX_SIGMA {
            return Err(AccountingError::Unreachable { target, max: MAX_SIGMA, reached: eps(MAX_SIGMA) });
        }
    }
    while lo > 1e-6 && eps(lo) <= target {
        hi = lo;
        lo /= 2.0;
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
