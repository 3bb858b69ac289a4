//! PLD accountant (privacy loss distributions; Koskela et al. 2020, Doroshenko et al. 2022) for the
//! Poisson-subsampled Gaussian under add/remove adjacency, following Google's dp_accounting
//! `PLDAccountant` step for step, and checked against it in tests:
//!
//! 1. One step's privacy loss, for each of the two adjacencies (remove: the mixture
//!    `(1-q) N(0, s^2) + q N(1, s^2)` against `N(0, s^2)`; add: the reverse), is discretized on a grid of
//!    width `h` (1e-4) with the pessimistic connect-the-dots construction: its hockey-stick curve
//!    `delta(eps)` is computed exactly at every grid point, and the discrete PMF is the one whose curve
//!    interpolates those points from above. The noise's tails beyond ln(mass) = -50 go to +infinity.
//! 2. A phase of T steps is the T-fold self-convolution of that PMF, by FFT, its support cut to where
//!    Chernoff bounds leave at most 1e-15 of mass outside; the cut mass is added to the infinite loss.
//!    Phases (several runs, a resumed run with another sigma or q) convolve with each other.
//! 3. epsilon(delta) is read off the composed PMF exactly (smallest eps with hockey-stick <= delta),
//!    the larger of the two adjacencies.
//!
//! Every approximation rounds against the guarantee (pessimistic discretization, cut tails counted as
//! infinite loss), so the reported epsilon is an upper bound.

use super::special::{log_add_exp, log_erfc};
use super::{Delta, Phase};
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;

/// Width of the privacy-loss grid (dp_accounting's default).
pub const DISCRETIZATION: f64 = 1e-4;
/// ln of the noise mass left out at each tail of one step (counted as infinite loss).
const LOG_MASS_TRUNCATION: f64 = -50.0;
/// Mass that self-composition may cut from the tails (counted as infinite loss).
const TAIL_MASS_TRUNCATION: f64 = 1e-15;

/// A privacy loss distribution on the grid `h * (lower + i)`, plus mass at +infinity.
#[derive(Clone, Debug)]
pub struct Pmf {
    lower: i64,
    probs: Vec<f64>,
    infinity_mass: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Adjacency {
    Remove,
    Add,
}

// ---------------------------------------------------------------- normal distribution, f64

/// Phi(z), the standard normal CDF.
fn norm_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// ln Phi(z), accurate in the far lower tail.
fn norm_log_cdf(z: f64) -> f64 {
    if z > -5.0 {
        norm_cdf(z).ln()
    } else {
        0.5f64.ln() + log_erfc(-z / std::f64::consts::SQRT_2)
    }
}

/// Phi^-1(p) for p in (0, 0.5]: a rational start (Acklam) refined by Newton steps on ln Phi.
fn norm_ppf_lower(p: f64) -> f64 {
    // starting point from the tail asymptotics, then Newton on ln Phi(z) = ln p
    let t = (-2.0 * p.ln()).sqrt();
    let mut z = -(t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t)
            / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for _ in 0..50 {
        let log_cdf = norm_log_cdf(z);
        // d/dz ln Phi = phi(z) / Phi(z) = exp(ln phi - ln Phi)
        let log_pdf = -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln();
        let step = (log_cdf - p.ln()) / (log_pdf - log_cdf).exp();
        z -= step;
        if step.abs() < 1e-13 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// ln(a e^b + c), stable
fn log_a_exp_b_plus_c(a: f64, b: f64, c: f64) -> f64 {
    if b > 0.0 {
        b + (a + c * (-b).exp()).ln()
    } else {
        (a * b.exp() + c).ln()
    }
}

// ---------------------------------------------------------------- one step of the mechanism
/// The Poisson-subsampled Gaussian with sensitivity 1 (dp_accounting's GaussianPrivacyLoss).
struct SubsampledGaussian {
    sigma: f64,
    q: f64,
    adjacency: Adjacency,
}

impl SubsampledGaussian {
    fn loss_remove_unsampled(&self, x: f64) -> f64 {
        (-0.5 - x) / (self.sigma * self.sigma)
    }
    fn loss_remove(&self, x: f64) -> f64 {
        let l = self.loss_remove_unsampled(x);
        if self.q == 1.0 {
            l
        } else {
            log_a_exp_b_plus_c(self.q, l, 1.0 - self.q)
        }
    }
    fn privacy_loss(&self, x: f64) -> f64 {
        match self.adjacency {
            Adjacency::Remove => self.loss_remove(x),
            Adjacency::Add => -self.loss_remove(-x),
        }
    }
    fn inverse_unsampled_remove(&self, loss: f64) -> f64 {
        -0.5 - loss * self.sigma * self.sigma
    }
    fn inverse_privacy_loss(&self, loss: f64) -> f64 {
        let q = self.q;
        match self.adjacency {
            Adjacency::Remove => {
                if q == 1.0 {
                    return self.inverse_unsampled_remove(loss);
                }
                let l0 = log_a_exp_b_plus_c(1.0 / q, loss, 1.0 - 1.0 / q);
                self.inverse_unsampled_remove(l0)
            }
            Adjacency::Add => {
                if q == 1.0 {
                    return 1.0 + self.inverse_unsampled_remove(loss);
                }
                let l0 = -log_a_exp_b_plus_c(1.0 / q, -loss, 1.0 - 1.0 / q);
                1.0 + self.inverse_unsampled_remove(l0)
            }
        }
    }
    fn mu_upper_cdf(&self, x: f64) -> f64 {
        let s = self.sigma;
        match self.adjacency {
            Adjacency::Add => norm_cdf(x / s),
            Adjacency::Remove if self.q == 1.0 => norm_cdf((x + 1.0) / s),
            Adjacency::Remove => (1.0 - self.q) * norm_cdf(x / s) + self.q * norm_cdf((x + 1.0) / s),
        }
    }
    fn mu_lower_log_cdf(&self, x: f64) -> f64 {
        let s = self.sigma;
        match self.adjacency {
            Adjacency::Add if self.q == 1.0 => norm_log_cdf((x - 1.0) / s),
            Adjacency::Add => {
                log_add_exp((-self.q).ln_1p() + norm_log_cdf(x / s), self.q.ln() + norm_log_cdf((x - 1.0) / s))
            }
            Adjacency::Remove => norm_log_cdf(x / s),
        }
    }
    /// The eps-hockey-stick divergence of one step.
    fn delta_for_epsilon(&self, eps: f64) -> f64 {
        let q = self.q;
        let inverse_applies = q == 1.0
            || match self.adjacency {
                Adjacency::Add => eps < -(-q).ln_1p(),
                Adjacency::Remove => eps > (-q).ln_1p(),
            };
        let d = if inverse_applies {
            let x = self.inverse_privacy_loss(eps);
            self.mu_upper_cdf(x) - (eps + self.mu_lower_log_cdf(x)).exp()
        } else if self.adjacency == Adjacency::Remove {
            -eps.exp_m1()
        } else {
            0.0
        };
        d.clamp(0.0, 1.0)
    }
    /// The losses at the truncated noise tails: (eps_lower, eps_upper).
    fn connect_dots_bounds(&self) -> (f64, f64) {
        let mut lower_x = self.sigma * norm_ppf_lower(0.5 * LOG_MASS_TRUNCATION.exp());
        let mut upper_x = -lower_x;
        match self.adjacency {
            Adjacency::Add => upper_x += 1.0,
            Adjacency::Remove => lower_x -= 1.0,
        }
        (self.privacy_loss(upper_x), self.privacy_loss(lower_x))
    }

    /// Pessimistic connect-the-dots PMF on the fixed grid (Algorithm 1 of arXiv:2207.04380).
    fn pmf(&self, h: f64) -> Pmf {
        let (eps_lower, eps_upper) = self.connect_dots_bounds();
        let lo = (eps_lower / h).floor() as i64;
        let hi = (eps_upper / h).ceil() as i64;
        let mut deltas: Vec<f64> = (lo..=hi).map(|i| self.delta_for_epsilon(i as f64 * h)).collect();
        if deltas.len() == 1 {
            return Pmf { lower: lo, probs: vec![1.0 - deltas[0]], infinity_mass: deltas[0] };
        }
        // the curve is non-increasing; enforce it against round-off
        for i in 1..deltas.len() {
            deltas[i] = deltas[i].min(deltas[i - 1]);
        }
        let n = deltas.len();
        let (em1, em1_neg, e) = (h.exp_m1(), (-h).exp_m1(), h.exp());
        let mut probs = vec![0.0f64; n];
        probs[0] = 1.0 - deltas[0] + (deltas[1] - deltas[0]) / em1;
        for i in 1..n - 1 {
            probs[i] = ((deltas[i + 1] - deltas[i]) - (deltas[i] - deltas[i - 1]) * e) / em1;
        }
        probs[n - 1] = (deltas[n - 1] - deltas[n - 2]) / em1_neg;
        probs.iter_mut().for_each(|p| *p = p.max(0.0));
        Pmf { lower: lo, probs, infinity_mass: deltas[n - 1] }
    }
}

// ---------------------------------------------------------------- PMF algebra
fn fft_len(n: usize) -> usize {
    n.next_power_of_two()
}

/// Chernoff bounds (dp_accounting's compute_self_convolve_bounds): the index range outside which the
/// T-fold self-convolution of `probs` has at most `tail` of its mass.
fn self_convolve_bounds(probs: &[f64], times: u64, tail: f64) -> (i64, i64) {
    let len = probs.len() as f64;
    let mut upper = (probs.len() as i64 - 1) * times as i64;
    let mut lower = 0i64;
    let support: Vec<(f64, f64)> =
        probs.iter().enumerate().filter(|(_, &p)| p > 0.0).map(|(i, &p)| (i as f64, p.ln())).collect();
    for k in (-20..0).chain(1..21) {
        let order = k as f64 / len;
        // log-sum-exp of i*order weighted by probs
        let m = support.iter().map(|&(i, lp)| lp + i * order).fold(f64::NEG_INFINITY, f64::max);
        let log_mgf = m + support.iter().map(|&(i, lp)| (lp + i * order - m).exp()).sum::<f64>().ln();
        let bound = (times as f64 * log_mgf + (2.0 / tail).ln()) / order;
        if !bound.is_finite() {
            continue;
        }
        if order > 0.0 {
            upper = upper.min(bound.ceil() as i64);
        } else {
            lower = lower.max(bound.floor() as i64);
        }
    }
    (lower, upper)
}

impl Pmf {
    /// The T-fold composition (FFT, tails beyond the Chernoff bounds cut and counted as infinite loss).
    fn self_compose(&self, times: u64, max_points: usize) -> Result<Pmf, PldError> {
        if times == 1 {
            return Ok(self.clone());
        }
        let t = u32::try_from(times).map_err(|_| PldError::TooManySteps { steps: times })?;
        let (lb, ub) = self_convolve_bounds(&self.probs, times, TAIL_MASS_TRUNCATION);
        // checked before anything is allocated: the FFT length of the composed support
        let out_len = (ub as f64 - lb as f64 + 1.0).max(1.0);
        if !(out_len <= max_points as f64) {
            return Err(PldError::TooLarge { points: saturating_points(out_len) });
        }
        let out_len = out_len as usize;
        let n = fft_len(out_len.max(self.probs.len()));
        if n > max_points {
            return Err(PldError::TooLarge { points: n });
        }
        let mut planner = FftPlanner::<f64>::new();
        let mut buf: Vec<Complex64> = self
            .probs
            .iter()
            .map(|&p| Complex64::new(p, 0.0))
            .chain(std::iter::repeat(Complex64::new(0.0, 0.0)))
            .take(n)
            .collect();
        planner.plan_fft_forward(n).process(&mut buf);
        // repeated squaring: ~2 log2(T) complex products per point, cheaper and as exact as powf
        buf.iter_mut().for_each(|z| *z = z.powu(t));
        planner.plan_fft_inverse(n).process(&mut buf);
        // circular result, rolled so that index 0 is the lower bound
        let probs: Vec<f64> =
            (0..out_len).map(|i| buf[((i as i64 + lb).rem_euclid(n as i64)) as usize].re / n as f64).collect();
        let infinity_mass = TAIL_MASS_TRUNCATION - (times as f64 * (-self.infinity_mass).ln_1p()).exp_m1();
        Ok(Pmf { lower: self.lower * times as i64 + lb, probs, infinity_mass: infinity_mass.min(1.0) })
    }

    /// The composition with another PMF on the same grid (exact linear convolution by FFT).
    fn compose(&self, other: &Pmf, max_points: usize) -> Result<Pmf, PldError> {
        let out_len = self.probs.len() + other.probs.len() - 1;
        if out_len > max_points {
            return Err(PldError::TooLarge { points: out_len });
        }
        let n = fft_len(out_len);
        if n > max_points {
            return Err(PldError::TooLarge { points: n });
        }
        let mut planner = FftPlanner::<f64>::new();
        let pad = |v: &[f64]| -> Vec<Complex64> {
            v.iter()
                .map(|&p| Complex64::new(p, 0.0))
                .chain(std::iter::repeat(Complex64::new(0.0, 0.0)))
                .take(n)
                .collect()
        };
        let (mut a, mut b) = (pad(&self.probs), pad(&other.probs));
        let fwd = planner.plan_fft_forward(n);
        fwd.process(&mut a);
        fwd.process(&mut b);
        a.iter_mut().zip(&b).for_each(|(x, y)| *x *= y);
        planner.plan_fft_inverse(n).process(&mut a);
        let probs = a[..out_len].iter().map(|z| z.re / n as f64).collect();
        let infinity_mass = 1.0 - (1.0 - self.infinity_mass) * (1.0 - other.infinity_mass);
        Ok(Pmf { lower: self.lower + other.lower, probs, infinity_mass })
    }

    /// The smallest eps >= 0 whose hockey-stick divergence is at most delta (dp_accounting's
    /// `_get_epsilon_for_delta`); infinity when none is.
    fn epsilon_for_delta(&self, h: f64, delta: f64) -> f64 {
        if self.infinity_mass > delta {
            return f64::INFINITY;
        }
        let (mut mass_upper, mut mass_lower) = (self.infinity_mass, 0.0f64);
        for (i, &p) in self.probs.iter().enumerate().rev() {
            let loss = (self.lower + i as i64) as f64 * h;
            // ln((mass_upper - delta) / mass_lower) >= loss, without a logarithm per point
            if mass_upper > delta && mass_lower > 0.0 && mass_upper - delta >= mass_lower * loss.exp() {
                break;
            }
            mass_upper += p;
            mass_lower += (-loss).exp() * p;
            if mass_upper >= delta && mass_lower == 0.0 {
                return loss.max(0.0);
            }
        }
        if mass_upper <= mass_lower + delta {
            return 0.0;
        }
        ((mass_upper - delta) / mass_lower).ln()
    }
}

/// The composed PMFs (remove, add) of `phases`, refusing any PMF over `max_points` grid points.
fn composed(phases: &[Phase], h: f64, max_points: usize) -> Result<[Pmf; 2], PldError> {
    // phases of one mechanism (the same sigma and q: runs of one config in the ledger, a resumed run)
    // are one phase of all their steps: composition commutes, and one self-composition by squaring is
    // far cheaper than composing each (the ledger composes every run on a dataset)
    let mut merged: Vec<Phase> = Vec::with_capacity(phases.len());
    for p in phases {
        match merged.iter_mut().find(|m| m.noise_multiplier == p.noise_multiplier && m.sample_rate == p.sample_rate) {
            Some(m) => m.steps = m.steps.saturating_add(p.steps),
            None => merged.push(*p),
        }
    }
    let phases = &merged[..];
    let one = |adjacency: Adjacency| -> Result<Pmf, PldError> {
        let mut acc: Option<Pmf> = None;
        for p in phases {
            let mech = SubsampledGaussian { sigma: p.noise_multiplier.get(), q: p.sample_rate.get(), adjacency };
            // the size up front, in f64: at a tiny sigma the loss range is ~1/sigma^2 and its grid
            // count does not fit a usize (a cast would wrap and the allocation would abort)
            let (eps_lower, eps_upper) = mech.connect_dots_bounds();
            let points = ((eps_upper - eps_lower) / h).ceil() + 2.0;
            if !(points <= max_points as f64) {
                return Err(PldError::TooLarge { points: saturating_points(points) });
            }
            if u32::try_from(p.steps).is_err() {
                return Err(PldError::TooManySteps { steps: p.steps });
            }
            let phase = mech.pmf(h).self_compose(p.steps, max_points)?;
            acc = Some(match acc {
                None => phase,
                Some(a) => a.compose(&phase, max_points)?,
            });
        }
        Ok(acc.unwrap_or(Pmf { lower: 0, probs: vec![1.0], infinity_mass: 0.0 }))
    };
    Ok([one(Adjacency::Remove)?, one(Adjacency::Add)?])
}

/// The largest PMF (grid points) the accountant builds, single step or composed. A point costs about
/// 40 bytes at the peak of a composition (the f64 PMF, its complex FFT buffer and the FFT's scratch),
/// so 2^22 points are about 170 MB, and computing a step's PMF costs a few special functions per
/// point (about a second at this size). One step's grid spans a loss range of about 1/sigma^2, so the
/// bound is reached near sigma 0.05: a run of DP-SGD at a useful epsilon needs far fewer points (the
/// MNIST reference run: about 2^17). Beyond, the caller falls back to RDP at once, before allocating.
pub const MAX_POINTS: usize = 1 << 22;

/// Why the PLD accountant gives no number; the caller falls back to RDP and says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PldError {
    #[error("the PLD accountant would need {points} grid points for this composition (more than the {max} it holds)", max = MAX_POINTS)]
    TooLarge { points: usize },
    #[error("the PLD accountant composes at most {} steps per phase (got {steps})", u32::MAX)]
    TooManySteps { steps: u64 },
    #[error(
        "delta {delta:e} is below the mass the PLD accountant cuts from the tails ({tail:e}): it cannot represent epsilon there"
    )]
    DeltaBelowTail { delta: f64, tail: f64 },
}

fn saturating_points(points: f64) -> usize {
    if points.is_finite() && points < usize::MAX as f64 {
        points as usize
    } else {
        usize::MAX
    }
}

/// epsilon of the composition of `phases` at each delta: an upper bound. Errs when the distribution
/// would be too large to hold, or when a delta is below the tail mass the PLD cuts (the answer would be
/// infinity, which is the accountant's limit, not the mechanism's), so that the caller can fall back to
/// RDP rather than report a looser or a wrong number.
pub fn epsilons(phases: &[Phase], deltas: &[Delta]) -> Result<Vec<f64>, PldError> {
    epsilons_within(phases, deltas, MAX_POINTS)
}

/// [`epsilons`] with a smaller size limit.
pub fn epsilons_within(phases: &[Phase], deltas: &[Delta], max_points: usize) -> Result<Vec<f64>, PldError> {
    let [remove, add] = composed(phases, DISCRETIZATION, max_points)?;
    let tail = remove.infinity_mass.max(add.infinity_mass);
    deltas
        .iter()
        .map(|d| {
            let e =
                remove.epsilon_for_delta(DISCRETIZATION, d.get()).max(add.epsilon_for_delta(DISCRETIZATION, d.get()));
            // the Gaussian has no infinite privacy loss: infinity here comes from the cut tails
            if e.is_finite() {
                Ok(e)
            } else {
                Err(PldError::DeltaBelowTail { delta: d.get(), tail })
            }
        })
        .collect()
}

/// epsilon of the composition of `phases` at `delta` (see [`epsilons`]).
pub fn epsilon(phases: &[Phase], delta: Delta) -> Result<f64, PldError> {
    Ok(epsilons(phases, &[delta])?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_inverts_the_cdf_deep_in_the_tail() {
        for p in [0.3, 1e-3, 1e-10, 0.5 * (-50f64).exp()] {
            let z = norm_ppf_lower(p);
            assert!((norm_log_cdf(z) - p.ln()).abs() < 1e-9, "p={p}: z={z}");
        }
    }

    #[test]
    fn a_step_pmf_is_a_distribution() {
        for adjacency in [Adjacency::Remove, Adjacency::Add] {
            let pmf = SubsampledGaussian { sigma: 1.1, q: 0.01, adjacency }.pmf(1e-4);
            let total: f64 = pmf.probs.iter().sum::<f64>() + pmf.infinity_mass;
            assert!((total - 1.0).abs() < 1e-6, "{adjacency:?}: total mass {total}");
        }
    }
}
