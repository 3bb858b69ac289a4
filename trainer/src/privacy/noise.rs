//! The secret key of a run's Gaussian noise, and the stream of each (step, parameter) draw.
//!
//! The key is 32 bytes from the OS's entropy source by default. A reproducibility run may fix it (its
//! seed then stays inside the node, like the key). Each draw uses its own ChaCha20 stream,
//! `step << 16 | parameter index`, so no two draws of a run share keystream.

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

    pub fn key(&self, step: u64, param_index: usize) -> NoiseKey {
        debug_assert!(param_index < MAX_PARAM_TENSORS);
        NoiseKey { key: self.key, stream: (step << 16) | param_index as u64 }
    }
}
