//! One training step, as a fixed sequence of phases that cannot be reordered or skipped:
//! forward -> loss -> backward -> (DP) per-group squared norms -> clip factors -> clipped gradient sum
//! -> Gaussian noise -> divide by the expected batch size -> optimizer step.
//!
//! Without DP the same code runs with one group and no clipping or noise, and the loss is the batch mean.
//! With DP each group's (patient's) gradient is the gradient of the sum of its examples' losses, clipped
//! to `clip_norm`; noise `N(0, (noise_multiplier * clip_norm)^2)` goes on every coordinate of the sum,
//! which is then divided by the expected batch size (q * subjects), not the realized one.

use crate::model::{Batch, Head, HostBatch, Model, Targets};
use crate::privacy::noise::{snapping_grid, NoiseSource};
use kernels::nn::GradReduce;
use kernels::{Backend, GroupRows, KernelError, NormStrategy, Optimizer, OptimizerKind, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpSgd {
    pub clip_norm: f32,
    pub noise_multiplier: f32,
    /// q * N: the normalizer of the noisy sum
    pub expected_batch: f32,
}

pub enum Privacy {
    NonPrivate,
    Dp { params: DpSgd, noise: NoiseSource },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepStats {
    /// mean loss over the batch's examples
    pub loss: f64,
    /// groups whose gradient norm exceeded the clip norm (DP only)
    pub clipped_groups: usize,
    pub groups: usize,
}

/// The model with its optimizer and privacy: the weights change only through [`Trainer::step`], which
/// clips, adds noise and updates in one call when the trainer is private (its fields are not public,
/// so no caller can update or clip around it).
pub struct Trainer<B: Backend, M: Model<B>> {
    model: M,
    optimizer: Optimizer<B>,
    privacy: Privacy,
    strategy: NormStrategy,
    losses: B::Buf,
    dlogits: B::Buf,
    norms: B::Buf,
    factors: B::Buf,
    /// the sum of the micro-batches' gradients, one per parameter (a step of several micro-batches)
    grad_sums: Vec<B::Buf>,
    steps: u64,
}

/// A step's batch cut into micro-batches of whole privacy groups, each at most `max_examples` examples
/// (a group larger than that is a micro-batch of its own: a group is never split, its norm is one
/// norm), for a step whose activations would not fit in memory at once. The step's update is the
/// same up to rounding: every group is clipped on its own and the clipped sums add. An empty batch
/// is one empty micro-batch (a DP step that adds only noise).
pub fn micro_batches(batch: &HostBatch, groups: &GroupRows, max_examples: usize) -> Vec<(HostBatch, GroupRows)> {
    let o = &groups.offsets;
    let mut cuts = vec![0];
    for g in 0..groups.groups() {
        let start = *cuts.last().unwrap_or(&0);
        // an empty group never starts a micro-batch (it would be one of no examples)
        if o[g + 1] - o[start] > max_examples && g > start && o[g + 1] > o[g] {
            cuts.push(g);
        }
    }
    cuts.push(groups.groups());
    cuts.dedup();
    if cuts.len() <= 2 {
        return vec![(batch.clone(), groups.clone())];
    }
    cuts.windows(2)
        .map(|w| {
            let (first, last) = (o[w[0]], o[w[1]]);
            let examples: Vec<usize> = (first..last).collect();
            let offsets = o[w[0]..=w[1]].iter().map(|&e| e - first).collect();
            (batch.select(&examples), GroupRows { offsets })
        })
        .collect()
}

/// losses: [B] = per-example loss; dlogits = grad_scale * its gradient. The head decides the loss; the
/// targets must be of its kind.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grad<B: Backend>(
    be: &B,
    losses: &mut B::Buf,
    dlogits: &mut B::Buf,
    logits: &B::Buf,
    targets: &Targets<B>,
    examples: usize,
    head: Head,
    grad_scale: f32,
) -> Result<()> {
    let outputs = head.outputs();
    be.resize(losses, examples)?;
    be.resize(dlogits, examples * outputs)?;
    match (head, targets) {
        (Head::Binary, Targets::Binary(y)) => be.bce_with_logits(losses, dlogits, logits, y, grad_scale),
        (Head::Multiclass(k), Targets::Classes(c)) => be.cross_entropy(losses, dlogits, logits, c, k, grad_scale),
        (Head::Regression { huber }, Targets::Real(y)) => {
            be.regression_loss(losses, dlogits, logits, y, huber, grad_scale)
        }
        (head, t) => Err(KernelError::Invalid {
            op: "loss",
            msg: format!(
                "a {head:?} head cannot train on {} targets",
                match t {
                    Targets::Binary(_) => "binary",
                    Targets::Classes(_) => "class",
                    Targets::Real(_) => "real-valued",
                }
            ),
        }),
    }
}

impl<B: Backend, M: Model<B>> Trainer<B, M> {
    pub fn new(be: &B, model: M, optimizer: OptimizerKind, privacy: Privacy) -> Result<Self> {
        if let Privacy::Dp { params, .. } = &privacy {
            let ok = params.clip_norm > 0.0
                && params.clip_norm.is_finite()
                && params.noise_multiplier >= 0.0
                && params.noise_multiplier.is_finite()
                && params.expected_batch > 0.0;
            if !ok {
                return Err(KernelError::Invalid {
                    op: "Trainer::new",
                    msg: format!("invalid DP parameters {params:?}"),
                });
            }
            // a layer without exact per-group norms would void the guarantee: refused by name
            model.check_private()?;
        }
        Ok(Trainer {
            model,
            optimizer: Optimizer::new(optimizer),
            privacy,
            strategy: NormStrategy::Auto,
            losses: be.zeros(0)?,
            dlogits: be.zeros(0)?,
            norms: be.zeros(0)?,
            factors: be.zeros(0)?,
            grad_sums: Vec::new(),
            steps: 0,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The model (read only: its weights change through [`Trainer::step`]).
    pub fn model(&self) -> &M {
        &self.model
    }

    pub fn is_private(&self) -> bool {
        matches!(self.privacy, Privacy::Dp { .. })
    }

    /// How the per-group norms are computed (the result does not depend on it beyond rounding).
    pub fn set_strategy(&mut self, strategy: NormStrategy) {
        self.strategy = strategy;
    }

    pub fn set_lr(&mut self, lr: f32) {
        self.optimizer.set_lr(lr);
    }

    /// The model's outputs on `batch` ([B, outputs]); changes no weight.
    pub fn predict(&mut self, be: &B, batch: &Batch<B>) -> Result<Vec<f32>> {
        be.scope(|| {
            self.model.forward(be, batch)?;
            be.download(self.model.logits())
        })
    }

    /// Weights (every parameter, in order) and optimizer state, for a checkpoint.
    #[allow(clippy::type_complexity)]
    pub fn checkpoint_state(&self, be: &B) -> Result<(Vec<Vec<f32>>, u64, Vec<(Vec<f32>, Vec<f32>)>)> {
        let weights = self.model.params().iter().map(|p| be.download(&p.value)).collect::<Result<_>>()?;
        let (opt_steps, opt) = self.optimizer.state(be)?;
        Ok((weights, opt_steps, opt))
    }

    /// Restores [`Trainer::checkpoint_state`] (a resumed run): the weights must match the model's
    /// parameters in number and size.
    pub fn restore(
        &mut self,
        be: &B,
        steps: u64,
        weights: &[Vec<f32>],
        opt_steps: u64,
        opt: &[(Vec<f32>, Vec<f32>)],
    ) -> Result<()> {
        let mut params = self.model.params_mut();
        if params.len() != weights.len() || params.iter().zip(weights).any(|(p, w)| p.numel() != w.len()) {
            return Err(KernelError::Invalid {
                op: "restore",
                msg: "the checkpoint's weights do not match the model's parameters".into(),
            });
        }
        for (p, w) in params.iter_mut().zip(weights) {
            p.value = be.upload(w)?;
        }
        self.optimizer.set_state(be, opt_steps, opt)?;
        self.steps = steps;
        Ok(())
    }

    /// Forward, loss, backward and the (clipped) gradient sum into every `param.grad`, without noise
    /// and without an update. Returns the per-group clip statistics.
    pub fn gradients(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        groups: &GroupRows,
        clip_norm: Option<f32>,
        grad_scale: f32,
    ) -> Result<StepStats> {
        be.scope(|| self.gradients_in_scope(be, batch, groups, clip_norm, grad_scale))
    }

    fn gradients_in_scope(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        groups: &GroupRows,
        clip_norm: Option<f32>,
        grad_scale: f32,
    ) -> Result<StepStats> {
        if groups.examples() != batch.examples {
            return Err(KernelError::Shape {
                op: "Trainer",
                what: "examples in the group layout",
                expected: batch.examples,
                got: groups.examples(),
            });
        }
        let head = self.model.head();
        self.model.forward(be, batch)?;
        loss_and_grad(
            be,
            &mut self.losses,
            &mut self.dlogits,
            self.model.logits(),
            &batch.targets,
            batch.examples,
            head,
            grad_scale,
        )?;
        self.model.backward(be, batch, &self.dlogits)?;
        let losses = be.download(&self.losses)?;
        let mut stats = StepStats {
            loss: losses.iter().map(|&l| l as f64).sum::<f64>() / batch.examples.max(1) as f64,
            clipped_groups: 0,
            groups: groups.groups(),
        };
        if !stats.loss.is_finite() {
            return Err(KernelError::Invalid {
                op: "training step",
                msg: format!(
                    "the loss is not finite at step {} (the model diverged): lower the learning rate",
                    self.steps
                ),
            });
        }
        let g = groups.groups();
        // the group layout goes to the device once per step
        let groups = &be.groups(groups)?;
        match clip_norm {
            None => self.model.param_grads(be, batch, &GradReduce::plain(groups))?,
            Some(c) => {
                be.resize(&mut self.norms, g)?;
                be.fill(&mut self.norms, 0.0)?;
                self.model.add_group_sq_norms(be, batch, &mut self.norms, groups, self.strategy)?;
                be.resize(&mut self.factors, g)?;
                be.clip_factors(&mut self.factors, &self.norms, c)?;
                stats.clipped_groups = be.download(&self.factors)?.iter().filter(|&&f| f < 1.0).count();
                self.model.param_grads(be, batch, &GradReduce { groups, factors: Some(&self.factors) })?;
            }
        }
        Ok(stats)
    }

    /// Adds every trained parameter's gradient to its sum (sets it, for the first micro-batch).
    fn add_to_grad_sums(&mut self, be: &B, first: bool) -> Result<()> {
        let trained: Vec<_> = self.model.params_mut().into_iter().filter(|p| !p.frozen).collect();
        while self.grad_sums.len() < trained.len() {
            self.grad_sums.push(be.zeros(0)?);
        }
        for (p, sum) in trained.into_iter().zip(&mut self.grad_sums) {
            if first {
                be.resize(sum, be.len(&p.grad))?;
                be.copy(sum, &p.grad)?;
            } else {
                be.add_assign(sum, &p.grad)?;
            }
        }
        Ok(())
    }

    /// One full training step. `groups`: the privacy groups of the batch (ignored without DP).
    pub fn step(&mut self, be: &B, batch: &Batch<B>, groups: &GroupRows) -> Result<StepStats> {
        be.scope(|| self.step_in_scope(be, batch, groups))
    }

    fn step_in_scope(&mut self, be: &B, batch: &Batch<B>, groups: &GroupRows) -> Result<StepStats> {
        self.micro_steps_in_scope(be, &[(batch, groups)])
    }

    /// One full training step on a batch given as micro-batches of whole groups ([`micro_batches`]):
    /// forward, backward and the (clipped) gradients of each in turn, their sum, then noise and the
    /// update once, as [`Trainer::step`] does for the whole batch.
    pub fn micro_step(&mut self, be: &B, parts: &[(&Batch<B>, &GroupRows)]) -> Result<StepStats> {
        be.scope(|| self.micro_steps_in_scope(be, parts))
    }

    fn micro_steps_in_scope(&mut self, be: &B, parts: &[(&Batch<B>, &GroupRows)]) -> Result<StepStats> {
        if parts.is_empty() {
            // no gradients would be computed, and the update would apply the last step's again
            return Err(KernelError::Invalid {
                op: "training step",
                msg: "no micro-batches (an empty batch is one empty micro-batch)".into(),
            });
        }
        let examples: usize = parts.iter().map(|(b, _)| b.examples).sum();
        let mut stats = StepStats::default();
        for (i, &(batch, groups)) in parts.iter().enumerate() {
            let s = match &self.privacy {
                Privacy::NonPrivate => {
                    let scale = 1.0 / examples.max(1) as f32;
                    self.gradients_in_scope(be, batch, &GroupRows::single(batch.examples), None, scale)?
                }
                Privacy::Dp { params, .. } => {
                    let clip = params.clip_norm;
                    self.gradients_in_scope(be, batch, groups, Some(clip), 1.0)?
                }
            };
            // one part: its mean loss as it is (no round trip through the sum)
            stats.loss += if parts.len() == 1 { s.loss } else { s.loss * batch.examples as f64 };
            stats.clipped_groups += s.clipped_groups;
            stats.groups += s.groups;
            if parts.len() > 1 {
                self.add_to_grad_sums(be, i == 0)?;
            }
        }
        if parts.len() > 1 {
            stats.loss /= examples.max(1) as f64;
        }
        if !self.is_private() {
            // without DP the step's layout is one group of all examples
            stats.groups = GroupRows::single(examples).groups();
        }
        if parts.len() > 1 {
            // the sums become the gradients (the old gradient buffers are the next step's sums)
            let sums = self.grad_sums.iter_mut();
            for (p, sum) in self.model.params_mut().into_iter().filter(|p| !p.frozen).zip(sums) {
                std::mem::swap(&mut p.grad, sum);
            }
        }
        if let Privacy::Dp { params, noise } = &self.privacy {
            let std = params.noise_multiplier * params.clip_norm;
            let inv = 1.0 / params.expected_batch;
            let grid = snapping_grid(std);
            // the noise key of a parameter is its index among all parameters, frozen ones included, so that
            // freezing a layer does not change the noise of the others; a frozen one gets none (it does
            // not change)
            for (i, p) in self.model.params_mut().into_iter().enumerate().filter(|(_, p)| !p.frozen) {
                let key = noise
                    .key(self.steps, i)
                    .map_err(|e| KernelError::Invalid { op: "add noise", msg: e.to_string() })?;
                be.add_normal(&mut p.grad, std, inv, grid, &key)?;
            }
        }
        let trained: Vec<_> = self.model.params_mut().into_iter().filter(|p| !p.frozen).collect();
        self.optimizer.step(be, trained)?;
        self.steps += 1;
        Ok(stats)
    }
}
