//! LayerNorm over the last axis. x: [R, C], gamma/beta: [C] -> y: [R, C], mean/rstd: [R].
//! Forward: y = (x - mean) * rstd * gamma + beta, with the biased variance and rstd = 1/sqrt(var + eps).
//! Backward (=): dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = dy * gamma,
//! and dy_xhat = dy * xhat, whose row sums are the gamma gradient (dbeta sums dy).

use super::reduce;
use crate::error::{check_len, Result};
use rayon::prelude::*;

const ROWS_PER_TASK: usize = 32;

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    c: usize,
    eps: f32,
) -> Result<()> {
    let rows = mean.len();
    check_len("layer_norm_forward", "x", rows * c, x.len())?;
    check_len("layer_norm_forward", "y", rows * c, y.len())?;
    check_len("layer_norm_forward", "rstd", rows, rstd.len())?;
    check_len("layer_norm_forward", "gamma", c, gamma.len())?;
    check_len("layer_norm_forward", "beta", c, beta.len())?;
    if c == 0 {
        return Ok(());
    }
    y.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((y, x), (mu, rs))| {
            let m = reduce::sum(x) / c as f32;
            let var = reduce::sum_sq_dev(x, m) / c as f32;
            let r = 1.0 / (var + eps).sqrt();
            for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                *y = (x - m) * r * g + b;
            }
            *mu = m;
            *rs = r;
        });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dx: &mut [f32],
    dy_xhat: &mut [f32],
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) -> Result<()> {
    let rows = mean.len();
    check_len("layer_norm_backward", "x", rows * c, x.len())?;
    check_len("layer_norm_backward", "dy", rows * c, dy.len())?;
    check_len("layer_norm_backward", "dx", rows * c, dx.len())?;
    check_len("layer_norm_backward", "dy_xhat", rows * c, dy_xhat.len())?;
    check_len("layer_norm_backward", "rstd", rows, rstd.len())?;
    check_len("layer_norm_backward", "gamma", c, gamma.len())?;
    if c == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(c)
        .zip(dy_xhat.par_chunks_mut(c))
        .zip(dy.par_chunks(c).zip(x.par_chunks(c)))
        .zip(mean.par_iter().zip(rstd.par_iter()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(((dx, dyx), (dy, x)), (&m, &r))| {
            // dxhat = dy * gamma, xhat = (x - m) * r: s1 = sum dxhat, s2 = sum dxhat * xhat
            let mut s1 = [0.0f32; 16];
            let mut s2 = [0.0f32; 16];
            let (mut t1, mut t2) = (0.0f32, 0.0f32);
            let full = c / 16 * 16;
            for j0 in (0..full).step_by(16) {
                for l in 0..16 {
                    let dxhat = dy[j0 + l] * gamma[j0 + l];
                    s1[l] += dxhat;
                    s2[l] = dxhat.mul_add((x[j0 + l] - m) * r, s2[l]);
                }
            }
            for j in full..c {
                let dxhat = dy[j] * gamma[j];
                t1 += dxhat;
                t2 += dxhat * (x[j] - m) * r;
            }
            let s1 = reduce::sum(&s1) + t1;
            let s2 = reduce::sum(&s2) + t2;
            let m1 = s1 / c as f32;
            let m2 = s2 / c as f32;
            for ((((dx, dyx), &dy), &x), &g) in dx.iter_mut().zip(dyx.iter_mut()).zip(dy).zip(x).zip(gamma) {
                let xhat = (x - m) * r;
                *dx = r * (dy * g - m1 - xhat * m2);
                *dyx = dy * xhat;
            }
        });
    Ok(())
}
