//! Embedding lookup, its clipped scatter-add backward and its per-group squared gradient norms.
//! ids: [R], table: [V, D], dy: [R, D]. A group's embedding gradient is the sum of its rows' dy scattered
//! at their ids, so its squared norm is `sum_{t,s in g: id_t = id_s} dy_t . dy_s`: rows are grouped by id
//! (sort), summed per id, and the sums' squares added.

use crate::backend::{GroupRows, EMBEDDING_CHUNK};
use crate::error::{check_len, KernelError, Result};
use rayon::prelude::*;

/// Vocabulary ranges for the deterministic parallel scatter: a fixed count, not the thread count.
const SCATTER_PARTS: usize = 64;

fn check_ids(op: &'static str, ids: &[u32], vocab: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(KernelError::Invalid { op, msg: format!("id {bad} out of range for a vocabulary of {vocab}") });
    }
    Ok(())
}

pub(crate) fn forward(y: &mut [f32], ids: &[u32], table: &[f32], d: usize, accumulate: bool) -> Result<()> {
    check_len("embedding_forward", "y", ids.len() * d, y.len())?;
    if d == 0 {
        return Ok(());
    }
    if table.len() % d != 0 {
        return Err(KernelError::Shape {
            op: "embedding_forward",
            what: "table (multiple of D)",
            expected: d,
            got: table.len(),
        });
    }
    check_ids("embedding_forward", ids, table.len() / d)?;
    y.par_chunks_mut(d).zip(ids.par_iter()).with_min_len(64).for_each(|(y, &id)| {
        let row = &table[id as usize * d..(id as usize + 1) * d];
        if accumulate {
            y.iter_mut().zip(row).for_each(|(y, &v)| *y += v);
        } else {
            y.copy_from_slice(row);
        }
    });
    Ok(())
}

fn example_factors(factors: Option<&[f32]>, groups: &GroupRows) -> Option<Vec<f32>> {
    factors.map(|f| {
        let mut per_example = vec![0.0f32; groups.examples()];
        for (g, &v) in f.iter().enumerate() {
            per_example[groups.offsets[g]..groups.offsets[g + 1]].iter_mut().for_each(|e| *e = v);
        }
        per_example
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    dtable: &mut [f32],
    ids: &[u32],
    dy: &[f32],
    d: usize,
    factors: Option<&[f32]>,
    groups: &GroupRows,
    rows_per_example: usize,
) -> Result<()> {
    check_len("embedding_backward", "dy", ids.len() * d, dy.len())?;
    check_len("embedding_backward", "ids", groups.examples() * rows_per_example, ids.len())?;
    if let Some(f) = factors {
        check_len("embedding_backward", "factors", groups.groups(), f.len())?;
    }
    if d == 0 {
        return Ok(());
    }
    let vocab = dtable.len() / d;
    check_len("embedding_backward", "dtable", vocab * d, dtable.len())?;
    check_ids("embedding_backward", ids, vocab)?;
    let per_example = example_factors(factors, groups);
    // bucket rows by vocabulary part, keeping row order inside each bucket
    let part = vocab.div_ceil(SCATTER_PARTS).max(1);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); vocab.div_ceil(part)];
    for (r, &id) in ids.iter().enumerate() {
        buckets[id as usize / part].push(r as u32);
    }
    dtable.par_chunks_mut(part * d).zip(buckets.par_iter()).for_each(|(table_part, rows)| {
        let base = rows.first().map(|&r| ids[r as usize] as usize / part * part).unwrap_or(0);
        // each id of the part met: its chunk's running sum and how many rows it holds (EMBEDDING_CHUNK)
        let mut slot = vec![u32::MAX; part];
        let mut sums: Vec<f32> = Vec::new();
        let mut held: Vec<(usize, usize)> = Vec::new();
        for &r in rows {
            let r = r as usize;
            let w = per_example.as_ref().map_or(1.0, |f| f[r / rows_per_example]);
            let local = ids[r] as usize - base;
            if slot[local] == u32::MAX {
                slot[local] = held.len() as u32;
                held.push((local, 0));
                sums.resize(sums.len() + d, 0.0);
            }
            let s = slot[local] as usize;
            let sum = &mut sums[s * d..(s + 1) * d];
            let fresh = held[s].1 == 0;
            for (a, &g) in sum.iter_mut().zip(&dy[r * d..(r + 1) * d]) {
                *a = if fresh { 0.0 } else { *a } + w * g;
            }
            held[s].1 += 1;
            if held[s].1 == EMBEDDING_CHUNK {
                held[s].1 = 0;
                table_part[local * d..(local + 1) * d].iter_mut().zip(&*sum).for_each(|(t, &a)| *t += a);
            }
        }
        for (s, &(local, n)) in held.iter().enumerate() {
            if n > 0 {
                let sum = &sums[s * d..(s + 1) * d];
                table_part[local * d..(local + 1) * d].iter_mut().zip(sum).for_each(|(t, &a)| *t += a);
            }
        }
    });
    Ok(())
}

pub(crate) fn group_sq_norms(
    out: &mut [f32],
    ids: &[u32],
    dy: &[f32],
    d: usize,
    groups: &GroupRows,
    rows_per_example: usize,
) -> Result<()> {
    check_len("embedding_group_sq_norms", "out", groups.groups(), out.len())?;
    check_len("embedding_group_sq_norms", "ids", groups.examples() * rows_per_example, ids.len())?;
    check_len("embedding_group_sq_norms", "dy", ids.len() * d, dy.len())?;
    out.par_iter_mut().enumerate().for_each(|(g, o)| {
        let rows = groups.rows(g, rows_per_example);
        let mut order: Vec<(u32, u32)> = rows.map(|r| (ids[r], r as u32)).collect();
        order.sort_unstable();
        let mut acc = vec![0.0f32; d];
        let mut total = 0.0f64;
        let mut i = 0;
        while i < order.len() {
            let id = order[i].0;
            acc.iter_mut().for_each(|v| *v = 0.0);
            while i < order.len() && order[i].0 == id {
                let r = order[i].1 as usize;
                acc.iter_mut().zip(&dy[r * d..(r + 1) * d]).for_each(|(a, &v)| *a += v);
                i += 1;
            }
            total += acc.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
        }
        *o += total as f32;
    });
    Ok(())
}
