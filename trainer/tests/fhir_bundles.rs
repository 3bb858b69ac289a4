//! FHIR Bundles: a directory of `.json` documents as Synthea writes them (a transaction Bundle per
//! patient, pretty-printed, references as `urn:uuid:`) and Bundles on NDJSON lines, their entries read
//! as lines of their own; findings at the lines the entries start on.

use medtrain::data::{self, guard::Policy, EventKind, ReadOptions};
use serde_json::json;
use std::path::Path;

/// The dataset's notes in time order (their texts).
fn notes_by_time(d: &data::Dataset) -> Vec<&str> {
    let mut notes: Vec<(i64, &str)> = d
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Note)
        .map(|e| (e.time, d.texts[e.text as usize].as_str()))
        .collect();
    notes.sort();
    notes.into_iter().map(|n| n.1).collect()
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

const NOTE: &str = "本日香川健が来院。連絡は０３ ９８ ７６ ５４ ３２ へ。";

/// A Synthea-like transaction Bundle for patient `id`: the Patient (without its `id` when `with_id` is
/// false: the entry's `fullUrl` names it), an Encounter, a creatinine, a note naming the patient, and
/// an Observation whose value does not parse.
fn synthea(id: &str, with_id: bool, bad_value: bool) -> serde_json::Value {
    let subject = json!({ "reference": format!("urn:uuid:{id}") });
    let mut patient = json!({
        "resourceType": "Patient",
        "name": [{ "family": "香川", "given": ["健"] }],
        "telecom": [{ "system": "phone", "value": "03-9876-5432" }],
    });
    if with_id {
        patient["id"] = json!(id);
    }
    let lab = |value: serde_json::Value| {
        json!({
            "resourceType": "Observation", "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory" }] }],
            "code": { "coding": [{ "system": "http://loinc.org", "code": "2160-0", "display": "Creatinine" }] },
            "subject": subject, "effectiveDateTime": "2014-07-29T06:51:05-04:00",
            "valueQuantity": { "value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL" }
        })
    };
    let mut entries = vec![
        json!({ "fullUrl": format!("urn:uuid:{id}"), "resource": patient, "request": { "method": "POST", "url": "Patient" } }),
        json!({ "fullUrl": "urn:uuid:e1", "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER" },
            "subject": subject, "period": { "start": "2014-07-29T06:00:00-04:00", "end": "2014-07-29T09:00:00-04:00" }
        }}),
        json!({ "fullUrl": "urn:uuid:o1", "resource": lab(json!(1.1)) }),
        json!({ "fullUrl": "urn:uuid:d1", "resource": {
            "resourceType": "DocumentReference", "status": "current", "subject": subject, "date": "2014-07-29T10:00:00Z",
            "content": [{ "attachment": { "contentType": "text/plain", "data": b64(NOTE) } }]
        }}),
        // a transaction's DELETE: no resource
        json!({ "request": { "method": "DELETE", "url": "Observation/x" } }),
    ];
    if bad_value {
        entries.push(json!({ "fullUrl": "urn:uuid:o2", "resource": lab(json!("abc")) }));
    }
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn write(dir: &Path, name: &str, v: &serde_json::Value) {
    std::fs::write(dir.join(name), serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn count(r: &data::Report, kind: &str) -> u64 {
    r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum()
}

#[test]
fn a_directory_of_synthea_bundles_is_read_entry_by_entry() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Kagawa_Ken_a1.json", &synthea("a1", true, false));
    // a Patient without an id: its entry's fullUrl names it, as the references do
    write(dir.path(), "Kagawa_Ken_b2.json", &synthea("b2", false, false));
    // Synthea's organization and practitioner documents: Bundles of resources not read
    write(
        dir.path(),
        "hospitalInformation1.json",
        &json!({ "resourceType": "Bundle", "type": "batch", "entry": [{ "resource": { "resourceType": "Organization", "id": "o" } }] }),
    );
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(r.files, 3);
    assert_eq!(d.subjects.len(), 2);
    assert_eq!(d.patients.len(), 2, "both Patients known, the one without an id by its fullUrl");
    assert_eq!(count(&r, "subject_without_patient"), 0);
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    let labs: Vec<&data::Event> = d.events.iter().filter(|e| e.code == cr).collect();
    assert_eq!(labs.len(), 2);
    assert!(labs
        .iter()
        .all(|e| e.kind == EventKind::Lab && e.time == data::time::utc("2014-07-29T10:51:05Z").unwrap()));
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Encounter).count(), 2);
    // each note names its patient: found by the Patient of the same Bundle, and redacted
    assert_eq!(d.texts.len(), 2);
    assert!(d.texts.iter().all(|t| !t.contains("香川") && t.contains("[NAME]")), "{:?}", d.texts);
    assert!(r.findings.iter().any(|f| f.field == "subject_identifier"));
    assert_eq!(r.resources.get("Bundle"), Some(&3));
    assert_eq!(r.resources.get("Patient"), Some(&2));
    // under reject the Patients' names block, as in an NDJSON export
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(r.blocking);
}

#[test]
fn an_entry_that_does_not_parse_is_a_malformed_line_where_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = synthea("a1", true, true);
    write(dir.path(), "Yamada_Taro.json", &bundle);
    let text = serde_json::to_string_pretty(&bundle).unwrap();
    // the bad Observation is the last entry: its `"resource": {` line
    let want = text.lines().enumerate().filter(|(_, l)| l.contains("\"resource\"")).last().unwrap().0 as u64 + 1;
    let (_, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    assert_eq!(r.malformed_count(), 1);
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    let lines = serde_json::to_string(&f.lines).unwrap();
    assert!(lines.contains(&want.to_string()), "{lines} should hold {want}: {:?}", f);
    // a document is named by its place in name order, never by its file name (often the patient's)
    assert!(f.file.as_deref() == Some("document-1"), "{f:?}");
}

#[test]
fn bundles_on_ndjson_lines_nested_ones_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut inner = synthea("c3", true, false);
    // a batch-response's search result (a Bundle in a Bundle): read; a Bundle in that: not read, said
    let lab = inner["entry"][2]["resource"].clone();
    inner["entry"].as_array_mut().unwrap().push(json!({ "resource": { "resourceType": "Bundle", "type": "searchset",
        "entry": [{ "resource": lab }, { "resource": { "resourceType": "Bundle", "entry": [] } }] } }));
    std::fs::write(
        dir.path().join("export.ndjson"),
        format!(
            "{}\n{}\n",
            serde_json::to_string(&inner).unwrap(),
            serde_json::to_string(&synthea("d4", true, false)).unwrap()
        ),
    )
    .unwrap();
    // with NDJSON files present, .json documents are read too; one that names no resource (a bulk
    // export's manifest) is said, not read
    std::fs::write(dir.path().join("manifest.json"), r#"{"transactionTime":"2024-01-01","output":[]}"#).unwrap();
    std::fs::write(dir.path().join("more.json"), serde_json::to_string(&synthea("f6", true, false)).unwrap()).unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.subjects.len(), 3);
    assert_eq!(count(&r, "bundle_not_read"), 1);
    assert_eq!((count(&r, "unread_file"), count(&r, "not_fhir_file")), (0, 1), "{:?}", r.findings);
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 4, "three Bundles' labs and the search result's");
    // a document over read.max_line_bytes is a malformed line, not read
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "big.json", &synthea("e5", true, false));
    let mut opts = ReadOptions::default();
    opts.limits.max_line_bytes = 1000;
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    // a lost document weighs as the resources it held (as far as read), not as one line
    assert!(r.malformed_count() > 1 && d.events.is_empty(), "{}", r.malformed_count());
    // a single .json file is an input too; a document that is no JSON is one malformed line
    let one = dir.path().join("big.json");
    let (d, _) = data::read(&one, &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 1);
    std::fs::write(&one, "{\"resourceType\": \"Bundle\", \"entry\": [").unwrap();
    let (_, r) = data::read(&one, &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 1);
}

/// Found on a generator's Bundles (carebundle) and HL7's examples: one bad entry per Bundle counted a
/// whole document as the malformed line (100% malformed, blocking at any tolerance), an Encounter
/// without its class was a malformed line, and a measurement without a category was dropped with an
/// info only.
#[test]
fn malformed_entries_are_a_fraction_of_resources_and_a_classless_encounter_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    for p in 0..20 {
        write(dir.path(), &format!("p{p}.json"), &synthea(&format!("p{p}"), true, true));
    }
    // 20 bad entries among 20 x 6 resources (and 20 documents)
    let opts = |max| ReadOptions { identifiers: Policy::Redact, max_malformed_fraction: max, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts(0.2)).unwrap();
    assert_eq!(r.malformed_count(), 20);
    assert_eq!(r.lines, 20 + 20 * 5, "a document and its entries with a resource");
    assert!(!r.blocking, "{:?}", r.findings);
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 20);
    let (_, r) = data::read(dir.path(), &opts(0.1)).unwrap();
    assert!(r.blocking);
    // an Encounter without a class, and a quantity without a category whose code is no catalogue test
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.ndjson"),
        [
            r#"{"resourceType":"Encounter","status":"finished","subject":{"reference":"Patient/a"},"period":{"start":"2024-01-01"}}"#,
            r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"15074-8"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":6.3,"unit":"mmol/L"}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0);
    let sev = |kind: &str| r.findings.iter().find(|f| f.kind == kind).map(|f| (f.severity, f.count));
    assert_eq!(sev("no_class"), Some((data::check::Severity::Warning, 1)));
    assert_eq!(sev("no_category"), Some((data::check::Severity::Warning, 1)));
}

/// A bulk export client's log beside the export (cumulus-etl's `log.ndjson`: JSON lines with no
/// `resourceType`) made every one of its lines malformed and the export blocked.
#[test]
fn an_ndjson_file_of_no_fhir_resources_is_not_read_and_said() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("log.ndjson"),
        "{\"exportId\":\"x\",\"timestamp\":\"2024-01-01T00:00:00Z\",\"eventId\":\"kickoff\"}\n{\"eventId\":\"complete\"}\n",
    )
    .unwrap();
    let obs = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-01","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    // a FHIR file with a stray line: still read, the line malformed
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{obs}\n{{\"note\":\"no type\"}}\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 0.5, ..Default::default() }).unwrap();
    assert_eq!(d.events.len(), 1);
    assert_eq!(r.malformed_count(), 1);
    let f = r.findings.iter().find(|f| f.kind == "not_fhir_file").unwrap();
    assert_eq!((f.severity, f.count, f.detail.as_deref()), (data::check::Severity::Warning, 1, Some("log.ndjson")));
    // one line without a newline at its end is judged whole
    std::fs::write(dir.path().join("log.ndjson"), "{\"eventId\":\"complete\"}").unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 0.5, ..Default::default() }).unwrap();
    assert!(r.findings.iter().any(|f| f.kind == "not_fhir_file"));
}

/// Results written inside a DiagnosticReport (`contained`, `result: #r1`, HL7's CBC example) were
/// not read at all: read with the report's subject, category and time where they have none.
#[test]
fn observations_contained_in_a_report_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("DiagnosticReport.ndjson"),
        r##"{"resourceType":"DiagnosticReport","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"HM"}]}],"contained":[{"resourceType":"Observation","id":"r1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"valueQuantity":{"value":13.5,"unit":"g/dL"}},{"resourceType":"Observation","id":"r2","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"effectiveDateTime":"2024-01-01T08:00:00Z","valueQuantity":{"value":1.1,"unit":"mg/dL"},"note":[{"text":"090-1234-5678"}]},{"resourceType":"Observation","id":"r3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"valueQuantity":{"value":"x"}}],"code":{"text":"panel"},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02T08:00:00Z","result":[{"reference":"#r1"},{"reference":"#r2"}]}"##,
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.subjects.len(), 1);
    let mut labs: Vec<(f32, i64)> =
        d.events.iter().filter(|e| e.kind == EventKind::Lab).map(|e| (e.value, e.time)).collect();
    labs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // the report's time where a result has none; a result's own time kept
    assert_eq!(
        labs,
        [
            (1.1, data::time::utc("2024-01-01T08:00:00Z").unwrap()),
            (13.5, data::time::utc("2024-01-02T08:00:00Z").unwrap())
        ]
    );
    // a result's note scanned as any Observation's; one that does not parse said
    assert!(r.blocking && r.findings.iter().any(|f| f.kind == "phone" && f.field == "note.text"), "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.kind == "contained_observation_not_read").unwrap();
    assert_eq!((f.severity, f.count, f.resource.as_str()), (data::check::Severity::Warning, 1, "DiagnosticReport"));
}

/// Found by review: a Patient whose id is not its entry's `urn:uuid:` (the references use the fullUrl)
/// was two subjects, its identifiers not searched for in the notes filed under the fullUrl; a lost
/// document weighed as one line against a thousand; a label file beside the documents made the
/// directory CSV; one stray first line skipped a whole NDJSON file.
#[test]
fn review_findings_on_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = synthea("aaa", true, false);
    b["entry"][0]["resource"]["id"] = json!("p1");
    write(dir.path(), "one.json", &b);
    std::fs::write(dir.path().join("labels.csv"), "subject_id,prediction_time,boolean_value\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    assert_eq!(d.subjects.len() - d.merged_into.len(), 1, "{:?}", r.findings);
    assert!(d.texts.iter().all(|t| !t.contains("香川")), "{:?}", d.texts);
    // a truncated document among good ones
    let text = serde_json::to_string_pretty(&synthea("b", true, false)).unwrap();
    std::fs::write(dir.path().join("two.json"), &text[..text.len() / 2]).unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 0.15, ..Default::default() }).unwrap();
    assert!(r.malformed_count() >= 2 && r.blocking, "{} of {}", r.malformed_count(), r.lines);
    // NDJSON whose first line is a stray object: read, the line malformed
    let dir = tempfile::tempdir().unwrap();
    let obs = serde_json::to_string(&synthea("c", true, false)["entry"][2]["resource"]).unwrap();
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{{\"id\":\"x\"}}\n{obs}\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 0.5, ..Default::default() }).unwrap();
    assert_eq!((d.events.len(), r.malformed_count()), (1, 1));
}

#[test]
fn ndjson_saved_with_a_json_name_is_read_as_ndjson() {
    // a bulk export's files renamed `.json` (and one patient's resources in a file named after them):
    // each line a resource, read as NDJSON is, said, and named as the document it is
    let dir = tempfile::tempdir().unwrap();
    let bundle = synthea("a1", true, true);
    let lines: Vec<String> =
        bundle["entry"].as_array().unwrap().iter().filter_map(|e| e.get("resource")).map(|r| r.to_string()).collect();
    assert_eq!(lines.len(), 5);
    std::fs::write(dir.path().join("Yamada_Taro.json"), lines.join("\n") + "\n").unwrap();
    // a pretty-printed document and a one-line document beside it are documents still
    write(dir.path(), "b.json", &synthea("b2", true, false));
    std::fs::write(dir.path().join("c.json"), synthea("c3", true, false).to_string() + "\n\n").unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, max_malformed_fraction: 0.5, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    assert_eq!(count(&r, "ndjson_in_json_file"), 1);
    assert_eq!(d.patients.len(), 3);
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 3);
    assert_eq!(d.texts.len(), 3);
    assert!(d.texts.iter().all(|t| !t.contains("香川")), "{:?}", d.texts);
    // the Observation whose value does not parse: line 5 of the first document, never its file name
    let m: Vec<_> = r.findings.iter().filter(|f| f.kind == "malformed_line").collect();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!((m[0].file.as_deref(), m[0].lines.as_slice()), (Some("document-1"), &[5u64][..]));
    let shown = serde_json::to_string(&r.findings).unwrap();
    assert!(!shown.contains("Yamada"), "{shown}");
}

#[test]
fn a_contained_result_of_another_patient_has_its_note_searched_for_that_patients_identifiers() {
    // found by review: a report's own result noted its subject's free text first, and a contained
    // result naming another patient then had its note dropped from the search for that patient's name
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Patient.ndjson"),
        concat!(
            r#"{"resourceType":"Patient","id":"a","name":[{"family":"山田","given":["花子"]}]}"#,
            "\n",
            r#"{"resourceType":"Patient","id":"b","name":[{"family":"香川","given":["健"]}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let result = |id: &str, subject: &str, note: &str| {
        json!({
            "resourceType": "Observation", "id": id, "status": "final", "subject": { "reference": subject },
            "code": { "coding": [{ "system": "http://loinc.org", "code": "2160-0" }] },
            "valueQuantity": { "value": 1.1, "unit": "mg/dL" }, "note": [{ "text": note }]
        })
    };
    let report = json!({
        "resourceType": "DiagnosticReport", "status": "final", "code": { "text": "panel" },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CH" }] }],
        "subject": { "reference": "Patient/a" }, "effectiveDateTime": "2024-01-02T08:00:00Z",
        "contained": [result("r1", "Patient/a", "再検"), result("r2", "Patient/b", "香川さんに電話")],
    });
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), report.to_string() + "\n").unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    let f = r.findings.iter().filter(|f| f.field == "note.text.subject_identifier").map(|f| f.count).sum::<u64>();
    assert_eq!(f, 1, "{:?}", r.findings);
}

/// A DiagnosticReport's text (a radiology report: JP Core's `presentedForm` and `conclusion`) was
/// counted and skipped: read as one note, at its effective time, coded by its code; its conclusion
/// once where the attachment already holds it; a report whose only form is a PDF and that has no
/// conclusion counted; a lab panel without text still no note.
#[test]
fn a_diagnostic_reports_text_is_read_as_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let report = |id: &str, forms: serde_json::Value, conclusion: Option<&str>| {
        let mut r = json!({
            "resourceType": "DiagnosticReport", "id": id, "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study" }] },
            "subject": { "reference": "Patient/p1" }, "effectiveDateTime": "2024-03-01T09:00:00+09:00",
            "issued": "2024-03-02T09:00:00+09:00", "presentedForm": forms,
        });
        if let Some(c) = conclusion {
            r["conclusion"] = json!(c);
        }
        r.to_string()
    };
    let body = "胸部単純X線: 右下肺野に浸潤影あり。";
    let lines = [
        // attachment and a conclusion it does not hold: both, one note
        report("r1", json!([{ "contentType": "text/plain; charset=utf-8", "data": b64(body) }]), Some("肺炎疑い")),
        // a conclusion the attachment holds: once
        report("r2", json!([{ "contentType": "text/plain", "data": b64("所見なし。結論: 異常なし") }]), Some("異常なし")),
        // a conclusion alone, the time from `issued` when no effective time
        json!({ "resourceType": "DiagnosticReport", "status": "partial", "subject": { "reference": "Patient/p1" },
                "issued": "2024-03-05T10:00:00Z", "conclusion": "CT: no acute change" })
        .to_string(),
        // a PDF only, no conclusion: counted
        report("r4", json!([{ "contentType": "application/pdf", "data": b64("%PDF-1.4") }]), None),
        // a lab panel: no text, no note, no finding of a note
        json!({ "resourceType": "DiagnosticReport", "status": "final", "code": { "text": "CBC" },
                "subject": { "reference": "Patient/p1" }, "result": [{ "reference": "Observation/o1" }] })
        .to_string(),
        // entered in error: not read
        json!({ "resourceType": "DiagnosticReport", "status": "entered-in-error", "subject": { "reference": "Patient/p1" },
                "effectiveDateTime": "2024-03-01", "conclusion": "wrong patient" })
        .to_string(),
    ];
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let mut notes: Vec<(&str, i64, &str)> = d
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Note)
        .map(|e| (d.codes[e.code as usize].code.as_str(), e.time, d.texts[e.text as usize].as_str()))
        .collect();
    notes.sort();
    let at = |t: &str| data::time::utc(t).unwrap();
    assert_eq!(
        notes,
        [
            ("18748-4", at("2024-03-01T00:00:00Z"), "所見なし。結論: 異常なし"),
            ("18748-4", at("2024-03-01T00:00:00Z"), "胸部単純X線: 右下肺野に浸潤影あり。\n肺炎疑い"),
            ("note", at("2024-03-05T10:00:00Z"), "CT: no acute change"),
        ]
    );
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!(count("no_text_attachment"), 1, "{:?}", r.findings);
    assert_eq!(count("skipped_status"), 1);
    // `partial` is a DiagnosticReport status
    assert_eq!(count("unknown_status"), 0);
    assert!(!r.blocking, "{:?}", r.findings);
}

/// Synthea writes each note as a DiagnosticReport and a DocumentReference with the same text: read
/// once, whichever comes first (a Bundle's order, or the files' `DiagnosticReport.ndjson` before
/// `DocumentReference.ndjson`); two reports of one text are the input's duplicates, not matched. The
/// guard's findings in the text are counted once per note read (they were counted for the copy too).
#[test]
fn a_note_written_as_report_and_document_is_read_once() {
    let note = "Patient presents with fatigue. Plan: follow up in 2 weeks, call 03-1234-5678.";
    let subject = json!({ "reference": "urn:uuid:p1" });
    let report = json!({
        "resourceType": "DiagnosticReport", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "34117-2" }] },
        "subject": subject, "effectiveDateTime": "2014-07-29T06:00:00-04:00",
        "presentedForm": [{ "contentType": "text/plain; charset=utf-8", "data": b64(note) }]
    });
    let document = json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": { "coding": [{ "system": "http://loinc.org", "code": "34117-2" }] },
        "subject": subject, "date": "2014-07-29T06:00:00-04:00",
        "content": [{ "attachment": { "contentType": "text/plain; charset=utf-8", "data": b64(note) } }]
    });
    let patient = json!({ "resourceType": "Patient", "id": "p1" });
    let notes = |dir: &Path| {
        let (d, r) = data::read(dir, &ReadOptions::default()).unwrap();
        let n = d.events.iter().filter(|e| e.kind == EventKind::Note).count();
        let once = r.findings.iter().find(|f| f.kind == "note_in_document_reference").map(|f| f.count);
        let phones: u64 = r.findings.iter().filter(|f| f.kind == "phone").map(|f| f.count).sum();
        assert_eq!(phones, n as u64, "{:?}", r.findings);
        (n, once)
    };
    // a Bundle per patient, the report first
    let dir = tempfile::tempdir().unwrap();
    let entries = [&patient, &report, &document].map(|r| json!({ "resource": r }));
    write(dir.path(), "p1.json", &json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }));
    assert_eq!(notes(dir.path()), (1, Some(1)));
    // NDJSON, the document's file first in the files' order, and a second report of the same text
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Patient.ndjson"), patient.to_string() + "\n").unwrap();
    std::fs::write(dir.path().join("A_DocumentReference.ndjson"), document.to_string() + "\n").unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), format!("{report}\n{report}\n")).unwrap();
    assert_eq!(notes(dir.path()), (2, Some(1)));
    // another time: two notes
    let mut later = report.clone();
    later["effectiveDateTime"] = json!("2014-07-30T06:00:00-04:00");
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), later.to_string() + "\n").unwrap();
    assert_eq!(notes(dir.path()), (2, None));
}

/// A report read as a note scans its text (a phone number in the conclusion is a finding, redacted
/// under `redact`) and searches it for its patient's own identifiers; its `subject.display` is one
/// finding even with results written inside it.
#[test]
fn a_diagnostic_reports_text_goes_through_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Patient.ndjson"),
        json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "香川", "given": ["健"] }] }).to_string()
            + "\n",
    )
    .unwrap();
    let report = json!({
        "resourceType": "DiagnosticReport", "status": "final", "subject": { "reference": "Patient/p1", "display": "香川 健" },
        "effectiveDateTime": "2024-03-01T09:00:00Z",
        "conclusion": "香川健様 異常なし。連絡先 090-1234-5678",
        "contained": [{ "resourceType": "Observation", "id": "r1", "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "718-7" }] },
            "valueQuantity": { "value": 13.5, "unit": "g/dL" } }]
    });
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), report.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    let text = d.events.iter().find(|e| e.kind == EventKind::Note).map(|e| d.texts[e.text as usize].clone()).unwrap();
    assert!(!text.contains("090") && !text.contains("香川"), "{text}");
    assert!(text.contains("異常なし"), "{text}");
    let find = |kind: &str, field: &str| {
        r.findings.iter().filter(|f| f.kind == kind && f.field == field).map(|f| f.count).sum::<u64>()
    };
    assert_eq!(find("phone", "conclusion"), 1, "{:?}", r.findings);
    assert_eq!(find("name", "subject.display"), 1, "{:?}", r.findings);
    // the name (by the scanner's cue, `様`, or as the patient's own)
    assert!(find("name", "conclusion") + find("name", "subject_identifier") >= 1, "{:?}", r.findings);
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 1);
}

/// Found by review: a lab panel with text was held to what a note needs (a form that is not base64,
/// a time that does not parse made the line malformed and lost its results); its note not read is a
/// warning, its results read. The results of a report entered in error are not read, as it is not.
#[test]
fn a_reports_note_that_cannot_be_read_does_not_lose_its_results() {
    let result = json!({ "resourceType": "Observation", "id": "r1", "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "718-7" }] },
        "effectiveDateTime": "2024-01-02T08:00:00Z", "valueQuantity": { "value": 13.5, "unit": "g/dL" } });
    let panel = |extra: serde_json::Value| {
        let mut r = json!({ "resourceType": "DiagnosticReport", "status": "final", "subject": { "reference": "Patient/a" },
            "effectiveDateTime": "2024-01-02T08:00:00Z", "conclusion": "normal", "contained": [result] });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                r.as_object_mut().unwrap().remove(k);
            } else {
                r[k] = v.clone();
            }
        }
        r.to_string()
    };
    for (case, extra, warning) in [
        (
            "not base64",
            json!({ "presentedForm": [{ "contentType": "text/plain", "data": "%%%" }] }),
            "report_note_not_read",
        ),
        ("bad time", json!({ "effectiveDateTime": "yesterday" }), "report_note_not_read"),
        ("no time", json!({ "effectiveDateTime": null }), "no_time"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("DiagnosticReport.ndjson"), panel(extra) + "\n").unwrap();
        let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        let kinds = |k: EventKind| d.events.iter().filter(|e| e.kind == k).count();
        assert_eq!((kinds(EventKind::Lab), kinds(EventKind::Note)), (1, 0), "{case}: {:?}", r.findings);
        assert!(!r.blocking && !r.findings.iter().any(|f| f.kind == "malformed_line"), "{case}: {:?}", r.findings);
        let f = r.findings.iter().find(|f| f.kind == warning).unwrap_or_else(|| panic!("{case}: {:?}", r.findings));
        assert_eq!(f.severity, data::check::Severity::Warning, "{case}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), panel(json!({ "status": "entered-in-error" })) + "\n")
        .unwrap();
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 0);
}

/// Found by a tester: a zero-byte `.ndjson.gz` beside the others (an export's type with no resources)
/// refused the whole input as a gzip stream cut short; it is an empty file.
#[test]
fn a_zero_byte_gzip_file_is_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Encounter.ndjson.gz"), b"").unwrap();
    std::fs::write(dir.path().join("Observation.ndjson"), lab_obs(json!({})).to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 1);
    assert_eq!(r.files, 2);
}

/// Found by a tester: notes in `text/html` (as EHRs send them) were dropped with an info finding: read
/// as their text (head, scripts, styles, comments dropped), a plain version preferred where both are
/// sent; an OperationOutcome (an export's error file) is a warning.
#[test]
fn html_notes_are_read_as_text_and_an_operation_outcome_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let html = "<html><head><title>x</title><style>p{}</style></head><body><p>胸痛あり</p><script>a()</script><p>Plan: ECG &amp; troponin</p></body></html>";
    let doc = |content: serde_json::Value, date: &str| {
        json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
                "date": date, "content": content })
        .to_string()
    };
    let lines = [
        doc(
            json!([{ "attachment": { "contentType": "text/html; charset=utf-8", "data": b64(html) } }]),
            "2024-01-01T00:00:00Z",
        ),
        doc(
            json!([{ "attachment": { "contentType": "text/html", "data": b64("<p>same</p>") } },
                   { "attachment": { "contentType": "text/plain", "data": b64("same") } }]),
            "2024-01-02T00:00:00Z",
        ),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("OperationOutcome.ndjson"),
        json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "error", "code": "processing",
                "diagnostics": "Patient Zyxwq Canarytest could not be exported" }] })
        .to_string()
            + "\n",
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let mut texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    texts.sort();
    assert_eq!(texts, ["same", "胸痛あり\nPlan: ECG & troponin"]);
    let f = r.findings.iter().find(|f| f.kind == "operation_outcome").expect("said");
    assert_eq!((f.severity, f.count), (data::check::Severity::Warning, 1));
    assert!(!format!("{r:?}").contains("Zyxwq"));
}

/// Found by a tester: an attachment whose data is a contained Binary (`url: "#bin1"`) was dropped as a
/// note without data; one linking a Binary elsewhere (as EHR bulk exports give notes) was an info
/// finding (a warning now: the export's notes are not in its lines); a code written with spaces or a
/// system with a trailing slash was another code than the catalogue's.
#[test]
fn contained_binaries_are_read_links_said_and_codes_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |attachment: serde_json::Value, contained: serde_json::Value| {
        json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
                "date": "2024-01-01T00:00:00Z", "contained": contained, "content": [{ "attachment": attachment }] })
        .to_string()
    };
    let lines = [
        doc(
            json!({ "contentType": "text/plain", "url": "#bin1" }),
            json!([{ "resourceType": "Binary", "id": "bin1", "contentType": "text/plain", "data": b64("退院時サマリー") }]),
        ),
        doc(json!({ "contentType": "text/html", "url": "Binary/e123" }), json!([])),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let lab = lab_obs(json!({ "code": { "coding": [{ "system": "http://loinc.org/", "code": " 2160-0 " }] } }));
    std::fs::write(dir.path().join("Observation.ndjson"), lab.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let notes: Vec<&str> =
        d.events.iter().filter(|e| e.kind == EventKind::Note).map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(notes, ["退院時サマリー"]);
    let f = r.findings.iter().find(|f| f.kind == "note_by_url").expect("said");
    assert_eq!((f.severity, f.count), (data::check::Severity::Warning, 1));
    let lab = d.events.iter().find(|e| e.kind == EventKind::Lab).unwrap();
    let code = &d.codes[lab.code as usize];
    assert_eq!((code.system.as_str(), code.code.as_str()), ("http://loinc.org", "2160-0"));
}

/// Found by review: `<header>` was read as `<head>` (the note after it dropped); a note of a million
/// comments took minutes (each opener searched again from every tag); a Binary named by many
/// attachments was decoded once per attachment.
#[test]
fn html_headers_long_comments_and_binaries_named_twice() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |content: serde_json::Value, contained: serde_json::Value, date: &str| {
        json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
                "date": date, "contained": contained, "content": content })
        .to_string()
    };
    let html = |h: &str| json!([{ "attachment": { "contentType": "text/html", "data": b64(h) } }]);
    let many = "<!---->".repeat(300_000) + "<p>end</p>" + &"<".repeat(200_000);
    let twice = json!([{ "attachment": { "contentType": "text/plain", "url": "#b" } },
                       { "attachment": { "contentType": "text/plain", "url": "#b" } }]);
    let binary = json!([{ "resourceType": "Binary", "id": "b", "contentType": "text/plain", "data": b64("一度") }]);
    let lines = [
        doc(html("<body><header>Clinic</header><p>胸痛</p></body>"), json!([]), "2024-01-01T00:00:00Z"),
        doc(html(&many), json!([]), "2024-01-02T00:00:00Z"),
        doc(twice, binary, "2024-01-03T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(texts[0], "Clinic\n胸痛");
    assert!(texts[1].starts_with("end\n<<<"), "{}", &texts[1][..20]);
    assert_eq!(texts[2], "一度");
}

/// A laboratory Observation of patient `a`: creatinine, 1.1 mg/dL at 2024-01-02T08:00:00Z, with the
/// fields of `with` in their place or beside them (a field `null` in `with` is left out).
fn lab_obs(with: serde_json::Value) -> serde_json::Value {
    let mut o = json!({ "resourceType": "Observation", "status": "final",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "2160-0" }] }, "subject": { "reference": "Patient/a" },
        "effectiveDateTime": "2024-01-02T08:00:00Z", "valueQuantity": { "value": 1.1, "unit": "mg/dL" } });
    let fields = o.as_object_mut().unwrap();
    for (k, v) in with.as_object().unwrap() {
        if v.is_null() {
            fields.remove(k);
        } else {
            fields.insert(k.clone(), v.clone());
        }
    }
    o
}

/// A DocumentReference of patient `a` at `date` whose one attachment holds `data` (any bytes) as `ct`.
fn doc(data: &[u8], ct: &str, date: &str) -> String {
    use base64::Engine;
    json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
            "date": date, "content": [{ "attachment": { "contentType": ct,
            "data": base64::engine::general_purpose::STANDARD.encode(data) } }] })
    .to_string()
}

/// Found by a tester: a note in UTF-16 with its byte-order mark (as Windows tools write text) was an
/// undecodable note; the mark says the encoding, and a UTF-8 mark is not part of the text.
#[test]
fn an_attachment_with_a_byte_order_mark_is_read_in_its_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend("胸痛あり".encode_utf16().flat_map(|u| u.to_le_bytes()));
    let mut utf8 = vec![0xEF, 0xBB, 0xBF];
    utf8.extend("発熱".as_bytes());
    let lines = [
        doc(&utf16, "text/plain", "2024-01-01T00:00:00Z"),
        doc(&utf8, "text/plain; charset=utf-8", "2024-01-02T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(texts, ["胸痛あり", "発熱"], "{:?}", r.findings);
}

/// Found by review: UTF-16 without a byte-order mark is valid UTF-8 with a NUL beside each character,
/// and hid every identifier from the guard; it is read as UTF-16 (and text with a NUL is not read). A
/// `<head>` without its end tag ends where the body starts.
#[test]
fn utf16_without_a_mark_is_read_as_utf16_and_a_head_ends_at_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let utf16: Vec<u8> = "MRN: 1234567, call 090-1234-5678".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let lines = [
        doc(&utf16, "text/plain", "2024-01-01T00:00:00Z"),
        doc(b"<html><head><title>t</title><body><p>kept</p></body>", "text/html", "2024-01-02T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(texts, ["MRN: [PATIENT_IDENTIFIER], call [PHONE]", "kept"], "{:?}", r.findings);
}

/// Found by a tester: notes in RTF (`text/rtf`, as EHRs such as Epic send clinical notes) were dropped
/// as attachments without text; read as their text (Japanese in a Shift_JIS font, `\u` characters),
/// the font table, `\info` and headers not read, identifiers found by the guard as in any note; a note
/// also sent as HTML is read from the HTML.
#[test]
fn rtf_notes_are_read_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}{\f1\fcharset128 MS Gothic;}}
{\info{\author Zyxwq Canarytest}}{\header Zyxwq Canarytest MRN 7654321}
\pard\f1 \'94\'ad\'94\'4d\f0  38.5\par
Call 090-1234-5678 \u33016?\u30171?\par}";
    let both = json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
        "date": "2024-01-02T00:00:00Z", "content": [
            { "attachment": { "contentType": "text/rtf", "data": b64(r"{\rtf1 from rtf}") } },
            { "attachment": { "contentType": "text/html", "data": b64("<p>from html</p>") } }] });
    // an HTML form that is only an image: the RTF's text is read
    let image = json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
        "date": "2024-01-04T00:00:00Z", "content": [
            { "attachment": { "contentType": "text/html", "data": b64("<p><img src=\"scan.png\"></p>") } },
            { "attachment": { "contentType": "application/x-rtf", "data": b64(r"{\rtf1 real text}") } }] });
    let lines = [
        doc(rtf, "application/rtf", "2024-01-01T00:00:00Z"),
        both.to_string(),
        doc(b"not rtf at all", "text/rtf", "2024-01-03T00:00:00Z"),
        image.to_string(),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(texts, ["発熱 38.5\nCall [PHONE] 胸痛", "from html", "real text"], "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.kind == "undecodable_note").expect("the one that is not RTF");
    assert_eq!(f.count, 1);
    assert!(!format!("{r:?}").contains("Zyxwq"));
}

/// Found by a tester: an EHR bulk export gives notes as DocumentReferences whose attachments link
/// Binaries of the export (`url: "Binary/id"`, or the server's absolute URL), the text in
/// `Binary.ndjson`: every such note was a `note_by_url` warning. They are read from the Binaries
/// (in whichever file holds them), after the other resources, through the guard and the subject's own
/// identifiers; a Binary the export lacks is still said; an attachment's title is scanned.
#[test]
fn notes_in_binaries_of_the_export_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |links: serde_json::Value, date: &str| {
        let content: Vec<serde_json::Value> =
            links.as_array().unwrap().iter().map(|a| json!({ "attachment": a })).collect();
        json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/p1" },
                "date": date, "type": { "coding": [{ "system": "http://loinc.org", "code": "11506-3" }] },
                "content": content })
        .to_string()
    };
    let lines = [
        doc(
            json!([{ "contentType": "text/plain", "url": "Binary/b1", "title": "Note for Zyxwq Canarytest" }]),
            "2024-01-01T00:00:00Z",
        ),
        // no content type on the attachment: the Binary's says
        doc(json!([{ "url": "Binary/b2" }]), "2024-01-02T00:00:00Z"),
        // an EHR's absolute URLs, one note in HTML and RTF: read from the HTML
        doc(
            json!([{ "contentType": "text/rtf", "url": "https://ehr.example.org/api/FHIR/R4/Binary/b4" },
                   { "contentType": "text/html", "url": "https://ehr.example.org/api/FHIR/R4/Binary/b3" }]),
            "2024-01-03T00:00:00Z",
        ),
        doc(json!([{ "contentType": "text/plain", "url": "Binary/b9" }]), "2024-01-04T00:00:00Z"),
        doc(json!([{ "contentType": "application/pdf", "url": "Binary/b5" }]), "2024-01-05T00:00:00Z"),
        // the Binary's own content type says what its bytes are
        doc(json!([{ "contentType": "text/plain", "url": "Binary/b6/_history/2" }]), "2024-01-06T00:00:00Z"),
        // no Binary's url (a page under one)
        doc(
            json!([{ "contentType": "text/plain", "url": "https://ehr.example.org/Binary/b1/extra/x" }]),
            "2024-01-07T00:00:00Z",
        ),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let patient =
        json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "Canarytest", "given": ["Zyxwq"] }] });
    std::fs::write(dir.path().join("Patient.ndjson"), patient.to_string() + "\n").unwrap();
    let bin = |id: &str, ct: &str, text: &str| {
        json!({ "resourceType": "Binary", "id": id, "contentType": ct, "data": b64(text) }).to_string()
    };
    let binaries = [
        bin("b0", "text/plain", "no note names this one"),
        bin("b1", "text/plain", "Zyxwq Canarytest seen, call 090-1234-5678"),
        bin("b2", "text/html; charset=utf-8", "<p>発熱あり</p>"),
        bin("b3", "text/html", "<p>from html</p>"),
        bin("b4", "text/rtf", r"{\rtf1 from rtf}"),
        bin("b5", "application/pdf", "%PDF-1.7"),
        bin("b6", "text/rtf", r"{\rtf1{\info{\title 03-9999-8888}}from rtf b6}"),
    ];
    // (a file not named after the type: the Binaries are found where they are); an id met twice
    std::fs::write(dir.path().join("export-0007.ndjson"), binaries.join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("export-0008.ndjson"), bin("b1", "text/plain", "again") + "\n").unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let texts = notes_by_time(&d);
    assert_eq!(texts.len(), 4, "{:?}", r.findings);
    assert!(!texts[0].contains("Zyxwq") && !texts[0].contains("090-1234") && texts[0].contains("seen"), "{}", texts[0]);
    assert_eq!(&texts[1..], ["発熱あり", "from html", "from rtf b6"]);
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!(count("note_by_url"), 2, "{:?}", r.findings);
    assert_eq!(count("no_text_attachment"), 1, "{:?}", r.findings);
    assert_eq!(count("duplicate_binary"), 1, "{:?}", r.findings);
    assert_eq!(r.resources.get("DocumentReference"), Some(&7));
    assert_eq!(r.resources.get("Binary"), Some(&8));
    assert!(r.findings.iter().any(|f| f.field == "content.attachment.title.subject_identifier"), "{:?}", r.findings);
    assert!(!format!("{r:?}").contains("Zyxwq"));
    let code = &d.codes[d.events.iter().find(|e| e.kind == EventKind::Note).unwrap().code as usize];
    assert_eq!(code.code.as_str(), "11506-3");
}

/// A DiagnosticReport whose `presentedForm` links a Binary of the export (`url: "Binary/id"`, as a
/// DocumentReference's can) was a `note_by_url` warning (its conclusion alone read): the form is read
/// from the Binaries as a DocumentReference's is, the conclusion with it where the form lacks it; a
/// report whose Binary the export lacks keeps its conclusion; a newer version replaces an older one.
#[test]
fn report_forms_in_binaries_of_the_export_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let report = |id: &str, version: &str, url: &str, conclusion: Option<&str>, date: &str| {
        let mut r = json!({ "resourceType": "DiagnosticReport", "id": id, "status": "final",
            "meta": { "versionId": version, "lastUpdated": format!("{date}T00:00:00Z") },
            "subject": { "reference": "Patient/p1" }, "effectiveDateTime": format!("{date}T00:00:00Z"),
            "code": { "coding": [{ "system": "http://loinc.org", "code": "18748-4" }] },
            "presentedForm": [{ "contentType": "text/plain", "url": url }] });
        if let Some(c) = conclusion {
            r["conclusion"] = json!(c);
        }
        r.to_string()
    };
    let lines = [
        report("r1", "1", "Binary/b1", Some("no acute findings"), "2024-01-01"),
        report("r2", "1", "Binary/b2", Some("also in the form"), "2024-01-02"),
        report("r3", "1", "Binary/missing", Some("conclusion only, call 090-1234-5678"), "2024-01-03"),
        report("r4", "1", "Binary/b4old", None, "2024-01-04"),
        report("r4", "2", "Binary/b4new", None, "2024-01-05"),
    ];
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), lines.join("\n") + "\n").unwrap();
    let bin = |id: &str, text: &str| {
        json!({ "resourceType": "Binary", "id": id, "contentType": "text/plain", "data": b64(text) }).to_string()
    };
    let binaries = [
        bin("b1", "chest film read"),
        bin("b2", "form says: also in the form"),
        bin("b4old", "old"),
        bin("b4new", "new"),
    ];
    std::fs::write(dir.path().join("Binary.ndjson"), binaries.join("\n") + "\n").unwrap();
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let texts = notes_by_time(&d);
    assert_eq!(texts.len(), 4, "{texts:?} {:?}", r.findings);
    assert_eq!(texts[0], "chest film read\nno acute findings");
    assert_eq!(texts[1], "form says: also in the form");
    assert!(texts[2].starts_with("conclusion only") && !texts[2].contains("090-1234"), "{}", texts[2]);
    assert_eq!(texts[3], "new");
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!(count("note_by_url"), 1, "{:?}", r.findings);
    let by_url = r.findings.iter().find(|f| f.kind == "note_by_url").unwrap();
    assert_eq!((by_url.resource.as_str(), by_url.field.as_str()), ("DiagnosticReport", "presentedForm.data"));
    let code = &d.codes[d.events.iter().find(|e| e.kind == EventKind::Note).unwrap().code as usize];
    assert_eq!(code.code.as_str(), "18748-4");
}

/// Found by a tester: a Bundle (a document, as servers write a patient's record) whose
/// DocumentReference links a Binary entry of the same Bundle (`Binary/id`, or `urn:uuid:` its entry's
/// fullUrl), in either order, was a `note_by_url` warning; the Bundle's Binaries are read for it.
#[test]
fn notes_in_binaries_of_a_bundle_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |url: &str| {
        json!({ "resource": { "resourceType": "DocumentReference", "status": "current",
            "subject": { "reference": "Patient/p1" }, "date": "2024-01-01T00:00:00Z",
            "content": [{ "attachment": { "contentType": "text/plain", "url": url } }] } })
    };
    let bin = |id: &str, full_url: &str, text: &str| {
        json!({ "fullUrl": full_url, "resource": { "resourceType": "Binary", "id": id, "contentType": "text/plain",
            "data": b64(text) } })
    };
    let entries = [
        json!({ "resource": { "resourceType": "Patient", "id": "p1" } }),
        bin("b0", "https://h/fhir/Binary/b0", "before its note"),
        doc("Binary/b0"),
        doc("urn:uuid:5e4b1c3a-0000-4000-8000-000000000001"),
        doc("Binary/missing"),
        bin("b1", "urn:uuid:5e4b1c3a-0000-4000-8000-000000000001", "after its note"),
        // Bundles inside (a batch response's searchsets): a note and its Binary in two of them
        json!({ "resource": { "resourceType": "Bundle", "type": "searchset", "entry": [doc("Binary/b2")] } }),
        json!({ "resource": { "resourceType": "Bundle", "type": "searchset", "entry": [bin("b2", "urn:uuid:x2", "in a sibling")] } }),
        // an id two Binaries have: which is meant is not known, neither read, and said
        bin("b0", "https://h/fhir/Binary/b0", "a second b0"),
        // two documents in the Bundle, each with its own `Binary/1`: each note reads its own
        json!({ "resource": { "resourceType": "Bundle", "type": "document", "entry": [doc("Binary/1"), bin("1", "urn:uuid:p", "own P")] } }),
        json!({ "resource": { "resourceType": "Bundle", "type": "document", "entry": [bin("1", "urn:uuid:q", "own Q"), doc("Binary/1")] } }),
    ];
    write(dir.path(), "record.json", &json!({ "resourceType": "Bundle", "type": "batch-response", "entry": entries }));
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let mut texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    texts.sort();
    assert_eq!(texts, ["after its note", "in a sibling", "own P", "own Q"], "{:?}", r.findings);
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!(count("note_by_url"), 2, "{:?}", r.findings);
    assert_eq!(count("duplicate_binary"), 1, "{:?}", r.findings);
    assert_eq!(r.resources.get("DocumentReference"), Some(&6));
    assert_eq!(r.resources.get("Binary"), Some(&6));
}

/// Found by a tester: exports that do not keep to FHIR's dateTime (`2024/01/02 08:00`, a zone without
/// its colon, lower-case `t`/`z`, HL7 v2's `20240102083000`, as converters from HL7 v2 and SS-MIX2
/// write) had every such resource malformed; read as the CSV reader reads them, and counted.
#[test]
fn times_that_do_not_keep_to_fhir_are_read_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let obs = |t: &str| lab_obs(json!({ "effectiveDateTime": t })).to_string();
    let times = [
        "2024-01-02T08:00:00Z",
        "2024-01-02t09:00:00z",
        "2024-01-02T19:00:00+0900",
        "20240102110000",
        "2024/01/02 12:00",
        "soon",
    ];
    std::fs::write(dir.path().join("Observation.ndjson"), times.map(obs).join("\n") + "\n").unwrap();
    let opts = ReadOptions { max_malformed_fraction: 1.0, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let mut at: Vec<i64> = d.events.iter().map(|e| e.time).collect();
    at.sort();
    let t = |s: &str| data::time::utc(s).unwrap();
    assert_eq!(
        at,
        [
            t("2024-01-02T08:00:00Z"),
            t("2024-01-02T09:00:00Z"),
            t("2024-01-02T10:00:00Z"),
            t("2024-01-02T11:00:00Z"),
            t("2024-01-02T12:00:00Z")
        ]
    );
    let f = r.findings.iter().find(|f| f.kind == "nonstandard_time").expect("counted");
    assert_eq!((f.count, f.resource.as_str(), f.field.as_str()), (4, "Observation", "effectiveDateTime"));
    assert_eq!(r.findings.iter().filter(|f| f.kind == "malformed_line").map(|f| f.count).sum::<u64>(), 1);
}

/// Found by a tester: a converter that writes every decimal as a string (`"value": "1.1"`) had every
/// Observation malformed; read, and counted (`number_as_string`); text in its place is still malformed.
#[test]
fn a_decimal_written_as_a_string_is_read_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let obs = |v: serde_json::Value| lab_obs(json!({ "valueQuantity": { "value": v, "unit": "mg/dL" } })).to_string();
    let lines = [obs(json!(" 1.25 ")), obs(json!("high")), obs(json!("NaN")), obs(json!(2)), obs(json!("１．５"))];
    std::fs::write(dir.path().join("Observation.ndjson"), lines.join("\n") + "\n").unwrap();
    let opts = ReadOptions { max_malformed_fraction: 1.0, ..Default::default() };
    let (d, r) = data::read(dir.path(), &opts).unwrap();
    let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(values, [1.25, 2.0, 1.5]);
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!((count("number_as_string"), count("malformed_line")), (2, 2), "{:?}", r.findings);
    assert!(!format!("{r:?}").contains("high"));
}

/// Found by a tester: the narrative (`text.div`) of an Observation, an Encounter, a DocumentReference
/// or a DiagnosticReport was not scanned (a Patient's was): a hand-written narrative that names the
/// patient passed as a clean export. Scanned, and searched for the subject's own identifiers; not kept.
#[test]
fn narratives_of_the_resources_read_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let div = |t: &str| json!({ "status": "additional", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{t}</p></div>") });
    let obs = lab_obs(
        json!({ "text": div("Zyxwq Canarytest, tel 090-1234-5678"), "subject": { "reference": "Patient/p1" } }),
    );
    let enc = json!({ "resourceType": "Encounter", "status": "finished", "text": div("MRN: 7654321"),
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
        "subject": { "reference": "Patient/p1" }, "period": { "start": "2024-01-02T08:00:00Z" } });
    let panel = json!({ "resourceType": "DiagnosticReport", "status": "final", "text": div("Zyxwq Canarytest"),
        "code": { "coding": [{ "system": "http://loinc.org", "code": "24323-8" }] }, "subject": { "reference": "Patient/p1" },
        "effectiveDateTime": "2024-01-02T08:00:00Z" });
    // a `text` that is no Narrative (as converters write it) is none: the lab is read all the same
    let mut plain = obs.clone();
    plain["text"] = json!("Hb 13.2");
    plain["effectiveDateTime"] = json!("2024-01-03T08:00:00Z");
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{obs}\n{plain}\n")).unwrap();
    std::fs::write(dir.path().join("Encounter.ndjson"), enc.to_string() + "\n").unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), panel.to_string() + "\n").unwrap();
    let patient =
        json!({ "resourceType": "Patient", "id": "p1", "name": [{ "family": "Canarytest", "given": ["Zyxwq"] }] });
    std::fs::write(dir.path().join("Patient.ndjson"), patient.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 2, "{:?}", r.findings);
    let found = |kind: &str, resource: &str, field: &str| {
        r.findings.iter().any(|f| f.kind == kind && f.resource == resource && f.field == field)
    };
    assert!(found("phone", "Observation", "text.div"), "{:?}", r.findings);
    assert!(found("name", "Observation", "text.div.subject_identifier"), "{:?}", r.findings);
    assert!(found("patient_identifier", "Encounter", "text.div"), "{:?}", r.findings);
    assert!(found("name", "DiagnosticReport", "text.div.subject_identifier"), "{:?}", r.findings);
    assert!(r.blocking);
    assert!(!format!("{r:?}").contains("Zyxwq"));
}

/// Found by a tester: an Observation whose `effectivePeriod` has only its end was `no_time`; a panel
/// whose results are its `hasMember` Observations was a `no_value` warning (it has none of its own).
#[test]
fn a_period_with_only_its_end_and_a_panel_of_members() {
    let dir = tempfile::tempdir().unwrap();
    let obs = |with: serde_json::Value| lab_obs(with).to_string();
    let lines = [
        obs(json!({ "effectiveDateTime": null, "effectivePeriod": { "end": "2024-01-02T08:00:00Z" } })),
        // a value beside a reason for its absence (invalid R4): which to believe is not known
        obs(json!({ "effectiveDateTime": "2024-01-03T08:00:00Z", "valueQuantity": { "value": 9.9, "unit": "mg/dL" },
                    "dataAbsentReason": { "coding": [{ "code": "error" }] } })),
        obs(
            json!({ "valueQuantity": null, "code": { "coding": [{ "system": "http://loinc.org", "code": "24323-8" }] },
                    "hasMember": [{ "reference": "Observation/x" }] }),
        ),
    ];
    std::fs::write(dir.path().join("Observation.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.iter().map(|e| e.time).collect::<Vec<_>>(), [data::time::utc("2024-01-02T08:00:00Z").unwrap()]);
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!((count("no_time"), count("no_value"), count("panel_with_members")), (0, 0, 1), "{:?}", r.findings);
    assert_eq!(count("value_and_absent_reason"), 1, "{:?}", r.findings);
}

/// Found by a tester: a Shift_JIS note whose content type names no charset (`text/plain`, as Japanese
/// systems send them) was dropped as undecodable; read in the Japanese encoding its bytes decode in,
/// and the guess said (`guessed_charset`, a warning).
#[test]
fn a_japanese_note_without_a_charset_is_read_and_the_guess_said() {
    let dir = tempfile::tempdir().unwrap();
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("胸部レントゲン：異常なし。電話 090-1234-5678");
    let (euc, _, _) = encoding_rs::EUC_JP.encode("退院時サマリー、経過良好");
    // ISO-2022-JP is 7-bit (valid UTF-8): found by a tester, read as ASCII with escape codes
    let (jis, _, _) = encoding_rs::ISO_2022_JP.encode("主訴：腹痛。電話 090-1234-5678");
    let lines = [
        doc(&sjis, "text/plain", "2024-01-01T00:00:00Z"),
        doc(&euc, "text/plain", "2024-01-02T00:00:00Z"),
        doc(&jis, "text/plain", "2024-01-03T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(
        texts,
        ["胸部レントゲン：異常なし。電話 [PHONE]", "退院時サマリー、経過良好", "主訴：腹痛。電話 [PHONE]"],
        "{:?}",
        r.findings
    );
    let f = r.findings.iter().find(|f| f.kind == "guessed_charset").expect("said");
    assert_eq!((f.severity, f.count), (data::check::Severity::Warning, 3));
    assert_eq!((f.file.as_deref(), f.lines.as_slice()), (Some("DocumentReference.ndjson"), &[1, 2, 3][..]));
    // an identifier finding says where (found by a tester: an operator facing a blocking one could
    // not find its resources)
    let f = r.findings.iter().find(|f| f.kind == "phone").expect("phone");
    assert_eq!((f.count, f.file.as_deref(), f.lines.as_slice()), (2, Some("DocumentReference.ndjson"), &[1, 3][..]));
}

/// Found by a tester: a DocumentReference file concatenated to itself gave each note twice, and each
/// copy took the note window's room again; preparation reads a repeated note once (the report still
/// counts it as a duplicate). Notes of the same time with other text stay.
#[test]
fn a_note_given_twice_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = doc("胸痛あり。".as_bytes(), "text/plain", "2024-01-01T00:00:00Z");
    let b = doc("経過良好。".as_bytes(), "text/plain", "2024-01-01T00:00:00Z");
    std::fs::write(dir.path().join("DocumentReference.ndjson"), [a.clone(), b, a].join("\n") + "\n").unwrap();
    let (mut d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.findings.iter().find(|f| f.kind == "duplicate").map(|f| f.count), Some(1), "{:?}", r.findings);
    d.sort();
    assert_eq!(d.drop_repeated_notes(), 1);
    let mut texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    texts.sort();
    assert_eq!(texts, ["経過良好。", "胸痛あり。"]);
    assert_eq!(d.drop_repeated_notes(), 0);
}

/// Found by a tester: a `text/plain` attachment of white space only was counted as
/// `no_text_attachment`, as a PDF is; it is an empty note (`empty_note`, as the CSV reader says it).
#[test]
fn a_blank_text_attachment_is_an_empty_note() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        doc(b"  \n\t ", "text/plain", "2024-01-01T00:00:00Z"),
        doc(b"%PDF-1.4", "application/pdf", "2024-01-02T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(d.events.is_empty());
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!((count("empty_note"), count("no_text_attachment")), (1, 1), "{:?}", r.findings);
}

/// Found by a review of inconsistent handling: a string cut between the halves of a UTF-16 pair
/// (`\ud83d` alone, as Java and JavaScript exporters truncate) is valid JSON that serde_json refuses;
/// the resource was lost where the string was a field read (a note, a unit) and passed where it was
/// not (a display). Every such escape is mended to a private-use character (U+E000 plus its offset
/// from U+D800: two ids cut differently stay two) and said, in NDJSON lines and in a
/// Bundle document; a whole pair and an escaped backslash are kept.
#[test]
fn lone_surrogate_escapes_are_mended_and_said_not_a_lost_resource() {
    let dir = tempfile::tempdir().unwrap();
    let good = lab_obs(json!({})).to_string();
    let cut = good.replace(r#""unit":"mg/dL""#, r#""unit":"mg/dL\ud83d""#);
    assert_ne!(good, cut);
    let paired = lab_obs(
        json!({ "code": { "text": "\\ud800", "coding": [{ "system": "http://loinc.org", "code": "2160-0" }] } }),
    )
    .to_string()
    .replace(r#""unit":"mg/dL""#, r#""unit":"mg/dL\ud83d\ude00""#);
    std::fs::write(dir.path().join("Observation.ndjson"), [good, cut, paired].join("\n") + "\n").unwrap();
    let note = r#"{"resourceType":"Composition","status":"final","subject":{"reference":"Patient/a"},"date":"2024-01-05","type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}]},"section":[{"text":{"status":"generated","div":"<div>経過\udc00良好</div>"}}]}"#;
    let bundle = format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{note}}}]}}"#);
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("b.json"), bundle).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Lab).count(), 3, "{:?}", r.findings);
    let found: Vec<_> = r.findings.iter().filter(|f| f.kind == "lone_surrogate").collect();
    assert_eq!(found.len(), 1, "{:?}", r.findings);
    let f = found[0];
    assert_eq!(
        (f.resource.as_str(), f.count, f.file.as_deref(), f.lines.as_slice()),
        ("Observation", 1, Some("Observation.ndjson"), &[2][..])
    );
    assert_eq!(f.severity, data::check::Severity::Warning);
    let (d, r) = data::read(docs.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    let notes: Vec<&str> =
        d.events.iter().filter(|e| e.kind == EventKind::Note).map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(notes.len(), 1, "{:?}", r.findings);
    assert!(notes[0].contains("経過\u{e400}良好"), "{:?}", notes);
    let found: Vec<_> = r.findings.iter().filter(|f| f.kind == "lone_surrogate").collect();
    assert_eq!(found.len(), 1, "{:?}", r.findings);
    assert_eq!(
        (found[0].count, found[0].file.as_deref(), found[0].lines.as_slice()),
        (1, Some("document-1"), &[1][..])
    );
}

/// Found by an outside-in tester: an export holding two versions of one resource (a history, an
/// incremental export beside the full one) read each as a resource of its own: an Encounter given
/// again with another class and end made every admission positive, an Observation corrected read as
/// two results. Only the latest version of a resource type and id is read (`meta.lastUpdated`, then a
/// numeric `meta.versionId`, else the one read last; one entered in error removes the one before), and
/// the versions replaced are said (`resource_version`).
#[test]
fn only_the_latest_version_of_a_resource_is_read() {
    let enc = |id: &str, class: &str, end: &str, meta: serde_json::Value| {
        json!({ "resourceType": "Encounter", "id": id, "meta": meta, "status": "finished",
            "subject": { "reference": "Patient/a" },
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class },
            "period": { "start": "2024-01-01T09:00:00Z", "end": end } })
        .to_string()
    };
    let obs = |id: &str, value: f64, meta: serde_json::Value, status: &str| {
        lab_obs(
            json!({ "id": id, "meta": meta, "status": status, "valueQuantity": { "value": value, "unit": "mg/dL" } }),
        )
        .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Encounter.ndjson"),
        [
            enc("e1", "EMER", "2024-01-01T10:00:00Z", json!({ "versionId": "1" })),
            enc("e1", "IMP", "2024-01-03T10:00:00Z", json!({ "versionId": "2" })),
            // no meta: the one read last
            enc("e2", "AMB", "2024-02-01T10:00:00Z", json!({})),
            enc("e2", "EMER", "2024-02-01T11:00:00Z", json!({})),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("incremental")).unwrap();
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            // the later version read first (its lastUpdated says it is the latest)
            obs("o1", 2.5, json!({ "lastUpdated": "2024-03-02T00:00:00Z", "versionId": "2" }), "amended"),
            obs("o1", 1.1, json!({ "lastUpdated": "2024-03-01T00:00:00Z", "versionId": "1" }), "final"),
            obs("o2", 1.3, json!({ "versionId": "1" }), "final"),
            // the same id as an Encounter's: another resource
            obs("e1", 0.9, json!({}), "final"),
            // no id: no version of anything
            lab_obs(json!({})).to_string(),
            lab_obs(json!({})).to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    // an incremental export: o2 entered in error
    std::fs::write(
        dir.path().join("incremental/Observation.ndjson"),
        obs("o2", 1.3, json!({ "versionId": "2" }), "entered-in-error"),
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    let encounters: Vec<(i64, i64)> =
        d.events.iter().filter(|e| e.kind == EventKind::Encounter).map(|e| (e.time, e.end)).collect();
    let t = |s: &str| data::time::utc(s).unwrap();
    assert_eq!(encounters.len(), 2, "{:?}", r.findings);
    let ends: Vec<i64> = encounters.iter().map(|e| e.1).collect();
    assert!(ends.contains(&t("2024-01-03T10:00:00Z")) && ends.contains(&t("2024-02-01T11:00:00Z")), "{encounters:?}");
    let mut values: Vec<f32> = d.events.iter().filter(|e| e.kind == EventKind::Lab).map(|e| e.value).collect();
    values.sort_by(f32::total_cmp);
    assert_eq!(values, [0.9, 1.1, 1.1, 2.5], "{:?}", r.findings);
    let versions = |resource: &str| {
        r.findings
            .iter()
            .filter(|f| f.kind == "resource_version" && f.resource == resource)
            .map(|f| f.count)
            .sum::<u64>()
    };
    assert_eq!((versions("Encounter"), versions("Observation")), (2, 2), "{:?}", r.findings);
    // an id or a meta an export writes in another shape (a number, a meta that is a string) reads as
    // before (a resource that read without them was made malformed by them); one id of two sources about
    // two patients is two resources
    let dir = tempfile::tempdir().unwrap();
    let mut other_patient = lab_obs(json!({ "id": "o1" }));
    other_patient["subject"]["reference"] = json!("Patient/b");
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            lab_obs(json!({ "id": 7, "meta": { "versionId": 1 } })).to_string(),
            lab_obs(json!({ "id": 7, "meta": { "versionId": 2, "lastUpdated": 1709251200000u64 } })).to_string(),
            lab_obs(json!({ "id": { "value": "x" }, "meta": "v1" })).to_string(),
            lab_obs(json!({ "id": "o1", "meta": [1] })).to_string(),
            other_patient.to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.events.len(), 4, "{:?}", r.findings);
    let versions: u64 = r.findings.iter().filter(|f| f.kind == "resource_version").map(|f| f.count).sum();
    assert_eq!(versions, 1, "{:?}", r.findings);
    // a second outside-in test: fractions of a second tell versions apart (the later instant wins
    // whatever the order read), and a subject written otherwise (an absolute URL, a `_history`) is the
    // same patient's
    let dir = tempfile::tempdir().unwrap();
    let at = |value: f64, updated: &str, subject: &str| {
        let mut o = lab_obs(
            json!({ "id": "o9", "meta": { "lastUpdated": updated }, "valueQuantity": { "value": value, "unit": "mg/dL" } }),
        );
        o["subject"]["reference"] = json!(subject);
        o.to_string()
    };
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            at(1.5, "2024-01-01T00:00:00.5Z", "Patient/a"),
            at(1.0, "2024-01-01T00:00:00Z", "http://srv/fhir/Patient/a"),
            at(1.9, "2024-01-01T09:00:00.900+09:00", "Patient/a/_history/2"),
            at(1.1, "2024-01-01T00:00:00.10Z", "Patient/a"),
            // a space for the T, and a date alone: older
            at(1.2, "2024-01-01 00:00:00.800Z", "Patient/a"),
            at(1.3, "2023-12-31", "Patient/a"),
        ]
        .join("\n"),
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(values, [1.9], "{:?}", r.findings);
}

/// Found by an outside-in tester: an Observation whose codings name two tests (JLAC10 creatinine
/// beside LOINC potassium) was read as the preferred one without a word; it still is, and it is said
/// (`conflicting_codings`, located). Two codings of one test (LOINC and JLAC10 creatinine) are none.
#[test]
fn codings_that_name_two_tests_are_said() {
    let coded = |codings: serde_json::Value| lab_obs(json!({ "code": { "coding": codings } })).to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            coded(json!([{ "system": "http://loinc.org", "code": "2160-0" },
                         { "system": "urn:oid:1.2.392.200119.4.504", "code": "3C015000002327101" }])),
            coded(json!([{ "system": "urn:oid:1.2.392.200119.4.504", "code": "3C015000002327101" },
                         { "system": "http://loinc.org", "code": "2823-3" }])),
        ]
        .join("\n"),
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 2, "{:?}", r.findings);
    let f: Vec<_> = r.findings.iter().filter(|f| f.kind == "conflicting_codings").collect();
    assert_eq!(f.len(), 1, "{:?}", r.findings);
    assert_eq!((f[0].count, f[0].lines.as_slice()), (1, &[2][..]));
}

/// Found by an outside-in tester: NDJSON written with an indent (each resource over many lines, as
/// `json.dumps(r, indent=2)` writes) was one malformed line per line, with no hint. It is read as the
/// sequence of JSON values it is, each resource at the line it starts on, and said
/// (`pretty_printed_ndjson`); a file that is no such sequence is read line by line as before.
#[test]
fn pretty_printed_ndjson_is_read_as_a_sequence_of_resources() {
    let dir = tempfile::tempdir().unwrap();
    let pretty: Vec<String> = (0..3)
        .map(|i| {
            serde_json::to_string_pretty(&lab_obs(
                json!({ "id": format!("o{i}"), "valueQuantity": { "value": i as f64 + 1.0, "unit": "mg/dL" } }),
            ))
            .unwrap()
        })
        .collect();
    std::fs::write(dir.path().join("Observation.ndjson"), pretty.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.events.len(), 3, "{:?}", r.findings);
    assert_eq!(count(&r, "pretty_printed_ndjson"), 1);
    // a lone surrogate in one resource is said at that resource alone
    let mut cut = pretty.clone();
    cut[2] = cut[2].replace("\"final\"", "\"fin\\ud800al\"");
    std::fs::write(dir.path().join("Observation.ndjson"), cut.join("\n") + "\n").unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() }).unwrap();
    let f = r.findings.iter().find(|f| f.kind == "lone_surrogate").expect("said");
    let third = (pretty[0].lines().count() + pretty[1].lines().count()) as u64 + 1;
    assert_eq!((f.count, f.lines.as_slice()), (1, &[third][..]), "{f:?}");
    // a resource that does not parse is said at the line it starts on
    let mut bad = pretty.clone();
    bad[1] = bad[1].replace("\"status\"", "\"status\": 5, \"x\"");
    let at = pretty[0].lines().count() as u64 + 1;
    std::fs::write(dir.path().join("Observation.ndjson"), bad.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() }).unwrap();
    assert_eq!((d.events.len(), r.malformed_count()), (2, 1), "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert_eq!(f.lines, [at], "{f:?}");
    // no sequence of JSON values (a resource cut short): line by line, as any NDJSON file
    let mut cut = pretty.clone();
    let half = cut[1].len() / 2;
    cut[1].truncate(half);
    std::fs::write(dir.path().join("Observation.ndjson"), cut.join("\n") + "\n").unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() }).unwrap();
    assert_eq!(count(&r, "pretty_printed_ndjson"), 0);
    assert!(r.malformed_count() > 3, "{:?}", r.findings);
}

/// Found by an outside-in tester: a Bundle entry without a resource (a history's DELETE) was skipped
/// without a word, and `{"resourceType":123}` was "not a JSON object".
#[test]
fn entries_without_a_resource_are_said_and_a_resource_type_that_is_no_string_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let b = json!({ "resourceType": "Bundle", "type": "history", "entry": [
        { "resource": lab_obs(json!({})) },
        { "request": { "method": "DELETE", "url": "Observation/x" } },
        { "resource": null } ] });
    std::fs::write(dir.path().join("x.ndjson"), format!("{b}\n{}\n", r#"{"resourceType":123,"status":"final"}"#))
        .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() }).unwrap();
    assert_eq!(d.events.len(), 1, "{:?}", r.findings);
    assert_eq!(count(&r, "entry_without_resource"), 1, "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert!(
        f.detail.as_deref().unwrap_or("").contains("resourceType is not one string")
            || format!("{f:?}").contains("resourceType is not one string"),
        "{f:?}"
    );
}

/// Found by the second outside-in test: a DiagnosticReport whose results are contained in it (no text
/// of its own) was no version of itself: a second version kept both versions' results, and one
/// entered in error kept the first's.
#[test]
fn a_report_of_contained_results_is_a_version_of_itself() {
    let report = |version: &str, status: &str, value: f64| {
        format!(
            r##"{{"resourceType":"DiagnosticReport","id":"dr1","meta":{{"versionId":"{version}"}},"status":"{status}","contained":[{{"resourceType":"Observation","id":"c1","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"valueQuantity":{{"value":{value},"unit":"mg/dL"}}}}],"code":{{"text":"panel"}},"subject":{{"reference":"Patient/a"}},"effectiveDateTime":"2024-01-02T08:00:00Z","result":[{{"reference":"#c1"}}]}}"##
        )
    };
    // (a subject of another shape is no reason to say the report's note was not read: it has none)
    let odd = report("1", "final", 1.1).replace(r#"{"reference":"Patient/a"}"#, r#""Patient/a""#);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), odd).unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(count(&r, "report_note_not_read"), 0, "{:?}", r.findings);
    for (second, want) in [(report("2", "amended", 2.2), vec![2.2f32]), (report("2", "entered-in-error", 2.2), vec![])]
    {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("DiagnosticReport.ndjson"), [report("1", "final", 1.1), second].join("\n"))
            .unwrap();
        let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
        assert_eq!(values, want, "{:?}", r.findings);
        assert_eq!(count(&r, "resource_version"), 1, "{:?}", r.findings);
    }
}

/// Found by the second outside-in test: a DiagnosticReport entered in error took with it the note a
/// still current DocumentReference held too (read once, as the copy of the report's). The copy stays
/// where only its original's resource is replaced; the note is read once either way.
#[test]
fn a_note_stays_when_only_the_other_resource_holding_it_is_retracted() {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode("胸痛あり。経過観察。");
    let report = |version: &str, status: &str| {
        json!({ "resourceType": "DiagnosticReport", "id": "r1", "meta": { "versionId": version }, "status": status,
            "code": { "coding": [{ "system": "http://loinc.org", "code": "34111-5" }] }, "subject": { "reference": "Patient/a" },
            "effectiveDateTime": "2024-01-03T00:00:00Z",
            "presentedForm": [{ "contentType": "text/plain", "data": data }] })
        .to_string()
    };
    let document = json!({ "resourceType": "DocumentReference", "id": "d1", "status": "current",
        "subject": { "reference": "Patient/a" }, "date": "2024-01-03T00:00:00Z",
        "content": [{ "attachment": { "contentType": "text/plain", "data": data } }] })
    .to_string();
    for (reports, want) in [
        (vec![report("1", "final")], 1),
        (vec![report("1", "final"), report("2", "entered-in-error")], 1),
        (vec![report("1", "final"), report("2", "final")], 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("DiagnosticReport.ndjson"), reports.join("\n")).unwrap();
        std::fs::write(dir.path().join("DocumentReference.ndjson"), &document).unwrap();
        let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        let notes = d.events.iter().filter(|e| e.kind == EventKind::Note).count();
        assert_eq!(notes, want, "{} reports: {:?}", reports.len(), r.findings);
    }
    // the document retracted instead (read after the report): the report's note stays
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), report("1", "final")).unwrap();
    let retracted = document
        .replace("\"current\"", "\"entered-in-error\"")
        .replace("\"id\":\"d1\"", "\"id\":\"d1\",\"meta\":{\"versionId\":\"2\"}");
    std::fs::write(dir.path().join("DocumentReference.ndjson"), [document.clone(), retracted].join("\n")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.iter().filter(|e| e.kind == EventKind::Note).count(), 1, "{:?}", r.findings); // a report's versions in either order, the newer coded otherwise (an amended report), the document's
                                                                                                      // file read first or last: one note each time (two were kept where the newer version came first
                                                                                                      // and the document last, or after the document and the older version had been matched)
    let coded = |version: &str, code: &str| report(version, "final").replace("34111-5", code);
    for reports in [[coded("2", "11506-3"), coded("1", "34111-5")], [coded("1", "34111-5"), coded("2", "11506-3")]] {
        for document_file in ["A_DocumentReference.ndjson", "DocumentReference.ndjson"] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("DiagnosticReport.ndjson"), reports.join("\n")).unwrap();
            std::fs::write(dir.path().join(document_file), &document).unwrap();
            let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
            let notes = d.events.iter().filter(|e| e.kind == EventKind::Note).count();
            assert_eq!(notes, 1, "{document_file} after {reports:?}: {:?}", r.findings);
        }
    }
    // found by review: the document's newer version coded otherwise, read after the report matched the
    // older one: the note kept is the newer's (the copy, the older's event, goes)
    let doc = |version: &str, code: &str| {
        document.replace("\"id\":\"d1\"", &format!("\"id\":\"d1\",\"meta\":{{\"versionId\":\"{version}\"}},\"type\":{{\"coding\":[{{\"system\":\"http://loinc.org\",\"code\":\"{code}\"}}]}}"))
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("A_DocumentReference.ndjson"), doc("1", "11506-3")).unwrap();
    std::fs::write(dir.path().join("DiagnosticReport.ndjson"), report("1", "final")).unwrap();
    std::fs::write(dir.path().join("DocumentReference.ndjson"), doc("2", "34117-2")).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let codes: Vec<&str> =
        d.events.iter().filter(|e| e.kind == EventKind::Note).map(|e| d.codes[e.code as usize].code.as_str()).collect();
    assert_eq!(codes, ["34117-2"], "{:?}", r.findings);
}

/// Found by review: the versions of a DocumentReference whose text is in a Binary of the export were
/// not told apart (each version's note was read); they are, once the Binaries are read: the latest
/// version's note alone, none where it is entered in error, none where its Binary is not in the
/// export (said, `note_by_url`; the older version is replaced all the same).
#[test]
fn versions_of_a_note_in_a_binary_are_told_apart() {
    let doc = |version: &str, status: &str, binary: &str| {
        json!({ "resourceType": "DocumentReference", "id": "d1", "meta": { "versionId": version }, "status": status,
                "subject": { "reference": "Patient/p1" }, "date": "2024-01-01T00:00:00Z",
                "content": [{ "attachment": { "contentType": "text/plain", "url": format!("Binary/{binary}") } }] })
        .to_string()
    };
    let bin = |id: &str, text: &str| {
        json!({ "resourceType": "Binary", "id": id, "contentType": "text/plain", "data": b64(text) }).to_string()
    };
    for (second, want, by_url) in [
        (doc("2", "current", "b2"), vec!["second version"], 0),
        (doc("2", "entered-in-error", "b2"), vec![], 0),
        (doc("2", "current", "b9"), vec![], 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // the later version read first
        std::fs::write(dir.path().join("DocumentReference.ndjson"), [second, doc("1", "current", "b1")].join("\n"))
            .unwrap();
        std::fs::write(
            dir.path().join("Binary.ndjson"),
            [bin("b1", "first version"), bin("b2", "second version")].join("\n"),
        )
        .unwrap();
        let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
        assert_eq!(texts, want, "{:?}", r.findings);
        assert_eq!(count(&r, "resource_version"), 1, "{:?}", r.findings);
        assert_eq!(count(&r, "note_by_url"), by_url, "{:?}", r.findings);
    }
}

/// Found by an outside-in tester: a history Bundle's DELETE entries (and a bulk export's deleted
/// resources, which it gives as transaction Bundles of DELETE requests) were skipped, the resources
/// they delete read and trained on. The versions read up to a deletion are not read
/// (`resource_deleted`); one after its `response.lastModified` is (the resource made again); a
/// conditional delete, or one of a Patient, is said (`delete_not_applied`); each entry is counted.
#[test]
fn a_bundles_delete_entries_remove_the_resources_they_name() {
    let obs = |id: &str, value: f64, updated: Option<&str>| {
        let mut o = lab_obs(json!({ "id": id, "valueQuantity": { "value": value, "unit": "mg/dL" } }));
        if let Some(u) = updated {
            o["meta"] = json!({ "lastUpdated": u });
        }
        o.to_string()
    };
    let delete = |url: &str, modified: Option<&str>| {
        let mut e = json!({ "request": { "method": "DELETE", "url": url }, "response": { "status": "204" } });
        if let Some(m) = modified {
            e["response"]["lastModified"] = json!(m);
        }
        e
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [
            obs("o1", 1.1, None),
            obs("o2", 1.2, Some("2024-03-01T00:00:00Z")),
            obs("o3", 1.3, Some("2024-05-01T00:00:00Z")),
            obs("o4", 1.4, None),
            obs("o5", 1.5, None),
        ]
        .join("\n"),
    )
    .unwrap();
    // a bulk export's deleted resources: a transaction Bundle per line
    let deleted = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        delete("Observation/o1", None),
        // the server's absolute URL; deleted in April: o2 (March) goes, o3 (made again in May) stays
        delete("https://ehr.example.org/fhir/Observation/o2", Some("2024-04-01T00:00:00Z")),
        delete("Observation/o3", Some("2024-04-01T00:00:00Z")),
        // a conditional delete and a Patient's: said, not applied
        delete("Observation?identifier=x", None),
        delete("Patient/a", None),
        // a method in lower case, written by hand
        { "request": { "method": "delete", "url": "Observation/o4" } },
        { "request": "DELETE Observation/o5" } ] });
    std::fs::create_dir(dir.path().join("deleted")).unwrap();
    std::fs::write(dir.path().join("deleted/Observation.ndjson"), deleted.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let mut values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    values.sort_by(f32::total_cmp);
    assert_eq!(values, [1.3, 1.5], "{:?}", r.findings);
    assert_eq!(count(&r, "resource_deleted"), 3, "{:?}", r.findings);
    assert_eq!(count(&r, "delete_not_applied"), 2, "{:?}", r.findings);
    assert_eq!(count(&r, "entry_without_resource"), 1, "{:?}", r.findings);
    // read before the resources it deletes (the deleted file first): the same
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::write(dir2.path().join("A_deleted.ndjson"), deleted.to_string() + "\n").unwrap();
    std::fs::copy(dir.path().join("Observation.ndjson"), dir2.path().join("Observation.ndjson")).unwrap();
    let (d, r) = data::read(dir2.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 2, "{:?}", r.findings);
    // found by review and the next tester: a Bundle held as data (a collection) deletes nothing, and an
    // id two patients' resources have (two sources numbering alike) is not deleted for either
    let dir3 = tempfile::tempdir().unwrap();
    let mut other = lab_obs(json!({ "id": "o1" }));
    other["subject"]["reference"] = json!("Patient/b");
    std::fs::write(
        dir3.path().join("Observation.ndjson"),
        [obs("o1", 1.1, None), other.to_string(), obs("o2", 1.2, None)].join("\n"),
    )
    .unwrap();
    let bundles = [
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": [delete("Observation/o1", None)] }),
        json!({ "resourceType": "Bundle", "type": "collection", "entry": [delete("Observation/o2", None)] }),
    ];
    std::fs::write(dir3.path().join("deleted.ndjson"), bundles.map(|b| b.to_string()).join("\n")).unwrap();
    let (d, r) = data::read(dir3.path(), &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 3, "{:?}", r.findings);
    // (counted per resource it names)
    assert_eq!((count(&r, "resource_deleted"), count(&r, "delete_not_applied")), (0, 2), "{:?}", r.findings);
}

/// A history Bundle whose versions give their time and version only in the entry's `response`
/// (`lastModified`, `etag`), not in `meta`: they ranked as untimed (below every timed version), so a
/// DELETE of April removed the version made again in May. The entry's response ranks them.
#[test]
fn a_history_entrys_response_dates_its_version() {
    let entry = |value: Option<f64>, method: &str, modified: &str, etag: &str| {
        let mut e = json!({ "request": { "method": method, "url": "Observation/o1" },
            "response": { "status": "200", "lastModified": modified, "etag": etag } });
        if let Some(v) = value {
            e["resource"] = lab_obs(json!({ "id": "o1", "valueQuantity": { "value": v, "unit": "mg/dL" } }));
        }
        e
    };
    // newest first, as a history is written
    let history = json!({ "resourceType": "Bundle", "type": "history", "entry": [
        entry(Some(3.0), "PUT", "2024-05-01T00:00:00Z", "W/\"3\""),
        entry(None, "DELETE", "2024-04-01T00:00:00Z", "W/\"2\""),
        entry(Some(1.0), "POST", "2024-03-01T00:00:00Z", "W/\"1\"") ] });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("history.ndjson"), history.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(values, [3.0], "{:?}", r.findings);
    // without the DELETE: the latest by the entries' times, whatever their order
    let history = json!({ "resourceType": "Bundle", "type": "history", "entry": [
        entry(Some(1.0), "POST", "2024-03-01T00:00:00Z", "W/\"1\""),
        entry(Some(3.0), "PUT", "2024-05-01T00:00:00Z", "W/\"3\""),
        entry(Some(2.0), "PUT", "2024-04-01T00:00:00Z", "W/\"2\"") ] });
    std::fs::write(dir.path().join("history.ndjson"), history.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(values, [3.0], "{:?}", r.findings);
    // etags alone (no times): the highest version
    let history = json!({ "resourceType": "Bundle", "type": "history", "entry": [
        { "resource": lab_obs(json!({ "id": "o1", "valueQuantity": { "value": 2.0, "unit": "mg/dL" } })),
          "response": { "status": "200", "etag": "W/\"7\"" } },
        { "resource": lab_obs(json!({ "id": "o1", "valueQuantity": { "value": 1.0, "unit": "mg/dL" } })),
          "response": { "status": "200", "etag": "W/\"6\"" } } ] });
    std::fs::write(dir.path().join("history.ndjson"), history.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let values: Vec<f32> = d.events.iter().map(|e| e.value).collect();
    assert_eq!(values, [2.0], "{:?}", r.findings);
}

/// Found by an outside-in tester: FHIR R5 Encounters (`actualPeriod` for R4's `period`, `class` a list,
/// status `completed`) were each `no_time`, every admission label lost without a word of R5. They are
/// read, and the R5 element said (`fhir_r5_element`).
#[test]
fn r5_encounters_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let enc = json!({ "resourceType": "Encounter", "id": "e1", "status": "completed",
        "class": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER" }] }],
        "subject": { "reference": "Patient/a" },
        "actualPeriod": { "start": "2024-01-01T09:00:00Z", "end": "2024-01-01T12:00:00Z" } });
    std::fs::write(dir.path().join("Encounter.ndjson"), enc.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e: Vec<_> = d.events.iter().filter(|e| e.kind == EventKind::Encounter).collect();
    assert_eq!(e.len(), 1, "{:?}", r.findings);
    assert_eq!(e[0].end - e[0].time, 3 * 3600, "{:?}", r.findings);
    assert_eq!(d.codes[e[0].code as usize].code, "EMER");
    assert_eq!((count(&r, "no_time"), count(&r, "unknown_status")), (0, 0), "{:?}", r.findings);
    assert_eq!(count(&r, "fhir_r5_element"), 1, "{:?}", r.findings);
    // a local class before the ActCode one (found by the next tester: the emergency visit was lost)
    let mut two = enc.clone();
    two["class"] = json!([{ "coding": [{ "system": "http://hospital.example/class", "code": "L1" }] },
        { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER" }] }]);
    std::fs::write(dir.path().join("Encounter.ndjson"), two.to_string() + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = d.events.iter().find(|e| e.kind == EventKind::Encounter).expect("read");
    assert_eq!(d.codes[e.code as usize].code, "EMER", "{:?}", r.findings);
}

/// Found by an outside-in tester: a DocumentReference giving one text twice (as UTF-8 and as
/// Shift_JIS, or one attachment repeated) had its note's tokens doubled: it is read once.
#[test]
fn one_text_given_twice_in_a_document_is_read_once() {
    let sjis = encoding_rs::SHIFT_JIS.encode("胸痛あり。経過観察。").0.into_owned();
    let plain = |ct: &str, bytes: &[u8]| {
        use base64::Engine;
        json!({ "attachment": { "contentType": ct, "data": base64::engine::general_purpose::STANDARD.encode(bytes) } })
    };
    let doc = json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/a" },
        "date": "2024-01-03T00:00:00Z",
        "content": [plain("text/plain; charset=utf-8", "胸痛あり。経過観察。".as_bytes()),
                    plain("text/plain; charset=shift_jis", &sjis),
                    plain("text/plain; charset=utf-8", "胸痛あり。経過観察。".as_bytes())] });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("DocumentReference.ndjson"), doc.to_string()).unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let texts: Vec<&str> = d.events.iter().map(|e| d.texts[e.text as usize].as_str()).collect();
    assert_eq!(texts, ["胸痛あり。経過観察。"], "{:?}", r.findings);
}

/// Found by a tester: a note with one stray NUL was dropped (an info) where the CSV reader read it, and
/// a Markdown attachment was no text. A few NULs are spaces; Markdown is plain text; UTF-16 its content
/// type does not say is read as UTF-16 (not as text with NULs).
#[test]
fn a_stray_nul_and_markdown_notes_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |ct: &str, bytes: &[u8], date: &str| {
        use base64::Engine;
        json!({ "resourceType": "DocumentReference", "status": "current", "subject": { "reference": "Patient/p1" },
                "date": date, "content": [{ "attachment": { "contentType": ct,
                "data": base64::engine::general_purpose::STANDARD.encode(bytes) } }] })
        .to_string()
    };
    let long = format!("fever since yesterday, stable{}", " and resting".repeat(10));
    let mut nul = long.clone().into_bytes();
    nul.insert(5, 0);
    let utf16: Vec<u8> = "fever".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let lines = [
        doc("text/plain", &nul, "2024-01-01T00:00:00Z"),
        doc("text/markdown", b"# Progress\n- **afebrile**", "2024-01-02T00:00:00Z"),
        doc("text/plain", &utf16, "2024-01-03T00:00:00Z"),
    ];
    std::fs::write(dir.path().join("DocumentReference.ndjson"), lines.join("\n") + "\n").unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let notes = notes_by_time(&d);
    assert_eq!(notes.len(), 3, "{:?}", r.findings);
    assert!(notes[0].starts_with("fever ") && !notes[0].contains('\0'), "{:?}", notes[0]);
    assert!(notes[1].contains("afebrile"), "{:?}", notes[1]);
    assert_eq!(notes[2], "fever");
}

/// Found by a tester: an NDJSON export in Shift_JIS was a line "not JSON (at valueString)"; it is said
/// to be no UTF-8, which FHIR JSON is.
#[test]
fn a_line_that_is_not_utf8_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1988-5"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-01","valueString":"陰性"}"#;
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(line);
    std::fs::write(dir.path().join("Observation.ndjson"), [&sjis[..], b"\n"].concat()).unwrap();
    let r = data::read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() });
    let text = match r {
        Ok((_, r)) => format!("{:?}", r.findings),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("not UTF-8"), "{text}");
}
