//! Public knowledge about common lab tests and vital signs: LOINC and JLAC10 codes, the usual unit,
//! the adult reference interval (used to normalize values without private statistics) and the range of
//! values a human can have at all (outside it a value is an entry error, reported by the QA check).
//!
//! The rows are in `catalog.tsv` (its header names the sources: JCCLS common reference intervals 2019,
//! textbook adult intervals), embedded in the binary and parsed once. Reference intervals only set a
//! public scale, so sex- and lab-specific intervals are not needed (the union of the sexes is used);
//! analytes without one are normalized with DP quantiles by `data prepare`.

use std::collections::HashMap;
use std::sync::LazyLock;

pub const LOINC: &str = "http://loinc.org";
pub const JLAC10: &str = "urn:oid:1.2.392.200119.4.1005";
/// Other code systems the readers know; codes from any other system are reported as unknown.
pub const KNOWN_SYSTEMS: &[&str] = &[
    LOINC,
    JLAC10,
    "http://snomed.info/sct",
    "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "http://terminology.hl7.org/CodeSystem/observation-category",
    "urn:oid:1.2.392.200119.4.504", // JLAC11
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
    "medtrain:csv",
    "medtrain:meds",
];

/// One analyte of the catalogue (a row of `catalog.tsv`).
#[derive(Debug, Clone, Copy)]
pub struct Lab {
    pub name: &'static str,
    pub loinc: &'static str,
    pub jlac10: Option<&'static str>,
    /// the catalogue unit (valid UCUM); values in commensurable units are converted to it on reading
    pub unit: &'static str,
    /// adult reference interval (low, high), where a public one is used; otherwise `data prepare`
    /// normalizes the channel with DP quantiles
    pub reference: Option<(f64, f64)>,
    /// values outside this are not physiologically possible
    pub plausible: (f64, f64),
    pub vital: bool,
    /// g/mol, for mol <-> g conversion
    pub molar_mass: Option<f64>,
    /// magnitude of the ionic charge, for eq <-> mol conversion (none: 1)
    pub charge: Option<f64>,
    /// where the reference interval comes from (`jccls2019`, `textbook`, `vital`, `none`)
    pub source: &'static str,
}

/// The catalogue's rows (`catalog.tsv`, embedded and parsed once).
pub const CATALOGUE_TSV: &str = include_str!("catalog.tsv");

/// A malformed row of the catalogue file: the line and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("catalog.tsv line {line}: {msg}")]
pub struct RowError {
    pub line: usize,
    pub msg: String,
}

/// Parses the catalogue text (the header row and `#` comments skipped).
pub fn parse(text: &'static str) -> Result<Vec<Lab>, RowError> {
    let mut labs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with('#') || line.trim().is_empty() || line.starts_with("name\t") {
            continue;
        }
        let err = |msg: String| RowError { line: line_no, msg };
        let f: Vec<&'static str> = line.split('\t').collect();
        if f.len() != 12 {
            return Err(err(format!("{} columns, expected 12", f.len())));
        }
        let opt = |s: &'static str| (s != "-").then_some(s);
        let num = |col: &str, s: &str| s.parse::<f64>().map_err(|_| err(format!("{col} is not a number")));
        let opt_num = |col: &str, s: &'static str| opt(s).map(|s| num(col, s)).transpose();
        let reference = match (opt_num("ref_low", f[6])?, opt_num("ref_high", f[7])?) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            (None, None) => None,
            _ => return Err(err("ref_low and ref_high: both or neither".into())),
        };
        let vital = match f[10] {
            "lab" => false,
            "vital" => true,
            _ => return Err(err("kind must be lab or vital".into())),
        };
        labs.push(Lab {
            name: f[0],
            loinc: f[1],
            jlac10: opt(f[2]),
            unit: f[3],
            molar_mass: opt_num("molar_mass", f[4])?,
            charge: opt_num("charge", f[5])?,
            reference,
            plausible: (num("plausible_low", f[8])?, num("plausible_high", f[9])?),
            vital,
            source: f[11],
        });
    }
    Ok(labs)
}

struct Catalogue {
    labs: Vec<Lab>,
    /// LOINC code, JLAC10 code and name -> row
    by_loinc: HashMap<&'static str, usize>,
    by_jlac10: HashMap<&'static str, usize>,
    by_name: HashMap<&'static str, usize>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // the embedded file is checked row by row by the tests; an error here is a bug of the build
    let labs = parse(CATALOGUE_TSV).unwrap_or_else(|e| panic!("the embedded catalogue is malformed: {e}"));
    let index = |key: fn(&Lab) -> Option<&'static str>| {
        labs.iter().enumerate().filter_map(|(i, l)| key(l).map(|k| (k, i))).collect::<HashMap<_, _>>()
    };
    Catalogue {
        by_loinc: index(|l| Some(l.loinc)),
        by_jlac10: index(|l| l.jlac10),
        by_name: index(|l| Some(l.name)),
        labs,
    }
});

/// Every analyte of the catalogue, in file order.
pub struct Labs;

impl std::ops::Deref for Labs {
    type Target = [Lab];
    fn deref(&self) -> &[Lab] {
        &CATALOGUE.labs
    }
}

pub static LABS: Labs = Labs;

/// The catalogue row of a (system, code), if any.
pub fn lookup_index(system: &str, code: &str) -> Option<usize> {
    match system {
        LOINC => CATALOGUE.by_loinc.get(code).copied(),
        JLAC10 => CATALOGUE.by_jlac10.get(code).copied(),
        _ => None,
    }
}

/// The catalogue entry of a (system, code), if any.
pub fn lookup(system: &str, code: &str) -> Option<&'static Lab> {
    lookup_index(system, code).map(|i| &CATALOGUE.labs[i])
}

/// The catalogue entry of a test name (`creatinine`), of a LOINC code, or of a JLAC10 code.
pub fn by_name_or_code(s: &str) -> Option<&'static Lab> {
    let c = &*CATALOGUE;
    c.by_name.get(s).or_else(|| c.by_loinc.get(s)).or_else(|| c.by_jlac10.get(s)).map(|&i| &c.labs[i])
}

/// The row index of a catalogue entry.
pub fn index_of(lab: &Lab) -> usize {
    CATALOGUE.by_loinc[lab.loinc]
}

/// True when a LOINC code is well formed: digits, a hyphen, and the mod-10 check digit (LOINC's
/// "Luhn" algorithm: from the right, every other digit of the code part doubled, the digits summed, the
/// check digit brings the sum to a multiple of 10).
pub fn loinc_is_valid(code: &str) -> bool {
    let Some((num, check)) = code.split_once('-') else { return false };
    if num.is_empty()
        || num.len() > 7
        || check.len() != 1
        || !num.bytes().chain(check.bytes()).all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let sum: u32 = num
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 0 {
                let d2 = d * 2;
                d2 / 10 + d2 % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10 == (check.as_bytes()[0] - b'0') as u32
}

/// True when a JLAC10 code is well formed: 17 characters, analyte (5: a digit 1-9, a letter, three
/// digits), identification (4 digits), material (3 digits), method (3 digits), result (2 digits).
pub fn jlac10_is_valid(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 17 && (b'1'..=b'9').contains(&b[0]) && b[1].is_ascii_uppercase() && b[2..].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loinc_check_digit_accepts_known_codes_and_refuses_a_typo() {
        for c in ["2160-0", "718-7", "59408-5", "33914-3", "89579-7"] {
            assert!(loinc_is_valid(c), "{c}");
        }
        for c in ["2160-1", "2161-0", "2160", "-0", "21a0-0", "2160-00"] {
            assert!(!loinc_is_valid(c), "{c}");
        }
    }

    #[test]
    fn every_catalogue_row_is_well_formed() {
        let labs = parse(CATALOGUE_TSV).expect("catalogue parses");
        assert!(labs.iter().filter(|l| !l.vital).count() >= 100, "at least 100 lab analytes");
        let mut seen = std::collections::HashSet::new();
        for l in &labs {
            assert!(loinc_is_valid(l.loinc), "{}: LOINC {}", l.name, l.loinc);
            assert!(seen.insert(l.loinc), "duplicate LOINC {}", l.loinc);
            assert!(seen.insert(l.name), "duplicate name {}", l.name);
            if let Some(j) = l.jlac10 {
                assert!(jlac10_is_valid(j), "{}: JLAC10 {j}", l.name);
                assert!(seen.insert(j), "duplicate JLAC10 {j}");
            }
            assert!(
                super::super::units::is_valid(l.unit) && super::super::units::ucum_form(l.unit) == Some(l.unit),
                "{}: unit {} is not UCUM",
                l.name,
                l.unit
            );
            assert!(l.plausible.0 < l.plausible.1, "{}", l.name);
            if let Some((lo, hi)) = l.reference {
                assert!(
                    lo < hi && l.plausible.0 <= lo && hi <= l.plausible.1,
                    "{}: reference outside plausible",
                    l.name
                );
                assert!(["jccls2019", "textbook", "vital"].contains(&l.source), "{}: source {}", l.name, l.source);
            } else {
                assert_eq!(l.source, "none", "{}", l.name);
            }
            assert!(l.molar_mass.is_none_or(|m| m > 1.0 && m < 1e6), "{}", l.name);
            assert!(l.charge.is_none_or(|c| c == 1.0 || c == 2.0 || c == 3.0), "{}", l.name);
            assert_eq!(lookup(LOINC, l.loinc).map(|x| x.name), Some(l.name));
            if let Some(j) = l.jlac10 {
                assert_eq!(lookup(JLAC10, j).map(|x| x.name), Some(l.name));
            }
        }
    }
}
