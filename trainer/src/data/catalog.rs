//! Public knowledge about common lab tests and vital signs: LOINC and JLAC10 codes, the usual unit,
//! the adult reference interval (used to normalize values without private statistics) and the range of
//! values a human can have at all (outside it a value is an entry error, reported by the QA check).
//!
//! Reference intervals are the usual textbook adult intervals (JCCLS shared ranges where one exists);
//! they only set a public scale, so sex- and lab-specific intervals are not needed.

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

#[derive(Debug, Clone, Copy)]
pub struct Lab {
    pub name: &'static str,
    pub loinc: &'static str,
    pub jlac10: Option<&'static str>,
    pub unit: &'static str,
    /// adult reference interval (low, high)
    pub reference: (f64, f64),
    /// values outside this are not physiologically possible
    pub plausible: (f64, f64),
    pub vital: bool,
}

const fn lab(
    name: &'static str,
    loinc: &'static str,
    jlac10: &'static str,
    unit: &'static str,
    reference: (f64, f64),
    plausible: (f64, f64),
) -> Lab {
    Lab { name, loinc, jlac10: Some(jlac10), unit, reference, plausible, vital: false }
}

const fn vital(
    name: &'static str,
    loinc: &'static str,
    unit: &'static str,
    reference: (f64, f64),
    plausible: (f64, f64),
) -> Lab {
    Lab { name, loinc, jlac10: None, unit, reference, plausible, vital: true }
}

pub const LABS: &[Lab] = &[
    lab("creatinine", "2160-0", "3C015000002327101", "mg/dL", (0.46, 1.07), (0.05, 40.0)),
    lab("urea_nitrogen", "3094-0", "3C025000002327101", "mg/dL", (8.0, 20.0), (0.5, 300.0)),
    lab("sodium", "2951-2", "3H010000002327101", "mmol/L", (138.0, 145.0), (90.0, 200.0)),
    lab("potassium", "2823-3", "3H015000002327101", "mmol/L", (3.6, 4.8), (1.0, 12.0)),
    lab("chloride", "2075-0", "3H020000002327101", "mmol/L", (101.0, 108.0), (50.0, 160.0)),
    lab("glucose", "2345-7", "3D010000001926101", "mg/dL", (73.0, 109.0), (5.0, 3000.0)),
    lab("hba1c", "4548-4", "3D046000001906202", "%", (4.9, 6.0), (2.0, 25.0)),
    lab("albumin", "1751-7", "3A015000002327101", "g/dL", (4.1, 5.1), (0.5, 8.0)),
    lab("ast", "1920-8", "3B035000002327201", "U/L", (13.0, 30.0), (1.0, 50_000.0)),
    lab("alt", "1742-6", "3B045000002327201", "U/L", (7.0, 30.0), (1.0, 50_000.0)),
    lab("crp", "1988-5", "5C070000002306001", "mg/dL", (0.0, 0.14), (0.0, 80.0)),
    lab("wbc", "6690-2", "2A990000001930101", "10*3/uL", (3.3, 8.6), (0.01, 500.0)),
    lab("hemoglobin", "718-7", "2A030000001930101", "g/dL", (11.6, 16.8), (1.0, 26.0)),
    lab("platelets", "777-3", "2A050000001930101", "10*3/uL", (158.0, 348.0), (1.0, 3000.0)),
    lab("lactate", "2524-7", "3D070000002327101", "mmol/L", (0.5, 2.2), (0.1, 35.0)),
    vital("heart_rate", "8867-4", "/min", (60.0, 100.0), (10.0, 300.0)),
    vital("systolic_bp", "8480-6", "mm[Hg]", (90.0, 130.0), (30.0, 300.0)),
    vital("body_temperature", "8310-5", "Cel", (36.0, 37.2), (25.0, 45.0)),
    vital("oxygen_saturation", "59408-5", "%", (95.0, 100.0), (30.0, 100.0)),
];

/// Units the readers accept without a report (UCUM and the spellings common in Japanese exports).
pub const KNOWN_UNITS: &[&str] = &[
    "mg/dL",
    "g/dL",
    "mmol/L",
    "mEq/L",
    "U/L",
    "IU/L",
    "%",
    "10*3/uL",
    "10*4/uL",
    "10*6/uL",
    "10^3/uL",
    "10^4/uL",
    "x10^3/uL",
    "/uL",
    "mg/L",
    "ug/dL",
    "ng/mL",
    "pg/mL",
    "fL",
    "pg",
    "mL/min/1.73m2",
    "mL/min/{1.73_m2}",
    "mm[Hg]",
    "mmHg",
    "/min",
    "Cel",
    "degC",
    "kg",
    "cm",
    "g/L",
    "umol/L",
    "mU/L",
    "uU/mL",
    "s",
    "{ratio}",
    "1",
    "mm/h",
];

/// The catalogue entry of a (system, code), if any.
pub fn lookup(system: &str, code: &str) -> Option<&'static Lab> {
    LABS.iter().find(|l| (system == LOINC && l.loinc == code) || (system == JLAC10 && l.jlac10 == Some(code)))
}

/// The catalogue entry of a test name (`creatinine`), of a LOINC code, or of a JLAC10 code.
pub fn by_name_or_code(s: &str) -> Option<&'static Lab> {
    LABS.iter().find(|l| l.name == s || l.loinc == s || l.jlac10 == Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for l in LABS {
            assert!(
                l.reference.0 <= l.reference.1 && l.plausible.0 <= l.reference.0 && l.reference.1 <= l.plausible.1,
                "{}",
                l.name
            );
            assert!(KNOWN_UNITS.contains(&l.unit), "{}", l.unit);
            assert_eq!(lookup(LOINC, l.loinc).unwrap().name, l.name);
            if let Some(j) = l.jlac10 {
                assert_eq!(j.len(), 17);
                assert_eq!(lookup(JLAC10, j).unwrap().name, l.name);
            }
        }
    }
}
