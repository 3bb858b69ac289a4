//! `medtrain data prepare`: from a data config to training examples on disk.
//!
//! Reads the input, refuses it when the QA check has blocking findings, makes labels (from a file or a
//! derived task), splits subjects, builds lab-series features and (optionally) note tokens, and writes one
//! safetensors file per split plus `manifest.json`. The `subject` tensor numbers each example's subject:
//! the DP privacy unit (groups for clipping). A tokenizer trained here is trained on the train split's
//! notes only and is marked non-exportable.
//!
//! Each split file (`train`, `tuning`, `held_out`) holds, for its n examples: `lab_values`, `lab_mask`,
//! `lab_since_last` [n, T, K] f32; `y` [n] f32 (booleans 0/1, integers and floats as f32, categories as
//! their index in the manifest's `categories`); `subject` [n] i64 (the group id of the example's subject
//! within the split, first-seen order); `site` [n] i64 (index into the manifest's `sites`, -1 when the
//! input does not say); with notes, `note_ids` [n, L] i64 and `note_len` [n] i64. The manifest records,
//! besides the shapes, `label_type` (the MEDS label column the labels came from: `boolean_value`,
//! `integer_value`, `float_value` or `categorical_value`; labels that mix columns are refused) and `sites`
//! (the sorted distinct sites of the examples' subjects). Training reads all of it through memory maps
//! ([`super::prepared`]).
//!
//! The config (TOML; unknown keys are errors):
//!
//! ```toml
//! input = "demo-export"              # FHIR bulk directory, MEDS root or CSV (relative to the config)
//! [read]
//! code_systems = ["http://loinc.org", "urn:oid:1.2.392.200119.4.504"]
//! vitals = false
//! identifiers = "reject"             # or "redact"
//! max_malformed_fraction = 0.0
//! max_line_bytes = 67108864          # a longer line is malformed and skipped (64 MiB)
//! max_note_bytes = 1048576           # a longer note is cut and counted (1 MiB)
//! max_decompressed_bytes = 68719476736   # a .gz file inflating to more is refused (64 GiB)
//! max_gz_ratio = 250.0               # ... or inflating more than this many times its size
//! encoding = "auto"                  # CSV text: "auto" (UTF-8, Shift_JIS, EUC-JP, UTF-16 as each
//!                                    # file's start shows) or a name: "shift_jis", "windows-1252", ...
//! time_zone = "Asia/Tokyo"           # times written without a zone (CSV, MEDS, FHIR dates): an IANA
//!                                    # name, "+09:00" or "UTC" (the default)
//! code_map = "codes.csv"            # local codes read as LOINC/JLAC10: columns code, system, loinc,
//!                                    # jlac10, unit (see code_map.rs)
//! [read.columns]                     # CSV header names where they are not medtrain's (any case):
//! time = "charttime"                 # subject_id, time, code, value, text_value, unit, system, text
//! code = "itemid"
//! [labels]
//! task = "ed_admission"              # or "lab_rise" (lab, rise, horizon_hours), or file = "labels.csv"
//!                                    # (categorical_value labels: classes = ["a", "b", ...] in class order)
//! window_hours = 24
//! offset_hours = 1                   # prediction time = label time + offset
//! [split]
//! key = "project split key"
//! tuning = 0.1
//! held_out = 0.2
//! [features]
//! channels = ["creatinine", "crp", "wbc"]   # or "auto"; default: every catalogue lab with a public
//!                                           # reference interval
//! buckets = 24
//! lookback_hours = 168
//! note_tokens = 256                  # 0: no notes
//! tokenizer = "tokenizer.json"       # or train_tokenizer = "dp_unigram" | "unigram" | "byte_bpe",
//!                                    # vocab_size = 8000 (only a user's file or dp_unigram may be exported)
//! max_tokenizer_corpus_bytes = 67108864   # train the tokenizer on at most this much note text
//! max_tensor_bytes = 8589934592      # refuse a split whose tensors would take more (8 GiB)
//! min_piece_subjects = 10             # a trained tokenizer keeps a piece only if this many subjects' notes use it
//! [auto]                             # DP choices (see `auto.rs`), charged to the run's budget
//! channels = 16                      # K: how many channels `channels = "auto"` chooses
//! max_codes_per_subject = 32         # M: a subject counts for at most M labs (L2 sensitivity sqrt(M))
//! selection_noise_multiplier = 5.0   # sigma of the channel counts (noise std sigma * sqrt(M))
//! quantile_noise_multiplier = 5.0    # sigma of the quantile histograms of channels with no public
//! quantile_bins = 256                #   reference interval (noise std sigma * sqrt(their number))
//! delta = 1e-6                       # delta at which the manifest states their epsilon
//! tokenizer_noise_multiplier = 4.0   # dp_unigram: sigma of the piece counts (L2 sensitivity 1)
//! tokenizer_pieces_per_subject = 32  # dp_unigram: k, the pieces one subject contributes
//! tokenizer_delta = 1e-7             # dp_unigram: added to the run's delta (see dp_tokenizer.rs)
//! ```
//!
//! Every numeric key has a range checked when the config is loaded, before anything is sized from it
//! (`buckets` 1-4096, `note_tokens` 0-32768, `vocab_size` 64-1e6, hours up to a century, the `[read]`
//! bounds as in [`super::ReadLimits`]); the error names the key and the range.

use super::check::{self, Report, Severity};
use super::labels::{self, Label, LabelValue, Task};
use super::split::{self, Split};
use super::text::{self, NoteTokenizer, TokenizerKind};
use super::time::Zones;
use super::{catalog, features, guard, DataError, ReadLimits, ReadOptions, Result};
use crate::privacy::accountant::Delta;
use crate::privacy::noise::NoiseSource;
use crate::privacy::release::{self, GaussianRelease};
use crate::tensors::{self, OutData};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub input: PathBuf,
    #[serde(default)]
    pub read: ReadConfig,
    pub labels: LabelsConfig,
    #[serde(default)]
    pub split: SplitConfig,
    #[serde(default)]
    pub features: FeaturesConfig,
    #[serde(default)]
    pub auto: AutoConfig,
}

/// `features.channels`: a list of catalogue tests, or `"auto"` (DP selection).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Channels {
    List(Vec<String>),
    Auto(String),
}

/// The DP choices of `data prepare` (`[auto]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoConfig {
    #[serde(default = "default_auto_channels")]
    pub channels: usize,
    #[serde(default = "default_max_codes")]
    pub max_codes_per_subject: usize,
    #[serde(default = "default_auto_noise")]
    pub selection_noise_multiplier: f64,
    #[serde(default = "default_auto_noise")]
    pub quantile_noise_multiplier: f64,
    #[serde(default = "default_quantile_bins")]
    pub quantile_bins: usize,
    #[serde(default = "default_auto_delta")]
    pub delta: f64,
    /// sigma of the DP tokenizer's piece counts (`train_tokenizer = "dp_unigram"`; L2 sensitivity 1)
    #[serde(default = "default_tokenizer_noise")]
    pub tokenizer_noise_multiplier: f64,
    /// k: a subject contributes at most this many pieces to the DP tokenizer
    #[serde(default = "default_tokenizer_pieces")]
    pub tokenizer_pieces_per_subject: usize,
    /// the probability that the DP tokenizer keeps a piece only one subject has; added to the run's delta
    #[serde(default = "default_tokenizer_delta")]
    pub tokenizer_delta: f64,
}

fn default_tokenizer_noise() -> f64 {
    4.0
}
fn default_tokenizer_pieces() -> usize {
    32
}
fn default_tokenizer_delta() -> f64 {
    1e-7
}

fn default_auto_channels() -> usize {
    16
}
fn default_max_codes() -> usize {
    32
}
fn default_auto_noise() -> f64 {
    5.0
}
fn default_quantile_bins() -> usize {
    256
}
fn default_auto_delta() -> f64 {
    1e-6
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            channels: default_auto_channels(),
            max_codes_per_subject: default_max_codes(),
            selection_noise_multiplier: default_auto_noise(),
            quantile_noise_multiplier: default_auto_noise(),
            quantile_bins: default_quantile_bins(),
            delta: default_auto_delta(),
            tokenizer_noise_multiplier: default_tokenizer_noise(),
            tokenizer_pieces_per_subject: default_tokenizer_pieces(),
            tokenizer_delta: default_tokenizer_delta(),
        }
    }
}

impl AutoConfig {
    /// Checks every key against its bounds; an error names the key.
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let n_labs = catalog::LABS.iter().filter(|l| !l.vital).count();
        if self.channels == 0 || self.channels > n_labs {
            return Err(("auto.channels", format!("must be in 1..={n_labs} (got {})", self.channels)));
        }
        if self.max_codes_per_subject == 0 || self.max_codes_per_subject > n_labs {
            return Err((
                "auto.max_codes_per_subject",
                format!("must be in 1..={n_labs} (got {})", self.max_codes_per_subject),
            ));
        }
        for (key, v) in [
            ("auto.selection_noise_multiplier", self.selection_noise_multiplier),
            ("auto.quantile_noise_multiplier", self.quantile_noise_multiplier),
            ("auto.tokenizer_noise_multiplier", self.tokenizer_noise_multiplier),
        ] {
            if !(v.is_finite() && (0.1..=1e4).contains(&v)) {
                return Err((key, format!("must be in [0.1, 10000] (got {})", crate::short_number(v))));
            }
        }
        if !(2..=4096).contains(&self.quantile_bins) {
            return Err(("auto.quantile_bins", format!("must be in 2..=4096 (got {})", self.quantile_bins)));
        }
        if !(self.delta > 0.0 && self.delta < 1e-2) {
            return Err(("auto.delta", format!("must be in (0, 0.01) (got {})", self.delta)));
        }
        if !(1..=4096).contains(&self.tokenizer_pieces_per_subject) {
            return Err((
                "auto.tokenizer_pieces_per_subject",
                format!("must be in 1..=4096 (got {})", self.tokenizer_pieces_per_subject),
            ));
        }
        if !(self.tokenizer_delta > 0.0 && self.tokenizer_delta < 1e-3) {
            return Err(("auto.tokenizer_delta", format!("must be in (0, 0.001) (got {})", self.tokenizer_delta)));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    pub code_systems: Option<Vec<String>>,
    #[serde(default)]
    pub vitals: bool,
    #[serde(default)]
    pub identifiers: guard::Policy,
    #[serde(default)]
    pub max_malformed_fraction: f64,
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: u64,
    #[serde(default = "default_max_note_bytes")]
    pub max_note_bytes: u64,
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: u64,
    #[serde(default = "default_max_gz_ratio")]
    pub max_gz_ratio: f64,
    /// the text encoding of CSV input and label files: "auto" (the default) or a name
    pub encoding: Option<String>,
    /// the zone of times written without one: "Asia/Tokyo", "+09:00", "UTC" (absent: UTC)
    pub time_zone: Option<String>,
    /// CSV header names by role where the files do not use medtrain's
    #[serde(default)]
    pub columns: super::csv::Columns,
    /// a CSV file of local codes and the LOINC or JLAC10 code each is (see `code_map.rs`)
    pub code_map: Option<PathBuf>,
    /// `code_map`, read and checked when the config is resolved
    #[serde(skip)]
    pub loaded_code_map: Option<std::sync::Arc<super::code_map::CodeMap>>,
}

fn default_max_line_bytes() -> u64 {
    ReadLimits::DEFAULT_MAX_LINE_BYTES
}
fn default_max_note_bytes() -> u64 {
    ReadLimits::DEFAULT_MAX_NOTE_BYTES
}
fn default_max_decompressed_bytes() -> u64 {
    ReadLimits::DEFAULT_MAX_DECOMPRESSED_BYTES
}
fn default_max_gz_ratio() -> f64 {
    ReadLimits::DEFAULT_MAX_GZ_RATIO
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            code_systems: None,
            vitals: false,
            identifiers: guard::Policy::Reject,
            max_malformed_fraction: 0.0,
            max_line_bytes: default_max_line_bytes(),
            max_note_bytes: default_max_note_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            max_gz_ratio: default_max_gz_ratio(),
            encoding: None,
            time_zone: None,
            columns: Default::default(),
            code_map: None,
            loaded_code_map: None,
        }
    }
}

impl ReadConfig {
    /// The encoding `encoding` names (auto when absent); the error is the key's message.
    pub fn encoding(&self) -> std::result::Result<super::charset::Choice, String> {
        match &self.encoding {
            None => Ok(super::charset::Choice::Auto),
            Some(e) => super::charset::Choice::parse(e).map_err(|m| format!("{} {m}", super::reportable::quoted(e))),
        }
    }

    /// The zone `time_zone` names (`None` when absent); the error is the key's message.
    pub fn time_zone(&self) -> std::result::Result<Option<super::time::Zone>, String> {
        self.time_zone.as_deref().map(super::time::Zone::parse).transpose()
    }

    pub fn limits(&self) -> ReadLimits {
        ReadLimits {
            max_line_bytes: self.max_line_bytes,
            max_note_bytes: self.max_note_bytes,
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_gz_ratio: self.max_gz_ratio,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// a MEDS label file (CSV or parquet) instead of a task
    pub file: Option<PathBuf>,
    /// `ed_admission` or `lab_rise`
    pub task: Option<String>,
    pub window_hours: Option<f64>,
    pub lab: Option<String>,
    pub rise: Option<f64>,
    pub horizon_hours: Option<f64>,
    #[serde(default)]
    pub offset_hours: f64,
    /// the categories of a label file's `categorical_value` labels, in the order of the model's classes
    /// (declared: an order taken from the data would move every class's index when one patient's
    /// category came or went, which the DP guarantee does not cover)
    pub classes: Option<Vec<String>>,
}

/// How many categories `labels.classes` may list.
pub const MAX_CLASSES: usize = 10_000;

impl LabelsConfig {
    /// `labels.classes`, when set: at least two names, each listed once, printable, at most 200 bytes.
    fn check_classes(&self) -> std::result::Result<(), String> {
        let Some(c) = &self.classes else { return Ok(()) };
        if !(2..=MAX_CLASSES).contains(&c.len()) {
            return Err(format!(
                "labels.classes lists {} categories: a multiclass task needs 2 to {MAX_CLASSES}",
                c.len()
            ));
        }
        for (i, name) in c.iter().enumerate() {
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                return Err(format!("labels.classes[{i}]: a category is 1 to 200 bytes of printable text"));
            }
            if let Some(j) = c[..i].iter().position(|o| o == name) {
                return Err(format!("labels.classes[{i}]: the same category as labels.classes[{j}]"));
            }
        }
        Ok(())
    }

    /// The class index of each category `labels.classes` lists.
    pub fn class_index(&self) -> Option<HashMap<&str, usize>> {
        self.classes.as_ref().map(|c| c.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect())
    }

    /// The derived task, checking that only its own keys are set.
    pub fn task(&self) -> std::result::Result<Option<Task>, String> {
        let Some(name) = self.task.as_deref() else { return self.check_classes().map(|_| None) };
        let only = |allowed: &[&str]| {
            for (key, set) in [
                ("window_hours", self.window_hours.is_some()),
                ("lab", self.lab.is_some()),
                ("rise", self.rise.is_some()),
                ("horizon_hours", self.horizon_hours.is_some()),
                ("classes", self.classes.is_some()),
            ] {
                if set && !allowed.contains(&key) {
                    return Err(format!("labels.{key} does not apply to task {}", super::reportable::quoted(name)));
                }
            }
            Ok(())
        };
        let positive = |key: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(v)
            } else {
                Err(format!("labels.{key} must be positive (got {})", crate::short_number(v)))
            }
        };
        match name {
            "ed_admission" => {
                only(&["window_hours"])?;
                Ok(Some(Task::EdAdmission {
                    window_hours: positive("window_hours", self.window_hours.unwrap_or(24.0))?,
                }))
            }
            "lab_rise" => {
                only(&["lab", "rise", "horizon_hours"])?;
                Ok(Some(Task::LabRise {
                    lab: self.lab.clone().unwrap_or_else(|| "creatinine".into()),
                    rise: positive("rise", self.rise.unwrap_or(0.3))?,
                    horizon_hours: positive("horizon_hours", self.horizon_hours.unwrap_or(48.0))?,
                }))
            }
            other => Err(format!(
                "labels.task: unknown task {} (expected ed_admission or lab_rise)",
                super::reportable::quoted(other)
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default = "default_tuning")]
    pub tuning: f64,
    #[serde(default = "default_held_out")]
    pub held_out: f64,
}

fn default_key() -> String {
    "medtrain".into()
}
fn default_tuning() -> f64 {
    0.1
}
fn default_held_out() -> f64 {
    0.2
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { key: default_key(), tuning: default_tuning(), held_out: default_held_out() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    pub channels: Option<Channels>,
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    #[serde(default = "default_lookback")]
    pub lookback_hours: f64,
    #[serde(default)]
    pub note_tokens: usize,
    pub tokenizer: Option<PathBuf>,
    pub train_tokenizer: Option<TokenizerKind>,
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// the most bytes of notes a tokenizer is trained on
    #[serde(default = "default_max_tokenizer_corpus_bytes")]
    pub max_tokenizer_corpus_bytes: u64,
    /// the most bytes the tensors of one split may take (checked before they are built)
    #[serde(default = "default_max_tensor_bytes")]
    pub max_tensor_bytes: u64,
    /// a piece of a tokenizer trained here stays only if the notes of this many subjects use it
    #[serde(default = "default_min_piece_subjects")]
    pub min_piece_subjects: usize,
}

fn default_max_tokenizer_corpus_bytes() -> u64 {
    text::DEFAULT_MAX_CORPUS_BYTES
}
fn default_max_tensor_bytes() -> u64 {
    8 << 30
}

/// The config key of a `read.columns` role.
fn read_columns_key(role: &str) -> &'static str {
    match role {
        "subject_id" => "read.columns.subject_id",
        "time" => "read.columns.time",
        "code" => "read.columns.code",
        "value" => "read.columns.value",
        "text_value" => "read.columns.text_value",
        "unit" => "read.columns.unit",
        "system" => "read.columns.system",
        _ => "read.columns.text",
    }
}

fn read_key(k: &str) -> &'static str {
    match k {
        "max_line_bytes" => "read.max_line_bytes",
        "max_note_bytes" => "read.max_note_bytes",
        "max_decompressed_bytes" => "read.max_decompressed_bytes",
        _ => "read.max_gz_ratio",
    }
}

/// The allowed range of each numeric key, checked when the config is loaded, before anything is sized
/// from it. Wide enough for any real design: a week in 2.5-minute buckets, a 32k-token note context, a
/// million-piece vocabulary, a century of hours.
pub const BUCKETS: (usize, usize) = (1, 4096);
pub const NOTE_TOKENS: (usize, usize) = (0, 32768);
pub const VOCAB_SIZE: (usize, usize) = (64, 1_000_000);
pub const MAX_HOURS: f64 = 876_000.0;
pub const TOKENIZER_CORPUS_BYTES: (u64, u64) = (1 << 10, 4 << 30);
pub const TENSOR_BYTES: (u64, u64) = (1 << 20, 1 << 40);

fn default_buckets() -> usize {
    24
}
fn default_lookback() -> f64 {
    168.0
}
fn default_vocab() -> usize {
    8000
}
fn default_min_piece_subjects() -> usize {
    10
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            channels: None,
            buckets: default_buckets(),
            lookback_hours: default_lookback(),
            note_tokens: 0,
            tokenizer: None,
            train_tokenizer: None,
            vocab_size: default_vocab(),
            max_tokenizer_corpus_bytes: default_max_tokenizer_corpus_bytes(),
            max_tensor_bytes: default_max_tensor_bytes(),
            min_piece_subjects: default_min_piece_subjects(),
        }
    }
}

/// The channels of a config that names none: every catalogue lab with a public reference interval.
fn default_channels() -> impl Iterator<Item = &'static catalog::Lab> {
    catalog::LABS.iter().filter(|l| !l.vital && l.reference.is_some())
}

impl DataConfig {
    /// How many channels the prepared lab series will have.
    pub fn channel_count(&self) -> usize {
        match &self.features.channels {
            Some(Channels::List(list)) => list.len(),
            Some(Channels::Auto(_)) => self.auto.channels,
            None => default_channels().count(),
        }
    }

    /// Reads a TOML config; relative paths in it are relative to the config's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::read_text_bounded(path, crate::MAX_CONFIG_BYTES).map_err(|e| DataError::io(path, e))?;
        let c: DataConfig = toml::from_str(&text).map_err(|e| DataError::Format {
            path: path.into(),
            msg: format!("config: {}", super::reportable::toml_error(&text, &e)),
        })?;
        c.resolve(path, "")
    }

    /// Resolves relative paths against the directory of `path` (the config file) and checks every
    /// key; errors name `path` and the key, prefixed with `table` (`data.` in a training config).
    pub fn resolve(mut self, path: &Path, table: &str) -> Result<Self> {
        let c = &mut self;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut c.input);
        if let Some(f) = c.labels.file.as_mut() {
            rel(f);
        }
        let label_files = c.labels.file.as_deref().map(labels::files);
        if let Some(t) = c.features.tokenizer.as_mut() {
            rel(t);
        }
        if let Some(m) = c.read.code_map.as_mut() {
            rel(m);
        }
        let bad = |key: &str, msg: String| DataError::Format {
            path: path.into(),
            msg: format!("config key {table}{key}: {msg}"),
        };
        let task = c.labels.task().map_err(|m| DataError::Format { path: path.into(), msg: format!("config: {m}") })?;
        match (&c.labels.file, &task) {
            (None, None) => return Err(bad("labels", "needs a task (ed_admission, lab_rise) or a file".into())),
            (Some(_), Some(_)) => return Err(bad("labels", "a task or a file, not both".into())),
            _ => {}
        }
        if let Some(Err(m)) = label_files {
            return Err(bad("labels.file", m));
        }
        // a tokenizer file the tokenizers library cannot read, said with its key when the config is
        // loaded (found by a tester: said after the input was read, as the input's error)
        if let Some(t) = &c.features.tokenizer {
            if let Err(e) = super::text::NoteTokenizer::load(t) {
                return Err(bad("features.tokenizer", e.to_string()));
            }
        }
        if !(0.0..=1.0).contains(&c.read.max_malformed_fraction) {
            return Err(bad(
                "read.max_malformed_fraction",
                format!("must be in [0, 1] (got {})", crate::short_number(c.read.max_malformed_fraction)),
            ));
        }
        c.check_ranges().map_err(|(key, msg)| bad(key, msg))?;
        if c.features.note_tokens > 0 && c.features.tokenizer.is_none() && c.features.train_tokenizer.is_none() {
            return Err(bad("features.note_tokens", "needs features.tokenizer or features.train_tokenizer".into()));
        }
        match &c.features.channels {
            Some(Channels::Auto(a)) if a != "auto" => {
                // the string is not printed: a config is text someone typed, and could hold anything
                let got = if catalog::by_name_or_code(a).is_some() {
                    format!("{a:?}: a test, not a list")
                } else {
                    format!("a string of {} characters", a.chars().count())
                };
                return Err(bad("features.channels", format!("a list of catalogue tests or \"auto\" (got {got})")));
            }
            // each test known and listed once, before any input is read
            Some(Channels::List(list)) if list.is_empty() => {
                return Err(bad("features.channels", "an empty list: name the catalogue tests, or \"auto\"".into()));
            }
            Some(Channels::List(list)) => {
                features::LabSeriesSpec::new(list, c.features.buckets, c.features.lookback_hours)
                    .map_err(|m| DataError::Format { path: path.into(), msg: format!("config key {table}{m}") })?;
            }
            _ => {}
        }
        c.auto.check().map_err(|(key, msg)| bad(key, msg))?;
        // said, not refused: a run prepared before this check must still resume and replay, and its
        // [data] table cannot change then
        if let Err((key, msg)) = c.inapplicable() {
            eprintln!("warning: {}: config key {table}{key} {msg}: it has no effect", path.display());
        }
        if c.features.tokenizer.is_some() && c.features.train_tokenizer.is_some() {
            return Err(bad("features.tokenizer", "a tokenizer file or train_tokenizer, not both".into()));
        }
        if c.features.train_tokenizer == Some(TokenizerKind::DpUnigram)
            && c.features.vocab_size <= super::dp_tokenizer::FIXED_ENTRIES
        {
            return Err(bad(
                "features.vocab_size",
                format!(
                    "a dp_unigram tokenizer holds {} fixed entries (special tokens and bytes): vocab_size must be more (got {})",
                    super::dp_tokenizer::FIXED_ENTRIES,
                    c.features.vocab_size
                ),
            ));
        }
        if let Some(m) = &self.read.code_map {
            let prefer = self.read_options().code_systems;
            let map = super::code_map::CodeMap::load(
                m,
                &prefer,
                self.read.encoding().unwrap_or_default(),
                self.read.limits(),
            )
            .map_err(|e| bad("read.code_map", e.to_string()))?;
            self.read.loaded_code_map = Some(std::sync::Arc::new(map));
        }
        Ok(self)
    }

    /// A key set (to other than its default) where nothing reads it (a warning): the tokenizer's without notes,
    /// the DP tokenizer's without `train_tokenizer = "dp_unigram"`, the channel selection's without
    /// `channels = "auto"` (a user who set the noise of a release would not learn that none ran).
    fn inapplicable(&self) -> std::result::Result<(), (&'static str, &'static str)> {
        let (f, a, d) = (&self.features, &self.auto, AutoConfig::default());
        let notes = "applies only where notes are read (features.note_tokens above 0)";
        let tokenizer_keys = [
            ("features.tokenizer", f.tokenizer.is_some()),
            ("features.train_tokenizer", f.train_tokenizer.is_some()),
            ("features.vocab_size", f.vocab_size != default_vocab()),
            ("features.min_piece_subjects", f.min_piece_subjects != default_min_piece_subjects()),
        ];
        if f.note_tokens == 0 {
            if let Some((key, _)) = tokenizer_keys.iter().find(|(_, set)| *set) {
                return Err((key, notes));
            }
        }
        if f.train_tokenizer != Some(TokenizerKind::DpUnigram) {
            let set = [
                ("auto.tokenizer_noise_multiplier", a.tokenizer_noise_multiplier != d.tokenizer_noise_multiplier),
                ("auto.tokenizer_pieces_per_subject", a.tokenizer_pieces_per_subject != d.tokenizer_pieces_per_subject),
                ("auto.tokenizer_delta", a.tokenizer_delta != d.tokenizer_delta),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err((key, "applies to features.train_tokenizer = \"dp_unigram\" only"));
            }
        }
        if !matches!(f.channels, Some(Channels::Auto(_))) {
            let set = [
                ("auto.channels", a.channels != d.channels),
                ("auto.max_codes_per_subject", a.max_codes_per_subject != d.max_codes_per_subject),
                ("auto.selection_noise_multiplier", a.selection_noise_multiplier != d.selection_noise_multiplier),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err((key, "applies to features.channels = \"auto\" only (the DP selection of channels)"));
            }
        }
        Ok(())
    }

    /// Every numeric key against its range ([`BUCKETS`] and the rest); the error names the key.
    fn check_ranges(&self) -> std::result::Result<(), (&'static str, String)> {
        fn within<T: PartialOrd + std::fmt::Display>(
            key: &'static str,
            v: T,
            (lo, hi): (T, T),
        ) -> std::result::Result<(), (&'static str, String)> {
            if v >= lo && v <= hi {
                Ok(())
            } else {
                Err((
                    key,
                    format!(
                        "must be in [{}, {}] (got {})",
                        crate::short_number(lo),
                        crate::short_number(hi),
                        crate::short_number(v)
                    ),
                ))
            }
        }
        let f = &self.features;
        within("features.buckets", f.buckets, BUCKETS)?;
        within("features.note_tokens", f.note_tokens, NOTE_TOKENS)?;
        within("features.vocab_size", f.vocab_size, VOCAB_SIZE)?;
        within("features.lookback_hours", f.lookback_hours, (1.0 / 60.0, MAX_HOURS))?;
        within("features.max_tokenizer_corpus_bytes", f.max_tokenizer_corpus_bytes, TOKENIZER_CORPUS_BYTES)?;
        within("features.max_tensor_bytes", f.max_tensor_bytes, TENSOR_BYTES)?;
        let l = &self.labels;
        within("labels.offset_hours", l.offset_hours, (-MAX_HOURS, MAX_HOURS))?;
        // a lab_rise label is decided by the values after its measurement: a later prediction time
        // would put them in the features
        if l.task.as_deref() == Some("lab_rise") && l.offset_hours > 0.0 {
            return Err((
                "labels.offset_hours",
                format!(
                    "{} h after a lab_rise label's measurement would put the values that decide the label in its \
                     features: use 0 or a negative offset",
                    crate::short_number(l.offset_hours)
                ),
            ));
        }
        // a label file's prediction_time is the last time its data may come from (MEDS, ACES): a later one
        // puts what followed it, which may decide the label, in the features (found by a tester: a value
        // written an hour after each positive's time gave a held-out AUROC of 1.0 at offset 2)
        if l.file.is_some() && l.offset_hours > 0.0 {
            return Err((
                "labels.offset_hours",
                format!(
                    "{} h after a label file's prediction_time would put the data after it, which may decide the \
                     label, in its features: use 0 or a negative offset",
                    crate::short_number(l.offset_hours)
                ),
            ));
        }
        for (key, v) in [
            ("labels.window_hours", l.window_hours),
            ("labels.horizon_hours", l.horizon_hours),
            ("labels.rise", l.rise),
        ] {
            if let Some(v) = v {
                within(key, v, (f64::MIN_POSITIVE, MAX_HOURS))?;
            }
        }
        within("split.tuning", self.split.tuning, (0.0, 1.0))?;
        within("split.held_out", self.split.held_out, (0.0, 1.0))?;
        if self.split.tuning + self.split.held_out >= 1.0 {
            return Err((
                "split.held_out",
                format!(
                    "split.tuning {} and split.held_out {} take every subject: nothing is left to train on",
                    self.split.tuning, self.split.held_out
                ),
            ));
        }
        self.read.limits().validate().map_err(|(k, m)| (read_key(k), m))?;
        self.read.encoding().map_err(|m| ("read.encoding", m))?;
        self.read.time_zone().map_err(|m| ("read.time_zone", m))?;
        if let Err((role, m)) = self.read.columns.validate() {
            return Err((read_columns_key(role), m));
        }
        Ok(())
    }

    pub fn read_options(&self) -> ReadOptions {
        let mut o = ReadOptions {
            vitals: self.read.vitals,
            identifiers: self.read.identifiers,
            max_malformed_fraction: self.read.max_malformed_fraction,
            limits: self.read.limits(),
            encoding: self.read.encoding().unwrap_or_default(),
            time_zone: self.read.time_zone().unwrap_or_default(),
            columns: self.read.columns.clone(),
            code_map: self.read.loaded_code_map.clone(),
            ..Default::default()
        };
        if let Some(cs) = &self.read.code_systems {
            o.code_systems = cs.clone();
        }
        o
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Manifest {
    pub fingerprint: String,
    pub subjects: usize,
    pub examples: std::collections::BTreeMap<&'static str, usize>,
    pub positives: std::collections::BTreeMap<&'static str, usize>,
    pub channels: Vec<&'static str>,
    pub buckets: usize,
    pub lookback_hours: f64,
    pub note_tokens: usize,
    pub tokenizer_exportable: Option<bool>,
    /// the categories of categorical labels: `labels.classes`, in class order
    pub categories: Vec<String>,
    /// the categories are `labels.classes` (never the data's own)
    pub classes_declared: bool,
    /// the MEDS label column of the labels (`boolean_value`, ...); `None` when there are no labels
    pub label_type: Option<&'static str>,
    /// the distinct sites of the examples' subjects, sorted: the `site` tensors index into it
    pub sites: Vec<String>,
    pub labels_unknown_subjects: u64,
    /// how each channel is normalized: (channel, low, high, source: `jccls2019`, `textbook`, `vital`
    /// or `dp_quantiles`)
    pub normalization: Vec<(&'static str, f64, f64, &'static str)>,
    /// the DP releases of this preparation (channel selection, quantiles), each a Gaussian mechanism
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dp_releases: Vec<GaussianRelease>,
    /// their accountant phases, (noise multiplier, sample rate 1, 1 step) each: a run composes them
    /// with its DP-SGD phases, through the same accountant and ledger
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dp_phases: Vec<(f64, f64, u64)>,
    /// epsilon of all of them composed (PLD), at `dp_delta`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp_epsilon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp_delta: Option<f64>,
    /// added to a run's delta: the probability that a DP vocabulary selection kept a piece of one
    /// subject's alone ([`super::dp_tokenizer`]); the accountant's delta is the run's minus this
    #[serde(skip_serializing_if = "is_zero")]
    pub dp_delta_added: f64,
    /// `sha256:` of `read.code_map`'s file, when one mapped local codes
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_map: Option<String>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The categories of categorical labels, as `labels.classes` lists them (the class of a category is its
/// position). Categorical labels without the list, the list with other labels, and a label whose
/// category it does not list are refused (counted, never printed).
fn categories(config: &LabelsConfig, labels: &[Label], label_type: Option<&'static str>) -> Result<Vec<String>> {
    let categorical = label_type == Some("categorical_value");
    let Some(classes) = &config.classes else {
        if categorical {
            let mut distinct: Vec<&str> = labels
                .iter()
                .filter_map(|l| if let LabelValue::Categorical(c) = &l.value { Some(c.as_str()) } else { None })
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            return Err(DataError::Invalid(format!(
                "labels.classes: the labels are categorical_value ({} distinct categories): list the categories in \
                 labels.classes, in the order of the model's classes. The order is not taken from the data: a \
                 category one patient alone had would move the other classes' indices, which the DP guarantee does \
                 not cover",
                distinct.len()
            )));
        }
        return Ok(Vec::new());
    };
    if !categorical {
        return Err(DataError::Invalid(format!(
            "labels.classes: the labels are {}, not categorical_value (classes name the categories of \
             categorical labels)",
            label_type.unwrap_or("none")
        )));
    }
    let index = config.class_index().unwrap_or_default();
    let unlisted = labels
        .iter()
        .filter(|l| matches!(&l.value, LabelValue::Categorical(c) if !index.contains_key(c.as_str())))
        .count();
    if unlisted > 0 {
        return Err(DataError::Invalid(format!(
            "labels.classes: {unlisted} label(s) of {} have a categorical_value labels.classes does not list \
             (categories are matched exactly; the values are not printed)",
            labels.len()
        )));
    }
    Ok(classes.clone())
}

/// The MEDS label column all of `labels` came from; labels that mix columns (a parquet file whose rows
/// set different ones) are an error naming the columns, never a value.
fn label_type(labels: &[Label], source: Option<&Path>) -> Result<Option<&'static str>> {
    let column = |v: &LabelValue| match v {
        LabelValue::Bool(_) => "boolean_value",
        LabelValue::Int(_) => "integer_value",
        LabelValue::Float(_) => "float_value",
        LabelValue::Categorical(_) => "categorical_value",
    };
    let Some(first) = labels.first().map(|l| column(&l.value)) else { return Ok(None) };
    match labels.iter().map(|l| column(&l.value)).find(|&c| c != first) {
        None => Ok(Some(first)),
        Some(other) => {
            let msg = format!("labels mix {first} and {other}; a label file gives one value column");
            Err(match source {
                Some(path) => DataError::Format { path: path.into(), msg },
                None => DataError::Invalid(format!("labels: {msg}")),
            })
        }
    }
}

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Tuning => "tuning",
        Split::HeldOut => "held_out",
    }
}

/// Refuses a split whose tensors (three f32 lab tensors of examples x buckets x channels, the labels,
/// subjects and sites, the note ids) would pass `features.max_tensor_bytes`.
fn check_tensor_bytes(split: &str, examples: usize, spec: &features::LabSeriesSpec, config: &DataConfig) -> Result<()> {
    let (t, k, l) = (spec.buckets as u128, spec.channels.len() as u128, config.features.note_tokens as u128);
    let per_example = 3 * t * k * 4 + 4 + 8 + 8 + if l > 0 { l * 8 + 8 } else { 0 };
    let bytes = examples as u128 * per_example;
    let max = config.features.max_tensor_bytes;
    if bytes > max as u128 {
        return Err(DataError::Invalid(format!(
            "features.max_tensor_bytes: the {split} split needs about {:.2} GB ({examples} examples x {t} buckets x {k} channels, {l} note tokens), more than the {:.2} GB allowed; lower features.buckets, the channels or features.note_tokens, or raise the key",
            bytes as f64 / 1e9,
            max as f64 / 1e9
        )));
    }
    Ok(())
}

/// The lab channels and their normalization: the config's list (default: every catalogue lab with a
/// public reference interval) or the DP selection (`"auto"`), then DP quantiles for the chosen channels
/// without a public reference interval. Returns the spec and the DP releases made.
fn channels(
    config: &DataConfig,
    data: &super::Dataset,
    splits: &[Split],
) -> Result<(features::LabSeriesSpec, Vec<GaussianRelease>)> {
    let auto = &config.auto;
    let delta = Delta::new(auto.delta).map_err(|e| DataError::Invalid(format!("auto.delta: {e}")))?;
    let mut releases = Vec::new();
    // one key from the OS's entropy for this preparation's releases, made at the first need
    let mut source: Option<NoiseSource> = None;
    let os_noise = || NoiseSource::from_os_entropy().map_err(|e| DataError::Invalid(e.to_string()));
    let needs_values = matches!(config.features.channels, Some(Channels::Auto(_)));
    let mut subjects = needs_values.then(|| super::auto::subject_labs(data, splits));
    let names: Vec<String> = match &config.features.channels {
        Some(Channels::List(list)) => list.clone(),
        None => default_channels().map(|l| l.name.to_owned()).collect(),
        Some(Channels::Auto(_)) => {
            let sel = super::auto::Selection {
                channels: auto.channels,
                max_codes_per_subject: auto.max_codes_per_subject,
                noise_multiplier: auto.selection_noise_multiplier,
            };
            let subjects = subjects.as_ref().expect("computed for auto");
            let noise = match &mut source {
                Some(n) => n,
                none => none.insert(os_noise()?),
            };
            let (chosen, rel) = super::auto::select_channels(subjects, sel, delta, noise)
                .map_err(|e| DataError::Invalid(format!("auto: {e}")))?;
            releases.push(rel);
            chosen.iter().map(|l| l.name.to_owned()).collect()
        }
    };
    let mut spec = features::LabSeriesSpec::new(&names, config.features.buckets, config.features.lookback_hours)
        .map_err(DataError::Invalid)?;
    let unscaled = spec.unscaled();
    if !unscaled.is_empty() {
        let labs: Vec<&'static catalog::Lab> = unscaled.iter().map(|&c| spec.channels[c]).collect();
        let subjects = subjects.get_or_insert_with(|| super::auto::subject_labs(data, splits));
        let noise = match &mut source {
            Some(n) => n,
            none => none.insert(os_noise()?),
        };
        let (scales, rel) = super::auto::dp_quantiles(
            subjects,
            &labs,
            auto.quantile_bins,
            auto.quantile_noise_multiplier,
            delta,
            noise,
        )
        .map_err(|e| DataError::Invalid(format!("auto: {e}")))?;
        releases.push(rel);
        // (a lab whose histogram was noise keeps no scale: its public plausible range, said)
        for (&c, scale) in unscaled.iter().zip(scales) {
            if let Some((lo, hi)) = scale {
                spec = spec.with_scale(c, lo, hi);
            }
        }
    }
    Ok((spec, releases))
}

/// Runs the whole preparation; returns the QA report (blocking: nothing written) and the manifest.
///
/// Everything is written to a staging directory beside `out` and moved into place only when all of
/// it is written, so a failure (a tokenizer that cannot be trained, a full disk) leaves no
/// half-written output directory.
pub fn prepare(config: &DataConfig, out: &Path) -> Result<(Report, Option<Manifest>)> {
    let name = out.file_name().ok_or_else(|| DataError::io(out, "the output needs a directory name"))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::staging::remove_stale(parent, &name.to_string_lossy());
    let staging = crate::staging::partial(parent, &name.to_string_lossy());
    let result = prepare_into(config, &staging);
    if let Ok((_, Some(manifest))) = &result {
        if let Err(e) = publish(&staging, out) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        // the directory as published (an existing one keeps files this preparation did not write)
        record_prepared(out, &manifest.fingerprint)?;
    } else if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Moves the staged output into `out`: a rename when `out` does not exist or is empty, else file by
/// file (replacing files of the same name, as writing in place did).
fn publish(staging: &Path, out: &Path) -> Result<()> {
    let empty = match std::fs::read_dir(out) {
        Ok(mut d) => d.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(p).map_err(|e| DataError::io(p, e))?;
            }
            return std::fs::rename(staging, out).map_err(|e| DataError::io(out, e));
        }
        Err(e) => return Err(DataError::io(out, e)),
    };
    if empty {
        std::fs::remove_dir(out).map_err(|e| DataError::io(out, e))?;
        return std::fs::rename(staging, out).map_err(|e| DataError::io(out, e));
    }
    for e in std::fs::read_dir(staging).map_err(|e| DataError::io(staging, e))? {
        let from = e.map_err(|e| DataError::io(staging, e))?.path();
        let to = out.join(from.file_name().unwrap_or_default());
        std::fs::rename(&from, &to).map_err(|e| DataError::io(&to, e))?;
    }
    std::fs::remove_dir(staging).map_err(|e| DataError::io(staging, e))
}

fn prepare_into(config: &DataConfig, out: &Path) -> Result<(Report, Option<Manifest>)> {
    let opts = config.read_options();
    // the input as it resolves now, read and fingerprinted there, and refused if any of its files
    // changes before its fingerprint is taken (the permit and the ledger trust that fingerprint)
    // (a file input keeps its name as given: the fingerprint names it so, and `data fingerprint` of the
    // same path gives the permit's; its directory resolved)
    let input = super::fingerprint::resolved_input(&config.input);
    let before = super::fingerprint::Snapshot::take(&input)?;
    let (mut data, mut report) = super::read(&input, &opts)?;
    if report.blocking {
        return Ok((report, None));
    }
    data.sort();
    data.drop_repeated_notes();
    let task = config.labels.task().map_err(DataError::Invalid)?;
    let (mut labels, unknown) = match (&config.labels.file, &task) {
        // a label file that does not read is not the input: its errors name the key
        (Some(f), _) => {
            // (the file the config names is the user's, printed as a user's path is: `bad.csv` was hidden
            // as an export's file name; found by a tester)
            let file = labels::read_in(f, &data, &opts).map_err(|e| match e {
                DataError::Invalid(m) => DataError::Invalid(m),
                DataError::Line { path, line, msg } if path == *f => DataError::Invalid(format!(
                    "labels.file: {}:{line}: {msg}",
                    super::guard::shown_user_path(&path.display().to_string())
                )),
                DataError::Io { path, msg } | DataError::Format { path, msg } if path == *f => DataError::Invalid(
                    format!("labels.file: {}: {msg}", super::guard::shown_user_path(&path.display().to_string())),
                ),
                e => DataError::Invalid(format!("labels.file: {e}")),
            })?;
            // prediction times without a zone beside event times with one (or the reverse), read as UTC
            // both: hours apart, events on the wrong side of the prediction time
            let (events, labels) = (report.zones, file.zones);
            let (zones, resource, field) = match &opts.time_zone {
                // how many label times were read in the zone
                Some(_) => (labels, "labels", "prediction_time"),
                // zone-less label times beside times with a zone (the events' or their own)
                None if labels.local > 0 => {
                    (Zones { local: labels.local, zoned: labels.zoned + events.zoned }, "labels", "prediction_time")
                }
                // label times with a zone beside zone-less events (the input's own finding did not
                // name them, unless its times were mixed already)
                None if !events.mixed() => (Zones { local: events.local, zoned: labels.zoned }, "input", "time"),
                None => (Zones::default(), "", ""),
            };
            if let Some(f) = super::check::zone_finding(zones, opts.time_zone.as_ref(), resource, field) {
                report.add_finding(f);
            }
            if file.duplicates > 0 {
                report.add_finding(check::finding(
                    Severity::Warning,
                    "duplicate_label",
                    "labels",
                    "prediction_time",
                    file.duplicates,
                    Some("a subject's label at one prediction time given again: kept once".into()),
                ));
            }
            if file.unknown > 0 && !file.labels.is_empty() {
                // `train` refuses such labels (they may be another input's); said here too
                report.add_finding(check::finding(
                    Severity::Warning,
                    "label_unknown_subject",
                    "labels",
                    "subject_id",
                    file.unknown,
                    Some("labels naming a subject the input does not hold: not kept".into()),
                ));
            }
            (file.labels, file.unknown)
        }
        (None, Some(task)) => (labels::derive(&data, task)?, 0),
        (None, None) => return Err(DataError::Invalid("labels: needs a task or a file".into())),
    };
    if labels.is_empty() {
        // nothing to train or evaluate on: said here, not written as empty splits with exit 0
        return Err(DataError::Invalid(match &config.labels.file {
            Some(f) if unknown > 0 => {
                format!("labels: none of the {unknown} labels of {} names a subject of the input", f.display())
            }
            Some(f) => format!("labels: {} holds no labels", f.display()),
            None => match &task {
                Some(labels::Task::LabRise { lab, .. }) => format!(
                    "labels: the task lab_rise finds no prediction point in this input (no measurement of {}; \
                     `medtrain data check` lists the codes read)",
                    crate::data::guard::visible(lab.clone())
                ),
                _ => "labels: the task ed_admission finds no prediction point in this input (no Encounter of class \
                      EMER; `medtrain data check` lists the codes read)"
                    .into(),
            },
        }));
    }
    let offset = (config.labels.offset_hours * 3600.0) as i64;
    for l in &mut labels {
        l.prediction_time = l.prediction_time.saturating_add(offset);
    }
    let splits = split::assign(&data, config.split.key.as_bytes(), config.split.tuning, config.split.held_out)
        .map_err(DataError::Invalid)?;
    let label_type = label_type(&labels, config.labels.file.as_deref())?;
    let (spec, mut dp_releases) = channels(config, &data, &splits)?;
    for (l, _) in spec.channels.iter().zip(&spec.scales).filter(|(l, s)| l.reference.is_none() && s.is_none()) {
        let detail = format!(
            "{}: its DP histogram held more noise than subjects with values; scaled to the catalogue's plausible range \
             ({} to {} {}), which may flatten it (more subjects, or auto.quantile_noise_multiplier or \
             auto.quantile_bins lower)",
            l.name,
            crate::short_number(l.plausible.0),
            crate::short_number(l.plausible.1),
            l.unit
        );
        report.add_finished(Severity::Warning, "noisy_channel_scale", "features", "channels", Some(&detail));
    }
    let categories = categories(&config.labels, &labels, label_type)?;
    // the sites as the export names them (organization ids): they stay in the node, in sites.tsv
    let mut sites: Vec<String> = labels.iter().filter_map(|l| data.sites.get(&l.subject)).cloned().collect();
    sites.sort();
    sites.dedup();
    // the class index of each category (labels.classes)
    let class_of = config.labels.class_index().unwrap_or_default();
    // the size of every split's tensors, before any is built
    for which in [Split::Train, Split::Tuning, Split::HeldOut] {
        let n = labels.iter().filter(|l| splits[l.subject as usize] == which).count();
        // a train split without examples trains nothing (written with exit 0, it failed at train)
        if which == Split::Train && n == 0 {
            let subjects: std::collections::HashSet<u32> = labels.iter().map(|l| l.subject).collect();
            return Err(DataError::Invalid(format!(
                "split: no example falls in the train split ({} labelled subject(s) in all; split.tuning {} and \
                 split.held_out {} take the rest): the input is too small, or lower them",
                subjects.len(),
                config.split.tuning,
                config.split.held_out
            )));
        }
        check_tensor_bytes(split_name(which), n, &spec, config)?;
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    // the tokenizer: the user's, or trained on the train split's notes
    // what the DP selections (the tokenizer's vocabulary) add to the run's delta
    let mut dp_delta_added = 0.0;
    let tokenizer = if config.features.note_tokens == 0 {
        None
    } else if let Some(p) = &config.features.tokenizer {
        // (a config's file, not the input: found by a tester, a broken one was "cannot read the input")
        Some(NoteTokenizer::load(p).map_err(|e| DataError::Invalid(format!("config key features.tokenizer: {e}")))?)
    } else if config.features.train_tokenizer == Some(TokenizerKind::DpUnigram) {
        // each training subject's notes, in dataset order: a subject's list is its contribution
        let mut by_subject: std::collections::BTreeMap<u32, Vec<&str>> = std::collections::BTreeMap::new();
        for e in data
            .events
            .iter()
            .filter(|e| e.kind == super::EventKind::Note && splits[e.subject as usize] == Split::Train)
        {
            by_subject.entry(e.subject).or_default().push(data.texts[e.text as usize].as_str());
        }
        let notes: Vec<Vec<&str>> = by_subject.into_values().collect();
        let a = &config.auto;
        let params = super::dp_tokenizer::DpTokenizerParams {
            noise_multiplier: a.tokenizer_noise_multiplier,
            pieces_per_subject: a.tokenizer_pieces_per_subject,
            delta: a.tokenizer_delta,
            vocab_size: config.features.vocab_size,
        };
        let delta = Delta::new(a.delta).map_err(|e| DataError::Invalid(format!("auto.delta: {e}")))?;
        let source = NoiseSource::from_os_entropy().map_err(|e| DataError::Invalid(e.to_string()))?;
        let (t, rel, stats) = super::dp_tokenizer::train(&notes, params, delta, &source)?;
        dp_releases.push(rel);
        dp_delta_added += a.tokenizer_delta;
        t.save(&out.join("tokenizer.json"), Some(TokenizerKind::DpUnigram), Some(&stats))?;
        Some(t)
    } else {
        let kind = config.features.train_tokenizer.expect("checked when the config was loaded");
        let train_notes: Vec<String> = data
            .events
            .iter()
            .filter(|e| e.kind == super::EventKind::Note && splits[e.subject as usize] == Split::Train)
            .map(|e| data.texts[e.text as usize].clone())
            .collect();
        let t = NoteTokenizer::train_within(
            &train_notes,
            kind,
            config.features.vocab_size,
            config.features.max_tokenizer_corpus_bytes,
        )?;
        let note_subjects: Vec<u32> = data
            .events
            .iter()
            .filter(|e| e.kind == super::EventKind::Note && splits[e.subject as usize] == Split::Train)
            .map(|e| e.subject)
            .collect();
        // a piece only a few patients' notes use (or one shaped like an identifier) could be one of
        // their identifiers that the guard missed: it does not stay in the vocabulary
        let note_refs: Vec<&str> = train_notes.iter().map(String::as_str).collect();
        let (t, _) = t.keep_common_pieces(&note_refs, &note_subjects, config.features.min_piece_subjects)?;
        t.save(&out.join("tokenizer.json"), Some(kind), None)?;
        Some(t)
    };
    let mut manifest = Manifest {
        fingerprint: super::fingerprint::fingerprint_unchanged(&input, &before)?,
        subjects: data.subjects.len() - data.merged_into.len(),
        examples: std::collections::BTreeMap::new(),
        positives: std::collections::BTreeMap::new(),
        channels: spec.channels.iter().map(|l| l.name).collect(),
        buckets: spec.buckets,
        lookback_hours: spec.lookback_hours,
        note_tokens: config.features.note_tokens,
        tokenizer_exportable: tokenizer.as_ref().map(|t| t.exportable),
        classes_declared: config.labels.classes.is_some(),
        categories: categories.clone(),
        label_type,
        sites: site_labels(sites.len()),
        labels_unknown_subjects: unknown,
        code_map: opts.code_map.as_ref().map(|m| m.sha256.clone()),
        normalization: spec
            .channels
            .iter()
            .zip(&spec.scales)
            .map(|(l, s)| {
                let (lo, hi) = s.unwrap_or(l.plausible);
                let source = match (l.reference, s) {
                    (Some(_), _) => l.source,
                    (None, Some(_)) => "dp_quantiles",
                    (None, None) => "plausible_range",
                };
                (l.name, lo, hi, source)
            })
            .collect(),
        dp_phases: dp_releases.iter().map(|r| (r.noise_multiplier, 1.0, 1)).collect(),
        dp_epsilon: None,
        dp_delta: None,
        dp_delta_added,
        dp_releases,
    };
    if !manifest.dp_releases.is_empty() {
        let delta = Delta::new(config.auto.delta).map_err(|e| DataError::Invalid(format!("auto.delta: {e}")))?;
        manifest.dp_epsilon = Some(
            release::composed_epsilon(&manifest.dp_releases, delta)
                .map_err(|e| DataError::Invalid(format!("auto: {e}")))?,
        );
        manifest.dp_delta = Some(config.auto.delta);
    }
    for which in [Split::Train, Split::Tuning, Split::HeldOut] {
        let part: Vec<Label> = labels.iter().filter(|l| splits[l.subject as usize] == which).cloned().collect();
        let n = part.len();
        let f = features::lab_series(&data, &spec, &part);
        if which == Split::Train {
            // a channel the training examples never see: an all-masked input (and a DP release spent
            // on it where its scale comes from DP quantiles), said rather than trained on silently
            let k = spec.channels.len();
            for (c, lab) in spec.channels.iter().enumerate() {
                if k > 0 && !f.mask.iter().skip(c).step_by(k).any(|&m| m != 0.0) {
                    report.add_finished(Severity::Warning, "empty_channel", "features", "channels", Some(lab.name));
                }
            }
        }
        let y: Vec<f32> = part
            .iter()
            .map(|l| match &l.value {
                LabelValue::Bool(b) => *b as u8 as f32,
                LabelValue::Int(i) => *i as f32,
                LabelValue::Float(v) => *v as f32,
                // every category listed ([`categories`] refused the others)
                LabelValue::Categorical(c) => class_of.get(c.as_str()).copied().unwrap_or(0) as f32,
            })
            .collect();
        manifest.positives.insert(split_name(which), part.iter().filter(|l| l.value == LabelValue::Bool(true)).count());
        manifest.examples.insert(split_name(which), n);
        // the privacy unit: examples of one subject share a group id (first-seen order)
        let mut group_of = HashMap::new();
        let subject: Vec<i64> = part
            .iter()
            .map(|l| {
                let next = group_of.len() as i64;
                *group_of.entry(l.subject).or_insert(next)
            })
            .collect();
        let site: Vec<i64> = part
            .iter()
            .map(|l| data.sites.get(&l.subject).and_then(|s| sites.binary_search(s).ok()).map_or(-1, |i| i as i64))
            .collect();
        let (t, k) = (spec.buckets, spec.channels.len());
        // examples with a lab value in their window (notes are added below)
        let mut has_input: Vec<bool> =
            (0..n).map(|i| k > 0 && f.mask[i * t * k..(i + 1) * t * k].iter().any(|&m| m != 0.0)).collect();
        let mut tensors = vec![
            ("lab_values".to_owned(), vec![n, t, k], OutData::F32(f.values)),
            ("lab_mask".to_owned(), vec![n, t, k], OutData::F32(f.mask)),
            ("lab_since_last".to_owned(), vec![n, t, k], OutData::F32(f.since_last)),
            ("y".to_owned(), vec![n], OutData::F32(y)),
            ("subject".to_owned(), vec![n], OutData::I64(subject)),
            ("site".to_owned(), vec![n], OutData::I64(site)),
        ];
        if let Some(tok) = &tokenizer {
            let nt = text::note_tokens(&data, tok, &part, config.features.note_tokens)?;
            // a tokenizer that does not cover the notes' script (an English model's on Japanese notes:
            // 発熱 read as `発 [UNK]`) leaves the model little to read (found by a tester: 19% unknown,
            // nothing said)
            if which == Split::Train && nt.tokens > 0 && nt.unknown * 20 > nt.tokens {
                report.findings.push(super::check::Finding {
                    severity: super::check::Severity::Warning,
                    kind: "unknown_tokens".into(),
                    resource: "notes".into(),
                    field: "features.tokenizer".into(),
                    count: nt.unknown,
                    detail: Some(format!(
                        "{:.1}% of the train split's note tokens are the tokenizer's unknown token: it does not cover \
                         the notes' script or vocabulary",
                        100.0 * nt.unknown as f64 / nt.tokens as f64
                    )),
                    file: None,
                    lines: vec![],
                });
            }
            tensors.push((
                "note_ids".to_owned(),
                vec![n, nt.max_len],
                OutData::I64(nt.ids.iter().map(|&x| x as i64).collect()),
            ));
            for (h, &len) in has_input.iter_mut().zip(&nt.lengths) {
                *h |= len > 0;
            }
            tensors.push((
                "note_len".to_owned(),
                vec![n],
                OutData::I64(nt.lengths.iter().map(|&x| x as i64).collect()),
            ));
        }
        if which == Split::Train {
            // examples the model sees nothing of (a prediction time before the data, channels the
            // input does not have): a run on them only would spend its budget learning the base rate
            let without = has_input.iter().filter(|&&h| !h).count();
            if n > 0 && without == n {
                // values the input holds in a unit that does not convert are no channel's values: the
                // cause, where there are any (found by a tester: hemoglobin all in mmol/L, and the
                // message sent them to the label times)
                let unconvertible: u64 =
                    report.findings.iter().filter(|f| f.kind == "unconvertible_unit").map(|f| f.count).sum();
                let units = if unconvertible > 0 {
                    format!(
                        "; {unconvertible} values of the input are in units that do not convert to the catalogue's and \
                         are not read (unconvertible_unit: medtrain data check lists them)"
                    )
                } else {
                    String::new()
                };
                return Err(DataError::Invalid(format!(
                    "none of the {n} training examples has a value of features.channels within features.lookback_hours \
                     before its prediction time, nor a note: a model would learn nothing from them (check the label \
                     file's prediction times and read.time_zone, and that the input has the tests features.channels \
                     names){units}"
                )));
            }
            if without > 0 {
                report.add_finding(check::finding(
                    Severity::Warning,
                    "example_without_input",
                    "features",
                    "lookback_hours",
                    without as u64,
                    Some(format!("{without} of {n} training examples have no lab value in their window and no note")),
                ));
            }
        }
        let meta = HashMap::from([
            ("split".to_owned(), split_name(which).to_owned()),
            ("fingerprint".to_owned(), manifest.fingerprint.clone()),
        ]);
        let path = out.join(format!("{}.safetensors", split_name(which)));
        tensors::write(&path, &tensors, Some(meta))
            .map_err(|e| DataError::Io { path: path.clone(), msg: e.to_string() })?;
    }
    let spath = out.join(SITES_FILE);
    std::fs::write(&spath, sites_table(&manifest.sites, &sites)).map_err(|e| DataError::io(&spath, e))?;
    let mpath = out.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))
        .map_err(|e| DataError::io(&mpath, e))?;
    Ok((report, Some(manifest)))
}

/// Records the directory just written in the node's ledger ([`super::prepared::digest`]), so that a DP
/// run can tell it from one changed since.
fn record_prepared(out: &Path, fingerprint: &str) -> Result<()> {
    use crate::privacy::{accountant::AccountantKind, ledger::Ledger, permit};
    let digest = super::prepared::digest(out)?;
    let path = permit::ledger_path();
    if let Some(home) = path.parent() {
        std::fs::create_dir_all(home).map_err(|e| DataError::io(home, e))?;
    }
    Ledger::open(&path, AccountantKind::Pld)
        .and_then(|mut l| l.record_prepared(&digest, fingerprint))
        .map_err(|e| DataError::Invalid(e.to_string()))
}

/// The file of a prepared directory that says which organization each site label stands for: it stays
/// in the node (a run does not copy it, the export gate does not read it).
pub const SITES_FILE: &str = "sites.tsv";

/// The labels of n sites in the manifest and everything made from it (metrics, report, release):
/// `site-1` .. `site-n` in the order of the export's organization ids. The ids themselves are strings
/// from the data (an organization's id can be a name or a number that points at a small place) and are
/// never printed or exported.
pub fn site_labels(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("site-{i}")).collect()
}

fn sites_table(labels: &[String], organizations: &[String]) -> String {
    let mut t = String::from("site\torganization\n");
    for (label, org) in labels.iter().zip(organizations) {
        // a tab or line break in an id would break the table: shown escaped
        t.push_str(&format!("{label}\t{}\n", org.escape_debug()));
    }
    t
}
