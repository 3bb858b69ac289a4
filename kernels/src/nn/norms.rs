//! The per-group squared gradient norm of a Linear (`y = x W^T + b`), written once in the backend's
//! primitives: the default of `Backend::linear_group_sq_norms`, which any backend gets for free.
//!
//! Group g owns rows `groups.rows(g, T)`; its gradient is `dY_g^T [X_g, 1]` (the bias is the weight
//! of a constant input 1). Its squared norm is `||X_g^T dY_g||_F^2 + ||1^T dY_g||^2`, computed one of
//! two exact ways:
//! - ghost: `<X_g X_g^T, dY_g dY_g^T> + ||1^T dY_g||^2`, two n x n Gram matrices per group, cost
//!   `n^2 (Din + Dout)` for n rows; used when every group has the same n (a strided batch of Grams);
//! - materialized: the group's `[Din, Dout]` gradient, cost `n Din Dout`.
//! `NormStrategy::Auto` takes the cheaper by multiply-adds. Rows whose output gradient is zero (padding)
//! add zero to both forms, so skipping them is an optimization a backend may make, not a requirement.
//! The CPU backend overrides the whole with its fused version (symmetric Gram tiles, zero rows skipped,
//! the choice made per group from its kept rows); the tests hold both to the same values.

use crate::backend::{Backend, Gemm, MatView, NormStrategy};
use crate::error::{KernelError, Result};

/// Ghost when it needs no more multiply-adds than materializing (for `Auto`).
pub fn ghost_is_cheaper(strategy: NormStrategy, n: usize, d_in: usize, d_out: usize) -> bool {
    match strategy {
        NormStrategy::Auto => n * (d_in + d_out) <= d_in * d_out,
        NormStrategy::Ghost => true,
        NormStrategy::Materialize => false,
    }
}

/// Whether a Linear whose groups all have n rows should materialize its per-group gradients and keep
/// them, so that the clipped sum is their weighted sum (`G Din Dout` values streamed once) instead of
/// a second product over the activations. For `Auto`: when materializing is the cheaper form of the
/// norms anyway. (Keeping them also where ghost norms are cheaper was measured slower on the
/// lab-transformer workload, n = 48: 870 vs 945 samples/s, benches/RESULTS.md.)
pub fn keep_materialized(strategy: NormStrategy, n: usize, d_in: usize, d_out: usize) -> bool {
    n > 1 && !ghost_is_cheaper(strategy, n, d_in, d_out)
}

/// out: [G] += each group's squared norm of the weight and bias gradient of a Linear with input
/// x: [R, Din] and output gradient dy: [R, Dout] (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn linear_group_sq_norms<B: Backend + ?Sized>(
    be: &B,
    out: &mut B::Buf,
    x: &B::Buf,
    dy: &B::Buf,
    d_in: usize,
    d_out: usize,
    groups: &B::Groups,
    rows_per_example: usize,
    strategy: NormStrategy,
) -> Result<()> {
    const OP: &str = "linear_group_sq_norms";
    let layout = groups.as_ref();
    let (g, rows) = (layout.groups(), layout.examples() * rows_per_example);
    for (what, want, got) in [("out", g, be.len(out)), ("x", rows * d_in, be.len(x)), ("dy", rows * d_out, be.len(dy))]
    {
        if want != got {
            return Err(KernelError::Shape { op: OP, what, expected: want, got });
        }
    }
    if g == 0 {
        return Ok(());
    }
    // the bias: ||1^T dY_g||^2, the same in both forms
    let mut sums = be.zeros(g * d_out)?;
    be.group_row_sums(&mut sums, dy, d_out, groups, rows_per_example)?;
    be.add_row_sq_norms(out, &sums, d_out)?;
    if d_in == 0 || d_out == 0 {
        return Ok(());
    }
    let sizes: Vec<usize> = (0..g).map(|i| layout.rows(i, rows_per_example).len()).collect();
    let uniform = sizes.iter().all(|&n| n == sizes[0]).then_some(sizes[0]);
    match uniform {
        Some(n) if ghost_is_cheaper(strategy, n, d_in, d_out) => {
            // <X_g X_g^T, dY_g dY_g^T> for all groups: two strided batches of Grams, then row dots
            let gram = |m: &B::Buf, d: usize| -> Result<B::Buf> {
                let mut gm = be.zeros(g * n * n)?;
                let rows = MatView::row_major(0, d).batched(n * d);
                be.gemm(
                    &mut gm,
                    MatView::row_major(0, n).batched(n * n),
                    m,
                    rows,
                    m,
                    rows.t(),
                    Gemm::new(n, n, d).batched(g),
                )?;
                Ok(gm)
            };
            let (gx, gy) = (gram(x, d_in)?, gram(dy, d_out)?);
            be.add_row_dots(out, &gx, &gy, n * n)
        }
        _ => {
            // each group's [Din, Dout] gradient X_g^T dY_g: one strided batch when the groups are the
            // same size, one product per group otherwise
            let mut grads = be.zeros(g * d_in * d_out)?;
            let c = MatView::row_major(0, d_out);
            match uniform {
                Some(n) => be.gemm(
                    &mut grads,
                    c.batched(d_in * d_out),
                    x,
                    MatView::transposed(0, d_in).batched(n * d_in),
                    dy,
                    MatView::row_major(0, d_out).batched(n * d_out),
                    Gemm::new(d_in, d_out, n).batched(g),
                )?,
                None => {
                    for (i, &n) in sizes.iter().enumerate().filter(|(_, &n)| n > 0) {
                        let start = layout.rows(i, rows_per_example).start;
                        be.gemm(
                            &mut grads,
                            MatView::row_major(i * d_in * d_out, d_out),
                            x,
                            MatView::transposed(start * d_in, d_in),
                            dy,
                            MatView::row_major(start * d_out, d_out),
                            Gemm::new(d_in, d_out, n),
                        )?;
                    }
                }
            }
            be.add_row_sq_norms(out, &grads, d_in * d_out)
        }
    }
}
