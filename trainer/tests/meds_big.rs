//! Writes a large synthetic MEDS root for timing `medtrain data check` / `data prepare` by hand (run with
//! `--ignored`; not a timed test). The layout follows MIMIC-IV MEDS: shards sorted by subject and time,
//! snappy-compressed, dictionary-encoded, row groups of 250,000 rows; labs as `LAB//<id>//<unit>`
//! (catalogue LOINC codes and local ones), diagnoses and medications without values, a few vitals with
//! values under codes that also appear without one, notes with text, text results (`<0.3`) and static
//! `MEDS_BIRTH` rows.
//!
//! `MEDTRAIN_MEDS_OUT=/tmp/meds5m MEDTRAIN_MEDS_ROWS=5000000 cargo test --release -p medtrain --test meds_big -- --ignored`

mod common;
use common::meds::{col, Rng, RowGroup};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int64Type};
use std::path::Path;

const LABS: &[(&str, f32, f32)] = &[
    ("LAB//2160-0//mg/dL", 0.5, 3.0),
    ("LAB//2823-3//mmol/L", 3.0, 6.0),
    ("LAB//2951-2//mmol/L", 130.0, 150.0),
    ("LAB//1988-5//mg/L", 0.0, 200.0),
    ("LAB//718-7//g/dL", 7.0, 17.0),
    ("LAB//6690-2//10*3/uL", 2.0, 20.0),
    ("LAB//777-3//10*3/uL", 50.0, 400.0),
    ("LAB//2345-7//mg/dL", 60.0, 300.0),
    ("LAB//3094-0//mg/dL", 5.0, 80.0),
    ("LAB//50912//mg/dL", 0.5, 3.0),
    ("LAB//50971//mEq/L", 3.0, 6.0),
    ("LAB//51221//%", 20.0, 50.0),
    ("LAB//51265//K/uL", 50.0, 400.0),
    ("LAB//50931//mg/dL", 60.0, 300.0),
    ("LAB//50868//mEq/L", 8.0, 20.0),
];

/// (subject_id, time, code, numeric_value, text_value), owned
type OwnedRow = (i64, Option<i64>, String, Option<f32>, Option<String>);

fn write_shard(path: &Path, rng: &mut Rng, first_subject: i64, subjects: i64, rows_per_subject: u64) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = std::sync::Arc::new(
        parquet::schema::parser::parse_message_type(
            "message meds { required int64 subject_id; optional int64 time (TIMESTAMP(MICROS,false)); required \
             binary code (STRING); optional float numeric_value; optional binary text_value (STRING); }",
        )
        .unwrap(),
    );
    let mut w = parquet::file::writer::SerializedFileWriter::new(
        std::fs::File::create(path).unwrap(),
        schema,
        std::sync::Arc::new(props),
    )
    .unwrap();
    let diagnoses: Vec<String> =
        (0..400).map(|i| format!("ICD10CM//{}{:02}.{}", (b'A' + (i % 26) as u8) as char, i % 97, i % 10)).collect();
    let medications: Vec<String> = (0..150).map(|i| format!("MEDICATION//START//{:05}", i * 37)).collect();
    let mut rows: Vec<OwnedRow> = Vec::new();
    let flush = |w: &mut parquet::file::writer::SerializedFileWriter<std::fs::File>, rows: &mut Vec<OwnedRow>| {
        if rows.is_empty() {
            return;
        }
        let mut rg: RowGroup = w.next_row_group().unwrap();
        let def = |present: Vec<bool>| present.iter().map(|&p| p as i16).collect::<Vec<i16>>();
        col::<Int64Type>(&mut rg, &rows.iter().map(|r| r.0).collect::<Vec<_>>(), None, None);
        let times: Vec<i64> = rows.iter().filter_map(|r| r.1).collect();
        col::<Int64Type>(&mut rg, &times, Some(&def(rows.iter().map(|r| r.1.is_some()).collect())), None);
        let codes: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.2.as_str())).collect();
        col::<ByteArrayType>(&mut rg, &codes, None, None);
        let vals: Vec<f32> = rows.iter().filter_map(|r| r.3).collect();
        col::<FloatType>(&mut rg, &vals, Some(&def(rows.iter().map(|r| r.3.is_some()).collect())), None);
        let texts: Vec<ByteArray> = rows.iter().filter_map(|r| r.4.as_deref()).map(ByteArray::from).collect();
        col::<ByteArrayType>(&mut rg, &texts, Some(&def(rows.iter().map(|r| r.4.is_some()).collect())), None);
        rg.close().unwrap();
        rows.clear();
    };
    for s in first_subject..first_subject + subjects {
        rows.push((s, None, "MEDS_BIRTH".into(), None, None));
        let mut t = 1_577_836_800_000_000 + rng.below(3 * 365 * 86_400) as i64 * 1_000_000;
        for _ in 1..rows_per_subject {
            t += rng.below(6 * 3600) as i64 * 1_000_000;
            let r = rng.below(100);
            let row = if r < 55 {
                let (code, lo, hi) = LABS[rng.below(LABS.len() as u64) as usize];
                match rng.below(100) {
                    0 => (s, Some(t), code.to_owned(), None, Some("<0.3".to_owned())),
                    1 => (s, Some(t), code.to_owned(), None, Some("hemolyzed".to_owned())),
                    _ => (s, Some(t), code.to_owned(), Some(lo + (hi - lo) * rng.unit()), None),
                }
            } else if r < 85 {
                (s, Some(t), diagnoses[rng.below(diagnoses.len() as u64) as usize].clone(), None, None)
            } else if r < 95 {
                (s, Some(t), medications[rng.below(medications.len() as u64) as usize].clone(), None, None)
            } else if r < 99 {
                // a vital sign: a value most of the time, a row without one (a code of two kinds) else
                let v = (rng.below(10) > 0).then(|| 50.0 + 100.0 * rng.unit());
                (s, Some(t), "VITAL//heart_rate".to_owned(), v, None)
            } else {
                let n = 20 + rng.below(60) as usize;
                let text: String = (0..n)
                    .map(|i| ["stable", "improving", "no acute", "plan:", "follow up"][(i + s as usize) % 5])
                    .collect::<Vec<_>>()
                    .join(" ");
                (s, Some(t), "NOTE//progress".to_owned(), None, Some(text))
            };
            rows.push(row);
        }
        if rows.len() >= 250_000 {
            flush(&mut w, &mut rows);
        }
    }
    flush(&mut w, &mut rows);
    w.close().unwrap();
}

#[test]
#[ignore]
fn write_big_meds() {
    let out = std::env::var("MEDTRAIN_MEDS_OUT").expect("MEDTRAIN_MEDS_OUT: the MEDS root to write");
    let rows: u64 = std::env::var("MEDTRAIN_MEDS_ROWS").map_or(5_000_000, |r| r.parse().unwrap());
    let root = Path::new(&out);
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let (per_subject, per_shard) = (100u64, 1_000_000u64);
    let mut rng = Rng(7);
    let mut subject = 1000;
    for shard in 0..rows.div_ceil(per_shard) {
        let n = per_shard.min(rows - shard * per_shard);
        let subjects = n.div_ceil(per_subject) as i64;
        write_shard(&root.join(format!("data/train/{shard}.parquet")), &mut rng, subject, subjects, per_subject);
        subject += subjects;
    }
}
