//! Bounded cost of reading any input (`[read]` bounds): over-long lines, over-long notes, .gz bombs.
//! Real files in a temporary directory; the real binary where a bound is a CLI matter. Peak memory is
//! the child's own maximum resident set (wait4), never a timing.

use medtrain::data::{self, ReadLimits, ReadOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const LAB: &str = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},"subject":{"reference":"Patient/a"},"effectiveDateTime":"2024-01-02","valueQuantity":{"value":1.1,"unit":"mg/dL"}}"#;

/// Runs the binary to completion; returns (exit code, stdout, stderr, peak resident set in bytes).
fn run_measured(args: &[&str], dir: &Path) -> (i32, String, String, u64) {
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reports the resources of this child alone (RUSAGE_CHILDREN would mix in other tests' children)
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    std::mem::forget(child); // already reaped
    (
        code,
        std::fs::read_to_string(out_path).unwrap(),
        std::fs::read_to_string(err_path).unwrap(),
        usage.ru_maxrss as u64 * 1024, // kilobytes on Linux
    )
}

/// A gzip file (at `level`: the fastest gives a ratio of about 230 on one repeated byte, the best
/// about 1030) whose first line is `huge` bytes of one character (no newline in it), then `tail`.
fn write_gz_bomb(path: &Path, huge: usize, tail: &str, level: flate2::Compression) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), level);
    let chunk = vec![b'7'; 1 << 20];
    let mut left = huge;
    while left > 0 {
        let n = left.min(chunk.len());
        gz.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    gz.write_all(b"\n").unwrap();
    gz.write_all(tail.as_bytes()).unwrap();
    gz.finish().unwrap();
}

const MB: u64 = 1 << 20;

#[test]
fn a_gz_holding_one_200_mb_line_streams_past_it_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let file = input.join("Observation.ndjson.gz");
    let tail = format!("{LAB}\n{}\n", LAB.replace("Patient/a", "Patient/b"));
    write_gz_bomb(&file, 200 << 20, &tail, flate2::Compression::fast());
    // the ratio bound is lifted so that the line bound is what is tested
    let (code, out, err, peak) = run_measured(
        &["data", "check", "--json", "--max-gz-ratio", "5000", "--max-line-bytes", "4194304", input.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 1, "one malformed line of three is blocking at the default tolerance: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mal: Vec<&serde_json::Value> =
        v["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "malformed_line").collect();
    assert_eq!(mal.len(), 1, "{out}");
    assert_eq!(mal[0]["file"], "Observation.ndjson.gz");
    assert_eq!(mal[0]["lines"], serde_json::json!([1]));
    assert!(mal[0]["field"].as_str().unwrap().contains("read.max_line_bytes"), "{out}");
    // the lines after it are read, numbered as in the file
    assert_eq!(v["events"]["lab"], 2);
    assert_eq!(v["subjects"], 2);
    assert!(!out.contains("7777777"), "no content of the line is echoed");
    // a 200 MB line held whole would take 200 MB; the bound is 4 MiB plus two 8 MiB blocks
    assert!(peak < 120 * MB, "peak resident set {} MB", peak / MB);
}

#[test]
fn a_gz_bomb_is_refused_by_its_ratio_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    write_gz_bomb(&input.join("Observation.ndjson.gz"), 200 << 20, "", flate2::Compression::best());
    let (code, _, err, peak) = run_measured(&["data", "check", input.to_str().unwrap()], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Observation.ndjson.gz") && err.contains("read.max_gz_ratio"), "{err}");
    assert!(peak < 120 * MB, "peak resident set {} MB", peak / MB);
}

#[test]
fn a_gz_over_max_decompressed_bytes_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Observation.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&file).unwrap(), flate2::Compression::fast());
    for i in 0..2000 {
        writeln!(gz, "{}", LAB.replace("Patient/a", &format!("Patient/p{i}"))).unwrap();
    }
    gz.finish().unwrap();
    let opts = |max: u64| ReadOptions {
        limits: ReadLimits { max_decompressed_bytes: max, ..Default::default() },
        ..Default::default()
    };
    let e = data::read(&file, &opts(100_000)).unwrap_err().to_string();
    assert!(e.contains("Observation.ndjson.gz") && e.contains("read.max_decompressed_bytes"), "{e}");
    let (_, report) = data::read(&file, &opts(10 << 20)).unwrap();
    assert_eq!(report.subjects, 2000);
    // the same bound from the command line
    let o = Command::new(env!("CARGO_BIN_EXE_medtrain"))
        .args(["data", "check", "--max-decompressed-bytes", "100000"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("read.max_decompressed_bytes"));
}

#[test]
fn an_overlong_plain_line_is_malformed_and_the_next_lines_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Observation.ndjson");
    let long = LAB.replace("Patient/a", &format!("Patient/{}", "x".repeat(5000)));
    std::fs::write(&file, format!("{LAB}\n{long}\n{}\n", LAB.replace("Patient/a", "Patient/c"))).unwrap();
    let opts = ReadOptions {
        limits: ReadLimits { max_line_bytes: 2048, ..Default::default() },
        max_malformed_fraction: 0.5,
        ..Default::default()
    };
    let (d, report) = data::read(&file, &opts).unwrap();
    assert_eq!(report.malformed_count(), 1);
    let f = report.findings.iter().find(|f| f.kind == "malformed_line").unwrap();
    assert_eq!(f.lines, vec![2]);
    assert!(f.field.contains("read.max_line_bytes"));
    assert_eq!(d.subjects.len(), 2);
    // a line longer than the whole read buffer (8 MiB) goes the streaming way, with the same result
    let huge = LAB.replace("Patient/a", &format!("Patient/{}", "y".repeat(20 << 20)));
    std::fs::write(&file, format!("{LAB}\n{huge}\n{}\n", LAB.replace("Patient/a", "Patient/c"))).unwrap();
    let (d, report) = data::read(&file, &opts).unwrap();
    assert_eq!(report.malformed_count(), 1);
    assert_eq!(report.findings.iter().find(|f| f.kind == "malformed_line").unwrap().lines, vec![2]);
    assert_eq!(d.subjects.len(), 2);
}

#[test]
fn a_note_over_max_note_bytes_is_cut_at_a_character_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.csv");
    let long = "経過良好。".repeat(2000); // 30 000 bytes of 3-byte characters
    std::fs::write(&file, format!("subject_id,time,text\na,2024-01-02,\"{long}\"\nb,2024-01-02,short note\n")).unwrap();
    let opts = ReadOptions { limits: ReadLimits { max_note_bytes: 1000, ..Default::default() }, ..Default::default() };
    let (d, report) = data::read(&file, &opts).unwrap();
    assert_eq!(d.texts.len(), 2);
    let cut = d.texts.iter().find(|t| t.starts_with("経過")).unwrap();
    assert!(cut.len() <= 1000 && cut.len() > 990, "{}", cut.len());
    assert!(d.texts.contains(&"short note".to_owned()));
    let f = report.findings.iter().find(|f| f.kind == "note_truncated").expect("the cut is reported");
    assert_eq!(f.count, 1);
    assert!(!report.blocking);
}

#[test]
fn a_csv_record_over_max_line_bytes_refuses_the_file_without_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.csv");
    let long = "a\n".repeat(3 << 20); // one quoted note of 6 MB over many physical lines
    std::fs::write(&file, format!("subject_id,time,text\nb,2024-01-02,short\na,2024-01-02,\"{long}\"\n")).unwrap();
    let opts = ReadOptions { limits: ReadLimits { max_line_bytes: 4096, ..Default::default() }, ..Default::default() };
    let e = data::read(&file, &opts).unwrap_err().to_string();
    assert!(e.contains("notes.csv") && e.contains("read.max_line_bytes"), "{e}");
    assert!(!e.contains("aaaa"));
    let (d, _) = data::read(&file, &ReadOptions::default()).unwrap();
    assert_eq!(d.texts.len(), 2);
}

#[test]
fn read_bounds_out_of_range_name_the_key_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.ndjson"), format!("{LAB}\n")).unwrap();
    for (flag, value) in [
        ("--max-line-bytes", "10"),
        ("--max-note-bytes", "0"),
        ("--max-gz-ratio", "0.5"),
        ("--max-decompressed-bytes", "0"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_medtrain"))
            .args(["data", "check", flag, value])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
