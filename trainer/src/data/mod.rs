//! Data: what a secure environment holds, turned into examples for training.
//!
//! Readers (FHIR R4 bulk NDJSON, MEDS parquet, CSV) stream their input into one event model
//! ([`Dataset`]): subject, time, code, numeric value, unit, text. The identifier guard refuses (or
//! redacts) direct identifiers; the QA report (`medtrain data check`) says what the input holds;
//! labels, subject splits and featurization make training examples; the fingerprint names the input of
//! a run. No error or report prints a patient value or identifier: they name files, lines, resources,
//! fields and kinds.

pub mod auto;
pub mod bounded;
pub mod catalog;
pub mod charset;
pub mod check;
pub mod code_map;
pub mod csv;
pub mod demo;
pub mod dp_tokenizer;
pub mod features;
pub mod fhir;
pub mod fingerprint;
pub mod guard;
pub mod labels;
pub mod meds;
pub mod prepare;
pub mod prepared;
pub mod reportable;
pub mod split;
pub mod text;
pub mod time;
pub mod units;
pub mod walk;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The path of a file as an error prints it: the name of a data file (`.csv`, `.tsv`, `.txt`,
/// `.parquet`, `.ndjson`, `.json`, `.jsonl`, gzipped or not) as [`guard::shown_path`] shows it (a
/// per-patient file name, `Smith_John.csv` or `patient_12345678.parquet`, is not printed); the user's
/// own configs and output directories as they are.
pub fn shown_file(path: &Path) -> String {
    const DATA: &[&str] = &["csv", "tsv", "txt", "parquet", "ndjson", "json", "jsonl"];
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let data = name.rsplit_once('.').is_some_and(|(_, ext)| DATA.contains(&ext));
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if data => {
            let name = guard::shown_path(&name.to_string_lossy());
            dir.join(name).display().to_string()
        }
        _ => path.display().to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {msg}", shown_file(.path))]
    Io { path: PathBuf, msg: String },
    #[error("{}: {msg}", shown_file(.path))]
    Format { path: PathBuf, msg: String },
    #[error("{}:{line}: {msg}", shown_file(.path))]
    Line { path: PathBuf, line: u64, msg: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        DataError::Io { path: path.to_path_buf(), msg: e.to_string() }
    }

    /// The error of the input `root` or a file inside it, naming the file by its path as
    /// [`guard::shown_path`] shows it, each folder as well as the file name: an export with a folder
    /// per patient (`input/Smith_John/labs.csv`, `input/12345678/labs.csv`) has it shown as `(a name that is
    /// not printed)`, and so has an input that is one patient's folder (`exports/Smith_John`).
    pub fn inside(self, root: &Path) -> Self {
        let shown = |p: &Path| PathBuf::from(guard::shown_path(&p.to_string_lossy()));
        let root_shown = || PathBuf::from(guard::shown_user_path(&root.to_string_lossy()));
        let rename = |path: PathBuf| match path.strip_prefix(root) {
            Ok(rel) if !rel.as_os_str().is_empty() => root_shown().join(shown(rel)),
            Ok(_) => root_shown(),
            Err(_) => path,
        };
        match self {
            DataError::Io { path, msg } => DataError::Io { path: rename(path), msg },
            DataError::Format { path, msg } => DataError::Format { path: rename(path), msg },
            DataError::Line { path, line, msg } => DataError::Line { path: rename(path), line, msg },
            e @ DataError::Invalid(_) => e,
        }
    }

    /// True for errors that mean the input could not be read at all (exit code 2 of `data check`).
    pub fn unreadable(&self) -> bool {
        matches!(self, DataError::Io { .. } | DataError::Format { .. })
    }
}

pub type Result<T> = std::result::Result<T, DataError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Lab,
    Vital,
    /// a coded or ordinal lab result (`valueCodeableConcept`, urine protein "2+", "陰性"): the value is
    /// its ordinal level (see `fhir::ordinal`), the code the test's
    Coded,
    Note,
    Encounter,
    Other,
}

impl EventKind {
    pub const ALL: [EventKind; 6] =
        [EventKind::Lab, EventKind::Vital, EventKind::Coded, EventKind::Note, EventKind::Encounter, EventKind::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Lab => "lab",
            EventKind::Vital => "vital",
            EventKind::Coded => "coded",
            EventKind::Note => "note",
            EventKind::Encounter => "encounter",
            EventKind::Other => "other",
        }
    }
}

/// Strings stored once, addressed by index.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    pub names: Vec<String>,
    index: HashMap<String, u32>,
    /// the index returned last: readers meet runs of one subject (a patient's Observations one
    /// after the other), and a string compare is cheaper than hashing
    last: u32,
}

impl Interner {
    pub fn get_or_insert(&mut self, s: &str) -> u32 {
        if self.names.get(self.last as usize).is_some_and(|n| n == s) {
            return self.last;
        }
        let i = match self.index.get(s) {
            Some(&i) => i,
            None => {
                let i = self.names.len() as u32;
                self.names.push(s.to_owned());
                self.index.insert(s.to_owned(), i);
                i
            }
        };
        self.last = i;
        i
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.index.get(s).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A code with its system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Code {
    pub system: String,
    pub code: String,
}

/// One event. Indices point into the [`Dataset`]'s tables; `NONE` marks a missing unit or text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub subject: u32,
    /// seconds since the Unix epoch, UTC
    pub time: i64,
    pub kind: EventKind,
    /// index into `Dataset::codes`
    pub code: u32,
    /// NaN when there is none
    pub value: f32,
    /// index into `Dataset::units`, or `NONE`
    pub unit: u32,
    /// index into `Dataset::texts` (notes), or `NONE`
    pub text: u32,
    /// encounters: the end of the period (`i64::MIN` when open or unknown)
    pub end: i64,
}

pub const NONE: u32 = u32::MAX;

/// Everything read from one input, as events over interned subjects, codes and units.
#[derive(Debug, Default)]
pub struct Dataset {
    /// subject ids as the input has them (FHIR Patient ids, MEDS integers as decimal strings)
    pub subjects: Interner,
    pub codes: Vec<Code>,
    /// code system -> code -> (index into `codes`, the `read.code_map` row it was mapped by or `NONE`),
    /// looked up with borrowed strings: no allocation per event. A mapped code is the key of its
    /// target's index.
    code_index: HashMap<String, HashMap<String, (u32, u32)>>,
    pub units: Interner,
    pub texts: Vec<String>,
    pub events: Vec<Event>,
    /// site (organization) of a subject, where the input says
    pub sites: HashMap<u32, String>,
    /// MEDS `subject_splits`, when the input has them
    pub splits: HashMap<u32, String>,
    /// hashes of the identifiers an export's Patient resources hold, searched for in their notes
    pub subject_identifiers: guard::subject::Store,
    /// the subjects a Patient resource of the input describes (FHIR)
    pub patients: std::collections::HashSet<u32>,
    /// pairs of subjects the input says are one person (FHIR `Patient.link`)
    pub links: Vec<(u32, u32)>,
    /// subject -> the subject it was merged into ([`Dataset::merge_linked_subjects`])
    pub merged_into: HashMap<u32, u32>,
    /// catalogue row of each code (by code index), looked up once per code
    catalogue_row: Vec<Option<Option<usize>>>,
    /// unit conversions to the catalogue unit, parsed once per (unit, catalogue row)
    pub conversions: units::Converter,
    /// while FHIR is read: a hash of each note read from a DocumentReference or a DiagnosticReport
    /// (subject, time, text), and how many of each gave it unmatched, to read once a note both give
    /// (each side: how many unmatched, and the event of the one read last, `u32::MAX` where unknown)
    pub(crate) report_notes: HashMap<u128, [(u32, u32); 2]>,
    /// while FHIR is read: the notes whose text is in the export's Binaries, read after the others
    pub(crate) url_notes: Vec<fhir::UrlNote>,
    /// while FHIR is read: the Binary resources read (to know the files that hold them)
    pub(crate) binaries: u64,
    /// while a FHIR Bundle is read: its Binaries, for its notes that link them
    pub(crate) bundle_binaries: Vec<fhir::BundleBinary>,
    /// while a FHIR Bundle is read: how many Bundles hold the entry being read
    pub(crate) bundle_depth: u32,
    /// while FHIR is read: the versions of each resource read, to keep only the latest's events
    pub(crate) versions: fhir::Versions,
}

impl Dataset {
    /// The index of a code, interned on first sight: a code `map` has a row for is the code of its
    /// target (returned with the row's index; the map is consulted once per distinct code).
    pub fn code(&mut self, system: &str, code: &str, map: Option<&code_map::CodeMap>) -> (u32, Option<u32>) {
        if let Some(&(i, row)) = self.code_index.get(system).and_then(|c| c.get(code)) {
            return (i, (row != NONE).then_some(row));
        }
        let mapped = map.and_then(|m| m.get(system, code).map(|row| (m.target(row), row)));
        // a JLAC10 code written otherwise (`3C015-0000-023-271-01`, lower case, full width) is the code
        // it writes: one test, not a second code outside the catalogue
        if mapped.is_none() && catalog::JLAC10_SYSTEMS.contains(&system) {
            if let Some(canonical) = catalog::jlac10_canonical(code) {
                let (i, row) = self.code(system, &canonical, map);
                self.code_index.entry(system.to_owned()).or_default().insert(code.to_owned(), (i, row.unwrap_or(NONE)));
                return (i, row);
            }
        }
        let (i, row) = match mapped {
            Some((t, row)) => (self.code(t.system, &t.code, None).0, row),
            None => {
                self.codes.push(Code { system: system.to_owned(), code: code.to_owned() });
                ((self.codes.len() - 1) as u32, NONE)
            }
        };
        self.code_index.entry(system.to_owned()).or_default().insert(code.to_owned(), (i, row));
        (i, (row != NONE).then_some(row))
    }

    /// The catalogue row of a code index (looked up once per code).
    pub fn catalogue_row(&mut self, code: u32) -> Option<usize> {
        let c = code as usize;
        if self.catalogue_row.len() <= c {
            self.catalogue_row.resize(c + 1, None);
        }
        *self.catalogue_row[c].get_or_insert_with(|| {
            let k = &self.codes[c];
            catalog::lookup_index(&k.system, &k.code)
        })
    }

    /// Converts a lab or vital value to its catalogue unit, in place: a value in a commensurable unit
    /// becomes a value in the catalogue unit (and its unit the catalogue's); anything else is left as
    /// it is, for the QA report to count.
    fn to_catalogue_unit(&mut self, code: u32, unit: &mut u32, value: &mut f32) {
        if *unit == NONE || value.is_nan() {
            return;
        }
        let Some(row) = self.catalogue_row(code) else { return };
        let lab = &catalog::LABS[row];
        let name = &self.units.names[*unit as usize];
        if name == lab.unit {
            return;
        }
        if let Some(v) = self.conversions.convert(*unit, name, row, lab, *value) {
            *value = v;
            *unit = self.units.get_or_insert(lab.unit);
        }
    }

    /// Merges the subjects that [`Dataset::links`] says are one person into one privacy unit: each
    /// linked group's events, site and split move to its first-read subject (the merged ones keep no
    /// events). Two records of one person were two privacy units, each clipped and sampled on its own,
    /// which breaks the per-patient guarantee. Returns how many subjects were merged into another.
    pub fn merge_linked_subjects(&mut self) -> usize {
        if self.links.is_empty() {
            return 0;
        }
        // union-find with path compression (a chain of links stays linear)
        fn root(parent: &mut HashMap<u32, u32>, s: u32) -> u32 {
            let mut r = s;
            while let Some(&p) = parent.get(&r) {
                if p == r {
                    break;
                }
                r = p;
            }
            let mut at = s;
            while let Some(&p) = parent.get(&at) {
                if p == r || at == r {
                    break;
                }
                parent.insert(at, r);
                at = p;
            }
            r
        }
        let mut parent: HashMap<u32, u32> = HashMap::new();
        for &(a, b) in &self.links {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            if ra != rb {
                // the smaller index (read first) stands for the group
                let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
                parent.insert(gone, keep);
            }
        }
        let gone: Vec<u32> = parent.keys().copied().collect();
        for s in gone {
            let r = root(&mut parent, s);
            if r != s {
                self.merged_into.insert(s, r);
            }
        }
        for e in &mut self.events {
            if let Some(&r) = self.merged_into.get(&e.subject) {
                e.subject = r;
            }
        }
        // in subject order, so that which merged record's site or split a group keeps does not depend
        // on a hash map's order
        let mut merged: Vec<(u32, u32)> = self.merged_into.iter().map(|(&s, &r)| (s, r)).collect();
        merged.sort_unstable();
        for (s, r) in merged {
            if let Some(site) = self.sites.remove(&s) {
                self.sites.entry(r).or_insert(site);
            }
            if let Some(split) = self.splits.remove(&s) {
                self.splits.entry(r).or_insert(split);
            }
        }
        self.merged_into.len()
    }

    /// The subject that stands for `s` (itself unless [`Dataset::merge_linked_subjects`] merged it).
    pub fn unit_of(&self, s: u32) -> u32 {
        self.merged_into.get(&s).copied().unwrap_or(s)
    }

    /// The index of a code read (a mapped local code: its target's).
    pub fn find_code(&self, system: &str, code: &str) -> Option<u32> {
        self.code_index.get(system)?.get(code).map(|&(i, _)| i)
    }

    /// Sorts events by (subject, time, kind, code): the order featurization and labels expect.
    pub fn sort(&mut self) {
        self.events.sort_by_key(|e| (e.subject, e.time, e.kind, e.code));
    }

    /// Drops the notes given again (the same subject, time, code and text: an export's resource
    /// repeated, a file concatenated to itself), keeping the first; returns how many. (Each copy took
    /// the note window's room again, pushing earlier notes out; the report counts them as `duplicate`.)
    pub fn drop_repeated_notes(&mut self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut seen: HashMap<(u32, i64, u32, u64), Vec<u32>> = HashMap::new();
        let keep: Vec<bool> = self
            .events
            .iter()
            .map(|e| {
                let Some(text) = (e.text != NONE).then(|| self.texts.get(e.text as usize)).flatten() else {
                    return true;
                };
                let mut h = std::hash::DefaultHasher::new();
                text.hash(&mut h);
                let kept = seen.entry((e.subject, e.time, e.code, h.finish())).or_default();
                if kept.iter().any(|&t| self.texts.get(t as usize) == Some(text)) {
                    return false;
                }
                kept.push(e.text);
                true
            })
            .collect();
        let dropped = keep.iter().filter(|k| !**k).count() as u64;
        if dropped > 0 {
            let mut k = keep.iter();
            self.events.retain(|_| *k.next().unwrap_or(&true));
        }
        dropped
    }

    /// The events of each subject, as ranges of the (sorted) event list.
    pub fn by_subject(&self) -> Vec<std::ops::Range<usize>> {
        let mut out = vec![0..0; self.subjects.len()];
        let mut i = 0;
        while i < self.events.len() {
            let s = self.events[i].subject;
            let start = i;
            while i < self.events.len() && self.events[i].subject == s {
                i += 1;
            }
            out[s as usize] = start..i;
        }
        out
    }
}

/// How readers treat what they find.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// code systems in order of preference when a concept has several codings
    pub code_systems: Vec<String>,
    /// read vital-sign Observations as events too
    pub vitals: bool,
    pub identifiers: guard::Policy,
    /// the largest fraction of malformed lines tolerated before the input is refused
    pub max_malformed_fraction: f64,
    /// keep events (false: count them only, as `data check` does on large input)
    pub keep_events: bool,
    /// what one line, one note, one compressed file may cost
    pub limits: ReadLimits,
    /// the text encoding of CSV files (`read.encoding`; auto: seen from each file's start)
    pub encoding: charset::Choice,
    /// the zone of times written without one (`read.time_zone`); absent: UTC, and a warning where
    /// other times of the input carry an offset
    pub time_zone: Option<time::Zone>,
    /// CSV header names where the files do not use medtrain's (`read.columns`)
    pub columns: csv::Columns,
    /// local codes read as LOINC or JLAC10 codes (`read.code_map`)
    pub code_map: Option<std::sync::Arc<code_map::CodeMap>>,
}

/// UTC, the zone of zone-less times where `read.time_zone` is absent.
static UTC: time::Zone = time::Zone::UTC;

impl ReadOptions {
    /// The zone times without one are read in.
    pub fn zone(&self) -> &time::Zone {
        self.time_zone.as_ref().unwrap_or(&UTC)
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            code_systems: vec![catalog::LOINC.to_owned(), catalog::JLAC10.to_owned()],
            vitals: false,
            identifiers: guard::Policy::Reject,
            max_malformed_fraction: 0.0,
            keep_events: true,
            limits: ReadLimits::default(),
            encoding: charset::Choice::Auto,
            time_zone: None,
            columns: csv::Columns::default(),
            code_map: None,
        }
    }
}

/// Bounds on what any input can make a reader hold or do; each is a key of the data config's `[read]`
/// table and a flag of `data check`.
///
/// - `max_line_bytes` (64 MiB): a longer NDJSON line is a malformed line (file and line number,
///   counted toward `max_malformed_fraction`) and is skipped as it streams past, never held whole. A
///   bulk-export resource is kilobytes; a DocumentReference with an embedded scanned report a few MB.
/// - `max_note_bytes` (1 MiB of UTF-8): a longer note (attachment, Composition text, CSV note) is cut
///   at a character boundary and counted (`note_truncated` in the QA report). A discharge summary is
///   a few tens of KB; the note encoder reads at most a few thousand tokens of it.
/// - `max_decompressed_bytes` (64 GiB per file): a `.gz` file that inflates to more is an error
///   naming the file and the key. Bulk-data servers split exports into files far below this.
/// - `max_gz_ratio` (250): a `.gz` file that inflates to more than this many times its compressed size
///   is an error naming the file and the key (checked once it has given 16 MiB). Deflate's ceiling is
///   about 1032; real NDJSON compresses 5-30x (the demo export: 14x); a file of one repeated byte,
///   the usual bomb, reaches the ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadLimits {
    pub max_line_bytes: u64,
    pub max_note_bytes: u64,
    pub max_decompressed_bytes: u64,
    pub max_gz_ratio: f64,
}

impl ReadLimits {
    pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 << 20;
    pub const DEFAULT_MAX_NOTE_BYTES: u64 = 1 << 20;
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 << 30;
    pub const DEFAULT_MAX_GZ_RATIO: f64 = 250.0;
    /// The ratio is judged only once a file has given this much: small files of blank lines or one
    /// repeated record compress absurdly well and are harmless.
    pub const GZ_RATIO_GRACE_BYTES: u64 = 16 << 20;

    /// Checks each bound against what it can mean: the error is (key, what is allowed), the key as in
    /// the `[read]` table (`max_line_bytes`).
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let range = |k: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err((k, format!("must be in [{lo}, {hi}] (got {v})")))
            }
        };
        range("max_line_bytes", self.max_line_bytes, 1 << 10, 4 << 30)?;
        range("max_note_bytes", self.max_note_bytes, 1, 1 << 30)?;
        range("max_decompressed_bytes", self.max_decompressed_bytes, 1, u64::MAX)?;
        if !(self.max_gz_ratio >= 1.0 && self.max_gz_ratio <= 1e9) {
            return Err(("max_gz_ratio", format!("must be in [1, 1e9] (got {})", self.max_gz_ratio)));
        }
        Ok(())
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
            max_note_bytes: Self::DEFAULT_MAX_NOTE_BYTES,
            max_decompressed_bytes: Self::DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_gz_ratio: Self::DEFAULT_MAX_GZ_RATIO,
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary; true when it was cut.
pub fn truncate_note(text: &mut String, max: u64) -> bool {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // back to the last white space in the last 64 bytes: a word cut in two (the first digits of a phone
    // number, a name's first letters) is no word the guard can tell for what it was (found by a tester:
    // `090-12` of a number at the cut stayed in the note)
    let from = end.saturating_sub(64);
    if let Some(space) =
        text[..end].char_indices().rev().take_while(|(i, _)| *i >= from).find(|(_, c)| c.is_whitespace())
    {
        end = space.0;
    }
    text.truncate(end);
    true
}

/// The kinds of input a path can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Fhir,
    Meds,
    Csv,
}

impl Format {
    /// The name `data.format` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Fhir => "fhir",
            Format::Meds => "meds",
            Format::Csv => "csv",
        }
    }
}

/// Which reader a path needs: a MEDS root (`data/*.parquet`), a directory or file of FHIR NDJSON, or
/// CSV files.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_file() {
        if has_ext(path, FHIR_EXTS) || has_ext(path, FHIR_JSON_EXTS) {
            return Ok(Format::Fhir);
        }
        if has_ext(path, CSV_EXTS) {
            return Ok(Format::Csv);
        }
        return Err(DataError::Format {
            path: path.into(),
            msg: "not an .ndjson(.gz), .jsonl(.gz), .json(.gz) (a FHIR Bundle), .csv(.gz) or .tsv(.gz) file".into(),
        });
    }
    // a MEDS root: data/ beside metadata/, or data/ holding parquet shards (metadata/ is optional for
    // the reader: codes.parquet and subject_splits.parquet are read where present)
    let data = path.join("data");
    if data.is_dir()
        && (path.join("metadata").is_dir()
            || walk::files(&data, true).is_ok_and(|f| f.iter().any(|p| has_ext(p, &[".parquet"]))))
    {
        return Ok(Format::Meds);
    }
    let entries = list_dir(path)?;
    // (`.jsonl` is no reason to read a directory of CSV files as FHIR: a notes export beside them)
    if entries.iter().any(|p| has_ext(p, &FHIR_EXTS[..2])) {
        return Ok(Format::Fhir);
    }
    // CSV, unless its only CSV files are label files beside FHIR documents (Synthea's `fhir/`
    // directory: a Bundle per patient, with the project's labels.csv)
    let labels = |p: &PathBuf| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("labels"));
    let json = entries.iter().any(|p| has_ext(p, FHIR_JSON_EXTS) || has_ext(p, FHIR_EXTS));
    if entries.iter().any(|p| has_ext(p, CSV_EXTS) && !(json && labels(p))) {
        return Ok(Format::Csv);
    }
    if json {
        return Ok(Format::Fhir);
    }
    Err(DataError::Format {
        path: path.into(),
        msg: "holds no FHIR NDJSON (*.ndjson, *.jsonl, gzipped or not) or JSON Bundles (*.json, *.json.gz), MEDS \
              (data/*.parquet) or CSV (*.csv, *.tsv, gzipped or not) input"
            .into(),
    })
}

/// The file names a FHIR export's files end with, and a CSV input's (compared without case).
/// (`.jsonl`: JSON Lines, the same format under the name other tools give it)
/// (`.ndjson` first: [`detect`] reads a directory with one as FHIR before any other)
pub const FHIR_EXTS: &[&str] = &[".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz"];
/// FHIR JSON documents (a Bundle, or one resource, per file: Synthea's output, a server's search
/// results), alone or beside NDJSON files.
pub const FHIR_JSON_EXTS: &[&str] = &[".json", ".json.gz"];
/// CSV input files (`.tsv`: the tab-separated files Excel and databases write; the delimiter is the
/// header line's in either), gzipped or not (MIMIC-IV's `labevents.csv.gz`).
pub const CSV_EXTS: &[&str] = &[".csv", ".tsv", ".csv.gz", ".tsv.gz"];

/// A note's text that is an RTF document (as EHR extracts keep notes in a text column: `{\rtf1...`)
/// as its text ([`fhir::rtf_to_text`]); any other text as it is. The column was text already (decoded
/// in its file's encoding): a character past ASCII in it is given to the RTF reader as the `\uN` it
/// is, not as bytes of the document's code page (which read them as other characters).
pub(crate) fn note_from_rtf(text: String) -> String {
    if !text.trim_start().starts_with("{\\rtf") {
        return text;
    }
    let rtf: std::borrow::Cow<str> = if text.is_ascii() {
        std::borrow::Cow::Borrowed(&text)
    } else {
        let mut escaped = String::with_capacity(text.len() + text.len() / 2);
        let mut units = [0u16; 2];
        for c in text.chars() {
            if c.is_ascii() {
                escaped.push(c);
            } else {
                // each UTF-16 unit as a signed `\uN` in a group of its own with no fallback to skip
                for u in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("{{\\uc0\\u{}}}", *u as i16));
                }
            }
        }
        std::borrow::Cow::Owned(escaped)
    };
    fhir::rtf_to_text(rtf.as_bytes()).unwrap_or(text)
}

/// Whether the file name of `p` ends with one of `exts`, in any case (`Observation.NDJSON`).
pub fn has_ext(p: &Path, exts: &[&str]) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    exts.iter().any(|e| name.ends_with(e))
}

/// The files under an input directory, in its subdirectories too, sorted by path; links out of the
/// directory, loops and special files are refused ([`walk::files`]). The same walk as the fingerprint's:
/// what is read is what is fingerprinted.
pub fn list_dir(path: &Path) -> Result<Vec<PathBuf>> {
    walk::files(path, true)
}

/// The files of `path` a reader reads (`path` itself when it is a file, else those of [`list_dir`]
/// whose names end with one of `exts`, each file once however many links reach it); the others are
/// counted in the report (`unread_file`, a warning naming the first few paths relative to the input),
/// not skipped without a word.
pub fn input_files(path: &Path, exts: &[&str], report: &mut Report) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    // a name that starts with `.` or `_` (macOS's `._labs.csv` resource forks, `__MACOSX/`, an editor's
    // or a job's temporary file) is no data file, as the MEDS reader has it: counted as unread
    let hidden = |p: &Path| {
        p.strip_prefix(path).unwrap_or(p).components().any(|c| {
            c.as_os_str().as_encoded_bytes().starts_with(b".") || c.as_os_str().as_encoded_bytes().starts_with(b"_")
        })
    };
    let (read, unread): (Vec<PathBuf>, Vec<PathBuf>) =
        list_dir(path)?.into_iter().partition(|p| has_ext(p, exts) && !hidden(p));
    // a file reached twice (a link beside its target) is read once, at its first path
    let mut seen = std::collections::HashSet::new();
    let mut read_once = Vec::with_capacity(read.len());
    for p in read {
        let meta = std::fs::metadata(&p).map_err(|e| DataError::io(&p, e))?;
        if seen.insert(
            std::os::unix::fs::MetadataExt::ino(&meta) as u128
                | (std::os::unix::fs::MetadataExt::dev(&meta) as u128) << 64,
        ) {
            read_once.push(p);
        }
    }
    report_unread(path, &unread, exts, report);
    Ok(read_once)
}

/// Subject ids that hold what the guard finds in notes (a phone number, an e-mail address, an
/// Individual Number): the export may not be pseudonymized. Counted per subject (a warning: nothing is
/// printed, and no subject id leaves the node), as a reviewer of the export would want to know.
fn report_identifying_subjects(data: &Dataset, report: &mut Report) {
    let n = data.subjects.names.iter().filter(|s| !guard::scan(s).is_empty()).count() as u64;
    if n > 0 {
        report.finding(
            check::Severity::Warning,
            "identifying_subject_id",
            "input",
            "subject_id",
            Some("subject ids that hold an identifier (a phone number, an e-mail address, a My Number): is the export pseudonymized? the ids are not printed"),
            n,
        );
    }
}

/// Subject ids of digits that differ only by leading zeros (`0007654321` and `7654321`): one file passed
/// through a spreadsheet (zeros dropped) and another did not, and one patient may be two subjects — two
/// privacy units (found by a tester: counted as two without a word). A warning, counted per group; the
/// ids are not printed, and not merged (`007` and `7` may be two patients of a system that pads).
fn report_zero_padded_subjects(data: &Dataset, report: &mut Report) {
    // the number -> its forms (the names are distinct: two forms are two subjects)
    let mut forms: HashMap<&str, u32> = HashMap::new();
    for s in &data.subjects.names {
        let s = s.as_str();
        if s.len() < 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        *forms.entry(s.trim_start_matches('0')).or_default() += 1;
    }
    let n = forms.values().filter(|&&k| k > 1).count();
    if n > 0 {
        report.finding(
            check::Severity::Warning,
            "zero_padded_subject_id",
            "input",
            "subject_id",
            Some("subject ids that differ only by leading zeros (0001234 and 1234): one patient as two subjects? the ids are not printed"),
            n as u64,
        );
    }
}

/// Counts the files of an input that no reader reads (`unread_file`, a warning naming the first few
/// paths relative to the input as the guard shows them).
pub fn report_unread(path: &Path, unread: &[PathBuf], exts: &[&str], report: &mut Report) {
    if !unread.is_empty() {
        const SHOWN: usize = 5;
        let mut names: Vec<String> = unread
            .iter()
            .take(SHOWN)
            .map(|p| guard::shown_path(&p.strip_prefix(path).unwrap_or(p).to_string_lossy()))
            .collect();
        if unread.len() > SHOWN {
            names.push(format!("and {} more", unread.len() - SHOWN));
        }
        let detail = format!("not {}: {}", exts.join(" or "), names.join(", "));
        report.finding(check::Severity::Warning, "unread_file", "input", "file", Some(&detail), unread.len() as u64);
    }
}

/// Reads any supported input into a dataset and its QA report.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<(Dataset, check::Report)> {
    let mut report = check::Report::default();
    report.root = path.is_dir().then(|| path.to_path_buf());
    let mut data = Dataset::default();
    let format = detect(path).map_err(|e| e.inside(path))?;
    match format {
        Format::Fhir => fhir::read(path, opts, &mut data, &mut report),
        Format::Csv => csv::read(path, opts, &mut data, &mut report),
        Format::Meds => meds::read(path, opts, &mut data, &mut report),
    }
    .map_err(|e| e.inside(path))?;
    // header names by role mean nothing to FHIR or MEDS input (a config written for CSV files)
    if format != Format::Csv && opts.columns != csv::Columns::default() {
        let detail = format!("applies to CSV input only; this input is {}", format.name());
        report.finding(check::Severity::Warning, "config_key_not_read", "config", "read.columns", Some(&detail), 1);
    }
    report_conversions(&data, &mut report);
    report_identifying_subjects(&data, &mut report);
    report_zero_padded_subjects(&data, &mut report);
    if let Some(map) = &opts.code_map {
        report.code_map_findings(map);
    }
    report.finish(&data, opts);
    match format {
        Format::Meds => meds::name_fields(&mut report),
        Format::Csv => csv::name_fields(&mut report),
        Format::Fhir => {}
    }
    Ok((data, report))
}

/// The input's own names for what the shared QA report names as FHIR's (`Observation.valueQuantity.unit`)
/// or by event kind (`no_value in lab.value`, `duplicate in other.-`).
pub(crate) struct FieldNames {
    /// the report's resource name for the input (`meds`, `csv`)
    pub resource: &'static str,
    pub value: &'static str,
    pub unit: &'static str,
    pub system: &'static str,
    pub text: &'static str,
    /// what a duplicate event is, in the input's terms
    pub duplicate: &'static str,
}

/// Renames the report's FHIR and per-kind fields by `names` (and `more`: (kind, resource, field) -> a
/// field of the input's resource); findings that become one are merged.
pub(crate) fn name_fields(
    report: &mut Report,
    names: &FieldNames,
    more: impl Fn(&str, &str, &str) -> Option<&'static str>,
) {
    let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    for f in &mut report.findings {
        let field = match (f.kind.as_str(), f.resource.as_str(), f.field.as_str()) {
            (_, "Observation" | "DocumentReference" | "Encounter", "valueQuantity.value") => names.value,
            (_, "Observation" | "DocumentReference" | "Encounter", "valueQuantity.unit") => names.unit,
            (
                _,
                "Observation" | "DocumentReference" | "Encounter",
                "code.coding.system" | "type.coding.system" | "class.system",
            ) => names.system,
            // `Sink::push`'s counts, by event kind
            ("no_value" | "non_finite_value", k, "value") if kinds.contains(&k) => names.value,
            ("missing_unit", k, "unit") if kinds.contains(&k) => names.unit,
            ("note_truncated", k, "text") if kinds.contains(&k) => names.text,
            // the same event twice: the kind said in the detail
            ("duplicate", k, "-") if kinds.contains(&k) => {
                f.detail = Some(format!("{k} events: {}", names.duplicate));
                "code"
            }
            (kind, resource, field) => match more(kind, resource, field) {
                Some(field) => field,
                None => continue,
            },
        };
        f.resource = names.resource.into();
        f.field = field.into();
    }
    report.findings.sort_by(|a, b| {
        (a.severity, &a.kind, &a.resource, &a.field, &a.detail, &a.file).cmp(&(
            b.severity,
            &b.kind,
            &b.resource,
            &b.field,
            &b.detail,
            &b.file,
        ))
    });
    // one finding per name (a lab's and a vital's `no_value` are both `numeric_value`'s)
    report.findings.dedup_by(|b, a| {
        let same = (a.severity, &a.kind, &a.resource, &a.field, &a.detail, &a.file)
            == (b.severity, &b.kind, &b.resource, &b.field, &b.detail, &b.file)
            && a.lines.is_empty()
            && b.lines.is_empty();
        if same {
            a.count += b.count;
        }
        same
    });
}

/// Unit conversions into the QA report: values converted to the catalogue unit (info), and values in a
/// valid unit that cannot be converted (a warning). Units that are not valid UCUM are the report's own
/// `unknown_unit` finding. Units are named only when [`check::reportable_unit`] allows.
fn report_conversions(data: &Dataset, report: &mut Report) {
    for (unit, row, conv, n) in data.conversions.outcomes() {
        let lab = &catalog::LABS[row];
        let from = check::reportable_unit(&data.units.names[unit as usize]).unwrap_or("<unit not shown>");
        match conv {
            units::Conversion::Not(_) if !units::is_valid(&data.units.names[unit as usize]) => {}
            units::Conversion::Not(why) => report.finding(
                check::Severity::Warning,
                "unconvertible_unit",
                "Observation",
                "valueQuantity.unit",
                Some(&format!("{}|{} in {from} ({why})", catalog::LOINC, lab.loinc)),
                n,
            ),
            _ => report.finding(
                check::Severity::Info,
                "converted_unit",
                "Observation",
                "valueQuantity.unit",
                Some(&format!("{}|{} from {from} to {}", catalog::LOINC, lab.loinc, lab.unit)),
                n,
            ),
        }
    }
}

/// The integer of an id a spreadsheet or pandas wrote as a float (`7731.0` gives `7731`).
pub(crate) fn integer_written_as_float(id: &str) -> Option<&str> {
    let (int, frac) = id.split_once('.')?;
    let all = |s: &str, f: fn(&u8) -> bool| !s.is_empty() && s.as_bytes().iter().all(f);
    (all(int, u8::is_ascii_digit) && all(frac, |b| *b == b'0')).then_some(int)
}

/// The earliest time an event may have: 1800-01-01T00:00:00Z (seconds since the epoch).
pub const EARLIEST_TIME: i64 = -5_364_662_400;
/// The first time past the latest an event may have: 2300-01-01T00:00:00Z.
pub const LATEST_TIME: i64 = 10_413_792_000;

/// One event as a reader produced it, before interning. Its strings borrow from the reader's input
/// where they can (the FHIR reader's lines): an event costs no allocation before it is interned.
#[derive(Debug, Clone)]
pub struct Rec<'a> {
    pub subject: Cow<'a, str>,
    pub time: i64,
    pub kind: EventKind,
    pub system: Cow<'a, str>,
    pub code: Cow<'a, str>,
    /// NaN when there is none
    pub value: f32,
    pub unit: Option<Cow<'a, str>>,
    pub text: Option<String>,
    /// encounters: end of the period, `i64::MIN` when unknown
    pub end: i64,
}

impl<'a> Rec<'a> {
    /// A note of `subject` at `time`, coded `system|code`.
    pub fn note(subject: Cow<'a, str>, time: i64, (system, code): (Cow<'a, str>, Cow<'a, str>), text: String) -> Self {
        Rec {
            subject,
            time,
            kind: EventKind::Note,
            system,
            code,
            value: f32::NAN,
            unit: None,
            text: Some(text),
            end: i64::MIN,
        }
    }
}

/// Where readers put what they read: the dataset, the QA report, and the options.
pub struct Sink<'a> {
    pub data: &'a mut Dataset,
    pub report: &'a mut Report,
    pub opts: &'a ReadOptions,
}

pub use check::Report;

impl Sink<'_> {
    pub fn subject(&mut self, id: &str) -> u32 {
        self.data.subjects.get_or_insert(id)
    }

    /// A time as read, in UTC: counted by how it was written ([`time::Zones`]), read in `read.time_zone`
    /// when it has no zone; `None` where the zone cannot place it.
    pub fn time(&mut self, t: time::Stamp) -> Option<i64> {
        self.report.zones.add(t.written());
        t.utc(self.opts.zone())
    }

    pub fn push(&mut self, r: Rec<'_>) {
        // a time no record has (year 0, 9999-12-31T23:59:60, i64::MAX microseconds): counted, not an
        // event (the years between are wide: MIMIC's de-identified dates lie in 2100-2210)
        if !(EARLIEST_TIME..LATEST_TIME).contains(&r.time) {
            self.report.count(check::Severity::Warning, "implausible_time", r.kind.as_str(), "time");
            return;
        }
        let subject = self.data.subjects.get_or_insert(&r.subject);
        let mut value = r.value;
        let measured = matches!(r.kind, EventKind::Lab | EventKind::Vital);
        if value.is_infinite() {
            // an infinite value (a MEDS float) is no measurement: counted, and read as none; a
            // measurement then is no event, as one without a value is not
            self.report.count(check::Severity::Warning, "non_finite_value", r.kind.as_str(), "value");
            if measured {
                return;
            }
            value = f32::NAN;
        }
        if measured {
            // a measurement without a value (no value[x], a dataAbsentReason, an empty numeric field):
            // counted, and not an event (it was counted as a usable result, then dropped by prepare)
            if value.is_nan() {
                self.report.count(check::Severity::Warning, "no_value", r.kind.as_str(), "value");
                return;
            }
        }
        // a code or system as exports mistype them (` 2160-0 `, `http://loinc.org/`) is the code
        let system = r.system.trim();
        let system = system.strip_suffix('/').unwrap_or(system);
        let (code, mapped) = self.data.code(system, r.code.trim(), self.opts.code_map.as_deref());
        let (mut kind, mut unit) = (r.kind, r.unit.as_deref().filter(|u| !u.is_empty()));
        // a result whose code is a catalogue vital sign is one, whatever told the reader it was a result
        // (a CSV or MEDS code, a MEDS parent code, a local code the code map maps)
        if kind == EventKind::Lab && self.data.catalogue_row(code).is_some_and(|row| catalog::LABS[row].vital) {
            kind = EventKind::Vital;
        }
        if let (Some(row), Some(map)) = (mapped, &self.opts.code_map) {
            self.report.code_mapped(row, map.len(), kind.as_str());
            // the map's unit where the event gives none
            unit = unit.or(map.target(row).unit.as_deref());
        }
        if matches!(kind, EventKind::Lab | EventKind::Vital) && unit.is_none() {
            // read in its code's catalogue unit, as before, but said
            self.report.count(check::Severity::Warning, "missing_unit", kind.as_str(), "unit");
        }
        let mut unit = unit.map_or(NONE, |u| self.data.units.get_or_insert(u));
        if matches!(kind, EventKind::Lab | EventKind::Vital) {
            self.data.to_catalogue_unit(code, &mut unit, &mut value);
        }
        let text = match r.text {
            Some(mut t) => {
                // readers cut notes as they decode them; this catches any reader that did not
                if truncate_note(&mut t, self.opts.limits.max_note_bytes) {
                    self.report.count(check::Severity::Warning, "note_truncated", "note", "text");
                }
                self.data.texts.push(t);
                (self.data.texts.len() - 1) as u32
            }
            None => NONE,
        };
        let e = Event { subject, time: r.time, kind, code, value, unit, text, end: r.end };
        self.report.event(self.data, &e);
        if self.opts.keep_events {
            self.data.events.push(e);
        } else if text != NONE {
            self.data.texts.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A note cut at its limit ends at a white space where one is near: the first digits of a number
    /// cut in two (`090-12`) are not kept (found by a tester); a long run without one is cut where it
    /// must be, at a character boundary.
    #[test]
    fn a_note_is_cut_at_a_space_near_its_limit() {
        let mut t = "seen today, call 090-1234-5678".to_string();
        assert!(truncate_note(&mut t, 23));
        assert_eq!(t, "seen today, call");
        let mut t = "あ".repeat(100);
        assert!(truncate_note(&mut t, 10));
        assert_eq!(t, "あああ");
        let mut t = "short".to_string();
        assert!(!truncate_note(&mut t, 10));
    }

    /// A reader's error names its file, but not a file name that names a patient (as FHIR's walk
    /// already did for its relative paths): MEDS, CSV and label files too.
    #[test]
    fn an_error_does_not_print_a_file_name_that_names_a_patient() {
        let shown = |p: &str| DataError::Format { path: p.into(), msg: "bad".into() }.to_string();
        assert_eq!(shown("/in/labs.csv"), "/in/labs.csv: bad");
        assert_eq!(shown("data/train/0.parquet"), "data/train/0.parquet: bad");
        assert_eq!(shown("labs.csv"), "labs.csv: bad");
        assert_eq!(shown("/labs.csv"), "/labs.csv: bad");
        for named in [
            "/in/Smith_John.csv",
            "/in/patient_12345678.parquet",
            "/in/山田太郎.csv",
            "/in/PT7731_notes.csv",
            "/in/A12345.csv",
        ] {
            let s = shown(named);
            assert_eq!(s, "/in/(a name that is not printed): bad", "{named}");
        }
        // found by fuzz seed 78 (a config's labels.file): an e-mail address run into the next word is none
        // the scan sees whole
        assert_eq!(guard::shown_path("ltaro.yamada@example.jpabels.c_sv"), "(a name that is not printed)");
        let line = DataError::Line { path: "/in/Tanaka_Hanako.csv".into(), line: 3, msg: "bad".into() };
        assert_eq!(line.to_string(), "/in/(a name that is not printed):3: bad");
        assert_eq!(shown("/in/Smith_John.ndjson.gz"), "/in/(a name that is not printed): bad");
        // found by an outside-in tester: a name in one case, or of one word, was printed
        for named in [
            "/in/Suzuki.csv",
            "/in/yamada_hanako.csv",
            "/in/YAMADA-HANAKO.csv",
            "/in/sato_taro_labs.csv",
            "/in/Observation.CANARY-PID-7731.ndjson",
        ] {
            assert_eq!(shown(named), "/in/(a name that is not printed): bad", "{named}");
        }
        // found by the next tester and review: a patient's number of 4 to 6 digits, and export words
        // that read as a person's name (`Ward_Page`)
        assert_eq!(
            guard::shown_path("patient/123456/Observation.ndjson"),
            "patient/(a name that is not printed)/Observation.ndjson"
        );
        for named in ["Observation.7731.ndjson", "Ward_Page.csv", "7731"] {
            assert_eq!(guard::shown_path(named), "(a name that is not printed)", "{named}");
        }
        assert_eq!(guard::shown_path("site-05/part-0002.ndjson"), "site-05/part-0002.ndjson");
        assert_eq!(guard::shown_path("2024/06/01/labs.csv"), "2024/06/01/labs.csv");
        // an export's own names, numbered or spaced, are shown
        for plain in [
            "/in/part0001.csv",
            "/in/labs2024.csv",
            "/in/Observation.000.ndjson",
            "/in/0001.parquet",
            "/in/labs 2024.csv",
            "/in/LabResults.csv",
            "/in/AllergyIntolerance.ndjson",
            "/in/held_out.parquet",
            "/in/site_a_labevents.csv.gz",
        ] {
            assert_eq!(shown(plain), format!("{plain}: bad"));
        }
        // the user's own configs and output directories are named as they are
        assert_eq!(shown("/cfg/Run_Config.toml"), "/cfg/Run_Config.toml: bad");
        assert_eq!(shown("/out/prepared_20261201"), "/out/prepared_20261201: bad");
    }

    /// A folder per patient inside the input is not printed either (each folder of the path inside
    /// the input goes through the guard), while the input's own path is printed as given.
    #[test]
    fn an_error_does_not_print_a_folder_that_names_a_patient() {
        // under a folder of a fixed plain name: the input's own path goes through the guard too, and a
        // random temporary name may read as an identifier
        let d =
            tempfile::Builder::new().prefix("medtrain-guard-folders").rand_bytes(0).tempdir_in(std::env::temp_dir());
        let d = d.unwrap_or_else(|_| {
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join("medtrain-guard-folders"));
            tempfile::Builder::new().prefix("medtrain-guard-folders").rand_bytes(0).tempdir().unwrap()
        });
        let root = d.path().join("export_a");
        for folder in ["Smith_John", "12345678"] {
            let dir = root.join(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("labs.csv"), "subject_id,when,code,value\nA,2020-01-01,718-7,13.1\n").unwrap();
            let e = read(&root, &ReadOptions::default()).unwrap_err().to_string();
            assert!(!e.contains(folder), "{e}");
            let want = format!("{}/(a name that is not printed)/labs.csv:1: the header has no", root.display());
            assert!(e.starts_with(&want), "{e}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
        // one level down from a plain folder: the plain folder is printed
        let dir = root.join("site_a").join("Tanaka_Hanako");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("labs.csv"), "subject_id,when,code,value\n").unwrap();
        let e = read(&root, &ReadOptions::default()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}/site_a/(a name that is not printed)/labs.csv:1:", root.display())), "{e}");
        // an input that is one patient's folder, or a path that does not exist, through the guard too
        let one = d.path().join("Zyxwq_Canarytest");
        std::fs::rename(&root, &one).unwrap();
        for input in [one.clone(), d.path().join("Tanaka_Hanako_missing")] {
            let e = read(&input, &ReadOptions::default()).unwrap_err().to_string();
            assert!(!e.contains("Zyxwq") && !e.contains("Tanaka") && e.contains("(a name that is not printed)"), "{e}");
        }
    }
}
