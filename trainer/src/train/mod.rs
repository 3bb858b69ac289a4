//! Training: the DP-SGD step (and its non-private twin), the auditor's noise-free clipped gradient,
//! `medtrain train` (config, the DP run, checkpoints, evaluation, the run report).

pub mod attack;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod dp_grad;
mod evaluate;
pub mod export;
pub mod metrics;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod seal;
pub mod step;

pub use step::{micro_batches, DpSgd, Privacy, StepStats, Trainer};
