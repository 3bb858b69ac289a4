//! Gaussian noise from a keyed ChaCha20 stream, in fixed chunks that threads fill independently.
//!
//! Element i belongs to chunk i / CHUNK_NORMALS; chunk c reads the ChaCha20 keystream of (key, stream)
//! from word c * WORDS_PER_CHUNK, so every element's value depends only on (key, stream, i): the same
//! bits on any thread count, and on any backend that implements the same map.
//! Transform: Box-Muller on pairs. The radius uses a 62-bit uniform u in (0, 1] assembled from two
//! 31-bit words (so the tail reaches 9.3 sigma, not the 5.9 sigma a 24-bit uniform would give), the
//! angle a 24-bit uniform; ln and cos/sin are the vectorized approximations of `math` (relative error
//! below 3e-7, far below the gradient's own f32 rounding).

use super::math;
use crate::backend::NoiseKey;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

pub(crate) const CHUNK_NORMALS: usize = 4096;
/// Three 32-bit words per pair of normals: two for the radius, one for the angle.
pub(crate) const WORDS_PER_CHUNK: usize = CHUNK_NORMALS / 2 * 3;

fn fill_chunk(out: &mut [f32], key: &NoiseKey, chunk: usize, words: &mut [u32; WORDS_PER_CHUNK]) {
    let mut rng = ChaCha20Rng::from_seed(key.key);
    rng.set_stream(key.stream);
    rng.set_word_pos((chunk as u128) * WORDS_PER_CHUNK as u128);
    let bytes: &mut [u8] = unsafe {
        // SAFETY: u32 has no invalid bit patterns and the slice covers exactly the array
        std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, WORDS_PER_CHUNK * 4)
    };
    rng.fill_bytes(bytes);
    if cfg!(target_endian = "big") {
        words.iter_mut().for_each(|w| *w = u32::from_le(*w));
    }
    const TWO_M31: f32 = 1.0 / 2_147_483_648.0;
    const TWO_M24: f32 = 1.0 / 16_777_216.0;
    for (pair, w) in out.chunks_mut(2).zip(words.chunks_exact(3)) {
        let hi = (w[0] >> 1) as i32 as f32;
        let lo = (w[1] >> 1) as i32 as f32 + 0.5;
        let u = (hi + lo * TWO_M31) * TWO_M31; // (0, 1]
        let r = (-2.0 * math::ln(u)).max(0.0).sqrt();
        let (c, s) = math::cos_sin_turns((w[2] >> 8) as f32 * TWO_M24);
        pair[0] = r * c;
        if pair.len() > 1 {
            pair[1] = r * s;
        }
    }
}

/// buf += std * N(0, 1)
pub(crate) fn add_normal(buf: &mut [f32], std: f32, key: &NoiseKey) {
    buf.par_chunks_mut(CHUNK_NORMALS).enumerate().for_each_init(
        || {
            (
                Box::new([0u32; WORDS_PER_CHUNK]),
                vec![0.0f32; CHUNK_NORMALS],
            )
        },
        |(words, noise), (c, dst)| {
            fill_chunk(&mut noise[..dst.len()], key, c, words);
            dst.iter_mut()
                .zip(noise.iter())
                .for_each(|(d, &z)| *d += std * z);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: u64) -> NoiseKey {
        NoiseKey {
            key: [7u8; 32],
            stream,
        }
    }

    #[test]
    fn noise_has_unit_moments_and_gaussian_tails() {
        let n = 2_000_000;
        let mut v = vec![0.0f32; n];
        add_normal(&mut v, 1.0, &key(1));
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt =
            v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        // standard errors: mean 1/sqrt(n) = 7e-4, var sqrt(2/n) = 1e-3, kurtosis sqrt(24/n) = 3.5e-3
        assert!(mean.abs() < 4e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 6e-3, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.03, "kurtosis {kurt}");
        // P(|Z| > 3) = 2.6998e-3: expected 5400 of 2e6, sd ~73
        let beyond3 = v.iter().filter(|x| x.abs() > 3.0).count() as f64;
        assert!(
            (beyond3 - 5399.6).abs() < 400.0,
            "beyond 3 sigma: {beyond3}"
        );
    }

    #[test]
    fn noise_depends_only_on_key_stream_and_index() {
        let mut a = vec![0.0f32; 10_000];
        let mut b = vec![0.0f32; 10_000];
        add_normal(&mut a, 1.0, &key(3));
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| add_normal(&mut b, 1.0, &key(3)));
        assert_eq!(a, b);
        let mut c = vec![0.0f32; 10_000];
        add_normal(&mut c, 1.0, &key(4));
        assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 10);
        // a prefix of a longer draw is the shorter draw
        let mut d = vec![0.0f32; 5_000];
        add_normal(&mut d, 1.0, &key(3));
        assert_eq!(&a[..5_000], &d[..]);
    }
}
