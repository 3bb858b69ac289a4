//! `read.code_map`: local codes (a laboratory system's item numbers, MIMIC's `itemid`, a MEDS ETL's
//! `LAB//...` codes, a hospital's own FHIR code system) read as the LOINC or JLAC10 code a site's map
//! says, by every reader; the map checked when the config is loaded, its errors naming file, line and
//! column and printing no cell.

mod common;
use medtrain::data::{self, code_map::CodeMap, EventKind, ReadOptions};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const LOINC: &str = "http://loinc.org";

fn load(path: &Path) -> Arc<CodeMap> {
    let prefer = ReadOptions::default().code_systems;
    Arc::new(CodeMap::load(path, &prefer, Default::default(), Default::default()).unwrap())
}

fn with_map(path: &Path) -> ReadOptions {
    ReadOptions { code_map: Some(load(path)), ..Default::default() }
}

fn count(r: &data::Report, kind: &str) -> u64 {
    r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum()
}

/// MIMIC-IV's `labevents` columns (itemids, not LOINC).
const MIMIC: &str = "labevent_id,subject_id,hadm_id,specimen_id,itemid,charttime,value,valuenum,valueuom\n\
    1,10000032,,1,50912,2180-05-06 22:25:00,1.1,1.1,mg/dL\n\
    2,10000032,,1,50912,2180-05-07 08:00:00,88.4,88.4,umol/L\n\
    3,10000033,,2,50912,2180-05-07 09:00:00,0.9,0.9,\n\
    4,10000033,,2,220045,2180-05-07 09:00:00,72,72,bpm\n\
    5,10000033,,2,51464,2180-05-07 09:00:00,NEG,,\n";

const MAP: &str = "itemid_label,code,loinc,unit\n\
    Creatinine,50912,2160-0,mg/dL\n\
    Heart Rate,220045,8867-4,/min\n\
    Potassium,50971,2823-3,mmol/L\n\
    Bilirubin urine,51464,,\n";

fn mimic_columns() -> data::csv::Columns {
    data::csv::Columns::parse("time=charttime,code=itemid,value=valuenum,text_value=value,unit=valueuom").unwrap()
}

#[test]
fn mimic_itemids_are_read_as_the_loinc_codes_of_the_map() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/labevents.csv"), MIMIC).unwrap();
    // the map kept beside the data it maps is not read as data
    let map = dir.path().join("input/itemids.csv");
    std::fs::write(&map, MAP).unwrap();
    let opts = ReadOptions { columns: mimic_columns(), ..with_map(&map) };
    let (d, r) = data::read(&dir.path().join("input"), &opts).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(r.files, 1);
    let cr = d.find_code(LOINC, "2160-0").unwrap();
    // the local code is the target's index, and no code of its own
    assert_eq!(d.find_code("medtrain:csv", "50912"), Some(cr));
    assert!(d.codes.iter().all(|c| c.code != "50912" && c.code != "220045"));
    let mut cr_values: Vec<f32> = d.events.iter().filter(|e| e.code == cr).map(|e| e.value).collect();
    cr_values.sort_by(f32::total_cmp);
    // 88.4 umol/L converted to mg/dL; the row without a unit took the map's
    assert_eq!(cr_values.len(), 3);
    assert!(
        (cr_values[0] - 0.9).abs() < 1e-6 && (cr_values[1] - 1.0).abs() < 1e-3 && (cr_values[2] - 1.1).abs() < 1e-6
    );
    let mg_dl = d.units.names.iter().position(|u| u == "mg/dL").unwrap() as u32;
    assert!(d.events.iter().filter(|e| e.code == cr).all(|e| e.unit == mg_dl));
    assert_eq!(count(&r, "missing_unit"), 0, "{:?}", r.findings);
    // a heart rate under a local code is a vital sign, as under its LOINC code
    let hr = d.find_code(LOINC, "8867-4").unwrap();
    assert!(d.events.iter().filter(|e| e.code == hr).all(|e| e.kind == EventKind::Vital));
    assert_eq!(count(&r, "code_mapped"), 4);
    // potassium is in no row of the input; bilirubin has no target (its row read as a local code)
    assert_eq!(count(&r, "code_map_unused"), 1);
    assert_eq!(count(&r, "code_map_without_target"), 1);
    assert!(d.find_code("medtrain:csv", "51464").is_some());
    let f = r.findings.iter().find(|f| f.kind == "code_map_unused").unwrap();
    assert_eq!(f.detail.as_deref(), Some("itemids.csv"));
}

#[test]
fn the_map_is_a_config_key_and_a_flag_and_the_manifest_records_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    let mut events = String::from("subject_id,time,code,value,unit\n");
    let mut labels = String::from("subject_id,prediction_time,boolean_value\n");
    for s in 0..40 {
        events.push_str(&format!("{s},2024-01-05T08:00:00Z,CRE01,{}.5,mg/dL\n", s % 3));
        labels.push_str(&format!("{s},2024-01-05T12:00:00Z,{}\n", s % 2 == 0));
    }
    std::fs::write(dir.path().join("input/events.csv"), events).unwrap();
    std::fs::write(dir.path().join("labels.csv"), labels).unwrap();
    std::fs::write(dir.path().join("codes.csv"), "code,loinc,jlac10\nCRE01,2160-0,3C015000002327101\n").unwrap();
    let cfg = dir.path().join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"input\"\n[read]\ncode_map = \"codes.csv\"\n[labels]\nfile = \"labels.csv\"\n[split]\nkey = \"k\"\n\
         tuning = 0.1\nheld_out = 0.1\n[features]\nchannels = [\"creatinine\"]\n",
    )
    .unwrap();
    let out = dir.path().join("prepared");
    let m = common::cli::prepared_manifest(&cfg, &out);
    let sha = m["code_map"].as_str().unwrap();
    assert_eq!(sha, load(&dir.path().join("codes.csv")).sha256);
    assert!(sha.starts_with("sha256:") && sha.len() == 7 + 64);
    // every example's creatinine channel observed: the local code fed the channel
    let bytes = std::fs::read(out.join("train.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mask = st.tensor("lab_mask").unwrap();
    let n = mask.shape()[0];
    let seen: f32 = mask.data().chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).sum();
    assert!(n > 20 && seen >= n as f32, "{seen} of {n}");
    // `data check --code-map`, JLAC10 first by --code-systems
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json", "--code-systems", "urn:oid:1.2.392.200119.4.504,http://loinc.org"])
        .arg("--code-map")
        .arg(dir.path().join("codes.csv"))
        .arg(dir.path().join("input"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mapped = j["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "code_mapped").cloned().unwrap();
    assert_eq!(mapped["count"], 40);
    let codes = j["codes"].to_string();
    assert!(codes.contains("3C015000002327101") && !codes.contains("CRE01"), "{codes}");
    // a map that is not there: the flag named
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--code-map", "nowhere.csv"])
        .arg(dir.path().join("input"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--code-map"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_maps_are_refused_naming_file_line_and_column_and_printing_no_cell() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("data.toml");
    std::fs::write(&cfg, "input = \".\"\n[read]\ncode_map = \"map.csv\"\n[labels]\ntask = \"lab_rise\"\n").unwrap();
    for (map, want) in [
        ("code,loinc\nA1,2160-0\nSECRET9,2160-1\n", "map.csv:3: column loinc: not a LOINC code"),
        ("code,jlac10\nSECRET9,3C0150000023271\n", "map.csv:2: column jlac10: not a JLAC10 code"),
        ("code,loinc\nSECRET9,2160-0\nA2,1988-5\nSECRET9,1988-5\n", "map.csv:4: the code of line 2"),
        ("code,system,loinc\nSECRET9,LOINC,2160-0\n", "column system: LOINC and JLAC10 codes are read as they are"),
        ("code,system,loinc\nSECRET9,hospital lab,2160-0\n", "column system: not a code system's URI"),
        ("code,loinc\n,2160-0\n", "map.csv:2: column code: empty"),
        ("SECRET9,2160-0\nA1,1988-5\n", "needs a `code` column (the header read: 2 columns: 2 names not printed)"),
        ("code,name\nSECRET9,x\n", "needs a `loinc` or a `jlac10` column (the header read: 2 columns: 1 \"code\""),
        // potassium's JLAC10 with creatinine's LOINC
        (
            "code,loinc,jlac10\nA1,2160-0,3C015000002327101\nSECRET9,2160-0,3H015000002326101\n",
            "map.csv:3: column loinc: its LOINC and JLAC10 codes are two different tests",
        ),
    ] {
        std::fs::write(dir.path().join("map.csv"), map).unwrap();
        let e = data::prepare::DataConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("config key read.code_map") && e.contains(want), "{map:?}: {e}");
        assert!(!e.contains("SECRET9") && !e.contains("2160-1") && !e.contains("hospital lab"), "{e}");
    }
    // the same mapping twice, and a row of only the code, are fine
    std::fs::write(dir.path().join("map.csv"), "code,loinc\nA1,2160-0\nA1,2160-0\nA2,\n").unwrap();
    let c = data::prepare::DataConfig::load(&cfg).unwrap();
    let m = c.read.loaded_code_map.unwrap();
    assert_eq!((m.len(), m.unmapped_rows), (1, 1));
    std::fs::remove_file(dir.path().join("map.csv")).unwrap();
    let e = data::prepare::DataConfig::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("config key read.code_map") && e.contains("map.csv"), "{e}");
}

fn observation(codings: &str, category: bool) -> String {
    let category = if category {
        r#""category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"#
    } else {
        ""
    };
    format!(
        r#"{{"resourceType":"Observation","status":"final",{category}"code":{{"coding":[{codings}]}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-03-01T10:00:00Z","valueQuantity":{{"value":1.1,"unit":"mg/dL"}}}}"#
    )
}

#[test]
fn fhir_codings_of_a_hospital_system_are_mapped_by_system() {
    let dir = tempfile::tempdir().unwrap();
    let lab = r#"{"system":"http://hospital.example/lab","code":"CRE"}"#;
    let snomed = r#"{"system":"http://snomed.info/sct","code":"113075003"}"#;
    let other = r#"{"system":"http://other.example/lab","code":"CRE"}"#;
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            // no category: a lab by its mapped code
            observation(lab, false),
            // the mapped coding preferred to the first one (read as LOINC)
            observation(&format!("{snomed},{lab}"), true),
            // the same code in another system: not mapped (the map names its system)
            observation(other, true),
        ]
        .join("\n"),
    )
    .unwrap();
    let map = dir.path().join("map.tsv");
    std::fs::write(&map, "system\tcode\tloinc\nhttp://hospital.example/lab\tCRE\t2160-0\n").unwrap();
    let (d, r) = data::read(dir.path(), &with_map(&map)).unwrap();
    let cr = d.find_code(LOINC, "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 2, "{:?}", r.findings);
    assert!(d.find_code("http://other.example/lab", "CRE").is_some());
    assert_eq!(count(&r, "no_category"), 0);
    // without the map: the category-less one is skipped, the others local
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(d.find_code(LOINC, "2160-0").is_none());
    assert_eq!(count(&r, "no_category"), 1);
}

#[test]
fn meds_codes_are_mapped_before_their_parents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("meds");
    let t = 1_700_000_000_000_000i64;
    common::meds::shard(
        &root.join("data/0.parquet"),
        "MICROS",
        &[
            (1, Some(t), "LAB//50912//mg/dL", Some(1.1), None),
            (1, Some(t), "LAB//50971//mEq/L", Some(4.0), None),
            // a code that is no LAB// code, its result as text: a lab by the map, not a note
            (1, Some(t + 1), "HOSP//CRE", None, Some("1.3")),
        ],
    );
    // the metadata says creatinine is CRP (a wrong parent): the site's map wins
    common::meds::code_parent(&root, "LAB//50912//mg/dL", "LOINC/1988-5");
    let map = dir.path().join("map.csv");
    std::fs::write(
        &map,
        "code,loinc,unit\nLAB//50912//mg/dL,2160-0,\nLAB//50971//mEq/L,2823-3,\nHOSP//CRE,2160-0,mg/dL\n",
    )
    .unwrap();
    let opts = with_map(&map);
    let (d, r) = data::read(&root, &opts).unwrap();
    assert!(d.find_code(LOINC, "1988-5").is_none());
    let cr = d.find_code(LOINC, "2160-0").unwrap();
    let k = d.find_code(LOINC, "2823-3").unwrap();
    let mut cr_values: Vec<f32> = d.events.iter().filter(|e| e.code == cr).map(|e| e.value).collect();
    cr_values.sort_by(f32::total_cmp);
    assert_eq!(cr_values, [1.1, 1.3]);
    assert!(d.events.iter().all(|e| e.kind == EventKind::Lab), "{:?}", d.events);
    // the code's own unit (LAB//...//mEq/L) converted to the catalogue's
    let e = d.events.iter().find(|e| e.code == k).unwrap();
    assert_eq!(d.units.names[e.unit as usize], "mmol/L");
    assert_eq!(count(&r, "code_mapped"), 3);
    // the row reader (the tests' twin) reads the same
    let (mut d2, mut r2) = (data::Dataset::default(), data::Report::default());
    data::meds::read_rows_reference(&root, &opts, &mut d2, &mut r2).unwrap();
    let key = |d: &data::Dataset| {
        let mut v: Vec<(String, f32, EventKind)> =
            d.events.iter().map(|e| (d.codes[e.code as usize].code.clone(), e.value, e.kind)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        v
    };
    assert_eq!(key(&d), key(&d2));
}

/// A map row without a system takes local codes, not a SNOMED CT or HL7 code that happens to be equal
/// (an Encounter's class `EMER`, a note's type).
#[test]
fn rows_without_a_system_take_no_public_systems_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Encounter.ndjson"),
        r#"{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"subject":{"reference":"Patient/a"},"period":{"start":"2024-01-01"}}"#,
    )
    .unwrap();
    let map = dir.path().join("map.csv");
    std::fs::write(&map, "code,loinc\nEMER,2160-0\n").unwrap();
    let (d, r) = data::read(dir.path(), &with_map(&map)).unwrap();
    assert!(d.find_code(LOINC, "2160-0").is_none());
    assert_eq!(count(&r, "code_mapped"), 0);
}

/// Found by review: systems are read without a trailing `/` (`http://lab.example/codes/`), so a map
/// that names the system as the data write it must be read so too, or its rows map nothing.
#[test]
fn a_system_with_a_trailing_slash_maps_as_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("map.csv");
    std::fs::write(&map, "code,system,loinc\nCRE,https://lab.example.org/codes/,2160-0\n").unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let obs = serde_json::json!({ "resourceType": "Observation", "status": "final",
        "category": [{ "coding": [{ "code": "laboratory" }] }],
        "code": { "coding": [{ "system": "https://lab.example.org/codes/", "code": "CRE" }] },
        "subject": { "reference": "Patient/a" }, "effectiveDateTime": "2024-01-02T08:00:00Z",
        "valueQuantity": { "value": 1.1, "unit": "mg/dL" } });
    std::fs::write(input.join("Observation.ndjson"), obs.to_string() + "\n").unwrap();
    let (d, r) = data::read(&input, &with_map(&map)).unwrap();
    let e = d.events.iter().find(|e| e.kind == EventKind::Lab).expect("a lab");
    assert_eq!(d.codes[e.code as usize].code, "2160-0", "{:?}", r.findings);
    assert_eq!(count(&r, "code_map_unused"), 0);
}

/// A code map's `jlac10` written as the readers read one (MEDIS' hyphenated form, lower case, full
/// width) was refused as no JLAC10 code: it maps to the catalogue test it names.
#[test]
fn a_code_maps_jlac10_may_be_written_with_hyphens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.csv");
    std::fs::write(&path, "code,jlac10\nCRE,3C015-0000-023-271-01\nK,３Ｈ０１５０００００２３２７１０１\n").unwrap();
    let map = load(&path);
    let test =
        |code: &str| map.get("http://lab.example/codes", code).and_then(|i| map.catalogue_test(i)).map(|l| l.name);
    assert_eq!(test("CRE"), Some("creatinine"));
    assert!(test("K").is_some());
}
