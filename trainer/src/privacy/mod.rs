//! Privacy: accounting (RDP; PLD next), noise calibration, and the secret keys of DP-SGD's noise.
//! (The Poisson subject sampler and the budget ledger follow.)

pub mod accountant;
pub mod noise;
