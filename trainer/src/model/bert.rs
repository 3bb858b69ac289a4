//! Hugging Face's `BertForSequenceClassification` as a composition of layers, with its tensor names:
//! `bert.embeddings.{word,position,token_type}_embeddings` (summed, then `bert.embeddings.LayerNorm`),
//! post-LN layers `bert.encoder.layer.{i}` (separate query/key/value, masked keys get `f32::MIN` added),
//! the pooler `tanh(bert.pooler.dense(h[CLS]))` and `classifier`. No dropout (a training step of a DP
//! model, and the reference it is compared with, run without it). One segment: token types all 0.
//! Initialization as Hugging Face's `_init_weights`: every weight N(0, 0.02^2), biases 0, LayerNorm 1/0.

use super::{Net, NetInput};
use kernels::nn::{
    boxed, post_ln_block, Act, Embeddings, FirstRow, Ids, Layer, LayerNorm, Linear, MaskedMeanPool, ParamInit, Queries,
    Sequential,
};
use kernels::{Activation, Backend, KernelError, MaskFill, Result};

/// BERT or RoBERTa (XLM-RoBERTa): the same encoder; RoBERTa's tensors are under `roberta.`, its positions
/// start after its padding id, and its classification head (`classifier.dense`, tanh,
/// `classifier.out_proj` on the first token) replaces BERT's pooler and classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Bert,
    Roberta,
}

/// The fields of a BERT `config.json` that shape the model.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub family: Family,
    /// the first position id (RoBERTa: its padding id + 1; BERT: 0)
    pub position_offset: usize,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub num_labels: usize,
}

impl BertConfig {
    /// The size of all-MiniLM-L6-v2 (the notes-bert workload).
    pub fn minilm_l6(num_labels: usize) -> Self {
        BertConfig {
            family: Family::Bert,
            position_offset: 0,
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            num_labels,
        }
    }
}

/// How an encoder-only BERT turns its last hidden states into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// the first token's (`[CLS]`) hidden state
    Cls,
    /// the masked mean over the tokens (sentence-transformers' pooling)
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            _ => Err("expected cls or mean".into()),
        }
    }
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        }
    }
}

pub struct Bert;

impl Bert {
    /// Hugging Face's `BertModel` without its pooler: the embeddings and encoder layers, then `pooling`
    /// of the last hidden states; `hidden_size` outputs per example.
    pub fn encoder<B: Backend>(be: &B, cfg: &BertConfig, pooling: Pooling, seed: u64) -> Result<Net<B>> {
        let layers = Self::pooled(be, cfg, pooling)?;
        Self::net(be, layers, cfg.hidden_size, seed)
    }

    /// The trunk and a pooling layer: `[embeddings, embeddings.LayerNorm, layer.0, ..., pool]`, with
    /// Hugging Face's initialization (a model built on it loads the pretrained weights over it).
    pub fn pooled<B: Backend>(be: &B, cfg: &BertConfig, pooling: Pooling) -> Result<Vec<Box<dyn Layer<B>>>> {
        let mut layers = Self::trunk(be, cfg, pooling == Pooling::Cls)?;
        let h = cfg.hidden_size;
        layers.push(match pooling {
            Pooling::Cls => boxed(FirstRow::new("pool", h)),
            Pooling::Mean => boxed(MaskedMeanPool::new("pool", h)),
        });
        layers.iter_mut().for_each(|l| l.visit_mut(&mut hf_init));
        Ok(layers)
    }

    /// The embeddings and the encoder layers (the shared trunk of every BERT model here); with `cls`,
    /// the model reads only the first token's last hidden state, and the last layer computes nothing
    /// else (its only query is that token: [`Queries::First`]).
    fn trunk<B: Backend>(be: &B, cfg: &BertConfig, cls: bool) -> Result<Vec<Box<dyn Layer<B>>>> {
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            return Err(KernelError::Layer {
                layer: "bert".into(),
                msg: format!("hidden_size {h} is not divisible by num_attention_heads {}", cfg.num_attention_heads),
            });
        }
        if cfg.type_vocab_size == 0 {
            return Err(KernelError::Layer { layer: "bert".into(), msg: "type_vocab_size must be at least 1".into() });
        }
        let prefix = match cfg.family {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
        };
        let e = &format!("{prefix}.embeddings");
        let positions = match cfg.position_offset {
            0 => Ids::Positions,
            o => Ids::OffsetPositions(o as u32),
        };
        let mut layers = vec![
            boxed(Embeddings::new(
                be,
                e,
                h,
                &[
                    (&format!("{e}.word_embeddings"), cfg.vocab_size, Ids::Tokens),
                    (&format!("{e}.position_embeddings"), cfg.max_position_embeddings, positions),
                    (&format!("{e}.token_type_embeddings"), cfg.type_vocab_size, Ids::Constant(0)),
                ],
            )?),
            boxed(LayerNorm::with_eps(be, &format!("{e}.LayerNorm"), h, cfg.layer_norm_eps)?),
        ];
        for i in 0..cfg.num_hidden_layers {
            layers.push(boxed(post_ln_block(
                be,
                &format!("{prefix}.encoder.layer.{i}"),
                h,
                cfg.num_attention_heads,
                cfg.intermediate_size,
                cfg.layer_norm_eps,
                MaskFill::Add(f32::MIN),
                if cls && i + 1 == cfg.num_hidden_layers { Queries::First } else { Queries::All },
            )?));
        }
        Ok(layers)
    }

    /// Hugging Face's `BertForSequenceClassification`: the trunk, the pooler on the first token, the
    /// classifier.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<B: Backend>(be: &B, cfg: &BertConfig, seed: u64) -> Result<Net<B>> {
        let mut layers = Self::trunk(be, cfg, true)?;
        let h = cfg.hidden_size;
        let (first, dense, out) = match cfg.family {
            Family::Bert => ("bert.pooler.first_token", "bert.pooler.dense", "classifier"),
            Family::Roberta => ("classifier.first_token", "classifier.dense", "classifier.out_proj"),
        };
        layers.push(boxed(FirstRow::new(first, h)));
        layers.push(boxed(Linear::new(be, dense, h, h)?));
        layers.push(boxed(Act::new(format!("{dense}.tanh"), Activation::Tanh)));
        layers.push(boxed(Linear::new(be, out, h, cfg.num_labels)?));
        Self::net(be, layers, cfg.num_labels, seed)
    }

    fn net<B: Backend>(be: &B, layers: Vec<Box<dyn Layer<B>>>, outputs: usize, seed: u64) -> Result<Net<B>> {
        let mut root = Sequential::new("bert", layers)?;
        root.visit_mut(&mut hf_init);
        Net::new("Bert", root, NetInput::Tokens, outputs, seed, be)
    }
}

/// Hugging Face's `_init_weights`: weights N(0, 0.02^2), biases 0, LayerNorm as it is.
fn hf_init<B: Backend>(p: &mut kernels::nn::Param<B>) {
    p.init = match p.init {
        ParamInit::Uniform { .. } if p.shape.len() == 1 => ParamInit::Zeros,
        ParamInit::Uniform { .. } | ParamInit::Normal { .. } => ParamInit::Normal { std: 0.02 },
        other => other,
    }
}
