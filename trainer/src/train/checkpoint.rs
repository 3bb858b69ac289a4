//! A run's checkpoint: `RUN/checkpoint/` with `weights.safetensors` (every parameter by name),
//! `optimizer.safetensors` (its state per parameter) and `state.json` (step, the sampler's and the
//! noise's keys and stream position, the accountant's history of the steps run, the privacy plan and
//! the curves so far). The keys stay inside the node: the run directory is mode 0700 and the export
//! gate never copies a checkpoint.
//!
//! Written atomically: into `checkpoint.partial`, every file synced, then swapped in by renames
//! (`checkpoint` -> `checkpoint.old`, `checkpoint.partial` -> `checkpoint`, `checkpoint.old`
//! removed), so that a crash at any point leaves a complete checkpoint under one of the two names.

use super::run::{io, Plan, TrainError};
use crate::privacy::accountant::{AccountingError, Phase};
use crate::tensors::{self, HostTensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The curves of a run (training loss, tuning metric, epsilon), carried across resumes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub loss: Vec<(u64, f64)>,
    pub eval: Vec<(u64, String, f64)>,
    pub epsilon: Vec<(u64, f64)>,
}

pub struct Checkpoint {
    pub step: u64,
    pub names: Vec<String>,
    /// each parameter's shape (PyTorch / Hugging Face layout)
    pub shapes: Vec<Vec<usize>>,
    pub weights: Vec<Vec<f32>>,
    pub optimizer_steps: u64,
    pub optimizer: Vec<(Vec<f32>, Vec<f32>)>,
    pub noise_key: [u8; 32],
    pub sampler_seed: [u8; 32],
    pub sampler_word_pos: u128,
    pub history: Vec<(f64, f64, u64)>,
    pub plan: Plan,
    pub record: Record,
}

#[derive(Serialize, Deserialize)]
struct State {
    format: u32,
    step: u64,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    optimizer_steps: u64,
    noise_key: String,
    sampler_seed: String,
    sampler_word_pos: String,
    history: Vec<(f64, f64, u64)>,
    plan: Plan,
    record: Record,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, k) in k.iter_mut().enumerate() {
        *k = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

fn sync_dir(dir: &Path) {
    // directory fsync makes the renames durable; not every filesystem allows it
    let _ = std::fs::File::open(dir).and_then(|f| f.sync_all());
}

impl Checkpoint {
    /// What the run has spent so far, as the ledger settles it: the preparation's DP phases, then the
    /// training's (phases of no step left out).
    pub fn spent_phases(&self) -> Result<Vec<Phase>, AccountingError> {
        self.plan
            .prepare_phases
            .iter()
            .chain(&self.history)
            .filter(|p| p.2 > 0)
            .map(|&(s, q, n)| Phase::new(s, q, n))
            .collect()
    }
}

/// Writes `ck` as the run's checkpoint, replacing the previous one atomically.
pub fn save(run_dir: &Path, ck: &Checkpoint) -> Result<(), TrainError> {
    save_recorded(run_dir, ck, |_| Ok(()))
}

/// The digest of a checkpoint's three files (SHA-256 over each file's length and bytes, in order).
pub fn digest(state: &[u8], weights: &[u8], optimizer: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for b in [state, weights, optimizer] {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// [`save`], giving `record` the new checkpoint's [`digest`] once its files are written and before
/// it replaces the current one (an error from `record` leaves the current one in place). The digest
/// is of the bytes written, as held here: files read back could have been replaced in between by
/// whoever can write the run directory.
pub fn save_recorded(
    run_dir: &Path,
    ck: &Checkpoint,
    record: impl FnOnce(&str) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let part = run_dir.join("checkpoint.partial");
    if part.exists() {
        std::fs::remove_dir_all(&part).map_err(|e| io(&part, e))?;
    }
    std::fs::create_dir(&part).map_err(|e| io(&part, e))?;
    let wp = part.join("weights.safetensors");
    let named: Vec<(&str, &[f32])> =
        ck.names.iter().map(String::as_str).zip(ck.weights.iter().map(Vec::as_slice)).collect();
    let weights = tensors::serialize_f32(&wp, &named).map_err(|e| io(&wp, e))?;
    write_new(&wp, &weights)?;
    let op = part.join("optimizer.safetensors");
    let names: Vec<String> = (0..ck.optimizer.len()).flat_map(|i| [format!("{i}.m"), format!("{i}.v")]).collect();
    let moments = ck.optimizer.iter().flat_map(|(m, v)| [m.as_slice(), v.as_slice()]);
    let named: Vec<(&str, &[f32])> = names.iter().map(String::as_str).zip(moments).collect();
    let optimizer = tensors::serialize_f32(&op, &named).map_err(|e| io(&op, e))?;
    write_new(&op, &optimizer)?;
    let state = State {
        format: 1,
        step: ck.step,
        names: ck.names.clone(),
        shapes: ck.shapes.clone(),
        optimizer_steps: ck.optimizer_steps,
        noise_key: hex(&ck.noise_key),
        sampler_seed: hex(&ck.sampler_seed),
        sampler_word_pos: ck.sampler_word_pos.to_string(),
        history: ck.history.clone(),
        plan: ck.plan.clone(),
        record: ck.record.clone(),
    };
    let sp = part.join("state.json");
    let state_bytes = serde_json::to_vec(&state).map_err(|e| io(&sp, e))?;
    write_new(&sp, &state_bytes)?;
    sync_dir(&part);
    record(&digest(&state_bytes, &weights, &optimizer))?;
    swap_in(run_dir)
}

/// Writes a new file (`create_new`: nothing put at the name in between, a link, is written through)
/// and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| io(path, e))
}

/// `checkpoint.partial`, written whole, made the run's checkpoint by renames: `checkpoint` ->
/// `checkpoint.old` (when there is one), `checkpoint.partial` -> `checkpoint`, `checkpoint.old`
/// removed. A crash at any point leaves a complete checkpoint under one of the names.
fn swap_in(run_dir: &Path) -> Result<(), TrainError> {
    let part = run_dir.join("checkpoint.partial");
    let cur = run_dir.join("checkpoint");
    let old = run_dir.join("checkpoint.old");
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(&cur, &old).map_err(|e| io(&cur, e))?;
    }
    std::fs::rename(&part, &cur).map_err(|e| io(&part, e))?;
    sync_dir(run_dir);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

/// A checkpoint written whole and recorded in the ledger (`recorded`: its last record), then not
/// swapped in because the process stopped: `checkpoint.partial` with that digest is made the run's
/// checkpoint, as [`save_recorded`] would have. Returns whether it was. (The checkpoint before it is
/// no longer one the ledger accepts: its steps are fewer than those recorded.)
pub fn roll_forward(run_dir: &Path, recorded: &str) -> Result<bool, TrainError> {
    let part = run_dir.join("checkpoint.partial");
    if !part.is_dir() {
        return Ok(false);
    }
    let read = |name: &str| crate::read_bounded(&part.join(name), u64::MAX).ok();
    let (Some(state), Some(weights), Some(optimizer)) =
        (read("state.json"), read("weights.safetensors"), read("optimizer.safetensors"))
    else {
        return Ok(false);
    };
    if digest(&state, &weights, &optimizer) != recorded {
        return Ok(false);
    }
    swap_in(run_dir)?;
    Ok(true)
}

/// The run's checkpoint, if it has one: `checkpoint`, or `checkpoint.old` when a crash came between
/// the two renames of [`save`].
pub fn load(run_dir: &Path) -> Result<Option<Checkpoint>, TrainError> {
    Ok(load_with_digest(run_dir)?.map(|(ck, _)| ck))
}

/// [`load`], with the [`digest`] of the bytes it parsed.
pub fn load_with_digest(run_dir: &Path) -> Result<Option<(Checkpoint, String)>, TrainError> {
    let dir: PathBuf =
        match [run_dir.join("checkpoint"), run_dir.join("checkpoint.old")].into_iter().find(|d| d.is_dir()) {
            Some(d) => d,
            None => return Ok(None),
        };
    let read = |name: &str| {
        let p = dir.join(name);
        crate::read_bounded(&p, u64::MAX).map_err(|e| io(&p, e))
    };
    let (state, weights, optimizer) =
        (read("state.json")?, read("weights.safetensors")?, read("optimizer.safetensors")?);
    let d = digest(&state, &weights, &optimizer);
    parse(&dir, &state, &weights, Some(&optimizer)).map(|ck| Some((ck, d)))
}

/// A checkpoint from the bytes of its files (`dir` names them in errors); without the optimizer's
/// file its state is empty (the export gate reads only the weights).
pub fn parse(dir: &Path, state: &[u8], weights: &[u8], optimizer: Option<&[u8]>) -> Result<Checkpoint, TrainError> {
    let bad = |what: &str| TrainError::Invalid(format!("{}: {what}", dir.display()));
    let st: State = serde_json::from_slice(state).map_err(|e| bad(&format!("state.json is not valid: {e}")))?;
    if st.format != 1 {
        return Err(bad("state.json has an unknown format"));
    }
    // the steps taken are what the accountant composes: a history that counts fewer than the step
    // (edited) would settle and release the run at less than it spent
    let counted: u64 = st.history.iter().fold(0u64, |n, p| n.saturating_add(p.2));
    if counted != st.step {
        return Err(bad(&format!(
            "state.json: its privacy history counts {counted} steps and its step is {}; the checkpoint was changed \
             after the run wrote it",
            st.step
        )));
    }
    let wf = tensors::TensorFile::parse(&dir.join("weights.safetensors"), weights).map_err(|e| bad(&e.to_string()))?;
    let weights = st
        .names
        .iter()
        .map(|n| match wf.tensors.get(n).map(|t| &t.data) {
            Some(HostTensor::F32(v)) => Ok(v.clone()),
            _ => Err(bad(&format!("weights.safetensors lacks parameter '{n}'"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut optimizer_state = vec![];
    if let Some(bytes) = optimizer {
        let of =
            tensors::TensorFile::parse(&dir.join("optimizer.safetensors"), bytes).map_err(|e| bad(&e.to_string()))?;
        for i in 0.. {
            let (m, v) = (of.tensors.get(&format!("{i}.m")), of.tensors.get(&format!("{i}.v")));
            match (m.map(|t| &t.data), v.map(|t| &t.data)) {
                (Some(HostTensor::F32(m)), Some(HostTensor::F32(v))) => optimizer_state.push((m.clone(), v.clone())),
                _ => break,
            }
        }
    }
    Ok(Checkpoint {
        step: st.step,
        names: st.names,
        shapes: st.shapes,
        weights,
        optimizer_steps: st.optimizer_steps,
        optimizer: optimizer_state,
        noise_key: unhex(&st.noise_key).ok_or_else(|| bad("state.json: noise_key is not 32 hex bytes"))?,
        sampler_seed: unhex(&st.sampler_seed).ok_or_else(|| bad("state.json: sampler_seed is not 32 hex bytes"))?,
        sampler_word_pos: st.sampler_word_pos.parse().map_err(|_| bad("state.json: sampler_word_pos"))?,
        history: st.history,
        plan: st.plan,
        record: st.record,
    })
}
