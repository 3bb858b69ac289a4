//! The lab-series MLP: x: [B, T*F] -> Linear(T*F, H) ReLU Linear(H, H) ReLU Linear(H, K).
//! Module names as PyTorch's `nn.Sequential`: net.0, net.2, net.4.

use super::{Net, NetInput};
use kernels::nn::{boxed, Act, Linear, Sequential};
use kernels::{Activation, Backend, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub outputs: usize,
}

pub struct Mlp;

impl Mlp {
    #[allow(clippy::new_ret_no_self)]
    pub fn new<B: Backend>(be: &B, cfg: MlpConfig, seed: u64) -> Result<Net<B>> {
        let root = Sequential::new(
            "net",
            vec![
                boxed(Linear::new(be, "net.0", cfg.inputs, cfg.hidden)?),
                boxed(Act::new("net.1", Activation::Relu)),
                boxed(Linear::new(be, "net.2", cfg.hidden, cfg.hidden)?),
                boxed(Act::new("net.3", Activation::Relu)),
                boxed(Linear::new(be, "net.4", cfg.hidden, cfg.outputs)?),
            ],
        )?;
        Net::new("Mlp", root, NetInput::Flat { width: cfg.inputs }, cfg.outputs, seed, be)
    }
}
