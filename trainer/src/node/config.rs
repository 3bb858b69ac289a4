//! The node config (`configs/node.toml`): where the daemon keeps its socket and state, who may call it
//! in which role, the projects with their starting quotas, and the NPUs the node declares.
//!
//! Quotas are seeded from this file into the store on the daemon's first start; after that
//! `medtrain quota set` changes them (the store is the truth, the file the seed).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Researcher,
    Operator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// jobs run as child processes of the daemon on this machine
    Local,
    /// jobs go to Slurm with sbatch
    Slurm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxPolicy {
    /// the daemon refuses to start when the kernel refuses namespaces
    Required,
    /// the daemon starts without a sandbox when the kernel refuses namespaces, and says so loudly
    Auto,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// the node's privacy state (permits, ledger, key): `$MEDTRAIN_HOME` of every train job
    pub home: Option<PathBuf>,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_sandbox")]
    pub sandbox: SandboxPolicy,
    /// how many CPU jobs of one thread each the node runs at once (default: one per core)
    pub cpu_slots: Option<u32>,
    /// the half-life of past usage in fair share, in hours
    #[serde(default = "default_half_life")]
    pub fair_share_half_life_hours: f64,
    /// the longest request the socket accepts, in bytes
    #[serde(default = "default_max_request")]
    pub max_request_bytes: usize,
    /// how long a client has for each request, from the answer before (or connecting) to the
    /// request's newline, in seconds
    #[serde(default = "default_request_timeout")]
    pub request_timeout_s: u64,
    /// how many jobs one user may have waiting in the queue at once
    #[serde(default = "default_max_queued")]
    pub max_queued_per_user: u64,
    /// seconds a job has to end after it is asked to stop (SIGTERM: a train job checkpoints) before it
    /// is killed (found by a tester: a job ignoring SIGTERM held its devices for ever)
    #[serde(default = "default_stop_grace")]
    pub stop_grace_s: u64,
    /// the Slurm partition jobs go to in Slurm mode
    pub slurm_partition: Option<String>,
    /// the Slurm account the node submits under and whose users may use the projects' QOS
    #[serde(default = "default_account")]
    pub slurm_account: String,
    /// options every container job's `podman run` gets before the node's own (a site's runtime and
    /// limits, e.g. ["--runtime", "runc", "--ulimit", "nofile=4096:4096"])
    #[serde(default)]
    pub podman_args: Vec<String>,
}

fn default_mode() -> Mode {
    Mode::Local
}
fn default_sandbox() -> SandboxPolicy {
    SandboxPolicy::Required
}
fn default_account() -> String {
    "medtrain".into()
}
fn default_half_life() -> f64 {
    168.0
}
fn default_max_request() -> usize {
    64 << 10
}

pub(super) fn default_stop_grace() -> u64 {
    120
}

fn default_request_timeout() -> u64 {
    60
}

fn default_max_queued() -> u64 {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: u32,
    pub role: Role,
    /// the projects a researcher works in (an operator: all)
    #[serde(default)]
    pub projects: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// devices of the class the project may hold at once without borrowing
    #[serde(default)]
    pub devices: u32,
    /// device-hours per calendar month (UTC); none: unlimited
    pub device_hours: Option<f64>,
    /// the project's idle share of the class is kept for it (nobody may borrow it)
    #[serde(default)]
    pub reserved: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub priority: i64,
    /// device class (cpu, cuda, or a declared NPU kind) -> quota
    #[serde(default)]
    pub quota: BTreeMap<String, Quota>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Npu {
    pub kind: String,
    pub memory_gib: f64,
    pub count: u32,
    /// the environment variable that tells a job which of them it has (e.g. ASCEND_RT_VISIBLE_DEVICES)
    pub visible_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    #[serde(default, rename = "project")]
    pub projects: Vec<Project>,
    #[serde(default, rename = "npu")]
    pub npus: Vec<Npu>,
}

pub const MAX_SLOTS: u32 = 4096;

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let file = path.display().to_string();
        let text = crate::read_text_bounded(path, crate::MAX_CONFIG_BYTES)
            .map_err(|source| NodeConfigError::Read { file: file.clone(), source })?;
        let mut c: NodeConfig = toml::from_str(&text).map_err(|e| NodeConfigError::Invalid {
            file: file.clone(),
            msg: crate::data::reportable::toml_error(&text, &e),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.node.socket, &mut c.node.state_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(h) = c.node.home.as_mut().filter(|h| h.is_relative()) {
            *h = base.join(&*h);
        }
        c.check().map_err(|msg| NodeConfigError::Invalid { file, msg })?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        let n = &self.node;
        if let Some(s) = n.cpu_slots.filter(|&s| s == 0 || s > MAX_SLOTS) {
            return Err(format!("node.cpu_slots = {s}: expected 1..={MAX_SLOTS}"));
        }
        if !(n.fair_share_half_life_hours > 0.0 && n.fair_share_half_life_hours <= 1e6) {
            return Err("node.fair_share_half_life_hours: expected a number of hours in (0, 1e6]".into());
        }
        if !(1024..=(16 << 20)).contains(&n.max_request_bytes) {
            return Err("node.max_request_bytes: expected 1024..=16777216".into());
        }
        if !(1..=3600).contains(&n.request_timeout_s) {
            return Err("node.request_timeout_s: expected 1..=3600 seconds".into());
        }
        if !(1..=100_000).contains(&n.max_queued_per_user) {
            return Err("node.max_queued_per_user: expected 1..=100000".into());
        }
        if !(1..=86_400).contains(&n.stop_grace_s) {
            return Err("node.stop_grace_s: expected 1..=86400 seconds".into());
        }
        if n.podman_args.len() > 64 || n.podman_args.iter().any(|a| a.len() > 256 || a.contains('\0')) {
            return Err("node.podman_args: expected at most 64 options of at most 256 bytes".into());
        }
        if !valid_name(&n.slurm_account) || n.slurm_partition.as_deref().is_some_and(|p| !valid_name(p)) {
            return Err(
                "node.slurm_account / node.slurm_partition: expected a Slurm name (a-z, 0-9, '-', '_', '.')".into()
            );
        }
        let mut uids = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if !uids.insert(u.uid) {
                return Err(format!("user[{i}].uid = {}: listed twice", u.uid));
            }
            for p in &u.projects {
                if self.project(p).is_none() {
                    return Err(format!("user[{i}].projects: {p:?} is not a [[project]] of this node"));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.projects.iter().enumerate() {
            if !valid_name(&p.name) {
                return Err(format!("project[{i}].name: expected 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'"));
            }
            if !names.insert(&p.name) {
                return Err(format!("project[{i}].name = {:?}: listed twice", p.name));
            }
            // (as the socket's: found by a tester, i64::MIN overflowed the scheduler's order)
            if !(-1000..=1000).contains(&p.priority) {
                return Err(format!("project[{i}].priority = {}: expected -1000..=1000", p.priority));
            }
            for (class, q) in &p.quota {
                if !valid_name(class) {
                    return Err(format!("project[{i}].quota: {class:?} is not a device class name"));
                }
                check_quota(q).map_err(|m| format!("project[{i}].quota.{class}.{m}"))?;
            }
        }
        for (i, d) in self.npus.iter().enumerate() {
            if !valid_name(&d.kind) || d.kind == "cpu" || d.kind == "cuda" {
                return Err(format!("npu[{i}].kind: expected a name other than cpu and cuda (a-z, 0-9, '-', '_')"));
            }
            if self.npus[..i].iter().any(|o| o.kind == d.kind) {
                return Err(format!("npu[{i}].kind = {:?}: listed twice (one [[npu]] per kind)", d.kind));
            }
            if d.count == 0 || d.count > 1024 {
                return Err(format!("npu[{i}].count = {}: expected 1..=1024", d.count));
            }
            if !(d.memory_gib >= 0.0 && d.memory_gib < 1e6) {
                return Err(format!("npu[{i}].memory_gib: expected a size in GiB"));
            }
        }
        Ok(())
    }

    /// A sandboxed job does not see the socket's directory (it is hidden from it), so the node's state
    /// and home cannot be inside it: every job failed with "No such file or directory". The error, for
    /// a daemon whose jobs run in the sandbox.
    pub fn socket_dir_holds_job_paths(&self) -> Option<String> {
        let dir = self.node.socket.parent().filter(|d| !d.as_os_str().is_empty())?;
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let inside = |p: &Path| std::path::absolute(p).is_ok_and(|p| p.starts_with(&dir));
        let (key, _) = [("node.state_dir", self.node.state_dir.clone()), ("node.home", self.home())]
            .into_iter()
            .find(|(_, p)| inside(p))?;
        Some(format!(
            "config key node.socket: its directory {} holds {key}, which jobs must reach while the socket's \
             directory is hidden from them: give the socket a directory of its own",
            dir.display()
        ))
    }

    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }

    pub fn user(&self, uid: u32) -> Option<&User> {
        self.users.iter().find(|u| u.uid == uid)
    }

    /// `$MEDTRAIN_HOME` of the jobs: the config's `node.home`, else the daemon's own.
    pub fn home(&self) -> PathBuf {
        self.node.home.clone().unwrap_or_else(crate::privacy::permit::node_home)
    }
}

/// A quota's fields in range; the error names the field.
pub fn check_quota(q: &Quota) -> Result<(), String> {
    if q.devices > MAX_SLOTS {
        return Err(format!("devices = {}: expected 0..={MAX_SLOTS}", q.devices));
    }
    if let Some(h) = q.device_hours.filter(|h| !(*h >= 0.0 && *h <= 1e9)) {
        return Err(format!("device_hours = {h}: expected 0..=1e9"));
    }
    Ok(())
}

/// Names of projects and device classes: what can go into a path, a Slurm QOS and a log line.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
