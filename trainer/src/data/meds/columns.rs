//! The MEDS data shards read by columns (the parquet crate's column readers), a batch of rows at a
//! time: each column's values converted as the record API would ([`Conv`]), subjects and codes decoded
//! once per run of equal values, batches sized to bound the text they hold, and the next batch decoded
//! while the last is applied ([`read_shards`]).

use super::batch::{apply, prepare, Batch, Row};
use super::codes::{CodeCache, MedsCode};
use super::{check_columns, contained, decimal_f32, integer_time_unit, open, time_offset};
use crate::data::{self, DataError, EventKind, Result, Sink};
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The columns an event is read from, in [`Shard::columns`]' order.
const COLUMNS: [&str; 6] = ["subject_id", "time", "code", "numeric_value", "text_value", "unit"];
const SUBJECT: usize = 0;
const TIME: usize = 1;
const CODE: usize = 2;
const VALUE: usize = 3;
const TEXT: usize = 4;
/// a column beyond MEDS' own that ETLs write (meds_etl's OMOP ETL): the unit of `numeric_value`
const UNIT: usize = 5;

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
/// which the row reader used and [`super::read_rows_reference`] still uses, by physical and converted
/// type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Conv {
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
    /// The conversion of a leaf column, or `None` for an annotation the record API cannot
    /// convert (it panicked on the first row).
    pub(super) fn of(c: &parquet::schema::types::ColumnDescriptor) -> Option<Conv> {
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
/// required column), the repetition levels of a repeated one (a list: a row starts at level 0) and the
/// values of the column's physical type.
#[derive(Default)]
pub(super) struct ColumnBuf {
    def: Vec<i16>,
    pub(super) rep: Vec<i16>,
    pub(super) i32s: Vec<i32>,
    pub(super) i64s: Vec<i64>,
    i96s: Vec<parquet::data_type::Int96>,
    f32s: Vec<f32>,
    f64s: Vec<f64>,
    bytes: Vec<parquet::data_type::ByteArray>,
    fixed: Vec<parquet::data_type::FixedLenByteArray>,
    bools: Vec<bool>,
    /// per row of the batch (per level of a repeated column): the index of its value, or NONE (null,
    /// an empty list)
    pub(super) at: Vec<u32>,
}

impl ColumnBuf {
    /// Reads the next `n` rows of `reader` (with their repetition levels where `repeated`); returns how
    /// many there were.
    pub(super) fn fill(
        &mut self,
        reader: &mut ColumnReader,
        n: usize,
        max_def: i16,
        repeated: bool,
    ) -> parquet::errors::Result<usize> {
        use ColumnReader as R;
        self.def.clear();
        self.rep.clear();
        let def = Some(&mut self.def);
        let rep = if repeated { Some(&mut self.rep) } else { None };
        let rows = match reader {
            R::Int32ColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.i32s))?.0,
            R::Int64ColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.i64s))?.0,
            R::Int96ColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.i96s))?.0,
            R::FloatColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.f32s))?.0,
            R::DoubleColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.f64s))?.0,
            R::ByteArrayColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.bytes))?.0,
            R::FixedLenByteArrayColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.fixed))?.0,
            R::BoolColumnReader(r) => r.read_records(n, def, rep, clear(&mut self.bools))?.0,
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
                    data::NONE
                }
            }));
        }
        Ok(rows)
    }

    /// The bytes of value `i` (BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY).
    pub(super) fn bytes_at(&self, i: usize) -> &[u8] {
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
    columns: [Option<Column>; 6],
    /// units per second of a plain integer `time` ([`integer_time_unit`])
    per_second: i64,
    /// the offset its times carry ([`time_offset`]: UTC, or none)
    time_offset: Option<i64>,
    /// the shard's size, until its first batch says it
    bytes: u64,
    /// the next row group, the column readers of the current one and its rows not yet read
    group: usize,
    readers: [Option<ColumnReader>; 6],
    left: usize,
    lines: u64,
    bufs: [ColumnBuf; 6],
    /// the rows of the next batch ([`next_batch_rows`])
    batch_rows: usize,
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let reader = open(path)?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        check_columns(path, &reader)?;
        let per_second = integer_time_unit(&reader, "time");
        let time_offset = time_offset(&reader, "time");
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut columns = [None; 6];
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
            // a `unit` of a type that holds no text is not read (no MEDS column: no reason to refuse)
            if name == "unit" && Conv::of(&c) != Some(Conv::Str) {
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
        // (named under the input's root where the batch is applied)
        let name = path.display().to_string();
        Ok(Shard {
            path: path.into(),
            name,
            reader,
            columns,
            per_second,
            time_offset,
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
            time_offset: self.time_offset,
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
            let got = buf.fill(reader, n, c.max_def, false).map_err(|e| fmt(format!("{}: {e}", rows(name))))?;
            if got != n {
                return Err(fmt(format!("{}: the column ends before the row group's last row", rows(name))));
            }
        }
        let row_of = |at: usize| self.lines + at as u64 + 1;
        let utf8 = |at: usize, column: &str| {
            fmt(format!("row {}, column {column:?}: not UTF-8 text (the value is not shown)", row_of(at)))
        };
        // subjects: one string per run of equal ids (MEDS shards are sorted by subject)
        let mut subject = vec![data::NONE; n];
        if let Some(c) = self.columns[SUBJECT] {
            let buf = &self.bufs[SUBJECT];
            let mut last: Option<(i64, u32)> = None;
            let mut last_str: Option<(&[u8], u32)> = None;
            for (r, &at) in buf.at.iter().enumerate() {
                if at == data::NONE {
                    continue;
                }
                let at = at as usize;
                let id = match c.conv {
                    Conv::Int => Some(buf.i32s[at] as i64),
                    Conv::UInt => Some(buf.i32s[at] as u32 as i64),
                    Conv::Long => Some(buf.i64s[at]),
                    Conv::ULong => Some(buf.i64s[at]).filter(|&v| v >= 0),
                    Conv::Str => {
                        subject[r] = run_index(&mut last_str, buf.bytes_at(at), &mut batch.subjects)
                            .ok_or_else(|| utf8(r, "subject_id"))?;
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
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != data::NONE) {
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
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != data::NONE) {
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
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != data::NONE) {
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
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != data::NONE) {
                let b = buf.bytes_at(at as usize);
                text[r] = Some(simdutf8::basic::from_utf8(b).map_err(|_| utf8(r, "text_value"))?.to_owned());
            }
        }
        // units: one string per run of equal units (a unit repeats as its code does)
        let mut unit = vec![data::NONE; n];
        if let Some(Column { conv: Conv::Str, .. }) = self.columns[UNIT] {
            let buf = &self.bufs[UNIT];
            let mut last: Option<(&[u8], u32)> = None;
            for (r, &at) in buf.at.iter().enumerate().filter(|(_, &at)| at != data::NONE) {
                unit[r] =
                    run_index(&mut last, buf.bytes_at(at as usize), &mut batch.units).ok_or_else(|| utf8(r, "unit"))?;
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
                unit: unit[r],
                kind: EventKind::Other,
                censored: false,
                result: None,
                identifiers: Vec::new(),
            })
            .collect();
        self.left -= n;
        self.lines += n as u64;
        Ok(batch)
    }
}

/// The index in `out` of a column's text value `b`, pushed when it differs from the value before it
/// (`last`, the run being read: subjects and units come in runs); `None` when it is not UTF-8.
fn run_index<'b>(last: &mut Option<(&'b [u8], u32)>, b: &'b [u8], out: &mut Vec<String>) -> Option<u32> {
    if let Some((prev, i)) = *last {
        if prev == b {
            return Some(i);
        }
    }
    out.push(simdutf8::basic::from_utf8(b).ok()?.to_owned());
    let i = out.len() as u32 - 1;
    *last = Some((b, i));
    Some(i)
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
pub(super) fn read_shards(files: &[PathBuf], known: super::codes::Known, sink: &mut Sink) -> Result<()> {
    let mut shards = Shards { files: files.iter(), open: None, codes: CodeCache { known, codes: HashMap::new() } };
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
