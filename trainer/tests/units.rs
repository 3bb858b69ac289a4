//! Units of measure (UCUM validation and conversion to the catalogue unit), lab categories, coded and
//! ordinal results, the catalogue, and the DP choices of `channels = "auto"`, on real files and through
//! the real binary. Named after what broke.

mod common;

use medtrain::data::{self, auto, catalog, units, EventKind, ReadOptions};
use medtrain::privacy::accountant::Delta;
use medtrain::privacy::noise::NoiseSource;
use std::path::Path;
use std::process::Command;

const LOINC: &str = "http://loinc.org";

fn obs(subject: &str, code: &str, value: f64, unit: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},"subject":{{"reference":"Patient/{subject}"}},"effectiveDateTime":"2024-01-01T00:00:00Z","valueQuantity":{{"value":{value},"unit":"{unit}"}}}}"#
    )
}

fn read_lines(lines: &[String]) -> (data::Dataset, data::Report) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("o.ndjson"), lines.join("\n")).unwrap();
    data::read(dir.path(), &ReadOptions { vitals: true, ..Default::default() }).unwrap()
}

/// The one lab value read from one line, and its unit.
fn one_value(line: String) -> (f32, String, data::Report) {
    let (d, r) = read_lines(&[line]);
    assert_eq!(d.events.len(), 1, "{:?}", r.findings);
    let e = d.events[0];
    (e.value, d.units.names[e.unit as usize].clone(), r)
}

fn close(got: f32, want: f64, rel: f64) -> bool {
    ((got as f64 - want) / want).abs() <= rel
}

#[test]
fn valid_ucum_units_are_not_unknown() {
    // valid UCUM units that the first reader reported as unknown
    for (code, unit) in [
        ("3016-3", "m[IU]/L"),
        ("6301-6", "{INR}"),
        ("2744-1", "[pH]"),
        ("6690-2", "10*3/uL"),
        ("4548-4", "%"),
        ("33914-3", "mL/min/{1.73_m2}"),
    ] {
        assert!(units::is_valid(unit), "{unit}");
        let (_, _, r) = one_value(obs("a", code, 1.0, unit));
        assert!(!r.findings.iter().any(|f| f.kind == "unknown_unit"), "{unit}: {:?}", r.findings);
    }
}

#[test]
fn valid_ucum_unit_m_iu_per_l_is_not_unknown() {
    let (v, u, r) = one_value(obs("a", "3016-3", 2.5, "m[IU]/L"));
    assert_eq!((v, u.as_str()), (2.5, "m[IU]/L"));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

#[test]
fn crp_in_mg_per_l_is_converted_to_catalogue_unit() {
    let (v, u, r) = one_value(obs("a", "1988-5", 5.0, "mg/L"));
    assert_eq!(u, "mg/dL");
    assert!(close(v, 0.5, 1e-6), "{v}");
    let f = r.findings.iter().find(|f| f.kind == "converted_unit").expect("conversion reported");
    assert_eq!(f.count, 1);
    assert_eq!(f.detail.as_deref(), Some("http://loinc.org|1988-5 from mg/L to mg/dL"));
    assert!(!r.findings.iter().any(|f| f.kind == "unit_conflict"));
}

#[test]
fn creatinine_in_umol_per_l_is_converted_with_its_molar_mass() {
    // 88.4 umol/L * 113.12 g/mol = 10.0 mg/L = 1.000 mg/dL
    let (v, u, _) = one_value(obs("a", "2160-0", 88.4, "umol/L"));
    assert_eq!(u, "mg/dL");
    assert!(close(v, 88.4e-6 * 113.12 * 100.0, 1e-5), "{v}");
    // and back: the SI-coded creatinine in umol/L from mg/dL
    let (v, u, _) = one_value(obs("a", "14682-9", 1.0, "mg/dL"));
    assert_eq!(u, "umol/L");
    assert!(close(v, 1e-2 / 113.12 * 1e6, 1e-5), "{v}");
}

/// Found by a tester: `MG/DL` (UCUM's case-insensitive form, as mainframe and HL7 v2 exports write
/// units) and `mg/100mL` were unknown units, every value of them lost.
#[test]
fn units_in_upper_case_and_per_100_ml_are_read() {
    for (unit, value, want) in [("MG/DL", 1.0, 1.0), ("MMOL/L", 5.5, 5.5 * 180.16 / 10.0), ("mg/100mL", 1.2, 1.2)] {
        let code = if unit == "MMOL/L" { "2345-7" } else { "2160-0" };
        let (v, u, r) = one_value(obs("a", code, value, unit));
        assert_eq!(u, "mg/dL", "{unit}: {:?}", r.findings);
        assert!(close(v, want, 1e-5), "{unit}: {v}");
    }
    // units in capitals are the lab units they spell, not UCUM's case-sensitive others (`G` gauss, `M`
    // mega, `P` peta: found by review), and every form is UCUM
    for (u, want) in [
        ("MG/DL", "mg/dL"),
        ("MG/L", "mg/L"),
        ("PG/ML", "pg/mL"),
        ("MU/L", "mU/L"),
        ("G/L", "g/L"),
        ("U/L", "U/L"),
        ("10*3/UL", "10*3/uL"),
        ("FL", "fL"),
        ("PG", "pg"),
        ("MM[HG]", "mm[Hg]"),
        ("MEQ/L", "meq/L"),
        ("IU/L", "[IU]/L"),
    ] {
        let form = units::ucum_form(u).unwrap_or_else(|| panic!("{u}"));
        assert_eq!(form, want, "{u}");
        assert!(units::ucum_form(&form).is_some_and(|f| f == form), "{u} -> {form}");
    }
}

#[test]
fn glucose_in_mmol_per_l_is_converted_to_mg_per_dl() {
    let (v, u, _) = one_value(obs("a", "2345-7", 5.5, "mmol/L"));
    assert_eq!(u, "mg/dL");
    assert!(close(v, 5.5 * 180.16 / 10.0, 1e-5), "{v}");
}

/// Found by an outside-in tester: hemoglobin in mmol/L (as the Netherlands report it, per heme) was
/// unconvertible, every value of the channel lost; 1 mmol/L is 1.611 g/dL.
#[test]
fn hemoglobin_in_mmol_per_l_is_converted_per_heme() {
    let (v, u, _) = one_value(obs("a", "718-7", 8.69, "mmol/L"));
    assert_eq!(u, "g/dL");
    assert!(close(v, 8.69 * 1.611, 1e-3), "{v}");
}

#[test]
fn calcium_in_meq_per_l_is_divided_by_its_charge() {
    // 5 mEq/L of Ca2+ = 2.5 mmol/L = 100.2 mg/L = 10.02 mg/dL
    let (v, u, _) = one_value(obs("a", "17861-6", 5.0, "mEq/L"));
    assert_eq!(u, "mg/dL");
    assert!(close(v, 2.5 * 40.078 / 10.0, 1e-5), "{v}");
    // sodium (charge 1): mEq/L is mmol/L
    let (v, u, _) = one_value(obs("a", "2951-2", 140.0, "mEq/L"));
    assert_eq!((v, u.as_str()), (140.0, "mmol/L"));
}

#[test]
fn tsh_in_micro_iu_per_ml_converts_to_milli_iu_per_l() {
    let (v, u, _) = one_value(obs("a", "3016-3", 2.0, "uIU/mL"));
    assert_eq!(u, "m[IU]/L");
    assert!(close(v, 2.0, 1e-6), "{v}");
}

#[test]
fn hba1c_in_ifcc_mmol_per_mol_uses_the_master_equation_not_a_unit_factor() {
    // 48 mmol/mol (IFCC) is 6.5 % (NGSP), not 4.8 %
    let (v, u, _) = one_value(obs("a", "4548-4", 48.0, "mmol/mol"));
    assert_eq!(u, "%");
    assert!((v - 6.54).abs() < 0.02, "{v}");
}

#[test]
fn body_temperature_in_fahrenheit_is_converted() {
    let line = obs("a", "8310-5", 98.6, "[degF]").replace("laboratory", "vital-signs");
    let (v, u, _) = one_value(line);
    assert_eq!(u, "Cel");
    assert!((v - 37.0).abs() < 1e-3, "{v}");
}

#[test]
fn incommensurable_unit_is_reported_and_left_unconverted() {
    let (d, r) = read_lines(&[obs("a", "2160-0", 1.0, "mg/dL"), obs("a", "2160-0", 3.0, "mg")]);
    assert_eq!(d.events.len(), 2);
    let f = r.findings.iter().find(|f| f.kind == "unconvertible_unit").expect("reported");
    assert_eq!(f.count, 1);
    assert!(f.detail.as_deref().unwrap().contains(" in mg "), "{f:?}");
    assert!(r.findings.iter().any(|f| f.kind == "unit_conflict"));
    // no molar mass: mol and g do not convert
    assert_eq!(
        units::conversion("mmol/L", catalog::by_name_or_code("albumin").unwrap()),
        units::Conversion::Not("mass and amount of substance, and the analyte has no molar mass")
    );
}

#[test]
fn insulin_and_tsh_in_micro_units_per_ml_convert_as_international_units() {
    // Japanese reports write μU/mL for μIU/mL; UCUM reads U as the enzyme unit
    let one = |unit: &str, lab: &str| match units::conversion(unit, catalog::by_name_or_code(lab).unwrap()) {
        units::Conversion::Identity => 1.0,
        units::Conversion::Affine { scale, offset } if offset == 0.0 => scale,
        other => panic!("{unit} for {lab}: {other:?}"),
    };
    for (unit, lab, want) in [
        ("μU/mL", "insulin", 1.0),
        ("uU/mL", "insulin", 1.0),
        ("mU/L", "insulin", 1.0),
        ("μIU/mL", "insulin", 1.0),
        ("μU/mL", "tsh", 1.0),
        ("uU/mL", "tsh", 1.0),
        ("U/L", "tsh", 1000.0),
    ] {
        let got = one(unit, lab);
        assert!((got - want).abs() <= 1e-9 * want, "{unit} for {lab}: {got}");
    }
    // and an enzyme's activity reported in IU/L is its U/L
    assert_eq!(one("U/L", "alt"), 1.0);
    assert_eq!(one("IU/L", "ast"), 1.0);
    assert_eq!(one("[IU]/L", "alt"), 1.0);
    assert!((one("m[IU]/mL", "ck") - 1.0).abs() < 1e-12);
}

#[test]
fn unit_that_is_not_ucum_is_reported_without_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [obs("a", "2160-0", 1.0, "TEL 03-5555-0199"), obs("a", "2160-0", 1.0, "mg/dL{03-5555-0199}")];
    std::fs::write(dir.path().join("o.ndjson"), lines.join("\n")).unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(r.findings.iter().any(|f| f.kind == "unknown_unit"), "{:?}", r.findings);
    for f in &r.findings {
        assert!(!f.detail.as_deref().unwrap_or("").contains("5555"), "{f:?}");
    }
    // a valid unit whose annotation is free text is valid, but not shown
    assert!(units::is_valid("mg/dL{03-5555-0199}"));
    assert_eq!(data::check::reportable_unit("mg/dL{03-5555-0199}"), None);
    assert_eq!(data::check::reportable_unit("mL/min/{1.73_m2}"), Some("mL/min/{1.73_m2}"));
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!out.contains("5555") && !err.contains("5555"), "the unit's text was printed");
}

#[test]
fn conversion_is_parsed_once_per_unit_and_code() {
    let lines: Vec<String> = (0..500).map(|i| obs(&format!("s{i}"), "1988-5", 1.0 + i as f64, "mg/L")).collect();
    let (d, _) = read_lines(&lines);
    let outcomes = d.conversions.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].3, 500);
}

#[test]
fn v2_0074_lab_category_is_read() {
    let line = obs("a", "2160-0", 0.9, "mg/dL").replace(
        r#"{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}"#,
        r#"{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}"#,
    );
    assert!(line.contains("v2-0074"));
    let (v, _, _) = one_value(line.clone());
    assert_eq!(v, 0.9);
    // chemistry and hematology sections too; a radiology section is not a lab
    let (d, _) = read_lines(&[line.replace("\"LAB\"", "\"CH\""), line.replace("\"LAB\"", "\"HM\"")]);
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 2);
    let (d, _) = read_lines(&[line.replace("\"LAB\"", "\"RAD\"")]);
    assert!(d.events.is_empty());
}

fn string_obs(value: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"20454-5"}}]}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-01-01","valueString":"{value}"}}"#
    )
}

#[test]
fn ordinal_value_string_becomes_a_coded_event() {
    for (text, level) in [
        ("2+", 3.0),
        ("(-)", 0.0),
        ("±", 1.0),
        ("陰性", 0.0),
        ("陽性", 2.0),
        ("２＋", 3.0),
        ("（－）", 0.0),
        ("+++", 4.0),
    ] {
        let (d, r) = read_lines(&[string_obs(text)]);
        assert_eq!(d.events.len(), 1, "{text}");
        assert_eq!(d.events[0].kind, EventKind::Coded, "{text}");
        assert_eq!(d.events[0].value, level, "{text}");
        assert_eq!(r.events.get("coded"), Some(&1));
    }
}

#[test]
fn coded_value_codeable_concept_becomes_a_coded_event_or_is_counted() {
    let coded = |coding: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"20454-5"}}]}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-01-01","valueCodeableConcept":{coding}}}"#
        )
    };
    let (d, _) = read_lines(&[
        coded(r#"{"coding":[{"system":"http://snomed.info/sct","code":"260385009"}]}"#),
        coded(r#"{"coding":[{"system":"http://example.org/local","code":"P2"}],"text":"2+"}"#),
    ]);
    let levels: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(levels, [0.0, 3.0]);
    assert!(d.events.iter().all(|e| e.kind == EventKind::Coded));
    // a code outside the closed set is counted, never dropped without a word, never printed
    let (d, r) = read_lines(&[coded(r#"{"coding":[{"system":"http://example.org/local","code":"YAMADA"}]}"#)]);
    assert!(d.events.is_empty());
    let f = r.findings.iter().find(|f| f.kind == "unmapped_coded_value").expect("counted");
    assert_eq!((f.count, f.field.as_str()), (1, "valueCodeableConcept"));
    assert!(format!("{:?}", r.findings).find("YAMADA").is_none());
}

#[test]
fn catalogue_holds_at_least_100_labs_with_well_formed_codes() {
    let labs: Vec<_> = catalog::LABS.iter().filter(|l| !l.vital).collect();
    assert!(labs.len() >= 100, "{}", labs.len());
    for l in &labs {
        assert!(catalog::loinc_is_valid(l.loinc), "{}", l.loinc);
        assert!(l.jlac10.is_none_or(catalog::jlac10_is_valid));
        assert!(units::is_valid(l.unit), "{}", l.unit);
    }
    assert!(catalog::LABS.iter().any(|l| l.source == "jccls2019"));
    assert!(catalog::LABS.iter().any(|l| l.reference.is_none()));
}

/// Subjects with labs of known frequencies: row `r` of `rows` is held by `counts[i]` subjects.
fn cohort(rows: &[usize], counts: &[usize], n: usize) -> auto::SubjectLabs {
    (0..n)
        .map(|s| {
            let mut v: Vec<(usize, Vec<f32>)> =
                rows.iter().zip(counts).filter(|(_, &c)| s < c).map(|(&r, _)| (r, vec![1.0])).collect();
            v.sort_by_key(|x| x.0);
            v
        })
        .collect()
}

fn seeded() -> NoiseSource {
    NoiseSource::seeded([42; 32])
}

#[test]
fn auto_selection_recovers_the_true_top_k_at_low_noise() {
    let names = ["creatinine", "crp", "ferritin", "tsh", "albumin", "ldh_missing"];
    let rows: Vec<usize> = names.iter().filter_map(|n| catalog::by_name_or_code(n)).map(catalog::index_of).collect();
    assert_eq!(rows.len(), 5);
    let counts = [3000, 2500, 2000, 900, 100];
    let subjects = cohort(&rows, &counts, 3000);
    let sel = auto::Selection { channels: 3, max_codes_per_subject: 8, noise_multiplier: 2.0 };
    let (chosen, rel) = auto::select_channels(&subjects, sel, Delta::new(1e-6).unwrap(), &seeded()).unwrap();
    let got: Vec<&str> = chosen.iter().map(|l| l.name).collect();
    assert_eq!(got, ["creatinine", "crp", "ferritin"]);
    assert_eq!(rel.mechanism, "channel_selection");
    assert!((rel.l2_sensitivity - 8f64.sqrt()).abs() < 1e-12);
    assert!((rel.noise_std - 2.0 * 8f64.sqrt()).abs() < 1e-12);
    assert!(rel.epsilon > 0.0 && rel.epsilon.is_finite());
}

#[test]
fn a_subject_counts_for_at_most_max_codes_per_subject() {
    let rows: Vec<usize> = (0..catalog::LABS.len()).filter(|&r| !catalog::LABS[r].vital).take(10).collect();
    let subjects = cohort(&rows, &[1; 10], 1);
    let candidates = auto::candidates();
    let counts = auto::subject_counts(&subjects, &candidates, 3);
    assert_eq!(counts.iter().sum::<f64>(), 3.0);
}

#[test]
fn dp_quantiles_are_within_one_bin_of_the_true_quantiles_at_large_n() {
    let ferritin = catalog::by_name_or_code("ferritin").unwrap();
    let row = catalog::index_of(ferritin);
    // 20,000 subjects, values log-uniform between 10 and 1000: true 2.5% and 97.5% quantiles known
    let n = 20_000;
    let subjects: auto::SubjectLabs = (0..n)
        .map(|i| {
            let t = (i as f64 + 0.5) / n as f64;
            vec![(row, vec![(10f64.ln() + t * (1000f64.ln() - 10f64.ln())).exp() as f32])]
        })
        .collect();
    let (scales, rel) =
        auto::dp_quantiles(&subjects, &[ferritin], 256, 1.0, Delta::new(1e-6).unwrap(), &seeded()).unwrap();
    let q = |p: f64| (10f64.ln() + p * (1000f64.ln() - 10f64.ln())).exp();
    // tolerance: one bin of the public log-spaced grid (a ratio of (2e5)^(1/256) = 4.9%) plus the noise
    let bin = (ferritin.plausible.1 / ferritin.plausible.0).powf(1.0 / 256.0) - 1.0;
    let (lo, hi) = scales[0].unwrap();
    assert!(((lo - q(0.025)) / q(0.025)).abs() <= bin * 1.2, "{lo} vs {}", q(0.025));
    assert!(((hi - q(0.975)) / q(0.975)).abs() <= bin * 1.2, "{hi} vs {}", q(0.975));
    assert_eq!(rel.mechanism, "channel_quantiles");
    assert_eq!(rel.l2_sensitivity, 1.0);
    // 150 subjects at sigma 5 over 256 bins: the noise of the empty bins outweighs them, and no
    // quantiles are made up from it (an outside-in tester's channel of 30-120 was scaled to 2-50,000)
    let few: auto::SubjectLabs = (0..150).map(|i| vec![(row, vec![30.0 + (i % 90) as f32])]).collect();
    let (scales, _) = auto::dp_quantiles(&few, &[ferritin], 256, 5.0, Delta::new(1e-6).unwrap(), &seeded()).unwrap();
    assert_eq!(scales, [None]);
    let none: auto::SubjectLabs = vec![vec![]; 10];
    let (scales, _) = auto::dp_quantiles(&none, &[ferritin], 256, 5.0, Delta::new(1e-6).unwrap(), &seeded()).unwrap();
    assert_eq!(scales, [None]);
}

fn demo(dir: &Path) {
    data::demo::write(dir, 300, 3).unwrap();
}

#[test]
fn prepare_with_auto_channels_records_the_dp_charge_in_the_manifest() {
    let root = tempfile::tempdir().unwrap();
    demo(&root.path().join("export"));
    let cfg = root.path().join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\noffset_hours = 1\n[features]\nchannels = \"auto\"\nbuckets = 4\n\
         [auto]\nchannels = 4\nmax_codes_per_subject = 9\nselection_noise_multiplier = 2.0\n",
    )
    .unwrap();
    let out = root.path().join("prepared");
    let m = common::cli::prepared_manifest(&cfg, &out);
    let channels = m["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 4);
    // the demo cohort's labs are the only ones with values: the chosen channels are among them
    for c in channels {
        assert!(data::demo::CHANNELS.contains(&c.as_str().unwrap()), "{c}");
    }
    let rel = &m["dp_releases"][0];
    assert_eq!(rel["mechanism"], "channel_selection");
    assert_eq!(rel["noise_multiplier"], 2.0);
    assert!((rel["l2_sensitivity"].as_f64().unwrap() - 3.0).abs() < 1e-12);
    assert_eq!(m["dp_phases"][0], serde_json::json!([2.0, 1.0, 1]));
    let eps = m["dp_epsilon"].as_f64().unwrap();
    assert!(eps > 0.0 && eps.is_finite(), "{eps}");
    assert_eq!(m["dp_delta"], 1e-6);
    // a listed channel without a public reference interval gets DP quantiles, charged too
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\noffset_hours = 1\n[features]\nchannels = [\"crp\", \"ferritin\"]\nbuckets = 4\n",
    )
    .unwrap();
    let m = common::cli::prepared_manifest(&cfg, &root.path().join("p2"));
    assert_eq!(m["dp_releases"][0]["mechanism"], "channel_quantiles");
    assert_eq!(m["normalization"][0][3], "jccls2019");
    // (the demo cohort has no ferritin: its histogram is noise, and the channel takes the public
    // plausible range, said)
    assert_eq!(m["normalization"][1][3], "plausible_range");
    // bad auto keys name their key
    std::fs::write(&cfg, "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[auto]\nchannels = 0\n").unwrap();
    let o = common::cli::prepare(&cfg, &root.path().join("p3"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("auto.channels"));
}

#[test]
fn loinc_code_of_every_converted_detail_is_the_catalogue_one() {
    // a JLAC10-coded creatinine in umol/L is converted and named by the catalogue's LOINC code
    let line = obs("a", "2160-0", 88.4, "umol/L").replace(
        r#""system":"http://loinc.org","code":"2160-0""#,
        r#""system":"urn:oid:1.2.392.200119.4.1005","code":"3C015000002327101""#,
    );
    let (v, u, r) = one_value(line);
    assert_eq!(u, "mg/dL");
    assert!(close(v, 1.0, 1e-3));
    let f = r.findings.iter().find(|f| f.kind == "converted_unit").unwrap();
    assert!(f.detail.as_deref().unwrap().starts_with(&format!("{LOINC}|2160-0")));
}

#[test]
fn jlac10_code_of_another_method_converts_like_its_row_and_urine_stays_urine() {
    let jlac10 = |code: &str, value: f64, unit: &str| {
        obs("a", "2160-0", value, unit).replace(
            r#""system":"http://loinc.org","code":"2160-0""#,
            &format!(r#""system":"urn:oid:1.2.392.200119.4.1005","code":"{code}""#),
        )
    };
    // serum creatinine by reflectometry, in umol/L: converted by the creatinine row
    let (v, u, r) = one_value(jlac10("3C015000002329101", 88.4, "umol/L"));
    assert_eq!(u, "mg/dL");
    assert!(close(v, 1.0, 1e-3));
    assert!(r.codes.iter().any(|c| c.name == Some("creatinine")), "{:?}", r.codes);
    // urine creatinine by another method shares the analyte code: it is the urine row, whose range
    // holds 100 mg/dL (serum creatinine's would call it implausible)
    let (v, u, r) = one_value(jlac10("3C015000000127201", 100.0, "mg/dL"));
    assert_eq!((v, u.as_str()), (100.0, "mg/dL"));
    assert!(r.codes.iter().any(|c| c.name == Some("urine_creatinine")), "{:?}", r.codes);
    assert!(!r.findings.iter().any(|f| f.kind == "implausible_value"), "{:?}", r.findings);
}

#[test]
fn numbers_in_a_valid_unit_were_printed() {
    // a unit field is free text of the export: UCUM's grammar lets any number through
    for unit in ["10*88431", "mg/(88431.dL)", "10*3/(123.uL)", "mg/(88.dL)", "/100", "10*123/L", "m22"] {
        assert!(!units::is_reportable(unit), "{unit}");
    }
    for unit in
        ["10*3/uL", "10*6/uL", "10^-6", "10*12/L", "kg/m2", "cm-1", "g/(24.h)", "1", "mL/min/{1.73_m2}", "mg/dL"]
    {
        assert!(units::is_reportable(unit), "{unit}");
    }
}

/// The count of findings of `kind` in a report (0 when there is none).
fn count(r: &data::Report, kind: &str) -> u64 {
    r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum()
}

#[test]
fn observations_without_category_value_or_unit_vanished_without_a_count() {
    let lab = obs("p1", "2160-0", 0.9, "mg/dL");
    let no_category = lab.replace(
        r#""category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"#,
        "",
    );
    assert_ne!(no_category, lab);
    // no category, a catalogue code: a laboratory result
    let (v, unit, r) = one_value(no_category.clone());
    assert_eq!((v, unit.as_str()), (0.9, "mg/dL"));
    assert_eq!(count(&r, "no_category"), 0);
    // no category and a code outside the catalogue, another category: counted, not read
    let other = no_category.replace("2160-0", "99999-9");
    let unknown = lab.replace(r#""code":"laboratory""#, r#""code":"ZQXCAT""#);
    let (d, r) = read_lines(&[other, unknown]);
    assert!(d.events.is_empty());
    assert_eq!((count(&r, "no_category"), count(&r, "skipped_category")), (1, 1));
    // no value (none at all, a quantity with only a unit): a warning, no event
    let no_value = lab.replace(r#""valueQuantity":{"value":0.9,"unit":"mg/dL"}"#, r#""dataAbsentReason":{}"#);
    let unit_only = lab.replace(r#""value":0.9,"#, "");
    let (d, r) = read_lines(&[no_value, unit_only]);
    assert!(d.events.is_empty());
    assert_eq!(r.events.get("lab"), None);
    assert_eq!(count(&r, "no_value"), 2);
    // a value of a type not read (a ratio, a range, a boolean): counted by its type, not a missing value
    let ratio = lab.replace(
        r#""valueQuantity":{"value":0.9,"unit":"mg/dL"}"#,
        r#""valueRatio":{"numerator":{"value":1},"denominator":{"value":128}}"#,
    );
    let range = lab.replace(r#""valueQuantity":{"value":0.9,"unit":"mg/dL"}"#, r#""valueRange":{"low":{"value":1}}"#);
    let boolean = lab.replace(r#""valueQuantity":{"value":0.9,"unit":"mg/dL"}"#, r#""valueBoolean":true"#);
    let (d, r) = read_lines(&[ratio, range.clone(), range, boolean]);
    assert!(d.events.is_empty());
    assert_eq!(count(&r, "no_value"), 0, "{:?}", r.findings);
    let by_field = |field: &str| {
        r.findings.iter().filter(|f| f.kind == "value_type_not_read" && f.field == field).map(|f| f.count).sum::<u64>()
    };
    assert_eq!(
        (by_field("valueRatio"), by_field("valueRange"), by_field("valueBoolean")),
        (1, 2, 1),
        "{:?}",
        r.findings
    );
    // no unit, an empty unit: read in the catalogue unit, and said
    let (d, r) = read_lines(&[obs("p1", "2160-0", 0.9, ""), lab.replace(r#","unit":"mg/dL""#, "")]);
    assert_eq!(d.events.len(), 2);
    assert_eq!(count(&r, "missing_unit"), 2);
    // a censored result: read as its limit and counted; a comparator that is none of FHIR's: malformed
    let below = lab.replace(r#""value":0.9,"#, r#""comparator":"<","value":0.9,"#);
    let (v, _, r) = one_value(below.clone());
    assert_eq!(v, 0.9);
    assert_eq!(count(&r, "censored_value"), 1);
    let (d, r) = read_lines(&[below.replace(r#""<""#, r#""ZQX""#)]);
    assert!(d.events.is_empty());
    assert_eq!(count(&r, "malformed_line"), 1);
    // a status that is none of FHIR's: read and counted
    let (_, _, r) = one_value(lab.replace(r#""status":"final""#, r#""status":"ZQXSTATUS""#));
    assert_eq!(count(&r, "unknown_status"), 1);
}

#[test]
fn jlac10_under_jp_cores_system_never_reached_a_channel() {
    // JP Core and JP-CLINS code JLAC10 under urn:oid:1.2.392.200119.4.504 (it was read as another
    // system); MEDIS' URL and the old demo OID are the same codes
    for system in [
        "urn:oid:1.2.392.200119.4.504",
        "http://medis.or.jp/CodeSystem/master-JLAC10-17digits",
        "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS",
        "urn:oid:1.2.392.200119.4.1005",
    ] {
        let line = obs("a", "2160-0", 0.9, "mg/dL").replace(
            r#""system":"http://loinc.org","code":"2160-0""#,
            &format!(r#""system":"{system}","code":"3C015000002327101""#),
        );
        let (v, _, r) = one_value(line);
        assert_eq!(v, 0.9);
        assert!(r.codes.iter().any(|c| c.name == Some("creatinine")), "{system}: {:?}", r.codes);
        assert!(!r.findings.iter().any(|f| f.kind == "unknown_code_system"), "{system}: {:?}", r.findings);
    }
    assert_eq!(catalog::lookup(catalog::JLAC10, "3C015000002327101").map(|l| l.name), Some("creatinine"));
}

#[test]
fn integer_and_numeric_string_values_and_non_ucum_unit_codes_were_dropped() {
    let lab = obs("p1", "2160-0", 0.9, "mg/dL");
    let quantity = r#""valueQuantity":{"value":0.9,"unit":"mg/dL"}"#;
    assert!(lab.contains(quantity));
    // valueInteger: a value (no unit: read in the catalogue unit, said)
    let (d, r) = read_lines(&[lab.replace(quantity, r#""valueInteger":2"#)]);
    assert_eq!(d.events.iter().map(|e| e.value).collect::<Vec<_>>(), [2.0]);
    assert_eq!(count(&r, "missing_unit"), 1);
    // a number written as a string (SS-MIX2-derived exports), full-width too
    for (s, want) in [("1.0", 1.0), (" 12.5 ", 12.5), ("１２．５", 12.5)] {
        let (d, r) = read_lines(&[lab.replace(quantity, &format!(r#""valueString":"{s}""#))]);
        assert_eq!(d.events.iter().map(|e| (e.kind, e.value)).collect::<Vec<_>>(), [(EventKind::Lab, want)], "{s}");
        assert_eq!(count(&r, "unmapped_coded_value"), 0);
    }
    // an ordinal string stays a coded result
    let (d, _) = read_lines(&[lab.replace(quantity, r#""valueString":"2+""#)]);
    assert_eq!(d.events[0].kind, EventKind::Coded);
    // a unit code of another system is no UCUM unit: the unit text is read
    let snomed = lab.replace(
        quantity,
        r#""valueQuantity":{"value":0.9,"unit":"mg/dL","system":"http://snomed.info/sct","code":"258797006"}"#,
    );
    let (v, unit, r) = one_value(snomed);
    assert_eq!((v, unit.as_str()), (0.9, "mg/dL"));
    assert_eq!(count(&r, "unknown_unit") + count(&r, "unconvertible_unit"), 0, "{:?}", r.findings);
}

#[test]
fn mimic_count_units_read_as_thousands_and_millions_per_microliter() {
    // MIMIC-IV's K/uL and m/uL (UCUM alone reads kelvin and metre per microliter: incommensurable)
    for (code, unit, value, want_unit) in [
        ("6690-2", "K/uL", 7.5, "10*3/uL"),
        ("777-3", "x10E3/uL", 250.0, "10*3/uL"),
        ("789-8", "m/uL", 4.5, "10*6/uL"),
        ("789-8", "M/uL", 4.5, "10*6/uL"),
    ] {
        let (v, u, r) = one_value(obs("a", code, value, unit));
        assert_eq!(u, want_unit, "{unit}");
        assert!(close(v, value, 1e-6), "{unit}: {v}");
        assert!(
            !r.findings.iter().any(|f| f.kind.contains("unit") && f.kind != "converted_unit"),
            "{unit}: {:?}",
            r.findings
        );
    }
    // a count per microliter in plain cells: thousands of them
    let (v, u, _) = one_value(obs("a", "6690-2", 7500.0, "#/uL"));
    assert_eq!(u, "10*3/uL");
    assert!(close(v, 7.5, 1e-6), "{v}");
}

/// Found by a tester: units as Japanese systems write them (`ｍｇ／ｄＬ` in full-width forms,
/// `x10^3/μL` with the micro sign, `千/μL`, `万/μL`) were unknown units and their values not converted.
#[test]
fn full_width_and_japanese_count_units_are_read() {
    for (unit, want) in [
        ("ｍｇ／ｄＬ", "mg/dL"),
        ("x10^3/µL", "10*3/uL"),
        ("×10^3/μL", "10*3/uL"),
        ("千/μL", "10*3/uL"),
        ("万/μL", "10*4/uL"),
        ("µg/L", "ug/L"),
        ("μkat/L", "ukat/L"),
    ] {
        assert_eq!(units::ucum_form(unit).as_deref(), Some(want), "{unit}");
    }
    // creatinine (mg/dL in the catalogue) in full-width mg/dL: read as it is, no unknown unit
    let (v, _, r) = one_value(obs("a", "2160-0", 1.1, "ｍｇ／ｄＬ"));
    assert_eq!(v, 1.1);
    assert!(!r.findings.iter().any(|f| f.kind == "unknown_unit"), "{:?}", r.findings);
    // platelets in 万/μL (10*4/uL) converted to the catalogue's 10*3/uL
    let (v, _, r) = one_value(obs("a", "777-3", 25.0, "万/μL"));
    assert!(close(v, 250.0, 1e-6), "{v} {:?}", r.findings);
}

/// Found by a tester: creatinine (no ion: no charge in the catalogue, mg/dL) in mEq/L was converted to
/// mg/dL as if it had a charge of 1; not converted now (an incommensurable unit), while total CO2 in
/// mEq/L is its mmol/L.
#[test]
fn equivalents_of_a_test_that_is_no_ion_are_not_converted_to_mass() {
    let cre = catalog::lookup(LOINC, "2160-0").unwrap();
    assert!(matches!(units::conversion("mEq/L", cre), units::Conversion::Not(_)));
    let co2 = catalog::lookup(LOINC, "2028-9").unwrap();
    assert!(matches!(units::conversion("mEq/L", co2), units::Conversion::Identity | units::Conversion::Affine { .. }));
}

/// Found by a tester: a censored result written as text (`<0.3`, and as Japanese systems write it,
/// `0.3未満`, `3.5以下`, `1000以上`, `＞1000`, `≦0.3`) was dropped (an info), 3 of 5 CRP results of a
/// JP Core export lost. Each is read as its limit and counted (`censored_value`), in FHIR and CSV.
#[test]
fn censored_results_written_as_text_are_read_as_their_limit() {
    let line = |v: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"1988-5"}}]}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-01-01T00:00:00Z","valueString":"{v}"}}"#
        )
    };
    let written = ["<0.3", "0.3未満", "3.5以下", "1000以上", "＞1000", "≦0.3", "＜＝0.5"];
    let (d, r) = read_lines(&written.map(line));
    let mut values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    values.sort_by(f32::total_cmp);
    assert_eq!(values, [0.3, 0.3, 0.3, 0.5, 3.5, 1000.0, 1000.0], "{:?}", r.findings);
    let censored: u64 = r.findings.iter().filter(|f| f.kind == "censored_value").map(|f| f.count).sum();
    assert_eq!(censored, 7, "{:?}", r.findings);
    // the CSV reader's suffixes
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("l.csv"), "subject_id,time,code,value,unit\n1,2024-01-01,crp,0.3未満,mg/dL\n")
        .unwrap();
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.iter().map(|e| e.value).collect::<Vec<_>>(), [0.3]);
}

/// Found by a tester on a JP Core export: `秒` (every prothrombin time lost), `万/uL`, `×10⁴/μL`, `百/μL`,
/// `%(NGSP)`, `mL/分/1.73㎡` were unknown units, their values dropped.
#[test]
fn japanese_unit_spellings_are_read() {
    for (u, want) in [
        ("秒", "s"),
        ("万/uL", "10*4/uL"),
        ("×10⁴/μL", "10*4/uL"),
        ("×10²/μL", "10*2/uL"),
        ("百/μL", "10*2/uL"),
        ("万/mm3", "10*4/mm3"),
        ("%(NGSP)", "%"),
        ("mL/分/1.73㎡", "mL/min/{1.73_m2}"),
        ("mL/min/1.73m^2", "mL/min/{1.73_m2}"),
    ] {
        assert_eq!(units::ucum_form(u).as_deref(), Some(want), "{u}");
    }
    // a JP-CLINS core lab code is JLAC10
    let cr = catalog::lookup(
        "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_CoreLabo_CS",
        "3C015000002327101",
    );
    assert_eq!(cr.map(|l| l.name), Some("creatinine"));
}

/// Found by a tester on JP Core health-checkup results: an answer code with an `ordinalValue` extension
/// (urine protein `1` of 0.. by test strip) was an unmapped coded value, the result dropped. Its level
/// is the extension's.
#[test]
fn a_coded_result_takes_its_codings_ordinal_value() {
    let line = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"urn:oid:1.2.392.200119.4.504","code":"1A010000000191111"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-01T00:00:00Z","valueCodeableConcept":{"coding":[{"system":"urn:oid:1.2.392.200119.6.2102","code":"1","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/ordinalValue","valueDecimal":1}]}]}}"#;
    let (d, r) = read_lines(&[line.to_string()]);
    assert_eq!(d.events.len(), 1, "{:?}", r.findings);
    assert_eq!((d.events[0].kind, d.events[0].value), (EventKind::Coded, 1.0));
}
