//! Prepared data read through memory maps: what `medtrain train` reads from a `data prepare` directory.
//!
//! [`Prepared::open`] reads `manifest.json`; [`Prepared::split`] maps `<split>.safetensors` and checks
//! the header of every tensor (dtype, shape against the manifest, offsets inside the file) without
//! reading the data. Only the `subject` and `site` tensors (8 bytes an example) are read at open: the
//! examples of each subject (the privacy unit) and the site range check. [`SplitData::batch`] decodes the
//! rows of the examples it is given, element by element from little-endian bytes (safetensors data need
//! not be aligned), straight into the batch buffers; no tensor is ever copied whole.
//!
//! Memory: pages of a file mapping that have been read count toward the process's resident set until
//! the kernel drops them, which it does only under memory pressure, so an epoch over a mapped file
//! would leave the whole file resident. Worse, one read can map far more than it reads: recent kernels
//! cache files in large folios (up to 2 MiB) and map a whole folio on a fault, so a batch of a few
//! hundred scattered rows can map gigabytes. A split therefore tallies, row by row, what its reads may
//! have mapped (every 2 MiB window a row touches) and, past [`RESIDENT_BUDGET`], tells the kernel it no
//! longer needs the mapping's pages (`MADV_DONTNEED`, mid-batch if need be): they leave the resident set
//! but stay in the page cache, so the next read of them is a minor fault, not disk I/O. What a split
//! holds resident stays under the budget plus one row's windows, whatever the size of the data or of a
//! batch.
//!
//! Layout of a batch (B examples, T buckets, K channels, L note tokens): lab features [B, T, 3K], per
//! bucket the K values, the K observation masks, the K times since last; the series mask [B, T] is 1
//! where any channel is observed in the bucket; note ids [B, L] and their token mask [B, L] (1 for the
//! first `note_len` tokens).
//!
//! Errors name the file and the tensor, with expected and found shapes or dtypes; they never print a
//! value from the data.

use super::DataError;
use crate::model::{HostBatch, HostInputs, HostTargets};
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The split names `data prepare` writes.
pub const SPLITS: [&str; 3] = ["train", "tuning", "held_out"];

/// How many bytes of a split's mapping reads may leave resident before they are released.
pub const RESIDENT_BUDGET: usize = 64 << 20;

/// The most one fault can map: a PMD-sized folio (2 MiB on x86-64; page-cache folios are at most
/// that, and naturally aligned in the file, which is mapped from offset 0). It also covers the 64 KiB
/// fault-around window of small pages.
const FAULT_WINDOW: usize = 2 << 20;

/// A `data prepare` output directory.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
    pub manifest: PreparedManifest,
    /// `manifest.json` as read (what [`digest_with`] checks)
    pub manifest_bytes: Vec<u8>,
}

/// The keys of `manifest.json` that training reads (others are ignored).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PreparedManifest {
    pub fingerprint: String,
    pub channels: Vec<String>,
    pub buckets: usize,
    pub lookback_hours: f64,
    pub note_tokens: usize,
    pub tokenizer_exportable: Option<bool>,
    pub categories: Vec<String>,
    /// the categories are `labels.classes` (a manifest without the key listed the data's own, in
    /// sorted order: training refuses such categorical labels)
    #[serde(default)]
    pub classes_declared: bool,
    /// the MEDS label column (`boolean_value`, `integer_value`, `float_value`, `categorical_value`)
    #[serde(default)]
    pub label_type: Option<String>,
    /// site names; the `site` tensors index into them
    #[serde(default)]
    pub sites: Vec<String>,
    /// examples per split, checked against each split file's tensors when present
    #[serde(default)]
    pub examples: HashMap<String, usize>,
    #[serde(default)]
    pub dp_phases: Vec<(f64, f64, u64)>,
    #[serde(default)]
    pub dp_epsilon: Option<f64>,
    #[serde(default)]
    pub dp_delta: Option<f64>,
    /// what the preparation's DP selections add to a run's delta (a DP tokenizer's threshold)
    #[serde(default)]
    pub dp_delta_added: f64,
}

/// What a batch's targets are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// `y` as 0/1; any other label is an error
    Binary,
    /// `y` as a class index below this count; any other label is an error
    Classes(usize),
    /// `y` as it is (finite)
    Real,
}

fn format_error(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::Format { path: path.to_path_buf(), msg: msg.into() }
}

/// What is wrong with a JSON document, without what serde quotes from it (values of mistyped keys).
fn json_what(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "cannot be read".to_owned(),
        Category::Syntax => "is not valid JSON".to_owned(),
        Category::Eof => "ends early".to_owned(),
        // "missing field `buckets`" names only a key of ours
        Category::Data if e.to_string().starts_with("missing field") => {
            e.to_string().split(" at line").next().unwrap_or_default().to_owned()
        }
        Category::Data => "has a key of the wrong type".to_owned(),
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// The safetensors error without what it quotes from the file (tensor names, JSON fragments).
fn header_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeaderDeserialization(j) | E::JsonError(j) => format!("the JSON header {}", json_what(j)),
        E::HeaderTooSmall | E::InvalidHeaderLength | E::MetadataIncompleteBuffer => {
            "truncated or padded: its header or tensor data do not match its length".to_owned()
        }
        E::TensorNotFound(_) | E::InvalidOffset(_) => "the offsets of a tensor are invalid".to_owned(),
        other => other.to_string(),
    }
}

/// The SHA-256 of a prepared directory as `data prepare` left it: over each regular file's name and
/// content, in name order. `data prepare` records it in the node's ledger with the input's fingerprint,
/// and a DP run checks it there: the manifest (fingerprint, DP releases, tokenizer provenance) and the
/// tensors are files a researcher can edit, and an edited manifest trained under another dataset's
/// permit, dropped the preparation's epsilon or made a tokenizer fitted without DP exportable.
pub fn digest(dir: &Path) -> Result<String, DataError> {
    digest_with(dir, &[])
}

/// [`digest`], where the files named in `read` (by file name) are hashed from the bytes given, the
/// bytes the caller read and uses, rather than read again: a file changed between the check and its
/// use would otherwise pass.
pub fn digest_with(dir: &Path, read: &[(&str, &[u8])]) -> Result<String, DataError> {
    use sha2::{Digest, Sha256};
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut all = Sha256::new();
    for path in names {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if !meta.is_file() {
            return Err(format_error(&path, "a prepared directory holds only the files data prepare wrote"));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut h = Sha256::new();
        match read.iter().find(|(n, _)| *n == name) {
            Some((_, bytes)) => h.update(bytes),
            None => {
                let mut file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
                std::io::copy(&mut file, &mut h).map_err(|e| DataError::io(&path, e))?;
            }
        }
        all.update(format!("{name}\0{:x}\n", h.finalize()).as_bytes());
    }
    Ok(format!("{:x}", all.finalize()))
}

impl Prepared {
    /// Reads `dir/manifest.json`.
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join("manifest.json");
        let bytes = crate::read_bounded(&path, crate::MAX_CONFIG_BYTES).map_err(|e| DataError::io(&path, e))?;
        let manifest: PreparedManifest =
            serde_json::from_slice(&bytes).map_err(|e| format_error(&path, format!("manifest {}", json_what(&e))))?;
        if manifest.buckets == 0 {
            return Err(format_error(&path, "manifest: buckets must be at least 1"));
        }
        Ok(Prepared { dir: dir.to_path_buf(), manifest, manifest_bytes: bytes })
    }

    /// Maps `<name>.safetensors` (`train`, `tuning` or `held_out`) and checks its header against the
    /// manifest; reads only the `subject` and `site` tensors.
    pub fn split(&self, name: &str) -> Result<SplitData, DataError> {
        if !SPLITS.contains(&name) {
            return Err(DataError::Invalid(format!("no split named {name:?} (expected train, tuning or held_out)")));
        }
        SplitData::open(&self.dir.join(format!("{name}.safetensors")), name, &self.manifest)
    }
}

/// Where a tensor's data lies in the mapping: `row` bytes per example from byte `start`.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    row: usize,
}

/// A file cut shorter under a live mapping makes a read past its new end a SIGBUS, which killed the
/// process without a word (found by a tester, truncating a split while a run trained on it): the
/// handler says which files are mapped and exits 1, as a kill would leave the run (its checkpoint
/// and ledger marks as they were: restore the file and resume).
mod mapped {
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    use std::sync::{Mutex, Once};

    /// The message the handler writes, made when a file is mapped (a signal handler may not allocate
    /// or lock): a leaked buffer, its length beside it.
    static MESSAGE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static LEN: AtomicUsize = AtomicUsize::new(0);
    static PATHS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub(super) fn add(path: &std::path::Path) {
        static INSTALL: Once = Once::new();
        let mut paths = PATHS.lock().unwrap_or_else(|e| e.into_inner());
        let shown = path.display().to_string();
        if !paths.contains(&shown) {
            paths.push(shown);
        }
        let text = format!(
            "error: a prepared data file changed while it was read (cut short or written in place): one of {}; the \
             run stopped as a killed one does: restore the file, then resume the run (medtrain train --resume)\n",
            paths.join(", ")
        );
        let bytes: &'static mut [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        // length first at 0, so that a signal between the two stores writes nothing rather than a
        // mismatched buffer
        LEN.store(0, Ordering::SeqCst);
        MESSAGE.store(bytes.as_mut_ptr(), Ordering::SeqCst);
        LEN.store(bytes.len(), Ordering::SeqCst);
        INSTALL.call_once(|| unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_sigbus as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGBUS, &act, std::ptr::null_mut());
        });
    }

    extern "C" fn on_sigbus(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // the length first: a message is never shorter than the one before (paths are only added), so a
        // newer buffer read after an older length is read within its bounds
        let len = LEN.load(Ordering::SeqCst);
        let ptr = MESSAGE.load(Ordering::SeqCst);
        unsafe {
            if !ptr.is_null() && len > 0 {
                libc::write(2, ptr as *const libc::c_void, len);
            }
            libc::_exit(1);
        }
    }
}

/// One split's examples, memory-mapped.
#[derive(Debug)]
pub struct SplitData {
    path: PathBuf,
    map: memmap2::Mmap,
    examples: usize,
    buckets: usize,
    channels: usize,
    note_tokens: usize,
    lab_values: Span,
    lab_mask: Span,
    lab_since_last: Span,
    y: Span,
    site: Option<Span>,
    notes: Option<(Span, Span)>,
    subjects: Vec<Vec<u32>>,
    /// bytes reads may have made resident since the last release
    touched: AtomicUsize,
}

fn le_f32(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_i64(b: &[u8]) -> i64 {
    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}")
}

impl SplitData {
    /// The split's file as mapped (what [`digest_with`] checks).
    pub fn file_bytes(&self) -> &[u8] {
        &self.map
    }

    fn open(path: &Path, split: &str, manifest: &PreparedManifest) -> Result<Self, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: the mapping is read-only, and the data are never mutated through it. A file changed
        // under a live mapping would change what is read (or fault); `data prepare` writes each split
        // beside and renames it into place, so preparing again replaces the file rather than changing it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        mapped::add(path);
        let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| format_error(path, header_error(&e)))?;
        let data_start = 8 + header_len;
        let (t, k, l) = (manifest.buckets, manifest.channels.len(), manifest.note_tokens);
        let y_info = meta.info("y").ok_or_else(|| format_error(path, "missing tensor 'y'"))?;
        let n = match y_info.shape[..] {
            [n] => n,
            _ => {
                return Err(format_error(path, format!("tensor 'y' has shape {:?}, expected [examples]", y_info.shape)))
            }
        };
        if u32::try_from(n).is_err() {
            return Err(format_error(path, format!("tensor 'y' has shape [{n}]: more than 2^32 examples")));
        }
        if let Some(&expected) = manifest.examples.get(split) {
            if expected != n {
                return Err(format_error(
                    path,
                    format!("tensor 'y' has shape [{n}], expected [{expected}] (the manifest's examples of {split})"),
                ));
            }
        }
        let span = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Option<Span>, DataError> {
            tensor_span(path, &meta, data_start, map.len(), name, dtype, shape)
        };
        let need = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Span, DataError> {
            span(name, dtype, shape)?.ok_or_else(|| format_error(path, format!("missing tensor '{name}'")))
        };
        let lab_values = need("lab_values", Dtype::F32, &[n, t, k])?;
        let lab_mask = need("lab_mask", Dtype::F32, &[n, t, k])?;
        let lab_since_last = need("lab_since_last", Dtype::F32, &[n, t, k])?;
        let y = need("y", Dtype::F32, &[n])?;
        let subject = need("subject", Dtype::I64, &[n])?;
        let site = span("site", Dtype::I64, &[n])?;
        let notes = match (span("note_ids", Dtype::I64, &[n, l])?, span("note_len", Dtype::I64, &[n])?) {
            (Some(ids), Some(len)) if l > 0 => Some((ids, len)),
            (None, None) if l == 0 => None,
            (None, _) if l > 0 => {
                return Err(format_error(path, "missing tensor 'note_ids' (the manifest has note_tokens)"))
            }
            (_, None) if l > 0 => {
                return Err(format_error(path, "missing tensor 'note_len' (the manifest has note_tokens)"))
            }
            _ => return Err(format_error(path, "tensor 'note_ids': the manifest's note_tokens is 0")),
        };
        let mut data = SplitData {
            path: path.to_path_buf(),
            map,
            examples: n,
            buckets: t,
            channels: k,
            note_tokens: l,
            lab_values,
            lab_mask,
            lab_since_last,
            y,
            site,
            notes,
            subjects: Vec::new(),
            touched: AtomicUsize::new(0),
        };
        data.subjects = data.read_subjects(subject)?;
        if let Some(site) = data.site {
            let sites = manifest.sites.len() as i64;
            if (0..n).any(|i| !(-1..sites).contains(&le_i64(data.bytes(site, i)))) {
                return Err(format_error(
                    path,
                    format!("tensor 'site': an index outside -1..{sites} (the manifest lists {sites} sites)"),
                ));
            }
        }
        data.release();
        Ok(data)
    }

    /// The examples of each group id of the `subject` tensor; ids must be dense (0..groups).
    fn read_subjects(&self, subject: Span) -> Result<Vec<Vec<u32>>, DataError> {
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for i in 0..self.examples {
            let g = le_i64(self.bytes(subject, i));
            // a group id is at most the number of examples before it
            if g < 0 || g as u64 > groups.len() as u64 {
                return Err(format_error(
                    &self.path,
                    "tensor 'subject': group ids must number subjects 0, 1, ... in the order they first appear",
                ));
            }
            let g = g as usize;
            if g == groups.len() {
                groups.push(Vec::new());
            }
            groups[g].push(i as u32);
        }
        Ok(groups)
    }

    /// The bytes of example `i`'s row of a tensor (checked at open to lie inside the mapping), counted
    /// as the aligned windows they lie in.
    fn bytes(&self, span: Span, i: usize) -> &[u8] {
        let start = span.start + i * span.row;
        let end = start + span.row;
        let windows = end.div_ceil(FAULT_WINDOW) - start / FAULT_WINDOW;
        self.touch(windows.max(1) * FAULT_WINDOW);
        &self.map[start..end]
    }

    /// Counts what reads may have made resident; past the budget, releases the mapping's pages.
    fn touch(&self, bytes: usize) {
        let before = self.touched.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > RESIDENT_BUDGET {
            self.release();
        }
    }

    fn release(&self) {
        self.touched.store(0, Ordering::Relaxed);
        #[cfg(unix)]
        // SAFETY: the mapping is a read-only shared map of a file that is not modified (see `open`);
        // dropping its pages only unmaps them from this process, and any later read (including one
        // through a slice borrowed now, by another thread) faults the same bytes back from the page cache.
        // An error only means the pages stay resident.
        let _ = unsafe { self.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }

    fn check_index(&self, i: usize) {
        assert!(i < self.examples, "example {i} out of range: the split has {} examples", self.examples);
    }

    pub fn len(&self) -> usize {
        self.examples
    }

    pub fn is_empty(&self) -> bool {
        self.examples == 0
    }

    /// T
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    /// K (lab features per bucket are 3K)
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// L, 0 when the split has no notes
    pub fn note_tokens(&self) -> usize {
        self.notes.map_or(0, |_| self.note_tokens)
    }

    /// Checks every note token id against the tokenizer's vocabulary (`0..vocab`): an id outside it
    /// (a split prepared with another tokenizer) was an error at the first batch that held it, after
    /// steps already spent. The error names the file and the count, not the ids.
    pub fn check_note_ids(&self, vocab: usize) -> Result<(), DataError> {
        let Some((ids, _)) = self.notes else { return Ok(()) };
        let outside = (0..self.examples)
            .map(|e| self.bytes(ids, e).chunks_exact(8).filter(|s| !(0..vocab as i64).contains(&le_i64(s))).count())
            .sum::<usize>();
        if outside > 0 {
            return Err(format_error(
                &self.path,
                format!(
                    "tensor 'note_ids': {outside} token id(s) outside the tokenizer's vocabulary of {vocab}: the notes \
                     were prepared with another tokenizer; prepare the data again"
                ),
            ));
        }
        Ok(())
    }

    /// The file this split is mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `y` of example `i` (panics when `i >= len()`).
    pub fn label(&self, i: usize) -> f32 {
        self.check_index(i);
        le_f32(self.bytes(self.y, i))
    }

    /// The site of example `i` (index into the manifest's `sites`), `None` when unknown or when the
    /// file has no `site` tensor (panics when `i >= len()`).
    pub fn site(&self, i: usize) -> Option<u32> {
        self.check_index(i);
        let span = self.site?;
        u32::try_from(le_i64(self.bytes(span, i))).ok()
    }

    /// Examples of each subject (privacy unit), subjects in order of their group id; built once at open
    /// (O(n) u32s).
    pub fn subjects(&self) -> &[Vec<u32>] {
        &self.subjects
    }

    /// The host batch of `examples` (in that order; repeats allowed) for a model reading the lab series
    /// and/or the notes. Lab features per bucket F = 3K, laid out [values K, mask K, since_last K]; the
    /// series mask [B, T] is 1 where any channel is observed in the bucket. Notes: ids [B, L] (an id
    /// outside u32 is an error naming `note_ids`), token mask 1 for the first `note_len` tokens
    /// (`note_len` clamped to [0, L]). `lab && text` gives [`HostInputs::Both`] with steps T and the
    /// series mask; `lab` only [`HostInputs::Dense`] with steps T; `text` only [`HostInputs::Tokens`]
    /// with steps L and the token mask. Targets: [`Targets::Binary`] `y` as 0/1, [`Targets::Classes`]
    /// `y` as a class index, [`Targets::Real`] `y`; a label that does not fit is an error (no value
    /// printed). An example index out of range, a batch of neither, or notes from a split without them
    /// are errors.
    pub fn batch(&self, examples: &[usize], lab: bool, text: bool, targets: Targets) -> Result<HostBatch, DataError> {
        if !lab && !text {
            return Err(DataError::Invalid("a batch needs the lab series, the notes or both".into()));
        }
        if let Some(&i) = examples.iter().find(|&&i| i >= self.examples) {
            return Err(DataError::Invalid(format!(
                "{}: example {i} is out of range ({} examples)",
                self.path.display(),
                self.examples
            )));
        }
        let notes = match (text, self.notes) {
            (true, None) => {
                return Err(format_error(
                    &self.path,
                    "has no notes (tensor 'note_ids'); prepare with features.note_tokens > 0",
                ))
            }
            (true, Some(n)) => Some(n),
            (false, _) => None,
        };
        let b = examples.len();
        let (t, k) = (self.buckets, self.channels);
        let targets = self.targets(examples, targets)?;
        let series = lab.then(|| self.lab_rows(examples)).transpose()?;
        let tokens = notes.map(|(ids, len)| self.note_rows(examples, ids, len)).transpose()?;
        let l = self.note_tokens;
        let (inputs, steps, mask) = match (series, tokens) {
            (Some((x, series_mask)), Some((ids, token_mask))) => {
                (HostInputs::Both { x, features: 3 * k, ids, tokens: l, token_mask }, t, series_mask)
            }
            (Some((x, series_mask)), None) => (HostInputs::Dense { x, features: 3 * k }, t, series_mask),
            (None, Some((ids, token_mask))) => (HostInputs::Tokens(ids), l, token_mask),
            (None, None) => unreachable!("lab or text was checked"),
        };
        Ok(HostBatch { examples: b, steps, inputs, mask, targets })
    }

    /// x: [B, T, 3K] (values, mask, since last per bucket) and the series mask [B, T]. A value that is
    /// not finite, or a mask that is not 0 or 1, is an error naming the tensor (what `data prepare`
    /// writes has none; a file written otherwise trained on NaN to a chance AUROC).
    fn lab_rows(&self, examples: &[usize]) -> Result<(Vec<f32>, Vec<f32>), DataError> {
        let (t, k) = (self.buckets, self.channels);
        let f = 3 * k;
        let mut x = vec![0f32; examples.len() * t * f];
        let mut mask = vec![0f32; examples.len() * t];
        if k == 0 {
            // no channels: nothing observed
            return Ok((x, mask));
        }
        for (r, &e) in examples.iter().enumerate() {
            let x_row = &mut x[r * t * f..(r + 1) * t * f];
            for (part, span) in [self.lab_values, self.lab_mask, self.lab_since_last].into_iter().enumerate() {
                let src = self.bytes(span, e);
                for (bucket, src) in src.chunks_exact(4 * k).enumerate() {
                    let dst = &mut x_row[bucket * f + part * k..bucket * f + (part + 1) * k];
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                        *d = le_f32(s);
                    }
                }
            }
            for (bucket, m) in mask[r * t..(r + 1) * t].iter_mut().enumerate() {
                let cells = &x_row[bucket * f..(bucket + 1) * f];
                if let Some(i) = cells.iter().position(|v| !v.is_finite()) {
                    let name = ["lab_values", "lab_mask", "lab_since_last"][i / k];
                    return Err(format_error(&self.path, format!("tensor '{name}': a value that is not finite")));
                }
                let observed = &cells[k..2 * k];
                if observed.iter().any(|&v| v != 0.0 && v != 1.0) {
                    return Err(format_error(&self.path, "tensor 'lab_mask': a value that is not 0 or 1"));
                }
                *m = if observed.iter().any(|&v| v != 0.0) { 1.0 } else { 0.0 };
            }
        }
        Ok((x, mask))
    }

    /// ids: [B, L] and the token mask [B, L].
    fn note_rows(&self, examples: &[usize], ids_span: Span, len_span: Span) -> Result<(Vec<u32>, Vec<f32>), DataError> {
        let l = self.note_tokens;
        let mut ids = vec![0u32; examples.len() * l];
        let mut mask = vec![0f32; examples.len() * l];
        for (r, &e) in examples.iter().enumerate() {
            for (d, s) in ids[r * l..(r + 1) * l].iter_mut().zip(self.bytes(ids_span, e).chunks_exact(8)) {
                *d = u32::try_from(le_i64(s))
                    .map_err(|_| format_error(&self.path, "tensor 'note_ids': a token id outside 0..2^32"))?;
            }
            let len = le_i64(self.bytes(len_span, e)).clamp(0, l as i64) as usize;
            mask[r * l..r * l + len].fill(1.0);
        }
        Ok((ids, mask))
    }

    fn targets(&self, examples: &[usize], targets: Targets) -> Result<HostTargets, DataError> {
        let y = examples.iter().map(|&e| le_f32(self.bytes(self.y, e)));
        let bad = |msg: String| format_error(&self.path, format!("tensor 'y': {msg}"));
        Ok(match targets {
            Targets::Binary => HostTargets::Binary(
                y.map(|v| {
                    if v == 0.0 || v == 1.0 {
                        Ok(v)
                    } else {
                        Err(bad("a label is not 0 or 1 (binary targets need boolean_value labels)".into()))
                    }
                })
                .collect::<Result<_, _>>()?,
            ),
            Targets::Classes(classes) => HostTargets::Classes(
                y.map(|v| {
                    if v >= 0.0 && v.fract() == 0.0 && (v as f64) < classes as f64 {
                        Ok(v as u32)
                    } else {
                        Err(bad(format!("a label is not a class index below {classes}")))
                    }
                })
                .collect::<Result<_, _>>()?,
            ),
            Targets::Real => HostTargets::Real(
                y.map(|v| if v.is_finite() { Ok(v) } else { Err(bad("a label is not a finite number".into())) })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// Where tensor `name` lies, after checking its dtype, its shape and that its data fall inside the file;
/// `None` when the file has no such tensor.
fn tensor_span(
    path: &Path,
    meta: &Metadata,
    data_start: usize,
    file_len: usize,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<Option<Span>, DataError> {
    let Some(info) = meta.info(name) else { return Ok(None) };
    if info.dtype != dtype {
        return Err(format_error(
            path,
            format!("tensor '{name}' has dtype {}, expected {}", dtype_name(info.dtype), dtype_name(dtype)),
        ));
    }
    if info.shape != shape {
        return Err(format_error(path, format!("tensor '{name}' has shape {:?}, expected {shape:?}", info.shape)));
    }
    let (s, e) = info.data_offsets;
    let size = dtype.bitsize() / 8;
    let per_example = shape.iter().skip(1).try_fold(size, |a, &d| a.checked_mul(d));
    let total = per_example.and_then(|r| r.checked_mul(shape[0]));
    let start = data_start.checked_add(s);
    let end = data_start.checked_add(e);
    match (per_example, total, start, end) {
        (Some(row), Some(total), Some(start), Some(end)) if s <= e && end <= file_len && end - start == total => {
            Ok(Some(Span { start, row }))
        }
        _ => Err(format_error(path, format!("tensor '{name}': its data offsets do not match its shape or the file"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn split_data_is_send_and_sync() {
        send_sync::<SplitData>();
    }
}
