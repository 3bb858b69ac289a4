//! `medtrain node run`: the daemon. It owns the store, serves the socket (one thread per connection,
//! a bounded number at once), and every quarter second reaps ended jobs and applies the scheduler's
//! decision (start, preempt, stop at the budget).
//!
//! Jobs run under a shim (`medtrain node shim`, a child in its own session) that holds the job's lock
//! file for as long as the job lives and writes the job's exit record. The daemon can die at any point
//! (kill -9): the shims and jobs go on, and the restarted daemon finds each running job again by its
//! lock (held: still running; free: ended, its exit record says how, or lost when there is none, and
//! then it is requeued). A job's row is committed as running before its shim starts, so a job is never
//! started twice.

use super::config::{check_quota, valid_name, Mode, NodeConfig, Quota, Role, SandboxPolicy};
use super::devices::{self, Inventory};
use super::proto::{self, Op, Request};
use super::sched::{self, Action};
use super::slurm;
use super::store::{self, Actor, Job, NewJob, State, Store, DAEMON};
use super::NodeError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
const MAX_CONNECTIONS: usize = 64;

pub struct Daemon {
    cfg: NodeConfig,
    inv: Inventory,
    store: Store,
    state_dir: PathBuf,
    exe: PathBuf,
    sandbox: bool,
    /// shims this daemon started, reaped when they end
    children: HashMap<i64, std::process::Child>,
    /// the reason last written for each waiting job (written again only when it changes)
    reasons: HashMap<i64, String>,
    /// Slurm mode: when the cluster was last asked for its jobs' states
    slurm_polled: Option<std::time::Instant>,
}

#[derive(Debug, Clone)]
struct Caller {
    uid: u32,
    role: Role,
    projects: Vec<String>,
}

impl Caller {
    fn actor(&self) -> Actor<'static> {
        let role = match self.role {
            Role::Operator => "operator",
            Role::Researcher => "researcher",
        };
        Actor { uid: Some(self.uid), role }
    }
    fn sees(&self, project: &str) -> bool {
        self.role == Role::Operator || self.projects.iter().any(|p| p == project)
    }
}

fn private_dir(p: &Path) -> Result<(), NodeError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| NodeError::io(p, e))
}

/// A name from a request as it may appear in a message: a plain name is repeated, anything that could
/// be an identifier (digits, symbols) is not.
fn shown(name: &str) -> String {
    if valid_name(name) {
        crate::data::reportable::quoted(name)
    } else {
        "(a name that is not valid)".into()
    }
}

pub fn run(config: &Path) -> Result<(), NodeError> {
    let cfg = NodeConfig::load(config)?;
    private_dir(&cfg.node.state_dir)?;
    for d in ["jobs", "runs"] {
        private_dir(&cfg.node.state_dir.join(d))?;
    }
    // one daemon per state directory
    let lock_path = cfg.node.state_dir.join("daemon.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| NodeError::io(&lock_path, e))?;
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(NodeError::Invalid(format!(
            "another daemon already runs on {} (its lock {} is held)",
            cfg.node.state_dir.display(),
            lock_path.display()
        )));
    }
    let mut inv = devices::inventory(Some(&cfg));
    inv.sandbox_refused = super::sandbox::probe().err();
    if cfg.node.mode == Mode::Slurm {
        // what jobs may ask for is what the cluster has
        let totals = slurm::cluster_totals()?;
        inv.classes = totals
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(class, n)| devices::DeviceClass {
                class: class.clone(),
                units: (0..*n).map(|i| i.to_string()).collect(),
                visible_env: String::new(),
            })
            .collect();
        inv.classes.sort_by(|a, b| a.class.cmp(&b.class));
    }
    let sandbox = match (&inv.sandbox_refused, cfg.node.sandbox) {
        (None, _) => true,
        (Some(why), SandboxPolicy::Required) => {
            return Err(NodeError::Invalid(format!(
                "the kernel refuses the job sandbox ({why}); node.sandbox = \"required\" stops the daemon here \
                 (set node.sandbox = \"auto\" to run jobs without isolation)"
            )))
        }
        (Some(why), SandboxPolicy::Auto) => {
            eprintln!("medtrain node: WARNING: THE JOB SANDBOX IS UNAVAILABLE ({why}).");
            eprintln!("medtrain node: WARNING: jobs will run WITHOUT network or filesystem isolation.");
            false
        }
    };
    for (i, p) in cfg.projects.iter().enumerate() {
        for class in p.quota.keys() {
            if inv.class(class).is_none() {
                return Err(NodeError::Invalid(format!(
                    "{}: project[{i}].quota.{class}: this node has no device class {class:?} (it has: {})",
                    config.display(),
                    inv.classes.iter().map(|c| c.class.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    let db_path = cfg.node.state_dir.join("node.sqlite");
    let mut store = Store::open(&db_path)?;
    for p in &cfg.projects {
        store.seed_priority(&p.name, p.priority)?;
        for (class, q) in &p.quota {
            store.seed_quota(&p.name, class, q)?;
        }
    }
    store.audit(
        DAEMON,
        "daemon start",
        None,
        None,
        serde_json::json!({"sandbox": sandbox, "pid": std::process::id()}),
    )?;
    let exe =
        std::env::current_exe().map_err(|e| NodeError::Invalid(format!("cannot find the medtrain binary: {e}")))?;
    let listener = bind(&cfg.node.socket)?;
    eprintln!(
        "medtrain node: listening on {} (state {}), {} device classes, sandbox {}",
        cfg.node.socket.display(),
        cfg.node.state_dir.display(),
        inv.classes.len(),
        if sandbox { "on" } else { "OFF" }
    );
    let max_request = cfg.node.max_request_bytes;
    let d = Arc::new(Mutex::new(Daemon {
        cfg,
        inv,
        store,
        state_dir: PathBuf::new(),
        exe,
        sandbox,
        children: HashMap::new(),
        reasons: HashMap::new(),
        slurm_polled: None,
    }));
    {
        let mut g = d.lock().unwrap_or_else(|e| e.into_inner());
        g.state_dir = g.cfg.node.state_dir.canonicalize().map_err(|e| NodeError::io(&g.cfg.node.state_dir, e))?;
        if g.cfg.node.mode == Mode::Slurm {
            g.sync_qos()?;
        }
        g.tick();
    }
    let ticker = Arc::clone(&d);
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        ticker.lock().unwrap_or_else(|e| e.into_inner()).tick();
    });
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = writeln!(
                conn,
                "{}",
                proto::err(format!("the node serves {MAX_CONNECTIONS} connections at once; try again"))
            );
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let (d, open) = (Arc::clone(&d), Arc::clone(&open));
        std::thread::spawn(move || {
            serve(&d, conn, max_request);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    drop(lock);
    Ok(())
}

fn bind(path: &Path) -> Result<UnixListener, NodeError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(NodeError::Invalid(format!("{}: a daemon already answers on this socket", path.display())));
        }
        std::fs::remove_file(path).map_err(|e| NodeError::io(path, e))?;
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
    }
    let l = UnixListener::bind(path).map_err(|e| NodeError::io(path, e))?;
    // anyone may connect; what they may do is decided by their uid's role
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|e| NodeError::io(path, e))?;
    Ok(l)
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// One connection: requests in turn until the client closes, a request is malformed beyond reading,
/// or it is idle for a minute.
fn serve(d: &Arc<Mutex<Daemon>>, conn: UnixStream, max_request: usize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(60)));
    let Ok(mut out) = conn.try_clone() else { return };
    let Some(uid) = peer_uid(&conn) else { return };
    let caller = {
        let g = d.lock().unwrap_or_else(|e| e.into_inner());
        g.cfg.user(uid).map(|u| Caller { uid, role: u.role, projects: u.projects.clone() })
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        let n = match (&mut reader).take(max_request as u64 + 1).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if line.len() > max_request {
            let _ = writeln!(
                out,
                "{}",
                proto::err(format!("request longer than node.max_request_bytes ({max_request} bytes)"))
            );
            return;
        }
        let Some(caller) = caller.as_ref() else {
            let _ = writeln!(
                out,
                "{}",
                proto::err(format!("uid {uid} has no role on this node (see [[user]] in the node config)"))
            );
            d.lock()
                .unwrap_or_else(|e| e.into_inner())
                .store
                .audit(
                    Actor { uid: Some(uid), role: "none" },
                    "refused",
                    None,
                    None,
                    serde_json::json!({"why": "no role"}),
                )
                .ok();
            return;
        };
        let req: Request = match std::str::from_utf8(&line).ok().and_then(|s| serde_json::from_str(s.trim()).ok()) {
            Some(r) => r,
            None => {
                // serde's message may quote the request: say only what is expected
                let msg =
                    "malformed request: expected one JSON object per line with \"version\": 1 and a known \"op\" \
                           and its fields (see the socket API in the README)";
                if writeln!(out, "{}", proto::err(msg)).is_err() {
                    return;
                }
                continue;
            }
        };
        if req.version != proto::VERSION {
            let _ = writeln!(
                out,
                "{}",
                proto::err(format!("unsupported version {}: this node speaks {}", req.version, proto::VERSION))
            );
            continue;
        }
        if let Op::Logs { job, offset, follow } = req.op {
            if logs(d, caller, job, offset, follow, &mut out).is_err() {
                return;
            }
            continue;
        }
        let resp = d.lock().unwrap_or_else(|e| e.into_inner()).handle(caller, req.op);
        if writeln!(out, "{resp}").is_err() {
            return;
        }
    }
}

/// `logs`: the job's output from `offset`, in chunks of at most 256 KiB; with `follow`, until the job
/// has ended and everything is sent.
fn logs(
    d: &Arc<Mutex<Daemon>>,
    caller: &Caller,
    id: i64,
    mut offset: u64,
    follow: bool,
    out: &mut UnixStream,
) -> std::io::Result<()> {
    let (path, _) = {
        let g = d.lock().unwrap_or_else(|e| e.into_inner());
        match g.visible_job(caller, id) {
            Ok(j) => (g.job_dir(j.id).join("log"), j),
            Err(e) => return writeln!(out, "{e}"),
        }
    };
    loop {
        let ended = {
            let g = d.lock().unwrap_or_else(|e| e.into_inner());
            g.store.job(id).ok().flatten().is_none_or(|j| j.state.terminal())
        };
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            f.seek(std::io::SeekFrom::Start(offset))?;
            f.take(256 << 10).read_to_end(&mut buf)?;
        }
        // whole characters only: a cut one is sent with the next chunk
        let cut = match std::str::from_utf8(&buf) {
            Ok(_) => buf.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => buf.len(),
        };
        buf.truncate(cut);
        offset += buf.len() as u64;
        let more = buf.len() == 256 << 10;
        let done = !follow || (ended && !more && buf.is_empty());
        if !buf.is_empty() || done {
            let chunk = String::from_utf8_lossy(&buf);
            writeln!(
                out,
                "{}",
                proto::ok(serde_json::json!({"job": id, "chunk": chunk, "offset": offset, "done": done && !more}))
            )?;
        }
        if done && !more {
            return Ok(());
        }
        if buf.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Daemon {
    fn job_dir(&self, id: i64) -> PathBuf {
        self.state_dir.join("jobs").join(id.to_string())
    }

    fn visible_job(&self, caller: &Caller, id: i64) -> Result<Job, serde_json::Value> {
        match self.store.job(id) {
            Ok(Some(j)) if caller.sees(&j.project) => Ok(j),
            // another project's job is answered as a missing one: its existence is not disclosed
            Ok(_) => Err(proto::err(format!("no job {id} in your projects"))),
            Err(e) => Err(proto::err(e)),
        }
    }

    fn handle(&mut self, caller: &Caller, op: Op) -> serde_json::Value {
        match self.handle_op(caller, op) {
            Ok(v) => proto::ok(v),
            Err(e) => e,
        }
    }

    fn forbidden(&mut self, caller: &Caller, what: &str, project: Option<&str>) -> serde_json::Value {
        let project = project.filter(|p| valid_name(p));
        self.store.audit(caller.actor(), "refused", project, None, serde_json::json!({"op": what})).ok();
        proto::err(format!("{what}: not allowed for a {}", caller.actor().role))
    }

    fn handle_op(&mut self, caller: &Caller, op: Op) -> Result<serde_json::Value, serde_json::Value> {
        match op {
            Op::Whoami => Ok(serde_json::json!({"uid": caller.uid, "role": caller.role, "projects": caller.projects})),
            Op::Devices => Ok(serde_json::json!({"devices": self.inv})),
            Op::Submit { project, devices, priority, config, image, command } => {
                if self.cfg.project(&project).is_none() {
                    return Err(proto::err(format!(
                        "unknown project {}: the node's projects are {}",
                        shown(&project),
                        self.project_names()
                    )));
                }
                if !caller.sees(&project) {
                    return Err(self.forbidden(caller, "submit to another project", Some(&project)));
                }
                let (class, count) = proto::parse_devices(&devices)
                    .ok_or_else(|| proto::err("devices: expected CLASS:COUNT, e.g. cpu:1 or cuda:2"))?;
                let have = self.inv.class(&class).map_or(0, |c| c.units.len()) as u32;
                if have == 0 {
                    return Err(proto::err(format!(
                        "devices: this node has no {} devices (it has: {})",
                        shown(&class),
                        self.class_names()
                    )));
                }
                if count > have {
                    return Err(proto::err(format!("devices: {count} {class} asked, the node has {have}")));
                }
                if !(-1000..=1000).contains(&priority) {
                    return Err(proto::err("priority: expected -1000..=1000"));
                }
                let (kind, cmd) = match (&config, &image) {
                    (Some(c), None) => {
                        check_config(c, caller.uid)?;
                        ("train", Vec::new())
                    }
                    (None, Some(i)) => {
                        check_image(i, &command)?;
                        ("container", command)
                    }
                    _ => return Err(proto::err("submit: give either config (a training config) or image and command")),
                };
                let j = NewJob {
                    project: &project,
                    uid: caller.uid,
                    kind,
                    config: config.as_deref(),
                    image: image.as_deref(),
                    command: &cmd,
                    class: &class,
                    count,
                    priority,
                };
                let id = self.store.submit(caller.actor(), &j).map_err(proto::err)?;
                self.tick();
                Ok(serde_json::json!({"job": id}))
            }
            Op::List { all } => {
                let jobs = self.store.jobs(None, !all).map_err(proto::err)?;
                let jobs: Vec<Job> = jobs.into_iter().filter(|j| caller.sees(&j.project)).collect();
                Ok(serde_json::json!({"jobs": jobs}))
            }
            Op::Cancel { job } => {
                let j = self.visible_job(caller, job)?;
                match j.state {
                    State::Queued if j.slurm_id.is_none() => {
                        self.store
                            .update(
                                caller.actor(),
                                job,
                                "cancel",
                                "state = 'cancelled', ended = ?2, reason = 'cancelled while queued'",
                                &[&store::now()],
                                serde_json::json!({}),
                            )
                            .map_err(proto::err)?;
                    }
                    State::Running | State::Stopping => {
                        self.store
                            .update(
                                caller.actor(),
                                job,
                                "cancel",
                                "state = 'stopping', stop = 'cancel'",
                                &[],
                                serde_json::json!({}),
                            )
                            .map_err(proto::err)?;
                        self.signal(job, libc::SIGTERM);
                    }
                    s => return Err(proto::err(format!("job {job} has already ended ({})", s.as_str()))),
                }
                Ok(serde_json::json!({"job": job}))
            }
            Op::Logs { .. } => Err(proto::err("logs: served by the connection")),
            Op::QuotaSet { project, class, devices, device_hours, reserved, priority } => {
                if caller.role != Role::Operator {
                    return Err(self.forbidden(caller, "quota set", Some(&project)));
                }
                if self.cfg.project(&project).is_none() {
                    return Err(proto::err(format!(
                        "unknown project {}: the node's projects are {}",
                        shown(&project),
                        self.project_names()
                    )));
                }
                if self.inv.class(&class).is_none() {
                    return Err(proto::err(format!(
                        "class: this node has no device class {} (it has: {})",
                        shown(&class),
                        self.class_names()
                    )));
                }
                let q = Quota { devices, device_hours, reserved };
                check_quota(&q).map_err(|m| proto::err(format!("quota: {m}")))?;
                if priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
                    return Err(proto::err("priority: expected -1000..=1000"));
                }
                self.store.set_quota(caller.actor(), &project, &class, &q, priority).map_err(proto::err)?;
                if self.cfg.node.mode == Mode::Slurm {
                    self.sync_qos().map_err(proto::err)?;
                }
                self.tick();
                Ok(serde_json::json!({"project": project, "class": class, "quota": q}))
            }
            Op::QuotaShow { project } => {
                if let Some(p) = &project {
                    if !caller.sees(p) {
                        return Err(self.forbidden(caller, "quota show of another project", Some(p)));
                    }
                }
                let (period, from, to) = store::month(store::now());
                let used = self.store.device_hours(from, to).map_err(proto::err)?;
                let prio: HashMap<String, i64> = self.store.priorities().map_err(proto::err)?.into_iter().collect();
                let rows: Vec<serde_json::Value> = self
                    .store
                    .quotas()
                    .map_err(proto::err)?
                    .into_iter()
                    .filter(|(p, _, _)| caller.sees(p) && project.as_ref().is_none_or(|x| x == p))
                    .map(|(p, c, q)| {
                        let u = used.iter().find(|(up, uc, _)| *up == p && *uc == c).map_or(0.0, |x| x.2);
                        let held: u32 = self
                            .store
                            .jobs(Some(&p), true)
                            .unwrap_or_default()
                            .iter()
                            .filter(|j| j.class == c && matches!(j.state, State::Running | State::Stopping))
                            .map(|j| j.count)
                            .sum();
                        serde_json::json!({"project": p, "class": c, "devices": q.devices, "device_hours": q.device_hours,
                            "reserved": q.reserved, "priority": prio.get(&p).copied().unwrap_or(0),
                            "devices_in_use": held, "device_hours_used": u, "period": period})
                    })
                    .collect();
                Ok(serde_json::json!({"quotas": rows}))
            }
            Op::Usage { period } => {
                let (period, from, to) = match period {
                    None => store::month(store::now()),
                    Some(p) => {
                        store::parse_period(&p).ok_or_else(|| proto::err("period: expected a month as YYYY-MM"))?
                    }
                };
                let hours = self.store.device_hours(from, to).map_err(proto::err)?;
                let eps = self.store.epsilon(from, to).map_err(proto::err)?;
                let mut by: BTreeMap<String, serde_json::Value> = BTreeMap::new();
                for p in self.cfg.projects.iter().filter(|p| caller.sees(&p.name)) {
                    let dh: BTreeMap<&str, f64> =
                        hours.iter().filter(|h| h.0 == p.name).map(|h| (h.1.as_str(), h.2)).collect();
                    let (epsilon, runs) = eps.iter().find(|x| x.0 == p.name).map_or((0.0, 0), |x| (x.1, x.2));
                    by.insert(
                        p.name.clone(),
                        serde_json::json!({"project": p.name, "device_hours": dh,
                        "epsilon_spent": epsilon, "runs": runs}),
                    );
                }
                Ok(serde_json::json!({"period": period, "from": store::iso(from), "to": store::iso(to),
                    "projects": by.into_values().collect::<Vec<_>>(),
                    "note": "epsilon_spent sums the final epsilon of each run ended in the period (basic composition across runs; the ledger composes runs on one dataset tighter)"}))
            }
            Op::Audit { since, limit } => {
                let limit = limit.clamp(1, 100_000);
                let rows = self.store.audit_rows(since, None, limit).map_err(proto::err)?;
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|r| caller.role == Role::Operator || r.project.as_deref().is_some_and(|p| caller.sees(p)))
                    .collect();
                Ok(serde_json::json!({"audit": rows}))
            }
        }
    }

    fn project_names(&self) -> String {
        self.cfg.projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn class_names(&self) -> String {
        self.inv.classes.iter().map(|c| c.class.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Whether the shim of job `id` is alive: it holds the job's lock for as long as it lives.
    fn alive(&self, id: i64) -> bool {
        let Ok(f) = std::fs::File::open(self.job_dir(id).join("lock")) else { return false };
        // SAFETY: flock on an open descriptor
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
        !free
    }

    fn signal(&mut self, id: i64, sig: libc::c_int) {
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

    /// Reaps ended jobs, then applies the scheduler's decision.
    pub fn tick(&mut self) {
        if self.cfg.node.mode == Mode::Slurm {
            if self.slurm_polled.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.slurm_polled = Some(std::time::Instant::now());
                if let Err(e) = self.slurm_tick() {
                    eprintln!("medtrain node: {e}");
                }
            }
            return;
        }
        self.children.retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
        let jobs = match self.store.jobs(None, true) {
            Ok(j) => j,
            Err(err) => {
                eprintln!("medtrain node: {err}");
                return;
            }
        };
        let mut changed = false;
        for j in jobs.iter().filter(|j| matches!(j.state, State::Running | State::Stopping)) {
            if !self.alive(j.id) && !self.children.contains_key(&j.id) {
                if let Err(err) = self.ended(j) {
                    eprintln!("medtrain node: job {}: {err}", j.id);
                }
                changed = true;
            }
        }
        let jobs = if changed { self.store.jobs(None, true).unwrap_or_default() } else { jobs };
        let actions = match self.decide(&jobs) {
            Ok(a) => a,
            Err(err) => {
                eprintln!("medtrain node: {err}");
                return;
            }
        };
        for a in actions {
            let r = match a {
                Action::Start { job, units, borrowed } => match jobs.iter().find(|j| j.id == job) {
                    Some(j) => self.start(j, &units, borrowed),
                    None => Ok(()),
                },
                Action::Preempt { job, for_project } => self.stop(
                    job,
                    "preempt",
                    &format!("preempted: its borrowed devices are reclaimed for project {for_project}"),
                ),
                Action::Budget { job } => {
                    self.stop(job, "budget", "stopped: the project's device-hours for this month are used up")
                }
                Action::Wait { job, reason } => {
                    if self.reasons.get(&job) != Some(&reason) {
                        let r = self.store.set_reason(job, &reason);
                        self.reasons.insert(job, reason);
                        r.map_err(NodeError::from)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(err) = r {
                eprintln!("medtrain node: {err}");
            }
        }
    }

    fn sync_qos(&self) -> Result<(), NodeError> {
        let quotas = self.store.quotas()?;
        let priorities: HashMap<String, i64> = self.store.priorities()?.into_iter().collect();
        let totals: HashMap<String, u64> =
            self.inv.classes.iter().map(|c| (c.class.clone(), c.units.len() as u64)).collect();
        let projects: Vec<String> = self.cfg.projects.iter().map(|p| p.name.clone()).collect();
        slurm::sync_qos(&quotas, &priorities, &totals, &projects, &self.cfg.node.slurm_account)
    }

    /// Slurm mode: queued jobs go to sbatch; the states Slurm reports come back into the queue.
    fn slurm_tick(&mut self) -> Result<(), NodeError> {
        // the month turned: the device-minutes of every project QOS start again
        let (period, _, _) = store::month(store::now());
        if self.store.meta("slurm_period")?.as_deref() != Some(period.as_str()) {
            let projects: Vec<String> = self.cfg.projects.iter().map(|p| p.name.clone()).collect();
            slurm::reset_usage(&projects)?;
            self.store.set_meta("slurm_period", &period)?;
        }
        let jobs = self.store.jobs(None, true)?;
        for j in jobs.iter().filter(|j| j.state == State::Queued && j.slurm_id.is_none()) {
            let spec = self.spec(j, &[], 1)?;
            let dir = self.job_dir(j.id);
            let spec_path = dir.join("spec.json");
            let text = serde_json::to_vec_pretty(&spec).map_err(|e| NodeError::Invalid(e.to_string()))?;
            crate::staging::write_atomic(&spec_path, &text).map_err(|e| NodeError::io(&spec_path, e))?;
            let sub = slurm::Submit {
                job_dir: &dir,
                work: &spec.cwd,
                name: format!("medtrain-{}", j.id),
                qos: slurm::qos(&j.project),
                class: &j.class,
                count: j.count,
                partition: self.cfg.node.slurm_partition.as_deref(),
                account: &self.cfg.node.slurm_account,
                exe: &self.exe,
            };
            match slurm::submit(&sub) {
                Ok(id) => {
                    let run = spec.train_runs.clone().unwrap_or(spec.cwd.clone()).display().to_string();
                    self.store.update(
                        DAEMON,
                        j.id,
                        "sbatch",
                        "slurm_id = ?2, run_dir = ?3",
                        &[&id, &run],
                        serde_json::json!({"slurm_job": id}),
                    )?;
                }
                Err(e) => {
                    self.store.finish(
                        j.id,
                        State::Failed,
                        Some(&format!("sbatch refused it: {e}")),
                        None,
                        None,
                        false,
                        "failed",
                    )?;
                }
            }
        }
        let jobs = self.store.jobs(None, true)?;
        let ids: Vec<String> = jobs.iter().filter_map(|j| j.slurm_id.clone()).collect();
        let seen = slurm::poll(&ids)?;
        for j in &jobs {
            let Some(sid) = &j.slurm_id else { continue };
            let Some(s) = seen.get(sid) else { continue };
            self.slurm_apply(j, sid, s)?;
        }
        Ok(())
    }

    fn slurm_apply(&mut self, j: &Job, sid: &str, s: &slurm::Seen) -> Result<(), NodeError> {
        let borrowing = s.qos == slurm::BORROW_QOS;
        let dir = self.job_dir(j.id);
        let epsilon = || if j.kind == "train" { last_epsilon(&dir.join("log")) } else { None };
        match s.state.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "PREEMPTED" | "SUSPENDED" | "RESV_DEL_HOLD" => {
                if matches!(j.state, State::Running | State::Stopping) {
                    // it ran and is waiting again: Slurm preempted and requeued it
                    let reason = "preempted by Slurm (its devices were reclaimed); requeued to resume";
                    self.store.finish(j.id, State::Queued, Some(reason), None, epsilon(), true, "preempted")?;
                    if borrowing {
                        slurm::set_qos(sid, &slurm::qos(&j.project))?;
                    }
                    return Ok(());
                }
                if slurm::waits_for_quota(&s.reason) && !borrowing {
                    // the project's QOS is full: borrow idle devices, preemptable
                    slurm::set_qos(sid, slurm::BORROW_QOS)?;
                    self.store.update(
                        DAEMON,
                        j.id,
                        "borrow",
                        "borrowed = 1",
                        &[],
                        serde_json::json!({"slurm_job": sid}),
                    )?;
                    return Ok(());
                }
                let reason = if slurm::waits_for_budget(&s.reason) {
                    format!("device-hours of project {} used up this month (Slurm: {})", j.project, s.reason)
                } else {
                    format!("waiting in Slurm ({})", s.reason)
                };
                if self.reasons.get(&j.id) != Some(&reason) {
                    self.store.set_reason(j.id, &reason)?;
                    self.reasons.insert(j.id, reason);
                }
            }
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "STAGE_OUT" | "SIGNALING" => {
                if j.state == State::Queued {
                    let run = j.run_dir.clone().unwrap_or_default();
                    self.store.start(j, &[], borrowing, &run, s.restarts + 1, Some(sid))?;
                }
            }
            "COMPLETED" => {
                self.store.finish(j.id, State::Succeeded, Some("finished"), Some(0), epsilon(), false, "succeeded")?
            }
            "TIMEOUT" => {
                // Slurm stopped it at its QOS's device-minutes (or a time limit): back to the queue, to
                // be submitted again and wait there until the project has hours again
                let reason = "stopped by Slurm at the project's device-hours (or a time limit); requeued to resume";
                self.store.finish(j.id, State::Queued, Some(reason), s.exit_code, epsilon(), false, "requeued")?;
                self.store.update(
                    DAEMON,
                    j.id,
                    "resubmit",
                    "slurm_id = NULL",
                    &[],
                    serde_json::json!({"slurm_job": sid}),
                )?;
            }
            "CANCELLED" => {
                let reason = if j.stop.as_deref() == Some("cancel") { "cancelled" } else { "cancelled in Slurm" };
                self.store.finish(j.id, State::Cancelled, Some(reason), s.exit_code, epsilon(), false, "cancelled")?
            }
            other => {
                let reason = format!("Slurm ended it as {other} (exit status {})", s.exit_code.unwrap_or(-1));
                self.store.finish(j.id, State::Failed, Some(&reason), s.exit_code, epsilon(), false, "failed")?
            }
        }
        Ok(())
    }

    fn decide(&self, jobs: &[Job]) -> Result<Vec<Action>, NodeError> {
        let classes: BTreeMap<String, Vec<String>> =
            self.inv.classes.iter().map(|c| (c.class.clone(), c.units.clone())).collect();
        let quotas: HashMap<(String, String), Quota> =
            self.store.quotas()?.into_iter().map(|(p, c, q)| ((p, c), q)).collect();
        let priorities: HashMap<String, i64> = self.store.priorities()?.into_iter().collect();
        let decayed: HashMap<String, f64> =
            self.store.decayed_usage(self.cfg.node.fair_share_half_life_hours)?.into_iter().collect();
        let (_, from, to) = store::month(store::now());
        let used: HashMap<(String, String), f64> =
            self.store.device_hours(from, to)?.into_iter().map(|(p, c, h)| ((p, c), h)).collect();
        Ok(sched::decide(&sched::Inputs {
            classes: &classes,
            jobs,
            quotas: &quotas,
            priorities: &priorities,
            decayed: &decayed,
            used: &used,
        }))
    }

    fn stop(&mut self, id: i64, kind: &str, reason: &str) -> Result<(), NodeError> {
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

    /// A job whose shim has ended: its exit record decides its new state.
    fn ended(&mut self, j: &Job) -> Result<(), NodeError> {
        let dir = self.job_dir(j.id);
        let rec: Option<ExitRecord> = std::fs::read(dir.join(format!("exit-{}.json", j.attempt)))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let epsilon = if j.kind == "train" { last_epsilon(&dir.join("log")) } else { None };
        let Some(rec) = rec else {
            let reason = "lost: its process ended without an exit record (node restart?); requeued";
            self.store.finish(j.id, State::Queued, Some(reason), None, epsilon, false, "lost")?;
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
        self.store.finish(j.id, state, Some(&reason), rec.code, epsilon, preempted, action)?;
        Ok(())
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
        };
        Ok(spec)
    }

    fn start(&mut self, j: &Job, units: &[String], borrowed: bool) -> Result<(), NodeError> {
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
                Ok(())
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

/// The epsilon of the last JSON summary line `medtrain train --json` wrote to the log.
fn last_epsilon(log: &Path) -> Option<f64> {
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

fn check_config(path: &str, uid: u32) -> Result<(), serde_json::Value> {
    use std::os::unix::fs::MetadataExt;
    let p = Path::new(path);
    if !p.is_absolute() || path.len() > 4096 {
        return Err(proto::err("config: expected an absolute path (the client resolves it)"));
    }
    let m = std::fs::metadata(p).map_err(|err| proto::err(format!("config: cannot read it: {}", err.kind())))?;
    if !m.is_file() {
        return Err(proto::err("config: not a regular file"));
    }
    if m.uid() != uid && m.mode() & 0o004 == 0 {
        return Err(proto::err("config: neither yours nor readable by everyone"));
    }
    if m.len() > 1 << 20 {
        return Err(proto::err("config: longer than 1 MiB"));
    }
    crate::train::config::TrainConfig::load(p).map_err(proto::err)?;
    Ok(())
}

fn check_image(image: &str, command: &[String]) -> Result<(), serde_json::Value> {
    let ok = !image.is_empty()
        && image.len() <= 256
        && image.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !image.starts_with('-');
    if !ok {
        return Err(proto::err("image: expected a container image reference (letters, digits, . _ - / : @)"));
    }
    if command.is_empty() || command.len() > 256 || command.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
        return Err(proto::err("command: expected 1 to 256 arguments of at most 4096 bytes"));
    }
    let podman = ["/usr/bin/podman", "/usr/local/bin/podman", "/bin/podman"].iter().any(|p| Path::new(p).exists());
    if !podman {
        return Err(proto::err("image: podman is not installed on this node, so container jobs cannot run"));
    }
    Ok(())
}
