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
    /// per-group sums of dY ([G, Dout], the groups' bias gradients), from `add_group_sq_norms`
    group_sums: B::Buf,
    /// the group layout `group_sums` was computed for, in this forward/backward; None when stale
    group_sums_for: Option<GroupRows>,
}

impl<B: Backend> Linear<B> {
    /// A zero-initialized layer; `prefix` is its module path (`net.0`), giving `net.0.weight`.
    pub fn new(be: &B, prefix: &str, d_in: usize, d_out: usize) -> Self {
        Linear {
            weight: Param::zeros(be, format!("{prefix}.weight"), &[d_out, d_in]),
            bias: Param::zeros(be, format!("{prefix}.bias"), &[d_out]),
            d_in,
            d_out,
            scaled: be.zeros(0),
            group_sums: be.zeros(0),
            group_sums_for: None,
        }
    }

    /// x: [R, Din] -> y: [R, Dout] =
    pub fn forward(&mut self, be: &B, y: &mut B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        self.group_sums_for = None;
        be.resize(y, rows * self.d_out);
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
        be.resize(dx, rows * self.d_in);
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
    pub fn add_group_sq_norms(
        &mut self,
        be: &B,
        norms: &mut B::Buf,
        x: &B::Buf,
        dy: &B::Buf,
        groups: &GroupRows,
        rows_per_example: usize,
        strategy: NormStrategy,
    ) -> Result<()> {
        be.linear_group_sq_norms(
            norms,
            x,
            dy,
            self.d_in,
            self.d_out,
            groups,
            rows_per_example,
            strategy,
        )?;
        be.resize(&mut self.group_sums, groups.groups() * self.d_out);
        be.group_row_sums(
            &mut self.group_sums,
            dy,
            self.d_out,
            groups,
            rows_per_example,
        )?;
        be.add_row_sq_norms(norms, &self.group_sums, self.d_out)
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
        let rows = reduce.groups.examples() * rows_per_example;
        let dw = Gemm::new(self.d_out, self.d_in, rows);
        let dw_view = MatView::row_major(0, self.d_in);
        let dy_t = MatView::transposed(0, self.d_out);
        let x_view = MatView::row_major(0, self.d_in);
        let Some(factors) = reduce.factors else {
            be.gemm(&mut self.weight.grad, dw_view, dy, dy_t, x, x_view, dw)?;
            return be.group_row_sums(
                &mut self.bias.grad,
                dy,
                self.d_out,
                &GroupRows::single(rows),
                1,
            );
        };
        // bias: sum_g c_g (sum of group g's dY rows), reusing add_group_sq_norms' per-group sums
        if self.group_sums_for.as_ref() != Some(reduce.groups) {
            be.resize(&mut self.group_sums, reduce.groups.groups() * self.d_out);
            be.group_row_sums(
                &mut self.group_sums,
                dy,
                self.d_out,
                reduce.groups,
                rows_per_example,
            )?;
            self.group_sums_for = Some(reduce.groups.clone());
        }
        be.weighted_row_sum(
            &mut self.bias.grad,
            &self.group_sums,
            factors,
            self.d_out,
            false,
        )?;
        // weight: (c ⊙ dY)^T X = dY^T (c ⊙ X); scale the narrower of the two
        if self.d_in < self.d_out {
            be.resize(&mut self.scaled, rows * self.d_in);
            be.scale_rows_by_group(
                &mut self.scaled,
                x,
                self.d_in,
                factors,
                reduce.groups,
                rows_per_example,
            )?;
            be.gemm(
                &mut self.weight.grad,
                dw_view,
                dy,
                dy_t,
                &self.scaled,
                x_view,
                dw,
            )
        } else {
            be.resize(&mut self.scaled, rows * self.d_out);
            be.scale_rows_by_group(
                &mut self.scaled,
                dy,
                self.d_out,
                factors,
                reduce.groups,
                rows_per_example,
            )?;
            be.gemm(
                &mut self.weight.grad,
                dw_view,
                &self.scaled,
                dy_t,
                x,
                x_view,
                dw,
            )
        }
    }

    pub fn params(&self) -> [&Param<B>; 2] {
        [&self.weight, &self.bias]
    }
    pub fn params_mut(&mut self) -> [&mut Param<B>; 2] {
        [&mut self.weight, &mut self.bias]
    }
}
