//! Privacy accounting for DP-SGD: the Poisson-subsampled Gaussian mechanism under add/remove-one-subject
//! adjacency, composed over the phases of one or several runs (a phase: a noise multiplier, a sample
//! rate, a number of steps).
//!
//! The state is a history of phases ([`Phase`]); the accountants are pure functions of it (`rdp`),
//! kept apart from the ledger that stores it. Numbers that are easy to confuse are newtypes, validated
//! once where they are made.

pub mod calibrate;
pub mod rdp;

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
    #[error("noise multiplier must be a finite number > 0, got {0}")]
    NoiseMultiplier(f64),
    #[error("sample rate must be in (0, 1], got {0}")]
    SampleRate(f64),
    #[error("delta must be in (0, 1), got {0}")]
    Delta(f64),
    #[error("steps must be at least 1")]
    Steps,
    #[error("target epsilon must be a finite number > 0, got {0}")]
    Epsilon(f64),
    #[error("no noise multiplier up to {max} reaches epsilon {target} (epsilon at {max}: {reached})")]
    Unreachable { target: f64, max: f64, reached: f64 },
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
