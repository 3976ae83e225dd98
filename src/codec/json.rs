//! The JSON mapping of events, for replay files (NDJSON: one event per line)
//! and hand-written test data. Field names are those of the Avro schemas; a
//! `kind` field names the schema (`order`, `shipment`, `return`, `refund`,
//! `dispute`, `chargeback`); enum fields take their Avro symbols; times are
//! epoch milliseconds or RFC 3339 strings in UTC (`"2026-11-10T16:00:00Z"`).
//! Unlike Avro records, a JSON line is checked strictly: an unknown field or
//! enum symbol is an error, because in a hand-edited file it is a typo.

use serde::{Deserialize, Serialize};

use super::avro::{MAX_PLAUSIBLE_MS, MIN_PLAUSIBLE_MS};
use super::DecodeError;
use crate::event::*;

#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Time {
    Millis(i64),
    Text(String),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    kind: String,
    event_id: String,
    shop_id: String,
    order_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub_order_id: Option<String>,
    event_time: Time,
    category: String,
    #[serde(rename = "type")]
    step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancelled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promised_by: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refund_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chargeback_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order_paid_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_at: Option<Time>,
}

fn invalid(field: &'static str, value: impl std::fmt::Display, why: &'static str) -> DecodeError {
    DecodeError::InvalidField { field, value: value.to_string(), why }
}

fn time(field: &'static str, t: &Time) -> Result<Millis, DecodeError> {
    let ms = match t {
        Time::Millis(ms) => *ms,
        Time::Text(s) => humantime::parse_rfc3339(s)
            .map_err(|_| {
                invalid(
                    field,
                    format!("{s:?}"),
                    "not epoch milliseconds or an RFC 3339 UTC time like 2026-11-10T16:00:00Z",
                )
            })?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|_| invalid(field, format!("{s:?}"), "before 1970"))?,
    };
    if !(MIN_PLAUSIBLE_MS..MAX_PLAUSIBLE_MS).contains(&ms) {
        return Err(invalid(field, ms, "not between year 2000 and 2100"));
    }
    Ok(ms)
}

fn required<'a, T>(field: &'static str, v: &'a Option<T>) -> Result<&'a T, DecodeError> {
    v.as_ref().ok_or(DecodeError::MissingField { field })
}

fn symbol<T>(field: &'static str, v: &str, parse: fn(&str) -> Option<T>) -> Result<T, DecodeError> {
    parse(v).ok_or_else(|| invalid(field, format!("{v:?}"), "not a symbol of the schema's enum"))
}

fn nonempty(field: &'static str, v: &str) -> Result<String, DecodeError> {
    if v.trim().is_empty() {
        return Err(DecodeError::EmptyField { field });
    }
    Ok(v.to_string())
}

impl JsonEvent {
    fn money(&self) -> Result<Money, DecodeError> {
        let amount = *required("amount_minor", &self.amount_minor)?;
        let currency = required("currency", &self.currency)?;
        if amount < 0 {
            return Err(invalid("amount_minor", amount, "must not be negative"));
        }
        Money::new(amount, currency).ok_or_else(|| {
            invalid("currency", format!("{currency:?}"), "must be an ISO 4217 code of three upper-case letters")
        })
    }

    fn reason(&self) -> Result<Reason, DecodeError> {
        symbol("reason", required("reason", &self.reason)?, Reason::from_symbol)
    }

    fn paid_at(&self) -> Result<Millis, DecodeError> {
        time("order_paid_at", required("order_paid_at", &self.order_paid_at)?)
    }

    fn into_event(self) -> Result<Event, DecodeError> {
        let step = self.step.as_str();
        let body = match self.kind.as_str() {
            "order" => EventBody::Order {
                step: symbol("type", step, OrderStep::from_symbol)?,
                cancelled_by: match &self.cancelled_by {
                    None => None,
                    Some(c) => Some(symbol("cancelled_by", c, CancelledBy::from_symbol)?),
                },
                money: self.money()?,
            },
            "shipment" => EventBody::Shipment {
                step: symbol("type", step, ShipmentStep::from_symbol)?,
                promised_by: self.promised_by.as_ref().map(|t| time("promised_by", t)).transpose()?,
            },
            "return" => EventBody::Return {
                step: symbol("type", step, ReturnStep::from_symbol)?,
                reason: self.reason()?,
                order_paid_at: self.paid_at()?,
            },
            "refund" => EventBody::Refund {
                step: symbol("type", step, RefundStep::from_symbol)?,
                refund_type: symbol(
                    "refund_type",
                    required("refund_type", &self.refund_type)?,
                    RefundType::from_symbol,
                )?,
                stage: symbol("stage", required("stage", &self.stage)?, RefundStage::from_symbol)?,
                reason: self.reason()?,
                money: self.money()?,
                order_paid_at: self.paid_at()?,
                requested_at: self.requested_at.as_ref().map(|t| time("requested_at", t)).transpose()?,
            },
            "dispute" => EventBody::Dispute {
                step: symbol("type", step, DisputeStep::from_symbol)?,
                reason: self.reason()?,
                money: self.money()?,
                order_paid_at: self.paid_at()?,
            },
            "chargeback" => EventBody::Chargeback {
                step: symbol("type", step, ChargebackStep::from_symbol)?,
                category: symbol(
                    "chargeback_category",
                    required("chargeback_category", &self.chargeback_category)?,
                    ChargebackCategory::from_symbol,
                )?,
                reason: self.reason()?,
                money: self.money()?,
                order_paid_at: self.paid_at()?,
            },
            other => {
                return Err(invalid(
                    "kind",
                    format!("{other:?}"),
                    "not order, shipment, return, refund, dispute or chargeback",
                ))
            }
        };
        Ok(Event {
            event_id: nonempty("event_id", &self.event_id)?,
            shop_id: nonempty("shop_id", &self.shop_id)?,
            order_id: nonempty("order_id", &self.order_id)?,
            sub_order_id: self.sub_order_id,
            event_time: time("event_time", &self.event_time)?,
            category: self.category,
            body,
        })
    }
}

/// Parses one JSON event (one NDJSON line).
pub fn from_json(line: &str) -> Result<Event, DecodeError> {
    let raw: JsonEvent = serde_json::from_str(line).map_err(|e| DecodeError::Json { message: e.to_string() })?;
    raw.into_event()
}

/// The JSON form of an event (times as epoch milliseconds), one line.
pub fn to_json(e: &Event) -> String {
    let mut j = JsonEvent {
        kind: e.kind().symbol().to_string(),
        event_id: e.event_id.clone(),
        shop_id: e.shop_id.clone(),
        order_id: e.order_id.clone(),
        sub_order_id: e.sub_order_id.clone(),
        event_time: Time::Millis(e.event_time),
        category: e.category.clone(),
        step: String::new(),
        cancelled_by: None,
        promised_by: None,
        refund_type: None,
        stage: None,
        chargeback_category: None,
        reason: None,
        amount_minor: None,
        currency: None,
        order_paid_at: None,
        requested_at: None,
    };
    let money = |j: &mut JsonEvent, m: &Money| {
        j.amount_minor = Some(m.amount_minor);
        j.currency = Some(m.currency_str().to_string());
    };
    match &e.body {
        EventBody::Order { step, cancelled_by, money: m } => {
            j.step = step.symbol().into();
            j.cancelled_by = cancelled_by.map(|c| c.symbol().into());
            money(&mut j, m);
        }
        EventBody::Shipment { step, promised_by } => {
            j.step = step.symbol().into();
            j.promised_by = promised_by.map(Time::Millis);
        }
        EventBody::Return { step, reason, order_paid_at } => {
            j.step = step.symbol().into();
            j.reason = Some(reason.symbol().into());
            j.order_paid_at = Some(Time::Millis(*order_paid_at));
        }
        EventBody::Refund { step, refund_type, stage, reason, money: m, order_paid_at, requested_at } => {
            j.step = step.symbol().into();
            j.refund_type = Some(refund_type.symbol().into());
            j.stage = Some(stage.symbol().into());
            j.reason = Some(reason.symbol().into());
            money(&mut j, m);
            j.order_paid_at = Some(Time::Millis(*order_paid_at));
            j.requested_at = requested_at.map(Time::Millis);
        }
        EventBody::Dispute { step, reason, money: m, order_paid_at } => {
            j.step = step.symbol().into();
            j.reason = Some(reason.symbol().into());
            money(&mut j, m);
            j.order_paid_at = Some(Time::Millis(*order_paid_at));
        }
        EventBody::Chargeback { step, category, reason, money: m, order_paid_at } => {
            j.step = step.symbol().into();
            j.chargeback_category = Some(category.symbol().into());
            j.reason = Some(reason.symbol().into());
            money(&mut j, m);
            j.order_paid_at = Some(Time::Millis(*order_paid_at));
        }
    }
    serde_json::to_string(&j).unwrap_or_default()
}
