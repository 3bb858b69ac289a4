//! The privacy-budget ledger: per (project, dataset fingerprint), the composition of every run on that
//! data against the permit's budget, in SQLite (WAL, so concurrent readers never block the writer).
//!
//! A run reserves its planned phases at start and settles with the phases it actually ran. A
//! reservation is admitted only if the composition of all settled runs, all other reservations and
//! this plan stays within the budget; it is decided inside one `BEGIN IMMEDIATE` transaction, so runs
//! started at the same moment by different processes cannot overspend together. Settling records what
//! was spent even when it is over the reservation (privacy spent is spent), and says so.

use super::accountant::{self, AccountantKind, Delta, Phase};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("no privacy budget is set for project '{project}' on dataset {dataset}")]
    NoBudget { project: String, dataset: String },
    #[error(
        "run '{run}' refused: it would bring epsilon on project '{project}' / dataset {dataset} to {would_be:.4}, over the budget of {budget:.4}; {remaining:.4} is left beside the other settled and reserved runs (their epsilon {committed:.4}; a resumed run's plan holds the steps it ran)"
    )]
    Exhausted {
        run: String,
        project: String,
        dataset: String,
        budget: f64,
        committed: f64,
        would_be: f64,
        remaining: f64,
    },
    #[error("run '{0}' is already in the ledger: a run directory is one run, even after it is deleted; use a new --run-dir, --resume to continue it, or medtrain permit settle to end it")]
    DuplicateRun(String),
    #[error("run '{0}' has no reservation in the ledger")]
    UnknownRun(String),
    #[error("run '{0}' is already settled")]
    AlreadySettled(String),
    #[error("invalid budget: {0}")]
    Budget(String),
    #[error("ledger record of run '{run}' is unreadable: {msg}")]
    Corrupt { run: String, msg: String },
}

impl LedgerError {
    /// Names the ledger file in an SQLite error raised where the path was not at hand.
    fn with_path(self, path: &str) -> Self {
        match self {
            LedgerError::Sqlite { source, .. } => LedgerError::Sqlite { path: path.to_string(), source },
            e => e,
        }
    }
}

/// The state of one (project, dataset).
#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    pub budget_epsilon: f64,
    pub delta: f64,
    /// epsilon of the settled runs
    pub settled_epsilon: f64,
    /// epsilon of the settled runs and the open reservations
    pub committed_epsilon: f64,
    pub settled_runs: usize,
    pub reserved_runs: usize,
    /// what the runs add to delta outright (DP selections' failure probabilities); the accountant
    /// composes at `delta` less this
    pub delta_added: f64,
}

/// What settling a run recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    /// epsilon of the (project, dataset)'s settled runs, this one with them
    pub settled_epsilon: f64,
    /// epsilon of what this run spent alone
    pub run_epsilon: f64,
    /// true when the run spent more than its reservation allowed and the composition is over budget
    pub over_budget: bool,
}

pub struct Ledger {
    conn: Connection,
    path: String,
    accountant: AccountantKind,
}

/// Epsilon of `phases` composed, at the budget's delta less what the runs add to delta outright
/// (`delta_added`: DP selections whose failure probability adds to delta); infinite when nothing of
/// the budget's delta is left for the accountant.
fn composed_epsilon(kind: AccountantKind, phases: &[Phase], delta: Delta, delta_added: f64) -> f64 {
    if phases.is_empty() && delta_added == 0.0 {
        return 0.0;
    }
    let Ok(left) = Delta::new(delta.get() - delta_added) else { return f64::INFINITY };
    if phases.is_empty() {
        return 0.0;
    }
    accountant::epsilon(kind, phases, left).epsilon
}

/// The budget, its delta, the settled and the reserved phases, what every run adds to delta, and the
/// number of settled and reserved runs, of one (project, dataset).
struct Loaded {
    budget: f64,
    delta: Delta,
    settled: Vec<Phase>,
    reserved: Vec<Phase>,
    delta_added: f64,
    n_settled: usize,
    n_reserved: usize,
}

fn phases_to_json(phases: &[Phase]) -> String {
    let v: Vec<(f64, f64, u64)> =
        phases.iter().map(|p| (p.noise_multiplier.get(), p.sample_rate.get(), p.steps)).collect();
    serde_json::to_string(&v).expect("phases serialize")
}

/// The checkpoint digest of a run reserved since the ledger records checkpoints, before its first.
pub const NO_CHECKPOINT: &str = "none";
/// What the builds of 2026-12-01 recorded when a run started writing its first checkpoint: it may
/// have one, unrecorded, and is settled at its whole reservation (the builds since leave
/// [`NO_CHECKPOINT`] until the checkpoint's digest is recorded).
pub const CHECKPOINT_WRITING: &str = "writing";

fn phases_from_json(run: &str, s: &str) -> Result<Vec<Phase>, LedgerError> {
    let corrupt = |msg: String| LedgerError::Corrupt { run: run.to_string(), msg };
    let v: Vec<(f64, f64, u64)> = serde_json::from_str(s).map_err(|e| corrupt(e.to_string()))?;
    v.into_iter().map(|(s, q, t)| Phase::new(s, q, t).map_err(|e| corrupt(e.to_string()))).collect()
}

impl Ledger {
    /// Opens (creating if needed) the ledger database at `path`.
    pub fn open(path: &Path, accountant: AccountantKind) -> Result<Self, LedgerError> {
        let p = path.display().to_string();
        let sql = |source| LedgerError::Sqlite { path: p.clone(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS budgets (
                 project TEXT NOT NULL, dataset TEXT NOT NULL, epsilon REAL NOT NULL, delta REAL NOT NULL,
                 PRIMARY KEY (project, dataset));
             CREATE TABLE IF NOT EXISTS runs (
                 run_id TEXT PRIMARY KEY, project TEXT NOT NULL, dataset TEXT NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('reserved', 'settled')),
                 planned TEXT NOT NULL, spent TEXT, reserved_at TEXT NOT NULL DEFAULT (datetime('now')),
                 settled_at TEXT);
             CREATE INDEX IF NOT EXISTS runs_by_data ON runs (project, dataset);
             CREATE TABLE IF NOT EXISTS prepared (
                 digest TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                 prepared_at TEXT NOT NULL DEFAULT (datetime('now')));",
        )
        .map_err(sql)?;
        // columns added after the first release: a ledger written before lacks them
        for (column, decl) in [
            ("delta_added", "delta_added REAL NOT NULL DEFAULT 0"),
            // the digest of the run's seal (RUN/seal.json) the export gate compares
            ("seal_sha256", "seal_sha256 TEXT"),
            // the digest of the run's last checkpoint, and of the one before as a record (only the last
            // is accepted: [`Ledger::checkpoint_known`])
            ("checkpoint_sha256", "checkpoint_sha256 TEXT"),
            ("previous_checkpoint_sha256", "previous_checkpoint_sha256 TEXT"),
            // the highest step the run may have reached that its last recorded checkpoint does not
            // hold (0: none), charged when it is settled ([`Ledger::mark_steps_begun`])
            ("steps_bound", "steps_bound INTEGER NOT NULL DEFAULT 0"),
            // the digest of the prepared data the run trains on ([`Ledger::record_data`])
            ("data_sha256", "data_sha256 TEXT"),
        ] {
            let has: bool = conn
                .query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = ?1", [column], |r| r.get(0))
                .map_err(sql)?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {decl}")).map_err(sql)?;
            }
        }
        Ok(Ledger { conn, path: p, accountant })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Sqlite { path: self.path.clone(), source }
    }

    /// Sets the budget of (project, dataset) from its permit.
    pub fn set_budget(&mut self, project: &str, dataset: &str, epsilon: f64, delta: Delta) -> Result<(), LedgerError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(LedgerError::Budget(format!("epsilon must be a finite number > 0, got {epsilon}")));
        }
        self.conn
            .execute(
                "INSERT INTO budgets (project, dataset, epsilon, delta) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project, dataset) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta",
                params![project, dataset, epsilon, delta.get()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Whether the ledger holds a budget of (project, dataset): set when a permit covering it is issued.
    pub fn has_budget(&self, project: &str, dataset: &str) -> Result<bool, LedgerError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM budgets WHERE project = ?1 AND dataset = ?2)",
                params![project, dataset],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }

    /// Budget, and the phases of every run on (project, dataset): settled runs with what they spent,
    /// reservations with their plans.
    fn load(tx: &Connection, project: &str, dataset: &str) -> Result<Option<Loaded>, rusqlite::Error> {
        let budget: Option<(f64, f64)> = tx
            .query_row(
                "SELECT epsilon, delta FROM budgets WHERE project = ?1 AND dataset = ?2",
                params![project, dataset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((eps, delta)) = budget else { return Ok(None) };
        let mut stmt = tx.prepare(
            "SELECT run_id, state, planned, spent, delta_added FROM runs WHERE project = ?1 AND dataset = ?2",
        )?;
        let rows: Vec<(String, String, String, Option<String>, f64)> = stmt
            .query_map(params![project, dataset], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
            .collect::<Result<_, _>>()?;
        let (mut settled, mut reserved, mut n_settled, mut n_reserved) = (Vec::new(), Vec::new(), 0, 0);
        let mut delta_added = 0.0;
        for (run, state, planned, spent, added) in rows {
            delta_added += added;
            // a record the ledger cannot read is an error, never a zero
            let parse =
                |s: &str| phases_from_json(&run, s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
            if state == "settled" {
                settled.extend(parse(spent.as_deref().unwrap_or("null"))?);
                n_settled += 1;
            } else {
                reserved.extend(parse(&planned)?);
                n_reserved += 1;
            }
        }
        let delta = Delta::new(delta).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Some(Loaded { budget: eps, delta, settled, reserved, delta_added, n_settled, n_reserved }))
    }

    /// Reserves `planned` for a new run, or refuses it with how much budget is left. `delta_added` is
    /// what the run adds to delta outright (a DP tokenizer's selection; 0 for most runs): the budget's
    /// delta less every run's addition is what the accountant composes at.
    pub fn reserve(
        &mut self,
        run: &str,
        project: &str,
        dataset: &str,
        planned: &[Phase],
        delta_added: f64,
    ) -> Result<f64, LedgerError> {
        let kind = self.accountant;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| LedgerError::Sqlite { path: self.path.clone(), source })?;
        let exists: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)", params![run], |r| r.get(0))
            .map_err(|source| LedgerError::Sqlite { path: self.path.clone(), source })?;
        if exists {
            return Err(LedgerError::DuplicateRun(run.to_string()));
        }
        let would_be =
            Self::admit(kind, &tx, run, project, dataset, planned, delta_added).map_err(|e| e.with_path(&self.path))?;
        tx.commit().map_err(|source| LedgerError::Sqlite { path: self.path.clone(), source })?;
        Ok(would_be)
    }

    /// Inside a transaction: admits `planned` for `run` if every other run on (project, dataset) and it
    /// stay within the budget, and records the reservation; returns the epsilon they would then reach.
    fn admit(
        kind: AccountantKind,
        tx: &Connection,
        run: &str,
        project: &str,
        dataset: &str,
        planned: &[Phase],
        delta_added: f64,
    ) -> Result<f64, LedgerError> {
        let sql = |source| LedgerError::Sqlite { path: String::new(), source };
        let Some(l) = Self::load(tx, project, dataset).map_err(sql)? else {
            return Err(LedgerError::NoBudget { project: project.to_string(), dataset: dataset.to_string() });
        };
        if !(delta_added.is_finite() && delta_added >= 0.0) {
            return Err(LedgerError::Budget(format!("a run's added delta must be >= 0 (got {delta_added})")));
        }
        let budget = l.budget;
        let mut all: Vec<Phase> = l.settled.into_iter().chain(l.reserved).collect();
        let committed = composed_epsilon(kind, &all, l.delta, l.delta_added);
        all.extend_from_slice(planned);
        let would_be = composed_epsilon(kind, &all, l.delta, l.delta_added + delta_added);
        if would_be > budget {
            return Err(LedgerError::Exhausted {
                run: run.to_string(),
                project: project.to_string(),
                dataset: dataset.to_string(),
                budget,
                committed,
                would_be,
                remaining: (budget - committed).max(0.0),
            });
        }
        tx.execute(
            "INSERT INTO runs (run_id, project, dataset, state, planned, delta_added, checkpoint_sha256)
             VALUES (?1, ?2, ?3, 'reserved', ?4, ?5, ?6)",
            params![run, project, dataset, phases_to_json(planned), delta_added, NO_CHECKPOINT],
        )
        .map_err(sql)?;
        Ok(would_be)
    }

    /// A run that continues with another plan (a resume starting a new phase): its reservation becomes
    /// `planned` (the whole run: the phases already run and the new one), admitted only if the budget
    /// holds it with every other run; refused, the old record stays as it was (one transaction).
    pub fn replan(&mut self, run: &str, planned: &[Phase], delta_added: f64) -> Result<f64, LedgerError> {
        let kind = self.accountant;
        let path = self.path.clone();
        let sql = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let row: Option<(String, String)> = tx
            .query_row("SELECT project, dataset FROM runs WHERE run_id = ?1", params![run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(sql)?;
        let Some((project, dataset)) = row else { return Err(LedgerError::UnknownRun(run.to_string())) };
        // the checkpoints it recorded stay its own (the record is made again below)
        let digests: (Option<String>, Option<String>, i64) = tx
            .query_row(
                "SELECT checkpoint_sha256, previous_checkpoint_sha256, steps_bound FROM runs WHERE run_id = ?1",
                params![run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sql)?;
        // the others' record, without this run's (rolled back with the transaction when refused)
        tx.execute("DELETE FROM runs WHERE run_id = ?1", params![run]).map_err(sql)?;
        let would_be =
            Self::admit(kind, &tx, run, &project, &dataset, planned, delta_added).map_err(|e| e.with_path(&path))?;
        tx.execute(
            "UPDATE runs SET checkpoint_sha256 = ?2, previous_checkpoint_sha256 = ?3, steps_bound = ?4 \
             WHERE run_id = ?1",
            params![run, digests.0, digests.1, digests.2],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(would_be)
    }

    /// Records what a reserved run actually spent (it may have stopped early, or been resumed with other
    /// phases). Always records; reports when the composition is now over budget.
    pub fn settle(&mut self, run: &str, spent: &[Phase]) -> Result<Settlement, LedgerError> {
        let kind = self.accountant;
        let path = self.path.clone();
        let sql = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let row: Option<(String, String, String)> = tx
            .query_row("SELECT project, dataset, state FROM runs WHERE run_id = ?1", params![run], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(sql)?;
        let Some((project, dataset, state)) = row else { return Err(LedgerError::UnknownRun(run.to_string())) };
        if state == "settled" {
            return Err(LedgerError::AlreadySettled(run.to_string()));
        }
        tx.execute(
            "UPDATE runs SET state = 'settled', spent = ?2, settled_at = datetime('now') WHERE run_id = ?1",
            params![run, phases_to_json(spent)],
        )
        .map_err(sql)?;
        let l = Self::load(&tx, &project, &dataset)
            .map_err(sql)?
            .ok_or_else(|| LedgerError::NoBudget { project: project.clone(), dataset: dataset.clone() })?;
        tx.commit().map_err(sql)?;
        let settled_epsilon = composed_epsilon(kind, &l.settled, l.delta, l.delta_added);
        let committed: Vec<Phase> = l.settled.into_iter().chain(l.reserved).collect();
        Ok(Settlement {
            settled_epsilon,
            run_epsilon: composed_epsilon(kind, spent, l.delta, l.delta_added),
            over_budget: composed_epsilon(kind, &committed, l.delta, l.delta_added) > l.budget,
        })
    }

    /// Records the SHA-256 of the run's seal (`RUN/seal.json`, which holds the digest of every file
    /// that says what the run was and made), written when the run stops. The seal lives in the run
    /// directory, which its researcher can write: the export gate compares it with this record, so a
    /// run changed and sealed again after it stopped is refused.
    pub fn record_seal(&mut self, run: &str, sha256: &str) -> Result<(), LedgerError> {
        let n = self
            .conn
            .execute("UPDATE runs SET seal_sha256 = ?2 WHERE run_id = ?1", params![run, sha256])
            .map_err(self.sql())?;
        if n == 0 {
            return Err(LedgerError::UnknownRun(run.to_string()));
        }
        Ok(())
    }

    /// Records the digest of a checkpoint the run has written whole and is about to make its
    /// checkpoint (a process killed in between leaves it in `checkpoint.partial`, from where it is
    /// rolled forward: [`crate::train::checkpoint::roll_forward`]). The checkpoint lives in the run
    /// directory, which its researcher can write: `--resume` and `permit settle` read the steps taken
    /// and the noise key from it, so they compare it with this record (a history cut to fewer steps
    /// settled a run at less than it spent). `steps_bound`: the highest step the run may reach that
    /// this checkpoint does not hold (0: none; [`Ledger::mark_steps_begun`]). Only a reserved run
    /// records: one settled while it ran (past its lock) is refused, and stops, rather than train on
    /// uncharged.
    pub fn record_checkpoint(&mut self, run: &str, sha256: &str, steps_bound: u64) -> Result<(), LedgerError> {
        let n = self
            .conn
            .execute(
                "UPDATE runs SET previous_checkpoint_sha256 = checkpoint_sha256, checkpoint_sha256 = ?2, \
                 steps_bound = ?3 WHERE run_id = ?1 AND state = 'reserved'",
                params![run, sha256, steps_bound as i64],
            )
            .map_err(self.sql())?;
        self.reserved_or_error(run, n)
    }

    /// Marks that the run starts taking steps its last recorded checkpoint does not hold, up to step
    /// `bound` before it records another (its next checkpoint's, or its last): their losses and tuning
    /// metrics are shown, and a run stopped without a checkpoint of them (killed) is settled as having
    /// taken them ([`Ledger::steps_bound`]). Returns the bound a process before left (killed before
    /// it recorded its steps), which this one keeps until it has passed it.
    pub fn mark_steps_begun(&mut self, run: &str, bound: u64) -> Result<u64, LedgerError> {
        let path = self.path.clone();
        let sql = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let before: Option<i64> = tx
            .query_row("SELECT steps_bound FROM runs WHERE run_id = ?1 AND state = 'reserved'", params![run], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql)?;
        let Some(before) = before else {
            drop(tx);
            return self.reserved_or_error(run, 0).map(|_| 0);
        };
        let before = before.max(0) as u64;
        tx.execute("UPDATE runs SET steps_bound = ?2 WHERE run_id = ?1", params![run, before.max(bound) as i64])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(before)
    }

    /// What a run that stopped before its first checkpoint spent, from its reservation (`None`: no
    /// such run, or settled): its data preparation's phases, and of its own phase (the reservation's
    /// last) the steps it may have taken ([`Ledger::steps_bound`]; none when its steps never began:
    /// none of them was shown). The second value says whether steps were charged.
    pub fn spent_before_checkpoint(&self, run: &str) -> Result<Option<(Vec<Phase>, u64)>, LedgerError> {
        let Some(mut planned) = self.planned(run)? else { return Ok(None) };
        let bound = self.steps_bound(run)?;
        let taken = match planned.last_mut() {
            Some(phase) if bound > 0 => {
                phase.steps = phase.steps.min(bound);
                phase.steps
            }
            _ => {
                planned.pop();
                0
            }
        };
        Ok(Some((planned, taken)))
    }

    /// The highest step the run may have reached that its last recorded checkpoint does not hold (0:
    /// none): a run killed between two checkpoints ([`Ledger::mark_steps_begun`]).
    pub fn steps_bound(&self, run: &str) -> Result<u64, LedgerError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT steps_bound FROM runs WHERE run_id = ?1", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    /// `Ok` when an update of a reserved run changed its row (`n`), else why not.
    fn reserved_or_error(&self, run: &str, n: usize) -> Result<(), LedgerError> {
        if n > 0 {
            return Ok(());
        }
        Err(match self.run_state(run)? {
            Some(_) => LedgerError::AlreadySettled(run.to_string()),
            None => LedgerError::UnknownRun(run.to_string()),
        })
    }

    /// Whether a checkpoint of the run with this digest is the last one the run recorded: `None` when
    /// the ledger has no record of the run's checkpoints (no such run, or one reserved before the
    /// record existed). A run reserved since starts with [`NO_CHECKPOINT`]: a checkpoint written but
    /// never recorded (the process killed in between) is then not one it wrote. The one before the
    /// last is not accepted either: put back after the run went on (and perhaps was released), it
    /// would settle the run at fewer steps than it took, and train again under the same noise.
    pub fn checkpoint_known(&self, run: &str, sha256: &str) -> Result<Option<bool>, LedgerError> {
        let row: Option<Option<String>> = self
            .conn
            .query_row("SELECT checkpoint_sha256 FROM runs WHERE run_id = ?1", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        // a sentinel: no checkpoint recorded (a digest is hex, never a sentinel)
        Ok(row.flatten().map(|last| last == sha256))
    }

    /// The seal digest [`Ledger::record_seal`] recorded for a run (`None`: no run, or none recorded).
    pub fn seal_sha256(&self, run: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT seal_sha256 FROM runs WHERE run_id = ?1", params![run], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.sql())
    }

    /// Records a directory `data prepare` wrote: its digest ([`crate::data::prepared::digest`]) and the
    /// fingerprint of the input it was prepared from.
    pub fn record_prepared(&mut self, digest: &str, fingerprint: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO prepared (digest, fingerprint) VALUES (?1, ?2)",
                params![digest, fingerprint],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The input fingerprint recorded for a prepared directory's digest, `None` when this node never
    /// prepared a directory with these contents.
    pub fn prepared_fingerprint(&self, digest: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT fingerprint FROM prepared WHERE digest = ?1", params![digest], |r| r.get(0))
            .optional()
            .map_err(self.sql())
    }

    /// Records the digest of the prepared data a run trains on, where none is recorded yet (a resume
    /// then finds its data as the run started: [`Ledger::run_data`]).
    pub fn record_data(&mut self, run: &str, sha256: &str) -> Result<(), LedgerError> {
        self.conn
            .execute("UPDATE runs SET data_sha256 = ?2 WHERE run_id = ?1 AND data_sha256 IS NULL", params![run, sha256])
            .map_err(self.sql())?;
        Ok(())
    }

    /// The dataset (fingerprint) a run was reserved on and the digest of its prepared data (`None`
    /// before it is recorded); `None` when the ledger has no such run.
    pub fn run_data(&self, run: &str) -> Result<Option<(String, Option<String>)>, LedgerError> {
        self.conn
            .query_row("SELECT dataset, data_sha256 FROM runs WHERE run_id = ?1", params![run], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(self.sql())
    }

    /// The state of a run in this ledger (`reserved`, `settled`), or `None` when it has no record.
    pub fn run_state(&self, run: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT state FROM runs WHERE run_id = ?1", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())
    }

    /// The run's last checkpoint record: a digest, [`NO_CHECKPOINT`], [`CHECKPOINT_WRITING`], or
    /// `None` (a run reserved before the record existed, or no such run).
    pub fn checkpoint_record(&self, run: &str) -> Result<Option<String>, LedgerError> {
        let row: Option<Option<String>> = self
            .conn
            .query_row("SELECT checkpoint_sha256 FROM runs WHERE run_id = ?1", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(row.flatten())
    }

    /// Records `spent` again for a run settled already: what the run itself spent when it ends, where
    /// it was settled while it still ran (`permit settle` on a live run, past its lock) at less.
    pub fn settle_again(&mut self, run: &str, spent: &[Phase]) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE runs SET spent = ?2, settled_at = datetime('now') WHERE run_id = ?1 AND state = 'settled'",
                params![run, phases_to_json(spent)],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// What a reserved run planned, as reserved (`None`: no such run, or settled).
    pub fn planned(&self, run: &str) -> Result<Option<Vec<Phase>>, LedgerError> {
        let row: Option<String> = self
            .conn
            .query_row("SELECT planned FROM runs WHERE run_id = ?1 AND state = 'reserved'", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        row.map(|s| phases_from_json(run, &s)).transpose()
    }

    /// What a settled run spent, as settled (`None`: no such run, or not settled).
    pub fn spent(&self, run: &str) -> Result<Option<Vec<Phase>>, LedgerError> {
        let row: Option<Option<String>> = self
            .conn
            .query_row("SELECT spent FROM runs WHERE run_id = ?1 AND state = 'settled'", params![run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        row.map(|s| phases_from_json(run, s.as_deref().unwrap_or("null"))).transpose()
    }

    /// The epsilon of the runs in `dir` or below it (their ids are their directories' canonical paths):
    /// a settled run's spend, a reserved one's whole reservation, each at its budget's delta; `None`
    /// when the ledger has no such run. For a job that ended without saying its epsilon (killed by a
    /// signal): it counts at what the ledger holds, never as nothing.
    pub fn epsilon_under(&self, dir: &str) -> Result<Option<f64>, LedgerError> {
        let dir = dir.trim_end_matches('/');
        let mut st = self
            .conn
            .prepare(
                "SELECT r.run_id, r.state, r.planned, r.spent, b.delta, r.delta_added FROM runs r
                 JOIN budgets b ON b.project = r.project AND b.dataset = r.dataset
                 WHERE r.run_id = ?1 OR substr(r.run_id, 1, length(?1) + 1) = ?1 || '/'",
            )
            .map_err(self.sql())?;
        let rows: Vec<(String, String, String, Option<String>, f64, f64)> = st
            .query_map(params![dir], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .map_err(self.sql())?
            .collect::<Result<_, _>>()
            .map_err(self.sql())?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        for (run, state, planned, spent, delta, added) in rows {
            let phases = match state.as_str() {
                "settled" => phases_from_json(&run, spent.as_deref().unwrap_or("null"))?,
                _ => phases_from_json(&run, &planned)?,
            };
            let Ok(delta) = Delta::new(delta) else { return Ok(Some(f64::INFINITY)) };
            // (at the delta the accountant has once the run's own addition is taken out, as its balance)
            total += composed_epsilon(self.accountant, &phases, delta, added);
        }
        Ok(Some(total))
    }

    /// Every (project, dataset) the ledger holds a budget for.
    pub fn budgets(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut st =
            self.conn.prepare("SELECT project, dataset FROM budgets ORDER BY project, dataset").map_err(self.sql())?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Budget and spend of (project, dataset).
    pub fn balance(&self, project: &str, dataset: &str) -> Result<Balance, LedgerError> {
        let l = Self::load(&self.conn, project, dataset)
            .map_err(self.sql())?
            .ok_or_else(|| LedgerError::NoBudget { project: project.to_string(), dataset: dataset.to_string() })?;
        let settled_epsilon = composed_epsilon(self.accountant, &l.settled, l.delta, l.delta_added);
        let all: Vec<Phase> = l.settled.into_iter().chain(l.reserved).collect();
        Ok(Balance {
            budget_epsilon: l.budget,
            delta: l.delta.get(),
            settled_epsilon,
            committed_epsilon: composed_epsilon(self.accountant, &all, l.delta, l.delta_added),
            settled_runs: l.n_settled,
            reserved_runs: l.n_reserved,
            delta_added: l.delta_added,
        })
    }
}
