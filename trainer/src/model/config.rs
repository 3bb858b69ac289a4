//! The model a training config describes (its `[model]` table): a lab-series encoder, a clinical-text
//! encoder, or both fused, then an MLP and a head, built as one composition of layers ([`Net`]).
//!
//! ```toml
//! [model.lab]                 # over the T x K bucket features (value, observed, time since last)
//! kind = "transformer"        # transformer | gru | mlp
//! d_model = 128
//! heads = 4
//! ff = 512
//! layers = 2
//! pooling = "mean"            # transformer: mean | cls; gru: last | mean
//!
//! [model.text]
//! kind = "pretrained"         # transformer (own, vocabulary of the data's tokenizer) | pretrained
//! path = "models/all-MiniLM-L6-v2"
//! pooling = "cls"             # cls | mean
//! freeze_embeddings = true    # freeze the embeddings ...
//! freeze_layers = 4           # ... and the first 4 encoder layers
//!
//! [model.fusion]
//! hidden = [128]              # the MLP after the concatenated pooled vectors
//! activation = "relu"         # relu | gelu | tanh
//!
//! [model.head]
//! type = "binary"             # binary | multiclass (classes = K) | regression (loss = mse | huber)
//! ```
//!
//! Tensor names: `lab.*`, `text.*` (own encoder) or Hugging Face's (`bert.*`, `roberta.*`, pretrained),
//! `fusion.{i}`, `head`. Every field is checked against the others and the data ([`DataShape`]); an
//! error names the key and the numbers, and an unknown key is an error naming it.

use super::bert::{Bert, Pooling};
use super::footprint::{Footprint, Shape};
use super::hf::{HfCheckpoint, HfError};
use super::net::{NetInput, SERIES_CLS_MASK, SERIES_MASK, TOKEN_MASK};
use super::{Head, Net};
use crate::data::labels::LabelValue;
use kernels::nn::{
    boxed, pre_ln_block, Act, Concat, Embeddings, FirstRow, Flatten, Frozen, Gru, Ids, Layer, LayerNorm, Linear,
    Masked, MaskedMeanPool, PrependRow, Queries, Sequential,
};
use kernels::{Activation, Backend};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabEncoder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextEncoder>,
    #[serde(default)]
    pub fusion: Fusion,
    pub head: HeadConfig,
}

/// The lab-series encoder.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabEncoder {
    /// pre-LN transformer over the buckets, learned bucket positions
    Transformer {
        #[serde(default = "d128")]
        d_model: usize,
        #[serde(default = "four")]
        heads: usize,
        #[serde(default = "ff512")]
        ff: usize,
        #[serde(default = "two")]
        layers: usize,
        /// mean (masked mean over observed buckets, the default) or cls
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooling: Option<SeriesPooling>,
        #[serde(default)]
        freeze_embeddings: bool,
        #[serde(default)]
        freeze_layers: usize,
    },
    /// one-layer GRU (PyTorch's `nn.GRU`) over the buckets
    Gru {
        #[serde(default = "d128")]
        hidden: usize,
        /// last (the state after the last bucket, the default) or mean (over observed buckets)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pooling: Option<SeriesPooling>,
    },
    /// the flattened T x F features through two ReLU layers
    Mlp {
        #[serde(default = "h256")]
        hidden: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesPooling {
    Mean,
    Cls,
    Last,
}

/// The clinical-text encoder.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TextEncoder {
    /// the own small pre-LN transformer over the data tokenizer's ids, learned positions
    Transformer {
        #[serde(default = "d128")]
        d_model: usize,
        #[serde(default = "four")]
        heads: usize,
        #[serde(default = "ff512")]
        ff: usize,
        #[serde(default = "two")]
        layers: usize,
        /// mean (the default) or cls (the first token)
        #[serde(default = "mean")]
        pooling: Pooling,
        #[serde(default)]
        freeze_embeddings: bool,
        #[serde(default)]
        freeze_layers: usize,
    },
    /// a BERT-family encoder from a Hugging Face directory (config.json, safetensors, tokenizer.json)
    Pretrained {
        path: PathBuf,
        /// cls (the first token's last hidden state, the default) or mean
        #[serde(default = "cls")]
        pooling: Pooling,
        #[serde(default)]
        freeze_embeddings: bool,
        #[serde(default)]
        freeze_layers: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    /// widths of the MLP's hidden layers after the (concatenated) pooled vectors; empty: the head
    /// reads them directly
    #[serde(default)]
    pub hidden: Vec<usize>,
    #[serde(default = "relu")]
    pub activation: FusionActivation,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion { hidden: vec![], activation: FusionActivation::Relu }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionActivation {
    Relu,
    Gelu,
    Tanh,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadConfig {
    /// one logit, BCE with logits (boolean_value labels)
    Binary {},
    /// `classes` logits, cross-entropy (integer_value or categorical_value labels)
    Multiclass { classes: usize },
    /// one value, squared error or Huber loss (float_value or integer_value labels)
    Regression {
        #[serde(default = "mse")]
        loss: RegressionLoss,
        /// Huber's delta (loss = "huber" only; default 1.0)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        huber_delta: Option<f64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    Mse,
    Huber,
}

fn d128() -> usize {
    128
}
fn four() -> usize {
    4
}
fn ff512() -> usize {
    512
}
fn two() -> usize {
    2
}
fn h256() -> usize {
    256
}
fn mean() -> Pooling {
    Pooling::Mean
}
fn cls() -> Pooling {
    Pooling::Cls
}
fn relu() -> FusionActivation {
    FusionActivation::Relu
}
fn mse() -> RegressionLoss {
    RegressionLoss::Mse
}

/// The label's type in the MEDS label schema (which value column holds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelType {
    Boolean,
    Integer,
    Float,
    Categorical,
}

impl LabelType {
    pub fn of(v: &LabelValue) -> Self {
        match v {
            LabelValue::Bool(_) => LabelType::Boolean,
            LabelValue::Int(_) => LabelType::Integer,
            LabelValue::Float(_) => LabelType::Float,
            LabelValue::Categorical(_) => LabelType::Categorical,
        }
    }
    /// The MEDS column.
    pub fn column(self) -> &'static str {
        match self {
            LabelType::Boolean => "boolean_value",
            LabelType::Integer => "integer_value",
            LabelType::Float => "float_value",
            LabelType::Categorical => "categorical_value",
        }
    }
}

/// What the data gives the model: the lab series' shape, the notes' vocabulary and length, the label type.
#[derive(Clone, Debug, PartialEq)]
pub struct DataShape {
    /// (buckets T, features per bucket F = 3 x channels)
    pub series: Option<(usize, usize)>,
    /// (vocabulary of the token ids, tokens per note L)
    pub text: Option<(usize, usize)>,
    pub label: LabelType,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// a key of the config and what is wrong with it
    #[error("{key}: {msg}")]
    Config { key: String, msg: String },
    #[error(transparent)]
    Hf(#[from] HfError),
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
}

fn bad(key: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Config { key: format!("model.{key}"), msg: msg.into() }
}

/// A built model and the pretrained checkpoint it started from (its files' SHA-256, for the release).
pub struct Built<B: Backend> {
    pub net: Net<B>,
    pub base: Option<HfCheckpoint>,
    /// parameters that train / all
    pub trainable: usize,
    pub total: usize,
}

/// Upper bound of any one size in a config: larger is a typo, and would abort on allocation.
const MAX_SIZE: usize = 1 << 16;

impl HeadConfig {
    pub fn head(&self) -> Head {
        match *self {
            HeadConfig::Binary {} => Head::Binary,
            HeadConfig::Multiclass { classes } => Head::Multiclass(classes),
            HeadConfig::Regression { loss: RegressionLoss::Mse, .. } => Head::Regression { huber: None },
            HeadConfig::Regression { loss: RegressionLoss::Huber, huber_delta } => {
                Head::Regression { huber: Some(huber_delta.unwrap_or(1.0) as f32) }
            }
        }
    }

    fn validate(&self, label: LabelType) -> Result<(), ModelError> {
        let (name, allowed): (&str, &[LabelType]) = match self {
            HeadConfig::Binary {} => ("binary", &[LabelType::Boolean]),
            HeadConfig::Multiclass { .. } => ("multiclass", &[LabelType::Integer, LabelType::Categorical]),
            HeadConfig::Regression { .. } => ("regression", &[LabelType::Float, LabelType::Integer]),
        };
        if !allowed.contains(&label) {
            let cols: Vec<_> = allowed.iter().map(|t| t.column()).collect();
            return Err(bad(
                "head.type",
                format!("a {name} head needs {} labels; the labels are {}", cols.join(" or "), label.column()),
            ));
        }
        match *self {
            HeadConfig::Multiclass { classes } if !(2..=MAX_SIZE).contains(&classes) => {
                Err(bad("head.classes", format!("{classes} classes: expected 2 to {MAX_SIZE}")))
            }
            HeadConfig::Regression { loss: RegressionLoss::Mse, huber_delta: Some(_) } => {
                Err(bad("head.huber_delta", "applies only to loss = \"huber\""))
            }
            HeadConfig::Regression { huber_delta: Some(d), .. } if !(d > 0.0 && d.is_finite() && d < 1e30) => {
                Err(bad("head.huber_delta", format!("{d} is not a positive number")))
            }
            _ => Ok(()),
        }
    }
}

fn size(key: &str, v: usize) -> Result<usize, ModelError> {
    if v == 0 || v > MAX_SIZE {
        return Err(bad(key, format!("{v}: expected 1 to {MAX_SIZE}")));
    }
    Ok(v)
}

/// Checks a transformer's sizes (keys under `at`) and its freezing.
fn transformer_sizes(at: &str, d: usize, heads: usize, ff: usize, layers: usize) -> Result<(), ModelError> {
    size(&format!("{at}.d_model"), d)?;
    size(&format!("{at}.heads"), heads)?;
    size(&format!("{at}.ff"), ff)?;
    if !(1..=64).contains(&layers) {
        return Err(bad(&format!("{at}.layers"), format!("{layers}: expected 1 to 64")));
    }
    if !d.is_multiple_of(heads) {
        return Err(bad(
            &format!("{at}.d_model"),
            format!("{d} is not divisible by {at}.heads = {heads} (model.{at}.heads must divide it)"),
        ));
    }
    Ok(())
}

fn freeze_check(at: &str, freeze_layers: usize, layers: usize) -> Result<(), ModelError> {
    if freeze_layers > layers {
        return Err(bad(
            &format!("{at}.freeze_layers"),
            format!("{freeze_layers} is more than the encoder's {layers} layers"),
        ));
    }
    Ok(())
}

impl LabEncoder {
    fn pooling(&self) -> SeriesPooling {
        match self {
            LabEncoder::Transformer { pooling, .. } => pooling.unwrap_or(SeriesPooling::Mean),
            LabEncoder::Gru { pooling, .. } => pooling.unwrap_or(SeriesPooling::Last),
            LabEncoder::Mlp { .. } => SeriesPooling::Mean,
        }
    }

    fn validate(&self, steps: usize) -> Result<(), ModelError> {
        match *self {
            LabEncoder::Transformer { d_model, heads, ff, layers, freeze_layers, .. } => {
                transformer_sizes("lab", d_model, heads, ff, layers)?;
                freeze_check("lab", freeze_layers, layers)?;
                if self.pooling() == SeriesPooling::Last {
                    return Err(bad("lab.pooling", "a transformer pools by \"mean\" or \"cls\""));
                }
            }
            LabEncoder::Gru { hidden, .. } => {
                size("lab.hidden", hidden)?;
                if self.pooling() == SeriesPooling::Cls {
                    return Err(bad("lab.pooling", "a GRU pools by \"last\" or \"mean\""));
                }
            }
            LabEncoder::Mlp { hidden } => {
                size("lab.hidden", hidden)?;
            }
        }
        if steps == 0 {
            return Err(bad("lab", "the data has no buckets (features.buckets)"));
        }
        Ok(())
    }

    /// The encoder's layers (reading the series input) and its pooled width.
    fn build<B: Backend>(
        &self,
        be: &B,
        steps: usize,
        features: usize,
    ) -> Result<(Box<dyn Layer<B>>, usize), ModelError> {
        let mut layers: Vec<Box<dyn Layer<B>>> = vec![];
        let (mask, width) = match *self {
            LabEncoder::Transformer { d_model: d, heads, ff, layers: n, freeze_embeddings, freeze_layers, .. } => {
                let cls = self.pooling() == SeriesPooling::Cls;
                let mut front: Vec<Box<dyn Layer<B>>> = vec![boxed(Linear::new(be, "lab.embed", features, d)?)];
                if cls {
                    front.push(boxed(PrependRow::new("lab.cls", d)));
                }
                let positions = steps + cls as usize;
                front.push(boxed(Embeddings::added(be, "lab.pos", d, &[("lab.pos", positions, Ids::Positions)])?));
                for l in front {
                    layers.push(frozen_if(l, freeze_embeddings));
                }
                for i in 0..n {
                    // CLS pooling reads the last block's first rows alone
                    let queries = if cls && i + 1 == n { Queries::First } else { Queries::All };
                    let block = boxed(pre_ln_block(be, &format!("lab.blocks.{i}"), d, heads, ff, queries)?);
                    layers.push(frozen_if(block, i < freeze_layers));
                }
                layers.push(boxed(LayerNorm::new(be, "lab.ln", d)?));
                if cls {
                    layers.push(boxed(FirstRow::new("lab.pool", d)));
                    (SERIES_CLS_MASK, d)
                } else {
                    layers.push(boxed(MaskedMeanPool::new("lab.pool", d)));
                    (SERIES_MASK, d)
                }
            }
            LabEncoder::Gru { hidden, .. } => {
                layers.push(boxed(Gru::new(be, "lab.gru", features, hidden)?));
                layers.push(match self.pooling() {
                    SeriesPooling::Last => boxed(FirstRow::last("lab.pool", hidden)),
                    _ => boxed(MaskedMeanPool::new("lab.pool", hidden)),
                });
                (SERIES_MASK, hidden)
            }
            LabEncoder::Mlp { hidden } => {
                layers.push(boxed(Flatten::new("lab.flatten")));
                layers.push(boxed(Linear::new(be, "lab.0", steps * features, hidden)?));
                layers.push(boxed(Act::new("lab.1", Activation::Relu)));
                layers.push(boxed(Linear::new(be, "lab.2", hidden, hidden)?));
                layers.push(boxed(Act::new("lab.3", Activation::Relu)));
                (SERIES_MASK, hidden)
            }
        };
        let seq = boxed(Sequential::new("lab", layers)?);
        Ok((boxed(Masked::new("lab", mask, seq)), width))
    }
}

fn frozen_if<B: Backend>(l: Box<dyn Layer<B>>, freeze: bool) -> Box<dyn Layer<B>> {
    if freeze {
        boxed(Frozen::new(l))
    } else {
        l
    }
}

impl TextEncoder {
    /// Validates the encoder against the data's vocabulary and note length; reads a pretrained
    /// checkpoint (its config and weights) once.
    fn validate(&self, vocab: usize, tokens: usize) -> Result<Option<HfCheckpoint>, ModelError> {
        match self {
            &TextEncoder::Transformer { d_model, heads, ff, layers, freeze_layers, .. } => {
                transformer_sizes("text", d_model, heads, ff, layers)?;
                freeze_check("text", freeze_layers, layers)?;
                if vocab == 0 || vocab > 1 << 24 {
                    return Err(bad("text", format!("the tokenizer's vocabulary ({vocab}) must be 1 to 2^24")));
                }
                Ok(None)
            }
            TextEncoder::Pretrained { path, freeze_layers, .. } => {
                let ck = HfCheckpoint::read(path)?;
                let c = &ck.config;
                freeze_check("text", *freeze_layers, c.num_hidden_layers)?;
                let max = c.max_position_embeddings.saturating_sub(c.position_offset);
                if tokens > max {
                    return Err(bad(
                        "text.path",
                        format!("notes of {tokens} tokens; the checkpoint reads at most {max} positions"),
                    ));
                }
                if vocab > c.vocab_size {
                    return Err(bad(
                        "text.path",
                        format!(
                            "the notes' tokenizer has {vocab} pieces (ids 0 to {}), the checkpoint's embeddings \
                             {} (vocab_size): tokenize the notes with the checkpoint's tokenizer.json (where that is \
                             the one used, its added tokens pass the embeddings: remove them from it, or give the \
                             checkpoint embeddings for them)",
                            vocab - 1,
                            c.vocab_size
                        ),
                    ));
                }
                Ok(Some(ck))
            }
        }
    }

    fn build<B: Backend>(
        &self,
        be: &B,
        vocab: usize,
        tokens: usize,
        ck: Option<&HfCheckpoint>,
    ) -> Result<(Box<dyn Layer<B>>, usize), ModelError> {
        let (layers, width): (Vec<Box<dyn Layer<B>>>, usize) = match (self, ck) {
            (
                &TextEncoder::Transformer {
                    d_model: d,
                    heads,
                    ff,
                    layers: n,
                    pooling,
                    freeze_embeddings,
                    freeze_layers,
                },
                _,
            ) => {
                let emb = Embeddings::new(
                    be,
                    "text.embeddings",
                    d,
                    &[("text.embed", vocab, Ids::Tokens), ("text.pos", tokens, Ids::Positions)],
                )?;
                let mut layers = vec![frozen_if(boxed(emb), freeze_embeddings)];
                for i in 0..n {
                    let queries = if pooling == Pooling::Cls && i + 1 == n { Queries::First } else { Queries::All };
                    let block = boxed(pre_ln_block(be, &format!("text.blocks.{i}"), d, heads, ff, queries)?);
                    layers.push(frozen_if(block, i < freeze_layers));
                }
                layers.push(boxed(LayerNorm::new(be, "text.ln", d)?));
                layers.push(match pooling {
                    Pooling::Cls => boxed(FirstRow::new("text.pool", d)),
                    Pooling::Mean => boxed(MaskedMeanPool::new("text.pool", d)),
                });
                (layers, d)
            }
            (&TextEncoder::Pretrained { pooling, freeze_embeddings, freeze_layers, .. }, Some(ck)) => {
                // [embeddings, embeddings.LayerNorm, layer.0, ..., pool]
                let layers = Bert::pooled(be, &ck.config, pooling)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| frozen_if(l, if i < 2 { freeze_embeddings } else { i - 2 < freeze_layers }))
                    .collect();
                (layers, ck.config.hidden_size)
            }
            (TextEncoder::Pretrained { .. }, None) => {
                return Err(bad("text.path", "the checkpoint was not read"));
            }
        };
        let seq = boxed(Sequential::new("text", layers)?);
        Ok((boxed(Masked::new("text", TOKEN_MASK, seq)), width))
    }
}

impl ModelConfig {
    /// Parses the `[model]` table of a TOML file (errors name the key, line and column).
    pub fn from_toml(s: &str) -> Result<Self, String> {
        toml::from_str(s).map_err(|e| e.to_string())
    }

    /// Checks every field against the others and the data; returns the pretrained checkpoint read.
    pub fn validate(&self, data: &DataShape) -> Result<Option<HfCheckpoint>, ModelError> {
        self.validate_shape(data.series, data.text, Some(data.label))
    }

    /// [`ModelConfig::validate`] against the shape the data will have (a data config's sizes, before
    /// the data are prepared), the label type where it is known.
    pub fn validate_shape(
        &self,
        series: Option<(usize, usize)>,
        notes: Option<(usize, usize)>,
        label: Option<LabelType>,
    ) -> Result<Option<HfCheckpoint>, ModelError> {
        if self.lab.is_none() && self.text.is_none() {
            return Err(bad("lab", "the model has no encoder: give model.lab, model.text or both"));
        }
        if let Some(label) = label {
            self.head.validate(label)?;
        } else {
            // the head's own keys, whatever the labels turn out to be
            let any = match self.head {
                HeadConfig::Binary {} => LabelType::Boolean,
                HeadConfig::Multiclass { .. } => LabelType::Categorical,
                HeadConfig::Regression { .. } => LabelType::Float,
            };
            self.head.validate(any)?;
        }
        for (i, &h) in self.fusion.hidden.iter().enumerate() {
            size(&format!("fusion.hidden[{i}]"), h)?;
        }
        if self.fusion.hidden.len() > 8 {
            return Err(bad("fusion.hidden", format!("{} layers: expected at most 8", self.fusion.hidden.len())));
        }
        if let Some(lab) = &self.lab {
            let (t, f) =
                series.ok_or_else(|| bad("lab", "the data has no lab series (a [data.features] table) to encode"))?;
            lab.validate(t)?;
            if let LabEncoder::Mlp { .. } = lab {
                if t.checked_mul(f).is_none_or(|n| n > 1 << 22) {
                    return Err(bad("lab.kind", format!("an MLP over {t} x {f} flattened features is too wide")));
                }
            }
        }
        match &self.text {
            None => Ok(None),
            Some(text) => {
                let (vocab, tokens) =
                    notes.ok_or_else(|| bad("text", "the data has no notes (tokenized text) to encode"))?;
                if tokens == 0 || tokens > MAX_SIZE {
                    return Err(bad("text", format!("notes of {tokens} tokens: expected 1 to {MAX_SIZE}")));
                }
                text.validate(vocab, tokens)
            }
        }
    }

    /// Builds the model, its parameters drawn from `seed` and a pretrained encoder's loaded from its
    /// checkpoint (which spends no privacy budget: public input).
    pub fn build<B: Backend>(&self, be: &B, data: &DataShape, seed: u64) -> Result<Built<B>, ModelError> {
        self.build_within(be, data, seed, |_| Ok(()))
    }

    /// [`ModelConfig::build`], once `fits` has accepted the model's [`Footprint`] (before anything is
    /// allocated).
    pub fn build_within<B: Backend>(
        &self,
        be: &B,
        data: &DataShape,
        seed: u64,
        fits: impl FnOnce(&Footprint) -> Result<(), ModelError>,
    ) -> Result<Built<B>, ModelError> {
        let ck = self.validate(data)?;
        fits(&self.footprint(&Shape {
            series: data.series,
            text: data.text,
            pretrained: ck.as_ref().map(|c| &c.config),
        }))?;
        let lab = match (&self.lab, data.series) {
            (Some(l), Some((t, f))) => Some(l.build(be, t, f)?),
            _ => None,
        };
        let text = match (&self.text, data.text) {
            (Some(x), Some((vocab, tokens))) => Some(x.build(be, vocab, tokens, ck.as_ref())?),
            _ => None,
        };
        let (input, encoders, mut width) = match (lab, text) {
            (Some((l, wl)), Some((x, wx))) => {
                let f = data.series.map_or(0, |s| s.1);
                (NetInput::Both { features: f }, boxed(Concat::new("encoders", l, x)), wl + wx)
            }
            (Some((l, w)), None) => (NetInput::Steps { features: data.series.map_or(0, |s| s.1) }, l, w),
            (None, Some((x, w))) => (NetInput::Tokens, x, w),
            (None, None) => return Err(bad("lab", "the model has no encoder")),
        };
        let mut layers = vec![encoders];
        let act = match self.fusion.activation {
            FusionActivation::Relu => Activation::Relu,
            FusionActivation::Gelu => Activation::Gelu,
            FusionActivation::Tanh => Activation::Tanh,
        };
        for (i, &h) in self.fusion.hidden.iter().enumerate() {
            layers.push(boxed(Linear::new(be, &format!("fusion.{}", 2 * i), width, h)?));
            layers.push(boxed(Act::new(format!("fusion.{}", 2 * i + 1), act)));
            width = h;
        }
        let head = self.head.head();
        layers.push(boxed(Linear::new(be, "head", width, head.outputs())?));
        let mut net =
            Net::new("model", Sequential::new("model", layers)?, input, head.outputs(), seed, be)?.with_head(head)?;
        if let Some(ck) = &ck {
            ck.load_into(be, &mut net)?;
        }
        let (mut trainable, mut total) = (0, 0);
        kernels::nn::Layer::visit(net.root(), &mut |p| {
            total += p.numel();
            trainable += if p.frozen { 0 } else { p.numel() };
        });
        Ok(Built { net, base: ck, trainable, total })
    }
}
