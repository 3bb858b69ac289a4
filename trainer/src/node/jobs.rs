//! A job's life on this machine: what its shim runs (the spec), starting it under the shim with the
//! job's lock, asking it to stop, and reading how it ended.

use super::daemon::{private_dir, Daemon};
use super::slurm;
use super::store::{Job, State, DAEMON};
use super::NodeError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What the shim needs to start a job (`JOBDIR/spec.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ShimSpec {
    pub attempt: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub sandbox: bool,
    pub writable: Vec<PathBuf>,
    pub hidden: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub uid: Option<(u32, u32)>,
    /// a train job: where its run directories go (`run-1`, `run-2`, ...). The shim resumes the newest
    /// one that has a checkpoint (adding `--resume`), else starts a new one, and puts it in place of
    /// [`RUN_DIR`] in `argv`.
    #[serde(default)]
    pub train_runs: Option<PathBuf>,
    /// a train job of a node running as root: its submitter (uid, gid, groups) and its config, whose
    /// named files the shim checks readable by them again before it starts the job (they may have been
    /// swapped for links since the submit)
    #[serde(default)]
    pub readable_as: Option<(u32, u32, Vec<u32>, PathBuf)>,
    /// seconds the job has to end after SIGTERM before its process group (and its container) is killed
    #[serde(default = "super::config::default_stop_grace")]
    pub stop_grace_s: u64,
}

/// The argument the shim replaces with the run directory it chose.
pub const RUN_DIR: &str = "@RUN_DIR@";

/// How a job's process ended (`JOBDIR/exit-ATTEMPT.json`, written by the shim).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// the job could not be started (the sandbox refused, the program is missing)
    pub error: Option<String>,
}

/// Exit status of `medtrain train` stopped by a signal after writing its checkpoint.
pub const EXIT_CHECKPOINTED: i32 = 3;

impl Daemon {
    pub(super) fn job_dir(&self, id: i64) -> PathBuf {
        self.state_dir.join("jobs").join(id.to_string())
    }

    /// Whether the shim of job `id` is alive: it holds the job's lock for as long as it lives.
    pub(super) fn alive(&self, id: i64) -> bool {
        let Ok(f) = std::fs::File::open(self.job_dir(id).join("lock")) else { return false };
        // SAFETY: flock on an open descriptor
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
        !free
    }

    pub(super) fn signal(&mut self, id: i64, sig: libc::c_int) {
        if let Some(sid) = self.store.job(id).ok().flatten().and_then(|j| j.slurm_id) {
            // Slurm signals the job's processes wherever they run
            let r = if sig == libc::SIGTERM { slurm::cancel(&sid, false) } else { Ok(()) };
            if let Err(e) = r {
                eprintln!("medtrain node: job {id}: {e}");
            }
            return;
        }
        if !self.alive(id) {
            return;
        }
        let pid = match self.children.get(&id) {
            Some(c) => Some(c.id() as i32),
            None => std::fs::read_to_string(self.job_dir(id).join("shim.pid")).ok().and_then(|s| s.trim().parse().ok()),
        };
        if let Some(pid) = pid.filter(|&p| p > 1) {
            // SAFETY: a plain kill; the lock check above says the pid is still the shim's
            unsafe { libc::kill(pid, sig) };
        }
    }

    pub(super) fn stop(&mut self, id: i64, kind: &str, reason: &str) -> Result<(), NodeError> {
        self.store.update(
            DAEMON,
            id,
            kind,
            "state = 'stopping', stop = ?2, reason = ?3",
            &[&kind, &reason],
            serde_json::json!({"reason": reason}),
        )?;
        self.signal(id, libc::SIGTERM);
        Ok(())
    }

    /// A job whose shim has ended: its exit record decides its new state, and the record's time its end
    /// (the log's last write for a job lost without one).
    pub(super) fn ended(&mut self, j: &Job) -> Result<(), NodeError> {
        let dir = self.job_dir(j.id);
        let exit = dir.join(format!("exit-{}.json", j.attempt));
        let rec: Option<ExitRecord> = std::fs::read(&exit).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let written = |p: &std::path::Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(f64::INFINITY, |d| d.as_secs_f64())
        };
        let ended_at = if rec.is_some() { written(&exit) } else { written(&dir.join("log")) };
        let epsilon =
            if j.kind == "train" { last_epsilon(&dir.join("log")).or_else(|| self.ledger_epsilon(j)) } else { None };
        let Some(rec) = rec else {
            // a job cancelled so soon after its start that its shim ended before writing the record (the
            // signal came first): cancelled, not requeued as lost (the cancel was lost under load)
            if j.stop.as_deref() == Some("cancel") {
                let st = State::Cancelled;
                self.store.finish_at(j.id, st, Some("cancelled"), None, epsilon, false, "cancelled", ended_at)?;
                if j.kind == "train" {
                    self.settle_abandoned(j, true);
                }
                return Ok(());
            }
            let reason = "lost: its process ended without an exit record (node restart?); requeued";
            self.store.finish_at(j.id, State::Queued, Some(reason), None, epsilon, false, "lost", ended_at)?;
            // (its run without a checkpoint is never resumed: the next attempt starts a new one)
            if j.kind == "train" {
                self.settle_abandoned(j, false);
            }
            return Ok(());
        };
        let stop = j.stop.as_deref();
        let (state, reason, preempted) = match (rec.code, &rec.error, stop) {
            (_, Some(err), _) => (State::Failed, format!("could not start: {err}"), false),
            (_, _, Some("cancel")) => (State::Cancelled, "cancelled".to_string(), false),
            (Some(0), _, _) => (State::Succeeded, "finished".to_string(), false),
            // asked to stop by the node: back to the queue, to resume from its checkpoint if it wrote
            // one (a train job stopped before its first checkpoint starts again from the beginning)
            (_, _, Some(kind)) => {
                let how = if j.kind == "train" { "to resume" } else { "to start again" };
                let why = j.reason.clone().unwrap_or_else(|| format!("stopped ({kind})"));
                (State::Queued, format!("{why}; requeued {how}"), kind == "preempt")
            }
            (Some(EXIT_CHECKPOINTED), _, None) if j.kind == "train" => {
                (State::Queued, "stopped by a signal from outside the node; requeued to resume".to_string(), false)
            }
            (Some(c), _, _) => (State::Failed, format!("exited with status {c}"), false),
            (None, _, _) => (State::Failed, format!("killed by signal {}", rec.signal.unwrap_or(0)), false),
        };
        let action = match state {
            State::Queued if preempted => "preempted",
            State::Queued => "requeued",
            s => s.as_str(),
        };
        self.reasons.remove(&j.id);
        self.store.finish_at(j.id, state, Some(&reason), rec.code, epsilon, preempted, action, ended_at)?;
        if j.kind == "train" && matches!(state, State::Cancelled | State::Failed) {
            self.settle_abandoned(j, true);
        }
        Ok(())
    }

    /// Settles the ledger reservations a train job leaves that no attempt will resume: every run of a
    /// job that ended for good (cancelled, failed, refused; `all`), or, of a job requeued, its runs
    /// without a checkpoint (the next attempt starts a new run; one with a checkpoint, or one recorded
    /// and left in `checkpoint.partial`, is resumed). As `medtrain permit settle RUN` does, run by this
    /// daemon's medtrain with the node's ledger, in the background ([`Daemon::poll_settling`]: a busy
    /// ledger does not hold the daemon), each audited as `run_settled` (found by a tester: such
    /// reservations stayed open for ever, the project charged twice for a lost job, and nothing told
    /// the operator). A run settled already, or that reserved nothing, is left as it is.
    pub(super) fn settle_abandoned(&mut self, j: &Job, all: bool) {
        let base = self.state_dir.join("runs").join(j.id.to_string());
        let Ok(entries) = std::fs::read_dir(&base) else { return };
        // (a checkpoint, or one left in `checkpoint.partial`, which the shim rolls forward where recorded)
        let resumable = |p: &Path| super::shim::has_checkpoint(p) || p.join("checkpoint.partial/state.json").exists();
        let mut runs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run-")) && p.is_dir())
            .filter(|p| all || !resumable(p))
            .collect();
        runs.sort();
        for run in runs {
            let child = std::process::Command::new(&self.exe)
                .args(["permit", "settle"])
                .arg(&run)
                .env("MEDTRAIN_HOME", self.cfg.home())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn();
            let name = run.file_name().unwrap_or_default().to_string_lossy().into_owned();
            match child {
                Ok(child) => self.settling.push(super::daemon::Settling {
                    job: j.id,
                    project: j.project.clone(),
                    run: name,
                    child,
                    started: std::time::Instant::now(),
                }),
                Err(e) => eprintln!(
                    "medtrain node: job {}: {name} could not be settled ({e}); settle it with medtrain permit settle",
                    j.id
                ),
            }
        }
    }

    /// What the shim runs for job `j` on `units` (its `spec.json`); makes the job's directories.
    pub(super) fn spec(&self, j: &Job, units: &[String], attempt: u32) -> Result<ShimSpec, NodeError> {
        let dir = self.job_dir(j.id);
        let work = self.state_dir.join("runs").join(j.id.to_string());
        private_dir(&dir)?;
        private_dir(&work.join("tmp"))?;
        let class = self.inv.class(&j.class).cloned();
        let visible = units.join(",");
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), work.display().to_string()),
            ("TMPDIR".into(), work.join("tmp").display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("MEDTRAIN_JOB".into(), j.id.to_string()),
            ("MEDTRAIN_PROJECT".into(), j.project.clone()),
        ];
        if let Ok(v) = std::env::var("LD_LIBRARY_PATH") {
            env.push(("LD_LIBRARY_PATH".into(), v));
        }
        if j.class != "cuda" {
            env.push(("CUDA_VISIBLE_DEVICES".into(), String::new()));
        }
        if let Some(c) = &class {
            env.push((c.visible_env.clone(), visible.clone()));
        }
        let home = self.cfg.home();
        let mut writable = vec![work.clone()];
        let mut hidden = vec![self.state_dir.clone()];
        if let Some(p) = self.cfg.node.socket.parent() {
            hidden.push(p.to_path_buf());
        }
        let argv: Vec<String> = if j.kind == "train" {
            env.push(("MEDTRAIN_HOME".into(), home.display().to_string()));
            // the config trains only as it was submitted (a file swapped for a link since is refused)
            if let Some(digest) = j.command.first().and_then(|c| c.strip_prefix("sha256:")) {
                env.push((crate::train::config::SUBMITTED_SHA256.into(), digest.into()));
            }
            // a train job is medtrain itself, and it books its privacy spend in the node's ledger
            std::fs::create_dir_all(&home).map_err(|e| NodeError::io(&home, e))?;
            writable.push(home.clone());
            let mut a = vec![
                self.exe.display().to_string(),
                "train".into(),
                j.config.clone().unwrap_or_default(),
                "--run-dir".into(),
                RUN_DIR.into(),
                "--json".into(),
            ];
            if j.class == "cpu" {
                a.extend(["--threads".into(), j.count.to_string()]);
            } else if j.class == "cuda" {
                a.extend(["--backend".into(), "cuda".into()]);
            }
            a
        } else {
            hidden.push(home.clone());
            let mut a: Vec<String> = vec!["podman".into()];
            // global options (--runtime, --root) go before `run`, the rest after it
            let (global, run): (Vec<&String>, Vec<&String>) = split_podman_args(&self.cfg.node.podman_args);
            a.extend(global.into_iter().cloned());
            a.push("run".into());
            a.extend(run.into_iter().cloned());
            a.extend(
                [
                    "--rm",
                    "--network",
                    "none",
                    "--read-only",
                    "--cap-drop",
                    "all",
                    "--security-opt",
                    "no-new-privileges",
                ]
                .map(String::from),
            );
            a.extend(["--name".into(), format!("medtrain-job-{}-{attempt}", j.id)]);
            a.extend(["-v".into(), format!("{}:/work:rw", work.display()), "-w".into(), "/work".into()]);
            if let Some(c) = &class {
                a.extend(["--env".into(), format!("{}={visible}", c.visible_env)]);
            }
            if j.class == "cuda" {
                for u in units {
                    a.extend(["--device".into(), format!("nvidia.com/gpu={u}")]);
                }
            }
            a.push(j.image.clone().unwrap_or_default());
            a.extend(j.command.iter().cloned());
            a
        };
        let spec = ShimSpec {
            attempt,
            argv,
            env,
            // podman builds its own namespaces; it runs outside ours, with the same rules given to it
            sandbox: self.sandbox && j.kind == "train",
            writable,
            hidden,
            cwd: work.clone(),
            uid: None,
            train_runs: (j.kind == "train").then(|| work.clone()),
            // SAFETY: geteuid has no preconditions
            readable_as: (j.kind == "train" && unsafe { libc::geteuid() } == 0)
                .then(|| j.config.as_ref().map(PathBuf::from))
                .flatten()
                .map(|config| {
                    let (gid, groups) = super::api::user_groups(j.uid);
                    (j.uid, gid, groups, config)
                }),
            stop_grace_s: self.cfg.node.stop_grace_s,
        };
        Ok(spec)
    }

    pub(super) fn start(&mut self, j: &Job, units: &[String], borrowed: bool) -> Result<(), NodeError> {
        // its submitter is still one of the project's (found by a tester: a researcher removed from the
        // node's config while their job waited had it run)
        let allowed = self
            .cfg
            .user(j.uid)
            .is_some_and(|u| u.role == super::config::Role::Operator || u.projects.iter().any(|p| *p == j.project));
        if !allowed {
            let reason = format!(
                "not started: its submitter (uid {}) is no longer a user of project {} in the node's config",
                j.uid, j.project
            );
            self.store.finish(j.id, State::Failed, Some(&reason), None, None, false, "refused")?;
            if j.kind == "train" {
                self.settle_abandoned(j, true);
            }
            return Ok(());
        }
        let dir = self.job_dir(j.id);
        let attempt = j.attempt + 1;
        let spec = self.spec(j, units, attempt)?;
        let run_dir = spec.train_runs.clone().unwrap_or_else(|| spec.cwd.clone());
        let spec_path = dir.join("spec.json");
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| NodeError::Invalid(e.to_string()))?;
        crate::staging::write_atomic(&spec_path, &text).map_err(|e| NodeError::io(&spec_path, e))?;
        // committed before the shim starts: a daemon that dies in between finds no shim and requeues
        self.store.start(j, units, borrowed, &run_dir.display().to_string(), attempt, None)?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| NodeError::io(&lock_path, e))?;
        // SAFETY: flock on an open descriptor
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(NodeError::Invalid(format!(
                "job {}: its lock is held by a process the node did not start",
                j.id
            )));
        }
        let fd = lock.as_raw_fd();
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(["node", "shim"]).arg(&dir).args(["--lock-fd", "3"]);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        use std::os::unix::process::CommandExt;
        // SAFETY: only system calls between fork and exec
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // the shim takes SIGTERM and SIGUSR2 itself, and passes them on to its job
                super::daemon::unblock_signals()
            })
        };
        match cmd.spawn() {
            Ok(child) => {
                self.children.insert(j.id, child);
            }
            Err(err) => {
                let reason = format!("could not start its shim: {err}");
                self.store.finish(j.id, State::Failed, Some(&reason), None, None, false, "failed")?;
            }
        }
        drop(lock);
        Ok(())
    }
}

/// `node.podman_args` split into podman's global options (those that must come before `run`) and
/// `run`'s own.
fn split_podman_args(args: &[String]) -> (Vec<&String>, Vec<&String>) {
    const GLOBAL: [&str; 6] =
        ["--runtime", "--root", "--runroot", "--storage-driver", "--cgroup-manager", "--log-level"];
    let (mut global, mut run) = (Vec::new(), Vec::new());
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let name = a.split('=').next().unwrap_or("");
        let target = if GLOBAL.contains(&name) { &mut global } else { &mut run };
        target.push(a);
        // an option's value in the next argument goes with it
        if !a.contains('=') && a.starts_with("--") {
            if let Some(v) = it.next_if(|v| !v.starts_with("--")) {
                target.push(v);
            }
        }
    }
    (global, run)
}

impl Daemon {
    /// The epsilon the node's ledger holds for the runs of a train job that did not say it (killed by
    /// a signal, it wrote no summary): its reservation until it is settled (`usage report` counted such
    /// a job as nothing).
    fn ledger_epsilon(&self, j: &Job) -> Option<f64> {
        use crate::privacy::{accountant::AccountantKind, ledger::Ledger};
        let runs = j.run_dir.as_deref().map(std::path::PathBuf::from)?;
        let runs = std::fs::canonicalize(&runs).unwrap_or(runs);
        let path = self.cfg.home().join("ledger.sqlite");
        if !path.is_file() {
            return None;
        }
        Ledger::open(&path, AccountantKind::Pld).ok()?.epsilon_under(&runs.display().to_string()).ok().flatten()
    }
}

/// The epsilon of the last JSON summary line `medtrain train --json` wrote to the log.
pub(super) fn last_epsilon(log: &Path) -> Option<f64> {
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(256 << 10))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .lines()
        .rev()
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("epsilon")?.as_f64())
}
