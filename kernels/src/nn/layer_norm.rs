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
    /// per-group gamma and beta gradients ([G, D] each) from `add_group_sq_norms`, and their layout
    group_gamma: B::Buf,
    group_beta: B::Buf,
    group_sums_for: Option<GroupRows>,
}

impl<B: Backend> LayerNorm<B> {
    /// gamma = 1, beta = 0 (PyTorch's initialization)
    pub fn new(be: &B, prefix: &str, d: usize) -> Result<Self> {
        let mut gamma = Param::zeros(be, format!("{prefix}.weight"), &[d])?;
        be.fill(&mut gamma.value, 1.0)?;
        Ok(LayerNorm {
            gamma,
            beta: Param::zeros(be, format!("{prefix}.bias"), &[d])?,
            d,
            mean: be.zeros(0)?,
            rstd: be.zeros(0)?,
            dy_xhat: be.zeros(0)?,
            group_gamma: be.zeros(0)?,
            group_beta: be.zeros(0)?,
            group_sums_for: None,
        })
    }

    /// x: [R, D] -> y: [R, D] =, saving mean and rstd
    pub fn forward(&mut self, be: &B, y: &mut B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        self.group_sums_for = None;
        be.resize(y, rows * self.d)?;
        be.resize(&mut self.mean, rows)?;
        be.resize(&mut self.rstd, rows)?;
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
    pub fn backward_input(&mut self, be: &B, dx: &mut B::Buf, dy: &B::Buf, x: &B::Buf, rows: usize) -> Result<()> {
        be.resize(dx, rows * self.d)?;
        be.resize(&mut self.dy_xhat, rows * self.d)?;
        be.layer_norm_backward(dx, &mut self.dy_xhat, dy, x, &self.gamma.value, &self.mean, &self.rstd, self.d)
    }

    fn compute_group_sums(&mut self, be: &B, dy: &B::Buf, groups: &GroupRows, rows_per_example: usize) -> Result<()> {
        if self.group_sums_for.as_ref() == Some(groups) {
            return Ok(());
        }
        be.resize(&mut self.group_gamma, groups.groups() * self.d)?;
        be.resize(&mut self.group_beta, groups.groups() * self.d)?;
        be.group_row_sums(&mut self.group_gamma, &self.dy_xhat, self.d, groups, rows_per_example)?;
        be.group_row_sums(&mut self.group_beta, dy, self.d, groups, rows_per_example)?;
        self.group_sums_for = Some(groups.clone());
        Ok(())
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
        self.group_sums_for = None; // dy belongs to this backward pass
        self.compute_group_sums(be, dy, groups, rows_per_example)?;
        be.add_row_sq_norms(norms, &self.group_gamma, self.d)?;
        be.add_row_sq_norms(norms, &self.group_beta, self.d)
    }

    pub fn param_grads(&mut self, be: &B, dy: &B::Buf, reduce: &GradReduce<B>, rows_per_example: usize) -> Result<()> {
        let Some(factors) = reduce.factors else {
            let all = GroupRows::single(reduce.groups.examples() * rows_per_example);
            be.group_row_sums(&mut self.gamma.grad, &self.dy_xhat, self.d, &all, 1)?;
            return be.group_row_sums(&mut self.beta.grad, dy, self.d, &all, 1);
        };
        self.compute_group_sums(be, dy, reduce.groups, rows_per_example)?;
        be.weighted_row_sum(&mut self.gamma.grad, &self.group_gamma, factors, self.d, false)?;
        be.weighted_row_sum(&mut self.beta.grad, &self.group_beta, factors, self.d, false)
    }

    pub fn params(&self) -> [&Param<B>; 2] {
        [&self.gamma, &self.beta]
    }
    pub fn params_mut(&mut self) -> [&mut Param<B>; 2] {
        [&mut self.gamma, &mut self.beta]
    }
}
