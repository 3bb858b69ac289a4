//! The privacy-budget ledger: admission against the budget, settlement, bad calls, and several
//! processes reserving at once (no lost or double-counted spend, no overspend).

use medtrain::privacy::accountant::{pld, AccountantKind, Delta, Phase};
use medtrain::privacy::ledger::{Ledger, LedgerError};
use std::process::Command;

fn phase() -> Phase {
    Phase::new(1.0, 0.01, 1000).unwrap()
}

fn delta() -> Delta {
    Delta::new(1e-5).unwrap()
}

/// A budget that holds exactly `k` runs of `phase()`: between the epsilon of k and k+1 of them.
fn budget_for(k: usize) -> f64 {
    let eps = |n: usize| pld::epsilon(&vec![phase(); n], delta()).unwrap();
    0.5 * (eps(k) + eps(k + 1))
}

#[test]
fn runs_are_admitted_until_the_budget_is_used_and_refusals_say_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), AccountantKind::Pld).unwrap();
    assert!(matches!(ledger.reserve("r0", "proj", "data", &[phase()], 0.0), Err(LedgerError::NoBudget { .. })));
    ledger.set_budget("proj", "data", budget_for(2), delta()).unwrap();
    ledger.reserve("r1", "proj", "data", &[phase()], 0.0).unwrap();
    ledger.reserve("r2", "proj", "data", &[phase()], 0.0).unwrap();
    let err = ledger.reserve("r3", "proj", "data", &[phase()], 0.0).unwrap_err();
    let LedgerError::Exhausted { remaining, committed, budget, .. } = &err else { panic!("{err}") };
    assert!((budget - committed - remaining).abs() < 1e-9 && *remaining > 0.0);
    assert!(err.to_string().contains("is left"), "{err}");
    // settling with fewer steps than planned frees budget for a smaller run
    let s = ledger.settle("r1", &[Phase::new(1.0, 0.01, 200).unwrap()]).unwrap();
    assert!(!s.over_budget);
    ledger.reserve("r3", "proj", "data", &[Phase::new(1.0, 0.01, 500).unwrap()], 0.0).unwrap();
    let b = ledger.balance("proj", "data").unwrap();
    assert_eq!((b.settled_runs, b.reserved_runs), (1, 2));
    assert!(b.committed_epsilon <= b.budget_epsilon && b.settled_epsilon < b.committed_epsilon);
    // a second settled run: its own epsilon, and the project's of both (permit settle printed the
    // project's as the run's)
    let s2 = ledger.settle("r3", &[Phase::new(1.0, 0.01, 500).unwrap()]).unwrap();
    assert!((s.run_epsilon - s.settled_epsilon).abs() < 1e-12, "the first run is all that is settled");
    assert!(s2.run_epsilon > s.run_epsilon && s2.settled_epsilon > s2.run_epsilon, "{s2:?} {s:?}");
    // another dataset of the same project has its own budget
    assert!(matches!(ledger.reserve("r4", "proj", "other", &[phase()], 0.0), Err(LedgerError::NoBudget { .. })));
}

#[test]
fn bad_calls_are_refused_and_spend_over_the_reservation_is_still_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, AccountantKind::Rdp).unwrap();
    ledger.set_budget("p", "d", budget_for(1) * 1.5, delta()).unwrap();
    assert!(ledger.set_budget("p", "d", -1.0, delta()).is_err());
    ledger.reserve("a", "p", "d", &[phase()], 0.0).unwrap();
    assert!(matches!(ledger.reserve("a", "p", "d", &[phase()], 0.0), Err(LedgerError::DuplicateRun(_))));
    assert!(matches!(ledger.settle("nope", &[phase()]), Err(LedgerError::UnknownRun(_))));
    // a run that ran far more than it reserved: recorded, flagged
    let s = ledger.settle("a", &[Phase::new(1.0, 0.01, 50_000).unwrap()]).unwrap();
    assert!(s.over_budget);
    assert!(matches!(ledger.settle("a", &[phase()]), Err(LedgerError::AlreadySettled(_))));
    drop(ledger);
    // reopened, the record is there
    let ledger = Ledger::open(&path, AccountantKind::Rdp).unwrap();
    let b = ledger.balance("p", "d").unwrap();
    assert_eq!(b.settled_runs, 1);
    assert!(b.settled_epsilon > b.budget_epsilon);
}

const CHILD: &str = "MEDTRAIN_LEDGER_TEST_CHILD";

#[test]
fn concurrent_processes_never_overspend_or_lose_spend() {
    if let Ok(spec) = std::env::var(CHILD) {
        // child: reserve one run, settle it, report
        let (path, run) = spec.split_once('|').unwrap();
        let mut ledger = Ledger::open(std::path::Path::new(path), AccountantKind::Pld).unwrap();
        match ledger.reserve(run, "proj", "data", &[phase()], 0.0) {
            Ok(_) => {
                ledger.settle(run, &[phase()]).unwrap();
                println!("RESULT admitted");
            }
            Err(LedgerError::Exhausted { .. }) => println!("RESULT refused"),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path, AccountantKind::Pld).unwrap();
    ledger.set_budget("proj", "data", budget_for(3), delta()).unwrap();
    drop(ledger);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_processes_never_overspend_or_lose_spend",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD, format!("{}|run-{i}", path.display()))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
        admitted += text.contains("RESULT admitted") as usize;
        refused += text.contains("RESULT refused") as usize;
    }
    assert_eq!((admitted, refused), (3, 5), "exactly the runs the budget holds are admitted");
    let ledger = Ledger::open(&path, AccountantKind::Pld).unwrap();
    let b = ledger.balance("proj", "data").unwrap();
    assert_eq!((b.settled_runs, b.reserved_runs), (3, 0), "every admitted run is recorded once");
    let want = pld::epsilon(&vec![phase(); 3], delta()).unwrap();
    assert!((b.settled_epsilon - want).abs() < 1e-9 && b.settled_epsilon <= b.budget_epsilon);
}

#[test]
fn delta_added_by_runs_leaves_the_accountant_less_and_is_kept_when_settled() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), AccountantKind::Pld).unwrap();
    ledger.set_budget("proj", "data", 100.0, delta()).unwrap();
    // a run adding 4e-6 outright: the accountant composes at 1e-5 - 4e-6
    let e = ledger.reserve("a", "proj", "data", &[phase()], 4e-6).unwrap();
    let at = |d: f64| pld::epsilon(&[phase()], Delta::new(d).unwrap()).unwrap();
    assert!((e - at(6e-6)).abs() < 1e-9 && e > at(1e-5), "{e}");
    ledger.settle("a", &[phase()]).unwrap();
    let b = ledger.balance("proj", "data").unwrap();
    assert_eq!(b.delta_added, 4e-6);
    assert!((b.settled_epsilon - at(6e-6)).abs() < 1e-9);
    // a second such run: 8e-6 added in all, the composition at 2e-6
    ledger.reserve("b", "proj", "data", &[phase()], 4e-6).unwrap();
    let b = ledger.balance("proj", "data").unwrap();
    let both = pld::epsilon(&[phase(), phase()], Delta::new(2e-6).unwrap()).unwrap();
    assert!((b.committed_epsilon - both).abs() < 1e-9);
    // a third would leave the accountant no delta: refused however large the epsilon budget
    let err = ledger.reserve("c", "proj", "data", &[phase()], 4e-6).unwrap_err();
    assert!(matches!(err, LedgerError::Exhausted { .. }), "{err}");
    assert!(ledger.reserve("d", "proj", "data", &[phase()], -1.0).is_err());
}

#[test]
fn a_ledger_written_before_delta_added_opens_and_keeps_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE budgets (project TEXT NOT NULL, dataset TEXT NOT NULL, epsilon REAL NOT NULL,
                 delta REAL NOT NULL, PRIMARY KEY (project, dataset));
             CREATE TABLE runs (run_id TEXT PRIMARY KEY, project TEXT NOT NULL, dataset TEXT NOT NULL,
                 state TEXT NOT NULL CHECK (state IN ('reserved', 'settled')), planned TEXT NOT NULL, spent TEXT,
                 reserved_at TEXT NOT NULL DEFAULT (datetime('now')), settled_at TEXT);
             INSERT INTO budgets VALUES ('proj', 'data', 100.0, 1e-5);
             INSERT INTO runs (run_id, project, dataset, state, planned) VALUES ('old', 'proj', 'data', 'reserved', '[[1.0,0.01,1000]]');",
        )
        .unwrap();
    }
    let ledger = Ledger::open(&path, AccountantKind::Pld).unwrap();
    let b = ledger.balance("proj", "data").unwrap();
    assert_eq!((b.reserved_runs, b.delta_added), (1, 0.0));
    assert!((b.committed_epsilon - pld::epsilon(&[phase()], delta()).unwrap()).abs() < 1e-9);
    drop(ledger);
    // opening twice does not add the column twice
    Ledger::open(&path, AccountantKind::Pld).unwrap();
}

/// A run killed before its first checkpoint (kill -9) held its reservation for good: it could not be
/// resumed, run again or settled. `permit settle` now settles it at its data preparation's phases when
/// its steps never began, at its whole reservation when they had; one that wrote a checkpoint is
/// settled only from it.
#[test]
fn a_run_killed_before_its_first_checkpoint_is_settled_at_its_preparation() {
    let prep = Phase::new(4.0, 1.0, 1).unwrap();
    // a node home with a run reserved as `train` reserves it (the preparation's phase, then the run's)
    let reserved = || {
        let home = tempfile::tempdir().unwrap();
        let run = home.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let id = std::fs::canonicalize(&run).unwrap().display().to_string();
        let mut ledger = Ledger::open(&home.path().join("ledger.sqlite"), AccountantKind::Pld).unwrap();
        ledger.set_budget("proj", "data", 10.0, delta()).unwrap();
        ledger.reserve(&id, "proj", "data", &[prep, phase()], 0.0).unwrap();
        (home, run, id, ledger)
    };
    let settle = |home: &std::path::Path, run: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_medtrain"))
            .env("MEDTRAIN_HOME", home)
            .args(["permit", "settle"])
            .arg(run)
            .output()
            .unwrap()
    };
    // a run that wrote a checkpoint (its digest recorded) is not settled without it
    let (home, run, id, mut ledger) = reserved();
    ledger.record_checkpoint(&id, "abc", 0).unwrap();
    let o = settle(home.path(), &run);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("restore it"));
    assert_eq!(ledger.run_state(&id).unwrap().as_deref(), Some("reserved"));
    // one that wrote none: settled at the preparation's phase
    let (home, run, id, mut ledger) = reserved();
    let o = settle(home.path(), &run);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("data preparation"));
    assert_eq!(ledger.run_state(&id).unwrap().as_deref(), Some("settled"));
    assert_eq!(ledger.spent(&id).unwrap().unwrap().len(), 1);
    // a settled run records no checkpoint (one settled while it ran, past its lock, stops at its next)
    assert!(matches!(
        ledger.record_checkpoint(&id, "abc", 0),
        Err(medtrain::privacy::ledger::LedgerError::AlreadySettled(_))
    ));
    assert!(matches!(ledger.mark_steps_begun(&id, 5), Err(medtrain::privacy::ledger::LedgerError::AlreadySettled(_))));
    let o = settle(home.path(), &run);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("settled already"));
    // one killed after its steps began, before its first checkpoint (their losses were shown): the
    // preparation and the steps it may have taken (to its first checkpoint, step 100); one killed while
    // writing its first checkpoint, as the builds before recorded it: its whole reservation
    let (home, run, id, mut ledger) = reserved();
    assert_eq!(ledger.mark_steps_begun(&id, 100).unwrap(), 0);
    let o = settle(home.path(), &run);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("the 100 steps it may have taken"));
    let spent = ledger.spent(&id).unwrap().unwrap();
    assert_eq!((spent.len(), spent[1].steps), (2, 100));
    let (home, run, id, mut ledger) = reserved();
    ledger.record_checkpoint(&id, medtrain::privacy::ledger::CHECKPOINT_WRITING, 0).unwrap();
    let o = settle(home.path(), &run);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("whole reservation"));
    assert_eq!(ledger.spent(&id).unwrap().unwrap()[1].steps, 1000);
    // only the last checkpoint recorded is the run's (the one before, put back, would settle it short)
    let (_home, _run, id, mut ledger) = reserved();
    assert_eq!(ledger.checkpoint_known(&id, "abc").unwrap(), Some(false));
    ledger.record_checkpoint(&id, "abc", 0).unwrap();
    ledger.record_checkpoint(&id, "def", 0).unwrap();
    assert_eq!(ledger.checkpoint_known(&id, "def").unwrap(), Some(true));
    assert_eq!(ledger.checkpoint_known(&id, "abc").unwrap(), Some(false));
    assert_eq!(ledger.checkpoint_known("no such run", "def").unwrap(), None);
    // the steps a run may take before it records them: kept by a process after one killed before it
    // (returned to it) until a checkpoint past them is recorded
    assert_eq!(ledger.steps_bound(&id).unwrap(), 0);
    assert_eq!(ledger.mark_steps_begun(&id, 30).unwrap(), 0);
    assert_eq!(ledger.steps_bound(&id).unwrap(), 30);
    assert_eq!(ledger.mark_steps_begun(&id, 20).unwrap(), 30);
    assert_eq!(ledger.steps_bound(&id).unwrap(), 30);
    ledger.record_checkpoint(&id, "ghi", 40).unwrap();
    assert_eq!(ledger.steps_bound(&id).unwrap(), 40);
    ledger.record_checkpoint(&id, "jkl", 0).unwrap();
    assert_eq!(ledger.steps_bound(&id).unwrap(), 0);
}

/// Found by an outside-in tester: with the ledger lost, `permit issue` started the project's dataset
/// again at nothing spent without a word (the store still held the permit whose budget the ledger had
/// lost); a permit issued again with another delta re-expressed what was spent, and one below what was
/// spent was taken, both in silence. The first is refused unless `--ledger-lost`; the others warn.
#[test]
fn permit_issue_refuses_a_lost_ledger_and_says_what_a_new_budget_does_to_the_spent() {
    let home = tempfile::tempdir().unwrap();
    let dataset = format!("sha256:{}", "ab".repeat(32));
    let issue = |epsilon: &str, delta: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_medtrain"))
            .env("MEDTRAIN_HOME", home.path())
            .env_remove("MEDTRAIN_NODE_KEY")
            .args(["permit", "issue", "--project", "proj", "--purpose", "p", "--dataset", &dataset])
            .args(["--expires", "2099-12-31", "--epsilon", epsilon, "--delta", delta])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = issue("5", "1e-5", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // a run settled under it
    let ledger_path = home.path().join("ledger.sqlite");
    {
        let mut ledger = Ledger::open(&ledger_path, AccountantKind::Pld).unwrap();
        ledger.reserve("/runs/one", "proj", &dataset, &[phase()], 0.0).unwrap();
        ledger.settle("/runs/one", &[phase()]).unwrap();
    }
    let o = issue("5", "1e-3", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.contains("composed at the new delta 0.001"), "{e}");
    let o = issue("0.01", "1e-3", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.contains("no run will be accepted"), "{e}");
    // the ledger lost: refused, the store's permit named; --ledger-lost issues it
    std::fs::remove_file(&ledger_path).unwrap();
    let o = issue("5", "1e-5", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("holds no budget") && e.contains("--ledger-lost"), "{e}");
    assert!(e.contains("permits/proj-"), "{e}");
    let o = issue("5", "1e-5", &["--ledger-lost"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Found by an outside-in tester: there was no way to revoke a permit but deleting it, and then (or
/// with its signature broken) `budget show` listed nothing of what was spent under it. `permit
/// revoke` moves it aside (kept, with when and by whom); the budget and its spend stay listed.
#[test]
fn a_revoked_permit_keeps_its_spend_listed() {
    let home = tempfile::tempdir().unwrap();
    let dataset = format!("sha256:{}", "cd".repeat(32));
    let medtrain = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_medtrain"))
            .env("MEDTRAIN_HOME", home.path())
            .env_remove("MEDTRAIN_NODE_KEY")
            .args(args)
            .output()
            .unwrap()
    };
    let issue = || {
        medtrain(&[
            "permit",
            "issue",
            "--project",
            "proj",
            "--purpose",
            "p",
            "--dataset",
            &dataset,
            "--expires",
            "2099-12-31",
            "--epsilon",
            "5",
            "--delta",
            "1e-5",
        ])
    };
    let o = issue();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let id = std::path::Path::new(&file).file_stem().unwrap().to_str().unwrap().to_string();
    {
        let mut ledger = Ledger::open(&home.path().join("ledger.sqlite"), AccountantKind::Pld).unwrap();
        ledger.reserve("/runs/one", "proj", &dataset, &[phase()], 0.0).unwrap();
        ledger.settle("/runs/one", &[phase()]).unwrap();
    }
    // not a permit of the store
    let o = medtrain(&["permit", "revoke", "/etc/hostname"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not a permit of the store"));
    let o = medtrain(&["permit", "revoke", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!std::path::Path::new(&file).exists());
    assert!(home.path().join(format!("permits/revoked/{id}.toml")).exists());
    assert!(home.path().join(format!("permits/revoked/{id}.toml.revoked")).exists());
    let o = medtrain(&["budget", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &v.as_array().unwrap()[0];
    assert!(row["permit"].is_null() && row["spent"].as_f64().unwrap() > 0.0, "{v}");
    let o = medtrain(&["budget", "show"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no valid permit") && text.contains("spent"), "{text}");
    // revoked twice: no such permit
    let o = medtrain(&["permit", "revoke", &id]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no such permit"));
    // found by a tester: a permit issued again in the same second took the revoked one's id and could
    // not be revoked; one copied back from a backup was valid again; with the ledger lost, the revoked
    // permit was no reason to refuse a new budget
    let o = issue();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_ne!(again, file);
    let o = medtrain(&["permit", "revoke", &again]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for ext in ["toml", "toml.sig"] {
        std::fs::copy(
            home.path().join(format!("permits/revoked/{id}.{ext}")),
            home.path().join(format!("permits/{id}.{ext}")),
        )
        .unwrap();
    }
    let o = medtrain(&["permit", "list"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("INVALID") && text.contains("revoked"), "{text}");
    std::fs::remove_file(home.path().join("ledger.sqlite")).unwrap();
    let o = issue();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--ledger-lost"));
}
