//! A batch of decoded shard rows and what becomes of it: each row prepared (its kind, a lab's text
//! result, the guard's scan and redaction of its text) on the workers, then applied to the sink in
//! row order, as events or as what the report counts (malformed rows, static events).

use super::codes::MedsCode;
use super::{NO_CODE, NO_SUBJECT};
use crate::data::{self, guard, EventKind, Rec, Sink};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// One row of a shard as decoded, then as prepared ([`prepare`]) for the sink.
#[derive(Debug)]
pub(super) struct Row {
    /// index into [`Batch::subjects`], or [`data::NONE`] (null, or a type that holds no id)
    pub(super) subject: u32,
    /// seconds since the epoch; `None` for a static event (or a time type that is not one)
    pub(super) time: Option<i64>,
    pub(super) code: Option<Arc<MedsCode>>,
    /// NaN when there is none
    pub(super) value: f32,
    /// the text as read, then (prepared) only a note's, redacted
    pub(super) text: Option<String>,
    /// index into [`Batch::units`] (a `unit` column, as meds_etl writes one), or [`data::NONE`]
    pub(super) unit: u32,
    pub(super) kind: EventKind,
    /// the value was read from a censored text result (`<0.3`)
    pub(super) censored: bool,
    /// what a lab's text result that gave no value is counted as (`numeric_text`, `text_result`,
    /// `dash_placeholder`), as the CSV reader counts it
    pub(super) result: Option<&'static str>,
    /// identifiers the guard found in the text
    pub(super) identifiers: Vec<guard::IdentifierKind>,
}

/// Consecutive rows of one shard: decoded on the reading thread, applied to the sink in row order on
/// another while the next batch is decoded.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// the shard's path (where malformed rows are; the report names it under the input's root)
    pub(super) name: String,
    /// the shard's size, on its first batch
    pub(super) bytes: u64,
    /// the row number of `rows[0]` (1-based, counted through the shard)
    pub(super) first_line: u64,
    /// the shard ends with this batch
    pub(super) last: bool,
    /// the offset the shard's times carry: UTC (`Some(0)`), or none (read in `read.time_zone`)
    pub(super) time_offset: Option<i64>,
    /// subject ids as decimal strings (or as the file has them), one per run of equal ids
    pub(super) subjects: Vec<String>,
    /// the `unit` column's values, one per run of equal units
    pub(super) units: Vec<String>,
    pub(super) rows: Vec<Row>,
}

/// The value of a lab's text result: a number (`1.2`), or a censored one (`<0.3`, `>= 200`, `≥200`)
/// read as its limit and counted (true) as the CSV and FHIR readers count it; NaN for anything else
/// (the lab is then counted as `no_value`).
fn text_result(text: &str) -> (f32, bool) {
    let (number, is_censored) = data::csv::censored(text.trim());
    match data::fhir::numeric_string(number) {
        Some(v) => (v, is_censored),
        None => (f32::NAN, false),
    }
}

/// Gives a decoded row its kind, reads a lab's text result, and scans and redacts its text (only a
/// note keeps one). Rows the sink counts without an event (malformed, static) are left alone.
pub(super) fn prepare(row: &mut Row) {
    let (Some(code), Some(_), true) = (&row.code, row.time, row.subject != data::NONE) else {
        row.text = None;
        return;
    };
    // (an empty text is none: a row with only an empty text is no note)
    let mut text = row.text.take().filter(|t| !t.trim().is_empty()).map(guard::visible);
    // a lab's text result read as the CSV reader reads one (found by a tester: `陰性`, `2+` were no
    // value in MEDS and coded levels in CSV; `1,5` was no value without a word)
    let mut level = false;
    if code.lab && row.value.is_nan() {
        if let Some(t) = &text {
            (row.value, row.censored) = text_result(t);
            if row.value.is_nan() {
                let unit = code.unit.is_some() || row.unit != data::NONE;
                if unit && data::csv::is_dash(t) {
                    row.result = Some("dash_placeholder");
                } else if let Some(l) = data::fhir::ordinal(t) {
                    (row.value, level) = (l, true);
                } else if t.chars().any(|c| c.is_ascii_digit() || ('０'..='９').contains(&c)) {
                    row.result = Some("numeric_text");
                } else {
                    row.result = Some("text_result");
                }
            }
        }
    }
    row.kind = if level {
        EventKind::Coded
    } else if code.lab || !row.value.is_nan() {
        EventKind::Lab
    } else if text.is_some() {
        EventKind::Note
    } else {
        EventKind::Other
    };
    if row.kind == EventKind::Note {
        // a note kept as an RTF document, as EHR extracts may: its text (without the invisible
        // characters it may give)
        text = text.map(|t| guard::visible(data::note_from_rtf(t)));
    }
    if let Some(t) = &text {
        let found = guard::scan(t);
        if !found.is_empty() {
            row.identifiers = found.iter().map(|(k, _)| *k).collect();
            text = Some(guard::redact(t, &found));
        }
    }
    row.text = if row.kind == EventKind::Note { text } else { None };
}

/// Applies a prepared batch to the sink, row by row in order: what the row reader did with each row.
pub(super) fn apply(sink: &mut Sink, batch: Batch) {
    use data::check::Severity;
    let Batch { name, bytes, first_line, last, time_offset, subjects, units, rows } = batch;
    let name = sink.report.file_label(Path::new(&name));
    sink.report.bytes += bytes;
    for (i, row) in rows.into_iter().enumerate() {
        sink.report.lines += 1;
        let subject = subjects.get(row.subject as usize);
        let (Some(subject), Some(code)) = (subject, &row.code) else {
            let reason = if subject.is_none() { NO_SUBJECT } else { NO_CODE };
            sink.report.malformed_line(&name, first_line + i as u64, reason);
            continue;
        };
        // MEDS allows static events without a time (e.g. sex): counted, not turned into events
        let Some(local) = row.time else {
            sink.report.count(Severity::Info, "static_event", "meds", "time");
            sink.subject(subject);
            continue;
        };
        let Some(time) = sink.time(data::time::Stamp { local, offset: time_offset }) else {
            sink.report.malformed_line(&name, first_line + i as u64, "a time read.time_zone cannot place");
            continue;
        };
        if row.censored {
            sink.report.count(Severity::Info, "censored_value", "meds", "text_value");
        }
        // (a text that held an identifier is said as one)
        match row.result.filter(|_| row.identifiers.is_empty()) {
            Some("numeric_text") => sink.report.count(Severity::Warning, "numeric_text", "meds", "text_value"),
            Some("text_result") => sink.report.count(Severity::Info, "text_result", "meds", "text_value"),
            Some(_) => sink.report.count(Severity::Info, "dash_placeholder", "meds", "text_value"),
            None => {}
        }
        if !row.identifiers.is_empty() {
            // (said at the row: the finding names the file and its first rows, never the text)
            sink.report.reading(&name, first_line + i as u64);
            for k in &row.identifiers {
                sink.report.identifier(sink.opts.identifiers, *k, "meds", "text_value");
            }
            sink.report.reading("", 0);
        }
        sink.push(Rec {
            subject: Cow::Borrowed(subject),
            time,
            kind: row.kind,
            system: Cow::Borrowed(&code.system),
            code: Cow::Borrowed(&code.code),
            value: row.value,
            // the row's `unit` where it has one, else the one its code names (`LAB//<code>//<unit>`)
            unit: units
                .get(row.unit as usize)
                .map(|u| u.trim())
                .filter(|u| !u.is_empty())
                .or(code.unit.as_deref())
                .map(Cow::Borrowed),
            text: row.text,
            end: i64::MIN,
        });
    }
    if last {
        sink.report.files += 1;
    }
}
