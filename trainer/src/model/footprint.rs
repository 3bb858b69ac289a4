//! What a model described by a config takes in memory, known before any of it is allocated: its
//! parameters, counted exactly per part of the config, and a lower bound of the activations a step
//! keeps per example. A run checks these against the memory of its device before it prepares data
//! and again before it builds the model, so a size that cannot fit (`hidden = 65536`) is an error
//! naming its key instead of an allocation that the kernel's out-of-memory killer answers.

use super::bert::{BertConfig, Pooling};
use super::config::{LabEncoder, ModelConfig, SeriesPooling, TextEncoder};

/// One part of a model: the config key that sizes it, and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// the key to change to make the part smaller (`model.lab.hidden`)
    pub key: String,
    pub params: u64,
    /// parameters that train (a frozen parameter keeps no gradient nor optimizer state)
    pub trainable: u64,
}

/// The memory of a model ([`ModelConfig::footprint`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Footprint {
    pub parts: Vec<Part>,
    /// floats the forward keeps per example for the backward: a lower bound (the layers' outputs
    /// and attention probabilities; no workspace)
    pub activations_per_example: u64,
}

/// The shape the footprint needs: the lab series' (buckets, features per bucket), the notes'
/// (vocabulary, tokens per note); a pretrained encoder's config where there is one.
pub struct Shape<'a> {
    pub series: Option<(usize, usize)>,
    pub text: Option<(usize, usize)>,
    pub pretrained: Option<&'a BertConfig>,
}

/// Sizes are computed in u128 (a config.json's sizes reach 2^24 each: their products pass u64) and
/// saturate at u64::MAX when kept.
fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn part(key: &str, params: u128, trainable: u128) -> Part {
    Part { key: key.into(), params: saturate(params), trainable: saturate(trainable) }
}

fn linear(i: u128, o: u128) -> u128 {
    i * o + o
}

/// A transformer block's parameters (pre-LN here, post-LN BERT alike: the same tensors).
fn block(d: u128, ff: u128) -> u128 {
    4 * linear(d, d) + linear(d, ff) + linear(ff, d) + 2 * 2 * d
}

/// Floats a transformer block keeps per example over `rows` rows: its layer norms' and residuals'
/// outputs, q, k and v, the attention probabilities and the feed-forward's hidden layer before and
/// after the activation.
fn block_activations(rows: u128, d: u128, heads: u128, ff: u128) -> u128 {
    rows * (8 * d + 2 * ff) + heads * rows * rows
}

/// The same for a last block that computes the first row only (CLS pooling, `Queries::First`): its
/// first layer norm, keys and values over every row, one query's probabilities and one row of the rest.
fn first_row_block_activations(rows: u128, d: u128, heads: u128, ff: u128) -> u128 {
    rows * 3 * d + heads * rows + 6 * d + 2 * ff
}

/// The parts of a transformer encoder ([embeddings, blocks], each with its key) and its activations.
#[allow(clippy::too_many_arguments)]
fn transformer(
    blocks_key: &str,
    parts: &mut Vec<Part>,
    (embeddings_key, embeddings): (&str, u128),
    rows: u128,
    (d, heads, ff, layers): (u128, u128, u128, u128),
    freeze_embeddings: bool,
    freeze_layers: u128,
    (final_ln, cls): (bool, bool),
) -> u128 {
    parts.push(part(embeddings_key, embeddings, if freeze_embeddings { 0 } else { embeddings }));
    let blocks = layers * block(d, ff) + if final_ln { 2 * d } else { 0 };
    let frozen = freeze_layers.min(layers) * block(d, ff);
    parts.push(part(blocks_key, blocks, blocks - frozen));
    let full = if cls { layers.saturating_sub(1) } else { layers };
    let last = if cls && layers > 0 { first_row_block_activations(rows, d, heads, ff) } else { 0 };
    rows * d + full * block_activations(rows, d, heads, ff) + last
}

impl ModelConfig {
    /// The parameters of every part of the model this config builds on data of `shape` (the same
    /// count as the built model's), and the activations a step keeps per example (a lower bound).
    pub fn footprint(&self, shape: &Shape) -> Footprint {
        let u = |v: usize| v as u128;
        let mut parts = vec![];
        let mut acts = 0u128;
        let mut width = 0u128;
        if let (Some(lab), Some((t, f))) = (&self.lab, shape.series) {
            let (t, f) = (u(t), u(f));
            match *lab {
                LabEncoder::Transformer { d_model, heads, ff, layers, freeze_embeddings, freeze_layers, pooling } => {
                    let d = u(d_model);
                    let rows = t + u128::from(pooling == Some(SeriesPooling::Cls));
                    let embeddings = linear(f, d) + rows * d;
                    acts += t * f;
                    acts += transformer(
                        "model.lab.layers",
                        &mut parts,
                        ("model.lab.d_model", embeddings),
                        rows,
                        (d, u(heads), u(ff), u(layers)),
                        freeze_embeddings,
                        u(freeze_layers),
                        (true, pooling == Some(SeriesPooling::Cls)),
                    );
                    width += d;
                }
                LabEncoder::Gru { hidden, .. } => {
                    let h = u(hidden);
                    let p = 3 * h * f + 3 * h * h + 6 * h;
                    parts.push(part("model.lab.hidden", p, p));
                    acts += t * (f + 4 * h);
                    width += h;
                }
                LabEncoder::Mlp { hidden } => {
                    let h = u(hidden);
                    let p = linear(t * f, h) + linear(h, h);
                    parts.push(part("model.lab.hidden", p, p));
                    acts += t * f + 4 * h;
                    width += h;
                }
            }
        }
        if let (Some(text), Some((vocab, tokens))) = (&self.text, shape.text) {
            let rows = u(tokens);
            match (text, shape.pretrained) {
                (
                    &TextEncoder::Transformer { d_model, heads, ff, layers, freeze_embeddings, freeze_layers, pooling },
                    _,
                ) => {
                    let d = u(d_model);
                    acts += transformer(
                        "model.text.layers",
                        &mut parts,
                        ("model.text.d_model", (u(vocab) + rows) * d),
                        rows,
                        (d, u(heads), u(ff), u(layers)),
                        freeze_embeddings,
                        u(freeze_layers),
                        (true, pooling == Pooling::Cls),
                    );
                    width += d;
                }
                (&TextEncoder::Pretrained { freeze_embeddings, freeze_layers, pooling, .. }, Some(c)) => {
                    let h = u(c.hidden_size);
                    let tables = u(c.vocab_size) + u(c.max_position_embeddings) + u(c.type_vocab_size);
                    acts += transformer(
                        "model.text.path",
                        &mut parts,
                        ("model.text.path", tables * h + 2 * h),
                        rows,
                        (h, u(c.num_attention_heads), u(c.intermediate_size), u(c.num_hidden_layers)),
                        freeze_embeddings,
                        u(freeze_layers),
                        (false, pooling == Pooling::Cls),
                    );
                    width += h;
                }
                (TextEncoder::Pretrained { .. }, None) => {}
            }
        }
        let mut fusion = 0;
        for &h in &self.fusion.hidden {
            fusion += linear(width, u(h));
            acts += 2 * u(h);
            width = u(h);
        }
        if fusion > 0 {
            parts.push(part("model.fusion.hidden", fusion, fusion));
        }
        let head = linear(width, u(self.head.head().outputs()));
        parts.push(part("model.head", head, head));
        Footprint { parts, activations_per_example: saturate(acts) }
    }
}

impl Footprint {
    pub fn params(&self) -> u64 {
        self.parts.iter().fold(0, |a, p| a.saturating_add(p.params))
    }
    pub fn trainable(&self) -> u64 {
        self.parts.iter().fold(0, |a, p| a.saturating_add(p.trainable))
    }
    /// Bytes of f32 a training step holds at least: every weight, a gradient and `states` optimizer
    /// states of every trainable one, and the activations of `examples` examples.
    pub fn step_bytes(&self, states: u64, examples: u64) -> u64 {
        let params = self.params().saturating_add(self.trainable().saturating_mul(1 + states));
        params.saturating_add(self.activations_per_example.saturating_mul(examples)).saturating_mul(4)
    }
    /// The part that takes the most memory with `states` optimizer states per trainable parameter (the
    /// key to name when the model does not fit): a trainable parameter weighs more than a frozen one.
    pub fn largest(&self, states: u64) -> Option<&Part> {
        self.parts.iter().max_by_key(|p| p.params.saturating_add(p.trainable.saturating_mul(1 + states)))
    }
}

fn gib(bytes: u64) -> String {
    match bytes {
        0..0x4000_0000 => format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64),
        0x4000_0000..0x100_0000_0000 => format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64),
        _ => format!("{:.1} TiB", bytes as f64 / (1u64 << 40) as f64),
    }
}

fn count(n: u64) -> String {
    match n {
        0..1_000_000 => n.to_string(),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        1_000_000_000..1_000_000_000_000 => format!("{:.2} G", n as f64 / 1e9),
        _ => format!("{:.2} T", n as f64 / 1e12),
    }
}

impl Footprint {
    /// Refuses a model whose step cannot fit in `limit` bytes (the backend's memory, `device` in
    /// words) even by this lower bound: `(config key, message)`, the key being the largest part's when
    /// the weights alone do not fit and `train.micro_batch` when the activations of `examples`
    /// examples do not. `states`: the optimizer's state buffers per trainable parameter.
    pub fn check_fits(&self, states: u64, examples: u64, limit: u64, device: &str) -> Result<(), (String, String)> {
        let fixed = self.step_bytes(states, 0);
        let total = self.step_bytes(states, examples);
        if total <= limit {
            return Ok(());
        }
        let parts: Vec<String> = self.parts.iter().map(|p| format!("{} {}", p.key, count(p.params))).collect();
        let what = format!(
            "the model has {} parameters ({}); a training step takes at least {} for the weights, the gradients and \
             the optimizer's state",
            count(self.params()),
            parts.join(", "),
            gib(fixed)
        );
        let per = self.activations_per_example.saturating_mul(4).max(1);
        if fixed >= limit {
            let key = self.largest(states).map_or("model".to_string(), |p| p.key.clone());
            return Err((
                key,
                format!("{what}, more than the {} of memory the {device} has available: make it smaller", gib(limit)),
            ));
        }
        let fit = (limit - fixed) / per;
        if fit == 0 {
            let key = self.largest(states).map_or("model".to_string(), |p| p.key.clone());
            return Err((
                key,
                format!(
                    "{what}, and {} for the activations of one example, more than the {} of memory the {device} has \
                     available: make the model smaller, or the examples shorter (data.features.buckets, note_tokens)",
                    gib(per),
                    gib(limit)
                ),
            ));
        }
        Err((
            "train.micro_batch".into(),
            format!(
                "{what}, and {} for the activations of {examples} examples, more than the {} of memory the {device} has \
                 available: set train.micro_batch to at most {fit} (or make the model smaller)",
                gib(total - fixed),
                gib(limit)
            ),
        ))
    }
}
