//! Special functions in log space that both accountants need (f64).

/// ln(e^x + e^y), stable; -inf is the log of 0.
pub fn log_add_exp(x: f64, y: f64) -> f64 {
    let (a, b) = if x < y { (x, y) } else { (y, x) };
    if a == f64::NEG_INFINITY {
        return b;
    }
    b + (a - b).exp().ln_1p()
}

/// ln(erfc(x)), accurate in the far tail where erfc underflows (the asymptotic series at infinity).
pub fn log_erfc(x: f64) -> f64 {
    if x < 20.0 {
        let r = libm::erfc(x);
        if r > 0.0 {
            return r.ln();
        }
    }
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x * x - 0.5 * x.powi(-2) + 0.625 * x.powi(-4) - 37.0 / 24.0 * x.powi(-6)
        + 353.0 / 64.0 * x.powi(-8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_erfc_is_continuous_where_the_series_takes_over() {
        // erfc(20) ~ 5.4e-176 is still representable: the series must agree with the direct value
        let x = 19.999;
        let direct = libm::erfc(x).ln();
        let series = -std::f64::consts::PI.ln() / 2.0 - f64::ln(x) - x * x - 0.5 * x.powi(-2) + 0.625 * x.powi(-4)
            - 37.0 / 24.0 * x.powi(-6)
            + 353.0 / 64.0 * x.powi(-8);
        assert!((direct - series).abs() < 1e-9 * direct.abs(), "{direct} vs {series}");
        assert!(super::log_erfc(30.0).is_finite() && super::log_erfc(30.0) < -900.0);
        assert_eq!(super::log_add_exp(f64::NEG_INFINITY, 1.5), 1.5);
    }
}
