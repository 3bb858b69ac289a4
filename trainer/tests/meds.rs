//! MEDS input as other tools write it (meds-testing-helpers, MEDS-transforms, ACES): text results,
//! label directories, partial or extra subject splits, wrong column types, the report's wording.

mod common;
use common::meds::{code_parent, col, writer, Row};
use medtrain::data::{self, check::Severity, labels, split, EventKind, ReadOptions};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type};
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
}

fn t(s: &str) -> i64 {
    data::time::utc(s).unwrap() * 1_000_000
}

/// One MEDS data shard at `root/rel` (with `metadata/` made, as a MEDS root has it).
fn shard(root: &Path, rel: &str, rows: &[Row]) {
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    common::meds::shard(&root.join(rel), "MICROS", rows);
}

/// `metadata/subject_splits.parquet`.
fn splits(root: &Path, rows: &[(i64, &str)]) {
    let mut w = writer(
        &root.join("metadata/subject_splits.parquet"),
        "message s { required int64 subject_id; required binary split (STRING); }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), None, None);
    col::<ByteArrayType>(&mut rg, &rows.iter().map(|r| ByteArray::from(r.1)).collect::<Vec<_>>(), None, None);
    rg.close().unwrap();
    w.close().unwrap();
}

/// A boolean label shard with an int64 or int32 `subject_id`.
fn label_shard(path: &Path, subject_type: &str, rows: &[(i64, &str, bool)]) {
    let mut w = writer(
        path,
        &format!(
            "message l {{ required {subject_type} subject_id; required int64 prediction_time (TIMESTAMP(MICROS,false)); \
             required boolean boolean_value; }}"
        ),
    );
    let mut rg = w.next_row_group().unwrap();
    if subject_type == "int32" {
        col::<Int32Type>(&mut rg, &rows.iter().map(|r| r.0 as i32).collect::<Vec<_>>(), None, None);
    } else if subject_type == "double" {
        col::<DoubleType>(&mut rg, &rows.iter().map(|r| r.0 as f64).collect::<Vec<_>>(), None, None);
    } else {
        col::<Int64Type>(&mut rg, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), None, None);
    }
    col::<Int64Type>(&mut rg, &rows.iter().map(|r| t(r.1)).collect::<Vec<_>>(), None, None);
    col::<BoolType>(&mut rg, &rows.iter().map(|r| r.2).collect::<Vec<_>>(), None, None);
    rg.close().unwrap();
    w.close().unwrap();
}

fn found<'r>(r: &'r data::Report, kind: &str) -> Option<&'r data::check::Finding> {
    r.findings.iter().find(|f| f.kind == kind)
}

/// Two subjects with a creatinine each, split as `splits` says (used by the split tests).
fn two_subjects(root: &Path, rel: &str) {
    shard(
        root,
        rel,
        &[
            (1, Some(t("2024-01-01T08:00:00Z")), "LAB//2160-0//mg/dL", Some(1.0), None),
            (2, Some(t("2024-01-01T08:00:00Z")), "LAB//2160-0//mg/dL", Some(1.1), None),
        ],
    );
}

#[test]
fn text_results_under_catalogue_lab_codes_were_read_as_notes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let at = Some(t("2024-01-01T08:00:00Z"));
    shard(
        root,
        "data/0.parquet",
        &[
            (1, at, "LOINC/2160-0", None, Some("<0.3")),
            (1, at, "LOINC/2160-0", None, Some(" 1.2 ")),
            (1, at, "LAB//1988-5//mg/L", None, Some("> 200")),
            (2, at, "CR-LOCAL", None, Some("<=0.2")),
            (2, at, "LOINC/2160-0", None, Some("≥4.5")),
            (2, at, "LOINC/2160-0", None, Some("hemolyzed")),
            (2, at, "LAB//Creatinine", None, Some("<0.3")),
            // real notes, and a text result under a code that is no lab, stay notes
            (2, at, "NOTE//progress", None, Some("doing well")),
            (2, at, "BP", None, Some("120/80")),
        ],
    );
    code_parent(root, "CR-LOCAL", "LOINC/2160-0");
    let (d, r) = data::read(root, &ReadOptions::default()).unwrap();
    assert_eq!(r.events.get("note"), Some(&2), "{:?}", r.events);
    assert_eq!(r.notes, 2);
    assert_eq!(r.events.get("lab"), Some(&6), "{:?}", r.events);
    assert_eq!(d.texts.len(), 2, "only the notes keep their text");
    let censored = found(&r, "censored_value").expect("censored values counted");
    assert_eq!((censored.count, censored.severity), (5, Severity::Info));
    assert_eq!((censored.resource.as_str(), censored.field.as_str()), ("meds", "text_value"));
    assert_eq!(found(&r, "no_value").map(|f| f.count), Some(1), "the hemolyzed result is a lab without a value");
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    let mut v: Vec<f32> =
        d.events.iter().filter(|e| e.code == cr && e.kind == EventKind::Lab).map(|e| e.value).collect();
    v.sort_by(f32::total_cmp);
    assert_eq!(v, [0.2, 0.3, 1.2, 4.5]);
    let crp = d.find_code("http://loinc.org", "1988-5").unwrap();
    // `> 200` mg/L: its limit, converted to the catalogue's mg/dL
    assert!(d.events.iter().any(|e| e.code == crp && (e.value - 20.0).abs() < 1e-4));
    // no text result reaches the report
    let json = serde_json::to_string(&r).unwrap();
    for s in ["hemolyzed", "<0.3", "120/80"] {
        assert!(!json.contains(s), "{s}");
    }
}

#[test]
fn a_label_directory_was_refused_as_an_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    two_subjects(root, "data/0.parquet");
    let (d, _) = data::read(root, &ReadOptions::default()).unwrap();
    // ACES / meds-testing-helpers: task_labels/<task>/*.parquet, read in name order as one set
    let task = root.join("task_labels/aki");
    label_shard(&task.join("1.parquet"), "int64", &[(2, "2024-01-03", false), (9, "2024-01-03", true)]);
    label_shard(&task.join("0.parquet"), "int64", &[(1, "2024-01-02", true)]);
    std::fs::write(task.join("2.csv"), "subject_id,prediction_time,boolean_value\n2,2024-01-04,true\n").unwrap();
    std::fs::write(task.join("README.txt"), "not labels").unwrap();
    let (l, unknown) = labels::read(&task, &d).unwrap();
    assert_eq!(unknown, 1);
    let got: Vec<(String, i64)> =
        l.iter().map(|l| (d.subjects.names[l.subject as usize].clone(), l.prediction_time)).collect();
    let day = |s| data::time::utc(s).unwrap();
    assert_eq!(
        got,
        [("1".into(), day("2024-01-02")), ("2".into(), day("2024-01-03")), ("2".into(), day("2024-01-04"))]
    );
    // a missing file, or a directory without label files: the error names the config key
    let empty = root.join("task_labels/none");
    std::fs::create_dir_all(&empty).unwrap();
    for (path, why) in [(root.join("missing.parquet"), "no such"), (empty.clone(), "no *.parquet or *.csv")] {
        let e = labels::read(&path, &d).unwrap_err();
        assert!(!e.unreadable(), "a label file is not the input: {e}");
        let e = e.to_string();
        assert!(e.contains("labels.file") && e.contains(why), "{e}");
        let cfg = root.join("cfg.toml");
        std::fs::write(&cfg, format!("input = \".\"\n[labels]\nfile = {:?}\n", path.display().to_string())).unwrap();
        let e = data::prepare::DataConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("config key labels.file") && e.contains(why), "{e}");
        let out = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(root.join("out")).output();
        let err = String::from_utf8_lossy(&out.unwrap().stderr).into_owned();
        assert!(err.contains("labels.file") && !err.contains("cannot read the input"), "{err}");
    }
    // the parent of several tasks' directories: not one label set
    label_shard(&root.join("task_labels/death/0.parquet"), "int64", &[(1, "2024-01-02", false)]);
    let e = labels::read(&root.join("task_labels"), &d).unwrap_err().to_string();
    assert!(e.contains("labels.file") && e.contains("2 directories") && e.contains("one task"), "{e}");
}

#[test]
fn subjects_missing_from_subject_splits_got_hash_splits_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    splits(dir.path(), &[(1, "held_out")]);
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let f = found(&r, "subject_without_split").expect("counted");
    assert_eq!((f.count, f.severity), (1, Severity::Warning));
    let s = split::assign(&d, b"k", 0.0, 0.0).unwrap();
    assert_eq!(s[d.subjects.get("1").unwrap() as usize], split::Split::HeldOut);
    assert!(found(&r, "split_directories_unused").is_none());
}

#[test]
fn split_directories_were_ignored_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    shard(dir.path(), "data/train/0.parquet", &[(1, Some(t("2024-01-01")), "LAB//2160-0//mg/dL", Some(1.0), None)]);
    shard(dir.path(), "data/held_out/0.parquet", &[(2, Some(t("2024-01-01")), "LAB//2160-0//mg/dL", Some(1.0), None)]);
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let f = found(&r, "split_directories_unused").expect("said");
    assert_eq!(f.severity, Severity::Warning);
    // with subject_splits.parquet covering everyone, nothing to say
    splits(dir.path(), &[(1, "train"), (2, "held_out")]);
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(found(&r, "split_directories_unused").is_none() && found(&r, "subject_without_split").is_none());
}

#[test]
fn subjects_only_in_subject_splits_counted_as_subjects() {
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    splits(dir.path(), &[(1, "train"), (2, "tuning"), (77, "train"), (78, "held_out")]);
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(r.subjects, 2);
    assert_eq!(d.subjects.len(), 2);
    assert_eq!(found(&r, "split_without_subject").map(|f| f.count), Some(2));
    assert_eq!(split::assign(&d, b"k", 0.1, 0.1).unwrap().len(), 2);
}

#[test]
fn data_check_passed_an_unknown_split_that_prepare_refused() {
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    splits(dir.path(), &[(1, "train"), (2, "cohort-Xq7")]);
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(r.blocking);
    let f = found(&r, "unknown_split").expect("reported");
    assert_eq!((f.count, f.severity), (1, Severity::Error));
    let out = bin().args(["data", "check"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown_split") && !text.contains("Xq7"), "{text}");
}

#[test]
fn a_subject_listed_in_two_splits_moved_silently_to_the_last() {
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    // subject 1 twice with one split (a duplicate row: fine), subject 2 in train and held_out
    splits(dir.path(), &[(1, "train"), (2, "train"), (1, "train"), (2, "held_out")]);
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(r.blocking);
    let f = found(&r, "conflicting_split").expect("reported");
    assert_eq!((f.count, f.severity), (1, Severity::Error));
    // the first row is kept (nothing trains on it: the finding blocks)
    assert!(d.splits.values().all(|s| s == "train"), "{:?}", d.splits);
}

#[test]
fn an_integer_code_column_was_every_row_malformed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
    let mut w = writer(
        &dir.path().join("data/0.parquet"),
        "message meds { required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false)); \
         required int64 code; optional float numeric_value; }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2], None, None);
    col::<Int64Type>(&mut rg, &[t("2024-01-01"), t("2024-01-02")], None, None);
    col::<Int64Type>(&mut rg, &[17, 4], None, None);
    col::<FloatType>(&mut rg, &[1.0, 2.0], Some(&[1, 1]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().expect("refused");
    assert!(e.unreadable());
    let e = e.to_string();
    assert!(e.contains("0.parquet") && e.contains("\"code\"") && e.contains("string column"), "{e}");
}

#[test]
fn an_int32_subject_id_in_a_label_file_was_missing() {
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let p = dir.path().join("labels.parquet");
    label_shard(&p, "int32", &[(1, "2024-01-02", true), (2, "2024-01-02", false)]);
    let (l, unknown) = labels::read(&p, &d).unwrap();
    assert_eq!((l.len(), unknown), (2, 0));
    assert_eq!(l[1].value, labels::LabelValue::Bool(false));
    // a float64 id (pandas writes one where the column had a NaN): the integer it is, as CSV's `1.0`
    label_shard(&p, "double", &[(1, "2024-01-02", true), (2, "2024-01-02", false)]);
    let (l, unknown) = labels::read(&p, &d).unwrap();
    assert_eq!((l.len(), unknown), (2, 0));
}

#[test]
fn meds_findings_named_fhir_fields() {
    let dir = tempfile::tempdir().unwrap();
    let at = Some(t("2024-01-01T08:00:00Z"));
    shard(
        dir.path(),
        "data/0.parquet",
        &[
            (1, at, "LAB//2160-0//umol/L", Some(88.4), None),
            (1, at, "LAB//2160-0//mg/dL", Some(900.0), None),
            (1, at, "LAB//2823-3//furlongs", Some(4.0), None),
        ],
    );
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    for kind in ["converted_unit", "implausible_value"] {
        assert!(found(&r, kind).is_some(), "{kind}: {:?}", r.findings);
    }
    for f in &r.findings {
        assert!(
            !f.resource.starts_with("Observation") && !f.field.contains("valueQuantity"),
            "{} in {}.{}",
            f.kind,
            f.resource,
            f.field
        );
    }
    assert_eq!(found(&r, "implausible_value").map(|f| f.field.as_str()), Some("numeric_value"));
}

#[test]
fn a_meds_root_without_metadata_was_not_recognized() {
    // data/ with parquet shards and no metadata/ (codes.parquet and subject_splits.parquet are optional)
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    two_subjects(root, "data/train/0.parquet");
    std::fs::remove_dir_all(root.join("metadata")).unwrap();
    std::fs::write(root.join("labels.csv"), "subject_id,prediction_time,boolean_value\n1,2024-01-02,true\n").unwrap();
    assert_eq!(data::detect(root).unwrap(), data::Format::Meds);
    // other files in data/ are said, but Spark's _SUCCESS and .crc files (names writers mark as not data)
    for junk in ["data/train/_SUCCESS", "data/train/.0.parquet.crc", "data/README.txt"] {
        std::fs::write(root.join(junk), "x").unwrap();
    }
    let (d, r) = data::read(root, &ReadOptions::default()).unwrap();
    assert_eq!(d.events.len(), 2);
    let unread = found(&r, "unread_file").expect("README.txt said");
    assert_eq!(unread.count, 1, "{:?}", unread.detail);
    assert!(unread.detail.as_deref().unwrap_or("").contains("data/README.txt"), "{:?}", unread.detail);
}

#[test]
fn a_code_with_and_without_values_was_tallied_under_its_first_rows_kind() {
    // `VITAL//heart_rate` with a value is a lab, without one an `other`: 3 and 2 rows, in either order
    let at = Some(t("2024-01-01T08:00:00Z"));
    let with = (1, at, "VITAL//heart_rate", Some(80.0), None);
    let without = (1, at, "VITAL//heart_rate", None, None);
    let dx = (1, at, "ICD10CM//N17.9", None, None);
    for rows in [vec![without, with, with, without, with, dx], vec![with, without, with, without, with, dx]] {
        let dir = tempfile::tempdir().unwrap();
        shard(dir.path(), "data/0.parquet", &rows);
        let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
        assert_eq!((r.events.get("lab"), r.events.get("other")), (Some(&3), Some(&3)), "{:?}", r.events);
        let other: Vec<(&str, u64, u64)> = r.other_codes.iter().map(|o| (o.kind, o.codes, o.events)).collect();
        assert_eq!(other, [("lab", 1, 3), ("other", 2, 3)]);
        // per kind, the named codes and the others hold the kind's events (no code is named here)
        for (kind, n) in &r.events {
            let o = r.other_codes.iter().find(|o| o.kind == *kind).map_or(0, |o| o.events);
            assert_eq!(o, *n, "{kind}");
        }
        let text = String::from_utf8_lossy(&bin().args(["data", "check"]).arg(dir.path()).output().unwrap().stdout)
            .into_owned();
        assert!(text.contains("3 lab events under 1 code outside") && text.contains("3 other events under 2 codes"));
    }
}

#[test]
fn a_codes_findings_moved_with_the_kind_of_its_first_event() {
    // one LOINC code read first as a note's type, then as two labs in two units: the unit conflict is
    // the Observations' (their units), and the code's count is all three events
    let mut d = data::Dataset::default();
    let code = d.code("http://loinc.org", "2160-0", None).0;
    let (mg, umol) = (d.units.get_or_insert("mg/dL"), d.units.get_or_insert("umol/L"));
    let subject = d.subjects.get_or_insert("1");
    let ev = |kind, unit, value| data::Event { subject, time: 0, kind, code, value, unit, text: data::NONE, end: 0 };
    let mut r = data::Report::default();
    for (i, e) in
        [ev(EventKind::Note, data::NONE, f32::NAN), ev(EventKind::Lab, mg, 1.0), ev(EventKind::Lab, umol, 90.0)]
            .into_iter()
            .enumerate()
    {
        r.event(&d, &data::Event { time: i as i64, ..e });
    }
    r.finish(&d, &ReadOptions::default());
    let conflict = found(&r, "unit_conflict").expect("two units");
    assert_eq!((conflict.resource.as_str(), conflict.count), ("Observation", 3));
    assert_eq!(r.codes.iter().map(|c| c.count).collect::<Vec<_>>(), [3]);
    assert!(r.other_codes.is_empty(), "{:?}", r.other_codes);
}

#[test]
fn meds_findings_named_generic_fields() {
    // `no_value in lab.value`, `duplicate in other.-`, `malformed_line in -.no subject_id or code`: every
    // finding on a MEDS input names a MEDS column
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let at = Some(t("2024-01-01T08:00:00Z"));
    shard(
        root,
        "data/0.parquet",
        &[
            (1, at, "LOINC/2160-0", None, Some("hemolyzed")),
            (1, at, "VITAL//heart_rate", Some(80.0), None),
            (1, at, "ICD10CM//N17.9", None, None),
            (1, at, "ICD10CM//N17.9", None, None),
            (1, at, "NOTE//progress", None, Some("a long progress note")),
            (2, at, "LAB//2160-0//mg/dL", Some(1.0), None),
        ],
    );
    // rows without a subject_id or a code
    let mut w = writer(
        &root.join("data/1.parquet"),
        "message meds { optional int64 subject_id; optional int64 time (TIMESTAMP(MICROS,false)); \
         optional binary code (STRING); optional float numeric_value; }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2], Some(&[0, 1, 1]), None);
    col::<Int64Type>(&mut rg, &[t("2024-01-01"); 3], Some(&[1, 1, 1]), None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("X"), ByteArray::from("Y")], Some(&[1, 0, 1]), None);
    col::<FloatType>(&mut rg, &[], Some(&[0, 0, 0]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let mut w = writer(
        &root.join("metadata/subject_splits.parquet"),
        "message s { required int64 subject_id; optional binary split (STRING); }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("train")], Some(&[1, 0]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let limits = data::ReadLimits { max_note_bytes: 6, ..Default::default() };
    let opts = ReadOptions { limits, max_malformed_fraction: 0.5, ..Default::default() };
    let (_, r) = data::read(root, &opts).unwrap();
    let named = |kind: &str| -> Vec<(String, String, u64)> {
        r.findings.iter().filter(|f| f.kind == kind).map(|f| (f.resource.clone(), f.field.clone(), f.count)).collect()
    };
    let meds = |field: &str, n: u64| vec![("meds".to_owned(), field.to_owned(), n)];
    assert_eq!(named("no_value"), meds("numeric_value", 1));
    assert_eq!(named("missing_unit"), meds("code", 1));
    assert_eq!(named("duplicate"), meds("code", 1));
    assert!(found(&r, "duplicate").unwrap().detail.as_deref().unwrap().starts_with("other events"));
    assert_eq!(named("note_truncated"), meds("text_value", 1));
    let mut malformed = named("malformed_line");
    malformed.sort();
    assert_eq!(
        malformed,
        [
            ("meds".to_owned(), "code".to_owned(), 1),
            ("meds".into(), "subject_id".into(), 1),
            ("meds".into(), "subject_splits.split".into(), 1)
        ]
    );
    let lines: Vec<(&str, &[u64])> = r
        .findings
        .iter()
        .filter(|f| f.kind == "malformed_line")
        .map(|f| (f.file.as_deref().unwrap(), f.lines.as_slice()))
        .collect();
    assert!(
        lines.contains(&("data/1.parquet", &[1][..])) && lines.contains(&("data/1.parquet", &[2][..])),
        "{lines:?}"
    );
    const MEDS_FIELDS: &[&str] = &[
        "subject_id",
        "time",
        "code",
        "numeric_value",
        "text_value",
        "subject_splits.split",
        "subject_splits.subject_id",
    ];
    for f in &r.findings {
        assert!(
            (f.resource == "meds" && MEDS_FIELDS.contains(&f.field.as_str())) || f.resource == "input",
            "{} in {}.{}",
            f.kind,
            f.resource,
            f.field
        );
    }
}

#[test]
fn a_split_that_is_not_utf8_was_printed_byte_by_byte() {
    // the record API's error on text that is not UTF-8 lists its bytes; metadata files are read with it
    let dir = tempfile::tempdir().unwrap();
    two_subjects(dir.path(), "data/0.parquet");
    let mut w = writer(
        &dir.path().join("metadata/subject_splits.parquet"),
        "message s { required int64 subject_id; required binary split (STRING); }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 2], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("train"), ByteArray::from(b"Yamada \xff".to_vec())], None, None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).expect_err("refused").to_string();
    assert!(e.contains("subject_splits.parquet") && e.contains("row 2") && e.contains("not shown"), "{e}");
    assert!(!e.contains("89, 97") && !e.contains("Yamada"), "{e}");
}

/// Found on third-party MEDS (meds_etl's OMOP output, meds-testing-helpers' sample, pyarrow floats):
/// a `unit` column, a parent code that is a vital sign, and infinite values; both readers alike.
#[test]
fn a_unit_column_vital_parents_and_infinite_values() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let path = root.join("data/0.parquet");
    let mut w = writer(
        &path,
        "message meds { required int64 subject_id; optional int64 time (TIMESTAMP(MICROS,false)); required binary \
         code (STRING); optional float numeric_value; optional binary text_value (STRING); optional binary unit \
         (STRING); optional binary table (STRING); }",
    );
    let rows: [(&str, f32, Option<&str>); 7] = [
        // creatinine in umol/L by the unit column: converted to the catalogue's mg/dL
        ("LOINC/2160-0", 88.4, Some("umol/L")),
        ("LOINC/2160-0", 1.0, Some("")),
        // the unit column over the code's unit
        ("LAB//2160-0//mg/dL", 176.8, Some("umol/L")),
        ("HR", 72.0, None),
        ("LOINC/2160-0", f32::INFINITY, Some("mg/dL")),
        ("LAB//99999//mg/dL", f32::NEG_INFINITY, None),
        ("LOINC/2160-0", 1.2, None),
    ];
    let mut rg = w.next_row_group().unwrap();
    let n = rows.len();
    col::<Int64Type>(&mut rg, &vec![1; n], None, None);
    col::<Int64Type>(
        &mut rg,
        &(0..n as i64).map(|i| t("2024-01-05T00:00:00Z") + i * 1_000_000).collect::<Vec<_>>(),
        Some(&vec![1; n]),
        None,
    );
    col::<ByteArrayType>(&mut rg, &rows.iter().map(|r| ByteArray::from(r.0)).collect::<Vec<_>>(), None, None);
    col::<FloatType>(&mut rg, &rows.iter().map(|r| r.1).collect::<Vec<_>>(), Some(&vec![1; n]), None);
    col::<ByteArrayType>(&mut rg, &[], Some(&vec![0; n]), None);
    let units: Vec<ByteArray> = rows.iter().filter_map(|r| r.2).map(ByteArray::from).collect();
    col::<ByteArrayType>(&mut rg, &units, Some(&rows.iter().map(|r| r.2.is_some() as i16).collect::<Vec<_>>()), None);
    col::<ByteArrayType>(&mut rg, &vec![ByteArray::from("measurement"); n], Some(&vec![1; n]), None);
    rg.close().unwrap();
    w.close().unwrap();
    code_parent(root, "HR", "LOINC/8867-4");
    let opts = ReadOptions { keep_events: true, ..ReadOptions::default() };
    for by_rows in [false, true] {
        let (mut d, mut r) = (data::Dataset::default(), data::Report::default());
        if by_rows {
            data::meds::read_rows_reference(root, &opts, &mut d, &mut r).unwrap();
        } else {
            data::meds::read(root, &opts, &mut d, &mut r).unwrap();
        }
        let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
        let mut creatinine: Vec<f32> =
            d.events.iter().filter(|e| e.code == cr && e.kind == EventKind::Lab).map(|e| e.value).collect();
        creatinine.sort_by(f32::total_cmp);
        let want = [1.0f32, 1.0, 1.2, 2.0];
        assert!(
            creatinine.len() == 4 && creatinine.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-3),
            "{creatinine:?}"
        );
        let hr = d.find_code("http://loinc.org", "8867-4").unwrap();
        let vitals: Vec<&data::Event> = d.events.iter().filter(|e| e.code == hr).collect();
        assert!(vitals.len() == 1 && vitals[0].kind == EventKind::Vital, "{vitals:?}");
        assert!(d.events.iter().all(|e| !e.value.is_infinite()));
        assert_eq!(d.events.len(), 5);
    }
    // the report, as `data check` gives it (MEDS names)
    {
        let (_, r) = data::read(root, &opts).unwrap();
        let f = r.findings.iter().find(|f| f.kind == "non_finite_value").expect("non_finite_value");
        assert_eq!((f.severity, f.count, f.field.as_str()), (Severity::Warning, 2, "numeric_value"));
        // one creatinine without a unit (the empty cell, no unit in its code): said
        let missing: u64 = r.findings.iter().filter(|f| f.kind == "missing_unit").map(|f| f.count).sum();
        assert_eq!(missing, 3, "{:?}", r.findings);
        assert!(r.findings.iter().all(|f| f.kind != "no_value"), "{:?}", r.findings);
    }
}

/// Found by a tester: shards compressed with LZ4 or Brotli (pyarrow writes both on request) were
/// refused as "Disabled feature at compile time"; every codec pyarrow writes is read.
#[test]
fn shards_in_every_codec_pyarrow_writes_are_read() {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    for c in [
        Compression::SNAPPY,
        Compression::LZ4_RAW,
        Compression::LZ4,
        Compression::BROTLI(BrotliLevel::default()),
        Compression::ZSTD(ZstdLevel::default()),
        Compression::GZIP(GzipLevel::default()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
        let rows: Vec<Row> =
            (0..50).map(|i| (i % 5, Some(t("2024-01-02T08:00:00Z") + i), "LOINC/2160-0", Some(1.0), None)).collect();
        common::meds::shard_compressed(&dir.path().join("data/0.parquet"), "MICROS", &rows, c);
        let (d, _) = data::read(dir.path(), &ReadOptions::default()).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!((d.events.len(), d.subjects.len()), (50, 5), "{c:?}");
    }
}

/// Found by a tester: `metadata/codes.parquet` listing one code twice with two LOINC parents read its
/// events as the later one's (creatinine converted as sodium) without a word; `parent_codes` written as
/// a string (hand-made ETLs) was ignored without a word. The conflict is a warning; a string is read
/// (the codes it separates) and said.
#[test]
fn code_parents_in_conflict_or_written_as_a_string_are_said() {
    for by_rows in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        shard(root, "data/0.parquet", &[(1, Some(t("2024-01-05T00:00:00Z")), "CR-LOCAL", Some(1.0), None)]);
        let mut w = writer(
            &root.join("metadata/codes.parquet"),
            "message c { required binary code (STRING); optional binary parent_codes (STRING); }",
        );
        let mut rg = w.next_row_group().unwrap();
        let codes = ["CR-LOCAL", "NA-LOCAL", "CR-LOCAL"];
        col::<ByteArrayType>(&mut rg, &codes.map(ByteArray::from), None, None);
        let parents = ["LOINC/2951-2", "LOINC/2951-2", "SNOMED/1|LOINC/2160-0"];
        col::<ByteArrayType>(&mut rg, &parents.map(ByteArray::from), Some(&[1, 1, 1]), None);
        rg.close().unwrap();
        w.close().unwrap();
        let opts = ReadOptions::default();
        let (mut d, mut r) = (data::Dataset::default(), data::Report::default());
        if by_rows {
            data::meds::read_rows_reference(root, &opts, &mut d, &mut r).unwrap();
        } else {
            data::meds::read(root, &opts, &mut d, &mut r).unwrap();
        }
        // the later row is read (creatinine), and the conflict said
        assert!(d.find_code("http://loinc.org", "2160-0").is_some(), "by rows {by_rows}");
        r.finish(&d, &opts);
        let conflict = found(&r, "conflicting_code_parents").expect("said");
        assert_eq!((conflict.severity, conflict.count), (Severity::Warning, 1));
        assert!(found(&r, "parent_codes_text").is_some(), "{:?}", r.findings);
    }
}

/// Found by a tester: MEDS text results of a lab (`陰性`, `2+`) were no value where the CSV reader
/// reads them as coded levels, and `1,5` or `1.2 H` were no value without a word. They are read and
/// counted as the CSV reader does.
#[test]
fn a_labs_text_results_are_read_as_the_csv_reader_reads_them() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let at = |h: i64| Some(t("2024-01-05T00:00:00Z") + h * 3_600_000_000);
    shard(
        root,
        "data/0.parquet",
        &[
            (1, at(0), "LOINC/2160-0", None, Some("陰性")),
            (1, at(1), "LOINC/2160-0", None, Some("2+")),
            (1, at(2), "LOINC/2160-0", None, Some("1,5")),
            (1, at(3), "LOINC/2160-0", None, Some("hemolyzed")),
            (1, at(4), "LAB//2160-0//mg/dL", None, Some("-")),
            (1, at(5), "LOINC/2160-0", None, Some("0.9")),
        ],
    );
    let (d, r) = data::read(root, &ReadOptions::default()).unwrap();
    let mut coded: Vec<f32> = d.events.iter().filter(|e| e.kind == EventKind::Coded).map(|e| e.value).collect();
    coded.sort_by(f32::total_cmp);
    assert_eq!(coded, [0.0, 3.0], "{:?}", r.findings);
    let count = |kind: &str| r.findings.iter().filter(|f| f.kind == kind).map(|f| f.count).sum::<u64>();
    assert_eq!((count("numeric_text"), count("text_result"), count("dash_placeholder")), (1, 1, 1), "{:?}", r.findings);
    assert_eq!(found(&r, "numeric_text").unwrap().severity, Severity::Warning);
}
