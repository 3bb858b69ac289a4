//! The identifier guard: what a fuzzing pass found it missed (each test named after what broke), its
//! cost on a hostile note, the FHIR fields it reads, a patient's own identifiers in its notes, the
//! vocabulary filter of a tokenizer trained in the node, and recall/precision on a labelled set.

use medtrain::data::guard::{self, IdentifierKind};
use medtrain::data::{self, check::Severity, guard::Policy, ReadOptions};
use std::collections::BTreeMap;
use std::path::Path;

fn kinds(t: &str) -> Vec<IdentifierKind> {
    guard::scan(t).into_iter().map(|(k, _)| k).collect()
}

fn assert_found(kind: IdentifierKind, texts: &[&str]) {
    for t in texts {
        assert_eq!(kinds(t), [kind], "{t}");
    }
}

/// A valid Individual Number from 11 digits.
fn my_number(d11: &str) -> String {
    (0..10u8)
        .map(|c| format!("{d11}{c}"))
        .find(|n| {
            let d: Vec<u8> = n.bytes().map(|b| b - b'0').collect();
            guard::my_number_valid(&d.try_into().unwrap())
        })
        .unwrap()
}

#[test]
fn phone_with_nakaguro_dot_tilde_or_spaced_hyphen_separators_was_missed() {
    assert_found(
        IdentifierKind::Phone,
        &["連絡先 03・1234・5678", "TEL 03.1234.5678", "自宅 03〜1234〜5678", "03 - 1234 - 5678 まで", "045-123-4567"],
    );
}

#[test]
fn phone_in_full_width_brackets_was_missed() {
    assert_found(IdentifierKind::Phone, &["（03）1234-5678", "電話（０３）１２３４－５６７８", "03(1234)5678"]);
}

/// The official R4 Patient example's phones (`(03) 5555 6473`): after a bracketed area code, a bare
/// space ended the number, as it does after a number written with marks.
#[test]
fn phone_with_bracketed_area_code_and_spaced_groups_was_missed() {
    assert_found(
        IdentifierKind::Phone,
        &[
            "(03) 5555 6473",
            "work (03) 3410 5613.",
            "(03) 5555-6473",
            "（０３）５５５５　６４７３",
            "(090) 1234 5678",
            "(03)5555 6473",
        ],
    );
    // two side by side, as the example's home and work numbers (a space and a bracket joined them)
    let two = [IdentifierKind::Phone, IdentifierKind::Phone];
    assert_eq!(kinds("tel (03) 5555 6473 (03) 3410 5613"), two);
    // a bracketed group without the leading 0, or digits too few or too many for a phone
    for t in ["(12) 3456 7890", "(10) 1234 5678", "(0) 1234 5678", "(03) 5555 647"] {
        assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
    }
}

#[test]
fn ungrouped_ten_digit_landline_was_missed() {
    assert_found(IdentifierKind::Phone, &["0345678908", "自宅0345678908へ", "call 0312345678 today"]);
    // ten digits that are no landline: a leading 00, or glued to a code (an `ID`'s: a record number)
    assert!(kinds("受付番号 0012345678").is_empty());
    assert_eq!(kinds("ID0345678908"), [IdentifierKind::PatientIdentifier]);
}

#[test]
fn phone_glued_to_tel_was_missed() {
    assert_found(
        IdentifierKind::Phone,
        &["TEL0312345678", "TEL:03-1234-5678", "電話03-1234-5678", "Tel.03-1234-5678", "FAX0312345679"],
    );
}

#[test]
fn email_with_non_ascii_local_part_or_domain_or_full_width_at_was_missed() {
    assert_found(
        IdentifierKind::Email,
        &[
            "やまだ@example.jp",
            "taro@病院.jp",
            "taro＠example.com",
            "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "連絡先taro@example.comです",
        ],
    );
    let t = "連絡先taro@example.comです";
    let f = guard::scan(t);
    assert_eq!(&t[f[0].1.clone()], "taro@example.com", "the address, not the words around it");
}

#[test]
fn my_number_grouped_3333_slashed_or_glued_to_letters_was_missed() {
    let n = my_number("31415926535");
    let forms = [
        format!("{}-{}-{}-{}", &n[..3], &n[3..6], &n[6..9], &n[9..]),
        format!("{}/{}/{}", &n[..4], &n[4..8], &n[8..]),
        format!("MN{n}"),
        format!("No{n}です"),
        format!("{n}abc"),
    ];
    for f in &forms {
        assert_eq!(kinds(f), [IdentifierKind::MyNumber], "{f}");
    }
    // a 12-digit run inside a longer number is not one
    assert!(kinds(&format!("{n}7")).is_empty());
}

#[test]
fn hard_negatives_stay_unflagged() {
    for t in [
        "2024-03-05 Cr 1.23 mg/dL",
        "BP 120/80, HR 88, 体温 37.5℃",
        "JLAC10 3C015000002327101",
        "lot 1234-5678",
        "score @ 3",
        "ratio 0.123 456 789",
        "a@b",
        "ICD-10 E11.65",
        "2024.03.05 10:30",
        "10:00〜12:00 リハビリ",
    ] {
        assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
    }
}

/// 300k phone numbers in one note took 39 s: each match rescanned the findings so far. The scan is now
/// one pass; this asserts on the characters the scanners examined (a count, not a time): a quadratic
/// scan would examine on the order of 300k x 300k / 2 characters, the bound here is 12 per byte.
#[test]
fn identifier_scan_of_300k_phone_numbers_in_one_note_was_quadratic() {
    let note = "090-1234-5678 ".repeat(300_000);
    let (found, ops) = guard::scan_counted(&note);
    assert_eq!(found.len(), 300_000);
    assert!(found.iter().all(|(k, _)| *k == IdentifierKind::Phone));
    assert!(ops <= 12 * note.len() as u64, "{ops} characters examined for {} bytes", note.len());
    // and the worst shapes for each scanner: many @, many honorifics, many separators, one long run
    for hostile in ["a@".repeat(200_000), "山田さん".repeat(100_000), "1-".repeat(300_000), "7".repeat(2_000_000)] {
        let (_, ops) = guard::scan_counted(&hostile);
        assert!(ops <= 12 * hostile.len() as u64, "{ops} characters examined for {} bytes", hostile.len());
    }
}

fn write(dir: &Path, name: &str, lines: &[String]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn note_line(subject: &str, text: &str) -> String {
    format!(
        r#"{{"resourceType":"DocumentReference","status":"current","subject":{{"reference":"Patient/{subject}"}},"date":"2024-01-02T10:00:00Z","content":[{{"attachment":{{"contentType":"text/plain","data":"{}"}}}}]}}"#,
        b64(text)
    )
}

fn errors(report: &data::Report) -> Vec<(String, String, String)> {
    report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| (f.kind.clone(), f.resource.clone(), f.field.clone()))
        .collect()
}

#[test]
fn patient_identifier_contact_and_text_were_never_inspected() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Patient.ndjson",
        &[r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"MRN-0099871"}],"contact":[{"name":{"family":"Kagawa","given":["Ken"]},"telecom":[{"system":"phone","value":"03-9876-5432"}]}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">連絡先 090-2222-3333</div>"}}"#.to_owned()],
    );
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("patient_identifier", "Patient", "identifier"),
        ("name", "Patient", "contact.name"),
        ("telecom", "Patient", "contact.telecom"),
        ("phone", "Patient", "text.div"),
    ] {
        assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
    }
    assert!(report.blocking);
}

/// The official R4 Patient-newborn names its mother's maiden name in an extension; a place of birth
/// is an address. Neither was a finding, nor searched for in the patient's notes.
#[test]
fn identifying_patient_extensions_were_not_flagged() {
    let ext = r#""extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Everywoman"},{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthPlace","valueAddress":{"line":["12 Harbour View Road"],"city":"Exampleton"}},{"url":"http://hl7.org/fhir/StructureDefinition/patient-religion","valueCodeableConcept":{"text":"none"}}]"#;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[format!(r#"{{"resourceType":"Patient","id":"p1",{ext}}}"#)]);
    write(
        dir.path(),
        "DocumentReference.ndjson",
        &[note_line("p1", "mother (née everywoman) at 12 harbour view road"), note_line("p2", "Everywoman")],
    );
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [("name", "Patient", "extension.mothersMaidenName"), ("address", "Patient", "extension.birthPlace")] {
        assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
    }
    assert!(!e.iter().any(|(_, _, f)| f.contains("religion")), "{e:?}");
    // the values are the patient's own identifiers: found in p1's note (not in p2's), and redacted
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    let own: Vec<&str> =
        report.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.kind.as_str()).collect();
    assert!(own.contains(&"name") && own.contains(&"address"), "{:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
    assert!(!p1.to_lowercase().contains("everywoman") && !p1.contains("harbour"), "{p1}");
    assert!(d.texts.iter().any(|t| t == "Everywoman"), "p2's note is not p1's patient's");
    // an extension without a value is nothing; in a contained Patient, a finding of the resource
    let dir = tempfile::tempdir().unwrap();
    let empty = r#"{"resourceType":"Patient","id":"p1","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":""}]}"#;
    let contained = in_contained_patient(&ext);
    write(dir.path(), "export.ndjson", &[empty.to_owned(), contained]);
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    assert!(!e.iter().any(|(_, r, _)| r == "Patient"), "{e:?}");
    for want in [
        ("name", "Observation", "contained.extension.mothersMaidenName"),
        ("address", "Observation", "contained.extension.birthPlace"),
    ] {
        assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
    }
}

#[test]
fn observation_note_and_document_description_were_never_read() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "export.ndjson",
        &[
            r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"},"note":[{"text":"再検は 090-1111-2222 に連絡"}]}"#.to_owned(),
            r#"{"resourceType":"DocumentReference","status":"current","description":"紹介状 yamada@example.jp","subject":{"reference":"Patient/a"},"date":"2024-01-02","content":[{"attachment":{"contentType":"text/plain","data":"5pys5pel"}}]}"#.to_owned(),
        ],
    );
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    assert!(e.contains(&("phone".into(), "Observation".into(), "note.text".into())), "{e:?}");
    assert!(e.contains(&("email".into(), "DocumentReference".into(), "description".into())), "{e:?}");
}

const OWN_NAME: &str = "香川 健";

fn own_patient(id: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"香川","given":["健"]}}],"telecom":[{{"system":"phone","value":"03-9876-5432"}}]}}"#
    )
}

/// A note that names its patient without a cue (no さん, no 氏名) and writes the phone as words the
/// pattern scan does not take: only the Patient resource says they are identifiers.
const OWN_NOTE: &str = "本日香川健が来院。連絡は０３ ９８ ７６ ５４ ３２ へ。";

#[test]
fn a_patients_own_name_and_phone_in_its_notes_were_not_found() {
    // the Patient file sorts after the notes; the notes are checked all the same
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "DocumentReference.ndjson", &[note_line("p1", OWN_NOTE), note_line("p2", OWN_NOTE)]);
    write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    let own: u64 = report.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.count).sum();
    assert_eq!(own, 2, "name and phone in p1's note, nothing in p2's: {:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
    assert!(!p1.contains("香川") && !p1.contains("９８ ７６"), "{p1}");
    assert!(d.texts.iter().any(|t| t == OWN_NOTE), "p2's note is not p1's patient's: kept as it is");
    // a Patient in the same file after the notes: checked at the end of the read
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "export.ndjson", &[note_line("p1", OWN_NOTE), own_patient("p1")]);
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    assert!(report.findings.iter().any(|f| f.field == "subject_identifier"));
    assert!(!d.texts[0].contains("香川"), "redacted at the end of the read");
    // never printed
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("香川") && !all.contains(OWN_NAME) && !all.contains("9876"));
}

#[test]
fn data_check_missed_a_patients_name_in_notes_read_before_its_patient_resource() {
    // `data check` keeps no events: the notes before the Patient (same file) were never checked
    let dir = tempfile::tempdir().unwrap();
    let lines = [note_line("p1", OWN_NOTE), note_line("p2", OWN_NOTE), own_patient("p1"), note_line("p1", OWN_NOTE)];
    write(dir.path(), "export.ndjson", &lines);
    let check = ReadOptions { keep_events: false, ..Default::default() };
    let (_, report) = data::read(dir.path(), &check).unwrap();
    let own: u64 = report.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.count).sum();
    // name and phone in each of p1's two notes, counted once each (the second pass replaces the first's)
    assert_eq!(own, 4, "{:?}", report.findings);
    assert!(report.blocking);
    // the same counts as a read that keeps events
    let (_, kept) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let own_kept: u64 = kept.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.count).sum();
    assert_eq!(own, own_kept);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "blocking: {text}");
    assert!(text.contains("subject_identifier") && !text.contains("香川") && !text.contains("9876"), "{text}");
}

fn lab_with_note(subject: &str, note: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/{subject}"}},"effectiveDateTime":"2024-01-02","valueQuantity":{{"value":1.1,"unit":"mg/dL"}},"note":[{{"text":"{note}"}}]}}"#
    )
}

/// The subject's own identifiers, found in its Observations' free text: (field, count).
fn own_in_observations(report: &data::Report) -> BTreeMap<String, u64> {
    let mut own = BTreeMap::new();
    for f in report.findings.iter().filter(|f| f.resource == "Observation" && f.field.ends_with("subject_identifier")) {
        *own.entry(f.field.clone()).or_default() += f.count;
    }
    own
}

/// `Observation.note` (and `valueString`, and `DocumentReference.description`) were scanned by the
/// pattern scanners only: a note naming its patient without a cue was clean, where a kept note was not.
#[test]
fn a_patients_own_name_in_an_observation_note_was_not_found() {
    // a vital sign (not read) with the name as its valueString, and a document titled with the phone
    let vital = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"valueString":"香川健"}"#;
    let described = r#"{"resourceType":"DocumentReference","status":"current","description":"紹介状 ０３ ９８ ７６ ５４ ３２","subject":{"reference":"Patient/p1"},"date":"2024-01-02","content":[{"attachment":{"contentType":"text/plain","data":"5pys5pel"}}]}"#;
    let lines =
        || vec![lab_with_note("p1", OWN_NOTE), lab_with_note("p2", OWN_NOTE), vital.to_owned(), described.to_owned()];
    let want: BTreeMap<String, u64> =
        [("note.text.subject_identifier".to_owned(), 2), ("valueString.subject_identifier".to_owned(), 1)].into();
    let description = |r: &data::Report| {
        r.findings.iter().filter(|f| f.field == "description.subject_identifier").map(|f| f.count).sum::<u64>()
    };
    // the Patient read first (its own file), then after the notes in the same file: with events kept
    // (prepare) and without (data check), the same findings
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
    write(dir.path(), "Observation.ndjson", &lines());
    let late = tempfile::tempdir().unwrap();
    write(late.path(), "export.ndjson", &[lines(), vec![own_patient("p1")]].concat());
    for input in [dir.path(), late.path()] {
        for keep_events in [true, false] {
            let (_, report) = data::read(input, &ReadOptions { keep_events, ..Default::default() }).unwrap();
            assert_eq!(
                own_in_observations(&report),
                want,
                "{input:?} keep_events {keep_events}: {:?}",
                report.findings
            );
            assert_eq!(description(&report), 1, "{:?}", report.findings);
            assert!(report.blocking);
        }
    }
    // no Patient resource: the pattern scanners alone find nothing in the note
    let none = tempfile::tempdir().unwrap();
    write(none.path(), "Observation.ndjson", &lines()[..1]);
    let (_, report) = data::read(none.path(), &ReadOptions::default()).unwrap();
    assert!(report.findings.iter().all(|f| f.severity != Severity::Error), "{:?}", report.findings);
    // never printed
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(late.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "blocking: {text}");
    assert!(
        text.contains("note.text.subject_identifier") && !text.contains("香川") && !text.contains("９８"),
        "{text}"
    );
}

#[test]
fn missed_identifiers_became_verbatim_tokenizer_pieces() {
    use data::text::{NoteTokenizer, TokenizerKind};
    // 40 subjects share ordinary clinical text; one of them repeats a string the guard cannot know
    // (a nickname with no cue) in many notes, which a trainer would learn as a piece
    let secret = "ミナミカゼタロウ";
    let mut notes = Vec::new();
    let mut subjects = Vec::new();
    for s in 0..40u32 {
        for k in 0..5 {
            notes.push(format!("本日の血圧は安定しており、腎機能も改善傾向。経過観察を継続する。採血 {k} 回目。"));
            subjects.push(s);
        }
    }
    for _ in 0..60 {
        notes.push(format!("{secret}は{secret}と呼ばれる。{secret}。"));
        subjects.push(7);
    }
    for kind in [TokenizerKind::Unigram, TokenizerKind::ByteBpe] {
        let tok = NoteTokenizer::train(&notes, kind, 700).unwrap();
        let refs: Vec<&str> = notes.iter().map(String::as_str).collect();
        let has_secret_piece = |t: &NoteTokenizer| {
            t.tokenizer.get_vocab(true).keys().any(|p| {
                let ids = [t.tokenizer.token_to_id(p).unwrap()];
                let surface = t.tokenizer.decode(&ids, false).unwrap_or_default();
                surface.chars().count() >= 3 && secret.contains(surface.trim())
            })
        };
        assert!(has_secret_piece(&tok), "{kind:?}: the test needs a trainer that learns the string");
        let common = &notes[0];
        let before = tok.tokenizer.encode(common.as_str(), false).unwrap();
        let (filtered, stats) = tok.keep_common_pieces(&refs, &subjects, 10).unwrap();
        assert!(!has_secret_piece(&filtered), "{kind:?}: a piece of one subject's notes stayed");
        assert!(stats.dropped_rare > 0 && stats.kept >= 20, "{kind:?}: {stats:?}");
        // the shared text encodes to the same pieces as before, and round-trips for BPE
        let enc = filtered.tokenizer.encode(common.as_str(), false).unwrap();
        assert_eq!(enc.get_tokens(), before.get_tokens(), "{kind:?}: common pieces were kept");
        if kind == TokenizerKind::ByteBpe {
            assert_eq!(filtered.tokenizer.decode(enc.get_ids(), true).unwrap(), *common);
        }
    }
    assert!(guard::vocab::piece_is_identifier("090123"));
    assert!(guard::vocab::piece_is_identifier("x@"));
    assert!(!guard::vocab::piece_is_identifier("血圧"));
}

/// Recall and precision per kind on trainer/tests/guard_recall/labelled.tsv (written by its
/// make_set.py: synthetic Japanese and English sentences with identifiers of each kind, and hard
/// negatives). A sentence counts once per kind: found when the scan reports that kind in it. The
/// floors sit a little under the figures measured when they were set (stated in the README).
#[test]
fn recall_and_precision_on_the_labelled_set_meet_their_floors() {
    let set = include_str!("guard_recall/labelled.tsv");
    let mut tp: BTreeMap<&str, u32> = BTreeMap::new();
    let mut fp: BTreeMap<&str, u32> = BTreeMap::new();
    let mut fn_: BTreeMap<&str, u32> = BTreeMap::new();
    let mut misses = Vec::new();
    for line in set.lines().filter(|l| !l.trim().is_empty()) {
        let (labels, text) = line.split_once('\t').unwrap();
        let want: Vec<&str> = labels.split(',').filter(|k| *k != "-").collect();
        let mut got: Vec<&str> = kinds(text).into_iter().map(IdentifierKind::as_str).collect();
        got.sort();
        got.dedup();
        for k in ["phone", "email", "my_number", "name", "address"] {
            match (want.contains(&k), got.contains(&k)) {
                (true, true) => *tp.entry(k).or_default() += 1,
                (true, false) => {
                    *fn_.entry(k).or_default() += 1;
                    misses.push(format!("missed {k}: {text}"));
                }
                (false, true) => {
                    *fp.entry(k).or_default() += 1;
                    misses.push(format!("false {k}: {text}"));
                }
                _ => {}
            }
        }
    }
    let mut table = String::new();
    for (k, recall_floor, precision_floor) in [
        ("phone", 0.97, 0.97),
        ("email", 0.97, 0.97),
        ("my_number", 0.97, 0.97),
        ("name", 0.85, 0.85),
        ("address", 0.85, 0.85),
    ] {
        let (t, p, n) =
            (tp.get(k).copied().unwrap_or(0), fp.get(k).copied().unwrap_or(0), fn_.get(k).copied().unwrap_or(0));
        let recall = t as f64 / (t + n).max(1) as f64;
        let precision = t as f64 / (t + p).max(1) as f64;
        table.push_str(&format!("{k}: recall {recall:.3} ({t}/{}), precision {precision:.3} ({t}/{})\n", t + n, t + p));
        assert!(recall >= recall_floor && precision >= precision_floor, "{k} below its floors\n{table}\n{misses:#?}");
    }
    println!("{table}");
    println!("{misses:#?}");
}

#[test]
fn invisible_characters_hid_identifiers_from_every_scanner() {
    // one zero-width space, soft hyphen, word joiner or BOM inside the identifier or its cue
    let cases = [
        ("電話 090\u{200B}-8843-1234", IdentifierKind::Phone),
        ("電話 090\u{00AD}-8843-1234", IdentifierKind::Phone),
        ("電話 090-8843-\u{FEFF}1234", IdentifierKind::Phone),
        ("call +1 415\u{200B} 555 0134", IdentifierKind::Phone),
        ("mail taro\u{200B}@example.jp", IdentifierKind::Email),
        ("患\u{200B}者名：山田太郎 来院", IdentifierKind::Name),
        ("山田太郎\u{2060}様", IdentifierKind::Name),
        ("Mr.\u{200C} Yamada came", IdentifierKind::Name),
    ];
    for (t, kind) in cases {
        let clean = guard::visible(t.to_owned());
        assert!(!clean.chars().any(guard::invisible), "{t:?}");
        assert_eq!(kinds(&clean), [kind], "{t:?}");
    }
    let n = my_number("12345678901");
    let hidden = format!("番号 {}\u{200B}{}\u{200B}{}", &n[..4], &n[4..8], &n[8..]);
    assert_eq!(kinds(&guard::visible(hidden)), [IdentifierKind::MyNumber]);
    // text without them is returned as it is
    assert_eq!(guard::visible("血圧 120/80 ｍｍＨｇ".to_owned()), "血圧 120/80 ｍｍＨｇ");

    // through the FHIR reader: the note's finding, and under redact a kept text without the phone
    let dir = tempfile::tempdir().unwrap();
    let note = "患\u{200B}者名：鈴木花子 0\u{200B}90-7777-2222 経過良好";
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, note);
    let doc = serde_json::json!({"resourceType": "DocumentReference", "id": "d1", "status": "current",
        "subject": {"reference": "Patient/p1"}, "date": "2024-01-02T00:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain", "data": data}}]});
    std::fs::write(dir.path().join("DocumentReference.ndjson"), format!("{doc}\n")).unwrap();
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(report.blocking);
    let (d, report) =
        data::read(dir.path(), &ReadOptions { identifiers: Policy::Redact, ..Default::default() }).unwrap();
    assert!(report.findings.iter().any(|f| f.kind == "phone") && report.findings.iter().any(|f| f.kind == "name"));
    assert_eq!(d.texts.len(), 1);
    for secret in ["鈴木", "7777", "2222", "\u{200B}"] {
        assert!(!d.texts[0].contains(secret), "{secret:?} kept");
    }
}

/// A list number before a phone (`(2) 090-1234-5678`) was read as the number's first group: the run
/// `(2) 090-1234-5678` has 12 digits and starts with 2, so it was no phone, and the scan went on after
/// it. The bracket rule for area codes (`(03) 5555 6473`) let the list number's bracket join the run.
#[test]
fn phone_after_a_list_number_was_missed() {
    let n = my_number("27182818284");
    let numbered = [
        ("(2) 090-1234-5678", IdentifierKind::Phone),
        ("(2)090-1234-5678", IdentifierKind::Phone),
        ("1) 03-1234-5678", IdentifierKind::Phone),
        ("（２）０９０－１２３４－５６７８", IdentifierKind::Phone),
        ("２）０３（１２３４）５６７８", IdentifierKind::Phone),
        ("3. 0312345678", IdentifierKind::Phone),
        ("12) 03 1234 5678", IdentifierKind::Phone),
        ("(1) 03 5555 6473", IdentifierKind::Phone),
        ("#2 090-1234-5678", IdentifierKind::Phone),
        ("(4) +81 90 1234 5678", IdentifierKind::Phone),
        ("連絡先 (2) 090-1234-5678 まで", IdentifierKind::Phone),
    ];
    for (t, kind) in numbered {
        assert_eq!(kinds(t), [kind], "{t}");
        // the finding is the phone, not the list number
        let f = guard::scan(t);
        assert!(!guard::redact(t, &f).contains("5678") && !guard::redact(t, &f).contains("５６７８"), "{t}");
    }
    let spaced = format!("(1) {} {} {}", &n[..4], &n[4..8], &n[8..]);
    assert_eq!(kinds(&spaced), [IdentifierKind::MyNumber], "{spaced}");
    let redacted = guard::redact("(2) 090-1234-5678", &guard::scan("(2) 090-1234-5678"));
    assert_eq!(redacted, "(2) [PHONE]", "the list number stays");
    // the second read is bounded: a note of numbered near-phones costs what other hostile notes do
    for hostile in ["(2) 090-1234-567 ".repeat(100_000), "1) 2 3 ".repeat(200_000), "(1)(".repeat(300_000)] {
        let (_, ops) = guard::scan_counted(&hostile);
        assert!(ops <= 12 * hostile.len() as u64, "{ops} characters examined for {} bytes", hostile.len());
    }
    // a list of two, each numbered
    assert_eq!(kinds("1) 03-1234-5678 2) 090-1111-2222"), [IdentifierKind::Phone, IdentifierKind::Phone]);
    // list numbers before what is not a phone stay unflagged
    for t in [
        "(2) 2024-03-05",
        "1) Cr 1.23 mg/dL",
        "(3) 120/80",
        "2. 0.5 1.5 2.5",
        "(1) 10:30",
        "3) 1234-5678",
        "(2) 03-1234-567",
        "(12) 3456 7890",
        "(2) 2024 03 05",
        "2) lot 1234-5678",
        "2) 10 20 30 40 50",
    ] {
        assert!(kinds(t).is_empty(), "{t}: {:?}", kinds(t));
    }
}

/// A Patient's extensions were read by their URL, two of them (mothersMaidenName, birthPlace): a
/// profile's emergency contact (a complex extension holding a HumanName and a ContactPoint), an
/// address or an insurance number in an extension of any other URL was neither a finding nor
/// searched for in the patient's notes.
#[test]
fn identifying_values_in_extensions_of_any_url_were_not_read() {
    let ext = r#""extension":[{"url":"http://example.org/fhir/StructureDefinition/emergency-contact","extension":[{"url":"name","valueHumanName":{"family":"Okabe","given":["Rinko"]}},{"url":"phone","valueContactPoint":{"system":"phone","value":"080-7711-2468"}},{"url":"relationship","valueString":"sister"}]},{"url":"http://example.org/fhir/StructureDefinition/second-home","valueAddress":{"line":["4 Lantern Quay"],"city":"Exampleton"}},{"url":"http://example.org/fhir/StructureDefinition/insurance-number","valueIdentifier":{"system":"urn:ins","value":"INS-77310492"}},{"url":"http://example.org/fhir/StructureDefinition/caseworker-mail","valueContactPoint":{"system":"email","value":"caseworker@example.org"}}],"modifierExtension":[{"url":"http://example.org/fhir/StructureDefinition/guardian","valueHumanName":{"text":"Sakuraba Jun"}}]"#;
    // the note writes every value so that the pattern scanners find none of them: only the
    // extensions say they are identifiers
    let note = "rinko okabe and sakuraba jun came; call 080 77 11 24 68; stays at 4 lantern quay; card ins 77310492";
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[format!(r#"{{"resourceType":"Patient","id":"p1",{ext}}}"#)]);
    write(dir.path(), "DocumentReference.ndjson", &[note_line("p1", note), note_line("p2", note)]);
    assert!(kinds(note).is_empty(), "{:?}", kinds(note));
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("name", "Patient", "extension.valueHumanName"),
        ("phone", "Patient", "extension.valueContactPoint"),
        ("email", "Patient", "extension.valueContactPoint"),
        ("address", "Patient", "extension.valueAddress"),
        ("patient_identifier", "Patient", "extension.valueIdentifier"),
    ] {
        assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
    }
    // two names: the nested one and the modifier extension's
    let names: u64 = report.findings.iter().filter(|f| f.field == "extension.valueHumanName").map(|f| f.count).sum();
    assert_eq!(names, 2, "{:?}", report.findings);
    // a valueString of an unknown URL (the relationship) is not one
    assert_eq!(e.iter().filter(|(_, r, f)| r == "Patient" && f.starts_with("extension")).count(), 5, "{e:?}");
    // the values are p1's own identifiers: found in p1's note, not in p2's, and redacted
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    let own = own_kinds(&report);
    assert_eq!(own, ["address", "name", "patient_identifier", "phone"], "{:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
    for secret in ["okabe", "rinko", "sakuraba", "80 77 11", "lantern", "77310492"] {
        assert!(!p1.contains(secret), "{secret} kept in {p1}");
    }
    assert!(d.texts.iter().any(|t| t == note), "p2's note is not p1's patient's: kept as it is");
    // in a contained Patient: findings of the resource that holds it
    let contained = in_contained_patient(&ext);
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "Observation.ndjson", &[contained]);
    let (_, report) = data::read(other.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("name", "Observation", "contained.extension.valueHumanName"),
        ("phone", "Observation", "contained.extension.valueContactPoint"),
        ("address", "Observation", "contained.extension.valueAddress"),
        ("patient_identifier", "Observation", "contained.extension.valueIdentifier"),
    ] {
        assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
    }
    // never printed
    for input in [dir.path(), other.path()] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
            .args(["data", "check", "--json"])
            .arg(input)
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "blocking: {all}");
        assert!(all.contains("extension.value"), "{all}");
        for secret in ["Okabe", "Rinko", "7711", "Lantern", "77310492", "caseworker@", "Sakuraba"] {
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
}

fn related_person(patient: &str) -> String {
    format!(
        r#"{{"resourceType":"RelatedPerson","id":"r1","active":true,"patient":{{"reference":"{patient}"}},"relationship":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"SIS"}}]}}],"name":[{{"family":"Okabe","given":["Rinko"]}}],"telecom":[{{"system":"phone","value":"080-7711-2468"}},{{"system":"email","value":"rinko.okabe@example.org"}}],"address":[{{"line":["4 Lantern Quay"],"city":"Exampleton"}}],"birthDate":"1961-02-03","identifier":[{{"system":"urn:ins","value":"INS-77310492"}}]}}"#
    )
}

/// A note that names the relative's values in forms the pattern scanners do not take.
const RELATIVE_NOTE: &str = "sister rinko okabe visited; call 080 77 11 24 68; she lives at 4 lantern quay";

/// The (kind, field) of the `subject_identifier` findings and their count.
fn own_findings(report: &data::Report) -> u64 {
    report.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.count).sum()
}

/// RelatedPerson resources (a relative's name, phone, address, birth date, identifiers) were counted
/// and skipped: nothing of them was a finding, and a relative named in the patient's notes stayed.
#[test]
fn related_person_resources_were_not_read() {
    assert!(kinds(RELATIVE_NOTE).is_empty(), "{:?}", kinds(RELATIVE_NOTE));
    // RelatedPerson.ndjson sorts after the notes, with or without a Patient resource
    for with_patient in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        if with_patient {
            write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
        }
        write(
            dir.path(),
            "DocumentReference.ndjson",
            &[note_line("p1", RELATIVE_NOTE), note_line("p2", RELATIVE_NOTE)],
        );
        write(dir.path(), "RelatedPerson.ndjson", &[related_person("Patient/p1")]);
        let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        assert_eq!(report.resources.get("RelatedPerson"), Some(&1));
        let e = errors(&report);
        for want in [
            ("name", "RelatedPerson", "name"),
            ("telecom", "RelatedPerson", "telecom"),
            ("address", "RelatedPerson", "address"),
            ("birth_date", "RelatedPerson", "birthDate"),
            ("patient_identifier", "RelatedPerson", "identifier"),
        ] {
            assert!(e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want), "{want:?} not in {e:?}");
        }
        assert!(report.blocking);
        let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
        let (d, report) = data::read(dir.path(), &opts).unwrap();
        // the relative's name (as written together), phone and address in p1's note
        assert_eq!(own_findings(&report), 3, "with_patient {with_patient}: {:?}", report.findings);
        let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
        for secret in ["rinko", "okabe", "77 11", "lantern"] {
            assert!(!p1.contains(secret), "{secret} kept in {p1}");
        }
        assert!(d.texts.iter().any(|t| t == RELATIVE_NOTE), "p2's note is not the relative's patient's");
    }
}

/// A RelatedPerson in a mixed file after its patient's notes (the Patient read first, so the patient's
/// identifiers were known when the notes were read): the notes are checked again, events kept or not,
/// with the same counts.
#[test]
fn related_person_after_its_patients_notes_in_a_mixed_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
    let note = format!("{OWN_NOTE} {RELATIVE_NOTE}");
    let lab = lab_with_note("p1", RELATIVE_NOTE);
    write(dir.path(), "export.ndjson", &[note_line("p1", &note), lab, related_person("urn:uuid:p1")]);
    let mut counts = Vec::new();
    for keep_events in [true, false] {
        let opts = ReadOptions { identifiers: Policy::Redact, keep_events, ..Default::default() };
        let (d, report) = data::read(dir.path(), &opts).unwrap();
        // the patient's name and phone, the relative's name, phone and address
        assert_eq!(own_findings(&report), 5, "keep_events {keep_events}: {:?}", report.findings);
        assert_eq!(own_in_observations(&report), [("note.text.subject_identifier".to_owned(), 3)].into());
        counts.push(own_findings(&report));
        if keep_events {
            assert_eq!(d.texts.len(), 1);
            for secret in ["香川", "rinko", "okabe", "77 11", "lantern", "９８ ７６"] {
                assert!(!d.texts[0].contains(secret), "{secret} kept in {}", d.texts[0]);
            }
        }
    }
    assert_eq!(counts[0], counts[1]);
}

/// A RelatedPerson whose patient the export does not hold, or that names none: read without a
/// panic, its values still findings, counted (`related_person_without_patient`, or unusable as any
/// resource without a Patient subject is), and never printed.
#[test]
fn related_person_of_an_unknown_patient_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
    let no_patient =
        r#"{"resourceType":"RelatedPerson","name":[{"text":"Okabe Rinko"}],"patient":{"display":"Kagawa Ken"}}"#;
    let group =
        r#"{"resourceType":"RelatedPerson","name":[{"text":"Okabe Rinko"}],"patient":{"reference":"Group/g1"}}"#;
    write(
        dir.path(),
        "export.ndjson",
        &[
            related_person("Patient/nobody"),
            related_person("Patient/nobody"),
            no_patient.to_owned(),
            group.to_owned(),
            note_line("p1", RELATIVE_NOTE),
        ],
    );
    let (d, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let count = |kind: &str| report.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!(count("related_person_without_patient"), 2, "{:?}", report.findings);
    let unusable = report
        .findings
        .iter()
        .find(|f| f.kind == "no_patient_subject" && f.resource == "RelatedPerson")
        .expect("unusable counted");
    assert_eq!((unusable.field.as_str(), unusable.count), ("patient", 2));
    let names: u64 = report
        .findings
        .iter()
        .filter(|f| f.resource == "RelatedPerson" && f.kind == "name" && f.field == "name")
        .map(|f| f.count)
        .sum();
    assert_eq!(names, 4, "{:?}", report.findings);
    assert!(errors(&report).contains(&("name".into(), "RelatedPerson".into(), "patient.display".into())));
    // the unknown patient's relative is not p1's: p1's note is kept as it is, no subject was made
    assert_eq!(own_findings(&report), 0, "{:?}", report.findings);
    assert!(d.texts.iter().any(|t| t == RELATIVE_NOTE));
    assert_eq!(report.subjects, 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "blocking: {all}");
    assert!(all.contains("related_person_without_patient"), "{all}");
    for secret in ["Okabe", "Rinko", "7711", "Lantern", "77310492", "1961", "nobody", "Kagawa"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
}

/// `data check --json` on `input`: its exit code and everything it printed.
fn data_check_json(input: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json"])
        .arg(input)
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn has(e: &[(String, String, String)], want: (&str, &str, &str)) -> bool {
    e.iter().any(|(k, r, f)| (k.as_str(), r.as_str(), f.as_str()) == want)
}

/// A Person (the demographics of a human, linked to their Patient records) linking two patients,
/// one the export lacks, and a practitioner.
const PERSON: &str = r#"{"resourceType":"Person","id":"per1","name":[{"family":"Tanabe","given":["Shiori"]}],"telecom":[{"system":"phone","value":"070-3141-5926"},{"system":"email","value":"shiori.tanabe@example.org"}],"address":[{"line":["9 Heron Row"],"city":"Exampleton"}],"birthDate":"1958-07-09","identifier":[{"system":"urn:dl","value":"DL-55219034"}],"photo":[{"contentType":"image/jpeg","url":"http://example.org/faces/tanabe.jpg"}],"link":[{"target":{"reference":"Patient/p1","display":"Tanabe Shiori"}},{"target":{"reference":"Patient/p3"}},{"target":{"reference":"Patient/nobody"}},{"target":{"reference":"Practitioner/dr1"}}]}"#;

/// The Person's values, written so that the pattern scanners take none of them.
const PERSON_NOTE: &str = "shiori tanabe came; call 070 31 41 59 26; lives at 9 heron row";

/// Person resources were counted and skipped: their name, phone, address, birth date, identifiers
/// and photo were no finding, the person named in their linked patients' notes stayed, and the
/// Patient records a Person links (one human) were two privacy units.
#[test]
fn person_resources_were_not_read() {
    assert!(kinds(PERSON_NOTE).is_empty(), "{:?}", kinds(PERSON_NOTE));
    // a Person file (read first with the Patients), and a Person after the notes in a mixed file
    for person_file in ["Person.ndjson", "zz_export.ndjson"] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Patient.ndjson", &[own_patient("p1")]);
        write(
            dir.path(),
            "DocumentReference.ndjson",
            &[note_line("p1", PERSON_NOTE), note_line("p2", PERSON_NOTE), note_line("p3", PERSON_NOTE)],
        );
        write(dir.path(), person_file, &[PERSON.to_owned()]);
        let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        assert_eq!(report.resources.get("Person"), Some(&1));
        let e = errors(&report);
        for want in [
            ("name", "Person", "name"),
            ("telecom", "Person", "telecom"),
            ("address", "Person", "address"),
            ("birth_date", "Person", "birthDate"),
            ("patient_identifier", "Person", "identifier"),
            ("photo", "Person", "photo"),
            ("name", "Person", "link.target.display"),
        ] {
            assert!(has(&e, want), "{want:?} not in {e:?}");
        }
        // the link to a patient the export lacks, not the practitioner's
        let unknown = report.findings.iter().find(|f| f.kind == "person_link_without_patient").expect("counted");
        assert_eq!((unknown.resource.as_str(), unknown.field.as_str(), unknown.count), ("Person", "link.target", 1));
        // p1 and p3 are one human's records: one privacy unit; the unknown link makes no subject
        assert_eq!(report.subjects, 2, "{:?}", report.findings);
        assert_eq!(report.findings.iter().find(|f| f.kind == "linked_patient").map(|f| f.count), Some(1));
        for keep_events in [true, false] {
            let opts = ReadOptions { identifiers: Policy::Redact, keep_events, ..Default::default() };
            let (d, report) = data::read(dir.path(), &opts).unwrap();
            // name, phone and address in p1's and p3's notes; p2 is not linked
            assert_eq!(own_findings(&report), 6, "{person_file} keep_events {keep_events}: {:?}", report.findings);
            if keep_events {
                let redacted: Vec<&String> = d.texts.iter().filter(|t| t.contains("[NAME]")).collect();
                assert_eq!(redacted.len(), 2, "{:?}", d.texts);
                for t in redacted {
                    for secret in ["shiori", "tanabe", "31 41", "heron"] {
                        assert!(!t.contains(secret), "{secret} kept in {t}");
                    }
                }
                assert!(d.texts.iter().any(|t| t == PERSON_NOTE), "p2's note is not the person's");
            }
        }
        let (code, all) = data_check_json(dir.path());
        assert_eq!(code, Some(1), "blocking: {all}");
        assert!(all.contains("person_link_without_patient") && all.contains("\"photo\""), "{all}");
        for secret in ["Tanabe", "Shiori", "3141", "Heron", "55219034", "1958", "faces", "nobody", "dr1"] {
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
}

/// A Patient whose name, telecom, address, contact and birth date carry extensions holding another
/// name, phone, address or identifier (and a birth time on `_birthDate`).
const PATIENT_WITH_SUB_ELEMENT_EXTENSIONS: &str = r#""name":[{"family":"香川","given":["健"],"extension":[{"url":"http://example.org/fhir/StructureDefinition/alias","valueHumanName":{"family":"Mizuhara","given":["Aoi"]}}],"_family":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/humanname-partner-name","valueString":"Kurosawa"}]}}],"telecom":[{"system":"phone","value":"03-9876-5432","extension":[{"url":"http://example.org/fhir/StructureDefinition/backup","valueContactPoint":{"system":"phone","value":"080-2718-2818"}}]}],"address":[{"city":"Exampleton","extension":[{"url":"http://example.org/fhir/StructureDefinition/previous","valueAddress":{"line":["12 Quill Lane"]}}]}],"contact":[{"relationship":[{"text":"guardian"}],"extension":[{"url":"http://example.org/fhir/StructureDefinition/guardian-card","valueIdentifier":{"value":"GUARD-6620417"}}]}],"_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-03-04T05:06:00+09:00"},{"url":"http://example.org/fhir/StructureDefinition/registrar","valueIdentifier":{"value":"REG-4401937"}}]}"#;

/// Only a Patient's own extensions (`Patient.extension`) were read: an extension on its names,
/// telecoms, addresses, contacts or on a primitive (`_birthDate.extension`) holding a HumanName,
/// ContactPoint, Address or Identifier was neither a finding nor searched for in the patient's notes.
#[test]
fn extensions_on_patient_sub_elements_were_not_read() {
    let note =
        "aoi mizuhara and kurosawa came; call 080 27 18 28 18; was at 12 quill lane; card guard 6620417, reg 4401937";
    assert!(kinds(note).is_empty(), "{:?}", kinds(note));
    let dir = tempfile::tempdir().unwrap();
    let patient = format!(r#"{{"resourceType":"Patient","id":"p1",{PATIENT_WITH_SUB_ELEMENT_EXTENSIONS}}}"#);
    write(dir.path(), "Patient.ndjson", &[patient]);
    write(dir.path(), "DocumentReference.ndjson", &[note_line("p1", note), note_line("p2", note)]);
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("name", "Patient", "name.extension"),
        ("phone", "Patient", "telecom.extension"),
        ("address", "Patient", "address.extension"),
        ("patient_identifier", "Patient", "contact.extension"),
        ("birth_date", "Patient", "_birthDate.extension"),
        ("patient_identifier", "Patient", "_birthDate.extension"),
    ] {
        assert!(has(&e, want), "{want:?} not in {e:?}");
    }
    // two names: the alias and the partner's name on `_family`
    let names: u64 = report.findings.iter().filter(|f| f.field == "name.extension").map(|f| f.count).sum();
    assert_eq!(names, 2, "{:?}", report.findings);
    // the values are p1's own: found and redacted in p1's note, not in p2's
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    let own = own_kinds(&report);
    assert_eq!(own, ["address", "name", "patient_identifier", "phone"], "{:?}", report.findings);
    assert_eq!(own_findings(&report), 6, "{:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
    for secret in ["mizuhara", "kurosawa", "27 18", "quill", "6620417", "4401937"] {
        assert!(!p1.contains(secret), "{secret} kept in {p1}");
    }
    assert!(d.texts.iter().any(|t| t == note), "p2's note is not p1's");
    // in a contained Patient: findings of the resource that holds it
    let contained = in_contained_patient(&PATIENT_WITH_SUB_ELEMENT_EXTENSIONS);
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "Observation.ndjson", &[contained]);
    let (_, report) = data::read(other.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("name", "Observation", "contained.name.extension"),
        ("phone", "Observation", "contained.telecom.extension"),
        ("address", "Observation", "contained.address.extension"),
        ("patient_identifier", "Observation", "contained.contact.extension"),
        ("birth_date", "Observation", "contained._birthDate.extension"),
    ] {
        assert!(has(&e, want), "{want:?} not in {e:?}");
    }
    for input in [dir.path(), other.path()] {
        let (code, all) = data_check_json(input);
        assert_eq!(code, Some(1), "blocking: {all}");
        assert!(all.contains("_birthDate.extension"), "{all}");
        for secret in ["Mizuhara", "Kurosawa", "2718", "Quill", "6620417", "4401937", "05:06", "1970"] {
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
}

/// `photo` (an Attachment: a face image identifies as a name does) on a Patient, a RelatedPerson and
/// a contained Patient was no finding.
#[test]
fn photo_of_a_patient_or_relative_was_not_flagged() {
    let photo =
        r#""photo":[{"contentType":"image/jpeg","data":"/9j/4AAQSkZJRgABAQAAAQABAAD","title":"Kagawa Ken, front"}]"#;
    let dir = tempfile::tempdir().unwrap();
    let patient = format!(
        r#"{{"resourceType":"Patient","id":"p1","name":[{{"family":"香川","given":["健"]}}],"telecom":[{{"system":"phone","value":"03-9876-5432"}}],{photo}}}"#
    );
    let relative = format!(
        r#"{{"resourceType":"RelatedPerson","patient":{{"reference":"Patient/p1"}},"photo":[{{"url":"http://example.org/faces/okabe.png"}}]}}"#
    );
    let contained = in_contained_patient(&photo);
    write(dir.path(), "Patient.ndjson", &[patient]);
    write(dir.path(), "RelatedPerson.ndjson", &[relative]);
    write(dir.path(), "export.ndjson", &[note_line("p1", OWN_NOTE), contained]);
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let e = errors(&report);
    for want in [
        ("photo", "Patient", "photo"),
        ("photo", "RelatedPerson", "photo"),
        ("photo", "Observation", "contained.photo"),
    ] {
        assert!(has(&e, want), "{want:?} not in {e:?}");
    }
    assert!(report.blocking);
    // redacted: a warning, and the patient's own name and phone still redacted in its note
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    let photo_warning =
        report.findings.iter().find(|f| f.kind == "photo" && f.resource == "Patient").expect("photo finding");
    assert_eq!(photo_warning.severity, Severity::Warning);
    assert_eq!(own_findings(&report), 2, "{:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[NAME]")).expect("p1's note is redacted");
    assert!(!p1.contains("香川") && !p1.contains("９８ ７６"), "{p1}");
    let (code, all) = data_check_json(dir.path());
    assert_eq!(code, Some(1), "blocking: {all}");
    assert!(all.contains("\"photo\"") && all.contains("contained.photo"), "{all}");
    for secret in ["4AAQSkZJRg", "Kagawa", "okabe.png", "faces", "9876"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
}

/// The kinds of the subject's own identifiers found in its notes, each once, sorted.
fn own_kinds(report: &data::check::Report) -> Vec<&str> {
    let mut own: Vec<&str> =
        report.findings.iter().filter(|f| f.field == "subject_identifier").map(|f| f.kind.as_str()).collect();
    own.sort();
    own.dedup();
    own
}

/// An Observation of p1 holding a contained Patient of the given fields (JSON members).
fn in_contained_patient(patient_fields: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","contained":[{{"resourceType":"Patient","id":"newborn",{patient_fields}}}],"status":"final","category":[{{"coding":[{{"code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/p1"}},"effectiveDateTime":"2024-01-02","valueQuantity":{{"value":1.1,"unit":"mg/dL"}}}}"#
    )
}

/// A RelatedPerson or a Person inside a resource (`contained`: a Patient's relative written in the
/// Patient, whom its `#` reference names) was not read: its name, phone, address, identifiers and
/// photo were no finding, and the relative named in the patient's notes stayed.
#[test]
fn contained_related_person_and_person_were_not_read() {
    let relative = related_person("#");
    // inside p1: links p1 (`#`), p3, a patient the export lacks and a practitioner
    let person = PERSON.replace("Patient/p1", "#");
    let holder = own_patient("p1").replacen('{', &format!("{{\"contained\":[{relative},{person}],"), 1);
    let p1_note = format!("{RELATIVE_NOTE}; {PERSON_NOTE}");
    // the Patient file (read first), and the Patient after the notes in a mixed file
    for holder_file in ["Patient.ndjson", "zz_export.ndjson"] {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "DocumentReference.ndjson",
            &[note_line("p1", &p1_note), note_line("p2", &p1_note), note_line("p3", PERSON_NOTE)],
        );
        write(dir.path(), holder_file, std::slice::from_ref(&holder));
        let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        assert_eq!(report.resources.get("Patient"), Some(&1));
        assert_eq!(report.resources.get("RelatedPerson"), None, "a contained resource is no resource of the export");
        let e = errors(&report);
        for want in [
            ("name", "Patient", "contained.name"),
            ("telecom", "Patient", "contained.telecom"),
            ("address", "Patient", "contained.address"),
            ("birth_date", "Patient", "contained.birthDate"),
            ("patient_identifier", "Patient", "contained.identifier"),
            ("photo", "Patient", "contained.photo"),
            ("name", "Patient", "contained.link.target.display"),
        ] {
            assert!(has(&e, want), "{want:?} not in {e:?}");
        }
        let unknown = report.findings.iter().find(|f| f.kind == "person_link_without_patient").expect("counted");
        assert_eq!(unknown.count, 1, "the link to `nobody`");
        assert!(!report.findings.iter().any(|f| f.kind == "no_patient_subject"), "{:?}", report.findings);
        // p1 (the holder, `#`) and p3 are one human's records
        assert_eq!(report.subjects, 2, "{:?}", report.findings);
        let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
        let (d, report) = data::read(dir.path(), &opts).unwrap();
        // the relative's and the person's name, phone and address in p1's note, the person's in p3's
        assert_eq!(own_findings(&report), 9, "{holder_file}: {:?}", report.findings);
        let p1 = d.texts.iter().find(|t| t.matches("[NAME]").count() == 2).expect("p1's note is redacted");
        for secret in ["rinko", "okabe", "77 11", "lantern", "shiori", "tanabe", "31 41", "heron"] {
            assert!(!p1.contains(secret), "{secret} kept in {p1}");
        }
        assert!(d.texts.contains(&p1_note), "p2's note is not p1's: kept as it is");
        let (code, all) = data_check_json(dir.path());
        assert_eq!(code, Some(1), "blocking: {all}");
        assert!(all.contains("contained.link.target.display"), "{all}");
        for secret in ["Okabe", "Rinko", "7711", "Lantern", "77310492", "Tanabe", "3141", "Heron", "55219034", "nobody"]
        {
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
    // inside another resource (an Observation of p2) and naming its patient by reference
    let dir = tempfile::tempdir().unwrap();
    let lab = in_contained_patient("\"name\":[{\"text\":\"x\"}]")
        .replacen(
            "{\"resourceType\":\"Patient\"",
            &format!("{},{{\"resourceType\":\"Patient\"", related_person("Patient/p2")),
            1,
        )
        .replace("Patient/p1", "Patient/p2");
    write(dir.path(), "export.ndjson", &[note_line("p2", RELATIVE_NOTE), lab]);
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    assert!(report
        .findings
        .iter()
        .any(|f| (f.kind.as_str(), f.resource.as_str(), f.field.as_str())
            == ("telecom", "Observation", "contained.telecom")));
    assert_eq!(own_findings(&report), 3, "{:?}", report.findings);
    assert!(!d.texts[0].contains("rinko") && !d.texts[0].contains("lantern"), "{}", d.texts[0]);
}

/// A Person's `urn:uuid:` link to a Practitioner or a RelatedPerson of the export, or a link whose
/// `type` says it is no Patient, was counted as a link to a patient the export lacks
/// (`person_link_without_patient`): only a link that may name a Patient is.
#[test]
fn person_link_to_a_practitioner_or_relative_was_counted_as_a_missing_patient() {
    let targets = [
        r#"{"reference":"urn:uuid:6b0d8a3e-0001"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0002"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0003","type":"Practitioner"}"#,
        r#"{"reference":"Practitioner/dr1"}"#,
        r#"{"reference":"RelatedPerson/r1"}"#,
        r#"{"reference":"Person/per2"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0009"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0010","type":"Patient"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0011","type":"Patient"}"#,
        r#"{"reference":"Patient/nobody"}"#,
        r#"{"reference":"urn:uuid:6b0d8a3e-0100"}"#,
    ];
    let links: Vec<String> = targets.iter().map(|t| format!(r#"{{"target":{t}}}"#)).collect();
    let person = format!(r#"{{"resourceType":"Person","id":"per1","link":[{}]}}"#, links.join(","));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[own_patient("6b0d8a3e-0100")]);
    write(dir.path(), "Person.ndjson", &[person]);
    write(
        dir.path(),
        "export.ndjson",
        &[
            r#"{"resourceType":"Practitioner","id":"6b0d8a3e-0001","name":[{"text":"Dr. Who"}]}"#.to_owned(),
            r#"{"resourceType":"Practitioner","id":"6b0d8a3e-0011"}"#.to_owned(),
            related_person("Patient/6b0d8a3e-0100").replace("\"r1\"", "\"6b0d8a3e-0002\""),
        ],
    );
    let (_, report) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let unknown = report.findings.iter().find(|f| f.kind == "person_link_without_patient").expect("counted");
    // urn:uuid 0009 (nothing of the export, maybe a Patient), 0010 and 0011 (Patients by their type,
    // whatever else of the export has that id), nobody
    assert_eq!(unknown.count, 4, "{:?}", report.findings);
}

/// A photo's `title` (a file title often holds the name: `Mizuhara Aoi.jpg`) of a Patient, its
/// RelatedPerson or its Person was not searched for in the patient's notes.
#[test]
fn photo_title_was_not_searched_for_in_the_patients_notes() {
    let photo = |title: &str| {
        format!(r#""photo":[{{"contentType":"image/jpeg","url":"http://example.org/f/1","title":"{title}"}}]"#)
    };
    let patient = format!(r#"{{"resourceType":"Patient","id":"p1",{}}}"#, photo("Mizuhara Aoi.jpg"));
    let relative = format!(
        r#"{{"resourceType":"RelatedPerson","patient":{{"reference":"Patient/p1"}},{}}}"#,
        photo("Sakuraba_Jun.png")
    );
    let person = format!(
        r#"{{"resourceType":"Person","link":[{{"target":{{"reference":"Patient/p1"}}}}],{}}}"#,
        photo("Kurosawa Ren")
    );
    // a title that is a word is no name: `front` stays in the notes
    let generic = format!(r#"{{"resourceType":"Patient","id":"p2",{}}}"#, photo("front"));
    let note = "mizuhara aoi came with sakuraba jun and kurosawa ren; front desk informed";
    assert!(kinds(note).is_empty(), "{:?}", kinds(note));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Patient.ndjson", &[patient, generic]);
    write(dir.path(), "RelatedPerson.ndjson", &[relative]);
    write(dir.path(), "Person.ndjson", &[person]);
    write(dir.path(), "DocumentReference.ndjson", &[note_line("p1", note), note_line("p2", note)]);
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, report) = data::read(dir.path(), &opts).unwrap();
    assert_eq!(own_kinds(&report), ["photo"], "{:?}", report.findings);
    assert_eq!(own_findings(&report), 3, "{:?}", report.findings);
    let p1 = d.texts.iter().find(|t| t.contains("[PHOTO]")).expect("p1's note is redacted");
    assert_eq!(p1, "[PHOTO] came with [PHOTO] and [PHOTO]; front desk informed");
    assert!(d.texts.iter().any(|t| t == note), "p2's note: `front` is no name");
    let (_, all) = data_check_json(dir.path());
    for secret in ["Mizuhara", "Sakuraba", "Kurosawa"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
}

/// A Patient `id` of the given name (family, given) linking the given Patients (`Patient.link`).
fn linked_patient(id: &str, family: &str, given: &str, links: &[&str]) -> String {
    let links: Vec<String> =
        links.iter().map(|l| format!(r#"{{"other":{{"reference":"Patient/{l}"}},"type":"seealso"}}"#)).collect();
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{family}","given":["{given}"]}}],"link":[{}]}}"#,
        links.join(",")
    )
}

/// Records linked in a chain (A links B, B links C) are one person: each one's notes were checked
/// against the identifiers of all of them only when the links were read in the first pass (files
/// named `Patient*`); links read in a mixed file merged the records into one privacy unit at the end
/// but a note of A naming the person as C knows them stayed.
#[test]
fn identifiers_of_records_linked_in_a_chain_were_shared_only_in_the_first_pass() {
    let patients = [
        linked_patient("pa", "Hoshino", "Mei", &["pb"]),
        linked_patient("pb", "Amano", "Riko", &["pc"]),
        linked_patient("pc", "Kisaragi", "Yuu", &[]),
    ];
    let note = "hoshino mei, also known as amano riko and kisaragi yuu, came";
    assert!(kinds(note).is_empty(), "{:?}", kinds(note));
    for patient_file in ["Patient.ndjson", "zz_export.ndjson"] {
        for keep_events in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "DocumentReference.ndjson", &[note_line("pa", note), note_line("pc", note)]);
            write(dir.path(), patient_file, &patients);
            let opts = ReadOptions { identifiers: Policy::Redact, keep_events, ..Default::default() };
            let (d, report) = data::read(dir.path(), &opts).unwrap();
            assert_eq!(report.subjects, 1, "{:?}", report.findings);
            // three names (written together) in each of the two notes
            assert_eq!(own_findings(&report), 6, "{patient_file} keep_events {keep_events}: {:?}", report.findings);
            if keep_events {
                assert_eq!(d.texts.len(), 2);
                for t in &d.texts {
                    assert_eq!(t, "[NAME], also known as [NAME] and [NAME], came", "{patient_file}");
                }
            }
        }
    }
}

/// Found by a tester: "lives 534 Erewhon St PleasantVille" kept the patient's city when the street was
/// redacted (an address's city and district are the patient's own identifiers now, as its lines are).
#[test]
fn a_patients_city_in_its_notes_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let patient = r#"{"resourceType":"Patient","id":"p1","address":[{"line":["534 Erewhon St"],"city":"PleasantVille","district":"Rainier County"}]}"#;
    let note = "Lives 534 Erewhon St PleasantVille, Rainier County; walks daily.";
    write(dir.path(), "export.ndjson", &[patient.to_owned(), note_line("p1", note)]);
    let opts = ReadOptions { identifiers: Policy::Redact, ..Default::default() };
    let (d, _) = data::read(dir.path(), &opts).unwrap();
    assert_eq!(d.texts.len(), 1);
    for kept in ["Erewhon", "PleasantVille", "Rainier"] {
        assert!(!d.texts[0].contains(kept), "{kept} kept: {}", d.texts[0]);
    }
    assert!(d.texts[0].contains("walks daily"), "{}", d.texts[0]);
}
