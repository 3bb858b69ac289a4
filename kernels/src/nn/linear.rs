//! Linear: x: [R, Din], W: [Dout, Din], b: [Dout] -> y: [R, Dout] = x W^T + b.
//! backward_input (=): dx = dy W.  param_grads (=): dW = (c ⊙ dY)^T X, db = sum_r c_r dy_r, scaling
//! whichever of X and dY is narrower.

use super::param::{GradReduce, Param};
use crate::backend::{Backend, Gemm, GroupRows, MatView, NormStrategy};
use crate::error::Result;

pub struct Linear<B: Backend> {
    pub weight: Param<B>,
    pub bias: Param<B>,
    pub d_in: usize,
    pub d_out: usize,
    scaled: B::Buf,
    /// [Dout, Din+1]: the clipped weight gradient with the bias gradient as its last column
    grad_with_bias: B::Buf,
}

impl<B: Backend> Linear<B> {
    /// A zero-initialized layer; `prefix` is its module path (`net.0`), giving `net.0.weight`.
    pub fn new(be: &B, prefix: &str, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Linear {
            weight: Param::zeros(be, format!("{prefix}.weight"), &[d_out, d_in])?,
            bias: Param::zeros(be, format!("{prefix}.bias"), &[d_out])?,
            d_in,
            d_out,
            scaled: be.zeros(0)?,
            grad_with_bias: be.zeros(0)?,
        })
    }

    /// x: [R, Din] -> y: [R, Dout] =
    pub fn forward(&self, be: &B, y: &mut B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        be.resize(y, rows * self.d_out)?;
        be.broadcast_rows(y, &self.bias.value, rows)?;
        be.gemm(
            y,
            MatView::row_major(0, self.d_out),
            x,
            MatView::row_major(0, self.d_in),
            &self.weight.value,
            MatView::transposed(0, self.d_in),
            Gemm::new(rows, self.d_out, self.d_in).accumulate(),
        )
    }

    /// dy: [R, Dout] -> dx: [R, Din] = dy W
    pub fn backward_input(&self, be: &B, dx: &mut B::Buf, dy: &B::Buf, rows: usize) -> Result<()> {
        be.resize(dx, rows * self.d_in)?;
        be.gemm(
            dx,
            MatView::row_major(0, self.d_in),
            dy,
            MatView::row_major(0, self.d_out),
            &self.weight.value,
            MatView::row_major(0, self.d_in),
            Gemm::new(rows, self.d_in, self.d_out),
        )
    }

    /// norms: [G] += ||dW_g||^2 + ||db_g||^2
    #[allow(clippy::too_many_arguments)]
    pub fn add_group_sq_norms(
        &self,
        be: &B,
        norms: &mut B::Buf,
        x: &B::Buf,
        dy: &B::Buf,
        groups: &GroupRows,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        be.linear_group_sq_norms(norms, x, dy, self.d_in, self.d_out, groups, rows_per_example, strategy)
    }

    /// weight.grad, bias.grad = the (clipped) sums over the batch
    pub fn param_grads(
        &mut self,
        be: &B,
        x: &B::Buf,
        dy: &B::Buf,
        reduce: &GradReduce<B>,
        rows_per_example: usize,
    ) -> Result<()> {
        let (d_in, d_out) = (self.d_in, self.d_out);
        let rows = reduce.groups.examples() * rows_per_example;
        let dy_t = MatView::transposed(0, d_out);
        let Some(factors) = reduce.factors else {
            be.gemm(
                &mut self.weight.grad,
                MatView::row_major(0, d_in),
                dy,
                dy_t,
                x,
                MatView::row_major(0, d_in),
                Gemm::new(d_out, d_in, rows),
            )?;
            return be.group_row_sums(&mut self.bias.grad, dy, d_out, &GroupRows::single(rows), 1);
        };
        // (c ⊙ dY)^T [X, 1] = dY^T [c ⊙ X, c]: scale the narrower of X and dY
        if d_in < d_out {
            be.resize(&mut self.scaled, rows * (d_in + 1))?;
            be.scale_rows_by_group(&mut self.scaled, x, d_in, true, factors, reduce.groups, rows_per_example)?;
            be.resize(&mut self.grad_with_bias, d_out * (d_in + 1))?;
            be.gemm(
                &mut self.grad_with_bias,
                MatView::row_major(0, d_in + 1),
                dy,
                dy_t,
                &self.scaled,
                MatView::row_major(0, d_in + 1),
                Gemm::new(d_out, d_in + 1, rows),
            )?;
            be.split_last_column(&mut self.weight.grad, &mut self.bias.grad, &self.grad_with_bias, d_in + 1)
        } else {
            be.resize(&mut self.scaled, rows * d_out)?;
            be.scale_rows_by_group(&mut self.scaled, dy, d_out, false, factors, reduce.groups, rows_per_example)?;
            be.gemm(
                &mut self.weight.grad,
                MatView::row_major(0, d_in),
                &self.scaled,
                dy_t,
                x,
                MatView::row_major(0, d_in),
                Gemm::new(d_out, d_in, rows),
            )?;
            be.group_row_sums(&mut self.bias.grad, &self.scaled, d_out, &GroupRows::single(rows), 1)
        }
    }

    pub fn params(&self) -> [&Param<B>; 2] {
        [&self.weight, &self.bias]
    }
    pub fn params_mut(&mut self) -> [&mut Param<B>; 2] {
        [&mut self.weight, &mut self.bias]
    }
}
