//! medtrain's compute layer: buffers on a device ([`Backend`]), layers with explicit forward and
//! backward ([`nn`]), optimizers, and the DP-SGD primitives (per-group squared gradient norms from one
//! backward pass, clipped accumulation). It knows nothing of medicine, files or privacy policy.

pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod nn;
pub mod optim;

pub use backend::{Activation, AdamW, Backend, Gemm, GroupRows, MaskFill, MatView, NoiseKey, NormStrategy};
pub use cpu::Cpu;
pub use error::{KernelError, Result};
pub use optim::{Optimizer, OptimizerKind};
