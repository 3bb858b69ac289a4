//! Times written without a zone (spreadsheet exports, MEDS' naive timestamps, FHIR dates) beside times
//! with one: read in `read.time_zone`, and a warning where the key is absent and the two kinds meet
//! (zone-less times were read as UTC: a Tokyo label file beside +09:00 events put every prediction time
//! nine hours late, and the events of those hours on the wrong side of it).

mod common;
use common::meds::{col, writer};
use medtrain::data::{self, labels, time::Zone, ReadOptions};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, FloatType, Int64Type};
use std::path::Path;
use std::process::Command;

fn finding<'r>(r: &'r data::Report, kind: &str) -> Option<&'r data::check::Finding> {
    r.findings.iter().find(|f| f.kind == kind)
}

fn in_zone(zone: &str) -> ReadOptions {
    ReadOptions { time_zone: Some(Zone::parse(zone).unwrap()), ..Default::default() }
}

#[test]
fn csv_times_without_a_zone_beside_offsets_are_said_and_read_in_read_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    // the same result twice: once with its offset, once as a spreadsheet writes it (Tokyo's clock)
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n1,2024-01-05T08:30:00+09:00,creatinine,1.0,mg/dL\n\
         1,2024/01/05 8:30,creatinine,1.0,mg/dL\n",
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    let w = finding(&r, "time_without_zone").expect("a warning");
    assert_eq!((w.severity, w.count), (data::check::Severity::Warning, 1));
    assert!(w.detail.as_deref().unwrap().contains("read.time_zone"), "{w:?}");
    assert!(finding(&r, "duplicate").is_none());
    assert_ne!(d.events[0].time, d.events[1].time);

    let (d, r) = data::read(dir.path(), &in_zone("Asia/Tokyo")).unwrap();
    assert!(finding(&r, "time_without_zone").is_none());
    let i = finding(&r, "time_zone").expect("said");
    assert_eq!((i.severity, i.count), (data::check::Severity::Info, 1));
    assert!(i.detail.as_deref().unwrap().contains("Asia/Tokyo"));
    // one instant: the second row is now the first's duplicate
    let t = data::time::utc("2024-01-04T23:30:00Z").unwrap();
    assert!(d.events.iter().all(|e| e.time == t));
    assert_eq!(finding(&r, "duplicate").map(|f| f.count), Some(1));

    // `Z` beside a spreadsheet's clock is as ambiguous as +09:00 is
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n1,2024-01-05T08:30:00Z,creatinine,1,mg/dL\n1,2024/01/05 17:30,crp,1,mg/dL\n",
    )
    .unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(finding(&r, "time_without_zone").map(|f| f.count), Some(1));
    // a file whose times all lack a zone: no warning (one zone, read as UTC, consistent)
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n1,2024/01/05 8:30,creatinine,1,mg/dL\n",
    )
    .unwrap();
    let (_, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert!(finding(&r, "time_without_zone").is_none() && finding(&r, "time_zone").is_none());
}

fn observation(subject: &str, time: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2160-0"}}]}},"subject":{{"reference":"Patient/{subject}"}},"effectiveDateTime":"{time}","valueQuantity":{{"value":1.1,"unit":"mg/dL"}}}}"#
    )
}

#[test]
fn fhir_dates_are_days_of_read_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        [observation("a", "2024-03-01"), observation("a", "2024-03-01T10:00:00+09:00")].join("\n"),
    )
    .unwrap();
    let (d, r) = data::read(dir.path(), &ReadOptions::default()).unwrap();
    assert_eq!(finding(&r, "time_without_zone").map(|f| f.count), Some(1), "{:?}", r.findings);
    assert!(d.events.iter().any(|e| e.time == data::time::utc("2024-03-01T00:00:00Z").unwrap()));
    // in Tokyo, 2024-03-01 starts at 15:00 UTC the day before
    let (d, r) = data::read(dir.path(), &in_zone("+09:00")).unwrap();
    assert!(finding(&r, "time_without_zone").is_none());
    let mut times: Vec<i64> = d.events.iter().map(|e| e.time).collect();
    times.sort();
    assert_eq!(
        times,
        [data::time::utc("2024-02-29T15:00:00Z").unwrap(), data::time::utc("2024-03-01T01:00:00Z").unwrap()]
    );
}

/// A CSV cohort of `n` subjects with creatinine at +09:00 (`dir/input`), and a label file without zones
/// (`dir/labels.csv`).
fn cohort(dir: &Path, n: usize) {
    std::fs::create_dir(dir.join("input")).unwrap();
    let mut events = String::from("subject_id,time,code,value,unit\n");
    let mut labels = String::from("subject_id,prediction_time,boolean_value\n");
    for s in 0..n {
        for h in 0..3 {
            events.push_str(&format!("{s},2024-01-05T{:02}:00:00+09:00,creatinine,{}.0,mg/dL\n", 8 + h, 1 + h));
        }
        labels.push_str(&format!("{s},2024/01/05 12:00,{}\n", s % 2 == 0));
    }
    std::fs::write(dir.join("input/events.csv"), events).unwrap();
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
}

#[test]
fn label_times_are_read_in_read_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    cohort(dir.path(), 2);
    let (d, _) = data::read(&dir.path().join("input"), &ReadOptions::default()).unwrap();
    let noon_utc = data::time::utc("2024-01-05T12:00:00Z").unwrap();
    let path = dir.path().join("labels.csv");
    let file = labels::read_in(&path, &d, &ReadOptions::default()).unwrap();
    assert_eq!(file.zones.local, 2);
    assert_eq!(file.labels.len(), 2);
    assert!(file.labels.iter().all(|l| l.prediction_time == noon_utc));
    let file = labels::read_in(&path, &d, &in_zone("Asia/Tokyo")).unwrap();
    assert!(file.labels.iter().all(|l| l.prediction_time == noon_utc - 9 * 3600));
}

fn prepare(dir: &Path, read: &str) -> std::process::Output {
    let cfg = dir.join("data.toml");
    std::fs::write(
        &cfg,
        format!(
            "input = \"input\"\n[read]\n{read}\n[labels]\nfile = \"labels.csv\"\n[split]\nkey = \"k\"\n\
             tuning = 0.1\nheld_out = 0.1\n[features]\nchannels = [\"creatinine\"]\n"
        ),
    )
    .unwrap();
    let out = dir.join("prepared");
    let _ = std::fs::remove_dir_all(&out);
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "prepare", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap()
}

#[test]
fn prepare_warns_of_zone_less_labels_beside_zoned_events_and_the_key_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    cohort(dir.path(), 40);
    let input = dir.path().join("input");
    let out = prepare(dir.path(), "");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("time_without_zone") && text.contains("read.time_zone"), "{text}");
    let out = prepare(dir.path(), "time_zone = \"Asia/Tokyo\"");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("time_without_zone"), "{text}");
    let out = prepare(dir.path(), "time_zone = \"JST\"");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("read.time_zone") && e.contains("Asia/Tokyo"), "{e}");
    // data check's flag
    let out = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--time-zone", "Mars/Olympus"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-zone"));
    let out = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--json", "--time-zone", "Asia/Tokyo"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["findings"].as_array().unwrap().iter().all(|f| f["kind"] != "time_without_zone"));
}

/// A MEDS root with one shard whose `time` column is `TIMESTAMP(MICROS, utc)`, one creatinine row at
/// `at` (written as the column's microseconds), and a parquet label file of the same kind.
fn meds(dir: &Path, utc: bool, at: &str) {
    let micros = data::time::utc(at).unwrap() * 1_000_000;
    let mut w = writer(
        &dir.join("meds/data/0.parquet"),
        &format!(
            "message meds {{ required int64 subject_id; required int64 time (TIMESTAMP(MICROS,{utc})); required binary \
             code (STRING); optional float numeric_value; }}"
        ),
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[7], None, None);
    col::<Int64Type>(&mut rg, &[micros], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("LOINC/2160-0")], None, None);
    col::<FloatType>(&mut rg, &[1.1], Some(&[1]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let mut w = writer(
        &dir.join("labels/l.parquet"),
        &format!(
            "message l {{ required int64 subject_id; required int64 prediction_time (TIMESTAMP(MICROS,{utc})); \
             required boolean boolean_value; }}"
        ),
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[7], None, None);
    col::<Int64Type>(&mut rg, &[micros], None, None);
    col::<BoolType>(&mut rg, &[true], None, None);
    rg.close().unwrap();
    w.close().unwrap();
}

#[test]
fn meds_timestamps_without_a_zone_are_read_in_read_time_zone_and_utc_ones_are_not() {
    let tokyo = in_zone("Asia/Tokyo");
    let noon = data::time::utc("2024-01-05T12:00:00Z").unwrap();
    // pyarrow's timestamp[us] (no zone): the clock of the source, read in the zone
    let dir = tempfile::tempdir().unwrap();
    meds(dir.path(), false, "2024-01-05T12:00:00Z");
    let root = dir.path().join("meds");
    let (d, r) = data::read(&root, &ReadOptions::default()).unwrap();
    assert_eq!(d.events[0].time, noon);
    assert!(finding(&r, "time_without_zone").is_none() && finding(&r, "time_zone").is_none());
    let (d, r) = data::read(&root, &tokyo).unwrap();
    assert_eq!(d.events[0].time, noon - 9 * 3600);
    assert_eq!(finding(&r, "time_zone").map(|f| f.count), Some(1));
    let l = labels::read_in(&dir.path().join("labels"), &d, &tokyo).unwrap();
    assert_eq!(l.labels[0].prediction_time, noon - 9 * 3600);
    assert_eq!(l.zones.local, 1);
    // the row reader (the tests' twin) reads the same
    let (mut d2, mut r2) = (data::Dataset::default(), data::Report::default());
    data::meds::read_rows_reference(&root, &tokyo, &mut d2, &mut r2).unwrap();
    assert_eq!(d2.events[0].time, noon - 9 * 3600);
    // timestamp[us, tz=UTC]: an instant, whatever the zone
    let dir = tempfile::tempdir().unwrap();
    meds(dir.path(), true, "2024-01-05T12:00:00Z");
    let root = dir.path().join("meds");
    let (d, r) = data::read(&root, &tokyo).unwrap();
    assert_eq!(d.events[0].time, noon);
    assert!(finding(&r, "time_zone").is_none());
    let l = labels::read_in(&dir.path().join("labels"), &d, &tokyo).unwrap();
    assert_eq!(l.labels[0].prediction_time, noon);
    assert_eq!(l.zones.local, 0);
}
