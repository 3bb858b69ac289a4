//! `medtrain reproduce RUN`: replays a CPU run from its sealed record and says whether the weights
//! match bit for bit, naming the first tensor that differs.
//!
//! The replay reads the run's resolved config, the data it was trained on (`RUN/data`, or the prepared
//! input it read), and the noise key and sampler seed its checkpoint keeps inside the node (never in a
//! release); it trains into a temporary directory and compares the final weights with the run's. The
//! bits depend on the CPU features the backend picks its paths by (gemm's AVX-512 or AVX2 kernels and
//! its cache-sized k blocks): the run's record states them, and a replay on a CPU with other features
//! says so when it differs. A run with `train.portable = true` depends on the x86-64-v3 baseline only
//! and replays bit for bit on any such machine (`MEDTRAIN_CPU_ISA=avx2` forces the AVX2 paths, as on a
//! CPU without AVX-512).
//!
//! The replay always runs on the CPU. A run trained on CUDA replays with the same sampling and noise,
//! but its bits cannot match (cuBLAS and the GPU's reductions sum in another order): the result says
//! so (`recorded_backend`) and gives the largest difference of a weight (`max_abs_difference`).
//!
//! A run resumed with another plan (a new noise multiplier, sample rate, clip norm or number of steps)
//! ran in phases: when a phase starts, the config the one before ran under is kept as
//! `RUN/phases/STEP.toml` (STEP: the step it ran to; sealed with the run). The replay runs each phase's
//! config up to its step and resumes with the next, the last one being `config.resolved.toml`.

use super::checkpoint;
use super::run::{self, io, RunOptions, TrainError};
use super::seal;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct Reproduction {
    pub run_dir: PathBuf,
    pub matches: bool,
    /// the first parameter (in the model's order) whose bits differ
    pub first_difference: Option<String>,
    pub tensors: usize,
    pub steps: u64,
    pub recorded_cpu_features: Vec<String>,
    /// the backend the run trained on ("cpu", or the CUDA device): only a CPU run can match bit for bit
    pub recorded_backend: String,
    /// the medtrain that trained the run (`run.json`'s `code_version`) and this one: another version
    /// may sum in another order (a kernel's change), and then the bits differ
    pub recorded_code_version: String,
    pub code_version: String,
    /// the largest |difference| of one weight between the run and the replay (0 when they match)
    pub max_abs_difference: f64,
    pub cpu_features: Vec<&'static str>,
    pub portable: bool,
}

/// Why a replay gave no verdict where [`TrainError`] does not say it: the replay was stopped (SIGINT or
/// SIGTERM) before its last step, so its weights are a half-replayed run's and comparing them would
/// blame the machine for a difference the interruption made. Its own variant, so that the command can exit
/// 3 on it, as `train` does when interrupted.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(
        "{}: the replay was interrupted at step {step} of {steps}: nothing was compared; run medtrain reproduce again",
        run_dir.display()
    )]
    Interrupted { run_dir: PathBuf, step: u64, steps: u64 },
}

/// The step a replay phase stopped at when it stopped short of where it had to go (`until`, the step
/// an earlier phase ran to; `None` for the last phase, which runs to its planned steps), i.e. when it was
/// interrupted. An earlier phase reports `finished = false` by design (it stops at `until` as an
/// interruption would), so its step count decides; the last one must have finished.
fn stopped_short(finished: bool, steps: u64, until: Option<u64>) -> Option<u64> {
    match until {
        Some(u) if steps < u => Some(steps),
        None if !finished => Some(steps),
        _ => None,
    }
}

/// The directory of a run's earlier phases' configs.
pub const PHASES: &str = "phases";

/// The configs of a run's phases before the last, `(step it ran to, path)` in step order; an entry of
/// `RUN/phases` that is not `STEP.toml` is an error naming it.
pub fn phase_configs(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>, TrainError> {
    let dir = run_dir.join(PHASES);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io(&dir, e)),
    };
    let mut out = vec![];
    for e in entries {
        let p = e.map_err(|e| io(&dir, e))?.path();
        let step = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".toml"))
            .filter(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| TrainError::Invalid(format!("{}: not a phase config (STEP.toml)", p.display())))?;
        out.push((step, p));
    }
    out.sort();
    Ok(out)
}

/// A resolved config without its plan table (the replay computes the plan again and must agree).
fn replay_config(path: &Path, bad: &dyn Fn(String) -> TrainError) -> Result<toml::Table, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|_| bad(format!("{} is not valid TOML", path.display())))?;
    table.remove("plan");
    Ok(table)
}

pub fn reproduce(run_dir: &Path, threads: Option<usize>) -> Result<Reproduction, ReproduceError> {
    let snap = seal::Snapshot::take(run_dir, &[])?;
    // the seal as the run wrote it, where this node's ledger has the run (found by a tester: a run whose
    // weights were changed and sealed again "differed" and the CPU was blamed)
    // (a ledger this user cannot open, as a reproducer elsewhere has none: not asked)
    let ledger_path = crate::privacy::permit::ledger_path();
    let ledger = ledger_path
        .is_file()
        .then(|| {
            crate::privacy::ledger::Ledger::open(&ledger_path, crate::privacy::accountant::AccountantKind::Pld).ok()
        })
        .flatten();
    if let Some(ledger) = ledger {
        if let Some(recorded) = ledger.seal_sha256(&super::run::run_id(run_dir)).map_err(TrainError::from)? {
            if recorded != snap.seal_sha256 {
                return Err(TrainError::Invalid(format!(
                    "{}: changed after the run (the ledger {} records another seal): the run's files were changed \
                     and sealed again; nothing was replayed",
                    run_dir.join("seal.json").display(),
                    ledger_path.display()
                ))
                .into());
            }
        }
    }
    let bad = |m: String| TrainError::Invalid(format!("{}: {m}", run_dir.display()));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).map_err(|e| io(&run_dir.join("run.json"), e))?)
            .map_err(|_| bad("run.json is not valid JSON".into()))?;
    if record["finished"].as_bool() != Some(true) {
        return Err(bad("the run did not finish; finish it with medtrain train --resume first".into()).into());
    }
    if record["dp"].as_bool() == Some(false) {
        return Err(bad("a --no-dp baseline has no keys to replay".into()).into());
    }
    let ck = checkpoint::load(run_dir)?.ok_or_else(|| bad("no checkpoint".into()))?;
    // the phases: each earlier one's config up to the step it ran to, then the last to the end
    let mut phases: Vec<(Option<u64>, toml::Table)> = vec![];
    for (step, path) in phase_configs(run_dir)? {
        phases.push((Some(step), replay_config(&path, &bad)?));
    }
    if phases.is_empty() && ck.history.len() > 1 {
        return Err(bad(format!(
            "trained in {} phases but keeps no config of the earlier ones (trained by an older medtrain)",
            ck.history.len()
        ))
        .into());
    }
    phases.push((None, replay_config(&run_dir.join("config.resolved.toml"), &bad)?));
    let table = &phases[phases.len() - 1].1;
    let format = table.get("data").and_then(|d| d.get("format")).and_then(|f| f.as_str()).unwrap_or("");
    let prepared = if format == "prepared" {
        PathBuf::from(table.get("data").and_then(|d| d.get("input")).and_then(|i| i.as_str()).unwrap_or(""))
    } else {
        run_dir.join("data")
    };
    // the data the run trained on (not sealed: the splits are large; run.json, sealed, has their digest):
    // a replay on other data "differed" and blamed the CPU
    if let Some(recorded) = record["data_digest"].as_str() {
        let now = crate::data::prepared::digest(&prepared).map_err(TrainError::from)?;
        if now != recorded {
            return Err(bad(format!(
                "{}: the prepared data changed since the run trained on them (their digest differs from run.json's): \
                 a replay on them would not be of this run",
                prepared.display()
            ))
            .into());
        }
    }
    // a directory of this process's own, made here (a fixed name under /tmp, removed first, could be
    // another user's link)
    let tmp = private_temp_dir()?;
    let result = (|| -> Result<Reproduction, ReproduceError> {
        let mut done = 0;
        let mut last = None;
        for (i, (until, table)) in phases.iter().enumerate() {
            if until.is_some_and(|u| u <= done) {
                continue;
            }
            let cfg = tmp.join(format!("config-{i}.toml"));
            std::fs::write(&cfg, toml::to_string(table).unwrap_or_default()).map_err(|e| io(&cfg, e))?;
            let opts = RunOptions {
                run_dir: Some(tmp.join("run")),
                threads,
                quiet: true,
                resume: i > 0,
                stop_after: until.map(|u| u.saturating_sub(done)),
                replay: Some((prepared.clone(), ck.noise_key, ck.sampler_seed)),
                backend: Some(super::config::Device::Cpu),
                ..Default::default()
            };
            let s = run::train(&cfg, &opts)?;
            if let Some(step) = stopped_short(s.finished, s.steps, *until) {
                return Err(ReproduceError::Interrupted { run_dir: run_dir.to_path_buf(), step, steps: ck.step });
            }
            done = until.unwrap_or(done);
            last = Some(s);
        }
        let s = last.expect("the last phase always runs");
        let again = checkpoint::load(&tmp.join("run"))?.ok_or_else(|| bad("the replay wrote no checkpoint".into()))?;
        // one pass over the run's tensors: the first whose bits differ, and the largest difference
        let mut first = None;
        let mut max_abs_difference = 0f64;
        for (name, w) in ck.names.iter().zip(&ck.weights) {
            let other = again.names.iter().position(|n| n == name).map(|i| &again.weights[i]);
            let differs = other
                .is_none_or(|o| o.len() != w.len() || o.iter().zip(w.iter()).any(|(a, b)| a.to_bits() != b.to_bits()));
            if differs && first.is_none() {
                first = Some(name.clone());
            }
            for (a, b) in other.into_iter().flat_map(|o| o.iter().zip(w.iter())) {
                max_abs_difference = max_abs_difference.max((*a as f64 - *b as f64).abs());
            }
        }
        Ok(Reproduction {
            recorded_backend: record["backend"].as_str().unwrap_or("cpu").to_string(),
            recorded_code_version: record["code_version"].as_str().unwrap_or("unknown").to_string(),
            code_version: super::run::code_version(),
            max_abs_difference,
            run_dir: run_dir.to_path_buf(),
            matches: first.is_none() && again.names.len() == ck.names.len(),
            first_difference: first,
            tensors: ck.names.len(),
            steps: s.steps,
            recorded_cpu_features: record["cpu_features"]
                .as_array()
                .map_or(vec![], |a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()),
            cpu_features: run::cpu_features(s.portable),
            portable: s.portable,
        })
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// A new directory under the system's temporary directory, mode 0700, with a random name: created, never
/// reused (`create` fails on an existing name, a link included).
fn private_temp_dir() -> Result<PathBuf, TrainError> {
    use rand_core::TryRngCore;
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..16 {
        let mut k = [0u8; 8];
        rand_core::OsRng.try_fill_bytes(&mut k).map_err(|e| TrainError::Invalid(format!("OS entropy: {e}")))?;
        let name: String = k.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("medtrain-reproduce-{name}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&dir, e)),
        }
    }
    Err(TrainError::Invalid("no free name for the replay's temporary directory".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_replay_phase_is_told_from_one_that_reached_its_step() {
        // the last phase: only a finished replay is compared
        assert_eq!(stopped_short(true, 30000, None), None);
        assert_eq!(stopped_short(false, 1234, None), Some(1234));
        // an earlier phase stops at its step unfinished by design; short of it, it was interrupted
        assert_eq!(stopped_short(false, 500, Some(500)), None);
        assert_eq!(stopped_short(false, 321, Some(500)), Some(321));
    }
}
