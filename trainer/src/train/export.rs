//! The export gate (`medtrain export RUN --out DIR`), the only way weights leave the node, and
//! `medtrain verify DIR`.
//!
//! Export refuses, each with what to do: a run without DP, a run whose noise came from a stated seed,
//! unit "example" on data where subjects have several examples without the stated assumption, an
//! unfinished run, a tokenizer fitted on private notes without DP, a run directory changed after the run
//! (its sealed record), a directory that is not a run. It writes:
//! - `model.safetensors`: the trained weights only (Hugging Face / PyTorch names; no optimizer state);
//! - `release.json`: what using and auditing the model needs (config, its paths on the node and its
//!   split key withheld; architecture, tokenizer and its
//!   provenance, the guarantee with its accountant and parameters, data fingerprint, code version, the
//!   base model's hashes, the held-out metrics with counts under 10 suppressed) and the SHA-256 of
//!   every other file of the release;
//! - `release.json.sig`: an OpenSSH SSHSIG signature of release.json by the node's Ed25519 key,
//!   namespace `medtrain-release`; `node.pub`: the public key.
//!
//! Anyone can check a release without medtrain:
//! ```text
//! echo "medtrain-node namespaces=\"medtrain-release\" $(cat node.pub)" > allowed_signers
//! ssh-keygen -Y verify -f allowed_signers -I medtrain-node -n medtrain-release -s release.json.sig < release.json
//! sha256sum model.safetensors   # equals release.json's files."model.safetensors"
//! ```

use super::checkpoint;
use super::run::{io, TrainError};
use super::seal::{self, sha256_file};
use crate::privacy::sshsig::{self, NodeKey, NAMESPACE};
use crate::tensors::{self, OutData};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the node's key lives: `$MEDTRAIN_NODE_KEY`, else `NODE/node_ed25519` (NODE = `$MEDTRAIN_HOME`
/// or `~/.medtrain`).
pub fn default_key_path() -> PathBuf {
    crate::privacy::permit::key_path()
}

fn refuse(msg: String) -> TrainError {
    TrainError::Invalid(format!("export refused: {msg}"))
}

fn parse_json(path: &Path, bytes: &[u8]) -> Result<Value, TrainError> {
    serde_json::from_slice(bytes).map_err(|_| TrainError::Invalid(format!("{}: not valid JSON", path.display())))
}

/// The sealed files export reads: checked against the seal and used from the same bytes.
const USED: [&str; 7] = [
    "run.json",
    "metrics.json",
    "config.resolved.toml",
    "checkpoint/state.json",
    "checkpoint/weights.safetensors",
    "data/tokenizer.json",
    "data/tokenizer.medtrain.json",
];

/// The attack AUC above which export refuses when no permit sets one.
pub const DEFAULT_MAX_ATTACK_AUC: f64 = 0.6;

/// Checks the run and writes its release into `out` (a new or empty directory). `max_attack_auc`:
/// the membership-inference AUC above which the run is refused.
pub fn export(run_dir: &Path, out: &Path, key_path: &Path, max_attack_auc: Option<f64>) -> Result<Value, TrainError> {
    // the node's own key, never one made here: a mistyped path would sign with a key nobody knows
    if std::fs::symlink_metadata(key_path).is_err() {
        return Err(refuse(format!(
            "no node key at {}: give the node's key (--key-file, $MEDTRAIN_NODE_KEY), or make one first with \
             `medtrain node key --new --key-file {}`",
            key_path.display(),
            key_path.display()
        )));
    }
    let key = NodeKey::load(key_path).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if !run_dir.join("run.json").is_file() {
        return Err(refuse(seal::no_run_json(run_dir)));
    }
    let run_path = run_dir.join("run.json");
    let run_bytes = crate::read_bounded(&run_path, crate::MAX_CONFIG_BYTES).map_err(|e| io(&run_path, e))?;
    let run = parse_json(&run_path, &run_bytes)?;
    let flag = |k: &str| run.get(k).and_then(Value::as_bool);
    if flag("finished") != Some(true) {
        return Err(refuse(format!(
            "{}: the run did not finish; continue it with medtrain train --resume --run-dir {}",
            run_dir.display(),
            run_dir.display()
        )));
    }
    if flag("dp") != Some(true) {
        return Err(refuse(format!(
            "{}: trained without DP (--no-dp); only a DP-SGD run can leave the node",
            run_dir.display()
        )));
    }
    if flag("noise_seeded") == Some(true) {
        return Err(refuse(format!(
            "{}: its noise came from privacy.noise_seed, which whoever knows the seed can remove; train again \
             without noise_seed",
            run_dir.display()
        )));
    }
    if run.get("unit").and_then(Value::as_str) == Some("example")
        && flag("assume_one_example_per_subject") != Some(true)
    {
        // train refuses such runs; a record saying otherwise was not written by it
        return Err(refuse(format!("{}: unit \"example\" without assume_one_example_per_subject", run_dir.display())));
    }
    if flag("tokenizer_exportable") == Some(false) {
        return Err(refuse(format!(
            "{}: its tokenizer was fitted on the node's private notes without DP; train with a public tokenizer \
             (data.features.tokenizer = a tokenizer.json from outside the node)",
            run_dir.display()
        )));
    }
    // every file used from here on is read once, as checked against the seal
    let snap = seal::Snapshot::take(run_dir, &USED).map_err(|e| refuse(e.to_string()))?;
    if snap.bytes("run.json") != Some(&run_bytes[..]) {
        return Err(refuse(format!("{}: changed while it was exported", run_path.display())));
    }
    // the permit the run was trained under: still valid, and the run within its budget
    let permit_path = run.get("permit").and_then(Value::as_str).map(std::path::PathBuf::from).ok_or_else(|| {
        refuse(format!(
            "{}: the run records no permit (trained by an older medtrain); train it again",
            run_dir.display()
        ))
    })?;
    let permit = crate::privacy::permit::read(&permit_path)
        .map_err(|e| refuse(format!("{e}: ask the operator for a valid permit")))?;
    if permit.expired() {
        return Err(refuse(format!(
            "{}: the permit expired on {}; ask the node operator to renew it",
            permit_path.display(),
            permit.expires
        )));
    }
    // the run must be this node's: its ledger holds the run, settled (a directory trained on another
    // node, or moved since, has no record here)
    let run_id = super::run::run_id(run_dir);
    let ledger_path = crate::privacy::permit::ledger_path();
    let ledger = crate::privacy::ledger::Ledger::open(&ledger_path, crate::privacy::accountant::AccountantKind::Pld)
        .map_err(|e| refuse(e.to_string()))?;
    let state = ledger.run_state(&run_id).map_err(|e| refuse(e.to_string()))?;
    match state.as_deref() {
        Some("settled") => {}
        Some(_) => {
            return Err(refuse(format!(
                "{}: the run's spend is not settled in the ledger ({}); settle it with medtrain permit settle {}",
                run_dir.display(),
                ledger_path.display(),
                run_dir.display()
            )))
        }
        None => {
            return Err(refuse(format!(
                "{}: this node's ledger ({}) has no record of the run: it was trained on another node or its \
                 directory was moved; export it on the node that trained it, from where it was trained",
                run_dir.display(),
                ledger_path.display()
            )))
        }
    }
    // the seal as the run wrote it: the seal file is the researcher's to write, the ledger's record of
    // it is not (a run changed after it stopped and sealed again with the new digests was released)
    let seal_path = run_dir.join("seal.json");
    match ledger.seal_sha256(&run_id).map_err(|e| refuse(e.to_string()))? {
        Some(recorded) if recorded == snap.seal_sha256 => {}
        Some(_) => {
            return Err(refuse(format!(
                "{}: changed after the run (the ledger {} records another seal): the run's files were changed \
                 and sealed again",
                seal_path.display(),
                ledger_path.display()
            )))
        }
        None => {
            return Err(refuse(format!(
                "{}: the ledger ({}) records no seal of the run: it stopped before it wrote its record (a resume \
                 killed while it sealed the run again), or an older medtrain trained it; resume it (medtrain train \
                 --resume), which seals it",
                run_dir.display(),
                ledger_path.display()
            )))
        }
    }
    // the ledger settled what the run's checkpoint says it ran: a run that ran on after its settlement
    // spent more than the ledger counts
    let ck = match (snap.bytes("checkpoint/state.json"), snap.bytes("checkpoint/weights.safetensors")) {
        (Some(state), Some(weights)) => checkpoint::parse(&run_dir.join("checkpoint"), state, weights, None)?,
        _ => return Err(refuse(format!("{}: no checkpoint", run_dir.display()))),
    };
    let ran = ck.spent_phases().map_err(|e| refuse(format!("{}: the checkpoint's phases: {e}", run_dir.display())))?;
    if ledger.spent(&run_id).map_err(|e| refuse(e.to_string()))?.as_deref() != Some(&ran[..]) {
        return Err(refuse(format!(
            "{}: the ledger ({}) settled other steps than the run ran (it went on after it was settled); \
             ask the operator",
            run_dir.display(),
            ledger_path.display()
        )));
    }
    if flag("over_budget") == Some(true) {
        return Err(refuse(format!(
            "{}: the run spent more than the permit's budget left ({}); it cannot be released",
            run_dir.display(),
            permit_path.display()
        )));
    }
    // the permit's limit is the operator's: the caller may only make it stricter
    let max_attack_auc = match max_attack_auc {
        Some(a) if a > permit.max_attack_auc => {
            return Err(refuse(format!(
                "--max-attack-auc {a} is looser than the permit's max_attack_auc {} ({}); it may only be lower",
                permit.max_attack_auc,
                permit_path.display()
            )))
        }
        Some(a) => a,
        None => permit.max_attack_auc,
    };
    let metrics = used_json(run_dir, &snap, "metrics.json")?;
    let mi = &metrics["membership_inference"];
    if mi.is_null() {
        return Err(refuse(format!(
            "{}: the run has no membership-inference check (trained by an older medtrain); train it again",
            run_dir.display()
        )));
    }
    // an attack that could not run (no or too few held-out non-members) checked nothing
    if ["loss_threshold", "calibrated"].iter().any(|k| mi[*k]["auc"].as_f64().is_none()) {
        return Err(refuse(format!(
            "{}: the membership-inference check could not be computed (held-out non-members: {}); train with a \
             held-out split (data.split.held_out) that leaves enough examples",
            run_dir.display(),
            mi["non_members"]
        )));
    }
    for kind in ["loss_threshold", "calibrated"] {
        if let Some(a) = mi[kind]["auc"].as_f64() {
            if a > max_attack_auc {
                return Err(refuse(format!(
                    "{}: membership inference ({kind}) reaches AUC {a:.3}, above {max_attack_auc}: the model tells its \
                     training patients apart, which correct DP at this epsilon should prevent; check the run \
                     (privacy settings, data leakage between splits) before any release",
                    run_dir.display()
                )));
            }
        }
    }
    if mi["significant"].as_bool() == Some(true) {
        eprintln!("warning: membership inference AUC is significantly above 0.5 (release.json has the figures)");
    }
    // a model with NaN or infinite weights predicts nothing (a run that diverged): not a release
    if let Some(i) = ck.weights.iter().position(|w| w.iter().any(|v| !v.is_finite())) {
        return Err(refuse(format!(
            "{}: parameter {} of the checkpoint holds values that are not finite (the run diverged); train \
             again with a lower learning rate or clip norm",
            run_dir.display(),
            i + 1
        )));
    }

    // the release, written beside and renamed into place: into a directory named by the path itself
    // (`.` or a symbolic link failed at the rename and left a signed release in the staging directory)
    // and outside the run (whose directory the seal covers)
    let raw = out.as_os_str().as_encoded_bytes();
    let dots = [b".".as_slice(), b".."].iter().any(|d| raw == *d || raw.ends_with(&[b"/", *d].concat()));
    if out.file_name().is_none() || dots {
        return Err(TrainError::Invalid(format!(
            "--out {}: name a new directory (its last part a name)",
            out.display()
        )));
    }
    if out.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(TrainError::Invalid(format!(
            "--out {}: is a symbolic link; give the path of a new directory",
            out.display()
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(TrainError::Invalid(format!("--out {}: exists and is not a directory", out.display())));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // (the nearest existing ancestor: `--out RUN/releases/v1` before `releases` exists)
    let existing = parent.ancestors().find(|a| a.as_os_str().is_empty() || a.exists()).unwrap_or(parent);
    let existing = if existing.as_os_str().is_empty() { Path::new(".") } else { existing };
    if let (Ok(run), Ok(at)) = (run_dir.canonicalize(), existing.canonicalize()) {
        if at.starts_with(&run) {
            return Err(TrainError::Invalid(format!(
                "--out {}: inside the run directory {}; choose a directory outside it",
                out.display(),
                run_dir.display()
            )));
        }
    }
    if out.exists() && std::fs::read_dir(out).map_err(|e| io(out, e))?.next().is_some() {
        return Err(TrainError::Invalid(format!("{}: exists and is not empty; choose a new --out", out.display())));
    }
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let name = out.file_name().map_or("release".into(), |n| n.to_string_lossy().into_owned());
    // an export killed before its rename left its staging directory: gone now
    crate::staging::remove_stale(parent, &name);
    let stage = crate::staging::partial(parent, &name);
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir(&stage).map_err(|e| io(&stage, e))?;
    let result = write_release(run_dir, &stage, &key, &run, &snap, &metrics, &ck, max_attack_auc);
    match result {
        Ok(v) => {
            let placed = match out.exists() {
                true => std::fs::remove_dir(out).map_err(|e| io(out, e)),
                false => Ok(()),
            }
            .and_then(|()| std::fs::rename(&stage, out).map_err(|e| io(out, e)));
            if placed.is_err() {
                // no signed release stays behind where it was staged
                let _ = std::fs::remove_dir_all(&stage);
            }
            placed.map(|()| v)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            Err(e)
        }
    }
}

/// A sealed JSON file export uses, from the snapshot's bytes.
fn used_json(run_dir: &Path, snap: &seal::Snapshot, rel: &str) -> Result<Value, TrainError> {
    let path = run_dir.join(rel);
    let bytes =
        snap.bytes(rel).ok_or_else(|| refuse(format!("{}: missing (not in the run's seal)", path.display())))?;
    parse_json(&path, bytes)
}

/// The keys of a config whose string values are paths on the node: a directory or file name may be a
/// patient's name or number (`/data/Yamada_Taro_0901234567/`), and says nothing a user of the model needs.
const PATH_KEYS: [&str; 5] = ["input", "code_map", "file", "tokenizer", "path"];

/// The resolved config as the release states it: every path withheld, and the split key (with it and
/// the subjects' pseudonyms anyone could recompute who trained and who was held out) withheld.
fn released_config(resolved: &str) -> Result<String, String> {
    config_paths_shown(resolved, &|_| "(withheld: a path on the node)".into(), true)
}

/// A config (TOML) written again with the string value of each path key ([`PATH_KEYS`]) as `shown`
/// gives it, and the split key withheld where `withhold_key`; comments are not kept (they are the
/// user's free text).
pub(crate) fn config_paths_shown(
    config: &str,
    shown: &dyn Fn(&str) -> String,
    withhold_key: bool,
) -> Result<String, String> {
    fn walk(table: &mut toml::Table, at: &str, shown: &dyn Fn(&str) -> String, withhold_key: bool) {
        for (key, value) in table.iter_mut() {
            let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            match value {
                toml::Value::Table(t) => walk(t, &path, shown, withhold_key),
                toml::Value::String(s) if withhold_key && path == "data.split.key" => {
                    *s = "(withheld: the split key)".into()
                }
                toml::Value::String(s) if PATH_KEYS.contains(&key.as_str()) => *s = shown(s),
                _ => {}
            }
        }
    }
    let mut table: toml::Table = toml::from_str(config).map_err(|e| e.message().to_string())?;
    walk(&mut table, "", shown, withhold_key);
    toml::to_string(&table).map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
fn write_release(
    run_dir: &Path,
    dir: &Path,
    key: &NodeKey,
    run: &Value,
    snap: &seal::Snapshot,
    metrics: &Value,
    ck: &checkpoint::Checkpoint,
    max_attack_auc: f64,
) -> Result<Value, TrainError> {
    let resolved_path = run_dir.join("config.resolved.toml");
    let resolved = snap
        .bytes("config.resolved.toml")
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| TrainError::Invalid(format!("{}: missing or not UTF-8 text", resolved_path.display())))?;
    // weights, by shape from the model's parameters (the checkpoint keeps them flat)
    let tensors_out: Vec<(String, Vec<usize>, OutData)> = ck
        .names
        .iter()
        .zip(&ck.weights)
        .zip(&ck.shapes)
        .map(|((n, w), sh)| (n.clone(), sh.clone(), OutData::F32(w.clone())))
        .collect();
    let mpath = dir.join("model.safetensors");
    tensors::write(&mpath, &tensors_out, None).map_err(|e| io(&mpath, e))?;
    let mut files = BTreeMap::new();
    files.insert("model.safetensors".to_string(), sha256_file(&mpath)?);
    // the tokenizer the notes were read with, when it may leave
    if let Some(tok) = snap.bytes("data/tokenizer.json") {
        if run.get("tokenizer_exportable").and_then(Value::as_bool) == Some(true) {
            let to = dir.join("tokenizer.json");
            std::fs::write(&to, tok).map_err(|e| io(&to, e))?;
            files.insert("tokenizer.json".to_string(), sha256_file(&to)?);
        }
    }
    // where the tokenizer came from (its sidecar: trained here or not, the DP selection's parameters);
    // a user's tokenizer has none
    let provenance = match snap.bytes("data/tokenizer.medtrain.json") {
        Some(b) => parse_json(&run_dir.join("data/tokenizer.medtrain.json"), b)?,
        None => json!({"trained_in_node": false}),
    };
    // the pretrained checkpoint's files by name and SHA-256: its directory is a path on the node (found
    // by a tester: `/data/models/<a patient's name>/config.json` was released)
    // (relative to the checkpoint's directory, the one its files share: `1_Pooling/config.json` and
    // `config.json` are two files)
    let files_of: Vec<(&str, &str)> = run["base_model"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| Some((f.get(0)?.as_str()?, f.get(1)?.as_str()?))).collect())
        .unwrap_or_default();
    let root = files_of.iter().filter_map(|(p, _)| Path::new(p).parent()).fold(None::<PathBuf>, |acc, dir| {
        Some(match acc {
            None => dir.to_path_buf(),
            Some(a) => a.components().zip(dir.components()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect(),
        })
    });
    let base_model: Vec<Value> = files_of
        .iter()
        .map(|(path, hash)| {
            let p = Path::new(path);
            let rel = root.as_deref().and_then(|r| p.strip_prefix(r).ok()).unwrap_or(p);
            let name = if rel.is_absolute() { p.file_name().map(Path::new).unwrap_or(p) } else { rel };
            json!([name.to_string_lossy(), hash])
        })
        .collect();
    // which tokenizer the weights expect: the one released, or the one the config named (a pretrained
    // model's: found by a tester, a release did not say which); a vocabulary chosen here without DP
    // is not described
    let tokenizer_sha256 = match files.get("tokenizer.json") {
        Some(h) => Value::String(h.clone()),
        None if provenance.get("trained_in_node").and_then(Value::as_bool) == Some(false) => {
            run.get("tokenizer_sha256").cloned().unwrap_or(Value::Null)
        }
        None => Value::Null,
    };
    let public = key.public_openssh();
    let resolved = released_config(resolved).map_err(|e| {
        TrainError::Invalid(format!(
            "{}: not a TOML config ({e}); the run's record is damaged",
            resolved_path.display()
        ))
    })?;
    let release = json!({
        "format": "medtrain-release/1",
        "files": files,
        "model": {
            "config_toml": resolved,
            "parameters": ck.names.iter().zip(&ck.shapes).map(|(n, sh)| json!({"name": n, "shape": sh})).collect::<Vec<_>>(),
            "head": run["head"],
            // a multiclass model on categorical labels: the declared categories, in class order
            "classes": run.get("classes").cloned().unwrap_or(Value::Null),
            "trainable_parameters": run["trainable_parameters"],
            "base_model": base_model,
        },
        "tokenizer": {
            "released": files.contains_key("tokenizer.json"),
            "exportable": run["tokenizer_exportable"],
            "provenance": provenance,
            "sha256": tokenizer_sha256,
        },
        "privacy": {
            "epsilon": run["epsilon"],
            "delta": run["delta"],
            "accountant": run["accountant"],
            "noise_multiplier": run["noise_multiplier"],
            "sample_rate": run["sample_rate"],
            "steps": run["steps"],
            "clip_norm": run["clip_norm"],
            "unit": run["unit"],
            "assume_one_example_per_subject": run["assume_one_example_per_subject"],
            "phases": ck.history,
            "preparation_phases": ck.plan.prepare_phases,
            "delta_added_by_preparation": ck.plan.delta_added,
        },
        "data_fingerprint": run["fingerprint"],
        "permit": {"id": run["permit"], "project": run["project"]},
        "code_version": run["code_version"],
        "trained_by": snap.seal.code_version,
        "exported_by": super::run::code_version(),
        "membership_inference": metrics["membership_inference"],
        "max_attack_auc": max_attack_auc,
        "held_out": metrics,
        "signature": {"namespace": NAMESPACE, "identity": sshsig::IDENTITY, "public_key": public},
    });
    let rpath = dir.join("release.json");
    let bytes = serde_json::to_vec_pretty(&release).unwrap_or_default();
    std::fs::write(&rpath, &bytes).map_err(|e| io(&rpath, e))?;
    let sig = key.sign(&bytes, NAMESPACE);
    std::fs::write(dir.join("release.json.sig"), sig).map_err(|e| io(dir, e))?;
    std::fs::write(dir.join("node.pub"), format!("{public}\n")).map_err(|e| io(dir, e))?;
    for f in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let p = f.map_err(|e| io(dir, e))?.path();
        std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(|e| io(&p, e))?;
    }
    Ok(release)
}

/// Checks a release: the signature of release.json by `key` (an OpenSSH public key line; default the
/// release's node.pub), then the SHA-256 of every file it lists (each a regular file of a plain name
/// in the directory), and no file unlisted. Returns the guarantee and the public key line it trusted.
pub fn verify(dir: &Path, key: Option<&str>) -> Result<(Value, String), TrainError> {
    let rpath = dir.join("release.json");
    let bytes = crate::read_bounded(&rpath, crate::MAX_CONFIG_BYTES).map_err(|e| io(&rpath, e))?;
    let spath = dir.join("release.json.sig");
    let sig = crate::read_text_bounded(&spath, 64 << 10).map_err(|e| io(&spath, e))?;
    let public = match key {
        Some(k) => k.trim().to_string(),
        None => {
            let p = dir.join("node.pub");
            crate::read_text_bounded(&p, 64 << 10).map_err(|e| io(&p, e))?.trim().to_string()
        }
    };
    sshsig::verify(&public, &bytes, &sig, NAMESPACE)
        .map_err(|e| TrainError::Invalid(format!("{}: signature check failed: {e}", spath.display())))?;
    let release: Value = serde_json::from_slice(&bytes)
        .map_err(|_| TrainError::Invalid(format!("{}: not valid JSON", rpath.display())))?;
    let files = release["files"]
        .as_object()
        .ok_or_else(|| TrainError::Invalid(format!("{}: lists no files", rpath.display())))?;
    // a release is of weights (found by a tester: one listing no files verified)
    if !files.contains_key("model.safetensors") {
        return Err(TrainError::Invalid(format!(
            "{}: lists no model.safetensors: no release of weights",
            rpath.display()
        )));
    }
    for (name, want) in files {
        // a plain file name: no path, no hidden file, nothing a terminal would act on when printed
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.len() <= 255
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return Err(TrainError::Invalid(format!(
                "{}: lists a file {:?} that is not a plain file name in the release",
                rpath.display(),
                name
            )));
        }
        let p = dir.join(name);
        // the file itself, not what a link in the release points to
        if !std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?.is_file() {
            return Err(TrainError::Invalid(format!("{}: not a regular file (a link or other)", p.display())));
        }
        let got = sha256_file(&p)?;
        if Some(got.as_str()) != want.as_str() {
            return Err(TrainError::Invalid(format!("{}: its SHA-256 differs from release.json's", p.display())));
        }
    }
    for f in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let name = f.map_err(|e| io(dir, e))?.file_name().to_string_lossy().into_owned();
        let known = ["release.json", "release.json.sig", "node.pub"].contains(&name.as_str());
        if !known && !files.contains_key(&name) {
            return Err(TrainError::Invalid(format!("{}/{name:?}: not listed in release.json", dir.display())));
        }
    }
    Ok((release["privacy"].clone(), public))
}
