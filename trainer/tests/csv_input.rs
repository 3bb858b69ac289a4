//! CSV files as other systems write them: Shift_JIS and EUC-JP from Japanese hospital systems, Excel's
//! UTF-8 with a byte-order mark and CRLF, UTF-16, tab- and semicolon-separated files, capitalized
//! headers, MEDS column names, spreadsheet dates, qualitative results and blank rows.

use medtrain::data::{self, charset, check::Severity, labels, ReadOptions};
use std::io::Read;
use std::path::Path;

fn read(dir: &Path, opts: &ReadOptions) -> (data::Dataset, data::check::Report) {
    data::read(dir, opts).unwrap()
}

fn findings(r: &data::check::Report, kind: &str) -> Vec<(String, u64)> {
    r.findings.iter().filter(|f| f.kind == kind).map(|f| (f.field.clone(), f.count)).collect()
}

fn sjis(s: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!bad);
    b.into_owned()
}

fn values(d: &data::Dataset) -> Vec<f32> {
    let mut v: Vec<f32> = d.events.iter().map(|e| e.value).filter(|v| !v.is_nan()).collect();
    v.sort_by(f32::total_cmp);
    v
}

#[test]
fn shift_jis_events_and_notes_are_decoded_and_said() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        sjis("subject_id,time,code,value,unit\r\n17,2024/01/05 8:30,creatinine,1.2,mg/dL\r\n17,2024/1/6,尿蛋白,陰性,\r\n"),
    )
    .unwrap();
    let note = "腎機能悪化、①要観察 ㎎ 髙値";
    std::fs::write(
        dir.path().join("notes.csv"),
        sjis(&format!("subject_id,time,text\r\n17,2024/01/05,\"{note}\"\r\n")),
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.texts, [note]);
    // the qualitative result is an ordinal level (negative: 0), as the FHIR reader reads one
    assert_eq!(d.events.len(), 3);
    assert_eq!(values(&d), [0.0, 1.2]);
    assert_eq!(d.events.iter().filter(|e| e.kind == data::EventKind::Coded).count(), 1);
    let enc = findings(&r, "text_encoding");
    assert_eq!(enc, [("Shift_JIS".to_owned(), 2)], "counted in files");
    // told from the bytes: a guess, said as a warning
    assert!(r.findings.iter().filter(|f| f.kind == "text_encoding").all(|f| f.severity == Severity::Warning));
    // 2024/01/05 8:30 is the FHIR reader's 2024-01-05T08:30:00 (no zone: UTC)
    let t = data::time::utc("2024-01-05T08:30:00").unwrap();
    assert!(d.events.iter().any(|e| e.time == t));
}

#[test]
fn euc_jp_is_told_from_shift_jis() {
    let dir = tempfile::tempdir().unwrap();
    let text = "subject_id,time,text\n1,2024-01-05,\"ご飯を食べられず、ふらつきあり。明日再診。\"\n";
    let (b, _, _) = encoding_rs::EUC_JP.encode(text);
    std::fs::write(dir.path().join("notes.csv"), &b).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, ["ご飯を食べられず、ふらつきあり。明日再診。"]);
    assert_eq!(findings(&r, "text_encoding"), [("EUC-JP".to_owned(), 1)]);
    // named, it is read as named: the same bytes as Shift_JIS give other text
    let opts = ReadOptions { encoding: charset::Choice::parse("cp932").unwrap(), ..Default::default() };
    let (d, _) = read(dir.path(), &opts);
    assert_ne!(d.texts, ["ご飯を食べられず、ふらつきあり。明日再診。"]);
}

#[test]
fn excel_utf8_with_a_mark_utf16_tabs_semicolons_and_capitalized_headers() {
    let dir = tempfile::tempdir().unwrap();
    let rows = "Subject_ID,Time,Code,Value,Unit\r\n1,2024-01-05,creatinine,1.1,mg/dL\r\n,,,,\r\n,,,,\r\n";
    std::fs::write(dir.path().join("a.csv"), [b"\xEF\xBB\xBF".as_slice(), rows.as_bytes()].concat()).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((r.malformed_count(), values(&d)), (0, vec![1.1]), "{:?}", r.findings);
    assert!(findings(&r, "text_encoding").is_empty(), "UTF-8 is not remarked on");
    // an integer id pandas wrote as a float: the same subject as the id written plainly, and said
    let rows = "subject_id,time,code,value,unit\n7731.0,2024-01-05,creatinine,1.1,mg/dL\n7731,2024-01-06,creatinine,1.2,mg/dL\n77.5,2024-01-06,creatinine,1.3,mg/dL\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((d.subjects.len(), values(&d).len()), (2, 3), "{:?}", r.findings);
    assert_eq!(findings(&r, "float_subject_id"), [("subject_id".to_owned(), 1)]);
    // times no record has (found by a tester: year 1 and 9999 became training examples): counted, not
    // events, their subject no subject
    let rows = "subject_id,time,code,value,unit\n1,2024-01-05,creatinine,1.1,mg/dL\n2,0001-01-01,creatinine,1.2,mg/dL\n2,9999-12-31,creatinine,1.3,mg/dL\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((d.subjects.len(), values(&d)), (1, vec![1.1]), "{:?}", r.findings);
    assert_eq!(findings(&r, "implausible_time"), [("time".to_owned(), 2)]);
    // MEDS written as CSV (found by a tester: its notes were labs without a value, its units unread)
    let rows = "subject_id,time,code,numeric_value,text_value\n1,2024-01-05,LAB//50912//mg/dL,1.2,\n\
                1,2024-01-05,NOTE//discharge,,Discharged home in good condition\n1,2024-01-06,MEDS_BIRTH,,\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, ["Discharged home in good condition"], "{:?}", r.findings);
    assert_eq!(values(&d), [1.2]);
    assert!(findings(&r, "missing_unit").is_empty(), "{:?}", r.findings);
    // test names in another case in a long file, and LOINC|code (found by a tester: read as local codes)
    let rows = "subject_id,time,code,value,unit\n1,2024-01-05,Creatinine,1.1,mg/dL\n1,2024-01-05,CRP,0.3,mg/dL\n\
                1,2024-01-05,Total Bilirubin,0.8,mg/dL\n1,2024-01-06,LOINC|2160-0,1.2,mg/dL\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    for loinc in ["2160-0", "1988-5", "1975-2"] {
        assert!(d.find_code("http://loinc.org", loinc).is_some(), "{loinc}: {:?}", r.findings);
    }
    assert!(findings(&r, "unknown_code_system").is_empty(), "{:?}", r.findings);
    // macOS archive debris beside the data (`._a.csv` resource forks, `__MACOSX/`) and a job's `_tmp.csv`:
    // not read, counted (found by a tester: the directory was refused with an encoding hint)
    std::fs::write(dir.path().join("a.csv"), "subject_id,time,code,value,unit\n1,2024-01-05,creatinine,1.1,mg/dL\n")
        .unwrap();
    std::fs::create_dir_all(dir.path().join("__MACOSX")).unwrap();
    for junk in ["._a.csv", "__MACOSX/._a.csv", "_tmp.csv"] {
        std::fs::write(dir.path().join(junk), [0u8, 5, 0x80, 0xff, 0xfe, 7]).unwrap();
    }
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((values(&d), r.malformed_count()), (vec![1.1], 0), "{:?}", r.findings);
    assert_eq!(findings(&r, "unread_file").iter().map(|f| f.1).sum::<u64>(), 3, "{:?}", r.findings);
    for junk in ["._a.csv", "__MACOSX/._a.csv", "_tmp.csv"] {
        std::fs::remove_file(dir.path().join(junk)).unwrap();
    }
    // a workbook saved under a .csv name: said as what it is
    let book = dir.path().join("book");
    std::fs::create_dir(&book).unwrap();
    std::fs::write(book.join("labs.csv"), b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xff\xfe").unwrap();
    let e = data::read(&book, &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("spreadsheet workbook") && e.contains("save it as CSV"), "{e}");
    std::fs::remove_dir_all(&book).unwrap();
    // subject ids that are a phone number or an e-mail address: the export may not be pseudonymized
    // (counted per subject, never printed)
    let rows = "subject_id,time,code,value,unit\n090-1234-5678,2024-01-05,creatinine,1.1,mg/dL\ntaro@example.jp,2024-01-05,creatinine,1.2,mg/dL\nP0001,2024-01-05,creatinine,1.3,mg/dL\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(findings(&r, "identifying_subject_id"), [("subject_id".to_owned(), 2)], "{:?}", r.findings);
    let text = r.render();
    assert!(!text.contains("090-1234-5678") && !text.contains("taro@"), "{text}");
    // Excel's trailing empty header cells (a sheet whose used range is wider than its table) repeat
    // the empty name: no role's column, not a duplicate (the file was refused)
    let rows = "Subject_ID,Time,Code,Value,Unit,,\r\n1,2024-01-05,creatinine,1.1,mg/dL,,\r\n";
    std::fs::write(dir.path().join("a.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((r.malformed_count(), values(&d)), (0, vec![1.1]), "{:?}", r.findings);

    // Excel's "Unicode text": UTF-16 LE with a mark, tab-separated
    std::fs::remove_file(dir.path().join("a.csv")).unwrap();
    let tsv = "subject_id\ttime\tcode\tvalue\tunit\r\n1\t2024-01-05\tcreatinine\t1,5\tmg/dL\r\n1\t2024-01-06\tcrp\t0.3\tmg/dL\r\n";
    let mut b = vec![0xFF, 0xFE];
    b.extend(tsv.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(dir.path().join("b.csv"), b).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    // a decimal comma is no number this reader guesses at: a warning
    assert_eq!(values(&d), [0.3]);
    assert_eq!(findings(&r, "numeric_text"), [("value".to_owned(), 1)]);
    assert_eq!(findings(&r, "csv_delimiter"), [("tab".to_owned(), 1)]);
    assert_eq!(findings(&r, "text_encoding"), [("UTF-16LE".to_owned(), 1)]);

    // semicolons, quoted fields holding semicolons
    std::fs::remove_file(dir.path().join("b.csv")).unwrap();
    std::fs::write(
        dir.path().join("c.csv"),
        "subject_id;time;text\n1;2024-01-05;\"a; b, c\"\n2;2024-01-05T10:00:00+09:00;plain\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, ["a; b, c", "plain"]);
    assert_eq!(findings(&r, "csv_delimiter"), [("semicolon".to_owned(), 1)]);

    // found by a tester: a European spreadsheet's export (`;` delimits, a decimal comma) lost 5 of 6
    // values (`numeric_text`) and ended "ok"; a bare dash beside a unit was a coded negative
    std::fs::remove_file(dir.path().join("c.csv")).unwrap();
    std::fs::write(
        dir.path().join("d.csv"),
        "subject_id;time;code;value;unit
1;2024-01-05 08:30;creatinine;0,9;mg/dL
         1;2024-01-06 08:30;creatinine;1,25;mg/dL
1;2024-01-07 08:30;creatinine;-;mg/dL
         1;2024-01-08 08:30;creatinine;1.1;mg/dL
1;2024-01-09 08:30;urine_protein;-;
         1;2024-01-10 08:30;creatinine;1,2,3;mg/dL
",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(values(&d), [0.0, 0.9, 1.1, 1.25], "{:?}", r.findings);
    assert_eq!(findings(&r, "decimal_comma"), [("value".to_owned(), 2)]);
    assert_eq!(findings(&r, "dash_placeholder"), [("value".to_owned(), 1)]);
    assert_eq!(findings(&r, "numeric_text"), [("value".to_owned(), 1)]);
}

#[test]
fn meds_column_names_text_results_placeholders_and_censored_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,numeric_value,text_value,unit\n\
         1,2024-01-01,creatinine,0.9,,mg/dL\n\
         1,2024-01-02,creatinine,,<0.3,mg/dL\n\
         1,2024-01-03,creatinine,NA,,mg/dL\n\
         1,2024-01-04,creatinine,NaN,,mg/dL\n\
         1,2024-01-05,creatinine,１．５,,mg/dL\n\
         1,2024-01-06,urine_protein,,2+,\n\
         1,2024-01-07,creatinine,1e0,,mg/dL\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    // 2+ is an ordinal level (3), as the FHIR reader reads it
    assert_eq!(values(&d), [0.3, 0.9, 1.0, 1.5, 3.0]);
    assert_eq!(findings(&r, "censored_value"), [("text_value".to_owned(), 1)]);
    assert!(findings(&r, "text_result").is_empty());
    // NA and NaN are no value, not text results
    assert_eq!(r.findings.iter().filter(|f| f.kind == "no_value").map(|f| f.count).sum::<u64>(), 2);

    // both names of the value column: which one holds the results is not known
    std::fs::write(dir.path().join("events.csv"), "subject_id,time,code,value,numeric_value\n").unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("events.csv:1") && e.contains("both \"value\" and \"numeric_value\""), "{e}");
    // a missing column says what the header was read as, its unknown names not printed
    std::fs::write(dir.path().join("events.csv"), "subject_id/time/code/value\n").unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no \"subject_id\" column") && e.contains("1 column: 1 name not printed"), "{e}");
}

#[test]
fn bytes_that_are_not_text_are_said_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    // a UTF-8 start, then a Latin-1 byte past the sniffed start: that line is malformed, named
    let mut b = b"subject_id,time,text\n".to_vec();
    for i in 0..3000 {
        b.extend(format!("{i},2024-01-05,\"a note of some length, in UTF-8 text\"\n").as_bytes());
    }
    b.extend(b"9999,2024-01-05,\"caf\xE9\"\n");
    std::fs::write(dir.path().join("notes.csv"), &b).unwrap();
    let opts = ReadOptions { max_malformed_fraction: 0.5, ..Default::default() };
    let (_, r) = read(dir.path(), &opts);
    let m: Vec<_> = r.findings.iter().filter(|f| f.kind == "malformed_line").collect();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].lines, [3002]);
    assert!(m[0].field.contains("read.encoding"), "{}", m[0].field);
    // named, windows-1252 reads it
    let opts = ReadOptions { encoding: charset::Choice::parse("windows-1252").unwrap(), ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(r.malformed_count(), 0);
    assert_eq!(d.texts.last().map(String::as_str), Some("café"));

    // binary: no encoding tells it; the error names the file and the key, and no byte of it
    std::fs::write(dir.path().join("notes.csv"), [0xFFu8, 0x00, 0xA0, 0xFD, 0x80, 0xFE, 0x0A, 0xFF]).unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("notes.csv") && e.contains("read.encoding"), "{e}");

    // Shift_JIS with a byte that does not map: read, the sequence counted
    let mut b = sjis("subject_id,time,text\n1,2024-01-05,\"腎機能\"\n1,2024-01-06,\"x");
    b.extend([0x85, 0x40]); // an unassigned Shift_JIS pair
    b.extend(sjis("y\"\n"));
    std::fs::write(dir.path().join("notes.csv"), &b).unwrap();
    // (auto refuses it: the start decodes in no encoding; named, it is read)
    let opts = ReadOptions { encoding: charset::Choice::Named(encoding_rs::SHIFT_JIS), ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(d.texts.len(), 2);
    assert_eq!(d.texts[0], "腎機能");
    let u: Vec<_> = r.findings.iter().filter(|f| f.kind == "undecodable_bytes").collect();
    assert_eq!((u.len(), u[0].count, u[0].severity), (1, 1, Severity::Warning));
}

#[test]
fn the_decoder_gives_encoding_rs_text_across_its_buffers() {
    // long enough to cross the sniffed start and the decoder's buffers, characters of one and two bytes
    let mut text = String::new();
    let mut i = 0u32;
    while text.len() < 600_000 {
        text.push_str(&format!("{i},腎機能ｶﾀｶﾅ①㎎ abc\n"));
        i += 1;
    }
    let bytes = sjis(&text);
    let opened = charset::open(std::io::Cursor::new(bytes.clone()), charset::Choice::Auto).unwrap().unwrap();
    assert_eq!(opened.encoding, encoding_rs::SHIFT_JIS);
    let mut out = String::new();
    // small reads, as a parser may make
    let mut r = opened.reader;
    let mut buf = [0u8; 7];
    let mut raw = Vec::new();
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    out.push_str(std::str::from_utf8(&raw).unwrap());
    assert_eq!(out, text);
    assert_eq!(opened.replaced.count(), 0);
    // a sequence cut at the end of the file is one replacement
    let mut cut = bytes;
    cut.push(0x88);
    let opened =
        charset::open(std::io::Cursor::new(cut), charset::Choice::Named(encoding_rs::SHIFT_JIS)).unwrap().unwrap();
    let mut s = String::new();
    let mut r = opened.reader;
    r.read_to_string(&mut s).unwrap();
    assert!(s.ends_with('\u{FFFD}'));
    assert_eq!(opened.replaced.count(), 1);
}

#[test]
fn label_files_in_shift_jis_with_spreadsheet_times() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n1,2024-01-01,creatinine,1.0,mg/dL\n",
    )
    .unwrap();
    let (d, _) = read(dir.path(), &ReadOptions::default());
    let lf = tempfile::tempdir().unwrap();
    let p = lf.path().join("labels.csv");
    std::fs::write(&p, sjis("Subject_ID,Prediction_Time,Categorical_Value\r\n1,2024/01/02 9:00,急性腎障害\r\n,,\r\n"))
        .unwrap();
    let (l, unknown) = labels::read(&p, &d).unwrap();
    assert_eq!(unknown, 0);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].prediction_time, data::time::utc("2024-01-02T09:00:00").unwrap());
    assert_eq!(l[0].value, labels::LabelValue::Categorical("急性腎障害".into()));
    // a subject id written as a float in the label file too (found by a review: it matched no subject)
    std::fs::write(&p, "subject_id,prediction_time,boolean_value\n1.0,2024-01-02,true\n").unwrap();
    let (l, unknown) = labels::read(&p, &d).unwrap();
    assert_eq!((l.len(), unknown), (1, 0));
}

#[test]
fn read_encoding_is_a_config_key_and_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,unit\n1,2024-01-01,creatinine,1.0,mg/dL\n",
    )
    .unwrap();
    let cfg = dir.path().join("data.toml");
    std::fs::write(&cfg, "input = \".\"\n[read]\nencoding = \"klingon\"\n[labels]\ntask = \"lab_rise\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "prepare", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("read.encoding") && e.contains("klingon") && e.contains("shift_jis"), "{e}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--encoding", "cp932", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let enc = j["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "text_encoding").cloned();
    assert_eq!(enc.map(|f| f["field"].clone()), Some(serde_json::json!("Shift_JIS")));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--encoding", "nope"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--encoding"));
}

#[test]
fn the_decoder_gives_encoding_rs_text_on_random_bytes() {
    // xorshift: reproducible bytes, biased toward the lead and trail bytes of the Japanese encodings
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let encodings = [
        encoding_rs::SHIFT_JIS,
        encoding_rs::EUC_JP,
        encoding_rs::UTF_16LE,
        encoding_rs::ISO_2022_JP,
        encoding_rs::WINDOWS_1252,
    ];
    for round in 0..400 {
        let len = match round % 4 {
            0 => (next() % 16) as usize,
            1 => (next() % 4096) as usize,
            _ => (next() % 200_000) as usize,
        };
        let bytes: Vec<u8> = (0..len)
            .map(|_| match next() % 4 {
                0 => b'a' + (next() % 26) as u8,
                1 => 0x80 | (next() % 0x80) as u8,
                2 => [b',', b'\n', b'"', 0x1B, b'$', b'B', b'(', 0x8E, 0x8F][(next() % 9) as usize],
                _ => next() as u8,
            })
            .collect();
        let enc = encodings[round % encodings.len()];
        let opened = charset::open(std::io::Cursor::new(bytes.clone()), charset::Choice::Named(enc)).unwrap().unwrap();
        let mut r = opened.reader;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 + (next() % 70_000) as usize];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        // a mark of the named encoding is skipped, as Excel's is
        let skip = match encoding_rs::Encoding::for_bom(&bytes) {
            Some((e, n)) if e == enc => n,
            _ => 0,
        };
        let (want, _) = enc.decode_without_bom_handling(&bytes[skip..]);
        assert!(got == want.as_bytes(), "round {round} ({}, {len} bytes)", enc.name());
    }
}

#[test]
fn bare_catalogue_codes_and_a_system_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,system,code,value,unit\n\
         1,2024-01-01,,2160-0,1.0,mg/dL\n\
         1,2024-01-02,http://loinc.org,2160-0,1.1,mg/dL\n\
         1,2024-01-03,,creatinine,1.2,mg/dL\n\
         1,2024-01-04,,2160-1,1.3,mg/dL\n\
         1,2024-01-05,urn:oid:9.9,2160-0,1.4,mg/dL\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0);
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 3);
    // a wrong check digit is no LOINC code; another system's code is that system's
    assert!(d.find_code("medtrain:csv", "2160-1").is_some());
    assert!(d.find_code("urn:oid:9.9", "2160-0").is_some()); // a JLAC10 code grouped by hyphens (as MEDIS prints them), in lower case or full width: one code
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,system,code,value,unit\n\
         1,2024-01-01,,3C015000002327101,1.0,mg/dL\n\
         1,2024-01-02,,3C015-0000-023-271-01,1.1,mg/dL\n\
         1,2024-01-03,urn:oid:1.2.392.200119.4.504,3c015-0000-023-271-01,1.2,mg/dL\n\
         1,2024-01-04,urn:oid:1.2.392.200119.4.504,３Ｃ０１５０００００２３２７１０１,1.3,mg/dL\n\
         1,2024-01-05,,9X999-0000-023-271-01,1.4,mg/dL\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0);
    let cr = d.find_code("urn:oid:1.2.392.200119.4.504", "3C015000002327101").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 4, "{:?}", d.codes);
    // (no catalogue test: a local code as written)
    assert!(d.find_code("medtrain:csv", "9X999-0000-023-271-01").is_some(), "{:?}", d.codes);
}

#[test]
fn encoding_names_of_whatwg_windows_and_python() {
    for (label, want) in [
        ("shift_jis", encoding_rs::SHIFT_JIS),
        ("Shift-JIS", encoding_rs::SHIFT_JIS),
        ("cp932", encoding_rs::SHIFT_JIS),
        ("MS_Kanji", encoding_rs::SHIFT_JIS),
        ("windows-31j", encoding_rs::SHIFT_JIS),
        ("euc_jp", encoding_rs::EUC_JP),
        ("ujis", encoding_rs::EUC_JP),
        ("iso2022_jp", encoding_rs::ISO_2022_JP),
        ("utf8", encoding_rs::UTF_8),
        ("UTF-16LE", encoding_rs::UTF_16LE),
        ("latin1", encoding_rs::WINDOWS_1252),
        ("cp1252", encoding_rs::WINDOWS_1252),
    ] {
        assert_eq!(charset::encoding_for_label(label), Some(want), "{label}");
    }
    assert_eq!(charset::encoding_for_label("klingon"), None);
    assert_eq!(charset::Choice::parse("AUTO"), Ok(charset::Choice::Auto));
}

#[test]
fn auto_does_not_take_windows_1252_for_shift_jis_and_stray_bytes_stay_lines() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = |s: &str| -> Vec<u8> { encoding_rs::WINDOWS_1252.encode(s).0.into_owned() };
    // European text: µmol/L, 37.5°C, accents; under Shift_JIS it decodes without error into nonsense
    let mut text = String::from("subject_id,time,code,value,unit\n");
    for i in 0..20 {
        text.push_str(&format!("{i},2024-01-05,Créatinine sérique,{i}.5,µmol/L\n{i},2024-01-05,Température,37.5,°C\n"));
    }
    std::fs::write(dir.path().join("events.csv"), latin1(&text)).unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("events.csv") && e.contains("read.encoding") && e.contains("windows-1252"), "{e}");
    let opts = ReadOptions { encoding: charset::Choice::parse("latin1").unwrap(), ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(r.malformed_count(), 0);
    assert!(d.units.names.iter().any(|u| u == "µmol/L"), "{:?}", d.units.names);

    // a UTF-8 file with one stray byte in its start: read as UTF-8, that line malformed
    let mut b = "subject_id,time,text\n1,2024-01-05,\"腎機能悪化\"\n".as_bytes().to_vec();
    b.extend(b"2,2024-01-05,\"caf\xE9 au lait\"\n3,2024-01-05,\"ok\"\n");
    std::fs::write(dir.path().join("events.csv"), &b).unwrap();
    let opts = ReadOptions { max_malformed_fraction: 0.5, ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(d.texts, ["腎機能悪化", "ok"]);
    let m = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert_eq!(m.lines, [3]);
}

#[test]
fn utf16_without_a_mark_iso_2022_jp_and_excels_sep_line() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = "subject_id\ttime\ttext\n1\t2024-01-05\tplain note\n";
    std::fs::write(dir.path().join("a.tsv"), tsv.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>())
        .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, ["plain note"], "a .tsv file is read, UTF-16 without a mark told");
    assert_eq!(findings(&r, "text_encoding"), [("UTF-16LE".to_owned(), 1)]);
    std::fs::remove_file(dir.path().join("a.tsv")).unwrap();

    let note = "ご飯を食べられず、ふらつきあり。";
    let text = format!("subject_id,time,text\n1,2024-01-05,{note}\n");
    let (b, _, _) = encoding_rs::ISO_2022_JP.encode(&text);
    std::fs::write(dir.path().join("b.csv"), &b).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, [note]);
    assert_eq!(findings(&r, "text_encoding"), [("ISO-2022-JP".to_owned(), 1)]);
    std::fs::remove_file(dir.path().join("b.csv")).unwrap();

    // Excel's sep= line, then a blank line before the header
    std::fs::write(dir.path().join("c.csv"), "sep=;\r\n\r\nsubject_id;time;text\r\n1;2024-01-05;a, b\r\n").unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((d.texts.clone(), r.malformed_count()), (vec!["a, b".to_owned()], 0), "{:?}", r.findings);
}

#[test]
fn system_columns_meds_codes_static_rows_and_numbers_in_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,system,code,value,unit\n\
         1,2024-01-01,LIS,creatinine,1.0,mg/dL\n\
         1,2024-01-02,LOINC,2160-0,1.1,mg/dL\n\
         1,2024-01-03,,LOINC/2160-0,1.2,mg/dL\n\
         1,2024-01-04,,LAB//2160-0//mg/dL,1.3,mg/dL\n\
         1,,,MEDS_BIRTH,,\n\
         1,2024-01-05,,creatinine,1.4H,mg/dL\n\
         1,2024-01-06,,creatinine,see comment,mg/dL\n\
         1,2024-01-07,,urine_protein,(±),\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    let cr = d.find_code("http://loinc.org", "2160-0").unwrap();
    assert_eq!(d.events.iter().filter(|e| e.code == cr).count(), 4);
    assert_eq!(findings(&r, "system_not_read"), [("system".to_owned(), 1)]);
    assert_eq!(findings(&r, "static_event"), [("time".to_owned(), 1)]);
    // a result without a time (found by a tester: dropped as a static fact at info level) is a broken row
    std::fs::write(dir.path().join("e.csv"), "subject_id,time,code,value\n1,,creatinine,1.3\n").unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 1, "{:?}", r.findings);
    std::fs::remove_file(dir.path().join("e.csv")).unwrap();
    assert_eq!(findings(&r, "numeric_text"), [("value".to_owned(), 1)]);
    assert_eq!(findings(&r, "text_result"), [("value".to_owned(), 1)]);
    let coded: Vec<f32> = d.events.iter().filter(|e| e.kind == data::EventKind::Coded).map(|e| e.value).collect();
    assert_eq!(coded, [1.0]);
    assert!(r.findings.iter().find(|f| f.kind == "numeric_text").unwrap().severity == Severity::Warning);
}

#[test]
fn spreadsheet_times() {
    use data::csv::parse_time;
    let t = |s: &str| data::time::parse(s).unwrap();
    assert_eq!(parse_time("2024/01/05"), Some(t("2024-01-05")));
    assert_eq!(parse_time("2024/1/5 8:30"), Some(t("2024-01-05T08:30:00")));
    assert_eq!(parse_time("2024-1-5 08:30:15"), Some(t("2024-01-05T08:30:15")));
    assert_eq!(parse_time("2024/01/05 08:30+09:00"), Some(t("2024-01-05T08:30:00+09:00")));
    assert_eq!(parse_time("2024/01/05 08:30Z"), Some(t("2024-01-05T08:30:00Z")));
    // HL7 v2's compact times (SS-MIX2 exports), a zone without its colon
    assert_eq!(parse_time("20240105"), Some(t("2024-01-05")));
    assert_eq!(parse_time("20240105083015+0900"), Some(t("2024-01-05T08:30:15+09:00")));
    assert_eq!(parse_time("2024/01/05 08:30+0900"), Some(t("2024-01-05T08:30:00+09:00")));
    for bad in [
        "2024/13/01",
        "2024/02/30",
        "2024/1/5 24:00",
        "2024/1/5 8:3",
        "2024/1/5 8:30+9",
        "24/1/5",
        "2024010",
        "20241305",
        "",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn identifiers_in_value_columns_are_findings_as_in_a_fhir_value_string() {
    // a phone number, an e-mail address and an Individual-Number-like digit run where results belong;
    // beside them text results a lab system writes, which are none
    let phone = "090-1234-5678";
    let mail = "taro.yamada@example.jp";
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("subject_id,time,code,value,text_value,unit\n");
    rows.push_str(&format!("1,2024-01-01,callback,{phone},,\n"));
    rows.push_str(&format!("1,2024-01-02,contact,,連絡先 {mail},\n"));
    rows.push_str("1,2024-01-03,phone,09012345678,,\n");
    for (i, text) in
        ["陰性(-)", "1+", "A型 Rh(+)", "<0.1", "1:40", "120/80", "2024-01-05 再検", "陽性 1280倍", "溶血あり", "12345"]
            .iter()
            .enumerate()
    {
        rows.push_str(&format!("1,2024-02-{:02},result{i},,{text},\n", i + 1));
    }
    std::fs::write(dir.path().join("events.csv"), rows).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions { identifiers: data::guard::Policy::Redact, ..Default::default() });
    let ids: Vec<(String, String, u64)> = r
        .findings
        .iter()
        .filter(|f| f.resource == "csv" && ["phone", "email", "individual_number"].contains(&f.kind.as_str()))
        .map(|f| (f.kind.clone(), f.field.clone(), f.count))
        .collect();
    assert_eq!(ids.iter().map(|i| i.2).sum::<u64>(), 3, "{:?}", r.findings);
    assert!(ids.iter().any(|i| i.0 == "email" && i.1 == "text_value"), "{ids:?}");
    assert!(r.findings.iter().filter(|f| ids.iter().any(|i| i.0 == f.kind)).all(|f| f.severity == Severity::Warning));
    // none of them is a lab value
    assert!(!d.events.iter().any(|e| e.value > 1e8));
    // full-width digits are digits; a text column beside a number is scanned too (MIMIC's `value`)
    std::fs::write(
        dir.path().join("events.csv"),
        "subject_id,time,code,value,text_value,unit\n1,2024-01-01,callback,０９０１２３４５６７８,,\n\
         1,2024-01-02,creatinine,1.0,連絡先 03-1234-5678,mg/dL\n1,2024-01-03,creatinine,1.1,1.1,mg/dL\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions { identifiers: data::guard::Policy::Redact, ..Default::default() });
    let phones: Vec<(String, u64)> =
        r.findings.iter().filter(|f| f.kind == "phone").map(|f| (f.field.clone(), f.count)).collect();
    assert_eq!(phones, [("text_value".to_owned(), 1), ("value".to_owned(), 1)], "{:?}", r.findings);
    assert_eq!(values(&d), [1.0, 1.1]);
    // under the default policy the input is refused, and nothing of the values is printed
    let (_, r) = read(dir.path(), &ReadOptions::default());
    assert!(r.blocking);
    let shown = format!("{}{}", r.render(), serde_json::to_string(&r).unwrap());
    for secret in [phone, mail, "09012345678", "5678", "yamada"] {
        assert!(!shown.contains(secret), "{secret}");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

const MIMIC_HEADER: &str = "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,charttime,storetime,\
value,valuenum,valueuom,ref_range_lower,ref_range_upper,flag,priority,comments\n";

#[test]
fn mimic_labevents_csv_gz_reads_with_read_columns() {
    let dir = tempfile::tempdir().unwrap();
    let rows = format!(
        "{MIMIC_HEADER}1,10000032,,2704548,50912,,2180-05-06 22:25:00,2180-05-06 23:28:00,1.1,1.1,mg/dL,0.5,1.2,,ROUTINE,\n\
         2,10000032,,2704548,51464,,2180-05-06 22:25:00,,NEG,,mg/dL,,,,ROUTINE,\n\
         3,10000033,,2704549,50912,,2180-05-07 08:00:00,,___,,mg/dL,,,abnormal,STAT,\"___ called, see note\"\n"
    );
    std::fs::write(dir.path().join("labevents.csv.gz"), gzip(rows.as_bytes())).unwrap();
    // without the mapping: the error names the key that maps the column, and prints no header cell the
    // config does not name
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    // (`charttime` is a time column's name the reader knows: the code column is what is missing)
    assert!(e.contains("read.columns.code") && e.contains("labevents.csv.gz:1:"), "{e}");
    assert!(e.contains("16 columns: 2 \"subject_id\", 7 \"charttime\", 9 \"value\", 13 names not printed"), "{e}");
    assert!(!e.contains("itemid"), "{e}");
    let columns =
        data::csv::Columns::parse("time=charttime, code=itemid,value=valuenum,text_value=value,unit=valueuom").unwrap();
    let (d, r) = read(dir.path(), &ReadOptions { columns, ..Default::default() });
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.subjects.len(), 2);
    // 1.1 mg/dL a lab value; NEG an ordinal level (negative: 0); "___" (MIMIC's redaction) a text result
    assert_eq!(values(&d), [0.0, 1.1]);
    assert_eq!(findings(&r, "text_result"), [("text_value".to_owned(), 1)]);
    assert!(d.events.iter().all(|e| e.time >= data::time::utc("2180-05-06T22:25:00Z").unwrap()));
    assert_eq!(r.bytes, std::fs::metadata(dir.path().join("labevents.csv.gz")).unwrap().len());
}

#[test]
fn read_columns_are_checked_and_csv_gz_is_bounded() {
    for (flag, want) in [
        ("time=charttime,when=storetime", "\"when\" is no role"),
        ("time=charttime,code=CHARTTIME", "code: names the column time also names"),
        ("time=", "time: names no column"),
        ("charttime", "is not role=name"),
        ("time=a,time=b", "time: given twice"),
    ] {
        let e = data::csv::Columns::parse(flag).unwrap_err();
        assert!(e.contains(want), "{flag}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("data.toml");
    for (table, want) in [
        ("[read.columns]\ntime = \"charttime\"\ncode = \"charttime\"\n", "read.columns.code"),
        ("[read.columns]\nwhen = \"charttime\"\n", "when"),
    ] {
        std::fs::write(&cfg, format!("input = \".\"\n{table}[labels]\ntask = \"lab_rise\"\n")).unwrap();
        let e = data::prepare::DataConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    // a .csv.gz file is inflated within read.max_decompressed_bytes, as an .ndjson.gz file is
    let mut rows = String::from("subject_id,time,code,value,unit\n");
    for i in 0..20_000 {
        rows.push_str(&format!("{},2024-01-01,creatinine,1.{},mg/dL\n", i % 50, i % 10));
    }
    std::fs::write(dir.path().join("events.csv.gz"), gzip(rows.as_bytes())).unwrap();
    let (d, _) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.events.len(), 20_000);
    let mut opts = ReadOptions::default();
    opts.limits.max_decompressed_bytes = 100_000;
    let e = data::read(dir.path(), &opts).unwrap_err().to_string();
    assert!(e.contains("read.max_decompressed_bytes"), "{e}");
}

#[test]
fn two_roles_read_from_one_column_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "subject_id,time,code,value,unit\n1,2024-01-01,creatinine,1.0,mg/dL\n")
        .unwrap();
    // `text_value = "value"` leaves `value` on its own name: one column for two roles
    let columns = data::csv::Columns::parse("text_value=value").unwrap();
    let e = data::read(dir.path(), &ReadOptions { columns, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("value and text_value are read from one column (4)") && e.contains("e.csv:1:"), "{e}");
}

#[test]
fn a_first_line_that_starts_like_excels_sep_line_is_a_header() {
    // `sep=;` followed by more on its line panicked (an overflow computing the line's length)
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "sep=;oinc\r\nLAB//50912//mg/dL;2160-0\r\n").unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("e.csv:1:") && e.contains("the header has no"), "{e}");
}

#[test]
fn wide_files_of_one_column_per_test() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/sheet.csv"),
        "Subject_ID,Time,Creatinine (mg/dL),CRP[mg/dL],AST（U/L）,heart_rate,age,カリウム,K\n\
         1,2024/01/05 8:00,1.1,0.3,25,72,67,4.1,x\n\
         1,2024/01/06 8:00,,<0.1,NA,80,67,,\n\
         2,2024/01/05 9:00,,,,,54,,4.4\n",
    )
    .unwrap();
    // a local column name the code map maps (and its unit)
    let map = dir.path().join("map.csv");
    std::fs::write(&map, "code,loinc,unit\nカリウム,2823-3,mmol/L\n").unwrap();
    let prefer = ReadOptions::default().code_systems;
    let map = data::code_map::CodeMap::load(&map, &prefer, Default::default(), Default::default()).unwrap();
    let opts = ReadOptions { code_map: Some(std::sync::Arc::new(map)), ..Default::default() };
    let (d, r) = read(&dir.path().join("in"), &opts);
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    // empty cells are tests not done: no events, no findings
    assert_eq!(d.events.len(), 7, "{:?}", r.findings);
    assert_eq!(d.subjects.len(), 1);
    let code = |c: &str| d.find_code("http://loinc.org", c).unwrap();
    let of = |c: u32| d.events.iter().filter(|e| e.code == c).map(|e| e.value).collect::<Vec<f32>>();
    assert_eq!(of(code("2160-0")), [1.1]);
    assert_eq!(of(code("1988-5")), [0.3, 0.1]);
    assert_eq!(of(code("2823-3")), [4.1]);
    let hr = code("8867-4");
    assert!(d.events.iter().filter(|e| e.code == hr).all(|e| e.kind == data::EventKind::Vital));
    // a unit keeps its case (U/L, not u/l)
    assert!(d.units.names.iter().any(|u| u == "U/L") && !d.units.names.iter().any(|u| u == "u/l"));
    assert_eq!(findings(&r, "wide_layout"), [("header".to_owned(), 1)]);
    assert_eq!(findings(&r, "wide_column_not_read"), [("header".to_owned(), 2)]);
    // (a warning naming the columns by number: found by a tester, an info without them)
    let f = r.findings.iter().find(|f| f.kind == "wide_column_not_read").unwrap();
    assert_eq!(f.severity, data::check::Severity::Warning);
    assert!(f.detail.as_deref().is_some_and(|d| d.contains("columns ")), "{f:?}");
    assert_eq!(findings(&r, "censored_value"), [("value".to_owned(), 1)]);
    assert_eq!(findings(&r, "missing_unit"), [("unit".to_owned(), 2)]);
    // a phone number in a test's cell is an identifier finding, never a value
    std::fs::write(dir.path().join("in/sheet.csv"), "subject_id,time,crp\n1,2024-01-05,090-1234-5678\n").unwrap();
    let (d, r) = read(&dir.path().join("in"), &ReadOptions::default());
    assert!(r.blocking && d.events.iter().all(|e| e.value.is_nan()), "{:?}", r.findings);
    assert!(!r.render().contains("090-1234-5678"));
    // a column of notes beside the tests, or beside a value column without a code (found by a tester:
    // read as a file of notes, every result dropped at info level): refused, saying what to do
    for header in [
        "subject_id,time,Creatinine,CRP,text\n1,2024-01-05,1.1,0.3,fine\n",
        "subject_id,time,value,unit,text\n1,2024-01-05,1.1,mg/dL,fine\n",
    ] {
        std::fs::write(dir.path().join("in/sheet.csv"), header).unwrap();
        let e = data::read(&dir.path().join("in"), &ReadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("sheet.csv:1:") && e.contains("would be dropped") && e.contains("\"code\""), "{e}");
    }
    // no column of a test: the error says what a file needs, printing no unknown name
    std::fs::write(dir.path().join("in/sheet.csv"), "subject_id,time,Tanaka,07012345678\n1,2024-01-05,1,2\n").unwrap();
    let e = data::read(&dir.path().join("in"), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("sheet.csv:1:") && e.contains("nor a column a catalogue test or read.code_map names"), "{e}");
    assert!(!e.contains("Tanaka") && !e.contains("07012345678"), "{e}");
}

/// Headers written as people write them (`Total Bilirubin (mg/dL)`) name the catalogue's
/// `total_bilirubin`; subject_id and time named one column (a config mistake) panicked counting.
#[test]
fn wide_headers_in_words_and_one_column_for_two_roles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.csv"),
        "subject_id,time,Total Bilirubin (mg/dL),Urea-Nitrogen\n1,2024-01-05,0.8,14\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.events.len(), 2, "{:?}", r.findings);
    std::fs::write(dir.path().join("s.csv"), "subject_id,creatinine\n2024-01-05,1.0\n").unwrap();
    let columns = data::csv::Columns::parse("time=subject_id").unwrap();
    let _ = data::read(dir.path(), &ReadOptions { columns, ..Default::default() });
}

#[test]
fn malformed_rows_are_named_by_the_line_an_editor_shows() {
    // lines as an editor numbers them: Excel's sep= line, blank lines and line breaks inside quoted
    // notes counted, in files whose lines end in \n, \r\n or \r alone, with and without a final line end
    let rows = [
        "subject_id;time;code;value;text",
        "",
        "1;2024-01-05;creatinine;1.0;\"a note\nover two lines\"",
        "",
        "",
        "1;not a time;creatinine;1.0;",
        "2;2024-01-06;creatinine;1.1;\"x\n\ny\"",
        "2;also not a time;creatinine;1.2;",
    ];
    for (sep, first) in [(true, 8u64), (false, 7)] {
        for ending in ["\n", "\r\n"] {
            for last_end in [true, false] {
                let mut text = if sep { format!("sep=;{ending}") } else { String::new() };
                text.push_str(&rows.join("\n").replace('\n', ending));
                if last_end {
                    text.push_str(ending);
                }
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("e.csv"), &text).unwrap();
                let opts = ReadOptions { max_malformed_fraction: 0.9, ..Default::default() };
                let (_, r) = read(dir.path(), &opts);
                let m: Vec<u64> = r
                    .findings
                    .iter()
                    .filter(|f| f.kind == "malformed_line")
                    .flat_map(|f| f.lines.iter().copied())
                    .collect();
                let case = format!("sep {sep}, ending {ending:?}, final line end {last_end}");
                assert_eq!(m, [first, first + 4], "{case}");
            }
        }
    }
    // \r alone: the parser counts no lines; records are numbered (no blank lines, no breaks in notes)
    let dir = tempfile::tempdir().unwrap();
    let text = "subject_id,time,code,value\r1,2024-01-05,creatinine,1.0\r1,bad,creatinine,1.0\r";
    std::fs::write(dir.path().join("e.csv"), text).unwrap();
    let (_, r) = read(dir.path(), &ReadOptions { max_malformed_fraction: 0.9, ..Default::default() });
    let m = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert_eq!(m.lines, [3]);
    // a header error after the sep= line and a blank line names line 3
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "sep=,\r\n\r\nsubject,time,code,value\r\n1,2024-01-05,creatinine,1\r\n")
        .unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("e.csv:3:") && e.contains("the header has no"), "{e}");
}

#[test]
fn findings_of_csv_input_name_its_columns() {
    // a unit converted, a missing unit and a missing value were named as FHIR elements
    // (`Observation.valueQuantity.unit`, `lab.value`) in a report on CSV files
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("e.csv"),
        "subject_id,time,code,value,unit\n1,2024-01-05,creatinine,88.4,umol/L\n1,2024-01-06,creatinine,1.0,\n\
         1,2024-01-07,creatinine,,mg/dL\n",
    )
    .unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    for (kind, field) in [("converted_unit", "unit"), ("missing_unit", "unit"), ("no_value", "value")] {
        let f = r.findings.iter().find(|f| f.kind == kind).unwrap_or_else(|| panic!("{kind}: {:?}", r.findings));
        assert_eq!((f.resource.as_str(), f.field.as_str()), ("csv", field), "{kind}");
    }
    assert!(!r.render().contains("Observation"), "{}", r.render());
}

/// Found by a tester: a file of labs and notes (a `text` column beside `code`) read every row as a
/// note, the labs lost without a word; a row with a value is a lab (its text, a comment, scanned), a
/// row with only text a note under its code. Malformed rows are named by their path under the input
/// (two `labs.csv` in two folders are two files).
#[test]
fn a_file_of_labs_and_notes_and_files_of_one_name_in_two_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mixed.csv"),
        "subject_id,time,code,value,unit,system,text\n\
         a,2024-01-01T08:00:00Z,2160-0,1.1,mg/dL,http://loinc.org,\n\
         a,2024-01-01T09:00:00Z,2160-0,1.3,mg/dL,http://loinc.org,hemolysed? call 090-1234-5678\n\
         a,2024-01-02T08:00:00Z,NOTE,,,,胸痛で来院。\n\
         a,2024-01-03T08:00:00Z,NOTE,,,,\n",
    )
    .unwrap();
    let opts = ReadOptions { identifiers: data::guard::Policy::Redact, ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    let kinds = |k: data::EventKind| d.events.iter().filter(|e| e.kind == k).count();
    assert_eq!(kinds(data::EventKind::Lab), 2, "{:?}", r.findings);
    assert_eq!(kinds(data::EventKind::Note), 1, "{:?}", r.findings);
    let note = d.events.iter().find(|e| e.kind == data::EventKind::Note).unwrap();
    assert_eq!(d.texts[note.text as usize], "胸痛で来院。");
    assert_eq!(d.codes[note.code as usize].code, "NOTE");
    // the comment beside a value is scanned
    assert_eq!(findings(&r, "phone"), [("text".to_string(), 1)]);

    let dir = tempfile::tempdir().unwrap();
    for part in ["part1", "part2"] {
        std::fs::create_dir(dir.path().join(part)).unwrap();
        std::fs::write(
            dir.path().join(part).join("labs.csv"),
            "subject_id,time,code,value\na,2024-01-01T08:00:00Z,2160-0,1.1\na,2024-01-01T08:00:00Z,2160-0,1.1,9\n",
        )
        .unwrap();
    }
    let (_, r) = read(dir.path(), &ReadOptions::default());
    let mut files: Vec<String> =
        r.findings.iter().filter(|f| f.kind == "malformed_line").filter_map(|f| f.file.clone()).collect();
    files.sort();
    assert_eq!(files, ["part1/labs.csv", "part2/labs.csv"]);
}

/// Found by a tester: a Shift_JIS file whose only non-ASCII text is full-width digits and units was
/// refused as no known encoding; one whose first thousands of rows are ASCII and a later one Shift_JIS
/// was blocked on that row (its start read as UTF-8): the file is told from its first line that is not
/// ASCII.
#[test]
fn full_width_only_and_late_shift_jis_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = "subject_id,time,code,value,unit\n".to_string();
    text += "a,2024-01-01T08:00:00Z,2160-0,１．２,ｍｇ／ｄＬ\n";
    std::fs::write(dir.path().join("labs.csv"), sjis(&text)).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(values(&d), [1.2], "{:?}", r.findings);
    assert_eq!(findings(&r, "text_encoding"), [("Shift_JIS".to_string(), 1)]);

    let dir = tempfile::tempdir().unwrap();
    let mut text = "subject_id,time,code,value,unit\n".to_string();
    for i in 0..5000 {
        text += &format!("a,2024-01-01T08:{:02}:{:02}Z,2160-0,1.{},mg/dL\n", i / 60 % 60, i % 60, i % 10);
    }
    text += "b,2024-01-02T08:00:00Z,2160-0,1.0,ｍｇ／ｄＬ\n";
    assert!(text.len() > 100 << 10);
    std::fs::write(dir.path().join("labs.csv"), sjis(&text)).unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert!(!r.blocking, "{:?}", r.findings);
    assert_eq!(d.events.len(), 5001);
    assert_eq!(findings(&r, "text_encoding"), [("Shift_JIS".to_string(), 1)]);
}

/// Found by review: a notes file whose `code` column is the note's type (no value column) is a notes
/// file, as before files of labs and notes were read (it was refused for want of a value column).
#[test]
fn a_notes_file_with_a_code_column_is_read_as_notes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.csv"),
        "subject_id,time,code,text\na,2024-01-01T08:00:00Z,discharge,退院。\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.events.len(), 1, "{:?}", r.findings);
    assert_eq!(d.events[0].kind, data::EventKind::Note);
    // the note's type is its code
    assert_eq!(d.codes[d.events[0].code as usize].code, "discharge");
}

/// Found by review: the first non-ASCII byte at the end of a 64 KiB read, a file of `\r` line ends, and
/// a line longer than a window before it all left a late Shift_JIS row to be read as UTF-8; and a file
/// of code, text_value and text columns was read as notes, its results lost (refused now, naming the
/// value column it lacks).
#[test]
fn late_shift_jis_at_a_window_edge_after_cr_lines_and_a_long_line() {
    let row = |i: usize| format!("a,2024-01-01T08:{:02}:{:02}Z,2160-0,1.{}", i / 60 % 60, i % 60, i % 10);
    let last = "b,2024-01-02T08:00:00Z,2160-0,1.0,ｍｇ／ｄＬ";
    let header = "subject_id,time,code,value,unit";
    // the first non-ASCII byte exactly at the end of the second 64 KiB read
    let mut edge = format!("{header}\n");
    while edge.len() < (128 << 10) - 200 {
        edge += &(row(edge.len()) + ",mg/dL\n");
    }
    let pad = (128 << 10) - 1 - edge.len() - "b,2024-01-02T08:00:00Z,2160-0,1.0,".len();
    edge += &format!("{},2024-01-02T08:00:00Z,2160-0,1.0,ｍｇ／ｄＬ\n", "b".repeat(pad + 1));
    let cr = format!("{header}\r{}\r{last}\r", (0..5000).map(|i| row(i) + ",mg/dL").collect::<Vec<_>>().join("\r"));
    let long_note =
        format!("subject_id,time,text\na,2024-01-01T08:00:00Z,{}\nb,2024-01-02T08:00:00Z,胸痛\n", "x ".repeat(70_000));
    for (name, text) in [("edge", edge), ("cr", cr), ("long", long_note)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.csv"), sjis(&text)).unwrap();
        let (_, r) = read(dir.path(), &ReadOptions::default());
        assert!(!r.blocking, "{name}: {:?}", r.findings);
        assert_eq!(findings(&r, "text_encoding"), [("Shift_JIS".to_string(), 1)], "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.csv"),
        "subject_id,time,code,text_value,text\na,2024-01-01T08:00:00Z,u,negative,\n",
    )
    .unwrap();
    let e = data::read(dir.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("\"value\" column"), "{e}");
}

/// Found by a tester: an EHR extract keeps notes as RTF documents in its text column (`{\rtf1...`); the
/// note was its RTF source (font tables, control words) for the model and the guard. Read as its text.
#[test]
fn a_note_written_as_rtf_in_a_text_column_is_read_as_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let rtf = r#"{\rtf1\ansi\ansicpg932{\fonttbl{\f0 Century;}{\f1\fcharset128 MS Mincho;}}\f1 \'94\'ad\'94\'4d\f0 , call 090-1234-5678\par}"#;
    // and RTF whose Japanese is written as it is (the column is text: read as those characters, not as
    // bytes of the document's code page), a character past U+FFFF too
    let raw = r#"{\rtf1\ansi\ansicpg1252 患者 田中𠮷 seen}"#;
    let csv = format!(
        "subject_id,time,text\na,2024-01-01T08:00:00Z,\"{}\"\na,2024-01-02T08:00:00Z,\"{}\"\n",
        rtf.replace('"', "\"\""),
        raw
    );
    std::fs::write(dir.path().join("notes.csv"), csv).unwrap();
    let opts = ReadOptions { identifiers: data::guard::Policy::Redact, ..Default::default() };
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(d.texts, ["発熱, call [PHONE]", "患者 田中𠮷 seen"], "{:?}", r.findings);
}

/// Found by a tester: MIMIC-IV's note files (`discharge.csv`: note_id, subject_id, hadm_id, note_type,
/// note_seq, charttime, storetime, text) were refused for want of a `time` column; `charttime` is one
/// of its names (where no `time` column is).
#[test]
fn charttime_is_the_time_where_no_time_column_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("discharge.csv"),
        "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n\
         1-DS-1,1,2,DS,1,2180-05-07 00:00:00,2180-05-09 15:26:00,\"Chief Complaint: abdominal pain.\"\n\
         1-RR-2,1,2,RR,2,2180-05-08 00:00:00,2180-05-09 15:26:00,\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    // (a row without text is no note: counted)
    assert_eq!(d.texts, ["Chief Complaint: abdominal pain."], "{:?}", r.findings);
    assert_eq!(findings(&r, "empty_note"), [("text".to_string(), 1)]);
    assert_eq!(d.events[0].time, data::time::utc("2180-05-07").unwrap());
}

/// Found by a tester: a quote opened and never closed took the rows after it into one field, and the
/// row was said to have "more or fewer fields than the header"; it is said as the open quote it is.
#[test]
fn an_open_quote_is_said_as_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("labs.csv"),
        "subject_id,time,code,value,unit\na,2024-01-01T00:00:00Z,2160-0,1.1,mg/dL\n\
         b,2024-01-01T00:00:00Z,2160-0,\"1.2,mg/dL\nc,2024-01-01T00:00:00Z,2160-0,1.3,mg/dL\n",
    )
    .unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert!(f.field.contains("a quote is not closed"), "{:?}", f);
    assert_eq!(f.lines, [3]);
    // in the last column (a note's text), where the field count is right: the rows after it (other
    // patients') would have been one note of the first; a note of many lines is still one note
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.csv"),
        "subject_id,time,text\na,2024-01-01T00:00:00Z,\"line one\nline two, 2024 plan\nSeen,2024-01-05,follow-up\"\n\
         b,2024-01-02T00:00:00Z,\"open quote\nc,2024-01-03T00:00:00Z,other patient's note\nd,2024-01-04 09:00,more\"\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions { max_malformed_fraction: 1.0, ..Default::default() });
    assert_eq!(d.texts, ["line one\nline two, 2024 plan\nSeen,2024-01-05,follow-up"], "{:?}", r.findings);
    let f = r.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert!(f.field.contains("quote opened on this line is not closed"), "{:?}", f);
    assert_eq!(f.lines, [5]);
}

/// A config written for CSV files (`[read.columns]`) used on a FHIR export: said, since nothing reads it.
#[test]
fn csv_column_names_given_for_other_input_are_said_to_have_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let obs = r#"{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"effectiveDateTime":"2024-01-05T08:30:00Z","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;
    std::fs::write(dir.path().join("Observation.ndjson"), format!("{obs}\n")).unwrap();
    let mut opts = ReadOptions::default();
    let (_, r) = read(dir.path(), &opts);
    assert!(findings(&r, "config_key_not_read").is_empty());
    opts.columns.time = Some("charttime".into());
    let (d, r) = read(dir.path(), &opts);
    assert_eq!(d.events.len(), 1);
    assert_eq!(findings(&r, "config_key_not_read"), [("read.columns".to_owned(), 1)]);
    let f = r.findings.iter().find(|f| f.kind == "config_key_not_read").unwrap();
    assert_eq!(f.severity, Severity::Warning);
}

/// A file cut inside a quoted note (or whose last quote is never closed): its last record holds the
/// rest of the file and is malformed, not a note (it was read as one). Pipe-delimited files are read.
#[test]
fn a_file_ending_inside_a_quote_and_pipe_delimited_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.csv"),
        "subject_id,time,text\n1,2024-01-05,\"whole note\"\n2,2024-01-06,\"cut short, the rest\nof the file\n",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(d.texts, ["whole note"]);
    assert_eq!(r.malformed_count(), 1, "{:?}", r.findings);
    let mal: Vec<_> = r.findings.iter().filter(|f| f.kind == "malformed_line").collect();
    assert!(mal[0].field.contains("ends inside a quoted field") && mal[0].lines == [3], "{:?}", r.findings);
    // an identifier in a note is said at its line
    std::fs::write(
        dir.path().join("notes.csv"),
        "subject_id,time,text\n1,2024-01-05,\"ok\"\n2,2024-01-06,\"電話 090-1234-5678\"\n",
    )
    .unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    let f = r.findings.iter().find(|f| f.kind == "phone").expect("phone");
    assert_eq!((f.file.as_deref(), f.lines.as_slice()), (Some("notes.csv"), &[3][..]), "{:?}", r.findings);
    // closed at the end, or a quote inside an unquoted field: whole records
    std::fs::write(
        dir.path().join("notes.csv"),
        "subject_id,time,text\n1,2024-01-05,\"whole note\"\n2,2024-01-06,5\" tall\n3,2024-01-07,\"a \"\"quoted\"\" word\"",
    )
    .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(r.malformed_count(), 0, "{:?}", r.findings);
    assert_eq!(d.texts.len(), 3);
    // pipe-delimited, as some exports write text
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("labs.txt.csv"), "subject_id|time|code|value|unit\n1|2024-01-05|2160-0|1.2|mg/dL\n")
        .unwrap();
    let (d, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!((r.malformed_count(), values(&d)), (0, vec![1.2]), "{:?}", r.findings);
    assert_eq!(findings(&r, "csv_delimiter"), [("pipe".to_owned(), 1)]);
}

/// Found by a tester: `0007654321` and `7654321` (a file passed through a spreadsheet beside one that
/// did not) were two subjects without a word: one patient as two privacy units. A warning, the ids
/// not printed.
#[test]
fn subject_ids_that_differ_by_leading_zeros_are_said() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("labs.csv"),
        "subject_id,time,code,value,unit\n0007654321,2024-01-05,creatinine,1.0,mg/dL\n\
         7654321,2024-01-06,creatinine,1.1,mg/dL\n0012,2024-01-06,creatinine,1.1,mg/dL\n\
         12,2024-01-06,creatinine,1.1,mg/dL\n3,2024-01-06,creatinine,1.1,mg/dL\n",
    )
    .unwrap();
    let (_, r) = read(dir.path(), &ReadOptions::default());
    assert_eq!(findings(&r, "zero_padded_subject_id"), [("subject_id".to_owned(), 2)], "{:?}", r.findings);
    assert!(!format!("{r:?}").contains("7654321"));
}
