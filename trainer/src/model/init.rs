//! PyTorch's default initialization from a seeded stream: Linear weight and bias U(-1/sqrt(in),
//! 1/sqrt(in)), Embedding N(0, 1); LayerNorm starts at weight 1, bias 0 (set by the layer itself).

use kernels::nn::{Embedding, Linear};
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

    fn uniform_values(&mut self, n: usize, bound: f64) -> Vec<f32> {
        (0..n).map(|_| ((2.0 * self.uniform() - 1.0) * bound) as f32).collect()
    }

    pub fn linear<B: Backend>(&mut self, be: &B, layer: &mut Linear<B>) -> kernels::Result<()> {
        let bound = 1.0 / (layer.d_in as f64).sqrt();
        layer.weight.value = be.upload(&self.uniform_values(layer.d_in * layer.d_out, bound))?;
        layer.bias.value = be.upload(&self.uniform_values(layer.d_out, bound))?;
        Ok(())
    }

    pub fn embedding<B: Backend>(&mut self, be: &B, layer: &mut Embedding<B>) -> kernels::Result<()> {
        let values: Vec<f32> = (0..layer.vocab * layer.d).map(|_| self.normal() as f32).collect();
        layer.table.value = be.upload(&values)?;
        Ok(())
    }
}
