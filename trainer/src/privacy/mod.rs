//! Privacy: accounting (RDP; PLD next), noise calibration, and the secret keys of DP-SGD's noise.
//! the Poisson subject sampler. (The PLD accountant and the budget ledger follow.)

pub mod accountant;
pub mod noise;
pub mod sampler;
