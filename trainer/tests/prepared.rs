//! Prepared data through memory maps (`data::prepared`): the demo cohort prepared by the real binary
//! and read back batch by batch against the whole-file reader; corrupt and mis-shaped files; and a
//! 400 MB split that opens and gives batches without its data becoming resident.

mod common;

use medtrain::data::prepared::{Prepared, SplitData, Targets, RESIDENT_BUDGET};
use medtrain::model::{HostInputs, HostTargets};
use medtrain::tensors::{self, OutData, TensorFile};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The tests of this file run one at a time: one of them measures the process's resident memory.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SPLITS: [&str; 3] = ["train", "tuning", "held_out"];

/// The demo cohort (300 subjects) prepared with two channels, 6 buckets and 16 note tokens from a
/// tokenizer trained on the train split; returns the prepared directory.
fn prepare_demo(root: &Path) -> PathBuf {
    let st = medtrain::data::demo::write(&root.join("export"), 300, 8).unwrap();
    assert_eq!(st.subjects, 300);
    let cfg = root.join("data.toml");
    std::fs::write(
        &cfg,
        "input = \"export\"\n[labels]\ntask = \"ed_admission\"\noffset_hours = 1\n[split]\nkey = \"k\"\n\
         [features]\nchannels = [\"crp\", \"creatinine\"]\nbuckets = 6\nlookback_hours = 72\nnote_tokens = 16\ntrain_tokenizer = \"byte_bpe\"\nvocab_size = 300\n",
    )
    .unwrap();
    let out = root.join("prepared");
    let o = common::cli::prepare(&cfg, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The batch the whole-file reader's tensors give for `examples`: (x [B, T, 3K], series mask [B, T],
/// ids [B, L], token mask [B, L]).
fn reference(f: &TensorFile, n: usize, t: usize, k: usize, l: usize, examples: &[usize]) -> [Vec<f32>; 4] {
    let values = f.f32("lab_values", &[n, t, k]).unwrap();
    let mask = f.f32("lab_mask", &[n, t, k]).unwrap();
    let since = f.f32("lab_since_last", &[n, t, k]).unwrap();
    let ids = f.i64("note_ids", &[n, l]).unwrap();
    let len = f.i64("note_len", &[n]).unwrap();
    let (mut x, mut series, mut tok, mut tok_mask) = (vec![], vec![], vec![], vec![]);
    for &e in examples {
        for b in 0..t {
            let at = (e * t + b) * k..(e * t + b + 1) * k;
            x.extend_from_slice(&values[at.clone()]);
            x.extend_from_slice(&mask[at.clone()]);
            x.extend_from_slice(&since[at.clone()]);
            series.push(if mask[at].iter().any(|&m| m != 0.0) { 1.0 } else { 0.0 });
        }
        tok.extend(ids[e * l..(e + 1) * l].iter().map(|&i| i as f32));
        tok_mask.extend((0..l).map(|j| if (j as i64) < len[e] { 1.0 } else { 0.0 }));
    }
    [x, series, tok, tok_mask]
}

fn check_partition(split: &SplitData, subject: &[i64]) {
    let mut all: Vec<u32> = split.subjects().iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..split.len() as u32).collect::<Vec<_>>());
    for (g, examples) in split.subjects().iter().enumerate() {
        assert!(!examples.is_empty());
        assert!(examples.iter().all(|&e| subject[e as usize] == g as i64));
    }
}

#[test]
fn demo_batches_match_the_whole_file_reader() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let out = prepare_demo(root.path());
    let p = Prepared::open(&out).unwrap();
    let m = &p.manifest;
    assert_eq!(m.label_type.as_deref(), Some("boolean_value"));
    assert_eq!((m.buckets, m.channels.len(), m.note_tokens), (6, 2, 16));
    assert_eq!(m.tokenizer_exportable, Some(false));
    // the demo's subjects come from five sites, each with hundreds of examples
    // labelled site-1 .. site-5; the organization ids of the export only in sites.tsv (which stays in the
    // node), never in the manifest that runs, reports and releases are made from
    assert_eq!(m.sites, ["site-1", "site-2", "site-3", "site-4", "site-5"]);
    let table = std::fs::read_to_string(out.join("sites.tsv")).unwrap();
    assert_eq!(
        table,
        "site\torganization\nsite-1\tsite-01\nsite-2\tsite-02\nsite-3\tsite-03\nsite-4\tsite-04\nsite-5\tsite-05\n"
    );
    assert!(!std::fs::read_to_string(out.join("manifest.json")).unwrap().contains("site-0"));
    let mut seen_sites = std::collections::HashSet::new();
    for name in SPLITS {
        let split = p.split(name).unwrap();
        let f = TensorFile::read(&out.join(format!("{name}.safetensors"))).unwrap();
        let n = f.shape("y").unwrap()[0];
        assert!(n > 10, "{name}: {n} examples");
        assert_eq!((split.len(), split.buckets(), split.channels(), split.note_tokens()), (n, 6, 2, 16));
        assert!(!split.is_empty());
        let y = f.f32("y", &[n]).unwrap();
        let site = f.i64("site", &[n]).unwrap();
        for i in 0..n {
            assert_eq!(split.label(i), y[i]);
            assert_eq!(split.site(i), u32::try_from(site[i]).ok());
            seen_sites.extend(split.site(i));
        }
        check_partition(&split, f.i64("subject", &[n]).unwrap());
        // in order, repeated and out of order, everything backwards
        let lists: [Vec<usize>; 4] = [vec![0, 1, 2], vec![n - 1, 0, n - 1, 2, 2], vec![5], (0..n).rev().collect()];
        for examples in &lists {
            let [x, series, ids, token_mask] = reference(&f, n, 6, 2, 16, examples);
            let want_y: Vec<f32> = examples.iter().map(|&e| y[e]).collect();
            let b = split.batch(examples, true, true, Targets::Binary).unwrap();
            assert_eq!((b.examples, b.steps), (examples.len(), 6));
            assert_eq!(b.mask, series);
            assert_eq!(b.targets, HostTargets::Binary(want_y.clone()));
            let HostInputs::Both { x: bx, features, ids: bids, tokens, token_mask: bmask } = &b.inputs else {
                panic!("lab and text give Both")
            };
            assert_eq!((*features, *tokens), (6, 16));
            assert_eq!(bx, &x);
            assert_eq!(bids.iter().map(|&i| i as f32).collect::<Vec<_>>(), ids);
            assert_eq!(bmask, &token_mask);

            let b = split.batch(examples, true, false, Targets::Real).unwrap();
            assert_eq!(b.steps, 6);
            assert_eq!(b.inputs, HostInputs::Dense { x: x.clone(), features: 6 });
            assert_eq!(b.mask, series);
            assert_eq!(b.targets, HostTargets::Real(want_y.clone()));

            let b = split.batch(examples, false, true, Targets::Classes(2)).unwrap();
            assert_eq!(b.steps, 16);
            assert_eq!(b.inputs, HostInputs::Tokens(bids.clone()));
            assert_eq!(b.mask, token_mask);
            assert_eq!(b.targets, HostTargets::Classes(want_y.iter().map(|&v| v as u32).collect()));
        }
        // a positive label is not a class below 1
        let positive = (0..n).find(|&i| y[i] == 1.0).expect("the demo task has positives in every split");
        let e = split.batch(&[0, positive], true, false, Targets::Classes(1)).unwrap_err().to_string();
        assert!(e.contains(&format!("{name}.safetensors")) && e.contains("'y'") && e.contains("below 1"), "{e}");
        let e = split.batch(&[n], true, true, Targets::Binary).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        assert!(split.batch(&[0], false, false, Targets::Binary).is_err());
    }
    assert_eq!(seen_sites.len(), 5);
    let e = p.split("test").unwrap_err().to_string();
    assert!(e.contains("train, tuning or held_out"), "{e}");
}

/// A small split written by hand: `n` examples of `t` buckets and `k` channels (values that encode
/// their position), subjects of three examples each, sites cycling through -1 and two sites, labels
/// `y`, and notes of `l` tokens when `l > 0`. Returns its tensors for changing before writing.
fn synthetic(n: usize, t: usize, k: usize, l: usize, y: Vec<f32>) -> Vec<(String, Vec<usize>, OutData)> {
    let cells = |f: &dyn Fn(usize, usize, usize) -> f32| {
        let mut v = Vec::with_capacity(n * t * k);
        for e in 0..n {
            for b in 0..t {
                for c in 0..k {
                    v.push(f(e, b, c));
                }
            }
        }
        v
    };
    let mut out = vec![
        ("lab_values".into(), vec![n, t, k], OutData::F32(cells(&|e, b, c| (e * 1000 + b * 10 + c) as f32))),
        ("lab_mask".into(), vec![n, t, k], OutData::F32(cells(&|e, b, c| ((e + b + c) % 3 == 0) as u8 as f32))),
        ("lab_since_last".into(), vec![n, t, k], OutData::F32(cells(&|e, b, _| e as f32 + b as f32 * 0.5))),
        ("y".into(), vec![n], OutData::F32(y)),
        ("subject".into(), vec![n], OutData::I64((0..n as i64).map(|i| i / 3).collect())),
        ("site".into(), vec![n], OutData::I64((0..n as i64).map(|i| i % 3 - 1).collect())),
    ];
    if l > 0 {
        out.push(("note_ids".into(), vec![n, l], OutData::I64((0..(n * l) as i64).collect())));
        // lengths below 0 and above L are clamped
        out.push(("note_len".into(), vec![n], OutData::I64((0..n as i64).map(|i| i % (l as i64 + 3) - 1).collect())));
    }
    out
}

fn write_manifest(dir: &Path, t: usize, k: usize, l: usize, label_type: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let m = serde_json::json!({
        "fingerprint": "synthetic",
        "subjects": 0,
        "examples": {},
        "channels": (0..k).map(|c| format!("c{c}")).collect::<Vec<_>>(),
        "buckets": t,
        "lookback_hours": 24.0,
        "note_tokens": l,
        "tokenizer_exportable": null,
        "categories": [],
        "label_type": label_type,
        "sites": ["a", "b"],
        "an_unknown_key": [1, 2, 3]
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
}

fn write_split(dir: &Path, name: &str, t: Vec<(String, Vec<usize>, OutData)>) {
    tensors::write(&dir.join(format!("{name}.safetensors")), &t, None).unwrap();
}

#[test]
fn batches_decode_every_cell_and_clamp_note_lengths() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (n, t, k, l) = (12, 3, 2, 4);
    write_manifest(dir.path(), t, k, l, "float_value");
    let y: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    write_split(dir.path(), "train", synthetic(n, t, k, l, y.clone()));
    let split = Prepared::open(dir.path()).unwrap().split("train").unwrap();
    assert_eq!(split.subjects().len(), 4);
    assert_eq!(split.subjects()[1], [3, 4, 5]);
    assert_eq!((split.site(0), split.site(1), split.site(2)), (None, Some(0), Some(1)));
    let examples = [7, 0, 7, 11];
    let b = split.batch(&examples, true, true, Targets::Real).unwrap();
    let HostInputs::Both { x, features, ids, tokens, token_mask } = &b.inputs else { panic!("Both") };
    assert_eq!((*features, *tokens), (3 * k, l));
    for (r, &e) in examples.iter().enumerate() {
        for bucket in 0..t {
            let mut observed = false;
            for c in 0..k {
                let at = (r * t + bucket) * 3 * k;
                let m = ((e + bucket + c) % 3 == 0) as u8 as f32;
                observed |= m == 1.0;
                assert_eq!(x[at + c], (e * 1000 + bucket * 10 + c) as f32);
                assert_eq!(x[at + k + c], m);
                assert_eq!(x[at + 2 * k + c], e as f32 + bucket as f32 * 0.5);
            }
            assert_eq!(b.mask[r * t + bucket], observed as u8 as f32);
        }
        let len = (e as i64 % (l as i64 + 3) - 1).clamp(0, l as i64) as usize;
        for j in 0..l {
            assert_eq!(ids[r * l + j], (e * l + j) as u32);
            assert_eq!(token_mask[r * l + j], (j < len) as u8 as f32);
        }
    }
    assert_eq!(b.targets, HostTargets::Real(examples.iter().map(|&e| y[e]).collect()));
    // labels 0.25, 0.5: neither binary nor a class
    let e = split.batch(&[0, 1], true, false, Targets::Binary).unwrap_err().to_string();
    assert!(e.contains("train.safetensors") && e.contains("'y'") && e.contains("not 0 or 1"), "{e}");
    assert!(!e.contains("0.25"), "{e}");
    let e = split.batch(&[4, 1], true, false, Targets::Classes(5)).unwrap_err().to_string();
    assert!(e.contains("'y'") && e.contains("class"), "{e}");
    // 0, 1 (y 0.0 and 0.25 * 4 = 1.0) are classes below 2
    let b = split.batch(&[0, 4], true, false, Targets::Classes(2)).unwrap();
    assert_eq!(b.targets, HostTargets::Classes(vec![0, 1]));
    // a label that is not finite is no regression target
    let mut bad_y = y.clone();
    bad_y[2] = f32::NAN;
    write_split(dir.path(), "tuning", synthetic(n, t, k, l, bad_y));
    let tuning = Prepared::open(dir.path()).unwrap().split("tuning").unwrap();
    assert!(tuning.batch(&[1], true, false, Targets::Real).is_ok());
    let e = tuning.batch(&[1, 2], true, false, Targets::Real).unwrap_err().to_string();
    assert!(e.contains("tuning.safetensors") && e.contains("finite"), "{e}");
    // a note id past u32
    let mut tensors = synthetic(n, t, k, l, y.clone());
    tensors[6].2 = OutData::I64((0..(n * l) as i64).map(|i| if i == 5 { 1 << 33 } else { i }).collect());
    write_split(dir.path(), "held_out", tensors);
    let held_out = Prepared::open(dir.path()).unwrap().split("held_out").unwrap();
    assert!(held_out.batch(&[0, 2], false, true, Targets::Real).is_ok());
    let e = held_out.batch(&[1], false, true, Targets::Real).unwrap_err().to_string();
    assert!(e.contains("held_out.safetensors") && e.contains("'note_ids'"), "{e}");
    assert!(!e.contains(&(1u64 << 33).to_string()), "{e}");
}

#[test]
fn notes_are_refused_when_the_split_has_none() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 2, 2, 0, "boolean_value");
    write_split(dir.path(), "train", synthetic(6, 2, 2, 0, vec![0.0; 6]));
    let split = Prepared::open(dir.path()).unwrap().split("train").unwrap();
    assert_eq!(split.note_tokens(), 0);
    let e = split.batch(&[0], true, true, Targets::Binary).unwrap_err().to_string();
    assert!(e.contains("note_ids"), "{e}");
    assert!(split.batch(&[0], true, false, Targets::Binary).is_ok());
}

/// The error of opening `train` after `change` rewrote its tensors.
fn open_error(dir: &Path, change: impl FnOnce(&mut Vec<(String, Vec<usize>, OutData)>)) -> String {
    let mut t = synthetic(6, 2, 3, 4, vec![0.0; 6]);
    change(&mut t);
    write_split(dir, "train", t);
    Prepared::open(dir).unwrap().split("train").unwrap_err().to_string()
}

#[test]
fn wrong_shapes_dtypes_and_ids_name_the_file_and_tensor() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 2, 3, 4, "boolean_value");
    let e = open_error(dir.path(), |t| {
        t[1] = ("lab_mask".into(), vec![6, 2, 4], OutData::F32(vec![0.0; 48]));
    });
    assert!(
        e.contains("train.safetensors")
            && e.contains("'lab_mask'")
            && e.contains("[6, 2, 4]")
            && e.contains("[6, 2, 3]"),
        "{e}"
    );
    let e = open_error(dir.path(), |t| {
        t[4] = ("subject".into(), vec![6], OutData::F32(vec![0.0; 6]));
    });
    assert!(e.contains("'subject'") && e.contains("F32") && e.contains("I64"), "{e}");
    let e = open_error(dir.path(), |t| {
        t.remove(3);
    });
    assert!(e.contains("train.safetensors") && e.contains("'y'"), "{e}");
    let e = open_error(dir.path(), |t| {
        t[6] = ("note_ids".into(), vec![6, 5], OutData::I64(vec![0; 30]));
    });
    assert!(e.contains("'note_ids'") && e.contains("[6, 5]"), "{e}");
    let e = open_error(dir.path(), |t| {
        t.truncate(6);
    });
    assert!(e.contains("'note_ids'"), "{e}");
    // group ids that skip a subject, or a site past the manifest's list
    let e = open_error(dir.path(), |t| {
        t[4].2 = OutData::I64(vec![0, 0, 2, 2, 1, 1]);
    });
    assert!(e.contains("'subject'"), "{e}");
    let e = open_error(dir.path(), |t| {
        t[5].2 = OutData::I64(vec![0, 1, 2, -1, 0, 1]);
    });
    assert!(e.contains("'site'") && e.contains("2 sites"), "{e}");
    // the manifest's count of examples is checked when it has one
    let m = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    std::fs::write(dir.path().join("manifest.json"), m.replace("\"examples\":{}", "\"examples\":{\"train\":7}"))
        .unwrap();
    let e = open_error(dir.path(), |_| {});
    assert!(e.contains("'y'") && e.contains("[6]") && e.contains("[7]"), "{e}");
    // a manifest without a key training needs
    std::fs::write(dir.path().join("manifest.json"), "{\"fingerprint\": \"x\"}").unwrap();
    let e = Prepared::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("manifest.json") && e.contains("channels"), "{e}");
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 2, 3, 4, "boolean_value");
    write_split(dir.path(), "train", synthetic(6, 2, 3, 4, vec![0.0; 6]));
    let path = dir.path().join("train.safetensors");
    let whole = std::fs::read(&path).unwrap();
    let p = Prepared::open(dir.path()).unwrap();
    assert!(p.split("train").is_ok());
    // cut anywhere: in the length, the header, the data
    for cut in [0, 4, 8, 20, whole.len() / 2, whole.len() - 1] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let e = p.split("train").unwrap_err().to_string();
        assert!(e.contains("train.safetensors"), "cut at {cut}: {e}");
    }
    std::fs::write(&path, [&whole[..], b"extra"].concat()).unwrap();
    assert!(p.split("train").unwrap_err().to_string().contains("train.safetensors"));
    // every byte of the header length and JSON header changed, one at a time: an error or a file
    // that still opens (a changed digit of a shape the manifest then refuses, a changed name), never a
    // panic, and any batch it gives stays inside the file
    let header = 8 + u64::from_le_bytes(whole[..8].try_into().unwrap()) as usize;
    for i in 0..header {
        for byte in [b'9', b'"', 0xff] {
            let mut b = whole.clone();
            b[i] = byte;
            std::fs::write(&path, &b).unwrap();
            if let Ok(split) = p.split("train") {
                let all: Vec<usize> = (0..split.len()).collect();
                let _ = split.batch(&all, true, true, Targets::Real);
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
    assert!(p.split("train").unwrap_err().to_string().contains("train.safetensors"));
}

/// A line of `/proc/self/status` in bytes (`VmRSS`: resident now, `VmHWM`: the peak).
fn status_bytes(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

#[test]
fn a_400_mb_split_opens_and_batches_without_becoming_resident() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 3 x 24 x 16 f32 an example: 87,000 examples are 400 MB of lab tensors
    let (n, t, k) = (87_000, 24, 16);
    write_manifest(dir.path(), t, k, 0, "boolean_value");
    write_split(dir.path(), "train", synthetic(n, t, k, 0, (0..n).map(|i| (i % 2) as f32).collect()));
    let bytes = std::fs::metadata(dir.path().join("train.safetensors")).unwrap().len() as usize;
    assert!(bytes > 400_000_000, "{bytes}");
    let before = status_bytes("VmRSS:");
    let split = Prepared::open(dir.path()).unwrap().split("train").unwrap();
    let examples: Vec<usize> = (0..256).map(|i| i * 337 % n).collect();
    let b = split.batch(&examples, true, false, Targets::Binary).unwrap();
    let HostInputs::Dense { x, .. } = &b.inputs else { panic!("Dense") };
    assert_eq!(x[3 * k * t], (examples[1] * 1000) as f32);
    let grown = status_bytes("VmRSS:").saturating_sub(before);
    assert!(grown < 50 << 20, "open and one batch grew the resident set by {} MB", grown >> 20);
    // a whole pass in a scattered order, in batches of 4096 examples (each touching most of the
    // file's folios): the peak resident set is bounded by the budget, not the file or the batch.
    // Writing 5 to clear_refs resets the peak (VmHWM) to the resident set now.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let order: Vec<usize> = (0..n).map(|i| i * 7919 % n).collect();
    for chunk in order.chunks(4096) {
        let b = split.batch(chunk, true, false, Targets::Binary).unwrap();
        assert_eq!(b.examples, chunk.len());
    }
    let peak = status_bytes("VmHWM:").saturating_sub(before);
    // the batch's own buffers: x [4096, 24, 48] and the mask, about 19 MB
    assert!(
        peak < RESIDENT_BUDGET + (64 << 20),
        "a pass over {} MB raised the peak resident set by {} MB",
        bytes >> 20,
        peak >> 20
    );
}

#[test]
fn the_digest_covers_the_bytes_read_and_names_every_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (n, t, k, l) = (6, 2, 2, 3);
    write_manifest(dir.path(), t, k, l, "float_value");
    write_split(dir.path(), "train", synthetic(n, t, k, l, vec![0.5; n]));
    let prepared = Prepared::open(dir.path()).unwrap();
    let split = prepared.split("train").unwrap();
    let on_disk = medtrain::data::prepared::digest(dir.path()).unwrap();
    // the bytes the reader holds are the files' bytes: the same digest
    let read = [("manifest.json", &prepared.manifest_bytes[..]), ("train.safetensors", split.file_bytes())];
    assert_eq!(medtrain::data::prepared::digest_with(dir.path(), &read).unwrap(), on_disk);
    // a manifest changed on disk after it was read: the digest of what was read is still the old one,
    // the digest of the directory is not
    std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
    assert_eq!(medtrain::data::prepared::digest_with(dir.path(), &read).unwrap(), on_disk);
    assert_ne!(medtrain::data::prepared::digest(dir.path()).unwrap(), on_disk);
    // other bytes than the file's give another digest
    let other = [("manifest.json", &b"{\"fingerprint\": \"x\"}"[..])];
    assert_ne!(medtrain::data::prepared::digest_with(dir.path(), &other).unwrap(), on_disk);
}

#[test]
fn note_ids_outside_the_vocabulary_are_found_before_training() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (n, t, k, l) = (6, 2, 2, 3);
    write_manifest(dir.path(), t, k, l, "float_value");
    // ids 0..18
    write_split(dir.path(), "train", synthetic(n, t, k, l, vec![0.5; n]));
    let split = Prepared::open(dir.path()).unwrap().split("train").unwrap();
    split.check_note_ids(18).unwrap();
    let e = split.check_note_ids(16).unwrap_err().to_string();
    assert!(e.contains("train.safetensors") && e.contains("2 token id(s) outside") && e.contains("16"), "{e}");
    assert!(!e.contains("17"), "{e}");
}

#[test]
fn a_value_that_is_not_finite_or_a_mask_not_0_or_1_is_an_error_naming_the_tensor() {
    let _serial = serial();
    for (tensor, value, want) in [
        ("lab_values", f32::NAN, "tensor 'lab_values': a value that is not finite"),
        ("lab_since_last", f32::INFINITY, "tensor 'lab_since_last': a value that is not finite"),
        ("lab_mask", 2.0, "tensor 'lab_mask': a value that is not 0 or 1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (n, t, k, l) = (6, 2, 2, 0);
        write_manifest(dir.path(), t, k, l, "float_value");
        let mut tensors = synthetic(n, t, k, l, vec![0.5; n]);
        if let Some((_, _, OutData::F32(v))) = tensors.iter_mut().find(|(name, _, _)| name == tensor) {
            v[3] = value;
        }
        write_split(dir.path(), "train", tensors);
        let split = Prepared::open(dir.path()).unwrap().split("train").unwrap();
        let e = split.batch(&[0, 1], true, false, Targets::Real).err().expect("refused").to_string();
        assert!(e.contains(want) && e.contains("train.safetensors"), "{e}");
        // another batch without it reads
        split.batch(&[2, 3], true, false, Targets::Real).unwrap();
    }
}
