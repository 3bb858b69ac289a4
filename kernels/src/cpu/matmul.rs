//! Strided, batched matmul on the CPU through the `gemm` crate (AVX-512 kernels picked at run time),
//! plus `gemm_naive`, the plain triple loop it is tested against.
//!
//! A: [m, k], B: [k, n] -> C: [m, n] = beta*C + alpha*A·B, for each batch index (p, q).
//! A single product uses all threads inside gemm; a batch of products runs one product per task.
//! Either way each output element is a sum over k in gemm's fixed blocking, so the bits do not depend
//! on the number of threads.

use crate::backend::{Gemm, MatView};
use crate::error::{check_min_len, KernelError, Result};
use rayon::prelude::*;

/// Products smaller than this many multiply-adds run on one thread: the fork costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Batches must write disjoint parts of C, or two threads would race. Two layouts are accepted:
/// whole blocks one after another, or blocks that tile the columns of shared rows (the heads of an
/// attention output `[B, T, H*hd]`).
fn outputs_disjoint(cv: &MatView, g: &Gemm) -> bool {
    let single = cv.extent(g.m, g.n, [1, 1]).saturating_sub(cv.offset);
    let [b0, b1] = g.batch;
    let [s0, s1] = cv.batch_stride;
    let blocks = (b1 == 1 || s1 >= single) && (b0 == 1 || s0 >= (b1 - 1) * s1 + single);
    let tiled_columns = cv.col_stride == 1
        && (b1 == 1 || (s1 >= g.n && cv.offset % cv.row_stride.max(1) + (b1 - 1) * s1 + g.n <= cv.row_stride))
        && (b0 == 1 || s0 >= g.m * cv.row_stride);
    blocks || tiled_columns
}

pub(crate) fn gemm(
    threads: usize,
    c: &mut [f32],
    cv: MatView,
    a: &[f32],
    av: MatView,
    b: &[f32],
    bv: MatView,
    g: Gemm,
) -> Result<()> {
    let Gemm { m, n, k, batch, alpha, beta } = g;
    check_min_len("gemm", "C", cv.extent(m, n, batch), c.len())?;
    check_min_len("gemm", "A", av.extent(m, k, batch), a.len())?;
    check_min_len("gemm", "B", bv.extent(k, n, batch), b.len())?;
    let count = batch[0] * batch[1];
    if m == 0 || n == 0 || count == 0 {
        return Ok(());
    }
    if count > 1 && !outputs_disjoint(&cv, &g) {
        return Err(KernelError::Invalid { op: "gemm", msg: format!("batched outputs overlap: {cv:?} for {g:?}") });
    }
    let cp = SendPtr(c.as_mut_ptr());
    let one = |p: usize, q: usize, par: gemm::Parallelism| {
        let co = cv.offset + p * cv.batch_stride[0] + q * cv.batch_stride[1];
        let ao = av.offset + p * av.batch_stride[0] + q * av.batch_stride[1];
        let bo = bv.offset + p * bv.batch_stride[0] + q * bv.batch_stride[1];
        let cp = cp;
        // SAFETY: extents were checked against the buffer lengths above, and batches write disjoint
        // parts of C (checked), so concurrent calls never touch the same element.
        unsafe {
            if k == 0 {
                for i in 0..m {
                    for j in 0..n {
                        let e = cp.0.add(co + i * cv.row_stride + j * cv.col_stride);
                        *e = if beta == 0.0 { 0.0 } else { beta * *e };
                    }
                }
                return;
            }
            gemm::gemm(
                m,
                n,
                k,
                cp.0.add(co),
                cv.col_stride as isize,
                cv.row_stride as isize,
                beta != 0.0,
                a.as_ptr().add(ao),
                av.col_stride as isize,
                av.row_stride as isize,
                b.as_ptr().add(bo),
                bv.col_stride as isize,
                bv.row_stride as isize,
                beta,
                alpha,
                false,
                false,
                false,
                par,
            );
        }
    };
    let flops = m * n * k;
    if count == 1 {
        let par = if flops >= PARALLEL_MIN_FLOPS && threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        one(0, 0, par);
    } else {
        let min_len = (PARALLEL_MIN_FLOPS / flops.max(1)).max(1);
        (0..count)
            .into_par_iter()
            .with_min_len(min_len)
            .for_each(|i| one(i / batch[1], i % batch[1], gemm::Parallelism::None));
    }
    Ok(())
}

/// The reference: a plain triple loop in f64, same semantics as [`gemm`].
pub fn gemm_naive(c: &mut [f32], cv: MatView, a: &[f32], av: MatView, b: &[f32], bv: MatView, g: Gemm) {
    for p in 0..g.batch[0] {
        for q in 0..g.batch[1] {
            let co = cv.offset + p * cv.batch_stride[0] + q * cv.batch_stride[1];
            let ao = av.offset + p * av.batch_stride[0] + q * av.batch_stride[1];
            let bo = bv.offset + p * bv.batch_stride[0] + q * bv.batch_stride[1];
            for i in 0..g.m {
                for j in 0..g.n {
                    let mut s = 0.0f64;
                    for l in 0..g.k {
                        s += a[ao + i * av.row_stride + l * av.col_stride] as f64
                            * b[bo + l * bv.row_stride + j * bv.col_stride] as f64;
                    }
                    let e = &mut c[co + i * cv.row_stride + j * cv.col_stride];
                    let old = if g.beta == 0.0 { 0.0 } else { g.beta as f64 * *e as f64 };
                    *e = (old + g.alpha as f64 * s) as f32;
                }
            }
        }
    }
}
