//! A named parameter tensor with its gradient, and how gradients are reduced over privacy groups.

use crate::backend::{Backend, GroupRows};
use crate::error::Result;

/// A parameter: value and gradient buffers of the same shape. Names follow the PyTorch module paths
/// of the reference models (`blocks.0.att.qkv.weight`), shapes PyTorch's layouts (Linear `[out, in]`).
pub struct Param<B: Backend> {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: B::Buf,
    pub grad: B::Buf,
}

impl<B: Backend> Param<B> {
    pub fn zeros(be: &B, name: impl Into<String>, shape: &[usize]) -> Result<Self> {
        let n = shape.iter().product();
        Ok(Param { name: name.into(), shape: shape.to_vec(), value: be.zeros(n)?, grad: be.zeros(n)? })
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How `param_grads` reduces a batch's gradient: over `groups` (contiguous examples), each group's
/// gradient scaled by `factors[g]` (the clip factor), or plainly summed when `factors` is None.
pub struct GradReduce<'a, B: Backend> {
    pub groups: &'a GroupRows,
    pub factors: Option<&'a B::Buf>,
}

impl<'a, B: Backend> GradReduce<'a, B> {
    pub fn plain(groups: &'a GroupRows) -> Self {
        GradReduce { groups, factors: None }
    }
}
