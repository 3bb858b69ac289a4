//! The Poisson subject sampler: inclusion rate per subject, batch-size law, empty batches,
//! independence across steps, determinism of a seeded run.

use medtrain::privacy::accountant::SampleRate;
use medtrain::privacy::sampler::PoissonSampler;

#[test]
fn every_subject_is_included_at_rate_q_and_batch_sizes_follow_the_binomial_law() {
    let (n, q, steps) = (1000usize, 0.02, 20_000);
    let mut s = PoissonSampler::seeded(n, SampleRate::new(q).unwrap(), [1; 32]);
    let mut counts = vec![0u32; n];
    let mut sizes = Vec::with_capacity(steps);
    let mut batch = Vec::new();
    for _ in 0..steps {
        s.next_batch(&mut batch);
        assert!(batch.windows(2).all(|w| w[0] < w[1]) && batch.iter().all(|&i| i < n), "increasing, in range");
        for &i in &batch {
            counts[i] += 1;
        }
        sizes.push(batch.len() as f64);
    }
    // per subject: Binomial(steps, q), mean 400, sd 19.8: every one within 5.5 sd
    let (mean, sd) = (steps as f64 * q, (steps as f64 * q * (1.0 - q)).sqrt());
    for (i, &c) in counts.iter().enumerate() {
        assert!((c as f64 - mean).abs() < 5.5 * sd, "subject {i} included {c} times, expected {mean}");
    }
    // batch size: Binomial(N, q), mean 20 (standard error of the mean 0.03), variance 19.6 (se 0.2)
    let m = sizes.iter().sum::<f64>() / steps as f64;
    let v = sizes.iter().map(|x| (x - m).powi(2)).sum::<f64>() / steps as f64;
    assert!((m - n as f64 * q).abs() < 0.2, "mean batch {m}, expected 20");
    assert!((v - n as f64 * q * (1.0 - q)).abs() < 1.2, "batch-size variance {v}, expected 19.6");
    assert_eq!(s.expected_batch(), 20.0);
}

#[test]
fn empty_batches_happen_at_their_probability_and_are_returned() {
    // N = 10, q = 0.05: P(empty) = 0.95^10 = 0.5987
    let mut s = PoissonSampler::seeded(10, SampleRate::new(0.05).unwrap(), [2; 32]);
    let mut batch = vec![99];
    let steps = 20_000;
    let mut empty = 0;
    for _ in 0..steps {
        s.next_batch(&mut batch);
        empty += batch.is_empty() as usize;
    }
    let p = empty as f64 / steps as f64;
    assert!((p - 0.598_74).abs() < 0.02, "empty fraction {p}");
}

#[test]
fn steps_are_independent() {
    // inclusion of subject 0 at step t and t+1: the correlation is zero
    let q = 0.3;
    let mut s = PoissonSampler::seeded(5, SampleRate::new(q).unwrap(), [3; 32]);
    let mut batch = Vec::new();
    let xs: Vec<f64> = (0..40_000)
        .map(|_| {
            s.next_batch(&mut batch);
            batch.first().map_or(0.0, |&i| (i == 0) as u8 as f64)
        })
        .collect();
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let cov = xs.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>() / (xs.len() - 1) as f64;
    let corr = cov / (m * (1.0 - m));
    assert!((m - q).abs() < 0.01, "inclusion rate {m}");
    assert!(corr.abs() < 0.025, "lag-1 correlation {corr}");
}

#[test]
fn a_seeded_sampler_repeats_and_q_one_takes_everyone() {
    let mut a = PoissonSampler::seeded(100, SampleRate::new(0.1).unwrap(), [4; 32]);
    let mut b = PoissonSampler::seeded(100, SampleRate::new(0.1).unwrap(), [4; 32]);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        a.next_batch(&mut x);
        b.next_batch(&mut y);
        assert_eq!(x, y);
    }
    let mut all = PoissonSampler::seeded(7, SampleRate::new(1.0).unwrap(), [5; 32]);
    all.next_batch(&mut x);
    assert_eq!(x, (0..7).collect::<Vec<_>>());
    let mut none = PoissonSampler::seeded(0, SampleRate::new(0.5).unwrap(), [6; 32]);
    none.next_batch(&mut x);
    assert!(x.is_empty());
    assert!(PoissonSampler::from_os_entropy(3, SampleRate::new(0.5).unwrap()).is_ok());
}
