//! The Hugging Face directory loader against transformers: tiny BertForSequenceClassification
//! checkpoints saved by transformers (f32, bf16, sharded; benches/peer/make_hf_fixtures.py) and the
//! logits transformers computed from them; and the refusals, each naming the file and what is needed.

use kernels::{Backend, Cpu};
use medtrain::model::hf::{HfCheckpoint, HfError};
use medtrain::model::{Batch, Bert, Inputs, Model, Targets};
use medtrain::tensors::{HostTensor, OutData, TensorFile};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden.json")).unwrap()).unwrap()
}

/// A safetensors file's tensors as [`medtrain::tensors::write`] takes them (F32 as F32).
fn tensors_of(path: &Path) -> Vec<(String, Vec<usize>, OutData)> {
    TensorFile::read(path)
        .unwrap()
        .tensors
        .iter()
        .map(|(n, l)| match &l.data {
            HostTensor::F32(v) => (n.clone(), l.shape.clone(), OutData::F32(v.clone())),
            HostTensor::I64(v) => (n.clone(), l.shape.clone(), OutData::I64(v.clone())),
            HostTensor::U8(_) => panic!("{n}: a U8 tensor in the fixture"),
        })
        .collect()
}

/// `dir`'s model.safetensors rewritten by `change` (the tensors as F32, or as changed).
fn rewrite(dir: &Path, change: impl FnOnce(&mut Vec<(String, Vec<usize>, OutData)>)) {
    let mut t = tensors_of(&dir.join("model.safetensors"));
    change(&mut t);
    medtrain::tensors::write(&dir.join("model.safetensors"), &t, None).unwrap();
}

#[test]
fn ambiguous_and_integer_parameters_are_refused_not_guessed() {
    let tmp = tempfile::tempdir().unwrap();
    let be = Cpu::new(1).unwrap();
    let load = |d: &Path| {
        let ck = HfCheckpoint::read(d).unwrap();
        let mut model = Bert::new(&be, &ck.config, 0).unwrap();
        ck.load_into(&be, &mut model).map(|_| ()).unwrap_err().to_string()
    };
    // a parameter under both its prefixed and its bare name: which one is meant is not known
    let d = tmp.path().join("both");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    rewrite(&d, |t| {
        let (_, sh, data) = t.iter().find(|(n, _, _)| n == "bert.pooler.dense.bias").unwrap();
        let OutData::F32(v) = data else { panic!("F32") };
        let bare = ("pooler.dense.bias".to_string(), sh.clone(), OutData::F32(v.clone()));
        t.push(bare);
    });
    let e = load(&d);
    assert!(e.contains("both 'bert.pooler.dense.bias' and 'pooler.dense.bias'"), "{e}");
    // a parameter stored as integers: named, not silently initialized afresh
    let d = tmp.path().join("int");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    rewrite(&d, |t| {
        let i = t.iter().position(|(n, _, _)| n == "classifier.bias").unwrap();
        let sh = t[i].1.clone();
        t[i].2 = OutData::I64(vec![1; sh.iter().product()]);
    });
    let e = load(&d);
    assert!(e.contains("classifier.bias") && e.contains("not floating point"), "{e}");
    // a config.json of fewer layers than the weights hold: refused, not read as a truncated model
    let d = tmp.path().join("fewer");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    let layers: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let n = layers["num_hidden_layers"].as_u64().unwrap();
    assert!(n >= 2);
    let cfg = cfg.replace(&format!("\"num_hidden_layers\": {n}"), &format!("\"num_hidden_layers\": {}", n - 1));
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers") && e.contains(&format!("layer.{}.", n - 1)), "{e}");
}

fn logits_of(dir: &Path) -> Vec<f32> {
    let be = Cpu::new(2).unwrap();
    let ck = HfCheckpoint::read(dir).unwrap();
    let mut model = Bert::new(&be, &ck.config, 0).unwrap();
    let fresh = ck.load_into(&be, &mut model).unwrap();
    assert!(fresh.is_empty(), "{fresh:?}");
    let g = golden();
    let rows: Vec<Vec<u32>> = g["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect())
        .collect();
    let mask: Vec<f32> = g["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (b, t) = (rows.len(), rows[0].len());
    let batch = Batch {
        examples: b,
        steps: t,
        inputs: Inputs::Tokens { ids: be.upload_ids(&rows.concat()).unwrap() },
        mask: be.upload(&mask).unwrap(),
        targets: Targets::Classes(be.upload_ids(&vec![0; b]).unwrap()),
    };
    model.forward(&be, &batch).unwrap();
    be.download(model.logits()).unwrap()
}

#[test]
fn tiny_bert_checkpoints_give_the_logits_of_transformers() {
    let g = golden();
    for dir in ["tiny-bert", "tiny-bert-bf16", "tiny-bert-sharded", "tiny-roberta"] {
        let want: Vec<f64> = g["dirs"][dir]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = logits_of(&fixtures().join(dir));
        assert_eq!(got.len(), want.len(), "{dir}");
        for (i, (&a, &w)) in got.iter().zip(&want).enumerate() {
            assert!((a as f64 - w).abs() < 1e-5 + 1e-4 * w.abs(), "{dir}: logit {i}: {a} vs transformers {w}");
        }
    }
}

#[test]
fn the_checkpoint_records_every_file_it_read_with_its_sha256() {
    let ck = HfCheckpoint::read(&fixtures().join("tiny-bert-sharded")).unwrap();
    let names: Vec<String> =
        ck.digests.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors"
        ]
    );
    assert!(ck.digests.iter().all(|(_, h)| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn unreadable_directories_are_refused_naming_the_file_and_what_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    // a pickle only
    let d = tmp.path().join("pickle");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(fixtures().join("tiny-bert/config.json"), d.join("config.json")).unwrap();
    std::fs::write(d.join("pytorch_model.bin"), b"not read").unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("pytorch_model.bin") && e.contains("safetensors"), "{e}");
    // another architecture
    let d = tmp.path().join("gpt2");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt2\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("gpt2") && e.contains("bert"), "{e}");
    // tensors that do not match the config: the tensor's name and both shapes
    let d = tmp.path().join("mismatch");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 24", "\"intermediate_size\": 25");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    // (the config's size against the weights' own, when the checkpoint is read)
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(
        e.contains("key intermediate_size: 25")
            && e.contains("encoder.layer.0.intermediate.dense.weight")
            && e.contains("[24, 16]"),
        "{e}"
    );
    let d = tmp.path().join("mismatch-tensor");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    rewrite(&d, |t| {
        let q = t.iter_mut().find(|(n, _, _)| n == "bert.encoder.layer.1.attention.self.query.weight").unwrap();
        q.1 = vec![32, 8];
    });
    let be = Cpu::new(1).unwrap();
    let ck = HfCheckpoint::read(&d).unwrap();
    let mut model = Bert::new(&be, &ck.config, 0).unwrap();
    let e = ck.load_into(&be, &mut model).unwrap_err();
    assert!(matches!(e, HfError::Shape { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("bert.encoder.layer.1.attention.self.query.weight")
            && e.contains("[16, 16]")
            && e.contains("[32, 8]"),
        "{e}"
    );
    // heads not dividing the width: the key and the numbers
    let d = tmp.path().join("heads");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("num_attention_heads") && e.contains("16") && e.contains('3'), "{e}");
    // a RoBERTa padding id past the positions (they start after it): the key, not a shape error later
    let d = tmp.path().join("pad");
    copy_dir(&fixtures().join("tiny-roberta"), &d);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    let mut cfg = cfg.as_object().unwrap().clone();
    cfg.insert("pad_token_id".into(), 600.into());
    std::fs::write(d.join("config.json"), serde_json::Value::Object(cfg).to_string()).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("pad_token_id") && e.contains("601"), "{e}");
    // no weights at all; no config
    let d = tmp.path().join("empty");
    std::fs::create_dir_all(&d).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::copy(fixtures().join("tiny-bert/config.json"), d.join("config.json")).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

fn embed_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_medtrain")).arg("embed").args(args).output().unwrap()
}

#[test]
fn embed_gives_the_ids_and_pooled_states_of_transformers() {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden_embed.json")).unwrap()).unwrap();
    for dir in ["tiny-bert", "tiny-bert-sharded"] {
        let model = fixtures().join(dir);
        for case in g["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for pooling in ["cls", "mean"] {
                let o =
                    embed_cli(&["--model", model.to_str().unwrap(), "--text", text, "--pooling", pooling, "--json"]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(v["input_ids"], case["input_ids"], "{dir} {text}");
                assert_eq!(v["pooling"], pooling);
                let got = v["embedding"].as_array().unwrap();
                let want = case[pooling].as_array().unwrap();
                assert_eq!(got.len(), want.len());
                for (a, w) in got.iter().zip(want) {
                    let (a, w) = (a.as_f64().unwrap(), w.as_f64().unwrap());
                    assert!((a - w).abs() < 1e-5 + 1e-4 * w.abs(), "{dir} {text} {pooling}: {a} vs {w}");
                }
            }
        }
    }
    // plain output, and bad arguments: exit 1 with the flag named
    let model = fixtures().join("tiny-bert");
    let o = embed_cli(&["--model", model.to_str().unwrap(), "--text", "no fever"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("input_ids: 2 13 14 3") && out.contains("pooling: cls"), "{out}");
    let o = embed_cli(&["--model", model.to_str().unwrap(), "--text", "x", "--pooling", "max"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pooling"));
    let long = "the ".repeat(40);
    let o = embed_cli(&["--model", model.to_str().unwrap(), "--text", &long]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--text: 42 tokens") && err.contains("reads 1 to 20") && !err.contains("the the"), "{err}");
    assert!(
        !err.contains("--model") && !err.contains("config.json"),
        "the text is too long, not the model wrong: {err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&model, tmp.path());
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let o = embed_cli(&["--model", tmp.path().to_str().unwrap(), "--text", "x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("tokenizer.json"));
}

/// A config.json that does not belong to its weights is refused from the weights' shapes before a model
/// of its size is built (`num_hidden_layers: 16777216` built 16 M layers first, and ran out of memory);
/// JSON files of gigabytes are not read; a tensor in two shards, or an index entry that is no file
/// name, is refused where one copy was taken without a word.
#[test]
fn configs_that_are_not_the_weights_and_ambiguous_shards_are_refused_before_a_model_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let with = |name: &str, key: &str, value: u64| {
        let d = tmp.path().join(name);
        copy_dir(&fixtures().join("tiny-bert"), &d);
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
        cfg[key] = value.into();
        std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
        d
    };
    for (key, value, want) in [
        ("num_hidden_layers", 1 << 24, "16777216 layers, but the weights hold 2"),
        ("hidden_size", 1 << 24, "embeddings.word_embeddings.weight"),
        ("vocab_size", 7, "embeddings.word_embeddings.weight"),
        ("max_position_embeddings", 21, "embeddings.position_embeddings.weight"),
    ] {
        let d = with(key, key, value);
        let started = std::time::Instant::now();
        let e = HfCheckpoint::read(&d).unwrap_err();
        assert!(matches!(e, HfError::Config { .. }), "{key}: {e}");
        let e = e.to_string();
        assert!(e.contains("config.json") && e.contains(&format!("key {key}")) && e.contains(want), "{e}");
        assert!(e.contains("does not belong to these weights"), "{e}");
        assert!(started.elapsed().as_secs() < 30);
        // embed says the same, not an out-of-memory error naming nothing
        let out = embed_cli(&["--model", d.to_str().unwrap(), "--text", "chest pain"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&format!("key {key}")), "{err}");
    }
    // a config.json of more than 64 MiB (a sparse file: nothing is allocated for it)
    let d = tmp.path().join("huge-json");
    copy_dir(&fixtures().join("tiny-bert"), &d);
    std::fs::OpenOptions::new().write(true).open(d.join("config.json")).unwrap().set_len(65 << 20).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("more than the 67108864"), "{e}");
    // the index places a tensor in shard 1, shard 2 holds it too
    let d = tmp.path().join("dup");
    copy_dir(&fixtures().join("tiny-bert-sharded"), &d);
    let mut t2 = tensors_of(&d.join("model-00002-of-00002.safetensors"));
    let (_, sh, _) = tensors_of(&d.join("model-00001-of-00002.safetensors"))
        .into_iter()
        .find(|(n, _, _)| n == "bert.embeddings.LayerNorm.bias")
        .unwrap();
    t2.push(("bert.embeddings.LayerNorm.bias".into(), sh.clone(), OutData::F32(vec![0.0; sh.iter().product()])));
    medtrain::tensors::write(&d.join("model-00002-of-00002.safetensors"), &t2, None).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(
        e.contains("model-00002-of-00002.safetensors")
            && e.contains("'bert.embeddings.LayerNorm.bias'")
            && e.contains("places in model-00001-of-00002.safetensors"),
        "{e}"
    );
    // an index entry that is no file name
    let d = tmp.path().join("entry");
    copy_dir(&fixtures().join("tiny-bert-sharded"), &d);
    let index = d.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    v["weight_map"]["bert.pooler.dense.bias"] = 2.into();
    std::fs::write(&index, v.to_string()).unwrap();
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("weight_map") && e.contains("'bert.pooler.dense.bias'") && e.contains("not a shard"), "{e}");
}

/// Found in the list of what was left: Python's `json.dumps` writes a float that is not finite as a bare
/// `NaN` or `Infinity`, which no JSON parser reads, and `save_pretrained` writes its files so: a key
/// medtrain does not read holding one stopped the checkpoint; a key it reads holding one is an error
/// naming the key, never the default in its place.
#[test]
fn python_nan_and_infinity_in_a_config_are_read_where_unused_and_refused_where_used() {
    let tmp = tempfile::tempdir().unwrap();
    let with = |name: &str, from: &str, to: &str| {
        let d = tmp.path().join(name);
        copy_dir(&fixtures().join("tiny-bert"), &d);
        let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
        assert!(cfg.contains(from), "{from}");
        std::fs::write(d.join("config.json"), cfg.replacen(from, to, 1)).unwrap();
        d
    };
    let d = with("unused", "{", "{\n  \"some_threshold\": Infinity,\n  \"other\": [NaN, -Infinity],");
    let ck = HfCheckpoint::read(&d).unwrap();
    assert_eq!(ck.config.hidden_size, 16);
    let d = with("used", "\"model_type\": \"bert\"", "\"model_type\": \"bert\", \"layer_norm_eps\": NaN");
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("layer_norm_eps"), "{e}");
    let d = with("size", "\"intermediate_size\": 24", "\"intermediate_size\": Infinity");
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("intermediate_size"), "{e}");
    // not JSON either way: the line and column of the strict parse
    let d = with("broken", "\"model_type\": \"bert\"", "\"model_type\": NaNo");
    let e = HfCheckpoint::read(&d).unwrap_err().to_string();
    assert!(e.contains("not valid JSON at line"), "{e}");
}
