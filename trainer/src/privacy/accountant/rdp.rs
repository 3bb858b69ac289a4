//! RDP accountant (Mironov 2017; Mironov, Talwar, Zhang 2019) for the Poisson-subsampled Gaussian, with
//! the improved RDP-to-(epsilon, delta) conversion of Balle et al. 2020 (Proposition 12 of
//! arXiv:2004.00010). It follows Google's dp_accounting `RdpAccountant` term for term (same orders,
//! same series, same conversion), and is checked against it in tests.
//!
//! RDP of one step at order a: log(A_a) / (a - 1), with A_a the a-th moment of the subsampled mixture;
//! for integer a the binomial expansion, for fractional a the two-sided series of Sec. 3.3 of
//! arXiv:1908.10530. Phases compose by adding RDP per order; epsilon is the minimum over orders. An order
//! whose series does not converge is left out (as dp_accounting does): leaving orders out can only raise
//! epsilon, never under-report it.

use super::special::{log_add_exp, log_erfc};
use super::{Delta, Phase};

/// dp_accounting's default orders: 1.1 .. 10.9 in steps of 0.1, 11 .. 63, 128, 256, 512, 1024.
pub fn default_orders() -> Vec<f64> {
    let mut v: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    v.extend((11..64).map(|x| x as f64));
    v.extend([128.0, 256.0, 512.0, 1024.0]);
    v
}

const MAX_FRAC_TERMS: usize = 1000;

fn log_comb(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let log1mq = (-q).ln_1p();
    for i in 0..=alpha {
        let i_f = i as f64;
        let log_coef = log_comb(alpha as f64, i_f) + i_f * q.ln() + (alpha as f64 - i_f) * log1mq;
        log_a = log_add_exp(log_a, log_coef + (i_f * i_f - i_f) / (2.0 * sigma * sigma));
    }
    log_a
}

fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let log1mq = (-q).ln_1p();
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for i in 0..MAX_FRAC_TERMS {
        let i_f = i as f64;
        let log_coef = log_comb(alpha, i_f);
        let j = alpha - i_f;
        let log_t0 = log_coef + i_f * q.ln() + j * log1mq;
        let log_t1 = log_coef + j * q.ln() + i_f * log1mq;
        let log_e0 = 0.5f64.ln() + log_erfc((i_f - z0) / (std::f64::consts::SQRT_2 * sigma));
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / (std::f64::consts::SQRT_2 * sigma));
        let log_s0 = log_t0 + (i_f * i_f - i_f) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add_exp(log_a0, log_s0);
        log_a1 = log_add_exp(log_a1, log_s1);
        let total = log_add_exp(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    f64::INFINITY // did not converge: this order is left out
}

/// RDP at `order` of one step of the Poisson-subsampled Gaussian (q, sigma).
pub fn step_rdp(q: f64, sigma: f64, order: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if order.is_infinite() {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    let log_a = if order.fract() == 0.0 { log_a_int(q, sigma, order as u64) } else { log_a_frac(q, sigma, order) };
    log_a / (order - 1.0)
}

/// RDP of the composition of `phases` at each of `orders`.
pub fn compose(phases: &[Phase], orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&a| {
            phases.iter().map(|p| p.steps as f64 * step_rdp(p.sample_rate.get(), p.noise_multiplier.get(), a)).sum()
        })
        .collect()
}

/// epsilon from RDP values (Balle et al. 2020, Prop. 12), and the order that attains it.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: Delta) -> (f64, f64) {
    let delta = delta.get();
    let mut best = (f64::INFINITY, 0.0);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r < 0.0 {
            0.0
        } else if delta * delta + (-r).exp_m1() > 0.0 {
            0.0 // the KL bound: delta <= sqrt(1 - exp(-r))
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// epsilon of the composition of `phases` at `delta`, over dp_accounting's default orders.
pub fn epsilon(phases: &[Phase], delta: Delta) -> f64 {
    let orders = default_orders();
    epsilon_from_rdp(&orders, &compose(phases, &orders), delta).0
}
