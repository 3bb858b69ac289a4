//! The gemm wrapper against the plain triple loop: transposes, strides, batches, accumulation.

mod common;
use common::Rng;
use kernels::cpu::gemm_naive;
use kernels::{Backend, Gemm, KernelError, MatView};

#[allow(clippy::too_many_arguments)]
fn case(be: &impl Backend, rng: &mut Rng, m: usize, n: usize, k: usize, ta: bool, tb: bool, batch: usize, beta: f32) {
    let count = batch;
    let a = rng.vec(m * k * count, 1.0);
    let b = rng.vec(k * n * count, 1.0);
    let c0 = rng.vec(m * n * count, 1.0);
    let av = if ta { MatView::transposed(0, m) } else { MatView::row_major(0, k) }.batched(m * k);
    let bv = if tb { MatView::transposed(0, k) } else { MatView::row_major(0, n) }.batched(k * n);
    let cv = MatView::row_major(0, n).batched(m * n);
    let g = Gemm { m, n, k, batch, alpha: 0.5, beta };
    let mut got = be.upload(&c0).unwrap();
    be.gemm(&mut got, cv, &be.upload(&a).unwrap(), av, &be.upload(&b).unwrap(), bv, g).unwrap();
    let got = be.download(&got).unwrap();
    let mut want = c0;
    gemm_naive(&mut want, cv, &a, av, &b, bv, g);
    let tol = 1e-5 * (k as f32).sqrt() * 4.0;
    common::assert_close(&format!("gemm {m}x{n}x{k} ta={ta} tb={tb} batch={batch:?}"), &got, &want, tol, tol);
}

fn gemm_matches_naive_on_transposes_batches_and_accumulation(be: &impl Backend) {
    let mut rng = Rng::new(1);
    for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 48, 130), (200, 96, 300), (5, 1, 0)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            case(be, &mut rng, m, n, k, ta, tb, 1, 0.0);
            case(be, &mut rng, m, n, k, ta, tb, 6, 1.0);
        }
    }
}

fn gemm_writes_interleaved_head_columns(be: &impl Backend) {
    // dimension H*hd, as attention does; then the whole result against a direct evaluation
    let mut rng = Rng::new(2);
    let (b, h, t, hd) = (2, 3, 4, 5);
    let att = rng.vec(b * h * t * t, 1.0);
    let v = rng.vec(b * t * h * hd, 1.0);
    let (att_d, v_d) = (be.upload(&att).unwrap(), be.upload(&v).unwrap());
    let mut got_d = be.zeros(b * t * h * hd).unwrap();
    let mut want = vec![0.0; b * t * h * hd];
    for head in 0..h {
        let av = MatView::row_major(head * t * t, t).batched(h * t * t);
        let vv = MatView::row_major(head * hd, h * hd).batched(t * h * hd);
        let cv = MatView::row_major(head * hd, h * hd).batched(t * h * hd);
        let g = Gemm::new(t, hd, t).batched(b);
        be.gemm(&mut got_d, cv, &att_d, av, &v_d, vv, g).unwrap();
        gemm_naive(&mut want, cv, &att, av, &v, vv, g);
    }
    let got = be.download(&got_d).unwrap();
    common::assert_close("interleaved", &got, &want, 1e-5, 1e-5);
    for e in 0..b {
        for head in 0..h {
            for i in 0..t {
                for j in 0..hd {
                    let s: f32 = (0..t)
                        .map(|l| att[((e * h + head) * t + i) * t + l] * v[(e * t + l) * h * hd + head * hd + j])
                        .sum();
                    let g = got[(e * t + i) * h * hd + head * hd + j];
                    assert!((g - s).abs() < 1e-5, "({e}, {head}, {i}, {j}): {g} vs {s}");
                }
            }
        }
    }
}

fn gemm_refuses_short_buffers_and_overlapping_batches(be: &impl Backend) {
    let a = be.zeros(6).unwrap();
    let b = be.zeros(6).unwrap();
    let mut c = be.zeros(3).unwrap();
    let err = be
        .gemm(
            &mut c,
            MatView::row_major(0, 2),
            &a,
            MatView::row_major(0, 3),
            &b,
            MatView::row_major(0, 2),
            Gemm::new(2, 2, 3),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Shape { op: "gemm", what: "C", expected: 4, got: 3 }), "{err}");
    let mut c = be.zeros(8).unwrap();
    let overlapping = MatView::row_major(0, 2).batched(1);
    let err = be
        .gemm(
            &mut c,
            overlapping,
            &a,
            MatView::row_major(0, 3).batched(0),
            &b,
            MatView::row_major(0, 2).batched(0),
            Gemm::new(2, 2, 3).batched(2),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
    // rows of C that would overlap (leading dimension below the columns), and a view whose extent
    // passes usize, are refused
    let err = be
        .gemm(
            &mut c,
            MatView::row_major(0, 2).with_ld(1),
            &a,
            MatView::row_major(0, 3),
            &b,
            MatView::row_major(0, 2),
            Gemm::new(2, 2, 3),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
    let huge = MatView::row_major(0, 3).batched(usize::MAX / 2);
    let err = be
        .gemm(
            &mut c,
            MatView::row_major(0, 2).batched(4),
            &a,
            huge,
            &b,
            MatView::row_major(0, 2),
            Gemm::new(2, 2, 3).batched(2),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Shape { what: "A", .. }), "{err}");
    // C is never transposed (a BLAS writes its output as stored)
    let err = be
        .gemm(
            &mut c,
            MatView::transposed(0, 2),
            &a,
            MatView::row_major(0, 3),
            &b,
            MatView::row_major(0, 2),
            Gemm::new(2, 2, 3),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
}

backend_tests! {
    gemm_against_naive => super::gemm_matches_naive_on_transposes_batches_and_accumulation,
    gemm_head_columns => super::gemm_writes_interleaved_head_columns,
    gemm_refusals => super::gemm_refuses_short_buffers_and_overlapping_batches,
}
