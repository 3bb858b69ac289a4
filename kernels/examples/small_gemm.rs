//! Profiling aid: the cost of one small gemm call (a ghost-norm Gram matrix), one thread.
use kernels::{Backend, Cpu, Gemm, MatView};
use std::time::Instant;

fn main() {
    for (i, o) in [(128usize, 384usize), (512, 128), (128, 512)] {
        println!(
            "materialize {i}x{o}x115: transposed view {:.0} GFLOP/s, copied {:.0} GFLOP/s",
            materialize(i, o, 115, false),
            materialize(i, o, 115, true)
        );
    }
    return;
    for (n, k) in [(48usize, 128usize), (48, 512)] {
        println!(
            "direct {n}x{n}x{k}: rhs transposed {:.2} us, rhs row-major {:.2} us, dst col-major {:.2} us",
            direct(n, k, true),
            direct(n, k, false),
            colmajor(n, k)
        );
    }
    let be = Cpu::new(1).unwrap();
    for (n, k) in [(48usize, 128usize), (48, 384), (48, 512), (128, 128)] {
        let x: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32).collect();
        let mut g = vec![0.0f32; n * n];
        let reps = 2000;
        let t = Instant::now();
        for _ in 0..reps {
            be.gemm(
                &mut g,
                MatView::row_major(0, n),
                &x,
                MatView::row_major(0, k),
                &x,
                MatView::transposed(0, k),
                Gemm::new(n, n, k),
            )
            .unwrap();
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("gram {n}x{n}x{k}: {:.2} us, {:.0} GFLOP/s", s * 1e6, 2.0 * (n * n * k) as f64 / s / 1e9);
    }
}

#[allow(dead_code)]
pub fn direct(n: usize, k: usize, transposed_rhs: bool) -> f64 {
    let x: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32).collect();
    let xt: Vec<f32> = (0..n * k).map(|i| x[(i % n) * k + i / n]).collect();
    let mut g = vec![0.0f32; n * n];
    let reps = 2000;
    let t = Instant::now();
    for _ in 0..reps {
        unsafe {
            if transposed_rhs {
                gemm::gemm(
                    n,
                    n,
                    k,
                    g.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    x.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            } else {
                gemm::gemm(
                    n,
                    n,
                    k,
                    g.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    xt.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
    t.elapsed().as_secs_f64() / reps as f64 * 1e6
}

pub fn colmajor(n: usize, k: usize) -> f64 {
    // G^T = G for a Gram matrix: write it column-major, gemm's native orientation
    let x: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32).collect();
    let mut g = vec![0.0f32; n * n];
    let reps = 2000;
    let t = Instant::now();
    for _ in 0..reps {
        unsafe {
            gemm::gemm(
                n,
                n,
                k,
                g.as_mut_ptr(),
                n as isize,
                1,
                false,
                x.as_ptr(),
                1,
                k as isize,
                x.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    t.elapsed().as_secs_f64() / reps as f64 * 1e6
}

/// X^T dY for one group: m = d_in, n = d_out, k = rows; X read through a transposed view or copied.
pub fn materialize(d_in: usize, d_out: usize, rows: usize, copy: bool) -> f64 {
    let x: Vec<f32> = (0..rows * d_in).map(|i| (i % 7) as f32).collect();
    let dy: Vec<f32> = (0..rows * d_out).map(|i| (i % 5) as f32).collect();
    let mut g = vec![0.0f32; d_in * d_out];
    let reps = 300;
    let t = Instant::now();
    for _ in 0..reps {
        unsafe {
            if copy {
                let mut xt = vec![0.0f32; rows * d_in];
                for r in 0..rows {
                    for c in 0..d_in {
                        xt[c * rows + r] = x[r * d_in + c];
                    }
                }
                gemm::gemm(
                    d_in,
                    d_out,
                    rows,
                    g.as_mut_ptr(),
                    1,
                    d_out as isize,
                    false,
                    xt.as_ptr(),
                    1,
                    rows as isize,
                    dy.as_ptr(),
                    1,
                    d_out as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            } else {
                gemm::gemm(
                    d_in,
                    d_out,
                    rows,
                    g.as_mut_ptr(),
                    1,
                    d_out as isize,
                    false,
                    x.as_ptr(),
                    d_in as isize,
                    1,
                    dy.as_ptr(),
                    1,
                    d_out as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    2.0 * (d_in * d_out * rows) as f64 / s / 1e9
}
