//! The CUDA kernels against the CPU backend: one test body per op, `fn case(k: &mut impl Kernels)`,
//! run on the CPU emulation of the kernels (tests/cuda_emu.rs: plain and under sanitizers) and on a
//! GPU (tests/cuda_device.rs, `MEDTRAIN_TEST_CUDA=1`). `Kernels` is the op on host vectors: upload,
//! launch, download. Every body compares with the CPU backend bit for bit (`add_row_dots` and
//! `embedding_group_sq_norms`: one f32 ulp, see cuda/reduce.cu and cuda/embedding.cu), on shapes that are not multiples of the block and leave a partial last
//! block, and checks that bad shapes give the CPU's error.
#![allow(dead_code)]

use super::noise;
use super::Rng;
use kernels::backend::{Activation, AdamW, GroupRows, MaskFill, NoiseKey, EMBEDDING_CHUNK};
use kernels::{Backend, Cpu, Result};

/// The CUDA backend's ops on host data.
#[allow(clippy::too_many_arguments)]
pub trait Kernels {
    fn fill(&mut self, y: &mut Vec<f32>, value: f32) -> Result<()>;
    fn add(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32]) -> Result<()>;
    fn add_assign(&mut self, y: &mut Vec<f32>, x: &[f32]) -> Result<()>;
    fn broadcast_rows(&mut self, y: &mut Vec<f32>, bias: &[f32], rows: usize) -> Result<()>;
    fn activation_forward(&mut self, f: Activation, y: &mut Vec<f32>, x: &[f32]) -> Result<()>;
    fn activation_backward(&mut self, f: Activation, dx: &mut Vec<f32>, dy: &[f32], x: &[f32], y: &[f32])
        -> Result<()>;
    fn clip_factors(&mut self, factors: &mut Vec<f32>, sq_norms: &[f32], clip: f32) -> Result<()>;
    fn scale_rows_by_group(
        &mut self,
        y: &mut Vec<f32>,
        x: &[f32],
        d: usize,
        append_factor: bool,
        factors: &[f32],
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()>;
    fn group_row_sums(
        &mut self,
        out: &mut Vec<f32>,
        x: &[f32],
        d: usize,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()>;
    fn sum_rows(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()>;
    fn add_row_dots(&mut self, out: &mut Vec<f32>, a: &[f32], b: &[f32], d: usize) -> Result<()>;
    fn add_row_sq_norms(&mut self, out: &mut Vec<f32>, x: &[f32], d: usize) -> Result<()>;
    fn sgd_step(
        &mut self,
        w: &mut Vec<f32>,
        g: &[f32],
        m: &mut Vec<f32>,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) -> Result<()>;
    fn adamw_step(
        &mut self,
        w: &mut Vec<f32>,
        g: &[f32],
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        h: &AdamW,
        t: u64,
    ) -> Result<()>;
    fn add_normal(&mut self, buf: &mut Vec<f32>, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()>;
    fn copy_columns(
        &mut self,
        dst: &mut Vec<f32>,
        dst_w: usize,
        dst_col: usize,
        src: &[f32],
        src_w: usize,
        src_col: usize,
        width: usize,
        rows: usize,
    ) -> Result<()>;
    fn layer_norm_forward(
        &mut self,
        y: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        c: usize,
        eps: f32,
    ) -> Result<()>;
    fn layer_norm_backward(
        &mut self,
        dx: &mut Vec<f32>,
        dy_xhat: &mut Vec<f32>,
        dy: &[f32],
        x: &[f32],
        gamma: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) -> Result<()>;
    fn masked_softmax_forward(
        &mut self,
        att: &mut Vec<f32>,
        mask: &[f32],
        b: usize,
        h: usize,
        tq: usize,
        t: usize,
        scale: f32,
        fill: MaskFill,
    ) -> Result<()>;
    fn softmax_backward(&mut self, datt: &mut Vec<f32>, att: &[f32], t: usize, scale: f32) -> Result<()>;
    fn embedding_forward(
        &mut self,
        y: &mut Vec<f32>,
        ids: &[u32],
        table: &[f32],
        d: usize,
        accumulate: bool,
    ) -> Result<()>;
    fn embedding_backward(
        &mut self,
        dtable: &mut Vec<f32>,
        ids: &[u32],
        dy: &[f32],
        d: usize,
        factors: Option<&[f32]>,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()>;
    fn embedding_group_sq_norms(
        &mut self,
        out: &mut Vec<f32>,
        ids: &[u32],
        dy: &[f32],
        d: usize,
        layout: &GroupRows,
        rows_per_example: usize,
    ) -> Result<()>;
    fn masked_mean_pool_forward(
        &mut self,
        out: &mut Vec<f32>,
        h: &[f32],
        mask: &[f32],
        t: usize,
        c: usize,
    ) -> Result<()>;
    fn masked_mean_pool_backward(
        &mut self,
        dh: &mut Vec<f32>,
        dout: &[f32],
        mask: &[f32],
        t: usize,
        c: usize,
    ) -> Result<()>;
    fn bce_with_logits(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &[f32],
        targets: &[f32],
        grad_scale: f32,
    ) -> Result<()>;
    fn regression_loss(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        preds: &[f32],
        targets: &[f32],
        huber: Option<f32>,
        grad_scale: f32,
    ) -> Result<()>;
    fn cross_entropy(
        &mut self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &[f32],
        classes: &[u32],
        k: usize,
        grad_scale: f32,
    ) -> Result<()>;
    fn gru_step_forward(
        &mut self,
        h: &mut Vec<f32>,
        h_prev: &mut Vec<f32>,
        gates: &mut Vec<f32>,
        gi: &[f32],
        gh: &[f32],
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()>;
    fn gru_step_backward(
        &mut self,
        dgi: &mut Vec<f32>,
        dgh: &mut Vec<f32>,
        carry: &mut Vec<f32>,
        dy: &[f32],
        gates: &[f32],
        gh: &[f32],
        h_prev: &[f32],
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()>;
}

/// Calls `$m! { name => body, ... }` with every case, so that each runner lists them once.
#[macro_export]
macro_rules! cuda_cases {
    ($m:ident) => {
        $m! {
            fill => $crate::common::cuda::fill_sets_every_element,
            add => $crate::common::cuda::add_and_add_assign_match_the_cpu,
            broadcast_rows => $crate::common::cuda::broadcast_rows_matches_the_cpu,
            activations => $crate::common::cuda::activations_match_the_cpu_bit_for_bit,
            clip_factors => $crate::common::cuda::clip_factors_match_the_cpu_on_special_norms,
            scale_rows_by_group => $crate::common::cuda::scale_rows_by_group_matches_the_cpu,
            group_row_sums => $crate::common::cuda::group_row_sums_match_the_cpu_in_its_order,
            row_dots => $crate::common::cuda::row_dots_match_the_cpu_to_one_ulp,
            sgd => $crate::common::cuda::sgd_matches_the_cpu,
            adamw => $crate::common::cuda::adamw_matches_the_cpu,
            noise_vectors => $crate::common::cuda::noise_matches_the_checked_in_vectors,
            noise_cpu => $crate::common::cuda::noise_matches_the_cpu_on_every_element,
            copy_columns => $crate::common::cuda::copy_columns_matches_the_cpu,
            layer_norm => $crate::common::cuda::layer_norm_matches_the_cpu_bit_for_bit,
            softmax => $crate::common::cuda::softmax_matches_the_cpu_bit_for_bit,
            embedding => $crate::common::cuda::embedding_matches_the_cpu_bit_for_bit,
            pool => $crate::common::cuda::masked_mean_pool_matches_the_cpu_bit_for_bit,
            losses => $crate::common::cuda::losses_match_the_cpu,
            gru => $crate::common::cuda::gru_steps_match_the_cpu_bit_for_bit,
        }
    };
}

fn cpu() -> Cpu {
    Cpu::new(1).unwrap()
}

/// Equal bits, or both NaN (NaN payloads are not part of any contract).
pub fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g:e} ({:08x}), CPU {w:e} ({:08x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// 1000 elements: 4 blocks of 256, the last one partial.
const N: usize = 1000;

pub fn fill_sets_every_element(k: &mut impl Kernels) {
    let mut y = Rng::new(1).vec(N, 1.0);
    k.fill(&mut y, 2.5).unwrap();
    assert!(y.iter().all(|&v| v == 2.5));
    let mut empty = vec![];
    k.fill(&mut empty, 1.0).unwrap();
}

pub fn add_and_add_assign_match_the_cpu(k: &mut impl Kernels) {
    let mut rng = Rng::new(2);
    let (a, b) = (rng.vec(N, 3.0), rng.vec(N, 1e-3));
    let mut want = vec![0.0; N];
    cpu().add(&mut want, &a, &b).unwrap();
    let mut got = vec![9.0; N];
    k.add(&mut got, &a, &b).unwrap();
    assert_bits("add", &got, &want);
    let mut y = a.clone();
    k.add_assign(&mut y, &b).unwrap();
    assert_bits("add_assign", &y, &want);
    // the CPU's errors
    let e = k.add_assign(&mut y, &b[1..]).unwrap_err();
    assert_eq!(e, cpu().add_assign(&mut a.clone(), &b[1..].to_vec()).unwrap_err());
    let e = k.add(&mut vec![0.0; N - 1], &a, &b).unwrap_err();
    assert_eq!(e, cpu().add(&mut vec![0.0; N - 1], &a, &b).unwrap_err());
}

pub fn broadcast_rows_matches_the_cpu(k: &mut impl Kernels) {
    let (rows, d) = (37, 29);
    let bias = Rng::new(3).vec(d, 1.0);
    let mut want = vec![0.0; rows * d];
    cpu().broadcast_rows(&mut want, &bias, rows).unwrap();
    let mut got = vec![7.0; rows * d];
    k.broadcast_rows(&mut got, &bias, rows).unwrap();
    assert_bits("broadcast_rows", &got, &want);
    let e = k.broadcast_rows(&mut vec![0.0; 5], &bias, rows).unwrap_err();
    assert_eq!(e, cpu().broadcast_rows(&mut vec![0.0; 5], &bias, rows).unwrap_err());
}

/// Inputs that reach every branch of the CPU's polynomials: a sweep over [-12, 12], the clamps of
/// exp and erf, the identity region of tanh, signed zeros, infinities and NaN.
fn activation_inputs() -> Vec<f32> {
    let mut x: Vec<f32> = (0..1500).map(|i| (i as f32 - 750.0) / 62.5 + (i % 7) as f32 * 1e-3).collect();
    x.extend([
        0.0,
        -0.0,
        1e-6,
        -1e-6,
        1.0 / 4096.0,
        -1.0 / 4096.0,
        0.99 / 4096.0,
        43.5,
        -43.5,
        87.0,
        -87.0,
        88.0,
        88.5,
        -100.0,
        1e30,
        -1e30,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    x
}

pub fn activations_match_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let x = activation_inputs();
    let dy = Rng::new(4).vec(x.len(), 2.0);
    for f in [Activation::Relu, Activation::Gelu, Activation::Sigmoid, Activation::Tanh] {
        let mut want = vec![0.0; x.len()];
        cpu().activation_forward(f, &mut want, &x).unwrap();
        let mut y = vec![0.0; x.len()];
        k.activation_forward(f, &mut y, &x).unwrap();
        assert_bits(&format!("{} forward", f.name()), &y, &want);
        let mut want_dx = vec![0.0; x.len()];
        cpu().activation_backward(f, &mut want_dx, &dy, &x, &want).unwrap();
        let mut dx = vec![0.0; x.len()];
        k.activation_backward(f, &mut dx, &dy, &x, &want).unwrap();
        assert_bits(&format!("{} backward", f.name()), &dx, &want_dx);
        let e = k.activation_forward(f, &mut vec![0.0; 3], &x).unwrap_err();
        assert_eq!(e, cpu().activation_forward(f, &mut vec![0.0; 3], &x).unwrap_err());
    }
}

pub fn clip_factors_match_the_cpu_on_special_norms(k: &mut impl Kernels) {
    let mut sq: Vec<f32> = Rng::new(5).vec(300, 4.0).iter().map(|v| v * v).collect();
    sq.extend([0.0, -0.0, -1.0, 2.25, 2.2500002, 1e-30, 1e30, f32::INFINITY, f32::NAN, f32::MIN_POSITIVE]);
    for clip in [1.5f32, 1e-3] {
        let mut want = vec![0.0; sq.len()];
        cpu().clip_factors(&mut want, &sq, clip).unwrap();
        let mut got = vec![0.0; sq.len()];
        k.clip_factors(&mut got, &sq, clip).unwrap();
        assert_bits("clip_factors", &got, &want);
        let nan_norm = sq.len() - 2;
        assert_eq!(got[nan_norm], 0.0, "a NaN norm gets factor 0");
    }
    for bad in [0.0, -1.0, f32::INFINITY, f32::NAN] {
        let e = k.clip_factors(&mut vec![0.0; sq.len()], &sq, bad).unwrap_err();
        assert_eq!(e.to_string(), cpu().clip_factors(&mut vec![0.0; sq.len()], &sq, bad).unwrap_err().to_string());
    }
}

pub fn scale_rows_by_group_matches_the_cpu(k: &mut impl Kernels) {
    // uneven groups, one of them empty, 3 rows per example
    let layout = GroupRows { offsets: vec![0, 1, 4, 4, 7] };
    let (d, rpe) = (5, 3);
    let rows = layout.examples() * rpe;
    let mut rng = Rng::new(6);
    let x = rng.vec(rows * d, 2.0);
    let factors = [0.25, 1.0, 0.5, 0.125];
    for append in [false, true] {
        let width = d + append as usize;
        let mut want = vec![0.0; rows * width];
        cpu().scale_rows_by_group(&mut want, &x, d, append, &factors.to_vec(), &layout, rpe).unwrap();
        let mut got = vec![3.0; rows * width];
        k.scale_rows_by_group(&mut got, &x, d, append, &factors, &layout, rpe).unwrap();
        assert_bits(&format!("scale_rows_by_group append={append}"), &got, &want);
    }
    let e = k.scale_rows_by_group(&mut vec![0.0; rows * d], &x, d, false, &factors[..3], &layout, rpe).unwrap_err();
    let want = cpu().scale_rows_by_group(&mut vec![0.0; rows * d], &x, d, false, &factors[..3].to_vec(), &layout, rpe);
    assert_eq!(e, want.unwrap_err());
}

pub fn group_row_sums_match_the_cpu_in_its_order(k: &mut impl Kernels) {
    // group 1 has 144 rows: three blocks of 64 rows, the last partial
    let layout = GroupRows { offsets: vec![0, 2, 50, 50, 51] };
    let (d, rpe) = (7, 3);
    let x = Rng::new(7).vec(layout.examples() * rpe * d, 10.0);
    for cpu in [Cpu::new(1).unwrap(), Cpu::new(2).unwrap()] {
        let mut want = vec![0.0; layout.groups() * d];
        cpu.group_row_sums(&mut want, &x, d, &layout, rpe).unwrap();
        let mut got = vec![1.0; layout.groups() * d];
        k.group_row_sums(&mut got, &x, d, &layout, rpe).unwrap();
        assert_bits("group_row_sums", &got, &want);
    }
    // few large groups (a non-private step's one group): the device's two-pass plan, same order
    let layout = GroupRows { offsets: vec![0, 1500, 1501] };
    let (d, rpe) = (3, 2);
    let x = Rng::new(9).vec(layout.examples() * rpe * d, 10.0);
    let mut want = vec![0.0; layout.groups() * d];
    cpu().group_row_sums(&mut want, &x, d, &layout, rpe).unwrap();
    let mut got = vec![1.0; layout.groups() * d];
    k.group_row_sums(&mut got, &x, d, &layout, rpe).unwrap();
    assert_bits("group_row_sums (few large groups)", &got, &want);
    let (rows, d) = (300, 9);
    let x = Rng::new(8).vec(rows * d, 10.0);
    let mut want = vec![0.0; d];
    cpu().sum_rows(&mut want, &x, d).unwrap();
    let mut got = vec![0.0; d];
    k.sum_rows(&mut got, &x, d).unwrap();
    assert_bits("sum_rows", &got, &want);
    let e = k.group_row_sums(&mut vec![0.0; 3], &x, d, &layout, rpe).unwrap_err();
    assert_eq!(e, cpu().group_row_sums(&mut vec![0.0; 3], &x, d, &layout, rpe).unwrap_err());
}

/// Within one f32 ulp of the CPU's value (the f64 sum runs in another order, then rounds to f32).
fn assert_ulp(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ulp = f32::from_bits(w.abs().to_bits() + 1) - w.abs();
        assert!((g - w).abs() <= ulp, "{what}[{i}]: got {g:e}, CPU {w:e}");
    }
}

pub fn row_dots_match_the_cpu_to_one_ulp(k: &mut impl Kernels) {
    // 13 rows of 1000: every lane of a warp sums 31 or 32 products
    let (g, d) = (13, 1000);
    let mut rng = Rng::new(9);
    let (a, b, start) = (rng.vec(g * d, 1.0), rng.vec(g * d, 1.0), rng.vec(g, 5.0));
    let mut want = start.clone();
    cpu().add_row_dots(&mut want, &a, &b, d).unwrap();
    let mut got = start.clone();
    k.add_row_dots(&mut got, &a, &b, d).unwrap();
    assert_ulp("add_row_dots", &got, &want);
    let mut want = start.clone();
    cpu().add_row_sq_norms(&mut want, &a, d).unwrap();
    let mut got = start.clone();
    k.add_row_sq_norms(&mut got, &a, d).unwrap();
    assert_ulp("add_row_sq_norms", &got, &want);
    // rows shorter than a warp: lanes past the row add nothing
    let mut got = start.clone();
    let mut want = start.clone();
    cpu().add_row_sq_norms(&mut want, &a[..g * 3].to_vec(), 3).unwrap();
    k.add_row_sq_norms(&mut got, &a[..g * 3], 3).unwrap();
    assert_ulp("add_row_sq_norms d=3", &got, &want);
    let e = k.add_row_dots(&mut got, &a, &b[1..], d).unwrap_err();
    assert_eq!(e, cpu().add_row_dots(&mut start.clone(), &a, &b[1..].to_vec(), d).unwrap_err());
}

pub fn sgd_matches_the_cpu(k: &mut impl Kernels) {
    let mut rng = Rng::new(10);
    let (w0, g, m0) = (rng.vec(N, 1.0), rng.vec(N, 0.1), rng.vec(N, 0.1));
    for (momentum, first) in [(0.0f32, false), (0.9, true), (0.9, false)] {
        let (mut w_cpu, mut m_cpu) = (w0.clone(), m0.clone());
        cpu().sgd_step(&mut w_cpu, &g, &mut m_cpu, 0.05, momentum, 0.01, first).unwrap();
        let (mut w, mut m) = (w0.clone(), m0.clone());
        k.sgd_step(&mut w, &g, &mut m, 0.05, momentum, 0.01, first).unwrap();
        assert_bits(&format!("sgd w momentum={momentum} first={first}"), &w, &w_cpu);
        assert_bits(&format!("sgd m momentum={momentum} first={first}"), &m, &m_cpu);
    }
    // momentum 0 neither needs nor touches the momentum buffer
    let mut w = w0.clone();
    k.sgd_step(&mut w, &g, &mut vec![], 0.05, 0.0, 0.01, false).unwrap();
    let e = k.sgd_step(&mut w, &g, &mut vec![0.0; 3], 0.05, 0.9, 0.0, false).unwrap_err();
    assert_eq!(e, cpu().sgd_step(&mut w0.clone(), &g, &mut vec![0.0; 3], 0.05, 0.9, 0.0, false).unwrap_err());
}

pub fn adamw_matches_the_cpu(k: &mut impl Kernels) {
    let mut rng = Rng::new(11);
    let (w0, g) = (rng.vec(N, 1.0), rng.vec(N, 0.1));
    let m0 = rng.vec(N, 0.01);
    let v0: Vec<f32> = rng.vec(N, 0.01).iter().map(|v| v * v).collect();
    let h = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
    for t in [1u64, 10, 1000] {
        let (mut w_cpu, mut m_cpu, mut v_cpu) = (w0.clone(), m0.clone(), v0.clone());
        cpu().adamw_step(&mut w_cpu, &g, &mut m_cpu, &mut v_cpu, &h, t).unwrap();
        let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
        k.adamw_step(&mut w, &g, &mut m, &mut v, &h, t).unwrap();
        assert_bits(&format!("adamw w t={t}"), &w, &w_cpu);
        assert_bits(&format!("adamw m t={t}"), &m, &m_cpu);
        assert_bits(&format!("adamw v t={t}"), &v, &v_cpu);
    }
    let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
    let e = k.adamw_step(&mut w, &g, &mut m, &mut v, &h, 0).unwrap_err();
    assert_eq!(e, cpu().adamw_step(&mut w0.clone(), &g, &mut m0.clone(), &mut v0.clone(), &h, 0).unwrap_err());
}

pub fn noise_matches_the_checked_in_vectors(k: &mut impl Kernels) {
    let cases = noise::cases();
    assert_eq!(cases.len(), 4, "vector cases");
    for c in cases {
        let mut buf = noise::input(&c);
        k.add_normal(&mut buf, c.std, c.scale, 2f64.powi(c.grid_log2), &c.key).unwrap();
        for &(i, bits) in &c.expected {
            assert_eq!(buf[i].to_bits(), bits, "{} element {i}: {} vs {}", c.name, buf[i], f32::from_bits(bits));
        }
    }
}

pub fn noise_matches_the_cpu_on_every_element(k: &mut impl Kernels) {
    // three chunks, the last partial; std 0 is a plain scale; every refusal is the CPU's
    let key = NoiseKey { key: std::array::from_fn(|i| (i * 29 + 5) as u8), stream: 77 };
    let x: Vec<f32> = Rng::new(12).vec(9_000, 4.0);
    for (std, scale, grid) in [(1.3f32, 0.25f32, 2f64.powi(-12)), (0.0, 0.5, 1.0), (3e-3, 1.0, 2f64.powi(-21))] {
        let mut want = x.clone();
        cpu().add_normal(&mut want, std, scale, grid, &key).unwrap();
        let mut got = x.clone();
        k.add_normal(&mut got, std, scale, grid, &key).unwrap();
        assert_bits(&format!("add_normal std={std}"), &got, &want);
    }
    for (std, grid) in [(-1.0f32, 1.0), (f32::NAN, 1.0), (1.0, 3e-4), (1.0, 0.0)] {
        let e = k.add_normal(&mut x.clone(), std, 1.0, grid, &key).unwrap_err();
        assert_eq!(e, cpu().add_normal(&mut x.clone(), std, 1.0, grid, &key).unwrap_err());
    }
}

pub fn copy_columns_matches_the_cpu(k: &mut impl Kernels) {
    let mut rng = Rng::new(13);
    let rows = 37;
    let src = rng.vec(rows * 11, 1.0);
    // into the middle, a single column, the whole row, and nothing
    for (dst_w, dst_col, src_col, width) in [(9, 2, 3, 6), (4, 3, 10, 1), (11, 0, 0, 11), (5, 1, 1, 0)] {
        let dst0 = rng.vec(rows * dst_w, 1.0);
        let mut want = dst0.clone();
        cpu().copy_columns(&mut want, dst_w, dst_col, &src, 11, src_col, width, rows).unwrap();
        let mut got = dst0.clone();
        k.copy_columns(&mut got, dst_w, dst_col, &src, 11, src_col, width, rows).unwrap();
        assert_bits(&format!("copy_columns {dst_w} {dst_col} {src_col} {width}"), &got, &want);
    }
    for (dst_w, dst_col, src_col, width, dst_len) in [(9, 4, 0, 6, rows * 9), (9, 0, 6, 6, rows * 9), (9, 0, 0, 6, 5)] {
        let e = k.copy_columns(&mut vec![0.0; dst_len], dst_w, dst_col, &src, 11, src_col, width, rows).unwrap_err();
        let want = cpu().copy_columns(&mut vec![0.0; dst_len], dst_w, dst_col, &src, 11, src_col, width, rows);
        assert_eq!(e, want.unwrap_err());
    }
}

pub fn layer_norm_matches_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let mut rng = Rng::new(14);
    // 37 rows (an odd count: the last warp has one live row); C below 16 (tail only), a multiple of 16
    // (no tail), and more (full lanes and a tail)
    let rows = 37;
    for c in [5usize, 32, 77] {
        let x: Vec<f32> = rng.vec(rows * c, 3.0).iter().map(|v| v + 1.5).collect();
        let (gamma, beta, dy) = (rng.vec(c, 1.0), rng.vec(c, 0.5), rng.vec(rows * c, 1.0));
        let (mut y0, mut m0, mut r0) = (vec![0.0; rows * c], vec![0.0; rows], vec![0.0; rows]);
        cpu().layer_norm_forward(&mut y0, &mut m0, &mut r0, &x, &gamma, &beta, c, 1e-5).unwrap();
        let (mut y, mut m, mut r) = (vec![9.0; rows * c], vec![9.0; rows], vec![9.0; rows]);
        k.layer_norm_forward(&mut y, &mut m, &mut r, &x, &gamma, &beta, c, 1e-5).unwrap();
        assert_bits(&format!("layer_norm_forward y c={c}"), &y, &y0);
        assert_bits(&format!("layer_norm_forward mean c={c}"), &m, &m0);
        assert_bits(&format!("layer_norm_forward rstd c={c}"), &r, &r0);
        let (mut dx0, mut dyx0) = (vec![0.0; rows * c], vec![0.0; rows * c]);
        cpu().layer_norm_backward(&mut dx0, &mut dyx0, &dy, &x, &gamma, &m0, &r0, c).unwrap();
        let (mut dx, mut dyx) = (vec![9.0; rows * c], vec![9.0; rows * c]);
        k.layer_norm_backward(&mut dx, &mut dyx, &dy, &x, &gamma, &m0, &r0, c).unwrap();
        assert_bits(&format!("layer_norm_backward dx c={c}"), &dx, &dx0);
        assert_bits(&format!("layer_norm_backward dy_xhat c={c}"), &dyx, &dyx0);
    }
    let (c, x) = (8, rng.vec(rows * 8, 1.0));
    let (g, b) = (vec![1.0; c], vec![0.0; c]);
    let e =
        k.layer_norm_forward(&mut vec![0.0; rows * c], &mut vec![0.0; rows], &mut vec![0.0; 3], &x, &g, &b, c, 1e-5);
    let want = cpu().layer_norm_forward(
        &mut vec![0.0; rows * c],
        &mut vec![0.0; rows],
        &mut vec![0.0; 3],
        &x,
        &g,
        &b,
        c,
        1e-5,
    );
    assert_eq!(e.unwrap_err(), want.unwrap_err());
    let (m, r) = (vec![0.0; rows], vec![1.0; rows]);
    let e = k.layer_norm_backward(&mut vec![0.0; rows * c], &mut vec![0.0; 7], &x, &x, &g, &m, &r, c);
    let want = cpu().layer_norm_backward(&mut vec![0.0; rows * c], &mut vec![0.0; 7], &x, &x, &g, &m, &r, c);
    assert_eq!(e.unwrap_err(), want.unwrap_err());
}

pub fn softmax_matches_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let mut rng = Rng::new(15);
    let (b, h) = (3, 2);
    // every query row, and the first token's alone (a block whose output is its [CLS] row)
    for (t, first) in [7usize, 16, 37].into_iter().flat_map(|t| [(t, false), (t, true)]) {
        let tq = if first { 1 } else { t };
        let att = rng.vec(b * h * tq * t, 4.0);
        // example 0 keeps every key, example 1 some, example 2 none
        let mask: Vec<f32> = (0..b * t).map(|i| if i < t || (i < 2 * t && i % 3 != 0) { 1.0 } else { 0.0 }).collect();
        for fill in [MaskFill::NegInf, MaskFill::Add(f32::MIN), MaskFill::Add(-1e4)] {
            let mut want = att.clone();
            cpu().masked_softmax_forward(&mut want, &mask, b, h, tq, t, 0.35, fill).unwrap();
            let mut got = att.clone();
            k.masked_softmax_forward(&mut got, &mask, b, h, tq, t, 0.35, fill).unwrap();
            assert_bits(&format!("masked_softmax_forward t={t} tq={tq} {fill:?}"), &got, &want);
            let datt = rng.vec(want.len(), 1.0);
            let mut dwant = datt.clone();
            cpu().softmax_backward(&mut dwant, &want, t, 0.35).unwrap();
            let mut dgot = datt.clone();
            k.softmax_backward(&mut dgot, &want, t, 0.35).unwrap();
            assert_bits(&format!("softmax_backward t={t} tq={tq} {fill:?}"), &dgot, &dwant);
        }
    }
    let att = rng.vec(2 * 9 * 9, 1.0);
    for (fill, mask_len) in [(MaskFill::Add(f32::NEG_INFINITY), 18), (MaskFill::NegInf, 17)] {
        let e = k.masked_softmax_forward(&mut att.clone(), &vec![1.0; mask_len], 2, 1, 9, 9, 1.0, fill).unwrap_err();
        let want = cpu().masked_softmax_forward(&mut att.clone(), &vec![1.0; mask_len], 2, 1, 9, 9, 1.0, fill);
        assert_eq!(e, want.unwrap_err());
    }
    let e = k.softmax_backward(&mut vec![0.0; 3], &att, 9, 1.0).unwrap_err();
    assert_eq!(e, cpu().softmax_backward(&mut vec![0.0; 3], &att, 9, 1.0).unwrap_err());
}

pub fn embedding_matches_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let mut rng = Rng::new(16);
    let (vocab, d, rpe) = (50, 7, 3);
    // uneven groups, one empty; ids repeat inside and across groups (vocab ids 0..50, some never used)
    let layout = GroupRows { offsets: vec![0, 1, 4, 4, 7] };
    let rows = layout.examples() * rpe;
    let ids: Vec<u32> = (0..rows as u32).map(|r| (r * 7 + r / 5) % 13 * 3).collect();
    let table = rng.vec(vocab * d, 1.0);
    let dy = rng.vec(rows * d, 1.0);
    for accumulate in [false, true] {
        let y0 = rng.vec(rows * d, 1.0);
        let mut want = y0.clone();
        cpu().embedding_forward(&mut want, &ids, &table, d, accumulate).unwrap();
        let mut got = y0.clone();
        k.embedding_forward(&mut got, &ids, &table, d, accumulate).unwrap();
        assert_bits(&format!("embedding_forward accumulate={accumulate}"), &got, &want);
    }
    // not powers of two: w * dy rounds, so a fused multiply-add would show
    let factors = vec![0.3f32, 1.0, 0.7, 0.15];
    let mut backward = |ids: &Vec<u32>, dy: &Vec<f32>, layout: &GroupRows, what: &str| {
        for f in [None, Some(&factors)] {
            let t0 = rng.vec(vocab * d, 1.0);
            let mut want = t0.clone();
            cpu().embedding_backward(&mut want, ids, dy, d, f, layout, rpe).unwrap();
            let mut got = t0.clone();
            k.embedding_backward(&mut got, ids, dy, d, f.map(|f| f.as_slice()), layout, rpe).unwrap();
            assert_bits(&format!("embedding_backward{what}, factors={}", f.is_some()), &got, &want);
        }
    };
    backward(&ids, &dy, &layout, "");
    // ids of many rows (a padding id, positions at a large batch): summed in chunks of
    // EMBEDDING_CHUNK rows; id 0 has 3 chunks and a part, id 1 one chunk exactly, id 2 one and one row,
    // ids 3..10 a few rows each, in an order that interleaves them
    let long_layout = GroupRows { offsets: vec![0, 40, 41, 90, 200] };
    let long_rows = long_layout.examples() * rpe;
    let c = EMBEDDING_CHUNK;
    let mut sorted: Vec<u32> =
        [(0, 3 * c + 38), (1, c), (2, c + 1)].into_iter().flat_map(|(id, n)| std::iter::repeat_n(id, n)).collect();
    sorted.extend((sorted.len()..long_rows).map(|i| 3 + (i % 7) as u32));
    assert_eq!(sorted.len(), long_rows);
    let long_ids: Vec<u32> = (0..long_rows).map(|r| sorted[r * 7919 % long_rows]).collect();
    let long_dy: Vec<f32> = (0..long_rows * d).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
    backward(&long_ids, &long_dy, &long_layout, ", long ids");
    let start = rng.vec(layout.groups(), 1.0);
    let mut want = start.clone();
    cpu().embedding_group_sq_norms(&mut want, &ids, &dy, d, &layout, rpe).unwrap();
    let mut got = start.clone();
    k.embedding_group_sq_norms(&mut got, &ids, &dy, d, &layout, rpe).unwrap();
    assert_ulp("embedding_group_sq_norms", &got, &want);
    // wider than a warp: lanes take two columns each, some one
    let wide = 45;
    let dyw = rng.vec(rows * wide, 1.0);
    let mut want = start.clone();
    cpu().embedding_group_sq_norms(&mut want, &ids, &dyw, wide, &layout, rpe).unwrap();
    let mut got = start.clone();
    k.embedding_group_sq_norms(&mut got, &ids, &dyw, wide, &layout, rpe).unwrap();
    assert_ulp("embedding_group_sq_norms (d = 45)", &got, &want);
    // the CPU's errors: an id past the vocabulary (the first one), a table not a multiple of D, bad lengths
    let mut bad = ids.clone();
    bad[5] = 60;
    bad[9] = 70;
    let e = k.embedding_forward(&mut vec![0.0; rows * d], &bad, &table, d, false).unwrap_err();
    assert_eq!(e, cpu().embedding_forward(&mut vec![0.0; rows * d], &bad, &table, d, false).unwrap_err());
    let e = k.embedding_forward(&mut vec![0.0; rows * d], &ids, &table[1..], d, false).unwrap_err();
    assert_eq!(e, cpu().embedding_forward(&mut vec![0.0; rows * d], &ids, &table[1..].to_vec(), d, false).unwrap_err());
    let e = k.embedding_backward(&mut table.clone(), &bad, &dy, d, None, &layout, rpe).unwrap_err();
    assert_eq!(e, cpu().embedding_backward(&mut table.clone(), &bad, &dy, d, None, &layout, rpe).unwrap_err());
    let e = k.embedding_backward(&mut table.clone(), &ids, &dy, d, Some(&factors[1..]), &layout, rpe).unwrap_err();
    let want = cpu().embedding_backward(&mut table.clone(), &ids, &dy, d, Some(&factors[1..].to_vec()), &layout, rpe);
    assert_eq!(e, want.unwrap_err());
    let e = k.embedding_group_sq_norms(&mut vec![0.0; 3], &ids, &dy, d, &layout, rpe).unwrap_err();
    assert_eq!(e, cpu().embedding_group_sq_norms(&mut vec![0.0; 3], &ids, &dy, d, &layout, rpe).unwrap_err());
}

pub fn masked_mean_pool_matches_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let mut rng = Rng::new(17);
    let (b, t, c) = (5, 9, 37);
    // example 0 keeps all, 1 some, 2 none, 3 soft weights, 4 a single step
    let mask: Vec<f32> = (0..b * t)
        .map(|i| match i / t {
            0 => 1.0,
            1 => (i % 2) as f32,
            2 => 0.0,
            3 => (i % t) as f32 * 0.3,
            _ => (i % t == 4) as u8 as f32,
        })
        .collect();
    let mut h = rng.vec(b * t * c, 2.0);
    // masked steps are skipped, not multiplied by 0: a NaN there does not reach the mean
    h[(t + 1) * c + 3] = f32::NAN;
    h[(2 * t + 4) * c] = f32::INFINITY;
    let mut want = vec![0.0; b * c];
    cpu().masked_mean_pool_forward(&mut want, &h, &mask, t, c).unwrap();
    let mut got = vec![7.0; b * c];
    k.masked_mean_pool_forward(&mut got, &h, &mask, t, c).unwrap();
    assert_bits("masked_mean_pool_forward", &got, &want);
    let dout = rng.vec(b * c, 1.0);
    let mut want = vec![0.0; b * t * c];
    cpu().masked_mean_pool_backward(&mut want, &dout, &mask, t, c).unwrap();
    let mut got = vec![7.0; b * t * c];
    k.masked_mean_pool_backward(&mut got, &dout, &mask, t, c).unwrap();
    assert_bits("masked_mean_pool_backward", &got, &want);
    let e = k.masked_mean_pool_forward(&mut vec![0.0; 3], &h, &mask, t, c).unwrap_err();
    assert_eq!(e, cpu().masked_mean_pool_forward(&mut vec![0.0; 3], &h, &mask, t, c).unwrap_err());
    let e = k.masked_mean_pool_backward(&mut vec![0.0; b * t * c], &dout, &mask[1..], t, c).unwrap_err();
    assert_eq!(
        e,
        cpu().masked_mean_pool_backward(&mut vec![0.0; b * t * c], &dout, &mask[1..].to_vec(), t, c).unwrap_err()
    );
}

/// Within one f32 ulp of the CPU (or 1e-30 absolute, for a result at 0): the kernels' f64 exp and ln
/// are their own, the CPU's glibc's (see cuda/loss.cu). Counts the results that are not the CPU's bits.
fn assert_libm(what: &str, got: &[f32], want: &[f32]) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ulp = f32::from_bits(w.abs().to_bits() + 1) - w.abs();
        assert!(
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= ulp.max(1e-30),
            "{what}[{i}]: got {g:e}, CPU {w:e}"
        );
    }
    got.iter().zip(want).filter(|(g, w)| g.to_bits() != w.to_bits() && !(g.is_nan() && w.is_nan())).count()
}

pub fn losses_match_the_cpu(k: &mut impl Kernels) {
    let mut rng = Rng::new(18);
    let n = 700;
    let mut logits = rng.vec(n, 8.0);
    logits.extend([0.0, -0.0, 40.0, -40.0, 800.0, -800.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    let targets: Vec<f32> = (0..logits.len()).map(|i| [0.0, 1.0, 0.3][i % 3]).collect();
    let m = logits.len();
    let (mut l0, mut d0) = (vec![0.0; m], vec![0.0; m]);
    cpu().bce_with_logits(&mut l0, &mut d0, &logits, &targets, 0.125).unwrap();
    let (mut l, mut d) = (vec![9.0; m], vec![9.0; m]);
    k.bce_with_logits(&mut l, &mut d, &logits, &targets, 0.125).unwrap();
    let off = assert_libm("bce_with_logits losses", &l, &l0) + assert_libm("bce_with_logits dlogits", &d, &d0);
    eprintln!("bce_with_logits: {off} of {} results differ from the CPU's bits (by 1 ulp)", 2 * m);
    for huber in [None, Some(1.0), Some(0.05)] {
        let (mut l0, mut d0) = (vec![0.0; m], vec![0.0; m]);
        cpu().regression_loss(&mut l0, &mut d0, &logits, &targets, huber, 0.5).unwrap();
        let (mut l, mut d) = (vec![9.0; m], vec![9.0; m]);
        k.regression_loss(&mut l, &mut d, &logits, &targets, huber, 0.5).unwrap();
        assert_bits(&format!("regression_loss losses {huber:?}"), &l, &l0);
        assert_bits(&format!("regression_loss dlogits {huber:?}"), &d, &d0);
    }
    let (b, kk) = (61, 10);
    let mut z = rng.vec(b * kk, 6.0);
    z[3] = 90.0;
    z[kk + 2] = -90.0;
    let classes: Vec<u32> = (0..b as u32).map(|i| i * 7 % kk as u32).collect();
    let (mut l0, mut d0) = (vec![0.0; b], vec![0.0; b * kk]);
    cpu().cross_entropy(&mut l0, &mut d0, &z, &classes, kk, 0.25).unwrap();
    let (mut l, mut d) = (vec![9.0; b], vec![9.0; b * kk]);
    k.cross_entropy(&mut l, &mut d, &z, &classes, kk, 0.25).unwrap();
    let off = assert_libm("cross_entropy dlogits", &d, &d0) + assert_libm("cross_entropy losses", &l, &l0);
    eprintln!("cross-entropy: {off} of {} results differ from the CPU's bits (by 1 ulp)", d.len() + l.len());
    // the CPU's errors
    let e = k.bce_with_logits(&mut vec![0.0; m], &mut vec![0.0; m], &logits, &targets[1..], 1.0).unwrap_err();
    assert_eq!(
        e,
        cpu().bce_with_logits(&mut vec![0.0; m], &mut vec![0.0; m], &logits, &targets[1..].to_vec(), 1.0).unwrap_err()
    );
    for huber in [Some(0.0), Some(f32::NAN), Some(-1.0)] {
        let e = k.regression_loss(&mut vec![0.0; m], &mut vec![0.0; m], &logits, &targets, huber, 1.0).unwrap_err();
        assert_eq!(
            e,
            cpu().regression_loss(&mut vec![0.0; m], &mut vec![0.0; m], &logits, &targets, huber, 1.0).unwrap_err()
        );
    }
    let mut bad = classes.clone();
    bad[4] = 10;
    bad[7] = 12;
    let e = k.cross_entropy(&mut vec![0.0; b], &mut vec![0.0; b * kk], &z, &bad, kk, 1.0).unwrap_err();
    assert_eq!(e, cpu().cross_entropy(&mut vec![0.0; b], &mut vec![0.0; b * kk], &z, &bad, kk, 1.0).unwrap_err());
}

pub fn gru_steps_match_the_cpu_bit_for_bit(k: &mut impl Kernels) {
    let mut rng = Rng::new(19);
    let (b, steps, hid) = (5, 4, 53);
    let rows = b * steps;
    let (gi, gh) = (rng.vec(rows * 3 * hid, 3.0), rng.vec(rows * 3 * hid, 3.0));
    let dy = rng.vec(rows * hid, 1.0);
    // a whole sequence forward then backward, each step on the outputs of the CPU's previous one
    let (mut h0, mut p0, mut g0) = (vec![0.0; rows * hid], rng.vec(rows * hid, 1.0), vec![0.0; rows * 3 * hid]);
    for t in 0..steps {
        let (mut h, mut p, mut g) = (h0.clone(), p0.clone(), g0.clone());
        cpu().gru_step_forward(&mut h0, &mut p0, &mut g0, &gi, &gh, b, steps, t, hid).unwrap();
        k.gru_step_forward(&mut h, &mut p, &mut g, &gi, &gh, b, steps, t, hid).unwrap();
        assert_bits(&format!("gru_step_forward h t={t}"), &h, &h0);
        assert_bits(&format!("gru_step_forward h_prev t={t}"), &p, &p0);
        assert_bits(&format!("gru_step_forward gates t={t}"), &g, &g0);
    }
    let (mut di0, mut dh0, mut c0) = (vec![0.0; rows * 3 * hid], vec![0.0; rows * 3 * hid], rng.vec(b * hid, 0.5));
    for t in (0..steps).rev() {
        let (mut di, mut dh, mut c) = (di0.clone(), dh0.clone(), c0.clone());
        cpu().gru_step_backward(&mut di0, &mut dh0, &mut c0, &dy, &g0, &gh, &p0, b, steps, t, hid).unwrap();
        k.gru_step_backward(&mut di, &mut dh, &mut c, &dy, &g0, &gh, &p0, b, steps, t, hid).unwrap();
        assert_bits(&format!("gru_step_backward dgi t={t}"), &di, &di0);
        assert_bits(&format!("gru_step_backward dgh t={t}"), &dh, &dh0);
        assert_bits(&format!("gru_step_backward carry t={t}"), &c, &c0);
    }
    // the CPU's errors: a step past the sequence, a size that overflows, a bad length
    let e = k.gru_step_forward(&mut h0.clone(), &mut p0.clone(), &mut g0.clone(), &gi, &gh, b, steps, steps, hid);
    let want =
        cpu().gru_step_forward(&mut h0.clone(), &mut p0.clone(), &mut g0.clone(), &gi, &gh, b, steps, steps, hid);
    assert_eq!(e.unwrap_err(), want.unwrap_err());
    let e = k.gru_step_forward(&mut vec![], &mut vec![], &mut vec![], &[], &[], usize::MAX / 2, 2, 0, 3);
    let want = cpu().gru_step_forward(&mut vec![], &mut vec![], &mut vec![], &vec![], &vec![], usize::MAX / 2, 2, 0, 3);
    assert_eq!(e.unwrap_err(), want.unwrap_err());
    let e = k.gru_step_backward(
        &mut di0.clone(),
        &mut dh0.clone(),
        &mut c0[1..].to_vec(),
        &dy,
        &g0,
        &gh,
        &p0,
        b,
        steps,
        0,
        hid,
    );
    let want = cpu().gru_step_backward(&mut di0, &mut dh0, &mut c0[1..].to_vec(), &dy, &g0, &gh, &p0, b, steps, 0, hid);
    assert_eq!(e.unwrap_err(), want.unwrap_err());
}
