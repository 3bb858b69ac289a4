//! The transformer encoder, for lab series (input: Linear(F, D) named `embed`) and for clinical text
//! (input: Embedding(V, D) named `embed` plus learned positions `pos`): pre-LN blocks, a final
//! LayerNorm `ln`, masked mean pooling over time, and a Linear `head`.
//! h0: [B*T, D] -> blocks -> ln -> pool: [B, D] -> logits: [B, K].

use super::{Batch, Init, Inputs, Model};
use kernels::nn::{Embedding, EncoderBlock, GradReduce, LayerNorm, Linear, Param};
use kernels::{Backend, GroupRows, KernelError, NormStrategy, Result};

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

enum Input<B: Backend> {
    Linear(Linear<B>),
    Tokens { embed: Embedding<B>, pos: Embedding<B> },
}

pub struct Encoder<B: Backend> {
    pub cfg: EncoderConfig,
    input: Input<B>,
    blocks: Vec<EncoderBlock<B>>,
    ln: LayerNorm<B>,
    head: Linear<B>,
    /// hs[0] = input embedding, hs[i+1] = output of block i
    hs: Vec<B::Buf>,
    ln_out: B::Buf,
    pooled: B::Buf,
    out: B::Buf,
    pos_ids: B::Ids,
    pos_shape: (usize, usize),
    d_out: B::Buf,
    d_pooled: B::Buf,
    d_ln: B::Buf,
    /// d_hs[i] = gradient at hs[i]; blocks read their output gradient d_hs[i+1] again for clipping
    d_hs: Vec<B::Buf>,
}

impl<B: Backend> Encoder<B> {
    pub fn new(be: &B, cfg: EncoderConfig, seed: u64) -> Result<Self> {
        let mut init = Init::new(seed);
        let input = match cfg.input {
            EncoderInput::Features(f) => {
                let mut l = Linear::new(be, "embed", f, cfg.d)?;
                init.linear(be, &mut l)?;
                Input::Linear(l)
            }
            EncoderInput::Tokens { vocab, max_len } => {
                let mut embed = Embedding::new(be, "embed", vocab, cfg.d)?;
                let mut pos = Embedding::new(be, "pos", max_len, cfg.d)?;
                init.embedding(be, &mut embed)?;
                init.embedding(be, &mut pos)?;
                Input::Tokens { embed, pos }
            }
        };
        let mut blocks = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let mut blk = EncoderBlock::new(be, &format!("blocks.{i}"), cfg.d, cfg.heads, cfg.ff)?;
            init.linear(be, &mut blk.att.qkv)?;
            init.linear(be, &mut blk.att.o)?;
            init.linear(be, &mut blk.ff1)?;
            init.linear(be, &mut blk.ff2)?;
            blocks.push(blk);
        }
        let mut head = Linear::new(be, "head", cfg.d, cfg.outputs)?;
        init.linear(be, &mut head)?;
        let z = || be.zeros(0);
        Ok(Encoder {
            input,
            blocks,
            ln: LayerNorm::new(be, "ln", cfg.d)?,
            head,
            hs: (0..=cfg.layers).map(|_| z()).collect::<kernels::Result<_>>()?,
            ln_out: z()?,
            pooled: z()?,
            out: z()?,
            pos_ids: be.upload_ids(&[])?,
            pos_shape: (0, 0),
            d_out: z()?,
            d_pooled: z()?,
            d_ln: z()?,
            d_hs: (0..=cfg.layers).map(|_| z()).collect::<kernels::Result<_>>()?,
            cfg,
        })
    }

    fn check_batch(&self, be: &B, batch: &Batch<B>) -> Result<()> {
        let (b, t) = (batch.examples, batch.steps);
        if be.len(&batch.mask) != b * t {
            return Err(KernelError::Shape {
                op: "Encoder",
                what: "mask [B, T]",
                expected: b * t,
                got: be.len(&batch.mask),
            });
        }
        match (&self.input, &batch.inputs) {
            (Input::Linear(l), Inputs::Dense { x, features }) => {
                if *features != l.d_in {
                    return Err(KernelError::Shape {
                        op: "Encoder",
                        what: "x features (F)",
                        expected: l.d_in,
                        got: *features,
                    });
                }
                if be.len(x) != b * t * l.d_in {
                    return Err(KernelError::Shape {
                        op: "Encoder",
                        what: "x [B, T, F]",
                        expected: b * t * l.d_in,
                        got: be.len(x),
                    });
                }
            }
            (Input::Tokens { pos, .. }, Inputs::Tokens { ids }) => {
                if t > pos.vocab {
                    return Err(KernelError::Shape {
                        op: "Encoder",
                        what: "sequence length (at most max_len)",
                        expected: pos.vocab,
                        got: t,
                    });
                }
                if be.ids_len(ids) != b * t {
                    return Err(KernelError::Shape {
                        op: "Encoder",
                        what: "token ids [B, T]",
                        expected: b * t,
                        got: be.ids_len(ids),
                    });
                }
            }
            (Input::Linear(_), Inputs::Tokens { .. }) => {
                return Err(KernelError::Invalid {
                    op: "Encoder",
                    msg: "this encoder takes float features, not token ids".into(),
                })
            }
            (Input::Tokens { .. }, Inputs::Dense { .. }) => {
                return Err(KernelError::Invalid {
                    op: "Encoder",
                    msg: "this encoder takes token ids, not float features".into(),
                })
            }
        }
        Ok(())
    }
}

impl<B: Backend> Model<B> for Encoder<B> {
    fn params(&self) -> Vec<&Param<B>> {
        let mut v: Vec<&Param<B>> = match &self.input {
            Input::Linear(l) => l.params().into(),
            Input::Tokens { embed, pos } => vec![&embed.table, &pos.table],
        };
        for blk in &self.blocks {
            v.extend(blk.params());
        }
        v.extend(self.ln.params());
        v.extend(self.head.params());
        v
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut v: Vec<&mut Param<B>> = match &mut self.input {
            Input::Linear(l) => l.params_mut().into(),
            Input::Tokens { embed, pos } => vec![&mut embed.table, &mut pos.table],
        };
        for blk in &mut self.blocks {
            v.extend(blk.params_mut());
        }
        v.extend(self.ln.params_mut());
        v.extend(self.head.params_mut());
        v
    }
    fn outputs(&self) -> usize {
        self.cfg.outputs
    }

    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        self.check_batch(be, batch)?;
        let (b, t) = (batch.examples, batch.steps);
        match (&mut self.input, &batch.inputs) {
            (Input::Linear(l), Inputs::Dense { x, .. }) => l.forward(be, &mut self.hs[0], x, b * t)?,
            (Input::Tokens { embed, pos }, Inputs::Tokens { ids }) => {
                if self.pos_shape != (b, t) {
                    let p: Vec<u32> = (0..b * t).map(|r| (r % t) as u32).collect();
                    self.pos_ids = be.upload_ids(&p)?;
                    self.pos_shape = (b, t);
                }
                embed.forward(be, &mut self.hs[0], ids, false)?;
                pos.forward(be, &mut self.hs[0], &self.pos_ids, true)?;
            }
            _ => unreachable!("checked by check_batch"),
        }
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            let (before, after) = self.hs.split_at_mut(i + 1);
            blk.forward(be, &mut after[0], &before[i], &batch.mask, b, t)?;
        }
        let last = &self.hs[self.blocks.len()];
        self.ln.forward(be, &mut self.ln_out, last, b * t)?;
        be.resize(&mut self.pooled, b * self.cfg.d)?;
        be.masked_mean_pool_forward(&mut self.pooled, &self.ln_out, &batch.mask, t, self.cfg.d)?;
        self.head.forward(be, &mut self.out, &self.pooled, b)
    }

    fn logits(&self) -> &B::Buf {
        &self.out
    }

    fn backward(&mut self, be: &B, batch: &Batch<B>, dlogits: &B::Buf) -> Result<()> {
        let (b, t) = (batch.examples, batch.steps);
        be.resize(&mut self.d_out, be.len(dlogits))?;
        be.copy(&mut self.d_out, dlogits)?;
        self.head.backward_input(be, &mut self.d_pooled, dlogits, b)?;
        be.resize(&mut self.d_ln, b * t * self.cfg.d)?;
        be.masked_mean_pool_backward(&mut self.d_ln, &self.d_pooled, &batch.mask, t, self.cfg.d)?;
        let n = self.blocks.len();
        self.ln.backward_input(be, &mut self.d_hs[n], &self.d_ln, &self.hs[n], b * t)?;
        for (i, blk) in self.blocks.iter_mut().enumerate().rev() {
            let (before, after) = self.d_hs.split_at_mut(i + 1);
            blk.backward_input(be, &mut before[i], &after[0], &self.hs[i], b, t)?;
        }
        Ok(())
    }

    fn add_group_sq_norms(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        norms: &mut B::Buf,
        groups: &GroupRows,
        strategy: NormStrategy,
    ) -> Result<()> {
        let t = batch.steps;
        match (&mut self.input, &batch.inputs) {
            (Input::Linear(l), Inputs::Dense { x, .. }) => {
                l.add_group_sq_norms(be, norms, x, &self.d_hs[0], groups, t, strategy)?
            }
            (Input::Tokens { embed, pos }, Inputs::Tokens { ids }) => {
                embed.add_group_sq_norms(be, norms, ids, &self.d_hs[0], groups, t)?;
                pos.add_group_sq_norms(be, norms, &self.pos_ids, &self.d_hs[0], groups, t)?;
            }
            _ => return Err(KernelError::Invalid { op: "Encoder", msg: "batch inputs do not match the model".into() }),
        }
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            blk.add_group_sq_norms(be, norms, &self.d_hs[i + 1], groups, t, strategy)?;
        }
        self.ln.add_group_sq_norms(be, norms, &self.d_ln, groups, t)?;
        self.head.add_group_sq_norms(be, norms, &self.pooled, &self.d_out, groups, 1, strategy)
    }

    fn param_grads(&mut self, be: &B, batch: &Batch<B>, reduce: &GradReduce<B>) -> Result<()> {
        let t = batch.steps;
        match (&mut self.input, &batch.inputs) {
            (Input::Linear(l), Inputs::Dense { x, .. }) => l.param_grads(be, x, &self.d_hs[0], reduce, t)?,
            (Input::Tokens { embed, pos }, Inputs::Tokens { ids }) => {
                embed.param_grads(be, ids, &self.d_hs[0], reduce, t)?;
                pos.param_grads(be, &self.pos_ids, &self.d_hs[0], reduce, t)?;
            }
            _ => return Err(KernelError::Invalid { op: "Encoder", msg: "batch inputs do not match the model".into() }),
        }
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            blk.param_grads(be, &self.d_hs[i + 1], reduce, t)?;
        }
        self.ln.param_grads(be, &self.d_ln, reduce, t)?;
        self.head.param_grads(be, &self.pooled, &self.d_out, reduce, 1)
    }
}
