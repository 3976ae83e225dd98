//! Human-readable summaries printed by the CLI: the demo summary and the
//! replay timeline. Built as strings so they can be tested and logged.

use crate::config::Config;
use crate::demo::DemoSummary;
use crate::rules::{Alert, AlertStatus};
use crate::source::replay::ReplayReport;

macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// One alert as a line: rule, shop, window, numbers.
pub fn alert_line(a: &Alert) -> String {
    format!(
        "{} {} {} {}/{} = {:.1}% (Wilson lower bound {:.1}% > {:.1}%)",
        a.rule,
        if a.scope == "platform" { "platform".to_string() } else { format!("{}={}", a.scope, a.target()) },
        a.window,
        a.numerator,
        a.denominator,
        a.rate * 100.0,
        a.wilson_lower_bound * 100.0,
        a.threshold * 100.0
    )
}

/// An event time as RFC 3339 (UTC, seconds).
pub fn fmt_time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

/// The alert timeline and per-rule summary of a replay.
pub fn replay(r: &ReplayReport, cfg: &Config) -> String {
    let mut out = String::new();
    outln!(out, "alert timeline (event time of the window end):");
    for a in &r.alerts {
        let phase = a.phase.as_deref().map(|p| format!("  [{p}]")).unwrap_or_default();
        outln!(out, "  {}  {:<8}  {}{phase}", fmt_time(a.window_end), a.status.as_str(), alert_line(a));
    }
    outln!(out, "per rule:");
    for rule in &cfg.rules {
        let of_rule: Vec<_> = r.alerts.iter().filter(|a| a.rule == rule.name).collect();
        let fired = of_rule.iter().filter(|a| a.status == AlertStatus::Firing).count();
        let resolved = of_rule.len() - fired;
        let mut shops: Vec<&str> = of_rule.iter().map(|a| a.target()).collect();
        shops.sort();
        shops.dedup();
        let shown: Vec<&str> = shops.iter().take(10).copied().collect();
        let muted = r.muted.get(&rule.name).copied().unwrap_or(0);
        outln!(
            out,
            "  {} ({} {} {} > {}): fired {fired}, resolved {resolved}{}, shops {}{}",
            rule.name,
            rule.metric,
            rule.window,
            rule.severity.as_str(),
            rule.threshold,
            if muted > 0 { format!(", {muted} breaches muted by the calendar") } else { String::new() },
            shown.join(", "),
            if shops.len() > 10 { format!(" and {} more", shops.len() - 10) } else { String::new() }
        );
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let bad: u64 = r.errors.values().sum();
    outln!(
        out,
        "replayed {} lines: {} events ({} folded, {} late, {} duplicate, {} future), {bad} undecodable, in {:.1}s ({:.0} events/s)",
        r.lines,
        r.events,
        r.stats.folded,
        r.stats.late,
        r.stats.duplicate,
        r.stats.future,
        secs,
        r.events as f64 / secs
    );
    for (reason, n) in &r.errors {
        outln!(out, "  undecodable: {reason} x{n}");
    }
    for (line, e) in &r.first_errors {
        outln!(out, "  line {line}: {e}");
    }
    out
}

/// The end-of-demo summary.
pub fn demo(s: &DemoSummary) -> String {
    let mut out = String::new();
    let r = &s.run.report;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    outln!(out, "\n=== peakguard demo summary ===");
    outln!(out, "simulated time   {} .. {}", fmt_time(s.sim_start), fmt_time(s.sim_end));
    outln!(out, "events produced  {}", s.produced);
    outln!(
        out,
        "events processed {} in {:.1}s = {:.0} events/s, paced by the generator ({} folded, {} ignored kinds, {} late, {} undecodable)",
        r.records,
        secs,
        r.records as f64 / secs,
        r.stats.folded,
        r.stats.ignored,
        r.stats.late,
        r.decode_errors
    );
    if !r.latency_ms.is_empty() {
        outln!(
            out,
            "produce->fold    p50 {} ms, p99 {} ms, max {} ms",
            r.latency_ms.value_at_quantile(0.5),
            r.latency_ms.value_at_quantile(0.99),
            r.latency_ms.max()
        );
    }
    outln!(out, "shops held       {}", r.shops);
    let firing: Vec<_> = s.run.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    outln!(out, "alerts fired     {}", firing.len());
    for a in &firing {
        outln!(out, "  {} at {}", alert_line(a), fmt_time(a.window_end));
    }
    if let Some(spike) = &s.spike_shop {
        let caught = firing.iter().any(|a| &a.shop_id == spike);
        let others = firing.iter().filter(|a| &a.shop_id != spike).count();
        outln!(out, "other shops      {others} alert(s) for shops without an injected incident");
        outln!(
            out,
            "injected spike   {spike}: {}",
            if caught { "detected" } else { "NOT detected (demo too short? try --duration 60s)" }
        );
    }
    out
}

/// The rules and phases of a checked rules file, as `peakguard rules check` prints them.
pub fn rules(cfg: &Config, file: &std::path::Path) -> String {
    let mut out = String::new();
    let book = cfg.rule_book();
    outln!(out, "{} is valid: {} rules, {} phases.", file.display(), book.rules.len(), book.calendar.phases().len());
    for r in &book.rules {
        let mut kind = String::from("ratio");
        if let Some(c) = &r.confirm {
            kind = format!("multi-window (+{} > {:.2}%)", c.window_name, c.threshold * 100.0);
        }
        if let Some(s) = &r.spike {
            let mut parts = Vec::new();
            if let Some((_, name)) = &s.baseline {
                let when = s.baseline_phase.as_ref().map(|p| format!(" at the end of {p}")).unwrap_or_default();
                parts.push(format!("{}x its own {name}{when}", s.baseline_ratio));
            }
            if let Some(c) = s.category_ratio {
                parts.push(format!("{c}x its category"));
            }
            kind = format!("spike ({})", parts.join(", "));
        }
        outln!(
            out,
            "  {} [{} {}]: {} over {} > {:.2}% (floor {} / {}), {}, for {}s, keep {}s",
            r.name,
            r.scope.as_str(),
            r.severity.as_str(),
            r.metric.name(),
            r.window_name,
            r.threshold * 100.0,
            r.min_denominator,
            r.min_numerator,
            kind,
            r.for_ms / 1000,
            r.keep_firing_for_ms / 1000
        );
    }
    for (p, raw) in book.calendar.phases().iter().zip(&cfg.phases) {
        let changes: Vec<String> = p.thresholds.iter().map(|(r, t)| format!("{r} > {:.2}%", t * 100.0)).collect();
        outln!(
            out,
            "  phase {}: {} .. {}; muted: [{}]; thresholds: [{}]",
            p.name,
            raw.start,
            raw.end,
            p.mute.join(", "),
            changes.join(", ")
        );
    }
    out
}
