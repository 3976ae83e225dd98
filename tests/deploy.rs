//! The deploy/ files refer only to metrics peakguard exports, and the
//! compose config is a valid peakguard config. (promtool, amtool and
//! docker-compose check their own files in scripts/check-deploy.sh.)

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `peakguard_...` metric name in `text`, without histogram suffixes.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("peakguard_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn dashboards_and_rules_use_only_exported_metrics() {
    let exported: BTreeSet<String> =
        (names(&read("src/metrics/mod.rs")).into_iter().chain(names(&read("src/metrics/business.rs"))))
            .filter(|n| !n.ends_with('_') && n != "peakguard_")
            .collect();
    assert!(exported.contains("peakguard_business_rate") && exported.len() > 20, "{exported:?}");
    for file in ["deploy/grafana/dashboards/peakguard.json", "deploy/prometheus/peakguard-rules.yml"] {
        let used = names(&read(file));
        assert!(!used.is_empty(), "{file} uses no peakguard metric");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} uses metrics peakguard does not export: {unknown:?}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/dashboards/peakguard.json")).unwrap();
    let titles: Vec<&str> =
        dashboard["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
    for needed in ["Platform refund rate by window", "Top shops", "Alerts firing", "Consumer lag", "Watermark age"] {
        assert!(titles.iter().any(|t| t.starts_with(needed)), "dashboard lacks {needed}: {titles:?}");
    }
}

#[test]
fn compose_config_is_a_valid_peakguard_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    // In the image, config/ sits at /etc/peakguard/config.
    let text = read("deploy/peakguard.toml").replace("/etc/peakguard/config", &format!("{root}/config"));
    let cfg = peakguard::config::Config::parse(&text, Path::new("deploy/peakguard.toml")).expect("valid");
    assert_eq!(cfg.kafka.brokers, "kafka:9092");
    assert_eq!(cfg.alertmanager.url, "http://alertmanager:9093");
    assert!(cfg.rules.len() >= 4 && !cfg.phases.is_empty());
    let compose = read("docker-compose.yml");
    for service in
        ["kafka:", "schema-registry:", "peakguard:", "generator:", "prometheus:", "alertmanager:", "grafana:"]
    {
        assert!(compose.contains(&format!("\n  {service}")), "docker-compose.yml lacks {service}");
    }
}
