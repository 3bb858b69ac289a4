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
    if den.sqrt() < 1e-3 {
        // a gradient that is zero in exact arithmetic (a key bias under softmax): compare absolutely
        assert!(num.sqrt() < 1e-3, "{what}: zero gradient expected, analytic differs by {:.2e}", num.sqrt());
        return;
    }
    let err = num.sqrt() / den.sqrt();
    assert!(err < tol, "{what}: finite-difference relative error {err:.2e} >= {tol:.0e}");
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: got {g}, want {w}");
    }
}

/// One test body per behaviour, run on every backend the build has: `backend_tests!(name => body)`
/// with `fn body(be: &impl Backend)` makes a module `name` holding one `#[test]` per backend:
/// `cpu_1_thread`, `cpu_2_threads`, `required_only` (the CPU through its required methods alone) and
/// `cuda` (the CUDA backend on device 0 when MEDTRAIN_TEST_CUDA=1; without it the test says so and
/// passes).
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
                /// the required methods only: every default implementation (composed ops, the
                /// generic per-group norms) under the same test body
                #[test]
                fn required_only() {
                    $body(&crate::common::required::Required::new(2))
                }
                /// the CUDA backend, with MEDTRAIN_TEST_CUDA=1 (else it says so and passes)
                #[test]
                fn cuda() {
                    if let Some(be) = crate::common::cuda_backend() {
                        $body(&be)
                    }
                }
            }
        )*
    };
}

/// The CUDA device 0 when `MEDTRAIN_TEST_CUDA=1`, else `None` (after saying so); with the variable a
/// missing device fails the test.
pub fn cuda_backend() -> Option<kernels::cuda::Cuda> {
    if std::env::var("MEDTRAIN_TEST_CUDA").map_or(true, |v| v != "1") {
        eprintln!("skipped: set MEDTRAIN_TEST_CUDA=1 to run this on the CUDA backend");
        return None;
    }
    Some(kernels::cuda::Cuda::new(0).unwrap_or_else(|e| panic!("MEDTRAIN_TEST_CUDA=1, but: {e}")))
}

pub mod cuda;
pub mod drive;
pub mod noise;
pub mod required;
use drive::{grads, randomize, set_value, values, Driver, HostBatch};
use kernels::nn::Layer;
use kernels::{Backend, GroupRows, NormStrategy};

/// The layer contract checked on one backend, for a layer made by `make` and a host batch:
/// - input and parameter gradients against central finite differences of `sum(y * r)`;
/// - per-group squared norms (every strategy) and clipped sums against brute force: each group's
///   gradient is the plain gradient of the layer run on that group's examples alone.
pub fn check_layer<B: Backend>(
    be: &B,
    what: &str,
    make: impl Fn(&B) -> Box<dyn Layer<B>>,
    batch: &HostBatch,
    track_input: bool,
    tol: f64,
) {
    let mut rng = Rng::new(what.len() as u64 * 7919 + batch.examples as u64);
    let mut layer = make(be);
    randomize(be, layer.as_mut(), &mut rng, 0.5);
    let params = values(be, layer.as_ref());
    let mut d = Driver::new(be);
    let y = d.forward(be, layer.as_mut(), batch, track_input).unwrap();
    let r = rng.vec(y.len(), 1.0);
    let dx = d.backward(be, layer.as_mut(), &r).unwrap();
    let all = GroupRows::single(batch.examples);
    let dparams = d.param_grads(be, layer.as_mut(), &all, None).unwrap();
    let objective = |layer: &mut dyn Layer<B>, b: &HostBatch| {
        let mut d = Driver::new(be);
        dot(&d.forward(be, layer, b, false).unwrap(), &r)
    };
    if let Some(dx) = dx {
        fd_check(&format!("{what}: input"), &batch.x, &dx, tol, |xp| {
            objective(layer.as_mut(), &HostBatch { x: xp.to_vec(), ..batch.clone() })
        });
    }
    let mut names = Vec::new();
    layer.visit(&mut |p| names.push(p.name.clone()));
    for (i, (v, g)) in params.iter().zip(&dparams).enumerate() {
        fd_check(&format!("{what}: {}", names[i]), v, g, tol, |vp| {
            set_value(be, layer.as_mut(), i, vp);
            objective(layer.as_mut(), batch)
        });
        set_value(be, layer.as_mut(), i, v);
    }
    // brute force per group
    let n = batch.examples;
    let uneven = if n >= 3 { vec![0, 1, n - 1, n] } else { vec![0, n] };
    let out_pe = y.len() / n.max(1); // output values per example
    for layout in [GroupRows::per_example(n), GroupRows { offsets: uneven }, GroupRows::single(n)] {
        let mut per_group = Vec::new();
        for g in 0..layout.groups() {
            let sub = batch.sub(&layout, g);
            let mut dg = Driver::new(be);
            dg.forward(be, layer.as_mut(), &sub, track_input).unwrap();
            let ex = layout.offsets[g]..layout.offsets[g + 1];
            dg.backward(be, layer.as_mut(), &r[ex.start * out_pe..ex.end * out_pe]).unwrap();
            per_group.push(dg.param_grads(be, layer.as_mut(), &GroupRows::single(sub.examples), None).unwrap());
        }
        let want: Vec<f32> =
            per_group.iter().map(|gs| gs.iter().flatten().map(|&v| v as f64 * v as f64).sum::<f64>() as f32).collect();
        let factors: Vec<f32> = (0..layout.groups()).map(|g| 0.25 + 0.75 * ((g * 5) % 7) as f32 / 6.0).collect();
        d.forward(be, layer.as_mut(), batch, track_input).unwrap();
        d.backward(be, layer.as_mut(), &r).unwrap();
        for strategy in [NormStrategy::Auto, NormStrategy::Ghost, NormStrategy::Materialize] {
            let norms = d.norms(be, layer.as_mut(), &layout, strategy).unwrap();
            assert_close(&format!("{what}: norms {strategy:?} {:?}", layout.offsets), &norms, &want, 1e-3, 1e-5);
        }
        let clipped = d.param_grads(be, layer.as_mut(), &layout, Some(&factors)).unwrap();
        for (i, c) in clipped.iter().enumerate() {
            let want: Vec<f32> = (0..c.len())
                .map(|j| per_group.iter().zip(&factors).map(|(gs, &f)| f as f64 * gs[i][j] as f64).sum::<f64>() as f32)
                .collect();
            assert_close(&format!("{what}: clipped {} {:?}", names[i], layout.offsets), c, &want, 1e-3, 1e-5);
        }
        let _ = grads(be, layer.as_ref()).unwrap();
    }
}
