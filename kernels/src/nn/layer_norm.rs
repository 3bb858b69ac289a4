//! LayerNorm over the last axis: x: [R, D] -> y: [R, D], gamma (`weight`) and beta (`bias`): [D],
//! with its own eps (PyTorch's default 1e-5; Hugging Face BERT uses 1e-12). backward (= or +=) dx
//! and keeps dy*xhat for the gamma gradient; the parameter gradients are materialized per group (they
//! are D-sized), then clipped and summed.

use super::layer::{check_input, kept, Layer, Slot, Step};
use super::param::{GradReduce, Param, ParamInit};
use crate::backend::{Backend, GroupRows, NormStrategy};
use crate::error::{KernelError, Result};

/// PyTorch's default eps.
pub const LAYER_NORM_EPS: f32 = 1e-5;

pub struct LayerNorm<B: Backend> {
    name: String,
    pub gamma: Param<B>,
    pub beta: Param<B>,
    pub d: usize,
    pub eps: f32,
    x: Option<Slot>,
    out: Option<Slot>,
    mean: B::Buf,
    rstd: B::Buf,
    dy_xhat: B::Buf,
    /// takes the input gradient nobody reads (a LayerNorm on the step's input)
    spare: B::Buf,
    /// per-group gamma and beta gradients ([G, D] each) of this backward pass, and their layout
    group_gamma: B::Buf,
    group_beta: B::Buf,
    group_sums_for: Option<GroupRows>,
}

impl<B: Backend> LayerNorm<B> {
    /// gamma = 1, beta = 0 (PyTorch's initialization), eps 1e-5
    pub fn new(be: &B, prefix: &str, d: usize) -> Result<Self> {
        Self::with_eps(be, prefix, d, LAYER_NORM_EPS)
    }

    pub fn with_eps(be: &B, prefix: &str, d: usize, eps: f32) -> Result<Self> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(KernelError::Layer { layer: prefix.into(), msg: format!("eps must be positive, got {eps:e}") });
        }
        Ok(LayerNorm {
            name: prefix.to_string(),
            gamma: Param::new(be, format!("{prefix}.weight"), &[d], ParamInit::Ones)?,
            beta: Param::new(be, format!("{prefix}.bias"), &[d], ParamInit::Zeros)?,
            d,
            eps,
            x: None,
            out: None,
            mean: be.zeros(0)?,
            rstd: be.zeros(0)?,
            dy_xhat: be.zeros(0)?,
            spare: be.zeros(0)?,
            group_gamma: be.zeros(0)?,
            group_beta: be.zeros(0)?,
            group_sums_for: None,
        })
    }

    fn compute_group_sums(&mut self, s: &Step<B>, groups: &B::Groups) -> Result<()> {
        if self.group_sums_for.as_ref() == Some(groups.as_ref()) {
            return Ok(());
        }
        let (x, out) = kept(&self.name, self.x, self.out)?;
        let (be, g) = (s.be, groups.as_ref().groups());
        be.resize(&mut self.group_gamma, g * self.d)?;
        be.resize(&mut self.group_beta, g * self.d)?;
        be.group_row_sums(&mut self.group_gamma, &self.dy_xhat, self.d, groups, s.per_example(x))?;
        be.group_row_sums(&mut self.group_beta, s.grad(out)?, self.d, groups, s.per_example(x))?;
        self.group_sums_for = Some(groups.as_ref().clone());
        Ok(())
    }
}

impl<B: Backend> Layer<B> for LayerNorm<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, s: &mut Step<B>, x: Slot) -> Result<Slot> {
        check_input(s, &self.name, x, self.d)?;
        let out = s.slot(&mut self.out)?;
        self.x = Some(x);
        self.group_sums_for = None;
        let rows = s.rows(x);
        let (be, d, eps) = (s.be, self.d, self.eps);
        be.resize(&mut self.mean, rows)?;
        be.resize(&mut self.rstd, rows)?;
        let (mean, rstd, gamma, beta) = (&mut self.mean, &mut self.rstd, &self.gamma.value, &self.beta.value);
        s.write_act(out, s.per_example(x), |s, y| {
            be.resize(y, rows * d)?;
            be.layer_norm_forward(y, mean, rstd, s.act(x)?, gamma, beta, d, eps)
        })?;
        Ok(out)
    }

    fn backward(&mut self, s: &mut Step<B>, acc: bool) -> Result<()> {
        let (x, out) = kept(&self.name, self.x, self.out)?;
        self.group_sums_for = None; // a new backward pass: new per-group sums
        let (be, d, rows) = (s.be, self.d, s.rows(x));
        be.resize(&mut self.dy_xhat, rows * d)?;
        let (dy_xhat, gamma, mean, rstd) = (&mut self.dy_xhat, &self.gamma.value, &self.mean, &self.rstd);
        if !s.needs_grad(x) {
            // the dx this kernel also writes is not wanted: a scratch takes it
            be.resize(&mut self.spare, rows * d)?;
            return be.layer_norm_backward(&mut self.spare, dy_xhat, s.grad(out)?, s.act(x)?, gamma, mean, rstd, d);
        }
        s.write_grad(x, acc, |s, dx| {
            be.resize(dx, rows * d)?;
            be.layer_norm_backward(dx, dy_xhat, s.grad(out)?, s.act(x)?, gamma, mean, rstd, d)
        })
    }

    fn add_group_sq_norms(
        &mut self,
        s: &Step<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        _: NormStrategy,
    ) -> Result<()> {
        self.compute_group_sums(s, groups)?;
        s.be.add_row_sq_norms(norms, &self.group_gamma, self.d)?;
        s.be.add_row_sq_norms(norms, &self.group_beta, self.d)
    }

    fn param_grads(&mut self, s: &Step<B>, reduce: &GradReduce<B>) -> Result<()> {
        let (_, out) = kept(&self.name, self.x, self.out)?;
        let Some(factors) = reduce.factors else {
            s.be.sum_rows(&mut self.gamma.grad, &self.dy_xhat, self.d)?;
            return s.be.sum_rows(&mut self.beta.grad, s.grad(out)?, self.d);
        };
        self.compute_group_sums(s, reduce.groups)?;
        s.be.weighted_row_sum(&mut self.gamma.grad, &self.group_gamma, factors, self.d, false)?;
        s.be.weighted_row_sum(&mut self.beta.grad, &self.group_beta, factors, self.d, false)
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        f(&self.gamma);
        f(&self.beta);
    }
    fn visit_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.gamma);
        f(&mut self.beta);
    }
}
