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
    // asked before opening: opening a FIFO put in a file's place blocks for ever
    if !std::fs::metadata(path).map_err(|e| io(path, e))?.is_file() {
        return Err(TrainError::Invalid(format!("{}: not a regular file", path.display())));
    }
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
    Ok(hex(&h.finalize()))
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sealed files of the run directory as they are now (those present), relative to it.
fn sealed_files(run_dir: &Path) -> Result<Vec<String>, TrainError> {
    // the configs of the phases before the last (`reproduce` replays each)
    let phases = super::reproduce::phase_configs(run_dir)?
        .into_iter()
        .map(|(_, p)| format!("{}/{}", super::reproduce::PHASES, p.file_name().unwrap_or_default().to_string_lossy()));
    // whatever stands at a sealed name: one that is not a regular file is an error when read
    Ok(SEALED
        .iter()
        .map(|s| s.to_string())
        .chain(phases)
        .filter(|rel| run_dir.join(rel).symlink_metadata().is_ok())
        .collect())
}

/// The checkpoint's files, in the order of [`super::checkpoint::digest`].
const CHECKPOINT_FILES: [&str; 3] =
    ["checkpoint/state.json", "checkpoint/weights.safetensors", "checkpoint/optimizer.safetensors"];

/// The sealed files' SHA-256; with `checkpoint`, the checkpoint's files are read whole and their
/// [`super::checkpoint::digest`] must be that one (what is sealed is what was checked).
fn hashes(run_dir: &Path, checkpoint: Option<&str>) -> Result<BTreeMap<String, String>, TrainError> {
    // a run that prepared its data (`data.source.json` says from what) seals them: without them it is
    // no record `reproduce` can replay (found by a tester: `rm -rf RUN/data` while a run trained left
    // a sealed record without them, and export released it)
    if run_dir.join("data.source.json").is_file() && !run_dir.join("data/manifest.json").is_file() {
        return Err(TrainError::Invalid(format!(
            "{}: the run's prepared data were removed while it ran; its record is not sealed without them \
             (reproduce replays them), so it cannot be exported: train again",
            run_dir.join("data").display()
        )));
    }
    let mut read: [Option<Vec<u8>>; 3] = Default::default();
    let mut files = BTreeMap::new();
    for rel in sealed_files(run_dir)? {
        let path = run_dir.join(&rel);
        let h = match CHECKPOINT_FILES.iter().position(|c| *c == rel).filter(|_| checkpoint.is_some()) {
            Some(i) => {
                if !std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?.is_file() {
                    return Err(TrainError::Invalid(format!("{}: not a regular file", path.display())));
                }
                let bytes = crate::read_bounded(&path, u64::MAX).map_err(|e| io(&path, e))?;
                let h = hex(&Sha256::digest(&bytes));
                read[i] = Some(bytes);
                h
            }
            None => sha256_file(&path)?,
        };
        files.insert(rel, h);
    }
    if let Some(expected) = checkpoint {
        let matches = match &read {
            [Some(s), Some(w), Some(o)] => super::checkpoint::digest(s, w, o) == expected,
            _ => false,
        };
        if !matches {
            return Err(TrainError::Invalid(format!(
                "{}: not the checkpoint this run wrote last (this node's ledger records another digest): it was \
                 changed or removed while the run evaluated it; the run is not sealed and cannot be exported: \
                 restore the checkpoint and run medtrain train --resume to seal it",
                run_dir.join("checkpoint").display()
            )));
        }
    }
    Ok(files)
}

/// Writes `RUN/seal.json` (atomically: beside, then renamed); returns the SHA-256 of what it wrote,
/// which the run records in the node's ledger ([`crate::privacy::ledger::Ledger::record_seal`]).
/// `checkpoint`: the digest the ledger recorded of the run's last checkpoint, which the checkpoint
/// sealed must have (a charged run).
pub fn seal(run_dir: &Path, checkpoint: Option<&str>) -> Result<String, TrainError> {
    let s = Seal { format: 1, code_version: super::run::code_version(), files: hashes(run_dir, checkpoint)? };
    let bytes = serde_json::to_vec_pretty(&s).unwrap_or_default();
    let tmp = run_dir.join("seal.json.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| io(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, run_dir.join("seal.json")).map_err(|e| io(run_dir, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// The run's seal, checked against its files: an error names the first file changed, added or removed
/// since the run.
pub fn check(run_dir: &Path) -> Result<Seal, TrainError> {
    Ok(Snapshot::take(run_dir, &[])?.seal)
}

/// A run directory's seal and sealed files, each read once: the files whose bytes the caller names
/// are kept, and what is checked against the seal is what the caller then uses. (Re-reading a file
/// after checking it let whoever can write the run directory swap it in between: the export gate
/// runs under the node's user on a directory a researcher wrote.)
pub struct Snapshot {
    pub seal: Seal,
    /// the SHA-256 of `seal.json` as read
    pub seal_sha256: String,
    kept: BTreeMap<String, Vec<u8>>,
}

/// What a directory without run.json is: a run stopped before it wrote one (killed: its config and
/// checkpoint are there), to resume; else no run's (found by a tester: a run killed with SIGKILL was
/// called no run directory).
pub fn no_run_json(run_dir: &Path) -> String {
    if run_dir.join("config.given.toml").is_file() || run_dir.join("checkpoint").is_dir() {
        format!(
            "{}: the run did not finish (it stopped before writing run.json: killed?); continue it with medtrain \
             train --resume --run-dir {}",
            run_dir.display(),
            run_dir.display()
        )
    } else {
        format!("{}: not a medtrain run directory (no run.json)", run_dir.display())
    }
}

impl Snapshot {
    /// Reads `RUN/seal.json`, then every sealed file, keeping the bytes of those in `keep` (relative
    /// paths); fails, naming the file, on any file changed, added or removed since the run.
    pub fn take(run_dir: &Path, keep: &[&str]) -> Result<Snapshot, TrainError> {
        let path = run_dir.join("seal.json");
        let bytes = crate::read_bounded(&path, crate::MAX_CONFIG_BYTES).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && !run_dir.join("run.json").is_file() {
                // (a release directory, or any other: found by a tester, it was told to resume)
                TrainError::Invalid(no_run_json(run_dir))
            } else if e.kind() == std::io::ErrorKind::NotFound {
                TrainError::Invalid(format!(
                    "{}: missing: the run did not finish writing its record (an unfinished run is resumed with \
                     medtrain train --resume), or it was removed since",
                    path.display()
                ))
            } else {
                io(&path, e)
            }
        })?;
        let seal: Seal = serde_json::from_slice(&bytes)
            .map_err(|_| TrainError::Invalid(format!("{}: not a medtrain run record", path.display())))?;
        let seal_sha256 = hex(&Sha256::digest(&bytes));
        let mut now = BTreeMap::new();
        let mut kept = BTreeMap::new();
        for rel in sealed_files(run_dir)? {
            let p = run_dir.join(&rel);
            if keep.contains(&rel.as_str()) {
                let b = crate::read_bounded(&p, u64::MAX).map_err(|e| io(&p, e))?;
                now.insert(rel.clone(), hex(&Sha256::digest(&b)));
                kept.insert(rel, b);
            } else {
                now.insert(rel, sha256_file(&p)?);
            }
        }
        for (rel, h) in &seal.files {
            match now.get(rel) {
                None => {
                    return Err(TrainError::Invalid(format!("{}: removed after the run", run_dir.join(rel).display())))
                }
                Some(x) if x != h => {
                    return Err(TrainError::Invalid(format!("{}: changed after the run", run_dir.join(rel).display())))
                }
                _ => {}
            }
        }
        if let Some(rel) = now.keys().find(|k| !seal.files.contains_key(*k)) {
            return Err(TrainError::Invalid(format!("{}: added after the run", run_dir.join(rel).display())));
        }
        Ok(Snapshot { seal, seal_sha256, kept })
    }

    /// The bytes of a kept file as checked; `None` when the run has no such file.
    pub fn bytes(&self, rel: &str) -> Option<&[u8]> {
        self.kept.get(rel).map(Vec::as_slice)
    }
}
