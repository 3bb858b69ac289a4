//! Vectorized reductions with a fixed order: 16 lane accumulators over the slice in 16-element steps,
//! then the lanes and the tail in order. Without fast-math the compiler keeps a plain `.sum()` of f32
//! sequential (one add at a time); these run 16 wide and give the same bits on every thread count.

const L: usize = 16;

#[inline(always)]
fn lanes_sum(acc: &[f32; L]) -> f32 {
    // pairwise, fixed
    let mut a = *acc;
    let mut w = L / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

/// sum of x
#[inline]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            acc[l] += c[l];
        }
    }
    lanes_sum(&acc) + tail.iter().sum::<f32>()
}

/// sum of (x - m)^2
#[inline]
pub fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0.0f32; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            let d = c[l] - m;
            acc[l] = d.mul_add(d, acc[l]);
        }
    }
    lanes_sum(&acc) + tail.iter().map(|&v| (v - m) * (v - m)).sum::<f32>()
}

/// sum of a * b
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    lanes_sum(&acc) + tail
}

/// max of x (-inf for an empty slice); NaN-free inputs assumed
#[inline]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..L {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let m = acc.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    tail.iter().fold(m, |a, &b| if b > a { b } else { a })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reductions_match_f64_references() {
        let x: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let y: Vec<f32> = (0..1000).map(|i| ((i * 13 % 53) as f32 - 26.0) / 5.0).collect();
        for n in [0usize, 1, 15, 16, 17, 999, 1000] {
            let (x, y) = (&x[..n], &y[..n]);
            let s: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((super::sum(x) as f64 - s).abs() < 1e-3, "sum n={n}");
            let d: f64 = x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((super::dot(x, y) as f64 - d).abs() < 1e-2, "dot n={n}");
            let m = if n == 0 { 0.0 } else { s / n as f64 };
            let v: f64 = x.iter().map(|&a| (a as f64 - m).powi(2)).sum();
            assert!((super::sum_sq_dev(x, m as f32) as f64 - v).abs() < 1e-2 * v.max(1.0), "sum_sq_dev n={n}");
            let mx = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            assert_eq!(super::max(x), mx, "max n={n}");
        }
    }
}
