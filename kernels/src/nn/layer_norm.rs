//! LayerNorm over the last axis: x: [R, D] -> y: [R, D], gamma (`weight`) and beta (`bias`): [D].
//! backward_input (=) dx and keeps dy*xhat for the gamma gradient; its parameter gradients are
//! materialized per group (they are D-sized), then clipped and summed.

use super::param::{GradReduce, Param};
use crate::backend::{Backend, GroupRows};
use crate::error::Result;

pub const LAYER_NORM_EPS: f32 = 1e-5;

pub struct LayerNorm<B: Backend> {
    pub gamma: Param<B>,
    pub beta: Param<B>,
    pub d: usize,
    pub mean: B::Buf,
    pub rstd: B::Buf,
    dy_xhat: B::Buf,
    group_sums: B::Buf,
}

impl<B: Backend> LayerNorm<B> {
    /// gamma = 1, beta = 0 (PyTorch's initialization)
    pub fn new(be: &B, prefix: &str, d: usize) -> Self {
        let mut gamma = Param::zeros(be, format!("{prefix}.weight"), &[d]);
        be.fill(&mut gamma.value, 1.0);
        LayerNorm {
            gamma,
            beta: Param::zeros(be, format!("{prefix}.bias"), &[d]),
            d,
            mean: be.zeros(0),
            rstd: be.zeros(0),
            dy_xhat: be.zeros(0),
            group_sums: be.zeros(0),
        }
    }

    /// x: [R, D] -> y: [R, D] =, saving mean and rstd
    pub fn forward(&mut self, be: &B, y: &mut B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        be.resize(y, rows * self.d);
        be.resize(&mut self.mean, rows);
        be.resize(&mut self.rstd, rows);
        be.layer_norm_forward(
            y,
            &mut self.mean,
            &mut self.rstd,
            x,
            &self.gamma.value,
            &self.beta.value,
            self.d,
            LAYER_NORM_EPS,
        )
    }

    /// dy: [R, D], x: the forward input -> dx: [R, D] =
    pub fn backward_input(
        &mut self,
        be: &B,
        dx: &mut B::Buf,
        dy: &B::Buf,
        x: &B::Buf,
        rows: usize,
    ) -> Result<()> {
        be.resize(dx, rows * self.d);
        be.resize(&mut self.dy_xhat, rows * self.d);
        be.layer_norm_backward(
            dx,
            &mut self.dy_xhat,
            dy,
            x,
            &self.gamma.value,
            &self.mean,
            &self.rstd,
            self.d,
        )
    }

    /// norms: [G] += ||dgamma_g||^2 + ||dbeta_g||^2   (dy: the output gradient given to backward_input)
    pub fn add_group_sq_norms(
        &mut self,
        be: &B,
        norms: &mut B::Buf,
        dy: &B::Buf,
        groups: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()> {
        be.resize(&mut self.group_sums, groups.groups() * self.d);
        be.group_row_sums(
            &mut self.group_sums,
            &self.dy_xhat,
            self.d,
            groups,
            rows_per_example,
        )?;
        be.add_row_sq_norms(norms, &self.group_sums, self.d)?;
        be.group_row_sums(&mut self.group_sums, dy, self.d, groups, rows_per_example)?;
        be.add_row_sq_norms(norms, &self.group_sums, self.d)
    }

    pub fn param_grads(
        &mut self,
        be: &B,
        dy: &B::Buf,
        reduce: &GradReduce<B>,
        rows_per_example: usize,
    ) -> Result<()> {
        reduce_rows(
            be,
            &mut self.gamma.grad,
            &mut self.group_sums,
            &self.dy_xhat,
            self.d,
            reduce,
            rows_per_example,
        )?;
        reduce_rows(
            be,
            &mut self.beta.grad,
            &mut self.group_sums,
            dy,
            self.d,
            reduce,
            rows_per_example,
        )
    }

    pub fn params(&self) -> [&Param<B>; 2] {
        [&self.gamma, &self.beta]
    }
    pub fn params_mut(&mut self) -> [&mut Param<B>; 2] {
        [&mut self.gamma, &mut self.beta]
    }
}

/// grad: [D] = sum_g c_g * (sum of group g's rows of x), or the plain sum of all rows
pub(crate) fn reduce_rows<B: Backend>(
    be: &B,
    grad: &mut B::Buf,
    scratch: &mut B::Buf,
    x: &B::Buf,
    d: usize,
    reduce: &GradReduce<B>,
    rows_per_example: usize,
) -> Result<()> {
    match reduce.factors {
        None => be.group_row_sums(
            grad,
            x,
            d,
            &GroupRows::single(reduce.groups.examples() * rows_per_example),
            1,
        ),
        Some(factors) => {
            be.resize(scratch, reduce.groups.groups() * d);
            be.group_row_sums(scratch, x, d, reduce.groups, rows_per_example)?;
            be.weighted_row_sum(grad, scratch, factors, d, false)
        }
    }
}
