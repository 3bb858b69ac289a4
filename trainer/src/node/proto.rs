//! The socket API: one JSON object per line each way (UTF-8, at most `node.max_request_bytes` per
//! request). Every request and response carries `"version": 1`. A connection may send several requests
//! in turn; `logs` with `follow` answers with a stream of chunks ending in one with `"done": true`.
//!
//! Requests (`op` selects the operation):
//!
//! | op | fields | who |
//! |---|---|---|
//! | `whoami` | | anyone with a role |
//! | `devices` | | anyone with a role |
//! | `submit` | `project`, `devices` ("cpu:1", "cuda:2"), `priority`, and `config` (an absolute path) or `image` + `command` | researcher of the project, operator |
//! | `list` | `all` (ended jobs too) | own projects' jobs; operator: all |
//! | `cancel` | `job` | own projects; operator |
//! | `logs` | `job`, `offset`, `follow` | own projects; operator |
//! | `quota_set` | `project`, `class`, `devices`, `device_hours` (left out: no limit; `null` refused), `reserved`, `priority` | operator |
//! | `quota_show` | `project` | own projects; operator |
//! | `usage` | `period` ("2026-11") | own projects; operator |
//! | `audit` | `since` (Unix seconds), `limit` | own projects' entries; operator: all |
//!
//! Responses: `{"version": 1, "ok": true, ...}` or `{"version": 1, "ok": false, "error": "..."}`. An
//! error names what was wrong (the field, the limit) and never repeats the request's text.

use serde::Deserialize;

pub const VERSION: u32 = 1;

#[derive(Debug, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Whoami,
    Devices,
    Submit {
        project: String,
        #[serde(default = "default_devices")]
        devices: String,
        #[serde(default)]
        priority: i64,
        config: Option<String>,
        image: Option<String>,
        #[serde(default)]
        command: Vec<String>,
    },
    List {
        #[serde(default)]
        all: bool,
    },
    Cancel {
        job: i64,
    },
    Logs {
        job: i64,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        follow: bool,
    },
    QuotaSet {
        project: String,
        class: String,
        devices: u32,
        device_hours: Option<f64>,
        #[serde(default)]
        reserved: bool,
        priority: Option<i64>,
    },
    QuotaShow {
        project: Option<String>,
    },
    Usage {
        period: Option<String>,
    },
    Audit {
        #[serde(default)]
        since: f64,
        #[serde(default = "default_limit")]
        limit: u32,
    },
}

fn default_devices() -> String {
    "cpu:1".into()
}
fn default_limit() -> u32 {
    10_000
}

/// `cpu:1` -> ("cpu", 1)
pub fn parse_devices(s: &str) -> Option<(String, u32)> {
    let (class, n) = s.split_once(':').unwrap_or((s, "1"));
    let n: u32 = n.parse().ok().filter(|&n| (1..=4096).contains(&n))?;
    super::config::valid_name(class).then(|| (class.to_string(), n))
}

pub fn ok(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("version".into(), VERSION.into());
        o.insert("ok".into(), true.into());
    }
    v
}

pub fn err(msg: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({"version": VERSION, "ok": false, "error": msg.to_string()})
}
