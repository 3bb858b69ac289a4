//! The Gaussian mechanism for data-dependent choices made before training (which lab channels, how to
//! normalize them), so that they are private like the model and charged to the same budget.
//!
//! A Gaussian mechanism with L2 sensitivity `Δ` and noise `N(0, (σΔ)^2)` on every coordinate is, for the
//! accountants, one step of the sampled Gaussian with sample rate 1 and noise multiplier `σ`: its
//! [`Phase`] is `(σ, q = 1, steps = 1)`. The phases are recorded (in `data prepare`'s manifest) so that a
//! run composes them with its DP-SGD phases through the same PLD/RDP accountant and ledger.
//!
//! The noise is the project's secure noise: the keyed ChaCha20 stream and snapping sampler of the
//! kernels (`kernels/src/cpu/rng.rs`), keyed from the OS's entropy by [`NoiseSource`].

use super::accountant::{self, AccountantKind, AccountingError, Delta, Phase};
use super::noise::NoiseSource;
use kernels::Backend;

/// One release: what it was, its noise and sensitivity, and what it spent alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GaussianRelease {
    /// what was released (`channel_selection`, `channel_quantiles`)
    pub mechanism: &'static str,
    pub noise_multiplier: f64,
    /// the L2 sensitivity Δ of the released vector (add or remove one subject)
    pub l2_sensitivity: f64,
    /// standard deviation of the noise on each coordinate, σΔ
    pub noise_std: f64,
    /// epsilon of this release alone at the run's delta (PLD)
    pub epsilon: f64,
    pub delta: f64,
}

impl GaussianRelease {
    /// The accountants' view: one step of the sampled Gaussian at q = 1.
    pub fn phase(&self) -> Result<Phase, AccountingError> {
        Phase::new(self.noise_multiplier, 1.0, 1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    #[error("{0}")]
    Noise(String),
}

/// Adds `N(0, (σΔ)^2)` to every value from the secure noise stream `stream` of `source`, and says what
/// the release spent. `sensitivity` is the L2 sensitivity of `values` (add or remove one subject).
pub fn gaussian(
    mechanism: &'static str,
    values: &mut [f64],
    sensitivity: f64,
    noise_multiplier: f64,
    delta: Delta,
    source: &NoiseSource,
    stream: usize,
) -> Result<GaussianRelease, ReleaseError> {
    let phase = Phase::new(noise_multiplier, 1.0, 1)?;
    if !(sensitivity.is_finite() && sensitivity > 0.0) {
        return Err(ReleaseError::Noise(format!("sensitivity must be a finite number > 0 (got {sensitivity})")));
    }
    let std = noise_multiplier * sensitivity;
    // the kernels' sampler works in f32; counts and histogram cells are far below 2^24
    let cpu = kernels::cpu::Cpu::new(1).map_err(|e| ReleaseError::Noise(e.to_string()))?;
    let mut buf: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    // the last step of the stream space: DP-SGD steps count up from 0 and never reach it
    let key = source.key(super::noise::MAX_STEPS - 1, stream).map_err(|e| ReleaseError::Noise(e.to_string()))?;
    let grid = super::noise::snapping_grid(std as f32);
    cpu.add_normal(&mut buf, std as f32, 1.0, grid, &key).map_err(|e| ReleaseError::Noise(e.to_string()))?;
    for (v, n) in values.iter_mut().zip(&buf) {
        *v = *n as f64;
    }
    let epsilon = accountant::epsilon(AccountantKind::Pld, &[phase], delta).epsilon;
    Ok(GaussianRelease {
        mechanism,
        noise_multiplier,
        l2_sensitivity: sensitivity,
        noise_std: std,
        epsilon,
        delta: delta.get(),
    })
}

/// epsilon of several releases composed (PLD, RDP when PLD cannot hold its distribution).
pub fn composed_epsilon(releases: &[GaussianRelease], delta: Delta) -> Result<f64, AccountingError> {
    let phases = releases.iter().map(GaussianRelease::phase).collect::<Result<Vec<_>, _>>()?;
    if phases.is_empty() {
        return Ok(0.0);
    }
    Ok(accountant::epsilon(AccountantKind::Pld, &phases, delta).epsilon)
}
