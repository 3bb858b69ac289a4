//! Hugging Face model directories: `config.json` and `model.safetensors` (f32, f16 or bf16; or shards
//! listed in `model.safetensors.index.json`), read into the BERT composition by tensor name. Weights are
//! public input (no privacy budget is spent on them); the files' SHA-256 digests are kept for the release
//! record. What cannot be read is refused naming the file and what would be needed.

use super::bert::{Bert, BertConfig, Family, Pooling};
use super::{Batch, Inputs, Model, Targets};
use crate::tensors::{HostTensor, TensorError, TensorFile};
use kernels::Backend;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: cannot read: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: {msg}")]
    Unsupported { path: PathBuf, msg: String },
    #[error("{path}: key {key}: {msg}")]
    Config { path: PathBuf, key: String, msg: String },
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error("{path}: tensor '{name}' has shape {got:?}, but config.json gives {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: lacks tensor '{name}' (shape {expected:?}), which this model needs")]
    Missing { path: PathBuf, name: String, expected: Vec<usize> },
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
    /// the text given to embed
    #[error("the text: {0}")]
    Text(String),
}

/// A Hugging Face checkpoint read into host memory.
#[derive(Debug)]
pub struct HfCheckpoint {
    pub dir: PathBuf,
    pub config: BertConfig,
    /// tensors by name, as f32, with the file each came from
    pub tensors: BTreeMap<String, (PathBuf, Vec<usize>, Vec<f32>)>,
    /// (file, SHA-256 hex) of config.json and every weight file read
    pub digests: Vec<(PathBuf, String)>,
    /// tensors that are not floating point (integer buffers such as `position_ids`), by name, with
    /// their file: a parameter found only here is an error, not a fresh initialization
    pub not_float: BTreeMap<String, PathBuf>,
}

/// The most a JSON file of a checkpoint (config.json, the shard index) may hold: such files are
/// kilobytes (a file of gigabytes there was read whole, and the process aborted when it could not be).
const MAX_JSON_BYTES: u64 = 64 << 20;

/// The file's bytes, of at most `max`, and their SHA-256.
fn sha256(path: &Path, max: u64) -> Result<(Vec<u8>, String), HfError> {
    let bytes = crate::read_bounded(path, max).map_err(|err| HfError::Io { path: path.to_path_buf(), err })?;
    let hex = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    Ok((bytes, hex))
}

/// A weight file's bytes and SHA-256, refused before it is read where it and its tensors as f32 (twice
/// its size from f16) would not fit the memory the host has available: the process aborted on a
/// failed allocation, naming nothing.
fn weight_file(path: &Path) -> Result<(Vec<u8>, String), HfError> {
    let len = std::fs::metadata(path).map_err(|err| HfError::Io { path: path.to_path_buf(), err })?.len();
    if let Some(available) = kernels::cpu::host_memory_available() {
        // the file and its tensors as f32, from its header's shapes (three times the file where the
        // header does not say: f16 read as f32)
        let need = len.saturating_add(f32_bytes(path).unwrap_or(len.saturating_mul(2)));
        if need > available {
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            return Err(HfError::Unsupported {
                path: path.to_path_buf(),
                msg: format!(
                    "{:.1} GiB of weights: read with their f32 copies they need {:.1} GiB, more than the {:.1} GiB of \
                     memory available",
                    gib(len),
                    gib(need),
                    gib(available)
                ),
            });
        }
    }
    sha256(path, u64::MAX)
}

/// The bytes a safetensors file's tensors take as f32, from its header alone (`None` where the header
/// does not read).
fn f32_bytes(path: &Path) -> Option<u64> {
    let header = crate::tensors::read_header(&mut std::fs::File::open(path).ok()?, 100 << 20).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let mut total = 0u64;
    for (name, t) in v.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let numel = t.get("shape")?.as_array()?.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.as_u64()?))?;
        total = total.checked_add(numel.checked_mul(4)?)?;
    }
    Some(total)
}

fn usize_key(path: &Path, v: &serde_json::Value, key: &str, default: Option<usize>) -> Result<usize, HfError> {
    match v.get(key) {
        None | Some(serde_json::Value::Null) => {
            default.ok_or_else(|| HfError::Config { path: path.to_path_buf(), key: key.into(), msg: "missing".into() })
        }
        Some(x) => x.as_u64().filter(|&n| n > 0 && n <= 1 << 24).map(|n| n as usize).ok_or_else(|| HfError::Config {
            path: path.to_path_buf(),
            key: key.into(),
            msg: "must be a positive integer of at most 2^24".into(),
        }),
    }
}

/// Reads the BERT configuration of `config.json` (Hugging Face's defaults where a key is absent).
pub fn read_config(path: &Path) -> Result<BertConfig, HfError> {
    let (bytes, _) = sha256(path, MAX_JSON_BYTES)?;
    let v: serde_json::Value = crate::json_from_python(&bytes).map_err(|e| HfError::Config {
        path: path.to_path_buf(),
        key: "(file)".into(),
        msg: format!("not valid JSON at line {}, column {}", e.line(), e.column()),
    })?;
    let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
    let family = match model_type {
        "bert" => Family::Bert,
        "roberta" | "xlm-roberta" => Family::Roberta,
        _ => Family::Bert,
    };
    if !matches!(model_type, "bert" | "roberta" | "xlm-roberta") {
        let shown: String =
            model_type.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
        return Err(HfError::Unsupported {
            path: path.to_path_buf(),
            msg: format!(
                "model_type '{shown}' is not supported; medtrain reads BERT-architecture models (model_type \"bert\", \"roberta\" or \"xlm-roberta\")"
            ),
        });
    }
    if let Some(act) = v.get("hidden_act").and_then(|a| a.as_str()) {
        if act != "gelu" {
            return Err(HfError::Config {
                path: path.to_path_buf(),
                key: "hidden_act".into(),
                msg: "only \"gelu\" (the exact erf form) is supported".into(),
            });
        }
    }
    let labels = match v.get("id2label").and_then(|m| m.as_object()) {
        Some(m) if !m.is_empty() => m.len(),
        _ => usize_key(path, &v, "num_labels", Some(2))?,
    };
    // only absolute positions are computed: a relative position scheme would give other embeddings
    match v.get("position_embedding_type") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(p)) if p == "absolute" => {}
        Some(_) => {
            return Err(HfError::Config {
                path: path.to_path_buf(),
                key: "position_embedding_type".into(),
                msg: "only \"absolute\" is supported (relative_key and relative_key_query are not)".into(),
            })
        }
    }
    // a value of another type is an error, not the default
    let eps = match v.get("layer_norm_eps") {
        None | Some(serde_json::Value::Null) => 1e-12,
        Some(e) => e.as_f64().unwrap_or(f64::NAN),
    };
    if !(eps > 0.0 && eps < 1.0) {
        return Err(HfError::Config {
            path: path.to_path_buf(),
            key: "layer_norm_eps".into(),
            msg: "must be a number in (0, 1)".into(),
        });
    }
    let position_offset = match family {
        Family::Bert => 0,
        // RoBERTa numbers positions from its padding id + 1
        Family::Roberta => match v.get("pad_token_id") {
            None | Some(serde_json::Value::Null) => 2,
            Some(p) => {
                p.as_u64().filter(|&p| p < 1 << 24).ok_or_else(|| HfError::Config {
                    path: path.to_path_buf(),
                    key: "pad_token_id".into(),
                    msg: "must be a non-negative integer below 2^24".into(),
                })? as usize
                    + 1
            }
        },
    };
    let cfg = BertConfig {
        family,
        position_offset,
        vocab_size: usize_key(path, &v, "vocab_size", Some(30522))?,
        hidden_size: usize_key(path, &v, "hidden_size", Some(768))?,
        num_hidden_layers: usize_key(path, &v, "num_hidden_layers", Some(12))?,
        num_attention_heads: usize_key(path, &v, "num_attention_heads", Some(12))?,
        intermediate_size: usize_key(path, &v, "intermediate_size", Some(3072))?,
        max_position_embeddings: usize_key(path, &v, "max_position_embeddings", Some(512))?,
        type_vocab_size: usize_key(path, &v, "type_vocab_size", Some(2))?,
        layer_norm_eps: eps as f32,
        num_labels: labels,
    };
    if cfg.position_offset >= cfg.max_position_embeddings {
        return Err(HfError::Config {
            path: path.to_path_buf(),
            key: "pad_token_id".into(),
            msg: format!(
                "RoBERTa numbers positions from pad_token_id + 1 = {}, which leaves none of the {} of \
                 max_position_embeddings",
                cfg.position_offset, cfg.max_position_embeddings
            ),
        });
    }
    if cfg.hidden_size % cfg.num_attention_heads != 0 {
        return Err(HfError::Config {
            path: path.to_path_buf(),
            key: "num_attention_heads".into(),
            msg: format!("hidden_size {} is not divisible by {} heads", cfg.hidden_size, cfg.num_attention_heads),
        });
    }
    Ok(cfg)
}

impl HfCheckpoint {
    /// Reads `dir/config.json` and its safetensors weights (one file or an index of shards).
    pub fn read(dir: &Path) -> Result<Self, HfError> {
        let config_path = dir.join("config.json");
        let config = read_config(&config_path)?;
        let mut digests = vec![(config_path.clone(), sha256(&config_path, MAX_JSON_BYTES)?.1)];
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        // whatever stands at the name is read (a FIFO or a directory there is an error saying so, where it
        // was reported missing)
        let present = |p: &Path| std::fs::symlink_metadata(p).is_ok();
        // the shard the index places each tensor in
        let mut shard_of: BTreeMap<String, String> = BTreeMap::new();
        let files: Vec<PathBuf> = if present(&single) {
            vec![single]
        } else if present(&index) {
            let (bytes, hex) = sha256(&index, MAX_JSON_BYTES)?;
            digests.push((index.clone(), hex));
            let v: serde_json::Value = crate::json_from_python(&bytes).map_err(|e| HfError::Config {
                path: index.clone(),
                key: "(file)".into(),
                msg: format!("not valid JSON at line {}, column {}", e.line(), e.column()),
            })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| HfError::Config {
                path: index.clone(),
                key: "weight_map".into(),
                msg: "missing or not an object".into(),
            })?;
            // (an entry that is no file name was dropped, and its tensor then reported missing)
            if let Some(name) = map.iter().find(|(_, f)| !f.is_string()).map(|(n, _)| n) {
                return Err(HfError::Config {
                    path: index.clone(),
                    key: "weight_map".into(),
                    msg: format!("the entry of tensor '{}' is not a shard's file name", crate::tensors::shown(name)),
                });
            }
            shard_of = map.iter().filter_map(|(n, f)| Some((n.clone(), f.as_str()?.to_owned()))).collect();
            let mut shards: Vec<String> = shard_of.values().cloned().collect();
            shards.sort();
            shards.dedup();
            let mut files = vec![];
            for s in shards {
                // a shard is a file name in the same directory, nothing else
                if s.contains('/') || s.contains('\\') || s.starts_with('.') || !s.ends_with(".safetensors") {
                    return Err(HfError::Config {
                        path: index.clone(),
                        key: "weight_map".into(),
                        msg: "a shard must be a .safetensors file name in the model directory".into(),
                    });
                }
                files.push(dir.join(s));
            }
            files
        } else if dir.join("pytorch_model.bin").exists() {
            return Err(HfError::Unsupported {
                path: dir.join("pytorch_model.bin"),
                msg: "a pickle, which medtrain does not read (it can run code); save the model as safetensors \
                      (transformers: save_pretrained(..., safe_serialization=True))"
                    .into(),
            });
        } else {
            return Err(HfError::Unsupported {
                path: dir.to_path_buf(),
                msg: "has no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        let mut tensors = BTreeMap::new();
        let mut not_float = BTreeMap::new();
        for f in files {
            // one read per file: hashed, then parsed from the same bytes
            let (bytes, hex) = weight_file(&f)?;
            digests.push((f.clone(), hex));
            let file = TensorFile::parse(&f, &bytes)?;
            let own = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for (name, t) in file.tensors {
                // a tensor a shard holds that the index places in another: which is the weight is not known
                // (the later shard's copy was taken without a word)
                if let Some(listed) = shard_of.get(&name).filter(|listed| **listed != own) {
                    return Err(HfError::Unsupported {
                        path: f.clone(),
                        msg: format!(
                            "holds tensor '{}', which model.safetensors.index.json places in {}: one tensor in two \
                             shards",
                            crate::tensors::shown(&name),
                            // a shard's name (`model-00001-of-00002.safetensors`), checked as one above
                            if listed.len() <= 128 && listed.bytes().all(|b| b.is_ascii_graphic()) {
                                listed.as_str()
                            } else {
                                "another shard"
                            }
                        ),
                    });
                }
                if let HostTensor::F32(v) = t.data {
                    tensors.insert(name, (f.clone(), t.shape, v));
                } else {
                    not_float.insert(name, f.clone());
                }
            }
        }
        let ck = HfCheckpoint { dir: dir.to_path_buf(), config, tensors, digests, not_float };
        ck.check_config()?;
        Ok(ck)
    }

    /// Loads the weights into the encoder config.json describes, on the host, and drops it: every tensor
    /// it needs present, of its shape, with finite values (what [`HfCheckpoint::load_into`] checks), before
    /// a run prepares its data.
    pub fn check_weights(&self) -> Result<(), HfError> {
        let host = kernels::Cpu::new(1)?;
        let mut encoder = Bert::encoder(&host, &self.config, Pooling::Cls, 0)?;
        self.load_into(&host, &mut encoder)?;
        Ok(())
    }

    /// config.json against the weights' own shapes, before a model is built from it: a config that
    /// does not belong to the weights (`num_hidden_layers: 16777216`) built a model of its size first.
    fn check_config(&self) -> Result<(), HfError> {
        let c = &self.config;
        let config_path = self.dir.join("config.json");
        let wrong = |key: &str, msg: String| HfError::Config { path: config_path.clone(), key: key.into(), msg };
        let tensor = |name: &str| {
            ["", "bert.", "roberta."].iter().find_map(|p| self.tensors.get(&format!("{p}{name}"))).map(|t| &t.1)
        };
        // each matrix's two sizes, by the key that gives each
        let matrices = [
            ("embeddings.word_embeddings.weight", ("vocab_size", c.vocab_size), ("hidden_size", c.hidden_size)),
            (
                "embeddings.position_embeddings.weight",
                ("max_position_embeddings", c.max_position_embeddings),
                ("hidden_size", c.hidden_size),
            ),
            (
                "embeddings.token_type_embeddings.weight",
                ("type_vocab_size", c.type_vocab_size),
                ("hidden_size", c.hidden_size),
            ),
            (
                "encoder.layer.0.intermediate.dense.weight",
                ("intermediate_size", c.intermediate_size),
                ("hidden_size", c.hidden_size),
            ),
        ];
        for (name, (rows_key, rows), (cols_key, cols)) in matrices {
            let Some(shape) = tensor(name) else { continue };
            for (i, (key, n)) in [(rows_key, rows), (cols_key, cols)].into_iter().enumerate() {
                if shape.len() == 2 && shape[i] != n {
                    return Err(wrong(
                        key,
                        format!(
                            "{n}, but the weights' '{name}' has shape {shape:?}: the config does not belong to these \
                             weights"
                        ),
                    ));
                }
            }
        }
        // the layers the weights hold, against num_hidden_layers (a config that said fewer was read as a
        // truncated model without a word)
        let layers = c.num_hidden_layers;
        let indices = self.tensors.keys().filter_map(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            parts.windows(3).find(|w| w[0] == "encoder" && w[1] == "layer").and_then(|w| w[2].parse::<usize>().ok())
        });
        if let Some(top) = indices.max() {
            if top + 1 != layers {
                return Err(wrong(
                    "num_hidden_layers",
                    format!(
                        "{layers} layers, but the weights hold {} (encoder.layer.0.* to encoder.layer.{top}.*): the \
                         config does not belong to these weights",
                        top + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sets every parameter of `model` (Hugging Face names, with or without the `bert.` / `roberta.`
    /// prefix of a bare `BertModel` / `RobertaModel` checkpoint) from this checkpoint. Returns the parameters the checkpoint does not
    /// hold (a new classification head keeps its initialization); a tensor of the wrong shape is an error
    /// naming it and both shapes.
    pub fn load_into<B: Backend>(&self, be: &B, model: &mut dyn Model<B>) -> Result<Vec<String>, HfError> {
        let mut fresh = vec![];
        for p in model.params_mut() {
            // a bare BertModel / RobertaModel checkpoint has no `bert.` / `roberta.` prefix
            let bare = p.name.strip_prefix("bert.").or_else(|| p.name.strip_prefix("roberta."));
            if let Some(n) = bare.filter(|n| self.tensors.contains_key(*n) && self.tensors.contains_key(&p.name)) {
                return Err(HfError::Unsupported {
                    path: self.dir.clone(),
                    msg: format!(
                        "holds both '{}' and '{n}': one checkpoint of a prefixed and a bare model; keep one",
                        p.name
                    ),
                });
            }
            let found = self.tensors.get(&p.name).or_else(|| bare.and_then(|n| self.tensors.get(n)));
            let Some((file, shape, values)) = found else {
                if let Some((name, file)) =
                    [Some(p.name.as_str()), bare].into_iter().flatten().find_map(|n| self.not_float.get_key_value(n))
                {
                    return Err(HfError::Unsupported {
                        path: file.clone(),
                        msg: format!(
                            "tensor '{name}' is not floating point (an integer or boolean dtype); the parameter {} \
                             needs F32, F16 or BF16",
                            p.name
                        ),
                    });
                }
                if bare.is_some() {
                    return Err(HfError::Missing {
                        path: self.dir.clone(),
                        name: p.name.clone(),
                        expected: p.shape.clone(),
                    });
                }
                fresh.push(p.name.clone());
                continue;
            };
            if *shape != p.shape {
                return Err(HfError::Shape {
                    path: file.clone(),
                    name: p.name.clone(),
                    expected: p.shape.clone(),
                    got: shape.clone(),
                });
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(HfError::Unsupported {
                    path: file.clone(),
                    msg: format!("tensor '{}' holds NaN or infinite values", p.name),
                });
            }
            p.value = be.upload(values)?;
        }
        Ok(fresh)
    }
}

/// One text's pooled embedding by a Hugging Face BERT directory (`medtrain embed`).
#[derive(Clone, Debug, PartialEq)]
pub struct TextEmbedding {
    pub input_ids: Vec<u32>,
    pub embedding: Vec<f32>,
    pub pooling: Pooling,
}

/// Tokenizes `text` with `dir/tokenizer.json` (special tokens added, as transformers does) and returns
/// the encoder's pooled last hidden state.
pub fn embed<B: Backend>(be: &B, dir: &Path, text: &str, pooling: Pooling) -> Result<TextEmbedding, HfError> {
    let ck = HfCheckpoint::read(dir)?;
    let tok_path = dir.join("tokenizer.json");
    if std::fs::symlink_metadata(&tok_path).is_err() {
        return Err(HfError::Unsupported {
            path: tok_path,
            msg: "is missing: medtrain needs the fast tokenizer's tokenizer.json (transformers: \
                  AutoTokenizer.from_pretrained(...).save_pretrained(dir) writes it)"
                .into(),
        });
    }
    // read as a regular file of bounded size (a FIFO there waited for ever)
    let bytes = crate::read_bounded(&tok_path, 256 << 20).map_err(|err| HfError::Io { path: tok_path.clone(), err })?;
    let mut tokenizer = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|_| HfError::Unsupported {
        path: tok_path.clone(),
        msg: "is not a tokenizer.json the tokenizers library can read".into(),
    })?;
    // as transformers encodes one text: no padding and no truncation, whatever tokenizer.json states
    // (sentence-transformers' files pad to 128 and truncate at 128)
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|_| HfError::Unsupported { path: tok_path.clone(), msg: "truncation cannot be turned off".into() })?;
    // the library's reason, where it holds nothing of the text (found by a tester: an unk token missing
    // from the vocabulary was said as "could not tokenize the text" alone)
    let enc = tokenizer.encode(text, true).map_err(|e| {
        let why = e.to_string();
        let of_text = text.split_whitespace().any(|w| w.chars().count() >= 3 && why.contains(w))
            || text.chars().any(|c| !c.is_ascii() && why.contains(c));
        let msg = if of_text || why.len() > 200 {
            "could not tokenize the text".to_string()
        } else {
            format!("could not tokenize the text: {why}")
        };
        HfError::Unsupported { path: tok_path.clone(), msg }
    })?;
    let ids = enc.get_ids().to_vec();
    let cfg = &ck.config;
    // RoBERTa's positions start after its padding id
    let max = cfg.max_position_embeddings - cfg.position_offset;
    if ids.is_empty() || ids.len() > max {
        return Err(HfError::Text(format!(
            "{} tokens (special tokens included); the model in {} reads 1 to {max}: shorten it",
            ids.len(),
            dir.display()
        )));
    }
    if ids.iter().any(|&i| i as usize >= cfg.vocab_size) {
        return Err(HfError::Unsupported {
            path: tok_path,
            msg: format!("gives token ids beyond the model's vocab_size {}", cfg.vocab_size),
        });
    }
    let mut model = Bert::encoder(be, cfg, pooling, 0)?;
    ck.load_into(be, &mut model)?;
    let t = ids.len();
    let batch = Batch {
        examples: 1,
        steps: t,
        inputs: Inputs::Tokens { ids: be.upload_ids(&ids)? },
        mask: be.upload(&vec![1.0; t])?,
        targets: Targets::Classes(be.upload_ids(&[0])?),
    };
    model.forward(be, &batch)?;
    Ok(TextEmbedding { input_ids: ids, embedding: be.download(model.logits())?, pooling })
}
