//! Strided, batched matmul on the CPU through the `gemm` crate (AVX-512 kernels picked at run time),
//! plus `gemm_naive`, the plain triple loop it is tested against.
//!
//! A: [m, k], B: [k, n] -> C: [m, n] = beta*C + alpha*A·B, for each batch item p.
//! A single product uses all threads inside gemm; a batch of products runs one product per task.
//! Each output element is a chain of FMAs over k within a k block, blocks added into C in order; the
//! threads only share out tiles, so the bits do not depend on the number of threads.
//!
//! They do depend on the machine: gemm sizes its k blocks from the L1 cache it finds (sysfs, cpuid)
//! and the micro-kernel's rows (16 with AVX2, 64 with AVX-512), and two of its paths (the horizontal
//! kernel for small outputs, the row-major gemv) reduce across 8 or 16 SIMD lanes. The portable mode
//! ([`super::Cpu::portable`]) removes both: it cuts k itself into balanced blocks of at most
//! [`PORTABLE_KC`] (gemm then never splits a block further: its own blocks are at least 512 long), and
//! it runs the lane-reducing shapes on the AVX2 kernels everywhere. The FMA-chain paths give the same
//! bits with AVX2 and AVX-512 kernels once the blocks are fixed, so large products keep AVX-512.
//! `MEDTRAIN_CPU_ISA=avx2` ([`super::isa`]) runs everything on the AVX2 kernels: a test checks that a
//! portable product is the same bits both ways.

use crate::backend::{Gemm, MatView};
use crate::error::{check_min_len, KernelError, Result};
use rayon::prelude::*;

/// Products smaller than this many multiply-adds run on one thread: the fork costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Batch items must write disjoint parts of C, or two threads would race: item p's block ends before
/// item p+1's starts (blocks of whole rows, or column blocks of shared rows like one head of an
/// attention output `[B, T, H*hd]`, whose items are T rows apart).
fn outputs_disjoint(cv: &MatView, g: &Gemm) -> bool {
    let single = cv.extent(g.m, g.n, 1).saturating_sub(cv.offset);
    g.batch == 1 || cv.batch_stride >= single
}

/// The longest k block of the portable mode.
pub const PORTABLE_KC: usize = 512;

/// Which of gemm's kernel sets a product runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernels {
    /// gemm's own choice (AVX-512 where present)
    Native,
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// One product `dst = alpha*dst + beta*lhs·rhs` in gemm's argument order (gemm's alpha scales dst).
/// # Safety
/// As `gemm::gemm`: the pointers and strides address valid memory for the shapes.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    kernels: Kernels,
    (m, n, k): (usize, usize, usize),
    (dst, dst_cs, dst_rs, read_dst): (*mut f32, isize, isize, bool),
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
    (alpha, beta): (f32, f32),
    par: gemm::Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    {
        use gemm_common::simd::{V3, V4};
        use gemm_f32::microkernel::{avx512f::f32 as k4, fma::f32 as k3};
        // gemm::gemm's first step: a destination with unit row stride is computed transposed
        let (tm, tn, tdst_cs, tdst_rs, tlhs, tlhs_cs, tlhs_rs, trhs, trhs_cs, trhs_rs) = if dst_cs.abs() < dst_rs.abs()
        {
            (n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs)
        } else {
            (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs)
        };
        // gemm's basic driver with one ISA's micro-kernels (what gemm::gemm picks by detection)
        macro_rules! basic {
            ($simd:expr, $lanes:literal, $k:ident) => {
                return gemm_common::gemm::gemm_basic_generic::<
                    _,
                    f32,
                    $lanes,
                    { $k::MR_DIV_N * $lanes },
                    { $k::NR },
                    { $k::MR_DIV_N },
                    { $k::H_M },
                    { $k::H_N },
                >(
                    $simd,
                    tm,
                    tn,
                    k,
                    dst,
                    tdst_cs,
                    tdst_rs,
                    read_dst,
                    tlhs,
                    tlhs_cs,
                    tlhs_rs,
                    trhs,
                    trhs_cs,
                    trhs_rs,
                    alpha,
                    beta,
                    false,
                    false,
                    false,
                    |x: f32, y: f32, z: f32| x * y + z,
                    &$k::UKR,
                    &$k::H_UKR,
                    false,
                    par,
                )
            };
        }
        match kernels {
            Kernels::Avx2 => {
                if let Some(simd) = V3::try_new() {
                    basic!(simd, 8, k3);
                }
            }
            Kernels::Avx512 => {
                if let Some(simd) = V4::try_new() {
                    basic!(simd, 16, k4);
                }
            }
            Kernels::Native => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernels;
    // gemm's own choice (it transposes as above itself)
    gemm::gemm(
        m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta, false, false,
        false, par,
    )
}

/// The portable product: k in balanced blocks of at most [`PORTABLE_KC`], each added into dst in order;
/// the shapes gemm would reduce across SIMD lanes (A's rows and B's columns contiguous along k, and a
/// small output or a vector) on the AVX2 kernels, the rest on AVX-512 when `wide` (the CPU has it and
/// it is allowed).
/// # Safety
/// As [`product`].
#[allow(clippy::too_many_arguments)]
unsafe fn portable_product(
    wide: bool,
    (m, n, k): (usize, usize, usize),
    (dst, dst_cs, dst_rs, read_dst): (*mut f32, isize, isize, bool),
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
    (alpha, beta): (f32, f32),
    par: gemm::Parallelism,
) {
    let lane_reducing = lhs_cs == 1 && rhs_rs == 1 && (m * n <= 256 || m <= 1 || n <= 1);
    #[cfg(target_arch = "x86_64")]
    let kernels = if lane_reducing || !wide { Kernels::Avx2 } else { Kernels::Avx512 };
    #[cfg(not(target_arch = "x86_64"))]
    let kernels = {
        let _ = (lane_reducing, wide);
        Kernels::Native
    };
    let blocks = k.div_ceil(PORTABLE_KC);
    let kc = k.div_ceil(blocks);
    let mut d = 0;
    while d < k {
        let kb = kc.min(k - d);
        let first = d == 0;
        product(
            kernels,
            (m, n, kb),
            (dst, dst_cs, dst_rs, if first { read_dst } else { true }),
            (lhs.offset(d as isize * lhs_cs), lhs_cs, lhs_rs),
            (rhs.offset(d as isize * rhs_rs), rhs_cs, rhs_rs),
            (if first { alpha } else { 1.0 }, beta),
            par,
        );
        d += kb;
    }
}

/// How a product runs: the threads gemm may use, and the portable blocking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exec {
    pub threads: usize,
    pub portable: bool,
}

pub(crate) fn gemm(
    exec: Exec,
    c: &mut [f32],
    cv: MatView,
    a: &[f32],
    av: MatView,
    b: &[f32],
    bv: MatView,
    g: Gemm,
) -> Result<()> {
    let Gemm { m, n, k, batch, alpha, beta } = g;
    let Exec { threads, portable } = exec;
    check_min_len("gemm", "C", cv.extent(m, n, batch), c.len())?;
    check_min_len("gemm", "A", av.extent(m, k, batch), a.len())?;
    check_min_len("gemm", "B", bv.extent(k, n, batch), b.len())?;
    let count = batch;
    if cv.trans {
        return Err(KernelError::Invalid { op: "gemm", msg: "the output C cannot be a transposed view".into() });
    }
    if m > 1 && cv.ld < n {
        // rows of C would overlap, and threads writing them would race
        return Err(KernelError::Invalid {
            op: "gemm",
            msg: format!("C's leading dimension {} is below its {n} columns", cv.ld),
        });
    }
    if m == 0 || n == 0 || count == 0 {
        return Ok(());
    }
    if count > 1 && !outputs_disjoint(&cv, &g) {
        return Err(KernelError::Invalid { op: "gemm", msg: format!("batched outputs overlap: {cv:?} for {g:?}") });
    }
    let cp = SendPtr(c.as_mut_ptr());
    let ((c_rs, c_cs), (a_rs, a_cs), (b_rs, b_cs)) = (cv.strides(), av.strides(), bv.strides());
    let one = |p: usize, par: gemm::Parallelism| {
        let co = cv.offset + p * cv.batch_stride;
        let ao = av.offset + p * av.batch_stride;
        let bo = bv.offset + p * bv.batch_stride;
        let cp = cp;
        // SAFETY: extents were checked against the buffer lengths above, and batches write disjoint
        // parts of C (checked), so concurrent calls never touch the same element.
        unsafe {
            if k == 0 {
                for i in 0..m {
                    for j in 0..n {
                        let e = cp.0.add(co + i * c_rs + j * c_cs);
                        *e = if beta == 0.0 { 0.0 } else { beta * *e };
                    }
                }
                return;
            }
            let shape = (m, n, k);
            let dst = (cp.0.add(co), c_cs as isize, c_rs as isize, beta != 0.0);
            let lhs = (a.as_ptr().add(ao), a_cs as isize, a_rs as isize);
            let rhs = (b.as_ptr().add(bo), b_cs as isize, b_rs as isize);
            // gemm's alpha scales dst, its beta the product
            if portable {
                portable_product(super::isa::avx512(), shape, dst, lhs, rhs, (beta, alpha), par);
            } else {
                let kernels = if super::isa::avx512() { Kernels::Native } else { Kernels::Avx2 };
                product(kernels, shape, dst, lhs, rhs, (beta, alpha), par);
            }
        }
    };
    let flops = m * n * k;
    if count == 1 {
        let par = if flops >= PARALLEL_MIN_FLOPS && threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        one(0, par);
    } else {
        let min_len = (PARALLEL_MIN_FLOPS / flops.max(1)).max(1);
        (0..count).into_par_iter().with_min_len(min_len).for_each(|p| one(p, gemm::Parallelism::None));
    }
    Ok(())
}

/// The reference: a plain triple loop in f64, same semantics as [`gemm`].
pub fn gemm_naive(c: &mut [f32], cv: MatView, a: &[f32], av: MatView, b: &[f32], bv: MatView, g: Gemm) {
    let ((c_rs, c_cs), (a_rs, a_cs), (b_rs, b_cs)) = (cv.strides(), av.strides(), bv.strides());
    for p in 0..g.batch {
        let (co, ao, bo) =
            (cv.offset + p * cv.batch_stride, av.offset + p * av.batch_stride, bv.offset + p * bv.batch_stride);
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = 0.0f64;
                for l in 0..g.k {
                    s += a[ao + i * a_rs + l * a_cs] as f64 * b[bo + l * b_rs + j * b_cs] as f64;
                }
                let e = &mut c[co + i * c_rs + j * c_cs];
                let old = if g.beta == 0.0 { 0.0 } else { g.beta as f64 * *e as f64 };
                *e = (old + g.alpha as f64 * s) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: reproducible operands
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn value(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// The portable product is the same bits on the AVX2 kernels alone and with AVX-512 for the
    /// FMA-chain shapes, over shapes that take every path of gemm (horizontal kernel, gemv, k <= 2,
    /// one and several k blocks, both layouts, read and fresh destinations, threads), and within
    /// rounding of the f64 reference. On a CPU without AVX-512 both runs are the AVX2 one.
    #[test]
    fn portable_products_are_the_same_bits_on_avx2_and_avx512_kernels() {
        let wide = cfg!(target_arch = "x86_64") && super::super::isa::avx512();
        let mut r = Rng(0x1234_5678_9abc_def1);
        let dims = [1usize, 2, 3, 7, 16, 17, 33, 64, 65, 130];
        let ks = [1usize, 2, 3, 64, 511, 512, 513, 1025, 1500];
        for case in 0..160 {
            let (m, n, k) = (dims[r.below(dims.len())], dims[r.below(dims.len())], ks[r.below(ks.len())]);
            let (a_rm, b_rm, read) = (r.below(2) == 0, r.below(2) == 0, r.below(2) == 0);
            let (alpha, beta) = [(1.0f32, 1.0f32), (0.5, 1.0), (1.0, -0.25), (0.3, 1.7)][r.below(4)];
            let par = if r.below(2) == 0 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(1 + r.below(3)) };
            let a: Vec<f32> = (0..m * k).map(|_| r.value()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| r.value()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| r.value()).collect();
            let (a_cs, a_rs) = if a_rm { (1isize, k as isize) } else { (m as isize, 1) };
            let (b_cs, b_rs) = if b_rm { (1isize, n as isize) } else { (k as isize, 1) };
            let run = |wide: bool| {
                let mut c = c0.clone();
                // SAFETY: the strides address a [m,k], b [k,n] and c [m,n] exactly
                unsafe {
                    portable_product(
                        wide,
                        (m, n, k),
                        (c.as_mut_ptr(), 1, n as isize, read),
                        (a.as_ptr(), a_cs, a_rs),
                        (b.as_ptr(), b_cs, b_rs),
                        (alpha, beta),
                        par,
                    )
                };
                c
            };
            let (narrow, with_wide) = (run(false), run(wide));
            let differ = narrow.iter().zip(&with_wide).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            assert_eq!(differ, 0, "case {case}: m {m} n {n} k {k} a_rm {a_rm} b_rm {b_rm}: {differ} elements differ");
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|l| {
                            a[(i as isize * a_rs + l as isize * a_cs) as usize] as f64
                                * b[(l as isize * b_rs + j as isize * b_cs) as usize] as f64
                        })
                        .sum();
                    let want = if read { alpha as f64 * c0[i * n + j] as f64 } else { 0.0 } + beta as f64 * dot;
                    let got = narrow[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (k as f64).sqrt() * 4.0,
                        "case {case} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
