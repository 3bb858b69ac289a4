//! The parameter-free core of attention: the masked, scaled softmax over keys and its backward.
//! att: [B, H, Tq, T] (query rows, key columns; Tq = T, or 1 when only the first token queries),
//! mask: [B, T] (1 keep, 0 masked key).

use super::{math, reduce};
use crate::backend::MaskFill;
use crate::error::{check_len, Result};
use rayon::prelude::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn masked_softmax_forward(
    att: &mut [f32],
    mask: &[f32],
    b: usize,
    h: usize,
    tq: usize,
    t: usize,
    scale: f32,
    fill: MaskFill,
) -> Result<()> {
    if let MaskFill::Add(v) = fill {
        if !v.is_finite() {
            return Err(crate::KernelError::Invalid {
                op: "masked_softmax_forward",
                msg: format!("an additive mask value must be finite (MaskFill::NegInf is -inf), got {v}"),
            });
        }
    }
    check_len("masked_softmax_forward", "att", b * h * tq * t, att.len())?;
    check_len("masked_softmax_forward", "mask", b * t, mask.len())?;
    if t == 0 || tq == 0 {
        return Ok(());
    }
    att.par_chunks_mut(tq * t).enumerate().for_each(|(bh, block)| {
        let m = &mask[(bh / h) * t..(bh / h + 1) * t];
        if let MaskFill::Add(add) = fill {
            // Hugging Face: scores * scale + (mask == 0) * add, then a plain softmax
            for row in block.chunks_mut(t) {
                for (v, &k) in row.iter_mut().zip(m) {
                    *v = if k != 0.0 { *v * scale } else { *v * scale + add };
                }
                let max = reduce::max(row);
                row.iter_mut().for_each(|v| *v = math::exp(*v - max));
                let inv = 1.0 / reduce::sum(row);
                row.iter_mut().for_each(|v| *v *= inv);
            }
            return;
        }
        for row in block.chunks_mut(t) {
            // branch-free so that it vectorizes: masked keys become -inf, then exp gives them 0 via keep
            for (v, &k) in row.iter_mut().zip(m) {
                *v = if k != 0.0 { *v * scale } else { f32::NEG_INFINITY };
            }
            let max = reduce::max(row);
            if max == f32::NEG_INFINITY {
                // every key masked (or -inf scores): this query attends to nothing
                row.iter_mut().for_each(|v| *v = 0.0);
                continue;
            }
            for (v, &k) in row.iter_mut().zip(m) {
                let keep = if k != 0.0 { 1.0 } else { 0.0 };
                *v = keep * math::exp(*v - max);
            }
            let inv = 1.0 / reduce::sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    });
    Ok(())
}

pub(crate) fn softmax_backward(datt: &mut [f32], att: &[f32], t: usize, scale: f32) -> Result<()> {
    check_len("softmax_backward", "datt", att.len(), datt.len())?;
    if t == 0 {
        return Ok(());
    }
    datt.par_chunks_mut(t * t).zip(att.par_chunks(t * t)).for_each(|(d, a)| {
        for (d, a) in d.chunks_mut(t).zip(a.chunks(t)) {
            let dot = reduce::dot(d, a);
            for (d, &a) in d.iter_mut().zip(a) {
                *d = scale * a * (*d - dot);
            }
        }
    });
    Ok(())
}
