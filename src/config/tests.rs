//! Config parsing and validation: every error names the field, the value and the fix.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/peakguard.toml");
    let cfg = parse(text).expect("config/peakguard.toml parses");
    assert!(!cfg.rules.is_empty());
}

#[test]
fn unknown_window_names_field_value_and_fix() {
    let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"15m\"\nthreshold = 0.1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].window"), "{err}");
    assert!(err.contains("\"15m\""), "{err}");
    assert!(err.contains("use one of 5m, 1h, 24h, 30d"), "{err}");
}

#[test]
fn unknown_metric_lists_the_known_ones() {
    let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refunds\"\nwindow = \"5m\"\nthreshold = 0.1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].metric") && err.contains("refund_rate, quality_refund_rate"), "{err}");
}

#[test]
fn threshold_as_percent_is_rejected() {
    let err = parse("[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"5m\"\nthreshold = 10\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].threshold") && err.contains("0.10"), "{err}");
}

#[test]
fn unknown_field_is_rejected_with_its_name() {
    let err = parse("[kafka]\nbroker = \"x:1\"\n").unwrap_err().to_string();
    assert!(err.contains("broker"), "{err}");
}

#[test]
fn reserved_property_points_to_the_field() {
    let err = parse("[kafka.properties]\n\"group.id\" = \"x\"\n").unwrap_err().to_string();
    assert!(err.contains("kafka.group_id"), "{err}");
}

#[test]
fn bad_duration_and_window_shape() {
    let err = parse("[engine]\nallowed_lateness = \"soon\"\n").unwrap_err().to_string();
    assert!(err.contains("allowed_lateness"), "{err}");
    let err = parse("[[engine.windows]]\nname = \"7m\"\nsize = \"7m\"\nstep = \"2m\"\n").unwrap_err().to_string();
    assert!(err.contains("engine.windows[0].size") && err.contains("multiple of 2m"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let cfg =
        parse("[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n").unwrap();
    let dump = format!("{:?}", cfg.kafka);
    assert!(!dump.contains("hunter2") && dump.contains("<redacted>") && dump.contains("SASL_SSL"), "{dump}");
}

#[test]
fn confirm_window_must_exist_and_be_longer() {
    let rule = "[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"1h\"\nthreshold = 0.1\n";
    let err = parse(&format!("{rule}confirm_window = \"5m\"\n")).unwrap_err().to_string();
    assert!(err.contains("rules[0].confirm_window") && err.contains("not longer"), "{err}");
    let err = parse(&format!("{rule}confirm_window = \"2h\"\n")).unwrap_err().to_string();
    assert!(err.contains("no window has that name"), "{err}");
    let cfg = parse(&format!("{rule}confirm_window = \"24h\"\n")).expect("valid");
    let confirm = cfg.rate_rules()[0].confirm.clone().expect("multi-window");
    assert_eq!(
        (confirm.window, confirm.threshold),
        (2, 0.1),
        "24h is the third window; threshold defaults to the rule's"
    );
}

#[test]
fn reload_takes_new_rules_and_rejects_bad_files_and_window_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let current = Config::with_defaults();
    std::fs::write(&path, "[[rules]]\nname = \"r\"\nmetric = \"return_rate\"\nwindow = \"1h\"\nthreshold = 0.2\n")
        .unwrap();
    let book = current.reload_rules(&path).expect("valid reload");
    assert_eq!((book.rules[0].name.as_str(), book.rules[0].threshold), ("r", 0.2));
    std::fs::write(&path, "[[rules]]\nname = \"r\"\nmetric = \"return_rate\"\nwindow = \"1h\"\nthreshold = 20\n")
        .unwrap();
    let err = current.reload_rules(&path).unwrap_err().to_string();
    assert!(err.contains("rules[0].threshold"), "{err}");
    std::fs::write(&path, "[[engine.windows]]\nname = \"5m\"\nsize = \"5m\"\nstep = \"1m\"\n").unwrap();
    let err = current.reload_rules(&path).unwrap_err().to_string();
    assert!(err.contains("windows cannot change while running"), "{err}");
}

#[test]
fn every_preset_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/presets");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("config/presets exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!cfg.rules.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 5, "presets: VAMP, ECP, Amazon, Taobao, peak-sale spike");
}

#[test]
fn webhook_url_is_checked_and_secret_redacted() {
    let err = parse("[webhook]\nurl = \"hooks.example.com\"\n").unwrap_err().to_string();
    assert!(err.contains("webhook.url") && err.contains("http(s)"), "{err}");
    let cfg = parse("[webhook]\nurl = \"https://hooks.example.com/x\"\nsecret = \"hunter2\"\n").unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("hunter2") && dump.contains("<redacted>"), "{dump}");
}

fn rule_text(extra: &str) -> String {
    format!("[[rules]]\nname = \"r\"\nmetric = \"refund_rate\"\nwindow = \"1h\"\nthreshold = 0.05\n{extra}")
}

#[test]
fn example_rules_file_is_valid_and_resolves() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules/double11.toml");
    let cfg = Config::with_defaults().with_rules_file(&path).expect("config/rules/double11.toml is valid");
    let book = cfg.rule_book();
    let spike = book.rules.iter().find(|r| r.spike.is_some()).expect("a spike rule");
    let s = spike.spike.as_ref().unwrap();
    assert_eq!(s.baseline.as_ref().map(|(w, n)| (*w, n.as_str())), Some((2, "24h")));
    assert_eq!((s.baseline_ratio, s.category_ratio), (3.0, Some(2.0)));
    assert_eq!(book.calendar.phases().len(), 4);
    // 2026-11-11T00:30:00+08:00 is in the main sale.
    let t = parse_time("2026-11-11T00:30:00+08:00").unwrap();
    assert_eq!(t, 1_794_328_200_000);
    assert_eq!(book.calendar.phase_at(t).map(|p| p.name.as_str()), Some("main_sale"));
    assert_eq!(spike.labels["team"], "after-sales");
}

#[test]
fn rules_file_from_config_is_relative_to_it_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let cfg_path = dir.path().join("peakguard.toml");
    std::fs::write(&cfg_path, "rules_file = \"rules/r.toml\"\n").unwrap();
    std::fs::write(dir.path().join("rules/r.toml"), rule_text("")).unwrap();
    let cfg = Config::load(&cfg_path).expect("valid");
    assert_eq!(cfg.rules.len(), 1);
    assert_eq!(cfg.rules[0].name, "r");
    std::fs::write(dir.path().join("rules/r.toml"), rule_text("baseline_window = \"30d\"\nbaseline_ratio = 0.5\n"))
        .unwrap();
    let err = Config::load(&cfg_path).unwrap_err().to_string();
    assert!(err.starts_with("in rules file") && err.contains("r.toml"), "{err}");
    assert!(err.contains("rules[0].baseline_ratio") && err.contains("at least 1"), "{err}");
    // Rules in both places is ambiguous.
    std::fs::write(&cfg_path, format!("rules_file = \"rules/r.toml\"\n{}", rule_text(""))).unwrap();
    let err = Config::load(&cfg_path).unwrap_err().to_string();
    assert!(err.contains("`rules_file`") && err.contains("one place"), "{err}");
}

#[test]
fn spike_rule_checks() {
    let err = parse(&rule_text("baseline_ratio = 3.0\n")).unwrap_err().to_string();
    assert!(err.contains("rules[0].baseline_ratio") && err.contains("baseline_window"), "{err}");
    // A 1h baseline (5m step) cannot sit under a 1h rule window.
    let err = parse(&rule_text("baseline_window = \"1h\"\n")).unwrap_err().to_string();
    assert!(err.contains("rules[0].baseline_window") && err.contains("step"), "{err}");
    let err = parse(&rule_text("baseline_window = \"7d\"\n")).unwrap_err().to_string();
    assert!(err.contains("no window has that name"), "{err}");
    let err = parse(&rule_text("scope = \"platform\"\ncategory_ratio = 2.0\n")).unwrap_err().to_string();
    assert!(err.contains("rules[0].category_ratio") && err.contains("shop"), "{err}");
    let err = parse(&rule_text("baseline_window = \"1h\"\nbaseline_phase = \"pre_sale\"\n")).unwrap_err().to_string();
    assert!(err.contains("rules[0].baseline_phase") && err.contains("no campaign phase"), "{err}");
    let err = parse(&rule_text("baseline_phase = \"pre_sale\"\n")).unwrap_err().to_string();
    assert!(err.contains("without baseline_window"), "{err}");
    let cfg = parse(&rule_text("baseline_window = \"24h\"\n")).expect("valid spike rule");
    let spike = cfg.rate_rules()[0].spike.clone().expect("spike");
    assert_eq!(spike.baseline_ratio, DEFAULT_BASELINE_RATIO);
}

#[test]
fn phase_checks() {
    let phase = |body: &str| format!("{}[[phases]]\nname = \"p\"\n{body}", rule_text(""));
    let ok = "start = \"2026-11-11T00:00:00+08:00\"\nend = \"2026-11-12T00:00:00+08:00\"\n";
    let cfg = parse(&phase(&format!("{ok}mute = [\"r\"]\n"))).expect("valid phase");
    assert_eq!(cfg.rule_book().calendar.phases()[0].start, 1_794_326_400_000);
    let err = parse(&phase("start = \"2026-11-11 00:00\"\nend = \"2026-11-12T00:00:00Z\"\n")).unwrap_err();
    assert!(err.to_string().contains("phases[0].start") && err.to_string().contains("RFC 3339"), "{err}");
    let err = parse(&phase("start = \"2026-11-12T00:00:00Z\"\nend = \"2026-11-11T00:00:00Z\"\n")).unwrap_err();
    assert!(err.to_string().contains("phases[0].end"), "{err}");
    let err = parse(&phase(&format!("{ok}mute = [\"nope\"]\n"))).unwrap_err().to_string();
    assert!(err.contains("phases[0].mute[0]") && err.contains("\"nope\""), "{err}");
    let err = parse(&phase(&format!("{ok}thresholds = {{ r = 5 }}\n"))).unwrap_err().to_string();
    assert!(err.contains("phases[0].thresholds.r") && err.contains("0.10"), "{err}");
    let two = format!("{}[[phases]]\nname = \"q\"\n{ok}", phase(ok));
    let err = parse(&two).unwrap_err().to_string();
    assert!(err.contains("phases[1].start") && err.contains("overlaps phase `p`"), "{err}");
}

#[test]
fn schema_registry_settings_are_checked_and_the_password_redacted() {
    let err = parse("[schemas]\nregistry_url = \"schema-registry:8081\"\n").unwrap_err().to_string();
    assert!(err.contains("schemas.registry_url") && err.contains("http://schema-registry:8081"), "{err}");
    let err = parse("[schemas]\nregistry_url = \"http://sr:8081\"\nregistry_attempts = 0\n").unwrap_err().to_string();
    assert!(err.contains("schemas.registry_attempts"), "{err}");
    let cfg = parse("[schemas]\nregistry_url = \"https://sr.example.com\"\nregistry_username = \"key\"\nregistry_password = \"hunter2\"\n").unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("hunter2") && dump.contains("<redacted>"), "{dump}");
    let r = cfg.schemas.registry().expect("registry configured");
    assert_eq!((r.url.as_str(), r.password.as_str(), r.attempts), ("https://sr.example.com", "hunter2", 5));
    assert!(parse("").unwrap().schemas.registry().is_none());
}

#[test]
fn repartition_routes_are_checked() {
    let base = "[kafka]\ntopics = [\"orders\", \"refunds\"]\n";
    let ok =
        parse(&format!("{base}[[kafka.repartition]]\nsource = \"refunds-by-order\"\ntarget = \"refunds\"\n")).unwrap();
    assert_eq!(ok.kafka.repartition[0].partitioner, "murmur2_random");
    let err =
        parse(&format!("{base}[[kafka.repartition]]\nsource = \"x\"\ntarget = \"nope\"\n")).unwrap_err().to_string();
    assert!(err.contains("kafka.repartition[0].target") && err.contains("kafka.topics"), "{err}");
    let err = parse(&format!("{base}[[kafka.repartition]]\nsource = \"orders\"\ntarget = \"refunds\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kafka.repartition[0].source"), "{err}");
    let err = parse(&format!(
        "{base}[[kafka.repartition]]\nsource = \"x\"\ntarget = \"refunds\"\npartitioner = \"random\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("partitioner") && err.contains("murmur2_random"), "{err}");
}

#[test]
fn expected_shops_sizes_the_engine_and_is_bounded() {
    let cfg = parse("[engine]\nexpected_shops = 1500000\n").expect("a sized engine parses");
    assert_eq!(cfg.engine_config().expected_shops, 1_500_000);
    assert_eq!(parse("").expect("defaults").engine_config().expected_shops, 0);
    let err = parse("[engine]\nexpected_shops = 900000000\n").unwrap_err().to_string();
    assert!(
        err.contains("engine.expected_shops") && err.contains("900000000") && err.contains("e.g. 1000000"),
        "{err}"
    );
}
