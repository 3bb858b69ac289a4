//! The dataset's splits from `metadata/subject_splits.parquet`, with the findings on it, and the
//! warning for a `data/train|tuning|held_out/` layout without that file.

use super::columns::Conv;
use super::records::read_split_rows;
use super::table::{Shape, Table};
use super::{NO_SPLIT, NO_SPLIT_SUBJECT};
use crate::data::{self, Result, Sink};
use std::path::{Path, PathBuf};

/// Reads `subject_splits.parquet` into the dataset's splits: only subjects the data holds (one listed
/// there alone is no subject), and a split value that is not train, tuning or held_out is a blocking
/// finding (as `data prepare` refuses it), never printed. Read by columns, or a row at a time by the
/// record API (`by_rows`, the reference).
pub(super) fn read_splits(path: &Path, sink: &mut Sink, by_rows: bool) -> Result<()> {
    use data::check::Severity;
    let rows = if by_rows { read_split_rows(path)? } else { split_rows(path)? };
    let (mut without_subject, mut unknown_split, mut conflicting) = (0, 0, 0);
    for (i, (subject, split)) in rows.into_iter().enumerate() {
        match (subject, split) {
            (Some(s), Some(sp)) => match sink.data.subjects.get(&s) {
                Some(id) => {
                    if data::split::Split::parse(&sp).is_none() {
                        unknown_split += 1;
                    }
                    // listed twice with two splits: the last row won, and a subject moved between
                    // train and held_out unnoticed
                    // (compared as splits where both read as one: `train` and `Train` agree)
                    let same = |a: &str, b: &str| match (data::split::Split::parse(a), data::split::Split::parse(b)) {
                        (Some(x), Some(y)) => x == y,
                        _ => a == b,
                    };
                    match sink.data.splits.get(&id) {
                        Some(earlier) if !same(earlier, &sp) => conflicting += 1,
                        Some(_) => {}
                        None => {
                            sink.data.splits.insert(id, sp);
                        }
                    }
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
    if conflicting > 0 {
        sink.report.finding(
            Severity::Error,
            "conflicting_split",
            "meds",
            "subject_splits.split",
            Some("rows that list a subject again with another split (a subject must be in one split only); the subjects are not printed"),
            conflicting,
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

/// The (subject_id, split) of each row of `subject_splits.parquet`, read by columns: a subject id as a
/// decimal string or as the file has it, `None` where null or of a type that holds none (as its twin
/// [`read_split_rows`] reads them).
fn split_rows(path: &Path) -> Result<Vec<(Option<String>, Option<String>)>> {
    const SUBJECT: usize = 0;
    const SPLIT: usize = 1;
    let mut table = Table::open(path, &[("subject_id", Shape::Value), ("split", Shape::Value)])?;
    let mut out = Vec::new();
    table.each_row(|table, r| {
        let ids = table.buf(SUBJECT);
        let subject = match (table.conv(SUBJECT), table.at(SUBJECT, r)) {
            (Some(Conv::Int), Some(at)) => Some(ids.i32s[at].to_string()),
            (Some(Conv::UInt), Some(at)) => Some((ids.i32s[at] as u32).to_string()),
            (Some(Conv::Long), Some(at)) => Some(ids.i64s[at].to_string()),
            (Some(Conv::ULong), Some(at)) => Some(ids.i64s[at]).filter(|&v| v >= 0).map(|v| v.to_string()),
            (Some(Conv::Str), Some(at)) => Some(table.text(SUBJECT, r, at)?.to_owned()),
            _ => None,
        };
        let split = match (table.conv(SPLIT), table.at(SPLIT, r)) {
            (Some(Conv::Str), Some(at)) => Some(table.text(SPLIT, r, at)?.to_owned()),
            _ => None,
        };
        out.push((subject, split));
        Ok(())
    })?;
    Ok(out)
}

/// Says that `data/train|tuning|held_out/` shards (meds-testing-helpers' "sharded by split" layout) are
/// not read as the split: MEDS shards are arbitrary, and per-subject splits live in
/// `metadata/subject_splits.parquet` only ("the only supported split format", meds 0.4 schema), which
/// this input lacks, so every subject gets the keyed-hash split.
pub(super) fn report_split_directories(data_dir: &Path, files: &[PathBuf], sink: &mut Sink) {
    let by_split = files.iter().any(|f| {
        let mut parts = f.strip_prefix(data_dir).map(|r| r.components().collect::<Vec<_>>()).unwrap_or_default();
        parts.pop();
        parts.first().and_then(|c| c.as_os_str().to_str()).and_then(data::split::Split::parse).is_some()
    });
    if by_split {
        sink.report.finding(
            data::check::Severity::Warning,
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
