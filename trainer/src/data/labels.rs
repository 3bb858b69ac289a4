//! Labels in the MEDS label schema: `subject_id, prediction_time` and one of `boolean_value`,
//! `integer_value`, `float_value`, `categorical_value`; one example per row. From a CSV or parquet
//! file, a directory of them (ACES and meds-testing-helpers write a task's labels as
//! `task_labels/<task>/*.parquet`), or derived from the events for common tasks:
//! - `ed_admission`: at the start of each emergency encounter (class `EMER`), whether an inpatient
//!   encounter (`IMP`, `ACUTE`, `NONAC`) starts within `window_hours` after the emergency one began;
//! - `lab_rise`: at each measurement of a lab (default creatinine), whether the same lab rises by at
//!   least `rise` (default 0.3 mg/dL) within `horizon_hours` (default 48): KDIGO's AKI criterion.

use super::{catalog, time, DataError, Dataset, EventKind, ReadOptions, Result};
use parquet::file::reader::FileReader;
use parquet::record::Field;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum LabelValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Categorical(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// index into `Dataset::subjects`
    pub subject: u32,
    /// seconds since the epoch; features use only what happened before it
    pub prediction_time: i64,
    pub value: LabelValue,
}

/// A label task derived from the events.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "task", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    EdAdmission {
        #[serde(default = "default_window")]
        window_hours: f64,
    },
    LabRise {
        #[serde(default = "default_lab")]
        lab: String,
        #[serde(default = "default_rise")]
        rise: f64,
        #[serde(default = "default_horizon")]
        horizon_hours: f64,
    },
}

fn default_window() -> f64 {
    24.0
}
fn default_lab() -> String {
    "creatinine".into()
}
fn default_rise() -> f64 {
    0.3
}
fn default_horizon() -> f64 {
    48.0
}

const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

fn class_is(data: &Dataset, code: u32, wanted: &[&str]) -> bool {
    let c = &data.codes[code as usize];
    (c.system == ACT || c.system.is_empty() || c.system == "medtrain:csv") && wanted.contains(&c.code.as_str())
}

/// Derives labels; the dataset must be sorted ([`Dataset::sort`]).
pub fn derive(data: &Dataset, task: &Task) -> Result<Vec<Label>> {
    let mut out = Vec::new();
    match task {
        Task::EdAdmission { window_hours } => {
            let window = (window_hours * 3600.0) as i64;
            for r in data.by_subject() {
                let ev = &data.events[r];
                let enc: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Encounter).collect();
                for ed in enc.iter().filter(|e| class_is(data, e.code, &["EMER"])) {
                    let admitted = enc.iter().any(|e| {
                        class_is(data, e.code, &["IMP", "ACUTE", "NONAC"])
                            && e.time >= ed.time
                            && e.time <= ed.time.saturating_add(window)
                    });
                    // the second before the arrival: features use events up to and including the
                    // prediction time, and an admission or its notes recorded at the arrival itself
                    // (a date without a time puts a whole day there) must not be among them
                    out.push(Label {
                        subject: ed.subject,
                        prediction_time: ed.time.saturating_sub(1),
                        value: LabelValue::Bool(admitted),
                    });
                }
            }
        }
        Task::LabRise { lab, rise, horizon_hours } => {
            let l = catalog::by_name_or_code(lab).ok_or_else(|| {
                DataError::Invalid(format!(
                    "labels: lab {} is not a catalogue test name, LOINC or JLAC10 code",
                    super::reportable::quoted(lab)
                ))
            })?;
            let horizon = (horizon_hours * 3600.0) as i64;
            // every code the catalogue maps to the lab (its LOINC and JLAC10 codes, JLAC10 codes of the
            // same quantity)
            let row = catalog::index_of(l);
            let codes: Vec<u32> = (0..data.codes.len() as u32)
                .filter(|&c| {
                    let c = &data.codes[c as usize];
                    catalog::lookup_index(&c.system, &c.code) == Some(row)
                })
                .collect();
            let unit_ok = |u: u32| u == super::NONE || data.units.names[u as usize] == l.unit;
            for r in data.by_subject() {
                let Some(first) = data.events.get(r.start).filter(|_| !r.is_empty()) else { continue };
                let subject = first.subject;
                let vals: Vec<(i64, f32)> = data.events[r]
                    .iter()
                    .filter(|e| {
                        e.kind != super::EventKind::Coded
                            && codes.contains(&e.code)
                            && !e.value.is_nan()
                            && unit_ok(e.unit)
                    })
                    .map(|e| (e.time, e.value))
                    .collect();
                for (i, &(t, v)) in vals.iter().enumerate() {
                    let risen = vals[i + 1..]
                        .iter()
                        .take_while(|(u, _)| *u <= t.saturating_add(horizon))
                        .any(|&(u, w)| u > t && (w - v) as f64 >= rise - 1e-6);
                    out.push(Label { subject, prediction_time: t, value: LabelValue::Bool(risen) });
                }
            }
        }
    }
    Ok(out)
}

/// The label files `labels.file` names: the file itself, or every `*.parquet` and `*.csv` file under a
/// directory (or of the one subdirectory that holds them), in name order. The error (a missing path, a directory without
/// label files) names the path as [`super::guard::shown_path`] shows it, for the caller to put under
/// its config key.
pub fn files(path: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let shown = |p: &Path| super::guard::shown_user_path(&p.display().to_string());
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{}: no such file or directory", shown(path)))
        }
        Err(e) => return Err(format!("{}: {e}", shown(path))),
        Ok(m) if !m.is_dir() => return Ok(vec![path.to_path_buf()]),
        Ok(_) => {}
    }
    let found: Vec<PathBuf> = super::walk::files(path, true)
        .map_err(|e| match e {
            DataError::Io { path, msg } | DataError::Format { path, msg } => format!("{}: {msg}", shown(&path)),
            e => e.to_string(),
        })?
        .into_iter()
        .filter(|p| super::has_ext(p, &[".parquet"]) || super::has_ext(p, super::CSV_EXTS))
        .collect();
    if found.is_empty() {
        return Err(format!("{}: a directory with no *.parquet or *.csv (.tsv, gzipped) label files", shown(path)));
    }
    // label files in several directories are several tasks (task_labels/<task>/...), not one label set
    let mut dirs: Vec<&Path> = found.iter().filter_map(|f| f.parent()).collect();
    dirs.dedup();
    if dirs.len() > 1 {
        return Err(format!(
            "{}: label files in {} directories under it (a task's labels each, as task_labels/<task>/): name one \
             task's directory",
            shown(path),
            dirs.len()
        ));
    }
    Ok(found)
}

/// Reads a label file (CSV or parquet), or the label files of a directory ([`files`]) as one label
/// set, against the dataset's subjects. Rows naming a subject the dataset does not hold are counted in
/// the second value, not kept.
pub fn read(path: &Path, data: &Dataset) -> Result<(Vec<Label>, u64)> {
    let file = read_in(path, data, &ReadOptions::default())?;
    Ok((file.labels, file.unknown))
}

/// The labels of a label file or directory ([`read_in`]).
#[derive(Debug, Default)]
pub struct LabelFile {
    pub labels: Vec<Label>,
    /// rows naming a subject the dataset does not hold (counted, not kept)
    pub unknown: u64,
    /// rows that repeat an earlier label (subject, prediction time and value; counted, not kept)
    pub duplicates: u64,
    /// how the prediction times were written (a zone or none)
    pub zones: time::Zones,
    /// where each label is in its file: the CSV line or the parquet row (one-based)
    lines: Vec<u64>,
}

/// [`read`] by the data config's `[read]` keys: CSV files in `read.encoding` with lines up to
/// `read.max_line_bytes`, times without a zone in `read.time_zone`.
pub fn read_in(path: &Path, data: &Dataset, opts: &ReadOptions) -> Result<LabelFile> {
    let mut out = LabelFile::default();
    // the files read, each with the index of its first label
    let mut starts: Vec<(PathBuf, usize)> = Vec::new();
    for f in files(path).map_err(|m| DataError::Invalid(format!("config key labels.file: {m}")))? {
        starts.push((f.clone(), out.labels.len()));
        if super::has_ext(&f, &[".parquet"]) {
            super::meds::contained(&f, || read_parquet(&f, data, opts, &mut out))
        } else {
            read_csv(&f, data, opts, &mut out)
        }
        .map_err(|e| e.inside(path))?
    }
    // a label given twice (a row repeated, one label set written as CSV and parquet): kept once and
    // counted (it would weigh twice in training and in the held-out metrics); two values for one
    // prediction refused
    let mut seen: std::collections::HashMap<(u32, i64), usize> = std::collections::HashMap::new();
    let mut conflicts = 0u64;
    let mut first_conflict = None;
    let mut keep = vec![true; out.labels.len()];
    for (i, l) in out.labels.iter().enumerate() {
        match seen.entry((l.subject, l.prediction_time)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(i);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                keep[i] = false;
                if out.labels[*o.get()].value == l.value {
                    out.duplicates += 1;
                } else {
                    conflicts += 1;
                    first_conflict.get_or_insert((*o.get(), i));
                }
            }
        }
    }
    if let Some((before, at)) = first_conflict {
        // said at the first such label, with where the prediction was labelled before (no id or value)
        let file_of = |i: usize| &starts[starts.partition_point(|(_, start)| *start <= i) - 1].0;
        let (file, line) = (file_of(at), out.lines[at]);
        let earlier = if file_of(before) == file {
            format!("line {}", out.lines[before])
        } else {
            // (shown as the error's own file is: its directories as they are)
            format!("{}:{}", super::shown_file(file_of(before)), out.lines[before])
        };
        return Err(DataError::Line {
            path: file.clone(),
            line,
            msg: format!(
                "{conflicts} prediction{} (a subject at a prediction time) labelled twice with different values, the \
                 first here (labelled before at {earlier}): which is the label is not known",
                if conflicts == 1 { "" } else { "s" }
            ),
        });
    }
    if out.duplicates > 0 {
        let mut k = keep.iter();
        out.labels.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep.iter();
        out.lines.retain(|_| *k.next().unwrap_or(&true));
    }
    Ok(out)
}

impl LabelFile {
    fn push(&mut self, label: Label, line: u64) {
        self.labels.push(label);
        self.lines.push(line);
    }
}

/// The subject a label names: its id as the input has it, or a FHIR reference to it (`Patient/<id>`,
/// a server's `.../Patient/<id>`, `urn:uuid:<id>`), as an export's subject references are written.
fn subject_index(data: &Dataset, id: &str) -> Option<u32> {
    // an integer id written as a float (`7731.0`), as the CSV reader reads events' ids
    let id = match super::integer_written_as_float(id) {
        Some(int) if data.subjects.get(id).is_none() => int,
        _ => id,
    };
    data.subjects.get(id).or_else(|| {
        let bare = match id.rfind("Patient/") {
            Some(i) => &id[i + 8..],
            None => id.strip_prefix("urn:uuid:")?,
        };
        data.subjects.get(bare)
    })
}

fn value_of(col: &str, s: &str) -> std::result::Result<LabelValue, String> {
    match col {
        "boolean_value" => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(LabelValue::Bool(true)),
            "false" | "0" => Ok(LabelValue::Bool(false)),
            _ => Err("boolean_value is not true/false".into()),
        },
        "integer_value" => s.parse().map(LabelValue::Int).map_err(|_| "integer_value is not an integer".into()),
        "float_value" => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(LabelValue::Float)
            .ok_or_else(|| "float_value is not a number".into()),
        _ => Ok(LabelValue::Categorical(s.to_owned())),
    }
}

const VALUE_COLUMNS: [&str; 4] = ["boolean_value", "integer_value", "float_value", "categorical_value"];

/// A label CSV file, opened as the event reader opens its files ([`super::csv::Table`]: encoding,
/// delimiter, header names in any case, times as spreadsheets write them); a row of empty fields is
/// skipped, any other unreadable row is an error naming its line.
fn read_csv(path: &Path, data: &Dataset, opts: &ReadOptions, out: &mut LabelFile) -> Result<()> {
    let mut table = super::csv::Table::open(path, opts.encoding, opts.limits)?;
    let header_line = table.header_line;
    let line1 = |msg: String| DataError::Line { path: path.into(), line: header_line, msg };
    if table.header.iter().all(|h| h.is_empty()) {
        return Err(line1("the file is empty (a label file has a header and a row per label)".into()));
    }
    let subject_col = table.column("subject_id").ok_or_else(|| line1("the header has no subject_id column".into()))?;
    let time_col =
        table.column("prediction_time").ok_or_else(|| line1("the header has no prediction_time column".into()))?;
    // MEDS' label columns: each row fills one of them (the others empty, as pandas writes a MEDS label
    // frame with all four)
    let value_cols: Vec<(usize, &str)> =
        VALUE_COLUMNS.iter().filter_map(|n| table.column(n).map(|i| (i, *n))).collect();
    if value_cols.is_empty() {
        return Err(line1(format!("the header has none of {}", VALUE_COLUMNS.join(", "))));
    }
    let columns = table.header.len();
    let mut rec = ::csv::StringRecord::new();
    loop {
        let (read, line) = table.next_record(&mut rec);
        let bad = |msg: &str| DataError::Line { path: path.into(), line, msg: msg.to_owned() };
        match read {
            Ok(false) => break,
            Ok(true) if table.ends_in_open_quote() => return Err(bad(super::csv::ENDS_IN_OPEN_QUOTE)),
            Ok(true) => {}
            Err(e) => return Err(match e.kind() {
                ::csv::ErrorKind::Io(io) if io.to_string() == super::bounded::CSV_RECORD_TOO_LONG => {
                    bad("a record longer than read.max_line_bytes")
                }
                ::csv::ErrorKind::Io(io) => DataError::io(path, format!("at line {line}: {io}")),
                ::csv::ErrorKind::Utf8 { .. } => bad(
                    "not UTF-8 text, though the file's start was read as UTF-8: name its encoding with read.encoding",
                ),
                _ => bad("not valid CSV"),
            }),
        }
        table.budget.record_done();
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != columns {
            return Err(bad("a row with more or fewer fields than the header"));
        }
        let subject = rec.get(subject_col).unwrap_or("").trim();
        let t = super::csv::parse_time(rec.get(time_col).unwrap_or("").trim())
            .ok_or_else(|| bad("prediction_time is not a date/time"))?;
        out.zones.add(t.written());
        let t = t.utc(opts.zone()).ok_or_else(|| bad("prediction_time is past what read.time_zone places"))?;
        let mut filled =
            value_cols.iter().filter_map(|&(i, n)| Some((n, rec.get(i)?.trim())).filter(|(_, v)| !v.is_empty()));
        let value = match (filled.next(), filled.next()) {
            (Some((name, v)), None) => value_of(name, v).map_err(|m| bad(&m))?,
            (Some((a, _)), Some((b, _))) => {
                return Err(bad(&format!(
                    "values in both {a} and {b}: a label has one value (the other columns empty)"
                )))
            }
            (None, _) => {
                return Err(bad(&format!(
                    "no value: {} empty",
                    value_cols.iter().map(|c| c.1).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        match subject_index(data, subject) {
            Some(s) => out.push(Label { subject: data.unit_of(s), prediction_time: t, value }, line),
            None => out.unknown += 1,
        }
    }
    if table.replaced.count() > 0 {
        return Err(DataError::Format {
            path: path.into(),
            msg: format!(
                "{} byte sequences are not {} text: name the file's encoding with read.encoding",
                table.replaced.count(),
                table.encoding.name()
            ),
        });
    }
    Ok(())
}

fn read_parquet(path: &Path, data: &Dataset, opts: &ReadOptions, out: &mut LabelFile) -> Result<()> {
    let reader = super::meds::open(path)?;
    let per_second = super::meds::integer_time_unit(&reader, "prediction_time");
    let offset = super::meds::time_offset(&reader, "prediction_time");
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    for (i, row) in rows.enumerate() {
        let bad = |msg: String| DataError::Line { path: path.into(), line: i as u64 + 1, msg };
        // the record API's message for text that is not UTF-8 lists its bytes: cut there
        let row = row.map_err(|e| super::meds::row_error(path, i + 1, e))?;
        let (mut subject, mut t, mut value) = (None, None, None);
        // the value columns a row fills (MEDS: one, the others null)
        let mut filled: Vec<&str> = vec![];
        for (col, f) in row.get_column_iter() {
            if let Some(c) = VALUE_COLUMNS.iter().find(|c| **c == col).filter(|_| !matches!(f, Field::Null)) {
                filled.push(c);
            }
            match (col.as_str(), f) {
                ("subject_id", Field::Long(v)) => subject = Some(v.to_string()),
                // int32, as the data reader accepts it (pyarrow keeps a narrow integer column narrow)
                ("subject_id", Field::Int(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::Str(s)) => subject = Some(s.clone()),
                // other integer widths, and an integral double (pandas writes float64 ids when the column
                // had a NaN): as the CSV reader reads `123.0` (found by a tester: refused as no id)
                ("subject_id", Field::Short(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::Byte(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::UInt(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::UShort(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::UByte(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::ULong(v)) => subject = Some(v.to_string()),
                ("subject_id", Field::Double(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => {
                    subject = Some((*v as i64).to_string())
                }
                ("subject_id", Field::Float(v)) if v.fract() == 0.0 && v.abs() < 1.6e7 => {
                    subject = Some((*v as i64).to_string())
                }
                ("prediction_time", f) => t = super::meds::as_time(f, per_second),
                ("boolean_value", Field::Bool(b)) => value = Some(LabelValue::Bool(*b)),
                ("integer_value", Field::Long(v)) => value = Some(LabelValue::Int(*v)),
                ("integer_value", Field::Int(v)) => value = Some(LabelValue::Int(*v as i64)),
                // a NaN or infinite label is refused here, as the CSV reader does (train refused it later)
                ("float_value", Field::Double(v)) if !v.is_finite() => {
                    return Err(bad("float_value is not finite".into()))
                }
                ("float_value", Field::Float(v)) if !v.is_finite() => {
                    return Err(bad("float_value is not finite".into()))
                }
                ("float_value", Field::Double(v)) => value = Some(LabelValue::Float(*v)),
                ("float_value", Field::Float(v)) => value = Some(LabelValue::Float(*v as f64)),
                ("categorical_value", Field::Str(s)) => value = Some(LabelValue::Categorical(s.clone())),
                _ => {}
            }
        }
        if filled.len() > 1 {
            return Err(bad(format!(
                "values in both {} and {}: a label has one value (the other columns null)",
                filled[0], filled[1]
            )));
        }
        let absent = [("subject_id", subject.is_none()), ("prediction_time", t.is_none())];
        let (Some(s), Some(t), Some(value)) = (subject, t, value) else {
            // what is missing: a null (or a type that holds none) in a column, or no value column at all
            let missing: Vec<&str> = absent.into_iter().filter(|(_, m)| *m).map(|(c, _)| c).collect();
            return Err(bad(match (missing.is_empty(), filled.is_empty()) {
                (false, _) => format!("{}: null, or of a type that holds none", missing.join(" and ")),
                (true, true) => format!("no value: {} null or absent", VALUE_COLUMNS.join(", ")),
                (true, false) => format!("{}: of a type that holds no label value", filled[0]),
            }));
        };
        let t = time::Stamp { local: t, offset };
        out.zones.add(t.written());
        let t = t.utc(opts.zone()).ok_or_else(|| bad("prediction_time is past what read.time_zone places".into()))?;
        match subject_index(data, &s) {
            Some(s) => out.push(Label { subject: data.unit_of(s), prediction_time: t, value }, i as u64 + 1),
            None => out.unknown += 1,
        }
    }
    Ok(())
}
