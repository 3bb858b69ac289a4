//! Models: the lab-series MLP and the transformer encoder (lab series or clinical text), each one
//! composition of the compute layer's layers ([`Net`]). Each model implements [`Model`], whose calls a
//! training step makes in a fixed order: forward, backward, (DP) per-group norms, parameter gradients.

mod bert;
pub mod config;
mod encoder;
pub mod footprint;
pub mod hf;
mod host;
mod init;
mod mlp;
mod net;
pub mod workload;

pub use bert::{Bert, BertConfig, Family, Pooling};
pub use encoder::{Encoder, EncoderConfig, EncoderInput};
pub use host::{HostBatch, HostInputs, HostTargets};
pub use init::Init;
pub use mlp::{Mlp, MlpConfig};
pub use net::{Net, NetInput};

use kernels::nn::{GradReduce, Param};
use kernels::{Backend, NormStrategy, Result};

/// Model inputs on the device.
pub enum Inputs<B: Backend> {
    /// x: [B, T, F] float features (lab time series)
    Dense { x: B::Buf, features: usize },
    /// ids: [B, T] token ids
    Tokens { ids: B::Ids },
    /// a lab series x: [B, T, F] (the batch's `steps` and `mask`) and a note's token ids [B, L] with
    /// their own mask [B, L], for a model fusing both
    Both { x: B::Buf, features: usize, ids: B::Ids, tokens: usize, token_mask: B::Buf },
}

/// Targets: a binary label per example (BCE with logits), a class per example (cross-entropy) or a
/// real value per example (regression).
pub enum Targets<B: Backend> {
    Binary(B::Buf),
    Classes(B::Ids),
    Real(B::Buf),
}

/// What a model's outputs are and the loss that trains them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// one logit, binary cross-entropy with logits
    Binary,
    /// one logit per class, cross-entropy
    Multiclass(usize),
    /// one value; squared error (`huber` None) or Huber loss with that delta
    Regression { huber: Option<f32> },
}

impl Head {
    /// Outputs per example.
    pub fn outputs(self) -> usize {
        match self {
            Head::Multiclass(k) => k,
            Head::Binary | Head::Regression { .. } => 1,
        }
    }
    /// The head of a model with `outputs` logits and no stated head: binary for one, multiclass else.
    pub fn for_outputs(outputs: usize) -> Self {
        if outputs == 1 {
            Head::Binary
        } else {
            Head::Multiclass(outputs)
        }
    }
}

/// One batch on the device. `mask`: [B, T], 1 = keep, 0 = padding.
pub struct Batch<B: Backend> {
    pub examples: usize,
    pub steps: usize,
    pub inputs: Inputs<B>,
    pub mask: B::Buf,
    pub targets: Targets<B>,
}

/// A model the training step can drive. Buffers are kept between calls and reused across steps.
pub trait Model<B: Backend>: Send {
    fn params(&self) -> Vec<&Param<B>>;
    fn params_mut(&mut self) -> Vec<&mut Param<B>>;
    /// Number of logits per example.
    fn outputs(&self) -> usize;
    /// The outputs' meaning and loss.
    fn head(&self) -> Head {
        Head::for_outputs(self.outputs())
    }
    /// Computes and keeps the logits ([B, outputs]) and every activation backward needs.
    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()>;
    fn logits(&self) -> &B::Buf;
    /// Gradients of every activation from dlogits: [B, outputs] (parameter gradients come later).
    fn backward(&mut self, be: &B, batch: &Batch<B>, dlogits: &B::Buf) -> Result<()>;
    /// norms: [G] += each group's squared gradient norm over all parameters.
    fn add_group_sq_norms(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()>;
    /// Every parameter's `grad` = the (clipped) sum over groups.
    fn param_grads(&mut self, be: &B, batch: &Batch<B>, reduce: &GradReduce<B>) -> Result<()>;

    /// Ok when every layer gives exact per-group norms; otherwise the error names the first that does
    /// not (a private step refuses such a model).
    fn check_private(&self) -> Result<()> {
        Ok(())
    }

    fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.numel()).sum()
    }
}

impl<B: Backend> Model<B> for Box<dyn Model<B>> {
    fn params(&self) -> Vec<&Param<B>> {
        (**self).params()
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        (**self).params_mut()
    }
    fn outputs(&self) -> usize {
        (**self).outputs()
    }
    fn head(&self) -> Head {
        (**self).head()
    }
    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        (**self).forward(be, batch)
    }
    fn logits(&self) -> &B::Buf {
        (**self).logits()
    }
    fn backward(&mut self, be: &B, batch: &Batch<B>, dlogits: &B::Buf) -> Result<()> {
        (**self).backward(be, batch, dlogits)
    }
    fn add_group_sq_norms(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()> {
        (**self).add_group_sq_norms(be, batch, norms, groups, strategy)
    }
    fn param_grads(&mut self, be: &B, batch: &Batch<B>, reduce: &GradReduce<B>) -> Result<()> {
        (**self).param_grads(be, batch, reduce)
    }
    fn check_private(&self) -> Result<()> {
        (**self).check_private()
    }
}
