//! The gemm wrapper against the plain triple loop: transposes, strides, batches, accumulation.

mod common;
use common::Rng;
use kernels::cpu::gemm_naive;
use kernels::{Backend, Cpu, Gemm, KernelError, MatView};

fn case(be: &Cpu, rng: &mut Rng, m: usize, n: usize, k: usize, ta: bool, tb: bool, batch: [usize; 2], beta: f32) {
    let count = batch[0] * batch[1];
    let a = rng.vec(m * k * count, 1.0);
    let b = rng.vec(k * n * count, 1.0);
    let c0 = rng.vec(m * n * count, 1.0);
    let av = if ta { MatView::transposed(0, m) } else { MatView::row_major(0, k) }.batched(m * k * batch[1], m * k);
    let bv = if tb { MatView::transposed(0, k) } else { MatView::row_major(0, n) }.batched(k * n * batch[1], k * n);
    let cv = MatView::row_major(0, n).batched(m * n * batch[1], m * n);
    let g = Gemm { m, n, k, batch, alpha: 0.5, beta };
    let mut got = c0.clone();
    be.gemm(&mut got, cv, &a, av, &b, bv, g).unwrap();
    let mut want = c0;
    gemm_naive(&mut want, cv, &a, av, &b, bv, g);
    let tol = 1e-5 * (k as f32).sqrt() * 4.0;
    common::assert_close(&format!("gemm {m}x{n}x{k} ta={ta} tb={tb} batch={batch:?}"), &got, &want, tol, tol);
}

#[test]
fn gemm_matches_naive_on_transposes_batches_and_accumulation() {
    let be = Cpu::new(2).unwrap();
    let mut rng = Rng::new(1);
    for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 48, 130), (200, 96, 300), (5, 1, 0)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            case(&be, &mut rng, m, n, k, ta, tb, [1, 1], 0.0);
            case(&be, &mut rng, m, n, k, ta, tb, [2, 3], 1.0);
        }
    }
}

#[test]
fn gemm_writes_interleaved_head_columns() {
    // ctx: [B, T, H*hd] written per (b, h) with row stride H*hd, as attention does
    let be = Cpu::new(2).unwrap();
    let mut rng = Rng::new(2);
    let (b, h, t, hd) = (2, 3, 4, 5);
    let att = rng.vec(b * h * t * t, 1.0);
    let v = rng.vec(b * t * h * hd, 1.0);
    let av = MatView::row_major(0, t).batched(h * t * t, t * t);
    let vv = MatView::row_major(0, h * hd).batched(t * h * hd, hd);
    let cv = MatView::row_major(0, h * hd).batched(t * h * hd, hd);
    let g = Gemm::new(t, hd, t).batched(b, h);
    let mut got = vec![0.0; b * t * h * hd];
    be.gemm(&mut got, cv, &att, av, &v, vv, g).unwrap();
    let mut want = vec![0.0; b * t * h * hd];
    gemm_naive(&mut want, cv, &att, av, &v, vv, g);
    common::assert_close("interleaved", &got, &want, 1e-5, 1e-5);
}

#[test]
fn gemm_refuses_short_buffers_and_overlapping_batches() {
    let be = Cpu::new(1).unwrap();
    let a = vec![0.0; 6];
    let b = vec![0.0; 6];
    let mut c = vec![0.0; 3];
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
    let mut c = vec![0.0; 8];
    let overlapping = MatView::row_major(0, 2).batched(1, 0);
    let err = be
        .gemm(
            &mut c,
            overlapping,
            &a,
            MatView::row_major(0, 3).batched(0, 0),
            &b,
            MatView::row_major(0, 2).batched(0, 0),
            Gemm::new(2, 2, 3).batched(2, 1),
        )
        .unwrap_err();
    assert!(matches!(err, KernelError::Invalid { .. }), "{err}");
}
