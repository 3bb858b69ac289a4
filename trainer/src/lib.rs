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

/// JSON as Python's `json` module writes it (what Hugging Face's `save_pretrained` writes): strict
/// JSON, or, where that fails, the same with Python's bare `NaN`, `Infinity` and `-Infinity` (which
/// `json.dumps` writes for such floats, and no JSON parser reads) read as the strings `"NaN"`,
/// `"Infinity"`, `"-Infinity"`: a key the reader does not use no longer stops it, and a key it uses
/// is a value of the wrong type, an error, never a default in its place. The error is the strict
/// parse's where both fail.
pub fn json_from_python(bytes: &[u8]) -> serde_json::Result<serde_json::Value> {
    let err = match serde_json::from_slice(bytes) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let (mut i, mut in_string, mut quoted) = (0, false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' => {
                    if let Some(&n) = bytes.get(i + 1) {
                        out.push(n);
                    }
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        let token = [&b"NaN"[..], b"Infinity", b"-Infinity"]
            .into_iter()
            .find(|t| bytes[i..].starts_with(t) && !bytes.get(i + t.len()).is_some_and(|c| c.is_ascii_alphanumeric()))
            // where a value starts
            .filter(|_| matches!(out.iter().rev().find(|c| !c.is_ascii_whitespace()), Some(b':' | b',' | b'[')));
        match token {
            Some(t) => {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
                quoted = true;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if !quoted {
        return Err(err);
    }
    serde_json::from_slice(&out).map_err(|_| err)
}

/// The most bytes a config file (TOML, JSON) may have.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

#[cfg(test)]
mod tests {
    #[test]
    fn python_json_non_finite_floats_read_as_strings_only_outside_strings() {
        let v = super::json_from_python(br#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN, Infinity", "d\\": 1}"#)
            .unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"][1], "-Infinity");
        assert_eq!(v["c"], "NaN, Infinity");
        assert_eq!(v["d\\"], 1);
        // strict JSON unchanged, and a text that is no JSON either way keeps the strict parse's error
        assert_eq!(super::json_from_python(br#"{"x": 1.5}"#).unwrap()["x"], 1.5);
        let strict = serde_json::from_slice::<serde_json::Value>(br#"{"x": NaNa, "y": NaN"#).unwrap_err();
        let e = super::json_from_python(br#"{"x": NaNa, "y": NaN"#).unwrap_err();
        assert_eq!((e.line(), e.column()), (strict.line(), strict.column()));
        assert!(super::json_from_python(b"{\"x\": NaN").is_err());
        assert!(super::json_from_python(b"NaN").is_err());
    }
}
