//! Typed errors of the compute layer: they carry the op and the shapes, never data values.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("shape mismatch in {op}: {what}: expected {expected}, got {got}")]
    Shape { op: &'static str, what: &'static str, expected: usize, got: usize },
    /// A layer's input or parameter of the wrong shape: names the tensor (its module path) and both shapes.
    #[error("shape mismatch in {tensor}: expected {expected}, got {got}")]
    Tensor { tensor: String, expected: String, got: String },
    /// A layer used out of order or in a way it does not support (named by its module path).
    #[error("{layer}: {msg}")]
    Layer { layer: String, msg: String },
    #[error("invalid argument to {op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("device unavailable: {0}")]
    Device(String),
    /// No CUDA device to run on, and what is missing (`cuda::probe`).
    #[error("CUDA backend unavailable: {0}")]
    CudaUnavailable(crate::cuda::ProbeError),
    #[error("out of memory in {op}: cannot allocate {elements} elements of {element_bytes} bytes")]
    OutOfMemory { op: &'static str, elements: usize, element_bytes: usize },
}

pub type Result<T> = std::result::Result<T, KernelError>;

/// Checks that a buffer holds exactly the `expected` number of elements.
pub(crate) fn check_len(op: &'static str, what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(KernelError::Shape { op, what, expected, got });
    }
    Ok(())
}

/// Checks that a buffer holds at least `expected` elements (strided views).
pub(crate) fn check_min_len(op: &'static str, what: &'static str, expected: usize, got: usize) -> Result<()> {
    if got < expected {
        return Err(KernelError::Shape { op, what, expected, got });
    }
    Ok(())
}

/// Not `#[from]`: the probe's message is already in this error's, and a source would repeat it in an
/// error chain.
impl From<crate::cuda::ProbeError> for KernelError {
    fn from(e: crate::cuda::ProbeError) -> Self {
        KernelError::CudaUnavailable(e)
    }
}
