//! One GRU time step, forward and backward, for all examples at once (see `Backend::gru_step_forward`).
//! Example e's row at step t is `e*steps + t`; each example is one task, and each value is computed by
//! a fixed expression, so the bits do not depend on the number of threads.

use super::math::{sigmoid, tanh};
use crate::error::{check_len, KernelError, Result};
use rayon::prelude::*;

/// The step is inside the sequence, and `b * steps * 3 * hidden` fits in usize (a hostile size would
/// wrap past the length checks); returns (rows, hidden).
fn check(op: &'static str, b: usize, steps: usize, t: usize, hidden: usize) -> Result<(usize, usize)> {
    if t >= steps {
        return Err(KernelError::Invalid { op, msg: format!("step {t} of a sequence of {steps}") });
    }
    let rows = b.checked_mul(steps);
    if rows.and_then(|r| r.checked_mul(3)).and_then(|r| r.checked_mul(hidden)).is_none() {
        return Err(KernelError::Invalid { op, msg: format!("{b} x {steps} x {hidden} is too large") });
    }
    Ok((rows.unwrap_or(0), hidden))
}

/// Raw pointer wrapper so that tasks can write the disjoint rows of their own example.
#[derive(Clone, Copy)]
struct Rows(*mut f32);
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step_forward(
    h: &mut [f32],
    h_prev: &mut [f32],
    gates: &mut [f32],
    gi: &[f32],
    gh: &[f32],
    b: usize,
    steps: usize,
    t: usize,
    hidden: usize,
) -> Result<()> {
    const OP: &str = "gru_step_forward";
    let (rows, k) = check(OP, b, steps, t, hidden)?;
    check_len(OP, "h", rows * k, h.len())?;
    check_len(OP, "h_prev", rows * k, h_prev.len())?;
    check_len(OP, "gates", rows * 3 * k, gates.len())?;
    check_len(OP, "gi", rows * 3 * k, gi.len())?;
    check_len(OP, "gh", rows * 3 * k, gh.len())?;
    let (hp, pp, gp) = (Rows(h.as_mut_ptr()), Rows(h_prev.as_mut_ptr()), Rows(gates.as_mut_ptr()));
    (0..b).into_par_iter().for_each(|e| {
        let (hp, pp, gp) = (hp, pp, gp);
        let r = e * steps + t;
        // SAFETY: task e writes only the rows of example e (r and r+1, both < (e+1)*steps), whose bounds
        // were checked above; reads of h_prev row r come before the write of row r+1
        let (hr, prev, next, g) = unsafe {
            (
                std::slice::from_raw_parts_mut(hp.0.add(r * k), k),
                std::slice::from_raw_parts(pp.0.add(r * k), k),
                if t + 1 < steps { Some(std::slice::from_raw_parts_mut(pp.0.add((r + 1) * k), k)) } else { None },
                std::slice::from_raw_parts_mut(gp.0.add(r * 3 * k), 3 * k),
            )
        };
        let (xi, xh) = (&gi[r * 3 * k..(r + 1) * 3 * k], &gh[r * 3 * k..(r + 1) * 3 * k]);
        for j in 0..k {
            let rg = sigmoid(xi[j] + xh[j]);
            let zg = sigmoid(xi[k + j] + xh[k + j]);
            let ng = tanh(xi[2 * k + j] + rg * xh[2 * k + j]);
            g[j] = rg;
            g[k + j] = zg;
            g[2 * k + j] = ng;
            hr[j] = (1.0 - zg) * ng + zg * prev[j];
        }
        if let Some(next) = next {
            next.copy_from_slice(hr);
        }
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn step_backward(
    dgi: &mut [f32],
    dgh: &mut [f32],
    carry: &mut [f32],
    dy: &[f32],
    gates: &[f32],
    gh: &[f32],
    h_prev: &[f32],
    b: usize,
    steps: usize,
    t: usize,
    hidden: usize,
) -> Result<()> {
    const OP: &str = "gru_step_backward";
    let (rows, k) = check(OP, b, steps, t, hidden)?;
    check_len(OP, "dgi", rows * 3 * k, dgi.len())?;
    check_len(OP, "dgh", rows * 3 * k, dgh.len())?;
    check_len(OP, "carry", b * k, carry.len())?;
    check_len(OP, "dy", rows * k, dy.len())?;
    check_len(OP, "gates", rows * 3 * k, gates.len())?;
    check_len(OP, "gh", rows * 3 * k, gh.len())?;
    check_len(OP, "h_prev", rows * k, h_prev.len())?;
    let (ip, hp) = (Rows(dgi.as_mut_ptr()), Rows(dgh.as_mut_ptr()));
    carry.par_chunks_mut(k.max(1)).enumerate().take(b).for_each(|(e, c)| {
        let (ip, hp) = (ip, hp);
        let r = e * steps + t;
        // SAFETY: task e writes only row r of dgi and dgh, inside the checked bounds
        let (di, dh_) = unsafe {
            (
                std::slice::from_raw_parts_mut(ip.0.add(r * 3 * k), 3 * k),
                std::slice::from_raw_parts_mut(hp.0.add(r * 3 * k), 3 * k),
            )
        };
        let (g, xh, prev, d) = (
            &gates[r * 3 * k..(r + 1) * 3 * k],
            &gh[r * 3 * k..(r + 1) * 3 * k],
            &h_prev[r * k..(r + 1) * k],
            &dy[r * k..(r + 1) * k],
        );
        for j in 0..k {
            let (rg, zg, ng) = (g[j], g[k + j], g[2 * k + j]);
            let dh = d[j] + c[j];
            let dn = dh * (1.0 - zg) * (1.0 - ng * ng);
            let dz = dh * (prev[j] - ng) * zg * (1.0 - zg);
            let dr = dn * xh[2 * k + j] * rg * (1.0 - rg);
            di[j] = dr;
            di[k + j] = dz;
            di[2 * k + j] = dn;
            dh_[j] = dr;
            dh_[k + j] = dz;
            dh_[2 * k + j] = dn * rg;
            c[j] = dh * zg;
        }
    });
    Ok(())
}
