//! What a MEDS code says: `metadata/codes.parquet`'s parents (a MEDS code -> LOINC), the (system,
//! code) an event is read as, the unit of `LAB//<code>//<unit>`, and whether it is a lab; worked out
//! once per distinct code ([`CodeCache`]).

use super::columns::Conv;
use super::table::{Shape, Table};
use crate::data::{catalog, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What `metadata/codes.parquet` says of the codes: MEDS code -> LOINC code, and what was said of how.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parents {
    pub(super) loinc: HashMap<String, String>,
    /// rows of a code listed before with another LOINC parent (the later row is read)
    pub(super) conflicts: u64,
    /// `parent_codes` is a string a row, not a list (read as the codes it separates)
    pub(super) text: bool,
}

impl Parents {
    /// The row of `code` with its parents' first `LOINC/<code>`.
    pub(super) fn add(&mut self, code: &str, loinc: &str) {
        if let Some(old) = self.loinc.insert(code.to_owned(), loinc.to_owned()) {
            self.conflicts += u64::from(old != loinc);
        }
    }
}

/// The first `LOINC/<code>` of a `parent_codes` written as one string (`LOINC/2160-0`, or codes
/// separated by `|`, `,`, `;` or spaces), as hand-made ETLs write it.
pub(super) fn loinc_in_text(parents: &str) -> Option<&str> {
    parents.split(['|', ',', ';', ' ']).find_map(|p| p.trim().strip_prefix("LOINC/"))
}

/// MEDS code -> LOINC code, from `metadata/codes.parquet` (`code`, `parent_codes: list<string>`, or a
/// string), read by columns: a code's first `LOINC/<code>` parent (a later row of the same code wins,
/// counted where it differs), as its twin [`super::records::read_code_parents`] reads it a row at a
/// time.
pub(super) fn read_code_parents(path: &Path) -> Result<Parents> {
    const CODE: usize = 0;
    const PARENTS: usize = 1;
    let list = Table::open(path, &[("code", Shape::Value), ("parent_codes", Shape::StrList)])?;
    // a string a row (found by a tester: ignored without a word)
    let (mut table, string) = match list.conv(PARENTS) {
        Some(_) => (list, false),
        None => {
            let text = Table::open(path, &[("code", Shape::Value), ("parent_codes", Shape::Value)])?;
            match text.conv(PARENTS) {
                Some(Conv::Str) => (text, true),
                _ => (list, false),
            }
        }
    };
    // what the record API made a string (its other conversions were no code, no parent)
    let code_is_text = table.conv(CODE) == Some(Conv::Str);
    let parents_are_text = table.conv(PARENTS) == Some(Conv::Str);
    let mut out = Parents::default();
    table.each_row(|table, r| {
        // every string of a row is UTF-8 checked, as the record API converted each (the first row
        // with one that is not is the error)
        let code = match table.at(CODE, r) {
            Some(at) if code_is_text => Some(table.text(CODE, r, at)?),
            _ => None,
        };
        let mut loinc = None;
        if string {
            // (said where a row holds one, as the row reader says it)
            if let Some(at) = table.at(PARENTS, r) {
                out.text = true;
                loinc = loinc_in_text(table.text(PARENTS, r, at)?);
            }
        } else if parents_are_text {
            for at in table.list_at(PARENTS, r) {
                let parent = table.text(PARENTS, r, at)?;
                loinc = loinc.or_else(|| parent.strip_prefix("LOINC/"));
            }
        }
        if let (Some(c), Some(l)) = (code, loinc) {
            out.add(c, l);
        }
        Ok(())
    })?;
    Ok(out)
}

/// What a code is read by: `metadata/codes.parquet`'s parents, and `read.code_map`.
#[derive(Clone, Copy)]
pub(super) struct Known<'p> {
    pub(super) parents: &'p HashMap<String, String>,
    pub(super) map: Option<&'p crate::data::code_map::CodeMap>,
}

/// The system of MEDS codes that are not LOINC (the code map's rows without a system take them).
const LOCAL: &str = "medtrain:meds";

/// The (system, code) an event is read as: a code `read.code_map` maps stays local here (the sink
/// maps it, and counts it), before its parents; `LOINC/...`; a parent; `LAB//<loinc>//...`.
fn map_code(code: &str, known: Known) -> (String, String) {
    if let Some(l) = code.strip_prefix("LOINC/") {
        return (catalog::LOINC.into(), l.into());
    }
    if known.map.is_some_and(|m| m.get(LOCAL, code).is_some()) {
        return (LOCAL.into(), code.into());
    }
    if let Some(l) = known.parents.get(code) {
        return (catalog::LOINC.into(), l.clone());
    }
    let parts: Vec<&str> = code.split("//").collect();
    if parts.len() >= 2 && catalog::lookup(catalog::LOINC, parts[1]).is_some() {
        return (catalog::LOINC.into(), parts[1].into());
    }
    (LOCAL.into(), code.into())
}

/// What a MEDS code says, worked out once per distinct code (a shard repeats a few thousand codes
/// millions of times): the (system, code) it is read as, the unit of `LAB//<code>//<unit>`, and whether
/// it is a lab code (its text results are read as values).
#[derive(Debug)]
pub(super) struct MedsCode {
    pub(super) system: String,
    pub(super) code: String,
    pub(super) unit: Option<String>,
    pub(super) lab: bool,
}

impl MedsCode {
    pub(super) fn new(code: &str, known: Known) -> MedsCode {
        let parts: Vec<&str> = code.split("//").collect();
        let unit =
            (parts.len() >= 3 && parts[0].eq_ignore_ascii_case("LAB")).then(|| parts[parts.len() - 1].to_owned());
        let (system, mapped) = map_code(code, known);
        // a lab result given as text (`LOINC/2160-0` with `<0.3`, or a code the code map maps to a
        // catalogue lab) is a lab, not a note
        let map_lab =
            known.map.is_some_and(|m| m.get(LOCAL, code).and_then(|r| m.catalogue_test(r)).is_some_and(|l| !l.vital));
        let lab = parts[0].to_ascii_uppercase().starts_with("LAB")
            || map_lab
            || (system == catalog::LOINC && catalog::lookup(catalog::LOINC, &mapped).is_some());
        MedsCode { system, code: mapped, unit, lab }
    }
}

/// Codes read so far (by their bytes), each worked out once ([`MedsCode`]).
pub(super) struct CodeCache<'p> {
    pub(super) known: Known<'p>,
    pub(super) codes: HashMap<Box<[u8]>, Arc<MedsCode>>,
}

impl CodeCache<'_> {
    /// The code of these bytes, or `None` when they are not UTF-8.
    pub(super) fn get(&mut self, bytes: &[u8]) -> Option<&Arc<MedsCode>> {
        if !self.codes.contains_key(bytes) {
            let code = simdutf8::basic::from_utf8(bytes).ok()?;
            self.codes.insert(bytes.into(), Arc::new(MedsCode::new(code, self.known)));
        }
        self.codes.get(bytes)
    }
}
