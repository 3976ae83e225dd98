//! Replay of NDJSON files: the JSON mapping round-trips, bad lines are counted
//! with reasons and line numbers without stopping the replay, and a generated
//! sale with an injected spike replays to exactly that shop's alert.

use std::io::Cursor;

use peakguard::codec::json::{from_json, to_json};
use peakguard::config::Config;
use peakguard::event::*;
use peakguard::generator::{Generator, GeneratorConfig, Spike};
use peakguard::rules::AlertStatus;
use peakguard::source::replay::replay;

fn sale(minutes: i64) -> (Vec<Event>, String) {
    let mut g = Generator::new(GeneratorConfig {
        shops: 2_000,
        duration_ms: minutes * 60_000,
        base_orders_per_sec: 15.0,
        spike: Some(Spike { shop_rank: 9, starts_after_ms: 25 * 60_000, refund_rate: 0.4 }),
        ..GeneratorConfig::default()
    });
    let mut events = Vec::new();
    while g.next_second(&mut events) {}
    (events, g.spike_shop().unwrap())
}

#[test]
fn json_mapping_round_trips() {
    let (events, _) = sale(10);
    let mut kinds = std::collections::HashSet::new();
    for e in &events {
        kinds.insert(e.kind());
        assert_eq!(&from_json(&to_json(e)).expect("parses"), e);
    }
    assert!(kinds.len() >= 5, "the sample covers most kinds: {kinds:?}");
}

#[test]
fn rfc3339_times_and_optional_fields() {
    let line = r#"{"kind":"refund","event_id":"e1","shop_id":"s","order_id":"o","event_time":"2026-11-10T16:00:00Z",
        "category":"toys","type":"REQUESTED","refund_type":"REFUND_ONLY","stage":"PRE_SHIPMENT",
        "reason":"NOT_AS_DESCRIBED","amount_minor":100,"currency":"CNY","order_paid_at":1794326000000}"#;
    let e = from_json(&line.replace('\n', " ")).expect("valid line");
    assert_eq!(e.event_time, 1_794_326_400_000);
    assert!(matches!(e.body, EventBody::Refund { reason: Reason::NotAsDescribed, requested_at: None, .. }));
}

#[test]
fn bad_lines_are_counted_with_reasons_and_replay_goes_on() {
    let good = r#"{"kind":"order","event_id":"e1","shop_id":"s","order_id":"o","event_time":1794326400000,"category":"toys","type":"PAID","amount_minor":100,"currency":"CNY"}"#;
    let input = [
        "# a comment",
        good,
        "",
        "not json",
        &good.replace("\"PAID\"", "\"PAYED\""),
        &good.replace("\"kind\":\"order\"", "\"kind\":\"orders\""),
        &good.replace("\"category\"", "\"categroy\""),
        &good.replace("\"CNY\"", "\"yuan\""),
        &good.replace("\"shop_id\":\"s\"", "\"shop_id\":\"\""),
        &good.replace("e1", "e2"),
    ]
    .join("\n");
    let r = replay(Cursor::new(input), &Config::with_defaults(), 1).expect("replays");
    assert_eq!(r.lines, 10);
    assert_eq!(r.events, 2);
    assert_eq!(r.stats.folded, 2);
    let total: u64 = r.errors.values().sum();
    assert_eq!(total, 6, "{:?}", r.errors);
    assert_eq!(r.errors.get("bad_json"), Some(&2), "not JSON, unknown field: {:?}", r.errors);
    assert_eq!(r.errors.get("invalid_field"), Some(&2), "PAYED, orders: {:?}", r.errors);
    assert_eq!(r.errors.get("invalid_amount"), Some(&1));
    assert_eq!(r.errors.get("missing_shop_id"), Some(&1));
    assert_eq!(r.first_errors[0].0, 4, "line numbers are 1-based and count every line");
    assert!(r.first_errors[1].1.contains("PAYED"), "{:?}", r.first_errors);
}

#[test]
fn replayed_sale_alerts_on_the_spiking_shop_only() {
    let (events, spike) = sale(40);
    let ndjson: String = events.iter().map(|e| to_json(e) + "\n").collect();
    let r = replay(Cursor::new(ndjson), &Config::with_defaults(), 500).expect("replays");
    assert_eq!(r.events as usize, events.len());
    assert!(r.errors.is_empty());
    let firing: Vec<_> = r.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    assert!(firing.iter().any(|a| a.shop_id == spike), "spike not detected: {firing:#?}");
    assert!(firing.iter().all(|a| a.shop_id == spike), "healthy shop alerted: {firing:#?}");
    // Deterministic: the same file replays to the same timeline.
    let ndjson: String = events.iter().map(|e| to_json(e) + "\n").collect();
    let again = replay(Cursor::new(ndjson), &Config::with_defaults(), 500).expect("replays");
    assert_eq!(again.alerts, r.alerts);
}

/// An Avro object container file whose schema is a union of our order and
/// refund records replays like the NDJSON file.
#[test]
fn avro_container_file_replays() {
    use apache_avro::types::Value;
    use peakguard::codec::avro::event_to_value;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    let union = apache_avro::Schema::parse_str(&format!("[{},{}]", read("order.avsc"), read("refund.avsc"))).unwrap();
    let (events, spike) = sale(40);
    let kept: Vec<&Event> =
        events.iter().filter(|e| matches!(e.kind(), EventKind::Order | EventKind::Refund)).collect();
    let mut writer = apache_avro::Writer::new(&union, Vec::new());
    for e in &kept {
        let index = if e.kind() == EventKind::Order { 0 } else { 1 };
        writer.append(Value::Union(index, Box::new(event_to_value(e)))).expect("valid datum");
    }
    let bytes = writer.into_inner().unwrap();
    let r = replay(Cursor::new(bytes), &Config::with_defaults(), 500).expect("replays");
    assert!(r.errors.is_empty(), "{:?}", r.first_errors);
    assert_eq!(r.events as usize, kept.len());
    let firing: Vec<_> = r.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    assert!(!firing.is_empty() && firing.iter().all(|a| a.shop_id == spike), "{firing:#?}");
}

/// The same sale replayed under a calendar whose phase covers the spike:
/// the rule is muted (counted per rule), nothing fires; shifting the phase
/// end to before the spike brings the page back, tagged with the next phase.
#[test]
fn replay_follows_the_campaign_calendar() {
    let (events, spike) = sale(40);
    let ndjson: String = events.iter().map(|e| to_json(e) + "\n").collect();
    let start = events.iter().map(|e| e.event_time).min().unwrap();
    let iso = |ms: i64| humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64));
    let calendar = |muted_until: i64| {
        let mut cfg = Config::with_defaults();
        cfg.phases = toml::from_str::<peakguard::config::RulesFile>(&format!(
            "[[phases]]\nname = \"deposit\"\nstart = \"{}\"\nend = \"{}\"\nmute = [\"*\"]\n\
             [[phases]]\nname = \"main_sale\"\nstart = \"{}\"\nend = \"{}\"\n",
            iso(start - 60_000),
            iso(muted_until),
            iso(muted_until),
            iso(start + 3_600_000)
        ))
        .unwrap()
        .phases;
        cfg.validate().expect("valid calendar");
        cfg
    };
    let muted = replay(Cursor::new(ndjson.clone()), &calendar(start + 3_000_000), 500).expect("replays");
    assert!(muted.alerts.is_empty(), "{:#?}", muted.alerts);
    assert!(muted.muted["refund_rate_spike"] > 0, "{:?}", muted.muted);
    let open = replay(Cursor::new(ndjson), &calendar(start + 20 * 60_000), 500).expect("replays");
    let firing: Vec<_> = open.alerts.iter().filter(|a| a.status == AlertStatus::Firing).collect();
    assert!(!firing.is_empty() && firing.iter().all(|a| a.shop_id == spike), "{firing:#?}");
    assert_eq!(firing[0].phase.as_deref(), Some("main_sale"));
    assert_eq!(firing[0].annotations["phase"], "main_sale");
}
