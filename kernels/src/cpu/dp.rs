//! Per-group squared norms of a Linear layer's weight and bias gradient, from one backward pass.
//! x: [R, Din], dy: [R, Dout]; group g owns rows `groups.rows(g, T)`. Its gradient is `dY_g^T [X_g, 1]`:
//! the bias is the weight of a constant input 1, so it needs no pass of its own.
//! - one row: `(||x||^2 + 1) ||dy||^2`;
//! - ghost norm: `sum_{t,s} (x_t . x_s + 1)(dy_t . dy_s)` = <X X^T + 1, dY dY^T>, cost n^2 (Din + Dout);
//! - materialized: `||X_g^T dY_g||_F^2 + ||1^T dY_g||^2`, cost n Din Dout.
//! `Auto` takes the cheaper for each group. Sums are accumulated in f64 in a fixed order.

use super::matmul;
use crate::backend::{Gemm, GroupRows, MatView, NormStrategy};
use crate::error::{check_len, Result};
use rayon::prelude::*;

/// Dot product in 16 f32 lanes (vectorized), lanes summed in f64: a fixed order for any thread count.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&x, &y)| x as f64 * y as f64).sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail
}

fn choose(strategy: NormStrategy, n: usize, d_in: usize, d_out: usize) -> NormStrategy {
    match strategy {
        NormStrategy::Auto if n * (d_in + d_out) <= d_in * d_out => NormStrategy::Ghost,
        NormStrategy::Auto => NormStrategy::Materialize,
        s => s,
    }
}

/// Per-thread scratch, kept between calls: a step computes hundreds of group norms, and allocating and
/// zero-filling their buffers each time cost more than some of the products. Buffers only grow; every
/// use overwrites what it reads.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    dy: Vec<f32>,
    t: Vec<f32>,
    gx: Vec<f32>,
    gy: Vec<f32>,
    kept: Vec<usize>,
    bias: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

fn group_sq_norm(threads: usize, x: &[f32], dy: &[f32], d_in: usize, d_out: usize, strategy: NormStrategy) -> f64 {
    if d_in == 0 || d_out == 0 {
        return 0.0;
    }
    SCRATCH.with_borrow_mut(|s| group_sq_norm_with(s, threads, x, dy, d_in, d_out, strategy))
}

fn group_sq_norm_with(
    s: &mut Scratch,
    threads: usize,
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    d_out: usize,
    strategy: NormStrategy,
) -> f64 {
    // A row whose output gradient is zero adds nothing to the group's gradient (padding steps: masked
    // keys get no attention and pooling skips them), so the norm is computed over the other rows only.
    s.kept.clear();
    s.kept.extend(dy.chunks_exact(d_out).enumerate().filter(|(_, r)| r.iter().any(|&v| v != 0.0)).map(|(i, _)| i));
    let n = s.kept.len();
    match n {
        0 => return 0.0,
        1 => {
            let r = s.kept[0];
            let (xr, dr) = (&x[r * d_in..(r + 1) * d_in], &dy[r * d_out..(r + 1) * d_out]);
            return (dot(xr, xr) + 1.0) * dot(dr, dr);
        }
        _ => {}
    }
    let Scratch { x: xs, dy: dys, t, gx, gy, kept, bias } = s;
    let (x, dy) = if n * d_in == x.len() {
        (x, dy)
    } else {
        let (xc, dyc) = (sized(xs, n * d_in), sized(dys, n * d_out));
        for (i, &r) in kept.iter().enumerate() {
            xc[i * d_in..(i + 1) * d_in].copy_from_slice(&x[r * d_in..(r + 1) * d_in]);
            dyc[i * d_out..(i + 1) * d_out].copy_from_slice(&dy[r * d_out..(r + 1) * d_out]);
        }
        (&xc[..], &dyc[..])
    };
    match choose(strategy, n, d_in, d_out) {
        NormStrategy::Ghost => {
            let gx = sized(gx, n * n);
            gram(threads, gx, sized(t, d_in * n), x, n, d_in);
            let gy = sized(gy, n * n);
            gram(threads, gy, sized(t, d_out * n), dy, n, d_out);
            // <Gx + 1, Gy> = <Gx, Gy> + sum(Gy)
            dot(gx, gy) + gy.iter().map(|&v| v as f64).sum::<f64>()
        }
        _ => {
            let g = sized(gx, d_in * d_out);
            // shapes are consistent by construction; this cannot fail
            let _ = matmul::gemm(
                threads,
                g,
                MatView::row_major(0, d_out),
                x,
                MatView::transposed(0, d_in),
                dy,
                MatView::row_major(0, d_out),
                Gemm::new(d_in, d_out, n),
            );
            bias.clear();
            bias.resize(d_out, 0.0);
            for row in dy.chunks_exact(d_out) {
                bias.iter_mut().zip(row).for_each(|(b, &v)| *b += v as f64);
            }
            dot(g, g) + bias.iter().map(|b| b * b).sum::<f64>()
        }
    }
}

/// g: [n, n] = a a^T for a: [n, k] row-major. gemm is about twice as fast on these small shapes with a
/// row-major right operand, so a^T is written out first (n k copies against n^2 k multiply-adds) into `at`.
fn gram(threads: usize, g: &mut [f32], at: &mut [f32], a: &[f32], n: usize, k: usize) {
    // 8 rows at a time: each column of the block becomes 8 contiguous values of `at`
    let mut i0 = 0;
    while i0 < n {
        let rows = (n - i0).min(8);
        let block = &a[i0 * k..(i0 + rows) * k];
        for j in 0..k {
            let dst = &mut at[j * n + i0..j * n + i0 + rows];
            for (ii, d) in dst.iter_mut().enumerate() {
                *d = block[ii * k + j];
            }
        }
        i0 += 8;
    }
    // shapes are consistent by construction; this cannot fail
    let _ = matmul::gemm(
        threads,
        g,
        MatView::row_major(0, n),
        a,
        MatView::row_major(0, k),
        at,
        MatView::row_major(0, n),
        Gemm::new(n, n, k),
    );
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_group_sq_norms(
    threads: usize,
    out: &mut [f32],
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    d_out: usize,
    groups: &GroupRows,
    rows_per_example: usize,
    strategy: NormStrategy,
) -> Result<()> {
    let rows = groups.examples() * rows_per_example;
    check_len("linear_group_sq_norms", "out", groups.groups(), out.len())?;
    check_len("linear_group_sq_norms", "x", rows * d_in, x.len())?;
    check_len("linear_group_sq_norms", "dy", rows * d_out, dy.len())?;
    let one = |g: usize, t: usize| {
        let r = groups.rows(g, rows_per_example);
        group_sq_norm(t, &x[r.start * d_in..r.end * d_in], &dy[r.start * d_out..r.end * d_out], d_in, d_out, strategy)
    };
    if groups.groups() >= 2 * threads {
        out.par_iter_mut().enumerate().for_each(|(g, o)| *o += one(g, 1) as f32);
    } else {
        for (g, o) in out.iter_mut().enumerate() {
            *o += one(g, threads) as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghost_and_materialized_norms_agree() {
        let (n, d_in, d_out) = (7, 5, 3);
        let x: Vec<f32> = (0..n * d_in).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let dy: Vec<f32> = (0..n * d_out).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
        let a = group_sq_norm(1, &x, &dy, d_in, d_out, NormStrategy::Ghost);
        let b = group_sq_norm(1, &x, &dy, d_in, d_out, NormStrategy::Materialize);
        assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
    }
}
