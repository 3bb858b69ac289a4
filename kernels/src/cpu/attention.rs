//! The parameter-free core of attention: the masked, scaled softmax over keys and its backward.
//! att: [B, H, T, T] (query rows, key columns), mask: [B, T] (1 keep, 0 masked key).

use super::math;
use crate::error::{check_len, Result};
use rayon::prelude::*;

pub(crate) fn masked_softmax_forward(
    att: &mut [f32],
    mask: &[f32],
    b: usize,
    h: usize,
    t: usize,
    scale: f32,
) -> Result<()> {
    check_len("masked_softmax_forward", "att", b * h * t * t, att.len())?;
    check_len("masked_softmax_forward", "mask", b * t, mask.len())?;
    if t == 0 {
        return Ok(());
    }
    att.par_chunks_mut(t * t).enumerate().for_each(|(bh, block)| {
        let m = &mask[(bh / h) * t..(bh / h + 1) * t];
        for row in block.chunks_mut(t) {
            let mut max = f32::NEG_INFINITY;
            for (v, &k) in row.iter_mut().zip(m) {
                *v *= scale;
                if k != 0.0 && *v > max {
                    max = *v;
                }
            }
            if max == f32::NEG_INFINITY {
                // every key masked (or -inf scores): this query attends to nothing
                row.iter_mut().for_each(|v| *v = 0.0);
                continue;
            }
            let mut sum = 0.0f32;
            for (v, &k) in row.iter_mut().zip(m) {
                let e = if k != 0.0 { math::exp(*v - max) } else { 0.0 };
                *v = e;
                sum += e;
            }
            let inv = 1.0 / sum;
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
            let dot: f32 = d.iter().zip(a).map(|(&d, &a)| d * a).sum();
            for (d, &a) in d.iter_mut().zip(a) {
                *d = scale * a * (*d - dot);
            }
        }
    });
    Ok(())
}
