//! medtrain: a DP-SGD training node for medical machine learning inside a secure analysis environment.
//!
//! `model` holds the models, `privacy` the DP machinery, `train` the step and the auditor's gradient,
//! `tensors` safetensors I/O, `bench` the benchmark workloads. The binary's commands live in `cli`.

pub mod bench;
pub mod cli;
mod cli_args;
mod cli_data;
mod cli_node;
mod cli_permit;
mod cli_privacy;
pub mod data;
pub mod model;
pub mod node;
pub mod privacy;
pub mod staging;
pub mod tensors;
pub mod train;
