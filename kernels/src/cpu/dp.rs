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
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with this thread's scratch, taken out of the thread-local slot for the duration and put
/// back after. No borrow spans `f`: the materialized path runs a parallel gemm, and while it waits,
/// rayon may run another group's norm on this same thread (work stealing). That nested call finds the
/// slot empty and works on a fresh scratch, where a `RefCell` borrow held across the gemm would panic.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.take().unwrap_or_default();
    let r = f(&mut s);
    SCRATCH.set(Some(s));
    r
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// One group's squared norm of one Linear (what [`linear_group_sq_norms`] computes per group).
#[cfg(test)]
fn group_sq_norm(
    exec: matmul::Exec,
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    d_out: usize,
    strategy: NormStrategy,
) -> Result<f64> {
    if d_in == 0 || d_out == 0 {
        return Ok(0.0);
    }
    with_scratch(|s| group_sq_norm_with(s, exec, x, dy, d_in, d_out, strategy))
}

fn group_sq_norm_with(
    s: &mut Scratch,
    exec: matmul::Exec,
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    d_out: usize,
    strategy: NormStrategy,
) -> Result<f64> {
    // A row whose output gradient is zero adds nothing to the group's gradient (padding steps: masked
    // keys get no attention and pooling skips them), so the norm is computed over the other rows only.
    s.kept.clear();
    s.kept.extend(dy.chunks_exact(d_out).enumerate().filter(|(_, r)| r.iter().any(|&v| v != 0.0)).map(|(i, _)| i));
    let n = s.kept.len();
    match n {
        0 => return Ok(0.0),
        1 => {
            let r = s.kept[0];
            let (xr, dr) = (&x[r * d_in..(r + 1) * d_in], &dy[r * d_out..(r + 1) * d_out]);
            return Ok((dot(xr, xr) + 1.0) * dot(dr, dr));
        }
        _ => {}
    }
    let Scratch { x: xs, dy: dys, t, gx, gy, kept, bias } = s;
    let strategy = choose(strategy, n, d_in, d_out);
    if strategy == NormStrategy::Ghost {
        // Gram matrices of the kept rows' inputs and output gradients (lower triangles), then <Gx + 1, Gy>
        let np = n.div_ceil(TILE_J) * TILE_J;
        let gx = sized(gx, n * np);
        let gy = sized(gy, n * np);
        let at = sized(t, d_in.max(d_out) * np);
        transpose_padded(at, x, kept, np, d_in);
        gram_lower(gx, at, n, np, d_in);
        transpose_padded(at, dy, kept, np, d_out);
        gram_lower(gy, at, n, np, d_out);
        return Ok(ghost_from_lower(gx, gy, n, np));
    }
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
    materialized_sq_norm(exec, gx, bias, x, dy, n, d_in, d_out)
}

/// `||X^T dY||_F^2 + ||1^T dY||^2` for x: [n, Din], dy: [n, Dout], with `g` as the gradient's scratch.
/// A failed gemm is returned, never skipped: the scratch would still hold an earlier group's gradient.
#[allow(clippy::too_many_arguments)]
fn materialized_sq_norm(
    exec: matmul::Exec,
    g: &mut Vec<f32>,
    bias: &mut Vec<f64>,
    x: &[f32],
    dy: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) -> Result<f64> {
    let g = sized(g, d_in * d_out);
    matmul::gemm(
        exec,
        g,
        MatView::row_major(0, d_out),
        x,
        MatView::transposed(0, d_in),
        dy,
        MatView::row_major(0, d_out),
        Gemm::new(d_in, d_out, n),
    )?;
    bias.clear();
    bias.resize(d_out, 0.0);
    for row in dy.chunks_exact(d_out) {
        bias.iter_mut().zip(row).for_each(|(b, &v)| *b += v as f64);
    }
    Ok(dot(g, g) + bias.iter().map(|b| b * b).sum::<f64>())
}

/// Rows of the Gram tile and its width (one AVX-512 register of f32).
const TILE_I: usize = 8;
const TILE_J: usize = 16;

/// at: [k, np] = (the rows `rows` of a: [*, k] row-major)^T, zero-padded to np columns (np >= rows.len(),
/// a multiple of TILE_J). Gathering the kept rows and transposing are one pass: 8 x 8 blocks in AVX
/// registers where the CPU has AVX, the edges one value at a time (a copy: the bits do not depend on
/// the path).
fn transpose_padded(at: &mut [f32], a: &[f32], rows: &[usize], np: usize, k: usize) {
    let n = rows.len();
    assert!(np >= n && at.len() >= k * np, "transpose_padded: inconsistent sizes");
    assert!(rows.iter().all(|&r| (r + 1) * k <= a.len()), "transpose_padded: a row past the input");
    #[cfg(target_arch = "x86_64")]
    let simd = std::arch::is_x86_feature_detected!("avx");
    for (c, block) in rows.chunks(8).enumerate() {
        let i0 = c * 8;
        let mut j0 = 0;
        #[cfg(target_arch = "x86_64")]
        if simd && block.len() == 8 {
            while j0 + 8 <= k {
                // SAFETY: AVX is present; each of the 8 rows has k values from r * k (asserted above), read
                // at j0..j0 + 8 <= k; the writes at[(j0 + jj) * np + i0 + ii] stay below k * np (asserted)
                unsafe {
                    let src: [*const f32; 8] = std::array::from_fn(|ii| a.as_ptr().add(block[ii] * k + j0));
                    transpose8x8_avx(src, at.as_mut_ptr().add(j0 * np + i0), np);
                }
                j0 += 8;
            }
        }
        for j in j0..k {
            let dst = &mut at[j * np + i0..j * np + i0 + block.len()];
            for (d, &r) in dst.iter_mut().zip(block) {
                *d = a[r * k + j];
            }
        }
    }
    for j in 0..k {
        at[j * np + n..(j + 1) * np].iter_mut().for_each(|v| *v = 0.0);
    }
}

/// dst[jj * stride + ii] = src[ii][jj] for an 8 x 8 block (the usual unpack, shuffle, permute sequence).
/// # Safety
/// AVX; each src[ii] readable for 8 floats; dst writable at jj * stride + ii for jj, ii < 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8x8_avx(src: [*const f32; 8], dst: *mut f32, stride: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|ii| _mm256_loadu_ps(src[ii]));
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let c = [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ];
    for (jj, v) in c.iter().enumerate() {
        _mm256_storeu_ps(dst.add(jj * stride), *v);
    }
}

/// The portable reference of the Gram tile kernel: for each (i, j) the FMA chain over l = 0..k, in
/// order; the SIMD versions below compute exactly the same chains, so all give the same bits.
fn gram_lower_portable(g: &mut [f32], at: &[f32], n: usize, np: usize, k: usize) {
    for i in 0..n {
        let jmax = (i / TILE_I * TILE_I + TILE_I).min(n).div_ceil(TILE_J) * TILE_J;
        for j in 0..jmax {
            let mut acc = 0.0f32;
            for l in 0..k {
                acc = at[l * np + i].mul_add(at[l * np + j], acc);
            }
            g[i * np + j] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gram_lower_avx512(g: &mut [f32], at: &[f32], n: usize, np: usize, k: usize) {
    use std::arch::x86_64::*;
    let (gp, ap) = (g.as_mut_ptr(), at.as_ptr());
    let mut i0 = 0;
    while i0 < n {
        let mut j0 = 0;
        while j0 < (i0 + TILE_I).min(n) {
            let mut acc = [_mm512_setzero_ps(); TILE_I];
            for l in 0..k {
                let row = ap.add(l * np);
                let b = _mm512_loadu_ps(row.add(j0));
                for (ii, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*row.add(i0 + ii)), b, *a);
                }
            }
            for (ii, a) in acc.iter().enumerate().take(n - i0) {
                _mm512_storeu_ps(gp.add((i0 + ii) * np + j0), *a);
            }
            j0 += TILE_J;
        }
        i0 += TILE_I;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gram_lower_avx2(g: &mut [f32], at: &[f32], n: usize, np: usize, k: usize) {
    use std::arch::x86_64::*;
    let (gp, ap) = (g.as_mut_ptr(), at.as_ptr());
    let mut i0 = 0;
    while i0 < n {
        let mut j0 = 0;
        while j0 < (i0 + TILE_I).min(n) {
            let mut lo = [_mm256_setzero_ps(); TILE_I];
            let mut hi = [_mm256_setzero_ps(); TILE_I];
            for l in 0..k {
                let row = ap.add(l * np);
                let (b0, b1) = (_mm256_loadu_ps(row.add(j0)), _mm256_loadu_ps(row.add(j0 + 8)));
                for ii in 0..TILE_I {
                    let a = _mm256_set1_ps(*row.add(i0 + ii));
                    lo[ii] = _mm256_fmadd_ps(a, b0, lo[ii]);
                    hi[ii] = _mm256_fmadd_ps(a, b1, hi[ii]);
                }
            }
            for ii in 0..TILE_I.min(n - i0) {
                _mm256_storeu_ps(gp.add((i0 + ii) * np + j0), lo[ii]);
                _mm256_storeu_ps(gp.add((i0 + ii) * np + j0 + 8), hi[ii]);
            }
            j0 += TILE_J;
        }
        i0 += TILE_I;
    }
}

/// The lower triangle (and diagonal, in tiles) of g: [n, np] = a a^T from at = a^T padded (see
/// `transpose_padded`): an 8 x 16 register tile of accumulators, one outer product per l.
fn gram_lower(g: &mut [f32], at: &[f32], n: usize, np: usize, k: usize) {
    // the SIMD versions read 8 rows and 16 columns per tile: the padding guarantees both
    assert!(np % TILE_J == 0 && np >= n && at.len() >= k * np && g.len() >= n * np, "gram_lower: inconsistent sizes");
    #[cfg(target_arch = "x86_64")]
    {
        if super::isa::avx512() {
            // SAFETY: AVX-512F is present (isa::avx512 checked it); all reads are within at[..k*np] since i0 + 8 <= np
            // and j0 + 16 <= np, all writes within g[..n*np] (asserted above)
            return unsafe { gram_lower_avx512(g, at, n, np, k) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above, for AVX2 and FMA
            return unsafe { gram_lower_avx2(g, at, n, np, k) };
        }
    }
    gram_lower_portable(g, at, n, np, k)
}

/// <Gx + 1, Gy> from the lower triangles of two symmetric [n, np] matrices: diagonal once, the rest twice.
fn ghost_from_lower(gx: &[f32], gy: &[f32], n: usize, np: usize) -> f64 {
    let mut diag = 0.0f64;
    let mut off = 0.0f64;
    for i in 0..n {
        let (rx, ry) = (&gx[i * np..i * np + i], &gy[i * np..i * np + i]);
        off += dot(rx, ry) + ry.iter().map(|&v| v as f64).sum::<f64>();
        let (x, y) = (gx[i * np + i] as f64, gy[i * np + i] as f64);
        diag += (x + 1.0) * y;
    }
    diag + 2.0 * off
}

/// One group's squared norms of several Linears reading the input x (see
/// [`shared_input_group_sq_norms`]), the group being `rows` of x and of every dy: where every one takes
/// the ghost form, the Gram of the input rows is computed once, over the rows where any output gradient
/// is nonzero (a row that is zero in one of them adds zero to that one's norm); otherwise each Linear's
/// own [`group_sq_norm_with`]. A Linear of width 0 has no gradient.
fn shared_group_sq_norm(
    s: &mut Scratch,
    exec: matmul::Exec,
    x: &[f32],
    dys: &[(&[f32], usize)],
    rows: std::ops::Range<usize>,
    d_in: usize,
    strategy: NormStrategy,
) -> Result<f64> {
    // the group's rows of a [R, w] matrix
    fn group<'a>(m: &'a [f32], rows: &std::ops::Range<usize>, w: usize) -> &'a [f32] {
        &m[rows.start * w..rows.end * w]
    }
    let dys = || dys.iter().filter(|&&(_, w)| w > 0).map(|&(dy, w)| (group(dy, &rows, w), w));
    if d_in == 0 || dys().next().is_none() {
        return Ok(0.0);
    }
    let x = group(x, &rows, d_in);
    let live = |r: usize| dys().any(|(dy, w)| dy[r * w..(r + 1) * w].iter().any(|&v| v != 0.0));
    s.kept.clear();
    s.kept.extend((0..rows.len()).filter(|&r| live(r)));
    let n = s.kept.len();
    if n < 2 || dys().any(|(_, w)| choose(strategy, n, d_in, w) != NormStrategy::Ghost) {
        let mut total = 0.0;
        for (dy, w) in dys() {
            total += group_sq_norm_with(s, exec, x, dy, d_in, w, strategy)?;
        }
        return Ok(total);
    }
    let Scratch { t, gx, gy, kept, .. } = s;
    let np = n.div_ceil(TILE_J) * TILE_J;
    let gx = sized(gx, n * np);
    let gy = sized(gy, n * np);
    let d_max = dys().map(|(_, w)| w).max().unwrap_or(0).max(d_in);
    let at = sized(t, d_max * np);
    transpose_padded(at, x, kept, np, d_in);
    gram_lower(gx, at, n, np, d_in);
    let mut total = 0.0;
    for (dy, w) in dys() {
        transpose_padded(at, dy, kept, np, w);
        gram_lower(gy, at, n, np, w);
        total += ghost_from_lower(gx, gy, n, np);
    }
    Ok(total)
}

/// out: [G] += the per-group squared norms of the Linears with input x: [R, Din] and output gradients
/// `dys` ([R, Dout] each), sharing each group's input Gram among them where they all take the ghost
/// form (one Linear: exactly [`linear_group_sq_norms`]); `op` names the caller in errors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn shared_input_group_sq_norms(
    op: &'static str,
    exec: matmul::Exec,
    out: &mut [f32],
    x: &[f32],
    dys: &[(&[f32], usize)],
    d_in: usize,
    groups: &GroupRows,
    rows_per_example: usize,
    strategy: NormStrategy,
) -> Result<()> {
    let rows = groups.examples() * rows_per_example;
    check_len(op, "out", groups.groups(), out.len())?;
    check_len(op, "x", rows * d_in, x.len())?;
    for &(dy, w) in dys {
        check_len(op, "dy", rows * w, dy.len())?;
    }
    let one = |g: usize, t: matmul::Exec| {
        let r = groups.rows(g, rows_per_example);
        with_scratch(|s| shared_group_sq_norm(s, t, x, dys, r, d_in, strategy))
    };
    for_each_group(exec, out, one)
}

/// `out[g] += one(g)` for every group: in parallel over groups (one thread each) when there are enough
/// of them, else one group at a time with every thread.
fn for_each_group(
    exec: matmul::Exec,
    out: &mut [f32],
    one: impl Fn(usize, matmul::Exec) -> Result<f64> + Sync,
) -> Result<()> {
    // on an error `out` is left partly updated: the caller drops the step
    if out.len() >= 2 * exec.threads {
        out.par_iter_mut().enumerate().try_for_each(|(g, o)| {
            *o += one(g, matmul::Exec { threads: 1, ..exec })? as f32;
            Ok(())
        })
    } else {
        for (g, o) in out.iter_mut().enumerate() {
            *o += one(g, exec)? as f32;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_group_sq_norms(
    exec: matmul::Exec,
    out: &mut [f32],
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    d_out: usize,
    groups: &GroupRows,
    rows_per_example: usize,
    strategy: NormStrategy,
) -> Result<()> {
    shared_input_group_sq_norms(
        "linear_group_sq_norms",
        exec,
        out,
        x,
        &[(dy, d_out)],
        d_in,
        groups,
        rows_per_example,
        strategy,
    )
}

#[cfg(test)]
mod tests {
    const ONE: super::matmul::Exec = super::matmul::Exec { threads: 1, portable: false };
    use super::*;

    #[test]
    fn simd_gram_tiles_give_the_portable_bits() {
        for (n, k) in [(1usize, 3usize), (8, 16), (13, 40), (48, 128), (70, 9)] {
            let np = n.div_ceil(TILE_J) * TILE_J;
            let a: Vec<f32> = (0..n * k).map(|i| ((i * 29 % 17) as f32 - 8.0) / 3.0).collect();
            let mut at = vec![0.0f32; k * np];
            transpose_padded(&mut at, &a, &(0..n).collect::<Vec<_>>(), np, k);
            let (mut fast, mut slow) = (vec![0.0f32; n * np], vec![0.0f32; n * np]);
            gram_lower(&mut fast, &at, n, np, k);
            gram_lower_portable(&mut slow, &at, n, np, k);
            for i in 0..n {
                for j in 0..=i {
                    assert_eq!(fast[i * np + j].to_bits(), slow[i * np + j].to_bits(), "n={n} k={k} ({i}, {j})");
                }
            }
        }
    }

    /// The blocked transpose is the plain one: rows gathered out of order, both edges (rows and columns
    /// not multiples of 8), padding zeroed over stale scratch.
    #[test]
    fn blocked_transpose_is_the_plain_transpose() {
        for (total, k) in [(20usize, 19usize), (9, 8), (40, 384), (3, 5), (17, 1)] {
            let a: Vec<f32> = (0..total * k).map(|i| i as f32 * 0.5 - 3.0).collect();
            let rows: Vec<usize> = (0..total).rev().filter(|r| r % 5 != 1).collect();
            let np = rows.len().div_ceil(TILE_J) * TILE_J;
            let mut at = vec![f32::NAN; k * np];
            transpose_padded(&mut at, &a, &rows, np, k);
            for j in 0..k {
                for i in 0..np {
                    let want = rows.get(i).map_or(0.0, |&r| a[r * k + j]);
                    assert_eq!(at[j * np + i].to_bits(), want.to_bits(), "{total} rows, k {k}: ({j}, {i})");
                }
            }
        }
    }

    /// The shared-input norms are each Linear's own, summed: rows zero in one output gradient but not
    /// in another (the union of kept rows), a zero-width Linear, groups of every size, every strategy.
    #[test]
    fn shared_input_norms_are_the_sum_of_each_linears() {
        let (d_in, widths) = (24usize, [16usize, 40, 0, 24]);
        let layout = GroupRows { offsets: vec![0, 1, 2, 5, 9] };
        let t = 6;
        let rows = layout.examples() * t;
        let x: Vec<f32> = (0..rows * d_in).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let dys: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                (0..rows * w)
                    .map(|i| if (i / w.max(1) + j) % 4 == 0 { 0.0 } else { ((i * 13 % 7) as f32 - 3.0) / 5.0 })
                    .collect()
            })
            .collect();
        for strategy in [NormStrategy::Auto, NormStrategy::Ghost, NormStrategy::Materialize] {
            for threads in [1, 2] {
                let exec = matmul::Exec { threads, portable: false };
                let mut want = vec![0.0f32; layout.groups()];
                for (dy, &w) in dys.iter().zip(&widths) {
                    linear_group_sq_norms(exec, &mut want, &x, dy, d_in, w, &layout, t, strategy).unwrap();
                }
                let shared: Vec<(&[f32], usize)> = dys.iter().zip(&widths).map(|(dy, &w)| (&dy[..], w)).collect();
                let mut got = vec![0.0f32; layout.groups()];
                shared_input_group_sq_norms("shared", exec, &mut got, &x, &shared, d_in, &layout, t, strategy).unwrap();
                for (g, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * b.abs(), "{strategy:?} group {g}: shared {a} vs {b}");
                }
            }
        }
        let short = vec![0.0f32; 3];
        let e = shared_input_group_sq_norms(
            "shared",
            ONE,
            &mut [0.0; 4],
            &x,
            &[(&short, 16)],
            d_in,
            &layout,
            t,
            NormStrategy::Auto,
        );
        assert!(e.is_err());
    }

    #[test]
    fn ghost_and_materialized_norms_agree_across_tile_sizes() {
        for (n, d_in, d_out) in
            [(2, 5, 3), (7, 5, 3), (8, 16, 16), (9, 33, 17), (17, 128, 40), (48, 128, 384), (70, 64, 128)]
        {
            let x: Vec<f32> = (0..n * d_in).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
            let dy: Vec<f32> = (0..n * d_out).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
            let a = group_sq_norm(ONE, &x, &dy, d_in, d_out, NormStrategy::Ghost).unwrap();
            let b = group_sq_norm(ONE, &x, &dy, d_in, d_out, NormStrategy::Materialize).unwrap();
            assert!((a - b).abs() <= 1e-4 * b.abs(), "n={n} d_in={d_in} d_out={d_out}: ghost {a} vs materialized {b}");
        }
    }

    #[test]
    fn discarded_gemm_error_left_stale_scratch_in_a_norm() {
        // the scratch holds an earlier group's gradient; a gemm that fails (dy too short for n rows)
        // must surface as an error, not as the norm of that stale gradient
        let (n, d_in, d_out) = (3, 4, 5);
        let mut g = vec![1.0f32; d_in * d_out];
        let mut bias = Vec::new();
        let x = vec![0.5f32; n * d_in];
        let dy = vec![0.25f32; n * d_out - 1];
        let r = materialized_sq_norm(ONE, &mut g, &mut bias, &x, &dy, n, d_in, d_out);
        assert!(matches!(r, Err(crate::KernelError::Shape { op: "gemm", .. })), "{r:?}");
    }

    #[test]
    fn reentrant_norm_call_panicked_on_the_borrowed_thread_local_scratch() {
        // a call nested inside another's use of the scratch (what rayon's work stealing does during the
        // parallel gemm) works on its own scratch and gives the same value as an unnested call
        let (n, d_in, d_out) = (6, 40, 30);
        let x: Vec<f32> = (0..n * d_in).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let dy: Vec<f32> = (0..n * d_out).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
        let plain = group_sq_norm(ONE, &x, &dy, d_in, d_out, NormStrategy::Materialize).unwrap();
        let nested = with_scratch(|outer| {
            let inner = group_sq_norm(ONE, &x, &dy, d_in, d_out, NormStrategy::Materialize).unwrap();
            let again = group_sq_norm_with(outer, ONE, &x, &dy, d_in, d_out, NormStrategy::Materialize).unwrap();
            assert_eq!(inner.to_bits(), again.to_bits());
            inner
        });
        assert_eq!(plain.to_bits(), nested.to_bits());
    }
}
