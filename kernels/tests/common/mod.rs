//! Shared helpers for the kernel tests: seeded random tensors and a central finite-difference check.
#![allow(dead_code)]

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// uniform in [-1, 1)
    pub fn sym(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.sym() * scale).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `objective(x)` in f64 from f32 outputs: `sum_i y_i * r_i`.
pub fn dot(y: &[f32], r: &[f32]) -> f64 {
    assert_eq!(y.len(), r.len());
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Compares `analytic` (the gradient of `objective` at `x`) with central differences on up to 48
/// coordinates. The relative error over the checked coordinates must be below `tol`: a wrong sign or a
/// missing term gives errors of order 1, f32 round-off about 1e-4 with h = 1e-2.
pub fn fd_check(what: &str, x: &[f32], analytic: &[f32], tol: f64, mut objective: impl FnMut(&[f32]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let h = 1e-2f32;
    let n = x.len();
    let picks: Vec<usize> =
        if n <= 48 { (0..n).collect() } else { (0..48).map(|i| i * n / 48 + (i * 7) % (n / 48).max(1)).collect() };
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut xp = x.to_vec();
    for &i in &picks {
        xp[i] = x[i] + h;
        let fp = objective(&xp);
        xp[i] = x[i] - h;
        let fm = objective(&xp);
        xp[i] = x[i];
        let fd = (fp - fm) / (2.0 * h as f64);
        num += (fd - analytic[i] as f64).powi(2);
        den += fd * fd;
    }
    let err = num.sqrt() / den.sqrt().max(1e-6);
    assert!(err < tol, "{what}: finite-difference relative error {err:.2e} >= {tol:.0e}");
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: got {g}, want {w}");
    }
}

/// One test body per behaviour, run on every backend the build has: `backend_tests!(name => body)`
/// with `fn body(be: &impl Backend)` makes a module `name` holding one `#[test]` per backend (today
/// `cpu_1_thread` and `cpu_2_threads`; a CUDA arm joins behind its feature when MEDTRAIN_TEST_CUDA=1).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:path),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn cpu_1_thread() {
                    $body(&kernels::Cpu::new(1).unwrap())
                }
                #[test]
                fn cpu_2_threads() {
                    $body(&kernels::Cpu::new(2).unwrap())
                }
            }
        )*
    };
}
