//! Decoding of every schema, schema evolution through the schema store, and
//! bad input: every malformed record is an error with a reason, never a panic.

use std::path::Path;

use apache_avro::types::Value;
use apache_avro::Schema;
use peakguard::codec::{self, wire, DecodeError, SchemaStore};
use peakguard::event::*;
use proptest::prelude::*;

const T: Millis = 1_794_326_400_000;

fn header(body: EventBody) -> Event {
    Event {
        event_id: "ev-1".into(),
        shop_id: "shop-1".into(),
        order_id: "o-1".into(),
        sub_order_id: Some("o-1-2".into()),
        event_time: T,
        category: "apparel".into(),
        body,
    }
}

fn samples() -> Vec<Event> {
    let m = Money::new(12_345, "CNY").unwrap();
    vec![
        header(EventBody::Order { step: OrderStep::Cancelled, cancelled_by: Some(CancelledBy::Seller), money: m }),
        header(EventBody::Order { step: OrderStep::Paid, cancelled_by: None, money: m }),
        header(EventBody::Shipment { step: ShipmentStep::Dispatched, promised_by: Some(T + 3_600_000) }),
        header(EventBody::Shipment { step: ShipmentStep::Lost, promised_by: None }),
        header(EventBody::Return {
            step: ReturnStep::ReceivedBySeller,
            reason: Reason::WrongSizeColour,
            order_paid_at: T - 1,
        }),
        header(EventBody::Refund {
            step: RefundStep::Completed,
            refund_type: RefundType::ReturnAndRefund,
            stage: RefundStage::AfterDelivery,
            reason: Reason::QualityDamaged,
            money: m,
            order_paid_at: T - 86_400_000,
            requested_at: Some(T - 3_600_000),
        }),
        header(EventBody::Dispute {
            step: DisputeStep::RuledForBuyer,
            reason: Reason::NotReceived,
            money: m,
            order_paid_at: T - 5,
        }),
        header(EventBody::Chargeback {
            step: ChargebackStep::Received,
            category: ChargebackCategory::Fraud,
            reason: Reason::UnauthorisedCardUse,
            money: Money::new(1, "USD").unwrap(),
            order_paid_at: T - 7,
        }),
    ]
}

#[test]
fn every_kind_round_trips() {
    let store = SchemaStore::embedded();
    for e in samples() {
        let bytes = codec::encode(&store, &e).expect("encode");
        let (id, _) = wire::split(&bytes).unwrap();
        assert_eq!(id, store.reader_id(e.kind()));
        assert_eq!(store.kind_of(id), Some(e.kind()));
        assert_eq!(codec::decode(&store, &bytes).expect("decode"), e);
    }
}

#[test]
fn shipped_schema_dir_matches_embedded_copy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let from_disk = SchemaStore::load(&dir).expect("schemas/ loads");
    let embedded = SchemaStore::embedded();
    for e in samples() {
        let bytes = codec::encode(&embedded, &e).unwrap();
        assert_eq!(codec::decode(&from_disk, &bytes).unwrap(), e);
    }
}

/// A schema dir with the shipped schemas plus an older and a newer writer of
/// the refund schema.
fn evolved_store(dir: &Path) -> SchemaStore {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for f in ["order", "shipment", "return", "refund", "dispute", "chargeback"] {
        std::fs::copy(src.join(format!("{f}.avsc")), dir.join(format!("{f}.avsc"))).unwrap();
    }
    let refund: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("refund.avsc")).unwrap()).unwrap();
    // v0: no sub_order_id and no requested_at (both added later with defaults).
    let mut v0 = refund.clone();
    v0["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "sub_order_id" && f["name"] != "requested_at");
    std::fs::write(dir.join("refund.v0.avsc"), v0.to_string()).unwrap();
    // v9: a producer added a reason symbol this build does not know.
    let mut v9 = refund;
    for f in v9["fields"].as_array_mut().unwrap() {
        if f["name"] == "reason" {
            f["type"]["symbols"].as_array_mut().unwrap().insert(0, "COUNTERFEIT".into());
        }
    }
    std::fs::write(dir.join("refund.v9.avsc"), v9.to_string()).unwrap();
    let ids = std::fs::read_to_string(src.join("ids.toml")).unwrap()
        + "\n[[schema]]\nid = 100\nfile = \"refund.v0.avsc\"\n\n[[schema]]\nid = 109\nfile = \"refund.v9.avsc\"\n";
    std::fs::write(dir.join("ids.toml"), ids).unwrap();
    SchemaStore::load(dir).expect("evolved store loads")
}

fn framed(id: u32, schema: &Schema, value: Value) -> Vec<u8> {
    let mut out = Vec::new();
    wire::write_header(&mut out, id);
    out.extend(apache_avro::to_avro_datum(schema, value).expect("valid datum"));
    out
}

fn refund_fields(reason: (u32, &str), with_new_fields: bool) -> Value {
    let mut f = vec![
        ("event_id".to_string(), Value::String("e".into())),
        ("shop_id".to_string(), Value::String("s".into())),
        ("order_id".to_string(), Value::String("o".into())),
    ];
    if with_new_fields {
        f.push(("sub_order_id".to_string(), Value::Union(0, Box::new(Value::Null))));
    }
    f.extend([
        ("event_time".to_string(), Value::TimestampMillis(T)),
        ("category".to_string(), Value::String("home".into())),
        ("type".to_string(), Value::Enum(0, "REQUESTED".into())),
        ("refund_type".to_string(), Value::Enum(0, "REFUND_ONLY".into())),
        ("stage".to_string(), Value::Enum(0, "PRE_SHIPMENT".into())),
        ("reason".to_string(), Value::Enum(reason.0, reason.1.into())),
        ("amount_minor".to_string(), Value::Long(100)),
        ("currency".to_string(), Value::String("EUR".into())),
        ("order_paid_at".to_string(), Value::TimestampMillis(T - 1)),
    ]);
    if with_new_fields {
        f.push(("requested_at".to_string(), Value::Union(1, Box::new(Value::TimestampMillis(T - 2)))));
    }
    Value::Record(f)
}

#[test]
fn older_and_newer_writer_schemas_decode() {
    let dir = tempfile::tempdir().unwrap();
    let store = evolved_store(dir.path());
    let v0 = Schema::parse_str(&std::fs::read_to_string(dir.path().join("refund.v0.avsc")).unwrap()).unwrap();
    let old =
        codec::decode(&store, &framed(100, &v0, refund_fields((1, "QUALITY_DAMAGED"), false))).expect("v0 decodes");
    assert_eq!(old.sub_order_id, None);
    assert!(matches!(old.body, EventBody::Refund { reason: Reason::QualityDamaged, requested_at: None, .. }));

    let v9 = Schema::parse_str(&std::fs::read_to_string(dir.path().join("refund.v9.avsc")).unwrap()).unwrap();
    let new = codec::decode(&store, &framed(109, &v9, refund_fields((0, "COUNTERFEIT"), true))).expect("v9 decodes");
    assert!(matches!(new.body, EventBody::Refund { reason: Reason::Other, .. }), "unknown symbol -> enum default");
    assert!(matches!(new.body, EventBody::Refund { requested_at: Some(t), .. } if t == T - 2));
}

#[test]
fn bad_records_are_errors_with_reasons() {
    let store = SchemaStore::embedded();
    let good = codec::encode(&store, &samples()[1]).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (vec![0, 0, 0], "truncated"),
        (b"{\"order\":1}".to_vec(), "bad_magic"),
        ([&[0u8, 0, 0, 3, 231][..], &good[5..]].concat(), "unknown_schema_id"),
        (good[..good.len() - 4].to_vec(), "avro_body"),
        ([&good[..], b"extra"].concat(), "trailing_bytes"),
    ];
    for (bytes, reason) in cases {
        let err = codec::decode(&store, &bytes).expect_err(reason);
        assert_eq!(err.reason(), reason, "{err}");
        assert!(DecodeError::REASONS.contains(&err.reason()));
    }
}

#[test]
fn invalid_values_are_rejected() {
    let store = SchemaStore::embedded();
    let mut e = samples()[1].clone();
    e.shop_id = " ".into();
    let err = codec::decode(&store, &store.encode(&e).unwrap()).unwrap_err();
    assert_eq!(err.reason(), "missing_shop_id");

    let mut e = samples()[1].clone();
    e.event_time = 0;
    let err = codec::decode(&store, &store.encode(&e).unwrap()).unwrap_err();
    assert_eq!(err.reason(), "invalid_timestamp");
    assert!(err.to_string().contains("event_time"), "{err}");

    let mut e = samples()[1].clone();
    e.body = EventBody::Order {
        step: OrderStep::Paid,
        cancelled_by: None,
        money: Money { amount_minor: -5, currency: *b"CNY" },
    };
    let err = codec::decode(&store, &store.encode(&e).unwrap()).unwrap_err();
    assert_eq!(err.reason(), "invalid_amount");

    let mut e = samples()[1].clone();
    e.body = EventBody::Order {
        step: OrderStep::Paid,
        cancelled_by: None,
        money: Money { amount_minor: 5, currency: *b"cny" },
    };
    let err = codec::decode(&store, &store.encode(&e).unwrap()).unwrap_err();
    assert_eq!(err.reason(), "invalid_amount");
}

/// What the hot path reads ahead of the decode (`peek_ids`, and the spans
/// the worker keeps from one record to the next) are the decoded event's
/// own ids, for every event kind.
#[test]
fn peeked_ids_and_their_spans_are_the_events_ids() {
    let store = SchemaStore::embedded();
    for e in samples() {
        let bytes = codec::encode(&store, &e).unwrap();
        let (event_id, shop_id) = codec::peek_ids(&store, &bytes).expect("the embedded schemas read ahead");
        assert_eq!((event_id, shop_id), (e.event_id.as_bytes(), e.shop_id.as_bytes()));
        let spans = codec::peek_id_spans(&store, &bytes).expect("spans");
        assert_eq!(&bytes[spans.event_id], e.event_id.as_bytes());
        assert_eq!(&bytes[spans.shop_id], e.shop_id.as_bytes());
    }
    assert_eq!(codec::peek_id_spans(&store, b"\0\0\0"), None, "no framing, no spans");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bodies behind every known schema id: an error or an event, never a panic.
    #[test]
    fn random_bodies_never_panic(id in 1u32..=6, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let store = SchemaStore::embedded();
        let mut bytes = Vec::new();
        wire::write_header(&mut bytes, id);
        bytes.extend(body);
        if let Err(e) = codec::decode(&store, &bytes) {
            prop_assert!(DecodeError::REASONS.contains(&e.reason()));
        }
    }

    /// Truncating or flipping a byte of a valid record: never a panic.
    #[test]
    fn mutated_records_never_panic(which in 0usize..8, cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let store = SchemaStore::embedded();
        let mut bytes = codec::encode(&store, &samples()[which]).unwrap();
        let i = flip.index(bytes.len());
        bytes[i] ^= 1 << bit;
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = codec::decode(&store, &bytes);
    }
}

/// The direct reader (compiled per writer schema) and apache-avro's generic
/// path on a well-formed record: the same event, or an error with the same reason.
fn same_outcome(store: &SchemaStore, bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok((id, body)) = wire::split(bytes) else { return Ok(()) };
    let direct = store.decode_body(id, body);
    let generic = store.decode_body_generic(id, body);
    match (&direct, &generic) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(a), Err(b)) => prop_assert_eq!(a.reason(), b.reason(), "{} vs {}", a, b),
        _ => prop_assert!(false, "direct {:?} vs generic {:?}", direct, generic),
    }
    Ok(())
}

/// On damaged bytes: the direct reader never accepts what apache-avro
/// rejects, nor returns another event. (It may reject more: apache-avro
/// reads a string, boolean or union cut off by the end of the record as null.)
fn never_looser(store: &SchemaStore, bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok((id, body)) = wire::split(bytes) else { return Ok(()) };
    if let Ok(direct) = store.decode_body(id, body) {
        prop_assert_eq!(Ok(direct), store.decode_body_generic(id, body));
    }
    Ok(())
}

fn any_event() -> impl Strategy<Value = Event> {
    let text = prop_oneof!["[a-z0-9-]{1,12}", "[ -~]{0,6}", "\\PC{0,4}"];
    let money = (0i64..10_000_000_000, prop_oneof![Just("CNY"), Just("USD"), Just("EUR")])
        .prop_map(|(a, c)| Money::new(a, c).unwrap());
    let t = T - 400 * 86_400_000..T + 86_400_000;
    let body = (0usize..6, any::<prop::sample::Index>(), money, t.clone(), proptest::option::of(t.clone()));
    (text.clone(), text.clone(), text.clone(), proptest::option::of(text.clone()), t, text, body).prop_map(
        |(event_id, shop_id, order_id, sub_order_id, event_time, category, (kind, pick, money, paid, opt_t))| {
            let reason = Reason::ALL[pick.index(Reason::ALL.len())];
            let body = match kind {
                0 => EventBody::Order {
                    step: OrderStep::ALL[pick.index(OrderStep::ALL.len())],
                    cancelled_by: opt_t.map(|_| CancelledBy::ALL[pick.index(CancelledBy::ALL.len())]),
                    money,
                },
                1 => EventBody::Shipment {
                    step: ShipmentStep::ALL[pick.index(ShipmentStep::ALL.len())],
                    promised_by: opt_t,
                },
                2 => EventBody::Return {
                    step: ReturnStep::ALL[pick.index(ReturnStep::ALL.len())],
                    reason,
                    order_paid_at: paid,
                },
                3 => EventBody::Refund {
                    step: RefundStep::ALL[pick.index(RefundStep::ALL.len())],
                    refund_type: RefundType::ALL[pick.index(RefundType::ALL.len())],
                    stage: RefundStage::ALL[pick.index(RefundStage::ALL.len())],
                    reason,
                    money,
                    order_paid_at: paid,
                    requested_at: opt_t,
                },
                4 => EventBody::Dispute {
                    step: DisputeStep::ALL[pick.index(DisputeStep::ALL.len())],
                    reason,
                    money,
                    order_paid_at: paid,
                },
                _ => EventBody::Chargeback {
                    step: ChargebackStep::ALL[pick.index(ChargebackStep::ALL.len())],
                    category: ChargebackCategory::ALL[pick.index(ChargebackCategory::ALL.len())],
                    reason,
                    money,
                    order_paid_at: paid,
                },
            };
            Event { event_id, shop_id, order_id, sub_order_id, event_time, category, body }
        },
    )
}

#[test]
fn every_shipped_and_evolved_schema_takes_the_direct_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = evolved_store(dir.path());
    for id in [1, 2, 3, 4, 5, 6, 100, 109] {
        assert!(store.is_direct(id), "schema {id} fell back to the generic path");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random events of every kind: the direct reader gives back the event,
    /// exactly as apache-avro's path does (or the same error, e.g. an empty id).
    #[test]
    fn direct_reader_equals_apache_avro_on_random_events(e in any_event()) {
        let store = SchemaStore::embedded();
        let bytes = codec::encode(&store, &e).unwrap();
        same_outcome(&store, &bytes)?;
        if let Ok(decoded) = codec::decode(&store, &bytes) {
            prop_assert_eq!(decoded, e);
        }
    }

    /// Decoding a sequence of random events into one reused buffer (as the
    /// worker does) gives each event exactly as decoding it alone does:
    /// nothing of the previous record leaks through (an optional sub-order
    /// id, a longer string, another kind's body).
    #[test]
    fn decoding_into_a_reused_buffer_equals_decoding_alone(events in proptest::collection::vec(any_event(), 1..12)) {
        let store = SchemaStore::embedded();
        let mut buf = Event::buffer();
        for e in &events {
            let bytes = codec::encode(&store, e).unwrap();
            match (codec::decode(&store, &bytes), codec::decode_into(&store, &bytes, &mut buf)) {
                (Ok(alone), Ok(())) => prop_assert_eq!(&buf, &alone),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "alone {:?} vs into a buffer {:?}", a, b),
            }
        }
    }

    /// Older and newer writer schemas (resolution: defaults, unknown symbols).
    #[test]
    fn direct_reader_equals_apache_avro_across_schema_versions(
        reason in 0u32..13, new_fields in any::<bool>(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = evolved_store(dir.path());
        let (id, file) = if new_fields { (109, "refund.v9.avsc") } else { (100, "refund.v0.avsc") };
        let schema = Schema::parse_str(&std::fs::read_to_string(dir.path().join(file)).unwrap()).unwrap();
        let names: Vec<String> = match &schema {
            Schema::Record(r) => match &r.fields.iter().find(|f| f.name == "reason").unwrap().schema {
                Schema::Enum(e) => e.symbols.clone(),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        let i = (reason as usize) % names.len();
        let mut bytes = framed(id, &schema, refund_fields((i as u32, &names[i]), new_fields));
        same_outcome(&store, &bytes)?;
        // And the same record damaged.
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        bytes.truncate(cut.index(bytes.len() + 1));
        never_looser(&store, &bytes)?;
    }

    /// Random and mutated bytes: never looser than apache-avro.
    #[test]
    fn direct_reader_equals_apache_avro_on_bad_bytes(
        id in 1u32..=6, body in proptest::collection::vec(any::<u8>(), 0..120),
        which in 0usize..8, flip in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>(),
    ) {
        let store = SchemaStore::embedded();
        let mut bytes = Vec::new();
        wire::write_header(&mut bytes, id);
        bytes.extend(body);
        never_looser(&store, &bytes)?;
        let mut bytes = codec::encode(&store, &samples()[which]).unwrap();
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        never_looser(&store, &bytes)?;
        // Flipped, then also truncated.
        bytes.truncate(cut.index(bytes.len() + 1));
        never_looser(&store, &bytes)?;
    }
}

/// A string that is not UTF-8 is an error in the direct reader (whose
/// ASCII fast path must not wave it through) as in apache-avro's; one that
/// is UTF-8 but not ASCII decodes the same in both.
#[test]
fn strings_must_be_utf8_ascii_or_not() {
    let store = SchemaStore::embedded();
    for (replacement, valid) in [(&[0xFFu8][..], false), (&[0xC3, 0x28][..], false), ("é".as_bytes(), true)] {
        let mut e = samples()[1].clone();
        e.shop_id = "shop-xx".into();
        let bytes = codec::encode(&store, &e).unwrap();
        let at = bytes.windows(7).position(|w| w == b"shop-xx").expect("the id is in the record");
        // Same length, so the string's length prefix still holds.
        let mut damaged = bytes.clone();
        damaged[at + 5..at + 7].copy_from_slice(&[replacement, &b"xx"[..]].concat()[..2]);
        let (id, body) = wire::split(&damaged).unwrap();
        let (direct, generic) = (store.decode_body(id, body), store.decode_body_generic(id, body));
        assert_eq!(direct.is_ok(), valid, "{replacement:?}: {direct:?}");
        assert_eq!(generic.is_ok(), valid, "{replacement:?}: {generic:?}");
        if valid {
            assert_eq!(direct.unwrap().shop_id, "shop-é");
        }
    }
}
