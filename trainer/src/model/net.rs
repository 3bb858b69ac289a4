//! A model as one composition of layers ([`kernels::nn::Layer`]) and the tape its steps write: the
//! training step's [`Model`] calls map one to one onto the layer contract, with no per-model walks.

use super::{Batch, Init, Inputs, Model};
use kernels::nn::{GradReduce, Layer, Param, Sequential, Slot, Step, Tape};
use kernels::{Backend, KernelError, NormStrategy, Result};

/// How a model reads a batch's inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetInput {
    /// float features, one row per example (`[B, T*F]`, the time steps flattened)
    Flat { width: usize },
    /// float features, one row per time step (`[B*T, F]`)
    Steps { features: usize },
    /// token ids `[B, T]`
    Tokens,
}

pub struct Net<B: Backend> {
    name: &'static str,
    root: Sequential<B>,
    tape: Tape<B>,
    out: Option<Slot>,
    outputs: usize,
    input: NetInput,
    /// the logits before any forward
    empty: B::Buf,
}

impl<B: Backend> Net<B> {
    /// A model named `name` (for errors) with `outputs` logits per example, its parameters drawn by a
    /// seeded initializer in visiting order.
    pub fn new(
        name: &'static str,
        root: Sequential<B>,
        input: NetInput,
        outputs: usize,
        seed: u64,
        be: &B,
    ) -> Result<Self> {
        let mut net = Net { name, root, tape: Tape::new(), out: None, outputs, input, empty: be.zeros(0)? };
        Init::new(seed).params(be, &mut net.root)?;
        Ok(net)
    }

    pub fn root(&self) -> &Sequential<B> {
        &self.root
    }

    fn step<'a>(&'a mut self, be: &'a B, batch: &'a Batch<B>) -> Result<(Step<'a, B>, &'a mut Sequential<B>)> {
        let step = Step::new(be, &mut self.tape, batch.examples).with_mask(&batch.mask);
        let step = match (self.input, &batch.inputs) {
            (NetInput::Flat { width }, Inputs::Dense { x, features }) => {
                if batch.steps * features != width {
                    return Err(KernelError::Tensor {
                        tensor: format!("{} input x (time steps x features per example)", self.name),
                        expected: format!("{width}"),
                        got: format!("{} x {features}", batch.steps),
                    });
                }
                step.with_input(x, 1)
            }
            (NetInput::Steps { features: f }, Inputs::Dense { x, features }) => {
                if *features != f {
                    return Err(KernelError::Tensor {
                        tensor: format!("{} input x features (F)", self.name),
                        expected: format!("{f}"),
                        got: format!("{features}"),
                    });
                }
                step.with_input(x, batch.steps)
            }
            (NetInput::Tokens, Inputs::Tokens { ids }) => step.with_ids(ids, batch.steps),
            (NetInput::Tokens, Inputs::Dense { .. }) => {
                return Err(KernelError::Layer {
                    layer: self.name.into(),
                    msg: "takes token ids, not float features".into(),
                })
            }
            (_, Inputs::Tokens { .. }) => {
                return Err(KernelError::Layer {
                    layer: self.name.into(),
                    msg: "takes float features, not token ids".into(),
                })
            }
        };
        if be.len(&batch.mask) != batch.examples * batch.steps {
            return Err(KernelError::Tensor {
                tensor: format!("{} mask", self.name),
                expected: format!("[{}, {}]", batch.examples, batch.steps),
                got: format!("{} values", be.len(&batch.mask)),
            });
        }
        Ok((step, &mut self.root))
    }
}

impl<B: Backend> Model<B> for Net<B> {
    fn params(&self) -> Vec<&Param<B>> {
        let mut v = Vec::new();
        self.root.visit(&mut |p| v.push(p));
        v
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut v = Vec::new();
        self.root.visit_mut(&mut |p| v.push(p));
        v
    }
    fn outputs(&self) -> usize {
        self.outputs
    }
    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        let (name, outputs) = (self.name, self.outputs);
        let (mut s, root) = self.step(be, batch)?;
        let out = root.forward(&mut s, Slot::INPUT)?;
        let got = be.len(s.act(out)?);
        if s.per_example(out) != 1 || got != batch.examples * outputs {
            return Err(KernelError::Tensor {
                tensor: format!("{name} logits"),
                expected: format!("[{}, {outputs}]", batch.examples),
                got: format!("{got} values"),
            });
        }
        self.out = Some(out);
        Ok(())
    }
    fn logits(&self) -> &B::Buf {
        self.out.and_then(|o| self.tape.act(o)).unwrap_or(&self.empty)
    }
    fn backward(&mut self, be: &B, batch: &Batch<B>, dlogits: &B::Buf) -> Result<()> {
        let out = self
            .out
            .ok_or_else(|| KernelError::Layer { layer: self.name.into(), msg: "backward before forward".into() })?;
        let (mut s, root) = self.step(be, batch)?;
        s.set_grad(out, dlogits)?;
        root.backward(&mut s, false)
    }
    fn add_group_sq_norms(
        &mut self,
        be: &B,
        batch: &Batch<B>,
        norms: &mut B::Buf,
        groups: &B::Groups,
        strategy: NormStrategy,
    ) -> Result<()> {
        let (s, root) = self.step(be, batch)?;
        root.add_group_sq_norms(&s, norms, groups, strategy)
    }
    fn param_grads(&mut self, be: &B, batch: &Batch<B>, reduce: &GradReduce<B>) -> Result<()> {
        let (s, root) = self.step(be, batch)?;
        root.param_grads(&s, reduce)
    }
    fn check_private(&self) -> Result<()> {
        self.root.check_private()
    }
}
