//! `medtrain train CONFIG`: a researcher's training run.
//!
//! 1. The config is read and checked ([`TrainConfig`]); the run directory is made (mode 0700) with the
//!    config as given and as resolved.
//! 2. FHIR, MEDS or CSV input is prepared into `RUN/data` (`data prepare`'s pipeline); prepared input
//!    is read where it is. Splits are read through memory maps.
//! 3. The model is built ([`crate::model::config`]); a pretrained encoder's weights are public input.
//! 4. The privacy plan: the sample rate, the steps, the noise multiplier calibrated to the target
//!    epsilon (or the epsilon the given one spends), composed with any DP release of the preparation.
//!    Errors that would surface late (no positive example, an unreachable epsilon, label subjects
//!    missing from the data) stop the run before its first step.
//! 5. Steps run through [`DpRun`] (Poisson sampling of subjects, at most `max_examples_per_subject`
//!    examples each, clipped together; secure noise; the accountant records every step run).
//!    Checkpoints every `checkpoint_every` steps and on SIGINT/SIGTERM; `--resume` continues bit for
//!    bit on the CPU.
//! 6. The held-out split is evaluated (per site where the data has sites) and the run directory gets
//!    `metrics.json`, `report.html` and `run.json`.

use super::checkpoint::{self, Checkpoint};
use super::config::{Algorithm, ConfigError, DataFormat, Device, TrainConfig, Unit};
use super::evaluate::{evaluate, report_data, tuning_metric};
use super::metrics;
use super::report;
use super::{micro_batches, DpSgd, Privacy, Trainer};
use crate::data::prepared::{Prepared, SplitData, Targets as DataTargets};
use crate::data::DataError;
use crate::model::config::{DataShape, LabelType, ModelError};
use crate::model::footprint::{Footprint, Shape};
use crate::model::{Head, Model};
use crate::privacy::accountant::{self, AccountantKind, Delta, Phase, SampleRate};
use crate::privacy::noise::NoiseSource;
use crate::privacy::sampler::PoissonSampler;
use kernels::{Backend, Cpu, GroupRows, KernelError, OptimizerKind};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
}

/// A ledger's error stops a run with its message (as every refusal of the ledger did).
impl From<crate::privacy::ledger::LedgerError> for TrainError {
    fn from(e: crate::privacy::ledger::LedgerError) -> Self {
        TrainError::Invalid(e.to_string())
    }
}

pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), msg: e.to_string() }
}

/// Command-line overrides and how to report progress.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub backend: Option<Device>,
    /// TF32 matmuls on CUDA (`--tf32`; else the config's `train.tf32`)
    pub tf32: bool,
    pub threads: Option<usize>,
    pub run_dir: Option<PathBuf>,
    pub resume: bool,
    /// stop after this many steps of this invocation, as an interruption would (tests of resume)
    pub stop_after: Option<u64>,
    /// no progress bar or line log (the JSON result only)
    pub quiet: bool,
    /// a non-private baseline (the same sampling, no clipping or noise) for quality benchmarks: its
    /// epsilon is infinite, its record says so, and it can never be exported
    pub no_dp: bool,
    /// a replay (`medtrain reproduce`): these prepared data and (noise key, sampler seed) instead of
    /// preparing the input and drawing keys
    pub replay: Option<(PathBuf, [u8; 32], [u8; 32])>,
}

/// What a finished (or interrupted) run reports; `--json` prints it as the last line.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub finished: bool,
    /// the digest of the prepared data the run trained on (`data::prepared::digest`; charged runs):
    /// `reproduce` replays only on these data
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_digest: Option<String>,
    /// false only for a `--no-dp` baseline
    pub dp: bool,
    pub head: &'static str,
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    pub epsilon: f64,
    pub delta: f64,
    pub accountant: &'static str,
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub steps: u64,
    pub planned_steps: u64,
    pub clip_norm: f64,
    pub unit: &'static str,
    pub report: PathBuf,
    pub trainable_parameters: usize,
    pub parameters: usize,
    pub seconds: f64,
    /// the pretrained checkpoint's files and their SHA-256 (public input: spends no budget)
    pub base_model: Vec<(String, String)>,
    /// the noise came from `privacy.noise_seed` (tests only: never releasable)
    pub noise_seeded: bool,
    pub assume_one_example_per_subject: bool,
    /// the notes' tokenizer may leave the node (not fitted on private notes without DP)
    pub tokenizer_exportable: Option<bool>,
    /// the SHA-256 of the tokenizer.json the config named (`data.features.tokenizer`: a pretrained
    /// model's), as it was when the notes were prepared; `None` for a tokenizer trained here
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer_sha256: Option<String>,
    pub fingerprint: String,
    pub code_version: String,
    /// the CPU features the bits of this run depend on (gemm and the kernels pick their paths by them)
    pub cpu_features: Vec<&'static str>,
    /// the backend the run trained on: "cpu", or "cuda (GPU name, sm_XY)" (with ", tf32" when asked)
    pub backend: String,
    /// trained in the portable mode (`train.portable`)
    pub portable: bool,
    /// the permit that covers the data, its project, and whether the settled spend is over its budget
    pub permit: PathBuf,
    pub project: String,
    pub over_budget: bool,
    /// the classes of a multiclass model on categorical labels: the categories `data.labels.classes`
    /// declared, in class order (public: from the config, never from the data)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// The x86-64 features the CPU backend's bits depend on, as the kernels use them now: AVX-512 only
/// where the CPU has it and `MEDTRAIN_CPU_ISA` does not force AVX2. A portable run's bits depend on
/// the x86-64-v3 baseline alone (`train.portable`); a run that is not portable also depends on gemm's
/// view of the caches (its k blocks), which is not a feature flag: it replays bit for bit on the same
/// CPU model.
pub fn cpu_features(portable: bool) -> Vec<&'static str> {
    if portable {
        return vec!["x86-64-v3"];
    }
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            v.push("fma");
        }
        if kernels::cpu::isa::avx512() {
            v.push("avx512f");
        }
    }
    v
}

/// A run's id in the ledger: its directory's canonical path (symlinks and `..` resolved, so every
/// spelling of the directory names the same run), or the absolute path when it cannot be resolved.
pub fn run_id(run_dir: &Path) -> String {
    std::fs::canonicalize(run_dir)
        .or_else(|_| std::path::absolute(run_dir))
        .unwrap_or_else(|_| run_dir.to_path_buf())
        .display()
        .to_string()
}

/// The code version: the package version and the git commit it was built from.
pub fn code_version() -> String {
    let commit = env!("MEDTRAIN_GIT_COMMIT");
    if commit.is_empty() {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        format!("{} ({commit})", env!("CARGO_PKG_VERSION"))
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM ask the run to checkpoint and stop after the current step.
fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// The privacy plan of a run, fixed before its first step.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Plan {
    pub units: usize,
    pub sample_rate: f64,
    pub steps: u64,
    pub noise_multiplier: f64,
    pub clip_norm: f64,
    pub delta: f64,
    pub target_epsilon: Option<f64>,
    /// epsilon of the whole plan (the preparation's releases and every planned step)
    pub planned_epsilon: f64,
    pub accountant: String,
    /// DP releases of the data preparation: (noise multiplier, sample rate, steps)
    pub prepare_phases: Vec<(f64, f64, u64)>,
    /// what the preparation adds to delta outright (a DP tokenizer's threshold): the accountant
    /// composes at `delta - delta_added`
    #[serde(default)]
    pub delta_added: f64,
}

fn accounting_delta(delta: f64, added: f64) -> Result<Delta, TrainError> {
    if delta - added <= 0.0 {
        return Err(TrainError::Invalid(format!(
            "config key privacy.delta: {delta} leaves nothing for the accountant once the data preparation's DP \
             selections add {added:.1e} (auto.tokenizer_delta); raise privacy.delta or lower auto.tokenizer_delta"
        )));
    }
    Delta::new(delta - added).map_err(|e| TrainError::Invalid(format!("config key privacy.delta: {e}")))
}

impl Plan {
    /// The delta the accountant composes at: the run's less what the preparation adds outright.
    pub fn accounting_delta(&self) -> Result<Delta, TrainError> {
        accounting_delta(self.delta, self.delta_added)
    }

    /// Equal up to the rounding of the checkpoint's JSON (floats within 1e-12 relative).
    pub fn same_as(&self, o: &Plan) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
        let close_phases = |a: &[(f64, f64, u64)], b: &[(f64, f64, u64)]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x.0, y.0) && close(x.1, y.1) && x.2 == y.2)
        };
        self.units == o.units
            && self.steps == o.steps
            && close(self.sample_rate, o.sample_rate)
            && close(self.noise_multiplier, o.noise_multiplier)
            && close(self.clip_norm, o.clip_norm)
            && close(self.delta, o.delta)
            && self
                .target_epsilon
                .zip(o.target_epsilon)
                .map_or(self.target_epsilon == o.target_epsilon, |(a, b)| close(a, b))
            && self.accountant == o.accountant
            && close_phases(&self.prepare_phases, &o.prepare_phases)
            && close(self.delta_added, o.delta_added)
    }
}

/// The run's DP state: the model's trainer (its weights change only by a private step), the Poisson
/// sampler of subjects and the subset draws, the noise key, and the accountant's record of the steps
/// run. The only way to update the weights of a run goes through [`DpRun::step`].
pub struct DpRun<B: Backend> {
    trainer: Trainer<B, Box<dyn Model<B>>>,
    sampler: PoissonSampler,
    plan: Plan,
    /// the steps run, as (noise multiplier, sample rate, steps) phases
    history: Vec<(f64, f64, u64)>,
    max_per_unit: usize,
    /// at most this many examples per forward and backward (`train.micro_batch`)
    micro_batch: Option<usize>,
    picked: Vec<usize>,
    rows: Vec<usize>,
    sub: Vec<usize>,
}

/// One step's outcome.
pub struct Stepped {
    pub loss: f64,
    pub examples: usize,
    pub groups: usize,
}

impl<B: Backend> DpRun<B> {
    fn accountant(&self) -> AccountantKind {
        if self.plan.accountant == "rdp" {
            AccountantKind::Rdp
        } else {
            AccountantKind::Pld
        }
    }

    pub fn steps(&self) -> u64 {
        self.trainer.steps()
    }

    /// One DP-SGD step: sample units with probability q, take at most `max_examples_per_subject`
    /// examples of each, clip each unit's summed gradient, add noise, update; record the step.
    pub fn step(&mut self, be: &B, data: &SplitData, units: &[Vec<u32>], pick: &Picker) -> Result<Stepped, TrainError> {
        self.sampler.next_batch(&mut self.picked);
        self.rows.clear();
        let mut offsets = vec![0usize];
        for i in 0..self.picked.len() {
            let ex = &units[self.picked[i]];
            self.sampler.subset(ex.len(), self.max_per_unit, &mut self.sub);
            self.rows.extend(self.sub.iter().map(|&j| ex[j] as usize));
            offsets.push(self.rows.len());
        }
        let batch = data.batch(&self.rows, pick.lab, pick.text, pick.targets)?;
        let groups = GroupRows { offsets };
        let stats = match self.micro_batch {
            Some(m) if self.rows.len() > m => {
                let parts = micro_batches(&batch, &groups, m);
                let up = parts.iter().map(|(b, g)| Ok((b.upload(be)?, g))).collect::<kernels::Result<Vec<_>>>()?;
                self.trainer.micro_step(be, &up.iter().map(|(b, g)| (b, *g)).collect::<Vec<_>>())?
            }
            _ => self.trainer.step(be, &batch.upload(be)?, &groups)?,
        };
        let (s, q) = (self.plan.noise_multiplier, self.plan.sample_rate);
        match self.history.last_mut() {
            Some(last) if last.0 == s && last.1 == q => last.2 += 1,
            _ => self.history.push((s, q, 1)),
        }
        Ok(Stepped { loss: stats.loss, examples: self.rows.len(), groups: stats.groups })
    }

    /// Epsilon of the preparation's releases and the steps run so far (infinite without DP).
    pub fn epsilon(&self) -> Result<(f64, &'static str), TrainError> {
        if !self.trainer.is_private() {
            return Ok((f64::INFINITY, "none"));
        }
        let phases = phases_of(self.plan.prepare_phases.iter().chain(&self.history))?;
        if phases.is_empty() {
            return Ok((0.0, self.accountant().name()));
        }
        let r = accountant::epsilon(self.accountant(), &phases, self.plan.accounting_delta()?);
        Ok((r.epsilon, r.accountant.name()))
    }
}

fn phases_of<'a>(p: impl Iterator<Item = &'a (f64, f64, u64)>) -> Result<Vec<Phase>, TrainError> {
    p.filter(|p| p.2 > 0)
        .map(|&(s, q, n)| Phase::new(s, q, n).map_err(|e| TrainError::Invalid(format!("accountant: {e}"))))
        .collect()
}

/// What the model reads from the prepared data.
#[derive(Clone, Copy, Debug)]
pub struct Picker {
    pub lab: bool,
    pub text: bool,
    pub targets: DataTargets,
}

fn label_type(manifest_type: Option<&str>) -> Result<LabelType, TrainError> {
    Ok(match manifest_type {
        Some("boolean_value") | None => LabelType::Boolean,
        Some("integer_value") => LabelType::Integer,
        Some("float_value") => LabelType::Float,
        Some("categorical_value") => LabelType::Categorical,
        Some(_) => {
            return Err(TrainError::Invalid("the prepared manifest's label_type is not a MEDS label column".into()))
        }
    })
}

/// The vocabulary size of the tokenizer the notes were tokenized with.
fn vocab_of(tokenizer: &Path) -> Result<usize, TrainError> {
    Ok(read_tokenizer(tokenizer)?.get_vocab_size(true))
}

fn read_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer, TrainError> {
    let bytes = crate::read_bounded(path, 256 << 20).map_err(|e| io(path, e))?;
    tokenizers::Tokenizer::from_bytes(&bytes).map_err(|_| {
        TrainError::Invalid(format!("{}: not a tokenizer.json the tokenizers library can read", path.display()))
    })
}

/// A pretrained encoder reads the ids of its own tokenizer: the notes' tokenizer (`notes`) must give
/// every piece the id the checkpoint's does (another tokenizer's ids index the wrong embeddings, and
/// the run would train on them without a word).
fn check_pretrained_tokenizer(model: &crate::model::config::ModelConfig, notes: &Path) -> Result<(), TrainError> {
    let Some(crate::model::config::TextEncoder::Pretrained { path, .. }) = &model.text else { return Ok(()) };
    let own = path.join("tokenizer.json");
    let notes_tokenizer = read_tokenizer(notes)?;
    let theirs = notes_tokenizer.get_vocab(true);
    let vocab_txt = path.join("vocab.txt");
    let refuse = |why: String| {
        TrainError::Invalid(format!(
            "config key data.features.tokenizer: the notes are tokenized with {}, {why}: the encoder would read ids \
             it was not pretrained on",
            notes.display()
        ))
    };
    // the slow tokenizer's settings (tokenizer_config.json), where the checkpoint has them
    let settings = slow_tokenizer_settings(path)?;
    if let Some(word) = settings.word_tokenizer {
        return Err(refuse(format!(
            "but the checkpoint splits words with {word} before its subwords (tokenizer_config.json: \
             word_tokenizer_type), which no tokenizer.json does"
        )));
    }
    if !own.is_file() && vocab_txt.is_file() {
        // a checkpoint that ships only the slow tokenizer's vocab.txt (a piece per line, its id the line's
        // index): every piece must have that id in the notes' tokenizer
        let text = crate::read_text_bounded(&vocab_txt, 64 << 20).map_err(|e| io(&vocab_txt, e))?;
        let same = text.lines().count() == theirs.len()
            && text.lines().enumerate().all(|(i, piece)| theirs.get(piece) == Some(&(i as u32)));
        if !same {
            return Err(TrainError::Invalid(format!(
                "config key data.features.tokenizer: the notes are tokenized with {}, whose vocabulary is not the \
                 pretrained encoder's ({}): use a tokenizer.json made from that vocabulary",
                notes.display(),
                vocab_txt.display()
            )));
        }
        // BERT's slow tokenizer lowercases unless do_lower_case is false: a BertNormalizer that does not
        // (or does where the checkpoint does not) gives other ids for every capital
        let parts = tokenizer_parts(&notes_tokenizer);
        let normalizer = parts.get("normalizer");
        if normalizer.and_then(|n| n.get("type")).and_then(|t| t.as_str()) == Some("BertNormalizer") {
            let lowercase = normalizer.and_then(|n| n.get("lowercase")).and_then(|l| l.as_bool());
            if lowercase != Some(settings.do_lower_case) {
                return Err(refuse(format!(
                    "whose normalizer {} lowercase, but the checkpoint's tokenizer {} (tokenizer_config.json: \
                     do_lower_case {})",
                    if lowercase == Some(true) { "does" } else { "does not" },
                    if settings.do_lower_case { "does" } else { "does not" },
                    settings.do_lower_case
                )));
            }
        }
        return Ok(());
    }
    if !own.is_file() {
        eprintln!(
            "warning: {} has neither tokenizer.json nor vocab.txt: the notes' tokenizer is checked against its \
             vocab_size only",
            path.display()
        );
        return Ok(());
    }
    let checkpoint_tokenizer = read_tokenizer(&own)?;
    if checkpoint_tokenizer.get_vocab(true) != theirs {
        return Err(TrainError::Invalid(format!(
            "config key data.features.tokenizer: the notes are tokenized with {}, whose vocabulary is not the \
             pretrained encoder's ({}): set data.features.tokenizer to the checkpoint's tokenizer.json",
            notes.display(),
            own.display()
        )));
    }
    // the same vocabulary, split otherwise (a normalizer that does not lowercase where the checkpoint's
    // does, another pre-tokenizer or special tokens): compared as the tokenizers library writes both
    let (a, b) = (tokenizer_parts(&checkpoint_tokenizer), tokenizer_parts(&notes_tokenizer));
    // (notes are encoded without special tokens: the post-processor, which adds them, is not compared)
    for part in ["normalizer", "pre_tokenizer", "model"] {
        if a.get(part) != b.get(part) {
            return Err(refuse(format!(
                "whose {part} is not that of the checkpoint's {} (set data.features.tokenizer to that file)",
                own.display()
            )));
        }
    }
    Ok(())
}

/// A tokenizer's parts as the tokenizers library writes them (so two files that differ only in how
/// they were written compare equal), the model's vocabulary left out (compared as ids); a BPE model's
/// merges stay (the same vocabulary merged otherwise gives other ids).
fn tokenizer_parts(t: &tokenizers::Tokenizer) -> serde_json::Map<String, serde_json::Value> {
    let mut v = t.to_string(false).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let Some(serde_json::Value::Object(map)) = v.as_mut() else { return Default::default() };
    if let Some(serde_json::Value::Object(model)) = map.get_mut("model") {
        model.remove("vocab");
    }
    std::mem::take(map)
}

/// What a checkpoint's tokenizer_config.json says of its slow tokenizer.
struct SlowTokenizer {
    /// BERT's `do_lower_case` (true where not given, as `BertTokenizer`'s default)
    do_lower_case: bool,
    /// a word splitter run before the subwords (`BertJapaneseTokenizer`'s MeCab, Sudachi, Juman++)
    word_tokenizer: Option<String>,
}

fn slow_tokenizer_settings(dir: &Path) -> Result<SlowTokenizer, TrainError> {
    let path = dir.join("tokenizer_config.json");
    let mut out = SlowTokenizer { do_lower_case: true, word_tokenizer: None };
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(out);
    }
    let text = crate::read_text_bounded(&path, 16 << 20).map_err(|e| io(&path, e))?;
    let v: serde_json::Value = crate::json_from_python(text.as_bytes()).map_err(|e| {
        TrainError::Invalid(format!("{}: not valid JSON at line {}, column {}", path.display(), e.line(), e.column()))
    })?;
    match v.get("do_lower_case") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Bool(l)) => out.do_lower_case = *l,
        // (a NaN, a string: not the default in its place, which would decide the notes' ids)
        Some(_) => {
            return Err(TrainError::Invalid(format!("{}: key do_lower_case must be true or false", path.display())))
        }
    }
    // BertJapaneseTokenizer splits words with MeCab unless its word_tokenizer_type says otherwise
    let japanese = v.get("tokenizer_class").and_then(|c| c.as_str()) == Some("BertJapaneseTokenizer");
    let word = v.get("word_tokenizer_type").and_then(|w| w.as_str()).or(japanese.then_some("mecab"));
    if let Some(w) = word.filter(|w| *w != "basic") {
        let known = ["mecab", "sudachi", "jumanpp", "spm"];
        out.word_tokenizer =
            Some(known.iter().find(|k| **k == w).map_or("a word tokenizer".to_owned(), |k| format!("\"{k}\"")));
    }
    Ok(out)
}

/// The optimizer's state buffers per trainable parameter.
fn optimizer_states(cfg: &TrainConfig) -> u64 {
    match cfg.optim.algorithm {
        Algorithm::Adamw => 2,
        Algorithm::Sgd if cfg.optim.momentum != 0.0 => 1,
        Algorithm::Sgd => 0,
    }
}

/// Refuses a model whose training step does not fit the backend's memory even by its footprint's
/// lower bound, for steps of `examples` examples (a micro-batch at most).
fn fits<'a, B: Backend>(
    be: &'a B,
    device: &'a str,
    cfg: &'a TrainConfig,
    examples: u64,
) -> impl FnOnce(&Footprint) -> Result<(), ModelError> + 'a {
    move |fp| {
        let Some(limit) = be.memory_limit() else { return Ok(()) };
        let examples = cfg.train.micro_batch.map_or(examples, |m| examples.min(m as u64)).max(1);
        let device = if be.name() == "cpu" { "host".to_string() } else { device.to_string() };
        fp.check_fits(optimizer_states(cfg), examples, limit, &device)
            .map_err(|(key, msg)| ModelError::Config { key, msg })
    }
}

/// A multiclass head on categorical labels has one class per declared category (`what`, `n`).
fn check_classes(
    head: &crate::model::config::HeadConfig,
    label: LabelType,
    n: usize,
    what: &str,
) -> Result<(), TrainError> {
    use crate::model::config::HeadConfig;
    if label != LabelType::Categorical {
        return Ok(());
    }
    if n == 0 {
        return Err(TrainError::Invalid(
            "the prepared data's categorical labels have no declared classes (prepared before data.labels.classes \
             was required, their class order taken from the data): prepare them again with data.labels.classes"
                .into(),
        ));
    }
    match head {
        HeadConfig::Multiclass { classes } if *classes != n => Err(TrainError::Invalid(format!(
            "config key model.head.classes: {classes}, but {what} list {n} categories (one class each, in their order)"
        ))),
        _ => Ok(()),
    }
}

/// The model checked against the shape the data config promises, before the data are prepared (hours
/// on a real cohort): every key the shape decides, a pretrained checkpoint's files and tokenizer, and
/// whether the model fits the backend's memory.
fn check_model_before_data<B: Backend>(
    be: &B,
    device: &str,
    cfg: &TrainConfig,
    dc: &crate::data::prepare::DataConfig,
) -> Result<(), TrainError> {
    let f = &dc.features;
    let series = cfg.model.lab.as_ref().map(|_| (f.buckets, 3 * dc.channel_count()));
    let text = match &cfg.model.text {
        None => None,
        Some(_) if f.note_tokens == 0 => {
            return Err(TrainError::Invalid(
                "config key model.text: the data config reads no notes (data.features.note_tokens = 0)".into(),
            ))
        }
        Some(crate::model::config::TextEncoder::Pretrained { .. }) if f.tokenizer.is_none() => {
            return Err(TrainError::Invalid(
                "config key data.features.tokenizer: a pretrained encoder reads the ids of its own tokenizer: set it to \
                 the checkpoint's tokenizer.json (not data.features.train_tokenizer)"
                    .into(),
            ))
        }
        Some(_) => {
            // a tokenizer trained on the notes has at most vocab_size pieces: 1 bounds it from below
            let vocab = match &f.tokenizer {
                Some(path) => {
                    check_pretrained_tokenizer(&cfg.model, path)?;
                    vocab_of(path)?
                }
                None => 1,
            };
            Some((vocab, f.note_tokens))
        }
    };
    // the built-in tasks label with booleans; a label file's type is known once it is read, except that
    // declared classes are categorical labels'
    let label = match (&dc.labels.task, &dc.labels.classes) {
        (Some(_), _) => Some(LabelType::Boolean),
        (None, Some(c)) => {
            check_classes(&cfg.model.head, LabelType::Categorical, c.len(), "data.labels.classes")?;
            Some(LabelType::Categorical)
        }
        (None, None) => None,
    };
    let ck = cfg.model.validate_shape(series, text, label)?;
    let examples = cfg.privacy.expected_batch_subjects.map_or(1, |b| b.max(1.0) as u64);
    fits(be, device, cfg, examples)(&cfg.model.footprint(&Shape {
        series,
        text,
        pretrained: ck.as_ref().map(|c| &c.config),
    }))?;
    // the weights themselves (every tensor the encoder needs, its shape, finite values), loaded into the
    // encoder on the host: they were checked only once the data had been prepared
    if let Some(ck) = &ck {
        ck.check_weights().map_err(ModelError::from)?;
    }
    Ok(())
}

/// Makes `dir` (and parents) with mode 0700.
fn private_dir(dir: &Path) -> Result<(), TrainError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(dir, e))
}

pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A line log (stderr not a terminal) or an indicatif bar.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    log: Option<std::fs::File>,
    quiet: bool,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64, done: u64, quiet: bool, log: Option<std::fs::File>) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(done);
            b
        });
        Progress { bar, log, quiet, last_line: Instant::now() }
    }

    /// A message for the log file and, without a bar, stderr.
    fn line(&mut self, msg: &str) {
        if let Some(f) = &mut self.log {
            use std::io::Write;
            let _ = writeln!(f, "{msg}");
        }
        match &self.bar {
            Some(b) => b.println(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Whether [`Progress::step`] writes a line at `step` (the line log: every 5 s and at the last step).
    fn line_due(&self, step: u64, total: u64) -> bool {
        self.bar.is_none() && (self.last_line.elapsed().as_secs_f64() >= 5.0 || step == total)
    }

    fn step(&mut self, step: u64, total: u64, loss: Option<f64>, eps: Option<f64>, rate: f64, eta_s: f64) {
        let e = eps.map_or(String::new(), |e| format!(" epsilon {e:.3}"));
        let loss = loss.map_or_else(|| "no subject sampled".to_string(), |l| format!("loss {l:.4}"));
        let msg = format!("{loss}{e} {rate:.0} samples/s");
        if let Some(b) = &self.bar {
            b.set_position(step);
            b.set_message(msg);
        } else if self.line_due(step, total) {
            self.last_line = Instant::now();
            self.line(&format!("step {step}/{total} {msg} ETA {eta_s:.0} s"));
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// The keys a resumed run may change: a new phase's (noise, sampling, clip norm, steps) and how it runs
/// (threads, checkpoints, evaluation, the device, the micro-batch a device's memory allows, the portable
/// paths); `[data]` is checked against the prepared data.
const RESUME_MAY_CHANGE: [&str; 15] = [
    "privacy.noise_multiplier",
    "privacy.target_epsilon",
    "privacy.clip_norm",
    "privacy.sample_rate",
    "privacy.expected_batch_subjects",
    "train.steps",
    "train.epochs",
    "train.threads",
    "train.checkpoint_every",
    "train.eval_every",
    "train.eval_batch",
    "train.backend",
    "train.tf32",
    "train.micro_batch",
    "train.portable",
];

/// Whether the run's config before a resume (`RUN/config.resolved.toml`) summed its steps in another
/// order than `cfg` does: another `train.micro_batch` (its micro-batches' clipped gradients add in
/// another order) or `train.portable` (other kernels). The bits of the steps after differ, so the
/// steps before are a phase of their own for `reproduce`, as a new plan's are.
fn sums_otherwise(run_dir: &Path, cfg: &TrainConfig) -> bool {
    let Some(before) = std::fs::read_to_string(run_dir.join("config.resolved.toml"))
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
    else {
        return false;
    };
    let train = before.get("train").and_then(|t| t.as_table());
    let micro_batch = train.and_then(|t| t.get("micro_batch")).and_then(|m| m.as_integer());
    let portable = train.and_then(|t| t.get("portable")).and_then(|p| p.as_bool()).unwrap_or(false);
    micro_batch != cfg.train.micro_batch.map(|m| m as i64) || portable != cfg.train.portable
}

/// The keys (dotted) whose values differ between two configs, outside `[data]` and
/// [`RESUME_MAY_CHANGE`]; a key set in one only counts as changed. Names only: values are not kept.
fn changed_keys(old: &toml::Table, new: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for key in old.keys().chain(new.keys().filter(|k| !old.contains_key(*k))) {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if path == "data" || RESUME_MAY_CHANGE.contains(&path.as_str()) {
            continue;
        }
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => changed_keys(a, b, &path, out),
            (a, b) if a != b => out.push(path),
            _ => {}
        }
    }
}

/// A config's tables outside `[data]` as read: every key with its value or its default, each value of its
/// key's type (`None` where the text is not a config).
fn settings_of(text: &str) -> Option<toml::Table> {
    let c: TrainConfig = toml::from_str(text).ok()?;
    let mut t = toml::Table::new();
    t.insert("model".into(), toml::Value::try_from(&c.model).ok()?);
    t.insert("optim".into(), toml::Value::try_from(&c.optim).ok()?);
    t.insert("privacy".into(), toml::Value::try_from(&c.privacy).ok()?);
    t.insert("train".into(), toml::Value::try_from(&c.train).ok()?);
    Some(t)
}

/// The resolved config: the given TOML with absolute paths, the defaults filled in and the plan.
fn resolved_toml(given: &str, c: &TrainConfig, plan: &Plan) -> String {
    let mut v: toml::Table = toml::from_str(given).unwrap_or_default();
    if let Some(toml::Value::Table(d)) = v.get_mut("data") {
        d.insert("input".into(), toml::Value::String(c.data.input.display().to_string()));
    }
    let put = |v: &mut toml::Table, k: &str, s: Result<toml::Value, toml::ser::Error>| {
        if let Ok(x) = s {
            v.insert(k.into(), x);
        }
    };
    put(&mut v, "model", toml::Value::try_from(&c.model));
    put(&mut v, "optim", toml::Value::try_from(&c.optim));
    put(&mut v, "privacy", toml::Value::try_from(&c.privacy));
    put(&mut v, "train", toml::Value::try_from(&c.train));
    put(&mut v, "plan", toml::Value::try_from(plan));
    toml::to_string(&v).unwrap_or_default()
}

/// A new directory under `runs` named `name`, else `name-2`, `name-3`, ...: made here, so that two
/// runs started in the same second take two (found by a tester: the second was refused as using the
/// first's directory).
fn default_run_dir(runs: &Path, name: &str) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(runs).map_err(|e| io(runs, e))?;
    for n in 1..=1000 {
        let dir = if n == 1 { runs.join(name) } else { runs.join(format!("{name}-{n}")) };
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&dir, e)),
        }
    }
    Err(TrainError::Invalid(format!("{}: 1000 runs named {name} exist; give --run-dir DIR", runs.display())))
}

/// What a run's prepared data (`RUN/data`) were made from, kept beside them in `RUN/data.source.json`:
/// the config's `[data]` table (its input as resolved) and the SHA-256 of the files it names outside the
/// input (the label file, the tokenizer). A run that took no step reuses the data only when these and
/// the input's fingerprint are unchanged; a resumed run refuses a changed `[data]` table (its steps
/// were taken on the data it prepared).
#[derive(Debug, PartialEq, serde::Deserialize, Serialize)]
struct DataSource {
    data: toml::Table,
    /// the label file's SHA-256 (a label directory: each file's path and SHA-256, a line each)
    labels_sha256: Option<String>,
    tokenizer_sha256: Option<String>,
    /// `read.code_map`'s `sha256:` as the config load read it (absent in runs from before the key)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_map_sha256: Option<String>,
}

const DATA_SOURCE: &str = "data.source.json";

impl DataSource {
    fn of(given: &str, cfg: &TrainConfig, dc: &crate::data::prepare::DataConfig) -> Result<Self, TrainError> {
        let mut data = match toml::from_str::<toml::Table>(given).ok().and_then(|mut t| t.remove("data")) {
            Some(toml::Value::Table(d)) => d,
            _ => toml::Table::new(),
        };
        // the input as it resolves (the config may be given by another path, or from another directory)
        let input = std::fs::canonicalize(&cfg.data.input).unwrap_or_else(|_| cfg.data.input.clone());
        data.insert("input".into(), toml::Value::String(input.display().to_string()));
        let sha = |key: &str, p: &Path| {
            super::seal::sha256_file(p).map_err(|_| {
                TrainError::Invalid(format!(
                    "config key {key}: {} cannot be read",
                    crate::data::guard::shown_user_path(&p.display().to_string())
                ))
            })
        };
        // a label directory: every label file's path under it and its content
        let labels = match &dc.labels.file {
            None => None,
            Some(path) => {
                let mut all = String::new();
                let files = crate::data::labels::files(path)
                    .map_err(|e| TrainError::Invalid(format!("config key data.labels.file: {e}")))?;
                for f in files {
                    let name =
                        f.strip_prefix(path).ok().filter(|n| !n.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    all += &format!("{}\n{}\n", name.display(), sha("data.labels.file", &f)?);
                }
                Some(all)
            }
        };
        let tokenizer = dc.features.tokenizer.as_ref().map(|p| sha("data.features.tokenizer", p)).transpose()?;
        let code_map = dc.read.loaded_code_map.as_ref().map(|m| m.sha256.clone());
        Ok(DataSource { data, labels_sha256: labels, tokenizer_sha256: tokenizer, code_map_sha256: code_map })
    }

    fn read(run_dir: &Path) -> Option<Self> {
        let bytes = crate::read_bounded(&run_dir.join(DATA_SOURCE), crate::MAX_CONFIG_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, run_dir: &Path) -> Result<(), TrainError> {
        let path = run_dir.join(DATA_SOURCE);
        std::fs::write(&path, serde_json::to_vec_pretty(self).expect("serializes")).map_err(|e| io(&path, e))
    }
}

/// The names a run directory holds (a directory holding anything else is not a run's).
const RUN_FILES: &[&str] = &[
    "config.given.toml",
    "config.resolved.toml",
    "run.json",
    "metrics.json",
    "report.html",
    "checkpoint",
    "checkpoint.old",
    "checkpoint.partial",
    "data",
    DATA_SOURCE,
    "train.log",
    "seal.json",
    "seal.json.partial",
    super::reproduce::PHASES,
    LOCK_FILE,
];

/// The lock file of runs of this session's first builds (a run directory holding one is a run's).
const LOCK_FILE: &str = ".lock";

/// The run directory held by this process for as long as the handle returned is open: an exclusive
/// lock (flock) on the directory itself, which no file in it can stand in for (a lock file can be
/// removed and made again). A second `train` into the same directory overwrote the first's config
/// files before the ledger refused it (the first then sealed the second's config), and `permit settle`
/// of a live run settled it short.
pub fn lock_run(run_dir: &Path) -> Result<std::fs::File, TrainError> {
    let file = std::fs::File::open(run_dir).map_err(|e| io(run_dir, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Invalid(format!(
            "{}: another medtrain process (a train or a permit settle) is using this run directory; wait for it to end",
            run_dir.display()
        ))),
        // a file system without locks (some network mounts): said, not a reason to refuse every run
        Err(std::fs::TryLockError::Error(e))
            if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::ENOLCK | libc::EOPNOTSUPP)) =>
        {
            eprintln!(
                "warning: {}: the file system does not lock ({e}); make sure no other medtrain uses this run directory",
                run_dir.display()
            );
            Ok(file)
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(run_dir, e)),
    }
}

/// A charged run's checkpoint written whole and recorded in the ledger, left in `checkpoint.partial`
/// by a process stopped before it swapped it in: made the run's checkpoint
/// ([`checkpoint::roll_forward`]). Nothing for a run the ledger has no digest of.
/// Why a run's checkpoint is refused when it is not the one the ledger recorded last: the one in
/// `checkpoint.partial` where the run left it there (changed or damaged since; `checkpoint` is the one
/// before, untouched), else `checkpoint` itself.
pub fn not_recorded_checkpoint(run_dir: &Path) -> String {
    if run_dir.join("checkpoint.partial").is_dir() {
        format!(
            "{}: the run's last recorded checkpoint is this one, which no longer matches its record in the ledger \
             (changed or damaged after it was written; checkpoint holds the one before it)",
            run_dir.join("checkpoint.partial").display()
        )
    } else {
        format!(
            "{}: the checkpoint is not one this run wrote (this node's ledger has another digest): it was changed \
             after the run stopped",
            run_dir.join("checkpoint").display()
        )
    }
}

pub fn roll_forward_recorded(run_dir: &Path) -> Result<(), TrainError> {
    use crate::privacy::{ledger::Ledger, permit};
    let path = permit::ledger_path();
    if !run_dir.join("checkpoint.partial").is_dir() || !path.is_file() {
        return Ok(());
    }
    let ledger = Ledger::open(&path, AccountantKind::Pld)?;
    let last = ledger.checkpoint_record(&run_id(run_dir))?;
    if let Some(last) = last {
        checkpoint::roll_forward(run_dir, &last)?;
    }
    Ok(())
}

/// Runs (or resumes) the training of `config_path`.
pub fn train(config_path: &Path, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    // a model key's error names the config it is in (found by a tester: `model.lab.hidden: 0: ...` alone)
    train_config(config_path, opts).map_err(|e| match e {
        TrainError::Model(ModelError::Config { key, msg }) => TrainError::Invalid(format!(
            "{}: config key {key}: {msg}",
            crate::data::guard::shown_user_path(&config_path.display().to_string())
        )),
        e => e,
    })
}

fn train_config(config_path: &Path, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let started = Instant::now();
    let (cfg, given) = TrainConfig::load(config_path)?;
    let backend = opts.backend.unwrap_or(cfg.train.backend);
    let tf32 = opts.tf32 || cfg.train.tf32;
    let threads = opts.threads.unwrap_or(cfg.train.threads);
    if !(1..=256).contains(&threads) {
        return Err(TrainError::Invalid(format!("--threads {threads}: expected 1 to 256")));
    }
    match backend {
        Device::Cpu => {
            if tf32 {
                return Err(TrainError::Invalid(
                    "config key train.tf32 (or --tf32): TF32 is for the cuda backend; the CPU computes in f32".into(),
                ));
            }
            let be = Cpu::new(threads)?.portable(cfg.train.portable);
            let features = cpu_features(cfg.train.portable);
            train_on(be, "cpu".into(), features, config_path, opts, cfg, given, started)
        }
        Device::Cuda(ordinal) => {
            if cfg.train.portable {
                return Err(TrainError::Invalid(
                    "config key train.portable: portable bits are a CPU setting; remove it or use --backend cpu".into(),
                ));
            }
            let mut be = kernels::cuda::Cuda::new(ordinal)?;
            be.set_tf32(tf32)?;
            let i = be.info();
            let desc = format!(
                "{} ({}, sm_{}{}{})",
                backend,
                i.name,
                i.compute_capability.0,
                i.compute_capability.1,
                if tf32 { ", tf32" } else { "" }
            );
            train_on(be, desc, vec![], config_path, opts, cfg, given, started)
        }
    }
}

/// The run on one backend (`device`: its description for the record; `cpu_features`: what the CPU
/// backend's bits depend on, none for a device).
#[allow(clippy::too_many_arguments)]
fn train_on<B: Backend + 'static>(
    be: B,
    device: String,
    cpu_features: Vec<&'static str>,
    config_path: &Path,
    opts: &RunOptions,
    cfg: TrainConfig,
    mut given: String,
    started: Instant,
) -> Result<RunSummary, TrainError> {
    let run_dir = match &opts.run_dir {
        Some(d) => d.clone(),
        None if opts.resume => {
            return Err(TrainError::Invalid("--resume needs --run-dir DIR (the run to continue)".into()))
        }
        None => {
            let stem = config_path.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            default_run_dir(&PathBuf::from("runs"), &format!("{stem}-{}", utc_stamp()))?
        }
    };
    let ck_dir = run_dir.join("checkpoint");
    // the run's record (run.json) names its directory: a name that is not UTF-8 left it empty
    if run_dir.to_str().is_none() {
        return Err(TrainError::Invalid(format!(
            "--run-dir {}: not UTF-8; give a directory whose name is UTF-8",
            run_dir.display()
        )));
    }
    if run_dir.exists() && !run_dir.is_dir() {
        return Err(TrainError::Invalid(format!(
            "--run-dir {}: not a directory; give a new or empty directory, or a run to --resume",
            run_dir.display()
        )));
    }
    if opts.resume {
        // a run keeps its mode: a DP run resumed with --no-dp was rewritten as a non-private one (its
        // reservation never settled), a --no-dp one resumed with DP failed on its checkpoint
        let record = crate::read_bounded(&run_dir.join("run.json"), crate::MAX_CONFIG_BYTES)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(r) = record {
            match r["dp"].as_bool() {
                Some(true) if opts.no_dp => {
                    return Err(TrainError::Invalid(format!(
                        "{}: trained with DP-SGD; resume it without --no-dp",
                        run_dir.display()
                    )))
                }
                Some(false) if !opts.no_dp => {
                    return Err(TrainError::Invalid(format!(
                        "{}: a --no-dp baseline; resume it with --no-dp",
                        run_dir.display()
                    )))
                }
                _ => {}
            }
        }
        if opts.no_dp && permit::ledger_path().is_file() {
            // a DP run has its reservation in the ledger, whatever run.json says (it is the
            // researcher's to edit) or where there is none (a run killed before it wrote it): found by
            // a tester, resumed with --no-dp it trained on without noise, and could not be settled
            let ledger = Ledger::open(&permit::ledger_path(), AccountantKind::Pld)?;
            if ledger.run_state(&run_id(&run_dir))?.is_some() {
                return Err(TrainError::Invalid(format!(
                    "{}: trained with DP-SGD (this node's ledger holds its reservation); resume it without --no-dp",
                    run_dir.display()
                )));
            }
        }
    } else if let Ok(entries) = std::fs::read_dir(&run_dir) {
        // a directory of other files is not written into (a run's files would mix with them, and a
        // run's directory is sealed whole)
        let foreign = entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // a killed preparation's staging (`.data.partial-PID`) is the run's own
            !RUN_FILES.contains(&name.as_str()) && !name.starts_with(".data.partial-")
        });
        if foreign {
            return Err(TrainError::Invalid(format!(
                "--run-dir {}: holds files that are not a medtrain run's; give a new or empty directory",
                run_dir.display()
            )));
        }
    }
    // a run directory inside the input (prepared data too: the replay and the gate read it) changed the
    // input's fingerprint, so that no permit covered it any more, and the input stayed changed
    if let (Ok(input), Ok(dir)) = (
        std::fs::canonicalize(&cfg.data.input),
        std::fs::canonicalize(run_dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("."))),
    ) {
        if dir.starts_with(&input) {
            return Err(TrainError::Invalid(format!(
                "--run-dir {}: inside config key data.input ({}); a run directory goes outside its input",
                run_dir.display(),
                cfg.data.input.display()
            )));
        }
    }
    // held until the run returns; nothing in the directory is written before it is
    private_dir(&run_dir)?;
    let _lock = lock_run(&run_dir)?;
    let (resume, resume_digest) = if opts.resume {
        let charged = !opts.no_dp && opts.replay.is_none();
        if charged {
            roll_forward_recorded(&run_dir)?;
        }
        let (ck, digest) = checkpoint::load_with_digest(&run_dir)?.ok_or_else(|| {
            let partial = run_dir.join("checkpoint.partial").is_dir();
            // a run stopped before it reserved anything (in its data preparation): nothing to settle,
            // it trains again (found by a tester: it was sent to `permit settle`, which found nothing)
            let reserved = || {
                Ledger::open(&permit::ledger_path(), AccountantKind::Pld)
                    .and_then(|l| l.run_state(&run_id(&run_dir)))
                    .map_or(true, |s| s.is_some())
            };
            if charged && !partial && !reserved() {
                return TrainError::Invalid(format!(
                    "{}: no checkpoint to resume from, and the ledger holds no reservation of the run (it stopped \
                     before its first step was admitted): run medtrain train again without --resume, with the same \
                     --run-dir",
                    run_dir.display()
                ));
            }
            TrainError::Invalid(format!(
                "{}: no checkpoint to resume from{}",
                run_dir.display(),
                match (partial, charged) {
                    // its reservation is held until it is settled
                    (false, true) => {
                        " (where the run stopped before its first checkpoint, medtrain permit settle ends it and \
                         settles its reservation, and a new --run-dir trains again; where its checkpoint was \
                         removed, restore it, or end the run with medtrain permit settle --whole-reservation)"
                    }
                    (false, false) => "",
                    // one recorded in the ledger was rolled forward above
                    (true, true) => {
                        " (checkpoint.partial holds one the run had not recorded when it stopped: it is not \
                         resumed from; medtrain permit settle settles the run)"
                    }
                    (true, false) => {
                        " (a checkpoint being written when the run stopped is in checkpoint.partial: rename it \
                         to checkpoint to resume from it)"
                    }
                }
            ))
        })?;
        // the steps taken ran under the config it has: another one (a model, learning rate or seed) would
        // be recorded, sealed and released as the one these weights were trained with; refused before
        // anything is written (a refused resume rewrote config.given.toml and reopened a settled run)
        if opts.replay.is_none() {
            let kept = run_dir.join("config.given.toml");
            if let Ok(kept_text) = std::fs::read_to_string(&kept) {
                // compared as read (defaults filled in, numbers as their keys' types): a default written
                // out or `1` for `1.0` is no change; as written where the kept config no longer parses
                let (old_settings, new_settings) = (settings_of(&kept_text), settings_of(&given));
                let data_of = |t: &str| toml::from_str::<toml::Table>(t).ok().and_then(|mut t| t.remove("data"));
                let same =
                    old_settings.is_some() && old_settings == new_settings && data_of(&kept_text) == data_of(&given);
                let (old, new) = match (old_settings, new_settings) {
                    (Some(old), Some(new)) => (Ok(old), Ok(new)),
                    _ => (toml::from_str::<toml::Table>(&kept_text), toml::from_str::<toml::Table>(&given)),
                };
                if let (Ok(old), Ok(new)) = (old, new) {
                    let mut changed = Vec::new();
                    changed_keys(&old, &new, "", &mut changed);
                    if !changed.is_empty() {
                        return Err(TrainError::Invalid(format!(
                            "--resume: config key{} {} changed since the run started ({}); a resumed run keeps its \
                             config except a new phase's keys and how it runs ({}): restore {}, or start a new run",
                            if changed.len() > 1 { "s" } else { "" },
                            changed.join(", "),
                            kept.display(),
                            RESUME_MAY_CHANGE.join(", "),
                            if changed.len() > 1 { "them" } else { "it" }
                        )));
                    }
                }
                // the same config written otherwise: the run keeps the text it started with (its record
                // was written, and may be sealed, with it)
                if same {
                    given = kept_text;
                }
            }
        }
        (Some(ck), Some(digest))
    } else {
        if ck_dir.exists() {
            return Err(TrainError::Invalid(format!(
                "{}: holds a run already; continue it with --resume or choose another --run-dir",
                run_dir.display()
            )));
        }
        (None, None)
    };
    // read once: resolving it checks the files it names (a label directory is walked)
    let data_config = cfg.data_config(config_path)?;
    if let (Some(dc), None) = (&data_config, &opts.replay) {
        check_model_before_data(&be, &device, &cfg, dc)?;
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("train.log")).ok();
    let mut progress = Progress::new(0, 0, opts.quiet, log);

    // data
    let prepared_dir = match data_config {
        _ if opts.replay.is_some() => opts.replay.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        None => cfg.data.input.clone(),
        Some(dc) => {
            let detected = crate::data::detect(&dc.input)
                .map_err(|e| TrainError::Invalid(format!("config key data.input: {e}")))?;
            let want = match cfg.data.format {
                DataFormat::Fhir => crate::data::Format::Fhir,
                DataFormat::Meds => crate::data::Format::Meds,
                DataFormat::Csv => crate::data::Format::Csv,
                DataFormat::Prepared => unreachable!("prepared input is not read by a reader"),
            };
            if detected != want {
                return Err(TrainError::Invalid(format!(
                    "config key data.format: {} is {} input, not {}",
                    dc.input.display(),
                    detected.name(),
                    want.name()
                )));
            }
            let dir = run_dir.join("data");
            let source = DataSource::of(&given, &cfg, &dc)?;
            if dir.join("manifest.json").exists() {
                let kept = DataSource::read(&run_dir);
                if opts.resume {
                    // the steps taken were on these data: the config must still describe them
                    if kept.as_ref().is_some_and(|k| *k != source) {
                        return Err(TrainError::Invalid(format!(
                            "--resume: the config's [data] table (or the label file, tokenizer or code map it names) changed \
                             since {} was prepared; the run continues on the data it started with: restore them, or \
                             start a new run",
                            dir.display()
                        )));
                    }
                } else {
                    // a run that stopped before its first step: its data are reused only if made from this
                    // config and this input
                    let same = kept.as_ref() == Some(&source)
                        && Prepared::open(&dir).ok().map(|p| p.manifest.fingerprint)
                            == Some(crate::data::fingerprint::fingerprint(&dc.input)?);
                    if same {
                        progress.line(&format!("reusing {} (prepared from this config and input)", dir.display()));
                    } else {
                        progress.line(&format!(
                            "{} was prepared from another config or input: preparing again",
                            dir.display()
                        ));
                        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                    }
                }
            }
            if !dir.join("manifest.json").exists() {
                progress.line(&format!("preparing {} into {}", fmt_format(cfg.data.format), dir.display()));
                let _ = std::fs::remove_file(run_dir.join(DATA_SOURCE));
                let (report, manifest) = crate::data::prepare::prepare(&dc, &dir)?;
                for line in report.render_findings(crate::data::check::Severity::Warning).lines() {
                    progress.line(&format!("data warning:{line}"));
                }
                if manifest.is_none() {
                    return Err(TrainError::Invalid(format!(
                        "the data check found {} blocking finding(s): run `medtrain data check` on the input for the report",
                        report.findings.iter().filter(|f| f.severity == crate::data::check::Severity::Error).count()
                    )));
                }
                source.write(&run_dir)?;
            }
            dir
        }
    };
    let prepared = Prepared::open(&prepared_dir)?;
    let m = &prepared.manifest;
    let unknown = serde_json::from_slice::<serde_json::Value>(&prepared.manifest_bytes)
        .ok()
        .and_then(|v| v.get("labels_unknown_subjects").and_then(|u| u.as_u64()))
        .unwrap_or(0);
    if unknown > 0 {
        return Err(TrainError::Invalid(format!(
            "{unknown} label(s) name a subject that is not in the data: check that the label file belongs to this input"
        )));
    }
    let train = prepared.split("train")?;
    let tuning = prepared.split("tuning")?;
    let held = prepared.split("held_out")?;
    // a DP run without held-out examples could not be evaluated nor released (export measures its
    // membership inference on them): refused before any budget is spent (found by a tester: it spent
    // the whole budget and reported nothing)
    if !opts.no_dp && opts.replay.is_none() && held.is_empty() {
        return Err(TrainError::Invalid(
            "config key data.split.held_out: the held-out split has no examples: the run could not be evaluated, \
             nor leave through the export gate (which measures membership inference on them); raise \
             data.split.held_out (or label more subjects)"
                .into(),
        ));
    }
    let label = label_type(m.label_type.as_deref())?;
    let declared = if m.classes_declared { m.categories.len() } else { 0 };
    check_classes(&cfg.model.head, label, declared, "the prepared labels' categories")?;
    let series = cfg.model.lab.as_ref().map(|_| (train.buckets(), 3 * train.channels()));
    let text = match &cfg.model.text {
        None => None,
        Some(_) if train.note_tokens() == 0 => {
            return Err(TrainError::Invalid(
                "config key model.text: the prepared data has no notes (data.features.note_tokens = 0)".into(),
            ))
        }
        Some(_) => {
            // a relative data.features.tokenizer is relative to the config's directory, as every path
            // of the config (it was taken from the working directory here, after the data were prepared)
            let given = cfg.data.features.as_ref().and_then(|f| f.tokenizer.as_ref()).map(|t| {
                if t.is_relative() {
                    config_path.parent().unwrap_or(Path::new(".")).join(t)
                } else {
                    t.clone()
                }
            });
            let tok = [prepared_dir.join("tokenizer.json")]
                .into_iter()
                .chain(given)
                .find(|p| p.is_file())
                .ok_or_else(|| TrainError::Invalid("the notes' tokenizer.json was not found".into()))?;
            check_pretrained_tokenizer(&cfg.model, &tok)?;
            let vocab = vocab_of(&tok)?;
            for split in [&train, &tuning, &held] {
                split.check_note_ids(vocab)?;
            }
            Some((vocab, train.note_tokens()))
        }
    };
    let shape = DataShape { series, text, label };
    // the examples of an expected batch: the sampler draws privacy units, a subject bringing at most
    // max_examples_per_subject of its examples, an example unit one
    let (units, taken) = match cfg.privacy.unit {
        Unit::Subject => {
            let cap = cfg.privacy.max_examples_per_subject.max(1);
            let s = train.subjects();
            (s.len(), s.iter().map(|e| e.len().min(cap)).sum::<usize>())
        }
        Unit::Example => (train.len(), train.len()),
    };
    let examples = match (cfg.privacy.sample_rate, cfg.privacy.expected_batch_subjects) {
        (Some(q), _) => q * taken as f64,
        (_, Some(b)) => b / units.max(1) as f64 * taken as f64,
        _ => 1.0,
    };
    let built = cfg.model.build_within(&be, &shape, cfg.train.seed, fits(&be, &device, &cfg, examples as u64))?;
    let head = built.net.head();
    let (trainable, total) = (built.trainable, built.total);
    let base_model: Vec<(String, String)> = built
        .base
        .as_ref()
        .map_or(vec![], |ck| ck.digests.iter().map(|(p, h)| (p.display().to_string(), h.clone())).collect());
    let pick = Picker {
        lab: series.is_some(),
        text: text.is_some(),
        targets: match head {
            Head::Binary => DataTargets::Binary,
            Head::Multiclass(k) => DataTargets::Classes(k),
            Head::Regression { .. } => DataTargets::Real,
        },
    };

    // privacy plan
    let p = &cfg.privacy;
    let subjects = train.subjects();
    let one_each = subjects.iter().all(|s| s.len() == 1);
    let units: Vec<Vec<u32>> = match p.unit {
        Unit::Subject => subjects.to_vec(),
        Unit::Example => {
            if !one_each && !p.assume_one_example_per_subject {
                return Err(TrainError::Invalid(
                    "config key privacy.unit: \"example\" protects one example, and some subjects have several: use \
                     unit = \"subject\", or state assume_one_example_per_subject = true (the run report then says so)"
                        .into(),
                ));
            }
            (0..train.len() as u32).map(|i| vec![i]).collect()
        }
    };
    let n = units.len();
    if n == 0 {
        return Err(TrainError::Invalid("the train split has no examples".into()));
    }
    if head == Head::Binary {
        let pos = (0..train.len()).filter(|&i| train.label(i) > 0.5).count();
        if pos == 0 || pos == train.len() {
            return Err(TrainError::Invalid(format!(
                "the train split has {} positive example(s) of {}: a binary task needs both classes",
                if pos == 0 { "no" } else { "only" },
                metrics_count(train.len() as u64)
            )));
        }
    }
    if p.delta >= 1.0 / n as f64 {
        return Err(TrainError::Invalid(format!(
            "config key privacy.delta: {} is not below 1/{n} (one over the number of privacy units); use at most {:.1e}",
            p.delta,
            0.1 / n as f64
        )));
    }
    let q = match (p.sample_rate, p.expected_batch_subjects) {
        (Some(q), _) => q,
        (_, Some(b)) => {
            if b > n as f64 {
                progress.line(&format!(
                    "warning: privacy.expected_batch_subjects {} is more than the {n} units of the train split: every \
                     step takes all of them (q = 1)",
                    crate::short_number(b)
                ));
            }
            (b / n as f64).min(1.0)
        }
        _ => unreachable!("checked with the config"),
    };
    // an expected batch below one unit: most steps would sample nobody (and the noise would be divided
    // by a batch of zero)
    if q * (n as f64) < 1.0 {
        return Err(TrainError::Invalid(format!(
            "config key privacy.sample_rate: {} of {n} units is an expected batch below 1; raise it (or give \
             privacy.expected_batch_subjects)",
            crate::short_number(q)
        )));
    }
    let planned = match (cfg.train.steps, cfg.train.epochs) {
        (Some(s), _) => s,
        (_, Some(e)) => ((e / q).ceil() as u64).max(1),
        _ => unreachable!("checked with the config"),
    };
    if planned > super::config::MAX_STEPS {
        return Err(TrainError::Invalid(format!(
            "config key train.epochs: {} epochs at sample rate {} are {planned} steps, more than {}",
            crate::short_number(cfg.train.epochs.unwrap_or(0.0)),
            crate::short_number(q),
            super::config::MAX_STEPS
        )));
    }
    let kind = if p.accountant == "rdp" { AccountantKind::Rdp } else { AccountantKind::Pld };
    let delta = accounting_delta(p.delta, m.dp_delta_added)?;
    let rate = SampleRate::new(q).map_err(|e| TrainError::Invalid(format!("privacy sample rate: {e}")))?;
    let prep = m.dp_phases.clone();
    let eps_of = |sigma: f64, steps: u64| -> Result<f64, TrainError> {
        let mut v = prep.clone();
        v.push((sigma, q, steps));
        Ok(accountant::epsilon(kind, &phases_of(v.iter())?, delta).epsilon)
    };
    let (sigma, steps) = match (p.noise_multiplier, p.target_epsilon) {
        (Some(s), None) => (s, planned),
        (Some(s), Some(target)) => {
            let (target_text, s_text) = (crate::short_number(target), crate::short_number(s));
            // the most steps (up to the planned) whose epsilon stays within the target
            if eps_of(s, 1)? > target {
                return Err(TrainError::Invalid(format!(
                    "config key privacy.target_epsilon: noise multiplier {s_text} spends more than {target_text} in one step"
                )));
            }
            let (mut lo, mut hi) = (1u64, planned);
            if eps_of(s, hi)? > target {
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if eps_of(s, mid)? <= target {
                        lo = mid
                    } else {
                        hi = mid
                    }
                }
                progress.line(&format!("target epsilon {target_text} allows {lo} of the {planned} planned steps"));
                (s, lo)
            } else {
                (s, planned)
            }
        }
        (None, Some(target)) => {
            let target_text = crate::short_number(target);
            let prep_eps =
                if prep.is_empty() { 0.0 } else { accountant::epsilon(kind, &phases_of(prep.iter())?, delta).epsilon };
            if prep_eps >= target {
                return Err(TrainError::Invalid(format!(
                    "config key privacy.target_epsilon: the data preparation's DP releases already spend {prep_eps:.3}"
                )));
            }
            let (sigma, _) = accountant::calibrate(kind, target, rate, planned, delta).map_err(|e| {
                TrainError::Invalid(format!(
                    "config key privacy.target_epsilon: no noise multiplier reaches epsilon {target_text} in {planned} steps \
                     at sample rate {q:.4} ({e})"
                ))
            })?;
            // the preparation's releases compose with the steps: raise sigma until the total fits
            let mut s = sigma.get();
            while eps_of(s, planned)? > target {
                s *= 1.01;
                if s > 1e4 {
                    return Err(TrainError::Invalid(format!(
                        "config key privacy.target_epsilon: no noise multiplier reaches epsilon {target_text}"
                    )));
                }
            }
            (s, planned)
        }
        (None, None) => unreachable!("checked with the config"),
    };
    let mut plan = Plan {
        units: n,
        sample_rate: q,
        steps,
        noise_multiplier: sigma,
        clip_norm: p.clip_norm,
        delta: p.delta,
        target_epsilon: p.target_epsilon,
        planned_epsilon: eps_of(sigma, steps)?,
        accountant: p.accountant.clone(),
        prepare_phases: prep.clone(),
        delta_added: m.dp_delta_added,
    };
    if let Some(r) = &resume {
        if !r.plan.same_as(&plan) {
            // a new phase: the steps run stay in the accountant; the new noise multiplier or sample rate
            // applies from here, and the target bounds the whole history
            let done = r.step;
            if r.plan.units != plan.units || r.plan.delta != plan.delta || r.plan.accountant != plan.accountant {
                return Err(TrainError::Invalid(
                    "--resume: the data, privacy.delta or privacy.accountant changed since the checkpoint; only the \
                     noise multiplier, the sample rate, clip_norm and the steps may change between phases"
                        .into(),
                ));
            }
            // a stated noise multiplier starts the new phase; a calibrated one keeps the checkpoint's
            let sigma_new = p.noise_multiplier.unwrap_or(r.plan.noise_multiplier);
            let composed = |n: u64| -> Result<f64, TrainError> {
                let mut v = prep.clone();
                v.extend(r.history.iter().copied());
                v.push((sigma_new, q, n));
                Ok(accountant::epsilon(kind, &phases_of(v.iter())?, delta).epsilon)
            };
            if plan.steps <= done {
                return Err(TrainError::Invalid(format!(
                    "--resume: the run already ran {done} steps, the config asks for {}",
                    plan.steps
                )));
            }
            let mut more = plan.steps - done;
            if let Some(target) = p.target_epsilon {
                if composed(1)? > target {
                    return Err(TrainError::Invalid(format!(
                        "--resume: the steps already run leave no room under target epsilon {}",
                        crate::short_number(target)
                    )));
                }
                if composed(more)? > target {
                    let (mut lo, mut hi) = (1u64, more);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if composed(mid)? <= target {
                            lo = mid
                        } else {
                            hi = mid
                        }
                    }
                    more = lo;
                }
            }
            plan.noise_multiplier = sigma_new;
            plan.steps = done + more;
            plan.planned_epsilon = composed(more)?;
            progress.line(&format!(
                "resuming with a new phase: noise multiplier {sigma_new:.4}, q = {q:.5}, {more} more steps (epsilon {:.3} in all)",
                plan.planned_epsilon
            ));
        }
    }
    let (sigma, steps) = (plan.noise_multiplier, plan.steps);
    if cfg.optim.warmup_steps >= steps {
        progress.line(&format!(
            "warning: optim.warmup_steps {} is not below the run's {steps} steps: the learning rate never reaches optim.lr",
            cfg.optim.warmup_steps
        ));
    }
    // said, not refused: the privacy table of a run cannot change on --resume
    if cfg.privacy.unit == Unit::Example
        && cfg.privacy.max_examples_per_subject != super::config::DEFAULT_MAX_EXAMPLES_PER_SUBJECT
    {
        progress.line(
            "warning: privacy.max_examples_per_subject applies to unit = \"subject\" only (an example unit is one \
             example): it has no effect",
        );
    }
    progress.line(&format!(
        "DP-SGD by {}: {n} units, q = {q:.5}, {steps} steps, clip {}, noise multiplier {sigma:.4}, epsilon {:.3} at delta {:.1e} ({})",
        if p.unit == Unit::Subject { "subject" } else { "example" },
        p.clip_norm,
        plan.planned_epsilon,
        p.delta,
        p.accountant
    ));

    // the permit and the ledger: a valid permit must cover the data; the planned epsilon is reserved
    // before the first step (a resumed run keeps its reservation) and settled at the end
    use crate::privacy::{ledger::Ledger, ledger::LedgerError, permit};
    let (permit_path, permit) = match permit::covering(&m.fingerprint) {
        Ok(found) => found,
        // a replay (`reproduce`) charges and releases nothing: a run whose permit expired since, or
        // under a newer permit's smaller delta, is replayed all the same
        Err(_) if opts.replay.is_some() => (
            PathBuf::new(),
            permit::Permit {
                id: String::new(),
                project: String::new(),
                purpose: String::new(),
                datasets: vec![],
                expires: String::new(),
                epsilon: f64::INFINITY,
                delta: 1.0,
                max_attack_auc: 1.0,
                issued: String::new(),
            },
        ),
        Err(e) => return Err(TrainError::Invalid(e)),
    };
    if p.delta > permit.delta && opts.replay.is_none() {
        return Err(TrainError::Invalid(format!(
            "config key privacy.delta: {} is above the permit's delta {} ({})",
            p.delta,
            permit.delta,
            permit_path.display()
        )));
    }
    let run_id = run_id(&run_dir);
    let charged = !opts.no_dp && opts.replay.is_none();
    let open_ledger = || Ledger::open(&permit::ledger_path(), kind);
    let mut data_digest = None;
    if charged {
        // the prepared data as data prepare wrote it on this node: its manifest says which permit
        // covers it and what its preparation spent, and is the researcher's to edit
        // over the bytes read: the manifest parsed above and the splits as mapped
        let read = [
            ("manifest.json", &prepared.manifest_bytes[..]),
            ("train.safetensors", train.file_bytes()),
            ("tuning.safetensors", tuning.file_bytes()),
            ("held_out.safetensors", held.file_bytes()),
        ];
        let digest = crate::data::prepared::digest_with(&prepared_dir, &read)?;
        data_digest = Some(digest.clone());
        if open_ledger()?.prepared_fingerprint(&digest)?.as_deref() != Some(m.fingerprint.as_str()) {
            return Err(TrainError::Invalid(format!(
                "{}: this node's ledger ({}) has no record of preparing this directory as it is now: it was \
                 changed after medtrain data prepare wrote it, or prepared on another node or under another \
                 MEDTRAIN_HOME; prepare it again",
                prepared_dir.display(),
                permit::ledger_path().display()
            )));
        }
    }
    if let (true, Some(digest)) = (charged, &resume_digest) {
        // the steps taken and the noise key come from the checkpoint, which its researcher can write
        let ledger = open_ledger()?;
        // a run directory copied or moved from where its run was reserved: its checkpoint is no run's
        // of this ledger (a copy's history or noise key edited would have trained on, uncharged)
        if ledger.run_state(&run_id)?.is_none() {
            return Err(TrainError::Invalid(format!(
                "{}: this node's ledger ({}) has no reservation for this run directory: a run is resumed where \
                 it was started (a copied or moved run directory is not), and a run started with --no-dp is \
                 resumed with --no-dp; start a new run",
                run_dir.display(),
                permit::ledger_path().display()
            )));
        }
        // the data the run started on (found by a tester: another dataset's prepared directory put in its
        // place was trained on, and charged to the run's own dataset)
        if let Some((dataset, data_sha256)) = ledger.run_data(&run_id)? {
            let now = data_digest.as_deref().unwrap_or_default();
            if dataset != m.fingerprint || data_sha256.as_deref().is_some_and(|d| d != now) {
                return Err(TrainError::Invalid(format!(
                    "{}: not the prepared data this run started on ({}): they were replaced after the run \
                     started; restore them, or start a new run",
                    prepared_dir.display(),
                    if dataset != m.fingerprint { "another dataset" } else { "another preparation" }
                )));
            }
        }
        let known = ledger.checkpoint_known(&run_id, digest)?;
        if known == Some(false) {
            return Err(TrainError::Invalid(format!(
                "{}; restore it, or start a new run",
                not_recorded_checkpoint(&run_dir)
            )));
        }
    }
    // a finished run, settled and sealed, has nothing to resume: resuming it re-reserved it, and a
    // failure then (a full disk at its checkpoint) left it reserved and unexportable (found by a
    // tester); one whose seal the ledger lacks (killed while it sealed) is resumed to seal it
    if let (true, Some(r)) = (charged, resume.as_ref()) {
        if r.step >= steps && r.plan.same_as(&plan) {
            let ledger = open_ledger()?;
            let sealed = match (ledger.seal_sha256(&run_id)?, super::seal::Snapshot::take(&run_dir, &[])) {
                (Some(recorded), Ok(snap)) => recorded == snap.seal_sha256,
                _ => false,
            };
            if sealed && ledger.run_state(&run_id)?.as_deref() == Some("settled") {
                return Err(TrainError::Invalid(format!(
                    "--resume: the run finished ({} of {steps} steps) and its record is sealed: nothing is left to \
                     run; to train longer, raise train.steps (or train.epochs) in the config",
                    r.step
                )));
            }
        }
    }
    let mut fresh = false;
    if charged {
        let mut planned: Vec<(f64, f64, u64)> = prep.clone();
        planned.extend(resume.as_ref().map_or(vec![], |r| r.history.clone()));
        let done = resume.as_ref().map_or(0, |r| r.step);
        planned.push((sigma, q, steps.saturating_sub(done)));
        let planned = phases_of(planned.iter())?;
        let mut ledger = open_ledger()?;
        // the budget is the covering permit's (the ledger's was the last issued permit's, of any date)
        let permit_delta =
            crate::privacy::accountant::Delta::new(permit.delta).map_err(|e| TrainError::Invalid(e.to_string()))?;
        // issuing the permit set a budget in this ledger: a ledger without one was lost or replaced
        // since (found by a tester: emptied, it was made again from the permit, and everything spent
        // before was forgotten)
        if !ledger.has_budget(&permit.project, &m.fingerprint)? {
            return Err(TrainError::Invalid(format!(
                "this node's ledger ({}) holds no budget for project {} on this dataset, which issuing permit {} \
                 set: the ledger was lost or replaced since, and with it the record of what was spent; restore it \
                 from its backup (a new permit is for an operator who knows what was spent)",
                permit::ledger_path().display(),
                permit.project,
                permit_path.display()
            )));
        }
        ledger.set_budget(&permit.project, &m.fingerprint, permit.epsilon, permit_delta)?;
        let new_phase = resume.as_ref().is_some_and(|r| !r.plan.same_as(&plan));
        // a process killed after this checkpoint took steps under its plan that no checkpoint holds:
        // another plan would leave them uncharged, and run those steps again under the same noise
        let bound = ledger.steps_bound(&run_id)?;
        if new_phase && bound > done {
            return Err(TrainError::Invalid(format!(
                "--resume: the run took steps after its checkpoint of step {done} (up to step {bound}; it was \
                 killed before it recorded them) under the config it ran: resume it with that config until it \
                 has passed step {bound} (Ctrl-C then stops it with a checkpoint), then change the config{}",
                match ledger.run_state(&run_id)?.as_deref() {
                    Some("settled") => "",
                    _ => "; or end it (medtrain permit settle)",
                }
            )));
        }
        let r = match ledger.reserve(&run_id, &permit.project, &m.fingerprint, &planned, plan.delta_added) {
            // a resumed run keeps its reservation; one starting a new phase re-reserves the whole run
            Err(LedgerError::DuplicateRun(_)) if new_phase => {
                ledger.replan(&run_id, &planned, plan.delta_added).map(|_| ())
            }
            // a run settled while interrupted (`permit settle`) and resumed: what it runs now was never
            // reserved, and the settlement counts only the steps before; the whole run is reserved again
            // (admitted only if the budget holds it) and settled when it ends
            Err(LedgerError::DuplicateRun(_))
                if resume.is_some() && ledger.run_state(&run_id)?.as_deref() == Some("settled") =>
            {
                ledger.replan(&run_id, &planned, plan.delta_added).map(|_| ())
            }
            // a resumed run keeps its reservation, unless it was made for another phase than this one
            // (a resume under another config that stopped before its first checkpoint of it, resumed
            // now under the config before): then this run's is reserved
            Err(LedgerError::DuplicateRun(_)) if resume.is_some() => {
                let reserved = ledger.planned(&run_id)?;
                let steps_of = |p: &[Phase]| p.iter().map(|p| p.steps).sum::<u64>();
                let last = |p: &[Phase]| p.last().map(|p| (p.noise_multiplier.get(), p.sample_rate.get()));
                match reserved {
                    Some(r) if last(&r) != last(&planned) || steps_of(&r) != steps_of(&planned) => {
                        ledger.replan(&run_id, &planned, plan.delta_added).map(|_| ())
                    }
                    _ => Ok(()),
                }
            }
            other => {
                fresh = other.is_ok();
                other.map(|_| ())
            }
        };
        r.map_err(|e| TrainError::Invalid(format!("{e} (permit {})", permit_path.display())))?;
        if let Some(d) = &data_digest {
            ledger.record_data(&run_id, d)?;
        }
    }
    // a reservation made here, settled if the run ends (an error) before its first checkpoint: at what
    // the preparation spent before its steps begin, at the whole reservation after (nothing of its
    // steps can be released then, nor resumed)
    let mut unsettled =
        Unsettled { run_id: run_id.clone(), prepared: prep.clone(), kind, armed: fresh, at_reservation: false };
    // the config files, once the run is admitted: a refused run (a resume of a finished run, a budget
    // the plan does not fit) left them rewritten, and the run's seal then failed on them
    if let Some(r) =
        resume.as_ref().filter(|r| r.step > 0 && (!r.plan.same_as(&plan) || sums_otherwise(&run_dir, &cfg)))
    {
        // the phase that ends here ran under the config resolved before: kept (and sealed) for
        // `reproduce`, named by the step it ran to; a phase that never ran a step keeps the one before
        let kept = run_dir.join(super::reproduce::PHASES).join(format!("{:010}.toml", r.step));
        if !kept.exists() {
            std::fs::create_dir_all(run_dir.join(super::reproduce::PHASES)).map_err(|e| io(&run_dir, e))?;
            std::fs::copy(run_dir.join("config.resolved.toml"), &kept).map_err(|e| io(&kept, e))?;
        }
    }
    std::fs::write(run_dir.join("config.given.toml"), &given).map_err(|e| io(&run_dir, e))?;
    std::fs::write(run_dir.join("config.resolved.toml"), resolved_toml(&given, &cfg, &plan))
        .map_err(|e| io(&run_dir, e))?;

    // the DP state
    let (noise_key, sampler_seed) = match (&resume, p.noise_seed) {
        _ if opts.replay.is_some() => opts.replay.as_ref().map(|r| (r.1, r.2)).unwrap_or_default(),
        (Some(r), _) => (r.noise_key, r.sampler_seed),
        (None, Some(seed)) => (derive_key(seed, b"noise"), derive_key(seed, b"sampler")),
        (None, None) => (os_key()?, os_key()?),
    };
    let expected = (q * n as f64) as f32;
    let optimizer = match cfg.optim.algorithm {
        Algorithm::Adamw => {
            let mut k = OptimizerKind::adamw(cfg.optim.lr as f32);
            if let OptimizerKind::AdamW(h) = &mut k {
                h.weight_decay = cfg.optim.weight_decay as f32;
            }
            k
        }
        Algorithm::Sgd => OptimizerKind::Sgd {
            lr: cfg.optim.lr as f32,
            momentum: cfg.optim.momentum as f32,
            weight_decay: cfg.optim.weight_decay as f32,
        },
    };
    let privacy = if opts.no_dp {
        progress.line("--no-dp: a NON-PRIVATE baseline (no clipping, no noise): not releasable");
        Privacy::NonPrivate
    } else {
        Privacy::Dp {
            params: DpSgd { clip_norm: p.clip_norm as f32, noise_multiplier: sigma as f32, expected_batch: expected },
            noise: NoiseSource::seeded(noise_key),
        }
    };
    let model: Box<dyn Model<B>> = Box::new(built.net);
    let mut trainer = Trainer::new(&be, model, optimizer, privacy)?;
    let mut sampler = PoissonSampler::seeded(n, rate, sampler_seed);
    let mut record = checkpoint::Record::default();
    if let Some(r) = &resume {
        trainer.restore(&be, r.step, &r.weights, r.optimizer_steps, &r.optimizer)?;
        sampler = PoissonSampler::resume(n, rate, sampler_seed, r.sampler_word_pos);
        record = r.record.clone();
        progress.line(&format!("resuming at step {} of {steps}", r.step));
    }
    let mut run = DpRun {
        trainer,
        sampler,
        plan: plan.clone(),
        history: resume.as_ref().map_or(vec![], |r| r.history.clone()),
        max_per_unit: if p.unit == Unit::Subject { p.max_examples_per_subject } else { 1 },
        micro_batch: cfg.train.micro_batch,
        picked: vec![],
        rows: vec![],
        sub: vec![],
    };

    // steps
    STOP.store(false, Ordering::SeqCst);
    install_signal_handlers();
    let first = run.steps();
    let mut progress = Progress::new(steps, first, opts.quiet, progress.log.take());
    let t0 = Instant::now();
    let mut seen = 0usize;
    // a charged run marks in the ledger the steps it may take before it records its next checkpoint:
    // their losses and tuning metrics are shown, and killed before it records a checkpoint of them it
    // is settled as having taken them (`permit settle`; the guard before a first checkpoint settles the
    // whole reservation), not at its preparation's or its last checkpoint's spend. A bound left by a
    // process killed before is kept until this one has passed it.
    let every = cfg.train.checkpoint_every;
    let next_checkpoint = |step: u64| (step / every + 1).saturating_mul(every).min(steps);
    let inherited = std::cell::Cell::new(0u64);
    // the steps a checkpoint at `step` leaves unrecorded: up to the next one when steps follow it in
    // this process (`more`), and those of a process killed before until they are passed
    let bound_after = |step: u64, more: bool| -> u64 {
        let own = if more { next_checkpoint(step) } else { 0 };
        let before = if inherited.get() > step { inherited.get() } else { 0 };
        own.max(before)
    };
    let save = |run: &DpRun<B>, record: &checkpoint::Record, more: bool| -> Result<(), TrainError> {
        let (weights, opt_steps, opt) = run.trainer.checkpoint_state(&be)?;
        let (_, word_pos) = run.sampler.state();
        // the ledger holds the digest of each checkpoint of a charged run, written before it replaces
        // the one before ([`Ledger::record_checkpoint`])
        let record_digest = |digest: &str| -> Result<(), TrainError> {
            if !charged {
                return Ok(());
            }
            let mut ledger = open_ledger()?;
            match ledger.record_checkpoint(&run_id, digest, bound_after(run.steps(), more)) {
                Ok(()) => Ok(()),
                // settled while it ran (past its lock): what it ran is recorded as its spend, and it stops
                Err(e @ LedgerError::AlreadySettled(_)) => {
                    // and the steps a process killed before it may have taken past them
                    let killed = inherited.get().saturating_sub(run.steps());
                    let past = (killed > 0).then_some((run.plan.noise_multiplier, run.plan.sample_rate, killed));
                    let spent = phases_of(prep.iter().chain(&run.history).chain(past.iter()))?;
                    ledger.settle_again(&run_id, &spent)?;
                    Err(TrainError::Invalid(format!(
                        "{e} while this run still ran: its spend is recorded again at the {} steps it ran, and it \
                         stops",
                        run.steps()
                    )))
                }
                Err(e) => Err(TrainError::Invalid(e.to_string())),
            }
        };
        checkpoint::save_recorded(
            &run_dir,
            &Checkpoint {
                step: run.steps(),
                weights,
                names: run.trainer.model().params().iter().map(|p| p.name.clone()).collect(),
                shapes: run.trainer.model().params().iter().map(|p| p.shape.clone()).collect(),
                optimizer_steps: opt_steps,
                optimizer: opt,
                noise_key,
                sampler_seed,
                sampler_word_pos: word_pos,
                history: run.history.clone(),
                plan: plan.clone(),
                record: record.clone(),
            },
            record_digest,
        )
    };
    if charged {
        // a new phase starts with a checkpoint of it: the steps it takes before its next are then
        // charged (and resumed) under its own plan, not the phase's before
        if resume.as_ref().is_some_and(|r| !r.plan.same_as(&plan)) {
            save(&run, &record, false)?;
        }
        // a run already asked to stop takes no step: nothing to mark, and a killed process's mark kept
        let mut ledger = open_ledger()?;
        let before = match STOP.load(Ordering::SeqCst) || opts.stop_after == Some(0) {
            true => ledger.steps_bound(&run_id),
            false => ledger.mark_steps_begun(&run_id, next_checkpoint(first)),
        };
        inherited.set(before?);
        unsettled.at_reservation = true;
    }
    let mut interrupted = false;
    let mut eps_now: Option<f64> = record.epsilon.last().map(|e| e.1);
    while run.steps() < steps {
        if STOP.load(Ordering::SeqCst) || opts.stop_after.is_some_and(|k| run.steps() - first >= k) {
            interrupted = true;
            break;
        }
        let step = run.steps();
        run.trainer.set_lr(cfg.optim.lr_at(step, steps) as f32);
        let s = run.step(&be, &train, &units, &pick)?;
        seen += s.examples;
        let done = run.steps();
        // a step whose Poisson draw took no subject has no loss: left out of the curve, said on the line
        let loss = (s.examples > 0).then_some(s.loss);
        if let Some(l) = loss {
            record.loss.push((done, l));
        }
        let eval_now = cfg.train.eval_every > 0 && done % cfg.train.eval_every == 0 && done < steps;
        if eval_now {
            let (e, _) = run.epsilon()?;
            eps_now = Some(e);
            record.epsilon.push((done, e));
            if let Some((name, v)) = tuning_metric(&be, &mut run.trainer, &tuning, &pick, head, cfg.train.eval_batch)? {
                record.eval.push((done, name.into(), v));
                progress.line(&format!("step {done}: tuning {name} {v:.4}, epsilon {e:.3}"));
            }
        }
        let el = t0.elapsed().as_secs_f64().max(1e-9);
        let rate_s = seen as f64 / el;
        let eta = el / (done - first) as f64 * (steps - done) as f64;
        // a line written says the epsilon at its step (the last evaluation's was shown, at the end too)
        if !eval_now && (done == steps || progress.line_due(done, steps)) {
            eps_now = Some(run.epsilon()?.0);
        }
        progress.step(done, steps, loss, eps_now, rate_s, eta);
        if done % cfg.train.checkpoint_every == 0 && done < steps {
            // (a checkpoint that fails before the ledger records it leaves the run to the guard: the
            // ledger's record says whether one was)
            save(&run, &record, true)?;
            unsettled.armed = false;
        }
    }
    progress.finish();
    let (eps, acct) = run.epsilon()?;
    if record.epsilon.last().map(|e| e.0) != Some(run.steps()) {
        record.epsilon.push((run.steps(), eps));
    }
    // (disarmed once the checkpoint is recorded: one that fails before leaves the run to the guard)
    save(&run, &record, false)?;
    unsettled.armed = false;
    let finished = !interrupted;
    let mut over_budget = false;
    if finished && charged {
        let mut spent: Vec<(f64, f64, u64)> = prep.clone();
        spent.extend(run.history.iter().copied());
        let spent = phases_of(spent.iter())?;
        let mut ledger = open_ledger()?;
        match ledger.settle(&run_id, &spent) {
            Ok(st) => over_budget = st.over_budget,
            // settled while it ran (past its lock): what it spent is what it ran, recorded again
            Err(LedgerError::AlreadySettled(_)) => ledger.settle_again(&run_id, &spent)?,
            Err(e) => return Err(TrainError::Invalid(e.to_string())),
        }
    }
    if interrupted {
        progress.line(&format!(
            "stopped at step {} of {steps}: checkpoint written; continue with --resume --run-dir {}",
            run.steps(),
            run_dir.display()
        ));
    }

    // evaluation and report
    let mut summary = RunSummary {
        run_dir: run_dir.clone(),
        finished,
        data_digest,
        dp: !opts.no_dp,
        head: match head {
            Head::Binary => "binary",
            Head::Multiclass(_) => "multiclass",
            Head::Regression { .. } => "regression",
        },
        auroc: None,
        auprc: None,
        epsilon: eps,
        delta: p.delta,
        accountant: acct,
        noise_multiplier: sigma,
        sample_rate: q,
        steps: run.steps(),
        planned_steps: steps,
        clip_norm: p.clip_norm,
        unit: if p.unit == Unit::Subject { "subject" } else { "example" },
        report: run_dir.join("report.html"),
        trainable_parameters: trainable,
        parameters: total,
        seconds: started.elapsed().as_secs_f64(),
        base_model,
        noise_seeded: p.noise_seed.is_some(),
        assume_one_example_per_subject: p.assume_one_example_per_subject,
        tokenizer_exportable: if text.is_some() { m.tokenizer_exportable } else { None },
        tokenizer_sha256: text.as_ref().and(DataSource::read(&run_dir)).and_then(|s| s.tokenizer_sha256),
        fingerprint: m.fingerprint.clone(),
        code_version: code_version(),
        cpu_features,
        backend: device,
        portable: cfg.train.portable,
        permit: permit_path.clone(),
        project: permit.project.clone(),
        over_budget,
        classes: if label == LabelType::Categorical { m.categories.clone() } else { Vec::new() },
    };
    if finished {
        let ev = evaluate(&be, &mut run.trainer, &held, &pick, head, cfg.train.eval_batch, &m.sites)?;
        summary.auroc = ev.auroc;
        summary.auprc = ev.auprc;
        // the membership-inference check, against the model at its initialization as the reference
        let reference: Box<dyn Model<B>> = Box::new(cfg.model.build(&be, &shape, cfg.train.seed)?.net);
        let attack = super::attack::membership(
            &be,
            &mut run.trainer,
            reference,
            &train,
            &held,
            &pick,
            head,
            cfg.train.eval_batch,
        )?;
        if attack.significant {
            progress.line(&format!(
                "warning: membership inference AUC {} (loss threshold) / {} (calibrated) has its 95% interval above 0.5",
                attack.loss_threshold.auc.map_or("n/a".into(), |a| format!("{a:.3}")),
                attack.calibrated.auc.map_or("n/a".into(), |a| format!("{a:.3}"))
            ));
        }
        let metrics_json = serde_json::json!({
            "split": "held_out",
            "not_covered_by_dp": "Held-out metrics are computed on private data and are not covered by the DP guarantee.",
            "suppression": "Counts below 10 are shown as \"<10\"; counts withheld so that a small one cannot be worked out from a total are shown as \"suppressed\"; AUROC, AUPRC, Brier, ECE and observed rates are left out where a class (overall, in a bin or at a site) has fewer than 10.",
            "head": summary.head,
            "metrics": ev.json,
            "sites": ev.sites,
            "privacy": {
                "epsilon": eps, "delta": p.delta, "accountant": acct, "noise_multiplier": sigma,
                "delta_added_by_preparation": m.dp_delta_added,
                "sample_rate": q, "steps": run.steps(), "clip_norm": p.clip_norm, "unit": summary.unit,
                "assume_one_example_per_subject": p.assume_one_example_per_subject,
                "max_examples_per_subject": p.max_examples_per_subject,
                "noise_seeded": p.noise_seed.is_some(),
            },
            "fingerprint": m.fingerprint,
            "membership_inference": attack,
        });
        let mpath = run_dir.join("metrics.json");
        std::fs::write(&mpath, serde_json::to_vec_pretty(&metrics_json).unwrap_or_default())
            .map_err(|e| io(&mpath, e))?;
        let data = report_data(&cfg, &run_dir, &summary, &record, &ev, &m.fingerprint, &given, trainable, total);
        std::fs::write(&summary.report, report::render(&data)).map_err(|e| io(&summary.report, e))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    let rpath = run_dir.join("run.json");
    std::fs::write(&rpath, serde_json::to_vec_pretty(&summary).unwrap_or_default()).map_err(|e| io(&rpath, e))?;
    // a charged run seals the checkpoint it recorded last (the run directory is its researcher's to
    // write while the run evaluates)
    let last = match charged {
        true => open_ledger()?.checkpoint_record(&run_id)?,
        false => None,
    };
    let sealed = super::seal::seal(&run_dir, last.as_deref())?;
    if charged {
        open_ledger()?.record_seal(&run_id, &sealed)?;
    }
    Ok(summary)
}

fn fmt_format(f: DataFormat) -> &'static str {
    match f {
        DataFormat::Fhir => "the FHIR export",
        DataFormat::Meds => "the MEDS data",
        DataFormat::Csv => "the CSV data",
        DataFormat::Prepared => "the prepared data",
    }
}

fn metrics_count(n: u64) -> String {
    match metrics::count(n) {
        metrics::Count::Exact(n) => n.to_string(),
        metrics::Count::Suppressed(s) => s.to_string(),
    }
}

/// A reservation this process made, settled when dropped armed: the run ended (an error, a panic)
/// before its first checkpoint. Before its steps began, at what the data preparation spent; after,
/// at that and the steps it marked as begun (as `permit settle` charges a killed run: their losses and
/// tuning metrics were shown), or at the whole reservation where the ledger cannot say. A run whose
/// first checkpoint the ledger recorded (its swap failed after: `--resume` rolls it forward) is not
/// settled.
struct Unsettled {
    run_id: String,
    prepared: Vec<(f64, f64, u64)>,
    kind: AccountantKind,
    armed: bool,
    at_reservation: bool,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        use crate::privacy::{ledger::Ledger, permit};
        let Ok(mut ledger) = Ledger::open(&permit::ledger_path(), self.kind) else { return };
        let spent = match self.at_reservation {
            true => match ledger.checkpoint_record(&self.run_id).ok().flatten().as_deref() {
                Some(crate::privacy::ledger::NO_CHECKPOINT) => match ledger.spent_before_checkpoint(&self.run_id) {
                    Ok(Some((spent, _))) => Some(spent),
                    _ => ledger.planned(&self.run_id).ok().flatten(),
                },
                Some(_) => return,
                None => ledger.planned(&self.run_id).ok().flatten(),
            },
            false => phases_of(self.prepared.iter()).ok(),
        };
        if let Some(spent) = spent {
            let _ = ledger.settle(&self.run_id, &spent);
        }
    }
}

fn os_key() -> Result<[u8; 32], TrainError> {
    use rand_core::TryRngCore;
    let mut k = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut k).map_err(|e| TrainError::Invalid(format!("OS entropy: {e}")))?;
    Ok(k)
}

/// A key from a test seed (`privacy.noise_seed`): SHA-256 of the seed and a label.
fn derive_key(seed: u64, label: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"medtrain noise_seed v1");
    h.update(seed.to_le_bytes());
    h.update(label);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::HeadConfig;

    #[test]
    fn categorical_labels_train_only_under_declared_classes_of_the_heads_count() {
        let head = HeadConfig::Multiclass { classes: 3 };
        // a manifest of an older preparation (its categories the data's own): 0 declared
        let e = check_classes(&head, LabelType::Categorical, 0, "x").unwrap_err().to_string();
        assert!(e.contains("no declared classes") && e.contains("data.labels.classes"), "{e}");
        let e = check_classes(&head, LabelType::Categorical, 4, "data.labels.classes").unwrap_err().to_string();
        assert!(e.contains("model.head.classes: 3") && e.contains("data.labels.classes list 4"), "{e}");
        assert!(check_classes(&head, LabelType::Categorical, 3, "x").is_ok());
        // integer labels are their own class indices
        assert!(check_classes(&head, LabelType::Integer, 0, "x").is_ok());
    }
}
