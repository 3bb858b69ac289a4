//! MEDS input (Medical Event Data Standard): `data/**/*.parquet` with `subject_id` (int64), `time`
//! (timestamp), `code` (string), `numeric_value` (float, nullable), `text_value` (string, nullable);
//! `metadata/subject_splits.parquet` (`subject_id`, `split`) when present.
//!
//! MEDS has no unit column: a unit is taken from codes of the form `LAB//<code>//<unit>`, or from a
//! `unit` column of text where a file has one (meds_etl's OMOP ETL writes it; a row's unit there is
//! preferred to its code's). A code maps to
//! LOINC (so that the catalogue, plausibility checks and lab features apply) when it is `LOINC/<code>`,
//! when its middle part is a catalogue LOINC code (`LAB//2160-0//mg/dL`), or when
//! `metadata/codes.parquet` lists a `LOINC/<code>` among its `parent_codes`; other codes keep the system
//! `medtrain:meds`. Kinds: `LAB...` codes, codes that map to a catalogue test, and any code with a
//! numeric value are labs; a lab without a `numeric_value` is read from its `text_value` (a number, or a
//! censored `<0.3` read as its limit and counted as `censored_value`; other text leaves it without a
//! value, `no_value`; an infinite `numeric_value` is none either: `non_finite_value`). A code that maps to a
//! catalogue vital sign is a vital. Rows of other codes with only a text value are notes, the rest (`MEDS_BIRTH`,
//! diagnoses, ...) are `other`.
//!
//! This module holds the entry points ([`read`], [`read_rows_reference`]), the parquet helpers the
//! other readers share (opening a file inside `contained`, time units, row errors) and the MEDS names
//! of report fields (`name_fields`). By verb: `codes` reads `metadata/codes.parquet` and works out
//! what a code says, `columns` decodes the shards by columns in batches, `table` reads a metadata file
//! by columns, `records` reads all three a row at a time (the record API: the twins the tests compare
//! with), `batch` prepares decoded rows and applies them to the sink, `splits` reads
//! `metadata/subject_splits.parquet`.

mod batch;
mod codes;
mod columns;
mod records;
mod splits;
mod table;

use super::{DataError, ReadOptions, Result, Sink};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::cell::Cell;
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

/// The offset a time column's values carry: UTC (`Some(0)`) where its timestamp type says they are
/// adjusted to UTC (pyarrow's `timestamp[us, tz=...]`); none (read in `read.time_zone`) for MEDS' usual
/// `timestamp[us]` without a zone, dates, plain integers, and the legacy annotations without a logical
/// type (which pyarrow wrote for zone-less timestamps too).
pub(crate) fn time_offset(reader: &SerializedFileReader<std::fs::File>, name: &str) -> Option<i64> {
    use parquet::basic::LogicalType;
    match column(reader, name).and_then(|c| c.logical_type_ref()) {
        Some(LogicalType::Timestamp { is_adjusted_to_u_t_c: true, .. }) => Some(0),
        _ => None,
    }
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
    let schema = reader.metadata().file_metadata().schema_descr();
    let bad = |msg: String| DataError::Format { path: path.into(), msg };
    // a MEDS column given twice (the first one was read, the other not said)
    for name in ["subject_id", "time", "code", "numeric_value", "text_value"] {
        let fields = schema.root_schema().get_fields().iter().filter(|f| f.name() == name).count();
        if fields > 1 {
            return Err(bad(format!(
                "the file names the column {name:?} {fields} times: which one is meant is not known"
            )));
        }
    }
    for name in ["subject_id", "time", "code", "numeric_value"] {
        // a list or a struct under the name: its values are nested, not the column MEDS has (it was said
        // to be missing)
        let nested = schema.columns().iter().any(|c| c.path().parts().len() > 1 && c.path().parts()[0] == name);
        if column(reader, name).is_none() && nested {
            return Err(bad(format!(
                "the column {name:?} is nested (a list or a struct), where MEDS has one value a row (subject_id \
                 int64, time timestamp, code string, numeric_value float32)"
            )));
        }
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
    // a column of a type whose values the readers take as none: times written as text (every event was
    // static), values as text (every lab had no value), subject ids as floats (every row malformed)
    use columns::Conv;
    let columns: [(&str, fn(Conv) -> bool, &str); 3] = [
        (
            "subject_id",
            |c| matches!(c, Conv::Int | Conv::UInt | Conv::Long | Conv::ULong | Conv::Str),
            "integers (int64; text ids are read too); pandas writes an integer column with missing values as float64",
        ),
        (
            "time",
            |c| matches!(c, Conv::Micros | Conv::Millis | Conv::Long | Conv::Date | Conv::Int96),
            "timestamps (timestamp[us]; dates and integer microseconds are read too); convert text times \
             before writing them (pandas: to_datetime)",
        ),
        (
            "numeric_value",
            |c| matches!(c, Conv::Float | Conv::Double | Conv::Int | Conv::Long | Conv::Decimal(_)),
            "numbers (float32); a value written as text belongs in text_value",
        ),
    ];
    for (name, readable, wanted) in columns {
        let Some(c) = column(reader, name) else { continue };
        // a column of nulls only (pyarrow's `null` type): nothing to misread
        if matches!(c.logical_type_ref(), Some(parquet::basic::LogicalType::Unknown)) {
            continue;
        }
        let conv = Conv::of(c);
        if c.max_rep_level() == 0 && conv.is_some_and(readable) {
            continue;
        }
        let holds = match conv {
            _ if c.max_rep_level() > 0 => "lists".to_owned(),
            Some(Conv::Str) => "text".to_owned(),
            Some(Conv::Float | Conv::Double) => "floating-point numbers".to_owned(),
            Some(Conv::Decimal(_)) => "decimals".to_owned(),
            Some(Conv::Int | Conv::UInt | Conv::Long | Conv::ULong) => "integers".to_owned(),
            Some(Conv::Date) => "dates".to_owned(),
            Some(Conv::Micros | Conv::Millis | Conv::Int96) => "timestamps".to_owned(),
            Some(Conv::Other) | None => format!("{} annotated {}", c.physical_type(), c.converted_type()),
        };
        return Err(DataError::Format {
            path: path.into(),
            msg: format!("the column {name:?} holds {holds}, where MEDS has {wanted}"),
        });
    }
    Ok(())
}

/// The value of a parquet decimal: a big-endian two's complement integer and a scale (of any width: a
/// precision above 38 is written in more than 16 bytes, and every such value was read as none).
fn decimal_f32(bytes: &[u8], scale: i32) -> Option<f32> {
    let (&first, rest) = bytes.split_first()?;
    if bytes.len() > 64 {
        return None;
    }
    // the first byte carries the sign; each byte after it is 8 more bits
    let mut v = first as i8 as f64;
    for &b in rest {
        v = v * 256.0 + b as f64;
    }
    Some((v / 10f64.powi(scale)) as f32)
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

/// MEDS names for the fields the shared QA report names as FHIR's ([`super::name_fields`]): a MEDS unit
/// and code system are parts of `code` (`LAB//<code>//<unit>`), a value is `numeric_value`, a note
/// `text_value`, and a malformed row is named by the column it lacks.
pub(super) fn name_fields(report: &mut super::Report) {
    let names = super::FieldNames {
        resource: "meds",
        value: "numeric_value",
        unit: "code",
        system: "code",
        text: "text_value",
        duplicate: "the same subject_id, time, code, numeric_value and text_value",
    };
    super::name_fields(report, &names, |kind, resource, field| match (kind, resource, field) {
        ("malformed_line", "-", NO_SUBJECT) => Some("subject_id"),
        ("malformed_line", "-", NO_CODE) => Some("code"),
        ("malformed_line", "-", NO_SPLIT_SUBJECT) => Some("subject_splits.subject_id"),
        ("malformed_line", "-", NO_SPLIT) => Some("subject_splits.split"),
        _ => None,
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

/// [`read`] with the shards, `codes.parquet` and `subject_splits.parquet` decoded a row at a time by the
/// parquet crate's record API (as the reader did before it read by columns): the plain twin the tests
/// compare [`read`] with.
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
    let codes_file = path.join("metadata").join("codes.parquet");
    let parents = match (codes_file.is_file(), by_rows) {
        (true, false) => contained(&codes_file, || codes::read_code_parents(&codes_file))?,
        (true, true) => contained(&codes_file, || records::read_code_parents(&codes_file))?,
        (false, _) => codes::Parents::default(),
    };
    if parents.conflicts > 0 {
        // a code read as one test's where the file names two (found by a tester: creatinine read as
        // sodium, converted as sodium, said only as implausible values)
        report.finding(
            crate::data::check::Severity::Warning,
            "conflicting_code_parents",
            "meds",
            "metadata/codes.parquet",
            None,
            parents.conflicts,
        );
    }
    if parents.text {
        report.finding(
            crate::data::check::Severity::Info,
            "parent_codes_text",
            "meds",
            "metadata/codes.parquet",
            None,
            1,
        );
    }
    let known = codes::Known { parents: &parents.loinc, map: opts.code_map.as_deref() };
    let mut sink = Sink { data, report, opts };
    if by_rows {
        for f in &files {
            let rows = contained(f, || records::read_rows(f, known))?;
            batch::apply(&mut sink, rows);
        }
    } else {
        columns::read_shards(&files, known, &mut sink)?;
    }
    let splits_file = path.join("metadata").join("subject_splits.parquet");
    if splits_file.is_file() {
        contained(&splits_file, || splits::read_splits(&splits_file, &mut sink, by_rows))?;
    } else {
        splits::report_split_directories(&path.join("data"), &files, &mut sink);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decimal_f32;

    #[test]
    fn decimals_of_any_width_and_sign() {
        // 110 at scale 2 in 4, 16 and 17 bytes (a precision above 38), and -110
        let wide = |n: usize, v: i128| {
            let b = v.to_be_bytes();
            let fill = if v < 0 { 0xff } else { 0 };
            let mut out = vec![fill; n.saturating_sub(16)];
            out.extend_from_slice(&b[16usize.saturating_sub(n)..]);
            out
        };
        for n in [4, 16, 17, 32] {
            assert_eq!(decimal_f32(&wide(n, 110), 2), Some(1.1), "{n} bytes");
            assert_eq!(decimal_f32(&wide(n, -110), 2), Some(-1.1), "{n} bytes");
        }
        assert_eq!(decimal_f32(&[], 0), None);
        assert_eq!(decimal_f32(&[0; 65], 0), None);
    }
}
