//! Slurm mode against a real single-machine Slurm (Debian's slurm-wlm: slurmctld, slurmd, slurmdbd
//! with MariaDB, munged), started by the test under a temporary directory (scripts/slurm-cluster.sh).
//! Runs when Slurm is installed; `MEDTRAIN_REQUIRE_SLURM=1` (the README test command) makes a missing
//! Slurm a failure instead of a skip.

mod common;

use common::cli::repo;
use common::node::{summaries, Node};
use std::path::PathBuf;
use std::process::Command;

struct Cluster {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let script = repo().join("scripts/slurm-cluster.sh");
        let installed =
            Command::new("sh").args(["-c", "command -v slurmctld && command -v slurmdbd"]).output().unwrap();
        if !installed.status.success() {
            assert!(std::env::var_os("MEDTRAIN_REQUIRE_SLURM").is_none(), "Slurm is required but not installed");
            eprintln!("skipped: Slurm is not installed (scripts/slurm-cluster.sh install)");
            return None;
        }
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the test cluster's daemons run as root");
            return None;
        }
        // short: the cluster's unix sockets live under it
        let tmp = tempfile::Builder::new().prefix("sl").tempdir_in("/tmp").unwrap();
        let dir = tmp.path().join("c");
        let o = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .env("SLURM_CLUSTER_CPUS", "8")
            .env("SLURM_CLUSTER_QUIET", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "slurm-cluster.sh start: {}", String::from_utf8_lossy(&o.stderr));
        Some(Cluster { dir, _tmp: tmp })
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc/slurm.conf")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/slurm-cluster.sh")).arg("stop").arg(&self.dir).output();
    }
}

#[test]
fn slurm_mode_borrows_through_a_preemptable_qos_and_requeued_runs_resume_their_accounting() {
    let Some(cluster) = Cluster::start() else { return };
    // the daemon and every Slurm command it runs (and the jobs, through sbatch's environment) find the
    // cluster by SLURM_CONF
    // SAFETY: set before any thread of this test starts a process
    unsafe { std::env::set_var("SLURM_CONF", cluster.conf()) };
    let n = Node::start_with("mode = \"slurm\"", "");
    n.ok(None, &["quota", "set", "--project", "alpha", "--class", "cpu", "--devices", "2", "--priority", "10"]);
    n.ok(None, &["quota", "set", "--project", "beta", "--class", "cpu", "--devices", "2", "--priority", "10"]);
    let qos = Command::new("sacctmgr")
        .args(["-n", "-P", "show", "qos", "format=Name,GrpTRES,Preempt,Flags"])
        .output()
        .unwrap();
    let qos = String::from_utf8_lossy(&qos.stdout).into_owned();
    assert!(qos.contains("medtrain_alpha|cpu=2|medtrain_borrow|NoDecay"), "{qos}");
    assert!(qos.contains("medtrain_borrow|"), "{qos}");

    // alpha asks for all 8 CPUs: beyond its QOS, so it borrows through the preemptable QOS
    let long = n.lab_config("long", 1500);
    let a = n.submit(None, &long, "alpha", "cpu:8");
    n.wait("alpha running on borrowed CPUs", 120, |n| {
        let j = n.job(a);
        j["state"] == "running" && j["borrowed"] == true
    });
    let base = PathBuf::from(n.job(a)["run_dir"].as_str().unwrap().to_string());
    n.wait("alpha's first checkpoint", 180, |_| base.join("run-1/checkpoint/state.json").exists());
    // beta's job within its quota makes Slurm preempt alpha's: it checkpoints and is requeued
    let b = n.submit(None, &n.lab_config("short", 20), "beta", "cpu:2");
    n.wait("alpha preempted", 180, |n| n.job(a)["preemptions"] == 1);
    n.wait("beta done and alpha resumed to the end", 600, |n| n.state(b) == "succeeded" && n.state(a) == "succeeded");
    let log = n.log(a);
    let s = summaries(&log);
    assert_eq!(s.len(), 2, "one summary per run of the job: {log}");
    assert_eq!((s[0]["finished"].as_bool(), s[1]["finished"].as_bool()), (Some(false), Some(true)), "{log}");
    assert_eq!(s[0]["run_dir"], s[1]["run_dir"], "the requeued job resumes the same run");
    assert_eq!(s[1]["steps"], 1500);
    let (e0, e1) = (s[0]["epsilon"].as_f64().unwrap(), s[1]["epsilon"].as_f64().unwrap());
    assert!(e0 > 0.0 && e0 < e1 && (e1 - 3.0).abs() < 0.01, "{e0} then {e1}");
    // the Slurm job id is kept, and the trail has the submission, the borrowing and the preemption
    assert!(n.job(a)["slurm_id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()));
    let audit: Vec<serde_json::Value> = serde_json::from_str(&n.ok(None, &["audit", "--json"])).unwrap();
    let acts: Vec<&str> = audit.iter().filter(|r| r["job"] == a).map(|r| r["action"].as_str().unwrap()).collect();
    for want in ["submit", "sbatch", "borrow", "start", "preempted", "succeeded"] {
        assert!(acts.contains(&want), "{want} missing: {acts:?}");
    }
    // a job the cluster cannot hold at all is refused at submit
    let e = n.refused(None, &["queue", "submit", long.to_str().unwrap(), "--project", "alpha", "--devices", "cpu:64"]);
    assert!(e.contains("64 cpu asked, the node has 8"), "{e}");
}
