//! The MEDS files read a row at a time by the parquet crate's record API, as the reader did before it
//! read by columns: a shard, `codes.parquet` and `subject_splits.parquet`. These are the plain twins of
//! [`super::columns`], [`super::codes::read_code_parents`] and `splits::split_rows`, kept as the
//! reference the tests compare them with ([`super::read_rows_reference`]).

use super::batch::{prepare, Batch, Row};
use super::codes::MedsCode;
use super::{as_time, check_columns, decimal_f32, integer_time_unit, open, row_error};
use crate::data::{self, DataError, EventKind, Result};
use parquet::file::reader::FileReader;
use parquet::record::Field;
use std::path::Path;
use std::sync::Arc;

fn as_i64(f: &Field) -> Option<i64> {
    match *f {
        Field::Long(v) => Some(v),
        Field::Int(v) => Some(v as i64),
        Field::UInt(v) => Some(v as i64),
        Field::ULong(v) => i64::try_from(v).ok(),
        _ => None,
    }
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

/// The row reader's decoding of a shard (the parquet crate's record API, a row at a time): the plain
/// twin of `columns::Shard::next_batch`, kept as the reference the tests compare it with. One batch per
/// shard.
pub(super) fn read_rows(path: &Path, known: super::codes::Known) -> Result<Batch> {
    let reader = open(path)?;
    let name = path.display().to_string();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    check_columns(path, &reader)?;
    let per_second = integer_time_unit(&reader, "time");
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let time_offset = super::time_offset(&reader, "time");
    let mut batch = Batch { name, bytes, first_line: 1, last: true, time_offset, ..Batch::default() };
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| row_error(path, i + 1, e))?;
        let mut decoded = Row {
            subject: data::NONE,
            time: None,
            code: None,
            value: f32::NAN,
            text: None,
            unit: data::NONE,
            kind: EventKind::Other,
            censored: false,
            result: None,
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
                "code" => decoded.code = as_str(f).map(|c| Arc::new(MedsCode::new(c, known))),
                "numeric_value" => decoded.value = as_f32(f).unwrap_or(f32::NAN),
                "text_value" => decoded.text = as_str(f).map(str::to_owned),
                "unit" => {
                    if let Some(u) = as_str(f) {
                        batch.units.push(u.to_owned());
                        decoded.unit = batch.units.len() as u32 - 1;
                    }
                }
                _ => {}
            }
        }
        batch.rows.push(decoded);
    }
    batch.rows.iter_mut().for_each(prepare);
    Ok(batch)
}

/// MEDS code -> LOINC code, from `metadata/codes.parquet` (`code`, `parent_codes: list<string>`), a row
/// at a time: the plain twin of [`super::codes::read_code_parents`].
pub(super) fn read_code_parents(path: &Path) -> Result<super::codes::Parents> {
    let reader = open(path)?;
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let mut out = super::codes::Parents::default();
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
                ("parent_codes", Field::Str(s)) => {
                    out.text = true;
                    loinc = super::codes::loinc_in_text(s).map(str::to_owned);
                }
                _ => {}
            }
        }
        if let (Some(c), Some(l)) = (code, loinc) {
            out.add(&c, &l);
        }
    }
    Ok(out)
}

/// The (subject_id, split) of each row of `subject_splits.parquet`, a row at a time: the plain twin of
/// `splits::split_rows` (a subject id as a decimal string or as the file has it; `None` where null or
/// of a type that holds none).
pub(super) fn read_split_rows(path: &Path) -> Result<Vec<(Option<String>, Option<String>)>> {
    let reader = open(path)?;
    let rows = reader.get_row_iter(None).map_err(|e| DataError::Format { path: path.into(), msg: e.to_string() })?;
    let mut out = Vec::new();
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
        out.push((subject, split));
    }
    Ok(out)
}
