//! Privacy: accounting (PLD, RDP), noise calibration, the secret keys of DP-SGD's noise, the Poisson
//! subject sampler, and the privacy-budget ledger.

pub mod accountant;
pub mod ledger;
pub mod noise;
pub mod permit;
pub mod release;
pub mod sampler;
pub mod sshsig;
