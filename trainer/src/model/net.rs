//! A model as one composition of layers ([`kernels::nn::Layer`]) and the tape its steps write: the
//! training step's [`Model`] calls map one to one onto the layer contract, with no per-model walks.

use super::{Batch, Head, Init, Inputs, Model};
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
    /// a lab series, one row per time step (`[B*T, F]`), and a note's token ids `[B, L]`
    Both { features: usize },
}

/// The masks of a step, by index (what a [`kernels::nn::Masked`] branch selects): the series' (the
/// batch's `mask`), the note's (the batch's `mask` for a text-only model), and the series' with a
/// leading column of ones for a prepended `[CLS]` row.
pub const SERIES_MASK: usize = 0;
pub const TOKEN_MASK: usize = 1;
pub const SERIES_CLS_MASK: usize = 2;

pub struct Net<B: Backend> {
    name: &'static str,
    root: Sequential<B>,
    tape: Tape<B>,
    out: Option<Slot>,
    outputs: usize,
    input: NetInput,
    head: Head,
    /// the series mask with a leading column of ones ([`SERIES_CLS_MASK`]), made at each forward
    cls_mask: B::Buf,
    ones: B::Buf,
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
        let mut net = Net {
            name,
            root,
            tape: Tape::new(),
            out: None,
            outputs,
            input,
            head: Head::for_outputs(outputs),
            cls_mask: be.zeros(0)?,
            ones: be.zeros(0)?,
            empty: be.zeros(0)?,
        };
        Init::new(seed).params(be, &mut net.root)?;
        Ok(net)
    }

    /// The same model with a stated head (its outputs must agree).
    pub fn with_head(mut self, head: Head) -> Result<Self> {
        if head.outputs() != self.outputs {
            return Err(KernelError::Layer {
                layer: self.name.into(),
                msg: format!("a {head:?} head needs {} outputs, the model has {}", head.outputs(), self.outputs),
            });
        }
        self.head = head;
        Ok(self)
    }

    pub fn root_mut(&mut self) -> &mut Sequential<B> {
        &mut self.root
    }

    /// The series mask with a leading column of ones, for the layers after a prepended `[CLS]` row.
    fn make_cls_mask(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        let (b, t) = (batch.examples, batch.steps);
        be.resize(&mut self.ones, b)?;
        be.fill(&mut self.ones, 1.0)?;
        be.resize(&mut self.cls_mask, b * (t + 1))?;
        be.copy_columns(&mut self.cls_mask, t + 1, 0, &self.ones, 1, 0, 1, b)?;
        be.copy_columns(&mut self.cls_mask, t + 1, 1, &batch.mask, t, 0, t, b)
    }

    pub fn root(&self) -> &Sequential<B> {
        &self.root
    }

    fn step<'a>(&'a mut self, be: &'a B, batch: &'a Batch<B>) -> Result<(Step<'a, B>, &'a mut Sequential<B>)> {
        let name = self.name;
        let check_features = |got: usize, want: usize| {
            if got != want {
                return Err(KernelError::Tensor {
                    tensor: format!("{name} input x features (F)"),
                    expected: format!("{want}"),
                    got: format!("{got}"),
                });
            }
            Ok(())
        };
        let mask_len = |m: &B::Buf, t: usize, what: &str| {
            if be.len(m) != batch.examples * t {
                return Err(KernelError::Tensor {
                    tensor: format!("{name} {what}"),
                    expected: format!("[{}, {t}]", batch.examples),
                    got: format!("{} values", be.len(m)),
                });
            }
            Ok(())
        };
        mask_len(&batch.mask, batch.steps, "mask")?;
        let step = Step::new(be, &mut self.tape, batch.examples);
        let (step, token_mask) = match (self.input, &batch.inputs) {
            (NetInput::Flat { width }, Inputs::Dense { x, features }) => {
                if batch.steps * features != width {
                    return Err(KernelError::Tensor {
                        tensor: format!("{name} input x (time steps x features per example)"),
                        expected: format!("{width}"),
                        got: format!("{} x {features}", batch.steps),
                    });
                }
                (step.with_input(x, 1), &batch.mask)
            }
            (NetInput::Steps { features: f }, Inputs::Dense { x, features }) => {
                check_features(*features, f)?;
                (step.with_input(x, batch.steps), &batch.mask)
            }
            (NetInput::Tokens, Inputs::Tokens { ids }) => (step.with_ids(ids, batch.steps), &batch.mask),
            (NetInput::Both { features: f }, Inputs::Both { x, features, ids, tokens, token_mask }) => {
                check_features(*features, f)?;
                mask_len(token_mask, *tokens, "token mask")?;
                (step.with_input(x, batch.steps).with_ids(ids, *tokens), token_mask)
            }
            (want, _) => {
                let wants = match want {
                    NetInput::Tokens => "token ids only",
                    NetInput::Both { .. } => "a lab series and token ids",
                    _ => "float features only",
                };
                return Err(KernelError::Layer { layer: name.into(), msg: format!("takes {wants}") });
            }
        };
        let step = step.with_masks(vec![&batch.mask, token_mask, &self.cls_mask]);
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
    fn head(&self) -> Head {
        self.head
    }
    fn forward(&mut self, be: &B, batch: &Batch<B>) -> Result<()> {
        if matches!(self.input, NetInput::Steps { .. } | NetInput::Both { .. }) {
            self.make_cls_mask(be, batch)?;
        }
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
