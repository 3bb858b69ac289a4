//! The transformer encoder, for lab series (input: Linear(F, D) named `embed`) and for clinical text
//! (input: Embedding(V, D) named `embed` plus learned positions `pos`): pre-LN blocks `blocks.i`, a
//! final LayerNorm `ln`, masked mean pooling over time, and a Linear `head`.
//! h0: [B*T, D] -> blocks -> ln -> pool: [B, D] -> logits: [B, K].

use super::{Net, NetInput};
use kernels::nn::{boxed, pre_ln_block, Embeddings, Ids, LayerNorm, Linear, MaskedMeanPool, Queries, Sequential};
use kernels::{Backend, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EncoderInput {
    /// float features per time step
    Features(usize),
    /// token ids from a vocabulary, with learned positions up to `max_len`
    Tokens { vocab: usize, max_len: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EncoderConfig {
    pub input: EncoderInput,
    pub d: usize,
    pub heads: usize,
    pub ff: usize,
    pub layers: usize,
    pub outputs: usize,
}

pub struct Encoder;

impl Encoder {
    #[allow(clippy::new_ret_no_self)]
    pub fn new<B: Backend>(be: &B, cfg: EncoderConfig, seed: u64) -> Result<Net<B>> {
        let (first, input) = match cfg.input {
            EncoderInput::Features(f) => (boxed(Linear::new(be, "embed", f, cfg.d)?), NetInput::Steps { features: f }),
            EncoderInput::Tokens { vocab, max_len } => (
                boxed(Embeddings::new(
                    be,
                    "embeddings",
                    cfg.d,
                    &[("embed", vocab, Ids::Tokens), ("pos", max_len, Ids::Positions)],
                )?),
                NetInput::Tokens,
            ),
        };
        let mut layers = vec![first];
        for i in 0..cfg.layers {
            layers.push(boxed(pre_ln_block(be, &format!("blocks.{i}"), cfg.d, cfg.heads, cfg.ff, Queries::All)?));
        }
        layers.push(boxed(LayerNorm::new(be, "ln", cfg.d)?));
        layers.push(boxed(MaskedMeanPool::new("pool", cfg.d)));
        layers.push(boxed(Linear::new(be, "head", cfg.d, cfg.outputs)?));
        Net::new("Encoder", Sequential::new("encoder", layers)?, input, cfg.outputs, seed, be)
    }
}
