//! The socket side of the daemon: who is calling (SO_PEERCRED and the node config's roles), reading
//! bounded requests, and answering each op of the API ([`super::proto`]) within the caller's role.

use super::config::{check_quota, valid_name, Mode, Quota, Role};
use super::daemon::Daemon;
use super::proto::{self, Op, Request};
use super::store::{self, Actor, Job, NewJob, State};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub(super) struct Caller {
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

/// A name from a request as it may appear in a message: a plain name is repeated, anything that could
/// be an identifier (digits, symbols) is not.
fn shown(name: &str) -> String {
    if valid_name(name) {
        crate::data::reportable::quoted(name)
    } else {
        "(a name that is not valid)".into()
    }
}

pub(super) fn peer_uid(s: &UnixStream) -> Option<u32> {
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

/// The connection's reads, each bounded by what is left of the request's deadline. With a timeout per
/// read only, a client sending one byte every 20 s held its connection for ever, and 64 such clients
/// held every connection the node serves.
struct Deadline {
    conn: UnixStream,
    until: std::time::Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request's deadline passed"));
        }
        self.conn.set_read_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

/// One connection: requests in turn until the client closes, a request is malformed beyond reading,
/// or a request does not arrive whole within `deadline` (`node.request_timeout_s`) of the answer to
/// the one before (or of connecting): idle time and a request sent a byte at a time both count.
pub(super) fn serve(d: &Arc<Mutex<Daemon>>, conn: UnixStream, max_request: usize, deadline: Duration) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(60)));
    let Ok(mut out) = conn.try_clone() else { return };
    let Some(uid) = peer_uid(&conn) else { return };
    let caller = {
        let g = d.lock().unwrap_or_else(|e| e.into_inner());
        g.cfg.user(uid).map(|u| Caller { uid, role: u.role, projects: u.projects.clone() })
    };
    let mut reader = BufReader::new(Deadline { conn, until: std::time::Instant::now() + deadline });
    loop {
        reader.get_mut().until = std::time::Instant::now() + deadline;
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
            d.lock().unwrap_or_else(|e| e.into_inner()).audit_refusal(
                Actor { uid: Some(uid), role: "none" },
                None,
                serde_json::json!({"why": "no role"}),
            );
            return;
        };
        let parsed = std::str::from_utf8(&line)
            .map_err(|_| "the line is not UTF-8 text".to_string())
            .and_then(|s| serde_json::from_str::<Request>(s.trim()).map_err(|e| e.to_string()));
        let req: Request = match parsed {
            Ok(r) => r,
            Err(why) => {
                // what serde says is wrong (`missing field `job``, `unknown variant ...`, the field's
                // expected type), its quoted fragments shown only where they are plain names: it may
                // quote the request's values
                let msg = format!(
                    "malformed request: {}; expected one JSON object per line with \"version\": 1, a known \"op\" \
                     and its fields (see the socket API in the README)",
                    crate::data::reportable::redact_quoted(&why)
                );
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
        // JSON has no NaN or infinity: a client serializing one sends null, which must not read as "no
        // limit" (that is the field left out). Checked for an operator only: anyone else's quota_set is
        // refused, and audited, for its role.
        if caller.role == Role::Operator
            && matches!(req.op, Op::QuotaSet { device_hours: None, .. })
            && explicit_null(&line, "device_hours")
        {
            let msg = "quota: device_hours must be a number of device-hours in 0..=1e9 (got null; leave the \
                       field out for no limit)";
            if writeln!(out, "{}", proto::err(msg)).is_err() {
                return;
            }
            continue;
        }
        if let Op::Logs { job, offset, follow } = req.op {
            if logs(d, caller, job, offset, follow, &mut out).is_err() {
                return;
            }
            continue;
        }
        // the files a submitted config names, checked readable by its submitter before the daemon's
        // lock is taken (a walk of a large export held every other client and the scheduler)
        if let Op::Submit { config: Some(c), .. } = &req.op {
            if let Err(e) = submitter_can_read(c, caller.uid) {
                if writeln!(out, "{e}").is_err() {
                    return;
                }
                continue;
            }
        }
        let resp = d.lock().unwrap_or_else(|e| e.into_inner()).handle(caller, req.op);
        if writeln!(out, "{resp}").is_err() {
            return;
        }
    }
}

/// Whether the request in `line` (already parsed once) has `field` and it is null.
fn explicit_null(line: &[u8], field: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v.get(field).is_some_and(|f| f.is_null()))
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
        let mut g = d.lock().unwrap_or_else(|e| e.into_inner());
        match g.visible_job(caller, id) {
            Ok(j) => (g.job_dir(j.id).join("log"), j),
            Err(e) => return writeln!(out, "{e}"),
        }
    };
    // a quiet job's follower still hears from the daemon (its client stops waiting after READ_TIMEOUT)
    let mut sent = std::time::Instant::now();
    loop {
        let ended = {
            let g = d.lock().unwrap_or_else(|e| e.into_inner());
            g.store.job(id).ok().flatten().is_none_or(|j| j.state.terminal())
        };
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            // an offset past the log's end is answered (a seek past what the file system allows failed,
            // and the connection closed without a word)
            if offset > f.metadata()?.len() {
                return writeln!(out, "{}", proto::err(format!("offset {offset} is past the end of the job's log")));
            }
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
        if !buf.is_empty() || done || sent.elapsed() >= super::client::HEARTBEAT {
            sent = std::time::Instant::now();
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
    fn visible_job(&mut self, caller: &Caller, id: i64) -> Result<Job, serde_json::Value> {
        match self.store.job(id) {
            Ok(Some(j)) if caller.sees(&j.project) => Ok(j),
            // another project's job is answered as a missing one (its existence is not disclosed), and
            // the attempt is in the audit trail, as every refusal for a role is
            Ok(Some(j)) => {
                let detail = serde_json::json!({"why": "another project's job", "job": id});
                self.audit_refusal(caller.actor(), Some(&j.project), detail);
                Err(proto::err(format!("no job {id} in your projects")))
            }
            Ok(None) => Err(proto::err(format!("no job {id} in your projects"))),
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
        self.audit_refusal(caller.actor(), project, serde_json::json!({"op": what}));
        proto::err(format!("{what}: not allowed for a {}", caller.actor().role))
    }

    fn handle_op(&mut self, caller: &Caller, op: Op) -> Result<serde_json::Value, serde_json::Value> {
        match op {
            Op::Whoami => Ok(serde_json::json!({"uid": caller.uid, "role": caller.role, "projects": caller.projects})),
            Op::Devices => Ok(serde_json::json!({"devices": self.inv})),
            Op::Submit { project, devices, priority, config, image, command } => {
                if self.cfg.project(&project).is_none() {
                    // a researcher learns their own projects, not every project of the node
                    let known = match caller.role {
                        Role::Operator => format!("the node's projects are {}", self.project_names()),
                        Role::Researcher => format!("your projects are {}", caller.projects.join(", ")),
                    };
                    return Err(proto::err(format!("unknown project {}: {known}", shown(&project))));
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
                // one user's queue is bounded: a loop of submits filled the node's store and every
                // listing without end
                let waiting = self.store.queued_of(caller.uid).map_err(proto::err)?;
                if waiting >= self.cfg.node.max_queued_per_user {
                    return Err(proto::err(format!(
                        "you have {waiting} jobs queued, the most one user may have waiting (node.max_queued_per_user): \
                         cancel some, or submit again when some have started"
                    )));
                }
                let (kind, cmd) = match (&config, &image) {
                    // a train job keeps its config's digest where a container job keeps its command
                    (Some(c), None) => ("train", vec![format!("sha256:{}", check_config(c, caller.uid)?)]),
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
                // (-0.0 is 0: found by a tester, accepted and stored as -0.0)
                let device_hours = device_hours.map(|h| h + 0.0);
                let q = Quota { devices, device_hours, reserved };
                check_quota(&q).map_err(|m| proto::err(format!("quota: {m}")))?;
                if priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
                    return Err(proto::err("priority: expected -1000..=1000"));
                }
                let before =
                    self.store.set_quota(caller.actor(), &project, &class, &q, priority).map_err(proto::err)?;
                if self.cfg.node.mode == Mode::Slurm {
                    self.sync_qos().map_err(proto::err)?;
                }
                self.tick();
                Ok(serde_json::json!({"project": project, "class": class, "quota": q, "before": before}))
            }
            Op::QuotaShow { project } => {
                if let Some(p) = &project {
                    if !caller.sees(p) {
                        return Err(self.forbidden(caller, "quota show of another project", Some(p)));
                    }
                    // (an operator's: it answered an empty list)
                    if self.cfg.project(p).is_none() {
                        return Err(proto::err(format!("unknown project {}", shown(p))));
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
                // the config's projects, and those with usage in the period that it no longer lists (an
                // operator's: found by a tester, a project removed while its jobs ran vanished from the
                // report)
                let mut names: Vec<(String, bool)> = self.cfg.projects.iter().map(|p| (p.name.clone(), true)).collect();
                if caller.role == Role::Operator {
                    for n in hours.iter().map(|h| &h.0).chain(eps.iter().map(|e| &e.0)) {
                        if !names.iter().any(|(p, _)| p == n) {
                            names.push((n.clone(), false));
                        }
                    }
                }
                for (name, listed) in names.iter().filter(|(p, _)| caller.sees(p)) {
                    let dh: BTreeMap<&str, f64> =
                        hours.iter().filter(|h| h.0 == *name).map(|h| (h.1.as_str(), h.2)).collect();
                    let (epsilon, runs) = eps.iter().find(|x| x.0 == *name).map_or((0.0, 0), |x| (x.1, x.2));
                    let mut row = serde_json::json!({"project": name, "device_hours": dh,
                        "epsilon_spent": epsilon, "runs": runs});
                    if !listed {
                        row["note"] = "not a project of the node's config".into();
                    }
                    by.insert(name.clone(), row);
                }
                Ok(serde_json::json!({"period": period, "from": store::iso(from), "to": store::iso(to),
                    "projects": by.into_values().collect::<Vec<_>>(),
                    "note": "epsilon_spent sums the final epsilon of each run ended in the period (basic composition across runs; the ledger composes runs on one dataset tighter)"}))
            }
            Op::Audit { since, limit } => {
                let limit = limit.clamp(1, 100_000);
                let visible = |p: Option<&str>| caller.role == Role::Operator || p.is_some_and(|p| caller.sees(p));
                let (rows, truncated) = self.store.audit_rows(since, &visible, limit).map_err(proto::err)?;
                Ok(serde_json::json!({"audit": rows, "truncated": truncated}))
            }
        }
    }

    fn project_names(&self) -> String {
        self.cfg.projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    fn class_names(&self) -> String {
        self.inv.classes.iter().map(|c| c.class.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The groups of `uid` (its primary group and those the group database lists it in); none for a uid
/// without a user.
/// The primary group and every group of `uid` (none for a uid without a passwd entry: nobody's group).
pub(super) fn user_groups(uid: u32) -> (u32, Vec<u32>) {
    const NOGROUP: u32 = 65_534;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the buffers are ours and sized as passed; `found` points into `pw` when set
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return (NOGROUP, Vec::new());
    }
    // asked again with room for as many as it says (a user in more than 256 groups was read as in
    // their primary group alone)
    let mut groups = vec![0 as libc::gid_t; 256];
    for _ in 0..2 {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: pw_name is the NUL-terminated name getpwuid_r wrote into `buf`; `groups` holds `n`
        let rc = unsafe { libc::getgrouplist(pw.pw_name, pw.pw_gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return (pw.pw_gid, groups);
        }
        groups = vec![0; (n.max(0) as usize).clamp(257, 1 << 16)];
    }
    (pw.pw_gid, vec![pw.pw_gid])
}

/// Whether the kernel lets `uid` (its primary group `gid`, its `groups`) read `path`, asked of a forked
/// child that takes the caller's identity and calls access(2): ACLs, every group and each directory on
/// the path (links followed) as the kernel decides for the caller. `None` where the daemon cannot take
/// another identity (it does not run as root) or the child could not.
fn kernel_readable(path: &Path, uid: u32, gid: u32, groups: &[u32]) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let groups = groups.to_vec();
    let mut cmd = std::process::Command::new("/bin/true");
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only system calls on memory made before the fork; the child exits
    // with its answer before it would exec
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                libc::_exit(2);
            }
            libc::_exit(if libc::access(cpath.as_ptr(), libc::R_OK) == 0 { 0 } else { 1 });
        })
    };
    match cmd.status().ok()?.code() {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// Whether `uid` (in `groups`) has the permission `bits` (4 read, 1 search) on a file of `m`.
fn permitted(m: &std::fs::Metadata, uid: u32, groups: &[u32], bits: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let shift = match () {
        _ if uid == 0 => return true,
        _ if m.uid() == uid => 6,
        _ if groups.contains(&m.gid()) => 3,
        _ => 0,
    };
    (m.mode() >> shift) & bits == bits
}

/// Checks that the caller may read the config (every directory on its path searchable by them, the
/// file readable: the daemon reads it with its own rights, and answered a config in a directory only
/// root could enter with its parse error), then parses it; its SHA-256, which the job checks.
fn check_config(path: &str, uid: u32) -> Result<String, serde_json::Value> {
    let p = Path::new(path);
    if !p.is_absolute() || path.len() > 4096 {
        return Err(proto::err("config: expected an absolute path (the client resolves it)"));
    }
    let (gid, groups) = user_groups(uid);
    // the path is not repeated: nothing from a request is (the client has it and says it)
    let unreadable = || proto::err("config: you cannot read it (a directory on its path or the file itself)");
    // the kernel's answer for the caller where the daemon can ask it (ACLs and every group included:
    // the mode bits alone refused a config an ACL opens to the caller); else the mode bits
    match kernel_readable(p, uid, gid, &groups) {
        Some(false) => return Err(unreadable()),
        Some(true) => return read_checked(p),
        None => {}
    }
    // the path as given and, through any link, the file's own: both must be open to the caller (a
    // link in the caller's directory to a file in a root-only one passed the first alone)
    let real = std::fs::canonicalize(p).map_err(|_| unreadable())?;
    for dir in p.ancestors().skip(1).chain(real.ancestors().skip(1)) {
        let m = std::fs::metadata(dir).map_err(|_| unreadable())?;
        if !permitted(&m, uid, &groups, 1) {
            return Err(unreadable());
        }
    }
    let m = std::fs::metadata(p).map_err(|err| proto::err(format!("config: cannot read it: {}", err.kind())))?;
    if !m.is_file() {
        return Err(proto::err("config: not a regular file"));
    }
    if !permitted(&m, uid, &groups, 4) {
        return Err(unreadable());
    }
    read_checked(p)
}

/// The paths a config names (any string of it that names a file or directory, relative to its
/// directory as the job reads it): (its key, the path).
fn named_paths(config: &Path) -> Vec<(String, PathBuf)> {
    fn walk(v: &toml::Value, key: &str, base: &Path, out: &mut Vec<(String, PathBuf)>) {
        match v {
            toml::Value::String(s) if !s.is_empty() && s.len() <= 4096 && !s.contains('\0') => {
                let p = base.join(s);
                if std::fs::symlink_metadata(&p).is_ok() {
                    out.push((key.to_string(), p));
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(v, &if key.is_empty() { k.clone() } else { format!("{key}.{k}") }, base, out);
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, key, base, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let base = config.parent().unwrap_or(Path::new("/"));
    if let Some(t) = crate::read_text_bounded(config, 1 << 20).ok().and_then(|t| toml::from_str::<toml::Table>(&t).ok())
    {
        walk(&toml::Value::Table(t), "", base, &mut out);
    }
    // (more than 200 are refused by the caller: not cut here)
    out.truncate(201);
    out
}

/// [`named_paths_readable`] of a config a caller submits, where the daemon can take their identity
/// (it runs as root; the config's own checks follow under the lock).
fn submitter_can_read(config: &str, uid: u32) -> Result<(), serde_json::Value> {
    let p = Path::new(config);
    // SAFETY: geteuid has no preconditions
    if !p.is_absolute() || config.len() > 4096 || unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let (gid, groups) = user_groups(uid);
    named_paths_readable(p, uid, gid, &groups)
}

/// How long the check of what a config names may take (a file on a hung mount, an input too large).
const CAN_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// [`can_read`]'s answer when it looked at more entries than it may: refused, not passed.
const TOO_MANY: u8 = 254;

/// Checks that the caller could read every file and directory their config names (the data, its
/// labels, a code map, a model), each file under a directory included: the job reads them with the
/// node's rights, and read what its researcher could not (found by a tester: a link named `k.csv`
/// to the node's signing key, whose QA error then told its header's shape). Asked of a process that
/// takes the caller's identity and opens each one (`medtrain node can-read`).
fn named_paths_readable(config: &Path, uid: u32, gid: u32, groups: &[u32]) -> Result<(), serde_json::Value> {
    use std::os::unix::process::CommandExt;
    let named = named_paths(config);
    if named.is_empty() {
        return Ok(());
    }
    if named.len() > 200 {
        return Err(proto::err("config: names more than 200 files and directories: too many to check for you"));
    }
    let Ok(exe) = std::env::current_exe() else { return Ok(()) };
    let groups = groups.to_vec();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["node", "can-read"]).args(named.iter().map(|n| &n.1));
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd.env_clear();
    // SAFETY: setgroups, setgid and setuid are async-signal-safe, on memory made before the fork (in
    // this order, here: Command's own uid and gid come before its closures, and setgroups then fails)
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let Ok(mut child) = cmd.spawn() else {
        return Err(proto::err("config: the files it names could not be checked for you"));
    };
    let start = std::time::Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if start.elapsed() < CAN_READ_DEADLINE => std::thread::sleep(std::time::Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(proto::err(format!(
                    "config: the files it names could not be checked for you within {} s (a mount that does not \
                     answer, or too many files)",
                    CAN_READ_DEADLINE.as_secs()
                )));
            }
        }
    };
    match code {
        Some(0) => Ok(()),
        Some(n @ 1..=200) => {
            // (a key of the user's file, shown where each part is a plain name: a map's key may be a code
            // or an id)
            let key = named
                .get(n as usize - 1)
                .map(|k| k.0.as_str())
                .filter(|k| k.split('.').all(|part| crate::data::reportable::quoted(part).starts_with('"')))
                .map_or("config: a path it names".to_string(), |k| format!("config key {k}"));
            Err(proto::err(format!(
                "{key}: you cannot read it, or a file or directory under it (a job reads its data with your \
                 rights checked)"
            )))
        }
        Some(c) if c == i32::from(TOO_MANY) => Err(proto::err(
            "config: the paths it names hold more than 1,000,000 files and directories: too many to check for you",
        )),
        _ => Err(proto::err("config: the files it names could not be checked for you")),
    }
}

/// The message of a refusal [`named_paths_readable`] made, for a job's start (the shim checks again).
pub(super) fn named_paths_refusal(config: &Path, uid: u32, gid: u32, groups: &[u32]) -> Option<String> {
    named_paths_readable(config, uid, gid, groups)
        .err()
        .map(|v| v["error"].as_str().unwrap_or("the files the config names could not be checked").to_string())
}

/// `medtrain node can-read PATH...` (internal, run as a caller): exits 0 when every path, and every file
/// and directory under a directory (links followed, each directory once), opens for reading; else the
/// 1-based index of the first path that does not. Prints nothing (the paths are not the daemon's to
/// show).
pub fn can_read(paths: &[PathBuf]) -> u8 {
    // Err: more entries than the budget (refused by the caller, never passed)
    fn readable(p: &Path, seen: &mut std::collections::HashSet<PathBuf>, budget: &mut u32) -> Result<bool, ()> {
        *budget = budget.checked_sub(1).ok_or(())?;
        let m = match std::fs::metadata(p) {
            Ok(m) => m,
            // a link to nothing is nothing read; a path the caller cannot reach is refused
            Err(e) => return Ok(e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(p).is_ok()),
        };
        if m.is_dir() {
            let Ok(real) = std::fs::canonicalize(p) else { return Ok(false) };
            if !seen.insert(real) {
                return Ok(true);
            }
            let Ok(entries) = std::fs::read_dir(p) else { return Ok(false) };
            for e in entries {
                let Ok(e) = e else { return Ok(false) };
                if !readable(&e.path(), seen, budget)? {
                    return Ok(false);
                }
            }
            Ok(true)
        } else if m.is_file() {
            Ok(std::fs::File::open(p).is_ok())
        } else {
            Ok(true)
        }
    }
    let mut seen = std::collections::HashSet::new();
    // (at most a million entries looked at: an export's files, not a whole disk)
    let mut budget = 1_000_000;
    for (i, p) in paths.iter().enumerate() {
        match readable(p, &mut seen, &mut budget) {
            Ok(true) => {}
            Ok(false) => return (i + 1).min(200) as u8,
            Err(()) => return TOO_MANY,
        }
    }
    0
}

/// A config the caller may read, parsed: its SHA-256 (which the job checks).
fn read_checked(p: &Path) -> Result<String, serde_json::Value> {
    let m = std::fs::metadata(p).map_err(|err| proto::err(format!("config: cannot read it: {}", err.kind())))?;
    if !m.is_file() {
        return Err(proto::err("config: not a regular file"));
    }
    if m.len() > 1 << 20 {
        return Err(proto::err("config: longer than 1 MiB"));
    }
    // (the path is the request's text: shown as the guard shows a user's paths; found by a tester, a
    // config named after a patient was repeated back)
    let (_, text) = crate::train::config::TrainConfig::load(p).map_err(|e| {
        let path = p.display().to_string();
        proto::err(e.to_string().replace(&path, &crate::data::guard::shown_user_path(&path)))
    })?;
    Ok(crate::train::seal::sha256_hex(text.as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Found by a tester: a config in a directory only root could enter was read for any researcher
    /// (its parse error answered), as only the file's own mode was checked.
    #[test]
    fn a_config_its_caller_cannot_reach_is_refused_before_it_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        let closed = tmp.path().join("closed");
        for d in [&open, &closed] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("c.toml"), "[data\n").unwrap();
            std::fs::set_permissions(d.join("c.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        // a uid that owns none of it (tests run as root: the files are root's)
        let stranger = 54_321;
        let answer = |p: &Path| check_config(p.to_str().unwrap(), stranger).unwrap_err().to_string();
        let e = answer(&closed.join("c.toml"));
        assert!(e.contains("you cannot read it") && !e.contains("line"), "{e}");
        // reachable: read, and its parse error answered
        let e = answer(&open.join("c.toml"));
        assert!(e.contains("line 1"), "{e}");
        // a file only its owner (root) may read, in an open directory
        std::fs::set_permissions(open.join("c.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(answer(&open.join("c.toml")).contains("you cannot read it"));
        // its owner reads everything
        assert!(check_config(closed.join("c.toml").to_str().unwrap(), 0).unwrap_err().to_string().contains("line 1"));
        // a link in an open directory to the file in the closed one (found by a review)
        std::os::unix::fs::symlink(closed.join("c.toml"), open.join("link.toml")).unwrap();
        assert!(answer(&open.join("link.toml")).contains("you cannot read it"));
        // a file only its owner may read by its mode, that an ACL opens to the caller (refused by the
        // mode bits alone); where the file system keeps ACLs
        let acl = open.join("acl.toml");
        std::fs::write(&acl, "[data\n").unwrap();
        std::fs::set_permissions(&acl, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(answer(&acl).contains("you cannot read it"));
        // the binary form of user::rw-, user:54321:r--, group::---, mask::r--, other::---
        let mut xattr = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 4, stranger),
            (0x04, 0, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            xattr.extend(tag.to_le_bytes());
            xattr.extend(perm.to_le_bytes());
            xattr.extend(id.to_le_bytes());
        }
        let cpath = std::ffi::CString::new(acl.to_str().unwrap()).unwrap();
        let set = unsafe {
            libc::setxattr(cpath.as_ptr(), c"system.posix_acl_access".as_ptr(), xattr.as_ptr().cast(), xattr.len(), 0)
        };
        if set == 0 && unsafe { libc::geteuid() } == 0 {
            let e = answer(&acl);
            assert!(e.contains("line 1"), "{e}");
        } else {
            eprintln!("ACLs not checked: {}", std::io::Error::last_os_error());
        }
    }
}
