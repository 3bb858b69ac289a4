//! Sizes from configs and flags are checked against their ranges before anything is allocated, and
//! tokenizer training is bounded: each case is a real config file or a real command.

use medtrain::data::prepare::DataConfig;
use medtrain::data::text::{NoteTokenizer, TokenizerKind, MAX_RUN};
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medtrain"))
}

/// A data config of an ed_admission task with these `[features]` lines, written in `dir`.
fn data_config(dir: &Path, features: &str) -> std::path::PathBuf {
    let cfg = dir.join("data.toml");
    std::fs::write(&cfg, format!("input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[features]\n{features}\n"))
        .unwrap();
    cfg
}

fn load(dir: &Path, features: &str) -> Result<DataConfig, String> {
    DataConfig::load(&data_config(dir, features)).map_err(|e| e.to_string())
}

#[test]
fn sizes_in_a_data_config_that_aborted_on_allocation_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("buckets = 18446744073709551615", "features.buckets"),
        ("buckets = 1000000000", "features.buckets"),
        ("buckets = 0", "features.buckets"),
        ("note_tokens = 1000000000\ntrain_tokenizer = \"unigram\"", "features.note_tokens"),
        ("vocab_size = 100000000000\nnote_tokens = 8\ntrain_tokenizer = \"unigram\"", "features.vocab_size"),
        ("lookback_hours = 1e300", "features.lookback_hours"),
        ("lookback_hours = 1e-300", "features.lookback_hours"),
        ("max_tensor_bytes = 10", "features.max_tensor_bytes"),
        ("max_tokenizer_corpus_bytes = 0", "features.max_tokenizer_corpus_bytes"),
    ] {
        let e = load(dir.path(), text).unwrap_err();
        assert!(e.contains(key) && e.contains("must be in"), "{text}: {e}");
        // a number far from 1 in exponent form (1e-300 printed as 300 digits)
        assert!(e.len() < 200, "{text}: {e}");
    }
    // a lab_rise prediction moved after its measurement would see the values that decide its label
    let cfg = dir.path().join("rise.toml");
    let rise =
        "input = \"export\"\n[labels]\ntask = \"lab_rise\"\nlab = \"creatinine\"\nrise = 0.3\nhorizon_hours = 48\n";
    std::fs::write(&cfg, format!("{rise}offset_hours = 1\n")).unwrap();
    let e = DataConfig::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("labels.offset_hours") && e.contains("lab_rise"), "{e}");
    std::fs::write(&cfg, format!("{rise}offset_hours = -1\n")).unwrap();
    assert!(DataConfig::load(&cfg).is_ok());
    // so would a label file's moved after its prediction_time (found by a tester: a held-out AUROC of 1.0
    // from a value written after each positive's time)
    std::fs::write(
        dir.path().join("labels.csv"),
        "subject_id,prediction_time,boolean_value
1,2024-01-01T00:00:00Z,true
",
    )
    .unwrap();
    let file = "input = \"export\"\n[labels]\nfile = \"labels.csv\"\n";
    std::fs::write(&cfg, format!("{file}offset_hours = 2\n")).unwrap();
    let e = DataConfig::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("labels.offset_hours") && e.contains("label file"), "{e}");
    std::fs::write(&cfg, format!("{file}offset_hours = 0\n")).unwrap();
    assert!(DataConfig::load(&cfg).is_ok(), "{:?}", DataConfig::load(&cfg).err());
    // one test twice (by name and by its LOINC code) is refused at load, naming the entries
    let e = load(dir.path(), "channels = [\"creatinine\", \"crp\", \"2160-0\"]").unwrap_err();
    assert!(e.contains("features.channels: entries 1 and 3 are both the test creatinine"), "{e}");
    // a float where a count belongs is a type error naming the key
    let e = load(dir.path(), "buckets = 1e9").unwrap_err();
    assert!(e.contains("buckets"), "{e}");
    for (table, text, key) in [
        ("[read]", "max_line_bytes = 1", "read.max_line_bytes"),
        ("[read]", "max_gz_ratio = 0.5", "read.max_gz_ratio"),
        ("[read]", "max_note_bytes = 0", "read.max_note_bytes"),
        ("[split]", "tuning = 3.0", "split.tuning"),
    ] {
        let cfg = dir.path().join("data.toml");
        std::fs::write(&cfg, format!("input = \"export\"\n{table}\n{text}\n[labels]\ntask = \"ed_admission\"\n"))
            .unwrap();
        let e = DataConfig::load(&cfg).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
    assert!(load(dir.path(), "buckets = 24\nnote_tokens = 256\ntrain_tokenizer = \"unigram\"").is_ok());
}

#[test]
fn examples_times_buckets_times_channels_over_the_tensor_bound_is_refused_before_allocating() {
    let root = tempfile::tempdir().unwrap();
    medtrain::data::demo::write(&root.path().join("export"), 200, 4).unwrap();
    let cfg = root.path().join("data.toml");
    // 4096 buckets x 15 channels x 12 bytes is 737 KB per example: a few thousand examples pass 1 GB
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[features]\nbuckets = 4096\nmax_tensor_bytes = 1048576\n",
    )
    .unwrap();
    let out = root.path().join("out");
    let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("features.max_tensor_bytes") && err.contains("4096 buckets"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_train_split_without_notes_is_an_error_and_leaves_no_output_directory() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("export");
    std::fs::create_dir(&input).unwrap();
    // labs and encounters, no notes
    let mut lines = String::new();
    for s in 0..40 {
        lines.push_str(&format!(
            "{{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"EMER\"}},\"subject\":{{\"reference\":\"Patient/p{s}\"}},\"period\":{{\"start\":\"2024-01-0{}T10:00:00Z\",\"end\":\"2024-01-0{}T12:00:00Z\"}}}}\n",
            s % 9 + 1,
            s % 9 + 1
        ));
    }
    std::fs::write(input.join("Encounter.ndjson"), lines).unwrap();
    for kind in ["unigram", "byte_bpe"] {
        let cfg = root.path().join("data.toml");
        std::fs::write(
            &cfg,
            format!(
                "input = \"export\"\n[labels]\ntask = \"ed_admission\"\n[features]\nnote_tokens = 16\ntrain_tokenizer = \"{kind}\"\nvocab_size = 300\n"
            ),
        )
        .unwrap();
        let out = root.path().join("prepared");
        let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{kind}: {}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("no note text to train a tokenizer on"), "{kind}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{kind}: an output directory was left behind");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 2, "only the export and the config remain");
    }
    let blank = vec![String::new(), "   \n".into()];
    for kind in [TokenizerKind::Unigram, TokenizerKind::ByteBpe] {
        let e = NoteTokenizer::train(&blank, kind, 300).err().expect("no tokenizer from blank notes");
        assert!(e.to_string().contains("no note text"));
        let e = NoteTokenizer::train(&[], kind, 300).err().expect("no tokenizer from no notes");
        assert!(e.to_string().contains("no note text"));
    }
}

#[test]
fn training_on_a_megabyte_of_one_punctuation_character_is_bounded() {
    // one 1 MB run of '=' among ordinary notes: before the run cap, byte-level BPE ran for minutes and
    // Unigram took 2.3 GB on it
    let mut notes: Vec<String> = (0..200).map(|i| format!("patient {i} admitted with chest pain, stable")).collect();
    notes.push("=".repeat(1 << 20));
    notes.push("-".repeat(300_000) + " " + &"。".repeat(100_000));
    for kind in [TokenizerKind::ByteBpe, TokenizerKind::Unigram] {
        let tok = NoteTokenizer::train(&notes, kind, 400).unwrap();
        let longest = tok.tokenizer.get_vocab(true).keys().map(|p| p.chars().count()).max().unwrap();
        // Unigram pieces may carry the metaspace mark; byte-level pieces are one char per byte, and
        // the longest run piece here is 16 three-byte characters
        assert!(longest <= 3 * MAX_RUN + 1, "{kind:?}: a piece of {longest} chars");
        let ids = tok.tokenizer.encode("=".repeat(100), false).unwrap();
        assert!(ids.len() >= 100 / MAX_RUN, "{kind:?}: {} tokens", ids.len());
        let text = tok.tokenizer.decode(ids.get_ids(), true).unwrap();
        assert_eq!(text.trim(), "=".repeat(100), "{kind:?}: the cut runs decode back");
    }
}

#[test]
fn the_tokenizer_corpus_is_capped() {
    // the same notes capped at 1 KB train a smaller vocabulary than uncapped
    let notes: Vec<String> = (0..2000).map(|i| format!("note {i}: creatinine {} mg/dL, word{i}", i % 7)).collect();
    let small = NoteTokenizer::train_within(&notes, TokenizerKind::ByteBpe, 2000, 1024).unwrap();
    let full = NoteTokenizer::train_within(&notes, TokenizerKind::ByteBpe, 2000, 1 << 20).unwrap();
    assert!(small.vocab_size() < full.vocab_size(), "{} vs {}", small.vocab_size(), full.vocab_size());
    assert!(!small.tokenizer.get_vocab(true).keys().any(|p| p.contains("word1999")));
}

#[test]
fn size_flags_of_the_commands_are_bounded_naming_the_flag() {
    for (args, flag) in [
        (&["bench", "--batch", "1000000000", "--workload", "lab-mlp"][..], "--batch"),
        (&["bench", "--steps", "1000000000000", "--workload", "lab-mlp"][..], "--steps"),
        (&["demo", "--subjects", "100000000000"][..], "--subjects"),
        (&["train", "configs/demo.toml", "--threads", "100000"][..], "--threads"),
        (&["export", "run", "--out", "x", "--max-attack-auc", "2"][..], "--max-attack-auc"),
        (&["demo-data", "--subjects", "100000000000", "--out", "/nonexistent/x"][..], "--subjects"),
    ] {
        let o = bin().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(flag) && err.contains("must be in"), "{args:?}: {err}");
    }
}

#[test]
fn threads_100000_are_capped_at_the_cores_with_a_warning() {
    let o = bin()
        .args([
            "bench",
            "--workload",
            "lab-mlp",
            "--mode",
            "nodp",
            "--steps",
            "1",
            "--batch",
            "8",
            "--threads",
            "100000",
        ])
        .args(["--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: --threads 100000 capped at"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(o.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(v["threads"].as_u64().unwrap(), cores);
}

/// Found by a tester: keys that nothing reads were accepted without a word (a tokenizer's size without
/// notes, the DP tokenizer's noise without the DP tokenizer, the DP channel selection's noise with
/// channels listed): a user who set a release's noise would not learn that none ran. Said as a
/// warning (a refusal would stop an older run's resume, whose [data] table cannot change).
#[test]
fn keys_nothing_reads_are_said_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |features: &str| {
        let cfg = data_config(dir.path(), features);
        let o = bin().args(["data", "prepare", "--config"]).arg(&cfg).arg("--out").arg(dir.path().join("out")).output();
        String::from_utf8_lossy(&o.unwrap().stderr).into_owned()
    };
    for (text, key) in [
        ("vocab_size = 5000", "features.vocab_size"),
        ("train_tokenizer = \"unigram\"", "features.train_tokenizer"),
        ("min_piece_subjects = 50", "features.min_piece_subjects"),
        (
            "note_tokens = 16\ntrain_tokenizer = \"unigram\"\n[auto]\ntokenizer_noise_multiplier = 0.5",
            "auto.tokenizer_noise_multiplier",
        ),
        ("channels = [\"creatinine\"]\n[auto]\nselection_noise_multiplier = 2.0", "auto.selection_noise_multiplier"),
    ] {
        let e = check(text);
        assert!(e.contains("warning") && e.contains(key) && e.contains("has no effect"), "{text}: {e}");
    }
    // where they are read: nothing said
    for text in [
        "note_tokens = 16\ntrain_tokenizer = \"dp_unigram\"\n[auto]\ntokenizer_noise_multiplier = 0.5",
        "channels = \"auto\"\n[auto]\nselection_noise_multiplier = 2.0",
        "note_tokens = 16\ntrain_tokenizer = \"unigram\"\nvocab_size = 5000",
    ] {
        let e = check(text);
        assert!(!e.contains("has no effect"), "{text}: {e}");
    }
}

/// Found by an outside-in tester: `data prepare` of one input gave another tokenizer.json (and other
/// token ids) each run: the Unigram trainer orders pieces of equal score as its hash maps iterate, and
/// its parallel sums differ in their last bits. A trained tokenizer is the same every time.
#[test]
fn a_tokenizer_trained_twice_on_the_same_notes_is_the_same() {
    let notes: Vec<String> = (0..300)
        .map(|i| format!("主訴：胸痛。{}日前より発熱あり。patient {} stable, plan follow up。", i % 7, i % 13))
        .collect();
    for kind in [TokenizerKind::Unigram, TokenizerKind::ByteBpe] {
        let json = || NoteTokenizer::train(&notes, kind, 300).unwrap().tokenizer.to_string(false).unwrap();
        let first = json();
        for _ in 0..3 {
            let again = json();
            if again != first {
                let a: serde_json::Value = serde_json::from_str(&first).unwrap();
                let b: serde_json::Value = serde_json::from_str(&again).unwrap();
                let (va, vb) = (a["model"]["vocab"].as_array().cloned(), b["model"]["vocab"].as_array().cloned());
                let diff: Vec<_> = va
                    .unwrap_or_default()
                    .into_iter()
                    .zip(vb.unwrap_or_default())
                    .filter(|(x, y)| x != y)
                    .take(4)
                    .collect();
                panic!("{kind:?}: another tokenizer from the same notes: {diff:?} {}", a["model"] == b["model"]);
            }
        }
    }
}
