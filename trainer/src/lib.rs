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

/// A number as an error message prints it: as Rust prints it, unless that is long (`1e-300` prints as
/// 300 digits), then in exponent form.
pub(crate) fn short_number<T: std::fmt::Display>(v: T) -> String {
    let s = v.to_string();
    match s.parse::<f64>() {
        Ok(f) if s.len() > 24 => format!("{f:e}"),
        _ => s,
    }
}
