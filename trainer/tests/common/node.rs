//! A node daemon for the tests: a temporary node config and state, a real `medtrain node run`, and its
//! clients (some under other uids when the test runs as root).

use super::cli::{bin, config, fingerprint};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const ALICE: u32 = 4242; // researcher, project alpha
pub const BOB: u32 = 4343; // researcher, project beta

pub struct Node {
    pub dir: PathBuf,
    pub daemon: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Node {
    /// A node with two CPU slots, projects alpha and beta (one device each), and `extra` appended to
    /// its config.
    pub fn start(extra: &str) -> Node {
        Self::start_with("", extra)
    }

    /// As [`Node::start`], with `node_options` added to the `[node]` table.
    pub fn start_with(node_options: &str, extra: &str) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.join("home");
        let cfg = format!(
            r#"[node]
socket = "sock/node.sock"
state_dir = "state"
home = "home"
cpu_slots = 2
{node_options}

[[user]]
uid = {me}
role = "operator"

[[user]]
uid = {ALICE}
role = "researcher"
projects = ["alpha"]

[[user]]
uid = {BOB}
role = "researcher"
projects = ["beta"]

[[project]]
name = "alpha"
quota.cpu = {{ devices = 1 }}

[[project]]
name = "beta"
quota.cpu = {{ devices = 1 }}
{extra}"#,
            me = unsafe { libc::geteuid() }
        );
        std::fs::write(dir.join("node.toml"), cfg).unwrap();
        // both projects hold a permit for the shared demo export
        for p in ["alpha", "beta"] {
            let o = bin()
                .env("MEDTRAIN_HOME", &home)
                .args(["permit", "issue", "--project", p, "--purpose", "tests", "--dataset", fingerprint()])
                .args(["--expires", "2999-12-31", "--epsilon", "100", "--delta", "1e-5"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let mut n = Node { dir, daemon: None, _tmp: tmp };
        n.run_daemon();
        n
    }

    pub fn run_daemon(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let child = bin()
            .args(["node", "run", "--config"])
            .arg(self.dir.join("node.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let t0 = Instant::now();
        while UnixStream::connect(self.socket()).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "daemon did not start: {}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        // the socket's directory is open to the other test uids
        std::fs::set_permissions(self.dir.join("sock"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock/node.sock")
    }

    /// `medtrain ARGS` as a client, under `uid` (None: the test's own).
    pub fn cli(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut c = bin();
        c.env("MEDTRAIN_SOCKET", self.socket()).args(args);
        if let Some(u) = uid {
            c.uid(u).gid(u);
        }
        c.output().unwrap()
    }

    pub fn ok(&self, uid: Option<u32>, args: &[&str]) -> String {
        let o = self.cli(uid, args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn refused(&self, uid: Option<u32>, args: &[&str]) -> String {
        let o = self.cli(uid, args);
        assert!(!o.status.success(), "{args:?} was accepted: {}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// One raw request line on the socket, as the test's own uid.
    pub fn raw(&self, line: &[u8]) -> Value {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        // a daemon that refuses the connection (or the request, once it is too long) answers and closes
        // at once: the rest of the write may then meet a closed socket, and the answer is still there
        let _ = s.write_all(line);
        let mut r = BufReader::new(s);
        let mut ans = String::new();
        r.read_line(&mut ans).unwrap();
        serde_json::from_str(&ans).unwrap_or_else(|_| panic!("not JSON: {ans:?}"))
    }

    pub fn jobs(&self) -> Vec<Value> {
        let out = self.ok(None, &["queue", "list", "--all", "--json"]);
        serde_json::from_str::<Vec<Value>>(&out).unwrap()
    }

    pub fn job(&self, id: i64) -> Value {
        self.jobs().into_iter().find(|j| j["id"] == id).unwrap_or_else(|| panic!("no job {id}"))
    }

    pub fn wait(&self, what: &str, secs: u64, cond: impl Fn(&Node) -> bool) {
        let t0 = Instant::now();
        while !cond(self) {
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}: {:#?}\ndaemon log: {}",
                self.jobs(),
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn state(&self, id: i64) -> String {
        self.job(id)["state"].as_str().unwrap_or("").to_string()
    }

    /// configs/lab-mlp.toml on the shared export with `steps` steps, readable by every test uid.
    pub fn lab_config(&self, name: &str, steps: u32) -> PathBuf {
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let steps = format!("steps = {steps}");
        let p = config("lab-mlp", &d, &[("epochs = 20", &steps), ("checkpoint_every = 100", "checkpoint_every = 5")]);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    pub fn submit(&self, uid: Option<u32>, cfg: &Path, project: &str, devices: &str) -> i64 {
        let out = self.ok(uid, &["queue", "submit", cfg.to_str().unwrap(), "--project", project, "--devices", devices]);
        out.trim().parse().unwrap()
    }

    pub fn log(&self, id: i64) -> String {
        self.ok(None, &["queue", "logs", &id.to_string()])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // jobs outlive the daemon by design: stop the ones this test left
        let _ = Command::new("pkill").arg("-f").arg(self.dir.join("state").to_str().unwrap()).status();
    }
}

pub fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The JSON summaries `medtrain train --json` printed into a job's log, in order.
pub fn summaries(log: &str) -> Vec<Value> {
    log.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}
