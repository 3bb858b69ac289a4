//! Fuzzing on stable Rust, as part of `cargo test`: every parser of outside input gets a target with a
//! seed corpus in the repository (`tests/fuzz/corpus/<target>/`, the regression inputs of issue 8
//! among them) and a deterministic seeded mutation loop (bit flips, byte insertions and deletions,
//! splices between corpus entries, interesting bytes and UTF-8 sequences, long runs, duplicated
//! chunks, planted identifiers in quoted strings).
//!
//! Each input must: not panic (caught per input), finish within `HANG` (run in a worker thread), and
//! never show a planted identifier (fake phone numbers, e-mail, names) in an error message or a
//! report. A failing input is written under `target/tmp/fuzz-crashes/` and the test fails with its
//! path, never its content. (An abort, e.g. on a failed allocation, ends the process before that: the
//! file targets leave their last input in the scratch directory named in the log, `/tmp/.tmp*/`.)
//!
//! Budget: `MEDTRAIN_FUZZ_SECS` seconds of mutation per target (default 3; the corpus is always run
//! in full), seed `MEDTRAIN_FUZZ_SEED` (default 1). Run longer by hand:
//! `MEDTRAIN_FUZZ_SECS=600 MEDTRAIN_FUZZ_SEED=7 cargo test --release -p medtrain --test fuzz`.

use medtrain::data::{self, check::Report, fhir, prepare::DataConfig, Dataset, ReadOptions, Sink};
use medtrain::tensors::TensorFile;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fake identifiers planted in the seeds and by the mutator; none may reach an error or a report.
const PLANTED: &[&str] = &["090-1234-5678", "03-5555-0199", "taro.yamada@example.jp", "山田太郎", "Hanako Suzuki"];

/// The longest an input may take (debug build, two shared cores: generous, but a hang is minutes).
const HANG: Duration = Duration::from_secs(10);

/// Inputs are kept below this size so that one iteration stays cheap.
const MAX_LEN: usize = 1 << 16;

const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\xc3",
    b"\xe3\x81",
    "あ".as_bytes(),
    "日本語の所見".as_bytes(),
    "𝄞".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{3000}".as_bytes(),
    b"&amp;",
    b"&lt;",
    b"&gt;",
    b"&#x3042;",
    b"&#99999999;",
    b"&",
    b"<",
    b">",
    b"</p>",
    b"<br/>",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"|",
    b"//",
    b"=",
    b"'",
    b"-1",
    b"0",
    b"1e309",
    b"-1e309",
    b"18446744073709551615",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"NaN",
    b"null",
    b"true",
    b"[[",
    b"\"\"\"",
    b"2024-02-29T24:00:00Z",
    b"9999-12-31T23:59:59+14:00",
    b"0000-01-01",
    b"Patient/",
    b"urn:uuid:",
    b"text/plain; charset=Shift_JIS",
    b"\\'82",
    b"\\u-",
    b"{\\*",
    b"\\bin",
    b"\\fcharset128",
    b"\\uc0",
];

/// splitmix64: small, seeded, the same sequence everywhere.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn token(&mut self) -> Vec<u8> {
        if self.below(4) == 0 {
            PLANTED[self.below(PLANTED.len())].as_bytes().to_vec()
        } else {
            INTERESTING[self.below(INTERESTING.len())].to_vec()
        }
    }

    fn mutate(&mut self, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            self.step(&mut v, corpus);
        }
        v.truncate(MAX_LEN);
        v
    }

    fn step(&mut self, v: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let len = v.len();
        let at = self.below(len + 1);
        match self.below(12) {
            0 if len > 0 => {
                let i = self.below(len);
                v[i] ^= 1 << self.below(8);
            }
            1 => v.insert(at, self.next() as u8),
            2 if len > 0 => {
                let from = self.below(len);
                let n = 1 + self.below(16);
                v.drain(from..(from + n).min(len));
            }
            3 => {
                // splice: this input's head, another entry's tail
                let other = &corpus[self.below(corpus.len())];
                let from = self.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            4 => {
                let t = self.token();
                v.splice(at..at, t);
            }
            5 if len > 0 => {
                let i = self.below(len);
                let t = self.token();
                v.splice(i..i + 1, t);
            }
            6 => {
                // a long run of one token
                let t = self.token();
                let times = 1 + self.below(2000);
                let run: Vec<u8> = t.iter().copied().cycle().take(t.len() * times).collect();
                v.splice(at..at, run);
            }
            7 if len > 0 => {
                let a = self.below(len);
                let b = (a + 1 + self.below(256)).min(len);
                let chunk = v[a..b].to_vec();
                v.splice(at..at, chunk);
            }
            8 => {
                // a quoted string's content becomes a planted identifier
                let quotes: Vec<usize> = v.iter().enumerate().filter(|(_, &b)| b == b'"').map(|(i, _)| i).collect();
                if quotes.len() >= 2 {
                    let q = self.below(quotes.len() - 1);
                    let p = PLANTED[self.below(PLANTED.len())].as_bytes().to_vec();
                    v.splice(quotes[q] + 1..quotes[q + 1], p);
                }
            }
            9 => v.truncate(at),
            10 => {
                let other = &corpus[self.below(corpus.len())];
                let a = self.below(other.len() + 1);
                let b = (a + self.below(512)).min(other.len());
                v.splice(at..at, other[a..b].iter().copied());
            }
            _ => {
                let t = PLANTED[self.below(PLANTED.len())].as_bytes().to_vec();
                v.splice(at..at, t);
            }
        }
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target)
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(corpus_dir(target)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    let corpus: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!corpus.is_empty(), "no seed corpus for {target}");
    corpus
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A panic hook that says where, never what: a payload may quote the input.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
            eprintln!("fuzz: a panic at {at} (payload not shown)");
        }))
    });
}

fn save(target: &str, why: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(input, &mut h);
    let path = dir.join(format!("{why}-{:016x}", std::hash::Hasher::finish(&h)));
    std::fs::write(&path, input).unwrap();
    path
}

/// What a target returns: the text a user would see (errors, reports), checked for planted identifiers.
type Shown = Vec<String>;

/// Runs the corpus, then mutations for the time budget; fails on a panic, a hang or a planted
/// identifier in what the target shows.
fn fuzz(target: &'static str, run: impl Fn(&Path, &[u8]) -> Shown + Send + 'static) {
    quiet_panics();
    let corpus = load_corpus(target);
    let budget = Duration::from_secs(env_or("MEDTRAIN_FUZZ_SECS", 3));
    let mut mutator = Mutator(env_or("MEDTRAIN_FUZZ_SEED", 1) ^ target.len() as u64);
    let (to_worker, inputs) = mpsc::channel::<Vec<u8>>();
    let (to_main, results) = mpsc::channel::<Result<Shown, ()>>();
    std::thread::spawn(move || {
        let scratch = tempfile::tempdir().unwrap();
        eprintln!("fuzz {target}: scratch directory {}", scratch.path().display());
        for input in inputs {
            let r = catch_unwind(AssertUnwindSafe(|| run(scratch.path(), &input))).map_err(|_| ());
            if to_main.send(r).is_err() {
                break;
            }
        }
    });
    // the failure is printed before the panic: the quiet hook does not print payloads
    let fail = |what: &str, why: &str, input: &[u8]| -> ! {
        let msg = format!("{target}: {what}: {}", save(target, why, input).display());
        eprintln!("{msg}");
        panic!("{msg}");
    };
    let check = |input: Vec<u8>| {
        to_worker.send(input.clone()).unwrap();
        match results.recv_timeout(HANG) {
            Err(_) => fail(&format!("an input took over {HANG:?}"), "hang", &input),
            Ok(Err(())) => fail("an input panicked", "panic", &input),
            Ok(Ok(shown)) => {
                if PLANTED.iter().any(|p| shown.iter().any(|s| s.contains(*p))) {
                    fail("a planted identifier was shown", "echo", &input);
                }
            }
        }
    };
    for seed in &corpus {
        check(seed.clone());
    }
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        let base = &corpus[mutator.below(corpus.len())];
        check(mutator.mutate(base, &corpus));
        runs += 1;
    }
    eprintln!("fuzz {target}: {} seeds, {runs} mutated inputs in {:.1} s", corpus.len(), start.elapsed().as_secs_f64());
}

fn report_texts(report: &Report) -> Shown {
    vec![report.render(), serde_json::to_string(report).unwrap()]
}

#[test]
fn fuzz_fhir_line() {
    fuzz("fhir_line", |_, input| {
        let mut shown = Vec::new();
        for policy in [data::guard::Policy::Reject, data::guard::Policy::Redact] {
            let opts = ReadOptions { vitals: true, identifiers: policy, ..Default::default() };
            let (mut data, mut report) = (Dataset::default(), Report::default());
            let mut sink = Sink { data: &mut data, report: &mut report, opts: &opts };
            for (i, line) in input.split(|&b| b == b'\n').enumerate() {
                fhir::read_line(&mut sink, "fuzz.ndjson", i as u64 + 1, line);
            }
            report.finish(&data, &opts);
            shown.extend(report_texts(&report));
        }
        shown
    });
}

#[test]
fn fuzz_xhtml_to_text() {
    // the text is the note itself (identifiers in it are the guard's to find), so only the
    // invariants are checked: no panic, no hang, and the text never grows
    fuzz("xhtml", |_, input| {
        let div = String::from_utf8_lossy(input);
        let text = fhir::xhtml_to_text(&div);
        assert!(text.len() <= div.len());
        vec![]
    });
}

#[test]
fn fuzz_rtf_to_text() {
    // as the XHTML one: the text is the note's, so only the invariants are checked (a byte of a
    // one-byte code page is at most 3 bytes of UTF-8)
    fuzz("rtf", |_, input| {
        if let Ok(text) = fhir::rtf_to_text(input) {
            assert!(text.len() <= 3 * input.len() && !text.contains('\0'));
        }
        vec![]
    });
}

#[test]
fn fuzz_csv_rows() {
    fuzz("csv", |dir, input| {
        let path = dir.join("input.csv");
        std::fs::write(&path, input).unwrap();
        // half the inputs' zone-less times in a zone with daylight saving time (its gaps and folds)
        let time_zone = (input.len() % 2 == 1).then(|| data::time::Zone::parse("Europe/Berlin").unwrap());
        let opts = ReadOptions { time_zone, ..Default::default() };
        let (mut data, mut report) = (Dataset::default(), Report::default());
        let mut sink = Sink { data: &mut data, report: &mut report, opts: &opts };
        let mut shown = vec![];
        if let Err(e) = data::csv::read_file(&path, &mut sink) {
            shown.push(e.to_string());
        }
        report.finish(&data, &opts);
        shown.extend(report_texts(&report));
        shown
    });
}

#[test]
fn fuzz_code_map() {
    // the local codes the seeds map, read through whatever map the input loads as
    const EVENTS: &str = "subject_id,time,code,value,unit\n1,2024-01-01,50912,1.1,mg/dL\n1,2024-01-01,220045,72,\n\
                          2,2024-01-02,CRE,88,umol/L\n2,2024-01-02,K,4.1,\n2,2024-01-02,LAB//50912//mg/dL,0.9,\n";
    fuzz("code_map", |dir, input| {
        let path = dir.join("map.csv");
        std::fs::write(&path, input).unwrap();
        let prefer = ReadOptions::default().code_systems;
        let map = match data::code_map::CodeMap::load(&path, &prefer, Default::default(), Default::default()) {
            Err(e) => return vec![e.to_string()],
            Ok(m) => std::sync::Arc::new(m),
        };
        let events = dir.join("events.csv");
        std::fs::write(&events, EVENTS).unwrap();
        let opts = ReadOptions { code_map: Some(map.clone()), ..Default::default() };
        let (mut data, mut report) = (Dataset::default(), Report::default());
        let mut sink = Sink { data: &mut data, report: &mut report, opts: &opts };
        let mut shown = vec![format!("{map:?}")];
        if let Err(e) = data::csv::read_file(&events, &mut sink) {
            shown.push(e.to_string());
        }
        report.code_map_findings(&map);
        report.finish(&data, &opts);
        shown.extend(report_texts(&report));
        shown
    });
}

#[test]
fn fuzz_meds_batch() {
    fuzz("meds", |dir, input| {
        let root = dir.join("meds");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("metadata")).unwrap();
        std::fs::write(root.join("data/0.parquet"), input).unwrap();
        match data::read(&root, &ReadOptions::default()) {
            Ok((_, report)) => report_texts(&report),
            Err(e) => vec![e.to_string()],
        }
    });
}

#[test]
fn fuzz_toml_data_config() {
    fuzz("toml", |dir, input| {
        let path = dir.join("config.toml");
        std::fs::write(&path, input).unwrap();
        match DataConfig::load(&path) {
            Err(e) => vec![e.to_string()],
            Ok(c) => {
                // the list the features are built from; "auto" needs the data, so the empty list stands in
                let channels = match c.features.channels.clone() {
                    Some(data::prepare::Channels::List(list)) => list,
                    _ => Vec::new(),
                };
                match data::features::LabSeriesSpec::new(&channels, c.features.buckets, c.features.lookback_hours) {
                    Err(e) => vec![e],
                    Ok(_) => vec![],
                }
            }
        }
    });
}

#[test]
fn fuzz_train_config() {
    use medtrain::model::footprint::Shape;
    use medtrain::train::config::TrainConfig;
    // a file's path is the user's own and named in errors about it ("no such file"): the values of
    // the keys that name files are taken out of what is checked for planted identifiers
    fn paths(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    match v {
                        toml::Value::String(s)
                            if ["path", "input", "file", "tokenizer", "code_map"].contains(&k.as_str()) =>
                        {
                            out.push(s.clone())
                        }
                        _ => paths(v, out),
                    }
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| paths(v, out)),
            _ => {}
        }
    }
    fuzz("train_config", |dir, input| {
        let path = dir.join("train.toml");
        std::fs::write(&path, input).unwrap();
        let mut named = vec![];
        if let Ok(t) = std::str::from_utf8(input).unwrap_or("").parse::<toml::Table>() {
            paths(&toml::Value::Table(t), &mut named);
        }
        // as a path shows them: components joined by one `/`, a trailing one dropped
        let shown_as: Vec<String> = named
            .iter()
            .map(|p| {
                std::path::Path::new(p)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .map(|p| p.replacen("//", "/", 1))
            .collect();
        named.extend(shown_as);
        named.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let shown = match TrainConfig::load(&path) {
            Err(e) => vec![e.to_string()],
            Ok((cfg, _)) => {
                let mut shown = vec![];
                // the data section as a run resolves it (a label file or tokenizer it names is absent here)
                if let Err(e) = cfg.data_config(&path) {
                    shown.push(e.to_string());
                }
                // the model against a shape as a data config gives it, and its footprint against a device
                let (series, text) = (Some((24, 39)), Some((2000, 128)));
                if let Err(e) = cfg.model.validate_shape(series, text, None) {
                    shown.push(e.to_string());
                }
                let fp = cfg.model.footprint(&Shape { series, text, pretrained: None });
                if let Err((key, msg)) = fp.check_fits(2, 4096, 80 << 30, "GPU") {
                    shown.push(format!("{key}: {msg}"));
                }
                shown
            }
        };
        shown
            .into_iter()
            .map(|s| named.iter().filter(|p| !p.is_empty()).fold(s, |s, p| s.replace(p.as_str(), "<path>")))
            .collect()
    });
}

#[test]
fn fuzz_safetensors_header() {
    fuzz("safetensors", |dir, input| {
        let path = dir.join("batch.safetensors");
        std::fs::write(&path, input).unwrap();
        match TensorFile::read(&path) {
            Err(e) => vec![e.to_string()],
            Ok(t) => {
                let mut shown = vec![];
                if let Err(e) = t.reject_unknown(&["x", "mask", "y", "groups"], "batch tensors") {
                    shown.push(e.to_string());
                }
                for r in [t.f32("x", &[2, 2]).err(), t.i64("groups", &[2]).err(), t.u8("mask", &[2]).err()] {
                    shown.extend(r.map(|e| e.to_string()));
                }
                shown
            }
        }
    });
}

/// Writes the MEDS seeds with the parquet crate's writer (run by hand: `--ignored`).
#[test]
#[ignore]
fn write_meds_seeds() {
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;
    let dir = corpus_dir("meds");
    std::fs::create_dir_all(&dir).unwrap();
    let write =
        |name: &str,
         schema: &str,
         columns: &dyn Fn(&mut parquet::file::writer::SerializedRowGroupWriter<'_, std::fs::File>)| {
            let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
            let file = std::fs::File::create(dir.join(name)).unwrap();
            let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
            let mut rg = w.next_row_group().unwrap();
            columns(&mut rg);
            rg.close().unwrap();
            w.close().unwrap();
        };
    fn col<T: parquet::data_type::DataType>(
        rg: &mut parquet::file::writer::SerializedRowGroupWriter<'_, std::fs::File>,
        values: &[T::T],
        def: Option<&[i16]>,
    ) {
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<T>().write_batch(values, def, None).unwrap();
        c.close().unwrap();
    }
    let t = |s: &str| data::time::utc(s).unwrap() * 1_000_000;
    write(
        "events.parquet",
        "message meds { required int64 subject_id; optional int64 time (TIMESTAMP(MICROS,false)); required binary code (STRING); optional float numeric_value; optional binary text_value (STRING); }",
        &|rg| {
            col::<Int64Type>(rg, &[1, 1, 1, 2, 2], None);
            col::<Int64Type>(rg, &[t("2024-01-01T08:00:00Z"), t("2024-01-02T09:00:00Z"), t("2024-01-03T09:00:00Z"), t("2024-01-04T09:00:00Z")], Some(&[0, 1, 1, 1, 1]));
            let codes = ["MEDS_BIRTH", "LAB//2160-0//mg/dL", "NOTE//progress", "LAB//090-1234-5678//03-5555-0199", "taro.yamada@example.jp"];
            col::<ByteArrayType>(rg, &codes.map(ByteArray::from), None);
            col::<FloatType>(rg, &[1.2, 4.0], Some(&[0, 1, 0, 1, 0]));
            col::<ByteArrayType>(rg, &[ByteArray::from("連絡先 090-1234-5678 山田太郎"), ByteArray::from("Hanako Suzuki")], Some(&[0, 0, 1, 0, 1]));
        },
    );
    write(
        "string_subjects.parquet",
        "message meds { required binary subject_id (STRING); required int64 time (TIMESTAMP(MILLIS,true)); required binary code (STRING); optional double numeric_value; }",
        &|rg| {
            col::<ByteArrayType>(rg, &[ByteArray::from("山田太郎"), ByteArray::from("p2")], None);
            col::<Int64Type>(rg, &[i64::MAX, i64::MIN], None);
            col::<ByteArrayType>(rg, &[ByteArray::from("LOINC/2160-0"), ByteArray::from("LAB//x//")], None);
            col::<DoubleType>(rg, &[f64::INFINITY, f64::NAN], Some(&[1, 1]));
        },
    );
}
