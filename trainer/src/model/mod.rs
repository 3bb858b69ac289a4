//! Models: the lab-series MLP and the transformer encoder (lab series or clinical text), each one
//! composition of the compute layer's layers ([`Net`]). Each model implements [`Model`], whose calls a
//! training step makes in a fixed order: forward, backward, (DP) per-group norms, parameter gradients.

mod bert;
mod encoder;
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
}

/// Targets: a binary label per example (BCE with logits) or a class per example (cross-entropy).
pub enum Targets<B: Backend> {
    Binary(B::Buf),
    Classes(B::Ids),
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
