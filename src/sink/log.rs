//! The log sink: one structured line per alert transition, at WARN for a
//! firing alert and INFO for a resolved one or a repeat, under the
//! `peakguard::alert` target.

use tracing::{info, warn};

use crate::rules::{Alert, AlertStatus};

pub fn deliver(a: &Alert) {
    if a.repeat {
        info!(
            target: "peakguard::alert",
            status = "firing",
            repeat = true,
            rule = %a.rule,
            shop_id = %a.shop_id,
            fingerprint = %a.fingerprint,
            starts_at = a.starts_at,
            "{} still firing (notified before the restart; not paged again)", a.rule
        );
        return;
    }
    match a.status {
        AlertStatus::Firing => warn!(
            target: "peakguard::alert",
            status = "firing",
            rule = %a.rule,
            severity = a.severity.as_str(),
            metric = a.metric,
            shop_id = %a.shop_id,
            category = %a.category,
            window = %a.window,
            numerator = a.numerator,
            denominator = a.denominator,
            rate = a.rate,
            wilson_lower_bound = a.wilson_lower_bound,
            threshold = a.threshold,
            window_end = a.window_end,
            fingerprint = %a.fingerprint,
            "{}", a.annotations.get("summary").map(String::as_str).unwrap_or("alert firing")
        ),
        AlertStatus::Resolved => info!(
            target: "peakguard::alert",
            status = "resolved",
            rule = %a.rule,
            severity = a.severity.as_str(),
            shop_id = %a.shop_id,
            window = %a.window,
            numerator = a.numerator,
            denominator = a.denominator,
            rate = a.rate,
            fingerprint = %a.fingerprint,
            "{} resolved", a.rule
        ),
    }
}
