//! The lab-series MLP: x: [B, T*F] -> Linear(T*F, H) ReLU Linear(H, H) ReLU Linear(H, K).
//! Module names as PyTorch's `nn.Sequential`: net.0, net.2, net.4.

use super::{Batch, Init, Inputs, Model};
use kernels::nn::{GradReduce, Linear, Param};
use kernels::{Backend, GroupRows, KernelError, NormStrategy, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub outputs: usize,
}

pub struct Mlp<B: Backend> {
    pub cfg: MlpConfig,
    l0: Linear<B>,
    l2: Linear<B>,
    l4: Linear<B>,
    h1: B::Buf,
    r1: B::Buf,
    h2: B::Buf,
    r2: B::Buf,
    out: B::Buf,
    d_out: B::Buf,
    d_r2: B::Buf,
    d_h2: B::Buf,
    d_r1: B::Buf,
    d_h1: B::Buf,
}

impl<B: Backend> Mlp<B> {
    pub fn new(be: &B, cfg: MlpConfig, seed: u64) -> Result<Self> {
        let z = || be.zeros(0);
        let mut m = Mlp {
            l0: Linear::new(be, "net.0", cfg.inputs, cfg.hidden)?,
            l2: Linear::new(be, "net.2", cfg.hidden, cfg.hidden)?,
            l4: Linear::new(be, "net.4", cfg.hidden, cfg.outputs)?,
            cfg,
            h1: z()?,
            r1: z()?,
            h2: z()?,
            r2: z()?,
            out: z()?,
            d_out: z()?,
            d_r2: z()?,
            d_h2: z()?,
            d_r1: z()?,
            d_h1: z()?,
        };
        let mut init = Init::new(seed);
        init.linear(be, &mut m.l0)?;
        init.linear(be, &mut m.l2)?;
        init.linear(be, &mut m.l4)?;
        Ok(m)
    }

    fn input<'a>(&self, be: &B, batch: &'a Batch<B>) -> Result<&'a B::Buf> {
        match &batch.inputs {
            Inputs::Dense { x, features } if batch.steps * features == self.cfg.inputs => {
                let want = batch.examples * self.cfg.inputs;
                if be.len(x) != want {
                    return Err(KernelError::Shape { op: "Mlp", what: "x", expected: want, got: be.len(x) });
                }
                Ok(x)
            }
            Inputs::Dense { features, .. } => Err(KernelError::Shape {
                op: "Mlp",
                what: "x features per example (T*F)",
                expected: self.cfg.inputs,
                got: batch.steps * features,
            }),
            Inputs::Tokens { .. } => {
                Err(KernelError::Invalid { op: "Mlp", msg: "takes float features, not token ids".into() })
            }
        }
    }
}

impl<B: Backend> Model<B> for Mlp<B> {
    fn params(&self) -> Vec<&Param<B>> {
        [self.l0.params(), self.l2.params(), self.l4.params()].into_iter().flatten().collect()
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        [self.l0.params_mut(), self.l2.params_mut(), self.l4.params_mut()].into_iter().flatten().collect()
    }
    fn outputs(&self) -> usize {
        self.cfg.outputs
    }

    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        let x = self.input(be, batch)?;
        let b = batch.examples;
        self.l0.forward(be, &mut self.h1, x, b)?;
        be.resize(&mut self.r1, be.len(&self.h1))?;
        be.relu_forward(&mut self.r1, &self.h1)?;
        self.l2.forward(be, &mut self.h2, &self.r1, b)?;
        be.resize(&mut self.r2, be.len(&self.h2))?;
        be.relu_forward(&mut self.r2, &self.h2)?;
        self.l4.forward(be, &mut self.out, &self.r2, b)
    }

    fn logits(&self) -> &B::Buf {
        &self.out
    }

    fn backward(&mut self, be: &B, batch: &Batch<B>, dlogits: &B::Buf) -> Result<()> {
        let b = batch.examples;
        be.resize(&mut self.d_out, be.len(dlogits))?;
        be.copy(&mut self.d_out, dlogits)?;
        self.l4.backward_input(be, &mut self.d_r2, dlogits, b)?;
        be.resize(&mut self.d_h2, be.len(&self.d_r2))?;
        be.relu_backward(&mut self.d_h2, &self.d_r2, &self.r2)?;
        self.l2.backward_input(be, &mut self.d_r1, &self.d_h2, b)?;
        be.resize(&mut self.d_h1, be.len(&self.d_r1))?;
        be.relu_backward(&mut self.d_h1, &self.d_r1, &self.r1)
    }

    fn add_group_sq_norms(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        norms: &mut B::Buf,
        groups: &GroupRows,
        strategy: NormStrategy,
    ) -> Result<()> {
        let x = self.input(be, batch)?;
        self.l0.add_group_sq_norms(be, norms, x, &self.d_h1, groups, 1, strategy)?;
        self.l2.add_group_sq_norms(be, norms, &self.r1, &self.d_h2, groups, 1, strategy)?;
        self.l4.add_group_sq_norms(be, norms, &self.r2, &self.d_out, groups, 1, strategy)
    }

    fn param_grads(&mut self, be: &B, batch: &Batch<B>, reduce: &GradReduce<B>) -> Result<()> {
        let x = self.input(be, batch)?;
        self.l0.param_grads(be, x, &self.d_h1, reduce, 1)?;
        self.l2.param_grads(be, &self.r1, &self.d_h2, reduce, 1)?;
        self.l4.param_grads(be, &self.r2, &self.d_out, reduce, 1)
    }
}
