//! Multi-head self-attention with a key mask and a fused qkv projection.
//! x: [B, T, D] -> qkv: [B, T, 3, H, hd] (q, then k, then v: PyTorch's `view(B, T, 3, H, hd)`)
//! -> att: [B, H, T, T] = softmax(q k^T / sqrt(hd)), masked keys -inf -> ctx: [B, T, H, hd] = att v
//! -> out: [B, T, D] = o(ctx).
//! Backward (=): dctx = o^T dout; datt = dctx v^T; dv = att^T dctx; dscores = softmax'(datt);
//! dq = dscores k; dk = dscores^T q; dx = qkv^T dqkv.

use super::linear::Linear;
use super::param::{GradReduce, Param};
use crate::backend::{Backend, Gemm, GroupRows, MatView, NormStrategy};
use crate::error::{KernelError, Result};

/// Where the per-(batch, head) matrices lie, for `T` steps.
struct Views {
    q: MatView,
    k: MatView,
    v: MatView,
    k_t: MatView,
    v_t: MatView,
    ctx: MatView,
    att: MatView,
    att_t: MatView,
}

fn transpose(mut m: MatView) -> MatView {
    std::mem::swap(&mut m.row_stride, &mut m.col_stride);
    m
}

impl Views {
    fn new(d: usize, heads: usize, t: usize) -> Self {
        let (d3, hd) = (3 * d, d / heads);
        // q (part 0), k (1) or v (2) of head-batch (b, h) inside qkv_out, as a [T, hd] matrix
        let part = |p: usize| MatView::row_major(p * d, d3).batched(t * d3, hd);
        let att = MatView::row_major(0, t).batched(heads * t * t, t * t);
        Views {
            q: part(0),
            k: part(1),
            v: part(2),
            k_t: transpose(part(1)),
            v_t: transpose(part(2)),
            ctx: MatView::row_major(0, d).batched(t * d, hd),
            att,
            att_t: transpose(att),
        }
    }
}

pub struct SelfAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub o: Linear<B>,
    pub heads: usize,
    pub d: usize,
    // saved by forward
    pub qkv_out: B::Buf,
    pub att: B::Buf,
    pub ctx: B::Buf,
    // gradient kept for param_grads
    pub dqkv: B::Buf,
    datt: B::Buf,
    dctx: B::Buf,
}

impl<B: Backend> SelfAttention<B> {
    pub fn new(be: &B, prefix: &str, d: usize, heads: usize) -> Result<Self> {
        if heads == 0 || d % heads != 0 {
            return Err(KernelError::Invalid {
                op: "SelfAttention::new",
                msg: format!("width {d} is not divisible by {heads} heads"),
            });
        }
        Ok(SelfAttention {
            qkv: Linear::new(be, &format!("{prefix}.qkv"), d, 3 * d)?,
            o: Linear::new(be, &format!("{prefix}.o"), d, d)?,
            heads,
            d,
            qkv_out: be.zeros(0)?,
            att: be.zeros(0)?,
            ctx: be.zeros(0)?,
            dqkv: be.zeros(0)?,
            datt: be.zeros(0)?,
            dctx: be.zeros(0)?,
        })
    }

    fn hd(&self) -> usize {
        self.d / self.heads
    }
    /// x: [B*T, D], mask: [B, T] -> y: [B*T, D] =
    pub fn forward(&mut self, be: &B, y: &mut B::Buf, x: &B::Buf, mask: &B::Buf, b: usize, t: usize) -> Result<()> {
        let (h, hd) = (self.heads, self.hd());
        let v = Views::new(self.d, h, t);
        self.qkv.forward(be, &mut self.qkv_out, x, b * t)?;
        be.resize(&mut self.att, b * h * t * t)?;
        // scores = q k^T (the 1/sqrt(hd) scale is applied inside the softmax)
        be.gemm(&mut self.att, v.att, &self.qkv_out, v.q, &self.qkv_out, v.k_t, Gemm::new(t, t, hd).batched(b, h))?;
        be.masked_softmax_forward(&mut self.att, mask, b, h, t, 1.0 / (hd as f32).sqrt())?;
        be.resize(&mut self.ctx, b * t * self.d)?;
        be.gemm(&mut self.ctx, v.ctx, &self.att, v.att, &self.qkv_out, v.v, Gemm::new(t, hd, t).batched(b, h))?;
        self.o.forward(be, y, &self.ctx, b * t)
    }

    /// dy: [B*T, D] -> dx: [B*T, D] =
    pub fn backward_input(&mut self, be: &B, dx: &mut B::Buf, dy: &B::Buf, b: usize, t: usize) -> Result<()> {
        let (h, hd) = (self.heads, self.hd());
        let v = Views::new(self.d, h, t);
        self.o.backward_input(be, &mut self.dctx, dy, b * t)?;
        // datt = dctx v^T
        be.resize(&mut self.datt, b * h * t * t)?;
        be.gemm(&mut self.datt, v.att, &self.dctx, v.ctx, &self.qkv_out, v.v_t, Gemm::new(t, t, hd).batched(b, h))?;
        // dv = att^T dctx
        be.resize(&mut self.dqkv, b * t * 3 * self.d)?;
        be.gemm(&mut self.dqkv, v.v, &self.att, v.att_t, &self.dctx, v.ctx, Gemm::new(t, hd, t).batched(b, h))?;
        // dscores (scale included)
        be.softmax_backward(&mut self.datt, &self.att, t, 1.0 / (hd as f32).sqrt())?;
        // dq = dscores k ; dk = dscores^T q
        be.gemm(&mut self.dqkv, v.q, &self.datt, v.att, &self.qkv_out, v.k, Gemm::new(t, hd, t).batched(b, h))?;
        be.gemm(&mut self.dqkv, v.k, &self.datt, v.att_t, &self.qkv_out, v.q, Gemm::new(t, hd, t).batched(b, h))?;
        self.qkv.backward_input(be, dx, &self.dqkv, b * t)
    }

    /// x: the forward input of the qkv projection; dy: the output gradient given to backward_input
    #[allow(clippy::too_many_arguments)]
    pub fn add_group_sq_norms(
        &self,
        be: &B,
        norms: &mut B::Buf,
        x: &B::Buf,
        dy: &B::Buf,
        groups: &GroupRows,
        t: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        self.qkv.add_group_sq_norms(be, norms, x, &self.dqkv, groups, t, strategy)?;
        self.o.add_group_sq_norms(be, norms, &self.ctx, dy, groups, t, strategy)
    }

    pub fn param_grads(&mut self, be: &B, x: &B::Buf, dy: &B::Buf, reduce: &GradReduce<B>, t: usize) -> Result<()> {
        self.qkv.param_grads(be, x, &self.dqkv, reduce, t)?;
        self.o.param_grads(be, &self.ctx, dy, reduce, t)
    }

    pub fn params(&self) -> Vec<&Param<B>> {
        self.qkv.params().into_iter().chain(self.o.params()).collect()
    }
    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        self.qkv.params_mut().into_iter().chain(self.o.params_mut()).collect()
    }
}
