//! A run's sealed record (`RUN/seal.json`): the SHA-256 of every file that says what the run was and
//! what it produced (configs, checkpoint, metrics, report, the prepared data's manifest and tokenizer),
//! written when the run stops. The export gate re-hashes them: a run directory changed after its run is
//! refused, naming the file.

use super::run::{io, TrainError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The files sealed, relative to the run directory (those present).
pub const SEALED: [&str; 11] = [
    "config.given.toml",
    "config.resolved.toml",
    "run.json",
    "metrics.json",
    "report.html",
    "checkpoint/weights.safetensors",
    "checkpoint/optimizer.safetensors",
    "checkpoint/state.json",
    "data/manifest.json",
    "data/tokenizer.json",
    // the tokenizer's provenance (trained here or not, with DP or not): release.json quotes it
    "data/tokenizer.medtrain.json",
];

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Seal {
    pub format: u32,
    pub code_version: String,
    pub files: BTreeMap<String, String>,
}

pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn hashes(run_dir: &Path) -> Result<BTreeMap<String, String>, TrainError> {
    let mut files = BTreeMap::new();
    // the configs of the phases before the last (`reproduce` replays each)
    let phases: Vec<String> = super::reproduce::phase_configs(run_dir)?
        .into_iter()
        .map(|(_, p)| format!("{}/{}", super::reproduce::PHASES, p.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    for rel in SEALED.iter().copied().chain(phases.iter().map(String::as_str)) {
        let p = run_dir.join(rel);
        if p.is_file() {
            files.insert(rel.to_string(), sha256_file(&p)?);
        }
    }
    Ok(files)
}

/// Writes `RUN/seal.json` (atomically: beside, then renamed); returns the SHA-256 of what it wrote,
/// which the run records in the node's ledger ([`crate::privacy::ledger::Ledger::record_seal`]).
pub fn seal(run_dir: &Path) -> Result<String, TrainError> {
    let s = Seal { format: 1, code_version: super::run::code_version(), files: hashes(run_dir)? };
    let bytes = serde_json::to_vec_pretty(&s).unwrap_or_default();
    let tmp = run_dir.join("seal.json.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| io(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, run_dir.join("seal.json")).map_err(|e| io(run_dir, e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// The run's seal, checked against its files: an error names the first file changed, added or removed
/// since the run.
pub fn check(run_dir: &Path) -> Result<Seal, TrainError> {
    let path = run_dir.join("seal.json");
    let bytes = std::fs::read(&path).map_err(|_| {
        TrainError::Invalid(format!(
            "{}: missing: the run never finished writing its record (resume it with medtrain train --resume)",
            path.display()
        ))
    })?;
    let seal: Seal = serde_json::from_slice(&bytes)
        .map_err(|_| TrainError::Invalid(format!("{}: not a medtrain run record", path.display())))?;
    let now = hashes(run_dir)?;
    for (rel, h) in &seal.files {
        match now.get(rel) {
            None => return Err(TrainError::Invalid(format!("{}: removed after the run", run_dir.join(rel).display()))),
            Some(x) if x != h => {
                return Err(TrainError::Invalid(format!("{}: changed after the run", run_dir.join(rel).display())))
            }
            _ => {}
        }
    }
    if let Some(rel) = now.keys().find(|k| !seal.files.contains_key(*k)) {
        return Err(TrainError::Invalid(format!("{}: added after the run", run_dir.join(rel).display())));
    }
    Ok(seal)
}
