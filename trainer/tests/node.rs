//! The node daemon as operators and researchers meet it: a real daemon on a temporary socket, real
//! client processes (some under other uids when the test runs as root), real sandboxed jobs.

mod common;

use common::node::{root, summaries, Node, ALICE, BOB};

use common::cli::{bin, config, export};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[test]
fn researchers_see_only_their_project_and_cannot_set_quotas() {
    if !root() {
        eprintln!("skipped: needs root to run clients under two other uids");
        return;
    }
    let n = Node::start("");
    let a = n.lab_config("a", 20);
    let id = n.submit(Some(ALICE), &a, "alpha", "cpu:1");
    // a researcher cannot submit to another project, set quotas, or see another project's jobs
    let e = n.refused(Some(BOB), &["queue", "submit", a.to_str().unwrap(), "--project", "alpha"]);
    assert!(e.contains("not allowed for a researcher"), "{e}");
    let e = n.refused(Some(BOB), &["quota", "set", "--project", "beta", "--class", "cpu", "--devices", "2"]);
    assert!(e.contains("not allowed for a researcher"), "{e}");
    let listed = n.ok(Some(BOB), &["queue", "list", "--all", "--json"]);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&listed).unwrap().len(), 0, "{listed}");
    let e = n.refused(Some(BOB), &["queue", "logs", &id.to_string()]);
    assert!(e.contains(&format!("no job {id} in your projects")), "{e}");
    // a researcher's submit to an unknown project names their own projects only (found by a tester)
    let e = n.refused(Some(BOB), &["queue", "submit", a.to_str().unwrap(), "--project", "gamma"]);
    assert!(e.contains("your projects are beta") && !e.contains("alpha"), "{e}");
    let e = n.refused(Some(BOB), &["queue", "cancel", &id.to_string()]);
    assert!(e.contains("no job"), "{e}");
    let mine = n.ok(Some(ALICE), &["queue", "list", "--all", "--json"]);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&mine).unwrap().len(), 1);
    // found by a tester: a job read data its researcher could not (a link named `k.csv` to a root-only
    // file, the node's key there); its config is refused, the key named, nothing of the file said
    let secret = n.dir.join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "subject_id\nCANARY-7731\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let d = n.dir.join("deputy");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(secret.join("key"), d.join("k.csv")).unwrap();
    let text = std::fs::read_to_string(&a).unwrap();
    let input = text.lines().find(|l| l.starts_with("input")).unwrap().to_string();
    let deputy = d.join("c.toml");
    std::fs::write(&deputy, text.replace(&input, "input = \"k.csv\"").replace("format = \"fhir\"", "format = \"csv\""))
        .unwrap();
    std::fs::set_permissions(&deputy, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = n.refused(Some(ALICE), &["queue", "submit", deputy.to_str().unwrap(), "--project", "alpha"]);
    assert!(e.contains("config key data.input: you cannot read it") && !e.contains("CANARY"), "{e}");
    // found by review: the link swapped in while the job is queued is caught when it starts
    n.wait("alice's first job", 120, |n| n.state(id) == "succeeded");
    let held: Vec<i64> = ["alpha", "beta"]
        .iter()
        .map(|p| n.submit(None, &n.lab_config(&format!("hold-{p}"), 30000), p, "cpu:1"))
        .collect();
    n.wait("both slots held", 60, |n| held.iter().all(|h| n.state(*h) == "running"));
    std::fs::remove_file(d.join("k.csv")).unwrap();
    std::fs::write(d.join("k.csv"), "subject_id,time,code,value\n").unwrap();
    std::fs::set_permissions(d.join("k.csv"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let q = n.submit(Some(ALICE), &deputy, "alpha", "cpu:1");
    assert_eq!(n.state(q), "queued");
    std::fs::remove_file(d.join("k.csv")).unwrap();
    std::os::unix::fs::symlink(secret.join("key"), d.join("k.csv")).unwrap();
    for h in &held {
        n.ok(None, &["queue", "cancel", &h.to_string()]);
    }
    n.wait("the swapped job failed at its start", 60, |n| n.state(q) == "failed");
    let j = n.job(q);
    let why = j["reason"].as_str().unwrap_or("");
    assert!(why.contains("you cannot read it") && !why.contains("CANARY"), "{j}");
    // a uid with no role is refused
    let e = n.refused(Some(5555), &["queue", "list"]);
    assert!(e.contains("uid 5555 has no role"), "{e}");
    // retried in a loop, it is refused each time and audited once a minute (the rest are counted)
    for _ in 0..10 {
        n.refused(Some(5555), &["queue", "list"]);
    }
    // the operator may; a researcher's usage report holds only their projects
    n.ok(None, &["quota", "set", "--project", "beta", "--class", "cpu", "--devices", "2", "--device-hours", "10"]);
    let q: Vec<Value> = serde_json::from_str(&n.ok(None, &["quota", "show", "--json"])).unwrap();
    // an operator's quota show of a project the node does not have (found by a tester: an empty list)
    let e = n.refused(None, &["quota", "show", "--project", "nope"]);
    assert!(e.contains("unknown project \"nope\""), "{e}");
    assert!(q.iter().any(|r| r["project"] == "beta" && r["devices"] == 2 && r["device_hours"] == 10.0), "{q:?}");
    let u: Value = serde_json::from_str(&n.ok(Some(BOB), &["usage", "report", "--json"])).unwrap();
    let projects: Vec<&str> =
        u["projects"].as_array().unwrap().iter().map(|p| p["project"].as_str().unwrap()).collect();
    assert_eq!(projects, ["beta"]);
    n.wait("alice's job", 120, |n| n.state(id) == "succeeded");
    // every state change and every refusal is in the audit trail, with who did it
    let audit: Vec<Value> = serde_json::from_str(&n.ok(None, &["audit", "--json"])).unwrap();
    let has = |action: &str, uid: Option<u32>| {
        audit.iter().any(|r| r["action"] == action && uid.is_none_or(|u| r["uid"] == u))
    };
    assert!(has("submit", Some(ALICE)) && has("start", None) && has("succeeded", None), "{audit:#?}");
    assert!(has("refused", Some(BOB)) && has("quota set", Some(unsafe { libc::geteuid() })), "{audit:#?}");
    let no_role = audit.iter().filter(|r| r["action"] == "refused" && r["uid"] == 5555).count();
    assert_eq!(no_role, 1, "{audit:#?}");
    // BOB's look at alpha's job (its logs, its cancel) is in alpha's trail (found by a tester: not audited)
    let tried = audit.iter().any(|r| r["action"] == "refused" && r["uid"] == BOB && r["project"] == "alpha");
    assert!(tried, "{audit:#?}");
    // researchers read only their projects' part of the trail
    let theirs: Vec<Value> = serde_json::from_str(&n.ok(Some(BOB), &["audit", "--json"])).unwrap();
    assert!(theirs.iter().all(|r| r["project"] == "beta"), "{theirs:#?}");
}

#[test]
fn a_request_trickled_a_byte_at_a_time_is_cut_at_the_deadline() {
    let n = Node::start_with("request_timeout_s = 1", "");
    let mut s = UnixStream::connect(n.socket()).unwrap();
    let start = std::time::Instant::now();
    // a byte every 200 ms: each read is quick, the request never ends
    let mut closed_after = None;
    for b in b"{\"version\": 1, \"op\": \"whoami\"".iter().cycle().take(100) {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        if matches!(std::io::Read::read(&mut s, &mut probe), Ok(0)) {
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let t = closed_after.expect("the connection was never closed");
    assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(10), "closed after {t:?}");
    // an idle connection too; the next client is served
    let mut idle = UnixStream::connect(n.socket()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut idle, &mut buf).unwrap(), 0);
    assert_eq!(n.raw(b"{\"version\": 1, \"op\": \"whoami\"}\n")["ok"], true);
}

/// A child process killed when the test lets go of it (a failed assertion included).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_daemon_keeps_serving() {
    let n = Node::start("");
    let cases: &[(&[u8], &str)] = &[
        (b"{not json\n", "malformed request"),
        (b"{\"version\": 1, \"op\": \"launch_missiles\"}\n", "malformed request"),
        (b"{\"version\": 7, \"op\": \"whoami\"}\n", "unsupported version 7"),
        (b"{\"version\": 1, \"op\": \"cancel\", \"job\": 99999}\n", "no job 99999"),
        (b"{\"version\": 1, \"op\": \"usage\", \"period\": \"2026-13\"}\n", "period"),
        (
            b"{\"version\": 1, \"op\": \"submit\", \"project\": \"nope\", \"config\": \"/x\"}\n",
            "unknown project \"nope\"",
        ),
        (b"{\"version\": 1, \"op\": \"submit\", \"project\": \"090-1234-5678\", \"config\": \"/x\"}\n", "not printed"),
        (b"\xff\xfe\n", "malformed request"),
        // what is wrong, by field (found by a tester: one message for every schema error), never a value
        (b"{\"version\": 1, \"op\": \"cancel\"}\n", "missing field `job`"),
        (b"{\"version\": 1, \"op\": \"cancel\", \"job\": \"090-1234-5678\"}\n", "invalid type"),
        (b"{\"version\": 1, \"op\": \"launch_missiles\"}\n", "unknown variant `launch_missiles`"),
    ];
    for (line, want) in cases {
        let v = n.raw(line);
        assert_eq!(v["ok"], false, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(want), "{}: {msg}", String::from_utf8_lossy(line));
        assert!(!msg.contains("090-1234-5678"), "a value from the request is repeated: {msg}");
    }
    // one uid holding connections without finishing a request: its 17th is refused, and another
    // request of the same uid is served as soon as one of them closes
    // (a connection of the requests above the daemon has not yet counted as closed, on a busy machine,
    // may have this one refused: it is opened again until it is held, at most 10 s)
    let held: Vec<std::os::unix::net::UnixStream> = (0..16)
        .map(|_| {
            let start = std::time::Instant::now();
            loop {
                let mut s = std::os::unix::net::UnixStream::connect(n.socket()).unwrap();
                match std::io::Write::write_all(&mut s, b"{") {
                    Ok(()) => break s,
                    Err(e) if start.elapsed() > std::time::Duration::from_secs(10) => panic!("{e}"),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        })
        .collect();
    // the daemon counts a connection when its accept loop reaches it, which may lag on a busy machine:
    // ask until the refusal comes (at most 10 s)
    let start = std::time::Instant::now();
    let v = loop {
        let v = n.raw(b"{\"version\": 1, \"op\": \"whoami\"}\n");
        if v["ok"] == false || start.elapsed() > std::time::Duration::from_secs(10) {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(v["error"].as_str().unwrap_or("").contains("16 for one user"), "{v}");
    // the command line says so too (found by a tester: its write failed first, "Broken pipe")
    for _ in 0..5 {
        let o = n.cli(None, &["queue", "list"]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("16 for one user") && !e.contains("Broken pipe"), "{e}");
    }
    drop(held);
    // uids without a role hold 4 connections all together: a fifth of another such uid is refused
    // with that reason, not with "no role"
    let holder = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys, time\nfor _ in range(4):\n    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); \
             s.send(b'{'); globals().setdefault('k', []).append(s)\nprint('held', flush=True)\ntime.sleep(60)",
        ])
        .arg(n.socket())
        .uid(5555)
        .gid(5555)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = KillOnDrop(holder);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.0.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    let start = std::time::Instant::now();
    let e = loop {
        let e = n.refused(Some(5556), &["queue", "list"]);
        if e.contains("without a role together") || start.elapsed() > std::time::Duration::from_secs(10) {
            break e;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(e.contains("4 for all users without a role together"), "{e}");
    drop(holder);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(n.raw(b"{\"version\": 1, \"op\": \"whoami\"}\n")["ok"], true);
    // longer than node.max_request_bytes
    let mut big = b"{\"version\": 1, \"op\": \"whoami\", \"pad\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 200_000));
    big.extend(b"\"}\n");
    let v = n.raw(&big);
    assert!(v["error"].as_str().unwrap().contains("max_request_bytes"), "{v}");
    // devices that do not exist, more than there are, a config that is not one
    let a = n.lab_config("a", 20);
    let e = n.refused(None, &["queue", "submit", a.to_str().unwrap(), "--project", "alpha", "--devices", "cuda:1"]);
    assert!(e.contains("no \"cuda\" devices") && e.contains("it has: cpu"), "{e}");
    let e = n.refused(None, &["queue", "submit", a.to_str().unwrap(), "--project", "alpha", "--devices", "cpu:3"]);
    assert!(e.contains("3 cpu asked, the node has 2"), "{e}");
    let bad = n.dir.join("a/bad.toml");
    std::fs::write(&bad, "[model]\nkind = 3\n").unwrap();
    let e = n.refused(None, &["queue", "submit", bad.to_str().unwrap(), "--project", "alpha"]);
    assert!(e.contains("bad.toml"), "{e}");
    // mutated requests (bytes flipped, cut, repeated) never stop the daemon or get an answer that
    // repeats a planted identifier
    let seeds: [&[u8]; 3] = [
        b"{\"version\": 1, \"op\": \"submit\", \"project\": \"alpha\", \"devices\": \"cpu:1\", \"config\": \"/tmp/090-1234-5678.toml\"}",
        b"{\"version\": 1, \"op\": \"quota_set\", \"project\": \"beta\", \"class\": \"cpu\", \"devices\": 1}",
        b"{\"version\": 1, \"op\": \"logs\", \"job\": 1, \"offset\": 0}",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..300 {
        let mut m = seeds[i % seeds.len()].to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[at] = next() as u8,
                1 => m.truncate(at.max(1)),
                _ => m.insert(at, b"{[\",:}0-"[(next() % 8) as usize]),
            }
        }
        m.retain(|&b| b != b'\n');
        m.push(b'\n');
        let mut s = UnixStream::connect(n.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&m).unwrap();
        let mut ans = String::new();
        BufReader::new(s).read_line(&mut ans).unwrap();
        let v: Value = serde_json::from_str(&ans).unwrap_or_else(|_| panic!("not JSON: {ans:?}"));
        assert_eq!(v["version"], 1, "{ans}");
        assert!(!ans.contains("1234-5678"), "an answer repeats a value from the request: {ans}");
    }
    // many clients at once, then the daemon still answers
    let clients: Vec<Child> = (0..12)
        .map(|i| {
            let mut c = bin();
            c.env("MEDTRAIN_SOCKET", n.socket()).stdout(Stdio::piped()).stderr(Stdio::piped());
            if i % 2 == 0 {
                c.args(["queue", "list", "--all"]);
            } else {
                c.args(["quota", "show"]);
            }
            c.spawn().unwrap()
        })
        .collect();
    for c in clients {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(n.raw(b"{\"version\": 1, \"op\": \"whoami\"}\n")["ok"], true);
}

#[test]
fn a_node_config_naming_devices_that_do_not_exist_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("node.toml");
    std::fs::write(
        &cfg,
        "[node]\nsocket = \"sock/s\"\nstate_dir = \"st\"\n[[project]]\nname = \"a\"\nquota.tpu = { devices = 1 }\n",
    )
    .unwrap();
    let o = bin().args(["node", "run", "--config"]).arg(&cfg).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("project[0].quota.tpu") && e.contains("it has: cpu"), "{e}");
    std::fs::write(&cfg, "[node]\nsocket = \"sock/s\"\nstate_dir = \"st\"\ncpu_slots = 0\n").unwrap();
    let o = bin().args(["node", "run", "--config"]).arg(&cfg).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("node.cpu_slots = 0"), "{o:?}");
    // found by a tester: the socket's directory holding the state (jobs, which cannot see it, all
    // failed with "No such file or directory"), and a kind of NPU declared twice (one silently won)
    for (cfg_text, want) in [
        ("[node]\nsocket = \"x/s.sock\"\nstate_dir = \"x/st\"\n", "holds node.state_dir"),
        (
            "[node]\nsocket = \"sock/s\"\nstate_dir = \"st\"\n[[npu]]\nkind = \"ascend\"\ncount = 1\nmemory_gib = 64\n[[npu]]\nkind = \"ascend\"\ncount = 2\nmemory_gib = 32\n",
            "npu[1].kind = \"ascend\": listed twice",
        ),
    ] {
        std::fs::write(&cfg, cfg_text).unwrap();
        let o = bin().args(["node", "run", "--config"]).arg(&cfg).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(want), "{e}");
    }
    // node.socket naming a file (found by a tester: it was deleted, its contents with it)
    std::fs::create_dir(tmp.path().join("sockdir")).unwrap();
    let file = tmp.path().join("sockdir/notes.txt");
    std::fs::write(&file, "kept").unwrap();
    std::fs::write(&cfg, format!("[node]\nsocket = {:?}\nstate_dir = \"st\"\n", file.display().to_string())).unwrap();
    let o = bin().args(["node", "run", "--config"]).arg(&cfg).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("node.socket") && e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
}

#[test]
fn borrowed_devices_are_reclaimed_by_preemption_and_the_run_resumes_its_accounting() {
    let n = Node::start("");
    // alpha borrows both slots (its quota is one); beta then claims its own slot back
    let long = n.lab_config("long", 1500);
    let a = n.submit(None, &long, "alpha", "cpu:2");
    n.wait("alpha running borrowed", 60, |n| {
        let j = n.job(a);
        j["state"] == "running" && j["borrowed"] == true
    });
    // let it pass its first checkpoint
    let base = |n: &Node| PathBuf::from(n.job(a)["run_dir"].as_str().unwrap_or("/nonexistent").to_string());
    n.wait("alpha's first checkpoint", 120, |n| base(n).join("run-1/checkpoint/state.json").exists());
    let short = n.lab_config("short", 20);
    let b = n.submit(None, &short, "beta", "cpu:1");
    n.wait("alpha preempted", 120, |n| n.job(a)["preemptions"] == 1);
    n.wait("beta done and alpha finished", 600, |n| n.state(b) == "succeeded" && n.state(a) == "succeeded");
    let ja = n.job(a);
    assert_eq!(ja["attempt"], 2, "{ja}");
    let log = n.log(a);
    let s = summaries(&log);
    assert_eq!(s.len(), 2, "one summary per attempt: {log}");
    assert_eq!(s[0]["finished"], false);
    assert_eq!(s[1]["finished"], true);
    assert_eq!(s[1]["steps"], 1500);
    assert_eq!(s[0]["run_dir"], s[1]["run_dir"], "the second attempt resumes the same run");
    let (e0, e1) = (s[0]["epsilon"].as_f64().unwrap(), s[1]["epsilon"].as_f64().unwrap());
    // the resumed run's accounting continues from the preempted one: its epsilon is that of all the
    // steps, the planned target, not that of the resumed steps alone
    assert!(e0 > 0.0 && e0 < e1, "{e0} then {e1}");
    assert!((e1 - 3.0).abs() < 0.01, "final epsilon {e1}, target 3.0");
    assert!(log.contains("preparing"), "{log}");
    // the audit trail says what happened, and the usage report has both projects' device time
    let audit: Vec<Value> = serde_json::from_str(&n.ok(None, &["audit", "--json"])).unwrap();
    let acts: Vec<&str> = audit.iter().filter(|r| r["job"] == a).map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(acts, ["submit", "start", "preempt", "preempted", "start", "succeeded"], "{audit:#?}");
    let u: Value = serde_json::from_str(&n.ok(None, &["usage", "report", "--json"])).unwrap();
    for p in u["projects"].as_array().unwrap() {
        assert!(p["device_hours"]["cpu"].as_f64().unwrap() > 0.0, "{u}");
        assert!(p["epsilon_spent"].as_f64().unwrap() > 0.0, "{u}");
    }
}

#[test]
fn used_up_device_hours_stop_the_run_and_hold_the_queue() {
    let n = Node::start("");
    // 0.0005 device-hours: 1.8 device-seconds
    n.ok(None, &["quota", "set", "--project", "alpha", "--class", "cpu", "--devices", "1", "--device-hours", "0.0005"]);
    // long enough that the resumed run is still running when it is cancelled (3000 steps ended first
    // once the DP step of lab-mlp got faster)
    let long = n.lab_config("long", 30000);
    let a = n.submit(None, &long, "alpha", "cpu:1");
    n.wait("alpha stopped at its budget", 120, |n| {
        let j = n.job(a);
        j["state"] == "queued" && j["reason"].as_str().unwrap_or("").contains("device-hours")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(n.state(a), "queued", "a job over its budget is not started again");
    // more hours: it resumes and ends
    n.ok(None, &["quota", "set", "--project", "alpha", "--class", "cpu", "--devices", "1", "--device-hours", "100"]);
    n.wait("alpha resumed", 60, |n| n.state(a) == "running");
    n.ok(None, &["queue", "cancel", &a.to_string()]);
    n.wait("alpha cancelled", 60, |n| n.state(a) == "cancelled");
}

#[test]
fn a_job_that_crashes_is_failed_with_its_status_and_the_queue_goes_on() {
    let n = Node::start("");
    let d = n.dir.join("crash");
    std::fs::create_dir_all(&d).unwrap();
    // valid as a config, but its data is not there: the run stops with an error
    let bad = config("lab-mlp", &d, &[("epochs = 20", "steps = 5")]);
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace(export().join("export").to_str().unwrap(), "/nonexistent/export");
    std::fs::write(&bad, text).unwrap();
    let c = n.submit(None, &bad, "alpha", "cpu:1");
    let ok = n.submit(None, &n.lab_config("ok", 10), "alpha", "cpu:1");
    n.wait("both ended", 120, |n| n.state(c) == "failed" && n.state(ok) == "succeeded");
    let j = n.job(c);
    assert!(
        j["exit_code"].as_i64().unwrap() != 0 && j["reason"].as_str().unwrap().contains("exited with status"),
        "{j}"
    );
    // its log says why; `queue logs --follow` exits non-zero for a job that did not succeed
    let o = n.cli(None, &["queue", "logs", &c.to_string(), "--follow"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stdout).contains("nonexistent"), "{o:?}");
    // an offset past the log's end is answered (found by a tester: the connection closed in silence)
    let v =
        n.raw(format!("{{\"version\": 1, \"op\": \"logs\", \"job\": {c}, \"offset\": 1000000000000000}}\n").as_bytes());
    assert!(v["error"].as_str().unwrap_or("").contains("past the end of the job's log"), "{v}");
}

/// Found by an outside-in tester: a train job killed by a signal (an OOM kill) writes no summary, and
/// `usage report` counted its epsilon as nothing; it counts at what the node's ledger holds for its
/// run (the reservation, until the run is settled).
#[test]
fn a_train_job_killed_by_a_signal_counts_its_ledger_epsilon_in_usage() {
    let n = Node::start("");
    let cfg = n.lab_config("killed", 30000);
    let a = n.submit(None, &cfg, "alpha", "cpu:1");
    let base = |n: &Node| PathBuf::from(n.job(a)["run_dir"].as_str().unwrap_or("/nonexistent").to_string());
    n.wait("alpha's first checkpoint", 120, |n| base(n).join("run-1/checkpoint/state.json").exists());
    // the job's `medtrain train` process (the shim's child), killed as the OOM killer would
    let needle = cfg.to_str().unwrap().to_string();
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"train"[..]) && args.iter().any(|a| *a == needle.as_bytes())
        })
        .expect("the job's train process");
    // SAFETY: a plain kill of the test's own child's child
    unsafe { libc::kill(pid, libc::SIGKILL) };
    n.wait("alpha failed", 60, |n| n.state(a) == "failed");
    let u: Value = serde_json::from_str(&n.ok(None, &["usage", "report", "--json"])).unwrap();
    let alpha = u["projects"].as_array().unwrap().iter().find(|p| p["project"] == "alpha").cloned().unwrap_or_default();
    let eps = alpha["epsilon_spent"].as_f64().unwrap_or(0.0);
    assert!(eps > 0.5 && eps.is_finite(), "{u}");
    // the failed job's reservation is settled by the daemon, which says so (found by a tester: such
    // reservations stayed open for ever)
    n.wait("the failed run settled", 30, |n| n.daemon_log().contains("settled, as no attempt resumes it"));
    let b = bin().env("MEDTRAIN_HOME", n.dir.join("home")).args(["budget", "show", "--json"]).output();
    let rows: Value = serde_json::from_slice(&b.unwrap().stdout).unwrap();
    assert_eq!(rows[0]["reserved"].as_f64(), Some(0.0), "{rows}");
    let audit = n.ok(None, &["audit"]);
    assert!(audit.contains("run_settled"), "{audit}");
}

#[test]
fn a_daemon_killed_with_kill_9_comes_back_with_its_queue_and_runs_no_job_twice() {
    let n0 = Node::start("");
    let mut n = n0;
    let long = n.lab_config("long", 800);
    let a = n.submit(None, &long, "alpha", "cpu:1");
    let b = n.submit(None, &long, "alpha", "cpu:1"); // waits: alpha's quota is one device... or borrows
    let c = n.submit(None, &long, "alpha", "cpu:1");
    n.wait("a running", 60, |n| n.state(a) == "running");
    let mut d = n.daemon.take().unwrap();
    unsafe { libc::kill(d.id() as i32, libc::SIGKILL) };
    d.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    n.run_daemon();
    n.wait("all three succeeded", 900, |n| [a, b, c].iter().all(|&j| n.state(j) == "succeeded"));
    for j in [a, b, c] {
        let job = n.job(j);
        assert_eq!(job["attempt"], 1, "job {j} was started more than once: {job}");
        let s = summaries(&n.log(j));
        assert_eq!(s.len(), 1, "job {j} ran more than once");
        assert_eq!(s[0]["steps"], 800);
    }
    // SIGTERM stops it in order: exit 0, the socket removed, the stop in the audit trail
    let mut d = n.daemon.take().unwrap();
    unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
    let status = d.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", n.daemon_log());
    assert!(!n.socket().exists());
    assert!(n.daemon_log().contains("stopped by SIGTERM"), "{}", n.daemon_log());
    n.run_daemon();
    let audit: Vec<Value> = serde_json::from_str(&n.ok(None, &["audit", "--json"])).unwrap();
    let starts = audit.iter().filter(|r| r["action"] == "start").count();
    assert_eq!(starts, 3, "{audit:#?}");
    assert_eq!(audit.iter().filter(|r| r["action"] == "daemon start").count(), 3);
    let stops: Vec<&Value> = audit.iter().filter(|r| r["action"] == "daemon stop").collect();
    assert_eq!(stops.len(), 1, "{audit:#?}");
    assert_eq!(stops[0]["detail"]["signal"], "SIGTERM");
    assert_eq!(stops[0]["detail"]["running_jobs"], 0);
}

/// The job runner the daemon uses (`medtrain node shim`), on a job that tries to get out: no network
/// (not even the host's loopback), nothing writable but its run directory, the node's state hidden, no
/// capabilities.
#[test]
fn a_sandboxed_job_cannot_open_a_network_connection_or_write_outside_its_run_directory() {
    let probe = bin().args(["node", "devices", "--json"]).output().unwrap();
    let inv: Value = serde_json::from_slice(&probe.stdout).unwrap();
    if !inv["sandbox_refused"].is_null() {
        eprintln!("skipped: this kernel refuses the sandbox: {}", inv["sandbox_refused"]);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (state, work) = (tmp.path().join("state"), tmp.path().join("state/runs/1"));
    let job = state.join("jobs/1");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(state.join("node.sqlite"), "secret").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside = tmp.path().join("outside");
    let script = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo LOOPBACK-OPEN
         (exec 3<>/dev/tcp/192.0.2.1/443) 2>/dev/null && echo NETWORK-OPEN
         touch {work}/written && echo RUN-WRITABLE
         touch {outside} 2>/dev/null && echo OUTSIDE-WRITABLE
         touch /etc/medtrain-escape 2>/dev/null && echo ROOT-WRITABLE
         cat {state}/node.sqlite 2>/dev/null && echo STATE-VISIBLE
         ls {state}/jobs 2>/dev/null | grep -q . && echo JOBS-VISIBLE
         grep CapEff /proc/self/status
         ip -o link 2>/dev/null | grep -v ' lo:' | grep -q . && echo OTHER-INTERFACES
         exit 7",
        work = work.display(),
        outside = outside.display(),
        state = state.display()
    );
    let spec = serde_json::json!({
        "attempt": 1,
        "argv": ["/bin/bash", "-c", script],
        "env": [["PATH", "/usr/bin:/bin"]],
        "sandbox": true,
        "writable": [work],
        "hidden": [state],
        "cwd": work,
        "uid": null,
    });
    std::fs::write(job.join("spec.json"), spec.to_string()).unwrap();
    let lock = std::fs::File::create(job.join("lock")).unwrap();
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&lock);
    let mut shim = bin();
    shim.args(["node", "shim"]).arg(&job).args(["--lock-fd", "3"]);
    unsafe {
        shim.pre_exec(move || {
            libc::dup2(fd, 3);
            Ok(())
        })
    };
    assert!(shim.status().unwrap().success());
    let exit: Value = serde_json::from_slice(&std::fs::read(job.join("exit-1.json")).unwrap()).unwrap();
    assert_eq!(exit["code"], 7, "{exit}");
    let log = std::fs::read_to_string(job.join("log")).unwrap();
    assert!(log.contains("RUN-WRITABLE") && work.join("written").exists(), "{log}");
    for escape in [
        "LOOPBACK-OPEN",
        "NETWORK-OPEN",
        "OUTSIDE-WRITABLE",
        "ROOT-WRITABLE",
        "STATE-VISIBLE",
        "JOBS-VISIBLE",
        "OTHER-INTERFACES",
    ] {
        assert!(!log.contains(escape), "{escape}: {log}");
    }
    assert!(log.contains("CapEff:\t0000000000000000"), "{log}");
    assert!(!outside.exists());
    drop(listener);
}

/// The tests' container image: busybox, imported from Debian's busybox-static (no registry needed).
fn busybox_image() -> Option<&'static str> {
    const IMAGE: &str = "localhost/medtrain-test-busybox:latest";
    let have = Command::new("podman").args(["image", "exists", IMAGE]).status().map(|s| s.success());
    match have {
        Err(_) => {
            assert!(std::env::var_os("MEDTRAIN_REQUIRE_PODMAN").is_none(), "podman is required but not installed");
            eprintln!("skipped: podman is not installed (scripts/ensure-podman.sh)");
            return None;
        }
        Ok(true) => return Some(IMAGE),
        Ok(false) => {}
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    for d in ["tmp", "work", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static (scripts/ensure-podman.sh)");
    for applet in ["sh", "nc", "echo", "touch", "cat", "ls", "id"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = tmp.path().join("root.tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    let o = Command::new("podman").arg("import").arg(&tar).arg(IMAGE).output().unwrap();
    assert!(o.status.success(), "podman import: {}", String::from_utf8_lossy(&o.stderr));
    Some(IMAGE)
}

#[test]
fn a_container_job_runs_under_podman_with_no_network_and_only_its_run_directory_writable() {
    let Some(image) = busybox_image() else { return };
    // this kind of machine: crun refuses its hybrid cgroups, and raising rlimits is not permitted
    let n = Node::start_with(
        "podman_args = [\"--runtime\", \"runc\", \"--ulimit\", \"nofile=1024:1024\", \"--ulimit\", \"nproc=1024:1024\"]\n\
         stop_grace_s = 3",
        "",
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "nc -w 2 127.0.0.1 {port} </dev/null && echo LOOPBACK-OPEN; \
         nc -w 2 192.0.2.1 80 </dev/null && echo NETWORK-OPEN; \
         touch /etc/escape 2>/dev/null && echo ROOT-WRITABLE; \
         echo result > /work/out && echo WROTE"
    );
    let out = n.ok(None, &["queue", "submit", "--image", image, "--project", "alpha", "--", "/bin/sh", "-c", &script]);
    let id: i64 = out.trim().parse().unwrap();
    n.wait("the container job", 120, |n| n.job(id)["state"].as_str().is_some_and(|s| s != "queued" && s != "running"));
    let log = n.log(id);
    assert_eq!(n.state(id), "succeeded", "{log}");
    assert!(log.contains("WROTE"), "{log}");
    for escape in ["LOOPBACK-OPEN", "NETWORK-OPEN", "ROOT-WRITABLE"] {
        assert!(!log.contains(escape), "{escape}: {log}");
    }
    // its output stays in the node, in the job's run directory
    assert_eq!(std::fs::read_to_string(n.dir.join(format!("state/runs/{id}/out"))).unwrap(), "result\n");
    // a bad image reference or no command: refused at submit
    let e = n.refused(None, &["queue", "submit", "--image=-rf", "--project", "alpha", "--", "true"]);
    assert!(e.contains("image"), "{e}");
    let e = n.refused(None, &["queue", "submit", "--image", image, "--project", "alpha"]);
    assert!(e.contains("command"), "{e}");
    drop(listener);
    // a job that ignores SIGTERM is killed, its container with it, once node.stop_grace_s has passed
    // after its cancel (found by a tester: it held its devices, stopping, for ever)
    let script = "trap 'echo got TERM' TERM; echo STARTED; while true; do sleep 1; done";
    let out = n.ok(None, &["queue", "submit", "--image", image, "--project", "alpha", "--", "/bin/sh", "-c", script]);
    let id: i64 = out.trim().parse().unwrap();
    n.wait("the stubborn job to start", 120, |n| n.log(id).contains("STARTED"));
    n.ok(None, &["queue", "cancel", &id.to_string()]);
    n.wait("the stubborn job to be killed", 60, |n| n.state(id) == "cancelled");
    let ps = Command::new("podman").args(["ps", "-q", "--filter", &format!("name=medtrain-job-{id}-")]).output();
    assert!(ps.unwrap().stdout.is_empty(), "its container still runs");
}

#[test]
fn a_job_uses_only_its_own_projects_permits() {
    let n = Node::start("");
    // only alpha keeps a permit for the export
    for e in std::fs::read_dir(n.dir.join("home/permits")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("beta-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let cfg = n.lab_config("c", 10);
    let b = n.submit(None, &cfg, "beta", "cpu:1");
    n.wait("beta's job to fail", 120, |n| n.state(b) == "failed");
    let log = n.log(b);
    assert!(log.contains("for project beta"), "{log}");
    let a = n.submit(None, &cfg, "alpha", "cpu:1");
    n.wait("alpha's job", 120, |n| n.state(a) == "succeeded");
}

/// The GPU inventory through NVML's C ABI, on a stand-in `libnvidia-ml.so.1` built by the test (no GPU
/// here): two GPUs, the second in MIG mode with one instance. The daemon schedules the first whole and
/// the second by its instance.
#[test]
fn gpus_and_mig_instances_are_listed_through_nvml_loaded_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("nvml.c");
    std::fs::write(
        &src,
        r#"
#include <stdio.h>
typedef void *dev_t_;
typedef struct { unsigned long long total, free, used; } mem_t;
static int gpu[2], mig[1];
int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
int nvmlDeviceGetCount_v2(unsigned *n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, dev_t_ *d) { if (i > 1) return 2; *d = &gpu[i]; return 0; }
static const char *pick(dev_t_ d, const char *a, const char *b, const char *c) {
    return d == (dev_t_)&gpu[0] ? a : d == (dev_t_)&gpu[1] ? b : c;
}
int nvmlDeviceGetName(dev_t_ d, char *s, unsigned n) {
    snprintf(s, n, "%s", pick(d, "NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3 MIG 3g.40gb")); return 0;
}
int nvmlDeviceGetUUID(dev_t_ d, char *s, unsigned n) {
    snprintf(s, n, "%s", pick(d, "GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000",
        "MIG-cccccccc-0000-0000-0000-000000000000")); return 0;
}
int nvmlDeviceGetMemoryInfo(dev_t_ d, mem_t *m) {
    m->total = d == (dev_t_)&mig[0] ? 40ull << 30 : d == (dev_t_)&gpu[0] ? 141ull << 30 : 80ull << 30; m->free = m->used = 0; return 0;
}
int nvmlDeviceGetMigMode(dev_t_ d, unsigned *cur, unsigned *pend) {
    if (d == (dev_t_)&gpu[0]) return 3; *cur = *pend = 1; return 0;
}
int nvmlDeviceGetMaxMigDeviceCount(dev_t_ d, unsigned *n) { *n = 7; return 0; }
int nvmlDeviceGetMigDeviceHandleByIndex(dev_t_ d, unsigned i, dev_t_ *m) { if (i != 0) return 6; *m = &mig[0]; return 0; }
"#,
    )
    .unwrap();
    let lib = tmp.path().join("libnvidia-ml.so.1");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&src).output();
    let Ok(cc) = cc else {
        eprintln!("skipped: no C compiler");
        return;
    };
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let o = bin().args(["node", "devices", "--json"]).env("LD_LIBRARY_PATH", tmp.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv: Value = serde_json::from_slice(&o.stdout).unwrap();
    let gpus = inv["cuda"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{inv}");
    assert_eq!(gpus[0]["name"], "NVIDIA H200");
    assert_eq!(gpus[0]["memory_bytes"], 141u64 << 30);
    assert_eq!(gpus[0]["mig"].as_array().unwrap().len(), 0);
    assert_eq!(gpus[1]["mig"][0]["uuid"], "MIG-cccccccc-0000-0000-0000-000000000000");
    assert_eq!(gpus[1]["mig"][0]["memory_bytes"], 40u64 << 30);
    let cuda = inv["classes"].as_array().unwrap().iter().find(|c| c["class"] == "cuda").unwrap();
    assert_eq!(cuda["units"], serde_json::json!(["0", "MIG-cccccccc-0000-0000-0000-000000000000"]));
    assert_eq!(cuda["visible_env"], "CUDA_VISIBLE_DEVICES");
    assert!(inv["cuda_note"].is_null(), "{inv}");
    // and the text form
    let t = bin().args(["node", "devices"]).env("LD_LIBRARY_PATH", tmp.path()).output().unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(
        text.contains("cuda  0  NVIDIA H200  141.0 GiB") && text.contains("MIG 0  NVIDIA H100 80GB HBM3 MIG 3g.40gb"),
        "{text}"
    );
}

#[test]
fn a_device_hours_quota_of_nan_infinity_or_below_zero_is_refused_not_stored_as_unlimited() {
    // repro-3: NaN and infinity have no JSON form (serde_json writes null), and the daemon read the null
    // as "no limit": `quota set --device-hours NaN` lifted the project's monthly limit
    let n = Node::start("");
    let hours_of_alpha = |n: &Node| -> Value {
        let q: Vec<Value> = serde_json::from_str(&n.ok(None, &["quota", "show", "--json"])).unwrap();
        q.iter().find(|r| r["project"] == "alpha" && r["class"] == "cpu").expect("alpha's cpu quota")["device_hours"]
            .clone()
    };
    let set = ["quota", "set", "--project", "alpha", "--class", "cpu", "--devices", "1", "--device-hours"];
    n.ok(None, &[&set[..], &["500"]].concat());
    assert_eq!(hours_of_alpha(&n), 500.0);
    // the client refuses before sending, naming the flag and the range
    for bad in ["NaN", "inf", "-inf", "-5", "2e9"] {
        let o = n.cli(None, &[&set[..], &[bad]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "--device-hours {bad}: {err}");
        assert!(err.contains("--device-hours") && err.contains("[0, 1000000000]"), "--device-hours {bad}: {err}");
        assert_eq!(hours_of_alpha(&n), 500.0, "--device-hours {bad} changed the quota");
    }
    // the daemon refuses what another client may send: an explicit null, a negative number
    for (line, want) in [
        (&b"{\"version\": 1, \"op\": \"quota_set\", \"project\": \"alpha\", \"class\": \"cpu\", \"devices\": 1, \"device_hours\": null}\n"[..], "device_hours must be a number"),
        (&b"{\"version\": 1, \"op\": \"quota_set\", \"project\": \"alpha\", \"class\": \"cpu\", \"devices\": 1, \"device_hours\": -5}\n"[..], "device_hours = -5"),
    ] {
        let v = n.raw(line);
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{v}");
        assert_eq!(hours_of_alpha(&n), 500.0, "{} changed the quota", String::from_utf8_lossy(line));
    }
    // no limit is still the flag (the field) left out, said with the limit it removes (found by a
    // tester: removed without a word), and the audit row says what it replaced
    let o = n.cli(None, &["quota", "set", "--project", "alpha", "--class", "cpu", "--devices", "1"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && said.contains("device-hours limit (500) is removed"), "{said}");
    assert!(hours_of_alpha(&n).is_null(), "{}", hours_of_alpha(&n));
    let audit = n.ok(None, &["audit"]);
    assert!(audit.contains("\"before\""), "{audit}");
    let v = n.raw(b"{\"version\": 1, \"op\": \"quota_set\", \"project\": \"alpha\", \"class\": \"cpu\", \"devices\": 1, \"device_hours\": 7}\n");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(hours_of_alpha(&n), 7.0);
}

/// Found by a tester: the client read an endless answer line without a bound (250 MB at 20 s) and
/// waited for ever on a socket that never answered.
#[test]
fn the_client_bounds_an_answer_line() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 256];
        let _ = s.read(&mut req);
        let block = vec![b'a'; 1 << 20];
        for _ in 0..80 {
            if s.write_all(&block).is_err() {
                break;
            }
        }
    });
    let o = bin().args(["queue", "list", "--socket"]).arg(&path).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("longer than 64 MiB"), "{e}");
    server.join().unwrap();
}

/// Found by a tester: a queued train job read its config when it started, so a researcher could swap
/// it for a link to a file they cannot read and find its parse error in the job's log. The job
/// trains its config only as submitted (the daemon passes its SHA-256), checked before it is parsed.
#[test]
fn a_train_job_refuses_a_config_changed_since_it_was_submitted() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[data]\ninput = \"secret-Yamada\"\n").unwrap();
    let o = bin()
        .arg("train")
        .arg(&cfg)
        .arg("--run-dir")
        .arg(tmp.path().join("run"))
        .env("MEDTRAIN_HOME", tmp.path().join("home"))
        .env("MEDTRAIN_CONFIG_SHA256", "0".repeat(64))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("changed since the job was submitted") && !e.contains("Yamada"), "{e}");
    assert!(!tmp.path().join("run").exists());
}

/// Found by a tester: four researchers holding 16 idle connections each filled the node's 64, and the
/// operators' requests were refused for as long as they liked. Operators keep 8 of the 64.
#[test]
fn researchers_cannot_hold_the_connections_the_operators_need() {
    if !root() {
        eprintln!("skipped: needs root to connect as other uids");
        return;
    }
    let extra = "[[user]]\nuid = 4444\nrole = \"researcher\"\nprojects = [\"alpha\"]\n\n\
                 [[user]]\nuid = 4445\nrole = \"researcher\"\nprojects = [\"alpha\"]\n";
    let n = Node::start(extra);
    let holders: Vec<KillOnDrop> = [ALICE, BOB, 4444, 4445]
        .into_iter()
        .map(|uid| {
            let mut c = Command::new("/usr/bin/python3")
                .args([
                    "-c",
                    // (a connection the daemon refuses may be closed before the byte is sent)
                    "import socket, sys, time\nk = []\nfor _ in range(16):\n    s = socket.socket(socket.AF_UNIX)\n    \
                     try:\n        s.connect(sys.argv[1]); s.send(b'{')\n    except OSError:\n        pass\n    \
                     k.append(s)\nprint('held', flush=True)\ntime.sleep(60)",
                ])
                .arg(n.socket())
                .uid(uid)
                .gid(uid)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.as_mut().unwrap()), &mut line).unwrap();
            assert_eq!(line.trim(), "held");
            KillOnDrop(c)
        })
        .collect();
    // the accept loop has seen all 64 (some refused) once another researcher's connection is refused
    let start = std::time::Instant::now();
    loop {
        let e = n.refused(Some(4444), &["queue", "list"]);
        if e.contains("not operators") || start.elapsed() > std::time::Duration::from_secs(10) {
            assert!(e.contains("56 for users who are not operators") || e.contains("16 for one user"), "{e}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // the operator is still served
    assert_eq!(n.raw(b"{\"version\": 1, \"op\": \"whoami\"}\n")["ok"], true);
    drop(holders);
}

/// One user's waiting jobs are bounded (`node.max_queued_per_user`): a loop of submits filled the store
/// and every listing without end. Running jobs do not count; a cancelled one frees its place.
#[test]
fn one_user_may_have_at_most_max_queued_per_user_jobs_waiting() {
    let n = Node::start_with("max_queued_per_user = 2", "");
    let long = n.lab_config("long", 100_000);
    let path = long.to_str().unwrap();
    let submit = |n: &Node| n.cli(None, &["queue", "submit", path, "--project", "alpha", "--devices", "cpu:1"]);
    let queued = |n: &Node| {
        n.jobs().iter().filter(|j| j["state"] == "queued").map(|j| j["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    let mut refused = None;
    for _ in 0..8 {
        let o = submit(&n);
        if !o.status.success() {
            refused = Some(String::from_utf8_lossy(&o.stderr).into_owned());
            break;
        }
    }
    let err = refused.expect("no submit was refused");
    assert!(err.contains("2 jobs queued") && err.contains("node.max_queued_per_user"), "{err}");
    let waiting = queued(&n);
    assert_eq!(waiting.len(), 2, "{:#?}", n.jobs());
    n.ok(None, &["queue", "cancel", &waiting[0].to_string()]);
    n.wait("the cancel", 30, |n| queued(n).len() == 1);
    assert!(submit(&n).status.success());
}
