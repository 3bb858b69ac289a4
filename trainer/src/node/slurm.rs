//! Slurm mode: the node's jobs and quotas go to Slurm instead of child processes.
//!
//! - Each project is a QOS `medtrain_<project>` carrying its quota: `GrpTRES` (concurrent devices: GPUs
//!   as `gres/gpu`, CPU slots as `cpu`), `GrpTRESMins` with the `NoDecay` flag (device-minutes per month,
//!   a hard budget; the daemon resets the QOS's usage when the month turns) and `Priority`.
//! - Borrowing: a job that waits only because its project's QOS is full (`QOSGrp*` pending reasons) is
//!   moved to the QOS `medtrain_borrow`, which has no group limits beyond the devices no reserved quota
//!   keeps, the lowest priority, and is preempted by every project QOS (`PreemptMode=REQUEUE`, a grace
//!   time in which the run writes its checkpoint). A requeued job goes back to its project's QOS.
//! - A job is `sbatch --requeue` of `medtrain node shim JOBDIR --slurm` with GRES for GPUs; the shim
//!   resumes the run from its checkpoint on every restart. States are read back with `squeue` and
//!   `sacct` and mapped into the queue.

use super::config::Quota;
use super::NodeError;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

pub const BORROW_QOS: &str = "medtrain_borrow";
/// Seconds a preempted job has to write its checkpoint before Slurm ends it.
pub const GRACE_SECONDS: u32 = 60;
/// The signal Slurm sends the shim when it preempts the job (`--signal=B:USR2`, with the controller's
/// `preempt_send_user_signal`): the shim asks the run to checkpoint and requeues the job itself. A job
/// that only ends after SIGTERM would be recorded as ended, not requeued.
pub const PREEMPT_SIGNAL: &str = "USR2";

pub fn qos(project: &str) -> String {
    format!("medtrain_{project}")
}

/// Runs a Slurm command; its stdout, or an error naming the command and its stderr's first line.
fn run(prog: &str, args: &[&str]) -> Result<String, NodeError> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    use std::os::unix::process::CommandExt;
    // SAFETY: only a system call between fork and exec (the daemon's blocked signals unblocked)
    unsafe { cmd.pre_exec(super::daemon::unblock_signals) };
    let o = cmd
        .output()
        .map_err(|e| NodeError::Invalid(format!("slurm: cannot run {prog}: {e} (is Slurm's client installed?)")))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let first = err.lines().next().unwrap_or("").chars().take(300).collect::<String>();
        return Err(NodeError::Invalid(format!("slurm: {prog} {}: {first}", args.first().unwrap_or(&""))));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The TRES string of `devices` devices of `class` (`gres/gpu=2`, `cpu=4`); `None` for classes Slurm
/// does not know (NPUs are declared to Slurm as GRES of their kind).
pub fn tres(class: &str, devices: u64) -> String {
    match class {
        "cpu" => format!("cpu={devices}"),
        "cuda" => format!("gres/gpu={devices}"),
        npu => format!("gres/{npu}={devices}"),
    }
}

/// Creates or updates the QOS of every project and the borrow QOS from the store's quotas.
pub fn sync_qos(
    quotas: &[(String, String, Quota)],
    priorities: &HashMap<String, i64>,
    totals: &HashMap<String, u64>,
    projects: &[String],
    account: &str,
) -> Result<(), NodeError> {
    let existing: Vec<String> =
        run("sacctmgr", &["-n", "-P", "show", "qos", "format=Name"])?.lines().map(|l| l.trim().to_string()).collect();
    let ensure = |name: &str| -> Result<(), NodeError> {
        if !existing.iter().any(|e| e == name) {
            run("sacctmgr", &["-i", "add", "qos", name])?;
        }
        Ok(())
    };
    // the borrow QOS: lowest priority; its group limit is what no reserved quota keeps
    ensure(BORROW_QOS)?;
    let mut lendable = Vec::new();
    for (class, total) in totals {
        let kept: u64 =
            quotas.iter().filter(|(_, c, q)| c == class && q.reserved).map(|(_, _, q)| q.devices as u64).sum();
        lendable.push(tres(class, total.saturating_sub(kept)));
    }
    let grp = format!("GrpTRES={}", lendable.join(","));
    run(
        "sacctmgr",
        &[
            "-i",
            "modify",
            "qos",
            "where",
            &format!("name={BORROW_QOS}"),
            "set",
            &grp,
            "Priority=0",
            "PreemptMode=requeue",
            &format!("GraceTime={GRACE_SECONDS}"),
        ],
    )?;
    for p in projects {
        let name = qos(p);
        ensure(&name)?;
        let mine: Vec<&(String, String, Quota)> = quotas.iter().filter(|(qp, _, _)| qp == p).collect();
        let grp_tres: Vec<String> = mine.iter().map(|(_, c, q)| tres(c, q.devices as u64)).collect();
        let grp_mins: Vec<String> = mine
            .iter()
            .map(|(_, c, q)| match q.device_hours {
                Some(h) => tres(c, (h * 60.0).round() as u64),
                // -1 clears a limit in sacctmgr
                None => format!("{}=-1", tres(c, 0).split('=').next().unwrap_or("cpu")),
            })
            .collect();
        let prio = priorities.get(p).copied().unwrap_or(0).clamp(0, 1_000_000) + 1;
        let mut set = vec![
            format!("Priority={prio}"),
            format!("Preempt={BORROW_QOS}"),
            "Flags=NoDecay".to_string(),
            format!("GraceTime={GRACE_SECONDS}"),
        ];
        if !grp_tres.is_empty() {
            set.push(format!("GrpTRES={}", grp_tres.join(",")));
            set.push(format!("GrpTRESMins={}", grp_mins.join(",")));
        }
        let mut args: Vec<&str> = vec!["-i", "modify", "qos", "where"];
        let w = format!("name={name}");
        args.push(&w);
        args.push("set");
        args.extend(set.iter().map(String::as_str));
        run("sacctmgr", &args)?;
    }
    // the node's account may use every QOS (its users' associations follow)
    let all: Vec<String> = projects.iter().map(|p| qos(p)).chain([BORROW_QOS.to_string()]).collect();
    run(
        "sacctmgr",
        &["-i", "modify", "account", "where", &format!("name={account}"), "set", &format!("QOS+={}", all.join(","))],
    )?;
    Ok(())
}

/// Resets the device-minutes used by every project QOS (the month turned).
pub fn reset_usage(projects: &[String]) -> Result<(), NodeError> {
    for p in projects {
        run("sacctmgr", &["-i", "modify", "qos", "where", &format!("name={}", qos(p)), "set", "RawUsage=0"])?;
    }
    Ok(())
}

pub struct Submit<'a> {
    pub job_dir: &'a Path,
    pub work: &'a Path,
    pub name: String,
    pub qos: String,
    pub class: &'a str,
    pub count: u32,
    pub partition: Option<&'a str>,
    pub account: &'a str,
    pub exe: &'a Path,
}

/// `sbatch` of the job's shim; the Slurm job id.
pub fn submit(s: &Submit) -> Result<String, NodeError> {
    let script = s.job_dir.join("job.sh");
    let text = format!(
        "#!/bin/sh\n# medtrain node job: the shim starts the run (resumed after a requeue) in the sandbox\nexec {} node shim {} --slurm\n",
        shell_quote(&s.exe.display().to_string()),
        shell_quote(&s.job_dir.display().to_string())
    );
    crate::staging::write_atomic(&script, text.as_bytes()).map_err(|e| NodeError::io(&script, e))?;
    let out = s.job_dir.join("slurm.out");
    let mut args = vec![
        "--parsable".to_string(),
        "--requeue".into(),
        format!("--job-name={}", s.name),
        format!("--qos={}", s.qos),
        format!("--output={}", out.display()),
        "--open-mode=append".into(),
        format!("--chdir={}", s.work.display()),
        format!("--account={}", s.account),
        format!("--signal=B:{PREEMPT_SIGNAL}@{GRACE_SECONDS}"),
    ];
    match s.class {
        "cpu" => args.push(format!("--cpus-per-task={}", s.count)),
        "cuda" => args.push(format!("--gres=gpu:{}", s.count)),
        npu => args.push(format!("--gres={npu}:{}", s.count)),
    }
    if let Some(p) = s.partition {
        args.push(format!("--partition={p}"));
    }
    args.push(script.display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = run("sbatch", &a)?;
    let id = id.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NodeError::Invalid("slurm: sbatch gave no job id".into()));
    }
    Ok(id)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A Slurm job as the queue needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    pub state: String,
    pub reason: String,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub qos: String,
}

/// The state of each of `ids`: `squeue` for the jobs Slurm still holds, `sacct` for the ended ones.
pub fn poll(ids: &[String]) -> Result<HashMap<String, Seen>, NodeError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let list = ids.join(",");
    let q = run("squeue", &["-h", "-j", &list, "-o", "%i|%T|%r|%q"]).unwrap_or_default();
    for line in q.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() == 4 {
            out.insert(
                f[0].trim().to_string(),
                Seen {
                    state: f[1].to_string(),
                    reason: f[2].to_string(),
                    restarts: 0,
                    exit_code: None,
                    qos: f[3].to_string(),
                },
            );
        }
    }
    // restart counts, for preemptions
    let held: Vec<String> = ids.iter().filter(|i| out.contains_key(*i)).cloned().collect();
    for id in &held {
        if let Ok(t) = run("scontrol", &["show", "job", id]) {
            if let Some(r) = t.split_whitespace().find_map(|w| w.strip_prefix("Restarts=")) {
                if let Some(s) = out.get_mut(id) {
                    s.restarts = r.parse().unwrap_or(0);
                }
            }
        }
    }
    let missing: Vec<&str> = ids.iter().filter(|i| !out.contains_key(*i)).map(String::as_str).collect();
    if !missing.is_empty() {
        let a = run("sacct", &["-n", "-P", "-X", "-j", &missing.join(","), "-o", "JobID,State,ExitCode,QOS"])?;
        for line in a.lines() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() == 4 {
                let state = f[1].split_whitespace().next().unwrap_or("").to_string();
                let code = f[2].split(':').next().and_then(|c| c.parse().ok());
                out.insert(
                    f[0].to_string(),
                    Seen { state, reason: String::new(), restarts: 0, exit_code: code, qos: f[3].to_string() },
                );
            }
        }
    }
    Ok(out)
}

pub fn cancel(id: &str, signal_only: bool) -> Result<(), NodeError> {
    if signal_only {
        run("scancel", &["--signal=TERM", "--full", id])?;
    } else {
        run("scancel", &[id])?;
    }
    Ok(())
}

pub fn set_qos(id: &str, qos: &str) -> Result<(), NodeError> {
    run("scontrol", &["update", &format!("JobId={id}"), &format!("QOS={qos}")])?;
    Ok(())
}

/// The pending reasons that mean "the project's QOS is full" (borrowing may help), as opposed to
/// "its budget is used up" (it may not).
pub fn waits_for_quota(reason: &str) -> bool {
    reason.starts_with("QOSGrp") && !reason.contains("Minutes") && !reason.contains("RunMin")
}

pub fn waits_for_budget(reason: &str) -> bool {
    reason.starts_with("QOSGrp") && reason.contains("Minutes")
}

/// Devices per class over the cluster's nodes (`sinfo`): CPUs, and GRES (`gpu` is the `cuda` class,
/// any other GRES name a class of its own).
pub fn cluster_totals() -> Result<HashMap<String, u64>, NodeError> {
    let text = run("sinfo", &["-h", "-N", "-o", "%N|%c|%G"])?;
    parse_totals(&text)
}

fn parse_totals(text: &str) -> Result<HashMap<String, u64>, NodeError> {
    let mut seen = std::collections::HashSet::new();
    let mut out: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() != 3 || !seen.insert(f[0].to_string()) {
            continue;
        }
        *out.entry("cpu".into()).or_default() += f[1].trim().parse::<u64>().unwrap_or(0);
        // gpu:4, gpu:a100:4(S:0-1), npu:8 — the socket list in parentheses is not a count
        let mut gres = String::new();
        let mut depth = 0;
        for c in f[2].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => gres.push(c),
                _ => {}
            }
        }
        for item in gres.split(',').filter(|g| !g.is_empty() && *g != "null") {
            let parts: Vec<&str> = item.split(':').collect();
            let (Some(name), Some(count)) = (parts.first(), parts.last().and_then(|c| c.parse::<u64>().ok())) else {
                continue;
            };
            let class = if *name == "gpu" { "cuda" } else { name };
            *out.entry(class.to_string()).or_default() += count;
        }
    }
    if out.get("cpu").copied().unwrap_or(0) == 0 {
        return Err(NodeError::Invalid("slurm: sinfo lists no node with CPUs".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_totals_count_cpus_and_gres_once_per_node() {
        let t = parse_totals("n1|16|gpu:4(S:0-1)\nn1|16|gpu:4(S:0-1)\nn2|32|gpu:a100:2,npu:8\nn3|8|(null)\n").unwrap();
        assert_eq!(t["cpu"], 56);
        assert_eq!(t["cuda"], 6);
        assert_eq!(t["npu"], 8);
    }

    #[test]
    fn pending_reasons_tell_a_full_quota_from_a_used_up_budget() {
        assert!(waits_for_quota("QOSGrpGRES") && waits_for_quota("QOSGrpCpuLimit"));
        assert!(!waits_for_quota("QOSGrpGRESMinutes") && waits_for_budget("QOSGrpGRESMinutes"));
        assert!(!waits_for_quota("Resources") && !waits_for_quota("Priority"));
    }
}
