//! From decoded record fields to an [`Event`], whatever decoded them: the
//! generic apache-avro `Value` path ([`super::avro`]) and the direct reader
//! ([`super::direct`]) both implement [`FieldSource`] and share
//! [`build_event`], so they validate the same way, in the same order, with
//! the same errors.

use super::DecodeError;
use crate::event::*;

/// Earliest plausible event time: 2000-01-01T00:00:00Z.
pub const MIN_PLAUSIBLE_MS: Millis = 946_684_800_000;
/// Latest plausible event time: 2100-01-01T00:00:00Z.
pub const MAX_PLAUSIBLE_MS: Millis = 4_102_444_800_000;

/// One decoded field, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Raw<'a> {
    Null,
    Str(&'a str),
    Long(i64),
    /// An enum symbol (resolved by name).
    Symbol(&'a str),
    /// Any other Avro type: never what an event field wants.
    Other,
}

/// Named fields of one decoded record.
pub trait FieldSource {
    /// The field, or `None` when the record has no such field.
    fn raw(&self, name: &'static str) -> Option<Raw<'_>>;

    fn get(&self, name: &'static str) -> Result<Raw<'_>, DecodeError> {
        self.raw(name).ok_or(DecodeError::MissingField { field: name })
    }

    fn string(&self, name: &'static str) -> Result<&str, DecodeError> {
        match self.get(name)? {
            Raw::Str(s) => Ok(s),
            _ => Err(DecodeError::MissingField { field: name }),
        }
    }

    fn required_string(&self, name: &'static str) -> Result<&str, DecodeError> {
        let s = self.string(name)?;
        // An id that starts with a visible ASCII character is not blank:
        // that settles nearly every id without `trim`'s char decoding.
        let visible = s.as_bytes().first().is_some_and(|b| b.is_ascii_graphic());
        if !visible && s.trim().is_empty() {
            return Err(DecodeError::EmptyField { field: name });
        }
        Ok(s)
    }

    /// A nullable field; absent counts as null (a writer from before the
    /// field existed, read without schema resolution, e.g. from a container file).
    fn get_opt(&self, name: &'static str) -> Raw<'_> {
        self.raw(name).unwrap_or(Raw::Null)
    }

    fn opt_string(&self, name: &'static str) -> Result<Option<&str>, DecodeError> {
        match self.get_opt(name) {
            Raw::Null => Ok(None),
            Raw::Str(s) => Ok(Some(s)),
            _ => Err(DecodeError::MissingField { field: name }),
        }
    }

    fn long(&self, name: &'static str) -> Result<i64, DecodeError> {
        match self.get(name)? {
            Raw::Long(v) => Ok(v),
            _ => Err(DecodeError::MissingField { field: name }),
        }
    }

    fn time(&self, name: &'static str) -> Result<Millis, DecodeError> {
        check_time(name, self.long(name)?)
    }

    fn opt_time(&self, name: &'static str) -> Result<Option<Millis>, DecodeError> {
        match self.get_opt(name) {
            Raw::Null => Ok(None),
            _ => self.time(name).map(Some),
        }
    }

    fn symbol<T>(&self, name: &'static str, parse: fn(&str) -> Option<T>, fallback: T) -> Result<T, DecodeError> {
        match self.get(name)? {
            // A symbol this build does not know maps to the fallback, as the
            // schema's enum default does for resolved records.
            Raw::Symbol(s) => Ok(parse(s).unwrap_or(fallback)),
            _ => Err(DecodeError::MissingField { field: name }),
        }
    }

    fn money(&self) -> Result<Money, DecodeError> {
        let amount = self.long("amount_minor")?;
        let currency = match self.get("currency")? {
            Raw::Str(s) => s,
            _ => return Err(DecodeError::MissingField { field: "currency" }),
        };
        if amount < 0 {
            return Err(DecodeError::InvalidField {
                field: "amount_minor",
                value: amount.to_string(),
                why: "must not be negative",
            });
        }
        // Lazily: the error's text is only built for a bad record.
        Money::new(amount, currency).ok_or_else(|| DecodeError::InvalidField {
            field: "currency",
            value: format!("{currency:?}"),
            why: "must be an ISO 4217 code of three upper-case letters",
        })
    }

    fn reason(&self) -> Result<Reason, DecodeError> {
        self.symbol("reason", Reason::from_symbol, Reason::Other)
    }
}

fn check_time(field: &'static str, ms: Millis) -> Result<Millis, DecodeError> {
    if (MIN_PLAUSIBLE_MS..MAX_PLAUSIBLE_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(DecodeError::InvalidField { field, value: ms.to_string(), why: "not between year 2000 and 2100" })
    }
}

/// An [`Event`] of `kind` from its record's fields.
pub fn build_event(kind: EventKind, f: &impl FieldSource) -> Result<Event, DecodeError> {
    let mut event = Event::buffer();
    build_event_into(kind, f, &mut event)?;
    Ok(event)
}

/// `dst` becomes `src`, in the allocation `dst` already has.
fn set(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// [`build_event`] into `out`, reusing its strings' allocations. On error
/// `out` is left partly written.
pub fn build_event_into(kind: EventKind, f: &impl FieldSource, out: &mut Event) -> Result<(), DecodeError> {
    let body = match kind {
        EventKind::Order => EventBody::Order {
            step: f.symbol("type", OrderStep::from_symbol, OrderStep::Unknown)?,
            cancelled_by: match f.get_opt("cancelled_by") {
                Raw::Null => None,
                _ => Some(f.symbol("cancelled_by", CancelledBy::from_symbol, CancelledBy::Unknown)?),
            },
            money: f.money()?,
        },
        EventKind::Shipment => EventBody::Shipment {
            step: f.symbol("type", ShipmentStep::from_symbol, ShipmentStep::Unknown)?,
            promised_by: f.opt_time("promised_by")?,
        },
        EventKind::Return => EventBody::Return {
            step: f.symbol("type", ReturnStep::from_symbol, ReturnStep::Unknown)?,
            reason: f.reason()?,
            order_paid_at: f.time("order_paid_at")?,
        },
        EventKind::Refund => EventBody::Refund {
            step: f.symbol("type", RefundStep::from_symbol, RefundStep::Unknown)?,
            refund_type: f.symbol("refund_type", RefundType::from_symbol, RefundType::Unknown)?,
            stage: f.symbol("stage", RefundStage::from_symbol, RefundStage::Unknown)?,
            reason: f.reason()?,
            money: f.money()?,
            order_paid_at: f.time("order_paid_at")?,
            requested_at: f.opt_time("requested_at")?,
        },
        EventKind::Dispute => EventBody::Dispute {
            step: f.symbol("type", DisputeStep::from_symbol, DisputeStep::Unknown)?,
            reason: f.reason()?,
            money: f.money()?,
            order_paid_at: f.time("order_paid_at")?,
        },
        EventKind::Chargeback => EventBody::Chargeback {
            step: f.symbol("type", ChargebackStep::from_symbol, ChargebackStep::Unknown)?,
            category: f.symbol("chargeback_category", ChargebackCategory::from_symbol, ChargebackCategory::Unknown)?,
            reason: f.reason()?,
            money: f.money()?,
            order_paid_at: f.time("order_paid_at")?,
        },
    };
    set(&mut out.event_id, f.required_string("event_id")?);
    set(&mut out.shop_id, f.required_string("shop_id")?);
    set(&mut out.order_id, f.required_string("order_id")?);
    match f.opt_string("sub_order_id")? {
        Some(s) => set(out.sub_order_id.get_or_insert_with(String::new), s),
        None => out.sub_order_id = None,
    }
    out.event_time = f.time("event_time")?;
    set(&mut out.category, f.string("category")?);
    out.body = body;
    Ok(())
}
