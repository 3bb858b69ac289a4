//! `medtrain node`, `queue`, `quota`, `usage` and `audit`: the daemon and its clients.

use crate::node::client::{self, Client};
use crate::node::store::{iso, State};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct SocketArg {
    /// the daemon's socket (default: $MEDTRAIN_SOCKET, else /run/medtrain/node.sock)
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// The node's devices: CPU, CUDA GPUs (and MIG instances), declared NPUs, and whether jobs can be
    /// sandboxed here.
    Devices {
        /// the node config (for cpu_slots and declared NPUs)
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The node's signing key (permits, releases): its path, public key and fingerprint, to give to
    /// whoever verifies releases; `--new` makes it (refused where a key exists).
    Key {
        /// the key file (default: $MEDTRAIN_NODE_KEY or ~/.medtrain/node_ed25519)
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// make the key (Ed25519 from the OS's entropy, mode 0600)
        #[arg(long)]
        new: bool,
        #[arg(long)]
        json: bool,
    },
    /// The node daemon: serves the socket and runs the queue (configs/node.toml).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// (internal) whether the caller can read every path, and everything under a directory (the
    /// daemon asks it as a job's submitter)
    #[command(hide = true)]
    CanRead { paths: Vec<PathBuf> },
    /// (internal) the process that runs one job for the daemon
    #[command(hide = true)]
    Shim {
        dir: PathBuf,
        #[arg(long, required_unless_present = "slurm")]
        lock_fd: Option<i32>,
        /// started by Slurm (sbatch), not by the daemon
        #[arg(long)]
        slurm: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Queue a training run (CONFIG), or a container job (--image IMAGE -- CMD...).
    Submit {
        config: Option<PathBuf>,
        #[arg(long)]
        project: String,
        /// CLASS:COUNT (cpu:1, cuda:2, or a declared NPU kind)
        #[arg(long, default_value = "cpu:1")]
        devices: String,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// a container image (runs under podman with no network and a read-only root)
        #[arg(long)]
        image: Option<String>,
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Jobs of your projects (operators: all), newest first.
    List {
        /// ended jobs too
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    Cancel {
        id: i64,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// A job's output (with --follow, until it ends).
    Logs {
        id: i64,
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set a project's quota for one device class (operators).
    Set {
        #[arg(long)]
        project: String,
        /// device class: cpu, cuda, or a declared NPU kind
        #[arg(long)]
        class: String,
        /// devices the project may hold at once without borrowing
        #[arg(long)]
        devices: u32,
        /// device-hours per calendar month (UTC), 0..=1e9; omitted: unlimited
        // hyphen values ("-5", "-inf") reach the range check, which names the flag and the range
        #[arg(long, allow_hyphen_values = true)]
        device_hours: Option<f64>,
        /// keep the project's idle share for it (nobody may borrow it)
        #[arg(long)]
        reserved: bool,
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
        #[command(flatten)]
        socket: SocketArg,
    },
    Show {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsageCommand {
    /// Device-hours and epsilon spent per project in a month.
    Report {
        /// YYYY-MM (default: this month, UTC)
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

fn connect(s: &SocketArg) -> anyhow::Result<Client> {
    Ok(Client::connect(&client::socket_path(s.socket.as_deref()))?)
}

pub fn node(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Key { key_file, new, json } => {
            use crate::privacy::sshsig::NodeKey;
            let path = key_file.unwrap_or_else(crate::privacy::permit::key_path);
            let exists = std::fs::symlink_metadata(&path).is_ok();
            let key = match (new, exists) {
                (true, true) => {
                    anyhow::bail!("{}: a key exists there; --new makes a key only where there is none", path.display())
                }
                (true, false) => NodeKey::load_or_create(&path)?,
                (false, true) => NodeKey::load(&path)?,
                (false, false) => {
                    anyhow::bail!("{}: no node key; make one with `medtrain node key --new`", path.display())
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key_file": path, "public_key": key.public_openssh(), "fingerprint": key.fingerprint(), "new": new})
                );
            } else {
                println!("{}{}", if new { "made " } else { "" }, path.display());
                println!("{}", key.public_openssh());
                println!("{}", key.fingerprint());
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Devices { config, json } => {
            let cfg = config.map(|c| crate::node::config::NodeConfig::load(&c)).transpose()?;
            let mut inv = crate::node::devices::inventory(cfg.as_ref());
            inv.sandbox_refused = crate::node::sandbox::probe().err();
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                print!("{}", crate::node::devices::render(&inv));
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::Run { config } => {
            crate::node::daemon::run(&config)?;
            Ok(ExitCode::SUCCESS)
        }
        NodeCommand::CanRead { paths } => Ok(ExitCode::from(crate::node::api::can_read(&paths))),
        NodeCommand::Shim { dir, lock_fd, slurm } => {
            Ok(crate::node::shim::run(&dir, if slurm { None } else { lock_fd }))
        }
    }
}

fn state_of(v: &Value) -> &str {
    v["state"].as_str().unwrap_or("?")
}

pub fn queue(cmd: QueueCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QueueCommand::Submit { config, project, devices, priority, image, command, socket } => {
            let req = match (config, image) {
                (Some(c), None) => {
                    if !command.is_empty() {
                        anyhow::bail!("queue submit: a command after -- goes with --image, not with a training config");
                    }
                    let abs = std::path::absolute(&c).map_err(|e| anyhow::anyhow!("{}: {e}", c.display()))?;
                    // said here, with the path (the daemon repeats nothing of a request)
                    if let Err(e) = std::fs::metadata(&abs) {
                        anyhow::bail!("{}: {e} (queue submit's training CONFIG)", c.display());
                    }
                    json!({"op": "submit", "project": project, "devices": devices, "priority": priority, "config": abs})
                }
                (None, Some(i)) => {
                    if command.is_empty() {
                        anyhow::bail!("queue submit --image: give the command after --, e.g. -- python train.py");
                    }
                    json!({"op": "submit", "project": project, "devices": devices, "priority": priority, "image": i,
                        "command": command})
                }
                (Some(_), Some(_)) => anyhow::bail!("queue submit: a training CONFIG or --image, not both"),
                (None, None) => anyhow::bail!("queue submit: give a training CONFIG, or --image IMAGE -- CMD"),
            };
            let v = connect(&socket)?.call(req)?;
            println!("{}", v["job"]);
        }
        QueueCommand::List { all, json, socket } => {
            let v = connect(&socket)?.call(json!({"op": "list", "all": all}))?;
            let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                println!(
                    "{:>6}  {:<16} {:<10} {:<9} {:>4}  {:<20}  reason",
                    "id", "project", "state", "devices", "prio", "submitted"
                );
                for j in &jobs {
                    let dev = format!(
                        "{}:{}{}",
                        j["class"].as_str().unwrap_or(""),
                        j["count"],
                        if j["borrowed"] == true { "+" } else { "" }
                    );
                    println!(
                        "{:>6}  {:<16} {:<10} {:<9} {:>4}  {:<20}  {}",
                        j["id"].as_i64().unwrap_or(0),
                        j["project"].as_str().unwrap_or(""),
                        state_of(j),
                        dev,
                        j["priority"].as_i64().unwrap_or(0),
                        iso(j["submitted"].as_f64().unwrap_or(0.0)),
                        j["reason"].as_str().unwrap_or("")
                    );
                }
            }
        }
        QueueCommand::Cancel { id, socket } => {
            connect(&socket)?.call(json!({"op": "cancel", "job": id}))?;
            println!("job {id}: cancel requested");
        }
        QueueCommand::Logs { id, follow, socket } => {
            use std::io::Write;
            let mut c = connect(&socket)?;
            c.send(json!({"op": "logs", "job": id, "follow": follow, "offset": 0}))?;
            let mut out = std::io::stdout().lock();
            loop {
                let v = c.read()?;
                out.write_all(v["chunk"].as_str().unwrap_or("").as_bytes())?;
                out.flush()?;
                if v["done"] == true {
                    break;
                }
            }
            if follow {
                // the job's final state as the exit status: 0 only when it succeeded
                let l = c.call(json!({"op": "list", "all": true}))?;
                let st = l["jobs"]
                    .as_array()
                    .and_then(|a| a.iter().find(|j| j["id"] == id))
                    .map(|j| state_of(j).to_string());
                if st.as_deref() != Some(State::Succeeded.as_str()) {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn quota(cmd: QuotaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        QuotaCommand::Set { project, class, devices, device_hours, reserved, priority, socket } => {
            // NaN and infinity have no JSON form (serde_json writes null), and a null or missing limit is
            // "unlimited": checked here, before anything is sent
            let device_hours =
                device_hours.map(|h| crate::cli_args::within("--device-hours", h, 0.0, 1e9)).transpose()?;
            let mut request = json!({"op": "quota_set", "project": project, "class": class,
                "devices": devices, "reserved": reserved, "priority": priority});
            // no limit is the field left out: the daemon refuses an explicit null
            if let Some(h) = device_hours {
                request["device_hours"] = json!(h);
            }
            let v = connect(&socket)?.call(request)?;
            println!("{}: {} {}", project, class, v["quota"]);
            // (a limit left out is removed: said, with what it was)
            let before = &v["before"];
            if let (Some(h), None) = (before["device_hours"].as_f64(), device_hours) {
                eprintln!(
                    "note: the device-hours limit ({}) is removed: --device-hours left out is no limit",
                    crate::short_number(h)
                );
            }
            if before["reserved"].as_bool() == Some(true) && !reserved {
                eprintln!("note: the quota is no longer reserved: --reserved left out lends idle devices");
            }
        }
        QuotaCommand::Show { project, json, socket } => {
            let v = connect(&socket)?.call(json!({"op": "quota_show", "project": project}))?;
            let rows = v["quotas"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:<8} {:>7} {:>7} {:>12} {:>12} {:>8} {:>5}",
                    "project", "class", "devices", "in use", "hours/month", "hours used", "reserved", "prio"
                );
                for r in &rows {
                    // (a budget under 0.05 h showed as 0.0: found by a tester)
                    let h = r["device_hours"].as_f64().map_or("unlimited".to_string(), |h| {
                        if h == 0.0 || h >= 0.05 {
                            format!("{:.1}", h.abs())
                        } else {
                            format!("{h:.4}")
                        }
                    });
                    println!(
                        "{:<16} {:<8} {:>7} {:>7} {:>12} {:>12.3} {:>8} {:>5}",
                        r["project"].as_str().unwrap_or(""),
                        r["class"].as_str().unwrap_or(""),
                        r["devices"].as_u64().unwrap_or(0),
                        r["devices_in_use"].as_u64().unwrap_or(0),
                        h,
                        r["device_hours_used"].as_f64().unwrap_or(0.0),
                        r["reserved"].as_bool().unwrap_or(false),
                        r["priority"].as_i64().unwrap_or(0)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn usage(cmd: UsageCommand) -> anyhow::Result<ExitCode> {
    let UsageCommand::Report { period, json, socket } = cmd;
    let v = connect(&socket)?.call(json!({"op": "usage", "period": period}))?;
    if json {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.remove("ok");
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "usage {} ({} to {})",
        v["period"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or("")
    );
    for p in v["projects"].as_array().cloned().unwrap_or_default() {
        let hours: Vec<String> = p["device_hours"]
            .as_object()
            .map(|o| o.iter().map(|(k, h)| format!("{k} {:.3} h", h.as_f64().unwrap_or(0.0))).collect())
            .unwrap_or_default();
        println!(
            "  {:<16} {:<30} epsilon {:.3} over {} runs",
            p["project"].as_str().unwrap_or(""),
            if hours.is_empty() { "no device use".to_string() } else { hours.join(", ") },
            p["epsilon_spent"].as_f64().unwrap_or(0.0),
            p["runs"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since`: a day (YYYY-MM-DD, UTC) or Unix seconds.
fn parse_since(s: &str) -> anyhow::Result<f64> {
    if let Ok(t) = s.parse::<f64>() {
        // (past the year 9999 is no time an audit row has: a typo, taken in silence before)
        if t.is_finite() && (0.0..=253_402_300_799.0).contains(&t) {
            return Ok(t);
        }
    }
    // a day of the calendar (2026-02-31 was read as March 3rd)
    if crate::privacy::permit::valid_date(s) {
        if let (Ok(y), Ok(m), Ok(d)) = (s[0..4].parse::<i64>(), s[5..7].parse::<u32>(), s[8..10].parse::<u32>()) {
            return Ok((crate::data::time::days_from_civil(y, m, d) * 86_400) as f64);
        }
    }
    // the time an audit row prints (`2026-11-29T19:30:05Z`; found by a tester: refused)
    if s.len() > 10 && s.as_bytes()[10] == b'T' && crate::privacy::permit::valid_date(&s[..10]) {
        if let Some(t) = crate::data::time::utc(s) {
            return Ok(t as f64);
        }
    }
    anyhow::bail!(
        "--since: expected a day (YYYY-MM-DD, UTC), a time as audit prints it (2026-11-29T19:30:05Z) or Unix seconds"
    )
}

pub fn audit(since: Option<String>, json: bool, socket: SocketArg) -> anyhow::Result<ExitCode> {
    let since = since.as_deref().map(parse_since).transpose()?.unwrap_or(0.0);
    let v = connect(&socket)?.call(json!({"op": "audit", "since": since}))?;
    let rows = v["audit"].as_array().cloned().unwrap_or_default();
    if v["truncated"].as_bool() == Some(true) {
        eprintln!(
            "note: the newest {} rows are shown; older ones are left out (they stay in the node's store)",
            rows.len()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            let who = match r["uid"].as_u64() {
                Some(u) => format!("uid {u} ({})", r["role"].as_str().unwrap_or("")),
                None => r["role"].as_str().unwrap_or("daemon").to_string(),
            };
            let job = r["job"].as_i64().map_or(String::new(), |j| format!(" job {j}"));
            let project = r["project"].as_str().map_or(String::new(), |p| format!(" project {p}"));
            println!(
                "{}  {:<22} {:<14}{project}{job}  {}",
                r["at"].as_str().unwrap_or(""),
                who,
                r["action"].as_str().unwrap_or(""),
                r["detail"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod since_tests {
    #[test]
    fn since_is_a_calendar_day_or_unix_seconds() {
        assert_eq!(super::parse_since("1970-01-02").unwrap(), 86_400.0);
        assert_eq!(super::parse_since("1700000000").unwrap(), 1.7e9);
        assert_eq!(super::parse_since("1970-01-02T00:00:10Z").unwrap(), 86_410.0);
        for bad in ["2026-02-31", "2026-13-01", "2026-1-01", "-5", "NaN", "yesterday", "99999999999999999999"] {
            assert!(super::parse_since(bad).is_err(), "{bad}");
        }
    }
}
