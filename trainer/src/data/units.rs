//! Units of measure: UCUM validation and conversion to the catalogue unit of a test.
//!
//! UCUM comes from the `ucum-units` crate. Chosen over `octofhir-ucum` because it ships the official UCUM
//! functional tests (`UcumFunctionalTests.xml`) with its conformance test and passes all of them offline
//! (529 validation, 30 conversion, 9 display-name and 5 multiplication/division cases, none skipped), its
//! parser is total (no panic or hang on any input, fuzzed upstream), and it has one runtime dependency
//! (`thiserror`); `octofhir-ucum` states the same conformance but does not ship its tests and brings in
//! `rust_decimal`, `hashbrown` and `libm`.
//!
//! What this module adds to UCUM:
//! - a closed table of spellings common in exports that are not UCUM (`mEq/L`, `IU/L`, `10^3/uL`,
//!   `mmHg`, `mg/dl`, `μg/mL`), read as the UCUM unit they mean;
//! - mol <-> g with the analyte's molar mass from the catalogue (UCUM counts moles as a number, so
//!   `mmol/L` and `mg/dL` differ by exactly one mass dimension), and eq <-> mol with its ionic charge;
//! - a [`Converter`] that parses each distinct (unit, catalogue test) pair once: conversion sits on the
//!   ingest hot path, so an event costs one hash lookup and one multiply-add.

use super::catalog::Lab;
use std::collections::HashMap;

/// UCUM's Avogadro number (`mol` = 6.0221367e23 in ucum-essence.xml), the one the crate's factors use.
const AVOGADRO: f64 = 6.0221367e23;
/// LOINC 4548-4, Hemoglobin A1c/Hemoglobin.total in Blood (NGSP %).
const HBA1C_NGSP: &str = "4548-4";
/// Index of the mass dimension in `ucum::Dimension` (m, s, g, rad, K, C, cd).
const MASS: usize = 2;

/// Spellings that are not UCUM but mean one UCUM unit without doubt (a closed set).
const ALIASES: &[(&str, &str)] = &[
    ("mEq/L", "meq/L"),
    ("mEq/l", "meq/L"),
    ("IU/L", "[IU]/L"),
    ("IU/mL", "[IU]/mL"),
    ("mIU/L", "m[IU]/L"),
    ("mIU/mL", "m[IU]/mL"),
    ("uIU/mL", "u[IU]/mL"),
    ("μIU/mL", "u[IU]/mL"),
    ("µIU/mL", "u[IU]/mL"),
    ("10^3/uL", "10*3/uL"),
    ("10^4/uL", "10*4/uL"),
    ("10^6/uL", "10*6/uL"),
    ("x10^3/uL", "10*3/uL"),
    ("x10^4/uL", "10*4/uL"),
    ("x10^6/uL", "10*6/uL"),
    ("10^3/μL", "10*3/uL"),
    ("10^4/μL", "10*4/uL"),
    ("10^6/μL", "10*6/uL"),
    ("x10^3/μL", "10*3/uL"),
    ("x10^4/μL", "10*4/uL"),
    ("x10^6/μL", "10*6/uL"),
    ("10^2/μL", "10*2/uL"),
    ("x10^2/μL", "10*2/uL"),
    // Japanese laboratory systems' counts: thousands (千), ten thousands (万) per μL
    ("千/μL", "10*3/uL"),
    ("万/μL", "10*4/uL"),
    ("x10^3/mm3", "10*3/mm3"),
    // MIMIC-IV's and US laboratory systems' counts: K (thousands) and m or M (millions) per uL, which
    // UCUM would read as kelvin or metre per microliter
    ("K/uL", "10*3/uL"),
    ("K/μL", "10*3/uL"),
    ("K/mcL", "10*3/uL"),
    ("k/uL", "10*3/uL"),
    ("m/uL", "10*6/uL"),
    ("M/uL", "10*6/uL"),
    ("M/μL", "10*6/uL"),
    ("M/mcL", "10*6/uL"),
    ("x10E3/uL", "10*3/uL"),
    ("x10E6/uL", "10*6/uL"),
    ("10E3/uL", "10*3/uL"),
    ("10E6/uL", "10*6/uL"),
    ("thou/uL", "10*3/uL"),
    ("THOU/uL", "10*3/uL"),
    ("mill/uL", "10*6/uL"),
    ("MILL/uL", "10*6/uL"),
    ("#/uL", "/uL"),
    ("/mcL", "/uL"),
    ("10^9/L", "10*9/L"),
    ("10^12/L", "10*12/L"),
    ("mmHg", "mm[Hg]"),
    ("degC", "Cel"),
    ("℃", "Cel"),
    ("bpm", "/min"),
    ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
    ("mL/min/1.73 m2", "mL/min/{1.73_m2}"),
    ("INR", "{INR}"),
    ("mg/dl", "mg/dL"),
    ("g/dl", "g/dL"),
    ("ug/dl", "ug/dL"),
    ("μg/dL", "ug/dL"),
    ("µg/dL", "ug/dL"),
    ("μg/mL", "ug/mL"),
    ("µg/mL", "ug/mL"),
    ("μmol/L", "umol/L"),
    ("µmol/L", "umol/L"),
    ("μU/mL", "uU/mL"),
    ("µU/mL", "uU/mL"),
    ("mmol/l", "mmol/L"),
    ("umol/l", "umol/L"),
    ("mg/l", "mg/L"),
    ("g/l", "g/L"),
    ("ng/ml", "ng/mL"),
    ("pg/ml", "pg/mL"),
    ("u/l", "U/L"),
    ("IU/l", "[IU]/L"),
    ("fl", "fL"),
    ("mm/hr", "mm/h"),
    ("sec", "s"),
    ("mg/100mL", "mg/dL"),
    ("g/100mL", "g/dL"),
    // Japanese laboratory systems' spellings (found by a tester: every prothrombin time in 秒 was lost)
    ("秒", "s"),
    ("分", "min"),
    ("万/uL", "10*4/uL"),
    ("万/ul", "10*4/uL"),
    ("万/mm3", "10*4/mm3"),
    ("百/μL", "10*2/uL"),
    ("百/uL", "10*2/uL"),
    ("個/μL", "/uL"),
    ("個/uL", "/uL"),
    ("10^4/mm3", "10*4/mm3"),
    ("x10^4/mm3", "10*4/mm3"),
    ("%(NGSP)", "%"),
    ("NGSP%", "%"),
    ("%NGSP", "%"),
    ("mL/min/1.73m^2", "mL/min/{1.73_m2}"),
    ("mL/分/1.73㎡", "mL/min/{1.73_m2}"),
    ("mL/分/1.73m2", "mL/min/{1.73_m2}"),
    ("mL/min/1.73㎡", "mL/min/{1.73_m2}"),
];

/// Lab units as written in upper case (UCUM's case-insensitive forms, mainframe and HL7 v2 exports:
/// `MG/DL`, `MMOL/L`): a unit that is no UCUM or alias as written is read as the one of these (or of
/// [`ALIASES`]) it equals without case (found by a tester: `MG/DL` was an unknown unit).
const CASE_FREE: &[&str] = &[
    "mg/dL", "g/dL", "ug/dL", "ng/dL", "mg/L", "g/L", "ug/L", "ng/L", "mmol/L", "umol/L", "nmol/L", "pmol/L", "mol/L",
    "meq/L", "U/L", "U/mL", "mU/L", "mU/mL", "uU/mL", "ng/mL", "pg/mL", "ug/mL", "mg/mL", "fL", "pg", "%", "mm/h",
    "mL/min", "s", "min", "h", "kg", "g", "cm", "m", "mmol/mol", "mosm/kg", "10*3/uL", "10*4/uL", "10*6/uL", "10*9/L",
    "10*12/L", "/uL", "mm[Hg]", "Cel", "/min", "mg/g", "g/g",
];

/// Annotations (`{...}`) that may appear in a report: UCUM lets an annotation hold any text, so a valid
/// unit can still carry data; only these are printed.
const REPORTABLE_ANNOTATIONS: &[&str] = &[
    "INR", "1.73_m2", "ratio", "cells", "titer", "FEU", "DDU", "creat", "Creat", "score", "beats", "breaths", "rbc",
    "RBC", "WBC", "HPF", "LPF", "SG", "index", "copies", "IgG", "IgM", "IgA", "total",
];

/// The UCUM unit a spelling stands for: itself when it is valid UCUM, its alias, or none. Full-width
/// forms (`ｍｇ／ｄＬ`, as Japanese systems write units), the micro sign `µ` and `×` are read as the
/// ASCII forms, the Greek `μ` and `x` first.
pub fn ucum_form(unit: &str) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let unit = unit.trim();
    let unit: Cow<str> = if unit.is_ascii() {
        Cow::Borrowed(unit)
    } else {
        // (superscript exponents as `^` and digits: `×10⁴/μL` is `x10^4/μL`)
        let mut out = String::with_capacity(unit.len());
        let mut sup = false;
        for c in unit.chars() {
            let digit = match c {
                '⁰' => Some('0'),
                '¹' => Some('1'),
                '²' => Some('2'),
                '³' => Some('3'),
                '⁴'..='⁹' => char::from_u32(c as u32 - '⁴' as u32 + '4' as u32),
                _ => None,
            };
            if let Some(d) = digit {
                if !sup {
                    out.push('^');
                }
                out.push(d);
                sup = true;
                continue;
            }
            sup = false;
            out.push(match c {
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                '\u{3000}' => ' ',
                '\u{B5}' => '\u{3BC}',
                '\u{D7}' => 'x',
                c => c,
            });
        }
        Cow::Owned(out)
    };
    if let Some((_, u)) = ALIASES.iter().find(|(a, _)| *a == unit) {
        return Some(Cow::Borrowed(u));
    }
    // written all in capitals (`MG/L`, `PG/ML`, `MU/L`): read without case before UCUM, in which many of
    // them are other units (`G` gauss, `M` mega, `P` peta; found by review)
    let capitals = unit.bytes().any(|b| b.is_ascii_uppercase()) && !unit.bytes().any(|b| b.is_ascii_lowercase());
    if capitals {
        if let Some(u) = case_free(&unit) {
            return Some(u);
        }
    }
    // μ for UCUM's `u` in any unit (`μg/L`, `μkat/L`)
    let unit = if unit.contains('\u{3BC}') { Cow::Owned(unit.replace('\u{3BC}', "u")) } else { unit };
    if !unit.is_empty() && unit.len() <= 64 && ucum::validate(&unit).is_ok() {
        return Some(unit);
    }
    // written in another case: `Mmol/l` (one in capitals was looked up above)
    if capitals {
        return None;
    }
    case_free(&unit)
}

/// The lab unit of [`CASE_FREE`] or [`ALIASES`] that `unit` is without case.
fn case_free(unit: &str) -> Option<std::borrow::Cow<'static, str>> {
    use std::borrow::Cow;
    if let Some(u) = CASE_FREE.iter().find(|u| u.eq_ignore_ascii_case(unit)) {
        return Some(Cow::Borrowed(u));
    }
    ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(unit)).map(|(_, u)| Cow::Borrowed(*u))
}

/// True when a unit is valid UCUM (or a known spelling of a valid UCUM unit).
pub fn is_valid(unit: &str) -> bool {
    ucum_form(unit).is_some()
}

/// True when a valid unit can be printed: every annotation in it comes from a closed list, and every
/// number in it is one of UCUM's closed forms ([`closed_numbers`]).
pub fn is_reportable(unit: &str) -> bool {
    if !is_valid(unit) || !closed_numbers(unit) {
        return false;
    }
    let mut rest = unit;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { return false };
        if !REPORTABLE_ANNOTATIONS.contains(&&rest[i + 1..i + j]) {
            return false;
        }
        rest = &rest[i + j + 1..];
    }
    true
}

/// Whether every number outside annotations is one a unit needs, not one that could carry a value
/// from the data: a power of ten (`10*3`, `10^-6`: the base 10 and an exponent of at most two
/// digits), a one-digit exponent of a unit symbol (`m2`, `cm-1`, `[in_i]3`), `24` of `24.h`, or the
/// unit `1`. A valid UCUM unit can hold any number (`10*88431`, `mg/(88431.dL)`), and a unit field is
/// free text of the export: such a unit is counted, never printed.
fn closed_numbers(unit: &str) -> bool {
    if unit == "1" {
        return true;
    }
    let b = unit.as_bytes();
    let mut depth = 0u32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            c if c.is_ascii_digit() && depth == 0 => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let run = &unit[start..i];
                let next = b.get(i).copied();
                let signed = start > 0 && matches!(b[start - 1], b'-' | b'+');
                let before = &unit[..if signed { start - 1 } else { start }];
                let ok = (run == "10" && matches!(next, Some(b'*' | b'^')))
                    || ((before.ends_with("10*") || before.ends_with("10^")) && run.len() <= 2)
                    || (run.len() == 1 && before.ends_with(|c: char| c.is_ascii_alphabetic() || c == ']'))
                    || (run == "24" && !signed && unit[i..].starts_with(".h"));
                if !ok {
                    return false;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// How a value in one unit becomes a value in the catalogue unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conversion {
    /// the catalogue unit already
    Identity,
    /// `value * scale + offset` (an affine UCUM conversion, with the molar mass or charge folded in)
    Affine { scale: f64, offset: f64 },
    /// not convertible, and why (a closed set of reasons)
    Not(&'static str),
}

impl Conversion {
    pub fn apply(self, value: f32) -> Option<f32> {
        match self {
            Conversion::Identity => Some(value),
            Conversion::Affine { scale, offset } => Some((value as f64 * scale + offset) as f32),
            Conversion::Not(_) => None,
        }
    }
}

/// Mentions the equivalent (`eq`, `meq`, `ueq`): UCUM defines `eq` as `mol`, which holds for a charge
/// of one only.
fn is_eq_based(ucum_unit: &str) -> bool {
    ucum_unit.contains("eq")
}

/// `[IU]` is an arbitrary unit: UCUM converts it only to itself, under another prefix or per another
/// volume (`m[IU]/L` to `u[IU]/mL`). The crate refuses arbitrary units in conversions altogether, so both
/// sides are read with a proper unit standing in for `[IU]` (candela, which no lab unit uses).
fn stand_in_for_iu(from: &str, to: &str) -> Option<(String, String)> {
    let (f, t) = (from.matches("[IU]").count(), to.matches("[IU]").count());
    (f > 0 && f == t && !from.contains("cd") && !to.contains("cd"))
        .then(|| (from.replace("[IU]", "cd"), to.replace("[IU]", "cd")))
}

/// Laboratories use "U" and "IU" for each other: hormone assays (insulin, TSH) report "μU/mL" or
/// "mU/L" meaning international units (UCUM: `u[IU]/mL`, `m[IU]/L`), and enzyme activities are often
/// reported in "IU/L", the international enzyme unit, which is UCUM's `U`. So where the catalogue unit
/// counts international units and the reported one enzyme units (one `U`, no `[IU]`), the `U` is read
/// as `[IU]`; where the catalogue unit is an enzyme unit (`U`, no `[IU]`) and the reported one counts
/// `[IU]`, the `[IU]` is read as `U`.
fn hormone_units_as_iu(from: &str, to: &str) -> String {
    let (to_iu, to_u) = (to.contains("[IU]"), to.replace("[IU]", "").contains('U'));
    if to_iu && !from.contains("[IU]") && from.matches('U').count() == 1 {
        from.replacen('U', "[IU]", 1)
    } else if !to_iu && to_u && from.matches("[IU]").count() == 1 && !from.replace("[IU]", "").contains('U') {
        from.replacen("[IU]", "U", 1)
    } else {
        from.to_owned()
    }
}

/// The affine map `from -> to` that UCUM gives, if the conversion is affine (not logarithmic).
fn affine(from: &str, to: &str) -> Option<(f64, f64)> {
    let c = |v: f64| ucum::convert(v, from, to).ok().filter(|x| x.is_finite());
    let (c0, c1, c2) = (c(0.0)?, c(1.0)?, c(2.0)?);
    let scale = c1 - c0;
    ((c2 - (c0 + 2.0 * scale)).abs() <= 1e-9 * c2.abs().max(1.0) && scale != 0.0).then_some((scale, c0))
}

/// The conversion from `unit` to the catalogue unit of `lab`. Parses both units (not for the hot path:
/// see [`Converter`]).
pub fn conversion(unit: &str, lab: &Lab) -> Conversion {
    if unit == lab.unit {
        return Conversion::Identity;
    }
    let Some(from) = ucum_form(unit) else { return Conversion::Not("unit is not valid UCUM") };
    let from = &*from;
    let to = lab.unit;
    if from == to {
        return Conversion::Identity;
    }
    if lab.loinc == HBA1C_NGSP && to == "%" {
        // IFCC (mmol/mol) and NGSP (%) HbA1c are related by the IFCC-NGSP master equation, not by a unit
        // factor: NGSP = 0.09148 IFCC + 2.152 (Hoelzel et al., Clin Chem 2004). UCUM alone would give 4.8 %
        // for 48 mmol/mol instead of 6.5 %.
        return if from == "mmol/mol" {
            Conversion::Affine { scale: 0.09148, offset: 2.152 }
        } else {
            Conversion::Not("HbA1c in another unit than % or IFCC mmol/mol")
        };
    }
    let from = hormone_units_as_iu(from, to);
    let (from, to) = match stand_in_for_iu(&from, to) {
        Some((f, t)) => (f, t),
        None => (from.to_owned(), to.to_owned()),
    };
    let (Ok(a), Ok(b)) = (ucum::analyze(&from), ucum::analyze(&to)) else {
        return Conversion::Not("arbitrary unit of another kind");
    };
    // equivalents of a test with no charge in the catalogue are its moles (total CO2, lactate, base
    // excess: mEq/L is mmol/L), but not its mass: creatinine in mEq/L is a mistake, not a unit to
    // convert to mg/dL
    if lab.charge.is_none() && is_eq_based(&from) != is_eq_based(&to) && !to.contains("mol") {
        return Conversion::Not("equivalents of a test that is no ion");
    }
    // eq <-> mol: divide equivalents by the charge
    let charge = lab.charge.unwrap_or(1.0);
    let eq_factor = match (is_eq_based(&from), is_eq_based(&to)) {
        (true, false) => 1.0 / charge,
        (false, true) => charge,
        _ => 1.0,
    };
    if a.dimension == b.dimension {
        return match affine(&from, &to) {
            Some((scale, offset)) => Conversion::Affine { scale: scale * eq_factor, offset },
            None if a.is_special || b.is_special => Conversion::Not("special unit (logarithmic or arbitrary)"),
            None => Conversion::Not("units are not commensurable"),
        };
    }
    if a.is_special || b.is_special || a.offset != 0.0 || b.offset != 0.0 {
        return Conversion::Not("units are not commensurable");
    }
    // amount of substance <-> mass: UCUM counts moles as a number, so the dimensions differ by one mass
    let (da, db) = (a.dimension.0, b.dimension.0);
    let mut plus_mass = da;
    plus_mass[MASS] = plus_mass[MASS].saturating_add(1);
    let mut minus_mass = da;
    minus_mass[MASS] = minus_mass[MASS].saturating_sub(1);
    if plus_mass != db && minus_mass != db {
        return Conversion::Not("units are not commensurable");
    }
    let Some(molar_mass) = lab.molar_mass else {
        return Conversion::Not("mass and amount of substance, and the analyte has no molar mass");
    };
    let scale = if plus_mass == db {
        // a number of entities (moles * N_A) per something -> a mass per the same
        a.factor / AVOGADRO * molar_mass / b.factor
    } else {
        a.factor / molar_mass * AVOGADRO / b.factor
    };
    if !scale.is_finite() || scale == 0.0 {
        return Conversion::Not("units are not commensurable");
    }
    Conversion::Affine { scale: scale * eq_factor, offset: 0.0 }
}

/// Conversions cached per (unit, catalogue test), with how many values each converted: each distinct
/// pair is parsed once.
#[derive(Debug, Default)]
pub struct Converter {
    cache: HashMap<(u32, usize), (Conversion, u64)>,
}

impl Converter {
    /// Converts `value` in unit `unit` (its interned id and text) to `lab`'s unit (catalogue index
    /// `lab_index`): `Some(value)` in the catalogue unit, or `None` when the unit cannot be converted.
    pub fn convert(&mut self, unit_id: u32, unit: &str, lab_index: usize, lab: &Lab, value: f32) -> Option<f32> {
        let entry = self.cache.entry((unit_id, lab_index)).or_insert_with(|| (conversion(unit, lab), 0));
        entry.1 += 1;
        entry.0.apply(value)
    }

    /// (unit id, catalogue index, conversion, values) of every pair seen, in a stable order.
    pub fn outcomes(&self) -> Vec<(u32, usize, Conversion, u64)> {
        let mut v: Vec<_> = self.cache.iter().map(|(&(u, l), &(c, n))| (u, l, c, n)).collect();
        v.sort_by_key(|&(u, l, _, _)| (l, u));
        v
    }
}
