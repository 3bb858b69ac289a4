//! Pre-LayerNorm transformer encoder block:
//!   mid = x + o(attn(ln1(x)));   out = mid + ff2(gelu(ff1(ln2(mid))))
//! x, mid, out: [B*T, D]; ff1 out: [B*T, F]. The block keeps every activation and inner gradient that
//! its parameter gradients need; the caller keeps the gradient at the block output (`dy`) and passes
//! it again to `add_group_sq_norms` and `param_grads`.

use super::attention::SelfAttention;
use super::layer_norm::LayerNorm;
use super::linear::Linear;
use super::param::{GradReduce, Param};
use crate::backend::{Backend, GroupRows, NormStrategy};
use crate::error::Result;

pub struct EncoderBlock<B: Backend> {
    pub ln1: LayerNorm<B>,
    pub att: SelfAttention<B>,
    pub ln2: LayerNorm<B>,
    pub ff1: Linear<B>,
    pub ff2: Linear<B>,
    // activations
    ln1_out: B::Buf,
    att_out: B::Buf,
    pub mid: B::Buf,
    ln2_out: B::Buf,
    ff1_out: B::Buf,
    gelu_out: B::Buf,
    // gradients
    d_mid: B::Buf,
    d_gelu: B::Buf,
    d_ff1: B::Buf,
    d_ln2: B::Buf,
    d_ln1: B::Buf,
    d_tmp: B::Buf,
}

impl<B: Backend> EncoderBlock<B> {
    /// `prefix` is the module path (`blocks.0`)
    pub fn new(be: &B, prefix: &str, d: usize, heads: usize, ff: usize) -> Result<Self> {
        let z = || be.zeros(0);
        Ok(EncoderBlock {
            ln1: LayerNorm::new(be, &format!("{prefix}.ln1"), d)?,
            att: SelfAttention::new(be, &format!("{prefix}.att"), d, heads)?,
            ln2: LayerNorm::new(be, &format!("{prefix}.ln2"), d)?,
            ff1: Linear::new(be, &format!("{prefix}.ff1"), d, ff)?,
            ff2: Linear::new(be, &format!("{prefix}.ff2"), ff, d)?,
            ln1_out: z()?,
            att_out: z()?,
            mid: z()?,
            ln2_out: z()?,
            ff1_out: z()?,
            gelu_out: z()?,
            d_mid: z()?,
            d_gelu: z()?,
            d_ff1: z()?,
            d_ln2: z()?,
            d_ln1: z()?,
            d_tmp: z()?,
        })
    }

    /// x: [B*T, D], mask: [B, T] -> out: [B*T, D] =
    pub fn forward(&mut self, be: &B, out: &mut B::Buf, x: &B::Buf, mask: &B::Buf, b: usize, t: usize) -> Result<()> {
        let rows = b * t;
        self.ln1.forward(be, &mut self.ln1_out, x, rows)?;
        self.att.forward(be, &mut self.att_out, &self.ln1_out, mask, b, t)?;
        be.resize(&mut self.mid, rows * self.ln1.d)?;
        be.add(&mut self.mid, x, &self.att_out)?;
        self.ln2.forward(be, &mut self.ln2_out, &self.mid, rows)?;
        self.ff1.forward(be, &mut self.ff1_out, &self.ln2_out, rows)?;
        be.resize(&mut self.gelu_out, rows * self.ff1.d_out)?;
        be.gelu_forward(&mut self.gelu_out, &self.ff1_out)?;
        self.ff2.forward(be, out, &self.gelu_out, rows)?;
        be.add_assign(out, &self.mid)
    }

    /// dy: gradient at the block output, x: the block input -> dx: [B*T, D] =
    pub fn backward_input(
        &mut self,
        be: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        x: &B::Buf,
        b: usize,
        t: usize,
    ) -> Result<()> {
        let rows = b * t;
        // feed-forward branch
        self.ff2.backward_input(be, &mut self.d_gelu, dy, rows)?;
        be.resize(&mut self.d_ff1, rows * self.ff1.d_out)?;
        be.gelu_backward(&mut self.d_ff1, &self.d_gelu, &self.ff1_out)?;
        self.ff1.backward_input(be, &mut self.d_ln2, &self.d_ff1, rows)?;
        self.ln2.backward_input(be, &mut self.d_mid, &self.d_ln2, &self.mid, rows)?;
        be.add_assign(&mut self.d_mid, dy)?;
        // attention branch
        self.att.backward_input(be, &mut self.d_ln1, &self.d_mid, b, t)?;
        self.ln1.backward_input(be, &mut self.d_tmp, &self.d_ln1, x, rows)?;
        be.resize(dx, be.len(dy))?;
        be.add(dx, &self.d_tmp, &self.d_mid)
    }

    /// dy: the gradient at the block output given to backward_input
    pub fn add_group_sq_norms(
        &mut self,
        be: &B,
        norms: &mut B::Buf,
        dy: &B::Buf,
        groups: &GroupRows,
        t: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        self.ln1.add_group_sq_norms(be, norms, &self.d_ln1, groups, t)?;
        self.att.add_group_sq_norms(be, norms, &self.ln1_out, &self.d_mid, groups, t, strategy)?;
        self.ln2.add_group_sq_norms(be, norms, &self.d_ln2, groups, t)?;
        self.ff1.add_group_sq_norms(be, norms, &self.ln2_out, &self.d_ff1, groups, t, strategy)?;
        self.ff2.add_group_sq_norms(be, norms, &self.gelu_out, dy, groups, t, strategy)
    }

    pub fn param_grads(&mut self, be: &B, dy: &B::Buf, reduce: &GradReduce<B>, t: usize) -> Result<()> {
        self.ln1.param_grads(be, &self.d_ln1, reduce, t)?;
        self.att.param_grads(be, &self.ln1_out, &self.d_mid, reduce, t)?;
        self.ln2.param_grads(be, &self.d_ln2, reduce, t)?;
        self.ff1.param_grads(be, &self.ln2_out, &self.d_ff1, reduce, t)?;
        self.ff2.param_grads(be, &self.gelu_out, dy, reduce, t)
    }

    pub fn params(&self) -> Vec<&Param<B>> {
        let mut v: Vec<&Param<B>> = self.ln1.params().into();
        v.extend(self.att.params());
        v.extend(self.ln2.params());
        v.extend(self.ff1.params());
        v.extend(self.ff2.params());
        v
    }
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut v: Vec<&mut Param<B>> = self.ln1.params_mut().into();
        v.extend(self.att.params_mut());
        v.extend(self.ln2.params_mut());
        v.extend(self.ff1.params_mut());
        v.extend(self.ff2.params_mut());
        v
    }
}
