//! Masked mean pooling over time and the two losses.
//! Pool: h: [B, T, C], mask: [B, T] -> out: [B, C] = sum_t h*m / max(sum_t m, 1); backward (=) spreads
//! dout back over the kept steps.
//! BCE with logits: l = max(z, 0) - z*y + ln(1 + e^-|z|), dl/dz = sigmoid(z) - y.
//! Cross-entropy: l = logsumexp(z) - z_y, dl/dz = softmax(z) - onehot(y).

use crate::error::{check_len, KernelError, Result};
use rayon::prelude::*;

fn kept(mask: &[f32]) -> f32 {
    mask.iter().sum::<f32>().max(1.0)
}

pub(crate) fn pool_forward(out: &mut [f32], h: &[f32], mask: &[f32], t: usize, c: usize) -> Result<()> {
    let b = if t == 0 { 0 } else { mask.len() / t };
    check_len("masked_mean_pool_forward", "mask", b * t, mask.len())?;
    check_len("masked_mean_pool_forward", "h", b * t * c, h.len())?;
    check_len("masked_mean_pool_forward", "out", b * c, out.len())?;
    if c == 0 || t == 0 {
        return Ok(());
    }
    out.par_chunks_mut(c).enumerate().for_each(|(bi, o)| {
        let m = &mask[bi * t..(bi + 1) * t];
        o.iter_mut().for_each(|v| *v = 0.0);
        for (ti, &mv) in m.iter().enumerate() {
            if mv != 0.0 {
                let row = &h[(bi * t + ti) * c..(bi * t + ti + 1) * c];
                o.iter_mut().zip(row).for_each(|(o, &v)| *o += v * mv);
            }
        }
        let inv = 1.0 / kept(m);
        o.iter_mut().for_each(|v| *v *= inv);
    });
    Ok(())
}

pub(crate) fn pool_backward(dh: &mut [f32], dout: &[f32], mask: &[f32], t: usize, c: usize) -> Result<()> {
    let b = if t == 0 { 0 } else { mask.len() / t };
    check_len("masked_mean_pool_backward", "mask", b * t, mask.len())?;
    check_len("masked_mean_pool_backward", "dh", b * t * c, dh.len())?;
    check_len("masked_mean_pool_backward", "dout", b * c, dout.len())?;
    if c == 0 || t == 0 {
        return Ok(());
    }
    dh.par_chunks_mut(t * c).enumerate().for_each(|(bi, dh)| {
        let m = &mask[bi * t..(bi + 1) * t];
        let inv = 1.0 / kept(m);
        let d = &dout[bi * c..(bi + 1) * c];
        for (row, &mv) in dh.chunks_mut(c).zip(m) {
            let w = mv * inv;
            row.iter_mut().zip(d).for_each(|(r, &g)| *r = g * w);
        }
    });
    Ok(())
}

pub(crate) fn bce_with_logits(
    losses: &mut [f32],
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[f32],
    grad_scale: f32,
) -> Result<()> {
    let b = logits.len();
    check_len("bce_with_logits", "targets", b, targets.len())?;
    check_len("bce_with_logits", "losses", b, losses.len())?;
    check_len("bce_with_logits", "dlogits", b, dlogits.len())?;
    for i in 0..b {
        let z = logits[i] as f64;
        let y = targets[i] as f64;
        losses[i] = (z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()) as f32;
        let sig = 1.0 / (1.0 + (-z).exp());
        dlogits[i] = ((sig - y) * grad_scale as f64) as f32;
    }
    Ok(())
}

pub(crate) fn regression_loss(
    losses: &mut [f32],
    dlogits: &mut [f32],
    preds: &[f32],
    targets: &[f32],
    huber: Option<f32>,
    grad_scale: f32,
) -> Result<()> {
    let b = preds.len();
    check_len("regression_loss", "targets", b, targets.len())?;
    check_len("regression_loss", "losses", b, losses.len())?;
    check_len("regression_loss", "dlogits", b, dlogits.len())?;
    if let Some(d) = huber {
        if !(d > 0.0 && d.is_finite()) {
            return Err(KernelError::Invalid {
                op: "regression_loss",
                msg: format!("Huber delta {d} is not positive"),
            });
        }
    }
    for i in 0..b {
        let r = preds[i] as f64 - targets[i] as f64;
        let (l, g) = match huber {
            None => (r * r, 2.0 * r),
            Some(d) => {
                let d = d as f64;
                if r.abs() <= d {
                    (0.5 * r * r, r)
                } else {
                    (d * (r.abs() - 0.5 * d), d * r.signum())
                }
            }
        };
        losses[i] = l as f32;
        dlogits[i] = (g * grad_scale as f64) as f32;
    }
    Ok(())
}

pub(crate) fn cross_entropy(
    losses: &mut [f32],
    dlogits: &mut [f32],
    logits: &[f32],
    classes: &[u32],
    k: usize,
    grad_scale: f32,
) -> Result<()> {
    let b = classes.len();
    check_len("cross_entropy", "logits", b * k, logits.len())?;
    check_len("cross_entropy", "dlogits", b * k, dlogits.len())?;
    check_len("cross_entropy", "losses", b, losses.len())?;
    if let Some(&bad) = classes.iter().find(|&&c| c as usize >= k) {
        return Err(KernelError::Invalid {
            op: "cross_entropy",
            msg: format!("class {bad} out of range for {k} classes"),
        });
    }
    for i in 0..b {
        let z = &logits[i * k..(i + 1) * k];
        let max = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        let y = classes[i] as usize;
        losses[i] = (lse - z[y] as f64) as f32;
        for (j, dz) in dlogits[i * k..(i + 1) * k].iter_mut().enumerate() {
            let p = (z[j] as f64 - lse).exp();
            *dz = ((p - if j == y { 1.0 } else { 0.0 }) * grad_scale as f64) as f32;
        }
    }
    Ok(())
}
