//! Optimizers on the device: SGD with momentum and AdamW, PyTorch semantics, state kept per parameter.

use crate::backend::{AdamW, Backend};
use crate::error::{KernelError, Result};
use crate::nn::Param;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { lr: f32, momentum: f32, weight_decay: f32 },
    AdamW(AdamW),
}

impl OptimizerKind {
    pub fn sgd(lr: f32) -> Self {
        OptimizerKind::Sgd { lr, momentum: 0.0, weight_decay: 0.0 }
    }
    pub fn adamw(lr: f32) -> Self {
        OptimizerKind::AdamW(AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 })
    }
}

pub struct Optimizer<B: Backend> {
    pub kind: OptimizerKind,
    /// (momentum or first moment, second moment) per parameter, allocated on the first step
    state: Vec<(B::Buf, B::Buf)>,
    steps: u64,
}

impl<B: Backend> Optimizer<B> {
    pub fn new(kind: OptimizerKind) -> Self {
        Optimizer { kind, state: Vec::new(), steps: 0 }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Sets the learning rate of the next steps (a schedule's value at this step).
    pub fn set_lr(&mut self, lr: f32) {
        match &mut self.kind {
            OptimizerKind::Sgd { lr: l, .. } => *l = lr,
            OptimizerKind::AdamW(h) => h.lr = lr,
        }
    }

    /// The state to checkpoint: steps taken and, per parameter, its two state buffers (empty before
    /// the first step, or when the optimizer keeps none).
    pub fn state(&self, be: &B) -> Result<(u64, Vec<(Vec<f32>, Vec<f32>)>)> {
        let st = self.state.iter().map(|(m, v)| Ok((be.download(m)?, be.download(v)?))).collect::<Result<_>>()?;
        Ok((self.steps, st))
    }

    /// Restores a checkpointed state ([`Optimizer::state`]).
    pub fn set_state(&mut self, be: &B, steps: u64, state: &[(Vec<f32>, Vec<f32>)]) -> Result<()> {
        self.state = state.iter().map(|(m, v)| Ok((be.upload(m)?, be.upload(v)?))).collect::<Result<_>>()?;
        self.steps = steps;
        Ok(())
    }

    /// One update of every parameter from its `grad`.
    pub fn step(&mut self, be: &B, params: Vec<&mut Param<B>>) -> Result<()> {
        if self.state.is_empty() {
            self.state = params
                .iter()
                .map(|p| {
                    Ok(match self.kind {
                        OptimizerKind::Sgd { momentum, .. } if momentum == 0.0 => (be.zeros(0)?, be.zeros(0)?),
                        OptimizerKind::Sgd { .. } => (be.zeros(p.numel())?, be.zeros(0)?),
                        OptimizerKind::AdamW(_) => (be.zeros(p.numel())?, be.zeros(p.numel())?),
                    })
                })
                .collect::<Result<_>>()?;
        }
        if self.state.len() != params.len() {
            return Err(KernelError::Invalid {
                op: "Optimizer::step",
                msg: format!("optimizer holds state for {} parameters, given {}", self.state.len(), params.len()),
            });
        }
        self.steps += 1;
        for (p, (m, v)) in params.into_iter().zip(self.state.iter_mut()) {
            match self.kind {
                OptimizerKind::Sgd { lr, momentum, weight_decay } => {
                    be.sgd_step(&mut p.value, &p.grad, m, lr, momentum, weight_decay, self.steps == 1)?
                }
                OptimizerKind::AdamW(h) => be.adamw_step(&mut p.value, &p.grad, m, v, &h, self.steps)?,
            }
        }
        Ok(())
    }
}
