//! Buffer ops on every backend: a failed allocation is an error naming the op and the size asked for,
//! never a panic or an abort.

mod common;
use kernels::{Backend, KernelError};

fn failed_allocation_names_the_op_and_the_size(be: &impl Backend) {
    // 2^61 f32 is 8 EiB: no device has it
    let huge = 1usize << 61;
    let e = be.zeros(huge).err().expect("zeros(2^61) must fail");
    assert_eq!(e, KernelError::OutOfMemory { op: "zeros", elements: huge, element_bytes: 4 });
    assert!(e.to_string().contains("in zeros") && e.to_string().contains(&huge.to_string()), "{e}");
    let mut buf = be.zeros(3).unwrap();
    let e = be.resize(&mut buf, huge).unwrap_err();
    assert!(matches!(e, KernelError::OutOfMemory { op: "resize", elements, .. } if elements == huge), "{e}");
    // the buffer is still usable after the failed resize
    be.resize(&mut buf, 5).unwrap();
    be.fill(&mut buf, 2.5).unwrap();
    assert_eq!(be.download(&buf).unwrap(), vec![2.5; 5]);
}

fn upload_download_round_trip(be: &impl Backend) {
    let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 3.0).collect();
    let buf = be.upload(&v).unwrap();
    assert_eq!(be.len(&buf), 1000);
    assert_eq!(be.download(&buf).unwrap(), v);
    let ids = be.upload_ids(&[3, 1, 4]).unwrap();
    assert_eq!(be.ids_len(&ids), 3);
    let mut dst = be.zeros(1000).unwrap();
    be.copy(&mut dst, &buf).unwrap();
    assert_eq!(be.download(&dst).unwrap(), v);
    let mut short = be.zeros(999).unwrap();
    assert!(matches!(be.copy(&mut short, &buf), Err(KernelError::Shape { op: "copy", .. })));
}

backend_tests! {
    failed_allocation => super::failed_allocation_names_the_op_and_the_size,
    upload_download => super::upload_download_round_trip,
}

/// The default implementations of composable ops (what a new backend gets) against the CPU's own.
#[test]
fn default_compositions_match_the_cpu_overrides() {
    use kernels::backend::{Gemm, MatView};
    let be = kernels::Cpu::new(2).unwrap();
    let (rows, d, g) = (5, 3, 4);
    let bias: Vec<f32> = (0..d).map(|i| i as f32 - 0.5).collect();
    // broadcast_rows as a gemm with a column of ones
    let mut y = vec![0.0f32; rows * d];
    be.gemm(
        &mut y,
        MatView::row_major(0, d),
        &vec![1.0; rows],
        MatView::row_major(0, 1),
        &bias,
        MatView::row_major(0, d),
        Gemm::new(rows, d, 1),
    )
    .unwrap();
    let mut want = vec![9.0f32; rows * d];
    be.broadcast_rows(&mut want, &bias, rows).unwrap();
    assert_eq!(y, want);
    // weighted_row_sum as a [1, G] x [G, D] gemm
    let x: Vec<f32> = (0..g * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let w: Vec<f32> = (0..g).map(|i| 0.25 * (i + 1) as f32).collect();
    let mut a = vec![0.0f32; d];
    be.gemm(
        &mut a,
        MatView::row_major(0, d),
        &w,
        MatView::row_major(0, g),
        &x,
        MatView::row_major(0, d),
        Gemm::new(1, d, g),
    )
    .unwrap();
    let mut b = vec![0.0f32; d];
    be.weighted_row_sum(&mut b, &x, &w, d, false).unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}
