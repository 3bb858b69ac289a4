//! The training config (`medtrain train CONFIG`): one TOML file a researcher writes, in five tables.
//!
//! ```toml
//! [data]                        # input, format and today's data config keys (read, labels, split,
//! input = "export"              # features, auto) under the same names; relative to this file
//! format = "fhir"               # fhir | meds | csv | prepared (a `medtrain data prepare` directory)
//! [data.labels]
//! task = "ed_admission"
//! [data.features]
//! buckets = 24
//! note_tokens = 128
//! train_tokenizer = "unigram"
//!
//! [model]                       # the model (model::config::ModelConfig)
//! [model.lab]
//! kind = "transformer"
//! [model.head]
//! type = "binary"
//!
//! [optim]
//! algorithm = "adamw"           # adamw | sgd (with momentum)
//! lr = 1e-3
//! schedule = "cosine"           # constant | linear | cosine, after warmup_steps of linear warm-up
//! warmup_steps = 50
//!
//! [privacy]
//! target_epsilon = 3.0          # or noise_multiplier = 1.1 (then epsilon is what the steps spend)
//! delta = 1e-5
//! clip_norm = 1.0
//! expected_batch_subjects = 64  # or sample_rate = 0.01
//! unit = "subject"              # subject (patient, the default) | example
//! max_examples_per_subject = 8
//!
//! [train]
//! epochs = 5                    # or steps = 2000
//! eval_every = 100
//! checkpoint_every = 200
//! seed = 1                      # model initialization
//! threads = 2
//! backend = "cpu"               # cpu | cuda | cuda:N
//! tf32 = false                  # CUDA: TF32 matmuls (faster, ~1e-3 relative error); off by default
//! micro_batch = 512             # at most this many examples per forward/backward (memory); whole subjects
//! ```
//!
//! Every key is checked; an unknown key is an error naming it and the allowed ones; a bad value names
//! the key, the value and the range.

use crate::data::prepare::{AutoConfig, DataConfig, FeaturesConfig, LabelsConfig, ReadConfig, SplitConfig};
use crate::model::config::ModelConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataSection,
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub train: TrainSection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Fhir,
    Meds,
    Csv,
    Prepared,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub input: PathBuf,
    pub format: DataFormat,
    #[serde(default)]
    pub read: Option<ReadConfig>,
    #[serde(default)]
    pub labels: Option<LabelsConfig>,
    #[serde(default)]
    pub split: Option<SplitConfig>,
    #[serde(default)]
    pub features: Option<FeaturesConfig>,
    #[serde(default)]
    pub auto: Option<AutoConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    #[serde(default = "adamw")]
    pub algorithm: Algorithm,
    #[serde(default = "lr")]
    pub lr: f64,
    /// SGD only
    #[serde(default = "momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "constant")]
    pub schedule: Schedule,
    #[serde(default)]
    pub warmup_steps: u64,
}

fn adamw() -> Algorithm {
    Algorithm::Adamw
}
fn lr() -> f64 {
    1e-3
}
fn momentum() -> f64 {
    0.9
}
fn constant() -> Schedule {
    Schedule::Constant
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            algorithm: adamw(),
            lr: lr(),
            momentum: momentum(),
            weight_decay: 0.0,
            schedule: constant(),
            warmup_steps: 0,
        }
    }
}

impl OptimConfig {
    /// The learning rate at `step` (0-based) of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        let w = self.warmup_steps;
        if step < w {
            return self.lr * (step + 1) as f64 / w as f64;
        }
        let span = total.saturating_sub(w).max(1) as f64;
        let t = ((step - w) as f64 / span).min(1.0);
        self.lr
            * match self.schedule {
                Schedule::Constant => 1.0,
                Schedule::Linear => 1.0 - t,
                Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Subject,
    Example,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_multiplier: Option<f64>,
    pub delta: f64,
    #[serde(default = "one")]
    pub clip_norm: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_batch_subjects: Option<f64>,
    #[serde(default = "subject")]
    pub unit: Unit,
    #[serde(default = "max_examples")]
    pub max_examples_per_subject: usize,
    #[serde(default)]
    pub assume_one_example_per_subject: bool,
    /// pld (the default) or rdp
    #[serde(default = "pld")]
    pub accountant: String,
    /// Keys of the noise and of the sampling derived from this seed instead of the OS's entropy:
    /// reproducible runs for tests and audits. Whoever knows the seed knows the noise, so such a run
    /// is marked in its record and the export gate refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_seed: Option<u64>,
}

fn one() -> f64 {
    1.0
}
fn subject() -> Unit {
    Unit::Subject
}
/// `privacy.max_examples_per_subject` where the config does not give it.
pub const DEFAULT_MAX_EXAMPLES_PER_SUBJECT: usize = 8;
fn max_examples() -> usize {
    DEFAULT_MAX_EXAMPLES_PER_SUBJECT
}
fn pld() -> String {
    "pld".into()
}

/// The compute backend a run uses: `"cpu"`, `"cuda"` (the first visible GPU) or `"cuda:N"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) if n < 1024 => Ok(Device::Cuda(n)),
                _ => Err("expected cpu, cuda or cuda:N (N the GPU's ordinal among the visible ones)".into()),
            },
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(0) => f.write_str("cuda"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// evaluate on the tuning split every this many steps (0: only at the end)
    #[serde(default)]
    pub eval_every: u64,
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "threads")]
    pub threads: usize,
    #[serde(default = "cpu")]
    pub backend: Device,
    /// CUDA only: let cuBLAS round matmul operands to TF32 (faster, about 1e-3 relative error)
    #[serde(default)]
    pub tf32: bool,
    /// examples per forward pass when evaluating
    #[serde(default = "eval_batch")]
    pub eval_batch: usize,
    /// at most this many examples per forward and backward of a training step: a larger sampled batch
    /// runs as micro-batches of whole privacy units whose clipped gradients add (one noise draw, one
    /// update), so activation memory is that of this many examples; unset: the whole batch at once
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch: Option<usize>,
    /// the same bits on any x86-64-v3 machine (AVX2 + FMA, with or without AVX-512, whatever its
    /// caches): matmul in fixed k blocks, lane-reducing shapes on the AVX2 kernels
    #[serde(default)]
    pub portable: bool,
}

fn checkpoint_every() -> u64 {
    200
}
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(64)
}
fn cpu() -> Device {
    Device::Cpu
}
fn eval_batch() -> usize {
    256
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            steps: None,
            epochs: None,
            eval_every: 0,
            checkpoint_every: checkpoint_every(),
            seed: 0,
            threads: threads(),
            backend: cpu(),
            tf32: false,
            eval_batch: eval_batch(),
            micro_batch: None,
            portable: false,
        }
    }
}

/// The environment variable a node job's `train` gets: the SHA-256 of its config as submitted.
pub const SUBMITTED_SHA256: &str = "MEDTRAIN_CONFIG_SHA256";

/// A config error: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub msg: String,
}

/// The largest number of steps a config may ask for (the noise stream's 48-bit step counter allows
/// far more; this is a typo guard).
pub const MAX_STEPS: u64 = 100_000_000;

impl TrainConfig {
    /// Reads and checks `path`; relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<(Self, String), ConfigError> {
        let err = |msg: String| ConfigError { path: path.to_path_buf(), msg };
        let text =
            crate::read_text_bounded(path, crate::MAX_CONFIG_BYTES).map_err(|e| err(format!("cannot read: {e}")))?;
        // a node job trains the config as it was submitted: one replaced since (by a link to a file its
        // researcher could not read) is refused before it is parsed, so nothing of it is shown
        if let Ok(want) = std::env::var(SUBMITTED_SHA256) {
            if super::seal::sha256_hex(text.as_bytes()) != want {
                return Err(err(
                    "changed since the job was submitted (its SHA-256 differs): submit it again".to_string()
                ));
            }
        }
        let mut c: TrainConfig = toml::from_str(&text)
            .map_err(|e| err(format!("config: {}", crate::data::reportable::toml_error(&text, &e))))?;
        let base = path.parent().unwrap_or(Path::new("."));
        // absolute, so that the data config's own resolution leaves them as they are
        let abs = |p: &Path| std::path::absolute(base.join(p)).unwrap_or_else(|_| base.join(p));
        c.data.input = abs(&c.data.input);
        if let Some(crate::model::config::TextEncoder::Pretrained { path: p, .. }) = c.model.text.as_mut() {
            *p = abs(p);
        }
        c.check().map_err(|(key, msg)| err(format!("config key {key}: {msg}")))?;
        Ok((c, text))
    }

    /// The data config of a format that is read and prepared by the run (not `prepared`).
    pub fn data_config(&self, path: &Path) -> Result<Option<DataConfig>, ConfigError> {
        let d = &self.data;
        if d.format == DataFormat::Prepared {
            return Ok(None);
        }
        let labels = d.labels.clone().ok_or_else(|| ConfigError {
            path: path.to_path_buf(),
            msg: "config key data.labels: needed to read fhir, meds or csv input (a task or a file)".into(),
        })?;
        let c = DataConfig {
            input: d.input.clone(),
            read: d.read.clone().unwrap_or_default(),
            labels,
            split: d.split.clone().unwrap_or_default(),
            features: d.features.clone().unwrap_or_default(),
            auto: d.auto.clone().unwrap_or_default(),
        };
        // input is already absolute or relative to the working directory; labels.file and the
        // tokenizer are resolved against the config's directory here
        c.resolve(path, "data.").map(Some).map_err(|e| match e {
            // already about this file: its path once
            crate::data::DataError::Format { path: p, msg } if p == path => ConfigError { path: p, msg },
            e => ConfigError { path: path.to_path_buf(), msg: e.to_string() },
        })
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        let d = &self.data;
        if d.format == DataFormat::Prepared
            && (d.read.is_some() || d.labels.is_some() || d.features.is_some() || d.auto.is_some() || d.split.is_some())
        {
            return bad(
                "data.format",
                "prepared data is read as prepared: data.read, labels, split, features and auto belong to \
                 `medtrain data prepare`"
                    .into(),
            );
        }
        let o = &self.optim;
        // the bounds below are in f32 (the steps compute in it): 1e-50 passed as positive and trained at 0
        if !(o.lr >= 1e-10 && o.lr <= 10.0) {
            return bad("optim.lr", format!("{} is not in [1e-10, 10]", crate::short_number(o.lr)));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad("optim.momentum", format!("{} is not in [0, 1)", crate::short_number(o.momentum)));
        }
        if !(0.0..=1.0).contains(&o.weight_decay) {
            return bad("optim.weight_decay", format!("{} is not in [0, 1]", crate::short_number(o.weight_decay)));
        }
        if o.algorithm == Algorithm::Adamw && o.momentum != momentum() {
            return bad("optim.momentum", "applies to algorithm = \"sgd\" only".into());
        }
        let p = &self.privacy;
        match (p.target_epsilon, p.noise_multiplier) {
            (None, None) => return bad("privacy", "needs target_epsilon or noise_multiplier".into()),
            (Some(e), _) if !(e > 0.0 && e <= 100.0) => {
                return bad("privacy.target_epsilon", format!("{} is not in (0, 100]", crate::short_number(e)));
            }
            // below 0.1 one step spends more than any budget (1e-300 was refused by the ledger, as epsilon inf)
            (_, Some(s)) if !(s >= 0.1 && s <= 1000.0) => {
                return bad("privacy.noise_multiplier", format!("{} is not in [0.1, 1000]", crate::short_number(s)));
            }
            _ => {}
        }
        if !(p.delta > 0.0 && p.delta < 0.1) {
            return bad("privacy.delta", format!("{} is not in (0, 0.1)", crate::short_number(p.delta)));
        }
        // 1e-50 passed as positive, was 0 in f32, and failed after the budget was reserved
        if !(p.clip_norm >= 1e-6 && p.clip_norm <= 1e6) {
            return bad("privacy.clip_norm", format!("{} is not in [1e-6, 1e6]", crate::short_number(p.clip_norm)));
        }
        match (p.sample_rate, p.expected_batch_subjects) {
            (None, None) => return bad("privacy", "needs sample_rate or expected_batch_subjects".into()),
            (Some(_), Some(_)) => {
                return bad("privacy.sample_rate", "give sample_rate or expected_batch_subjects, not both".into())
            }
            (Some(q), _) if !(q > 0.0 && q <= 1.0) => {
                return bad("privacy.sample_rate", format!("{} is not in (0, 1]", crate::short_number(q)));
            }
            (_, Some(b)) if !(1.0..=1e7).contains(&b) => {
                return bad(
                    "privacy.expected_batch_subjects",
                    format!("{} is not in [1, 1e7]", crate::short_number(b)),
                );
            }
            _ => {}
        }
        if !(1..=4096).contains(&p.max_examples_per_subject) {
            return bad(
                "privacy.max_examples_per_subject",
                format!("{} is not in [1, 4096]", p.max_examples_per_subject),
            );
        }
        if p.assume_one_example_per_subject && p.unit != Unit::Example {
            return bad("privacy.assume_one_example_per_subject", "applies to unit = \"example\" only".into());
        }
        if p.accountant != "pld" && p.accountant != "rdp" {
            return bad("privacy.accountant", format!("{:?}: expected \"pld\" or \"rdp\"", p.accountant));
        }
        let t = &self.train;
        match (t.steps, t.epochs) {
            (None, None) => return bad("train", "needs steps or epochs".into()),
            (Some(_), Some(_)) => return bad("train.steps", "give steps or epochs, not both".into()),
            (Some(s), _) if s == 0 || s > MAX_STEPS => {
                return bad("train.steps", format!("{} is not in [1, {MAX_STEPS}]", crate::short_number(s)));
            }
            (_, Some(e)) if !(e > 0.0 && e <= 1e4) => {
                return bad("train.epochs", format!("{} is not in (0, 1e4]", crate::short_number(e)))
            }
            _ => {}
        }
        if !(1..=256).contains(&t.threads) {
            return bad("train.threads", format!("{} is not in [1, 256]", crate::short_number(t.threads)));
        }
        if t.checkpoint_every == 0 {
            return bad("train.checkpoint_every", "must be at least 1".into());
        }
        if !(1..=65536).contains(&t.eval_batch) {
            return bad("train.eval_batch", format!("{} is not in [1, 65536]", crate::short_number(t.eval_batch)));
        }
        if t.micro_batch == Some(0) {
            return bad("train.micro_batch", "0: a micro-batch needs at least 1 example".into());
        }
        if o.warmup_steps > MAX_STEPS {
            return bad("optim.warmup_steps", format!("{} is more than {MAX_STEPS}", o.warmup_steps));
        }
        Ok(())
    }
}
