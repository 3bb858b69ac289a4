//! The daemon's SQLite store (WAL): jobs, quotas, device usage and the audit trail. Every state change
//! is one transaction that also appends its audit row, so the queue and its history never disagree,
//! and a daemon killed at any point comes back to the last committed state.

use super::config::Quota;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("node store {path}: {0}", path = store_path())]
    Sql(#[from] rusqlite::Error),
    #[error("node store {path}: {0}", path = store_path())]
    Invalid(String),
}

/// The file of the store this process opened first (a daemon has one), for its errors (found by a
/// tester: "node store: database or disk is full" named no file).
static STORE_PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn store_path() -> &'static str {
    STORE_PATH.get().map_or("(not opened)", String::as_str)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    uid INTEGER NOT NULL,
    kind TEXT NOT NULL,
    config TEXT,
    image TEXT,
    command TEXT NOT NULL,
    class TEXT NOT NULL,
    count INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    stop TEXT,
    run_dir TEXT,
    units TEXT NOT NULL DEFAULT '[]',
    borrowed INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    exit_code INTEGER,
    epsilon REAL,
    slurm_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS quotas (
    project TEXT NOT NULL,
    class TEXT NOT NULL,
    devices INTEGER NOT NULL,
    device_hours REAL,
    reserved INTEGER NOT NULL,
    PRIMARY KEY (project, class)
);
CREATE TABLE IF NOT EXISTS priorities (project TEXT PRIMARY KEY, priority INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL,
    project TEXT NOT NULL,
    class TEXT NOT NULL,
    devices INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL
);
CREATE INDEX IF NOT EXISTS usage_end ON usage(end);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    uid INTEGER,
    role TEXT,
    action TEXT NOT NULL,
    project TEXT,
    job INTEGER,
    detail TEXT NOT NULL
);
";

/// Fair share reads usage segments that ended at most this many half-lives ago (see
/// [`Store::decayed_usage`]).
pub const FAIR_SHARE_HORIZON: f64 = 64.0;

/// The segments fair share reads: open, or ended after the horizon (?2); ?1 is now.
const DECAYED_USAGE: &str =
    "SELECT project, devices, start, COALESCE(end, ?1) FROM usage WHERE end IS NULL OR end > ?2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Queued,
    Running,
    /// asked to stop (preemption, cancel, budget); `stop` says which
    Stopping,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "stopping" => State::Stopping,
            "succeeded" => State::Succeeded,
            "cancelled" => State::Cancelled,
            _ => State::Failed,
        }
    }
    pub fn terminal(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub project: String,
    pub uid: u32,
    /// train | container
    pub kind: String,
    pub config: Option<String>,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub class: String,
    pub count: u32,
    pub priority: i64,
    pub state: State,
    pub reason: Option<String>,
    /// why a stopping job was asked to stop: preempt | cancel | budget
    pub stop: Option<String>,
    pub run_dir: Option<String>,
    pub units: Vec<String>,
    pub borrowed: bool,
    pub attempt: u32,
    pub preemptions: u32,
    pub submitted: f64,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub exit_code: Option<i32>,
    pub epsilon: Option<f64>,
    pub slurm_id: Option<String>,
}

const JOB_COLUMNS: &str = "id, project, uid, kind, config, image, command, class, count, priority, state, reason, \
     stop, run_dir, units, borrowed, attempt, preemptions, submitted, started, ended, exit_code, epsilon, slurm_id";

fn job_row(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(Job {
        id: r.get(0)?,
        project: r.get(1)?,
        uid: r.get(2)?,
        kind: r.get(3)?,
        config: r.get(4)?,
        image: r.get(5)?,
        command: list(r.get(6)?),
        class: r.get(7)?,
        count: r.get(8)?,
        priority: r.get(9)?,
        state: State::parse(&r.get::<_, String>(10)?),
        reason: r.get(11)?,
        stop: r.get(12)?,
        run_dir: r.get(13)?,
        units: list(r.get(14)?),
        borrowed: r.get(15)?,
        attempt: r.get(16)?,
        preemptions: r.get(17)?,
        submitted: r.get(18)?,
        started: r.get(19)?,
        ended: r.get(20)?,
        exit_code: r.get(21)?,
        epsilon: r.get(22)?,
        slurm_id: r.get(23)?,
    })
}

/// Who did something, for the audit trail (`None`: the daemon itself).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub uid: Option<u32>,
    pub role: &'a str,
}

pub const DAEMON: Actor<'static> = Actor { uid: None, role: "daemon" };

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub uid: Option<u32>,
    pub role: Option<String>,
    pub action: String,
    pub project: Option<String>,
    pub job: Option<i64>,
    pub detail: serde_json::Value,
}

pub struct NewJob<'a> {
    pub project: &'a str,
    pub uid: u32,
    pub kind: &'a str,
    pub config: Option<&'a str>,
    pub image: Option<&'a str>,
    pub command: &'a [String],
    pub class: &'a str,
    pub count: u32,
    pub priority: i64,
}

pub struct Store {
    db: Connection,
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `2026-11-29T19:30:05Z`
pub fn iso(t: f64) -> String {
    let s = t.floor() as i64;
    let (y, m, d) = crate::data::time::civil_from_days(s.div_euclid(86_400));
    let r = s.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", r / 3600, r % 3600 / 60, r % 60)
}

/// The calendar month (UTC) holding `t`, as `2026-11`, and its bounds in Unix seconds.
pub fn month(t: f64) -> (String, f64, f64) {
    let (y, m, _) = crate::data::time::civil_from_days((t.floor() as i64).div_euclid(86_400));
    period_bounds(y, m)
}

pub fn period_bounds(y: i64, m: u32) -> (String, f64, f64) {
    let start = crate::data::time::days_from_civil(y, m, 1) * 86_400;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = crate::data::time::days_from_civil(ny, nm, 1) * 86_400;
    (format!("{y:04}-{m:02}"), start as f64, end as f64)
}

/// `2026-11` -> its bounds; `None` when it is not a month.
pub fn parse_period(s: &str) -> Option<(String, f64, f64)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m): (i64, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1970..=9999).contains(&y) && (1..=12).contains(&m)).then(|| period_bounds(y, m))
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let _ = STORE_PATH.set(path.display().to_string());
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA)?;
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')", [])?;
        Ok(Store { db })
    }

    fn audit_tx(
        tx: &rusqlite::Transaction,
        who: Actor,
        action: &str,
        project: Option<&str>,
        job: Option<i64>,
        detail: serde_json::Value,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO audit (at, uid, role, action, project, job, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now(), who.uid, who.role, action, project, job, detail.to_string()],
        )?;
        Ok(())
    }

    /// Appends an audit row on its own (for events that change no other table: a refused request).
    pub fn audit(
        &mut self,
        who: Actor,
        action: &str,
        project: Option<&str>,
        job: Option<i64>,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        Self::audit_tx(&tx, who, action, project, job, detail)?;
        tx.commit()?;
        Ok(())
    }

    pub fn submit(&mut self, who: Actor, j: &NewJob) -> Result<i64, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO jobs (project, uid, kind, config, image, command, class, count, priority, state, submitted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10)",
            params![
                j.project,
                j.uid,
                j.kind,
                j.config,
                j.image,
                serde_json::to_string(j.command).unwrap_or_default(),
                j.class,
                j.count,
                j.priority,
                now()
            ],
        )?;
        let id = tx.last_insert_rowid();
        let detail = serde_json::json!({"kind": j.kind, "class": j.class, "count": j.count, "priority": j.priority});
        Self::audit_tx(&tx, who, "submit", Some(j.project), Some(id), detail)?;
        tx.commit()?;
        Ok(id)
    }

    pub fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        Ok(self.db.query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_row).optional()?)
    }

    /// How many jobs of `uid` wait in the queue.
    pub fn queued_of(&self, uid: u32) -> Result<u64, StoreError> {
        Ok(self.db.query_row("SELECT COUNT(*) FROM jobs WHERE uid = ?1 AND state = 'queued'", [uid], |r| r.get(0))?)
    }

    /// Jobs, newest first; `active`: only those not ended.
    pub fn jobs(&self, project: Option<&str>, active: bool) -> Result<Vec<Job>, StoreError> {
        let mut q = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR project = ?1)");
        if active {
            q += " AND state IN ('queued', 'running', 'stopping')";
        }
        q += " ORDER BY id DESC LIMIT 10000";
        let mut st = self.db.prepare(&q)?;
        let rows = st.query_map([project], job_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A state change of one job with its audit row, in one transaction. `set` is the SQL assignment
    /// list (`state = ?2, ...`); `args` bind ?2 on (?1 is the id).
    pub fn update(
        &mut self,
        who: Actor,
        id: i64,
        action: &str,
        set: &str,
        args: &[&dyn rusqlite::ToSql],
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let project: Option<String> =
            tx.query_row("SELECT project FROM jobs WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&id];
        all.extend_from_slice(args);
        tx.execute(&format!("UPDATE jobs SET {set} WHERE id = ?1"), all.as_slice())?;
        Self::audit_tx(&tx, who, action, project.as_deref(), Some(id), detail)?;
        tx.commit()?;
        Ok(())
    }

    /// A job starts on `units`: its row and the usage segment it opens, in one transaction.
    pub fn start(
        &mut self,
        job: &Job,
        units: &[String],
        borrowed: bool,
        run_dir: &str,
        attempt: u32,
        slurm_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let t = now();
        tx.execute(
            "UPDATE jobs SET state = 'running', units = ?2, borrowed = ?3, run_dir = ?4, attempt = ?5,
                 started = COALESCE(started, ?6), reason = NULL, stop = NULL, slurm_id = ?7 WHERE id = ?1",
            params![job.id, serde_json::to_string(units).unwrap_or_default(), borrowed, run_dir, attempt, t, slurm_id],
        )?;
        tx.execute(
            "INSERT INTO usage (job, project, class, devices, start) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job.id, job.project, job.class, job.count, t],
        )?;
        let detail = serde_json::json!({"units": units, "borrowed": borrowed, "attempt": attempt});
        Self::audit_tx(&tx, DAEMON, "start", Some(&job.project), Some(job.id), detail)?;
        tx.commit()?;
        Ok(())
    }

    /// A job's process ended: its new state and the usage segment closed, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        id: i64,
        state: State,
        reason: Option<&str>,
        exit_code: Option<i32>,
        epsilon: Option<f64>,
        preempted: bool,
        action: &str,
    ) -> Result<(), StoreError> {
        self.finish_at(id, state, reason, exit_code, epsilon, preempted, action, now())
    }

    /// [`Store::finish`] of a job whose process ended at `ended_at` (its exit record's time: a job that
    /// ended while the daemon was down is charged to its end, not to the daemon's restart; found by a
    /// tester); a time before the job's open usage began, or after now, counts as now.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_at(
        &mut self,
        id: i64,
        state: State,
        reason: Option<&str>,
        exit_code: Option<i32>,
        epsilon: Option<f64>,
        preempted: bool,
        action: &str,
        ended_at: f64,
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let open: Option<f64> = tx
            .query_row("SELECT MAX(start) FROM usage WHERE job = ?1 AND end IS NULL", [id], |r| r.get(0))
            .optional()?
            .flatten();
        let now = now();
        let t =
            if ended_at.is_finite() && ended_at <= now && open.is_none_or(|s| ended_at >= s) { ended_at } else { now };
        let ended = state.terminal().then_some(t);
        tx.execute(
            "UPDATE jobs SET state = ?2, reason = ?3, exit_code = ?4, epsilon = COALESCE(?5, epsilon), ended = ?6,
                 stop = NULL, units = '[]', borrowed = 0, preemptions = preemptions + ?7 WHERE id = ?1",
            params![id, state.as_str(), reason, exit_code, epsilon, ended, preempted as i64],
        )?;
        tx.execute("UPDATE usage SET end = ?2 WHERE job = ?1 AND end IS NULL", params![id, t])?;
        let project: Option<String> =
            tx.query_row("SELECT project FROM jobs WHERE id = ?1", [id], |r| r.get(0)).optional()?;
        let detail = serde_json::json!({"state": state.as_str(), "exit_code": exit_code, "reason": reason,
            "epsilon": epsilon});
        Self::audit_tx(&tx, DAEMON, action, project.as_deref(), Some(id), detail)?;
        tx.commit()?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// Why a queued job waits (shown by `queue list`; not a state change, so not audited).
    pub fn set_reason(&mut self, id: i64, reason: &str) -> Result<(), StoreError> {
        self.db.execute("UPDATE jobs SET reason = ?2 WHERE id = ?1 AND state = 'queued'", params![id, reason])?;
        Ok(())
    }

    pub fn seed_quota(&mut self, project: &str, class: &str, q: &Quota) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO quotas (project, class, devices, device_hours, reserved) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![project, class, q.devices, q.device_hours, q.reserved],
        )?;
        Ok(())
    }

    pub fn seed_priority(&mut self, project: &str, priority: i64) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR IGNORE INTO priorities (project, priority) VALUES (?1, ?2)",
            params![project, priority],
        )?;
        Ok(())
    }

    pub fn set_quota(
        &mut self,
        who: Actor,
        project: &str,
        class: &str,
        q: &Quota,
        priority: Option<i64>,
    ) -> Result<Option<Quota>, StoreError> {
        let tx = self.db.transaction()?;
        // what it was, for the audit row and the operator (found by a tester: a limit left out was
        // removed without a word, and the row did not say what it replaced)
        let before: Option<Quota> = tx
            .query_row(
                "SELECT devices, device_hours, reserved FROM quotas WHERE project = ?1 AND class = ?2",
                params![project, class],
                |r| Ok(Quota { devices: r.get(0)?, device_hours: r.get(1)?, reserved: r.get(2)? }),
            )
            .optional()?;
        tx.execute(
            "INSERT INTO quotas (project, class, devices, device_hours, reserved) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (project, class) DO UPDATE SET devices = ?3, device_hours = ?4, reserved = ?5",
            params![project, class, q.devices, q.device_hours, q.reserved],
        )?;
        if let Some(p) = priority {
            tx.execute(
                "INSERT INTO priorities (project, priority) VALUES (?1, ?2)
                 ON CONFLICT (project) DO UPDATE SET priority = ?2",
                params![project, p],
            )?;
        }
        let detail = serde_json::json!({"class": class, "quota": q, "priority": priority, "before": before});
        Self::audit_tx(&tx, who, "quota set", Some(project), None, detail)?;
        tx.commit()?;
        Ok(before)
    }

    /// (project, class) -> quota
    pub fn quotas(&self) -> Result<Vec<(String, String, Quota)>, StoreError> {
        let mut st = self
            .db
            .prepare("SELECT project, class, devices, device_hours, reserved FROM quotas ORDER BY project, class")?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, Quota { devices: r.get(2)?, device_hours: r.get(3)?, reserved: r.get(4)? }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn priorities(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut st = self.db.prepare("SELECT project, priority FROM priorities")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Device-hours per (project, class) within [from, to); open segments count up to `now`.
    pub fn device_hours(&self, from: f64, to: f64) -> Result<Vec<(String, String, f64)>, StoreError> {
        let t = now();
        let mut st = self.db.prepare(
            "SELECT project, class, SUM(devices * (MIN(COALESCE(end, ?3), ?2) - MAX(start, ?1))) / 3600.0
             FROM usage WHERE start < ?2 AND COALESCE(end, ?3) > ?1 GROUP BY project, class ORDER BY project, class",
        )?;
        let rows = st
            .query_map(params![from, to, t], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, f64>(2)?.max(0.0))))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Past usage per project, each device-hour weighted by 0.5^(age / half_life): fair share's input.
    /// The daemon asks for it on every scheduling decision, so it reads only the segments open or
    /// ended within [`FAIR_SHARE_HORIZON`] half-lives (through the index on `end`), not the whole
    /// table: an older segment is weighted by less than 2^-64, below what an f64 sum of the others
    /// can hold.
    pub fn decayed_usage(&self, half_life_hours: f64) -> Result<Vec<(String, f64)>, StoreError> {
        let t = now();
        let k = std::f64::consts::LN_2 / (half_life_hours * 3600.0);
        let horizon = t - FAIR_SHARE_HORIZON * half_life_hours * 3600.0;
        let mut st = self.db.prepare(DECAYED_USAGE)?;
        let mut out: std::collections::BTreeMap<String, f64> = Default::default();
        let rows = st.query_map(params![t, horizon], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?, r.get::<_, f64>(2)?, r.get::<_, f64>(3)?))
        })?;
        for row in rows {
            let (p, d, s, e) = row?;
            // the integral of 2^(-(t - x)/H) over [s, e], in hours
            let v = d * ((-k * (t - e).max(0.0)).exp() - (-k * (t - s).max(0.0)).exp()) / k / 3600.0;
            *out.entry(p).or_default() += v.max(0.0);
        }
        Ok(out.into_iter().collect())
    }

    /// Epsilon of the runs each project ended in [from, to) (the last epsilon each job reported).
    pub fn epsilon(&self, from: f64, to: f64) -> Result<Vec<(String, f64, u32)>, StoreError> {
        let mut st = self.db.prepare(
            "SELECT project, SUM(epsilon), COUNT(*) FROM jobs WHERE epsilon IS NOT NULL AND ended >= ?1 AND ended < ?2
             GROUP BY project",
        )?;
        let rows = st
            .query_map(params![from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The newest `limit` audit rows since `since` that `visible` lets the caller see (by their project),
    /// oldest first, and whether older ones were left out (found by a tester: the oldest 10,000 were
    /// given, the caller's filter applied after the limit, and nothing said of the rest).
    pub fn audit_rows(
        &self,
        since: f64,
        visible: &dyn Fn(Option<&str>) -> bool,
        limit: u32,
    ) -> Result<(Vec<AuditRow>, bool), StoreError> {
        let mut st = self.db.prepare(
            "SELECT id, at, uid, role, action, project, job, detail FROM audit WHERE at >= ?1 ORDER BY id DESC",
        )?;
        let mut rows = Vec::new();
        let mut more = false;
        let all = st.query_map(params![since], |r| {
            let row = AuditRow {
                id: r.get(0)?,
                at: iso(r.get(1)?),
                uid: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                project: r.get(5)?,
                job: r.get(6)?,
                detail: serde_json::Value::Null,
            };
            Ok((row, r.get::<_, String>(7)?))
        })?;
        for row in all {
            let (mut row, detail) = row?;
            if !visible(row.project.as_deref()) {
                continue;
            }
            if rows.len() as u32 >= limit {
                more = true;
                break;
            }
            // (parsed for the rows given only: a researcher's call walks past the others)
            row.detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
            rows.push(row);
        }
        rows.reverse();
        Ok((rows, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by a tester: a job that ended while the daemon was down was charged to the daemon's
    /// restart. Its usage ends at the time it ended; a time before its start or in the future is now.
    #[test]
    fn a_job_finished_at_its_exit_time_is_charged_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        let t = now();
        for (job, start, ended, want) in [(1, t - 100.0, t - 90.0, t - 90.0), (2, t - 100.0, t - 200.0, t)] {
            store
                .db
                .execute(
                    "INSERT INTO jobs (id, project, uid, kind, command, class, count, priority, state, submitted)
                     VALUES (?1, 'a', 0, 'train', '[]', 'cpu', 1, 0, 'running', ?2)",
                    params![job, start],
                )
                .unwrap();
            store
                .db
                .execute(
                    "INSERT INTO usage (job, project, class, devices, start) VALUES (?1, 'a', 'cpu', 1, ?2)",
                    params![job, start],
                )
                .unwrap();
            store.finish_at(job, State::Succeeded, Some("finished"), Some(0), None, false, "succeeded", ended).unwrap();
            let end: f64 = store.db.query_row("SELECT end FROM usage WHERE job = ?1", [job], |r| r.get(0)).unwrap();
            assert!((end - want).abs() < 5.0, "job {job}: {end} vs {want}");
        }
    }

    /// Found by a tester: the audit gave the oldest 10,000 rows, the caller's projects filtered after the
    /// limit, and said nothing of the rest. It gives the newest the caller sees, oldest first, and says
    /// when older ones were left out.
    #[test]
    fn audit_rows_are_the_newest_the_caller_sees() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("node.db")).unwrap();
        for i in 0..30 {
            let project = if i % 3 == 0 { "a" } else { "b" };
            store.audit(DAEMON, "quota_set", Some(project), None, serde_json::json!({"i": i})).unwrap();
        }
        let only_a = |p: Option<&str>| p == Some("a");
        let (rows, more) = store.audit_rows(0.0, &only_a, 4).unwrap();
        let seen: Vec<i64> = rows.iter().map(|r| r.detail["i"].as_i64().unwrap()).collect();
        assert_eq!((seen, more), (vec![18, 21, 24, 27], true));
        let (rows, more) = store.audit_rows(0.0, &only_a, 100).unwrap();
        assert_eq!((rows.len(), more), (10, false));
    }

    /// Fair share reads the open and recent segments through the index on `end`, and the old ones it
    /// skips weighed nothing an f64 sum keeps.
    #[test]
    fn fair_share_reads_recent_usage_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("node.db")).unwrap();
        let t = now();
        let h = 3600.0;
        let rows: [(&str, i64, f64, Option<f64>); 4] = [
            ("a", 2, t - 3.0 * h, Some(t - 1.0 * h)),
            ("a", 1, t - 2000.0 * h, Some(t - 1999.0 * h)),
            ("b", 1, t - 0.5 * h, None),
            ("old", 8, t - 5000.0 * h, Some(t - 4000.0 * h)),
        ];
        for (p, d, s, e) in rows {
            store
                .db
                .execute(
                    "INSERT INTO usage (job, project, class, devices, start, end) VALUES (1, ?1, 'gpu', ?2, ?3, ?4)",
                    params![p, d, s, e],
                )
                .unwrap();
        }
        let got: std::collections::BTreeMap<String, f64> = store.decayed_usage(1.0).unwrap().into_iter().collect();
        // a: 2 devices over [t-3h, t-1h] with a 1-hour half-life: 2 (2^-1 - 2^-3) / ln 2 device-hours
        // (the query reads the clock again: a loaded host took 36 ms between, 7e-6 of a, so the
        // tolerance allows half a second, as b's does)
        let a = 2.0 * (0.5f64 - 0.125) / std::f64::consts::LN_2;
        assert!((got["a"] - a).abs() < 1e-4 * a, "{got:?}");
        // b: 1 device over the last half hour (still open)
        let b = (1.0 - 0.5f64.powf(0.5)) / std::f64::consts::LN_2;
        assert!((got["b"] - b).abs() < 1e-4 * b, "{got:?}");
        assert!(!got.contains_key("old"), "a segment 4000 half-lives old is not read: {got:?}");
        let plan: Vec<String> = store
            .db
            .prepare(&format!("EXPLAIN QUERY PLAN {DECAYED_USAGE}"))
            .unwrap()
            .query_map(params![t, t - 64.0 * h], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("usage_end") && !plan.contains("SCAN usage"), "{plan}");
    }
}
