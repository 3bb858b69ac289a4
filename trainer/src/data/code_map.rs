//! `read.code_map`: local codes read as LOINC or JLAC10 codes.
//!
//! Hospital systems and research extracts code lab tests with their own codes (a laboratory system's
//! item numbers, MIMIC's `itemid`, a MEDS ETL's `LAB//50912//mg/dL`), which the catalogue does not
//! know: their events are read, and counted, but no channel of `features.channels` matches them. A code
//! map, written by the site's people who know their codes, says which LOINC or JLAC10 code each local
//! code is, and every reader (CSV, FHIR, MEDS) reads the local code as that one.
//!
//! The map is a CSV or TSV file (UTF-8 or the encoding `read.encoding` names; `.csv.gz` too) with a
//! header. Columns, by name in any case and order:
//!
//! - `code` (or `source_code`): the local code as the input writes it (trimmed), required;
//! - `system` (or `source_system`): the code system it is in (a URI: `http://hospital.example/lab`,
//!   `medtrain:csv`); empty or absent: the code under any system that is not LOINC or JLAC10 (a CSV
//!   file's bare codes, a FHIR coding without a system, MEDS codes);
//! - `loinc`, `jlac10`: the code it is (at least one of the columns; a row may fill both, and the
//!   first of `read.code_systems` that it fills is read); a row with neither is a local code nobody
//!   mapped yet, skipped;
//! - `unit`: the unit of the local code's values where an event gives none (the event's own unit wins,
//!   and values are converted to the catalogue's unit as any other);
//! - any other column (a name, a comment) is not read.
//!
//! The map is checked when the config is loaded: a LOINC code with a wrong check digit, a JLAC10 code
//! that is not 17 characters of its form, a row whose LOINC and JLAC10 codes are two tests of the
//! catalogue, a LOINC or JLAC10 code as a source (read as they are), one code mapped two ways: an error naming the file, line and column. Errors never print a cell: a map
//! that is by mistake a file of patient data shows nothing of it.
//!
//! Codes are mapped once per distinct code ([`super::Dataset::code`]): the cost per event is nil.

use super::catalog;
use super::{DataError, ReadLimits, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The largest code map read (a map is config: a larger file is not one).
pub const MAX_BYTES: u64 = 256 << 20;

/// What a local code is read as.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub system: &'static str,
    pub code: String,
    /// the unit of values given without one
    pub unit: Option<String>,
}

/// A code map ([module docs](self)), loaded and checked.
pub struct CodeMap {
    /// the file, as given
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes (the manifest records it: the map changes what is read)
    pub sha256: String,
    /// the rows read, in file order
    targets: Vec<Target>,
    /// local code -> (source system or `None` for any, index into `targets`)
    by_code: HashMap<String, Vec<(Option<String>, u32)>>,
    /// rows with a code and no target
    pub unmapped_rows: usize,
}

impl std::fmt::Debug for CodeMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CodeMap({}, {} codes, {})", self.path.display(), self.targets.len(), self.sha256)
    }
}

/// A code of these systems is read as it is: a map does not take one.
fn standard(system: &str) -> bool {
    system == catalog::LOINC || catalog::JLAC10_SYSTEMS.contains(&system)
}

/// Header names the map reads (and an error may print).
const COLUMNS: &[&str] = &["code", "source_code", "system", "source_system", "loinc", "jlac10", "unit"];

impl CodeMap {
    /// Reads and checks a map. `prefer` is `read.code_systems` (which target a row with both is read
    /// as); `encoding` and `limits` are the `[read]` keys CSV input is read with.
    pub fn load(
        path: &Path,
        prefer: &[String],
        encoding: super::charset::Choice,
        limits: ReadLimits,
    ) -> Result<CodeMap> {
        let bytes = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
        if bytes > MAX_BYTES {
            return Err(DataError::Format {
                path: path.into(),
                msg: format!("{bytes} bytes: a code map is at most {MAX_BYTES} bytes"),
            });
        }
        let sha256 = {
            use sha2::Digest;
            let data = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            format!("sha256:{:x}", sha2::Sha256::digest(&data))
        };
        let mut table = super::csv::Table::open(path, encoding, limits)?;
        let col = |names: &[&str]| names.iter().find_map(|n| table.column(n));
        let code_col = col(&["code", "source_code"]);
        let system_col = col(&["system", "source_system"]);
        let (loinc_col, jlac_col, unit_col) = (col(&["loinc"]), col(&["jlac10"]), col(&["unit"]));
        let header_error = |wanted: &str| DataError::Line {
            path: path.into(),
            line: table.header_line,
            msg: format!(
                "a code map's header needs {wanted} (the header read: {})",
                super::csv::header_summary(&table.header, |h| COLUMNS.contains(&h).then(|| format!("{h:?}")))
            ),
        };
        let Some(code_col) = code_col else { return Err(header_error("a `code` column")) };
        if loinc_col.is_none() && jlac_col.is_none() {
            return Err(header_error("a `loinc` or a `jlac10` column"));
        }
        // LOINC first unless read.code_systems puts JLAC10 before it
        let jlac_first =
            prefer.iter().find(|s| standard(s)).is_some_and(|s| catalog::JLAC10_SYSTEMS.contains(&s.as_str()));
        let mut map =
            CodeMap { path: path.into(), sha256, targets: Vec::new(), by_code: HashMap::new(), unmapped_rows: 0 };
        // (system, code) -> the line that mapped it
        let mut lines: HashMap<(Option<String>, String), u64> = HashMap::new();
        let mut rec = ::csv::StringRecord::new();
        loop {
            let (read, line) = table.next_record(&mut rec);
            let bad = |column: &str, msg: &str| DataError::Line {
                path: path.into(),
                line,
                msg: if column.is_empty() { msg.to_owned() } else { format!("column {column}: {msg}") },
            };
            match read {
                Ok(false) => break,
                Ok(true) if table.ends_in_open_quote() => return Err(bad("", super::csv::ENDS_IN_OPEN_QUOTE)),
                Ok(true) => {}
                Err(e) => {
                    return Err(match e.kind() {
                        ::csv::ErrorKind::Io(e) => DataError::io(path, format!("at line {line}: {e}")),
                        ::csv::ErrorKind::Utf8 { .. } => {
                            bad("", "not UTF-8 text: name the file's encoding with read.encoding")
                        }
                        _ => bad("", "not valid CSV"),
                    })
                }
            }
            table.budget.record_done();
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::trim).filter(|s| !s.is_empty());
            let Some(code) = get(Some(code_col)) else { return Err(bad("code", "empty: the local code is needed")) };
            let system = match get(system_col) {
                None => None,
                Some(s) => match super::csv::code_system(s) {
                    Some(s) if standard(s.strip_suffix('/').unwrap_or(&s)) => {
                        return Err(bad("system", "LOINC and JLAC10 codes are read as they are: map local codes only"))
                    }
                    // as the readers read a system (`http://lab.example/codes/` is `.../codes`)
                    Some(s) => Some(s.strip_suffix('/').unwrap_or(&s).to_owned()),
                    None => {
                        return Err(bad(
                            "system",
                            "not a code system's URI (http://..., urn:oid:...): leave it empty for codes under any local system",
                        ))
                    }
                },
            };
            let loinc = get(loinc_col);
            if loinc.is_some_and(|l| !catalog::loinc_is_valid(l)) {
                return Err(bad(
                    "loinc",
                    "not a LOINC code (digits, a hyphen, the check digit), or its check digit is wrong",
                ));
            }
            // (written as the readers read one too: `3C015-0000-023-271-01`, lower case, full width)
            let jlac_owned = get(jlac_col).map(|j| catalog::jlac10_canonical(j).unwrap_or_else(|| j.to_owned()));
            let jlac = jlac_owned.as_deref();
            if jlac.is_some_and(|j| !catalog::jlac10_is_valid(j)) {
                return Err(bad("jlac10", "not a JLAC10 code (17 characters: a digit, a capital letter, 15 digits)"));
            }
            // both filled: they must name one test where the catalogue knows both (a potassium row
            // whose LOINC is creatinine's converted potassium values as creatinine)
            if let (Some(l), Some(j)) = (loinc, jlac) {
                let (a, b) = (catalog::lookup_index(catalog::LOINC, l), catalog::lookup_index(catalog::JLAC10, j));
                if let (Some(a), Some(b)) = (a, b) {
                    if a != b {
                        return Err(bad(
                            "loinc",
                            "its LOINC and JLAC10 codes are two different tests of the catalogue",
                        ));
                    }
                }
            }
            let target = match (loinc, jlac) {
                (None, None) => {
                    map.unmapped_rows += 1;
                    continue;
                }
                (Some(l), None) => (catalog::LOINC, l),
                (None, Some(j)) => (catalog::JLAC10, j),
                (Some(_), Some(j)) if jlac_first => (catalog::JLAC10, j),
                (Some(l), Some(_)) => (catalog::LOINC, l),
            };
            let target = Target { system: target.0, code: target.1.to_owned(), unit: get(unit_col).map(str::to_owned) };
            let key = (system.clone(), code.to_owned());
            if let Some(&first) = lines.get(&key) {
                let i = map.index(system.as_deref(), code, false).expect("mapped on its first line");
                if map.targets[i as usize] != target {
                    return Err(bad("", &format!("the code of line {first} (same system) mapped another way")));
                }
                continue;
            }
            lines.insert(key, line);
            map.by_code.entry(code.to_owned()).or_default().push((system, map.targets.len() as u32));
            map.targets.push(target);
        }
        Ok(map)
    }

    /// Rows mapped (codes with a target).
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn target(&self, index: u32) -> &Target {
        &self.targets[index as usize]
    }

    /// The row a code of `system` maps by (its index in [`CodeMap::target`]): a row of that system, else
    /// a row without one where the code's system is a local one (none, the CSV or MEDS readers' own,
    /// or a URI no public code system has: a hospital's); never for LOINC or JLAC10 codes. A row without
    /// a system does not take a SNOMED CT or HL7 code (an Encounter's class, a note's type).
    pub fn get(&self, system: &str, code: &str) -> Option<u32> {
        if standard(system) {
            return None;
        }
        let local =
            matches!(system, "" | "medtrain:csv" | "medtrain:meds") || !catalog::KNOWN_SYSTEMS.contains(&system);
        self.index(Some(system), code, local)
    }

    fn index(&self, system: Option<&str>, code: &str, any: bool) -> Option<u32> {
        let rows = self.by_code.get(code)?;
        rows.iter()
            .find(|(s, _)| s.as_deref() == system)
            .or_else(|| if any { rows.iter().find(|(s, _)| s.is_none()) } else { None })
            .map(|&(_, i)| i)
    }

    /// Whether a row's target is a catalogue test (the others are read, and no channel takes them).
    pub fn in_catalogue(&self, index: u32) -> bool {
        self.catalogue_test(index).is_some()
    }

    /// The catalogue's test a row maps to (`None`: a code the catalogue lacks).
    pub fn catalogue_test(&self, index: u32) -> Option<&'static catalog::Lab> {
        let t = self.target(index);
        catalog::lookup(t.system, &t.code)
    }
}
