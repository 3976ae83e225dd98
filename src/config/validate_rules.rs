//! Validation of the rules and the campaign calendar, whether they sit in
//! the config file or in a rules file: every error names the field, the
//! value and the fix.

use std::collections::HashSet;
use std::time::Duration;

use super::{invalid, parse_time, Config, ConfigError};
use crate::rules::Metric;

impl Config {
    pub fn validate_rules(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        let names: HashSet<&str> = e.windows.iter().map(|w| w.name.as_str()).collect();
        let size = |n: &str| e.windows.iter().find(|w| w.name == n).map(|w| w.size);
        let step = |n: &str| e.windows.iter().find(|w| w.name == n).map(|w| w.step);
        let mut rule_names = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            if r.name.trim().is_empty() || !rule_names.insert(r.name.as_str()) {
                return Err(invalid(
                    format!("{field}.name"),
                    &r.name,
                    "empty or used twice",
                    "give each rule its own name",
                ));
            }
            if Metric::from_name(&r.metric).is_none() {
                return Err(invalid(
                    format!("{field}.metric"),
                    &r.metric,
                    "no such metric",
                    format!("use one of {}", Metric::names().join(", ")),
                ));
            }
            if !names.contains(r.window.as_str()) {
                let known: Vec<_> = e.windows.iter().map(|w| w.name.as_str()).collect();
                return Err(invalid(
                    format!("{field}.window"),
                    &r.window,
                    "no window has that name",
                    format!("use one of {} or define it under [[engine.windows]]", known.join(", ")),
                ));
            }
            if !(r.threshold > 0.0 && r.threshold < 1.0) {
                return Err(invalid(
                    format!("{field}.threshold"),
                    r.threshold,
                    "a rate threshold is a fraction between 0 and 1",
                    "write 10% as 0.10",
                ));
            }
            if !(r.confidence >= 0.5 && r.confidence < 1.0) {
                return Err(invalid(
                    format!("{field}.confidence"),
                    r.confidence,
                    "must be in [0.5, 1)",
                    "use e.g. 0.95",
                ));
            }
            for (name, d) in [("for", r.for_), ("keep_firing_for", r.keep_firing_for)] {
                if d > Duration::from_secs(86_400) {
                    return Err(invalid(
                        format!("{field}.{name}"),
                        humantime::format_duration(d).to_string(),
                        "longer than a day delays or holds a page past any use",
                        "use minutes, e.g. \"2m\"",
                    ));
                }
            }
            if let Some(long) = &r.confirm_window {
                if !names.contains(long.as_str()) {
                    return Err(invalid(
                        format!("{field}.confirm_window"),
                        long,
                        "no window has that name",
                        "use a window defined under [[engine.windows]], longer than `window`",
                    ));
                }
                if size(long) <= size(&r.window) {
                    return Err(invalid(
                        format!("{field}.confirm_window"),
                        long,
                        "not longer than `window`",
                        "confirm a short window with a longer one, e.g. window = \"5m\", confirm_window = \"1h\"",
                    ));
                }
            }
            if let Some(t) = r.confirm_threshold {
                if !(t > 0.0 && t < 1.0) {
                    return Err(invalid(
                        format!("{field}.confirm_threshold"),
                        t,
                        "a rate threshold is a fraction between 0 and 1",
                        "write 5% as 0.05",
                    ));
                }
            }
            self.validate_spike(&field, r, &names, size, step)?;
            if r.min_orders == 0 {
                return Err(invalid(
                    format!("{field}.min_orders"),
                    r.min_orders,
                    "a rate over zero orders means nothing",
                    "use at least 1; 30 is a sane floor",
                ));
            }
        }
        self.validate_phases(&rule_names)
    }

    fn validate_spike(
        &self,
        field: &str,
        r: &super::RuleConfig,
        names: &HashSet<&str>,
        size: impl Fn(&str) -> Option<Duration>,
        step: impl Fn(&str) -> Option<Duration>,
    ) -> Result<(), ConfigError> {
        if (r.baseline_ratio.is_some() || r.require_baseline.is_some() || r.baseline_phase.is_some())
            && r.baseline_window.is_none()
        {
            return Err(invalid(
                format!("{field}.baseline_ratio"),
                r.baseline_ratio,
                "baseline_ratio, require_baseline or baseline_phase set without baseline_window",
                "add baseline_window = \"24h\" (the shop's own past), or drop them",
            ));
        }
        for (name, ratio) in [("baseline_ratio", r.baseline_ratio), ("category_ratio", r.category_ratio)] {
            if let Some(x) = ratio {
                if !(x.is_finite() && x >= 1.0) {
                    return Err(invalid(
                        format!("{field}.{name}"),
                        x,
                        "a spike ratio is how many times the reference rate, at least 1",
                        "use e.g. 3.0",
                    ));
                }
            }
        }
        if r.is_spike() && r.scope != crate::rules::Scope::Shop && r.category_ratio.is_some() {
            return Err(invalid(
                format!("{field}.category_ratio"),
                r.category_ratio,
                "only shop-scope rules have a category to compare with",
                "drop category_ratio, or use scope = \"shop\"",
            ));
        }
        let Some(base) = &r.baseline_window else { return Ok(()) };
        if !names.contains(base.as_str()) {
            return Err(invalid(
                format!("{field}.baseline_window"),
                base,
                "no window has that name",
                "use a window defined under [[engine.windows]], e.g. \"24h\"",
            ));
        }
        if let Some(phase) = &r.baseline_phase {
            if !self.phases.iter().any(|p| &p.name == phase) {
                return Err(invalid(
                    format!("{field}.baseline_phase"),
                    phase,
                    "no campaign phase has that name",
                    "name a [[phases]] entry, e.g. \"pre_sale\"",
                ));
            }
            // Read once, when the phase ends: any window will do.
            return Ok(());
        }
        if step(base) < size(&r.window) {
            return Err(invalid(
                format!("{field}.baseline_window"),
                base,
                format!(
                    "its step ({}) is shorter than the rule's window `{}`: the baseline is read where that window \
                     starts, at most two baseline buckets back",
                    step(base).map(|d| humantime::format_duration(d).to_string()).unwrap_or_default(),
                    r.window
                ),
                "use a baseline window whose step is at least the rule's window, e.g. window = \"1h\", \
                 baseline_window = \"24h\" (step 1h)",
            ));
        }
        Ok(())
    }

    fn validate_phases(&self, rule_names: &HashSet<&str>) -> Result<(), ConfigError> {
        let mut spans: Vec<(i64, i64, &str)> = Vec::new();
        let mut phase_names = HashSet::new();
        for (i, p) in self.phases.iter().enumerate() {
            let field = format!("phases[{i}]");
            if p.name.trim().is_empty() || !phase_names.insert(p.name.as_str()) {
                return Err(invalid(format!("{field}.name"), &p.name, "empty or used twice", "name each phase once"));
            }
            let time = |name: &str, v: &str| {
                parse_time(v).ok_or_else(|| {
                    invalid(
                        format!("{field}.{name}"),
                        v,
                        "not an RFC 3339 time with an offset",
                        "write e.g. \"2026-11-11T00:00:00+08:00\"",
                    )
                })
            };
            let (start, end) = (time("start", &p.start)?, time("end", &p.end)?);
            if end <= start {
                return Err(invalid(format!("{field}.end"), &p.end, "not after start", "end a phase after it starts"));
            }
            if let Some((_, _, other)) = spans.iter().find(|(s, e, _)| start < *e && *s < end) {
                return Err(invalid(
                    format!("{field}.start"),
                    &p.start,
                    format!("phase `{}` overlaps phase `{other}`", p.name),
                    "make phases follow one another; a time is in at most one phase",
                ));
            }
            spans.push((start, end, &p.name));
            for (j, m) in p.mute.iter().enumerate() {
                if m != "*" && !rule_names.contains(m.as_str()) {
                    return Err(invalid(
                        format!("{field}.mute[{j}]"),
                        m,
                        "no rule has that name",
                        "name a rule of [[rules]], or \"*\" for all",
                    ));
                }
            }
            for (rule, t) in &p.thresholds {
                if !rule_names.contains(rule.as_str()) {
                    return Err(invalid(
                        format!("{field}.thresholds.{rule}"),
                        rule,
                        "no rule has that name",
                        "name a rule of [[rules]]",
                    ));
                }
                if !(*t > 0.0 && *t < 1.0) {
                    return Err(invalid(
                        format!("{field}.thresholds.{rule}"),
                        t,
                        "a rate threshold is a fraction between 0 and 1",
                        "write 10% as 0.10",
                    ));
                }
            }
        }
        Ok(())
    }
}
