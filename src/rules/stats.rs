//! Statistics for rate alerts: the Wilson score lower bound, so that 3
//! refunds out of 4 orders is not read as a 75% refund rate.

use statrs::distribution::{ContinuousCDF, Normal};

/// One-sided z for a confidence level: the bound is exceeded by the true rate
/// with probability `confidence`. 0.95 gives 1.645.
pub fn z_for_confidence(confidence: f64) -> f64 {
    let std = Normal::new(0.0, 1.0).expect("standard normal is valid");
    std.inverse_cdf(confidence)
}

/// Wilson score interval lower bound for `k` successes out of `n` trials:
/// `(p + z²/2n - z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`.
///
/// `k > n` (more refunds in a window than orders paid in it, which happens
/// when refunds concern older orders) is clamped to `n`. Returns 0 for `n = 0`.
pub fn wilson_lower_bound(k: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n_f = n as f64;
    let p = k.min(n) as f64 / n_f;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n_f);
    let margin = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    ((centre - margin) / (1.0 + z2 / n_f)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    /// Reference values computed independently with
    /// `statsmodels.stats.proportion.proportion_confint(k, n, alpha, method="wilson")`
    /// (two-sided alpha; its lower end is the one-sided bound at 1 - alpha/2).
    #[test]
    fn matches_statsmodels() {
        let z975 = z_for_confidence(0.975); // 1.959964
        assert!(close(z975, 1.959964));
        assert!(close(wilson_lower_bound(3, 4, z975), 0.300642));
        assert!(close(wilson_lower_bound(10, 100, z975), 0.055229));
        assert!(close(wilson_lower_bound(40, 100, z975), 0.309401));
        assert!(close(wilson_lower_bound(0, 50, z975), 0.0));
        assert!(close(wilson_lower_bound(50, 50, z975), 0.928652));
        let z95 = z_for_confidence(0.95); // 1.644854
        assert!(close(z95, 1.644854));
        assert!(close(wilson_lower_bound(5, 30, z95), 0.083562));
    }

    #[test]
    fn small_samples_are_discounted() {
        let z = z_for_confidence(0.95);
        assert!(wilson_lower_bound(3, 4, z) < 0.40, "3 of 4 is not a 75% rate");
        assert!(wilson_lower_bound(300, 400, z) > 0.7);
        assert_eq!(wilson_lower_bound(1, 0, z), 0.0);
        assert_eq!(wilson_lower_bound(9, 4, z), wilson_lower_bound(4, 4, z));
    }
}
