//! The scheduling decision, a pure function of the queue, the devices, the quotas and past usage, so
//! that it can be tested without processes.
//!
//! Per device class:
//! - a running job whose project has used up its device-hours of the month is stopped (`Budget`);
//! - queued jobs are taken by project priority, then job priority, then fair share (less decayed past
//!   usage first), then age;
//! - first pass: jobs that fit in their project's concurrent quota. They start on free devices, or
//!   reclaim devices from borrowers (jobs running beyond their own project's quota) by preemption: the
//!   borrowers of the lowest priority, most recently started, go first. Free devices that wait for
//!   reclaimed ones are set aside for the job;
//! - second pass: jobs beyond their quota borrow idle devices, except the idle share of a reserved
//!   quota, which is kept for its project.

use super::config::Quota;
use super::store::{Job, State};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start {
        job: i64,
        units: Vec<String>,
        borrowed: bool,
    },
    Preempt {
        job: i64,
        for_project: String,
    },
    Budget {
        job: i64,
    },
    /// a queued job stays queued; the reason is shown in `queue list`
    Wait {
        job: i64,
        reason: String,
    },
}

pub struct Inputs<'a> {
    /// class -> schedulable units
    pub classes: &'a BTreeMap<String, Vec<String>>,
    /// every job not ended
    pub jobs: &'a [Job],
    pub quotas: &'a HashMap<(String, String), Quota>,
    pub priorities: &'a HashMap<String, i64>,
    /// project -> decayed device-hours
    pub decayed: &'a HashMap<String, f64>,
    /// (project, class) -> device-hours used this month
    pub used: &'a HashMap<(String, String), f64>,
}

pub fn decide(inp: &Inputs) -> Vec<Action> {
    let mut out = Vec::new();
    for (class, units) in inp.classes {
        class_decide(inp, class, units, &mut out);
    }
    out
}

fn class_decide(inp: &Inputs, class: &str, units: &[String], out: &mut Vec<Action>) {
    let quota = |p: &str| inp.quotas.get(&(p.to_string(), class.to_string())).copied().unwrap_or_default();
    let exhausted = |p: &str| {
        quota(p)
            .device_hours
            .is_some_and(|h| inp.used.get(&(p.to_string(), class.to_string())).copied().unwrap_or(0.0) >= h)
    };
    let prio = |p: &str| inp.priorities.get(p).copied().unwrap_or(0);
    let active: Vec<&Job> =
        inp.jobs.iter().filter(|j| j.class == class && matches!(j.state, State::Running | State::Stopping)).collect();
    let busy: HashSet<&str> = active.iter().flat_map(|j| j.units.iter().map(String::as_str)).collect();
    let mut free: Vec<String> = units.iter().filter(|u| !busy.contains(u.as_str())).cloned().collect();
    // devices each project holds (a stopping job's devices are still held until it exits)
    let mut held: HashMap<String, u32> = HashMap::new();
    for j in &active {
        *held.entry(j.project.clone()).or_default() += j.count;
    }
    // devices being reclaimed and not yet promised
    let mut reclaiming: u32 = active
        .iter()
        .filter(|j| j.state == State::Stopping && j.stop.as_deref() == Some("preempt"))
        .map(|j| j.count)
        .sum();
    for j in active.iter().filter(|j| j.state == State::Running) {
        if exhausted(&j.project) {
            out.push(Action::Budget { job: j.id });
        }
    }
    let mut victims: Vec<&Job> = active.iter().copied().filter(|j| j.state == State::Running && j.borrowed).collect();
    victims.sort_by(|a, b| {
        (prio(&a.project), a.priority)
            .cmp(&(prio(&b.project), b.priority))
            .then(b.started.partial_cmp(&a.started).unwrap_or(std::cmp::Ordering::Equal))
    });
    let mut queued: Vec<&Job> = inp.jobs.iter().filter(|j| j.class == class && j.state == State::Queued).collect();
    let decayed = |p: &str| inp.decayed.get(p).copied().unwrap_or(0.0);
    queued.sort_by(|a, b| {
        (prio(&b.project), b.priority)
            .cmp(&(prio(&a.project), a.priority))
            .then(decayed(&a.project).partial_cmp(&decayed(&b.project)).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.submitted.partial_cmp(&b.submitted).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.id.cmp(&b.id))
    });
    let mut borrowers = Vec::new();
    for j in queued {
        if exhausted(&j.project) {
            let reason = format!("device-hours of project {} for {class} used up this month", j.project);
            out.push(Action::Wait { job: j.id, reason });
            continue;
        }
        let h = held.get(&j.project).copied().unwrap_or(0);
        if h + j.count > quota(&j.project).devices {
            borrowers.push(j);
            continue;
        }
        let need = j.count as usize;
        if free.len() >= need {
            let take: Vec<String> = free.drain(..need).collect();
            *held.entry(j.project.clone()).or_default() += j.count;
            out.push(Action::Start { job: j.id, units: take, borrowed: false });
            continue;
        }
        let mut short = (need - free.len()) as u32;
        let from_reclaim = short.min(reclaiming);
        reclaiming -= from_reclaim;
        short -= from_reclaim;
        let mut chosen = Vec::new();
        let mut gain = 0;
        for v in victims.iter().filter(|v| v.project != j.project) {
            if gain >= short {
                break;
            }
            chosen.push(v.id);
            gain += v.count;
        }
        if gain >= short {
            for id in &chosen {
                out.push(Action::Preempt { job: *id, for_project: j.project.clone() });
            }
            victims.retain(|v| !chosen.contains(&v.id));
            reclaiming += gain - short;
            // the free devices wait for the reclaimed ones: nobody borrows them meanwhile
            free.clear();
            *held.entry(j.project.clone()).or_default() += j.count;
            out.push(Action::Wait { job: j.id, reason: "reclaiming borrowed devices by preemption".into() });
        } else {
            out.push(Action::Wait { job: j.id, reason: format!("waiting for {class} devices within the quota") });
        }
    }
    for j in borrowers {
        // the idle share of every reserved quota stays with its project
        let kept: u32 = inp
            .quotas
            .iter()
            .filter(|((p, c), q)| c == class && q.reserved && *p != j.project)
            .map(|((p, _), q)| q.devices.saturating_sub(held.get(p).copied().unwrap_or(0)))
            .sum();
        let lendable = free.len().saturating_sub(kept as usize);
        if lendable >= j.count as usize {
            let take: Vec<String> = free.drain(..j.count as usize).collect();
            *held.entry(j.project.clone()).or_default() += j.count;
            out.push(Action::Start { job: j.id, units: take, borrowed: true });
        } else {
            let reason =
                format!("beyond the {class} quota of project {}: waiting for idle devices to borrow", j.project);
            out.push(Action::Wait { job: j.id, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, project: &str, count: u32, state: State, units: &[&str], borrowed: bool) -> Job {
        Job {
            id,
            project: project.into(),
            uid: 0,
            kind: "train".into(),
            config: None,
            image: None,
            command: vec![],
            class: "cpu".into(),
            count,
            priority: 0,
            state,
            reason: None,
            stop: None,
            run_dir: None,
            units: units.iter().map(|s| s.to_string()).collect(),
            borrowed,
            attempt: 0,
            preemptions: 0,
            submitted: id as f64,
            started: Some(id as f64),
            ended: None,
            exit_code: None,
            epsilon: None,
            slurm_id: None,
        }
    }

    fn run(jobs: &[Job], quotas: &[(&str, u32, Option<f64>, bool)], used: &[(&str, f64)]) -> Vec<Action> {
        let classes: BTreeMap<String, Vec<String>> = [("cpu".to_string(), vec!["0".into(), "1".into()])].into();
        let quotas: HashMap<(String, String), Quota> = quotas
            .iter()
            .map(|(p, d, h, r)| ((p.to_string(), "cpu".into()), Quota { devices: *d, device_hours: *h, reserved: *r }))
            .collect();
        let used = used.iter().map(|(p, h)| ((p.to_string(), "cpu".to_string()), *h)).collect();
        decide(&Inputs {
            classes: &classes,
            jobs,
            quotas: &quotas,
            priorities: &HashMap::new(),
            decayed: &HashMap::new(),
            used: &used,
        })
    }

    #[test]
    fn a_job_within_quota_starts_on_free_devices() {
        let a = run(&[job(1, "a", 1, State::Queued, &[], false)], &[("a", 1, None, false)], &[]);
        assert_eq!(a, vec![Action::Start { job: 1, units: vec!["0".into()], borrowed: false }]);
    }

    #[test]
    fn idle_devices_are_borrowed_beyond_the_quota_and_reclaimed_by_preemption() {
        let q = [("a", 1, None, false), ("b", 1, None, false)];
        let a = run(&[job(1, "a", 2, State::Queued, &[], false)], &q, &[]);
        assert_eq!(a, vec![Action::Start { job: 1, units: vec!["0".into(), "1".into()], borrowed: true }]);
        let jobs = [job(1, "a", 2, State::Running, &["0", "1"], true), job(2, "b", 1, State::Queued, &[], false)];
        let a = run(&jobs, &q, &[]);
        assert_eq!(a[0], Action::Preempt { job: 1, for_project: "b".into() });
        // while the borrower stops, nothing is preempted twice and the queued job waits
        let mut stopping = jobs.clone();
        stopping[0].state = State::Stopping;
        stopping[0].stop = Some("preempt".into());
        let a = run(&stopping, &q, &[]);
        assert!(a.iter().all(|x| !matches!(x, Action::Preempt { .. })), "{a:?}");
    }

    #[test]
    fn a_reserved_quota_is_not_lent() {
        let q = [("a", 1, None, false), ("b", 1, None, true)];
        let a = run(&[job(1, "a", 2, State::Queued, &[], false)], &q, &[]);
        assert!(matches!(a[0], Action::Wait { .. }), "{a:?}");
        let a = run(&[job(1, "a", 1, State::Queued, &[], false)], &q, &[]);
        assert!(matches!(a[0], Action::Start { borrowed: false, .. }), "{a:?}");
    }

    #[test]
    fn used_up_device_hours_stop_running_jobs_and_hold_queued_ones() {
        let q = [("a", 2, Some(1.0), false)];
        let jobs = [job(1, "a", 1, State::Running, &["0"], false), job(2, "a", 1, State::Queued, &[], false)];
        let a = run(&jobs, &q, &[("a", 1.5)]);
        assert_eq!(a[0], Action::Budget { job: 1 });
        assert!(matches!(&a[1], Action::Wait { job: 2, reason } if reason.contains("device-hours")), "{a:?}");
    }
}
