//! A metadata file (`codes.parquet`, `subject_splits.parquet`) read by columns, a batch of rows at a
//! time, with the column readers and conversions of the shards' reader ([`super::columns`]): the
//! columns asked for by name, each a value a row or a list of strings a row (`parent_codes`), as the
//! record API read them (its twin, in [`super::records`]). The record API decoded and converted every
//! column of a row, so the others are read too: a corrupt page in any column, text that is not UTF-8
//! in any (a `description`), or a value of a type it could not convert is still an error, naming file,
//! row and column, never the value ([`Table::check`]).

use super::columns::{ColumnBuf, Conv};
use super::open;
use crate::data::{self, DataError, Result};
use parquet::basic::{ConvertedType, Repetition};
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::Type;
use std::path::{Path, PathBuf};

/// Rows decoded at a time at most (a metadata row is a code and its parents, or a subject's split).
const BATCH_ROWS: usize = 1 << 16;

/// How a column asked for is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Shape {
    /// a top-level value a row (a repeated one is none: the record API made it a list)
    Value,
    /// a list of strings a row, where the record API made one of strings: a repeated string, or a LIST
    /// group of a repeated group of one string (3-level, `list.element`); not the legacy 2-level form
    /// (a LIST group of a repeated string), which it read as a list of lists
    StrList,
}

/// A leaf column that is read: its index, conversion, definition level of a value, whether it is
/// repeated (read with its repetition levels), and for one not asked for, what is checked in it.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    index: usize,
    conv: Conv,
    max_def: i16,
    repeated: bool,
    check: Option<Check>,
}

/// What made the record API fail on a value of a column not asked for (besides a page it could not
/// decode, an error of [`Table::next_batch`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// nothing: a value it converted whatever it held
    Decodes,
    /// text (UTF-8, ENUM or JSON) that is not UTF-8: an error
    Utf8,
    /// a type it has no conversion for ([`Conv::of`]): a panic, caught by [`super::contained`]
    Unreadable,
}

/// A metadata file being read by columns.
pub(super) struct Table {
    path: PathBuf,
    reader: SerializedFileReader<std::fs::File>,
    /// the columns asked for, then the others, checked ([`Check`])
    leaves: Vec<Option<Leaf>>,
    names: Vec<String>,
    readers: Vec<Option<ColumnReader>>,
    bufs: Vec<ColumnBuf>,
    /// per column read, for a repeated one: where each row of the batch starts in its levels, and the end
    starts: Vec<Vec<usize>>,
    /// the next row group, and the rows of the current one not yet read
    group: usize,
    left: usize,
    /// rows read before the current batch, and its rows
    lines: u64,
    batch: usize,
    /// the first row of the batch with a value the record API failed on, and the column
    failed: Option<(usize, usize)>,
}

impl Table {
    /// Opens `path` (inside [`super::contained`]) to read the columns `asked` (name, shape).
    pub(super) fn open(path: &Path, asked: &[(&str, Shape)]) -> Result<Table> {
        let reader = open(path)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let mut leaves = Vec::new();
        let mut names: Vec<String> = asked.iter().map(|(n, _)| (*n).to_owned()).collect();
        for &(name, shape) in asked {
            let leaf_path = match shape {
                Shape::Value => Some(vec![name.to_owned()]),
                Shape::StrList => {
                    schema.root_schema().get_fields().iter().find(|f| f.name() == name).and_then(|f| str_list(f))
                }
            };
            let Some(index) = leaf_path.and_then(|p| schema.columns().iter().position(|c| c.path().parts() == p))
            else {
                leaves.push(None);
                continue;
            };
            let c = schema.column(index);
            let wanted_rep = if shape == Shape::Value { 0 } else { 1 };
            // a type without a conversion is checked as the others are (an error on its first value)
            match Conv::of(&c) {
                Some(conv) if c.max_rep_level() == wanted_rep => leaves.push(Some(Leaf {
                    index,
                    conv,
                    max_def: c.max_def_level(),
                    repeated: wanted_rep > 0,
                    check: None,
                })),
                _ => leaves.push(None),
            }
        }
        let asked_leaves: Vec<usize> = leaves.iter().flatten().map(|l| l.index).collect();
        for (index, c) in schema.columns().iter().enumerate() {
            let check = match Conv::of(c) {
                _ if asked_leaves.contains(&index) => continue,
                Some(Conv::Str) => Check::Utf8,
                None => Check::Unreadable,
                Some(_) => Check::Decodes,
            };
            let repeated = c.max_rep_level() > 0;
            leaves.push(Some(Leaf {
                index,
                conv: Conv::Other,
                max_def: c.max_def_level(),
                repeated,
                check: Some(check),
            }));
            names.push(c.path().string());
        }
        let n = leaves.len();
        Ok(Table {
            path: path.into(),
            reader,
            leaves,
            names,
            readers: (0..n).map(|_| None).collect(),
            bufs: (0..n).map(|_| ColumnBuf::default()).collect(),
            starts: vec![Vec::new(); n],
            group: 0,
            left: 0,
            lines: 0,
            batch: 0,
            failed: None,
        })
    }

    /// The conversion of column `i` asked for, or `None` where it is not read.
    pub(super) fn conv(&self, i: usize) -> Option<Conv> {
        self.leaves[i].map(|l| l.conv)
    }

    /// Reads the next batch; returns its rows (0 at the end of the file).
    pub(super) fn next_batch(&mut self) -> Result<usize> {
        let fmt = |msg: String| DataError::Format { path: self.path.clone(), msg };
        while self.left == 0 && self.group < self.reader.num_row_groups() {
            let group =
                self.reader.get_row_group(self.group).map_err(|e| fmt(format!("row group {}: {e}", self.group)))?;
            self.left = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
            for (reader, leaf) in self.readers.iter_mut().zip(&self.leaves) {
                *reader = match leaf {
                    Some(l) => Some(
                        group.get_column_reader(l.index).map_err(|e| fmt(format!("row group {}: {e}", self.group)))?,
                    ),
                    None => None,
                };
            }
            self.group += 1;
        }
        self.lines += self.batch as u64;
        // no column to count rows by (a file without columns): none, whatever its row groups claim
        let n = if self.leaves.iter().all(Option::is_none) { 0 } else { self.left.min(BATCH_ROWS) };
        let rows = |what: &str| format!("rows {}-{}, column {what:?}", self.lines + 1, self.lines + n as u64);
        for (i, (reader, leaf)) in self.readers.iter_mut().zip(&self.leaves).enumerate() {
            let (Some(reader), Some(l)) = (reader, leaf) else { continue };
            let name = &self.names[i];
            let buf = &mut self.bufs[i];
            let got = buf.fill(reader, n, l.max_def, l.repeated).map_err(|e| fmt(format!("{}: {e}", rows(name))))?;
            if got != n {
                return Err(fmt(format!("{}: the column ends before the row group's last row", rows(name))));
            }
            let starts = &mut self.starts[i];
            starts.clear();
            if l.repeated {
                starts.extend(buf.rep.iter().enumerate().filter(|(_, &r)| r == 0).map(|(at, _)| at));
                starts.push(buf.rep.len());
            }
        }
        self.left -= n;
        self.batch = n;
        self.failed = None;
        for (i, leaf) in self.leaves.iter().enumerate() {
            let Some(Leaf { check: Some(check @ (Check::Utf8 | Check::Unreadable)), repeated, .. }) = *leaf else {
                continue;
            };
            let buf = &self.bufs[i];
            // the row of each level: a repeated column's rows start at repetition level 0
            let mut row = 0;
            for (level, &at) in buf.at.iter().enumerate() {
                if repeated && level > 0 && buf.rep[level] == 0 {
                    row += 1;
                } else if !repeated {
                    row = level;
                }
                if self.failed.is_some_and(|(r, _)| r <= row) {
                    break;
                }
                let failed = at != data::NONE
                    && (check == Check::Unreadable || simdutf8::basic::from_utf8(buf.bytes_at(at as usize)).is_err());
                if failed {
                    self.failed = Some((row, i));
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Calls `row` on each row of the file in turn, batch by batch, after [`Table::check`] has passed it.
    pub(super) fn each_row(&mut self, mut row: impl FnMut(&Table, usize) -> Result<()>) -> Result<()> {
        loop {
            let n = self.next_batch()?;
            if n == 0 {
                return Ok(());
            }
            for r in 0..n {
                self.check(r)?;
                row(self, r)?;
            }
        }
    }

    /// An error where the record API failed on row `r` of the batch, in a column not asked for: text
    /// that is not UTF-8, or a type it could not convert; the value is not shown. Called for each row
    /// before its values are read, so that the first row that failed is the one named.
    pub(super) fn check(&self, r: usize) -> Result<()> {
        let Some((row, i)) = self.failed.filter(|&(row, _)| row == r) else { return Ok(()) };
        let what = match self.leaves[i].and_then(|l| l.check) {
            Some(Check::Unreadable) => {
                let c =
                    self.reader.metadata().file_metadata().schema_descr().column(self.leaves[i].map_or(0, |l| l.index));
                format!("a type no MEDS column holds ({} annotated {})", c.physical_type(), c.converted_type())
            }
            _ => "not UTF-8 text (the value is not shown)".to_owned(),
        };
        Err(DataError::Format {
            path: self.path.clone(),
            msg: format!("row {}, column {:?}: {what}", self.row(row), self.names[i]),
        })
    }

    /// The values of column `i` (asked for and read).
    pub(super) fn buf(&self, i: usize) -> &ColumnBuf {
        &self.bufs[i]
    }

    /// The index in [`Table::buf`] of row `r`'s value in column `i` (a value a row); `None` where it is
    /// null or the column is not read.
    pub(super) fn at(&self, i: usize, r: usize) -> Option<usize> {
        self.leaves[i]?;
        Some(self.bufs[i].at[r]).filter(|&at| at != data::NONE).map(|at| at as usize)
    }

    /// The indices in [`Table::buf`] of row `r`'s list elements in column `i`, in order, without nulls.
    pub(super) fn list_at(&self, i: usize, r: usize) -> impl Iterator<Item = usize> + '_ {
        let levels = match (self.leaves[i], self.starts[i].get(r..r + 2)) {
            (Some(_), Some(&[start, end])) => &self.bufs[i].at[start..end],
            _ => &[][..],
        };
        levels.iter().filter(|&&at| at != data::NONE).map(|&at| at as usize)
    }

    /// The text of value `at` of column `i`, or an error naming file, row `r` of the batch and column
    /// (never the value) when it is not UTF-8.
    pub(super) fn text(&self, i: usize, r: usize, at: usize) -> Result<&str> {
        simdutf8::basic::from_utf8(self.bufs[i].bytes_at(at)).map_err(|_| DataError::Format {
            path: self.path.clone(),
            msg: format!("row {}, column {:?}: not UTF-8 text (the value is not shown)", self.row(r), self.names[i]),
        })
    }

    /// The row number (1-based, through the file) of row `r` of the batch.
    pub(super) fn row(&self, r: usize) -> u64 {
        self.lines + r as u64 + 1
    }
}

/// The path of the string leaf under a top-level `field` that the record API read as a list of strings,
/// or `None` where it read something else (a struct, a list of structs or lists, a value).
fn str_list(field: &Type) -> Option<Vec<String>> {
    let info = field.get_basic_info();
    let repeated =
        |t: &Type| t.get_basic_info().has_repetition() && t.get_basic_info().repetition() == Repetition::REPEATED;
    if field.is_primitive() {
        return repeated(field).then(|| vec![field.name().to_owned()]);
    }
    // the record API's LIST rules (`Reader::is_element_type`): the repeated field is the element in the
    // legacy 2-level forms, else the element is its one child
    if info.converted_type() != ConvertedType::LIST || repeated(field) || field.get_fields().len() != 1 {
        return None;
    }
    let middle = &field.get_fields()[0];
    if !repeated(middle) {
        return None;
    }
    if middle.is_primitive() {
        // the legacy 2-level form (`repeated binary item`): the record API read a list of lists here (its
        // element reader is the repeated field's, itself a list), so no string and no parent
        return None;
    }
    let is_list = middle.get_basic_info().converted_type() == ConvertedType::LIST
        || middle.get_basic_info().logical_type_ref() == Some(&parquet::basic::LogicalType::List);
    let one_repeated_child = middle.get_fields().len() == 1 && repeated(&middle.get_fields()[0]);
    let element_is_middle = !(is_list || one_repeated_child)
        && (middle.get_fields().len() > 1
            || middle.name() == "array"
            || middle.name() == format!("{}_tuple", field.name()));
    if element_is_middle {
        return None;
    }
    let element = middle.get_fields().first()?;
    (element.is_primitive() && !repeated(element))
        .then(|| vec![field.name().to_owned(), middle.name().to_owned(), element.name().to_owned()])
}
