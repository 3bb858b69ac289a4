//! Poisson subsampling of subjects: at every step each subject is in the batch independently with
//! probability q, which is the sampling the accountants assume (shuffled fixed-size batches are not, and
//! medtrain has none). Batches vary in size and may be empty; an empty batch is still a step (it adds
//! noise and is accounted). The DP-SGD normalizer is the expected batch size q*N, never the realized one.
//!
//! O(batch) per step: the gaps between included subjects are geometric, G = floor(ln U / ln(1 - q)),
//! drawn from a ChaCha20 stream keyed from the OS's entropy (or a node-internal seed for reproducibility
//! runs). U is a 53-bit uniform in (0, 1], so a gap is never infinite and the smallest inclusion
//! probability the sampler resolves is far below any q a run can be accounted for.

use super::accountant::SampleRate;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng, TryRngCore};

pub struct PoissonSampler {
    subjects: usize,
    rate: SampleRate,
    /// ln(1 - q); 0 when q = 1 (every subject, every step)
    log1m_rate: f64,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for PoissonSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoissonSampler")
            .field("subjects", &self.subjects)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl PoissonSampler {
    pub fn from_os_entropy(subjects: usize, rate: SampleRate) -> Result<Self, super::noise::EntropyError> {
        let mut seed = [0u8; 32];
        OsRng.try_fill_bytes(&mut seed).map_err(|e| super::noise::EntropyError::new(e.to_string()))?;
        Ok(Self::seeded(subjects, rate, seed))
    }

    /// A fixed seed, for reproducibility runs inside the node and for tests.
    pub fn seeded(subjects: usize, rate: SampleRate, seed: [u8; 32]) -> Self {
        let q = rate.get();
        let log1m_rate = if q >= 1.0 { 0.0 } else { (-q).ln_1p() };
        // the sampler's stream is distinct from every noise stream of the same key
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(u64::MAX);
        PoissonSampler { subjects, rate, log1m_rate, rng }
    }

    pub fn subjects(&self) -> usize {
        self.subjects
    }

    /// The stream's seed and position, for a checkpoint (the seed is as secret as the noise key).
    pub fn state(&self) -> ([u8; 32], u128) {
        (self.rng.get_seed(), self.rng.get_word_pos())
    }

    /// Continues the stream of a checkpoint ([`PoissonSampler::state`]).
    pub fn resume(subjects: usize, rate: SampleRate, seed: [u8; 32], word_pos: u128) -> Self {
        let mut s = Self::seeded(subjects, rate, seed);
        s.rng.set_word_pos(word_pos);
        s
    }

    /// `k` distinct indices below `n` chosen uniformly (all of them, in order, when `k >= n`), in
    /// increasing order: the examples a subject with more than `k` contributes to a step.
    pub fn subset(&mut self, n: usize, k: usize, out: &mut Vec<usize>) {
        out.clear();
        if k >= n {
            out.extend(0..n);
            return;
        }
        // Floyd's algorithm: k draws, each uniform
        let mut chosen = std::collections::BTreeSet::new();
        for j in n - k..n {
            let t = (self.uniform() * (j + 1) as f64) as usize;
            let t = t.min(j);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        out.extend(chosen);
    }

    /// q * N: the normalizer of DP-SGD's noisy gradient sum.
    pub fn expected_batch(&self) -> f64 {
        self.rate.get() * self.subjects as f64
    }

    /// Uniform in (0, 1] with 53 bits.
    fn uniform(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// The next step's subjects (indices in 0..N, increasing) into `batch` (cleared first).
    pub fn next_batch(&mut self, batch: &mut Vec<usize>) {
        batch.clear();
        if self.log1m_rate == 0.0 {
            batch.extend(0..self.subjects);
            return;
        }
        let mut next = 0usize;
        loop {
            let gap = (self.uniform().ln() / self.log1m_rate).floor();
            // a gap past the last subject ends the step (also guards the conversion below)
            if gap >= (self.subjects - next.min(self.subjects)) as f64 {
                return;
            }
            next += gap as usize;
            batch.push(next);
            next += 1;
        }
    }
}
