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
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rayon::prelude::*;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        Field::Decimal(d) => decimal_f32(d.data(), d.scale()),
        _ => None,
    }
}

/// The value of a parquet decimal: a big-endian two's complement integer and a scale.
fn decimal_f32(bytes: &[u8], scale: i32) -> Option<f32> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in bytes {
        v = (v << 8) | b as i128;
    }
    Some((v as f64 / 10f64.powi(scale)) as f32)
}

/// An error of the record API on a row, naming file and row without the value: its message for text
/// that is not UTF-8 lists the bytes (`Bytes: [89, 97, ...]`), which is cut.
pub(crate) fn row_error(path: &Path, row: usize, e: parquet::errors::ParquetError) -> DataError {
    let msg = e.to_string();
    let msg = match msg.split_once(" Bytes:") {
        Some((head, _)) => format!("{head} (the value is not shown)"),
        None => msg,
    };
    DataError::Format { path: path.into(), msg: format!("row {row}: {msg}") }
}

/// MEDS code -> LOINC code, from `metadata/codes.parquet` (`code`, `parent_codes: list<string>`).
fn read_code_parents(path: &Path) -> Result<HashMap<String, String>> {
    let reader = open(path)?;
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let mut out = HashMap::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| row_error(path, i + 1, e))?;
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

/// What a MEDS code says, worked out once per distinct code (a shard repeats a few thousand codes
/// millions of times): the (system, code) it is read as, the unit of `LAB//<code>//<unit>`, and whether
/// it is a lab code (its text results are read as values).
#[derive(Debug)]
struct MedsCode {
    system: String,
    code: String,
    unit: Option<String>,
    lab: bool,
}

impl MedsCode {
    fn new(code: &str, parents: &HashMap<String, String>) -> MedsCode {
        let parts: Vec<&str> = code.split("//").collect();
        let unit =
            (parts.len() >= 3 && parts[0].eq_ignore_ascii_case("LAB")).then(|| parts[parts.len() - 1].to_owned());
        let (system, mapped) = map_code(code, parents);
        // a lab result given as text (`LOINC/2160-0` with `<0.3`) is a lab, not a note
        let lab = parts[0].to_ascii_uppercase().starts_with("LAB")
            || (system == catalog::LOINC && catalog::lookup(catalog::LOINC, &mapped).is_some());
        MedsCode { system, code: mapped, unit, lab }
    }
}

/// One row of a shard as decoded, then as prepared ([`prepare`]) for the sink.
#[derive(Debug)]
struct Row {
    /// index into [`Batch::subjects`], or [`super::NONE`] (null, or a type that holds no id)
    subject: u32,
    /// seconds since the epoch; `None` for a static event (or a time type that is not one)
    time: Option<i64>,
    code: Option<Arc<MedsCode>>,
    /// NaN when there is none
    value: f32,
    /// the text as read, then (prepared) only a note's, redacted
    text: Option<String>,
    kind: EventKind,
    /// the value was read from a censored text result (`<0.3`)
    censored: bool,
    /// identifiers the guard found in the text
    identifiers: Vec<guard::IdentifierKind>,
}

/// Consecutive rows of one shard: decoded on the reading thread, applied to the sink in row order on
/// another while the next batch is decoded.
#[derive(Debug, Default)]
struct Batch {
    /// the shard's file name (where malformed rows are)
    name: String,
    /// the shard's size, on its first batch
    bytes: u64,
    /// the row number of `rows[0]` (1-based, counted through the shard)
    first_line: u64,
    /// the shard ends with this batch
    last: bool,
    /// subject ids as decimal strings (or as the file has them), one per run of equal ids
    subjects: Vec<String>,
    rows: Vec<Row>,
}

/// The value of a lab's text result: a number (`1.2`), or a censored one (`<0.3`, `>= 200`, `≥200`)
/// read as its limit and counted (true) as the CSV and FHIR readers count it; NaN for anything else
/// (the lab is then counted as `no_value`).
fn text_result(text: &str) -> (f32, bool) {
    let (number, is_censored) = super::csv::censored(text.trim());
    match super::fhir::numeric_string(number) {
        Some(v) => (v, is_censored),
        None => (f32::NAN, false),
    }
}

/// Gives a decoded row its kind, reads a lab's text result, and scans and redacts its text (only a
/// note keeps one). Rows the sink counts without an event (malformed, static) are left alone.
fn prepare(row: &mut Row) {
    let (Some(code), Some(_), true) = (&row.code, row.time, row.subject != super::NONE) else {
        row.text = None;
        return;
    };
    let mut text = row.text.take().map(guard::visible);
    if code.lab && row.value.is_nan() {
        if let Some(t) = &text {
            (row.value, row.censored) = text_result(t);
        }
    }
    row.kind = if code.lab || !row.value.is_nan() {
        EventKind::Lab
    } else if text.is_some() {
        EventKind::Note
    } else {
        EventKind::Other
    };
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
fn apply(sink: &mut Sink, batch: Batch) {
    use super::check::Severity;
    let Batch { name, bytes, first_line, last, subjects, rows } = batch;
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
        let Some(time) = row.time else {
            sink.report.count(Severity::Info, "static_event", "meds", "time");
            sink.subject(subject);
            continue;
        };
        if row.censored {
            sink.report.count(Severity::Info, "censored_value", "meds", "text_value");
        }
        for k in &row.identifiers {
            sink.report.identifier(sink.opts.identifiers, *k, "meds", "text_value");
        }
        sink.push(Rec {
            subject: Cow::Borrowed(subject),
            time,
            kind: row.kind,
            system: Cow::Borrowed(&code.system),
            code: Cow::Borrowed(&code.code),
            value: row.value,
            unit: code.unit.as_deref().map(Cow::Borrowed),
            text: row.text,
            end: i64::MIN,
        });
    }
    if last {
        sink.report.files += 1;
    }
}

/// The columns an event is read from, in [`Shard::columns`]' order.
const COLUMNS: [&str; 5] = ["subject_id", "time", "code", "numeric_value", "text_value"];
const SUBJECT: usize = 0;
const TIME: usize = 1;
const CODE: usize = 2;
const VALUE: usize = 3;
const TEXT: usize = 4;

/// Rows decoded at a time at most: with the batch being applied, what the reader holds besides the
/// parquet crate's pages (about 100 bytes a row, and the text of its rows), whatever the size of a
/// row group.
const BATCH_ROWS: usize = 1 << 16;

/// The rows of a shard's first batch, and the fewest of any: a batch's text is not known before it is
/// read, and a shard of discharge summaries in batches of [`BATCH_ROWS`] would hold gigabytes.
const FIRST_BATCH_ROWS: usize = 1 << 10;
const MIN_BATCH_ROWS: usize = 1 << 6;

/// The text a batch holds, about, at most: the next batch is cut to keep to it at the bytes per row of
/// the last ([`next_batch_rows`]).
const BATCH_TEXT_BYTES: usize = 16 << 20;

/// The rows of a shard's next batch after one of `rows` rows held `text_bytes` of text: as many as
/// keep [`BATCH_TEXT_BYTES`] at its bytes per row, within [`MIN_BATCH_ROWS`] and [`BATCH_ROWS`].
fn next_batch_rows(rows: usize, text_bytes: usize) -> usize {
    match rows.saturating_mul(BATCH_TEXT_BYTES).checked_div(text_bytes) {
        Some(n) => n.clamp(MIN_BATCH_ROWS, BATCH_ROWS),
        None => BATCH_ROWS,
    }
}

/// How a column's values read: the conversions of the parquet crate's record API (`Field::convert_*`),
/// which the row reader used and [`read_rows_reference`] still uses, by physical and converted type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Conv {
    /// INT32: signed (`Field::Int`), unsigned (`UInt`), days since the epoch (`Date`)
    Int,
    UInt,
    Date,
    /// INT64: signed (`Long`), unsigned (`ULong`), timestamps in ms and us
    Long,
    ULong,
    Millis,
    Micros,
    /// INT96 timestamps (read in milliseconds)
    Int96,
    Float,
    Double,
    /// a decimal of this scale (INT32, INT64, BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY)
    Decimal(i32),
    /// UTF-8 text (`Str`)
    Str,
    /// what no MEDS column takes (bytes, booleans, small integers, times of day): read (so that every
    /// row is counted), taken as null
    Other,
}

impl Conv {
    /// The conversion of a top-level column, or `None` for an annotation the record API cannot
    /// convert (it panicked on the first row).
    fn of(c: &parquet::schema::types::ColumnDescriptor) -> Option<Conv> {
        use parquet::basic::{ConvertedType as C, Type as T};
        Some(match (c.physical_type(), c.converted_type()) {
            (T::INT32, C::INT_32 | C::NONE) => Conv::Int,
            (T::INT32, C::UINT_32) => Conv::UInt,
            (T::INT32, C::DATE) => Conv::Date,
            (T::INT32, C::INT_8 | C::INT_16 | C::UINT_8 | C::UINT_16 | C::TIME_MILLIS) => Conv::Other,
            (T::INT64, C::INT_64 | C::NONE) => Conv::Long,
            (T::INT64, C::UINT_64) => Conv::ULong,
            (T::INT64, C::TIMESTAMP_MILLIS) => Conv::Millis,
            (T::INT64, C::TIMESTAMP_MICROS) => Conv::Micros,
            (T::INT64, C::TIME_MICROS) => Conv::Other,
            (T::INT32 | T::INT64 | T::BYTE_ARRAY | T::FIXED_LEN_BYTE_ARRAY, C::DECIMAL) => {
                Conv::Decimal(c.type_scale())
            }
            (T::INT96, _) => Conv::Int96,
            (T::FLOAT, _) => Conv::Float,
            (T::DOUBLE, _) => Conv::Double,
            (T::BOOLEAN, _) => Conv::Other,
            (T::BYTE_ARRAY, C::UTF8 | C::ENUM | C::JSON) => Conv::Str,
            (T::BYTE_ARRAY, C::BSON | C::NONE) | (T::FIXED_LEN_BYTE_ARRAY, C::NONE) => Conv::Other,
            _ => return None,
        })
    }
}

/// A column of a shard that is read: its leaf index, conversion and definition level of a value.
#[derive(Debug, Clone, Copy)]
struct Column {
    index: usize,
    conv: Conv,
    max_def: i16,
    physical: parquet::basic::Type,
}

/// One batch of a column's values, reused from batch to batch: the definition levels (empty for a
/// required column) and the values of the column's physical type.
#[derive(Default)]
struct ColumnBuf {
    def: Vec<i16>,
    i32s: Vec<i32>,
    i64s: Vec<i64>,
    i96s: Vec<parquet::data_type::Int96>,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    bytes: Vec<parquet::data_type::ByteArray>,
    fixed: Vec<parquet::data_type::FixedLenByteArray>,
    bools: Vec<bool>,
    /// per row of the batch: the index of its value, or NONE (null)
    at: Vec<u32>,
}

impl ColumnBuf {
    /// Reads the next `n` rows of `reader`; returns how many there were.
    fn fill(&mut self, reader: &mut ColumnReader, n: usize, max_def: i16) -> parquet::errors::Result<usize> {
        use ColumnReader as R;
        self.def.clear();
        let def = Some(&mut self.def);
        let rows = match reader {
            R::Int32ColumnReader(r) => r.read_records(n, def, None, clear(&mut self.i32s))?.0,
            R::Int64ColumnReader(r) => r.read_records(n, def, None, clear(&mut self.i64s))?.0,
            R::Int96ColumnReader(r) => r.read_records(n, def, None, clear(&mut self.i96s))?.0,
            R::FloatColumnReader(r) => r.read_records(n, def, None, clear(&mut self.f32s))?.0,
            R::DoubleColumnReader(r) => r.read_records(n, def, None, clear(&mut self.f64s))?.0,
            R::ByteArrayColumnReader(r) => r.read_records(n, def, None, clear(&mut self.bytes))?.0,
            R::FixedLenByteArrayColumnReader(r) => r.read_records(n, def, None, clear(&mut self.fixed))?.0,
            R::BoolColumnReader(r) => r.read_records(n, def, None, clear(&mut self.bools))?.0,
        };
        self.at.clear();
        if self.def.is_empty() {
            self.at.extend(0..rows as u32);
        } else {
            let mut next = 0;
            self.at.extend(self.def.iter().map(|&d| {
                if d == max_def {
                    next += 1;
                    next - 1
                } else {
                    super::NONE
                }
            }));
        }
        Ok(rows)
    }

    /// The bytes of value `i` (BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY).
    fn bytes_at(&self, i: usize) -> &[u8] {
        match self.bytes.get(i) {
            Some(b) => b.data(),
            None => self.fixed.get(i).map_or(&[], |b| b.data()),
        }
    }
}

fn clear<T>(v: &mut Vec<T>) -> &mut Vec<T> {
    v.clear();
    v
}

/// A MEDS data shard being read by columns, a batch of rows at a time.
struct Shard {
    path: PathBuf,
    name: String,
    reader: SerializedFileReader<std::fs::File>,
    /// by [`COLUMNS`]; `None` where the file lacks the column or it is a list
    columns: [Option<Column>; 5],
    /// units per second of a plain integer `time` ([`integer_time_unit`])
    per_second: i64,
    /// the shard's size, until its first batch says it
    bytes: u64,
    /// the next row group, the column readers of the current one and its rows not yet read
    group: usize,
    readers: [Option<ColumnReader>; 5],
    left: usize,
    lines: u64,
    bufs: [ColumnBuf; 5],
    /// the rows of the next batch ([`next_batch_rows`])
    batch_rows: usize,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let reader = open(path)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        check_columns(path, &reader)?;
        let per_second = integer_time_unit(&reader, "time");
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut columns = [None; 5];
        for (slot, name) in columns.iter_mut().zip(COLUMNS) {
            let Some(index) = schema.columns().iter().position(|c| c.path().parts() == [name]) else { continue };
            let c = schema.column(index);
            if c.max_rep_level() > 0 {
                // a list in each row, no value (null, as the record API's list was to the row reader);
                // `code`, always read, is what counts a row group's rows (see below)
                if name == "code" {
                    return Err(DataError::Format {
                        path: path.into(),
                        msg: "the column \"code\" is a list (repeated); MEDS has one code a row".into(),
                    });
                }
                continue;
            }
            let conv = Conv::of(&c).ok_or_else(|| DataError::Format {
                path: path.into(),
                msg: format!(
                    "the column {name:?} has a type no MEDS column holds ({} annotated {})",
                    c.physical_type(),
                    c.converted_type()
                ),
            })?;
            // read even when its values are taken as null: a row group's rows are those its columns
            // hold, not the count its metadata claims (`code`, a BYTE_ARRAY, is always read)
            *slot = Some(Column { index, conv, max_def: c.max_def_level(), physical: c.physical_type() });
        }
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Shard {
            path: path.into(),
            name,
            reader,
            columns,
            per_second,
            bytes,
            group: 0,
            readers: Default::default(),
            left: 0,
            lines: 0,
            bufs: Default::default(),
            batch_rows: FIRST_BATCH_ROWS,
        })
    }

    /// The next batch of rows, decoded but not prepared; the last one (`last`) may be empty.
    fn next_batch(&mut self, codes: &mut CodeCache) -> Result<Batch> {
        let fmt = |msg: String| DataError::Format { path: self.path.clone(), msg };
        while self.left == 0 && self.group < self.reader.num_row_groups() {
            let group =
                self.reader.get_row_group(self.group).map_err(|e| fmt(format!("row group {}: {e}", self.group)))?;
            self.left = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
            for (reader, column) in self.readers.iter_mut().zip(&self.columns) {
                *reader = match column {
                    Some(c) => Some(
                        group.get_column_reader(c.index).map_err(|e| fmt(format!("row group {}: {e}", self.group)))?,
                    ),
                    None => None,
                };
            }
            self.group += 1;
        }
        let mut batch = Batch {
            name: self.name.clone(),
            bytes: std::mem::take(&mut self.bytes),
            first_line: self.lines + 1,
            ..Batch::default()
        };
        let n = self.left.min(self.batch_rows);
        if n == 0 {
            batch.last = true;
            return Ok(batch);
        }
        let rows = |what: &str| format!("rows {}-{}, column {what:?}", self.lines + 1, self.lines + n as u64);
        for (((reader, column), buf), name) in
            self.readers.iter_mut().zip(&self.columns).zip(&mut self.bufs).zip(COLUMNS)
        {
            let (Some(reader), Some(c)) = (reader, column) else { continue };
            let got = buf.fill(reader, n, c.max_def).map_err(|e| fmt(format!("{}: {e}", rows(name))))?;
            if got != n {
                return Err(fmt(format!("{}: the column ends before the row group's last row", rows(name))));
            }
        }
        let row_of = |at: usize| self.lines + at as u64 + 1;
        let utf8 = |at: usize, column: &str| {
            fmt(format!("row {}, column {column:?}: not UTF-8 text (the value is not shown)", row_of(at)))
        };
        // subjects: one string per run of equal ids (MEDS shards are sorted by subject)
        let mut subject = vec![super::NONE; n];
        if let Some(c) = self.columns[SUBJECT] {
            let buf = &self.bufs[SUBJECT];
            let mut last: Option<(i64, u32)> = None;
            let mut last_str: Option<(&[u8], u32)> = None;
            for (r, &at) in buf.at.iter().enumerate() {
                if at == super::NONE {
                    continue;
                }
                let at = at as usize;
                let id = match c.conv {
                    Conv::Int => Some(buf.i32s[at] as i64),
                    Conv::UInt => Some(buf.i32s[at] as u32 as i64),
                    Conv::Long => Some(buf.i64s[at]),
                    Conv::ULong => Some(buf.i64s[at]).filter(|&v| v >= 0),
                    Conv::Str => {
                        let b = buf.bytes_at(at);
                        subject[r] = match last_str {
                            Some((prev, i)) if prev == b => i,
                            _ => {
                                let s = simdutf8::basic::from_utf8(b).map_err(|_| utf8(r, "subject_id"))?;
                                batch.subjects.push(s.to_owned());
                                let i = batch.subjects.len() as u32 - 1;
                                last_str = Some((b, i));
                                i
                            }
                        };
                        continue;
                    }
                    _ => None,
                };
                if let Some(id) = id {
                    subject[r] = match last {
                        Some((prev, i)) if prev == id => i,
                        _ => {
                            batch.subjects.push(id.to_string());
                            let i = batch.subjects.len() as u32 - 1;
                            last = Some((id, i));
                            i
                        }
                    };
                }
            }
        }
        let mut time = vec![None; n];
        if let Some(c) = self.columns[TIME] {
            let buf = &self.bufs[TIME];
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != super::NONE) {
                let at = at as usize;
                time[r] = match c.conv {
                    Conv::Micros => Some(buf.i64s[at].div_euclid(1_000_000)),
                    Conv::Millis => Some(buf.i64s[at].div_euclid(1_000)),
                    Conv::Long => Some(buf.i64s[at].div_euclid(self.per_second)),
                    Conv::Date => Some(buf.i32s[at] as i64 * 86_400),
                    Conv::Int96 => Some(buf.i96s[at].to_millis().div_euclid(1_000)),
                    _ => None,
                };
            }
        }
        let mut value = vec![f32::NAN; n];
        if let Some(c) = self.columns[VALUE] {
            let buf = &self.bufs[VALUE];
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != super::NONE) {
                let at = at as usize;
                value[r] = match c.conv {
                    Conv::Float => buf.f32s[at],
                    Conv::Double => buf.f64s[at] as f32,
                    Conv::Int => buf.i32s[at] as f32,
                    Conv::Long => buf.i64s[at] as f32,
                    Conv::Decimal(scale) => match c.physical {
                        parquet::basic::Type::INT32 => decimal_f32(&buf.i32s[at].to_be_bytes(), scale),
                        parquet::basic::Type::INT64 => decimal_f32(&buf.i64s[at].to_be_bytes(), scale),
                        _ => decimal_f32(buf.bytes_at(at), scale),
                    }
                    .unwrap_or(f32::NAN),
                    _ => f32::NAN,
                };
            }
        }
        let mut code: Vec<Option<Arc<MedsCode>>> = vec![None; n];
        if let Some(Column { conv: Conv::Str, .. }) = self.columns[CODE] {
            let buf = &self.bufs[CODE];
            let mut last: Option<(&[u8], &Arc<MedsCode>)> = None;
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != super::NONE) {
                let b = buf.bytes_at(at as usize);
                let c = match last {
                    Some((prev, c)) if prev == b => c,
                    _ => {
                        let c = codes.get(b).ok_or_else(|| utf8(r, "code"))?;
                        last = Some((b, c));
                        c
                    }
                };
                code[r] = Some(Arc::clone(c));
            }
        }
        let mut text: Vec<Option<String>> = vec![None; n];
        if let Some(Column { conv: Conv::Str, .. }) = self.columns[TEXT] {
            let buf = &self.bufs[TEXT];
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != super::NONE) {
                let b = buf.bytes_at(at as usize);
                text[r] = Some(simdutf8::basic::from_utf8(b).map_err(|_| utf8(r, "text_value"))?.to_owned());
            }
        }
        self.batch_rows = next_batch_rows(n, text.iter().flatten().map(String::len).sum());
        batch.rows = (0..n)
            .zip(code.into_iter().zip(text))
            .map(|(r, (code, text))| Row {
                subject: subject[r],
                time: time[r],
                code,
                value: value[r],
                text,
                kind: EventKind::Other,
                censored: false,
                identifiers: Vec::new(),
            })
            .collect();
        self.left -= n;
        self.lines += n as u64;
        Ok(batch)
    }
}

/// Codes read so far (by their bytes), each worked out once ([`MedsCode`]).
struct CodeCache<'p> {
    parents: &'p HashMap<String, String>,
    codes: HashMap<Box<[u8]>, Arc<MedsCode>>,
}

impl CodeCache<'_> {
    /// The code of these bytes, or `None` when they are not UTF-8.
    fn get(&mut self, bytes: &[u8]) -> Option<&Arc<MedsCode>> {
        if !self.codes.contains_key(bytes) {
            let code = simdutf8::basic::from_utf8(bytes).ok()?;
            self.codes.insert(bytes.into(), Arc::new(MedsCode::new(code, self.parents)));
        }
        self.codes.get(bytes)
    }
}

/// The data shards, read in order: each batch decoded by [`Shard::next_batch`] (inside [`contained`])
/// and prepared on the workers.
struct Shards<'f, 'p> {
    files: std::slice::Iter<'f, PathBuf>,
    open: Option<Shard>,
    codes: CodeCache<'p>,
}

impl Shards<'_, '_> {
    fn next(&mut self) -> Result<Option<Batch>> {
        if self.open.is_none() {
            let Some(path) = self.files.next() else { return Ok(None) };
            self.open = Some(contained(path, || Shard::open(path))?);
        }
        let Some(shard) = self.open.as_mut() else { return Ok(None) };
        let path = shard.path.clone();
        let codes = &mut self.codes;
        let mut batch = contained(&path, || shard.next_batch(codes))?;
        if batch.last {
            self.open = None;
        }
        // the guard's scan of texts is the costly part of a note-heavy batch
        batch.rows.par_iter_mut().with_min_len(1 << 12).for_each(prepare);
        Ok(Some(batch))
    }
}

/// Reads the data shards into the sink: a batch is applied (in row order, on a worker) while this
/// thread decodes the next, so the dataset and report are the same whatever the number of threads.
fn read_shards(files: &[PathBuf], parents: &HashMap<String, String>, sink: &mut Sink) -> Result<()> {
    let mut shards = Shards { files: files.iter(), open: None, codes: CodeCache { parents, codes: HashMap::new() } };
    let mut batch = shards.next()?;
    while let Some(b) = batch {
        let sink = &mut *sink;
        batch = rayon::in_place_scope(|s| {
            s.spawn(move |_| apply(sink, b));
            shards.next()
        })?;
    }
    Ok(())
}

/// The row reader's decoding of a shard (the parquet crate's record API, a row at a time): the plain
/// twin of [`Shard::next_batch`], kept as the reference the tests compare it with. One batch per shard.
fn read_rows(path: &Path, parents: &HashMap<String, String>) -> Result<Batch> {
    let reader = open(path)?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    check_columns(path, &reader)?;
    let per_second = integer_time_unit(&reader, "time");
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let mut batch = Batch { name, bytes, first_line: 1, last: true, ..Batch::default() };
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| row_error(path, i + 1, e))?;
        let mut decoded = Row {
            subject: super::NONE,
            time: None,
            code: None,
            value: f32::NAN,
            text: None,
            kind: EventKind::Other,
            censored: false,
            identifiers: Vec::new(),
        };
        for (col, f) in row.get_column_iter() {
            match col.as_str() {
                "subject_id" => {
                    if let Some(s) = as_i64(f).map(|v| v.to_string()).or_else(|| as_str(f).map(str::to_owned)) {
                        batch.subjects.push(s);
                        decoded.subject = batch.subjects.len() as u32 - 1;
                    }
                }
                "time" => decoded.time = as_time(f, per_second),
                "code" => decoded.code = as_str(f).map(|c| Arc::new(MedsCode::new(c, parents))),
                "numeric_value" => decoded.value = as_f32(f).unwrap_or(f32::NAN),
                "text_value" => decoded.text = as_str(f).map(str::to_owned),
                _ => {}
            }
        }
        batch.rows.push(decoded);
    }
    batch.rows.iter_mut().for_each(prepare);
    Ok(batch)
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
        let row = row.map_err(|e| row_error(path, i + 1, e))?;
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
    read_with(path, opts, data, report, false)
}

/// [`read`] with the shards decoded a row at a time by the parquet crate's record API (as the reader
/// did before it read by columns): the plain twin the tests compare [`read`] with.
#[doc(hidden)]
pub fn read_rows_reference(
    path: &Path,
    opts: &ReadOptions,
    data: &mut super::Dataset,
    report: &mut super::Report,
) -> Result<()> {
    read_with(path, opts, data, report, true)
}

fn read_with(
    path: &Path,
    opts: &ReadOptions,
    data: &mut super::Dataset,
    report: &mut super::Report,
    by_rows: bool,
) -> Result<()> {
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
    if by_rows {
        for f in &files {
            let batch = contained(f, || read_rows(f, &parents))?;
            apply(&mut sink, batch);
        }
    } else {
        read_shards(&files, &parents, &mut sink)?;
    }
    let splits = path.join("metadata").join("subject_splits.parquet");
    if splits.is_file() {
        contained(&splits, || read_splits(&splits, &mut sink))?;
    } else {
        report_split_directories(&path.join("data"), &files, &mut sink);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_long_notes_held_65536_of_them() {
        // no text, or short text results: full batches
        assert_eq!(next_batch_rows(FIRST_BATCH_ROWS, 0), BATCH_ROWS);
        assert_eq!(next_batch_rows(BATCH_ROWS, BATCH_ROWS * 8), BATCH_ROWS);
        // 10 kB discharge summaries: as many as fill the text budget, not 65,536 (655 MB)
        let n = next_batch_rows(FIRST_BATCH_ROWS, FIRST_BATCH_ROWS * 10_000);
        assert!(n * 10_000 <= BATCH_TEXT_BYTES && (n + 1) * 10_000 > BATCH_TEXT_BYTES, "{n}");
        // a batch of 1 MB notes: the fewest rows
        assert_eq!(next_batch_rows(n, n << 20), MIN_BATCH_ROWS);
    }
}
