//! PyTorch's default initialization from a seeded stream, driven by each parameter's `init`: Linear
//! weight and bias U(-1/sqrt(in), 1/sqrt(in)), Embedding N(0, 1); LayerNorm weight 1, bias 0 (set by
//! the layer itself). Parameters draw in visiting order, so a model's initial weights depend only on
//! its seed and its layer order.

use kernels::nn::{Layer, ParamInit};
use kernels::Backend;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

pub struct Init(ChaCha8Rng);

impl Init {
    pub fn new(seed: u64) -> Self {
        Init(ChaCha8Rng::seed_from_u64(seed))
    }

    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Draws every parameter of `layer` that starts random.
    pub fn params<B: Backend>(&mut self, be: &B, layer: &mut dyn Layer<B>) -> kernels::Result<()> {
        let mut result = Ok(());
        layer.visit_mut(&mut |p| {
            if result.is_err() {
                return;
            }
            let n = p.numel();
            let values: Option<Vec<f32>> = match p.init {
                ParamInit::Uniform { bound } => {
                    Some((0..n).map(|_| ((2.0 * self.uniform() - 1.0) * bound) as f32).collect())
                }
                ParamInit::Normal { std } => Some((0..n).map(|_| (self.normal() * std) as f32).collect()),
                ParamInit::Ones | ParamInit::Zeros => None,
            };
            if let Some(v) = values {
                match be.upload(&v) {
                    Ok(buf) => p.value = buf,
                    Err(e) => result = Err(e),
                }
            }
        });
        result
    }
}
