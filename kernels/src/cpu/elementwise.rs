//! Elementwise kernels, row reductions and optimizers on the CPU. Each parallel loop splits its work in
//! fixed chunks; a reduction adds its chunks in order, so results do not depend on the thread count.

use super::math;
use crate::backend::{AdamW, GroupRows};
use crate::error::{check_len, KernelError, Result};
use rayon::prelude::*;

/// Elements per parallel task for memory-bound loops.
pub(crate) const CHUNK: usize = 1 << 14;
/// Rows per partial sum in row reductions (a fixed blocking, not a function of the thread count).
const ROW_BLOCK: usize = 64;

pub(crate) fn unary(op: &'static str, y: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Result<()> {
    check_len(op, "y", x.len(), y.len())?;
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f(x);
        }
    });
    Ok(())
}

pub(crate) fn binary(
    op: &'static str,
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<()> {
    check_len(op, "out", a.len(), out.len())?;
    check_len(op, "second operand", a.len(), b.len())?;
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((o, a), b)| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    Ok(())
}

pub(crate) fn add_assign(y: &mut [f32], x: &[f32]) -> Result<()> {
    check_len("add_assign", "x", y.len(), x.len())?;
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += x;
        }
    });
    Ok(())
}

pub(crate) fn broadcast_rows(y: &mut [f32], bias: &[f32], rows: usize) -> Result<()> {
    let d = bias.len();
    check_len("broadcast_rows", "y", rows * d, y.len())?;
    if d == 0 {
        return Ok(());
    }
    y.par_chunks_mut(d * (CHUNK / d).max(1)).for_each(|block| {
        for row in block.chunks_mut(d) {
            row.copy_from_slice(bias);
        }
    });
    Ok(())
}

pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + math::erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

pub(crate) fn gelu_grad(x: f32) -> f32 {
    0.5 * (1.0 + math::erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * math::normal_pdf(x)
}

fn sum_rows_into(acc: &mut [f32], x: &[f32], d: usize) {
    for row in x.chunks_exact(d) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
}

/// Sum of rows `x` ([n, d]) as the ordered sum of blocks of `ROW_BLOCK` rows.
fn blocked_row_sum(out: &mut [f32], x: &[f32], d: usize, parallel: bool) {
    out.iter_mut().for_each(|v| *v = 0.0);
    if parallel {
        let partials: Vec<Vec<f32>> = x
            .par_chunks(ROW_BLOCK * d)
            .map(|blk| {
                let mut acc = vec![0.0f32; d];
                sum_rows_into(&mut acc, blk, d);
                acc
            })
            .collect();
        for p in partials {
            for (o, v) in out.iter_mut().zip(p) {
                *o += v;
            }
        }
    } else {
        let mut acc = vec![0.0f32; d];
        for blk in x.chunks(ROW_BLOCK * d) {
            acc.iter_mut().for_each(|v| *v = 0.0);
            sum_rows_into(&mut acc, blk, d);
            for (o, &v) in out.iter_mut().zip(&acc) {
                *o += v;
            }
        }
    }
}

pub(crate) fn group_row_sums(
    threads: usize,
    out: &mut [f32],
    x: &[f32],
    d: usize,
    groups: &GroupRows,
    rows_per_example: usize,
) -> Result<()> {
    let g = groups.groups();
    check_len("group_row_sums", "out", g * d, out.len())?;
    check_len("group_row_sums", "x", groups.examples() * rows_per_example * d, x.len())?;
    if d == 0 {
        return Ok(());
    }
    if g >= 2 * threads {
        out.par_chunks_mut(d).enumerate().for_each(|(gi, o)| {
            let r = groups.rows(gi, rows_per_example);
            blocked_row_sum(o, &x[r.start * d..r.end * d], d, false);
        });
    } else {
        for (gi, o) in out.chunks_mut(d).enumerate() {
            let r = groups.rows(gi, rows_per_example);
            blocked_row_sum(o, &x[r.start * d..r.end * d], d, true);
        }
    }
    Ok(())
}

pub(crate) fn add_row_sq_norms(out: &mut [f32], x: &[f32], d: usize) -> Result<()> {
    check_len("add_row_sq_norms", "x", out.len() * d, x.len())?;
    if d == 0 {
        return Ok(());
    }
    out.par_iter_mut().zip(x.par_chunks(d)).for_each(|(o, row)| {
        *o += row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32;
    });
    Ok(())
}

pub(crate) fn add_row_dots(out: &mut [f32], a: &[f32], b: &[f32], d: usize) -> Result<()> {
    check_len("add_row_dots", "a", out.len() * d, a.len())?;
    check_len("add_row_dots", "b", out.len() * d, b.len())?;
    if d == 0 {
        return Ok(());
    }
    out.par_iter_mut().zip(a.par_chunks(d).zip(b.par_chunks(d))).for_each(|(o, (ra, rb))| {
        *o += ra.iter().zip(rb).map(|(&u, &v)| u as f64 * v as f64).sum::<f64>() as f32;
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_columns(
    dst: &mut [f32],
    dst_w: usize,
    dst_col: usize,
    src: &[f32],
    src_w: usize,
    src_col: usize,
    width: usize,
    rows: usize,
) -> Result<()> {
    if dst_col + width > dst_w || src_col + width > src_w {
        return Err(KernelError::Invalid {
            op: "copy_columns",
            msg: format!(
                "columns {dst_col}..{} of rows {dst_w} wide, from columns {src_col}..{} of rows {src_w} wide",
                dst_col + width,
                src_col + width
            ),
        });
    }
    check_len("copy_columns", "dst", rows * dst_w, dst.len())?;
    check_len("copy_columns", "src", rows * src_w, src.len())?;
    if width == 0 {
        return Ok(());
    }
    for (d, s) in dst.chunks_exact_mut(dst_w).zip(src.chunks_exact(src_w)) {
        d[dst_col..dst_col + width].copy_from_slice(&s[src_col..src_col + width]);
    }
    Ok(())
}

pub(crate) fn split_last_column(head: &mut [f32], last: &mut [f32], x: &[f32], w: usize) -> Result<()> {
    if w == 0 {
        return Err(KernelError::Invalid { op: "split_last_column", msg: "width must be at least 1".into() });
    }
    let rows = x.len() / w;
    check_len("split_last_column", "x", rows * w, x.len())?;
    check_len("split_last_column", "head", rows * (w - 1), head.len())?;
    check_len("split_last_column", "last", rows, last.len())?;
    for ((row, h), l) in x.chunks_exact(w).zip(head.chunks_mut((w - 1).max(1))).zip(last.iter_mut()) {
        h[..w - 1].copy_from_slice(&row[..w - 1]);
        *l = row[w - 1];
    }
    Ok(())
}

pub(crate) fn weighted_row_sum(out: &mut [f32], x: &[f32], w: &[f32], d: usize, accumulate: bool) -> Result<()> {
    check_len("weighted_row_sum", "out", d, out.len())?;
    check_len("weighted_row_sum", "x", w.len() * d, x.len())?;
    const COLS: usize = 256;
    out.par_chunks_mut(COLS).enumerate().for_each(|(ci, o)| {
        if !accumulate {
            o.iter_mut().for_each(|v| *v = 0.0);
        }
        let c0 = ci * COLS;
        for (g, &wg) in w.iter().enumerate() {
            let row = &x[g * d + c0..g * d + c0 + o.len()];
            for (o, &v) in o.iter_mut().zip(row) {
                *o += wg * v;
            }
        }
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn scale_rows_by_group(
    y: &mut [f32],
    x: &[f32],
    d: usize,
    append_factor: bool,
    factors: &[f32],
    groups: &GroupRows,
    rows_per_example: usize,
) -> Result<()> {
    check_len("scale_rows_by_group", "factors", groups.groups(), factors.len())?;
    let rows = groups.examples() * rows_per_example;
    let width = d + append_factor as usize;
    check_len("scale_rows_by_group", "x", rows * d, x.len())?;
    check_len("scale_rows_by_group", "y", rows * width, y.len())?;
    if width == 0 {
        return Ok(());
    }
    // factor of each example, then rows in parallel
    let mut per_example = vec![0.0f32; groups.examples()];
    for (g, &f) in factors.iter().enumerate() {
        per_example[groups.offsets[g]..groups.offsets[g + 1]].iter_mut().for_each(|v| *v = f);
    }
    y.par_chunks_mut(width).enumerate().with_min_len(64).for_each(|(r, y)| {
        let f = per_example[r / rows_per_example];
        for (y, &x) in y.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *y = f * x;
        }
        if append_factor {
            y[d] = f;
        }
    });
    Ok(())
}

pub(crate) fn clip_factors(factors: &mut [f32], sq_norms: &[f32], clip: f32) -> Result<()> {
    check_len("clip_factors", "factors", sq_norms.len(), factors.len())?;
    if !(clip > 0.0 && clip.is_finite()) {
        return Err(KernelError::Invalid {
            op: "clip_factors",
            msg: format!("clip norm must be positive and finite, got {clip}"),
        });
    }
    for (f, &s) in factors.iter_mut().zip(sq_norms) {
        // a NaN norm (from a NaN gradient) gets factor 0, never 1: `f32::max` would turn NaN into 0
        let norm = if s.is_nan() { f32::INFINITY } else { s.max(0.0).sqrt() };
        *f = if norm > clip { clip / norm } else { 1.0 };
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_step(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    first_step: bool,
) -> Result<()> {
    check_len("sgd_step", "grad", w.len(), g.len())?;
    if momentum != 0.0 {
        check_len("sgd_step", "momentum buffer", w.len(), m.len())?;
    }
    if momentum == 0.0 {
        w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(w, g)| {
            for (w, &g) in w.iter_mut().zip(g) {
                *w -= lr * (g + weight_decay * *w);
            }
        });
        return Ok(());
    }
    w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).for_each(|((w, g), m)| {
        for ((w, &g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            let g = g + weight_decay * *w;
            *m = if first_step { g } else { momentum * *m + g };
            *w -= lr * *m;
        }
    });
    Ok(())
}

pub(crate) fn adamw_step(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: &AdamW, t: u64) -> Result<()> {
    check_len("adamw_step", "grad", w.len(), g.len())?;
    check_len("adamw_step", "first moment", w.len(), m.len())?;
    check_len("adamw_step", "second moment", w.len(), v.len())?;
    let (step, bc2_sqrt, decay) = adamw_scalars(h, t)?;
    w.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((w, g), (m, v))| {
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *w *= decay;
                *m = h.beta1 * *m + (1.0 - h.beta1) * g;
                *v = h.beta2 * *v + (1.0 - h.beta2) * g * g;
                *w -= step * *m / (v.sqrt() / bc2_sqrt + h.eps);
            }
        });
    Ok(())
}

/// The per-step scalars of AdamW at step t (1-based), computed on the host: `(lr / (1 - beta1^t),
/// sqrt(1 - beta2^t), 1 - lr * wd)`. Every backend takes them from here, so its update is the CPU's.
pub(crate) fn adamw_scalars(h: &AdamW, t: u64) -> Result<(f32, f32, f32)> {
    if t == 0 {
        return Err(KernelError::Invalid { op: "adamw_step", msg: "step count is 1-based".into() });
    }
    let bc1 = 1.0 - (h.beta1 as f64).powi(t.min(i32::MAX as u64) as i32);
    let bc2 = 1.0 - (h.beta2 as f64).powi(t.min(i32::MAX as u64) as i32);
    let step = (h.lr as f64 / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let decay = 1.0 - h.lr * h.weight_decay;
    Ok((step, bc2_sqrt, decay))
}
