//! Strided, batched matmul on the CPU through the `gemm` crate (AVX-512 kernels picked at run time),
//! plus `gemm_naive`, the plain triple loop it is tested against.
//!
//! A: [m, k], B: [k, n] -> C: [m, n] = beta*C + alpha*A·B, for each batch item p.
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

/// Batch items must write disjoint parts of C, or two threads would race: item p's block ends before
/// item p+1's starts (blocks of whole rows, or column blocks of shared rows like one head of an
/// attention output `[B, T, H*hd]`, whose items are T rows apart).
fn outputs_disjoint(cv: &MatView, g: &Gemm) -> bool {
    let single = cv.extent(g.m, g.n, 1).saturating_sub(cv.offset);
    g.batch == 1 || cv.batch_stride >= single
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
            gemm::gemm(
                m,
                n,
                k,
                cp.0.add(co),
                c_cs as isize,
                c_rs as isize,
                beta != 0.0,
                a.as_ptr().add(ao),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr().add(bo),
                b_cs as isize,
                b_rs as isize,
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
