//! `medtrain node shim JOBDIR --lock-fd N`: the process between the daemon and a job. It holds the
//! job's lock (inherited from the daemon, so the job is never seen as ended before it has begun) for as
//! long as it lives, starts the job from `JOBDIR/spec.json` in the sandbox, passes SIGTERM on to the
//! job's process group, and writes `JOBDIR/exit-ATTEMPT.json` when the job ends. It runs in its own
//! session, so a daemon killed with kill -9 leaves it and the job running.

use super::jobs::{ExitRecord, ShimSpec, RUN_DIR};
use super::sandbox;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);
/// Slurm preempts the job (SIGUSR2): stop with a checkpoint, then requeue it.
static PREEMPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_preempt(_: libc::c_int) {
    PREEMPTED.store(true, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

/// `lock_fd`: the job's lock, inherited from the daemon (local mode); `None`: under Slurm, which
/// tracks the job itself. Under Slurm the attempt is Slurm's restart count + 1, Slurm's device
/// variables pass through to the job, and the shim exits with the job's status.
pub fn run(dir: &Path, lock_fd: Option<i32>) -> std::process::ExitCode {
    // from the start: a SIGTERM before the job is spawned (a cancel right after the start) is kept, not
    // the end of a shim that leaves no exit record (the daemon took that for a lost job and requeued it)
    // SAFETY: the handlers only store to an atomic
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGUSR2, on_preempt as *const () as libc::sighandler_t);
    }
    if let Some(fd) = lock_fd {
        // the lock stays with the shim: the job must not inherit it
        // SAFETY: fcntl on a descriptor number; a bad one fails harmlessly
        let held = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
        if !held {
            eprintln!("medtrain node shim: no lock descriptor {fd}: the shim is started by the daemon only");
            return std::process::ExitCode::from(2);
        }
    }
    let _ = std::fs::write(dir.join("shim.pid"), std::process::id().to_string());
    let spec: Option<ShimSpec> =
        std::fs::read(dir.join("spec.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(mut spec) = spec else {
        eprintln!("medtrain node shim: {}: no readable spec.json", dir.display());
        return std::process::ExitCode::from(2);
    };
    let slurm = lock_fd.is_none();
    if slurm {
        let restarts: u32 = std::env::var("SLURM_RESTART_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        spec.attempt = restarts + 1;
        for (k, v) in std::env::vars() {
            if SLURM_PASS.contains(&k.as_str()) || k.starts_with("SLURM_JOB_") {
                spec.env.retain(|(e, _)| *e != k);
                spec.env.push((k, v));
            }
        }
    }
    let record = run_job(dir, &spec);
    if slurm && PREEMPTED.load(Ordering::SeqCst) && record.code != Some(0) {
        // back into Slurm's queue; Slurm then ends this attempt and starts the job again later
        if let Ok(id) = std::env::var("SLURM_JOB_ID") {
            let _ = std::process::Command::new("scontrol").args(["requeue", &id]).status();
            std::thread::sleep(Duration::from_secs(super::slurm::GRACE_SECONDS as u64));
        }
    }
    let path = dir.join(format!("exit-{}.json", spec.attempt));
    let text = serde_json::to_vec(&record).unwrap_or_default();
    if crate::staging::write_atomic(&path, &text).is_err() {
        return std::process::ExitCode::from(1);
    }
    if slurm {
        let code = record.code.unwrap_or_else(|| 128 + record.signal.unwrap_or(1)).clamp(0, 255);
        return std::process::ExitCode::from(if record.error.is_some() { 1 } else { code as u8 });
    }
    std::process::ExitCode::SUCCESS
}

/// Slurm's variables that tell a job its devices.
const SLURM_PASS: [&str; 4] = ["CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_CPUS_PER_TASK", "SLURM_STEP_GPUS"];

fn run_job(dir: &Path, spec: &ShimSpec) -> ExitRecord {
    let fail = |e: String| ExitRecord { code: None, signal: None, error: Some(e) };
    let log = match std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log")) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot open the log: {e}")),
    };
    let mut argv = spec.argv.clone();
    if let Some(base) = &spec.train_runs {
        let (run, resume) = choose_run(base, spec.attempt);
        for a in argv.iter_mut().filter(|a| *a == RUN_DIR) {
            *a = run.display().to_string();
        }
        if resume {
            argv.push("--resume".into());
        }
    }
    // the files the config names, readable by the submitter still (a link swapped in while the job was
    // queued would be read with the node's rights)
    // (asked only where the shim can take the submitter's identity: a shim Slurm runs as another user
    // cannot, and its job runs with that user's rights, not the node's)
    // SAFETY: geteuid has no preconditions
    let root = unsafe { libc::geteuid() } == 0;
    if let Some((uid, gid, groups, config)) = spec.readable_as.as_ref().filter(|_| root) {
        if let Some(why) = super::api::named_paths_refusal(config, *uid, *gid, groups) {
            return fail(why);
        }
    }
    let Some((prog, args)) = argv.split_first() else { return fail("empty command".into()) };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(std::process::Stdio::null());
    match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => {
            cmd.stdout(a).stderr(b);
        }
        _ => return fail("cannot share the log".into()),
    }
    if spec.sandbox {
        let s = sandbox::Spec {
            writable: spec.writable.clone(),
            hidden: spec.hidden.clone(),
            uid: spec.uid,
            cwd: Some(spec.cwd.clone()),
        };
        if let Err(e) = sandbox::apply(&mut cmd, &s) {
            return fail(format!("sandbox: {e}"));
        }
    } else {
        cmd.current_dir(&spec.cwd);
        // SAFETY: only system calls between fork and exec
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
    }
    // the job dies with its shim (a shim killed with kill -9 leaves no job running unseen)
    // SAFETY: only system calls between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        })
    };
    // asked to stop before the job started (a cancel right after the start): not started
    if STOP.load(Ordering::SeqCst) {
        return ExitRecord { code: None, signal: Some(libc::SIGTERM), error: None };
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("{e}")),
    };
    let pid = child.id() as i32;
    let mut sent: Option<std::time::Instant> = None;
    let mut killed = false;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return ExitRecord { code: st.code(), signal: st.signal(), error: None },
            Ok(None) => {}
            Err(e) => return fail(format!("wait: {e}")),
        }
        if STOP.load(Ordering::SeqCst) && sent.is_none() {
            // the job leads its own process group (setsid): the whole group is asked to stop
            // SAFETY: a plain kill
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            sent = Some(std::time::Instant::now());
        }
        // a job that does not end within its grace is killed, its container too (found by a tester: one
        // that ignored SIGTERM held its devices through cancels and preemptions)
        if !killed && sent.is_some_and(|t| t.elapsed() >= Duration::from_secs(spec.stop_grace_s)) {
            kill_container(&spec.argv);
            // SAFETY: a plain kill
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the container a `podman run --name NAME` job runs in (killing the podman client leaves it).
fn kill_container(argv: &[String]) {
    if !argv.first().is_some_and(|p| p == "podman" || p.ends_with("/podman")) {
        return;
    }
    let Some(run) = argv.iter().position(|a| a == "run") else { return };
    let Some(name) = argv.windows(2).find(|w| w[0] == "--name").map(|w| w[1].clone()) else { return };
    let _ = std::process::Command::new(&argv[0])
        .args(&argv[1..run])
        .args(["kill", "--signal", "KILL"])
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Whether a run directory holds a checkpoint to resume from (`checkpoint.old` alone: stopped between
/// the two renames of a checkpoint's swap).
pub(super) fn has_checkpoint(run: &Path) -> bool {
    ["checkpoint/state.json", "checkpoint.old/state.json"].iter().any(|c| run.join(c).exists())
}

/// The run directory of a train job's attempt: the newest `run-K` in `base` with a checkpoint
/// (resumed; one the ledger recorded left in `checkpoint.partial` rolled forward first), else a new
/// `run-ATTEMPT` (a run stopped before its first checkpoint starts afresh in a new directory: the
/// ledger knows the old one's id).
fn choose_run(base: &Path, attempt: u32) -> (std::path::PathBuf, bool) {
    let newest = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let k: u32 = name.strip_prefix("run-")?.split('-').next()?.parse().ok()?;
            let path = e.path();
            // `checkpoint.partial` alone: stopped after the ledger recorded its first checkpoint and
            // before the swap; rolled forward where the ledger holds it as the run's (as `train
            // --resume` does), else the run starts afresh (an unrecorded one is not the run's)
            if !has_checkpoint(&path) && path.join("checkpoint.partial/state.json").exists() {
                let _ = crate::train::run::roll_forward_recorded(&path);
            }
            has_checkpoint(&path).then(|| (k, name, path))
        })
        .max();
    if let Some((_, _, p)) = newest {
        return (p, true);
    }
    let mut p = base.join(format!("run-{attempt}"));
    let mut n = 1;
    while p.exists() {
        n += 1;
        p = base.join(format!("run-{attempt}-{n}"));
    }
    (p, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The newest run with a checkpoint is resumed (one stopped between the renames of a swap too); a
    /// run whose only checkpoint is an unrecorded `checkpoint.partial` is not, and a new directory is
    /// taken beside an existing one of the attempt's name.
    #[test]
    fn a_run_is_resumed_from_its_checkpoint_and_an_unrecorded_partial_is_not_one() {
        let d = tempfile::tempdir().unwrap();
        let ck = |run: &str, dir: &str| {
            let p = d.path().join(run).join(dir);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("state.json"), "{}").unwrap();
        };
        assert_eq!(choose_run(d.path(), 1), (d.path().join("run-1"), false));
        ck("run-1", "checkpoint.partial");
        assert_eq!(choose_run(d.path(), 2), (d.path().join("run-2"), false));
        assert!(d.path().join("run-1/checkpoint.partial/state.json").exists());
        ck("run-2", "checkpoint.old");
        assert_eq!(choose_run(d.path(), 3), (d.path().join("run-2"), true));
        ck("run-3", "checkpoint");
        assert_eq!(choose_run(d.path(), 4), (d.path().join("run-3"), true));
        std::fs::remove_dir_all(d.path().join("run-2")).unwrap();
        std::fs::remove_dir_all(d.path().join("run-3")).unwrap();
        assert_eq!(choose_run(d.path(), 1), (d.path().join("run-1-2"), false));
    }
}
