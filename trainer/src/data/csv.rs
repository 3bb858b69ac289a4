//! CSV input: event files `subject_id,time,code,value,unit` and note files `subject_id,time,text`,
//! told apart by their header. `code` is `system|code` or a bare code (then of the system
//! `medtrain:csv`, or a catalogue test name such as `creatinine`, mapped to its LOINC code). `time` is a
//! FHIR date/dateTime. A CSV directory is every `*.csv` in it, in name order.

use super::check::Severity;
use super::{catalog, guard, time, DataError, EventKind, ReadOptions, Rec, Result, Sink};
use std::path::Path;

enum Layout {
    Events { subject: usize, time: usize, code: usize, value: usize, unit: Option<usize>, columns: usize },
    Notes { subject: usize, time: usize, text: usize, columns: usize },
}

impl Layout {
    /// The header's field count, which every row must have.
    fn columns(&self) -> usize {
        match *self {
            Layout::Events { columns, .. } | Layout::Notes { columns, .. } => columns,
        }
    }
}

fn layout(path: &Path, header: &csv::StringRecord) -> Result<Layout> {
    let col = |n: &str| header.iter().position(|h| h.trim() == n);
    if let Some((i, h)) = header.iter().enumerate().find(|(i, h)| header.iter().take(*i).any(|o| o.trim() == h.trim()))
    {
        return Err(DataError::Line {
            path: path.into(),
            line: 1,
            msg: format!(
                "the header names column {} twice (columns {} and {})",
                reportable_column(h),
                col(h).map_or(0, |c| c + 1),
                i + 1
            ),
        });
    }
    let need = |n: &str| {
        col(n).ok_or_else(|| DataError::Line {
            path: path.into(),
            line: 1,
            msg: format!("the header has no {n:?} column"),
        })
    };
    if col("text").is_some() {
        return Ok(Layout::Notes {
            subject: need("subject_id")?,
            time: need("time")?,
            text: need("text")?,
            columns: header.len(),
        });
    }
    Ok(Layout::Events {
        subject: need("subject_id")?,
        time: need("time")?,
        code: need("code")?,
        value: need("value")?,
        unit: col("unit"),
        columns: header.len(),
    })
}

/// Reads one CSV file into the sink.
pub fn read_file(path: &Path, sink: &mut Sink) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    sink.report.bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
    // a record over read.max_line_bytes fails the read instead of growing the parser's buffer: a quoted
    // note may span lines, so the parser cannot be resynchronized past it and the file is refused
    let budget = super::bounded::CsvBudget::new(sink.opts.limits.max_line_bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(super::bounded::CSV_BUFFER)
        .from_reader(budget.reader(file));
    let header = rdr
        .headers()
        .map_err(|e| DataError::Format { path: path.into(), msg: format!("cannot read the header: {e}") })?
        .clone();
    budget.record_done();
    let layout = layout(path, &header)?;
    let mut rec = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(DataError::io(path, format!("at line {line}: {e}")))
            }
            Err(_) => {
                budget.record_done();
                sink.report.lines += 1;
                sink.report.malformed_line(&name, line, "not valid CSV");
                continue;
            }
        }
        budget.record_done();
        sink.report.lines += 1;
        if let Err(reason) = row(&layout, &rec, sink) {
            sink.report.malformed_line(&name, line, reason);
        }
    }
    sink.report.files += 1;
    Ok(())
}

/// A header's column name as an error may print it: one of the columns the reader knows, else a
/// placeholder (a header is a line of the file).
fn reportable_column(h: &str) -> String {
    match h.trim() {
        n @ ("subject_id" | "time" | "code" | "value" | "unit" | "text") => format!("{n:?}"),
        _ => "(a name that is not printed)".into(),
    }
}

/// A value with a leading comparator (`<0.1`, `>=200`, `≥ 200`: a result past a limit of detection):
/// the number and whether it had one. The MEDS reader reads its text results with it too.
pub(crate) fn censored(v: &str) -> (&str, bool) {
    for c in ["<=", ">=", "<", ">", "≤", "≥", "＜", "＞"] {
        if let Some(rest) = v.strip_prefix(c) {
            return (rest.trim_start(), true);
        }
    }
    (v, false)
}

fn row(layout: &Layout, rec: &csv::StringRecord, sink: &mut Sink) -> std::result::Result<(), &'static str> {
    if rec.len() != layout.columns() {
        return Err("a row with more or fewer fields than the header");
    }
    let get = |i: usize| rec.get(i).map(str::trim);
    match *layout {
        Layout::Events { subject, time: t, code, value, unit, .. } => {
            let subject = get(subject).filter(|s| !s.is_empty()).ok_or("no subject_id")?;
            let time = time::parse(get(t).ok_or("no time")?).ok_or("unreadable time")?;
            let code = get(code).filter(|s| !s.is_empty()).ok_or("no code")?;
            let (system, code) = match code.split_once('|') {
                Some((s, c)) => (s.to_owned(), c.to_owned()),
                None => match catalog::by_name_or_code(code) {
                    Some(l) if l.name == code => (catalog::LOINC.to_owned(), l.loinc.to_owned()),
                    _ => ("medtrain:csv".to_owned(), code.to_owned()),
                },
            };
            let (v, is_censored) = censored(get(value).unwrap_or(""));
            let value = match v {
                "" if !is_censored => f32::NAN,
                v => v.parse::<f32>().ok().filter(|v| v.is_finite()).ok_or("value is not a number")?,
            };
            if is_censored {
                sink.report.count(Severity::Info, "censored_value", "csv", "value");
            }
            let unit = unit.and_then(get).filter(|u| !u.is_empty()).map(str::to_owned);
            let kind = match catalog::lookup(&system, &code) {
                Some(l) if l.vital => EventKind::Vital,
                _ => EventKind::Lab,
            };
            sink.push(Rec {
                subject: subject.into(),
                time,
                kind,
                system: system.into(),
                code: code.into(),
                value,
                unit: unit.map(Into::into),
                text: None,
                end: i64::MIN,
            });
        }
        Layout::Notes { subject, time: t, text, .. } => {
            let subject = get(subject).filter(|s| !s.is_empty()).ok_or("no subject_id")?;
            let time = time::parse(get(t).ok_or("no time")?).ok_or("unreadable time")?;
            let mut text = guard::visible(rec.get(text).ok_or("no text")?.to_owned());
            let found = guard::scan(&text);
            if !found.is_empty() {
                for (k, _) in &found {
                    sink.report.identifier(sink.opts.identifiers, *k, "notes.csv", "text");
                }
                text = guard::redact(&text, &found);
            }
            sink.push(Rec {
                subject: subject.into(),
                time,
                kind: EventKind::Note,
                system: "medtrain:note".into(),
                code: "note".into(),
                value: f32::NAN,
                unit: None,
                text: Some(text),
                end: i64::MIN,
            });
        }
    }
    Ok(())
}

/// Reads a CSV file or every `*.csv` under a directory.
pub fn read(path: &Path, opts: &ReadOptions, data: &mut super::Dataset, report: &mut super::Report) -> Result<()> {
    let files = super::input_files(path, super::CSV_EXTS, report)?;
    let mut sink = Sink { data, report, opts };
    for f in files {
        // a labels file in the same directory is not an input of events
        if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("labels")) {
            sink.report.finding(
                Severity::Info,
                "labels_file_skipped",
                "csv",
                "-",
                Some(&f.file_name().unwrap().to_string_lossy()),
                1,
            );
            continue;
        }
        read_file(&f, &mut sink)?;
    }
    Ok(())
}
