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

use super::api::serve;
use super::config::{Mode, NodeConfig, Quota, SandboxPolicy};
use super::devices::{self, Inventory};
use super::jobs::last_epsilon;
use super::proto;
use super::sched::{self, Action};
use super::slurm;
use super::store::{self, Job, State, Store, DAEMON};
use super::NodeError;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAX_CONNECTIONS: usize = 64;
/// Connections one uid may hold at once (a `queue logs --follow` holds one).
const MAX_CONNECTIONS_PER_UID: usize = 16;
/// Connections the uids without a role on the node hold at once, all together (each is refused at its
/// first request; counted apart, four such users held every connection the node serves).
const MAX_CONNECTIONS_NO_ROLE: usize = 4;
/// Connections kept for the operators: everyone else together holds at most MAX_CONNECTIONS less
/// these (four researchers with 16 idle connections each locked the operators out).
const OPERATOR_RESERVE: usize = 8;

pub struct Daemon {
    pub(super) cfg: NodeConfig,
    pub(super) inv: Inventory,
    pub(super) store: Store,
    pub(super) state_dir: PathBuf,
    pub(super) exe: PathBuf,
    pub(super) sandbox: bool,
    /// shims this daemon started, reaped when they end
    pub(super) children: HashMap<i64, std::process::Child>,
    /// the reason last written for each waiting job (written again only when it changes)
    pub(super) reasons: HashMap<i64, String>,
    /// Slurm mode: when the cluster was last asked for its jobs' states
    pub(super) slurm_polled: Option<std::time::Instant>,
    /// refusals audited per (uid, what was refused): when the last row was written and how many
    /// refusals since were folded into the next one ([`Daemon::audit_refusal`])
    pub(super) refusals: HashMap<(Option<u32>, String), (std::time::Instant, u64)>,
    /// the last error the ticks logged, when, and how many times since ([`Daemon::log_error`])
    pub(super) last_error: Option<(String, std::time::Instant, u64)>,
    /// `medtrain permit settle` of runs no attempt resumes, running ([`Daemon::poll_settling`])
    pub(super) settling: Vec<Settling>,
}

/// A run's settlement in the background.
pub(super) struct Settling {
    pub(super) job: i64,
    pub(super) project: String,
    pub(super) run: String,
    pub(super) child: std::process::Child,
    pub(super) started: std::time::Instant,
}

/// How long a settlement may take (the ledger's busy timeout is 60 s) before it is given up and said.
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);

/// At most one audit row per (uid, refusal) in this window.
const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) fn private_dir(p: &Path) -> Result<(), NodeError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| NodeError::io(p, e))
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
    if let Some(msg) = cfg.socket_dir_holds_job_paths().filter(|_| sandbox) {
        return Err(NodeError::Invalid(msg));
    }
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
    // the config seeds the store; once `quota set` has changed a value, the store's stands: a config
    // saying otherwise is said at start (found by a tester: edits of node.toml were ignored without a word)
    let stored = store.quotas()?;
    let priorities: HashMap<String, i64> = store.priorities()?.into_iter().collect();
    for p in &cfg.projects {
        if priorities.get(&p.name).is_some_and(|&s| s != p.priority) {
            eprintln!(
                "medtrain node: project {}: priority {} in the config, {} in the store (set earlier, by quota set or a config before): the \
                 store's stands; change it with medtrain quota set",
                p.name, p.priority, priorities[&p.name]
            );
        }
        store.seed_priority(&p.name, p.priority)?;
        for (class, q) in &p.quota {
            if let Some((_, _, s)) =
                stored.iter().find(|(sp, sc, _)| *sp == p.name && sc == class).filter(|s| s.2 != *q)
            {
                eprintln!(
                    "medtrain node: project {}: quota.{class} {} in the config, {} in the store (set earlier, by quota \
                     set or a config before): the store's stands; change it with medtrain quota set",
                    p.name,
                    serde_json::json!(q),
                    serde_json::json!(s)
                );
            }
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
    let deadline = Duration::from_secs(cfg.node.request_timeout_s);
    let with_role: std::collections::HashSet<u32> = cfg.users.iter().map(|u| u.uid).collect();
    let operators: std::collections::HashSet<u32> =
        cfg.users.iter().filter(|u| u.role == super::config::Role::Operator).map(|u| u.uid).collect();
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
        refusals: HashMap::new(),
        last_error: None,
        settling: Vec::new(),
    }));
    stop_on_signal(Arc::clone(&d));
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
    let not_operators = Arc::new(AtomicUsize::new(0));
    // connections per uid with a role, and of all uids without one together (None): one local user
    // cannot hold the connections everyone else needs
    let per_uid: Arc<Mutex<HashMap<Option<u32>, usize>>> = Arc::default();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let uid = super::api::peer_uid(&conn).filter(|u| with_role.contains(u));
        let cap = if uid.is_some() { MAX_CONNECTIONS_PER_UID } else { MAX_CONNECTIONS_NO_ROLE };
        let mine = per_uid.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).copied().unwrap_or(0);
        let operator = uid.is_some_and(|u| operators.contains(&u));
        let others_full = !operator && not_operators.load(Ordering::SeqCst) >= MAX_CONNECTIONS - OPERATOR_RESERVE;
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS || mine >= cap || others_full {
            let _ = writeln!(
                conn,
                "{}",
                proto::err(format!(
                    "the node serves {MAX_CONNECTIONS} connections at once ({} for users who are not operators), \
                     {MAX_CONNECTIONS_PER_UID} for one user, {MAX_CONNECTIONS_NO_ROLE} for all users without a role \
                     together; try again",
                    MAX_CONNECTIONS - OPERATOR_RESERVE
                ))
            );
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let counted = (!operator).then(|| {
            not_operators.fetch_add(1, Ordering::SeqCst);
            Arc::clone(&not_operators)
        });
        *per_uid.lock().unwrap_or_else(|e| e.into_inner()).entry(uid).or_default() += 1;
        let (d, open, per_uid) = (Arc::clone(&d), Arc::clone(&open), Arc::clone(&per_uid));
        std::thread::spawn(move || {
            // given back when the thread ends, a panic in a handler included
            struct Slot(
                Arc<AtomicUsize>,
                Arc<Mutex<HashMap<Option<u32>, usize>>>,
                Option<u32>,
                Option<Arc<AtomicUsize>>,
            );
            impl Drop for Slot {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                    if let Some(n) = &self.3 {
                        n.fetch_sub(1, Ordering::SeqCst);
                    }
                    let mut counts = self.1.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = counts.get_mut(&self.2) {
                        *n -= 1;
                        if *n == 0 {
                            counts.remove(&self.2);
                        }
                    }
                }
            }
            let _slot = Slot(open, per_uid, uid, counted);
            serve(&d, conn, max_request, deadline);
        });
    }
    drop(lock);
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP stop the daemon where it holds no lock on its state: a `daemon stop`
/// audit row (the signal, the jobs running), the socket removed, exit 0. The shims and their jobs go on,
/// as after kill -9, and a restarted daemon finds them again. (The signals are taken by one thread
/// with `sigwait`: blocked in every other thread of the daemon; its children start with none blocked.)
fn stop_on_signal(d: Arc<Mutex<Daemon>>) {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        // before the daemon's other threads start: they inherit the mask
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        let name = match sig {
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            _ => "SIGHUP",
        };
        let mut g = d.lock().unwrap_or_else(|e| e.into_inner());
        let running = g
            .store
            .jobs(None, true)
            .map(|j| j.iter().filter(|j| matches!(j.state, State::Running | State::Stopping)).count())
            .unwrap_or(0);
        let detail = serde_json::json!({"signal": name, "pid": std::process::id(), "running_jobs": running});
        if let Err(e) = g.store.audit(DAEMON, "daemon stop", None, None, detail) {
            eprintln!("medtrain node: the stop could not be audited: {e}");
        }
        let _ = std::fs::remove_file(&g.cfg.node.socket);
        eprintln!("medtrain node: stopped by {name}; {running} running job(s) go on under their shims");
        std::process::exit(0);
    });
}

/// Unblocks every signal, between fork and exec of a program the daemon starts: its threads block the
/// signals that stop it ([`stop_on_signal`]), a child inherits the mask, and std does not clear it
/// where the child is forked (found by the tests: the shims never saw the SIGTERM of a preemption).
pub(super) fn unblock_signals() -> std::io::Result<()> {
    // SAFETY: async-signal-safe calls on a local set
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        match libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) {
            0 => Ok(()),
            rc => Err(std::io::Error::from_raw_os_error(rc)),
        }
    }
}

fn bind(path: &Path) -> Result<UnixListener, NodeError> {
    if let Ok(meta) = path.symlink_metadata() {
        use std::os::unix::fs::FileTypeExt;
        // only a socket a stopped daemon left is removed: a file named by node.socket by mistake was
        // deleted with its contents
        if !meta.file_type().is_socket() {
            return Err(NodeError::Invalid(format!(
                "config key node.socket: {} exists and is not a socket; name a path where the daemon may create one",
                path.display()
            )));
        }
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

impl Daemon {
    /// Audits a refused request, at most one row per (uid, refusal) a minute, so that a caller retrying
    /// in a loop (a uid with no role needs no permission to connect) cannot grow the trail without
    /// bound: the refusals in between are counted, and the next row of the same kind says how many
    /// (`"folded"`).
    pub(super) fn audit_refusal(
        &mut self,
        who: super::store::Actor,
        project: Option<&str>,
        mut detail: serde_json::Value,
    ) {
        let now = std::time::Instant::now();
        if self.refusals.len() > 10_000 {
            self.refusals.retain(|_, (t, _)| now.duration_since(*t) < REFUSAL_WINDOW);
        }
        match self.refusals.entry((who.uid, detail.to_string())) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let (t, n) = e.get_mut();
                if now.duration_since(*t) < REFUSAL_WINDOW {
                    *n += 1;
                    return;
                }
                if *n > 0 {
                    detail["folded"] = (*n).into();
                }
                *t = now;
                *n = 0;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((now, 0));
            }
        }
        self.store.audit(who, "refused", project, None, detail).ok();
    }

    /// Logs an error of a tick: one repeated (a full disk fails every tick, 4 a second) once a minute,
    /// with how many times it came (found by a tester: the log grew by 3.6 lines a second).
    fn log_error(&mut self, msg: String) {
        let now = std::time::Instant::now();
        match &mut self.last_error {
            Some((last, at, n)) if *last == msg && at.elapsed() < REFUSAL_WINDOW => *n += 1,
            Some((last, _, n)) if *last == msg => {
                eprintln!("medtrain node: {msg} (again, {} times in the last minute)", *n + 1);
                self.last_error = Some((msg, now, 0));
            }
            _ => {
                eprintln!("medtrain node: {msg}");
                self.last_error = Some((msg, now, 0));
            }
        }
    }

    /// The settlements that ended: each said and audited (one that failed, with what to do).
    fn poll_settling(&mut self) {
        use std::io::Read;
        let mut i = 0;
        while i < self.settling.len() {
            let s = &mut self.settling[i];
            let done = match s.child.try_wait() {
                Ok(Some(st)) => Some(st.success()),
                Ok(None) if s.started.elapsed() >= SETTLE_DEADLINE => {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            };
            let Some(ok) = done else {
                i += 1;
                continue;
            };
            let mut s = self.settling.swap_remove(i);
            let mut said = String::new();
            let pipe = if ok {
                s.child.stdout.take().map(|p| Box::new(p) as Box<dyn Read>)
            } else {
                s.child.stderr.take().map(|p| Box::new(p) as Box<dyn Read>)
            };
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(64 << 10).read_to_string(&mut said);
            }
            let said = said.trim();
            if ok {
                eprintln!("medtrain node: job {}: {} settled, as no attempt resumes it: {said}", s.job, s.run);
                let detail = serde_json::json!({"run": s.run, "settled": said});
                self.store.audit(DAEMON, "run_settled", Some(&s.project), Some(s.job), detail).ok();
            } else if !["settled already", "already settled", "no reservation"].iter().any(|m| said.contains(m)) {
                eprintln!(
                    "medtrain node: job {}: {} could not be settled ({}); settle it with medtrain permit settle",
                    s.job,
                    s.run,
                    if said.is_empty() { "no answer within 300 s" } else { said }
                );
            }
        }
    }

    /// Reaps ended jobs, then applies the scheduler's decision.
    pub fn tick(&mut self) {
        if !self.settling.is_empty() {
            self.poll_settling();
        }
        if self.cfg.node.mode == Mode::Slurm {
            if self.slurm_polled.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.slurm_polled = Some(std::time::Instant::now());
                if let Err(e) = self.slurm_tick() {
                    self.log_error(e.to_string());
                }
            }
            return;
        }
        self.children.retain(|_, c| !matches!(c.try_wait(), Ok(Some(_))));
        let jobs = match self.store.jobs(None, true) {
            Ok(j) => j,
            Err(err) => {
                self.log_error(err.to_string());
                return;
            }
        };
        let mut changed = false;
        for j in jobs.iter().filter(|j| matches!(j.state, State::Running | State::Stopping)) {
            if !self.alive(j.id) && !self.children.contains_key(&j.id) {
                if let Err(err) = self.ended(j) {
                    self.log_error(format!("job {}: {err}", j.id));
                }
                changed = true;
            }
        }
        let jobs = if changed { self.store.jobs(None, true).unwrap_or_default() } else { jobs };
        // the reasons kept for jobs that have ended are dropped (the map would grow with every job)
        if !self.reasons.is_empty() {
            let ids: std::collections::HashSet<i64> = jobs.iter().map(|j| j.id).collect();
            self.reasons.retain(|id, _| ids.contains(id));
        }
        if jobs.is_empty() {
            // nothing queued, running or stopping: no decision to make, and the quota, usage and
            // fair-share queries the decision reads would run 4 times a second for nothing
            return;
        }
        let actions = match self.decide(&jobs) {
            Ok(a) => a,
            Err(err) => {
                self.log_error(err.to_string());
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
                self.log_error(err.to_string());
            }
        }
    }

    pub(super) fn sync_qos(&self) -> Result<(), NodeError> {
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
                self.store.finish(j.id, State::Cancelled, Some(reason), s.exit_code, epsilon(), false, "cancelled")?;
                if j.kind == "train" {
                    self.settle_abandoned(j, true);
                }
            }
            other => {
                let reason = format!("Slurm ended it as {other} (exit status {})", s.exit_code.unwrap_or(-1));
                self.store.finish(j.id, State::Failed, Some(&reason), s.exit_code, epsilon(), false, "failed")?;
                // (as in local mode: no attempt resumes its runs)
                if j.kind == "train" {
                    self.settle_abandoned(j, true);
                }
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
}
