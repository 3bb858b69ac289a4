//! A named parameter tensor with its gradient, and how gradients are reduced over privacy groups.

use crate::backend::Backend;
use crate::error::Result;

/// How a parameter starts (PyTorch's defaults), for a model's seeded initializer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamInit {
    /// U(-bound, bound): a Linear's weight and bias, bound = 1/sqrt(fan_in)
    Uniform { bound: f64 },
    /// N(0, std^2): an Embedding table (std 1, PyTorch), or any weight of a Hugging Face BERT (0.02)
    Normal { std: f64 },
    /// all ones: a LayerNorm's weight
    Ones,
    /// all zeros: a LayerNorm's bias
    Zeros,
}

/// A parameter: value and gradient buffers of the same shape. Names follow the PyTorch module paths
/// of the reference models (`blocks.0.att.qkv.weight`), shapes PyTorch's layouts (Linear `[out, in]`).
pub struct Param<B: Backend> {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: ParamInit,
    pub value: B::Buf,
    pub grad: B::Buf,
    /// not trained: no gradient, no noise, no update (a [`Frozen`](super::Frozen) layer's parameters)
    pub frozen: bool,
}

impl<B: Backend> Param<B> {
    /// A zero-filled parameter (whatever its `init`: a model's initializer or a checkpoint sets it).
    pub fn new(be: &B, name: impl Into<String>, shape: &[usize], init: ParamInit) -> Result<Self> {
        let n = shape.iter().product();
        let mut value = be.zeros(n)?;
        if init == ParamInit::Ones {
            be.fill(&mut value, 1.0)?;
        }
        Ok(Param { name: name.into(), shape: shape.to_vec(), init, value, grad: be.zeros(n)?, frozen: false })
    }
    pub fn zeros(be: &B, name: impl Into<String>, shape: &[usize]) -> Result<Self> {
        Self::new(be, name, shape, ParamInit::Zeros)
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How `param_grads` reduces a batch's gradient: over `groups` (contiguous examples), each group's
/// gradient scaled by `factors[g]` (the clip factor), or plainly summed when `factors` is None.
pub struct GradReduce<'a, B: Backend> {
    pub groups: &'a B::Groups,
    pub factors: Option<&'a B::Buf>,
}

impl<'a, B: Backend> GradReduce<'a, B> {
    pub fn plain(groups: &'a B::Groups) -> Self {
        GradReduce { groups, factors: None }
    }
}
