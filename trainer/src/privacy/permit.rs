//! Permits: what a project may train on, until when, and with how much privacy budget.
//!
//! A permit is a TOML file in the node's permit store (`NODE/permits/`, NODE = `$MEDTRAIN_HOME` or
//! `~/.medtrain`) beside its SSHSIG signature by the node key (namespace `medtrain-permit`), issued by
//! an operator (`medtrain permit issue`), which also sets the budget of each (project, dataset) in the
//! node's ledger (`NODE/ledger.sqlite`). `medtrain train` refuses data that no valid permit (signature
//! good, not expired) covers, reserves its planned epsilon before its first step and settles what it
//! spent when it ends; an interrupted run keeps its reservation until `--resume` settles it.
//!
//! ```toml
//! id = "aki-2026-11-29T101500Z"
//! project = "aki"
//! purpose = "AKI risk from lab series"
//! datasets = ["sha256:8226a236..."]
//! expires = "2027-06-30"          # valid through this UTC day
//! epsilon = 10.0                  # the budget of each dataset for the project
//! delta = 1e-5
//! max_attack_auc = 0.6            # export refuses a membership-inference AUC above this
//! issued = "2026-11-29T101500Z"
//! ```

use super::sshsig::{self, NodeKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const NAMESPACE: &str = "medtrain-permit";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permit {
    pub id: String,
    pub project: String,
    pub purpose: String,
    pub datasets: Vec<String>,
    pub expires: String,
    pub epsilon: f64,
    pub delta: f64,
    #[serde(default = "max_auc")]
    pub max_attack_auc: f64,
    pub issued: String,
}

fn max_auc() -> f64 {
    0.6
}

/// The node's state directory: `$MEDTRAIN_HOME`, else `~/.medtrain`.
pub fn node_home() -> PathBuf {
    // an empty value is unset (it put the ledger and the permits in the working directory)
    if let Some(p) = std::env::var_os("MEDTRAIN_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME").map_or(PathBuf::from("."), PathBuf::from).join(".medtrain")
}

/// The node key: `$MEDTRAIN_NODE_KEY`, else `NODE/node_ed25519`.
pub fn key_path() -> PathBuf {
    std::env::var_os("MEDTRAIN_NODE_KEY").map_or_else(|| node_home().join("node_ed25519"), PathBuf::from)
}

pub fn ledger_path() -> PathBuf {
    node_home().join("ledger.sqlite")
}

/// The permit store, `NODE/permits`.
pub fn store() -> PathBuf {
    node_home().join("permits")
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today() -> String {
    crate::train::run::utc_stamp()[..10].to_string()
}

pub(crate) fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && s.chars().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && {
            // a day of the calendar: 2027-02-30 is none
            let (y, m, d) = (
                s[..4].parse::<u32>().unwrap_or(0),
                s[5..7].parse::<u32>().unwrap_or(0),
                s[8..10].parse().unwrap_or(0),
            );
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if leap => 29,
                2 => 28,
                _ => 0,
            };
            (1..=days).contains(&d)
        }
}

impl Permit {
    /// Checks the fields (the error names the key).
    pub fn check(&self) -> Result<(), String> {
        // a name that starts with a letter or digit: `.` and `..` made hidden permit files
        let name_ok = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !name_ok(&self.project) {
            return Err("project: 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit".into());
        }
        let fingerprint = |d: &str| {
            d.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        };
        if self.datasets.is_empty() || self.datasets.iter().any(|d| !fingerprint(d)) {
            return Err("datasets: fingerprints as `medtrain data fingerprint` prints them (sha256:...)".into());
        }
        if !valid_date(&self.expires) {
            return Err(format!("expires: {:?} is not a date YYYY-MM-DD", self.expires));
        }
        if !(self.epsilon > 0.0 && self.epsilon <= 100.0) {
            return Err(format!("epsilon: {} is not in (0, 100]", crate::short_number(self.epsilon)));
        }
        if !(self.delta > 0.0 && self.delta < 0.1) {
            return Err(format!("delta: {} is not in (0, 0.1)", crate::short_number(self.delta)));
        }
        if !(0.5..=1.0).contains(&self.max_attack_auc) {
            return Err(format!("max_attack_auc: {} is not in [0.5, 1]", crate::short_number(self.max_attack_auc)));
        }
        Ok(())
    }

    pub fn expired(&self) -> bool {
        self.expires < today()
    }
}

/// Signs `p` with the node key and writes it into the store; sets the ledger budgets.
pub fn issue(p: &Permit, ledger_lost: bool) -> Result<(PathBuf, Vec<String>), String> {
    p.check()?;
    if let Some(d) = p.datasets.iter().enumerate().find(|(i, d)| p.datasets[..*i].contains(d)).map(|(_, d)| d) {
        return Err(format!("datasets: {d} is given twice"));
    }
    // a budget the store's permits set and the ledger does not hold: the ledger was lost or replaced,
    // and a budget set now would start at nothing spent (found by a tester: two runs' spend shown as
    // one's)
    let ledger = ledger_path();
    let open =
        || super::ledger::Ledger::open(&ledger, super::accountant::AccountantKind::Pld).map_err(|e| e.to_string());
    let before: Vec<Option<super::ledger::Balance>> = if ledger.is_file() {
        let l = open()?;
        p.datasets.iter().map(|d| l.balance(&p.project, d).ok()).collect()
    } else {
        vec![None; p.datasets.len()]
    };
    if !ledger_lost {
        for (d, b) in p.datasets.iter().zip(&before) {
            let earlier = list().into_iter().chain(revoked()).find_map(|(path, q)| {
                // (one issued expired set no budget)
                let q = q.ok()?;
                (q.project == p.project && q.datasets.contains(d) && q.issued.get(..10) <= Some(q.expires.as_str()))
                    .then_some(path)
            });
            if let (None, Some(earlier)) = (b, earlier) {
                return Err(format!(
                    "{} covers project {} on dataset {d}, but the ledger {} holds no budget for them: the ledger was \
                     lost or replaced, and what the runs under that permit spent is not known. Restore the ledger \
                     from its backup; where it is lost for good, --ledger-lost issues the permit with nothing \
                     spent (give --epsilon less what was spent)",
                    earlier.display(),
                    p.project,
                    ledger.display()
                ));
            }
        }
    }
    let key = NodeKey::load_or_create(&key_path()).map_err(|e| e.to_string())?;
    let dir = store();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = toml::to_string(p).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}.toml", p.id));
    if path.exists() {
        return Err(format!("{}: a permit with this id exists", path.display()));
    }
    std::fs::write(dir.join(format!("{}.toml.sig", p.id)), key.sign(text.as_bytes(), NAMESPACE))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ledger = open()?;
    let delta = super::accountant::Delta::new(p.delta).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    // an expired permit admits no run: its epsilon set the budget all the same, and a run under the
    // project's valid permit was then admitted against it (a run's reservation sets the budget of the
    // permit that covers it too)
    if !p.expired() {
        for (d, before) in p.datasets.iter().zip(before) {
            ledger.set_budget(&p.project, d, p.epsilon, delta).map_err(|e| e.to_string())?;
            let Ok(after) = ledger.balance(&p.project, d) else { continue };
            // what was spent is composed at the new delta: said where it reads otherwise
            if let Some(b) = before.filter(|b| b.settled_runs > 0 && b.delta != after.delta) {
                warnings.push(format!(
                    "dataset {d}: the {} runs settled are composed at the new delta {}: epsilon {:.4} spent at delta \
                     {} is epsilon {:.4} at delta {} (the same spend; a release states its own (epsilon, delta))",
                    b.settled_runs, after.delta, b.settled_epsilon, b.delta, after.settled_epsilon, after.delta
                ));
            }
            if after.committed_epsilon > p.epsilon {
                warnings.push(format!(
                    "dataset {d}: the project's runs have spent or reserved epsilon {:.4}, more than the new budget \
                     {}: no run will be accepted on it",
                    after.committed_epsilon, p.epsilon
                ));
            }
        }
    }
    Ok((path, warnings))
}

/// Reads a permit file and checks its signature by the node key.
pub fn read(path: &Path) -> Result<Permit, String> {
    // a permit revoked stays so wherever its file is put back (a copy from a backup)
    if let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
        let marker = store().join("revoked").join(format!("{name}.revoked"));
        if marker.is_file() && path.parent().map(std::path::Path::to_path_buf) != Some(store().join("revoked")) {
            return Err(format!("{}: revoked ({})", path.display(), marker.display()));
        }
    }
    let text =
        crate::read_text_bounded(path, crate::MAX_CONFIG_BYTES).map_err(|e| format!("{}: {e}", path.display()))?;
    let sig_path = PathBuf::from(format!("{}.sig", path.display()));
    let sig = crate::read_text_bounded(&sig_path, 64 << 10).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: missing: the permit is not signed", sig_path.display()),
        _ => format!("{}: {e}", sig_path.display()),
    })?;
    let key = NodeKey::load(&key_path()).map_err(|e| e.to_string())?;
    sshsig::verify(&key.public_openssh(), text.as_bytes(), &sig, NAMESPACE)
        .map_err(|e| format!("{}: not signed by this node's key ({e})", path.display()))?;
    // TOML's message may quote the file: its line and what is wrong, in our words
    let p: Permit = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| format!(" (line {})", text[..s.start.min(text.len())].matches('\n').count() + 1));
        format!("{}: not a permit{}", path.display(), at.unwrap_or_default())
    })?;
    p.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(p)
}

/// The permits revoked (`NODE/permits/revoked/`), each read as it was issued.
fn revoked() -> Vec<(PathBuf, Result<Permit, String>)> {
    let dir = store().join("revoked");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// Every permit in the store with its path, or the error of one that does not verify.
pub fn list() -> Vec<(PathBuf, Result<Permit, String>)> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store())
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// The valid permit (signature good, not expired) covering `fingerprint`; the latest issued when
/// several do. A job the node daemon runs has `$MEDTRAIN_PROJECT` set to the project it was queued
/// under, and only that project's permits count for it. The error says what to do.
pub fn covering(fingerprint: &str) -> Result<(PathBuf, Permit), String> {
    let mut expired = false;
    let mut found: Option<(PathBuf, Permit)> = None;
    let mut projects: Vec<String> = Vec::new();
    let project = std::env::var("MEDTRAIN_PROJECT").ok().filter(|p| !p.is_empty());
    // a permit that fails its check (its signature, its fields) is named where none covers the data: a
    // new permit is not what a damaged one needs
    let mut invalid: Vec<String> = Vec::new();
    for (path, p) in list() {
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                invalid.push(e);
                continue;
            }
        };
        if !p.datasets.iter().any(|d| d == fingerprint) {
            continue;
        }
        if project.as_ref().is_some_and(|q| *q != p.project) {
            continue;
        }
        if p.expired() {
            expired = true;
            continue;
        }
        if !projects.contains(&p.project) {
            projects.push(p.project.clone());
        }
        if found.as_ref().is_none_or(|f| f.1.issued < p.issued) {
            found = Some((path, p));
        }
    }
    // permits of several projects: which one a run is charged to is the researcher's to say (the
    // newest permit of any project was charged)
    if projects.len() > 1 {
        projects.sort();
        return Err(format!(
            "valid permits of {} projects ({}) cover the data {fingerprint}: set MEDTRAIN_PROJECT to the project \
             this run is for",
            projects.len(),
            projects.join(", ")
        ));
    }
    found.ok_or_else(|| {
        format!(
            "no valid permit in {}{} covers the data {fingerprint}{}: ask the node operator for one \
             (medtrain permit issue --project P --dataset {fingerprint} ...)",
            store().display(),
            project.as_ref().map_or(String::new(), |p| format!(" for project {p}")),
            if expired { " (a permit for it has expired)" } else { "" }
        ) + &match invalid.as_slice() {
            [] => String::new(),
            [one] => format!("; a permit in the store fails its check: {one}"),
            [first, more @ ..] => format!("; {} permits in the store fail their check: {first}, ...", more.len() + 1),
        }
    })
}

/// Revokes a permit of the store (its file, or its id): it and its signature move to `NODE/permits/
/// revoked/`, with when and by whom, and no run is admitted or exported under it from now; what was
/// spent under it stays in the ledger (`budget show` lists it). Returns where it went.
pub fn revoke(which: &str) -> Result<PathBuf, String> {
    let dir = store();
    let given = Path::new(which);
    let path = if given.is_file() { given.to_path_buf() } else { dir.join(format!("{which}.toml")) };
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let file = canonical(&path)
        .map_err(|_| format!("{which}: no such permit in {} (give its file or its id)", dir.display()))?;
    if file.parent() != Some(canonical(&dir)?.as_path()) || file.extension().is_none_or(|x| x != "toml") {
        return Err(format!("{}: not a permit of the store {}", path.display(), dir.display()));
    }
    let revoked = dir.join("revoked");
    std::fs::create_dir_all(&revoked).map_err(|e| format!("{}: {e}", revoked.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = revoked.join(&name);
    if to.exists() {
        return Err(format!("{}: a permit of this name was revoked before", to.display()));
    }
    // SAFETY: getuid has no preconditions
    let uid = unsafe { libc::getuid() };
    let note = format!("revoked {} by uid {uid}\n", crate::train::run::utc_stamp());
    std::fs::write(revoked.join(format!("{name}.revoked")), note).map_err(|e| format!("{}: {e}", revoked.display()))?;
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    if sig.exists() {
        std::fs::rename(&sig, revoked.join(format!("{name}.sig"))).map_err(|e| format!("{}: {e}", sig.display()))?;
    }
    std::fs::rename(&file, &to).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(to)
}
