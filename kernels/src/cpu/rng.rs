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
//! Floating-point attacks (Mironov 2012 for Laplace; Jin et al. 2022, "Are we there yet? Timing and
//! floating-point attacks on differential privacy systems", for Gaussian and DP-SGD) read the unnoised
//! value out of a noisy floating-point output: a sampler built from floating-point operations cannot
//! produce every float, and which outputs are possible (the "holes" of `x + noise`) depends on `x`, so an
//! output can be possible for `x` and impossible for a neighbouring `x'`, a privacy loss the accountant
//! does not see.
//!
//! Method: snapping to an input-independent grid (the Gaussian analogue of Mironov's snapping
//! mechanism). Each output is `scale * g * round((x + std * z) / g)`, with the sum and the rounding in
//! f64. The grid `g` is a power of two that the caller (the privacy layer: `privacy::noise` in the
//! trainer) derives from the public noise level alone; medtrain uses `2^(floor(log2 std) - 12)`, between
//! std/8192 and std/4096, and the figures below are for that grid. Why this and not the others:
//! - every output lies on the grid `g Z`, whatever `x` is, so the support of the output no longer carries
//!   the fine bits of `x`: the holes that the attacks read are below the grid, where nothing is released;
//! - in exact arithmetic it is post-processing of the Gaussian mechanism (rounding the released value),
//!   so the accountants need no change and the guarantee is the accounted one; the added rounding error
//!   (variance g^2/12, at most 1.5e-9 of the noise variance) does not matter for training;
//! - what is left of the floating-point error is how well the implemented `z` fills each grid cell. The
//!   cell is 1.2e-4 to 2.4e-4 of a standard deviation wide, and the sampler resolves `z` far finer than
//!   that everywhere it can reach with non-negligible probability: the angle grid (24 bits, a step of
//!   3.7e-7 r), the radius grid (a relative step of 2^-24 in u, down to u = 2^-40, i.e. out to
//!   7.4 sigma; beyond, 2^-64 absolute), f64 for `x + std z` (exact: a 24x24-bit product plus an f32),
//!   and the polynomial errors (a few f32 ulp, below 1e-6 for |z| < 8). So every cell within 7.4 sigma
//!   is reachable from every input, with a probability within a measured small fraction of the ideal
//!   rounded Gaussian's (the chi-square tests below, at the centre where the old holes were and
//!   at 2 and 3 sigma). Beyond 7.4 sigma (probability 1e-12 per draw) the radius grid coarsens; that event is the
//!   remaining, negligible, un-analysed part;
//! - it costs a few f64 operations per element, against 2x to 4x the noise time for the alternatives: a
//!   sum of several Gaussians (Holohan and Braghin 2021, Opacus' secure mode), which thins the holes
//!   without removing them, or an exact discrete Gaussian sampler (Canonne, Kamath and Steinke 2020),
//!   which gives a formal guarantee but needs a rejection loop per element (tens of nanoseconds, and
//!   data-dependent time).
//! This is not a formal proof that the implemented mechanism is (epsilon, delta)-DP with floating-point
//! arithmetic; that would need the exact discrete sampler. Also: ChaCha20 (a CSPRNG) keyed from the OS,
//! so the noise cannot be predicted from earlier outputs; Box-Muller rather than rejection (polar,
//! ziggurat), so the time taken does not depend on the values drawn.

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
    if super::isa::avx512() {
        // SAFETY: the CPU supports AVX-512F (isa::avx512 checked it)
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

/// Snaps `scale * (x + std z)` to the grid: `x` and `z` are exact in f64 and so is `std * z` (a 24x24-bit
/// product); `inv_g` is a power of two, so the only rounding before the snap is that of the sum.
#[inline(always)]
fn snap(x: f32, z: f32, std: f64, inv_g: f64, g_scale: f64) -> f32 {
    (((x as f64 + std * z as f64) * inv_g).round_ties_even() * g_scale) as f32
}

/// dst = scale * (dst + std * the chunk's first `dst.len()` normals), snapped to the grid `g` (a power of
/// two); `dst` is at most one chunk.
#[allow(clippy::too_many_arguments)]
fn add_chunk(
    dst: &mut [f32],
    std: f32,
    scale: f32,
    g: f64,
    key: &[u32; 8],
    stream: u64,
    chunk: u64,
    blocks: &mut Blocks,
    batch: &mut [f32; BATCH],
) {
    let mut reserve = Reserve { words: [[0; LANES]; 16], batch: None, used: 0 };
    let (std64, inv_g, g_scale) = (std as f64, 1.0 / g, g * scale as f64);
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
        if std > 0.0 {
            dst.iter_mut().zip(batch.iter()).for_each(|(d, &z)| *d = snap(*d, z, std64, inv_g, g_scale));
        } else {
            dst.iter_mut().for_each(|d| *d *= scale);
        }
    }
}

/// buf = scale * (buf + std * N(0, 1)), snapped to the grid `g`, a power of two (see the module docs)
pub(crate) fn add_normal(buf: &mut [f32], std: f32, scale: f32, g: f64, key: &NoiseKey) {
    let words = chacha::key_words(&key.key);
    buf.par_chunks_mut(CHUNK_NORMALS).enumerate().for_each_init(
        || (Box::new([[0u32; LANES]; 16]), Box::new([0.0f32; BATCH])),
        |(blocks, batch), (c, dst)| add_chunk(dst, std, scale, g, &words, key.stream, c as u64, blocks, batch),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: u64) -> NoiseKey {
        NoiseKey { key: [7u8; 32], stream }
    }

    /// The grid the privacy layer passes (`privacy::noise::snapping_grid` in the trainer), for the
    /// statistical tests of this file: `2^(floor(log2 std) - 12)`.
    fn grid(std: f32) -> f64 {
        2f64.powi(((std.to_bits() >> 23) & 0xff) as i32 - 127 - 12)
    }

    fn add_normal(buf: &mut [f32], std: f32, scale: f32, key: &NoiseKey) {
        super::add_normal(buf, std, scale, grid(std.max(f32::MIN_POSITIVE)), key)
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

    /// Normal CDF through the Taylor series of erf (exact to f64 rounding for |x| <= 4; the cell
    /// probabilities tested here are differences of it at 2.4e-4 apart, so they need that precision).
    fn phi_cdf(x: f64) -> f64 {
        let t = x / std::f64::consts::SQRT_2;
        let (mut term, mut sum, mut n) = (t, t, 0.0);
        while term.abs() > 1e-18 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -t * t / n;
            sum += term / (2.0 * n + 1.0);
        }
        0.5 * (1.0 + sum * 2.0 / std::f64::consts::PI.sqrt())
    }

    #[test]
    fn outputs_lie_on_the_given_grid_whatever_the_input() {
        for (std, scale) in [(1.0f32, 1.0f32), (1.3, 1.0 / 256.0), (0.07, 0.25), (5.5e3, 1.0)] {
            let g = grid(std);
            assert!(g > std as f64 / 8192.0 && g <= std as f64 / 4096.0, "grid {g} for std {std}");
            let mut v: Vec<f32> =
                (0..20_000).map(|i| (i as f32 * 0.618_034).sin() * std * 3.0 + 1e-7 * i as f32).collect();
            add_normal(&mut v, std, scale, &key(11));
            for x in &v {
                let k = *x as f64 / (g * scale as f64);
                assert_eq!(k, k.round(), "{x} is not on the grid {g} * {scale}");
            }
        }
        // std 0: no noise, no snapping
        let mut v = vec![0.123f32; 10];
        add_normal(&mut v, 0.0, 0.5, &key(1));
        assert!(v.iter().all(|&x| x == 0.0615));
    }

    /// Chi-square of the cell counts of `std z + x` for the 81 cells around `centre`, against the
    /// probabilities of the ideal rounded Gaussian.
    fn cell_chi_square(v: &[f32], x: f64, centre: i64) -> f64 {
        let g = grid(1.0);
        let mut counts = vec![0u64; 81];
        for &y in v {
            let k = (y as f64 / g).round() as i64 - centre + 40;
            if (0..81).contains(&k) {
                counts[k as usize] += 1;
            }
        }
        let n = v.len() as f64;
        (0..81)
            .map(|i| {
                let k = (centre + i as i64 - 40) as f64;
                let p = phi_cdf((k + 0.5) * g - x) - phi_cdf((k - 0.5) * g - x);
                let e = n * p;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum()
    }

    #[test]
    fn grid_cells_are_filled_as_the_rounded_gaussian_fills_them() {
        // 16M draws of x + z for an x on the grid and one a third of a cell off it: the centre (where
        // the unsnapped sampler had holes), 2 and 3 sigma. 80 degrees of freedom: the 1e-6 quantile of
        // chi-square(80) is about 146.
        let n = 16 << 20;
        for (x, stream) in [(0.0, 21u64), (grid(1.0) / 3.0, 22)] {
            let mut v = vec![x as f32; n];
            add_normal(&mut v, 1.0, 1.0, &key(stream));
            let g = grid(1.0);
            for centre in [0i64, (2.0 / g) as i64, (-3.0 / g) as i64] {
                let c2 = cell_chi_square(&v, x as f32 as f64, centre);
                assert!(c2 < 146.0, "chi-square {c2:.1} for 81 cells around {:.2} sigma, input {x}", centre as f64 * g);
            }
        }
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
