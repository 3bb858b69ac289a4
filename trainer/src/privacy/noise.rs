//! The secret key of a run's Gaussian noise, and the stream of each (step, parameter) draw.
//!
//! The key is 32 bytes from the OS's entropy source by default. A reproducibility run may fix it (its
//! seed then stays inside the node, like the key). Each draw uses its own ChaCha20 stream,
//! `step << 16 | parameter index`, so no two draws of a run share keystream; an index or step that
//! would not fit its bits (and so reuse another draw's stream) is an error in every build.
//!
//! The snapping grid of the noisy outputs (the defence against floating-point attacks, see
//! kernels/NOISE.md) is privacy policy and is chosen here, from the public noise level alone.

use kernels::NoiseKey;
use rand_core::{OsRng, TryRngCore};

pub struct NoiseSource {
    key: [u8; 32],
}

impl std::fmt::Debug for NoiseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoiseSource(<secret>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the operating system's entropy source: {0}")]
pub struct EntropyError(String);

impl EntropyError {
    pub fn new(msg: String) -> Self {
        EntropyError(msg)
    }
}

/// Parameter tensors per model are addressed by 16 bits of the stream id.
pub const MAX_PARAM_TENSORS: usize = 1 << 16;
/// Steps are addressed by the other 48 bits.
pub const MAX_STEPS: u64 = 1 << 48;
/// The snapping grid lies this many binary orders of magnitude below the noise's standard deviation.
pub const GRID_BITS_BELOW_STD: i32 = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("noise stream: parameter tensor index {index} does not fit in 16 bits (at most {MAX_PARAM_TENSORS} tensors), two draws would share keystream")]
    ParamIndex { index: usize },
    #[error("noise stream: step {step} does not fit in 48 bits, two draws would share keystream")]
    Step { step: u64 },
}

/// The snapping grid for noise of standard deviation `std` (> 0): `2^(floor(log2 std) - 12)`, a power
/// of two between std/8192 and std/4096. It depends only on the public noise level, so it reveals
/// nothing; the kernels snap every noisy output to it.
pub fn snapping_grid(std: f32) -> f64 {
    let e = if std >= f32::MIN_POSITIVE { ((std.to_bits() >> 23) & 0xff) as i32 - 127 } else { -127 };
    2f64.powi(e - GRID_BITS_BELOW_STD)
}

impl NoiseSource {
    pub fn from_os_entropy() -> Result<Self, EntropyError> {
        let mut key = [0u8; 32];
        OsRng.try_fill_bytes(&mut key).map_err(|e| EntropyError(e.to_string()))?;
        Ok(NoiseSource { key })
    }

    /// A fixed key, for reproducibility runs inside the node and for tests.
    pub fn seeded(seed: [u8; 32]) -> Self {
        NoiseSource { key: seed }
    }

    /// The key of parameter tensor `param_index`'s draw at `step`: stream `step << 16 | param_index`.
    pub fn key(&self, step: u64, param_index: usize) -> Result<NoiseKey, StreamError> {
        if param_index >= MAX_PARAM_TENSORS {
            return Err(StreamError::ParamIndex { index: param_index });
        }
        if step >= MAX_STEPS {
            return Err(StreamError::Step { step });
        }
        Ok(NoiseKey { key: self.key, stream: (step << 16) | param_index as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_uniqueness_was_only_a_debug_assert() {
        // in a release build a 65,537th tensor silently took step + 1's tensor 0 stream
        let n = NoiseSource::seeded([1; 32]);
        assert_eq!(n.key(3, MAX_PARAM_TENSORS).unwrap_err(), StreamError::ParamIndex { index: MAX_PARAM_TENSORS });
        assert_eq!(n.key(MAX_STEPS, 0).unwrap_err(), StreamError::Step { step: MAX_STEPS });
        let last = n.key(MAX_STEPS - 1, MAX_PARAM_TENSORS - 1).unwrap();
        assert_eq!(last.stream, u64::MAX);
        assert_eq!(n.key(2, 5).unwrap().stream, (2 << 16) | 5);
    }

    #[test]
    fn snapping_grid_is_a_power_of_two_4096_to_8192_times_below_the_noise() {
        for std in [1e-3f32, 0.07, 1.0, 1.3, 2.0, 5.5e3] {
            let g = snapping_grid(std);
            assert!(g > std as f64 / 8192.0 && g <= std as f64 / 4096.0, "grid {g} for std {std}");
            assert_eq!(g.to_bits() & ((1u64 << 52) - 1), 0, "grid {g} is not a power of two");
        }
    }
}
