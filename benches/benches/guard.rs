//! The identifier guard on notes: bytes of note text per second through `guard::scan` (every note is
//! scanned during ingest), on the demo cohort's notes (DocumentReference and Composition, Japanese and
//! English), and on a hostile note (300k phone numbers in one note).
//!
//!     cargo bench -p medtrain-benches --bench guard
//!
//! Single-threaded: the scan of one note runs on one core (ingest scans notes in parallel by line).
//! `note_text/rtf_word_japanese`: an RTF note into text (before the guard scans it).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use medtrain::data::{self, guard, ReadOptions};

fn scan(c: &mut Criterion) {
    let dir = std::env::temp_dir().join("medtrain-bench-guard");
    if !dir.join("DocumentReference.ndjson").is_file() {
        data::demo::write(&dir, 2000, 1).unwrap();
    }
    let (d, _) = data::read(&dir, &ReadOptions { identifiers: guard::Policy::Redact, ..Default::default() }).unwrap();
    let notes = d.texts;
    let bytes: usize = notes.iter().map(String::len).sum();
    let mut group = c.benchmark_group("guard");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("demo_notes", |b| b.iter(|| notes.iter().map(|n| guard::scan(n).len()).sum::<usize>()));
    let hostile = "090-1234-5678 ".repeat(300_000);
    group.throughput(Throughput::Bytes(hostile.len() as u64));
    group.bench_function("300k_phones_one_note", |b| b.iter(|| guard::scan(&hostile).len()));
    // numbers that identify no one (lab values, doses, dates), each looked back at for a cue
    let labs = "Na 140, K 4.1, Cl 102, BUN 18, Cr 1.12 on 2024-01-05; plan: 5 mg x2. ".repeat(20_000);
    group.throughput(Throughput::Bytes(labs.len() as u64));
    group.bench_function("lab_values_one_note", |b| b.iter(|| guard::scan(&labs).len()));
    group.finish();
}

/// A note in RTF as Japanese Word writes it (a Shift_JIS font's `\'hh` pairs with `\u` copies, a font
/// table, lists, a table) into text: bytes of RTF per second through `fhir::rtf_to_text`.
fn rtf(c: &mut Criterion) {
    let head = r"{\rtf1\ansi\ansicpg932\deff0{\fonttbl{\f0\froman Century;}{\f1\fcharset128 MS Mincho;}{\f3\fcharset2 Symbol;}}
{\colortbl;\red0\green0\blue0;}{\info{\author x}}";
    let body = r"\pard\plain\f1\fs21 {\listtext\f3 \'b7\tab}\loch\f0\hich\af0\dbch\af1 \'8c\'8c\'88\'b3 128/76 mmHg\par
\uc1\u20307\'91\'cc\u28201\'89\'b7 38.5\u8451\'81\'8e, CRP 2.3 mg/dL\tab HbA1c {\b 7.1}%\par
\trowd\cellx2000\cellx4000 Na\cell 140\cell\row
";
    let doc = format!("{head}{}}}", body.repeat(20_000));
    let mut group = c.benchmark_group("note_text");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.bench_function("rtf_word_japanese", |b| b.iter(|| data::fhir::rtf_to_text(doc.as_bytes()).unwrap().len()));
    group.finish();
}

criterion_group!(benches, scan, rtf);
criterion_main!(benches);
