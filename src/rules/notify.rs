//! The alert a transition produces: Prometheus-style labels (`alertname`,
//! `severity`, `shop_id`, `rule`, plus the rule's own) and annotations
//! (`summary`, `description`, `runbook_url`, and the numbers: rate, bound,
//! counts, window, threshold, baseline and category rates, phase).

use std::collections::BTreeMap;

use super::{fingerprint, Alert, AlertStatus, Evaluation, RateRule, Scope};
use crate::event::Millis;

/// A rule's evaluation for one key, ready to become an [`Alert`].
pub(super) struct Notice<'a> {
    pub rule: &'a RateRule,
    pub key: &'a str,
    pub category: &'a str,
    pub eval: &'a Evaluation,
    pub confirm: Option<&'a Evaluation>,
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

impl Notice<'_> {
    pub fn alert(&self, starts_at: Millis, window_end: Millis, status: AlertStatus, phase: Option<&str>) -> Alert {
        let (rule, e, key) = (self.rule, self.eval, self.key);
        let metric = rule.metric.name();
        let mut labels = rule.labels.clone();
        let set = |m: &mut BTreeMap<String, String>, k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        set(&mut labels, "alertname", rule.name.clone());
        set(&mut labels, "rule", rule.name.clone());
        set(&mut labels, "severity", rule.severity.as_str().to_string());
        set(&mut labels, "scope", rule.scope.as_str().to_string());
        if rule.scope == Scope::Shop {
            set(&mut labels, "shop_id", key.to_string());
        }
        if !self.category.is_empty() {
            set(&mut labels, "category", self.category.to_string());
        }
        set(&mut labels, "window", rule.window_name.clone());
        let subject = match rule.scope {
            Scope::Shop => format!("shop {key}"),
            Scope::Category => format!("category {key}"),
            Scope::Platform => "the platform".to_string(),
        };
        let mut ann = rule.annotations.clone();
        set(
            &mut ann,
            "summary",
            format!("{metric} of {subject} is {:.1}% over the last {}", e.rate * 100.0, rule.window_name),
        );
        set(&mut ann, "metric_definition", rule.metric.description().to_string());
        let mut description = format!(
            "{} of {} ({}); Wilson lower bound {} is {} the {} threshold",
            e.numerator,
            e.denominator,
            pct(e.rate),
            pct(e.bound),
            if e.breached { "above" } else { "no longer above" },
            pct(e.threshold)
        );
        if let Some(b) = e.baseline_rate {
            description.push_str(&format!("; its baseline rate was {}", pct(b)));
        }
        if let Some(p) = e.peer_rate {
            description.push_str(&format!("; the rest of its category is at {}", pct(p)));
        }
        set(&mut ann, "description", description);
        set(&mut ann, "rate", format!("{:.6}", e.rate));
        set(&mut ann, "wilson_lower_bound", format!("{:.6}", e.bound));
        set(&mut ann, "threshold", format!("{:.6}", e.threshold));
        set(&mut ann, "numerator", e.numerator.to_string());
        set(&mut ann, "denominator", e.denominator.to_string());
        set(&mut ann, "window", rule.window_name.clone());
        if let Some(b) = e.baseline_rate {
            set(&mut ann, "baseline_rate", format!("{b:.6}"));
        }
        if let Some(p) = e.peer_rate {
            set(&mut ann, "category_rate", format!("{p:.6}"));
        }
        if let Some(phase) = phase {
            set(&mut ann, "phase", phase.to_string());
        }
        if let (Some(c), Some(spec)) = (self.confirm, &rule.confirm) {
            let text = format!(
                "{}: {} of {} ({}); Wilson lower bound {} vs {}",
                spec.window_name,
                c.numerator,
                c.denominator,
                pct(c.rate),
                pct(c.bound),
                pct(spec.threshold)
            );
            set(&mut ann, "confirm_window", text);
        }
        if let Some(url) = &rule.runbook_url {
            set(&mut ann, "runbook_url", url.clone());
        }
        Alert {
            fingerprint: fingerprint(&rule.name, rule.scope.as_str(), key),
            status,
            rule: rule.name.clone(),
            severity: rule.severity,
            scope: rule.scope.as_str().to_string(),
            shop_id: if rule.scope == Scope::Shop { key.to_string() } else { String::new() },
            category: self.category.to_string(),
            metric: metric.to_string(),
            window: rule.window_name.clone(),
            numerator: e.numerator,
            denominator: e.denominator,
            rate: e.rate,
            wilson_lower_bound: e.bound,
            threshold: e.threshold,
            baseline_rate: e.baseline_rate,
            category_rate: e.peer_rate,
            phase: phase.map(str::to_string),
            repeat: false,
            starts_at,
            ends_at: (status == AlertStatus::Resolved).then_some(window_end),
            window_end,
            labels,
            annotations: ann,
        }
    }
}
