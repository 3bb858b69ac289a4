//! Per-group squared norms and clipped sums of each parametric layer against explicit per-group
//! gradients (formed here with plain loops), for sequence and non-sequence rows, groups of one and of
//! several examples, and both norm strategies.

mod common;
use common::drive::{Driver, HostBatch};
use common::{assert_close, Rng};
use kernels::nn::{Embeddings, Ids, LayerNorm, Linear};
use kernels::{Backend, GroupRows, NormStrategy};

/// A host batch of `examples` examples of `t` rows of `x` (width from its length).
fn rows(examples: usize, t: usize, x: &[f32]) -> HostBatch {
    HostBatch { examples, x: x.to_vec(), per_example: t, mask: None, ids: None }
}

fn layouts() -> Vec<GroupRows> {
    vec![GroupRows::per_example(6), GroupRows { offsets: vec![0, 1, 3, 4, 6] }, GroupRows::single(6)]
}

fn sq(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

fn linear_group_norms_and_clipped_sum_match_explicit_per_group_gradients(be: &impl Backend) {
    let mut rng = Rng::new(20);
    for t in [1usize, 3, 9] {
        for groups in layouts() {
            for strategy in [NormStrategy::Ghost, NormStrategy::Materialize, NormStrategy::Auto] {
                let (d_in, d_out) = (5, 4);
                let rows = groups.examples() * t;
                let x = rng.vec(rows * d_in, 1.0);
                let dy = rng.vec(rows * d_out, 1.0);
                let mut l = Linear::new(be, "l", d_in, d_out).unwrap();
                let mut drv = Driver::new(be);
                drv.forward(be, &mut l, &self::rows(groups.examples(), t, &x), false).unwrap();
                drv.backward(be, &mut l, &dy).unwrap();
                // explicit per-group gradients
                let mut per_group_w = vec![];
                let mut per_group_b = vec![];
                let mut want_norms = vec![];
                for g in 0..groups.groups() {
                    let mut gw = vec![0.0f64; d_out * d_in];
                    let mut gb = vec![0.0f64; d_out];
                    for r in groups.rows(g, t) {
                        for o in 0..d_out {
                            gb[o] += dy[r * d_out + o] as f64;
                            for i in 0..d_in {
                                gw[o * d_in + i] += dy[r * d_out + o] as f64 * x[r * d_in + i] as f64;
                            }
                        }
                    }
                    want_norms.push((sq(&gw) + sq(&gb)) as f32);
                    per_group_w.push(gw);
                    per_group_b.push(gb);
                }
                let norms = drv.norms(be, &mut l, &groups, strategy).unwrap();
                assert_close(
                    &format!("linear norms t={t} {strategy:?} {:?}", groups.offsets),
                    &norms,
                    &want_norms,
                    1e-4,
                    1e-5,
                );
                let factors: Vec<f32> = (0..groups.groups()).map(|g| 0.25 + 0.5 * (g % 3) as f32 / 2.0).collect();
                let g = drv.param_grads(be, &mut l, &groups, Some(&factors)).unwrap();
                let want_w: Vec<f32> = (0..d_out * d_in)
                    .map(|j| per_group_w.iter().zip(&factors).map(|(g, &c)| c as f64 * g[j]).sum::<f64>() as f32)
                    .collect();
                let want_b: Vec<f32> = (0..d_out)
                    .map(|j| per_group_b.iter().zip(&factors).map(|(g, &c)| c as f64 * g[j]).sum::<f64>() as f32)
                    .collect();
                assert_close("linear clipped dW", &g[0], &want_w, 1e-4, 1e-5);
                assert_close("linear clipped db", &g[1], &want_b, 1e-4, 1e-5);
            }
        }
    }
}

fn linear_clipped_sum_scales_the_narrower_operand_either_way(be: &impl Backend) {
    let mut rng = Rng::new(21);
    let groups = GroupRows { offsets: vec![0, 2, 3] };
    for (d_in, d_out) in [(3, 7), (7, 3)] {
        let x = rng.vec(3 * 4 * d_in, 1.0);
        let dy = rng.vec(3 * 4 * d_out, 1.0);
        let factors = vec![0.5f32, 2.0];
        let mut l = Linear::new(be, "l", d_in, d_out).unwrap();
        let mut drv = Driver::new(be);
        drv.forward(be, &mut l, &rows(3, 4, &x), false).unwrap();
        drv.backward(be, &mut l, &dy).unwrap();
        let clipped = drv.param_grads(be, &mut l, &groups, Some(&factors)).unwrap();
        let mut scaled = dy.clone();
        for r in 0..12 {
            let f = if r < 8 { 0.5 } else { 2.0 };
            scaled[r * d_out..(r + 1) * d_out].iter_mut().for_each(|v| *v *= f);
        }
        drv.backward(be, &mut l, &scaled).unwrap();
        let plain = drv.param_grads(be, &mut l, &GroupRows::single(3), None).unwrap();
        assert_close("dW", &clipped[0], &plain[0], 1e-5, 1e-6);
        assert_close("db", &clipped[1], &plain[1], 1e-5, 1e-6);
    }
}

fn embedding_group_norms_count_repeated_ids_once_per_group(be: &impl Backend) {
    let mut rng = Rng::new(22);
    let (vocab, d, t) = (5, 3, 4);
    for groups in layouts() {
        let rows = groups.examples() * t;
        let ids: Vec<u32> = (0..rows).map(|_| rng.below(vocab) as u32).collect();
        let dy = rng.vec(rows * d, 1.0);
        let mut e = Embeddings::new(be, "embeddings", d, &[("embed", vocab, Ids::Tokens)]).unwrap();
        let mut drv = Driver::new(be);
        let b = HostBatch { examples: groups.examples(), ids: Some((ids.clone(), t)), ..Default::default() };
        drv.forward(be, &mut e, &b, false).unwrap();
        drv.backward(be, &mut e, &dy).unwrap();
        let mut want = vec![];
        let mut per_group = vec![];
        for g in 0..groups.groups() {
            let mut grad = vec![0.0f64; vocab * d];
            for r in groups.rows(g, t) {
                for j in 0..d {
                    grad[ids[r] as usize * d + j] += dy[r * d + j] as f64;
                }
            }
            want.push(sq(&grad) as f32);
            per_group.push(grad);
        }
        let norms = drv.norms(be, &mut e, &groups, NormStrategy::Auto).unwrap();
        assert_close(&format!("embedding norms {:?}", groups.offsets), &norms, &want, 1e-5, 1e-6);
        let factors: Vec<f32> = (0..groups.groups()).map(|g| 1.0 / (1.0 + g as f32)).collect();
        let g = drv.param_grads(be, &mut e, &groups, Some(&factors)).unwrap();
        let want_sum: Vec<f32> = (0..vocab * d)
            .map(|j| per_group.iter().zip(&factors).map(|(g, &c)| c as f64 * g[j]).sum::<f64>() as f32)
            .collect();
        assert_close("embedding clipped sum", &g[0], &want_sum, 1e-5, 1e-6);
    }
}

fn layer_norm_group_norms_and_clipped_sum_match_explicit_per_group_gradients(be: &impl Backend) {
    let mut rng = Rng::new(23);
    let (d, t) = (6, 3);
    for groups in layouts() {
        let rows = groups.examples() * t;
        let x = rng.vec(rows * d, 2.0);
        let dy = rng.vec(rows * d, 1.0);
        let mut ln = LayerNorm::new(be, "ln", d).unwrap();
        ln.gamma.value = be.upload(&rng.vec(d, 1.0)).unwrap();
        let mut drv = Driver::new(be);
        drv.forward(be, &mut ln, &self::rows(groups.examples(), t, &x), false).unwrap();
        drv.backward(be, &mut ln, &dy).unwrap();
        let mut want = vec![];
        let mut per_group = vec![];
        for g in 0..groups.groups() {
            let mut dg = vec![0.0f64; d];
            let mut db = vec![0.0f64; d];
            for r in groups.rows(g, t) {
                let row = &x[r * d..(r + 1) * d];
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                let rstd = 1.0 / (var + 1e-5).sqrt();
                for j in 0..d {
                    dg[j] += dy[r * d + j] as f64 * (row[j] as f64 - mean) * rstd;
                    db[j] += dy[r * d + j] as f64;
                }
            }
            want.push((sq(&dg) + sq(&db)) as f32);
            per_group.push((dg, db));
        }
        let norms = drv.norms(be, &mut ln, &groups, NormStrategy::Auto).unwrap();
        assert_close("layer norm norms", &norms, &want, 1e-4, 1e-5);
        let factors: Vec<f32> = (0..groups.groups()).map(|g| 0.3 + 0.1 * g as f32).collect();
        let g = drv.param_grads(be, &mut ln, &groups, Some(&factors)).unwrap();
        let want_g: Vec<f32> = (0..d)
            .map(|j| per_group.iter().zip(&factors).map(|((g, _), &c)| c as f64 * g[j]).sum::<f64>() as f32)
            .collect();
        let want_b: Vec<f32> = (0..d)
            .map(|j| per_group.iter().zip(&factors).map(|((_, b), &c)| c as f64 * b[j]).sum::<f64>() as f32)
            .collect();
        assert_close("layer norm clipped dgamma", &g[0], &want_g, 1e-4, 1e-5);
        assert_close("layer norm clipped dbeta", &g[1], &want_b, 1e-4, 1e-5);
    }
}

fn clip_factors_bound_every_group_and_leave_small_ones_alone(be: &impl Backend) {
    let sq_norms = be.upload(&[0.0f32, 0.25, 1.0, 4.0, 100.0, f32::NAN]).unwrap();
    let mut f = be.zeros(6).unwrap();
    be.clip_factors(&mut f, &sq_norms, 1.0).unwrap();
    assert_eq!(be.download(&f).unwrap(), vec![1.0, 1.0, 1.0, 0.5, 0.1, 0.0]);
    assert!(be.clip_factors(&mut f, &sq_norms, 0.0).is_err());
    assert!(be.clip_factors(&mut f, &sq_norms, f32::INFINITY).is_err());
}

fn rows_with_zero_output_gradient_do_not_change_group_norms(be: &impl Backend) {
    // padding rows have dy = 0; the norm skips them and must equal the norm with them included
    let mut rng = Rng::new(24);
    let (t, d_in, d_out) = (8, 6, 5);
    let groups = GroupRows { offsets: vec![0, 1, 3] };
    let rows = groups.examples() * t;
    let x = rng.vec(rows * d_in, 1.0);
    let mut dy = rng.vec(rows * d_out, 1.0);
    for r in [1usize, 2, 5, 9, 17, 18, 19, 20, 21, 22] {
        dy[r * d_out..(r + 1) * d_out].iter_mut().for_each(|v| *v = 0.0);
    }
    // rows 17..23 of the last group all but one zero: the single-row path
    for strategy in [NormStrategy::Ghost, NormStrategy::Materialize] {
        let mut l = Linear::new(be, "l", d_in, d_out).unwrap();
        let mut drv = Driver::new(be);
        drv.forward(be, &mut l, &self::rows(groups.examples(), t, &x), false).unwrap();
        drv.backward(be, &mut l, &dy).unwrap();
        let norms = drv.norms(be, &mut l, &groups, strategy).unwrap();
        let want: Vec<f32> = (0..groups.groups())
            .map(|g| {
                let mut gw = vec![0.0f64; d_out * (d_in + 1)];
                for r in groups.rows(g, t) {
                    for o in 0..d_out {
                        for i in 0..d_in {
                            gw[o * (d_in + 1) + i] += dy[r * d_out + o] as f64 * x[r * d_in + i] as f64;
                        }
                        gw[o * (d_in + 1) + d_in] += dy[r * d_out + o] as f64;
                    }
                }
                sq(&gw) as f32
            })
            .collect();
        assert_close(&format!("norms with zero rows, {strategy:?}"), &norms, &want, 1e-4, 1e-6);
    }
}

/// The generic algorithm written in primitives (the trait's default) and the backend's own
/// `linear_group_sq_norms` against explicit per-group gradients: uniform and uneven groups, every
/// strategy, rows with zero output gradient, widths on both sides of the ghost/materialize line.
fn generic_and_backend_group_norms_agree(be: &impl Backend) {
    let mut rng = Rng::new(25);
    for (t, d_in, d_out) in [(1usize, 5usize, 4usize), (4, 3, 7), (9, 16, 12), (6, 2, 3)] {
        for groups in layouts() {
            let rows = groups.examples() * t;
            let x = rng.vec(rows * d_in, 1.0);
            let mut dy = rng.vec(rows * d_out, 1.0);
            for r in (0..rows).filter(|r| r % 5 == 3) {
                dy[r * d_out..(r + 1) * d_out].iter_mut().for_each(|v| *v = 0.0);
            }
            let want: Vec<f32> = (0..groups.groups())
                .map(|g| {
                    let mut gw = vec![0.0f64; d_out * (d_in + 1)];
                    for r in groups.rows(g, t) {
                        for o in 0..d_out {
                            for i in 0..d_in {
                                gw[o * (d_in + 1) + i] += dy[r * d_out + o] as f64 * x[r * d_in + i] as f64;
                            }
                            gw[o * (d_in + 1) + d_in] += dy[r * d_out + o] as f64;
                        }
                    }
                    sq(&gw) as f32
                })
                .collect();
            let dev = be.groups(&groups).unwrap();
            let (xb, dyb) = (be.upload(&x).unwrap(), be.upload(&dy).unwrap());
            for strategy in [NormStrategy::Auto, NormStrategy::Ghost, NormStrategy::Materialize] {
                let what = format!("t={t} {d_in}x{d_out} {strategy:?} {:?}", groups.offsets);
                let mut generic = be.zeros(groups.groups()).unwrap();
                kernels::nn::norms::linear_group_sq_norms(be, &mut generic, &xb, &dyb, d_in, d_out, &dev, t, strategy)
                    .unwrap();
                assert_close(&format!("generic {what}"), &be.download(&generic).unwrap(), &want, 1e-4, 1e-5);
                let mut own = be.zeros(groups.groups()).unwrap();
                be.linear_group_sq_norms(&mut own, &xb, &dyb, d_in, d_out, &dev, t, strategy).unwrap();
                assert_close(&format!("backend {what}"), &be.download(&own).unwrap(), &want, 1e-4, 1e-5);
            }
        }
    }
}

backend_tests! {
    group_norms_generic_and_backend => super::generic_and_backend_group_norms_agree,
    linear_norms_and_clipped_sums => super::linear_group_norms_and_clipped_sum_match_explicit_per_group_gradients,
    linear_clipped_sum_either_operand => super::linear_clipped_sum_scales_the_narrower_operand_either_way,
    embedding_norms_repeated_ids => super::embedding_group_norms_count_repeated_ids_once_per_group,
    layer_norm_norms_and_clipped_sums => super::layer_norm_group_norms_and_clipped_sum_match_explicit_per_group_gradients,
    clip_factors => super::clip_factors_bound_every_group_and_leave_small_ones_alone,
    zero_rows_in_norms => super::rows_with_zero_output_gradient_do_not_change_group_norms,
}
