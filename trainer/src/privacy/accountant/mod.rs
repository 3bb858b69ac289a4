//! Privacy accounting for DP-SGD: the Poisson-subsampled Gaussian mechanism under add/remove-one-subject
//! adjacency, composed over the phases of one or several runs (a phase: a noise multiplier, a sample
//! rate, a number of steps).
//!
//! The state is a history of phases ([`Phase`]); the accountants are pure functions of it (`pld`, the
//! primary one, and `rdp`, the cross-check),
//! kept apart from the ledger that stores it. Numbers that are easy to confuse are newtypes, validated
//! once where they are made.

pub mod calibrate;
pub mod pld;
pub mod rdp;
pub mod special;

/// sigma: the noise standard deviation divided by the clip norm. Finite and > 0.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct NoiseMultiplier(f64);

/// q: the probability that a subject is in a step's batch. In (0, 1].
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct SampleRate(f64);

/// delta of an (epsilon, delta) guarantee. In (0, 1).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Delta(f64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountingError {
    #[error("noise multiplier must be a finite number > 0, got {}", crate::short_number(.0))]
    NoiseMultiplier(f64),
    #[error("sample rate must be in (0, 1], got {}", crate::short_number(.0))]
    SampleRate(f64),
    #[error("delta must be in (0, 1), got {}", crate::short_number(.0))]
    Delta(f64),
    #[error("steps must be at least 1")]
    Steps,
    #[error("target epsilon must be a finite number > 0, got {}", crate::short_number(.0))]
    Epsilon(f64),
    #[error("no noise multiplier up to {max} reaches epsilon {} (epsilon at {max}: {})", crate::short_number(.target), crate::short_number(.reached))]
    Unreachable { target: f64, max: f64, reached: f64 },
    #[error(
        "target epsilon {target} is met even at the smallest noise multiplier calibration considers ({min}: epsilon {reached}); it is not a useful DP target"
    )]
    TargetTooLarge { target: f64, min: f64, reached: f64 },
}

impl NoiseMultiplier {
    pub fn new(v: f64) -> Result<Self, AccountingError> {
        if v.is_finite() && v > 0.0 {
            Ok(NoiseMultiplier(v))
        } else {
            Err(AccountingError::NoiseMultiplier(v))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

impl SampleRate {
    pub fn new(v: f64) -> Result<Self, AccountingError> {
        if v > 0.0 && v <= 1.0 {
            Ok(SampleRate(v))
        } else {
            Err(AccountingError::SampleRate(v))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Delta {
    pub fn new(v: f64) -> Result<Self, AccountingError> {
        if v > 0.0 && v < 1.0 {
            Ok(Delta(v))
        } else {
            Err(AccountingError::Delta(v))
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// `steps` DP-SGD steps at one noise multiplier and sample rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub noise_multiplier: NoiseMultiplier,
    pub sample_rate: SampleRate,
    pub steps: u64,
}

impl Phase {
    pub fn new(noise_multiplier: f64, sample_rate: f64, steps: u64) -> Result<Self, AccountingError> {
        if steps == 0 {
            return Err(AccountingError::Steps);
        }
        Ok(Phase {
            noise_multiplier: NoiseMultiplier::new(noise_multiplier)?,
            sample_rate: SampleRate::new(sample_rate)?,
            steps,
        })
    }
}

/// Which accountant reports epsilon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountantKind {
    /// privacy loss distributions: tight, the primary one
    Pld,
    /// Renyi DP: looser, the cross-check and the fallback
    Rdp,
}

impl AccountantKind {
    pub fn name(self) -> &'static str {
        match self {
            AccountantKind::Pld => "pld",
            AccountantKind::Rdp => "rdp",
        }
    }
}

impl std::str::FromStr for AccountantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pld" => Ok(AccountantKind::Pld),
            "rdp" => Ok(AccountantKind::Rdp),
            other => Err(format!("unknown accountant '{other}': expected pld or rdp")),
        }
    }
}

/// An epsilon and how it was obtained. `fallback` says why PLD was not used when it was asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct EpsilonReport {
    pub epsilon: f64,
    pub accountant: AccountantKind,
    pub fallback: Option<String>,
}

/// epsilon of `phases` at `delta` with the chosen accountant. PLD falls back to RDP (a valid, looser
/// bound) when it cannot hold its distribution, and says so; it never reports a lower number instead.
pub fn epsilon(kind: AccountantKind, phases: &[Phase], delta: Delta) -> EpsilonReport {
    epsilon_within(kind, phases, delta, pld::MAX_POINTS)
}

fn epsilon_within(kind: AccountantKind, phases: &[Phase], delta: Delta, max_points: usize) -> EpsilonReport {
    if kind == AccountantKind::Pld {
        match pld::epsilons_within(phases, &[delta], max_points).map(|v| v[0]) {
            Ok(e) => return EpsilonReport { epsilon: e, accountant: AccountantKind::Pld, fallback: None },
            Err(e) => {
                return EpsilonReport {
                    epsilon: rdp::epsilon(phases, delta),
                    accountant: AccountantKind::Rdp,
                    fallback: Some(e.to_string()),
                }
            }
        }
    }
    EpsilonReport { epsilon: rdp::epsilon(phases, delta), accountant: AccountantKind::Rdp, fallback: None }
}

/// The smallest noise multiplier (to 0.1%) whose epsilon for one phase of `steps` at `sample_rate` is
/// at most `target` at `delta`, with the chosen accountant (PLD falls back to RDP as in [`epsilon`]).
/// The returned sigma meets the target under the accountant the report names, which is the one
/// [`epsilon`] uses for that sigma (what the ledger will charge).
pub fn calibrate(
    kind: AccountantKind,
    target: f64,
    sample_rate: SampleRate,
    steps: u64,
    delta: Delta,
) -> Result<(NoiseMultiplier, EpsilonReport), AccountingError> {
    if steps == 0 {
        return Err(AccountingError::Steps);
    }
    let phase = |s: NoiseMultiplier| Phase { noise_multiplier: s, sample_rate, steps };
    // RDP first: cheap at any sigma, valid everywhere, and the PLD's answer lies at or below it
    let rdp_sigma = calibrate::noise_multiplier(target, |s| rdp::epsilon(&[phase(s)], delta));
    if kind != AccountantKind::Pld {
        let sigma = rdp_sigma?;
        return Ok((sigma, epsilon(AccountantKind::Rdp, &[phase(sigma)], delta)));
    }
    // PLD's search starts at a sigma PLD evaluates (RDP's answer, or the search's ceiling) and moves
    // down. A probe PLD cannot evaluate (its grid grows as sigma shrinks) counts as "epsilon too large"
    // and ends the refinement there: the search returns the smallest sigma PLD certified, rather than
    // bisecting toward PLD's grid limit, where each evaluation is the most costly. (The first failure
    // used to abandon PLD for the whole search, started at sigma 1: a long run at a large sample rate,
    // which does not fit PLD's grid at sigma 1 but fits well where it meets the target, got RDP's
    // larger sigma.) Each PLD evaluation near the grid's limit takes seconds: none is made twice (the
    // search probes RDP's answer again, and the report is the search's last success).
    let memo = std::cell::RefCell::new(Vec::<(f64, Result<f64, pld::PldError>)>::new());
    let pld_at = |s: NoiseMultiplier| -> Result<f64, pld::PldError> {
        if let Some((_, r)) = memo.borrow().iter().find(|(at, _)| *at == s.get()) {
            return r.clone();
        }
        let r = pld::epsilon(&[phase(s)], delta);
        memo.borrow_mut().push((s.get(), r.clone()));
        r
    };
    let pld_search = |start: f64| {
        let mut failed = false;
        calibrate::noise_multiplier_from(target, start, |s| {
            if failed {
                return f64::INFINITY;
            }
            pld_at(s).unwrap_or_else(|_| {
                failed = true;
                f64::INFINITY
            })
        })
    };
    let sigma = match rdp_sigma {
        Ok(r) => {
            match pld_at(r) {
                Err(why) => {
                    // PLD cannot evaluate RDP's answer: its grid only shrinks with more noise (and its
                    // other limits do not depend on sigma), so any sigma it can evaluate spends more noise
                    // than r, which RDP's bound already certifies
                    let report = EpsilonReport {
                        epsilon: rdp::epsilon(&[phase(r)], delta),
                        accountant: AccountantKind::Rdp,
                        fallback: Some(why.to_string()),
                    };
                    return Ok((r, report));
                }
                // PLD's answer, searched from RDP's: downward where PLD is tighter (as it is as a
                // rule), upward where it is not
                Ok(_) => pld_search(r.get())?,
            }
        }
        // RDP cannot reach the target below the search's ceiling: the tighter PLD may
        Err(e @ AccountingError::Unreachable { .. }) => pld_search(calibrate::MAX_SIGMA).map_err(|_| e)?,
        Err(e) => return Err(e),
    };
    // the search returns only a sigma at which PLD met the target: its report is that evaluation, as
    // [`epsilon`] makes it (the other arm is not reached)
    let report = match pld_at(sigma) {
        Ok(e) => EpsilonReport { epsilon: e, accountant: AccountantKind::Pld, fallback: None },
        Err(_) => epsilon(AccountantKind::Pld, &[phase(sigma)], delta),
    };
    debug_assert!(report.epsilon <= target, "{report:?}");
    Ok((sigma, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pld_that_cannot_hold_its_distribution_falls_back_to_rdp_and_says_so() {
        let phases = [Phase::new(1.1, 0.01, 1000).unwrap()];
        let d = Delta::new(1e-5).unwrap();
        let full = epsilon_within(AccountantKind::Pld, &phases, d, pld::MAX_POINTS);
        assert_eq!(full.accountant, AccountantKind::Pld);
        assert!(full.fallback.is_none());
        let small = epsilon_within(AccountantKind::Pld, &phases, d, 1000);
        assert_eq!(small.accountant, AccountantKind::Rdp);
        assert!(small.fallback.as_deref().unwrap_or("").contains("grid points"), "{small:?}");
        assert_eq!(small.epsilon, rdp::epsilon(&phases, d));
        assert!(small.epsilon >= full.epsilon, "the fallback is never below the PLD bound");
    }
}
