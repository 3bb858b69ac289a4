//! Public knowledge about common lab tests and vital signs: LOINC and JLAC10 codes, the usual unit,
//! the adult reference interval (used to normalize values without private statistics) and the range of
//! values a human can have at all (outside it a value is an entry error, reported by the QA check).
//!
//! The rows are in `catalog.tsv` (its header names the sources: JCCLS common reference intervals 2019,
//! textbook adult intervals, the public JLAC10 tables), embedded in the binary and parsed once. Reference
//! intervals only set a public scale, so sex- and lab-specific intervals are not needed (the union of the
//! sexes is used); analytes without one are normalized with DP quantiles by `data prepare`.
//!
//! A row holds one typical JLAC10 code, but hospitals code the same quantity with their own material and
//! method parts: a JLAC10 code that is not in the catalogue matches a row by its analyte, identification
//! and result parts and a compatible material ([`lookup_index`]).

use std::collections::HashMap;
use std::sync::LazyLock;

pub const LOINC: &str = "http://loinc.org";
/// JLAC10 (MEDIS' 17-digit laboratory codes) as JP Core and JP-CLINS name it (`JP_ObservationLabResultCode_CS`,
/// whose canonical URL this is): the system the readers write and print.
pub const JLAC10: &str = "urn:oid:1.2.392.200119.4.504";
/// Every name JLAC10 goes by in exports: JP Core's OID, MEDIS' URL, the JP Core code system's URL, and
/// `urn:oid:1.2.392.200119.4.1005`, which medtrain's demo exports used before (no registry has it).
/// A code under any of them is the same JLAC10 code ([`lookup`]).
pub const JLAC10_SYSTEMS: &[&str] = &[
    JLAC10,
    "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
    "urn:oid:1.2.392.200119.4.1005",
    // JP-CLINS' core lab items (臨床検査項目基本コードセット): 17-character JLAC10 codes (found by a tester)
    "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_CoreLabo_CS",
];
/// Other code systems the readers know; codes from any other system are reported as unknown.
pub const KNOWN_SYSTEMS: &[&str] = &[
    LOINC,
    JLAC10,
    "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
    "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
    "urn:oid:1.2.392.200119.4.1005",
    "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_CoreLabo_CS",
    "http://snomed.info/sct",
    "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "http://terminology.hl7.org/CodeSystem/observation-category",
    "medtrain:csv",
    "medtrain:meds",
    // the readers' own code of a note without a type (CSV notes, a DocumentReference without type)
    "medtrain:note",
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
    /// JLAC10 analyte, identification and result parts -> the rows with that quantity, and their material
    by_quantity: HashMap<[u8; 11], Vec<(Material, usize)>>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // the embedded file is checked row by row by the tests; an error here is a bug of the build
    let labs = parse(CATALOGUE_TSV).unwrap_or_else(|e| panic!("the embedded catalogue is malformed: {e}"));
    let index = |key: fn(&Lab) -> Option<&'static str>| {
        labs.iter().enumerate().filter_map(|(i, l)| key(l).map(|k| (k, i))).collect::<HashMap<_, _>>()
    };
    let mut by_quantity: HashMap<[u8; 11], Vec<(Material, usize)>> = HashMap::new();
    for (i, l) in labs.iter().enumerate() {
        if let Some((key, material)) = l.jlac10.and_then(jlac10_quantity) {
            by_quantity.entry(key).or_default().push((material, i));
        }
    }
    Catalogue {
        by_loinc: index(|l| Some(l.loinc)),
        by_jlac10: index(|l| l.jlac10),
        by_name: index(|l| Some(l.name)),
        by_quantity,
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

/// The catalogue row of a (system, code), if any. A JLAC10 code that is not a row's own matches the row
/// of the same quantity ([`jlac10_quantity_match`]). Allocation-free, a hash lookup or two: readers may
/// call it per observation.
pub fn lookup_index(system: &str, code: &str) -> Option<usize> {
    match system {
        LOINC => CATALOGUE.by_loinc.get(code).copied(),
        s if JLAC10_SYSTEMS.contains(&s) => {
            CATALOGUE.by_jlac10.get(code).copied().or_else(|| jlac10_quantity_match(code))
        }
        _ => None,
    }
}

/// The catalogue entry of a (system, code), if any.
pub fn lookup(system: &str, code: &str) -> Option<&'static Lab> {
    lookup_index(system, code).map(|i| &CATALOGUE.labs[i])
}

/// A test's name as people write it (`Total Bilirubin`, `total-bilirubin`) in the catalogue's form:
/// lower case, words joined by `_` (`total_bilirubin`).
pub fn folded_name(name: &str) -> String {
    name.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The catalogue entry of a test name (`creatinine`), of a LOINC code, or of a JLAC10 code (a row's own
/// or one of the same quantity).
pub fn by_name_or_code(s: &str) -> Option<&'static Lab> {
    let c = &*CATALOGUE;
    c.by_name
        .get(s)
        .or_else(|| c.by_loinc.get(s))
        .copied()
        .or_else(|| lookup_index(JLAC10, s))
        // a JLAC10 code written as the readers read one (`3C015-0000-023-271-01`)
        .or_else(|| jlac10_canonical(s).and_then(|j| lookup_index(JLAC10, &j)))
        .map(|i| &c.labs[i])
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

/// A JLAC10 code written otherwise, in its 17-character form: grouped by hyphens or spaces
/// (`3C015-0000-023-271-01`, as MEDIS' tables print it), in lower case, or in full-width characters
/// (`３Ｃ０１５…`). `None` when the code is in that form already or is no JLAC10 code written otherwise.
pub fn jlac10_canonical(code: &str) -> Option<String> {
    // (a code in its form, the usual case, costs one check; a long string is no code)
    if jlac10_is_valid(code) || !(17..=96).contains(&code.len()) {
        return None;
    }
    // (on the stack: a CSV reader asks this of each row's local code of 17 characters or more)
    let (mut out, mut n) = ([0u8; 17], 0);
    for c in code.trim().chars() {
        // full-width ASCII (U+FF01..U+FF5E) as ASCII
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        };
        match c {
            // (the other dashes, dots and underscores systems group it with too)
            '-' | ' ' | '\u{3000}' | '‐' | '‑' | '‒' | '–' | '—' | '−' | 'ー' | '.' | '_' | '・' | '･' =>
                {}
            c if c.is_ascii_alphanumeric() && n < 17 => {
                out[n] = c.to_ascii_uppercase() as u8;
                n += 1;
            }
            _ => return None,
        }
    }
    let out = std::str::from_utf8(&out[..n]).ok()?;
    jlac10_is_valid(out).then(|| out.to_owned())
}

/// The kinds of JLAC10 material (材料コード, the code's characters 10-12) a quantity matches across. Any
/// other material (puncture fluids, CSF, cells, tissue, animal samples, ...) holds another quantity than
/// the catalogue's rows and matches only a row's own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Material {
    /// 001-011: urine (含むその他, 自然排尿, 新鮮尿, 蓄尿, 時間尿, 早朝尿, 負荷後尿, 分杯尿, catheter, filter
    /// paper, bladder puncture)
    Urine,
    /// 017 血液(含むその他), 018 全血, 019 全血(添加物入り), 021 毛細管血
    WholeBlood,
    /// 020 動脈血: a row coded arterial takes arterial blood only (a venous pO2 is another quantity)
    Arterial,
    /// 022 血漿, 023 血清
    SerumPlasma,
}

impl Material {
    fn of(material: &[u8]) -> Option<Material> {
        match material {
            b"001" | b"002" | b"003" | b"004" | b"005" | b"006" | b"007" | b"008" | b"009" | b"010" | b"011" => {
                Some(Material::Urine)
            }
            b"017" | b"018" | b"019" | b"021" => Some(Material::WholeBlood),
            b"020" => Some(Material::Arterial),
            b"022" | b"023" => Some(Material::SerumPlasma),
            _ => None,
        }
    }

    /// How well a value in material `self` fits a row of material `row`, nearest first: 0 the same kind,
    /// 1 arterial blood in a whole-blood row, 2 another kind of blood; `None` not at all (urine and blood
    /// never mix, and only arterial blood enters an arterial row).
    fn distance(self, row: Material) -> Option<u8> {
        use Material::*;
        match (self, row) {
            (a, b) if a == b => Some(0),
            (_, Arterial) | (Urine, _) | (_, Urine) => None,
            (Arterial, WholeBlood) => Some(1),
            _ => Some(2),
        }
    }
}

/// Analytes whose method sets the scale of the value, and the methods a row's quantity may be measured
/// with. ALP: the catalogue's interval is the IFCC one; values by the JSCC method are about three times
/// larger (MHLW 事務連絡 of 2020-03-17 on the ALP and LD change), so only the IFCC methods (275
/// 可視吸光光度法(IFCC対応法), 290 反射測光法(IFCC), as JP-CLINS names them) match. LD's values did not change.
const SCALE_SETTING_METHODS: &[(&[u8], &[&[u8]])] = &[(b"3B070", &[b"275", b"290"])];

/// The quantity of a JLAC10 code (its analyte, identification and result parts) and its kind of
/// material, or `None` when it is malformed or its material matches across no other code.
fn jlac10_quantity(code: &str) -> Option<([u8; 11], Material)> {
    if !jlac10_is_valid(code) {
        return None;
    }
    let b = code.as_bytes();
    let material = Material::of(&b[9..12])?;
    let mut key = [0u8; 11];
    key[..9].copy_from_slice(&b[..9]);
    key[9..].copy_from_slice(&b[15..17]);
    Some((key, material))
}

/// The row of a JLAC10 code that is not a row's own: the row with the same analyte (5), identification (4)
/// and result (2) parts, whatever the method (3), in the nearest compatible material: the same kind of
/// material first, then another kind of blood (serum, plasma and whole blood hold the same analyte); never
/// urine for blood, another material, or another result (`2A160...51` neutrophils % is not `...57`
/// lymphocytes %; `...28` per creatinine is not `...01` a concentration). Where two rows fit equally, none
/// is chosen. No allocation: the code is read in place and the candidates are a few rows.
fn jlac10_quantity_match(code: &str) -> Option<usize> {
    let (key, material) = jlac10_quantity(code)?;
    let b = code.as_bytes();
    if let Some((_, methods)) = SCALE_SETTING_METHODS.iter().find(|(analyte, _)| &b[..5] == *analyte) {
        if !methods.contains(&&b[12..15]) {
            return None;
        }
    }
    let candidates = CATALOGUE.by_quantity.get(&key)?;
    let mut best: Option<(u8, usize)> = None;
    let mut tied = false;
    for &(row_material, row) in candidates {
        let Some(d) = material.distance(row_material) else { continue };
        match best {
            Some((bd, _)) if d > bd => {}
            Some((bd, _)) if d == bd => tied = true,
            _ => {
                best = Some((d, row));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, row)| row)
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
                super::super::units::is_valid(l.unit)
                    && super::super::units::ucum_form(l.unit).as_deref() == Some(l.unit),
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

    fn row_of(code: &str) -> Option<&'static str> {
        lookup(JLAC10, code).map(|l| l.name)
    }

    #[test]
    fn every_jlac10_code_is_17_characters_of_the_alphabet_unique_and_of_a_matchable_material() {
        let mut codes = std::collections::HashSet::new();
        let mut quantities = std::collections::HashSet::new();
        let coded: Vec<_> = LABS.iter().filter_map(|l| l.jlac10.map(|j| (l, j))).collect();
        let labs_coded = coded.iter().filter(|(l, _)| !l.vital && loinc_is_valid(l.loinc)).count();
        assert!(labs_coded >= 100, "{labs_coded} lab rows with a LOINC and a JLAC10 code, expected at least 100");
        for (l, j) in coded {
            let b = j.as_bytes();
            assert_eq!(b.len(), 17, "{}: {j}", l.name);
            assert!((b'1'..=b'9').contains(&b[0]) && b[1].is_ascii_uppercase(), "{}: {j}", l.name);
            assert!(b[2..].iter().all(u8::is_ascii_digit), "{}: {j}", l.name);
            assert!(codes.insert(j), "duplicate JLAC10 {j}");
            assert!(!l.vital, "{}: JLAC10 codes are for labs", l.name);
            // blood or urine: a row's code is one the quantity match can reach
            let (quantity, material) = jlac10_quantity(j).unwrap_or_else(|| panic!("{}: material of {j}", l.name));
            // two rows of one quantity and one kind of material would tie: the match would choose neither
            assert!(quantities.insert((quantity, material)), "{}: a second row of the quantity of {j}", l.name);
        }
        for bad in
            ["3C01500000232710", "3C0150000023271011", "3c015000002327101", "0C015000002327101", "3C01500000232710X"]
        {
            assert!(!jlac10_is_valid(bad), "{bad}");
            assert_eq!(row_of(bad), None, "{bad}");
        }
        // written otherwise: its 17-character form
        for (written, canonical) in [
            ("3C015-0000-023-271-01", Some("3C015000002327101")),
            ("3c015000002327101", Some("3C015000002327101")),
            (" 3C015 0000 023 271 01 ", Some("3C015000002327101")),
            ("３Ｃ０１５－００００－０２３－２７１－０１", Some("3C015000002327101")),
            ("3C015000002327101", None),
            ("3C015-0000-023-271-011", None),
            ("3C015-0000-023-271", None),
            ("2160-0", None),
            ("3C015/0000/023/271/01", None),
            // other dashes, dots, underscores (found by review of what systems write)
            ("3C015\u{2011}0000\u{2011}023\u{2011}271\u{2011}01", Some("3C015000002327101")),
            ("3C015–0000–023–271–01", Some("3C015000002327101")),
            ("3C015.0000.023.271.01", Some("3C015000002327101")),
            ("3C015_0000_023_271_01", Some("3C015000002327101")),
        ] {
            assert_eq!(jlac10_canonical(written).as_deref(), canonical, "{written}");
        }
        // a channel and a code map's jlac10 may be written so too
        assert_eq!(by_name_or_code("3C015-0000-023-271-01").map(|l| l.name), Some("creatinine"));
    }

    #[test]
    fn jlac10_code_of_another_method_or_blood_material_matches_the_row_of_its_quantity() {
        // creatinine: reflectometry, plasma, whole blood (no whole-blood row: the serum one)
        assert_eq!(row_of("3C015000002329101"), Some("creatinine"));
        assert_eq!(row_of("3C015000002227101"), Some("creatinine"));
        assert_eq!(row_of("3C015000001926201"), Some("creatinine"));
        assert_eq!(row_of("3B035000002327801"), Some("ast"));
        assert_eq!(row_of("3H015000002327201"), Some("potassium"));
        assert_eq!(by_name_or_code("3C015000002329101").map(|l| l.name), Some("creatinine"));
        // glucose has a serum/plasma row and a whole-blood row: each material goes to its own kind
        assert_eq!(row_of("3D010000002227201"), Some("glucose")); // plasma, UV
        assert_eq!(row_of("3D010000001826201"), Some("glucose_blood")); // whole blood
        assert_eq!(row_of("3D010000002126201"), Some("glucose_blood")); // capillary
        assert_eq!(row_of("3D010000002027101"), Some("glucose_blood")); // arterial: whole blood first
        assert_eq!(row_of("3H010000001926101"), Some("sodium_blood")); // blood-gas analyser
        assert_eq!(row_of("3H010000002327101"), Some("sodium"));
    }

    #[test]
    fn jlac10_quantity_match_refuses_urine_for_serum_and_serum_for_urine() {
        // creatinine and albumin share their analyte codes between serum and urine
        assert_eq!(row_of("3C015000000127201"), Some("urine_creatinine"));
        assert_eq!(row_of("3C015000000427101"), Some("urine_creatinine")); // 蓄尿, a concentration
        assert_eq!(row_of("3C015000002329101"), Some("creatinine"));
        assert_eq!(row_of("3A015000000106101"), None); // urine albumin mg/L is not serum albumin
        assert_eq!(row_of("3A015000000106128"), Some("urine_albumin_creatinine"));
        assert_eq!(row_of("3A015000002306301"), Some("albumin"));
        // other materials hold other quantities: CSF, puncture fluid, deproteinized blood
        assert_eq!(row_of("3D010000004126201"), None);
        assert_eq!(row_of("3A015000004027101"), None);
        assert_eq!(row_of("3E010000003127101"), None);
    }

    #[test]
    fn jlac10_result_part_keeps_percentages_counts_and_rates_apart() {
        assert_eq!(row_of("2A160000001931057"), Some("lymphocytes_pct")); // another method, same result
        assert_eq!(row_of("2A160000001930951"), Some("neutrophils_pct"));
        assert_eq!(row_of("2A160000001930152"), None); // band neutrophils %
        assert_eq!(row_of("2A990000001930952"), None); // the blood-count panel's WBC is another code
        assert_eq!(row_of("2A990000001931056"), Some("mcv"));
        assert_eq!(row_of("2B030000002231153"), None); // PT activity %, not seconds (51) nor INR (57)
        assert_eq!(row_of("2B030000002232057"), Some("inr"));
        assert_eq!(row_of("3C015000000427126"), None); // creatinine per day, not a concentration
        assert_eq!(row_of("3D045000001906202"), None); // HbA1c (JDS) is another analyte than NGSP
    }

    #[test]
    fn jlac10_identification_part_is_kept() {
        assert_eq!(row_of("3D010129901926101"), None); // 随時血糖
        assert_eq!(row_of("3C015161002399949"), None); // the reason a creatinine was measured
    }

    #[test]
    fn jlac10_codes_of_the_nho_table_match_the_rows_of_their_analytes() {
        assert_eq!(row_of("3B110000002327101"), Some("cholinesterase"));
        assert_eq!(row_of("3C040000002227201"), Some("ammonia")); // plasma, another method
        assert_eq!(row_of("4G010000002302301"), Some("insulin")); // another method
        assert_eq!(row_of("3M530000002302401"), Some("vancomycin"));
        assert_eq!(row_of("3H045000002390201"), Some("osmolality"));
        assert_eq!(row_of("3H045000000190201"), None); // urine osmolality is not the serum row
        assert_eq!(row_of("5C090000000100101"), None); // urine myoglobin
        assert_eq!(row_of("3C015000002327101"), Some("creatinine")); // cystatin C (3C016) is its own analyte
        assert_eq!(row_of("3C016000002306201"), Some("cystatin_c"));
    }

    #[test]
    fn jlac10_arterial_rows_take_only_arterial_blood() {
        assert_eq!(row_of("3H080000002127051"), Some("ph_blood")); // capillary pH
        assert_eq!(row_of("3H080000002027151"), Some("ph_arterial")); // arterial pH, another method
        assert_eq!(row_of("3H080000001927054"), None); // HCO3 of whole blood: the row is arterial
        assert_eq!(row_of("3H080000002027054"), Some("bicarbonate_arterial"));
    }

    #[test]
    fn jlac10_alp_by_the_jscc_method_is_refused() {
        // JSCC-method ALP is about three times the IFCC value the row's interval is for
        assert_eq!(row_of("3B070000002327101"), None);
        assert_eq!(row_of("3B070000002327701"), None);
        assert_eq!(row_of("3B070000002329001"), Some("alp")); // reflectometry, IFCC
        assert_eq!(row_of("3B070000002227501"), Some("alp")); // plasma, IFCC
        assert_eq!(row_of("3B050000002327201"), Some("ld")); // LD's values did not change
    }
}
