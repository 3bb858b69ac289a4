//! `medtrain permit issue|show|list|settle` and `medtrain budget show`.

use crate::cli::PermitCommand;
use crate::privacy::accountant::{AccountantKind, Phase};
use crate::privacy::ledger::Ledger;
use crate::privacy::permit::{self, Permit};
use std::process::ExitCode;

pub fn permit(cmd: PermitCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PermitCommand::Issue { project, purpose, datasets, expires, epsilon, delta, max_attack_auc, ledger_lost } => {
            let issued = crate::train::run::utc_stamp();
            // two permits of one project issued in one second get their own ids
            let mut id = format!("{project}-{issued}");
            for n in 2.. {
                // (nor the id of a permit revoked: it could not be revoked in its turn)
                let store = permit::store();
                if !store.join(format!("{id}.toml")).exists()
                    && !store.join("revoked").join(format!("{id}.toml")).exists()
                {
                    break;
                }
                id = format!("{project}-{issued}-{n}");
            }
            let p = Permit { id, project, purpose, datasets, expires, epsilon, delta, max_attack_auc, issued };
            let key = permit::key_path();
            let new_key = std::fs::symlink_metadata(&key).is_err();
            let (path, warnings) = permit::issue(&p, ledger_lost).map_err(|e| anyhow::anyhow!("permit: {e}"))?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            if new_key {
                // the node's first permit makes its key: said, with the fingerprint to check (a mistyped
                // $MEDTRAIN_NODE_KEY would otherwise start a key nobody knows without a word)
                let fingerprint =
                    crate::privacy::sshsig::NodeKey::load(&key).map(|k| k.fingerprint()).unwrap_or_default();
                eprintln!("made the node key {} ({fingerprint}): releases are signed by it", key.display());
            }
            if p.expired() {
                eprintln!(
                    "warning: the permit expired on {} (before today): no run will be accepted under it",
                    p.expires
                );
            }
            println!("{}", path.display());
        }
        PermitCommand::Revoke { permit } => {
            let to = permit::revoke(&permit).map_err(|e| anyhow::anyhow!("permit revoke: {e}"))?;
            println!("{}", to.display());
        }
        PermitCommand::Show { file } => {
            let p = permit::read(&file).map_err(|e| anyhow::anyhow!(e))?;
            print!("{}", toml::to_string(&p)?);
            if p.expired() {
                println!("# expired");
            }
        }
        PermitCommand::List { json } => {
            let all = permit::list();
            if json {
                let v: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(path, p)| match p {
                        Ok(p) => serde_json::json!({"file": path, "permit": p, "expired": p.expired()}),
                        Err(e) => serde_json::json!({"file": path, "error": e}),
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for (path, p) in all {
                    match p {
                        Ok(p) => println!(
                            "{}  project {}  epsilon {}  delta {}  expires {}{}",
                            path.display(),
                            p.project,
                            crate::short_number(p.epsilon),
                            crate::short_number(p.delta),
                            p.expires,
                            if p.expired() { " (expired)" } else { "" }
                        ),
                        Err(e) => println!("{}  INVALID: {e}", path.display()),
                    }
                }
            }
        }
        PermitCommand::Settle { run, whole_reservation } => {
            if !run.is_dir() {
                anyhow::bail!("{}: not a run directory", run.display());
            }
            // a run still training would go on spending after it was settled
            let _lock = crate::train::run::lock_run(&run)?;
            let id = crate::train::run::run_id(&run);
            // a checkpoint written and recorded, not yet swapped in when the run stopped
            crate::train::run::roll_forward_recorded(&run)?;
            let Some((ck, digest)) = crate::train::checkpoint::load_with_digest(&run)? else {
                // a run killed before its first checkpoint (kill -9, a power cut) could never be
                // resumed or run again; its reservation, made before any step, is its data
                // preparation's phases and then the run's one phase
                use crate::privacy::ledger::{CHECKPOINT_WRITING, NO_CHECKPOINT};
                let mut ledger = Ledger::open(&permit::ledger_path(), AccountantKind::Pld)?;
                let Some(planned) = ledger.planned(&id)? else {
                    if ledger.run_state(&id)?.is_some() {
                        anyhow::bail!("{}: the run is settled already (medtrain budget show)", run.display());
                    }
                    anyhow::bail!("{}: no checkpoint to settle from, and no reservation in the ledger", run.display());
                };
                let (spent, what) = match ledger.checkpoint_record(&id)?.as_deref() {
                    // its steps never began (no mark): none of them can be released, none was shown;
                    // killed after they began, before its first checkpoint (their losses and metrics
                    // were shown): the preparation's phases and the steps it may have taken
                    Some(NO_CHECKPOINT) => match ledger.spent_before_checkpoint(&id)? {
                        Some((spent, 0)) => (spent, "what its data preparation spent".into()),
                        Some((spent, taken)) => {
                            (spent, format!("its data preparation and the {taken} steps it may have taken"))
                        }
                        None => (planned, "its whole reservation".into()),
                    },
                    Some(CHECKPOINT_WRITING) | None => (planned, "its whole reservation".into()),
                    // it wrote one, which is not here (removed, its weights kept elsewhere?); one
                    // recorded and left in checkpoint.partial was rolled forward above
                    Some(_) if whole_reservation => (planned, "its whole reservation".into()),
                    Some(_) => anyhow::bail!(
                        "{}: the run wrote a checkpoint that is not there: restore it to settle from it (where it \
                         is lost for good, --whole-reservation settles the run at its whole reservation)",
                        run.display()
                    ),
                };
                let st = ledger.settle(&id, &spent)?;
                println!(
                    "{}: no checkpoint: settled at {what}, epsilon {:.4} (the project's settled runs on this \
                     dataset: epsilon {:.4}){}",
                    run.display(),
                    st.run_epsilon,
                    st.settled_epsilon,
                    if st.over_budget { ", OVER the budget" } else { "" }
                );
                return Ok(ExitCode::SUCCESS);
            };
            let phases = ck.spent_phases()?;
            let kind = if ck.plan.accountant == "rdp" { AccountantKind::Rdp } else { AccountantKind::Pld };
            let mut ledger = Ledger::open(&permit::ledger_path(), kind)?;
            // the steps settled are the checkpoint's, which its researcher can write: one the ledger did
            // not record last says nothing of them; restored, it settles; lost for good, the run is
            // settled at its whole reservation when asked (nothing less can be proven; the reservation
            // was held for good)
            if ledger.checkpoint_known(&id, &digest)? == Some(false) {
                let why = crate::train::run::not_recorded_checkpoint(&run);
                let planned = ledger.planned(&id)?.filter(|_| whole_reservation);
                let Some(planned) = planned else {
                    anyhow::bail!(
                        "{why}; restore it before settling (where it is lost for good, --whole-reservation settles \
                         the run at its whole reservation)"
                    );
                };
                let st = ledger.settle(&id, &planned)?;
                println!(
                    "{why}: settled at its whole reservation, epsilon {:.4} (the project's settled runs on this \
                     dataset: epsilon {:.4}){}",
                    st.run_epsilon,
                    st.settled_epsilon,
                    if st.over_budget { ", OVER the budget" } else { "" }
                );
                return Ok(ExitCode::SUCCESS);
            }
            // killed between two checkpoints, it took steps after this one under its plan (their losses
            // shown), up to the bound it marked: charged as taken
            let mut phases = phases;
            let bound = ledger.steps_bound(&id)?;
            let after = bound.saturating_sub(ck.step);
            if after > 0 {
                phases.push(Phase::new(ck.plan.noise_multiplier, ck.plan.sample_rate, after)?);
            }
            let st = ledger.settle(&id, &phases)?;
            println!(
                "{}: settled at epsilon {:.4} ({} steps{}; the project's settled runs on this dataset: epsilon \
                 {:.4}){}",
                run.display(),
                st.run_epsilon,
                ck.step,
                if after > 0 {
                    format!(
                        ", and the {after} after them it may have taken: it was stopped before it recorded them \
                         (up to step {bound})"
                    )
                } else {
                    String::new()
                },
                st.settled_epsilon,
                if st.over_budget { ", OVER the budget" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn budget(project: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::open(&permit::ledger_path(), AccountantKind::Pld)?;
    let mut rows = vec![];
    for (path, p) in permit::list() {
        let Ok(p) = p else { continue };
        if project.as_ref().is_some_and(|q| *q != p.project) {
            continue;
        }
        for d in &p.datasets {
            // a permit the ledger holds no budget for (issued already expired): listed as such, and
            // the other permits still shown (it failed the whole listing)
            let b = match ledger.balance(&p.project, d) {
                Err(crate::privacy::ledger::LedgerError::NoBudget { .. }) => {
                    rows.push(serde_json::json!({
                        "permit": path, "project": p.project, "dataset": d, "budget": null, "delta": null,
                        "delta_added": null, "spent": null, "reserved": null, "left": null,
                        "expires": p.expires, "expired": p.expired(),
                    }));
                    continue;
                }
                b => b?,
            };
            rows.push(serde_json::json!({
                "permit": path, "project": p.project, "dataset": d, "budget": b.budget_epsilon, "delta": b.delta,
                "delta_added": b.delta_added,
                "spent": b.settled_epsilon, "reserved": b.committed_epsilon - b.settled_epsilon,
                "left": (b.budget_epsilon - b.committed_epsilon).max(0.0), "expires": p.expires, "expired": p.expired(),
            }));
        }
    }
    // the budgets no valid permit covers (revoked, its file removed, its signature broken): what was
    // spent on them is still the ledger's (found by a tester: it was listed nowhere)
    for (project_of, d) in ledger.budgets()? {
        if project.as_ref().is_some_and(|q| *q != project_of)
            || rows.iter().any(|r| r["project"] == project_of.as_str() && r["dataset"] == d.as_str())
        {
            continue;
        }
        let b = ledger.balance(&project_of, &d)?;
        rows.push(serde_json::json!({
            "permit": null, "project": project_of, "dataset": d, "budget": b.budget_epsilon, "delta": b.delta,
            "delta_added": b.delta_added,
            "spent": b.settled_epsilon, "reserved": b.committed_epsilon - b.settled_epsilon,
            "left": 0.0, "expires": null, "expired": null,
        }));
    }
    if rows.is_empty() && !json {
        // an empty answer said nothing of why
        match &project {
            Some(_) => eprintln!("no valid permit of that project in {}", permit::store().display()),
            None => eprintln!("no valid permit in {}", permit::store().display()),
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        // one line per (project, dataset): the ledger's budget is theirs, whichever permits set it (each
        // permit gave the same line); the latest expiry of their permits, and how many
        let key = |r: &serde_json::Value| (r["project"].to_string(), r["dataset"].to_string(), r["budget"].is_null());
        let mut shown: Vec<serde_json::Value> = Vec::new();
        let mut permits: Vec<usize> = Vec::new();
        for r in rows {
            match shown.iter().position(|s| key(s) == key(&r)) {
                Some(i) => {
                    permits[i] += 1;
                    if r["expires"].as_str() > shown[i]["expires"].as_str() {
                        shown[i]["expires"] = r["expires"].clone();
                    }
                }
                None => {
                    shown.push(r);
                    permits.push(1);
                }
            }
        }
        for (r, n) in shown.into_iter().zip(permits) {
            let of = if n > 1 { format!(", {n} permits") } else { String::new() };
            if r["budget"].is_null() {
                println!(
                    "{}  {}  no budget in the ledger ({}, expires {}{of})",
                    r["project"].as_str().unwrap_or(""),
                    r["dataset"].as_str().unwrap_or(""),
                    if r["expired"] == true { "expired" } else { "not recorded" },
                    r["expires"].as_str().unwrap_or("")
                );
                continue;
            }
            let until = match r["expires"].as_str() {
                Some(e) => format!("expires {e}{of}"),
                None => "no valid permit: revoked, removed or failing its check".to_string(),
            };
            println!(
                "{}  {}  budget {:.3}  spent {:.3}  reserved {:.3}  left {:.3}  ({until})",
                r["project"].as_str().unwrap_or(""),
                r["dataset"].as_str().unwrap_or(""),
                r["budget"].as_f64().unwrap_or(0.0),
                r["spent"].as_f64().unwrap_or(0.0),
                r["reserved"].as_f64().unwrap_or(0.0),
                r["left"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
