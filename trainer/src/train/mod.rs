//! Training: the DP-SGD step (and its non-private twin), the auditor's noise-free clipped gradient.

pub mod demo;
pub mod dp_grad;
pub mod step;

pub use step::{DpSgd, Privacy, StepStats, Trainer};
