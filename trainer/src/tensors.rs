//! safetensors files in and out: named tensors with their dtype and shape, checked on the way in.
//! Errors name the file, the tensor and both shapes or dtypes; they never print tensor values, and a
//! string from the file (a tensor name, a dtype, a JSON error's fragment) only when it is plainly a name.

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: missing tensor '{name}'")]
    Missing { path: PathBuf, name: String },
    #[error("{path}: tensor '{name}' has dtype {got}, expected {expected}")]
    Dtype { path: PathBuf, name: String, expected: String, got: String },
    #[error("{path}: tensor '{name}' has shape {got:?}, expected {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: tensor '{name}': {msg}")]
    Value { path: PathBuf, name: String, msg: String },
    #[error("{path}: unexpected tensor(s) {names:?}: {hint}")]
    Unexpected { path: PathBuf, names: Vec<String>, hint: String },
    #[error("{path}: cannot write: {msg}")]
    Write { path: PathBuf, msg: String },
}

/// A loaded tensor (host memory).
#[derive(Clone, Debug, PartialEq)]
pub enum HostTensor {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub shape: Vec<usize>,
    pub data: HostTensor,
}

impl Loaded {
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            HostTensor::F32(_) => "F32",
            HostTensor::I64(_) => "I64",
            HostTensor::U8(_) => "U8",
        }
    }
}

/// All tensors of a file, by name.
#[derive(Debug)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, Loaded>,
}

fn convert(view: &TensorView<'_>) -> Result<HostTensor, String> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => {
            HostTensor::F32(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        Dtype::I64 => {
            HostTensor::I64(data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
        }
        // half-precision weights (public checkpoints) widen exactly to f32
        Dtype::BF16 => HostTensor::F32(
            data.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect(),
        ),
        Dtype::F16 => {
            HostTensor::F32(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect())
        }
        Dtype::U8 | Dtype::BOOL => HostTensor::U8(data.to_vec()),
        other => return Err(format!("dtype {other:?} is not supported (F32, F16, BF16, I64, U8 or BOOL)")),
    })
}

/// A tensor name from a file as an error may print it: ASCII letters, digits, `.`, `_`, `-`, at most 128
/// bytes and at most 6 digits (so no phone number, date or ID number); else a placeholder.
pub fn shown(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name.bytes().filter(u8::is_ascii_digit).count() <= 6;
    if plain {
        name.to_owned()
    } else {
        "(a name that is not printed)".to_owned()
    }
}

/// The safetensors error without what it quotes from the file (serde_json's messages quote unknown
/// dtypes and mistyped values; some variants carry a tensor name).
fn format_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeaderDeserialization(j) | E::JsonError(j) => {
            let what = match j.classify() {
                serde_json::error::Category::Io => "cannot be read",
                serde_json::error::Category::Syntax => "is not valid JSON",
                serde_json::error::Category::Data => "does not describe tensors (wrong field, type or dtype)",
                serde_json::error::Category::Eof => "ends early",
            };
            format!("the JSON header {what} (line {}, column {})", j.line(), j.column())
        }
        E::TensorNotFound(name) => format!("no tensor {}", shown(name)),
        E::InvalidOffset(name) => format!("the offsets of tensor {} are invalid", shown(name)),
        other => other.to_string(),
    }
}

/// Which tensor's data do not fit, when safetensors finds the offsets invalid: it names the tensor
/// where the chain of offsets breaks, which is the one after a shortened or dropped tensor, or none
/// (a tensor whose bytes do not match its shape; data the tensors do not cover). Reads the
/// header again and names the first tensor (in file order) whose bytes are not what its shape and
/// dtype need, or that does not start where the one before it ends.
fn invalid_offsets(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Info {
        dtype: String,
        shape: Vec<u64>,
        data_offsets: (u64, u64),
    }
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header = bytes.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    let mut infos: Vec<(String, Info)> = map
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .filter_map(|(k, v)| Some((k, serde_json::from_value::<Info>(v).ok()?)))
        .collect();
    infos.sort_by_key(|(_, i)| i.data_offsets);
    let (mut end, mut before) = (0, None);
    for (name, i) in &infos {
        let size = match i.dtype.as_str() {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let need = i.shape.iter().try_fold(size, |a: u64, &d| a.checked_mul(d));
        let (start, stop) = i.data_offsets;
        if start != end {
            let after = before.map_or("the start of the data".to_string(), |b| format!("tensor {}", shown(b)));
            return Some(format!(
                "{after} ends at data byte {end}, but the next tensor, {}, starts at {start}: data are missing \
                 or left over after {after}",
                shown(name)
            ));
        }
        if need != stop.checked_sub(start) {
            return Some(format!(
                "tensor {} has {} data bytes; its shape {:?} of {} needs {}",
                shown(name),
                stop.saturating_sub(start),
                i.shape,
                shown(&i.dtype),
                need.map_or("more than 2^64".into(), |b| b.to_string())
            ));
        }
        (end, before) = (stop, Some(name.as_str()));
    }
    let data = bytes.len() as u64 - 8 - n;
    (end != data).then(|| format!("the tensors' data end at byte {end}, the file holds {data} bytes of data"))
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<Self, TensorError> {
        let bytes = crate::read_bounded(path, u64::MAX)
            .map_err(|source| TensorError::Io { path: path.to_path_buf(), source })?;
        Self::parse(path, &bytes)
    }

    /// The tensors of a safetensors file already read into memory (`path` names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, TensorError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            let msg = match e {
                safetensors::SafeTensorError::InvalidOffset(_)
                | safetensors::SafeTensorError::TensorInvalidInfo
                | safetensors::SafeTensorError::MetadataIncompleteBuffer => invalid_offsets(bytes),
                _ => None,
            };
            TensorError::Format { path: path.to_path_buf(), msg: msg.unwrap_or_else(|| format_error(&e)) }
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let data = convert(&view).map_err(|msg| TensorError::Value {
                path: path.to_path_buf(),
                name: shown(name),
                msg,
            })?;
            tensors.insert(name.to_string(), Loaded { shape: view.shape().to_vec(), data });
        }
        Ok(TensorFile { path: path.to_path_buf(), tensors })
    }

    fn get(&self, name: &str) -> Result<&Loaded, TensorError> {
        self.tensors.get(name).ok_or_else(|| TensorError::Missing { path: self.path.clone(), name: name.to_string() })
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Result<&[usize], TensorError> {
        Ok(&self.get(name)?.shape)
    }

    fn check_shape(&self, name: &str, t: &Loaded, expected: &[usize]) -> Result<(), TensorError> {
        if t.shape != expected {
            return Err(TensorError::Shape {
                path: self.path.clone(),
                name: name.into(),
                expected: expected.to_vec(),
                got: t.shape.clone(),
            });
        }
        Ok(())
    }

    fn dtype_error(&self, name: &str, t: &Loaded, expected: &str) -> TensorError {
        TensorError::Dtype {
            path: self.path.clone(),
            name: name.into(),
            expected: expected.into(),
            got: t.dtype_name().into(),
        }
    }

    /// An F32 tensor of exactly `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<&[f32], TensorError> {
        let t = self.get(name)?;
        let HostTensor::F32(v) = &t.data else {
            return Err(self.dtype_error(name, t, "F32"));
        };
        self.check_shape(name, t, shape)?;
        Ok(v)
    }

    /// An I64 tensor of exactly `shape`.
    pub fn i64(&self, name: &str, shape: &[usize]) -> Result<&[i64], TensorError> {
        let t = self.get(name)?;
        let HostTensor::I64(v) = &t.data else {
            return Err(self.dtype_error(name, t, "I64"));
        };
        self.check_shape(name, t, shape)?;
        Ok(v)
    }

    /// A U8 (or BOOL) tensor of exactly `shape`.
    pub fn u8(&self, name: &str, shape: &[usize]) -> Result<&[u8], TensorError> {
        let t = self.get(name)?;
        let HostTensor::U8(v) = &t.data else {
            return Err(self.dtype_error(name, t, "U8"));
        };
        self.check_shape(name, t, shape)?;
        Ok(v)
    }

    /// Errors if the file holds tensors outside `known` (a misspelled name would otherwise be ignored).
    pub fn reject_unknown(&self, known: &[&str], hint: &str) -> Result<(), TensorError> {
        let names: Vec<String> =
            self.tensors.keys().filter(|k| !known.contains(&k.as_str())).map(|k| shown(k)).collect();
        if names.is_empty() {
            Ok(())
        } else {
            Err(TensorError::Unexpected { path: self.path.clone(), names, hint: hint.to_string() })
        }
    }

    pub fn value_error(&self, name: &str, msg: impl Into<String>) -> TensorError {
        TensorError::Value { path: self.path.clone(), name: name.into(), msg: msg.into() }
    }
}

/// The data of a tensor to write.
pub enum OutData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// Writes F32 tensors `(name, shape, data)` to a safetensors file (written beside and renamed, so a
/// failed write never leaves half a file under the name).
pub fn write_f32(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), TensorError> {
    let t: Vec<(String, Vec<usize>, OutData)> =
        tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), OutData::F32(d.clone()))).collect();
    write(path, &t, None)
}

/// Writes tensors of any supported dtype, with optional string metadata, like [`write_f32`].
pub fn write(
    path: &Path,
    tensors: &[(String, Vec<usize>, OutData)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), TensorError> {
    let werr = |msg: String| TensorError::Write { path: path.to_path_buf(), msg };
    // the file is written beside and renamed over the name: whatever else stands there (a device, a
    // FIFO, a directory, a link) would be replaced, not written to
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(werr("exists and is not a regular file; give the name of a new or regular file".into()));
    }
    let bytes: Vec<(Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(_, _, d)| match d {
            OutData::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            OutData::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        })
        .collect();
    let shaped = tensors.iter().zip(&bytes).map(|((n, s, _), (d, b))| (n.as_str(), s.clone(), *d, b.as_slice()));
    let views = views(path, shaped)?;
    let tmp = path.with_extension("safetensors.partial");
    let several = metadata.as_ref().is_some_and(|m| m.len() > 1);
    safetensors::serialize_to_file(views, metadata, &tmp).map_err(|e| werr(e.to_string()))?;
    if several {
        sort_metadata(&tmp).map_err(|e| werr(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| werr(e.to_string()))
}

/// A safetensors file's JSON header, read from its start (its length first, refused past `max` bytes)
/// without the tensors' data.
pub(crate) fn read_header(f: &mut std::fs::File, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len);
    if n > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a header longer than allowed"));
    }
    let mut header = vec![0u8; usize::try_from(n).map_err(std::io::Error::other)?];
    f.read_exact(&mut header)?;
    Ok(header)
}

/// Writes a safetensors file's `__metadata__` in key order, in place (the same header length, padded
/// with spaces as the format pads it): the crate writes it in a hash map's order, which differs from
/// process to process, so that the same tensors gave files of other bytes (and a prepared directory
/// another digest each time it was written).
fn sort_metadata(path: &Path) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut header = read_header(&mut f, u64::MAX)?;
    let n = header.len();
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&header) else { return Ok(()) };
    if let Some(serde_json::Value::Object(meta)) = v.get_mut("__metadata__") {
        let mut entries: Vec<(String, serde_json::Value)> = std::mem::take(meta).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        meta.extend(entries);
    }
    let text = serde_json::to_vec(&v)?;
    if text.len() > n {
        return Ok(());
    }
    header[..text.len()].copy_from_slice(&text);
    header[text.len()..].fill(b' ');
    f.seek(SeekFrom::Start(8))?;
    f.write_all(&header)?;
    f.sync_all()
}

/// Tensors `(name, shape, dtype, little-endian bytes)` as safetensors views (`path` names errors).
fn views<'a>(
    path: &Path,
    tensors: impl Iterator<Item = (&'a str, Vec<usize>, Dtype, &'a [u8])>,
) -> Result<Vec<(String, TensorView<'a>)>, TensorError> {
    tensors
        .map(|(name, shape, dtype, b)| {
            TensorView::new(dtype, shape, b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| TensorError::Write { path: path.to_path_buf(), msg: format!("tensor '{name}': {e}") })
        })
        .collect()
}

/// The bytes of a safetensors file of one-dimensional F32 tensors `(name, data)` (`path`, where they
/// will be written, names errors): for a writer that must know exactly what it wrote.
pub fn serialize_f32(path: &Path, tensors: &[(&str, &[f32])]) -> Result<Vec<u8>, TensorError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let shaped = tensors.iter().zip(&bytes).map(|((n, v), b)| (*n, vec![v.len()], Dtype::F32, b.as_slice()));
    safetensors::serialize(views(path, shaped)?, None)
        .map_err(|e| TensorError::Write { path: path.to_path_buf(), msg: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of F32 tensors given as (name, shape, data offsets), with `data` bytes of data.
    fn file(tensors: &[(&str, &[u64], (u64, u64))], data: usize) -> Vec<u8> {
        let header: serde_json::Map<String, serde_json::Value> = tensors
            .iter()
            .map(|(n, s, o)| {
                (n.to_string(), serde_json::json!({"dtype": "F32", "shape": s, "data_offsets": [o.0, o.1]}))
            })
            .collect();
        let h = serde_json::Value::Object(header).to_string();
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h.as_bytes());
        b.extend(vec![0u8; data]);
        b
    }

    #[test]
    fn invalid_offsets_name_the_tensor_whose_data_do_not_fit() {
        let p = Path::new("m.safetensors");
        let err = |b: &[u8]| TensorFile::parse(p, b).err().unwrap().to_string();
        assert!(TensorFile::parse(p, &file(&[("a", &[2], (0, 8)), ("b", &[2], (8, 16))], 16)).is_ok());
        // a shrunk to one value, its data with it, b's offsets not moved: safetensors named b
        let e = err(&file(&[("a", &[1], (0, 4)), ("b", &[2], (8, 16))], 16));
        assert!(e.contains("tensor a ends at data byte 4") && e.contains("the next tensor, b, starts at 8"), "{e}");
        // a's shape shrunk, its offsets not
        let e = err(&file(&[("a", &[1], (0, 8)), ("b", &[2], (8, 16))], 16));
        assert!(e.contains("tensor a has 8 data bytes; its shape [1] of F32 needs 4"), "{e}");
        // data left after the last tensor
        let e = err(&file(&[("a", &[2], (0, 8))], 12));
        assert!(e.contains("end at byte 8") && e.contains("12 bytes of data"), "{e}");
    }
}

#[cfg(test)]
mod metadata_order_tests {
    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![("y".to_owned(), vec![2], super::OutData::F32(vec![1.0, 0.0]))];
        let mut files = Vec::new();
        for i in 0..16 {
            let meta: std::collections::HashMap<String, String> =
                (0..4).map(|k| (format!("key{k}"), format!("value {k}"))).collect();
            let p = dir.path().join(format!("{i}.safetensors"));
            super::write(&p, &tensors, Some(meta)).unwrap();
            files.push(std::fs::read(&p).unwrap());
        }
        assert!(files.windows(2).all(|w| w[0] == w[1]));
        // still a file the crate reads, its metadata whole
        let (_, meta) = safetensors::SafeTensors::read_metadata(&files[0]).unwrap();
        assert_eq!(meta.metadata().as_ref().map(|m| m.len()), Some(4));
    }
}
