//! The domain event model: what peakguard knows about one order, shipment,
//! return, refund, dispute or chargeback event once it has been decoded.
//!
//! The wire contract lives in `schemas/*.avsc`; this module mirrors it with
//! plain Rust types. Enumerations carry their Avro symbol names so that the
//! codec and the JSON mapping agree by construction, and every enumeration
//! has an `Unknown`/`Other` member: a producer that adds a symbol never
//! breaks a reader (the schemas declare it as the enum's default).

use std::fmt;

/// Milliseconds since the Unix epoch, UTC (Avro `timestamp-millis`).
pub type Millis = i64;

/// Defines a fieldless enum together with its Avro symbols.
macro_rules! symbol_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $symbol:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every member, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Avro enum symbol.
            pub fn symbol(self) -> &'static str {
                match self { $($name::$variant => $symbol),+ }
            }

            /// Parses an Avro enum symbol; `None` when it is not known.
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                match symbol { $($symbol => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.symbol())
            }
        }
    };
}

symbol_enum!(
    /// The six event families; one Avro schema (and usually one topic) each.
    EventKind {
        Order = "order",
        Shipment = "shipment",
        Return = "return",
        Refund = "refund",
        Dispute = "dispute",
        Chargeback = "chargeback",
    }
);

symbol_enum!(OrderStep { Created = "CREATED", Paid = "PAID", Cancelled = "CANCELLED", Unknown = "UNKNOWN" });
symbol_enum!(CancelledBy { Buyer = "BUYER", Seller = "SELLER", Platform = "PLATFORM", Unknown = "UNKNOWN" });
symbol_enum!(ShipmentStep {
    Dispatched = "DISPATCHED",
    InTransit = "IN_TRANSIT",
    Delivered = "DELIVERED",
    Delayed = "DELAYED",
    Lost = "LOST",
    Unknown = "UNKNOWN",
});
symbol_enum!(ReturnStep { Requested = "REQUESTED", ReceivedBySeller = "RECEIVED_BY_SELLER", Rejected = "REJECTED", Unknown = "UNKNOWN" });
symbol_enum!(RefundStep { Requested = "REQUESTED", Completed = "COMPLETED", Rejected = "REJECTED", Unknown = "UNKNOWN" });
symbol_enum!(RefundType { RefundOnly = "REFUND_ONLY", ReturnAndRefund = "RETURN_AND_REFUND", Unknown = "UNKNOWN" });
symbol_enum!(RefundStage { PreShipment = "PRE_SHIPMENT", InTransit = "IN_TRANSIT", AfterDelivery = "AFTER_DELIVERY", Unknown = "UNKNOWN" });
symbol_enum!(DisputeStep { Opened = "OPENED", RuledForBuyer = "RULED_FOR_BUYER", RuledForSeller = "RULED_FOR_SELLER", Unknown = "UNKNOWN" });
symbol_enum!(ChargebackStep { Received = "RECEIVED", Won = "WON", Lost = "LOST", Unknown = "UNKNOWN" });
symbol_enum!(ChargebackCategory { Fraud = "FRAUD", Service = "SERVICE", Unknown = "UNKNOWN" });
symbol_enum!(
    /// Why a buyer asked for a refund, return, dispute or chargeback.
    Reason {
        NotAsDescribed = "NOT_AS_DESCRIBED",
        QualityDamaged = "QUALITY_DAMAGED",
        WrongSizeColour = "WRONG_SIZE_COLOUR",
        NotReceived = "NOT_RECEIVED",
        LateDelivery = "LATE_DELIVERY",
        WrongItemMissingParts = "WRONG_ITEM_MISSING_PARTS",
        ChangedMind = "CHANGED_MIND",
        PriceDifference = "PRICE_DIFFERENCE",
        AddressChange = "ADDRESS_CHANGE",
        DuplicatePayment = "DUPLICATE_PAYMENT",
        UnauthorisedCardUse = "UNAUTHORISED_CARD_USE",
        Other = "OTHER",
    }
);

impl Reason {
    /// Reasons that count towards the quality refund rate (品质退款率).
    pub fn is_quality(self) -> bool {
        matches!(self, Reason::NotAsDescribed | Reason::QualityDamaged)
    }
}

/// An amount of money in minor units (cents, fen) of an ISO 4217 currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount_minor: i64,
    /// Three upper-case ASCII letters.
    pub currency: [u8; 3],
}

impl Money {
    /// Builds a `Money`, checking the currency code's shape and the sign.
    pub fn new(amount_minor: i64, currency: &str) -> Option<Money> {
        let bytes = currency.as_bytes();
        if amount_minor < 0 || bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
        Some(Money { amount_minor, currency: [bytes[0], bytes[1], bytes[2]] })
    }

    pub fn currency_str(&self) -> &str {
        // Invariant: `new` only admits ASCII upper-case letters.
        std::str::from_utf8(&self.currency).unwrap_or("XXX")
    }
}

impl Event {
    /// An empty event: a buffer for [`crate::codec::decode_into`], which
    /// reuses its strings' allocations record after record.
    pub fn buffer() -> Event {
        Event {
            event_id: String::new(),
            shop_id: String::new(),
            order_id: String::new(),
            sub_order_id: None,
            event_time: 0,
            category: String::new(),
            body: EventBody::Shipment { step: ShipmentStep::Unknown, promised_by: None },
        }
    }
}

/// The part of an event that depends on its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    Order {
        step: OrderStep,
        cancelled_by: Option<CancelledBy>,
        money: Money,
    },
    Shipment {
        step: ShipmentStep,
        promised_by: Option<Millis>,
    },
    Return {
        step: ReturnStep,
        reason: Reason,
        order_paid_at: Millis,
    },
    Refund {
        step: RefundStep,
        refund_type: RefundType,
        stage: RefundStage,
        reason: Reason,
        money: Money,
        order_paid_at: Millis,
        /// When the refund was requested (set on completion and rejection).
        requested_at: Option<Millis>,
    },
    Dispute {
        step: DisputeStep,
        reason: Reason,
        money: Money,
        order_paid_at: Millis,
    },
    Chargeback {
        step: ChargebackStep,
        category: ChargebackCategory,
        reason: Reason,
        money: Money,
        order_paid_at: Millis,
    },
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Order { .. } => EventKind::Order,
            EventBody::Shipment { .. } => EventKind::Shipment,
            EventBody::Return { .. } => EventKind::Return,
            EventBody::Refund { .. } => EventKind::Refund,
            EventBody::Dispute { .. } => EventKind::Dispute,
            EventBody::Chargeback { .. } => EventKind::Chargeback,
        }
    }
}

/// One decoded event: the shared header of every schema plus its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub shop_id: String,
    pub order_id: String,
    pub sub_order_id: Option<String>,
    pub event_time: Millis,
    pub category: String,
    pub body: EventBody,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}
