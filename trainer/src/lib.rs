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

/// The bytes of a file the user names (a config, a manifest, a tensor file), refused when it is not a
/// regular file (a FIFO blocks for ever, `/dev/zero` never ends) or is longer than `max` bytes: such
/// a file was read whole until memory ran out.
pub fn read_bounded(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // asked before opening: opening a FIFO blocks until someone writes to it
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes, more than the {max} this file may have", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("grew past {max} bytes while read")));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The most bytes a config file (TOML, JSON) may have.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
