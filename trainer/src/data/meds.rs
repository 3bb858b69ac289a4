//! MEDS input (Medical Event Data Standard): `data/**/*.parquet` with `subject_id` (int64), `time`
//! (timestamp), `code` (string), `numeric_value` (float, nullable), `text_value` (string, nullable);
//! `metadata/subject_splits.parquet` (`subject_id`, `split`) when present.
//!
//! MEDS has no unit column: a unit is taken from codes of the form `LAB//<code>//<unit>`. A code maps to
//! LOINC (so that the catalogue, plausibility checks and lab features apply) when it is `LOINC/<code>`,
//! when its middle part is a catalogue LOINC code (`LAB//2160-0//mg/dL`), or when
//! `metadata/codes.parquet` lists a `LOINC/<code>` among its `parent_codes`; other codes keep the system
//! `medtrain:meds`. Kinds: `LAB...` codes, codes that map to a catalogue test, and any code with a
//! numeric value are labs; a lab without a `numeric_value` is read from its `text_value` (a number, or a
//! censored `<0.3` read as its limit and counted as `censored_value`; other text leaves it without a
//! value, `no_value`). Rows of other codes with only a text value are notes, the rest (`MEDS_BIRTH`,
//! diagnoses, ...) are `other`.

use super::{catalog, guard, DataError, EventKind, ReadOptions, Rec, Result, Sink};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

thread_local! {
    static IN_PARQUET: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread runs the parquet crate under [`contained`]: the panic hook stays silent
/// then, because the panic is caught and reported as an error on the file.
pub fn in_parquet_reader() -> bool {
    IN_PARQUET.with(Cell::get)
}

/// Runs the parquet crate on one file. On some corrupt files it panics (an index out of bounds in its
/// decoders) instead of returning an error; such a panic is caught here and becomes an error naming
/// the file, so no input can crash medtrain through it.
pub(crate) fn contained<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    let was = IN_PARQUET.with(|f| f.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    IN_PARQUET.with(|f| f.set(was));
    r.unwrap_or_else(|_| {
        Err(DataError::Format {
            path: path.into(),
            msg: "the parquet reader failed on this file (corrupt, or a layout it cannot decode)".into(),
        })
    })
}

/// Opens a parquet file (inside [`contained`]) and checks its dictionary pages.
pub(crate) fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(f)
        .map_err(|e| DataError::Format { path: path.into(), msg: format!("not a readable parquet file: {e}") })?;
    check_dictionaries(path, &reader)?;
    Ok(reader)
}

/// Refuses a file whose dictionary pages claim more values than their bytes can hold. The parquet
/// crate sizes a dictionary by that claim before decoding it, so a corrupt count (found by the fuzzer:
/// 48 GB for a 1.5 kB file) aborts the process on allocation, which no `catch_unwind` can catch. Plain
/// values take at least one byte each (booleans one bit), so the dictionary stays within a small
/// multiple of the bytes really there. Only dictionary pages are decompressed; data pages are skipped.
fn check_dictionaries(path: &Path, reader: &SerializedFileReader<std::fs::File>) -> Result<()> {
    use parquet::basic::Type;
    use parquet::column::page::Page;
    let fmt = |e: parquet::errors::ParquetError| DataError::Format {
        path: path.into(),
        msg: format!("not a readable parquet file: {e}"),
    };
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g).map_err(fmt)?;
        for c in 0..group.num_columns().min(schema.num_columns()) {
            let per_byte = if schema.column(c).physical_type() == Type::BOOLEAN { 8 } else { 1 };
            let mut pages = group.get_column_page_reader(c).map_err(fmt)?;
            while let Some(meta) = pages.peek_next_page().map_err(fmt)? {
                if !meta.is_dict {
                    pages.skip_next_page().map_err(fmt)?;
                    continue;
                }
                if let Some(Page::DictionaryPage { buf, num_values, .. }) = pages.get_next_page().map_err(fmt)? {
                    if num_values as usize > buf.len().saturating_mul(per_byte) {
                        return Err(DataError::Format {
                            path: path.into(),
                            msg: format!(
                                "row group {g}, column {c}: a dictionary page claims more values than its bytes hold"
                            ),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn as_i64(f: &Field) -> Option<i64> {
    match *f {
        Field::Long(v) => Some(v),
        Field::Int(v) => Some(v as i64),
        Field::UInt(v) => Some(v as i64),
        Field::ULong(v) => i64::try_from(v).ok(),
        _ => None,
    }
}

/// Seconds since the epoch of a timestamp field; `per_second` is the units per second of the column's
/// plain integers ([`integer_time_unit`]).
pub(crate) fn as_time(f: &Field, per_second: i64) -> Option<i64> {
    match *f {
        Field::TimestampMicros(v) => Some(v.div_euclid(1_000_000)),
        Field::TimestampMillis(v) => Some(v.div_euclid(1_000)),
        Field::Long(v) => Some(v.div_euclid(per_second)),
        Field::Date(d) => Some(d as i64 * 86_400),
        _ => None,
    }
}

/// The columns of a parquet file's schema (top-level leaves): name, physical type, logical type.
fn column<'r>(
    reader: &'r SerializedFileReader<std::fs::File>,
    name: &str,
) -> Option<&'r parquet::schema::types::ColumnDescriptor> {
    let schema = reader.metadata().file_metadata().schema_descr();
    schema.columns().iter().map(|c| c.as_ref()).find(|c| c.path().parts() == [name])
}

/// Units per second of a time column's plain integers: a `timestamp[ns]` column (pandas' default)
/// arrives from the parquet crate as integers, which were read as MEDS' microseconds (50,000 years
/// ahead); `timestamp[us]` and `[ms]` arrive as timestamps. An integer column without a logical type
/// is read as microseconds, MEDS' unit.
pub(crate) fn integer_time_unit(reader: &SerializedFileReader<std::fs::File>, name: &str) -> i64 {
    use parquet::basic::{LogicalType, TimeUnit};
    match column(reader, name).and_then(|c| c.logical_type_ref()) {
        Some(LogicalType::Timestamp { unit: TimeUnit::NANOS, .. }) => 1_000_000_000,
        Some(LogicalType::Timestamp { unit: TimeUnit::MILLIS, .. }) => 1_000,
        _ => 1_000_000,
    }
}

/// Refuses a MEDS data file without one of the columns every event needs, naming the file and column
/// (each row was reported malformed, and a file without `numeric_value` read as labs without values).
fn check_columns(path: &Path, reader: &SerializedFileReader<std::fs::File>) -> Result<()> {
    for name in ["subject_id", "time", "code", "numeric_value"] {
        if column(reader, name).is_none() {
            return Err(DataError::Format {
                path: path.into(),
                msg: format!("a MEDS data file needs the column {name:?} (subject_id, time, code, numeric_value)"),
            });
        }
    }
    // MEDS-transforms' normalization writes vocabulary indices into `code`: not codes this node can read
    // (each row was reported malformed)
    if column(reader, "code").is_some_and(|c| c.physical_type() != parquet::basic::Type::BYTE_ARRAY) {
        return Err(DataError::Format {
            path: path.into(),
            msg: "the column \"code\" must be a string column (MEDS codes are strings; integer vocabulary \
                  indices are not codes)"
                .into(),
        });
    }
    Ok(())
}

fn as_str(f: &Field) -> Option<&str> {
    match f {
        Field::Str(s) => Some(s),
        _ => None,
    }
}

fn as_f32(f: &Field) -> Option<f32> {
    match f {
        Field::Float(v) => Some(*v),
        Field::Double(v) => Some(*v as f32),
        Field::Int(v) => Some(*v as f32),
        Field::Long(v) => Some(*v as f32),
        // a decimal column (e.g. written from a database's NUMERIC type)
        Field::Decimal(d) => decimal_f32(d),
        _ => None,
    }
}

/// The value of a parquet decimal (a big-endian two's complement integer and a scale).
fn decimal_f32(d: &parquet::data_type::Decimal) -> Option<f32> {
    let bytes = d.data();
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in bytes {
        v = (v << 8) | b as i128;
    }
    Some((v as f64 / 10f64.powi(d.scale())) as f32)
}

/// MEDS code -> LOINC code, from `metadata/codes.parquet` (`code`, `parent_codes: list<string>`).
fn read_code_parents(path: &Path) -> Result<HashMap<String, String>> {
    let reader = open(path)?;
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let mut out = HashMap::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| DataError::Format { path: path.into(), msg: format!("row {}: {e}", i + 1) })?;
        let (mut code, mut loinc) = (None, None);
        for (col, f) in row.get_column_iter() {
            match (col.as_str(), f) {
                ("code", Field::Str(s)) => code = Some(s.clone()),
                ("parent_codes", Field::ListInternal(list)) => {
                    loinc = list.elements().iter().find_map(|e| match e {
                        Field::Str(s) => s.strip_prefix("LOINC/").map(str::to_owned),
                        _ => None,
                    })
                }
                _ => {}
            }
        }
        if let (Some(c), Some(l)) = (code, loinc) {
            out.insert(c, l);
        }
    }
    Ok(out)
}

/// The (system, code) an event is read as.
fn map_code(code: &str, parents: &HashMap<String, String>) -> (String, String) {
    if let Some(l) = code.strip_prefix("LOINC/") {
        return (catalog::LOINC.into(), l.into());
    }
    if let Some(l) = parents.get(code) {
        return (catalog::LOINC.into(), l.clone());
    }
    let parts: Vec<&str> = code.split("//").collect();
    if parts.len() >= 2 && catalog::lookup(catalog::LOINC, parts[1]).is_some() {
        return (catalog::LOINC.into(), parts[1].into());
    }
    ("medtrain:meds".into(), code.into())
}

fn read_events(path: &Path, sink: &mut Sink, parents: &HashMap<String, String>) -> Result<()> {
    let reader = open(path)?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    sink.report.bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    check_columns(path, &reader)?;
    let per_second = integer_time_unit(&reader, "time");
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    for (i, row) in rows.enumerate() {
        let line = i as u64 + 1;
        sink.report.lines += 1;
        let row = row.map_err(|e| DataError::Format { path: path.into(), msg: format!("row {line}: {e}") })?;
        let (mut subject, mut time, mut code, mut value, mut text) = (None, None, None, f32::NAN, None);
        for (col, f) in row.get_column_iter() {
            match col.as_str() {
                "subject_id" => subject = as_i64(f).map(|v| v.to_string()).or_else(|| as_str(f).map(str::to_owned)),
                "time" => time = as_time(f, per_second),
                "code" => code = as_str(f).map(str::to_owned),
                "numeric_value" => value = as_f32(f).unwrap_or(f32::NAN),
                "text_value" => text = as_str(f).map(|t| guard::visible(t.to_owned())),
                _ => {}
            }
        }
        let reason = if subject.is_none() { NO_SUBJECT } else { NO_CODE };
        let (Some(subject), Some(code)) = (subject, code) else {
            sink.report.malformed_line(&name, line, reason);
            continue;
        };
        // MEDS allows static events without a time (e.g. sex): counted, not turned into events
        let Some(time) = time else {
            sink.report.count(super::check::Severity::Info, "static_event", "meds", "time");
            sink.subject(&subject);
            continue;
        };
        let parts: Vec<&str> = code.split("//").collect();
        let unit =
            (parts.len() >= 3 && parts[0].eq_ignore_ascii_case("LAB")).then(|| parts[parts.len() - 1].to_owned());
        let (system, code) = map_code(&code, parents);
        // a lab result given as text (`LOINC/2160-0` with `<0.3`) is a lab, not a note
        let lab_code = parts[0].to_ascii_uppercase().starts_with("LAB")
            || (system == catalog::LOINC && catalog::lookup(catalog::LOINC, &code).is_some());
        if lab_code && value.is_nan() {
            if let Some(t) = &text {
                value = text_result(t, sink.report);
            }
        }
        let kind = if lab_code || !value.is_nan() {
            EventKind::Lab
        } else if text.is_some() {
            EventKind::Note
        } else {
            EventKind::Other
        };
        if let Some(t) = &text {
            let found = guard::scan(t);
            if !found.is_empty() {
                for (k, _) in &found {
                    sink.report.identifier(sink.opts.identifiers, *k, "meds", "text_value");
                }
                text = Some(guard::redact(t, &found));
            }
        }
        let text = if kind == EventKind::Note { text } else { None };
        sink.push(Rec {
            subject: subject.into(),
            time,
            kind,
            system: system.into(),
            code: code.into(),
            value,
            unit: unit.map(Into::into),
            text,
            end: i64::MIN,
        });
    }
    sink.report.files += 1;
    Ok(())
}

/// The value of a lab's text result: a number (`1.2`), or a censored one (`<0.3`, `>= 200`, `≥200`)
/// read as its limit and counted as the CSV and FHIR readers count it; NaN for anything else (the lab is
/// then counted as `no_value`).
fn text_result(text: &str, report: &mut super::Report) -> f32 {
    let (number, is_censored) = super::csv::censored(text.trim());
    match super::fhir::numeric_string(number) {
        Some(v) => {
            if is_censored {
                report.count(super::check::Severity::Info, "censored_value", "meds", "text_value");
            }
            v
        }
        None => f32::NAN,
    }
}

/// Reads `subject_splits.parquet` into the dataset's splits: only subjects the data holds (one listed
/// there alone is no subject), and a split value that is not train, tuning or held_out is a blocking
/// finding (as `data prepare` refuses it), never printed.
fn read_splits(path: &Path, sink: &mut Sink) -> Result<()> {
    use super::check::Severity;
    let reader = open(path)?;
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let (mut without_subject, mut unknown_split) = (0, 0);
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| DataError::Format { path: path.into(), msg: format!("row {}: {e}", i + 1) })?;
        let (mut subject, mut split) = (None, None);
        for (col, f) in row.get_column_iter() {
            match col.as_str() {
                "subject_id" => subject = as_i64(f).map(|v| v.to_string()).or_else(|| as_str(f).map(str::to_owned)),
                "split" => split = as_str(f).map(str::to_owned),
                _ => {}
            }
        }
        match (subject, split) {
            (Some(s), Some(sp)) => match sink.data.subjects.get(&s) {
                Some(id) => {
                    if super::split::Split::parse(&sp).is_none() {
                        unknown_split += 1;
                    }
                    sink.data.splits.insert(id, sp);
                }
                None => without_subject += 1,
            },
            (s, _) => sink.report.malformed_line(
                "subject_splits.parquet",
                i as u64 + 1,
                if s.is_none() { NO_SPLIT_SUBJECT } else { NO_SPLIT },
            ),
        }
    }
    if unknown_split > 0 {
        sink.report.finding(
            Severity::Error,
            "unknown_split",
            "meds",
            "subject_splits.split",
            Some("subjects whose split is not train, tuning or held_out; the values are not printed"),
            unknown_split,
        );
    }
    if without_subject > 0 {
        sink.report.finding(
            Severity::Info,
            "split_without_subject",
            "meds",
            "subject_splits.subject_id",
            Some("listed without any event in data/: not counted as subjects"),
            without_subject,
        );
    }
    let missing = (0..sink.data.subjects.len() as u32).filter(|i| !sink.data.splits.contains_key(i)).count();
    if missing > 0 {
        sink.report.finding(
            Severity::Warning,
            "subject_without_split",
            "meds",
            "subject_splits.subject_id",
            Some("subjects not in subject_splits.parquet: split by the keyed hash of the subject id"),
            missing as u64,
        );
    }
    Ok(())
}

/// Says that `data/train|tuning|held_out/` shards (meds-testing-helpers' "sharded by split" layout) are
/// not read as the split: MEDS shards are arbitrary, and per-subject splits live in
/// `metadata/subject_splits.parquet` only ("the only supported split format", meds 0.4 schema), which
/// this input lacks, so every subject gets the keyed-hash split.
fn report_split_directories(data_dir: &Path, files: &[PathBuf], sink: &mut Sink) {
    let by_split = files.iter().any(|f| {
        let mut parts = f.strip_prefix(data_dir).map(|r| r.components().collect::<Vec<_>>()).unwrap_or_default();
        parts.pop();
        parts.first().and_then(|c| c.as_os_str().to_str()).and_then(super::split::Split::parse).is_some()
    });
    if by_split {
        sink.report.finding(
            super::check::Severity::Warning,
            "split_directories_unused",
            "meds",
            "data",
            Some(
                "data/ is sharded by split directory, but MEDS splits come from metadata/subject_splits.parquet, \
                 which is missing: every subject gets the keyed-hash split",
            ),
            sink.data.subjects.len() as u64,
        );
    }
}

/// MEDS names for the fields the shared QA report names as FHIR's (`Observation.valueQuantity.unit`) or
/// by event kind (`no_value in lab.value`, `duplicate in other.-`): a MEDS unit and code system are
/// parts of `code` (`LAB//<code>//<unit>`), a value is `numeric_value`, a note `text_value`, and a
/// malformed row is named by the column it lacks. Findings that become one are merged.
pub(super) fn name_fields(report: &mut super::Report) {
    let kinds: Vec<&str> = super::EventKind::ALL.iter().map(|k| k.as_str()).collect();
    for f in &mut report.findings {
        let field = match (f.kind.as_str(), f.resource.as_str(), f.field.as_str()) {
            (_, "Observation" | "DocumentReference" | "Encounter", "valueQuantity.value") => "numeric_value",
            (
                _,
                "Observation" | "DocumentReference" | "Encounter",
                "valueQuantity.unit" | "code.coding.system" | "type.coding.system" | "class.system",
            ) => "code",
            // `Sink::push`'s counts, by event kind
            ("no_value", k, "value") if kinds.contains(&k) => "numeric_value",
            ("missing_unit", k, "unit") if kinds.contains(&k) => "code",
            ("note_truncated", k, "text") if kinds.contains(&k) => "text_value",
            // the same subject_id, time, code and value twice: the kind said in the detail
            ("duplicate", k, "-") if kinds.contains(&k) => {
                f.detail = Some(format!("{k} events: the same subject_id, time, code, numeric_value and text_value"));
                "code"
            }
            ("malformed_line", "-", NO_SUBJECT) => "subject_id",
            ("malformed_line", "-", NO_CODE) => "code",
            ("malformed_line", "-", NO_SPLIT_SUBJECT) => "subject_splits.subject_id",
            ("malformed_line", "-", NO_SPLIT) => "subject_splits.split",
            _ => continue,
        };
        f.resource = "meds".into();
        f.field = field.into();
    }
    report.findings.sort_by(|a, b| {
        (a.severity, &a.kind, &a.resource, &a.field, &a.detail, &a.file).cmp(&(
            b.severity,
            &b.kind,
            &b.resource,
            &b.field,
            &b.detail,
            &b.file,
        ))
    });
    // one finding per name (a lab's and a vital's `no_value` are both `numeric_value`'s)
    report.findings.dedup_by(|b, a| {
        let same = (a.severity, &a.kind, &a.resource, &a.field, &a.detail, &a.file)
            == (b.severity, &b.kind, &b.resource, &b.field, &b.detail, &b.file)
            && a.lines.is_empty()
            && b.lines.is_empty();
        if same {
            a.count += b.count;
        }
        same
    });
}

/// Why a row is malformed: the column it lacks (a null, or a type that holds no id or code).
const NO_SUBJECT: &str = "no subject_id";
const NO_CODE: &str = "no code";
const NO_SPLIT_SUBJECT: &str = "no subject_id in subject_splits";
const NO_SPLIT: &str = "no split in subject_splits";

/// Reads a MEDS root directory.
pub fn read(path: &Path, opts: &ReadOptions, data: &mut super::Dataset, report: &mut super::Report) -> Result<()> {
    // one walk of data/ (links out of the root, loops and special files refused): the parquet shards,
    // and the other files, said but for the names writers mark as not data (Spark's _SUCCESS, .crc
    // checksums: pyarrow skips names starting with `_` or `.` too)
    let (files, others): (Vec<PathBuf>, Vec<PathBuf>) =
        super::list_dir(&path.join("data"))?.into_iter().partition(|p| p.extension().is_some_and(|e| e == "parquet"));
    let others: Vec<PathBuf> = others
        .into_iter()
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(['_', '.'])))
        .collect();
    super::report_unread(path, &others, &[".parquet"], report);
    if files.is_empty() {
        return Err(DataError::Format { path: path.join("data"), msg: "holds no .parquet files".into() });
    }
    let codes = path.join("metadata").join("codes.parquet");
    let parents = if codes.is_file() { contained(&codes, || read_code_parents(&codes))? } else { HashMap::new() };
    let mut sink = Sink { data, report, opts };
    for f in &files {
        contained(f, || read_events(f, &mut sink, &parents))?;
    }
    let splits = path.join("metadata").join("subject_splits.parquet");
    if splits.is_file() {
        contained(&splits, || read_splits(&splits, &mut sink))?;
    } else {
        report_split_directories(&path.join("data"), &files, &mut sink);
    }
    Ok(())
}
