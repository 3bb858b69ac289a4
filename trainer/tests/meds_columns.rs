//! The MEDS reader decodes shards by columns, a batch of rows at a time, and applies each batch to the
//! dataset while the next is decoded. Its plain twin decodes a row at a time through the parquet crate's
//! record API (`meds::read_rows_reference`, the reader before): on seeded random shards of every column
//! type MEDS writers use (nulls, several row groups, shards longer than a batch) both give the same
//! dataset and report, whatever the number of threads. The metadata files (`codes.parquet`,
//! `subject_splits.parquet`) are read by columns too: on seeded random files of the shapes writers give
//! them (list encodings of `parent_codes`, subject id types, nulls, extra columns) both give the same
//! parents and splits, and refuse the same rows.

mod common;
use common::meds::{col, writer, Rng, RowGroup};
use medtrain::data::{self, check::Report, meds, Dataset, ReadOptions};
use parquet::data_type::{
    ByteArray, ByteArrayType, DoubleType, FixedLenByteArray, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
    Int96, Int96Type,
};
use std::path::Path;

const CODES: &[&str] = &[
    "LAB//2160-0//mg/dL",
    "LAB//2160-0//umol/L",
    "LOINC/2823-3",
    "LAB//50912//mg/dL",
    "LAB//x//",
    "VITAL//heart_rate",
    "ICD10CM//N17.9",
    "NOTE//progress",
    "MEDS_BIRTH",
    "CR-LOCAL",
];

const TEXTS: &[&str] = &[
    "<0.3",
    " 1.2 ",
    ">= 200",
    "hemolyzed",
    "stable, plan: follow up",
    "call 090-1234-5678 tomorrow",
    "zero\u{200B}width",
    "",
];

/// The column types a shard is written with.
#[derive(Clone, Copy, Debug)]
enum Subject {
    Int64,
    Int32,
    Str,
    UInt64,
}

#[derive(Clone, Copy, Debug)]
enum Time {
    Micros,
    Millis,
    Nanos,
    Plain,
    Date,
    Int96,
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Float,
    Double,
    Decimal32,
    DecimalFixed,
    Int64,
}

/// One seeded random shard: `groups` row groups of the given sizes; shard `index` has the `index`th
/// subject, time and value types (in turn, so that a few shards have them all).
fn random_shard(path: &Path, rng: &mut Rng, index: usize, groups: &[usize]) {
    let subject = [Subject::Int64, Subject::Int32, Subject::Str, Subject::UInt64][index % 4];
    let time = [Time::Micros, Time::Millis, Time::Nanos, Time::Plain, Time::Date, Time::Int96][index % 6];
    let value = [Value::Float, Value::Double, Value::Decimal32, Value::DecimalFixed, Value::Int64][index % 5];
    let with_text = rng.chance(80);
    let schema = format!(
        "message meds {{ {} {} optional binary code (STRING); {} {} }}",
        match subject {
            Subject::Int64 => "required int64 subject_id;",
            Subject::Int32 => "optional int32 subject_id;",
            Subject::Str => "optional binary subject_id (STRING);",
            Subject::UInt64 => "optional int64 subject_id (INTEGER(64,false));",
        },
        match time {
            Time::Micros => "optional int64 time (TIMESTAMP(MICROS,false));",
            Time::Millis => "optional int64 time (TIMESTAMP(MILLIS,true));",
            Time::Nanos => "optional int64 time (TIMESTAMP(NANOS,false));",
            Time::Plain => "optional int64 time;",
            Time::Date => "optional int32 time (DATE);",
            Time::Int96 => "optional int96 time;",
        },
        match value {
            Value::Float => "optional float numeric_value;",
            Value::Double => "optional double numeric_value;",
            Value::Decimal32 => "optional int32 numeric_value (DECIMAL(9,2));",
            Value::DecimalFixed => "optional fixed_len_byte_array(8) numeric_value (DECIMAL(18,3));",
            Value::Int64 => "optional int64 numeric_value;",
        },
        if with_text { "optional binary text_value (STRING);" } else { "" },
    );
    let mut w = writer(path, &schema);
    let mut next_subject = rng.below(1000) as i64 - 500;
    for &n in groups {
        let mut rg: RowGroup = w.next_row_group().unwrap();
        let defs = |rng: &mut Rng, null: u64| (0..n).map(|_| !rng.chance(null) as i16).collect::<Vec<i16>>();
        let count = |d: &[i16]| d.iter().filter(|&&d| d == 1).count();
        // subjects in runs, as MEDS shards are sorted by subject (negative ids too)
        let ids: Vec<i64> = (0..n)
            .map(|_| {
                if rng.chance(10) {
                    next_subject += 1;
                }
                next_subject
            })
            .collect();
        match subject {
            Subject::Int64 => col::<Int64Type>(&mut rg, &ids, None, None),
            Subject::Int32 => {
                let d = defs(rng, 3);
                let v: Vec<i32> = ids.iter().zip(&d).filter(|(_, &d)| d == 1).map(|(&i, _)| i as i32).collect();
                col::<Int32Type>(&mut rg, &v, Some(&d), None)
            }
            Subject::Str => {
                let d = defs(rng, 3);
                let v: Vec<ByteArray> = ids
                    .iter()
                    .zip(&d)
                    .filter(|(_, &d)| d == 1)
                    .map(|(&i, _)| ByteArray::from(format!("p{i}").as_str()))
                    .collect();
                col::<ByteArrayType>(&mut rg, &v, Some(&d), None)
            }
            Subject::UInt64 => {
                let d = defs(rng, 3);
                let v: Vec<i64> = ids.iter().zip(&d).filter(|(_, &d)| d == 1).map(|(&i, _)| i).collect();
                col::<Int64Type>(&mut rg, &v, Some(&d), None)
            }
        }
        let d = defs(rng, 10);
        let days: Vec<i64> = (0..count(&d)).map(|_| 19_000 + rng.below(400) as i64).collect();
        let seconds = |day: i64, rng: &mut Rng| day * 86_400 + rng.below(86_400) as i64;
        match time {
            Time::Date => {
                col::<Int32Type>(&mut rg, &days.iter().map(|&d| d as i32).collect::<Vec<_>>(), Some(&d), None)
            }
            Time::Int96 => {
                let v: Vec<Int96> = days
                    .iter()
                    .map(|&day| {
                        let nanos = rng.below(86_400_000_000_000);
                        let mut t = Int96::new();
                        t.set_data(nanos as u32, (nanos >> 32) as u32, (day + 2_440_588) as u32);
                        t
                    })
                    .collect();
                col::<Int96Type>(&mut rg, &v, Some(&d), None)
            }
            _ => {
                let per_second = match time {
                    Time::Millis => 1_000,
                    Time::Nanos => 1_000_000_000,
                    _ => 1_000_000,
                };
                let v: Vec<i64> = days.iter().map(|&day| seconds(day, rng) * per_second + 7).collect();
                col::<Int64Type>(&mut rg, &v, Some(&d), None)
            }
        }
        let d = defs(rng, 2);
        let codes: Vec<ByteArray> =
            (0..count(&d)).map(|_| ByteArray::from(CODES[rng.below(CODES.len() as u64) as usize])).collect();
        col::<ByteArrayType>(&mut rg, &codes, Some(&d), None);
        let d = defs(rng, 40);
        let k = count(&d);
        match value {
            Value::Float => {
                let v: Vec<f32> = (0..k).map(|_| rng.below(50_000) as f32 / 100.0).collect();
                col::<FloatType>(&mut rg, &v, Some(&d), None)
            }
            Value::Double => {
                let v: Vec<f64> = (0..k).map(|_| rng.below(50_000) as f64 / 100.0).collect();
                col::<DoubleType>(&mut rg, &v, Some(&d), None)
            }
            Value::Decimal32 => {
                let v: Vec<i32> = (0..k).map(|_| rng.below(50_000) as i32 - 100).collect();
                col::<Int32Type>(&mut rg, &v, Some(&d), None)
            }
            Value::DecimalFixed => {
                let v: Vec<FixedLenByteArray> = (0..k)
                    .map(|_| {
                        let x = rng.below(5_000_000) as i64 - 1000;
                        FixedLenByteArray::from(x.to_be_bytes().to_vec())
                    })
                    .collect();
                col::<FixedLenByteArrayType>(&mut rg, &v, Some(&d), None)
            }
            Value::Int64 => {
                let v: Vec<i64> = (0..k).map(|_| rng.below(500) as i64).collect();
                col::<Int64Type>(&mut rg, &v, Some(&d), None)
            }
        }
        if with_text {
            let d = defs(rng, 85);
            let v: Vec<ByteArray> =
                (0..count(&d)).map(|_| ByteArray::from(TEXTS[rng.below(TEXTS.len() as u64) as usize])).collect();
            col::<ByteArrayType>(&mut rg, &v, Some(&d), None);
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}

/// `metadata/codes.parquet`: `CR-LOCAL`'s parent is creatinine's LOINC code.
fn code_parents(root: &Path) {
    let mut w = writer(
        &root.join("metadata/codes.parquet"),
        "message c { required binary code (STRING); optional group parent_codes (LIST) { repeated group list { optional binary element (STRING); } } }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("CR-LOCAL")], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("LOINC/2160-0")], Some(&[3]), Some(&[0]));
    rg.close().unwrap();
    w.close().unwrap();
}

/// Everything a read gives, comparable (values by their bits: NaN is no value).
fn outcome(root: &Path, by_rows: bool) -> (Vec<String>, String) {
    let opts =
        ReadOptions { identifiers: data::guard::Policy::Redact, max_malformed_fraction: 1.0, ..Default::default() };
    let (mut d, mut r) = (Dataset::default(), Report::default());
    if by_rows {
        meds::read_rows_reference(root, &opts, &mut d, &mut r).unwrap();
    } else {
        meds::read(root, &opts, &mut d, &mut r).unwrap();
    }
    r.finish(&d, &opts);
    let mut out: Vec<String> = d
        .events
        .iter()
        .map(|e| {
            let code = &d.codes[e.code as usize];
            let unit = if e.unit == data::NONE { "" } else { d.units.names[e.unit as usize].as_str() };
            let text = if e.text == data::NONE { "" } else { d.texts[e.text as usize].as_str() };
            format!(
                "{} {} {:?} {}|{} {:08x} {unit} {text}",
                d.subjects.names[e.subject as usize],
                e.time,
                e.kind,
                code.system,
                code.code,
                e.value.to_bits()
            )
        })
        .collect();
    out.push(format!("subjects {:?}", d.subjects.names));
    let mut splits: Vec<(&str, &str)> =
        d.splits.iter().map(|(&s, split)| (d.subjects.names[s as usize].as_str(), split.as_str())).collect();
    splits.sort();
    out.push(format!("splits {splits:?}"));
    (out, serde_json::to_string_pretty(&r).unwrap())
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn columnar_reader_gives_the_row_readers_dataset_and_report() {
    let mut shards = 0;
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut rng = Rng(seed);
        std::fs::create_dir_all(root.join("metadata")).unwrap();
        if seed % 2 == 0 {
            code_parents(root);
        }
        for shard in 0..1 + rng.below(3) {
            let groups: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(700) as usize).collect();
            random_shard(&root.join(format!("data/{shard}.parquet")), &mut rng, shards, &groups);
            shards += 1;
        }
        let reference = outcome(root, true);
        assert!(reference.0.len() > 1, "seed {seed}: no events");
        for threads in [1, 3] {
            let columns = in_pool(threads, || outcome(root, false));
            if let Some(i) =
                (0..columns.0.len().max(reference.0.len())).find(|&i| columns.0.get(i) != reference.0.get(i))
            {
                panic!(
                    "seed {seed}, {threads} threads: event {i} of {} is {:?}, the row reader's {:?}",
                    reference.0.len(),
                    columns.0.get(i),
                    reference.0.get(i)
                );
            }
            assert_eq!(columns.1, reference.1, "seed {seed}, {threads} threads: report");
        }
    }
}

#[test]
fn a_shard_longer_than_a_batch_keeps_its_row_numbers() {
    // 150,000 rows in row groups of 100,000 and 50,000, read in batches of 1,024 rows (a shard's first),
    // 65,536, the rest of the first group, 50,000: rows without a code at the ends of each
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let missing = [1u64, 1_024, 1_025, 66_560, 66_561, 100_000, 100_001, 150_000];
    let mut w = writer(
        &root.join("data/0.parquet"),
        "message meds { required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false)); \
         optional binary code (STRING); optional float numeric_value; }",
    );
    for (first, n) in [(1u64, 100_000usize), (100_001, 50_000)] {
        let mut rg = w.next_row_group().unwrap();
        let rows: Vec<u64> = (first..first + n as u64).collect();
        col::<Int64Type>(&mut rg, &rows.iter().map(|&r| (r / 100) as i64).collect::<Vec<_>>(), None, None);
        col::<Int64Type>(
            &mut rg,
            &rows.iter().map(|&r| 1_700_000_000_000_000 + r as i64 * 1_000_000).collect::<Vec<_>>(),
            None,
            None,
        );
        let d: Vec<i16> = rows.iter().map(|r| !missing.contains(r) as i16).collect();
        let codes = vec![ByteArray::from("LAB//2160-0//mg/dL"); d.iter().filter(|&&d| d == 1).count()];
        col::<ByteArrayType>(&mut rg, &codes, Some(&d), None);
        col::<FloatType>(&mut rg, &vec![1.0; n], Some(&vec![1; n]), None);
        rg.close().unwrap();
    }
    w.close().unwrap();
    let opts = ReadOptions { max_malformed_fraction: 0.1, ..Default::default() };
    let (d, r) = in_pool(2, || data::read(root, &opts)).unwrap();
    assert_eq!((r.lines, d.events.len()), (150_000, 150_000 - missing.len()));
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").expect("said");
    assert_eq!((f.field.as_str(), f.count, f.lines.as_slice()), ("code", missing.len() as u64, &missing[..]));
    // subject 1500 has only the last row, which has no code
    assert_eq!(d.subjects.len(), 1500);
    // events in row order: times rise through the shard
    assert!(d.events.windows(2).all(|w| w[0].time < w[1].time));
}

#[test]
fn a_text_value_that_is_not_utf8_was_shown_in_the_error() {
    // the record API's error printed the bytes; the columnar reader names file, row and column
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let mut w = writer(
        &root.join("data/0.parquet"),
        "message meds { required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false)); \
         required binary code (STRING); optional float numeric_value; optional binary text_value (STRING); }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1, 1, 1], None, None);
    col::<Int64Type>(&mut rg, &[1_700_000_000_000_000; 3], None, None);
    col::<ByteArrayType>(&mut rg, &vec![ByteArray::from("NOTE//x"); 3], None, None);
    col::<FloatType>(&mut rg, &[], Some(&[0, 0, 0]), None);
    let secret: &[u8] = b"Yamada \xff\xfe 090";
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("ok"), ByteArray::from(secret.to_vec())], Some(&[1, 0, 1]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = data::read(root, &ReadOptions::default()).expect_err("refused");
    assert!(e.unreadable());
    let e = e.to_string();
    assert!(
        e.contains("0.parquet") && e.contains("row 3") && e.contains("\"text_value\"") && e.contains("UTF-8"),
        "{e}"
    );
    assert!(!e.contains("Yamada") && !e.contains("89, 97") && !e.contains("090"), "{e}");
}

#[test]
fn a_column_type_the_record_api_could_not_convert_panicked_on_the_first_row() {
    // an INTERVAL time: the record API has no conversion for it (a panic, caught as "the parquet reader
    // failed"); refused naming the file and the column
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let mut w = writer(
        &root.join("data/0.parquet"),
        "message meds { required int64 subject_id; required fixed_len_byte_array(12) time (INTERVAL); \
         required binary code (STRING); optional float numeric_value; }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1], None, None);
    col::<FixedLenByteArrayType>(&mut rg, &[FixedLenByteArray::from(vec![0u8; 12])], None, None);
    col::<ByteArrayType>(&mut rg, &[ByteArray::from("LAB//2160-0//mg/dL")], None, None);
    col::<FloatType>(&mut rg, &[1.0], Some(&[1]), None);
    rg.close().unwrap();
    w.close().unwrap();
    let e = data::read(root, &ReadOptions::default()).expect_err("refused");
    assert!(e.unreadable());
    let e = e.to_string();
    assert!(e.contains("0.parquet") && e.contains("\"time\"") && e.contains("INTERVAL"), "{e}");
}

#[test]
fn a_row_group_claiming_rows_its_columns_lack_was_read_as_that_many_malformed_rows() {
    // columns that hold no MEDS value (a code without the string annotation, booleans: refused now) were
    // not read, so a row group's rows were the count its metadata claims: 200,000 malformed rows from a
    // file of 3 (and a claim of 2^60 spun for ever); every column is read now, and the claim is refused
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let path = root.join("data/0.parquet");
    let mut w = writer(
        &path,
        "message meds { required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false)); \
         required binary code; required float numeric_value; required boolean unit; }",
    );
    let mut rg = w.next_row_group().unwrap();
    col::<Int64Type>(&mut rg, &[1; 3], None, None);
    col::<Int64Type>(&mut rg, &[1_700_000_000_000_000; 3], None, None);
    col::<ByteArrayType>(&mut rg, &vec![ByteArray::from("X"); 3], None, None);
    col::<FloatType>(&mut rg, &[1.0; 3], None, None);
    col::<parquet::data_type::BoolType>(&mut rg, &[true; 3], None, None);
    rg.close().unwrap();
    w.close().unwrap();
    // the footer rewritten with the row group claiming 200,000 rows (the pages stay where they are)
    let bytes = std::fs::read(&path).unwrap();
    let footer = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let meta = {
        use parquet::file::reader::FileReader;
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .metadata()
            .clone()
    };
    let mut builder = meta.into_builder();
    let groups = builder.take_row_groups();
    let groups = groups.into_iter().map(|g| g.into_builder().set_num_rows(200_000).build().unwrap()).collect();
    let meta = builder.set_row_groups(groups).build();
    let mut out = bytes[..bytes.len() - 8 - footer].to_vec();
    parquet::file::metadata::ParquetMetaDataWriter::new(&mut out, &meta).finish().unwrap();
    std::fs::write(&path, &out).unwrap();
    {
        use parquet::file::reader::FileReader;
        let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(r.metadata().row_group(0).num_rows(), 200_000, "the claim was written");
    }
    let e = data::read(root, &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() }).expect_err("refused");
    assert!(e.unreadable());
    let e = e.to_string();
    assert!(e.contains("0.parquet") && e.contains("ends before the row group's last row"), "{e}");
}

/// The `parent_codes` of a random `codes.parquet`: how it is written (schema) and the definition levels
/// of a null list, an empty one, a null element and an element (`None` where the shape has none).
struct ParentShape {
    schema: &'static str,
    null_list: Option<i16>,
    empty: i16,
    null_element: Option<i16>,
    element: i16,
    /// a plain string a row, not a list
    plain: bool,
}

const PARENT_SHAPES: &[ParentShape] = &[
    // pyarrow's list<string> (3-level)
    ParentShape {
        schema: "optional group parent_codes (LIST) { repeated group list { optional binary element (STRING); } }",
        null_list: Some(0),
        empty: 1,
        null_element: Some(2),
        element: 3,
        plain: false,
    },
    // legacy 2-level list of strings: the record API read a list of lists (never a parent)
    ParentShape {
        schema: "optional group parent_codes (LIST) { repeated binary item (STRING); }",
        null_list: Some(0),
        empty: 1,
        null_element: None,
        element: 2,
        plain: false,
    },
    // a repeated string, no LIST group
    ParentShape {
        schema: "repeated binary parent_codes (STRING);",
        null_list: None,
        empty: 0,
        null_element: None,
        element: 1,
        plain: false,
    },
    // parquet-avro's 2-level list of structs: the record API's elements are groups, never parents
    ParentShape {
        schema: "optional group parent_codes (LIST) { repeated group array { required binary str (STRING); } }",
        null_list: Some(0),
        empty: 1,
        null_element: None,
        element: 2,
        plain: false,
    },
    // a required list of required strings
    ParentShape {
        schema: "required group parent_codes (LIST) { repeated group list { required binary element (STRING); } }",
        null_list: None,
        empty: 0,
        null_element: None,
        element: 1,
        plain: false,
    },
    // one string, not a list: never a parent
    ParentShape {
        schema: "optional binary parent_codes (STRING);",
        null_list: Some(0),
        empty: 0,
        null_element: None,
        element: 1,
        plain: true,
    },
];

const PARENTS: &[&str] =
    &["LOINC/2160-0", "LOINC/2823-3", "LOINC/6298-4", "LOINC/0000-0", "ICD10CM/N17", "SNOMED/1234"];

/// A seeded random `metadata/codes.parquet`: codes of [`CODES`] and others (some null, some twice),
/// their parents written as `shape` says, a `description` column, in a few row groups.
fn random_codes(root: &Path, rng: &mut Rng, shape: &ParentShape) {
    let schema = format!(
        "message c {{ optional binary code (STRING); optional binary description (STRING); {} }}",
        shape.schema
    );
    let mut w = writer(&root.join("metadata/codes.parquet"), &schema);
    for _ in 0..1 + rng.below(3) {
        let n = rng.below(40) as usize;
        let mut rg: RowGroup = w.next_row_group().unwrap();
        let (mut codes, mut code_def) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let null = rng.chance(5);
            code_def.push(!null as i16);
            if !null {
                let code = if rng.chance(80) {
                    CODES[rng.below(CODES.len() as u64) as usize].to_owned()
                } else {
                    format!("LOCAL//{}", rng.below(5))
                };
                codes.push(ByteArray::from(code.as_str()));
            }
        }
        col::<ByteArrayType>(&mut rg, &codes, Some(&code_def), None);
        let d: Vec<i16> = (0..n).map(|_| !rng.chance(30) as i16).collect();
        let descriptions: Vec<ByteArray> = d
            .iter()
            .filter(|&&d| d == 1)
            .map(|_| ByteArray::from(TEXTS[rng.below(TEXTS.len() as u64) as usize]))
            .collect();
        col::<ByteArrayType>(&mut rg, &descriptions, Some(&d), None);
        let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let parent = |rng: &mut Rng| ByteArray::from(PARENTS[rng.below(PARENTS.len() as u64) as usize]);
            if shape.plain {
                if rng.chance(20) {
                    def.push(0);
                } else {
                    def.push(1);
                    values.push(parent(rng));
                }
                continue;
            }
            match shape.null_list {
                Some(null) if rng.chance(10) => {
                    def.push(null);
                    rep.push(0);
                    continue;
                }
                _ => {}
            }
            let elements = rng.below(4);
            if elements == 0 {
                def.push(shape.empty);
                rep.push(0);
            }
            for e in 0..elements {
                rep.push((e > 0) as i16);
                match shape.null_element {
                    Some(null) if rng.chance(15) => def.push(null),
                    _ => {
                        def.push(shape.element);
                        values.push(parent(rng));
                    }
                }
            }
        }
        let rep = (!shape.plain).then_some(rep.as_slice());
        col::<ByteArrayType>(&mut rg, &values, Some(&def), rep);
        rg.close().unwrap();
    }
    w.close().unwrap();
}

/// A seeded random `metadata/subject_splits.parquet` of subjects 0-39 (the data has 1-30): subject ids
/// of the `kind`th type, nulls, splits that are not train, tuning or held_out, an extra column.
fn random_splits(root: &Path, rng: &mut Rng, kind: usize) {
    let subject = [
        "required int64 subject_id;",
        "optional int32 subject_id;",
        "optional binary subject_id (STRING);",
        "optional int64 subject_id (INTEGER(64,false));",
    ][kind % 4];
    let with_note = rng.chance(50);
    let schema = format!(
        "message s {{ {subject} optional binary split (STRING); {} }}",
        if with_note { "optional binary note (STRING);" } else { "" }
    );
    let mut w = writer(&root.join("metadata/subject_splits.parquet"), &schema);
    for _ in 0..1 + rng.below(3) {
        let n = rng.below(30) as usize;
        let mut rg: RowGroup = w.next_row_group().unwrap();
        let ids: Vec<i64> = (0..n).map(|_| rng.below(40) as i64).collect();
        let d: Vec<i16> = (0..n).map(|_| if kind % 4 == 0 { 1 } else { !rng.chance(10) as i16 }).collect();
        let present = |d: &[i16]| d.iter().filter(|&&d| d == 1).count();
        let kept: Vec<i64> = ids.iter().zip(&d).filter(|(_, &d)| d == 1).map(|(&i, _)| i).collect();
        let def = (kind % 4 != 0).then_some(d.as_slice());
        match kind % 4 {
            1 => col::<Int32Type>(&mut rg, &kept.iter().map(|&i| i as i32).collect::<Vec<_>>(), def, None),
            2 => {
                // decimal strings, as an integer shard's subjects read, and a few that are none of them
                let v: Vec<ByteArray> = kept
                    .iter()
                    .map(|&i| ByteArray::from(if rng.chance(90) { format!("{i}") } else { format!("p{i}") }.as_str()))
                    .collect();
                col::<ByteArrayType>(&mut rg, &v, def, None)
            }
            _ => col::<Int64Type>(&mut rg, &kept, def, None),
        }
        let d: Vec<i16> = (0..n).map(|_| !rng.chance(10) as i16).collect();
        let splits: Vec<ByteArray> = (0..present(&d))
            .map(|_| {
                ByteArray::from(["train", "tuning", "held_out", "train", "TRAIN", "validation"][rng.below(6) as usize])
            })
            .collect();
        col::<ByteArrayType>(&mut rg, &splits, Some(&d), None);
        if with_note {
            col::<ByteArrayType>(&mut rg, &[ByteArray::from("checked")], Some(&vec![0; n]), None);
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}

/// Subjects 1-30 with an event of each code of [`CODES`] in turn.
fn thirty_subjects(root: &Path) {
    let rows: Vec<common::meds::Row> = (0..90)
        .map(|i| {
            (1 + i as i64 % 30, Some(1_700_000_000_000_000 + i as i64 * 1_000_000), CODES[i % CODES.len()], None, None)
        })
        .collect();
    common::meds::shard(&root.join("data/0.parquet"), "MICROS", &rows);
}

#[test]
fn metadata_read_by_columns_gives_the_record_apis_parents_and_splits() {
    let (mut parents, mut splits, mut malformed) = (0, 0, 0);
    for seed in 1..=36u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut rng = Rng(seed);
        thirty_subjects(root);
        let shape = &PARENT_SHAPES[seed as usize % PARENT_SHAPES.len()];
        random_codes(root, &mut rng, shape);
        random_splits(root, &mut rng, seed as usize / PARENT_SHAPES.len());
        let reference = outcome(root, true);
        let columns = outcome(root, false);
        assert_eq!(columns.0, reference.0, "seed {seed}: events, subjects, splits ({})", shape.schema);
        assert_eq!(columns.1, reference.1, "seed {seed}: report");
        // what the files held was read: a parent (`LOINC/0000-0` is only ever one), splits, bad rows
        parents += reference.0.iter().any(|e| e.contains("loinc.org|0000-0")) as usize;
        splits += !reference.0.last().unwrap().ends_with("[]") as usize;
        malformed += reference.1.contains("in subject_splits") as usize;
    }
    assert!(parents >= 6 && splits >= 24 && malformed >= 6, "{parents} {splits} {malformed}");
}

/// The error of each reader on `root` (both must refuse it).
fn both_refuse(root: &Path) -> [String; 2] {
    let opts = ReadOptions { max_malformed_fraction: 1.0, ..Default::default() };
    [true, false].map(|by_rows| {
        let (mut d, mut r) = (Dataset::default(), Report::default());
        let read = if by_rows { meds::read_rows_reference } else { meds::read };
        read(root, &opts, &mut d, &mut r).expect_err("refused").to_string()
    })
}

#[test]
fn metadata_text_that_is_not_utf8_is_refused_by_row_without_the_value() {
    // in the code, a parent, a column not read for anything (the record API converted every column), a
    // split's subject id: both readers refuse the file, name the row, and never show the value
    let secret: &[u8] = b"Yamada \xff\xfe 090";
    for (bad, row) in [("code", 3), ("parent", 2), ("description", 4), ("subject_id", 2)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        thirty_subjects(root);
        let text = |good: &str, this: &str, r: usize| {
            if this == bad && r == row {
                ByteArray::from(secret.to_vec())
            } else {
                ByteArray::from(good)
            }
        };
        let (file, columns) = if bad == "subject_id" {
            let mut w = writer(
                &root.join("metadata/subject_splits.parquet"),
                "message s { required binary subject_id (STRING); required binary split (STRING); }",
            );
            let mut rg = w.next_row_group().unwrap();
            col::<ByteArrayType>(&mut rg, &(1..=4).map(|r| text("1", "subject_id", r)).collect::<Vec<_>>(), None, None);
            col::<ByteArrayType>(&mut rg, &vec![ByteArray::from("train"); 4], None, None);
            rg.close().unwrap();
            w.close().unwrap();
            ("subject_splits.parquet", 2)
        } else {
            let mut w = writer(
                &root.join("metadata/codes.parquet"),
                "message c { required binary code (STRING); optional binary description (STRING); \
                 optional group parent_codes (LIST) { repeated group list { optional binary element (STRING); } } }",
            );
            let mut rg = w.next_row_group().unwrap();
            col::<ByteArrayType>(
                &mut rg,
                &(1..=5).map(|r| text("CR-LOCAL", "code", r)).collect::<Vec<_>>(),
                None,
                None,
            );
            col::<ByteArrayType>(
                &mut rg,
                &(1..=5).map(|r| text("d", "description", r)).collect::<Vec<_>>(),
                Some(&[1; 5]),
                None,
            );
            col::<ByteArrayType>(
                &mut rg,
                &(1..=5).map(|r| text("LOINC/2160-0", "parent", r)).collect::<Vec<_>>(),
                Some(&[3; 5]),
                Some(&[0; 5]),
            );
            rg.close().unwrap();
            w.close().unwrap();
            ("codes.parquet", 3)
        };
        assert!(columns > 0);
        for e in both_refuse(root) {
            assert!(e.contains(file) && e.contains(&format!("row {row}")) && e.contains("not shown"), "{bad}: {e}");
            assert!(!e.contains("Yamada") && !e.contains("89, 97") && !e.contains("090"), "{bad}: {e}");
        }
    }
}

#[test]
fn a_metadata_value_the_record_api_could_not_convert_is_refused_by_row() {
    // an INTERVAL column in codes.parquet: the record API panicked on its first value (caught as "the
    // parquet reader failed"); the columnar reader names row and column. All null, it converted nothing.
    for (def, refused) in [([0, 0, 1], true), ([0, 0, 0], false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        thirty_subjects(root);
        let mut w = writer(
            &root.join("metadata/codes.parquet"),
            "message c { required binary code (STRING); optional fixed_len_byte_array(12) since (INTERVAL); }",
        );
        let mut rg = w.next_row_group().unwrap();
        col::<ByteArrayType>(&mut rg, &vec![ByteArray::from("CR-LOCAL"); 3], None, None);
        let values = vec![FixedLenByteArray::from(vec![0u8; 12]); def.iter().sum::<i16>() as usize];
        col::<FixedLenByteArrayType>(&mut rg, &values, Some(&def), None);
        rg.close().unwrap();
        w.close().unwrap();
        if refused {
            let [rows, columns] = both_refuse(root);
            assert!(rows.contains("codes.parquet"), "{rows}");
            assert!(
                columns.contains("codes.parquet") && columns.contains("row 3") && columns.contains("\"since\""),
                "{columns}"
            );
        } else {
            assert_eq!(outcome(root, false), outcome(root, true));
        }
    }
}

#[test]
fn columns_of_a_type_read_as_none_are_refused_naming_the_column_and_its_type() {
    // found on hand-made MEDS files (pandas, pyarrow from CSV): times written as text made every event
    // static (a warning `no_events`), values as text left every lab without a value, float subject ids
    // (pandas' integers with missing values) made every row malformed; both readers now refuse the file
    let cases = [
        (
            "optional double subject_id;",
            "optional int64 time (TIMESTAMP(MICROS,false));",
            "optional float numeric_value;",
            "\"subject_id\" holds floating-point numbers",
        ),
        (
            "required int64 subject_id;",
            "optional binary time (STRING);",
            "optional float numeric_value;",
            "\"time\" holds text",
        ),
        (
            "required int64 subject_id;",
            "optional double time;",
            "optional float numeric_value;",
            "\"time\" holds floating-point numbers",
        ),
        (
            "required int64 subject_id;",
            "optional int64 time (TIMESTAMP(MICROS,false));",
            "optional binary numeric_value (STRING);",
            "\"numeric_value\" holds text",
        ),
        (
            "required int64 subject_id;",
            "optional int64 time (TIMESTAMP(MICROS,false));",
            "optional boolean numeric_value;",
            "\"numeric_value\" holds BOOLEAN",
        ),
    ];
    for (subject, time, value, said) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("metadata")).unwrap();
        let schema = format!("message meds {{ {subject} {time} required binary code (STRING); {value} }}");
        let mut w = writer(&root.join("data/0.parquet"), &schema);
        let mut rg = w.next_row_group().unwrap();
        if subject.contains("double") {
            col::<DoubleType>(&mut rg, &[7.0], Some(&[1]), None);
        } else {
            col::<Int64Type>(&mut rg, &[7], None, None);
        }
        if time.contains("binary") {
            col::<ByteArrayType>(&mut rg, &[ByteArray::from("2024-01-05T08:00:00")], Some(&[1]), None);
        } else if time.contains("double") {
            col::<DoubleType>(&mut rg, &[1.7e9], Some(&[1]), None);
        } else {
            col::<Int64Type>(&mut rg, &[1_700_000_000_000_000], Some(&[1]), None);
        }
        col::<ByteArrayType>(&mut rg, &[ByteArray::from("LAB//2160-0//mg/dL")], None, None);
        if value.contains("binary") {
            col::<ByteArrayType>(&mut rg, &[ByteArray::from("1.2")], Some(&[1]), None);
        } else if value.contains("boolean") {
            col::<parquet::data_type::BoolType>(&mut rg, &[true], Some(&[1]), None);
        } else {
            col::<FloatType>(&mut rg, &[1.2], Some(&[1]), None);
        }
        rg.close().unwrap();
        w.close().unwrap();
        for e in both_refuse(root) {
            assert!(e.contains("0.parquet") && e.contains(said) && e.contains("where MEDS has"), "{said}: {e}");
            assert!(!e.contains("2024-01-05") && !e.contains("1.2"), "{e}");
        }
    }
}

/// Found on odd writers: a `code` written as a list or a struct was said to be missing, a column given
/// twice was read from its first copy without a word, and decimals of a precision above 38 (more than
/// 16 bytes) were read as no value.
#[test]
fn nested_and_twice_given_columns_are_said_and_wide_decimals_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("metadata")).unwrap();
    let file = root.join("data/0.parquet");
    let head = "required int64 subject_id; required int64 time (TIMESTAMP(MICROS,false));";
    let write = |schema: &str, fill: &dyn Fn(&mut RowGroup)| {
        let mut w = writer(&file, schema);
        let mut rg = w.next_row_group().unwrap();
        col::<Int64Type>(&mut rg, &[1], None, None);
        col::<Int64Type>(&mut rg, &[1_700_000_000_000_000], None, None);
        fill(&mut rg);
        rg.close().unwrap();
        w.close().unwrap();
    };
    let err = || medtrain::data::read(root, &ReadOptions::default()).err().map(|e| e.to_string()).unwrap_or_default();
    write(
        &format!("message m {{ {head} optional group code (LIST) {{ repeated group list {{ optional binary element (STRING); }} }} optional float numeric_value; }}"),
        &|rg| {
            col::<ByteArrayType>(rg, &[ByteArray::from("LOINC/2160-0")], Some(&[3]), Some(&[0]));
            col::<FloatType>(rg, &[1.1], Some(&[1]), None);
        },
    );
    let e = err();
    assert!(e.contains("0.parquet") && e.contains("the column \"code\" is nested"), "{e}");
    write(
        &format!("message m {{ {head} optional binary code (STRING); optional float numeric_value; optional float numeric_value; }}"),
        &|rg| {
            col::<ByteArrayType>(rg, &[ByteArray::from("LOINC/2160-0")], Some(&[1]), None);
            col::<FloatType>(rg, &[1.1], Some(&[1]), None);
            col::<FloatType>(rg, &[2.2], Some(&[1]), None);
        },
    );
    let e = err();
    assert!(e.contains("names the column \"numeric_value\" 2 times"), "{e}");
    // decimal(40, 2) in 17 bytes: 1.10
    write(
        &format!("message m {{ {head} optional binary code (STRING); optional fixed_len_byte_array(17) numeric_value (DECIMAL(40,2)); }}"),
        &|rg| {
            col::<ByteArrayType>(rg, &[ByteArray::from("LOINC/2160-0")], Some(&[1]), None);
            let mut v = vec![0u8; 17];
            v[16] = 110;
            col::<FixedLenByteArrayType>(rg, &[FixedLenByteArray::from(v)], Some(&[1]), None);
        },
    );
    let (d, r) = medtrain::data::read(root, &ReadOptions::default()).unwrap();
    assert_eq!(d.events.iter().map(|e| e.value).collect::<Vec<_>>(), [1.1], "{:?}", r.findings);
}
