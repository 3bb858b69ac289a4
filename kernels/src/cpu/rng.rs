//! Gaussian noise from a keyed ChaCha20 stream: the same (key, stream, element index) gives the same
//! value on any thread count or CPU.
//!
//! Layout. Elements are generated in batches of 256 from 16 ChaCha20 blocks (batch k = blocks 16k ..
//! 16k+15, see `chacha`): 128 Box-Muller pairs, pair p taking its radius word from words 0..8 and its
//! angle word from words 8..16 of the (lane-major) batch; element p is the pair's cosine part, element
//! 128 + p its sine part. Threads take fixed chunks of 16 batches.
//!
//! Transform. Box-Muller, `r = sqrt(-2 ln u)`, angle `2 pi v`, with the vectorized `math::ln` and
//! `math::cos_sin_turns` (errors below 3e-7 and 1e-7, under the f32 rounding of the result).
//! v has 24 bits. u is `(hi + 1/2) 2^-32` from the 32-bit radius word, except when hi < 2^24 (u < 2^-8,
//! probability 2^-8), where 32 more bits extend it to a 64-bit uniform, so that the radius keeps full
//! f32 resolution in the tails and the largest value is about 9.4 sigma instead of 6.7 (a Gaussian
//! truncated at 6.7 sigma would add a delta of order 1e-11 per step to the accounted guarantee).
//! The extension words of a chunk come, in order of need, from a reserve batch of the same stream at
//! block counter `RESERVE + chunk*16` (the j-th reserve batch for j >= 1 at `RESERVE + j*2^50 + chunk*16`).
//!
//! Floating-point attacks (Mironov 2012; Jin et al. 2022) recover the unnoised value from a noisy f32
//! output when the sampler cannot produce some outputs ("holes") that it would produce for a
//! neighbouring input. What this sampler does against them: a CSPRNG (ChaCha20) rather than a
//! predictable generator; a radius with full f32 resolution down to u = 2^-65 (the extension words), so
//! the tails have no holes at f32 resolution out to 9.4 sigma; Box-Muller rather than rejection
//! (polar/ziggurat), so the time taken does not depend on the values drawn. What it does not yet give:
//! an exactness guarantee. Near zero (|z| below about 1e-5 sigma) the 24-bit angle and the 2^-32 radius
//! grid leave f32 values that cannot be drawn, and the polynomial transforms shift values by up to a few
//! ulp. Closing that (a discrete Gaussian on a fine grid with an exact sampler, or an argument bounding
//! the resulting privacy loss) is open in the privacy issue.

use super::chacha::{self, Blocks, LANES};
use super::math;
use crate::backend::NoiseKey;
use rayon::prelude::*;

pub(crate) const BATCH: usize = 256;
const PAIRS: usize = BATCH / 2;
pub(crate) const CHUNK_NORMALS: usize = 16 * BATCH;
const RESERVE: u64 = 1 << 62;
const EXTEND_BELOW: u32 = 1 << 24;
const TWO_M32: f32 = 1.0 / 4_294_967_296.0;
const TWO_M24: f32 = 1.0 / 16_777_216.0;

#[inline(always)]
fn pair(u: f32, angle_word: u32) -> (f32, f32) {
    let r = (-2.0 * math::ln(u)).max(0.0).sqrt();
    let (c, s) = math::cos_sin_turns((angle_word >> 8) as f32 * TWO_M24);
    (r * c, r * s)
}

#[inline(always)]
fn transform_impl(b: &Blocks, out: &mut [f32; BATCH]) {
    for w in 0..8 {
        for l in 0..LANES {
            let u = (b[w][l] as f32 + 0.5) * TWO_M32;
            let (c, s) = pair(u, b[8 + w][l]);
            out[w * LANES + l] = c;
            out[PAIRS + w * LANES + l] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_avx512(b: &Blocks, out: &mut [f32; BATCH]) {
    transform_impl(b, out)
}

fn transform(b: &Blocks, out: &mut [f32; BATCH]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above)
        return unsafe { transform_avx512(b, out) };
    }
    transform_impl(b, out)
}

/// The reserve words of one chunk, generated on first need.
struct Reserve {
    words: Blocks,
    batch: Option<u64>,
    used: u64,
}

impl Reserve {
    fn next(&mut self, key: &[u32; 8], stream: u64, chunk: u64) -> u32 {
        let j = self.used;
        self.used += 1;
        let batch = j / BATCH as u64;
        if self.batch != Some(batch) {
            chacha::blocks(key, stream, RESERVE + (batch << 50) + chunk * 16, &mut self.words);
            self.batch = Some(batch);
        }
        let i = (j % BATCH as u64) as usize;
        self.words[i / LANES][i % LANES]
    }
}

/// dst = scale * (dst + std * the chunk's first `dst.len()` normals); `dst` is at most one chunk.
#[allow(clippy::too_many_arguments)]
fn add_chunk(
    dst: &mut [f32],
    std: f32,
    scale: f32,
    key: &[u32; 8],
    stream: u64,
    chunk: u64,
    blocks: &mut Blocks,
    batch: &mut [f32; BATCH],
) {
    let mut reserve = Reserve { words: [[0; LANES]; 16], batch: None, used: 0 };
    for (k, dst) in dst.chunks_mut(BATCH).enumerate() {
        chacha::blocks(key, stream, (chunk * 16 + k as u64) * 16, blocks);
        transform(blocks, batch);
        for w in 0..8 {
            // lanes whose radius word needs the extension (vectorized compare, then the rare set bits)
            let mut need = 0u32;
            for l in 0..LANES {
                need |= ((blocks[w][l] < EXTEND_BELOW) as u32) << l;
            }
            while need != 0 {
                let l = need.trailing_zeros() as usize;
                need &= need - 1;
                let lo = reserve.next(key, stream, chunk);
                let u = (blocks[w][l] as f32 + (lo as f32 + 0.5) * TWO_M32) * TWO_M32;
                let (c, s) = pair(u, blocks[8 + w][l]);
                batch[w * LANES + l] = c;
                batch[PAIRS + w * LANES + l] = s;
            }
        }
        dst.iter_mut().zip(batch.iter()).for_each(|(d, &z)| *d = scale * std.mul_add(z, *d));
    }
}

/// buf = scale * (buf + std * N(0, 1))
pub(crate) fn add_normal(buf: &mut [f32], std: f32, scale: f32, key: &NoiseKey) {
    let words = chacha::key_words(&key.key);
    buf.par_chunks_mut(CHUNK_NORMALS).enumerate().for_each_init(
        || (Box::new([[0u32; LANES]; 16]), Box::new([0.0f32; BATCH])),
        |(blocks, batch), (c, dst)| add_chunk(dst, std, scale, &words, key.stream, c as u64, blocks, batch),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: u64) -> NoiseKey {
        NoiseKey { key: [7u8; 32], stream }
    }

    #[test]
    fn noise_has_unit_moments_and_gaussian_tails() {
        let n = 4_000_000;
        let mut v = vec![0.0f32; n];
        add_normal(&mut v, 1.0, 1.0, &key(1));
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt = v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        // standard errors: mean 5e-4, variance 7e-4, kurtosis 2.4e-3: bounds at about 5 sigma
        assert!(mean.abs() < 2.5e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 4e-3, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.015, "kurtosis {kurt}");
        // tail counts against the normal distribution: P(|Z| > 3) = 2.69980e-3, P(|Z| > 4) = 6.3342e-5
        for (z, p) in [(3.0f32, 2.699_796e-3f64), (4.0, 6.334_248e-5)] {
            let expected = p * n as f64;
            let got = v.iter().filter(|x| x.abs() > z).count() as f64;
            assert!((got - expected).abs() < 5.0 * expected.sqrt(), "beyond {z} sigma: {got}, expected {expected:.0}");
        }
        // the fallback path works: a 32-bit radius word alone tops out at 6.66 sigma
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 9.5));
    }

    #[test]
    fn deep_tail_is_reached_through_the_extension_words() {
        // the extension path is taken for 1 pair in 256: its radii must follow the same law, i.e.
        // P(r^2 > 2*8 ln 2) = 2^-8 exactly corresponds to the branch; check r^2 is exponential(1/2)
        // beyond it by counting |z| above 4.5 in many draws (expected 6.8e-6 of all values)
        let n = 8_000_000;
        let mut v = vec![0.0f32; n];
        add_normal(&mut v, 1.0, 1.0, &key(9));
        let got = v.iter().filter(|x| x.abs() > 4.5).count() as f64;
        let expected = 6.795_346e-6 * n as f64;
        assert!((got - expected).abs() < 5.0 * expected.sqrt(), "beyond 4.5 sigma: {got}, expected {expected:.1}");
    }

    #[test]
    fn noise_depends_only_on_key_stream_and_index() {
        let mut a = vec![0.0f32; 10_000];
        let mut b = vec![0.0f32; 10_000];
        add_normal(&mut a, 1.0, 1.0, &key(3));
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| add_normal(&mut b, 1.0, 1.0, &key(3)));
        assert_eq!(a, b);
        let mut c = vec![0.0f32; 10_000];
        add_normal(&mut c, 1.0, 1.0, &key(4));
        assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 10);
        // a prefix of a longer draw is the shorter draw
        let mut d = vec![0.0f32; 5_000];
        add_normal(&mut d, 1.0, 1.0, &key(3));
        assert_eq!(&a[..5_000], &d[..]);
    }

    #[test]
    fn avx512_and_portable_paths_give_the_same_bits() {
        let mut blocks = [[0u32; LANES]; 16];
        chacha::blocks(&[3; 8], 1, 0, &mut blocks);
        let mut a = [0.0f32; BATCH];
        let mut b = [0.0f32; BATCH];
        transform(&blocks, &mut a);
        transform_impl(&blocks, &mut b);
        assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
    }
}
